/*
 * qry_pg.h — the query API's reads from the PostgreSQL read model
 * (ops/sql/0001_init.sql): one aggregate's events, the audit log, and the
 * PostgreSQL target's stored offsets.
 *
 * Connections: one per calling thread (a pthread key; closed when the thread
 * exits), made on first use. A statement that fails on a broken connection
 * drops it and is retried once on a new one (a restarted server); after a
 * failed connect the thread does not try again for 1 s, so a PostgreSQL
 * outage answers 503 quickly instead of stalling every request. Sessions run
 * with statement_timeout 5 s. Every call returns KQ_EPG when PostgreSQL is
 * unreachable or fails; the handler answers 503 and LMDB endpoints are not
 * affected.
 *
 * Which model: the live tables are found through the session's search_path
 * (KCQRS_PG_SCHEMA), and every statement is an unnamed one (PQexecParams,
 * no prepared statements), so names are resolved again by every query: after
 * kcqrs-replay renamed the rebuilt schema into place, the next query reads
 * it, while queries in flight finish on the tables they started on. The
 * `schema` argument of the page queries (NULL = live) names a snapshot
 * schema instead ([a-z0-9_]{1,63}, checked again here; the query is then
 * schema-qualified).
 *
 * Threads: any thread may call at once (each uses its own connection).
 */
#ifndef QRY_PG_H
#define QRY_PG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct qry_pg qry_pg;

/* `dsn` is copied. Returns 0, KQ_ENOMEM or KQ_EIO (no pthread key). */
int qry_pg_new(const char *dsn, int connect_timeout_ms, qry_pg **out);
/* Read from `schema` (KCQRS_PG_SCHEMA; copied): every connection made after
 * this call has search_path = schema (kq_pg_connect_schema). Call before the
 * first read; without it connections use the server's default search_path.
 * While the schema does not exist yet reads fail (KQ_EPG: 503). 0 or KQ_EINVAL
 * (not a valid schema name). */
int qry_pg_set_schema(qry_pg *pg, const char *schema);
/* After every thread that used it has exited (or for the calling thread's connection). */
void qry_pg_free(qry_pg *pg);

/* Reachable? (SELECT 1 on this thread's connection.) 0 or KQ_EPG. */
int qry_pg_ping(qry_pg *pg, char *errstr, size_t errlen);

/* Stored next offset of (topic, partition) in projection_offsets; 0 when none. */
int qry_pg_next_offset(qry_pg *pg, const char *topic, int32_t partition, int64_t *next,
                       char *errstr, size_t errlen);

/* Every row of projection_offsets as {"<topic>/<partition>": next} (new reference). */
int qry_pg_offsets(qry_pg *pg, json_t **out, char *errstr, size_t errlen);

/*
 * The last `limit` results of kcqrs-replay runs, newest first, from
 * <schema>_history.replay_runs (replay/rp_record.h; `history_schema` is that
 * name, a valid identifier): *items a new JSON array of {"id","kind",
 * "target","name","started_at","finished_at","events","outcome",
 * "differences","detail"}; [] while no run was recorded (no table yet).
 */
int qry_pg_replay_runs(qry_pg *pg, const char *history_schema, int limit, json_t **items,
                       char *errstr, size_t errlen);

/* Filter of the audit log; NULL strings / has_* = 0 mean "any". */
typedef struct qry_audit_filter {
    const char *aggregate_type;
    const char *aggregate_id;
    const char *actor;
    const char *event_type;
    int has_since, has_until;
    int64_t since_us, until_us; /* inclusive bounds on occurred_at_us */
    int has_after;              /* cursor: strictly after (after_us, after_uuid) */
    int64_t after_us;
    uint8_t after_uuid[16];
    int limit;
} qry_audit_filter;

/* Where a page ended, for the next cursor. */
typedef struct qry_pg_page {
    int more; /* 1: further rows exist */
    int64_t last_us;
    uint8_t last_uuid[16];
    int64_t last_version;
} qry_pg_page;

/*
 * Audit rows ordered by (occurred_at_us, event_id): *items is a new JSON
 * array of events with metadata (event_id, aggregate_type, aggregate_id,
 * version, event_type, occurred_at, actor, command_id, correlation_id,
 * causation_id, schema_version, payload, topic, partition, offset).
 */
int qry_pg_audit(qry_pg *pg, const char *schema, const qry_audit_filter *f, json_t **items,
                 qry_pg_page *page, char *errstr, size_t errlen);

/*
 * The events of one aggregate by version (after `after_version` when
 * has_after). KQ_ENOTFOUND when the aggregate has no event at all.
 */
int qry_pg_events(qry_pg *pg, const char *schema, const char *aggregate_type, const char *id,
                  int has_after, int64_t after_version, int limit, json_t **items,
                  qry_pg_page *page, char *errstr, size_t errlen);

/*
 * 1 in *exists when `schema` holds an events table (a named snapshot's
 * schema, <KCQRS_PG_SCHEMA>_snap_NAME), else 0.
 */
int qry_pg_schema_exists(qry_pg *pg, const char *schema, int *exists, char *errstr, size_t errlen);

#endif
