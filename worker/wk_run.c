/*
 * wk_run.c — the run table (folded by ev_run.h) and the attempt scheduler
 * of kcqrs-worker (wk_run.h).
 */
#include "wk_run.h"

#include <stdlib.h>
#include <string.h>

#include "kq_err.h"
#include "kq_map.h"
#include "wk_record.h"

struct wk_runs {
    kq_map *map; /* id -> wk_run (inline: stays at its address until removed) */
    wk_run **heap;
    size_t heap_len, heap_cap;
};

/* kq_map's clear callback: what a run owns. */
static void run_clear(void *val)
{
    wk_run *r = val;

    free(r->started);
    r->started = NULL;
}

wk_runs *wk_runs_new(void)
{
    wk_runs *t = calloc(1, sizeof *t);

    if (t == NULL)
        return NULL;
    if ((t->map = kq_map_new(sizeof(wk_run), run_clear)) == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

void wk_runs_free(wk_runs *t)
{
    if (t == NULL)
        return;
    kq_map_free(t->map);
    free(t->heap);
    free(t);
}

size_t wk_runs_count(const wk_runs *t)
{
    return kq_map_count(t->map);
}

wk_run *wk_runs_get(const wk_runs *t, const char *id)
{
    return kq_map_get(t->map, id);
}

void wk_runs_remove(wk_runs *t, wk_run *r)
{
    char id[EV_ID_MAX + 1];

    wk_sched_remove(t, r);
    memcpy(id, r->id, sizeof id); /* the key outlives the entry it names */
    kq_map_remove(t->map, id);
}

typedef struct each_arg {
    void (*fn)(void *arg, wk_run *r);
    void *arg;
} each_arg;

static int each_cb(void *arg, const char *key, size_t keylen, void *val)
{
    each_arg *a = arg;

    (void)key;
    (void)keylen;
    a->fn(a->arg, val);
    return 0;
}

void wk_runs_each(wk_runs *t, void (*fn)(void *arg, wk_run *r), void *arg)
{
    each_arg a = {fn, arg};

    kq_map_each(t->map, each_cb, &a);
}

typedef struct oldest_arg {
    int32_t partition;
    int64_t best;
} oldest_arg;

static void oldest_cb(void *arg, wk_run *r)
{
    oldest_arg *a = arg;

    if (r->partition == a->partition && r->end == WK_RUN_OPEN &&
        (a->best < 0 || r->started_offset < a->best))
        a->best = r->started_offset;
}

int64_t wk_runs_oldest_open(const wk_runs *t, int32_t partition)
{
    oldest_arg a = {partition, -1};

    wk_runs_each((wk_runs *)t, oldest_cb, &a);
    return a.best;
}

/* r->end from the fold's state. */
static void sync_end(wk_run *r)
{
    if (ev_run_open(&r->st))
        r->end = WK_RUN_OPEN;
    else
        r->end = r->st.status == EV_RUN_IS_FAILED ? WK_RUN_FAILED : WK_RUN_SUCCEEDED;
}

int wk_runs_apply(wk_runs *t, const ev_envelope *env, const uint8_t *value, size_t len,
                  int32_t partition, int64_t offset, wk_run **changed, const char **why)
{
    wk_run *r;
    ev_run_state st;
    char id[EV_ID_MAX + 1];
    uint8_t *copy;
    int rc;

    *changed = NULL;
    *why = NULL;
    if (env->aggregate_id.ptr == NULL || env->aggregate_id.len == 0 ||
        env->aggregate_id.len > EV_ID_MAX ||
        memchr(env->aggregate_id.ptr, 0, env->aggregate_id.len))
        return WK_RUNS_SKIPPED;
    memcpy(id, env->aggregate_id.ptr, env->aggregate_id.len);
    id[env->aggregate_id.len] = '\0';
    r = wk_runs_get(t, id);
    if (r == NULL && env->payload_type != EV_RUN_STARTED)
        return WK_RUNS_SKIPPED; /* its RunStarted was not read: finished, or forgotten */
    if (r == NULL) {
        ev_run_init(&st);
        if ((rc = ev_run_fold(&st, env, why)) != EV_FOLD_APPLIED)
            return rc == EV_FOLD_DUPLICATE ? WK_RUNS_SKIPPED : WK_RUNS_REFUSED;
        if ((copy = malloc(len ? len : 1)) == NULL)
            return KQ_ENOMEM;
        if ((r = kq_map_put(t->map, id, NULL)) == NULL) {
            free(copy);
            return KQ_ENOMEM;
        }
        memcpy(copy, value, len);
        r->started = copy;
        r->started_len = len;
        memcpy(r->id, id, sizeof id);
        r->partition = partition;
        r->started_offset = offset;
        r->st = st;
        r->heap_idx = SIZE_MAX;
        r->phase = WK_RUN_IDLE;
        sync_end(r);
        *changed = r;
        return WK_RUNS_APPLIED;
    }
    rc = ev_run_fold(&r->st, env, why);
    if (rc == EV_FOLD_DUPLICATE)
        return WK_RUNS_SKIPPED;
    *changed = r;
    if (rc != EV_FOLD_APPLIED)
        return WK_RUNS_REFUSED;
    sync_end(r);
    return WK_RUNS_APPLIED;
}

int wk_run_advance(wk_run *r, int64_t version, uint32_t attempt, int outcome, int64_t next_delay_ms,
                   int64_t now_ms)
{
    ev_envelope ev[3];
    ev_run_state st = r->st;
    int n = 0;

    if (version <= r->st.version)
        return WK_ADVANCE_KNOWN; /* the fold got there first */
    /* the events the writer appends for this record (commands/: one decision) */
    memset(ev, 0, sizeof ev);
    ev[n].payload_type = EV_STEP_ATTEMPTED;
    ev[n].payload.step_attempted.step = r->st.step;
    ev[n].payload.step_attempted.attempt = attempt;
    ev[n].payload.step_attempted.has_next_delay_ms =
        outcome == WK_OUTCOME_RETRY && next_delay_ms >= 0;
    ev[n].payload.step_attempted.next_delay_ms = next_delay_ms >= 0 ? next_delay_ms : 0;
    n++;
    if (outcome == WK_OUTCOME_SUCCEEDED) {
        ev[n].payload_type = EV_STEP_SUCCEEDED;
        ev[n].payload.step_succeeded.step = r->st.step;
        ev[n++].payload.step_succeeded.attempt = attempt;
        if (r->st.step + 1 == r->st.step_count)
            ev[n++].payload_type = EV_RUN_SUCCEEDED;
    } else if (outcome != WK_OUTCOME_RETRY) {
        ev[n].payload_type = EV_STEP_FAILED;
        ev[n].payload.step_failed.step = r->st.step;
        ev[n++].payload.step_failed.attempt = attempt;
        ev[n].payload_type = EV_RUN_FAILED;
        ev[n++].payload.run_failed.step = r->st.step;
    }
    if (version - n != r->st.version)
        return WK_ADVANCE_AHEAD; /* events the worker has not read come first */
    for (int i = 0; i < n; i++) {
        ev[i].version = version - n + 1 + i;
        ev[i].occurred_at_us = now_ms * 1000;
        ev[i].aggregate_type = EV_AGG_RUN;
        if (ev_run_fold(&st, &ev[i], NULL) != EV_FOLD_APPLIED)
            return WK_ADVANCE_AHEAD; /* not what the log will show: wait for it */
    }
    r->st = st;
    sync_end(r);
    return WK_ADVANCE_APPLIED;
}

int64_t wk_run_due_ms(const wk_run *r, int64_t now_ms)
{
    if (r->st.attempts == 0 || r->st.next_delay_ms < 0)
        return now_ms;
    return r->st.last_attempt_us / 1000 + r->st.next_delay_ms;
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
