/*
 * test_cmd_producer.c — the writer's transactional producers (cmd_producer.h)
 * on librdkafka's mock cluster: the transactional ids ("<prefix>.commands",
 * then ".1", ".2"; or the one given), open creates and initialises every one
 * of them, the rotation goes through all in turn and back to the first, a
 * delivery report lands in the message's slot (partition, offset), drop
 * leaves none.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "test_cmd_cluster.h"

#include "cmd_producer.h"

static void test_txn_ids(void **state)
{
    cl_fixture f;
    cmd_producers p;
    char id[300];

    (void)state;
    memset(&f, 0, sizeof f);
    cl_config(&f);
    cmd_producers_init(&p, &f.cfg, cl_topics, NULL, 1);
    cmd_producers_txn_id(&p, 0, id, sizeof id);
    assert_string_equal(id, "u.commands");
    cmd_producers_txn_id(&p, 2, id, sizeof id);
    assert_string_equal(id, "u.commands.2");
    cmd_producers_init(&p, &f.cfg, cl_topics, "other.id", 1);
    cmd_producers_txn_id(&p, 0, id, sizeof id);
    assert_string_equal(id, "other.id");
    cmd_producers_txn_id(&p, 1, id, sizeof id);
    assert_string_equal(id, "other.id.1");
    assert_null(p.cur);
    cmd_producers_next(&p); /* nothing open: stays closed */
    assert_null(p.cur);
}

static void test_open_rotate_deliver(void **state)
{
    cl_fixture f;
    cmd_producers p;
    cmd_item_event slot;
    char err[512];
    rd_kafka_t *seen[CMD_WRITER_PRODUCERS];
    int needs_abort = 0;

    (void)state;
    cl_cluster_start(&f, "test_cmd_producer", 0);
    cmd_producers_init(&p, &f.cfg, cl_topics, NULL, 1);
    if (cmd_producers_open(&p, err, sizeof err) != 0)
        fail_msg("%s", err);
    for (int k = 0; k < CMD_WRITER_PRODUCERS; k++) {
        assert_non_null(p.rk[k]);
        assert_int_equal(p.k, k);
        assert_ptr_equal(p.cur, p.rk[k]);
        seen[k] = p.cur;
        for (int j = 0; j < k; j++)
            assert_ptr_not_equal(seen[j], seen[k]);
        cmd_producers_next(&p);
    }
    assert_int_equal(p.k, 0); /* back to the first */
    assert_ptr_equal(p.cur, seen[0]);

    /* one transaction on the current producer: the report fills the slot */
    memset(&slot, 0, sizeof slot);
    slot.offset = -1;
    assert_int_equal(kq_kafka_txn_begin(p.cur, err, sizeof err), 0);
    assert_int_equal(kq_kafka_produce_event(p.cur, cl_topics[CMD_TOPIC_RUN], 4, "k", 1, "v", 1,
                                            "RunStarted", &slot, err, sizeof err),
                     0);
    assert_int_equal(kq_kafka_error_take(rd_kafka_commit_transaction(p.cur, 5000), "commit",
                                         &needs_abort, err, sizeof err),
                     0);
    for (int i = 0; i < 100 && !slot.delivered; i++)
        rd_kafka_poll(p.cur, 10);
    assert_int_equal(slot.delivered, 1);
    assert_int_equal(slot.dr_err, 0);
    assert_int_equal(slot.partition, 4);
    assert_int_equal(slot.offset, 0);

    cmd_producers_drop(&p);
    assert_null(p.cur);
    for (int k = 0; k < CMD_WRITER_PRODUCERS; k++)
        assert_null(p.rk[k]);
    cmd_producers_drop(&p); /* twice is harmless */
    cl_stop(&f);            /* no writer: only the cluster */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_txn_ids),
        cmocka_unit_test(test_open_rotate_deliver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
