/*
 * wk_policy.h — the worker's retry policy: given the outcome of one attempt,
 * retry or not, and after how long.
 *
 *   HTTP  2xx                         success
 *         408, 429                    retry
 *         500, 502, 503, 504          retry
 *         any other 1xx/3xx/4xx/5xx   permanent failure (redirects are not
 *                                     followed, so a 3xx is a failure)
 *   SMTP  2xx/3xx final reply         success
 *         4xx                         retry (transient, RFC 5321)
 *         5xx                         permanent failure
 *   transport: connection error, connect timeout, total timeout, other I/O
 *                                     retry
 *   refused by the outbound guard, response over the size cap, a request the
 *   engine could not build           permanent failure
 *
 * Backoff is exponential with full jitter: before attempt n+1 (attempt n has
 * just failed, n >= 1) the delay is uniform in [0, min(cap, base * factor^(n-1))]
 * milliseconds. A Retry-After (delta seconds or HTTP-date) on a retryable
 * response (429, 503, any of the retryable statuses) replaces the
 * jittered delay, capped at `cap`. No retry once `max_attempts` attempts
 * have been made.
 *
 * The random source is injected (wk_rng_fn) so tests can pin it; wk_rng_*
 * is a small xorshift generator seeded from kq_rand_bytes (getrandom(2)) for production.
 * Everything here is pure and reentrant; a wk_rng belongs to one thread.
 */
#ifndef WK_POLICY_H
#define WK_POLICY_H

#include <stdint.h>
#include <time.h>

#include "wk_outcome.h"

#define WK_POLICY_DEFAULT_BASE_MS 1000
#define WK_POLICY_DEFAULT_FACTOR 2
#define WK_POLICY_DEFAULT_CAP_MS 60000
#define WK_POLICY_DEFAULT_MAX_ATTEMPTS 5

typedef struct wk_policy {
    long base_ms;          /* first backoff bound, > 0 (default 1 s) */
    unsigned factor;       /* growth per attempt, >= 1 (default 2) */
    long cap_ms;           /* bound on every delay, Retry-After included, >= base_ms (60 s) */
    unsigned max_attempts; /* attempts in all, >= 1 (default 5) */
} wk_policy;

/* Fill *p with the defaults above. */
void wk_policy_defaults(wk_policy *p);

/* 0, or KQ_EINVAL with the field at fault in errstr. */
int wk_policy_validate(const wk_policy *p, char *errstr, size_t errlen);

/* Uniform 64-bit random numbers from an injected source. */
typedef uint64_t (*wk_rng_fn)(void *arg);

typedef struct wk_rng {
    uint64_t s;
} wk_rng;
/* Seed from kq_rand_bytes (falls back to time and address bits). */
void wk_rng_seed(wk_rng *r);
/* wk_rng_fn over a wk_rng (arg is the wk_rng *). */
uint64_t wk_rng_next(void *arg);

typedef enum wk_verdict {
    WK_VERDICT_SUCCESS = 0, /* the step is done */
    WK_VERDICT_RETRY,       /* try again after delay_ms */
    WK_VERDICT_FAIL,        /* permanent failure: no retry (reason says why) */
} wk_verdict;

typedef struct wk_decision {
    wk_verdict verdict;
    long delay_ms;      /* WK_VERDICT_RETRY only, else -1 */
    const char *reason; /* static string: "2xx", "retryable status", "attempts exhausted", ... */
} wk_decision;

/*
 * Is this outcome, taken alone, retryable / a success? (No attempt count.)
 * Returns WK_VERDICT_SUCCESS, _RETRY or _FAIL and sets *reason (static).
 */
wk_verdict wk_policy_classify(const wk_outcome *o, const char **reason);

/*
 * The full decision after attempt number `attempt` (1-based) ended with `o`.
 * The delay is drawn from rng(rng_arg); o->retry_after_s (>= 0) replaces it.
 */
wk_decision wk_policy_decide(const wk_policy *p, const wk_outcome *o, unsigned attempt,
                             wk_rng_fn rng, void *rng_arg);

/* The jittered delay alone: uniform in [0, min(cap, base * factor^(attempt-1))]. */
long wk_policy_backoff_ms(const wk_policy *p, unsigned attempt, wk_rng_fn rng, void *rng_arg);

/*
 * Parse a Retry-After value: delta-seconds ("120") or an HTTP-date
 * ("Wed, 21 Oct 2015 07:28:00 GMT", RFC 850 and asctime forms too), relative
 * to `now`. A date in the past gives 0. Returns the seconds (>= 0), or -1 if
 * `v` is neither. Surrounding blanks are ignored.
 */
long wk_policy_parse_retry_after(const char *v, time_t now);

/*
 * Does the outcome count against the destination's circuit breaker?
 * Transport errors (not guard refusals), HTTP 5xx, 408 and 429, SMTP 4xx.
 * Returns 1 or 0.
 */
int wk_policy_is_destination_failure(const wk_outcome *o);

#endif
