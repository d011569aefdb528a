/*
 * test_wk_hmac.c — request signatures: RFC 4231 test vectors, agreement with
 * an independent HMAC through OpenSSL's EVP_MAC API on random inputs, the
 * verify side (constant-time compare), and refused inputs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "kq_err.h"
#include "wk_hmac.h"

static void evp_hex(const unsigned char *key, size_t klen, const unsigned char *msg, size_t mlen,
                    char out[65])
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    OSSL_PARAM params[2];
    unsigned char md[32];
    size_t mdlen = 0;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    assert_int_equal(EVP_MAC_init(ctx, key, klen, params), 1);
    assert_int_equal(EVP_MAC_update(ctx, msg, mlen), 1);
    assert_int_equal(EVP_MAC_final(ctx, md, &mdlen, sizeof md), 1);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
}

static void test_rfc4231(void **state)
{
    (void)state;
    char sig[WK_HMAC_SIG_LEN + 1], err[128];
    /* test case 2 */
    assert_int_equal(
        wk_hmac_sign("Jefe", 4, "what do ya want for nothing?", 28, sig, err, sizeof err), 0);
    assert_string_equal(sig,
                        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* test case 1: key 20 x 0x0b, "Hi There" */
    unsigned char k1[20];
    memset(k1, 0x0b, sizeof k1);
    assert_int_equal(wk_hmac_sign(k1, sizeof k1, "Hi There", 8, sig, err, sizeof err), 0);
    assert_string_equal(sig,
                        "sha256=b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    assert_int_equal(strlen(sig), WK_HMAC_SIG_LEN);
}

static void test_random_vs_evp(void **state)
{
    (void)state;
    unsigned char key[80], msg[2048];
    char sig[WK_HMAC_SIG_LEN + 1], want[65], err[128];
    for (int i = 0; i < 200; i++) {
        size_t kl = 1 + (size_t)i % sizeof key, ml = ((size_t)i * 37) % sizeof msg;
        assert_int_equal(RAND_bytes(key, (int)kl), 1);
        assert_int_equal(RAND_bytes(msg, (int)sizeof msg), 1);
        assert_int_equal(wk_hmac_sign(key, kl, msg, ml, sig, err, sizeof err), 0);
        evp_hex(key, kl, msg, ml, want);
        assert_string_equal(sig + 7, want);
        assert_true(wk_hmac_verify(key, kl, msg, ml, sig));
        if (ml > 0) {
            msg[0] ^= 1;
            assert_false(wk_hmac_verify(key, kl, msg, ml, sig));
        }
    }
}

static void test_refused(void **state)
{
    (void)state;
    char sig[WK_HMAC_SIG_LEN + 1], err[128];
    assert_int_equal(wk_hmac_sign("", 0, "x", 1, sig, err, sizeof err), KQ_EINVAL);
    assert_int_equal(wk_hmac_sign(NULL, 3, "x", 1, sig, err, sizeof err), KQ_EINVAL);
    assert_int_equal(wk_hmac_sign("k", 1, NULL, 5, sig, err, sizeof err), KQ_EINVAL);
    assert_int_equal(wk_hmac_sign("k", 1, NULL, 0, sig, err, sizeof err), 0); /* empty body */
    assert_true(wk_hmac_verify("k", 1, NULL, 0, sig));
    assert_false(wk_hmac_verify("k", 1, NULL, 0, "sha256=00"));
    assert_false(wk_hmac_verify("k", 1, NULL, 0, NULL));
    assert_false(wk_hmac_verify("other", 5, NULL, 0, sig));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4231),
        cmocka_unit_test(test_random_vs_evp),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
