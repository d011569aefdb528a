/*
 * qry_api.c — routes and handlers of kcqrs-query; see qry_api.h.
 */
#include "qry_api.h"
#include "qry_evjson.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ev_codec.h"
#include "ev_run.h"
#include "kq_auth.h"
#include "kq_err.h"
#include "kq_json_in.h"
#include "kq_log.h"
#include "kq_time.h"
#include "kq_token.h"
#include "qry_text.h"

/*
 * Route kinds (also what qry_wait hands back): a base kind plus, for
 * workflows and runs, K_WF or K_RUN.
 */
enum { K_GET = 1, K_LIST, K_EVENTS, K_AUDIT };
#define K_WF 16
#define K_RUN 32
#define K_BASE(k) ((k)&15)
#define K_AGG(k) ((k) & (K_WF | K_RUN))

/* The detail of a ?since= or ?until= that kq_time_parse refuses. */
#define QRY_TIME_DETAIL "must be an RFC 3339 date-time or @<microseconds since the epoch>"

/*
 * Unknown query parameters are refused (400, one detail each), and so is a
 * parameter given twice (?limit=1&limit=1000: which one would we honour?).
 */
/* Parameters each route accepts (besides consistent_with). */
static const char *const known_get[] = {"snapshot", NULL};
static const char *const known_list[] = {"status", "limit", "cursor", "snapshot", NULL};
static const char *const known_events[] = {"limit", "cursor", "snapshot", NULL};
static const char *const known_audit[] = {
    "aggregate_type", "aggregate_id", "actor",  "event_type", "since",
    "until",          "limit",        "cursor", "snapshot",   NULL};
static const char *const known_wf_list[] = {"enabled", "limit", "cursor", "snapshot", NULL};
static const char *const known_run_list[] = {"workflow_id", "status",   "limit",
                                             "cursor",      "snapshot", NULL};
static const char *const known_none[] = {NULL};
static const char *const known_replay_runs[] = {"limit", NULL};

typedef struct unknown_ctx {
    const char *const *known;
    json_t *details;
    unsigned seen; /* bit i: known[i] seen; bit 31: consistent_with */
} unknown_ctx;

static int unknown_arg(void *ctx, const char *name, const char *value)
{
    unknown_ctx *u = ctx;
    unsigned bit = 0;
    (void)value;
    if (strcmp(name, "consistent_with") == 0)
        bit = 1u << 31;
    for (size_t i = 0; bit == 0 && u->known[i]; i++)
        if (strcmp(name, u->known[i]) == 0)
            bit = 1u << i;
    if (json_array_size(u->details) >= 32) /* bounded: a URL may carry thousands */
        return 0;
    if (bit == 0)
        kq_jin_detail_add(u->details, name, "unknown query parameter");
    else if (u->seen & bit)
        kq_jin_detail_add(u->details, name, "query parameter given more than once");
    u->seen |= bit;
    return 0;
}

/* A detail in `details` for each query parameter not in `known`, or given twice. */
static void note_unknown(kq_http_req *req, const char *const *known, json_t *details)
{
    unknown_ctx u = {known, details, 0};

    kq_http_req_query_each(req, unknown_arg, &u);
}

int qry_api_init(qry_api *api, const kq_config *cfg)
{
    memset(api, 0, sizeof *api);
    api->cfg = cfg;
    return kq_kafka_topic_names(cfg, api->topics) < 0 ? KQ_ERANGE : 0;
}

/* ------------------------------------------------------------------ answers */

static void respond_503(kq_http_req *req, const char *code, const char *msg)
{
    kq_http_add_header(req, "Retry-After", "1");
    kq_http_respond_error(req, 503, code, msg, NULL);
}

/* Answer an error from a read: LMDB/PostgreSQL unavailable, not found, or internal. */
static void respond_read_error(kq_http_req *req, int rc, const char *err)
{
    if (rc == KQ_ENOTFOUND) {
        respond_503(req, "not_ready", "the read model does not exist yet (projector not started)");
    } else if (rc == KQ_EPG) {
        kq_log_warn("PostgreSQL: %s", err);
        respond_503(req, "unavailable", "PostgreSQL is unavailable");
    } else {
        kq_log_error("read failed: %s", err);
        kq_http_respond_error(req, 500, "internal", "read failed", NULL);
    }
}

static void respond_page(kq_http_req *req, json_t *items, const char *next)
{
    kq_http_respond_json(req, 200, json_pack("{s:o, s:s?}", "items", items, "next_cursor", next));
}

/* ------------------------------------------------------------------ parameters */

typedef struct params {
    const char *id;
    const char *snapshot; /* ?snapshot=NAME (validated), NULL = the live model */
    char schema[64];      /* its PostgreSQL schema */
    int by_status;
    uint8_t status;          /* resources: the status; workflows/runs: the cursor's filter byte */
    int flag;                /* workflows: enabled 0/1, runs: ev_run_status; -1: no filter */
    const char *workflow_id; /* runs: ?workflow_id= */
    int limit;
    int has_cursor;
    qry_cursor cursor;
    qry_audit_filter audit;
} params;

static void bad(json_t *details, const char *field, const char *msg)
{
    kq_jin_detail_add(details, field, "%s", msg);
}

static void parse_limit_cursor(kq_http_req *req, params *p, qry_cursor_kind kind, json_t *details)
{
    const char *l = kq_http_req_query(req, "limit"), *c = kq_http_req_query(req, "cursor");
    char err[128];

    if (qry_limit_parse(l, &p->limit) != 0)
        bad(details, "limit", "must be an integer from 1 to 1000");
    if (c != NULL) {
        if (qry_cursor_decode(c, kind, p->status, &p->cursor, err, sizeof err) != 0)
            bad(details, "cursor", err);
        else
            p->has_cursor = 1;
    }
}

static void parse_params(const kq_config *cfg, kq_http_req *req, int kind, params *p,
                         json_t *details)
{
    const char *s;

    memset(p, 0, sizeof *p);
    p->flag = -1;
    p->id = kq_http_req_param(req, "id");
    if ((K_BASE(kind) == K_GET || K_BASE(kind) == K_EVENTS) && !kq_jin_id_valid(p->id))
        bad(details, "id", "must match [A-Za-z0-9._-]{1,64}");
    if ((s = kq_http_req_query(req, "snapshot")) != NULL) {
        if (!qry_snapshot_name_valid(s))
            bad(details, "snapshot", "must match [a-z0-9_]{1,32}");
        else if (qry_snapshot_schema(cfg->pg_schema, s, p->schema, sizeof p->schema) != 0)
            bad(details, "snapshot", "too long for a PostgreSQL schema name with KCQRS_PG_SCHEMA");
        else
            p->snapshot = s;
    }
    switch (kind) {
    case K_LIST | K_WF:
        if ((s = kq_http_req_query(req, "enabled")) != NULL) {
            if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0)
                p->flag = s[0] == 't';
            else
                bad(details, "enabled", "must be true or false");
        }
        p->status = (uint8_t)(p->flag < 0 ? 2 : p->flag);
        parse_limit_cursor(req, p, QRY_CURSOR_WORKFLOWS, details);
        break;
    case K_LIST | K_RUN:
        if ((s = kq_http_req_query(req, "status")) != NULL &&
            (p->flag = ev_run_status_parse(s)) < 0) {
            bad(details, "status", "must be one of pending, running, succeeded, failed");
            p->flag = 0xff; /* no cursor of a status filter matches */
        }
        if ((s = kq_http_req_query(req, "workflow_id")) != NULL) {
            if (!kq_jin_id_valid(s))
                bad(details, "workflow_id", "must match [A-Za-z0-9._-]{1,64}");
            p->workflow_id = s;
        }
        p->status = (uint8_t)(p->flag < 0 ? 4 : p->flag);
        parse_limit_cursor(req, p, QRY_CURSOR_RUNS, details);
        break;
    case K_EVENTS | K_WF:
    case K_EVENTS | K_RUN:
        parse_limit_cursor(req, p, QRY_CURSOR_EVENTS, details);
        break;
    case K_LIST:
        if ((s = kq_http_req_query(req, "status")) != NULL) {
            if (qry_status_parse(s, &p->status) != 0) {
                bad(details, "status", "must be one of active, inactive, archived");
                p->status = 0xff; /* no cursor of a status filter matches */
            }
            p->by_status = 1;
        }
        parse_limit_cursor(req, p, p->by_status ? QRY_CURSOR_BY_STATUS : QRY_CURSOR_RESOURCES,
                           details);
        break;
    case K_EVENTS:
        parse_limit_cursor(req, p, QRY_CURSOR_EVENTS, details);
        break;
    case K_AUDIT: {
        qry_audit_filter *f = &p->audit;
        if ((s = kq_http_req_query(req, "aggregate_type")) != NULL) {
            if (strcmp(s, "resource") != 0 && strcmp(s, "workflow") != 0 && strcmp(s, "run") != 0)
                bad(details, "aggregate_type", "must be one of resource, workflow, run");
            f->aggregate_type = s;
        }
        if ((s = kq_http_req_query(req, "aggregate_id")) != NULL) {
            if (!kq_jin_id_valid(s))
                bad(details, "aggregate_id", "must match [A-Za-z0-9._-]{1,64}");
            f->aggregate_id = s;
        }
        if ((s = kq_http_req_query(req, "actor")) != NULL) {
            if (!kq_auth_name_valid(s))
                bad(details, "actor", "must match [A-Za-z0-9._-]{1,64}");
            f->actor = s;
        }
        if ((s = kq_http_req_query(req, "event_type")) != NULL) {
            if (ev_event_type_from_name(s, strlen(s)) == EV_EVENT_NONE)
                bad(details, "event_type", "unknown event type (e.g. ResourceCreated)");
            f->event_type = s;
        }
        if ((s = kq_http_req_query(req, "since")) != NULL) {
            if (kq_time_parse(s, &f->since_us) != 0)
                bad(details, "since", QRY_TIME_DETAIL);
            else
                f->has_since = 1;
        }
        if ((s = kq_http_req_query(req, "until")) != NULL) {
            if (kq_time_parse(s, &f->until_us) != 0)
                bad(details, "until", QRY_TIME_DETAIL);
            else
                f->has_until = 1;
        }
        if (f->has_since && f->has_until && f->since_us > f->until_us)
            bad(details, "since", "must not be after until");
        parse_limit_cursor(req, p, QRY_CURSOR_AUDIT, details);
        f->limit = p->limit;
        if (p->has_cursor) {
            f->has_after = 1;
            f->after_us = p->cursor.num;
            memcpy(f->after_uuid, p->cursor.uuid, 16);
        }
        break;
    }
    default:
        break;
    }
}

/*
 * The consistency token, if any: 1 with the position, 0 when none, -1 when
 * malformed (a detail was added).
 */
static int parse_token(qry_api *api, kq_http_req *req, json_t *details, char *topic,
                       size_t topiclen, int32_t *partition, int64_t *offset)
{
    const char *field = "X-Consistency-Token";
    const char *tok = kq_http_req_header(req, field);
    int known = 0;

    if (tok == NULL) {
        field = "consistent_with";
        tok = kq_http_req_query(req, field);
    }
    if (tok == NULL)
        return 0;
    if (kq_token_parse(tok, topic, topiclen, partition, offset) != 0 || *offset < 0) {
        bad(details, field, "malformed consistency token");
        return -1;
    }
    for (int i = 0; i < KQ_KAFKA_NTOPICS - 1; i++) /* the event topics, not the dead letters */
        known |= strcmp(topic, api->topics[i]) == 0;
    if (!known || *partition < 0 || *partition >= api->cfg->partitions) {
        bad(details, field, "consistency token names a topic or partition this deployment lacks");
        return -1;
    }
    return 1;
}

/* ------------------------------------------------------------------ reads */

/*
 * The LMDB view a read uses: the live model's current one, or the snapshot's. 0, or the
 * request was answered (503 not_ready, 404 snapshot_not_found, 503 busy, 500).
 */
static int view_acquire(qry_api *api, kq_http_req *req, const params *p, qry_rm_view **v)
{
    char err[256];
    int rc;

    if (p->snapshot == NULL) {
        if ((rc = qry_rm_acquire(api->rm, v, err, sizeof err)) != 0)
            respond_read_error(req, rc, err);
        return rc;
    }
    if (api->snaps == NULL)
        rc = KQ_ENOTFOUND;
    else
        rc = qry_snap_acquire(api->snaps, p->snapshot, v, err, sizeof err);
    if (rc == KQ_ENOTFOUND)
        kq_http_respond_error(req, 404, "snapshot_not_found", "no such snapshot", NULL);
    else if (rc == KQ_EBUSY)
        respond_503(req, "unavailable", "too many snapshots in use at once");
    else if (rc != 0)
        respond_read_error(req, rc, err);
    return rc;
}

static void view_release(qry_api *api, const params *p, qry_rm_view *v)
{
    if (p->snapshot == NULL)
        qry_rm_release(v);
    else
        qry_snap_release(api->snaps, v);
}

static void serve_get(qry_api *api, kq_http_req *req, int kind, const params *p)
{
    qry_rm_view *v = NULL;
    char *res = NULL;
    size_t len = 0;
    int64_t version = 0;
    char err[256], etag[32];
    int rc;

    if (view_acquire(api, req, p, &v) != 0)
        return;
    if (K_AGG(kind) == 0)
        rc = qry_rm_get_text(v, p->id, &res, &len, &version, err, sizeof err);
    else
        rc = qry_rm_doc_get(v, K_AGG(kind) == K_WF ? QRY_DOC_WORKFLOW : QRY_DOC_RUN, p->id, &res,
                            &len, &version, err, sizeof err);
    view_release(api, p, v);
    if (rc == KQ_ENOTFOUND) {
        kq_http_respond_error(req, 404, "not_found",
                              K_AGG(kind) == K_WF    ? "no such workflow"
                              : K_AGG(kind) == K_RUN ? "no such run"
                                                     : "no such resource",
                              NULL);
        return;
    }
    if (rc != 0) {
        respond_read_error(req, rc, err);
        return;
    }
    snprintf(etag, sizeof etag, "\"%" PRId64 "\"", version);
    kq_http_add_header(req, "ETag", etag);
    if (qry_etag_match(kq_http_req_header(req, "If-None-Match"), etag)) {
        free(res);
        kq_http_respond_json(req, 304, NULL);
        return;
    }
    kq_http_respond_text(req, 200, "application/json", res, len);
    free(res);
}

static void serve_list(qry_api *api, kq_http_req *req, int kind, const params *p)
{
    qry_rm_view *v = NULL;
    json_t *items = NULL;
    int more = 0, rc;
    char err[256], next[QRY_CURSOR_MAX];

    if (view_acquire(api, req, p, &v) != 0)
        return;
    if (K_AGG(kind) == 0)
        rc = qry_rm_list(v, p->by_status, p->status, p->has_cursor ? p->cursor.id : NULL, p->limit,
                         &items, &more, err, sizeof err);
    else
        rc = qry_rm_doc_list(v, K_AGG(kind) == K_WF ? QRY_DOC_WORKFLOW : QRY_DOC_RUN, p->flag,
                             p->workflow_id, p->has_cursor ? p->cursor.id : NULL, p->limit, &items,
                             &more, err, sizeof err);
    view_release(api, p, v);
    if (rc != 0) {
        respond_read_error(req, rc, err);
        return;
    }
    if (more) {
        qry_cursor c;
        json_t *last = json_array_get(items, json_array_size(items) - 1);
        memset(&c, 0, sizeof c);
        c.kind = K_AGG(kind) == K_WF    ? QRY_CURSOR_WORKFLOWS
                 : K_AGG(kind) == K_RUN ? QRY_CURSOR_RUNS
                 : p->by_status         ? QRY_CURSOR_BY_STATUS
                                        : QRY_CURSOR_RESOURCES;
        c.status = p->status;
        snprintf(c.id, sizeof c.id, "%s", json_string_value(json_object_get(last, "id")));
        if (qry_cursor_encode(&c, next) != 0)
            more = 0;
    }
    respond_page(req, items, more ? next : NULL);
}

static void serve_pg_page(qry_api *api, kq_http_req *req, int kind, const params *p)
{
    json_t *items = NULL;
    qry_pg_page page;
    char err[512], next[QRY_CURSOR_MAX];
    qry_cursor c;
    int rc;

    if (api->pg == NULL) {
        respond_503(req, "unavailable", "PostgreSQL is not configured");
        return;
    }
    if (p->snapshot != NULL) {
        int exists = 0;
        if ((rc = qry_pg_schema_exists(api->pg, p->schema, &exists, err, sizeof err)) != 0) {
            respond_read_error(req, rc, err);
            return;
        }
        if (!exists) {
            kq_http_respond_error(req, 404, "snapshot_not_found", "no such snapshot", NULL);
            return;
        }
    }
    if (K_BASE(kind) == K_EVENTS)
        rc = qry_pg_events(api->pg, p->snapshot ? p->schema : NULL,
                           K_AGG(kind) == K_WF    ? "workflow"
                           : K_AGG(kind) == K_RUN ? "run"
                                                  : "resource",
                           p->id, p->has_cursor, p->cursor.num, p->limit, &items, &page, err,
                           sizeof err);
    else
        rc = qry_pg_audit(api->pg, p->snapshot ? p->schema : NULL, &p->audit, &items, &page, err,
                          sizeof err);
    if (rc == KQ_ENOTFOUND) {
        kq_http_respond_error(req, 404, "not_found",
                              K_AGG(kind) == K_WF    ? "no such workflow"
                              : K_AGG(kind) == K_RUN ? "no such run"
                                                     : "no such resource",
                              NULL);
        return;
    }
    if (rc != 0) {
        respond_read_error(req, rc, err);
        return;
    }
    memset(&c, 0, sizeof c);
    if (page.more) {
        c.kind = K_BASE(kind) == K_EVENTS ? QRY_CURSOR_EVENTS : QRY_CURSOR_AUDIT;
        c.num = K_BASE(kind) == K_EVENTS ? page.last_version : page.last_us;
        memcpy(c.uuid, page.last_uuid, 16);
        qry_cursor_encode(&c, next);
    }
    respond_page(req, items, page.more ? next : NULL);
}

static void serve(qry_api *api, kq_http_req *req, int kind)
{
    params p;
    json_t *details = json_array();

    parse_params(api->cfg, req, kind, &p, details); /* validated before: no details now */
    json_decref(details);
    switch (K_BASE(kind)) {
    case K_GET:
        serve_get(api, req, kind, &p);
        break;
    case K_LIST:
        serve_list(api, req, kind, &p);
        break;
    default:
        serve_pg_page(api, req, kind, &p);
        break;
    }
}

/* 1 when `target` has applied the position, 0 when not yet, else an error code. */
static int applied(qry_api *api, qry_target target, const char *topic, int32_t partition,
                   int64_t offset)
{
    int64_t next = 0;
    char err[256];
    int rc;

    if (target == QRY_TARGET_LMDB) {
        qry_rm_view *v = NULL;
        if ((rc = qry_rm_acquire(api->rm, &v, err, sizeof err)) == 0)
            rc = qry_rm_next_offset(v, topic, partition, &next, err, sizeof err);
        qry_rm_release(v);
    } else if (api->pg)
        rc = qry_pg_next_offset(api->pg, topic, partition, &next, err, sizeof err);
    else
        rc = KQ_EPG;
    if (rc == KQ_ENOTFOUND) /* no read model yet: not applied */
        return 0;
    if (rc != 0)
        return rc;
    return next > offset;
}

static void handle(qry_api *api, kq_http_req *req, int kind)
{
    params p;
    json_t *details = json_array();
    char topic[KQ_TOKEN_MAX];
    int32_t partition = 0;
    int64_t offset = 0;
    int tok, rc;
    qry_target target =
        K_BASE(kind) == K_GET || K_BASE(kind) == K_LIST ? QRY_TARGET_LMDB : QRY_TARGET_PG;

    if (details == NULL) {
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        return;
    }
    parse_params(api->cfg, req, kind, &p, details);
    note_unknown(req,
                 kind == K_LIST             ? known_list
                 : kind == (K_LIST | K_WF)  ? known_wf_list
                 : kind == (K_LIST | K_RUN) ? known_run_list
                 : K_BASE(kind) == K_EVENTS ? known_events
                 : kind == K_AUDIT          ? known_audit
                 : K_BASE(kind) == K_GET    ? known_get
                                            : known_none,
                 details);
    tok = parse_token(api, req, details, topic, sizeof topic, &partition, &offset);
    if (tok == 1 && p.snapshot != NULL)
        bad(details, "snapshot",
            "a snapshot does not move: a consistency token cannot be used with it");
    if (json_array_size(details) > 0) {
        kq_http_respond_error(req, 400, "validation_failed", "invalid request parameters", details);
        return;
    }
    json_decref(details);
    if (tok == 1 && (rc = applied(api, target, topic, partition, offset)) != 1) {
        if (rc < 0) {
            respond_503(req, "unavailable", "PostgreSQL is unavailable");
            return;
        }
        if (api->wait == NULL) {
            atomic_fetch_add(&api->projection_behind, 1);
            respond_503(req, "projection_behind", "the read model has not applied that write yet");
            return;
        }
        kq_http_defer(req);
        if (qry_wait_add(api->wait, req, kind, target, topic, partition, offset,
                         kq_time_mono_ms() + api->cfg->query_wait_ms) != 0)
            respond_503(req, "unavailable", "shutting down");
        return;
    }
    serve(api, req, kind);
}

static void h_get(kq_http_req *req, void *arg)
{
    handle(arg, req, K_GET);
}
static void h_list(kq_http_req *req, void *arg)
{
    handle(arg, req, K_LIST);
}
static void h_events(kq_http_req *req, void *arg)
{
    handle(arg, req, K_EVENTS);
}
static void h_wf_get(kq_http_req *req, void *arg)
{
    handle(arg, req, K_GET | K_WF);
}
static void h_wf_list(kq_http_req *req, void *arg)
{
    handle(arg, req, K_LIST | K_WF);
}
static void h_wf_events(kq_http_req *req, void *arg)
{
    handle(arg, req, K_EVENTS | K_WF);
}
static void h_run_get(kq_http_req *req, void *arg)
{
    handle(arg, req, K_GET | K_RUN);
}
static void h_run_list(kq_http_req *req, void *arg)
{
    handle(arg, req, K_LIST | K_RUN);
}
static void h_run_events(kq_http_req *req, void *arg)
{
    handle(arg, req, K_EVENTS | K_RUN);
}
static void h_audit(kq_http_req *req, void *arg)
{
    handle(arg, req, K_AUDIT);
}

/* ------------------------------------------------------------------ status */

/* {"positions": {...}, "lag": total} of one target against Kafka's end offsets. */
static json_t *positions(qry_api *api, json_t *stored, json_t *ends, int64_t *total)
{
    json_t *pos = json_object(), *v;
    const char *key;

    *total = 0;
    json_object_foreach(ends, key, v)
    {
        int64_t hi = json_integer_value(json_array_get(v, 1)), next = 0, lag;
        json_t *s = json_object_get(stored, key);
        if (strncmp(key, api->topics[KQ_KAFKA_NTOPICS - 1], strlen(api->topics[3])) == 0 &&
            key[strlen(api->topics[3])] == '/')
            continue; /* the dead-letter topic is not projected */
        if (s)
            next = json_integer_value(s);
        lag = hi > next ? hi - next : 0;
        *total += lag;
        json_object_set_new(pos, key,
                            json_pack("{s:I, s:I, s:I}", "next_offset", (json_int_t)next,
                                      "end_offset", (json_int_t)hi, "lag", (json_int_t)lag));
    }
    if (json_object_size(ends) == 0) /* Kafka never answered: what is stored, lag unknown */
        json_object_foreach(stored, key, v) json_object_set_new(
            pos, key, json_pack("{s:O, s:n, s:n}", "next_offset", v, "end_offset", "lag"));
    return pos;
}

static json_t *target_status(qry_api *api, qry_target t, json_t *ends, int64_t *lag, int *ok)
{
    json_t *stored = NULL, *out;
    char err[512];
    int rc = qry_api_wait_load(api, t, &stored, err, sizeof err);

    *ok = rc == 0;
    *lag = 0;
    if (rc != 0)
        return json_pack("{s:b, s:s}", "available", 0, "error", err);
    out = json_pack("{s:b, s:o}", "available", 1, "positions", positions(api, stored, ends, lag));
    json_object_set_new(out, "lag", json_object_size(ends) ? json_integer(*lag) : json_null());
    json_decref(stored);
    return out;
}

static void h_status(kq_http_req *req, void *arg)
{
    qry_api *api = arg;
    json_t *kafka = NULL, *ends = NULL, *body, *v;
    int64_t lag, dlq = 0;
    const char *key;
    int ok, have_dlq = 0;
    size_t dl = strlen(api->topics[3]);

    if (api->status)
        qry_status_snapshot(api->status, &kafka, &ends);
    else
        kafka = json_pack("{s:b, s:s}", "connected", 0, "error", "not monitored");
    if (ends == NULL)
        ends = json_object();
    json_object_foreach(ends, key, v)
    {
        if (strncmp(key, api->topics[3], dl) == 0 && key[dl] == '/') {
            dlq +=
                json_integer_value(json_array_get(v, 1)) - json_integer_value(json_array_get(v, 0));
            have_dlq = 1;
        }
    }
    body = json_pack("{s:o, s:{s:o, s:o}, s:o}", "kafka", kafka, "read_models", "lmdb",
                     target_status(api, QRY_TARGET_LMDB, ends, &lag, &ok), "postgresql",
                     target_status(api, QRY_TARGET_PG, ends, &lag, &ok), "dead_letters",
                     have_dlq ? json_integer(dlq) : json_null());
    json_decref(ends);
    kq_http_respond_json(req, 200, body);
}

/* ------------------------------------------------------------------ snapshots */

static void h_snapshots(kq_http_req *req, void *arg)
{
    qry_api *api = arg;
    json_t *items = NULL;
    char err[512];
    int rc = api->snaps ? qry_snap_list(api->snaps, &items, err, sizeof err) : 0;

    if (rc != 0) {
        respond_read_error(req, rc, err);
        return;
    }
    if (items == NULL)
        items = json_array();
    kq_http_respond_json(req, 200, json_pack("{s:o}", "items", items));
}

/* ------------------------------------------------------------------ audit chain, replay runs */

/* Refuse unknown or repeated query parameters (400); 1 when answered. */
static int refuse_unknown(kq_http_req *req, const char *const *known, json_t *details)
{
    note_unknown(req, known, details);
    if (json_array_size(details) == 0)
        return 0;
    kq_http_respond_error(req, 400, "validation_failed", "invalid request parameters",
                          json_incref(details));
    return 1;
}

static void h_audit_chain(kq_http_req *req, void *arg)
{
    qry_api *api = arg;
    json_t *details = json_array();

    if (details == NULL) {
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        return;
    }
    if (!refuse_unknown(req, known_none, details)) {
        if (api->chain == NULL)
            respond_503(req, "unavailable", "the hash chain is not checked by this server");
        else
            kq_http_respond_json(req, 200, qry_chain_json(api->chain));
    }
    json_decref(details);
}

static void h_replay_runs(kq_http_req *req, void *arg)
{
    qry_api *api = arg;
    json_t *details = json_array(), *items = NULL;
    const char *ls;
    char err[512], schema[80];
    int limit = QRY_REPLAY_RUNS_DEFAULT, rc;

    if (details == NULL) {
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        return;
    }
    if ((ls = kq_http_req_query(req, "limit")) != NULL &&
        (qry_limit_parse(ls, &limit) != 0 || limit > QRY_REPLAY_RUNS_MAX))
        kq_jin_detail_add(details, "limit", "must be an integer from 1 to %d", QRY_REPLAY_RUNS_MAX);
    if (refuse_unknown(req, known_replay_runs, details))
        goto out;
    if (api->pg == NULL) {
        respond_503(req, "unavailable", "PostgreSQL is unavailable");
        goto out;
    }
    snprintf(schema, sizeof schema, "%s_history", api->cfg->pg_schema);
    if ((rc = qry_pg_replay_runs(api->pg, schema, limit, &items, err, sizeof err)) != 0) {
        respond_read_error(req, rc, err);
        goto out;
    }
    kq_http_respond_json(req, 200, json_pack("{s:o}", "items", items));
out:
    json_decref(details);
}

/* ------------------------------------------------------------------ hooks */

void qry_api_routes(qry_api *api, kq_http_route *routes)
{
    const kq_http_route r[QRY_API_NROUTES] = {
        {"GET", "/api/v1/resources/{id}", KQ_AUTH_ROLE_READER, KQ_HTTP_BODY_NONE, "resource_get",
         h_get, api},
        {"GET", "/api/v1/resources", KQ_AUTH_ROLE_READER, KQ_HTTP_BODY_NONE, "resource_list",
         h_list, api},
        {"GET", "/api/v1/resources/{id}/events", KQ_AUTH_ROLE_READER, KQ_HTTP_BODY_NONE,
         "resource_events", h_events, api},
        {"GET", "/api/v1/workflows/{id}", KQ_AUTH_ROLE_READER, KQ_HTTP_BODY_NONE, "workflow_get",
         h_wf_get, api},
        {"GET", "/api/v1/workflows", KQ_AUTH_ROLE_READER, KQ_HTTP_BODY_NONE, "workflow_list",
         h_wf_list, api},
        {"GET", "/api/v1/workflows/{id}/events", KQ_AUTH_ROLE_READER, KQ_HTTP_BODY_NONE,
         "workflow_events", h_wf_events, api},
        {"GET", "/api/v1/runs/{id}", KQ_AUTH_ROLE_READER, KQ_HTTP_BODY_NONE, "run_get", h_run_get,
         api},
        {"GET", "/api/v1/runs", KQ_AUTH_ROLE_READER, KQ_HTTP_BODY_NONE, "run_list", h_run_list,
         api},
        {"GET", "/api/v1/runs/{id}/events", KQ_AUTH_ROLE_READER, KQ_HTTP_BODY_NONE, "run_events",
         h_run_events, api},
        {"GET", "/api/v1/audit", KQ_AUTH_ROLE_AUDITOR, KQ_HTTP_BODY_NONE, "audit", h_audit, api},
        {"GET", "/api/v1/status", KQ_AUTH_ROLE_READER, KQ_HTTP_BODY_NONE, "status", h_status, api},
        {"GET", "/api/v1/events/stream", KQ_AUTH_ROLE_READER, KQ_HTTP_BODY_NONE, "events_stream",
         qry_stream_handler, api->stream},
        {"GET", "/api/v1/snapshots", KQ_AUTH_ROLE_READER, KQ_HTTP_BODY_NONE, "snapshots",
         h_snapshots, api},
        {"GET", "/api/v1/audit/chain", KQ_AUTH_ROLE_AUDITOR, KQ_HTTP_BODY_NONE, "audit_chain",
         h_audit_chain, api},
        {"GET", "/api/v1/replay/runs", KQ_AUTH_ROLE_READER, KQ_HTTP_BODY_NONE, "replay_runs",
         h_replay_runs, api},
    };
    memcpy(routes, r, sizeof r);
}

int qry_api_wait_load(void *arg, qry_target target, json_t **offsets, char *errstr, size_t errlen)
{
    qry_api *api = arg;

    if (target == QRY_TARGET_LMDB) {
        qry_rm_view *v = NULL;
        int rc = qry_rm_acquire(api->rm, &v, errstr, errlen);
        if (rc == 0)
            rc = qry_rm_offsets(v, offsets, errstr, errlen);
        qry_rm_release(v);
        return rc;
    }
    if (api->pg == NULL)
        return kq_seterr(errstr, errlen, KQ_EPG, "PostgreSQL is not configured");
    return qry_pg_offsets(api->pg, offsets, errstr, errlen);
}

void qry_api_wait_done(void *arg, kq_http_req *req, int kind, qry_wait_outcome outcome)
{
    qry_api *api = arg;

    if (outcome == QRY_WAIT_APPLIED) {
        atomic_fetch_add(&api->served_after_wait, 1);
        serve(api, req, kind);
    } else if (outcome == QRY_WAIT_EXPIRED) {
        atomic_fetch_add(&api->projection_behind, 1);
        respond_503(req, "projection_behind", "the read model has not applied that write yet");
    } else {
        respond_503(req, "unavailable", "shutting down");
    }
}

int qry_api_ready(void *arg, char *why, size_t whylen)
{
    qry_api *api = arg;
    json_t *kafka = NULL, *ends = NULL;
    char err[256];
    int64_t lag;
    int ok = 1, tok;

    if (qry_rm_open(api->rm, err, sizeof err) != 0) {
        snprintf(why, whylen, "LMDB read model: %s", err);
        return 0;
    }
    if (api->pg == NULL || qry_pg_ping(api->pg, err, sizeof err) != 0) {
        snprintf(why, whylen, "PostgreSQL: %s", api->pg ? err : "not configured");
        return 0;
    }
    if (qry_evjson_missing_keys() > 0) { /* never silently "[erased]" (events/ev_pii.h) */
        snprintf(why, whylen,
                 "%llu events not shown: a data key is missing for a subject that was not "
                 "erased (see the log)",
                 qry_evjson_missing_keys());
        return 0;
    }
    if (api->status == NULL)
        return 1;
    qry_status_snapshot(api->status, &kafka, &ends);
    for (int t = 0; t < 2 && ok; t++) {
        json_t *s = target_status(api, (qry_target)t, ends, &lag, &tok);
        json_decref(s);
        if (tok && lag > api->cfg->query_ready_lag) {
            snprintf(why, whylen, "%s lag %" PRId64 " events over KCQRS_QUERY_READY_LAG %d",
                     t == 0 ? "LMDB" : "PostgreSQL", lag, api->cfg->query_ready_lag);
            ok = 0;
        }
    }
    json_decref(kafka);
    json_decref(ends);
    return ok;
}

void qry_api_metrics(void *arg, FILE *out)
{
    qry_api *api = arg;

    qry_stream_metrics(api->stream, out);

    fprintf(out,
            "# HELP kcqrs_query_projection_behind_total Answers 503 projection_behind.\n"
            "# TYPE kcqrs_query_projection_behind_total counter\n"
            "kcqrs_query_projection_behind_total %" PRIuFAST64 "\n"
            "# HELP kcqrs_query_served_after_wait_total Reads served once a token was applied.\n"
            "# TYPE kcqrs_query_served_after_wait_total counter\n"
            "kcqrs_query_served_after_wait_total %" PRIuFAST64 "\n"
            "# HELP kcqrs_query_readmodel_switches_total Replaced LMDB read models taken up "
            "without a restart.\n"
            "# TYPE kcqrs_query_readmodel_switches_total counter\n"
            "kcqrs_query_readmodel_switches_total %" PRIu64 "\n",
            atomic_load(&api->projection_behind), atomic_load(&api->served_after_wait),
            api->rm ? qry_rm_switches(api->rm) : 0);
    qry_wait_metrics(api->wait, out);
    qry_chain_metrics(api->chain, out);
    fprintf(out,
            "# HELP kcqrs_query_missing_data_keys_total Events with sealed personal data not "
            "shown: no data key, subject not erased.\n"
            "# TYPE kcqrs_query_missing_data_keys_total counter\n"
            "kcqrs_query_missing_data_keys_total %llu\n",
            qry_evjson_missing_keys());
}
