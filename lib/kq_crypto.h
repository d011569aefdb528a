/*
 * kq_crypto.h — envelope encryption primitives: AES-256-GCM seal/open, the
 * key-encryption-key (KEK) file, and data keys wrapped by a KEK.
 *
 * What it is for
 *   Secrets never reach the event log in plain text (ARCHITECTURE.md,
 *   "Secrets in events: envelope encryption"). Each subject has a 32-byte data
 *   key (DEK); a field is sealed with it, the event's identity as associated
 *   data; the DEK is stored (in the key topic, kq_keyring.h) only wrapped by a
 *   KEK, which lives in a file outside Kafka. This module is the pure part: no
 *   I/O but kq_kek_load's read of the file, no global state.
 *
 * Formats
 *   sealed field:  0x01 | nonce (12) | ciphertext (as long as the plaintext) | tag (16)
 *   wrapped DEK:   0x01 | KEK version (2, big-endian) | nonce (12) | ciphertext (32) | tag (16),
 *                  the subject as associated data (a wrapped key moved to another
 *                  subject does not open)
 *   KEK file:      one key per line, "VERSION HEX" (VERSION 1..65535, HEX 64 hex
 *                  digits = 32 bytes); '#' comments and blank lines ignored; at
 *                  most KQ_KEK_MAX versions, each once. The highest version wraps
 *                  new data keys; every version in the file opens the keys it
 *                  wrapped. Rotation = append a higher version (kcqrs-keys
 *                  kek-add), restart; old versions stay in the file as long as
 *                  keys wrapped by them exist.
 *
 * Ownership: callers own every buffer; a kq_kek is a plain value (memset it
 *   to zero when done: kq_kek_wipe). Threads: everything is reentrant.
 * Errors: 0 or a negative KQ_E* code with a sentence in errstr. A failed open
 *   (wrong key, tampered bytes, other associated data) is KQ_ECORRUPT.
 */
#ifndef KQ_CRYPTO_H
#define KQ_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define KQ_CRYPTO_KEY_LEN 32
#define KQ_CRYPTO_NONCE_LEN 12
#define KQ_CRYPTO_TAG_LEN 16
/* Bytes a sealed field adds to its plaintext. */
#define KQ_CRYPTO_SEAL_OVERHEAD (1 + KQ_CRYPTO_NONCE_LEN + KQ_CRYPTO_TAG_LEN)
#define KQ_CRYPTO_WRAPPED_LEN (1 + 2 + KQ_CRYPTO_NONCE_LEN + KQ_CRYPTO_KEY_LEN + KQ_CRYPTO_TAG_LEN)
#define KQ_KEK_MAX 64

typedef struct kq_kek {
    int n;                        /* versions held */
    uint16_t version[KQ_KEK_MAX]; /* in file order */
    uint8_t key[KQ_KEK_MAX][KQ_CRYPTO_KEY_LEN];
    uint16_t current; /* the highest version */
} kq_kek;

/*
 * Seal pt[0..ptlen) with `key` and associated data aad[0..aadlen) into out
 * (ptlen + KQ_CRYPTO_SEAL_OVERHEAD bytes, outcap at least that); *outlen is
 * set. A fresh random nonce per call. KQ_ERANGE (out too small), KQ_EIO.
 */
int kq_crypto_seal(const uint8_t key[KQ_CRYPTO_KEY_LEN], const void *aad, size_t aadlen,
                   const void *pt, size_t ptlen, uint8_t *out, size_t outcap, size_t *outlen,
                   char *errstr, size_t errlen);

/*
 * Open what kq_crypto_seal wrote: in[0..inlen) → out (inlen -
 * KQ_CRYPTO_SEAL_OVERHEAD bytes; outcap at least that), *outlen set.
 * KQ_ECORRUPT for a bad format, a wrong key, other associated data or
 * changed bytes; KQ_ERANGE (out too small).
 */
int kq_crypto_open(const uint8_t key[KQ_CRYPTO_KEY_LEN], const void *aad, size_t aadlen,
                   const uint8_t *in, size_t inlen, uint8_t *out, size_t outcap, size_t *outlen,
                   char *errstr, size_t errlen);

/*
 * Parse a KEK file's text (NUL-terminated). KQ_EINVAL with "line N: ..." for
 * a bad line, a repeated version, more than KQ_KEK_MAX, or no key at all.
 */
int kq_kek_parse(const char *text, kq_kek *kek, char *errstr, size_t errlen);

/*
 * Read and parse the KEK file at path. Missing or unreadable: KQ_ENOTFOUND /
 * KQ_EIO, the message says "KEK file PATH is missing"; any permission for
 * others: KQ_ECONFIG (0600, or 0640 with a service group, as a Kubernetes
 * Secret's 0440); else kq_kek_parse
 * (the message starts with PATH).
 */
int kq_kek_load(const char *path, kq_kek *kek, char *errstr, size_t errlen);

/* Zero the keys. */
void kq_kek_wipe(kq_kek *kek);

/*
 * Wrap dek for `subject` (the associated data) with the KEK's current
 * version into out[KQ_CRYPTO_WRAPPED_LEN]. KQ_EIO.
 */
int kq_kek_wrap(const kq_kek *kek, const char *subject, const uint8_t dek[KQ_CRYPTO_KEY_LEN],
                uint8_t out[KQ_CRYPTO_WRAPPED_LEN], char *errstr, size_t errlen);

/*
 * Unwrap in[0..inlen) for `subject` into dek. *version (may be NULL) is the
 * KEK version that wrapped it. KQ_ENOTFOUND: that version is not in the KEK
 * file ("KEK version N is not in the KEK file"); KQ_ECORRUPT: bad format, or
 * the version's key does not open it ("wrong KEK: version N does not open the
 * data key of SUBJECT").
 */
int kq_kek_unwrap(const kq_kek *kek, const char *subject, const uint8_t *in, size_t inlen,
                  uint8_t dek[KQ_CRYPTO_KEY_LEN], uint16_t *version, char *errstr, size_t errlen);

#endif
