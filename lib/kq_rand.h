/*
 * kq_rand.h — random bytes from the kernel, UUIDv4s, generated secrets.
 *
 * What it is for
 *   Every random value kcqrs makes (event ids, request ids, webhook secrets,
 *   API keys) comes from getrandom(2) through kq_rand_bytes. Nothing here is
 *   seeded or kept: there is no state. Also the text form of a UUID (made or
 *   read), so no module formats one by hand.
 *
 * Threads: reentrant, no global state.
 */
#ifndef KQ_RAND_H
#define KQ_RAND_H

#include <stddef.h>
#include <stdint.h>

#define KQ_UUID_STR 37 /* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" + NUL */

/*
 * Fill buf[0..len) from getrandom(2), looping over short reads and EINTR.
 * 0, or KQ_EIO when the kernel refuses (buf contents then unspecified).
 */
int kq_rand_bytes(void *buf, size_t len);

/* A random (version 4, RFC 9562 variant) UUID into u. 0 or KQ_EIO. */
int kq_uuid_v4(uint8_t u[16]);

/* u as 36 lower-case hex digits with dashes, NUL-terminated, into out. */
void kq_uuid_format(const uint8_t u[16], char out[KQ_UUID_STR]);

/* Parse exactly 36 characters "8-4-4-4-12" hex (either case). 0 or KQ_EINVAL. */
int kq_uuid_parse(const char *s, uint8_t out[16]);

/*
 * `nbytes` random bytes as 2*nbytes lower-case hex digits + NUL into out
 * (which holds 2*nbytes+1 bytes). 0 or KQ_EIO.
 */
int kq_rand_hex(char *out, size_t nbytes);

/* in[0..len) as 2*len lower-case hex digits + NUL into out (2*len+1 bytes). */
void kq_hex_encode(const void *in, size_t len, char *out);

/* The value (0..15) of the hex digit c, either case; -1 when c is not one. */
int kq_hex_digit(int c);

/*
 * The 2*len hex digits (either case) at s into out[0..len). 0, or KQ_EINVAL
 * at the first character that is not a hex digit (a NUL included: s must
 * hold 2*len digits; what follows them is the caller's to check).
 */
int kq_hex_decode(const char *s, size_t len, void *out);

#endif
