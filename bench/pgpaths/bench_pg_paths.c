/*
 * bench_pg_paths.c — see bench_pg_paths.h. Measured with bench_pg_apply
 * (200k ResourceCreated / ResourceUpdated events over 40k resources, batches
 * of 2000, PostgreSQL 15, shared 2-core machine, three interleaved runs):
 *
 *   PROJ_PG_PATH_COPY_STAGING  12.2k / 8.6k / 11.1k ev/s, 41-50 us/ev
 *       COPY into `events` and into two temporary staging tables (ON COMMIT
 *       DELETE ROWS), then set-based INSERT/UPDATE/DELETE from them;
 *   PROJ_PG_PATH_PIPELINE       7.2k / 8.1k / 8.1k ev/s, 71-78 us/ev
 *       libpq pipeline mode: one prepared INSERT per event, one prepared
 *       upsert per aggregate and per resource operation (binary
 *       parameters), one Sync.
 *
 * (PROJ_PG_PATH_COPY, the production path: 13.7k / 9.7k / 13.6k ev/s.)
 */
#include "bench_pg_paths.h"
#include "proj_pg_int.h"

#include "kq_err.h"
#include "kq_pg.h"

#define RES_COLS 8

static const char stage_sql[] =
    "SET client_min_messages = warning;"
    "CREATE TEMP TABLE IF NOT EXISTS kq_stage_ver ("
    " aggregate_type text, aggregate_id text, version bigint, is_new boolean)"
    " ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS kq_stage_res ("
    " op text, id text, name text, description text, status text, version bigint,"
    " created_at timestamptz, updated_at timestamptz) ON COMMIT DELETE ROWS;"
    "RESET client_min_messages";

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

static void res_row(const proj_pg_agg *a, proj_pg_row *r)
{
    const char *st = proj_pg_resource_status(a->status);

    r->n = 0;
    proj_pg_row_cstr(r, a->rop == PROJ_PG_R_FULL ? "F" : a->rop == PROJ_PG_R_PATCH ? "P" : "D");
    proj_pg_row_bytes(r, a->id, a->idlen);
    if (a->rop == PROJ_PG_R_DEL) {
        for (int i = 0; i < 6; i++)
            proj_pg_row_null(r);
        return;
    }
    proj_pg_row_str(r, a->name);
    proj_pg_row_str(r, a->desc);
    if (st)
        proj_pg_row_cstr(r, st);
    else
        proj_pg_row_null(r);
    proj_pg_row_i64(r, a->rversion);
    if (a->rop == PROJ_PG_R_FULL)
        proj_pg_row_ts(r, a->created_us);
    else
        proj_pg_row_null(r);
    proj_pg_row_ts(r, a->updated_us);
}

/* is_new: no row in aggregate_versions when the batch started (the batch's
 * version query found none), so a plain INSERT does; else an UPDATE. */
static void ver_row(const proj_pg_agg *a, proj_pg_row *r)
{
    r->n = 0;
    proj_pg_row_cstr(r, a->type);
    proj_pg_row_bytes(r, a->id, a->idlen);
    proj_pg_row_i64(r, a->cur);
    r->num[r->n][0] = a->stored == 0;
    proj_pg_row_bytes(r, r->num[r->n], 1);
}

static int write_copy_staging(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen)
{
    proj_pg_row r;
    int rc, nres = 0, nver = 0;

    if ((rc = proj_pg_copy_events(pg, b, errstr, errlen)))
        return rc;
    proj_pg_copy_start(&pg->copy);
    for (size_t i = 0; i < pg->nused; i++) {
        const proj_pg_agg *a = pg->used[i];
        if (a->cur == a->stored)
            continue;
        ver_row(a, &r);
        nver++;
        if (proj_pg_copy_row(&pg->copy, &r))
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    if (nver && (rc = proj_pg_copy_in(pg->conn, "COPY kq_stage_ver FROM STDIN (FORMAT binary)",
                                      &pg->copy, errstr, errlen)))
        return rc;
    proj_pg_copy_start(&pg->copy);
    for (size_t i = 0; i < pg->nused; i++) {
        const proj_pg_agg *a = pg->used[i];
        if (a->rop == PROJ_PG_R_NONE)
            continue;
        res_row(a, &r);
        nres++;
        if (proj_pg_copy_row(&pg->copy, &r))
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    if (nres && (rc = proj_pg_copy_in(pg->conn, "COPY kq_stage_res FROM STDIN (FORMAT binary)",
                                      &pg->copy, errstr, errlen)))
        return rc;
    if (nver || nres)
        return kq_pg_exec(pg->conn, merge_sql, errstr, errlen);
    return 0;
}

static int send_row(proj_pg *pg, const char *stmt, const proj_pg_row *r)
{
    return PQsendQueryPrepared(pg->conn, stmt, r->n, r->val, r->len, r->fmt, 0) == 1 ? 0 : -1;
}

static int write_pipeline(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen)
{
    proj_pg_row r;
    int rc = 0;

    if (PQenterPipelineMode(pg->conn) != 1)
        return proj_pg_fail(pg->conn, "pipeline", NULL, errstr, errlen);
    for (size_t i = 0; i < b->n && !rc; i++) {
        if (pg->info[i].st != PROJ_PG_APPLY)
            continue;
        proj_pg_event_row(pg, &b->ev[i], &pg->info[i], &r);
        rc = send_row(pg, "kq_ins_event", &r);
    }
    for (size_t i = 0; i < pg->nused && !rc; i++) {
        const proj_pg_agg *a = pg->used[i];
        if (a->cur != a->stored) {
            ver_row(a, &r);
            r.n = 3; /* the upsert does not need is_new */
            rc = send_row(pg, "kq_up_version", &r);
        }
        if (!rc && a->rop != PROJ_PG_R_NONE) {
            /* res_row's columns: op, id, name, description, status, version,
             * created_at, updated_at; each statement takes its own subset */
            proj_pg_row p;
            res_row(a, &r);
            p.n = 0;
            if (a->rop == PROJ_PG_R_FULL) {
                for (int c = 1; c < RES_COLS; c++)
                    proj_pg_row_copy(&p, &r, c);
            } else if (a->rop == PROJ_PG_R_PATCH) {
                for (int c = 1; c < RES_COLS; c++)
                    if (c != 6)
                        proj_pg_row_copy(&p, &r, c);
            } else {
                proj_pg_row_copy(&p, &r, 1);
            }
            rc = send_row(pg,
                          a->rop == PROJ_PG_R_FULL    ? "kq_res_full"
                          : a->rop == PROJ_PG_R_PATCH ? "kq_res_patch"
                                                      : "kq_res_del",
                          &p);
        }
    }
    return proj_pg_pipeline_finish(pg->conn, rc != 0, "pipeline", errstr, errlen);
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
    /* the staging tables and the per-row statements exist only on connections that use them */
    if (path == PROJ_PG_PATH_COPY_STAGING && (rc = kq_pg_exec(pg->conn, stage_sql, errstr, errlen)))
        return rc;
    if (path == PROJ_PG_PATH_PIPELINE &&
        ((rc = proj_pg_prepare(pg, "kq_ins_event", ins_event_sql, errstr, errlen)) ||
         (rc = proj_pg_prepare(pg, "kq_up_version", up_version_sql, errstr, errlen)) ||
         (rc = proj_pg_prepare(pg, "kq_res_full", res_full_sql, errstr, errlen)) ||
         (rc = proj_pg_prepare(pg, "kq_res_patch", res_patch_sql, errstr, errlen)) ||
         (rc = proj_pg_prepare(pg, "kq_res_del", res_del_sql, errstr, errlen))))
        return rc;
    pg->write = path == PROJ_PG_PATH_PIPELINE       ? write_pipeline
                : path == PROJ_PG_PATH_COPY_STAGING ? write_copy_staging
                                                    : proj_pg_write_merge;
    return 0;
}
