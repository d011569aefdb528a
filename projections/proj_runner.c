/*
 * proj_runner.c — see proj_runner.h.
 */
#include "proj_runner.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "proj_dlq.h"

#define NTOPICS 3 /* resource, workflow, run events */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define POLL_IDLE_MS 100
#define BUSY_POLL_MS 2 /* poll step while a batch is being applied */
#define WATERMARK_EVERY_MS 200
#define WATERMARK_QUERY_MS 500
#define METADATA_WARMUP_MS 1000

static const double lat_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                    0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
#define NLAT (sizeof lat_bounds / sizeof lat_bounds[0])
static const long size_bounds[] = {1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000};
#define NSIZE (sizeof size_bounds / sizeof size_bounds[0])

/* One batch: its messages (owned until the batch is applied or discarded),
 * its checked events and the next offset of every partition it covers. */
typedef struct rbatch {
    rd_kafka_message_t **msgs;
    int *msg_part; /* partition index of msgs[k] */
    proj_event *ev;
    proj_offset *nx;
    int64_t *batch_next; /* per partition: next offset after this batch, -1 untouched */
    int *touched;        /* partitions with batch_next set, ntouched of them */
    int ntouched;
    size_t n;      /* records */
    size_t nvalid; /* records that passed check_record */
    size_t nbad;   /* records that failed it (dead-lettered at hand-over) */
    proj_batch b;  /* what apply sees */
} rbatch;

struct proj_runner {
    const kq_config *cfg;
    const proj_target_ops *ops;
    int exit_at_end;
    int replay;     /* see proj_runner_opts */
    int64_t *until; /* per partition: replay end offset, -1 = the end offset */
    pthread_t thread;
    int started;
    atomic_int stop;
    atomic_int at_end;
    atomic_int connected;

    char topics[NTOPICS][KQ_KAFKA_TOPIC_MAX];
    const rd_kafka_topic_t *rkt[NTOPICS]; /* handles seen for each topic (cache) */
    int np;                               /* partitions per topic */
    int nparts;                           /* NTOPICS * np */
    char group[KQ_KAFKA_TOPIC_MAX + 32];

    /* Runner thread only. */
    rd_kafka_t *c;
    rd_kafka_queue_t *q; /* c's consumer queue (batch reads) */
    rd_kafka_t *wm;      /* never assigned: asks for watermarks while the target is down */
    proj_dlq *dlq;
    void *t;
    int64_t *end; /* exit_at_end targets, -1 until known */
    int have_end;
    int64_t *start;        /* per partition: stored offset when the target first opened */
    atomic_int have_goal;  /* end[] and start[] are set (progress) */
    atomic_int failed;     /* replay: the error that ended the thread */
    char failed_err[1024]; /* written before `failed` */
    rbatch bt[2];          /* double buffer: one gathered/checked, one applied */
    rbatch *cur;           /* the batch the runner thread is gathering and checking */
    rbatch *inflight;      /* the batch the apply thread holds, NULL when it is idle */
    long long last_wm_ms;

    /* Apply stage: a second thread that runs ops->apply on one batch at a
     * time. The slot (job/done/rc/err) is guarded by mu; `done` is also read
     * without the lock by gather() as a hint. */
    pthread_t athread;
    int astarted;
    int sync_init; /* mu and cv initialised */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int job;         /* 1: inflight is posted, not yet taken */
    int quit;        /* the apply thread must end */
    atomic_int done; /* 1: inflight's apply returned (rc, aerr, apply_us) */
    int arc;
    long long apply_us;
    char aerr[1024];

    /* Shared with the metrics/readiness readers. */
    atomic_llong *next;   /* per partition: the target's stored next offset */
    atomic_llong *high;   /* per partition: high watermark (librdkafka's cache) */
    atomic_int *eof_once; /* per partition: read to its end since the start */
    atomic_ullong applied, batches, dead_letters, errors, poison, skipped;
    atomic_ullong size_hist[NSIZE + 1], size_sum;
    atomic_ullong lat_hist[NLAT + 1], lat_sum_us;
};

static long long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Sleep `ms`, waking early when asked to stop. */
static void nap(proj_runner *r, int ms)
{
    while (ms > 0 && !atomic_load(&r->stop)) {
        int step = ms < 50 ? ms : 50;
        nanosleep(&(struct timespec){0, step * 1000000L}, NULL);
        ms -= step;
    }
}

static int part_index(const proj_runner *r, const char *topic, int32_t partition)
{
    if (partition < 0 || partition >= r->np)
        return -1;
    for (int ti = 0; ti < NTOPICS; ti++)
        if (strcmp(topic, r->topics[ti]) == 0)
            return ti * r->np + partition;
    return -1;
}

/* Partition index of a consumed message (topic found by handle, cached), or -1. */
static int msg_index(proj_runner *r, const rd_kafka_message_t *m)
{
    int i;

    if (m->rkt == NULL || m->partition < 0 || m->partition >= r->np)
        return -1;
    for (int ti = 0; ti < NTOPICS; ti++)
        if (r->rkt[ti] == m->rkt)
            return ti * r->np + m->partition;
    if ((i = part_index(r, rd_kafka_topic_name(m->rkt), m->partition)) >= 0)
        r->rkt[i / r->np] = m->rkt;
    return i;
}

static void on_offset(void *arg, const char *topic, int32_t partition, int64_t next_offset)
{
    proj_runner *r = arg;
    int i = part_index(r, topic, partition);

    if (i >= 0)
        atomic_store(&r->next[i], next_offset);
}

/* ------------------------------------------------------------ dead letters */

static int dead_letter(void *arg, const proj_event *ev, const char *target, const char *reason)
{
    proj_runner *r = arg;
    char err[512];

    if (r->replay) { /* the projector dead-lettered this record: skip it the same way */
        kq_log_warn("%s: skipping %s [%" PRId32 "] offset %" PRId64 " (%s): %s", r->ops->name,
                    ev->topic, ev->partition, ev->offset, target, reason);
        atomic_fetch_add(&r->skipped, 1);
        return 0;
    }
    if (proj_dlq_send(r->dlq, ev, target, reason, err, sizeof err) != 0) {
        kq_log_error("%s: %s", r->ops->name, err);
        return -1;
    }
    atomic_fetch_add(&r->dead_letters, 1);
    return 0;
}

/*
 * Check one record and fill ev. Returns NULL when it is a valid event of this
 * topic and partition, else the reason (in why).
 */
static const char *check_record(proj_runner *r, int ti, const rd_kafka_message_t *m, proj_event *ev,
                                char *why, size_t whylen)
{
    static const ev_aggregate_type types[NTOPICS] = {EV_AGG_RESOURCE, EV_AGG_WORKFLOW, EV_AGG_RUN};
    char err[256];
    size_t idlen = 0;
    int64_t kver = 0;
    int part;

    memset(ev, 0, sizeof *ev);
    ev->topic = r->topics[ti];
    ev->partition = m->partition;
    ev->offset = m->offset;
    ev->timestamp_ms = rd_kafka_message_timestamp(m, NULL);
    ev->value = m->payload;
    ev->len = m->len;
    ev->key = m->key;
    ev->keylen = m->key_len;
    if (m->payload == NULL || m->len == 0)
        return "empty value (tombstone or null)";
    if (ev_envelope_decode(m->payload, m->len, &ev->env, err, sizeof err) != 0) {
        snprintf(why, whylen, "undecodable envelope: %s", err);
        return why;
    }
    if (ev->env.aggregate_type != types[ti] ||
        ev_event_aggregate_type(ev->env.payload_type) != types[ti]) {
        snprintf(why, whylen, "a %s event (%s) in topic %s",
                 ev_aggregate_type_name(ev->env.aggregate_type)
                     ? ev_aggregate_type_name(ev->env.aggregate_type)
                     : "?",
                 ev_event_type_name(ev->env.payload_type) ? ev_event_type_name(ev->env.payload_type)
                                                          : "?",
                 ev->topic);
        return why;
    }
    if (ev->env.version < 1)
        return "version below 1";
    if (m->key == NULL || kq_kafka_record_key_parse(m->key, m->key_len, &idlen, &kver) != 0)
        return "record key is not <aggregate id>/<version:020>";
    if (idlen != ev->env.aggregate_id.len || memcmp(m->key, ev->env.aggregate_id.ptr, idlen) != 0 ||
        kver != ev->env.version)
        return "record key does not match the envelope's aggregate id and version";
    part = kq_kafka_partition_for(ev->env.aggregate_id.ptr, ev->env.aggregate_id.len, r->np);
    if (part != m->partition) {
        snprintf(why, whylen, "aggregate belongs to partition %d, found in %" PRId32, part,
                 m->partition);
        return why;
    }
    ev->decoded = 1;
    return NULL;
}

/* ------------------------------------------------------------ consumer */

static void consumer_close(proj_runner *r)
{
    if (r->q != NULL) {
        rd_kafka_queue_destroy(r->q); /* before rd_kafka_consumer_close */
        r->q = NULL;
    }
    if (r->c != NULL) {
        rd_kafka_consumer_close(r->c);
        rd_kafka_destroy(r->c);
        r->c = NULL;
    }
}

/* A fresh consumer assigned at the stored offsets (a fresh one, so that no
 * record fetched for an earlier position can come back). */
static int consumer_open(proj_runner *r, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *tp;
    rd_kafka_conf_t *conf;
    rd_kafka_resp_err_t e;
    char cid[64];

    snprintf(cid, sizeof cid, "kcqrs-projector-%s", r->ops->name);
    if ((conf = kq_kafka_conf_new(r->cfg, cid, err, errlen)) == NULL)
        return KQ_EKAFKA;
    /* Large batches: let the fetcher keep up to ~64 MiB queued. librdkafka
     * (2.0) compares the whole consumer queue with queued.min.messages and,
     * once it is exceeded, stops fetching EVERY partition for
     * fetch.error.backoff.ms (500 ms): with the default 100000 a replay that
     * applies slower than it fetches drains the queue during that pause and
     * then waits idle. 1000000 leaves the byte bound as the real limit. */
    if (kq_kafka_conf_set(conf, "queued.max.messages.kbytes", "65536", err, errlen) != 0 ||
        kq_kafka_conf_set(conf, "queued.min.messages", "1000000", err, errlen) != 0 ||
        kq_kafka_conf_set(conf, "fetch.wait.max.ms", "50", err, errlen) != 0 ||
        /* A replay applies slower than it fetches, so the queue is full most
         * of the time: librdkafka 2.0 then pauses every partition for
         * fetch.error.backoff.ms (500 ms) and the queue runs dry meanwhile
         * (the wall time of a 1M-event rebuild varied 3 s .. 8 s with the
         * same CPU time). Retry the fetch soon instead. */
        (r->replay && kq_kafka_conf_set(conf, "fetch.error.backoff.ms", "10", err, errlen) != 0)) {
        rd_kafka_conf_destroy(conf);
        return KQ_ECONFIG;
    }
    if ((r->c = kq_kafka_consumer_new(r->cfg, r->group, conf, err, errlen)) == NULL)
        return KQ_EKAFKA;
    if ((r->q = rd_kafka_queue_get_consumer(r->c)) == NULL) {
        consumer_close(r);
        return kq_seterr(err, errlen, KQ_EKAFKA, "no consumer queue");
    }
    memset(r->rkt, 0, sizeof r->rkt);
    /* Learn the partition leaders before assigning: a partition assigned
     * without a known leader waits for librdkafka's offset-query retry timer
     * (~500 ms) before its first fetch. Only a warm-up (bounded): on failure
     * assign anyway and let librdkafka retry as before. */
    for (int ti = 0; ti < NTOPICS; ti++) {
        char merr[256];
        int cnt = 0;
        int tmo = r->cfg->kafka_timeout_ms < METADATA_WARMUP_MS ? r->cfg->kafka_timeout_ms
                                                                : METADATA_WARMUP_MS;
        if (kq_kafka_topic_partitions(r->c, r->topics[ti], tmo, &cnt, NULL, merr, sizeof merr) !=
            0) {
            kq_log_warn("%s: %s", r->ops->name, merr);
            break;
        }
    }
    tp = rd_kafka_topic_partition_list_new(r->nparts);
    for (int i = 0; i < r->nparts; i++) {
        int64_t off = atomic_load(&r->next[i]);
        rd_kafka_topic_partition_list_add(tp, r->topics[i / r->np], i % r->np)->offset =
            off > 0 ? off : RD_KAFKA_OFFSET_BEGINNING;
    }
    e = rd_kafka_assign(r->c, tp);
    rd_kafka_topic_partition_list_destroy(tp);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        consumer_close(r);
        return kq_seterr(err, errlen, KQ_EKAFKA, "assign: %s", rd_kafka_err2str(e));
    }
    return 0;
}

/* exit_at_end: the last stable offset of every partition, once. Asked on the
 * watermark handle before the consumer starts: on the consumer's own
 * connection the answers queue behind its fetch responses. */
static int query_ends(proj_runner *r, char *err, size_t errlen)
{
    for (int i = 0; i < r->nparts; i++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
            r->wm, r->topics[i / r->np], i % r->np, &lo, &hi, r->cfg->kafka_timeout_ms);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            return kq_seterr(err, errlen, KQ_EKAFKA, "end offset of %s [%d]: %s",
                             r->topics[i / r->np], i % r->np, rd_kafka_err2str(e));
        r->end[i] = hi;
        if (r->until != NULL && r->until[i] >= 0) {
            if (r->until[i] > hi)
                return kq_seterr(err, errlen, KQ_ERANGE,
                                 "end offset %" PRId64
                                 " asked for %s [%d] is past its end (%" PRId64 ")",
                                 r->until[i], r->topics[i / r->np], i % r->np, hi);
            r->end[i] = r->until[i];
        }
    }
    r->have_end = 1;
    return 0;
}

static void check_at_end(proj_runner *r)
{
    if (!r->exit_at_end || !r->have_end || atomic_load(&r->at_end))
        return;
    for (int i = 0; i < r->nparts; i++)
        if (atomic_load(&r->next[i]) < r->end[i])
            return;
    kq_log_info("%s: reached the end offsets observed at start", r->ops->name);
    atomic_store(&r->at_end, 1);
}

static void refresh_watermarks(proj_runner *r)
{
    long long now = mono_ms();

    if (now - r->last_wm_ms < WATERMARK_EVERY_MS)
        return;
    r->last_wm_ms = now;
    for (int i = 0; i < r->nparts; i++) {
        int64_t lo = -1, hi = -1;
        if (rd_kafka_get_watermark_offsets(r->c, r->topics[i / r->np], i % r->np, &lo, &hi) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            hi >= 0)
            atomic_store(&r->high[i], hi);
    }
}

/* While the target is down there is no consumer: ask the brokers (bounded). */
static void query_watermarks(proj_runner *r)
{
    for (int i = 0; i < r->nparts; i++) {
        int64_t lo = -1, hi = -1;
        if (rd_kafka_query_watermark_offsets(r->wm, r->topics[i / r->np], i % r->np, &lo, &hi,
                                             WATERMARK_QUERY_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        atomic_store(&r->high[i], hi);
    }
}

/* ------------------------------------------------------------ batches */

/* The next offset of partition i once everything gathered so far is applied:
 * the batch being gathered, else the batch being applied, else the stored one. */
static int64_t cur_next(const proj_runner *r, int i)
{
    if (r->cur->batch_next[i] >= 0)
        return r->cur->batch_next[i];
    if (r->inflight != NULL && r->inflight->batch_next[i] >= 0)
        return r->inflight->batch_next[i];
    return atomic_load(&r->next[i]);
}

static void touch(proj_runner *r, int i, int64_t next)
{
    rbatch *b = r->cur;

    if (r->replay && r->have_end && next > r->end[i]) /* never past a replay's end */
        next = r->end[i];
    if (next <= cur_next(r, i))
        return;
    if (b->batch_next[i] < 0)
        b->touched[b->ntouched++] = i;
    b->batch_next[i] = next;
}

/* Destroy a batch's messages and forget its offsets (applied or discarded). */
static void batch_release(rbatch *b)
{
    for (size_t i = 0; i < b->n; i++)
        rd_kafka_message_destroy(b->msgs[i]);
    for (int k = 0; k < b->ntouched; k++)
        b->batch_next[b->touched[k]] = -1;
    b->ntouched = 0;
    b->n = b->nvalid = b->nbad = 0;
}

/*
 * Take one consumed message into the batch being gathered (or drop it).
 * Starts the batch's deadline with its first record or end-of-partition.
 */
static void take(proj_runner *r, rd_kafka_message_t *m, int *eofs, long long *deadline)
{
    rbatch *b = r->cur;
    int i;

    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if ((i = msg_index(r, m)) >= 0) {
            atomic_store(&r->eof_once[i], 1);
            if (m->offset > cur_next(r, i)) {
                if (b->n == 0 && !*eofs)
                    *deadline = mono_ms() + r->cfg->proj_batch_ms;
                touch(r, i, m->offset);
                *eofs = 1;
            }
        }
        rd_kafka_message_destroy(m);
        return;
    }
    if (m->err) {
        kq_log_warn("%s: consumer: %s", r->ops->name, rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return;
    }
    i = msg_index(r, m);
    if (i < 0 || m->offset < cur_next(r, i)) { /* not ours, or already applied */
        rd_kafka_message_destroy(m);
        return;
    }
    if (r->replay && r->have_end && m->offset >= r->end[i]) { /* past the end: stop there */
        if (cur_next(r, i) < r->end[i]) {
            if (b->n == 0 && !*eofs)
                *deadline = mono_ms() + r->cfg->proj_batch_ms;
            touch(r, i, r->end[i]);
            *eofs = 1;
        }
        rd_kafka_message_destroy(m);
        return;
    }
    if (b->n == 0 && !*eofs)
        *deadline = mono_ms() + r->cfg->proj_batch_ms;
    touch(r, i, m->offset + 1);
    b->msg_part[b->n] = i;
    b->msgs[b->n++] = m;
}

/* 1 while the apply thread holds a batch it has not finished. */
static int apply_busy(const proj_runner *r)
{
    return r->inflight != NULL && !atomic_load(&r->done);
}

/*
 * Gather one batch into r->cur; offsets advanced by end-of-partition events
 * count as touched partitions too. What the queue already holds is taken in
 * chunks without waiting (rd_kafka_consume_batch_queue with timeout 0: one
 * lock and no clock read per chunk instead of per record); only an empty
 * queue waits, in rd_kafka_consumer_poll, until the batch's deadline. While
 * the previous batch is still being applied the batch keeps growing past its
 * deadline (nothing could be applied earlier anyway), polling in short steps
 * to notice the apply's end; an empty batch returns as soon as the apply is
 * done, so that its offsets are published without waiting for new records.
 */
static void gather(proj_runner *r)
{
    rbatch *b = r->cur;
    size_t max = (size_t)r->cfg->proj_batch_max;
    long long deadline = 0;
    int eofs = 0;

    while (b->n < max && !atomic_load(&r->stop)) {
        rd_kafka_message_t *m;
        size_t base = b->n;
        ssize_t got;
        int timeout = POLL_IDLE_MS;

        /* The chunk lands in msgs[n..max) and is compacted by take(). */
        got = rd_kafka_consume_batch_queue(r->q, 0, b->msgs + base, max - base);
        for (ssize_t k = 0; k < got; k++)
            take(r, b->msgs[base + (size_t)k], &eofs, &deadline);
        if (b->n >= max)
            break;
        if (b->n > 0 || eofs) {
            long long left = deadline - mono_ms();
            if (left <= 0) {
                if (!apply_busy(r))
                    break;
                timeout = BUSY_POLL_MS;
            } else {
                timeout = r->inflight != NULL && left > BUSY_POLL_MS ? BUSY_POLL_MS : (int)left;
            }
        } else if (r->inflight != NULL) {
            if (!apply_busy(r))
                break;
            timeout = BUSY_POLL_MS;
        }
        if (got > 0)
            continue;
        if ((m = rd_kafka_consumer_poll(r->c, timeout)) == NULL) {
            refresh_watermarks(r); /* rate-limited; the loop's top decides whether to stop */
            continue;
        }
        take(r, m, &eofs, &deadline);
    }
}

static void observe(proj_runner *r, size_t n, long long us)
{
    size_t b = 0;

    while (b < NSIZE && (long)n > size_bounds[b])
        b++;
    atomic_fetch_add(&r->size_hist[b], 1);
    atomic_fetch_add(&r->size_sum, n);
    for (b = 0; b < NLAT && (double)us / 1e6 > lat_bounds[b]; b++)
        ;
    atomic_fetch_add(&r->lat_hist[b], 1);
    atomic_fetch_add(&r->lat_sum_us, (unsigned long long)us);
}

/*
 * Checker stage: check every record of the gathered batch (decode, key, topic,
 * partition) and fill what apply will see. Runs while the previous batch is
 * being applied, so it sends no dead letters (the DLQ producer is used by one
 * thread at a time): dead_letter_batch does, once the apply thread is idle.
 */
static void check_batch(proj_runner *r, rbatch *b)
{
    char why[512];

    for (size_t k = 0; k < b->n; k++) {
        const char *bad =
            check_record(r, b->msg_part[k] / r->np, b->msgs[k], &b->ev[k], why, sizeof why);

        if (bad == NULL) {
            b->nvalid++;
            continue;
        }
        atomic_fetch_add(&r->poison, 1);
        b->nbad++;
        if (r->replay) {
            kq_log_warn("%s: skipping %s [%" PRId32 "] offset %" PRId64 ": %s", r->ops->name,
                        b->ev[k].topic, b->ev[k].partition, b->ev[k].offset, bad);
            atomic_fetch_add(&r->skipped, 1);
        }
    }
    for (int k = 0; k < b->ntouched; k++) {
        int i = b->touched[k];
        b->nx[k].topic = r->topics[i / r->np];
        b->nx[k].partition = i % r->np;
        b->nx[k].next_offset = b->batch_next[i];
    }
    b->b.ev = b->ev;
    b->b.n = b->n;
    b->b.next = b->nx;
    b->b.nnext = (size_t)b->ntouched;
}

/* Dead-letter the batch's refused records, durably, before it is applied
 * (projector only; a replay skipped them in check_batch). The apply thread
 * is idle. The reason is computed again (check_record is deterministic). */
static int dead_letter_batch(proj_runner *r, rbatch *b, char *err, size_t errlen)
{
    char why[512];

    if (r->replay || b->nbad == 0)
        return 0;
    for (size_t k = 0; k < b->n; k++) {
        const char *bad;

        if (b->ev[k].decoded)
            continue;
        bad = check_record(r, b->msg_part[k] / r->np, b->msgs[k], &b->ev[k], why, sizeof why);
        if (dead_letter(r, &b->ev[k], r->ops->name, bad != NULL ? bad : "refused") != 0)
            return kq_seterr(err, errlen, KQ_EKAFKA,
                             "dead letter of %s/%" PRId32 "/%" PRId64 " failed", b->ev[k].topic,
                             b->ev[k].partition, b->ev[k].offset);
    }
    return 0;
}

/* ------------------------------------------------------------ apply stage */

static void *apply_main(void *arg)
{
    proj_runner *r = arg;

    pthread_mutex_lock(&r->mu);
    for (;;) {
        rbatch *b;
        long long t0;
        int rc;

        while (!r->job && !r->quit)
            pthread_cond_wait(&r->cv, &r->mu);
        if (!r->job)
            break;
        r->job = 0;
        b = r->inflight;
        pthread_mutex_unlock(&r->mu);
        t0 = mono_us();
        r->aerr[0] = '\0';
        rc = r->ops->apply(r->t, &b->b, dead_letter, r, r->aerr, sizeof r->aerr);
        t0 = mono_us() - t0;
        pthread_mutex_lock(&r->mu);
        r->arc = rc;
        r->apply_us = t0;
        atomic_store(&r->done, 1);
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Hand r->cur (checked, dead letters sent) to the apply thread, which is idle;
 * gathering continues into the other buffer. */
static void apply_post(proj_runner *r)
{
    pthread_mutex_lock(&r->mu);
    r->inflight = r->cur;
    r->cur = r->cur == &r->bt[0] ? &r->bt[1] : &r->bt[0];
    atomic_store(&r->done, 0);
    r->job = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Wait for the batch being applied. On success publish its offsets and
 * metrics; either way release it (the apply thread is idle afterwards).
 * 0 or the target's error (err filled). */
static int apply_wait(proj_runner *r, char *err, size_t errlen)
{
    rbatch *b = r->inflight;
    long long us;
    int rc;

    pthread_mutex_lock(&r->mu);
    while (!atomic_load(&r->done))
        pthread_cond_wait(&r->cv, &r->mu);
    rc = r->arc;
    us = r->apply_us;
    if (rc != 0)
        snprintf(err, errlen, "%s", r->aerr[0] != '\0' ? r->aerr : "apply failed");
    pthread_mutex_unlock(&r->mu);
    if (rc == 0) {
        observe(r, b->n, us);
        for (int k = 0; k < b->ntouched; k++)
            atomic_store(&r->next[b->touched[k]], b->batch_next[b->touched[k]]);
        atomic_fetch_add(&r->applied, b->nvalid);
        atomic_fetch_add(&r->batches, 1);
    }
    r->inflight = NULL;
    batch_release(b);
    return rc;
}

/* Needs the apply thread idle (no batch in flight). */
static void close_target(proj_runner *r)
{
    atomic_store(&r->connected, 0);
    consumer_close(r);
    if (r->t != NULL) {
        r->ops->close(r->t);
        r->t = NULL;
    }
}

static void *run(void *arg)
{
    proj_runner *r = arg;
    char err[1024];
    int backoff = BACKOFF_MIN_MS;

    for (;;) {
        /* With exit_at_end the thread is done once the end offsets are stored. */
        int ending = atomic_load(&r->stop) || (r->exit_at_end && atomic_load(&r->at_end));
        int rc = 0;

        if (ending && r->inflight == NULL)
            break;
        if (r->t == NULL) { /* closed: nothing in flight, nothing gathered */
            if ((rc = r->ops->open(r->cfg, r->ops->open_arg, &r->t, err, sizeof err)) != 0) {
                r->t = NULL;
                goto failed;
            }
            for (int i = 0; i < r->nparts; i++)
                atomic_store(&r->next[i], 0);
            if ((rc = r->ops->load_offsets(r->t, on_offset, r, err, sizeof err)) != 0 ||
                (r->exit_at_end && !r->have_end && (rc = query_ends(r, err, sizeof err)) != 0))
                goto failed;
            if (!atomic_load(&r->have_goal)) {
                for (int i = 0; i < r->nparts; i++)
                    r->start[i] = atomic_load(&r->next[i]);
                atomic_store(&r->have_goal, r->have_end ? 1 : 2);
            }
            if ((rc = consumer_open(r, err, sizeof err)) != 0)
                goto failed;
            atomic_store(&r->connected, 1);
            kq_log_info("%s: target open, consuming %d partitions from its stored offsets",
                        r->ops->name, r->nparts);
            check_at_end(r);
            continue; /* exit_at_end may already hold */
        }
        if (!ending) { /* batch N+1, while batch N is applied */
            gather(r);
            check_batch(r, r->cur);
        }
        if (r->inflight != NULL) {
            if ((rc = apply_wait(r, err, sizeof err)) != 0) {
                batch_release(r->cur); /* checked against a state that was not stored */
                goto failed;
            }
            backoff = BACKOFF_MIN_MS;
            check_at_end(r);
        }
        if (r->cur->n > 0 || r->cur->ntouched > 0) {
            if ((rc = dead_letter_batch(r, r->cur, err, sizeof err)) != 0) {
                batch_release(r->cur);
                goto failed;
            }
            apply_post(r);
        }
        refresh_watermarks(r);
        continue;
    failed:              /* nothing in flight, nothing gathered */
        if (r->replay) { /* fail fast: the driver decides */
            snprintf(r->failed_err, sizeof r->failed_err, "%s", err);
            atomic_store(&r->failed, rc != 0 ? rc : KQ_EIO);
            kq_log_error("%s: %s", r->ops->name, err);
            break;
        }
        if (rc == KQ_ESWITCHED) { /* a new live model: reopen it now, from its offsets */
            kq_log_info("%s: %s; reopening", r->ops->name, err);
            close_target(r);
            continue;
        }
        atomic_fetch_add(&r->errors, 1);
        kq_log_error("%s: %s; retrying in %d ms", r->ops->name, err, backoff);
        close_target(r);
        query_watermarks(r); /* lag keeps growing while the target is down */
        nap(r, backoff);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    close_target(r);
    return NULL;
}

/* ------------------------------------------------------------ life */

/* End the apply thread (idle) and join it. */
static void apply_quit(proj_runner *r)
{
    if (!r->astarted)
        return;
    pthread_mutex_lock(&r->mu);
    r->quit = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->athread, NULL);
    r->astarted = 0;
}

static void runner_free(proj_runner *r)
{
    if (r == NULL)
        return;
    proj_dlq_free(r->dlq);
    if (r->wm != NULL)
        rd_kafka_destroy(r->wm);
    free(r->end);
    free(r->until);
    free(r->start);
    for (int k = 0; k < 2; k++) {
        free(r->bt[k].batch_next);
        free(r->bt[k].touched);
        free(r->bt[k].msgs);
        free(r->bt[k].msg_part);
        free(r->bt[k].ev);
        free(r->bt[k].nx);
    }
    if (r->sync_init) {
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
    }
    free(r->next);
    free(r->high);
    free(r->eof_once);
    free(r);
}

int proj_runner_start(const kq_config *cfg, const proj_target_ops *ops, int exit_at_end,
                      proj_runner **out, char *errstr, size_t errlen)
{
    proj_runner_opts o;

    memset(&o, 0, sizeof o);
    o.exit_at_end = exit_at_end;
    return proj_runner_start_opts(cfg, ops, &o, out, errstr, errlen);
}

int proj_runner_start_opts(const kq_config *cfg, const proj_target_ops *ops,
                           const proj_runner_opts *o, proj_runner **out, char *errstr,
                           size_t errlen)
{
    char names[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX];
    proj_runner *r;
    size_t max = (size_t)cfg->proj_batch_max;
    int rc;

    *out = NULL;
    if (cfg->partitions < 1 || cfg->proj_batch_max < 1)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "partitions and batch size must be >= 1");
    if (kq_kafka_topic_names(cfg, names) < 0)
        return kq_seterr(errstr, errlen, KQ_ERANGE, "topic prefix too long");
    if ((r = calloc(1, sizeof *r)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    r->cfg = cfg;
    r->ops = ops;
    r->replay = o->replay != 0;
    r->exit_at_end = o->exit_at_end || r->replay;
    for (int ti = 0; ti < NTOPICS; ti++)
        memcpy(r->topics[ti], names[ti], KQ_KAFKA_TOPIC_MAX);
    r->np = cfg->partitions;
    r->nparts = NTOPICS * r->np;
    snprintf(r->group, sizeof r->group, "%s.projector.%s", cfg->topic_prefix, ops->name);
    r->end = calloc((size_t)r->nparts, sizeof *r->end);
    r->start = calloc((size_t)r->nparts, sizeof *r->start);
    r->until = malloc((size_t)r->nparts * sizeof *r->until);
    r->next = calloc((size_t)r->nparts, sizeof *r->next);
    r->high = calloc((size_t)r->nparts, sizeof *r->high);
    r->eof_once = calloc((size_t)r->nparts, sizeof *r->eof_once);
    if (!r->end || !r->start || !r->until || !r->next || !r->high || !r->eof_once) {
        runner_free(r);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    for (int k = 0; k < 2; k++) {
        rbatch *b = &r->bt[k];
        b->batch_next = malloc((size_t)r->nparts * sizeof *b->batch_next);
        b->touched = calloc((size_t)r->nparts, sizeof *b->touched);
        b->msgs = calloc(max, sizeof *b->msgs);
        b->msg_part = calloc(max, sizeof *b->msg_part);
        b->ev = calloc(max, sizeof *b->ev);
        b->nx = calloc((size_t)r->nparts, sizeof *b->nx);
        if (!b->batch_next || !b->touched || !b->msgs || !b->msg_part || !b->ev || !b->nx) {
            runner_free(r);
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        }
        for (int i = 0; i < r->nparts; i++)
            b->batch_next[i] = -1;
    }
    r->cur = &r->bt[0];
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        runner_free(r);
        return kq_seterr(errstr, errlen, KQ_EIO, "cannot create the runner's mutex");
    }
    if (pthread_cond_init(&r->cv, NULL) != 0) {
        pthread_mutex_destroy(&r->mu);
        runner_free(r);
        return kq_seterr(errstr, errlen, KQ_EIO, "cannot create the runner's condition");
    }
    r->sync_init = 1;
    for (int i = 0; i < r->nparts; i++) {
        r->until[i] = -1;
        atomic_store(&r->high[i], -1);
    }
    if (o->nuntil > 0 && !r->replay) {
        runner_free(r);
        return kq_seterr(errstr, errlen, KQ_EINVAL, "end offsets are for replays only");
    }
    for (size_t k = 0; k < o->nuntil; k++) {
        int i = part_index(r, o->until[k].topic, o->until[k].partition);
        if (i < 0 || o->until[k].next_offset < 0) {
            rc = kq_seterr(errstr, errlen, KQ_EINVAL,
                           "no partition %s [%" PRId32 "] (offset %" PRId64 ")", o->until[k].topic,
                           o->until[k].partition, o->until[k].next_offset);
            runner_free(r);
            return rc;
        }
        r->until[i] = o->until[k].next_offset;
    }
    if (!r->replay && (rc = proj_dlq_new(cfg, &r->dlq, errstr, errlen)) != 0) {
        runner_free(r);
        return rc;
    }
    {
        char wgroup[sizeof r->group + 4];
        snprintf(wgroup, sizeof wgroup, "%s.wm", r->group);
        if ((r->wm = kq_kafka_consumer_new(cfg, wgroup, NULL, errstr, errlen)) == NULL) {
            runner_free(r);
            return KQ_EKAFKA;
        }
    }
    if (pthread_create(&r->athread, NULL, apply_main, r) != 0) {
        runner_free(r);
        return kq_seterr(errstr, errlen, KQ_EIO, "cannot start the %s apply thread", ops->name);
    }
    r->astarted = 1;
    if (pthread_create(&r->thread, NULL, run, r) != 0) {
        apply_quit(r);
        runner_free(r);
        return kq_seterr(errstr, errlen, KQ_EIO, "cannot start the %s runner thread", ops->name);
    }
    r->started = 1;
    *out = r;
    return 0;
}

void proj_runner_stop(proj_runner *r)
{
    if (r == NULL)
        return;
    atomic_store(&r->stop, 1);
    if (r->started)
        pthread_join(r->thread, NULL);
    apply_quit(r); /* idle: the runner thread waited for its last batch */
    runner_free(r);
}

int proj_runner_at_end(const proj_runner *r)
{
    return atomic_load(&((proj_runner *)r)->at_end);
}

int proj_runner_failed(proj_runner *r, char *err, size_t errlen)
{
    int rc = atomic_load(&r->failed);

    if (rc != 0 && err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", r->failed_err);
    return rc;
}

void proj_runner_progress(proj_runner *r, long long *done, long long *total,
                          unsigned long long *applied)
{
    *done = *total = 0;
    *applied = atomic_load(&r->applied);
    if (atomic_load(&r->have_goal) != 1)
        return;
    for (int i = 0; i < r->nparts; i++) {
        long long nx = atomic_load(&r->next[i]);
        if (r->end[i] > r->start[i])
            *total += r->end[i] - r->start[i];
        if (nx > r->end[i])
            nx = r->end[i];
        if (nx > r->start[i])
            *done += nx - r->start[i];
    }
}

unsigned long long proj_runner_skipped(proj_runner *r)
{
    return atomic_load(&r->skipped);
}

static long long total_lag(proj_runner *r, int *unknown)
{
    long long lag = 0;

    *unknown = 0;
    for (int i = 0; i < r->nparts; i++) {
        long long hi = atomic_load(&r->high[i]), nx = atomic_load(&r->next[i]);
        if (hi < 0)
            (*unknown)++;
        else if (hi > nx)
            lag += hi - nx;
    }
    return lag;
}

int proj_runner_ready(proj_runner *r, char *why, size_t whylen)
{
    int unknown, missing = 0;
    long long lag;

    if (!atomic_load(&r->connected)) {
        snprintf(why, whylen, "%s target is not open", r->ops->name);
        return 0;
    }
    for (int i = 0; i < r->nparts; i++)
        missing += !atomic_load(&r->eof_once[i]);
    if (missing > 0) {
        snprintf(why, whylen, "%s: %d partitions not yet read to their end", r->ops->name, missing);
        return 0;
    }
    lag = total_lag(r, &unknown);
    if (lag > r->cfg->query_ready_lag) {
        snprintf(why, whylen, "%s lags %lld events behind the log", r->ops->name, lag);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ metrics */

#define FAMILY(out, fam, type, help)                                                               \
    fprintf(out, "# HELP " fam " " help "\n# TYPE " fam " " type "\n")

void proj_runner_metrics(proj_runner *const *rs, size_t n, FILE *out)
{
    FAMILY(out, "kcqrs_projector_lag", "gauge",
           "Events between the high watermark and the target's stored offset, per partition.");
    for (size_t k = 0; k < n; k++) {
        proj_runner *r = rs[k];
        for (int i = 0; i < r->nparts; i++) {
            long long hi = atomic_load(&r->high[i]), nx = atomic_load(&r->next[i]);
            if (hi < 0)
                continue;
            fprintf(out, "kcqrs_projector_lag{target=\"%s\",topic=\"%s\",partition=\"%d\"} %lld\n",
                    r->ops->name, r->topics[i / r->np], i % r->np, hi > nx ? hi - nx : 0);
        }
    }
    FAMILY(out, "kcqrs_projector_offset", "gauge",
           "Next offset the target has stored, per partition.");
    for (size_t k = 0; k < n; k++) {
        proj_runner *r = rs[k];
        for (int i = 0; i < r->nparts; i++)
            fprintf(
                out, "kcqrs_projector_offset{target=\"%s\",topic=\"%s\",partition=\"%d\"} %lld\n",
                r->ops->name, r->topics[i / r->np], i % r->np, (long long)atomic_load(&r->next[i]));
    }
#define COUNTER(fam, field, help)                                                                  \
    FAMILY(out, fam, "counter", help);                                                             \
    for (size_t k = 0; k < n; k++)                                                                 \
        fprintf(out, fam "{target=\"%s\"} %llu\n", rs[k]->ops->name,                               \
                (unsigned long long)atomic_load(&rs[k]->field));
    COUNTER("kcqrs_projector_events_applied_total", applied,
            "Events handed to the target as valid (gaps it refused included).");
    COUNTER("kcqrs_projector_batches_total", batches, "Batches committed by the target.");
    COUNTER("kcqrs_projector_dead_letters_total", dead_letters,
            "Records written to the dead-letter topic.");
    COUNTER("kcqrs_projector_poison_total", poison,
            "Records refused before the target (undecodable or inconsistent).");
    COUNTER("kcqrs_projector_target_errors_total", errors,
            "Failed target opens or batches (each followed by a reopen and a retry).");
#undef COUNTER
    FAMILY(out, "kcqrs_projector_connected", "gauge", "1 while the target is open.");
    for (size_t k = 0; k < n; k++)
        fprintf(out, "kcqrs_projector_connected{target=\"%s\"} %d\n", rs[k]->ops->name,
                atomic_load(&rs[k]->connected));
    FAMILY(out, "kcqrs_projector_batch_size", "histogram", "Records per batch.");
    for (size_t k = 0; k < n; k++) {
        unsigned long long cum = 0;
        for (size_t b = 0; b <= NSIZE; b++) {
            cum += atomic_load(&rs[k]->size_hist[b]);
            if (b < NSIZE)
                fprintf(out, "kcqrs_projector_batch_size_bucket{target=\"%s\",le=\"%ld\"} %llu\n",
                        rs[k]->ops->name, size_bounds[b], cum);
            else
                fprintf(out, "kcqrs_projector_batch_size_bucket{target=\"%s\",le=\"+Inf\"} %llu\n",
                        rs[k]->ops->name, cum);
        }
        fprintf(out, "kcqrs_projector_batch_size_sum{target=\"%s\"} %llu\n", rs[k]->ops->name,
                (unsigned long long)atomic_load(&rs[k]->size_sum));
        fprintf(out, "kcqrs_projector_batch_size_count{target=\"%s\"} %llu\n", rs[k]->ops->name,
                cum);
    }
    FAMILY(out, "kcqrs_projector_apply_seconds", "histogram",
           "Time the target took to apply and commit one batch.");
    for (size_t k = 0; k < n; k++) {
        unsigned long long cum = 0;
        for (size_t b = 0; b <= NLAT; b++) {
            cum += atomic_load(&rs[k]->lat_hist[b]);
            if (b < NLAT)
                fprintf(out, "kcqrs_projector_apply_seconds_bucket{target=\"%s\",le=\"%g\"} %llu\n",
                        rs[k]->ops->name, lat_bounds[b], cum);
            else
                fprintf(out,
                        "kcqrs_projector_apply_seconds_bucket{target=\"%s\",le=\"+Inf\"} %llu\n",
                        rs[k]->ops->name, cum);
        }
        fprintf(out, "kcqrs_projector_apply_seconds_sum{target=\"%s\"} %.6f\n", rs[k]->ops->name,
                (double)atomic_load(&rs[k]->lat_sum_us) / 1e6);
        fprintf(out, "kcqrs_projector_apply_seconds_count{target=\"%s\"} %llu\n", rs[k]->ops->name,
                cum);
    }
}
