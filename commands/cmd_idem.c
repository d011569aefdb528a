/*
 * cmd_idem.c — Idempotency-Key records; see cmd_idem.h.
 */
#include "cmd_idem.h"
#include "cmd_state.h"
#include "kq_err.h"

#include <stdio.h>
#include <string.h>

const cmd_idem *cmd_state_idem(const cmd_state *st, const char *key)
{
    const cmd_idem *i = kq_map_get(st->idem, key);
    return i != NULL && cmd_state_expired(st, i->at_us) ? NULL : i;
}

size_t cmd_state_idem_count(const cmd_state *st)
{
    return kq_map_count(st->idem);
}

typedef struct each_ctx {
    int (*fn)(void *arg, const char *key, const cmd_idem *i);
    void *arg;
} each_ctx;

static int each_one(void *arg, const char *key, size_t keylen, void *val)
{
    each_ctx *c = arg;
    return c->fn(c->arg, key, val);
}

int cmd_state_each_idem(const cmd_state *st,
                        int (*fn)(void *arg, const char *key, const cmd_idem *i), void *arg)
{
    each_ctx c = {fn, arg};
    return kq_map_each(st->idem, each_one, &c);
}

int cmd_state_put_idem(cmd_state *st, const char *key, const cmd_idem *i)
{
    int created;
    cmd_idem *d = kq_map_put(st->idem, key, &created);
    if (d == NULL)
        return KQ_ENOMEM;
    *d = *i;
    if (created && cmd_state_expire_push(st, CMD_EXPIRE_IDEM, d, d->at_us) != 0) {
        kq_map_remove(st->idem, key);
        return KQ_ENOMEM;
    }
    return 0;
}

/* The status a command's success answered, from its first event. */
static unsigned event_status(ev_event_type t)
{
    if (t == EV_RESOURCE_CREATED || t == EV_WORKFLOW_CREATED)
        return 201;
    return t == EV_RUN_STARTED ? 202 : 200;
}

int cmd_idem_record(cmd_state *st, const char *key, const ev_envelope *e, const char *id,
                    int32_t partition, int64_t offset)
{
    cmd_idem *i;
    int created;

    /* Catch-up of an event older than the window: the key has expired, and
     * a restart must not hold more than the window (the state is bounded). */
    if (cmd_state_expired(st, e->occurred_at_us))
        return 0;
    if ((i = kq_map_put(st->idem, key, &created)) == NULL)
        return KQ_ENOMEM;
    if (created && cmd_state_expire_push(st, CMD_EXPIRE_IDEM, i, e->occurred_at_us) != 0) {
        kq_map_remove(st->idem, key);
        return KQ_ENOMEM;
    }
    i->has_hash = e->command_hash.ptr != NULL && e->command_hash.len == CMD_HASH_LEN;
    if (i->has_hash)
        memcpy(i->hash, e->command_hash.ptr, CMD_HASH_LEN);
    i->status = event_status(e->payload_type);
    snprintf(i->id, sizeof i->id, "%s", id);
    i->version = e->version;
    i->partition = partition;
    i->offset = offset;
    i->aggregate = (int32_t)ev_event_aggregate_type(e->payload_type);
    i->at_us = e->occurred_at_us;
    if (st->track)
        cmd_idem_snap_put(&st->delta, key, i); /* failure marks the delta lost */
    return 0;
}

int cmd_idem_snap_put(cmd_delta *d, const char *key, const cmd_idem *i)
{
    cmd_piece p = {i, sizeof *i};
    return cmd_delta_put(d, 'i', key, &p, 1);
}

int cmd_idem_snap_load(cmd_state *st, const char *key, const void *rec, size_t len, char *errstr,
                       size_t errlen)
{
    cmd_idem i;

    if (len != sizeof i)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "key %s", key);
    memcpy(&i, rec, sizeof i);
    i.id[sizeof i.id - 1] = '\0';
    if (cmd_state_expired(st, i.at_us)) /* expired since the snapshot was written */
        return cmd_delta_del(&st->delta, 'i', key) != 0 ? KQ_ENOMEM : 0;
    return cmd_state_put_idem(st, key, &i);
}
