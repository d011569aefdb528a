/*
 * test_cmd_writer.c — the writer against librdkafka's mock cluster (no real
 * broker): the happy path of group commit (versions, answers, consistency
 * tokens) and fault injection: a transaction that fails answers 503 with
 * Retry-After to every command of its batch, the state does not move (the next
 * update gets the version the failed one would have had), and the writer keeps
 * serving; a fenced writer answers not_writer for good; a restarted writer
 * continues versions from the log and still answers a used Idempotency-Key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "aud_chain.h"
#include "cmd_api.h"
#include "cmd_writer.h"
#include "kq_config.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"

#define API_PRODUCE 0
#define API_ADD_PARTITIONS_TO_TXN 24
#define API_END_TXN 26

typedef struct outcome {
    atomic_int done;
    unsigned status;
    int64_t version;
    int retry_after;
    char code[64];
    char token[CMD_TOKEN_MAX];
} outcome;

static void on_done(cmd_item *it, const cmd_result *r)
{
    outcome *o = it->arg;
    o->status = r->status;
    o->version = r->version;
    o->retry_after = r->retry_after;
    snprintf(o->code, sizeof o->code, "%s", r->code ? r->code : "");
    snprintf(o->token, sizeof o->token, "%s", r->token ? r->token : "");
    atomic_store(&o->done, 1);
    cmd_item_free(it);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

typedef struct fixture {
    rd_kafka_t *host;
    rd_kafka_mock_cluster_t *mc;
    char brokers[256];
    kq_config cfg;
    cmd_writer *w;
    const char *snapshot_dir; /* NULL: no snapshots */
} fixture;

static void start_writer(fixture *f);

static void start(fixture *f)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    memset(f, 0, sizeof *f);
    kq_log_init("test_cmd_writer", getenv("TEST_LOG") ? KQ_LOG_DEBUG : KQ_LOG_OFF, KQ_LOG_HUMAN);
    rd_kafka_conf_set_log_cb(conf, NULL);
    assert_int_equal(rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err), RD_KAFKA_CONF_OK);
    f->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    assert_non_null(f->host);
    f->mc = rd_kafka_mock_cluster_new(f->host, 1);
    assert_non_null(f->mc);
    snprintf(f->brokers, sizeof f->brokers, "%s", rd_kafka_mock_cluster_bootstraps(f->mc));
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "u.resource.events", 6, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "u.workflow.events", 6, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "u.run.events", 6, 1), 0);
    start_writer(f);
}

static void start_writer(fixture *f)
{
    char err[512];
    cmd_writer_options o;
    double t0;

    f->cfg.brokers = f->brokers;
    f->cfg.topic_prefix = (char *)"u";
    f->cfg.partitions = 6;
    f->cfg.replication_factor = 1;
    f->cfg.min_insync_replicas = 1;
    f->cfg.kafka_timeout_ms = 3000;
    f->cfg.batch_max = 64;
    f->cfg.batch_linger_us = 200000; /* 200 ms: the test's commands share one batch */
    f->cfg.snapshot_every = 1000000;
    memset(&o, 0, sizeof o);
    o.cfg = &f->cfg;
    o.skip_topic_setup = 1;
    o.snapshot_dir = f->snapshot_dir;
    o.snapshot_map_size = 1 << 24;
    if (cmd_writer_new(&o, &f->w, err, sizeof err) != 0 ||
        cmd_writer_start(f->w, err, sizeof err) != 0)
        fail_msg("%s", err);
    t0 = now_s();
    while (!cmd_writer_ready(f->w, err, sizeof err)) {
        if (now_s() - t0 > 20)
            fail_msg("writer not ready: %s", err);
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void stop(fixture *f)
{
    cmd_writer_free(f->w);
    rd_kafka_mock_cluster_destroy(f->mc);
    rd_kafka_destroy(f->host);
}

static void submit_key(fixture *f, outcome *o, cmd_kind kind, const char *id, const char *name,
                       const char *key);

static void submit(fixture *f, outcome *o, cmd_kind kind, const char *id, const char *name)
{
    submit_key(f, o, kind, id, name, NULL);
}

static void submit_key(fixture *f, outcome *o, cmd_kind kind, const char *id, const char *name,
                       const char *key)
{
    cmd_item *it = cmd_item_new();
    cmd_result refused;

    assert_non_null(it);
    memset(o, 0, sizeof *o);
    it->cmd.kind = kind;
    snprintf(it->cmd.id, sizeof it->cmd.id, "%s", id);
    if (name) {
        it->cmd.fields = CMD_F_NAME;
        it->cmd.name = strdup(name);
    }
    if (kind == CMD_CREATE)
        it->cmd.description = strdup("");
    snprintf(it->cmd.actor, sizeof it->cmd.actor, "tester");
    snprintf(it->cmd.correlation_id, sizeof it->cmd.correlation_id, "corr-1");
    if (key != NULL) {
        snprintf(it->cmd.idem_key, sizeof it->cmd.idem_key, "%s", key);
        cmd_api_command_hash("POST", id, name ? name : "", name ? strlen(name) : 0, it->cmd.hash);
    }
    it->done = on_done;
    it->arg = o;
    if (cmd_writer_submit(f->w, it, &refused) != 0) {
        o->status = refused.status;
        snprintf(o->code, sizeof o->code, "%s", refused.code);
        atomic_store(&o->done, 1);
        cmd_item_free(it);
    }
}

static void wait_all(outcome *o, size_t n)
{
    double t0 = now_s();
    for (size_t i = 0; i < n; i++)
        while (!atomic_load(&o[i].done)) {
            if (now_s() - t0 > 30)
                fail_msg("command %zu not answered in 30 s", i);
            struct timespec ts = {0, 5 * 1000000L};
            nanosleep(&ts, NULL);
        }
}

static void wait_ready(fixture *f)
{
    char why[256];
    double t0 = now_s();
    while (!cmd_writer_ready(f->w, why, sizeof why)) {
        if (now_s() - t0 > 30)
            fail_msg("writer did not recover: %s", why);
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Submit until the answer is not 503 (the client's retry loop), at most 30 s. */
static void submit_retry(fixture *f, outcome *o, cmd_kind kind, const char *id, const char *name)
{
    double t0 = now_s();
    for (;;) {
        submit(f, o, kind, id, name);
        wait_all(o, 1);
        if (o->status != 503 || now_s() - t0 > 30)
            return;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void test_group_commit(void **state)
{
    fixture f;
    outcome o[4];
    char topic[256];
    int32_t p;
    int64_t off;

    (void)state;
    start(&f);
    submit(&f, &o[0], CMD_CREATE, "r1", "one");
    submit(&f, &o[1], CMD_UPDATE, "r1", "two");
    submit(&f, &o[2], CMD_CREATE, "r1", "dup");
    submit(&f, &o[3], CMD_UPDATE, "r1", "three");
    wait_all(o, 4);
    assert_int_equal(o[0].status, 201);
    assert_int_equal(o[0].version, 1);
    assert_int_equal(o[1].status, 200);
    assert_int_equal(o[1].version, 2);
    assert_int_equal(o[2].status, 409);
    assert_int_equal(o[3].status, 200);
    assert_int_equal(o[3].version, 3);
    /* tokens name the topic and the partition of r1, offsets ascending */
    assert_int_equal(cmd_token_parse(o[3].token, topic, sizeof topic, &p, &off), 0);
    assert_string_equal(topic, "u.resource.events");
    assert_int_equal(p, kq_kafka_partition_for("r1", 2, 6));
    assert_int_equal(cmd_token_parse(o[0].token, topic, sizeof topic, &p, &off), 0);
    stop(&f);
}

/* The transaction fails (a record is refused, so it must be aborted): every command of the batch
 * gets 503 with Retry-After, including the 409 that only the failed create caused; nothing of the
 * batch enters the state. */
static void test_failed_commit_fails_batch(void **state)
{
    fixture f;
    outcome o[3], after;

    (void)state;
    start(&f);
    submit(&f, &o[0], CMD_CREATE, "r1", "one");
    wait_all(o, 1);
    assert_int_equal(o[0].status, 201);

    /* A permanent produce error: the records fail, the transaction must abort. */
    rd_kafka_mock_push_request_errors(f.mc, API_PRODUCE, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    submit(&f, &o[0], CMD_UPDATE, "r1", "two");
    submit(&f, &o[1], CMD_CREATE, "r2", "x");
    submit(&f, &o[2], CMD_CREATE, "r2", "y");
    wait_all(o, 3);
    for (int i = 0; i < 3; i++) {
        if (o[i].status != 503)
            fail_msg("command %d: status %u (%s), want 503", i, o[i].status, o[i].code);
        assert_true(o[i].retry_after > 0);
    }
    wait_ready(&f);
    /* state unchanged: the update gets version 2 again, r2 is still free */
    submit_retry(&f, &after, CMD_UPDATE, "r1", "two-b");
    assert_int_equal(after.status, 200);
    assert_int_equal(after.version, 2);
    submit_retry(&f, &after, CMD_CREATE, "r2", "x");
    assert_int_equal(after.status, 201);
    stop(&f);
}

/* Fenced at commit: 503 not_writer now and for every later command. */
static void test_fenced(void **state)
{
    fixture f;
    outcome o;
    char why[256];

    (void)state;
    start(&f);
    rd_kafka_mock_push_request_errors(f.mc, API_END_TXN, 1, RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
    submit(&f, &o, CMD_CREATE, "r1", "one");
    wait_all(&o, 1);
    assert_int_equal(o.status, 503);
    assert_string_equal(o.code, "not_writer");
    assert_true(cmd_writer_fenced(f.w));
    assert_int_equal(cmd_writer_ready(f.w, why, sizeof why), 0);
    assert_non_null(strstr(why, "fenced"));
    submit(&f, &o, CMD_CREATE, "r2", "two");
    wait_all(&o, 1);
    assert_int_equal(o.status, 503);
    assert_string_equal(o.code, "not_writer");
    stop(&f);
}

/* Transactions one after another go through every producer in turn (each
 * one's events are in the log in order: versions 1..N, offsets ascending);
 * a fence met on any producer, here not the first, stops the writer for good. */
static void test_producers_in_turn(void **state)
{
    fixture f;
    outcome o;
    char topic[256], metrics[8192], *m = NULL;
    size_t mlen = 0;
    int32_t p;
    int64_t off, last = -1;
    FILE *mf;

    (void)state;
    start(&f);
    submit(&f, &o, CMD_CREATE, "r1", "v1");
    wait_all(&o, 1);
    assert_int_equal(o.status, 201);
    for (int v = 2; v <= 2 * CMD_WRITER_PRODUCERS + 1; v++) {
        char name[16];
        snprintf(name, sizeof name, "v%d", v);
        submit(&f, &o, CMD_UPDATE, "r1", name);
        wait_all(&o, 1);
        assert_int_equal(o.status, 200);
        assert_int_equal(o.version, v);
        assert_int_equal(cmd_token_parse(o.token, topic, sizeof topic, &p, &off), 0);
        assert_true(off > last);
        last = off;
    }
    mf = open_memstream(&m, &mlen);
    assert_non_null(mf);
    cmd_writer_metrics(f.w, mf);
    fclose(mf);
    snprintf(metrics, sizeof metrics, "kcqrs_commands_commit_seconds_count %d\n",
             2 * CMD_WRITER_PRODUCERS + 1);
    if (strstr(m, metrics) == NULL)
        fail_msg("no '%s' in\n%s", metrics, m);
    free(m);
    /* 7 transactions so far: the next is on producer 1 and commits, the one
     * after (producer 2, not the first producer) is fenced */
    submit(&f, &o, CMD_UPDATE, "r1", "a");
    wait_all(&o, 1);
    assert_int_equal(o.status, 200);
    rd_kafka_mock_push_request_errors(f.mc, API_END_TXN, 1, RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
    submit(&f, &o, CMD_UPDATE, "r1", "c");
    wait_all(&o, 1);
    assert_int_equal(o.status, 503);
    assert_string_equal(o.code, "not_writer");
    assert_true(cmd_writer_fenced(f.w));
    for (int k = 0; k < CMD_WRITER_PRODUCERS; k++) {
        submit(&f, &o, CMD_UPDATE, "r1", "d");
        wait_all(&o, 1);
        assert_int_equal(o.status, 503);
        assert_string_equal(o.code, "not_writer");
    }
    stop(&f);
}

/* Restart: a new writer reads the log; versions continue and an
 * Idempotency-Key still answers the original response, appending nothing. */
static void test_restart_continues_from_log(void **state)
{
    fixture f;
    outcome o;

    (void)state;
    start(&f);
    submit_key(&f, &o, CMD_CREATE, "r1", "one", "key-1");
    wait_all(&o, 1);
    assert_int_equal(o.status, 201);
    submit(&f, &o, CMD_UPDATE, "r1", "two");
    wait_all(&o, 1);
    assert_int_equal(o.version, 2);
    cmd_writer_free(f.w);

    start_writer(&f);
    assert_int_equal(cmd_state_resource_count(cmd_writer_state(f.w)), 1);
    submit_key(&f, &o, CMD_CREATE, "r1", "one", "key-1");
    wait_all(&o, 1);
    assert_int_equal(o.status, 201);
    assert_int_equal(o.version, 1);
    submit_key(&f, &o, CMD_CREATE, "r1", "other", "key-1");
    wait_all(&o, 1);
    assert_int_equal(o.status, 422);
    submit(&f, &o, CMD_UPDATE, "r1", "three");
    wait_all(&o, 1);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.version, 3);
    stop(&f);
}

/*
 * Read every partition of the mock cluster's topic (read_committed) through
 * the chain check (aud_chain.h, the verify-chain oracle): every partition must
 * be intact; returns the number of records read.
 */
static uint64_t check_chain(fixture *f)
{
    char err[512];
    rd_kafka_t *c;
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(6);
    aud_chain ch[6];
    int left = 6, eof[6] = {0};
    uint64_t n = 0;
    double t0 = now_s();

    c = kq_kafka_consumer_new(&f->cfg, "u.test.chain", NULL, err, sizeof err);
    if (c == NULL)
        fail_msg("%s", err);
    for (int p = 0; p < 6; p++) {
        aud_chain_init(&ch[p]);
        rd_kafka_topic_partition_list_add(tp, "u.resource.events", p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    }
    assert_int_equal(rd_kafka_assign(c, tp), 0);
    while (left > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (now_s() - t0 > 30)
            fail_msg("reading the log: %d partitions not at the end", left);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (!eof[m->partition]) {
                eof[m->partition] = 1;
                left--;
            }
        } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            assert_false(eof[m->partition]);
            assert_int_equal(aud_chain_add(&ch[m->partition], m->offset, m->payload, m->len), 0);
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    for (int p = 0; p < 6; p++) {
        aud_chain_finish(&ch[p]);
        if (ch[p].brk != AUD_INTACT)
            fail_msg("partition %d: %s", p, ch[p].brk_msg);
    }
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return n;
}

/* Events of many aggregates over several transactions (several in one
 * partition within one transaction, and across transactions and producers)
 * form one intact chain per partition; the count shows every event was read. */
static void test_chain_across_transactions(void **state)
{
    fixture f;
    outcome o[12];
    size_t events = 0;

    (void)state;
    start(&f);
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 12; i++) {
            char id[16];
            snprintf(id, sizeof id, "c%d", i);
            submit(&f, &o[i], round == 0 ? CMD_CREATE : CMD_UPDATE, id, round % 2 ? "x" : "y");
        }
        wait_all(o, 12);
        for (int i = 0; i < 12; i++)
            assert_int_equal(o[i].status, round == 0 ? 201 : 200);
        events += 12;
    }
    assert_int_equal(check_chain(&f), events);
    stop(&f);
}

/* A failed (aborted) transaction's events are never chained on: the events
 * after it, in the same partitions, chain on the last committed ones. */
static void test_chain_abort_restores_heads(void **state)
{
    fixture f;
    outcome o[3], after;

    (void)state;
    start(&f);
    submit(&f, &o[0], CMD_CREATE, "r1", "one");
    submit(&f, &o[1], CMD_CREATE, "r2", "one");
    wait_all(o, 2);
    assert_int_equal(o[0].status, 201);
    /* The mock cluster hands aborted records to read_committed consumers, so
     * the transaction fails before its records are sent (AddPartitionsToTxn
     * refused): the writer had chained them already and must forget them. */
    rd_kafka_mock_push_request_errors(f.mc, API_ADD_PARTITIONS_TO_TXN, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    submit(&f, &o[0], CMD_UPDATE, "r1", "two");
    submit(&f, &o[1], CMD_UPDATE, "r2", "two");
    submit(&f, &o[2], CMD_CREATE, "r3", "x");
    wait_all(o, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(o[i].status, 503);
    wait_ready(&f);
    submit_retry(&f, &after, CMD_UPDATE, "r1", "two-b");
    assert_int_equal(after.status, 200);
    submit_retry(&f, &after, CMD_UPDATE, "r2", "two-b");
    assert_int_equal(after.status, 200);
    submit_retry(&f, &after, CMD_CREATE, "r3", "x");
    assert_int_equal(after.status, 201);
    assert_int_equal(check_chain(&f), 5);
    stop(&f);
}

/* Restarts continue the chain: from the log alone (catch-up hashes what it
 * reads), and from a snapshot that covers every record (no record is read:
 * the heads come from the snapshot). */
static void test_chain_restart(void **state)
{
    fixture f;
    outcome o;
    char dir[] = "/tmp/test_cmd_writer_chainXXXXXX", cmd[128];

    (void)state;
    assert_non_null(mkdtemp(dir));
    start(&f);
    for (int v = 0; v < 3; v++) {
        submit(&f, &o, v == 0 ? CMD_CREATE : CMD_UPDATE, "r1", v % 2 ? "a" : "b");
        wait_all(&o, 1);
        assert_int_equal(o.status, v == 0 ? 201 : 200);
    }
    cmd_writer_free(f.w);
    start_writer(&f); /* no snapshot: the log */
    submit(&f, &o, CMD_UPDATE, "r1", "c");
    wait_all(&o, 1);
    assert_int_equal(o.version, 4);
    cmd_writer_free(f.w);
    f.snapshot_dir = dir;
    start_writer(&f); /* reads the log, snapshots it at the stop */
    submit(&f, &o, CMD_UPDATE, "r1", "d");
    wait_all(&o, 1);
    assert_int_equal(o.version, 5);
    cmd_writer_free(f.w);
    start_writer(&f); /* the snapshot covers everything: heads from the snapshot */
    assert_int_equal(cmd_state_resource_count(cmd_writer_state(f.w)), 1);
    submit(&f, &o, CMD_UPDATE, "r1", "e");
    wait_all(&o, 1);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.version, 6);
    assert_int_equal(check_chain(&f), 6);
    stop(&f);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_commit),
        cmocka_unit_test(test_failed_commit_fails_batch),
        cmocka_unit_test(test_fenced),
        cmocka_unit_test(test_producers_in_turn),
        cmocka_unit_test(test_restart_continues_from_log),
        cmocka_unit_test(test_chain_across_transactions),
        cmocka_unit_test(test_chain_abort_restores_heads),
        cmocka_unit_test(test_chain_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
