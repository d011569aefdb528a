/*
 * test_cmd_answer.c — the writer's answers to a batch (cmd_answer.h): an
 * APPEND with its version and the token of its last event; a FOLLOW as its
 * lead (answered before the lead is freed); a REPLAY with the original answer
 * and, for a workflow create, the workflow's current secret; a NOOP with the
 * aggregate's current position; a refusal with its status, code and attempt
 * details; a failed transaction 503 for what depended on it only; a fenced
 * writer not_writer.
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

#include "cmd_answer.h"
#include "kq_token.h"

static const char *const topics[CMD_TOPICS] = {"t.resource", "t.workflow", "t.run"};

typedef cl_outcome got;

static cmd_item *item(got *g, cmd_command c, cmd_decision_kind kind)
{
    cmd_item *it = cmd_item_new();
    assert_non_null(it);
    memset(g, 0, sizeof *g);
    it->cmd = c;
    it->d.kind = kind;
    it->done = cl_on_done;
    it->arg = g;
    return it;
}

static void token_is(const got *g, const char *topic, int32_t partition, int64_t offset)
{
    char t[64];
    int32_t p;
    int64_t off;
    assert_int_equal(kq_token_parse(g->token, t, sizeof t, &p, &off), 0);
    assert_string_equal(t, topic);
    assert_int_equal(p, partition);
    assert_int_equal(off, offset);
}

/* A state with resource r1 (version 2, last event at offset 1) and workflow w1. */
static void fill(cmd_state *st)
{
    int64_t off = 0;
    cmd_command c;

    assert_int_equal(cmd_state_init(st, 1), 0);
    fx_dc(st, fx_res(CMD_CREATE, "r1", "one", NULL), &off);
    fx_dc(st, fx_res(CMD_UPDATE, "r1", "two", NULL), &off);
    c = fx_wf_create("w1", "s3cret", 1);
    fx_dc(st, c, &off);
}

static void test_every_kind(void **state)
{
    cmd_state st;
    cmd_item *items[6];
    got g[6];
    cmd_command c;

    (void)state;
    fill(&st);
    /* 0: a committed create at (0, 7) */
    items[0] = item(&g[0], fx_res(CMD_CREATE, "r2", "x", NULL), CMD_D_APPEND);
    items[0]->d.version = 1;
    items[0]->partition = 0;
    items[0]->offset = 7;
    /* 1: the same key again in the batch: follows 0 */
    items[1] = item(&g[1], fx_res(CMD_CREATE, "r2", "x", NULL), CMD_D_FOLLOW);
    items[1]->d.follow = 0;
    /* 2: a replay of a workflow create: the workflow's current secret */
    c = fx_wf_create("w1", "ignored", 1);
    items[2] = item(&g[2], c, CMD_D_REPLAY);
    items[2]->d.idem.status = 201;
    snprintf(items[2]->d.idem.id, sizeof items[2]->d.idem.id, "w1");
    items[2]->d.idem.version = 1;
    items[2]->d.idem.partition = 0;
    items[2]->d.idem.offset = 2;
    items[2]->d.idem.aggregate = EV_AGG_WORKFLOW;
    /* 3: a no-op update of r1: its current version and position */
    items[3] = item(&g[3], fx_res(CMD_UPDATE, "r1", "two", NULL), CMD_D_NOOP);
    /* 4: a refusal with the attempt details */
    items[4] = item(&g[4], fx_attempt("run", 1, 3, CMD_OUT_RETRY), CMD_D_ERROR);
    items[4]->d.status = 409;
    items[4]->d.code = "attempt_gap";
    snprintf(items[4]->d.message, sizeof items[4]->d.message, "gap");
    items[4]->d.has_attempt_detail = 1;
    items[4]->d.current_step = 1;
    items[4]->d.recorded_attempts = 1;
    /* 5: a follow that names itself (cannot happen): 503 */
    items[5] = item(&g[5], fx_res(CMD_CREATE, "r9", "x", NULL), CMD_D_FOLLOW);
    items[5]->d.follow = 5;

    cmd_answer_batch(topics, &st, items, 6, 0, NULL, 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(atomic_load(&g[i].done), 1);
    assert_int_equal(g[0].status, 201);
    assert_int_equal(g[0].version, 1);
    assert_string_equal(g[0].id, "r2");
    token_is(&g[0], "t.resource", 0, 7);
    assert_false(g[0].has_secret);
    assert_int_equal(g[1].status, 201);
    assert_string_equal(g[1].id, "r2");
    assert_string_equal(g[1].token, g[0].token);
    assert_int_equal(g[2].status, 201);
    assert_string_equal(g[2].id, "w1");
    token_is(&g[2], "t.workflow", 0, 2);
    assert_true(g[2].has_secret);
    assert_string_equal(g[2].secret, "s3cret");
    assert_int_equal(g[3].status, 200);
    assert_int_equal(g[3].version, 2);
    token_is(&g[3], "t.resource", 0, 1);
    assert_int_equal(g[4].status, 409);
    assert_string_equal(g[4].code, "attempt_gap");
    assert_true(g[4].has_attempt_detail);
    assert_int_equal(g[4].current_step, 1);
    assert_int_equal(g[4].recorded_attempts, 1);
    assert_int_equal(g[5].status, 503);
    assert_string_equal(g[5].code, "unavailable");
    cmd_state_free(&st);
}

/* A failed transaction: APPEND, FOLLOW and decisions that depended on pending
 * events get 503 + Retry-After; a refusal of its own and a replay do not. */
static void test_failed_and_fenced(void **state)
{
    cmd_state st;
    cmd_item *items[5];
    got g[5];

    (void)state;
    fill(&st);
    items[0] = item(&g[0], fx_res(CMD_CREATE, "r2", "x", NULL), CMD_D_APPEND);
    items[1] = item(&g[1], fx_res(CMD_CREATE, "r2", "x", NULL), CMD_D_FOLLOW);
    items[2] = item(&g[2], fx_res(CMD_CREATE, "r2", "y", NULL), CMD_D_ERROR);
    items[2]->d.status = 409;
    items[2]->d.code = "conflict";
    items[2]->d.pending = 1; /* only the failed create made it a conflict */
    items[3] = item(&g[3], fx_res(CMD_CREATE, "r1", "y", NULL), CMD_D_ERROR);
    items[3]->d.status = 409;
    items[3]->d.code = "conflict";
    items[3]->d.current_version = 2;
    items[4] = item(&g[4], fx_res(CMD_UPDATE, "r1", "two", NULL), CMD_D_NOOP);
    cmd_answer_batch(topics, &st, items, 5, 1, NULL, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(g[i].status, 503);
        assert_string_equal(g[i].code, "unavailable");
        assert_int_equal(g[i].retry_after, 1);
    }
    assert_int_equal(g[3].status, 409);
    assert_string_equal(g[3].code, "conflict");
    assert_int_equal(g[4].status, 200);

    items[0] = item(&g[0], fx_res(CMD_CREATE, "r2", "x", NULL), CMD_D_APPEND);
    cmd_answer_batch(topics, &st, items, 1, 1, NULL, 1);
    assert_int_equal(g[0].status, 503);
    assert_string_equal(g[0].code, "not_writer");
    assert_int_equal(g[0].retry_after, 5);

    /* the writer's reason for the failure is the answer's code */
    items[0] = item(&g[0], fx_res(CMD_CREATE, "r2", "x", NULL), CMD_D_APPEND);
    items[1] = item(&g[1], fx_res(CMD_CREATE, "r2", "x", NULL), CMD_D_FOLLOW);
    cmd_answer_batch(topics, &st, items, 2, 1, "not_enough_replicas", 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(g[i].status, 503);
        assert_string_equal(g[i].code, "not_enough_replicas");
        assert_int_equal(g[i].retry_after, 1);
    }

    items[0] = item(&g[0], fx_res(CMD_CREATE, "r2", "x", NULL), CMD_D_APPEND);
    cmd_answer_unavailable(items[0], 0, "Kafka is unavailable; retry");
    assert_int_equal(g[0].status, 503);
    assert_string_equal(g[0].code, "unavailable");
    cmd_state_free(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind),
        cmocka_unit_test(test_failed_and_fenced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
