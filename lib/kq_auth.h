/*
 * kq_auth.h — API keys: the keys file, bearer-token lookup, roles.
 *
 * A key is "kq_" followed by 43 base64url characters encoding 32 random bytes
 * from getrandom(2) (256 bits). Only its SHA-256 is ever stored, in a keys
 * file of one line per key:
 *
 *     # comment
 *     <name> <role>[,<role>...] <sha256 of the whole key, 64 lowercase hex>
 *
 * Names match [A-Za-z0-9._-]{1,64}; they are unique in a file and become the
 * `actor` of every event appended with that key. Roles are admin, writer,
 * reader, auditor, worker; admin implies every other role.
 *
 * SHA-256 comes from OpenSSL's libcrypto (EVP), which libcurl and libpq pull
 * in already. A presented token is hashed once and compared with every entry
 * by CRYPTO_memcmp, without stopping at a match, so the time taken does not
 * tell which entry (or whether an early one) matched.
 *
 * Reload: kq_auth_watch makes a loaded set follow its file. kq_auth_lookup
 * then looks at the file at most once per interval (stat: device, inode,
 * size, mtime; the first lookup after the interval does it) and, when it
 * changed, parses it and swaps the entries in under a write lock: a revoked
 * key fails from the next lookup on, a rotated or new key works. A file that
 * is missing or does not parse keeps the keys loaded (a warning is logged
 * once per change of the file). The names lookups hand out (the actor of a
 * request) are interned and live as long as the set, so a request keeps its
 * actor across a reload; the pool grows only with names never seen before.
 *
 * Thread-safety: kq_auth_lookup may be called from any number of threads at
 * once, on a watched set too. kq_auth_count/name/roles read the entries
 * without the lock: call them only before threads use a watched set.
 * Everything else is reentrant.
 */
#ifndef KQ_AUTH_H
#define KQ_AUTH_H

#include <stddef.h>

#define KQ_AUTH_ROLE_ADMIN 0x01u
#define KQ_AUTH_ROLE_WRITER 0x02u
#define KQ_AUTH_ROLE_READER 0x04u
#define KQ_AUTH_ROLE_AUDITOR 0x08u
#define KQ_AUTH_ROLE_WORKER 0x10u
#define KQ_AUTH_ROLE_ALL 0x1fu

#define KQ_AUTH_NAME_MAX 64
#define KQ_AUTH_KEY_LEN 46          /* "kq_" + 43 base64url characters */
#define KQ_AUTH_TOKEN_MAX 256       /* longer bearer tokens are refused unhashed */
#define KQ_AUTH_FILE_MAX (1u << 20) /* keys files over 1 MiB are refused */

typedef struct kq_auth_keys kq_auth_keys;

/*
 * Parse keys-file text (`len` bytes, need not be NUL-terminated). `source`
 * names the input in errors ("keys.txt:3: unknown role 'root'"). On success
 * *out is a new set owned by the caller (kq_auth_free); on failure *out is
 * untouched and errstr names the first bad line. An empty file is valid.
 */
int kq_auth_parse(const char *text, size_t len, const char *source, kq_auth_keys **out,
                  char *errstr, size_t errlen);

/* Read and parse the file at `path` (at most KQ_AUTH_FILE_MAX bytes). */
int kq_auth_load(const char *path, kq_auth_keys **out, char *errstr, size_t errlen);

void kq_auth_free(kq_auth_keys *keys);

/*
 * Follow the file at `path` (the one `keys` was loaded from): see "Reload"
 * above. interval_ms <= 0 does nothing (the set stays fixed). Call before any
 * thread looks keys up. 0, or KQ_EIO (the file cannot be stat'ed), KQ_ENOMEM.
 */
int kq_auth_watch(kq_auth_keys *keys, const char *path, int interval_ms, char *errstr,
                  size_t errlen);

/* Reloads a watched set has done (0 for a fixed set). */
unsigned long kq_auth_reloads(const kq_auth_keys *keys);

/* Entries in file order. The returned name is owned by `keys`. */
size_t kq_auth_count(const kq_auth_keys *keys);
const char *kq_auth_name(const kq_auth_keys *keys, size_t i);
unsigned kq_auth_roles(const kq_auth_keys *keys, size_t i);

/*
 * Look up a presented key. Returns 0 and sets *name (owned by `keys`) and
 * *roles when the SHA-256 of `token` equals an entry's hash; KQ_ENOTFOUND
 * otherwise (also for an empty or over-long token). `keys` may be NULL (no
 * key is valid).
 */
int kq_auth_lookup(const kq_auth_keys *keys, const char *token, size_t len, const char **name,
                   unsigned *roles);

/* Does a holder of `have` satisfy `need` (one or more role bits, all required)? */
int kq_auth_has_role(unsigned have, unsigned need);

/* "writer,reader" -> bits. Unknown, empty or repeated roles give KQ_EINVAL. */
int kq_auth_roles_parse(const char *s, size_t len, unsigned *out, char *errstr, size_t errlen);

/* Bits -> "admin,writer" in canonical order into out (at least 40 bytes). */
void kq_auth_roles_format(unsigned roles, char *out, size_t outlen);

/* Role name of one bit, or NULL. */
const char *kq_auth_role_name(unsigned bit);

/* 1 when `name` matches [A-Za-z0-9._-]{1,64}. */
int kq_auth_name_valid(const char *name);

/*
 * Generate a new key into out (outlen > KQ_AUTH_KEY_LEN; NUL-terminated).
 * Fails with KQ_EIO if the kernel gives no randomness.
 */
int kq_auth_generate_key(char *out, size_t outlen, char *errstr, size_t errlen);

/* SHA-256 of `len` bytes as 64 lowercase hex digits + NUL into hex[65]. */
int kq_auth_hash_hex(const char *data, size_t len, char hex[65]);

/*
 * Append an entry for a new key to the keys file at `path`, creating it with
 * mode 0600 if missing. The file is locked (flock) and parsed first: a broken
 * file or an existing `name` (KQ_EEXIST) leaves it unchanged.
 */
int kq_auth_file_append(const char *path, const char *name, unsigned roles, const char *hash_hex,
                        char *errstr, size_t errlen);

/*
 * Change the entry `name` of the keys file at `path`: with hash_hex NULL,
 * remove it (revoke); else give it that hash, keeping its roles (rotate).
 * Comments and the other lines stay as they are. Under the file's lock (the
 * one kq_auth_file_append takes); the new text is parsed first, written to
 * a temporary file beside it (mode 0600, fsync'ed) and renamed over `path`,
 * so a service reloading it sees the old file or the new one. KQ_ENOTFOUND
 * when there is no such entry (or no file); a broken file is left unchanged.
 */
int kq_auth_file_change(const char *path, const char *name, const char *hash_hex, char *errstr,
                        size_t errlen);

#endif
