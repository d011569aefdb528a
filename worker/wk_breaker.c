/*
 * wk_breaker.c — circuit breakers keyed by destination: a small chained hash
 * table of entries under one mutex (see wk_breaker.h).
 */
#include "wk_breaker.h"

#include <ctype.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kq_err.h"
#include "kq_log.h"

typedef struct wk_bentry {
    struct wk_bentry *next;
    wk_breaker_state state;
    unsigned failures;  /* consecutive, while closed */
    unsigned probes;    /* in flight, while half-open */
    uint64_t opened_at; /* ms, while open */
    uint64_t transitions[3];
    char dest[];
} wk_bentry;

struct wk_breaker_set {
    pthread_mutex_t mu;
    wk_breaker_cfg cfg;
    wk_clock_fn clock;
    void *clock_arg;
    wk_breaker_change_fn on_change;
    void *change_arg;
    wk_bentry **buckets;
    size_t nbuckets;
    size_t count;
};

void wk_breaker_defaults(wk_breaker_cfg *cfg)
{
    cfg->failure_threshold = WK_BREAKER_DEFAULT_FAILURES;
    cfg->cooldown_ms = WK_BREAKER_DEFAULT_COOLDOWN_MS;
    cfg->half_open_probes = WK_BREAKER_DEFAULT_PROBES;
}

const char *wk_breaker_state_name(wk_breaker_state s)
{
    switch (s) {
    case WK_BREAKER_CLOSED:
        return "closed";
    case WK_BREAKER_OPEN:
        return "open";
    case WK_BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "unknown";
}

uint64_t wk_breaker_clock_monotonic(void *arg)
{
    struct timespec ts;
    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

wk_breaker_set *wk_breaker_new(const wk_breaker_cfg *cfg, wk_clock_fn clock, void *clock_arg,
                               wk_breaker_change_fn on_change, void *change_arg, char *errstr,
                               size_t errlen)
{
    wk_breaker_set *set = NULL;
    if (cfg == NULL || cfg->failure_threshold < 1 || cfg->cooldown_ms <= 0 ||
        cfg->half_open_probes < 1) {
        kq_seterr(errstr, errlen, KQ_EINVAL,
                  "circuit breaker: threshold >= 1, cool-down > 0 ms and probes >= 1 required");
        return NULL;
    }
    set = calloc(1, sizeof *set);
    if (set == NULL)
        goto nomem;
    set->nbuckets = 64;
    set->buckets = calloc(set->nbuckets, sizeof *set->buckets);
    if (set->buckets == NULL)
        goto nomem;
    pthread_mutex_init(&set->mu, NULL);
    set->cfg = *cfg;
    set->clock = clock != NULL ? clock : wk_breaker_clock_monotonic;
    set->clock_arg = clock_arg;
    set->on_change = on_change;
    set->change_arg = change_arg;
    return set;
nomem:
    if (set != NULL)
        free(set->buckets);
    free(set);
    kq_seterr(errstr, errlen, KQ_ENOMEM, "circuit breaker: out of memory");
    return NULL;
}

void wk_breaker_free(wk_breaker_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->nbuckets; i++) {
        wk_bentry *e = set->buckets[i];
        while (e != NULL) {
            wk_bentry *n = e->next;
            free(e);
            e = n;
        }
    }
    pthread_mutex_destroy(&set->mu);
    free(set->buckets);
    free(set);
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static void grow(wk_breaker_set *set)
{
    size_t nb = set->nbuckets * 2;
    wk_bentry **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return; /* keep the longer chains */
    for (size_t i = 0; i < set->nbuckets; i++) {
        wk_bentry *e = set->buckets[i];
        while (e != NULL) {
            wk_bentry *n = e->next;
            size_t k = hash_str(e->dest) & (nb - 1);
            e->next = b[k];
            b[k] = e;
            e = n;
        }
    }
    free(set->buckets);
    set->buckets = b;
    set->nbuckets = nb;
}

/* The entry for dest; created when `create`. NULL if absent (or no memory). */
static wk_bentry *lookup(wk_breaker_set *set, const char *dest, int create)
{
    size_t k = hash_str(dest) & (set->nbuckets - 1);
    for (wk_bentry *e = set->buckets[k]; e != NULL; e = e->next)
        if (strcmp(e->dest, dest) == 0)
            return e;
    if (!create)
        return NULL;
    size_t n = strlen(dest);
    wk_bentry *e = calloc(1, sizeof *e + n + 1);
    if (e == NULL)
        return NULL;
    memcpy(e->dest, dest, n + 1);
    e->next = set->buckets[k];
    set->buckets[k] = e;
    if (++set->count > set->nbuckets * 2)
        grow(set);
    return e;
}

static void change(wk_breaker_set *set, wk_bentry *e, wk_breaker_state to)
{
    wk_breaker_state from = e->state;
    if (from == to)
        return;
    e->state = to;
    e->transitions[to]++;
    if (to == WK_BREAKER_OPEN) {
        e->opened_at = set->clock(set->clock_arg);
        e->probes = 0;
        kq_log_warn("circuit breaker %s: %s -> open (retry after %ld ms)", e->dest,
                    wk_breaker_state_name(from), set->cfg.cooldown_ms);
    } else {
        if (to == WK_BREAKER_CLOSED)
            e->failures = 0;
        e->probes = 0;
        kq_log_info("circuit breaker %s: %s -> %s", e->dest, wk_breaker_state_name(from),
                    wk_breaker_state_name(to));
    }
    if (set->on_change != NULL)
        set->on_change(set->change_arg, e->dest, from, to);
}

/* Open long enough? Then half-open. */
static void tick(wk_breaker_set *set, wk_bentry *e)
{
    if (e->state == WK_BREAKER_OPEN &&
        set->clock(set->clock_arg) - e->opened_at >= (uint64_t)set->cfg.cooldown_ms)
        change(set, e, WK_BREAKER_HALF_OPEN);
}

int wk_breaker_allow(wk_breaker_set *set, const char *dest)
{
    int ok = 1;
    pthread_mutex_lock(&set->mu);
    wk_bentry *e = lookup(set, dest, 0);
    if (e != NULL) {
        tick(set, e);
        if (e->state == WK_BREAKER_OPEN)
            ok = 0;
        else if (e->state == WK_BREAKER_HALF_OPEN) {
            if (e->probes >= set->cfg.half_open_probes)
                ok = 0;
            else
                e->probes++;
        }
    }
    pthread_mutex_unlock(&set->mu);
    return ok;
}

void wk_breaker_record(wk_breaker_set *set, const char *dest, int failure)
{
    pthread_mutex_lock(&set->mu);
    wk_bentry *e = lookup(set, dest, failure);
    if (e == NULL)
        goto out; /* a success for a destination never seen failing: nothing to keep */
    tick(set, e);
    switch (e->state) {
    case WK_BREAKER_CLOSED:
        if (!failure)
            e->failures = 0;
        else if (++e->failures >= set->cfg.failure_threshold)
            change(set, e, WK_BREAKER_OPEN);
        break;
    case WK_BREAKER_HALF_OPEN:
        if (e->probes > 0)
            e->probes--;
        change(set, e, failure ? WK_BREAKER_OPEN : WK_BREAKER_CLOSED);
        break;
    case WK_BREAKER_OPEN:
        break; /* a late answer of a request sent before it opened */
    }
out:
    pthread_mutex_unlock(&set->mu);
}

long wk_breaker_retry_in_ms(wk_breaker_set *set, const char *dest)
{
    long ms = 0;
    pthread_mutex_lock(&set->mu);
    wk_bentry *e = lookup(set, dest, 0);
    if (e != NULL) {
        tick(set, e);
        if (e->state == WK_BREAKER_OPEN) {
            uint64_t el = set->clock(set->clock_arg) - e->opened_at;
            ms = set->cfg.cooldown_ms - (long)el;
            if (ms < 1)
                ms = 1;
        }
    }
    pthread_mutex_unlock(&set->mu);
    return ms;
}

wk_breaker_state wk_breaker_get(wk_breaker_set *set, const char *dest)
{
    wk_breaker_state s = WK_BREAKER_CLOSED;
    pthread_mutex_lock(&set->mu);
    wk_bentry *e = lookup(set, dest, 0);
    if (e != NULL) {
        tick(set, e);
        s = e->state;
    }
    pthread_mutex_unlock(&set->mu);
    return s;
}

int wk_breaker_metrics(wk_breaker_set *set, char *buf, size_t len)
{
    size_t off = 0;
    int rc = 0;
    static const char head[] =
        "# HELP kcqrs_worker_breaker_state Circuit breaker state per destination "
        "(0 closed, 1 open, 2 half-open).\n"
        "# TYPE kcqrs_worker_breaker_state gauge\n"
        "# HELP kcqrs_worker_breaker_transitions_total Circuit breaker state changes.\n"
        "# TYPE kcqrs_worker_breaker_transitions_total counter\n";
    pthread_mutex_lock(&set->mu);
    int n = snprintf(buf, len, "%s", head);
    if (n < 0 || (size_t)n >= len)
        goto full;
    off = (size_t)n;
    for (size_t i = 0; i < set->nbuckets; i++)
        for (wk_bentry *e = set->buckets[i]; e != NULL; e = e->next) {
            tick(set, e);
            n = snprintf(buf + off, len - off,
                         "kcqrs_worker_breaker_state{destination=\"%s\"} %d\n", e->dest,
                         (int)e->state);
            if (n < 0 || (size_t)n >= len - off)
                goto full;
            off += (size_t)n;
            for (int s = 0; s < 3; s++) {
                n = snprintf(buf + off, len - off,
                             "kcqrs_worker_breaker_transitions_total{destination=\"%s\",to=\"%s\"} "
                             "%llu\n",
                             e->dest, wk_breaker_state_name((wk_breaker_state)s),
                             (unsigned long long)e->transitions[s]);
                if (n < 0 || (size_t)n >= len - off)
                    goto full;
                off += (size_t)n;
            }
        }
    rc = (int)off;
    goto out;
full:
    rc = KQ_ERANGE;
    if (len > 0)
        buf[0] = '\0';
out:
    pthread_mutex_unlock(&set->mu);
    return rc;
}

int wk_breaker_key(const char *url, char *buf, size_t len, char *errstr, size_t errlen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    int rc = 0;
    if (u == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    if (url == NULL || curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        rc = kq_seterr(errstr, errlen, KQ_EINVAL, "not an absolute URL with a host: '%.200s'",
                       url ? url : "(null)");
        goto out;
    }
    for (char *p = host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    int n = snprintf(buf, len, "%s://%s:%s", scheme, host, port);
    if (n < 0 || (size_t)n >= len)
        rc = kq_seterr(errstr, errlen, KQ_ERANGE, "destination too long: '%.200s'", url);
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}
