/*
 * kq_trace.c — trace context, spans and the OTLP/HTTP exporter; see kq_trace.h.
 */
#include "kq_trace.h"
#include "kq_err.h"
#include "kq_log.h"
#include "kq_rand.h"
#include "kq_version.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ context */

static int hex_lower(const char *s, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return KQ_EINVAL;
    return kq_hex_decode(s, n / 2, out);
}

static int all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

int kq_trace_parse(const char *s, kq_trace_ctx *out)
{
    kq_trace_ctx c;
    uint8_t ver;
    size_t len;

    if (s == NULL)
        return KQ_EINVAL;
    len = strlen(s);
    if (len < KQ_TRACEPARENT_LEN || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return KQ_EINVAL;
    if (hex_lower(s, 2, &ver) != 0 || ver == 0xff)
        return KQ_EINVAL;
    if (ver == 0 ? len != KQ_TRACEPARENT_LEN : (len > KQ_TRACEPARENT_LEN && s[55] != '-'))
        return KQ_EINVAL;
    if (hex_lower(s + 3, 32, c.trace_id) != 0 || hex_lower(s + 36, 16, c.span_id) != 0 ||
        hex_lower(s + 53, 2, &c.flags) != 0)
        return KQ_EINVAL;
    if (!kq_trace_valid(&c))
        return KQ_EINVAL;
    *out = c;
    return 0;
}

void kq_trace_format(const kq_trace_ctx *c, char out[KQ_TRACEPARENT_LEN + 1])
{
    out[0] = '0';
    out[1] = '0';
    out[2] = '-';
    kq_hex_encode(c->trace_id, 16, out + 3);
    out[35] = '-';
    kq_hex_encode(c->span_id, 8, out + 36);
    out[52] = '-';
    kq_hex_encode(&c->flags, 1, out + 53);
}

int kq_trace_valid(const kq_trace_ctx *c)
{
    return !all_zero(c->trace_id, 16) && !all_zero(c->span_id, 8);
}

static int new_span_id(uint8_t id[8])
{
    do {
        if (kq_rand_bytes(id, 8) != 0)
            return KQ_EIO;
    } while (all_zero(id, 8));
    return 0;
}

int kq_trace_new(kq_trace_ctx *c)
{
    memset(c, 0, sizeof *c);
    do {
        if (kq_rand_bytes(c->trace_id, 16) != 0)
            return KQ_EIO;
    } while (all_zero(c->trace_id, 16));
    c->flags = 1;
    return new_span_id(c->span_id);
}

/* ------------------------------------------------------------------ spans */

int64_t kq_trace_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int kq_span_start(kq_span *s, const kq_trace_ctx *parent, kq_span_kind kind, const char *name)
{
    int rc;

    memset(s, 0, sizeof *s);
    s->kind = kind;
    snprintf(s->name, sizeof s->name, "%s", name ? name : "");
    s->start_ns = kq_trace_now_ns();
    if (parent != NULL && kq_trace_valid(parent)) {
        memcpy(s->ctx.trace_id, parent->trace_id, 16);
        memcpy(s->parent, parent->span_id, 8);
        s->ctx.flags = parent->flags;
        s->has_parent = 1;
        if ((rc = new_span_id(s->ctx.span_id)) != 0)
            memset(&s->ctx, 0, sizeof s->ctx);
        return rc;
    }
    if ((rc = kq_trace_new(&s->ctx)) != 0)
        memset(&s->ctx, 0, sizeof s->ctx);
    return rc;
}

static kq_span_attr *attr_add(kq_span *s, const char *key)
{
    kq_span_attr *a;

    if (s->nattrs >= KQ_TRACE_ATTRS)
        return NULL;
    a = &s->attrs[s->nattrs++];
    a->key = key;
    return a;
}

/* Length of the valid UTF-8 sequence at p (left bytes there), or 0 (not one; NUL too). */
static size_t utf8_seq(const unsigned char *p, size_t left)
{
    size_t n;
    unsigned min;
    unsigned cp;

    if (p[0] == 0)
        return 0;
    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        n = 2, cp = p[0] & 0x1fu, min = 0x80;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        n = 3, cp = p[0] & 0x0fu, min = 0x800;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        n = 4, cp = p[0] & 0x07u, min = 0x10000;
    else
        return 0;
    if (n > left)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/*
 * Values come from clients (a path, a header): the copy is valid UTF-8, as the
 * OTLP JSON body must be (jansson refuses anything else, which would drop the
 * whole batch). A byte that starts no valid sequence becomes '?', and the cut at
 * KQ_TRACE_STR_MAX falls between characters.
 */
void kq_span_attr_strn(kq_span *s, const char *key, const char *v, size_t len)
{
    kq_span_attr *a = attr_add(s, key);
    const unsigned char *p = (const unsigned char *)v;
    size_t i = 0, o = 0;

    if (a == NULL)
        return;
    a->is_int = 0;
    while (i < len) {
        size_t k = utf8_seq(p + i, len - i);
        if (o + (k ? k : 1) > KQ_TRACE_STR_MAX - 1)
            break;
        if (k == 0) {
            a->s[o++] = '?';
            i++;
        } else {
            memcpy(a->s + o, p + i, k);
            o += k;
            i += k;
        }
    }
    a->s[o] = '\0';
}

void kq_span_attr_str(kq_span *s, const char *key, const char *v)
{
    kq_span_attr_strn(s, key, v ? v : "", v ? strlen(v) : 0);
}

void kq_span_attr_int(kq_span *s, const char *key, int64_t v)
{
    kq_span_attr *a = attr_add(s, key);

    if (a == NULL)
        return;
    a->is_int = 1;
    a->i = v;
}

/* ------------------------------------------------------------------ OTLP JSON */

static json_t *kv_string(const char *key, const char *v)
{
    return json_pack("{s:s, s:{s:s}}", "key", key, "value", "stringValue", v);
}

static json_t *span_json(const kq_span *s)
{
    char tid[33], sid[17], pid[17], t0[24], t1[24], num[24];
    json_t *o, *attrs;

    kq_hex_encode(s->ctx.trace_id, 16, tid);
    kq_hex_encode(s->ctx.span_id, 8, sid);
    snprintf(t0, sizeof t0, "%" PRId64, s->start_ns);
    snprintf(t1, sizeof t1, "%" PRId64, s->end_ns);
    if ((attrs = json_array()) == NULL)
        return NULL;
    for (size_t i = 0; i < s->nattrs; i++) {
        const kq_span_attr *a = &s->attrs[i];
        json_t *kv;
        if (a->is_int) {
            snprintf(num, sizeof num, "%" PRId64, a->i);
            kv = json_pack("{s:s, s:{s:s}}", "key", a->key, "value", "intValue", num);
        } else {
            kv = kv_string(a->key, a->s);
        }
        if (kv == NULL || json_array_append_new(attrs, kv) != 0) {
            json_decref(attrs);
            return NULL;
        }
    }
    o = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:o, s:{s:i}}", "traceId", tid, "spanId", sid,
                  "name", s->name, "kind", (int)s->kind, "startTimeUnixNano", t0, "endTimeUnixNano",
                  t1, "attributes", attrs, "status", "code", s->error ? 2 : 0);
    if (o != NULL && s->has_parent) {
        kq_hex_encode(s->parent, 8, pid);
        if (json_object_set_new(o, "parentSpanId", json_string(pid)) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

char *kq_trace_otlp_json(const kq_span *spans, size_t n, const char *service)
{
    json_t *arr = json_array(), *root = NULL;
    char *out = NULL;

    if (arr == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *o = span_json(&spans[i]);
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    root = json_pack("{s:[{s:{s:[o]}, s:[{s:{s:s, s:s}, s:o}]}]}", "resourceSpans", "resource",
                     "attributes", kv_string("service.name", service), "scopeSpans", "scope",
                     "name", "kcqrs", "version", kq_version, "spans", arr);
    if (root != NULL)
        out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return out;
}

/* ------------------------------------------------------------------ exporter */

typedef struct exporter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    kq_span *ring; /* cap spans; [head, head+len) queued */
    size_t cap, head, len;
    int stop;
    char *url;
    char shown[160]; /* url for logs: no user-info (a token in user:token@), cut */
    char *service;
    kq_span *batch; /* the thread's: KQ_TRACE_BATCH spans taken from the ring */
    atomic_uint_fast64_t exported, dropped_full, dropped_failed;
    atomic_int full_logged;
    int64_t fail_logged_ms;
} exporter;

/* url as logs show it: scheme://host/path, any "user:password@" left out. */
static void shown_url(const char *url, char *out, size_t outlen)
{
    const char *host = strstr(url, "://"), *end, *at = NULL;

    host = host != NULL ? host + 3 : url;
    end = host + strcspn(host, "/?#");
    for (const char *p = host; p < end; p++)
        if (*p == '@')
            at = p;
    if (at == NULL)
        snprintf(out, outlen, "%s", url);
    else
        snprintf(out, outlen, "%.*s%s", (int)(host - url), url, at + 1);
}

static exporter *g_exp;        /* set before the thread starts, cleared after it stops */
static atomic_int g_exporting; /* readers test this, not g_exp */
static kq_trace_stats g_last;  /* counters of a stopped exporter */

int kq_trace_exporting(void)
{
    return atomic_load_explicit(&g_exporting, memory_order_acquire);
}

void kq_span_end(kq_span *s)
{
    exporter *e;

    if (s->end_ns == 0)
        s->end_ns = kq_trace_now_ns();
    if (!kq_trace_exporting() || !kq_trace_valid(&s->ctx))
        return;
    e = g_exp;
    pthread_mutex_lock(&e->mu);
    if (e->len == e->cap) {
        pthread_mutex_unlock(&e->mu);
        atomic_fetch_add(&e->dropped_full, 1);
        if (atomic_exchange(&e->full_logged, 1) == 0)
            kq_log_warn("trace export: queue full (%zu spans); dropping spans (counted in "
                        "kcqrs_trace_spans_dropped_total)",
                        e->cap);
        return;
    }
    e->ring[(e->head + e->len) % e->cap] = *s;
    e->len++;
    if (e->len == KQ_TRACE_BATCH)
        pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

static size_t discard_body(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* POST one batch; 0 on a 2xx answer. */
static int post(exporter *e, CURL *h, const char *body, char *why, size_t whylen)
{
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
    long code = 0;
    CURLcode rc;

    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, e->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)KQ_TRACE_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_body);
    rc = curl_easy_perform(h);
    curl_slist_free_all(hd);
    if (rc != CURLE_OK) {
        snprintf(why, whylen, "%s", curl_easy_strerror(rc));
        return -1;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (code < 200 || code > 299) {
        snprintf(why, whylen, "HTTP %ld", code);
        return -1;
    }
    return 0;
}

static void send_batch(exporter *e, CURL *h, size_t n)
{
    char *body = kq_trace_otlp_json(e->batch, n, e->service);
    char why[256] = "out of memory";

    if (body != NULL && h != NULL && post(e, h, body, why, sizeof why) == 0) {
        atomic_fetch_add(&e->exported, n);
    } else {
        int64_t now = kq_trace_now_ns() / 1000000;
        atomic_fetch_add(&e->dropped_failed, n);
        if (e->fail_logged_ms == 0 || now - e->fail_logged_ms >= 60000) {
            e->fail_logged_ms = now;
            kq_log_warn("trace export to %s failed: %s; %zu spans dropped (counted in "
                        "kcqrs_trace_spans_dropped_total)",
                        e->shown, why, n);
        }
    }
    free(body);
}

static void *export_main(void *arg)
{
    exporter *e = arg;
    CURL *h = curl_easy_init();

    pthread_mutex_lock(&e->mu);
    for (;;) {
        size_t n;

        if (e->len < KQ_TRACE_BATCH && !e->stop) {
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_nsec += (long)KQ_TRACE_FLUSH_MS * 1000000L;
            if (dl.tv_nsec >= 1000000000L) {
                dl.tv_sec++;
                dl.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&e->cv, &e->mu, &dl);
        }
        if (e->len == 0) {
            if (e->stop)
                break;
            continue;
        }
        for (n = 0; n < KQ_TRACE_BATCH && e->len > 0; n++) {
            e->batch[n] = e->ring[e->head];
            e->head = (e->head + 1) % e->cap;
            e->len--;
        }
        pthread_mutex_unlock(&e->mu);
        send_batch(e, h, n);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    curl_easy_cleanup(h);
    return NULL;
}

static void exporter_free(exporter *e)
{
    if (e == NULL)
        return;
    free(e->ring);
    free(e->batch);
    free(e->url);
    free(e->service);
    free(e);
}

int kq_trace_export_start(const char *endpoint, const char *service, size_t queue_cap, char *errstr,
                          size_t errlen)
{
    exporter *e;
    size_t n;

    if (g_exp != NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "the trace exporter already runs");
    if (endpoint == NULL ||
        (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0) ||
        strlen(endpoint) < 9 || strlen(endpoint) > 1024) {
        char shown[160] = "";
        if (endpoint != NULL)
            shown_url(endpoint, shown, sizeof shown); /* never a user:token@ in a message */
        return kq_seterr(errstr, errlen, KQ_EINVAL,
                         "KCQRS_OTLP_ENDPOINT '%.64s' is not an http:// or https:// URL", shown);
    }
    if (queue_cap < 1)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "trace queue size must be at least 1");
    if ((e = calloc(1, sizeof *e)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    n = strlen(endpoint);
    while (n > 0 && endpoint[n - 1] == '/')
        n--;
    e->cap = queue_cap;
    e->ring = malloc(sizeof *e->ring * queue_cap);
    e->batch = malloc(sizeof *e->batch * KQ_TRACE_BATCH);
    e->url = malloc(n + sizeof "/v1/traces");
    e->service = strdup(service ? service : "kcqrs");
    if (e->ring == NULL || e->batch == NULL || e->url == NULL || e->service == NULL) {
        exporter_free(e);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory (trace queue of %zu spans)",
                         queue_cap);
    }
    memcpy(e->url, endpoint, n);
    memcpy(e->url + n, "/v1/traces", sizeof "/v1/traces");
    shown_url(e->url, e->shown, sizeof e->shown);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (pthread_create(&e->thread, NULL, export_main, e) != 0) {
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
        exporter_free(e);
        return kq_seterr(errstr, errlen, KQ_EIO, "cannot start the trace exporter thread");
    }
    g_exp = e;
    atomic_store_explicit(&g_exporting, 1, memory_order_release);
    kq_log_info("trace export: OTLP/HTTP JSON to %s as %s", e->shown, e->service);
    return 0;
}

void kq_trace_export_stop(void)
{
    exporter *e = g_exp;

    if (e == NULL)
        return;
    atomic_store_explicit(&g_exporting, 0, memory_order_release);
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    g_last = kq_trace_stats_get();
    g_exp = NULL;
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    exporter_free(e);
    curl_global_cleanup();
}

kq_trace_stats kq_trace_stats_get(void)
{
    exporter *e = g_exp;
    kq_trace_stats s = g_last;

    if (e != NULL) {
        s.exported = atomic_load(&e->exported);
        s.dropped_full = atomic_load(&e->dropped_full);
        s.dropped_failed = atomic_load(&e->dropped_failed);
    }
    return s;
}

void kq_trace_metrics(FILE *f)
{
    kq_trace_stats s;

    if (!kq_trace_exporting())
        return;
    s = kq_trace_stats_get();
    fprintf(f,
            "# HELP kcqrs_trace_spans_exported_total Spans sent to KCQRS_OTLP_ENDPOINT.\n"
            "# TYPE kcqrs_trace_spans_exported_total counter\n"
            "kcqrs_trace_spans_exported_total %llu\n"
            "# HELP kcqrs_trace_spans_dropped_total Spans not exported: the queue was full, or "
            "the export request failed.\n"
            "# TYPE kcqrs_trace_spans_dropped_total counter\n"
            "kcqrs_trace_spans_dropped_total{reason=\"queue_full\"} %llu\n"
            "kcqrs_trace_spans_dropped_total{reason=\"export_failed\"} %llu\n",
            (unsigned long long)s.exported, (unsigned long long)s.dropped_full,
            (unsigned long long)s.dropped_failed);
}
