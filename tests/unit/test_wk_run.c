/*
 * test_wk_run.c — kcqrs-worker's run fold and scheduler (wk_run.h): the
 * current step and recorded attempts folded from real encoded events, the
 * due time of the next attempt, version skips and gaps, finished runs, the
 * local advance after a 200 (and the fold arriving before or after it), the
 * commit point per partition, the heap order under random puts/removes.
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
                 int *gap)
{
    ev_envelope d;
    char err[256];
    int rc;

    if (ev_envelope_decode(buf, len, &d, err, sizeof err) != 0)
        fail_msg("decode: %s", err);
    rc = wk_runs_apply(t, &d, buf, len, part, off, r, gap);
    free(buf);
    return rc;
}

static int started(wk_runs *t, const char *id, uint32_t nsteps, int32_t part, int64_t off,
                   wk_run **r)
{
    ev_envelope e;
    ev_step steps[3];
    size_t len;
    int gap;

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
    return apply(t, buf, len, part, off, r, &gap);
}

static int attempted(wk_runs *t, const char *id, int64_t v, uint32_t step, uint32_t attempt,
                     int64_t delay, int64_t at_us, wk_run **r, int *gap)
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
    return apply(t, buf, len, 0, 10 + v, r, gap);
}

static int simple(wk_runs *t, ev_event_type type, const char *id, int64_t v, uint32_t step,
                  wk_run **r)
{
    ev_envelope e;
    size_t len;
    int gap;

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
    return apply(t, buf, len, 0, 10 + v, r, &gap);
}

static void test_fold(void **state)
{
    (void)state;
    wk_runs *t = wk_runs_new();
    wk_run *r, *r2;
    int gap;

    assert_non_null(t);
    assert_int_equal(started(t, "run-1", 2, 3, 42, &r), 1);
    assert_non_null(r);
    assert_string_equal(r->id, "run-1");
    assert_int_equal(r->partition, 3);
    assert_int_equal(r->started_offset, 42);
    assert_int_equal(r->step_count, 2);
    assert_int_equal(r->step, 0);
    assert_int_equal(r->attempts, 0);
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
    assert_int_equal(gap, 0);
    assert_int_equal(r->attempts, 1);
    assert_int_equal(r->last_attempt_ms, 5000);
    assert_int_equal(r->next_delay_ms, 250);
    assert_int_equal(wk_run_due_ms(r, 0), 5250);
    /* an old version is skipped */
    assert_int_equal(attempted(t, "run-1", 2, 0, 1, 999, 9000000, &r2, &gap), 0);
    assert_int_equal(r->next_delay_ms, 250);
    /* step 0 succeeds: step 1, attempts reset, due now */
    assert_int_equal(simple(t, EV_STEP_SUCCEEDED, "run-1", 3, 0, &r2), 1);
    assert_int_equal(r->step, 1);
    assert_int_equal(r->attempts, 0);
    assert_int_equal(wk_run_due_ms(r, 31), 31);
    /* a version gap is applied and reported */
    assert_int_equal(attempted(t, "run-1", 6, 1, 2, 100, 7000000, &r2, &gap), 1);
    assert_int_equal(gap, 1);
    assert_int_equal(r->attempts, 2);
    assert_int_equal(r->version, 6);
    assert_int_equal(simple(t, EV_STEP_SUCCEEDED, "run-1", 7, 1, &r2), 1);
    assert_int_equal(simple(t, EV_RUN_SUCCEEDED, "run-1", 8, 0, &r2), 1);
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
    int gap;

    assert_int_equal(started(t, "a", 2, 0, 5, &r), 1);
    /* our record of attempt 1 (retry) answered version 2 */
    wk_run_advance(r, 2, 1, 1, 400, 10000);
    assert_int_equal(r->attempts, 1);
    assert_int_equal(wk_run_due_ms(r, 0), 10400);
    /* the fold then brings the same event: skipped */
    assert_int_equal(attempted(t, "a", 2, 0, 1, 999, 1, &r2, &gap), 0);
    assert_int_equal(r->next_delay_ms, 400);
    /* the fold first (v3 attempted + v4 succeeded), the 200 (version 4) after */
    assert_int_equal(attempted(t, "a", 3, 0, 2, -1, 20000000, &r2, &gap), 1);
    assert_int_equal(simple(t, EV_STEP_SUCCEEDED, "a", 4, 0, &r2), 1);
    assert_int_equal(r->step, 1);
    wk_run_advance(r, 4, 2, 2, -1, 0);
    assert_int_equal(r->step, 1); /* not twice */
    /* last step succeeds by our answer: finished */
    wk_run_advance(r, 7, 1, 2, -1, 0);
    assert_int_equal(r->end, WK_RUN_SUCCEEDED);

    assert_int_equal(started(t, "b", 1, 0, 9, &r), 1);
    assert_int_equal(simple(t, EV_STEP_FAILED, "b", 2, 0, &r2), 1);
    assert_int_equal(r->end, WK_RUN_FAILED);
    assert_int_equal(started(t, "c", 1, 0, 11, &r), 1);
    wk_run_advance(r, 3, 1, 3, -1, 0);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fold),         cmocka_unit_test(test_failed_and_advance),
        cmocka_unit_test(test_commit_point), cmocka_unit_test(test_heap),
        cmocka_unit_test(test_many_runs),
    };
    int rc;

    ev_fb_builder_init(&fb);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    ev_fb_builder_free(&fb);
    return rc;
}
