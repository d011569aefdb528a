/*
 * wk_hmac.h — request signing: HMAC-SHA256 of the exact request body with
 * the workflow's secret, sent as
 *     X-Kcqrs-Signature: sha256=<64 lower-case hex digits>
 * beside the stable delivery id
 *     X-Kcqrs-Delivery: <delivery id>
 * (the same id on every attempt of one step, so a receiver drops repeats).
 * A receiver recomputes the HMAC over the raw body bytes and compares with
 * wk_hmac_verify (constant time). Reentrant (OpenSSL's one-shot HMAC).
 */
#ifndef WK_HMAC_H
#define WK_HMAC_H

#include <stddef.h>

#define WK_HMAC_HEADER "X-Kcqrs-Signature"
#define WK_DELIVERY_HEADER "X-Kcqrs-Delivery"
#define WK_HMAC_SIG_LEN (7 + 64) /* "sha256=" + hex, without the NUL */

/*
 * Write "sha256=<hex>" (NUL-terminated, WK_HMAC_SIG_LEN + 1 bytes) into out.
 * An empty secret is refused (KQ_EINVAL); body may be NULL when len is 0.
 */
int wk_hmac_sign(const void *secret, size_t secret_len, const void *body, size_t len,
                 char out[WK_HMAC_SIG_LEN + 1], char *errstr, size_t errlen);

/* 1 if `sig` is the signature of body under secret, else 0 (constant-time compare). */
int wk_hmac_verify(const void *secret, size_t secret_len, const void *body, size_t len,
                   const char *sig);

#endif
