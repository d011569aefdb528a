/*
 * kcqrs_replay.c — `kcqrs-replay`: rebuilds, verifies and snapshots the read
 * models straight from the event log (replay/README.md is the contract,
 * replay/rp_target.h the flows).
 *
 * Each selected target runs in its own thread (job_main) through the
 * rp_target_ops table with its own proj_runner(s) in replay mode (fail fast,
 * no DLQ, stop at the end offsets); --target all runs both at once and
 * switches each when it is done. The main thread takes the signals
 * (SIGINT/SIGTERM: every job stops, drops its shadow, exit 3) and prints
 * progress: a \r line on a TTY, a log line every 2 s otherwise, or with
 * --json one JSON object per line on stdout and a final {"result": ...}.
 *
 * Exit status: 0 success (verify: equal), 1 verify found differences,
 * 2 usage or configuration error, 3 the run failed (Kafka, PostgreSQL, the
 * file system, another rebuild holding the lock, a signal).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <malloc.h>

#include "kq_config.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_time.h"
#include "proj_runner.h"
#include "rp_fp.h"
#include "rp_target.h"
#include "rp_until.h"

#define PROG "kcqrs-replay"
#define NTOPICS 3
#define MAX_JOBS 2
#define DIFF_MAX 20
#define RUNNER_POLL_MS 20
#define REPLAY_BATCH_MS 100
#define LOG_EVERY_MS 2000
#define TTY_EVERY_MS 250

static const char usage[] =
    "usage: " PROG " rebuild --target lmdb|pg|all [--json]\n"
    "       " PROG " rebuild --target lmdb|pg|all --until TIME [--name NAME] [--json]\n"
    "       " PROG " rebuild --target lmdb|pg|all --until-offsets SPEC [--name NAME] [--json]\n"
    "       " PROG " verify  --target lmdb|pg|all [--json]\n"
    "       " PROG " drop-snapshot --target lmdb|pg|all --name NAME\n"
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

enum cmd { CMD_REBUILD, CMD_UNTIL, CMD_VERIFY, CMD_DROP };
static const char *const cmd_names[] = {"rebuild", "rebuild", "verify", "drop-snapshot"};

enum phase {
    PH_START,
    PH_BULK,
    PH_FINISH,
    PH_CATCHUP,
    PH_LOCK,
    PH_TAIL,
    PH_SWITCH,
    PH_COMPARE,
    PH_DONE,
    PH_N
};
static const char *const phase_names[] = {"start", "bulk",   "finish",  "catchup", "lock",
                                          "tail",  "switch", "compare", "done"};

#define RP_EINTR (-100) /* a job stopped by a signal */

typedef struct job {
    const rp_target_ops *t;
    const kq_config *cfg; /* the replay copy (batch size) */
    enum cmd cmd;
    const char *name;
    proj_offset *until; /* CMD_UNTIL and CMD_VERIFY: nuntil end offsets */
    size_t nuntil;
    char (*topics)[KQ_KAFKA_TOPIC_MAX];
    atomic_int *stop;

    pthread_t th;
    atomic_int phase;
    atomic_int finished;
    pthread_mutex_t mu;
    proj_runner *cur;                /* under mu: the runner whose progress is shown */
    long long done_prev, total_prev; /* events of the runners already finished */
    unsigned long long skipped;

    double dur[PH_N];
    int rc;   /* 0 or KQ_E* / RP_EINTR */
    int exit; /* 0, 1 or 3 */
    char err[1024];
    long ndiff;
    char *diff; /* verify: the printed differences (malloc'd) */
    int live_missing;
} job;

static double mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap_ms(int ms)
{
    nanosleep(&(struct timespec){ms / 1000, (long)(ms % 1000) * 1000000L}, NULL);
}

/* ------------------------------------------------------------ one runner pass */

static void progress_of(job *j, long long *done, long long *total, unsigned long long *applied)
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
static int run_pass(job *j, const proj_target_ops *base, void *sh, const proj_offset *until,
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
    job *j = arg;

    for (size_t k = 0; k < j->nuntil; k++)
        if (j->until[k].partition == partition && strcmp(j->until[k].topic, topic) == 0)
            j->until[k].next_offset = next;
}

/* Enter phase `p`, charging the time since the last change to the previous one. */
static void enter(job *j, enum phase p, double *t0)
{
    double now = mono_s();
    int prev = atomic_load(&j->phase);

    j->dur[prev] += now - *t0;
    *t0 = now;
    atomic_store(&j->phase, p);
}

static void *job_main(void *arg)
{
    job *j = arg;
    const rp_target_ops *t = j->t;
    rp_fp *fl = NULL, *fs = NULL;
    void *sh = NULL, *lk = NULL;
    double t0 = mono_s();
    int rc = 0, switched = 0;

    if (j->cmd == CMD_VERIFY) {
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
    if ((rc = t->shadow_create(j->cfg, j->cmd == CMD_UNTIL ? j->name : NULL, &sh, j->err,
                               sizeof j->err)) != 0)
        goto out;
    enter(j, PH_BULK, &t0);
    if ((rc = run_pass(j, &t->bulk, sh, j->cmd == CMD_REBUILD ? NULL : j->until,
                       j->cmd == CMD_REBUILD ? 0 : j->nuntil)) != 0)
        goto out;
    enter(j, PH_FINISH, &t0);
    if ((rc = t->finish(sh, j->err, sizeof j->err)) != 0)
        goto out;
    if (j->cmd == CMD_REBUILD) {
        /* the tail written meanwhile, without holding the projector up ... */
        enter(j, PH_CATCHUP, &t0);
        if ((rc = run_pass(j, &t->tail, sh, NULL, 0)) != 0)
            goto out;
        /* ... then the last few under the lock, and the switch */
        enter(j, PH_LOCK, &t0);
        if ((rc = t->lock_live(j->cfg, &lk, j->err, sizeof j->err)) != 0)
            goto out;
        enter(j, PH_TAIL, &t0);
        if ((rc = run_pass(j, &t->tail, sh, NULL, 0)) != 0)
            goto out;
        enter(j, PH_SWITCH, &t0);
        if ((rc = t->switch_live(sh, j->err, sizeof j->err)) != 0)
            goto out;
        switched = 1;
        t->unlock_live(lk);
        lk = NULL;
    } else if (j->cmd == CMD_VERIFY) {
        enter(j, PH_COMPARE, &t0);
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
            j->ndiff = rp_fp_diff(fl, fs, mf, DIFF_MAX);
            fclose(mf);
            if (j->ndiff == 0) /* equal rows, different digests cannot happen; be safe */
                j->ndiff = 1;
        }
    }
out:
    if (lk != NULL)
        t->unlock_live(lk);
    if (sh != NULL) {
        if (rc == 0 && (switched || j->cmd == CMD_UNTIL))
            t->shadow_close(sh);
        else
            t->shadow_drop(sh);
    }
    rp_fp_free(fl);
    rp_fp_free(fs);
    enter(j, PH_DONE, &t0);
    j->rc = rc;
    j->exit = rc != 0 ? 3 : j->ndiff != 0 ? 1 : 0;
    if (rc == RP_EINTR)
        snprintf(j->err, sizeof j->err, "interrupted");
    atomic_store(&j->finished, 1);
    return NULL;
}

/* ------------------------------------------------------------ progress */

typedef struct meter {
    double t_last;
    long long done_last;
    double rate; /* smoothed events/s */
} meter;

static void measure(job *j, meter *m, long long *done, long long *total, double *eta)
{
    unsigned long long applied;
    double now = mono_s(), dt = now - m->t_last;

    progress_of(j, done, total, &applied);
    if (dt >= 0.5) {
        double r = (double)(*done - m->done_last) / dt;
        m->rate = m->rate == 0 ? r : 0.5 * m->rate + 0.5 * r;
        m->t_last = now;
        m->done_last = *done;
    }
    *eta = m->rate > 0 && *total > *done ? (double)(*total - *done) / m->rate : -1;
}

static void show_progress(job *jobs, size_t n, meter *ms, int json, int tty)
{
    char line[512];
    size_t off = 0;

    for (size_t i = 0; i < n; i++) {
        long long done, total;
        double eta;
        const char *ph = phase_names[atomic_load(&jobs[i].phase)];

        measure(&jobs[i], &ms[i], &done, &total, &eta);
        if (json) {
            printf("{\"target\":\"%s\",\"phase\":\"%s\",\"events\":%lld,\"total\":%lld,"
                   "\"rate\":%.0f,\"eta_s\":%.1f}\n",
                   jobs[i].t->name, ph, done, total, ms[i].rate, eta < 0 ? 0 : eta);
            fflush(stdout);
        } else if (tty) {
            off += (size_t)snprintf(
                line + off, sizeof line - off, "%s%s %s %lld/%lld events %.0f/s ETA %.0fs",
                i ? " | " : "", jobs[i].t->name, ph, done, total, ms[i].rate, eta < 0 ? 0 : eta);
            if (off >= sizeof line)
                off = sizeof line - 1;
        } else {
            kq_log_info("%s: %s %lld/%lld events, %.0f events/s, ETA %.0f s", jobs[i].t->name, ph,
                        done, total, ms[i].rate, eta < 0 ? 0 : eta);
        }
    }
    if (tty && !json) {
        fprintf(stderr, "\r%-100s", line);
        fflush(stderr);
    }
}

/* ------------------------------------------------------------ results */

static void report(job *jobs, size_t n, enum cmd cmd, const char *name, const kq_config *cfg,
                   int json, int exit_code, double total_s)
{
    if (json) {
        json_t *o = json_object(), *arr = json_array();
        char *s;

        json_object_set_new(o, "result",
                            json_string(exit_code == 0   ? "ok"
                                        : exit_code == 1 ? "differences"
                                                         : "failed"));
        json_object_set_new(o, "command", json_string(cmd_names[cmd]));
        if (name != NULL)
            json_object_set_new(o, "snapshot", json_string(name));
        json_object_set_new(o, "exit", json_integer(exit_code));
        json_object_set_new(o, "seconds", json_real(total_s));
        for (size_t i = 0; i < n; i++) {
            job *j = &jobs[i];
            json_t *t = json_object(), *d = json_object();
            long long done, total;
            unsigned long long a;

            progress_of(j, &done, &total, &a);
            json_object_set_new(t, "target", json_string(j->t->name));
            json_object_set_new(t, "result",
                                json_string(j->exit == 0   ? "ok"
                                            : j->exit == 1 ? "differences"
                                                           : "failed"));
            json_object_set_new(t, "events", json_integer(done));
            json_object_set_new(t, "skipped", json_integer((json_int_t)j->skipped));
            for (int p = PH_BULK; p < PH_DONE; p++)
                if (j->dur[p] > 0)
                    json_object_set_new(d, phase_names[p], json_real(j->dur[p]));
            json_object_set_new(t, "durations", d);
            if (j->rc != 0)
                json_object_set_new(t, "error", json_string(j->err));
            if (cmd == CMD_VERIFY && j->rc == 0) {
                json_object_set_new(t, "differences", json_integer(j->ndiff));
                if (j->diff != NULL)
                    json_object_set_new(t, "diff", json_string(j->diff));
            }
            json_array_append_new(arr, t);
        }
        json_object_set_new(o, "targets", arr);
        if ((s = json_dumps(o, JSON_COMPACT)) != NULL) {
            printf("%s\n", s);
            free(s);
        }
        json_decref(o);
        fflush(stdout);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        job *j = &jobs[i];
        long long done, total;
        unsigned long long a;

        progress_of(j, &done, &total, &a);
        if (j->rc != 0) {
            fprintf(stderr, "%s: %s: %s\n", PROG, j->t->name, j->err);
            continue;
        }
        if (cmd == CMD_VERIFY) {
            if (j->ndiff == 0) {
                printf("%s: equal to the log (%lld offsets replayed)\n", j->t->name, done);
            } else {
                const char *p = j->diff ? j->diff : "";
                printf("%s: %ld rows differ from the log:\n", j->t->name, j->ndiff);
                while (*p) { /* prefix each line with the target */
                    const char *nl = strchr(p, '\n');
                    int len = nl ? (int)(nl - p) : (int)strlen(p);
                    printf("%s: %.*s\n", j->t->name, len, p);
                    p += len + (nl ? 1 : 0);
                }
            }
        } else {
            printf("%s: %s: %lld offsets replayed (%llu records skipped) in %.1f s "
                   "(bulk %.1f s, finish %.1f s, catch-up %.1f s, tail under lock %.1f s)\n",
                   j->t->name, cmd == CMD_UNTIL ? "snapshot built" : "rebuilt and switched live",
                   done, j->skipped,
                   j->dur[PH_BULK] + j->dur[PH_FINISH] + j->dur[PH_CATCHUP] + j->dur[PH_LOCK] +
                       j->dur[PH_TAIL] + j->dur[PH_SWITCH],
                   j->dur[PH_BULK], j->dur[PH_FINISH], j->dur[PH_CATCHUP],
                   j->dur[PH_LOCK] + j->dur[PH_TAIL] + j->dur[PH_SWITCH]);
        }
    }
    if (cmd == CMD_UNTIL && exit_code == 0)
        printf("query it: curl -H \"Authorization: Bearer $TOKEN\" "
               "'http://%s/api/v1/resources?snapshot=%s'\n",
               cfg->query_addr, name);
    fflush(stdout);
}

/* ------------------------------------------------------------ main */

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", PROG);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see --help)\n");
    return 2;
}

int main(int argc, char **argv)
{
    kq_config cfg, rcfg;
    const rp_target_ops *sel[MAX_JOBS];
    char topics[NTOPICS][KQ_KAFKA_TOPIC_MAX], names[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX];
    const char *tnames[NTOPICS];
    const char *target = NULL, *until_time = NULL, *until_spec = NULL, *name = NULL;
    char defname[RP_NAME_MAX + 8], err[1024];
    job jobs[MAX_JOBS];
    meter ms[MAX_JOBS];
    proj_offset *until = NULL;
    size_t nsel = 0, nuntil = 0, started = 0;
    int json = 0, tty, sig = 0, exit_code = 0;
    atomic_int stop = 0;
    enum cmd cmd;
    sigset_t set;
    double t_start, last_show = 0;
    int64_t until_us = 0;

    if (kq_config_handle_help(argc, argv, usage))
        return 0;
    if (argc < 2)
        return usage_error("missing command: rebuild, verify or drop-snapshot%s", "");
    if (strcmp(argv[1], "rebuild") == 0)
        cmd = CMD_REBUILD;
    else if (strcmp(argv[1], "verify") == 0)
        cmd = CMD_VERIFY;
    else if (strcmp(argv[1], "drop-snapshot") == 0)
        cmd = CMD_DROP;
    else
        return usage_error("unknown command '%s'", argv[1]);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;

        if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        }
        if (strcmp(a, "--target") == 0)
            dst = &target;
        else if (strcmp(a, "--until") == 0)
            dst = &until_time;
        else if (strcmp(a, "--until-offsets") == 0)
            dst = &until_spec;
        else if (strcmp(a, "--name") == 0)
            dst = &name;
        else
            return usage_error("unexpected argument '%s'", a);
        if (i + 1 >= argc)
            return usage_error("%s needs a value", a);
        if (*dst != NULL)
            return usage_error("%s given twice", a);
        *dst = argv[++i];
    }
    if (target == NULL)
        return usage_error("--target lmdb|pg|all is required%s", "");
    if (strcmp(target, "lmdb") == 0 || strcmp(target, "all") == 0)
        sel[nsel++] = &rp_lmdb_ops;
    if (strcmp(target, "pg") == 0 || strcmp(target, "all") == 0)
        sel[nsel++] = &rp_pg_ops;
    if (nsel == 0)
        return usage_error("--target must be lmdb, pg or all, not '%s'", target);
    if (until_time != NULL && until_spec != NULL)
        return usage_error("--until and --until-offsets exclude each other%s", "");
    if ((until_time != NULL || until_spec != NULL)) {
        if (cmd != CMD_REBUILD)
            return usage_error("--until/--until-offsets go with rebuild only%s", "");
        cmd = CMD_UNTIL;
    }
    if (name != NULL && cmd != CMD_UNTIL && cmd != CMD_DROP)
        return usage_error("--name goes with --until, --until-offsets or drop-snapshot%s", "");
    if (cmd == CMD_DROP && name == NULL)
        return usage_error("drop-snapshot needs --name NAME%s", "");
    if (cmd == CMD_DROP && json)
        return usage_error("--json is not for drop-snapshot%s", "");
    if (name != NULL && !rp_name_valid(name))
        return usage_error("--name '%s' is not [a-z0-9_]{1,32}", name);
    if (until_time != NULL && kq_time_parse_err(until_time, &until_us, err, sizeof err) != 0)
        return usage_error("%s", err);

    if (kq_config_load_and_init_log(&cfg, PROG, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        return 2;
    }
    if (kq_kafka_topic_names(&cfg, names) < 0) {
        fprintf(stderr, "%s: KCQRS_TOPIC_PREFIX too long\n", PROG);
        kq_config_free(&cfg);
        return 2;
    }
    for (int k = 0; k < NTOPICS; k++) {
        memcpy(topics[k], names[k], KQ_KAFKA_TOPIC_MAX);
        tnames[k] = topics[k];
    }
    if (cmd == CMD_DROP) {
        for (size_t i = 0; i < nsel; i++) {
            int rc = sel[i]->drop_snapshot(&cfg, name, err, sizeof err);
            if (rc != 0) {
                fprintf(stderr, "%s: %s: %s\n", PROG, sel[i]->name, err);
                exit_code = rc == KQ_ENOTFOUND || rc == KQ_EINVAL ? 2 : 3;
            } else {
                printf("%s: snapshot %s dropped\n", sel[i]->name, name);
            }
        }
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
    if ((until = calloc(nuntil * (nsel + 1), sizeof *until)) == NULL) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        kq_config_free(&cfg);
        return 3;
    }
    t_start = mono_s();
    if (cmd == CMD_UNTIL) {
        size_t n = 0;
        int rc;
        if (until_spec != NULL) {
            rc = rp_parse_offsets(until_spec, tnames, NTOPICS, cfg.partitions, until, nuntil, &n,
                                  err, sizeof err);
            if (rc != 0) {
                fprintf(stderr, "%s: %s\n", PROG, err);
                exit_code = 2;
                goto done;
            }
            if (name == NULL) {
                rp_default_name(kq_time_now_us(), defname, sizeof defname);
                name = defname;
            }
        } else {
            if ((rc = rp_until_resolve(&cfg, tnames, until_us, until, &n, err, sizeof err)) != 0) {
                fprintf(stderr, "%s: %s\n", PROG, err);
                exit_code = 3;
                goto done;
            }
            if (name == NULL) {
                rp_default_name(until_us, defname, sizeof defname);
                name = defname;
            }
            for (size_t k = 0; k < n; k++)
                kq_log_info("until: %s [%" PRId32 "] ends before offset %" PRId64, until[k].topic,
                            until[k].partition, until[k].next_offset);
        }
        nuntil = n;
    }
    memset(jobs, 0, sizeof jobs);
    memset(ms, 0, sizeof ms);
    for (size_t i = 0; i < nsel; i++) {
        job *j = &jobs[i];

        j->t = sel[i];
        j->cfg = &rcfg;
        j->cmd = cmd;
        j->name = name;
        j->topics = topics;
        j->stop = &stop;
        pthread_mutex_init(&j->mu, NULL);
        if (cmd == CMD_UNTIL) {
            j->until = until;
            j->nuntil = nuntil;
        } else if (cmd == CMD_VERIFY) { /* each target's own live offsets, 0 where none */
            j->until = until + nuntil * (i + 1);
            j->nuntil = nuntil;
            for (size_t k = 0; k < nuntil; k++) {
                j->until[k].topic = topics[k / (size_t)cfg.partitions];
                j->until[k].partition = (int32_t)(k % (size_t)cfg.partitions);
                j->until[k].next_offset = 0;
            }
        }
        ms[i].t_last = mono_s();
        if (pthread_create(&j->th, NULL, job_main, j) != 0) {
            fprintf(stderr, "%s: cannot start a thread\n", PROG);
            atomic_store(&stop, 1);
            exit_code = 3;
            break;
        }
        started++;
    }
    tty = isatty(2);
    for (;;) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        size_t fin = 0;
        double now;

        if (!atomic_load(&stop) && (sig = sigtimedwait(&set, NULL, &ts)) > 0) {
            kq_log_warn("signal %d: stopping, the shadows are dropped", sig);
            atomic_store(&stop, 1);
        } else if (atomic_load(&stop)) {
            nap_ms(50);
        }
        for (size_t i = 0; i < started; i++)
            fin += atomic_load(&jobs[i].finished) != 0;
        if (fin == started)
            break;
        now = mono_s();
        if (now - last_show >= (json || !tty ? LOG_EVERY_MS : TTY_EVERY_MS) / 1000.0) {
            show_progress(jobs, started, ms, json, tty && !json);
            last_show = now;
        }
    }
    if (tty && !json && last_show > 0)
        fprintf(stderr, "\n");
    for (size_t i = 0; i < started; i++) {
        pthread_join(jobs[i].th, NULL);
        if (jobs[i].exit > exit_code)
            exit_code = jobs[i].exit;
    }
    if (sig > 0 || atomic_load(&stop))
        exit_code = 3;
    report(jobs, started, cmd, cmd == CMD_UNTIL ? name : NULL, &cfg, json, exit_code,
           mono_s() - t_start);
    for (size_t i = 0; i < started; i++) {
        if (jobs[i].live_missing)
            fprintf(stderr, "%s: %s: there is no live read model to verify (rebuild creates one)\n",
                    PROG, jobs[i].t->name);
        free(jobs[i].diff);
        pthread_mutex_destroy(&jobs[i].mu);
    }
done:
    free(until);
    kq_config_free(&cfg);
    return exit_code;
}
