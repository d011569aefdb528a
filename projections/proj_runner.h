/*
 * proj_runner.h — one projector target's life: its thread, its consumer,
 * its batches, its retries and its metrics.
 *
 * A runner owns two threads and one read_committed consumer (group id
 * "<prefix>.projector.<target>", never committing: the target's own stored
 * offsets are the checkpoint) assigned to every partition of the three event
 * topics at the offsets the target stored (0 where it stored none).
 *
 * The runner thread (checker stage: consumer, checks, dead letters, target
 * open/close, retries) loops:
 *   1. open the target when it is closed, load its offsets, (re)assign;
 *   2. gather batch N+1 of up to cfg->proj_batch_max records, for at most
 *      cfg->proj_batch_ms ms after the first one (what the consumer queue
 *      already holds is taken in chunks without waiting; only an empty
 *      queue is waited on). While batch N is still being applied, N+1 keeps
 *      growing past that deadline (up to the maximum), and an empty N+1
 *      returns as soon as N is done. The consumer keeps up to 64 MiB
 *      prefetched (queued.min.messages raised so librdkafka does not pause
 *      every partition's fetching while a slower apply drains the queue),
 *      and learns the partition leaders before it is assigned. A record is
 *      taken when its offset is past the offset its partition will have
 *      once batch N commits;
 *   3. check every record of N+1: it must decode (ev_envelope_decode), its
 *      key "<id>/<version:020>" must name the envelope's aggregate id and
 *      version, its topic the aggregate type, its partition the aggregate's
 *      partition. A record that fails is marked decoded = 0 (a replay logs,
 *      counts and skips it here);
 *   4. wait for batch N's result. On success publish its offsets (metrics,
 *      readiness, exit_at_end) and destroy its messages;
 *   5. dead-letter N+1's refused records (proj_dlq, durable: before N+1 can
 *      commit; here, because the apply thread is idle and the DLQ producer is
 *      used by one thread at a time) and hand N+1, with the next offset of
 *      every partition it covers, to the apply thread. Reaching the end of a
 *      partition past transaction markers also advances that partition's
 *      stored offset (a batch without events), so a caught-up target's
 *      offsets equal the end offsets;
 *   6. on any error (opening, loading offsets, batch N's apply, a dead
 *      letter): N+1 is discarded unapplied (its messages destroyed; nothing
 *      is in flight at that point), the runner logs, counts, closes the
 *      target, backs off (100 ms doubling to 5 s) and starts over at 1 — the
 *      fresh consumer re-seeks to the offsets the target actually stored,
 *      so nothing is lost or applied twice. A target returning KQ_ESWITCHED
 *      (kcqrs-replay replaced the live read model under it) is reopened at
 *      once, without backoff or an error count: it continues from the new
 *      model's stored offsets. A replay fails fast instead (the first error
 *      ends the runner thread).
 * The apply thread (apply stage) only runs ops->apply on the one batch it was
 * handed (mutex/condvar slot): at most two batches exist, one being applied
 * and one being gathered. The target is opened, loaded and closed by the
 * runner thread, only while nothing is in flight; apply runs on the apply
 * thread (a target's handle is used by one thread at a time, and a batch's
 * transaction begins and ends inside apply). Dead letters for events the
 * target refuses are sent from the apply thread, inside apply, while the
 * runner thread sends none. Stopping (SIGTERM: proj_runner_stop) ends the
 * gathering; the batch in flight and the one gathered are applied, then the
 * target closes and the apply thread is joined.
 * Two runners share nothing but the configuration: PostgreSQL being down
 * never stops the LMDB runner.
 *
 * Metrics are atomics written by the runner threads and read by the HTTP
 * server's threads (proj_runner_metrics); watermarks come from librdkafka's
 * cache (rd_kafka_get_watermark_offsets), which is thread-safe.
 */
#ifndef PROJ_RUNNER_H
#define PROJ_RUNNER_H

#include <stddef.h>
#include <stdio.h>

#include "kq_config.h"
#include "proj_batch.h"

/*
 * A target, as the runner sees it. `t` is the target's handle. `open_arg` is
 * handed to open() unchanged: NULL for the live read models, the shadow's
 * description for kcqrs-replay (replay/rp_target.h).
 */
typedef struct proj_target_ops {
    const char *name; /* "lmdb", "pg": metrics label, DLQ "target", group id suffix */
    int (*open)(const kq_config *cfg, void *open_arg, void **t, char *errstr, size_t errlen);
    int (*load_offsets)(void *t, proj_offset_fn cb, void *arg, char *errstr, size_t errlen);
    int (*apply)(void *t, const proj_batch *b, proj_dead_letter_fn dl, void *dlarg, char *errstr,
                 size_t errlen);
    void (*close)(void *t);
    void *open_arg;
} proj_target_ops;

typedef struct proj_runner proj_runner;

/*
 * Create the consumer and DLQ producer and start the thread. With
 * `exit_at_end`, the runner records the end offsets of every partition
 * (the last stable offsets) once the target is first open, and
 * proj_runner_at_end() becomes 1 once the target's offsets reach them.
 * `cfg` and `ops` must outlive the runner. *out owned by the caller
 * (proj_runner_stop).
 */
int proj_runner_start(const kq_config *cfg, const proj_target_ops *ops, int exit_at_end,
                      proj_runner **out, char *errstr, size_t errlen);

/*
 * Options beyond the projector's (kcqrs-replay: replay/rp_target.h).
 *   exit_at_end  as for proj_runner_start;
 *   replay       a replay of the log into a shadow: the end offsets are taken
 *                when the target first opens (implies exit_at_end) and NO
 *                record at or past a partition's end is applied (a batch stops
 *                exactly there, so the stored offsets are the end offsets);
 *                the first error ends the thread (proj_runner_failed) instead
 *                of a retry with backoff; no DLQ producer: records the
 *                projector would dead-letter are logged with topic/partition/
 *                offset, counted (proj_runner_skipped) and skipped;
 *   until        with replay: exclusive end offsets for these partitions
 *                (nuntil of them) instead of the end offsets; the others end
 *                at the end offsets seen at first open. An offset past a
 *                partition's end offset fails the runner (KQ_ERANGE).
 */
typedef struct proj_runner_opts {
    int exit_at_end;
    int replay;
    const proj_offset *until; /* copied by proj_runner_start_opts */
    size_t nuntil;
} proj_runner_opts;

int proj_runner_start_opts(const kq_config *cfg, const proj_target_ops *ops,
                           const proj_runner_opts *o, proj_runner **out, char *errstr,
                           size_t errlen);

/* Replay: 0 while running or done; the error code (message in err) once the runner failed. */
int proj_runner_failed(proj_runner *r, char *err, size_t errlen);

/*
 * Progress toward the end offsets: `done` offsets covered since the target
 * first opened, out of `total` (both 0 until the end offsets are known).
 * `applied`: valid events handed to the target. Any thread.
 */
void proj_runner_progress(proj_runner *r, long long *done, long long *total,
                          unsigned long long *applied);

/* Replay: records skipped (undecodable or refused by the target). */
unsigned long long proj_runner_skipped(proj_runner *r);

/* Ask the thread to stop after the current batch, join it, close everything, free. */
void proj_runner_stop(proj_runner *r);

/* 1 once exit_at_end's end offsets are reached (see proj_runner_start). */
int proj_runner_at_end(const proj_runner *r);

/*
 * Readiness: the target is open, every partition was read to its end at
 * least once since the start, and the total lag is at most cfg->query_ready_lag.
 * Returns 1, or 0 with the reason in why.
 */
int proj_runner_ready(proj_runner *r, char *why, size_t whylen);

/* Prometheus text (HELP/TYPE once per family) for every runner in rs[0..n). */
void proj_runner_metrics(proj_runner *const *rs, size_t n, FILE *out);

#endif
