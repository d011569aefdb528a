/*
 * cmd_state.c — the container of the command-side state: per-type maps,
 * Idempotency-Key records, covered offsets, the delta; see cmd_state.h.
 */
#include "cmd_state.h"
#include "kq_err.h"
#include "kq_time.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

int cmd_state_init(cmd_state *st, int partitions)
{
    int ok = 1;

    memset(st, 0, sizeof *st);
    if (partitions < 1)
        return KQ_EINVAL;
    st->partitions = partitions;
    for (int t = 0; t < CMD_TOPICS; t++) {
        const cmd_aggregate *a = cmd_aggregate_get(t);
        ok &= (st->agg[t] = kq_map_new(a->value_size, a->clear)) != NULL;
    }
    st->idem = kq_map_new(sizeof(cmd_idem), NULL);
    st->next_offset = calloc((size_t)CMD_TOPICS * (size_t)partitions, sizeof *st->next_offset);
    if (!ok || st->idem == NULL || st->next_offset == NULL) {
        cmd_state_free(st);
        return KQ_ENOMEM;
    }
    st->delta.full = 1; /* an empty state: whatever a snapshot holds is not in it */
    st->clock_us = kq_time_now_us;
    return 0;
}

int cmd_state_reinit(cmd_state *st)
{
    int64_t ttl = st->ttl_us;
    int64_t (*clock)(void) = st->clock_us;
    int partitions = st->partitions, track = st->track, rc;

    cmd_state_free(st);
    if ((rc = cmd_state_init(st, partitions)) != 0)
        return rc;
    st->ttl_us = ttl;
    st->clock_us = clock != NULL ? clock : kq_time_now_us;
    st->track = track;
    return 0;
}

/* ------------------------------------------------------------------ expiry */

void cmd_state_set_ttl(cmd_state *st, int64_t ttl_us)
{
    st->ttl_us = ttl_us > 0 ? ttl_us : 0;
}

int64_t cmd_state_now(const cmd_state *st)
{
    return st->clock_us != NULL ? st->clock_us() : kq_time_now_us();
}

int cmd_state_expired(const cmd_state *st, int64_t at_us)
{
    return st->ttl_us > 0 && at_us <= cmd_state_now(st) - st->ttl_us;
}

int cmd_state_expire_push(cmd_state *st, int which, void *val, int64_t at_us)
{
    if (st->ttl_us <= 0)
        return 0;
    return cmd_expiry_push(which == CMD_EXPIRE_RUN ? &st->run_q : &st->idem_q,
                           at_us > INT64_MAX - st->ttl_us ? INT64_MAX : at_us + st->ttl_us, val);
}

/* Remove the entry of value `val` of map m (kind: its snapshot record). */
static void expire_one(cmd_state *st, kq_map *m, char kind, void *val)
{
    size_t kl;
    const char *key = kq_map_key_of(m, val, &kl);

    if (st->track)
        cmd_delta_del(&st->delta, kind, key); /* failure marks the delta lost */
    kq_map_removeb(m, key, kl);
}

size_t cmd_state_expire(cmd_state *st, size_t budget)
{
    const cmd_expiry_ent *h;
    int64_t now;
    size_t done = 0, n;

    if (st->ttl_us <= 0)
        return 0;
    now = cmd_state_now(st);
    for (n = 0; n < budget && (h = cmd_expiry_peek(&st->idem_q)) != NULL && h->due_us <= now; n++) {
        cmd_idem *i = h->val;
        cmd_expiry_pop(&st->idem_q);
        if (cmd_state_expired(st, i->at_us)) {
            expire_one(st, st->idem, 'i', i);
            st->expired_keys++;
            done++;
        } else if (cmd_state_expire_push(st, CMD_EXPIRE_IDEM, i, i->at_us) != 0) {
            /* out of memory: keep the key (the lookup still treats it as expired in time) */
            break;
        }
    }
    for (n = 0; n < budget && (h = cmd_expiry_peek(&st->run_q)) != NULL && h->due_us <= now; n++) {
        void *r = h->val;
        cmd_expiry_pop(&st->run_q);
        expire_one(st, st->agg[CMD_TOPIC_RUN], 'n', r);
        st->expired_runs++;
        done++;
    }
    return done;
}

void cmd_state_free(cmd_state *st)
{
    for (int t = 0; t < CMD_TOPICS; t++)
        kq_map_free(st->agg[t]);
    kq_map_free(st->idem);
    cmd_expiry_free(&st->idem_q);
    cmd_expiry_free(&st->run_q);
    free(st->next_offset);
    cmd_delta_free(&st->delta);
    memset(st, 0, sizeof *st);
}

void *cmd_state_get(const cmd_state *st, int topic, const char *id)
{
    if (topic < 0 || topic >= CMD_TOPICS)
        return NULL;
    return kq_map_get(st->agg[topic], id);
}

void *cmd_state_put(cmd_state *st, int topic, const char *id, int *created)
{
    if (topic < 0 || topic >= CMD_TOPICS)
        return NULL;
    return kq_map_put(st->agg[topic], id, created);
}

size_t cmd_state_count(const cmd_state *st, int topic)
{
    return topic >= 0 && topic < CMD_TOPICS ? kq_map_count(st->agg[topic]) : 0;
}

typedef struct each_ctx {
    int (*fn)(void *arg, const char *id, const void *val);
    void *arg;
} each_ctx;

static int each_one(void *arg, const char *key, size_t keylen, void *val)
{
    each_ctx *c = arg;
    return c->fn(c->arg, key, val);
}

int cmd_state_each(const cmd_state *st, int topic,
                   int (*fn)(void *arg, const char *id, const void *val), void *arg)
{
    each_ctx c = {fn, arg};
    if (topic < 0 || topic >= CMD_TOPICS)
        return 0;
    return kq_map_each(st->agg[topic], each_one, &c);
}

void cmd_state_missing_key(cmd_state *st, const char *subject)
{
    if (st->missing_keys++ == 0)
        snprintf(st->missing_key_subject, sizeof st->missing_key_subject, "%s", subject);
}

void cmd_state_changed(cmd_state *st, int topic, const char *id)
{
    const void *v;

    if (!st->track || (v = cmd_state_get(st, topic, id)) == NULL)
        return;
    cmd_aggregate_get(topic)->snap_put(&st->delta, id, v); /* failure marks it lost */
}

void cmd_state_set_topic_offset(cmd_state *st, int topic, int32_t partition, int64_t next)
{
    int64_t *o;

    if (topic < 0 || topic >= CMD_TOPICS || partition < 0 || partition >= st->partitions)
        return;
    o = &st->next_offset[(size_t)topic * (size_t)st->partitions + (size_t)partition];
    if (next > *o)
        *o = next;
}

void cmd_state_set_offset(cmd_state *st, int32_t partition, int64_t next)
{
    cmd_state_set_topic_offset(st, CMD_TOPIC_RESOURCE, partition, next);
}

/* ------------------------------------------------------------------ delta */

void cmd_state_track(cmd_state *st, int on)
{
    st->track = on != 0;
}

void cmd_state_delta_clear(cmd_state *st)
{
    cmd_delta_reset(&st->delta);
}

void cmd_state_delta_loaded(cmd_state *st)
{
    st->delta.full = 0;
    st->delta.lost = 0;
}

typedef struct full_ctx {
    const cmd_aggregate *a;
    cmd_delta *d;
    const cmd_state *st;
} full_ctx;

static int full_agg(void *arg, const char *key, size_t keylen, void *val)
{
    full_ctx *c = arg;
    if (c->a->topic == CMD_TOPIC_RUN && cmd_run_expired(c->st, val))
        return 0; /* a snapshot does not carry what has expired */
    return c->a->snap_put(c->d, key, val);
}

static int full_idem(void *arg, const char *key, size_t keylen, void *val)
{
    full_ctx *c = arg;
    const cmd_idem *i = val;
    if (cmd_state_expired(c->st, i->at_us))
        return 0;
    return cmd_idem_snap_put(c->d, key, val);
}

int cmd_state_records(const cmd_state *st, cmd_delta *out)
{
    full_ctx c = {NULL, out, st};

    for (int t = 0; t < CMD_TOPICS; t++) {
        c.a = cmd_aggregate_get(t);
        if (kq_map_each(st->agg[t], full_agg, &c) != 0)
            return KQ_ENOMEM;
    }
    return kq_map_each(st->idem, full_idem, &c) != 0 ? KQ_ENOMEM : 0;
}

int cmd_state_delta_full(cmd_state *st)
{
    cmd_delta_reset(&st->delta);
    st->delta.full = 1;
    if (cmd_state_records(st, &st->delta) != 0) {
        st->delta.lost = 1;
        return KQ_ENOMEM;
    }
    return 0;
}

void cmd_state_delta_take(cmd_state *st, cmd_delta *out)
{
    *out = st->delta;
    memset(&st->delta, 0, sizeof st->delta);
}
