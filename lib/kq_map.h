/*
 * kq_map.h — the one hash map of kcqrs: keys of bytes (usually strings) to
 * values of one fixed size stored inline.
 *
 * What it is for
 *   Every in-memory table keyed by an id: the command side's aggregates and
 *   idempotency keys, the worker's runs, the projectors' per-batch tables.
 *
 * What it owns
 *   A copy of every key, and the values: each entry is one allocation holding
 *   the value (aligned for any type, zeroed when created) followed by the key
 *   and a NUL. A value stays at the same address until its entry is removed,
 *   the map cleared or freed (growing moves entry pointers, not entries), so
 *   callers may keep pointers to values. What a value itself points to is the
 *   caller's; the optional `clear` callback given at creation frees it when
 *   the entry goes away (remove, clear, free).
 *
 * Keys are (pointer, length) internally; the string functions pass strlen(key).
 * Chained hashing (FNV-1a, power-of-two buckets, doubled at load factor 1).
 * Iteration order is unspecified.
 *
 * Threads: none of its own; a map is used by one thread at a time (the
 * caller locks if it shares one).
 */
#ifndef KQ_MAP_H
#define KQ_MAP_H

#include <stddef.h>

typedef struct kq_map kq_map;

/*
 * A new empty map of values of `valsize` bytes. `clear` (may be NULL) frees
 * what a value owns, not the value. NULL when out of memory. Free with
 * kq_map_free.
 */
kq_map *kq_map_new(size_t valsize, void (*clear)(void *val));

/* Remove every entry (calling clear) and free the map. NULL is a no-op. */
void kq_map_free(kq_map *m);

/* Remove every entry (calling clear); the map stays usable. */
void kq_map_clear(kq_map *m);

/* Number of entries. */
size_t kq_map_count(const kq_map *m);

/* The value of `key`, or NULL. The pointer is owned by the map. */
void *kq_map_get(const kq_map *m, const char *key);
void *kq_map_getb(const kq_map *m, const void *key, size_t keylen);

/*
 * The value of `key`, created zeroed when missing (*created = 1, else 0;
 * `created` may be NULL). The key is copied. NULL when out of memory (the map
 * is unchanged). The pointer is owned by the map.
 */
void *kq_map_put(kq_map *m, const char *key, int *created);
void *kq_map_putb(kq_map *m, const void *key, size_t keylen, int *created);

/*
 * The key of the entry whose value is `val` (a pointer kq_map_get/put
 * returned, its entry still in the map m), NUL-terminated, owned by the map;
 * *keylen (may be NULL) its length. For callers that keep value pointers
 * (an expiry queue) and must remove the entry later.
 */
const char *kq_map_key_of(const kq_map *m, const void *val, size_t *keylen);

/* Remove `key` (calling clear on its value). 0, or KQ_ENOTFOUND. */
int kq_map_remove(kq_map *m, const char *key);
int kq_map_removeb(kq_map *m, const void *key, size_t keylen);

/*
 * Call fn(arg, key, keylen, val) for every entry until fn returns non-zero;
 * returns that value, or 0 after the last entry. key is NUL-terminated (a
 * byte key holding a NUL reads short as a string; use keylen). fn must not
 * insert; it may remove the entry it was given, and no other.
 */
typedef int (*kq_map_fn)(void *arg, const char *key, size_t keylen, void *val);
int kq_map_each(kq_map *m, kq_map_fn fn, void *arg);

#endif
