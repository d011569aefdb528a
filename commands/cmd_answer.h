/*
 * cmd_answer.h — the writer's answers to the items of a batch.
 *
 * What it is for
 *   Every item the writer takes is answered exactly once through its `done`
 *   callback (which frees it). After a batch's transaction committed (or when
 *   nothing was appended), cmd_answer_batch answers each item from its
 *   decision: an APPEND with its version and the consistency token of its last
 *   event; a FOLLOW (a retry of an Idempotency-Key whose original is in the
 *   same batch) as its lead; a REPLAY with the original answer; a NOOP with the
 *   aggregate's current version and position; a refusal with its status and
 *   code. When the transaction failed, every item whose answer depended on it
 *   gets 503 + Retry-After. A fenced writer answers 503 not_writer.
 *
 * Ownership: the answer's strings live only during the callback. The items
 *   are freed by their callbacks.
 * Threads: the writer thread.
 */
#ifndef CMD_ANSWER_H
#define CMD_ANSWER_H

#include <stddef.h>

#include "cmd_queue.h"

/* 503 for an item the writer cannot serve now: not_writer (Retry-After 5)
 * when fenced, else unavailable with `msg` (Retry-After 1). */
void cmd_answer_unavailable(cmd_item *it, int fenced, const char *msg);

/* Answer items[0..n) (see above); `topics` name the token's topic by topic
 * index; `st` is the state after the batch was applied; `failed`: the
 * transaction failed, and `fail_code` says why in the 503's error code
 * (kafka_unavailable, not_enough_replicas; NULL: unavailable). */
void cmd_answer_batch(const char *const *topics, const cmd_state *st, cmd_item **items, size_t n,
                      int failed, const char *fail_code, int fenced);

#endif
