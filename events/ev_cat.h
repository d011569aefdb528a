/*
 * ev_cat.h — `kcqrs-events cat`: records straight from a Kafka topic.
 *
 * Reads TOPIC[:PARTITION[:OFFSET]] (TOPIC: a full topic name, or one of the
 * aliases resource, workflow, run, dlq for <KCQRS_TOPIC_PREFIX>.…) with a
 * read_committed consumer that assigns partitions itself (no group, commits
 * nothing), from OFFSET (default: the beginning) up to the end each partition
 * had when the command started, or for ever with `follow`. Each record is
 * written as one JSON line:
 *   {"topic":…,"partition":…,"offset":…,"timestamp":"<RFC 3339>",
 *    "key":"…" (or "key_base64":"…" when not UTF-8, or null),
 *    "event":{…the envelope as ev_json_decode prints it, on one line…}}
 * A value that is not a valid Envelope gets "error":"<why>" and, instead of
 * "event", "value":{…} when it is JSON (dead letters) or "value_base64".
 * With `framed` only the values are written, as ev_frame.h frames, which
 * `kcqrs-events decode` reads back.
 *
 * Threads: the caller's; one consumer per call, destroyed before returning.
 */
#ifndef EV_CAT_H
#define EV_CAT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kq_config.h"

typedef struct ev_cat_opts {
    const char *spec; /* TOPIC[:PARTITION[:OFFSET]] */
    int framed;       /* values as frames, not JSON lines */
    int follow;       /* keep reading after the end (until killed) */
    long long max;    /* stop after this many records in all; 0 = no limit */
} ev_cat_opts;

/*
 * Split `spec`: topic (an alias resolved with cfg) into topic[tlen],
 * *partition (-1: every partition), *offset (-1: the beginning). KQ_EINVAL
 * with a message for anything else (empty topic, non-numeric or negative
 * partition or offset, more than two ':').
 */
int ev_cat_parse_spec(const kq_config *cfg, const char *spec, char *topic, size_t tlen,
                      int32_t *partition, int64_t *offset, char *errstr, size_t errlen);

/*
 * Called for each record read (librdkafka's message, valid during the call):
 * returns 1 when it counts towards o->max, 0 when not, or a KQ_E* (< 0,
 * errstr set) to stop.
 */
struct rd_kafka_message_s;
typedef int (*ev_cat_fn)(void *arg, const char *topic, const struct rd_kafka_message_s *m,
                         char *errstr, size_t errlen);

/* Read o->spec as ev_cat_run does (o->framed is not looked at), calling fn per record. */
int ev_cat_each(const kq_config *cfg, const ev_cat_opts *o, ev_cat_fn fn, void *arg, char *errstr,
                size_t errlen);

/* Run it, writing to `out`. 0, or KQ_EINVAL (bad spec), KQ_ENOTFOUND (no such topic or
 * partition), KQ_EKAFKA, KQ_ETIMEDOUT, KQ_EIO, KQ_ENOMEM. */
int ev_cat_run(const kq_config *cfg, const ev_cat_opts *o, FILE *out, char *errstr, size_t errlen);

#endif
