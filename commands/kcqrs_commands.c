/*
 * kcqrs_commands.c — `kcqrs-commands`: the HTTP command API (DESIGN.md sections 5 and 8).
 *
 * main() wires the modules together and owns the process's life:
 *   configuration (kq_config) -> API keys (KCQRS_KEYS_FILE) -> the writer
 *   (cmd_writer: loads the LMDB snapshot from KCQRS_LMDB_DIR/commands, then
 *   on its own thread connects to Kafka, creates missing topics, fences older
 *   instances, reads the log to the end) -> the HTTP server (kq_http, routes
 *   from cmd_api). /ready and the commands answer 503 until the writer has
 *   caught up.
 *
 * Signals: SIGTERM and SIGINT are blocked in every thread and taken by
 *   sigwait() here: the writer stops taking commands, finishes what is queued,
 *   writes its snapshot; then the HTTP server stops and the process exits 0.
 *   SIGPIPE is ignored.
 *
 * Exit status: 0 after a clean stop, 1 when the HTTP server cannot start,
 *   2 for usage or configuration errors (bad variable, unreadable keys file).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_api.h"
#include "cmd_writer.h"
#include "kq_auth.h"
#include "kq_config.h"
#include "kq_err.h"
#include "kq_http.h"
#include "kq_log.h"

#define PROG "kcqrs-commands"

static const char usage[] =
    "usage: " PROG "\n"
    "\n"
    "Serves the command API on KCQRS_COMMANDS_ADDR: POST/PUT/DELETE /api/v1/resources...,\n"
    "POST/PUT/DELETE /api/v1/workflows..., POST /api/v1/workflows/{id}/runs (manual trigger),\n"
    "POST /hooks/{workflow_id} (webhook, X-Webhook-Secret) and\n"
    "POST /internal/v1/runs/{id}/attempts (kcqrs-worker, role worker), appending events to\n"
    "Kafka through the single writer's transactional producers. Stop with SIGTERM or\n"
    "SIGINT (finishes queued commands and snapshots its state).\n"
    "Exit status: 0 clean stop, 1 cannot serve, 2 configuration error.\n";

int main(int argc, char **argv)
{
    kq_config cfg;
    kq_auth_keys *keys = NULL;
    cmd_writer *w = NULL;
    kq_http_server *srv = NULL;
    kq_http_route routes[CMD_API_NROUTES];
    kq_http_options o;
    cmd_writer_options wo;
    cmd_api api;
    char err[512], snapdir[4096];
    sigset_t set;
    int sig = 0, rc = 2;

    if (kq_config_handle_help(argc, argv, usage))
        return 0;
    if (argc > 1) {
        fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", PROG, argv[1]);
        return 2;
    }
    if (kq_config_load_and_init_log(&cfg, PROG, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        return 2;
    }
    if (kq_auth_load(cfg.keys_file, &keys, err, sizeof err) != 0) {
        kq_log_error("API keys: %s", err);
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every thread */

    snprintf(snapdir, sizeof snapdir, "%s/commands", cfg.lmdb_dir);
    memset(&wo, 0, sizeof wo);
    wo.cfg = &cfg;
    wo.snapshot_dir = snapdir;
    if (cmd_writer_new(&wo, &w, err, sizeof err) != 0 ||
        cmd_writer_start(w, err, sizeof err) != 0) {
        kq_log_error("writer: %s", err);
        rc = 1;
        goto out;
    }
    api.writer = w;
    cmd_api_routes(&api, routes);
    memset(&o, 0, sizeof o);
    o.addr = cfg.commands_addr;
    o.limits = kq_http_limits_from_config(&cfg);
    o.routes = routes;
    o.nroutes = CMD_API_NROUTES;
    o.keys = keys;
    o.ready = cmd_api_ready;
    o.ready_arg = &api;
    o.metrics = cmd_api_metrics;
    o.metrics_arg = &api;
    if (kq_http_start(&o, &srv, err, sizeof err) != 0) {
        kq_log_error("%s", err);
        rc = 1;
        goto out;
    }
    kq_log_info("listening on http://%s (port %u), %zu API keys, brokers %s, topic prefix %s",
                cfg.commands_addr, kq_http_port(srv), kq_auth_count(keys), cfg.brokers,
                cfg.topic_prefix);
    if (sigwait(&set, &sig) != 0)
        sig = 0;
    kq_log_info("signal %d: finishing queued commands, writing the snapshot", sig);
    cmd_writer_stop(w); /* answers every queued command: kq_http_stop needs that */
    kq_http_stop(srv);
    srv = NULL;
    rc = 0;
    kq_log_info("stopped");
out:
    kq_http_stop(srv);
    cmd_writer_free(w);
    kq_auth_free(keys);
    kq_config_free(&cfg);
    return rc;
}
