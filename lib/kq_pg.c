/* kq_pg.c — libpq helpers; see kq_pg.h. */
#include "kq_pg.h"
#include "kq_err.h"

#include <stdio.h>
#include <string.h>

/* libpq messages end with a newline (or several lines); keep the first line. */
static int pg_err(char *errstr, size_t errlen, const char *what, const char *msg,
                  const char *sqlstate)
{
    size_t n;

    if (msg == NULL || *msg == '\0')
        msg = "unknown error";
    n = strcspn(msg, "\n");
    if (sqlstate != NULL && *sqlstate != '\0')
        return kq_seterr(errstr, errlen, KQ_EPG, "%s: %.*s (SQLSTATE %s)", what, (int)n, msg,
                         sqlstate);
    return kq_seterr(errstr, errlen, KQ_EPG, "%s: %.*s", what, (int)n, msg);
}

static int result_err(PGconn *conn, PGresult *res, const char *what, char *errstr, size_t errlen)
{
    if (res == NULL)
        return pg_err(errstr, errlen, what, PQerrorMessage(conn), NULL);
    return pg_err(errstr, errlen, what, PQresultErrorMessage(res),
                  PQresultErrorField(res, PG_DIAG_SQLSTATE));
}

static int result_ok(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
}

static PGconn *connect_opts(const char *dsn, int timeout_ms, const char *app, const char *options,
                            char *errstr, size_t errlen)
{
    char timeout[16];
    int secs = timeout_ms <= 0 ? 2 : (timeout_ms + 999) / 1000;
    /* Entries before "dbname" may be overridden by the expanded DSN; "options"
     * comes after it, so the schema cannot be overridden by the DSN. */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", "options", NULL};
    const char *vals[] = {timeout, app ? app : "kcqrs", dsn, options, NULL};
    PGconn *conn;

    if (dsn == NULL) {
        kq_seterr(errstr, errlen, KQ_EINVAL, "postgresql: no connection string");
        return NULL;
    }
    if (options == NULL)
        keys[3] = NULL;
    snprintf(timeout, sizeof timeout, "%d", secs < 2 ? 2 : secs);
    conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL) {
        kq_seterr(errstr, errlen, KQ_ENOMEM, "postgresql: out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        pg_err(errstr, errlen, "postgresql connect", PQerrorMessage(conn), NULL);
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

PGconn *kq_pg_connect(const char *dsn, int timeout_ms, const char *app, char *errstr, size_t errlen)
{
    return connect_opts(dsn, timeout_ms, app, NULL, errstr, errlen);
}

int kq_pg_schema_valid(const char *s)
{
    size_t n;

    if (s == NULL || !((*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    n = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_");
    return s[n] == '\0' && n <= 63;
}

PGconn *kq_pg_connect_schema(const char *dsn, int timeout_ms, const char *app, const char *schema,
                             char *errstr, size_t errlen)
{
    char options[96];

    if (!kq_pg_schema_valid(schema)) {
        kq_seterr(errstr, errlen, KQ_EINVAL, "postgresql: invalid schema name '%.80s'",
                  schema ? schema : "(null)");
        return NULL;
    }
    snprintf(options, sizeof options, "-c search_path=%s", schema);
    return connect_opts(dsn, timeout_ms, app, options, errstr, errlen);
}

int kq_pg_exec(PGconn *conn, const char *sql, char *errstr, size_t errlen)
{
    PGresult *res;
    int rc = 0;

    /* PQexec returns the last statement's result; an error stops the batch and
     * is what the last result holds. */
    res = PQexec(conn, sql);
    if (res == NULL || !result_ok(res))
        rc = result_err(conn, res, "postgresql", errstr, errlen);
    PQclear(res);
    return rc;
}

int kq_pg_exec_params(PGconn *conn, const char *sql, int nparams, const char *const *values,
                      PGresult **result, char *errstr, size_t errlen)
{
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, values, NULL, NULL, 0);
    int rc = 0;

    if (result != NULL)
        *result = NULL;
    if (res == NULL || !result_ok(res)) {
        rc = result_err(conn, res, "postgresql", errstr, errlen);
        PQclear(res);
        return rc;
    }
    if (result != NULL)
        *result = res;
    else
        PQclear(res);
    return 0;
}

int kq_pg_begin(PGconn *conn, char *errstr, size_t errlen)
{
    return kq_pg_exec(conn, "BEGIN", errstr, errlen);
}

int kq_pg_commit(PGconn *conn, char *errstr, size_t errlen)
{
    PGresult *res = PQexec(conn, "COMMIT");
    int rc = 0;

    /* COMMIT of a transaction that failed earlier "succeeds" as ROLLBACK. */
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = result_err(conn, res, "postgresql commit", errstr, errlen);
    else if (strcmp(PQcmdStatus(res), "ROLLBACK") == 0)
        rc = kq_seterr(errstr, errlen, KQ_EPG,
                       "postgresql commit: the transaction had failed and was rolled back");
    PQclear(res);
    return rc;
}

int kq_pg_rollback(PGconn *conn, char *errstr, size_t errlen)
{
    return kq_pg_exec(conn, "ROLLBACK", errstr, errlen);
}
