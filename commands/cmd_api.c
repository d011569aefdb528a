/*
 * cmd_api.c — resource routes of the command API; see cmd_api.h.
 */
#include "cmd_api.h"
#include "kq_err.h"
#include "kq_log.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

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
    uint8_t b[16];
    size_t got = 0;

    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (errno != EINTR)
            break;
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
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

static void on_done(cmd_item *it, const cmd_result *r)
{
    kq_http_req *req = it->arg;
    char v[32];

    if (r->retry_after > 0) {
        snprintf(v, sizeof v, "%d", r->retry_after);
        kq_http_add_header(req, "Retry-After", v);
    }
    if (r->code != NULL) {
        json_t *details = NULL;
        if (r->status == 409 || r->status == 412) {
            details = json_pack("[{s:s, s:s, s:I}]", "field", "version", "message",
                                "current version of the resource", "current_version",
                                (json_int_t)r->current_version);
            if (r->current_version > 0) {
                snprintf(v, sizeof v, "\"%" PRId64 "\"", r->current_version);
                kq_http_add_header(req, "ETag", v);
            }
        }
        kq_http_respond_error(req, r->status, r->code, r->message, details);
    } else {
        char loc[EV_ID_MAX + 32];
        snprintf(v, sizeof v, "\"%" PRId64 "\"", r->version);
        kq_http_add_header(req, "ETag", v);
        if (r->token && r->token[0])
            kq_http_add_header(req, "X-Consistency-Token", r->token);
        if (r->status == 201) {
            snprintf(loc, sizeof loc, "/api/v1/resources/%s", r->id);
            kq_http_add_header(req, "Location", loc);
        }
        kq_http_respond_json(req, r->status,
                             json_pack("{s:s, s:I, s:s?}", "id", r->id, "version",
                                       (json_int_t)r->version, "consistency_token",
                                       r->token && r->token[0] ? r->token : NULL));
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

void cmd_api_routes(cmd_api *api, kq_http_route *r)
{
    const kq_http_route t[CMD_API_NROUTES] = {
        {"POST", "/api/v1/resources", KQ_AUTH_ROLE_WRITER, KQ_HTTP_BODY_JSON, "resource_create",
         h_create, api},
        {"PUT", "/api/v1/resources/{id}", KQ_AUTH_ROLE_WRITER, KQ_HTTP_BODY_JSON, "resource_update",
         h_update, api},
        {"DELETE", "/api/v1/resources/{id}", KQ_AUTH_ROLE_WRITER, KQ_HTTP_BODY_NONE,
         "resource_delete", h_delete, api},
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
