/*
 * bench_http_noop.c — the HTTP baseline: libmicrohttpd answering every
 * request with a fixed 2-byte JSON body ("{}"), nothing else.
 *
 * It is the ceiling that the command and query APIs are compared against:
 * same library, same machine, same load generator (wrk, driven by
 * bench/run.sh), but no routing, no JSON parsing, no Kafka, no LMDB. Whatever
 * the real services lose relative to this number is our code's cost.
 *
 * Usage: bench_http_noop [--port N] [--threads N] [--port-file PATH]
 *   --port N       TCP port on 127.0.0.1 (default 0: the kernel picks one)
 *   --threads N    1 (default): one internal epoll thread
 *                  (MHD_USE_EPOLL_INTERNAL_THREAD); N > 1: a thread pool of N
 *                  epoll threads (MHD_OPTION_THREAD_POOL_SIZE)
 *   --port-file P  write the bound port to P (atomically, via rename) once
 *                  the server accepts connections
 *
 * It prints "PORT <n>" on stdout when ready, serves until SIGINT or SIGTERM,
 * then prints one machine-readable line with the number of requests it
 * answered (a cross-check for the load generator's count):
 *   RESULT name=http.noop.server_requests unit=requests value=<n>
 *
 * Keep-alive is on (HTTP/1.1 default in libmicrohttpd). The response object is
 * created once and queued for every request, as a static answer would be.
 * Threads: main() only waits for a signal; MHD's threads call answer().
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>

#include "kq_util.h"

static const char noop_body[] = "{}";
static struct MHD_Response *noop_response;
static atomic_uint_fast64_t noop_requests;

/* MHD access handler: swallow any upload, then queue the shared response. */
static enum MHD_Result noop_answer(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **req_cls)
{
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)upload_data;
    if (*req_cls == NULL) {
        /* First call for this request: headers only. Mark it and, if a body
         * follows, let MHD deliver it before we answer. */
        *req_cls = (void *)&noop_requests;
        if (*upload_data_size == 0)
            goto respond;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* discard */
        return MHD_YES;
    }
respond:
    atomic_fetch_add_explicit(&noop_requests, 1, memory_order_relaxed);
    return MHD_queue_response(conn, MHD_HTTP_OK, noop_response);
}

static int noop_write_port_file(const char *path, unsigned port)
{
    char tmp[4096];
    FILE *f;
    int rc = -1;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return -1;
    f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    if (fprintf(f, "%u\n", port) < 0) {
        fclose(f);
        goto out;
    }
    if (fclose(f) != 0)
        goto out;
    if (rename(tmp, path) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        remove(tmp);
    return rc;
}

int main(int argc, char **argv)
{
    long port = 0, threads = 1;
    const char *port_file = NULL;
    struct MHD_Daemon *d = NULL;
    const union MHD_DaemonInfo *info;
    struct sockaddr_in addr;
    sigset_t set;
    unsigned bound;
    int sig, rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            if (kq_parse_long(argv[++i], 0, 65535, &port) != 0)
                goto usage;
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            if (kq_parse_long(argv[++i], 1, 64, &threads) != 0)
                goto usage;
        } else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc) {
            port_file = argv[++i];
        } else {
            goto usage;
        }
    }

    /* Block the signals before MHD starts its threads, so they inherit the
     * mask and sigwait() below is the only receiver. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) {
        fprintf(stderr, "bench_http_noop: pthread_sigmask failed\n");
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);

    noop_response = MHD_create_response_from_buffer(sizeof noop_body - 1, (void *)noop_body,
                                                    MHD_RESPMEM_PERSISTENT);
    if (noop_response == NULL ||
        MHD_add_response_header(noop_response, "Content-Type", "application/json") != MHD_YES) {
        fprintf(stderr, "bench_http_noop: cannot create the response\n");
        goto out;
    }

    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    if (threads == 1)
        d = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                             noop_answer, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                             MHD_OPTION_CONNECTION_LIMIT, 10000u, MHD_OPTION_CONNECTION_TIMEOUT,
                             30u, MHD_OPTION_END);
    else
        d = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                             noop_answer, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                             MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads,
                             MHD_OPTION_CONNECTION_LIMIT, 10000u, MHD_OPTION_CONNECTION_TIMEOUT,
                             30u, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "bench_http_noop: MHD_start_daemon failed on port %ld\n", port);
        goto out;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (info == NULL || info->port == 0) {
        fprintf(stderr, "bench_http_noop: cannot read the bound port\n");
        goto out;
    }
    bound = info->port;
    if (port_file != NULL && noop_write_port_file(port_file, bound) != 0) {
        fprintf(stderr, "bench_http_noop: cannot write %s: %s\n", port_file, strerror(errno));
        goto out;
    }
    printf("PORT %u\n", bound);
    fflush(stdout);

    if (sigwait(&set, &sig) != 0) {
        fprintf(stderr, "bench_http_noop: sigwait failed\n");
        goto out;
    }
    MHD_stop_daemon(d);
    d = NULL;
    printf("RESULT name=http.noop.server_requests unit=requests value=%llu\n",
           (unsigned long long)atomic_load(&noop_requests));
    rc = 0;
    goto out;

usage:
    fprintf(stderr, "usage: %s [--port N] [--threads N] [--port-file PATH]\n", argv[0]);
    rc = 2;
out:
    if (d != NULL)
        MHD_stop_daemon(d);
    if (noop_response != NULL)
        MHD_destroy_response(noop_response);
    return rc;
}
