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
    fprintf(
        out,
        "# HELP kcqrs_worker_runs_open Runs folded and not yet ended.\n"
        "# TYPE kcqrs_worker_runs_open gauge\nkcqrs_worker_runs_open %ld\n"
        "# HELP kcqrs_worker_runs_in_flight Step attempts being executed now.\n"
        "# TYPE kcqrs_worker_runs_in_flight gauge\nkcqrs_worker_runs_in_flight %ld\n"
        "# HELP kcqrs_worker_runs_finished_total Runs this worker saw end (succeeded or failed).\n"
        "# TYPE kcqrs_worker_runs_finished_total counter\n"
        "kcqrs_worker_runs_finished_total %lu\n"
        "# HELP kcqrs_worker_attempts_total Step attempts started.\n"
        "# TYPE kcqrs_worker_attempts_total counter\n"
        "kcqrs_worker_attempts_total %lu\n"
        "# HELP kcqrs_worker_attempt_outcomes_total Step attempts by outcome.\n"
        "# TYPE kcqrs_worker_attempt_outcomes_total counter\n"
        "kcqrs_worker_attempt_outcomes_total{outcome=\"succeeded\"} %lu\n"
        "kcqrs_worker_attempt_outcomes_total{outcome=\"retry\"} %lu\n"
        "kcqrs_worker_attempt_outcomes_total{outcome=\"failed\"} %lu\n"
        "# HELP kcqrs_worker_action_build_errors_total Attempts failed before sending: the action "
        "could not be built or sent.\n"
        "# TYPE kcqrs_worker_action_build_errors_total counter\n"
        "kcqrs_worker_action_build_errors_total %lu\n"
        "# HELP kcqrs_worker_breaker_waits_total Attempts postponed by an open circuit breaker.\n"
        "# TYPE kcqrs_worker_breaker_waits_total counter\n"
        "kcqrs_worker_breaker_waits_total %lu\n"
        "# HELP kcqrs_worker_events_total Records read from the run topic.\n"
        "# TYPE kcqrs_worker_events_total counter\nkcqrs_worker_events_total %lu\n"
        "# HELP kcqrs_worker_bad_records_total Records that are not events (skipped).\n"
        "# TYPE kcqrs_worker_bad_records_total counter\nkcqrs_worker_bad_records_total %lu\n"
        "# HELP kcqrs_worker_events_refused_total Run events the fold refused (gap, duplicate, "
        "after the end).\n"
        "# TYPE kcqrs_worker_events_refused_total counter\n"
        "kcqrs_worker_events_refused_total %lu\n"
        "# HELP kcqrs_worker_partitions_assigned Run topic partitions assigned to this worker.\n"
        "# TYPE kcqrs_worker_partitions_assigned gauge\n"
        "kcqrs_worker_partitions_assigned %ld\n"
        "# HELP kcqrs_worker_lag Records between the high watermarks and the consumer position.\n"
        "# TYPE kcqrs_worker_lag gauge\nkcqrs_worker_lag %ld\n",
        atomic_load(&m->runs_open), atomic_load(&m->in_flight), atomic_load(&m->runs_done),
        atomic_load(&m->attempts), atomic_load(&m->succeeded), atomic_load(&m->retry),
        atomic_load(&m->failed), atomic_load(&m->build_errors), atomic_load(&m->breaker_waits),
        atomic_load(&m->events), atomic_load(&m->bad_records), atomic_load(&m->refused),
        atomic_load(&m->assigned), atomic_load(&m->lag));
}
