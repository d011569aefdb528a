/*
 * proj_pg_copy.c — see proj_pg_copy.h.
 */
#include "proj_pg_copy.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "kq_err.h"

int proj_pg_buf_reserve(proj_pg_buf *b, size_t more)
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

int proj_pg_buf_put(proj_pg_buf *b, const void *p, size_t n)
{
    if (proj_pg_buf_reserve(b, n))
        return KQ_ENOMEM;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int proj_pg_buf_puts(proj_pg_buf *b, const char *s)
{
    return proj_pg_buf_put(b, s, strlen(s));
}

/* ---------------------------------------------------------------- arrays */

int proj_pg_arr_add(proj_pg_buf *b, const char *s, size_t n)
{
    int rc = 0;

    if (b->len == 0) /* proj_pg_arr_start ran out of memory */
        return KQ_ENOMEM;
    rc |= proj_pg_buf_puts(b, b->len > 1 ? ",\"" : "\"");
    for (size_t i = 0; i < n && !rc; i++) {
        if (s[i] == '"' || s[i] == '\\')
            rc |= proj_pg_buf_put(b, "\\", 1);
        rc |= proj_pg_buf_put(b, s + i, 1);
    }
    rc |= proj_pg_buf_put(b, "\"", 1);
    return rc ? KQ_ENOMEM : 0;
}

void proj_pg_arr_start(proj_pg_buf *b)
{
    b->len = 0;
    proj_pg_buf_put(b, "{", 1);
}

int proj_pg_arr_end(proj_pg_buf *b)
{
    return b->len == 0 || proj_pg_buf_put(b, "}", 1) ? KQ_ENOMEM : 0;
}

int proj_pg_arr_str(proj_pg_buf *b, ev_str v)
{
    if (v.ptr == NULL)
        return b->len == 0 || proj_pg_buf_puts(b, b->len > 1 ? ",NULL" : "NULL") ? KQ_ENOMEM : 0;
    return proj_pg_arr_add(b, v.ptr, v.len);
}

int proj_pg_arr_i64(proj_pg_buf *b, int64_t v)
{
    char num[24];

    snprintf(num, sizeof num, "%" PRId64, v);
    return proj_pg_arr_add(b, num, strlen(num));
}

/* ---------------------------------------------------------------- COPY */

static const char copy_header[] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";

void proj_pg_copy_start(proj_pg_buf *b)
{
    b->len = 0;
    proj_pg_buf_put(b, copy_header, sizeof copy_header - 1);
}

int proj_pg_copy_row(proj_pg_buf *b, const proj_pg_row *r)
{
    char h[4];

    proj_pg_be16(h, (uint16_t)r->n);
    if (proj_pg_buf_put(b, h, 2))
        return KQ_ENOMEM;
    for (int i = 0; i < r->n; i++) {
        proj_pg_be32(h, r->val[i] ? (uint32_t)r->len[i] : 0xffffffffu);
        if (proj_pg_buf_put(b, h, 4) ||
            (r->val[i] && proj_pg_buf_put(b, r->val[i], (size_t)r->len[i])))
            return KQ_ENOMEM;
    }
    return 0;
}

int proj_pg_fail(PGconn *conn, const char *what, PGresult *res, char *errstr, size_t errlen)
{
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(conn);
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    size_t n;

    if (msg == NULL || *msg == '\0')
        msg = PQerrorMessage(conn);
    n = strcspn(msg, "\n");
    return kq_seterr(errstr, errlen, KQ_EPG, "postgresql %s: %.*s%s%s%s", what, (int)n, msg,
                     state ? " (SQLSTATE " : "", state ? state : "", state ? ")" : "");
}

int proj_pg_copy_in(PGconn *conn, const char *sql, proj_pg_buf *b, char *errstr, size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    char trailer[2];
    int rc = 0;

    if (res == NULL || PQresultStatus(res) != PGRES_COPY_IN) {
        rc = proj_pg_fail(conn, "copy", res, errstr, errlen);
        PQclear(res);
        return rc;
    }
    PQclear(res);
    proj_pg_be16(trailer, 0xffff);
    if (proj_pg_buf_put(b, trailer, 2) || PQputCopyData(conn, b->p, (int)b->len) != 1 ||
        PQputCopyEnd(conn, NULL) != 1)
        return proj_pg_fail(conn, "copy", NULL, errstr, errlen);
    while ((res = PQgetResult(conn)) != NULL) {
        if (!rc && PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = proj_pg_fail(conn, "copy", res, errstr, errlen);
        PQclear(res);
    }
    return rc;
}

/* ---------------------------------------------------------------- pipeline */

int proj_pg_pipeline_finish(PGconn *conn, int send_failed, const char *what, char *errstr,
                            size_t errlen)
{
    PGresult *res;
    int rc = send_failed ? -1 : 0, synced = 0;

    if (!rc)
        rc = PQpipelineSync(conn) == 1 ? 0 : -1;
    if (rc) {
        rc = proj_pg_fail(conn, "pipeline send", NULL, errstr, errlen);
        PQexitPipelineMode(conn);
        return rc;
    }
    while (!synced) { /* each statement's result (then NULL), then the sync */
        if ((res = PQgetResult(conn)) == NULL) {
            if (PQstatus(conn) != CONNECTION_OK) {
                rc = rc ? rc : proj_pg_fail(conn, "pipeline", NULL, errstr, errlen);
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
                rc = proj_pg_fail(conn, what, res, errstr, errlen);
            break;
        }
        PQclear(res);
    }
    if (PQexitPipelineMode(conn) != 1 && !rc)
        rc = proj_pg_fail(conn, "pipeline exit", NULL, errstr, errlen);
    return rc;
}
