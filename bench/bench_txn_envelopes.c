/*
 * bench_txn_envelopes.c — the Kafka ceiling of the command API: a raw
 * librdkafka transactional producer writing what kcqrs-commands writes.
 *
 * It is the second baseline of the `commands` benchmark (issue #3). One
 * producer, configured exactly as the service's writer (kq_kafka_conf_new +
 * kq_kafka_txn_producer_new from the same KCQRS_* variables: idempotent,
 * acks=all, the same timeouts), on a topic created as the service creates it
 * (kq_kafka_ensure_topics: <KCQRS_TOPIC_PREFIX>.resource.events, compacted,
 * KCQRS_PARTITIONS partitions), writes transactions one after another, each
 * of B records, where B is the average batch size the service measured
 * (--batch, fractional: transaction t holds floor((t+1)B) - floor(tB)
 * records, so the average is exactly B). Every record is a real
 * ResourceCreated envelope built as the writer builds it (ev_envelope_encode:
 * random event id, a unique aggregate id, version 1, time, actor, correlation
 * id, 32-byte command hash, a 30-character name and 61-character
 * description), with key kq_kafka_record_key(), partition
 * kq_kafka_partition_for() and the event_type header
 * (kq_kafka_produce_event). After each commit every delivery report is
 * checked, as the writer does. What it leaves out is everything else of the
 * service: HTTP, JSON, validation, the queue, the state.
 *
 * Usage: bench_txn_envelopes --batch B [--seconds S]
 *   --batch B     records per transaction (average; >= 1, may be fractional)
 *   --seconds S   measure for S seconds (default 10), after one unmeasured
 *                 warm-up transaction touching every partition
 *   --gap-ms G    diagnostic: sleep G ms between transactions (default 0;
 *                 shows how much of the commit time is the previous
 *                 transaction's markers still being written)
 *   --producers K transactions one after another, taking K transactional
 *                 producers in turn (default 1), as kcqrs-commands does with
 *                 KCQRS's writer producers (cmd_writer.h): each transactional
 *                 id rests while the other K-1 commit
 *   --name N      the RESULT names' stem (default commands.raw_txn)
 *   --split       diagnostic: flush before committing and also print
 *                 <name>.flush_p50 (begin to every record delivered:
 *                 AddPartitionsToTxn + Produce) and <name>.endtxn_p50 (the
 *                 commit call after it: EndTxn), each with its p99
 *   --set NAME=VALUE  diagnostic: an extra librdkafka property on every
 *                 producer (repeatable), e.g. linger.ms=0
 *
 * Prints:
 *   RESULT name=commands.raw_txn unit=records/s value=... batch=B transactions=N producers=K
 *   RESULT name=commands.raw_txn.commit_p50 unit=ms value=...   (begin to commit returned)
 *   RESULT name=commands.raw_txn.commit_p99 unit=ms value=...
 * Exit status: 0, 1 on any Kafka error or missing/failed delivery report, 2 usage.
 * Threads: the main thread only (librdkafka's threads call nothing of ours
 * outside rd_kafka_poll/commit on this thread).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "ev_codec.h"
#include "kq_config.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "bench_util.h"

#define PROG "bench_txn_envelopes"

typedef struct tx_rec {
    int delivered, err;
} tx_rec;

static void tx_random(void *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom((uint8_t *)p + got, n - got, 0);
        if (r > 0)
            got += (size_t)r;
        else if (errno != EINTR)
            break;
    }
}

static void tx_uuid(ev_uuid *u)
{
    tx_random(u->bytes, sizeof u->bytes);
    u->bytes[6] = (uint8_t)((u->bytes[6] & 0x0f) | 0x40);
    u->bytes[8] = (uint8_t)((u->bytes[8] & 0x3f) | 0x80);
}

static void tx_uuid_str(char out[37])
{
    ev_uuid u;
    const uint8_t *b = u.bytes;
    tx_uuid(&u);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

static void tx_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    tx_rec *r = m->_private;
    (void)rk;
    (void)opaque;
    if (r == NULL)
        return;
    r->delivered = 1;
    r->err = m->err != RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* How many of the n sorted values exceed x. */
static size_t tx_count_over(const double *sorted, size_t n, double x)
{
    size_t k = n;
    while (k > 0 && sorted[k - 1] > x)
        k--;
    return n - k;
}

/* Build and produce record number `seq` as the writer's produce_item does. */
static int tx_produce(rd_kafka_t *rk, ev_fb_builder *fb, const char *topic, int partitions,
                      const char *run_tag, long seq, tx_rec *rec, char *errstr, size_t errlen)
{
    ev_envelope e;
    struct timespec now;
    char id[EV_ID_MAX + 1], key[EV_ID_MAX + 32], corr[37];
    uint8_t hash[32];
    const uint8_t *buf;
    size_t len;
    int klen, part, rc;

    snprintf(id, sizeof id, "raw-%s-%ld", run_tag, seq);
    tx_uuid_str(corr);
    tx_random(hash, sizeof hash); /* stands in for SHA-256(method, path, body) */
    ev_envelope_init(&e, EV_RESOURCE_CREATED);
    tx_uuid(&e.event_id);
    clock_gettime(CLOCK_REALTIME, &now);
    e.aggregate_id = ev_str_c(id);
    e.version = 1;
    e.occurred_at_us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
    e.actor = ev_str_c("bench");
    e.correlation_id = ev_str_c(corr);
    e.command_hash.ptr = hash;
    e.command_hash.len = sizeof hash;
    e.payload.resource_created.name = ev_str_c("benchmark resource 000000000000");
    e.payload.resource_created.description =
        ev_str_c("created by the kcqrs benchmark; unique id, typical field sizes");
    e.payload.resource_created.status = EV_STATUS_ACTIVE;
    if ((rc = ev_envelope_encode(fb, &e, errstr, errlen)) != 0)
        return rc;
    buf = ev_fb_builder_data(fb, &len);
    part = kq_kafka_partition_for(id, strlen(id), partitions);
    klen = kq_kafka_record_key(id, 1, key, sizeof key);
    if (part < 0 || klen < 0) {
        snprintf(errstr, errlen, "bad id %s", id);
        return -1;
    }
    rec->delivered = rec->err = 0;
    return kq_kafka_produce_event(rk, topic, part, key, (size_t)klen, buf, len,
                                  ev_event_type_name(EV_RESOURCE_CREATED), rec, errstr, errlen);
}

/* One transaction of `n` records (rec[0..n)); returns 0 or -1 (errstr set). */
static int tx_one(rd_kafka_t *rk, ev_fb_builder *fb, const kq_config *cfg, const char *topic,
                  const char *run_tag, long *seq, tx_rec *rec, long n, double *flush_s,
                  char *errstr, size_t errlen)
{
    double t0 = bench_now_s();
    long got;

    if (kq_kafka_txn_begin(rk, errstr, errlen) != 0)
        return -1;
    for (long i = 0; i < n; i++)
        if (tx_produce(rk, fb, topic, cfg->partitions, run_tag, (*seq)++, &rec[i], errstr,
                       errlen) != 0)
            return -1;
    if (flush_s != NULL) {
        /* --split: deliver the records first (AddPartitionsToTxn + Produce),
         * so the commit below is only EndTxn */
        rd_kafka_resp_err_t fe = rd_kafka_flush(rk, cfg->kafka_timeout_ms);
        if (fe != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(errstr, errlen, "flush: %s", rd_kafka_err2str(fe));
            return -1;
        }
        *flush_s = bench_now_s() - t0;
    }
    if (kq_kafka_txn_commit(rk, cfg->kafka_timeout_ms, errstr, errlen) != 0)
        return -1;
    /* As the writer: the commit served the delivery reports; make sure. */
    t0 = bench_now_s();
    for (;;) {
        got = 0;
        for (long i = 0; i < n; i++)
            got += rec[i].delivered;
        if (got == n || bench_now_s() - t0 > 5.0)
            break;
        rd_kafka_poll(rk, 10);
    }
    for (long i = 0; i < n; i++)
        if (!rec[i].delivered || rec[i].err) {
            snprintf(errstr, errlen, "record %ld of a committed transaction: %s", i,
                     rec[i].delivered ? "delivery failed" : "no delivery report");
            return -1;
        }
    return 0;
}

int main(int argc, char **argv)
{
    kq_config cfg;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rks[16] = {NULL}, *rk = NULL;
    const char *sets[16];
    int nsets = 0, nprod = 1;
    const char *name = "commands.raw_txn";
    int split = 0;
    double fl = 0, *flush_s = NULL;
    ev_fb_builder fb;
    char err[512], topic[KQ_KAFKA_TOPIC_MAX], txn_id[128], run_tag[32];
    const char *topics[1];
    double batch = 0, seconds = 10, gap_ms = 0, t0, t1, *commit_s = NULL;
    size_t ncommit = 0, capcommit = 0;
    long seq = 0, records = 0, maxn, nwarm;
    tx_rec *rec = NULL;
    int rc = 1, tn;

    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            batch = strtod(argv[++i], &end);
            if (*end != '\0' || !(batch >= 1 && batch <= 100000))
                goto usage;
        } else if (strcmp(argv[i], "--gap-ms") == 0 && i + 1 < argc) {
            gap_ms = strtod(argv[++i], &end);
            if (*end != '\0' || !(gap_ms >= 0 && gap_ms <= 10000))
                goto usage;
        } else if (strcmp(argv[i], "--producers") == 0 && i + 1 < argc) {
            long k = strtol(argv[++i], &end, 10);
            if (*end != '\0' || k < 1 || k > 16)
                goto usage;
            nprod = (int)k;
        } else if (strcmp(argv[i], "--split") == 0) {
            split = 1;
        } else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            name = argv[++i];
            if (*name == '\0' || strpbrk(name, " =\n") != NULL)
                goto usage;
        } else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc && nsets < 16) {
            if (strchr(argv[++i], '=') == NULL)
                goto usage;
            sets[nsets++] = argv[i];
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = strtod(argv[++i], &end);
            if (*end != '\0' || !(seconds > 0 && seconds <= 3600))
                goto usage;
        } else {
            goto usage;
        }
    }
    if (batch < 1)
        goto usage;
    if (kq_config_load_and_init_log(&cfg, PROG, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        return 2;
    }
    ev_fb_builder_init(&fb);
    maxn = (long)ceil(batch) + 1;
    nwarm = 4L * cfg.partitions;
    if ((rec = calloc((size_t)(maxn > nwarm ? maxn : nwarm), sizeof *rec)) == NULL) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        goto out;
    }
    snprintf(run_tag, sizeof run_tag, "%ld", (long)getpid());
    tn = kq_config_topic(&cfg, "resource", topic, sizeof topic);
    if (tn < 0 || (size_t)tn >= sizeof topic) {
        fprintf(stderr, "%s: topic name too long\n", PROG);
        goto out;
    }
    for (int k = 0; k < nprod; k++) {
        snprintf(txn_id, sizeof txn_id, "%s.bench-raw-%s.%d", cfg.topic_prefix, run_tag, k);
        if ((conf = kq_kafka_conf_new(&cfg, txn_id, err, sizeof err)) == NULL)
            goto kafka_fail;
        rd_kafka_conf_set_dr_msg_cb(conf, tx_dr_cb);
        for (int j = 0; j < nsets; j++) {
            char prop[128];
            const char *eq = strchr(sets[j], '=');
            snprintf(prop, sizeof prop, "%.*s", (int)(eq - sets[j]), sets[j]);
            if (kq_kafka_conf_set(conf, prop, eq + 1, err, sizeof err) != 0) {
                rd_kafka_conf_destroy(conf);
                conf = NULL;
                goto kafka_fail;
            }
        }
        rks[k] = kq_kafka_txn_producer_new(&cfg, txn_id, conf, err, sizeof err);
        conf = NULL;
        if (rks[k] == NULL)
            goto kafka_fail;
        topics[0] = topic;
        if ((k == 0 && kq_kafka_ensure_topics(rks[k], &cfg, topics, 1, err, sizeof err) != 0) ||
            kq_kafka_txn_init(rks[k], 2 * cfg.kafka_timeout_ms, err, sizeof err) != 0)
            goto kafka_fail;
        /* Warm-up: one transaction of 4 records per partition, which touches
         * (nearly) every partition: metadata, connections, partitions added to a
         * transaction once. Not counted. */
        if (tx_one(rks[k], &fb, &cfg, topic, run_tag, &seq, rec, nwarm, NULL, err, sizeof err) != 0)
            goto kafka_fail;
    }

    t0 = bench_now_s();
    t1 = t0;
    for (long t = 0; t1 - t0 < seconds; t++) {
        long n = (long)floor((double)(t + 1) * batch) - (long)floor((double)t * batch);
        double b0 = bench_now_s();
        rk = rks[t % nprod];
        if (tx_one(rk, &fb, &cfg, topic, run_tag, &seq, rec, n, split ? &fl : NULL, err,
                   sizeof err) != 0)
            goto kafka_fail;
        t1 = bench_now_s();
        records += n;
        if (ncommit == capcommit) {
            size_t cap = capcommit ? 2 * capcommit : 4096;
            double *nc = realloc(commit_s, cap * sizeof *nc);
            if (nc == NULL) {
                fprintf(stderr, "%s: out of memory\n", PROG);
                goto out;
            }
            commit_s = nc;
            if ((nc = realloc(flush_s, cap * sizeof *nc)) == NULL) {
                fprintf(stderr, "%s: out of memory\n", PROG);
                goto out;
            }
            flush_s = nc;
            capcommit = cap;
        }
        flush_s[ncommit] = fl;
        commit_s[ncommit++] = t1 - b0;
        if (gap_ms > 0) {
            struct timespec gap = {(time_t)(gap_ms / 1000), (long)(fmod(gap_ms, 1000.0) * 1e6)};
            nanosleep(&gap, NULL);
            t1 = bench_now_s();
        }
    }
    if (split && ncommit > 0) {
        double *end_s = malloc(ncommit * sizeof *end_s);
        if (end_s == NULL) {
            fprintf(stderr, "%s: out of memory\n", PROG);
            goto out;
        }
        for (size_t i = 0; i < ncommit; i++)
            end_s[i] = commit_s[i] > flush_s[i] ? commit_s[i] - flush_s[i] : 0;
        qsort(flush_s, ncommit, sizeof *flush_s, bench_cmp_double);
        qsort(end_s, ncommit, sizeof *end_s, bench_cmp_double);
        printf("RESULT name=%s.flush_p50 unit=ms value=%.3f p99_ms=%.3f\n", name,
               bench_pct_double(flush_s, ncommit, 50) * 1e3,
               bench_pct_double(flush_s, ncommit, 99) * 1e3);
        printf("RESULT name=%s.endtxn_p50 unit=ms value=%.3f p99_ms=%.3f\n", name,
               bench_pct_double(end_s, ncommit, 50) * 1e3,
               bench_pct_double(end_s, ncommit, 99) * 1e3);
        free(end_s);
    }
    qsort(commit_s, ncommit, sizeof *commit_s, bench_cmp_double);
    printf("RESULT name=%s unit=records/s value=%.1f batch=%.2f transactions=%zu "
           "records=%ld seconds=%.2f topic=%s producers=%d\n",
           name, (double)records / (t1 - t0), batch, ncommit, records, t1 - t0, topic, nprod);
    printf("RESULT name=%s.commit_p50 unit=ms value=%.3f\n", name,
           bench_pct_double(commit_s, ncommit, 50) * 1e3);
    printf("RESULT name=%s.commit_p99 unit=ms value=%.3f max_ms=%.3f over_20ms=%zu\n", name,
           bench_pct_double(commit_s, ncommit, 99) * 1e3,
           ncommit ? commit_s[ncommit - 1] * 1e3 : 0.0, tx_count_over(commit_s, ncommit, 0.020));
    fflush(stdout);
    rc = 0;
    goto out;

kafka_fail:
    fprintf(stderr, "%s: %s\n", PROG, err);
    goto out;
usage:
    fprintf(stderr,
            "usage: %s --batch B [--seconds S] [--gap-ms G] [--producers K] [--name N] [--split] "
            "[--set "
            "NAME=VALUE]... "
            "(Kafka from KCQRS_* variables)\n",
            argv[0]);
    return 2;
out:
    for (int k = 0; k < nprod; k++)
        if (rks[k] != NULL)
            rd_kafka_destroy(rks[k]);
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    free(rec);
    free(commit_s);
    free(flush_s);
    ev_fb_builder_free(&fb);
    kq_config_free(&cfg);
    return rc;
}
