/*
 * proj_runner_consumer.c — a runner's view of Kafka: partition indexes, the
 * consumer (a fresh read_committed one per target open, assigned at the
 * target's stored offsets), the end offsets of exit_at_end and replays, and
 * the watermarks behind the lag metrics. Part of the runner
 * (proj_runner_int.h); the runner thread.
 */
#include "proj_runner_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "kq_err.h"
#include "kq_log.h"

#define METADATA_WARMUP_MS 1000
#define WATERMARK_EVERY_MS 200
#define WATERMARK_QUERY_MS 500

int proj_runner_part_index(const proj_runner *r, const char *topic, int32_t partition)
{
    if (partition < 0 || partition >= r->np)
        return -1;
    for (int ti = 0; ti < NTOPICS; ti++)
        if (strcmp(topic, r->topics[ti]) == 0)
            return ti * r->np + partition;
    return -1;
}

/* Partition index of a consumed message (topic found by handle, cached), or -1. */
int proj_runner_msg_index(proj_runner *r, const rd_kafka_message_t *m)
{
    int i;

    if (m->rkt == NULL || m->partition < 0 || m->partition >= r->np)
        return -1;
    for (int ti = 0; ti < NTOPICS; ti++)
        if (r->rkt[ti] == m->rkt)
            return ti * r->np + m->partition;
    if ((i = proj_runner_part_index(r, rd_kafka_topic_name(m->rkt), m->partition)) >= 0)
        r->rkt[i / r->np] = m->rkt;
    return i;
}

void proj_runner_consumer_close(proj_runner *r)
{
    if (r->q != NULL) {
        rd_kafka_queue_destroy(r->q); /* before rd_kafka_consumer_close */
        r->q = NULL;
    }
    if (r->c != NULL) {
        rd_kafka_consumer_close(r->c);
        rd_kafka_destroy(r->c);
        r->c = NULL;
    }
}

/* A fresh consumer assigned at the stored offsets (a fresh one, so that no
 * record fetched for an earlier position can come back). */
int proj_runner_consumer_open(proj_runner *r, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *tp;
    rd_kafka_conf_t *conf;
    rd_kafka_resp_err_t e;
    char cid[64];

    snprintf(cid, sizeof cid, "kcqrs-projector-%s", r->ops->name);
    /* The prefetch is bounded by bytes (KCQRS_KAFKA_QUEUE_KB, kq_kafka.h), so
     * a live projector catching up a backlog holds at most that much per
     * target. A replay (kcqrs-replay, its own process) applies in large
     * batches and keeps ~64 MiB queued: with less, the bulk load waits on the
     * fetcher. librdkafka (2.0) pauses every partition for
     * fetch.error.backoff.ms whenever the queue is full; kq_kafka sets it to
     * 10 ms (the default 500 ms let the queue run dry: a 1M-event rebuild
     * varied 3 s .. 8 s with the same CPU time). */
    if ((conf = kq_kafka_consumer_conf_new(r->cfg, cid, err, errlen)) == NULL)
        return KQ_EKAFKA;
    if (kq_kafka_conf_set(conf, "fetch.wait.max.ms", "50", err, errlen) != 0 ||
        (r->replay && kq_kafka_conf_bound_queue(conf, 65536, err, errlen) != 0)) {
        rd_kafka_conf_destroy(conf);
        return KQ_ECONFIG;
    }
    if ((r->c = kq_kafka_consumer_new(r->cfg, r->group, conf, err, errlen)) == NULL)
        return KQ_EKAFKA;
    if ((r->q = rd_kafka_queue_get_consumer(r->c)) == NULL) {
        proj_runner_consumer_close(r);
        return kq_seterr(err, errlen, KQ_EKAFKA, "no consumer queue");
    }
    memset(r->rkt, 0, sizeof r->rkt);
    /* Learn the partition leaders before assigning: a partition assigned
     * without a known leader waits for librdkafka's offset-query retry timer
     * (~500 ms) before its first fetch. Only a warm-up (bounded): on failure
     * assign anyway and let librdkafka retry as before. */
    for (int ti = 0; ti < NTOPICS; ti++) {
        char merr[256];
        int cnt = 0;
        int tmo = r->cfg->kafka_timeout_ms < METADATA_WARMUP_MS ? r->cfg->kafka_timeout_ms
                                                                : METADATA_WARMUP_MS;
        if (kq_kafka_topic_partitions(r->c, r->topics[ti], tmo, &cnt, NULL, merr, sizeof merr) !=
            0) {
            kq_log_warn("%s: %s", r->ops->name, merr);
            break;
        }
    }
    tp = rd_kafka_topic_partition_list_new(r->nparts);
    for (int i = 0; i < r->nparts; i++) {
        int64_t off = atomic_load(&r->next[i]);
        rd_kafka_topic_partition_list_add(tp, r->topics[i / r->np], i % r->np)->offset =
            off > 0 ? off : RD_KAFKA_OFFSET_BEGINNING;
    }
    e = rd_kafka_assign(r->c, tp);
    rd_kafka_topic_partition_list_destroy(tp);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        proj_runner_consumer_close(r);
        return kq_seterr(err, errlen, KQ_EKAFKA, "assign: %s", rd_kafka_err2str(e));
    }
    return 0;
}

/* exit_at_end: the last stable offset of every partition, once. Asked on the
 * watermark handle before the consumer starts: on the consumer's own
 * connection the answers queue behind its fetch responses. */
int proj_runner_query_ends(proj_runner *r, char *err, size_t errlen)
{
    for (int i = 0; i < r->nparts; i++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
            r->wm, r->topics[i / r->np], i % r->np, &lo, &hi, r->cfg->kafka_timeout_ms);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            return kq_seterr(err, errlen, KQ_EKAFKA, "end offset of %s [%d]: %s",
                             r->topics[i / r->np], i % r->np, rd_kafka_err2str(e));
        r->end[i] = hi;
        if (r->until != NULL && r->until[i] >= 0) {
            if (r->until[i] > hi)
                return kq_seterr(err, errlen, KQ_ERANGE,
                                 "end offset %" PRId64
                                 " asked for %s [%d] is past its end (%" PRId64 ")",
                                 r->until[i], r->topics[i / r->np], i % r->np, hi);
            r->end[i] = r->until[i];
        }
    }
    r->have_end = 1;
    return 0;
}

void proj_runner_refresh_watermarks(proj_runner *r)
{
    long long now = kq_time_mono_ms();

    if (now - r->last_wm_ms < WATERMARK_EVERY_MS)
        return;
    r->last_wm_ms = now;
    for (int i = 0; i < r->nparts; i++) {
        int64_t lo = -1, hi = -1;
        if (rd_kafka_get_watermark_offsets(r->c, r->topics[i / r->np], i % r->np, &lo, &hi) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            hi >= 0)
            atomic_store(&r->high[i], hi);
    }
}

/* While the target is down there is no consumer: ask the brokers (bounded). */
void proj_runner_query_watermarks(proj_runner *r)
{
    for (int i = 0; i < r->nparts; i++) {
        int64_t lo = -1, hi = -1;
        if (rd_kafka_query_watermark_offsets(r->wm, r->topics[i / r->np], i % r->np, &lo, &hi,
                                             WATERMARK_QUERY_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        atomic_store(&r->high[i], hi);
    }
}
