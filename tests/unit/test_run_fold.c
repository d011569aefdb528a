/*
 * test_run_fold.c — the run fold (events/ev_run.h) as a property test, and
 * every component that folds runs checked against it.
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
 *
 * Then every sequence, valid or mutated, goes record by record through the
 * components that fold runs, which must say what the fold says:
 *   - commands/: cmd_aggregate_apply (the catch-up and post-commit path)
 *     answers applied / skipped / refused as the fold does, and the run it
 *     keeps (cmd_run_to_fold) has the same version, status, step, attempts,
 *     flags and step statuses; its attempt decision (cmd_batch_decide)
 *     accepts exactly what the fold allows, refuses the rest with the
 *     matching code (run_finished, step_mismatch, attempt_recorded,
 *     attempt_gap), and the events it builds apply everywhere;
 *   - worker/: wk_runs_apply gives the same answers (it skips events of a run
 *     it never saw started), keeps the fold's state byte for byte, and its
 *     open/finished flag, due time and commit point follow it; its own
 *     advance after a 200 (wk_run_advance) lands where the writer's events
 *     do;
 *   - projections/: the LMDB run document (proj_doc_run, after the
 *     projector's version check) applies what the fold applies and refuses
 *     (unchanged) what it refuses, and shows the fold's version, status,
 *     step statuses and attempts of the current step; the PostgreSQL rows,
 *     written from proj_pg_run_fold's values as the target's statements
 *     write them, show the same, and the state read back from them (as a
 *     new batch does: proj_run_state_load) is the fold's, byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_aggregate.h"
#include "cmd_run.h"
#include "cmd_state.h"
#include "ev_codec.h"
#include "ev_run.h"
#include "proj_doc.h"
#include "proj_pg.h"
#include "test_cmd_fixture.h"
#include "wk_record.h"
#include "wk_run.h"

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

/* Encode e and decode it into *out; the bytes live in buf (caller's).
 * Returns their length. */
static size_t materialize(const gen_ev *g, const char *id, uint8_t *buf, size_t cap,
                          ev_envelope *out)
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
    return len;
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

/* ------------------------------------------------------------------ the components */

/*
 * The components that fold runs, fed the same records in the same order:
 *   cmd  the command side's state (cmd_aggregate_apply: the path catch-up and
 *        the writer take) and its attempt decision (cmd_batch_decide);
 *   wk   the worker's run table (wk_runs_apply), its open/due answers and its
 *        own advance after a 200 (wk_run_advance).
 * Every run gets its own id; the containers live for the whole test.
 */
typedef struct views {
    cmd_state cmd;
    wk_runs *wk;
    int64_t offset; /* next record offset (partition 0) */
    size_t compared, refused, accepted, decided;
} views;

static views V;

static int cross_setup(void)
{
    if (cmd_state_init(&V.cmd, 1) != 0 || (V.wk = wk_runs_new()) == NULL)
        return -1;
    return 0;
}

static void cross_teardown(void)
{
    wk_runs_free(V.wk);
    cmd_state_free(&V.cmd);
}

/*
 * The read models of the run being folded (one run at a time):
 *   doc  the LMDB document, folded by proj_doc_run (the projector skips an
 *        event whose version is not above the document's before calling it);
 *   row  the PostgreSQL rows as the target's statements leave them, every
 *        value the fold decides taken from proj_pg_run_fold: runs.status,
 *        runs.steps[*].status, one run_attempts row per StepAttempted of an
 *        existing step (ON CONFLICT DO NOTHING); `pg` is the fold state the
 *        target carries through a batch, reloaded from the rows (as
 *        versions_runs_sql and proj_run_state_load do) at random batch ends.
 */
typedef struct pg_attempt {
    uint32_t step, attempt;
    int64_t at_us, delay;
} pg_attempt;

typedef struct pg_row {
    int exists;
    int64_t version;
    const char *status;
    const char *steps[EV_MAX_STEPS];
    uint32_t nsteps;
    pg_attempt attempts[MAX_EVENTS + 8];
    size_t nattempts;
} pg_row;

static struct {
    json_t *doc;
    pg_row row;
    ev_run_state pg;
} P;

static void proj_reset(void)
{
    json_decref(P.doc);
    memset(&P, 0, sizeof P);
    ev_run_init(&P.pg);
}

/* The rows' fold state, as the PostgreSQL target reads it back. */
static void pg_reload(ev_run_state *s)
{
    proj_run_stored st;
    const pg_attempt *last = NULL;

    memset(&st, 0, sizeof st);
    st.next_delay_ms = -1;
    if (!P.row.exists) {
        ev_run_init(s);
        return;
    }
    st.version = P.row.version;
    st.status = ev_run_status_parse(P.row.status);
    st.step_count = P.row.nsteps;
    while (st.done < st.step_count && P.row.steps[st.done][0] == 's')
        st.done++;
    st.current_failed = st.done < st.step_count && P.row.steps[st.done][0] == 'f';
    st.total_attempts = (int64_t)P.row.nattempts;
    for (size_t i = 0; i < P.row.nattempts; i++) {
        const pg_attempt *a = &P.row.attempts[i];
        if (last == NULL || a->step > last->step ||
            (a->step == last->step && a->attempt > last->attempt))
            last = a;
    }
    if (last != NULL && last->step == st.done && last->attempt > 0) {
        st.attempts = last->attempt;
        st.last_attempt_us = last->at_us;
        st.next_delay_ms = last->delay;
    }
    assert_int_equal(proj_run_state_load(&st, s), 0);
}

/* What the run statements do with an applied event and the fold's values. */
static void pg_write(const ev_envelope *e, const proj_pg_run_values *v)
{
    pg_row *r = &P.row;

    assert_non_null(v->status);
    if (e->payload_type == EV_RUN_STARTED) {
        json_t *steps = json_object_get(P.doc, "steps"), *st;
        size_t i;
        memset(r, 0, sizeof *r);
        r->exists = 1;
        json_array_foreach(steps, i, st) /* runs.steps: the document's, without attempts */
            r->steps[r->nsteps++] = ev_step_status_name(
            ev_run_status_parse(json_string_value(json_object_get(st, "status"))));
    } else if (e->payload_type == EV_STEP_ATTEMPTED) {
        const ev_step_attempted *a = &e->payload.step_attempted;
        int dup = 0;
        for (size_t i = 0; i < r->nattempts; i++)
            dup |= r->attempts[i].step == a->step && r->attempts[i].attempt == a->attempt;
        if (a->step < r->nsteps && !dup) {
            pg_attempt *x = &r->attempts[r->nattempts++];
            x->step = a->step;
            x->attempt = a->attempt;
            x->at_us = e->occurred_at_us;
            x->delay = a->has_next_delay_ms ? a->next_delay_ms : -1;
        }
    }
    r->status = v->status;
    if (v->step >= 0 && v->step_status != NULL && (uint32_t)v->step < r->nsteps)
        r->steps[v->step] = v->step_status;
    r->version = e->version;
}

/* Both read models of the current run agree with the fold's state `want`. */
static void proj_agree(const ev_run_state *want)
{
    json_t *steps = json_object_get(P.doc, "steps");
    ev_run_state back;
    uint32_t cur_attempts = 0;

    if (want->version == 0) {
        assert_null(P.doc);
        assert_false(P.row.exists);
        return;
    }
    /* the LMDB document */
    assert_non_null(P.doc);
    assert_int_equal(json_integer_value(json_object_get(P.doc, "version")), want->version);
    assert_int_equal(proj_doc_run_status(P.doc), want->status);
    assert_int_equal(json_array_size(steps), want->step_count);
    for (uint32_t i = 0; i < want->step_count; i++) {
        json_t *st = json_array_get(steps, i);
        assert_string_equal(json_string_value(json_object_get(st, "status")),
                            ev_step_status_name(ev_run_step_status(want, i)));
        if (i == want->step)
            assert_int_equal(json_array_size(json_object_get(st, "attempts")), want->attempts);
    }
    /* the PostgreSQL rows */
    assert_true(P.row.exists);
    assert_int_equal(P.row.version, want->version);
    assert_string_equal(P.row.status, ev_run_status_name(want->status));
    assert_int_equal(P.row.nsteps, want->step_count);
    for (uint32_t i = 0; i < want->step_count; i++)
        assert_string_equal(P.row.steps[i], ev_step_status_name(ev_run_step_status(want, i)));
    for (size_t i = 0; i < P.row.nattempts; i++)
        cur_attempts += P.row.attempts[i].step == want->step;
    if (want->step < want->step_count)
        assert_int_equal(cur_attempts, want->attempts);
    assert_memory_equal(&P.pg, want, sizeof *want);
    /* read back from the rows (a new batch), the state is the fold's */
    pg_reload(&back);
    assert_memory_equal(&back, want, sizeof back);
}

/* Feed one record to both read models; `fold_rc` is the fold's answer. */
static void proj_feed(const ev_envelope *e, int fold_rc)
{
    json_int_t docv = P.doc ? json_integer_value(json_object_get(P.doc, "version")) : 0;
    const char *why = NULL;
    proj_pg_run_values v;
    json_t *before = P.doc ? json_deep_copy(P.doc) : NULL;
    int rc;

    /* LMDB: the projector's version check first, then the fold */
    if (e->version <= docv) {
        assert_int_equal(fold_rc, EV_FOLD_DUPLICATE);
    } else {
        rc = proj_doc_run(&P.doc, e, &why);
        if (fold_rc == EV_FOLD_APPLIED) {
            if (rc != PROJ_DOC_OK)
                fail_msg("doc: %s v%lld refused: %s", ev_event_type_name(e->payload_type),
                         (long long)e->version, why ? why : "-");
        } else {
            assert_int_equal(rc, PROJ_DOC_REFUSED);
            assert_non_null(why);
            assert_true((before == NULL && P.doc == NULL) || json_equal(before, P.doc));
        }
    }
    json_decref(before);
    /* PostgreSQL: the fold's values, written by the statements */
    rc = proj_pg_run_fold(&P.pg, e, &v, &why);
    assert_int_equal(rc, fold_rc);
    if (rc == EV_FOLD_APPLIED)
        pg_write(e, &v);
    if (rnd(4) == 0) /* a batch ends: the next one reads the state back from the rows */
        pg_reload(&P.pg);
}

/* The command side's run as the fold's state (version 0: no run). */
static void cmd_view(const char *id, ev_run_state *s)
{
    const cmd_run *r = cmd_state_run(&V.cmd, id);

    if (r == NULL)
        ev_run_init(s);
    else
        cmd_run_to_fold(r, s);
}

/* Every component agrees with the fold's state `want` about run `id`. */
static void agree(const char *id, const ev_run_state *want)
{
    ev_run_state c;
    const wk_run *w = wk_runs_get(V.wk, id);

    /* the command side keeps all but the last attempt's time and delay */
    cmd_view(id, &c);
    assert_int_equal(c.version, want->version);
    if (want->version > 0) {
        assert_int_equal(c.status, want->status);
        assert_int_equal(c.step_count, want->step_count);
        assert_int_equal(c.step, want->step);
        assert_int_equal(c.attempts, want->attempts);
        assert_int_equal(c.step_failed, want->step_failed);
        assert_int_equal(c.ended, want->ended);
        assert_int_equal(ev_run_open(&c), ev_run_open(want));
        for (uint32_t i = 0; i < want->step_count; i++)
            assert_int_equal(ev_run_step_status(&c, i), ev_run_step_status(want, i));
    }
    /* the worker keeps the fold's state as it is */
    if (want->version == 0) {
        assert_null(w);
    } else {
        assert_non_null(w);
        assert_memory_equal(&w->st, want, sizeof *want);
        assert_int_equal(w->end == WK_RUN_OPEN, ev_run_open(want));
        if (!ev_run_open(want))
            assert_int_equal(w->end, want->status == EV_RUN_IS_SUCCEEDED ? WK_RUN_SUCCEEDED
                                                                         : WK_RUN_FAILED);
        assert_int_equal(wk_run_due_ms(w, 42),
                         want->attempts == 0 || want->next_delay_ms < 0
                             ? 42
                             : want->last_attempt_us / 1000 + want->next_delay_ms);
        assert_int_equal(wk_runs_oldest_open(V.wk, 0) >= 0 || !ev_run_open(want), 1);
    }
    proj_agree(want);
    V.compared++;
}

/*
 * Feed one record (bytes `buf`, decoded `e`) of run `id` to every component;
 * `fold_rc` is what ev_run_fold answered for it. Each component must give the
 * same answer (the worker skips, rather than refuses, an event of a run it
 * never saw started).
 */
static void feed(const char *id, const uint8_t *buf, size_t len, const ev_envelope *e, int fold_rc,
                 int known_before)
{
    char err[256];
    const char *why = NULL;
    wk_run *changed = NULL;
    int rc;

    rc = cmd_aggregate_apply(&V.cmd, CMD_TOPIC_RUN, buf, len, 0, V.offset, err, sizeof err);
    if ((fold_rc == EV_FOLD_APPLIED && rc != 0) || (fold_rc == EV_FOLD_DUPLICATE && rc != 1) ||
        (fold_rc == EV_FOLD_REFUSED && rc != KQ_ECORRUPT))
        fail_msg("commands: %s v%lld: rc %d, the fold said %d (%s)",
                 ev_event_type_name(e->payload_type), (long long)e->version, rc, fold_rc,
                 rc < 0 ? err : "-");
    rc = wk_runs_apply(V.wk, e, buf, len, 0, V.offset, &changed, &why);
    if (fold_rc == EV_FOLD_APPLIED)
        assert_int_equal(rc, WK_RUNS_APPLIED);
    else if (fold_rc == EV_FOLD_DUPLICATE || (!known_before && e->payload_type != EV_RUN_STARTED))
        assert_int_equal(rc, WK_RUNS_SKIPPED);
    else
        assert_int_equal(rc, WK_RUNS_REFUSED);
    proj_feed(e, fold_rc);
    V.offset++;
    V.refused += fold_rc == EV_FOLD_REFUSED;
    (void)id;
}

/* Fold sequence s of run `id` through the fold and every component. */
static void cross_seq(const seq *s, const char *id, ev_run_state *st)
{
    static uint8_t buf[4096];

    ev_run_init(st);
    proj_reset();
    for (size_t i = 0; i < s->n; i++) {
        ev_envelope e;
        int known = st->version > 0, rc;
        size_t len = materialize(&s->ev[i], id, buf, sizeof buf, &e);
        rc = ev_run_fold(st, &e, NULL);
        feed(id, buf, len, &e, rc, known);
        agree(id, st);
    }
}

/*
 * The command side's decision on one attempt of run `id` (state *st):
 * accepted exactly when the fold says the writer may append it (open, the
 * current step, the next attempt), refused with the matching code otherwise.
 * An accepted decision's events, built and encoded as the writer does, apply
 * in every component, and the worker's own advance after the 200 lands where
 * they do.
 */
static void cross_decide(const char *id, ev_run_state *st)
{
    uint32_t step = rnd(3) ? st->step : rnd(4), attempt = rnd(3) ? st->attempts + 1 : 1 + rnd(4);
    cmd_outcome out = (cmd_outcome)(1 + rnd(3));
    int accepted = ev_run_open(st) && step == st->step && attempt == st->attempts + 1;
    cmd_command c = fx_attempt(id, step, attempt, out);
    cmd_batch b;
    cmd_decision d;
    wk_run *w = wk_runs_get(V.wk, id), adv;
    int64_t now_ms = 1800000000000 + (int64_t)rnd(1000);

    if (st->version == 0)
        return;
    V.decided++;
    snprintf(c.correlation_id, sizeof c.correlation_id, "corr-fold");
    snprintf(c.delivery_id, sizeof c.delivery_id, "%s.%u", id, step);
    assert_int_equal(cmd_batch_init(&b), 0);
    assert_int_equal(cmd_batch_decide(&V.cmd, &b, &c, 0, &d), 0);
    if (!accepted) {
        const char *want = !ev_run_open(st) && st->step_count > 0       ? "run_finished"
                           : step != st->step || step >= st->step_count ? "step_mismatch"
                           : attempt <= st->attempts                    ? "attempt_recorded"
                                                                        : "attempt_gap";
        assert_int_equal(d.kind, CMD_D_ERROR);
        assert_string_equal(d.code, want);
        cmd_decision_clear(&d);
        cmd_batch_free(&b);
        return;
    }
    assert_int_equal(d.kind, CMD_D_APPEND);
    V.accepted++;
    assert_int_equal(d.version, st->version + d.nevents);
    /* the worker's advance after the 200, on a copy of its run */
    adv = *w;
    assert_int_equal(wk_run_advance(&adv, d.version, attempt,
                                    out == CMD_OUT_RETRY       ? WK_OUTCOME_RETRY
                                    : out == CMD_OUT_SUCCEEDED ? WK_OUTCOME_SUCCEEDED
                                                               : WK_OUTCOME_FAILED,
                                    c.next_delay_ms, now_ms),
                     WK_ADVANCE_APPLIED);
    for (int i = 0; i < d.nevents; i++) {
        ev_envelope e, scratch, back;
        const uint8_t *p;
        size_t len;
        char err[256];
        static uint8_t buf[4096];
        if (cmd_aggregate_build(&c, &d, i, &e, &scratch, err, sizeof err) != 0)
            fail_msg("build: %s", err);
        e.occurred_at_us = now_ms * 1000;
        if (ev_envelope_encode(&fb, &e, err, sizeof err) != 0)
            fail_msg("encode: %s", err);
        p = ev_fb_builder_data(&fb, &len);
        memcpy(buf, p, len);
        assert_int_equal(ev_envelope_decode(buf, len, &back, err, sizeof err), 0);
        assert_int_equal(ev_run_fold(st, &back, NULL), EV_FOLD_APPLIED);
        feed(id, buf, len, &back, EV_FOLD_APPLIED, 1);
        agree(id, st);
    }
    assert_memory_equal(&adv.st, st, sizeof *st);
    assert_int_equal(adv.end, wk_runs_get(V.wk, id)->end);
    cmd_decision_clear(&d);
    cmd_batch_free(&b);
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
    static unsigned serial;
    seq s, only;
    model m;
    ev_run_state st, again, cross;
    char id[32];
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
    /* the same sequence through every component, then one decision */
    snprintf(id, sizeof id, "run-%u", serial++);
    cross_seq(&s, id, &cross);
    assert_memory_equal(&cross, &st, sizeof st);
    for (int k = 0; k < 2; k++)
        cross_decide(id, &cross);
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
    /* the components were compared on every event, and decided often both ways */
    assert_true(V.compared > (size_t)RUNS * 3);
    assert_true(V.accepted > RUNS / 4 && V.decided - V.accepted > RUNS / 4);
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
    if (cross_setup() != 0)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    proj_reset();
    cross_teardown();
    ev_fb_builder_free(&fb);
    return rc;
}
