/*
 * proj_pg_resource.c — resources in the PostgreSQL target: the batch's
 * applied resource events folded into at most one row operation per
 * resource (full upsert, patch of the changed columns, or delete), and the
 * production write of a batch: the `events` rows by COPY, then ONE statement
 * that merges aggregate_versions and resources from array parameters
 * (unnest + data-modifying CTEs; the operations touch disjoint rows, one per
 * aggregate). Part of proj_pg (proj_pg_int.h); the proj_pg's thread.
 */
#include "proj_pg_int.h"

#include "kq_err.h"
#include "kq_pg.h"

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

const char *proj_pg_resource_status(int s)
{
    static const char *const names[] = {"active", "inactive", "archived"};
    return s >= 0 && s < 3 ? names[s] : NULL;
}

void proj_pg_resource_fold(proj_pg_agg *a, const ev_envelope *e)
{
    switch (e->payload_type) {
    case EV_RESOURCE_CREATED: {
        const ev_resource_created *c = &e->payload.resource_created;
        a->rop = PROJ_PG_R_FULL;
        a->name = c->name;
        a->desc = c->description.ptr ? c->description : ev_str_c("");
        a->status = (int)c->status;
        a->created_us = a->updated_us = e->occurred_at_us;
        a->rversion = e->version;
        break;
    }
    case EV_RESOURCE_UPDATED: {
        const ev_resource_updated *u = &e->payload.resource_updated;
        if (a->rop == PROJ_PG_R_DEL)
            break; /* an update of a deleted resource changes no row */
        if (a->rop == PROJ_PG_R_NONE) {
            a->rop = PROJ_PG_R_PATCH;
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
        a->rop = PROJ_PG_R_DEL;
        break;
    default:
        break;
    }
}

/* COPY the event rows, then versions and resources in one statement from arrays. */
int proj_pg_write_merge(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen)
{
    const char *params[12];
    proj_pg_buf *A = pg->arr;
    int rc, any = 0;

    if ((rc = proj_pg_copy_events(pg, b, errstr, errlen)))
        return rc;
    for (int k = 0; k < 12; k++)
        proj_pg_arr_start(&A[k]);
    rc = 0;
    for (size_t i = 0; i < pg->nused; i++) {
        const proj_pg_agg *a = pg->used[i];
        if (a->cur != a->stored) {
            any = 1;
            rc |= proj_pg_arr_add(&A[0], a->type, strlen(a->type));
            rc |= proj_pg_arr_add(&A[1], a->id, a->idlen);
            rc |= proj_pg_arr_i64(&A[2], a->cur);
            rc |= proj_pg_arr_add(&A[3], a->stored == 0 ? "t" : "f", 1);
        }
        if (a->rop != PROJ_PG_R_NONE) {
            ev_str none = {NULL, 0};
            int del = a->rop == PROJ_PG_R_DEL;
            const char *st = proj_pg_resource_status(a->status);
            any = 1;
            rc |= proj_pg_arr_add(&A[4],
                                  a->rop == PROJ_PG_R_FULL    ? "F"
                                  : a->rop == PROJ_PG_R_PATCH ? "P"
                                                              : "D",
                                  1);
            rc |= proj_pg_arr_add(&A[5], a->id, a->idlen);
            rc |= proj_pg_arr_str(&A[6], del ? none : a->name);
            rc |= proj_pg_arr_str(&A[7], del ? none : a->desc);
            rc |= proj_pg_arr_str(&A[8], !del && st ? ev_str_c(st) : none);
            rc |= proj_pg_arr_i64(&A[9], a->rversion);
            rc |= proj_pg_arr_i64(&A[10], a->created_us);
            rc |= proj_pg_arr_i64(&A[11], a->updated_us);
        }
    }
    for (int k = 0; k < 12; k++) {
        rc |= proj_pg_arr_end(&A[k]);
        params[k] = A[k].p;
    }
    if (rc)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    if (!any)
        return 0;
    return kq_pg_exec_params(pg->conn, merge_arrays_sql, 12, params, NULL, errstr, errlen);
}
