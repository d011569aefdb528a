/*
 * kq_http.c — HTTP server on libmicrohttpd; see kq_http.h for the design.
 *
 * Internals: the route table is copied and its patterns split into segments
 * once at start. Each route (plus one pseudo-route "unmatched" for 404/405)
 * owns its metrics: a counter per status code 100..599 (index 0 counts
 * requests that ended without a response) and a latency histogram, all
 * relaxed atomics, so counting never takes a lock. A request's state lives in
 * a struct kq_http_req allocated on libmicrohttpd's first callback and freed
 * in the completion callback, which is also where the access log is written.
 */
#include "kq_http.h"
#include "kq_err.h"
#include "kq_log.h"
#include "kq_time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SEGS 16
#define MAX_HEADERS 16
#define NSTATUS 600
/* A chunked body past the cap is read and discarded up to this many bytes more, then the
 * connection is closed without an answer. */
#define KQ_HTTP_DISCARD_MAX ((size_t)4 << 20)

static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                 0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
#define NBUCKETS (sizeof buckets / sizeof buckets[0])

typedef struct seg {
    const char *s;
    size_t len;
    int param; /* s/len then name the parameter (without braces) */
} seg;

typedef struct route_rt {
    kq_http_route r;
    size_t nseg;
    seg segs[MAX_SEGS];
    atomic_uint_fast64_t status[NSTATUS];
    atomic_uint_fast64_t hist[NBUCKETS + 1]; /* non-cumulative; last = +Inf */
    atomic_uint_fast64_t sum_us;
} route_rt;

struct kq_http_server {
    struct MHD_Daemon *daemon;
    kq_http_limits limits;
    const kq_auth_keys *keys;
    kq_http_ready_fn ready;
    void *ready_arg;
    kq_http_metrics_fn metrics;
    void *metrics_arg;
    size_t nroutes;
    route_rt *routes; /* nroutes entries, then the "unmatched" pseudo-route */
    atomic_int_fast64_t in_flight;
    atomic_uint_fast64_t too_large;
    char start_err[512];
    int starting;
};

struct kq_http_req {
    kq_http_server *srv;
    struct MHD_Connection *conn;
    route_rt *route; /* metrics owner; never NULL after the first call */
    int matched;     /* route is a real match (not the unmatched pseudo-route) */
    char method[16];
    char *path;     /* copy of the decoded path */
    char *pathsegs; /* copy split on '/', parameter values point into it */
    size_t nparams;
    const char *pname[KQ_HTTP_MAX_PARAMS];
    size_t pnamelen[KQ_HTTP_MAX_PARAMS];
    const char *pval[KQ_HTTP_MAX_PARAMS];
    char *body;
    size_t body_len, body_cap;
    int too_large;
    size_t discarded; /* bytes thrown away after the body went over the cap */
    const char *actor;
    unsigned roles;
    unsigned status;
    int responded;
    int deferred;               /* kq_http_defer called: the connection is suspended */
    struct MHD_Response *stash; /* answer from another thread, queued on resume */
    unsigned stash_status;
    size_t nheaders;
    char *hname[MAX_HEADERS], *hval[MAX_HEADERS];
    int64_t t0_us; /* kq_time_mono_us() when the request began */
};

kq_http_limits kq_http_limits_default(void)
{
    kq_http_limits l = {
        .max_body = 64 * 1024,
        .max_connections = 1024,
        .max_per_ip = 64,
        .timeout_s = 30,
        .conn_memory = 64 * 1024,
        .threads = 4,
    };
    return l;
}

kq_http_limits kq_http_limits_from_config(const kq_config *cfg)
{
    kq_http_limits l = {
        .max_body = (size_t)cfg->http_max_body,
        .max_connections = (unsigned)cfg->http_max_conns,
        .max_per_ip = (unsigned)cfg->http_max_per_ip,
        .timeout_s = (unsigned)cfg->http_timeout_s,
        .conn_memory = (size_t)cfg->http_conn_memory,
        .threads = (unsigned)cfg->http_threads,
    };
    return l;
}

/* ------------------------------------------------------------------ address */

int kq_http_parse_addr(const char *addr, struct sockaddr_storage *ss, size_t *sslen, char *errstr,
                       size_t errlen)
{
    char host[256];
    const char *colon, *port;
    size_t hlen;
    char *end;
    unsigned long p;

    if (addr == NULL || *addr == '\0')
        return kq_seterr(errstr, errlen, KQ_EINVAL, "empty address, expected host:port");
    if (addr[0] == '[') {
        const char *rb = strchr(addr, ']');
        if (rb == NULL || rb[1] != ':')
            return kq_seterr(errstr, errlen, KQ_EINVAL, "address '%s': expected [ipv6]:port", addr);
        hlen = (size_t)(rb - addr - 1);
        if (hlen == 0 || hlen >= sizeof host)
            return kq_seterr(errstr, errlen, KQ_EINVAL, "address '%s': bad IPv6 host", addr);
        memcpy(host, addr + 1, hlen);
        colon = rb + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL)
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "address '%s': missing ':port' (expected host:port)", addr);
        hlen = (size_t)(colon - addr);
        if (hlen >= sizeof host)
            return kq_seterr(errstr, errlen, KQ_EINVAL, "address '%s': host too long", addr);
        if (memchr(addr, ':', hlen) != NULL)
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "address '%s': write IPv6 hosts in brackets, [::1]:8080", addr);
        memcpy(host, addr, hlen);
    }
    host[hlen] = '\0';
    port = colon + 1;
    errno = 0;
    p = strtoul(port, &end, 10);
    if (*port < '0' || *port > '9' || *end != '\0' || errno != 0 || p > 65535)
        return kq_seterr(errstr, errlen, KQ_EINVAL,
                         "address '%s': port '%s' is not a number in 0..65535", addr, port);
    memset(ss, 0, sizeof *ss);
    if (hlen == 0) {
        struct sockaddr_in *in = (struct sockaddr_in *)(void *)ss;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_ANY);
        in->sin_port = htons((uint16_t)p);
        *sslen = sizeof *in;
        return 0;
    }
    {
        struct sockaddr_in *in = (struct sockaddr_in *)(void *)ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)ss;
        if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
            in->sin_family = AF_INET;
            in->sin_port = htons((uint16_t)p);
            *sslen = sizeof *in;
            return 0;
        }
        memset(ss, 0, sizeof *ss);
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
            in6->sin6_family = AF_INET6;
            in6->sin6_port = htons((uint16_t)p);
            *sslen = sizeof *in6;
            return 0;
        }
    }
    {
        struct addrinfo hints, *res = NULL;
        int g;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        if ((g = getaddrinfo(host, NULL, &hints, &res)) != 0 || res == NULL)
            return kq_seterr(errstr, errlen, KQ_EINVAL, "address '%s': unknown host '%s': %s", addr,
                             host, gai_strerror(g));
        memset(ss, 0, sizeof *ss);
        memcpy(ss, res->ai_addr, res->ai_addrlen);
        *sslen = res->ai_addrlen;
        if (ss->ss_family == AF_INET)
            ((struct sockaddr_in *)(void *)ss)->sin_port = htons((uint16_t)p);
        else
            ((struct sockaddr_in6 *)(void *)ss)->sin6_port = htons((uint16_t)p);
        freeaddrinfo(res);
    }
    return 0;
}

/* ------------------------------------------------------------------ routes */

/* Split `pattern` into segs[MAX_SEGS] (views into the pattern). */
static int split_pattern(const char *pattern, seg *segs, size_t *nseg, char *errstr, size_t errlen)
{
    const char *p = pattern;

    if (p == NULL || p[0] != '/')
        return kq_seterr(errstr, errlen, KQ_EINVAL, "route pattern '%s' must start with '/'",
                         p ? p : "(null)");
    *nseg = 0;
    if (strcmp(p, "/") == 0)
        return 0;
    while (*p == '/') {
        const char *s = p + 1, *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        seg *sg;
        if (len == 0 || *nseg == MAX_SEGS)
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "route pattern '%s': empty segment or more than %d segments", pattern,
                             MAX_SEGS);
        sg = &segs[(*nseg)++];
        if (s[0] == '{') {
            if (len < 3 || s[len - 1] != '}')
                return kq_seterr(errstr, errlen, KQ_EINVAL, "route pattern '%s': bad parameter",
                                 pattern);
            sg->param = 1;
            sg->s = s + 1;
            sg->len = len - 2;
        } else {
            sg->param = 0;
            sg->s = s;
            sg->len = len;
        }
        p = s + len;
    }
    return 0;
}

/* Does `path` match segs[0..nseg)? Fills params[0..max) and *nparams on a match. */
static int segs_match(const seg *segs, size_t nseg, const char *path, kq_http_param *params,
                      size_t max, size_t *nparams)
{
    const char *p = path;
    size_t i = 0, np = 0;

    if (path[0] != '/')
        return 0;
    if (nseg == 0) {
        if (strcmp(path, "/") != 0)
            return 0;
        *nparams = 0;
        return 1;
    }
    while (*p == '/' && i < nseg) {
        const char *s = p + 1, *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        const seg *sg = &segs[i];
        if (len == 0)
            return 0;
        if (sg->param) {
            if (np < max) {
                params[np].name = sg->s;
                params[np].name_len = sg->len;
                params[np].value = s;
                params[np].value_len = len;
                np++;
            }
        } else if (len != sg->len || memcmp(s, sg->s, len) != 0) {
            return 0;
        }
        p = s + len;
        i++;
    }
    if (*p != '\0' || i != nseg)
        return 0;
    *nparams = np;
    return 1;
}

/* Does `path` match rt? Fills the request's params when req is non-NULL (pathsegs prepared). */
static int route_match(const route_rt *rt, const char *path, kq_http_req *req)
{
    kq_http_param params[KQ_HTTP_MAX_PARAMS];
    size_t np = 0;

    if (!segs_match(rt->segs, rt->nseg, path, params, req ? KQ_HTTP_MAX_PARAMS : 0, &np))
        return 0;
    if (req != NULL) {
        for (size_t i = 0; i < np; i++) {
            req->pname[i] = params[i].name;
            req->pnamelen[i] = params[i].name_len;
            req->pval[i] = req->pathsegs + (params[i].value - path);
        }
        req->nparams = np;
    }
    return 1;
}

int kq_http_route_match(const char *pattern, const char *path, kq_http_param *params, size_t max,
                        size_t *nparams)
{
    seg segs[MAX_SEGS];
    size_t nseg = 0, np = 0;

    *nparams = 0;
    if (split_pattern(pattern, segs, &nseg, NULL, 0) != 0)
        return KQ_EINVAL;
    if (path == NULL || !segs_match(segs, nseg, path, params, max, &np))
        return 0;
    *nparams = np;
    return 1;
}

/* ------------------------------------------------------------------ responses */

static int queue(kq_http_req *req, unsigned status, struct MHD_Response *resp,
                 const char *content_type)
{
    enum MHD_Result ok;

    if (resp == NULL)
        return KQ_ENOMEM;
    if (content_type != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    for (size_t i = 0; i < req->nheaders; i++)
        MHD_add_response_header(resp, req->hname[i], req->hval[i]);
    if (req->deferred) {
        /* Another thread answers a suspended request: park the response and let the
         * connection's own thread queue it when libmicrohttpd calls us again. */
        req->stash = resp;
        req->stash_status = status;
        req->responded = 1;
        req->status = status;
        MHD_resume_connection(req->conn);
        return 0;
    }
    ok = MHD_queue_response(req->conn, status, resp);
    MHD_destroy_response(resp);
    if (ok != MHD_YES)
        return KQ_EIO;
    req->responded = 1;
    req->status = status;
    return 0;
}

int kq_http_defer(kq_http_req *req)
{
    if (req->deferred || req->responded)
        return KQ_EINVAL;
    req->deferred = 1;
    MHD_suspend_connection(req->conn);
    return 0;
}

int kq_http_add_header(kq_http_req *req, const char *name, const char *value)
{
    if (req->nheaders == MAX_HEADERS)
        return KQ_ERANGE;
    if ((req->hname[req->nheaders] = strdup(name)) == NULL)
        return KQ_ENOMEM;
    if ((req->hval[req->nheaders] = strdup(value)) == NULL) {
        free(req->hname[req->nheaders]);
        return KQ_ENOMEM;
    }
    req->nheaders++;
    return 0;
}

int kq_http_respond_json(kq_http_req *req, unsigned status, json_t *body)
{
    char *text = NULL;
    size_t len = 0;
    struct MHD_Response *resp;

    if (req->responded) {
        json_decref(body);
        return KQ_EINVAL;
    }
    if (body != NULL) {
        text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(body);
        if (text == NULL)
            return KQ_ENOMEM;
        len = strlen(text);
    }
    resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return KQ_ENOMEM;
    }
    return queue(req, status, resp, body ? "application/json" : NULL);
}

int kq_http_respond_text(kq_http_req *req, unsigned status, const char *content_type,
                         const char *text, size_t len)
{
    if (req->responded)
        return KQ_EINVAL;
    return queue(req, status,
                 MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY),
                 content_type);
}

int kq_http_respond_error(kq_http_req *req, unsigned status, const char *code, const char *message,
                          json_t *details)
{
    json_t *body;

    if (details == NULL)
        details = json_array();
    body = json_pack("{s:{s:s, s:s, s:o}}", "error", "code", code, "message", message, "details",
                     details);
    if (body == NULL)
        return KQ_ENOMEM;
    return kq_http_respond_json(req, status, body);
}

/* ------------------------------------------------------------------ request accessors */

const char *kq_http_req_method(const kq_http_req *req)
{
    return req->method;
}

const char *kq_http_req_path(const kq_http_req *req)
{
    return req->path;
}

const char *kq_http_req_param(const kq_http_req *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->nparams; i++)
        if (req->pnamelen[i] == n && memcmp(req->pname[i], name, n) == 0)
            return req->pval[i];
    return NULL;
}

const char *kq_http_req_query(const kq_http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

typedef struct query_each_ctx {
    int (*fn)(void *ctx, const char *name, const char *value);
    void *ctx;
} query_each_ctx;

static enum MHD_Result query_each_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    query_each_ctx *q = cls;
    (void)kind;
    return q->fn(q->ctx, key, value) == 0 ? MHD_YES : MHD_NO;
}

size_t kq_http_req_query_each(const kq_http_req *req,
                              int (*fn)(void *ctx, const char *name, const char *value), void *ctx)
{
    query_each_ctx q = {fn, ctx};
    int n = MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_each_one, &q);
    return n < 0 ? 0 : (size_t)n;
}

const char *kq_http_req_header(const kq_http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *kq_http_req_body(const kq_http_req *req, size_t *len)
{
    *len = req->body_len;
    return req->body_len ? req->body : NULL;
}

const char *kq_http_req_actor(const kq_http_req *req)
{
    return req->actor;
}

unsigned kq_http_req_roles(const kq_http_req *req)
{
    return req->roles;
}

int kq_http_req_json(kq_http_req *req, const kq_jin_field *fields, size_t n, json_t **out)
{
    json_t *details = json_array(), *obj = NULL;

    if (details == NULL) {
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        return KQ_ENOMEM;
    }
    if (!kq_jin_content_type_ok(kq_http_req_header(req, MHD_HTTP_HEADER_CONTENT_TYPE))) {
        json_decref(details);
        kq_http_respond_error(req, 415, "unsupported_media_type",
                              "Content-Type must be application/json", NULL);
        return KQ_EINVAL;
    }
    if (kq_jin_parse(req->body, req->body_len, &obj, details) != 0) {
        kq_http_respond_error(req, 400, "invalid_json", "request body is not a valid JSON object",
                              details);
        return KQ_EINVAL;
    }
    if (kq_jin_validate(obj, fields, n, NULL, details) > 0) {
        json_decref(obj);
        kq_http_respond_error(req, 400, "validation_failed", "request body failed validation",
                              details);
        return KQ_EINVAL;
    }
    json_decref(details);
    *out = obj;
    return 0;
}

/* ------------------------------------------------------------------ built-in routes */

static void h_health(kq_http_req *req, void *arg)
{
    (void)arg;
    kq_http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void h_ready(kq_http_req *req, void *arg)
{
    kq_http_server *srv = req->srv;
    char why[256] = "";

    (void)arg;
    if (srv->ready == NULL || srv->ready(srv->ready_arg, why, sizeof why)) {
        kq_http_respond_json(req, 200, json_pack("{s:s}", "status", "ready"));
        return;
    }
    kq_http_add_header(req, MHD_HTTP_HEADER_RETRY_AFTER, "5");
    kq_http_respond_error(req, 503, "not_ready", why[0] ? why : "dependencies not ready", NULL);
}

static void h_metrics(kq_http_req *req, void *arg)
{
    char *text = kq_http_metrics_render(req->srv);

    (void)arg;
    if (text == NULL) {
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        return;
    }
    kq_http_respond_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
    free(text);
}

static const kq_http_route builtin[] = {
    {"GET", "/health", KQ_HTTP_PUBLIC, KQ_HTTP_BODY_NONE, "health", h_health, NULL},
    {"GET", "/ready", KQ_HTTP_PUBLIC, KQ_HTTP_BODY_NONE, "ready", h_ready, NULL},
    {"GET", "/metrics", KQ_HTTP_PUBLIC, KQ_HTTP_BODY_NONE, "metrics", h_metrics, NULL},
};
#define NBUILTIN (sizeof builtin / sizeof builtin[0])

/* ------------------------------------------------------------------ metrics */

static void put_label(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f);
        if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

char *kq_http_metrics_render(kq_http_server *srv)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    const union MHD_DaemonInfo *di;

    if (f == NULL)
        return NULL;
    fputs("# HELP kcqrs_http_requests_total HTTP requests by route and status.\n"
          "# TYPE kcqrs_http_requests_total counter\n",
          f);
    for (size_t i = 0; i <= srv->nroutes; i++) {
        route_rt *rt = &srv->routes[i];
        for (unsigned s = 0; s < NSTATUS; s++) {
            uint64_t c = atomic_load_explicit(&rt->status[s], memory_order_relaxed);
            if (c == 0)
                continue;
            fputs("kcqrs_http_requests_total{route=\"", f);
            put_label(f, rt->r.name);
            fprintf(f, "\",method=\"%s\",status=\"%u\"} %llu\n", rt->r.method ? rt->r.method : "",
                    s, (unsigned long long)c);
        }
    }
    fputs("# HELP kcqrs_http_request_duration_seconds Time from request headers to response "
          "sent.\n# TYPE kcqrs_http_request_duration_seconds histogram\n",
          f);
    for (size_t i = 0; i <= srv->nroutes; i++) {
        route_rt *rt = &srv->routes[i];
        uint64_t cum = 0;
        for (size_t b = 0; b <= NBUCKETS; b++)
            cum += atomic_load_explicit(&rt->hist[b], memory_order_relaxed);
        if (cum == 0)
            continue;
        cum = 0;
        for (size_t b = 0; b <= NBUCKETS; b++) {
            cum += atomic_load_explicit(&rt->hist[b], memory_order_relaxed);
            fputs("kcqrs_http_request_duration_seconds_bucket{route=\"", f);
            put_label(f, rt->r.name);
            if (b < NBUCKETS)
                fprintf(f, "\",le=\"%g\"} %llu\n", buckets[b], (unsigned long long)cum);
            else
                fprintf(f, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        }
        fputs("kcqrs_http_request_duration_seconds_sum{route=\"", f);
        put_label(f, rt->r.name);
        fprintf(f, "\"} %.6f\n",
                (double)atomic_load_explicit(&rt->sum_us, memory_order_relaxed) / 1e6);
        fputs("kcqrs_http_request_duration_seconds_count{route=\"", f);
        put_label(f, rt->r.name);
        fprintf(f, "\"} %llu\n", (unsigned long long)cum);
    }
    fprintf(f,
            "# HELP kcqrs_http_requests_in_flight Requests received and not yet completed.\n"
            "# TYPE kcqrs_http_requests_in_flight gauge\n"
            "kcqrs_http_requests_in_flight %lld\n",
            (long long)atomic_load(&srv->in_flight));
    fprintf(f,
            "# HELP kcqrs_http_body_too_large_total Requests refused with 413.\n"
            "# TYPE kcqrs_http_body_too_large_total counter\n"
            "kcqrs_http_body_too_large_total %llu\n",
            (unsigned long long)atomic_load(&srv->too_large));
    di = srv->daemon ? MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS) : NULL;
    if (di != NULL)
        fprintf(f,
                "# HELP kcqrs_http_connections Open HTTP connections.\n"
                "# TYPE kcqrs_http_connections gauge\n"
                "kcqrs_http_connections %u\n",
                di->num_connections);
    if (srv->metrics != NULL)
        srv->metrics(srv->metrics_arg, f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static uint64_t elapsed_us(int64_t t0_us)
{
    int64_t us = kq_time_mono_us() - t0_us;
    return us < 0 ? 0 : (uint64_t)us;
}

/* ------------------------------------------------------------------ request flow */

static void copy_printable(char *out, size_t outlen, const char *s)
{
    size_t i = 0;
    for (; s && *s && i + 1 < outlen; s++)
        out[i++] = ((unsigned char)*s < 0x20 || *s == 0x7f || *s == '"') ? '?' : *s;
    out[i] = '\0';
}

/* Match, authenticate, check declared length and type. May answer. */
static void prepare(kq_http_req *req, const char *path)
{
    kq_http_server *srv = req->srv;
    char allow[128] = "";
    size_t alen = 0;
    const char *hdr;

    for (size_t i = 0; i < srv->nroutes; i++) {
        route_rt *rt = &srv->routes[i];
        if (!route_match(rt, path, NULL))
            continue;
        if (strcmp(rt->r.method, req->method) == 0) {
            req->route = rt;
            req->matched = 1;
            route_match(rt, path, req);
            break;
        }
        if (strstr(allow, rt->r.method) == NULL && alen + strlen(rt->r.method) + 3 < sizeof allow)
            alen += (size_t)snprintf(allow + alen, sizeof allow - alen, "%s%s", alen ? ", " : "",
                                     rt->r.method);
    }
    if (!req->matched) {
        if (alen > 0) {
            kq_http_add_header(req, MHD_HTTP_HEADER_ALLOW, allow);
            kq_http_respond_error(req, 405, "method_not_allowed", "method not allowed on this path",
                                  NULL);
        } else {
            kq_http_respond_error(req, 404, "not_found", "no such route", NULL);
        }
        return;
    }
    if (req->route->r.role != KQ_HTTP_PUBLIC) {
        const char *tok;
        hdr = kq_http_req_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
        if (hdr == NULL || strncasecmp(hdr, "Bearer ", 7) != 0) {
            kq_http_add_header(req, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
            kq_http_respond_error(req, 401, "unauthorized",
                                  "an API key is required: Authorization: Bearer <key>", NULL);
            return;
        }
        for (tok = hdr + 7; *tok == ' '; tok++)
            ;
        if (kq_auth_lookup(srv->keys, tok, strlen(tok), &req->actor, &req->roles) != 0) {
            req->actor = NULL;
            kq_http_add_header(req, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                               "Bearer error=\"invalid_token\"");
            kq_http_respond_error(req, 401, "unauthorized", "invalid API key", NULL);
            return;
        }
        if (req->route->r.role != KQ_HTTP_ANY_KEY &&
            !kq_auth_has_role(req->roles, req->route->r.role)) {
            char need[64], msg[160];
            kq_auth_roles_format(req->route->r.role, need, sizeof need);
            snprintf(msg, sizeof msg, "this key lacks the role %s", need);
            kq_http_respond_error(req, 403, "forbidden", msg, NULL);
            return;
        }
    }
    if (req->route->r.body == KQ_HTTP_BODY_JSON &&
        !kq_jin_content_type_ok(kq_http_req_header(req, MHD_HTTP_HEADER_CONTENT_TYPE))) {
        kq_http_respond_error(req, 415, "unsupported_media_type",
                              "Content-Type must be application/json", NULL);
        return;
    }
    hdr = kq_http_req_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (hdr != NULL) {
        char *end;
        unsigned long long cl;
        errno = 0;
        cl = strtoull(hdr, &end, 10);
        if (errno != 0 || end == hdr || cl > srv->limits.max_body) {
            char msg[128];
            atomic_fetch_add(&srv->too_large, 1);
            snprintf(msg, sizeof msg, "request body is over the limit of %zu bytes",
                     srv->limits.max_body);
            kq_http_respond_error(req, 413, "payload_too_large", msg, NULL);
            return;
        }
        if (cl > 0 && (req->body = malloc(cl)) != NULL)
            req->body_cap = cl;
    }
}

static void append_body(kq_http_req *req, const char *data, size_t n)
{
    size_t max = req->srv->limits.max_body;

    if (req->too_large)
        return;
    if (n > max - req->body_len) {
        req->too_large = 1;
        free(req->body);
        req->body = NULL;
        req->body_len = req->body_cap = 0;
        return;
    }
    if (req->body_len + n > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap : 4096;
        char *nb;
        while (cap < req->body_len + n)
            cap *= 2;
        if (cap > max)
            cap = max;
        if ((nb = realloc(req->body, cap)) == NULL) {
            req->too_large = 1; /* answered as 413; the limit is what we could hold */
            return;
        }
        req->body = nb;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, n);
    req->body_len += n;
}

static void respond_too_large(kq_http_req *req)
{
    char msg[128];
    snprintf(msg, sizeof msg, "request body is over the limit of %zu bytes",
             req->srv->limits.max_body);
    if (kq_http_respond_error(req, 413, "payload_too_large", msg, NULL) == 0)
        atomic_fetch_add(&req->srv->too_large, 1);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    kq_http_server *srv = cls;
    kq_http_req *req = *con_cls;

    (void)version;
    if (req == NULL) {
        if ((req = calloc(1, sizeof *req)) == NULL)
            return MHD_NO;
        req->t0_us = kq_time_mono_us();
        req->srv = srv;
        req->conn = conn;
        req->route = &srv->routes[srv->nroutes];
        copy_printable(req->method, sizeof req->method, method);
        if ((req->path = strdup(url)) == NULL || (req->pathsegs = strdup(url)) == NULL) {
            free(req->path);
            free(req);
            return MHD_NO;
        }
        for (char *p = req->pathsegs; *p; p++)
            if (*p == '/')
                *p = '\0';
        atomic_fetch_add(&srv->in_flight, 1);
        *con_cls = req;
        prepare(req, url);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->responded)
            return MHD_YES;
        if (!req->too_large) {
            append_body(req, upload_data, n);
            /* libmicrohttpd 0.9.75 refuses a response while a body is being received, so
             * this attempt normally fails and the 413 goes out after the last chunk. */
            if (req->too_large)
                respond_too_large(req);
            return MHD_YES;
        }
        /* Discard the rest, but not forever: past the bound, drop the connection. */
        req->discarded += n;
        if (req->discarded > KQ_HTTP_DISCARD_MAX) {
            kq_log_warn("http: %s %s: body over the limit kept coming, connection closed",
                        req->method, req->route->r.name);
            return MHD_NO;
        }
        return MHD_YES;
    }
    if (req->deferred) {
        /* Resumed by kq_http_respond_* from another thread (or spuriously: wait on). */
        struct MHD_Response *resp = req->stash;
        enum MHD_Result ok;
        if (resp == NULL)
            return MHD_YES;
        req->stash = NULL;
        ok = MHD_queue_response(conn, req->stash_status, resp);
        MHD_destroy_response(resp);
        return ok;
    }
    if (req->responded)
        return MHD_YES;
    if (req->too_large) {
        respond_too_large(req);
        return req->responded ? MHD_YES : MHD_NO;
    }
    req->route->r.handler(req, req->route->r.arg);
    if (req->deferred)
        return MHD_YES; /* req now belongs to whoever answers it; do not touch it */
    if (!req->responded) {
        kq_log_error("http: handler '%s' gave no response", req->route->r.name);
        kq_http_respond_error(req, 500, "internal", "internal error", NULL);
    }
    return req->responded ? MHD_YES : MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    kq_http_server *srv = cls;
    kq_http_req *req = *con_cls;
    uint64_t us;
    size_t b;
    route_rt *rt;

    (void)conn;
    if (req == NULL)
        return;
    *con_cls = NULL;
    rt = req->route;
    us = elapsed_us(req->t0_us);
    if (!req->responded)
        req->status = 0; /* counted and logged as status 0: no answer was sent */
    atomic_fetch_add_explicit(&rt->status[req->status < NSTATUS ? req->status : 0], 1,
                              memory_order_relaxed);
    for (b = 0; b < NBUCKETS; b++)
        if ((double)us / 1e6 <= buckets[b])
            break;
    atomic_fetch_add_explicit(&rt->hist[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rt->sum_us, us, memory_order_relaxed);
    atomic_fetch_sub(&srv->in_flight, 1);
    if (kq_log_enabled(KQ_LOG_INFO)) {
        char path[256];
        copy_printable(path, sizeof path, req->path);
        kq_log_info("http %s %s %u %.3fms actor=%s%s", req->method, path, req->status,
                    (double)us / 1000.0, req->actor ? req->actor : "-",
                    toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection ended early)");
    }
    for (size_t i = 0; i < req->nheaders; i++) {
        free(req->hname[i]);
        free(req->hval[i]);
    }
    if (req->stash != NULL)
        MHD_destroy_response(req->stash);
    free(req->body);
    free(req->path);
    free(req->pathsegs);
    free(req);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    kq_http_server *srv = cls;
    char msg[512];
    size_t n;

    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    if (srv->starting)
        snprintf(srv->start_err, sizeof srv->start_err, "%s", msg);
    kq_log_warn("libmicrohttpd: %s", msg);
}

/* ------------------------------------------------------------------ start / stop */

/* Bind and listen ourselves, so errors name the address and errno, not MHD's port 0. */
static int listen_on(const char *addr, const struct sockaddr_storage *ss, size_t sslen, int *out,
                     char *errstr, size_t errlen)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, e;

    if (fd < 0)
        return kq_seterr(errstr, errlen, KQ_EIO, "cannot serve HTTP on %s: socket: %s", addr,
                         strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)ss, (socklen_t)sslen) != 0 || listen(fd, 511) != 0) {
        e = errno;
        close(fd);
        return kq_seterr(errstr, errlen, KQ_EIO, "cannot serve HTTP on %s: %s", addr, strerror(e));
    }
    *out = fd;
    return 0;
}

int kq_http_start(const kq_http_options *opts, kq_http_server **out, char *errstr, size_t errlen)
{
    kq_http_server *srv = NULL;
    struct sockaddr_storage ss;
    size_t sslen, n;
    const kq_http_limits *l = &opts->limits;
    unsigned flags;
    int rc, lfd = -1;

    if ((rc = kq_http_parse_addr(opts->addr, &ss, &sslen, errstr, errlen)) != 0)
        return rc;
    if (l->max_body == 0 || l->max_body > (1u << 30))
        return kq_seterr(errstr, errlen, KQ_EINVAL, "body limit %zu not in 1..%u", l->max_body,
                         1u << 30);
    if (l->threads == 0 || l->threads > 1024)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "thread count %u not in 1..1024", l->threads);
    if (l->max_connections < l->threads)
        return kq_seterr(errstr, errlen, KQ_EINVAL,
                         "connection limit %u is below the thread count %u", l->max_connections,
                         l->threads);
    if (l->conn_memory < 4096)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "per-connection memory %zu is below 4096 bytes",
                         l->conn_memory);
    if (opts->nroutes > KQ_HTTP_MAX_ROUTES || (opts->nroutes > 0 && opts->routes == NULL))
        return kq_seterr(errstr, errlen, KQ_EINVAL, "more than %d routes", KQ_HTTP_MAX_ROUTES);
    n = opts->nroutes + NBUILTIN;
    if ((srv = calloc(1, sizeof *srv)) == NULL ||
        (srv->routes = calloc(n + 1, sizeof *srv->routes)) == NULL) {
        free(srv);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    srv->limits = *l;
    srv->keys = opts->keys;
    srv->ready = opts->ready;
    srv->ready_arg = opts->ready_arg;
    srv->metrics = opts->metrics;
    srv->metrics_arg = opts->metrics_arg;
    srv->nroutes = n;
    for (size_t i = 0; i < n; i++) {
        route_rt *rt = &srv->routes[i];
        rt->r = i < NBUILTIN ? builtin[i] : opts->routes[i - NBUILTIN];
        if (rt->r.method == NULL || rt->r.handler == NULL || rt->r.name == NULL) {
            rc = kq_seterr(errstr, errlen, KQ_EINVAL, "route %zu lacks method, handler or name",
                           i - NBUILTIN);
            goto fail;
        }
        if ((rc = split_pattern(rt->r.pattern, rt->segs, &rt->nseg, errstr, errlen)) != 0)
            goto fail;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(srv->routes[j].r.method, rt->r.method) == 0 &&
                strcmp(srv->routes[j].r.pattern, rt->r.pattern) == 0) {
                rc = kq_seterr(errstr, errlen, KQ_EINVAL, "route %s %s defined twice", rt->r.method,
                               rt->r.pattern);
                goto fail;
            }
        }
    }
    srv->routes[n].r.name = "unmatched";
    srv->routes[n].r.method = "";
    flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if ((rc = listen_on(opts->addr, &ss, sslen, &lfd, errstr, errlen)) != 0)
        goto fail;
    srv->starting = 1;
    /* libmicrohttpd owns lfd from here: MHD_stop_daemon closes it. */
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, srv,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lfd, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned int)l->threads, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)l->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)l->max_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)l->timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)l->conn_memory, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, srv, MHD_OPTION_END);
    srv->starting = 0;
    if (srv->daemon == NULL) {
        close(lfd);
        rc = kq_seterr(errstr, errlen, KQ_EIO, "cannot serve HTTP on %s: %s", opts->addr,
                       srv->start_err[0] ? srv->start_err : "libmicrohttpd refused to start");
        goto fail;
    }
    *out = srv;
    return 0;
fail:
    free(srv->routes);
    free(srv);
    return rc;
}

unsigned kq_http_port(const kq_http_server *srv)
{
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    return di ? di->port : 0;
}

void kq_http_stop(kq_http_server *srv)
{
    if (srv == NULL)
        return;
    MHD_stop_daemon(srv->daemon);
    free(srv->routes);
    free(srv);
}
