/*
 * ev_schema.c — the descriptor tables of events.fbs and the generic verifier.
 *
 * The tables below are events.fbs transcribed row by row (same order, same
 * names, same defaults). The conformance tests check them against flatc: every
 * example in tests/data/events is encoded by us and decoded by flatc and the
 * other way round, and a coverage test fails if some field of the schema is
 * not exercised by any example.
 */
#include "ev_schema.h"

#include <stdio.h>
#include <string.h>

#include "kq_err.h"

/* ---------------------------------------------------------------- enums */

#define COUNT(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))

static const char *const aggregate_type_values[] = {"unknown", "resource", "workflow", "run"};
const ev_schema_enum ev_schema_aggregate_type = {"AggregateType", aggregate_type_values,
                                                 COUNT(aggregate_type_values)};

static const char *const resource_status_values[] = {"active", "inactive", "archived"};
const ev_schema_enum ev_schema_resource_status = {"ResourceStatus", resource_status_values,
                                                  COUNT(resource_status_values)};

static const char *const http_method_values[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
const ev_schema_enum ev_schema_http_method = {"HttpMethod", http_method_values,
                                              COUNT(http_method_values)};

static const char *const trigger_kind_values[] = {"manual", "webhook"};
const ev_schema_enum ev_schema_trigger_kind = {"TriggerKind", trigger_kind_values,
                                               COUNT(trigger_kind_values)};

/* ---------------------------------------------------------------- field rows */

/* Row builders: name, slot, then what the kind needs. */
#define F_SCALAR(n, s, k, d)                                                                       \
    {                                                                                              \
        n, s, k, 0, d, NULL, NULL, NULL, 0                                                         \
    }
#define F_OPT(n, s, k)                                                                             \
    {                                                                                              \
        n, s, k, EV_F_OPTIONAL, 0, NULL, NULL, NULL, 0                                             \
    }
#define F_ENUM(n, s, e, d)                                                                         \
    {                                                                                              \
        n, s, EV_K_ENUM, 0, d, &(e), NULL, NULL, 0                                                 \
    }
#define F_ENUM_OPT(n, s, e)                                                                        \
    {                                                                                              \
        n, s, EV_K_ENUM, EV_F_OPTIONAL, 0, &(e), NULL, NULL, 0                                     \
    }
#define F_REF(n, s, k, fl)                                                                         \
    {                                                                                              \
        n, s, k, fl, 0, NULL, NULL, NULL, 0                                                        \
    }
/* [ubyte] of exactly `len` bytes when present (verified, see ev_schema.h). */
#define F_BYTES(n, s, fl, len)                                                                     \
    {                                                                                              \
        n, s, EV_K_VEC_UBYTE, fl, 0, NULL, NULL, NULL, len                                         \
    }
#define F_TABLE(n, s, k, t, fl)                                                                    \
    {                                                                                              \
        n, s, k, fl, 0, NULL, &(t), NULL, 0                                                        \
    }
#define F_UTYPE(n, s, u)                                                                           \
    {                                                                                              \
        n, s, EV_K_UTYPE, 0, 0, NULL, NULL, &(u), 0                                                \
    }
#define F_UNION(n, s, u, fl)                                                                       \
    {                                                                                              \
        n, s, EV_K_UNION, fl, 0, NULL, NULL, &(u), 0                                               \
    }
#define TABLE(var, tname, rows) const ev_schema_table var = {tname, rows, COUNT(rows)}

/* Resource */
static const ev_schema_field resource_created_fields[] = {
    F_REF("name", EV_SLOT_RESOURCE_CREATED_NAME, EV_K_STRING, EV_F_REQUIRED),
    F_REF("description", EV_SLOT_RESOURCE_CREATED_DESCRIPTION, EV_K_STRING, 0),
    F_ENUM("status", EV_SLOT_RESOURCE_CREATED_STATUS, ev_schema_resource_status, 0),
    F_REF("name_sealed", EV_SLOT_RESOURCE_CREATED_NAME_SEALED, EV_K_VEC_UBYTE, 0),
    F_REF("description_sealed", EV_SLOT_RESOURCE_CREATED_DESCRIPTION_SEALED, EV_K_VEC_UBYTE, 0),
};
static TABLE(resource_created, "ResourceCreated", resource_created_fields);

static const ev_schema_field resource_updated_fields[] = {
    F_REF("name", EV_SLOT_RESOURCE_UPDATED_NAME, EV_K_STRING, 0),
    F_REF("description", EV_SLOT_RESOURCE_UPDATED_DESCRIPTION, EV_K_STRING, 0),
    F_ENUM_OPT("status", EV_SLOT_RESOURCE_UPDATED_STATUS, ev_schema_resource_status),
    F_REF("name_sealed", EV_SLOT_RESOURCE_UPDATED_NAME_SEALED, EV_K_VEC_UBYTE, 0),
    F_REF("description_sealed", EV_SLOT_RESOURCE_UPDATED_DESCRIPTION_SEALED, EV_K_VEC_UBYTE, 0),
};
static TABLE(resource_updated, "ResourceUpdated", resource_updated_fields);

static const ev_schema_field resource_deleted_fields[] = {
    F_REF("reason", EV_SLOT_RESOURCE_DELETED_REASON, EV_K_STRING, 0),
};
static TABLE(resource_deleted, "ResourceDeleted", resource_deleted_fields);

/* Workflow */
static const ev_schema_field http_header_fields[] = {
    F_REF("name", EV_SLOT_HTTP_HEADER_NAME, EV_K_STRING, EV_F_REQUIRED),
    F_REF("value", EV_SLOT_HTTP_HEADER_VALUE, EV_K_STRING, EV_F_REQUIRED),
};
static TABLE(http_header, "HttpHeader", http_header_fields);

static const ev_schema_field http_action_fields[] = {
    F_ENUM("method", EV_SLOT_HTTP_ACTION_METHOD, ev_schema_http_method, EV_DEFAULT_HTTP_METHOD),
    F_REF("url", EV_SLOT_HTTP_ACTION_URL, EV_K_STRING, EV_F_REQUIRED),
    F_TABLE("headers", EV_SLOT_HTTP_ACTION_HEADERS, EV_K_VEC_TABLE, http_header, 0),
    F_REF("body_template", EV_SLOT_HTTP_ACTION_BODY_TEMPLATE, EV_K_STRING, 0),
};
static TABLE(http_action, "HttpAction", http_action_fields);

static const ev_schema_field email_action_fields[] = {
    F_REF("to", EV_SLOT_EMAIL_ACTION_TO, EV_K_VEC_STRING, EV_F_REQUIRED),
    F_REF("subject", EV_SLOT_EMAIL_ACTION_SUBJECT, EV_K_STRING, EV_F_REQUIRED),
    F_REF("body_template", EV_SLOT_EMAIL_ACTION_BODY_TEMPLATE, EV_K_STRING, 0),
};
static TABLE(email_action, "EmailAction", email_action_fields);

static const ev_schema_table *const action_members[] = {&http_action, &email_action};
const ev_schema_union ev_schema_action = {"Action", action_members, COUNT(action_members)};

static const ev_schema_field step_fields[] = {
    F_REF("name", EV_SLOT_STEP_NAME, EV_K_STRING, 0),
    F_UTYPE("action_type", EV_SLOT_STEP_ACTION_TYPE, ev_schema_action),
    F_UNION("action", EV_SLOT_STEP_ACTION, ev_schema_action, EV_F_REQUIRED),
};
static TABLE(step, "Step", step_fields);

static const ev_schema_field workflow_created_fields[] = {
    F_REF("name", EV_SLOT_WORKFLOW_CREATED_NAME, EV_K_STRING, EV_F_REQUIRED),
    F_SCALAR("enabled", EV_SLOT_WORKFLOW_CREATED_ENABLED, EV_K_BOOL, EV_DEFAULT_ENABLED),
    F_REF("webhook_secret", EV_SLOT_WORKFLOW_CREATED_WEBHOOK_SECRET, EV_K_STRING, EV_F_REQUIRED),
    F_TABLE("steps", EV_SLOT_WORKFLOW_CREATED_STEPS, EV_K_VEC_TABLE, step, EV_F_REQUIRED),
    F_REF("webhook_secret_sealed", EV_SLOT_WORKFLOW_CREATED_WEBHOOK_SECRET_SEALED, EV_K_VEC_UBYTE,
          0),
};
static TABLE(workflow_created, "WorkflowCreated", workflow_created_fields);

static const ev_schema_field workflow_updated_fields[] = {
    F_REF("name", EV_SLOT_WORKFLOW_UPDATED_NAME, EV_K_STRING, 0),
    F_REF("webhook_secret", EV_SLOT_WORKFLOW_UPDATED_WEBHOOK_SECRET, EV_K_STRING, 0),
    F_TABLE("steps", EV_SLOT_WORKFLOW_UPDATED_STEPS, EV_K_VEC_TABLE, step, 0),
    F_REF("webhook_secret_sealed", EV_SLOT_WORKFLOW_UPDATED_WEBHOOK_SECRET_SEALED, EV_K_VEC_UBYTE,
          0),
};
static TABLE(workflow_updated, "WorkflowUpdated", workflow_updated_fields);

static const ev_schema_table workflow_enabled = {"WorkflowEnabled", NULL, 0};
static const ev_schema_table workflow_disabled = {"WorkflowDisabled", NULL, 0};

static const ev_schema_field workflow_deleted_fields[] = {
    F_REF("reason", EV_SLOT_WORKFLOW_DELETED_REASON, EV_K_STRING, 0),
};
static TABLE(workflow_deleted, "WorkflowDeleted", workflow_deleted_fields);

/* Run */
static const ev_schema_field run_started_fields[] = {
    F_REF("workflow_id", EV_SLOT_RUN_STARTED_WORKFLOW_ID, EV_K_STRING, EV_F_REQUIRED),
    F_SCALAR("workflow_version", EV_SLOT_RUN_STARTED_WORKFLOW_VERSION, EV_K_LONG, 0),
    F_ENUM("trigger", EV_SLOT_RUN_STARTED_TRIGGER, ev_schema_trigger_kind, 0),
    F_REF("payload_json", EV_SLOT_RUN_STARTED_PAYLOAD_JSON, EV_K_STRING, 0),
    F_SCALAR("step_count", EV_SLOT_RUN_STARTED_STEP_COUNT, EV_K_UINT, 0),
    F_TABLE("steps", EV_SLOT_RUN_STARTED_STEPS, EV_K_VEC_TABLE, step, 0),
    F_REF("signing_secret", EV_SLOT_RUN_STARTED_SIGNING_SECRET, EV_K_STRING, 0),
    F_REF("signing_secret_sealed", EV_SLOT_RUN_STARTED_SIGNING_SECRET_SEALED, EV_K_VEC_UBYTE, 0),
};
static TABLE(run_started, "RunStarted", run_started_fields);

static const ev_schema_field step_attempted_fields[] = {
    F_SCALAR("step", EV_SLOT_STEP_ATTEMPTED_STEP, EV_K_UINT, 0),
    F_SCALAR("attempt", EV_SLOT_STEP_ATTEMPTED_ATTEMPT, EV_K_UINT, 0),
    F_OPT("status_code", EV_SLOT_STEP_ATTEMPTED_STATUS_CODE, EV_K_INT),
    F_REF("error", EV_SLOT_STEP_ATTEMPTED_ERROR, EV_K_STRING, 0),
    F_SCALAR("duration_ms", EV_SLOT_STEP_ATTEMPTED_DURATION_MS, EV_K_LONG, 0),
    F_OPT("next_delay_ms", EV_SLOT_STEP_ATTEMPTED_NEXT_DELAY_MS, EV_K_LONG),
    F_REF("delivery_id", EV_SLOT_STEP_ATTEMPTED_DELIVERY_ID, EV_K_STRING, 0),
};
static TABLE(step_attempted, "StepAttempted", step_attempted_fields);

static const ev_schema_field step_succeeded_fields[] = {
    F_SCALAR("step", EV_SLOT_STEP_SUCCEEDED_STEP, EV_K_UINT, 0),
    F_SCALAR("attempt", EV_SLOT_STEP_SUCCEEDED_ATTEMPT, EV_K_UINT, 0),
    F_OPT("status_code", EV_SLOT_STEP_SUCCEEDED_STATUS_CODE, EV_K_INT),
};
static TABLE(step_succeeded, "StepSucceeded", step_succeeded_fields);

static const ev_schema_field step_failed_fields[] = {
    F_SCALAR("step", EV_SLOT_STEP_FAILED_STEP, EV_K_UINT, 0),
    F_SCALAR("attempt", EV_SLOT_STEP_FAILED_ATTEMPT, EV_K_UINT, 0),
    F_REF("error", EV_SLOT_STEP_FAILED_ERROR, EV_K_STRING, 0),
};
static TABLE(step_failed, "StepFailed", step_failed_fields);

static const ev_schema_table run_succeeded = {"RunSucceeded", NULL, 0};

static const ev_schema_field run_failed_fields[] = {
    F_SCALAR("step", EV_SLOT_RUN_FAILED_STEP, EV_K_UINT, 0),
    F_REF("error", EV_SLOT_RUN_FAILED_ERROR, EV_K_STRING, 0),
};
static TABLE(run_failed, "RunFailed", run_failed_fields);

/* union Event: the order of events.fbs; member i is type i + 1. */
static const ev_schema_table *const event_members[] = {
    &resource_created, &resource_updated,  &resource_deleted, &workflow_created, &workflow_updated,
    &workflow_enabled, &workflow_disabled, &workflow_deleted, &run_started,      &step_attempted,
    &step_succeeded,   &step_failed,       &run_succeeded,    &run_failed,
};
const ev_schema_union ev_schema_event = {"Event", event_members, COUNT(event_members)};

/* Envelope */
static const ev_schema_field envelope_fields[] = {
    F_BYTES("event_id", EV_SLOT_ENVELOPE_EVENT_ID, EV_F_REQUIRED, EV_EVENT_ID_LEN),
    F_ENUM("aggregate_type", EV_SLOT_ENVELOPE_AGGREGATE_TYPE, ev_schema_aggregate_type, 0),
    F_REF("aggregate_id", EV_SLOT_ENVELOPE_AGGREGATE_ID, EV_K_STRING, EV_F_REQUIRED),
    F_SCALAR("version", EV_SLOT_ENVELOPE_VERSION, EV_K_LONG, 0),
    F_SCALAR("occurred_at_us", EV_SLOT_ENVELOPE_OCCURRED_AT_US, EV_K_LONG, 0),
    F_REF("actor", EV_SLOT_ENVELOPE_ACTOR, EV_K_STRING, 0),
    F_REF("command_id", EV_SLOT_ENVELOPE_COMMAND_ID, EV_K_STRING, 0),
    F_REF("correlation_id", EV_SLOT_ENVELOPE_CORRELATION_ID, EV_K_STRING, 0),
    F_REF("causation_id", EV_SLOT_ENVELOPE_CAUSATION_ID, EV_K_STRING, 0),
    F_SCALAR("schema_version", EV_SLOT_ENVELOPE_SCHEMA_VERSION, EV_K_USHORT,
             EV_DEFAULT_SCHEMA_VERSION),
    F_REF("prev_hash", EV_SLOT_ENVELOPE_PREV_HASH, EV_K_VEC_UBYTE, 0),
    F_UTYPE("payload_type", EV_SLOT_ENVELOPE_PAYLOAD_TYPE, ev_schema_event),
    F_UNION("payload", EV_SLOT_ENVELOPE_PAYLOAD, ev_schema_event, EV_F_REQUIRED),
    F_REF("command_hash", EV_SLOT_ENVELOPE_COMMAND_HASH, EV_K_VEC_UBYTE, 0),
};
TABLE(ev_schema_envelope, "Envelope", envelope_fields);

/* ---------------------------------------------------------------- lookups */

static int name_eq(const char *a, const char *b, size_t blen)
{
    return strncmp(a, b, blen) == 0 && a[blen] == '\0';
}

const ev_schema_field *ev_schema_field_by_name(const ev_schema_table *t, const char *name,
                                               size_t len)
{
    for (uint32_t i = 0; i < t->nfields; i++)
        if (name_eq(t->fields[i].name, name, len))
            return &t->fields[i];
    return NULL;
}

int ev_schema_enum_value(const ev_schema_enum *e, const char *name, size_t len)
{
    for (uint32_t i = 0; i < e->count; i++)
        if (name_eq(e->values[i], name, len))
            return (int)i;
    return -1;
}

int ev_schema_union_type(const ev_schema_union *u, const char *name, size_t len)
{
    if (name_eq("NONE", name, len))
        return 0;
    for (uint32_t i = 0; i < u->count; i++)
        if (name_eq(u->members[i]->name, name, len))
            return (int)i + 1;
    return -1;
}

const char *ev_schema_union_type_name(const ev_schema_union *u, unsigned type)
{
    if (type == 0)
        return "NONE";
    return type <= u->count ? u->members[type - 1]->name : NULL;
}

/* ---------------------------------------------------------------- verifier */

typedef struct vpath_elem {
    const char *name;
    int64_t index; /* -1: not a vector element */
} vpath_elem;

typedef struct vctx {
    ev_fb_verifier v;
    uint64_t budget; /* string bytes and offset-vector elements still allowed */
    vpath_elem path[EV_SCHEMA_MAX_DEPTH * 2 + 2];
    unsigned npath;
    char *errstr;
    size_t errlen;
} vctx;

static void path_format(const vctx *c, char *out, size_t outlen)
{
    size_t n = 0;

    out[0] = '\0';
    for (unsigned i = 0; i < c->npath && n < outlen; i++) {
        int w;
        if (c->path[i].index >= 0)
            w = snprintf(out + n, outlen - n, "[%lld]", (long long)c->path[i].index);
        else
            w = snprintf(out + n, outlen - n, "%s%s", n ? "." : "", c->path[i].name);
        if (w < 0)
            break;
        n += (size_t)w;
    }
    if (n == 0)
        snprintf(out, outlen, "(root)");
}

/* A failure recorded by an ev_fb primitive: prefix it with the path. */
static int fail_fb(vctx *c)
{
    char path[256], what[256];

    path_format(c, path, sizeof path);
    ev_fb_verifier_error(&c->v, what, sizeof what);
    return kq_seterr(c->errstr, c->errlen, KQ_ECORRUPT, "%s: %s", path, what);
}

/* A failure of our own policy at byte position `pos`. */
static int fail(vctx *c, uint32_t pos, const char *what)
{
    char path[256];

    path_format(c, path, sizeof path);
    return kq_seterr(c->errstr, c->errlen, KQ_ECORRUPT, "%s: %s at offset %lu", path, what,
                     (unsigned long)pos);
}

static int push(vctx *c, const char *name, int64_t index)
{
    if (c->npath >= sizeof c->path / sizeof c->path[0])
        return fail(c, 0, "nesting too deep");
    c->path[c->npath].name = name;
    c->path[c->npath].index = index;
    c->npath++;
    return 0;
}

static void pop(vctx *c)
{
    c->npath--;
}

static int spend(vctx *c, uint32_t pos, uint64_t amount)
{
    if (amount > c->budget)
        return fail(c, pos, "too much shared data (verification work limit)");
    c->budget -= amount;
    return 0;
}

/* The string whose length word is at `s` (already verified in bounds). */
static int check_string_at(vctx *c, uint32_t s)
{
    uint32_t len = ev_fb_read_u32(c->v.buf + s);

    if (spend(c, s, 4u + (uint64_t)len))
        return KQ_ECORRUPT;
    if (!ev_fb_utf8_valid((const char *)c->v.buf + s + 4, len))
        return fail(c, s, "invalid UTF-8");
    return 0;
}

static int verify_fields(vctx *c, const ev_schema_table *t, uint32_t tpos);

static int verify_child(vctx *c, const ev_schema_table *t, uint32_t child)
{
    int rc;

    if (ev_fb_verify_enter(&c->v))
        return fail_fb(c);
    rc = verify_fields(c, t, child);
    ev_fb_verify_leave(&c->v);
    return rc;
}

static int verify_scalar(vctx *c, const ev_schema_field *f, uint32_t tpos, size_t size)
{
    uint32_t at;
    uint8_t val;

    if (ev_fb_verify_field(&c->v, tpos, f->slot, size, size))
        return fail_fb(c);
    if (f->kind != EV_K_BOOL && f->kind != EV_K_ENUM && f->kind != EV_K_UTYPE)
        return 0;
    at = ev_fb_field(c->v.buf, tpos, f->slot);
    if (at == 0)
        return 0;
    val = c->v.buf[at];
    if (f->kind == EV_K_BOOL && val > 1)
        return fail(c, at, "bool is neither 0 nor 1");
    if (f->kind == EV_K_ENUM && val >= f->enm->count)
        return fail(c, at, "unknown enum value");
    if (f->kind == EV_K_UTYPE && val > f->uni->count)
        return fail(c, at, "unknown union type");
    return 0;
}

static int verify_value(vctx *c, const ev_schema_field *f, uint32_t tpos)
{
    uint32_t vpos, count, child, s;
    const uint8_t *buf = c->v.buf;

    switch ((ev_schema_kind)f->kind) {
    case EV_K_BOOL:
    case EV_K_UBYTE:
    case EV_K_ENUM:
    case EV_K_UTYPE:
        return verify_scalar(c, f, tpos, 1);
    case EV_K_USHORT:
        return verify_scalar(c, f, tpos, 2);
    case EV_K_INT:
    case EV_K_UINT:
        return verify_scalar(c, f, tpos, 4);
    case EV_K_LONG:
        return verify_scalar(c, f, tpos, 8);
    case EV_K_STRING:
        if (ev_fb_verify_string(&c->v, tpos, f->slot))
            return fail_fb(c);
        s = ev_fb_field(buf, tpos, f->slot);
        return s ? check_string_at(c, ev_fb_deref(buf, s)) : 0;
    case EV_K_VEC_UBYTE:
        if (ev_fb_verify_vector(&c->v, tpos, f->slot, 1, 1, &vpos, &count))
            return fail_fb(c);
        if (f->len != 0 && vpos != 0 && count != f->len) {
            char what[64];
            snprintf(what, sizeof what, "must be exactly %lu bytes, got %lu", (unsigned long)f->len,
                     (unsigned long)count);
            return fail(c, vpos - 4u, what);
        }
        return 0;
    case EV_K_VEC_STRING:
        if (ev_fb_verify_vector(&c->v, tpos, f->slot, 4, 4, &vpos, &count))
            return fail_fb(c);
        for (uint32_t i = 0; i < count; i++) {
            uint32_t at = vpos + 4u * i;
            int rc;
            if (spend(c, at, 4))
                return KQ_ECORRUPT;
            if ((rc = push(c, NULL, i)))
                return rc;
            if (ev_fb_verify_string_at(&c->v, at))
                return fail_fb(c);
            if ((rc = check_string_at(c, ev_fb_deref(buf, at))))
                return rc;
            pop(c);
        }
        return 0;
    case EV_K_VEC_TABLE:
        if (ev_fb_verify_vector(&c->v, tpos, f->slot, 4, 4, &vpos, &count))
            return fail_fb(c);
        for (uint32_t i = 0; i < count; i++) {
            uint32_t at = vpos + 4u * i;
            int rc;
            if (spend(c, at, 4))
                return KQ_ECORRUPT;
            if ((rc = push(c, NULL, i)))
                return rc;
            if (ev_fb_verify_table_at(&c->v, at, &child))
                return fail_fb(c);
            if ((rc = verify_child(c, f->table, child)))
                return rc;
            pop(c);
        }
        return 0;
    case EV_K_TABLE:
        if (ev_fb_verify_table_field(&c->v, tpos, f->slot, &child))
            return fail_fb(c);
        return child ? verify_child(c, f->table, child) : 0;
    case EV_K_UNION: {
        /* The type (slot - 1) was verified by the EV_K_UTYPE row before this. */
        unsigned type = ev_fb_get_u8(buf, tpos, f->slot - 1u, 0);
        if (ev_fb_verify_table_field(&c->v, tpos, f->slot, &child))
            return fail_fb(c);
        if (type == 0 && child != 0)
            return fail(c, tpos, "union value present but its type is NONE");
        if (type != 0 && child == 0)
            return fail(c, tpos, "union type set but its value is absent");
        return child ? verify_child(c, f->uni->members[type - 1], child) : 0;
    }
    }
    return fail(c, tpos, "internal error: unknown field kind");
}

static int verify_field(vctx *c, const ev_schema_field *f, uint32_t tpos)
{
    /* The table's header was verified before its fields, so the plain reader
     * may look at its vtable (cheaper than ev_fb_verify_required, which
     * re-checks the header). */
    if ((f->flags & EV_F_REQUIRED) && ev_fb_field(c->v.buf, tpos, f->slot) == 0)
        return fail(c, tpos, "required field missing");
    return verify_value(c, f, tpos);
}

static int verify_fields(vctx *c, const ev_schema_table *t, uint32_t tpos)
{
    for (uint32_t i = 0; i < t->nfields; i++) {
        const ev_schema_field *f = &t->fields[i];
        int rc;

        if ((rc = push(c, f->name, -1)))
            return rc;
        if ((rc = verify_field(c, f, tpos)))
            return rc;
        pop(c);
    }
    return 0;
}

int ev_schema_verify_root(const uint8_t *buf, size_t len, const char *file_ident,
                          const ev_schema_table *root, char *errstr, size_t errlen)
{
    vctx c;
    uint32_t tpos;

    c.errstr = errstr;
    c.errlen = errlen;
    c.npath = 0;
    c.budget = 8u * (uint64_t)len + (1u << 20);
    if (buf == NULL)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "no buffer");
    ev_fb_verifier_init(&c.v, buf, len);
    if (ev_fb_verify_root(&c.v, file_ident, &tpos))
        return fail_fb(&c);
    return verify_fields(&c, root, tpos);
}

int ev_schema_verify(const uint8_t *buf, size_t len, char *errstr, size_t errlen)
{
    return ev_schema_verify_root(buf, len, EV_FILE_IDENT, &ev_schema_envelope, errstr, errlen);
}
