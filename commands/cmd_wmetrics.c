/*
 * cmd_wmetrics.c — the writer's Prometheus metrics; see cmd_wmetrics.h.
 */
#include "cmd_wmetrics.h"
#include "cmd_aggregate.h"

void cmd_wmetrics_batch(cmd_wmetrics *m, size_t nappend)
{
    size_t b = 0;
    while (b < CMD_WM_BATCH_BUCKETS && nappend > ((size_t)1 << b))
        b++;
    atomic_fetch_add(&m->batches[b], 1);
    atomic_fetch_add(&m->batch_sum, nappend);
}

void cmd_wmetrics_commit(cmd_wmetrics *m, double took)
{
    int b = 0;
    while (b < CMD_WM_COMMIT_BUCKETS && took > 0.0005 * (double)(1u << b))
        b++;
    atomic_fetch_add(&m->commit[b], 1);
    atomic_fetch_add(&m->commit_sum_us, (uint_fast64_t)(took * 1e6));
}

void cmd_wmetrics_handover(cmd_wmetrics *m, uint64_t us)
{
    atomic_fetch_add(&m->handover_sum_us, us);
    atomic_fetch_add(&m->handovers, 1);
    if (us > atomic_load(&m->handover_max_us))
        atomic_store(&m->handover_max_us, us);
}

void cmd_wmetrics_print(cmd_wmetrics *m, FILE *f, cmd_snapshotter *snap, int ready, int fenced)
{
    uint64_t cum = 0;

    fprintf(f,
            "# HELP kcqrs_commands_events_appended_total Events appended in committed "
            "transactions.\n# TYPE kcqrs_commands_events_appended_total counter\n"
            "kcqrs_commands_events_appended_total %llu\n",
            (unsigned long long)atomic_load(&m->events));
    fputs("# HELP kcqrs_commands_aggregate_events_appended_total Events appended in committed "
          "transactions, by aggregate type.\n"
          "# TYPE kcqrs_commands_aggregate_events_appended_total counter\n",
          f);
    for (int t = 0; t < CMD_TOPICS; t++)
        fprintf(f, "kcqrs_commands_aggregate_events_appended_total{aggregate=\"%s\"} %llu\n",
                cmd_aggregate_get(t)->name, (unsigned long long)atomic_load(&m->events_by[t]));
    fprintf(f,
            "# HELP kcqrs_commands_transactions_total Kafka transactions by result.\n"
            "# TYPE kcqrs_commands_transactions_total counter\n"
            "kcqrs_commands_transactions_total{result=\"committed\"} %llu\n"
            "kcqrs_commands_transactions_total{result=\"aborted\"} %llu\n"
            "kcqrs_commands_transactions_total{result=\"unknown\"} %llu\n",
            (unsigned long long)atomic_load(&m->committed),
            (unsigned long long)atomic_load(&m->aborted),
            (unsigned long long)atomic_load(&m->unknown));
    fprintf(f,
            "# HELP kcqrs_commands_kafka_errors_total Kafka errors seen by the writer.\n"
            "# TYPE kcqrs_commands_kafka_errors_total counter\n"
            "kcqrs_commands_kafka_errors_total %llu\n",
            (unsigned long long)atomic_load(&m->kafka_errors));
    fputs("# HELP kcqrs_commands_batch_size Events per committed or attempted transaction.\n"
          "# TYPE kcqrs_commands_batch_size histogram\n",
          f);
    for (int b = 0; b <= CMD_WM_BATCH_BUCKETS; b++) {
        cum += atomic_load(&m->batches[b]);
        if (b < CMD_WM_BATCH_BUCKETS)
            fprintf(f, "kcqrs_commands_batch_size_bucket{le=\"%u\"} %llu\n", 1u << b,
                    (unsigned long long)cum);
        else
            fprintf(f, "kcqrs_commands_batch_size_bucket{le=\"+Inf\"} %llu\n",
                    (unsigned long long)cum);
    }
    fprintf(f, "kcqrs_commands_batch_size_sum %llu\nkcqrs_commands_batch_size_count %llu\n",
            (unsigned long long)atomic_load(&m->batch_sum), (unsigned long long)cum);
    cum = 0;
    fputs("# HELP kcqrs_commands_commit_seconds Begin to commit returned, per committed "
          "transaction.\n# TYPE kcqrs_commands_commit_seconds histogram\n",
          f);
    for (int b = 0; b <= CMD_WM_COMMIT_BUCKETS; b++) {
        cum += atomic_load(&m->commit[b]);
        if (b < CMD_WM_COMMIT_BUCKETS)
            fprintf(f, "kcqrs_commands_commit_seconds_bucket{le=\"%g\"} %llu\n",
                    0.0005 * (double)(1u << b), (unsigned long long)cum);
        else
            fprintf(f, "kcqrs_commands_commit_seconds_bucket{le=\"+Inf\"} %llu\n",
                    (unsigned long long)cum);
    }
    fprintf(f, "kcqrs_commands_commit_seconds_sum %.6f\nkcqrs_commands_commit_seconds_count %llu\n",
            atomic_load(&m->commit_sum_us) / 1e6, (unsigned long long)cum);
    if (snap != NULL) {
        cmd_snapshot_stats ss;
        cmd_snapshotter_stats(snap, &ss);
        fprintf(f,
                "# HELP kcqrs_commands_snapshots_total Snapshot writes by result.\n"
                "# TYPE kcqrs_commands_snapshots_total counter\n"
                "kcqrs_commands_snapshots_total{result=\"written\"} %llu\n"
                "kcqrs_commands_snapshots_total{result=\"failed\"} %llu\n"
                "# HELP kcqrs_commands_snapshot_records_total Records written by snapshots.\n"
                "# TYPE kcqrs_commands_snapshot_records_total counter\n"
                "kcqrs_commands_snapshot_records_total %llu\n"
                "# HELP kcqrs_commands_snapshot_write_seconds Duration of the last and the "
                "longest snapshot write (snapshot thread).\n"
                "# TYPE kcqrs_commands_snapshot_write_seconds gauge\n"
                "kcqrs_commands_snapshot_write_seconds{which=\"last\"} %.6f\n"
                "kcqrs_commands_snapshot_write_seconds{which=\"max\"} %.6f\n"
                "# HELP kcqrs_commands_snapshot_handover_seconds Time the writer thread spent "
                "handing changes to the snapshot thread.\n"
                "# TYPE kcqrs_commands_snapshot_handover_seconds summary\n"
                "kcqrs_commands_snapshot_handover_seconds_sum %.6f\n"
                "kcqrs_commands_snapshot_handover_seconds_count %llu\n"
                "# HELP kcqrs_commands_snapshot_handover_max_seconds The longest hand-over.\n"
                "# TYPE kcqrs_commands_snapshot_handover_max_seconds gauge\n"
                "kcqrs_commands_snapshot_handover_max_seconds %.6f\n",
                (unsigned long long)ss.written, (unsigned long long)ss.failures,
                (unsigned long long)ss.records, ss.last_s, ss.max_s,
                atomic_load(&m->handover_sum_us) / 1e6,
                (unsigned long long)atomic_load(&m->handovers),
                atomic_load(&m->handover_max_us) / 1e6);
    }
    fprintf(f,
            "# HELP kcqrs_commands_ready 1 when the writer accepts commands.\n"
            "# TYPE kcqrs_commands_ready gauge\nkcqrs_commands_ready %d\n"
            "# HELP kcqrs_commands_fenced 1 when another instance fenced this writer.\n"
            "# TYPE kcqrs_commands_fenced gauge\nkcqrs_commands_fenced %d\n",
            ready, fenced);
}
