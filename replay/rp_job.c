/*
 * rp_job.c — one target's run of a kcqrs-replay command; see rp_job.h.
 */
#include "rp_job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kq_err.h"
#include "kq_time.h"
#include "rp_fp.h"

#define RUNNER_POLL_MS 20

static const char *const phase_names[] = {"start", "bulk",   "finish",  "catchup", "lock",
                                          "tail",  "switch", "compare", "done"};

const char *rp_phase_name(int phase)
{
    return phase >= 0 && phase < RP_PH_N ? phase_names[phase] : "?";
}

double rp_mono_s(void)
{
    return (double)kq_time_mono_us() / 1e6;
}

static void nap_ms(int ms)
{
    nanosleep(&(struct timespec){ms / 1000, (long)(ms % 1000) * 1000000L}, NULL);
}

void rp_job_progress(rp_job *j, long long *done, long long *total, unsigned long long *applied)
{
    pthread_mutex_lock(&j->mu);
    *done = j->done_prev;
    *total = j->total_prev;
    *applied = 0;
    if (j->cur != NULL) {
        long long d, t;
        proj_runner_progress(j->cur, &d, &t, applied);
        *done += d;
        *total += t;
    }
    pthread_mutex_unlock(&j->mu);
}

/* Run `ops` (open_arg = sh) to its end offsets. 0, RP_EINTR, or the runner's error. */
static int run_pass(rp_job *j, const proj_target_ops *base, void *sh, const proj_offset *until,
                    size_t nuntil)
{
    proj_target_ops ops = *base;
    proj_runner_opts o;
    proj_runner *r;
    int rc;

    ops.open_arg = sh;
    memset(&o, 0, sizeof o);
    o.replay = 1;
    o.until = until;
    o.nuntil = nuntil;
    if ((rc = proj_runner_start_opts(j->cfg, &ops, &o, &r, j->err, sizeof j->err)) != 0)
        return rc;
    pthread_mutex_lock(&j->mu);
    j->cur = r;
    pthread_mutex_unlock(&j->mu);
    for (;;) {
        if (atomic_load(j->stop)) {
            rc = RP_EINTR;
            break;
        }
        if ((rc = proj_runner_failed(r, j->err, sizeof j->err)) != 0)
            break;
        if (proj_runner_at_end(r))
            break;
        nap_ms(RUNNER_POLL_MS);
    }
    pthread_mutex_lock(&j->mu);
    {
        long long d, t;
        unsigned long long a;
        proj_runner_progress(r, &d, &t, &a);
        j->done_prev += d;
        j->total_prev += t;
        j->skipped += proj_runner_skipped(r);
    }
    j->cur = NULL;
    pthread_mutex_unlock(&j->mu);
    /* ops is on this stack frame: the runner must be gone before we return */
    proj_runner_stop(r);
    return rc;
}

static void on_live_offset(void *arg, const char *topic, int32_t partition, int64_t next)
{
    rp_job *j = arg;

    for (size_t k = 0; k < j->nuntil; k++)
        if (j->until[k].partition == partition && strcmp(j->until[k].topic, topic) == 0)
            j->until[k].next_offset = next;
}

/* Enter phase `p`, charging the time since the last change to the previous one. */
static void enter(rp_job *j, rp_phase p, double *t0)
{
    double now = rp_mono_s();
    int prev = atomic_load(&j->phase);

    j->dur[prev] += now - *t0;
    *t0 = now;
    atomic_store(&j->phase, p);
}

static void *job_main(void *arg)
{
    rp_job *j = arg;
    const rp_target_ops *t = j->t;
    rp_fp *fl = NULL, *fs = NULL;
    void *sh = NULL, *lk = NULL;
    double t0 = rp_mono_s();
    int rc = 0, switched = 0;

    if (j->cmd == RP_CMD_VERIFY) {
        if ((fl = rp_fp_new(1)) == NULL || (fs = rp_fp_new(1)) == NULL) {
            rc = kq_seterr(j->err, sizeof j->err, KQ_ENOMEM, "out of memory");
            goto out;
        }
        /* the live model's offsets: every partition it does not name stays 0 */
        if ((rc = t->fingerprint_live(j->cfg, fl, on_live_offset, j, j->err, sizeof j->err)) != 0) {
            j->live_missing = rc == KQ_ENOTFOUND;
            goto out;
        }
    }
    if ((rc = t->shadow_create(j->cfg, j->cmd == RP_CMD_UNTIL ? j->name : NULL, &sh, j->err,
                               sizeof j->err)) != 0)
        goto out;
    enter(j, RP_PH_BULK, &t0);
    if ((rc = run_pass(j, &t->bulk, sh, j->cmd == RP_CMD_REBUILD ? NULL : j->until,
                       j->cmd == RP_CMD_REBUILD ? 0 : j->nuntil)) != 0)
        goto out;
    enter(j, RP_PH_FINISH, &t0);
    if ((rc = t->finish(sh, j->err, sizeof j->err)) != 0)
        goto out;
    if (j->cmd == RP_CMD_REBUILD) {
        /* the tail written meanwhile, without holding the projector up ... */
        enter(j, RP_PH_CATCHUP, &t0);
        if ((rc = run_pass(j, &t->tail, sh, NULL, 0)) != 0)
            goto out;
        /* ... then the last few under the lock, and the switch */
        enter(j, RP_PH_LOCK, &t0);
        if ((rc = t->lock_live(j->cfg, &lk, j->err, sizeof j->err)) != 0)
            goto out;
        enter(j, RP_PH_TAIL, &t0);
        if ((rc = run_pass(j, &t->tail, sh, NULL, 0)) != 0)
            goto out;
        enter(j, RP_PH_SWITCH, &t0);
        if ((rc = t->switch_live(sh, j->err, sizeof j->err)) != 0)
            goto out;
        switched = 1;
        t->unlock_live(lk);
        lk = NULL;
    } else if (j->cmd == RP_CMD_VERIFY) {
        enter(j, RP_PH_COMPARE, &t0);
        if ((rc = t->fingerprint_shadow(sh, fs, j->err, sizeof j->err)) != 0)
            goto out;
        if (!rp_fp_equal(fl, fs)) {
            size_t len = 0;
            FILE *mf = open_memstream(&j->diff, &len);
            if (mf == NULL) {
                rc = kq_seterr(j->err, sizeof j->err, KQ_ENOMEM, "out of memory");
                goto out;
            }
            rp_fp_print(fl, "live", mf);
            rp_fp_print(fs, "log", mf);
            j->ndiff = rp_fp_diff(fl, fs, mf, RP_DIFF_MAX);
            fclose(mf);
            if (j->ndiff == 0) /* equal rows, different digests cannot happen; be safe */
                j->ndiff = 1;
        }
    }
out:
    if (lk != NULL)
        t->unlock_live(lk);
    if (sh != NULL) {
        if (rc == 0 && (switched || j->cmd == RP_CMD_UNTIL))
            t->shadow_close(sh);
        else
            t->shadow_drop(sh);
    }
    rp_fp_free(fl);
    rp_fp_free(fs);
    enter(j, RP_PH_DONE, &t0);
    j->rc = rc;
    j->exit = rc != 0 ? 3 : j->ndiff != 0 ? 1 : 0;
    if (rc == RP_EINTR)
        snprintf(j->err, sizeof j->err, "interrupted");
    atomic_store(&j->finished, 1);
    return NULL;
}

int rp_job_start(rp_job *j)
{
    atomic_init(&j->phase, RP_PH_START);
    atomic_init(&j->finished, 0);
    pthread_mutex_init(&j->mu, NULL);
    if (pthread_create(&j->th, NULL, job_main, j) != 0) {
        pthread_mutex_destroy(&j->mu);
        return KQ_EIO;
    }
    return 0;
}

void rp_job_join(rp_job *j)
{
    pthread_join(j->th, NULL);
}

void rp_job_clear(rp_job *j)
{
    free(j->diff);
    j->diff = NULL;
    pthread_mutex_destroy(&j->mu);
}
