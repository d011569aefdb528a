/*
 * proj_pg.c — the PostgreSQL target of kcqrs-projector; see proj_pg.h.
 *
 * One batch = one transaction:
 *
 *   BEGIN
 *   1 query   the stored version of every aggregate the batch touches
 *             (aggregate_versions JOIN unnest($types, $ids)): not one query
 *             per event;
 *   in C      walk the events in log order: version == last + 1 is applied
 *             (last includes the batch's own earlier events); version <= last
 *             is either already applied (its aggregate and version present
 *             in `events` with the same topic/partition/offset: only after
 *             lost offsets, checked with ONE more query for just those
 *             events) and skipped, or dead-lettered as
 *             stale; a gap is dead-lettered. Each applied event goes to its
 *             aggregate type's row of proj_aggregate.h: resource events are
 *             folded per resource into at most one row operation (full
 *             upsert, patch of the changed columns, or delete;
 *             proj_pg_resource.c), versions into one row per aggregate, so
 *             every statement below touches each row once;
 *   write     the event rows into `events` (COPY), the version rows and the
 *             resource operations (one merge statement, proj_pg_resource.c),
 *             then the workflow and run statements (one pipeline,
 *             proj_pg_wfrun.c);
 *   offsets   one statement: upsert every `next` offset (unnest of arrays)
 *             and pg_notify('kcqrs_projection', '');
 *   COMMIT
 *
 * The write path, measured with bench/bench_pg_apply (200k ResourceCreated /
 * ResourceUpdated events over 40k resources, batches of 2000, PostgreSQL 15
 * with fsync on and default settings, on the shared 2-core build machine
 * under load 4-7; three interleaved runs; events/s wall clock and server
 * backend CPU per event):
 *
 *   PROJ_PG_PATH_COPY          13.7k / 9.7k / 13.6k ev/s, 42-53 us/ev
 *       COPY ... FROM STDIN (FORMAT binary) straight into `events`, then ONE
 *       statement merges versions and resources from 12 array parameters
 *       (unnest + data-modifying CTEs: INSERT new versions, UPDATE the
 *       others, DELETE / upsert / patch resources);
 *
 * against two alternatives that live in bench/pgpaths/ (with their numbers):
 * COPY into temporary staging tables merged by set-based statements
 * (PROJ_PG_PATH_COPY_STAGING), and libpq pipeline mode with one prepared
 * statement per row (PROJ_PG_PATH_PIPELINE); they plug in as pg->write.
 *
 * COPY is the default: it costs the server about 40% less CPU per event than
 * the pipeline (one COPY stream instead of one executor run per row), and of
 * the two COPY variants the array merge was faster in every 200k run while
 * costing the same CPU, needs no per-session temporary tables and is one
 * round trip. Both variants and the pipeline write the same rows; the e2e
 * tests run all three. Client CPU is ~2-3 us/event on every path: the server
 * is the bottleneck. What the server spends is mostly index maintenance:
 * `events` had seven indexes (primary key, aggregate/version, event_id and
 * four query indexes; four since ops/sql/0003_audit_indexes.sql), and each event also updates one
 * aggregate_versions row and one resources row (fillfactor 70 keeps those updates HOT; ~15% less
 * server CPU). Without events' six secondary indexes the same run went ~1.7x faster, the schema's
 * price for the audit queries.
 *
 * Rows are binary wherever possible: uuid as 16 bytes, timestamptz as
 * microseconds since 2000-01-01, jsonb as version byte 1 + the text that
 * ev_json_payload_append prints (the payload table exactly as `kcqrs-events
 * decode` prints it under "payload").
 *
 * synchronous_commit = off (per session; bench/pgpaths/ can turn it on).
 * At 2000-event batches one WAL flush per batch is lost in the noise (copy
 * with synchronous_commit on: 10.0k / 12.4k ev/s in the runs above); it
 * matters at the live tail, where batches are a few events (gathered for
 * KCQRS_PROJ_BATCH_MS) and a flush per commit would dominate. A commit returns before
 * its WAL is flushed, so a crash of PostgreSQL or of its machine (not of the
 * projector) can lose the last commits, up to about 3 x wal_writer_delay.
 * That keeps exactly-once: WAL replay restores a prefix of the committed
 * transactions, and every batch carries its own offsets in the same
 * transaction, so a lost batch is lost together with its offsets; on restart
 * the projector reloads the older offsets and applies those records again
 * from Kafka, the only source of truth. Dead-letter records of a lost batch
 * are produced again under the same key (compaction keeps one). The visible
 * effect: a reader woken by pg_notify may have seen rows, or a consistency
 * token as applied, that a PostgreSQL crash takes back until the projector
 * re-applies them moments later.
 *
 * Strings: PostgreSQL text and jsonb cannot hold NUL; the log can (decoding
 * does not re-check domain rules), so an event with a NUL in a stored string
 * is dead-lettered instead of failing its batch forever.
 *
 * The files of this target: proj_pg_int.h.
 *
 * Threads: one proj_pg per thread. Memory: everything is owned by the
 * proj_pg and reused from batch to batch.
 */
#include "proj_pg.h"
#include "proj_pg_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ev_json.h"
#include "kq_err.h"
#include "kq_log.h"
#include "kq_map.h"
#include "kq_pg.h"
#include "proj_doc.h"
#include "proj_failpoint.h"
#include "proj_migrate.h"

static const char events_copy_sql[] =
    "COPY events (topic, partition, \"offset\", event_id, aggregate_type, aggregate_id, version,"
    " event_type, occurred_at, occurred_at_us, actor, command_id, correlation_id, causation_id,"
    " schema_version, prev_hash, command_hash, payload) FROM STDIN (FORMAT binary)";

static const char versions_sql[] =
    "SELECT v.aggregate_type, v.aggregate_id, v.version FROM aggregate_versions v"
    " JOIN unnest($1::text[], $2::text[]) AS k(t, i)"
    " ON v.aggregate_type = k.t AND v.aggregate_id = k.i";

/* The same with, for a run, what its rows store of its fold state
 * (run_state_parse): "status|step letters|attempts|step:attempt:at_us:next_delay_ms"
 * of its last attempt. Used only for batches that hold run events; the CASE
 * keeps the subqueries off other aggregates' rows. */
static const char versions_runs_sql[] =
    "SELECT v.aggregate_type, v.aggregate_id, v.version,"
    " CASE WHEN v.aggregate_type = 'run' THEN (SELECT concat(r.status, '|',"
    "  (SELECT string_agg(left(x.s ->> 'status', 1), '' ORDER BY x.i)"
    "   FROM jsonb_array_elements(r.steps) WITH ORDINALITY AS x(s, i)), '|',"
    "  (SELECT count(*) FROM run_attempts a WHERE a.run_id = r.id), '|',"
    "  (SELECT concat(a.step, ':', a.attempt, ':',"
    "   (extract(epoch FROM a.at) * 1000000)::bigint, ':', coalesce(a.next_delay_ms, -1))"
    "   FROM run_attempts a WHERE a.run_id = r.id ORDER BY a.step DESC, a.attempt DESC LIMIT 1))"
    "  FROM runs r WHERE r.id = v.aggregate_id) END"
    " FROM aggregate_versions v JOIN unnest($1::text[], $2::text[]) AS k(t, i)"
    " ON v.aggregate_type = k.t AND v.aggregate_id = k.i";

/* By the events' primary key (aggregate_type, aggregate_id, version): the same
 * record has the same key, so "present at the same origin" is "the row of its
 * key has its topic, partition and offset" (events has no index on the
 * origin: ops/sql/0003_audit_indexes.sql). */
static const char present_sql[] =
    "SELECT e.topic, e.partition, e.\"offset\" FROM events e"
    " JOIN unnest($1::text[], $2::text[], $3::bigint[]) AS k(t, i, v)"
    " ON e.aggregate_type = k.t AND e.aggregate_id = k.i AND e.version = k.v";

/* ---------------------------------------------------------------- open / close */

int proj_pg_prepare(proj_pg *pg, const char *name, const char *sql, char *errstr, size_t errlen)
{
    PGresult *res = PQprepare(pg->conn, name, sql, 0, NULL);
    int rc = 0;

    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = proj_pg_fail(pg->conn, "prepare", res, errstr, errlen);
    PQclear(res);
    return rc;
}

int proj_pg_open(const kq_config *cfg, proj_pg **out, char *errstr, size_t errlen)
{
    return proj_pg_open_schema(cfg, cfg ? cfg->pg_schema : NULL, PROJ_PG_CREATE_SCHEMA, out, errstr,
                               errlen);
}

int proj_pg_open_live(const kq_config *cfg, proj_pg **out, char *errstr, size_t errlen)
{
    return proj_pg_open_schema(cfg, cfg ? cfg->pg_schema : NULL,
                               PROJ_PG_CREATE_SCHEMA | PROJ_PG_EXCLUSIVE, out, errstr, errlen);
}

int proj_pg_open_schema(const kq_config *cfg, const char *schema, int flags, proj_pg **out,
                        char *errstr, size_t errlen)
{
    proj_pg *pg;
    int rc, applied = 0;
    char sql[512];

    *out = NULL;
    if (cfg == NULL || cfg->pg_dsn == NULL || *cfg->pg_dsn == '\0')
        return kq_seterr(errstr, errlen, KQ_ECONFIG, "KCQRS_PG_DSN is not set");
    if (!kq_pg_schema_valid(schema))
        return kq_seterr(errstr, errlen, KQ_ECONFIG, "invalid PostgreSQL schema name '%.80s'",
                         schema ? schema : "(null)");
    if ((pg = calloc(1, sizeof *pg)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    pg->write = proj_pg_write_merge;
    if ((pg->aggs = kq_map_new(sizeof(proj_pg_agg), NULL)) == NULL) {
        free(pg);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    snprintf(pg->schema, sizeof pg->schema, "%s", schema);
    snprintf(pg->lockname, sizeof pg->lockname, "kcqrs.readmodel:%s", schema);
    pg->conn = kq_pg_connect_schema(cfg->pg_dsn, cfg->kafka_timeout_ms, "kcqrs-projector", schema,
                                    errstr, errlen);
    if (pg->conn == NULL) {
        rc = KQ_EPG;
        goto fail;
    }
    if ((flags & PROJ_PG_EXCLUSIVE) && (rc = proj_pg_take_active(pg, errstr, errlen)))
        goto fail;
    /* The name is validated: no quoting needed. CREATE SCHEMA IF NOT EXISTS is
     * not safe against a concurrent creator (unique violation), so the
     * statements run as one implicit transaction under an advisory lock:
     * a second projector starting at the same moment waits, then sees it. */
    snprintf(sql, sizeof sql,
             "SELECT pg_advisory_xact_lock(hashtext('kcqrs.schema:%s'));"
             " SET client_min_messages = warning; CREATE SCHEMA IF NOT EXISTS %s;"
             " RESET client_min_messages",
             schema, schema);
    if ((flags & PROJ_PG_CREATE_SCHEMA) && (rc = kq_pg_exec(pg->conn, sql, errstr, errlen)))
        goto fail;
    if ((rc = proj_pg_schema_oid(pg, errstr, errlen)))
        goto fail;
    if ((rc = proj_migrate_apply_embedded(pg->conn, &applied, errstr, errlen)))
        goto fail;
    if (applied > 0)
        kq_log_info("postgresql: %d schema migration(s) applied in schema %s", applied, schema);
    if ((!(flags & PROJ_PG_DURABLE) &&
         (rc = kq_pg_exec(pg->conn, "SET synchronous_commit = off", errstr, errlen))) ||
        (rc = proj_pg_offsets_prepare(pg, errstr, errlen)) ||
        (rc = proj_pg_wfrun_prepare_statements(pg, errstr, errlen)))
        goto fail;
    *out = pg;
    return 0;
fail:
    proj_pg_close(pg);
    return rc;
}

void proj_pg_close(proj_pg *pg)
{
    if (pg == NULL)
        return;
    if (pg->conn != NULL)
        PQfinish(pg->conn);
    kq_map_free(pg->aggs);
    free(pg->key.p);
    free(pg->used);
    free(pg->info);
    free(pg->json.p);
    free(pg->copy.p);
    free(pg->a1.p);
    free(pg->a2.p);
    free(pg->a3.p);
    for (int i = 0; i < 12; i++)
        free(pg->arr[i].p);
    free(pg);
}

/* ---------------------------------------------------------------- aggregates */

/* The batch's aggregate of (type, id), keyed "<type>\0<id>" in pg->aggs;
 * created (zeroed, then initialised) when missing and `create`. NULL when
 * missing, or out of memory while creating. */
static proj_pg_agg *agg_find(proj_pg *pg, const char *type, const char *id, size_t len, int create)
{
    proj_pg_agg *a;
    int created = 0;

    pg->key.len = 0;
    if (proj_pg_buf_put(&pg->key, type, strlen(type) + 1) || proj_pg_buf_put(&pg->key, id, len))
        return NULL;
    if (!create)
        return kq_map_getb(pg->aggs, pg->key.p, pg->key.len);
    if ((a = kq_map_putb(pg->aggs, pg->key.p, pg->key.len, &created)) == NULL || !created)
        return a;
    a->type = type;
    a->id = id;
    a->idlen = (uint32_t)len;
    a->status = -1;
    ev_run_init(&a->run);
    pg->used[pg->nused++] = a;
    return a;
}

static int has_nul(ev_str s)
{
    return s.ptr != NULL && memchr(s.ptr, '\0', s.len) != NULL;
}

/* Does JSON text contain the escape \u0000? (A backslash starts an escape;
 * the character after it is skipped, so "\\u0000" is not one.) */
static int json_has_nul(const char *j, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (j[i] != '\\')
            continue;
        if (n - i >= 6 && memcmp(j + i + 1, "u0000", 5) == 0)
            return 1;
        i++;
    }
    return 0;
}

/* ---------------------------------------------------------------- per batch */

static int batch_prepare(proj_pg *pg, size_t n, char *errstr, size_t errlen)
{
    kq_map_clear(pg->aggs);
    pg->nused = 0;
    if (n > pg->infocap) {
        proj_pg_evinfo *ni = realloc(pg->info, n * sizeof *ni);
        proj_pg_agg **nu = realloc(pg->used, n * sizeof *nu);
        if (ni != NULL)
            pg->info = ni;
        if (nu != NULL)
            pg->used = nu;
        if (ni == NULL || nu == NULL)
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        pg->infocap = n;
    }
    if (n > 0) /* an offsets-only batch (past transaction markers) has no events */
        memset(pg->info, 0, n * sizeof *pg->info);
    pg->json.len = 0;
    return 0;
}

/* A run's fold state from what versions_runs_sql says of its rows (NULL or
 * empty: no run row). 0 or KQ_ECORRUPT. */
static int run_state_parse(const char *txt, int64_t version, ev_run_state *s)
{
    proj_run_stored st;
    char status[16], letters[EV_MAX_STEPS + 2];
    long long total = 0, step = -1, attempt = 0, at = 0, delay = -1;
    const char *p;
    size_t n;

    memset(&st, 0, sizeof st);
    st.next_delay_ms = -1;
    if (txt == NULL || *txt == '\0') {
        ev_run_init(s);
        return 0;
    }
    n = strcspn(txt, "|");
    if (n >= sizeof status || txt[n] != '|')
        return KQ_ECORRUPT;
    memcpy(status, txt, n);
    status[n] = '\0';
    p = txt + n + 1;
    n = strcspn(p, "|");
    if (n >= sizeof letters || p[n] != '|')
        return KQ_ECORRUPT;
    memcpy(letters, p, n);
    letters[n] = '\0';
    p += n + 1;
    if (sscanf(p, "%lld|%lld:%lld:%lld:%lld", &total, &step, &attempt, &at, &delay) < 1)
        return KQ_ECORRUPT;
    st.version = version;
    st.status = ev_run_status_parse(status);
    st.step_count = (uint32_t)strlen(letters);
    while (st.done < st.step_count && letters[st.done] == 's')
        st.done++;
    st.current_failed = st.done < st.step_count && letters[st.done] == 'f';
    st.total_attempts = total;
    if (step >= 0 && step == (long long)st.done && attempt > 0) {
        st.attempts = (uint32_t)attempt;
        st.last_attempt_us = at;
        st.next_delay_ms = delay;
    }
    return proj_run_state_load(&st, s);
}

/* Stored versions of every aggregate of the batch (and the fold state of its
 * runs): one query. */
static int load_versions(proj_pg *pg, char *errstr, size_t errlen)
{
    const char *params[2];
    PGresult *res = NULL;
    int rc = 0, any = 0, runs = 0;

    proj_pg_arr_start(&pg->a1);
    proj_pg_arr_start(&pg->a2);
    for (size_t i = 0; i < pg->nused; i++) {
        const proj_pg_agg *a = pg->used[i];
        any = 1;
        runs |= strcmp(a->type, "run") == 0;
        if (proj_pg_arr_add(&pg->a1, a->type, strlen(a->type)) ||
            proj_pg_arr_add(&pg->a2, a->id, a->idlen))
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    if (!any)
        return 0;
    if (proj_pg_arr_end(&pg->a1) || proj_pg_arr_end(&pg->a2))
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    params[0] = pg->a1.p;
    params[1] = pg->a2.p;
    if ((rc = kq_pg_exec_params(pg->conn, runs ? versions_runs_sql : versions_sql, 2, params, &res,
                                errstr, errlen)))
        return rc;
    for (int r = 0; r < PQntuples(res); r++) {
        const char *t = PQgetvalue(res, r, 0), *id = PQgetvalue(res, r, 1);
        proj_pg_agg *a;
        /* the type names are ours: map back to the static strings */
        const char *st = strcmp(t, "resource") == 0   ? "resource"
                         : strcmp(t, "workflow") == 0 ? "workflow"
                         : strcmp(t, "run") == 0      ? "run"
                                                      : "unknown";
        if ((a = agg_find(pg, st, id, (size_t)PQgetlength(res, r, 1), 0)) == NULL)
            continue;
        a->stored = a->cur = (int64_t)strtoll(PQgetvalue(res, r, 2), NULL, 10);
        if (runs && strcmp(st, "run") == 0 &&
            run_state_parse(PQgetisnull(res, r, 3) ? NULL : PQgetvalue(res, r, 3), a->stored,
                            &a->run) != 0) {
            rc = kq_seterr(errstr, errlen, KQ_ECORRUPT,
                           "postgresql: the rows of run %s are not a run's", id);
            break;
        }
    }
    PQclear(res);
    return rc;
}

/* Events whose version is not above the stored one: already in `events` at the
 * same origin (skip) or not (dead-letter). One query for all of them. */
static int check_present(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen)
{
    const char *params[3];
    PGresult *res = NULL;
    char num[24];
    int rc, any = 0;

    proj_pg_arr_start(&pg->a1);
    proj_pg_arr_start(&pg->a2);
    proj_pg_arr_start(&pg->a3);
    for (size_t i = 0; i < b->n; i++) {
        if (pg->info[i].st != PROJ_PG_MAYBE_DUP)
            continue;
        any = 1;
        rc = proj_pg_arr_add(&pg->a1, pg->info[i].a->type, strlen(pg->info[i].a->type));
        rc |= proj_pg_arr_add(&pg->a2, pg->info[i].a->id, pg->info[i].a->idlen);
        snprintf(num, sizeof num, "%" PRId64, b->ev[i].env.version);
        rc |= proj_pg_arr_add(&pg->a3, num, strlen(num));
        if (rc)
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    if (!any)
        return 0;
    if (proj_pg_arr_end(&pg->a1) || proj_pg_arr_end(&pg->a2) || proj_pg_arr_end(&pg->a3))
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    params[0] = pg->a1.p;
    params[1] = pg->a2.p;
    params[2] = pg->a3.p;
    if ((rc = kq_pg_exec_params(pg->conn, present_sql, 3, params, &res, errstr, errlen)))
        return rc;
    for (size_t i = 0; i < b->n; i++) {
        const proj_event *ev = &b->ev[i];
        int found = 0;

        if (pg->info[i].st != PROJ_PG_MAYBE_DUP)
            continue;
        for (int r = 0; r < PQntuples(res) && !found; r++)
            found = strcmp(PQgetvalue(res, r, 0), ev->topic) == 0 &&
                    strtol(PQgetvalue(res, r, 1), NULL, 10) == ev->partition &&
                    strtoll(PQgetvalue(res, r, 2), NULL, 10) == ev->offset;
        pg->info[i].st = found ? PROJ_PG_SKIP : PROJ_PG_DEAD;
        if (!found)
            pg->info[i].reason = "stale";
    }
    PQclear(res);
    return 0;
}

void proj_pg_event_row(const proj_pg *pg, const proj_event *ev, const proj_pg_evinfo *in,
                       proj_pg_row *r)
{
    const ev_envelope *e = &ev->env;

    r->n = 0;
    proj_pg_row_cstr(r, ev->topic);
    proj_pg_row_i32(r, ev->partition);
    proj_pg_row_i64(r, ev->offset);
    proj_pg_row_bytes(r, e->event_id.bytes, 16);
    proj_pg_row_cstr(r, in->a->type);
    proj_pg_row_str(r, e->aggregate_id);
    proj_pg_row_i64(r, e->version);
    proj_pg_row_cstr(r, ev_event_type_name(e->payload_type) ? ev_event_type_name(e->payload_type)
                                                            : "NONE");
    proj_pg_row_ts(r, e->occurred_at_us);
    proj_pg_row_i64(r, e->occurred_at_us);
    proj_pg_row_str(r, e->actor);
    proj_pg_row_str(r, e->command_id);
    proj_pg_row_str(r, e->correlation_id);
    proj_pg_row_str(r, e->causation_id);
    proj_pg_row_i32(r, e->schema_version);
    proj_pg_row_bytes(r, e->prev_hash.ptr, e->prev_hash.len);
    proj_pg_row_bytes(r, e->command_hash.ptr, e->command_hash.len);
    proj_pg_row_bytes(r, pg->json.p + in->json_off, in->json_len);
}

int proj_pg_copy_events(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen)
{
    proj_pg_row r;

    proj_pg_copy_start(&pg->copy);
    for (size_t i = 0; i < b->n; i++) {
        if (pg->info[i].st != PROJ_PG_APPLY)
            continue;
        proj_pg_event_row(pg, &b->ev[i], &pg->info[i], &r);
        if (proj_pg_copy_row(&pg->copy, &r))
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    return proj_pg_copy_in(pg->conn, events_copy_sql, &pg->copy, errstr, errlen);
}

/* Walk the batch in order: decide apply / maybe-duplicate / dead per event. */
static int classify(proj_pg *pg, const proj_batch *b, char *errstr, size_t errlen)
{
    int any_dup = 0;

    for (size_t i = 0; i < b->n; i++) {
        const proj_event *ev = &b->ev[i];
        const ev_envelope *e = &ev->env;
        proj_pg_evinfo *in = &pg->info[i];
        proj_pg_agg *a = in->a;
        const proj_aggregate *ag;
        size_t start;

        if (!ev->decoded)
            continue;
        if (e->version == a->cur + 1) {
            in->st = PROJ_PG_APPLY;
        } else if (e->version <= a->cur) {
            in->st = PROJ_PG_MAYBE_DUP;
            in->last = a->cur;
            any_dup = 1;
            continue;
        } else {
            in->st = PROJ_PG_DEAD;
            in->reason = "gap";
            in->last = a->cur;
            continue;
        }
        if (has_nul(e->aggregate_id) || has_nul(e->actor) || has_nul(e->command_id) ||
            has_nul(e->correlation_id) || has_nul(e->causation_id)) {
            in->st = PROJ_PG_DEAD;
            in->reason = "nul";
            continue;
        }
        /* jsonb binary format: version byte 1, then the text */
        start = pg->json.len;
        if (proj_pg_buf_put(&pg->json, "\1", 1) ||
            ev_json_payload_append(proj_event_bytes(ev), &pg->json.p, &pg->json.len,
                                   &pg->json.cap) == KQ_ENOMEM)
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory printing a payload");
        in->json_off = start;
        in->json_len = pg->json.len - start;
        if (in->json_len <= 1) { /* no payload table: store an empty object */
            pg->json.len = start;
            proj_pg_buf_put(&pg->json, "\1{}", 3);
            in->json_len = 3;
        }
        if (json_has_nul(pg->json.p + start + 1, in->json_len - 1)) {
            pg->json.len = start;
            in->st = PROJ_PG_DEAD;
            in->reason = "nul";
            continue;
        }
        ag = proj_aggregate_of(e->aggregate_type);
        if (ag->pg_check != NULL) {
            int wr = ag->pg_check(pg, ev, in, start);
            if (wr == KQ_ENOMEM)
                return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
            if (wr != 0) {
                pg->json.len = start;
                in->st = PROJ_PG_DEAD;
                continue;
            }
        }
        a->cur = e->version;
        if (ag->pg_fold != NULL)
            ag->pg_fold(a, e);
    }
    if (any_dup && pg->fold != NULL) {
        /* bulk mode: every offset is read once into a shadow whose versions the
         * fold holds, so no such event can be present: stale, as check_present
         * would find */
        for (size_t i = 0; i < b->n; i++)
            if (pg->info[i].st == PROJ_PG_MAYBE_DUP) {
                pg->info[i].st = PROJ_PG_DEAD;
                pg->info[i].reason = "stale";
            }
        return 0;
    }
    if (any_dup)
        return check_present(pg, b, errstr, errlen);
    return 0;
}

static const char *dead_reason(proj_pg *pg, const proj_event *ev, const proj_pg_evinfo *in)
{
    const ev_envelope *e = &ev->env;

    if (strcmp(in->reason, "nul") == 0)
        return "a stored string contains a NUL character, which PostgreSQL text/jsonb cannot "
               "hold";
    if (strcmp(in->reason, "type") == 0)
        return "event type does not belong to the envelope's aggregate type";
    if (strcmp(in->reason, "run") == 0) {
        snprintf(pg->reason, sizeof pg->reason, "run event refused by the run fold: %s", in->why);
        return pg->reason;
    }
    if (strcmp(in->reason, "doc") == 0)
        return "workflow/run event the read model cannot store (malformed action, payload_json "
               "not a JSON object, too many steps or invalid UTF-8)";
    snprintf(pg->reason, sizeof pg->reason,
             "%s version %" PRId64 " of %s/%.*s: last applied version is %" PRId64,
             strcmp(in->reason, "gap") == 0 ? "version gap:" : "stale or duplicate event:",
             e->version, in->a->type, (int)(e->aggregate_id.len > 64 ? 64 : e->aggregate_id.len),
             e->aggregate_id.ptr, in->last);
    return pg->reason;
}

static int apply_batch(proj_pg *pg, const proj_batch *b, proj_dead_letter_fn dl, void *dlarg,
                       char *errstr, size_t errlen)
{
    int rc;

    if (pg == NULL || pg->conn == NULL || b == NULL || (b->n && b->ev == NULL) ||
        (b->nnext && b->next == NULL))
        return kq_seterr(errstr, errlen, KQ_EINVAL, "proj_pg_apply: bad arguments");
    if ((rc = batch_prepare(pg, b->n, errstr, errlen)))
        return rc;
    for (size_t i = 0; i < b->n; i++) {
        const proj_event *ev = &b->ev[i];

        if (!ev->decoded)
            continue;
        pg->info[i].a = agg_find(pg, proj_aggregate_of(ev->env.aggregate_type)->name,
                                 ev->env.aggregate_id.ptr ? ev->env.aggregate_id.ptr : "",
                                 ev->env.aggregate_id.len, 1);
        if (pg->info[i].a == NULL)
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    if (proj_pg_fold_broken(pg->fold))
        return kq_seterr(errstr, errlen, KQ_ENOMEM,
                         "postgresql bulk fold is incomplete (out of memory earlier)");
    if ((rc = kq_pg_begin(pg->conn, errstr, errlen)) ||
        (rc = proj_pg_lock_check(pg, errstr, errlen)) ||
        (rc = pg->fold ? proj_pg_fold_versions(pg) : load_versions(pg, errstr, errlen)) ||
        (rc = classify(pg, b, errstr, errlen)))
        goto fail;
    for (size_t i = 0; i < b->n; i++) {
        const proj_event *ev = &b->ev[i];
        if (pg->info[i].st != PROJ_PG_DEAD)
            continue;
        if (dl == NULL || dl(dlarg, ev, "pg", dead_reason(pg, ev, &pg->info[i])) != 0) {
            rc = kq_seterr(errstr, errlen, KQ_EIO,
                           "dead-lettering %s/%" PRId32 "/%" PRId64 " failed; batch rolled back",
                           ev->topic, ev->partition, ev->offset);
            goto fail;
        }
    }
    /* bulk mode: only the event rows; versions and resources go to the fold */
    rc = pg->fold != NULL ? proj_pg_copy_events(pg, b, errstr, errlen)
                          : pg->write(pg, b, errstr, errlen);
    if (rc || (rc = proj_pg_stmt_write(pg, b, errstr, errlen)))
        goto fail;
    proj_failpoint("pg_after_insert");
    if ((rc = proj_pg_store_offsets(pg, b, errstr, errlen)))
        goto fail;
    proj_failpoint("pg_before_commit");
    if ((rc = kq_pg_commit(pg->conn, errstr, errlen)))
        goto fail;
    proj_failpoint("pg_after_commit");
    if (pg->fold != NULL && (rc = proj_pg_fold_batch(pg)) != 0)
        return kq_seterr(errstr, errlen, rc, "postgresql bulk fold: out of memory");
    return 0;
fail:
    if (PQstatus(pg->conn) == CONNECTION_OK) {
        char ignore[128];
        kq_pg_rollback(pg->conn, ignore, sizeof ignore);
    }
    return rc == KQ_EIO || rc == KQ_ENOMEM || rc == KQ_ESWITCHED ? rc : KQ_EPG;
}

int proj_pg_apply(proj_pg *pg, const proj_batch *b, proj_dead_letter_fn dl, void *dlarg,
                  char *errstr, size_t errlen)
{
    int rc = apply_batch(pg, b, dl, dlarg, errstr, errlen);

    if (pg != NULL && b != NULL)
        proj_pg_wfrun_free(pg, b->n);
    return rc;
}

int proj_pg_target_load(void *t, proj_offset_fn cb, void *arg, char *errstr, size_t errlen)
{
    return proj_pg_load_offsets(t, cb, arg, errstr, errlen);
}

int proj_pg_target_apply(void *t, const proj_batch *b, proj_dead_letter_fn dl, void *dlarg,
                         char *errstr, size_t errlen)
{
    return proj_pg_apply(t, b, dl, dlarg, errstr, errlen);
}

void proj_pg_target_close(void *t)
{
    proj_pg_close(t);
}
