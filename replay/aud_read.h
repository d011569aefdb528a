/*
 * aud_read.h — read chosen topic-partitions of the event log to the end
 * offsets seen at start (kcqrs-audit).
 *
 * What it is for
 *   Both kcqrs-audit commands read the log straight from Kafka, with every
 *   database gone: aud_read_run() takes a list of topic-partitions, notes
 *   each one's end (high watermark) when it starts, optionally seeks each
 *   to the first record at or after a time (rd_kafka_offsets_for_times),
 *   and hands every committed record below that end to a callback, in
 *   offset order per partition (partitions interleave).
 *
 * Reading
 *   One read_committed consumer (kq_kafka_consumer_new; it never commits
 *   offsets) with every partition assigned. A partition is finished at its
 *   end offset, at end-of-partition (read_committed stops at the last stable
 *   offset: a transaction still open at start is not committed and is not
 *   read), or when the callback says so. check.crcs stays false
 *   (librdkafka's default, set explicitly): a record whose bytes were changed
 *   on the broker's disk reaches the hash chain, which names its offset,
 *   instead of failing a whole fetch (see replay/README.md, "Tampering").
 *
 * Seeking by time: the Kafka record timestamp is set when the writer
 *   produces, after it stamped occurred_at, so a record with occurred_at >=
 *   T has a timestamp >= T. The seek goes to T minus AUD_SEEK_MARGIN_MS to
 *   allow for clock steps; callers still filter by occurred_at.
 *
 * Errors: 0, or KQ_EKAFKA / KQ_ETIMEDOUT (no progress for twice
 * KCQRS_KAFKA_TIMEOUT_MS) with a sentence; a callback's negative code is
 * returned as is.
 *
 * Threads: one caller at a time per call; nothing shared.
 */
#ifndef AUD_READ_H
#define AUD_READ_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "ev_codec.h"
#include "kq_config.h"
#include "kq_kafka.h"

#define AUD_SEEK_MARGIN_MS 1000

typedef struct aud_part {
    char topic[KQ_KAFKA_TOPIC_MAX];
    int32_t partition;
    int64_t end;   /* filled by aud_read_run: the end offset when it started */
    uint64_t read; /* records handed to the callback */
    int done;      /* private */
    void *user;    /* the caller's, per partition */
} aud_part;

/*
 * Called for each record (m->err == 0; m->payload NULL for a tombstone).
 * Return 0 to go on, 1 when this partition is finished, or a negative KQ_E*
 * to stop reading (returned by aud_read_run).
 */
typedef int (*aud_record_fn)(void *arg, aud_part *p, const rd_kafka_message_t *m);

/*
 * Read parts[0..n) as described above; since_us >= 0 seeks each partition by
 * time first, -1 reads from the beginning. `group` names the consumer (it
 * never joins or commits).
 */
int aud_read_run(const kq_config *cfg, const char *group, aud_part *parts, size_t n,
                 int64_t since_us, aud_record_fn fn, void *arg, char *errstr, size_t errlen);

/*
 * Partition count of `topic` (metadata through a short-lived client).
 * KQ_ENOTFOUND when it does not exist, KQ_EKAFKA when Kafka does not answer.
 */
int aud_read_partitions(const kq_config *cfg, const char *topic, int *partitions, char *errstr,
                        size_t errlen);

/* The event topics to read: all three, or the one of `only` (!= EV_AGG_UNKNOWN). */
typedef struct aud_topics {
    char name[3][KQ_KAFKA_TOPIC_MAX];
    const char *agg[3]; /* "resource", "workflow", "run" */
    int n;
} aud_topics;
void aud_read_topics(const kq_config *cfg, ev_aggregate_type only, aud_topics *t);

/*
 * The partitions to read: every partition of each topic of t, or (id !=
 * NULL) the one that holds aggregate id. A topic that does not exist is
 * skipped with a warning. *out is malloc'd (the caller frees it). 0, or
 * KQ_EKAFKA / KQ_ENOMEM with errstr.
 */
int aud_read_plan(const kq_config *cfg, const aud_topics *t, const char *id, aud_part **out,
                  size_t *n, char *errstr, size_t errlen);

#endif
