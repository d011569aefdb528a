/*
 * cmd_writer.h — the single writer: group commit of commands into Kafka transactions.
 *
 * What it is for
 *   Every accepted command becomes an event appended by exactly one thread,
 *   the writer, which owns the transactional producers, the command-side
 *   state (cmd_state) and hands its changes to the snapshot thread
 *   (cmd_snapshot.h). HTTP threads parse and validate requests, then
 *   hand a cmd_item to cmd_writer_submit(); the writer answers it later
 *   through the item's `done` callback, exactly once.
 *
 * Producers taken in turn
 *   The writer has CMD_WRITER_PRODUCERS transactional producers and runs its
 *   transactions one after another, each on the next producer; why, and the
 *   deployment contract on their ids, is in cmd_producer.h.
 *
 * Modules (one concern each)
 *   cmd_queue.h     items, answers' shape, the queue and the ready gate
 *   cmd_producer.h  the transactional producers, rotation, warm-up
 *   cmd_catchup.h   reading the log to its end; the one apply path
 *   cmd_chain.h     the hash chain's heads per topic-partition
 *   cmd_aggregate.h the events of a decision (build) and their apply (C1's table)
 *   cmd_answer.h    answering the items of a batch
 *   cmd_wmetrics.h  the writer's Prometheus metrics
 *   cmd_writer.c    the thread: batch -> decide -> produce -> commit -> apply -> answer
 *
 * Life of the writer thread
 *   1. producers: create them and call init_transactions on each, which
 *      fences any older instance with the same transactional ids and aborts
 *      (or completes) the transactions it left open;
 *   2. catch up: read every partition of the three event topics
 *      (<prefix>.resource.events, .workflow.events, .run.events) to the end
 *      with one read_committed consumer, from the offsets the state (loaded
 *      from the snapshot, or empty) covers, applying each event;
 *   3. ready: take a batch (up to KCQRS_BATCH_MAX commands, waiting at most
 *      KCQRS_BATCH_LINGER_US after the first), decide each command against
 *      the state plus the batch overlay, begin a transaction, produce the
 *      records of every APPEND decision (1..CMD_MAX_EVENTS events of one
 *      aggregate, consecutive versions, to its aggregate's topic: explicit
 *      partition kq_kafka_partition_for(id), key "<id>/<version:020>",
 *      event_type header, the encoded Envelope), commit,
 *      read the offsets from the delivery reports, apply the events to the
 *      state and answer everyone. A failed transaction answers 503 +
 *      Retry-After to every command whose answer depended on it, and the state
 *      stays as it was;
 *   4. after an unknown outcome (commit timed out) or a fatal producer
 *      error, the producers are destroyed and the writer goes back to 1 and 2:
 *      the new producers' init_transactions settles the old transaction and
 *      the re-read of the log tells whether it committed (events already in
 *      the state are skipped by version);
 *   5. fenced (KQ_EFENCED): the writer stops for good; every command and
 *      /ready answer 503 "not_writer", and the log says why.
 *   While not ready, commands are refused at once (503 + Retry-After). A
 *   command that waited in the queue longer than KCQRS_KAFKA_TIMEOUT_MS is
 *   answered 503 without being tried, so no client waits much longer than
 *   twice that bound.
 *
 * Hash chain (issue #5): every envelope's prev_hash is the SHA-256 of the
 *   value bytes of the previous committed record of its topic-partition (none
 *   on a partition's first event); the heads and their rules are cmd_chain.h.
 *   produce_item chains each record on the head and makes its own hash the
 *   head (records of one transaction chain in produce order); a failed
 *   transaction restores the heads it began with; catch-up sets the head to
 *   the hash of every record it reads; the snapshot stores the heads with the
 *   offsets they match (cmd_snapshot.h).
 *
 * Snapshots: after KCQRS_SNAPSHOT_EVERY new events, after catch-up and at a
 *   clean stop the writer hands the state's changes since the last snapshot
 *   to the snapshot thread (cmd_snapshotter_submit: a pointer move and a copy
 *   of the offsets and chain heads; the LMDB write happens there). At a clean stop it waits
 *   for the write.
 *
 * Threads: cmd_writer_submit, cmd_writer_ready and cmd_writer_metrics may be
 *   called from any thread; new/start/stop/free from one controlling thread.
 */
#ifndef CMD_WRITER_H
#define CMD_WRITER_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "cmd_producer.h"
#include "cmd_queue.h"
#include "cmd_state.h"
#include "kq_config.h"

typedef struct cmd_writer cmd_writer;

typedef struct cmd_writer_options {
    const kq_config *cfg;         /* borrowed; must outlive the writer */
    const char *snapshot_dir;     /* LMDB directory of the snapshot; NULL = none */
    size_t snapshot_map_size;     /* LMDB map size in bytes; 0 = 1 GiB */
    const char *transactional_id; /* of producer 0 (NULL = "<prefix>.commands"); producer k > 0
                                     uses "<transactional_id>.<k>" */
    int skip_topic_setup;         /* 1: do not create/check topics (librdkafka's mock cluster
                                     has no CreateTopics; tests only) */
    struct kq_keyring *keys;      /* borrowed; the subjects' data keys (kq_keyring.h): secrets
                                     are sealed into events and opened when applied; NULL =
                                     written plain (tests only) */
} cmd_writer_options;

/*
 * Create the writer: load the snapshot (a missing, unreadable or mismatching
 * one is logged and ignored: the log is read from the start). Does not touch
 * Kafka. On success *out is owned by the caller (cmd_writer_free).
 */
int cmd_writer_new(const cmd_writer_options *opts, cmd_writer **out, char *errstr, size_t errlen);

/* Start the writer thread (which connects, catches up, then serves). */
int cmd_writer_start(cmd_writer *w, char *errstr, size_t errlen);

/*
 * Queue a command. Returns 0 when queued (the writer owns `it` and will call
 * it->done exactly once), or a negative code with *refused filled (503 and
 * Retry-After, or not_writer) when the writer cannot take it now; the caller
 * then still owns `it` and answers itself.
 */
int cmd_writer_submit(cmd_writer *w, cmd_item *it, cmd_result *refused);

/*
 * Queue n commands (1..cmd_writer_batch_max) as one group (cmd_queue.h): all
 * or none, decided in this order and produced in one transaction; each
 * item's done is called once. Return and ownership as cmd_writer_submit,
 * for all n items.
 */
int cmd_writer_submit_group(cmd_writer *w, cmd_item **items, size_t n, cmd_result *refused);

/* The name of event topic t (cmd_kind_topic), owned by the writer. */
const char *cmd_writer_topic(const cmd_writer *w, int t);

/* Most commands in one transaction (KCQRS_BATCH_MAX). */
size_t cmd_writer_batch_max(const cmd_writer *w);

/* 1 when commands are accepted; else 0 and the reason in why. */
int cmd_writer_ready(cmd_writer *w, char *why, size_t whylen);

/* 1 when fenced by another instance (for good). */
int cmd_writer_fenced(cmd_writer *w);

/* Append the writer's Prometheus metrics to out. */
void cmd_writer_metrics(cmd_writer *w, FILE *out);

/* The state's counts (for tests; call only while the writer thread is stopped
 * or idle). */
const cmd_state *cmd_writer_state(const cmd_writer *w);

/*
 * Clean stop: refuse new commands, let the writer finish what is queued,
 * snapshot the state, join the thread. Idempotent.
 */
void cmd_writer_stop(cmd_writer *w);

/* Stop (if running) and free. NULL is a no-op. */
void cmd_writer_free(cmd_writer *w);

#endif
