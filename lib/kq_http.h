/*
 * kq_http.h — the HTTP/1.1 server every service runs on (our own: epoll loops
 * over non-blocking sockets, requests parsed by kq_http_parse).
 *
 * One place for what every endpoint needs: routing, limits, API-key
 * authentication, the error body (RFC 9457 problem+json, kq_problem.h), the access log and
 * Prometheus metrics. A service supplies a route table and handlers; kq_http
 * owns the listening sockets, the connections and every request's memory.
 *
 * Threads. `limits.threads` loop threads each run an epoll set; every loop
 * accepts from the listeners (EPOLLEXCLUSIVE) and a connection stays on the
 * loop that accepted it. Handlers, the readiness callback and the logging run
 * on those threads, concurrently: a handler must be thread-safe with respect
 * to its `arg` and must not block (hand slow work to another thread with
 * kq_http_defer). Metrics are lock-free atomics. kq_http_start/kq_http_stop
 * are called by one controlling thread.
 *
 * The life of a request on a connection (keep-alive and pipelining: one
 * request at a time, answers in order):
 *   1. the head (request line and headers) must be complete within
 *      `header_timeout_ms` of its first byte (or of the accept): else 408;
 *      the parser refuses malformed or ambiguous framing (400/414/431/501/
 *      505/417), always with a problem+json body, and the connection closes;
 *   2. the route is matched (404 / 405 with Allow), the route's role
 *      authenticated (401 with WWW-Authenticate / 403), the key's request rate
 *      checked (`key_rate`, a kq_limit token bucket per key name: 429
 *      rate_limited with Retry-After), the Content-Type of a
 *      JSON route checked (415) and the body cap chosen: `max_body` for a
 *      route that needs a key, `max_body_public` for a public one; a declared
 *      Content-Length over it is 413 before any body byte is read.
 *      `Expect: 100-continue` gets its 100 only after these checks;
 *   3. the body is read into one buffer (every wire byte counts: chunk
 *      extensions and trailers against 2 x cap + 16 KiB, the payload against
 *      the cap: 413), at no less than `min_body_rate` bytes/s after a 2 s
 *      grace (else 408);
 *   4. the handler runs with a complete request and must answer exactly once
 *      through kq_http_respond_*, or defer the answer to another thread with
 *      kq_http_defer (group commit); one that does neither gives 500;
 *   5. the answer (always with Content-Length; `Connection: close` when the
 *      server closes after it) is written; then the access log line (method
 *      path status latency actor client, per `access_log`) and the metrics.
 *   Errors the server itself answers go through one function (the JSON error
 *   body); when it closes after an error it answers first, then shuts its
 *   side down and drains what the client still sends for a moment, so the
 *   client reads the answer rather than a reset.
 *
 * Limits. Each listener has its own budget of `max_connections`. At the
 * limit a new connection evicts the one of its loop that has waited longest
 * for a request head (an idle keep-alive connection is closed quietly, a
 * half-sent head gets 503); with none to evict the newcomer gets 503 with
 * Retry-After and is closed. A client IP over `max_per_ip` (public listener
 * only) gets 503 with Retry-After, then the close. An idle keep-alive
 * connection closes after `timeout_s`. Read buffers are allocated when bytes
 * arrive and freed when a connection is idle.
 *
 * Two listeners: `addr` (public) and optionally `internal_addr` (same routes
 * and authentication, its own connection budget, no per-IP limit): internal
 * clients (kcqrs-worker's record client) keep capacity under a flood of the
 * public port.
 *
 * HTTPS (OpenSSL) on both listeners when `tls_cert` and `tls_key` are given:
 * TLS 1.2 or later; the handshake happens inside the first reads, so it has to
 * finish within the header deadline too. Behind a proxy, `trusted_proxies`
 * (CIDRs) makes the access log and kq_http_req_client use X-Forwarded-For from
 * those peers only, and exempts them from the per-IP limit.
 *
 * Built-in routes: GET /health (always 200 {"status":"ok"}), GET /ready (200
 * {"status":"ready"} or 503 problem+json with code "not_ready" and
 * Retry-After, from the caller's callback), GET /metrics (Prometheus text).
 * These three need no key.
 */
#ifndef KQ_HTTP_H
#define KQ_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kq_auth.h"
#include "kq_config.h"
#include "kq_json_in.h"
#include "kq_trace.h"

typedef struct kq_http_server kq_http_server;
typedef struct kq_http_req kq_http_req;

/* Limits; kq_http_limits_default() gives the documented defaults. */
typedef struct kq_http_limits {
    size_t max_body;            /* body cap of routes that need a key (65536); more -> 413 */
    unsigned max_connections;   /* concurrent connections per listener (4096) */
    unsigned max_per_ip;        /* concurrent connections per client IP (64); 0 = no limit */
    unsigned timeout_s;         /* idle keep-alive timeout in seconds (30); 0 = none */
    size_t conn_memory;         /* read buffer cap per connection: head + pipelined (65536) */
    unsigned threads;           /* loop threads, each with an epoll set (4) */
    size_t max_body_public;     /* body cap of public routes, e.g. webhooks (16384) */
    unsigned header_timeout_ms; /* request head deadline from its first byte (10000); 0 = none */
    unsigned min_body_rate;     /* bytes/s a body must keep after a 2 s grace (1024); 0 = none */
    unsigned access_log_every;  /* 1: log every request; 0: errors only; N: every N-th success
                                 * and every 4xx/5xx (KCQRS_ACCESS_LOG all|errors|sample:N) */
    unsigned key_rate;          /* requests/s per API key (0 = no limit; default 0); over it: 429 */
    unsigned key_burst;         /* the bucket of each key (key_rate when 0) */
    unsigned limit_entries;     /* keys the limiter remembers (16384) */
} kq_http_limits;

kq_http_limits kq_http_limits_default(void);
/* The limits from the KCQRS_HTTP_* settings (what every public service uses). */
kq_http_limits kq_http_limits_from_config(const kq_config *cfg);

/* Route handler: answer through kq_http_respond_* (or kq_http_defer) before returning. */
typedef void (*kq_http_handler)(kq_http_req *req, void *arg);

/*
 * Service metrics: append Prometheus text (with HELP/TYPE lines) to `out`.
 * Called by GET /metrics on a server thread, after the HTTP metrics.
 */
typedef void (*kq_http_metrics_fn)(void *arg, FILE *out);

/* Readiness: return 1 when ready, else 0 and optionally a reason in why. */
typedef int (*kq_http_ready_fn)(void *arg, char *why, size_t whylen);

#define KQ_HTTP_PUBLIC 0u           /* route needs no key */
#define KQ_HTTP_ANY_KEY 0x80000000u /* any valid key, no particular role */

typedef enum { KQ_HTTP_BODY_NONE = 0, KQ_HTTP_BODY_JSON } kq_http_body_kind;

typedef struct kq_http_route {
    const char *method;     /* "GET", "POST", ... */
    const char *pattern;    /* "/api/v1/resources/{id}"; {x} matches one non-empty segment */
    unsigned role;          /* KQ_AUTH_ROLE_* bits required, KQ_HTTP_ANY_KEY or KQ_HTTP_PUBLIC */
    kq_http_body_kind body; /* JSON: Content-Type checked (415) before the body is read */
    const char *name;       /* metrics label, e.g. "resource_create" */
    kq_http_handler handler;
    void *arg;
} kq_http_route;

#define KQ_HTTP_MAX_PARAMS 8
#define KQ_HTTP_MAX_ROUTES 128

/* A path parameter matched by kq_http_route_match: views, not NUL-terminated. */
typedef struct kq_http_param {
    const char *name; /* into the pattern, without braces */
    size_t name_len;
    const char *value; /* into the path: one non-empty segment */
    size_t value_len;
} kq_http_param;

/*
 * Match a decoded request path against a route pattern exactly as the server
 * does (it runs the same code, with each pattern split once at start): literal
 * segments compare byte for byte, a {name} segment matches one non-empty
 * segment, "/" matches only "/", no trailing slash, no empty segment.
 * Returns 1 on a match with params[0..*nparams) filled (at most `max`; params
 * may be NULL when max is 0), 0 when `path` (may be NULL) does not match, or
 * KQ_EINVAL when the pattern is one kq_http_start refuses. Pure: no
 * allocation, no global state; the views borrow `pattern` and `path`.
 */
int kq_http_route_match(const char *pattern, const char *path, kq_http_param *params, size_t max,
                        size_t *nparams);

typedef struct kq_http_options {
    const char *addr;          /* "host:port"; port 0 picks a free port */
    const char *internal_addr; /* NULL = none; a second listener: own budget, no per-IP limit */
    kq_http_limits limits;
    const kq_http_route *routes; /* copied; its strings and args must outlive the server */
    size_t nroutes;
    const kq_auth_keys *keys; /* borrowed; must outlive the server; NULL = no valid key */
    kq_http_ready_fn ready;   /* NULL = always ready */
    void *ready_arg;
    kq_http_metrics_fn metrics; /* NULL = none; the service's own counters on /metrics */
    void *metrics_arg;
    const char *tls_cert; /* PEM certificate chain file; with tls_key: HTTPS on every listener */
    const char *tls_key;  /* PEM private key file */
    const char *trusted_proxies; /* "CIDR, CIDR, ..." (NULL = none): peers whose X-Forwarded-For
                                  * names the client (logs, kq_http_req_client); they are exempt
                                  * from the per-IP connection limit */
    const char *cors_origins;    /* "*" or "https://a.example, http://b:8081" (NULL = no CORS):
                                  * answers to those browser origins carry
                                  * Access-Control-Allow-Origin and the exposed headers; an
                                  * OPTIONS preflight is answered 204 with the path's methods, or
                                  * 403 cors_origin_denied for another origin */
} kq_http_options;

/*
 * Parse "host:port" ("127.0.0.1:8080", "[::1]:0", "localhost:8080", ":8080"
 * for all IPv4 interfaces) into a socket address. Errors name the fault.
 */
struct sockaddr_storage;
int kq_http_parse_addr(const char *addr, struct sockaddr_storage *ss, size_t *sslen, char *errstr,
                       size_t errlen);

/*
 * Validate the options, bind and start serving. On success *out is owned by
 * the caller (kq_http_stop). Errors: KQ_EINVAL (bad address, route table or
 * limits), KQ_EIO (bind failed, e.g. port in use).
 */
int kq_http_start(const kq_http_options *opts, kq_http_server **out, char *errstr, size_t errlen);

/* The port actually bound (useful with port 0). */
unsigned kq_http_port(const kq_http_server *srv);
/* The internal listener's port; 0 when there is none. */
unsigned kq_http_internal_port(const kq_http_server *srv);

/* Stop accepting, close connections, join threads, free. NULL is a no-op. */
void kq_http_stop(kq_http_server *srv);

/*
 * Render the metrics in Prometheus text format into a malloc'd string owned
 * by the caller (what GET /metrics serves). NULL on allocation failure.
 */
char *kq_http_metrics_render(kq_http_server *srv);

/* ---- inside a handler (pointers are owned by the request; valid until it returns) ---- */

const char *kq_http_req_method(const kq_http_req *req);
const char *kq_http_req_path(const kq_http_req *req);
/* Path parameter by name ({id} -> "id"), NULL if the pattern has none. */
const char *kq_http_req_param(const kq_http_req *req, const char *name);
/* Query argument (decoded), NULL if absent. */
const char *kq_http_req_query(const kq_http_req *req, const char *name);
/*
 * Call fn(ctx, name, value) for every query argument (decoded; value NULL for
 * "?flag" without '=') in the order they arrived, until fn returns nonzero.
 * Returns the number of arguments visited. For refusing unknown parameters.
 */
size_t kq_http_req_query_each(const kq_http_req *req,
                              int (*fn)(void *ctx, const char *name, const char *value), void *ctx);
/* Request header (case-insensitive name), NULL if absent. */
const char *kq_http_req_header(const kq_http_req *req, const char *name);
/* The body (not NUL-terminated) and its length; NULL/0 when there is none. */
const char *kq_http_req_body(const kq_http_req *req, size_t *len);
/*
 * The request id, also sent as the answer's X-Request-Id: the client's
 * X-Request-Id when kq_http_request_id_ok accepts it, else a new UUID v4.
 * Every answer carries one (the server's own errors too: a new id each); the
 * access log prints it (JSON: "request_id").
 */
const char *kq_http_req_id(const kq_http_req *req);
#define KQ_HTTP_REQID_MAX 64
/* A sane incoming request id: 1 to 64 characters of [A-Za-z0-9._:-]. Pure. */
int kq_http_request_id_ok(const char *s);
/*
 * The aggregate the request acted on, for the access log's "aggregate_id"
 * (copied, up to KQ_HTTP_AGGID_MAX bytes; control characters and '"' become
 * '?'). Without it the route's {id} parameter is logged, if it has one. Call
 * before the answer.
 */
#define KQ_HTTP_AGGID_MAX 128
void kq_http_req_set_aggregate_id(kq_http_req *req, const char *id);
/* The authenticated key's name (NULL on a public route) and its roles. */
const char *kq_http_req_actor(const kq_http_req *req);
unsigned kq_http_req_roles(const kq_http_req *req);
/*
 * The client's address (text): the TCP peer, or, when the peer is a trusted proxy, the
 * X-Forwarded-For hop nearest to us that is not itself a trusted proxy.
 */
const char *kq_http_req_client(const kq_http_req *req);

/*
 * The context of the request's server span (kq_trace.h): the client's traceparent trace
 * continued (a malformed one is ignored, never an error) or a new trace, with this
 * request's own span id; the parent of the spans a handler starts. Owned by the request.
 */
const kq_trace_ctx *kq_http_req_trace(const kq_http_req *req);

/*
 * Parse the body as a JSON object and validate it against `fields`. On
 * success returns 0 and *out (a new reference, owned by the caller). On
 * failure it has already answered 400 with one detail per offending field,
 * and returns KQ_EINVAL; the handler then just returns.
 */
int kq_http_req_json(kq_http_req *req, const kq_jin_field *fields, size_t n, json_t **out);

/*
 * Answer later, from another thread (e.g. after a Kafka transaction commits).
 * Call it in the handler, hand `req` to the other thread and return; that
 * thread then calls kq_http_add_header/kq_http_respond_* exactly once, after
 * which `req` must not be touched. The answer reaches the connection's loop
 * through that loop's queue (an eventfd wakes it); meanwhile the loop serves
 * its other connections. Every deferred request must be answered before
 * kq_http_stop. The request's accessors stay valid until the answer.
 */
int kq_http_defer(kq_http_req *req);

/* Add a response header (copied), e.g. ETag, Location, Retry-After. Up to 16; a name that
 * is not a token or a value with CR, LF or NUL is refused (KQ_EINVAL). */
int kq_http_add_header(kq_http_req *req, const char *name, const char *value);

/* Answer with `body` (reference stolen; NULL sends no body) as application/json. */
int kq_http_respond_json(kq_http_req *req, unsigned status, json_t *body);

/* Answer with a text body of the given content type (copied). */
int kq_http_respond_text(kq_http_req *req, unsigned status, const char *content_type,
                         const char *text, size_t len);

/*
 * Answer with the problem details of kq_problem.h (application/problem+json):
 * `code` and `message` become code/type/title and detail, the request path
 * the instance. `details` (the "errors" items) is a JSON array (reference
 * stolen) or NULL for an empty one.
 */
int kq_http_respond_error(kq_http_req *req, unsigned status, const char *code, const char *message,
                          json_t *details);

/*
 * Streaming answers (Server-Sent Events, NDJSON): a body of unknown length written
 * while the connection lives.
 *
 * In a handler, kq_http_stream_begin() answers `status` with `content_type` and the
 * headers added so far, without Content-Length and with `Connection: close` (the
 * body ends when the connection does). The handler then hands *out to one producer
 * thread and returns. The producer appends with kq_http_stream_write(); the
 * connection's loop writes what was appended in order (an eventfd wakes it) and
 * watches the socket for the client leaving. `max_buffer` bounds the bytes appended
 * but not yet written to the socket: a write that would pass it is refused with
 * KQ_ERANGE (the client does not read fast enough) and appends nothing, so the
 * memory a stream holds is bounded (by max_buffer, or by one larger write, which
 * is taken when nothing is pending). kq_http_stream_end() appends a last message
 * regardless of the bound, lets the loop write it (a client that still does not
 * read gets at most 2 s more) and closes the connection.
 *
 * Ownership: *out is shared by the producer and the server (refcounted); the
 * producer must call kq_http_stream_end() exactly once, after which it must not
 * touch the handle. After the client left or the server stopped, writes fail
 * with KQ_EIO and kq_http_stream_gone() is 1; the producer still calls
 * kq_http_stream_end(). The access log line and the metrics count the request
 * when the connection closes.
 *
 * Returns 0, KQ_EINVAL (already answered or deferred), KQ_ENOMEM.
 */
typedef struct kq_http_stream kq_http_stream;

int kq_http_stream_begin(kq_http_req *req, unsigned status, const char *content_type,
                         size_t max_buffer, kq_http_stream **out);
/* Append `len` bytes (copied). 0; KQ_ERANGE over the bound; KQ_EIO gone; KQ_ENOMEM. */
int kq_http_stream_write(kq_http_stream *s, const void *buf, size_t len);
/* Bytes appended but not yet written to the socket. */
size_t kq_http_stream_pending(kq_http_stream *s);
/* 1 when the client left or the server is stopping: stop producing. */
int kq_http_stream_gone(kq_http_stream *s);
/* Append `last` (may be NULL), write what is pending, close; releases s. */
void kq_http_stream_end(kq_http_stream *s, const void *last, size_t len);

#endif
