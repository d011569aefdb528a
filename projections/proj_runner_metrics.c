/*
 * proj_runner_metrics.c — what a runner tells the outside: progress toward
 * the end offsets, readiness (/ready), the Prometheus families of /metrics.
 * Reads the runner's atomics; any thread. Part of the runner
 * (proj_runner_int.h).
 */
#include "proj_runner_int.h"

#include <stdio.h>

static const double lat_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                    0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
static const long size_bounds[] = {1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000};

_Static_assert(sizeof lat_bounds / sizeof lat_bounds[0] == NLAT, "NLAT");
_Static_assert(sizeof size_bounds / sizeof size_bounds[0] == NSIZE, "NSIZE");

void proj_runner_observe(proj_runner *r, size_t n, long long us)
{
    size_t b = 0;

    while (b < NSIZE && (long)n > size_bounds[b])
        b++;
    atomic_fetch_add(&r->size_hist[b], 1);
    atomic_fetch_add(&r->size_sum, n);
    for (b = 0; b < NLAT && (double)us / 1e6 > lat_bounds[b]; b++)
        ;
    atomic_fetch_add(&r->lat_hist[b], 1);
    atomic_fetch_add(&r->lat_sum_us, (unsigned long long)us);
}

void proj_runner_progress(proj_runner *r, long long *done, long long *total,
                          unsigned long long *applied)
{
    *done = *total = 0;
    *applied = atomic_load(&r->applied);
    if (atomic_load(&r->have_goal) != 1)
        return;
    for (int i = 0; i < r->nparts; i++) {
        long long nx = atomic_load(&r->next[i]);
        if (r->end[i] > r->start[i])
            *total += r->end[i] - r->start[i];
        if (nx > r->end[i])
            nx = r->end[i];
        if (nx > r->start[i])
            *done += nx - r->start[i];
    }
}

unsigned long long proj_runner_skipped(proj_runner *r)
{
    return atomic_load(&r->skipped);
}

static long long total_lag(proj_runner *r, int *unknown)
{
    long long lag = 0;

    *unknown = 0;
    for (int i = 0; i < r->nparts; i++) {
        long long hi = atomic_load(&r->high[i]), nx = atomic_load(&r->next[i]);
        if (hi < 0)
            (*unknown)++;
        else if (hi > nx)
            lag += hi - nx;
    }
    return lag;
}

int proj_runner_ready(proj_runner *r, char *why, size_t whylen)
{
    int unknown, missing = 0;
    long long lag;

    if (atomic_load(&r->standby))
        return 1; /* standing by is what it should do while another one is active */
    if (!atomic_load(&r->connected)) {
        snprintf(why, whylen, "%s target is not open", r->ops->name);
        return 0;
    }
    if (atomic_load(&r->missing_keys) > 0) { /* never silently "[erased]" (ev_pii.h) */
        snprintf(why, whylen,
                 "%s: %llu records with sealed personal data refused: a data key is missing "
                 "for a subject that was not erased (see the log)",
                 r->ops->name, (unsigned long long)atomic_load(&r->missing_keys));
        return 0;
    }
    for (int i = 0; i < r->nparts; i++)
        missing += !atomic_load(&r->eof_once[i]);
    if (missing > 0) {
        snprintf(why, whylen, "%s: %d partitions not yet read to their end", r->ops->name, missing);
        return 0;
    }
    lag = total_lag(r, &unknown);
    if (lag > r->cfg->query_ready_lag) {
        snprintf(why, whylen, "%s lags %lld events behind the log", r->ops->name, lag);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ metrics */

#define FAMILY(out, fam, type, help)                                                               \
    fprintf(out, "# HELP " fam " " help "\n# TYPE " fam " " type "\n")

void proj_runner_metrics(proj_runner *const *rs, size_t n, FILE *out)
{
    FAMILY(out, "kcqrs_projector_lag", "gauge",
           "Events between the high watermark and the target's stored offset, per partition.");
    for (size_t k = 0; k < n; k++) {
        proj_runner *r = rs[k];
        if (atomic_load(&r->standby))
            continue; /* not this process's to apply */
        for (int i = 0; i < r->nparts; i++) {
            long long hi = atomic_load(&r->high[i]), nx = atomic_load(&r->next[i]);
            if (hi < 0)
                continue;
            fprintf(out, "kcqrs_projector_lag{target=\"%s\",topic=\"%s\",partition=\"%d\"} %lld\n",
                    r->ops->name, r->topics[i / r->np], i % r->np, hi > nx ? hi - nx : 0);
        }
    }
    FAMILY(out, "kcqrs_projector_offset", "gauge",
           "Next offset the target has stored, per partition.");
    for (size_t k = 0; k < n; k++) {
        proj_runner *r = rs[k];
        for (int i = 0; i < r->nparts; i++)
            fprintf(
                out, "kcqrs_projector_offset{target=\"%s\",topic=\"%s\",partition=\"%d\"} %lld\n",
                r->ops->name, r->topics[i / r->np], i % r->np, (long long)atomic_load(&r->next[i]));
    }
#define COUNTER(fam, field, help)                                                                  \
    FAMILY(out, fam, "counter", help);                                                             \
    for (size_t k = 0; k < n; k++)                                                                 \
        fprintf(out, fam "{target=\"%s\"} %llu\n", rs[k]->ops->name,                               \
                (unsigned long long)atomic_load(&rs[k]->field));
    COUNTER("kcqrs_projector_events_applied_total", applied,
            "Events handed to the target as valid (gaps it refused included).");
    COUNTER("kcqrs_projector_batches_total", batches, "Batches committed by the target.");
    COUNTER("kcqrs_projector_dead_letters_total", dead_letters,
            "Records written to the dead-letter topic.");
    COUNTER("kcqrs_projector_poison_total", poison,
            "Records refused before the target (undecodable or inconsistent).");
    COUNTER("kcqrs_projector_missing_data_keys_total", missing_keys,
            "Records with sealed personal data refused: no data key, subject not erased.");
    COUNTER("kcqrs_projector_target_errors_total", errors,
            "Failed target opens or batches (each followed by a reopen and a retry).");
#undef COUNTER
    FAMILY(out, "kcqrs_projector_connected", "gauge", "1 while the target is open.");
    for (size_t k = 0; k < n; k++)
        fprintf(out, "kcqrs_projector_connected{target=\"%s\"} %d\n", rs[k]->ops->name,
                atomic_load(&rs[k]->connected));
    FAMILY(out, "kcqrs_projector_standby", "gauge",
           "1 while another process is the target's active projector (PostgreSQL).");
    for (size_t k = 0; k < n; k++)
        fprintf(out, "kcqrs_projector_standby{target=\"%s\"} %d\n", rs[k]->ops->name,
                atomic_load(&rs[k]->standby));
    FAMILY(out, "kcqrs_projector_batch_size", "histogram", "Records per batch.");
    for (size_t k = 0; k < n; k++) {
        unsigned long long cum = 0;
        for (size_t b = 0; b <= NSIZE; b++) {
            cum += atomic_load(&rs[k]->size_hist[b]);
            if (b < NSIZE)
                fprintf(out, "kcqrs_projector_batch_size_bucket{target=\"%s\",le=\"%ld\"} %llu\n",
                        rs[k]->ops->name, size_bounds[b], cum);
            else
                fprintf(out, "kcqrs_projector_batch_size_bucket{target=\"%s\",le=\"+Inf\"} %llu\n",
                        rs[k]->ops->name, cum);
        }
        fprintf(out, "kcqrs_projector_batch_size_sum{target=\"%s\"} %llu\n", rs[k]->ops->name,
                (unsigned long long)atomic_load(&rs[k]->size_sum));
        fprintf(out, "kcqrs_projector_batch_size_count{target=\"%s\"} %llu\n", rs[k]->ops->name,
                cum);
    }
    FAMILY(out, "kcqrs_projector_apply_seconds", "histogram",
           "Time the target took to apply and commit one batch.");
    for (size_t k = 0; k < n; k++) {
        unsigned long long cum = 0;
        for (size_t b = 0; b <= NLAT; b++) {
            cum += atomic_load(&rs[k]->lat_hist[b]);
            if (b < NLAT)
                fprintf(out, "kcqrs_projector_apply_seconds_bucket{target=\"%s\",le=\"%g\"} %llu\n",
                        rs[k]->ops->name, lat_bounds[b], cum);
            else
                fprintf(out,
                        "kcqrs_projector_apply_seconds_bucket{target=\"%s\",le=\"+Inf\"} %llu\n",
                        rs[k]->ops->name, cum);
        }
        fprintf(out, "kcqrs_projector_apply_seconds_sum{target=\"%s\"} %.6f\n", rs[k]->ops->name,
                (double)atomic_load(&rs[k]->lat_sum_us) / 1e6);
        fprintf(out, "kcqrs_projector_apply_seconds_count{target=\"%s\"} %llu\n", rs[k]->ops->name,
                cum);
    }
}
