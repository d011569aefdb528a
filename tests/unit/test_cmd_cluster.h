/*
 * test_cmd_cluster.h — the writer's test fixture: librdkafka's mock cluster
 * with the three event topics, a writer on it, commands submitted as the HTTP
 * side does and their answers, and a reader of the log that checks every
 * partition's hash chain (ev_chain.h, the verify-chain oracle).
 *
 * Used by test_cmd_writer.c, test_cmd_wf_writer.c and test_cmd_catchup.c.
 * Commands are built with test_cmd_fixture.h (fx_res, fx_wf_create, ...).
 *
 * Header-only (static inline), as test_cmd_fixture.h: each tests/unit/test_*.c
 * is its own program (Makefile), so a shared helper is a header. Include it
 * after cmocka.h.
 */
#ifndef TEST_CMD_CLUSTER_H
#define TEST_CMD_CLUSTER_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "ev_chain.h"
#include "cmd_writer.h"
#include "ev_codec.h"
#include "kq_config.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_token.h"

/* Kafka API keys the tests inject errors into. */
#define CL_API_PRODUCE 0
#define CL_API_ADD_PARTITIONS_TO_TXN 24
#define CL_API_END_TXN 26

#define CL_PARTITIONS 6

/* The topic names of prefix "u" by topic index. */
static const char *const cl_topics[CMD_TOPICS] = {"u.resource.events", "u.workflow.events",
                                                  "u.run.events"};

/* ------------------------------------------------------------ time */

static inline double cl_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static inline void cl_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ answers */

/* What the writer answered one command (copied out of the cmd_result). */
typedef struct cl_outcome {
    atomic_int done;
    unsigned status;
    int64_t version;
    int retry_after;
    char code[64];
    char id[EV_ID_MAX + 1];
    char token[KQ_TOKEN_MAX];
    char secret[EV_META_MAX + 1];
    int has_secret;
    int has_attempt_detail;
    uint32_t current_step, recorded_attempts;
} cl_outcome;

static inline void cl_on_done(cmd_item *it, const cmd_result *r)
{
    cl_outcome *o = it->arg;
    o->status = r->status;
    o->version = r->version;
    o->retry_after = r->retry_after;
    snprintf(o->code, sizeof o->code, "%s", r->code ? r->code : "");
    snprintf(o->id, sizeof o->id, "%s", r->id ? r->id : "");
    snprintf(o->token, sizeof o->token, "%s", r->token ? r->token : "");
    o->has_secret = r->secret != NULL;
    snprintf(o->secret, sizeof o->secret, "%s", r->secret ? r->secret : "");
    o->has_attempt_detail = r->has_attempt_detail;
    o->current_step = r->current_step;
    o->recorded_attempts = r->recorded_attempts;
    atomic_store(&o->done, 1);
    cmd_item_free(it);
}

/* Wait until every one of o[0..n) is answered (30 s at most). */
static inline void cl_wait_all(cl_outcome *o, size_t n)
{
    double t0 = cl_now();
    for (size_t i = 0; i < n; i++)
        while (!atomic_load(&o[i].done)) {
            if (cl_now() - t0 > 30)
                fail_msg("command %zu not answered in 30 s", i);
            cl_sleep_ms(5);
        }
}

/* The answer's token names `topic` and id's partition. */
static inline void cl_token_is(const cl_outcome *o, const char *topic, const char *id)
{
    char t[256];
    int32_t p;
    int64_t off;
    assert_int_equal(kq_token_parse(o->token, t, sizeof t, &p, &off), 0);
    assert_string_equal(t, topic);
    assert_int_equal(p, kq_kafka_partition_for(id, strlen(id), CL_PARTITIONS));
}

/* ------------------------------------------------------------ the cluster and the writer */

typedef struct cl_fixture {
    rd_kafka_t *host;
    rd_kafka_mock_cluster_t *mc;
    char brokers[256];
    kq_config cfg;
    cmd_writer *w;            /* NULL: none running */
    const char *snapshot_dir; /* NULL: no snapshots */
    int linger_us;            /* KCQRS_BATCH_LINGER_US of the next writer */
} cl_fixture;

/* The configuration of prefix "u" on the mock cluster (also for consumers). */
static inline void cl_config(cl_fixture *f)
{
    f->cfg.brokers = f->brokers;
    f->cfg.topic_prefix = (char *)"u";
    f->cfg.partitions = CL_PARTITIONS;
    f->cfg.replication_factor = 1;
    f->cfg.min_insync_replicas = 1;
    f->cfg.kafka_timeout_ms = 3000;
    f->cfg.batch_max = 64;
    f->cfg.batch_linger_us = f->linger_us;
    f->cfg.snapshot_every = 1000000;
}

/* A mock cluster with the three topics (no writer yet). */
static inline void cl_cluster_start(cl_fixture *f, const char *test, int linger_us)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    memset(f, 0, sizeof *f);
    f->linger_us = linger_us;
    kq_log_init(test, getenv("TEST_LOG") ? KQ_LOG_DEBUG : KQ_LOG_OFF, KQ_LOG_HUMAN);
    rd_kafka_conf_set_log_cb(conf, NULL);
    assert_int_equal(rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err), RD_KAFKA_CONF_OK);
    f->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    assert_non_null(f->host);
    f->mc = rd_kafka_mock_cluster_new(f->host, 1);
    assert_non_null(f->mc);
    snprintf(f->brokers, sizeof f->brokers, "%s", rd_kafka_mock_cluster_bootstraps(f->mc));
    for (int t = 0; t < CMD_TOPICS; t++)
        assert_int_equal(rd_kafka_mock_topic_create(f->mc, cl_topics[t], CL_PARTITIONS, 1), 0);
    cl_config(f);
}

/* Wait until the writer accepts commands (30 s at most). */
static inline void cl_wait_ready(cl_fixture *f)
{
    char why[256];
    double t0 = cl_now();
    while (!cmd_writer_ready(f->w, why, sizeof why)) {
        if (cl_now() - t0 > 30)
            fail_msg("writer not ready: %s", why);
        cl_sleep_ms(20);
    }
}

/* A writer on the cluster (f->snapshot_dir, f->linger_us), ready. */
static inline void cl_writer_start(cl_fixture *f)
{
    char err[512];
    cmd_writer_options o;

    cl_config(f);
    memset(&o, 0, sizeof o);
    o.cfg = &f->cfg;
    o.skip_topic_setup = 1;
    o.snapshot_dir = f->snapshot_dir;
    o.snapshot_map_size = 1 << 24;
    if (cmd_writer_new(&o, &f->w, err, sizeof err) != 0 ||
        cmd_writer_start(f->w, err, sizeof err) != 0)
        fail_msg("%s", err);
    cl_wait_ready(f);
}

/* Stop and free the writer (a clean stop: the snapshot is written). */
static inline void cl_writer_stop(cl_fixture *f)
{
    cmd_writer_free(f->w);
    f->w = NULL;
}

/* The cluster and a writer. */
static inline void cl_start(cl_fixture *f, const char *test, int linger_us)
{
    cl_cluster_start(f, test, linger_us);
    cl_writer_start(f);
}

static inline void cl_stop(cl_fixture *f)
{
    cl_writer_stop(f);
    rd_kafka_mock_cluster_destroy(f->mc);
    rd_kafka_destroy(f->host);
}

/* ------------------------------------------------------------ commands */

/* Submit command c (moved into a new item: the item owns its strings) as the
 * HTTP side does; o gets the answer (a refusal at submit, too). */
static inline void cl_submit(cl_fixture *f, cl_outcome *o, cmd_command c)
{
    cmd_item *it = cmd_item_new();
    cmd_result refused;

    assert_non_null(it);
    memset(o, 0, sizeof *o);
    it->cmd = c;
    if (it->cmd.actor[0] == '\0')
        snprintf(it->cmd.actor, sizeof it->cmd.actor, "tester");
    if (it->cmd.correlation_id[0] == '\0')
        snprintf(it->cmd.correlation_id, sizeof it->cmd.correlation_id, "corr-1");
    it->done = cl_on_done;
    it->arg = o;
    if (cmd_writer_submit(f->w, it, &refused) != 0) {
        o->status = refused.status;
        o->retry_after = refused.retry_after;
        snprintf(o->code, sizeof o->code, "%s", refused.code);
        atomic_store(&o->done, 1);
        cmd_item_free(it);
    }
}

/* Submit and wait for the answer. */
static inline void cl_do(cl_fixture *f, cl_outcome *o, cmd_command c)
{
    cl_submit(f, o, c);
    cl_wait_all(o, 1);
}

/* ------------------------------------------------------------ the log */

/* Called for every committed record of a topic, in each partition's order. */
typedef void (*cl_record_fn)(void *arg, const rd_kafka_message_t *m);

/*
 * Read every partition of `topic` (read_committed) to its end; every
 * partition's chain must be intact (ev_chain.h). fn (NULL: none) sees each
 * record. Returns the number of records read.
 */
static inline uint64_t cl_read_topic(cl_fixture *f, const char *topic, cl_record_fn fn, void *arg)
{
    char err[512];
    rd_kafka_t *c;
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(CL_PARTITIONS);
    ev_chain ch[CL_PARTITIONS];
    int left = CL_PARTITIONS, eof[CL_PARTITIONS] = {0};
    uint64_t n = 0;
    double t0 = cl_now();

    c = kq_kafka_consumer_new(&f->cfg, "u.test.reader", NULL, err, sizeof err);
    if (c == NULL)
        fail_msg("%s", err);
    for (int p = 0; p < CL_PARTITIONS; p++) {
        ev_chain_init(&ch[p]);
        rd_kafka_topic_partition_list_add(tp, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    assert_int_equal(rd_kafka_assign(c, tp), 0);
    while (left > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (cl_now() - t0 > 30)
            fail_msg("reading %s: %d partitions not at the end", topic, left);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (!eof[m->partition]) {
                eof[m->partition] = 1;
                left--;
            }
        } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            assert_false(eof[m->partition]);
            assert_int_equal(ev_chain_add(&ch[m->partition], m->offset, m->payload, m->len), 0);
            if (fn != NULL)
                fn(arg, m);
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    for (int p = 0; p < CL_PARTITIONS; p++) {
        ev_chain_finish(&ch[p]);
        if (ch[p].brk != EV_CHAIN_INTACT)
            fail_msg("%s partition %d: %s", topic, p, ch[p].brk_msg);
    }
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return n;
}

#endif
