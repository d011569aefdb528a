/*
 * wk_http.h — the worker's action engine: many outbound HTTP requests (and
 * SMTP deliveries, wk_smtp.h) in flight at once on one libcurl multi handle.
 *
 * Use from ONE thread (the worker's engine thread): wk_engine_submit_* adds
 * a transfer, wk_engine_run waits (curl_multi_poll) and calls the done
 * callback of every transfer that ended, on that same thread. A callback
 * may submit new transfers. wk_engine_wakeup is the only call that is safe
 * from other threads: it interrupts a wk_engine_run that is waiting. A
 * callback must not call wk_engine_run or wk_engine_free.
 *
 * Every transfer is guarded (wk_guard.h: scheme allow-list, no redirects, no
 * proxy, resolved address checked unless allow_private), bounded (connect
 * and total timeouts, a response size cap enforced by Content-Length and in
 * the write callback; the body itself is counted and dropped), and signed
 * (wk_hmac.h: X-Kcqrs-Delivery always, X-Kcqrs-Signature when a secret is
 * given). Connections and DNS answers are reused across transfers by the
 * multi handle; easy handles are pooled.
 *
 * The outcome (wk_outcome.h) says what happened; whether to retry is the
 * policy's business (wk_policy.h), and so is the circuit breaker
 * (wk_breaker.h): the engine sends whatever it is given.
 */
#ifndef WK_HTTP_H
#define WK_HTTP_H

#include <stddef.h>

#include "wk_outcome.h"

#define WK_DEFAULT_CONNECT_TIMEOUT_MS 5000
#define WK_DEFAULT_TOTAL_TIMEOUT_MS 30000
#define WK_DEFAULT_RESPONSE_MAX (1024 * 1024) /* bytes of response body */
#define WK_DEFAULT_MAX_CONNECTIONS 256        /* open at once; more transfers wait in libcurl */
#define WK_DEFAULT_USER_AGENT "kcqrs-worker/1"
#define WK_REQUEST_BODY_MAX (8 * 1024 * 1024)
#define WK_DELIVERY_ID_MAX 200
#define WK_REQUEST_HEADERS_MAX 64 /* headers an action may add */

typedef struct wk_settings {
    long connect_timeout_ms; /* > 0 */
    long total_timeout_ms;   /* > 0, whole transfer including connect */
    size_t response_max;     /* > 0; a larger response ends as WK_R_TOO_LARGE */
    long max_connections;    /* > 0 */
    int allow_private;       /* 1: loopback/private/link-local destinations allowed */
    const char *user_agent;  /* copied; NULL: WK_DEFAULT_USER_AGENT */
    const char *ca_file;     /* PEM CA bundle for https/smtps, copied; NULL: the system's */
} wk_settings;

void wk_settings_defaults(wk_settings *s);

typedef struct wk_header {
    const char *name;  /* an HTTP token */
    const char *value; /* no CR, LF or NUL */
} wk_header;

typedef struct wk_http_request {
    const char *method;       /* GET, POST, PUT, PATCH or DELETE */
    const char *url;          /* http:// or https:// */
    const wk_header *headers; /* names: HTTP tokens <= 256 bytes; values <= 8192 bytes */
    size_t n_headers;         /* <= WK_REQUEST_HEADERS_MAX */
    const char *body;         /* may be NULL when body_len is 0; sent for every method but GET */
    size_t body_len;          /* <= WK_REQUEST_BODY_MAX */
    const char *delivery_id;  /* required: [A-Za-z0-9_-] and inner dots, 1..200 bytes */
    const char *secret;       /* HMAC key; NULL or "" sends no signature */
    size_t secret_len;
    const char *traceparent; /* W3C trace context sent as `traceparent` (replacing an action
                                header of that name); NULL: none */
} wk_http_request;

typedef void (*wk_done_fn)(void *arg, const wk_outcome *o);

typedef struct wk_engine wk_engine;

/* New engine (owned by the caller, wk_engine_free). NULL with errstr on a bad setting. */
wk_engine *wk_engine_new(const wk_settings *s, char *errstr, size_t errlen);

/*
 * Free the engine. Transfers still in flight end with WK_R_ABORTED: their
 * callbacks run from here, so the callers' args can be freed; a submit from
 * such a callback fails (KQ_EINVAL, "shutting down").
 */
void wk_engine_free(wk_engine *e);

/*
 * Start one HTTP request. Everything in *req is copied: the caller may free
 * it on return. On 0, cb(arg, outcome) is called exactly once, later, from
 * wk_engine_run (or wk_engine_free). On error nothing was started and cb
 * will not be called: KQ_EINVAL (malformed request: method, header, delivery
 * id, URL), KQ_EUNSUPPORTED (scheme not allowed), KQ_ERANGE (body too big),
 * KQ_ENOMEM; errstr says which.
 */
int wk_engine_submit_http(wk_engine *e, const wk_http_request *req, wk_done_fn cb, void *arg,
                          char *errstr, size_t errlen);

/*
 * Drive the transfers: wait up to timeout_ms for activity (0: do not wait;
 * a due libcurl timer or a ready socket ends the wait early), let libcurl
 * work, then run the callbacks of the transfers that ended. Returns how
 * many callbacks ran (>= 0; 0 after a wait with nothing ended) or KQ_EIO.
 */
int wk_engine_run(wk_engine *e, int timeout_ms);

/* Transfers submitted and not yet reported. */
size_t wk_engine_in_flight(const wk_engine *e);

/* Interrupt a waiting wk_engine_run (any thread). */
void wk_engine_wakeup(wk_engine *e);

/*
 * Prometheus text of the engine's counters into buf (NUL-terminated):
 *   kcqrs_worker_transfers_total{proto="http|smtp",result="response|connect|..."}
 *   kcqrs_worker_responses_total{proto="http|smtp",class="2xx|3xx|4xx|5xx"}
 *   kcqrs_worker_in_flight
 * Safe from any thread (the counters are atomics). Returns the length or
 * KQ_ERANGE when buf is too small.
 */
int wk_engine_metrics(wk_engine *e, char *buf, size_t len);

/* 0 if `id` is a valid delivery id (see wk_http_request), else KQ_EINVAL. */
int wk_delivery_id_check(const char *id, char *errstr, size_t errlen);

#endif
