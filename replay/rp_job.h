/*
 * rp_job.h — one target's run of a kcqrs-replay command, on its own thread.
 *
 * What it is for
 *   The flows of replay/rp_target.h driven for one target: rebuild (bulk
 *   pass into a shadow, finish, catch-up pass, lock, tail pass, switch),
 *   a point-in-time snapshot (bulk pass up to the until offsets, finish,
 *   keep) and verify (fingerprint the live model and the offsets it covers,
 *   bulk pass up to exactly those, fingerprint the shadow, compare). Each
 *   pass is the projector's own runner (projections/proj_runner.h) in
 *   replay mode. The job records its phase, the time spent in each, its
 *   progress and its outcome for the main thread to show (rp_progress.h).
 *
 * Threads: rp_job_main runs on the job's thread; the main thread reads
 *   `phase` and `finished` (atomics) and the progress (rp_job_progress,
 *   under the job's mutex) meanwhile, everything else after joining it.
 *   `stop` (shared by every job) asks the job to stop: it drops its shadow
 *   and ends with RP_EINTR.
 */
#ifndef RP_JOB_H
#define RP_JOB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "kq_config.h"
#include "kq_kafka.h"
#include "proj_runner.h"
#include "rp_cli.h"
#include "rp_target.h"

#define RP_EINTR (-100) /* a job stopped by a signal */
#define RP_DIFF_MAX 20  /* differing rows printed per target by verify */

typedef enum rp_phase {
    RP_PH_START,
    RP_PH_BULK,
    RP_PH_FINISH,
    RP_PH_CATCHUP,
    RP_PH_LOCK,
    RP_PH_TAIL,
    RP_PH_SWITCH,
    RP_PH_COMPARE,
    RP_PH_DONE,
    RP_PH_N
} rp_phase;

/* "start", "bulk", ... "done". */
const char *rp_phase_name(int phase);

typedef struct rp_job {
    /* set by the caller before rp_job_start */
    const rp_target_ops *t;
    const kq_config *cfg; /* the replay copy (batch size) */
    rp_cmd cmd;
    const char *name;   /* RP_CMD_UNTIL: the snapshot name */
    proj_offset *until; /* RP_CMD_UNTIL and RP_CMD_VERIFY: nuntil end offsets (the caller's) */
    size_t nuntil;
    atomic_int *stop;

    /* the job's */
    pthread_t th;
    atomic_int phase;
    atomic_int finished;
    pthread_mutex_t mu;
    proj_runner *cur;                /* under mu: the runner whose progress is shown */
    long long done_prev, total_prev; /* events of the runners already finished */
    unsigned long long skipped;

    double dur[RP_PH_N]; /* seconds spent in each phase */
    int rc;              /* 0 or KQ_E* / RP_EINTR */
    int exit;            /* 0, 1 (verify: differences) or 3 */
    char err[1024];
    long ndiff;
    char *diff; /* verify: the printed differences (malloc'd, freed by rp_job_clear) */
    int live_missing;
} rp_job;

/* Initialise the job's own fields and start its thread. 0 or KQ_EIO. */
int rp_job_start(rp_job *j);

/* Join the thread (after `finished`). */
void rp_job_join(rp_job *j);

/* Free what a joined job owns. */
void rp_job_clear(rp_job *j);

/* Events replayed so far and to replay in all, and applied by the current pass. */
void rp_job_progress(rp_job *j, long long *done, long long *total, unsigned long long *applied);

/* Seconds on CLOCK_MONOTONIC. */
double rp_mono_s(void);

#endif
