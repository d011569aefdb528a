/*
 * proj_aggregate.h — how each aggregate type's events become read-model
 * data: one row per type (resource, workflow, run) saying what the LMDB
 * target and the PostgreSQL target do with an event of that type. The
 * targets check versions, classify, dead-letter and commit the same way for
 * every type (proj_lmdb.c, proj_pg.c) and reach the per-type work only
 * through this table, in the spirit of replay/rp_target.h's rp_target_ops.
 *
 * Adding an aggregate type on the projection side: a row in proj_aggregate.c,
 * its LMDB apply (and database, lib/kq_rm.h) and its PostgreSQL fold or
 * statement (and table, ops/sql/).
 *
 * Owns: nothing; the table is static and read-only. Threads: any.
 */
#ifndef PROJ_AGGREGATE_H
#define PROJ_AGGREGATE_H

#include "ev_codec.h"
#include "proj_batch.h"

typedef struct proj_lmdb_txn proj_lmdb_txn;   /* proj_lmdb.c: the batch's write transaction */
typedef struct proj_pg proj_pg;               /* proj_pg_int.h */
typedef struct proj_pg_agg proj_pg_agg;       /* proj_pg_int.h */
typedef struct proj_pg_evinfo proj_pg_evinfo; /* proj_pg_int.h */
typedef struct proj_pg_stmt proj_pg_stmt;     /* proj_pg_int.h */

/* lmdb_apply's refusal (besides LMDB codes): the event is dead-lettered. */
#define PROJ_LMDB_REFUSED (-1)

typedef struct proj_aggregate {
    int type;         /* EV_AGG_* */
    const char *name; /* ev_aggregate_type_name: the PostgreSQL aggregate_type */

    /* LMDB: apply an event whose version is the aggregate's last + 1 inside
     * the batch's write transaction. 0, an LMDB error code, or
     * PROJ_LMDB_REFUSED with *why (static text) set. */
    int (*lmdb_apply)(proj_lmdb_txn *lt, const ev_envelope *e, const char **why);

    /* PostgreSQL, while classifying an event to apply (its payload JSON is at
     * pg->json + json_start): check what the tables can hold and prepare
     * what the write needs. 0; 1 refused (in->reason set); KQ_ENOMEM. NULL:
     * nothing to check. */
    int (*pg_check)(proj_pg *pg, const proj_event *ev, proj_pg_evinfo *in, size_t json_start);
    /* PostgreSQL: fold an applied event into its aggregate's row operation,
     * written with the versions by one merge statement. NULL: none. */
    void (*pg_fold)(proj_pg_agg *a, const ev_envelope *e);
    /* PostgreSQL: the prepared statement (and its parameters) that writes an
     * applied event's rows; the batch's statements go in one pipeline. NULL:
     * none. */
    void (*pg_stmt)(const ev_envelope *e, const proj_pg_evinfo *in, proj_pg_stmt *st);
} proj_aggregate;

/* The row of `type`; an all-NULL row (name "unknown") for an unknown type. */
const proj_aggregate *proj_aggregate_of(int type);

/* The per-type functions the table points to. */
int proj_lmdb_resource_apply(proj_lmdb_txn *lt, const ev_envelope *e, const char **why);
int proj_lmdb_workflow_apply(proj_lmdb_txn *lt, const ev_envelope *e, const char **why);
int proj_lmdb_run_apply(proj_lmdb_txn *lt, const ev_envelope *e, const char **why);
void proj_pg_resource_fold(proj_pg_agg *a, const ev_envelope *e);
int proj_pg_wfrun_check(proj_pg *pg, const proj_event *ev, proj_pg_evinfo *in, size_t json_start);
void proj_pg_workflow_stmt(const ev_envelope *e, const proj_pg_evinfo *in, proj_pg_stmt *st);
void proj_pg_run_stmt(const ev_envelope *e, const proj_pg_evinfo *in, proj_pg_stmt *st);

#endif
