/*
 * bench_consume — the projector benchmark's baseline: a plain librdkafka
 * read_committed consumer (kq_kafka_consumer_new with the same fetch and
 * queue settings as the projector's runners: queued.max.messages.kbytes,
 * queued.min.messages, fetch.wait.max.ms) assigned to every partition of the three event
 * topics from the beginning, reading until every partition reaches the end
 * offset (last stable offset) observed at start. It only counts records: no
 * decoding, no store. Prints
 *   RESULT name=projector.raw_consumer unit=events/s value=<n/s> events=<n> seconds=<s>
 * Environment: the usual KCQRS_* (brokers, topic prefix, partitions).
 * Exit status 0, or 1 on errors / 2 on usage.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kq_config.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"

static double mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    char names[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX], err[512], group[64];
    kq_config cfg;
    rd_kafka_conf_t *conf;
    rd_kafka_t *c;
    rd_kafka_topic_partition_list_t *tp;
    int64_t *end;
    int np, n, remaining = 0;
    long long events = 0;
    double t0, dt;

    if (kq_config_handle_help(argc, argv, "usage: bench_consume"))
        return 0;
    if (argc != 1) {
        fprintf(stderr, "usage: bench_consume\n");
        return 2;
    }
    if (kq_config_load_and_init_log(&cfg, "bench_consume", err, sizeof err) != 0) {
        fprintf(stderr, "bench_consume: %s\n", err);
        return 2;
    }
    np = cfg.partitions;
    n = 3 * np;
    kq_kafka_topic_names(&cfg, names);
    snprintf(group, sizeof group, "bench_consume-%ld", (long)getpid());
    if ((conf = kq_kafka_conf_new(&cfg, "bench_consume", err, sizeof err)) == NULL ||
        kq_kafka_conf_set(conf, "queued.max.messages.kbytes", "65536", err, sizeof err) != 0 ||
        kq_kafka_conf_set(conf, "queued.min.messages", "1000000", err, sizeof err) != 0 ||
        kq_kafka_conf_set(conf, "fetch.wait.max.ms", "50", err, sizeof err) != 0 ||
        (c = kq_kafka_consumer_new(&cfg, group, conf, err, sizeof err)) == NULL) {
        fprintf(stderr, "bench_consume: %s\n", err);
        return 1;
    }
    end = calloc((size_t)n, sizeof *end);
    tp = rd_kafka_topic_partition_list_new(n);
    t0 = mono_s();
    for (int i = 0; i < n; i++) {
        int64_t lo, hi;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(c, names[i / np], i % np, &lo, &hi,
                                                                 cfg.kafka_timeout_ms);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "bench_consume: %s [%d]: %s\n", names[i / np], i % np,
                    rd_kafka_err2str(e));
            return 1;
        }
        end[i] = hi;
        remaining += hi > 0;
        rd_kafka_topic_partition_list_add(tp, names[i / np], i % np)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_assign(c, tp);
    while (remaining > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 1000);
        int i = -1;

        if (m == NULL)
            continue;
        for (int t = 0; m->rkt && t < 3; t++)
            if (strcmp(rd_kafka_topic_name(m->rkt), names[t]) == 0)
                i = t * np + m->partition;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (i >= 0 && end[i] > 0 && m->offset >= end[i]) {
                end[i] = 0;
                remaining--;
            }
        } else if (m->err == 0) {
            events++;
        }
        rd_kafka_message_destroy(m);
    }
    dt = mono_s() - t0;
    printf("RESULT name=projector.raw_consumer unit=events/s value=%.3f events=%lld seconds=%.3f\n",
           (double)events / dt, events, dt);
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    free(end);
    kq_config_free(&cfg);
    return 0;
}
