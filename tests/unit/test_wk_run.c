/*
 * test_wk_run.c — kcqrs-worker's run table and scheduler (wk_run.h): the
 * current step and recorded attempts folded (ev_run.h) from real encoded
 * events, the due time of the next attempt, version skips, refused events
 * (gaps, other steps, after the end), StepFailed ending the run, zero-step
 * runs, the local advance after a 200 (and the fold arriving before or
 * after it; a randomized check that it agrees with the fold of the writer's
 * events), the commit point per partition, the heap order under random
 * puts/removes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ev_codec.h"
#include "kq_err.h"
#include "wk_record.h"
#include "wk_run.h"

static ev_fb_builder fb;

/* Encode one run event of `id` at version v; returns a malloc'd copy. */
static uint8_t *enc(ev_envelope *e, const char *id, int64_t v, int64_t at_us, size_t *len)
{
    char err[256];
    const uint8_t *p;
    uint8_t *copy;

    e->aggregate_id = ev_str_c(id);
    e->version = v;
    e->occurred_at_us = at_us;
    e->actor = ev_str_c("test");
    memset(e->event_id.bytes, (int)v, sizeof e->event_id.bytes);
    if (ev_envelope_encode(&fb, e, err, sizeof err) != 0)
        fail_msg("encode: %s", err);
    p = ev_fb_builder_data(&fb, len);
    copy = malloc(*len);
    assert_non_null(copy);
    memcpy(copy, p, *len);
    return copy;
}

/* Apply an encoded event; returns wk_runs_apply's answer. */
static int apply(wk_runs *t, uint8_t *buf, size_t len, int32_t part, int64_t off, wk_run **r,
                 const char **why)
{
    ev_envelope d;
    char err[256];
    int rc;

    if (ev_envelope_decode(buf, len, &d, err, sizeof err) != 0)
        fail_msg("decode: %s", err);
    rc = wk_runs_apply(t, &d, buf, len, part, off, r, why);
    free(buf);
    return rc;
}

static int started(wk_runs *t, const char *id, uint32_t nsteps, int32_t part, int64_t off,
                   wk_run **r)
{
    ev_envelope e;
    ev_step steps[3];
    size_t len;
    const char *why;

    memset(steps, 0, sizeof steps);
    for (uint32_t i = 0; i < nsteps; i++) {
        steps[i].action_type = EV_ACTION_HTTP;
        steps[i].action.http.method = EV_HTTP_POST;
        steps[i].action.http.url = ev_str_c("http://127.0.0.1:9/x");
    }
    ev_envelope_init(&e, EV_RUN_STARTED);
    e.payload.run_started.workflow_id = ev_str_c("wf1");
    e.payload.run_started.workflow_version = 1;
    e.payload.run_started.payload_json = ev_str_c("{\"a\":1}");
    e.payload.run_started.step_count = nsteps;
    e.payload.run_started.steps = ev_step_list_of(steps, nsteps);
    e.payload.run_started.signing_secret = ev_str_c("s3cret");
    uint8_t *buf = enc(&e, id, 1, 1000000, &len);
    return apply(t, buf, len, part, off, r, &why);
}

static int attempted(wk_runs *t, const char *id, int64_t v, uint32_t step, uint32_t attempt,
                     int64_t delay, int64_t at_us, wk_run **r, const char **why)
{
    ev_envelope e;
    size_t len;

    ev_envelope_init(&e, EV_STEP_ATTEMPTED);
    e.payload.step_attempted.step = step;
    e.payload.step_attempted.attempt = attempt;
    e.payload.step_attempted.has_status_code = true;
    e.payload.step_attempted.status_code = 500;
    e.payload.step_attempted.duration_ms = 3;
    e.payload.step_attempted.has_next_delay_ms = delay >= 0;
    e.payload.step_attempted.next_delay_ms = delay >= 0 ? delay : 0;
    e.payload.step_attempted.delivery_id = ev_str_c("r.0");
    uint8_t *buf = enc(&e, id, v, at_us, &len);
    return apply(t, buf, len, 0, 10 + v, r, why);
}

static int simple(wk_runs *t, ev_event_type type, const char *id, int64_t v, uint32_t step,
                  wk_run **r)
{
    ev_envelope e;
    size_t len;
    const char *why;

    ev_envelope_init(&e, type);
    if (type == EV_STEP_SUCCEEDED) {
        e.payload.step_succeeded.step = step;
        e.payload.step_succeeded.attempt = 1;
    } else if (type == EV_STEP_FAILED) {
        e.payload.step_failed.step = step;
        e.payload.step_failed.attempt = 1;
        e.payload.step_failed.error = ev_str_c("boom");
    } else if (type == EV_RUN_FAILED) {
        e.payload.run_failed.step = step;
        e.payload.run_failed.error = ev_str_c("boom");
    }
    uint8_t *buf = enc(&e, id, v, 2000000, &len);
    return apply(t, buf, len, 0, 10 + v, r, &why);
}

static void test_fold(void **state)
{
    (void)state;
    wk_runs *t = wk_runs_new();
    wk_run *r, *r2;
    const char *gap;

    assert_non_null(t);
    assert_int_equal(started(t, "run-1", 2, 3, 42, &r), 1);
    assert_non_null(r);
    assert_string_equal(r->id, "run-1");
    assert_int_equal(r->partition, 3);
    assert_int_equal(r->started_offset, 42);
    assert_int_equal(r->st.step_count, 2);
    assert_int_equal(r->st.step, 0);
    assert_int_equal(r->st.attempts, 0);
    assert_int_equal(r->end, WK_RUN_OPEN);
    assert_int_equal(wk_run_due_ms(r, 777), 777); /* nothing attempted: now */
    /* the RunStarted copy decodes and carries the steps */
    {
        ev_envelope d;
        char err[128];
        ev_step s;
        assert_int_equal(ev_envelope_decode(r->started, r->started_len, &d, err, sizeof err), 0);
        assert_int_equal(ev_step_list_get(&d.payload.run_started.steps, 1, &s), 0);
        assert_int_equal(s.action_type, EV_ACTION_HTTP);
    }
    /* a re-read of the RunStarted is skipped */
    assert_int_equal(started(t, "run-1", 2, 3, 42, &r2), 0);
    assert_int_equal(wk_runs_count(t), 1);

    assert_int_equal(attempted(t, "run-1", 2, 0, 1, 250, 5000000, &r2, &gap), 1);
    assert_ptr_equal(r2, r);
    assert_null(gap); /* applied: no reason */
    assert_int_equal(r->st.attempts, 1);
    assert_int_equal(r->st.last_attempt_us, 5000000);
    assert_int_equal(r->st.next_delay_ms, 250);
    assert_int_equal(wk_run_due_ms(r, 0), 5250);
    /* an old version is skipped */
    assert_int_equal(attempted(t, "run-1", 2, 0, 1, 999, 9000000, &r2, &gap), 0);
    assert_int_equal(r->st.next_delay_ms, 250);
    /* step 0 succeeds: step 1, attempts reset, due now */
    assert_int_equal(simple(t, EV_STEP_SUCCEEDED, "run-1", 3, 0, &r2), 1);
    assert_int_equal(r->st.step, 1);
    assert_int_equal(r->st.attempts, 0);
    assert_int_equal(wk_run_due_ms(r, 31), 31);
    /* a version gap is refused and reported: nothing changes (the rule of ev_run.h) */
    assert_int_equal(attempted(t, "run-1", 6, 1, 2, 100, 7000000, &r2, &gap), WK_RUNS_REFUSED);
    assert_ptr_equal(r2, r);
    assert_non_null(strstr(gap, "gap"));
    assert_int_equal(r->st.attempts, 0);
    assert_int_equal(r->st.version, 3);
    assert_int_equal(attempted(t, "run-1", 4, 1, 1, 100, 7000000, &r2, &gap), 1);
    assert_int_equal(r->st.attempts, 1);
    assert_int_equal(r->st.version, 4);
    assert_int_equal(simple(t, EV_STEP_SUCCEEDED, "run-1", 5, 1, &r2), 1);
    assert_int_equal(simple(t, EV_RUN_SUCCEEDED, "run-1", 6, 0, &r2), 1);
    assert_int_equal(r->end, WK_RUN_SUCCEEDED);
    /* events of an unknown run are ignored */
    assert_int_equal(simple(t, EV_STEP_SUCCEEDED, "nope", 2, 0, &r2), 0);
    assert_null(r2);
    wk_runs_remove(t, r);
    assert_int_equal(wk_runs_count(t), 0);
    assert_null(wk_runs_get(t, "run-1"));
    wk_runs_free(t);
}

static void test_failed_and_advance(void **state)
{
    (void)state;
    wk_runs *t = wk_runs_new();
    wk_run *r, *r2;
    const char *gap;

    assert_int_equal(started(t, "a", 2, 0, 5, &r), 1);
    /* our record of attempt 1 (retry) answered version 2 */
    assert_int_equal(wk_run_advance(r, 2, 1, 1, 400, 10000), WK_ADVANCE_APPLIED);
    assert_int_equal(r->st.attempts, 1);
    assert_int_equal(wk_run_due_ms(r, 0), 10400);
    /* the fold then brings the same event: skipped */
    assert_int_equal(attempted(t, "a", 2, 0, 1, 999, 1, &r2, &gap), 0);
    assert_int_equal(r->st.next_delay_ms, 400);
    /* the fold first (v3 attempted + v4 succeeded), the 200 (version 4) after */
    assert_int_equal(attempted(t, "a", 3, 0, 2, -1, 20000000, &r2, &gap), 1);
    assert_int_equal(simple(t, EV_STEP_SUCCEEDED, "a", 4, 0, &r2), 1);
    assert_int_equal(r->st.step, 1);
    assert_int_equal(wk_run_advance(r, 4, 2, 2, -1, 0), WK_ADVANCE_KNOWN);
    assert_int_equal(r->st.step, 1); /* not twice */
    /* an answer whose events follow events not read yet: nothing changes */
    assert_int_equal(wk_run_advance(r, 9, 1, 2, -1, 0), WK_ADVANCE_AHEAD);
    assert_int_equal(r->st.step, 1);
    assert_int_equal(r->st.version, 4);
    /* last step succeeds by our answer (StepAttempted, StepSucceeded, RunSucceeded): finished */
    assert_int_equal(wk_run_advance(r, 7, 1, 2, -1, 0), WK_ADVANCE_APPLIED);
    assert_int_equal(r->end, WK_RUN_SUCCEEDED);

    assert_int_equal(started(t, "b", 1, 0, 9, &r), 1);
    assert_int_equal(simple(t, EV_STEP_FAILED, "b", 2, 0, &r2), 1);
    assert_int_equal(r->end, WK_RUN_FAILED);
    assert_int_equal(started(t, "c", 1, 0, 11, &r), 1);
    /* failed by our answer: StepAttempted, StepFailed, RunFailed (versions 2..4) */
    assert_int_equal(wk_run_advance(r, 4, 1, 3, -1, 0), WK_ADVANCE_APPLIED);
    assert_int_equal(r->end, WK_RUN_FAILED);
    wk_runs_free(t);
}

static void test_commit_point(void **state)
{
    (void)state;
    wk_runs *t = wk_runs_new();
    wk_run *a, *b, *c, *r2;

    assert_int_equal(wk_runs_oldest_open(t, 0), -1);
    assert_int_equal(started(t, "a", 1, 0, 100, &a), 1);
    assert_int_equal(started(t, "b", 1, 0, 50, &b), 1);
    assert_int_equal(started(t, "c", 1, 1, 7, &c), 1);
    assert_int_equal(wk_runs_oldest_open(t, 0), 50);
    assert_int_equal(wk_runs_oldest_open(t, 1), 7);
    assert_int_equal(wk_runs_oldest_open(t, 2), -1);
    assert_int_equal(simple(t, EV_RUN_FAILED, "b", 2, 0, &r2), 1);
    assert_int_equal(wk_runs_oldest_open(t, 0), 100); /* a finished run no longer holds it */
    wk_runs_free(t);
}

static void test_heap(void **state)
{
    (void)state;
    wk_runs *t = wk_runs_new();
    enum { N = 300 };
    wk_run *runs[N];
    unsigned seed = 99;
    char id[16];

    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "r%d", i);
        assert_int_equal(started(t, id, 1, 0, i, &runs[i]), 1);
        assert_int_equal(wk_sched_put(t, runs[i], rand_r(&seed) % 1000), 0);
    }
    assert_int_equal(wk_sched_count(t), N);
    /* move some, remove some (also through wk_runs_remove) */
    for (int i = 0; i < N; i += 3)
        assert_int_equal(wk_sched_put(t, runs[i], rand_r(&seed) % 1000), 0);
    for (int i = 1; i < N; i += 7)
        wk_sched_remove(t, runs[i]);
    wk_sched_remove(t, runs[1]); /* twice: no-op */
    wk_runs_remove(t, runs[2]);
    {
        int64_t last = -1;
        size_t n = 0;
        wk_run *r;
        while ((r = wk_sched_peek(t)) != NULL) {
            assert_true(r->due_ms >= last);
            last = r->due_ms;
            wk_sched_remove(t, r);
            assert_int_equal(r->heap_idx, SIZE_MAX);
            n++;
        }
        assert_int_equal(n, N - (N + 6) / 7 - 1);
    }
    assert_int_equal(wk_runs_count(t), N - 1);
    wk_runs_free(t);
}

static void test_many_runs(void **state)
{
    (void)state;
    wk_runs *t = wk_runs_new();
    char id[32];
    wk_run *r;

    for (int i = 0; i < 5000; i++) { /* the table grows */
        snprintf(id, sizeof id, "run-%d", i);
        assert_int_equal(started(t, id, 1, i % 4, i, &r), 1);
    }
    assert_int_equal(wk_runs_count(t), 5000);
    for (int i = 0; i < 5000; i += 13) {
        snprintf(id, sizeof id, "run-%d", i);
        r = wk_runs_get(t, id);
        assert_non_null(r);
        assert_int_equal(r->started_offset, i);
    }
    assert_int_equal(wk_runs_oldest_open(t, 3), 3);
    wk_runs_free(t);
}

/* The rule of ev_run.h as the worker sees it: StepFailed ends the run, a
 * zero-step run is done at its RunStarted, refused events change nothing. */
static void test_rule(void **state)
{
    (void)state;
    wk_runs *t = wk_runs_new();
    wk_run *r, *r2;
    const char *why;

    /* StepFailed: FAILED at once, a later attempt of that step is refused */
    assert_int_equal(started(t, "f", 2, 0, 1, &r), 1);
    assert_int_equal(attempted(t, "f", 2, 0, 1, 100, 3000000, &r2, &why), WK_RUNS_APPLIED);
    assert_int_equal(simple(t, EV_STEP_FAILED, "f", 3, 0, &r2), WK_RUNS_APPLIED);
    assert_int_equal(r->end, WK_RUN_FAILED);
    assert_int_equal(r->st.status, EV_RUN_IS_FAILED);
    assert_int_equal(attempted(t, "f", 4, 0, 2, 100, 4000000, &r2, &why), WK_RUNS_REFUSED);
    assert_non_null(why);
    assert_int_equal(r->st.version, 3);
    assert_int_equal(simple(t, EV_RUN_FAILED, "f", 4, 0, &r2), WK_RUNS_APPLIED);
    assert_int_equal(r->st.ended, 1);
    /* after the end: refused */
    assert_int_equal(simple(t, EV_RUN_SUCCEEDED, "f", 5, 0, &r2), WK_RUNS_REFUSED);
    assert_int_equal(r->end, WK_RUN_FAILED);

    /* zero steps: succeeded at RunStarted */
    assert_int_equal(started(t, "z", 0, 0, 2, &r), WK_RUNS_APPLIED);
    assert_int_equal(r->end, WK_RUN_SUCCEEDED);
    assert_int_equal(r->st.status, EV_RUN_IS_SUCCEEDED);

    /* another step's event, an attempt out of order: refused, nothing changes */
    assert_int_equal(started(t, "o", 2, 0, 3, &r), WK_RUNS_APPLIED);
    assert_int_equal(attempted(t, "o", 2, 1, 1, 100, 3000000, &r2, &why), WK_RUNS_REFUSED);
    assert_ptr_equal(r2, r);
    assert_int_equal(attempted(t, "o", 2, 0, 2, 100, 3000000, &r2, &why), WK_RUNS_REFUSED);
    assert_int_equal(simple(t, EV_STEP_SUCCEEDED, "o", 2, 1, &r2), WK_RUNS_REFUSED);
    assert_int_equal(r->st.version, 1);
    assert_int_equal(r->st.attempts, 0);
    assert_int_equal(r->end, WK_RUN_OPEN);
    /* a RunStarted at version 2 of a new run: refused, no run */
    {
        ev_envelope e;
        ev_step st;
        size_t len;
        uint8_t *buf;
        memset(&st, 0, sizeof st);
        st.action_type = EV_ACTION_HTTP;
        st.action.http.method = EV_HTTP_POST;
        st.action.http.url = ev_str_c("http://127.0.0.1:9/x");
        ev_envelope_init(&e, EV_RUN_STARTED);
        e.payload.run_started.workflow_id = ev_str_c("wf1");
        e.payload.run_started.workflow_version = 1;
        e.payload.run_started.step_count = 1;
        e.payload.run_started.steps = ev_step_list_of(&st, 1);
        buf = enc(&e, "late", 2, 1000000, &len);
        assert_int_equal(apply(t, buf, len, 0, 4, &r2, &why), WK_RUNS_REFUSED);
        assert_null(r2);
        assert_null(wk_runs_get(t, "late"));
    }
    wk_runs_free(t);
}

/* Encode and fold the events the writer appends for one record (as
 * commands/ decides them), versions from v+1; returns the last version. */
static int64_t fold_writer_events(wk_runs *t, const char *id, const wk_run *r, uint32_t attempt,
                                  int outcome, int64_t delay, int64_t now_ms)
{
    ev_envelope e;
    size_t len;
    const char *why;
    wk_run *r2;
    int64_t v = r->st.version;
    uint32_t step = r->st.step;
    int last = step + 1 == r->st.step_count;
    ev_event_type types[3];
    int n = 0;

    types[n++] = EV_STEP_ATTEMPTED;
    if (outcome == WK_OUTCOME_SUCCEEDED) {
        types[n++] = EV_STEP_SUCCEEDED;
        if (last)
            types[n++] = EV_RUN_SUCCEEDED;
    } else if (outcome == WK_OUTCOME_FAILED) {
        types[n++] = EV_STEP_FAILED;
        types[n++] = EV_RUN_FAILED;
    }
    for (int i = 0; i < n; i++) {
        ev_envelope_init(&e, types[i]);
        if (types[i] == EV_STEP_ATTEMPTED) {
            e.payload.step_attempted.step = step;
            e.payload.step_attempted.attempt = attempt;
            e.payload.step_attempted.duration_ms = 1;
            e.payload.step_attempted.has_next_delay_ms = outcome == WK_OUTCOME_RETRY;
            e.payload.step_attempted.next_delay_ms = outcome == WK_OUTCOME_RETRY ? delay : 0;
            e.payload.step_attempted.delivery_id = ev_str_c("d.0");
        } else if (types[i] == EV_STEP_SUCCEEDED) {
            e.payload.step_succeeded.step = step;
            e.payload.step_succeeded.attempt = attempt;
        } else if (types[i] == EV_STEP_FAILED) {
            e.payload.step_failed.step = step;
            e.payload.step_failed.attempt = attempt;
            e.payload.step_failed.error = ev_str_c("boom");
        } else if (types[i] == EV_RUN_FAILED) {
            e.payload.run_failed.step = step;
            e.payload.run_failed.error = ev_str_c("boom");
        }
        uint8_t *buf = enc(&e, id, v + 1 + i, now_ms * 1000, &len);
        assert_int_equal(apply(t, buf, len, 0, 100 + v + i, &r2, &why), WK_RUNS_APPLIED);
    }
    return v + n;
}

/*
 * wk_run_advance (the worker's own 200 answer) agrees with the fold of the
 * events the writer appends for that record: random runs and outcomes, the
 * answer before the fold, after it, or alone; the states are equal after
 * every record.
 */
static void test_advance_agrees_with_fold(void **state)
{
    (void)state;
    wk_runs *fa = wk_runs_new(); /* the fold of the log */
    wk_runs *ad = wk_runs_new(); /* the worker's answers (and the log, sometimes) */
    unsigned seed = 12345;
    char id[32];
    long records = 0;

    for (int k = 0; k < 400; k++) {
        wk_run *a, *b;
        uint32_t nsteps = 1 + (uint32_t)(rand_r(&seed) % 3);
        int64_t now = 1000000;

        snprintf(id, sizeof id, "p-%d", k);
        assert_int_equal(started(fa, id, nsteps, 0, k, &a), 1);
        assert_int_equal(started(ad, id, nsteps, 0, k, &b), 1);
        while (a->end == WK_RUN_OPEN) {
            int roll = rand_r(&seed) % 10;
            int outcome = roll < 4   ? WK_OUTCOME_RETRY
                          : roll < 9 ? WK_OUTCOME_SUCCEEDED
                                     : WK_OUTCOME_FAILED;
            uint32_t attempt = a->st.attempts + 1;
            int64_t delay = rand_r(&seed) % 5000;
            int order = rand_r(&seed) % 3;
            int64_t v;

            now += 1 + rand_r(&seed) % 3000;
            if (order == 1) { /* the log first, then the answer */
                fold_writer_events(ad, id, b, attempt, outcome, delay, now);
            }
            v = fold_writer_events(fa, id, a, attempt, outcome, delay, now);
            assert_int_equal(wk_run_advance(b, v, attempt, outcome, delay, now),
                             order == 1 ? WK_ADVANCE_KNOWN : WK_ADVANCE_APPLIED);
            if (order == 2) { /* the answer first, then the log: re-reads */
                wk_run *r2;
                const char *why;
                ev_envelope e;
                size_t len;
                ev_envelope_init(&e, EV_RUN_FAILED);
                e.payload.run_failed.error = ev_str_c("x");
                uint8_t *buf = enc(&e, id, v, now * 1000, &len);
                assert_int_equal(apply(ad, buf, len, 0, 1, &r2, &why), WK_RUNS_SKIPPED);
            }
            assert_int_equal(b->st.version, a->st.version);
            assert_int_equal(b->st.status, a->st.status);
            assert_int_equal(b->st.step, a->st.step);
            assert_int_equal(b->st.step_count, a->st.step_count);
            assert_int_equal(b->st.attempts, a->st.attempts);
            assert_int_equal(b->st.step_failed, a->st.step_failed);
            assert_int_equal(b->st.ended, a->st.ended);
            assert_int_equal(b->st.last_attempt_us, a->st.last_attempt_us);
            assert_int_equal(b->st.next_delay_ms, a->st.next_delay_ms);
            assert_int_equal(b->end, a->end);
            assert_int_equal(wk_run_due_ms(b, 7), wk_run_due_ms(a, 7));
            records++;
        }
    }
    assert_true(records > 800);
    wk_runs_free(fa);
    wk_runs_free(ad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fold),
        cmocka_unit_test(test_failed_and_advance),
        cmocka_unit_test(test_commit_point),
        cmocka_unit_test(test_heap),
        cmocka_unit_test(test_many_runs),
        cmocka_unit_test(test_rule),
        cmocka_unit_test(test_advance_agrees_with_fold),
    };
    int rc;

    ev_fb_builder_init(&fb);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    ev_fb_builder_free(&fb);
    return rc;
}
