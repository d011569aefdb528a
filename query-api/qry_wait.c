/*
 * qry_wait.c — consistency-token waiters and their watcher thread; see qry_wait.h.
 */
#include "qry_wait.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kq_err.h"
#include "kq_log.h"
#include "kq_pg.h"
#include "kq_time.h"

#define TOPIC_MAX 256
#define LISTEN_RETRY_MS 2000
#define IDLE_POLL_MS 1000
/*
 * LMDB publishes a commit in two steps: it pwrite()s the meta page (our
 * IN_MODIFY) and only then stores the new transaction id in the shared lock
 * file, which readers use to pick the meta page. A sweep right after the
 * wake-up can therefore still see the previous commit, and no further event
 * follows. So after every inotify wake-up the watcher sweeps again after
 * 0.2 ms, 1 ms and 5 ms (settle_us[]) before falling back to fallback_ms.
 */
static const int settle_us[] = {200, 800, 4000};
#define SETTLE_SWEEPS ((int)(sizeof settle_us / sizeof settle_us[0]))

typedef struct waiter {
    struct waiter *next;
    kq_http_req *req;
    int kind;
    qry_target target;
    char key[TOPIC_MAX + 16]; /* "<topic>/<partition>" */
    int64_t offset;
    int64_t deadline_ms;
    int64_t start_us;
} waiter;

struct qry_wait {
    qry_wait_options o;
    char *data_path;
    char *dsn;
    pthread_t thread;
    pthread_mutex_t lock;
    waiter *head; /* guarded by lock */
    int stopping; /* guarded by lock */
    int stopped;  /* qry_wait_stop done (controlling thread only) */
    int efd, ifd, wd;
    dev_t wdev; /* the file the watch is on: a replaced read model is another inode */
    ino_t wino;
    PGconn *listen;
    int64_t listen_next_try;
    atomic_uint_fast64_t waits, applied, expired, wait_us, wakes_inotify, wakes_pg, wakes_timeout;
};

static void finish(qry_wait *w, waiter *x, qry_wait_outcome oc)
{
    atomic_fetch_add(&w->wait_us, (uint_fast64_t)(kq_time_mono_us() - x->start_us));
    if (oc == QRY_WAIT_APPLIED)
        atomic_fetch_add(&w->applied, 1);
    else if (oc == QRY_WAIT_EXPIRED)
        atomic_fetch_add(&w->expired, 1);
    w->o.done(w->o.arg, x->req, x->kind, oc);
    free(x);
}

static void listen_ensure(qry_wait *w)
{
    char err[256];

    if (w->dsn == NULL || w->listen != NULL || kq_time_mono_ms() < w->listen_next_try)
        return;
    w->listen_next_try = kq_time_mono_ms() + LISTEN_RETRY_MS;
    w->listen = kq_pg_connect(w->dsn, 2000, "kcqrs-query-listen", err, sizeof err);
    if (w->listen == NULL) {
        kq_log_warn("LISTEN connection: %s (waiters fall back to polling)", err);
        return;
    }
    if (kq_pg_exec(w->listen, "LISTEN kcqrs_projection", err, sizeof err) != 0 ||
        PQsetnonblocking(w->listen, 1) != 0) {
        kq_log_warn("LISTEN kcqrs_projection: %s", err);
        PQfinish(w->listen);
        w->listen = NULL;
    }
}

/*
 * Keep the watch on the data.mdb now at the path. kcqrs-replay swaps the
 * whole readmodel directory: the watched file does not move itself (no
 * IN_MOVE_SELF), it is just no longer the live one. So every loop compares
 * the path's inode with the watched one and moves the watch (one stat).
 */
static void watch_ensure(qry_wait *w)
{
    struct stat st;

    if (stat(w->data_path, &st) != 0)
        return; /* not there (yet, or between two renames): keep what we have */
    if (w->wd >= 0 && st.st_dev == w->wdev && st.st_ino == w->wino)
        return;
    if (w->wd >= 0)
        inotify_rm_watch(w->ifd, w->wd);
    w->wd = inotify_add_watch(w->ifd, w->data_path, IN_MODIFY | IN_DELETE_SELF | IN_MOVE_SELF);
    w->wdev = st.st_dev;
    w->wino = st.st_ino;
}

/* Drain the inotify queue; forget the watch if its file went away. */
static void drain_inotify(qry_wait *w)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;

    while ((n = read(w->ifd, buf, sizeof buf)) > 0) {
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)(void *)p;
            if (ev->wd == w->wd && (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))) {
                if (w->wd >= 0 && (ev->mask & IN_IGNORED) == 0)
                    inotify_rm_watch(w->ifd, w->wd);
                w->wd = -1;
            }
            p += sizeof *ev + ev->len;
        }
    }
}

static void drain_pg(qry_wait *w)
{
    PGnotify *nt;

    if (w->listen == NULL)
        return;
    if (PQconsumeInput(w->listen) == 0 || PQstatus(w->listen) != CONNECTION_OK) {
        kq_log_warn("LISTEN connection lost: %s", PQerrorMessage(w->listen));
        PQfinish(w->listen);
        w->listen = NULL;
        return;
    }
    while ((nt = PQnotifies(w->listen)) != NULL)
        PQfreemem(nt);
}

/* Check every waiter against freshly loaded offsets; answer the finished ones. */
static void sweep(qry_wait *w)
{
    waiter *list, *keep = NULL, *x, *next;
    json_t *offs[2] = {NULL, NULL};
    int loaded[2] = {0, 0};
    int64_t now = kq_time_mono_ms();
    char err[256];

    pthread_mutex_lock(&w->lock);
    list = w->head;
    w->head = NULL;
    pthread_mutex_unlock(&w->lock);
    for (x = list; x; x = next) {
        json_t *v;
        next = x->next;
        if (!loaded[x->target]) {
            loaded[x->target] = 1;
            if (w->o.load(w->o.arg, x->target, &offs[x->target], err, sizeof err) != 0)
                offs[x->target] = NULL; /* unreadable now: keep waiting until the deadline */
        }
        v = offs[x->target] ? json_object_get(offs[x->target], x->key) : NULL;
        if (v && json_integer_value(v) > x->offset) {
            finish(w, x, QRY_WAIT_APPLIED);
        } else if (now >= x->deadline_ms) {
            finish(w, x, QRY_WAIT_EXPIRED);
        } else {
            x->next = keep;
            keep = x;
        }
    }
    json_decref(offs[0]);
    json_decref(offs[1]);
    pthread_mutex_lock(&w->lock);
    while (keep) {
        next = keep->next;
        keep->next = w->head;
        w->head = keep;
        keep = next;
    }
    pthread_mutex_unlock(&w->lock);
}

static void *run(void *arg)
{
    qry_wait *w = arg;

    int settle = 0; /* follow-up sweeps still due after an inotify wake-up */

    for (;;) {
        struct pollfd p[3];
        int np = 0, has_waiters, stopping, rc;
        int64_t timeout_us;
        struct timespec ts;
        int64_t nearest = INT64_MAX;

        pthread_mutex_lock(&w->lock);
        stopping = w->stopping;
        has_waiters = w->head != NULL;
        for (waiter *x = w->head; x; x = x->next)
            if (x->deadline_ms < nearest)
                nearest = x->deadline_ms;
        pthread_mutex_unlock(&w->lock);
        if (stopping)
            break;
        watch_ensure(w);
        if (has_waiters)
            listen_ensure(w);
        timeout_us = (int64_t)(has_waiters ? w->o.fallback_ms : IDLE_POLL_MS) * 1000;
        if (has_waiters && settle > 0)
            timeout_us = settle_us[SETTLE_SWEEPS - settle];
        if (has_waiters && nearest != INT64_MAX) {
            int64_t left = nearest - kq_time_mono_ms();
            if (left * 1000 < timeout_us)
                timeout_us = left < 0 ? 0 : left * 1000;
        }
        p[np].fd = w->efd;
        p[np++].events = POLLIN;
        p[np].fd = w->ifd;
        p[np++].events = POLLIN;
        if (w->listen) {
            p[np].fd = PQsocket(w->listen);
            p[np++].events = POLLIN;
        }
        ts.tv_sec = (time_t)(timeout_us / 1000000);
        ts.tv_nsec = (long)(timeout_us % 1000000) * 1000;
        rc = ppoll(p, (nfds_t)np, &ts, NULL);
        if (rc < 0 && errno != EINTR) {
            kq_log_error("waiter poll: %s", strerror(errno));
            usleep(10000);
        }
        if (rc > 0 && (p[0].revents & POLLIN)) {
            uint64_t v;
            if (read(w->efd, &v, sizeof v) < 0 && errno != EAGAIN)
                kq_log_warn("eventfd read: %s", strerror(errno));
        }
        if (rc == 0 && has_waiters && settle == 0)
            atomic_fetch_add(&w->wakes_timeout, 1); /* the fallback, not a follow-up sweep */
        if (rc > 0 && (p[1].revents & POLLIN)) {
            atomic_fetch_add(&w->wakes_inotify, 1);
            drain_inotify(w);
            settle = SETTLE_SWEEPS;
        } else if (rc == 0 && settle > 0) {
            settle--;
        }
        if (rc > 0 && np == 3 && p[2].revents) {
            atomic_fetch_add(&w->wakes_pg, 1);
            drain_pg(w);
        }
        sweep(w);
    }
    return NULL;
}

int qry_wait_start(const qry_wait_options *o, qry_wait **out, char *errstr, size_t errlen)
{
    qry_wait *w = calloc(1, sizeof *w);

    *out = NULL;
    if (w == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    w->o = *o;
    if (w->o.fallback_ms < 1)
        w->o.fallback_ms = 1;
    w->efd = w->ifd = w->wd = -1;
    w->data_path = strdup(o->lmdb_data_path);
    w->dsn = o->pg_dsn ? strdup(o->pg_dsn) : NULL;
    if (w->data_path == NULL || (o->pg_dsn && w->dsn == NULL)) {
        free(w->data_path);
        free(w->dsn);
        free(w);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&w->lock, NULL);
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->efd < 0 || w->ifd < 0 || pthread_create(&w->thread, NULL, run, w) != 0) {
        int e = errno;
        if (w->efd >= 0)
            close(w->efd);
        if (w->ifd >= 0)
            close(w->ifd);
        pthread_mutex_destroy(&w->lock);
        free(w->data_path);
        free(w->dsn);
        free(w);
        return kq_seterr(errstr, errlen, KQ_EIO, "waiter thread: %s", strerror(e));
    }
    *out = w;
    return 0;
}

int qry_wait_add(qry_wait *w, kq_http_req *req, int kind, qry_target target, const char *topic,
                 int32_t partition, int64_t offset, int64_t deadline_ms)
{
    waiter *x = calloc(1, sizeof *x);
    uint64_t one = 1;
    int stopping;

    if (x == NULL)
        return KQ_ENOMEM;
    x->req = req;
    x->kind = kind;
    x->target = target;
    snprintf(x->key, sizeof x->key, "%s/%" PRId32, topic, partition);
    x->offset = offset;
    x->deadline_ms = deadline_ms;
    x->start_us = kq_time_mono_us();
    pthread_mutex_lock(&w->lock);
    stopping = w->stopping;
    if (!stopping) {
        x->next = w->head;
        w->head = x;
    }
    pthread_mutex_unlock(&w->lock);
    if (stopping) {
        free(x);
        return KQ_EIO;
    }
    atomic_fetch_add(&w->waits, 1);
    if (write(w->efd, &one, sizeof one) < 0)
        kq_log_warn("eventfd write: %s", strerror(errno));
    return 0;
}

void qry_wait_stop(qry_wait *w)
{
    uint64_t one = 1;
    waiter *x, *next;

    if (w == NULL || w->stopped)
        return;
    w->stopped = 1;
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_mutex_unlock(&w->lock);
    if (write(w->efd, &one, sizeof one) < 0)
        kq_log_warn("eventfd write: %s", strerror(errno));
    pthread_join(w->thread, NULL);
    pthread_mutex_lock(&w->lock);
    x = w->head;
    w->head = NULL;
    pthread_mutex_unlock(&w->lock);
    for (; x; x = next) {
        next = x->next;
        finish(w, x, QRY_WAIT_STOPPED);
    }
    if (w->listen)
        PQfinish(w->listen);
    w->listen = NULL;
}

void qry_wait_free(qry_wait *w)
{
    if (w == NULL)
        return;
    if (!w->stopped)
        qry_wait_stop(w);
    close(w->efd);
    close(w->ifd);
    pthread_mutex_destroy(&w->lock);
    free(w->data_path);
    free(w->dsn);
    free(w);
}

void qry_wait_metrics(qry_wait *w, FILE *out)
{
    if (w == NULL)
        return;
    fprintf(
        out,
        "# HELP kcqrs_query_waits_total Requests that waited for a consistency token.\n"
        "# TYPE kcqrs_query_waits_total counter\n"
        "kcqrs_query_waits_total %" PRIuFAST64 "\n"
        "# HELP kcqrs_query_waits_applied_total Waits answered because the read model caught up.\n"
        "# TYPE kcqrs_query_waits_applied_total counter\n"
        "kcqrs_query_waits_applied_total %" PRIuFAST64 "\n"
        "# HELP kcqrs_query_waits_expired_total Waits that ran out of time (503 "
        "projection_behind).\n"
        "# TYPE kcqrs_query_waits_expired_total counter\n"
        "kcqrs_query_waits_expired_total %" PRIuFAST64 "\n"
        "# HELP kcqrs_query_wait_seconds_total Time requests spent waiting.\n"
        "# TYPE kcqrs_query_wait_seconds_total counter\n"
        "kcqrs_query_wait_seconds_total %.6f\n"
        "# HELP kcqrs_query_waiter_wakeups_total Watcher wake-ups by cause.\n"
        "# TYPE kcqrs_query_waiter_wakeups_total counter\n"
        "kcqrs_query_waiter_wakeups_total{cause=\"inotify\"} %" PRIuFAST64 "\n"
        "kcqrs_query_waiter_wakeups_total{cause=\"pg_notify\"} %" PRIuFAST64 "\n"
        "kcqrs_query_waiter_wakeups_total{cause=\"timeout\"} %" PRIuFAST64 "\n",
        atomic_load(&w->waits), atomic_load(&w->applied), atomic_load(&w->expired),
        (double)atomic_load(&w->wait_us) / 1e6, atomic_load(&w->wakes_inotify),
        atomic_load(&w->wakes_pg), atomic_load(&w->wakes_timeout));
}
