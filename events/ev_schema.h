/*
 * ev_schema.h — events.fbs as data: descriptor tables and the one verifier.
 *
 * The codec has three layers, all driven by or checked against this file:
 *
 *   ev_schema (this)  descriptors of every table/field of events.fbs, written by
 *                     hand, and ev_schema_verify(): the generic verifier that
 *                     walks a buffer with the ev_fb_verify_* primitives;
 *   ev_json           JSON <-> buffer, generic over the descriptors (flatc's JSON);
 *   ev_codec          typed C structs <-> buffer for the services, hand-written
 *                     against the EV_SLOT_* numbers below; decoding verifies first.
 *
 * Descriptors: one ev_schema_table per FlatBuffers table, its fields in schema
 * order. A field's slot is its index in the table as flatc counts it: a union
 * field takes two slots, `X_type` (kind EV_K_UTYPE) at n and `X` (EV_K_UNION)
 * at n + 1, and both appear here as separate fields, in that order, as flatc
 * prints them. A deprecated field keeps its entry (its slot stays taken); flatc
 * still prints and parses it in JSON, and so do we.
 *
 * To add a field: append it at the end of its table in events.fbs, add an
 * EV_SLOT_* constant and a row at the end of the table's field array in
 * ev_schema.c. To add an event: append it to `union Event`, add its table
 * and its member in ev_schema_event_members[] (same order), then the typed
 * struct in ev_codec.h (see there).
 *
 * Verification policy (ev_schema_verify), stricter than flatc's verifier
 * because a reader must never act on a value it does not understand:
 *   - every object in bounds and aligned (the ev_fb primitives), required
 *     fields present, every string valid UTF-8;
 *   - enum values must be named in our schema: a value added by a newer
 *     schema is REJECTED (the projector dead-letters such an event); the same
 *     for union types; bools must be 0 or 1;
 *   - a union value is present iff its type is not NONE;
 *   - a [ubyte] field with an exact length (ev_schema_field.len, e.g.
 *     event_id: EV_EVENT_ID_LEN bytes) has exactly that many elements when
 *     present; the schema language cannot say so, so every reader relies on
 *     this check rather than on the writer;
 *   - fields with slots beyond the ones we know (added by a newer schema) are
 *     ignored, as FlatBuffers intends;
 *   - work is bounded: at most EV_FB_DEFAULT_MAX_TABLES tables, nesting at
 *     most EV_SCHEMA_MAX_DEPTH, and at most 8 * len + 1 MiB string bytes
 *     (strings shared by many offsets would otherwise make a small buffer
 *     expensive to verify and huge to print).
 *
 * Everything here is immutable data or a pure function: any thread.
 */
#ifndef EV_SCHEMA_H
#define EV_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "ev_fb.h"

#define EV_FILE_IDENT "KQEV"
#define EV_SCHEMA_MAX_DEPTH 16 /* tables nested in one another; ours reach 5 */
#define EV_EVENT_ID_LEN 16     /* Envelope.event_id: [ubyte], a UUID v4 */

/* ---------------------------------------------------------------- slots */

enum {
    EV_SLOT_ENVELOPE_EVENT_ID = 0,
    EV_SLOT_ENVELOPE_AGGREGATE_TYPE = 1,
    EV_SLOT_ENVELOPE_AGGREGATE_ID = 2,
    EV_SLOT_ENVELOPE_VERSION = 3,
    EV_SLOT_ENVELOPE_OCCURRED_AT_US = 4,
    EV_SLOT_ENVELOPE_ACTOR = 5,
    EV_SLOT_ENVELOPE_COMMAND_ID = 6,
    EV_SLOT_ENVELOPE_CORRELATION_ID = 7,
    EV_SLOT_ENVELOPE_CAUSATION_ID = 8,
    EV_SLOT_ENVELOPE_SCHEMA_VERSION = 9,
    EV_SLOT_ENVELOPE_PREV_HASH = 10,
    EV_SLOT_ENVELOPE_PAYLOAD_TYPE = 11,
    EV_SLOT_ENVELOPE_PAYLOAD = 12,
    EV_SLOT_ENVELOPE_COMMAND_HASH = 13,

    EV_SLOT_RESOURCE_CREATED_NAME = 0,
    EV_SLOT_RESOURCE_CREATED_DESCRIPTION = 1,
    EV_SLOT_RESOURCE_CREATED_STATUS = 2,
    EV_SLOT_RESOURCE_CREATED_NAME_SEALED = 3,
    EV_SLOT_RESOURCE_CREATED_DESCRIPTION_SEALED = 4,

    EV_SLOT_RESOURCE_UPDATED_NAME = 0,
    EV_SLOT_RESOURCE_UPDATED_DESCRIPTION = 1,
    EV_SLOT_RESOURCE_UPDATED_STATUS = 2,
    EV_SLOT_RESOURCE_UPDATED_NAME_SEALED = 3,
    EV_SLOT_RESOURCE_UPDATED_DESCRIPTION_SEALED = 4,

    EV_SLOT_RESOURCE_DELETED_REASON = 0,

    EV_SLOT_HTTP_HEADER_NAME = 0,
    EV_SLOT_HTTP_HEADER_VALUE = 1,

    EV_SLOT_HTTP_ACTION_METHOD = 0,
    EV_SLOT_HTTP_ACTION_URL = 1,
    EV_SLOT_HTTP_ACTION_HEADERS = 2,
    EV_SLOT_HTTP_ACTION_BODY_TEMPLATE = 3,

    EV_SLOT_EMAIL_ACTION_TO = 0,
    EV_SLOT_EMAIL_ACTION_SUBJECT = 1,
    EV_SLOT_EMAIL_ACTION_BODY_TEMPLATE = 2,

    EV_SLOT_STEP_NAME = 0,
    EV_SLOT_STEP_ACTION_TYPE = 1,
    EV_SLOT_STEP_ACTION = 2,

    EV_SLOT_WORKFLOW_CREATED_NAME = 0,
    EV_SLOT_WORKFLOW_CREATED_ENABLED = 1,
    EV_SLOT_WORKFLOW_CREATED_WEBHOOK_SECRET = 2,
    EV_SLOT_WORKFLOW_CREATED_STEPS = 3,
    EV_SLOT_WORKFLOW_CREATED_WEBHOOK_SECRET_SEALED = 4,

    EV_SLOT_WORKFLOW_UPDATED_NAME = 0,
    EV_SLOT_WORKFLOW_UPDATED_WEBHOOK_SECRET = 1,
    EV_SLOT_WORKFLOW_UPDATED_STEPS = 2,
    EV_SLOT_WORKFLOW_UPDATED_WEBHOOK_SECRET_SEALED = 3,

    EV_SLOT_WORKFLOW_DELETED_REASON = 0,

    EV_SLOT_RUN_STARTED_WORKFLOW_ID = 0,
    EV_SLOT_RUN_STARTED_WORKFLOW_VERSION = 1,
    EV_SLOT_RUN_STARTED_TRIGGER = 2,
    EV_SLOT_RUN_STARTED_PAYLOAD_JSON = 3,
    EV_SLOT_RUN_STARTED_STEP_COUNT = 4,
    EV_SLOT_RUN_STARTED_STEPS = 5,
    EV_SLOT_RUN_STARTED_SIGNING_SECRET = 6,
    EV_SLOT_RUN_STARTED_SIGNING_SECRET_SEALED = 7,

    EV_SLOT_STEP_ATTEMPTED_STEP = 0,
    EV_SLOT_STEP_ATTEMPTED_ATTEMPT = 1,
    EV_SLOT_STEP_ATTEMPTED_STATUS_CODE = 2,
    EV_SLOT_STEP_ATTEMPTED_ERROR = 3,
    EV_SLOT_STEP_ATTEMPTED_DURATION_MS = 4,
    EV_SLOT_STEP_ATTEMPTED_NEXT_DELAY_MS = 5,
    EV_SLOT_STEP_ATTEMPTED_DELIVERY_ID = 6,

    EV_SLOT_STEP_SUCCEEDED_STEP = 0,
    EV_SLOT_STEP_SUCCEEDED_ATTEMPT = 1,
    EV_SLOT_STEP_SUCCEEDED_STATUS_CODE = 2,

    EV_SLOT_STEP_FAILED_STEP = 0,
    EV_SLOT_STEP_FAILED_ATTEMPT = 1,
    EV_SLOT_STEP_FAILED_ERROR = 2,

    EV_SLOT_RUN_FAILED_STEP = 0,
    EV_SLOT_RUN_FAILED_ERROR = 1,
};

/* Schema defaults the typed codec needs (the descriptors hold them all). */
#define EV_DEFAULT_SCHEMA_VERSION 1
#define EV_DEFAULT_HTTP_METHOD 1 /* POST */
#define EV_DEFAULT_ENABLED 1

/* ---------------------------------------------------------------- descriptors */

typedef enum ev_schema_kind {
    EV_K_BOOL = 1,
    EV_K_UBYTE,
    EV_K_USHORT,
    EV_K_INT,
    EV_K_UINT,
    EV_K_LONG,
    EV_K_ENUM, /* ubyte-based enum, values 0..count-1 (ours are dense) */
    EV_K_STRING,
    EV_K_VEC_UBYTE, /* [ubyte]; `len` != 0 demands exactly that many bytes */
    EV_K_VEC_STRING,
    EV_K_VEC_TABLE,
    EV_K_TABLE,
    EV_K_UTYPE, /* union type (ubyte): 0 = NONE, i = members[i - 1] */
    EV_K_UNION, /* union value: offset to a table of the type in slot - 1 */
} ev_schema_kind;

#define EV_F_REQUIRED 0x1u /* (required): string/vector/table/union value */
#define EV_F_OPTIONAL 0x2u /* scalar `= null`: absent means "no value" */

typedef struct ev_schema_enum {
    const char *name;
    const char *const *values; /* values[i] names value i */
    uint32_t count;
} ev_schema_enum;

struct ev_schema_table;

typedef struct ev_schema_union {
    const char *name;
    const struct ev_schema_table *const *members; /* members[i - 1] is type i */
    uint32_t count;                               /* number of members (NONE excluded) */
} ev_schema_union;

typedef struct ev_schema_field {
    const char *name; /* as in events.fbs (union type: "<field>_type") */
    uint16_t slot;
    uint8_t kind;                        /* ev_schema_kind */
    uint8_t flags;                       /* EV_F_* */
    int64_t def;                         /* default of a non-optional scalar, bool or enum */
    const ev_schema_enum *enm;           /* EV_K_ENUM */
    const struct ev_schema_table *table; /* EV_K_TABLE, EV_K_VEC_TABLE */
    const ev_schema_union *uni;          /* EV_K_UTYPE, EV_K_UNION */
    uint32_t len;                        /* EV_K_VEC_UBYTE: exact element count, 0 = any */
} ev_schema_field;

typedef struct ev_schema_table {
    const char *name;
    const ev_schema_field *fields; /* in schema order */
    uint32_t nfields;
} ev_schema_table;

/* The root table and the two unions. */
extern const ev_schema_table ev_schema_envelope;
extern const ev_schema_union ev_schema_event;  /* union Event */
extern const ev_schema_union ev_schema_action; /* union Action */
extern const ev_schema_enum ev_schema_aggregate_type;
extern const ev_schema_enum ev_schema_resource_status;
extern const ev_schema_enum ev_schema_http_method;
extern const ev_schema_enum ev_schema_trigger_kind;

/* Field of `t` by name (len bytes, need not be NUL-terminated), or NULL. */
const ev_schema_field *ev_schema_field_by_name(const ev_schema_table *t, const char *name,
                                               size_t len);
/* Index of `name` in the enum, or -1. */
int ev_schema_enum_value(const ev_schema_enum *e, const char *name, size_t len);
/* Union member type (1..count) named `name`, 0 for "NONE", -1 if unknown. */
int ev_schema_union_type(const ev_schema_union *u, const char *name, size_t len);
/* Name of union type `type`: "NONE" for 0, NULL if out of range. Static string. */
const char *ev_schema_union_type_name(const ev_schema_union *u, unsigned type);

/* ---------------------------------------------------------------- verifier */

/*
 * Verify `len` bytes at `buf` as a KQEV Envelope under the policy above.
 * Returns 0 when every read the JSON printer or the typed decoder does is safe
 * and meaningful, else KQ_ECORRUPT with one line in errstr naming the field
 * path and byte offset, e.g. "payload.steps[1].action.url: invalid UTF-8 at
 * offset 212". `buf` is only borrowed.
 */
int ev_schema_verify(const uint8_t *buf, size_t len, char *errstr, size_t errlen);

/* The same for any root table and identifier (NULL: not checked); for tests. */
int ev_schema_verify_root(const uint8_t *buf, size_t len, const char *file_ident,
                          const ev_schema_table *root, char *errstr, size_t errlen);

#endif
