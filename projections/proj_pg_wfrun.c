/*
 * proj_pg_wfrun.c — workflows and runs in the PostgreSQL target: the
 * workflows, runs and run_attempts rows, written by one prepared statement
 * per applied workflow/run event, all of a batch sent in one libpq pipeline
 * after the batch's event rows (on every write path and in bulk mode alike:
 * these tables are not folded in memory). While classifying, an event these
 * tables cannot hold is refused (dead-lettered) and the secrets of the stored
 * payload are redacted. Part of proj_pg (proj_pg_int.h); the proj_pg's thread.
 */
#include "proj_pg_int.h"

#include <jansson.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ev_action.h"
#include "kq_err.h"
#include "kq_time.h"
#include "proj_aggregate.h"
#include "proj_doc.h"

/* One statement per applied event (proj_pg_wfrun_write). */
static const char wf_create_sql[] =
    "INSERT INTO workflows (id, name, enabled, actions, version, created_at, updated_at)"
    " VALUES ($1, $2, $3::boolean, $4::jsonb, $5::bigint, $6::timestamptz, $6::timestamptz)"
    " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, enabled = EXCLUDED.enabled,"
    " actions = EXCLUDED.actions, version = EXCLUDED.version, created_at = EXCLUDED.created_at,"
    " updated_at = EXCLUDED.updated_at";
static const char wf_update_sql[] =
    "UPDATE workflows SET name = COALESCE($2, name), actions = COALESCE($3::jsonb, actions),"
    " enabled = COALESCE($4::boolean, enabled), version = $5::bigint,"
    " updated_at = $6::timestamptz WHERE id = $1";
static const char wf_delete_sql[] = "DELETE FROM workflows WHERE id = $1";
/* The run statements take their status values from proj_pg_run_fold. A
 * RunStarted of an existing run (a row left by a model built before the run
 * fold refused such logs) starts it afresh. */
static const char run_start_sql[] =
    "WITH d AS (DELETE FROM run_attempts WHERE run_id = $1)"
    " INSERT INTO runs (id, workflow_id, workflow_version, trigger, status, payload, error, steps,"
    " version, created_at, updated_at) VALUES ($1, $2, $3::bigint, $4, $9, $5::jsonb,"
    " NULL, $6::jsonb, $7::bigint, $8::timestamptz, $8::timestamptz) ON CONFLICT (id) DO UPDATE"
    " SET workflow_id = EXCLUDED.workflow_id, workflow_version = EXCLUDED.workflow_version,"
    " trigger = EXCLUDED.trigger, status = EXCLUDED.status, payload = EXCLUDED.payload,"
    " error = NULL,"
    " steps = EXCLUDED.steps, version = EXCLUDED.version, created_at = EXCLUDED.created_at,"
    " updated_at = EXCLUDED.updated_at";
static const char run_attempt_sql[] =
    "WITH a AS (INSERT INTO run_attempts (run_id, step, attempt, status_code, error, at,"
    " duration_ms, next_delay_ms, delivery_id) SELECT $1, $2::int, $3::bigint, $4::int, $5,"
    " $6::timestamptz, $7::bigint, $8::bigint, $9 FROM runs r WHERE r.id = $1"
    " AND jsonb_array_length(r.steps) > $2::int ON CONFLICT DO NOTHING RETURNING 1)"
    " UPDATE runs SET status = $11,"
    " steps = CASE WHEN jsonb_array_length(steps) > $2::int"
    " THEN jsonb_set(steps, ARRAY[$2::int::text, 'status'], to_jsonb($12::text), false)"
    " ELSE steps END, version = $10::bigint, updated_at = $6::timestamptz WHERE id = $1";
static const char run_step_sql[] =
    "UPDATE runs SET status = $6, steps = CASE WHEN jsonb_array_length(steps) > $2::int"
    " THEN jsonb_set(steps, ARRAY[$2::int::text, 'status'], to_jsonb($3::text), false)"
    " ELSE steps END, version = $4::bigint, updated_at = $5::timestamptz WHERE id = $1";
static const char run_end_sql[] =
    "UPDATE runs SET status = $2, error = $3, version = $4::bigint, updated_at = $5::timestamptz"
    " WHERE id = $1";

int proj_pg_wfrun_prepare_statements(proj_pg *pg, char *errstr, size_t errlen)
{
    int rc;

    if ((rc = proj_pg_prepare(pg, "kq_wf_create", wf_create_sql, errstr, errlen)) ||
        (rc = proj_pg_prepare(pg, "kq_wf_update", wf_update_sql, errstr, errlen)) ||
        (rc = proj_pg_prepare(pg, "kq_wf_delete", wf_delete_sql, errstr, errlen)) ||
        (rc = proj_pg_prepare(pg, "kq_run_start", run_start_sql, errstr, errlen)) ||
        (rc = proj_pg_prepare(pg, "kq_run_attempt", run_attempt_sql, errstr, errlen)) ||
        (rc = proj_pg_prepare(pg, "kq_run_step", run_step_sql, errstr, errlen)) ||
        (rc = proj_pg_prepare(pg, "kq_run_end", run_end_sql, errstr, errlen)))
        return rc;
    return 0;
}

/* 1 when the (present) string is valid UTF-8 (what PostgreSQL text accepts) without NUL. */
static int text_ok(ev_str s)
{
    json_t *j;

    if (s.ptr == NULL)
        return 1;
    if (memchr(s.ptr, 0, s.len) != NULL || (j = json_stringn(s.ptr, s.len)) == NULL)
        return 0;
    json_decref(j);
    return 1;
}

/*
 * Replace the secret `field` of the payload JSON printed at pg->json + start
 * (after the jsonb version byte) by "[redacted]". 0 or KQ_ENOMEM/KQ_ECORRUPT.
 */
static int redact(proj_pg *pg, proj_pg_evinfo *in, size_t start, const char *field)
{
    json_error_t jerr;
    json_t *j = json_loadb(pg->json.p + start + 1, in->json_len - 1, 0, &jerr);
    char *txt, sealed[64];
    int rc = 0;

    if (j == NULL)
        return KQ_ECORRUPT;
    /* a sealed secret (ev_secret.h) reads as the plain one did: "[redacted]" */
    snprintf(sealed, sizeof sealed, "%s_sealed", field);
    if (json_object_get(j, field) == NULL && json_object_get(j, sealed) == NULL) {
        json_decref(j);
        return 0;
    }
    json_object_del(j, sealed);
    if (json_object_set_new(j, field, json_string("[redacted]")) != 0 ||
        (txt = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL) {
        json_decref(j);
        return KQ_ENOMEM;
    }
    pg->json.len = start;
    if (proj_pg_buf_put(&pg->json, "\1", 1) || proj_pg_buf_puts(&pg->json, txt))
        rc = KQ_ENOMEM;
    in->json_len = pg->json.len - start;
    free(txt);
    json_decref(j);
    return rc;
}

/* The steps of a run document without their attempts (run_attempts holds them). */
static char *run_steps_text(json_t *doc)
{
    json_t *steps = json_object_get(doc, "steps"), *st;
    size_t i;

    json_array_foreach(steps, i, st) json_object_del(st, "attempts");
    return json_dumps(steps, JSON_COMPACT | JSON_PRESERVE_ORDER);
}

/*
 * Workflow and run events, while classifying: redact secrets in the payload
 * JSON, check what wfrun_write will store (dead-lettered like a NUL when it
 * cannot be stored, in->reason set) and keep the JSON it needs in in->d1/d2.
 * 0; 1 (refused); KQ_ENOMEM.
 */
static int wfrun_check(proj_pg *pg, const proj_event *ev, proj_pg_evinfo *in, size_t start)
{
    const ev_envelope *e = &ev->env;
    const char *why = NULL;
    int rc;

    if (ev_event_aggregate_type(e->payload_type) != e->aggregate_type) {
        in->reason = "type";
        return 1;
    }
    switch (e->payload_type) {
    case EV_WORKFLOW_CREATED:
    case EV_WORKFLOW_UPDATED: {
        const ev_step_list *steps = e->payload_type == EV_WORKFLOW_CREATED
                                        ? &e->payload.workflow_created.steps
                                        : &e->payload.workflow_updated.steps;
        ev_str name = e->payload_type == EV_WORKFLOW_CREATED ? e->payload.workflow_created.name
                                                             : e->payload.workflow_updated.name;
        if ((rc = redact(pg, in, start, "webhook_secret")) == KQ_ENOMEM)
            return rc;
        if (rc != 0 || !text_ok(name)) {
            in->reason = "doc";
            return 1;
        }
        if (steps->present) {
            json_t *a = ev_actions_json(steps);
            if (a == NULL) {
                in->reason = "doc";
                return 1;
            }
            in->d1 = json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER);
            json_decref(a);
            if (in->d1 == NULL)
                return KQ_ENOMEM;
        }
        return 0;
    }
    case EV_RUN_STARTED: {
        json_t *doc = NULL;
        if ((rc = redact(pg, in, start, "signing_secret")) == KQ_ENOMEM)
            return rc;
        if (rc != 0) {
            in->reason = "doc";
            return 1;
        }
        rc = proj_doc_run(&doc, e, &why);
        if (rc == KQ_ENOMEM)
            return rc;
        if (rc != PROJ_DOC_OK) {
            in->reason = "doc";
            return 1;
        }
        in->d1 = json_dumps(json_object_get(doc, "payload"), JSON_COMPACT | JSON_PRESERVE_ORDER);
        in->d2 = run_steps_text(doc);
        json_decref(doc);
        return in->d1 && in->d2 ? 0 : KQ_ENOMEM;
    }
    case EV_STEP_ATTEMPTED:
        if (!text_ok(e->payload.step_attempted.error) ||
            !text_ok(e->payload.step_attempted.delivery_id)) {
            in->reason = "doc";
            return 1;
        }
        return 0;
    case EV_RUN_FAILED:
        if (!text_ok(e->payload.run_failed.error)) {
            in->reason = "doc";
            return 1;
        }
        return 0;
    default:
        return 0;
    }
}

/* A view as a NUL-terminated parameter (malloc'd into *own; NULL when absent
 * or out of memory). */
static const char *param_str(ev_str s, char **own)
{
    if (s.ptr == NULL)
        return NULL;
    if ((*own = malloc((size_t)s.len + 1)) == NULL)
        return NULL;
    memcpy(*own, s.ptr, s.len);
    (*own)[s.len] = '\0';
    return *own;
}

/* Parameters every statement starts with: $1 the id; version and time kept for later. */
static void stmt_start(proj_pg_stmt *st, const ev_envelope *e)
{
    memset(st, 0, sizeof *st);
    st->v[0] = param_str(e->aggregate_id, &st->own[0]);
    snprintf(st->num[0], sizeof st->num[0], "%" PRId64, e->version);
    kq_time_format(e->occurred_at_us, st->at);
}

void proj_pg_stmt_clear(proj_pg_stmt *st)
{
    for (int k = 0; k < 3; k++)
        free(st->own[k]);
    memset(st->own, 0, sizeof st->own);
}

void proj_pg_workflow_stmt(const ev_envelope *e, const proj_pg_evinfo *in, proj_pg_stmt *st)
{
    const char **v = st->v;

    stmt_start(st, e);
    switch (e->payload_type) {
    case EV_WORKFLOW_CREATED:
        st->name = "kq_wf_create";
        v[1] = param_str(e->payload.workflow_created.name, &st->own[1]);
        v[2] = e->payload.workflow_created.enabled ? "true" : "false";
        v[3] = in->d1 ? in->d1 : "[]";
        v[4] = st->num[0];
        v[5] = st->at;
        st->n = 6;
        break;
    case EV_WORKFLOW_UPDATED:
    case EV_WORKFLOW_ENABLED:
    case EV_WORKFLOW_DISABLED:
        st->name = "kq_wf_update";
        if (e->payload_type == EV_WORKFLOW_UPDATED)
            v[1] = param_str(e->payload.workflow_updated.name, &st->own[1]);
        v[2] = in->d1;
        v[3] = e->payload_type == EV_WORKFLOW_ENABLED    ? "true"
               : e->payload_type == EV_WORKFLOW_DISABLED ? "false"
                                                         : NULL;
        v[4] = st->num[0];
        v[5] = st->at;
        st->n = 6;
        break;
    case EV_WORKFLOW_DELETED:
        st->name = "kq_wf_delete";
        st->n = 1;
        break;
    default:
        break;
    }
}

void proj_pg_run_stmt(const ev_envelope *e, const proj_pg_evinfo *in, proj_pg_stmt *st)
{
    const char **v = st->v;
    char(*num)[24] = st->num;

    stmt_start(st, e);
    switch (e->payload_type) {
    case EV_RUN_STARTED: {
        const ev_run_started *r = &e->payload.run_started;
        st->name = "kq_run_start";
        v[1] = param_str(r->workflow_id, &st->own[1]);
        snprintf(num[1], sizeof num[1], "%" PRId64, r->workflow_version);
        v[2] = num[1];
        v[3] = r->trigger == EV_TRIGGER_WEBHOOK ? "webhook" : "manual";
        v[4] = in->d1;
        v[5] = in->d2;
        v[6] = num[0];
        v[7] = st->at;
        v[8] = in->run.status;
        st->n = 9;
        break;
    }
    case EV_STEP_ATTEMPTED: {
        const ev_step_attempted *a = &e->payload.step_attempted;
        st->name = "kq_run_attempt";
        snprintf(num[1], sizeof num[1], "%" PRIu32, a->step);
        snprintf(num[2], sizeof num[2], "%" PRIu32, a->attempt);
        snprintf(num[3], sizeof num[3], "%" PRId32, a->status_code);
        snprintf(num[4], sizeof num[4], "%" PRId64, a->duration_ms);
        v[1] = num[1];
        v[2] = num[2];
        v[3] = a->has_status_code ? num[3] : NULL;
        v[4] = param_str(a->error, &st->own[1]);
        v[5] = st->at;
        v[6] = num[4];
        if (a->has_next_delay_ms) {
            snprintf(num[5], sizeof num[5], "%" PRId64, a->next_delay_ms);
            v[7] = num[5];
        }
        v[8] = param_str(a->delivery_id, &st->own[2]);
        v[9] = num[0];
        v[10] = in->run.status;
        v[11] = in->run.step_status;
        st->n = 12;
        break;
    }
    case EV_STEP_SUCCEEDED:
    case EV_STEP_FAILED:
        st->name = "kq_run_step";
        snprintf(num[1], sizeof num[1], "%" PRIu32,
                 e->payload_type == EV_STEP_SUCCEEDED ? e->payload.step_succeeded.step
                                                      : e->payload.step_failed.step);
        v[1] = num[1];
        v[2] = in->run.step_status;
        v[3] = num[0];
        v[4] = st->at;
        v[5] = in->run.status;
        st->n = 6;
        break;
    case EV_RUN_SUCCEEDED:
    case EV_RUN_FAILED:
        st->name = "kq_run_end";
        v[1] = in->run.status;
        v[2] = e->payload_type == EV_RUN_FAILED
                   ? (e->payload.run_failed.error.ptr
                          ? param_str(e->payload.run_failed.error, &st->own[1])
                          : "")
                   : NULL;
        v[3] = num[0];
        v[4] = st->at;
        st->n = 5;
        break;
    default:
        break;
    }
}

int proj_pg_run_fold(ev_run_state *s, const ev_envelope *e, proj_pg_run_values *v, const char **why)
{
    ev_run_state n = *s;
    int rc;

    v->status = NULL;
    v->step = -1;
    v->step_status = NULL;
    if ((rc = ev_run_fold(&n, e, why)) != EV_FOLD_APPLIED)
        return rc;
    v->status = ev_run_status_name(n.status);
    switch (e->payload_type) {
    case EV_STEP_ATTEMPTED:
        v->step = (int32_t)e->payload.step_attempted.step;
        break;
    case EV_STEP_SUCCEEDED:
        v->step = (int32_t)e->payload.step_succeeded.step;
        break;
    case EV_STEP_FAILED:
        v->step = (int32_t)e->payload.step_failed.step;
        break;
    default:
        break;
    }
    if (v->step >= 0)
        v->step_status = ev_step_status_name(ev_run_step_status(&n, (uint32_t)v->step));
    *s = n;
    return EV_FOLD_APPLIED;
}

/*
 * The table's pg_check of workflows and runs (proj_aggregate.h): what the
 * tables can hold (wfrun_check), then for a run THE run fold from the run's
 * state in the batch (loaded with the versions): an event it refuses is
 * dead-lettered (reason "run", in->why); an applied one keeps the row values
 * its statement writes (in->run).
 */
int proj_pg_wfrun_check(proj_pg *pg, const proj_event *ev, proj_pg_evinfo *in, size_t start)
{
    ev_run_state n;
    int rc = wfrun_check(pg, ev, in, start);

    if (rc != 0 || ev->env.aggregate_type != EV_AGG_RUN)
        return rc;
    n = in->a->run;
    if (proj_pg_run_fold(&n, &ev->env, &in->run, &in->why) != EV_FOLD_APPLIED) {
        in->reason = "run";
        if (in->why == NULL)
            in->why = "run event already applied";
        return 1;
    }
    in->a->run = n;
    return 0;
}

/*
 * The batch's applied events whose aggregate writes by statement (workflows,
 * runs: proj_aggregate.h pg_stmt), one prepared statement each, in log
 * order, sent in one pipeline (one round trip for the batch; the measured
 * cost of a round trip per event was ~20% of the PostgreSQL target's
 * throughput on a log with 10% workflow events).
 */
int proj_pg_stmt_write(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen)
{
    int rc = 0, any = 0;

    for (size_t i = 0; i < b->n && !any; i++)
        any = b->ev[i].decoded && pg->info[i].st == PROJ_PG_APPLY &&
              proj_aggregate_of(b->ev[i].env.aggregate_type)->pg_stmt != NULL;
    if (!any)
        return 0;
    if (PQenterPipelineMode(pg->conn) != 1)
        return proj_pg_fail(pg->conn, "pipeline", NULL, errstr, errlen);
    for (size_t i = 0; i < b->n && !rc; i++) {
        const proj_event *ev = &b->ev[i];
        const proj_aggregate *ag;
        proj_pg_stmt st;

        if (!ev->decoded || pg->info[i].st != PROJ_PG_APPLY ||
            (ag = proj_aggregate_of(ev->env.aggregate_type))->pg_stmt == NULL)
            continue;
        ag->pg_stmt(&ev->env, &pg->info[i], &st);
        /* libpq copies the parameters into its output buffer at once */
        if (st.name != NULL &&
            PQsendQueryPrepared(pg->conn, st.name, st.n, st.v, NULL, NULL, 0) != 1)
            rc = -1;
        proj_pg_stmt_clear(&st);
    }
    return proj_pg_pipeline_finish(pg->conn, rc != 0, "workflow/run statement", errstr, errlen);
}

void proj_pg_wfrun_free(proj_pg *pg, size_t n)
{
    for (size_t i = 0; i < n && i < pg->infocap; i++) {
        free(pg->info[i].d1);
        free(pg->info[i].d2);
        pg->info[i].d1 = pg->info[i].d2 = NULL;
    }
}
