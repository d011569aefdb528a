/*
 * wk_breaker.c — circuit breakers keyed by destination: a kq_map of entries
 * under one mutex (see wk_breaker.h).
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
#include "kq_map.h"
#include "kq_time.h"

typedef struct wk_bentry {
    char *dest; /* owned copy of the key (log lines, metrics) */
    wk_breaker_state state;
    unsigned failures;  /* consecutive, while closed */
    unsigned probes;    /* in flight, while half-open */
    uint64_t opened_at; /* ms, while open */
    uint64_t transitions[3];
} wk_bentry;

struct wk_breaker_set {
    pthread_mutex_t mu;
    wk_breaker_cfg cfg;
    wk_clock_fn clock;
    void *clock_arg;
    wk_breaker_change_fn on_change;
    void *change_arg;
    kq_map *map; /* dest -> wk_bentry */
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
    (void)arg;
    return (uint64_t)kq_time_mono_ms();
}

/* kq_map's clear callback: what an entry owns. */
static void entry_clear(void *val)
{
    wk_bentry *e = val;

    free(e->dest);
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
    set->map = kq_map_new(sizeof(wk_bentry), entry_clear);
    if (set->map == NULL)
        goto nomem;
    pthread_mutex_init(&set->mu, NULL);
    set->cfg = *cfg;
    set->clock = clock != NULL ? clock : wk_breaker_clock_monotonic;
    set->clock_arg = clock_arg;
    set->on_change = on_change;
    set->change_arg = change_arg;
    return set;
nomem:
    free(set);
    kq_seterr(errstr, errlen, KQ_ENOMEM, "circuit breaker: out of memory");
    return NULL;
}

void wk_breaker_free(wk_breaker_set *set)
{
    if (set == NULL)
        return;
    kq_map_free(set->map);
    pthread_mutex_destroy(&set->mu);
    free(set);
}

/* The entry for dest; created when `create`. NULL if absent (or no memory). */
static wk_bentry *lookup(wk_breaker_set *set, const char *dest, int create)
{
    wk_bentry *e = kq_map_get(set->map, dest);
    int created = 0;

    if (e != NULL || !create)
        return e;
    if ((e = kq_map_put(set->map, dest, &created)) == NULL)
        return NULL;
    if ((e->dest = strdup(dest)) == NULL) {
        kq_map_remove(set->map, dest);
        return NULL;
    }
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

/* Lock the set; dest's entry, ticked (created when `create`), or NULL when
 * absent. The caller unlocks set->mu. */
static wk_bentry *lock_entry(wk_breaker_set *set, const char *dest, int create)
{
    wk_bentry *e;

    pthread_mutex_lock(&set->mu);
    if ((e = lookup(set, dest, create)) != NULL)
        tick(set, e);
    return e;
}

int wk_breaker_allow(wk_breaker_set *set, const char *dest)
{
    int ok = 1;
    wk_bentry *e = lock_entry(set, dest, 0);
    if (e != NULL) {
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
    wk_bentry *e = lock_entry(set, dest, failure);
    if (e == NULL)
        goto out; /* a success for a destination never seen failing: nothing to keep */
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
    wk_bentry *e = lock_entry(set, dest, 0);
    if (e != NULL && e->state == WK_BREAKER_OPEN) {
        uint64_t el = set->clock(set->clock_arg) - e->opened_at;
        ms = set->cfg.cooldown_ms - (long)el;
        if (ms < 1)
            ms = 1;
    }
    pthread_mutex_unlock(&set->mu);
    return ms;
}

wk_breaker_state wk_breaker_get(wk_breaker_set *set, const char *dest)
{
    wk_breaker_state s = WK_BREAKER_CLOSED;
    wk_bentry *e = lock_entry(set, dest, 0);
    if (e != NULL)
        s = e->state;
    pthread_mutex_unlock(&set->mu);
    return s;
}

/* Prometheus lines of one entry (wk_breaker_metrics, through kq_map_each). */
typedef struct metrics_arg {
    wk_breaker_set *set;
    char *buf;
    size_t len, off;
} metrics_arg;

static int metrics_cb(void *arg, const char *key, size_t keylen, void *val)
{
    metrics_arg *a = arg;
    wk_bentry *e = val;
    int n;

    (void)key;
    (void)keylen;
    tick(a->set, e);
    n = snprintf(a->buf + a->off, a->len - a->off,
                 "kcqrs_worker_breaker_state{destination=\"%s\"} %d\n", e->dest, (int)e->state);
    if (n < 0 || (size_t)n >= a->len - a->off)
        return KQ_ERANGE;
    a->off += (size_t)n;
    for (int s = 0; s < 3; s++) {
        n = snprintf(a->buf + a->off, a->len - a->off,
                     "kcqrs_worker_breaker_transitions_total{destination=\"%s\",to=\"%s\"} "
                     "%llu\n",
                     e->dest, wk_breaker_state_name((wk_breaker_state)s),
                     (unsigned long long)e->transitions[s]);
        if (n < 0 || (size_t)n >= a->len - a->off)
            return KQ_ERANGE;
        a->off += (size_t)n;
    }
    return 0;
}

int wk_breaker_metrics(wk_breaker_set *set, char *buf, size_t len)
{
    metrics_arg a = {set, buf, len, 0};
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
        rc = KQ_ERANGE;
    else {
        a.off = (size_t)n;
        rc = kq_map_each(set->map, metrics_cb, &a);
    }
    if (rc != 0) {
        rc = KQ_ERANGE;
        if (len > 0)
            buf[0] = '\0';
    } else
        rc = (int)a.off;
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
