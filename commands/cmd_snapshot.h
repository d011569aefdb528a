/*
 * cmd_snapshot.h — the command side's state in LMDB, so restarts do not re-read the whole log.
 *
 * What it is for
 *   cmd_snapshot_save() writes the whole cmd_state (resources, idempotency
 *   keys, and the next offset of every partition the state covers) into an
 *   LMDB environment in one write transaction: the snapshot is either the old
 *   one or the new one, never a mix. At start cmd_snapshot_load() fills an
 *   empty state from it; the writer then reads the log from the stored
 *   offsets (cmd_writer.c). The log stays the source of truth: deleting the
 *   directory only makes the next start slower.
 *
 * Layout (one unnamed database; values in host byte order: a snapshot is
 * local to its machine)
 *   "m"        magic "kcqrs.commands.v2", the topic name, the Kafka cluster
 *              id, partition count, events applied
 *   "o"        int64 next offset per partition
 *   "r/<id>"   version, offset, partition, status, deleted, name, description
 *   "i/<key>"  the cmd_idem record of an Idempotency-Key
 *
 * A snapshot of another topic or partition count is refused (KQ_ECORRUPT);
 * one of another cluster, or with offsets past the end of the log (the topic
 * was recreated), is discarded by the writer when it first reads the log;
 * a missing one gives KQ_ENOTFOUND. A map too small for the state gives
 * KQ_ELMDB ("map full") and leaves the previous snapshot in place.
 *
 * Threads: called by the writer thread only (and by tests).
 */
#ifndef CMD_SNAPSHOT_H
#define CMD_SNAPSHOT_H

#include <stddef.h>

#include "cmd_state.h"

/* Save `st` into the LMDB environment in directory `dir` (created if missing)
 * with map size `map_size` bytes. */
int cmd_snapshot_save(const char *dir, size_t map_size, const cmd_state *st, const char *topic,
                      char *errstr, size_t errlen);

/* Load into `st`, which must be freshly initialised with the expected
 * partition count. On failure `st` may hold part of the snapshot: free it. */
int cmd_snapshot_load(const char *dir, size_t map_size, cmd_state *st, const char *topic,
                      char *errstr, size_t errlen);

#endif
