/*
 * kcqrs_commands.c — `kcqrs-commands`: the HTTP command API (DESIGN.md sections 5 and 8).
 *
 * main() wires the modules together and owns the process's life:
 *   configuration, API keys and signals (kq_service) -> the writer
 *   (cmd_writer: loads the LMDB snapshot from KCQRS_LMDB_DIR/commands, then
 *   on its own thread connects to Kafka, creates missing topics, fences older
 *   instances, reads the log to the end) -> the HTTP server (kq_http, routes
 *   from cmd_api). /ready and the commands answer 503 until the writer has
 *   caught up.
 *
 * Signals: SIGTERM and SIGINT are blocked in every thread and taken by
 *   kq_service_wait() here: the writer stops taking commands, finishes what is queued,
 *   writes its snapshot; then the HTTP server stops and the process exits 0.
 *   SIGPIPE is ignored.
 *
 * Exit status: 0 after a clean stop, 1 when the HTTP server cannot start,
 *   2 for usage or configuration errors (bad variable, unreadable keys file,
 *   a missing or malformed KEK file, or — once the key topic is read — a KEK
 *   that does not open the data keys: kq_keyring.h).
 */
#include <stdio.h>
#include <string.h>

#include "cmd_api.h"
#include "cmd_hookguard.h"
#include "cmd_writer.h"
#include "kq_keyring.h"
#include "kq_log.h"
#include "kq_openapi.h"
#include "kq_service.h"

#define PROG "kcqrs-commands"

static const char usage[] =
    "usage: " PROG "\n"
    "\n"
    "Serves the command API on KCQRS_COMMANDS_ADDR (and the same routes on the internal\n"
    "listener KCQRS_COMMANDS_INTERNAL_ADDR): POST/PUT/DELETE /api/v1/resources...,\n"
    "POST/PUT/DELETE /api/v1/workflows..., POST /api/v1/workflows/{id}/runs (manual trigger),\n"
    "POST /hooks/{workflow_id} (webhook, X-Webhook-Secret) and\n"
    "POST /internal/v1/runs/{id}/attempts and /internal/v1/runs/attempts (kcqrs-worker,\n"
    "role worker), appending events to Kafka through the single writer's transactional\n"
    "producers. Stop with SIGTERM or SIGINT (finishes queued commands and snapshots its\n"
    "state).\n"
    "Exit status: 0 clean stop, 1 cannot serve, 2 configuration error.\n";

int main(int argc, char **argv)
{
    kq_service svc;
    cmd_writer *w = NULL;
    kq_http_route routes[CMD_API_NROUTES + 1]; /* + GET /openapi.json */
    kq_http_options o;
    cmd_writer_options wo;
    cmd_api api = {0};
    kq_keyring *keys = NULL;
    char err[512], snapdir[4096];
    int sig, rc = 2;

    if (kq_service_begin(&svc, PROG, usage, KQ_SERVICE_KEYS, argc, argv, &rc))
        return rc;
    /* secrets are sealed into events (ev_secret.h): no KEK, no service */
    if (kq_keyring_new(&svc.cfg, PROG, &keys, err, sizeof err) != 0) {
        kq_log_error("%s", err);
        kq_service_end(&svc);
        return 2;
    }
    snprintf(snapdir, sizeof snapdir, "%s/commands", svc.cfg.lmdb_dir);
    memset(&wo, 0, sizeof wo);
    wo.cfg = &svc.cfg;
    wo.snapshot_dir = snapdir;
    wo.keys = keys;
    rc = 1;
    if (cmd_writer_new(&wo, &w, err, sizeof err) != 0 ||
        cmd_writer_start(w, err, sizeof err) != 0) {
        kq_log_error("writer: %s", err);
        goto out;
    }
    api.writer = w;
    if ((api.hooks = cmd_hookguard_new((size_t)svc.cfg.rate_entries, svc.cfg.hook_fail_per_min,
                                       svc.cfg.hook_fail_burst)) == NULL) {
        kq_log_error("out of memory (webhook limits)");
        goto out;
    }
    cmd_api_routes(&api, routes);
    kq_openapi_route(&routes[CMD_API_NROUTES], &kq_openapi_commands);
    memset(&o, 0, sizeof o);
    o.addr = svc.cfg.commands_addr;
    if (strcmp(svc.cfg.cmd_internal_addr, "none") != 0)
        o.internal_addr = svc.cfg.cmd_internal_addr;
    o.limits = kq_http_limits_from_config(&svc.cfg);
    o.routes = routes;
    o.nroutes = CMD_API_NROUTES + 1;
    o.ready = cmd_api_ready;
    o.ready_arg = &api;
    o.metrics = cmd_api_metrics;
    o.metrics_arg = &api;
    if (kq_service_http_start(&svc, &o) != 0)
        goto out;
    kq_log_info("listening on %s://%s (port %u), internal %s (port %u), %zu API keys, brokers "
                "%s, topic prefix %s",
                strcmp(svc.cfg.http_tls_cert, "none") != 0 ? "https" : "http",
                svc.cfg.commands_addr, kq_http_port(svc.srv),
                o.internal_addr ? o.internal_addr : "none", kq_http_internal_port(svc.srv),
                kq_auth_count(svc.keys), svc.cfg.brokers, svc.cfg.topic_prefix);
    sig = kq_service_wait(&svc);
    kq_log_info("signal %d: finishing queued commands, writing the snapshot", sig);
    cmd_writer_stop(w); /* answers every queued command: stopping the server needs that */
    kq_service_http_stop(&svc);
    rc = 0;
    kq_log_info("stopped");
out:
    kq_service_http_stop(&svc);
    cmd_writer_free(w);
    cmd_hookguard_free(api.hooks);
    kq_keyring_free(keys);
    kq_service_end(&svc);
    return rc;
}
