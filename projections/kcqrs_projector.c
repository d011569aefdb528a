/*
 * kcqrs_projector.c — `kcqrs-projector`: applies the event log to the read
 * models.
 *
 * main() wires the modules together and owns the process's life:
 *   the common start (kq_service: --help, configuration, log, signals) and
 *   its own arguments -> failpoints (KCQRS_FAILPOINT, tests only) ->
 *   the admin HTTP server on KCQRS_PROJECTOR_ADDR (/health, /ready,
 *   /metrics; no other routes) -> the event topics (created if missing,
 *   retried until Kafka answers) -> one proj_runner per selected target
 *   (LMDB: proj_lmdb, PostgreSQL: proj_pg), each with its own thread and
 *   consumer, so one target's failures never stop the other.
 *
 * Signals: SIGTERM and SIGINT are blocked in every thread and taken here
 *   (sigtimedwait): each runner finishes its current batch, closes its target
 *   (LMDB syncs) and the process exits 0. SIGPIPE is ignored.
 *
 * --exit-at-end: exit 0 once every runner's target has stored offsets at or
 *   past the end offsets each observed when it first opened (replays and
 *   benchmarks).
 *
 * Exit status: 0 clean stop (or end reached), 1 cannot serve (HTTP bind,
 *   topics refused, runner start), 2 usage or configuration errors.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kq_err.h"
#include "kq_http.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_openapi.h"
#include "kq_service.h"
#include "proj_failpoint.h"
#include "proj_service.h"

#define PROG "kcqrs-projector"

static const char usage[] =
    "usage: " PROG " [--target lmdb|pg|all] [--exit-at-end]\n"
    "\n"
    "Applies the event topics (read_committed) to the LMDB read model in\n"
    "KCQRS_LMDB_DIR/readmodel and to PostgreSQL (KCQRS_PG_DSN), each target with its\n"
    "own consumer and offsets, in batches of up to KCQRS_PROJ_BATCH_MAX events or\n"
    "KCQRS_PROJ_BATCH_MS ms. Records that fail verification or whose version is not\n"
    "the aggregate's last + 1 go to <prefix>.dlq. Admin HTTP (/health, /ready,\n"
    "/metrics) on KCQRS_PROJECTOR_ADDR.\n"
    "  --target T      lmdb, pg or all (default all)\n"
    "  --exit-at-end   exit 0 once every partition reached the end offsets seen at start\n"
    "Stop with SIGTERM or SIGINT (finishes the current batch).\n"
    "Exit status: 0 clean stop, 1 cannot serve, 2 usage or configuration error.\n";

int main(int argc, char **argv)
{
    kq_service ks;
    kq_http_options o;
    kq_http_route admin_routes[1]; /* GET /openapi.json */
    proj_service p;
    const char *target = "all";
    int exit_at_end = 0, sig = 0, rc = 2;
    char err[512];

    if (kq_service_begin(&ks, PROG, usage, KQ_SERVICE_ARGS, argc, argv, &rc) != 0)
        return rc;
    rc = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--target") == 0 && i + 1 < argc)
            target = argv[++i];
        else if (strncmp(argv[i], "--target=", 9) == 0)
            target = argv[i] + 9;
        else if (strcmp(argv[i], "--exit-at-end") == 0)
            exit_at_end = 1;
        else {
            fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", PROG, argv[i]);
            goto end;
        }
    }
    if (proj_service_select(&p, target) != 0) {
        fprintf(stderr, "%s: --target must be lmdb, pg or all, not '%s'\n", PROG, target);
        goto end;
    }
    proj_failpoint_init(ks.cfg.failpoint);

    memset(&o, 0, sizeof o);
    o.addr = ks.cfg.projector_addr;
    kq_openapi_route(&admin_routes[0], &kq_openapi_admin);
    o.routes = admin_routes;
    o.nroutes = 1;
    o.limits = kq_http_limits_default();
    o.limits.threads = 2;
    o.ready = proj_service_ready;
    o.ready_arg = &p;
    o.metrics = proj_service_metrics;
    o.metrics_arg = &p;
    ks.http_what = "admin HTTP";
    if (kq_service_http_start(&ks, &o) != 0) {
        rc = 1;
        goto out;
    }
    kq_log_info("admin on %s://%s (port %u), target %s, brokers %s, topic prefix %s",
                strcmp(ks.cfg.http_tls_cert, "none") != 0 ? "https" : "http", ks.cfg.projector_addr,
                kq_http_port(ks.srv), target, ks.cfg.brokers, ks.cfg.topic_prefix);
    switch (proj_service_ensure_topics(&ks.cfg, &ks.signals, &sig)) {
    case 0:
        break;
    case 1:
        rc = 0;
        goto out;
    default:
        rc = 1;
        goto out;
    }
    if (proj_service_start(&p, &ks.cfg, exit_at_end, err, sizeof err) != 0) {
        kq_log_error("%s", err);
        rc = 1;
        goto out;
    }
    for (;;) {
        /* --exit-at-end: notice the end promptly (a replay is timed by it). */
        struct timespec ts = {0, (exit_at_end ? 10 : 100) * 1000 * 1000};

        if ((sig = sigtimedwait(&ks.signals, NULL, &ts)) > 0) {
            kq_log_info("signal %d: finishing the current batches", sig);
            break;
        }
        if (exit_at_end && proj_service_at_end(&p))
            break;
    }
    rc = 0;
out:
    kq_service_http_stop(&ks);
    proj_service_stop(&p);
    if (rc == 0)
        kq_log_info("stopped");
end:
    kq_service_end(&ks);
    return rc;
}
