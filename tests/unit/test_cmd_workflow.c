/*
 * test_cmd_workflow.c — the workflow aggregate on the command side
 * (cmd_workflow.c through cmd_aggregate.h): every decision and refusal of
 * workflow create/update/delete, multi-event decisions with consecutive
 * versions, canonical steps (a PUT with the same actions is a no-op), the
 * batch overlay across workflows and runs, Idempotency-Keys of workflow and
 * run commands. Events are committed through the production path
 * (test_cmd_fixture.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_state.h"
#include "ev_codec.h"
#include "kq_err.h"
#include "test_cmd_fixture.h"

static void test_workflow_decisions(void **state)
{
    cmd_state st;
    cmd_command c;
    cmd_decision d;
    const cmd_workflow *w;
    int64_t off = 0;
    uint8_t *steps_before;
    size_t steps_len;

    (void)state;
    assert_int_equal(cmd_state_init(&st, 4), 0);
    d = fx_dc(&st, fx_wf_create("w1", "sec-1", 2), &off);
    assert_int_equal(d.kind, CMD_D_APPEND);
    assert_int_equal(d.nevents, 1);
    assert_int_equal(d.events[0], EV_WORKFLOW_CREATED);
    assert_int_equal(d.version, 1);
    w = cmd_state_workflow(&st, "w1");
    assert_non_null(w);
    assert_string_equal(w->name, "wf");
    assert_string_equal(w->secret, "sec-1");
    assert_true(w->enabled);
    assert_int_equal(w->step_count, 2);
    assert_int_equal(w->offset, 0);
    assert_int_equal(st.next_offset[CMD_TOPIC_WORKFLOW * 4 + 0], 1);
    assert_int_equal(st.next_offset[0], 0); /* the resource topic did not move */

    /* create again: 409 conflict with the version */
    d = fx_dc(&st, fx_wf_create("w1", "x", 1), &off);
    fx_expect_error(d, 409, "conflict");
    assert_int_equal(d.current_version, 1);
    /* update / delete of an unknown workflow: 404 */
    c = fx_wf_cmd(CMD_WF_UPDATE, "nope");
    c.fields = CMD_F_NAME;
    c.name = strdup("n");
    fx_expect_error(fx_dc(&st, c, &off), 404, "not_found");
    fx_expect_error(fx_dc(&st, fx_wf_cmd(CMD_WF_DELETE, "nope"), &off), 404, "not_found");
    /* If-Match with another version: 412 */
    c = fx_wf_cmd(CMD_WF_UPDATE, "w1");
    c.fields = CMD_F_NAME;
    c.name = strdup("n");
    c.has_if_match = 1;
    c.if_match = 5;
    d = fx_dc(&st, c, &off);
    fx_expect_error(d, 412, "precondition_failed");
    assert_int_equal(d.current_version, 1);

    /* name + enabled: WorkflowUpdated then WorkflowDisabled, versions 2 and 3 */
    c = fx_wf_cmd(CMD_WF_UPDATE, "w1");
    c.fields = CMD_F_NAME | CMD_F_ENABLED;
    c.name = strdup("renamed");
    c.enabled = 0;
    c.has_if_match = 1;
    c.if_match = 1;
    d = fx_dc(&st, c, &off);
    assert_int_equal(d.kind, CMD_D_APPEND);
    assert_int_equal(d.nevents, 2);
    assert_int_equal(d.events[0], EV_WORKFLOW_UPDATED);
    assert_int_equal(d.events[1], EV_WORKFLOW_DISABLED);
    assert_int_equal(d.version, 3);
    assert_int_equal(d.changed, CMD_F_NAME | CMD_F_ENABLED);
    w = cmd_state_workflow(&st, "w1");
    assert_int_equal(w->version, 3);
    assert_string_equal(w->name, "renamed");
    assert_false(w->enabled);

    /* the same values again, and the same steps in other bytes: no-op */
    c = fx_wf_cmd(CMD_WF_UPDATE, "w1");
    c.fields = CMD_F_NAME | CMD_F_ENABLED | CMD_F_SECRET;
    c.name = strdup("renamed");
    c.secret = strdup("sec-1");
    fx_set_steps(&c, 2, "a", "another-id-so-other-bytes");
    d = fx_dc(&st, c, &off);
    assert_int_equal(d.kind, CMD_D_NOOP);
    assert_int_equal(d.version, 3);

    /* enabled only: one WorkflowEnabled */
    c = fx_wf_cmd(CMD_WF_UPDATE, "w1");
    c.fields = CMD_F_ENABLED;
    c.enabled = 1;
    d = fx_dc(&st, c, &off);
    assert_int_equal(d.nevents, 1);
    assert_int_equal(d.events[0], EV_WORKFLOW_ENABLED);
    assert_int_equal(d.version, 4);
    assert_true(cmd_state_workflow(&st, "w1")->enabled);

    /* other steps: WorkflowUpdated with steps only; the stored steps change */
    w = cmd_state_workflow(&st, "w1");
    steps_len = w->steps_len;
    steps_before = malloc(steps_len);
    memcpy(steps_before, w->steps, steps_len);
    c = fx_wf_cmd(CMD_WF_UPDATE, "w1");
    fx_set_steps(&c, 3, "b", "api");
    d = fx_dc(&st, c, &off);
    assert_int_equal(d.changed, CMD_F_STEPS);
    assert_int_equal(d.version, 5);
    w = cmd_state_workflow(&st, "w1");
    assert_int_equal(w->step_count, 3);
    assert_false(w->steps_len == steps_len && memcmp(w->steps, steps_before, steps_len) == 0);
    free(steps_before);

    /* a new secret (rotate): WorkflowUpdated with the secret */
    c = fx_wf_cmd(CMD_WF_UPDATE, "w1");
    c.fields = CMD_F_SECRET;
    c.secret = strdup("sec-2");
    c.secret_generated = 1;
    d = fx_dc(&st, c, &off);
    assert_int_equal(d.changed, CMD_F_SECRET);
    assert_string_equal(cmd_state_workflow(&st, "w1")->secret, "sec-2");

    /* unreadable steps: 400 */
    c = fx_wf_cmd(CMD_WF_UPDATE, "w1");
    c.fields = CMD_F_STEPS;
    c.steps_env = malloc(16);
    memset(c.steps_env, 0x5a, 16);
    c.steps_env_len = 16;
    fx_expect_error(fx_dc(&st, c, &off), 400, "invalid_steps");

    /* delete; then update/delete 404 and create 409 */
    d = fx_dc(&st, fx_wf_cmd(CMD_WF_DELETE, "w1"), &off);
    assert_int_equal(d.events[0], EV_WORKFLOW_DELETED);
    assert_int_equal(d.version, 7);
    assert_true(cmd_state_workflow(&st, "w1")->deleted);
    fx_expect_error(fx_dc(&st, fx_wf_cmd(CMD_WF_DELETE, "w1"), &off), 404, "not_found");
    fx_expect_error(fx_dc(&st, fx_wf_create("w1", "s", 1), &off), 409, "conflict");
    assert_int_equal(st.events, 7);

    /* no actions at all: an empty step list, and a run of it has no step to attempt */
    c = fx_wf_create("w0", "s", 0);
    free(c.steps_env);
    c.steps_env = NULL;
    c.steps_env_len = 0;
    c.fields &= ~CMD_F_STEPS;
    {
        cmd_batch b;
        assert_int_equal(cmd_batch_init(&b), 0);
        assert_int_equal(cmd_batch_decide(&st, &b, &c, 0, &d), 0);
        assert_int_equal(d.kind, CMD_D_APPEND);
        cmd_batch_free(&b);
    }
    /* committed with an empty list as the writer encodes it */
    fx_set_steps(&c, 0, "a", "api");
    fx_apply_decision(&st, &c, &d, &off);
    cmd_command_clear(&c);
    w = cmd_state_workflow(&st, "w0");
    assert_non_null(w->steps);
    assert_int_equal(w->step_count, 0);
    c = fx_run_start("r0", "w0", NULL);
    d = fx_decide_commit(&st, &c, &off);
    assert_int_equal(d.step_count, 0);
    assert_non_null(d.wf_steps);
    cmd_decision_clear(&d);
    cmd_command_clear(&c);
    fx_expect_error(fx_dc(&st, fx_attempt("r0", 0, 1, CMD_OUT_RETRY), &off), 409, "step_mismatch");
    cmd_state_free(&st);
}

static void test_overlay(void **state)
{
    cmd_state st;
    cmd_batch b;
    cmd_command c[8];
    cmd_decision d[8];
    int64_t off = 0;

    (void)state;
    assert_int_equal(cmd_state_init(&st, 4), 0);
    assert_int_equal(cmd_batch_init(&b), 0);
    c[0] = fx_wf_create("w1", "s", 1);
    c[1] = fx_run_start("r1", "w1", "s");         /* sees the pending workflow */
    c[2] = fx_attempt("r1", 0, 1, CMD_OUT_RETRY); /* sees the pending run */
    c[3] = fx_attempt("r1", 0, 1, CMD_OUT_RETRY); /* the repeat, against the overlay */
    c[4] = fx_wf_cmd(CMD_WF_UPDATE, "w1");
    c[4].fields = CMD_F_NAME;
    c[4].name = strdup("v2");
    c[5] = fx_run_start("r2", "w1", NULL); /* RunStarted copies the pending version 2 */
    c[6] = fx_wf_cmd(CMD_WF_UPDATE, "w1");
    c[6].fields = CMD_F_ENABLED;
    c[6].enabled = 0;
    c[7] = fx_run_start("r3", "w1", NULL); /* disabled in the batch */
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(cmd_batch_decide(&st, &b, &c[i], i, &d[i]), 0);
    assert_int_equal(d[0].kind, CMD_D_APPEND);
    assert_int_equal(d[0].pending, 0);
    assert_int_equal(d[1].kind, CMD_D_APPEND);
    assert_int_equal(d[1].pending, 1);
    assert_int_equal(d[1].wf_version, 1);
    assert_int_equal(d[1].step_count, 1);
    assert_int_equal(d[2].kind, CMD_D_APPEND);
    assert_int_equal(d[2].version, 2);
    assert_int_equal(d[2].pending, 1);
    fx_expect_error(d[3], 409, "attempt_recorded");
    assert_int_equal(d[3].pending, 1);
    assert_int_equal(d[4].version, 2);
    assert_int_equal(d[5].kind, CMD_D_APPEND);
    assert_int_equal(d[5].wf_version, 2);
    assert_int_equal(d[6].version, 3);
    fx_expect_error(d[7], 409, "workflow_disabled");
    assert_int_equal(d[7].pending, 1);
    /* nothing in the committed state until applied */
    assert_null(cmd_state_workflow(&st, "w1"));
    assert_null(cmd_state_run(&st, "r1"));
    for (size_t i = 0; i < 8; i++)
        if (d[i].kind == CMD_D_APPEND)
            fx_apply_decision(&st, &c[i], &d[i], &off);
    assert_int_equal(cmd_state_workflow(&st, "w1")->version, 3);
    assert_int_equal(cmd_state_run(&st, "r1")->attempts, 1);
    assert_int_equal(cmd_state_run(&st, "r2")->version, 1);
    assert_null(cmd_state_run(&st, "r3"));
    /* after reset, a new batch sees the committed state only */
    cmd_batch_reset(&b);
    for (size_t i = 0; i < 8; i++) {
        cmd_decision_clear(&d[i]);
        cmd_command_clear(&c[i]);
    }
    c[0] = fx_attempt("r1", 0, 1, CMD_OUT_RETRY);
    assert_int_equal(cmd_batch_decide(&st, &b, &c[0], 0, &d[0]), 0);
    fx_expect_error(d[0], 409, "attempt_recorded");
    assert_int_equal(d[0].pending, 0);
    cmd_command_clear(&c[0]);
    cmd_batch_free(&b);
    cmd_state_free(&st);
}

static void test_idempotency(void **state)
{
    cmd_state st;
    cmd_command c;
    cmd_decision d;
    int64_t off = 0;

    (void)state;
    assert_int_equal(cmd_state_init(&st, 4), 0);
    c = fx_wf_create("w1", "s", 2);
    fx_with_key(&c, "k-wf", 1);
    fx_dc(&st, c, &off);
    c = fx_wf_create("w1", "s", 2);
    fx_with_key(&c, "k-wf", 1);
    d = fx_dc(&st, c, &off);
    assert_int_equal(d.kind, CMD_D_REPLAY);
    assert_int_equal(d.idem.status, 201);
    assert_int_equal(d.idem.aggregate, EV_AGG_WORKFLOW);
    assert_string_equal(d.idem.id, "w1");
    assert_int_equal(d.idem.version, 1);
    c = fx_wf_create("w2", "s", 2);
    fx_with_key(&c, "k-wf", 2);
    fx_expect_error(fx_dc(&st, c, &off), 422, "idempotency_key_reused");

    /* a retried trigger answers the same run id and appends nothing */
    c = fx_run_start("run-a", "w1", NULL);
    fx_with_key(&c, "k-run", 3);
    fx_dc(&st, c, &off);
    c = fx_run_start("run-b", "w1", NULL); /* the API made a new run id for the retry */
    fx_with_key(&c, "k-run", 3);
    d = fx_dc(&st, c, &off);
    assert_int_equal(d.kind, CMD_D_REPLAY);
    assert_int_equal(d.idem.status, 202);
    assert_string_equal(d.idem.id, "run-a");
    assert_int_equal(d.idem.aggregate, EV_AGG_RUN);
    assert_null(cmd_state_run(&st, "run-b"));

    /* a multi-event command: the key answers the last event's version */
    c = fx_attempt("run-a", 0, 1, CMD_OUT_SUCCEEDED);
    fx_with_key(&c, "k-att", 4);
    fx_dc(&st, c, &off);
    c = fx_attempt("run-a", 0, 1, CMD_OUT_SUCCEEDED);
    fx_with_key(&c, "k-att", 4);
    d = fx_dc(&st, c, &off);
    assert_int_equal(d.kind, CMD_D_REPLAY);
    assert_int_equal(d.idem.status, 200);
    assert_int_equal(d.idem.version, 3);

    /* in one batch: the second use follows the first */
    {
        cmd_batch b;
        cmd_command c2[2];
        cmd_decision d2[2];
        assert_int_equal(cmd_batch_init(&b), 0);
        c2[0] = fx_run_start("run-c", "w1", NULL);
        fx_with_key(&c2[0], "k-c", 5);
        c2[1] = fx_run_start("run-d", "w1", NULL);
        fx_with_key(&c2[1], "k-c", 5);
        assert_int_equal(cmd_batch_decide(&st, &b, &c2[0], 0, &d2[0]), 0);
        assert_int_equal(cmd_batch_decide(&st, &b, &c2[1], 1, &d2[1]), 0);
        assert_int_equal(d2[0].kind, CMD_D_APPEND);
        assert_int_equal(d2[1].kind, CMD_D_FOLLOW);
        assert_int_equal(d2[1].follow, 0);
        for (int i = 0; i < 2; i++) {
            cmd_decision_clear(&d2[i]);
            cmd_command_clear(&c2[i]);
        }
        cmd_batch_free(&b);
    }
    cmd_state_free(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workflow_decisions),
        cmocka_unit_test(test_overlay),
        cmocka_unit_test(test_idempotency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
