/*
 * kq_crypto.c — AES-256-GCM seal/open, the KEK file and wrapped data keys; see
 * kq_crypto.h. OpenSSL libcrypto's EVP interface.
 */
#include "kq_crypto.h"
#include "kq_err.h"
#include "kq_rand.h"
#include "kq_util.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FORMAT 0x01

/* One GCM pass: enc 1 seals in → out and writes tag; enc 0 opens and checks tag. */
static int gcm(int enc, const uint8_t key[KQ_CRYPTO_KEY_LEN],
               const uint8_t nonce[KQ_CRYPTO_NONCE_LEN], const void *aad, size_t aadlen,
               const uint8_t *in, size_t inlen, uint8_t *out, uint8_t tag[KQ_CRYPTO_TAG_LEN])
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int ok = 0, n = 0;

    if (ctx == NULL || inlen > (size_t)0x7fffffff || aadlen > (size_t)0x7fffffff)
        goto out;
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, KQ_CRYPTO_NONCE_LEN, NULL) != 1 ||
        EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) != 1)
        goto out;
    if (aadlen > 0 && EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aadlen) != 1)
        goto out;
    if (inlen > 0 && EVP_CipherUpdate(ctx, out, &n, in, (int)inlen) != 1)
        goto out;
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, KQ_CRYPTO_TAG_LEN, tag) != 1)
        goto out;
    if (EVP_CipherFinal_ex(ctx, out + inlen, &n) != 1)
        goto out;
    if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, KQ_CRYPTO_TAG_LEN, tag) != 1)
        goto out;
    ok = 1;
out:
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

int kq_crypto_seal(const uint8_t key[KQ_CRYPTO_KEY_LEN], const void *aad, size_t aadlen,
                   const void *pt, size_t ptlen, uint8_t *out, size_t outcap, size_t *outlen,
                   char *errstr, size_t errlen)
{
    uint8_t *nonce = out + 1;

    if (ptlen > outcap || outcap - ptlen < KQ_CRYPTO_SEAL_OVERHEAD)
        return kq_seterr(errstr, errlen, KQ_ERANGE, "sealed value does not fit (%zu bytes)", ptlen);
    out[0] = FORMAT;
    if (kq_rand_bytes(nonce, KQ_CRYPTO_NONCE_LEN) != 0)
        return kq_seterr(errstr, errlen, KQ_EIO, "no randomness for a nonce");
    if (!gcm(1, key, nonce, aad, aadlen, pt, ptlen, out + 1 + KQ_CRYPTO_NONCE_LEN,
             out + 1 + KQ_CRYPTO_NONCE_LEN + ptlen))
        return kq_seterr(errstr, errlen, KQ_EIO, "AES-256-GCM encryption failed");
    *outlen = ptlen + KQ_CRYPTO_SEAL_OVERHEAD;
    return 0;
}

int kq_crypto_open(const uint8_t key[KQ_CRYPTO_KEY_LEN], const void *aad, size_t aadlen,
                   const uint8_t *in, size_t inlen, uint8_t *out, size_t outcap, size_t *outlen,
                   char *errstr, size_t errlen)
{
    uint8_t tag[KQ_CRYPTO_TAG_LEN];
    size_t n;

    if (in == NULL || inlen < KQ_CRYPTO_SEAL_OVERHEAD || in[0] != FORMAT)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "not a sealed value (format or length)");
    n = inlen - KQ_CRYPTO_SEAL_OVERHEAD;
    if (n > outcap)
        return kq_seterr(errstr, errlen, KQ_ERANGE, "opened value does not fit (%zu bytes)", n);
    memcpy(tag, in + inlen - KQ_CRYPTO_TAG_LEN, KQ_CRYPTO_TAG_LEN);
    /* out may be exactly n bytes: GCM's final step writes nothing. */
    if (!gcm(0, key, in + 1, aad, aadlen, in + 1 + KQ_CRYPTO_NONCE_LEN, n, out, tag)) {
        memset(out, 0, n);
        return kq_seterr(errstr, errlen, KQ_ECORRUPT,
                         "sealed value does not open (wrong key, associated data or bytes)");
    }
    *outlen = n;
    return 0;
}

/* ------------------------------------------------------------------ KEK file */

int kq_kek_parse(const char *text, kq_kek *kek, char *errstr, size_t errlen)
{
    const char *p = text;
    int line = 0;

    memset(kek, 0, sizeof *kek);
    while (*p != '\0') {
        const char *eol = strchr(p, '\n'), *q = p;
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        long v = 0;
        size_t hex;

        line++;
        while (q < p + len && (*q == ' ' || *q == '\t'))
            q++;
        if (q == p + len || *q == '#' || (*q == '\r' && q + 1 == p + len))
            goto next;
        while (q < p + len && *q >= '0' && *q <= '9' && v <= 65535)
            v = v * 10 + (*q++ - '0');
        if (v < 1 || v > 65535 || q >= p + len || (*q != ' ' && *q != '\t'))
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "line %d: expected \"VERSION HEX\" with VERSION 1..65535", line);
        while (q < p + len && (*q == ' ' || *q == '\t'))
            q++;
        hex = (size_t)(p + len - q);
        while (hex > 0 && (q[hex - 1] == ' ' || q[hex - 1] == '\t' || q[hex - 1] == '\r'))
            hex--;
        if (hex != 2 * KQ_CRYPTO_KEY_LEN)
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "line %d: the key must be 64 hex digits (32 bytes), not %zu "
                             "characters",
                             line, hex);
        for (int i = 0; i < kek->n; i++)
            if (kek->version[i] == v)
                return kq_seterr(errstr, errlen, KQ_EINVAL, "line %d: version %ld repeated", line,
                                 v);
        if (kek->n >= KQ_KEK_MAX)
            return kq_seterr(errstr, errlen, KQ_EINVAL, "line %d: more than %d versions", line,
                             KQ_KEK_MAX);
        if (kq_hex_decode(q, KQ_CRYPTO_KEY_LEN, kek->key[kek->n]) != 0)
            return kq_seterr(errstr, errlen, KQ_EINVAL, "line %d: the key is not hex", line);
        kek->version[kek->n++] = (uint16_t)v;
        if (v > kek->current)
            kek->current = (uint16_t)v;
    next:
        p += len;
        if (*p == '\n')
            p++;
    }
    if (kek->n == 0)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "no key in it (lines \"VERSION HEX\")");
    return 0;
}

int kq_kek_load(const char *path, kq_kek *kek, char *errstr, size_t errlen)
{
    char *buf = NULL, es[256];
    size_t len;
    struct stat st;
    int rc;

    memset(kek, 0, sizeof *kek);
    if (path == NULL || path[0] == '\0' || stat(path, &st) != 0) {
        rc = (path == NULL || path[0] == '\0' || errno == ENOENT) ? KQ_ENOTFOUND : KQ_EIO;
        return kq_seterr(errstr, errlen, rc,
                         "KEK file %s is missing (KCQRS_KEK_FILE; create one with "
                         "kcqrs-keys kek-add)",
                         path ? path : "(unset)");
    }
    if ((st.st_mode & 007) != 0)
        return kq_seterr(errstr, errlen, KQ_ECONFIG,
                         "KEK file %s is open to others (chmod 600 or 640 it)", path);
    if ((rc = kq_read_file(path, 65536, &buf, &len, es, sizeof es)) != 0)
        return kq_seterr(errstr, errlen, rc, "KEK file %s is missing or unreadable: %s", path, es);
    if (strlen(buf) != len)
        rc = kq_seterr(es, sizeof es, KQ_EINVAL, "a NUL byte in it");
    else
        rc = kq_kek_parse(buf, kek, es, sizeof es);
    if (rc != 0)
        kq_seterr(errstr, errlen, rc, "KEK file %s: %s", path, es);
    memset(buf, 0, len);
    free(buf);
    return rc;
}

void kq_kek_wipe(kq_kek *kek)
{
    volatile uint8_t *p = (volatile uint8_t *)kek;
    for (size_t i = 0; i < sizeof *kek; i++)
        p[i] = 0;
}

static const uint8_t *kek_key(const kq_kek *kek, uint16_t version)
{
    for (int i = 0; i < kek->n; i++)
        if (kek->version[i] == version)
            return kek->key[i];
    return NULL;
}

int kq_kek_wrap(const kq_kek *kek, const char *subject, const uint8_t dek[KQ_CRYPTO_KEY_LEN],
                uint8_t out[KQ_CRYPTO_WRAPPED_LEN], char *errstr, size_t errlen)
{
    const uint8_t *key = kek_key(kek, kek->current);
    uint8_t sealed[KQ_CRYPTO_WRAPPED_LEN - 2];
    size_t n;
    int rc;

    if (key == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "no KEK loaded");
    if ((rc = kq_crypto_seal(key, subject, strlen(subject), dek, KQ_CRYPTO_KEY_LEN, sealed,
                             sizeof sealed, &n, errstr, errlen)) != 0)
        return rc;
    /* FORMAT | version | the sealed key's nonce, ciphertext and tag */
    out[0] = FORMAT;
    out[1] = (uint8_t)(kek->current >> 8);
    out[2] = (uint8_t)(kek->current & 0xff);
    memcpy(out + 3, sealed + 1, sizeof sealed - 1);
    memset(sealed, 0, sizeof sealed);
    return 0;
}

int kq_kek_unwrap(const kq_kek *kek, const char *subject, const uint8_t *in, size_t inlen,
                  uint8_t dek[KQ_CRYPTO_KEY_LEN], uint16_t *version, char *errstr, size_t errlen)
{
    uint8_t sealed[KQ_CRYPTO_WRAPPED_LEN - 2];
    const uint8_t *key;
    uint16_t v;
    size_t n;

    if (in == NULL || inlen != KQ_CRYPTO_WRAPPED_LEN || in[0] != FORMAT)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "the data key of %s is not a wrapped key",
                         subject);
    v = (uint16_t)((in[1] << 8) | in[2]);
    if (version != NULL)
        *version = v;
    if ((key = kek_key(kek, v)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOTFOUND,
                         "KEK version %u (which wrapped the data key of %s) is not in the KEK "
                         "file",
                         (unsigned)v, subject);
    /* the sealed part is FORMAT | nonce | ct | tag: the version bytes are not in it */
    sealed[0] = FORMAT;
    memcpy(sealed + 1, in + 3, sizeof sealed - 1);
    if (kq_crypto_open(key, subject, strlen(subject), sealed, sizeof sealed, dek, KQ_CRYPTO_KEY_LEN,
                       &n, NULL, 0) != 0 ||
        n != KQ_CRYPTO_KEY_LEN)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT,
                         "wrong KEK: version %u in the KEK file does not open the data key of %s",
                         (unsigned)v, subject);
    return 0;
}
