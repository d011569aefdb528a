/*
 * cmd_run.c — the run aggregate: bodies, decisions, events, apply through
 * ev_run_fold, snapshot record; see cmd_run.h.
 */
#include "cmd_run.h"
#include "cmd_state.h"
#include "kq_err.h"
#include "kq_json_in.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T CMD_TOPIC_RUN

_Static_assert(sizeof(cmd_run) == 48, "cmd_run is the 48-byte snapshot record 'n'");

static const char *const outcomes[] = {"retry", "succeeded", "failed", NULL};

static const kq_jin_field attempt_fields[] = {
    {"step", KQ_JIN_INT, 1, 0, NULL, 0, EV_MAX_STEPS - 1},
    {"attempt", KQ_JIN_INT, 1, 0, NULL, 1, INT32_MAX},
    {"status_code", KQ_JIN_INT, 0, 0, NULL, 100, 999},
    {"error", KQ_JIN_STRING, 0, 0, NULL, 0, 0},
    {"duration_ms", KQ_JIN_INT, 1, 0, NULL, 0, INT64_MAX},
    {"next_delay_ms", KQ_JIN_INT, 0, 0, NULL, 0, INT64_MAX},
    {"delivery_id", KQ_JIN_STRING, 1, 0, NULL, 0, 0},
    {"outcome", KQ_JIN_STRING, 1, 0, outcomes, 0, 0},
};

/* ------------------------------------------------------------------ value */

void cmd_run_to_fold(const cmd_run *r, ev_run_state *s)
{
    ev_run_init(s);
    s->version = r->version;
    s->step_count = r->step_count;
    s->step = r->step;
    s->attempts = r->attempts;
    if (r->flags & CMD_RUN_F_SET) {
        s->step_failed = (r->flags & CMD_RUN_F_STEP_FAILED) != 0;
        s->ended = (r->flags & CMD_RUN_F_ENDED) != 0;
        s->status = r->status == CMD_RUN_SUCCEEDED   ? EV_RUN_IS_SUCCEEDED
                    : r->status == CMD_RUN_FAILED    ? EV_RUN_IS_FAILED
                    : (r->flags & CMD_RUN_F_RUNNING) ? EV_RUN_IS_RUNNING
                                                     : EV_RUN_IS_PENDING;
        return;
    }
    /* Written before the fold: only RunSucceeded / RunFailed finished a run. */
    if (r->status == CMD_RUN_SUCCEEDED || r->status == CMD_RUN_FAILED) {
        s->status = r->status == CMD_RUN_SUCCEEDED ? EV_RUN_IS_SUCCEEDED : EV_RUN_IS_FAILED;
        s->ended = 1;
    } else {
        s->status = r->step > 0 || r->attempts > 0 ? EV_RUN_IS_RUNNING : EV_RUN_IS_PENDING;
    }
}

void cmd_run_from_fold(const ev_run_state *s, cmd_run *r)
{
    r->version = s->version;
    r->step_count = s->step_count;
    r->step = s->step;
    r->attempts = s->attempts;
    r->status = s->status == EV_RUN_IS_SUCCEEDED ? CMD_RUN_SUCCEEDED
                : s->status == EV_RUN_IS_FAILED  ? CMD_RUN_FAILED
                                                 : CMD_RUN_OPEN;
    r->flags = CMD_RUN_F_SET | (s->status == EV_RUN_IS_RUNNING ? CMD_RUN_F_RUNNING : 0) |
               (s->step_failed ? CMD_RUN_F_STEP_FAILED : 0) | (s->ended ? CMD_RUN_F_ENDED : 0);
}

static int run_copy(void *dst, const void *src)
{
    memcpy(dst, src, sizeof(cmd_run));
    return 0;
}

static void run_position(const void *val, int64_t *version, int32_t *partition, int64_t *offset)
{
    const cmd_run *r = val;
    *version = r->version;
    *partition = r->partition;
    *offset = r->offset;
}

const cmd_run *cmd_state_run(const cmd_state *st, const char *id)
{
    return cmd_state_get(st, T, id);
}

size_t cmd_state_run_count(const cmd_state *st)
{
    return cmd_state_count(st, T);
}

int cmd_run_final(const cmd_run *r)
{
    if (r->status == CMD_RUN_OPEN)
        return 0;
    /* A record from before the fold: only the end events finished a run. */
    return r->step_count == 0 || !(r->flags & CMD_RUN_F_SET) || (r->flags & CMD_RUN_F_ENDED);
}

int cmd_run_expired(const cmd_state *st, const cmd_run *r)
{
    return cmd_run_final(r) && cmd_state_expired(st, r->ended_at_us);
}

int cmd_state_put_run(cmd_state *st, const char *id, const cmd_run *r)
{
    int created;
    cmd_run *d = cmd_state_put(st, T, id, &created);
    if (d == NULL)
        return KQ_ENOMEM;
    *d = *r;
    if (created && cmd_run_final(d) &&
        cmd_state_expire_push(st, CMD_EXPIRE_RUN, d, d->ended_at_us) != 0) {
        kq_map_remove(st->agg[T], id);
        return KQ_ENOMEM;
    }
    return 0;
}

/* ------------------------------------------------------------------ bodies */

/* POST /internal/v1/runs/{id}/attempts (CMD_RUN_ATTEMPT). */
static int run_parse(const json_t *obj, cmd_command *c, json_t *details)
{
    size_t bad = kq_jin_validate(obj, attempt_fields,
                                 sizeof attempt_fields / sizeof attempt_fields[0], NULL, details);
    const json_t *v, *outcome = json_object_get(obj, "outcome");
    const json_t *delay = json_object_get(obj, "next_delay_ms");
    int retry = json_is_string(outcome) && strcmp(json_string_value(outcome), "retry") == 0;

    if (json_is_string(v = json_object_get(obj, "error")))
        bad += kq_jin_check_bytes(details, "error", v, 0, EV_TEXT_MAX);
    if (json_is_string(v = json_object_get(obj, "delivery_id")))
        bad += kq_jin_check_bytes(details, "delivery_id", v, 1, EV_META_MAX);
    if (json_is_string(outcome)) {
        if (retry && delay == NULL) {
            kq_jin_detail_add(details, "next_delay_ms", "is required when outcome is retry");
            bad++;
        } else if (!retry && delay != NULL) {
            kq_jin_detail_add(details, "next_delay_ms", "is only allowed when outcome is retry");
            bad++;
        }
    }
    if (bad > 0)
        return KQ_EINVAL;
    c->step = (uint32_t)json_integer_value(json_object_get(obj, "step"));
    c->attempt = (uint32_t)json_integer_value(json_object_get(obj, "attempt"));
    if ((v = json_object_get(obj, "status_code")) != NULL) {
        c->has_status_code = 1;
        c->status_code = (int32_t)json_integer_value(v);
    }
    c->duration_ms = json_integer_value(json_object_get(obj, "duration_ms"));
    if (delay != NULL) {
        c->has_next_delay_ms = 1;
        c->next_delay_ms = json_integer_value(delay);
    }
    snprintf(c->delivery_id, sizeof c->delivery_id, "%s",
             json_string_value(json_object_get(obj, "delivery_id")));
    c->outcome = retry                                                  ? CMD_OUT_RETRY
                 : strcmp(json_string_value(outcome), "succeeded") == 0 ? CMD_OUT_SUCCEEDED
                                                                        : CMD_OUT_FAILED;
    if ((v = json_object_get(obj, "error")) != NULL &&
        (c->error = strdup(json_string_value(v))) == NULL)
        return KQ_ENOMEM;
    return 0;
}

int cmd_run_payload(const char *body, size_t len, char **out, json_t *details)
{
    json_t *obj = NULL;
    char *s;

    *out = NULL;
    if (len == 0)
        return (*out = strdup("{}")) != NULL ? 0 : KQ_ENOMEM;
    if (kq_jin_parse(body, len, &obj, details) != 0)
        return KQ_EINVAL;
    s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (s == NULL)
        return KQ_ENOMEM;
    if (strlen(s) > EV_PAYLOAD_JSON_MAX) {
        kq_jin_detail_add(details, "body", "the payload must be at most %u bytes as compact JSON",
                          EV_PAYLOAD_JSON_MAX);
        free(s);
        return KQ_EINVAL;
    }
    *out = s;
    return 0;
}

/* ------------------------------------------------------------------ build */

static int run_build(const cmd_command *c, const cmd_decision *d, int i, ev_envelope *e,
                     ev_envelope *scratch, char *errstr, size_t errlen)
{
    ev_step_list steps;
    int rc;

    switch (e->payload_type) {
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
    default: /* RunSucceeded: no fields */
        break;
    }
    return 0;
}

/* ------------------------------------------------------------------ decide */

/* The batch's pending copy of run c->id after the events of APPEND decision
 * d, folded by ev_run_fold exactly as they will be applied. 0, KQ_ENOMEM, or
 * KQ_ECORRUPT when the fold refuses one (a decision the rule does not allow:
 * cannot happen). */
static int record_pending(const cmd_state *st, cmd_batch *b, const cmd_command *c,
                          const cmd_decision *d)
{
    cmd_run *p = cmd_batch_take(st, b, T, c->id, NULL);
    ev_run_state s;
    char es[128];
    int rc = 0;

    if (p == NULL)
        return KQ_ENOMEM;
    if (d->events[0] == EV_RUN_STARTED)
        memset(p, 0, sizeof *p);
    cmd_run_to_fold(p, &s);
    if (d->events[0] == EV_RUN_STARTED)
        ev_run_init(&s);
    for (int i = 0; i < d->nevents && rc == 0; i++) {
        ev_envelope e, scratch;
        const char *why = NULL;
        if (d->events[i] == EV_RUN_STARTED) {
            /* what the fold reads of it, without decoding the steps again */
            ev_envelope_init(&e, EV_RUN_STARTED);
            e.aggregate_id = ev_str_c(c->id);
            e.version = 1;
            e.payload.run_started.step_count = d->step_count;
        } else if ((rc = cmd_aggregate_build(c, d, i, &e, &scratch, es, sizeof es)) != 0) {
            break;
        }
        if (ev_run_fold(&s, &e, &why) != EV_FOLD_APPLIED)
            rc = KQ_ECORRUPT;
    }
    if (rc != 0)
        return rc == KQ_ENOMEM ? rc : KQ_ECORRUPT;
    cmd_run_from_fold(&s, p);
    p->offset = -1;
    return 0;
}

static int decide_start(const cmd_state *st, cmd_batch *b, const cmd_command *c, cmd_decision *d)
{
    int run_pending = 0, wf_pending = 0, rc;
    const cmd_run *run = cmd_batch_view(st, b, T, c->id, &run_pending);
    const cmd_workflow *wf = cmd_batch_view(st, b, CMD_TOPIC_WORKFLOW, c->workflow_id, &wf_pending);

    d->pending = run_pending || wf_pending;
    if (run != NULL) {
        cmd_decision_refuse(d, 409, "conflict", run->version, "run %s exists already", c->id);
        return 0;
    }
    if (c->trigger == EV_TRIGGER_WEBHOOK) {
        /* an unknown or deleted workflow is answered exactly as a wrong secret, after the
         * same work (cmd_workflow_hook_ok), so a caller without the secret learns nothing */
        if (!cmd_workflow_hook_ok(c, wf == NULL || wf->deleted ? NULL : wf->secret)) {
            cmd_decision_refuse(d, 401, "invalid_webhook_secret", 0,
                                "the webhook secret or signature is not the workflow's");
            return 0;
        }
    } else if (wf == NULL || wf->deleted) {
        cmd_decision_refuse(d, 404, "not_found", 0, "workflow %s does not exist", c->workflow_id);
        return 0;
    }
    if (!wf->enabled) {
        cmd_decision_refuse(d, 409, "workflow_disabled", wf->version, "workflow %s is disabled",
                            c->workflow_id);
        return 0;
    }
    if ((d->wf_secret = strdup(wf->secret ? wf->secret : "")) == NULL)
        return KQ_ENOMEM;
    if (wf->steps != NULL) {
        if ((d->wf_steps = malloc(wf->steps_len ? wf->steps_len : 1)) == NULL)
            return KQ_ENOMEM; /* the caller clears d */
        memcpy(d->wf_steps, wf->steps, wf->steps_len);
        d->wf_steps_len = wf->steps_len;
    }
    d->wf_version = wf->version;
    d->step_count = wf->steps != NULL ? wf->step_count : 0;
    d->nevents = 1;
    d->events[0] = d->event = EV_RUN_STARTED;
    d->version = 1;
    d->kind = CMD_D_APPEND;
    if ((rc = record_pending(st, b, c, d)) != 0)
        return rc;
    return 0;
}

static void attempt_detail(cmd_decision *d, const cmd_run *r)
{
    d->has_attempt_detail = 1;
    d->current_step = r->step;
    d->recorded_attempts = r->attempts;
}

static int decide_attempt(const cmd_state *st, cmd_batch *b, const cmd_command *c, cmd_decision *d)
{
    const cmd_run *cur = cmd_batch_view(st, b, T, c->id, &d->pending);
    ev_run_state s;
    int n = 0, last;

    /* A final run past its window is gone, pruned yet or not (cmd_state.h, "Expiry"). */
    if (cur == NULL || (!d->pending && cmd_run_expired(st, cur))) {
        cmd_decision_refuse(d, 404, "not_found", 0,
                            "run %s does not exist (or finished longer ago than "
                            "KCQRS_IDEMPOTENCY_TTL)",
                            c->id);
        return 0;
    }
    cmd_run_to_fold(cur, &s);
    /* A run without steps has no step to attempt: step_mismatch below. */
    if (!ev_run_open(&s) && s.step_count > 0) {
        cmd_decision_refuse(d, 409, "run_finished", cur->version, "run %s has %s", c->id,
                            s.status == EV_RUN_IS_SUCCEEDED ? "succeeded" : "failed");
        return 0;
    }
    if (c->step != cur->step || c->step >= cur->step_count) {
        cmd_decision_refuse(d, 409, "step_mismatch", cur->version,
                            "step %u is not the run's current step %u (of %u)", (unsigned)c->step,
                            (unsigned)cur->step, (unsigned)cur->step_count);
        attempt_detail(d, cur);
        return 0;
    }
    if (c->attempt <= cur->attempts) {
        cmd_decision_refuse(d, 409, "attempt_recorded", cur->version,
                            "attempt %u of step %u is recorded already (%u recorded)",
                            (unsigned)c->attempt, (unsigned)c->step, (unsigned)cur->attempts);
        attempt_detail(d, cur);
        return 0;
    }
    if (c->attempt > cur->attempts + 1) {
        cmd_decision_refuse(d, 409, "attempt_gap", cur->version,
                            "attempt %u of step %u follows %u recorded attempts",
                            (unsigned)c->attempt, (unsigned)c->step, (unsigned)cur->attempts);
        attempt_detail(d, cur);
        return 0;
    }
    if (c->outcome != CMD_OUT_RETRY && c->outcome != CMD_OUT_SUCCEEDED &&
        c->outcome != CMD_OUT_FAILED) {
        cmd_decision_refuse(d, 400, "invalid_request", 0, "unknown outcome %d", c->outcome);
        return 0;
    }
    if ((c->outcome == CMD_OUT_RETRY) != (c->has_next_delay_ms != 0)) {
        cmd_decision_refuse(d, 400, "invalid_request", 0,
                            "next_delay_ms is required iff the outcome is retry");
        return 0;
    }
    last = c->step + 1 == cur->step_count;
    d->events[n++] = EV_STEP_ATTEMPTED;
    if (c->outcome == CMD_OUT_SUCCEEDED) {
        d->events[n++] = EV_STEP_SUCCEEDED;
        if (last)
            d->events[n++] = EV_RUN_SUCCEEDED;
    } else if (c->outcome == CMD_OUT_FAILED) {
        d->events[n++] = EV_STEP_FAILED;
        d->events[n++] = EV_RUN_FAILED;
    }
    d->nevents = n;
    d->event = d->events[0];
    d->version = cur->version + n;
    d->kind = CMD_D_APPEND;
    return record_pending(st, b, c, d);
}

static int run_decide(const cmd_state *st, cmd_batch *b, const cmd_command *c, cmd_decision *d)
{
    return c->kind == CMD_RUN_START ? decide_start(st, b, c, d) : decide_attempt(st, b, c, d);
}

/* ------------------------------------------------------------------ apply */

static int run_apply(cmd_state *st, const ev_envelope *e, const char *id, int32_t partition,
                     int64_t offset, char *errstr, size_t errlen)
{
    cmd_run *r = cmd_state_get(st, T, id);
    ev_run_state s;
    const char *why = NULL;
    int was_final;

    if (r != NULL)
        cmd_run_to_fold(r, &s);
    else
        ev_run_init(&s);
    switch (ev_run_fold(&s, e, &why)) {
    case EV_FOLD_APPLIED:
        break;
    case EV_FOLD_DUPLICATE:
        return 1;
    default:
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "run %s: %s version %" PRId64 " refused: %s",
                         id, ev_event_type_name(e->payload_type), e->version,
                         why != NULL ? why : "against the run rule");
    }
    was_final = r != NULL && cmd_run_final(r);
    if (r == NULL && (r = cmd_state_put(st, T, id, NULL)) == NULL)
        return KQ_ENOMEM;
    cmd_run_from_fold(&s, r);
    r->partition = partition;
    r->offset = offset;
    if (was_final || !cmd_run_final(r))
        return 0;
    /* It has just finished for good: kept for the window after this event. */
    r->ended_at_us = e->occurred_at_us;
    if (cmd_state_expired(st, r->ended_at_us)) {
        /* Catch-up of a run that ended longer ago than the window: gone at
         * once (and from the snapshot, if an earlier one held it). */
        if (st->track)
            cmd_delta_del(&st->delta, 'n', id);
        kq_map_remove(st->agg[T], id);
        st->expired_runs++;
        return 0;
    }
    return cmd_state_expire_push(st, CMD_EXPIRE_RUN, r, r->ended_at_us);
}

/* ------------------------------------------------------------------ snapshot record */

static int run_snap_put(cmd_delta *d, const char *id, const void *val)
{
    cmd_piece p = {val, sizeof(cmd_run)};
    return cmd_delta_put(d, 'n', id, &p, 1);
}

static int run_snap_load(cmd_state *st, const char *id, const void *rec, size_t len, char *errstr,
                         size_t errlen)
{
    cmd_run r;

    if (len != sizeof r)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "run %s", id);
    memcpy(&r, rec, sizeof r);
    if (r.status < CMD_RUN_OPEN || r.status > CMD_RUN_FAILED)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "run %s", id);
    if (cmd_run_expired(st, &r)) /* finished longer ago than the window since it was written */
        return cmd_delta_del(&st->delta, 'n', id) != 0 ? KQ_ENOMEM : 0;
    return cmd_state_put_run(st, id, &r);
}

const cmd_aggregate cmd_run_type = {
    .type = EV_AGG_RUN,
    .topic = CMD_TOPIC_RUN,
    .name = "run",
    .snap_kind = 'n',
    .value_size = sizeof(cmd_run),
    .clear = NULL,
    .copy = run_copy,
    .parse = run_parse,
    .decide = run_decide,
    .build = run_build,
    .apply = run_apply,
    .position = run_position,
    .snap_put = run_snap_put,
    .snap_load = run_snap_load,
    .answer_secret = NULL,
};
