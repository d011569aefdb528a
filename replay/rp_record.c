/*
 * rp_record.c — the results of kcqrs-replay runs in PostgreSQL; see rp_record.h.
 */
#include "rp_record.h"

#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "kq_err.h"
#include "kq_pg.h"
#include "kq_time.h"

#define RECORD_LOCK_KEY 0x6b6371727372756eLL /* "kcqrsrun" */

const char *rp_record_outcome(const rp_job *j, int interrupted)
{
    if (interrupted || j->rc == RP_EINTR)
        return "interrupted";
    if (j->rc != 0)
        return "failed";
    if (j->cmd == RP_CMD_VERIFY && j->ndiff > 0)
        return "differences";
    return "succeeded";
}

static const char *kind_of(rp_cmd cmd)
{
    return cmd == RP_CMD_UNTIL ? "snapshot" : cmd == RP_CMD_VERIFY ? "verify" : "rebuild";
}

int rp_record_runs(const kq_config *cfg, rp_job *jobs, size_t n, rp_cmd cmd, const char *name,
                   int64_t started_us, int64_t finished_us, int interrupted, char *errstr,
                   size_t errlen)
{
    char schema[80], ddl[1400], ins[400], prune[400], keep[16], started[KQ_TIME_MAX],
        finished[KQ_TIME_MAX];
    const char *keepv[1] = {keep};
    PGconn *c = NULL;
    int rc;

    if (snprintf(schema, sizeof schema, "%s%s", cfg->pg_schema, RP_RECORD_SUFFIX) >=
            (int)sizeof schema ||
        !kq_pg_schema_valid(schema))
        return kq_seterr(errstr, errlen, KQ_EINVAL, "schema name %s%s is too long", cfg->pg_schema,
                         RP_RECORD_SUFFIX);
    snprintf(ddl, sizeof ddl,
             "SET client_min_messages = warning;"
             "SELECT pg_advisory_xact_lock(%lld);"
             "CREATE SCHEMA IF NOT EXISTS %s;"
             "CREATE TABLE IF NOT EXISTS %s.replay_runs ("
             " id bigserial PRIMARY KEY,"
             " kind text NOT NULL CHECK (kind IN ('rebuild', 'snapshot', 'verify')),"
             " target text NOT NULL,"
             " name text,"
             " started_at timestamptz NOT NULL,"
             " finished_at timestamptz NOT NULL,"
             " events bigint NOT NULL,"
             " outcome text NOT NULL"
             "  CHECK (outcome IN ('succeeded', 'differences', 'failed', 'interrupted')),"
             " differences bigint,"
             " detail text)",
             (long long)RECORD_LOCK_KEY, schema, schema);
    snprintf(ins, sizeof ins,
             "INSERT INTO %s.replay_runs (kind, target, name, started_at, finished_at, events,"
             " outcome, differences, detail) VALUES ($1, $2, $3, $4::timestamptz,"
             " $5::timestamptz, $6::bigint, $7, $8::bigint, $9)",
             schema);
    /* the newest cfg->replay_runs_keep rows of each target stay; in the same transaction */
    snprintf(prune, sizeof prune,
             "DELETE FROM %s.replay_runs WHERE id IN (SELECT id FROM (SELECT id, row_number()"
             " OVER (PARTITION BY target ORDER BY id DESC) AS n FROM %s.replay_runs) r"
             " WHERE n > $1::bigint)",
             schema, schema);
    snprintf(keep, sizeof keep, "%d", cfg->replay_runs_keep);
    kq_time_format(started_us, started);
    kq_time_format(finished_us, finished);
    if ((c = kq_pg_connect(cfg->pg_dsn, cfg->kafka_timeout_ms, "kcqrs-replay", errstr, errlen)) ==
        NULL)
        return KQ_EPG;
    if ((rc = kq_pg_begin(c, errstr, errlen)) != 0 ||
        (rc = kq_pg_exec(c, ddl, errstr, errlen)) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        rp_job *j = &jobs[i];
        const char *outcome = rp_record_outcome(j, interrupted), *detail = NULL;
        char events[32], ndiff[32];
        long long done, total;
        unsigned long long applied;
        const char *vals[9];

        rp_job_progress(j, &done, &total, &applied);
        snprintf(events, sizeof events, "%lld", done);
        snprintf(ndiff, sizeof ndiff, "%ld", j->ndiff);
        if (strcmp(outcome, "failed") == 0)
            detail = j->err;
        else if (strcmp(outcome, "differences") == 0)
            detail = j->diff;
        vals[0] = kind_of(cmd);
        vals[1] = j->t->name;
        vals[2] = cmd == RP_CMD_UNTIL ? name : NULL;
        vals[3] = started;
        vals[4] = finished;
        vals[5] = events;
        vals[6] = outcome;
        vals[7] = cmd == RP_CMD_VERIFY && j->rc == 0 ? ndiff : NULL;
        vals[8] = detail;
        if ((rc = kq_pg_exec_params(c, ins, 9, vals, NULL, errstr, errlen)) != 0)
            goto out;
    }
    if ((rc = kq_pg_exec_params(c, prune, 1, keepv, NULL, errstr, errlen)) != 0)
        goto out;
    rc = kq_pg_commit(c, errstr, errlen);
out:
    if (rc != 0) {
        char ignored[256];
        kq_pg_rollback(c, ignored, sizeof ignored);
    }
    PQfinish(c);
    return rc;
}
