/*
 * cmd_api.c — routes and answers of the command API; see cmd_api.h. Bodies are
 * parsed by the aggregate types' parse hooks (cmd_aggregate.h); this file
 * routes, reads the headers, hashes the request and answers.
 */
#include "cmd_api.h"
#include "cmd_aggregate.h"
#include "cmd_hookguard.h"
#include "cmd_run.h"
#include "cmd_workflow.h"
#include "kq_err.h"
#include "kq_limit.h"
#include "kq_log.h"
#include "kq_rand.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

/* SHA-256 of method, NUL, path, NUL, body and, with a secret, NUL, secret. */
static void request_hash(const char *method, const char *path, const char *body, size_t len,
                         const char *secret, uint8_t out[CMD_HASH_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;

    memset(out, 0, CMD_HASH_LEN);
    if (ctx == NULL)
        return;
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1) {
        EVP_DigestUpdate(ctx, method, strlen(method) + 1);
        EVP_DigestUpdate(ctx, path, strlen(path) + 1);
        if (len > 0)
            EVP_DigestUpdate(ctx, body, len);
        if (secret != NULL) {
            EVP_DigestUpdate(ctx, "", 1);
            EVP_DigestUpdate(ctx, secret, strlen(secret));
        }
        EVP_DigestFinal_ex(ctx, out, &n);
    }
    EVP_MD_CTX_free(ctx);
}

void cmd_api_command_hash(const char *method, const char *path, const char *body, size_t len,
                          uint8_t out[CMD_HASH_LEN])
{
    request_hash(method, path, body, len, NULL, out);
}

int cmd_api_parse_if_match(const char *v, int *any, int64_t *version)
{
    int64_t x = 0;
    const char *p;

    *any = 0;
    if (strcmp(v, "*") == 0) {
        *any = 1;
        return 0;
    }
    if (v[0] != '"' || v[1] == '"' || v[1] == '0')
        return KQ_EINVAL;
    for (p = v + 1; *p >= '0' && *p <= '9'; p++) {
        if (x > (INT64_MAX - (*p - '0')) / 10)
            return KQ_EINVAL;
        x = x * 10 + (*p - '0');
    }
    if (p[0] != '"' || p[1] != '\0' || x < 1)
        return KQ_EINVAL;
    *version = x;
    return 0;
}

int cmd_api_header_token_ok(const char *v)
{
    size_t n = 0;
    for (; v[n]; n++)
        if ((unsigned char)v[n] < 0x21 || (unsigned char)v[n] > 0x7e)
            return 0;
    return n >= 1 && n <= CMD_KEY_MAX;
}

void cmd_api_uuid(char out[37])
{
    uint8_t b[16] = {0};

    (void)kq_uuid_v4(b); /* getrandom cannot fail after boot; on failure: a fixed-bits id */
    kq_uuid_format(b, out);
}

static void bad_header(kq_http_req *req, const char *name, const char *msg)
{
    json_t *details = json_array();
    kq_jin_detail_add(details, name, "%s", msg);
    kq_http_respond_error(req, 400, "invalid_header", "a request header is invalid", details);
}

/* ------------------------------------------------------------------ answers */

static const char *noun_of(cmd_kind k)
{
    switch (k) {
    case CMD_WF_CREATE:
    case CMD_WF_UPDATE:
    case CMD_WF_DELETE:
        return "workflow";
    case CMD_RUN_START:
        return "workflow"; /* its refusals are about the workflow */
    case CMD_RUN_ATTEMPT:
        return "run";
    default:
        return "resource";
    }
}

json_t *cmd_api_error_details(const cmd_item *it, const cmd_result *r)
{
    char msg[64];

    if (r->status != 409 && r->status != 412)
        return NULL;
    if (it->cmd.kind == CMD_RUN_ATTEMPT && r->has_attempt_detail)
        return json_pack("[{s:s, s:s, s:I, s:I}]", "field", "attempt", "message", r->message,
                         "current_step", (json_int_t)r->current_step, "recorded_attempts",
                         (json_int_t)r->recorded_attempts);
    if (it->cmd.kind == CMD_RUN_ATTEMPT)
        return json_pack("[{s:s, s:s}]", "field", "attempt", "message", r->message);
    snprintf(msg, sizeof msg, "current version of the %s", noun_of(it->cmd.kind));
    return json_pack("[{s:s, s:s, s:I}]", "field", "version", "message", msg, "current_version",
                     (json_int_t)r->current_version);
}

/* A failed webhook attempt counts against its address and its workflow. */
static void hook_failed(cmd_api *api, kq_http_req *req)
{
    if (api != NULL && api->hooks != NULL)
        cmd_hookguard_fail(api->hooks, kq_http_req_client(req),
                           kq_http_req_param(req, "workflow_id"), kq_limit_now_ms());
}

static const char *kind_name(cmd_kind k)
{
    switch (k) {
    case CMD_CREATE:
        return "resource.create";
    case CMD_UPDATE:
        return "resource.update";
    case CMD_DELETE:
        return "resource.delete";
    case CMD_WF_CREATE:
        return "workflow.create";
    case CMD_WF_UPDATE:
        return "workflow.update";
    case CMD_WF_DELETE:
        return "workflow.delete";
    case CMD_RUN_START:
        return "run.start";
    case CMD_RUN_ATTEMPT:
        return "run.attempt";
    }
    return "?";
}

void cmd_api_span_start(cmd_item *it, const kq_trace_ctx *parent)
{
    char name[64];

    snprintf(name, sizeof name, "command %s", kind_name(it->cmd.kind));
    (void)kq_span_start(&it->span, parent, KQ_SPAN_PRODUCER, name);
}

void cmd_api_span_end(cmd_item *it, const cmd_result *r, cmd_writer *w)
{
    kq_span *sp = &it->span;
    int t = cmd_kind_topic(it->cmd.kind);

    if (!kq_trace_exporting() || !kq_trace_valid(&sp->ctx))
        return;
    kq_span_attr_str(sp, "kcqrs.aggregate_id", r->id ? r->id : it->cmd.id);
    kq_span_attr_str(sp, "kcqrs.command", kind_name(it->cmd.kind));
    kq_span_attr_int(sp, "kcqrs.status", r->status);
    if (r->code != NULL)
        kq_span_attr_str(sp, "kcqrs.error_code", r->code);
    if (r->code == NULL && it->d.nevents > 0 && it->d.nevents <= CMD_MAX_EVENTS) {
        const cmd_item_event *ie = &it->ev[it->d.nevents - 1];
        const char *et = ev_event_type_name(it->d.events[it->d.nevents - 1]);
        kq_span_attr_int(sp, "kcqrs.version", r->version);
        kq_span_attr_str(sp, "kcqrs.event_type", et ? et : "?");
        kq_span_attr_int(sp, "kcqrs.events", it->d.nevents);
        if (w != NULL && t >= 0)
            kq_span_attr_str(sp, "messaging.destination.name", cmd_writer_topic(w, t));
        kq_span_attr_int(sp, "messaging.kafka.destination.partition", ie->partition);
        kq_span_attr_int(sp, "messaging.kafka.offset", ie->offset);
    }
    sp->error = r->status >= 500;
    kq_span_end(sp);
}

static void on_done(cmd_item *it, const cmd_result *r)
{
    kq_http_req *req = it->arg;
    const char *token = r->token && r->token[0] ? r->token : NULL;
    char v[32], loc[EV_ID_MAX + 32];
    json_t *body;

    cmd_api_span_end(it, r, it->arg2 ? ((cmd_api *)it->arg2)->writer : NULL);

    if (it->cmd.kind == CMD_RUN_START && it->cmd.trigger == EV_TRIGGER_WEBHOOK && r->status == 401)
        hook_failed(it->arg2, req);

    if (r->retry_after > 0) {
        snprintf(v, sizeof v, "%d", r->retry_after);
        kq_http_add_header(req, "Retry-After", v);
    }
    if (r->code != NULL) {
        json_t *details = cmd_api_error_details(it, r);
        if (details != NULL && r->current_version > 0 && it->cmd.kind != CMD_RUN_ATTEMPT &&
            it->cmd.kind != CMD_RUN_START) { /* the ETag of the aggregate addressed */
            snprintf(v, sizeof v, "\"%" PRId64 "\"", r->current_version);
            kq_http_add_header(req, "ETag", v);
        }
        kq_http_respond_error(req, r->status, r->code, r->message, details);
        cmd_item_free(it);
        return;
    }
    snprintf(v, sizeof v, "\"%" PRId64 "\"", r->version);
    kq_http_add_header(req, "ETag", v);
    if (token != NULL)
        kq_http_add_header(req, "X-Consistency-Token", token);
    body = json_pack("{s:s, s:I, s:s?}", "id", r->id, "version", (json_int_t)r->version,
                     "consistency_token", token);
    switch (it->cmd.kind) {
    case CMD_RUN_START:
        /* accepted: the worker runs it; a replayed answer is the same 202 */
        snprintf(loc, sizeof loc, "/api/v1/runs/%s", r->id);
        kq_http_add_header(req, "Location", loc);
        json_object_set_new(body, "run_id", json_string(r->id));
        json_object_set_new(body, "workflow_id", json_string(it->cmd.workflow_id));
        kq_http_respond_json(req, 202, body);
        break;
    case CMD_WF_CREATE:
    case CMD_WF_UPDATE:
        if (r->status == 201) {
            snprintf(loc, sizeof loc, "/api/v1/workflows/%s", r->id);
            kq_http_add_header(req, "Location", loc);
        }
        if (r->secret != NULL)
            json_object_set_new(body, "webhook_secret", json_string(r->secret));
        kq_http_respond_json(req, r->status, body);
        break;
    default:
        if (r->status == 201) {
            snprintf(loc, sizeof loc, "/api/v1/resources/%s", r->id);
            kq_http_add_header(req, "Location", loc);
        }
        kq_http_respond_json(req, r->status, body);
        break;
    }
    cmd_item_free(it);
}

static int on_queue(cmd_item *it)
{
    return kq_http_defer(it->arg);
}

/* Headers common to every command; 0 or answered 400 (KQ_EINVAL). */
static int common_headers(kq_http_req *req, cmd_item *it, int want_if_match)
{
    const char *k = kq_http_req_header(req, "Idempotency-Key");
    const char *corr = kq_http_req_header(req, "X-Correlation-Id");
    const char *im = kq_http_req_header(req, "If-Match");
    const char *actor = kq_http_req_actor(req);
    const char *body;
    size_t len;

    if (k != NULL) {
        if (!cmd_api_header_token_ok(k)) {
            bad_header(req, "Idempotency-Key", "must be 1..255 visible ASCII characters");
            return KQ_EINVAL;
        }
        snprintf(it->cmd.idem_key, sizeof it->cmd.idem_key, "%s", k);
    }
    if (corr != NULL) {
        if (!cmd_api_header_token_ok(corr)) {
            bad_header(req, "X-Correlation-Id", "must be 1..255 visible ASCII characters");
            return KQ_EINVAL;
        }
        snprintf(it->cmd.correlation_id, sizeof it->cmd.correlation_id, "%s", corr);
    } else {
        cmd_api_uuid(it->cmd.correlation_id);
    }
    if (want_if_match && im != NULL) {
        if (cmd_api_parse_if_match(im, &it->cmd.if_match_any, &it->cmd.if_match) != 0) {
            bad_header(req, "If-Match", "must be \"<version>\" or *");
            return KQ_EINVAL;
        }
        it->cmd.has_if_match = 1;
    }
    snprintf(it->cmd.actor, sizeof it->cmd.actor, "%s", actor ? actor : "anonymous");
    body = kq_http_req_body(req, &len);
    cmd_api_command_hash(kq_http_req_method(req), kq_http_req_path(req), body, len, it->cmd.hash);
    return 0;
}

static void submit(cmd_api *api, kq_http_req *req, cmd_item *it)
{
    cmd_result refused;

    if (it->cmd.id[0] != '\0') /* the access log's aggregate_id (a generated id, a run id) */
        kq_http_req_set_aggregate_id(req, it->cmd.id);
    it->done = on_done;
    it->on_queue = on_queue;
    it->arg = req;
    it->arg2 = api;
    cmd_api_span_start(it, kq_http_req_trace(req));
    if (cmd_writer_submit(api->writer, it, &refused) == 0)
        return; /* the writer answers */
    if (refused.retry_after > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", refused.retry_after);
        kq_http_add_header(req, "Retry-After", v);
    }
    kq_http_respond_error(req, refused.status, refused.code, refused.message, NULL);
    cmd_item_free(it);
}

/* ------------------------------------------------------------------ handlers */

/*
 * What a command route does before the writer sees the command: the
 * aggregate id from the path (an id no aggregate can have is 404 at once),
 * the body through the aggregate type's parse hook, the common headers.
 */
typedef struct cmd_route {
    cmd_kind kind;
    const char *id_param; /* path parameter holding the aggregate id; NULL: none (a create) */
    const char *noun;     /* "no <noun> with this id" */
    int body;             /* 1: a JSON object body for the type's parse hook */
    int if_match;         /* 1: If-Match is read */
} cmd_route;

static const cmd_route r_res_create = {CMD_CREATE, NULL, "resource", 1, 0};
static const cmd_route r_res_update = {CMD_UPDATE, "id", "resource", 1, 1};
static const cmd_route r_res_delete = {CMD_DELETE, "id", "resource", 0, 1};
static const cmd_route r_wf_create = {CMD_WF_CREATE, NULL, "workflow", 1, 0};
static const cmd_route r_wf_update = {CMD_WF_UPDATE, "id", "workflow", 1, 1};
static const cmd_route r_wf_delete = {CMD_WF_DELETE, "id", "workflow", 0, 1};
static const cmd_route r_attempt = {CMD_RUN_ATTEMPT, "id", "run", 1, 0};

static void answer_parse_error(kq_http_req *req, int rc, json_t *details)
{
    if (rc == KQ_EINVAL) {
        kq_http_respond_error(req, 400, "validation_failed", "request body failed validation",
                              details);
        return;
    }
    json_decref(details);
    kq_http_respond_error(req, 500, "internal",
                          rc == KQ_EIO ? "no randomness for the secret" : "out of memory", NULL);
}

/* The body as a JSON object, or answered 400 invalid_json / 500 (NULL). */
static json_t *body_object(kq_http_req *req)
{
    json_t *details = json_array(), *obj = NULL;
    const char *body;
    size_t len;

    if (details == NULL) {
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        return NULL;
    }
    body = kq_http_req_body(req, &len);
    if (kq_jin_parse(body ? body : "", len, &obj, details) != 0) {
        kq_http_respond_error(req, 400, "invalid_json", "request body is not a valid JSON object",
                              details);
        return NULL;
    }
    json_decref(details);
    return obj;
}

/* A path id; answered 404 when no aggregate can have it. */
static const char *path_id(kq_http_req *req, const char *param, const char *noun)
{
    const char *id = kq_http_req_param(req, param);
    char msg[64];

    if (id != NULL && kq_jin_id_valid(id))
        return id;
    snprintf(msg, sizeof msg, "no %s with this id", noun);
    kq_http_respond_error(req, 404, "not_found", msg, NULL);
    return NULL;
}

static cmd_item *new_item(kq_http_req *req)
{
    cmd_item *it = cmd_item_new();
    if (it == NULL)
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
    return it;
}

/* Parse the body with the aggregate type's hook; 0 or answered (400, 500). */
static int parse_with_hook(kq_http_req *req, cmd_item *it)
{
    const cmd_aggregate *a = cmd_aggregate_get(cmd_kind_topic(it->cmd.kind));
    json_t *obj, *details;
    int rc;

    if ((obj = body_object(req)) == NULL)
        return KQ_EINVAL;
    if ((details = json_array()) == NULL) {
        json_decref(obj);
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        return KQ_ENOMEM;
    }
    if ((rc = a->parse(obj, &it->cmd, details)) != 0)
        answer_parse_error(req, rc, details);
    else
        json_decref(details);
    json_decref(obj);
    return rc;
}

/* Every route but the triggers: see cmd_route. */
static void handle(kq_http_req *req, cmd_api *api, const cmd_route *r)
{
    cmd_item *it = new_item(req);
    const char *id;

    if (it == NULL)
        return;
    it->cmd.kind = r->kind;
    if (r->id_param != NULL) {
        if ((id = path_id(req, r->id_param, r->noun)) == NULL)
            goto fail;
        snprintf(it->cmd.id, sizeof it->cmd.id, "%s", id);
    }
    if (r->body && parse_with_hook(req, it) != 0)
        goto fail;
    if (common_headers(req, it, r->if_match) != 0)
        goto fail;
    submit(api, req, it);
    return;
fail:
    cmd_item_free(it);
}

static void h_create(kq_http_req *req, void *arg)
{
    handle(req, arg, &r_res_create);
}

static void h_update(kq_http_req *req, void *arg)
{
    handle(req, arg, &r_res_update);
}

static void h_delete(kq_http_req *req, void *arg)
{
    handle(req, arg, &r_res_delete);
}

static void h_wf_create(kq_http_req *req, void *arg)
{
    handle(req, arg, &r_wf_create);
}

static void h_wf_update(kq_http_req *req, void *arg)
{
    handle(req, arg, &r_wf_update);
}

static void h_wf_delete(kq_http_req *req, void *arg)
{
    handle(req, arg, &r_wf_delete);
}

static void h_attempt(kq_http_req *req, void *arg)
{
    handle(req, arg, &r_attempt);
}

static void h_attempts(kq_http_req *req, void *arg)
{
    cmd_api_attempts_batch(req, arg);
}

/* 401 invalid_webhook_secret, counted as a failed attempt. */
static void hook_refuse(cmd_api *api, kq_http_req *req, const char *msg)
{
    hook_failed(api, req);
    kq_http_respond_error(req, 401, "invalid_webhook_secret", msg, NULL);
}

/*
 * A webhook's credentials: X-Webhook-Secret and/or X-Hub-Signature-256 (an
 * empty header counts as absent). Fills c; 0, or answered (429 while the
 * address or the workflow has failed too often, 401 with neither header,
 * 400 for a malformed one) and KQ_EINVAL.
 */
static int hook_credentials(cmd_api *api, kq_http_req *req, cmd_command *c, const char **secret,
                            const char **sig)
{
    int retry = 0;
    char v[16];

    if (api->hooks != NULL &&
        !cmd_hookguard_check(api->hooks, kq_http_req_client(req),
                             kq_http_req_param(req, "workflow_id"), kq_limit_now_ms(), &retry)) {
        snprintf(v, sizeof v, "%d", retry);
        kq_http_add_header(req, "Retry-After", v);
        kq_http_respond_error(req, 429, "rate_limited",
                              "too many failed webhook attempts; retry later", NULL);
        return KQ_EINVAL;
    }
    *secret = kq_http_req_header(req, "X-Webhook-Secret");
    *sig = kq_http_req_header(req, "X-Hub-Signature-256");
    if (*secret != NULL && (*secret)[0] == '\0')
        *secret = NULL;
    if (*sig != NULL && (*sig)[0] == '\0')
        *sig = NULL;
    if (*secret == NULL && *sig == NULL) {
        hook_refuse(api, req, "an X-Webhook-Secret or X-Hub-Signature-256 header is required");
        return KQ_EINVAL;
    }
    if (*secret != NULL && !cmd_workflow_secret_ok(*secret, strlen(*secret))) {
        bad_header(req, "X-Webhook-Secret", "must be 1..255 visible ASCII characters (no spaces)");
        return KQ_EINVAL;
    }
    if (*sig != NULL && cmd_workflow_sig_parse(*sig, c->hook_sig) != 0) {
        bad_header(req, "X-Hub-Signature-256", "must be sha256= and 64 hex digits");
        return KQ_EINVAL;
    }
    c->has_hook_secret = *secret != NULL;
    if (*secret != NULL)
        snprintf(c->hook_secret, sizeof c->hook_secret, "%s", *secret);
    c->has_hook_sig = *sig != NULL;
    return 0;
}

/* Trigger a run of workflow {workflow_id|id}: manual (writer key) or webhook. */
static void run_start(kq_http_req *req, void *arg, int webhook)
{
    cmd_item *it = new_item(req);
    json_t *details = NULL;
    const char *wf, *secret = NULL, *sig = NULL, *body;
    char cred[2 * (EV_META_MAX + 1)];
    size_t len;
    int rc;

    if (it == NULL)
        return;
    if (webhook && hook_credentials(arg, req, &it->cmd, &secret, &sig) != 0)
        goto fail;
    if (webhook) {
        /* an id no workflow can have is answered as an unknown one: as a wrong secret */
        wf = kq_http_req_param(req, "workflow_id");
        if (wf == NULL || !kq_jin_id_valid(wf)) {
            hook_refuse(arg, req, "the webhook secret or signature is not the workflow's");
            goto fail;
        }
    } else if ((wf = path_id(req, "id", "workflow")) == NULL) {
        goto fail;
    }
    body = kq_http_req_body(req, &len);
    if (len > 0 && !kq_jin_content_type_ok(kq_http_req_header(req, "Content-Type"))) {
        kq_http_respond_error(req, 415, "unsupported_media_type",
                              "Content-Type must be application/json", NULL);
        goto fail;
    }
    if ((details = json_array()) == NULL) {
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        goto fail;
    }
    if ((rc = cmd_run_payload(body, len, &it->cmd.payload_json, details)) != 0) {
        if (rc == KQ_EINVAL)
            kq_http_respond_error(req, 400, "invalid_json",
                                  "the trigger payload must be a JSON object", details);
        else
            answer_parse_error(req, rc, details);
        details = NULL;
        goto fail;
    }
    it->cmd.kind = CMD_RUN_START;
    cmd_api_uuid(it->cmd.id);
    snprintf(it->cmd.workflow_id, sizeof it->cmd.workflow_id, "%s", wf);
    it->cmd.trigger = webhook ? EV_TRIGGER_WEBHOOK : EV_TRIGGER_MANUAL;
    if (common_headers(req, it, 0) != 0)
        goto fail;
    if (webhook) {
        snprintf(it->cmd.actor, sizeof it->cmd.actor, "webhook");
        if (sig != NULL && len > 0) { /* the signature covers the raw bytes */
            if ((it->cmd.hook_body = malloc(len)) == NULL) {
                kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
                goto fail;
            }
            memcpy(it->cmd.hook_body, body, len);
            it->cmd.hook_body_len = len;
        }
        /* The hash also covers the credentials: a retry under the same Idempotency-Key
         * replays the original answer only with the same ones (else 422), so knowing a
         * key is not enough to learn a run id. A secret alone hashes as it always has. */
        if (sig == NULL)
            snprintf(cred, sizeof cred, "%s", secret);
        else
            snprintf(cred, sizeof cred, "%s\n%s", secret ? secret : "", sig);
        request_hash(kq_http_req_method(req), kq_http_req_path(req), body, len, cred, it->cmd.hash);
    }
    json_decref(details);
    submit(arg, req, it);
    return;
fail:
    json_decref(details);
    cmd_item_free(it);
}

static void h_run_start(kq_http_req *req, void *arg)
{
    run_start(req, arg, 0);
}

static void h_hook(kq_http_req *req, void *arg)
{
    run_start(req, arg, 1);
}

void cmd_api_routes(cmd_api *api, kq_http_route *r)
{
    const kq_http_route t[CMD_API_NROUTES] = {
        {"POST", "/api/v1/resources", KQ_AUTH_ROLE_WRITER, KQ_HTTP_BODY_JSON, "resource_create",
         h_create, api},
        {"PUT", "/api/v1/resources/{id}", KQ_AUTH_ROLE_WRITER, KQ_HTTP_BODY_JSON, "resource_update",
         h_update, api},
        {"DELETE", "/api/v1/resources/{id}", KQ_AUTH_ROLE_WRITER, KQ_HTTP_BODY_NONE,
         "resource_delete", h_delete, api},
        {"POST", "/api/v1/workflows", KQ_AUTH_ROLE_WRITER, KQ_HTTP_BODY_JSON, "workflow_create",
         h_wf_create, api},
        {"PUT", "/api/v1/workflows/{id}", KQ_AUTH_ROLE_WRITER, KQ_HTTP_BODY_JSON, "workflow_update",
         h_wf_update, api},
        {"DELETE", "/api/v1/workflows/{id}", KQ_AUTH_ROLE_WRITER, KQ_HTTP_BODY_NONE,
         "workflow_delete", h_wf_delete, api},
        /* body optional (empty = {}): Content-Type is checked in the handler */
        {"POST", "/api/v1/workflows/{id}/runs", KQ_AUTH_ROLE_WRITER, KQ_HTTP_BODY_NONE, "run_start",
         h_run_start, api},
        {"POST", "/hooks/{workflow_id}", KQ_HTTP_PUBLIC, KQ_HTTP_BODY_NONE, "webhook", h_hook, api},
        {"POST", "/internal/v1/runs/{id}/attempts", KQ_AUTH_ROLE_WORKER, KQ_HTTP_BODY_JSON,
         "run_attempt", h_attempt, api},
        {"POST", "/internal/v1/runs/attempts", KQ_AUTH_ROLE_WORKER, KQ_HTTP_BODY_JSON,
         "run_attempts", h_attempts, api},
    };
    memcpy(r, t, sizeof t);
}

int cmd_api_ready(void *arg, char *why, size_t whylen)
{
    cmd_api *api = arg;
    return cmd_writer_ready(api->writer, why, whylen);
}

void cmd_api_metrics(void *arg, FILE *out)
{
    cmd_api *api = arg;
    cmd_writer_metrics(api->writer, out);
    if (api->hooks != NULL)
        fprintf(out,
                "# HELP kcqrs_webhook_failures_total Failed webhook attempts (401).\n"
                "# TYPE kcqrs_webhook_failures_total counter\n"
                "kcqrs_webhook_failures_total %llu\n"
                "# HELP kcqrs_webhook_rate_limited_total Webhooks refused with 429: their "
                "address or workflow failed too often.\n"
                "# TYPE kcqrs_webhook_rate_limited_total counter\n"
                "kcqrs_webhook_rate_limited_total %llu\n",
                (unsigned long long)cmd_hookguard_failures(api->hooks),
                (unsigned long long)cmd_hookguard_refused(api->hooks));
}
