/*
 * cmd_chain.h — the hash chain's heads the writer keeps (issue #5).
 *
 * What it is for
 *   Every envelope the writer produces carries prev_hash: the SHA-256 of the
 *   value bytes of the previous committed record of its topic-partition (none
 *   on a partition's first event). This module keeps the head of each
 *   (topic, partition) of the CMD_TOPICS event topics: the writer chains a new
 *   record on its head and makes the record's hash the head
 *   (cmd_chain_set_head); catch-up sets the head to the hash of every record
 *   it reads; a failed transaction restores the heads it began with
 *   (cmd_chain_save before it, cmd_chain_restore on failure); a state read
 *   again from offset 0 starts from no heads (cmd_chain_reset). The snapshot
 *   stores `heads` beside the offsets they match (cmd_snapshot.h). The check
 *   is events/ev_chain.h (kcqrs-audit verify-chain).
 *
 * What it owns: both head arrays (CMD_TOPICS * partitions cmd_head each).
 * Threads: the writer thread only.
 */
#ifndef CMD_CHAIN_H
#define CMD_CHAIN_H

#include <stddef.h>
#include <stdint.h>

#include "cmd_snapshot.h"

typedef struct cmd_chain {
    int partitions;
    cmd_head *heads; /* [CMD_TOPICS * partitions], topic t at t * partitions: the committed
                        log plus the open transaction's records */
    cmd_head *saved; /* the heads when the open transaction began */
} cmd_chain;

/* No heads (every partition empty). KQ_ENOMEM. */
int cmd_chain_init(cmd_chain *c, int partitions);
void cmd_chain_free(cmd_chain *c);

/* The head of (topic index, partition); both must be in range. Owned by c. */
cmd_head *cmd_chain_head(cmd_chain *c, int topic, int32_t partition);

/* head = SHA-256 of a record value exactly as stored (NULL, a tombstone: of
 * no bytes). KQ_EIO (and the head unset) if hashing fails. */
int cmd_chain_set_head(cmd_head *h, const void *value, size_t len);

void cmd_chain_save(cmd_chain *c);    /* saved = heads */
void cmd_chain_restore(cmd_chain *c); /* heads = saved */
void cmd_chain_reset(cmd_chain *c);   /* no heads (the log is read again from offset 0) */

#endif
