/*
 * rp_pg.c — kcqrs-replay's PostgreSQL target (rp_target.h); see rp_pg.h.
 *
 * A shadow is a schema next to the live one (KCQRS_PG_SCHEMA, say kcqrs):
 * kcqrs_shadow for rebuild/verify, kcqrs_snap_NAME for a named snapshot.
 *
 *   shadow_create  on its own "admin" connection: the rebuild lock (session
 *                  pg_try_advisory_lock(hashtext('kcqrs.rebuild:' || live)),
 *                  KQ_EBUSY when held: one rebuild, verify, snapshot or
 *                  drop-snapshot at a time; held until the shadow is closed
 *                  or dropped), DROP SCHEMA IF EXISTS shadow CASCADE, CREATE
 *                  SCHEMA, the migrations (proj_migrate with search_path =
 *                  shadow); then what the load need not maintain row by row
 *                  is remembered (pg_get_indexdef) and dropped: every
 *                  secondary index backing no constraint, and on `events`
 *                  (append-only) its primary key and unique constraint too;
 *   bulk           the projector's own target (proj_pg_open_schema on the
 *                  shadow, never creating it) in bulk mode (proj_pg.h): the
 *                  projector's classification (gaps and stale versions
 *                  dead-lettered alike), COPY (FORMAT binary) of the event
 *                  rows with proj_pg's row encoder and the offsets, one
 *                  transaction per KCQRS_REPLAY_BATCH_MAX events,
 *                  synchronous_commit off; versions and resources are folded
 *                  in memory (proj_pg_fold) with the projector's fold and
 *                  COPY'd once in finish. Measured on 1M events (bench
 *                  numbers in the report of issue #5): merging them per batch
 *                  with the projector's statement cost 6.7 s of 16 s bulk,
 *                  the fold 0.6 s;
 *   tail           the projector's normal apply on the shadow;
 *   finish         the fold's COPY, then every remembered index built once
 *                  (maintenance_work_mem 256MB) on two connections at once,
 *                  the keys first, constraints re-attached with ADD
 *                  CONSTRAINT ... USING INDEX, ANALYZE of every table (also
 *                  on both connections);
 *   lock_live      session pg_advisory_lock(hashtext('kcqrs.readmodel:' ||
 *                  live)) on a connection of its own: the projector takes
 *                  the same key as a transaction lock first in every batch,
 *                  so it waits at its next batch;
 *   switch_live    one transaction: DROP SCHEMA IF EXISTS live_retired
 *                  CASCADE, ALTER SCHEMA live RENAME TO live_retired (when it
 *                  exists), ALTER SCHEMA shadow RENAME TO live,
 *                  pg_notify('kcqrs_projection', ''). Queries in flight on
 *                  the old tables finish undisturbed (they hold the tables,
 *                  not the name), new statements resolve `live` to the new
 *                  tables; the retired schema is dropped by the next switch.
 *                  The projector's next batch sees the OID of `live` changed
 *                  and reopens (KQ_ESWITCHED), loading the new offsets;
 *   fingerprint    rp_pg_fingerprint on the live schema or the shadow.
 */
#include "rp_pg.h"
#include "kq_err.h"
#include "kq_log.h"
#include "kq_pg.h"
#include "proj_migrate.h"
#include "proj_pg.h"
#include "rp_target.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FETCH_ROWS 10000

typedef struct rp_pg {
    const kq_config *cfg;
    char live[64];    /* KCQRS_PG_SCHEMA */
    char schema[64];  /* the shadow or snapshot */
    char retired[64]; /* live_retired */
    PGconn *admin;    /* holds the rebuild lock */
    char **idx;       /* deferred index definitions (CREATE INDEX) */
    char **post;      /* per index: NULL or the ALTER TABLE re-attaching its constraint */
    size_t nidx;
    proj_pg_fold *fold; /* versions and resources of the bulk load, until finish */
    int switched;
} rp_pg;

/* ---------------------------------------------------------------- names */

int rp_pg_schema_name(const char *live, const char *name, char *out, size_t outlen, char *errstr,
                      size_t errlen)
{
    int n;

    if (!kq_pg_schema_valid(live))
        return kq_seterr(errstr, errlen, KQ_EINVAL, "invalid schema name '%.80s'",
                         live ? live : "(null)");
    if (name != NULL) {
        size_t k = strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_");
        if (k == 0 || k > 32 || name[k] != '\0')
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "snapshot name '%.80s' must match [a-z0-9_]{1,32}", name);
        n = snprintf(out, outlen, "%s_snap_%s", live, name);
    } else {
        n = snprintf(out, outlen, "%s_shadow", live);
    }
    if (n < 0 || (size_t)n >= outlen || !kq_pg_schema_valid(out))
        return kq_seterr(errstr, errlen, KQ_EINVAL,
                         "schema name for %s%s%s would exceed PostgreSQL's 63 bytes",
                         name ? "snapshot '" : "the shadow of '", name ? name : live, "'");
    return 0;
}

/* ---------------------------------------------------------------- helpers */

static PGconn *admin_connect(const kq_config *cfg, const char *app, char *errstr, size_t errlen)
{
    if (cfg == NULL || cfg->pg_dsn == NULL || *cfg->pg_dsn == '\0') {
        kq_seterr(errstr, errlen, KQ_ECONFIG, "KCQRS_PG_DSN is not set");
        return NULL;
    }
    return kq_pg_connect(cfg->pg_dsn, cfg->kafka_timeout_ms, app, errstr, errlen);
}

/* Session advisory lock on hashtext(prefix || schema); try: KQ_EBUSY when held. */
static int advisory_lock(PGconn *c, const char *prefix, const char *schema, int try, char *errstr,
                         size_t errlen)
{
    char key[128];
    const char *params[1] = {key};
    PGresult *res = NULL;
    int rc;

    snprintf(key, sizeof key, "%s%s", prefix, schema);
    if ((rc = kq_pg_exec_params(c,
                                try ? "SELECT pg_try_advisory_lock(hashtext($1))::text"
                                    : "SELECT pg_advisory_lock(hashtext($1))::text",
                                1, params, &res, errstr, errlen)))
        return rc;
    if (try && strcmp(PQgetvalue(res, 0, 0), "true") != 0)
        rc = kq_seterr(errstr, errlen, KQ_EBUSY,
                       "busy: another kcqrs-replay rebuild, verify or snapshot holds the "
                       "PostgreSQL lock %s",
                       key);
    PQclear(res);
    return rc;
}

static int schema_exists(PGconn *c, const char *schema, int *exists, char *errstr, size_t errlen)
{
    const char *params[1] = {schema};
    PGresult *res = NULL;
    int rc;

    if ((rc = kq_pg_exec_params(c, "SELECT 1 FROM pg_namespace WHERE nspname = $1", 1, params, &res,
                                errstr, errlen)))
        return rc;
    *exists = PQntuples(res) == 1;
    PQclear(res);
    return 0;
}

static void free_idx(rp_pg *s)
{
    for (size_t i = 0; i < s->nidx; i++) {
        free(s->idx[i]);
        free(s->post[i]);
    }
    free(s->idx);
    free(s->post);
    s->idx = NULL;
    s->post = NULL;
    s->nidx = 0;
}

static void rp_free(rp_pg *s)
{
    if (s == NULL)
        return;
    if (s->admin != NULL)
        PQfinish(s->admin);
    free_idx(s);
    proj_pg_fold_free(s->fold);
    free(s);
}

/*
 * Remember and drop what the bulk load need not maintain row by row: every
 * secondary index that backs no constraint, and on `events` (append-only,
 * its rows only ever inserted by the load) also the primary key and unique
 * constraint. finish() builds each index once over the loaded table (a sorted
 * build) and re-attaches the constraints to them (ADD CONSTRAINT ... USING
 * INDEX: no second build). The other tables keep their keys: the apply's
 * merge statements look rows up and upsert on them.
 */
static const char defer_sql[] =
    "SELECT CASE WHEN k.oid IS NULL THEN format('DROP INDEX %I.%I', n.nspname, c.relname)"
    "  ELSE format('ALTER TABLE %I.%I DROP CONSTRAINT %I', n.nspname, t.relname, k.conname) END,"
    " pg_get_indexdef(i.indexrelid),"
    " CASE WHEN k.oid IS NULL THEN NULL"
    "  ELSE format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s USING INDEX %I', n.nspname,"
    "   t.relname, k.conname, CASE k.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END,"
    "   c.relname) END"
    " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " JOIN pg_class t ON t.oid = i.indrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid"
    " WHERE n.nspname = $1"
    " AND (k.oid IS NULL OR (t.relname = 'events' AND k.contype IN ('p', 'u')))"
    " ORDER BY k.oid IS NULL, c.relname"; /* the keys first: the biggest builds */

static int defer_indexes(rp_pg *s, char *errstr, size_t errlen)
{
    const char *params[1] = {s->schema};
    PGresult *res = NULL;
    int rc, n;

    if ((rc = kq_pg_exec_params(s->admin, defer_sql, 1, params, &res, errstr, errlen)))
        return rc;
    n = PQntuples(res);
    if (n > 0 && ((s->idx = calloc((size_t)n, sizeof *s->idx)) == NULL ||
                  (s->post = calloc((size_t)n, sizeof *s->post)) == NULL)) {
        PQclear(res);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    for (int r = 0; r < n && !rc; r++) {
        s->idx[s->nidx] = strdup(PQgetvalue(res, r, 1));
        if (!PQgetisnull(res, r, 2))
            s->post[s->nidx] = strdup(PQgetvalue(res, r, 2));
        if (s->idx[s->nidx] == NULL || (!PQgetisnull(res, r, 2) && s->post[s->nidx] == NULL)) {
            free(s->idx[s->nidx]);
            free(s->post[s->nidx]);
            s->idx[s->nidx] = s->post[s->nidx] = NULL;
            rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
            break;
        }
        s->nidx++;
        rc = kq_pg_exec(s->admin, PQgetvalue(res, r, 0), errstr, errlen);
    }
    PQclear(res);
    return rc;
}

/* ---------------------------------------------------------------- shadow */

static int pg_shadow_create(const kq_config *cfg, const char *name, void **out, char *errstr,
                            size_t errlen)
{
    rp_pg *s;
    char sql[512];
    int rc, applied = 0;

    *out = NULL;
    if (cfg == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "rp_pg: no configuration");
    if ((s = calloc(1, sizeof *s)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    s->cfg = cfg;
    if ((s->fold = proj_pg_fold_new()) == NULL) {
        free(s);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    if ((rc = rp_pg_schema_name(cfg->pg_schema, name, s->schema, sizeof s->schema, errstr, errlen)))
        goto fail;
    snprintf(s->live, sizeof s->live, "%s", cfg->pg_schema);
    if (snprintf(s->retired, sizeof s->retired, "%s_retired", s->live) >= (int)sizeof s->retired ||
        !kq_pg_schema_valid(s->retired)) {
        rc = kq_seterr(errstr, errlen, KQ_EINVAL, "schema name %s_retired is too long", s->live);
        goto fail;
    }
    if ((s->admin = admin_connect(cfg, "kcqrs-replay", errstr, errlen)) == NULL) {
        rc = KQ_EPG;
        goto fail;
    }
    if ((rc = advisory_lock(s->admin, "kcqrs.rebuild:", s->live, 1, errstr, errlen)))
        goto fail;
    snprintf(sql, sizeof sql,
             "SET client_min_messages = warning; DROP SCHEMA IF EXISTS %s CASCADE;"
             " CREATE SCHEMA %s; SET search_path = %s",
             s->schema, s->schema, s->schema);
    if ((rc = kq_pg_exec(s->admin, sql, errstr, errlen)) ||
        (rc = proj_migrate_apply_embedded(s->admin, &applied, errstr, errlen)) ||
        (rc = kq_pg_exec(s->admin, "RESET search_path; RESET client_min_messages", errstr,
                         errlen)) ||
        (rc = defer_indexes(s, errstr, errlen)))
        goto fail;
    kq_log_info("postgresql: shadow schema %s created (%d migration(s), %zu index(es) deferred)",
                s->schema, applied, s->nidx);
    *out = s;
    return 0;
fail:
    if (s->admin != NULL && PQstatus(s->admin) == CONNECTION_OK && s->schema[0] && rc != KQ_EBUSY) {
        char ignore[256];
        snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", s->schema);
        kq_pg_exec(s->admin, sql, ignore, sizeof ignore);
    }
    rp_free(s);
    return rc;
}

/*
 * Run the n statements of sql on the nc (1 or 2) connections at once, each
 * connection taking the next statement when it is done with its last one
 * (index builds are CPU-bound; two builds use both cores of a small machine).
 * On the first failure no more statements are sent; the running ones finish.
 */
static int run_parallel(PGconn **c, int nc, char *const *sql, size_t n, char *errstr, size_t errlen)
{
    size_t next = 0;
    int busy[2] = {0, 0}, rc = 0;

    for (;;) {
        struct pollfd pf[2];
        int which[2], np = 0;

        for (int k = 0; k < nc; k++)
            if (!busy[k] && next < n && !rc) {
                if (PQsendQuery(c[k], sql[next]) != 1) {
                    rc = kq_seterr(errstr, errlen, KQ_EPG, "postgresql: %.*s",
                                   (int)strcspn(PQerrorMessage(c[k]), "\n"), PQerrorMessage(c[k]));
                    break;
                }
                busy[k] = 1;
                next++;
            }
        for (int k = 0; k < nc; k++)
            if (busy[k]) {
                pf[np].fd = PQsocket(c[k]);
                pf[np].events = POLLIN;
                pf[np].revents = 0;
                which[np++] = k;
            }
        if (np == 0)
            return rc;
        if (poll(pf, (nfds_t)np, -1) < 0 && errno != EINTR)
            return kq_seterr(errstr, errlen, KQ_EIO, "poll: %s", strerror(errno));
        for (int i = 0; i < np; i++) {
            PGconn *x = c[which[i]];
            if (pf[i].revents == 0)
                continue;
            if (PQconsumeInput(x) != 1) {
                if (!rc)
                    rc = kq_seterr(errstr, errlen, KQ_EPG, "postgresql: %.*s",
                                   (int)strcspn(PQerrorMessage(x), "\n"), PQerrorMessage(x));
                busy[which[i]] = 0;
                continue;
            }
            while (!PQisBusy(x)) {
                PGresult *res = PQgetResult(x);
                if (res == NULL) {
                    busy[which[i]] = 0;
                    break;
                }
                if (PQresultStatus(res) != PGRES_COMMAND_OK && !rc) {
                    const char *m = PQresultErrorMessage(res);
                    rc = kq_seterr(errstr, errlen, KQ_EPG, "postgresql: %.*s",
                                   (int)strcspn(m, "\n"), m);
                }
                PQclear(res);
            }
        }
    }
}

static int pg_finish(void *sh, char *errstr, size_t errlen)
{
    rp_pg *s = sh;
    const char *params[1];
    PGresult *res = NULL;
    PGconn *c[2] = {NULL, NULL};
    char **analyze = NULL;
    size_t nanalyze = 0;
    int rc, nc = 1;

    if (s == NULL || s->admin == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "rp_pg finish: no shadow");
    if (s->fold != NULL) { /* the folded versions and resources, one COPY each */
        proj_pg *pg = NULL;
        if ((rc = proj_pg_open_schema(s->cfg, s->schema, 0, &pg, errstr, errlen)))
            return rc;
        proj_pg_set_fold(pg, s->fold);
        rc = proj_pg_fold_flush(pg, errstr, errlen);
        proj_pg_close(pg);
        if (rc)
            return rc;
        kq_log_info("postgresql: %zu aggregates folded into %s", proj_pg_fold_count(s->fold),
                    s->schema);
        proj_pg_fold_free(s->fold);
        s->fold = NULL;
    }
    /* a second connection for the index builds and ANALYZE; one is enough if it fails */
    c[0] = s->admin;
    if ((c[1] = admin_connect(s->cfg, "kcqrs-replay-index", errstr, errlen)) != NULL)
        nc = 2;
    for (int k = 0; k < nc; k++)
        if ((rc = kq_pg_exec(c[k], "SET maintenance_work_mem = '256MB'", errstr, errlen)))
            goto out;
    if ((rc = run_parallel(c, nc, s->idx, s->nidx, errstr, errlen)))
        goto out;
    for (size_t i = 0; i < s->nidx; i++)
        if (s->post[i] != NULL && (rc = kq_pg_exec(s->admin, s->post[i], errstr, errlen)))
            goto out;
    free_idx(s);
    params[0] = s->schema;
    if ((rc = kq_pg_exec_params(s->admin,
                                "SELECT format('ANALYZE %I.%I', table_schema, table_name)"
                                " FROM information_schema.tables"
                                " WHERE table_schema = $1 AND table_type = 'BASE TABLE'"
                                " ORDER BY table_name = 'events' DESC, table_name",
                                1, params, &res, errstr, errlen)))
        goto out;
    if ((analyze = calloc((size_t)PQntuples(res) + 1, sizeof *analyze)) == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        goto out;
    }
    for (int r = 0; r < PQntuples(res); r++)
        analyze[nanalyze++] = PQgetvalue(res, r, 0);
    rc = run_parallel(c, nc, analyze, nanalyze, errstr, errlen);
out:
    free(analyze);
    PQclear(res);
    if (c[1] != NULL)
        PQfinish(c[1]);
    return rc;
}

static void pg_shadow_drop(void *sh)
{
    rp_pg *s = sh;
    char sql[256], err[256];

    if (s == NULL)
        return;
    if (!s->switched && s->admin != NULL && PQstatus(s->admin) == CONNECTION_OK) {
        snprintf(sql, sizeof sql,
                 "SET client_min_messages = warning; DROP SCHEMA IF EXISTS %s CASCADE", s->schema);
        if (kq_pg_exec(s->admin, sql, err, sizeof err))
            kq_log_warn("postgresql: dropping %s: %s", s->schema, err);
    }
    rp_free(s);
}

static void pg_shadow_close(void *sh)
{
    rp_free(sh);
}

/* ---------------------------------------------------------------- live */

static int pg_lock_live(const kq_config *cfg, void **lk, char *errstr, size_t errlen)
{
    PGconn *c;
    int rc;

    *lk = NULL;
    if (cfg == NULL || !kq_pg_schema_valid(cfg->pg_schema))
        return kq_seterr(errstr, errlen, KQ_ECONFIG, "invalid KCQRS_PG_SCHEMA");
    if ((c = admin_connect(cfg, "kcqrs-replay-lock", errstr, errlen)) == NULL)
        return KQ_EPG;
    if ((rc = advisory_lock(c, "kcqrs.readmodel:", cfg->pg_schema, 0, errstr, errlen))) {
        PQfinish(c);
        return rc;
    }
    *lk = c;
    return 0;
}

static void pg_unlock_live(void *lk)
{
    if (lk != NULL)
        PQfinish(lk); /* ends the session: releases the lock */
}

static int pg_switch_live(void *sh, char *errstr, size_t errlen)
{
    rp_pg *s = sh;
    char sql[512];
    int rc, exists = 0;

    if (s == NULL || s->admin == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "rp_pg switch: no shadow");
    if ((rc = kq_pg_begin(s->admin, errstr, errlen)) ||
        (rc = kq_pg_exec(s->admin, "SET LOCAL client_min_messages = warning", errstr, errlen)) ||
        (rc = schema_exists(s->admin, s->live, &exists, errstr, errlen)))
        goto fail;
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", s->retired);
    if ((rc = kq_pg_exec(s->admin, sql, errstr, errlen)))
        goto fail;
    snprintf(sql, sizeof sql, "ALTER SCHEMA %s RENAME TO %s", s->live, s->retired);
    if (exists && (rc = kq_pg_exec(s->admin, sql, errstr, errlen)))
        goto fail;
    snprintf(sql, sizeof sql,
             "ALTER SCHEMA %s RENAME TO %s; SELECT pg_notify('kcqrs_projection', '')", s->schema,
             s->live);
    if ((rc = kq_pg_exec(s->admin, sql, errstr, errlen)) ||
        (rc = kq_pg_commit(s->admin, errstr, errlen)))
        goto fail;
    s->switched = 1;
    kq_log_info("postgresql: schema %s is now the live read model %s%s%s", s->schema, s->live,
                exists ? "; the previous one is kept as " : "", exists ? s->retired : "");
    return 0;
fail:
    if (PQstatus(s->admin) == CONNECTION_OK) {
        char ignore[128];
        kq_pg_rollback(s->admin, ignore, sizeof ignore);
    }
    return rc;
}

/* ---------------------------------------------------------------- fingerprint */

/* "concat_ws('/', pk1::text, ...)" for the table's primary key, or "t::text". */
static int key_expr(PGconn *c, const char *schema, const char *table, char *out, size_t outlen,
                    char *errstr, size_t errlen)
{
    const char *params[2] = {schema, table};
    PGresult *res = NULL;
    int rc;

    if ((rc = kq_pg_exec_params(
             c,
             "SELECT string_agg(quote_ident(a.attname) || '::text', ', ' ORDER BY k.ord)"
             " FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY"
             "  AS k(attnum, ord)"
             " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
             " WHERE i.indisprimary AND i.indrelid = (quote_ident($1) || '.' || quote_ident($2))"
             "::regclass",
             2, params, &res, errstr, errlen)))
        return rc;
    if (PQgetisnull(res, 0, 0))
        snprintf(out, outlen, "t::text");
    else if (snprintf(out, outlen, "concat_ws('/', %s)", PQgetvalue(res, 0, 0)) >= (int)outlen)
        rc = kq_seterr(errstr, errlen, KQ_ERANGE, "primary key of %s.%s too long", schema, table);
    PQclear(res);
    return rc;
}

static int fp_table(PGconn *c, const char *schema, const char *table, rp_fp *fp, char *errstr,
                    size_t errlen)
{
    char key[768], sql[1024];
    int rc, n;

    if ((rc = rp_fp_table(fp, table)))
        return kq_seterr(errstr, errlen, rc, "fingerprint: table %s: too many tables or no memory",
                         table);
    if ((rc = key_expr(c, schema, table, key, sizeof key, errstr, errlen)))
        return rc;
    snprintf(sql, sizeof sql,
             "DECLARE kq_fp NO SCROLL CURSOR FOR SELECT %s, t::text FROM %s.\"%s\" t", key, schema,
             table);
    if ((rc = kq_pg_exec(c, sql, errstr, errlen)))
        return rc;
    do {
        PGresult *res = NULL;
        char fetch[64];

        snprintf(fetch, sizeof fetch, "FETCH FORWARD %d FROM kq_fp", FETCH_ROWS);
        if ((rc = kq_pg_exec_params(c, fetch, 0, NULL, &res, errstr, errlen)))
            return rc;
        n = PQntuples(res);
        for (int r = 0; r < n && !rc; r++)
            if (rp_fp_add(fp, table, PQgetvalue(res, r, 0), (size_t)PQgetlength(res, r, 0),
                          PQgetvalue(res, r, 1), (size_t)PQgetlength(res, r, 1)))
                rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "fingerprint: out of memory");
        PQclear(res);
        if (rc)
            return rc;
    } while (n == FETCH_ROWS);
    return kq_pg_exec(c, "CLOSE kq_fp", errstr, errlen);
}

int rp_pg_fingerprint(PGconn *c, const char *schema, rp_fp *fp, proj_offset_fn cb, void *arg,
                      char *errstr, size_t errlen)
{
    const char *params[1] = {schema};
    PGresult *tables = NULL, *res = NULL;
    char sql[256];
    int rc, exists = 0;

    if (c == NULL || fp == NULL || !kq_pg_schema_valid(schema))
        return kq_seterr(errstr, errlen, KQ_EINVAL, "rp_pg_fingerprint: bad arguments");
    if ((rc = kq_pg_exec(c,
                         "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;"
                         " SET LOCAL TIME ZONE 'UTC'; SET LOCAL DateStyle = 'ISO, YMD';"
                         " SET LOCAL IntervalStyle = 'postgres'; SET LOCAL bytea_output = 'hex';"
                         " SET LOCAL extra_float_digits = 1",
                         errstr, errlen)) ||
        (rc = schema_exists(c, schema, &exists, errstr, errlen)))
        goto out;
    if (!exists) {
        rc =
            kq_seterr(errstr, errlen, KQ_ENOTFOUND, "postgresql: schema %s does not exist", schema);
        goto out;
    }
    snprintf(sql, sizeof sql,
             "SELECT topic, partition, next_offset FROM %s.projection_offsets"
             " ORDER BY topic, partition",
             schema);
    if ((rc = kq_pg_exec_params(c, sql, 0, NULL, &res, errstr, errlen)))
        goto out;
    for (int r = 0; cb != NULL && r < PQntuples(res); r++)
        cb(arg, PQgetvalue(res, r, 0), (int32_t)strtol(PQgetvalue(res, r, 1), NULL, 10),
           (int64_t)strtoll(PQgetvalue(res, r, 2), NULL, 10));
    if ((rc = kq_pg_exec_params(c,
                                "SELECT table_name FROM information_schema.tables"
                                " WHERE table_schema = $1 AND table_type = 'BASE TABLE'"
                                " AND table_name <> 'schema_migrations' ORDER BY table_name",
                                1, params, &tables, errstr, errlen)))
        goto out;
    for (int r = 0; r < PQntuples(tables) && !rc; r++)
        rc = fp_table(c, schema, PQgetvalue(tables, r, 0), fp, errstr, errlen);
out:
    PQclear(res);
    PQclear(tables);
    if (PQstatus(c) == CONNECTION_OK) {
        char ignore[128];
        kq_pg_rollback(c, ignore, sizeof ignore); /* read only: nothing to keep */
    }
    return rc;
}

static int pg_fingerprint_live(const kq_config *cfg, rp_fp *fp, proj_offset_fn cb, void *arg,
                               char *errstr, size_t errlen)
{
    PGconn *c;
    int rc;

    if (cfg == NULL || !kq_pg_schema_valid(cfg->pg_schema))
        return kq_seterr(errstr, errlen, KQ_ECONFIG, "invalid KCQRS_PG_SCHEMA");
    if ((c = admin_connect(cfg, "kcqrs-replay", errstr, errlen)) == NULL)
        return KQ_EPG;
    rc = rp_pg_fingerprint(c, cfg->pg_schema, fp, cb, arg, errstr, errlen);
    PQfinish(c);
    return rc;
}

static int pg_fingerprint_shadow(void *sh, rp_fp *fp, char *errstr, size_t errlen)
{
    rp_pg *s = sh;

    if (s == NULL || s->admin == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "rp_pg fingerprint: no shadow");
    return rp_pg_fingerprint(s->admin, s->switched ? s->live : s->schema, fp, NULL, NULL, errstr,
                             errlen);
}

static int pg_drop_snapshot(const kq_config *cfg, const char *name, char *errstr, size_t errlen)
{
    char schema[64], sql[160];
    PGconn *c;
    int rc, exists = 0;

    if (name == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "drop-snapshot: no name");
    if (cfg == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "rp_pg: no configuration");
    if ((rc = rp_pg_schema_name(cfg->pg_schema, name, schema, sizeof schema, errstr, errlen)))
        return rc;
    if ((c = admin_connect(cfg, "kcqrs-replay", errstr, errlen)) == NULL)
        return KQ_EPG;
    if ((rc = advisory_lock(c, "kcqrs.rebuild:", cfg->pg_schema, 1, errstr, errlen)) ||
        (rc = schema_exists(c, schema, &exists, errstr, errlen)))
        goto out;
    if (!exists) {
        rc = kq_seterr(errstr, errlen, KQ_ENOTFOUND, "no PostgreSQL snapshot %s (schema %s)", name,
                       schema);
        goto out;
    }
    snprintf(sql, sizeof sql, "SET client_min_messages = warning; DROP SCHEMA %s CASCADE", schema);
    rc = kq_pg_exec(c, sql, errstr, errlen);
out:
    PQfinish(c);
    return rc;
}

/* ---------------------------------------------------------------- runner targets */

static int t_open(const kq_config *cfg, void *open_arg, void **t, char *errstr, size_t errlen)
{
    rp_pg *s = open_arg;

    *t = NULL;
    if (s == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "rp_pg target: open_arg must be the shadow");
    return proj_pg_open_schema(cfg, s->switched ? s->live : s->schema, 0, (proj_pg **)t, errstr,
                               errlen);
}

/* The bulk target: the same, in bulk mode on the shadow's fold (until finish). */
static int t_open_bulk(const kq_config *cfg, void *open_arg, void **t, char *errstr, size_t errlen)
{
    rp_pg *s = open_arg;
    int rc;

    if ((rc = t_open(cfg, open_arg, t, errstr, errlen)))
        return rc;
    if (s->fold == NULL) {
        proj_pg_close(*t);
        *t = NULL;
        return kq_seterr(errstr, errlen, KQ_EINVAL, "rp_pg bulk target: the shadow is finished");
    }
    proj_pg_set_fold(*t, s->fold);
    return 0;
}

const rp_target_ops rp_pg_ops = {
    .name = "pg",
    .shadow_create = pg_shadow_create,
    .bulk = {"pg", t_open_bulk, proj_pg_target_load, proj_pg_target_apply, proj_pg_target_close,
             NULL},
    .tail = {"pg", t_open, proj_pg_target_load, proj_pg_target_apply, proj_pg_target_close, NULL},
    .finish = pg_finish,
    .lock_live = pg_lock_live,
    .unlock_live = pg_unlock_live,
    .switch_live = pg_switch_live,
    .fingerprint_live = pg_fingerprint_live,
    .fingerprint_shadow = pg_fingerprint_shadow,
    .shadow_drop = pg_shadow_drop,
    .shadow_close = pg_shadow_close,
    .drop_snapshot = pg_drop_snapshot,
};
