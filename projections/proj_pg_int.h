/*
 * proj_pg_int.h — the inside of the PostgreSQL target (proj_pg.h), shared by
 * its files and, for the alternative write paths it is measured against, by
 * bench/pgpaths/. Not for other callers.
 *
 * One batch, one transaction (proj_pg.c drives it):
 *
 *   proj_pg.c           open/close, the batch's aggregate table, the stored
 *                       versions (one query), classification of every event
 *                       (apply / already present / dead letter), the
 *                       `events` rows (COPY), dead letters, commit;
 *   proj_pg_offsets.c   the read model lock, projection_offsets;
 *   proj_pg_resource.c  resources: each applied event folded into at most
 *                       one row operation per resource; the production
 *                       write of versions + resources (one statement);
 *   proj_pg_wfrun.c     workflows, runs, run_attempts: one prepared
 *                       statement per applied event, one pipeline per batch;
 *   proj_pg_fold.c      bulk mode (kcqrs-replay): versions and resources
 *                       folded in memory and COPY'd once;
 *   proj_pg_copy.c      binary rows, COPY, array literals, pipelines.
 *
 * proj_aggregate.h says which of these each aggregate type uses.
 *
 * Threads: a proj_pg and everything below belong to one thread.
 * Memory: everything is owned by the proj_pg and reused from batch to batch.
 */
#ifndef PROJ_PG_INT_H
#define PROJ_PG_INT_H

#include <stddef.h>
#include <stdint.h>

#include "kq_map.h"
#include "proj_aggregate.h"
#include "proj_batch.h"
#include "proj_pg.h"
#include "proj_pg_copy.h"

/* What happens to one event of the batch. */
enum { PROJ_PG_SKIP, PROJ_PG_APPLY, PROJ_PG_MAYBE_DUP, PROJ_PG_DEAD };
/* The row operation a resource's events of the batch fold into. */
enum { PROJ_PG_R_NONE, PROJ_PG_R_FULL, PROJ_PG_R_PATCH, PROJ_PG_R_DEL };

/* One aggregate the batch touches. */
typedef struct proj_pg_agg {
    const char *type; /* static name (ev_aggregate_type_name) */
    const char *id;   /* view into the batch */
    uint32_t idlen;
    int64_t stored; /* version in aggregate_versions (or the fold), 0: none */
    int64_t cur;    /* running last version */
    /* resource fold (proj_pg_resource.c) */
    int rop;
    ev_str name, desc;
    int status; /* -1: unchanged */
    int64_t rversion, created_us, updated_us;
    /* a run's fold state (ev_run.h), loaded with the versions, advanced by
     * every applied event of the batch (proj_pg_wfrun_check) */
    ev_run_state run;
} proj_pg_agg;

/* One event of the batch. */
typedef struct proj_pg_evinfo {
    int st;
    proj_pg_agg *a;
    size_t json_off, json_len; /* payload JSON in pg->json, preceded by the jsonb version byte */
    const char *reason;        /* PROJ_PG_DEAD: "gap", "stale", "nul", "type", "doc", "run" */
    const char *why;           /* "run": the run fold's reason (static) */
    proj_pg_run_values run;    /* an applied run event: its row values (proj_pg_run_fold) */
    int64_t last;              /* the aggregate's last version when the event was refused */
    char *d1, *d2; /* workflow/run JSON for proj_pg_wfrun_write (malloc'd, freed after the
                      batch): WorkflowCreated/Updated: actions (d1); RunStarted: payload, steps */
} proj_pg_evinfo;

/* One prepared statement of the batch's pipeline (proj_aggregate.h pg_stmt). */
typedef struct proj_pg_stmt {
    const char *name; /* the prepared statement; NULL: the event writes nothing */
    int n;            /* parameters (text) */
    const char *v[12];
    char *own[3]; /* malloc'd copies of parameters, freed by proj_pg_stmt_clear */
    char num[6][24];
    char at[80]; /* the event's occurred_at, RFC 3339 */
} proj_pg_stmt;

/*
 * Writes the applied events' rows (`events`, aggregate_versions, resources)
 * inside the batch's transaction: proj_pg_write_merge in production, the
 * alternatives of bench/pgpaths/ when measured. 0 or KQ_E*.
 */
typedef int (*proj_pg_write_fn)(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen);

struct proj_pg {
    PGconn *conn;
    char schema[64];
    char lockname[96]; /* 'kcqrs.readmodel:' || schema */
    char oid[16];      /* pg_namespace OID of the schema at open */
    proj_pg_write_fn write;
    kq_map *aggs;       /* the batch's aggregates: "<type>\0<id>" -> proj_pg_agg */
    proj_pg_buf key;    /* scratch for those keys */
    proj_pg_agg **used; /* the batch's aggregates in order of appearance, nused of them */
    size_t nused;
    proj_pg_evinfo *info; /* one per event of the batch */
    size_t infocap;
    proj_pg_buf json, copy, a1, a2, a3;
    proj_pg_buf arr[12]; /* array parameters of the merge statement */
    proj_pg_fold *fold;  /* bulk mode (proj_pg_set_fold), not owned */
    char reason[256];
};

/* proj_pg.c */
int proj_pg_prepare(proj_pg *pg, const char *name, const char *sql, char *errstr, size_t errlen);
/* The `events` row of an applied event (binary, the column order of COPY events). */
void proj_pg_event_row(const proj_pg *pg, const proj_event *ev, const proj_pg_evinfo *in,
                       proj_pg_row *r);
/* COPY the applied events' rows into `events`. */
int proj_pg_copy_events(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen);

/* proj_pg_offsets.c */
int proj_pg_offsets_prepare(proj_pg *pg, char *errstr, size_t errlen);
int proj_pg_schema_oid(proj_pg *pg, char *errstr, size_t errlen);
#define PROJ_PG_STANDBY_WAIT "'1s'" /* a standby's wait for the lock, as lock_timeout */
/* The active projector's session lock (PROJ_PG_EXCLUSIVE), waited for up to
 * PROJ_PG_STANDBY_WAIT; KQ_EBUSY when still held elsewhere. */
int proj_pg_take_active(proj_pg *pg, char *errstr, size_t errlen);
int proj_pg_lock_check(proj_pg *pg, char *errstr, size_t errlen);
int proj_pg_store_offsets(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen);

/* proj_pg_resource.c (and the table's pg_fold) */
const char *proj_pg_resource_status(int status); /* "active".. or NULL */
int proj_pg_write_merge(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen);

/* proj_pg_wfrun.c (and the table's pg_check / pg_stmt functions) */
int proj_pg_wfrun_prepare_statements(proj_pg *pg, char *errstr, size_t errlen);
int proj_pg_stmt_write(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen);
void proj_pg_stmt_clear(proj_pg_stmt *st);
void proj_pg_wfrun_free(proj_pg *pg, size_t n);

/* proj_pg_fold.c */
int proj_pg_fold_broken(const proj_pg_fold *f);
int proj_pg_fold_versions(proj_pg *pg); /* 0 */
int proj_pg_fold_batch(proj_pg *pg);    /* 0 or KQ_ENOMEM (the fold is then broken) */

#endif
