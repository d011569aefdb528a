/*
 * proj_batch.h — what the projector's runner hands to a target (LMDB or
 * PostgreSQL): one batch of consumed records, decoded, with the offsets the
 * target must store in the same transaction as the batch's data.
 *
 * The runner (one thread and one read_committed consumer per target) fills a
 * proj_batch; the target applies it in ONE transaction together with every
 * `next` offset, or applies nothing and returns an error (the runner then
 * re-seeks to the target's stored offsets and tries again later).
 *
 * Records that fail verification/decoding have decoded == 0: the runner has
 * already dead-lettered them; a target skips them (but their offsets are
 * covered by `next`). An event a target refuses while applying (its version
 * is not the aggregate's last version + 1) is handed to `dead_letter` while
 * the transaction is open; `dead_letter` returns only once the DLQ record is
 * durably in Kafka, so committing the batch afterwards can never lose it. A
 * non-zero return from `dead_letter` makes the target roll back and fail.
 */
#ifndef PROJ_BATCH_H
#define PROJ_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "ev_codec.h"
#include "kq_trace.h"

typedef struct proj_event {
    const char *topic; /* topic name (valid while the batch is) */
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /* Kafka record timestamp */
    const uint8_t *value; /* the record value: an Envelope when decoded */
    size_t len;
    const char *key; /* record key "<id>/<version:020>", not NUL-terminated */
    size_t keylen;
    int decoded;     /* 1: env is valid; 0: refused by the runner (already dead-lettered) */
    ev_envelope env; /* views into value */
    int has_trace;   /* 1: the record's traceparent header (read only while tracing) */
    kq_trace_ctx trace;
    /* A record with sealed personal data (ev_pii.h): the record re-encoded with
     * it opened (or "[erased]"), malloc'd by the runner; env views into it, and
     * the targets print this instead of value. NULL otherwise. */
    uint8_t *plain;
    size_t plain_len;
    int missing_key; /* refused: the data key of a subject not erased is missing */
    int pii_failed;  /* refused: sealed personal data that did not open (any reason) */
} proj_event;

/* The bytes a target reads: the opened record, else the record as written. */
static inline const uint8_t *proj_event_bytes(const proj_event *ev)
{
    return ev->plain != NULL ? ev->plain : ev->value;
}

typedef struct proj_offset {
    const char *topic;
    int32_t partition;
    int64_t next_offset; /* offset of the last record of the batch in this partition + 1 */
} proj_offset;

typedef struct proj_batch {
    const proj_event *ev; /* log order within each partition */
    size_t n;
    const proj_offset *next; /* one per partition that the batch touches */
    size_t nnext;
} proj_batch;

/* Dead-letter `ev` refused by `target` ("lmdb" or "pg") for `reason`; 0 when durable. */
typedef int (*proj_dead_letter_fn)(void *arg, const proj_event *ev, const char *target,
                                   const char *reason);

/* Receives each stored offset when a target loads its checkpoint. */
typedef void (*proj_offset_fn)(void *arg, const char *topic, int32_t partition,
                               int64_t next_offset);

#endif
