/*
 * proj_migrate.h — schema migrations of the PostgreSQL read model.
 *
 * The SQL files ops/sql/NNNN_name.sql are embedded into libkcqrs.a at build
 * time (the Makefile generates $(BUILD)/gen/proj_sql_embed.c, sorted by file
 * name). proj_migrate_apply() runs at projector start, in ONE transaction
 * that first takes a transaction-scoped advisory lock (two projectors never
 * race), creates schema_migrations (version, name, checksum, applied_at) if
 * missing, and applies every embedded file whose version is not recorded
 * there, in order, recording it. A recorded migration is never re-applied; if
 * its recorded checksum (SHA-256 of the file, hex) differs from the embedded
 * file the whole start is refused (KQ_ECORRUPT): someone edited a released
 * migration, and the database may not match the code.
 *
 * Owns nothing; the connection is the caller's and must not be inside a
 * transaction. Reentrant.
 */
#ifndef PROJ_MIGRATE_H
#define PROJ_MIGRATE_H

#include <stddef.h>

#include <libpq-fe.h>

/* One embedded file (generated table; static data). */
typedef struct proj_migration {
    const char *name; /* "0001_init.sql" */
    const char *sql;  /* file contents, NUL-terminated */
    size_t len;       /* bytes of sql, NUL not counted */
} proj_migration;

extern const proj_migration proj_migrations[];
extern const size_t proj_migrations_count;

/* Advisory lock key (pg_advisory_xact_lock) that serialises migrations. */
#define PROJ_MIGRATE_LOCK_KEY 0x6b637172736d6967LL /* "kcqrsmig" */

/*
 * Apply the pending migrations of `list` (n entries, sorted by name, names
 * NNNN_[a-z0-9_]+.sql) on `conn`. *applied (may be NULL) receives how many
 * were applied now. Returns 0, KQ_EPG (server error: nothing was applied),
 * KQ_ECORRUPT (checksum mismatch) or KQ_EINVAL (bad file name, duplicate
 * version). proj_migrate_apply_embedded() passes the embedded table.
 */
int proj_migrate_apply(PGconn *conn, const proj_migration *list, size_t n, int *applied,
                       char *errstr, size_t errlen);
int proj_migrate_apply_embedded(PGconn *conn, int *applied, char *errstr, size_t errlen);

/* SHA-256 of `len` bytes as 64 lower-case hex digits + NUL into out[65]. */
void proj_migrate_checksum(const char *data, size_t len, char out[65]);

#endif
