/*
 * cmd_pii.c — digests of personal data for the command side's state; see cmd_pii.h.
 */
#include "cmd_pii.h"
#include "kq_err.h"

#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The digest of s under scheme 'k' (keyed, key held) or 'u' into out[CMD_PII_DIGEST_LEN + 1].
 * 0, or -1 when 'k' is asked and the key is not held. */
static int digest(kq_keyring *kr, const char *id, char scheme, const char *s, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t md[SHA256_DIGEST_LENGTH], dek[KQ_CRYPTO_KEY_LEN];
    char subject[KQ_SUBJECT_MAX + 1];
    unsigned mdlen = sizeof md;

    if (scheme == 'k') {
        if (snprintf(subject, sizeof subject, "resource/%s", id) >= (int)sizeof subject ||
            !kq_keyring_held(kr, subject, dek))
            return -1;
        if (HMAC(EVP_sha256(), dek, sizeof dek, (const unsigned char *)s, len, md, &mdlen) ==
            NULL) {
            memset(dek, 0, sizeof dek);
            return -1;
        }
        memset(dek, 0, sizeof dek);
    } else {
        SHA256((const unsigned char *)s, len, md);
    }
    out[0] = scheme;
    out[1] = ':';
    for (size_t i = 0; i < sizeof md; i++) {
        out[2 + 2 * i] = hex[md[i] >> 4];
        out[3 + 2 * i] = hex[md[i] & 15];
    }
    out[CMD_PII_DIGEST_LEN] = '\0';
    return 0;
}

int cmd_pii_store(kq_keyring *kr, const char *id, const char *s, size_t len, char **dst)
{
    char d[CMD_PII_DIGEST_LEN + 1];
    char *copy = NULL;

    if (s != NULL) {
        if (kr == NULL) {
            if ((copy = strndup(s, len)) == NULL)
                return KQ_ENOMEM;
        } else {
            if (digest(kr, id, 'k', s, len, d) != 0)
                digest(kr, id, 'u', s, len, d);
            if ((copy = strdup(d)) == NULL)
                return KQ_ENOMEM;
        }
    }
    free(*dst);
    *dst = copy;
    return 0;
}

int cmd_pii_same(kq_keyring *kr, const char *id, const char *stored, const char *s)
{
    char d[CMD_PII_DIGEST_LEN + 1];

    if (s == NULL) /* absent reads as empty, as it always has */
        s = "";
    if (stored == NULL)
        return *s == '\0';
    if (kr == NULL)
        return strcmp(stored, s) == 0;
    if ((stored[0] != 'k' && stored[0] != 'u') || stored[1] != ':' ||
        digest(kr, id, stored[0], s, strlen(s), d) != 0)
        return 0;
    return strcmp(stored, d) == 0;
}
