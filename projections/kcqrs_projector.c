/*
 * kcqrs_projector.c — `kcqrs-projector`: applies the event log to the read
 * models (DESIGN.md section 6).
 *
 * main() wires the modules together and owns the process's life:
 *   configuration (kq_config) -> failpoints (KCQRS_FAILPOINT, tests only) ->
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

#include "kq_config.h"
#include "kq_err.h"
#include "kq_http.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "proj_failpoint.h"
#include "proj_lmdb.h"
#include "proj_pg.h"
#include "proj_runner.h"

#define PROG "kcqrs-projector"
#define MAX_RUNNERS 2

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

/* ---- targets behind proj_runner's interface ---- */

static int lmdb_open(const kq_config *cfg, void *arg, void **t, char *errstr, size_t errlen)
{
    (void)arg;
    return proj_lmdb_open(cfg, (proj_lmdb **)t, errstr, errlen);
}
static const proj_target_ops lmdb_ops = {
    "lmdb", lmdb_open, proj_lmdb_target_load, proj_lmdb_target_apply, proj_lmdb_target_close, NULL};

static int pg_open(const kq_config *cfg, void *arg, void **t, char *errstr, size_t errlen)
{
    (void)arg;
    return proj_pg_open(cfg, (proj_pg **)t, errstr, errlen);
}
static const proj_target_ops pg_ops = {
    "pg", pg_open, proj_pg_target_load, proj_pg_target_apply, proj_pg_target_close, NULL};

typedef struct projector {
    proj_runner *runners[MAX_RUNNERS];
    size_t n;
} projector;

static int projector_ready(void *arg, char *why, size_t whylen)
{
    projector *p = arg;

    for (size_t i = 0; i < p->n; i++)
        if (!proj_runner_ready(p->runners[i], why, whylen))
            return 0;
    if (p->n == 0) {
        snprintf(why, whylen, "event topics not available yet");
        return 0;
    }
    return 1;
}

static void projector_metrics(void *arg, FILE *out)
{
    projector *p = arg;

    proj_runner_metrics(p->runners, p->n, out);
}

/* Make sure the 4 topics exist, retrying until Kafka answers or a signal comes.
 * Returns 0, 1 on a signal (*sig set), or KQ_ECONFIG (topics refused). */
static int ensure_topics(const kq_config *cfg, const sigset_t *set, int *sig)
{
    char names[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX], err[512];
    const char *topics[KQ_KAFKA_NTOPICS];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    int rc;

    if (kq_kafka_topic_names(cfg, names) < 0) {
        kq_log_error("KCQRS_TOPIC_PREFIX too long");
        return KQ_ECONFIG;
    }
    for (int i = 0; i < KQ_KAFKA_NTOPICS; i++)
        topics[i] = names[i];
    if ((conf = kq_kafka_conf_new(cfg, "kcqrs-projector-admin", err, sizeof err)) == NULL ||
        (rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err)) == NULL) {
        if (conf)
            rd_kafka_conf_destroy(conf);
        kq_log_error("Kafka client: %s", err);
        return KQ_ECONFIG;
    }
    for (;;) {
        struct timespec ts = {2, 0};

        rc = kq_kafka_ensure_topics(rk, cfg, topics, KQ_KAFKA_NTOPICS, err, sizeof err);
        if (rc == 0 || rc == KQ_ECONFIG)
            break;
        kq_log_warn("event topics: %s; retrying", err);
        if ((*sig = sigtimedwait(set, NULL, &ts)) > 0) {
            rc = 1;
            break;
        }
    }
    if (rc == KQ_ECONFIG)
        kq_log_error("event topics: %s", err);
    rd_kafka_destroy(rk);
    return rc;
}

int main(int argc, char **argv)
{
    kq_config cfg;
    kq_http_server *srv = NULL;
    kq_http_options o;
    projector p;
    const proj_target_ops *sel[MAX_RUNNERS];
    size_t nsel = 0;
    const char *target = "all";
    int exit_at_end = 0, sig = 0, rc = 2;
    char err[512];
    sigset_t set;

    memset(&p, 0, sizeof p);
    if (kq_config_handle_help(argc, argv, usage))
        return 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--target") == 0 && i + 1 < argc)
            target = argv[++i];
        else if (strncmp(argv[i], "--target=", 9) == 0)
            target = argv[i] + 9;
        else if (strcmp(argv[i], "--exit-at-end") == 0)
            exit_at_end = 1;
        else {
            fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", PROG, argv[i]);
            return 2;
        }
    }
    if (strcmp(target, "lmdb") == 0 || strcmp(target, "all") == 0)
        sel[nsel++] = &lmdb_ops;
    if (strcmp(target, "pg") == 0 || strcmp(target, "all") == 0) {
        sel[nsel++] = &pg_ops;
    }
    if (nsel == 0) {
        fprintf(stderr, "%s: --target must be lmdb, pg or all, not '%s'\n", PROG, target);
        return 2;
    }
    if (kq_config_load_and_init_log(&cfg, PROG, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        return 2;
    }
    proj_failpoint_init(cfg.failpoint);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every thread */

    memset(&o, 0, sizeof o);
    o.addr = cfg.projector_addr;
    o.limits = kq_http_limits_default();
    o.limits.threads = 2;
    o.ready = projector_ready;
    o.ready_arg = &p;
    o.metrics = projector_metrics;
    o.metrics_arg = &p;
    if (kq_http_start(&o, &srv, err, sizeof err) != 0) {
        kq_log_error("admin HTTP: %s", err);
        rc = 1;
        goto out;
    }
    kq_log_info("admin on http://%s (port %u), target %s, brokers %s, topic prefix %s",
                cfg.projector_addr, kq_http_port(srv), target, cfg.brokers, cfg.topic_prefix);
    switch (ensure_topics(&cfg, &set, &sig)) {
    case 0:
        break;
    case 1:
        rc = 0;
        goto out;
    default:
        rc = 1;
        goto out;
    }
    /* p.n grows only after a runner started: the readiness and metrics
     * callbacks (other threads) read runners[0..n). */
    for (size_t i = 0; i < nsel; i++) {
        proj_runner *r;
        if (proj_runner_start(&cfg, sel[i], exit_at_end, &r, err, sizeof err) != 0) {
            kq_log_error("%s runner: %s", sel[i]->name, err);
            rc = 1;
            goto out;
        }
        p.runners[i] = r;
        __atomic_store_n(&p.n, i + 1, __ATOMIC_RELEASE);
    }
    for (;;) {
        /* --exit-at-end: notice the end promptly (a replay is timed by it). */
        struct timespec ts = {0, (exit_at_end ? 10 : 100) * 1000 * 1000};
        size_t done = 0;

        if ((sig = sigtimedwait(&set, NULL, &ts)) > 0) {
            kq_log_info("signal %d: finishing the current batches", sig);
            break;
        }
        if (exit_at_end) {
            for (size_t i = 0; i < p.n; i++)
                done += proj_runner_at_end(p.runners[i]) != 0;
            if (done == p.n)
                break;
        }
    }
    rc = 0;
out:
    kq_http_stop(srv);
    for (size_t i = 0; i < p.n; i++)
        proj_runner_stop(p.runners[i]);
    if (rc == 0)
        kq_log_info("stopped");
    kq_config_free(&cfg);
    return rc;
}
