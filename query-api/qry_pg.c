/*
 * qry_pg.c — PostgreSQL reads of the query API; see qry_pg.h.
 */
#include "qry_pg.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kq_err.h"
#include "kq_log.h"
#include "kq_pg.h"
#include "kq_rand.h"
#include "kq_time.h"
#include "qry_text.h"

#define RETRY_AFTER_FAIL_MS 1000

struct qry_pg {
    char *dsn;
    char schema[64]; /* "" = the server's default search_path */
    int timeout_ms;
    pthread_key_t key;
};

typedef struct tconn {
    PGconn *conn;
    int64_t failed_at_ms; /* last failed connect, 0 = none */
} tconn;

static void tconn_free(void *p)
{
    tconn *t = p;
    if (t) {
        if (t->conn)
            PQfinish(t->conn);
        free(t);
    }
}

int qry_pg_new(const char *dsn, int connect_timeout_ms, qry_pg **out)
{
    qry_pg *pg = calloc(1, sizeof *pg);

    *out = NULL;
    if (pg == NULL || (pg->dsn = strdup(dsn)) == NULL) {
        free(pg);
        return KQ_ENOMEM;
    }
    pg->timeout_ms = connect_timeout_ms;
    if (pthread_key_create(&pg->key, tconn_free) != 0) {
        free(pg->dsn);
        free(pg);
        return KQ_EIO;
    }
    *out = pg;
    return 0;
}

int qry_pg_set_schema(qry_pg *pg, const char *schema)
{
    if (!kq_pg_schema_valid(schema))
        return KQ_EINVAL;
    snprintf(pg->schema, sizeof pg->schema, "%s", schema);
    return 0;
}

void qry_pg_free(qry_pg *pg)
{
    if (pg == NULL)
        return;
    tconn_free(pthread_getspecific(pg->key));
    pthread_setspecific(pg->key, NULL);
    pthread_key_delete(pg->key);
    free(pg->dsn);
    free(pg);
}

/* This thread's connection, made if needed; NULL with errstr when unreachable. */
static PGconn *conn_get(qry_pg *pg, char *errstr, size_t errlen)
{
    tconn *t = pthread_getspecific(pg->key);

    if (t == NULL) {
        if ((t = calloc(1, sizeof *t)) == NULL) {
            kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
            return NULL;
        }
        pthread_setspecific(pg->key, t);
    }
    if (t->conn && PQstatus(t->conn) != CONNECTION_OK) {
        PQfinish(t->conn);
        t->conn = NULL;
    }
    if (t->conn == NULL) {
        if (t->failed_at_ms && kq_time_mono_ms() - t->failed_at_ms < RETRY_AFTER_FAIL_MS) {
            kq_seterr(errstr, errlen, KQ_EPG, "PostgreSQL unreachable (retrying)");
            return NULL;
        }
        t->conn = pg->schema[0]
                      ? kq_pg_connect_schema(pg->dsn, pg->timeout_ms, "kcqrs-query", pg->schema,
                                             errstr, errlen)
                      : kq_pg_connect(pg->dsn, pg->timeout_ms, "kcqrs-query", errstr, errlen);
        if (t->conn && kq_pg_exec(t->conn, "SET statement_timeout = 5000; SET TIME ZONE 'UTC'",
                                  errstr, errlen) != 0) {
            PQfinish(t->conn);
            t->conn = NULL;
        }
        if (t->conn == NULL) {
            t->failed_at_ms = kq_time_mono_ms();
            return NULL;
        }
        t->failed_at_ms = 0;
    }
    return t->conn;
}

/* Run a query on this thread's connection, once more on a fresh one if the old one broke. */
static int run(qry_pg *pg, const char *sql, int n, const char *const *vals, PGresult **res,
               char *errstr, size_t errlen)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        PGconn *c = conn_get(pg, errstr, errlen);
        int rc;

        if (c == NULL)
            return KQ_EPG;
        rc = kq_pg_exec_params(c, sql, n, vals, res, errstr, errlen);
        if (rc == 0)
            return 0;
        if (PQstatus(c) == CONNECTION_OK)
            return rc; /* the statement failed, not the connection */
    }
    return KQ_EPG;
}

int qry_pg_ping(qry_pg *pg, char *errstr, size_t errlen)
{
    return run(pg, "SELECT 1", 0, NULL, NULL, errstr, errlen);
}

int qry_pg_next_offset(qry_pg *pg, const char *topic, int32_t partition, int64_t *next,
                       char *errstr, size_t errlen)
{
    char part[16];
    const char *vals[2] = {topic, part};
    PGresult *res = NULL;
    int rc;

    *next = 0;
    snprintf(part, sizeof part, "%" PRId32, partition);
    rc = run(pg, "SELECT next_offset FROM projection_offsets WHERE topic = $1 AND partition = $2",
             2, vals, &res, errstr, errlen);
    if (rc == 0 && PQntuples(res) == 1)
        *next = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return rc;
}

int qry_pg_offsets(qry_pg *pg, json_t **out, char *errstr, size_t errlen)
{
    PGresult *res = NULL;
    json_t *obj;
    int rc;

    *out = NULL;
    rc = run(pg, "SELECT topic || '/' || partition, next_offset FROM projection_offsets", 0, NULL,
             &res, errstr, errlen);
    if (rc != 0)
        return rc;
    if ((obj = json_object()) == NULL) {
        PQclear(res);
        return KQ_ENOMEM;
    }
    for (int i = 0; i < PQntuples(res); i++)
        json_object_set_new(obj, PQgetvalue(res, i, 0),
                            json_integer(strtoll(PQgetvalue(res, i, 1), NULL, 10)));
    PQclear(res);
    *out = obj;
    return 0;
}

/* UTC whatever the session's TimeZone is (to_char of a timestamptz uses it) */
#define TS_TEXT(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

int qry_pg_replay_runs(qry_pg *pg, const char *history_schema, int limit, json_t **items,
                       char *errstr, size_t errlen)
{
    PGresult *res = NULL;
    json_error_t jerr;
    char sql[900], table[96], lim[16];
    const char *vals[1] = {table};
    int rc;

    *items = NULL;
    if (!kq_pg_schema_valid(history_schema))
        return kq_seterr(errstr, errlen, KQ_EINVAL, "bad schema name");
    snprintf(table, sizeof table, "%s.replay_runs", history_schema);
    if ((rc = run(pg, "SELECT to_regclass($1) IS NOT NULL", 1, vals, &res, errstr, errlen)) != 0)
        return rc;
    if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        PQclear(res);
        *items = json_array();
        return *items ? 0 : KQ_ENOMEM;
    }
    PQclear(res);
    res = NULL;
    snprintf(lim, sizeof lim, "%d", limit);
    snprintf(
        sql, sizeof sql,
        "SELECT coalesce(json_agg(json_build_object('id', id, 'kind', kind, 'target', "
        "target, 'name', name, 'started_at', " TS_TEXT("started_at") ", 'finished_at', " TS_TEXT(
            "finished_at") ", 'events', events, 'outcome', outcome, 'differences', "
                           "differences, 'detail', detail) ORDER BY id DESC), '[]')::text FROM "
                           "(SELECT * FROM "
                           "%s ORDER BY id DESC LIMIT $1::int) r",
        table);
    vals[0] = lim;
    if ((rc = run(pg, sql, 1, vals, &res, errstr, errlen)) != 0)
        return rc;
    *items = PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, &jerr) : NULL;
    PQclear(res);
    if (*items == NULL || !json_is_array(*items)) {
        json_decref(*items);
        *items = NULL;
        return kq_seterr(errstr, errlen, KQ_EPG, "replay_runs: unexpected answer");
    }
    return 0;
}

/* Columns 0..3 of every page query: the row as JSON (without occurred_at), occurred_at_us,
 * event_id, version. */
#define ROW_COLUMNS                                                                                \
    "json_build_object('event_id', event_id, 'aggregate_type', aggregate_type, "                   \
    "'aggregate_id', aggregate_id, 'version', version, 'event_type', event_type, "                 \
    "'actor', actor, 'command_id', command_id, 'correlation_id', correlation_id, "                 \
    "'causation_id', causation_id, 'schema_version', schema_version, 'payload', payload, "         \
    "'topic', topic, 'partition', partition, 'offset', \"offset\")::text, occurred_at_us, "        \
    "event_id::text, version"

/* Turn the rows of a page query (limit + 1 fetched) into items and the page's end. */
static int page_rows(PGresult *res, int limit, json_t **items, qry_pg_page *page, char *errstr,
                     size_t errlen)
{
    json_t *arr = json_array();
    int n = PQntuples(res);

    memset(page, 0, sizeof *page);
    if (arr == NULL)
        return KQ_ENOMEM;
    page->more = n > limit;
    if (n > limit)
        n = limit;
    for (int i = 0; i < n; i++) {
        json_error_t jerr;
        char when[KQ_TIME_MAX];
        json_t *item = json_loads(PQgetvalue(res, i, 0), 0, &jerr);
        if (item == NULL) {
            json_decref(arr);
            return kq_seterr(errstr, errlen, KQ_ECORRUPT, "event row is not JSON: %s", jerr.text);
        }
        page->last_us = strtoll(PQgetvalue(res, i, 1), NULL, 10);
        kq_time_format(page->last_us, when);
        json_object_set_new(item, "occurred_at", json_string(when));
        kq_uuid_parse(PQgetvalue(res, i, 2), page->last_uuid);
        page->last_version = strtoll(PQgetvalue(res, i, 3), NULL, 10);
        json_array_append_new(arr, item);
    }
    *items = arr;
    return 0;
}

/*
 * "events", or "\"<schema>\".events" for a snapshot schema: the name is checked
 * again here ([a-z0-9_], at most 63 bytes) before it goes into SQL text.
 */
static int events_table(const char *schema, char *out, size_t outlen, char *errstr, size_t errlen)
{
    size_t n;

    if (schema == NULL) {
        snprintf(out, outlen, "events");
        return 0;
    }
    for (n = 0; schema[n] != '\0'; n++)
        if (!((schema[n] >= 'a' && schema[n] <= 'z') || (schema[n] >= '0' && schema[n] <= '9') ||
              schema[n] == '_'))
            return kq_seterr(errstr, errlen, KQ_EINVAL, "invalid schema name");
    if (n == 0 || n > 63)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "invalid schema name");
    snprintf(out, outlen, "\"%s\".events", schema);
    return 0;
}

int qry_pg_schema_exists(qry_pg *pg, const char *schema, int *exists, char *errstr, size_t errlen)
{
    const char *vals[1] = {schema};
    PGresult *res = NULL;
    int rc;

    *exists = 0;
    rc = run(pg,
             "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
             " ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = 'events'",
             1, vals, &res, errstr, errlen);
    if (rc == 0)
        *exists = PQntuples(res) == 1;
    PQclear(res);
    return rc;
}

int qry_pg_audit(qry_pg *pg, const char *schema, const qry_audit_filter *f, json_t **items,
                 qry_pg_page *page, char *errstr, size_t errlen)
{
    char since[24], until[24], after_us[24], after_id[37], limit[16], table[80], sql[1536];
    const char *vals[9];
    PGresult *res = NULL;
    int rc;

    *items = NULL;
    if ((rc = events_table(schema, table, sizeof table, errstr, errlen)) != 0)
        return rc;
    snprintf(since, sizeof since, "%" PRId64, f->since_us);
    snprintf(until, sizeof until, "%" PRId64, f->until_us);
    snprintf(after_us, sizeof after_us, "%" PRId64, f->after_us);
    kq_uuid_format(f->after_uuid, after_id);
    snprintf(limit, sizeof limit, "%d", f->limit + 1);
    vals[0] = f->aggregate_type;
    vals[1] = f->aggregate_id;
    vals[2] = f->actor;
    vals[3] = f->event_type;
    vals[4] = f->has_since ? since : NULL;
    vals[5] = f->has_until ? until : NULL;
    vals[6] = f->has_after ? after_us : NULL;
    vals[7] = f->has_after ? after_id : NULL;
    vals[8] = limit;
    snprintf(sql, sizeof sql,
             "SELECT " ROW_COLUMNS " FROM %s"
             " WHERE ($1::text IS NULL OR aggregate_type = $1)"
             " AND ($2::text IS NULL OR aggregate_id = $2)"
             " AND ($3::text IS NULL OR actor = $3)"
             " AND ($4::text IS NULL OR event_type = $4)"
             " AND ($5::bigint IS NULL OR occurred_at_us >= $5)"
             " AND ($6::bigint IS NULL OR occurred_at_us <= $6)"
             " AND ($7::bigint IS NULL OR (occurred_at_us, event_id) > ($7, $8::uuid))"
             " ORDER BY occurred_at_us, event_id LIMIT $9::int",
             table);
    rc = run(pg, sql, 9, vals, &res, errstr, errlen);
    if (rc == 0)
        rc = page_rows(res, f->limit, items, page, errstr, errlen);
    PQclear(res);
    return rc;
}

int qry_pg_events(qry_pg *pg, const char *schema, const char *aggregate_type, const char *id,
                  int has_after, int64_t after_version, int limit, json_t **items,
                  qry_pg_page *page, char *errstr, size_t errlen)
{
    char after[24], lim[16], table[80], sql[1024];
    const char *vals[4] = {aggregate_type, id, NULL, lim};
    PGresult *res = NULL;
    int rc;

    *items = NULL;
    if ((rc = events_table(schema, table, sizeof table, errstr, errlen)) != 0)
        return rc;
    snprintf(after, sizeof after, "%" PRId64, after_version);
    snprintf(lim, sizeof lim, "%d", limit + 1);
    vals[2] = has_after ? after : NULL;
    snprintf(sql, sizeof sql,
             "SELECT " ROW_COLUMNS " FROM %s WHERE aggregate_type = $1 AND aggregate_id = $2"
             " AND ($3::bigint IS NULL OR version > $3) ORDER BY version LIMIT $4::int",
             table);
    rc = run(pg, sql, 4, vals, &res, errstr, errlen);
    if (rc == 0)
        rc = page_rows(res, limit, items, page, errstr, errlen);
    PQclear(res);
    if (rc == 0 && json_array_size(*items) == 0 && !has_after) {
        json_decref(*items);
        *items = NULL;
        rc = KQ_ENOTFOUND;
    }
    return rc;
}
