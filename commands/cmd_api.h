/*
 * cmd_api.h — the HTTP side of kcqrs-commands: routes, request parsing, answers.
 *
 * What it is for
 *   Turns a request of DESIGN.md section 8 into a cmd_command and hands it to
 *   the writer (cmd_writer_submit), then turns the writer's cmd_result into
 *   the HTTP answer. Everything that can be checked without the aggregate's
 *   state is checked here, on the HTTP thread, before the writer sees the
 *   command: the path id (one no aggregate can have is 404 at once), the
 *   JSON body by the aggregate type's parse hook (cmd_aggregate.h:
 *   cmd_resource.c, cmd_workflow.c, cmd_run.c; one 400 detail per offending
 *   field, "actions[2].url"), the Idempotency-Key and X-Correlation-Id
 *   headers (1..255 visible ASCII characters) and If-Match ("<version>" or
 *   *). Bad input is answered 400 at once and never reaches the writer. This
 *   file owns routing, headers, the command hash and the answers; it parses
 *   no body itself (a trigger's payload: cmd_run_payload).
 *
 *   Routes (role writer unless said; admin implies every role):
 *     POST   /api/v1/resources        201, Location, ETag
 *     PUT    /api/v1/resources/{id}   200, ETag
 *     DELETE /api/v1/resources/{id}   200, ETag
 *     POST   /api/v1/workflows        201 + "webhook_secret", Location, ETag
 *     PUT    /api/v1/workflows/{id}   200 (+ "webhook_secret" after rotate_secret)
 *     DELETE /api/v1/workflows/{id}   200
 *     POST   /api/v1/workflows/{id}/runs   manual trigger: 202, Location /api/v1/runs/{run}
 *     POST   /hooks/{workflow_id}     public; X-Webhook-Secret and/or X-Hub-Signature-256
 *                                     (sha256=<hex HMAC-SHA256 of the raw body with the
 *                                     secret>); each one given must hold. Neither: 401
 *                                     invalid_webhook_secret at once; malformed: 400; an
 *                                     unknown, deleted or impossible workflow id is the
 *                                     401 of a wrong secret; every 401 counts as a failed
 *                                     attempt of the address and the workflow, and past
 *                                     their limits 429 rate_limited + Retry-After
 *                                     (cmd_hookguard.h); 202 as the manual trigger, actor
 *                                     "webhook"
 *     POST   /internal/v1/runs/{id}/attempts   role worker: the worker records one attempt
 *     POST   /internal/v1/runs/attempts        role worker: several runs' attempts in one
 *                                     request and one transaction, each answered on its
 *                                     own (cmd_api_batch.c)
 *   Success body {"id","version","consistency_token"}, the token also in
 *   X-Consistency-Token; a trigger adds "run_id" (= id) and "workflow_id".
 *   409/412 carry the current version in the error's details
 *   ({"field":"version","current_version":N}) and in ETag; an attempt's 409
 *   (attempt_recorded, attempt_gap, step_mismatch, run_finished) names the
 *   field "attempt". A trigger's body is any JSON object (empty = {}),
 *   checked for Content-Type only when present.
 *
 *   The command hash (idempotency) is SHA-256 over method, NUL, path, NUL,
 *   body bytes: a retry must repeat the request byte for byte. A POST without
 *   an id gets a UUID v4; its retry with the same key answers the same id.
 *   The correlation id is X-Correlation-Id, or a new UUID v4. A webhook's
 *   hash also covers its secret (method NUL path NUL body NUL secret), so a
 *   retry with the same Idempotency-Key but another secret is 422, never the
 *   original answer.
 *
 * Ownership: the route table points into `api`, which must outlive the server.
 * Threads: handlers run on the HTTP threads; answers come from the writer.
 */
#ifndef CMD_API_H
#define CMD_API_H

#include "cmd_writer.h"
#include "kq_http.h"

typedef struct cmd_hookguard cmd_hookguard;

typedef struct cmd_api {
    cmd_writer *writer;   /* borrowed */
    cmd_hookguard *hooks; /* borrowed; NULL = failed webhook attempts are not limited */
} cmd_api;

#define CMD_API_NROUTES 10

/* Most attempts in one POST /internal/v1/runs/attempts (also bounded by KCQRS_BATCH_MAX). */
#define CMD_API_BATCH_MAX 256

/* Fill routes[CMD_API_NROUTES] for `api`. */
void cmd_api_routes(cmd_api *api, kq_http_route *routes);

/* POST /internal/v1/runs/attempts (cmd_api_batch.c): the handler. */
void cmd_api_attempts_batch(kq_http_req *req, cmd_api *api);

/* The details of a refusal: the aggregate's version on 409/412 (an attempt's
 * 409 names the attempt field and the run's current step and attempts). NULL
 * when there is nothing to say; else a new array owned by the caller. */
json_t *cmd_api_error_details(const cmd_item *it, const cmd_result *r);

/*
 * The command's span (cmd_item.span, kq_trace.h): started as a child of `parent` (the
 * request's, or the context a batch item names) before the item is submitted; ended with
 * the answer `r` (aggregate id, command, status, and for an append the event type and the
 * last event's topic, partition and offset; `w` names the topic, may be NULL).
 */
void cmd_api_span_start(cmd_item *it, const kq_trace_ctx *parent);
void cmd_api_span_end(cmd_item *it, const cmd_result *r, cmd_writer *w);

/* Readiness and metrics callbacks for kq_http_options (arg = the cmd_api). */
int cmd_api_ready(void *arg, char *why, size_t whylen);
void cmd_api_metrics(void *arg, FILE *out);

/* SHA-256 of method, NUL, path, NUL, body into out[CMD_HASH_LEN]. */
void cmd_api_command_hash(const char *method, const char *path, const char *body, size_t len,
                          uint8_t out[CMD_HASH_LEN]);

/* Parse an If-Match value: `"N"` (N >= 1) or `*`. Returns 0 or KQ_EINVAL. */
int cmd_api_parse_if_match(const char *v, int *any, int64_t *version);

/* 1 when `v` is 1..255 visible ASCII characters (Idempotency-Key, X-Correlation-Id). */
int cmd_api_header_token_ok(const char *v);

/* A random UUID v4 as 36 characters + NUL into out[37]. */
void cmd_api_uuid(char out[37]);

#endif
