/* proj_migrate.c — schema migrations of the PostgreSQL read model; see proj_migrate.h. */
#include "proj_migrate.h"
#include "kq_err.h"
#include "kq_log.h"
#include "kq_pg.h"
#include "kq_rand.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

void proj_migrate_checksum(const char *data, size_t len, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];

    SHA256((const unsigned char *)data, len, md);
    kq_hex_encode(md, sizeof md, out);
}

/* "NNNN_name.sql" -> version NNNN; -1 when the name does not follow the rule. */
static long mig_version(const char *name)
{
    size_t n = strlen(name), i;
    long v = 0;

    if (n < 4 + 1 + 1 + 4 || strcmp(name + n - 4, ".sql") != 0 || name[4] != '_')
        return -1;
    for (i = 0; i < 4; i++) {
        if (!isdigit((unsigned char)name[i]))
            return -1;
        v = v * 10 + (name[i] - '0');
    }
    for (i = 5; i < n - 4; i++)
        if (!(islower((unsigned char)name[i]) || isdigit((unsigned char)name[i]) || name[i] == '_'))
            return -1;
    return v;
}

static const char mig_table_sql[] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                    " version integer PRIMARY KEY,"
                                    " name text NOT NULL,"
                                    " checksum text NOT NULL,"
                                    " applied_at timestamptz NOT NULL DEFAULT now())";

int proj_migrate_apply(PGconn *conn, const proj_migration *list, size_t n, int *applied,
                       char *errstr, size_t errlen)
{
    PGresult *res = NULL;
    char lock[96], sum[65], ver[16];
    int rc, count = 0, nrec;
    long prev = -1;

    if (applied != NULL)
        *applied = 0;
    for (size_t i = 0; i < n; i++) {
        long v = mig_version(list[i].name);
        if (v < 0)
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "migration '%s': name must be NNNN_[a-z0-9_]+.sql", list[i].name);
        if (v <= prev)
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "migration '%s': version not above the previous file's", list[i].name);
        prev = v;
    }
    snprintf(lock, sizeof lock, "SELECT pg_advisory_xact_lock(%lld)",
             (long long)PROJ_MIGRATE_LOCK_KEY);
    if ((rc = kq_pg_exec(conn, "BEGIN", errstr, errlen)))
        return rc;
    /* Keep the notices of CREATE ... IF NOT EXISTS out of the log. */
    if ((rc = kq_pg_exec(conn, "SET LOCAL client_min_messages = warning", errstr, errlen)) ||
        (rc = kq_pg_exec(conn, lock, errstr, errlen)) ||
        (rc = kq_pg_exec(conn, mig_table_sql, errstr, errlen)) ||
        (rc = kq_pg_exec_params(conn,
                                "SELECT version, name, checksum FROM schema_migrations"
                                " ORDER BY version",
                                0, NULL, &res, errstr, errlen)))
        goto out;
    nrec = PQntuples(res);
    for (int r = 0; r < nrec; r++) {
        long v = strtol(PQgetvalue(res, r, 0), NULL, 10);
        size_t i;

        for (i = 0; i < n && mig_version(list[i].name) != v; i++)
            ;
        if (i == n) {
            kq_log_warn("schema migration %ld (%s) is recorded but unknown to this binary "
                        "(a newer kcqrs migrated this database)",
                        v, PQgetvalue(res, r, 1));
            continue;
        }
        proj_migrate_checksum(list[i].sql, list[i].len, sum);
        if (strcmp(sum, PQgetvalue(res, r, 2)) != 0) {
            rc = kq_seterr(errstr, errlen, KQ_ECORRUPT,
                           "schema migration %s: recorded checksum %.12s... differs from the "
                           "file's %.12s...: a released migration was edited; restore it and "
                           "add a new NNNN_*.sql instead",
                           list[i].name, PQgetvalue(res, r, 2), sum);
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        long v = mig_version(list[i].name);
        int done = 0;
        const char *params[3];

        for (int r = 0; r < nrec && !done; r++)
            done = strtol(PQgetvalue(res, r, 0), NULL, 10) == v;
        if (done)
            continue;
        if ((rc = kq_pg_exec(conn, list[i].sql, errstr, errlen))) {
            char inner[512];
            snprintf(inner, sizeof inner, "%s", errstr ? errstr : "");
            kq_seterr(errstr, errlen, rc, "schema migration %s: %s", list[i].name, inner);
            goto out;
        }
        proj_migrate_checksum(list[i].sql, list[i].len, sum);
        snprintf(ver, sizeof ver, "%ld", v);
        params[0] = ver;
        params[1] = list[i].name;
        params[2] = sum;
        if ((rc = kq_pg_exec_params(conn,
                                    "INSERT INTO schema_migrations (version, name, checksum)"
                                    " VALUES ($1, $2, $3)",
                                    3, params, NULL, errstr, errlen)))
            goto out;
        kq_log_info("schema migration %s applied", list[i].name);
        count++;
    }
    rc = kq_pg_commit(conn, errstr, errlen);
out:
    PQclear(res);
    if (rc) {
        char ignore[128];
        kq_pg_rollback(conn, ignore, sizeof ignore);
        count = 0;
    }
    if (applied != NULL)
        *applied = count;
    return rc;
}

int proj_migrate_apply_embedded(PGconn *conn, int *applied, char *errstr, size_t errlen)
{
    return proj_migrate_apply(conn, proj_migrations, proj_migrations_count, applied, errstr,
                              errlen);
}
