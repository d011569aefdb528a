/*
 * qry_wait.h — read-your-writes: requests that wait for a read model to apply
 * a consistency token's position, without busy-looping and without holding
 * an HTTP thread.
 *
 * How it works
 *   A handler that finds the position not yet applied defers its request
 *   (kq_http_defer: the connection is suspended, the HTTP thread serves
 *   others) and registers a waiter here: (target, topic, partition, offset,
 *   deadline). One watcher thread sleeps in poll(2) on
 *     - an inotify watch (IN_MODIFY) on the LMDB read model's data.mdb: the
 *       projector writes pages and then the meta page with pwrite(2) (no
 *       MDB_WRITEMAP), so every commit wakes it;
 *     - a PostgreSQL connection that LISTENs on kcqrs_projection: the
 *       projector's batch transaction runs pg_notify('kcqrs_projection', ''),
 *       delivered at commit;
 *     - an eventfd that qry_wait_add() signals;
 *   with a fallback timeout (fallback_ms, e.g. 50 ms) while waiters exist, so
 *   a lost wake-up (no watch yet, LISTEN connection down, read model
 *   replaced) costs at most that much. On every wake it loads each needed
 *   target's offsets once ({"<topic>/<partition>": next}) and calls `done`
 *   for every waiter whose target has next_offset > offset (APPLIED) or whose
 *   deadline passed (EXPIRED). `done` runs on the watcher thread and answers
 *   the request (it may run the actual read there).
 *
 *   LMDB stores a commit's transaction id in its lock file just after the
 *   meta-page write that wakes us, so a sweep right after an inotify wake-up
 *   may still see the previous commit: follow-up sweeps run 0.2, 1 and 5 ms
 *   later (the unit test caught this race; see SETTLE_SWEEPS in qry_wait.c).
 *
 * The watch on data.mdb is (re)added whenever it is missing (the read model
 * may be created after the query API starts) and moved to the new file when
 * the path names another inode (kcqrs-replay swapped the readmodel
 * directory: the old file does not move itself, so no inotify event says
 * so; one stat per loop does); the LISTEN connection is
 * re-made at most every 2 s while it is down.
 *
 * Owns the thread, its file descriptors, the LISTEN connection and the waiter
 * list. qry_wait_stop() answers every pending waiter (STOPPED) before it
 * returns; call it before kq_http_stop and qry_wait_free() after.
 */
#ifndef QRY_WAIT_H
#define QRY_WAIT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kq_http.h"

typedef enum { QRY_TARGET_LMDB = 0, QRY_TARGET_PG = 1 } qry_target;

typedef enum {
    QRY_WAIT_APPLIED = 0, /* the target has applied the position: serve the read */
    QRY_WAIT_EXPIRED,     /* the deadline passed: 503 projection_behind */
    QRY_WAIT_STOPPED,     /* shutting down: 503 */
} qry_wait_outcome;

/* Load every stored offset of `target` as {"<topic>/<partition>": next} (new reference). */
typedef int (*qry_wait_load_fn)(void *arg, qry_target target, json_t **offsets, char *errstr,
                                size_t errlen);
/* Answer a waiting request. `kind` is what the handler passed to qry_wait_add. */
typedef void (*qry_wait_done_fn)(void *arg, kq_http_req *req, int kind, qry_wait_outcome outcome);

typedef struct qry_wait_options {
    const char *lmdb_data_path; /* copied; the file to watch */
    const char *pg_dsn;         /* copied; NULL = no LISTEN (fallback timeout only) */
    int fallback_ms;            /* sweep interval while waiters exist (>= 1) */
    qry_wait_load_fn load;
    qry_wait_done_fn done;
    void *arg; /* for load and done */
} qry_wait_options;

typedef struct qry_wait qry_wait;

/* Start the watcher thread. 0, KQ_ENOMEM or KQ_EIO (inotify/eventfd/thread). */
int qry_wait_start(const qry_wait_options *o, qry_wait **out, char *errstr, size_t errlen);

/*
 * Register a deferred request. `req` must have been deferred (kq_http_defer).
 * Returns 0, or KQ_EIO when stopped (the caller answers the request itself).
 * deadline_ms is on CLOCK_MONOTONIC (kq_time_mono_ms()).
 */
int qry_wait_add(qry_wait *w, kq_http_req *req, int kind, qry_target target, const char *topic,
                 int32_t partition, int64_t offset, int64_t deadline_ms);

/*
 * Answer every pending waiter with STOPPED and join the thread; later
 * qry_wait_add calls fail with KQ_EIO. Call before kq_http_stop, then
 * qry_wait_free after it. NULL is a no-op.
 */
void qry_wait_stop(qry_wait *w);
/* Stop if not yet done, then free. NULL is a no-op. */
void qry_wait_free(qry_wait *w);

/* Prometheus text of the wait counters (kcqrs_query_waits_total etc.). */
void qry_wait_metrics(qry_wait *w, FILE *out);

#endif
