/*
 * cmd_aggregate.c — the table of aggregate types and the dispatch through it;
 * see cmd_aggregate.h.
 */
#include "cmd_aggregate.h"
#include "cmd_state.h"
#include "kq_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cmd_aggregate aggregates[CMD_TOPICS] = {
    {.type = EV_AGG_RESOURCE, .topic = CMD_TOPIC_RESOURCE, .name = "resource", .snap_kind = 'r'},
    {.type = EV_AGG_WORKFLOW, .topic = CMD_TOPIC_WORKFLOW, .name = "workflow", .snap_kind = 'w'},
    {.type = EV_AGG_RUN, .topic = CMD_TOPIC_RUN, .name = "run", .snap_kind = 'n'},
};

const cmd_aggregate *cmd_aggregate_get(int topic)
{
    return topic >= 0 && topic < CMD_TOPICS ? &aggregates[topic] : NULL;
}

const cmd_aggregate *cmd_aggregate_of_record(char kind)
{
    for (int t = 0; t < CMD_TOPICS; t++)
        if (aggregates[t].snap_kind == kind)
            return &aggregates[t];
    return NULL;
}

int cmd_kind_topic(cmd_kind kind)
{
    switch (kind) {
    case CMD_WF_CREATE:
    case CMD_WF_UPDATE:
    case CMD_WF_DELETE:
        return CMD_TOPIC_WORKFLOW;
    case CMD_RUN_START:
    case CMD_RUN_ATTEMPT:
        return CMD_TOPIC_RUN;
    default:
        return CMD_TOPIC_RESOURCE;
    }
}

unsigned cmd_success_status(cmd_kind kind)
{
    if (kind == CMD_CREATE || kind == CMD_WF_CREATE)
        return 201;
    return kind == CMD_RUN_START ? 202 : 200;
}

void cmd_decision_refuse(cmd_decision *d, unsigned status, const char *code, int64_t current,
                         const char *fmt, ...)
{
    va_list ap;

    d->kind = CMD_D_ERROR;
    d->status = status;
    d->code = code;
    d->current_version = current;
    va_start(ap, fmt);
    vsnprintf(d->message, sizeof d->message, fmt, ap);
    va_end(ap);
}

void cmd_decision_clear(cmd_decision *d)
{
    free(d->wf_secret);
    free(d->wf_steps);
    d->wf_secret = NULL;
    d->wf_steps = NULL;
    d->wf_steps_len = 0;
}

void cmd_command_clear(cmd_command *c)
{
    free(c->name);
    free(c->description);
    free(c->secret);
    free(c->steps_env);
    free(c->payload_json);
    free(c->error);
    c->name = c->description = c->secret = c->payload_json = c->error = NULL;
    c->steps_env = NULL;
    c->steps_env_len = 0;
}

/* ------------------------------------------------------------------ build */

/* The payload of event `type` of c (views into c, d and *scratch). */
static int fill_payload(const cmd_command *c, const cmd_decision *d, ev_event_type type,
                        ev_envelope *e, ev_envelope *scratch, char *errstr, size_t errlen)
{
    ev_step_list steps;
    int rc;

    switch (type) {
    case EV_RESOURCE_CREATED:
        e->payload.resource_created.name = ev_str_c(c->name);
        e->payload.resource_created.description = ev_str_c(c->description);
        e->payload.resource_created.status =
            (c->fields & CMD_F_STATUS) ? (ev_resource_status)c->status : EV_STATUS_ACTIVE;
        break;
    case EV_RESOURCE_UPDATED:
        if (d->changed & CMD_F_NAME)
            e->payload.resource_updated.name = ev_str_c(c->name);
        if (d->changed & CMD_F_DESCRIPTION)
            e->payload.resource_updated.description = ev_str_c(c->description);
        if (d->changed & CMD_F_STATUS) {
            e->payload.resource_updated.has_status = true;
            e->payload.resource_updated.status = (ev_resource_status)c->status;
        }
        break;
    case EV_WORKFLOW_CREATED:
        e->payload.workflow_created.name = ev_str_c(c->name);
        e->payload.workflow_created.enabled = (c->fields & CMD_F_ENABLED) ? c->enabled != 0 : 1;
        e->payload.workflow_created.webhook_secret = ev_str_c(c->secret);
        e->payload.workflow_created.steps = ev_step_list_of(NULL, 0);
        if (c->steps_env != NULL) {
            if ((rc = cmd_steps_view(c->steps_env, c->steps_env_len, scratch, &steps, errstr,
                                     errlen)) != 0)
                return rc;
            e->payload.workflow_created.steps = steps;
        }
        break;
    case EV_WORKFLOW_UPDATED:
        if (d->changed & CMD_F_NAME)
            e->payload.workflow_updated.name = ev_str_c(c->name);
        if (d->changed & CMD_F_SECRET)
            e->payload.workflow_updated.webhook_secret = ev_str_c(c->secret);
        if (d->changed & CMD_F_STEPS) {
            if ((rc = cmd_steps_view(c->steps_env, c->steps_env_len, scratch, &steps, errstr,
                                     errlen)) != 0)
                return rc;
            e->payload.workflow_updated.steps = steps;
        }
        break;
    case EV_RUN_STARTED: {
        ev_run_started *p = &e->payload.run_started;
        p->workflow_id = ev_str_c(c->workflow_id);
        p->workflow_version = d->wf_version;
        p->trigger = (ev_trigger_kind)c->trigger;
        p->payload_json = ev_str_c(c->payload_json != NULL ? c->payload_json : "{}");
        p->step_count = 0;
        if (d->wf_steps != NULL) {
            if ((rc = cmd_steps_view(d->wf_steps, d->wf_steps_len, scratch, &steps, errstr,
                                     errlen)) != 0)
                return rc;
            p->steps = steps;
            p->step_count = steps.count;
        }
        if (d->wf_secret != NULL && d->wf_secret[0] != '\0')
            p->signing_secret = ev_str_c(d->wf_secret);
        break;
    }
    case EV_STEP_ATTEMPTED: {
        ev_step_attempted *p = &e->payload.step_attempted;
        p->step = c->step;
        p->attempt = c->attempt;
        p->has_status_code = c->has_status_code != 0;
        p->status_code = c->status_code;
        if (c->error != NULL)
            p->error = ev_str_c(c->error);
        p->duration_ms = c->duration_ms;
        p->has_next_delay_ms = c->outcome == CMD_OUT_RETRY && c->has_next_delay_ms;
        p->next_delay_ms = p->has_next_delay_ms ? c->next_delay_ms : 0;
        if (c->delivery_id[0] != '\0')
            p->delivery_id = ev_str_c(c->delivery_id);
        break;
    }
    case EV_STEP_SUCCEEDED:
        e->payload.step_succeeded.step = c->step;
        e->payload.step_succeeded.attempt = c->attempt;
        e->payload.step_succeeded.has_status_code = c->has_status_code != 0;
        e->payload.step_succeeded.status_code = c->status_code;
        break;
    case EV_STEP_FAILED:
        e->payload.step_failed.step = c->step;
        e->payload.step_failed.attempt = c->attempt;
        if (c->error != NULL)
            e->payload.step_failed.error = ev_str_c(c->error);
        break;
    case EV_RUN_FAILED:
        e->payload.run_failed.step = c->step;
        if (c->error != NULL)
            e->payload.run_failed.error = ev_str_c(c->error);
        break;
    default: /* ResourceDeleted, WorkflowEnabled/Disabled/Deleted, RunSucceeded: no fields */
        break;
    }
    return 0;
}

int cmd_aggregate_build(const cmd_command *c, const cmd_decision *d, int i, ev_envelope *e,
                        ev_envelope *scratch, char *errstr, size_t errlen)
{
    ev_event_type type;

    if (d->kind != CMD_D_APPEND || d->nevents < 1 || d->nevents > CMD_MAX_EVENTS || i < 0 ||
        i >= d->nevents)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "event %d of a decision of %d events", i,
                         d->nevents);
    type = d->events[i];
    ev_envelope_init(e, type);
    e->aggregate_id = ev_str_c(c->id);
    e->version = d->version - d->nevents + 1 + i;
    e->actor = ev_str_c(c->actor[0] ? c->actor : "anonymous");
    if (c->idem_key[0])
        e->command_id = ev_str_c(c->idem_key);
    e->correlation_id = ev_str_c(c->correlation_id);
    e->command_hash.ptr = c->hash;
    e->command_hash.len = CMD_HASH_LEN;
    return fill_payload(c, d, type, e, scratch, errstr, errlen);
}

/* ------------------------------------------------------------------ apply */

int cmd_aggregate_apply_envelope(cmd_state *st, int topic, const ev_envelope *e, int32_t partition,
                                 int64_t offset, char *errstr, size_t errlen)
{
    return cmd_state_apply_envelope(st, topic, e, partition, offset, errstr, errlen);
}

int cmd_aggregate_apply(cmd_state *st, int topic, const void *value, size_t len, int32_t partition,
                        int64_t offset, char *errstr, size_t errlen)
{
    ev_envelope e;
    int rc;

    if ((rc = ev_envelope_decode(value, len, &e, errstr, errlen)) != 0) {
        cmd_state_set_topic_offset(st, topic, partition, offset + 1);
        return rc == KQ_ENOMEM ? rc : KQ_ECORRUPT;
    }
    return cmd_aggregate_apply_envelope(st, topic, &e, partition, offset, errstr, errlen);
}

/* ------------------------------------------------------------------ answers */

int cmd_aggregate_position(const cmd_state *st, int topic, const char *id, int64_t *version,
                           int32_t *partition, int64_t *offset)
{
    switch (topic) {
    case CMD_TOPIC_RESOURCE: {
        const cmd_resource *r = cmd_state_resource(st, id);
        if (r == NULL)
            return KQ_ENOTFOUND;
        *version = r->version;
        *partition = r->partition;
        *offset = r->offset;
        return 0;
    }
    case CMD_TOPIC_WORKFLOW: {
        const cmd_workflow *w = cmd_state_workflow(st, id);
        if (w == NULL)
            return KQ_ENOTFOUND;
        *version = w->version;
        *partition = w->partition;
        *offset = w->offset;
        return 0;
    }
    case CMD_TOPIC_RUN: {
        const cmd_run *r = cmd_state_run(st, id);
        if (r == NULL)
            return KQ_ENOTFOUND;
        *version = r->version;
        *partition = r->partition;
        *offset = r->offset;
        return 0;
    }
    default:
        return KQ_ENOTFOUND;
    }
}

const char *cmd_aggregate_answer_secret(const cmd_state *st, const cmd_command *c, const char *id,
                                        int replay)
{
    const cmd_workflow *wf;

    if (c->kind != CMD_WF_CREATE && !(c->kind == CMD_WF_UPDATE && c->secret_generated))
        return NULL;
    if (!replay)
        return c->secret;
    wf = cmd_state_workflow(st, id);
    return wf != NULL && !wf->deleted ? wf->secret : NULL;
}
