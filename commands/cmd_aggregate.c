/*
 * cmd_aggregate.c — the table of aggregate types and the dispatch through it;
 * see cmd_aggregate.h.
 */
#include "cmd_aggregate.h"
#include "cmd_state.h"
#include "ev_pii.h"
#include "ev_secret.h"
#include "kq_keyring.h"
#include "kq_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The table: one entry per topic index (cmd_aggregate.h). */
static const cmd_aggregate *const aggregates[CMD_TOPICS] = {
    &cmd_resource_type,
    &cmd_workflow_type,
    &cmd_run_type,
};

/* Per command kind: its aggregate's topic and the status of its success. */
static const struct {
    int topic;
    unsigned status;
} kinds[] = {
    [CMD_CREATE] = {CMD_TOPIC_RESOURCE, 201},    [CMD_UPDATE] = {CMD_TOPIC_RESOURCE, 200},
    [CMD_DELETE] = {CMD_TOPIC_RESOURCE, 200},    [CMD_WF_CREATE] = {CMD_TOPIC_WORKFLOW, 201},
    [CMD_WF_UPDATE] = {CMD_TOPIC_WORKFLOW, 200}, [CMD_WF_DELETE] = {CMD_TOPIC_WORKFLOW, 200},
    [CMD_RUN_START] = {CMD_TOPIC_RUN, 202},      [CMD_RUN_ATTEMPT] = {CMD_TOPIC_RUN, 200},
};

#define KNOWN_KIND(k) ((k) >= CMD_CREATE && (k) <= CMD_RUN_ATTEMPT)

const cmd_aggregate *cmd_aggregate_get(int topic)
{
    return topic >= 0 && topic < CMD_TOPICS ? aggregates[topic] : NULL;
}

const cmd_aggregate *cmd_aggregate_of_record(char kind)
{
    for (int t = 0; t < CMD_TOPICS; t++)
        if (aggregates[t]->snap_kind == kind)
            return aggregates[t];
    return NULL;
}

int cmd_kind_topic(cmd_kind kind)
{
    return KNOWN_KIND(kind) ? kinds[kind].topic : CMD_TOPIC_RESOURCE;
}

unsigned cmd_success_status(cmd_kind kind)
{
    return KNOWN_KIND(kind) ? kinds[kind].status : 200;
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
    free(c->hook_body);
    c->hook_body = NULL;
    c->hook_body_len = 0;
    c->name = c->description = c->secret = c->payload_json = c->error = NULL;
    c->steps_env = NULL;
    c->steps_env_len = 0;
}

int cmd_str_set(char **dst, const char *src)
{
    char *c = strdup(src ? src : "");
    if (c == NULL)
        return KQ_ENOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

int cmd_str_set_ev(char **dst, ev_str src)
{
    char *c = strndup(src.ptr != NULL ? src.ptr : "", src.ptr != NULL ? src.len : 0);
    if (c == NULL)
        return KQ_ENOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

/* ------------------------------------------------------------------ build */

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
    return aggregates[cmd_kind_topic(c->kind)]->build(c, d, i, e, scratch, errstr, errlen);
}

/* ------------------------------------------------------------------ apply */

int cmd_aggregate_apply_envelope(cmd_state *st, int topic, const ev_envelope *e, int32_t partition,
                                 int64_t offset, char *errstr, size_t errlen)
{
    char id[EV_ID_MAX + 1], cid[CMD_KEY_MAX + 1];
    ev_aggregate_type agg = ev_event_aggregate_type(e->payload_type);
    const cmd_aggregate *a = cmd_aggregate_get(topic);
    int rc;

    cmd_state_set_topic_offset(st, topic, partition, offset + 1);
    if (e->aggregate_id.ptr == NULL || e->aggregate_id.len == 0 ||
        e->aggregate_id.len > EV_ID_MAX || memchr(e->aggregate_id.ptr, '\0', e->aggregate_id.len))
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "aggregate id absent or out of range");
    if (e->command_id.len > CMD_KEY_MAX ||
        (e->command_id.ptr != NULL && memchr(e->command_id.ptr, '\0', e->command_id.len)))
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "command id out of range");
    if (a == NULL || agg != a->type)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "%s does not belong to topic %d",
                         ev_event_type_name(e->payload_type) ? ev_event_type_name(e->payload_type)
                                                             : "unknown event",
                         topic);
    memcpy(id, e->aggregate_id.ptr, e->aggregate_id.len);
    id[e->aggregate_id.len] = '\0';
    if ((rc = a->apply(st, e, id, partition, offset, errstr, errlen)) != 0)
        return rc;
    st->events++;
    cmd_state_changed(st, topic, id);
    if (e->command_id.ptr != NULL && e->command_id.len > 0) {
        memcpy(cid, e->command_id.ptr, e->command_id.len);
        cid[e->command_id.len] = '\0';
        if (cmd_idem_record(st, cid, e, id, partition, offset) != 0)
            return KQ_ENOMEM;
    }
    /* A few expired keys and finished runs go with every event (cmd_state.h,
     * "Expiry"): the state stays bounded during a long catch-up too. */
    cmd_state_expire(st, CMD_EXPIRE_PER_EVENT);
    return 0;
}

int cmd_aggregate_apply(cmd_state *st, int topic, const void *value, size_t len, int32_t partition,
                        int64_t offset, char *errstr, size_t errlen)
{
    ev_envelope e;
    uint8_t secret[EV_SECRET_BUF], pii[EV_PII_BUF];
    int rc;

    if ((rc = ev_envelope_decode(value, len, &e, errstr, errlen)) != 0 ||
        (rc = ev_secret_open(&e, st->keys, secret, sizeof secret, errstr, errlen)) != 0)
        goto skip;
    if ((rc = ev_pii_open(&e, st->keys, pii, sizeof pii, NULL, errstr, errlen)) == KQ_ENOTFOUND &&
        st->keys != NULL) {
        /* The event still counts (its version, its id: a second create of the id must
         * stay a conflict); only the unreadable name and description are left out, as
         * if erased, which at worst makes the next update of them one event more. */
        char subject[160];
        if (ev_pii_subject(&e, subject, sizeof subject) == 0 &&
            !kq_keyring_erased(st->keys, subject))
            cmd_state_missing_key(st, subject);
        ev_pii_blank(&e);
        rc = 0;
    }
    if (rc != 0)
        goto skip;
    return cmd_aggregate_apply_envelope(st, topic, &e, partition, offset, errstr, errlen);
skip:
    if (rc == KQ_ENOTFOUND && st->keys != NULL) {
        char subject[160];
        /* a data key missing for a subject that was not erased: /ready says so (cmd_writer.c) */
        if (ev_secret_subject(&e, subject, sizeof subject) == 0 &&
            !kq_keyring_erased(st->keys, subject))
            cmd_state_missing_key(st, subject);
    }
    cmd_state_set_topic_offset(st, topic, partition, offset + 1);
    return rc == KQ_ENOMEM ? rc : KQ_ECORRUPT;
}

/* ------------------------------------------------------------------ answers */

int cmd_aggregate_position(const cmd_state *st, int topic, const char *id, int64_t *version,
                           int32_t *partition, int64_t *offset)
{
    const void *v = cmd_state_get(st, topic, id);

    if (v == NULL)
        return KQ_ENOTFOUND;
    aggregates[topic]->position(v, version, partition, offset);
    return 0;
}

const char *cmd_aggregate_answer_secret(const cmd_state *st, const cmd_command *c, const char *id,
                                        int replay)
{
    const cmd_aggregate *a = aggregates[cmd_kind_topic(c->kind)];
    return a->answer_secret != NULL ? a->answer_secret(st, c, id, replay) : NULL;
}
