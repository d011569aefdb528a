/*
 * proj_pg_offsets.c — the PostgreSQL target's checkpoint and its guard: the
 * stored offsets (projection_offsets, written in every batch's transaction)
 * and the read model lock taken first in every batch (see proj_pg.h,
 * proj_pg_open_schema). Part of proj_pg (proj_pg_int.h); the proj_pg's thread.
 */
#include "proj_pg_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kq_err.h"
#include "kq_pg.h"

/* The read model lock and the schema's current OID, first in every batch. */
static const char lock_sql[] = "SELECT pg_advisory_xact_lock(hashtext($1)),"
                               " (SELECT oid FROM pg_namespace WHERE nspname = $2)::text";

static const char offsets_sql[] =
    "WITH o AS (INSERT INTO projection_offsets (topic, partition, next_offset)"
    " SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])"
    " ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset"
    " RETURNING 1) SELECT pg_notify('kcqrs_projection', '') FROM (SELECT count(*) FROM o) c";

int proj_pg_offsets_prepare(proj_pg *pg, char *errstr, size_t errlen)
{
    return proj_pg_prepare(pg, "kq_lock", lock_sql, errstr, errlen);
}

/* The schema's pg_namespace OID into pg->oid; KQ_ENOTFOUND when it does not exist. */
int proj_pg_schema_oid(proj_pg *pg, char *errstr, size_t errlen)
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

/* First statement of every batch: wait for the read model lock (kcqrs-replay
 * holds it for its final catch-up and switch), then make sure the schema of
 * our name is still the one we opened. */
int proj_pg_lock_check(proj_pg *pg, char *errstr, size_t errlen)
{
    const char *params[2] = {pg->lockname, pg->schema};
    PGresult *res = PQexecPrepared(pg->conn, "kq_lock", 2, params, NULL, NULL, 0);
    int rc = 0;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        rc = proj_pg_fail(pg->conn, "read model lock", res, errstr, errlen);
    else if (PQgetisnull(res, 0, 1) || strcmp(PQgetvalue(res, 0, 1), pg->oid) != 0)
        rc = kq_seterr(errstr, errlen, KQ_ESWITCHED,
                       "postgresql: schema %s was replaced (a rebuilt read model was switched in);"
                       " reopening",
                       pg->schema);
    PQclear(res);
    return rc;
}

/* PROJ_PG_EXCLUSIVE: the session lock of the schema's active projector,
 * waited for up to PROJ_PG_STANDBY_WAIT (lock_timeout: PostgreSQL grants it
 * the moment the holder's session ends, and a standby opens one connection
 * per wait, not one per poll); released by PostgreSQL with the session
 * (proj_pg_close, or the process or its connection dying). */
int proj_pg_take_active(proj_pg *pg, char *errstr, size_t errlen)
{
    char name[sizeof pg->schema + 32];
    const char *params[1] = {name};
    const char *state;
    PGresult *res;
    int rc = 0;

    snprintf(name, sizeof name, "kcqrs.projector:%s", pg->schema);
    if ((rc = kq_pg_exec(pg->conn, "SET lock_timeout = " PROJ_PG_STANDBY_WAIT, errstr, errlen)))
        return rc;
    res = PQexecParams(pg->conn, "SELECT pg_advisory_lock(hashtext($1))", 1, NULL, params, NULL,
                       NULL, 0);
    state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK)
        rc = 0;
    else if (state != NULL && strcmp(state, "55P03") == 0) /* lock_not_available */
        rc = kq_seterr(errstr, errlen, KQ_EBUSY,
                       "postgresql: another projector is the active one of schema %s (standby)",
                       pg->schema);
    else
        rc = proj_pg_fail(pg->conn, "projector lock", res, errstr, errlen);
    PQclear(res);
    if (rc == 0)
        rc = kq_pg_exec(pg->conn, "RESET lock_timeout", errstr, errlen);
    return rc;
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

/* Every `next` offset of the batch (one upsert from arrays) and pg_notify. */
int proj_pg_store_offsets(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen)
{
    const char *params[3];
    char num[24];
    int rc = 0;

    proj_pg_arr_start(&pg->a1);
    proj_pg_arr_start(&pg->a2);
    proj_pg_arr_start(&pg->a3);
    for (size_t i = 0; i < b->nnext; i++) {
        rc |= proj_pg_arr_add(&pg->a1, b->next[i].topic, strlen(b->next[i].topic));
        snprintf(num, sizeof num, "%" PRId32, b->next[i].partition);
        rc |= proj_pg_arr_add(&pg->a2, num, strlen(num));
        rc |= proj_pg_arr_i64(&pg->a3, b->next[i].next_offset);
    }
    rc |= proj_pg_arr_end(&pg->a1) | proj_pg_arr_end(&pg->a2) | proj_pg_arr_end(&pg->a3);
    if (rc)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    params[0] = pg->a1.p;
    params[1] = pg->a2.p;
    params[2] = pg->a3.p;
    return kq_pg_exec_params(pg->conn, offsets_sql, 3, params, NULL, errstr, errlen);
}
