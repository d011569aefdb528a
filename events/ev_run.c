/*
 * ev_run.c — the run fold (see ev_run.h for the rule).
 */
#include "ev_run.h"

#include <string.h>

static const char *const status_names[] = {"pending", "running", "succeeded", "failed"};

void ev_run_init(ev_run_state *s)
{
    memset(s, 0, sizeof *s);
    s->next_delay_ms = -1;
}

int ev_run_open(const ev_run_state *s)
{
    return s->version > 0 && !s->ended &&
           (s->status == EV_RUN_IS_PENDING || s->status == EV_RUN_IS_RUNNING) &&
           s->step < s->step_count;
}

ev_step_status ev_run_step_status(const ev_run_state *s, uint32_t step)
{
    if (step >= s->step_count || step > s->step)
        return EV_STEP_IS_PENDING;
    if (step < s->step)
        return EV_STEP_IS_SUCCEEDED;
    if (s->step_failed)
        return EV_STEP_IS_FAILED;
    return s->attempts > 0 ? EV_STEP_IS_RUNNING : EV_STEP_IS_PENDING;
}

const char *ev_run_status_name(int status)
{
    return status >= 0 && status < 4 ? status_names[status] : NULL;
}

int ev_run_status_parse(const char *s)
{
    for (int i = 0; s != NULL && i < 4; i++)
        if (strcmp(s, status_names[i]) == 0)
            return i;
    return -1;
}

const char *ev_step_status_name(int status)
{
    return ev_run_status_name(status);
}

static int refuse(const char **why, const char *msg)
{
    if (why != NULL)
        *why = msg;
    return EV_FOLD_REFUSED;
}

/* The checks every step event shares: an open run and its current step.
 * NULL when they pass, else why (static). */
static const char *step_check(const ev_run_state *s, ev_event_type type, uint32_t step)
{
    static const char *const finished[] = {"StepAttempted: the run is finished",
                                           "StepSucceeded: the run is finished",
                                           "StepFailed: the run is finished"};
    static const char *const other[] = {"StepAttempted: not the run's current step",
                                        "StepSucceeded: not the run's current step",
                                        "StepFailed: not the run's current step"};
    int i = (int)type - (int)EV_STEP_ATTEMPTED; /* 0..2 */

    if (!ev_run_open(s))
        return finished[i];
    if (step != s->step)
        return other[i];
    return NULL;
}

int ev_run_fold(ev_run_state *s, const ev_envelope *e, const char **why)
{
    ev_run_state n;
    const char *bad;

    if (e->payload_type < EV_RUN_STARTED || e->payload_type > EV_RUN_FAILED)
        return refuse(why, "not a run event");
    if (e->version < 1)
        return refuse(why, "version below 1");
    if (e->version <= s->version)
        return EV_FOLD_DUPLICATE;
    if (s->version == 0 && e->payload_type != EV_RUN_STARTED)
        return refuse(why, "an event of a run without RunStarted (unknown run)");
    if (e->version > s->version + 1)
        return refuse(why, "version gap: an event of the run is missing");
    if (s->ended)
        return refuse(why, "an event after RunSucceeded or RunFailed");

    n = *s;
    switch (e->payload_type) {
    case EV_RUN_STARTED: {
        const ev_run_started *p = &e->payload.run_started;
        uint32_t count = p->steps.present ? p->steps.count : p->step_count;
        if (s->version != 0)
            return refuse(why, "RunStarted of a run that has started already");
        if (count > EV_MAX_STEPS)
            return refuse(why, "RunStarted: more steps than a workflow may have");
        ev_run_init(&n);
        n.step_count = count;
        n.status = count == 0 ? EV_RUN_IS_SUCCEEDED : EV_RUN_IS_PENDING;
        break;
    }
    case EV_STEP_ATTEMPTED: {
        const ev_step_attempted *p = &e->payload.step_attempted;
        if ((bad = step_check(s, EV_STEP_ATTEMPTED, p->step)) != NULL)
            return refuse(why, bad);
        if (p->attempt <= s->attempts)
            return refuse(why, "StepAttempted: the attempt is recorded already");
        if (p->attempt != s->attempts + 1)
            return refuse(why, "StepAttempted: an attempt before it is missing");
        n.attempts = p->attempt;
        n.last_attempt_us = e->occurred_at_us;
        n.next_delay_ms = p->has_next_delay_ms ? p->next_delay_ms : -1;
        n.status = EV_RUN_IS_RUNNING;
        break;
    }
    case EV_STEP_SUCCEEDED:
        if ((bad = step_check(s, EV_STEP_SUCCEEDED, e->payload.step_succeeded.step)) != NULL)
            return refuse(why, bad);
        n.step++;
        n.attempts = 0;
        n.last_attempt_us = 0;
        n.next_delay_ms = -1;
        n.status = n.step == n.step_count ? EV_RUN_IS_SUCCEEDED : EV_RUN_IS_RUNNING;
        break;
    case EV_STEP_FAILED:
        if ((bad = step_check(s, EV_STEP_FAILED, e->payload.step_failed.step)) != NULL)
            return refuse(why, bad);
        n.step_failed = 1;
        n.status = EV_RUN_IS_FAILED;
        break;
    case EV_RUN_SUCCEEDED:
        if (s->status == EV_RUN_IS_FAILED)
            return refuse(why, "RunSucceeded of a failed run");
        n.status = EV_RUN_IS_SUCCEEDED;
        n.ended = 1;
        break;
    case EV_RUN_FAILED:
        if (s->status == EV_RUN_IS_SUCCEEDED)
            return refuse(why, "RunFailed of a succeeded run");
        n.status = EV_RUN_IS_FAILED;
        n.ended = 1;
        break;
    default:
        return refuse(why, "not a run event");
    }
    n.version = e->version;
    *s = n;
    return EV_FOLD_APPLIED;
}
