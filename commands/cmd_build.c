/*
 * cmd_build.c — event payloads from decided commands; see cmd_build.h.
 */
#include "cmd_build.h"

int cmd_build_payload(const cmd_command *c, const cmd_decision *d, ev_event_type type,
                      ev_envelope *e, ev_envelope *steps_env, char *errstr, size_t errlen)
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
            if ((rc = cmd_steps_view(c->steps_env, c->steps_env_len, steps_env, &steps, errstr,
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
            if ((rc = cmd_steps_view(c->steps_env, c->steps_env_len, steps_env, &steps, errstr,
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
            if ((rc = cmd_steps_view(d->wf_steps, d->wf_steps_len, steps_env, &steps, errstr,
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
