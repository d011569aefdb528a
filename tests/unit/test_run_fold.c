/*
 * test_run_fold.c — the run fold (events/ev_run.h) as a property test.
 *
 * A generator acts like the writer (commands/): RunStarted, then per recorded
 * attempt StepAttempted (retry), StepAttempted + StepSucceeded (+ RunSucceeded
 * after the last step) or StepAttempted + StepFailed + RunFailed; zero-step
 * runs get RunStarted alone. Every event is encoded and decoded with the real
 * codec. For these sequences every event must apply and the state must match
 * the generator's own model. Mutations of them (a gap, a duplicate, a wrong
 * step, a wrong attempt, an event after the end, two events swapped, a stray
 * event, a RunStarted elsewhere) must keep the fold's invariants:
 *   - a duplicate or refusal leaves the state byte-identical; an applied
 *     event moves the version by exactly one;
 *   - the state is consistent (step <= step_count, statuses vs. flags, open
 *     iff pending or running, attempts 0 means no last attempt, ...);
 *   - a finished status never changes to the other one, nothing applies
 *     after the end;
 *   - step statuses: exactly `step` succeeded steps, first; at most the
 *     current one running or failed;
 *   - the applied events alone, folded again, apply in full to the same
 *     state (refused events carried nothing); folding the whole sequence a
 *     second time changes nothing (re-reads are harmless);
 *   - the writer's own decision on that state (attempt accepted iff the run
 *     is open, the step current and the attempt the next) gives events that
 *     apply.
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
#include "ev_run.h"

#define MAX_EVENTS 96
#define RUNS 4000

/* ------------------------------------------------------------------ random */

static uint64_t rng;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return n ? (uint32_t)((rng >> 11) % n) : 0;
}

/* ------------------------------------------------------------------ events */

/* One event as the generator describes it (then encoded for real). */
typedef struct gen_ev {
    ev_event_type type;
    int64_t version;
    uint32_t step, attempt;
    int64_t delay; /* StepAttempted: next_delay_ms, -1 none */
    uint32_t step_count;
    int steps_present; /* RunStarted: steps copied (schema v2) or step_count only */
} gen_ev;

typedef struct seq {
    gen_ev ev[MAX_EVENTS];
    size_t n;
} seq;

/* The generator's model of the run after its events. */
typedef struct model {
    uint32_t step_count, step, attempts;
    int status, failed, ended;
    int64_t last_at, delay;
} model;

static ev_fb_builder fb;

/* Encode e and decode it into *out; the bytes live in buf (caller's). */
static void materialize(const gen_ev *g, const char *id, uint8_t *buf, size_t cap, ev_envelope *out)
{
    static ev_step steps[EV_MAX_STEPS];
    ev_envelope e;
    const uint8_t *p;
    size_t len;
    char err[256];

    if (steps[0].action_type != EV_ACTION_HTTP)
        for (int i = 0; i < EV_MAX_STEPS; i++) {
            steps[i].action_type = EV_ACTION_HTTP;
            steps[i].action.http.method = EV_HTTP_POST;
            steps[i].action.http.url = ev_str_c("http://127.0.0.1:9/x");
        }
    ev_envelope_init(&e, g->type);
    e.aggregate_id = ev_str_c(id);
    e.version = g->version;
    e.occurred_at_us = 1700000000000000 + g->version * 1000;
    e.actor = ev_str_c("gen");
    memset(e.event_id.bytes, (int)g->version, sizeof e.event_id.bytes);
    switch (g->type) {
    case EV_RUN_STARTED:
        e.payload.run_started.workflow_id = ev_str_c("wf");
        e.payload.run_started.workflow_version = 1;
        e.payload.run_started.payload_json = ev_str_c("{\"k\":1}");
        e.payload.run_started.step_count = g->step_count;
        if (g->steps_present)
            e.payload.run_started.steps = ev_step_list_of(steps, g->step_count);
        break;
    case EV_STEP_ATTEMPTED:
        e.payload.step_attempted.step = g->step;
        e.payload.step_attempted.attempt = g->attempt;
        e.payload.step_attempted.has_status_code = true;
        e.payload.step_attempted.status_code = 503;
        e.payload.step_attempted.duration_ms = 2;
        e.payload.step_attempted.has_next_delay_ms = g->delay >= 0;
        e.payload.step_attempted.next_delay_ms = g->delay >= 0 ? g->delay : 0;
        e.payload.step_attempted.delivery_id = ev_str_c("d");
        break;
    case EV_STEP_SUCCEEDED:
        e.payload.step_succeeded.step = g->step;
        e.payload.step_succeeded.attempt = g->attempt;
        break;
    case EV_STEP_FAILED:
        e.payload.step_failed.step = g->step;
        e.payload.step_failed.attempt = g->attempt;
        e.payload.step_failed.error = ev_str_c("boom");
        break;
    case EV_RUN_FAILED:
        e.payload.run_failed.step = g->step;
        e.payload.run_failed.error = ev_str_c("boom");
        break;
    default:
        break;
    }
    if (ev_envelope_encode(&fb, &e, err, sizeof err) != 0)
        fail_msg("encode: %s", err);
    p = ev_fb_builder_data(&fb, &len);
    assert_true(len <= cap);
    memcpy(buf, p, len);
    if (ev_envelope_decode(buf, len, out, err, sizeof err) != 0)
        fail_msg("decode: %s", err);
}

static void push(seq *s, gen_ev g)
{
    if (s->n < MAX_EVENTS) {
        g.version = (int64_t)s->n + 1;
        s->ev[s->n++] = g;
    }
}

/* A run as the writer appends it; *m is the expected state after it. */
static void generate(seq *s, model *m)
{
    uint32_t count = rnd(8) == 0 ? 0 : 1 + rnd(4);
    gen_ev g;
    int actions = (int)rnd(12);

    memset(s, 0, sizeof *s);
    memset(m, 0, sizeof *m);
    memset(&g, 0, sizeof g);
    g.type = EV_RUN_STARTED;
    g.step_count = count;
    g.steps_present = rnd(4) != 0;
    push(s, g);
    m->step_count = count;
    m->status = count == 0 ? EV_RUN_IS_SUCCEEDED : EV_RUN_IS_PENDING;
    m->delay = -1;
    for (int i = 0; i < actions && m->status <= EV_RUN_IS_RUNNING && s->n + 3 <= MAX_EVENTS; i++) {
        uint32_t r = rnd(10), attempt = m->attempts + 1, step = m->step;
        memset(&g, 0, sizeof g);
        g.type = EV_STEP_ATTEMPTED;
        g.step = step;
        g.attempt = attempt;
        g.delay = r < 5 ? (int64_t)rnd(5000) : -1;
        push(s, g);
        m->status = EV_RUN_IS_RUNNING;
        m->attempts = attempt;
        m->last_at = 1700000000000000 + (int64_t)s->n * 1000;
        m->delay = g.delay;
        if (r < 5) /* retry */
            continue;
        memset(&g, 0, sizeof g);
        g.step = step;
        g.attempt = attempt;
        if (r < 9) {
            g.type = EV_STEP_SUCCEEDED;
            push(s, g);
            m->step++;
            m->attempts = 0;
            m->last_at = 0;
            m->delay = -1;
            if (m->step == m->step_count) {
                m->status = EV_RUN_IS_SUCCEEDED;
                g.type = EV_RUN_SUCCEEDED;
                push(s, g);
                m->ended = 1;
            }
        } else {
            g.type = EV_STEP_FAILED;
            push(s, g);
            g.type = EV_RUN_FAILED;
            push(s, g);
            m->status = EV_RUN_IS_FAILED;
            m->failed = 1;
            m->ended = 1;
        }
    }
}

/* ------------------------------------------------------------------ mutations */

static gen_ev random_event(const seq *s)
{
    static const ev_event_type types[] = {EV_RUN_STARTED,    EV_STEP_ATTEMPTED, EV_STEP_SUCCEEDED,
                                          EV_STEP_FAILED,    EV_RUN_SUCCEEDED,  EV_RUN_FAILED,
                                          EV_STEP_ATTEMPTED, EV_STEP_SUCCEEDED};
    gen_ev g;

    memset(&g, 0, sizeof g);
    g.type = types[rnd(8)];
    g.step = rnd(5);
    g.attempt = 1 + rnd(4);
    g.delay = rnd(2) ? (int64_t)rnd(1000) : -1;
    g.step_count = rnd(4);
    g.steps_present = 1;
    (void)s;
    return g;
}

/* One or more mutations; versions are left as they fall (gaps, repeats). */
static void mutate(seq *s)
{
    int n = 1 + (int)rnd(3);

    for (int k = 0; k < n; k++) {
        size_t i = rnd((uint32_t)s->n);
        switch (rnd(9)) {
        case 0: /* drop: a gap */
            if (s->n > 1) {
                memmove(&s->ev[i], &s->ev[i + 1], (s->n - i - 1) * sizeof s->ev[0]);
                s->n--;
            }
            break;
        case 1: /* duplicate an earlier event later */
            if (s->n < MAX_EVENTS) {
                size_t at = i + rnd((uint32_t)(s->n - i)) + 1;
                memmove(&s->ev[at + 1], &s->ev[at], (s->n - at) * sizeof s->ev[0]);
                s->ev[at] = s->ev[i];
                s->n++;
            }
            break;
        case 2: /* wrong step */
            s->ev[i].step += 1 + rnd(2);
            break;
        case 3: /* wrong attempt */
            s->ev[i].attempt = rnd(2) || s->ev[i].attempt < 2 ? s->ev[i].attempt + 1 + rnd(2)
                                                              : s->ev[i].attempt - 1;
            break;
        case 4: /* events after the end */
            for (int t = 0; t < 3 && s->n < MAX_EVENTS; t++) {
                gen_ev g = random_event(s);
                g.version = (int64_t)s->n + 1;
                s->ev[s->n++] = g;
            }
            break;
        case 5: /* swap two neighbours (versions travel with them) */
            if (i + 1 < s->n) {
                gen_ev t = s->ev[i];
                s->ev[i] = s->ev[i + 1];
                s->ev[i + 1] = t;
            }
            break;
        case 6: /* a stray event with the next version */
            if (s->n < MAX_EVENTS) {
                gen_ev g = random_event(s);
                g.version = s->ev[i].version;
                s->ev[i] = g;
            }
            break;
        case 7: /* the version of an event moved */
            s->ev[i].version += (int64_t)rnd(3) - 1;
            if (s->ev[i].version < 1)
                s->ev[i].version = 1;
            break;
        default: /* zero steps: the run never had any */
            if (s->ev[0].type == EV_RUN_STARTED)
                s->ev[0].step_count = 0;
            break;
        }
    }
}

/* ------------------------------------------------------------------ checks */

static void check_consistent(const ev_run_state *s)
{
    uint32_t succeeded = 0, active = 0;

    if (s->version == 0) {
        ev_run_state z;
        ev_run_init(&z);
        assert_memory_equal(s, &z, sizeof z);
        return;
    }
    assert_true(s->status >= EV_RUN_IS_PENDING && s->status <= EV_RUN_IS_FAILED);
    assert_true(s->step_count <= EV_MAX_STEPS);
    assert_true(s->step <= s->step_count);
    assert_int_equal(ev_run_open(s),
                     s->status == EV_RUN_IS_PENDING || s->status == EV_RUN_IS_RUNNING);
    if (ev_run_open(s)) {
        assert_true(s->step < s->step_count);
        assert_false(s->ended);
        assert_false(s->step_failed);
    }
    if (s->status == EV_RUN_IS_PENDING) {
        assert_int_equal(s->step, 0);
        assert_int_equal(s->attempts, 0);
    }
    if (s->step_failed)
        assert_int_equal(s->status, EV_RUN_IS_FAILED);
    if (s->step == s->step_count && s->status != EV_RUN_IS_FAILED)
        assert_int_equal(s->status, EV_RUN_IS_SUCCEEDED);
    if (s->status == EV_RUN_IS_FAILED)
        assert_true(s->step_failed || s->ended);
    if (s->attempts == 0) {
        assert_int_equal(s->last_attempt_us, 0);
        assert_int_equal(s->next_delay_ms, -1);
    } else {
        assert_true(s->last_attempt_us > 0);
    }
    for (uint32_t i = 0; i < s->step_count; i++) {
        ev_step_status st = ev_run_step_status(s, i);
        if (st == EV_STEP_IS_SUCCEEDED) {
            assert_true(i < s->step);
            succeeded++;
        } else if (st != EV_STEP_IS_PENDING) {
            assert_int_equal(i, s->step);
            active++;
        }
        if (st == EV_STEP_IS_FAILED)
            assert_true(s->step_failed);
        if (st == EV_STEP_IS_RUNNING)
            assert_true(s->attempts > 0 && !s->step_failed);
    }
    assert_int_equal(succeeded, s->step);
    assert_true(active <= 1);
    assert_int_equal(ev_run_step_status(s, s->step_count), EV_STEP_IS_PENDING);
}

/* The writer's decision on state s (decide_run_attempt's checks) for one
 * attempt; when accepted, its events must apply in full. */
static void check_writer_on(const ev_run_state *s, const char *id)
{
    uint8_t buf[4096];
    ev_envelope e;
    ev_run_state t = *s;
    uint32_t step = rnd(3) ? s->step : rnd(4), attempt = rnd(3) ? s->attempts + 1 : 1 + rnd(4);
    int outcome = 1 + (int)rnd(3), accepted, n = 0;
    gen_ev g[3];

    accepted =
        ev_run_open(s) && step == s->step && step < s->step_count && attempt == s->attempts + 1;
    memset(g, 0, sizeof g);
    g[n].type = EV_STEP_ATTEMPTED;
    g[n].step = step;
    g[n].attempt = attempt;
    g[n++].delay = outcome == 1 ? 100 : -1;
    if (outcome == 2) {
        g[n].type = EV_STEP_SUCCEEDED;
        g[n].step = step;
        g[n++].attempt = attempt;
        if (step + 1 == s->step_count) {
            g[n].type = EV_RUN_SUCCEEDED;
            g[n++].step = step;
        }
    } else if (outcome == 3) {
        g[n].type = EV_STEP_FAILED;
        g[n].step = step;
        g[n++].attempt = attempt;
        g[n].type = EV_RUN_FAILED;
        g[n++].step = step;
    }
    for (int i = 0; i < n; i++) {
        const char *why = NULL;
        int rc;
        g[i].version = s->version + 1 + i;
        materialize(&g[i], id, buf, sizeof buf, &e);
        rc = ev_run_fold(&t, &e, &why);
        if (accepted && rc != EV_FOLD_APPLIED)
            fail_msg("writer's event %d (%s) refused: %s", i, ev_event_type_name(g[i].type),
                     why ? why : "-");
        if (!accepted && i == 0)
            assert_int_equal(rc, EV_FOLD_REFUSED);
        if (rc != EV_FOLD_APPLIED)
            break;
    }
    if (accepted) {
        check_consistent(&t);
        assert_int_equal(t.status, outcome == 1             ? EV_RUN_IS_RUNNING
                                   : outcome == 3           ? EV_RUN_IS_FAILED
                                   : t.step == t.step_count ? EV_RUN_IS_SUCCEEDED
                                                            : EV_RUN_IS_RUNNING);
    }
}

/* Fold `s` from scratch into *st; applied[i] = the outcome of event i. */
static void fold_seq(const seq *s, ev_run_state *st, int *outcome)
{
    static uint8_t buf[MAX_EVENTS][4096];

    ev_run_init(st);
    for (size_t i = 0; i < s->n; i++) {
        ev_envelope e;
        ev_run_state before = *st;
        const char *why = NULL;
        int rc;

        materialize(&s->ev[i], "run-p", buf[i], sizeof buf[i], &e);
        rc = ev_run_fold(st, &e, &why);
        assert_true(rc == EV_FOLD_APPLIED || rc == EV_FOLD_DUPLICATE || rc == EV_FOLD_REFUSED);
        if (rc == EV_FOLD_REFUSED)
            assert_non_null(why);
        if (rc != EV_FOLD_APPLIED) {
            assert_memory_equal(&before, st, sizeof before);
        } else {
            assert_int_equal(st->version, before.version + 1);
            assert_int_equal(st->version, s->ev[i].version);
            assert_false(before.ended);
            /* a finished status stays */
            if (before.status == EV_RUN_IS_SUCCEEDED)
                assert_int_equal(st->status, EV_RUN_IS_SUCCEEDED);
            if (before.status == EV_RUN_IS_FAILED)
                assert_int_equal(st->status, EV_RUN_IS_FAILED);
            if (before.version > 0)
                assert_int_equal(st->step_count, before.step_count);
            assert_true(st->step >= before.step && st->step <= before.step + 1);
        }
        check_consistent(st);
        outcome[i] = rc;
    }
}

static void check_model(const ev_run_state *st, const model *m)
{
    assert_int_equal(st->step_count, m->step_count);
    assert_int_equal(st->status, m->status);
    assert_int_equal(st->step, m->step);
    assert_int_equal(st->attempts, m->attempts);
    assert_int_equal(st->step_failed, m->failed);
    assert_int_equal(st->ended, m->ended);
    assert_int_equal(st->last_attempt_us, m->last_at);
    assert_int_equal(st->next_delay_ms, m->delay);
}

static void one_run(int mutated, size_t *applied_total, size_t *refused_total, int *statuses)
{
    seq s, only;
    model m;
    ev_run_state st, again;
    int outcome[MAX_EVENTS], outcome2[MAX_EVENTS];
    static uint8_t buf[4096];

    generate(&s, &m);
    if (mutated)
        mutate(&s);
    fold_seq(&s, &st, outcome);
    if (!mutated) {
        for (size_t i = 0; i < s.n; i++)
            assert_int_equal(outcome[i], EV_FOLD_APPLIED);
        check_model(&st, &m);
    }
    /* the applied events alone give the same state, all applied */
    memset(&only, 0, sizeof only);
    for (size_t i = 0; i < s.n; i++) {
        if (outcome[i] == EV_FOLD_APPLIED)
            only.ev[only.n++] = s.ev[i];
        *applied_total += outcome[i] == EV_FOLD_APPLIED;
        *refused_total += outcome[i] == EV_FOLD_REFUSED;
    }
    fold_seq(&only, &again, outcome2);
    for (size_t i = 0; i < only.n; i++)
        assert_int_equal(outcome2[i], EV_FOLD_APPLIED);
    assert_memory_equal(&st, &again, sizeof st);
    /* a second read of every event up to the state's version changes nothing
     * (an event refused as a gap may apply once the gap is filled: not here) */
    for (size_t i = 0; i < s.n; i++) {
        ev_envelope e;
        ev_run_state before = st;
        if (s.ev[i].version > st.version)
            continue;
        materialize(&s.ev[i], "run-p", buf, sizeof buf, &e);
        if (ev_run_fold(&st, &e, NULL) != EV_FOLD_DUPLICATE)
            fail_msg("event %zu not a duplicate on a second read", i);
        assert_memory_equal(&before, &st, sizeof st);
    }
    statuses[st.status]++;
    check_writer_on(&st, "run-p");
}

static void test_writer_sequences(void **state)
{
    size_t applied = 0, refused = 0;
    int statuses[4] = {0, 0, 0, 0};
    (void)state;

    rng = 0x2545f4914f6cdd1dull;
    for (int i = 0; i < RUNS; i++)
        one_run(0, &applied, &refused, statuses);
    assert_int_equal(refused, 0);
    /* every status was reached often */
    for (int i = 0; i < 4; i++)
        assert_true(statuses[i] > RUNS / 20);
}

static void test_mutated_sequences(void **state)
{
    size_t applied = 0, refused = 0;
    int statuses[4] = {0, 0, 0, 0};
    (void)state;

    rng = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < RUNS; i++)
        one_run(1, &applied, &refused, statuses);
    assert_true(refused > RUNS / 2);
    assert_true(applied > RUNS * 2);
    for (int i = 0; i < 4; i++)
        assert_true(statuses[i] > RUNS / 50);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_sequences),
        cmocka_unit_test(test_mutated_sequences),
    };
    int rc;

    ev_fb_builder_init(&fb);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    ev_fb_builder_free(&fb);
    return rc;
}
