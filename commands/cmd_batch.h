/*
 * cmd_batch.h — the batch overlay of group commit, and the decision of a
 * command against the state plus the batch.
 *
 * What it is for
 *   A cmd_batch is the open batch of one transaction. cmd_batch_decide()
 *   judges a command against the committed state plus the batch's pending
 *   changes (so two updates of one resource in one batch get versions n+1 and
 *   n+2, a second create of one id gets 409, a second use of one
 *   Idempotency-Key follows the first). The Idempotency-Key checks are made
 *   here, for every type alike; the rest is the type's decide hook, which
 *   reads the current value with cmd_batch_view() and records its pending
 *   copy with cmd_batch_take(). Nothing in cmd_state changes while deciding.
 *   When the transaction commits, the writer applies the committed records
 *   (cmd_aggregate_apply); when it fails, cmd_batch_reset() forgets the
 *   overlay and the state is as before.
 *
 * Common decisions (DESIGN.md sections 5 and 8): an Idempotency-Key seen
 *   before with the same command hash -> the original answer, no event (with
 *   another hash -> 422); one held by an earlier command of the batch ->
 *   FOLLOW it (or 422). Events whose envelope has no command_hash (written
 *   before it existed) answer any retry of their key with the original
 *   answer. A refused command (400..422) appends nothing and is not recorded
 *   under its Idempotency-Key: a retry is judged afresh. Keys are kept for
 *   KCQRS_IDEMPOTENCY_TTL after their event's time (cmd_state.h, "Expiry");
 *   an expired key answers as a new request.
 *
 * Ownership: the batch owns its pending copies (the types' values) and keys.
 * Threads: the writer thread, like the state.
 */
#ifndef CMD_BATCH_H
#define CMD_BATCH_H

#include <stddef.h>

#include "cmd_aggregate.h"
#include "kq_map.h"

struct cmd_batch {
    kq_map *agg[CMD_TOPICS]; /* per topic index: id -> pending copy of the value */
    kq_map *keys;            /* Idempotency-Key -> the command of the batch holding it */
};

int cmd_batch_init(cmd_batch *b);
/* Forget every pending change (after a commit has been applied, or a failure). */
void cmd_batch_reset(cmd_batch *b);
void cmd_batch_free(cmd_batch *b);

/*
 * Decide command `c`, the `index`-th of batch `b`, against `st` plus the
 * batch. An APPEND is recorded in the batch (later commands see it). Returns
 * 0 or KQ_ENOMEM (then nothing was recorded and d owns nothing).
 */
int cmd_batch_decide(const cmd_state *st, cmd_batch *b, const cmd_command *c, size_t index,
                     cmd_decision *d);

/* For decide hooks: the current value of aggregate `id` (the batch's pending
 * copy, else the committed one, else NULL); *pending (may be NULL) = 1 when
 * it is the batch's. */
const void *cmd_batch_view(const cmd_state *st, const cmd_batch *b, int topic, const char *id,
                           int *pending);

/* For decide hooks: the batch's pending copy of aggregate `id`, made now as
 * a deep copy of the committed value (or zeroed when there is none; then
 * *fresh = 1). NULL on ENOMEM. */
void *cmd_batch_take(const cmd_state *st, cmd_batch *b, int topic, const char *id, int *fresh);

#endif
