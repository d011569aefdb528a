/*
 * ev_codec.h — the typed event codec the services use.
 *
 * One C struct per table of events.fbs, an ev_envelope holding any of the 14
 * events, and two calls:
 *
 *   ev_envelope_encode()  validates the domain rules (DESIGN.md section 3 and
 *                         the EV_MAX_* limits below), then builds the buffer;
 *   ev_envelope_decode()  verifies the buffer (ev_schema_verify) and fills the
 *                         struct with VIEWS into the buffer: zero copy, no malloc.
 *
 * Strings are ev_str views {ptr, len}: ptr == NULL means absent, ptr != NULL
 * with len 0 is the empty string. Decoded strings point into the buffer and
 * are also NUL-terminated there (FlatBuffers guarantees it), but may contain
 * NUL bytes; use len. Optional scalars (`= null` in the schema) come with a
 * has_* flag.
 *
 * Lists (steps, headers, e-mail recipients) have two sources behind one
 * accessor: for encoding the caller points `items` at an array of `count`
 * elements; decoding sets `buf`/`pos` to the vector inside the buffer and
 * ev_*_list_get() reads element i on demand. `present` tells an absent
 * optional list (WorkflowUpdated.steps: "steps unchanged") from an empty one.
 * A decoded envelope can be passed to ev_envelope_encode() unchanged.
 *
 * Memory: nothing here allocates except the builder's own buffer. Decoded
 * views are valid as long as the decoded buffer is; the caller owns both.
 *
 * Unknown enum values, union types and fields of newer schemas: see
 * ev_schema.h (values are rejected by verification, fields ignored).
 *
 * To add an event type: append it to `union Event` in events.fbs, describe it
 * in ev_schema.c, add its EV_EVENT_* value (same position), struct and union
 * member here, and its validate/encode/decode cases in ev_codec.c; then add an
 * example to tests/data/events/ (the conformance tests check it against flatc).
 *
 * Thread-safety: reentrant; a builder belongs to one thread at a time.
 */
#ifndef EV_CODEC_H
#define EV_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ev_fb.h"

/* ---------------------------------------------------------------- domain limits */
/* "characters" are Unicode code points; everything else counts UTF-8 bytes. */

#define EV_ID_MAX 64          /* aggregate ids, workflow_id: [A-Za-z0-9._-]{1,64} */
#define EV_NAME_MAX_CHARS 255 /* resource and workflow names: 1..255 characters */
#define EV_DESCRIPTION_MAX_CHARS 4096
#define EV_META_MAX                                                                                \
    255                  /* actor, command_id, correlation_id, causation_id,                       \
                            webhook_secret, delivery_id, step name: 1..255 bytes */
#define EV_TEXT_MAX 4096 /* reasons and error messages: 0..4096 bytes */
#define EV_URL_MAX 2048
#define EV_HEADER_NAME_MAX 256
#define EV_HEADER_VALUE_MAX 8192
#define EV_TEMPLATE_MAX 65536 /* body templates */
#define EV_SUBJECT_MAX 998    /* RFC 5322 line length */
#define EV_EMAIL_MAX 320
#define EV_MAX_STEPS 100
#define EV_MAX_HEADERS 50
#define EV_MAX_RECIPIENTS 50
#define EV_PAYLOAD_JSON_MAX (256u * 1024u)
#define EV_HASH_LEN                                                                                \
    32 /* prev_hash: SHA-256, absent on a partition's first event;                                 \
          command_hash: SHA-256 of the command, absent if none */

/* ---------------------------------------------------------------- enums (events.fbs) */

typedef enum ev_event_type {
    EV_EVENT_NONE = 0,
    EV_RESOURCE_CREATED = 1,
    EV_RESOURCE_UPDATED = 2,
    EV_RESOURCE_DELETED = 3,
    EV_WORKFLOW_CREATED = 4,
    EV_WORKFLOW_UPDATED = 5,
    EV_WORKFLOW_ENABLED = 6,
    EV_WORKFLOW_DISABLED = 7,
    EV_WORKFLOW_DELETED = 8,
    EV_RUN_STARTED = 9,
    EV_STEP_ATTEMPTED = 10,
    EV_STEP_SUCCEEDED = 11,
    EV_STEP_FAILED = 12,
    EV_RUN_SUCCEEDED = 13,
    EV_RUN_FAILED = 14,
} ev_event_type;
#define EV_EVENT_TYPE_MAX EV_RUN_FAILED

typedef enum ev_aggregate_type {
    EV_AGG_UNKNOWN = 0,
    EV_AGG_RESOURCE = 1,
    EV_AGG_WORKFLOW = 2,
    EV_AGG_RUN = 3,
} ev_aggregate_type;

typedef enum ev_resource_status {
    EV_STATUS_ACTIVE = 0,
    EV_STATUS_INACTIVE = 1,
    EV_STATUS_ARCHIVED = 2,
} ev_resource_status;

typedef enum ev_http_method {
    EV_HTTP_GET = 0,
    EV_HTTP_POST = 1, /* the schema default */
    EV_HTTP_PUT = 2,
    EV_HTTP_PATCH = 3,
    EV_HTTP_DELETE = 4,
} ev_http_method;

typedef enum ev_trigger_kind {
    EV_TRIGGER_MANUAL = 0,
    EV_TRIGGER_WEBHOOK = 1,
} ev_trigger_kind;

typedef enum ev_action_type {
    EV_ACTION_NONE = 0,
    EV_ACTION_HTTP = 1,
    EV_ACTION_EMAIL = 2,
} ev_action_type;

/* ---------------------------------------------------------------- views */

typedef struct ev_str {
    const char *ptr; /* NULL: absent */
    uint32_t len;
} ev_str;

typedef struct ev_bytes {
    const uint8_t *ptr; /* NULL: absent */
    uint32_t len;
} ev_bytes;

/* Envelope.event_id: on the wire a [ubyte] of exactly 16 bytes (EV_EVENT_ID_LEN
 * in ev_schema.h, enforced by the verifier); here a copy, not a view. */
typedef struct ev_uuid {
    uint8_t bytes[16];
} ev_uuid;

/* A view of a NUL-terminated C string (NULL stays absent). */
static inline ev_str ev_str_c(const char *s)
{
    ev_str r = {s, s ? (uint32_t)strlen(s) : 0};
    return r;
}

struct ev_http_header;
struct ev_step;

typedef struct ev_str_list {
    const ev_str *items; /* encoding: caller's array */
    const uint8_t *buf;  /* decoding: the buffer ... */
    uint32_t pos;        /* ... and the position of the vector's first element */
    uint32_t count;
    bool present;
} ev_str_list;

typedef struct ev_header_list {
    const struct ev_http_header *items;
    const uint8_t *buf;
    uint32_t pos;
    uint32_t count;
    bool present;
} ev_header_list;

typedef struct ev_step_list {
    const struct ev_step *items;
    const uint8_t *buf;
    uint32_t pos;
    uint32_t count;
    bool present;
} ev_step_list;

/* ---------------------------------------------------------------- tables */

typedef struct ev_http_header {
    ev_str name;  /* required */
    ev_str value; /* required */
} ev_http_header;

typedef struct ev_http_action {
    ev_http_method method;
    ev_str url; /* required, http:// or https:// */
    ev_header_list headers;
    ev_str body_template;
} ev_http_action;

typedef struct ev_email_action {
    ev_str_list to; /* required */
    ev_str subject; /* required */
    ev_str body_template;
} ev_email_action;

typedef struct ev_step {
    ev_str name;
    ev_action_type action_type; /* required: HTTP or EMAIL */
    union {
        ev_http_action http;
        ev_email_action email;
    } action;
} ev_step;

typedef struct ev_resource_created {
    ev_str name; /* required; "[sealed]" when name_sealed is present */
    ev_str description;
    ev_resource_status status;
    ev_bytes name_sealed;        /* optional: the name sealed (ev_pii.h) */
    ev_bytes description_sealed; /* optional: the description sealed (then description is absent) */
} ev_resource_created;

typedef struct ev_resource_updated { /* only changed fields; at least one */
    ev_str name;
    ev_str description;
    bool has_status;
    ev_resource_status status;
    ev_bytes name_sealed;        /* optional: the new name sealed (then name is absent) */
    ev_bytes description_sealed; /* optional: the new description sealed */
} ev_resource_updated;

typedef struct ev_resource_deleted {
    ev_str reason;
} ev_resource_deleted;

typedef struct ev_workflow_created {
    ev_str name; /* required */
    bool enabled;
    ev_str webhook_secret;          /* required; "[sealed]" when webhook_secret_sealed is present */
    ev_step_list steps;             /* required (may be empty) */
    ev_bytes webhook_secret_sealed; /* optional: the secret sealed (ev_secret.h) */
} ev_workflow_created;

typedef struct ev_workflow_updated { /* only changed fields; at least one */
    ev_str name;
    ev_str webhook_secret;
    ev_step_list steps;             /* replaces the whole list when present */
    ev_bytes webhook_secret_sealed; /* optional: the new secret sealed (ev_secret.h) */
} ev_workflow_updated;

typedef struct ev_workflow_deleted {
    ev_str reason;
} ev_workflow_deleted;

typedef struct ev_run_started {
    ev_str workflow_id; /* required */
    int64_t workflow_version;
    ev_trigger_kind trigger;
    ev_str payload_json;
    uint32_t step_count;
    ev_step_list steps;             /* optional (events before schema v2 lack it); when present,
                                       step_count == steps.count */
    ev_str signing_secret;          /* optional: the workflow's webhook secret at trigger time */
    ev_bytes signing_secret_sealed; /* optional: the same sealed (ev_secret.h) */
} ev_run_started;

typedef struct ev_step_attempted {
    uint32_t step;
    uint32_t attempt;
    bool has_status_code;
    int32_t status_code;
    ev_str error;
    int64_t duration_ms;
    bool has_next_delay_ms;
    int64_t next_delay_ms;
    ev_str delivery_id;
} ev_step_attempted;

typedef struct ev_step_succeeded {
    uint32_t step;
    uint32_t attempt;
    bool has_status_code;
    int32_t status_code;
} ev_step_succeeded;

typedef struct ev_step_failed {
    uint32_t step;
    uint32_t attempt;
    ev_str error;
} ev_step_failed;

typedef struct ev_run_failed {
    uint32_t step;
    ev_str error;
} ev_run_failed;

typedef struct ev_envelope {
    ev_uuid event_id;
    ev_aggregate_type aggregate_type;
    ev_str aggregate_id; /* required */
    int64_t version;
    int64_t occurred_at_us;
    ev_str actor;
    ev_str command_id;
    ev_str correlation_id;
    ev_str causation_id;
    uint16_t schema_version;
    ev_bytes prev_hash;
    ev_event_type payload_type;
    union {
        ev_resource_created resource_created;
        ev_resource_updated resource_updated;
        ev_resource_deleted resource_deleted;
        ev_workflow_created workflow_created;
        ev_workflow_updated workflow_updated;
        ev_workflow_deleted workflow_deleted;
        ev_run_started run_started;
        ev_step_attempted step_attempted;
        ev_step_succeeded step_succeeded;
        ev_step_failed step_failed;
        ev_run_failed run_failed;
        /* WorkflowEnabled, WorkflowDisabled, RunSucceeded have no fields */
    } payload;
    ev_bytes command_hash; /* SHA-256 of (method, path, body) of the command; absent or 32 bytes */
} ev_envelope;

/* ---------------------------------------------------------------- lists */

static inline ev_str_list ev_str_list_of(const ev_str *items, uint32_t count)
{
    ev_str_list l = {items, NULL, 0, count, true};
    return l;
}
static inline ev_header_list ev_header_list_of(const ev_http_header *items, uint32_t count)
{
    ev_header_list l = {items, NULL, 0, count, true};
    return l;
}
static inline ev_step_list ev_step_list_of(const ev_step *items, uint32_t count)
{
    ev_step_list l = {items, NULL, 0, count, true};
    return l;
}

/* Element i (< count) into *out; returns 0 or KQ_ERANGE. Views into the
 * list's source, which must outlive them. */
int ev_str_list_get(const ev_str_list *l, uint32_t i, ev_str *out);
int ev_header_list_get(const ev_header_list *l, uint32_t i, ev_http_header *out);
int ev_step_list_get(const ev_step_list *l, uint32_t i, ev_step *out);

/* ---------------------------------------------------------------- envelope */

/*
 * Zero `e` and set the schema defaults for an event of `type`: schema_version
 * 1, aggregate_type of the event, WorkflowCreated.enabled = true.
 */
void ev_envelope_init(ev_envelope *e, ev_event_type type);

/*
 * Check the domain rules without building anything. Returns 0 or KQ_EINVAL
 * with errstr naming the field, e.g. "payload.name: must be 1..255 characters".
 */
int ev_envelope_validate(const ev_envelope *e, char *errstr, size_t errlen);

/*
 * Validate, reset `b` and build the envelope in it (file identifier "KQEV").
 * Defaults are omitted as flatc does. The buffer is read with
 * ev_fb_builder_data(b, ...) and owned by `b`. Returns 0, KQ_EINVAL (domain
 * rule, errstr says which) or the builder's KQ_ENOMEM / KQ_ERANGE.
 * No allocation beyond the builder's buffer, which a reused builder keeps.
 */
int ev_envelope_encode(ev_fb_builder *b, const ev_envelope *e, char *errstr, size_t errlen);

/*
 * Verify `len` bytes at `buf` as an Envelope, then fill `out` with views into
 * `buf` (which must outlive `out`). Returns 0 or KQ_ECORRUPT with the
 * verifier's message. Domain rules are NOT re-checked (the log may hold events
 * written under older limits); call ev_envelope_validate() for that.
 */
int ev_envelope_decode(const uint8_t *buf, size_t len, ev_envelope *out, char *errstr,
                       size_t errlen);

/* ---------------------------------------------------------------- names */

/* "ResourceCreated", ... (the union member name; the Kafka header value), or
 * NULL for NONE/out of range. Static strings. */
const char *ev_event_type_name(ev_event_type type);
/* Inverse of ev_event_type_name over `len` bytes; EV_EVENT_NONE if unknown. */
ev_event_type ev_event_type_from_name(const char *name, size_t len);
/* The aggregate an event type belongs to (EV_AGG_UNKNOWN for NONE). */
ev_aggregate_type ev_event_aggregate_type(ev_event_type type);
/* "resource", "workflow", "run" ("unknown"); NULL if out of range. */
const char *ev_aggregate_type_name(ev_aggregate_type type);

#endif
