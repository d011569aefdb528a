/*
 * test_cmd_catchup.c — reading the log into the command state (cmd_catchup.h)
 * on librdkafka's mock cluster. The one-apply-path guarantee: a writer
 * commits resources, workflows, runs and attempts (applying each committed
 * event from the bytes it produced); a catch-up of the same log into an empty
 * state gives the same state, and each partition's chain head is the SHA-256
 * of its last record. A second catch-up reads nothing new. A state of another
 * Kafka cluster, or one covering offsets past a partition's end, is discarded
 * and rebuilt from offset 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_cmd_fixture.h"
#include "test_cmd_cluster.h"

#include "cmd_catchup.h"
#include "cmd_chain.h"

/* The last record of each partition of one topic. */
typedef struct lasts {
    uint8_t *value[CL_PARTITIONS];
    size_t len[CL_PARTITIONS];
} lasts;

static void keep_last(void *arg, const rd_kafka_message_t *m)
{
    lasts *l = arg;
    free(l->value[m->partition]);
    l->value[m->partition] = malloc(m->len);
    assert_non_null(l->value[m->partition]);
    memcpy(l->value[m->partition], m->payload, m->len);
    l->len[m->partition] = m->len;
}

/* Every head of ch is the hash of its partition's last record (none: unset). */
static void heads_match_log(cl_fixture *f, cmd_chain *ch)
{
    for (int t = 0; t < CMD_TOPICS; t++) {
        lasts l;
        memset(&l, 0, sizeof l);
        cl_read_topic(f, cl_topics[t], keep_last, &l);
        for (int p = 0; p < CL_PARTITIONS; p++) {
            cmd_head *h = cmd_chain_head(ch, t, p);
            if (l.value[p] == NULL) {
                assert_int_equal(h->set, 0);
                continue;
            }
            uint8_t want[32];
            unsigned int n = 0;
            assert_int_equal(EVP_Digest(l.value[p], l.len[p], want, &n, EVP_sha256(), NULL), 1);
            assert_int_equal(h->set, 1);
            assert_memory_equal(h->hash, want, 32);
            free(l.value[p]);
        }
    }
}

/* The writer's state and a caught-up one agree on everything; the catch-up's
 * offsets may be past the writer's by the transaction markers. */
static void same_as_writer(const cmd_state *w, cmd_state *c)
{
    size_t n = (size_t)CMD_TOPICS * (size_t)w->partitions;
    for (size_t i = 0; i < n; i++)
        assert_true(c->next_offset[i] >= w->next_offset[i]);
    memcpy(c->next_offset, w->next_offset, n * sizeof(int64_t));
    fx_assert_same(w, c);
}

static rd_kafka_t *plain_producer(cl_fixture *f)
{
    char err[512];
    rd_kafka_conf_t *conf = kq_kafka_conf_new(&f->cfg, "test.catchup", err, sizeof err);
    rd_kafka_t *rk;
    if (conf == NULL)
        fail_msg("%s", err);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (rk == NULL)
        fail_msg("%s", err);
    return rk;
}

static void teardown(cl_fixture *f, cmd_state *st, cmd_chain *ch, rd_kafka_t *rk)
{
    cmd_chain_free(ch);
    cmd_state_free(st);
    rd_kafka_destroy(rk);
    cl_stop(f);
}

static void fill_log(cl_fixture *f)
{
    cl_outcome o[6];
    cmd_command c;

    cl_submit(f, &o[0], fx_res(CMD_CREATE, "r1", "one", "k1"));
    cl_submit(f, &o[1], fx_res(CMD_CREATE, "r2", "two", NULL));
    cl_submit(f, &o[2], fx_res(CMD_UPDATE, "r1", "uno", NULL));
    cl_submit(f, &o[3], fx_res(CMD_DELETE, "r2", NULL, NULL));
    cl_submit(f, &o[4], fx_wf_create("w1", "sec", 2));
    c = fx_run_start("run1", "w1", "sec");
    fx_with_key(&c, "k2", 2);
    cl_submit(f, &o[5], c);
    cl_wait_all(o, 6);
    assert_int_equal(o[0].status, 201);
    assert_int_equal(o[3].status, 200);
    assert_int_equal(o[5].status, 202);
    cl_do(f, &o[0], fx_attempt("run1", 0, 1, CMD_OUT_RETRY));
    assert_int_equal(o[0].status, 200);
    cl_do(f, &o[0], fx_attempt("run1", 0, 2, CMD_OUT_SUCCEEDED));
    assert_int_equal(o[0].status, 200);
    c = fx_wf_cmd(CMD_WF_UPDATE, "w1");
    c.fields = CMD_F_NAME | CMD_F_ENABLED;
    c.name = strdup("renamed");
    c.enabled = 0;
    cl_do(f, &o[0], c);
    assert_int_equal(o[0].status, 200);
}

/* A cluster with a log written by a writer (left running, idle), a plain
 * producer for catch-up's metadata calls, an empty state and chain. */
static rd_kafka_t *setup(cl_fixture *f, cmd_state *st, cmd_chain *ch)
{
    cl_start(f, "test_cmd_catchup", 50000);
    fill_log(f);
    assert_int_equal(cmd_state_init(st, CL_PARTITIONS), 0);
    assert_int_equal(cmd_chain_init(ch, CL_PARTITIONS), 0);
    return plain_producer(f);
}

static void test_catchup_equals_writer(void **state)
{
    cl_fixture f;
    cmd_state st;
    cmd_chain ch;
    rd_kafka_t *rk;
    char err[512];
    uint64_t events;

    (void)state;
    rk = setup(&f, &st, &ch);
    cmd_catchup c = {.cfg = &f.cfg, .topics = cl_topics, .st = &st, .chain = &ch};
    if (cmd_catchup_run(&c, rk, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(c.reset, 0);
    assert_true(st.events >= 10);
    /* the writer is idle: its state can be read */
    same_as_writer(cmd_writer_state(f.w), &st);
    heads_match_log(&f, &ch);

    /* again: nothing new is read or applied */
    events = st.events;
    if (cmd_catchup_run(&c, rk, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(st.events, events);
    assert_int_equal(c.reset, 0);

    teardown(&f, &st, &ch, rk);
}

/* A state of another cluster, or past the end of a partition, is discarded:
 * the log is read from offset 0 into a fresh state (and fresh heads). */
static void test_state_of_another_log(void **state)
{
    cl_fixture f;
    cmd_state st;
    cmd_chain ch;
    rd_kafka_t *rk;
    char err[512];

    (void)state;
    rk = setup(&f, &st, &ch);
    cmd_catchup c = {.cfg = &f.cfg, .topics = cl_topics, .st = &st, .chain = &ch, .track = 1};
    if (cmd_catchup_run(&c, rk, err, sizeof err) != 0)
        fail_msg("%s", err);

    snprintf(st.cluster_id, sizeof st.cluster_id, "another-cluster");
    if (cmd_catchup_run(&c, rk, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(c.reset, 1);
    assert_int_equal(st.delta.full, 1); /* the next snapshot replaces the old one */
    same_as_writer(cmd_writer_state(f.w), &st);
    heads_match_log(&f, &ch);

    c.reset = 0;
    st.next_offset[CMD_TOPIC_RESOURCE * CL_PARTITIONS] = 1000000; /* a recreated topic */
    if (cmd_catchup_run(&c, rk, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(c.reset, 1);
    same_as_writer(cmd_writer_state(f.w), &st);
    heads_match_log(&f, &ch);

    teardown(&f, &st, &ch, rk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_catchup_equals_writer),
        cmocka_unit_test(test_state_of_another_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
