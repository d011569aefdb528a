/*
 * proj_doc.c — see proj_doc.h.
 */
#include "proj_doc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ev_action.h"
#include "kq_err.h"
#include "kq_time.h"

static json_t *jtime(int64_t us)
{
    char t[KQ_TIME_MAX];

    kq_time_format(us, t);
    return json_string(t);
}

/* A view as a JSON string; NULL when invalid UTF-8 or out of memory. */
static json_t *jstr(ev_str s)
{
    return json_stringn(s.ptr ? s.ptr : "", s.len);
}

/* Set key to a new value; -1 (value released) when v is NULL or the set fails. */
static int put(json_t *o, const char *key, json_t *v)
{
    return v == NULL ? -1 : json_object_set_new(o, key, v);
}

/* version and updated_at of any event */
static int touch(json_t *doc, const ev_envelope *e)
{
    return put(doc, "version", json_integer(e->version)) |
           put(doc, "updated_at", jtime(e->occurred_at_us));
}

int proj_doc_workflow(json_t **doc, const ev_envelope *e, const char **why)
{
    json_t *d = NULL;
    int bad = 0;

    switch (e->payload_type) {
    case EV_WORKFLOW_CREATED: {
        const ev_workflow_created *c = &e->payload.workflow_created;
        json_t *actions = ev_actions_json(&c->steps);
        if (actions == NULL) {
            *why = "WorkflowCreated: an action is malformed or not UTF-8";
            return PROJ_DOC_REFUSED;
        }
        if ((d = json_object()) == NULL) {
            json_decref(actions);
            return KQ_ENOMEM;
        }
        bad |= put(d, "id", jstr(e->aggregate_id));
        bad |= put(d, "name", jstr(c->name));
        bad |= put(d, "enabled", json_boolean(c->enabled));
        bad |= put(d, "actions", actions);
        bad |= put(d, "version", json_integer(e->version));
        bad |= put(d, "created_at", jtime(e->occurred_at_us));
        bad |= put(d, "updated_at", jtime(e->occurred_at_us));
        if (bad) {
            json_decref(d);
            *why = "WorkflowCreated: a string is not UTF-8";
            return PROJ_DOC_REFUSED;
        }
        json_decref(*doc);
        *doc = d;
        return PROJ_DOC_OK;
    }
    case EV_WORKFLOW_UPDATED:
    case EV_WORKFLOW_ENABLED:
    case EV_WORKFLOW_DISABLED:
        if (*doc == NULL)
            return PROJ_DOC_SKIP;
        if ((d = json_deep_copy(*doc)) == NULL)
            return KQ_ENOMEM;
        if (e->payload_type == EV_WORKFLOW_UPDATED) {
            const ev_workflow_updated *u = &e->payload.workflow_updated;
            if (u->name.ptr)
                bad |= put(d, "name", jstr(u->name));
            if (u->steps.present)
                bad |= put(d, "actions", ev_actions_json(&u->steps));
        } else {
            bad |= put(d, "enabled", json_boolean(e->payload_type == EV_WORKFLOW_ENABLED));
        }
        bad |= touch(d, e);
        if (bad) {
            json_decref(d);
            *why = "WorkflowUpdated: an action is malformed or not UTF-8";
            return PROJ_DOC_REFUSED;
        }
        json_decref(*doc);
        *doc = d;
        return PROJ_DOC_OK;
    case EV_WORKFLOW_DELETED:
        if (*doc == NULL)
            return PROJ_DOC_SKIP;
        json_decref(*doc);
        *doc = NULL;
        return PROJ_DOC_DELETED;
    default:
        *why = "event type does not belong to a workflow";
        return PROJ_DOC_REFUSED;
    }
}

static json_t *run_steps(const ev_run_started *s)
{
    json_t *arr = json_array();
    uint32_t n = s->steps.present ? s->steps.count : s->step_count;

    if (arr == NULL)
        return NULL;
    for (uint32_t i = 0; i < n; i++) {
        json_t *o = json_object();
        int bad = o == NULL || json_array_append_new(arr, o) != 0;
        bad = bad || put(o, "index", json_integer(i));
        if (!bad && s->steps.present) {
            ev_step st;
            bad = ev_step_list_get(&s->steps, i, &st) != 0;
            if (!bad && st.name.ptr)
                bad = put(o, "name", jstr(st.name));
            if (!bad) {
                const char *type = ev_action_type_name(st.action_type);
                bad = type != NULL ? put(o, "type", json_string(type)) : -1;
            }
        }
        bad = bad || put(o, "status", json_string("pending")) || put(o, "attempts", json_array());
        if (bad) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* The run answer's key order: "error" sits after "payload" once present. */
static const char *const run_keys[] = {
    "id",    "workflow_id", "workflow_version", "trigger",    "status", "payload",
    "error", "version",     "created_at",       "updated_at", "steps",  NULL};

static json_t *run_ordered(json_t *d)
{
    json_t *o = json_object();

    for (int i = 0; o != NULL && run_keys[i]; i++) {
        json_t *v = json_object_get(d, run_keys[i]);
        if (v != NULL && json_object_set(o, run_keys[i], v) != 0) {
            json_decref(o);
            o = NULL;
        }
    }
    json_decref(d);
    return o;
}

int proj_run_state_load(const proj_run_stored *st, ev_run_state *s)
{
    ev_run_init(s);
    if (st->version == 0)
        return 0;
    if (st->status < EV_RUN_IS_PENDING || st->status > EV_RUN_IS_FAILED ||
        st->step_count > EV_MAX_STEPS || st->done > st->step_count || st->total_attempts < 0)
        return KQ_ECORRUPT;
    s->version = st->version;
    s->status = st->status;
    s->step_count = st->step_count;
    s->step = st->done;
    s->step_failed = st->current_failed != 0;
    s->attempts = st->attempts;
    if (st->attempts > 0) {
        s->last_attempt_us = st->last_attempt_us;
        s->next_delay_ms = st->next_delay_ms;
    }
    /* every applied event but RunSucceeded/RunFailed left a trace: RunStarted,
     * one attempt each, one succeeded or failed step each */
    s->ended = st->version > 1 + st->total_attempts + st->done + (st->current_failed != 0);
    return 0;
}

/* The fold's state of a stored run document (NULL: no run). 0 or KQ_ECORRUPT. */
static int doc_state(const json_t *d, ev_run_state *s)
{
    proj_run_stored st;
    json_t *steps, *step, *cur = NULL;
    size_t i;

    memset(&st, 0, sizeof st);
    st.next_delay_ms = -1;
    if (d == NULL)
        return proj_run_state_load(&st, s);
    steps = json_object_get(d, "steps");
    st.version = json_integer_value(json_object_get(d, "version"));
    st.status = proj_doc_run_status(d);
    st.step_count = (uint32_t)json_array_size(steps);
    json_array_foreach(steps, i, step)
    {
        const char *ss = json_string_value(json_object_get(step, "status"));
        st.total_attempts += (int64_t)json_array_size(json_object_get(step, "attempts"));
        if (cur == NULL && ss != NULL && strcmp(ss, "succeeded") == 0)
            st.done++;
        else if (cur == NULL)
            cur = step;
    }
    if (cur != NULL) {
        json_t *at = json_object_get(cur, "attempts"), *last;
        const char *ss = json_string_value(json_object_get(cur, "status"));
        st.current_failed = ss != NULL && strcmp(ss, "failed") == 0;
        st.attempts = (uint32_t)json_array_size(at);
        if ((last = json_array_get(at, json_array_size(at) - 1)) != NULL) {
            json_t *nd = json_object_get(last, "next_delay_ms");
            if (kq_time_parse(json_string_value(json_object_get(last, "at")),
                              &st.last_attempt_us) != 0)
                st.last_attempt_us = 0;
            st.next_delay_ms = json_is_integer(nd) ? json_integer_value(nd) : -1;
        }
    }
    return proj_run_state_load(&st, s);
}

static int set_status(json_t *o, const char *name)
{
    return name == NULL ? -1 : put(o, "status", json_string(name));
}

int proj_doc_run(json_t **doc, const ev_envelope *e, const char **why)
{
    json_t *d = NULL, *s;
    ev_run_state st;
    int bad = 0;

    if (e->payload_type < EV_RUN_STARTED || e->payload_type > EV_RUN_FAILED) {
        *why = "event type does not belong to a run";
        return PROJ_DOC_REFUSED;
    }
    *why = NULL;
    if (doc_state(*doc, &st) != 0) {
        *why = "the stored run document is malformed";
        return PROJ_DOC_REFUSED;
    }
    if (ev_run_fold(&st, e, why) != EV_FOLD_APPLIED) {
        if (*why == NULL)
            *why = "run event already applied";
        return PROJ_DOC_REFUSED;
    }
    if (e->payload_type == EV_RUN_STARTED) {
        const ev_run_started *r = &e->payload.run_started;
        json_t *payload = NULL, *steps;
        json_error_t jerr;

        if (r->payload_json.ptr == NULL)
            payload = json_object();
        else if ((payload = json_loadb(r->payload_json.ptr, r->payload_json.len, 0, &jerr)) ==
                     NULL ||
                 !json_is_object(payload)) {
            json_decref(payload);
            *why = "RunStarted: payload_json is not a JSON object";
            return PROJ_DOC_REFUSED;
        }
        if ((steps = run_steps(r)) == NULL || (d = json_object()) == NULL) {
            json_decref(payload);
            json_decref(steps);
            *why = "RunStarted: a step is malformed or not UTF-8";
            return PROJ_DOC_REFUSED;
        }
        bad |= put(d, "id", jstr(e->aggregate_id));
        bad |= put(d, "workflow_id", jstr(r->workflow_id));
        bad |= put(d, "workflow_version", json_integer(r->workflow_version));
        bad |=
            put(d, "trigger", json_string(r->trigger == EV_TRIGGER_WEBHOOK ? "webhook" : "manual"));
        bad |= set_status(d, ev_run_status_name(st.status));
        bad |= put(d, "payload", payload);
        bad |= put(d, "version", json_integer(e->version));
        bad |= put(d, "created_at", jtime(e->occurred_at_us));
        bad |= put(d, "updated_at", jtime(e->occurred_at_us));
        bad |= put(d, "steps", steps);
        if (bad) {
            json_decref(d);
            *why = "RunStarted: a string is not UTF-8";
            return PROJ_DOC_REFUSED;
        }
        json_decref(*doc);
        *doc = d;
        return PROJ_DOC_OK;
    }
    if ((d = json_deep_copy(*doc)) == NULL)
        return KQ_ENOMEM;
    /* the fold accepted the event: its step (if any) is the current one and exists */
    switch (e->payload_type) {
    case EV_STEP_ATTEMPTED: {
        const ev_step_attempted *a = &e->payload.step_attempted;
        json_t *at = json_object();
        s = json_array_get(json_object_get(d, "steps"), a->step);
        bad |= put(at, "attempt", json_integer(a->attempt));
        if (a->has_status_code)
            bad |= put(at, "status_code", json_integer(a->status_code));
        if (a->error.ptr)
            bad |= put(at, "error", jstr(a->error));
        bad |= put(at, "at", jtime(e->occurred_at_us));
        bad |= put(at, "duration_ms", json_integer(a->duration_ms));
        bad |= put(at, "next_delay_ms",
                   a->has_next_delay_ms ? json_integer(a->next_delay_ms) : json_null());
        bad |= put(at, "delivery_id", a->delivery_id.ptr ? jstr(a->delivery_id) : json_null());
        if (bad) {
            json_decref(at);
            *why = "StepAttempted: a string is not UTF-8";
            goto refused;
        }
        if (json_array_append_new(json_object_get(s, "attempts"), at) != 0)
            bad = 1;
        bad |= set_status(s, ev_step_status_name(ev_run_step_status(&st, a->step)));
        break;
    }
    case EV_STEP_SUCCEEDED:
    case EV_STEP_FAILED: {
        uint32_t k = e->payload_type == EV_STEP_SUCCEEDED ? e->payload.step_succeeded.step
                                                          : e->payload.step_failed.step;
        s = json_array_get(json_object_get(d, "steps"), k);
        bad |= set_status(s, ev_step_status_name(ev_run_step_status(&st, k)));
        break;
    }
    case EV_RUN_FAILED:
        if ((bad |= put(d, "error", jstr(e->payload.run_failed.error))) != 0) {
            *why = "RunFailed: error is not UTF-8";
            goto refused;
        }
        break;
    default: /* RunSucceeded: the status only */
        break;
    }
    bad |= set_status(d, ev_run_status_name(st.status));
    bad |= touch(d, e);
    if (bad || (d = run_ordered(d)) == NULL) {
        json_decref(d);
        return KQ_ENOMEM;
    }
    json_decref(*doc);
    *doc = d;
    return PROJ_DOC_OK;
refused:
    json_decref(d);
    return PROJ_DOC_REFUSED;
}

int proj_doc_workflow_enabled(const json_t *doc)
{
    return json_is_true(json_object_get(doc, "enabled"));
}

int proj_doc_run_status(const json_t *doc)
{
    return ev_run_status_parse(json_string_value(json_object_get(doc, "status")));
}

char *proj_doc_dump(const json_t *doc, size_t *len)
{
    char *s = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);

    if (s != NULL)
        *len = strlen(s);
    return s;
}
