/*
 * rp_record.h — every rebuild, snapshot and verify run of kcqrs-replay leaves
 * its result where the query API (and an operator with psql) can read it.
 *
 * Where: one table for both targets, `<KCQRS_PG_SCHEMA>_history.replay_runs`
 *   in PostgreSQL. Not inside the read model's schema: a PostgreSQL rebuild
 *   replaces that schema with its shadow (the history would move to
 *   <schema>_retired and be dropped by the next rebuild). The schema and the
 *   table are created by the first record (CREATE ... IF NOT EXISTS under a
 *   transaction-scoped advisory lock, so two runs finishing at once do not
 *   race). One row per target of a run:
 *     id (bigserial), kind (rebuild | snapshot | verify), target (lmdb | pg),
 *     name (the snapshot's, else NULL), started_at, finished_at,
 *     events (offsets replayed), outcome (succeeded | differences | failed |
 *     interrupted), differences (verify: rows that differ, else NULL),
 *     detail (verify: the differing rows as printed, at most RP_DIFF_MAX;
 *     failed: the error sentence; else NULL).
 *
 * Pruning: each record deletes, in its transaction, all but the newest
 *   KCQRS_REPLAY_RUNS_KEEP rows (default 100) of every target, so the table
 *   stays small however often a cron job verifies.
 *
 * Recording is best effort: a run whose record cannot be written (PostgreSQL
 * unreachable while an LMDB rebuild ran) keeps its exit status; the caller
 * prints the reason on stderr.
 *
 * Threads: the caller's, after every job was joined.
 */
#ifndef RP_RECORD_H
#define RP_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "kq_config.h"
#include "rp_cli.h"
#include "rp_job.h"

#define RP_RECORD_SUFFIX "_history" /* <KCQRS_PG_SCHEMA>_history */

/* "succeeded", "differences", "failed" or "interrupted" for a joined job;
 * `interrupted` says a signal stopped the run. */
const char *rp_record_outcome(const rp_job *j, int interrupted);

/*
 * Insert one row per job (jobs[0..n), joined) and prune to cfg->replay_runs_keep rows per
 * target, in one transaction. `name` is
 * the snapshot's (RP_CMD_UNTIL) or NULL; times in µs since the epoch.
 * 0, KQ_EINVAL (the history schema name would be too long) or KQ_EPG, with
 * errstr.
 */
int rp_record_runs(const kq_config *cfg, rp_job *jobs, size_t n, rp_cmd cmd, const char *name,
                   int64_t started_us, int64_t finished_us, int interrupted, char *errstr,
                   size_t errlen);

#endif
