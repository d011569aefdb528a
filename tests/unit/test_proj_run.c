/*
 * test_proj_run.c — both read models follow THE run fold (events/ev_run.h):
 * sequences of run events (what the writer appends, plus refusals) folded by
 * ev_run_fold (the reference), into the LMDB run document (proj_doc_run) and
 * into the PostgreSQL row values (proj_pg_run_fold, applied to an in-memory
 * mirror of runs.status / runs.steps[*].status / run_attempts); after every
 * event the three agree on the outcome, the status and every step's status,
 * and the state rebuilt from the document or from the stored values
 * (proj_run_state_load) equals the reference state.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ev_fb.h"
#include "ev_json.h"
#include "ev_run.h"
#include "kq_err.h"
#include "proj_doc.h"
#include "proj_pg.h"

#include "test_proj_fixture.h"

/* One event of a sequence: version, type, payload JSON. */
typedef struct tev {
    int64_t v;
    const char *type;
    const char *payload;
} tev;

static void make(ev_envelope *e, uint8_t **buf, int64_t v, const char *type, const char *payload)
{
    proj_test_make(e, buf, NULL, "run", "r1", v, type, payload);
}

/* The PostgreSQL rows of a run, as far as the fold decides them. */
typedef struct row {
    int exists;
    char status[16];
    char steps[EV_MAX_STEPS][16];
    uint32_t nsteps;
    int attempts; /* run_attempts rows */
} row;

/* What the state rebuilt from the row mirror would be (the loader of proj_pg.c
 * reads the same values from the tables). */
static void row_state(const row *r, int64_t version, uint32_t attempts, int64_t last_us,
                      int64_t delay, ev_run_state *s)
{
    proj_run_stored st;

    memset(&st, 0, sizeof st);
    st.next_delay_ms = -1;
    if (r->exists) {
        st.version = version;
        st.status = ev_run_status_parse(r->status);
        st.step_count = r->nsteps;
        while (st.done < r->nsteps && strcmp(r->steps[st.done], "succeeded") == 0)
            st.done++;
        st.current_failed = st.done < r->nsteps && strcmp(r->steps[st.done], "failed") == 0;
        st.total_attempts = r->attempts;
        st.attempts = attempts;
        st.last_attempt_us = last_us;
        st.next_delay_ms = delay;
    }
    assert_int_equal(proj_run_state_load(&st, s), 0);
}

static void assert_same_state(const ev_run_state *a, const ev_run_state *b)
{
    assert_int_equal(a->version, b->version);
    assert_int_equal(a->attempts, b->attempts);
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->step_count, b->step_count);
    assert_int_equal(a->step, b->step);
    assert_int_equal(a->step_failed, b->step_failed);
    assert_int_equal(a->ended, b->ended);
}

/*
 * Fold seq[0..n) three ways; want[i] is the reference outcome of event i
 * (EV_FOLD_APPLIED or EV_FOLD_REFUSED), checked too.
 */
static void run_seq(const tev *seq, size_t n, const int *want)
{
    ev_run_state ref, pgs;
    json_t *doc = NULL;
    row r;
    int64_t last_us = 0, delay = -1;
    uint32_t cur_attempts = 0;

    ev_run_init(&ref);
    ev_run_init(&pgs);
    memset(&r, 0, sizeof r);
    for (size_t i = 0; i < n; i++) {
        ev_envelope e;
        uint8_t *buf;
        const char *why = NULL, *dwhy = NULL, *pwhy = NULL;
        proj_pg_run_values v;
        int out, dout, pout;

        make(&e, &buf, seq[i].v, seq[i].type, seq[i].payload);
        out = ev_run_fold(&ref, &e, &why);
        if (out != want[i])
            fail_msg("event %zu (%s): fold says %d, want %d (%s)", i, seq[i].type, out, want[i],
                     why ? why : "");
        dout = proj_doc_run(&doc, &e, &dwhy);
        pout = proj_pg_run_fold(&pgs, &e, &v, &pwhy);
        assert_int_equal(pout, out);
        if (out == EV_FOLD_APPLIED) {
            assert_int_equal(dout, PROJ_DOC_OK);
            /* the mirror of the rows, written as the statements do */
            if (e.payload_type == EV_RUN_STARTED) {
                r.exists = 1;
                r.nsteps = ref.step_count;
                r.attempts = 0;
                for (uint32_t k = 0; k < r.nsteps; k++)
                    snprintf(r.steps[k], sizeof r.steps[k], "pending");
            }
            snprintf(r.status, sizeof r.status, "%s", v.status);
            if (v.step >= 0) {
                assert_non_null(v.step_status);
                assert_true((uint32_t)v.step < r.nsteps);
                snprintf(r.steps[v.step], sizeof r.steps[v.step], "%s", v.step_status);
            }
            if (e.payload_type == EV_STEP_ATTEMPTED) {
                r.attempts++;
                cur_attempts = e.payload.step_attempted.attempt;
                last_us = e.occurred_at_us;
                delay = e.payload.step_attempted.has_next_delay_ms
                            ? e.payload.step_attempted.next_delay_ms
                            : -1;
            } else if (e.payload_type == EV_STEP_SUCCEEDED) {
                cur_attempts = 0;
                last_us = 0;
                delay = -1;
            }
        } else {
            assert_int_equal(dout, PROJ_DOC_REFUSED);
            assert_non_null(dwhy);
            assert_non_null(pwhy);
        }
        free(buf);
        /* all three say the same about the run */
        assert_same_state(&pgs, &ref);
        assert_non_null(doc);
        assert_int_equal(proj_doc_run_status(doc), ref.status);
        assert_string_equal(r.status, ev_run_status_name(ref.status));
        for (uint32_t k = 0; k < ref.step_count; k++) {
            const char *want_st = ev_step_status_name(ev_run_step_status(&ref, k));
            json_t *st = json_array_get(json_object_get(doc, "steps"), k);
            assert_string_equal(json_string_value(json_object_get(st, "status")), want_st);
            assert_string_equal(r.steps[k], want_st);
        }
        /* the state rebuilt from what the rows store is the fold's */
        {
            ev_run_state back;
            row_state(&r, ref.version, cur_attempts, last_us, delay, &back);
            assert_same_state(&back, &ref);
            assert_int_equal(back.attempts, ref.attempts);
            assert_int_equal(back.last_attempt_us, ref.last_attempt_us);
            assert_int_equal(back.next_delay_ms, ref.next_delay_ms);
        }
    }
    json_decref(doc);
}

#define STARTED2                                                                                   \
    "{\"workflow_id\":\"wf1\",\"workflow_version\":1,\"step_count\":2,\"steps\":["                 \
    "{\"action_type\":\"EmailAction\",\"action\":{\"to\":[\"a@b.c\"],\"subject\":\"S\"}},"         \
    "{\"action_type\":\"EmailAction\",\"action\":{\"to\":[\"a@b.c\"],\"subject\":\"T\"}}]}"
#define ATT(s, a) "{\"step\":" #s ",\"attempt\":" #a ",\"duration_ms\":1,\"next_delay_ms\":500}"
#define STEP(s) "{\"step\":" #s ",\"attempt\":1}"

enum { A = EV_FOLD_APPLIED, R = EV_FOLD_REFUSED };

/* The writer's success path: retries, both steps, RunSucceeded; then nothing more. */
static void test_succeeds(void **state)
{
    static const tev seq[] = {
        {1, "RunStarted", STARTED2},     {2, "StepAttempted", ATT(0, 1)},
        {3, "StepAttempted", ATT(0, 2)}, {4, "StepSucceeded", STEP(0)},
        {5, "StepAttempted", ATT(1, 1)}, {6, "StepSucceeded", STEP(1)},
        {7, "RunSucceeded", "{}"},       {8, "RunFailed", "{\"error\":\"late\"}"},
    };
    static const int want[] = {A, A, A, A, A, A, A, R};
    (void)state;
    run_seq(seq, 8, want);
}

/* StepFailed fails the run at once; RunFailed ends it; refusals on the way. */
static void test_fails(void **state)
{
    static const tev seq[] = {
        {1, "RunStarted", STARTED2},
        {2, "StepAttempted", ATT(1, 1)}, /* not the current step */
        {2, "StepAttempted", ATT(0, 2)}, /* an attempt missing before it */
        {2, "StepAttempted", ATT(0, 1)},
        {3, "StepAttempted", ATT(0, 1)}, /* recorded already */
        {3, "StepFailed", STEP(0)},
        {4, "StepAttempted", ATT(0, 2)}, /* the run failed */
        {4, "RunFailed", "{\"step\":0,\"error\":\"boom\"}"},
        {5, "RunSucceeded", "{}"},
    };
    static const int want[] = {A, R, R, A, R, A, R, A, R};
    (void)state;
    run_seq(seq, 9, want);
}

/* A run of zero steps is succeeded at RunStarted; a RunSucceeded may still end it. */
static void test_zero_steps(void **state)
{
    static const tev seq[] = {
        {1, "RunStarted", "{\"workflow_id\":\"wf1\",\"workflow_version\":1,\"step_count\":0}"},
        {2, "StepAttempted", ATT(0, 1)},
        {2, "RunSucceeded", "{}"},
        {3, "RunSucceeded", "{}"},
    };
    static const int want[] = {A, R, A, R};
    (void)state;
    run_seq(seq, 4, want);
}

/* An open run ended early by RunFailed: its running step stays running. */
static void test_ended_early(void **state)
{
    static const tev seq[] = {
        {1, "RunStarted", STARTED2},
        {2, "StepAttempted", ATT(0, 1)},
        {3, "RunFailed", "{\"error\":\"cancelled\"}"},
        {4, "StepSucceeded", STEP(0)},
    };
    static const int want[] = {A, A, A, R};
    (void)state;
    run_seq(seq, 4, want);
}

/* proj_run_state_load refuses what cannot be a run's. */
static void test_state_load_corrupt(void **state)
{
    proj_run_stored st;
    ev_run_state s;
    (void)state;

    memset(&st, 0, sizeof st);
    st.version = 3;
    st.status = 7;
    assert_int_equal(proj_run_state_load(&st, &s), KQ_ECORRUPT);
    st.status = EV_RUN_IS_RUNNING;
    st.step_count = 1;
    st.done = 2;
    assert_int_equal(proj_run_state_load(&st, &s), KQ_ECORRUPT);
    st.done = 0;
    st.attempts = st.total_attempts = 2;
    assert_int_equal(proj_run_state_load(&st, &s), 0);
    assert_int_equal(s.ended, 0);
    assert_int_equal(s.attempts, 2);
    st.version = 4; /* one event more than the traces: RunSucceeded/RunFailed */
    assert_int_equal(proj_run_state_load(&st, &s), 0);
    assert_int_equal(s.ended, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_succeeds),           cmocka_unit_test(test_fails),
        cmocka_unit_test(test_zero_steps),         cmocka_unit_test(test_ended_early),
        cmocka_unit_test(test_state_load_corrupt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
