/*
 * proj_dlq.h — the projector's dead-letter producer.
 *
 * A record the projector refuses (undecodable, inconsistent with its key or
 * topic, or an event whose version is not the aggregate's last + 1) is written
 * to <prefix>.dlq with its origin, so a human can look at it, and the
 * projector moves on. proj_dlq_send() returns only once the record is durable
 * in Kafka (acks=all, idempotent producer, flushed, bounded by
 * cfg->kafka_timeout_ms): a target may commit the batch that skips the event
 * right after.
 *
 * Record: key "<topic>/<partition>/<offset>" (the same from every target, so
 * compaction keeps one per origin), header "reason", value
 *   {"topic","partition","offset","key","target","reason","value_base64","at"}
 * where "key" is the original record key (null when absent or not UTF-8-safe
 * it is base64 in "key_base64" instead), "at" the time of dead-lettering
 * (RFC 3339, UTC, milliseconds).
 *
 * Ownership and threads: a proj_dlq owns one librdkafka producer. Each
 * projector runner has its own; a proj_dlq is used by one thread at a time.
 * Failpoint: dlq_after_produce (after the record is durable).
 */
#ifndef PROJ_DLQ_H
#define PROJ_DLQ_H

#include <stddef.h>

#include "kq_config.h"
#include "proj_batch.h"

typedef struct proj_dlq proj_dlq;

/* New producer to <cfg->topic_prefix>.dlq; *out owned by the caller (proj_dlq_free). */
int proj_dlq_new(const kq_config *cfg, proj_dlq **out, char *errstr, size_t errlen);

/*
 * Write one dead-letter record for `ev` refused by `target` for `reason`, and
 * wait until it is acknowledged by every in-sync replica. 0, or KQ_EKAFKA /
 * KQ_ETIMEDOUT (then the caller must not skip the event: retry later).
 */
int proj_dlq_send(proj_dlq *d, const proj_event *ev, const char *target, const char *reason,
                  char *errstr, size_t errlen);

/* The JSON value proj_dlq_send() writes, malloc'd (caller frees); NULL on ENOMEM. */
char *proj_dlq_value_json(const proj_event *ev, const char *target, const char *reason,
                          long long at_ms);

/* Flush and destroy; NULL is a no-op. */
void proj_dlq_free(proj_dlq *d);

#endif
