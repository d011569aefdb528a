/*
 * kq_limit.h — token buckets per key (an API key's name, a client address, a
 * workflow id), in a table of bounded size: the rate limits of the HTTP
 * services.
 *
 * What it is for
 *   kq_http limits the requests of each API key (KCQRS_RATE_KEY_PER_S and
 *   KCQRS_RATE_KEY_BURST); kcqrs-commands limits failed webhook attempts per
 *   client address and per workflow (KCQRS_HOOK_FAIL_PER_MIN and
 *   KCQRS_HOOK_FAIL_BURST). A bucket holds up to `burst` tokens and gains
 *   `rate` tokens per second; a request (or a failure) takes one.
 *
 * What it owns
 *   Everything, allocated once by kq_limit_new: `capacity` entries split over
 *   16 shards, each shard a chained hash table (SipHash-2-4 with a random key,
 *   so that chosen keys cannot pile up in one chain) and an LRU list. A key not
 *   in the table starts with a full bucket; when a shard is full the entry
 *   used least recently is evicted (a forgotten bucket starts full again: the
 *   table holds the keys that were active most recently). Keys are compared
 *   on their first KQ_LIMIT_KEY_MAX bytes and their hash.
 *
 * Cost: O(1) per call (one hash, one chain walk whose expected length is at
 *   most 1, a few list moves) under the shard's mutex.
 *
 * Threads: every function but kq_limit_new/kq_limit_free may be called from
 *   any thread. State is per process.
 */
#ifndef KQ_LIMIT_H
#define KQ_LIMIT_H

#include <stddef.h>
#include <stdint.h>

#define KQ_LIMIT_KEY_MAX 95

typedef struct kq_limit kq_limit;

/*
 * A table of at most `capacity` buckets (at least 16) of `burst` tokens
 * refilled at `rate_per_s` tokens per second (both > 0). NULL when out of
 * memory, when the kernel gives no randomness, or on a bad argument. The
 * caller owns the table (kq_limit_free).
 */
kq_limit *kq_limit_new(size_t capacity, double rate_per_s, double burst);

/* Free the table. NULL is a no-op. */
void kq_limit_free(kq_limit *l);

/*
 * Take one token from the bucket of `key` at `now_ms` (any monotonic clock in
 * milliseconds). Returns 1 when it was taken; 0 when the bucket is empty and
 * then *retry_after_s (may be NULL) is the whole seconds (>= 1) until a token
 * is back.
 */
int kq_limit_take(kq_limit *l, const char *key, int64_t now_ms, int *retry_after_s);

/*
 * 1 when the bucket of `key` holds a token at `now_ms` (nothing is taken);
 * else 0 with *retry_after_s as for kq_limit_take.
 */
int kq_limit_check(kq_limit *l, const char *key, int64_t now_ms, int *retry_after_s);

/* Entries in use and entries evicted so far (for metrics and tests). */
size_t kq_limit_size(kq_limit *l);
uint64_t kq_limit_evictions(kq_limit *l);

/* Milliseconds of CLOCK_MONOTONIC: the `now_ms` the services pass. */
int64_t kq_limit_now_ms(void);

#endif
