/*
 * aud_filter.h — the filters and the output rows of `kcqrs-audit query`.
 *
 * What it is for
 *   Deciding, record by record, whether an event of the log is one the
 *   auditor asked for, as cheaply as possible: first on the record key
 *   (--aggregate-id: "<id>/<version:020>"), then on the event_type header
 *   (--event-type), both without decoding; then on the decoded envelope
 *   (aggregate type, id, actor, event type, occurred_at within
 *   [--since, --until]). And printing a matching event: one JSON object per
 *   line (the envelope exactly as ev_json prints it, made compact, plus
 *   "topic", "partition" and "offset"), or a table row.
 *
 * Pure functions over bytes: no Kafka, no I/O (unit-tested on their own).
 *
 * Ownership: an aud_filter borrows its strings (argv); aud_json_line returns
 * a malloc'd string the caller frees.
 */
#ifndef AUD_FILTER_H
#define AUD_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "ev_codec.h"

typedef struct aud_filter {
    ev_aggregate_type agg;    /* EV_AGG_UNKNOWN: any */
    const char *aggregate_id; /* NULL: any */
    const char *actor;        /* NULL: any */
    ev_event_type event_type; /* EV_EVENT_NONE: any */
    int64_t since_us;         /* INT64_MIN: no lower bound */
    int64_t until_us;         /* INT64_MAX: no upper bound (inclusive) */
} aud_filter;

typedef enum aud_verdict {
    AUD_SKIP = 0,  /* not asked for */
    AUD_MATCH = 1, /* print it */
    AUD_STOP = 2   /* past --until: nothing later in this partition is wanted */
} aud_verdict;

/* A filter that takes everything. */
void aud_filter_init(aud_filter *f);

/* "resource", "workflow", "run" (any case, also "Resource") -> the type;
 * EV_AGG_UNKNOWN if none of them. */
ev_aggregate_type aud_aggregate_type_parse(const char *s);

/* The topic suffix of an aggregate type ("resource"), NULL for UNKNOWN. */
const char *aud_aggregate_type_topic(ev_aggregate_type t);

/* On the record key alone (NULL key: passes, the envelope decides). 1 pass, 0 skip. */
int aud_filter_key(const aud_filter *f, const void *key, size_t keylen);

/* On the event_type header's value alone (NULL: no header, passes). 1 pass, 0 skip. */
int aud_filter_type_header(const aud_filter *f, const void *value, size_t len);

/* On the decoded envelope. */
aud_verdict aud_filter_envelope(const aud_filter *f, const ev_envelope *e);

/*
 * The JSON line of an event: ev_json_decode's object without its
 * whitespace, with "topic", "partition", "offset" appended; no newline.
 * *out is malloc'd (caller frees), *outlen its length. 0, KQ_ECORRUPT (the
 * buffer does not verify; message in errstr) or KQ_ENOMEM.
 */
int aud_json_line(const uint8_t *buf, size_t len, const char *topic, int32_t partition,
                  int64_t offset, char **out, size_t *outlen, char *errstr, size_t errlen);

/* Remove the whitespace outside strings from JSON text in place; returns the new length. */
size_t aud_json_compact(char *s, size_t len);

#endif
