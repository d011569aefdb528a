/*
 * wk_record.h — the attempt-record client of kcqrs-worker: POST
 * /internal/v1/runs/{run_id}/attempts on kcqrs-commands with the worker's
 * Bearer key, many requests in flight at once.
 *
 * It runs its own thread with its own libcurl multi handle (separate from the
 * action engine: no outbound guard, since it only talks to kcqrs-commands).
 * wk_recorder_submit queues a record (copied) from any thread; the thread
 * sends it; a connection error, a timeout, a 5xx or a 429 is retried with
 * exponential backoff (same body) until an answer that is not one of those
 * arrives or the recorder is freed. Then the result (HTTP status, "version"
 * of a 200, error code of a 4xx) is queued for wk_recorder_take and `notify`
 * is called (from the recorder's thread: it must only wake the owner up).
 *
 * Batches (batch_max > 1): records waiting to be sent go several at a time
 * (up to batch_max, at most WK_RECORD_BATCH_BYTES of body) in one POST
 * <base>/internal/v1/runs/attempts, at most WK_RECORD_BATCH_FLIGHT such
 * requests in flight; kcqrs-commands decides them in order and commits them
 * in one transaction, and answers each item on its own: an item's 5xx or 429
 * is retried like a single record's, any other answer is its result. The
 * whole request failing (no answer, 5xx, 429) retries every item in it. A
 * kcqrs-commands without the route (404, 405) switches the recorder to one
 * request per record for good; any other 4xx of the whole request (400, 413,
 * 401, ...) sends its items one by one, so each gets its own answer. Records
 * wait for nothing: a batch is whatever queued while the previous requests
 * were in flight.
 *
 * Reachability: while idle the thread probes GET <base>/health every 2 s;
 * wk_recorder_reachable says whether the last exchange with kcqrs-commands
 * got an HTTP answer.
 */
#ifndef WK_RECORD_H
#define WK_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Outcomes of a recorded attempt (the attempts API's "outcome"). */
#define WK_OUTCOME_RETRY 1
#define WK_OUTCOME_SUCCEEDED 2
#define WK_OUTCOME_FAILED 3

/* Body bytes of one batch request (kcqrs-commands' default body cap is 64 KiB). */
#define WK_RECORD_BATCH_BYTES 32768
/* Batch requests in flight at once (one-per-record mode: 64 connections). */
#define WK_RECORD_BATCH_FLIGHT 4
/* Most records per batch request (the route takes at most 256). */
#define WK_RECORD_BATCH_MAX 256

typedef struct wk_recorder wk_recorder;

typedef struct wk_record_settings {
    const char *base_url;      /* "http://127.0.0.1:8080" (no trailing slash needed) */
    const char *key;           /* Bearer key */
    long timeout_ms;           /* per request (> 0) */
    long retry_base_ms;        /* first retry delay (> 0) */
    long retry_cap_ms;         /* bound on the retry delay (>= base) */
    int batch_max;             /* records per batch request; 0 or 1: one request per record */
    const char *ca_file;       /* PEM CA bundle for an https base_url (copied); NULL: system */
    void (*notify)(void *arg); /* a result is ready (recorder thread) */
    void *notify_arg;
} wk_record_settings;

typedef struct wk_record_result {
    void *tag;       /* as submitted */
    int status;      /* HTTP status of the final answer (200, 409, 4xx) */
    int64_t version; /* 200: the answer's "version", else -1 */
    char code[64];   /* 4xx: error.code of the answer ("attempt_recorded", ...) */
    char message[256];
    unsigned retries; /* sends that were retried before this answer */
} wk_record_result;

/* New recorder and its thread. NULL with errstr on a bad setting or failure. */
wk_recorder *wk_recorder_new(const wk_record_settings *s, char *errstr, size_t errlen);

/*
 * Stop the thread and free. Records not answered yet are dropped (their
 * results never come): the caller forgets them.
 */
void wk_recorder_free(wk_recorder *r);

/*
 * Queue POST <base>/internal/v1/runs/<run_id>/attempts with `body` (a JSON
 * object, copied) and, when not NULL, `traceparent` (the attempt's W3C trace
 * context: the request's traceparent header alone, the item's "traceparent"
 * member in a batch). 0, KQ_EINVAL (run id with characters other than
 * [A-Za-z0-9._-], a traceparent that is not one) or KQ_ENOMEM.
 */
int wk_recorder_submit(wk_recorder *r, const char *run_id, const char *body,
                       const char *traceparent, void *tag);

/* Move up to `max` finished results into out; returns how many. */
size_t wk_recorder_take(wk_recorder *r, wk_record_result *out, size_t max);

/* Records submitted whose result was not taken yet. */
size_t wk_recorder_pending(wk_recorder *r);

/* 1 if the last exchange with kcqrs-commands got an HTTP answer. */
int wk_recorder_reachable(wk_recorder *r);

/* Prometheus lines: kcqrs_worker_records_total{result="ok|conflict|error"},
 * kcqrs_worker_record_retries_total, kcqrs_worker_records_pending,
 * kcqrs_worker_record_requests_total{route="single|batch"}. */
void wk_recorder_metrics(wk_recorder *r, FILE *out);

/*
 * The JSON body of one record (POST /internal/v1/runs/{id}/attempts):
 * outcome WK_OUTCOME_*. status_code < 0 and error NULL are omitted;
 * next_delay_ms only for retry. Returns a malloc'd string or NULL (no memory).
 */
char *wk_record_body(uint32_t step, uint32_t attempt, int status_code, const char *error,
                     int64_t duration_ms, int64_t next_delay_ms, const char *delivery_id,
                     int outcome);

#endif
