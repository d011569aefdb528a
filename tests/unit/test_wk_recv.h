/*
 * test_wk_recv.h — an in-process HTTP receiver for the worker engine's unit
 * tests (libmicrohttpd on 127.0.0.1:0). Header-only: each unit test is one
 * program (a poll() thread: see bench_worker.c on epoll). It logs every request (method, path, the
 * kcqrs headers, body) and answers by path: /status/N   status N, empty body /retry      429 with
 * "Retry-After: 7" /redirect   302 with "Location: /status/200" /bytes/N    200 with N bytes
 * (Content-Length) /stream/N   200 with N bytes, chunked (no Content-Length) /gate/N     held
 * (suspended) until recv_gate requests are held at once, then all are answered: 200 with N bytes
 * /internal/v1/runs/...  a fake kcqrs-commands: recv_commands_status, with {"version":
 * recv_commands_version} on 200 and error code "attempt_recorded" otherwise
 */
#ifndef TEST_WK_RECV_H
#define TEST_WK_RECV_H

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define RECV_LOG_MAX 1024

typedef struct recv_entry {
    char method[16];
    char path[128];
    char delivery[256];
    char signature[128];
    char ctype[128];
    char agent[128];
    char custom[128]; /* X-Test header */
    char *body;
    size_t len;
} recv_entry;

typedef struct recv_req {
    char *body;
    size_t len;
    int logged, held, released;
    struct MHD_Connection *conn;
} recv_req;

static struct MHD_Daemon *recv_d;
static unsigned recv_port;
static pthread_mutex_t recv_mu = PTHREAD_MUTEX_INITIALIZER;
static recv_entry recv_log[RECV_LOG_MAX];
static size_t recv_n;
static size_t recv_gate;
static recv_req *recv_held[RECV_LOG_MAX];
static size_t recv_nheld, recv_max_held;
static int recv_commands_status = 200; /* /internal/v1/runs/...: a fake kcqrs-commands */
static long recv_commands_version;     /* the "version" of its 200 answers */

static void recv_copy_hdr(struct MHD_Connection *c, const char *name, char *dst, size_t len)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
    snprintf(dst, len, "%s", v ? v : "");
}

static ssize_t recv_stream_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    size_t total = (size_t)(uintptr_t)cls;
    if (pos >= total)
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t k = total - (size_t)pos;
    if (k > max)
        k = max;
    if (k > 512)
        k = 512;
    memset(buf, 'z', k);
    return (ssize_t)k;
}

static enum MHD_Result recv_bytes(struct MHD_Connection *c, unsigned status, size_t n)
{
    char *b = malloc(n + 1);
    if (b == NULL)
        return MHD_NO;
    memset(b, 'y', n);
    struct MHD_Response *r = MHD_create_response_from_buffer(n, b, MHD_RESPMEM_MUST_FREE);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* The fake kcqrs-commands' answer to a record (under recv_commands_*). */
static enum MHD_Result recv_commands(struct MHD_Connection *c)
{
    char out[160];
    unsigned status;
    pthread_mutex_lock(&recv_mu);
    status = (unsigned)recv_commands_status;
    if (status == 200)
        snprintf(out, sizeof out, "{\"id\":\"r\",\"version\":%ld,\"consistency_token\":\"t\"}",
                 recv_commands_version);
    else
        snprintf(out, sizeof out,
                 "{\"error\":{\"code\":\"attempt_recorded\",\"message\":\"m\",\"details\":[]}}");
    pthread_mutex_unlock(&recv_mu);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(out), out, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result recv_answer(void *cls, struct MHD_Connection *c, const char *url,
                                   const char *method, const char *version, const char *upload,
                                   size_t *upload_size, void **req_cls)
{
    recv_req *q = *req_cls;
    (void)cls;
    (void)version;
    if (q == NULL) {
        q = calloc(1, sizeof *q);
        if (q == NULL)
            return MHD_NO;
        q->conn = c;
        *req_cls = q;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        char *nb = realloc(q->body, q->len + *upload_size + 1);
        if (nb == NULL)
            return MHD_NO;
        q->body = nb;
        memcpy(q->body + q->len, upload, *upload_size);
        q->len += *upload_size;
        q->body[q->len] = '\0';
        *upload_size = 0;
        return MHD_YES;
    }
    if (!q->logged) {
        q->logged = 1;
        pthread_mutex_lock(&recv_mu);
        if (recv_n < RECV_LOG_MAX) {
            recv_entry *e = &recv_log[recv_n++];
            snprintf(e->method, sizeof e->method, "%s", method);
            snprintf(e->path, sizeof e->path, "%s", url);
            recv_copy_hdr(c, "X-Kcqrs-Delivery", e->delivery, sizeof e->delivery);
            recv_copy_hdr(c, "X-Kcqrs-Signature", e->signature, sizeof e->signature);
            recv_copy_hdr(c, "Content-Type", e->ctype, sizeof e->ctype);
            recv_copy_hdr(c, "User-Agent", e->agent, sizeof e->agent);
            recv_copy_hdr(c, "X-Test", e->custom, sizeof e->custom);
            e->body = q->body;
            e->len = q->len;
            q->body = NULL;
        }
        pthread_mutex_unlock(&recv_mu);
    }
    if (strncmp(url, "/status/", 8) == 0)
        return recv_bytes(c, (unsigned)atoi(url + 8), 0);
    if (strncmp(url, "/internal/v1/runs/", 18) == 0)
        return recv_commands(c);
    if (strcmp(url, "/retry") == 0 || strcmp(url, "/redirect") == 0) {
        int retry = url[3] == 't';
        struct MHD_Response *r =
            MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (retry)
            MHD_add_response_header(r, "Retry-After", "7");
        else
            MHD_add_response_header(r, "Location", "/status/200");
        enum MHD_Result ret = MHD_queue_response(c, retry ? 429 : 302, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (strncmp(url, "/bytes/", 7) == 0)
        return recv_bytes(c, 200, (size_t)atol(url + 7));
    if (strncmp(url, "/stream/", 8) == 0) {
        struct MHD_Response *r = MHD_create_response_from_callback(
            MHD_SIZE_UNKNOWN, 512, recv_stream_cb, (void *)(uintptr_t)atol(url + 8), NULL);
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (strncmp(url, "/gate/", 6) == 0) {
        if (!q->released) {
            pthread_mutex_lock(&recv_mu);
            if (!q->held) {
                q->held = 1;
                recv_held[recv_nheld++] = q;
                if (recv_nheld > recv_max_held)
                    recv_max_held = recv_nheld;
                MHD_suspend_connection(c);
                if (recv_nheld >= recv_gate) {
                    for (size_t i = 0; i < recv_nheld; i++) {
                        recv_held[i]->released = 1;
                        MHD_resume_connection(recv_held[i]->conn);
                    }
                    recv_nheld = 0;
                }
            }
            pthread_mutex_unlock(&recv_mu);
            return MHD_YES;
        }
        return recv_bytes(c, 200, (size_t)atol(url + 6));
    }
    return recv_bytes(c, 404, 0);
}

static void recv_done(void *cls, struct MHD_Connection *c, void **req_cls,
                      enum MHD_RequestTerminationCode toe)
{
    recv_req *q = *req_cls;
    (void)cls;
    (void)c;
    (void)toe;
    if (q != NULL) {
        free(q->body);
        free(q);
        *req_cls = NULL;
    }
}

static int recv_start(void)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    recv_d = MHD_start_daemon(MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME, 0, NULL,
                              NULL, recv_answer, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)2000,
                              MHD_OPTION_NOTIFY_COMPLETED, recv_done, NULL, MHD_OPTION_END);
    if (recv_d == NULL)
        return -1;
    recv_port = MHD_get_daemon_info(recv_d, MHD_DAEMON_INFO_BIND_PORT)->port;
    return 0;
}

static void recv_reset(void)
{
    pthread_mutex_lock(&recv_mu);
    for (size_t i = 0; i < recv_n; i++)
        free(recv_log[i].body);
    memset(recv_log, 0, sizeof recv_log);
    recv_n = 0;
    recv_nheld = recv_max_held = 0;
    pthread_mutex_unlock(&recv_mu);
}

static void recv_stop(void)
{
    if (recv_d != NULL)
        MHD_stop_daemon(recv_d);
    recv_d = NULL;
    recv_reset();
}

static size_t recv_count(void)
{
    pthread_mutex_lock(&recv_mu);
    size_t n = recv_n;
    pthread_mutex_unlock(&recv_mu);
    return n;
}

#endif
