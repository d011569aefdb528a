/*
 * cmd_batch.c — the batch overlay and cmd_batch_decide: the Idempotency-Key
 * checks common to every command, then the aggregate type's decide hook; see
 * cmd_batch.h.
 */
#include "cmd_batch.h"
#include "cmd_state.h"
#include "kq_err.h"

#include <stdlib.h>
#include <string.h>

typedef struct batch_key {
    size_t index; /* the command of the batch that holds the key */
    uint8_t hash[CMD_HASH_LEN];
} batch_key;

int cmd_batch_init(cmd_batch *b)
{
    int ok = 1;

    memset(b, 0, sizeof *b);
    for (int t = 0; t < CMD_TOPICS; t++) {
        const cmd_aggregate *a = cmd_aggregate_get(t);
        ok &= (b->agg[t] = kq_map_new(a->value_size, a->clear)) != NULL;
    }
    b->keys = kq_map_new(sizeof(batch_key), NULL);
    if (!ok || b->keys == NULL) {
        cmd_batch_free(b);
        return KQ_ENOMEM;
    }
    return 0;
}

void cmd_batch_reset(cmd_batch *b)
{
    for (int t = 0; t < CMD_TOPICS; t++)
        kq_map_clear(b->agg[t]);
    kq_map_clear(b->keys);
}

void cmd_batch_free(cmd_batch *b)
{
    for (int t = 0; t < CMD_TOPICS; t++)
        kq_map_free(b->agg[t]);
    kq_map_free(b->keys);
    memset(b, 0, sizeof *b);
}

const void *cmd_batch_view(const cmd_state *st, const cmd_batch *b, int topic, const char *id,
                           int *pending)
{
    const void *p;

    if (topic < 0 || topic >= CMD_TOPICS)
        return NULL;
    p = kq_map_get(b->agg[topic], id);
    if (pending != NULL)
        *pending = p != NULL;
    return p != NULL ? p : cmd_state_get(st, topic, id);
}

void *cmd_batch_take(const cmd_state *st, cmd_batch *b, int topic, const char *id, int *fresh)
{
    const cmd_aggregate *a = cmd_aggregate_get(topic);
    const void *cur;
    void *p;
    int created;

    if (a == NULL || (p = kq_map_put(b->agg[topic], id, &created)) == NULL)
        return NULL;
    if (fresh != NULL)
        *fresh = 0;
    if (!created)
        return p;
    if ((cur = cmd_state_get(st, topic, id)) == NULL) {
        if (fresh != NULL)
            *fresh = 1;
        return p;
    }
    if (a->copy(p, cur) != 0) {
        kq_map_remove(b->agg[topic], id);
        return NULL;
    }
    return p;
}

int cmd_batch_decide(const cmd_state *st, cmd_batch *b, const cmd_command *c, size_t index,
                     cmd_decision *d)
{
    const cmd_aggregate *a = cmd_aggregate_get(cmd_kind_topic(c->kind));
    int rc;

    memset(d, 0, sizeof *d);
    if (c->idem_key[0] != '\0') {
        const batch_key *held = kq_map_get(b->keys, c->idem_key);
        const cmd_idem *i = cmd_state_idem(st, c->idem_key);
        if (held != NULL) {
            d->pending = 1;
            if (memcmp(held->hash, c->hash, CMD_HASH_LEN) != 0) {
                cmd_decision_refuse(d, 422, "idempotency_key_reused", 0,
                                    "the Idempotency-Key was used with another request");
                return 0;
            }
            d->kind = CMD_D_FOLLOW;
            d->follow = held->index;
            return 0;
        }
        if (i != NULL) {
            if (i->has_hash && memcmp(i->hash, c->hash, CMD_HASH_LEN) != 0) {
                cmd_decision_refuse(d, 422, "idempotency_key_reused", 0,
                                    "the Idempotency-Key was used with another request");
                return 0;
            }
            d->kind = CMD_D_REPLAY;
            d->idem = *i;
            return 0;
        }
    }
    if (c->kind < CMD_CREATE || c->kind > CMD_RUN_ATTEMPT) {
        cmd_decision_refuse(d, 400, "unsupported", 0, "command kind %d is not handled",
                            (int)c->kind);
        return 0;
    }
    if ((rc = a->decide(st, b, c, d)) != 0) {
        cmd_decision_clear(d);
        return rc;
    }
    if (d->kind == CMD_D_APPEND && c->idem_key[0] != '\0') {
        batch_key *held = kq_map_put(b->keys, c->idem_key, NULL);
        if (held == NULL) {
            cmd_decision_clear(d);
            return KQ_ENOMEM;
        }
        held->index = index;
        memcpy(held->hash, c->hash, CMD_HASH_LEN);
    }
    return 0;
}
