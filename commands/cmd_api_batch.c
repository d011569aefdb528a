/*
 * cmd_api_batch.c — POST /internal/v1/runs/attempts: several runs' attempt
 * records in one request (kcqrs-worker's record client); see cmd_api.h.
 *
 * Body {"attempts": [{"run_id": "...", <the fields of the single-attempt
 * body>}, ...]} with 1..min(CMD_API_BATCH_MAX, KCQRS_BATCH_MAX) items. Each
 * item is checked on its own, exactly as the single route checks its body
 * (the run type's parse hook); a bad item gets its own 400 and does not stop
 * the others. The valid items go to the writer as one group
 * (cmd_writer_submit_group): decided in order against the state and the
 * batch before them, produced in ONE Kafka transaction, each answered by the
 * writer as the single route would answer it (200, 404, 409
 * attempt_recorded, ..., 503). When the last is answered, the request gets
 * 200 {"results": [...]}, one result per item in the request's order:
 *
 *   {"id": run, "status": 200, "version": N, "consistency_token": "..."}
 *   {"id": run|null, "status": 4xx|5xx, "problem": <problem details of the
 *    item, as kq_problem.h: type, title, status, detail, instance (this
 *    route's path), code, errors>[, "retry_after": s]}
 *
 * Only the envelope is refused as a whole (400: not a JSON object, no
 * "attempts" array, 0 or too many items; Idempotency-Key, which this route
 * does not take: every attempt is idempotent by the run's state, a repeat is
 * 409 attempt_recorded), and a group the writer cannot queue (503 +
 * Retry-After, like the single route). An item may name its own W3C trace
 * context ("traceparent": the worker's attempt span), the parent of its command
 * span (absent or malformed: the request's). The correlation id (X-Correlation-Id
 * or a new UUID) is shared by the request's events.
 *
 * Threads: the handler runs on an HTTP thread; the writer thread calls
 * on_item for every queued item and answers the request after the last.
 */
#include "cmd_aggregate.h"
#include "cmd_api.h"
#include "kq_err.h"
#include "kq_json_in.h"
#include "kq_problem.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct batch_req batch_req;

typedef struct batch_slot {
    batch_req *b;
    size_t index;
} batch_slot;

struct batch_req {
    kq_http_req *req;
    cmd_writer *writer; /* names the topic in the command spans */
    json_t *results;    /* one entry per item; a queued item's is null until answered */
    atomic_size_t left;
    batch_slot *slots;
};

static void batch_free(batch_req *b)
{
    if (b == NULL)
        return;
    json_decref(b->results);
    free(b->slots);
    free(b);
}

/* {"id", "status", "problem": {...}} (the problem's instance: the batch's path);
 * details stolen (NULL: []). */
static json_t *item_error(const batch_req *b, const char *id, unsigned status, const char *code,
                          const char *message, json_t *details)
{
    json_t *p = kq_problem_new(status, code, message, details, kq_http_req_path(b->req));

    return p != NULL ? json_pack("{s:s?, s:i, s:o}", "id", id, "status", (int)status, "problem", p)
                     : NULL;
}

static void answer(batch_req *b)
{
    json_t *body = json_pack("{s:O}", "results", b->results);

    if (body == NULL)
        kq_http_respond_error(b->req, 500, "internal", "out of memory", NULL);
    else
        kq_http_respond_json(b->req, 200, body);
    batch_free(b);
}

/* The writer's answer to one queued item (writer thread). */
static void on_item(cmd_item *it, const cmd_result *r)
{
    batch_slot *s = it->arg;
    batch_req *b = s->b;
    json_t *res;

    cmd_api_span_end(it, r, b->writer);
    if (r->code != NULL) {
        res =
            item_error(b, it->cmd.id, r->status, r->code, r->message, cmd_api_error_details(it, r));
        if (res != NULL && r->retry_after > 0)
            json_object_set_new(res, "retry_after", json_integer(r->retry_after));
    } else {
        res = json_pack("{s:s, s:i, s:I, s:s?}", "id", r->id, "status", (int)r->status, "version",
                        (json_int_t)r->version, "consistency_token",
                        r->token && r->token[0] ? r->token : NULL);
    }
    json_array_set_new(b->results, s->index, res != NULL ? res : json_null());
    cmd_item_free(it);
    if (atomic_fetch_sub(&b->left, 1) == 1)
        answer(b);
}

static int on_queue(cmd_item *it)
{
    batch_slot *s = it->arg;
    return kq_http_defer(s->b->req);
}

/* One item: a queued command in *out, or its 400 result in b->results. */
static int parse_item(batch_req *b, size_t i, json_t *obj, const char *corr, const char *actor,
                      cmd_item **out)
{
    const cmd_aggregate *run = cmd_aggregate_get(CMD_TOPIC_RUN);
    json_t *details = json_array(), *fields = NULL;
    const char *id = json_string_value(json_object_get(obj, "run_id"));
    cmd_item *it = NULL;
    char *text = NULL;
    int rc = KQ_ENOMEM;

    *out = NULL;
    if (details == NULL)
        goto out;
    if (!json_is_object(obj)) {
        kq_jin_detail_add(details, "attempts[]", "must be a JSON object");
        json_array_set_new(
            b->results, i,
            item_error(b, NULL, 400, "validation_failed", "the item is not an object", details));
        details = NULL;
        rc = KQ_EINVAL;
        goto out;
    }
    if (id == NULL || !kq_jin_id_valid(id)) {
        kq_jin_detail_add(details, "run_id", "is required: a run id ([A-Za-z0-9._-]{1,64})");
        id = NULL;
    }
    if ((fields = json_deep_copy(obj)) == NULL || (it = cmd_item_new()) == NULL)
        goto out;
    json_object_del(fields, "run_id");
    {
        /* the item's trace context (the worker's attempt); absent or malformed: the request's */
        kq_trace_ctx tc;
        int has_tc =
            kq_trace_parse(json_string_value(json_object_get(fields, KQ_TRACE_HEADER)), &tc) == 0;
        json_object_del(fields, KQ_TRACE_HEADER);
        it->cmd.kind = CMD_RUN_ATTEMPT;
        cmd_api_span_start(it, has_tc ? &tc : kq_http_req_trace(b->req));
    }
    rc = run->parse(fields, &it->cmd, details);
    if (rc == KQ_ENOMEM)
        goto out;
    if (rc != 0 || id == NULL) {
        json_array_set_new(
            b->results, i,
            item_error(b, id, 400, "validation_failed", "attempt failed validation", details));
        details = NULL;
        rc = KQ_EINVAL;
        goto out;
    }
    snprintf(it->cmd.id, sizeof it->cmd.id, "%s", id);
    snprintf(it->cmd.correlation_id, sizeof it->cmd.correlation_id, "%s", corr);
    snprintf(it->cmd.actor, sizeof it->cmd.actor, "%s", actor);
    /* the hash of the request the single route would have had */
    if ((text = json_dumps(fields, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
        rc = KQ_ENOMEM;
        goto out;
    }
    {
        char path[96];
        snprintf(path, sizeof path, "/internal/v1/runs/%s/attempts", id);
        cmd_api_command_hash("POST", path, text, strlen(text), it->cmd.hash);
    }
    *out = it;
    it = NULL;
    rc = 0;
out:
    free(text);
    json_decref(fields);
    json_decref(details);
    cmd_item_free(it);
    return rc;
}

void cmd_api_attempts_batch(kq_http_req *req, cmd_api *api)
{
    json_t *obj = NULL, *arr, *v, *details = json_array();
    const char *key, *body, *corr = kq_http_req_header(req, "X-Correlation-Id");
    const char *actor = kq_http_req_actor(req);
    char corr_buf[CMD_KEY_MAX + 1];
    size_t len, n, max, nq = 0;
    cmd_item **queued = NULL;
    batch_req *b = NULL;
    cmd_result refused;

    if (details == NULL) {
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        return;
    }
    if (kq_http_req_header(req, "Idempotency-Key") != NULL) {
        kq_jin_detail_add(details, "Idempotency-Key",
                          "is not taken by the batch route: each attempt is idempotent by its "
                          "run's state");
        kq_http_respond_error(req, 400, "invalid_header", "a request header is invalid", details);
        return;
    }
    if (corr != NULL && !cmd_api_header_token_ok(corr)) {
        kq_jin_detail_add(details, "X-Correlation-Id", "must be 1..255 visible ASCII characters");
        kq_http_respond_error(req, 400, "invalid_header", "a request header is invalid", details);
        return;
    }
    if (corr != NULL)
        snprintf(corr_buf, sizeof corr_buf, "%s", corr);
    else
        cmd_api_uuid(corr_buf);
    body = kq_http_req_body(req, &len);
    if (kq_jin_parse(body ? body : "", len, &obj, details) != 0) {
        kq_http_respond_error(req, 400, "invalid_json", "request body is not a valid JSON object",
                              details);
        return;
    }
    max = cmd_writer_batch_max(api->writer);
    if (max > CMD_API_BATCH_MAX)
        max = CMD_API_BATCH_MAX;
    arr = json_object_get(obj, "attempts");
    n = json_array_size(arr);
    if (!json_is_array(arr) || n == 0 || n > max)
        kq_jin_detail_add(details, "attempts", "must be an array of 1..%zu attempts", max);
    json_object_foreach(obj, key, v)
    {
        if (strcmp(key, "attempts") != 0)
            kq_jin_detail_add(details, key, "is not a known field");
    }
    if (json_array_size(details) > 0) {
        kq_http_respond_error(req, 400, "validation_failed", "request body failed validation",
                              details);
        json_decref(obj);
        return;
    }
    if ((b = calloc(1, sizeof *b)) == NULL || (b->results = json_array()) == NULL ||
        (b->slots = calloc(n, sizeof *b->slots)) == NULL ||
        (queued = calloc(n, sizeof *queued)) == NULL)
        goto nomem;
    b->req = req;
    b->writer = api->writer;
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(b->results, json_null()) != 0)
            goto nomem;
    for (size_t i = 0; i < n; i++) {
        cmd_item *it = NULL;
        int rc =
            parse_item(b, i, json_array_get(arr, i), corr_buf, actor ? actor : "anonymous", &it);
        if (rc == KQ_ENOMEM)
            goto nomem;
        if (it == NULL)
            continue;
        b->slots[nq].b = b;
        b->slots[nq].index = i;
        it->arg = &b->slots[nq];
        it->done = on_item;
        it->on_queue = nq == 0 ? on_queue : NULL;
        queued[nq++] = it;
    }
    json_decref(obj);
    obj = NULL;
    json_decref(details);
    details = NULL;
    if (nq == 0) { /* every item refused: answered at once */
        answer(b);
        free(queued);
        return;
    }
    atomic_store(&b->left, nq);
    if (cmd_writer_submit_group(api->writer, queued, nq, &refused) != 0) {
        if (refused.retry_after > 0) {
            char ra[16];
            snprintf(ra, sizeof ra, "%d", refused.retry_after);
            kq_http_add_header(req, "Retry-After", ra);
        }
        kq_http_respond_error(req, refused.status, refused.code, refused.message, NULL);
        for (size_t i = 0; i < nq; i++)
            cmd_item_free(queued[i]);
        batch_free(b);
    }
    free(queued); /* the writer owns the items now, and answers through b */
    return;
nomem:
    for (size_t i = 0; i < nq; i++)
        cmd_item_free(queued[i]);
    free(queued);
    batch_free(b);
    json_decref(obj);
    json_decref(details);
    kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
}
