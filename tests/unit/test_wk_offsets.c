/*
 * test_wk_offsets.c — kcqrs-worker's partitions and commit points
 * (wk_offsets.h): a partition is ready only once read to the end after its
 * assignment; the commit point is the RunStarted of the oldest open run or
 * the consumed position; a point is sent once; records of partitions not
 * assigned are dropped; a revoke commits only the revoked partitions and
 * counts their attempts in flight; a new assignment starts over.
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
#include "wk_offsets.h"

static ev_fb_builder fb;

/* Fold a RunStarted (1 step) or a RunFailed of `id` at (part, off) into t. */
static wk_run *fold(wk_runs *t, ev_event_type type, const char *id, int64_t v, int32_t part,
                    int64_t off)
{
    ev_envelope e, d;
    ev_step st;
    char err[256];
    const uint8_t *p;
    size_t len;
    wk_run *r = NULL;
    const char *why;

    memset(&st, 0, sizeof st);
    st.action_type = EV_ACTION_HTTP;
    st.action.http.method = EV_HTTP_POST;
    st.action.http.url = ev_str_c("http://127.0.0.1:9/x");
    ev_envelope_init(&e, type);
    if (type == EV_RUN_STARTED) {
        e.payload.run_started.workflow_id = ev_str_c("wf1");
        e.payload.run_started.workflow_version = 1;
        e.payload.run_started.step_count = 1;
        e.payload.run_started.steps = ev_step_list_of(&st, 1);
    } else {
        e.payload.run_failed.error = ev_str_c("boom");
    }
    e.aggregate_id = ev_str_c(id);
    e.version = v;
    e.occurred_at_us = 1000000;
    e.actor = ev_str_c("test");
    memset(e.event_id.bytes, (int)v, sizeof e.event_id.bytes);
    if (ev_envelope_encode(&fb, &e, err, sizeof err) != 0)
        fail_msg("encode: %s", err);
    p = ev_fb_builder_data(&fb, &len);
    if (ev_envelope_decode(p, len, &d, err, sizeof err) != 0)
        fail_msg("decode: %s", err);
    assert_true(wk_runs_apply(t, &d, p, len, part, off, &r, &why) >= 0);
    return r;
}

static void test_ready_and_positions(void **state)
{
    (void)state;
    wk_offsets o;

    assert_int_equal(wk_offsets_init(&o, 0), KQ_EINVAL);
    assert_int_equal(wk_offsets_init(&o, 3), 0);
    assert_null(wk_offsets_part(&o, 3));
    assert_null(wk_offsets_part(&o, -1));
    /* not assigned: records are dropped, no end */
    assert_int_equal(wk_offsets_consumed(&o, 0, 5), 0);
    assert_int_equal(wk_offsets_eof(&o, 0, 6), 0);
    assert_int_equal(wk_offsets_consumed(&o, 9, 5), 0);
    wk_offsets_assign(&o, 0);
    assert_int_equal(wk_offsets_part(&o, 0)->assigned, 1);
    assert_int_equal(wk_offsets_part(&o, 0)->ready, 0);
    assert_int_equal(wk_offsets_part(&o, 0)->next, -1);
    assert_int_equal(wk_offsets_consumed(&o, 0, 5), 1);
    assert_int_equal(wk_offsets_part(&o, 0)->next, 6);
    /* the first end makes it ready, later ends do not again */
    assert_int_equal(wk_offsets_eof(&o, 0, 6), 1);
    assert_int_equal(wk_offsets_part(&o, 0)->ready, 1);
    assert_int_equal(wk_offsets_eof(&o, 0, 8), 0);
    assert_int_equal(wk_offsets_part(&o, 0)->next, 8);
    /* revoking: no longer ready; revoked: not assigned; reassigned: from scratch */
    wk_offsets_revoking(&o, 0);
    assert_int_equal(wk_offsets_part(&o, 0)->ready, 0);
    assert_int_equal(wk_offsets_part(&o, 0)->assigned, 1);
    wk_offsets_revoked(&o, 0);
    assert_int_equal(wk_offsets_part(&o, 0)->assigned, 0);
    assert_int_equal(wk_offsets_consumed(&o, 0, 9), 0);
    wk_offsets_assign(&o, 0);
    assert_int_equal(wk_offsets_part(&o, 0)->next, -1);
    assert_int_equal(wk_offsets_part(&o, 0)->committed, -1);
    assert_int_equal(wk_offsets_eof(&o, 0, 8), 1);
    wk_offsets_free(&o);
}

static void test_commit_points(void **state)
{
    (void)state;
    wk_offsets o;
    wk_runs *t = wk_runs_new();
    wk_commit_point pts[4];
    int32_t only[1] = {1};

    assert_non_null(t);
    assert_int_equal(wk_offsets_init(&o, 4), 0);
    /* nothing assigned: nothing to commit */
    assert_int_equal(wk_offsets_commit_points(&o, t, NULL, 0, pts), 0);
    wk_offsets_assign(&o, 0);
    wk_offsets_assign(&o, 1);
    wk_offsets_assign(&o, 2);
    /* assigned but nothing consumed: position unknown, nothing */
    assert_int_equal(wk_offsets_commit_points(&o, t, NULL, 0, pts), 0);
    /* partition 0: runs started at 10 and 20, read up to 30 */
    wk_offsets_consumed(&o, 0, 10);
    fold(t, EV_RUN_STARTED, "a", 1, 0, 10);
    wk_offsets_consumed(&o, 0, 20);
    fold(t, EV_RUN_STARTED, "b", 1, 0, 20);
    wk_offsets_eof(&o, 0, 30);
    /* partition 1: no open run, read to 7 */
    wk_offsets_eof(&o, 1, 7);
    /* partition 3 holds an open run but is not assigned */
    fold(t, EV_RUN_STARTED, "c", 1, 3, 4);
    assert_int_equal(wk_offsets_commit_points(&o, t, NULL, 0, pts), 2);
    assert_int_equal(pts[0].partition, 0);
    assert_int_equal(pts[0].offset, 10); /* the oldest open run */
    assert_int_equal(pts[1].partition, 1);
    assert_int_equal(pts[1].offset, 7); /* the position */
    /* the same points are not sent again */
    assert_int_equal(wk_offsets_commit_points(&o, t, NULL, 0, pts), 0);
    /* run a ends: the point moves to b's RunStarted */
    fold(t, EV_RUN_FAILED, "a", 2, 0, 31);
    assert_int_equal(wk_offsets_commit_points(&o, t, NULL, 0, pts), 1);
    assert_int_equal(pts[0].partition, 0);
    assert_int_equal(pts[0].offset, 20);
    /* a revoke commits only what is listed */
    wk_offsets_eof(&o, 1, 12);
    fold(t, EV_RUN_FAILED, "b", 2, 0, 32);
    assert_int_equal(wk_offsets_commit_points(&o, t, only, 1, pts), 1);
    assert_int_equal(pts[0].partition, 1);
    assert_int_equal(pts[0].offset, 12);
    /* partition 0 now has no open run: its position (30) */
    assert_int_equal(wk_offsets_commit_points(&o, t, NULL, 0, pts), 1);
    assert_int_equal(pts[0].partition, 0);
    assert_int_equal(pts[0].offset, 30);
    wk_runs_free(t);
    wk_offsets_free(&o);
}

static void test_in_flight(void **state)
{
    (void)state;
    wk_offsets o;
    int32_t revoked[3] = {0, 2, 17};
    int32_t all[3] = {0, 1, 2};

    assert_int_equal(wk_offsets_init(&o, 3), 0);
    wk_offsets_in_flight_add(&o, 0, 1);
    wk_offsets_in_flight_add(&o, 0, 1);
    wk_offsets_in_flight_add(&o, 1, 1);
    wk_offsets_in_flight_add(&o, 2, 1);
    wk_offsets_in_flight_add(&o, 5, 1); /* out of range: ignored */
    assert_int_equal(wk_offsets_in_flight(&o, revoked, 3), 3);
    assert_int_equal(wk_offsets_in_flight(&o, all, 3), 4);
    wk_offsets_in_flight_add(&o, 0, -2);
    assert_int_equal(wk_offsets_in_flight(&o, revoked, 3), 1);
    assert_int_equal(wk_offsets_in_flight(&o, revoked, 0), 0);
    wk_offsets_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready_and_positions),
        cmocka_unit_test(test_commit_points),
        cmocka_unit_test(test_in_flight),
    };
    int rc;

    ev_fb_builder_init(&fb);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    ev_fb_builder_free(&fb);
    return rc;
}
