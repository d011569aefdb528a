/*
 * wk_run.c — the run fold and the attempt scheduler of kcqrs-worker (wk_run.h).
 */
#include "wk_run.h"

#include <stdlib.h>
#include <string.h>

#include "kq_err.h"

struct wk_runs {
    wk_run **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    wk_run **heap;
    size_t heap_len, heap_cap;
};

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

wk_runs *wk_runs_new(void)
{
    wk_runs *t = calloc(1, sizeof *t);

    if (t == NULL)
        return NULL;
    t->nbuckets = 1024;
    if ((t->buckets = calloc(t->nbuckets, sizeof *t->buckets)) == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

static void run_free(wk_run *r)
{
    free(r->started);
    free(r);
}

void wk_runs_free(wk_runs *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        wk_run *r = t->buckets[i];
        while (r) {
            wk_run *n = r->next;
            run_free(r);
            r = n;
        }
    }
    free(t->buckets);
    free(t->heap);
    free(t);
}

size_t wk_runs_count(const wk_runs *t)
{
    return t->count;
}

wk_run *wk_runs_get(const wk_runs *t, const char *id)
{
    wk_run *r = t->buckets[hash_id(id) & (t->nbuckets - 1)];

    while (r && strcmp(r->id, id) != 0)
        r = r->next;
    return r;
}

static void grow(wk_runs *t)
{
    size_t n = t->nbuckets * 2;
    wk_run **b = calloc(n, sizeof *b);

    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < t->nbuckets; i++) {
        wk_run *r = t->buckets[i];
        while (r) {
            wk_run *next = r->next;
            size_t k = hash_id(r->id) & (n - 1);
            r->next = b[k];
            b[k] = r;
            r = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

static int insert(wk_runs *t, wk_run *r)
{
    size_t k;

    if (t->count + 1 > t->nbuckets)
        grow(t);
    k = hash_id(r->id) & (t->nbuckets - 1);
    r->next = t->buckets[k];
    t->buckets[k] = r;
    t->count++;
    return 0;
}

void wk_runs_remove(wk_runs *t, wk_run *r)
{
    wk_run **p = &t->buckets[hash_id(r->id) & (t->nbuckets - 1)];

    wk_sched_remove(t, r);
    while (*p && *p != r)
        p = &(*p)->next;
    if (*p) {
        *p = r->next;
        t->count--;
    }
    run_free(r);
}

void wk_runs_each(wk_runs *t, void (*fn)(void *arg, wk_run *r), void *arg)
{
    for (size_t i = 0; i < t->nbuckets; i++)
        for (wk_run *r = t->buckets[i]; r; r = r->next)
            fn(arg, r);
}

int64_t wk_runs_oldest_open(const wk_runs *t, int32_t partition)
{
    int64_t best = -1;

    for (size_t i = 0; i < t->nbuckets; i++)
        for (wk_run *r = t->buckets[i]; r; r = r->next)
            if (r->partition == partition && r->end == WK_RUN_OPEN &&
                (best < 0 || r->started_offset < best))
                best = r->started_offset;
    return best;
}

static void to_next_step(wk_run *r)
{
    r->step++;
    r->attempts = 0;
    r->last_attempt_ms = 0;
    r->next_delay_ms = -1;
}

int wk_runs_apply(wk_runs *t, const ev_envelope *env, const uint8_t *value, size_t len,
                  int32_t partition, int64_t offset, wk_run **changed, int *gap)
{
    wk_run *r;
    char id[EV_ID_MAX + 1];

    *changed = NULL;
    *gap = 0;
    if (env->aggregate_id.ptr == NULL || env->aggregate_id.len == 0 ||
        env->aggregate_id.len > EV_ID_MAX ||
        memchr(env->aggregate_id.ptr, 0, env->aggregate_id.len))
        return 0;
    memcpy(id, env->aggregate_id.ptr, env->aggregate_id.len);
    id[env->aggregate_id.len] = '\0';
    r = wk_runs_get(t, id);

    if (env->payload_type == EV_RUN_STARTED) {
        const ev_run_started *rs = &env->payload.run_started;
        if (r != NULL)
            return 0; /* seen: a re-read */
        if ((r = calloc(1, sizeof *r)) == NULL)
            return KQ_ENOMEM;
        if ((r->started = malloc(len ? len : 1)) == NULL) {
            free(r);
            return KQ_ENOMEM;
        }
        memcpy(r->started, value, len);
        r->started_len = len;
        memcpy(r->id, id, sizeof id);
        r->partition = partition;
        r->started_offset = offset;
        r->version = env->version;
        r->step_count = rs->steps.present ? rs->steps.count : rs->step_count;
        r->next_delay_ms = -1;
        r->heap_idx = SIZE_MAX;
        r->phase = WK_RUN_IDLE;
        if (r->step_count == 0)
            r->end = WK_RUN_SUCCEEDED; /* nothing to do */
        *gap = env->version != 1;
        insert(t, r);
        *changed = r;
        return 1;
    }
    if (r == NULL || env->version <= r->version)
        return 0;
    *gap = env->version != r->version + 1;
    r->version = env->version;
    switch (env->payload_type) {
    case EV_STEP_ATTEMPTED: {
        const ev_step_attempted *a = &env->payload.step_attempted;
        if (a->step == r->step) {
            if (a->attempt > r->attempts)
                r->attempts = a->attempt;
            r->last_attempt_ms = env->occurred_at_us / 1000;
            r->next_delay_ms = a->has_next_delay_ms ? a->next_delay_ms : -1;
        }
        break;
    }
    case EV_STEP_SUCCEEDED:
        if (env->payload.step_succeeded.step == r->step)
            to_next_step(r);
        break;
    case EV_STEP_FAILED:
    case EV_RUN_FAILED:
        r->end = WK_RUN_FAILED;
        break;
    case EV_RUN_SUCCEEDED:
        r->end = WK_RUN_SUCCEEDED;
        break;
    default:
        break;
    }
    *changed = r;
    return 1;
}

void wk_run_advance(wk_run *r, int64_t version, uint32_t attempt, int outcome,
                    int64_t next_delay_ms, int64_t now_ms)
{
    if (version <= r->version)
        return; /* the fold got there first */
    r->version = version;
    switch (outcome) {
    case 1: /* retry */
        r->attempts = attempt;
        r->last_attempt_ms = now_ms;
        r->next_delay_ms = next_delay_ms;
        break;
    case 2: /* succeeded */
        to_next_step(r);
        if (r->step >= r->step_count)
            r->end = WK_RUN_SUCCEEDED;
        break;
    default: /* failed */
        r->end = WK_RUN_FAILED;
        break;
    }
}

int64_t wk_run_due_ms(const wk_run *r, int64_t now_ms)
{
    if (r->attempts == 0 || r->next_delay_ms < 0)
        return now_ms;
    return r->last_attempt_ms + r->next_delay_ms;
}

/* ---- heap ---- */

static int before(const wk_run *a, const wk_run *b)
{
    return a->due_ms < b->due_ms;
}

static void heap_set(wk_runs *t, size_t i, wk_run *r)
{
    t->heap[i] = r;
    r->heap_idx = i;
}

static void sift_up(wk_runs *t, size_t i)
{
    wk_run *r = t->heap[i];

    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(r, t->heap[p]))
            break;
        heap_set(t, i, t->heap[p]);
        i = p;
    }
    heap_set(t, i, r);
}

static void sift_down(wk_runs *t, size_t i)
{
    wk_run *r = t->heap[i];

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= t->heap_len)
            break;
        if (c + 1 < t->heap_len && before(t->heap[c + 1], t->heap[c]))
            c++;
        if (!before(t->heap[c], r))
            break;
        heap_set(t, i, t->heap[c]);
        i = c;
    }
    heap_set(t, i, r);
}

int wk_sched_put(wk_runs *t, wk_run *r, int64_t due_ms)
{
    if (r->heap_idx != SIZE_MAX) {
        r->due_ms = due_ms;
        sift_up(t, r->heap_idx);
        sift_down(t, r->heap_idx);
        return 0;
    }
    if (t->heap_len == t->heap_cap) {
        size_t cap = t->heap_cap ? t->heap_cap * 2 : 256;
        wk_run **h = realloc(t->heap, cap * sizeof *h);
        if (h == NULL)
            return KQ_ENOMEM;
        t->heap = h;
        t->heap_cap = cap;
    }
    r->due_ms = due_ms;
    heap_set(t, t->heap_len++, r);
    sift_up(t, r->heap_idx);
    return 0;
}

void wk_sched_remove(wk_runs *t, wk_run *r)
{
    size_t i = r->heap_idx;

    if (i == SIZE_MAX)
        return;
    r->heap_idx = SIZE_MAX;
    t->heap_len--;
    if (i == t->heap_len)
        return;
    {
        wk_run *x = t->heap[t->heap_len];
        heap_set(t, i, x);
        sift_up(t, i);
        sift_down(t, x->heap_idx);
    }
}

wk_run *wk_sched_peek(const wk_runs *t)
{
    return t->heap_len ? t->heap[0] : NULL;
}

size_t wk_sched_count(const wk_runs *t)
{
    return t->heap_len;
}
