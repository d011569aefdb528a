/*
 * proj_runner_int.h — the inside of a runner (proj_runner.h), shared by its
 * files; not for other callers (the unit tests of the record checks include
 * it):
 *
 *   proj_runner.c          life (start, stop), the runner thread's loop
 *                          (open, load offsets, gather, hand over, retry),
 *                          the apply thread and its hand-over slot;
 *   proj_runner_consumer.c the consumer (fresh per open, assigned at the
 *                          stored offsets), partition indexes, end offsets,
 *                          watermarks;
 *   proj_runner_batch.c    gathering a batch, checking its records, dead
 *                          letters;
 *   proj_runner_metrics.c  progress, readiness, Prometheus metrics.
 *
 * Threads: see proj_runner.h (which fields each thread writes is said at the
 * struct).
 */
#ifndef PROJ_RUNNER_INT_H
#define PROJ_RUNNER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "kq_kafka.h"
#include "kq_time.h"
#include "proj_dlq.h"
#include "proj_runner.h"

#define NTOPICS 3 /* resource, workflow, run events */

#define NLAT 12  /* buckets of kcqrs_projector_apply_seconds (proj_runner_metrics.c) */
#define NSIZE 10 /* buckets of kcqrs_projector_batch_size */

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
    atomic_int standby; /* 1 while open() says another process is the active one (KQ_EBUSY) */

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
    struct kq_keyring *keys; /* opens sealed personal data; made at the first one */
    void *t;
    int64_t *end; /* exit_at_end targets, -1 until known */
    int have_end;
    int64_t *start;        /* per partition: stored offset when the target first opened */
    atomic_int have_goal;  /* end[] and start[] are set (progress) */
    atomic_int failed;     /* replay: the error that ended the thread */
    char failed_err[1024]; /* written before `failed` */
    atomic_int pii_failed; /* replay: a sealed record did not open (checker thread) */
    char pii_err[768];     /* written before `pii_failed` */
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
    atomic_ullong missing_keys; /* records refused: a data key missing, subject not erased */
    atomic_ullong size_hist[NSIZE + 1], size_sum;
    atomic_ullong lat_hist[NLAT + 1], lat_sum_us;
};

/* 1 while the apply thread holds a batch it has not finished. */
static inline int proj_runner_apply_busy(const proj_runner *r)
{
    return r->inflight != NULL && !atomic_load(&((proj_runner *)r)->done);
}

/* proj_runner_consumer.c (runner thread) */
int proj_runner_part_index(const proj_runner *r, const char *topic, int32_t partition);
int proj_runner_msg_index(proj_runner *r, const rd_kafka_message_t *m);
int proj_runner_consumer_open(proj_runner *r, char *err, size_t errlen);
void proj_runner_consumer_close(proj_runner *r);
int proj_runner_query_ends(proj_runner *r, char *err, size_t errlen);
void proj_runner_refresh_watermarks(proj_runner *r);
void proj_runner_query_watermarks(proj_runner *r);

/* proj_runner_batch.c (runner thread; dead_letter also from the apply thread inside apply) */
void proj_runner_gather(proj_runner *r);
void proj_runner_check_batch(proj_runner *r, rbatch *b);
int proj_runner_dead_letter_batch(proj_runner *r, rbatch *b, char *err, size_t errlen);
void proj_runner_batch_release(rbatch *b);
int proj_runner_dead_letter(void *arg, const proj_event *ev, const char *target,
                            const char *reason);
/*
 * Check one record consumed from the topic of aggregate `type` (np
 * partitions per topic), given as ev (topic, partition, offset, value, key
 * filled by the caller, views into its message): it must decode, belong to
 * the topic's aggregate type, carry the key "<id>/<version:020>" of its
 * envelope and lie in its aggregate's partition. NULL when it is valid
 * (ev->env decoded, ev->decoded = 1), else the reason (static text or why;
 * ev->decoded = 0). Pure: the same record gives the same answer.
 */
const char *proj_runner_check_event(proj_event *ev, ev_aggregate_type type, int np, char *why,
                                    size_t whylen);

/* proj_runner_metrics.c */
void proj_runner_observe(proj_runner *r, size_t n, long long us); /* runner thread */

#endif
