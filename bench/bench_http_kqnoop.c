/*
 * bench_http_kqnoop.c — the HTTP-layer ceiling of the command API: a no-op
 * POST /api/v1/resources on lib/kq_http.
 *
 * It is the first baseline of the `commands` benchmark (issue #3): the same
 * HTTP layer as kcqrs-commands, configured from the same KCQRS_* variables
 * (address, limits, threads, keys file, log level and format: the access log
 * is written exactly as the service writes it), the same route table entry
 * (POST /api/v1/resources, role writer, JSON body: route match, bearer-key
 * check, Content-Type check, body accumulation), but a handler that answers
 * 201 with a fixed body at once: no JSON parsing, no validation, no writer
 * queue, no Kafka. Whatever kcqrs-commands loses against this number is the
 * command path's cost (parsing, queueing, group commit, the transaction).
 *
 * It also serves a no-op GET /api/v1/resources/{id} (role reader, answers 200
 * with a fixed resource-sized body): the ceiling of the query benchmark's
 * point read (bench/bench_query.sh), the same route shape as kcqrs-query's.
 *
 * Usage: bench_http_kqnoop [--port-file PATH]
 *   Environment as kcqrs-commands (KCQRS_COMMANDS_ADDR, KCQRS_KEYS_FILE,
 *   KCQRS_HTTP_*, KCQRS_LOG_*). --port-file writes the bound port (atomically,
 *   via rename) once the server accepts connections.
 *
 * Serves until SIGINT or SIGTERM, then prints the number of requests its
 * handler answered (a cross-check for the load generator's count):
 *   RESULT name=commands.noop.server_requests unit=requests value=<n>
 * Threads: main() waits for a signal; kq_http's threads call the handler.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kq_auth.h"
#include "kq_config.h"
#include "kq_http.h"

#define PROG "bench_http_kqnoop"

/* Shaped like the service's 201 answer (id, version, consistency token). */
static const char kqnoop_body[] = "{\"id\":\"noop\",\"version\":1,"
                                  "\"consistency_token\":\"v1.bm9vcC5yZXNvdXJjZS5ldmVudHM6MDow\"}";
static atomic_uint_fast64_t kqnoop_requests;

static void kqnoop_create(kq_http_req *req, void *arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&kqnoop_requests, 1, memory_order_relaxed);
    kq_http_add_header(req, "ETag", "\"1\"");
    kq_http_add_header(req, "Location", "/api/v1/resources/noop");
    kq_http_respond_text(req, 201, "application/json", kqnoop_body, sizeof kqnoop_body - 1);
}

static const char kqnoop_get_body[] =
    "{\"id\":\"b-000001\",\"name\":\"bench resource 1\",\"description\":\"\","
    "\"status\":\"active\",\"version\":1,\"created_at\":\"2026-01-01T00:00:00.000000Z\","
    "\"updated_at\":\"2026-01-01T00:00:00.000000Z\"}";

static void kqnoop_get(kq_http_req *req, void *arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&kqnoop_requests, 1, memory_order_relaxed);
    kq_http_add_header(req, "ETag", "\"1\"");
    kq_http_respond_text(req, 200, "application/json", kqnoop_get_body, sizeof kqnoop_get_body - 1);
}

static int kqnoop_write_port_file(const char *path, unsigned port)
{
    char tmp[4096];
    FILE *f;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return -1;
    if ((f = fopen(tmp, "w")) == NULL)
        return -1;
    if (fprintf(f, "%u\n", port) < 0) {
        fclose(f);
        remove(tmp);
        return -1;
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        remove(tmp);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    kq_config cfg;
    kq_auth_keys *keys = NULL;
    kq_http_server *srv = NULL;
    kq_http_route routes[2];
    kq_http_options o;
    const char *port_file = NULL;
    char err[512];
    sigset_t set;
    int sig, rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc) {
            port_file = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--port-file PATH] (configured by KCQRS_* variables)\n",
                    argv[0]);
            return 2;
        }
    }
    if (kq_config_load_and_init_log(&cfg, PROG, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        return 2;
    }
    if (kq_auth_load(cfg.keys_file, &keys, err, sizeof err) != 0) {
        fprintf(stderr, "%s: API keys: %s\n", PROG, err);
        rc = 2;
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by kq_http's threads */

    memset(routes, 0, sizeof routes);
    routes[0].method = "POST";
    routes[0].pattern = "/api/v1/resources";
    routes[0].role = KQ_AUTH_ROLE_WRITER;
    routes[0].body = KQ_HTTP_BODY_JSON;
    routes[0].name = "resource_create";
    routes[0].handler = kqnoop_create;
    routes[1].method = "GET";
    routes[1].pattern = "/api/v1/resources/{id}";
    routes[1].role = KQ_AUTH_ROLE_READER;
    routes[1].body = KQ_HTTP_BODY_NONE;
    routes[1].name = "resource_get";
    routes[1].handler = kqnoop_get;

    memset(&o, 0, sizeof o);
    o.addr = cfg.commands_addr;
    o.limits = kq_http_limits_from_config(&cfg);
    o.routes = routes;
    o.nroutes = 2;
    o.keys = keys;
    if (kq_http_start(&o, &srv, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        goto out;
    }
    if (port_file != NULL && kqnoop_write_port_file(port_file, kq_http_port(srv)) != 0) {
        fprintf(stderr, "%s: cannot write %s: %s\n", PROG, port_file, strerror(errno));
        goto out;
    }
    printf("PORT %u threads=%d\n", kq_http_port(srv), cfg.http_threads);
    fflush(stdout);
    if (sigwait(&set, &sig) != 0) {
        fprintf(stderr, "%s: sigwait failed\n", PROG);
        goto out;
    }
    kq_http_stop(srv);
    srv = NULL;
    printf("RESULT name=commands.noop.server_requests unit=requests value=%llu\n",
           (unsigned long long)atomic_load(&kqnoop_requests));
    rc = 0;
out:
    kq_http_stop(srv);
    kq_auth_free(keys);
    kq_config_free(&cfg);
    return rc;
}
