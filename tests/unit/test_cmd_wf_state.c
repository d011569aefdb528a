/*
 * test_cmd_wf_state.c — the command-side state of workflows and runs (issue
 * #6): every decision and refusal of CONTRACT6 (workflow create/update/delete,
 * run start incl. webhook secrets, run attempts), multi-event decisions with
 * consecutive versions, the batch overlay across workflows and runs,
 * Idempotency-Keys of the new commands, applying envelopes from the log
 * (topics, gaps, re-reads), and the snapshot format v4 (workflows, runs,
 * per-topic offsets and heads; v3 read as none; incremental 'w'/'n' records).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lmdb.h>

#include "cmd_snapshot.h"
#include "cmd_state.h"
#include "ev_codec.h"
#include "kq_err.h"

static const char *const TOPICS[CMD_TOPICS] = {"t.resource", "t.workflow", "t.run"};

/* ------------------------------------------------------------ helpers */

/* A steps envelope of `n` HTTP steps with urls http://h/<tag><i>, under
 * aggregate id `agg` (the bytes differ with it; the steps do not). */
static void set_steps(cmd_command *c, int n, const char *tag, const char *agg)
{
    ev_fb_builder fb;
    ev_envelope e;
    ev_step steps[8];
    char urls[8][64], err[256];
    const uint8_t *buf;
    size_t len;

    memset(steps, 0, sizeof steps);
    for (int i = 0; i < n; i++) {
        snprintf(urls[i], sizeof urls[i], "http://h/%s%d", tag, i);
        steps[i].action_type = EV_ACTION_HTTP;
        steps[i].action.http.url = ev_str_c(urls[i]);
        steps[i].action.http.method = EV_HTTP_POST;
    }
    ev_fb_builder_init(&fb);
    ev_envelope_init(&e, EV_WORKFLOW_UPDATED);
    e.aggregate_id = ev_str_c(agg);
    e.version = 1;
    e.payload.workflow_updated.steps = ev_step_list_of(steps, (uint32_t)n);
    if (ev_envelope_encode(&fb, &e, err, sizeof err) != 0)
        fail_msg("%s", err);
    buf = ev_fb_builder_data(&fb, &len);
    free(c->steps_env);
    c->steps_env = malloc(len);
    assert_non_null(c->steps_env);
    memcpy(c->steps_env, buf, len);
    c->steps_env_len = len;
    c->fields |= CMD_F_STEPS;
    ev_fb_builder_free(&fb);
}

static cmd_command wf_create(const char *id, const char *secret, int nsteps)
{
    cmd_command c;
    memset(&c, 0, sizeof c);
    c.kind = CMD_WF_CREATE;
    snprintf(c.id, sizeof c.id, "%s", id);
    c.fields = CMD_F_NAME | CMD_F_ENABLED | CMD_F_SECRET;
    c.name = strdup("wf");
    c.enabled = 1;
    c.secret = strdup(secret);
    set_steps(&c, nsteps, "a", "api");
    return c;
}

static cmd_command wf_cmd(cmd_kind kind, const char *id)
{
    cmd_command c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    snprintf(c.id, sizeof c.id, "%s", id);
    return c;
}

static cmd_command run_start(const char *run, const char *wf, const char *hook)
{
    cmd_command c;
    memset(&c, 0, sizeof c);
    c.kind = CMD_RUN_START;
    snprintf(c.id, sizeof c.id, "%s", run);
    snprintf(c.workflow_id, sizeof c.workflow_id, "%s", wf);
    c.trigger = hook ? EV_TRIGGER_WEBHOOK : EV_TRIGGER_MANUAL;
    c.payload_json = strdup("{}");
    if (hook != NULL) {
        c.has_hook_secret = 1;
        snprintf(c.hook_secret, sizeof c.hook_secret, "%s", hook);
    }
    return c;
}

static cmd_command attempt(const char *run, uint32_t step, uint32_t n, cmd_outcome out)
{
    cmd_command c;
    memset(&c, 0, sizeof c);
    c.kind = CMD_RUN_ATTEMPT;
    snprintf(c.id, sizeof c.id, "%s", run);
    c.step = step;
    c.attempt = n;
    c.outcome = (int)out;
    c.duration_ms = 3;
    c.has_next_delay_ms = out == CMD_OUT_RETRY;
    c.next_delay_ms = 100;
    return c;
}

/*
 * The events of an APPEND decision as the writer encodes them (the fields the
 * state reads), applied through the decode path at offsets from *offset on.
 */
static void apply_decision(cmd_state *st, const cmd_command *c, const cmd_decision *d,
                           int64_t *offset)
{
    int topic = cmd_kind_topic(c->kind);
    char err[256];

    assert_int_equal(d->kind, CMD_D_APPEND);
    for (int i = 0; i < d->nevents; i++) {
        ev_fb_builder fb;
        ev_envelope e, se, back;
        ev_step_list steps;
        const uint8_t *buf;
        uint8_t *copy;
        size_t len;

        ev_envelope_init(&e, d->events[i]);
        e.aggregate_id = ev_str_c(c->id);
        e.version = d->version - d->nevents + 1 + i;
        if (c->idem_key[0]) {
            e.command_id = ev_str_c(c->idem_key);
            e.command_hash.ptr = c->hash;
            e.command_hash.len = CMD_HASH_LEN;
        }
        switch (d->events[i]) {
        case EV_WORKFLOW_CREATED:
            e.payload.workflow_created.name = ev_str_c(c->name);
            e.payload.workflow_created.enabled = c->enabled;
            e.payload.workflow_created.webhook_secret = ev_str_c(c->secret);
            assert_int_equal(
                cmd_steps_view(c->steps_env, c->steps_env_len, &se, &steps, err, sizeof err), 0);
            e.payload.workflow_created.steps = steps;
            break;
        case EV_WORKFLOW_UPDATED:
            if (d->changed & CMD_F_NAME)
                e.payload.workflow_updated.name = ev_str_c(c->name);
            if (d->changed & CMD_F_SECRET)
                e.payload.workflow_updated.webhook_secret = ev_str_c(c->secret);
            if (d->changed & CMD_F_STEPS) {
                assert_int_equal(
                    cmd_steps_view(c->steps_env, c->steps_env_len, &se, &steps, err, sizeof err),
                    0);
                e.payload.workflow_updated.steps = steps;
            }
            break;
        case EV_RUN_STARTED:
            e.payload.run_started.workflow_id = ev_str_c(c->workflow_id);
            e.payload.run_started.workflow_version = d->wf_version;
            e.payload.run_started.step_count = d->step_count;
            if (d->wf_steps != NULL) {
                assert_int_equal(
                    cmd_steps_view(d->wf_steps, d->wf_steps_len, &se, &steps, err, sizeof err), 0);
                e.payload.run_started.steps = steps;
            }
            break;
        case EV_STEP_ATTEMPTED:
            e.payload.step_attempted.step = c->step;
            e.payload.step_attempted.attempt = c->attempt;
            break;
        case EV_STEP_SUCCEEDED:
            e.payload.step_succeeded.step = c->step;
            e.payload.step_succeeded.attempt = c->attempt;
            break;
        case EV_STEP_FAILED:
            e.payload.step_failed.step = c->step;
            e.payload.step_failed.attempt = c->attempt;
            break;
        case EV_RUN_FAILED:
            e.payload.run_failed.step = c->step;
            break;
        default:
            break;
        }
        ev_fb_builder_init(&fb);
        if (ev_envelope_encode(&fb, &e, err, sizeof err) != 0)
            fail_msg("%s", err);
        buf = ev_fb_builder_data(&fb, &len);
        copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, buf, len);
        ev_fb_builder_free(&fb);
        assert_int_equal(ev_envelope_decode(copy, len, &back, err, sizeof err), 0);
        if (cmd_state_apply_envelope(st, topic, &back, 0, (*offset)++, err, sizeof err) != 0)
            fail_msg("apply: %s", err);
        free(copy);
    }
}

/* Decide alone in a batch; APPEND is applied. */
static cmd_decision decide_commit(cmd_state *st, cmd_command *c, int64_t *offset)
{
    cmd_batch b;
    cmd_decision d;

    assert_int_equal(cmd_batch_init(&b), 0);
    assert_int_equal(cmd_batch_decide(st, &b, c, 0, &d), 0);
    if (d.kind == CMD_D_APPEND)
        apply_decision(st, c, &d, offset);
    cmd_batch_free(&b);
    return d;
}

/* decide_commit, then free what the decision and command own. */
static cmd_decision dc(cmd_state *st, cmd_command c, int64_t *offset)
{
    cmd_decision d = decide_commit(st, &c, offset);
    cmd_decision_clear(&d);
    cmd_command_clear(&c);
    return d;
}

static void expect_error(cmd_decision d, unsigned status, const char *code)
{
    assert_int_equal(d.kind, CMD_D_ERROR);
    assert_int_equal(d.status, status);
    assert_string_equal(d.code, code);
}

/* ------------------------------------------------------------ workflows */

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
    d = dc(&st, wf_create("w1", "sec-1", 2), &off);
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
    d = dc(&st, wf_create("w1", "x", 1), &off);
    expect_error(d, 409, "conflict");
    assert_int_equal(d.current_version, 1);
    /* update / delete of an unknown workflow: 404 */
    c = wf_cmd(CMD_WF_UPDATE, "nope");
    c.fields = CMD_F_NAME;
    c.name = strdup("n");
    expect_error(dc(&st, c, &off), 404, "not_found");
    expect_error(dc(&st, wf_cmd(CMD_WF_DELETE, "nope"), &off), 404, "not_found");
    /* If-Match with another version: 412 */
    c = wf_cmd(CMD_WF_UPDATE, "w1");
    c.fields = CMD_F_NAME;
    c.name = strdup("n");
    c.has_if_match = 1;
    c.if_match = 5;
    d = dc(&st, c, &off);
    expect_error(d, 412, "precondition_failed");
    assert_int_equal(d.current_version, 1);

    /* name + enabled: WorkflowUpdated then WorkflowDisabled, versions 2 and 3 */
    c = wf_cmd(CMD_WF_UPDATE, "w1");
    c.fields = CMD_F_NAME | CMD_F_ENABLED;
    c.name = strdup("renamed");
    c.enabled = 0;
    c.has_if_match = 1;
    c.if_match = 1;
    d = dc(&st, c, &off);
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
    c = wf_cmd(CMD_WF_UPDATE, "w1");
    c.fields = CMD_F_NAME | CMD_F_ENABLED | CMD_F_SECRET;
    c.name = strdup("renamed");
    c.secret = strdup("sec-1");
    set_steps(&c, 2, "a", "another-id-so-other-bytes");
    d = dc(&st, c, &off);
    assert_int_equal(d.kind, CMD_D_NOOP);
    assert_int_equal(d.version, 3);

    /* enabled only: one WorkflowEnabled */
    c = wf_cmd(CMD_WF_UPDATE, "w1");
    c.fields = CMD_F_ENABLED;
    c.enabled = 1;
    d = dc(&st, c, &off);
    assert_int_equal(d.nevents, 1);
    assert_int_equal(d.events[0], EV_WORKFLOW_ENABLED);
    assert_int_equal(d.version, 4);
    assert_true(cmd_state_workflow(&st, "w1")->enabled);

    /* other steps: WorkflowUpdated with steps only; the stored steps change */
    w = cmd_state_workflow(&st, "w1");
    steps_len = w->steps_len;
    steps_before = malloc(steps_len);
    memcpy(steps_before, w->steps, steps_len);
    c = wf_cmd(CMD_WF_UPDATE, "w1");
    set_steps(&c, 3, "b", "api");
    d = dc(&st, c, &off);
    assert_int_equal(d.changed, CMD_F_STEPS);
    assert_int_equal(d.version, 5);
    w = cmd_state_workflow(&st, "w1");
    assert_int_equal(w->step_count, 3);
    assert_false(w->steps_len == steps_len && memcmp(w->steps, steps_before, steps_len) == 0);
    free(steps_before);

    /* a new secret (rotate): WorkflowUpdated with the secret */
    c = wf_cmd(CMD_WF_UPDATE, "w1");
    c.fields = CMD_F_SECRET;
    c.secret = strdup("sec-2");
    c.secret_generated = 1;
    d = dc(&st, c, &off);
    assert_int_equal(d.changed, CMD_F_SECRET);
    assert_string_equal(cmd_state_workflow(&st, "w1")->secret, "sec-2");

    /* unreadable steps: 400 */
    c = wf_cmd(CMD_WF_UPDATE, "w1");
    c.fields = CMD_F_STEPS;
    c.steps_env = malloc(16);
    memset(c.steps_env, 0x5a, 16);
    c.steps_env_len = 16;
    expect_error(dc(&st, c, &off), 400, "invalid_steps");

    /* delete; then update/delete 404 and create 409 */
    d = dc(&st, wf_cmd(CMD_WF_DELETE, "w1"), &off);
    assert_int_equal(d.events[0], EV_WORKFLOW_DELETED);
    assert_int_equal(d.version, 7);
    assert_true(cmd_state_workflow(&st, "w1")->deleted);
    expect_error(dc(&st, wf_cmd(CMD_WF_DELETE, "w1"), &off), 404, "not_found");
    expect_error(dc(&st, wf_create("w1", "s", 1), &off), 409, "conflict");
    assert_int_equal(st.events, 7);

    /* no actions at all: an empty step list, and a run of it has no step to attempt */
    c = wf_create("w0", "s", 0);
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
    set_steps(&c, 0, "a", "api");
    apply_decision(&st, &c, &d, &off);
    cmd_command_clear(&c);
    w = cmd_state_workflow(&st, "w0");
    assert_non_null(w->steps);
    assert_int_equal(w->step_count, 0);
    c = run_start("r0", "w0", NULL);
    d = decide_commit(&st, &c, &off);
    assert_int_equal(d.step_count, 0);
    assert_non_null(d.wf_steps);
    cmd_decision_clear(&d);
    cmd_command_clear(&c);
    expect_error(dc(&st, attempt("r0", 0, 1, CMD_OUT_RETRY), &off), 409, "step_mismatch");
    cmd_state_free(&st);
}

/* ------------------------------------------------------------ runs */

static void test_run_start_decisions(void **state)
{
    cmd_state st;
    cmd_command c;
    cmd_decision d;
    int64_t off = 0;
    const cmd_workflow *w;
    const cmd_run *r;

    (void)state;
    assert_int_equal(cmd_state_init(&st, 4), 0);
    expect_error(dc(&st, run_start("r0", "w1", NULL), &off), 404, "not_found");
    dc(&st, wf_create("w1", "hook-secret", 2), &off);

    /* webhook: wrong secret (also a prefix, and a longer one) 401 */
    expect_error(dc(&st, run_start("r0", "w1", "hook-secre"), &off), 401, "invalid_webhook_secret");
    expect_error(dc(&st, run_start("r0", "w1", "hook-secret!"), &off), 401,
                 "invalid_webhook_secret");
    assert_null(cmd_state_run(&st, "r0"));

    /* right secret: RunStarted v1 with the workflow's version, secret and steps */
    c = run_start("r1", "w1", "hook-secret");
    d = decide_commit(&st, &c, &off);
    assert_int_equal(d.kind, CMD_D_APPEND);
    assert_int_equal(d.events[0], EV_RUN_STARTED);
    assert_int_equal(d.version, 1);
    assert_int_equal(d.wf_version, 1);
    assert_string_equal(d.wf_secret, "hook-secret");
    assert_int_equal(d.step_count, 2);
    w = cmd_state_workflow(&st, "w1");
    assert_int_equal(d.wf_steps_len, w->steps_len);
    assert_memory_equal(d.wf_steps, w->steps, w->steps_len);
    cmd_decision_clear(&d);
    cmd_command_clear(&c);
    r = cmd_state_run(&st, "r1");
    assert_non_null(r);
    assert_int_equal(r->status, CMD_RUN_OPEN);
    assert_int_equal(r->step_count, 2);
    assert_int_equal(r->step, 0);
    assert_int_equal(r->attempts, 0);
    assert_int_equal(st.next_offset[CMD_TOPIC_RUN * 4], 2);

    /* the same run id again: 409 conflict */
    d = dc(&st, run_start("r1", "w1", NULL), &off);
    expect_error(d, 409, "conflict");

    /* disabled: 409 workflow_disabled; a wrong webhook secret is still 401 first */
    c = wf_cmd(CMD_WF_UPDATE, "w1");
    c.fields = CMD_F_ENABLED;
    c.enabled = 0;
    dc(&st, c, &off);
    d = dc(&st, run_start("r2", "w1", NULL), &off);
    expect_error(d, 409, "workflow_disabled");
    assert_int_equal(d.current_version, 2);
    expect_error(dc(&st, run_start("r2", "w1", "bad"), &off), 401, "invalid_webhook_secret");

    /* deleted: 404 */
    dc(&st, wf_cmd(CMD_WF_DELETE, "w1"), &off);
    expect_error(dc(&st, run_start("r2", "w1", NULL), &off), 404, "not_found");
    cmd_state_free(&st);
}

static void test_attempt_decisions(void **state)
{
    cmd_state st;
    cmd_decision d;
    cmd_command c;
    int64_t off = 0;
    const cmd_run *r;

    (void)state;
    assert_int_equal(cmd_state_init(&st, 4), 0);
    expect_error(dc(&st, attempt("r1", 0, 1, CMD_OUT_RETRY), &off), 404, "not_found");
    dc(&st, wf_create("w1", "s", 2), &off);
    dc(&st, run_start("r1", "w1", NULL), &off);

    /* refusals with details */
    d = dc(&st, attempt("r1", 1, 1, CMD_OUT_RETRY), &off);
    expect_error(d, 409, "step_mismatch");
    assert_true(d.has_attempt_detail);
    assert_int_equal(d.current_step, 0);
    assert_int_equal(d.recorded_attempts, 0);
    expect_error(dc(&st, attempt("r1", 7, 1, CMD_OUT_RETRY), &off), 409, "step_mismatch");
    d = dc(&st, attempt("r1", 0, 2, CMD_OUT_RETRY), &off);
    expect_error(d, 409, "attempt_gap");
    assert_int_equal(d.recorded_attempts, 0);
    expect_error(dc(&st, attempt("r1", 0, 0, CMD_OUT_RETRY), &off), 409, "attempt_recorded");
    /* retry without next_delay_ms, and a delay on a non-retry: 400 */
    c = attempt("r1", 0, 1, CMD_OUT_RETRY);
    c.has_next_delay_ms = 0;
    expect_error(dc(&st, c, &off), 400, "invalid_request");
    c = attempt("r1", 0, 1, CMD_OUT_SUCCEEDED);
    c.has_next_delay_ms = 1;
    expect_error(dc(&st, c, &off), 400, "invalid_request");

    /* retry: StepAttempted only */
    d = dc(&st, attempt("r1", 0, 1, CMD_OUT_RETRY), &off);
    assert_int_equal(d.nevents, 1);
    assert_int_equal(d.events[0], EV_STEP_ATTEMPTED);
    assert_int_equal(d.version, 2);
    r = cmd_state_run(&st, "r1");
    assert_int_equal(r->attempts, 1);
    /* the repeat the worker may send: attempt_recorded, nothing appended */
    d = dc(&st, attempt("r1", 0, 1, CMD_OUT_RETRY), &off);
    expect_error(d, 409, "attempt_recorded");
    assert_int_equal(d.recorded_attempts, 1);
    assert_int_equal(d.current_version, 2);
    /* succeeded, not the last step: StepAttempted + StepSucceeded */
    d = dc(&st, attempt("r1", 0, 2, CMD_OUT_SUCCEEDED), &off);
    assert_int_equal(d.nevents, 2);
    assert_int_equal(d.events[1], EV_STEP_SUCCEEDED);
    assert_int_equal(d.version, 4);
    r = cmd_state_run(&st, "r1");
    assert_int_equal(r->step, 1);
    assert_int_equal(r->attempts, 0);
    expect_error(dc(&st, attempt("r1", 0, 3, CMD_OUT_RETRY), &off), 409, "step_mismatch");
    /* the last step succeeds: + RunSucceeded */
    d = dc(&st, attempt("r1", 1, 1, CMD_OUT_SUCCEEDED), &off);
    assert_int_equal(d.nevents, 3);
    assert_int_equal(d.events[0], EV_STEP_ATTEMPTED);
    assert_int_equal(d.events[1], EV_STEP_SUCCEEDED);
    assert_int_equal(d.events[2], EV_RUN_SUCCEEDED);
    assert_int_equal(d.version, 7);
    r = cmd_state_run(&st, "r1");
    assert_int_equal(r->status, CMD_RUN_SUCCEEDED);
    assert_int_equal(r->version, 7);
    expect_error(dc(&st, attempt("r1", 1, 2, CMD_OUT_RETRY), &off), 409, "run_finished");
    expect_error(dc(&st, attempt("r1", 2, 1, CMD_OUT_RETRY), &off), 409, "run_finished");

    /* failed: StepAttempted + StepFailed + RunFailed */
    dc(&st, run_start("r2", "w1", NULL), &off);
    d = dc(&st, attempt("r2", 0, 1, CMD_OUT_FAILED), &off);
    assert_int_equal(d.nevents, 3);
    assert_int_equal(d.events[1], EV_STEP_FAILED);
    assert_int_equal(d.events[2], EV_RUN_FAILED);
    assert_int_equal(d.version, 4);
    assert_int_equal(cmd_state_run(&st, "r2")->status, CMD_RUN_FAILED);
    expect_error(dc(&st, attempt("r2", 0, 2, CMD_OUT_RETRY), &off), 409, "run_finished");
    cmd_state_free(&st);
}

/* ------------------------------------------------------------ batch overlay */

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
    c[0] = wf_create("w1", "s", 1);
    c[1] = run_start("r1", "w1", "s");         /* sees the pending workflow */
    c[2] = attempt("r1", 0, 1, CMD_OUT_RETRY); /* sees the pending run */
    c[3] = attempt("r1", 0, 1, CMD_OUT_RETRY); /* the repeat, against the overlay */
    c[4] = wf_cmd(CMD_WF_UPDATE, "w1");
    c[4].fields = CMD_F_NAME;
    c[4].name = strdup("v2");
    c[5] = run_start("r2", "w1", NULL); /* RunStarted copies the pending version 2 */
    c[6] = wf_cmd(CMD_WF_UPDATE, "w1");
    c[6].fields = CMD_F_ENABLED;
    c[6].enabled = 0;
    c[7] = run_start("r3", "w1", NULL); /* disabled in the batch */
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
    expect_error(d[3], 409, "attempt_recorded");
    assert_int_equal(d[3].pending, 1);
    assert_int_equal(d[4].version, 2);
    assert_int_equal(d[5].kind, CMD_D_APPEND);
    assert_int_equal(d[5].wf_version, 2);
    assert_int_equal(d[6].version, 3);
    expect_error(d[7], 409, "workflow_disabled");
    assert_int_equal(d[7].pending, 1);
    /* nothing in the committed state until applied */
    assert_null(cmd_state_workflow(&st, "w1"));
    assert_null(cmd_state_run(&st, "r1"));
    for (size_t i = 0; i < 8; i++)
        if (d[i].kind == CMD_D_APPEND)
            apply_decision(&st, &c[i], &d[i], &off);
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
    c[0] = attempt("r1", 0, 1, CMD_OUT_RETRY);
    assert_int_equal(cmd_batch_decide(&st, &b, &c[0], 0, &d[0]), 0);
    expect_error(d[0], 409, "attempt_recorded");
    assert_int_equal(d[0].pending, 0);
    cmd_command_clear(&c[0]);
    cmd_batch_free(&b);
    cmd_state_free(&st);
}

/* ------------------------------------------------------------ idempotency */

static void with_key(cmd_command *c, const char *key, uint8_t tag)
{
    snprintf(c->idem_key, sizeof c->idem_key, "%s", key);
    memset(c->hash, tag, sizeof c->hash);
}

static void test_idempotency(void **state)
{
    cmd_state st;
    cmd_command c;
    cmd_decision d;
    int64_t off = 0;

    (void)state;
    assert_int_equal(cmd_state_init(&st, 4), 0);
    c = wf_create("w1", "s", 2);
    with_key(&c, "k-wf", 1);
    dc(&st, c, &off);
    c = wf_create("w1", "s", 2);
    with_key(&c, "k-wf", 1);
    d = dc(&st, c, &off);
    assert_int_equal(d.kind, CMD_D_REPLAY);
    assert_int_equal(d.idem.status, 201);
    assert_int_equal(d.idem.aggregate, EV_AGG_WORKFLOW);
    assert_string_equal(d.idem.id, "w1");
    assert_int_equal(d.idem.version, 1);
    c = wf_create("w2", "s", 2);
    with_key(&c, "k-wf", 2);
    expect_error(dc(&st, c, &off), 422, "idempotency_key_reused");

    /* a retried trigger answers the same run id and appends nothing */
    c = run_start("run-a", "w1", NULL);
    with_key(&c, "k-run", 3);
    dc(&st, c, &off);
    c = run_start("run-b", "w1", NULL); /* the API made a new run id for the retry */
    with_key(&c, "k-run", 3);
    d = dc(&st, c, &off);
    assert_int_equal(d.kind, CMD_D_REPLAY);
    assert_int_equal(d.idem.status, 202);
    assert_string_equal(d.idem.id, "run-a");
    assert_int_equal(d.idem.aggregate, EV_AGG_RUN);
    assert_null(cmd_state_run(&st, "run-b"));

    /* a multi-event command: the key answers the last event's version */
    c = attempt("run-a", 0, 1, CMD_OUT_SUCCEEDED);
    with_key(&c, "k-att", 4);
    dc(&st, c, &off);
    c = attempt("run-a", 0, 1, CMD_OUT_SUCCEEDED);
    with_key(&c, "k-att", 4);
    d = dc(&st, c, &off);
    assert_int_equal(d.kind, CMD_D_REPLAY);
    assert_int_equal(d.idem.status, 200);
    assert_int_equal(d.idem.version, 3);

    /* in one batch: the second use follows the first */
    {
        cmd_batch b;
        cmd_command c2[2];
        cmd_decision d2[2];
        assert_int_equal(cmd_batch_init(&b), 0);
        c2[0] = run_start("run-c", "w1", NULL);
        with_key(&c2[0], "k-c", 5);
        c2[1] = run_start("run-d", "w1", NULL);
        with_key(&c2[1], "k-c", 5);
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

/* ------------------------------------------------------------ apply from the log */

static void test_apply_envelope(void **state)
{
    cmd_state st;
    ev_fb_builder fb;
    ev_envelope e, back;
    const uint8_t *buf;
    size_t len;
    char err[256];

    (void)state;
    assert_int_equal(cmd_state_init(&st, 4), 0);
    ev_fb_builder_init(&fb);
    /* a run event read from the workflow topic: refused, the offset moves */
    ev_envelope_init(&e, EV_RUN_STARTED);
    e.aggregate_id = ev_str_c("r1");
    e.version = 1;
    e.payload.run_started.workflow_id = ev_str_c("w1");
    e.payload.run_started.workflow_version = 1;
    e.payload.run_started.step_count = 2;
    assert_int_equal(ev_envelope_encode(&fb, &e, err, sizeof err), 0);
    buf = ev_fb_builder_data(&fb, &len);
    assert_int_equal(ev_envelope_decode(buf, len, &back, err, sizeof err), 0);
    assert_int_equal(
        cmd_state_apply_envelope(&st, CMD_TOPIC_WORKFLOW, &back, 2, 40, err, sizeof err),
        KQ_ECORRUPT);
    assert_int_equal(st.next_offset[CMD_TOPIC_WORKFLOW * 4 + 2], 41);
    assert_null(cmd_state_run(&st, "r1"));
    /* from its topic: applied (an old RunStarted without steps: step_count counts) */
    assert_int_equal(cmd_state_apply_envelope(&st, CMD_TOPIC_RUN, &back, 2, 7, err, sizeof err), 0);
    assert_int_equal(cmd_state_run(&st, "r1")->step_count, 2);
    assert_int_equal(st.next_offset[CMD_TOPIC_RUN * 4 + 2], 8);
    /* read again: skipped */
    assert_int_equal(cmd_state_apply_envelope(&st, CMD_TOPIC_RUN, &back, 2, 7, err, sizeof err), 1);
    /* a gap: refused */
    ev_envelope_init(&e, EV_RUN_SUCCEEDED);
    e.aggregate_id = ev_str_c("r1");
    e.version = 3;
    assert_int_equal(ev_envelope_encode(&fb, &e, err, sizeof err), 0);
    buf = ev_fb_builder_data(&fb, &len);
    assert_int_equal(ev_envelope_decode(buf, len, &back, err, sizeof err), 0);
    assert_int_equal(cmd_state_apply_envelope(&st, CMD_TOPIC_RUN, &back, 2, 8, err, sizeof err),
                     KQ_ECORRUPT);
    assert_int_equal(cmd_state_run(&st, "r1")->status, CMD_RUN_OPEN);
    /* an event of an unknown workflow: refused */
    ev_envelope_init(&e, EV_WORKFLOW_ENABLED);
    e.aggregate_id = ev_str_c("w9");
    e.version = 2;
    assert_int_equal(ev_envelope_encode(&fb, &e, err, sizeof err), 0);
    buf = ev_fb_builder_data(&fb, &len);
    assert_int_equal(ev_envelope_decode(buf, len, &back, err, sizeof err), 0);
    assert_int_equal(
        cmd_state_apply_envelope(&st, CMD_TOPIC_WORKFLOW, &back, 1, 0, err, sizeof err),
        KQ_ECORRUPT);
    /* a resource event through the same path */
    ev_envelope_init(&e, EV_RESOURCE_CREATED);
    e.aggregate_id = ev_str_c("res");
    e.version = 1;
    e.payload.resource_created.name = ev_str_c("n");
    assert_int_equal(ev_envelope_encode(&fb, &e, err, sizeof err), 0);
    buf = ev_fb_builder_data(&fb, &len);
    assert_int_equal(ev_envelope_decode(buf, len, &back, err, sizeof err), 0);
    assert_int_equal(
        cmd_state_apply_envelope(&st, CMD_TOPIC_RESOURCE, &back, 3, 5, err, sizeof err), 0);
    assert_string_equal(cmd_state_resource(&st, "res")->name, "n");
    assert_int_equal(st.next_offset[3], 6);
    assert_int_equal(st.events, 2);
    ev_fb_builder_free(&fb);
    cmd_state_free(&st);
}

/* ------------------------------------------------------------ snapshot v4 */

static char *tmpdir(void)
{
    char *d = strdup("/tmp/test_cmd_wf_snapXXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rmdir_all(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

static int cmp_wf(void *arg, const char *id, const cmd_workflow *w)
{
    const cmd_workflow *o = cmd_state_workflow(arg, id);
    if (o == NULL)
        fail_msg("workflow %s missing", id);
    assert_int_equal(o->version, w->version);
    assert_int_equal(o->deleted, w->deleted);
    assert_int_equal(o->enabled, w->enabled);
    assert_int_equal(o->offset, w->offset);
    assert_int_equal(o->partition, w->partition);
    assert_int_equal(o->step_count, w->step_count);
    assert_string_equal(o->name, w->name);
    assert_string_equal(o->secret, w->secret);
    assert_int_equal(o->steps_len, w->steps_len);
    if (w->steps_len)
        assert_memory_equal(o->steps, w->steps, w->steps_len);
    return 0;
}

static int cmp_run(void *arg, const char *id, const cmd_run *r)
{
    const cmd_run *o = cmd_state_run(arg, id);
    if (o == NULL)
        fail_msg("run %s missing", id);
    assert_memory_equal(o, r, sizeof *r);
    return 0;
}

static int cmp_idem(void *arg, const char *key, const cmd_idem *i)
{
    const cmd_idem *o = cmd_state_idem(arg, key);
    if (o == NULL)
        fail_msg("key %s missing", key);
    assert_int_equal(o->status, i->status);
    assert_int_equal(o->aggregate, i->aggregate);
    assert_int_equal(o->version, i->version);
    assert_string_equal(o->id, i->id);
    return 0;
}

static void assert_same(const cmd_state *a, cmd_state *b)
{
    assert_int_equal(cmd_state_workflow_count(a), cmd_state_workflow_count(b));
    assert_int_equal(cmd_state_run_count(a), cmd_state_run_count(b));
    assert_int_equal(cmd_state_idem_count(a), cmd_state_idem_count(b));
    assert_int_equal(cmd_state_resource_count(a), cmd_state_resource_count(b));
    assert_memory_equal(a->next_offset, b->next_offset,
                        (size_t)CMD_TOPICS * (size_t)a->partitions * sizeof(int64_t));
    assert_int_equal(a->events, b->events);
    cmd_state_each_workflow(a, cmp_wf, b);
    cmd_state_each_run(a, cmp_run, b);
    cmd_state_each_idem(a, cmp_idem, b);
}

/* A state with workflows (one deleted, one disabled), open and finished runs, keys. */
static void fill(cmd_state *st, int64_t *off)
{
    cmd_command c;

    c = wf_create("w1", "s1", 3);
    with_key(&c, "k1", 1);
    dc(st, c, off);
    dc(st, wf_create("w2", "s2", 1), off);
    dc(st, wf_create("w3", "s3", 1), off);
    c = wf_cmd(CMD_WF_UPDATE, "w2");
    c.fields = CMD_F_ENABLED;
    c.enabled = 0;
    dc(st, c, off);
    dc(st, wf_cmd(CMD_WF_DELETE, "w3"), off);
    dc(st, run_start("r1", "w1", NULL), off);
    dc(st, attempt("r1", 0, 1, CMD_OUT_RETRY), off);
    c = run_start("r2", "w1", "s1");
    with_key(&c, "k2", 2);
    dc(st, c, off);
    dc(st, attempt("r2", 0, 1, CMD_OUT_FAILED), off);
}

static void test_snapshot_v4(void **state)
{
    cmd_state st, back;
    cmd_head heads[CMD_TOPICS * 4], hb[CMD_TOPICS * 4];
    char *dir = tmpdir(), err[512];
    int64_t off = 0;

    (void)state;
    assert_int_equal(cmd_state_init(&st, 4), 0);
    fill(&st, &off);
    st.next_offset[CMD_TOPIC_RESOURCE * 4 + 1] = 11;
    memset(heads, 0, sizeof heads);
    for (int t = 0; t < CMD_TOPICS; t++) {
        heads[t * 4 + t].set = 1;
        memset(heads[t * 4 + t].hash, 0x10 + t, CMD_CHAIN_HASH_LEN);
    }
    assert_int_equal(cmd_snapshot_save(dir, 1 << 24, &st, heads, TOPICS, err, sizeof err), 0);
    assert_int_equal(cmd_state_init(&back, 4), 0);
    memset(hb, 0xee, sizeof hb);
    if (cmd_snapshot_load(dir, 1 << 24, &back, hb, TOPICS, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_memory_equal(hb, heads, sizeof heads);
    assert_same(&st, &back);
    assert_int_equal(cmd_state_workflow_count(&back), 3);
    assert_true(cmd_state_workflow(&back, "w3")->deleted);
    assert_false(cmd_state_workflow(&back, "w2")->enabled);
    assert_int_equal(cmd_state_run(&back, "r2")->status, CMD_RUN_FAILED);
    cmd_state_free(&back);

    /* the loaded state decides as the original: the recorded attempt is refused */
    assert_int_equal(cmd_state_init(&back, 4), 0);
    assert_int_equal(cmd_snapshot_load(dir, 1 << 24, &back, hb, TOPICS, err, sizeof err), 0);
    expect_error(dc(&back, attempt("r1", 0, 1, CMD_OUT_RETRY), &off), 409, "attempt_recorded");
    expect_error(dc(&back, run_start("r9", "w1", "s2"), &off), 401, "invalid_webhook_secret");
    cmd_state_free(&back);

    /* a v3 snapshot (resources only) is read as none */
    {
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        MDB_val k = {1, (void *)"m"}, v;
        char *m;
        assert_int_equal(mdb_env_create(&env), 0);
        assert_int_equal(mdb_env_set_mapsize(env, 1 << 24), 0);
        assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
        assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
        assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
        assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
        m = malloc(v.mv_size);
        memcpy(m, v.mv_data, v.mv_size);
        assert_memory_equal(m, "kcqrs.commands.v4", 18);
        m[16] = '3';
        v.mv_data = m;
        assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
        assert_int_equal(mdb_txn_commit(txn), 0);
        mdb_env_close(env);
        free(m);
    }
    assert_int_equal(cmd_state_init(&back, 4), 0);
    assert_int_equal(cmd_snapshot_load(dir, 1 << 24, &back, hb, TOPICS, err, sizeof err),
                     KQ_ECORRUPT);
    assert_non_null(strstr(err, "older format"));
    cmd_state_free(&back);
    cmd_state_free(&st);
    rmdir_all(dir);
    free(dir);
}

/* The snapshot thread writes 'w' and 'n' records of the delta; later changes
 * go in as increments, and the result loads as the state. */
static void test_snapshot_incremental_v4(void **state)
{
    cmd_state st, back;
    cmd_snapshotter *sn;
    cmd_head hb[CMD_TOPICS * 4];
    char *dir = tmpdir(), err[512];
    int64_t off = 0;
    int full = 0;
    cmd_command c;

    (void)state;
    assert_int_equal(cmd_state_init(&st, 4), 0);
    cmd_state_track(&st, 1);
    fill(&st, &off);
    assert_int_equal(cmd_snapshotter_new(dir, 1 << 24, TOPICS, &sn, err, sizeof err), 0);
    assert_int_equal(cmd_snapshotter_submit(sn, &st, NULL, &full), 0);
    assert_int_equal(full, 1);
    /* increments: an attempt, a rename, a new run */
    dc(&st, attempt("r1", 0, 2, CMD_OUT_SUCCEEDED), &off);
    c = wf_cmd(CMD_WF_UPDATE, "w1");
    c.fields = CMD_F_NAME;
    c.name = strdup("later");
    dc(&st, c, &off);
    dc(&st, run_start("r3", "w1", NULL), &off);
    {
        size_t pos = 0, kl, vl, nw = 0, nn = 0;
        char kind;
        const char *k;
        const void *v;
        while (cmd_delta_next(&st.delta, &pos, &kind, &k, &kl, &v, &vl) == 1) {
            nw += kind == 'w';
            nn += kind == 'n';
        }
        assert_int_equal(nw, 1);
        assert_int_equal(nn, 3); /* r1 twice (two events), r3 */
    }
    assert_int_equal(cmd_snapshotter_submit(sn, &st, NULL, &full), 0);
    assert_int_equal(full, 0);
    assert_int_equal(cmd_snapshotter_flush(sn, err, sizeof err), 0);
    cmd_snapshotter_free(sn);
    assert_int_equal(cmd_state_init(&back, 4), 0);
    if (cmd_snapshot_load(dir, 1 << 24, &back, hb, TOPICS, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_same(&st, &back);
    assert_string_equal(cmd_state_workflow(&back, "w1")->name, "later");
    assert_int_equal(cmd_state_run(&back, "r1")->step, 1);
    cmd_state_free(&back);

    /* delta_full holds every workflow and run */
    assert_int_equal(cmd_state_delta_full(&st), 0);
    assert_int_equal(st.delta.records, cmd_state_resource_count(&st) + cmd_state_idem_count(&st) +
                                           cmd_state_workflow_count(&st) +
                                           cmd_state_run_count(&st));
    cmd_state_free(&st);
    rmdir_all(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workflow_decisions), cmocka_unit_test(test_run_start_decisions),
        cmocka_unit_test(test_attempt_decisions),  cmocka_unit_test(test_overlay),
        cmocka_unit_test(test_idempotency),        cmocka_unit_test(test_apply_envelope),
        cmocka_unit_test(test_snapshot_v4),        cmocka_unit_test(test_snapshot_incremental_v4),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
