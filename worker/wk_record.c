/*
 * wk_record.c — the attempt-record client (wk_record.h): one thread, one
 * libcurl multi handle, a submit queue and a result queue under one mutex.
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

#define REC_RESP_MAX 4096
#define REC_PROBE_MS 2000

typedef struct rec_item {
    struct rec_item *next;
    struct rec_item *aprev, *anext; /* the thread's list of started transfers */
    char *url;
    char *body;
    void *tag;
    unsigned tries;
    int64_t not_before_ms;
    CURL *h;
    char resp[REC_RESP_MAX];
    size_t resp_len;
    int probe; /* GET /health */
} rec_item;

typedef struct rec_done {
    struct rec_done *next;
    wk_record_result res;
} rec_done;

struct wk_recorder {
    char *base;
    char *ca_file; /* NULL: the system's CAs */
    struct curl_slist *hdrs;
    char *probe_url;
    long timeout_ms, retry_base_ms, retry_cap_ms;
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
    atomic_ulong n_ok, n_conflict, n_error, n_retries, n_in_flight;
};

static size_t on_write(char *p, size_t sz, size_t n, void *arg)
{
    rec_item *it = arg;
    size_t len = sz * n, room = sizeof it->resp - 1 - it->resp_len;

    if (len > room)
        len = room; /* the rest is dropped: answers are small */
    memcpy(it->resp + it->resp_len, p, len);
    it->resp_len += len;
    it->resp[it->resp_len] = '\0';
    return sz * n;
}

static void item_free(rec_item *it)
{
    if (it == NULL)
        return;
    if (it->h)
        curl_easy_cleanup(it->h);
    free(it->url);
    free(it->body);
    free(it);
}

static int item_start(wk_recorder *r, rec_item *it)
{
    CURL *h = curl_easy_init();

    if (h == NULL)
        return KQ_ENOMEM;
    it->resp_len = 0;
    it->resp[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, it->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, it);
    curl_easy_setopt(h, CURLOPT_PRIVATE, it);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    if (r->ca_file != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, r->ca_file);
    if (!it->probe) {
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, r->hdrs);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, it->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(it->body));
    }
    it->h = h;
    if (curl_multi_add_handle(r->multi, h) != CURLM_OK) {
        curl_easy_cleanup(h);
        it->h = NULL;
        return KQ_EIO;
    }
    atomic_fetch_add(&r->n_in_flight, 1);
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

/* Fill the result from the answer. */
static void parse_answer(rec_item *it, long status, wk_record_result *res)
{
    json_t *j = json_loadb(it->resp, it->resp_len, 0, NULL);

    res->version = -1;
    if (j && status == 200) {
        json_t *v = json_object_get(j, "version");
        if (json_is_integer(v))
            res->version = json_integer_value(v);
    } else if (j) {
        json_t *e = json_object_get(j, "error");
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        if (code)
            snprintf(res->code, sizeof res->code, "%s", code);
        if (msg)
            snprintf(res->message, sizeof res->message, "%s", msg);
    }
    json_decref(j);
}

static int64_t backoff(const wk_recorder *r, unsigned tries)
{
    int64_t d = r->retry_base_ms;

    for (unsigned i = 1; i < tries && d < r->retry_cap_ms; i++)
        d *= 2;
    return d < r->retry_cap_ms ? d : r->retry_cap_ms;
}

static void *rec_thread(void *arg)
{
    wk_recorder *r = arg;
    rec_item *waiting = NULL; /* not started, not_before in the future or just arrived */
    rec_item *active = NULL;  /* in the multi handle */
    int64_t last_probe = 0;

    while (!atomic_load(&r->stop)) {
        rec_item *in, **pp;
        int running, left, timeout = 1000;
        int64_t now;
        CURLMsg *m;

        pthread_mutex_lock(&r->mu);
        in = r->inbox;
        r->inbox = NULL;
        pthread_mutex_unlock(&r->mu);
        while (in) { /* reverse into waiting: submission order */
            rec_item *n = in->next;
            in->next = waiting;
            waiting = in;
            in = n;
        }
        now = kq_time_mono_ms();
        if (atomic_load(&r->n_in_flight) == 0 && waiting == NULL &&
            now - last_probe >= REC_PROBE_MS) {
            rec_item *p = calloc(1, sizeof *p);
            if (p && (p->url = strdup(r->probe_url)) != NULL) {
                p->probe = 1;
                p->next = waiting;
                waiting = p;
            } else
                item_free(p);
            last_probe = now;
        }
        for (pp = &waiting; *pp;) {
            rec_item *it = *pp;
            if (it->not_before_ms <= now) {
                *pp = it->next;
                it->next = NULL;
                if (item_start(r, it) != 0) {
                    it->tries++;
                    it->not_before_ms = now + backoff(r, it->tries);
                    it->next = *pp;
                    *pp = it;
                    pp = &it->next;
                } else {
                    it->aprev = NULL;
                    it->anext = active;
                    if (active)
                        active->aprev = it;
                    active = it;
                }
            } else {
                int64_t wait = it->not_before_ms - now;
                if (wait < timeout)
                    timeout = (int)wait;
                pp = &it->next;
            }
        }
        curl_multi_perform(r->multi, &running);
        while ((m = curl_multi_info_read(r->multi, &left)) != NULL) {
            rec_item *it;
            long status = 0;
            CURLcode cres;
            if (m->msg != CURLMSG_DONE)
                continue;
            cres = m->data.result; /* m belongs to the handle: read it before the cleanup */
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&it);
            if (cres == CURLE_OK)
                curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            curl_multi_remove_handle(r->multi, m->easy_handle);
            atomic_fetch_sub(&r->n_in_flight, 1);
            if (it->aprev)
                it->aprev->anext = it->anext;
            else
                active = it->anext;
            if (it->anext)
                it->anext->aprev = it->aprev;
            curl_easy_cleanup(it->h);
            it->h = NULL;
            atomic_store(&r->reachable, status > 0);
            if (it->probe) {
                item_free(it);
                continue;
            }
            if (status == 0 || status >= 500 || status == 429) {
                it->tries++;
                atomic_fetch_add(&r->n_retries, 1);
                if (it->tries == 1 || it->tries % 10 == 0)
                    kq_log_warn("recording %s: %s (try %u); retrying", it->url,
                                status ? "server error" : curl_easy_strerror(cres), it->tries);
                it->not_before_ms = kq_time_mono_ms() + backoff(r, it->tries);
                it->next = waiting;
                waiting = it;
                if (backoff(r, it->tries) < timeout)
                    timeout = (int)backoff(r, it->tries);
                continue;
            }
            {
                rec_done *d = calloc(1, sizeof *d);
                if (d == NULL) { /* cannot report: try again later */
                    it->not_before_ms = kq_time_mono_ms() + r->retry_base_ms;
                    it->next = waiting;
                    waiting = it;
                    continue;
                }
                d->res.tag = it->tag;
                d->res.status = (int)status;
                d->res.retries = it->tries;
                parse_answer(it, status, &d->res);
                if (status == 200)
                    atomic_fetch_add(&r->n_ok, 1);
                else if (status == 409)
                    atomic_fetch_add(&r->n_conflict, 1);
                else
                    atomic_fetch_add(&r->n_error, 1);
                item_free(it);
                push_done(r, d);
            }
        }
        if (atomic_load(&r->stop))
            break;
        if (waiting && timeout > 0) {
            int64_t n2 = kq_time_mono_ms();
            for (rec_item *it = waiting; it; it = it->next)
                if (it->not_before_ms <= n2)
                    timeout = 0;
        }
        curl_multi_poll(r->multi, NULL, 0, timeout, NULL);
    }
    while (waiting) {
        rec_item *n = waiting->next;
        item_free(waiting);
        waiting = n;
    }
    while (active) {
        rec_item *n = active->anext;
        curl_multi_remove_handle(r->multi, active->h);
        item_free(active);
        active = n;
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
    r->notify = s->notify;
    r->notify_arg = s->notify_arg;
    r->multi = curl_multi_init();
    if (r->base && (r->probe_url = malloc(strlen(r->base) + 8)) != NULL)
        sprintf(r->probe_url, "%s/health", r->base);
    if (s->ca_file != NULL)
        r->ca_file = strdup(s->ca_file);
    if (r->base == NULL || r->hdrs == NULL || r->multi == NULL || r->probe_url == NULL ||
        (s->ca_file != NULL && r->ca_file == NULL)) {
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

int wk_recorder_submit(wk_recorder *r, const char *run_id, const char *body, void *tag)
{
    rec_item *it;
    size_t n = strlen(run_id);

    if (n == 0 || n > 64 ||
        strspn(run_id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                       "0123456789._-") != n)
        return KQ_EINVAL;
    if ((it = calloc(1, sizeof *it)) == NULL)
        return KQ_ENOMEM;
    it->url = malloc(strlen(r->base) + n + 40);
    it->body = strdup(body);
    if (it->url == NULL || it->body == NULL) {
        item_free(it);
        return KQ_ENOMEM;
    }
    sprintf(it->url, "%s/internal/v1/runs/%s/attempts", r->base, run_id);
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
            "kcqrs_worker_commands_reachable %d\n",
            atomic_load(&r->n_ok), atomic_load(&r->n_conflict), atomic_load(&r->n_error),
            atomic_load(&r->n_retries), atomic_load(&r->pending), atomic_load(&r->reachable));
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
