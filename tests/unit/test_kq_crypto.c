/*
 * test_kq_crypto.c — AES-256-GCM seal/open round trips (and refusal of a
 * wrong key, other associated data, any flipped byte, a short buffer); the
 * KEK file format (good files, every kind of bad line); wrap/unwrap of data
 * keys across KEK versions (rotation), a missing version, a wrong KEK; the
 * KEK file's missing / mode checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kq_crypto.h"
#include "kq_err.h"

static const char KEK1[] = "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
static const char KEK12[] =
    "# comment\n\n1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
    "  2\tFFEEDDCCBBAA99887766554433221100ffeeddccbbaa99887766554433221100  \r\n";

static void test_seal_open(void **state)
{
    uint8_t key[32], other[32], out[64 + KQ_CRYPTO_SEAL_OVERHEAD], pt[64], back[64];
    size_t n, m;
    char es[256];

    (void)state;
    memset(key, 7, sizeof key);
    memset(other, 8, sizeof other);
    memcpy(pt, "sekret-value", 12);
    assert_int_equal(kq_crypto_seal(key, "aad", 3, pt, 12, out, sizeof out, &n, es, sizeof es), 0);
    assert_int_equal(n, 12 + KQ_CRYPTO_SEAL_OVERHEAD);
    assert_null(memmem(out, n, "sekret", 6));
    assert_int_equal(kq_crypto_open(key, "aad", 3, out, n, back, sizeof back, &m, es, sizeof es),
                     0);
    assert_int_equal(m, 12);
    assert_memory_equal(back, pt, 12);
    /* wrong key, other associated data, every flipped byte: refused */
    assert_int_equal(kq_crypto_open(other, "aad", 3, out, n, back, sizeof back, &m, es, sizeof es),
                     KQ_ECORRUPT);
    assert_int_equal(kq_crypto_open(key, "aab", 3, out, n, back, sizeof back, &m, es, sizeof es),
                     KQ_ECORRUPT);
    for (size_t i = 0; i < n; i++) {
        out[i] ^= 0x01;
        assert_int_not_equal(
            kq_crypto_open(key, "aad", 3, out, n, back, sizeof back, &m, es, sizeof es), 0);
        out[i] ^= 0x01;
    }
    assert_int_equal(
        kq_crypto_open(key, "aad", 3, out, n - 1, back, sizeof back, &m, es, sizeof es),
        KQ_ECORRUPT);
    assert_int_equal(kq_crypto_open(key, "aad", 3, out, 5, back, sizeof back, &m, es, sizeof es),
                     KQ_ECORRUPT);
    assert_int_equal(kq_crypto_open(key, "aad", 3, out, n, back, 11, &m, es, sizeof es), KQ_ERANGE);
    assert_int_equal(kq_crypto_seal(key, "", 0, pt, 12, out, 12 + KQ_CRYPTO_SEAL_OVERHEAD - 1, &n,
                                    es, sizeof es),
                     KQ_ERANGE);
    /* empty plaintext; two seals of the same value differ (fresh nonce) */
    assert_int_equal(kq_crypto_seal(key, "", 0, pt, 0, out, sizeof out, &n, es, sizeof es), 0);
    assert_int_equal(kq_crypto_open(key, "", 0, out, n, back, sizeof back, &m, es, sizeof es), 0);
    assert_int_equal(m, 0);
    {
        uint8_t a[40], b[40];
        size_t na, nb;
        assert_int_equal(kq_crypto_seal(key, "x", 1, pt, 8, a, sizeof a, &na, es, sizeof es), 0);
        assert_int_equal(kq_crypto_seal(key, "x", 1, pt, 8, b, sizeof b, &nb, es, sizeof es), 0);
        assert_memory_not_equal(a, b, na);
    }
}

static void test_kek_parse(void **state)
{
    kq_kek k;
    char es[256];
    static const char *bad[] = {
        "",
        "# only a comment\n",
        "0 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
        "65536 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
        "x 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
        "1\n",
        "1 0001\n",
        "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f00\n",
        "1 zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
        "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
        "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
    };

    (void)state;
    assert_int_equal(kq_kek_parse(KEK12, &k, es, sizeof es), 0);
    assert_int_equal(k.n, 2);
    assert_int_equal(k.current, 2);
    assert_int_equal(k.key[0][31], 0x1f);
    assert_int_equal(k.key[1][0], 0xff);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        es[0] = '\0';
        assert_int_equal(kq_kek_parse(bad[i], &k, es, sizeof es), KQ_EINVAL);
        assert_true(es[0] != '\0');
    }
    assert_int_equal(kq_kek_parse("a\n1 0001\n", &k, es, sizeof es), KQ_EINVAL);
    assert_non_null(strstr(es, "line 1"));
}

static void test_wrap_rotation(void **state)
{
    kq_kek k1, k12, wrong;
    uint8_t dek[32], back[32], w1[KQ_CRYPTO_WRAPPED_LEN], w2[KQ_CRYPTO_WRAPPED_LEN];
    uint16_t v = 0;
    char es[256];

    (void)state;
    memset(dek, 0x5a, sizeof dek);
    assert_int_equal(kq_kek_parse(KEK1, &k1, es, sizeof es), 0);
    assert_int_equal(kq_kek_parse(KEK12, &k12, es, sizeof es), 0);
    assert_int_equal(
        kq_kek_parse("1 ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", &wrong,
                     es, sizeof es),
        0);
    assert_int_equal(kq_kek_wrap(&k1, "workflow/w1", dek, w1, es, sizeof es), 0);
    assert_int_equal(kq_kek_wrap(&k12, "workflow/w2", dek, w2, es, sizeof es), 0);
    assert_null(memmem(w1, sizeof w1, dek, 8));
    /* after rotation, a key wrapped by version 1 still opens; new keys use version 2 */
    assert_int_equal(kq_kek_unwrap(&k12, "workflow/w1", w1, sizeof w1, back, &v, es, sizeof es), 0);
    assert_int_equal(v, 1);
    assert_memory_equal(back, dek, 32);
    assert_int_equal(kq_kek_unwrap(&k12, "workflow/w2", w2, sizeof w2, back, &v, es, sizeof es), 0);
    assert_int_equal(v, 2);
    assert_memory_equal(back, dek, 32);
    /* version 2 missing from the old file; a wrong KEK; another subject; bad length */
    assert_int_equal(kq_kek_unwrap(&k1, "workflow/w2", w2, sizeof w2, back, &v, es, sizeof es),
                     KQ_ENOTFOUND);
    assert_non_null(strstr(es, "KEK version 2"));
    assert_int_equal(kq_kek_unwrap(&wrong, "workflow/w1", w1, sizeof w1, back, &v, es, sizeof es),
                     KQ_ECORRUPT);
    assert_non_null(strstr(es, "wrong KEK"));
    assert_int_equal(kq_kek_unwrap(&k12, "workflow/w9", w1, sizeof w1, back, &v, es, sizeof es),
                     KQ_ECORRUPT);
    assert_int_equal(kq_kek_unwrap(&k12, "workflow/w1", w1, sizeof w1 - 1, back, &v, es, sizeof es),
                     KQ_EINVAL);
}

static void test_kek_load(void **state)
{
    char dir[] = "/tmp/kq_crypto_XXXXXX", path[64], es[256];
    kq_kek k;
    FILE *f;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/kek", dir);
    assert_int_equal(kq_kek_load(path, &k, es, sizeof es), KQ_ENOTFOUND);
    assert_non_null(strstr(es, "missing"));
    assert_non_null(f = fopen(path, "w"));
    fputs(KEK12, f);
    fclose(f);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(kq_kek_load(path, &k, es, sizeof es), KQ_ECONFIG);
    assert_int_equal(chmod(path, 0440), 0); /* a service group may read it */
    assert_int_equal(kq_kek_load(path, &k, es, sizeof es), 0);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(kq_kek_load(path, &k, es, sizeof es), 0);
    assert_int_equal(k.current, 2);
    kq_kek_wipe(&k);
    assert_int_equal(k.n, 0);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_open),
        cmocka_unit_test(test_kek_parse),
        cmocka_unit_test(test_wrap_rotation),
        cmocka_unit_test(test_kek_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
