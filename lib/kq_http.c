/*
 * kq_http.c — the HTTP/1.1 server; see kq_http.h for the design.
 *
 * Internals. The route table is copied and its patterns split into segments
 * once at start. Each route (plus one pseudo-route "unmatched" for 404/405
 * and for what the server refuses before routing) owns its metrics: a counter
 * per status code 100..599 (index 0 counts requests that ended without a
 * response) and a latency histogram, all relaxed atomics.
 *
 * Loops. Each loop thread owns an epoll set, an eventfd, the list of its
 * connections and a queue of deferred answers (mutex): kq_http_respond_* on
 * another thread stores the answer in the request, queues the request and
 * writes the eventfd; the loop writes the answer. Level-triggered epoll; the
 * interest of a connection follows its state (IN while a request is read, none
 * while its handler or a deferred answer runs, OUT while an answer is
 * written). Deadlines are checked by a scan of the loop's connections at the
 * earliest deadline (at most every second): O(connections) per scan.
 *
 * A connection's states: HEAD (waiting for or reading a request head; the
 * header deadline runs from the accept or the first byte), IDLE (keep-alive,
 * nothing buffered; the idle timeout runs), BODY, HANDLER (the handler is on
 * the stack), WAIT (answer deferred: the request belongs to another thread
 * until it answers), WRITE, LINGER (answered and closing: our side is shut
 * down, what the client still sends is read and dropped for up to 2 s).
 * A connection whose socket dies in WAIT is kept (without its socket) until
 * the answer arrives, then freed.
 */
#include "kq_http.h"
#include "kq_err.h"
#include "kq_http_parse.h"
#include "kq_limit.h"
#include "kq_log.h"
#include "kq_map.h"
#include "kq_problem.h"
#include "kq_procmetrics.h"
#include "kq_rand.h"
#include "kq_time.h"
#include "kq_trace.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SEGS 16
#define MAX_RESP_HEADERS 16
#define NSTATUS 600
#define RBUF_MIN 4096
#define BODY_GRACE_MS 2000
#define LINGER_MS 2000
#define LINGER_MAX_BYTES ((size_t)1 << 20)
#define RETRY_AFTER "1"
#define ACCEPT_BATCH 64
#define MAX_PROXIES 32
#define MAX_XFF_HOPS 64
#define MAX_CORS 16
#define CORS_ORIGIN_MAX 256
#define CORS_MAX_AGE "600"
#define CORS_ALLOW_HEADERS                                                                         \
    "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key, X-Correlation-Id, "    \
    "X-Request-Id, X-Consistency-Token, Last-Event-ID, traceparent, tracestate"
#define CORS_EXPOSE_HEADERS                                                                        \
    "ETag, Location, Retry-After, X-Consistency-Token, X-Request-Id, X-Correlation-Id"

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

typedef struct listener {
    int fd;
    int internal;
    unsigned port;
    atomic_uint nconns; /* connections counted against this listener's budget */
} listener;

typedef struct conn conn;
typedef struct loop loop;

enum cstate { C_HEAD, C_IDLE, C_BODY, C_HANDLER, C_WAIT, C_WRITE, C_LINGER, C_STREAM };

struct loop {
    kq_http_server *srv;
    pthread_t tid;
    int started;
    int ep, evfd;
    conn *conns; /* doubly linked, every connection of this loop */
    unsigned nconns;
    pthread_mutex_t mu; /* guards done_head/done_tail */
    kq_http_req *done_head, *done_tail;
    kq_http_stream *sq_head, *sq_tail; /* streams with bytes to write (mu) */
    char date[64];                     /* "Date: ...\r\n" of date_s */
    time_t date_s;
    uint64_t nsuccess; /* for sample:N access logging */
    conn *grave;       /* closed in this event batch, freed after it */
    int64_t next_scan; /* ms: the earliest deadline of a connection */
};

struct conn {
    conn *prev, *next;
    loop *lp;
    listener *ls;
    int fd;
    unsigned events; /* epoll interest now */
    enum cstate state;
    char client[INET6_ADDRSTRLEN]; /* peer address text */
    int trusted;                   /* the peer is a trusted proxy (X-Forwarded-For is believed) */
    SSL *ssl;                      /* HTTPS: the TLS session (handshake inside the first reads) */
    int tls_rw;                    /* TLS wants to write while we read: poll for EPOLLOUT too */
    unsigned char ipkey[16];
    size_t ipkeylen; /* > 0: counted in the per-IP table */
    char *rbuf;
    size_t rlen, rcap, scan;
    int64_t t_wait;     /* ms: HEAD since accept/first byte, IDLE since the last answer */
    int64_t t_body;     /* ms: BODY since the head ended */
    uint64_t body_wire; /* body bytes read so far */
    int64_t t_active;   /* ms: last progress (writes) */
    kq_http_req *req;
    kq_hp_body body;
    char *wbuf;
    size_t wlen, woff;
    int close_after;
    int eof;     /* the peer sent FIN */
    int dead;    /* socket closed while the request is deferred */
    int closed;  /* in the grave: ignore further events of this batch */
    int counted; /* holds a slot of ls->nconns */
    int64_t linger_until;
    size_t lingered;
    kq_http_stream *stream; /* C_STREAM: the streaming answer (one reference) */
    int stream_ended;       /* its producer has ended it */
};

struct kq_http_server {
    kq_http_limits limits;
    kq_hp_limits hp;
    const kq_auth_keys *keys;
    kq_http_ready_fn ready;
    void *ready_arg;
    kq_http_metrics_fn metrics;
    void *metrics_arg;
    size_t nroutes;
    route_rt *routes; /* nroutes entries, then the "unmatched" pseudo-route */
    listener ls[2];
    size_t nls;
    loop *loops;
    unsigned nloops;
    atomic_int stopping;
    pthread_mutex_t ipmu; /* guards per_ip */
    kq_map *per_ip;       /* ip bytes -> unsigned count */
    int spare_fd;         /* closed to accept (and refuse) when out of descriptors */
    char *nofd_answer;    /* the 503 sent with the spare descriptor */
    size_t nofd_len;
    SSL_CTX *tls; /* HTTPS on every listener; NULL = plain HTTP */
    struct cidr {
        int family; /* AF_INET or AF_INET6 */
        unsigned char addr[16];
        unsigned bits;
    } proxies[MAX_PROXIES]; /* trusted proxies */
    size_t nproxies;
    char cors[MAX_CORS][CORS_ORIGIN_MAX]; /* allowed browser origins, exact */
    size_t ncors;
    int cors_any; /* "*": any origin */
    pthread_mutex_t spare_mu;
    atomic_int_fast64_t in_flight;
    atomic_uint_fast64_t too_large;
    atomic_uint_fast64_t refused; /* 503 at accept: budget or per-IP */
    atomic_uint_fast64_t evicted;
    atomic_uint_fast64_t timeouts;     /* 408 */
    kq_limit *key_limit;               /* requests per API key; NULL = no limit */
    atomic_uint_fast64_t rate_limited; /* 429 for a key over its rate */
};

struct kq_http_req {
    kq_http_server *srv;
    conn *c;
    kq_http_req *qnext; /* in the loop's queue of deferred answers */
    route_rt *route;    /* metrics owner; never NULL */
    int matched;
    kq_hp_head h;
    char *hbuf;     /* owns the head bytes h points into */
    char *pathsegs; /* copy of the path split on '/', parameter values point into it */
    size_t nparams;
    const char *pname[KQ_HTTP_MAX_PARAMS];
    size_t pnamelen[KQ_HTTP_MAX_PARAMS];
    const char *pval[KQ_HTTP_MAX_PARAMS];
    size_t cap; /* the route's body cap */
    char *body;
    size_t body_len, body_cap;
    const char *actor;
    unsigned roles;
    char client[INET6_ADDRSTRLEN]; /* the client: the peer or, from a trusted proxy, X-F-F */
    int deferred;
    /* the answer */
    atomic_int responded;
    unsigned status;
    char ctype[128];
    char *rbody;
    size_t rbody_len;
    size_t nheaders;
    char *hname[MAX_RESP_HEADERS], *hval[MAX_RESP_HEADERS];
    int64_t t0_us;                     /* kq_time_mono_us() when the head was complete */
    char reqid[KQ_HTTP_REQID_MAX + 1]; /* X-Request-Id: the client's (when sane) or ours */
    char aggid[KQ_HTTP_AGGID_MAX + 1]; /* the access log's aggregate_id; "" = the {id} param */
    kq_http_stream *stream;            /* kq_http_stream_begin was called */
    kq_span span; /* this request's server span: the client's traceparent continued, or a new
                     trace; exported at completion when tracing (kq_trace.h) */
};

/*
 * A streaming answer, shared by its producer thread and the connection's loop. The
 * producer appends to buf under mu and queues the stream on its loop (sq_head, one
 * reference while queued); the loop takes buf whole into the connection's write
 * buffer. appended - sent = bytes not yet written to the socket (the bound).
 */
struct kq_http_stream {
    pthread_mutex_t mu;
    int refs; /* producer + connection + queued (mu) */
    loop *lp; /* mu; the connection's loop */
    conn *c;  /* loop thread only; valid while !gone */
    kq_http_stream *qnext;
    int queued; /* mu: in lp's stream queue */
    int ended;  /* mu: kq_http_stream_end was called */
    int gone;   /* mu: the connection closed */
    char *buf;  /* mu: appended, not yet taken by the loop */
    size_t len, cap, max;
    atomic_size_t appended, sent;
};

kq_http_limits kq_http_limits_default(void)
{
    kq_http_limits l = {
        .max_body = 64 * 1024,
        .max_connections = 4096,
        .max_per_ip = 64,
        .timeout_s = 30,
        .conn_memory = 64 * 1024,
        .threads = 4,
        .max_body_public = 16 * 1024,
        .header_timeout_ms = 10000,
        .min_body_rate = 1024,
        .access_log_every = 1,
        .limit_entries = 16384,
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
        .max_body_public = (size_t)cfg->http_max_body_public,
        .header_timeout_ms = (unsigned)cfg->http_head_timeout_ms,
        .min_body_rate = (unsigned)cfg->http_min_body_rate,
        .access_log_every = (unsigned)cfg->access_log_every,
        .key_rate = (unsigned)cfg->rate_key_per_s,
        .key_burst = (unsigned)cfg->rate_key_burst,
        .limit_entries = (unsigned)cfg->rate_entries,
    };
    return l;
}

static int peer_trusted(const kq_http_server *srv, const struct sockaddr_storage *ss);
static void xff_client(const kq_http_req *req, char *out, size_t outlen);

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

/* ------------------------------------------------------------------ answers */

static const char *reason_phrase(unsigned s)
{
    return kq_problem_reason(s);
}

/* The error code of an error the server answers itself (parser, limits, deadlines). */
static const char *status_code_name(unsigned s)
{
    switch (s) {
    case 400:
        return "bad_request";
    case 408:
        return "request_timeout";
    case 413:
        return "payload_too_large";
    case 414:
        return "uri_too_long";
    case 417:
        return "expectation_failed";
    case 431:
        return "header_fields_too_large";
    case 501:
        return "not_implemented";
    case 503:
        return "server_busy";
    case 505:
        return "http_version_not_supported";
    default:
        return s >= 500 ? "internal" : "bad_request";
    }
}

/*
 * THE error body of every error the server or a handler answers: RFC 9457
 * problem details (kq_problem.h), Content-Type application/problem+json.
 * `details` is stolen (NULL: an empty array); `instance` is the request path
 * (NULL before a request line was read: left out). Returns malloc'd compact
 * JSON owned by the caller and its length, or NULL when out of memory.
 */
static char *error_body(unsigned status, const char *code, const char *message, json_t *details,
                        const char *instance, size_t *len)
{
    json_t *body = kq_problem_new(status, code, message, details, instance);
    char *text;

    if (body == NULL)
        return NULL;
    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text != NULL)
        *len = strlen(text);
    return text;
}

static void loop_wake(loop *lp)
{
    uint64_t one = 1;
    ssize_t w = write(lp->evfd, &one, sizeof one);
    (void)w; /* a full counter (never) or EAGAIN still leaves it readable */
}

/* Store the answer in req (exactly once). A deferred request goes to its loop's queue. */
static int answer_set(kq_http_req *req, unsigned status, const char *content_type, char *body,
                      size_t len)
{
    int expected = 0;

    if (!atomic_compare_exchange_strong(&req->responded, &expected, 1)) {
        free(body);
        return KQ_EINVAL;
    }
    req->status = status < 100 || status > 599 ? 500 : status;
    snprintf(req->ctype, sizeof req->ctype, "%s", content_type ? content_type : "");
    req->rbody = body;
    req->rbody_len = len;
    if (req->deferred) {
        loop *lp = req->c->lp; /* req may be freed by the loop once queued */
        pthread_mutex_lock(&lp->mu);
        req->qnext = NULL;
        if (lp->done_tail)
            lp->done_tail->qnext = req;
        else
            lp->done_head = req;
        lp->done_tail = req;
        pthread_mutex_unlock(&lp->mu);
        loop_wake(lp);
    }
    return 0;
}

int kq_http_defer(kq_http_req *req)
{
    if (req->deferred || atomic_load(&req->responded))
        return KQ_EINVAL;
    req->deferred = 1;
    return 0;
}

static int is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

int kq_http_add_header(kq_http_req *req, const char *name, const char *value)
{
    if (atomic_load(&req->responded))
        return KQ_EINVAL;
    if (req->nheaders == MAX_RESP_HEADERS)
        return KQ_ERANGE;
    if (*name == '\0' || strpbrk(value, "\r\n") != NULL)
        return KQ_EINVAL;
    for (const char *p = name; *p; p++)
        if (!is_tchar((unsigned char)*p))
            return KQ_EINVAL;
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

    if (atomic_load(&req->responded)) {
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
    return answer_set(req, status, text ? "application/json" : NULL, text, len);
}

int kq_http_respond_text(kq_http_req *req, unsigned status, const char *content_type,
                         const char *text, size_t len)
{
    char *copy;

    if (atomic_load(&req->responded))
        return KQ_EINVAL;
    if ((copy = malloc(len ? len : 1)) == NULL)
        return KQ_ENOMEM;
    if (len)
        memcpy(copy, text, len);
    return answer_set(req, status, content_type, copy, len);
}

int kq_http_respond_error(kq_http_req *req, unsigned status, const char *code, const char *message,
                          json_t *details)
{
    size_t len = 0;
    char *text;

    if (atomic_load(&req->responded)) {
        json_decref(details);
        return KQ_EINVAL;
    }
    if ((text = error_body(status, code, message, details, req->h.path, &len)) == NULL)
        return KQ_ENOMEM;
    return answer_set(req, status, KQ_PROBLEM_CTYPE, text, len);
}

/* ------------------------------------------------------------------ request accessors */

const char *kq_http_req_method(const kq_http_req *req)
{
    return req->h.method;
}

const char *kq_http_req_path(const kq_http_req *req)
{
    return req->h.path;
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
    for (unsigned i = 0; i < req->h.nparams; i++)
        if (strcmp(req->h.params[i].name, name) == 0)
            return req->h.params[i].value;
    return NULL;
}

size_t kq_http_req_query_each(const kq_http_req *req,
                              int (*fn)(void *ctx, const char *name, const char *value), void *ctx)
{
    size_t n = 0;
    for (unsigned i = 0; i < req->h.nparams; i++) {
        n++;
        if (fn(ctx, req->h.params[i].name, req->h.params[i].value) != 0)
            break;
    }
    return n;
}

const char *kq_http_req_header(const kq_http_req *req, const char *name)
{
    for (unsigned i = 0; i < req->h.nheaders; i++)
        if (strcasecmp(req->h.headers[i].name, name) == 0)
            return req->h.headers[i].value;
    return NULL;
}

const char *kq_http_req_body(const kq_http_req *req, size_t *len)
{
    *len = req->body_len;
    return req->body_len ? req->body : NULL;
}

static void copy_printable(char *out, size_t outlen, const char *s);

int kq_http_request_id_ok(const char *s)
{
    size_t n = 0;

    if (s == NULL)
        return 0;
    for (; s[n] != '\0'; n++) {
        unsigned char ch = (unsigned char)s[n];
        if (n >= KQ_HTTP_REQID_MAX ||
            !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              ch == '-' || ch == '_' || ch == '.' || ch == ':'))
            return 0;
    }
    return n > 0;
}

/* A new request id (a UUID v4) into out; a time-based one if the kernel gives no bytes. */
static void request_id_new(char out[KQ_HTTP_REQID_MAX + 1])
{
    uint8_t u[16];

    if (kq_uuid_v4(u) == 0)
        kq_uuid_format(u, out);
    else
        snprintf(out, KQ_HTTP_REQID_MAX + 1, "t%llx", (unsigned long long)kq_time_mono_us());
}

const char *kq_http_req_id(const kq_http_req *req)
{
    return req->reqid;
}

void kq_http_req_set_aggregate_id(kq_http_req *req, const char *id)
{
    copy_printable(req->aggid, sizeof req->aggid, id ? id : "");
}

const char *kq_http_req_actor(const kq_http_req *req)
{
    return req->actor;
}

unsigned kq_http_req_roles(const kq_http_req *req)
{
    return req->roles;
}

const char *kq_http_req_client(const kq_http_req *req)
{
    return req->client;
}

const kq_trace_ctx *kq_http_req_trace(const kq_http_req *req)
{
    return &req->span.ctx;
}

int kq_http_req_json(kq_http_req *req, const kq_jin_field *fields, size_t n, json_t **out)
{
    json_t *details = json_array(), *obj = NULL;

    if (details == NULL) {
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        return KQ_ENOMEM;
    }
    if (!kq_jin_content_type_ok(kq_http_req_header(req, "Content-Type"))) {
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
    kq_http_add_header(req, "Retry-After", "5");
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
    fprintf(f,
            "# HELP kcqrs_http_rate_limited_total Requests refused with 429: an API key over "
            "its rate.\n"
            "# TYPE kcqrs_http_rate_limited_total counter\n"
            "kcqrs_http_rate_limited_total %llu\n",
            (unsigned long long)atomic_load(&srv->rate_limited));
    {
        unsigned long conns = 0;
        for (size_t i = 0; i < srv->nls; i++)
            conns += atomic_load(&srv->ls[i].nconns);
        fprintf(f,
                "# HELP kcqrs_http_connections Open HTTP connections.\n"
                "# TYPE kcqrs_http_connections gauge\n"
                "kcqrs_http_connections %lu\n",
                conns);
    }
    fprintf(f,
            "# HELP kcqrs_http_connections_refused_total Connections answered 503 at accept "
            "(connection budget or per-IP limit).\n"
            "# TYPE kcqrs_http_connections_refused_total counter\n"
            "kcqrs_http_connections_refused_total %llu\n"
            "# HELP kcqrs_http_connections_evicted_total Connections closed to make room for a new "
            "one (the longest waiting for a request head).\n"
            "# TYPE kcqrs_http_connections_evicted_total counter\n"
            "kcqrs_http_connections_evicted_total %llu\n"
            "# HELP kcqrs_http_timeouts_total Requests answered 408 (header deadline or body "
            "rate).\n"
            "# TYPE kcqrs_http_timeouts_total counter\n"
            "kcqrs_http_timeouts_total %llu\n",
            (unsigned long long)atomic_load(&srv->refused),
            (unsigned long long)atomic_load(&srv->evicted),
            (unsigned long long)atomic_load(&srv->timeouts));
    kq_procmetrics_write(f);
    kq_trace_metrics(f);
    if (srv->metrics != NULL)
        srv->metrics(srv->metrics_arg, f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* ------------------------------------------------------------------ connections */

static uint64_t elapsed_us(int64_t t0_us)
{
    int64_t us = kq_time_mono_us() - t0_us;
    return us < 0 ? 0 : (uint64_t)us;
}

static void copy_printable(char *out, size_t outlen, const char *s)
{
    size_t i = 0;
    for (; s && *s && i + 1 < outlen; s++)
        out[i++] = ((unsigned char)*s < 0x20 || *s == 0x7f || *s == '"') ? '?' : *s;
    out[i] = '\0';
}

/* A connection has a deadline at dl: make sure its loop scans by then. */
static void lp_deadline(loop *lp, int64_t dl)
{
    if (dl < lp->next_scan)
        lp->next_scan = dl;
}

static void set_interest(conn *c, unsigned ev);

/* Wait for request bytes (and, when TLS has to write first, for room to write). */
static void want_input(conn *c)
{
    set_interest(c, EPOLLIN | (c->tls_rw ? EPOLLOUT : 0u));
}

static void set_interest(conn *c, unsigned ev)
{
    struct epoll_event e;

    if (c->fd < 0 || c->events == ev)
        return;
    memset(&e, 0, sizeof e);
    e.events = ev;
    e.data.ptr = c;
    if (epoll_ctl(c->lp->ep, EPOLL_CTL_MOD, c->fd, &e) == 0)
        c->events = ev;
}

/* Give back the connection's slot in its listener's budget and in the per-IP table. */
static void release_slots(conn *c)
{
    kq_http_server *srv = c->lp->srv;

    if (c->counted) {
        atomic_fetch_sub(&c->ls->nconns, 1);
        c->counted = 0;
    }
    if (c->ipkeylen > 0) {
        unsigned *n;
        pthread_mutex_lock(&srv->ipmu);
        n = kq_map_getb(srv->per_ip, c->ipkey, c->ipkeylen);
        if (n != NULL && --*n == 0)
            kq_map_removeb(srv->per_ip, c->ipkey, c->ipkeylen);
        pthread_mutex_unlock(&srv->ipmu);
        c->ipkeylen = 0;
    }
}

static void list_remove(conn *c)
{
    loop *lp = c->lp;
    if (c->prev)
        c->prev->next = c->next;
    else if (lp->conns == c)
        lp->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    lp->nconns--;
}

static void req_free(kq_http_req *req)
{
    if (req == NULL)
        return;
    for (size_t i = 0; i < req->nheaders; i++) {
        free(req->hname[i]);
        free(req->hval[i]);
    }
    free(req->rbody);
    free(req->body);
    free(req->hbuf);
    free(req->pathsegs);
    free(req);
}

/* The built-in probe and scrape routes (/health, /ready, /metrics): logged at DEBUG. */
static int is_probe(const route_rt *rt)
{
    return rt->r.handler == h_health || rt->r.handler == h_ready || rt->r.handler == h_metrics;
}

/* Export the request's server span (tracing on): route, status, aggregate id. */
static void end_span(kq_http_req *req, unsigned status)
{
    kq_span *sp = &req->span;
    const char *route = req->route->r.name ? req->route->r.name : "unmatched";
    const char *id = req->aggid[0] ? req->aggid : kq_http_req_param(req, "id");

    snprintf(sp->name, sizeof sp->name, "%s %s", req->h.method, route);
    kq_span_attr_str(sp, "http.request.method", req->h.method);
    kq_span_attr_str(sp, "http.route", route);
    kq_span_attr_str(sp, "url.path", req->h.path);
    kq_span_attr_int(sp, "http.response.status_code", status);
    kq_span_attr_str(sp, "http.request.id", req->reqid);
    kq_span_attr_str(sp, "client.address", req->client);
    if (id != NULL && id[0] != '\0')
        kq_span_attr_str(sp, "kcqrs.aggregate_id", id);
    if (req->actor != NULL)
        kq_span_attr_str(sp, "kcqrs.actor", req->actor);
    sp->error = status == 0 || status >= 500;
    kq_span_end(sp);
}

/* Count and log a request that ended (answered, or its connection died: status 0). */
static void req_complete(loop *lp, kq_http_req *req, int sent, const char *note)
{
    kq_http_server *srv = req->srv;
    route_rt *rt = req->route;
    uint64_t us = elapsed_us(req->t0_us);
    unsigned status = sent ? req->status : 0;
    unsigned every = srv->limits.access_log_every;
    kq_log_level level;
    size_t b;

    atomic_fetch_add_explicit(&rt->status[status < NSTATUS ? status : 0], 1, memory_order_relaxed);
    for (b = 0; b < NBUCKETS; b++)
        if ((double)us / 1e6 <= buckets[b])
            break;
    atomic_fetch_add_explicit(&rt->hist[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rt->sum_us, us, memory_order_relaxed);
    atomic_fetch_sub(&srv->in_flight, 1);
    if (kq_trace_exporting() && !is_probe(rt))
        end_span(req, status);
    level = is_probe(rt) ? KQ_LOG_DEBUG : KQ_LOG_INFO;
    if (kq_log_enabled(level) && (status >= 400 || status < 100 || every == 1 ||
                                  (every > 1 && ++lp->nsuccess % every == 0))) {
        char path[256], trace[33], agg[KQ_HTTP_AGGID_MAX + 1];
        const char *id = req->aggid[0] ? req->aggid : kq_http_req_param(req, "id");
        kq_log_field f[] = {
            {"request_id", req->reqid, 0},
            {"method", req->h.method, 0},
            {"route", rt->r.name ? rt->r.name : "-", 0},
            {"path", path, 0},
            {"status", NULL, status},
            {"duration_ms", NULL, (double)us / 1000.0},
            {"actor", req->actor ? req->actor : "-", 0},
            {"client", req->client, 0},
            {"aggregate_id", agg, 0},
            {"trace_id", trace, 0},
        };
        copy_printable(path, sizeof path, req->h.path);
        copy_printable(agg, sizeof agg, id ? id : "");
        if (agg[0] == '\0')
            f[8].key = NULL;
        if (kq_trace_valid(&req->span.ctx)) /* the client's trace, or the one we started */
            kq_hex_encode(req->span.ctx.trace_id, 16, trace);
        else
            f[9].key = NULL;
        kq_log_fields(level, f, sizeof f / sizeof f[0],
                      "http %s %s %u %.3fms actor=%s client=%s rid=%s%s", req->h.method, path,
                      status, (double)us / 1000.0, req->actor ? req->actor : "-", req->client,
                      req->reqid, note ? note : "");
    }
}

/* Count and log an answer the server gave without a request (parser, deadline, refusal). */
static void conn_level_complete(conn *c, unsigned status, const char *why)
{
    kq_http_server *srv = c->lp->srv;
    route_rt *rt = &srv->routes[srv->nroutes];

    atomic_fetch_add_explicit(&rt->status[status < NSTATUS ? status : 0], 1, memory_order_relaxed);
    if (kq_log_enabled(KQ_LOG_INFO))
        kq_log_info("http - - %u 0.000ms actor=- client=%s (%s)", status, c->client, why);
}

/*
 * Socket I/O, plain or through the connection's TLS session: like recv/send (> 0 bytes,
 * 0 at the end of the stream, -1 with errno; EAGAIN also when TLS waits for the other
 * direction: tls_rw for reads; a write that needs a read polls EPOLLIN itself).
 */
static ssize_t io_recv(conn *c, void *buf, size_t n)
{
    size_t got = 0;
    int r, e;

    if (c->ssl == NULL)
        return recv(c->fd, buf, n, 0);
    ERR_clear_error();
    errno = 0;
    if ((r = SSL_read_ex(c->ssl, buf, n, &got)) == 1)
        return (ssize_t)got;
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        c->tls_rw = 1;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        e = errno;
        if (e == 0)
            return 0;
        errno = e;
        return -1;
    default:
        errno = EPROTO;
        return -1;
    }
}

static ssize_t io_send(conn *c, const void *buf, size_t n)
{
    size_t put = 0;
    int r;

    if (c->ssl == NULL)
        return send(c->fd, buf, n, MSG_NOSIGNAL);
    ERR_clear_error();
    errno = 0;
    if ((r = SSL_write_ex(c->ssl, buf, n, &put)) == 1)
        return (ssize_t)put;
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_READ: /* the handshake is not done: wait for the client's bytes */
        errno = EINPROGRESS;
        return -1;
    default:
        if (errno == 0)
            errno = EPIPE;
        return -1;
    }
}

static void conn_grave(conn *c);
static void stream_detach(conn *c, const char *note);

static void conn_free(conn *c)
{
    SSL_free(c->ssl);
    free(c->rbuf);
    free(c->wbuf);
    free(c);
}

/* Close now (no answer owed, or the socket failed) and free. Not for a deferred request. */
static void conn_close(conn *c)
{
    if (c->stream != NULL)
        stream_detach(c, " (stream closed)");
    if (c->req != NULL) {
        req_complete(c->lp, c->req, 0, " (connection ended early)");
        req_free(c->req);
        c->req = NULL;
    }
    release_slots(c);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    list_remove(c);
    conn_grave(c);
}

/* The socket died while the request is deferred: keep c until the answer comes. */
static void conn_kill_waiting(conn *c)
{
    release_slots(c);
    close(c->fd);
    c->fd = -1;
    c->dead = 1;
    list_remove(c);
}

/* Answered and closing: shut our side, drop what the client still sends for a moment. */
static void conn_linger(conn *c)
{
    release_slots(c);
    free(c->rbuf);
    c->rbuf = NULL;
    c->rlen = c->rcap = 0;
    if (c->ssl != NULL && SSL_is_init_finished(c->ssl)) {
        ERR_clear_error();
        SSL_shutdown(c->ssl); /* close_notify, best effort */
    }
    shutdown(c->fd, SHUT_WR);
    c->state = C_LINGER;
    c->linger_until = kq_time_mono_ms() + LINGER_MS;
    lp_deadline(c->lp, c->linger_until);
    set_interest(c, EPOLLIN);
}

static void refresh_date(loop *lp)
{
    time_t now = time(NULL);
    struct tm tm;

    if (now == lp->date_s)
        return;
    lp->date_s = now;
    gmtime_r(&now, &tm);
    strftime(lp->date, sizeof lp->date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
}

/*
 * Serialize an answer into c->wbuf. `req` (may be NULL) supplies the handler's headers, the
 * method (HEAD: no body) and the version/keep-alive; `extra` (may be NULL) is more header
 * lines, CRLF-terminated; c->close_after decides Connection.
 */
static int build_answer(conn *c, const kq_http_req *req, unsigned status, const char *ctype,
                        const char *body, size_t blen, const char *extra)
{
    size_t cap = 256 + blen + (extra ? strlen(extra) : 0), n = 0;
    int with_body = status != 204 && status != 304 && status >= 200;
    char *w;

    if (req != NULL) {
        if (!req->h.keep_alive)
            c->close_after = 1;
        if (strcmp(req->h.method, "HEAD") == 0)
            with_body = 0;
        for (size_t i = 0; i < req->nheaders; i++)
            cap += strlen(req->hname[i]) + strlen(req->hval[i]) + 4;
    }
    cap += sizeof "X-Request-Id: \r\n" + KQ_HTTP_REQID_MAX;
    if (atomic_load(&c->lp->srv->stopping))
        c->close_after = 1;
    refresh_date(c->lp);
    cap += strlen(c->lp->date) + (ctype ? strlen(ctype) : 0);
    if ((w = malloc(cap)) == NULL)
        return KQ_ENOMEM;
    n += (size_t)snprintf(w + n, cap - n, "HTTP/1.1 %u %s\r\n%s", status, reason_phrase(status),
                          c->lp->date);
    if (ctype != NULL && ctype[0] != '\0')
        n += (size_t)snprintf(w + n, cap - n, "Content-Type: %s\r\n", ctype);
    if (status != 204 && status >= 200 && (req == NULL || req->stream == NULL))
        n += (size_t)snprintf(w + n, cap - n, "Content-Length: %zu\r\n", blen);
    if (c->close_after)
        n += (size_t)snprintf(w + n, cap - n, "Connection: close\r\n");
    else if (req != NULL && req->h.minor == 0)
        n += (size_t)snprintf(w + n, cap - n, "Connection: keep-alive\r\n");
    if (req != NULL) {
        n += (size_t)snprintf(w + n, cap - n, "X-Request-Id: %s\r\n", req->reqid);
        for (size_t i = 0; i < req->nheaders; i++)
            n += (size_t)snprintf(w + n, cap - n, "%s: %s\r\n", req->hname[i], req->hval[i]);
    } else {
        char rid[KQ_HTTP_REQID_MAX + 1];
        request_id_new(rid); /* an answer without a request (parser, deadline, refusal) */
        n += (size_t)snprintf(w + n, cap - n, "X-Request-Id: %s\r\n", rid);
    }
    if (extra != NULL)
        n += (size_t)snprintf(w + n, cap - n, "%s", extra);
    memcpy(w + n, "\r\n", 2);
    n += 2;
    if (with_body && blen > 0) {
        memcpy(w + n, body, blen);
        n += blen;
    }
    free(c->wbuf);
    c->wbuf = w;
    c->wlen = n;
    c->woff = 0;
    return 0;
}

/* Write what is pending. 1: all written; 0: the socket is full (EPOLLOUT set); -1: failed. */
static int flush_out(conn *c)
{
    while (c->woff < c->wlen) {
        ssize_t k = io_send(c, c->wbuf + c->woff, c->wlen - c->woff);
        if (k > 0) {
            c->woff += (size_t)k;
            c->t_active = kq_time_mono_ms();
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS)) {
            c->state = C_WRITE;
            if (c->lp->srv->limits.timeout_s > 0)
                lp_deadline(c->lp, c->t_active + (int64_t)c->lp->srv->limits.timeout_s * 1000);
            set_interest(c, errno == EINPROGRESS ? EPOLLIN : EPOLLOUT);
            return 0;
        }
        return -1;
    }
    free(c->wbuf);
    c->wbuf = NULL;
    c->wlen = c->woff = 0;
    return 1;
}

/*
 * An error the server answers itself, before or without a request (parser, header
 * deadline, eviction, refusal): the JSON error body, Connection: close, then linger.
 * 0; -1 when the write failed and c was closed.
 */
static int conn_error(conn *c, unsigned status, const char *message)
{
    size_t len = 0;
    char *body = error_body(status, status_code_name(status), message, NULL, NULL, &len);
    int rc;

    c->close_after = 1;
    conn_level_complete(c, status, message);
    release_slots(c); /* finishing: no longer counted against the budget or the IP */
    if (c->ssl != NULL && !SSL_is_init_finished(c->ssl) && (status == 408 || c->eof)) {
        free(body); /* no handshake, no way to answer */
        conn_close(c);
        return -1;
    }
    c->linger_until = kq_time_mono_ms() + LINGER_MS; /* bound on writing this answer */
    if (body == NULL ||
        build_answer(c, NULL, status, KQ_PROBLEM_CTYPE, body, len,
                     status == 503 ? "Retry-After: " RETRY_AFTER "\r\n" : NULL) != 0) {
        free(body);
        conn_close(c);
        return -1;
    }
    free(body);
    rc = flush_out(c);
    if (rc < 0) {
        conn_close(c);
        return -1;
    }
    if (rc == 1)
        conn_linger(c);
    return 0; /* rc 0: C_WRITE; the end of the write lingers (close_after) */
}

/* ------------------------------------------------------------------ CORS */

enum { CORS_NONE = 0, CORS_DENIED, CORS_ALLOWED };

/* A request with an Origin header from a browser: CORS_ALLOWED (and the
 * answer's Access-Control-* headers added) when KCQRS_CORS_ORIGINS names the
 * origin or is "*", CORS_DENIED when it does not, CORS_NONE when CORS is off
 * or the request names no origin. */
static int cors_apply(kq_http_req *req)
{
    const kq_http_server *srv = req->srv;
    const char *origin = kq_http_req_header(req, "Origin");
    int ok = srv->cors_any;

    if (origin == NULL || (srv->ncors == 0 && !srv->cors_any))
        return CORS_NONE;
    for (size_t i = 0; !ok && i < srv->ncors; i++)
        ok = strcasecmp(srv->cors[i], origin) == 0;
    if (!ok)
        return CORS_DENIED;
    kq_http_add_header(req, "Access-Control-Allow-Origin", srv->cors_any ? "*" : origin);
    if (!srv->cors_any)
        kq_http_add_header(req, "Vary", "Origin");
    kq_http_add_header(req, "Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS);
    return CORS_ALLOWED;
}

/*
 * Append `method` to the comma-separated list `allow` (of an Allow header) unless it is
 * there or does not fit; a GET brings HEAD along (every GET route answers HEAD too).
 * Returns the new length.
 */
static size_t allow_add(char *allow, size_t cap, size_t alen, const char *method)
{
    if (strstr(allow, method) != NULL || alen + strlen(method) + 3 >= cap)
        return alen;
    alen += (size_t)snprintf(allow + alen, cap - alen, "%s%s", alen ? ", " : "", method);
    return strcmp(method, "GET") == 0 ? allow_add(allow, cap, alen, "HEAD") : alen;
}

/* OPTIONS with Access-Control-Request-Method: the methods of the path, the
 * headers a client may send, for how long a browser may cache the answer. */
static void preflight(kq_http_req *req, int cors)
{
    const kq_http_server *srv = req->srv;
    char allow[128] = "";
    size_t alen = 0;

    for (size_t i = 0; i < srv->nroutes; i++) {
        const route_rt *rt = &srv->routes[i];
        if (route_match(rt, req->h.path, NULL))
            alen = allow_add(allow, sizeof allow, alen, rt->r.method);
    }
    if (alen == 0) {
        kq_http_respond_error(req, 404, "not_found", "no such route", NULL);
        return;
    }
    if (cors == CORS_DENIED) {
        kq_http_respond_error(req, 403, "cors_origin_denied",
                              "this origin is not allowed (KCQRS_CORS_ORIGINS)", NULL);
        return;
    }
    kq_http_add_header(req, "Access-Control-Allow-Methods", allow);
    kq_http_add_header(req, "Access-Control-Allow-Headers", CORS_ALLOW_HEADERS);
    kq_http_add_header(req, "Access-Control-Max-Age", CORS_MAX_AGE);
    kq_http_respond_text(req, 204, NULL, NULL, 0);
}

/* KCQRS_CORS_ORIGINS: "*" or comma-separated origins, each
 * scheme://host[:port] with scheme http or https and nothing after. */
static int parse_cors(kq_http_server *srv, const char *list, char *errstr, size_t errlen)
{
    const char *p = list;

    while (*p != '\0') {
        char item[CORS_ORIGIN_MAX];
        const char *h;
        size_t n;
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        n = strcspn(p, ", ");
        if (n >= sizeof item || srv->ncors == MAX_CORS)
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "CORS origins: an origin is too long or there are more than %d",
                             MAX_CORS);
        memcpy(item, p, n);
        item[n] = '\0';
        p += n;
        if (strcmp(item, "*") == 0) {
            srv->cors_any = 1;
            continue;
        }
        if (strncasecmp(item, "http://", 7) == 0)
            h = item + 7;
        else if (strncasecmp(item, "https://", 8) == 0)
            h = item + 8;
        else
            h = NULL;
        if (h != NULL && *h == '[') { /* [v6] */
            h += 1 + strspn(h + 1, "0123456789abcdefABCDEF:.");
            h = *h == ']' ? h + 1 : NULL;
        } else if (h != NULL) {
            size_t hl =
                strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-");
            h = hl > 0 ? h + hl : NULL;
        }
        if (h != NULL && *h == ':') {
            size_t pl = strspn(h + 1, "0123456789");
            h = pl > 0 && pl <= 5 ? h + 1 + pl : NULL;
        }
        if (h == NULL || *h != '\0')
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "CORS origins: '%s' is not an origin (scheme://host[:port], "
                             "http or https, no path) or '*'",
                             item);
        memcpy(srv->cors[srv->ncors++], item, n + 1);
    }
    return 0;
}

/* ------------------------------------------------------------------ the request flow */

/* Match, authenticate, check the content type and the declared length. May answer. */
static void prepare(kq_http_req *req)
{
    kq_http_server *srv = req->srv;
    const char *path = req->h.path, *hdr;
    char allow[128] = "";
    size_t alen = 0;
    int cors = cors_apply(req);

    if (cors != CORS_NONE && strcmp(req->h.method, "OPTIONS") == 0 &&
        kq_http_req_header(req, "Access-Control-Request-Method") != NULL) {
        preflight(req, cors);
        return;
    }
    for (size_t i = 0; i < srv->nroutes; i++) {
        route_rt *rt = &srv->routes[i];
        if (!route_match(rt, path, NULL))
            continue;
        if (strcmp(rt->r.method, req->h.method) == 0 ||
            (strcmp(req->h.method, "HEAD") == 0 && strcmp(rt->r.method, "GET") == 0)) {
            req->route = rt; /* HEAD runs the GET handler; build_answer drops the body */
            req->matched = 1;
            route_match(rt, path, req);
            break;
        }
        alen = allow_add(allow, sizeof allow, alen, rt->r.method);
    }
    if (!req->matched) {
        if (alen > 0) {
            kq_http_add_header(req, "Allow", allow);
            kq_http_respond_error(req, 405, "method_not_allowed", "method not allowed on this path",
                                  NULL);
        } else {
            kq_http_respond_error(req, 404, "not_found", "no such route", NULL);
        }
        return;
    }
    req->cap =
        req->route->r.role == KQ_HTTP_PUBLIC ? srv->limits.max_body_public : srv->limits.max_body;
    if (req->route->r.role != KQ_HTTP_PUBLIC) {
        const char *tok;
        hdr = kq_http_req_header(req, "Authorization");
        if (hdr == NULL || strncasecmp(hdr, "Bearer ", 7) != 0) {
            kq_http_add_header(req, "WWW-Authenticate", "Bearer");
            kq_http_respond_error(req, 401, "unauthorized",
                                  "an API key is required: Authorization: Bearer <key>", NULL);
            return;
        }
        for (tok = hdr + 7; *tok == ' '; tok++)
            ;
        if (kq_auth_lookup(srv->keys, tok, strlen(tok), &req->actor, &req->roles) != 0) {
            req->actor = NULL;
            kq_http_add_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
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
        if (srv->key_limit != NULL) {
            int retry = 1;
            if (!kq_limit_take(srv->key_limit, req->actor, kq_limit_now_ms(), &retry)) {
                char v[16];
                atomic_fetch_add(&srv->rate_limited, 1);
                snprintf(v, sizeof v, "%d", retry);
                kq_http_add_header(req, "Retry-After", v);
                kq_http_respond_error(req, 429, "rate_limited",
                                      "this API key is over its request rate; retry later", NULL);
                return;
            }
        }
    }
    if (req->route->r.body == KQ_HTTP_BODY_JSON &&
        !kq_jin_content_type_ok(kq_http_req_header(req, "Content-Type"))) {
        kq_http_respond_error(req, 415, "unsupported_media_type",
                              "Content-Type must be application/json", NULL);
        return;
    }
    if (req->h.framing == KQ_HP_BODY_LENGTH && req->h.content_length > req->cap) {
        char msg[128];
        atomic_fetch_add(&srv->too_large, 1);
        snprintf(msg, sizeof msg, "request body is over the limit of %zu bytes", req->cap);
        kq_http_respond_error(req, 413, "payload_too_large", msg, NULL);
    }
}

/* The head h (hl bytes at the start of c->rbuf) is complete: c->req takes the bytes. */
static int start_request(conn *c, const kq_hp_head *h, size_t hl)
{
    kq_http_server *srv = c->lp->srv;
    kq_http_req *req = calloc(1, sizeof *req);
    size_t left = c->rlen - hl;

    if (req == NULL || (req->pathsegs = strdup(h->path)) == NULL) {
        free(req);
        return KQ_ENOMEM;
    }
    if (left > 0) {
        size_t cap = left < RBUF_MIN ? RBUF_MIN : left;
        char *nb = malloc(cap);
        if (nb == NULL) {
            free(req->pathsegs);
            free(req);
            return KQ_ENOMEM;
        }
        memcpy(nb, c->rbuf + hl, left);
        req->hbuf = c->rbuf;
        c->rbuf = nb;
        c->rcap = cap;
    } else {
        req->hbuf = c->rbuf;
        c->rbuf = NULL;
        c->rcap = 0;
    }
    c->rlen = left;
    c->scan = 0;
    memcpy(&req->h, h, sizeof *h);
    for (char *p = req->pathsegs; *p; p++)
        if (*p == '/')
            *p = '\0';
    req->srv = srv;
    req->c = c;
    req->route = &srv->routes[srv->nroutes];
    req->t0_us = kq_time_mono_us();
    {
        kq_trace_ctx in;
        int has_in = kq_trace_parse(kq_http_req_header(req, KQ_TRACE_HEADER), &in) == 0;
        (void)kq_span_start(&req->span, has_in ? &in : NULL, KQ_SPAN_SERVER, "");
    }
    {
        const char *rid = kq_http_req_header(req, "X-Request-Id");
        if (kq_http_request_id_ok(rid))
            memcpy(req->reqid, rid, strlen(rid) + 1);
        else
            request_id_new(req->reqid);
    }
    memcpy(req->client, c->client, sizeof req->client);
    if (c->trusted)
        xff_client(req, req->client, sizeof req->client);
    atomic_fetch_add(&srv->in_flight, 1);
    c->req = req;
    return 0;
}

/* After an answer is fully written: count it, then close or go on with the next request.
 * 1: drive on; 0: stop (c lingers). */
static int answer_done(conn *c)
{
    if (c->req != NULL) {
        req_complete(c->lp, c->req, 1, NULL);
        req_free(c->req);
        c->req = NULL;
    }
    if (c->close_after) {
        conn_linger(c);
        return 0;
    }
    c->t_wait = kq_time_mono_ms();
    if (c->rlen > 0) {
        c->state = C_HEAD;
        if (c->lp->srv->limits.header_timeout_ms > 0)
            lp_deadline(c->lp, c->t_wait + c->lp->srv->limits.header_timeout_ms);
    } else {
        c->state = C_IDLE;
        if (c->lp->srv->limits.timeout_s > 0)
            lp_deadline(c->lp, c->t_wait + (int64_t)c->lp->srv->limits.timeout_s * 1000);
        free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
    }
    set_interest(c, EPOLLIN);
    return 1;
}

/* Write c->req's answer. 1: done, drive on; 0: wait (socket full, or lingering); -1: c is gone. */
static int send_req_answer(conn *c)
{
    kq_http_req *req = c->req;
    int rc;

    if (build_answer(c, req, req->status, req->ctype[0] ? req->ctype : NULL, req->rbody,
                     req->rbody_len, NULL) != 0) {
        conn_close(c);
        return -1;
    }
    free(req->rbody); /* now in c->wbuf */
    req->rbody = NULL;
    if ((rc = flush_out(c)) < 0) {
        conn_close(c);
        return -1;
    }
    if (rc == 0)
        return 0;
    return answer_done(c);
}

/* Answer c->req with an error the server decides (body phase) and close after it. */
static int req_error(conn *c, unsigned status, const char *message)
{
    kq_http_server *srv = c->lp->srv;
    char msg[160];

    c->close_after = 1;
    if (status == 413) {
        atomic_fetch_add(&srv->too_large, 1);
        snprintf(msg, sizeof msg, "request body is over the limit of %zu bytes", c->req->cap);
        message = msg;
    }
    if (status == 408)
        atomic_fetch_add(&srv->timeouts, 1);
    if (kq_http_respond_error(c->req, status, status_code_name(status), message, NULL) != 0) {
        conn_close(c);
        return -1;
    }
    return send_req_answer(c);
}

static int stream_start(conn *c);

/* Run the handler. 1: answered and written, drive on; 0: wait; -1: c is gone. */
static int run_handler(conn *c)
{
    kq_http_req *req = c->req;

    c->state = C_HANDLER;
    req->route->r.handler(req, req->route->r.arg);
    if (req->stream != NULL)
        return stream_start(c);
    if (req->deferred) {
        /* req belongs to whoever answers; it comes back through the loop's queue */
        c->state = C_WAIT;
        set_interest(c, 0);
        return 0;
    }
    if (!atomic_load(&req->responded)) {
        kq_log_error("http: handler '%s' gave no response", req->route->r.name);
        kq_http_respond_error(req, 500, "internal", "internal error", NULL);
    }
    return send_req_answer(c);
}

/* Feed buffered bytes to the body decoder. 1: body complete; 0: need more; -status. */
static int body_step(conn *c, char *err, size_t errlen)
{
    kq_http_req *req = c->req;
    size_t used = 0, outlen = req->body_len;
    int rc;

    if (req->body_len == req->body_cap && req->body_cap < req->cap) {
        size_t ncap = req->body_cap ? req->body_cap * 2 : 4096;
        char *nb;
        if (ncap > req->cap)
            ncap = req->cap;
        if ((nb = realloc(req->body, ncap)) == NULL)
            return -503;
        req->body = nb;
        req->body_cap = ncap;
    }
    rc = kq_hp_body_feed(&c->body, c->rbuf, c->rlen, &used, req->body, req->body_cap, &outlen, err,
                         errlen);
    req->body_len = outlen;
    c->body_wire += used;
    if (used > 0) {
        memmove(c->rbuf, c->rbuf + used, c->rlen - used);
        c->rlen -= used;
    } else if (rc == 0 && c->rlen > 0) {
        if (req->body_len == req->body_cap && req->body_cap >= req->cap)
            return -413; /* no room left and more payload waiting */
        if (req->body_len < req->body_cap) {
            snprintf(err, errlen, "the body decoder took no bytes");
            return -400; /* never expected: refuse rather than spin */
        }
    }
    return rc;
}

/*
 * Run c's state machine on what is buffered until it must wait for the socket.
 * 0: waiting; -1: c was closed (do not touch it).
 */
static int conn_drive(conn *c)
{
    kq_http_server *srv = c->lp->srv;
    char err[256];
    int rc;

    for (;;) {
        switch (c->state) {
        case C_IDLE:
        case C_HEAD: {
            kq_hp_head h;
            kq_http_req *req;
            if (c->rlen == 0) {
                if (c->eof) {
                    conn_close(c);
                    return -1;
                }
                want_input(c);
                return 0;
            }
            if (c->state == C_IDLE) {
                c->state = C_HEAD;
                c->t_wait = kq_time_mono_ms();
                if (srv->limits.header_timeout_ms > 0)
                    lp_deadline(c->lp, c->t_wait + srv->limits.header_timeout_ms);
            }
            err[0] = '\0';
            rc = kq_hp_head_parse(c->rbuf, c->rlen, &srv->hp, &h, &c->scan, err, sizeof err);
            if (rc == 0) {
                if (c->eof)
                    return conn_error(c, 400,
                                      "the connection ended before the request head "
                                      "was complete");
                if (c->rlen >= srv->limits.conn_memory)
                    return conn_error(c, 431, "request head too large");
                want_input(c);
                return 0;
            }
            if (rc < 0)
                return conn_error(c, (unsigned)-rc, err[0] ? err : "malformed request");
            if (start_request(c, &h, (size_t)rc) != 0)
                return conn_error(c, 503, "out of memory");
            req = c->req;
            prepare(req);
            if (atomic_load(&req->responded)) {
                if (req->h.framing != KQ_HP_BODY_NONE)
                    c->close_after = 1; /* the body was not read */
                if ((rc = send_req_answer(c)) <= 0)
                    return rc;
                continue;
            }
            if (req->h.framing == KQ_HP_BODY_NONE ||
                (req->h.framing == KQ_HP_BODY_LENGTH && req->h.content_length == 0)) {
                c->state = C_HANDLER;
                continue;
            }
            rc = kq_hp_body_init(&c->body, &req->h, &srv->hp, req->cap, 2 * req->cap + 16384, err,
                                 sizeof err);
            if (rc < 0)
                return req_error(c, (unsigned)-rc, "request body refused") < 0 ? -1 : 0;
            if (req->h.framing == KQ_HP_BODY_LENGTH) {
                if ((req->body = malloc((size_t)req->h.content_length)) == NULL)
                    return req_error(c, 503, "out of memory") < 0 ? -1 : 0;
                req->body_cap = (size_t)req->h.content_length;
            }
            if (req->h.expect_continue && req->h.minor >= 1 && c->rlen == 0) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                if (io_send(c, cont, sizeof cont - 1) != (ssize_t)(sizeof cont - 1)) {
                    conn_close(c);
                    return -1;
                }
            }
            c->state = C_BODY;
            c->t_body = kq_time_mono_ms();
            c->body_wire = 0;
            if (srv->limits.min_body_rate > 0)
                lp_deadline(c->lp, c->t_body + BODY_GRACE_MS);
            continue;
        }
        case C_BODY:
            if (c->rlen == 0) {
                if (c->eof)
                    return req_error(c, 400, "the connection ended before the body was complete") <
                                   0
                               ? -1
                               : 0;
                want_input(c);
                return 0;
            }
            err[0] = '\0';
            rc = body_step(c, err, sizeof err);
            if (rc < 0) {
                rc = req_error(c, (unsigned)-rc, err[0] ? err : "malformed body");
                if (rc <= 0)
                    return rc;
                continue;
            }
            if (rc == 1)
                c->state = C_HANDLER;
            continue;
        case C_HANDLER:
            if ((rc = run_handler(c)) <= 0)
                return rc;
            continue;
        case C_WAIT:
        case C_WRITE:
        case C_LINGER:
        case C_STREAM:
            return 0;
        }
    }
}

/* Read what the socket has into c->rbuf (allocated on the first byte). 0, or -1 on error. */
static int conn_read(conn *c)
{
    size_t max = c->lp->srv->limits.conn_memory;

    for (;;) {
        ssize_t k;
        if (c->rbuf == NULL) {
            c->rcap = RBUF_MIN < max ? RBUF_MIN : max;
            if ((c->rbuf = malloc(c->rcap)) == NULL)
                return -1;
            c->rlen = 0;
        }
        if (c->rlen == c->rcap) {
            size_t ncap = c->rcap * 2 < max ? c->rcap * 2 : max;
            char *nb;
            if (c->rcap >= max)
                return 0;
            if ((nb = realloc(c->rbuf, ncap)) == NULL)
                return -1;
            c->rbuf = nb;
            c->rcap = ncap;
        }
        k = io_recv(c, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (k > 0) {
            size_t space = c->rcap - c->rlen;
            c->rlen += (size_t)k;
            if ((size_t)k < space && c->ssl == NULL) /* TLS: one record per read, read on */
                return 0;
            continue;
        }
        if (k == 0) {
            c->eof = 1;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -1;
    }
}

static void conn_drain_linger(conn *c)
{
    char tmp[16384];

    for (;;) {
        ssize_t k = recv(c->fd, tmp, sizeof tmp, 0);
        if (k > 0) {
            c->lingered += (size_t)k;
            if (c->lingered > LINGER_MAX_BYTES)
                break;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        break;
    }
    conn_close(c);
}

/*
 * Drive c on what is buffered, reading first when `read_first`. TLS may hold decrypted
 * bytes the socket no longer signals (the read buffer was full): while c waits for input
 * and TLS has such bytes, read and drive again.
 */
static void conn_run(conn *c, int read_first)
{
    for (;;) {
        if (read_first) {
            c->tls_rw = 0;
            if (conn_read(c) != 0) {
                conn_close(c);
                return;
            }
        }
        if (conn_drive(c) < 0)
            return;
        if (c->ssl == NULL || SSL_pending(c->ssl) == 0 ||
            !(c->state == C_HEAD || c->state == C_IDLE || c->state == C_BODY))
            return;
        read_first = 1;
    }
}

static void stream_event(conn *c, unsigned ev);

static void on_conn_event(conn *c, unsigned ev)
{
    if (c->closed || c->dead)
        return;
    switch (c->state) {
    case C_LINGER:
        conn_drain_linger(c);
        return;
    case C_WAIT:
        if (ev & (EPOLLHUP | EPOLLERR))
            conn_kill_waiting(c);
        return;
    case C_WRITE: {
        int rc = flush_out(c);
        if (rc < 0)
            conn_close(c);
        else if (rc == 1 && answer_done(c) > 0)
            conn_run(c, 0);
        return;
    }
    case C_HANDLER:
        return;
    case C_STREAM:
        stream_event(c, ev);
        return;
    default:
        conn_run(c, 1);
    }
}

/* ------------------------------------------------------------------ streaming answers */

static void stream_release(kq_http_stream *s)
{
    int last;

    pthread_mutex_lock(&s->mu);
    last = --s->refs == 0;
    pthread_mutex_unlock(&s->mu);
    if (!last)
        return;
    pthread_mutex_destroy(&s->mu);
    free(s->buf);
    free(s);
}

/* s->mu held and s not gone: make the loop write what was appended (queued once). */
static void stream_kick(kq_http_stream *s)
{
    loop *lp = s->lp;

    if (s->queued)
        return;
    s->queued = 1;
    s->refs++;
    s->qnext = NULL;
    pthread_mutex_lock(&lp->mu);
    if (lp->sq_tail)
        lp->sq_tail->qnext = s;
    else
        lp->sq_head = s;
    lp->sq_tail = s;
    pthread_mutex_unlock(&lp->mu);
    loop_wake(lp);
}

int kq_http_stream_begin(kq_http_req *req, unsigned status, const char *content_type,
                         size_t max_buffer, kq_http_stream **out)
{
    kq_http_stream *s;

    *out = NULL;
    if (req->deferred || req->stream != NULL || atomic_load(&req->responded) || req->c == NULL)
        return KQ_EINVAL;
    if ((s = calloc(1, sizeof *s)) == NULL)
        return KQ_ENOMEM;
    pthread_mutex_init(&s->mu, NULL);
    s->refs = 2; /* the producer and the connection */
    s->lp = req->c->lp;
    s->c = req->c;
    s->max = max_buffer;
    if (answer_set(req, status, content_type, NULL, 0) != 0) {
        pthread_mutex_destroy(&s->mu);
        free(s);
        return KQ_EINVAL;
    }
    req->stream = s;
    *out = s;
    return 0;
}

int kq_http_stream_write(kq_http_stream *s, const void *buf, size_t len)
{
    int rc = 0;

    pthread_mutex_lock(&s->mu);
    if (s->gone || s->ended) {
        rc = KQ_EIO;
    } else if (atomic_load(&s->appended) - atomic_load(&s->sent) > 0 &&
               atomic_load(&s->appended) - atomic_load(&s->sent) + len > s->max) {
        rc = KQ_ERANGE; /* one message larger than the bound still goes, alone */
    } else if (len > 0) {
        if (s->len + len > s->cap) {
            size_t ncap = s->cap ? s->cap : 4096;
            char *nb;
            while (ncap < s->len + len)
                ncap *= 2;
            if ((nb = realloc(s->buf, ncap)) == NULL) {
                rc = KQ_ENOMEM;
                goto out;
            }
            s->buf = nb;
            s->cap = ncap;
        }
        memcpy(s->buf + s->len, buf, len);
        s->len += len;
        atomic_fetch_add(&s->appended, len);
        stream_kick(s);
    }
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

size_t kq_http_stream_pending(kq_http_stream *s)
{
    return atomic_load(&s->appended) - atomic_load(&s->sent);
}

int kq_http_stream_gone(kq_http_stream *s)
{
    int g;

    pthread_mutex_lock(&s->mu);
    g = s->gone;
    pthread_mutex_unlock(&s->mu);
    return g;
}

void kq_http_stream_end(kq_http_stream *s, const void *last, size_t len)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    if (!s->gone && !s->ended) {
        if (len > 0) {
            char *nb = realloc(s->buf, s->len + len);
            if (nb != NULL) {
                memcpy(nb + s->len, last, len);
                s->buf = nb;
                s->len += len;
                s->cap = s->len;
                atomic_fetch_add(&s->appended, len);
            }
        }
        s->ended = 1;
        stream_kick(s);
    }
    s->ended = 1;
    pthread_mutex_unlock(&s->mu);
    stream_release(s);
}

/* The connection closes: the producer learns it (gone), the request is counted. */
static void stream_detach(conn *c, const char *note)
{
    kq_http_stream *s = c->stream;

    pthread_mutex_lock(&s->mu);
    s->gone = 1;
    pthread_mutex_unlock(&s->mu);
    c->stream = NULL;
    stream_release(s);
    if (c->req != NULL) {
        req_complete(c->lp, c->req, 1, note);
        req_free(c->req);
        c->req = NULL;
    }
}

/*
 * The producer's end as the loop learns it. The client gets LINGER_MS from then (or from
 * its last read, if later) to take the rest: a client cut for reading nothing has not read
 * for a while, and its last message must not be dropped at once.
 */
static void stream_note_end(conn *c, int ended)
{
    if (ended && !c->stream_ended)
        c->linger_until = kq_time_mono_ms() + LINGER_MS;
    c->stream_ended = ended;
}

/* Write what the producer appended. 0: waiting (socket, producer); -1: c is gone. */
static int stream_pump(conn *c)
{
    kq_http_stream *s = c->stream;

    for (;;) {
        if (c->woff < c->wlen) {
            size_t before = c->wlen - c->woff;
            int rc = flush_out(c);
            if (rc < 0) {
                conn_close(c);
                return -1;
            }
            atomic_fetch_add(&s->sent, before - (rc == 1 ? 0 : c->wlen - c->woff));
            if (rc == 0) {
                c->state = C_STREAM;
                set_interest(c, EPOLLIN | EPOLLOUT);
                pthread_mutex_lock(&s->mu);
                stream_note_end(c, s->ended);
                pthread_mutex_unlock(&s->mu);
                if (c->stream_ended)
                    lp_deadline(c->lp, c->linger_until);
                return 0;
            }
        }
        pthread_mutex_lock(&s->mu);
        stream_note_end(c, s->ended);
        if (s->len > 0) {
            free(c->wbuf);
            c->wbuf = s->buf;
            c->wlen = s->len;
            c->woff = 0;
            s->buf = NULL;
            s->len = s->cap = 0;
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        c->state = C_STREAM;
        if (c->stream_ended) { /* all written: the end of the body is the close */
            stream_detach(c, NULL);
            conn_linger(c);
            return 0;
        }
        set_interest(c, EPOLLIN);
        return 0;
    }
}

/* The handler began a stream: write the head, then what was appended. 0 or -1 (gone). */
static int stream_start(conn *c)
{
    kq_http_req *req = c->req;

    c->stream = req->stream;
    c->close_after = 1;
    if (build_answer(c, req, req->status, req->ctype[0] ? req->ctype : NULL, NULL, 0, NULL) != 0) {
        conn_close(c);
        return -1;
    }
    atomic_fetch_add(&c->stream->appended, c->wlen); /* the head counts as pending too */
    c->state = C_STREAM;
    return stream_pump(c);
}

/* Socket events of a streaming connection: what the client sends is dropped; its end or
 * an error closes the stream; room to write pumps. */
static void stream_event(conn *c, unsigned ev)
{
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        char tmp[4096];
        for (;;) {
            ssize_t k = io_recv(c, tmp, sizeof tmp);
            if (k > 0)
                continue;
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            conn_close(c);
            return;
        }
    }
    if (ev & EPOLLOUT)
        stream_pump(c);
}

/* Streams with appended bytes: pump them (pump = 0: only drop the queue's references). */
static void stream_queue_run(loop *lp, int pump)
{
    kq_http_stream *s, *next;

    pthread_mutex_lock(&lp->mu);
    s = lp->sq_head;
    lp->sq_head = lp->sq_tail = NULL;
    pthread_mutex_unlock(&lp->mu);
    for (; s != NULL; s = next) {
        int gone;
        next = s->qnext;
        pthread_mutex_lock(&s->mu);
        s->queued = 0;
        gone = s->gone;
        pthread_mutex_unlock(&s->mu);
        if (pump && !gone && s->c->state == C_STREAM && s->c->stream == s)
            stream_pump(s->c);
        stream_release(s);
    }
}

/* ------------------------------------------------------------------ loops */

static void conn_grave(conn *c)
{
    c->closed = 1;
    c->next = c->lp->grave;
    c->lp->grave = c;
}

static void grave_free(loop *lp)
{
    while (lp->grave != NULL) {
        conn *c = lp->grave;
        lp->grave = c->next;
        conn_free(c);
    }
}

static void stream_queue_run(loop *lp, int pump);

/* Answers from other threads: write them. */
static void process_queue(loop *lp)
{
    kq_http_req *req, *next;
    uint64_t cnt;

    if (read(lp->evfd, &cnt, sizeof cnt) < 0 && errno != EAGAIN)
        kq_log_warn("http: eventfd read: %s", strerror(errno));
    pthread_mutex_lock(&lp->mu);
    req = lp->done_head;
    lp->done_head = lp->done_tail = NULL;
    pthread_mutex_unlock(&lp->mu);
    stream_queue_run(lp, 1);
    for (; req != NULL; req = next) {
        conn *c = req->c;
        next = req->qnext;
        if (c->dead) {
            req_complete(lp, req, 0, " (connection ended early)");
            req_free(req);
            c->req = NULL;
            conn_grave(c);
            continue;
        }
        if (send_req_answer(c) > 0)
            conn_run(c, 0);
    }
}

/* The connection of lp on listener ls that has waited longest for a request head. */
static conn *oldest_waiting(loop *lp, const listener *ls, const conn *except)
{
    conn *best = NULL;
    for (conn *c = lp->conns; c != NULL; c = c->next)
        if (c != except && c->ls == ls && (c->state == C_HEAD || c->state == C_IDLE) &&
            (best == NULL || c->t_wait <= best->t_wait)) /* ties: the older (list: newest first) */
            best = c;
    return best;
}

static void conn_new(loop *lp, listener *ls, int fd, const struct sockaddr_storage *ss)
{
    kq_http_server *srv = lp->srv;
    struct epoll_event e;
    conn *c = calloc(1, sizeof *c);
    int one = 1;
    unsigned char key[16];
    size_t keylen = 0;

    if (c == NULL) {
        close(fd);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->lp = lp;
    c->ls = ls;
    c->state = C_HEAD;
    c->t_wait = c->t_active = kq_time_mono_ms();
    if (srv->limits.header_timeout_ms > 0)
        lp_deadline(lp, c->t_wait + srv->limits.header_timeout_ms);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)ss;
        inet_ntop(AF_INET, &in->sin_addr, c->client, sizeof c->client);
        memcpy(key, &in->sin_addr, 4);
        keylen = 4;
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)ss;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            inet_ntop(AF_INET, in6->sin6_addr.s6_addr + 12, c->client, sizeof c->client);
            memcpy(key, in6->sin6_addr.s6_addr + 12, 4);
            keylen = 4;
        } else {
            inet_ntop(AF_INET6, &in6->sin6_addr, c->client, sizeof c->client);
            memcpy(key, &in6->sin6_addr, 16);
            keylen = 16;
        }
    } else {
        snprintf(c->client, sizeof c->client, "-");
    }
    memset(&e, 0, sizeof e);
    e.events = EPOLLIN;
    e.data.ptr = c;
    if (epoll_ctl(lp->ep, EPOLL_CTL_ADD, fd, &e) != 0) {
        close(fd);
        free(c);
        return;
    }
    c->events = EPOLLIN;
    c->trusted = peer_trusted(srv, ss);
    if (srv->tls != NULL) {
        if ((c->ssl = SSL_new(srv->tls)) == NULL || SSL_set_fd(c->ssl, fd) != 1) {
            SSL_free(c->ssl);
            close(fd);
            free(c);
            return;
        }
        SSL_set_accept_state(c->ssl);
    }
    c->next = lp->conns;
    if (lp->conns)
        lp->conns->prev = c;
    lp->conns = c;
    lp->nconns++;
    if (!ls->internal && srv->limits.max_per_ip > 0 && keylen > 0 && !c->trusted) {
        unsigned *n;
        pthread_mutex_lock(&srv->ipmu);
        n = kq_map_putb(srv->per_ip, key, keylen, NULL);
        if (n == NULL || *n >= srv->limits.max_per_ip) {
            pthread_mutex_unlock(&srv->ipmu);
            atomic_fetch_add(&srv->refused, 1);
            conn_error(c, 503, "too many connections from this address");
            return;
        }
        (*n)++;
        pthread_mutex_unlock(&srv->ipmu);
        memcpy(c->ipkey, key, keylen);
        c->ipkeylen = keylen;
    }
    c->counted = 1;
    if (atomic_fetch_add(&ls->nconns, 1) + 1 > srv->limits.max_connections) {
        conn *v = oldest_waiting(lp, ls, c);
        if (v == NULL) {
            atomic_fetch_add(&srv->refused, 1);
            conn_error(c, 503, "server busy: too many connections");
            return;
        }
        atomic_fetch_add(&srv->evicted, 1);
        if (v->state == C_IDLE)
            conn_close(v);
        else
            conn_error(v, 503, "server busy: connection closed to make room");
    }
}

/* Out of descriptors: accept one pending connection with the spare and answer 503. */
static void refuse_no_fd(kq_http_server *srv, listener *ls)
{
    int fd;

    pthread_mutex_lock(&srv->spare_mu);
    if (srv->spare_fd >= 0) {
        close(srv->spare_fd);
        srv->spare_fd = -1;
        if ((fd = accept4(ls->fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
            if (srv->tls == NULL) { /* over TLS there is no answer without a handshake */
                ssize_t w = send(fd, srv->nofd_answer, srv->nofd_len, MSG_NOSIGNAL | MSG_DONTWAIT);
                (void)w;
            }
            close(fd);
            atomic_fetch_add(&srv->refused, 1);
        }
        srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    pthread_mutex_unlock(&srv->spare_mu);
}

static void on_accept(loop *lp, listener *ls)
{
    for (int i = 0; i < ACCEPT_BATCH && !atomic_load(&lp->srv->stopping); i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(ls->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE)
                refuse_no_fd(lp->srv, ls);
            return;
        }
        conn_new(lp, ls, fd, &ss);
    }
}

/* Deadlines: act on the passed ones, return the next (at most a second away). */
static int64_t loop_scan(loop *lp, int64_t now)
{
    const kq_http_limits *l = &lp->srv->limits;
    int64_t next = lp->next_scan, idle = (int64_t)l->timeout_s * 1000;
    conn *c, *nx;

    for (c = lp->conns; c != NULL; c = nx) {
        int64_t dl;
        nx = c->next;
        switch (c->state) {
        case C_HEAD:
            if (l->header_timeout_ms == 0)
                break;
            dl = c->t_wait + l->header_timeout_ms;
            if (now >= dl) {
                char msg[96];
                atomic_fetch_add(&lp->srv->timeouts, 1);
                snprintf(msg, sizeof msg, "the request head did not arrive within %u ms",
                         l->header_timeout_ms);
                conn_error(c, 408, msg);
            } else if (dl < next) {
                next = dl;
            }
            break;
        case C_IDLE:
            if (idle == 0)
                break;
            dl = c->t_wait + idle;
            if (now >= dl)
                conn_close(c);
            else if (dl < next)
                next = dl;
            break;
        case C_BODY:
            if (l->min_body_rate == 0)
                break;
            if (now - c->t_body < BODY_GRACE_MS) {
                dl = c->t_body + BODY_GRACE_MS;
            } else if (c->body_wire * 1000 <
                       (uint64_t)l->min_body_rate * (uint64_t)(now - c->t_body)) {
                char msg[96];
                snprintf(msg, sizeof msg, "the request body arrived slower than %u bytes/s",
                         l->min_body_rate);
                req_error(c, 408, msg);
                break;
            } else {
                dl = now + 250;
            }
            if (dl < next)
                next = dl;
            break;
        case C_WRITE:
            if (c->close_after && c->req == NULL)
                dl = c->linger_until; /* the server's own error answer (TLS: after a handshake) */
            else if (idle == 0)
                break;
            else
                dl = c->t_active + idle;
            if (now >= dl)
                conn_close(c);
            else if (dl < next)
                next = dl;
            break;
        case C_LINGER:
            if (now >= c->linger_until)
                conn_close(c);
            else if (c->linger_until < next)
                next = c->linger_until;
            break;
        case C_STREAM: /* ended but the client does not read the rest: 2 s from
                        * the end or its last read, whichever is later */
            if (!c->stream_ended)
                break;
            dl = c->t_active + LINGER_MS;
            if (dl < c->linger_until)
                dl = c->linger_until;
            if (now >= dl)
                conn_close(c);
            else if (dl < next)
                next = dl;
            break;
        default:
            break;
        }
    }
    return next;
}

static void *loop_main(void *arg)
{
    loop *lp = arg;
    kq_http_server *srv = lp->srv;
    struct epoll_event evs[128];

    lp->next_scan = kq_time_mono_ms() + 1000;
    while (!atomic_load(&srv->stopping)) {
        int64_t now = kq_time_mono_ms();
        int timeout = lp->next_scan <= now ? 0 : (int)(lp->next_scan - now), n;

        n = epoll_wait(lp->ep, evs, 128, timeout);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == lp)
                process_queue(lp);
            else if (p == &srv->ls[0] || p == &srv->ls[1])
                on_accept(lp, p);
            else
                on_conn_event(p, evs[i].events);
        }
        now = kq_time_mono_ms();
        if (now >= lp->next_scan) {
            lp->next_scan = now + 1000;
            lp->next_scan = loop_scan(lp, now);
        }
        grave_free(lp);
    }
    process_queue(lp); /* answers given before kq_http_stop: written (best effort) */
    return NULL;
}

/* ------------------------------------------------------------------ start / stop */

/* Is the address (family, 4 or 16 bytes) inside one of the trusted proxies' CIDRs? */
static int addr_trusted(const kq_http_server *srv, int family, const unsigned char *a)
{
    for (size_t i = 0; i < srv->nproxies; i++) {
        const struct cidr *p = &srv->proxies[i];
        unsigned full = p->bits / 8, rest = p->bits % 8;
        if (p->family != family || memcmp(p->addr, a, full) != 0)
            continue;
        if (rest == 0 || ((p->addr[full] ^ a[full]) & (unsigned char)(0xff00u >> rest)) == 0)
            return 1;
    }
    return 0;
}

static int peer_trusted(const kq_http_server *srv, const struct sockaddr_storage *ss)
{
    if (srv->nproxies == 0)
        return 0;
    if (ss->ss_family == AF_INET)
        return addr_trusted(
            srv, AF_INET,
            (const unsigned char *)&((const struct sockaddr_in *)(const void *)ss)->sin_addr);
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)ss;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            return addr_trusted(srv, AF_INET, in6->sin6_addr.s6_addr + 12);
        return addr_trusted(srv, AF_INET6, in6->sin6_addr.s6_addr);
    }
    return 0;
}

/* Parse one IP address (no port, no brackets): 1 and family/bytes, or 0. */
static int parse_ip(const char *s, int *family, unsigned char *out)
{
    if (inet_pton(AF_INET, s, out) == 1) {
        *family = AF_INET;
        return 1;
    }
    if (inet_pton(AF_INET6, s, out) == 1) {
        *family = AF_INET6;
        return 1;
    }
    return 0;
}

/* "10.0.0.0/8, 127.0.0.1, ::1/128" into srv->proxies. */
static int parse_proxies(kq_http_server *srv, const char *list, char *errstr, size_t errlen)
{
    const char *p = list;

    while (*p != '\0') {
        char item[80], *slash;
        size_t n;
        struct cidr *c;
        long bits;
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        n = strcspn(p, ", ");
        if (n >= sizeof item || srv->nproxies == MAX_PROXIES)
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "trusted proxies: an entry is too long or there are more than %d",
                             MAX_PROXIES);
        memcpy(item, p, n);
        item[n] = '\0';
        p += n;
        c = &srv->proxies[srv->nproxies];
        memset(c, 0, sizeof *c);
        if ((slash = strchr(item, '/')) != NULL)
            *slash = '\0';
        if (!parse_ip(item, &c->family, c->addr))
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "trusted proxies: '%s' is not an IP address or CIDR", item);
        bits = c->family == AF_INET ? 32 : 128;
        if (slash != NULL) {
            char *end;
            long b;
            errno = 0;
            b = strtol(slash + 1, &end, 10);
            if (slash[1] < '0' || slash[1] > '9' || *end != '\0' || errno != 0 || b > bits)
                return kq_seterr(errstr, errlen, KQ_EINVAL,
                                 "trusted proxies: bad prefix length in '%s/%s'", item, slash + 1);
            bits = b;
        }
        c->bits = (unsigned)bits;
        srv->nproxies++;
    }
    return 0;
}

/*
 * The client of a request that came from a trusted proxy: walk X-Forwarded-For (every such
 * field, in order) from the right, skipping hops that are themselves trusted proxies; the
 * first other hop is the client. A malformed hop stops the walk (the last good one wins).
 */
static void xff_client(const kq_http_req *req, char *out, size_t outlen)
{
    const char *hops[MAX_XFF_HOPS];
    size_t lens[MAX_XFF_HOPS], n = 0;
    const kq_hp_head *h = &req->h;

    for (unsigned i = 0; i < h->nheaders; i++) {
        const char *v = h->headers[i].value;
        if (strcasecmp(h->headers[i].name, "X-Forwarded-For") != 0)
            continue;
        while (*v != '\0') {
            size_t k;
            while (*v == ' ' || *v == '\t' || *v == ',')
                v++;
            k = strcspn(v, ", \t");
            if (k == 0)
                break;
            if (n == MAX_XFF_HOPS) { /* keep the rightmost hops */
                memmove(hops, hops + 1, sizeof hops[0] * (MAX_XFF_HOPS - 1));
                memmove(lens, lens + 1, sizeof lens[0] * (MAX_XFF_HOPS - 1));
                n--;
            }
            hops[n] = v;
            lens[n++] = k;
            v += k;
        }
    }
    while (n-- > 0) {
        char ip[INET6_ADDRSTRLEN + 1];
        unsigned char a[16];
        int family;
        if (lens[n] >= sizeof ip)
            break;
        memcpy(ip, hops[n], lens[n]);
        ip[lens[n]] = '\0';
        if (!parse_ip(ip, &family, a))
            break;
        inet_ntop(family, a, out, (socklen_t)outlen); /* the canonical text */
        if (!addr_trusted(req->srv, family, a))
            break;
    }
}

/* Bind and listen, non-blocking. Errors name the address and errno. */
static int listen_on(const char *addr, listener *ls, char *errstr, size_t errlen)
{
    struct sockaddr_storage ss;
    size_t sslen;
    socklen_t bl = sizeof ss;
    int fd, one = 1, e, rc;

    if ((rc = kq_http_parse_addr(addr, &ss, &sslen, errstr, errlen)) != 0)
        return rc;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return kq_seterr(errstr, errlen, KQ_EIO, "cannot serve HTTP on %s: socket: %s", addr,
                         strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&ss, (socklen_t)sslen) != 0 || listen(fd, 4096) != 0) {
        e = errno;
        close(fd);
        return kq_seterr(errstr, errlen, KQ_EIO, "cannot serve HTTP on %s: %s", addr, strerror(e));
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &bl) == 0)
        ls->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)(void *)&ss)->sin6_port
                                                  : ((struct sockaddr_in *)(void *)&ss)->sin_port);
    ls->fd = fd;
    return 0;
}

/* The TLS server context from a PEM certificate chain and key (both listeners use it). */
static int tls_setup(kq_http_server *srv, const char *cert, const char *key, char *errstr,
                     size_t errlen)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "TLS: cannot create a context");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        ERR_error_string_n(ERR_get_error(), why, sizeof why);
        SSL_CTX_free(ctx);
        return kq_seterr(errstr, errlen, KQ_EINVAL, "TLS certificate '%s': %s", cert, why);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        ERR_error_string_n(ERR_get_error(), why, sizeof why);
        SSL_CTX_free(ctx);
        return kq_seterr(errstr, errlen, KQ_EINVAL, "TLS key '%s': %s", key, why);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        SSL_CTX_free(ctx);
        return kq_seterr(errstr, errlen, KQ_EINVAL, "TLS key '%s' does not match certificate '%s'",
                         key, cert);
    }
    srv->tls = ctx;
    return 0;
}

/* Free everything of srv that exists; threads must be joined. */
static void server_free(kq_http_server *srv)
{
    for (unsigned i = 0; srv->loops != NULL && i < srv->nloops; i++) {
        loop *lp = &srv->loops[i];
        conn *c, *nx;
        for (c = lp->conns; c != NULL; c = nx) {
            nx = c->next;
            if (c->state == C_WAIT) {
                kq_log_error("http: a deferred request was not answered before the server "
                             "stopped; its memory is leaked");
                list_remove(c);
                continue;
            }
            conn_close(c);
        }
        stream_queue_run(lp, 0);
        grave_free(lp);
        if (lp->ep >= 0)
            close(lp->ep);
        if (lp->evfd >= 0)
            close(lp->evfd);
        pthread_mutex_destroy(&lp->mu);
    }
    for (size_t i = 0; i < srv->nls; i++)
        if (srv->ls[i].fd >= 0)
            close(srv->ls[i].fd);
    if (srv->spare_fd >= 0)
        close(srv->spare_fd);
    kq_map_free(srv->per_ip);
    kq_limit_free(srv->key_limit);
    pthread_mutex_destroy(&srv->ipmu);
    pthread_mutex_destroy(&srv->spare_mu);
    free(srv->nofd_answer);
    SSL_CTX_free(srv->tls);
    free(srv->loops);
    free(srv->routes);
    free(srv);
}

/* Room for every connection both listeners may hold, lingering ones and the loops' own. */
static void raise_fd_limit(const kq_http_limits *l, size_t nls)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)l->max_connections * nls * 2 + 256;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want)
        kq_log_warn("http: the descriptor limit (%llu) is below what %u connections per listener "
                    "may need (%llu); past it new connections get 503",
                    (unsigned long long)rl.rlim_cur, l->max_connections, (unsigned long long)want);
}

int kq_http_start(const kq_http_options *opts, kq_http_server **out, char *errstr, size_t errlen)
{
    kq_http_server *srv = NULL;
    struct sockaddr_storage ss;
    size_t sslen, n;
    const kq_http_limits *l = &opts->limits;
    int rc;

    *out = NULL;
    if ((rc = kq_http_parse_addr(opts->addr, &ss, &sslen, errstr, errlen)) != 0)
        return rc;
    if (opts->internal_addr != NULL &&
        (rc = kq_http_parse_addr(opts->internal_addr, &ss, &sslen, errstr, errlen)) != 0)
        return rc;
    if (l->max_body == 0 || l->max_body > (1u << 30))
        return kq_seterr(errstr, errlen, KQ_EINVAL, "body limit %zu not in 1..%u", l->max_body,
                         1u << 30);
    if (l->max_body_public == 0 || l->max_body_public > (1u << 30))
        return kq_seterr(errstr, errlen, KQ_EINVAL, "public body limit %zu not in 1..%u",
                         l->max_body_public, 1u << 30);
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
    if ((srv = calloc(1, sizeof *srv)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    srv->ls[0].fd = srv->ls[1].fd = srv->spare_fd = -1;
    pthread_mutex_init(&srv->ipmu, NULL);
    pthread_mutex_init(&srv->spare_mu, NULL);
    if ((srv->routes = calloc(n + 1, sizeof *srv->routes)) == NULL ||
        (srv->per_ip = kq_map_new(sizeof(unsigned), NULL)) == NULL ||
        (srv->loops = calloc(l->threads, sizeof *srv->loops)) == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        goto fail;
    }
    for (unsigned i = 0; i < l->threads; i++) {
        srv->loops[i].srv = srv;
        srv->loops[i].ep = srv->loops[i].evfd = -1;
        pthread_mutex_init(&srv->loops[i].mu, NULL);
    }
    srv->nloops = l->threads;
    srv->limits = *l;
    if (l->key_rate > 0 && (srv->key_limit = kq_limit_new(
                                l->limit_entries < 16 ? 16 : l->limit_entries, (double)l->key_rate,
                                (double)(l->key_burst ? l->key_burst : l->key_rate))) == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory (rate limiter)");
        goto fail;
    }
    srv->hp = kq_hp_limits_default();
    if (srv->hp.max_head > l->conn_memory - 1)
        srv->hp.max_head = l->conn_memory - 1;
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
    if ((opts->tls_cert == NULL) != (opts->tls_key == NULL)) {
        rc = kq_seterr(errstr, errlen, KQ_EINVAL, "TLS needs both a certificate and a key");
        goto fail;
    }
    if (opts->tls_cert != NULL &&
        (rc = tls_setup(srv, opts->tls_cert, opts->tls_key, errstr, errlen)) != 0)
        goto fail;
    if (opts->trusted_proxies != NULL &&
        (rc = parse_proxies(srv, opts->trusted_proxies, errstr, errlen)) != 0)
        goto fail;
    if (opts->cors_origins != NULL &&
        (rc = parse_cors(srv, opts->cors_origins, errstr, errlen)) != 0)
        goto fail;
    {
        char *b = error_body(503, "server_busy", "server busy: out of connections", NULL, NULL,
                             &srv->nofd_len);
        size_t cap = (b ? srv->nofd_len : 0) + 256;
        if (b == NULL || (srv->nofd_answer = malloc(cap)) == NULL) {
            free(b);
            rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
            goto fail;
        }
        srv->nofd_len =
            (size_t)snprintf(srv->nofd_answer, cap,
                             "HTTP/1.1 503 Service Unavailable\r\nContent-Type: " KQ_PROBLEM_CTYPE
                             "\r\nContent-Length: %zu\r\n"
                             "Retry-After: " RETRY_AFTER "\r\nConnection: close\r\n\r\n%s",
                             srv->nofd_len, b);
        free(b);
    }
    srv->nls = 1;
    if ((rc = listen_on(opts->addr, &srv->ls[0], errstr, errlen)) != 0)
        goto fail;
    if (opts->internal_addr != NULL) {
        srv->nls = 2;
        srv->ls[1].internal = 1;
        if ((rc = listen_on(opts->internal_addr, &srv->ls[1], errstr, errlen)) != 0)
            goto fail;
    }
    srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    raise_fd_limit(l, srv->nls);
    for (unsigned i = 0; i < srv->nloops; i++) {
        loop *lp = &srv->loops[i];
        struct epoll_event e;
        if ((lp->ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
            (lp->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
            rc = kq_seterr(errstr, errlen, KQ_EIO, "cannot serve HTTP on %s: %s", opts->addr,
                           strerror(errno));
            goto fail;
        }
        memset(&e, 0, sizeof e);
        e.events = EPOLLIN;
        e.data.ptr = lp;
        if (epoll_ctl(lp->ep, EPOLL_CTL_ADD, lp->evfd, &e) != 0)
            goto fail_errno;
        for (size_t k = 0; k < srv->nls; k++) {
            e.events = EPOLLIN | EPOLLEXCLUSIVE;
            e.data.ptr = &srv->ls[k];
            if (epoll_ctl(lp->ep, EPOLL_CTL_ADD, srv->ls[k].fd, &e) != 0)
                goto fail_errno;
        }
    }
    for (unsigned i = 0; i < srv->nloops; i++) {
        if (pthread_create(&srv->loops[i].tid, NULL, loop_main, &srv->loops[i]) != 0) {
            rc = kq_seterr(errstr, errlen, KQ_EIO, "cannot start HTTP thread");
            atomic_store(&srv->stopping, 1);
            for (unsigned j = 0; j < i; j++) {
                loop_wake(&srv->loops[j]);
                pthread_join(srv->loops[j].tid, NULL);
            }
            goto fail;
        }
        srv->loops[i].started = 1;
    }
    *out = srv;
    return 0;
fail_errno:
    rc = kq_seterr(errstr, errlen, KQ_EIO, "cannot serve HTTP on %s: epoll: %s", opts->addr,
                   strerror(errno));
fail:
    server_free(srv);
    return rc;
}

unsigned kq_http_port(const kq_http_server *srv)
{
    return srv->ls[0].port;
}

unsigned kq_http_internal_port(const kq_http_server *srv)
{
    return srv->nls > 1 ? srv->ls[1].port : 0;
}

void kq_http_stop(kq_http_server *srv)
{
    if (srv == NULL)
        return;
    atomic_store(&srv->stopping, 1);
    for (unsigned i = 0; i < srv->nloops; i++)
        loop_wake(&srv->loops[i]);
    for (unsigned i = 0; i < srv->nloops; i++)
        if (srv->loops[i].started)
            pthread_join(srv->loops[i].tid, NULL);
    server_free(srv);
}
