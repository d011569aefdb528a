/*
 * cmd_snapshot.h — the command side's state in LMDB, so restarts do not re-read the whole log.
 *
 * What it is for
 *   cmd_snapshot_save() writes the whole cmd_state (resources, workflows,
 *   runs, idempotency keys, and the next offset of every partition of the
 *   three topics the state covers) into an
 *   LMDB environment in one write transaction: the snapshot is either the old
 *   one or the new one, never a mix. At start cmd_snapshot_load() fills an
 *   empty state from it; the writer then reads the log from the stored
 *   offsets (cmd_writer.c). The log stays the source of truth: deleting the
 *   directory only makes the next start slower.
 *
 * Layout (one unnamed database; values in host byte order: a snapshot is
 * local to its machine)
 *   "m"        magic "kcqrs.commands.v5", the resource topic's name (topics[0],
 *              which names the deployment), the Kafka cluster id, partition
 *              count, events applied
 *   "o"        int64 next offset per topic and partition: CMD_TOPICS *
 *              partitions, topic index t = ev_aggregate_type - 1 (resource,
 *              workflow, run) at t * partitions + p
 *   "h/<topic>" for each of the three topics, the hash chain's head per
 *              partition (cmd_head: set flag + SHA-256 of the last record
 *              value read or written below the stored offset; cmd_writer.h
 *              "Hash chain"), written in the same LMDB transaction as "o"
 *   "r/<id>"   cmd_snap_res (version, offset, partition, status, deleted,
 *              lengths) + name + description
 *   "w/<id>"   cmd_snap_wf + name + webhook secret (sealed: cmd_workflow.h)
 *              + canonical steps envelope
 *   "n/<id>"   cmd_run (fixed size; flags, 0 before the run fold of
 *              events/ev_run.h, hold the fold's flags; ended_at_us the time of
 *              the event that finished it)
 *   "i/<key>"  the cmd_idem record of an Idempotency-Key (with its event time)
 *
 * Expired keys and finished runs (cmd_state.h, "Expiry") leave the snapshot
 * by deletion records of the delta; load skips any that expired since it was
 * written (and deletes them with the next write).
 *
 * Every record is made by one function, the put hook of its type
 * (cmd_aggregate.h; 'i': cmd_idem_snap_put) into a cmd_delta
 * (cmd_delta.h), and read back by the type's load hook: cmd_snapshot_save
 * writes the records of the whole state (cmd_state_records) with the very
 * transaction the snapshot thread writes a full delta with.
 *
 * A snapshot of another topic or partition count is refused (KQ_ECORRUPT),
 * and so is one of an older format ("v2" without the heads, "v3" without
 * workflows, runs and the other topics' offsets, "v4" without the event
 * times of keys and finished runs): the writer treats them as
 * no snapshot and reads the log from the start, which rebuilds everything;
 * one of another cluster, or with offsets past the end of the log (the topic
 * was recreated), is discarded by the writer when it first reads the log;
 * a missing one gives KQ_ENOTFOUND. A map too small for the state gives
 * KQ_ELMDB ("map full") and leaves the previous snapshot in place.
 *
 * Threads: cmd_snapshot_save/load are called by one thread at a time.
 */
#ifndef CMD_SNAPSHOT_H
#define CMD_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "cmd_state.h"

/* SHA-256 length of a chain hash. */
#define CMD_CHAIN_HASH_LEN 32

/*
 * The head of one partition's hash chain: the SHA-256 of the value of the
 * last record of that topic-partition (set = 1), or no record yet (set = 0:
 * the next event carries no prev_hash). Stored as raw bytes (33 each).
 */
typedef struct cmd_head {
    uint8_t set;
    uint8_t hash[CMD_CHAIN_HASH_LEN];
} cmd_head;

/* Save the whole `st` and the chain heads of the CMD_TOPICS `topics` (names
 * in topic index order; `heads`: CMD_TOPICS * st->partitions entries, topic t
 * at t * partitions, borrowed; NULL = no partition has a head) into the LMDB
 * environment in directory `dir` (created if missing) with map size
 * `map_size` bytes. */
int cmd_snapshot_save(const char *dir, size_t map_size, const cmd_state *st, const cmd_head *heads,
                      const char *const *topics, char *errstr, size_t errlen);

/* Load into `st`, which must be freshly initialised with the expected
 * partition count, and into `heads` (CMD_TOPICS * st->partitions entries,
 * owned by the caller). On failure `st` and `heads` may hold part of the
 * snapshot: free the state, forget the heads. */
int cmd_snapshot_load(const char *dir, size_t map_size, cmd_state *st, cmd_head *heads,
                      const char *const *topics, char *errstr, size_t errlen);

/*
 * The snapshot thread: incremental snapshots off the writer's path.
 *
 * cmd_snapshotter_submit() takes the state's delta (cmd_state.h: the records
 * changed since the last hand-over; the state must have tracking on) with a
 * copy of its offsets, chain heads, events count and cluster id, and returns
 * at once; the thread writes the records, the meta record, the offsets and
 * the heads in one LMDB write transaction. So a snapshot on disk is always one whose offsets cover
 * exactly the events whose changes it holds: hand-overs are written in order,
 * a delta that waits while another is written is merged behind it, and a
 * full delta (fresh or discarded state) empties the database first.
 *
 * A failed write (map full, I/O) leaves the previous snapshot as it was and
 * marks the snapshotter failed: later incremental deltas would miss the
 * failed records, so they are dropped, and the next submit rebuilds the whole
 * state as one full delta (cmd_state_delta_full; a pause of the writer
 * proportional to the state, only after an error).
 *
 * The thread runs at nice 19 with SCHED_BATCH, so its writes yield to the
 * writer and HTTP threads on a busy core.
 *
 * Threads: submit/flush/stats from the state's owner (the writer thread);
 * new/free from the controlling thread.
 */
typedef struct cmd_snapshotter cmd_snapshotter;

typedef struct cmd_snapshot_stats {
    uint64_t written, failures, records;
    double last_s, max_s; /* duration of the last and the longest write */
} cmd_snapshot_stats;

int cmd_snapshotter_new(const char *dir, size_t map_size, const char *const *topics,
                        cmd_snapshotter **out, char *errstr, size_t errlen);

/* Hand over st's delta (see above) with a copy of `heads` (CMD_TOPICS *
 * st->partitions entries, the heads that match st's offsets; NULL = none set). *was_full
 * (may be NULL) tells whether it was a full one. Returns 0; KQ_ENOMEM or
 * KQ_EIO when nothing was handed over (the next call hands over the whole
 * state). */
int cmd_snapshotter_submit(cmd_snapshotter *s, cmd_state *st, const cmd_head *heads, int *was_full);

/* Wait until every handed-over delta is written. 0, or KQ_ELMDB with the
 * last failure when the snapshot on disk is behind the state. */
int cmd_snapshotter_flush(cmd_snapshotter *s, char *errstr, size_t errlen);

void cmd_snapshotter_stats(cmd_snapshotter *s, cmd_snapshot_stats *out);

/* Finish what was handed over, stop the thread, free. NULL is a no-op. */
void cmd_snapshotter_free(cmd_snapshotter *s);

#endif
