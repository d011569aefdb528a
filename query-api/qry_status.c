/*
 * qry_status.c — Kafka metadata and watermarks refresher; see qry_status.h.
 */
#include "qry_status.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_time.h"

#define REFRESH_MS 1000
#define BUDGET_MS 2000

struct qry_status {
    const kq_config *cfg;
    rd_kafka_t *rk;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stopping;
    json_t *kafka; /* guarded by lock */
    json_t *ends;
    int64_t good_ms; /* when the last successful refresh finished, 0 = never */
    char topics[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX];
};

/* One refresh; returns 0 when Kafka answered. */
static int refresh(qry_status *st, json_t **kafka, json_t **ends)
{
    const struct rd_kafka_metadata *md = NULL;
    int64_t deadline =
        kq_time_mono_ms() +
        (st->cfg->kafka_timeout_ms < BUDGET_MS ? st->cfg->kafka_timeout_ms : BUDGET_MS);
    json_t *brokers = json_array(), *topics = json_object();
    rd_kafka_topic_partition_list_t *lows, *highs;
    rd_kafka_resp_err_t err;
    int ok = 1;

    *kafka = json_object();
    *ends = json_object();
    err = rd_kafka_metadata(st->rk, 1, NULL, &md, (int)(deadline - kq_time_mono_ms()));
    if (err) {
        json_object_set_new(*kafka, "connected", json_false());
        json_object_set_new(*kafka, "error", json_string(rd_kafka_err2str(err)));
        json_decref(brokers);
        json_decref(topics);
        return KQ_EKAFKA;
    }
    for (int i = 0; i < md->broker_cnt; i++)
        json_array_append_new(brokers, json_pack("{s:i, s:s, s:i}", "id", md->brokers[i].id, "host",
                                                 md->brokers[i].host, "port", md->brokers[i].port));
    /* Every partition's low and high watermark in two ListOffsets requests
     * (one per end) rather than two per partition every second: the broker
     * answers each request on its network and handler threads. */
    lows = rd_kafka_topic_partition_list_new(KQ_KAFKA_NTOPICS * 8);
    highs = rd_kafka_topic_partition_list_new(KQ_KAFKA_NTOPICS * 8);
    for (int t = 0; t < KQ_KAFKA_NTOPICS; t++)
        for (int i = 0; i < md->topic_cnt; i++)
            if (strcmp(md->topics[i].topic, st->topics[t]) == 0 && !md->topics[i].err)
                for (int p = 0; p < md->topics[i].partition_cnt; p++) {
                    int32_t id = md->topics[i].partitions[p].id;
                    rd_kafka_topic_partition_list_add(lows, st->topics[t], id)->offset =
                        RD_KAFKA_OFFSET_BEGINNING;
                    rd_kafka_topic_partition_list_add(highs, st->topics[t], id)->offset =
                        RD_KAFKA_OFFSET_END;
                }
    for (int k = 0; k < 2; k++) {
        rd_kafka_topic_partition_list_t *l = k == 0 ? lows : highs;
        int left = (int)(deadline - kq_time_mono_ms());
        rd_kafka_resp_err_t e = l->cnt == 0 ? RD_KAFKA_RESP_ERR_NO_ERROR
                                : left > 0  ? rd_kafka_offsets_for_times(st->rk, l, left)
                                            : RD_KAFKA_RESP_ERR__TIMED_OUT;
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            for (int i = 0; i < l->cnt; i++)
                if (l->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
                    l->elems[i].err = e;
    }
    for (int t = 0; t < KQ_KAFKA_NTOPICS; t++) {
        const struct rd_kafka_metadata_topic *mt = NULL;
        json_t *parts = json_array();

        for (int i = 0; i < md->topic_cnt; i++)
            if (strcmp(md->topics[i].topic, st->topics[t]) == 0)
                mt = &md->topics[i];
        if (mt == NULL || mt->err) {
            json_object_set_new(topics, st->topics[t],
                                json_pack("{s:o, s:s}", "partitions", parts, "error",
                                          mt ? rd_kafka_err2str(mt->err) : "no such topic"));
            continue;
        }
        for (int p = 0; p < mt->partition_cnt; p++) {
            int32_t id = mt->partitions[p].id;
            const rd_kafka_topic_partition_t *lo =
                rd_kafka_topic_partition_list_find(lows, st->topics[t], id);
            const rd_kafka_topic_partition_t *hi =
                rd_kafka_topic_partition_list_find(highs, st->topics[t], id);
            char key[KQ_KAFKA_TOPIC_MAX + 16];

            err = lo == NULL || hi == NULL ? RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION
                  : lo->err                ? lo->err
                                           : hi->err;
            if (err == RD_KAFKA_RESP_ERR_NO_ERROR && (lo->offset < 0 || hi->offset < 0))
                err = RD_KAFKA_RESP_ERR__BAD_MSG; /* no offset in the answer */
            if (err) {
                ok = 0;
                json_array_append_new(parts, json_pack("{s:i, s:s}", "partition", id, "error",
                                                       rd_kafka_err2str(err)));
                continue;
            }
            json_array_append_new(parts, json_pack("{s:i, s:I, s:I}", "partition", id, "low",
                                                   (json_int_t)lo->offset, "high",
                                                   (json_int_t)hi->offset));
            snprintf(key, sizeof key, "%s/%" PRId32, st->topics[t], id);
            json_object_set_new(*ends, key,
                                json_pack("[I,I]", (json_int_t)lo->offset, (json_int_t)hi->offset));
        }
        json_object_set_new(topics, st->topics[t], json_pack("{s:o}", "partitions", parts));
    }
    rd_kafka_topic_partition_list_destroy(lows);
    rd_kafka_topic_partition_list_destroy(highs);
    json_object_set_new(*kafka, "connected", json_true());
    json_object_set_new(*kafka, "brokers", brokers);
    json_object_set_new(*kafka, "topics", topics);
    if (!ok)
        json_object_set_new(*kafka, "error", json_string("some watermarks are missing"));
    rd_kafka_metadata_destroy(md);
    return 0;
}

static void *run(void *arg)
{
    qry_status *st = arg;

    pthread_mutex_lock(&st->lock);
    while (!st->stopping) {
        json_t *kafka, *ends;
        int rc;
        struct timespec ts;

        pthread_mutex_unlock(&st->lock);
        rc = refresh(st, &kafka, &ends);
        pthread_mutex_lock(&st->lock);
        if (rc == 0) {
            json_decref(st->kafka);
            json_decref(st->ends);
            st->kafka = kafka;
            st->ends = ends;
            st->good_ms = kq_time_mono_ms();
        } else {
            /* keep the last good watermarks; report the failure */
            json_object_set_new(
                kafka, "last_good_brokers",
                json_deep_copy(st->kafka ? json_object_get(st->kafka, "brokers") : NULL));
            json_decref(st->kafka);
            st->kafka = kafka;
            json_decref(ends);
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += REFRESH_MS / 1000;
        if (!st->stopping)
            pthread_cond_timedwait(&st->cond, &st->lock, &ts);
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

int qry_status_start(const kq_config *cfg, qry_status **out, char *errstr, size_t errlen)
{
    qry_status *st = calloc(1, sizeof *st);
    rd_kafka_conf_t *conf;
    char kerr[512];

    *out = NULL;
    if (st == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    st->cfg = cfg;
    if (kq_kafka_topic_names(cfg, st->topics) < 0) {
        free(st);
        return kq_seterr(errstr, errlen, KQ_ERANGE, "topic prefix too long");
    }
    if ((conf = kq_kafka_conf_new(cfg, "kcqrs-query", errstr, errlen)) == NULL) {
        free(st);
        return KQ_EKAFKA;
    }
    if ((st->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof kerr)) == NULL) {
        rd_kafka_conf_destroy(conf);
        free(st);
        return kq_seterr(errstr, errlen, KQ_EKAFKA, "librdkafka: %s", kerr);
    }
    st->ends = json_object();
    st->kafka = json_pack("{s:b, s:s}", "connected", 0, "error", "not checked yet");
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->cond, NULL);
    if (pthread_create(&st->thread, NULL, run, st) != 0) {
        rd_kafka_destroy(st->rk);
        json_decref(st->ends);
        json_decref(st->kafka);
        free(st);
        return kq_seterr(errstr, errlen, KQ_EIO, "status thread: cannot start");
    }
    *out = st;
    return 0;
}

void qry_status_stop(qry_status *st)
{
    if (st == NULL)
        return;
    pthread_mutex_lock(&st->lock);
    st->stopping = 1;
    pthread_cond_signal(&st->cond);
    pthread_mutex_unlock(&st->lock);
    pthread_join(st->thread, NULL);
    rd_kafka_destroy(st->rk);
    json_decref(st->kafka);
    json_decref(st->ends);
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->cond);
    free(st);
}

void qry_status_snapshot(qry_status *st, json_t **kafka, json_t **ends)
{
    pthread_mutex_lock(&st->lock);
    *kafka = json_deep_copy(st->kafka);
    *ends = json_deep_copy(st->ends);
    if (*kafka)
        json_object_set_new(*kafka, "age_ms",
                            st->good_ms ? json_integer(kq_time_mono_ms() - st->good_ms)
                                        : json_null());
    pthread_mutex_unlock(&st->lock);
}
