/*
 * test_cmd_expiry.c — KCQRS_IDEMPOTENCY_TTL on the command-side state
 * (issue #19 item 6): Idempotency-Keys and finished runs are kept for the
 * window after their event's time and then leave memory and the snapshot.
 * A controllable clock (fx_clock) and event times (fx_event_us) drive it:
 *   - a key answers its original answer inside the window and as a new
 *     request after it (no 422 for another body, a create of the same id is
 *     409 like any create of an existing id); a key used again after it
 *     expired is kept for the new window;
 *   - pruning is incremental: each cmd_state_expire call removes at most its
 *     budget; applying events prunes a few as it goes; the queue shrinks;
 *   - a rebuild from the log (the apply path catch-up uses) does not record
 *     keys or keep finished runs older than the window, and equals the live
 *     state after pruning;
 *   - finished runs: 409 run_finished inside the window, pruned after it
 *     (attempt 404), open runs never; failed and zero-step runs too;
 *   - snapshots: deletion records take expired entries out of the snapshot
 *     (incremental and full deltas), and loading skips (and deletes) what
 *     expired since the snapshot was written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_snapshot.h"
#include "cmd_state.h"
#include "kq_err.h"
#include "test_cmd_fixture.h"

static const char *const TOPICS[CMD_TOPICS] = {"exp.resource.events", "exp.workflow.events",
                                               "exp.run.events"};

#define HOUR_US (3600LL * 1000000)
#define T0 1700000000000000LL

static void new_state(cmd_state *st)
{
    assert_int_equal(cmd_state_init(st, 4), 0);
    st->clock_us = fx_clock;
    cmd_state_set_ttl(st, HOUR_US);
    fx_event_us = fx_now_us = T0;
}

/* Records of `kind` in the state's delta: puts and deletions. */
static void delta_count(const cmd_state *st, char kind, size_t *puts, size_t *dels)
{
    size_t pos = 0, kl, vl;
    char k;
    const char *key;
    const void *v;

    *puts = *dels = 0;
    while (cmd_delta_next(&st->delta, &pos, &k, &key, &kl, &v, &vl) == 1)
        if (k == kind)
            (vl == 0 ? (*dels)++ : (*puts)++);
}

static void test_key_window(void **state)
{
    cmd_state st;
    int64_t off = 0;
    cmd_decision d;
    cmd_command c;
    size_t puts, dels;

    (void)state;
    new_state(&st);
    cmd_state_track(&st, 1);
    fx_dc(&st, fx_res(CMD_CREATE, "r1", "one", "k1"), &off);
    assert_non_null(cmd_state_idem(&st, "k1"));
    assert_int_equal(cmd_state_idem(&st, "k1")->at_us, T0);

    /* inside the window: the original answer, and 422 for another request */
    fx_now_us = T0 + HOUR_US - 1;
    c = fx_res(CMD_CREATE, "r1", "one", "k1");
    d = fx_decide_commit(&st, &c, &off);
    assert_int_equal(d.kind, CMD_D_REPLAY);
    assert_int_equal(d.idem.status, 201);
    cmd_command_clear(&c);
    fx_expect_error(fx_dc(&st, fx_res(CMD_CREATE, "r2", "two", "k1"), &off), 422,
                    "idempotency_key_reused");
    assert_int_equal(cmd_state_expire(&st, 100), 0);

    /* at the end of the window the key is gone for decisions at once, even
     * before it is pruned: the same request is judged afresh (409: r1 exists) */
    fx_now_us = T0 + HOUR_US;
    assert_null(cmd_state_idem(&st, "k1"));
    assert_int_equal(cmd_state_idem_count(&st), 1); /* not pruned yet */
    fx_expect_error(fx_dc(&st, fx_res(CMD_CREATE, "r1", "one", "k1"), &off), 409, "conflict");
    assert_int_equal(cmd_state_expire(&st, 100), 1);
    assert_int_equal(cmd_state_idem_count(&st), 0);
    assert_int_equal(st.expired_keys, 1);
    delta_count(&st, 'i', &puts, &dels);
    assert_int_equal(puts, 1);
    assert_int_equal(dels, 1);

    /* another request with the expired key is a new one */
    fx_event_us = fx_now_us = T0 + 2 * HOUR_US;
    d = fx_dc(&st, fx_res(CMD_CREATE, "r2", "two", "k1"), &off);
    assert_int_equal(d.kind, CMD_D_APPEND);
    assert_string_equal(cmd_state_idem(&st, "k1")->id, "r2");
    cmd_state_free(&st);
}

/* A key recorded again after it expired but before it was pruned keeps its
 * entry (and its place in the queue moves to the new window). */
static void test_key_recorded_again(void **state)
{
    cmd_state st;
    int64_t off = 0;

    (void)state;
    new_state(&st);
    fx_dc(&st, fx_res(CMD_CREATE, "a", "a", "k"), &off);
    fx_event_us = fx_now_us = T0 + HOUR_US + 5;
    /* no prune between: apply prunes a few per event, so the key may go
     * here already; either way a new request records it again */
    assert_null(cmd_state_idem(&st, "k"));
    assert_int_equal(fx_dc(&st, fx_res(CMD_CREATE, "b", "b", "k"), &off).kind, CMD_D_APPEND);
    assert_int_equal(cmd_state_idem(&st, "k")->at_us, T0 + HOUR_US + 5);
    fx_now_us = T0 + 2 * HOUR_US; /* the first window is long over, the second not */
    cmd_state_expire(&st, 100);
    assert_non_null(cmd_state_idem(&st, "k"));
    assert_string_equal(cmd_state_idem(&st, "k")->id, "b");
    fx_now_us = T0 + 2 * HOUR_US + 5;
    cmd_state_expire(&st, 100);
    assert_null(cmd_state_idem(&st, "k"));
    assert_int_equal(cmd_state_idem_count(&st), 0);
    cmd_state_free(&st);
}

/* Each call removes at most its budget; applying events prunes a few each;
 * the queue's ring shrinks when it empties. */
static void test_incremental(void **state)
{
    enum { N = 5000 };
    cmd_state st;
    int64_t off = 0;
    char id[32];
    size_t bytes_full, n;

    (void)state;
    new_state(&st);
    for (int i = 0; i < N; i++) {
        fx_event_us = fx_now_us = T0 + i; /* one key per µs */
        snprintf(id, sizeof id, "r%d", i);
        fx_dc(&st, fx_res(CMD_CREATE, id, "n", id), &off);
    }
    assert_int_equal(cmd_state_idem_count(&st), N);
    bytes_full = cmd_expiry_bytes(&st.idem_q);
    assert_true(bytes_full >= N * sizeof(cmd_expiry_ent));

    /* half the keys are due: one call takes at most its budget, in order */
    fx_now_us = T0 + HOUR_US + N / 2 - 1;
    assert_int_equal(cmd_state_expire(&st, 7), 7);
    assert_int_equal(cmd_state_idem_count(&st), N - 7);
    assert_null(kq_map_get(st.idem, "r0"));
    assert_null(kq_map_get(st.idem, "r6"));
    assert_non_null(kq_map_get(st.idem, "r7"));
    while ((n = cmd_state_expire(&st, 100)) > 0)
        assert_true(n <= 100);
    assert_int_equal(cmd_state_idem_count(&st), N / 2);
    assert_non_null(cmd_state_idem(&st, "r2500"));

    /* applying events prunes CMD_EXPIRE_PER_EVENT due entries each */
    fx_now_us = fx_event_us = T0 + 2 * HOUR_US;
    fx_dc(&st, fx_res(CMD_CREATE, "late", "n", NULL), &off);
    assert_int_equal(cmd_state_idem_count(&st), N / 2 - CMD_EXPIRE_PER_EVENT);
    while (cmd_state_expire(&st, 1000) > 0)
        ;
    assert_int_equal(cmd_state_idem_count(&st), 0);
    assert_int_equal(st.expired_keys, N);
    assert_true(cmd_expiry_bytes(&st.idem_q) < bytes_full / 8);
    cmd_state_free(&st);
}

/* The rebuild path: a state that applies the same history later (a restart
 * reading the log, cmd_aggregate_apply) holds only what is inside the
 * window, and equals the live state once that has pruned. */
static void history(cmd_state *st, int64_t *off)
{
    cmd_command c;

    fx_event_us = T0;
    c = fx_wf_create("w1", "s1", 1);
    fx_with_key(&c, "k-wf", 1);
    fx_dc(st, c, off);
    c = fx_run_start("old-run", "w1", NULL);
    fx_with_key(&c, "k-old-run", 2);
    fx_dc(st, c, off);
    fx_dc(st, fx_attempt("old-run", 0, 1, CMD_OUT_SUCCEEDED), off);
    fx_dc(st, fx_res(CMD_CREATE, "res-old", "n", "k-old"), off);
    fx_event_us = T0 + 2 * HOUR_US;
    fx_dc(st, fx_res(CMD_CREATE, "res-new", "n", "k-new"), off);
    c = fx_run_start("new-run", "w1", NULL);
    fx_with_key(&c, "k-new-run", 3);
    fx_dc(st, c, off);
    fx_dc(st, fx_attempt("new-run", 0, 1, CMD_OUT_FAILED), off);
    fx_dc(st, fx_run_start("open-old", "w1", NULL), off);
}

static void test_rebuild_bounded(void **state)
{
    cmd_state live, again;
    int64_t off = 0, off2 = 0;

    (void)state;
    new_state(&live);
    fx_now_us = T0; /* live: every event applied when it happened */
    {
        /* history() moves fx_event_us; the live clock follows it */
        history(&live, &off);
    }
    fx_now_us = T0 + 2 * HOUR_US + 10;
    while (cmd_state_expire(&live, 100) > 0)
        ;
    new_state(&again);
    fx_now_us = T0 + 2 * HOUR_US + 10; /* a restart, reading the same log now */
    history(&again, &off2);
    assert_int_equal(off, off2);
    assert_int_equal(cmd_state_idem_count(&again), 2); /* k-new, k-new-run */
    assert_null(cmd_state_idem(&again, "k-old"));
    assert_null(cmd_state_idem(&again, "k-wf"));
    assert_null(cmd_state_run(&again, "old-run")); /* ended before the window */
    assert_non_null(cmd_state_run(&again, "new-run"));
    assert_non_null(cmd_state_run(&again, "open-old"));     /* open: never pruned */
    assert_non_null(cmd_state_resource(&again, "res-old")); /* aggregates stay */
    assert_int_equal(again.expired_runs, 1);
    fx_assert_same(&live, &again);
    cmd_state_free(&live);
    cmd_state_free(&again);
}

/* Finished runs: 409 run_finished inside the window, gone after it (404);
 * an open run stays however old; failed and zero-step runs go too. */
static void test_runs(void **state)
{
    cmd_state st;
    int64_t off = 0;
    size_t puts, dels;

    (void)state;
    new_state(&st);
    cmd_state_track(&st, 1);
    fx_dc(&st, fx_wf_create("w1", "s1", 1), &off);
    fx_dc(&st, fx_wf_create("w0", "s0", 0), &off);
    fx_dc(&st, fx_run_start("ok", "w1", NULL), &off);
    fx_dc(&st, fx_run_start("open", "w1", NULL), &off);
    fx_dc(&st, fx_run_start("bad", "w1", NULL), &off);
    fx_dc(&st, fx_run_start("zero", "w0", NULL), &off);
    fx_event_us = fx_now_us = T0 + 10;
    fx_dc(&st, fx_attempt("ok", 0, 1, CMD_OUT_SUCCEEDED), &off);
    fx_dc(&st, fx_attempt("bad", 0, 1, CMD_OUT_FAILED), &off);
    assert_int_equal(cmd_state_run(&st, "ok")->ended_at_us, T0 + 10);
    assert_int_equal(cmd_state_run(&st, "zero")->ended_at_us, T0);
    assert_int_equal(cmd_state_run(&st, "open")->ended_at_us, 0);
    assert_int_equal(cmd_expiry_count(&st.run_q), 3);

    fx_now_us = T0 + HOUR_US + 9;
    fx_expect_error(fx_dc(&st, fx_attempt("ok", 0, 2, CMD_OUT_RETRY), &off), 409, "run_finished");
    cmd_state_expire(&st, 100);
    assert_null(cmd_state_run(&st, "zero")); /* ended at T0 */
    assert_non_null(cmd_state_run(&st, "ok"));
    fx_now_us = T0 + HOUR_US + 10;
    /* past the window: 404 at once, pruned yet or not */
    assert_non_null(cmd_state_run(&st, "ok"));
    fx_expect_error(fx_dc(&st, fx_attempt("ok", 0, 2, CMD_OUT_RETRY), &off), 404, "not_found");
    cmd_state_expire(&st, 100);
    assert_null(cmd_state_run(&st, "ok"));
    assert_null(cmd_state_run(&st, "bad"));
    assert_int_equal(st.expired_runs, 3);
    fx_expect_error(fx_dc(&st, fx_attempt("ok", 0, 2, CMD_OUT_RETRY), &off), 404, "not_found");
    fx_now_us = T0 + 100 * HOUR_US;
    cmd_state_expire(&st, 100);
    assert_non_null(cmd_state_run(&st, "open"));
    assert_int_equal(cmd_state_run_count(&st), 1);
    /* the open run still takes its attempt */
    fx_event_us = fx_now_us;
    assert_int_equal(fx_dc(&st, fx_attempt("open", 0, 1, CMD_OUT_RETRY), &off).kind, CMD_D_APPEND);
    delta_count(&st, 'n', &puts, &dels);
    assert_int_equal(dels, 3);
    cmd_state_free(&st);
}

/* Snapshots: the snapshot thread applies the deletions; a full delta and
 * cmd_snapshot_save leave expired entries out; loading skips what expired
 * since the snapshot was written and hands the deletions on. */
static void test_snapshot(void **state)
{
    cmd_state st, back;
    cmd_snapshotter *sn;
    cmd_head hb[CMD_TOPICS * 4];
    char *dir = fx_tmpdir(), *dir2 = fx_tmpdir(), err[512];
    int64_t off = 0;
    size_t puts, dels;

    (void)state;
    new_state(&st);
    cmd_state_track(&st, 1);
    history(&st, &off);           /* k-wf, k-old-run, k-old and old-run at T0; the rest at T0+2h */
    fx_now_us = T0 + HOUR_US - 1; /* nothing has expired yet */
    assert_int_equal(cmd_state_idem_count(&st), 5);
    assert_int_equal(cmd_snapshotter_new(dir, 1 << 24, TOPICS, &sn, err, sizeof err), 0);
    assert_int_equal(cmd_snapshotter_submit(sn, &st, NULL, NULL), 0);

    /* the window of the T0 entries ends: pruned, deletions handed over */
    fx_now_us = T0 + HOUR_US;
    while (cmd_state_expire(&st, 2) > 0)
        ;
    delta_count(&st, 'i', &puts, &dels);
    assert_int_equal(dels, 3);
    assert_int_equal(cmd_snapshotter_submit(sn, &st, NULL, NULL), 0);
    assert_int_equal(cmd_snapshotter_flush(sn, err, sizeof err), 0);
    cmd_snapshotter_free(sn);
    fx_now_us = T0; /* even a clock back at T0 does not find them on disk */
    new_state(&back);
    if (cmd_snapshot_load(dir, 1 << 24, &back, hb, TOPICS, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(cmd_state_idem_count(&back), 2);
    assert_null(cmd_state_run(&back, "old-run"));
    assert_non_null(cmd_state_run(&back, "open-old"));
    cmd_state_free(&back);

    /* a whole-state save at a time all T0+2h entries are still in: then a
     * load after their window skips them and records their deletions */
    fx_now_us = T0 + 2 * HOUR_US;
    assert_int_equal(cmd_snapshot_save(dir2, 1 << 24, &st, NULL, TOPICS, err, sizeof err), 0);
    fx_now_us = T0 + 3 * HOUR_US;
    new_state(&back);
    fx_now_us = T0 + 3 * HOUR_US;
    if (cmd_snapshot_load(dir2, 1 << 24, &back, hb, TOPICS, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(cmd_state_idem_count(&back), 0);
    assert_null(cmd_state_run(&back, "new-run"));
    assert_non_null(cmd_state_run(&back, "open-old"));
    delta_count(&back, 'i', &puts, &dels);
    assert_int_equal(puts, 0);
    assert_int_equal(dels, 2);
    delta_count(&back, 'n', &puts, &dels);
    assert_int_equal(dels, 1);
    cmd_state_delta_loaded(&back);
    assert_int_equal(back.delta.full, 0);
    assert_int_equal(back.delta.records, 3); /* the deletions stay for the next write */

    /* a full delta leaves expired entries out */
    assert_int_equal(cmd_state_delta_full(&st), 0);
    delta_count(&st, 'i', &puts, &dels);
    assert_int_equal(puts, 0);
    delta_count(&st, 'n', &puts, &dels);
    assert_int_equal(puts, 1); /* open-old only */
    cmd_state_free(&back);
    cmd_state_free(&st);
    fx_rmdir_all(dir);
    fx_rmdir_all(dir2);
    free(dir);
    free(dir2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_window),  cmocka_unit_test(test_key_recorded_again),
        cmocka_unit_test(test_incremental), cmocka_unit_test(test_rebuild_bounded),
        cmocka_unit_test(test_runs),        cmocka_unit_test(test_snapshot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
