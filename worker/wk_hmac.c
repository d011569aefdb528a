/*
 * wk_hmac.c — HMAC-SHA256 signatures with OpenSSL's one-shot HMAC().
 */
#include "wk_hmac.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <limits.h>
#include <string.h>

#include "kq_err.h"
#include "kq_rand.h"

int wk_hmac_sign(const void *secret, size_t secret_len, const void *body, size_t len,
                 char out[WK_HMAC_SIG_LEN + 1], char *errstr, size_t errlen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    static const unsigned char empty[1] = {0};
    if (secret == NULL || secret_len == 0 || secret_len > INT_MAX)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "signing secret is empty");
    if (body == NULL && len > 0)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "body is NULL");
    if (HMAC(EVP_sha256(), secret, (int)secret_len, len ? body : empty, len, md, &mdlen) == NULL ||
        mdlen != 32)
        return kq_seterr(errstr, errlen, KQ_EIO, "HMAC-SHA256 failed");
    memcpy(out, "sha256=", 7);
    kq_hex_encode(md, 32, out + 7);
    return 0;
}

int wk_hmac_verify(const void *secret, size_t secret_len, const void *body, size_t len,
                   const char *sig)
{
    char want[WK_HMAC_SIG_LEN + 1];
    if (sig == NULL || strlen(sig) != WK_HMAC_SIG_LEN)
        return 0;
    if (wk_hmac_sign(secret, secret_len, body, len, want, NULL, 0) != 0)
        return 0;
    return CRYPTO_memcmp(want, sig, WK_HMAC_SIG_LEN) == 0;
}
