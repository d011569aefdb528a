/*
 * qry_text.h — the wire forms of the query API: times, cursors, limits, ETags.
 *
 * What it is for
 *   Everything a query handler parses from or prints into a URL or a header,
 *   in one place so every endpoint agrees on it (times are lib/kq_time.h's,
 *   UUIDs lib/kq_rand.h's, base64url lib/kq_b64.h's, the consistency token
 *   lib/kq_token.h's: shared with the command side and the tools):
 *     - cursors: opaque to clients, base64url (no padding) of a versioned
 *       binary encoding of the last item of a page. Byte 0 is the format
 *       version (QRY_CURSOR_V1), byte 1 the kind (which listing it belongs
 *       to), then the kind's fields. A cursor of another kind, another status
 *       filter, another version or with trailing bytes does not decode;
 *     - limit: 1..1000, default 100;
 *     - If-None-Match against an ETag.
 *
 * Threads: reentrant, no global state. Nothing here allocates except where
 * said.
 */
#ifndef QRY_TEXT_H
#define QRY_TEXT_H

#include <stddef.h>
#include <stdint.h>

#define QRY_CURSOR_MAX 160 /* encoded cursor + NUL */
#define QRY_CURSOR_V1 1
#define QRY_LIMIT_DEFAULT 100
#define QRY_LIMIT_MAX 1000

/* ---- cursors ---- */

typedef enum {
    QRY_CURSOR_RESOURCES = 'r', /* resources by id: last id */
    QRY_CURSOR_BY_STATUS = 's', /* resources of one status: status byte, last id */
    QRY_CURSOR_EVENTS = 'e',    /* one aggregate's events: last version */
    QRY_CURSOR_AUDIT = 'a',     /* audit: last (occurred_at_us, event_id) */
    QRY_CURSOR_WORKFLOWS = 'w', /* workflows: filter byte (0/1 enabled, 2 none), last id */
    QRY_CURSOR_RUNS = 'u',      /* runs: filter byte (status 0..3, 4 none), last id (the
                                   workflow_id filter is not in the cursor) */
} qry_cursor_kind;

typedef struct qry_cursor {
    qry_cursor_kind kind;
    uint8_t status;   /* BY_STATUS, WORKFLOWS, RUNS: the filter byte */
    char id[65];      /* RESOURCES, BY_STATUS, WORKFLOWS, RUNS: [A-Za-z0-9._-]{1,64} */
    int64_t num;      /* EVENTS: version; AUDIT: occurred_at_us */
    uint8_t uuid[16]; /* AUDIT: event_id */
} qry_cursor;

/* Encode `c` into out[QRY_CURSOR_MAX]. Returns 0 or KQ_EINVAL (bad id). */
int qry_cursor_encode(const qry_cursor *c, char *out);

/*
 * Decode `s` and require kind `kind` (and for BY_STATUS, WORKFLOWS, RUNS the
 * filter byte `status`).
 * Returns 0 with *c filled, or KQ_EINVAL with a reason in errstr.
 */
int qry_cursor_decode(const char *s, qry_cursor_kind kind, uint8_t status, qry_cursor *c,
                      char *errstr, size_t errlen);

/* ---- parameters ---- */

/* limit query argument: NULL -> QRY_LIMIT_DEFAULT; else 1..QRY_LIMIT_MAX. 0 or KQ_EINVAL. */
int qry_limit_parse(const char *s, int *limit);

/* "active"/"inactive"/"archived" -> ev_resource_status; KQ_EINVAL otherwise. */
int qry_status_parse(const char *s, uint8_t *status);
/* ev_resource_status -> name ("unknown" if out of range). Static string. */
const char *qry_status_name(uint8_t status);

/*
 * Does an If-None-Match header value match `etag` ("\"7\"")? "*" matches, as
 * does any element of a comma-separated list equal to etag or W/etag.
 */
int qry_etag_match(const char *if_none_match, const char *etag);

/* A snapshot name as kcqrs-replay makes them: [a-z0-9_]{1,32}. 1 when valid. */
int qry_snapshot_name_valid(const char *s);

/*
 * The PostgreSQL schema of snapshot `name`: "<schema>_snap_<name>" into
 * out[outlen]. 0, or KQ_ERANGE when it does not fit or exceeds PostgreSQL's
 * 63-byte identifiers (which it would silently truncate).
 */
int qry_snapshot_schema(const char *schema, const char *name, char *out, size_t outlen);

#endif
