/*
 * rp_progress.h — what kcqrs-replay shows while its jobs run and when they
 * are done.
 *
 * What it is for
 *   Progress of every job (rp_job.h): a \r line on stderr when it is a TTY,
 *   a log line otherwise, or with --json one JSON object per line on stdout
 *   ({"target", "phase", "events", "total", "rate", "eta_s"}); the rate is
 *   smoothed over half-second samples. Then the result: per target a line
 *   (rebuilt and switched live / snapshot built, with the time of each
 *   phase; verify: equal, or the differing rows), or with --json one
 *   {"result", "command", "snapshot", "exit", "seconds", "targets": [...]}.
 *
 * Threads: the main thread's (it reads the jobs as rp_job.h allows).
 */
#ifndef RP_PROGRESS_H
#define RP_PROGRESS_H

#include <stddef.h>

#include "kq_config.h"
#include "rp_job.h"

/* One job's rate estimate. Zero it, then set t_last = rp_mono_s() at the job's start. */
typedef struct rp_meter {
    double t_last;
    long long done_last;
    double rate; /* smoothed events/s */
} rp_meter;

/* Show the progress of jobs[0..n) (ms: one meter each) as described above. */
void rp_progress_show(rp_job *jobs, size_t n, rp_meter *ms, int json, int tty);

/*
 * The result of joined jobs[0..n): to stdout (per target errors to stderr).
 * `name`: the snapshot of RP_CMD_UNTIL (else NULL); cfg for the query URL
 * printed after a snapshot.
 */
void rp_progress_report(rp_job *jobs, size_t n, rp_cmd cmd, const char *name, const kq_config *cfg,
                        int json, int exit_code, double total_s);

#endif
