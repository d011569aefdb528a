/*
 * cmd_state.c — the container of the command-side state: per-type maps,
 * Idempotency-Key records, covered offsets, the delta; see cmd_state.h.
 */
#include "cmd_state.h"
#include "kq_err.h"

#include <stdlib.h>
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
    return 0;
}

void cmd_state_free(cmd_state *st)
{
    for (int t = 0; t < CMD_TOPICS; t++)
        kq_map_free(st->agg[t]);
    kq_map_free(st->idem);
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

typedef struct full_ctx {
    const cmd_aggregate *a;
    cmd_delta *d;
} full_ctx;

static int full_agg(void *arg, const char *key, size_t keylen, void *val)
{
    full_ctx *c = arg;
    return c->a->snap_put(c->d, key, val);
}

static int full_idem(void *arg, const char *key, size_t keylen, void *val)
{
    return cmd_idem_snap_put(((full_ctx *)arg)->d, key, val);
}

int cmd_state_records(const cmd_state *st, cmd_delta *out)
{
    full_ctx c = {NULL, out};

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
