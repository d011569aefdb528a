/*
 * proj_pg_copy.h — how the PostgreSQL target puts values on the wire: binary
 * rows (a COPY ... (FORMAT binary) tuple or the binary parameters of one
 * prepared statement), text array literals for unnest() parameters, COPY
 * FROM STDIN, and the end of a libpq pipeline.
 *
 * Binary values: integers big-endian, uuid as 16 bytes, timestamptz as
 * microseconds since 2000-01-01 (proj_pg_row_ts converts from Unix
 * microseconds), jsonb as version byte 1 followed by the text.
 *
 * Owns: nothing beyond the buffers the caller hands in (a proj_pg_buf's
 * memory is the caller's, freed with free(b->p)). A proj_pg_row only points
 * at values (its numbers live inside it), valid while those values are.
 * Threads: reentrant; a PGconn is used by its owner's thread only.
 * Errors: 0 or KQ_ENOMEM / KQ_EPG (errstr filled with the server's message).
 */
#ifndef PROJ_PG_COPY_H
#define PROJ_PG_COPY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <libpq-fe.h>

#include "ev_codec.h"

#define PROJ_PG_EPOCH_US 946684800000000LL /* 2000-01-01 in Unix microseconds */
#define PROJ_PG_ROW_MAX 18                 /* columns of `events`, the widest row */

/* A growing byte buffer; p is NUL-terminated after every put. */
typedef struct proj_pg_buf {
    char *p;
    size_t len, cap;
} proj_pg_buf;

int proj_pg_buf_reserve(proj_pg_buf *b, size_t more); /* 0 or KQ_ENOMEM */
int proj_pg_buf_put(proj_pg_buf *b, const void *p, size_t n);
int proj_pg_buf_puts(proj_pg_buf *b, const char *s);

/* One row of binary values (a COPY tuple or pipeline parameters). */
typedef struct proj_pg_row {
    int n;
    const char *val[PROJ_PG_ROW_MAX];
    int len[PROJ_PG_ROW_MAX];
    int fmt[PROJ_PG_ROW_MAX];
    char num[PROJ_PG_ROW_MAX][8];
} proj_pg_row;

static inline void proj_pg_be16(char *d, uint16_t v)
{
    d[0] = (char)(v >> 8);
    d[1] = (char)v;
}

static inline void proj_pg_be32(char *d, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        d[i] = (char)(v >> (24 - 8 * i));
}

static inline void proj_pg_be64(char *d, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        d[i] = (char)(v >> (56 - 8 * i));
}

static inline void proj_pg_row_null(proj_pg_row *r)
{
    r->val[r->n] = NULL;
    r->len[r->n] = 0;
    r->fmt[r->n++] = 1;
}

/* n bytes at p (NULL: SQL NULL). */
static inline void proj_pg_row_bytes(proj_pg_row *r, const void *p, size_t n)
{
    if (p == NULL) {
        proj_pg_row_null(r);
        return;
    }
    r->val[r->n] = p;
    r->len[r->n] = (int)n;
    r->fmt[r->n++] = 1;
}

static inline void proj_pg_row_str(proj_pg_row *r, ev_str s)
{
    proj_pg_row_bytes(r, s.ptr, s.len);
}

static inline void proj_pg_row_cstr(proj_pg_row *r, const char *s)
{
    proj_pg_row_bytes(r, s, strlen(s));
}

static inline void proj_pg_row_i32(proj_pg_row *r, int32_t v)
{
    proj_pg_be32(r->num[r->n], (uint32_t)v);
    proj_pg_row_bytes(r, r->num[r->n], 4);
}

static inline void proj_pg_row_i64(proj_pg_row *r, int64_t v)
{
    proj_pg_be64(r->num[r->n], (uint64_t)v);
    proj_pg_row_bytes(r, r->num[r->n], 8);
}

/* A timestamptz from Unix microseconds. */
static inline void proj_pg_row_ts(proj_pg_row *r, int64_t unix_us)
{
    proj_pg_row_i64(r, unix_us - PROJ_PG_EPOCH_US);
}

/* Column c of `from` as the next column of `to` (numbers point into `from`). */
static inline void proj_pg_row_copy(proj_pg_row *to, const proj_pg_row *from, int c)
{
    to->val[to->n] = from->val[c];
    to->len[to->n] = from->len[c];
    to->fmt[to->n++] = from->fmt[c];
}

/* Start b as a COPY (FORMAT binary) stream: its header. */
void proj_pg_copy_start(proj_pg_buf *b);
/* Append r as one tuple of the stream. 0 or KQ_ENOMEM. */
int proj_pg_copy_row(proj_pg_buf *b, const proj_pg_row *r);
/* Run `sql` (COPY ... FROM STDIN (FORMAT binary)) with the stream b (its
 * trailer is appended here). 0 or KQ_EPG. */
int proj_pg_copy_in(PGconn *conn, const char *sql, proj_pg_buf *b, char *errstr, size_t errlen);

/* Text array literals ("{"a","b"}") for $n::text[] / ::bigint[] parameters:
 * start, add elements (quoted and escaped), end. add/end: 0 or KQ_ENOMEM
 * (also when start ran out of memory). */
void proj_pg_arr_start(proj_pg_buf *b);
int proj_pg_arr_add(proj_pg_buf *b, const char *s, size_t n);
int proj_pg_arr_str(proj_pg_buf *b, ev_str v); /* NULL element when v.ptr is NULL */
int proj_pg_arr_i64(proj_pg_buf *b, int64_t v);
int proj_pg_arr_end(proj_pg_buf *b);

/* KQ_EPG with "postgresql <what>: <first line of the error> (SQLSTATE x)" in
 * errstr; res may be NULL (the connection's message). */
int proj_pg_fail(PGconn *conn, const char *what, PGresult *res, char *errstr, size_t errlen);

/*
 * End a pipeline whose statements were sent (`send_failed`: a send failed):
 * send the Sync, read every statement's result (a result that is neither
 * COMMAND_OK, TUPLES_OK nor PIPELINE_ABORTED is the error reported, `what`
 * naming the statements), wait for the Sync and leave pipeline mode.
 * 0 or KQ_EPG.
 */
int proj_pg_pipeline_finish(PGconn *conn, int send_failed, const char *what, char *errstr,
                            size_t errlen);

#endif
