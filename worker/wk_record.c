/*
 * wk_record.c — the attempt-record client (wk_record.h): one thread, one
 * libcurl multi handle, a submit queue and a result queue under one mutex.
 * The thread keeps the records waiting to be sent in submission order and
 * the transfers in flight (a probe, one record, or a batch of records).
 */
#include "wk_record.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kq_err.h"
#include "kq_log.h"
#include "kq_time.h"
#include "kq_trace.h"

#define REC_RESP_MAX 4096
#define REC_BATCH_RESP_MAX (1u << 20)
#define REC_PROBE_MS 2000

/* One record, from submit to its result. */
typedef struct rec_item {
    struct rec_item *next;
    char run_id[65];
    char *body;
    char tp[KQ_TRACEPARENT_LEN + 1]; /* "" = none */
    void *tag;
    unsigned tries;
    int single; /* 1: never in a batch (sent alone after its batch was refused) */
    int64_t not_before_ms;
} rec_item;

/* One HTTP request in flight: a probe, one record, or a batch of records. */
typedef struct rec_xfer {
    struct rec_xfer *aprev, *anext;
    CURL *h;
    char *url;
    char *body;              /* a batch's body (a single record's is its item's) */
    struct curl_slist *hdrs; /* a single record with a traceparent: the recorder's + it */
    rec_item **items;
    size_t n;
    int batch;
    int dead; /* a batch that could not start (its records went back to waiting) */
    char *resp;
    size_t resp_len, resp_cap, resp_max;
} rec_xfer;

typedef struct rec_done {
    struct rec_done *next;
    wk_record_result res;
} rec_done;

struct wk_recorder {
    char *base;
    char *ca_file; /* NULL: the system's CAs */
    struct curl_slist *hdrs;
    char *probe_url;
    char *batch_url;
    long timeout_ms, retry_base_ms, retry_cap_ms;
    int batch_max; /* > 1: batches; set to 0 for good when the route is missing */
    void (*notify)(void *arg);
    void *notify_arg;

    pthread_t thread;
    pthread_mutex_t mu;
    CURLM *multi;
    rec_item *inbox; /* submitted, not yet seen by the thread (LIFO; reversed there) */
    rec_done *done_head, *done_tail;
    atomic_int stop;
    atomic_int reachable;
    atomic_size_t pending;
    atomic_ulong n_ok, n_conflict, n_error, n_retries, n_in_flight, n_single, n_batch;
};

static size_t on_write(char *p, size_t sz, size_t n, void *arg)
{
    rec_xfer *x = arg;
    size_t len = sz * n;

    if (x->resp_len + len + 1 > x->resp_cap && x->resp_cap < x->resp_max) {
        size_t cap = x->resp_cap ? x->resp_cap : 1024;
        char *nr;
        while (cap < x->resp_len + len + 1 && cap < x->resp_max)
            cap *= 2;
        if (cap > x->resp_max)
            cap = x->resp_max;
        if ((nr = realloc(x->resp, cap)) != NULL) {
            x->resp = nr;
            x->resp_cap = cap;
        }
    }
    if (x->resp_cap == 0)
        return sz * n;
    if (len > x->resp_cap - 1 - x->resp_len)
        len = x->resp_cap - 1 - x->resp_len; /* the rest is dropped: answers are bounded */
    memcpy(x->resp + x->resp_len, p, len);
    x->resp_len += len;
    x->resp[x->resp_len] = '\0';
    return sz * n;
}

static void item_free(rec_item *it)
{
    if (it == NULL)
        return;
    free(it->body);
    free(it);
}

/* Free the transfer, not its items. */
static void xfer_free(rec_xfer *x)
{
    if (x == NULL)
        return;
    if (x->h)
        curl_easy_cleanup(x->h);
    free(x->url);
    free(x->body);
    curl_slist_free_all(x->hdrs);
    free(x->items);
    free(x->resp);
    free(x);
}

static rec_xfer *xfer_new(size_t n)
{
    rec_xfer *x = calloc(1, sizeof *x);

    if (x != NULL && n > 0 && (x->items = calloc(n, sizeof *x->items)) == NULL) {
        free(x);
        return NULL;
    }
    return x;
}

static int xfer_start(wk_recorder *r, rec_xfer *x)
{
    CURL *h = curl_easy_init();
    const char *body = x->batch ? x->body : x->n == 1 ? x->items[0]->body : NULL;

    if (h == NULL)
        return KQ_ENOMEM;
    x->resp_len = 0;
    x->resp_max = x->batch ? REC_BATCH_RESP_MAX : REC_RESP_MAX;
    curl_easy_setopt(h, CURLOPT_URL, x->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_PRIVATE, x);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    if (r->ca_file != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, r->ca_file);
    if (body != NULL && !x->batch && x->items[0]->tp[0] != '\0' && x->hdrs == NULL) {
        char line[sizeof "traceparent: " + KQ_TRACEPARENT_LEN];
        snprintf(line, sizeof line, "traceparent: %s", x->items[0]->tp);
        for (struct curl_slist *l = r->hdrs; l != NULL; l = l->next)
            if ((x->hdrs = curl_slist_append(x->hdrs, l->data)) == NULL)
                break;
        if (x->hdrs != NULL)
            x->hdrs = curl_slist_append(x->hdrs, line);
        if (x->hdrs == NULL) {
            curl_easy_cleanup(h);
            return KQ_ENOMEM;
        }
    }
    if (body != NULL) {
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->hdrs != NULL ? x->hdrs : r->hdrs);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    x->h = h;
    if (curl_multi_add_handle(r->multi, h) != CURLM_OK) {
        curl_easy_cleanup(h);
        x->h = NULL;
        return KQ_EIO;
    }
    atomic_fetch_add(&r->n_in_flight, 1);
    if (x->batch || x->n == 1) /* not the probes */
        atomic_fetch_add(x->batch ? &r->n_batch : &r->n_single, 1);
    return 0;
}

static void push_done(wk_recorder *r, rec_done *d)
{
    pthread_mutex_lock(&r->mu);
    if (r->done_tail)
        r->done_tail->next = d;
    else
        r->done_head = d;
    r->done_tail = d;
    pthread_mutex_unlock(&r->mu);
    if (r->notify)
        r->notify(r->notify_arg);
}

/* Fill the result from an answer (a single route's body, or a batch item). */
static void parse_answer(json_t *j, long status, wk_record_result *res)
{
    res->version = -1;
    if (j && status == 200) {
        json_t *v = json_object_get(j, "version");
        if (json_is_integer(v))
            res->version = json_integer_value(v);
    } else if (j) {
        json_t *e = json_object_get(j, "problem"); /* a batch item; else the body is one */
        const char *code, *msg;

        if (!json_is_object(e))
            e = j;
        code = json_string_value(json_object_get(e, "code"));
        msg = json_string_value(json_object_get(e, "detail"));
        if (code)
            snprintf(res->code, sizeof res->code, "%s", code);
        if (msg)
            snprintf(res->message, sizeof res->message, "%s", msg);
    }
}

static int64_t backoff(const wk_recorder *r, unsigned tries)
{
    int64_t d = r->retry_base_ms;

    for (unsigned i = 1; i < tries && d < r->retry_cap_ms; i++)
        d *= 2;
    return d < r->retry_cap_ms ? d : r->retry_cap_ms;
}

/* The thread's lists: records waiting (in order), transfers in flight. */
typedef struct rec_lists {
    rec_item *waiting, *wtail;
    rec_xfer *active;
    size_t nbatch; /* batch transfers in flight */
    int timeout;   /* ms until a waiting record is due */
} rec_lists;

static void wait_push(rec_lists *l, rec_item *it)
{
    it->next = NULL;
    if (l->wtail)
        l->wtail->next = it;
    else
        l->waiting = it;
    l->wtail = it;
}

/* Back to waiting: `fail` counts a try and backs off (a failed send). */
static void requeue(wk_recorder *r, rec_lists *l, rec_item *it, int fail, const char *why)
{
    if (fail) {
        int64_t d;
        it->tries++;
        atomic_fetch_add(&r->n_retries, 1);
        if (it->tries == 1 || it->tries % 10 == 0)
            kq_log_warn("recording run %s: %s (try %u); retrying", it->run_id, why, it->tries);
        d = backoff(r, it->tries);
        it->not_before_ms = kq_time_mono_ms() + d;
        if (d < l->timeout)
            l->timeout = (int)d;
    } else {
        it->not_before_ms = 0;
        l->timeout = 0;
    }
    wait_push(l, it);
}

/* A final answer for one record: its result is queued for wk_recorder_take. */
static void finish(wk_recorder *r, rec_lists *l, rec_item *it, long status, json_t *answer)
{
    rec_done *d = calloc(1, sizeof *d);

    if (d == NULL) { /* cannot report: try again later */
        requeue(r, l, it, 0, "out of memory");
        it->not_before_ms = kq_time_mono_ms() + r->retry_base_ms;
        return;
    }
    d->res.tag = it->tag;
    d->res.status = (int)status;
    d->res.retries = it->tries;
    parse_answer(answer, status, &d->res);
    if (status == 200)
        atomic_fetch_add(&r->n_ok, 1);
    else if (status == 409)
        atomic_fetch_add(&r->n_conflict, 1);
    else
        atomic_fetch_add(&r->n_error, 1);
    item_free(it);
    push_done(r, d);
}

static int retryable(long status)
{
    return status == 0 || status >= 500 || status == 429;
}

/* The answer of a batch transfer, item by item. */
static void batch_done(wk_recorder *r, rec_lists *l, rec_xfer *x, long status, CURLcode cres)
{
    json_t *j = NULL, *results = NULL;

    if (status == 200) {
        j = json_loadb(x->resp, x->resp_len, 0, NULL);
        results = json_object_get(j, "results");
        if (json_array_size(results) != x->n)
            status = 502; /* not the answer asked for: retried like a server error */
    }
    if (retryable(status)) {
        char why[96];
        snprintf(why, sizeof why, "batch of %zu: %s", x->n,
                 status ? "server error" : curl_easy_strerror(cres));
        for (size_t i = 0; i < x->n; i++)
            requeue(r, l, x->items[i], 1, why);
    } else if (status != 200) {
        if ((status == 404 || status == 405) && r->batch_max > 1) {
            kq_log_warn("kcqrs-commands has no batch attempt route (%ld): one request per "
                        "record from now on",
                        status);
        }
        if (status == 404 || status == 405)
            r->batch_max = 0;
        for (size_t i = 0; i < x->n; i++) { /* each alone: its own answer */
            x->items[i]->single = 1;
            requeue(r, l, x->items[i], 0, NULL);
        }
    } else {
        for (size_t i = 0; i < x->n; i++) {
            json_t *res = json_array_get(results, i);
            json_t *st = json_object_get(res, "status");
            long s = json_is_integer(st) ? (long)json_integer_value(st) : 502;
            if (s < 100 || s > 599)
                s = 502;
            if (retryable(s))
                requeue(r, l, x->items[i], 1, "server error");
            else
                finish(r, l, x->items[i], s, res);
        }
    }
    json_decref(j);
}

static void single_done(wk_recorder *r, rec_lists *l, rec_xfer *x, long status, CURLcode cres)
{
    rec_item *it = x->items[0];
    json_t *j;

    if (retryable(status)) {
        requeue(r, l, it, 1, status ? "server error" : curl_easy_strerror(cres));
        return;
    }
    j = json_loadb(x->resp, x->resp_len, 0, NULL);
    finish(r, l, it, status, j);
    json_decref(j);
}

static void active_add(rec_lists *l, rec_xfer *x)
{
    x->aprev = NULL;
    x->anext = l->active;
    if (l->active)
        l->active->aprev = x;
    l->active = x;
}

static void active_remove(rec_lists *l, rec_xfer *x)
{
    if (x->aprev)
        x->aprev->anext = x->anext;
    else
        l->active = x->anext;
    if (x->anext)
        x->anext->aprev = x->aprev;
}

/* Take the due records off `waiting` into transfers and start them. */
static void start_due(wk_recorder *r, rec_lists *l, int64_t now)
{
    rec_item *keep = NULL, *ktail = NULL, *it, *nx;
    rec_xfer *bx = NULL;
    size_t blen = 0;

    for (it = l->waiting, l->waiting = l->wtail = NULL; it; it = nx) {
        nx = it->next;
        it->next = NULL;
        if (it->not_before_ms > now) {
            int64_t wait = it->not_before_ms - now;
            if (wait < l->timeout)
                l->timeout = (int)wait;
            goto keep_it;
        }
        if (r->batch_max > 1 && !it->single) {
            size_t add = strlen(it->run_id) + strlen(it->body) + 16;
            if (bx != NULL && (bx->n == (size_t)r->batch_max || blen + add > WK_RECORD_BATCH_BYTES))
                bx = NULL; /* full: the next one (if a slot is free) */
            if (bx == NULL && l->nbatch < WK_RECORD_BATCH_FLIGHT) {
                if ((bx = xfer_new((size_t)r->batch_max)) == NULL)
                    goto keep_it;
                bx->batch = 1;
                active_add(l, bx); /* started below, once filled */
                l->nbatch++;
                blen = 16;
            }
            if (bx == NULL)
                goto keep_it; /* every batch slot busy: waits for an answer */
            bx->items[bx->n++] = it;
            blen += add;
            continue;
        } else {
            rec_xfer *x = xfer_new(1);
            if (x == NULL || (x->url = malloc(strlen(r->base) + strlen(it->run_id) + 40)) == NULL) {
                xfer_free(x);
                goto keep_it;
            }
            sprintf(x->url, "%s/internal/v1/runs/%s/attempts", r->base, it->run_id);
            x->items[0] = it;
            x->n = 1;
            if (xfer_start(r, x) != 0) {
                x->n = 0;
                xfer_free(x);
                it->tries++;
                it->not_before_ms = now + backoff(r, it->tries);
                goto keep_it;
            }
            active_add(l, x);
            continue;
        }
    keep_it:
        if (ktail)
            ktail->next = it;
        else
            keep = it;
        ktail = it;
    }
    l->waiting = keep;
    l->wtail = ktail;
    /* build and start the batches filled above */
    for (rec_xfer *x = l->active; x; x = x->anext) {
        size_t cap = 32;
        if (!x->batch || x->h != NULL || x->dead)
            continue;
        for (size_t i = 0; i < x->n; i++)
            cap +=
                strlen(x->items[i]->run_id) + strlen(x->items[i]->body) + 32 + KQ_TRACEPARENT_LEN;
        if ((x->body = malloc(cap)) != NULL && (x->url = strdup(r->batch_url)) != NULL) {
            char *p = x->body;
            p += sprintf(p, "{\"attempts\":[");
            for (size_t i = 0; i < x->n; i++) {
                const char *b = x->items[i]->body;
                /* {"run_id":"ID", + the record's own fields ("{}" has none) */
                p += sprintf(p, "%s{\"run_id\":\"%s\"", i ? "," : "", x->items[i]->run_id);
                if (x->items[i]->tp[0] != '\0') /* the attempt's trace (cmd_api_batch.c) */
                    p += sprintf(p, ",\"traceparent\":\"%s\"", x->items[i]->tp);
                p += sprintf(p, "%s%s", strcmp(b, "{}") == 0 ? "" : ",",
                             strcmp(b, "{}") == 0 ? "}" : b + 1);
            }
            sprintf(p, "]}");
            if (xfer_start(r, x) == 0)
                continue;
        }
        /* could not start: the records wait for the next round */
        for (size_t i = 0; i < x->n; i++)
            requeue(r, l, x->items[i], 1, "cannot start a request");
        x->n = 0;
        x->dead = 1;
    }
    for (rec_xfer *x = l->active, *xn; x; x = xn) {
        xn = x->anext;
        if (x->dead) {
            active_remove(l, x);
            l->nbatch--;
            xfer_free(x);
        }
    }
}

static void *rec_thread(void *arg)
{
    wk_recorder *r = arg;
    rec_lists l = {NULL, NULL, NULL, 0, 1000};
    int64_t last_probe = 0;

    while (!atomic_load(&r->stop)) {
        rec_item *in, *rev = NULL;
        int running, left;
        int64_t now;
        CURLMsg *m;

        l.timeout = 1000;
        pthread_mutex_lock(&r->mu);
        in = r->inbox;
        r->inbox = NULL;
        pthread_mutex_unlock(&r->mu);
        while (in) { /* LIFO -> submission order */
            rec_item *n = in->next;
            in->next = rev;
            rev = in;
            in = n;
        }
        while (rev) {
            rec_item *n = rev->next;
            wait_push(&l, rev);
            rev = n;
        }
        now = kq_time_mono_ms();
        if (atomic_load(&r->n_in_flight) == 0 && l.waiting == NULL &&
            now - last_probe >= REC_PROBE_MS) {
            rec_xfer *p = xfer_new(0);
            if (p && (p->url = strdup(r->probe_url)) != NULL && xfer_start(r, p) == 0)
                active_add(&l, p);
            else
                xfer_free(p);
            last_probe = now;
        }
        start_due(r, &l, now);
        curl_multi_perform(r->multi, &running);
        while ((m = curl_multi_info_read(r->multi, &left)) != NULL) {
            rec_xfer *x;
            long status = 0;
            CURLcode cres;
            if (m->msg != CURLMSG_DONE)
                continue;
            cres = m->data.result; /* m belongs to the handle: read it before the cleanup */
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            if (cres == CURLE_OK)
                curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            curl_multi_remove_handle(r->multi, m->easy_handle);
            atomic_fetch_sub(&r->n_in_flight, 1);
            active_remove(&l, x);
            curl_easy_cleanup(x->h);
            x->h = NULL;
            atomic_store(&r->reachable, status > 0);
            if (x->batch) {
                l.nbatch--;
                batch_done(r, &l, x, status, cres);
            } else if (x->n == 1) {
                single_done(r, &l, x, status, cres);
            }
            xfer_free(x);
        }
        if (atomic_load(&r->stop))
            break;
        if (l.waiting && l.timeout > 0) {
            int64_t n2 = kq_time_mono_ms();
            for (rec_item *it = l.waiting; it; it = it->next)
                if (it->not_before_ms <= n2 &&
                    (it->single || r->batch_max <= 1 || l.nbatch < WK_RECORD_BATCH_FLIGHT))
                    l.timeout = 0;
        }
        curl_multi_poll(r->multi, NULL, 0, l.timeout, NULL);
    }
    while (l.waiting) {
        rec_item *n = l.waiting->next;
        item_free(l.waiting);
        l.waiting = n;
    }
    while (l.active) {
        rec_xfer *n = l.active->anext;
        if (l.active->h)
            curl_multi_remove_handle(r->multi, l.active->h);
        for (size_t i = 0; i < l.active->n; i++)
            item_free(l.active->items[i]);
        xfer_free(l.active);
        l.active = n;
    }
    return NULL;
}

/* Free what the recorder holds beside its queues, and the recorder (no thread runs). */
static void release(wk_recorder *r)
{
    if (r->multi)
        curl_multi_cleanup(r->multi);
    curl_slist_free_all(r->hdrs);
    free(r->probe_url);
    free(r->ca_file);
    free(r->batch_url);
    free(r->base);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

wk_recorder *wk_recorder_new(const wk_record_settings *s, char *errstr, size_t errlen)
{
    wk_recorder *r;
    char auth[600];
    size_t bl;

    if (s == NULL || s->base_url == NULL || s->key == NULL || s->timeout_ms <= 0 ||
        s->retry_base_ms <= 0 || s->retry_cap_ms < s->retry_base_ms) {
        kq_seterr(errstr, errlen, KQ_EINVAL, "record client: bad settings");
        return NULL;
    }
    if (strncmp(s->base_url, "http://", 7) != 0 && strncmp(s->base_url, "https://", 8) != 0) {
        kq_seterr(errstr, errlen, KQ_EINVAL, "commands URL '%s' is not http(s)://", s->base_url);
        return NULL;
    }
    if (strlen(s->key) == 0 || strlen(s->key) > 512 || strpbrk(s->key, "\r\n \t")) {
        kq_seterr(errstr, errlen, KQ_EINVAL, "worker key is empty, too long or has blanks");
        return NULL;
    }
    if ((r = calloc(1, sizeof *r)) == NULL) {
        kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    r->base = strdup(s->base_url);
    if (r->base) {
        bl = strlen(r->base);
        while (bl > 0 && r->base[bl - 1] == '/')
            r->base[--bl] = '\0';
    }
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", s->key);
    r->hdrs = curl_slist_append(NULL, auth);
    if (r->hdrs)
        r->hdrs = curl_slist_append(r->hdrs, "Content-Type: application/json");
    r->timeout_ms = s->timeout_ms;
    r->retry_base_ms = s->retry_base_ms;
    r->retry_cap_ms = s->retry_cap_ms;
    r->batch_max = s->batch_max > WK_RECORD_BATCH_MAX ? WK_RECORD_BATCH_MAX : s->batch_max;
    r->notify = s->notify;
    r->notify_arg = s->notify_arg;
    r->multi = curl_multi_init();
    if (r->base && (r->probe_url = malloc(strlen(r->base) + 8)) != NULL)
        sprintf(r->probe_url, "%s/health", r->base);
    if (r->base && (r->batch_url = malloc(strlen(r->base) + 32)) != NULL)
        sprintf(r->batch_url, "%s/internal/v1/runs/attempts", r->base);
    if (s->ca_file != NULL)
        r->ca_file = strdup(s->ca_file);
    if (r->base == NULL || r->hdrs == NULL || r->multi == NULL || r->probe_url == NULL ||
        r->batch_url == NULL || (s->ca_file != NULL && r->ca_file == NULL)) {
        kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        goto fail;
    }
    curl_multi_setopt(r->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 64L);
    if (pthread_create(&r->thread, NULL, rec_thread, r) != 0) {
        kq_seterr(errstr, errlen, KQ_EIO, "record client: cannot start its thread");
        goto fail;
    }
    return r;
fail:
    release(r);
    return NULL;
}

void wk_recorder_free(wk_recorder *r)
{
    if (r == NULL)
        return;
    atomic_store(&r->stop, 1);
    curl_multi_wakeup(r->multi);
    pthread_join(r->thread, NULL); /* the thread freed what it held */
    while (r->inbox) {
        rec_item *n = r->inbox->next;
        item_free(r->inbox);
        r->inbox = n;
    }
    while (r->done_head) {
        rec_done *n = r->done_head->next;
        free(r->done_head);
        r->done_head = n;
    }
    release(r);
}

int wk_recorder_submit(wk_recorder *r, const char *run_id, const char *body,
                       const char *traceparent, void *tag)
{
    rec_item *it;
    size_t n = strlen(run_id);
    kq_trace_ctx tc;

    if (n == 0 || n > 64 ||
        strspn(run_id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                       "0123456789._-") != n)
        return KQ_EINVAL;
    if (traceparent != NULL && kq_trace_parse(traceparent, &tc) != 0)
        return KQ_EINVAL;
    if ((it = calloc(1, sizeof *it)) == NULL)
        return KQ_ENOMEM;
    it->body = strdup(body);
    if (it->body == NULL) {
        item_free(it);
        return KQ_ENOMEM;
    }
    memcpy(it->run_id, run_id, n + 1);
    if (traceparent != NULL)
        kq_trace_format(&tc, it->tp); /* its canonical text: safe in JSON and in a header */
    it->tag = tag;
    atomic_fetch_add(&r->pending, 1);
    pthread_mutex_lock(&r->mu);
    it->next = r->inbox;
    r->inbox = it;
    pthread_mutex_unlock(&r->mu);
    curl_multi_wakeup(r->multi);
    return 0;
}

size_t wk_recorder_take(wk_recorder *r, wk_record_result *out, size_t max)
{
    size_t n = 0;

    pthread_mutex_lock(&r->mu);
    while (n < max && r->done_head) {
        rec_done *d = r->done_head;
        r->done_head = d->next;
        if (r->done_head == NULL)
            r->done_tail = NULL;
        out[n++] = d->res;
        free(d);
    }
    pthread_mutex_unlock(&r->mu);
    atomic_fetch_sub(&r->pending, n);
    return n;
}

size_t wk_recorder_pending(wk_recorder *r)
{
    return atomic_load(&r->pending);
}

int wk_recorder_reachable(wk_recorder *r)
{
    return atomic_load(&r->reachable);
}

void wk_recorder_metrics(wk_recorder *r, FILE *out)
{
    fprintf(out,
            "# HELP kcqrs_worker_records_total Attempt records answered by kcqrs-commands.\n"
            "# TYPE kcqrs_worker_records_total counter\n"
            "kcqrs_worker_records_total{result=\"ok\"} %lu\n"
            "kcqrs_worker_records_total{result=\"conflict\"} %lu\n"
            "kcqrs_worker_records_total{result=\"error\"} %lu\n"
            "# HELP kcqrs_worker_record_retries_total Record sends retried (connection error, "
            "5xx, 429).\n"
            "# TYPE kcqrs_worker_record_retries_total counter\n"
            "kcqrs_worker_record_retries_total %lu\n"
            "# HELP kcqrs_worker_records_pending Records submitted and not answered yet.\n"
            "# TYPE kcqrs_worker_records_pending gauge\n"
            "kcqrs_worker_records_pending %zu\n"
            "# HELP kcqrs_worker_commands_reachable 1 if kcqrs-commands answered last time.\n"
            "# TYPE kcqrs_worker_commands_reachable gauge\n"
            "kcqrs_worker_commands_reachable %d\n"
            "# HELP kcqrs_worker_record_requests_total Record requests sent to kcqrs-commands "
            "(one record, or a batch).\n"
            "# TYPE kcqrs_worker_record_requests_total counter\n"
            "kcqrs_worker_record_requests_total{route=\"single\"} %lu\n"
            "kcqrs_worker_record_requests_total{route=\"batch\"} %lu\n",
            atomic_load(&r->n_ok), atomic_load(&r->n_conflict), atomic_load(&r->n_error),
            atomic_load(&r->n_retries), atomic_load(&r->pending), atomic_load(&r->reachable),
            atomic_load(&r->n_single), atomic_load(&r->n_batch));
}

char *wk_record_body(uint32_t step, uint32_t attempt, int status_code, const char *error,
                     int64_t duration_ms, int64_t next_delay_ms, const char *delivery_id,
                     int outcome)
{
    static const char *const names[] = {"", "retry", "succeeded", "failed"};
    json_t *o = json_object();
    char *s = NULL;

    if (o == NULL || outcome < 1 || outcome > 3)
        goto out;
    if (json_object_set_new(o, "step", json_integer(step)) ||
        json_object_set_new(o, "attempt", json_integer(attempt)) ||
        (status_code >= 0 && json_object_set_new(o, "status_code", json_integer(status_code))) ||
        (error && json_object_set_new(o, "error", json_string(error))) ||
        json_object_set_new(o, "duration_ms", json_integer(duration_ms < 0 ? 0 : duration_ms)) ||
        (outcome == 1 &&
         json_object_set_new(o, "next_delay_ms",
                             json_integer(next_delay_ms < 0 ? 0 : next_delay_ms))) ||
        json_object_set_new(o, "delivery_id", json_string(delivery_id)) ||
        json_object_set_new(o, "outcome", json_string(names[outcome])))
        goto out;
    s = json_dumps(o, JSON_COMPACT);
out:
    json_decref(o);
    return s;
}
