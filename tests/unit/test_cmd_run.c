/*
 * test_cmd_run.c — the run aggregate on the command side (cmd_run.c through
 * cmd_aggregate.h): run start decisions (webhook secrets, disabled and
 * deleted workflows), attempt decisions and their details, applying run
 * events from the log through ev_run_fold (topics, gaps, re-reads; the run
 * rule: a StepFailed ends the run, a run without steps is succeeded at
 * RunStarted, refused events are not applied), and the 48-byte record's
 * mapping to and from ev_run_state (records written before the fold stay
 * readable).
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
#include "cmd_workflow.h"
#include "ev_codec.h"
#include "kq_err.h"
#include "test_cmd_fixture.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

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
    fx_expect_error(fx_dc(&st, fx_run_start("r0", "w1", NULL), &off), 404, "not_found");
    fx_dc(&st, fx_wf_create("w1", "hook-secret", 2), &off);

    /* webhook: wrong secret (also a prefix, and a longer one) 401 */
    fx_expect_error(fx_dc(&st, fx_run_start("r0", "w1", "hook-secre"), &off), 401,
                    "invalid_webhook_secret");
    fx_expect_error(fx_dc(&st, fx_run_start("r0", "w1", "hook-secret!"), &off), 401,
                    "invalid_webhook_secret");
    assert_null(cmd_state_run(&st, "r0"));

    /* right secret: RunStarted v1 with the workflow's version, secret and steps */
    c = fx_run_start("r1", "w1", "hook-secret");
    d = fx_decide_commit(&st, &c, &off);
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
    d = fx_dc(&st, fx_run_start("r1", "w1", NULL), &off);
    fx_expect_error(d, 409, "conflict");

    /* disabled: 409 workflow_disabled; a wrong webhook secret is still 401 first */
    c = fx_wf_cmd(CMD_WF_UPDATE, "w1");
    c.fields = CMD_F_ENABLED;
    c.enabled = 0;
    fx_dc(&st, c, &off);
    d = fx_dc(&st, fx_run_start("r2", "w1", NULL), &off);
    fx_expect_error(d, 409, "workflow_disabled");
    assert_int_equal(d.current_version, 2);
    fx_expect_error(fx_dc(&st, fx_run_start("r2", "w1", "bad"), &off), 401,
                    "invalid_webhook_secret");

    /* deleted: 404 */
    fx_dc(&st, fx_wf_cmd(CMD_WF_DELETE, "w1"), &off);
    fx_expect_error(fx_dc(&st, fx_run_start("r2", "w1", NULL), &off), 404, "not_found");
    cmd_state_free(&st);
}

/* A webhook run start of wf signed over body with key (NULL: no signature). */
static cmd_command hook_signed(const char *run, const char *wf, const char *secret, const char *key,
                               const char *body)
{
    cmd_command c = fx_run_start(run, wf, secret);
    unsigned int n = 0;

    c.trigger = EV_TRIGGER_WEBHOOK;
    c.has_hook_secret = secret != NULL;
    if (key != NULL) {
        c.has_hook_sig = 1;
        assert_non_null(HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)body,
                             strlen(body), c.hook_sig, &n));
        assert_int_equal(n, 32);
        c.hook_body = strdup(body);
        c.hook_body_len = strlen(body);
    }
    return c;
}

static void test_run_start_webhook_auth(void **state)
{
    cmd_state st;
    cmd_command c;
    cmd_decision d;
    int64_t off = 0;
    uint8_t sig[32];

    (void)state;
    /* the header's syntax */
    assert_int_equal(cmd_workflow_sig_parse("sha256="
                                            "00112233445566778899aabbccddeeff"
                                            "00112233445566778899AABBCCDDEEFF",
                                            sig),
                     0);
    assert_int_equal(sig[0], 0x00);
    assert_int_equal(sig[1], 0x11);
    assert_int_equal(sig[31], 0xff);
    assert_int_equal(sig[26], 0xaa);
    assert_int_equal(cmd_workflow_sig_parse("sha1=00", sig), KQ_EINVAL);
    assert_int_equal(cmd_workflow_sig_parse("sha256=", sig), KQ_EINVAL);
    assert_int_equal(cmd_workflow_sig_parse("SHA256="
                                            "00112233445566778899aabbccddeeff"
                                            "00112233445566778899aabbccddeeff",
                                            sig),
                     KQ_EINVAL);
    assert_int_equal(cmd_workflow_sig_parse("sha256="
                                            "00112233445566778899aabbccddeeff"
                                            "00112233445566778899aabbccddeefg",
                                            sig),
                     KQ_EINVAL);
    assert_int_equal(cmd_workflow_sig_parse("sha256="
                                            "00112233445566778899aabbccddeeff"
                                            "00112233445566778899aabbccddeeff0",
                                            sig),
                     KQ_EINVAL);

    assert_int_equal(cmd_state_init(&st, 4), 0);
    /* unknown workflow: the answer of a wrong secret, with a secret or a signature */
    fx_expect_error(fx_dc(&st, fx_run_start("r0", "w1", "s3cret"), &off), 401,
                    "invalid_webhook_secret");
    fx_expect_error(fx_dc(&st, hook_signed("r0", "w1", NULL, "s3cret", "{}"), &off), 401,
                    "invalid_webhook_secret");
    fx_dc(&st, fx_wf_create("w1", "s3cret", 1), &off);

    /* a signature made with the secret over the body: accepted */
    c = hook_signed("r1", "w1", NULL, "s3cret", "{\"a\": 1}");
    d = fx_decide_commit(&st, &c, &off);
    assert_int_equal(d.kind, CMD_D_APPEND);
    cmd_decision_clear(&d);
    cmd_command_clear(&c);
    /* with the right secret as well: accepted */
    c = hook_signed("r2", "w1", "s3cret", "s3cret", "");
    d = fx_decide_commit(&st, &c, &off);
    assert_int_equal(d.kind, CMD_D_APPEND);
    cmd_decision_clear(&d);
    cmd_command_clear(&c);
    /* another key, another body, or a wrong secret beside a right signature: 401 */
    fx_expect_error(fx_dc(&st, hook_signed("r3", "w1", NULL, "s3cre", "{}"), &off), 401,
                    "invalid_webhook_secret");
    c = hook_signed("r3", "w1", NULL, "s3cret", "{\"a\": 1}");
    c.hook_body[6] = '2';
    fx_expect_error(fx_dc(&st, c, &off), 401, "invalid_webhook_secret");
    fx_expect_error(fx_dc(&st, hook_signed("r3", "w1", "wrong", "s3cret", "{}"), &off), 401,
                    "invalid_webhook_secret");
    /* neither credential: 401 */
    fx_expect_error(fx_dc(&st, hook_signed("r3", "w1", NULL, NULL, "{}"), &off), 401,
                    "invalid_webhook_secret");
    assert_null(cmd_state_run(&st, "r3"));

    /* deleted: a webhook gets the wrong-secret answer, even with the old secret */
    fx_dc(&st, fx_wf_cmd(CMD_WF_DELETE, "w1"), &off);
    fx_expect_error(fx_dc(&st, fx_run_start("r4", "w1", "s3cret"), &off), 401,
                    "invalid_webhook_secret");
    fx_expect_error(fx_dc(&st, hook_signed("r4", "w1", NULL, "s3cret", "{}"), &off), 401,
                    "invalid_webhook_secret");
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
    fx_expect_error(fx_dc(&st, fx_attempt("r1", 0, 1, CMD_OUT_RETRY), &off), 404, "not_found");
    fx_dc(&st, fx_wf_create("w1", "s", 2), &off);
    fx_dc(&st, fx_run_start("r1", "w1", NULL), &off);

    /* refusals with details */
    d = fx_dc(&st, fx_attempt("r1", 1, 1, CMD_OUT_RETRY), &off);
    fx_expect_error(d, 409, "step_mismatch");
    assert_true(d.has_attempt_detail);
    assert_int_equal(d.current_step, 0);
    assert_int_equal(d.recorded_attempts, 0);
    fx_expect_error(fx_dc(&st, fx_attempt("r1", 7, 1, CMD_OUT_RETRY), &off), 409, "step_mismatch");
    d = fx_dc(&st, fx_attempt("r1", 0, 2, CMD_OUT_RETRY), &off);
    fx_expect_error(d, 409, "attempt_gap");
    assert_int_equal(d.recorded_attempts, 0);
    fx_expect_error(fx_dc(&st, fx_attempt("r1", 0, 0, CMD_OUT_RETRY), &off), 409,
                    "attempt_recorded");
    /* retry without next_delay_ms, and a delay on a non-retry: 400 */
    c = fx_attempt("r1", 0, 1, CMD_OUT_RETRY);
    c.has_next_delay_ms = 0;
    fx_expect_error(fx_dc(&st, c, &off), 400, "invalid_request");
    c = fx_attempt("r1", 0, 1, CMD_OUT_SUCCEEDED);
    c.has_next_delay_ms = 1;
    fx_expect_error(fx_dc(&st, c, &off), 400, "invalid_request");

    /* retry: StepAttempted only */
    d = fx_dc(&st, fx_attempt("r1", 0, 1, CMD_OUT_RETRY), &off);
    assert_int_equal(d.nevents, 1);
    assert_int_equal(d.events[0], EV_STEP_ATTEMPTED);
    assert_int_equal(d.version, 2);
    r = cmd_state_run(&st, "r1");
    assert_int_equal(r->attempts, 1);
    /* the repeat the worker may send: attempt_recorded, nothing appended */
    d = fx_dc(&st, fx_attempt("r1", 0, 1, CMD_OUT_RETRY), &off);
    fx_expect_error(d, 409, "attempt_recorded");
    assert_int_equal(d.recorded_attempts, 1);
    assert_int_equal(d.current_version, 2);
    /* succeeded, not the last step: StepAttempted + StepSucceeded */
    d = fx_dc(&st, fx_attempt("r1", 0, 2, CMD_OUT_SUCCEEDED), &off);
    assert_int_equal(d.nevents, 2);
    assert_int_equal(d.events[1], EV_STEP_SUCCEEDED);
    assert_int_equal(d.version, 4);
    r = cmd_state_run(&st, "r1");
    assert_int_equal(r->step, 1);
    assert_int_equal(r->attempts, 0);
    fx_expect_error(fx_dc(&st, fx_attempt("r1", 0, 3, CMD_OUT_RETRY), &off), 409, "step_mismatch");
    /* the last step succeeds: + RunSucceeded */
    d = fx_dc(&st, fx_attempt("r1", 1, 1, CMD_OUT_SUCCEEDED), &off);
    assert_int_equal(d.nevents, 3);
    assert_int_equal(d.events[0], EV_STEP_ATTEMPTED);
    assert_int_equal(d.events[1], EV_STEP_SUCCEEDED);
    assert_int_equal(d.events[2], EV_RUN_SUCCEEDED);
    assert_int_equal(d.version, 7);
    r = cmd_state_run(&st, "r1");
    assert_int_equal(r->status, CMD_RUN_SUCCEEDED);
    assert_int_equal(r->version, 7);
    fx_expect_error(fx_dc(&st, fx_attempt("r1", 1, 2, CMD_OUT_RETRY), &off), 409, "run_finished");
    fx_expect_error(fx_dc(&st, fx_attempt("r1", 2, 1, CMD_OUT_RETRY), &off), 409, "run_finished");

    /* failed: StepAttempted + StepFailed + RunFailed */
    fx_dc(&st, fx_run_start("r2", "w1", NULL), &off);
    d = fx_dc(&st, fx_attempt("r2", 0, 1, CMD_OUT_FAILED), &off);
    assert_int_equal(d.nevents, 3);
    assert_int_equal(d.events[1], EV_STEP_FAILED);
    assert_int_equal(d.events[2], EV_RUN_FAILED);
    assert_int_equal(d.version, 4);
    assert_int_equal(cmd_state_run(&st, "r2")->status, CMD_RUN_FAILED);
    fx_expect_error(fx_dc(&st, fx_attempt("r2", 0, 2, CMD_OUT_RETRY), &off), 409, "run_finished");
    cmd_state_free(&st);
}

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
        cmd_aggregate_apply_envelope(&st, CMD_TOPIC_WORKFLOW, &back, 2, 40, err, sizeof err),
        KQ_ECORRUPT);
    assert_int_equal(st.next_offset[CMD_TOPIC_WORKFLOW * 4 + 2], 41);
    assert_null(cmd_state_run(&st, "r1"));
    /* from its topic: applied (an old RunStarted without steps: step_count counts) */
    assert_int_equal(cmd_aggregate_apply_envelope(&st, CMD_TOPIC_RUN, &back, 2, 7, err, sizeof err),
                     0);
    assert_int_equal(cmd_state_run(&st, "r1")->step_count, 2);
    assert_int_equal(st.next_offset[CMD_TOPIC_RUN * 4 + 2], 8);
    /* read again: skipped */
    assert_int_equal(cmd_aggregate_apply_envelope(&st, CMD_TOPIC_RUN, &back, 2, 7, err, sizeof err),
                     1);
    /* a gap: refused */
    ev_envelope_init(&e, EV_RUN_SUCCEEDED);
    e.aggregate_id = ev_str_c("r1");
    e.version = 3;
    assert_int_equal(ev_envelope_encode(&fb, &e, err, sizeof err), 0);
    buf = ev_fb_builder_data(&fb, &len);
    assert_int_equal(ev_envelope_decode(buf, len, &back, err, sizeof err), 0);
    assert_int_equal(cmd_aggregate_apply_envelope(&st, CMD_TOPIC_RUN, &back, 2, 8, err, sizeof err),
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
        cmd_aggregate_apply_envelope(&st, CMD_TOPIC_WORKFLOW, &back, 1, 0, err, sizeof err),
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
        cmd_aggregate_apply_envelope(&st, CMD_TOPIC_RESOURCE, &back, 3, 5, err, sizeof err), 0);
    assert_string_equal(cmd_state_resource(&st, "res")->name, "n");
    assert_int_equal(st.next_offset[3], 6);
    assert_int_equal(st.events, 2);
    ev_fb_builder_free(&fb);
    cmd_state_free(&st);
}

/* A run event of `type` for run "r" at version v (fields for step/attempt). */
static ev_envelope run_ev(ev_event_type type, int64_t v, uint32_t step, uint32_t attempt)
{
    ev_envelope e;
    ev_envelope_init(&e, type);
    e.aggregate_id = ev_str_c("r");
    e.version = v;
    switch (type) {
    case EV_RUN_STARTED:
        e.payload.run_started.workflow_id = ev_str_c("w");
        e.payload.run_started.workflow_version = 1;
        e.payload.run_started.step_count = step; /* the step count */
        break;
    case EV_STEP_ATTEMPTED:
        e.payload.step_attempted.step = step;
        e.payload.step_attempted.attempt = attempt;
        break;
    case EV_STEP_SUCCEEDED:
        e.payload.step_succeeded.step = step;
        e.payload.step_succeeded.attempt = attempt;
        break;
    case EV_STEP_FAILED:
        e.payload.step_failed.step = step;
        e.payload.step_failed.attempt = attempt;
        break;
    case EV_RUN_FAILED:
        e.payload.run_failed.step = step;
        break;
    default:
        break;
    }
    return e;
}

/* The run rule of events/ev_run.h, as the command side applies it. */
static void test_run_rule(void **state)
{
    cmd_state st;
    ev_envelope e;
    char err[256];
    int64_t off = 0;
    const cmd_run *r;

    (void)state;
    assert_int_equal(cmd_state_init(&st, 1), 0);
    /* zero steps: succeeded at RunStarted */
    e = run_ev(EV_RUN_STARTED, 1, 0, 0);
    e.aggregate_id = ev_str_c("zero");
    assert_int_equal(fx_apply_env(&st, CMD_TOPIC_RUN, &e, 0, off++, err, sizeof err), 0);
    assert_int_equal(cmd_state_run(&st, "zero")->status, CMD_RUN_SUCCEEDED);

    /* a StepFailed ends the run even before its RunFailed */
    e = run_ev(EV_RUN_STARTED, 1, 2, 0);
    assert_int_equal(fx_apply_env(&st, CMD_TOPIC_RUN, &e, 0, off++, err, sizeof err), 0);
    r = cmd_state_run(&st, "r");
    assert_int_equal(r->status, CMD_RUN_OPEN);
    /* out of order: an attempt of step 1 while step 0 is current is refused */
    e = run_ev(EV_STEP_ATTEMPTED, 2, 1, 1);
    assert_int_equal(fx_apply_env(&st, CMD_TOPIC_RUN, &e, 0, off++, err, sizeof err), KQ_ECORRUPT);
    assert_non_null(strstr(err, "refused"));
    assert_int_equal(cmd_state_run(&st, "r")->version, 1);
    /* attempt 2 before attempt 1: refused */
    e = run_ev(EV_STEP_ATTEMPTED, 2, 0, 2);
    assert_int_equal(fx_apply_env(&st, CMD_TOPIC_RUN, &e, 0, off++, err, sizeof err), KQ_ECORRUPT);
    e = run_ev(EV_STEP_ATTEMPTED, 2, 0, 1);
    assert_int_equal(fx_apply_env(&st, CMD_TOPIC_RUN, &e, 0, off++, err, sizeof err), 0);
    assert_int_equal(cmd_state_run(&st, "r")->attempts, 1);
    assert_true(cmd_state_run(&st, "r")->flags & CMD_RUN_F_RUNNING);
    e = run_ev(EV_STEP_FAILED, 3, 0, 1);
    assert_int_equal(fx_apply_env(&st, CMD_TOPIC_RUN, &e, 0, off++, err, sizeof err), 0);
    r = cmd_state_run(&st, "r");
    assert_int_equal(r->status, CMD_RUN_FAILED);
    assert_true(r->flags & CMD_RUN_F_STEP_FAILED);
    assert_false(r->flags & CMD_RUN_F_ENDED);
    fx_expect_error(fx_dc(&st, fx_attempt("r", 0, 2, CMD_OUT_RETRY), &off), 409, "run_finished");
    /* its RunFailed is still accepted, once; nothing after it */
    e = run_ev(EV_RUN_FAILED, 4, 0, 0);
    assert_int_equal(fx_apply_env(&st, CMD_TOPIC_RUN, &e, 0, off++, err, sizeof err), 0);
    assert_true(cmd_state_run(&st, "r")->flags & CMD_RUN_F_ENDED);
    e = run_ev(EV_RUN_FAILED, 5, 0, 0);
    assert_int_equal(fx_apply_env(&st, CMD_TOPIC_RUN, &e, 0, off++, err, sizeof err), KQ_ECORRUPT);
    assert_int_equal(cmd_state_run(&st, "r")->version, 4);
    cmd_state_free(&st);
}

/* cmd_run <-> ev_run_state: the fold's state round-trips; a record written
 * before the fold (flags 0) reads as the old writer meant it. */
static void test_run_record(void **state)
{
    cmd_run r, back;
    ev_run_state s;

    (void)state;
    memset(&r, 0, sizeof r);
    r.version = 3;
    r.step_count = 2;
    r.step = 1;
    r.status = CMD_RUN_OPEN;
    cmd_run_to_fold(&r, &s); /* old record: a step behind it, so running */
    assert_int_equal(s.status, EV_RUN_IS_RUNNING);
    assert_int_equal(s.version, 3);
    assert_int_equal(s.step, 1);
    assert_true(ev_run_open(&s));
    r.step = 0;
    cmd_run_to_fold(&r, &s);
    assert_int_equal(s.status, EV_RUN_IS_PENDING);
    r.status = CMD_RUN_SUCCEEDED;
    cmd_run_to_fold(&r, &s);
    assert_int_equal(s.status, EV_RUN_IS_SUCCEEDED);
    assert_true(s.ended);
    assert_false(ev_run_open(&s));
    r.status = CMD_RUN_FAILED;
    cmd_run_to_fold(&r, &s);
    assert_int_equal(s.status, EV_RUN_IS_FAILED);
    assert_true(s.ended);

    /* every fold status round-trips through the record */
    for (int st = EV_RUN_IS_PENDING; st <= EV_RUN_IS_FAILED; st++)
        for (int fl = 0; fl < 4; fl++) {
            ev_run_init(&s);
            s.version = 7;
            s.status = st;
            s.step_count = 3;
            s.step = 2;
            s.attempts = 4;
            s.step_failed = fl & 1;
            s.ended = (fl >> 1) & 1;
            memset(&back, 0, sizeof back);
            cmd_run_from_fold(&s, &back);
            {
                ev_run_state t;
                cmd_run_to_fold(&back, &t);
                assert_int_equal(t.status, s.status);
                assert_int_equal(t.version, s.version);
                assert_int_equal(t.step_count, s.step_count);
                assert_int_equal(t.step, s.step);
                assert_int_equal(t.attempts, s.attempts);
                assert_int_equal(t.step_failed, s.step_failed);
                assert_int_equal(t.ended, s.ended);
            }
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_start_decisions),
        cmocka_unit_test(test_run_start_webhook_auth),
        cmocka_unit_test(test_attempt_decisions),
        cmocka_unit_test(test_apply_envelope),
        cmocka_unit_test(test_run_rule),
        cmocka_unit_test(test_run_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
