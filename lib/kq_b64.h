/*
 * kq_b64.h — base64url (RFC 4648 §5) without padding.
 *
 * What it is for
 *   The one encoder/decoder behind the query API's cursors, the consistency
 *   token (kq_token.h) and API keys (kq_auth.h). Decoding is strict: only
 *   the URL-safe alphabet, no '=', no whitespace, no length that no encoding
 *   produces, and the unused low bits of the last character must be zero, so
 *   every byte string has exactly one accepted text form.
 *
 * Threads: reentrant, no global state, nothing allocated.
 */
#ifndef KQ_B64_H
#define KQ_B64_H

#include <stddef.h>
#include <stdint.h>

/* Characters kq_b64_encode writes for `len` bytes, without the NUL. */
#define KQ_B64_LEN(len) (((len) / 3) * 4 + ((len) % 3 ? (len) % 3 + 1 : 0))

/*
 * Encode in[0..len) into out, which holds KQ_B64_LEN(len) + 1 bytes.
 * NUL-terminated; returns the length written (without the NUL).
 */
size_t kq_b64_encode(const void *in, size_t len, char *out);

/*
 * Decode the NUL-terminated `in` into out[0..outlen). Returns the byte
 * count, or KQ_EINVAL for a character outside the alphabet, an impossible
 * length, non-zero trailing bits or more than `outlen` bytes.
 */
int kq_b64_decode(const char *in, uint8_t *out, size_t outlen);

#endif
