/*
 * proj_lmdb.h — the projector's LMDB target: applies batches of events to the
 * read model whose layout lib/kq_rm.h defines.
 *
 * One write transaction per batch holds the batch's data AND the next offset
 * of every partition it covers: readers in other processes (LMDB MVCC) see a
 * batch completely or not at all, and after a crash the stored offsets are
 * exactly those of the data. Per decoded event:
 *   - versions[<type><id>] must be the event's version - 1 (absent = 0);
 *     otherwise the event goes to `dead_letter` (target "lmdb") and is skipped;
 *   - ResourceCreated/Updated/Deleted maintain `resources` and
 *     `resources_by_status` (an update that changes the status moves the
 *     index entry; a delete removes both); an update or delete of a resource
 *     that does not exist (after a delete) changes nothing but its version,
 *     as in the PostgreSQL target;
 *   - workflow and run events fold their aggregate's JSON document
 *     (proj_doc.h) and rewrite it in `workflows` / `runs` with the indexes
 *     workflows_by_enabled, runs_by_status and (RunStarted) runs_by_workflow;
 *     an event the document cannot take (malformed action, payload_json that
 *     is not a JSON object, more than 100 steps, invalid UTF-8, an event
 *     type of another aggregate) is dead-lettered like a gap and its version
 *     not advanced (the PostgreSQL target refuses the same events). A run
 *     event before any RunStarted, or naming a step beyond the run's steps,
 *     changes only the version and times (so does PostgreSQL).
 *
 * Durability: the environment runs with MDB_NOSYNC. Without MDB_WRITEMAP,
 * LMDB writes every page with pwrite() before the meta page, so a committed
 * transaction is in the kernel's page cache when mdb_txn_commit returns: a
 * killed process (the failure the projector must survive) loses nothing.
 * Only an operating-system crash can lose the last transactions (or, LMDB
 * documents, damage the file): the read model is a cache of the log, and
 * whatever survives still has data and offsets from the same transactions.
 * The target flushes (mdb_env_sync) at most once a second from apply and on
 * close. proj_lmdb_open_dir(sync=1) turns this off (fsync per commit).
 *
 * Threads: a proj_lmdb is used by one thread (its runner).
 * Lock: see proj_lmdb_open (environments opened with proj_lmdb_open_dir take none).
 * Failpoints: lmdb_after_put (after each applied event's writes),
 * lmdb_before_commit, lmdb_after_commit.
 */
#ifndef PROJ_LMDB_H
#define PROJ_LMDB_H

#include <stddef.h>

#include <lmdb.h>

#include "kq_config.h"
#include "proj_batch.h"

typedef struct proj_lmdb proj_lmdb;

/*
 * Open or create $KCQRS_LMDB_DIR/readmodel with cfg->lmdb_map_mb MiB (MDB_NOSYNC),
 * the LIVE model: every apply then holds flock(LOCK_EX) on
 * $KCQRS_LMDB_DIR/readmodel.lock (KQ_RM_LOCK_FILE) around its write
 * transaction and, holding it, checks that readmodel/data.mdb is still the
 * file the environment has open (st_dev/st_ino); when kcqrs-replay switched a
 * rebuilt model in, apply writes nothing and returns KQ_ESWITCHED (the runner
 * reopens the target).
 */
int proj_lmdb_open(const kq_config *cfg, proj_lmdb **out, char *errstr, size_t errlen);

/*
 * Open or create the environment in `dir` (created if missing) with a map of
 * `map_size` bytes; `sync` = 1 syncs every commit. Writes meta "format" on a
 * new environment and refuses (KQ_ECORRUPT) one with another format.
 * *out is owned by the caller (proj_lmdb_close). KQ_ELMDB on LMDB errors.
 */
int proj_lmdb_open_dir(const char *dir, size_t map_size, int sync, proj_lmdb **out, char *errstr,
                       size_t errlen);

/* Call cb for every stored offset. */
int proj_lmdb_load_offsets(proj_lmdb *t, proj_offset_fn cb, void *arg, char *errstr, size_t errlen);

/*
 * Apply `b` in one write transaction (see above). 0; KQ_EIO when dead_letter
 * failed (nothing applied); KQ_ELMDB (e.g. MDB_MAP_FULL; nothing applied).
 */
int proj_lmdb_apply(proj_lmdb *t, const proj_batch *b, proj_dead_letter_fn dead_letter, void *dlarg,
                    char *errstr, size_t errlen);

/* Bulk loading (kcqrs-replay's shadow): no periodic mdb_env_sync from apply. */
void proj_lmdb_set_bulk(proj_lmdb *t, int on);

/* mdb_env_sync(force). 0 or KQ_ELMDB. */
int proj_lmdb_sync(proj_lmdb *t, char *errstr, size_t errlen);

/* The environment (read transactions only; same thread as the target). */
MDB_env *proj_lmdb_env(proj_lmdb *t);

/* Sync and close; NULL is a no-op. */
void proj_lmdb_close(proj_lmdb *t);

/*
 * The proj_target_ops adapters (handles as void *), shared by kcqrs-projector
 * and kcqrs-replay's shadow targets: proj_lmdb_load_offsets, proj_lmdb_apply
 * and proj_lmdb_close behind the runner's signatures.
 */
int proj_lmdb_target_load(void *t, proj_offset_fn cb, void *arg, char *errstr, size_t errlen);
int proj_lmdb_target_apply(void *t, const proj_batch *b, proj_dead_letter_fn dl, void *dlarg,
                           char *errstr, size_t errlen);
void proj_lmdb_target_close(void *t);

#endif
