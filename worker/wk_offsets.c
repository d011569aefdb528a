/*
 * wk_offsets.c — partitions, positions and commit points of kcqrs-worker
 * (wk_offsets.h).
 */
#include "wk_offsets.h"

#include <stdlib.h>
#include <string.h>

#include "kq_err.h"

int wk_offsets_init(wk_offsets *o, int nparts)
{
    memset(o, 0, sizeof *o);
    if (nparts < 1)
        return KQ_EINVAL;
    if ((o->parts = calloc((size_t)nparts, sizeof *o->parts)) == NULL)
        return KQ_ENOMEM;
    o->n = nparts;
    for (int i = 0; i < nparts; i++)
        o->parts[i].next = o->parts[i].committed = -1;
    return 0;
}

void wk_offsets_free(wk_offsets *o)
{
    free(o->parts);
    memset(o, 0, sizeof *o);
}

wk_part *wk_offsets_part(wk_offsets *o, int32_t p)
{
    return p >= 0 && p < o->n ? &o->parts[p] : NULL;
}

void wk_offsets_assign(wk_offsets *o, int32_t p)
{
    wk_part *ps = wk_offsets_part(o, p);

    if (ps == NULL)
        return;
    ps->assigned = 1;
    ps->ready = 0;
    ps->next = -1;
    ps->committed = -1;
}

void wk_offsets_revoking(wk_offsets *o, int32_t p)
{
    wk_part *ps = wk_offsets_part(o, p);

    if (ps)
        ps->ready = 0;
}

void wk_offsets_revoked(wk_offsets *o, int32_t p)
{
    wk_part *ps = wk_offsets_part(o, p);

    if (ps)
        ps->assigned = 0;
}

int wk_offsets_consumed(wk_offsets *o, int32_t p, int64_t offset)
{
    wk_part *ps = wk_offsets_part(o, p);

    if (ps == NULL || !ps->assigned)
        return 0;
    ps->next = offset + 1;
    return 1;
}

int wk_offsets_eof(wk_offsets *o, int32_t p, int64_t offset)
{
    wk_part *ps = wk_offsets_part(o, p);

    if (ps == NULL || !ps->assigned)
        return 0;
    ps->next = offset;
    if (ps->ready)
        return 0;
    ps->ready = 1;
    return 1;
}

void wk_offsets_in_flight_add(wk_offsets *o, int32_t p, int delta)
{
    wk_part *ps = wk_offsets_part(o, p);

    if (ps)
        ps->in_flight += delta;
}

int wk_offsets_in_flight(const wk_offsets *o, const int32_t *parts, size_t n)
{
    int total = 0;

    for (size_t i = 0; i < n; i++)
        if (parts[i] >= 0 && parts[i] < o->n)
            total += o->parts[parts[i]].in_flight;
    return total;
}

/* Per-partition oldest open RunStarted offsets in one pass over the runs. */
typedef struct oldest_arg {
    int64_t *oldest;
    int n;
} oldest_arg;

static void oldest_cb(void *arg, wk_run *r)
{
    oldest_arg *a = arg;

    if (r->end == WK_RUN_OPEN && r->partition >= 0 && r->partition < a->n &&
        (a->oldest[r->partition] < 0 || r->started_offset < a->oldest[r->partition]))
        a->oldest[r->partition] = r->started_offset;
}

static int listed(const int32_t *only, size_t n_only, int32_t p)
{
    for (size_t i = 0; i < n_only; i++)
        if (only[i] == p)
            return 1;
    return 0;
}

int wk_offsets_commit_points(wk_offsets *o, wk_runs *runs, const int32_t *only, size_t n_only,
                             wk_commit_point *out)
{
    int64_t *oldest = malloc(sizeof *oldest * (size_t)o->n);
    oldest_arg a = {oldest, o->n};
    int n = 0;

    if (oldest == NULL)
        return KQ_ENOMEM;
    for (int i = 0; i < o->n; i++)
        oldest[i] = -1;
    wk_runs_each(runs, oldest_cb, &a);
    for (int p = 0; p < o->n; p++) {
        wk_part *ps = &o->parts[p];
        int64_t off = oldest[p] >= 0 ? oldest[p] : ps->next;
        if (!ps->assigned || off < 0 || off == ps->committed)
            continue;
        if (only && !listed(only, n_only, p))
            continue;
        out[n].partition = p;
        out[n].offset = off;
        n++;
        ps->committed = off;
    }
    free(oldest);
    return n;
}
