/*
 * cmd_api.c — resource routes of the command API; see cmd_api.h.
 */
#include "cmd_api.h"
#include "cmd_wf_json.h"
#include "kq_err.h"
#include "kq_log.h"
#include "kq_rand.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const statuses[] = {"active", "inactive", "archived", NULL};

static const kq_jin_field create_fields[] = {
    {"id", KQ_JIN_ID, 0, 0, NULL, 0, 0},
    {"name", KQ_JIN_STRING, 1, EV_NAME_MAX_CHARS, NULL, 0, 0},
    {"description", KQ_JIN_STRING, 0, EV_DESCRIPTION_MAX_CHARS, NULL, 0, 0},
    {"status", KQ_JIN_STRING, 0, 0, statuses, 0, 0},
};

static const kq_jin_field update_fields[] = {
    {"name", KQ_JIN_STRING, 0, EV_NAME_MAX_CHARS, NULL, 0, 0},
    {"description", KQ_JIN_STRING, 0, EV_DESCRIPTION_MAX_CHARS, NULL, 0, 0},
    {"status", KQ_JIN_STRING, 0, 0, statuses, 0, 0},
};

/* ------------------------------------------------------------------ helpers */

void cmd_api_command_hash(const char *method, const char *path, const char *body, size_t len,
                          uint8_t out[CMD_HASH_LEN])
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
        EVP_DigestFinal_ex(ctx, out, &n);
    }
    EVP_MD_CTX_free(ctx);
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

static int status_of(const char *s)
{
    for (int i = 0; statuses[i]; i++)
        if (strcmp(s, statuses[i]) == 0)
            return i;
    return 0;
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

/* The details of a refusal: the aggregate's version on 409/412 (an attempt's
 * 409 names the attempt field). NULL when there is nothing to say. */
static json_t *error_details(const cmd_item *it, const cmd_result *r)
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

static void on_done(cmd_item *it, const cmd_result *r)
{
    kq_http_req *req = it->arg;
    const char *token = r->token && r->token[0] ? r->token : NULL;
    char v[32], loc[EV_ID_MAX + 32];
    json_t *body;

    if (r->retry_after > 0) {
        snprintf(v, sizeof v, "%d", r->retry_after);
        kq_http_add_header(req, "Retry-After", v);
    }
    if (r->code != NULL) {
        json_t *details = error_details(it, r);
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

/*
 * Parse and validate the body: the field table (kq_json_in) plus what the
 * table cannot say (a name must not be empty; an update needs a field), all
 * offending fields in one 400. Returns 0 with *out, or answered (KQ_EINVAL).
 */
static int parse_body(kq_http_req *req, const kq_jin_field *fields, size_t n, int need_one,
                      json_t **out)
{
    json_t *details = json_array(), *obj = NULL, *v;
    const char *body;
    size_t len;

    *out = NULL;
    if (details == NULL) {
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        return KQ_ENOMEM;
    }
    body = kq_http_req_body(req, &len);
    if (kq_jin_parse(body ? body : "", len, &obj, details) != 0) {
        kq_http_respond_error(req, 400, "invalid_json", "request body is not a valid JSON object",
                              details);
        return KQ_EINVAL;
    }
    kq_jin_validate(obj, fields, n, NULL, details);
    v = json_object_get(obj, "name");
    if (json_is_string(v) && json_string_length(v) == 0)
        kq_jin_detail_add(details, "name", "must be 1..%d characters", EV_NAME_MAX_CHARS);
    if (need_one && json_object_size(obj) == 0)
        kq_jin_detail_add(details, "body", "give at least one of name, description, status");
    if (json_array_size(details) > 0) {
        json_decref(obj);
        kq_http_respond_error(req, 400, "validation_failed", "request body failed validation",
                              details);
        return KQ_EINVAL;
    }
    json_decref(details);
    *out = obj;
    return 0;
}

/* Copy the (validated) JSON fields into the command; 0 or answered 500. */
static int take_fields(kq_http_req *req, cmd_item *it, json_t *obj)
{
    json_t *v;

    if ((v = json_object_get(obj, "name")) != NULL) {
        it->cmd.fields |= CMD_F_NAME;
        it->cmd.name = strdup(json_string_value(v));
    }
    if ((v = json_object_get(obj, "description")) != NULL) {
        it->cmd.fields |= CMD_F_DESCRIPTION;
        it->cmd.description = strdup(json_string_value(v));
    }
    if ((v = json_object_get(obj, "status")) != NULL) {
        it->cmd.fields |= CMD_F_STATUS;
        it->cmd.status = status_of(json_string_value(v));
    }
    if (((it->cmd.fields & CMD_F_NAME) && it->cmd.name == NULL) ||
        ((it->cmd.fields & CMD_F_DESCRIPTION) && it->cmd.description == NULL)) {
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        return KQ_ENOMEM;
    }
    return 0;
}

static void submit(cmd_api *api, kq_http_req *req, cmd_item *it)
{
    cmd_result refused;

    it->done = on_done;
    it->on_queue = on_queue;
    it->arg = req;
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

static void h_create(kq_http_req *req, void *arg)
{
    cmd_item *it = cmd_item_new();
    json_t *obj = NULL, *id;

    if (it == NULL) {
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        return;
    }
    if (parse_body(req, create_fields, sizeof create_fields / sizeof create_fields[0], 0, &obj) !=
        0)
        goto fail;
    it->cmd.kind = CMD_CREATE;
    if ((id = json_object_get(obj, "id")) != NULL)
        snprintf(it->cmd.id, sizeof it->cmd.id, "%s", json_string_value(id));
    else
        cmd_api_uuid(it->cmd.id);
    if (take_fields(req, it, obj) != 0 || common_headers(req, it, 0) != 0)
        goto fail;
    if (it->cmd.description == NULL && (it->cmd.description = strdup("")) == NULL) {
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        goto fail;
    }
    json_decref(obj);
    submit(arg, req, it);
    return;
fail:
    json_decref(obj);
    cmd_item_free(it);
}

static void h_update_or_delete(kq_http_req *req, void *arg, cmd_kind kind)
{
    cmd_item *it = cmd_item_new();
    json_t *obj = NULL;
    const char *id = kq_http_req_param(req, "id");

    if (it == NULL) {
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        return;
    }
    if (id == NULL || !kq_jin_id_valid(id)) {
        /* No resource can have such an id. */
        kq_http_respond_error(req, 404, "not_found", "no resource with this id", NULL);
        goto fail;
    }
    it->cmd.kind = kind;
    snprintf(it->cmd.id, sizeof it->cmd.id, "%s", id);
    if (kind == CMD_UPDATE) {
        if (parse_body(req, update_fields, sizeof update_fields / sizeof update_fields[0], 1,
                       &obj) != 0)
            goto fail;
        if (take_fields(req, it, obj) != 0)
            goto fail;
    }
    if (common_headers(req, it, 1) != 0)
        goto fail;
    json_decref(obj);
    submit(arg, req, it);
    return;
fail:
    json_decref(obj);
    cmd_item_free(it);
}

static void h_update(kq_http_req *req, void *arg)
{
    h_update_or_delete(req, arg, CMD_UPDATE);
}

static void h_delete(kq_http_req *req, void *arg)
{
    h_update_or_delete(req, arg, CMD_DELETE);
}

/* ------------------------------------------------------------------ workflows and runs */

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

static void h_wf_create(kq_http_req *req, void *arg)
{
    cmd_item *it = new_item(req);
    json_t *obj = NULL, *details = NULL;
    int rc;

    if (it == NULL || (obj = body_object(req)) == NULL)
        goto fail;
    if ((details = json_array()) == NULL) {
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        goto fail;
    }
    it->cmd.kind = CMD_WF_CREATE;
    if ((rc = cmd_wf_parse_create(obj, &it->cmd, details)) != 0) {
        answer_parse_error(req, rc, details);
        details = NULL;
        goto fail;
    }
    if (common_headers(req, it, 0) != 0)
        goto fail;
    json_decref(details);
    json_decref(obj);
    submit(arg, req, it);
    return;
fail:
    json_decref(details);
    json_decref(obj);
    cmd_item_free(it);
}

static void h_wf_update_or_delete(kq_http_req *req, void *arg, cmd_kind kind)
{
    cmd_item *it = new_item(req);
    json_t *obj = NULL, *details = NULL;
    const char *id;
    int rc;

    if (it == NULL || (id = path_id(req, "id", "workflow")) == NULL)
        goto fail;
    it->cmd.kind = kind;
    snprintf(it->cmd.id, sizeof it->cmd.id, "%s", id);
    if (kind == CMD_WF_UPDATE) {
        if ((obj = body_object(req)) == NULL)
            goto fail;
        if ((details = json_array()) == NULL) {
            kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
            goto fail;
        }
        if ((rc = cmd_wf_parse_update(obj, &it->cmd, details)) != 0) {
            answer_parse_error(req, rc, details);
            details = NULL;
            goto fail;
        }
    }
    if (common_headers(req, it, 1) != 0)
        goto fail;
    json_decref(details);
    json_decref(obj);
    submit(arg, req, it);
    return;
fail:
    json_decref(details);
    json_decref(obj);
    cmd_item_free(it);
}

static void h_wf_update(kq_http_req *req, void *arg)
{
    h_wf_update_or_delete(req, arg, CMD_WF_UPDATE);
}

static void h_wf_delete(kq_http_req *req, void *arg)
{
    h_wf_update_or_delete(req, arg, CMD_WF_DELETE);
}

/*
 * SHA-256 of method, NUL, path, NUL, body, NUL, webhook secret: a webhook's
 * retry under the same Idempotency-Key replays the original answer only when
 * it also carries the same secret (else 422), so knowing a key is not enough
 * to learn a run id.
 */
static void hook_hash(kq_http_req *req, const char *secret, uint8_t out[CMD_HASH_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const char *method = kq_http_req_method(req), *path = kq_http_req_path(req);
    const char *body;
    size_t len;
    unsigned int n = 0;

    memset(out, 0, CMD_HASH_LEN);
    if (ctx == NULL)
        return;
    body = kq_http_req_body(req, &len);
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1) {
        EVP_DigestUpdate(ctx, method, strlen(method) + 1);
        EVP_DigestUpdate(ctx, path, strlen(path) + 1);
        if (len > 0)
            EVP_DigestUpdate(ctx, body, len);
        EVP_DigestUpdate(ctx, "", 1);
        EVP_DigestUpdate(ctx, secret, strlen(secret));
        EVP_DigestFinal_ex(ctx, out, &n);
    }
    EVP_MD_CTX_free(ctx);
}

/* Trigger a run of workflow {workflow_id|id}: manual (writer key) or webhook. */
static void run_start(kq_http_req *req, void *arg, int webhook)
{
    cmd_item *it = new_item(req);
    json_t *details = NULL;
    const char *wf, *secret = NULL, *body;
    size_t len;
    int rc;

    if (it == NULL)
        return;
    if (webhook) {
        secret = kq_http_req_header(req, "X-Webhook-Secret");
        if (secret == NULL || secret[0] == '\0') {
            kq_http_respond_error(req, 401, "invalid_webhook_secret",
                                  "the X-Webhook-Secret header is required", NULL);
            goto fail;
        }
        if (!cmd_wf_secret_ok(secret, strlen(secret))) {
            bad_header(req, "X-Webhook-Secret",
                       "must be 1..255 visible ASCII characters (no spaces)");
            goto fail;
        }
    }
    if ((wf = path_id(req, webhook ? "workflow_id" : "id", "workflow")) == NULL)
        goto fail;
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
    if ((rc = cmd_wf_payload(body, len, &it->cmd.payload_json, details)) != 0) {
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
        it->cmd.has_hook_secret = 1;
        snprintf(it->cmd.hook_secret, sizeof it->cmd.hook_secret, "%s", secret);
        snprintf(it->cmd.actor, sizeof it->cmd.actor, "webhook");
        hook_hash(req, secret, it->cmd.hash);
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

static void h_attempt(kq_http_req *req, void *arg)
{
    cmd_item *it = new_item(req);
    json_t *obj = NULL, *details = NULL;
    const char *id;
    int rc;

    if (it == NULL || (id = path_id(req, "id", "run")) == NULL || (obj = body_object(req)) == NULL)
        goto fail;
    if ((details = json_array()) == NULL) {
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        goto fail;
    }
    it->cmd.kind = CMD_RUN_ATTEMPT;
    snprintf(it->cmd.id, sizeof it->cmd.id, "%s", id);
    if ((rc = cmd_wf_parse_attempt(obj, &it->cmd, details)) != 0) {
        answer_parse_error(req, rc, details);
        details = NULL;
        goto fail;
    }
    if (common_headers(req, it, 0) != 0)
        goto fail;
    json_decref(details);
    json_decref(obj);
    submit(arg, req, it);
    return;
fail:
    json_decref(details);
    json_decref(obj);
    cmd_item_free(it);
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
}
