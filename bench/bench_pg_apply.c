/*
 * bench_pg_apply — the PostgreSQL projector's write path: events/s through
 * proj_pg_apply() against a real PostgreSQL, for each write path.
 *
 *   bench_pg_apply [--events N] [--batch B] [--resources R] [--modes m1,m2,...]
 *                  [--baseline NAME|none]
 *
 * Modes: copy (COPY binary into events, then versions and resources merged
 * by one statement from array parameters; synchronous_commit off: what the
 * projector runs), copy_staging (COPY into events and into temporary staging
 * tables, merged by set-based statements), pipeline (pipeline mode + prepared
 * statements, one per row),
 * copy_sync (copy with synchronous_commit on: the price of flushing WAL at
 * every batch).
 *
 * Workload: N synthetic resource events (default 200000) over R resources
 * (default N / 5): event k is for resource k % R with version k / R + 1, so
 * each resource gets one ResourceCreated and then ResourceUpdated events
 * (name and status alternately), spread over 6 partitions of one topic like
 * a replay of the log; batches of B (default 2000, KCQRS_PROJ_BATCH_MAX's
 * default). Envelopes are encoded and decoded before the clock starts (the
 * runner hands decoded batches to the target). Before each mode the database
 * schema is dropped and migrated again, so every mode starts from empty
 * tables; after it the tables are checked (row counts, versions, offsets) and
 * a mismatch fails the program.
 *
 * Prints per mode:
 *   RESULT name=pg.apply.<mode> unit=events/s value=... baseline=kafka.consume
 *          target=>=0.25x (the copy mode only; the others are for comparison)
 *          server_cpu_us_per_event=... client_cpu_us_per_event=...
 * --baseline none leaves out baseline and target (when bench/run.sh does not
 * run the kafka phase). Server CPU is read from /proc/<backend pid>/stat, so
 * it needs the server on this machine and readable (-1 otherwise).
 * KCQRS_PG_DSN names the database (it is wiped: use a private one). Exit 0,
 * 1 on any failure, 2 on bad usage.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench_util.h"
#include "ev_codec.h"
#include "kq_config.h"
#include "kq_err.h"
#include "kq_log.h"
#include "kq_pg.h"
#include "proj_batch.h"
#include "proj_pg.h"
#include "pgpaths/bench_pg_paths.h"

#define NPART 6
#define TOPIC "bench.resource.events"

typedef struct bench_ev {
    uint8_t *buf;
    size_t len;
} bench_ev;

static int dl_count;

static int bench_dl(void *arg, const proj_event *ev, const char *target, const char *reason)
{
    (void)arg;
    (void)target;
    if (dl_count++ < 5)
        fprintf(stderr, "bench_pg_apply: dead letter %" PRId64 ": %s\n", ev->offset, reason);
    return 0;
}

/* Drop the read model's schema (cfg->pg_schema, validated); proj_pg_open creates it again. */
static int wipe(const char *dsn, const char *schema)
{
    char err[512], sql[160];
    PGconn *c = kq_pg_connect(dsn, 10000, "bench_pg_apply", err, sizeof err);
    int rc;

    if (c == NULL) {
        fprintf(stderr, "bench_pg_apply: %s\n", err);
        return -1;
    }
    snprintf(sql, sizeof sql, "SET client_min_messages = warning; DROP SCHEMA IF EXISTS %s CASCADE",
             schema);
    rc = kq_pg_exec(c, sql, err, sizeof err);
    if (rc)
        fprintf(stderr, "bench_pg_apply: wipe: %s\n", err);
    PQfinish(c);
    return rc;
}

/* CPU seconds (user + system) used so far by process `pid`; -1 if unreadable. */
static double proc_cpu_s(long pid)
{
    char path[64], line[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    p = fgets(line, sizeof line, f);
    fclose(f);
    if (p == NULL || (p = strrchr(line, ')')) == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The pid of the projector's backend (application_name kcqrs-projector). */
static long backend_pid(const char *dsn)
{
    char err[512];
    PGconn *c = kq_pg_connect(dsn, 10000, "bench_pg_apply", err, sizeof err);
    PGresult *res = NULL;
    long pid = -1;

    if (c == NULL)
        return -1;
    if (kq_pg_exec_params(c,
                          "SELECT pid FROM pg_stat_activity WHERE application_name ="
                          " 'kcqrs-projector' AND datname = current_database()",
                          0, NULL, &res, err, sizeof err) == 0) {
        if (PQntuples(res) == 1)
            pid = strtol(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
    }
    PQfinish(c);
    return pid;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int check(const char *dsn, const char *schema, long n, long r)
{
    char err[512], want[160];
    PGconn *c = kq_pg_connect_schema(dsn, 10000, "bench_pg_apply", schema, err, sizeof err);
    PGresult *res = NULL;
    int rc = -1;

    if (c == NULL)
        return -1;
    snprintf(want, sizeof want, "%ld|%ld|%ld|%ld", n, r, n, n);
    /* offsets: partition p's next is its event count; they sum to n */
    if (kq_pg_exec_params(c,
                          "SELECT (SELECT count(*) FROM events) || '|' ||"
                          " (SELECT count(*) FROM resources) || '|' ||"
                          " (SELECT sum(version) FROM aggregate_versions) || '|' ||"
                          " (SELECT sum(next_offset) FROM projection_offsets)",
                          0, NULL, &res, err, sizeof err) == 0) {
        /* the final versions sum to n only when every event was applied */
        long long nev, nres, sumv, sumo;
        if (sscanf(PQgetvalue(res, 0, 0), "%lld|%lld|%lld|%lld", &nev, &nres, &sumv, &sumo) == 4 &&
            nev == n && nres == r && sumv == n && sumo == n)
            rc = 0;
        if (rc)
            fprintf(stderr,
                    "bench_pg_apply: check failed: got %s, want events|resources|..|offsets %s\n",
                    PQgetvalue(res, 0, 0), want);
        PQclear(res);
    } else {
        fprintf(stderr, "bench_pg_apply: check: %s\n", err);
    }
    PQfinish(c);
    return rc;
}

int main(int argc, char **argv)
{
    kq_config cfg;
    char err[512];
    long n = 200000, batch = 2000, r = 0;
    const char *modes = "copy,copy_staging,pipeline,copy_sync";
    const char *baseline = "kafka.consume";
    bench_ev *evs = NULL;
    proj_event *pev = NULL;
    ev_fb_builder fb;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--events") == 0 && i + 1 < argc)
            n = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
            batch = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--resources") == 0 && i + 1 < argc)
            r = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--modes") == 0 && i + 1 < argc)
            modes = argv[++i];
        else if (strcmp(argv[i], "--baseline") == 0 && i + 1 < argc)
            baseline = argv[++i];
        else {
            fprintf(stderr,
                    "usage: bench_pg_apply [--events N] [--batch B] [--resources R] "
                    "[--modes copy,copy_staging,pipeline,copy_sync] [--baseline NAME|none]\n");
            return 2;
        }
    }
    if (r <= 0)
        r = n / 5 > 0 ? n / 5 : 1;
    if (n <= 0 || batch <= 0 || r > n) {
        fprintf(stderr, "bench_pg_apply: need N > 0, B > 0, R <= N\n");
        return 2;
    }
    if (kq_config_load_and_init_log(&cfg, "bench_pg_apply", err, sizeof err)) {
        fprintf(stderr, "bench_pg_apply: %s\n", err);
        return 2;
    }
    evs = calloc((size_t)n, sizeof *evs);
    pev = calloc((size_t)n, sizeof *pev);
    ev_fb_builder_init(&fb);
    if (evs == NULL || pev == NULL)
        goto out;
    /* encode and decode everything up front */
    for (long k = 0; k < n; k++) {
        ev_envelope e;
        char id[32], name[64], actor[] = "bench";
        const uint8_t *data;
        size_t len;
        long v = k / r + 1;

        snprintf(id, sizeof id, "res-%ld", k % r);
        ev_envelope_init(&e, v == 1 ? EV_RESOURCE_CREATED : EV_RESOURCE_UPDATED);
        /* unique per event: k in the last 8 bytes */
        for (int b = 0; b < 8; b++) {
            e.event_id.bytes[b] = (uint8_t)(0x5a ^ b);
            e.event_id.bytes[8 + b] = (uint8_t)((uint64_t)k >> (56 - 8 * b));
        }
        e.aggregate_id = ev_str_c(id);
        e.version = v;
        e.occurred_at_us = 1763764800000000LL + k * 1000;
        e.actor = ev_str_c(actor);
        snprintf(name, sizeof name, "resource %ld rev %ld", k % r, v);
        if (v == 1) {
            e.payload.resource_created.name = ev_str_c(name);
            e.payload.resource_created.description = ev_str_c("a benchmark resource");
            e.payload.resource_created.status = EV_STATUS_ACTIVE;
        } else if (v % 2 == 0) {
            e.payload.resource_updated.name = ev_str_c(name);
        } else {
            e.payload.resource_updated.has_status = true;
            e.payload.resource_updated.status = (ev_resource_status)(v % 3);
        }
        if (ev_envelope_encode(&fb, &e, err, sizeof err)) {
            fprintf(stderr, "bench_pg_apply: encode: %s\n", err);
            goto out;
        }
        data = ev_fb_builder_data(&fb, &len);
        if ((evs[k].buf = malloc(len)) == NULL)
            goto out;
        memcpy(evs[k].buf, data, len);
        evs[k].len = len;
    }
    for (long k = 0; k < n; k++) {
        pev[k].topic = TOPIC;
        pev[k].partition = (int32_t)(k % NPART);
        pev[k].offset = k / NPART;
        pev[k].value = evs[k].buf;
        pev[k].len = evs[k].len;
        pev[k].key = "";
        pev[k].keylen = 0;
        pev[k].decoded =
            ev_envelope_decode(evs[k].buf, evs[k].len, &pev[k].env, err, sizeof err) == 0;
        if (!pev[k].decoded) {
            fprintf(stderr, "bench_pg_apply: decode: %s\n", err);
            goto out;
        }
    }
    for (const char *m = modes; *m;) {
        size_t ml = strcspn(m, ",");
        char mode[32];
        proj_pg *pg = NULL;
        proj_pg_path path;
        int sync;
        uint64_t t0, t1;
        double srv0, srv1, cli0, cli1;
        int has_base = strcmp(baseline, "none") != 0;
        long pid;

        snprintf(mode, sizeof mode, "%.*s", (int)ml, m);
        m += ml + (m[ml] == ',');
        if (strcmp(mode, "copy") == 0)
            path = PROJ_PG_PATH_COPY, sync = 0;
        else if (strcmp(mode, "pipeline") == 0)
            path = PROJ_PG_PATH_PIPELINE, sync = 0;
        else if (strcmp(mode, "copy_staging") == 0)
            path = PROJ_PG_PATH_COPY_STAGING, sync = 0;
        else if (strcmp(mode, "copy_sync") == 0)
            path = PROJ_PG_PATH_COPY, sync = 1;
        else {
            fprintf(stderr, "bench_pg_apply: unknown mode %s\n", mode);
            goto out;
        }
        if (wipe(cfg.pg_dsn, cfg.pg_schema))
            goto out;
        if (proj_pg_open(&cfg, &pg, err, sizeof err) ||
            proj_pg_set_path(pg, path, sync, err, sizeof err)) {
            fprintf(stderr, "bench_pg_apply: %s\n", err);
            proj_pg_close(pg);
            goto out;
        }
        dl_count = 0;
        pid = backend_pid(cfg.pg_dsn);
        srv0 = pid > 0 ? proc_cpu_s(pid) : -1;
        cli0 = self_cpu_s();
        t0 = bench_now_ns();
        for (long k = 0; k < n; k += batch) {
            long cnt = n - k < batch ? n - k : batch;
            proj_offset next[NPART];
            proj_batch b;
            int np = 0;

            for (int p = 0; p < NPART; p++) {
                int64_t last = -1;
                for (long j = k; j < k + cnt; j++)
                    if (pev[j].partition == p)
                        last = pev[j].offset;
                if (last >= 0) {
                    next[np].topic = TOPIC;
                    next[np].partition = p;
                    next[np++].next_offset = last + 1;
                }
            }
            b.ev = pev + k;
            b.n = (size_t)cnt;
            b.next = next;
            b.nnext = (size_t)np;
            if (proj_pg_apply(pg, &b, bench_dl, NULL, err, sizeof err)) {
                fprintf(stderr, "bench_pg_apply: %s: %s\n", mode, err);
                proj_pg_close(pg);
                goto out;
            }
        }
        t1 = bench_now_ns();
        srv1 = pid > 0 ? proc_cpu_s(pid) : -1;
        cli1 = self_cpu_s();
        proj_pg_close(pg);
        if (dl_count || check(cfg.pg_dsn, cfg.pg_schema, n, r)) {
            fprintf(stderr, "bench_pg_apply: %s: wrong result (%d dead letters)\n", mode, dl_count);
            goto out;
        }
        /* CPU per event is what the paths cost, independent of what else runs
         * on the machine (wall-clock rates on a shared box are noisy) */
        printf("RESULT name=pg.apply.%s unit=events/s value=%.0f%s%s%s "
               "events=%ld batch=%ld resources=%ld server_cpu_us_per_event=%.2f "
               "client_cpu_us_per_event=%.2f\n",
               mode, (double)n / ((double)(t1 - t0) / 1e9), has_base ? " baseline=" : "",
               has_base ? baseline : "",
               has_base && strcmp(mode, "copy") == 0 ? " target=>=0.25x" : "", n, batch, r,
               srv0 >= 0 && srv1 >= 0 ? (srv1 - srv0) * 1e6 / (double)n : -1.0,
               (cli1 - cli0) * 1e6 / (double)n);
        fflush(stdout);
    }
    rc = 0;
out:
    for (long k = 0; evs != NULL && k < n; k++)
        free(evs[k].buf);
    free(evs);
    free(pev);
    ev_fb_builder_free(&fb);
    kq_config_free(&cfg);
    return rc;
}
