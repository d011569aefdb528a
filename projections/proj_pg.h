/*
 * proj_pg.h — the PostgreSQL target of kcqrs-projector.
 *
 * Applies batches of decoded events (proj_batch.h) to the PostgreSQL read
 * model of ops/sql/ (projection_offsets, aggregate_versions, resources,
 * events, workflows, runs, run_attempts): one transaction per batch, holding the batch's rows AND
 * the `next` offsets of every partition it covers, so the read model's effect is exactly once
 * whatever crashes. The write path and why it was chosen are described at the top of proj_pg.c.
 *
 * Owns: one PGconn and its prepared statements plus reusable staging
 * buffers. Threads: a proj_pg belongs to one thread (the PostgreSQL target
 * thread of the runner); different proj_pg objects are independent.
 *
 * Errors: 0 or a negative KQ_E* code with errstr filled. KQ_EPG means the
 * connection is lost or the server refused something; the transaction was
 * rolled back and the caller should proj_pg_close() and proj_pg_open() again.
 */
#ifndef PROJ_PG_H
#define PROJ_PG_H

#include <stddef.h>

#include "ev_run.h"
#include "kq_config.h"
#include "proj_batch.h"

typedef struct proj_pg proj_pg;

/* Connect to cfg->pg_dsn (bounded by cfg->kafka_timeout_ms, via
 * kq_pg_connect), apply pending migrations (proj_migrate.h), prepare
 * statements. On success *out is owned by the caller (proj_pg_close).
 * KQ_EPG when PostgreSQL is unreachable (the runner retries with backoff);
 * KQ_ECORRUPT when a recorded migration's checksum differs from the embedded
 * file (refuse to run). */
int proj_pg_open(const kq_config *cfg, proj_pg **out, char *errstr, size_t errlen);

/* proj_pg_open with PROJ_PG_EXCLUSIVE (below): the live projector's open,
 * KQ_EBUSY while another projector is the active one of cfg->pg_schema. */
int proj_pg_open_live(const kq_config *cfg, proj_pg **out, char *errstr, size_t errlen);

/*
 * proj_pg_open on an explicit schema (proj_pg_open passes cfg->pg_schema and
 * PROJ_PG_CREATE_SCHEMA). The connection's search_path is that schema alone
 * (kq_pg_connect_schema). With PROJ_PG_CREATE_SCHEMA the schema is created
 * when missing (the live read model); without it a missing schema is
 * KQ_ENOTFOUND (kcqrs-replay's shadow: a shadow renamed to live must never
 * be silently recreated empty). The schema's pg_namespace OID is remembered:
 * every batch (proj_pg_apply) first takes the read model lock
 * pg_advisory_xact_lock(hashtext('kcqrs.readmodel:' || schema)) and then
 * checks that the schema of that name is still the one opened; if not
 * (kcqrs-replay switched a rebuilt model in) the batch is rolled back and
 * KQ_ESWITCHED returned: close and open again.
 */
#define PROJ_PG_CREATE_SCHEMA 1
/*
 * PROJ_PG_EXCLUSIVE (the live projector): before anything else the connection
 * takes the session lock pg_try_advisory_lock(hashtext('kcqrs.projector:' ||
 * schema)) and keeps it until proj_pg_close. When another connection holds it
 * (the active projector of that schema) the open fails with KQ_EBUSY and
 * nothing was touched: the caller is a standby and tries again. PostgreSQL
 * drops the lock with the session, so a projector that dies (kill -9, lost
 * connection) frees it at once, and every batch it committed was committed
 * while it held the lock: two projectors never write the same schema at once.
 */
#define PROJ_PG_EXCLUSIVE 2
/*
 * PROJ_PG_DURABLE (kcqrs-dlq redrive): keep synchronous_commit on. The
 * projector turns it off because it stores its offsets in the same
 * transaction and re-applies what a PostgreSQL crash lost; a redrive stores
 * no offset, so nothing would re-apply a lost commit it reported applied.
 */
#define PROJ_PG_DURABLE 4
int proj_pg_open_schema(const kq_config *cfg, const char *schema, int flags, proj_pg **out,
                        char *errstr, size_t errlen);

/* Call cb for every row of projection_offsets (strings valid during the call). */
int proj_pg_load_offsets(proj_pg *pg, proj_offset_fn cb, void *arg, char *errstr, size_t errlen);

/* Apply the batch in ONE transaction with its `next` offsets (upsert into
 * projection_offsets) and pg_notify('kcqrs_projection',''). Events with
 * decoded == 0 are skipped. Per decoded event: check version == last + 1
 * (aggregate_versions, plus the batch's own earlier events; version 1 needs no
 * row); otherwise call dl(dlarg, ev, "pg", reason) and skip it (non-zero from dl
 * -> rollback, return KQ_EIO). Insert into events (payload JSON), update
 * aggregate_versions, and for resource events upsert/update/delete resources;
 * for workflow and run events write workflows / runs / run_attempts (one
 * prepared statement per event, pipelined, also in bulk mode) and store the payload with its
 * secrets (webhook_secret, signing_secret) replaced by "[redacted]"; a
 * workflow/run event those tables cannot hold is dead-lettered (reason says).
 * An event already present (same topic/partition/offset — possible only if
 * offsets were lost) is not applied twice. Failpoints: pg_after_insert
 * (after the rows are written, before offsets), pg_before_commit,
 * pg_after_commit. Returns 0, KQ_ESWITCHED (the schema was replaced, see
 * proj_pg_open_schema; nothing written), KQ_EIO (dead_letter failed) or KQ_EPG
 * (connection lost or SQL error: the transaction is rolled back; the caller
 * closes and reopens). The batch is only read. */
int proj_pg_apply(proj_pg *pg, const proj_batch *b, proj_dead_letter_fn dl, void *dlarg,
                  char *errstr, size_t errlen);

void proj_pg_close(proj_pg *pg); /* NULL is a no-op */

/*
 * Bulk mode (kcqrs-replay loading an empty shadow): a fold holds, in memory,
 * every aggregate's last version and every live resource's row. With a fold
 * set, proj_pg_apply takes the versions from the fold instead of querying
 * aggregate_versions, classifies exactly as always (an event whose version is
 * not above the last is dead-lettered as stale: in a shadow loaded once from
 * the log none can be already present), writes only the event rows (COPY) and
 * the offsets, and after COMMIT applies the batch's version and resource
 * operations (the same folded operations the merge statement would run:
 * upsert, patch of an existing row, delete) to the fold. proj_pg_fold_flush
 * then COPYs the fold into aggregate_versions and resources in one
 * transaction. The fold outlives proj_pg objects (the runner may reopen the
 * target): it only ever changes after a commit, so it matches the shadow's
 * committed rows. After an out-of-memory while folding it refuses every
 * further apply and flush (KQ_ENOMEM). Owned by the caller.
 */
typedef struct proj_pg_fold proj_pg_fold;
proj_pg_fold *proj_pg_fold_new(void); /* NULL when out of memory */
void proj_pg_fold_free(proj_pg_fold *f);
size_t proj_pg_fold_count(const proj_pg_fold *f); /* aggregates held */
void proj_pg_set_fold(proj_pg *pg, proj_pg_fold *f);
int proj_pg_fold_flush(proj_pg *pg, char *errstr, size_t errlen);

/*
 * The run rows (runs.status, runs.steps[*].status, run_attempts) follow THE
 * run fold (events/ev_run.h): proj_pg_run_fold is the one function their
 * values come from. It folds `e` into the run's state *s by ev_run_fold and,
 * when applied, says what the event's statement writes: the run's status,
 * and for a step event the step and its new status (the only step whose
 * status the event changes). A StepAttempted also adds its run_attempts
 * row; RunFailed sets runs.error. Every other value of the rows comes from
 * the event itself. Returns EV_FOLD_APPLIED (*s advanced, *v filled),
 * EV_FOLD_DUPLICATE or EV_FOLD_REFUSED (*why; *s unchanged, the target
 * dead-letters the event). Pure: no allocation, no I/O; any thread. The
 * target rebuilds *s of a stored run from its rows (proj_run_state_load).
 */
typedef struct proj_pg_run_values {
    const char *status;      /* runs.status ("pending", ...; static) */
    int32_t step;            /* the step the event names, -1 for run events */
    const char *step_status; /* runs.steps[step].status after it (static), NULL if none */
} proj_pg_run_values;
int proj_pg_run_fold(ev_run_state *s, const ev_envelope *e, proj_pg_run_values *v,
                     const char **why);

/*
 * The proj_target_ops adapters (handles as void *), shared by kcqrs-projector
 * and kcqrs-replay's shadow targets: proj_pg_load_offsets, proj_pg_apply
 * and proj_pg_close behind the runner's signatures.
 */
int proj_pg_target_load(void *t, proj_offset_fn cb, void *arg, char *errstr, size_t errlen);
int proj_pg_target_apply(void *t, const proj_batch *b, proj_dead_letter_fn dl, void *dlarg,
                         char *errstr, size_t errlen);
void proj_pg_target_close(void *t);

#endif
