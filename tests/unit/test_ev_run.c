/*
 * test_ev_run.c — the run fold (events/ev_run.h), rule by rule: the
 * sequences the writer appends (retry, success over two steps, failure),
 * zero-step runs, duplicates, gaps, unknown runs, wrong steps and attempts,
 * events after the end, the end events' conditions, step statuses, the
 * status names; every refusal leaves the state byte-identical.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "ev_codec.h"
#include "ev_run.h"

static ev_envelope ev(ev_event_type type, int64_t version)
{
    ev_envelope e;

    ev_envelope_init(&e, type);
    e.aggregate_id = ev_str_c("run-1");
    e.version = version;
    e.occurred_at_us = 1000000 * version;
    return e;
}

static ev_envelope started(uint32_t nsteps)
{
    ev_envelope e = ev(EV_RUN_STARTED, 1);
    e.payload.run_started.workflow_id = ev_str_c("wf");
    e.payload.run_started.step_count = nsteps;
    return e;
}

static ev_envelope attempted(int64_t v, uint32_t step, uint32_t attempt, int64_t delay)
{
    ev_envelope e = ev(EV_STEP_ATTEMPTED, v);
    e.payload.step_attempted.step = step;
    e.payload.step_attempted.attempt = attempt;
    e.payload.step_attempted.has_next_delay_ms = delay >= 0;
    e.payload.step_attempted.next_delay_ms = delay >= 0 ? delay : 0;
    return e;
}

static ev_envelope step_ev(ev_event_type type, int64_t v, uint32_t step)
{
    ev_envelope e = ev(type, v);
    if (type == EV_STEP_SUCCEEDED)
        e.payload.step_succeeded.step = step;
    else if (type == EV_STEP_FAILED)
        e.payload.step_failed.step = step;
    else if (type == EV_RUN_FAILED)
        e.payload.run_failed.step = step;
    return e;
}

/* Fold e and expect `want`; a refusal or duplicate must leave s unchanged. */
static void fold_expect(ev_run_state *s, ev_envelope e, int want)
{
    ev_run_state before = *s;
    const char *why = NULL;
    int rc = ev_run_fold(s, &e, &why);

    if (rc != want)
        fail_msg("%s v%lld: got %d, want %d (%s)", ev_event_type_name(e.payload_type),
                 (long long)e.version, rc, want, why ? why : "-");
    if (rc == EV_FOLD_REFUSED)
        assert_non_null(why);
    if (rc != EV_FOLD_APPLIED)
        assert_memory_equal(&before, s, sizeof *s);
    else
        assert_int_equal(s->version, e.version);
}

static void test_writer_success(void **state)
{
    ev_run_state s;
    (void)state;

    ev_run_init(&s);
    assert_int_equal(s.version, 0);
    assert_int_equal(s.next_delay_ms, -1);
    assert_false(ev_run_open(&s));
    fold_expect(&s, started(2), EV_FOLD_APPLIED);
    assert_int_equal(s.status, EV_RUN_IS_PENDING);
    assert_int_equal(s.step_count, 2);
    assert_int_equal(s.step, 0);
    assert_int_equal(s.attempts, 0);
    assert_true(ev_run_open(&s));
    assert_int_equal(ev_run_step_status(&s, 0), EV_STEP_IS_PENDING);
    /* a retry */
    fold_expect(&s, attempted(2, 0, 1, 250), EV_FOLD_APPLIED);
    assert_int_equal(s.status, EV_RUN_IS_RUNNING);
    assert_int_equal(s.attempts, 1);
    assert_int_equal(s.last_attempt_us, 2000000);
    assert_int_equal(s.next_delay_ms, 250);
    assert_int_equal(ev_run_step_status(&s, 0), EV_STEP_IS_RUNNING);
    assert_int_equal(ev_run_step_status(&s, 1), EV_STEP_IS_PENDING);
    /* attempt 2 succeeds: StepAttempted + StepSucceeded */
    fold_expect(&s, attempted(3, 0, 2, -1), EV_FOLD_APPLIED);
    assert_int_equal(s.next_delay_ms, -1);
    fold_expect(&s, step_ev(EV_STEP_SUCCEEDED, 4, 0), EV_FOLD_APPLIED);
    assert_int_equal(s.step, 1);
    assert_int_equal(s.attempts, 0);
    assert_int_equal(s.last_attempt_us, 0);
    assert_int_equal(s.status, EV_RUN_IS_RUNNING);
    assert_int_equal(ev_run_step_status(&s, 0), EV_STEP_IS_SUCCEEDED);
    assert_int_equal(ev_run_step_status(&s, 1), EV_STEP_IS_PENDING);
    /* the last step: StepAttempted + StepSucceeded + RunSucceeded */
    fold_expect(&s, attempted(5, 1, 1, -1), EV_FOLD_APPLIED);
    fold_expect(&s, step_ev(EV_STEP_SUCCEEDED, 6, 1), EV_FOLD_APPLIED);
    assert_int_equal(s.status, EV_RUN_IS_SUCCEEDED); /* every step succeeded */
    assert_false(s.ended);
    assert_false(ev_run_open(&s));
    fold_expect(&s, ev(EV_RUN_SUCCEEDED, 7), EV_FOLD_APPLIED);
    assert_int_equal(s.status, EV_RUN_IS_SUCCEEDED);
    assert_true(s.ended);
    assert_int_equal(ev_run_step_status(&s, 1), EV_STEP_IS_SUCCEEDED);
    assert_int_equal(ev_run_step_status(&s, 2), EV_STEP_IS_PENDING); /* no such step */
    /* re-reads are duplicates; anything new after the end is refused */
    fold_expect(&s, started(2), EV_FOLD_DUPLICATE);
    fold_expect(&s, attempted(3, 0, 2, -1), EV_FOLD_DUPLICATE);
    fold_expect(&s, ev(EV_RUN_SUCCEEDED, 8), EV_FOLD_REFUSED);
    fold_expect(&s, step_ev(EV_RUN_FAILED, 8, 1), EV_FOLD_REFUSED);
    fold_expect(&s, attempted(8, 2, 1, -1), EV_FOLD_REFUSED);
}

static void test_writer_failure(void **state)
{
    ev_run_state s;
    (void)state;

    ev_run_init(&s);
    fold_expect(&s, started(3), EV_FOLD_APPLIED);
    fold_expect(&s, attempted(2, 0, 1, -1), EV_FOLD_APPLIED);
    fold_expect(&s, step_ev(EV_STEP_SUCCEEDED, 3, 0), EV_FOLD_APPLIED);
    fold_expect(&s, attempted(4, 1, 1, 100), EV_FOLD_APPLIED);
    fold_expect(&s, attempted(5, 1, 2, -1), EV_FOLD_APPLIED);
    /* StepFailed ends the run at once */
    fold_expect(&s, step_ev(EV_STEP_FAILED, 6, 1), EV_FOLD_APPLIED);
    assert_int_equal(s.status, EV_RUN_IS_FAILED);
    assert_true(s.step_failed);
    assert_false(s.ended);
    assert_false(ev_run_open(&s));
    assert_int_equal(s.step, 1);
    assert_int_equal(s.attempts, 2);
    assert_int_equal(ev_run_step_status(&s, 0), EV_STEP_IS_SUCCEEDED);
    assert_int_equal(ev_run_step_status(&s, 1), EV_STEP_IS_FAILED);
    assert_int_equal(ev_run_step_status(&s, 2), EV_STEP_IS_PENDING);
    /* no attempt after it, no RunSucceeded; RunFailed ends it */
    fold_expect(&s, attempted(7, 1, 3, -1), EV_FOLD_REFUSED);
    fold_expect(&s, step_ev(EV_STEP_SUCCEEDED, 7, 1), EV_FOLD_REFUSED);
    fold_expect(&s, step_ev(EV_STEP_FAILED, 7, 1), EV_FOLD_REFUSED);
    fold_expect(&s, ev(EV_RUN_SUCCEEDED, 7), EV_FOLD_REFUSED);
    fold_expect(&s, step_ev(EV_RUN_FAILED, 7, 1), EV_FOLD_APPLIED);
    assert_int_equal(s.status, EV_RUN_IS_FAILED);
    assert_true(s.ended);
    fold_expect(&s, step_ev(EV_RUN_FAILED, 8, 1), EV_FOLD_REFUSED);
}

static void test_zero_steps(void **state)
{
    ev_run_state s;
    ev_envelope e;
    ev_step none[1];
    (void)state;

    memset(none, 0, sizeof none);
    ev_run_init(&s);
    fold_expect(&s, started(0), EV_FOLD_APPLIED);
    assert_int_equal(s.status, EV_RUN_IS_SUCCEEDED); /* nothing to do is done */
    assert_false(s.ended);
    assert_false(ev_run_open(&s));
    assert_int_equal(ev_run_step_status(&s, 0), EV_STEP_IS_PENDING);
    fold_expect(&s, attempted(2, 0, 1, -1), EV_FOLD_REFUSED);
    fold_expect(&s, attempted(2, 3, 1, -1), EV_FOLD_REFUSED);
    fold_expect(&s, step_ev(EV_STEP_SUCCEEDED, 2, 0), EV_FOLD_REFUSED);
    fold_expect(&s, step_ev(EV_STEP_FAILED, 2, 0), EV_FOLD_REFUSED);
    fold_expect(&s, step_ev(EV_RUN_FAILED, 2, 0), EV_FOLD_REFUSED);
    /* one RunSucceeded is accepted as its end event */
    fold_expect(&s, ev(EV_RUN_SUCCEEDED, 2), EV_FOLD_APPLIED);
    assert_true(s.ended);
    fold_expect(&s, ev(EV_RUN_SUCCEEDED, 3), EV_FOLD_REFUSED);

    /* an empty steps list counts, not step_count */
    ev_run_init(&s);
    e = started(4);
    e.payload.run_started.steps = ev_step_list_of(none, 0);
    fold_expect(&s, e, EV_FOLD_APPLIED);
    assert_int_equal(s.step_count, 0);
    assert_int_equal(s.status, EV_RUN_IS_SUCCEEDED);
}

static void test_versions(void **state)
{
    ev_run_state s;
    ev_envelope e;
    (void)state;

    ev_run_init(&s);
    /* unknown run: anything but RunStarted */
    fold_expect(&s, attempted(1, 0, 1, -1), EV_FOLD_REFUSED);
    fold_expect(&s, ev(EV_RUN_SUCCEEDED, 1), EV_FOLD_REFUSED);
    fold_expect(&s, attempted(2, 0, 1, -1), EV_FOLD_REFUSED);
    /* a RunStarted whose version is not 1: a gap */
    e = started(1);
    e.version = 2;
    fold_expect(&s, e, EV_FOLD_REFUSED);
    e.version = 0;
    fold_expect(&s, e, EV_FOLD_REFUSED);
    e.version = -5;
    fold_expect(&s, e, EV_FOLD_REFUSED);
    /* not a run event */
    e = ev(EV_WORKFLOW_ENABLED, 1);
    fold_expect(&s, e, EV_FOLD_REFUSED);
    e = ev(EV_RESOURCE_DELETED, 1);
    fold_expect(&s, e, EV_FOLD_REFUSED);

    fold_expect(&s, started(2), EV_FOLD_APPLIED);
    /* a second RunStarted: a duplicate at version 1, refused above it */
    fold_expect(&s, started(2), EV_FOLD_DUPLICATE);
    e = started(2);
    e.version = 2;
    fold_expect(&s, e, EV_FOLD_REFUSED);
    /* a gap is refused, whatever the event */
    fold_expect(&s, attempted(3, 0, 1, -1), EV_FOLD_REFUSED);
    fold_expect(&s, step_ev(EV_RUN_FAILED, 5, 0), EV_FOLD_REFUSED);
    fold_expect(&s, attempted(2, 0, 1, -1), EV_FOLD_APPLIED);
    /* the same version again, even with other contents: a duplicate */
    fold_expect(&s, attempted(2, 0, 7, -1), EV_FOLD_DUPLICATE);
    fold_expect(&s, step_ev(EV_STEP_FAILED, 1, 0), EV_FOLD_DUPLICATE);
    assert_int_equal(s.attempts, 1);
    /* more steps than a workflow may have */
    ev_run_init(&s);
    fold_expect(&s, started(EV_MAX_STEPS + 1), EV_FOLD_REFUSED);
    fold_expect(&s, started(EV_MAX_STEPS), EV_FOLD_APPLIED);
    assert_int_equal(s.step_count, EV_MAX_STEPS);
}

static void test_wrong_step_and_attempt(void **state)
{
    ev_run_state s;
    (void)state;

    ev_run_init(&s);
    fold_expect(&s, started(2), EV_FOLD_APPLIED);
    fold_expect(&s, attempted(2, 1, 1, -1), EV_FOLD_REFUSED); /* not the current step */
    fold_expect(&s, attempted(2, 0, 0, -1), EV_FOLD_REFUSED); /* attempt 0 */
    fold_expect(&s, attempted(2, 0, 2, -1), EV_FOLD_REFUSED); /* attempt 1 missing */
    fold_expect(&s, step_ev(EV_STEP_SUCCEEDED, 2, 1), EV_FOLD_REFUSED);
    fold_expect(&s, step_ev(EV_STEP_FAILED, 2, 5), EV_FOLD_REFUSED);
    fold_expect(&s, attempted(2, 0, 1, 10), EV_FOLD_APPLIED);
    fold_expect(&s, attempted(3, 0, 1, 10), EV_FOLD_REFUSED); /* recorded already */
    fold_expect(&s, attempted(3, 0, 3, 10), EV_FOLD_REFUSED); /* attempt 2 missing */
    fold_expect(&s, attempted(3, 0, 2, 10), EV_FOLD_APPLIED);
    fold_expect(&s, step_ev(EV_STEP_SUCCEEDED, 4, 0), EV_FOLD_APPLIED);
    fold_expect(&s, step_ev(EV_STEP_SUCCEEDED, 5, 0), EV_FOLD_REFUSED); /* step 0 is done */
    fold_expect(&s, attempted(5, 0, 3, 10), EV_FOLD_REFUSED);
    fold_expect(&s, attempted(5, 1, 1, 10), EV_FOLD_APPLIED);
    assert_int_equal(s.step, 1);
    assert_int_equal(s.attempts, 1);
}

static void test_end_events(void **state)
{
    ev_run_state s;
    ev_envelope e;
    (void)state;

    /* StepSucceeded/StepFailed need no attempt before them (the attempt field
     * is informational) */
    ev_run_init(&s);
    fold_expect(&s, started(2), EV_FOLD_APPLIED);
    e = step_ev(EV_STEP_SUCCEEDED, 2, 0);
    e.payload.step_succeeded.attempt = 9;
    fold_expect(&s, e, EV_FOLD_APPLIED);
    assert_int_equal(s.status, EV_RUN_IS_RUNNING);
    assert_int_equal(s.step, 1);
    fold_expect(&s, step_ev(EV_STEP_FAILED, 3, 1), EV_FOLD_APPLIED);
    assert_int_equal(s.status, EV_RUN_IS_FAILED);
    assert_int_equal(ev_run_step_status(&s, 1), EV_STEP_IS_FAILED);

    /* RunFailed of an open run, with any step */
    ev_run_init(&s);
    fold_expect(&s, started(2), EV_FOLD_APPLIED);
    fold_expect(&s, attempted(2, 0, 1, 5), EV_FOLD_APPLIED);
    fold_expect(&s, step_ev(EV_RUN_FAILED, 3, 7), EV_FOLD_APPLIED);
    assert_int_equal(s.status, EV_RUN_IS_FAILED);
    assert_true(s.ended);
    assert_false(s.step_failed);
    assert_int_equal(ev_run_step_status(&s, 0), EV_STEP_IS_RUNNING); /* attempted, never failed */

    /* RunSucceeded of an open run ends it early; its steps stay as they were */
    ev_run_init(&s);
    fold_expect(&s, started(1), EV_FOLD_APPLIED);
    fold_expect(&s, ev(EV_RUN_SUCCEEDED, 2), EV_FOLD_APPLIED);
    assert_int_equal(s.status, EV_RUN_IS_SUCCEEDED);
    assert_true(s.ended);
    assert_int_equal(s.step, 0);
    assert_int_equal(ev_run_step_status(&s, 0), EV_STEP_IS_PENDING);

    /* after every step succeeded, RunFailed is refused; RunSucceeded ends it */
    ev_run_init(&s);
    fold_expect(&s, started(1), EV_FOLD_APPLIED);
    fold_expect(&s, attempted(2, 0, 1, -1), EV_FOLD_APPLIED);
    fold_expect(&s, step_ev(EV_STEP_SUCCEEDED, 3, 0), EV_FOLD_APPLIED);
    fold_expect(&s, step_ev(EV_RUN_FAILED, 4, 0), EV_FOLD_REFUSED);
    fold_expect(&s, attempted(4, 1, 1, -1), EV_FOLD_REFUSED);
    fold_expect(&s, ev(EV_RUN_SUCCEEDED, 4), EV_FOLD_APPLIED);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(ev_run_status_name(EV_RUN_IS_PENDING), "pending");
    assert_string_equal(ev_run_status_name(EV_RUN_IS_RUNNING), "running");
    assert_string_equal(ev_run_status_name(EV_RUN_IS_SUCCEEDED), "succeeded");
    assert_string_equal(ev_run_status_name(EV_RUN_IS_FAILED), "failed");
    assert_null(ev_run_status_name(4));
    assert_null(ev_run_status_name(-1));
    assert_string_equal(ev_step_status_name(EV_STEP_IS_FAILED), "failed");
    assert_null(ev_step_status_name(9));
    for (int i = 0; i < 4; i++)
        assert_int_equal(ev_run_status_parse(ev_run_status_name(i)), i);
    assert_int_equal(ev_run_status_parse("done"), -1);
    assert_int_equal(ev_run_status_parse("Pending"), -1);
    assert_int_equal(ev_run_status_parse(""), -1);
    assert_int_equal(ev_run_status_parse(NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_success),
        cmocka_unit_test(test_writer_failure),
        cmocka_unit_test(test_zero_steps),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_wrong_step_and_attempt),
        cmocka_unit_test(test_end_events),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
