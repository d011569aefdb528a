/*
 * wk_service.c — kcqrs-worker's loop (wk_service.h): consume and fold,
 * schedule and start attempts, take the records' answers, tick, rebalance.
 */
#include "wk_service.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ev_codec.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_time.h"
#include "wk_metrics.h"
#include "wk_offsets.h"
#include "wk_run.h"

#define MSGS_PER_ROUND 2000 /* consumer messages handled before the engine runs again */

typedef struct attempt_ctx attempt_ctx;

struct wk_service {
    wk_service_settings set; /* strings below are owned copies */
    char *topic;
    char *smtp_url, *smtp_from, *smtp_user, *smtp_password;
    rd_kafka_t *rk; /* owned once attached */
    rd_kafka_queue_t *rkq;
    wk_engine *engine;
    wk_breaker_set *breakers;
    wk_recorder *rec;
    wk_runs *runs;
    wk_rng rng;
    wk_offsets offs;
    int32_t *revoking; /* partitions being revoked (offs.n entries) */
    attempt_ctx *ctxs; /* every live attempt (freed at exit) */
    atomic_int stop;
    atomic_int joined; /* a first assignment arrived */
    /* attempts not started because a run's signing-secret data key is missing (not erased);
     * missing_subject is the first one's, written once before missing_keys leaves 0 */
    atomic_ulong missing_keys;
    char missing_subject[WK_KEY_SUBJECT_MAX];
    int64_t next_tick; /* wall ms of the next tick */
    wk_metrics m;
};

/* One attempt in flight: from its start until its record's answer. */
struct attempt_ctx {
    wk_service *w;
    wk_run *run;
    uint32_t step, attempt;
    int64_t started_version;
    int outcome;
    int64_t next_delay_ms;
    int has_dest;
    char dest[WK_BREAKER_KEY_MAX];
    char delivery_id[WK_DELIVERY_ID_MAX + 1];
    kq_span span; /* the attempt (a child of the run's RunStarted context); its context is the
                     traceparent of the outbound request and of the attempt's record */
    char tp[KQ_TRACEPARENT_LEN + 1];
    attempt_ctx *prev, *next;
};

/* ---------------------------------------------------------------- attempts */

static attempt_ctx *ctx_new(wk_service *w, wk_run *r)
{
    attempt_ctx *c = calloc(1, sizeof *c);

    if (c == NULL)
        return NULL;
    c->w = w;
    c->run = r;
    c->step = r->st.step;
    c->attempt = r->st.attempts + 1;
    c->started_version = r->st.version;
    c->next_delay_ms = -1;
    c->next = w->ctxs;
    if (w->ctxs)
        w->ctxs->prev = c;
    w->ctxs = c;
    return c;
}

static void ctx_free(wk_service *w, attempt_ctx *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        w->ctxs = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

static void set_in_flight(wk_service *w, wk_run *r, int delta)
{
    wk_offsets_in_flight_add(&w->offs, r->partition, delta);
    atomic_fetch_add(&w->m.in_flight, delta);
}

/*
 * A run changed (fold, answer): drop it when finished and idle (or its
 * partition is gone), else schedule it — unless it waits for the log
 * (WAIT_LOG: an applied event or the tick wakes it, never its own answer).
 */
static void run_changed(wk_service *w, wk_run *r)
{
    wk_part *ps = wk_offsets_part(&w->offs, r->partition);

    if (r->phase == WK_RUN_ACTIVE || r->phase == WK_RUN_RECORDING)
        return; /* the attempt's end decides */
    if (r->end != WK_RUN_OPEN || ps == NULL || !ps->assigned) {
        if (r->end != WK_RUN_OPEN) {
            atomic_fetch_add(&w->m.runs_done, 1);
            kq_log_debug("run %s %s", r->id, r->end == WK_RUN_SUCCEEDED ? "succeeded" : "failed");
        }
        wk_runs_remove(w->runs, r);
        atomic_store(&w->m.runs_open, (long)wk_runs_count(w->runs));
        return;
    }
    if (r->phase == WK_RUN_WAIT_LOG)
        return;
    if (ps->ready && wk_sched_put(w->runs, r, wk_run_due_ms(r, kq_time_now_ms())) != 0)
        kq_log_error("run %s: out of memory scheduling it", r->id);
}

/* End attempt c's span (exported when tracing): run, step, attempt, the outcome. */
static void end_span(attempt_ctx *c, const wk_attempt_result *res, int status_code)
{
    kq_span *sp = &c->span;

    if (!kq_trace_exporting())
        return;
    kq_span_attr_str(sp, "kcqrs.aggregate_id", c->run->id);
    kq_span_attr_int(sp, "kcqrs.step", c->step);
    kq_span_attr_int(sp, "kcqrs.attempt", c->attempt);
    kq_span_attr_str(sp, "kcqrs.delivery_id", c->delivery_id);
    kq_span_attr_str(sp, "kcqrs.outcome",
                     res->outcome == WK_OUTCOME_SUCCEEDED ? "succeeded"
                     : res->outcome == WK_OUTCOME_RETRY   ? "retry"
                                                          : "failed");
    if (status_code > 0)
        kq_span_attr_int(sp, "http.response.status_code", status_code);
    if (res->has_error)
        kq_span_attr_str(sp, "error.message", res->error);
    kq_span_attr_int(sp, "messaging.kafka.destination.partition", c->run->partition);
    kq_span_attr_int(sp, "messaging.kafka.offset", c->run->started_offset);
    sp->error = res->outcome != WK_OUTCOME_SUCCEEDED;
    kq_span_end(sp);
}

/* Queue the record of attempt c as res says. */
static void submit_record(wk_service *w, attempt_ctx *c, const wk_attempt_result *res,
                          long duration_ms)
{
    char *body;

    c->outcome = res->outcome;
    c->next_delay_ms = res->next_delay_ms;
    body = wk_record_body(c->step, c->attempt, res->status_code, res->has_error ? res->error : NULL,
                          duration_ms, res->next_delay_ms, c->delivery_id, res->outcome);
    c->run->phase = WK_RUN_RECORDING;
    if (body == NULL ||
        wk_recorder_submit(w->rec, c->run->id, body, c->tp[0] ? c->tp : NULL, c) != 0) {
        /* cannot record now: let the run be tried again later (same delivery id) */
        kq_log_error("run %s: cannot queue the record of step %u attempt %u", c->run->id, c->step,
                     c->attempt);
        c->run->phase = WK_RUN_WAIT_LOG;
        c->run->wait_until_ms = kq_time_now_ms() + WK_SERVICE_WAIT_LOG_MS;
        set_in_flight(w, c->run, -1);
        ctx_free(w, c);
    }
    free(body);
}

/* The action could not be built or sent: record a failed attempt with the reason. */
static void fail_attempt(wk_service *w, attempt_ctx *c, const char *why)
{
    wk_attempt_result res;

    atomic_fetch_add(&w->m.build_errors, 1);
    atomic_fetch_add(&w->m.failed, 1);
    kq_log_warn("run %s step %u attempt %u: %s", c->run->id, c->step, c->attempt, why);
    wk_attempt_failed(why, &res);
    end_span(c, &res, 0);
    submit_record(w, c, &res, 0);
}

static void on_done(void *arg, const wk_outcome *o)
{
    attempt_ctx *c = arg;
    wk_service *w = c->w;
    wk_attempt_result res;

    if (c->has_dest)
        wk_breaker_record(w->breakers, c->dest, wk_policy_is_destination_failure(o));
    if (o->result == WK_R_ABORTED) { /* shutting down: not an attempt */
        c->run->phase = WK_RUN_IDLE;
        set_in_flight(w, c->run, -1);
        ctx_free(w, c);
        return;
    }
    wk_attempt_conclude(&w->set.policy, o, c->attempt, wk_rng_next, &w->rng, &res);
    if (res.outcome == WK_OUTCOME_SUCCEEDED)
        atomic_fetch_add(&w->m.succeeded, 1);
    else if (res.outcome == WK_OUTCOME_RETRY)
        atomic_fetch_add(&w->m.retry, 1);
    else
        atomic_fetch_add(&w->m.failed, 1);
    kq_log_debug("run %s step %u attempt %u: %s %d -> %s", c->run->id, c->step, c->attempt,
                 wk_result_name(o->result), o->status_code, res.reason);
    end_span(c, &res, o->status_code);
    submit_record(w, c, &res, o->duration_ms);
}

/* A run's signing-secret data key is missing and its subject was not erased: count it, log
 * the first one; /ready answers 503 from now on (as kcqrs-commands does). */
static void note_missing_key(wk_service *w, const wk_run *r, const char *subject)
{
    if (atomic_load(&w->missing_keys) == 0) {
        snprintf(w->missing_subject, sizeof w->missing_subject, "%s", subject);
        kq_log_error("run %s: the data key of %s is missing from the key topic and the subject "
                     "was not erased: its signing secret cannot be opened (the run waits, "
                     "retried every %d ms; /ready answers 503)",
                     r->id, subject, WK_SERVICE_KEY_RETRY_MS);
    }
    atomic_fetch_add(&w->missing_keys, 1);
}

/*
 * Build and submit the current step of run r. 0: submitted (or recorded as
 * failed); 1: the breaker refused, or the signing secret's data key is missing (*retry_in
 * set); KQ_ENOMEM.
 */
static int start_attempt(wk_service *w, wk_run *r, long *retry_in)
{
    attempt_ctx *c;
    wk_action a;
    char err[512];
    int rc;

    if ((c = ctx_new(w, r)) == NULL)
        return KQ_ENOMEM;
    snprintf(c->delivery_id, sizeof c->delivery_id, "%s.%u", r->id, c->step);
    {
        char name[48];
        snprintf(name, sizeof name, "attempt step %u", c->step);
        if (kq_span_start(&c->span, r->has_trace ? &r->trace : NULL, KQ_SPAN_CLIENT, name) == 0)
            kq_trace_format(&c->span.ctx, c->tp);
    }
    r->phase = WK_RUN_ACTIVE;
    r->phase_version = r->st.version;
    set_in_flight(w, r, 1);

    /* kcqrs_worker_attempts_total counts an attempt once it is one: never up and down
     * again while a missing key or an open breaker turns it into a wait */
    rc = wk_action_build(&a, r->started, r->started_len, r->id, c->step, &w->set.smtp, w->set.keys,
                         err, sizeof err);
    if (rc == WK_ACTION_UNBUILDABLE) {
        atomic_fetch_add(&w->m.attempts, 1);
        fail_attempt(w, c, err);
        return 0;
    }
    if (rc == WK_ACTION_KEY_MISSING) {
        note_missing_key(w, r, a.key_subject);
        *retry_in = WK_SERVICE_KEY_RETRY_MS;
        rc = 1; /* not an attempt: the run waits, as behind an open breaker */
    }
    if (rc != 0) { /* no memory, or a missing key: not an attempt */
        r->phase = WK_RUN_IDLE;
        set_in_flight(w, r, -1);
        ctx_free(w, c);
        return rc;
    }
    if (a.has_dest) {
        if (!wk_breaker_allow(w->breakers, a.dest)) {
            /* the breaker is open: no attempt, come back later */
            *retry_in = wk_breaker_retry_in_ms(w->breakers, a.dest);
            atomic_fetch_add(&w->m.breaker_waits, 1);
            r->phase = WK_RUN_IDLE;
            set_in_flight(w, r, -1);
            ctx_free(w, c);
            wk_action_free(&a);
            return 1;
        }
        c->has_dest = 1;
        memcpy(c->dest, a.dest, sizeof c->dest);
    }
    if (a.kind == WK_ACTION_HTTP && c->tp[0] != '\0')
        a.http.traceparent = c->tp; /* the receiver continues the attempt's trace */
    atomic_fetch_add(&w->m.attempts, 1);
    if (wk_action_submit(&a, w->engine, on_done, c, err, sizeof err) != 0) {
        if (c->has_dest)
            wk_breaker_record(w->breakers, c->dest, 0);
        fail_attempt(w, c, err);
    }
    wk_action_free(&a);
    return 0;
}

/* Start every due attempt the in-flight bound allows. */
static void schedule(wk_service *w)
{
    int64_t now = kq_time_now_ms();
    wk_run *r;

    while ((r = wk_sched_peek(w->runs)) != NULL && r->due_ms <= now &&
           atomic_load(&w->m.in_flight) < w->set.max_runs && !atomic_load(&w->stop)) {
        wk_part *ps = wk_offsets_part(&w->offs, r->partition);
        long retry_in = 0;
        int rc;

        wk_sched_remove(w->runs, r);
        if (ps == NULL || !ps->ready || r->phase != WK_RUN_IDLE || r->end != WK_RUN_OPEN)
            continue; /* parked: rescheduled when its partition is ready */
        rc = start_attempt(w, r, &retry_in);
        if (rc == 1)
            wk_sched_put(w->runs, r, now + (retry_in > 0 ? retry_in : 1));
        else if (rc < 0) {
            kq_log_error("run %s: cannot start an attempt now (out of memory, or the key topic "
                         "unreadable); retrying in 1 s",
                         r->id);
            wk_sched_put(w->runs, r, now + 1000);
            break;
        }
    }
}

/* ---------------------------------------------------------------- records */

static void handle_records(wk_service *w)
{
    wk_record_result res[256];
    size_t n;

    while ((n = wk_recorder_take(w->rec, res, 256)) > 0) {
        for (size_t i = 0; i < n; i++) {
            attempt_ctx *c = res[i].tag;
            wk_run *r = c->run;

            set_in_flight(w, r, -1);
            if (res[i].status == 200 && res[i].version > 0 &&
                wk_run_advance(r, res[i].version, c->attempt, c->outcome, c->next_delay_ms,
                               kq_time_now_ms()) != WK_ADVANCE_AHEAD) {
                r->phase = WK_RUN_IDLE;
            } else if (res[i].status == 200 && res[i].version > 0) {
                kq_log_info("run %s step %u attempt %u: recorded at version %lld, ahead of the "
                            "log read so far (version %lld); waiting for the log",
                            r->id, c->step, c->attempt, (long long)res[i].version,
                            (long long)r->st.version);
                r->phase = WK_RUN_WAIT_LOG;
                r->wait_until_ms = kq_time_now_ms() + WK_SERVICE_WAIT_LOG_MS;
            } else if (res[i].status == 409 && r->st.version != c->started_version) {
                r->phase = WK_RUN_IDLE; /* the log moved on meanwhile */
            } else if (res[i].status == 404) {
                /* kcqrs-commands has no such run: it finished longer ago than
                 * KCQRS_IDEMPOTENCY_TTL and was pruned (or never existed).
                 * Nothing can be appended to it: drop it, never run the step
                 * again (its end, if the log holds one, is skipped later). */
                kq_log_warn("run %s step %u attempt %u: kcqrs-commands does not know the run "
                            "(%s: finished and pruned, or never started); dropped",
                            r->id, c->step, c->attempt, res[i].code);
                ctx_free(w, c);
                wk_runs_remove(w->runs, r);
                atomic_store(&w->m.runs_open, (long)wk_runs_count(w->runs));
                continue;
            } else {
                if (res[i].status == 409)
                    kq_log_info("run %s step %u attempt %u: %s (waiting for the log)", r->id,
                                c->step, c->attempt, res[i].code);
                else
                    kq_log_error("run %s step %u attempt %u: record refused: %d %s %s", r->id,
                                 c->step, c->attempt, res[i].status, res[i].code, res[i].message);
                r->phase = WK_RUN_WAIT_LOG;
                r->wait_until_ms = kq_time_now_ms() + WK_SERVICE_WAIT_LOG_MS;
            }
            ctx_free(w, c);
            run_changed(w, r);
        }
    }
}

/* ---------------------------------------------------------------- consumer */

typedef struct part_arg {
    wk_service *w;
    int32_t p;
    int64_t now;
} part_arg;

static void schedule_partition_cb(void *arg, wk_run *r)
{
    part_arg *a = arg;

    if (r->partition == a->p && r->phase == WK_RUN_IDLE && r->end == WK_RUN_OPEN)
        wk_sched_put(a->w->runs, r, wk_run_due_ms(r, a->now));
}

static void partition_ready(wk_service *w, int32_t p)
{
    part_arg a = {w, p, kq_time_now_ms()};

    wk_runs_each(w->runs, schedule_partition_cb, &a);
}

/* One message; `consumed`: it came from the consumer (its headers can be read). */
static void handle_message(wk_service *w, const rd_kafka_message_t *m, int consumed)
{
    ev_envelope env;
    wk_run *r;
    char err[256];
    const char *why;
    int rc;

    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (wk_offsets_eof(&w->offs, m->partition, m->offset)) {
            kq_log_info("partition %d read to the end (offset %lld): its runs start",
                        (int)m->partition, (long long)m->offset);
            partition_ready(w, m->partition);
        }
        return;
    }
    if (m->err) {
        kq_log_warn("consumer: %s", rd_kafka_message_errstr(m));
        return;
    }
    if (!wk_offsets_consumed(&w->offs, m->partition, m->offset))
        return;
    atomic_fetch_add(&w->m.events, 1);
    if (m->payload == NULL || ev_envelope_decode(m->payload, m->len, &env, err, sizeof err) != 0) {
        atomic_fetch_add(&w->m.bad_records, 1);
        kq_log_warn("partition %d offset %lld: not an event (%s); skipped", (int)m->partition,
                    (long long)m->offset, m->payload ? err : "no value");
        return;
    }
    if (env.aggregate_type != EV_AGG_RUN)
        return;
    rc = wk_runs_apply(w->runs, &env, m->payload, m->len, m->partition, m->offset, &r, &why);
    if (rc < 0) {
        kq_log_error("partition %d offset %lld: out of memory folding the run", (int)m->partition,
                     (long long)m->offset);
        return;
    }
    if (rc == WK_RUNS_REFUSED) {
        atomic_fetch_add(&w->m.refused, 1);
        kq_log_warn("run %.*s: event %s at version %lld (partition %d offset %lld) not applied: %s",
                    (int)env.aggregate_id.len, env.aggregate_id.ptr,
                    ev_event_type_name(env.payload_type), (long long)env.version, (int)m->partition,
                    (long long)m->offset, why);
        return;
    }
    if (rc == WK_RUNS_SKIPPED)
        return;
    if (consumed && env.payload_type == EV_RUN_STARTED && !r->has_trace) {
        char tp[KQ_TRACEPARENT_LEN + 16];
        r->has_trace = kq_kafka_header_string(m, KQ_TRACE_HEADER, tp, sizeof tp) == 0 &&
                       kq_trace_parse(tp, &r->trace) == 0;
    }
    if (r->phase == WK_RUN_WAIT_LOG)
        r->phase = WK_RUN_IDLE; /* the log moved on: try again from what it says */
    atomic_store(&w->m.runs_open, (long)wk_runs_count(w->runs));
    run_changed(w, r);
}

/* Commit the commit points of the assigned partitions in `only` (NULL: all). */
static void commit(wk_service *w, const int32_t *only, size_t n_only, int sync)
{
    wk_commit_point *pts = malloc(sizeof *pts * (size_t)w->offs.n);
    rd_kafka_topic_partition_list_t *l = NULL;
    rd_kafka_resp_err_t e;
    int n;

    if (pts == NULL || w->rk == NULL)
        goto out;
    if ((n = wk_offsets_commit_points(&w->offs, w->runs, only, n_only, pts)) <= 0)
        goto out;
    if ((l = rd_kafka_topic_partition_list_new(n)) == NULL)
        goto out;
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, w->topic, pts[i].partition)->offset = pts[i].offset;
    if ((e = rd_kafka_commit(w->rk, l, !sync)) != RD_KAFKA_RESP_ERR_NO_ERROR)
        kq_log_warn("offset commit: %s", rd_kafka_err2str(e));
out:
    if (l)
        rd_kafka_topic_partition_list_destroy(l);
    free(pts);
}

/* Once a second: WAIT_LOG time-outs, forgotten runs, commits, lag. */
typedef struct tick_arg {
    wk_service *w;
    int64_t now;
    wk_run **drop;
    size_t ndrop, cap;
    wk_run **wake;
    size_t nwake, wcap;
} tick_arg;

static void tick_cb(void *arg, wk_run *r)
{
    tick_arg *a = arg;
    wk_part *ps = wk_offsets_part(&a->w->offs, r->partition);
    int active = r->phase == WK_RUN_ACTIVE || r->phase == WK_RUN_RECORDING;

    if (!active && (ps == NULL || !ps->assigned)) {
        if (a->ndrop < a->cap)
            a->drop[a->ndrop++] = r;
    } else if (r->phase == WK_RUN_WAIT_LOG && r->wait_until_ms <= a->now) {
        if (a->nwake < a->wcap)
            a->wake[a->nwake++] = r;
    }
}

static void tick(wk_service *w)
{
    tick_arg a;
    long lag = 0;

    memset(&a, 0, sizeof a);
    a.w = w;
    a.now = kq_time_now_ms();
    a.cap = a.wcap = 4096;
    a.drop = malloc(a.cap * sizeof *a.drop);
    a.wake = malloc(a.wcap * sizeof *a.wake);
    if (a.drop && a.wake) {
        wk_runs_each(w->runs, tick_cb, &a);
        for (size_t i = 0; i < a.ndrop; i++)
            wk_runs_remove(w->runs, a.drop[i]);
        for (size_t i = 0; i < a.nwake; i++) {
            kq_log_info("run %s: no news in the log after a refused record; trying again",
                        a.wake[i]->id);
            a.wake[i]->phase = WK_RUN_IDLE;
            run_changed(w, a.wake[i]);
        }
    }
    free(a.drop);
    free(a.wake);
    atomic_store(&w->m.runs_open, (long)wk_runs_count(w->runs));
    commit(w, NULL, 0, 0);
    for (int p = 0; p < w->offs.n && w->rk; p++) {
        int64_t lo, hi;
        wk_part *ps = &w->offs.parts[p];
        if (!ps->assigned)
            continue;
        if (rd_kafka_get_watermark_offsets(w->rk, w->topic, p, &lo, &hi) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            ps->next >= 0 && hi > ps->next)
            lag += (long)(hi - ps->next);
    }
    atomic_store(&w->m.lag, lag);
}

/* Let the attempts in flight on `parts` (NULL: all) finish and be recorded, bounded. */
static void drain(wk_service *w, const int32_t *parts, size_t n, long bound_ms)
{
    int64_t end = kq_time_now_ms() + bound_ms;

    while ((parts ? wk_offsets_in_flight(&w->offs, parts, n) : (int)atomic_load(&w->m.in_flight)) >
               0 &&
           kq_time_now_ms() < end) {
        wk_engine_run(w->engine, 50);
        handle_records(w);
    }
}

void wk_service_assign(wk_service *w, const int32_t *parts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        wk_offsets_assign(&w->offs, parts[i]);
    kq_log_info("assigned %zu partition(s) of %s", n, w->topic);
    atomic_store(&w->m.assigned, (long)n);
    atomic_store(&w->joined, 1);
}

void wk_service_revoke(wk_service *w, const int32_t *parts, size_t count)
{
    size_t n = 0;

    for (size_t i = 0; i < count; i++)
        if (wk_offsets_part(&w->offs, parts[i]) != NULL && n < (size_t)w->offs.n) {
            wk_offsets_revoking(&w->offs, parts[i]); /* no new attempts there */
            w->revoking[n++] = parts[i];
        }
    kq_log_info("revoking %zu partition(s): waiting for %d attempt(s) in flight", count,
                wk_offsets_in_flight(&w->offs, w->revoking, n));
    drain(w, w->revoking, n, w->set.drain_ms);
    commit(w, w->revoking, n, 1);
    for (size_t i = 0; i < n; i++)
        wk_offsets_revoked(&w->offs, w->revoking[i]);
    tick(w); /* forgets the runs of the revoked partitions */
    atomic_store(&w->m.assigned, 0);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    wk_service *w = opaque;
    int32_t *ps = parts->cnt > 0 ? calloc((size_t)parts->cnt, sizeof *ps) : NULL;
    size_t n = 0;

    if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS &&
        err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        kq_log_error("rebalance: %s", rd_kafka_err2str(err));
        rd_kafka_assign(rk, NULL);
        goto out;
    }
    if (parts->cnt > 0 && ps == NULL)
        kq_log_error("rebalance: out of memory; the partitions are not tracked");
    for (int i = 0; ps && i < parts->cnt; i++)
        ps[n++] = parts->elems[i].partition;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        wk_service_assign(w, ps, n);
        rd_kafka_assign(rk, parts);
    } else {
        wk_service_revoke(w, ps, n);
        rd_kafka_assign(rk, NULL);
    }
out:
    free(ps);
}

/* ---------------------------------------------------------------- service */

static void wake_engine(void *arg)
{
    wk_service *w = arg;

    wk_engine_wakeup(w->engine);
}

static void queue_event_cb(rd_kafka_t *rk, void *arg)
{
    (void)rk;
    wake_engine(arg);
}

static char *dup_opt(const char *s)
{
    return s ? strdup(s) : NULL;
}

int wk_service_new(const wk_service_settings *s, wk_service **out, char *errstr, size_t errlen)
{
    wk_service *w;
    wk_record_settings rs;
    char err[512];
    int rc = KQ_ENOMEM;

    *out = NULL;
    if ((w = calloc(1, sizeof *w)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    w->set = *s;
    wk_metrics_init(&w->m);
    atomic_init(&w->stop, 0);
    atomic_init(&w->joined, 0);
    atomic_init(&w->missing_keys, 0);
    if (s->max_runs < 1 || s->topic == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_EINVAL, "max runs and topic needed");
        goto fail;
    }
    if (wk_policy_validate(&s->policy, err, sizeof err) != 0) {
        rc = kq_seterr(errstr, errlen, KQ_EINVAL, "retry policy: %s", err);
        goto fail;
    }
    w->topic = strdup(s->topic);
    w->smtp_url = dup_opt(s->smtp.url);
    w->smtp_from = dup_opt(s->smtp.from);
    w->smtp_user = dup_opt(s->smtp.user);
    w->smtp_password = dup_opt(s->smtp.password);
    if (w->topic == NULL || (s->smtp.url && !w->smtp_url) || (s->smtp.from && !w->smtp_from) ||
        (s->smtp.user && !w->smtp_user) || (s->smtp.password && !w->smtp_password))
        goto nomem;
    w->set.topic = w->topic;
    w->set.smtp.url = w->smtp_url;
    w->set.smtp.from = w->smtp_from;
    w->set.smtp.user = w->smtp_user;
    w->set.smtp.password = w->smtp_password;
    wk_rng_seed(&w->rng);
    if ((rc = wk_offsets_init(&w->offs, s->partitions)) != 0) {
        rc = kq_seterr(errstr, errlen, rc, "partitions: %d", s->partitions);
        goto fail;
    }
    if ((w->runs = wk_runs_new()) == NULL ||
        (w->revoking = calloc((size_t)w->offs.n, sizeof *w->revoking)) == NULL)
        goto nomem;
    if ((w->engine = wk_engine_new(&s->engine, err, sizeof err)) == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_EINVAL, "engine: %s", err);
        goto fail;
    }
    if ((w->breakers = wk_breaker_new(&s->breaker, NULL, NULL, NULL, NULL, err, sizeof err)) ==
        NULL) {
        rc = kq_seterr(errstr, errlen, KQ_EINVAL, "breakers: %s", err);
        goto fail;
    }
    rs = s->record;
    rs.notify = wake_engine;
    rs.notify_arg = w;
    if ((w->rec = wk_recorder_new(&rs, err, sizeof err)) == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_EINVAL, "record client: %s", err);
        goto fail;
    }
    *out = w;
    return 0;
nomem:
    rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
fail:
    wk_service_free(w);
    return rc;
}

int wk_service_consumer_conf(wk_service *svc, rd_kafka_conf_t *conf, char *errstr, size_t errlen)
{
    int rc;

    /* A worker killed without leaving the group holds its partitions (and
     * their runs) until its session expires: keep that short. */
    if ((rc = kq_kafka_conf_set(conf, "session.timeout.ms", "8000", errstr, errlen)) != 0 ||
        (rc = kq_kafka_conf_set(conf, "heartbeat.interval.ms", "1000", errstr, errlen)) != 0)
        return rc;
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_opaque(conf, svc);
    return 0;
}

int wk_service_attach(wk_service *svc, rd_kafka_t *rk, char *errstr, size_t errlen)
{
    rd_kafka_topic_partition_list_t *sub;
    rd_kafka_resp_err_t e;

    svc->rk = rk;
    svc->rkq = rd_kafka_queue_get_consumer(rk);
    if (svc->rkq)
        rd_kafka_queue_cb_event_enable(svc->rkq, queue_event_cb, svc);
    if ((sub = rd_kafka_topic_partition_list_new(1)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    rd_kafka_topic_partition_list_add(sub, svc->topic, RD_KAFKA_PARTITION_UA);
    e = rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return kq_seterr(errstr, errlen, KQ_EKAFKA, "subscribe to %s failed: %s", svc->topic,
                         rd_kafka_err2str(e));
    return 0;
}

/* One round after `busy` consumer messages: records, due attempts, the tick,
 * then the engine for up to max_wait_ms (less when something is due). */
static void round_once(wk_service *w, int busy, int max_wait_ms)
{
    int timeout;
    int64_t now;
    wk_run *top;

    handle_records(w);
    schedule(w);
    now = kq_time_now_ms();
    if (now >= w->next_tick) {
        tick(w);
        w->next_tick = now + WK_SERVICE_TICK_MS;
    }
    timeout = busy ? 0 : max_wait_ms;
    top = wk_sched_peek(w->runs);
    if (top && atomic_load(&w->m.in_flight) < w->set.max_runs) {
        int64_t d = top->due_ms - now;
        if (d < timeout)
            timeout = d < 0 ? 0 : (int)d;
    }
    if (w->next_tick - now < timeout)
        timeout = (int)(w->next_tick - now);
    wk_engine_run(w->engine, timeout < 0 ? 0 : timeout);
}

void wk_service_round(wk_service *svc, int max_wait_ms)
{
    round_once(svc, 0, max_wait_ms);
}

int wk_service_run(wk_service *w)
{
    while (!atomic_load(&w->stop)) {
        int busy = 0;

        for (int i = 0; i < MSGS_PER_ROUND && w->rk; i++) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, 0);
            if (m == NULL)
                break;
            handle_message(w, m, 1);
            rd_kafka_message_destroy(m);
            busy = 1;
        }
        round_once(w, busy, 200);
    }
    /* stop: attempts in flight finish and are recorded, then offsets */
    drain(w, NULL, 0, w->set.drain_ms);
    commit(w, NULL, 0, 1);
    return 0;
}

void wk_service_handle_message(wk_service *svc, const rd_kafka_message_t *m)
{
    handle_message(svc, m, 0);
}

void wk_service_stop(wk_service *svc)
{
    atomic_store(&svc->stop, 1);
    if (svc->engine)
        wk_engine_wakeup(svc->engine);
}

void wk_service_free(wk_service *w)
{
    if (w == NULL)
        return;
    if (w->rk) {
        rd_kafka_consumer_close(w->rk); /* revoke: drains and commits again (nothing new) */
        if (w->rkq)
            rd_kafka_queue_destroy(w->rkq);
        rd_kafka_destroy(w->rk);
    }
    wk_recorder_free(w->rec);
    wk_engine_free(w->engine); /* callbacks of the rest: WK_R_ABORTED */
    while (w->ctxs)
        ctx_free(w, w->ctxs);
    wk_breaker_free(w->breakers);
    wk_runs_free(w->runs);
    wk_offsets_free(&w->offs);
    free(w->revoking);
    free(w->topic);
    free(w->smtp_url);
    free(w->smtp_from);
    free(w->smtp_user);
    free(w->smtp_password);
    free(w);
}

int wk_service_ready(void *arg, char *why, size_t whylen)
{
    wk_service *w = arg;
    unsigned long n = atomic_load(&w->missing_keys);

    if (n > 0) {
        snprintf(why, whylen,
                 "data key of %s is missing from the key topic (not erased): %lu attempts could "
                 "not start",
                 w->missing_subject, n);
        return 0;
    }
    if (!atomic_load(&w->joined)) {
        snprintf(why, whylen, "consumer group not joined yet");
        kq_kafka_ready_why(why, whylen);
        return 0;
    }
    if (!wk_recorder_reachable(w->rec)) {
        snprintf(why, whylen, "kcqrs-commands not reachable");
        return 0;
    }
    return 1;
}

void wk_service_metrics(void *arg, FILE *out)
{
    wk_service *w = arg;
    size_t cap = 1 << 20;
    char *buf = malloc(cap);

    if (buf) {
        if (wk_engine_metrics(w->engine, buf, cap) >= 0)
            fputs(buf, out);
        if (wk_breaker_metrics(w->breakers, buf, cap) >= 0)
            fputs(buf, out);
        free(buf);
    }
    wk_recorder_metrics(w->rec, out);
    wk_metrics_print(&w->m, out);
    fprintf(out,
            "# HELP kcqrs_worker_missing_data_keys_total Attempts not started: the run's "
            "signing-secret data key is missing from the key topic and the subject was not "
            "erased.\n"
            "# TYPE kcqrs_worker_missing_data_keys_total counter\n"
            "kcqrs_worker_missing_data_keys_total %lu\n",
            atomic_load(&w->missing_keys));
}
