/*
 * kq_pg.h — small libpq helpers shared by the projector, the query API and the
 * replay tools.
 *
 * What it owns: nothing beyond a call. Connections (PGconn) and results
 * (PGresult) returned here belong to the caller: PQfinish() / PQclear().
 *
 * Threads: libpq connections are not shared between threads; use one PGconn per
 * thread. These functions keep no state of their own and are reentrant.
 *
 * Errors: 0 or a negative KQ_E* code; KQ_EPG for anything the server or libpq
 * reported, with libpq's message (one line) and the SQLSTATE in errstr.
 */
#ifndef KQ_PG_H
#define KQ_PG_H

#include <stddef.h>

#include <libpq-fe.h>

/*
 * Connect to `dsn` (a libpq URI or key=value string, e.g. KCQRS_PG_DSN), giving
 * up after `timeout_ms` (libpq's connect_timeout, rounded up to whole seconds,
 * at least 2; a connect_timeout inside the DSN wins). application_name is set
 * to `app` (may be NULL) unless the DSN sets it. Returns a connection owned by
 * the caller (PQfinish), or NULL with errstr filled.
 */
PGconn *kq_pg_connect(const char *dsn, int timeout_ms, const char *app, char *errstr,
                      size_t errlen);

/*
 * kq_pg_connect with search_path set to `schema` alone (the read model's
 * schema, KCQRS_PG_SCHEMA, or a shadow/snapshot of it) through the startup
 * option `-c search_path=<schema>`: unqualified table names then resolve in
 * that schema only (pg_catalog is always searched first), and a schema that
 * does not exist yet makes every table "not found" (the query API answers
 * 503) rather than silently reading `public`. `schema` must be a valid
 * identifier (kq_pg_schema_valid); KQ_EINVAL in errstr otherwise.
 */
PGconn *kq_pg_connect_schema(const char *dsn, int timeout_ms, const char *app, const char *schema,
                             char *errstr, size_t errlen);

/* 1 when `s` is a schema name kcqrs accepts: [a-z_][a-z0-9_]*, at most 63
 * bytes (PostgreSQL's identifier limit), so it needs no quoting. */
int kq_pg_schema_valid(const char *s);

/*
 * Run one or more simple statements without parameters (DDL, SET, BEGIN...);
 * results are discarded. 0 when every statement succeeded, else KQ_EPG.
 */
int kq_pg_exec(PGconn *conn, const char *sql, char *errstr, size_t errlen);

/*
 * Run one statement with text parameters ($1..$n; values[i] may be NULL for SQL
 * NULL). On success returns 0 and, if `result` is non-NULL, stores the result
 * there (owned by the caller: PQclear); otherwise the result is freed. On
 * failure returns KQ_EPG and *result is NULL.
 */
int kq_pg_exec_params(PGconn *conn, const char *sql, int nparams, const char *const *values,
                      PGresult **result, char *errstr, size_t errlen);

/* BEGIN / COMMIT / ROLLBACK. kq_pg_rollback() is safe to call when no
 * transaction is open (the server only warns). */
int kq_pg_begin(PGconn *conn, char *errstr, size_t errlen);
int kq_pg_commit(PGconn *conn, char *errstr, size_t errlen);
int kq_pg_rollback(PGconn *conn, char *errstr, size_t errlen);

#endif
