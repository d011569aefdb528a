/*
 * bench_kafka.c — raw librdkafka baselines against a real broker.
 *
 * These numbers are what the command side (transactional append with group
 * commit) and the projector (read_committed consumer) are compared against:
 * the same client library and broker with none of our code in the way.
 *
 * One invocation runs every phase on fresh topics it creates (and deletes at
 * the end), and prints one RESULT line per measurement:
 *
 *  1. produce  — plain producer: acks=all, enable.idempotence=true,
 *                linger.ms=5, `--size`-byte values with a key shaped like the
 *                log's ("<aggregate>/<20-digit version>"), explicit partition
 *                i % partitions. Two runs on the same topic:
 *                - kafka.produce: `--messages` with up to `--window` (10000)
 *                  outstanding (produced, delivery report not yet served):
 *                  saturated throughput, msgs/s from the first produce call to
 *                  the last delivery report. Its latency is mostly queueing
 *                  and depends on the window, so it is not reported.
 *                - kafka.produce.w32: `--lat-messages` with at most
 *                  `--lat-window` (32, as many as wrk's connections in the
 *                  HTTP benchmarks) outstanding: msgs/s and p50/p99 of
 *                  produce-call-to-delivery-report latency, the cost a
 *                  command waiting for its own append sees (linger included).
 *  2. consume  — a consumer assigned to every partition of that topic from
 *                the beginning (isolation.level=read_committed, as the
 *                projector reads), until it has seen all the messages.
 *                Reports msgs/s from the first message to the last.
 *  3. txn      — transactional producer (same settings + transactional.id),
 *                one transaction per `--batch` messages, transactions one
 *                after another (a producer has one open transaction at a
 *                time, which is the command side's situation). Reports msgs/s
 *                and p50/p99 of begin-to-commit-returned per transaction, the
 *                latency a group-committed command sees at best.
 *  4. consume of the transactional topic (control records, read_committed).
 *
 * Usage:
 *   bench_kafka --brokers HOST:PORT[,..] [--messages N] [--lat-messages N]
 *               [--lat-window N] [--txn-messages N] [--size BYTES]
 *               [--partitions N] [--linger-ms MS] [--window N] [--batch N]
 *               [--replication N] [--phases produce,consume,txn]
 *   bench_kafka --mock ...   same phases against librdkafka's in-process mock
 *                            cluster (a smoke test of this program only: the
 *                            numbers mean nothing)
 *
 * Kafka settings: KCQRS_KAFKA_PROPERTIES (a librdkafka key=value file, as
 * every kcqrs binary reads it: TLS, SASL) is applied to every client of a
 * real-broker run, checked at start (a bad line exits 2 naming FILE:LINE).
 *
 * Exit status: 0 when every phase completed with every message delivered or
 * read; 1 on any delivery error, timeout or broker error (nothing is printed
 * as a RESULT for a phase that failed); 2 on bad usage.
 * Threads: everything runs on the main thread; librdkafka's own threads call
 * nothing of ours except through rd_kafka_poll() on this thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "kq_kprops.h"
#include "kq_util.h"
#include "bench_util.h"

#define KB_TIMEOUT_MS 60000

typedef struct kb_opts {
    const char *brokers;
    const kq_kprops *props; /* KCQRS_KAFKA_PROPERTIES, NULL when unset (or --mock) */
    int mock;
    long messages, lat_messages, txn_messages, size, lat_window, partitions, linger_ms, window,
        batch, replication;
    int do_produce, do_consume, do_txn;
} kb_opts;

/* Producer state shared with the delivery-report callback (main thread). */
typedef struct kb_prod {
    uint64_t *sent_ns; /* per message: produce time */
    uint64_t *lat_ns;  /* per message: delivery latency */
    long delivered, failed;
    uint64_t last_dr_ns;
    char first_err[256];
} kb_prod;

static void kb_result(const char *name, const char *unit, double value, const char *extra)
{
    printf("RESULT name=%s unit=%s value=%.3f%s%s\n", name, unit, value, extra ? " " : "",
           extra ? extra : "");
    fflush(stdout);
}

static void kb_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kb_prod *p = opaque;
    long id = (long)(intptr_t)m->_private;
    uint64_t now = bench_now_ns();

    (void)rk;
    if (m->err) {
        if (p->failed++ == 0)
            snprintf(p->first_err, sizeof p->first_err, "%s", rd_kafka_err2str(m->err));
        return;
    }
    p->lat_ns[id] = now - p->sent_ns[id];
    p->delivered++;
    p->last_dr_ns = now;
}

static void kb_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (level <= 4) /* warnings and worse */
        fprintf(stderr, "bench_kafka: rdkafka %s: %s\n", fac, buf);
}

static rd_kafka_conf_t *kb_conf(const kb_opts *o, char *errstr, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    rd_kafka_conf_set_log_cb(conf, kb_log_cb);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", o->brokers, errstr, errlen) !=
        RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    if (o->props != NULL && kq_kprops_apply(o->props, conf, errstr, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

static int kb_set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char errstr[512];

    if (rd_kafka_conf_set(conf, k, v, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "bench_kafka: config %s=%s: %s\n", k, v, errstr);
        return -1;
    }
    return 0;
}

/* --------------------------------------------------------------- topics */

/* Create `topic` (or, in mock mode, declare it in the mock cluster). */
static int kb_create_topic(const kb_opts *o, rd_kafka_mock_cluster_t *mc, const char *topic)
{
    char errstr[512];
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_NewTopic_t *nt = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    const rd_kafka_CreateTopics_result_t *res;
    const rd_kafka_topic_result_t **tr;
    size_t ntr;
    int rc = -1;

    if (mc != NULL) {
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, topic, (int)o->partitions, 1);
        if (e) {
            fprintf(stderr, "bench_kafka: mock topic %s: %s\n", topic, rd_kafka_err2str(e));
            return -1;
        }
        return 0;
    }
    if ((conf = kb_conf(o, errstr, sizeof errstr)) == NULL)
        goto fail;
    if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr)) == NULL)
        goto fail;
    conf = NULL;
    nt = rd_kafka_NewTopic_new(topic, (int)o->partitions, (int)o->replication, errstr,
                               sizeof errstr);
    if (nt == NULL)
        goto fail;
    q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    ev = rd_kafka_queue_poll(q, KB_TIMEOUT_MS);
    if (ev == NULL) {
        snprintf(errstr, sizeof errstr, "CreateTopics timed out");
        goto fail;
    }
    if (rd_kafka_event_error(ev)) {
        snprintf(errstr, sizeof errstr, "%s", rd_kafka_event_error_string(ev));
        goto fail;
    }
    res = rd_kafka_event_CreateTopics_result(ev);
    tr = rd_kafka_CreateTopics_result_topics(res, &ntr);
    if (ntr != 1 || rd_kafka_topic_result_error(tr[0])) {
        snprintf(errstr, sizeof errstr, "%s",
                 ntr == 1 ? rd_kafka_topic_result_error_string(tr[0]) : "no result");
        goto fail;
    }
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "bench_kafka: create topic %s: %s\n", topic, errstr);
out:
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    if (q != NULL)
        rd_kafka_queue_destroy(q);
    if (nt != NULL)
        rd_kafka_NewTopic_destroy(nt);
    if (rk != NULL)
        rd_kafka_destroy(rk);
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    return rc;
}

/* Best effort: a shared broker (KCQRS_BROKERS) should not keep our topics. */
static void kb_delete_topics(const kb_opts *o, char **topics, size_t n)
{
    char errstr[512];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    rd_kafka_DeleteTopic_t *dt[4];
    rd_kafka_queue_t *q;
    rd_kafka_event_t *ev;
    size_t k = 0;

    for (size_t i = 0; i < n && i < 4; i++)
        k += topics[i] != NULL;
    if (o->mock || k == 0 || n > 4)
        return;
    k = 0;
    if ((conf = kb_conf(o, errstr, sizeof errstr)) == NULL)
        return;
    if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr)) == NULL) {
        rd_kafka_conf_destroy(conf);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (topics[i] != NULL)
            dt[k++] = rd_kafka_DeleteTopic_new(topics[i]);
    q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopics(rk, dt, k, NULL, q);
    ev = rd_kafka_queue_poll(q, 10000);
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    rd_kafka_DeleteTopic_destroy_array(dt, k);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

/* ------------------------------------------------------------ producing */

static rd_kafka_t *kb_producer_new(const kb_opts *o, kb_prod *p, const char *txn_id)
{
    char errstr[512], linger[32];
    rd_kafka_conf_t *conf = kb_conf(o, errstr, sizeof errstr);
    rd_kafka_t *rk;

    if (conf == NULL)
        goto fail;
    snprintf(linger, sizeof linger, "%ld", o->linger_ms);
    if (kb_set(conf, "acks", "all") || kb_set(conf, "enable.idempotence", "true") ||
        kb_set(conf, "linger.ms", linger) || kb_set(conf, "message.timeout.ms", "30000") ||
        kb_set(conf, "queue.buffering.max.messages", "1000000") ||
        (txn_id != NULL && kb_set(conf, "transactional.id", txn_id))) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, kb_dr_cb);
    rd_kafka_conf_set_opaque(conf, p);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    return rk;
fail:
    fprintf(stderr, "bench_kafka: producer: %s\n", errstr);
    return NULL;
}

/* Produce message `id` (value filled from `value`, key from id). Retries on a
 * full local queue by serving delivery reports. */
static int kb_produce_one(rd_kafka_t *rk, kb_prod *p, const char *topic, long id, long partitions,
                          const char *value, size_t size)
{
    char key[64];
    int klen = snprintf(key, sizeof key, "bench-%ld/%020ld", id % 1000, id / 1000 + 1);
    rd_kafka_resp_err_t err;

    for (;;) {
        p->sent_ns[id] = bench_now_ns();
        err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION((int32_t)(id % partitions)),
            RD_KAFKA_V_KEY(key, (size_t)klen), RD_KAFKA_V_VALUE((void *)value, size),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE((void *)(intptr_t)id),
            RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(rk, 1);
            continue;
        }
        if (err) {
            fprintf(stderr, "bench_kafka: produce: %s\n", rd_kafka_err2str(err));
            return -1;
        }
        return 0;
    }
}

static void kb_fill_value(char *value, size_t size)
{
    uint32_t x = 2463534242u; /* xorshift: incompressible-looking bytes */
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        value[i] = (char)('a' + x % 26);
    }
}

/* Produce `n` messages with at most `window` outstanding; report msgs/s under
 * `name` and, if `with_latency`, p50/p99 delivery latency as name.p50/.p99. */
static int kb_phase_produce(const kb_opts *o, const char *topic, long n, long window,
                            const char *name, int with_latency)
{
    kb_prod p;
    rd_kafka_t *rk = NULL;
    char *value = malloc((size_t)o->size);
    uint64_t t0, deadline;
    int rc = -1;

    memset(&p, 0, sizeof p);
    p.sent_ns = calloc((size_t)n, sizeof *p.sent_ns);
    p.lat_ns = calloc((size_t)n, sizeof *p.lat_ns);
    if (value == NULL || p.sent_ns == NULL || p.lat_ns == NULL) {
        fprintf(stderr, "bench_kafka: out of memory\n");
        goto out;
    }
    kb_fill_value(value, (size_t)o->size);
    if ((rk = kb_producer_new(o, &p, NULL)) == NULL)
        goto out;

    /* Warm-up: metadata, connections and the idempotent producer id, so the
     * measurement starts with a ready producer. Not counted. */
    {
        kb_prod *wp = &p;
        if (kb_produce_one(rk, wp, topic, 0, o->partitions, value, (size_t)o->size) != 0)
            goto out;
        if (rd_kafka_flush(rk, KB_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR || p.failed) {
            fprintf(stderr, "bench_kafka: warm-up message not delivered: %s\n",
                    p.failed ? p.first_err : "flush timed out");
            goto out;
        }
        p.delivered = 0;
    }

    t0 = bench_now_ns();
    for (long i = 0; i < n; i++) {
        while (i - (p.delivered + p.failed) >= window)
            rd_kafka_poll(rk, 1);
        if (kb_produce_one(rk, &p, topic, i, o->partitions, value, (size_t)o->size) != 0)
            goto out;
        if ((i & 63) == 0)
            rd_kafka_poll(rk, 0);
        if (p.failed)
            break;
    }
    deadline = bench_now_ns() + (uint64_t)KB_TIMEOUT_MS * 1000000u;
    while (p.delivered + p.failed < n && bench_now_ns() < deadline)
        rd_kafka_poll(rk, 10);
    if (p.failed || p.delivered != n) {
        fprintf(stderr, "bench_kafka: produce: %ld of %ld delivered, %ld failed (%s)\n",
                p.delivered, n, p.failed, p.failed ? p.first_err : "timed out");
        goto out;
    }
    {
        double secs = (double)(p.last_dr_ns - t0) / 1e9;
        char extra[128], lname[128];
        snprintf(extra, sizeof extra, "messages=%ld size=%ld window=%ld linger_ms=%ld", n, o->size,
                 window, o->linger_ms);
        kb_result(name, "msgs/s", (double)n / secs, extra);
        if (with_latency) {
            qsort(p.lat_ns, (size_t)n, sizeof *p.lat_ns, bench_cmp_u64);
            snprintf(lname, sizeof lname, "%s.p50", name);
            kb_result(lname, "ms", (double)bench_pct_u64(p.lat_ns, (size_t)n, 50) / 1e6, NULL);
            snprintf(lname, sizeof lname, "%s.p99", name);
            kb_result(lname, "ms", (double)bench_pct_u64(p.lat_ns, (size_t)n, 99) / 1e6, NULL);
        }
    }
    rc = 0;
out:
    if (rk != NULL) {
        rd_kafka_flush(rk, 5000);
        rd_kafka_destroy(rk);
    }
    free(p.sent_ns);
    free(p.lat_ns);
    free(value);
    return rc;
}

static int kb_txn_error(const char *what, rd_kafka_error_t *e)
{
    fprintf(stderr, "bench_kafka: %s: %s\n", what, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return -1;
}

static int kb_phase_txn(const kb_opts *o, const char *topic)
{
    kb_prod p;
    rd_kafka_t *rk = NULL;
    rd_kafka_error_t *e;
    char *value = malloc((size_t)o->size);
    char txn_id[96];
    long n = o->txn_messages, ntxn = (o->txn_messages + o->batch - 1) / o->batch;
    uint64_t *commit_ns = calloc((size_t)ntxn, sizeof *commit_ns), t0, t1;
    int rc = -1;

    memset(&p, 0, sizeof p);
    p.sent_ns = calloc((size_t)n, sizeof *p.sent_ns);
    p.lat_ns = calloc((size_t)n, sizeof *p.lat_ns);
    if (value == NULL || p.sent_ns == NULL || p.lat_ns == NULL || commit_ns == NULL) {
        fprintf(stderr, "bench_kafka: out of memory\n");
        goto out;
    }
    kb_fill_value(value, (size_t)o->size);
    snprintf(txn_id, sizeof txn_id, "kcqrs-bench-%ld-%" PRIu64, (long)getpid(), bench_now_ns());
    if ((rk = kb_producer_new(o, &p, txn_id)) == NULL)
        goto out;
    if ((e = rd_kafka_init_transactions(rk, KB_TIMEOUT_MS)) != NULL) {
        rc = kb_txn_error("init_transactions", e);
        goto out;
    }
    /* Warm-up transaction (metadata, connections, partitions registered with
     * the coordinator once). Not counted. */
    if ((e = rd_kafka_begin_transaction(rk)) != NULL) {
        rc = kb_txn_error("begin_transaction", e);
        goto out;
    }
    for (long i = 0; i < o->partitions && i < n; i++)
        if (kb_produce_one(rk, &p, topic, i, o->partitions, value, (size_t)o->size) != 0)
            goto out;
    if ((e = rd_kafka_commit_transaction(rk, KB_TIMEOUT_MS)) != NULL) {
        rc = kb_txn_error("commit_transaction (warm-up)", e);
        goto out;
    }
    p.delivered = 0;

    t0 = bench_now_ns();
    for (long t = 0; t < ntxn; t++) {
        uint64_t b0 = bench_now_ns();
        long lo = t * o->batch, hi = lo + o->batch < n ? lo + o->batch : n;

        if ((e = rd_kafka_begin_transaction(rk)) != NULL) {
            rc = kb_txn_error("begin_transaction", e);
            goto out;
        }
        for (long i = lo; i < hi; i++)
            if (kb_produce_one(rk, &p, topic, i, o->partitions, value, (size_t)o->size) != 0)
                goto out;
        if ((e = rd_kafka_commit_transaction(rk, KB_TIMEOUT_MS)) != NULL) {
            rc = kb_txn_error("commit_transaction", e);
            goto out;
        }
        commit_ns[t] = bench_now_ns() - b0;
        if (p.failed)
            break;
    }
    t1 = bench_now_ns();
    rd_kafka_poll(rk, 0);
    if (p.failed || p.delivered != n) {
        fprintf(stderr, "bench_kafka: txn: %ld of %ld delivered, %ld failed (%s)\n", p.delivered, n,
                p.failed, p.failed ? p.first_err : "missing delivery reports");
        goto out;
    }
    {
        double secs = (double)(t1 - t0) / 1e9;
        char extra[128];
        qsort(commit_ns, (size_t)ntxn, sizeof *commit_ns, bench_cmp_u64);
        snprintf(extra, sizeof extra,
                 "baseline=kafka.produce messages=%ld size=%ld batch=%ld transactions=%ld", n,
                 o->size, o->batch, ntxn);
        kb_result("kafka.txn", "msgs/s", (double)n / secs, extra);
        kb_result("kafka.txn.commit_p50", "ms",
                  (double)bench_pct_u64(commit_ns, (size_t)ntxn, 50) / 1e6, NULL);
        kb_result("kafka.txn.commit_p99", "ms",
                  (double)bench_pct_u64(commit_ns, (size_t)ntxn, 99) / 1e6, NULL);
    }
    rc = 0;
out:
    if (rk != NULL)
        rd_kafka_destroy(rk);
    free(p.sent_ns);
    free(p.lat_ns);
    free(commit_ns);
    free(value);
    return rc;
}

/* ------------------------------------------------------------ consuming */

/* Read `expect` messages of `topic` from the beginning of every partition;
 * report msgs/s as `name`, compared with `baseline` (NULL for none). */
static int kb_phase_consume(const kb_opts *o, const char *topic, long expect, const char *name,
                            const char *baseline)
{
    char errstr[512], group[96];
    rd_kafka_conf_t *conf = kb_conf(o, errstr, sizeof errstr);
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_resp_err_t err;
    uint64_t t_first = 0, t_last = 0, deadline;
    long got = 0, bytes = 0;
    int rc = -1;

    if (conf == NULL) {
        fprintf(stderr, "bench_kafka: consumer: %s\n", errstr);
        goto out;
    }
    snprintf(group, sizeof group, "kcqrs-bench-%ld", (long)getpid());
    if (kb_set(conf, "group.id", group) || kb_set(conf, "enable.auto.commit", "false") ||
        kb_set(conf, "isolation.level", "read_committed") ||
        kb_set(conf, "enable.partition.eof", "false")) {
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        fprintf(stderr, "bench_kafka: consumer: %s\n", errstr);
        goto out;
    }
    rd_kafka_poll_set_consumer(rk);
    parts = rd_kafka_topic_partition_list_new((int)o->partitions);
    for (long i = 0; i < o->partitions; i++)
        rd_kafka_topic_partition_list_add(parts, topic, (int32_t)i)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    if ((err = rd_kafka_assign(rk, parts)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "bench_kafka: assign: %s\n", rd_kafka_err2str(err));
        goto out;
    }
    deadline = bench_now_ns() + (uint64_t)KB_TIMEOUT_MS * 1000000u;
    while (got < expect && bench_now_ns() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL)
            continue;
        if (m->err) {
            fprintf(stderr, "bench_kafka: consume %s: %s\n", topic, rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            goto out;
        }
        if (got == 0)
            t_first = bench_now_ns();
        got++;
        bytes += (long)m->len;
        rd_kafka_message_destroy(m);
    }
    t_last = bench_now_ns();
    if (got != expect) {
        fprintf(stderr, "bench_kafka: consume %s: read %ld of %ld messages before timeout\n", topic,
                got, expect);
        goto out;
    }
    {
        char extra[160];
        snprintf(extra, sizeof extra, "%s%s%smessages=%ld bytes=%ld", baseline ? "baseline=" : "",
                 baseline ? baseline : "", baseline ? " " : "", got, bytes);
        /* got - 1 intervals between the first message and the last. */
        kb_result(name, "msgs/s",
                  t_last > t_first ? (double)(got - 1) / ((double)(t_last - t_first) / 1e9) : 0,
                  extra);
    }
    rc = 0;
out:
    if (parts != NULL)
        rd_kafka_topic_partition_list_destroy(parts);
    if (rk != NULL) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    return rc;
}

/* ----------------------------------------------------------------- main */

static void kb_usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s (--brokers HOST:PORT[,...] | --mock) [--messages N] [--lat-messages N]\n"
            "       [--lat-window N] [--txn-messages N] [--size BYTES] [--partitions N]\n"
            "       [--linger-ms MS] [--window N] [--batch N] [--replication N]\n"
            "       [--phases produce,consume,txn]\n",
            prog);
}

int main(int argc, char **argv)
{
    kb_opts o = {.brokers = NULL,
                 .messages = 200000,
                 .lat_messages = 20000,
                 .lat_window = 32,
                 .txn_messages = 20000,
                 .size = 200,
                 .partitions = 6,
                 .linger_ms = 5,
                 .window = 10000,
                 .batch = 100,
                 .replication = 1,
                 .do_produce = 1,
                 .do_consume = 1,
                 .do_txn = 1};
    char topic[128], txn_topic[128], name[64], *created[2] = {NULL, NULL}, errstr[512];
    rd_kafka_t *mock_rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    kq_kprops *props = NULL;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long *dst = NULL, lo = 1, hi = 100000000;

        if (strcmp(a, "--mock") == 0) {
            o.mock = 1;
            continue;
        }
        if (v == NULL)
            goto usage;
        i++;
        if (strcmp(a, "--brokers") == 0) {
            o.brokers = v;
            continue;
        } else if (strcmp(a, "--phases") == 0) {
            o.do_produce = strstr(v, "produce") != NULL;
            o.do_consume = strstr(v, "consume") != NULL;
            o.do_txn = strstr(v, "txn") != NULL;
            continue;
        } else if (strcmp(a, "--messages") == 0) {
            dst = &o.messages;
        } else if (strcmp(a, "--lat-messages") == 0) {
            dst = &o.lat_messages;
        } else if (strcmp(a, "--lat-window") == 0) {
            dst = &o.lat_window;
        } else if (strcmp(a, "--txn-messages") == 0) {
            dst = &o.txn_messages;
        } else if (strcmp(a, "--size") == 0) {
            dst = &o.size, hi = 1000000;
        } else if (strcmp(a, "--partitions") == 0) {
            dst = &o.partitions, hi = 1000;
        } else if (strcmp(a, "--linger-ms") == 0) {
            dst = &o.linger_ms, lo = 0, hi = 10000;
        } else if (strcmp(a, "--window") == 0) {
            dst = &o.window;
        } else if (strcmp(a, "--batch") == 0) {
            dst = &o.batch, hi = 100000;
        } else if (strcmp(a, "--replication") == 0) {
            dst = &o.replication, hi = 10;
        } else {
            goto usage;
        }
        if (kq_parse_long(v, lo, hi, dst) != 0)
            goto usage;
    }
    if ((o.brokers == NULL) == (o.mock == 0))
        goto usage;
    if (!o.mock && getenv("KCQRS_KAFKA_PROPERTIES") != NULL &&
        strcmp(getenv("KCQRS_KAFKA_PROPERTIES"), "none") != 0 &&
        strcmp(getenv("KCQRS_KAFKA_PROPERTIES"), "") != 0) {
        if (kq_kprops_load(getenv("KCQRS_KAFKA_PROPERTIES"), &props, errstr, sizeof errstr) != 0) {
            fprintf(stderr, "bench_kafka: %s\n", errstr);
            return 2;
        }
        o.props = props;
    }
    if (o.do_consume && !o.do_produce) {
        fprintf(stderr, "bench_kafka: the consume phase reads what the produce phase wrote\n");
        goto usage;
    }

    if (o.mock) {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set_log_cb(conf, kb_log_cb);
        mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
        if (mock_rk == NULL) {
            rd_kafka_conf_destroy(conf);
            fprintf(stderr, "bench_kafka: mock: %s\n", errstr);
            goto out;
        }
        if ((mc = rd_kafka_mock_cluster_new(mock_rk, 1)) == NULL) {
            fprintf(stderr, "bench_kafka: cannot create the mock cluster\n");
            goto out;
        }
        o.brokers = rd_kafka_mock_cluster_bootstraps(mc);
    }

    snprintf(topic, sizeof topic, "kcqrs-bench-%ld-%" PRIu64 ".plain", (long)getpid(),
             bench_now_ns());
    snprintf(txn_topic, sizeof txn_topic, "kcqrs-bench-%ld-%" PRIu64 ".txn", (long)getpid(),
             bench_now_ns());

    if (o.do_produce) {
        if (kb_create_topic(&o, mc, topic) != 0)
            goto out;
        created[0] = topic;
        if (kb_phase_produce(&o, topic, o.messages, o.window, "kafka.produce", 0) != 0)
            goto out;
        snprintf(name, sizeof name, "kafka.produce.w%ld", o.lat_window);
        if (kb_phase_produce(&o, topic, o.lat_messages, o.lat_window, name, 1) != 0)
            goto out;
        /* +2: each produce phase's warm-up message is in the topic too. */
        if (o.do_consume && kb_phase_consume(&o, topic, o.messages + o.lat_messages + 2,
                                             "kafka.consume", NULL) != 0)
            goto out;
    }
    if (o.do_txn) {
        if (kb_create_topic(&o, mc, txn_topic) != 0)
            goto out;
        created[1] = txn_topic;
        if (kb_phase_txn(&o, txn_topic) != 0)
            goto out;
        if (o.do_consume &&
            kb_phase_consume(&o, txn_topic,
                             o.txn_messages +
                                 (o.partitions < o.txn_messages ? o.partitions : o.txn_messages),
                             "kafka.consume.txn_topic", "kafka.consume") != 0)
            goto out;
    }
    rc = 0;
    goto out;

usage:
    kb_usage(argv[0]);
    rc = 2;
out:
    if (rc != 2)
        kb_delete_topics(&o, created, 2);
    if (mc != NULL)
        rd_kafka_mock_cluster_destroy(mc);
    if (mock_rk != NULL)
        rd_kafka_destroy(mock_rk);
    kq_kprops_free(props);
    return rc;
}
