/*
 * wk_metrics.c — kcqrs-worker's counters in Prometheus text (wk_metrics.h).
 */
#include "wk_metrics.h"

void wk_metrics_init(wk_metrics *m)
{
    atomic_init(&m->runs_open, 0);
    atomic_init(&m->in_flight, 0);
    atomic_init(&m->lag, 0);
    atomic_init(&m->assigned, 0);
    atomic_init(&m->attempts, 0);
    atomic_init(&m->succeeded, 0);
    atomic_init(&m->retry, 0);
    atomic_init(&m->failed, 0);
    atomic_init(&m->breaker_waits, 0);
    atomic_init(&m->runs_done, 0);
    atomic_init(&m->events, 0);
    atomic_init(&m->bad_records, 0);
    atomic_init(&m->build_errors, 0);
    atomic_init(&m->refused, 0);
}

void wk_metrics_print(wk_metrics *m, FILE *out)
{
    fprintf(out,
            "# TYPE kcqrs_worker_runs_open gauge\nkcqrs_worker_runs_open %ld\n"
            "# TYPE kcqrs_worker_runs_in_flight gauge\nkcqrs_worker_runs_in_flight %ld\n"
            "# TYPE kcqrs_worker_runs_finished_total counter\n"
            "kcqrs_worker_runs_finished_total %lu\n"
            "# TYPE kcqrs_worker_attempts_total counter\n"
            "kcqrs_worker_attempts_total %lu\n"
            "# TYPE kcqrs_worker_attempt_outcomes_total counter\n"
            "kcqrs_worker_attempt_outcomes_total{outcome=\"succeeded\"} %lu\n"
            "kcqrs_worker_attempt_outcomes_total{outcome=\"retry\"} %lu\n"
            "kcqrs_worker_attempt_outcomes_total{outcome=\"failed\"} %lu\n"
            "# TYPE kcqrs_worker_action_build_errors_total counter\n"
            "kcqrs_worker_action_build_errors_total %lu\n"
            "# TYPE kcqrs_worker_breaker_waits_total counter\n"
            "kcqrs_worker_breaker_waits_total %lu\n"
            "# TYPE kcqrs_worker_events_total counter\nkcqrs_worker_events_total %lu\n"
            "# TYPE kcqrs_worker_bad_records_total counter\nkcqrs_worker_bad_records_total %lu\n"
            "# TYPE kcqrs_worker_events_refused_total counter\n"
            "kcqrs_worker_events_refused_total %lu\n"
            "# TYPE kcqrs_worker_partitions_assigned gauge\n"
            "kcqrs_worker_partitions_assigned %ld\n"
            "# TYPE kcqrs_worker_lag gauge\nkcqrs_worker_lag %ld\n",
            atomic_load(&m->runs_open), atomic_load(&m->in_flight), atomic_load(&m->runs_done),
            atomic_load(&m->attempts), atomic_load(&m->succeeded), atomic_load(&m->retry),
            atomic_load(&m->failed), atomic_load(&m->build_errors), atomic_load(&m->breaker_waits),
            atomic_load(&m->events), atomic_load(&m->bad_records), atomic_load(&m->refused),
            atomic_load(&m->assigned), atomic_load(&m->lag));
}
