/*
 * kcqrs_worker.c — `kcqrs-worker`: executes the steps of workflow runs
 * (issue #6, CONTRACT6.md) and records every attempt with kcqrs-commands.
 *
 * One service thread owns everything that moves: the consumer (group
 * KCQRS_WORKER_GROUP on <prefix>.run.events, read_committed, offsets
 * committed by hand), the run table and scheduler (wk_run.h), the action
 * engine (wk_http.h / wk_smtp.h, one libcurl multi handle) and the policy
 * and breakers. It sleeps in wk_engine_run; whatever has news wakes it: the
 * consumer queue (rd_kafka_queue_cb_event_enable), the record client's
 * thread (wk_record.h, its own multi handle towards kcqrs-commands), the
 * signal thread. The admin server (kq_http: /health, /ready, /metrics on
 * KCQRS_WORKER_ADDR) reads atomics only.
 *
 * Life of a run: RunStarted is folded (wk_runs_apply) -> once its partition
 * has been read to the end after the assignment, the run is scheduled at
 * its due time -> the step's action is built (templates from the payload,
 * delivery id "<run_id>.<step>", HMAC with the run's signing_secret) and
 * sent, unless the destination's breaker is open (then it waits for the
 * breaker, no attempt used) -> the policy decides retry / succeeded / failed
 * -> POST /internal/v1/runs/{id}/attempts -> only on 200 does the run move
 * on (next step now, or the retry after next_delay_ms); a 409 means the log
 * already has that attempt: the run waits for the consumer to show it.
 *
 * Offsets: the committed offset of a partition is the offset of the RunStarted
 * of its oldest open run, or the consumed position when none is open, so a
 * restart (or the next owner after a rebalance) re-reads exactly the open
 * runs. On a revoke the worker stops starting attempts on those partitions,
 * lets the attempts in flight finish and be recorded (bounded by
 * KCQRS_WORKER_TIMEOUT_MS + 5 s), commits and forgets their runs.
 *
 * Exit status: 0 clean stop (SIGTERM/SIGINT), 1 cannot serve, 2 usage or
 * configuration error.
 */
#include <ctype.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ev_codec.h"
#include "kq_config.h"
#include "kq_err.h"
#include "kq_http.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_util.h"
#include "wk_breaker.h"
#include "wk_http.h"
#include "wk_policy.h"
#include "wk_record.h"
#include "wk_run.h"
#include "wk_smtp.h"
#include "wk_template.h"

#define PROG "kcqrs-worker"
#define WAIT_LOG_MS 10000   /* a refused record waits this long for the log at most */
#define TICK_MS 1000        /* commits, lag, WAIT_LOG time-outs */
#define MSGS_PER_ROUND 2000 /* consumer messages handled before the engine runs again */
#define OUTCOME_RETRY 1
#define OUTCOME_SUCCEEDED 2
#define OUTCOME_FAILED 3

static const char usage[] =
    "usage: " PROG "\n"
    "\n"
    "Executes the steps of workflow runs: reads <prefix>.run.events as consumer group\n"
    "KCQRS_WORKER_GROUP (read_committed), sends each step's HTTP request or email\n"
    "(retry policy KCQRS_WORKER_RETRY_*, KCQRS_WORKER_MAX_ATTEMPTS; circuit breaker per\n"
    "destination KCQRS_WORKER_BREAKER_*), and records every attempt with\n"
    "POST /internal/v1/runs/{id}/attempts on KCQRS_WORKER_COMMANDS_URL using the key in\n"
    "KCQRS_WORKER_KEY_FILE (role worker). Admin HTTP (/health, /ready, /metrics) on\n"
    "KCQRS_WORKER_ADDR.\n"
    "Stop with SIGTERM or SIGINT (attempts in flight finish and are recorded).\n"
    "Exit status: 0 clean stop, 1 cannot serve, 2 usage or configuration error.\n";

typedef struct part_state {
    int assigned;
    int ready;         /* read to the end once since the assignment */
    int64_t next;      /* consumed position (-1: nothing yet) */
    int64_t committed; /* last commit sent (-1: none) */
    int64_t lag;
    int in_flight; /* runs ACTIVE or RECORDING */
} part_state;

typedef struct attempt_ctx attempt_ctx;

typedef struct worker {
    kq_config *cfg;
    rd_kafka_t *rk;
    rd_kafka_queue_t *rkq;
    char topic[KQ_KAFKA_TOPIC_MAX];
    wk_engine *engine;
    wk_breaker_set *breakers;
    wk_recorder *rec;
    wk_runs *runs;
    wk_policy policy;
    wk_rng rng;
    part_state *parts;
    int nparts;
    attempt_ctx *ctxs; /* every live attempt (freed at exit) */
    char *smtp_url, *smtp_from, *smtp_user, *smtp_password;
    atomic_int stop;
    atomic_int joined; /* a first assignment arrived */

    /* metrics (read by the admin server's threads) */
    atomic_long m_runs_open, m_in_flight, m_lag, m_assigned;
    atomic_ulong m_attempts, m_succeeded, m_retry, m_failed, m_breaker_waits, m_runs_done, m_events,
        m_bad_records, m_build_errors;
} worker;

struct attempt_ctx {
    worker *w;
    wk_run *run;
    uint32_t step, attempt;
    int64_t started_version;
    int outcome;
    int64_t next_delay_ms;
    int has_dest;
    char dest[WK_BREAKER_KEY_MAX];
    char delivery_id[EV_META_MAX + 1];
    attempt_ctx *prev, *next;
};

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- attempts */

static attempt_ctx *ctx_new(worker *w, wk_run *r)
{
    attempt_ctx *c = calloc(1, sizeof *c);

    if (c == NULL)
        return NULL;
    c->w = w;
    c->run = r;
    c->step = r->step;
    c->attempt = r->attempts + 1;
    c->started_version = r->version;
    c->next = w->ctxs;
    if (w->ctxs)
        w->ctxs->prev = c;
    w->ctxs = c;
    return c;
}

static void ctx_free(worker *w, attempt_ctx *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        w->ctxs = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

static part_state *part_of(worker *w, int32_t p)
{
    return p >= 0 && p < w->nparts ? &w->parts[p] : NULL;
}

static void set_in_flight(worker *w, wk_run *r, int delta)
{
    part_state *ps = part_of(w, r->partition);

    if (ps)
        ps->in_flight += delta;
    atomic_fetch_add(&w->m_in_flight, delta);
}

/* A run changed (fold, answer): drop it when finished and idle, else schedule. */
static void run_changed(worker *w, wk_run *r)
{
    part_state *ps = part_of(w, r->partition);

    if (r->phase == WK_RUN_ACTIVE || r->phase == WK_RUN_RECORDING)
        return; /* the attempt's end decides */
    if (r->phase == WK_RUN_WAIT_LOG)
        r->phase = WK_RUN_IDLE;
    if (r->end != WK_RUN_OPEN || ps == NULL || !ps->assigned) {
        if (r->end != WK_RUN_OPEN) {
            atomic_fetch_add(&w->m_runs_done, 1);
            kq_log_debug("run %s %s", r->id, r->end == WK_RUN_SUCCEEDED ? "succeeded" : "failed");
        }
        wk_runs_remove(w->runs, r);
        atomic_store(&w->m_runs_open, (long)wk_runs_count(w->runs));
        return;
    }
    if (ps->ready && wk_sched_put(w->runs, r, wk_run_due_ms(r, wall_ms())) != 0)
        kq_log_error("run %s: out of memory scheduling it", r->id);
}

/* Keep an error message printable ASCII for the StepAttempted event. */
static void clean_text(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            *s = '?';
}

static void submit_record(worker *w, attempt_ctx *c, int status_code, const char *error,
                          long duration_ms)
{
    char err[512] = "";
    char *body;

    if (error) {
        snprintf(err, sizeof err, "%s", error);
        clean_text(err);
    }
    body = wk_record_body(c->step, c->attempt, status_code, error ? err : NULL, duration_ms,
                          c->next_delay_ms, c->delivery_id, c->outcome);
    c->run->phase = WK_RUN_RECORDING;
    if (body == NULL || wk_recorder_submit(w->rec, c->run->id, body, c) != 0) {
        /* cannot record now: let the run be tried again later (same delivery id) */
        kq_log_error("run %s: cannot queue the record of step %u attempt %u", c->run->id, c->step,
                     c->attempt);
        c->run->phase = WK_RUN_WAIT_LOG;
        c->run->wait_until_ms = wall_ms() + WAIT_LOG_MS;
        set_in_flight(w, c->run, -1);
        ctx_free(w, c);
    }
    free(body);
}

/* The action could not be built or sent: record a failed attempt with the reason. */
static void fail_attempt(worker *w, attempt_ctx *c, const char *why)
{
    atomic_fetch_add(&w->m_build_errors, 1);
    atomic_fetch_add(&w->m_failed, 1);
    kq_log_warn("run %s step %u attempt %u: %s", c->run->id, c->step, c->attempt, why);
    c->outcome = OUTCOME_FAILED;
    c->next_delay_ms = -1;
    submit_record(w, c, -1, why, 0);
}

static void on_done(void *arg, const wk_outcome *o)
{
    attempt_ctx *c = arg;
    worker *w = c->w;
    wk_decision d;
    char err[512];
    int status = -1;
    const char *error = NULL;

    if (c->has_dest)
        wk_breaker_record(w->breakers, c->dest, wk_policy_is_destination_failure(o));
    if (o->result == WK_R_ABORTED) { /* shutting down: not an attempt */
        c->run->phase = WK_RUN_IDLE;
        set_in_flight(w, c->run, -1);
        ctx_free(w, c);
        return;
    }
    d = wk_policy_decide(&w->policy, o, c->attempt, wk_rng_next, &w->rng);
    if (o->result == WK_R_RESPONSE || (o->result == WK_R_TOO_LARGE && o->status_code > 0))
        status = o->status_code;
    switch (d.verdict) {
    case WK_VERDICT_SUCCESS:
        c->outcome = OUTCOME_SUCCEEDED;
        atomic_fetch_add(&w->m_succeeded, 1);
        break;
    case WK_VERDICT_RETRY:
        c->outcome = OUTCOME_RETRY;
        c->next_delay_ms = d.delay_ms;
        atomic_fetch_add(&w->m_retry, 1);
        if (o->error[0])
            error = o->error;
        break;
    default:
        c->outcome = OUTCOME_FAILED;
        atomic_fetch_add(&w->m_failed, 1);
        if (o->error[0])
            snprintf(err, sizeof err, "%s (%s)", o->error, d.reason);
        else if (status >= 0)
            snprintf(err, sizeof err, "status %d (%s)", status, d.reason);
        else
            snprintf(err, sizeof err, "%s", d.reason);
        error = err;
        break;
    }
    kq_log_debug("run %s step %u attempt %u: %s %d -> %s", c->run->id, c->step, c->attempt,
                 wk_result_name(o->result), o->status_code, d.reason);
    submit_record(w, c, status, error, o->duration_ms);
}

/* Find a header value (case-insensitive) among the action's headers. */
static const char *header_value(const wk_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(h[i].name, name) == 0)
            return h[i].value;
    return NULL;
}

static char *dup_str(ev_str s)
{
    char *p = malloc(s.len + 1);

    if (p) {
        memcpy(p, s.ptr ? s.ptr : "", s.len);
        p[s.len] = '\0';
    }
    return p;
}

/*
 * Build and submit the current step of run r. 0: submitted (or recorded as
 * failed); 1: the breaker refused (*retry_in set); KQ_ENOMEM.
 */
static int start_attempt(worker *w, wk_run *r, long *retry_in)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    attempt_ctx *c;
    ev_envelope env;
    ev_step st;
    const ev_run_started *rs;
    json_t *payload = NULL;
    char err[512], *secret = NULL, *url = NULL, *body = NULL, *subject = NULL;
    char **strs = NULL;
    size_t nstrs = 0, body_len = 0;
    wk_header hdrs[WK_REQUEST_HEADERS_MAX];
    size_t nh = 0;
    int rc = 0;

    if ((c = ctx_new(w, r)) == NULL)
        return KQ_ENOMEM;
    snprintf(c->delivery_id, sizeof c->delivery_id, "%s.%u", r->id, r->step);
    c->next_delay_ms = -1;
    r->phase = WK_RUN_ACTIVE;
    r->phase_version = r->version;
    set_in_flight(w, r, 1);
    atomic_fetch_add(&w->m_attempts, 1);

    if (ev_envelope_decode(r->started, r->started_len, &env, err, sizeof err) != 0) {
        fail_attempt(w, c, "RunStarted does not decode");
        return 0;
    }
    rs = &env.payload.run_started;
    if (!rs->steps.present || ev_step_list_get(&rs->steps, r->step, &st) != 0) {
        fail_attempt(w, c, "RunStarted carries no definition of this step");
        return 0;
    }
    if (wk_delivery_id_check(c->delivery_id, err, sizeof err) != 0) {
        fail_attempt(w, c, err);
        return 0;
    }
    if (rs->payload_json.ptr && rs->payload_json.len) {
        json_error_t je;
        payload = json_loadb(rs->payload_json.ptr, rs->payload_json.len, 0, &je);
        if (payload == NULL) {
            snprintf(err, sizeof err, "payload is not JSON: %s", je.text);
            fail_attempt(w, c, err);
            return 0;
        }
    }
    if (rs->signing_secret.ptr && rs->signing_secret.len)
        secret = dup_str(rs->signing_secret);

    if (st.action_type == EV_ACTION_HTTP) {
        const ev_http_action *a = &st.action.http;
        wk_http_request req;
        const char *ct;

        memset(&req, 0, sizeof req);
        url = dup_str(a->url);
        nstrs = a->headers.count * 2;
        if (url == NULL || (nstrs && (strs = calloc(nstrs, sizeof *strs)) == NULL)) {
            rc = KQ_ENOMEM;
            goto fail_mem;
        }
        if (a->headers.count > WK_REQUEST_HEADERS_MAX) {
            fail_attempt(w, c, "too many headers");
            goto out;
        }
        for (uint32_t i = 0; i < a->headers.count; i++) {
            ev_http_header h;
            if (ev_header_list_get(&a->headers, i, &h) != 0 ||
                (strs[2 * i] = dup_str(h.name)) == NULL ||
                (strs[2 * i + 1] = dup_str(h.value)) == NULL) {
                rc = KQ_ENOMEM;
                goto fail_mem;
            }
            hdrs[nh].name = strs[2 * i];
            hdrs[nh].value = strs[2 * i + 1];
            nh++;
        }
        ct = header_value(hdrs, nh, "Content-Type");
        if (a->body_template.ptr) {
            char *tpl = dup_str(a->body_template);
            if (tpl == NULL) {
                rc = KQ_ENOMEM;
                goto fail_mem;
            }
            rc = wk_template_render(tpl, payload,
                                    ct == NULL || wk_template_is_json_type(ct) ? WK_TPL_JSON
                                                                               : WK_TPL_TEXT,
                                    &body, &body_len, err, sizeof err);
            free(tpl);
            if (rc != 0) {
                rc = 0;
                fail_attempt(w, c, err);
                goto out;
            }
        } else if (a->method != EV_HTTP_GET) {
            /* no template: the trigger payload is the body */
            body = payload ? json_dumps(payload, JSON_COMPACT) : strdup("{}");
            if (body == NULL) {
                rc = KQ_ENOMEM;
                goto fail_mem;
            }
            body_len = strlen(body);
        }
        if (wk_breaker_key(url, c->dest, sizeof c->dest, err, sizeof err) == 0) {
            if (!wk_breaker_allow(w->breakers, c->dest)) {
                *retry_in = wk_breaker_retry_in_ms(w->breakers, c->dest);
                rc = 1;
                goto refused;
            }
            c->has_dest = 1;
        }
        req.method = (unsigned)a->method < 5 ? methods[a->method] : "POST";
        req.url = url;
        req.headers = hdrs;
        req.n_headers = nh;
        req.body = body;
        req.body_len = body_len;
        req.delivery_id = c->delivery_id;
        req.secret = secret;
        req.secret_len = secret ? strlen(secret) : 0;
        if (wk_engine_submit_http(w->engine, &req, on_done, c, err, sizeof err) != 0) {
            if (c->has_dest)
                wk_breaker_record(w->breakers, c->dest, 0);
            fail_attempt(w, c, err);
        }
    } else if (st.action_type == EV_ACTION_EMAIL) {
        const ev_email_action *a = &st.action.email;
        wk_smtp_request req;
        char *tpl;

        memset(&req, 0, sizeof req);
        if (w->smtp_url == NULL) {
            fail_attempt(w, c, "email actions need KCQRS_WORKER_SMTP_URL");
            goto out;
        }
        nstrs = a->to.count;
        if (nstrs == 0 || nstrs > WK_SMTP_MAX_RCPT) {
            fail_attempt(w, c, "email action without a valid recipient list");
            goto out;
        }
        if ((strs = calloc(nstrs, sizeof *strs)) == NULL) {
            rc = KQ_ENOMEM;
            goto fail_mem;
        }
        for (uint32_t i = 0; i < a->to.count; i++) {
            ev_str s;
            if (ev_str_list_get(&a->to, i, &s) != 0 || (strs[i] = dup_str(s)) == NULL) {
                rc = KQ_ENOMEM;
                goto fail_mem;
            }
        }
        if ((tpl = dup_str(a->subject)) == NULL) {
            rc = KQ_ENOMEM;
            goto fail_mem;
        }
        rc = wk_template_render(tpl, payload, WK_TPL_HEADER, &subject, &body_len, err, sizeof err);
        free(tpl);
        if (rc == 0 && a->body_template.ptr) {
            if ((tpl = dup_str(a->body_template)) == NULL) {
                rc = KQ_ENOMEM;
                goto fail_mem;
            }
            rc = wk_template_render(tpl, payload, WK_TPL_TEXT, &body, &body_len, err, sizeof err);
            free(tpl);
        }
        if (rc != 0) {
            rc = 0;
            fail_attempt(w, c, err);
            goto out;
        }
        if (wk_breaker_key(w->smtp_url, c->dest, sizeof c->dest, err, sizeof err) == 0) {
            if (!wk_breaker_allow(w->breakers, c->dest)) {
                *retry_in = wk_breaker_retry_in_ms(w->breakers, c->dest);
                rc = 1;
                goto refused;
            }
            c->has_dest = 1;
        }
        req.url = w->smtp_url;
        req.from = w->smtp_from;
        req.to = (const char *const *)strs;
        req.n_to = nstrs;
        req.subject = subject;
        req.body = body;
        req.delivery_id = c->delivery_id;
        req.username = w->smtp_user;
        req.password = w->smtp_password;
        if (wk_engine_submit_smtp(w->engine, &req, on_done, c, err, sizeof err) != 0) {
            if (c->has_dest)
                wk_breaker_record(w->breakers, c->dest, 0);
            fail_attempt(w, c, err);
        }
    } else
        fail_attempt(w, c, "unknown action type");
    goto out;

refused: /* the breaker is open: no attempt, come back later */
    atomic_fetch_add(&w->m_breaker_waits, 1);
    atomic_fetch_sub(&w->m_attempts, 1);
    r->phase = WK_RUN_IDLE;
    set_in_flight(w, r, -1);
    ctx_free(w, c);
    goto out;
fail_mem:
    r->phase = WK_RUN_IDLE;
    set_in_flight(w, r, -1);
    atomic_fetch_sub(&w->m_attempts, 1);
    ctx_free(w, c);
out:
    if (strs)
        for (size_t i = 0; i < nstrs; i++)
            free(strs[i]);
    free(strs);
    free(url);
    free(body);
    free(subject);
    free(secret);
    json_decref(payload);
    return rc;
}

/* Start every due attempt the in-flight bound allows. */
static void schedule(worker *w)
{
    int64_t now = wall_ms();
    wk_run *r;

    while ((r = wk_sched_peek(w->runs)) != NULL && r->due_ms <= now &&
           atomic_load(&w->m_in_flight) < w->cfg->worker_max_runs && !atomic_load(&w->stop)) {
        part_state *ps = part_of(w, r->partition);
        long retry_in = 0;
        int rc;

        wk_sched_remove(w->runs, r);
        if (ps == NULL || !ps->ready || r->phase != WK_RUN_IDLE || r->end != WK_RUN_OPEN)
            continue; /* parked: rescheduled when its partition is ready */
        rc = start_attempt(w, r, &retry_in);
        if (rc == 1)
            wk_sched_put(w->runs, r, now + (retry_in > 0 ? retry_in : 1));
        else if (rc < 0) {
            kq_log_error("run %s: out of memory starting an attempt; retrying in 1 s", r->id);
            wk_sched_put(w->runs, r, now + 1000);
            break;
        }
    }
}

/* ---------------------------------------------------------------- records */

static void handle_records(worker *w)
{
    wk_record_result res[256];
    size_t n;

    while ((n = wk_recorder_take(w->rec, res, 256)) > 0) {
        for (size_t i = 0; i < n; i++) {
            attempt_ctx *c = res[i].tag;
            wk_run *r = c->run;

            set_in_flight(w, r, -1);
            if (res[i].status == 200 && res[i].version > 0) {
                wk_run_advance(r, res[i].version, c->attempt, c->outcome, c->next_delay_ms,
                               wall_ms());
                r->phase = WK_RUN_IDLE;
            } else if (res[i].status == 409 && r->version != c->started_version) {
                r->phase = WK_RUN_IDLE; /* the log moved on meanwhile */
            } else {
                if (res[i].status == 409)
                    kq_log_info("run %s step %u attempt %u: %s (waiting for the log)", r->id,
                                c->step, c->attempt, res[i].code);
                else
                    kq_log_error("run %s step %u attempt %u: record refused: %d %s %s", r->id,
                                 c->step, c->attempt, res[i].status, res[i].code, res[i].message);
                r->phase = WK_RUN_WAIT_LOG;
                r->wait_until_ms = wall_ms() + WAIT_LOG_MS;
            }
            ctx_free(w, c);
            run_changed(w, r);
        }
    }
}

/* ---------------------------------------------------------------- consumer */

static void schedule_partition_cb(void *arg, wk_run *r)
{
    void **a = arg;
    worker *w = a[0];
    int32_t p = *(int32_t *)a[1];

    if (r->partition == p && r->phase == WK_RUN_IDLE && r->end == WK_RUN_OPEN)
        wk_sched_put(w->runs, r, wk_run_due_ms(r, wall_ms()));
}

static void partition_ready(worker *w, int32_t p)
{
    void *a[2] = {w, &p};

    wk_runs_each(w->runs, schedule_partition_cb, a);
}

static void handle_message(worker *w, rd_kafka_message_t *m)
{
    part_state *ps = part_of(w, m->partition);
    ev_envelope env;
    wk_run *r;
    char err[256];
    int gap, rc;

    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (ps && ps->assigned) {
            ps->next = m->offset;
            if (!ps->ready) {
                ps->ready = 1;
                kq_log_info("partition %d read to the end (offset %lld): its runs start",
                            (int)m->partition, (long long)m->offset);
                partition_ready(w, m->partition);
            }
        }
        return;
    }
    if (m->err) {
        kq_log_warn("consumer: %s", rd_kafka_message_errstr(m));
        return;
    }
    if (ps == NULL || !ps->assigned)
        return;
    ps->next = m->offset + 1;
    atomic_fetch_add(&w->m_events, 1);
    if (m->payload == NULL || ev_envelope_decode(m->payload, m->len, &env, err, sizeof err) != 0) {
        atomic_fetch_add(&w->m_bad_records, 1);
        kq_log_warn("partition %d offset %lld: not an event (%s); skipped", (int)m->partition,
                    (long long)m->offset, m->payload ? err : "no value");
        return;
    }
    if (env.aggregate_type != EV_AGG_RUN)
        return;
    rc = wk_runs_apply(w->runs, &env, m->payload, m->len, m->partition, m->offset, &r, &gap);
    if (rc < 0) {
        kq_log_error("partition %d offset %lld: out of memory folding the run", (int)m->partition,
                     (long long)m->offset);
        return;
    }
    if (rc == 0)
        return;
    if (gap)
        kq_log_warn("run %s: version gap at version %lld (partition %d offset %lld)", r->id,
                    (long long)env.version, (int)m->partition, (long long)m->offset);
    atomic_store(&w->m_runs_open, (long)wk_runs_count(w->runs));
    run_changed(w, r);
}

/* Per-partition commit points in one pass over the runs. */
typedef struct oldest_arg {
    int64_t *oldest;
    int n;
} oldest_arg;

static void oldest_cb(void *arg, wk_run *r)
{
    oldest_arg *a = arg;

    if (r->end == WK_RUN_OPEN && r->partition >= 0 && r->partition < a->n &&
        (a->oldest[r->partition] < 0 || r->started_offset < a->oldest[r->partition]))
        a->oldest[r->partition] = r->started_offset;
}

/* Commit the commit point of every assigned partition in `only` (NULL: all). */
static void commit(worker *w, const rd_kafka_topic_partition_list_t *only, int sync)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(w->nparts);
    int64_t *oldest = malloc(sizeof *oldest * (size_t)w->nparts);
    oldest_arg a = {oldest, w->nparts};
    rd_kafka_resp_err_t e;

    if (l == NULL || oldest == NULL)
        goto out;
    for (int i = 0; i < w->nparts; i++)
        oldest[i] = -1;
    wk_runs_each(w->runs, oldest_cb, &a);
    for (int p = 0; p < w->nparts; p++) {
        part_state *ps = &w->parts[p];
        int64_t off = oldest[p] >= 0 ? oldest[p] : ps->next;
        if (!ps->assigned || off < 0 || off == ps->committed)
            continue;
        if (only && rd_kafka_topic_partition_list_find(only, w->topic, p) == NULL)
            continue;
        rd_kafka_topic_partition_list_add(l, w->topic, p)->offset = off;
        ps->committed = off;
    }
    if (l->cnt > 0 && (e = rd_kafka_commit(w->rk, l, !sync)) != RD_KAFKA_RESP_ERR_NO_ERROR)
        kq_log_warn("offset commit: %s", rd_kafka_err2str(e));
out:
    if (l)
        rd_kafka_topic_partition_list_destroy(l);
    free(oldest);
}

static void tick(worker *w);

static int revoked_in_flight(worker *w, const rd_kafka_topic_partition_list_t *parts)
{
    int n = 0;

    for (int i = 0; i < parts->cnt; i++) {
        part_state *ps = part_of(w, parts->elems[i].partition);
        if (ps)
            n += ps->in_flight;
    }
    return n;
}

/* Let the attempts in flight on `parts` finish and be recorded, bounded. */
static void drain(worker *w, const rd_kafka_topic_partition_list_t *parts, long bound_ms)
{
    int64_t end = wall_ms() + bound_ms;

    while ((parts ? revoked_in_flight(w, parts) : (int)atomic_load(&w->m_in_flight)) > 0 &&
           wall_ms() < end) {
        wk_engine_run(w->engine, 50);
        handle_records(w);
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    worker *w = opaque;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            part_state *ps = part_of(w, parts->elems[i].partition);
            if (ps == NULL)
                continue;
            ps->assigned = 1;
            ps->ready = 0;
            ps->next = -1;
            ps->committed = -1;
        }
        kq_log_info("assigned %d partition(s) of %s", parts->cnt, w->topic);
        rd_kafka_assign(rk, parts);
        atomic_store(&w->m_assigned, parts->cnt);
        atomic_store(&w->joined, 1);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            part_state *ps = part_of(w, parts->elems[i].partition);
            if (ps)
                ps->ready = 0; /* no new attempts there */
        }
        kq_log_info("revoking %d partition(s): waiting for %d attempt(s) in flight", parts->cnt,
                    revoked_in_flight(w, parts));
        drain(w, parts, (long)w->cfg->worker_timeout_ms + 5000);
        commit(w, parts, 1);
        for (int i = 0; i < parts->cnt; i++) {
            part_state *ps = part_of(w, parts->elems[i].partition);
            if (ps)
                ps->assigned = 0;
        }
        rd_kafka_assign(rk, NULL);
        tick(w); /* forgets the runs of the revoked partitions */
        atomic_store(&w->m_assigned, 0);
        return;
    }
    kq_log_error("rebalance: %s", rd_kafka_err2str(err));
    rd_kafka_assign(rk, NULL);
}

/* Once a second: WAIT_LOG time-outs, forgotten runs, commits, lag. */
typedef struct tick_arg {
    worker *w;
    int64_t now;
    wk_run **drop;
    size_t ndrop, cap;
    wk_run **wake;
    size_t nwake, wcap;
} tick_arg;

static void tick_cb(void *arg, wk_run *r)
{
    tick_arg *a = arg;
    part_state *ps = part_of(a->w, r->partition);
    int active = r->phase == WK_RUN_ACTIVE || r->phase == WK_RUN_RECORDING;

    if (!active && (ps == NULL || !ps->assigned)) {
        if (a->ndrop < a->cap)
            a->drop[a->ndrop++] = r;
    } else if (r->phase == WK_RUN_WAIT_LOG && r->wait_until_ms <= a->now) {
        if (a->nwake < a->wcap)
            a->wake[a->nwake++] = r;
    }
}

static void tick(worker *w)
{
    tick_arg a;
    long lag = 0;

    memset(&a, 0, sizeof a);
    a.w = w;
    a.now = wall_ms();
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
    atomic_store(&w->m_runs_open, (long)wk_runs_count(w->runs));
    commit(w, NULL, 0);
    for (int p = 0; p < w->nparts; p++) {
        int64_t lo, hi;
        part_state *ps = &w->parts[p];
        if (!ps->assigned)
            continue;
        if (rd_kafka_get_watermark_offsets(w->rk, w->topic, p, &lo, &hi) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            ps->next >= 0 && hi > ps->next)
            lag += (long)(hi - ps->next);
    }
    atomic_store(&w->m_lag, lag);
}

/* ---------------------------------------------------------------- admin */

static int ready_fn(void *arg, char *why, size_t whylen)
{
    worker *w = arg;

    if (!atomic_load(&w->joined)) {
        snprintf(why, whylen, "consumer group not joined yet");
        return 0;
    }
    if (!wk_recorder_reachable(w->rec)) {
        snprintf(why, whylen, "kcqrs-commands not reachable");
        return 0;
    }
    return 1;
}

static void metrics_fn(void *arg, FILE *out)
{
    worker *w = arg;
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
    fprintf(out,
            "# TYPE kcqrs_worker_runs_open gauge\nkcqrs_worker_runs_open %ld\n"
            "# TYPE kcqrs_worker_runs_in_flight gauge\nkcqrs_worker_runs_in_flight %ld\n"
            "# TYPE kcqrs_worker_runs_finished_total counter\n"
            "kcqrs_worker_runs_finished_total %lu\n"
            "# TYPE kcqrs_worker_attempts_total counter\n"
            "kcqrs_worker_attempts_total %lu\n"
            "# TYPE kcqrs_worker_attempt_outcomes_total counter\n"
            "kcqrs_worker_attempt_outcomes_total{outcome=\"succeeded\"} %lu\n"
            "kcqrs_worker_attempt_outcomes_total{outcome=\"retry\"} %lu\n"
            "kcqrs_worker_attempt_outcomes_total{outcome=\"failed\"} %lu\n"
            "# TYPE kcqrs_worker_action_build_errors_total counter\n"
            "kcqrs_worker_action_build_errors_total %lu\n"
            "# TYPE kcqrs_worker_breaker_waits_total counter\n"
            "kcqrs_worker_breaker_waits_total %lu\n"
            "# TYPE kcqrs_worker_events_total counter\nkcqrs_worker_events_total %lu\n"
            "# TYPE kcqrs_worker_bad_records_total counter\nkcqrs_worker_bad_records_total %lu\n"
            "# TYPE kcqrs_worker_partitions_assigned gauge\n"
            "kcqrs_worker_partitions_assigned %ld\n"
            "# TYPE kcqrs_worker_lag gauge\nkcqrs_worker_lag %ld\n",
            atomic_load(&w->m_runs_open), atomic_load(&w->m_in_flight),
            atomic_load(&w->m_runs_done), atomic_load(&w->m_attempts), atomic_load(&w->m_succeeded),
            atomic_load(&w->m_retry), atomic_load(&w->m_failed), atomic_load(&w->m_build_errors),
            atomic_load(&w->m_breaker_waits), atomic_load(&w->m_events),
            atomic_load(&w->m_bad_records), atomic_load(&w->m_assigned), atomic_load(&w->m_lag));
}

/* ---------------------------------------------------------------- main */

static void wake_engine(void *arg)
{
    worker *w = arg;

    wk_engine_wakeup(w->engine);
}

static void queue_event_cb(rd_kafka_t *rk, void *arg)
{
    (void)rk;
    wake_engine(arg);
}

typedef struct sig_arg {
    worker *w;
    sigset_t set;
} sig_arg;

static void *sig_thread(void *arg)
{
    sig_arg *a = arg;
    int sig = 0;

    sigwait(&a->set, &sig);
    if (sig != SIGUSR1)
        kq_log_info("signal %d: stopping (attempts in flight finish and are recorded)", sig);
    atomic_store(&a->w->stop, 1);
    wk_engine_wakeup(a->w->engine);
    return NULL;
}

static void breaker_change(void *arg, const char *dest, wk_breaker_state from, wk_breaker_state to)
{
    (void)arg;
    (void)dest;
    (void)from;
    (void)to; /* wk_breaker logs the change itself; /metrics shows the state */
}

static char *opt_or_null(const char *v)
{
    return v == NULL || strcmp(v, "none") == 0 || v[0] == '\0' ? NULL : strdup(v);
}

/* The commands URL: KCQRS_WORKER_COMMANDS_URL, or http://<KCQRS_COMMANDS_ADDR>. */
static int commands_url(const kq_config *cfg, char *out, size_t len)
{
    const char *a = cfg->commands_addr;

    if (strcmp(cfg->worker_commands_url, "auto") != 0)
        return snprintf(out, len, "%s", cfg->worker_commands_url) >= (int)len ? -1 : 0;
    if (a[0] == ':')
        return snprintf(out, len, "http://127.0.0.1%s", a) >= (int)len ? -1 : 0;
    if (strncmp(a, "0.0.0.0:", 8) == 0)
        return snprintf(out, len, "http://127.0.0.1:%s", a + 8) >= (int)len ? -1 : 0;
    return snprintf(out, len, "http://%s", a) >= (int)len ? -1 : 0;
}

static int read_key(const char *path, char *out, size_t len, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t n = 0, s = 0;
    int rc = kq_read_file(path, 4096, &buf, &n, err, errlen);

    if (rc != 0)
        return rc;
    while (s < n && isspace((unsigned char)buf[s]))
        s++;
    while (n > s && isspace((unsigned char)buf[n - 1]))
        n--;
    if (n == s || n - s >= len) {
        free(buf);
        return kq_seterr(err, errlen, KQ_EINVAL, "%s: no key in the file", path);
    }
    memcpy(out, buf + s, n - s);
    out[n - s] = '\0';
    free(buf);
    if (strpbrk(out, " \t\r\n"))
        return kq_seterr(err, errlen, KQ_EINVAL, "%s: one key expected", path);
    return 0;
}

int main(int argc, char **argv)
{
    kq_config cfg;
    worker w;
    wk_settings ws;
    wk_breaker_cfg bc;
    wk_record_settings rs;
    kq_http_server *srv = NULL;
    kq_http_options o;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *sub = NULL;
    sig_arg sa;
    pthread_t sig_tid;
    int sig_started = 0, rc = 2;
    char err[512], url[1024], key[600], group[KQ_KAFKA_TOPIC_MAX];
    int64_t next_tick = 0;

    memset(&w, 0, sizeof w);
    if (kq_config_handle_help(argc, argv, usage))
        return 0;
    if (argc > 1) {
        fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", PROG, argv[1]);
        return 2;
    }
    if (kq_config_load_and_init_log(&cfg, PROG, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        return 2;
    }
    w.cfg = &cfg;
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sa.set);
    sigaddset(&sa.set, SIGTERM);
    sigaddset(&sa.set, SIGINT);
    sigaddset(&sa.set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sa.set, NULL);

    /* settings */
    w.policy.base_ms = cfg.worker_retry_base_ms;
    w.policy.factor = (unsigned)cfg.worker_retry_factor;
    w.policy.cap_ms = cfg.worker_retry_cap_ms;
    w.policy.max_attempts = (unsigned)cfg.worker_max_attempts;
    if (wk_policy_validate(&w.policy, err, sizeof err) != 0) {
        kq_log_error("retry policy: %s", err);
        goto out;
    }
    wk_rng_seed(&w.rng);
    if (commands_url(&cfg, url, sizeof url) != 0) {
        kq_log_error("KCQRS_WORKER_COMMANDS_URL too long");
        goto out;
    }
    if (read_key(cfg.worker_key_file, key, sizeof key, err, sizeof err) != 0) {
        kq_log_error("KCQRS_WORKER_KEY_FILE: %s", err);
        goto out;
    }
    if (strcmp(cfg.worker_group, "auto") == 0)
        snprintf(group, sizeof group, "%s.worker", cfg.topic_prefix);
    else
        snprintf(group, sizeof group, "%s", cfg.worker_group);
    if (kq_config_topic(&cfg, "run", w.topic, sizeof w.topic) < 0) {
        kq_log_error("KCQRS_TOPIC_PREFIX too long");
        goto out;
    }
    w.smtp_url = opt_or_null(cfg.worker_smtp_url);
    w.smtp_from = strdup(cfg.worker_smtp_from);
    w.smtp_user = opt_or_null(cfg.worker_smtp_user);
    w.smtp_password = opt_or_null(cfg.worker_smtp_password);
    if ((w.smtp_user == NULL) != (w.smtp_password == NULL)) {
        kq_log_error("KCQRS_WORKER_SMTP_USER and KCQRS_WORKER_SMTP_PASSWORD: both or neither");
        goto out;
    }
    rc = 1;
    w.nparts = cfg.partitions;
    w.parts = calloc((size_t)w.nparts, sizeof *w.parts);
    w.runs = wk_runs_new();
    if (w.parts == NULL || w.runs == NULL || w.smtp_from == NULL) {
        kq_log_error("out of memory");
        goto out;
    }
    for (int i = 0; i < w.nparts; i++)
        w.parts[i].next = w.parts[i].committed = -1;

    wk_settings_defaults(&ws);
    ws.connect_timeout_ms = cfg.worker_connect_timeout_ms;
    ws.total_timeout_ms = cfg.worker_timeout_ms;
    ws.response_max = (size_t)cfg.worker_response_max;
    ws.max_connections = cfg.worker_max_connections;
    ws.allow_private = cfg.worker_allow_private;
    ws.ca_file = strcmp(cfg.worker_ca_file, "system") == 0 ? NULL : cfg.worker_ca_file;
    if ((w.engine = wk_engine_new(&ws, err, sizeof err)) == NULL) {
        kq_log_error("engine: %s", err);
        rc = 2;
        goto out;
    }
    wk_breaker_defaults(&bc);
    bc.failure_threshold = (unsigned)cfg.worker_breaker_failures;
    bc.cooldown_ms = cfg.worker_breaker_cooldown_ms;
    if ((w.breakers = wk_breaker_new(&bc, NULL, NULL, breaker_change, &w, err, sizeof err)) ==
        NULL) {
        kq_log_error("breakers: %s", err);
        rc = 2;
        goto out;
    }
    memset(&rs, 0, sizeof rs);
    rs.base_url = url;
    rs.key = key;
    rs.timeout_ms = cfg.kafka_timeout_ms * 2L + 1000;
    rs.retry_base_ms = 100;
    rs.retry_cap_ms = 5000;
    rs.notify = wake_engine;
    rs.notify_arg = &w;
    if ((w.rec = wk_recorder_new(&rs, err, sizeof err)) == NULL) {
        kq_log_error("record client: %s", err);
        rc = 2;
        goto out;
    }
    sa.w = &w;
    if (pthread_create(&sig_tid, NULL, sig_thread, &sa) != 0) {
        kq_log_error("cannot start the signal thread");
        goto out;
    }
    sig_started = 1;

    memset(&o, 0, sizeof o);
    o.addr = cfg.worker_addr;
    o.limits = kq_http_limits_default();
    o.limits.threads = 2;
    o.ready = ready_fn;
    o.ready_arg = &w;
    o.metrics = metrics_fn;
    o.metrics_arg = &w;
    if (kq_http_start(&o, &srv, err, sizeof err) != 0) {
        kq_log_error("admin HTTP: %s", err);
        goto out;
    }

    if ((conf = kq_kafka_conf_new(&cfg, PROG, err, sizeof err)) == NULL) {
        kq_log_error("Kafka: %s", err);
        goto out;
    }
    /* A worker killed without leaving the group holds its partitions (and
     * their runs) until its session expires: keep that short. */
    if (kq_kafka_conf_set(conf, "session.timeout.ms", "8000", err, sizeof err) != 0 ||
        kq_kafka_conf_set(conf, "heartbeat.interval.ms", "1000", err, sizeof err) != 0) {
        kq_log_error("Kafka: %s", err);
        rd_kafka_conf_destroy(conf);
        conf = NULL;
        goto out;
    }
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_opaque(conf, &w);
    if ((w.rk = kq_kafka_consumer_new(&cfg, group, conf, err, sizeof err)) == NULL) {
        kq_log_error("Kafka consumer: %s", err);
        goto out;
    }
    w.rkq = rd_kafka_queue_get_consumer(w.rk);
    if (w.rkq)
        rd_kafka_queue_cb_event_enable(w.rkq, queue_event_cb, &w);
    sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, w.topic, RD_KAFKA_PARTITION_UA);
    if (rd_kafka_subscribe(w.rk, sub) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kq_log_error("subscribe to %s failed", w.topic);
        goto out;
    }
    kq_log_info("admin on http://%s (port %u); group %s on %s; commands %s; max runs %d",
                cfg.worker_addr, kq_http_port(srv), group, w.topic, url, cfg.worker_max_runs);

    while (!atomic_load(&w.stop)) {
        int busy = 0, timeout;
        int64_t now;
        wk_run *top;

        for (int i = 0; i < MSGS_PER_ROUND; i++) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(w.rk, 0);
            if (m == NULL)
                break;
            handle_message(&w, m);
            rd_kafka_message_destroy(m);
            busy = 1;
        }
        handle_records(&w);
        schedule(&w);
        now = wall_ms();
        if (now >= next_tick) {
            tick(&w);
            next_tick = now + TICK_MS;
        }
        timeout = busy ? 0 : 200;
        top = wk_sched_peek(w.runs);
        if (top && atomic_load(&w.m_in_flight) < cfg.worker_max_runs) {
            int64_t d = top->due_ms - now;
            if (d < timeout)
                timeout = d < 0 ? 0 : (int)d;
        }
        if (next_tick - now < timeout)
            timeout = (int)(next_tick - now);
        wk_engine_run(w.engine, timeout < 0 ? 0 : timeout);
    }
    /* stop: attempts in flight finish and are recorded, then offsets */
    drain(&w, NULL, (long)cfg.worker_timeout_ms + 5000);
    commit(&w, NULL, 1);
    rc = 0;
out:
    if (w.rk) {
        rd_kafka_consumer_close(w.rk); /* revoke: drains and commits again (nothing new) */
        if (w.rkq)
            rd_kafka_queue_destroy(w.rkq);
        rd_kafka_destroy(w.rk);
    }
    if (sub)
        rd_kafka_topic_partition_list_destroy(sub);
    kq_http_stop(srv);
    if (sig_started) {
        pthread_kill(sig_tid, SIGUSR1);
        pthread_join(sig_tid, NULL);
    }
    wk_recorder_free(w.rec);
    wk_engine_free(w.engine); /* callbacks of the rest: WK_R_ABORTED */
    while (w.ctxs)
        ctx_free(&w, w.ctxs);
    wk_breaker_free(w.breakers);
    wk_runs_free(w.runs);
    free(w.parts);
    free(w.smtp_url);
    free(w.smtp_from);
    free(w.smtp_user);
    free(w.smtp_password);
    if (rc == 0)
        kq_log_info("stopped");
    kq_config_free(&cfg);
    return rc;
}
