/*
 * cmd_wmetrics.h — the writer's Prometheus metrics.
 *
 * What it is for
 *   Counters and histograms the writer thread updates as it commits (events
 *   appended, by aggregate type; transactions by result; Kafka errors; batch
 *   sizes; begin-to-commit seconds; snapshot hand-over times) and the text
 *   /metrics shows (cmd_wmetrics_print, with the snapshot thread's figures
 *   and the ready/fenced gauges). Names and buckets: commands/README.md.
 *
 * What it owns: only the counters (atomics, in the struct).
 * Threads: the writer thread updates; any thread prints.
 */
#ifndef CMD_WMETRICS_H
#define CMD_WMETRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cmd_snapshot.h"

#define CMD_WM_BATCH_BUCKETS 12  /* batch sizes 1, 2, 4, ... 2048, +Inf */
#define CMD_WM_COMMIT_BUCKETS 12 /* commit seconds 0.5 ms, 1 ms, 2 ms, ... 1.024 s, +Inf */

typedef struct cmd_wmetrics {
    atomic_uint_fast64_t events, committed, aborted, kafka_errors, unknown;
    atomic_uint_fast64_t events_by[CMD_TOPICS]; /* committed events per aggregate type */
    atomic_uint_fast64_t batches[CMD_WM_BATCH_BUCKETS + 1];
    atomic_uint_fast64_t batch_sum;
    atomic_uint_fast64_t commit[CMD_WM_COMMIT_BUCKETS + 1];
    atomic_uint_fast64_t commit_sum_us;   /* begin to commit returned, committed ones */
    atomic_uint_fast64_t handover_max_us; /* longest snapshot hand-over on the writer thread */
    atomic_uint_fast64_t handover_sum_us, handovers;
} cmd_wmetrics;

/* A transaction of `nappend` events is attempted. */
void cmd_wmetrics_batch(cmd_wmetrics *m, size_t nappend);
/* A transaction committed `took_s` seconds after its begin. */
void cmd_wmetrics_commit(cmd_wmetrics *m, double took_s);
/* A snapshot hand-over took `us` microseconds of the writer thread. */
void cmd_wmetrics_handover(cmd_wmetrics *m, uint64_t us);

/* Append the metrics to f (the aggregate label: cmd_aggregate_get(t)->name);
 * `snap` (NULL = no snapshots) adds the snapshot thread's. */
void cmd_wmetrics_print(cmd_wmetrics *m, FILE *f, cmd_snapshotter *snap, int ready, int fenced);

#endif
