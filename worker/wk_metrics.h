/*
 * wk_metrics.h — kcqrs-worker's own counters and gauges, and their
 * Prometheus text (the engine, the breakers and the record client print
 * theirs: wk_http.h, wk_breaker.h, wk_record.h).
 *
 * The service's thread writes them; the admin server's threads read them
 * (/metrics): every field is an atomic, no lock.
 */
#ifndef WK_METRICS_H
#define WK_METRICS_H

#include <stdatomic.h>
#include <stdio.h>

typedef struct wk_metrics {
    atomic_long runs_open, in_flight, lag, assigned;
    atomic_ulong attempts, succeeded, retry, failed, breaker_waits, runs_done, events, bad_records,
        build_errors, refused;
} wk_metrics;

/* All zero. */
void wk_metrics_init(wk_metrics *m);

/*
 * Print the kcqrs_worker_runs_open, _runs_in_flight, _runs_finished_total,
 * _attempts_total, _attempt_outcomes_total{outcome}, _action_build_errors_total,
 * _breaker_waits_total, _events_total, _bad_records_total, _events_refused_total,
 * _partitions_assigned and _lag lines to out. Any thread.
 */
void wk_metrics_print(wk_metrics *m, FILE *out);

#endif
