/*
 * cmd_snapshot.c — save and load cmd_state with LMDB; see cmd_snapshot.h.
 */
#include "cmd_snapshot.h"
#include "kq_err.h"
#include "kq_log.h"
#include "kq_time.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAGIC "kcqrs.commands.v6"
#define MAGIC_PLAIN_PII "kcqrs.commands.v5" /* before cmd_pii.h: resource names in plain text */
#define MAGIC_NO_TIMES "kcqrs.commands.v4"  /* before KCQRS_IDEMPOTENCY_TTL: no event times */
#define MAGIC_NO_HEADS "kcqrs.commands.v2"  /* before the hash chain: no heads */
#define MAGIC_RESOURCES "kcqrs.commands.v3" /* before issue #6: resources only */

#define KQ_SNAP_HKEY_MAX (CMD_KEY_MAX + 4)

_Static_assert(sizeof(cmd_head) == 1 + CMD_CHAIN_HASH_LEN, "cmd_head is stored as raw bytes");

typedef struct snap_meta {
    char magic[24];
    char topic[256];
    char cluster_id[64];
    int32_t partitions;
    uint64_t events;
} snap_meta;

/* Put the heads records "h/<topic>" of every topic (heads NULL: none set). */
static int put_heads(MDB_txn *txn, MDB_dbi dbi, const char *const *topics, const cmd_head *heads,
                     int partitions)
{
    char key[KQ_SNAP_HKEY_MAX];
    MDB_val k, v;
    int e = 0;
    cmd_head *zero = NULL;

    if (heads == NULL &&
        (heads = zero = calloc((size_t)CMD_TOPICS * (size_t)partitions, sizeof *zero)) == NULL)
        return ENOMEM;
    for (int t = 0; t < CMD_TOPICS && e == 0; t++) {
        int n = snprintf(key, sizeof key, "h/%s", topics[t]);
        if (n < 0 || (size_t)n >= sizeof key) {
            e = EINVAL;
            break;
        }
        k.mv_data = key;
        k.mv_size = (size_t)n;
        v.mv_data = (void *)(uintptr_t)(heads + (size_t)t * (size_t)partitions);
        v.mv_size = (size_t)partitions * sizeof *heads;
        e = mdb_put(txn, dbi, &k, &v, 0);
    }
    free(zero);
    return e;
}

/* Bytes of the "o" record: every topic's offsets. */
static size_t offsets_size(int partitions)
{
    return (size_t)CMD_TOPICS * (size_t)partitions * sizeof(int64_t);
}

static int mkdirs(const char *dir, char *errstr, size_t errlen)
{
    char path[4096];
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof path)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "bad snapshot directory '%s'", dir);
    memcpy(path, dir, n + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return kq_seterr(errstr, errlen, KQ_EIO, "mkdir %s: %s", path, strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return kq_seterr(errstr, errlen, KQ_EIO, "mkdir %s: %s", path, strerror(errno));
    return 0;
}

static int lmdb_err(char *errstr, size_t errlen, int e, const char *what, const char *dir)
{
    return kq_seterr(errstr, errlen, KQ_ELMDB, "%s %s: %s%s", what, dir, mdb_strerror(e),
                     e == MDB_MAP_FULL ? " (state larger than the LMDB map)" : "");
}

static int open_env(const char *dir, size_t map_size, int rdonly, MDB_env **env, char *errstr,
                    size_t errlen)
{
    int e;

    if ((e = mdb_env_create(env)) != 0)
        return lmdb_err(errstr, errlen, e, "mdb_env_create", dir);
    if ((e = mdb_env_set_mapsize(*env, map_size)) != 0 ||
        (e = mdb_env_open(*env, dir, rdonly ? MDB_RDONLY : 0, 0600)) != 0) {
        mdb_env_close(*env);
        *env = NULL;
        return e == ENOENT ? kq_seterr(errstr, errlen, KQ_ENOTFOUND, "no snapshot in %s", dir)
                           : lmdb_err(errstr, errlen, e, "open", dir);
    }
    return 0;
}

int cmd_snapshot_load(const char *dir, size_t map_size, cmd_state *st, cmd_head *heads,
                      const char *const *topics, char *errstr, size_t errlen)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_dbi dbi;
    MDB_val k, v;
    snap_meta m;
    struct stat sb;
    char key[CMD_KEY_MAX + 4], es[256];
    const cmd_aggregate *a;
    const char *topic = topics[0];
    int e, rc = 0;

    if (stat(dir, &sb) != 0)
        return kq_seterr(errstr, errlen, KQ_ENOTFOUND, "no snapshot in %s", dir);
    if ((rc = open_env(dir, map_size, 1, &env, errstr, errlen)) != 0)
        return rc;
    if ((e = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0 ||
        (e = mdb_dbi_open(txn, NULL, 0, &dbi)) != 0) {
        rc = lmdb_err(errstr, errlen, e, "read snapshot", dir);
        goto out;
    }
    k.mv_data = "m";
    k.mv_size = 1;
    if ((e = mdb_get(txn, dbi, &k, &v)) != 0) {
        rc = e == MDB_NOTFOUND ? kq_seterr(errstr, errlen, KQ_ENOTFOUND, "no snapshot in %s", dir)
                               : lmdb_err(errstr, errlen, e, "read snapshot", dir);
        goto out;
    }
    if (v.mv_size != sizeof m) {
        rc = kq_seterr(errstr, errlen, KQ_ECORRUPT, "snapshot %s: bad header", dir);
        goto out;
    }
    memcpy(&m, v.mv_data, sizeof m);
    m.magic[sizeof m.magic - 1] = m.topic[sizeof m.topic - 1] = '\0';
    if (strcmp(m.magic, MAGIC_NO_HEADS) == 0) {
        rc = kq_seterr(errstr, errlen, KQ_ECORRUPT,
                       "snapshot %s is of an older format without the hash chain's heads", dir);
        goto out;
    }
    if (strcmp(m.magic, MAGIC_PLAIN_PII) == 0) {
        rc = kq_seterr(errstr, errlen, KQ_ECORRUPT,
                       "snapshot %s is of an older format with resource names in plain text", dir);
        goto out;
    }
    if (strcmp(m.magic, MAGIC_NO_TIMES) == 0) {
        rc = kq_seterr(errstr, errlen, KQ_ECORRUPT,
                       "snapshot %s is of an older format without the event times of "
                       "idempotency keys and finished runs",
                       dir);
        goto out;
    }
    if (strcmp(m.magic, MAGIC_RESOURCES) == 0) {
        rc = kq_seterr(errstr, errlen, KQ_ECORRUPT,
                       "snapshot %s is of an older format without workflows and runs", dir);
        goto out;
    }
    if (strcmp(m.magic, MAGIC) != 0 || strcmp(m.topic, topic) != 0 ||
        m.partitions != st->partitions) {
        rc = kq_seterr(errstr, errlen, KQ_ECORRUPT,
                       "snapshot %s is of %s with %d partitions, not %s with %d", dir, m.topic,
                       (int)m.partitions, topic, st->partitions);
        goto out;
    }
    k.mv_data = "o";
    if ((e = mdb_get(txn, dbi, &k, &v)) != 0 || v.mv_size != offsets_size(st->partitions)) {
        rc = kq_seterr(errstr, errlen, KQ_ECORRUPT, "snapshot %s: bad offsets", dir);
        goto out;
    }
    memcpy(st->next_offset, v.mv_data, v.mv_size);
    for (int t = 0; t < CMD_TOPICS; t++) {
        cmd_head *th = heads + (size_t)t * (size_t)st->partitions;
        int n = snprintf(key, sizeof key, "h/%s", topics[t]);
        if (n < 0 || (size_t)n >= sizeof key) {
            rc = kq_seterr(errstr, errlen, KQ_EINVAL, "topic name too long");
            goto out;
        }
        k.mv_data = key;
        k.mv_size = (size_t)n;
        if ((e = mdb_get(txn, dbi, &k, &v)) != 0 ||
            v.mv_size != (size_t)st->partitions * sizeof *heads) {
            rc = kq_seterr(errstr, errlen, KQ_ECORRUPT,
                           "snapshot %s: no chain heads of %s (older format or damaged)", dir,
                           topics[t]);
            goto out;
        }
        memcpy(th, v.mv_data, v.mv_size);
        for (int p = 0; p < st->partitions; p++)
            if (th[p].set > 1) {
                rc = kq_seterr(errstr, errlen, KQ_ECORRUPT, "snapshot %s: bad chain head", dir);
                goto out;
            }
    }
    if ((e = mdb_cursor_open(txn, dbi, &cur)) != 0) {
        rc = lmdb_err(errstr, errlen, e, "read snapshot", dir);
        goto out;
    }
    while ((e = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        const char *kp = k.mv_data;
        if (k.mv_size < 3 || kp[1] != '/')
            continue;
        if (k.mv_size - 2 > CMD_KEY_MAX) {
            rc = kq_seterr(errstr, errlen, KQ_ECORRUPT, "snapshot %s: key too long", dir);
            goto out;
        }
        memcpy(key, kp + 2, k.mv_size - 2);
        key[k.mv_size - 2] = '\0';
        if (kp[0] == 'i')
            rc = cmd_idem_snap_load(st, key, v.mv_data, v.mv_size, es, sizeof es);
        else if ((a = cmd_aggregate_of_record(kp[0])) != NULL)
            rc = a->snap_load(st, key, v.mv_data, v.mv_size, es, sizeof es);
        if (rc != 0) {
            rc = kq_seterr(errstr, errlen, rc, "snapshot %s: %s", dir, es);
            goto out;
        }
    }
    if (e != MDB_NOTFOUND) {
        rc = lmdb_err(errstr, errlen, e, "read snapshot", dir);
        goto out;
    }
    st->events = m.events;
    m.cluster_id[sizeof m.cluster_id - 1] = '\0';
    snprintf(st->cluster_id, sizeof st->cluster_id, "%s", m.cluster_id);
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    if (txn != NULL)
        mdb_txn_abort(txn);
    mdb_env_close(env);
    return rc;
}

/* ------------------------------------------------------------------ incremental */

typedef struct snap_job {
    cmd_delta delta;
    int64_t *offsets;
    cmd_head *heads; /* [partitions], matching offsets */
    int partitions;
    uint64_t events;
    char cluster_id[64];
} snap_job;

static void job_free(snap_job *j)
{
    cmd_delta_free(&j->delta);
    free(j->offsets);
    free(j->heads);
    memset(j, 0, sizeof *j);
}

/* Write one job into an open environment in one write transaction. */
static int write_job(MDB_env *env, const char *dir, const char *const *topics, const snap_job *j,
                     char *errstr, size_t errlen)
{
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_val k, v;
    snap_meta m;
    size_t pos = 0;
    int e, more;

    if ((e = mdb_txn_begin(env, NULL, 0, &txn)) != 0 || (e = mdb_dbi_open(txn, NULL, 0, &dbi)) != 0)
        goto fail;
    if (j->delta.full && (e = mdb_drop(txn, dbi, 0)) != 0)
        goto fail;
    for (;;) {
        char kind, key[CMD_KEY_MAX + 4];
        const char *kp;
        const void *vp;
        size_t kl, vl;

        more = cmd_delta_next(&j->delta, &pos, &kind, &kp, &kl, &vp, &vl);
        if (more == 0)
            break;
        if (more < 0 || kl > CMD_KEY_MAX) {
            mdb_txn_abort(txn);
            return kq_seterr(errstr, errlen, KQ_ECORRUPT, "snapshot delta is malformed");
        }
        key[0] = kind;
        key[1] = '/';
        memcpy(key + 2, kp, kl);
        k.mv_data = key;
        k.mv_size = kl + 2;
        if (vl == 0) { /* a deletion (cmd_delta_del): an expired key or run */
            if ((e = mdb_del(txn, dbi, &k, NULL)) != 0 && e != MDB_NOTFOUND)
                goto fail;
            continue;
        }
        v.mv_data = (void *)(uintptr_t)vp;
        v.mv_size = vl;
        if ((e = mdb_put(txn, dbi, &k, &v, 0)) != 0)
            goto fail;
    }
    memset(&m, 0, sizeof m);
    snprintf(m.magic, sizeof m.magic, "%s", MAGIC);
    snprintf(m.topic, sizeof m.topic, "%s", topics[0]);
    snprintf(m.cluster_id, sizeof m.cluster_id, "%s", j->cluster_id);
    m.partitions = j->partitions;
    m.events = j->events;
    k.mv_data = "m";
    k.mv_size = 1;
    v.mv_data = &m;
    v.mv_size = sizeof m;
    if ((e = mdb_put(txn, dbi, &k, &v, 0)) != 0)
        goto fail;
    k.mv_data = "o";
    v.mv_data = j->offsets;
    v.mv_size = offsets_size(j->partitions);
    if ((e = mdb_put(txn, dbi, &k, &v, 0)) != 0)
        goto fail;
    if ((e = put_heads(txn, dbi, topics, j->heads, j->partitions)) != 0)
        goto fail;
    e = mdb_txn_commit(txn);
    txn = NULL;
    if (e != 0)
        goto fail;
    return 0;
fail:
    if (txn != NULL)
        mdb_txn_abort(txn);
    return lmdb_err(errstr, errlen, e, "snapshot to", dir);
}

/* The whole state, written as the snapshot thread writes a full delta:
 * the same records (cmd_state_records), the same transaction (write_job). */
int cmd_snapshot_save(const char *dir, size_t map_size, const cmd_state *st, const cmd_head *heads,
                      const char *const *topics, char *errstr, size_t errlen)
{
    MDB_env *env = NULL;
    snap_job j;
    int rc;

    memset(&j, 0, sizeof j);
    j.delta.full = 1;
    j.partitions = st->partitions;
    j.events = st->events;
    snprintf(j.cluster_id, sizeof j.cluster_id, "%s", st->cluster_id);
    j.offsets = malloc(offsets_size(st->partitions));
    if (heads != NULL)
        j.heads = malloc((size_t)CMD_TOPICS * (size_t)st->partitions * sizeof *j.heads);
    if (j.offsets == NULL || (heads != NULL && j.heads == NULL) ||
        cmd_state_records(st, &j.delta) != 0) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "snapshot: out of memory");
        goto out;
    }
    memcpy(j.offsets, st->next_offset, offsets_size(st->partitions));
    if (heads != NULL)
        memcpy(j.heads, heads, (size_t)CMD_TOPICS * (size_t)st->partitions * sizeof *j.heads);
    if ((rc = mkdirs(dir, errstr, errlen)) != 0 ||
        (rc = open_env(dir, map_size, 0, &env, errstr, errlen)) != 0)
        goto out;
    rc = write_job(env, dir, topics, &j, errstr, errlen);
out:
    if (env != NULL)
        mdb_env_close(env);
    job_free(&j);
    return rc;
}

struct cmd_snapshotter {
    char *dir;
    char topics[CMD_TOPICS][256];
    const char *topic_ptrs[CMD_TOPICS];
    size_t map_size;
    MDB_env *env; /* opened by the thread on first use */

    pthread_mutex_t mu;
    pthread_cond_t cv, idle_cv;
    snap_job pending; /* pending.offsets != NULL: a job is waiting */
    int busy;         /* the thread is writing a job */
    int failed;       /* a write failed: later non-full jobs are dropped until a full one */
    int stop;
    char err[512];
    uint64_t written, failures, records;
    double last_s, max_s;
    pthread_t thread;
};

/* Monotonic seconds, for the save's duration. */
static double snap_now(void)
{
    return (double)kq_time_mono_us() / 1e6;
}

/*
 * The snapshot thread yields to the writer and the HTTP threads: nice 19 and
 * SCHED_BATCH (no wake-up preemption), so an LMDB write (tens of ms of CPU)
 * takes what the other threads leave instead of delaying commits and answers
 * on a busy core. Best effort: without either it still works.
 */
static void lower_priority(void)
{
    struct sched_param sp;

    memset(&sp, 0, sizeof sp);
    if (pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp) != 0)
        kq_log_debug("snapshot thread: SCHED_BATCH refused");
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19) != 0)
        kq_log_debug("snapshot thread: nice 19 refused: %s", strerror(errno));
}

static void *snapshotter_main(void *arg)
{
    cmd_snapshotter *s = arg;
    char es[512];

    lower_priority();
    pthread_mutex_lock(&s->mu);
    for (;;) {
        snap_job j;
        double t0;
        int rc;

        while (s->pending.offsets == NULL && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->pending.offsets == NULL && s->stop)
            break;
        j = s->pending;
        memset(&s->pending, 0, sizeof s->pending);
        s->busy = 1;
        pthread_mutex_unlock(&s->mu);

        t0 = snap_now();
        rc = 0;
        if (s->env == NULL) {
            if ((rc = mkdirs(s->dir, es, sizeof es)) == 0)
                rc = open_env(s->dir, s->map_size, 0, &s->env, es, sizeof es);
        }
        if (rc == 0)
            rc = write_job(s->env, s->dir, s->topic_ptrs, &j, es, sizeof es);
        t0 = snap_now() - t0;
        if (rc == 0)
            kq_log_info("snapshot: %zu records%s, %zu bytes to %s in %.3f s", j.delta.records,
                        j.delta.full ? " (full)" : "", j.delta.len, s->dir, t0);
        else
            kq_log_error("snapshot to %s failed (the previous snapshot stays; the state is "
                         "still in the log; the next snapshot is a full one): %s",
                         s->dir, es);

        pthread_mutex_lock(&s->mu);
        if (rc == 0) {
            s->written++;
            s->records += j.delta.records;
            s->last_s = t0;
            if (t0 > s->max_s)
                s->max_s = t0;
        } else {
            s->failures++;
            s->failed = 1;
            snprintf(s->err, sizeof s->err, "%s", es);
            /* A waiting job builds on the failed one: useless unless full. */
            if (s->pending.offsets != NULL && !s->pending.delta.full)
                job_free(&s->pending);
        }
        s->busy = 0;
        pthread_cond_broadcast(&s->idle_cv);
        job_free(&j);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int cmd_snapshotter_new(const char *dir, size_t map_size, const char *const *topics,
                        cmd_snapshotter **out, char *errstr, size_t errlen)
{
    cmd_snapshotter *s = calloc(1, sizeof *s);
    int e;

    if (s == NULL || (s->dir = strdup(dir)) == NULL) {
        free(s);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    for (int t = 0; t < CMD_TOPICS; t++) {
        snprintf(s->topics[t], sizeof s->topics[t], "%s", topics[t]);
        s->topic_ptrs[t] = s->topics[t];
    }
    s->map_size = map_size;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    if ((e = pthread_create(&s->thread, NULL, snapshotter_main, s)) != 0) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        pthread_cond_destroy(&s->idle_cv);
        free(s->dir);
        free(s);
        return kq_seterr(errstr, errlen, KQ_EIO, "pthread_create: %s", strerror(e));
    }
    *out = s;
    return 0;
}

int cmd_snapshotter_submit(cmd_snapshotter *s, cmd_state *st, const cmd_head *heads, int *was_full)
{
    snap_job j;
    int failed;

    memset(&j, 0, sizeof j);
    pthread_mutex_lock(&s->mu);
    failed = s->failed;
    s->failed = 0;
    pthread_mutex_unlock(&s->mu);
    if (failed || st->delta.lost)
        cmd_state_delta_full(st); /* on failure the delta is marked lost: tried again next time */
    if (st->delta.lost) {
        pthread_mutex_lock(&s->mu);
        s->failed = 1;
        pthread_mutex_unlock(&s->mu);
        return KQ_ENOMEM;
    }
    j.offsets = malloc(offsets_size(st->partitions));
    j.heads = calloc((size_t)CMD_TOPICS * (size_t)st->partitions, sizeof *j.heads);
    if (j.offsets == NULL || j.heads == NULL) {
        free(j.offsets);
        free(j.heads);
        return KQ_ENOMEM;
    }
    memcpy(j.offsets, st->next_offset, offsets_size(st->partitions));
    if (heads != NULL)
        memcpy(j.heads, heads, (size_t)CMD_TOPICS * (size_t)st->partitions * sizeof *j.heads);
    j.partitions = st->partitions;
    j.events = st->events;
    snprintf(j.cluster_id, sizeof j.cluster_id, "%s", st->cluster_id);
    cmd_state_delta_take(st, &j.delta);
    if (was_full)
        *was_full = j.delta.full;

    pthread_mutex_lock(&s->mu);
    if (s->failed && !j.delta.full) {
        /* A write failed after the check above: this delta builds on it. */
        pthread_mutex_unlock(&s->mu);
        job_free(&j);
        return KQ_EIO;
    }
    if (s->pending.offsets != NULL && !j.delta.full) {
        /* Merge behind the waiting job: its records first, then ours. */
        if (cmd_delta_append(&s->pending.delta, &j.delta) != 0) {
            job_free(&s->pending);
            s->failed = 1; /* the next hand-over rebuilds the whole state */
            pthread_mutex_unlock(&s->mu);
            job_free(&j);
            return KQ_ENOMEM;
        }
        free(s->pending.offsets);
        s->pending.offsets = j.offsets;
        j.offsets = NULL;
        free(s->pending.heads);
        s->pending.heads = j.heads;
        j.heads = NULL;
        s->pending.events = j.events;
        memcpy(s->pending.cluster_id, j.cluster_id, sizeof j.cluster_id);
        pthread_mutex_unlock(&s->mu);
        job_free(&j);
        return 0;
    }
    if (s->pending.offsets != NULL)
        job_free(&s->pending); /* a full delta replaces whatever waited */
    s->pending = j;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int cmd_snapshotter_flush(cmd_snapshotter *s, char *errstr, size_t errlen)
{
    int rc = 0;

    pthread_mutex_lock(&s->mu);
    while (s->pending.offsets != NULL || s->busy)
        pthread_cond_wait(&s->idle_cv, &s->mu);
    if (s->failed)
        rc = kq_seterr(errstr, errlen, KQ_ELMDB, "%s", s->err);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void cmd_snapshotter_stats(cmd_snapshotter *s, cmd_snapshot_stats *out)
{
    pthread_mutex_lock(&s->mu);
    out->written = s->written;
    out->failures = s->failures;
    out->records = s->records;
    out->last_s = s->last_s;
    out->max_s = s->max_s;
    pthread_mutex_unlock(&s->mu);
}

void cmd_snapshotter_free(cmd_snapshotter *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    job_free(&s->pending);
    if (s->env != NULL)
        mdb_env_close(s->env);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->idle_cv);
    free(s->dir);
    free(s);
}
