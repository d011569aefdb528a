/*
 * wk_attempt.h — one attempt of a run's current step: the action built from
 * the run's RunStarted, and what the attempt's outcome is recorded as.
 *
 * Building (wk_action_build) reads the RunStarted record value the run table
 * keeps (wk_run.h: r->started), takes the step's definition out of it and
 * turns it into a request the engine can send:
 *   - delivery id "<run_id>.<step>" (the same for every attempt of a step,
 *     so receivers can drop repeats), checked with wk_delivery_id_check;
 *   - HTTP: method, URL, the action's headers (at most
 *     WK_REQUEST_HEADERS_MAX), the body rendered from its template against
 *     the trigger payload (JSON mode when the Content-Type is JSON or absent,
 *     text otherwise), or, without a template, the payload itself for every
 *     method but GET; the run's signing_secret as the HMAC key;
 *   - email: recipients, the subject rendered in header mode, the body in
 *     text mode, the SMTP server and credentials of the worker (wk_smtp_cfg);
 *   - the breaker key of the destination (scheme://host:port), when the URL
 *     has one (has_dest).
 * A step that cannot be built (RunStarted that does not decode, no such
 * step, bad payload, template error, no SMTP server ...) is not an error of
 * the worker: it is a failed attempt, recorded with the reason.
 *
 * Concluding (wk_attempt_conclude) turns the engine's outcome and the retry
 * policy's decision into the record: outcome (retry / succeeded / failed as
 * in the attempts API), the retry delay, the status code and the one-line
 * error (printable ASCII).
 *
 * Pure functions over the caller's data: no I/O, no threads, reentrant.
 */
#ifndef WK_ATTEMPT_H
#define WK_ATTEMPT_H

#include <stddef.h>
#include <stdint.h>

#include "wk_breaker.h"
#include "wk_http.h"
#include "wk_policy.h"
#include "wk_record.h"
#include "wk_smtp.h"

struct kq_keyring; /* kq_keyring.h */

/* wk_action_build: the step cannot be built; a failed attempt (errstr says why). */
#define WK_ACTION_UNBUILDABLE 1
/* wk_action_build: the sealed signing secret's data key is not in the key topic and its
 * subject was not erased (a->key_subject names it): not an attempt, the run waits. */
#define WK_ACTION_KEY_MISSING 2
#define WK_KEY_SUBJECT_MAX 160

#define WK_ATTEMPT_ERROR_MAX 512

typedef enum wk_action_kind { WK_ACTION_NONE = 0, WK_ACTION_HTTP, WK_ACTION_EMAIL } wk_action_kind;

/* The worker's SMTP settings (any may be NULL; url NULL: email actions fail). */
typedef struct wk_smtp_cfg {
    const char *url, *from, *user, *password;
} wk_smtp_cfg;

/*
 * A built action. `http` or `smtp` (by kind) points into the strings the
 * action owns; it stays valid until wk_action_free.
 */
typedef struct wk_action {
    wk_action_kind kind;
    char delivery_id[WK_DELIVERY_ID_MAX + 1];
    int has_dest; /* dest is the breaker key of the destination */
    char dest[WK_BREAKER_KEY_MAX];
    wk_http_request http;
    wk_smtp_request smtp;
    /* owned */
    char *url, *body, *subject, *secret;
    char **strs; /* header names and values, or recipients */
    size_t nstrs;
    wk_header hdrs[WK_REQUEST_HEADERS_MAX];
    char key_subject[WK_KEY_SUBJECT_MAX]; /* WK_ACTION_KEY_MISSING: "workflow/<id>" */
} wk_action;

/*
 * Build the action of step `step` of run `run_id` from its RunStarted record
 * value (`started`, `len`: read only). Returns 0 (built: free it with
 * wk_action_free), WK_ACTION_UNBUILDABLE (errstr: the reason for the failed
 * attempt; nothing to free), WK_ACTION_KEY_MISSING (a->key_subject set, nothing else;
 * nothing to free), KQ_ENOMEM, or KQ_EKAFKA / KQ_ETIMEDOUT when the
 * sealed signing secret's data key could not be read from the key topic now
 * (not an attempt: try later). A sealed signing secret (ev_secret.h) is
 * opened with `keys` (NULL: such a run is unbuildable). *a is overwritten.
 */
int wk_action_build(wk_action *a, const uint8_t *started, size_t len, const char *run_id,
                    uint32_t step, const wk_smtp_cfg *smtp, struct kq_keyring *keys, char *errstr,
                    size_t errlen);

/*
 * Hand a built action to the engine (wk_engine_submit_http or _smtp: the
 * engine copies it; on 0 cb runs once later). Errors as those calls.
 */
int wk_action_submit(const wk_action *a, wk_engine *e, wk_done_fn cb, void *arg, char *errstr,
                     size_t errlen);

/* Free what the action owns (a itself is the caller's). NULL-safe, idempotent. */
void wk_action_free(wk_action *a);

/* What one attempt is recorded as. */
typedef struct wk_attempt_result {
    int outcome;           /* WK_OUTCOME_* (wk_record.h) */
    int64_t next_delay_ms; /* retry only, else -1 */
    int status_code;       /* HTTP status / SMTP reply, -1 when none */
    int has_error;
    char error[WK_ATTEMPT_ERROR_MAX]; /* printable ASCII, when has_error */
    const char *reason;               /* the policy's reason (static) */
} wk_attempt_result;

/*
 * The record of attempt number `attempt` (1-based) that ended with `o` (not
 * WK_R_ABORTED: that is no attempt), by the policy p with the random source
 * rng(rng_arg).
 */
void wk_attempt_conclude(const wk_policy *p, const wk_outcome *o, unsigned attempt, wk_rng_fn rng,
                         void *rng_arg, wk_attempt_result *res);

/* The record of an attempt that could not be built or sent: failed, with `why`. */
void wk_attempt_failed(const char *why, wk_attempt_result *res);

/* Replace bytes outside printable ASCII with '?' (the StepAttempted error is ASCII). */
void wk_attempt_clean_text(char *s);

#endif
