/*
 * kq_procmetrics.h — the process and build metrics every service exports.
 *
 * What it is for: GET /metrics of every service (kq_http calls
 * kq_procmetrics_write after its own metrics) carries, in the names the
 * Prometheus client libraries use, so that stock dashboards and alerts work:
 *   kcqrs_build_info{version,commit} 1
 *   process_cpu_seconds_total, process_resident_memory_bytes,
 *   process_virtual_memory_bytes, process_open_fds, process_max_fds,
 *   process_start_time_seconds, process_threads
 * read from /proc/self at each scrape (Linux). A value that cannot be read
 * is left out, never printed as a guess.
 *
 * What it owns: nothing (the start time is computed once and cached).
 * Threads: any; no state but the cached start time (pthread_once).
 */
#ifndef KQ_PROCMETRICS_H
#define KQ_PROCMETRICS_H

#include <stdio.h>

/* The fields of /proc/<pid>/stat these metrics use (clock ticks and pages, as read). */
typedef struct kq_proc_stat {
    unsigned long long utime, stime; /* fields 14, 15: CPU time in clock ticks */
    long long threads;               /* field 20 */
    unsigned long long starttime;    /* field 22: ticks after boot */
    unsigned long long vsize;        /* field 23: bytes */
    long long rss;                   /* field 24: pages */
} kq_proc_stat;

/*
 * Parse the text of /proc/<pid>/stat (the command name may hold spaces and
 * parentheses: the fields are counted after the last ')'). 0, or KQ_EINVAL
 * when a field is missing or not a number. Pure.
 */
int kq_procmetrics_parse_stat(const char *text, kq_proc_stat *out);

/* Write the metrics above (HELP and TYPE lines included) to `out`. */
void kq_procmetrics_write(FILE *out);

#endif
