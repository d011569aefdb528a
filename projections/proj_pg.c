/*
 * proj_pg.c — the PostgreSQL target of kcqrs-projector; see proj_pg.h.
 *
 * One batch = one transaction:
 *
 *   BEGIN
 *   1 query   the stored version of every aggregate the batch touches
 *             (aggregate_versions JOIN unnest($types, $ids)): not one query
 *             per event;
 *   in C      walk the events in log order: version == last + 1 is applied
 *             (last includes the batch's own earlier events); version <= last
 *             is either already applied (same topic/partition/offset present
 *             in `events`: only after lost offsets, checked with ONE more
 *             query for just those events) and skipped, or dead-lettered as
 *             stale; a gap is dead-lettered. Applied resource events are
 *             folded per resource into at most one row operation (full
 *             upsert, patch of the changed columns, or delete), versions into
 *             one row per aggregate, so every statement below touches each row
 *             once;
 *   write     the event rows into `events`, the version rows, the resource
 *             operations (the write path, below);
 *   offsets   one statement: upsert every `next` offset (unnest of arrays)
 *             and pg_notify('kcqrs_projection', '');
 *   COMMIT
 *
 * Write paths, measured with bench/bench_pg_apply (200k ResourceCreated /
 * ResourceUpdated events over 40k resources, batches of 2000, PostgreSQL 15
 * with fsync on and default settings, on the shared 2-core build machine
 * under load 4-7; three interleaved runs; events/s wall clock and server
 * backend CPU per event):
 *
 *   PROJ_PG_PATH_COPY          13.7k / 9.7k / 13.6k ev/s, 42-53 us/ev
 *       COPY ... FROM STDIN (FORMAT binary) straight into `events`, then ONE
 *       statement merges versions and resources from 12 array parameters
 *       (unnest + data-modifying CTEs: INSERT new versions, UPDATE the
 *       others, DELETE / upsert / patch resources);
 *   PROJ_PG_PATH_COPY_STAGING  12.2k / 8.6k / 11.1k ev/s, 41-50 us/ev
 *       COPY into `events` and into two temporary staging tables (ON COMMIT
 *       DELETE ROWS), then set-based INSERT/UPDATE/DELETE from them;
 *   PROJ_PG_PATH_PIPELINE       7.2k / 8.1k / 8.1k ev/s, 71-78 us/ev
 *       libpq pipeline mode: one prepared INSERT per event, one prepared
 *       upsert per aggregate and per resource operation (binary
 *       parameters), one Sync.
 *
 * COPY is the default: it costs the server about 40% less CPU per event than
 * the pipeline (one COPY stream instead of one executor run per row), and of
 * the two COPY variants the array merge was faster in every 200k run while
 * costing the same CPU, needs no per-session temporary tables and is one
 * round trip. Both variants and the pipeline write the same rows; the e2e
 * tests run all three. Client CPU is ~2-3 us/event on every path: the server
 * is the bottleneck. What the server spends is mostly index maintenance:
 * `events` has seven indexes (primary key, aggregate/version, event_id and
 * four query indexes), and each event also updates one aggregate_versions
 * row and one resources row (fillfactor 70 keeps those updates HOT; ~15%
 * less server CPU). Without events' six secondary indexes the same run went
 * ~1.7x faster, the schema's price for the audit queries.
 *
 * Rows are binary wherever possible: uuid as 16 bytes, timestamptz as
 * microseconds since 2000-01-01, jsonb as version byte 1 + the text that
 * ev_json_payload_append prints (the payload table exactly as `kcqrs-events
 * decode` prints it under "payload").
 *
 * synchronous_commit = off (per session; proj_pg_set_path can turn it on).
 * At 2000-event batches one WAL flush per batch is lost in the noise (copy
 * with synchronous_commit on: 10.0k / 12.4k ev/s in the runs above); it
 * matters at the live tail, where batches are a few events (gathered for
 * KCQRS_PROJ_BATCH_MS) and a flush per commit would dominate. A commit returns before
 * its WAL is flushed, so a crash of PostgreSQL or of its machine (not of the
 * projector) can lose the last commits, up to about 3 x wal_writer_delay.
 * That keeps exactly-once: WAL replay restores a prefix of the committed
 * transactions, and every batch carries its own offsets in the same
 * transaction, so a lost batch is lost together with its offsets; on restart
 * the projector reloads the older offsets and applies those records again
 * from Kafka, the only source of truth. Dead-letter records of a lost batch
 * are produced again under the same key (compaction keeps one). The visible
 * effect: a reader woken by pg_notify may have seen rows, or a consistency
 * token as applied, that a PostgreSQL crash takes back until the projector
 * re-applies them moments later.
 *
 * Strings: PostgreSQL text and jsonb cannot hold NUL; the log can (decoding
 * does not re-check domain rules), so an event with a NUL in a stored string
 * is dead-lettered instead of failing its batch forever.
 *
 * Threads: one proj_pg per thread. Memory: everything is owned by the
 * proj_pg and reused from batch to batch.
 */
#include "proj_pg.h"
#include "ev_json.h"
#include "kq_err.h"
#include "kq_log.h"
#include "kq_pg.h"
#include "proj_doc.h"
#include "proj_failpoint.h"
#include "proj_migrate.h"

#include <jansson.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_EPOCH_US 946684800000000LL /* 2000-01-01 in Unix microseconds */
#define EV_COLS 18
#define RES_COLS 8

enum { ST_SKIP, ST_APPLY, ST_MAYBE_DUP, ST_DEAD };
enum { R_NONE, R_FULL, R_PATCH, R_DEL };

typedef struct agg {
    const char *type; /* static name */
    const char *id;
    uint32_t idlen;
    uint32_t hash;
    int used;
    int is_resource;
    int64_t stored; /* version in aggregate_versions, 0: none */
    int64_t cur;    /* running last version */
    /* resource fold */
    int rop;
    ev_str name, desc;
    int status; /* -1: unchanged */
    int64_t rversion, created_us, updated_us;
} agg;

typedef struct evinfo {
    int st;
    agg *a;
    size_t json_off, json_len; /* payload JSON in pg->json, preceded by the jsonb version byte */
    const char *reason;
    int64_t last;  /* the aggregate's last version when the event was refused */
    char *d1, *d2; /* workflow/run JSON for wfrun_write (malloc'd, freed after the batch):
                      WorkflowCreated/Updated: actions (d1); RunStarted: payload, steps */
} evinfo;

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

/* One row of binary values (COPY tuple or pipeline parameters). */
typedef struct row {
    int n;
    const char *val[EV_COLS];
    int len[EV_COLS];
    int fmt[EV_COLS];
    char num[EV_COLS][8];
} row;

struct proj_pg {
    PGconn *conn;
    char schema[64];
    char lockname[96]; /* 'kcqrs.readmodel:' || schema */
    char oid[16];      /* pg_namespace OID of the schema at open */
    int path;
    int sync_commit_off;
    agg *aggs;
    size_t aggcap; /* power of two */
    evinfo *info;
    size_t infocap;
    buf json, copy, a1, a2, a3;
    buf arr[12];        /* array parameters of merge_arrays_sql */
    proj_pg_fold *fold; /* bulk mode (proj_pg_set_fold), not owned */
    char reason[256];
};

/* ---------------------------------------------------------------- buffers */

static int buf_reserve(buf *b, size_t more)
{
    size_t cap;
    char *np;

    if (b->cap - b->len > more)
        return 0;
    cap = b->cap ? b->cap : 4096;
    while (cap - b->len <= more) {
        if (cap > SIZE_MAX / 2)
            return KQ_ENOMEM;
        cap *= 2;
    }
    if ((np = realloc(b->p, cap)) == NULL)
        return KQ_ENOMEM;
    b->p = np;
    b->cap = cap;
    return 0;
}

static int buf_put(buf *b, const void *p, size_t n)
{
    if (buf_reserve(b, n))
        return KQ_ENOMEM;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int buf_puts(buf *b, const char *s)
{
    return buf_put(b, s, strlen(s));
}

static void be16(char *d, uint16_t v)
{
    d[0] = (char)(v >> 8);
    d[1] = (char)v;
}

static void be32(char *d, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        d[i] = (char)(v >> (24 - 8 * i));
}

static void be64(char *d, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        d[i] = (char)(v >> (56 - 8 * i));
}

/* Append one element to a text array literal under construction ("{" ... "}"). */
static int arr_add(buf *b, const char *s, size_t n)
{
    int rc = 0;

    if (b->len == 0) /* arr_start ran out of memory */
        return KQ_ENOMEM;
    rc |= buf_puts(b, b->len > 1 ? ",\"" : "\"");
    for (size_t i = 0; i < n && !rc; i++) {
        if (s[i] == '"' || s[i] == '\\')
            rc |= buf_put(b, "\\", 1);
        rc |= buf_put(b, s + i, 1);
    }
    rc |= buf_put(b, "\"", 1);
    return rc ? KQ_ENOMEM : 0;
}

static void arr_start(buf *b)
{
    b->len = 0;
    buf_put(b, "{", 1);
}

static int arr_end(buf *b)
{
    return b->len == 0 || buf_put(b, "}", 1) ? KQ_ENOMEM : 0;
}

/* ---------------------------------------------------------------- rows */

static void row_null(row *r)
{
    r->val[r->n] = NULL;
    r->len[r->n] = 0;
    r->fmt[r->n++] = 1;
}

static void row_bytes(row *r, const void *p, size_t n)
{
    if (p == NULL) {
        row_null(r);
        return;
    }
    r->val[r->n] = p;
    r->len[r->n] = (int)n;
    r->fmt[r->n++] = 1;
}

static void row_str(row *r, ev_str s)
{
    row_bytes(r, s.ptr, s.len);
}

static void row_cstr(row *r, const char *s)
{
    row_bytes(r, s, strlen(s));
}

static void row_i32(row *r, int32_t v)
{
    be32(r->num[r->n], (uint32_t)v);
    row_bytes(r, r->num[r->n], 4);
}

static void row_i64(row *r, int64_t v)
{
    be64(r->num[r->n], (uint64_t)v);
    row_bytes(r, r->num[r->n], 8);
}

static void row_ts(row *r, int64_t unix_us)
{
    row_i64(r, unix_us - PG_EPOCH_US);
}

/* Column c of `from` as the next column of `to` (numbers point into `from`). */
static void row_copy(row *to, const row *from, int c)
{
    to->val[to->n] = from->val[c];
    to->len[to->n] = from->len[c];
    to->fmt[to->n++] = from->fmt[c];
}

/* A tuple of COPY (FORMAT binary). */
static int copy_row(buf *b, const row *r)
{
    char h[4];

    be16(h, (uint16_t)r->n);
    if (buf_put(b, h, 2))
        return KQ_ENOMEM;
    for (int i = 0; i < r->n; i++) {
        be32(h, r->val[i] ? (uint32_t)r->len[i] : 0xffffffffu);
        if (buf_put(b, h, 4) || (r->val[i] && buf_put(b, r->val[i], (size_t)r->len[i])))
            return KQ_ENOMEM;
    }
    return 0;
}

static const char copy_header[] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";

static void copy_start(buf *b)
{
    b->len = 0;
    buf_put(b, copy_header, sizeof copy_header - 1);
}

/* ---------------------------------------------------------------- errors */

static int pg_fail(proj_pg *pg, const char *what, PGresult *res, char *errstr, size_t errlen)
{
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(pg->conn);
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    size_t n;

    if (msg == NULL || *msg == '\0')
        msg = PQerrorMessage(pg->conn);
    n = strcspn(msg, "\n");
    return kq_seterr(errstr, errlen, KQ_EPG, "postgresql %s: %.*s%s%s%s", what, (int)n, msg,
                     state ? " (SQLSTATE " : "", state ? state : "", state ? ")" : "");
}

/* COPY `b` into the table of `sql` (COPY ... FROM STDIN (FORMAT binary)). */
static int copy_in(proj_pg *pg, const char *sql, buf *b, char *errstr, size_t errlen)
{
    PGresult *res = PQexec(pg->conn, sql);
    char trailer[2];
    int rc = 0;

    if (res == NULL || PQresultStatus(res) != PGRES_COPY_IN) {
        rc = pg_fail(pg, "copy", res, errstr, errlen);
        PQclear(res);
        return rc;
    }
    PQclear(res);
    be16(trailer, 0xffff);
    if (buf_put(b, trailer, 2) || PQputCopyData(pg->conn, b->p, (int)b->len) != 1 ||
        PQputCopyEnd(pg->conn, NULL) != 1)
        return pg_fail(pg, "copy", NULL, errstr, errlen);
    while ((res = PQgetResult(pg->conn)) != NULL) {
        if (!rc && PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = pg_fail(pg, "copy", res, errstr, errlen);
        PQclear(res);
    }
    return rc;
}

/* ---------------------------------------------------------------- open / close */

static const char stage_sql[] =
    "SET client_min_messages = warning;"
    "CREATE TEMP TABLE IF NOT EXISTS kq_stage_ver ("
    " aggregate_type text, aggregate_id text, version bigint, is_new boolean)"
    " ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS kq_stage_res ("
    " op text, id text, name text, description text, status text, version bigint,"
    " created_at timestamptz, updated_at timestamptz) ON COMMIT DELETE ROWS;"
    "RESET client_min_messages";

static const char ins_event_sql[] =
    "INSERT INTO events (topic, partition, \"offset\", event_id, aggregate_type, aggregate_id,"
    " version, event_type, occurred_at, occurred_at_us, actor, command_id, correlation_id,"
    " causation_id, schema_version, prev_hash, command_hash, payload)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)";

static const char up_version_sql[] =
    "INSERT INTO aggregate_versions (aggregate_type, aggregate_id, version) VALUES ($1, $2, $3)"
    " ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET version = EXCLUDED.version";

static const char res_full_sql[] =
    "INSERT INTO resources (id, name, description, status, version, created_at, updated_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7)"
    " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description,"
    " status = EXCLUDED.status, version = EXCLUDED.version, created_at = EXCLUDED.created_at,"
    " updated_at = EXCLUDED.updated_at";

static const char res_patch_sql[] =
    "UPDATE resources SET name = coalesce($2, name), description = coalesce($3, description),"
    " status = coalesce($4, status), version = $5, updated_at = $6 WHERE id = $1";

static const char res_del_sql[] = "DELETE FROM resources WHERE id = $1";

static const char merge_sql[] =
    "INSERT INTO aggregate_versions (aggregate_type, aggregate_id, version)"
    " SELECT aggregate_type, aggregate_id, version FROM kq_stage_ver WHERE is_new;"
    "UPDATE aggregate_versions v SET version = s.version FROM kq_stage_ver s"
    " WHERE NOT s.is_new AND v.aggregate_type = s.aggregate_type"
    " AND v.aggregate_id = s.aggregate_id;"
    "DELETE FROM resources r USING kq_stage_res s WHERE s.op = 'D' AND r.id = s.id;"
    "INSERT INTO resources (id, name, description, status, version, created_at, updated_at)"
    " SELECT id, name, description, status, version, created_at, updated_at"
    " FROM kq_stage_res WHERE op = 'F'"
    " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description,"
    " status = EXCLUDED.status, version = EXCLUDED.version, created_at = EXCLUDED.created_at,"
    " updated_at = EXCLUDED.updated_at;"
    "UPDATE resources r SET name = coalesce(s.name, r.name),"
    " description = coalesce(s.description, r.description), status = coalesce(s.status, r.status),"
    " version = s.version, updated_at = s.updated_at"
    " FROM kq_stage_res s WHERE s.op = 'P' AND r.id = s.id";

/* The same merge from array parameters in one statement (the operations touch
 * disjoint rows: one operation per aggregate). */
static const char merge_arrays_sql[] =
    "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bool[])"
    "  AS v(t, i, ver, is_new)),"
    " vi AS (INSERT INTO aggregate_versions (aggregate_type, aggregate_id, version)"
    "  SELECT t, i, ver FROM v WHERE is_new),"
    " vu AS (UPDATE aggregate_versions a SET version = v.ver FROM v"
    "  WHERE NOT v.is_new AND a.aggregate_type = v.t AND a.aggregate_id = v.i),"
    " r AS (SELECT * FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::text[],"
    "  $10::bigint[], $11::bigint[], $12::bigint[])"
    "  AS r(op, id, name, description, status, version, created_us, updated_us)),"
    " rd AS (DELETE FROM resources x USING r WHERE r.op = 'D' AND x.id = r.id),"
    " rf AS (INSERT INTO resources (id, name, description, status, version, created_at,"
    "  updated_at) SELECT id, name, description, status, version,"
    "  timestamptz 'epoch' + created_us * interval '1 microsecond',"
    "  timestamptz 'epoch' + updated_us * interval '1 microsecond' FROM r WHERE op = 'F'"
    "  ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,"
    "  description = EXCLUDED.description, status = EXCLUDED.status,"
    "  version = EXCLUDED.version, created_at = EXCLUDED.created_at,"
    "  updated_at = EXCLUDED.updated_at),"
    " rp AS (UPDATE resources x SET name = coalesce(r.name, x.name),"
    "  description = coalesce(r.description, x.description),"
    "  status = coalesce(r.status, x.status), version = r.version,"
    "  updated_at = timestamptz 'epoch' + r.updated_us * interval '1 microsecond'"
    "  FROM r WHERE r.op = 'P' AND x.id = r.id)"
    " SELECT 1";

/* The read model lock and the schema's current OID, first in every batch. */
static const char lock_sql[] = "SELECT pg_advisory_xact_lock(hashtext($1)),"
                               " (SELECT oid FROM pg_namespace WHERE nspname = $2)::text";

static const char events_copy_sql[] =
    "COPY events (topic, partition, \"offset\", event_id, aggregate_type, aggregate_id, version,"
    " event_type, occurred_at, occurred_at_us, actor, command_id, correlation_id, causation_id,"
    " schema_version, prev_hash, command_hash, payload) FROM STDIN (FORMAT binary)";

static const char versions_sql[] =
    "SELECT v.aggregate_type, v.aggregate_id, v.version FROM aggregate_versions v"
    " JOIN unnest($1::text[], $2::text[]) AS k(t, i)"
    " ON v.aggregate_type = k.t AND v.aggregate_id = k.i";

static const char present_sql[] = "SELECT e.topic, e.partition, e.\"offset\" FROM events e"
                                  " JOIN unnest($1::text[], $2::int[], $3::bigint[]) AS k(t, p, o)"
                                  " ON e.topic = k.t AND e.partition = k.p AND e.\"offset\" = k.o";

static const char offsets_sql[] =
    "WITH o AS (INSERT INTO projection_offsets (topic, partition, next_offset)"
    " SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])"
    " ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset"
    " RETURNING 1) SELECT pg_notify('kcqrs_projection', '') FROM (SELECT count(*) FROM o) c";

/* Workflows and runs (wfrun_write): one statement per applied event. */
static const char wf_create_sql[] =
    "INSERT INTO workflows (id, name, enabled, actions, version, created_at, updated_at)"
    " VALUES ($1, $2, $3::boolean, $4::jsonb, $5::bigint, $6::timestamptz, $6::timestamptz)"
    " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, enabled = EXCLUDED.enabled,"
    " actions = EXCLUDED.actions, version = EXCLUDED.version, created_at = EXCLUDED.created_at,"
    " updated_at = EXCLUDED.updated_at";
static const char wf_update_sql[] =
    "UPDATE workflows SET name = COALESCE($2, name), actions = COALESCE($3::jsonb, actions),"
    " enabled = COALESCE($4::boolean, enabled), version = $5::bigint,"
    " updated_at = $6::timestamptz WHERE id = $1";
static const char wf_delete_sql[] = "DELETE FROM workflows WHERE id = $1";
/* A RunStarted of an existing run (only in a crafted log) starts it afresh, as in LMDB. */
static const char run_start_sql[] =
    "WITH d AS (DELETE FROM run_attempts WHERE run_id = $1)"
    " INSERT INTO runs (id, workflow_id, workflow_version, trigger, status, payload, error, steps,"
    " version, created_at, updated_at) VALUES ($1, $2, $3::bigint, $4, 'pending', $5::jsonb,"
    " NULL, $6::jsonb, $7::bigint, $8::timestamptz, $8::timestamptz) ON CONFLICT (id) DO UPDATE"
    " SET workflow_id = EXCLUDED.workflow_id, workflow_version = EXCLUDED.workflow_version,"
    " trigger = EXCLUDED.trigger, status = 'pending', payload = EXCLUDED.payload, error = NULL,"
    " steps = EXCLUDED.steps, version = EXCLUDED.version, created_at = EXCLUDED.created_at,"
    " updated_at = EXCLUDED.updated_at";
static const char run_attempt_sql[] =
    "WITH a AS (INSERT INTO run_attempts (run_id, step, attempt, status_code, error, at,"
    " duration_ms, next_delay_ms, delivery_id) SELECT $1, $2::int, $3::bigint, $4::int, $5,"
    " $6::timestamptz, $7::bigint, $8::bigint, $9 FROM runs r WHERE r.id = $1"
    " AND jsonb_array_length(r.steps) > $2::int ON CONFLICT DO NOTHING RETURNING 1)"
    " UPDATE runs SET status = CASE status WHEN 'pending' THEN 'running' ELSE status END,"
    " steps = CASE WHEN steps -> $2::int ->> 'status' = 'pending'"
    " THEN jsonb_set(steps, ARRAY[$2::int::text, 'status'], '\"running\"', false) ELSE steps END,"
    " version = $10::bigint, updated_at = $6::timestamptz WHERE id = $1";
static const char run_step_sql[] =
    "UPDATE runs SET steps = CASE WHEN jsonb_array_length(steps) > $2::int"
    " THEN jsonb_set(steps, ARRAY[$2::int::text, 'status'], to_jsonb($3::text), false)"
    " ELSE steps END, version = $4::bigint, updated_at = $5::timestamptz WHERE id = $1";
static const char run_end_sql[] =
    "UPDATE runs SET status = $2, error = $3, version = $4::bigint, updated_at = $5::timestamptz"
    " WHERE id = $1";

static int prepare(proj_pg *pg, const char *name, const char *sql, char *errstr, size_t errlen)
{
    PGresult *res = PQprepare(pg->conn, name, sql, 0, NULL);
    int rc = 0;

    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = pg_fail(pg, "prepare", res, errstr, errlen);
    PQclear(res);
    return rc;
}

int proj_pg_open(const kq_config *cfg, proj_pg **out, char *errstr, size_t errlen)
{
    return proj_pg_open_schema(cfg, cfg ? cfg->pg_schema : NULL, PROJ_PG_CREATE_SCHEMA, out, errstr,
                               errlen);
}

/* The schema's pg_namespace OID into pg->oid; KQ_ENOTFOUND when it does not exist. */
static int schema_oid(proj_pg *pg, char *errstr, size_t errlen)
{
    const char *params[1] = {pg->schema};
    PGresult *res = NULL;
    int rc;

    if ((rc = kq_pg_exec_params(pg->conn, "SELECT oid::text FROM pg_namespace WHERE nspname = $1",
                                1, params, &res, errstr, errlen)))
        return rc;
    if (PQntuples(res) != 1)
        rc = kq_seterr(errstr, errlen, KQ_ENOTFOUND, "postgresql: schema %s does not exist",
                       pg->schema);
    else
        snprintf(pg->oid, sizeof pg->oid, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
}

int proj_pg_open_schema(const kq_config *cfg, const char *schema, int flags, proj_pg **out,
                        char *errstr, size_t errlen)
{
    proj_pg *pg;
    int rc, applied = 0;
    char sql[512];

    *out = NULL;
    if (cfg == NULL || cfg->pg_dsn == NULL || *cfg->pg_dsn == '\0')
        return kq_seterr(errstr, errlen, KQ_ECONFIG, "KCQRS_PG_DSN is not set");
    if (!kq_pg_schema_valid(schema))
        return kq_seterr(errstr, errlen, KQ_ECONFIG, "invalid PostgreSQL schema name '%.80s'",
                         schema ? schema : "(null)");
    if ((pg = calloc(1, sizeof *pg)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    pg->path = PROJ_PG_PATH_COPY;
    pg->sync_commit_off = 1;
    snprintf(pg->schema, sizeof pg->schema, "%s", schema);
    snprintf(pg->lockname, sizeof pg->lockname, "kcqrs.readmodel:%s", schema);
    pg->conn = kq_pg_connect_schema(cfg->pg_dsn, cfg->kafka_timeout_ms, "kcqrs-projector", schema,
                                    errstr, errlen);
    if (pg->conn == NULL) {
        rc = KQ_EPG;
        goto fail;
    }
    /* The name is validated: no quoting needed. CREATE SCHEMA IF NOT EXISTS is
     * not safe against a concurrent creator (unique violation), so the
     * statements run as one implicit transaction under an advisory lock:
     * a second projector starting at the same moment waits, then sees it. */
    snprintf(sql, sizeof sql,
             "SELECT pg_advisory_xact_lock(hashtext('kcqrs.schema:%s'));"
             " SET client_min_messages = warning; CREATE SCHEMA IF NOT EXISTS %s;"
             " RESET client_min_messages",
             schema, schema);
    if ((flags & PROJ_PG_CREATE_SCHEMA) && (rc = kq_pg_exec(pg->conn, sql, errstr, errlen)))
        goto fail;
    if ((rc = schema_oid(pg, errstr, errlen)))
        goto fail;
    if ((rc = proj_migrate_apply_embedded(pg->conn, &applied, errstr, errlen)))
        goto fail;
    if (applied > 0)
        kq_log_info("postgresql: %d schema migration(s) applied in schema %s", applied, schema);
    if ((rc = kq_pg_exec(pg->conn, "SET synchronous_commit = off", errstr, errlen)) ||
        (rc = prepare(pg, "kq_lock", lock_sql, errstr, errlen)) ||
        (rc = prepare(pg, "kq_ins_event", ins_event_sql, errstr, errlen)) ||
        (rc = prepare(pg, "kq_up_version", up_version_sql, errstr, errlen)) ||
        (rc = prepare(pg, "kq_res_full", res_full_sql, errstr, errlen)) ||
        (rc = prepare(pg, "kq_res_patch", res_patch_sql, errstr, errlen)) ||
        (rc = prepare(pg, "kq_res_del", res_del_sql, errstr, errlen)) ||
        (rc = prepare(pg, "kq_wf_create", wf_create_sql, errstr, errlen)) ||
        (rc = prepare(pg, "kq_wf_update", wf_update_sql, errstr, errlen)) ||
        (rc = prepare(pg, "kq_wf_delete", wf_delete_sql, errstr, errlen)) ||
        (rc = prepare(pg, "kq_run_start", run_start_sql, errstr, errlen)) ||
        (rc = prepare(pg, "kq_run_attempt", run_attempt_sql, errstr, errlen)) ||
        (rc = prepare(pg, "kq_run_step", run_step_sql, errstr, errlen)) ||
        (rc = prepare(pg, "kq_run_end", run_end_sql, errstr, errlen)))
        goto fail;
    *out = pg;
    return 0;
fail:
    proj_pg_close(pg);
    return rc;
}

/* First statement of every batch: wait for the read model lock (kcqrs-replay
 * holds it for its final catch-up and switch), then make sure the schema of
 * our name is still the one we opened. */
static int lock_check(proj_pg *pg, char *errstr, size_t errlen)
{
    const char *params[2] = {pg->lockname, pg->schema};
    PGresult *res = PQexecPrepared(pg->conn, "kq_lock", 2, params, NULL, NULL, 0);
    int rc = 0;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        rc = pg_fail(pg, "read model lock", res, errstr, errlen);
    else if (PQgetisnull(res, 0, 1) || strcmp(PQgetvalue(res, 0, 1), pg->oid) != 0)
        rc = kq_seterr(errstr, errlen, KQ_ESWITCHED,
                       "postgresql: schema %s was replaced (a rebuilt read model was switched in);"
                       " reopening",
                       pg->schema);
    PQclear(res);
    return rc;
}

int proj_pg_set_path(proj_pg *pg, proj_pg_path path, int synchronous_commit, char *errstr,
                     size_t errlen)
{
    int rc;

    if (path != PROJ_PG_PATH_COPY && path != PROJ_PG_PATH_PIPELINE &&
        path != PROJ_PG_PATH_COPY_STAGING)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "unknown write path %d", (int)path);
    if ((rc = kq_pg_exec(pg->conn,
                         synchronous_commit ? "SET synchronous_commit = on"
                                            : "SET synchronous_commit = off",
                         errstr, errlen)))
        return rc;
    /* the staging tables exist only on connections that use them */
    if (path == PROJ_PG_PATH_COPY_STAGING && (rc = kq_pg_exec(pg->conn, stage_sql, errstr, errlen)))
        return rc;
    pg->path = path;
    pg->sync_commit_off = !synchronous_commit;
    return 0;
}

void proj_pg_close(proj_pg *pg)
{
    if (pg == NULL)
        return;
    if (pg->conn != NULL)
        PQfinish(pg->conn);
    free(pg->aggs);
    free(pg->info);
    free(pg->json.p);
    free(pg->copy.p);
    free(pg->a1.p);
    free(pg->a2.p);
    free(pg->a3.p);
    for (int i = 0; i < 12; i++)
        free(pg->arr[i].p);
    free(pg);
}

int proj_pg_load_offsets(proj_pg *pg, proj_offset_fn cb, void *arg, char *errstr, size_t errlen)
{
    PGresult *res = NULL;
    int rc;

    if ((rc = kq_pg_exec_params(pg->conn,
                                "SELECT topic, partition, next_offset FROM projection_offsets"
                                " ORDER BY topic, partition",
                                0, NULL, &res, errstr, errlen)))
        return rc;
    for (int r = 0; r < PQntuples(res); r++)
        cb(arg, PQgetvalue(res, r, 0), (int32_t)strtol(PQgetvalue(res, r, 1), NULL, 10),
           (int64_t)strtoll(PQgetvalue(res, r, 2), NULL, 10));
    PQclear(res);
    return 0;
}

/* ---------------------------------------------------------------- aggregates */

static uint32_t agg_hash(const char *type, const char *id, size_t len)
{
    uint32_t h = 2166136261u;

    for (const char *t = type; *t; t++)
        h = (h ^ (uint8_t)*t) * 16777619u;
    h = (h ^ 0xffu) * 16777619u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)id[i]) * 16777619u;
    return h;
}

static agg *agg_find(proj_pg *pg, const char *type, const char *id, size_t len, int create)
{
    uint32_t h = agg_hash(type, id, len);
    size_t mask = pg->aggcap - 1;

    for (size_t i = h & mask;; i = (i + 1) & mask) {
        agg *a = &pg->aggs[i];
        if (!a->used) {
            if (!create)
                return NULL;
            memset(a, 0, sizeof *a);
            a->used = 1;
            a->type = type;
            a->id = id;
            a->idlen = (uint32_t)len;
            a->hash = h;
            a->status = -1;
            return a;
        }
        if (a->hash == h && a->idlen == len && strcmp(a->type, type) == 0 &&
            memcmp(a->id, id, len) == 0)
            return a;
    }
}

static const char *agg_type_name(const ev_envelope *e)
{
    const char *t = ev_aggregate_type_name(e->aggregate_type);
    return t ? t : "unknown";
}

static int has_nul(ev_str s)
{
    return s.ptr != NULL && memchr(s.ptr, '\0', s.len) != NULL;
}

/* Does JSON text contain the escape \u0000? (A backslash starts an escape;
 * the character after it is skipped, so "\\u0000" is not one.) */
static int json_has_nul(const char *j, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (j[i] != '\\')
            continue;
        if (n - i >= 6 && memcmp(j + i + 1, "u0000", 5) == 0)
            return 1;
        i++;
    }
    return 0;
}

/* ---------------------------------------------------------------- per batch */

static int batch_prepare(proj_pg *pg, size_t n, char *errstr, size_t errlen)
{
    size_t want = 16;

    while (want < 2 * n + 2)
        want *= 2;
    if (want > pg->aggcap) {
        agg *na = realloc(pg->aggs, want * sizeof *na);
        if (na == NULL)
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        pg->aggs = na;
        pg->aggcap = want;
    }
    memset(pg->aggs, 0, pg->aggcap * sizeof *pg->aggs);
    if (n > pg->infocap) {
        evinfo *ni = realloc(pg->info, n * sizeof *ni);
        if (ni == NULL)
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        pg->info = ni;
        pg->infocap = n;
    }
    if (n > 0) /* an offsets-only batch (past transaction markers) has no events */
        memset(pg->info, 0, n * sizeof *pg->info);
    pg->json.len = 0;
    return 0;
}

/* Stored versions of every aggregate of the batch: one query. */
static int load_versions(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen)
{
    const char *params[2];
    PGresult *res = NULL;
    int rc = 0, any = 0;

    arr_start(&pg->a1);
    arr_start(&pg->a2);
    for (size_t i = 0; i < pg->aggcap; i++) {
        agg *a = &pg->aggs[i];
        if (!a->used)
            continue;
        any = 1;
        if (arr_add(&pg->a1, a->type, strlen(a->type)) || arr_add(&pg->a2, a->id, a->idlen))
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    if (!any)
        return 0;
    if (arr_end(&pg->a1) || arr_end(&pg->a2))
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    params[0] = pg->a1.p;
    params[1] = pg->a2.p;
    if ((rc = kq_pg_exec_params(pg->conn, versions_sql, 2, params, &res, errstr, errlen)))
        return rc;
    for (int r = 0; r < PQntuples(res); r++) {
        const char *t = PQgetvalue(res, r, 0), *id = PQgetvalue(res, r, 1);
        agg *a;
        /* the type names are ours: map back to the static strings */
        const char *st = strcmp(t, "resource") == 0   ? "resource"
                         : strcmp(t, "workflow") == 0 ? "workflow"
                         : strcmp(t, "run") == 0      ? "run"
                                                      : "unknown";
        if ((a = agg_find(pg, st, id, (size_t)PQgetlength(res, r, 1), 0)) != NULL)
            a->stored = a->cur = (int64_t)strtoll(PQgetvalue(res, r, 2), NULL, 10);
    }
    PQclear(res);
    (void)b;
    return 0;
}

/* Events whose version is not above the stored one: already in `events` at the
 * same origin (skip) or not (dead-letter). One query for all of them. */
static int check_present(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen)
{
    const char *params[3];
    PGresult *res = NULL;
    char num[24];
    int rc, any = 0;

    arr_start(&pg->a1);
    arr_start(&pg->a2);
    arr_start(&pg->a3);
    for (size_t i = 0; i < b->n; i++) {
        if (pg->info[i].st != ST_MAYBE_DUP)
            continue;
        any = 1;
        rc = arr_add(&pg->a1, b->ev[i].topic, strlen(b->ev[i].topic));
        snprintf(num, sizeof num, "%" PRId32, b->ev[i].partition);
        rc |= arr_add(&pg->a2, num, strlen(num));
        snprintf(num, sizeof num, "%" PRId64, b->ev[i].offset);
        rc |= arr_add(&pg->a3, num, strlen(num));
        if (rc)
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    if (!any)
        return 0;
    if (arr_end(&pg->a1) || arr_end(&pg->a2) || arr_end(&pg->a3))
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    params[0] = pg->a1.p;
    params[1] = pg->a2.p;
    params[2] = pg->a3.p;
    if ((rc = kq_pg_exec_params(pg->conn, present_sql, 3, params, &res, errstr, errlen)))
        return rc;
    for (size_t i = 0; i < b->n; i++) {
        const proj_event *ev = &b->ev[i];
        int found = 0;

        if (pg->info[i].st != ST_MAYBE_DUP)
            continue;
        for (int r = 0; r < PQntuples(res) && !found; r++)
            found = strcmp(PQgetvalue(res, r, 0), ev->topic) == 0 &&
                    strtol(PQgetvalue(res, r, 1), NULL, 10) == ev->partition &&
                    strtoll(PQgetvalue(res, r, 2), NULL, 10) == ev->offset;
        pg->info[i].st = found ? ST_SKIP : ST_DEAD;
        if (!found)
            pg->info[i].reason = "stale";
    }
    PQclear(res);
    return 0;
}

/* Fold one applied resource event into its aggregate's row operation. */
static void fold_resource(agg *a, const ev_envelope *e)
{
    switch (e->payload_type) {
    case EV_RESOURCE_CREATED: {
        const ev_resource_created *c = &e->payload.resource_created;
        a->rop = R_FULL;
        a->name = c->name;
        a->desc = c->description.ptr ? c->description : ev_str_c("");
        a->status = (int)c->status;
        a->created_us = a->updated_us = e->occurred_at_us;
        a->rversion = e->version;
        break;
    }
    case EV_RESOURCE_UPDATED: {
        const ev_resource_updated *u = &e->payload.resource_updated;
        if (a->rop == R_DEL)
            break; /* an update of a deleted resource changes no row */
        if (a->rop == R_NONE) {
            a->rop = R_PATCH;
            a->name.ptr = a->desc.ptr = NULL;
            a->status = -1;
        }
        if (u->name.ptr)
            a->name = u->name;
        if (u->description.ptr)
            a->desc = u->description;
        if (u->has_status)
            a->status = (int)u->status;
        a->updated_us = e->occurred_at_us;
        a->rversion = e->version;
        break;
    }
    case EV_RESOURCE_DELETED:
        a->rop = R_DEL;
        break;
    default:
        break;
    }
}

static const char *status_name(int s)
{
    static const char *const names[] = {"active", "inactive", "archived"};
    return s >= 0 && s < 3 ? names[s] : NULL;
}

static void event_row(proj_pg *pg, const proj_event *ev, const evinfo *in, row *r)
{
    const ev_envelope *e = &ev->env;

    r->n = 0;
    row_cstr(r, ev->topic);
    row_i32(r, ev->partition);
    row_i64(r, ev->offset);
    row_bytes(r, e->event_id.bytes, 16);
    row_cstr(r, in->a->type);
    row_str(r, e->aggregate_id);
    row_i64(r, e->version);
    row_cstr(r, ev_event_type_name(e->payload_type) ? ev_event_type_name(e->payload_type) : "NONE");
    row_ts(r, e->occurred_at_us);
    row_i64(r, e->occurred_at_us);
    row_str(r, e->actor);
    row_str(r, e->command_id);
    row_str(r, e->correlation_id);
    row_str(r, e->causation_id);
    row_i32(r, e->schema_version);
    row_bytes(r, e->prev_hash.ptr, e->prev_hash.len);
    row_bytes(r, e->command_hash.ptr, e->command_hash.len);
    row_bytes(r, pg->json.p + in->json_off, in->json_len);
}

static void res_row(const agg *a, row *r)
{
    r->n = 0;
    row_cstr(r, a->rop == R_FULL ? "F" : a->rop == R_PATCH ? "P" : "D");
    row_bytes(r, a->id, a->idlen);
    if (a->rop == R_DEL) {
        for (int i = 0; i < 6; i++)
            row_null(r);
        return;
    }
    row_str(r, a->name);
    row_str(r, a->desc);
    if (status_name(a->status))
        row_cstr(r, status_name(a->status));
    else
        row_null(r);
    row_i64(r, a->rversion);
    if (a->rop == R_FULL)
        row_ts(r, a->created_us);
    else
        row_null(r);
    row_ts(r, a->updated_us);
}

/* is_new: no row in aggregate_versions when the batch started (the batch's
 * version query found none), so a plain INSERT does; else an UPDATE. */
static void ver_row(const agg *a, row *r)
{
    r->n = 0;
    row_cstr(r, a->type);
    row_bytes(r, a->id, a->idlen);
    row_i64(r, a->cur);
    r->num[r->n][0] = a->stored == 0;
    row_bytes(r, r->num[r->n], 1);
}

/* COPY the rows of the batch's applied events into `events` (both COPY paths). */
static int copy_events(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen)
{
    row r;

    copy_start(&pg->copy);
    for (size_t i = 0; i < b->n; i++) {
        if (pg->info[i].st != ST_APPLY)
            continue;
        event_row(pg, &b->ev[i], &pg->info[i], &r);
        if (copy_row(&pg->copy, &r))
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    return copy_in(pg, events_copy_sql, &pg->copy, errstr, errlen);
}

static int write_copy_staging(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen)
{
    row r;
    int rc, nres = 0, nver = 0;

    if ((rc = copy_events(pg, b, errstr, errlen)))
        return rc;
    copy_start(&pg->copy);
    for (size_t i = 0; i < pg->aggcap; i++) {
        agg *a = &pg->aggs[i];
        if (!a->used || a->cur == a->stored)
            continue;
        ver_row(a, &r);
        nver++;
        if (copy_row(&pg->copy, &r))
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    if (nver && (rc = copy_in(pg, "COPY kq_stage_ver FROM STDIN (FORMAT binary)", &pg->copy, errstr,
                              errlen)))
        return rc;
    copy_start(&pg->copy);
    for (size_t i = 0; i < pg->aggcap; i++) {
        agg *a = &pg->aggs[i];
        if (!a->used || a->rop == R_NONE)
            continue;
        res_row(a, &r);
        nres++;
        if (copy_row(&pg->copy, &r))
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    if (nres && (rc = copy_in(pg, "COPY kq_stage_res FROM STDIN (FORMAT binary)", &pg->copy, errstr,
                              errlen)))
        return rc;
    if (nver || nres)
        return kq_pg_exec(pg->conn, merge_sql, errstr, errlen);
    return 0;
}

static int arr_str(buf *b, ev_str v)
{
    if (v.ptr == NULL)
        return b->len == 0 || buf_puts(b, b->len > 1 ? ",NULL" : "NULL") ? KQ_ENOMEM : 0;
    return arr_add(b, v.ptr, v.len);
}

static int arr_i64(buf *b, int64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%" PRId64, v);
    return arr_add(b, num, strlen(num));
}

/* COPY the event rows, then versions and resources in one statement from arrays. */
static int write_copy_arrays(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen)
{
    const char *params[12];
    buf *A = pg->arr;
    int rc, any = 0;

    if ((rc = copy_events(pg, b, errstr, errlen)))
        return rc;
    for (int k = 0; k < 12; k++)
        arr_start(&A[k]);
    rc = 0;
    for (size_t i = 0; i < pg->aggcap; i++) {
        const agg *a = &pg->aggs[i];
        if (!a->used)
            continue;
        if (a->cur != a->stored) {
            any = 1;
            rc |= arr_add(&A[0], a->type, strlen(a->type));
            rc |= arr_add(&A[1], a->id, a->idlen);
            rc |= arr_i64(&A[2], a->cur);
            rc |= arr_add(&A[3], a->stored == 0 ? "t" : "f", 1);
        }
        if (a->rop != R_NONE) {
            ev_str none = {NULL, 0};
            any = 1;
            rc |= arr_add(&A[4], a->rop == R_FULL ? "F" : a->rop == R_PATCH ? "P" : "D", 1);
            rc |= arr_add(&A[5], a->id, a->idlen);
            rc |= arr_str(&A[6], a->rop == R_DEL ? none : a->name);
            rc |= arr_str(&A[7], a->rop == R_DEL ? none : a->desc);
            rc |= arr_str(&A[8], a->rop != R_DEL && status_name(a->status)
                                     ? ev_str_c(status_name(a->status))
                                     : none);
            rc |= arr_i64(&A[9], a->rversion);
            rc |= arr_i64(&A[10], a->created_us);
            rc |= arr_i64(&A[11], a->updated_us);
        }
    }
    for (int k = 0; k < 12; k++) {
        rc |= arr_end(&A[k]);
        params[k] = A[k].p;
    }
    if (rc)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    if (!any)
        return 0;
    return kq_pg_exec_params(pg->conn, merge_arrays_sql, 12, params, NULL, errstr, errlen);
}

static int send_row(proj_pg *pg, const char *stmt, const row *r)
{
    return PQsendQueryPrepared(pg->conn, stmt, r->n, r->val, r->len, r->fmt, 0) == 1 ? 0 : -1;
}

static int write_pipeline(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen)
{
    PGresult *res;
    row r;
    int rc = 0, sent = 0, synced = 0;

    if (PQenterPipelineMode(pg->conn) != 1)
        return pg_fail(pg, "pipeline", NULL, errstr, errlen);
    for (size_t i = 0; i < b->n && !rc; i++) {
        if (pg->info[i].st != ST_APPLY)
            continue;
        event_row(pg, &b->ev[i], &pg->info[i], &r);
        rc = send_row(pg, "kq_ins_event", &r);
        sent++;
    }
    for (size_t i = 0; i < pg->aggcap && !rc; i++) {
        agg *a = &pg->aggs[i];
        if (!a->used)
            continue;
        if (a->cur != a->stored) {
            ver_row(a, &r);
            r.n = 3; /* the upsert does not need is_new */
            rc = send_row(pg, "kq_up_version", &r);
            sent++;
        }
        if (!rc && a->rop != R_NONE) {
            /* res_row's columns: op, id, name, description, status, version,
             * created_at, updated_at; each statement takes its own subset */
            row p;
            res_row(a, &r);
            p.n = 0;
            if (a->rop == R_FULL) {
                for (int c = 1; c < RES_COLS; c++)
                    row_copy(&p, &r, c);
            } else if (a->rop == R_PATCH) {
                for (int c = 1; c < RES_COLS; c++)
                    if (c != 6)
                        row_copy(&p, &r, c);
            } else {
                row_copy(&p, &r, 1);
            }
            rc = send_row(pg,
                          a->rop == R_FULL    ? "kq_res_full"
                          : a->rop == R_PATCH ? "kq_res_patch"
                                              : "kq_res_del",
                          &p);
            sent++;
        }
    }
    if (!rc)
        rc = PQpipelineSync(pg->conn) == 1 ? 0 : -1;
    if (rc) {
        rc = pg_fail(pg, "pipeline send", NULL, errstr, errlen);
        PQexitPipelineMode(pg->conn);
        return rc;
    }
    /* sent results (each followed by NULL), then the sync */
    while (!synced) {
        if ((res = PQgetResult(pg->conn)) == NULL) {
            if (PQstatus(pg->conn) != CONNECTION_OK) {
                rc = rc ? rc : pg_fail(pg, "pipeline", NULL, errstr, errlen);
                break;
            }
            continue;
        }
        switch (PQresultStatus(res)) {
        case PGRES_PIPELINE_SYNC:
            synced = 1;
            break;
        case PGRES_COMMAND_OK:
        case PGRES_PIPELINE_ABORTED:
            break;
        default:
            if (!rc)
                rc = pg_fail(pg, "pipeline", res, errstr, errlen);
            break;
        }
        PQclear(res);
    }
    if (PQexitPipelineMode(pg->conn) != 1 && !rc)
        rc = pg_fail(pg, "pipeline exit", NULL, errstr, errlen);
    (void)sent;
    return rc;
}

static int store_offsets(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen)
{
    const char *params[3];
    char num[24];
    int rc = 0;

    arr_start(&pg->a1);
    arr_start(&pg->a2);
    arr_start(&pg->a3);
    for (size_t i = 0; i < b->nnext; i++) {
        rc |= arr_add(&pg->a1, b->next[i].topic, strlen(b->next[i].topic));
        snprintf(num, sizeof num, "%" PRId32, b->next[i].partition);
        rc |= arr_add(&pg->a2, num, strlen(num));
        snprintf(num, sizeof num, "%" PRId64, b->next[i].next_offset);
        rc |= arr_add(&pg->a3, num, strlen(num));
    }
    rc |= arr_end(&pg->a1) | arr_end(&pg->a2) | arr_end(&pg->a3);
    if (rc)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    params[0] = pg->a1.p;
    params[1] = pg->a2.p;
    params[2] = pg->a3.p;
    return kq_pg_exec_params(pg->conn, offsets_sql, 3, params, NULL, errstr, errlen);
}

/* ---------------------------------------------------------------- bulk fold */

/* One aggregate of the fold: its last version and, for a live resource, its row. */
typedef struct fentry {
    const char *type; /* static name; NULL: free slot */
    char *id;
    uint32_t idlen, hash;
    int64_t version;
    int has_res;
    char *name, *desc;
    uint32_t namelen, desclen;
    int status;
    int64_t rversion, created_us, updated_us;
} fentry;

struct proj_pg_fold {
    fentry *e;
    size_t cap, n; /* cap: power of two */
    int broken;
};

proj_pg_fold *proj_pg_fold_new(void)
{
    proj_pg_fold *f = calloc(1, sizeof *f);

    if (f == NULL)
        return NULL;
    f->cap = 1024;
    if ((f->e = calloc(f->cap, sizeof *f->e)) == NULL) {
        free(f);
        return NULL;
    }
    return f;
}

void proj_pg_fold_free(proj_pg_fold *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->cap; i++) {
        free(f->e[i].id);
        free(f->e[i].name);
        free(f->e[i].desc);
    }
    free(f->e);
    free(f);
}

size_t proj_pg_fold_count(const proj_pg_fold *f)
{
    return f ? f->n : 0;
}

void proj_pg_set_fold(proj_pg *pg, proj_pg_fold *f)
{
    pg->fold = f;
}

static fentry *fold_slot(fentry *e, size_t cap, const char *type, const char *id, size_t len,
                         uint32_t h)
{
    size_t mask = cap - 1;

    for (size_t i = h & mask;; i = (i + 1) & mask) {
        fentry *x = &e[i];
        if (x->type == NULL || (x->hash == h && x->idlen == len && strcmp(x->type, type) == 0 &&
                                memcmp(x->id, id, len) == 0))
            return x;
    }
}

static fentry *fold_find(proj_pg_fold *f, const agg *a, int create)
{
    fentry *x;

    if (create && 2 * (f->n + 1) > f->cap) {
        size_t ncap = f->cap * 2;
        fentry *ne = calloc(ncap, sizeof *ne);
        if (ne == NULL)
            return NULL;
        for (size_t i = 0; i < f->cap; i++)
            if (f->e[i].type != NULL)
                *fold_slot(ne, ncap, f->e[i].type, f->e[i].id, f->e[i].idlen, f->e[i].hash) =
                    f->e[i];
        free(f->e);
        f->e = ne;
        f->cap = ncap;
    }
    x = fold_slot(f->e, f->cap, a->type, a->id, a->idlen, a->hash);
    if (x->type != NULL || !create)
        return x->type != NULL ? x : NULL;
    if ((x->id = malloc(a->idlen ? a->idlen : 1)) == NULL)
        return NULL;
    memcpy(x->id, a->id, a->idlen);
    x->type = a->type;
    x->idlen = a->idlen;
    x->hash = a->hash;
    f->n++;
    return x;
}

/* The batch's aggregates start from the fold's versions (load_versions' job). */
static int fold_versions(proj_pg *pg)
{
    for (size_t i = 0; i < pg->aggcap; i++) {
        agg *a = &pg->aggs[i];
        const fentry *x;
        if (a->used && (x = fold_find(pg->fold, a, 0)) != NULL)
            a->stored = a->cur = x->version;
    }
    return 0;
}

static int fold_str(char **dst, uint32_t *dlen, ev_str v)
{
    char *p = malloc(v.len ? v.len : 1);

    if (p == NULL)
        return KQ_ENOMEM;
    memcpy(p, v.ptr, v.len);
    free(*dst);
    *dst = p;
    *dlen = (uint32_t)v.len;
    return 0;
}

/* After COMMIT: what merge_arrays_sql would have done to the tables, to the fold. */
static int fold_batch(proj_pg *pg)
{
    for (size_t i = 0; i < pg->aggcap; i++) {
        agg *a = &pg->aggs[i];
        fentry *x;

        if (!a->used || (a->cur == a->stored && a->rop == R_NONE))
            continue;
        if ((x = fold_find(pg->fold, a, 1)) == NULL)
            return KQ_ENOMEM;
        x->version = a->cur;
        switch (a->rop) {
        case R_FULL: /* upsert: every column */
            if ((a->name.ptr == NULL ? (free(x->name), x->name = NULL, 0)
                                     : fold_str(&x->name, &x->namelen, a->name)) ||
                fold_str(&x->desc, &x->desclen, a->desc))
                return KQ_ENOMEM;
            x->has_res = 1;
            x->status = a->status;
            x->rversion = a->rversion;
            x->created_us = a->created_us;
            x->updated_us = a->updated_us;
            break;
        case R_PATCH: /* UPDATE of an existing row only; coalesce the changed columns */
            if (!x->has_res)
                break;
            if ((a->name.ptr && fold_str(&x->name, &x->namelen, a->name)) ||
                (a->desc.ptr && fold_str(&x->desc, &x->desclen, a->desc)))
                return KQ_ENOMEM;
            if (status_name(a->status))
                x->status = a->status;
            x->rversion = a->rversion;
            x->updated_us = a->updated_us;
            break;
        case R_DEL:
            x->has_res = 0;
            break;
        default:
            break;
        }
    }
    return 0;
}

int proj_pg_fold_flush(proj_pg *pg, char *errstr, size_t errlen)
{
    proj_pg_fold *f = pg->fold;
    row r;
    int rc;

    if (f == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "proj_pg_fold_flush: not in bulk mode");
    if (f->broken)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "postgresql bulk fold is incomplete");
    if ((rc = kq_pg_begin(pg->conn, errstr, errlen)))
        return rc;
    copy_start(&pg->copy);
    for (size_t i = 0; i < f->cap; i++) {
        const fentry *x = &f->e[i];
        if (x->type == NULL)
            continue;
        r.n = 0;
        row_cstr(&r, x->type);
        row_bytes(&r, x->id, x->idlen);
        row_i64(&r, x->version);
        if (copy_row(&pg->copy, &r)) {
            rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
            goto fail;
        }
    }
    if ((rc = copy_in(pg,
                      "COPY aggregate_versions (aggregate_type, aggregate_id, version)"
                      " FROM STDIN (FORMAT binary)",
                      &pg->copy, errstr, errlen)))
        goto fail;
    copy_start(&pg->copy);
    for (size_t i = 0; i < f->cap; i++) {
        const fentry *x = &f->e[i];
        if (x->type == NULL || !x->has_res)
            continue;
        r.n = 0;
        row_bytes(&r, x->id, x->idlen);
        row_bytes(&r, x->name, x->namelen);
        row_bytes(&r, x->desc ? x->desc : "", x->desclen);
        if (status_name(x->status))
            row_cstr(&r, status_name(x->status));
        else
            row_null(&r);
        row_i64(&r, x->rversion);
        row_ts(&r, x->created_us);
        row_ts(&r, x->updated_us);
        if (copy_row(&pg->copy, &r)) {
            rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
            goto fail;
        }
    }
    if ((rc = copy_in(pg,
                      "COPY resources (id, name, description, status, version, created_at,"
                      " updated_at) FROM STDIN (FORMAT binary)",
                      &pg->copy, errstr, errlen)) ||
        (rc = kq_pg_commit(pg->conn, errstr, errlen)))
        goto fail;
    return 0;
fail:
    if (PQstatus(pg->conn) == CONNECTION_OK) {
        char ignore[128];
        kq_pg_rollback(pg->conn, ignore, sizeof ignore);
    }
    return rc;
}

/* ------------------------------------------------------------ workflows and runs */

/* 1 when the (present) string is valid UTF-8 (what PostgreSQL text accepts) without NUL. */
static int text_ok(ev_str s)
{
    json_t *j;

    if (s.ptr == NULL)
        return 1;
    if (memchr(s.ptr, 0, s.len) != NULL || (j = json_stringn(s.ptr, s.len)) == NULL)
        return 0;
    json_decref(j);
    return 1;
}

/*
 * Replace the secret `field` of the payload JSON printed at pg->json + start
 * (after the jsonb version byte) by "[redacted]". 0 or KQ_ENOMEM/KQ_ECORRUPT.
 */
static int redact(proj_pg *pg, evinfo *in, size_t start, const char *field)
{
    json_error_t jerr;
    json_t *j = json_loadb(pg->json.p + start + 1, in->json_len - 1, 0, &jerr);
    char *txt;
    int rc = 0;

    if (j == NULL)
        return KQ_ECORRUPT;
    if (json_object_get(j, field) == NULL) {
        json_decref(j);
        return 0;
    }
    if (json_object_set_new(j, field, json_string("[redacted]")) != 0 ||
        (txt = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL) {
        json_decref(j);
        return KQ_ENOMEM;
    }
    pg->json.len = start;
    if (buf_put(&pg->json, "\1", 1) || buf_puts(&pg->json, txt))
        rc = KQ_ENOMEM;
    in->json_len = pg->json.len - start;
    free(txt);
    json_decref(j);
    return rc;
}

/* The steps of a run document without their attempts (run_attempts holds them). */
static char *run_steps_text(json_t *doc)
{
    json_t *steps = json_object_get(doc, "steps"), *st;
    size_t i;

    json_array_foreach(steps, i, st) json_object_del(st, "attempts");
    return json_dumps(steps, JSON_COMPACT | JSON_PRESERVE_ORDER);
}

/*
 * Workflow and run events, while classifying: redact secrets in the payload
 * JSON, check what wfrun_write will store (dead-lettered like a NUL when it
 * cannot be stored, in->reason set) and keep the JSON it needs in in->d1/d2.
 * 0; 1 (refused); KQ_ENOMEM.
 */
static int wfrun_prepare(proj_pg *pg, const proj_event *ev, evinfo *in, size_t start)
{
    const ev_envelope *e = &ev->env;
    const char *why = NULL;
    int rc;

    if (ev_event_aggregate_type(e->payload_type) != e->aggregate_type) {
        in->reason = "type";
        return 1;
    }
    switch (e->payload_type) {
    case EV_WORKFLOW_CREATED:
    case EV_WORKFLOW_UPDATED: {
        const ev_step_list *steps = e->payload_type == EV_WORKFLOW_CREATED
                                        ? &e->payload.workflow_created.steps
                                        : &e->payload.workflow_updated.steps;
        ev_str name = e->payload_type == EV_WORKFLOW_CREATED ? e->payload.workflow_created.name
                                                             : e->payload.workflow_updated.name;
        if ((rc = redact(pg, in, start, "webhook_secret")) == KQ_ENOMEM)
            return rc;
        if (rc != 0 || !text_ok(name)) {
            in->reason = "doc";
            return 1;
        }
        if (steps->present) {
            json_t *a = proj_doc_actions(steps);
            if (a == NULL) {
                in->reason = "doc";
                return 1;
            }
            in->d1 = json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER);
            json_decref(a);
            if (in->d1 == NULL)
                return KQ_ENOMEM;
        }
        return 0;
    }
    case EV_RUN_STARTED: {
        json_t *doc = NULL;
        if ((rc = redact(pg, in, start, "signing_secret")) == KQ_ENOMEM)
            return rc;
        if (rc != 0) {
            in->reason = "doc";
            return 1;
        }
        rc = proj_doc_run(&doc, e, &why);
        if (rc == KQ_ENOMEM)
            return rc;
        if (rc != PROJ_DOC_OK) {
            in->reason = "doc";
            return 1;
        }
        in->d1 = json_dumps(json_object_get(doc, "payload"), JSON_COMPACT | JSON_PRESERVE_ORDER);
        in->d2 = run_steps_text(doc);
        json_decref(doc);
        return in->d1 && in->d2 ? 0 : KQ_ENOMEM;
    }
    case EV_STEP_ATTEMPTED:
        if (!text_ok(e->payload.step_attempted.error) ||
            !text_ok(e->payload.step_attempted.delivery_id)) {
            in->reason = "doc";
            return 1;
        }
        return 0;
    case EV_RUN_FAILED:
        if (!text_ok(e->payload.run_failed.error)) {
            in->reason = "doc";
            return 1;
        }
        return 0;
    default:
        return 0;
    }
}

/* A view as a NUL-terminated parameter in scratch space `p` (NULL when absent). */
static const char *param_str(ev_str s, char **own)
{
    if (s.ptr == NULL)
        return NULL;
    if ((*own = malloc((size_t)s.len + 1)) == NULL)
        return NULL;
    memcpy(*own, s.ptr, s.len);
    (*own)[s.len] = '\0';
    return *own;
}

/*
 * The batch's applied workflow and run events, one prepared statement each,
 * in log order, sent in one pipeline (one round trip for the batch; the
 * measured cost of a round trip per event was ~20% of the PostgreSQL
 * target's throughput on a log with 10% workflow events).
 */
static int wfrun_write(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen)
{
    PGresult *res;
    int rc = 0, any = 0, synced = 0;

    for (size_t i = 0; i < b->n && !any; i++)
        any = b->ev[i].decoded && pg->info[i].st == ST_APPLY &&
              (b->ev[i].env.aggregate_type == EV_AGG_WORKFLOW ||
               b->ev[i].env.aggregate_type == EV_AGG_RUN);
    if (!any)
        return 0;
    if (PQenterPipelineMode(pg->conn) != 1)
        return pg_fail(pg, "pipeline", NULL, errstr, errlen);
    for (size_t i = 0; i < b->n && !rc; i++) {
        const proj_event *ev = &b->ev[i];
        const ev_envelope *e = &ev->env;
        evinfo *in = &pg->info[i];
        const char *v[10] = {NULL}, *sql = NULL;
        char *own[3] = {NULL, NULL, NULL};
        char num[6][24], at[80];
        int n = 0;

        if (!ev->decoded || in->st != ST_APPLY ||
            (e->aggregate_type != EV_AGG_WORKFLOW && e->aggregate_type != EV_AGG_RUN))
            continue;
        v[0] = param_str(e->aggregate_id, &own[0]);
        snprintf(num[0], sizeof num[0], "%" PRId64, e->version);
        proj_doc_time(e->occurred_at_us, at);
        switch (e->payload_type) {
        case EV_WORKFLOW_CREATED:
            sql = "kq_wf_create";
            v[1] = param_str(e->payload.workflow_created.name, &own[1]);
            v[2] = e->payload.workflow_created.enabled ? "true" : "false";
            v[3] = in->d1 ? in->d1 : "[]";
            v[4] = num[0];
            v[5] = at;
            n = 6;
            break;
        case EV_WORKFLOW_UPDATED:
        case EV_WORKFLOW_ENABLED:
        case EV_WORKFLOW_DISABLED:
            sql = "kq_wf_update";
            if (e->payload_type == EV_WORKFLOW_UPDATED)
                v[1] = param_str(e->payload.workflow_updated.name, &own[1]);
            v[2] = in->d1;
            v[3] = e->payload_type == EV_WORKFLOW_ENABLED    ? "true"
                   : e->payload_type == EV_WORKFLOW_DISABLED ? "false"
                                                             : NULL;
            v[4] = num[0];
            v[5] = at;
            n = 6;
            break;
        case EV_WORKFLOW_DELETED:
            sql = "kq_wf_delete";
            n = 1;
            break;
        case EV_RUN_STARTED: {
            const ev_run_started *r = &e->payload.run_started;
            sql = "kq_run_start";
            v[1] = param_str(r->workflow_id, &own[1]);
            snprintf(num[1], sizeof num[1], "%" PRId64, r->workflow_version);
            v[2] = num[1];
            v[3] = r->trigger == EV_TRIGGER_WEBHOOK ? "webhook" : "manual";
            v[4] = in->d1;
            v[5] = in->d2;
            v[6] = num[0];
            v[7] = at;
            n = 8;
            break;
        }
        case EV_STEP_ATTEMPTED: {
            const ev_step_attempted *a = &e->payload.step_attempted;
            sql = "kq_run_attempt";
            snprintf(num[1], sizeof num[1], "%" PRIu32, a->step);
            snprintf(num[2], sizeof num[2], "%" PRIu32, a->attempt);
            snprintf(num[3], sizeof num[3], "%" PRId32, a->status_code);
            snprintf(num[4], sizeof num[4], "%" PRId64, a->duration_ms);
            v[1] = num[1];
            v[2] = num[2];
            v[3] = a->has_status_code ? num[3] : NULL;
            v[4] = param_str(a->error, &own[1]);
            v[5] = at;
            v[6] = num[4];
            if (a->has_next_delay_ms) {
                snprintf(num[5], sizeof num[5], "%" PRId64, a->next_delay_ms);
                v[7] = num[5];
            }
            v[8] = param_str(a->delivery_id, &own[2]);
            v[9] = num[0];
            n = 10;
            break;
        }
        case EV_STEP_SUCCEEDED:
        case EV_STEP_FAILED:
            sql = "kq_run_step";
            snprintf(num[1], sizeof num[1], "%" PRIu32,
                     e->payload_type == EV_STEP_SUCCEEDED ? e->payload.step_succeeded.step
                                                          : e->payload.step_failed.step);
            v[1] = num[1];
            v[2] = e->payload_type == EV_STEP_SUCCEEDED ? "succeeded" : "failed";
            v[3] = num[0];
            v[4] = at;
            n = 5;
            break;
        case EV_RUN_SUCCEEDED:
        case EV_RUN_FAILED:
            sql = "kq_run_end";
            v[1] = e->payload_type == EV_RUN_SUCCEEDED ? "succeeded" : "failed";
            v[2] = e->payload_type == EV_RUN_FAILED
                       ? (e->payload.run_failed.error.ptr
                              ? param_str(e->payload.run_failed.error, &own[1])
                              : "")
                       : NULL;
            v[3] = num[0];
            v[4] = at;
            n = 5;
            break;
        default:
            break;
        }
        /* libpq copies the parameters into its output buffer at once */
        if (sql != NULL && PQsendQueryPrepared(pg->conn, sql, n, v, NULL, NULL, 0) != 1)
            rc = -1;
        for (int k = 0; k < 3; k++)
            free(own[k]);
    }
    if (!rc)
        rc = PQpipelineSync(pg->conn) == 1 ? 0 : -1;
    if (rc) {
        rc = pg_fail(pg, "pipeline send", NULL, errstr, errlen);
        PQexitPipelineMode(pg->conn);
        return rc;
    }
    while (!synced) { /* each statement's result (then NULL), then the sync */
        if ((res = PQgetResult(pg->conn)) == NULL) {
            if (PQstatus(pg->conn) != CONNECTION_OK) {
                rc = rc ? rc : pg_fail(pg, "pipeline", NULL, errstr, errlen);
                break;
            }
            continue;
        }
        switch (PQresultStatus(res)) {
        case PGRES_PIPELINE_SYNC:
            synced = 1;
            break;
        case PGRES_COMMAND_OK:
        case PGRES_TUPLES_OK:
        case PGRES_PIPELINE_ABORTED:
            break;
        default:
            if (!rc)
                rc = pg_fail(pg, "workflow/run statement", res, errstr, errlen);
            break;
        }
        PQclear(res);
    }
    if (PQexitPipelineMode(pg->conn) != 1 && !rc)
        rc = pg_fail(pg, "pipeline exit", NULL, errstr, errlen);
    return rc;
}

static void wfrun_free(proj_pg *pg, size_t n)
{
    for (size_t i = 0; i < n && i < pg->infocap; i++) {
        free(pg->info[i].d1);
        free(pg->info[i].d2);
        pg->info[i].d1 = pg->info[i].d2 = NULL;
    }
}

/* Walk the batch in order: decide apply / maybe-duplicate / dead per event. */
static int classify(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen)
{
    int any_dup = 0;

    for (size_t i = 0; i < b->n; i++) {
        const proj_event *ev = &b->ev[i];
        const ev_envelope *e = &ev->env;
        evinfo *in = &pg->info[i];
        agg *a = in->a;
        size_t start;

        if (!ev->decoded)
            continue;
        if (e->version == a->cur + 1) {
            in->st = ST_APPLY;
        } else if (e->version <= a->cur) {
            in->st = ST_MAYBE_DUP;
            in->last = a->cur;
            any_dup = 1;
            continue;
        } else {
            in->st = ST_DEAD;
            in->reason = "gap";
            in->last = a->cur;
            continue;
        }
        if (has_nul(e->aggregate_id) || has_nul(e->actor) || has_nul(e->command_id) ||
            has_nul(e->correlation_id) || has_nul(e->causation_id)) {
            in->st = ST_DEAD;
            in->reason = "nul";
            continue;
        }
        /* jsonb binary format: version byte 1, then the text */
        start = pg->json.len;
        if (buf_put(&pg->json, "\1", 1) ||
            ev_json_payload_append(ev->value, &pg->json.p, &pg->json.len, &pg->json.cap) ==
                KQ_ENOMEM)
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory printing a payload");
        in->json_off = start;
        in->json_len = pg->json.len - start;
        if (in->json_len <= 1) { /* no payload table: store an empty object */
            pg->json.len = start;
            buf_put(&pg->json, "\1{}", 3);
            in->json_len = 3;
        }
        if (json_has_nul(pg->json.p + start + 1, in->json_len - 1)) {
            pg->json.len = start;
            in->st = ST_DEAD;
            in->reason = "nul";
            continue;
        }
        if (e->aggregate_type == EV_AGG_WORKFLOW || e->aggregate_type == EV_AGG_RUN) {
            int wr = wfrun_prepare(pg, ev, in, start);
            if (wr == KQ_ENOMEM)
                return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
            if (wr != 0) {
                pg->json.len = start;
                in->st = ST_DEAD;
                continue;
            }
        }
        a->cur = e->version;
        if (a->is_resource)
            fold_resource(a, e);
    }
    if (any_dup && pg->fold != NULL) {
        /* bulk mode: every offset is read once into a shadow whose versions the
         * fold holds, so no such event can be present: stale, as check_present
         * would find */
        for (size_t i = 0; i < b->n; i++)
            if (pg->info[i].st == ST_MAYBE_DUP) {
                pg->info[i].st = ST_DEAD;
                pg->info[i].reason = "stale";
            }
        return 0;
    }
    if (any_dup)
        return check_present(pg, b, errstr, errlen);
    return 0;
}

static const char *dead_reason(proj_pg *pg, const proj_event *ev, const evinfo *in)
{
    const ev_envelope *e = &ev->env;

    if (strcmp(in->reason, "nul") == 0)
        return "a stored string contains a NUL character, which PostgreSQL text/jsonb cannot "
               "hold";
    if (strcmp(in->reason, "type") == 0)
        return "event type does not belong to the envelope's aggregate type";
    if (strcmp(in->reason, "doc") == 0)
        return "workflow/run event the read model cannot store (malformed action, payload_json "
               "not a JSON object, too many steps or invalid UTF-8)";
    snprintf(pg->reason, sizeof pg->reason,
             "%s version %" PRId64 " of %s/%.*s: last applied version is %" PRId64,
             strcmp(in->reason, "gap") == 0 ? "version gap:" : "stale or duplicate event:",
             e->version, in->a->type, (int)(e->aggregate_id.len > 64 ? 64 : e->aggregate_id.len),
             e->aggregate_id.ptr, in->last);
    return pg->reason;
}

static int apply_batch(proj_pg *pg, const proj_batch *b, proj_dead_letter_fn dl, void *dlarg,
                       char *errstr, size_t errlen)
{
    int rc;

    if (pg == NULL || pg->conn == NULL || b == NULL || (b->n && b->ev == NULL) ||
        (b->nnext && b->next == NULL))
        return kq_seterr(errstr, errlen, KQ_EINVAL, "proj_pg_apply: bad arguments");
    if ((rc = batch_prepare(pg, b->n, errstr, errlen)))
        return rc;
    for (size_t i = 0; i < b->n; i++) {
        const proj_event *ev = &b->ev[i];
        const char *type;

        if (!ev->decoded)
            continue;
        type = agg_type_name(&ev->env);
        pg->info[i].a = agg_find(pg, type, ev->env.aggregate_id.ptr ? ev->env.aggregate_id.ptr : "",
                                 ev->env.aggregate_id.len, 1);
        pg->info[i].a->is_resource = ev->env.aggregate_type == EV_AGG_RESOURCE;
    }
    if (pg->fold != NULL && pg->fold->broken)
        return kq_seterr(errstr, errlen, KQ_ENOMEM,
                         "postgresql bulk fold is incomplete (out of memory earlier)");
    if ((rc = kq_pg_begin(pg->conn, errstr, errlen)) || (rc = lock_check(pg, errstr, errlen)) ||
        (rc = pg->fold ? fold_versions(pg) : load_versions(pg, b, errstr, errlen)) ||
        (rc = classify(pg, b, errstr, errlen)))
        goto fail;
    for (size_t i = 0; i < b->n; i++) {
        const proj_event *ev = &b->ev[i];
        if (pg->info[i].st != ST_DEAD)
            continue;
        if (dl == NULL || dl(dlarg, ev, "pg", dead_reason(pg, ev, &pg->info[i])) != 0) {
            rc = kq_seterr(errstr, errlen, KQ_EIO,
                           "dead-lettering %s/%" PRId32 "/%" PRId64 " failed; batch rolled back",
                           ev->topic, ev->partition, ev->offset);
            goto fail;
        }
    }
    rc = pg->fold != NULL                        ? copy_events(pg, b, errstr, errlen)
         : pg->path == PROJ_PG_PATH_PIPELINE     ? write_pipeline(pg, b, errstr, errlen)
         : pg->path == PROJ_PG_PATH_COPY_STAGING ? write_copy_staging(pg, b, errstr, errlen)
                                                 : write_copy_arrays(pg, b, errstr, errlen);
    if (rc || (rc = wfrun_write(pg, b, errstr, errlen)))
        goto fail;
    proj_failpoint("pg_after_insert");
    if ((rc = store_offsets(pg, b, errstr, errlen)))
        goto fail;
    proj_failpoint("pg_before_commit");
    if ((rc = kq_pg_commit(pg->conn, errstr, errlen)))
        goto fail;
    proj_failpoint("pg_after_commit");
    if (pg->fold != NULL && (rc = fold_batch(pg)) != 0) {
        pg->fold->broken = 1; /* committed rows the fold does not hold: refuse to go on */
        return kq_seterr(errstr, errlen, rc, "postgresql bulk fold: out of memory");
    }
    return 0;
fail:
    if (PQstatus(pg->conn) == CONNECTION_OK) {
        char ignore[128];
        kq_pg_rollback(pg->conn, ignore, sizeof ignore);
    }
    return rc == KQ_EIO || rc == KQ_ENOMEM || rc == KQ_ESWITCHED ? rc : KQ_EPG;
}

int proj_pg_apply(proj_pg *pg, const proj_batch *b, proj_dead_letter_fn dl, void *dlarg,
                  char *errstr, size_t errlen)
{
    int rc = apply_batch(pg, b, dl, dlarg, errstr, errlen);

    if (pg != NULL && b != NULL)
        wfrun_free(pg, b->n);
    return rc;
}

int proj_pg_target_load(void *t, proj_offset_fn cb, void *arg, char *errstr, size_t errlen)
{
    return proj_pg_load_offsets(t, cb, arg, errstr, errlen);
}

int proj_pg_target_apply(void *t, const proj_batch *b, proj_dead_letter_fn dl, void *dlarg,
                         char *errstr, size_t errlen)
{
    return proj_pg_apply(t, b, dl, dlarg, errstr, errlen);
}

void proj_pg_target_close(void *t)
{
    proj_pg_close(t);
}
