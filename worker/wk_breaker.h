/*
 * wk_breaker.h — per-destination circuit breakers for the worker.
 *
 * A destination is scheme://host:port (wk_breaker_key builds it from a URL,
 * with the scheme's default port filled in), so every action sending to the
 * same server shares one breaker.
 *
 *   closed     requests pass; `failure_threshold` consecutive destination
 *              failures (wk_policy_is_destination_failure) open it
 *   open       requests are refused (wk_breaker_allow returns 0) until
 *              `cooldown_ms` has passed since it opened, then it half-opens
 *   half-open  up to `half_open_probes` requests pass as probes; a success
 *              closes it, a failure re-opens it (cool-down starts again)
 *
 * Every state change is logged (kq_log_info/warn) and passed to the change
 * callback exactly once; wk_breaker_metrics writes Prometheus text: the
 * current state per destination and the number of transitions into each
 * state.
 *
 * The clock is injected (milliseconds, any monotonic origin) so tests drive
 * time by hand. A wk_breaker_set is guarded by a mutex: the worker's engine
 * thread calls allow/record, a metrics thread may call wk_breaker_metrics.
 * Callbacks run with that mutex held: they must not call back into the set.
 */
#ifndef WK_BREAKER_H
#define WK_BREAKER_H

#include <stddef.h>
#include <stdint.h>

#define WK_BREAKER_DEFAULT_FAILURES 5
#define WK_BREAKER_DEFAULT_COOLDOWN_MS 30000
#define WK_BREAKER_DEFAULT_PROBES 1
#define WK_BREAKER_KEY_MAX 300 /* scheme://host:port, bytes with the NUL */

typedef enum wk_breaker_state {
    WK_BREAKER_CLOSED = 0,
    WK_BREAKER_OPEN = 1,
    WK_BREAKER_HALF_OPEN = 2,
} wk_breaker_state;

typedef struct wk_breaker_cfg {
    unsigned failure_threshold; /* consecutive failures that open it, >= 1 (5) */
    long cooldown_ms;           /* open -> half-open after this, > 0 (30 s) */
    unsigned half_open_probes;  /* requests let through while half-open, >= 1 (1) */
} wk_breaker_cfg;

typedef uint64_t (*wk_clock_fn)(void *arg); /* now, in ms */
typedef void (*wk_breaker_change_fn)(void *arg, const char *dest, wk_breaker_state from,
                                     wk_breaker_state to);

typedef struct wk_breaker_set wk_breaker_set;

void wk_breaker_defaults(wk_breaker_cfg *cfg);
const char *wk_breaker_state_name(wk_breaker_state s); /* "closed", "open", "half_open" */

/* The default clock: CLOCK_MONOTONIC in ms (arg unused). */
uint64_t wk_breaker_clock_monotonic(void *arg);

/*
 * New empty set. clock NULL means wk_breaker_clock_monotonic; on_change may
 * be NULL. Returns NULL with errstr filled on a bad cfg or no memory. The
 * caller owns the set and frees it with wk_breaker_free.
 */
wk_breaker_set *wk_breaker_new(const wk_breaker_cfg *cfg, wk_clock_fn clock, void *clock_arg,
                               wk_breaker_change_fn on_change, void *change_arg, char *errstr,
                               size_t errlen);
void wk_breaker_free(wk_breaker_set *set);

/*
 * May a request go to `dest` now? 1 yes, 0 no (open, or half-open with all
 * probes out). A yes while half-open counts as a probe in flight, so every
 * allowed request must be followed by wk_breaker_record.
 */
int wk_breaker_allow(wk_breaker_set *set, const char *dest);

/* Record the end of an allowed request: failure 1 = a destination failure. */
void wk_breaker_record(wk_breaker_set *set, const char *dest, int failure);

/*
 * Milliseconds until `dest` lets a probe through: 0 unless it is open (then
 * the rest of the cool-down, >= 1). For scheduling the retry of a refused
 * request.
 */
long wk_breaker_retry_in_ms(wk_breaker_set *set, const char *dest);

/* Current state (applies the cool-down first); CLOSED for an unknown dest. */
wk_breaker_state wk_breaker_get(wk_breaker_set *set, const char *dest);

/*
 * Prometheus text for every known destination into buf (NUL-terminated):
 *   kcqrs_worker_breaker_state{destination="..."} 0|1|2
 *   kcqrs_worker_breaker_transitions_total{destination="...",to="open"} n
 * Returns the length, or KQ_ERANGE if buf is too small.
 */
int wk_breaker_metrics(wk_breaker_set *set, char *buf, size_t len);

/*
 * "scheme://host:port" of an absolute URL (lower-cased scheme and host,
 * default port for http 80, https 443, smtp 25, smtps 465) into buf
 * (WK_BREAKER_KEY_MAX is enough). 0 or KQ_EINVAL.
 */
int wk_breaker_key(const char *url, char *buf, size_t len, char *errstr, size_t errlen);

#endif
