/*
 * proj_doc.c — see proj_doc.h.
 */
#include "proj_doc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kq_err.h"

static const char *const run_status_names[] = {"pending", "running", "succeeded", "failed"};
static const char *const method_names[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};

const char *proj_doc_run_status_name(int status)
{
    return status >= 0 && status < 4 ? run_status_names[status] : NULL;
}

int proj_doc_run_status_parse(const char *s)
{
    for (int i = 0; s != NULL && i < 4; i++)
        if (strcmp(s, run_status_names[i]) == 0)
            return i;
    return -1;
}

void proj_doc_time(int64_t us, char *out)
{
    time_t secs = (time_t)(us / 1000000);
    int64_t frac = us % 1000000;
    struct tm tm;

    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    if (gmtime_r(&secs, &tm) == NULL) {
        snprintf(out, 80, "1970-01-01T00:00:00.000000Z");
        return;
    }
    snprintf(out, 80, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
}

static json_t *jtime(int64_t us)
{
    char t[80];

    proj_doc_time(us, t);
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

static json_t *action_json(const ev_step *st)
{
    json_t *a = json_object();
    int bad = a == NULL;

    if (bad)
        return NULL;
    if (st->action_type == EV_ACTION_HTTP) {
        const ev_http_action *h = &st->action.http;
        bad |= put(a, "type", json_string("http"));
        if (st->name.ptr)
            bad |= put(a, "name", jstr(st->name));
        bad |= put(
            a, "method",
            json_string((unsigned)h->method <= EV_HTTP_DELETE ? method_names[h->method] : "POST"));
        bad |= put(a, "url", jstr(h->url));
        if (h->headers.present && h->headers.count > 0) {
            json_t *hs = json_object();
            bad |= put(a, "headers", hs);
            for (uint32_t i = 0; !bad && i < h->headers.count; i++) {
                ev_http_header hd;
                char name[EV_HEADER_NAME_MAX + 1];
                if (ev_header_list_get(&h->headers, i, &hd) != 0 || hd.name.ptr == NULL ||
                    hd.name.len > EV_HEADER_NAME_MAX || memchr(hd.name.ptr, 0, hd.name.len)) {
                    bad = 1;
                    break;
                }
                memcpy(name, hd.name.ptr, hd.name.len);
                name[hd.name.len] = '\0';
                bad |= put(hs, name, jstr(hd.value));
            }
        }
        if (h->body_template.ptr)
            bad |= put(a, "body_template", jstr(h->body_template));
    } else if (st->action_type == EV_ACTION_EMAIL) {
        const ev_email_action *m = &st->action.email;
        json_t *to = json_array();
        bad |= put(a, "type", json_string("email"));
        if (st->name.ptr)
            bad |= put(a, "name", jstr(st->name));
        bad |= put(a, "to", to);
        for (uint32_t i = 0; !bad && i < m->to.count; i++) {
            ev_str s;
            bad |= ev_str_list_get(&m->to, i, &s) != 0 || json_array_append_new(to, jstr(s)) != 0;
        }
        bad |= put(a, "subject", jstr(m->subject));
        if (m->body_template.ptr)
            bad |= put(a, "body_template", jstr(m->body_template));
    } else {
        bad = 1;
    }
    if (bad) {
        json_decref(a);
        return NULL;
    }
    return a;
}

json_t *proj_doc_actions(const ev_step_list *steps)
{
    json_t *arr = json_array();

    if (arr == NULL)
        return NULL;
    for (uint32_t i = 0; steps->present && i < steps->count; i++) {
        ev_step st;
        if (ev_step_list_get(steps, i, &st) != 0 ||
            json_array_append_new(arr, action_json(&st)) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
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
        json_t *actions = proj_doc_actions(&c->steps);
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
                bad |= put(d, "actions", proj_doc_actions(&u->steps));
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
            if (!bad)
                bad = st.action_type == EV_ACTION_HTTP    ? put(o, "type", json_string("http"))
                      : st.action_type == EV_ACTION_EMAIL ? put(o, "type", json_string("email"))
                                                          : -1;
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

/* The run's step `step`, NULL when beyond its steps (as in the PostgreSQL
 * target, such an event changes only the version and times: the writer never
 * records one). */
static json_t *step_of(json_t *d, uint32_t step)
{
    return json_array_get(json_object_get(d, "steps"), step);
}

static int set_step_status(json_t *s, const char *status)
{
    return put(s, "status", json_string(status));
}

int proj_doc_run(json_t **doc, const ev_envelope *e, const char **why)
{
    json_t *d = NULL, *s;
    int bad = 0;

    if (e->payload_type == EV_RUN_STARTED) {
        const ev_run_started *r = &e->payload.run_started;
        json_t *payload = NULL, *steps;
        json_error_t jerr;

        if ((r->steps.present ? r->steps.count : r->step_count) > EV_MAX_STEPS) {
            *why = "RunStarted: more steps than a workflow may have";
            return PROJ_DOC_REFUSED;
        }
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
        bad |= put(d, "status", json_string("pending"));
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
    if (e->payload_type < EV_STEP_ATTEMPTED || e->payload_type > EV_RUN_FAILED) {
        *why = "event type does not belong to a run";
        return PROJ_DOC_REFUSED;
    }
    if (*doc == NULL) /* a run whose first event was no RunStarted: the version advances */
        return PROJ_DOC_SKIP;
    if ((d = json_deep_copy(*doc)) == NULL)
        return KQ_ENOMEM;
    switch (e->payload_type) {
    case EV_STEP_ATTEMPTED: {
        const ev_step_attempted *a = &e->payload.step_attempted;
        json_t *at;
        s = step_of(d, a->step);
        at = json_object();
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
        if (s == NULL)
            json_decref(at);
        else if (json_array_append_new(json_object_get(s, "attempts"), at) != 0)
            bad = 1;
        if (s != NULL && json_is_string(json_object_get(s, "status")) &&
            strcmp(json_string_value(json_object_get(s, "status")), "pending") == 0)
            bad |= set_step_status(s, "running");
        if (proj_doc_run_status(d) == PROJ_RUN_PENDING)
            bad |= put(d, "status", json_string("running"));
        break;
    }
    case EV_STEP_SUCCEEDED:
        if ((s = step_of(d, e->payload.step_succeeded.step)) != NULL)
            bad |= set_step_status(s, "succeeded");
        break;
    case EV_STEP_FAILED:
        if ((s = step_of(d, e->payload.step_failed.step)) != NULL)
            bad |= set_step_status(s, "failed");
        break;
    case EV_RUN_SUCCEEDED:
        bad |= put(d, "status", json_string("succeeded"));
        break;
    case EV_RUN_FAILED:
        bad |= put(d, "status", json_string("failed"));
        if ((bad |= put(d, "error", jstr(e->payload.run_failed.error))) != 0) {
            *why = "RunFailed: error is not UTF-8";
            goto refused;
        }
        break;
    default:
        *why = "event type does not belong to a run";
        goto refused;
    }
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
    return proj_doc_run_status_parse(json_string_value(json_object_get(doc, "status")));
}

char *proj_doc_dump(const json_t *doc, size_t *len)
{
    char *s = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);

    if (s != NULL)
        *len = strlen(s);
    return s;
}
