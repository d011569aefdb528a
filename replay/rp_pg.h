/*
 * rp_pg.h — helpers of kcqrs-replay's PostgreSQL target (rp_pg.c, the table
 * rp_pg_ops of rp_target.h) that are useful on their own: schema names and the
 * fingerprint of one schema.
 *
 * Reentrant; connections are the caller's.
 */
#ifndef RP_PG_H
#define RP_PG_H

#include <stddef.h>

#include <libpq-fe.h>

#include "proj_batch.h"
#include "rp_fp.h"

/*
 * The schema kcqrs-replay builds into for `live` (KCQRS_PG_SCHEMA): name ==
 * NULL: "<live>_shadow"; else the named snapshot "<live>_snap_<name>", name
 * matching [a-z0-9_]{1,32}. KQ_EINVAL when the name is bad or the result would
 * not be a valid schema name (more than 63 bytes).
 */
int rp_pg_schema_name(const char *live, const char *name, char *out, size_t outlen, char *errstr,
                      size_t errlen);

/*
 * Fingerprint every table of `schema` but schema_migrations into fp, in ONE
 * REPEATABLE READ READ ONLY transaction on `conn` (which must not be in a
 * transaction): row key = the primary key columns as text joined by '/'
 * (the row's text when a table has none), value = the row as `t::text`
 * (session: TimeZone UTC, ISO dates, hex bytea). Rows are streamed through a
 * cursor, 10000 at a time. cb (may be NULL) receives the projection_offsets
 * rows of the same snapshot. KQ_ENOTFOUND when the schema does not exist.
 */
int rp_pg_fingerprint(PGconn *conn, const char *schema, rp_fp *fp, proj_offset_fn cb, void *arg,
                      char *errstr, size_t errlen);

#endif
