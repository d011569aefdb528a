/*
 * kcqrs_replay.c — `kcqrs-replay`: rebuilds, verifies and snapshots the read
 * models straight from the event log (replay/README.md is the contract,
 * replay/rp_target.h the flows).
 *
 * This main wires: the command line (rp_cli.h), the configuration, the
 * bounds of a snapshot (rp_until.h), one job per selected target (rp_job.h:
 * its own thread and proj_runner(s) in replay mode through the
 * rp_target_ops table; --target all runs both at once and switches each
 * when it is done), the signals (SIGINT/SIGTERM: every job stops, drops its
 * shadow, exit 3) and the output (rp_progress.h: progress while the jobs
 * run, a log line every 2 s or a \r line on a TTY, or JSON lines with
 * --json; then the result).
 *
 * Exit status: 0 success (verify: equal), 1 verify found differences,
 * 2 usage or configuration error, 3 the run failed (Kafka, PostgreSQL, the
 * file system, another rebuild holding the lock, a signal).
 */
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kq_config.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_time.h"
#include "rp_cli.h"
#include "rp_job.h"
#include "rp_progress.h"
#include "rp_record.h"
#include "rp_until.h"

#define NTOPICS 3
#define REPLAY_BATCH_MS 100
#define LOG_EVERY_MS 2000
#define TTY_EVERY_MS 250

static const char usage[] =
    "usage: " RP_PROG " rebuild --target lmdb|pg|all [--json]\n"
    "       " RP_PROG " rebuild --target lmdb|pg|all --until TIME [--name NAME] [--json]\n"
    "       " RP_PROG " rebuild --target lmdb|pg|all --until-offsets SPEC [--name NAME] [--json]\n"
    "       " RP_PROG " verify  --target lmdb|pg|all [--json]\n"
    "       " RP_PROG " drop-snapshot --target lmdb|pg|all --name NAME\n"
    "\n"
    "rebuild         replays the event log into a shadow read model (batches of\n"
    "                KCQRS_REPLAY_BATCH_MAX events), catches up the tail under the\n"
    "                read-model lock and switches the shadow live; the previous model\n"
    "                is kept as readmodel.retired / <schema>_retired. The projector\n"
    "                and the query API keep running.\n"
    "  --until TIME  a named point-in-time snapshot of the events with occurred_at <=\n"
    "                TIME (RFC 3339, e.g. 2026-11-22T10:00:00Z, or @<microseconds>)\n"
    "  --until-offsets SPEC\n"
    "                a named snapshot up to topic:partition=next_offset[,...]\n"
    "                (exclusive; other partitions to their end offsets at start)\n"
    "  --name NAME   snapshot name [a-z0-9_]{1,32} (default until_<YYYYmmddtHHMMSS>);\n"
    "                served by the query API with ?snapshot=NAME\n"
    "verify          rebuilds a shadow up to the live model's own offsets and compares\n"
    "                fingerprints; prints up to 20 differing rows per target\n"
    "drop-snapshot   removes the named snapshot\n"
    "  --json        progress and the result as one JSON object per line on stdout\n"
    "Stop with SIGINT/SIGTERM: the shadow is dropped, the live model is untouched.\n"
    "Exit status: 0 success (verify: equal), 1 verify found differences, 2 usage or\n"
    "configuration error, 3 the run failed.\n";

static int drop_snapshots(const rp_args *a, const kq_config *cfg)
{
    char err[1024];
    int exit_code = 0;

    for (size_t i = 0; i < a->ntargets; i++) {
        int rc = a->targets[i]->drop_snapshot(cfg, a->name, err, sizeof err);
        if (rc != 0) {
            fprintf(stderr, "%s: %s: %s\n", RP_PROG, a->targets[i]->name, err);
            exit_code = rc == KQ_ENOTFOUND || rc == KQ_EINVAL ? 2 : 3;
        } else {
            printf("%s: snapshot %s dropped\n", a->targets[i]->name, a->name);
        }
    }
    return exit_code;
}

/* Wait for the jobs, showing progress, taking the signals. Returns the signal seen, or 0. */
static int wait_jobs(rp_job *jobs, size_t n, rp_meter *ms, atomic_int *stop, sigset_t *set,
                     int json)
{
    int tty = isatty(2), sig = 0;
    double last_show = 0;

    for (;;) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        size_t fin = 0;
        double now;
        int s;

        if (!atomic_load(stop) && (s = sigtimedwait(set, NULL, &ts)) > 0) {
            kq_log_warn("signal %d: stopping, the shadows are dropped", s);
            sig = s;
            atomic_store(stop, 1);
        } else if (atomic_load(stop)) {
            nanosleep(&ts, NULL);
        }
        for (size_t i = 0; i < n; i++)
            fin += atomic_load(&jobs[i].finished) != 0;
        if (fin == n)
            break;
        now = rp_mono_s();
        if (now - last_show >= (json || !tty ? LOG_EVERY_MS : TTY_EVERY_MS) / 1000.0) {
            rp_progress_show(jobs, n, ms, json, tty && !json);
            last_show = now;
        }
    }
    if (tty && !json && last_show > 0)
        fprintf(stderr, "\n");
    return sig;
}

int main(int argc, char **argv)
{
    kq_config cfg, rcfg;
    rp_args a;
    char topics[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX];
    const char *tnames[NTOPICS], *name;
    char defname[RP_NAME_MAX + 8], err[1024];
    rp_job jobs[RP_MAX_TARGETS];
    rp_meter ms[RP_MAX_TARGETS];
    proj_offset *until = NULL;
    size_t nuntil, started = 0;
    int exit_code = 0, sig;
    atomic_int stop = 0;
    sigset_t set;
    double t_start;
    int64_t started_us = 0;

    if (kq_config_handle_flags(argc, argv, RP_PROG, usage))
        return 0;
    if (rp_cli_parse(argc, argv, &a, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s (see --help)\n", RP_PROG, err);
        return 2;
    }
    name = a.name;
    if (kq_config_load_and_init_log(&cfg, RP_PROG, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", RP_PROG, err);
        return 2;
    }
    if (kq_kafka_topic_names(&cfg, topics) < 0) {
        fprintf(stderr, "%s: KCQRS_TOPIC_PREFIX too long\n", RP_PROG);
        kq_config_free(&cfg);
        return 2;
    }
    for (int k = 0; k < NTOPICS; k++)
        tnames[k] = topics[k];
    if (a.cmd == RP_CMD_DROP) {
        exit_code = drop_snapshots(&a, &cfg);
        kq_config_free(&cfg);
        return exit_code;
    }

    /* LMDB mallocs and frees every dirty page of a write transaction, and a
     * bulk transaction dirties tens of thousands: keep the freed heap instead
     * of returning it to the kernel and faulting it in again (a tenth of the
     * CPU of a rebuild went to page faults). */
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    mallopt(M_TOP_PAD, 64 << 20);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every thread */

    rcfg = cfg; /* shallow: strings stay cfg's */
    rcfg.proj_batch_max = cfg.replay_batch_max;
    rcfg.proj_batch_ms = REPLAY_BATCH_MS;
    nuntil = (size_t)NTOPICS * (size_t)cfg.partitions;
    if ((until = calloc(nuntil * (a.ntargets + 1), sizeof *until)) == NULL) {
        fprintf(stderr, "%s: out of memory\n", RP_PROG);
        kq_config_free(&cfg);
        return 3;
    }
    t_start = rp_mono_s();
    started_us = kq_time_now_us();
    if (a.cmd == RP_CMD_UNTIL) {
        int rc = rp_until_bounds(&cfg, tnames, a.until_spec, a.until_us, until, &nuntil, &name,
                                 defname, sizeof defname, err, sizeof err);
        if (rc != 0) {
            fprintf(stderr, "%s: %s\n", RP_PROG, err);
            exit_code = rc == KQ_EINVAL ? 2 : 3;
            goto done;
        }
    }
    memset(jobs, 0, sizeof jobs);
    memset(ms, 0, sizeof ms);
    for (size_t i = 0; i < a.ntargets; i++) {
        rp_job *j = &jobs[i];

        j->t = a.targets[i];
        j->cfg = &rcfg;
        j->cmd = a.cmd;
        j->name = name;
        j->stop = &stop;
        if (a.cmd == RP_CMD_UNTIL) {
            j->until = until;
            j->nuntil = nuntil;
        } else if (a.cmd == RP_CMD_VERIFY) { /* each target's own live offsets, 0 where none */
            j->until = until + nuntil * (i + 1);
            j->nuntil = nuntil;
            for (size_t k = 0; k < nuntil; k++) {
                j->until[k].topic = topics[k / (size_t)cfg.partitions];
                j->until[k].partition = (int32_t)(k % (size_t)cfg.partitions);
                j->until[k].next_offset = 0;
            }
        }
        ms[i].t_last = rp_mono_s();
        if (rp_job_start(j) != 0) {
            fprintf(stderr, "%s: cannot start a thread\n", RP_PROG);
            atomic_store(&stop, 1);
            exit_code = 3;
            break;
        }
        started++;
    }
    sig = wait_jobs(jobs, started, ms, &stop, &set, a.json);
    for (size_t i = 0; i < started; i++) {
        rp_job_join(&jobs[i]);
        if (jobs[i].exit > exit_code)
            exit_code = jobs[i].exit;
    }
    if (sig > 0 || atomic_load(&stop))
        exit_code = 3;
    rp_progress_report(jobs, started, a.cmd, a.cmd == RP_CMD_UNTIL ? name : NULL, &cfg, a.json,
                       exit_code, rp_mono_s() - t_start);
    if (started > 0 && rp_record_runs(&cfg, jobs, started, a.cmd, name, started_us,
                                      kq_time_now_us(), sig > 0, err, sizeof err) != 0)
        fprintf(stderr, "%s: the run's result was not recorded: %s\n", RP_PROG, err);
    for (size_t i = 0; i < started; i++) {
        if (jobs[i].live_missing)
            fprintf(stderr, "%s: %s: there is no live read model to verify (rebuild creates one)\n",
                    RP_PROG, jobs[i].t->name);
        rp_job_clear(&jobs[i]);
    }
done:
    free(until);
    kq_config_free(&cfg);
    return exit_code;
}
