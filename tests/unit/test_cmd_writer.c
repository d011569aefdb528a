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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_cmd_fixture.h"
#include "test_cmd_cluster.h"

#include "kq_err.h"

static void start(cl_fixture *f)
{
    cl_start(f, "test_cmd_writer", 200000); /* 200 ms: the test's commands share one batch */
}

static void submit_key(cl_fixture *f, cl_outcome *o, cmd_kind kind, const char *id,
                       const char *name, const char *key)
{
    cl_submit(f, o, fx_res(kind, id, name, key));
}

static void submit(cl_fixture *f, cl_outcome *o, cmd_kind kind, const char *id, const char *name)
{
    submit_key(f, o, kind, id, name, NULL);
}

/* Submit until the answer is not 503 (the client's retry loop), at most 30 s. */
static void submit_retry(cl_fixture *f, cl_outcome *o, cmd_kind kind, const char *id,
                         const char *name)
{
    double t0 = cl_now();
    for (;;) {
        submit(f, o, kind, id, name);
        cl_wait_all(o, 1);
        if (o->status != 503 || cl_now() - t0 > 30)
            return;
        cl_sleep_ms(100);
    }
}

/* Every record of the resource topic, each partition's chain intact; the count. */
static uint64_t check_chain(cl_fixture *f)
{
    return cl_read_topic(f, "u.resource.events", NULL, NULL);
}

static void test_group_commit(void **state)
{
    cl_fixture f;
    cl_outcome o[4];
    char topic[256];
    int32_t p;
    int64_t off;

    (void)state;
    start(&f);
    submit(&f, &o[0], CMD_CREATE, "r1", "one");
    submit(&f, &o[1], CMD_UPDATE, "r1", "two");
    submit(&f, &o[2], CMD_CREATE, "r1", "dup");
    submit(&f, &o[3], CMD_UPDATE, "r1", "three");
    cl_wait_all(o, 4);
    assert_int_equal(o[0].status, 201);
    assert_int_equal(o[0].version, 1);
    assert_int_equal(o[1].status, 200);
    assert_int_equal(o[1].version, 2);
    assert_int_equal(o[2].status, 409);
    assert_int_equal(o[3].status, 200);
    assert_int_equal(o[3].version, 3);
    /* tokens name the topic and the partition of r1, offsets ascending */
    assert_int_equal(kq_token_parse(o[3].token, topic, sizeof topic, &p, &off), 0);
    assert_string_equal(topic, "u.resource.events");
    assert_int_equal(p, kq_kafka_partition_for("r1", 2, 6));
    assert_int_equal(kq_token_parse(o[0].token, topic, sizeof topic, &p, &off), 0);
    cl_stop(&f);
}

/* The transaction fails (a record is refused, so it must be aborted): every command of the batch
 * gets 503 with Retry-After, including the 409 that only the failed create caused; nothing of the
 * batch enters the state. */
static void test_failed_commit_fails_batch(void **state)
{
    cl_fixture f;
    cl_outcome o[3], after;

    (void)state;
    start(&f);
    submit(&f, &o[0], CMD_CREATE, "r1", "one");
    cl_wait_all(o, 1);
    assert_int_equal(o[0].status, 201);

    /* A permanent produce error: the records fail, the transaction must abort. */
    rd_kafka_mock_push_request_errors(f.mc, CL_API_PRODUCE, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    submit(&f, &o[0], CMD_UPDATE, "r1", "two");
    submit(&f, &o[1], CMD_CREATE, "r2", "x");
    submit(&f, &o[2], CMD_CREATE, "r2", "y");
    cl_wait_all(o, 3);
    for (int i = 0; i < 3; i++) {
        if (o[i].status != 503)
            fail_msg("command %d: status %u (%s), want 503", i, o[i].status, o[i].code);
        assert_true(o[i].retry_after > 0);
    }
    cl_wait_ready(&f);
    /* state unchanged: the update gets version 2 again, r2 is still free */
    submit_retry(&f, &after, CMD_UPDATE, "r1", "two-b");
    assert_int_equal(after.status, 200);
    assert_int_equal(after.version, 2);
    submit_retry(&f, &after, CMD_CREATE, "r2", "x");
    assert_int_equal(after.status, 201);
    cl_stop(&f);
}

/* Fenced at commit: 503 not_writer now and for every later command. */
static void test_fenced(void **state)
{
    cl_fixture f;
    cl_outcome o;
    char why[256];

    (void)state;
    start(&f);
    rd_kafka_mock_push_request_errors(f.mc, CL_API_END_TXN, 1, RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
    submit(&f, &o, CMD_CREATE, "r1", "one");
    cl_wait_all(&o, 1);
    assert_int_equal(o.status, 503);
    assert_string_equal(o.code, "not_writer");
    assert_true(cmd_writer_fenced(f.w));
    assert_int_equal(cmd_writer_ready(f.w, why, sizeof why), 0);
    assert_non_null(strstr(why, "fenced"));
    submit(&f, &o, CMD_CREATE, "r2", "two");
    cl_wait_all(&o, 1);
    assert_int_equal(o.status, 503);
    assert_string_equal(o.code, "not_writer");
    cl_stop(&f);
}

/* Transactions one after another go through every producer in turn (each
 * one's events are in the log in order: versions 1..N, offsets ascending);
 * a fence met on any producer, here not the first, stops the writer for good. */
static void test_producers_in_turn(void **state)
{
    cl_fixture f;
    cl_outcome o;
    char topic[256], metrics[8192], *m = NULL;
    size_t mlen = 0;
    int32_t p;
    int64_t off, last = -1;
    FILE *mf;

    (void)state;
    start(&f);
    submit(&f, &o, CMD_CREATE, "r1", "v1");
    cl_wait_all(&o, 1);
    assert_int_equal(o.status, 201);
    for (int v = 2; v <= 2 * CMD_WRITER_PRODUCERS + 1; v++) {
        char name[16];
        snprintf(name, sizeof name, "v%d", v);
        submit(&f, &o, CMD_UPDATE, "r1", name);
        cl_wait_all(&o, 1);
        assert_int_equal(o.status, 200);
        assert_int_equal(o.version, v);
        assert_int_equal(kq_token_parse(o.token, topic, sizeof topic, &p, &off), 0);
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
    cl_wait_all(&o, 1);
    assert_int_equal(o.status, 200);
    rd_kafka_mock_push_request_errors(f.mc, CL_API_END_TXN, 1, RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
    submit(&f, &o, CMD_UPDATE, "r1", "c");
    cl_wait_all(&o, 1);
    assert_int_equal(o.status, 503);
    assert_string_equal(o.code, "not_writer");
    assert_true(cmd_writer_fenced(f.w));
    for (int k = 0; k < CMD_WRITER_PRODUCERS; k++) {
        submit(&f, &o, CMD_UPDATE, "r1", "d");
        cl_wait_all(&o, 1);
        assert_int_equal(o.status, 503);
        assert_string_equal(o.code, "not_writer");
    }
    cl_stop(&f);
}

/* Restart: a new writer reads the log; versions continue and an
 * Idempotency-Key still answers the original response, appending nothing. */
static void test_restart_continues_from_log(void **state)
{
    cl_fixture f;
    cl_outcome o;

    (void)state;
    start(&f);
    submit_key(&f, &o, CMD_CREATE, "r1", "one", "key-1");
    cl_wait_all(&o, 1);
    assert_int_equal(o.status, 201);
    submit(&f, &o, CMD_UPDATE, "r1", "two");
    cl_wait_all(&o, 1);
    assert_int_equal(o.version, 2);
    cl_writer_stop(&f);

    cl_writer_start(&f);
    assert_int_equal(cmd_state_resource_count(cmd_writer_state(f.w)), 1);
    submit_key(&f, &o, CMD_CREATE, "r1", "one", "key-1");
    cl_wait_all(&o, 1);
    assert_int_equal(o.status, 201);
    assert_int_equal(o.version, 1);
    submit_key(&f, &o, CMD_CREATE, "r1", "other", "key-1");
    cl_wait_all(&o, 1);
    assert_int_equal(o.status, 422);
    submit(&f, &o, CMD_UPDATE, "r1", "three");
    cl_wait_all(&o, 1);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.version, 3);
    cl_stop(&f);
}

/* Events of many aggregates over several transactions (several in one
 * partition within one transaction, and across transactions and producers)
 * form one intact chain per partition; the count shows every event was read. */
static void test_chain_across_transactions(void **state)
{
    cl_fixture f;
    cl_outcome o[12];
    size_t events = 0;

    (void)state;
    start(&f);
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 12; i++) {
            char id[16];
            snprintf(id, sizeof id, "c%d", i);
            submit(&f, &o[i], round == 0 ? CMD_CREATE : CMD_UPDATE, id, round % 2 ? "x" : "y");
        }
        cl_wait_all(o, 12);
        for (int i = 0; i < 12; i++)
            assert_int_equal(o[i].status, round == 0 ? 201 : 200);
        events += 12;
    }
    assert_int_equal(check_chain(&f), events);
    cl_stop(&f);
}

/* A failed (aborted) transaction's events are never chained on: the events
 * after it, in the same partitions, chain on the last committed ones. */
static void test_chain_abort_restores_heads(void **state)
{
    cl_fixture f;
    cl_outcome o[3], after;

    (void)state;
    start(&f);
    submit(&f, &o[0], CMD_CREATE, "r1", "one");
    submit(&f, &o[1], CMD_CREATE, "r2", "one");
    cl_wait_all(o, 2);
    assert_int_equal(o[0].status, 201);
    /* The mock cluster hands aborted records to read_committed consumers, so
     * the transaction fails before its records are sent (AddPartitionsToTxn
     * refused): the writer had chained them already and must forget them. */
    rd_kafka_mock_push_request_errors(f.mc, CL_API_ADD_PARTITIONS_TO_TXN, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    submit(&f, &o[0], CMD_UPDATE, "r1", "two");
    submit(&f, &o[1], CMD_UPDATE, "r2", "two");
    submit(&f, &o[2], CMD_CREATE, "r3", "x");
    cl_wait_all(o, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(o[i].status, 503);
    cl_wait_ready(&f);
    submit_retry(&f, &after, CMD_UPDATE, "r1", "two-b");
    assert_int_equal(after.status, 200);
    submit_retry(&f, &after, CMD_UPDATE, "r2", "two-b");
    assert_int_equal(after.status, 200);
    submit_retry(&f, &after, CMD_CREATE, "r3", "x");
    assert_int_equal(after.status, 201);
    assert_int_equal(check_chain(&f), 5);
    cl_stop(&f);
}

/* Restarts continue the chain: from the log alone (catch-up hashes what it
 * reads), and from a snapshot that covers every record (no record is read:
 * the heads come from the snapshot). */
static void test_chain_restart(void **state)
{
    cl_fixture f;
    cl_outcome o;
    char dir[] = "/tmp/test_cmd_writer_chainXXXXXX", cmd[128];

    (void)state;
    assert_non_null(mkdtemp(dir));
    start(&f);
    for (int v = 0; v < 3; v++) {
        submit(&f, &o, v == 0 ? CMD_CREATE : CMD_UPDATE, "r1", v % 2 ? "a" : "b");
        cl_wait_all(&o, 1);
        assert_int_equal(o.status, v == 0 ? 201 : 200);
    }
    cl_writer_stop(&f);
    cl_writer_start(&f); /* no snapshot: the log */
    submit(&f, &o, CMD_UPDATE, "r1", "c");
    cl_wait_all(&o, 1);
    assert_int_equal(o.version, 4);
    cl_writer_stop(&f);
    f.snapshot_dir = dir;
    cl_writer_start(&f); /* reads the log, snapshots it at the stop */
    submit(&f, &o, CMD_UPDATE, "r1", "d");
    cl_wait_all(&o, 1);
    assert_int_equal(o.version, 5);
    cl_writer_stop(&f);
    cl_writer_start(&f); /* the snapshot covers everything: heads from the snapshot */
    assert_int_equal(cmd_state_resource_count(cmd_writer_state(f.w)), 1);
    submit(&f, &o, CMD_UPDATE, "r1", "e");
    cl_wait_all(&o, 1);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.version, 6);
    assert_int_equal(check_chain(&f), 6);
    cl_stop(&f);
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
