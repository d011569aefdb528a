/*
 * cmd_chain.c — the hash chain's heads per topic-partition; see cmd_chain.h.
 */
#include "cmd_chain.h"
#include "ev_chain.h"
#include "kq_err.h"

#include <stdlib.h>
#include <string.h>

static size_t heads_size(const cmd_chain *c)
{
    return (size_t)CMD_TOPICS * (size_t)c->partitions * sizeof(cmd_head);
}

int cmd_chain_init(cmd_chain *c, int partitions)
{
    memset(c, 0, sizeof *c);
    c->partitions = partitions;
    c->heads = calloc(1, heads_size(c));
    c->saved = calloc(1, heads_size(c));
    if (c->heads == NULL || c->saved == NULL) {
        cmd_chain_free(c);
        return KQ_ENOMEM;
    }
    return 0;
}

void cmd_chain_free(cmd_chain *c)
{
    free(c->heads);
    free(c->saved);
    c->heads = c->saved = NULL;
}

cmd_head *cmd_chain_head(cmd_chain *c, int topic, int32_t partition)
{
    return &c->heads[(size_t)topic * (size_t)c->partitions + (size_t)partition];
}

_Static_assert(CMD_CHAIN_HASH_LEN == EV_HASH_LEN, "one hash length for writer and checker");

int cmd_chain_set_head(cmd_head *h, const void *value, size_t len)
{
    /* the record-hash rule is the checker's (events/ev_chain.c): one copy */
    if (ev_chain_sha256(value, len, h->hash) != 0) {
        h->set = 0;
        return KQ_EIO;
    }
    h->set = 1;
    return 0;
}

void cmd_chain_save(cmd_chain *c)
{
    memcpy(c->saved, c->heads, heads_size(c));
}

void cmd_chain_restore(cmd_chain *c)
{
    memcpy(c->heads, c->saved, heads_size(c));
}

void cmd_chain_reset(cmd_chain *c)
{
    memset(c->heads, 0, heads_size(c));
}
