/*
 * kcqrs_query.c — `kcqrs-query`: the HTTP query API (DESIGN.md sections 7 and 8).
 *
 * main() wires the modules together and owns the process's life:
 *   configuration, API keys and signals (kq_service) -> the LMDB read
 *   model reader (qry_rm, opened lazily: the projector may start later;
 *   follows a model replaced by kcqrs-replay) and the named snapshots
 *   (qry_snap) ->
 *   PostgreSQL reads (qry_pg, a connection per thread) -> the Kafka status
 *   refresher (qry_status) -> the hash-chain checker (qry_chain) -> the
 *   consistency-token watcher (qry_wait) -> the
 *   HTTP server (kq_http, routes from qry_api and the web console's from
 *   qry_console) on KCQRS_QUERY_ADDR.
 *
 * Signals: SIGTERM and SIGINT are blocked in every thread and taken by
 *   kq_service_wait() here: waiting requests are answered 503, then the HTTP server
 *   stops and the process exits 0. SIGPIPE is ignored.
 *
 * Exit status: 0 after a clean stop, 1 when it cannot serve, 2 for usage or
 *   configuration errors.
 */
#include <stdio.h>
#include <string.h>

#include "kq_keyring.h"
#include "kq_log.h"
#include "kq_rm.h"
#include "kq_openapi.h"
#include "kq_service.h"
#include "qry_api.h"
#include "qry_console.h"
#include "qry_evjson.h"

#define PROG "kcqrs-query"
#define WAIT_FALLBACK_MS 50

static const char usage[] =
    "usage: " PROG "\n"
    "\n"
    "Serves the query API (GET /api/v1/resources..., /api/v1/audit, /api/v1/status) on\n"
    "KCQRS_QUERY_ADDR from the LMDB read model in KCQRS_LMDB_DIR/readmodel and the\n"
    "PostgreSQL read model at KCQRS_PG_DSN (schema KCQRS_PG_SCHEMA); follows a read model\n"
    "replaced by kcqrs-replay without a restart; ?snapshot=NAME reads a named snapshot\n"
    "(KCQRS_LMDB_DIR/snapshots/NAME, schema <KCQRS_PG_SCHEMA>_snap_NAME).\n"
    "Stop with SIGTERM or SIGINT.\n"
    "Exit status: 0 clean stop, 1 cannot serve, 2 configuration error.\n";

int main(int argc, char **argv)
{
    kq_service svc;
    kq_http_route routes[QRY_API_NROUTES + 1 + QRY_CONSOLE_NROUTES]; /* + GET /openapi.json */
    qry_console console;
    kq_http_options o;
    qry_wait_options wo;
    qry_api api;
    qry_rm *rm = NULL;
    qry_snap *snaps = NULL;
    qry_pg *pg = NULL;
    qry_wait *wait = NULL;
    qry_status *status = NULL;
    qry_stream *stream = NULL;
    qry_chain *chain = NULL;
    kq_keyring *keys = NULL;
    const kq_config *cfg = &svc.cfg;
    char err[512], rmdir[4096];
    int sig, rc = 2;

    if (kq_service_begin(&svc, PROG, usage, KQ_SERVICE_KEYS, argc, argv, &rc))
        return rc;
    if (qry_console_init(&console, cfg->console_cmd_url, err, sizeof err) != 0) {
        kq_log_error("%s", err);
        rc = 2;
        goto out;
    }
    /* opens sealed personal data in the event stream (events/ev_pii.h) */
    if (kq_keyring_new(cfg, PROG, &keys, err, sizeof err) != 0) {
        kq_log_error("%s", err);
        rc = 2;
        goto out;
    }
    qry_evjson_set_keys(keys);
    if (qry_api_init(&api, cfg) != 0) {
        kq_log_error("KCQRS_TOPIC_PREFIX is too long");
        goto out;
    }
    rc = 1;
    snprintf(rmdir, sizeof rmdir, "%s/%s", cfg->lmdb_dir, KQ_RM_SUBDIR);
    if (qry_rm_new(rmdir, (size_t)cfg->lmdb_map_mb << 20, 0, &rm) != 0 ||
        qry_snap_new(cfg->lmdb_dir, (size_t)cfg->lmdb_map_mb << 20, &snaps) != 0 ||
        qry_pg_new(cfg->pg_dsn, cfg->kafka_timeout_ms, &pg) != 0) {
        kq_log_error("out of memory");
        goto out;
    }
    qry_pg_set_schema(pg, cfg->pg_schema); /* validated by kq_config_load */
    if (qry_status_start(cfg, &status, err, sizeof err) != 0) {
        kq_log_error("Kafka status: %s", err);
        goto out;
    }
    api.rm = rm;
    api.snaps = snaps;
    api.pg = pg;
    api.status = status;
    if (qry_stream_new(cfg, status, &stream) != 0) {
        kq_log_error("out of memory");
        goto out;
    }
    api.stream = stream;
    if (qry_chain_start(cfg, status, &chain, err, sizeof err) != 0) {
        kq_log_error("hash chain checker: %s", err);
        goto out;
    }
    api.chain = chain;
    memset(&wo, 0, sizeof wo);
    wo.lmdb_data_path = qry_rm_data_path(rm);
    wo.pg_dsn = cfg->pg_dsn;
    wo.fallback_ms = WAIT_FALLBACK_MS;
    wo.load = qry_api_wait_load;
    wo.done = qry_api_wait_done;
    wo.arg = &api;
    if (qry_wait_start(&wo, &wait, err, sizeof err) != 0) {
        kq_log_error("%s", err);
        goto out;
    }
    api.wait = wait;
    qry_api_routes(&api, routes);
    kq_openapi_route(&routes[QRY_API_NROUTES], &kq_openapi_query);
    qry_console_routes(&console, routes + QRY_API_NROUTES + 1);
    memset(&o, 0, sizeof o);
    o.addr = cfg->query_addr;
    o.limits = kq_http_limits_from_config(cfg);
    o.routes = routes;
    o.nroutes = QRY_API_NROUTES + 1 + QRY_CONSOLE_NROUTES;
    o.ready = qry_api_ready;
    o.ready_arg = &api;
    o.metrics = qry_api_metrics;
    o.metrics_arg = &api;
    if (kq_service_http_start(&svc, &o) != 0)
        goto out;
    kq_log_info("listening on %s://%s (port %u), %zu API keys, read model %s, brokers %s",
                strcmp(cfg->http_tls_cert, "none") != 0 ? "https" : "http", cfg->query_addr,
                kq_http_port(svc.srv), kq_auth_count(svc.keys), rmdir, cfg->brokers);
    sig = kq_service_wait(&svc);
    kq_log_info("signal %d: answering waiting requests, stopping", sig);
    /* answers every waiting request (and later ones): stopping the server needs that */
    qry_wait_stop(wait);
    qry_stream_free(stream); /* every event stream ends with a last message */
    stream = NULL;
    kq_service_http_stop(&svc);
    rc = 0;
    kq_log_info("stopped");
out:
    qry_wait_stop(wait);
    qry_stream_free(stream);
    kq_service_http_stop(&svc);
    qry_wait_free(wait);
    qry_chain_stop(chain);
    qry_status_stop(status);
    qry_pg_free(pg);
    qry_snap_free(snaps);
    qry_rm_free(rm);
    qry_evjson_set_keys(NULL);
    kq_keyring_free(keys);
    kq_service_end(&svc);
    return rc;
}
