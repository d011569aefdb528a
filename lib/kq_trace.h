/*
 * kq_trace.h — W3C trace context and spans, exported with OTLP/HTTP (JSON).
 *
 * What it is for
 *   A request's trace crosses every service: kq_http reads the W3C
 *   `traceparent` header of each request (or starts a new trace when there is
 *   none or it is malformed: never an error), the command writer puts its
 *   command span's context on every event record it produces (the Kafka
 *   header KQ_TRACE_HEADER), the projector and the worker continue from that
 *   header, and the worker's outbound requests and its records sent back to
 *   kcqrs-commands carry it again. A span is a plain struct the caller fills
 *   (kq_span_start, kq_span_attr_*, kq_span_end); nothing is allocated.
 *
 * Export
 *   With KCQRS_OTLP_ENDPOINT set, kq_trace_export_start starts one exporter
 *   thread per process: kq_span_end copies the span into a bounded queue
 *   (KCQRS_OTLP_QUEUE spans) under a mutex held for that copy only, and the
 *   thread POSTs batches (at most KQ_TRACE_BATCH spans, at least every
 *   KQ_TRACE_FLUSH_MS) as OTLP/HTTP JSON to <endpoint>/v1/traces with
 *   libcurl. A full queue drops the span (counted: kcqrs_trace_spans_dropped_total,
 *   logged once); a failed POST drops its batch (counted, logged once per
 *   minute). The request path never waits for the network. Without an
 *   endpoint kq_span_end does nothing and kq_trace_exporting() is 0, so callers
 *   may skip building spans altogether.
 *
 * What it owns: the exporter (process-wide, between start and stop). Spans
 *   and contexts are the caller's values.
 *
 * Threads: parse/format/new/span functions are reentrant; kq_span_end from
 *   any thread; kq_trace_export_start/stop from the main thread (before and
 *   after the threads that end spans).
 */
#ifndef KQ_TRACE_H
#define KQ_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define KQ_TRACE_HEADER "traceparent" /* HTTP and Kafka record header name */
#define KQ_TRACEPARENT_LEN 55         /* "00-<32 hex>-<16 hex>-<2 hex>" */
#define KQ_TRACE_ATTRS 12             /* attributes per span */
#define KQ_TRACE_STR_MAX 128          /* bytes of a string attribute value (longer: cut) */
#define KQ_TRACE_NAME_MAX 96
#define KQ_TRACE_BATCH 512    /* most spans per export request */
#define KQ_TRACE_FLUSH_MS 200 /* a queued span waits at most about this long */
#define KQ_TRACE_TIMEOUT_MS 5000

/* A span context: trace id, span id (of the parent, in a received header), flags. */
typedef struct kq_trace_ctx {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags; /* bit 0: sampled */
} kq_trace_ctx;

/*
 * Parse a traceparent header value: version 00 exactly 55 characters;
 * another version (not ff) at least 55, the rest starting with '-' (as the
 * W3C text says for future versions). Lower-case hex only; trace id and span
 * id not all zeros. 0, or KQ_EINVAL (*out unchanged).
 */
int kq_trace_parse(const char *s, kq_trace_ctx *out);

/* The header value of c (version 00), 55 characters + NUL, into out. */
void kq_trace_format(const kq_trace_ctx *c, char out[KQ_TRACEPARENT_LEN + 1]);

/* 1 when c has a trace id and a span id that are not all zeros. */
int kq_trace_valid(const kq_trace_ctx *c);

/* The context of a new trace: random trace and span ids, sampled. 0 or KQ_EIO. */
int kq_trace_new(kq_trace_ctx *c);

typedef enum kq_span_kind {
    KQ_SPAN_INTERNAL = 1,
    KQ_SPAN_SERVER = 2,
    KQ_SPAN_CLIENT = 3,
    KQ_SPAN_PRODUCER = 4,
    KQ_SPAN_CONSUMER = 5
} kq_span_kind;

typedef struct kq_span_attr {
    const char *key; /* static string (the attribute names are constants) */
    int is_int;
    int64_t i;
    char s[KQ_TRACE_STR_MAX];
} kq_span_attr;

typedef struct kq_span {
    kq_trace_ctx ctx; /* this span: its trace id and its own span id */
    uint8_t parent[8];
    int has_parent;
    kq_span_kind kind;
    char name[KQ_TRACE_NAME_MAX];
    int64_t start_ns, end_ns; /* Unix time, nanoseconds */
    int error;                /* 1: status ERROR */
    size_t nattrs;
    kq_span_attr attrs[KQ_TRACE_ATTRS];
} kq_span;

/*
 * Begin span s now: a child of `parent` (same trace id, parent span id =
 * parent->span_id, its flags), or the root of a new trace when parent is
 * NULL or not valid. A new random span id. 0 or KQ_EIO (no randomness: s is
 * then a span whose ctx is not valid; kq_span_end ignores it).
 */
int kq_span_start(kq_span *s, const kq_trace_ctx *parent, kq_span_kind kind, const char *name);

/* Add an attribute (ignored past KQ_TRACE_ATTRS; a string is cut at KQ_TRACE_STR_MAX-1 bytes).
 * `key` must outlive the span (a string literal). */
void kq_span_attr_str(kq_span *s, const char *key, const char *v);
void kq_span_attr_strn(kq_span *s, const char *key, const char *v, size_t len);
void kq_span_attr_int(kq_span *s, const char *key, int64_t v);

/* Unix time now, in nanoseconds. */
int64_t kq_trace_now_ns(void);

/* End span s now (end_ns = now unless already set) and queue it for export when exporting. */
void kq_span_end(kq_span *s);

/*
 * The OTLP/HTTP JSON body (ExportTraceServiceRequest) for n spans of service
 * `service`: one resourceSpans with service.name, one scopeSpans. Ids are hex
 * (the OTLP JSON encoding), times and integers decimal strings. Returns a
 * malloc'd NUL-terminated string (the caller frees it), NULL on no memory.
 */
char *kq_trace_otlp_json(const kq_span *spans, size_t n, const char *service);

/*
 * Start the exporter: spans go to `endpoint` + "/v1/traces" (endpoint:
 * http:// or https:// URL, no trailing "/v1/traces" needed; a trailing '/' is
 * dropped), service.name `service`, queue of `queue_cap` spans (>= 1).
 * 0, KQ_EINVAL (bad endpoint) or KQ_ENOMEM / KQ_EIO with errstr.
 */
int kq_trace_export_start(const char *endpoint, const char *service, size_t queue_cap, char *errstr,
                          size_t errlen);

/* Send what is queued (bounded by KQ_TRACE_TIMEOUT_MS per request), stop the thread. Idempotent. */
void kq_trace_export_stop(void);

/* 1 between kq_trace_export_start and kq_trace_export_stop. */
int kq_trace_exporting(void);

/* The exporter's counters (0 when it never ran). */
typedef struct kq_trace_stats {
    uint64_t exported, dropped_full, dropped_failed;
} kq_trace_stats;
kq_trace_stats kq_trace_stats_get(void);

/* The exporter's metrics in the Prometheus text format (nothing when not exporting). */
void kq_trace_metrics(FILE *f);

#endif
