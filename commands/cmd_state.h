/*
 * cmd_state.h — the command side's view of the log: the container of every
 * aggregate's state, and the batch overlay decisions are made against.
 *
 * What it is for
 *   A command is accepted or refused by comparing it with the current state
 *   of its aggregate. cmd_state holds, in memory, per aggregate type (topic
 *   index, cmd_aggregate.h) a map id -> the type's value (cmd_resource,
 *   cmd_workflow, cmd_run: cmd_resource.h, cmd_workflow.h, cmd_run.h), the
 *   answers of Idempotency-Keys (cmd_idem.h), per topic and partition the
 *   next offset the state covers, the Kafka cluster id those offsets refer
 *   to, and the delta of changes since the last snapshot (cmd_delta.h).
 *   Everything in it can be rebuilt from the log: cmd_aggregate_apply()
 *   applies one record, whether read back from Kafka at start or just
 *   committed by the writer. This module is only the container: what a value
 *   means, how it changes and how it is decided on is its aggregate type's
 *   (reached through cmd_aggregate.h's table).
 *
 * Group commit: the batch overlay (cmd_batch.h) is what decisions are made
 *   against; cmd_batch_decide() dispatches to the type's decide hook.
 *
 * Incremental snapshots: with tracking on (cmd_state_track), every change
 *   appends the changed entry's snapshot record to the state's delta, so the
 *   delta holds exactly what changed since it was last taken. The writer
 *   hands it to the snapshot thread (cmd_snapshotter_submit) with a copy of
 *   next_offset: every event below those offsets is either in an earlier
 *   delta or in this one. Cost per event: one append of about its own size;
 *   taking the delta moves a pointer.
 *
 * Expiry (KCQRS_IDEMPOTENCY_TTL, issue #19): with a ttl set
 *   (cmd_state_set_ttl), an Idempotency-Key's answer is kept until its
 *   event's time (occurred_at_us, cmd_idem.at_us) + ttl, and a finished run
 *   (its end event seen, or a run without steps) until the time of the event
 *   that finished it + ttl; then it is gone from memory and, through a
 *   deletion record of the delta, from the snapshot. Times are the events'
 *   own, compared with the wall clock (clock_us), so a restart rebuilds the
 *   same bounded state: catch-up does not record a key or keep a run that has
 *   expired already, and loading a snapshot skips (and deletes) those that
 *   expired since it was written. An expired key answers as a new request
 *   (cmd_state_idem returns NULL at once, whether or not it was pruned yet);
 *   an attempt on a pruned run is 404 like an unknown run.
 *   Pruning is incremental: every entry is queued once (cmd_expiry.h) in the
 *   order it was made, and cmd_state_expire pops at most `budget` due ones:
 *   cmd_aggregate_apply calls it with a small budget after every event, the
 *   writer with a larger one when idle. There is no pass over the whole
 *   state.
 *
 * Ownership: cmd_state owns every value and string it holds.
 * Threads: none of this is thread-safe; the writer thread owns the state.
 */
#ifndef CMD_STATE_H
#define CMD_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "cmd_aggregate.h"
#include "cmd_batch.h"
#include "cmd_delta.h"
#include "cmd_expiry.h"
#include "cmd_idem.h"
#include "cmd_resource.h"
#include "cmd_run.h"
#include "cmd_workflow.h"
#include "ev_codec.h"
#include "kq_map.h"

struct cmd_state {
    kq_map *agg[CMD_TOPICS]; /* per topic index: id -> the type's value */
    kq_map *idem;            /* Idempotency-Key -> cmd_idem */
    int partitions;
    int64_t *next_offset; /* [CMD_TOPICS * partitions]: topic t, partition p at
                             t * partitions + p (the resource topic first); 0 = from
                             the beginning */
    uint64_t events;      /* events applied since creation or load */
    char cluster_id[64];  /* Kafka cluster the offsets refer to; "" = not known yet */
    int track;            /* 1: record changes in `delta` */
    cmd_delta delta;
    int64_t ttl_us;            /* keys and finished runs are kept this long; 0 = for ever */
    int64_t (*clock_us)(void); /* the wall clock expiry compares with (kq_time_now_us) */
    struct kq_keyring *keys;   /* borrowed: opens sealed secrets when applying; NULL = none */
    cmd_expiry idem_q;         /* every key, in the order it was recorded */
    cmd_expiry run_q;          /* every finished run, in the order it finished */
    uint64_t expired_keys;     /* keys and runs pruned since init */
    uint64_t expired_runs;
    uint64_t missing_keys;         /* sealed values not opened: no data key, subject not erased */
    char missing_key_subject[160]; /* the first such subject */
};

/* Expiry queue of an entry (cmd_state_expire_push). */
#define CMD_EXPIRE_IDEM 0
#define CMD_EXPIRE_RUN 1

/* Pruning budgets: after each applied event, and per idle turn of the writer. */
#define CMD_EXPIRE_PER_EVENT 4
#define CMD_EXPIRE_IDLE 4096

/* ---- state ---- */

/* Empty state for `partitions` partitions (its delta is empty and marked
 * full). Returns 0, KQ_EINVAL or KQ_ENOMEM. */
int cmd_state_init(cmd_state *st, int partitions);
void cmd_state_free(cmd_state *st);

/* Free and initialise again for the same partitions, keeping the expiry
 * settings (ttl, clock) and tracking. 0 or KQ_ENOMEM. */
int cmd_state_reinit(cmd_state *st);

/* ---- expiry ---- */

/* Keep keys and finished runs `ttl_us` after their event's time (0: for
 * ever, the default); set before loading or applying anything. */
void cmd_state_set_ttl(cmd_state *st, int64_t ttl_us);

/* The wall clock in µs (st->clock_us, default kq_time_now_us). */
int64_t cmd_state_now(const cmd_state *st);

/* 1 when an entry of event time `at_us` has expired (a ttl is set and
 * at_us + ttl <= now). */
int cmd_state_expired(const cmd_state *st, int64_t at_us);

/* Queue value `val` (of the idempotency map: CMD_EXPIRE_IDEM, or of the run
 * map: CMD_EXPIRE_RUN) to be looked at when `at_us` + ttl is due. No-op
 * without a ttl. 0 or KQ_ENOMEM. */
int cmd_state_expire_push(cmd_state *st, int which, void *val, int64_t at_us);

/* Remove at most `budget` expired entries from each queue's head (and their
 * snapshot records, by deletion records in the delta when tracking). A key
 * recorded again since it was queued goes back to the queue's tail.
 * Returns the number removed. */
size_t cmd_state_expire(cmd_state *st, size_t budget);

/* The value of aggregate `id` of topic index `topic`, or NULL. Owned by the
 * state; valid until the state changes. */
void *cmd_state_get(const cmd_state *st, int topic, const char *id);

/* The value of `id`, created zeroed when missing (*created = 1). NULL on
 * ENOMEM or a bad topic. */
void *cmd_state_put(cmd_state *st, int topic, const char *id, int *created);

/* Entries of a topic's aggregates. */
size_t cmd_state_count(const cmd_state *st, int topic);

/* Call fn for every aggregate of a topic; stops at (and returns) a non-zero return. */
int cmd_state_each(const cmd_state *st, int topic,
                   int (*fn)(void *arg, const char *id, const void *val), void *arg);

/* Record the current value of aggregate `id` in the delta (when tracking).
 * A failure marks the delta lost. */
void cmd_state_changed(cmd_state *st, int topic, const char *id);

/* A sealed value of `subject` could not be opened: its data key is missing and
 * the subject was not erased. Counted; the first subject is kept. */
void cmd_state_missing_key(cmd_state *st, const char *subject);

/* Set the next offset of a partition that a read reached (it only moves
 * forward); cmd_state_set_offset is the resource topic's. */
void cmd_state_set_topic_offset(cmd_state *st, int topic, int32_t partition, int64_t next);
void cmd_state_set_offset(cmd_state *st, int32_t partition, int64_t next);

/* ---- delta (incremental snapshots) ---- */

/* Turn change tracking on or off (off by default). */
void cmd_state_track(cmd_state *st, int on);

/* Forget the delta (e.g. right after loading the state from a snapshot:
 * nothing is new). full and lost are cleared. */
void cmd_state_delta_clear(cmd_state *st);

/* Right after loading the state from a snapshot: nothing is new but the
 * deletions of what expired since it was written, which the delta keeps;
 * full and lost are cleared. */
void cmd_state_delta_loaded(cmd_state *st);

/* Replace the delta with the whole state, marked full (after a failed
 * snapshot write, or a lost record). Takes time proportional to the state.
 * Returns 0 or KQ_ENOMEM (then the delta is marked lost). */
int cmd_state_delta_full(cmd_state *st);

/* The whole state as records into `out` (appended; the same records
 * cmd_state_delta_full makes). 0 or KQ_ENOMEM. */
int cmd_state_records(const cmd_state *st, cmd_delta *out);

/* Move the delta into *out (which the caller frees with cmd_delta_free) and
 * start an empty one. */
void cmd_state_delta_take(cmd_state *st, cmd_delta *out);

#endif
