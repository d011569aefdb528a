/*
 * proj_runner_batch.c — a runner's batches: gathering consumed records
 * (prefetched chunks, deadline, end of partition, a replay's end), checking
 * every record (proj_runner_check_event), the offsets a batch covers, and
 * dead letters (the records refused here, durably before the batch is
 * applied; the events a target refuses, from inside its apply). Part of the
 * runner (proj_runner_int.h); the runner thread, except dead letters sent
 * from the apply thread inside apply.
 */
#include "proj_runner_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proj_pii.h"
#include "kq_err.h"
#include "kq_log.h"

#define POLL_IDLE_MS 100
#define BUSY_POLL_MS 2 /* poll step while a batch is being applied */

int proj_runner_dead_letter(void *arg, const proj_event *ev, const char *target, const char *reason)
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

const char *proj_runner_check_event(proj_event *ev, ev_aggregate_type type, int np, char *why,
                                    size_t whylen)
{
    char err[256];
    size_t idlen = 0;
    int64_t kver = 0;
    int part;

    ev->decoded = 0;
    if (ev->value == NULL || ev->len == 0)
        return "empty value (tombstone or null)";
    if (ev_envelope_decode(ev->value, ev->len, &ev->env, err, sizeof err) != 0) {
        snprintf(why, whylen, "undecodable envelope: %s", err);
        return why;
    }
    if (ev->env.aggregate_type != type || ev_event_aggregate_type(ev->env.payload_type) != type) {
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
    if (ev->key == NULL || kq_kafka_record_key_parse(ev->key, ev->keylen, &idlen, &kver) != 0)
        return "record key is not <aggregate id>/<version:020>";
    if (idlen != ev->env.aggregate_id.len ||
        memcmp(ev->key, ev->env.aggregate_id.ptr, idlen) != 0 || kver != ev->env.version)
        return "record key does not match the envelope's aggregate id and version";
    part = kq_kafka_partition_for(ev->env.aggregate_id.ptr, ev->env.aggregate_id.len, np);
    if (part != ev->partition) {
        snprintf(why, whylen, "aggregate belongs to partition %d, found in %" PRId32, part,
                 ev->partition);
        return why;
    }
    ev->decoded = 1;
    return NULL;
}

static const ev_aggregate_type topic_types[NTOPICS] = {EV_AGG_RESOURCE, EV_AGG_WORKFLOW,
                                                       EV_AGG_RUN};

/* Record k of batch b as an event (views into its message), checked by
 * proj_runner_check_event: NULL or why it is refused. */
static const char *check(proj_runner *r, rbatch *b, size_t k, char *why, size_t whylen)
{
    const rd_kafka_message_t *m = b->msgs[k];
    proj_event *ev = &b->ev[k];
    int ti = b->msg_part[k] / r->np;
    const char *bad;

    free(ev->plain);
    memset(ev, 0, sizeof *ev);
    ev->topic = r->topics[ti];
    ev->partition = m->partition;
    ev->offset = m->offset;
    ev->timestamp_ms = rd_kafka_message_timestamp(m, NULL);
    ev->value = m->payload;
    ev->len = m->len;
    ev->key = m->key;
    ev->keylen = m->key_len;
    if (kq_trace_exporting()) {
        char tp[KQ_TRACEPARENT_LEN + 16];
        ev->has_trace = kq_kafka_header_string(m, KQ_TRACE_HEADER, tp, sizeof tp) == 0 &&
                        kq_trace_parse(tp, &ev->trace) == 0;
    }
    if ((bad = proj_runner_check_event(ev, topic_types[ti], r->np, why, whylen)) != NULL)
        return bad;
    return proj_pii_open(ev, &r->keys, r->cfg, r->ops->name, why, whylen);
}

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
void proj_runner_batch_release(rbatch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        rd_kafka_message_destroy(b->msgs[i]);
        free(b->ev[i].plain);
        b->ev[i].plain = NULL;
    }
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
        if ((i = proj_runner_msg_index(r, m)) >= 0) {
            atomic_store(&r->eof_once[i], 1);
            if (m->offset > cur_next(r, i)) {
                if (b->n == 0 && !*eofs)
                    *deadline = kq_time_mono_ms() + r->cfg->proj_batch_ms;
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
    i = proj_runner_msg_index(r, m);
    if (i < 0 || m->offset < cur_next(r, i)) { /* not ours, or already applied */
        rd_kafka_message_destroy(m);
        return;
    }
    if (r->replay && r->have_end && m->offset >= r->end[i]) { /* past the end: stop there */
        if (cur_next(r, i) < r->end[i]) {
            if (b->n == 0 && !*eofs)
                *deadline = kq_time_mono_ms() + r->cfg->proj_batch_ms;
            touch(r, i, r->end[i]);
            *eofs = 1;
        }
        rd_kafka_message_destroy(m);
        return;
    }
    if (b->n == 0 && !*eofs)
        *deadline = kq_time_mono_ms() + r->cfg->proj_batch_ms;
    touch(r, i, m->offset + 1);
    b->msg_part[b->n] = i;
    b->msgs[b->n++] = m;
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
void proj_runner_gather(proj_runner *r)
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
            long long left = deadline - kq_time_mono_ms();
            if (left <= 0) {
                if (!proj_runner_apply_busy(r))
                    break;
                timeout = BUSY_POLL_MS;
            } else {
                timeout = r->inflight != NULL && left > BUSY_POLL_MS ? BUSY_POLL_MS : (int)left;
            }
        } else if (r->inflight != NULL) {
            if (!proj_runner_apply_busy(r))
                break;
            timeout = BUSY_POLL_MS;
        }
        if (got > 0)
            continue;
        if ((m = rd_kafka_consumer_poll(r->c, timeout)) == NULL) {
            proj_runner_refresh_watermarks(
                r); /* rate-limited; the loop's top decides whether to stop */
            continue;
        }
        take(r, m, &eofs, &deadline);
    }
}

/*
 * Checker stage: check every record of the gathered batch (decode, key, topic,
 * partition) and fill what apply will see. Runs while the previous batch is
 * being applied, so it sends no dead letters (the DLQ producer is used by one
 * thread at a time): dead_letter_batch does, once the apply thread is idle.
 */
void proj_runner_check_batch(proj_runner *r, rbatch *b)
{
    char why[512];

    for (size_t k = 0; k < b->n; k++) {
        const char *bad = check(r, b, k, why, sizeof why);

        if (bad == NULL) {
            b->nvalid++;
            continue;
        }
        atomic_fetch_add(&r->poison, 1);
        b->nbad++;
        if (b->ev[k].missing_key) { /* logged once; /ready and a counter show the rest */
            if (atomic_fetch_add(&r->missing_keys, 1) == 0)
                kq_log_error("%s: %s [%" PRId32 "] offset %" PRId64 ": %s", r->ops->name,
                             b->ev[k].topic, b->ev[k].partition, b->ev[k].offset, bad);
        }
        if (r->replay && b->ev[k].pii_failed) {
            /* A rebuild without this event (no KEK file, a lost key, an unreachable
             * key topic) would be switched in short of it: the replay fails instead. */
            if (!atomic_load(&r->pii_failed)) {
                snprintf(r->pii_err, sizeof r->pii_err,
                         "%s [%" PRId32 "] offset %" PRId64 ": %s (a rebuild without it would "
                         "lose the event)",
                         b->ev[k].topic, b->ev[k].partition, b->ev[k].offset, bad);
                atomic_store(&r->pii_failed, KQ_ECONFIG);
            }
        } else if (r->replay) {
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
int proj_runner_dead_letter_batch(proj_runner *r, rbatch *b, char *err, size_t errlen)
{
    char why[512];

    if (r->replay || b->nbad == 0)
        return 0;
    for (size_t k = 0; k < b->n; k++) {
        const char *bad;

        if (b->ev[k].decoded)
            continue;
        bad = check(r, b, k, why, sizeof why);
        if (proj_runner_dead_letter(r, &b->ev[k], r->ops->name, bad != NULL ? bad : "refused") != 0)
            return kq_seterr(err, errlen, KQ_EKAFKA,
                             "dead letter of %s/%" PRId32 "/%" PRId64 " failed", b->ev[k].topic,
                             b->ev[k].partition, b->ev[k].offset);
    }
    return 0;
}
