/*
 * wk_http.c — the libcurl multi engine (see wk_http.h) and the HTTP request
 * builder. wk_smtp.c builds its transfers through wk_engine_int.h.
 */
#include "wk_http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "kq_err.h"
#include "kq_log.h"
#include "kq_time.h"
#include "wk_engine_int.h"
#include "wk_hmac.h"
#include "wk_policy.h"

#define WK_POOL_MAX 256

struct wk_engine {
    CURLM *multi;
    wk_settings s;
    char *user_agent;
    char *ca_file; /* NULL: libcurl's default bundle */
    wk_xfer *head; /* in flight */
    size_t in_flight;
    atomic_size_t in_flight_metric;
    atomic_uint_fast64_t transfers[2][WK_R_ABORTED + 1]; /* [proto][result] */
    atomic_uint_fast64_t classes[2][6];                  /* [proto][status / 100] */
    int closing;                                         /* in wk_engine_free: no new transfers */
    CURL *pool[WK_POOL_MAX];                             /* reset easy handles */
    size_t npool;
};

void wk_settings_defaults(wk_settings *s)
{
    s->connect_timeout_ms = WK_DEFAULT_CONNECT_TIMEOUT_MS;
    s->total_timeout_ms = WK_DEFAULT_TOTAL_TIMEOUT_MS;
    s->response_max = WK_DEFAULT_RESPONSE_MAX;
    s->max_connections = WK_DEFAULT_MAX_CONNECTIONS;
    s->allow_private = 0;
    s->user_agent = NULL;
    s->ca_file = NULL;
}

static int global_init(void)
{
    /* Idempotent in libcurl >= 7.84 (thread-safe init); one call per engine is harmless. */
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : KQ_EIO;
}

wk_engine *wk_engine_new(const wk_settings *s, char *errstr, size_t errlen)
{
    wk_engine *e = NULL;
    if (s == NULL || s->connect_timeout_ms <= 0 || s->total_timeout_ms <= 0 ||
        s->response_max == 0 || s->max_connections <= 0) {
        kq_seterr(errstr, errlen, KQ_EINVAL,
                  "worker engine: timeouts, response cap and connection limit must be > 0");
        return NULL;
    }
    if (global_init() != 0) {
        kq_seterr(errstr, errlen, KQ_EIO, "curl_global_init failed");
        return NULL;
    }
    e = calloc(1, sizeof *e);
    if (e == NULL)
        goto nomem;
    e->s = *s;
    e->user_agent = strdup(s->user_agent ? s->user_agent : WK_DEFAULT_USER_AGENT);
    e->multi = curl_multi_init();
    if (e->user_agent == NULL || e->multi == NULL)
        goto nomem;
    e->s.user_agent = e->user_agent;
    if (s->ca_file != NULL) {
        if (access(s->ca_file, R_OK) != 0) {
            kq_seterr(errstr, errlen, KQ_ECONFIG, "worker engine: CA file '%.200s' not readable",
                      s->ca_file);
            curl_multi_cleanup(e->multi);
            free(e->user_agent);
            free(e);
            return NULL;
        }
        if ((e->ca_file = strdup(s->ca_file)) == NULL)
            goto nomem;
    }
    e->s.ca_file = e->ca_file;
    curl_multi_setopt(e->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, s->max_connections);
    curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, s->max_connections);
    return e;
nomem:
    if (e != NULL) {
        if (e->multi != NULL)
            curl_multi_cleanup(e->multi);
        free(e->user_agent);
        free(e->ca_file);
        free(e);
    }
    kq_seterr(errstr, errlen, KQ_ENOMEM, "worker engine: out of memory");
    return NULL;
}

const wk_settings *wk_engine_settings(const wk_engine *e)
{
    return &e->s;
}

size_t wk_engine_in_flight(const wk_engine *e)
{
    return e->in_flight;
}

void wk_engine_wakeup(wk_engine *e)
{
    curl_multi_wakeup(e->multi);
}

/* ------------------------------------------------------------------ transfers */

static size_t on_write(char *p, size_t sz, size_t n, void *ud)
{
    wk_xfer *x = ud;
    size_t k = sz * n;
    (void)p;
    x->out.bytes += k;
    if (x->out.bytes > x->eng->s.response_max) {
        x->too_big = 1;
        return 0; /* abort the transfer */
    }
    return k;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    wk_xfer *x = ud;
    size_t k = sz * n;
    if (k >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        x->retry_after[0] = '\0'; /* a new response (after a 1xx) */
    } else if (k > 12 && strncasecmp(p, "retry-after:", 12) == 0) {
        size_t vl = k - 12;
        if (vl >= sizeof x->retry_after)
            vl = sizeof x->retry_after - 1;
        memcpy(x->retry_after, p + 12, vl);
        x->retry_after[vl] = '\0';
    }
    return k;
}

wk_xfer *wk_xfer_new(wk_engine *e, wk_proto proto, char *errstr, size_t errlen)
{
    wk_xfer *x = calloc(1, sizeof *x);
    if (x == NULL) {
        kq_seterr(errstr, errlen, KQ_ENOMEM, "worker engine: out of memory");
        return NULL;
    }
    x->eng = e;
    x->out.proto = proto;
    x->out.retry_after_s = -1;
    x->h = e->npool > 0 ? e->pool[--e->npool] : curl_easy_init();
    if (x->h == NULL) {
        free(x);
        kq_seterr(errstr, errlen, KQ_ENOMEM, "curl_easy_init failed");
        return NULL;
    }
    x->guard.allow_private = e->s.allow_private;
    CURL *h = x->h;
    curl_easy_setopt(h, CURLOPT_PRIVATE, x);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, e->s.connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, e->s.total_timeout_ms);
    if (e->ca_file != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, e->ca_file);
    /* Whatever a server sends back is counted and dropped (never to stdout). */
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    if (proto == WK_PROTO_HTTP) {
        curl_easy_setopt(h, CURLOPT_USERAGENT, e->user_agent);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
        curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)e->s.response_max);
    }
    if (wk_guard_apply(h, proto == WK_PROTO_HTTP ? WK_GUARD_HTTP : WK_GUARD_SMTP, &x->guard, errstr,
                       errlen) != 0) {
        wk_xfer_free(x);
        return NULL;
    }
    return x;
}

void wk_xfer_free(wk_xfer *x)
{
    if (x == NULL)
        return;
    if (x->h != NULL) {
        wk_engine *e = x->eng;
        if (e->npool < WK_POOL_MAX) {
            curl_easy_reset(x->h);
            e->pool[e->npool++] = x->h;
        } else {
            curl_easy_cleanup(x->h);
        }
    }
    curl_slist_free_all(x->hdrs);
    curl_slist_free_all(x->rcpts);
    free(x->body);
    free(x);
}

int wk_engine_start(wk_engine *e, wk_xfer *x, wk_done_fn cb, void *arg, char *errstr, size_t errlen)
{
    int rc;

    if (e->closing) {
        rc = kq_seterr(errstr, errlen, KQ_EINVAL, "worker engine is shutting down");
        goto fail;
    }
    x->cb = cb;
    x->arg = arg;
    x->start_us = kq_time_mono_us();
    if (curl_multi_add_handle(e->multi, x->h) != CURLM_OK) {
        rc = kq_seterr(errstr, errlen, KQ_EIO, "curl_multi_add_handle failed");
        goto fail;
    }
    x->next = e->head;
    if (e->head != NULL)
        e->head->prev = x;
    e->head = x;
    e->in_flight++;
    atomic_store(&e->in_flight_metric, e->in_flight);
    return 0;
fail:
    wk_xfer_free(x);
    return rc;
}

/* Fill x->out from the transfer's end, unlink, call back, free. */
static void finish(wk_engine *e, wk_xfer *x, CURLcode rc)
{
    long code = 0;
    wk_outcome *o = &x->out;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
    o->status_code = (int)code;
    o->duration_ms = (long)((kq_time_mono_us() - x->start_us) / 1000);
    if (x->guard.refused) {
        o->result = WK_R_REFUSED;
        o->status_code = 0;
        snprintf(o->error, sizeof o->error,
                 "refused: %s is a %s address (outbound guard; allow_private is off)",
                 x->guard.refused_addr, x->guard.refused_why);
    } else if (x->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        o->result = WK_R_TOO_LARGE;
        snprintf(o->error, sizeof o->error, "response larger than %zu bytes", e->s.response_max);
    } else if (rc == CURLE_OK) {
        o->result = WK_R_RESPONSE;
    } else if (o->proto == WK_PROTO_SMTP && code >= 400) {
        o->result = WK_R_RESPONSE;
        snprintf(o->error, sizeof o->error, "smtp %ld: %.200s", code,
                 x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
    } else {
        curl_off_t connect_us = 0;
        curl_easy_getinfo(x->h, CURLINFO_CONNECT_TIME_T, &connect_us);
        o->status_code = 0;
        if (rc == CURLE_OPERATION_TIMEDOUT)
            o->result = connect_us == 0 ? WK_R_CONNECT_TIMEOUT : WK_R_TIMEOUT;
        else if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)
            o->result = WK_R_CONNECT;
        else
            o->result = WK_R_TRANSPORT;
        snprintf(o->error, sizeof o->error, "%s: %.200s", wk_result_name(o->result),
                 x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
    }
    if (x->retry_after[0] != '\0' && o->status_code > 0)
        o->retry_after_s = wk_policy_parse_retry_after(x->retry_after, time(NULL));
    curl_multi_remove_handle(e->multi, x->h);
    if (x->prev != NULL)
        x->prev->next = x->next;
    else
        e->head = x->next;
    if (x->next != NULL)
        x->next->prev = x->prev;
    e->in_flight--;
    atomic_store(&e->in_flight_metric, e->in_flight);
    atomic_fetch_add(&e->transfers[o->proto][o->result], 1);
    if (o->result == WK_R_RESPONSE && o->status_code >= 100 && o->status_code < 600)
        atomic_fetch_add(&e->classes[o->proto][o->status_code / 100], 1);
    x->cb(x->arg, o);
    wk_xfer_free(x);
}

int wk_engine_metrics(wk_engine *e, char *buf, size_t len)
{
    static const char *const protos[] = {"http", "smtp"};
    size_t off = 0;
    int n = snprintf(buf, len,
                     "# HELP kcqrs_worker_transfers_total Ended transfers by protocol and result.\n"
                     "# TYPE kcqrs_worker_transfers_total counter\n");
    if (n < 0 || (size_t)n >= len)
        goto full;
    off = (size_t)n;
    for (int p = 0; p < 2; p++)
        for (int r = 0; r <= WK_R_ABORTED; r++) {
            n = snprintf(buf + off, len - off,
                         "kcqrs_worker_transfers_total{proto=\"%s\",result=\"%s\"} %llu\n",
                         protos[p], wk_result_name((wk_result)r),
                         (unsigned long long)atomic_load(&e->transfers[p][r]));
            if (n < 0 || (size_t)n >= len - off)
                goto full;
            off += (size_t)n;
        }
    n = snprintf(buf + off, len - off,
                 "# HELP kcqrs_worker_responses_total Responses by protocol and status class.\n"
                 "# TYPE kcqrs_worker_responses_total counter\n");
    if (n < 0 || (size_t)n >= len - off)
        goto full;
    off += (size_t)n;
    for (int p = 0; p < 2; p++)
        for (int c = 2; c <= 5; c++) {
            n = snprintf(buf + off, len - off,
                         "kcqrs_worker_responses_total{proto=\"%s\",class=\"%dxx\"} %llu\n",
                         protos[p], c, (unsigned long long)atomic_load(&e->classes[p][c]));
            if (n < 0 || (size_t)n >= len - off)
                goto full;
            off += (size_t)n;
        }
    n = snprintf(buf + off, len - off,
                 "# HELP kcqrs_worker_in_flight Transfers submitted and not yet ended.\n"
                 "# TYPE kcqrs_worker_in_flight gauge\nkcqrs_worker_in_flight %zu\n",
                 atomic_load(&e->in_flight_metric));
    if (n < 0 || (size_t)n >= len - off)
        goto full;
    return (int)(off + (size_t)n);
full:
    if (len > 0)
        buf[0] = '\0';
    return KQ_ERANGE;
}

static int drain(wk_engine *e)
{
    int n = 0, q;
    CURLMsg *m;
    while ((m = curl_multi_info_read(e->multi, &q)) != NULL) {
        wk_xfer *x = NULL;
        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x == NULL)
            continue;
        finish(e, x, m->data.result);
        n++;
    }
    return n;
}

int wk_engine_run(wk_engine *e, int timeout_ms)
{
    int running = 0;
    /* Poll first: curl_multi_poll returns at once when libcurl has a timer
     * due (a transfer just added has one at 0) or a socket is ready, so one
     * perform per wake-up is enough (a perform walks every transfer). */
    if (curl_multi_poll(e->multi, NULL, 0, timeout_ms > 0 ? timeout_ms : 0, NULL) != CURLM_OK)
        return KQ_EIO;
    if (curl_multi_perform(e->multi, &running) != CURLM_OK)
        return KQ_EIO;
    return drain(e);
}

void wk_engine_free(wk_engine *e)
{
    if (e == NULL)
        return;
    e->closing = 1;
    while (e->head != NULL) {
        wk_xfer *x = e->head;
        curl_multi_remove_handle(e->multi, x->h);
        e->head = x->next;
        if (e->head != NULL)
            e->head->prev = NULL;
        e->in_flight--;
        x->out.result = WK_R_ABORTED;
        x->out.status_code = 0;
        x->out.duration_ms = (long)((kq_time_mono_us() - x->start_us) / 1000);
        snprintf(x->out.error, sizeof x->out.error, "aborted: worker engine shut down");
        x->cb(x->arg, &x->out);
        wk_xfer_free(x);
    }
    for (size_t i = 0; i < e->npool; i++)
        curl_easy_cleanup(e->pool[i]);
    curl_multi_cleanup(e->multi);
    free(e->user_agent);
    free(e->ca_file);
    free(e);
}

/* ------------------------------------------------------------------ HTTP requests */

int wk_delivery_id_check(const char *id, char *errstr, size_t errlen)
{
    size_t n;
    if (id == NULL || (n = strlen(id)) == 0 || n > WK_DELIVERY_ID_MAX)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "delivery id missing or over %d bytes",
                         WK_DELIVERY_ID_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (isalnum(c) || c == '_' || c == '-')
            continue;
        if (c == '.' && i > 0 && i + 1 < n && id[i + 1] != '.')
            continue;
        return kq_seterr(errstr, errlen, KQ_EINVAL,
                         "delivery id '%.64s': only letters, digits, '_', '-' and inner dots", id);
    }
    return 0;
}

static int header_name_ok(const char *s)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    if (s == NULL || *s == '\0' || strlen(s) > 256)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && strchr(tchar, *s) == NULL)
            return 0;
    return 1;
}

static int header_value_ok(const char *s)
{
    if (s == NULL || strlen(s) > 8192)
        return 0;
    for (; *s; s++)
        if (*s == '\r' || *s == '\n')
            return 0;
    return 1;
}

/* Headers the engine sets itself or that would break framing. */
static int header_reserved(const char *name)
{
    static const char *const reserved[] = {
        WK_HMAC_HEADER, WK_DELIVERY_HEADER, "Content-Length", "Transfer-Encoding",
        "Host",         "Connection",       "Expect",         NULL};
    for (int i = 0; reserved[i] != NULL; i++)
        if (strcasecmp(name, reserved[i]) == 0)
            return 1;
    return 0;
}

static int add_header(wk_xfer *x, const char *name, const char *value)
{
    char line[8192 + 300];
    struct curl_slist *n;
    snprintf(line, sizeof line, "%s: %s", name, value);
    n = curl_slist_append(x->hdrs, line);
    if (n == NULL)
        return KQ_ENOMEM;
    x->hdrs = n;
    return 0;
}

int wk_engine_submit_http(wk_engine *e, const wk_http_request *req, wk_done_fn cb, void *arg,
                          char *errstr, size_t errlen)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};
    wk_xfer *x = NULL;
    int rc, have_ct = 0, m;
    char sig[WK_HMAC_SIG_LEN + 1];
    if (req == NULL || cb == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "request and callback required");
    for (m = 0; methods[m] != NULL; m++)
        if (req->method != NULL && strcmp(req->method, methods[m]) == 0)
            break;
    if (methods[m] == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL,
                         "method '%.16s' not one of GET POST PUT PATCH DELETE",
                         req->method ? req->method : "(null)");
    if ((rc = wk_guard_check_url(req->url, WK_GUARD_HTTP, errstr, errlen)) != 0)
        return rc;
    if ((rc = wk_delivery_id_check(req->delivery_id, errstr, errlen)) != 0)
        return rc;
    if (req->body_len > WK_REQUEST_BODY_MAX)
        return kq_seterr(errstr, errlen, KQ_ERANGE, "request body over %d bytes",
                         WK_REQUEST_BODY_MAX);
    if (req->body == NULL && req->body_len > 0)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "body NULL with length %zu", req->body_len);
    if ((req->n_headers > 0 && req->headers == NULL) || req->n_headers > WK_REQUEST_HEADERS_MAX)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "headers NULL or more than %d",
                         WK_REQUEST_HEADERS_MAX);
    for (size_t i = 0; i < req->n_headers; i++) {
        const wk_header *h = &req->headers[i];
        if (!header_name_ok(h->name) || !header_value_ok(h->value))
            return kq_seterr(errstr, errlen, KQ_EINVAL, "header %zu ('%.64s'): bad name or value",
                             i, h->name ? h->name : "(null)");
        if (header_reserved(h->name))
            return kq_seterr(errstr, errlen, KQ_EINVAL, "header '%s' is set by the worker",
                             h->name);
        if (strcasecmp(h->name, "Content-Type") == 0)
            have_ct = 1;
    }
    if ((x = wk_xfer_new(e, WK_PROTO_HTTP, errstr, errlen)) == NULL)
        return KQ_ENOMEM;
    x->body = malloc(req->body_len + 1);
    if (x->body == NULL)
        goto nomem;
    if (req->body_len > 0)
        memcpy(x->body, req->body, req->body_len);
    x->body[req->body_len] = '\0';
    x->body_len = req->body_len;
    for (size_t i = 0; i < req->n_headers; i++)
        if ((req->traceparent == NULL || strcasecmp(req->headers[i].name, "traceparent") != 0) &&
            add_header(x, req->headers[i].name, req->headers[i].value) != 0)
            goto nomem;
    if (req->traceparent != NULL && header_value_ok(req->traceparent) &&
        add_header(x, "traceparent", req->traceparent) != 0)
        goto nomem;
    if (m != 0 && req->body_len > 0 && !have_ct &&
        add_header(x, "Content-Type", "application/json") != 0)
        goto nomem;
    if (add_header(x, WK_DELIVERY_HEADER, req->delivery_id) != 0)
        goto nomem;
    if (req->secret != NULL && req->secret_len > 0) {
        if ((rc = wk_hmac_sign(req->secret, req->secret_len, x->body, x->body_len, sig, errstr,
                               errlen)) != 0)
            goto fail;
        if (add_header(x, WK_HMAC_HEADER, sig) != 0)
            goto nomem;
    }
    /* No "Expect: 100-continue" round trip. */
    if ((x->hdrs = curl_slist_append(x->hdrs, "Expect:")) == NULL)
        goto nomem;
    curl_easy_setopt(x->h, CURLOPT_URL, req->url);
    curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, x->hdrs);
    if (m == 0) {
        curl_easy_setopt(x->h, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(x->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
        curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, x->body);
        if (m != 1)
            curl_easy_setopt(x->h, CURLOPT_CUSTOMREQUEST, methods[m]);
    }
    return wk_engine_start(e, x, cb, arg, errstr, errlen); /* owns x from here */
nomem:
    rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "worker engine: out of memory");
fail:
    wk_xfer_free(x);
    return rc;
}
