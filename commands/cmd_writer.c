/*
 * cmd_writer.c — the writer thread: batch, decide, produce, commit, apply, answer; see
 * cmd_writer.h. The parts live in their own modules: the queue (cmd_queue.h), the
 * producers (cmd_producer.h), catch-up (cmd_catchup.h), the chain heads (cmd_chain.h),
 * event building and apply (cmd_aggregate.h), answers (cmd_answer.h), metrics (cmd_wmetrics.h).
 */
#include "cmd_writer.h"
#include "cmd_answer.h"
#include "cmd_aggregate.h"
#include "cmd_catchup.h"
#include "cmd_chain.h"
#include "cmd_snapshot.h"
#include "cmd_wmetrics.h"
#include "ev_pii.h"
#include "ev_secret.h"
#include "kq_err.h"
#include "kq_keyring.h"
#include "kq_time.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_rand.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct cmd_writer {
    const kq_config *cfg;
    char topics[CMD_TOPICS][KQ_KAFKA_TOPIC_MAX]; /* by topic index */
    const char *topic_ptrs[CMD_TOPICS];
    char *snapshot_dir;
    size_t map_size;

    cmd_queue q; /* also the gate: ready, fenced, stopping, why */
    int started;
    pthread_t thread;

    /* writer-thread state */
    cmd_producers prod;
    int need_catch_up;
    int abort_pending;  /* the failed transaction still needs its abort */
    int settle_pending; /* a commit timed out: ask again before recreating (finish_settle) */
    cmd_state st;
    cmd_batch batch;
    ev_fb_builder fb;
    uint64_t events_at_snapshot;
    cmd_snapshotter *snap; /* NULL = no snapshots */
    cmd_chain chain;
    /* Delivery reports of the open transaction, in produce order (the
     * messages' opaque). Writer-owned, not in the items: a report that comes
     * late (an aborted transaction's purged messages, served during the
     * abort after the batch was answered and its items freed) lands here. */
    cmd_item_event *slots;
    size_t nslots, slots_cap;

    kq_keyring *keys; /* borrowed; NULL = secrets are not sealed */
    /* sealed values whose data key is missing (st.missing_keys, published for /ready
     * and /metrics: the subject is written once before the count turns non-zero) */
    atomic_uint_fast64_t missing_keys;
    char missing_subject[160];
    cmd_wmetrics m;
    double last_commit_s; /* begin-to-commit time of the last transaction */
    size_t last_appended; /* commands answered after it */
};

static void answer_unavailable(cmd_writer *w, cmd_item *it, const char *msg)
{
    cmd_answer_unavailable(it, atomic_load(&w->q.fenced), msg);
}

/* Answer everything queued with 503 (while not ready). */
static void fail_queued(cmd_writer *w, const char *msg)
{
    cmd_item *it, *nx;

    for (it = cmd_queue_take_all(&w->q); it; it = nx) {
        nx = it->next;
        answer_unavailable(w, it, msg);
    }
}

int cmd_writer_submit(cmd_writer *w, cmd_item *it, cmd_result *refused)
{
    return cmd_queue_submit(&w->q, it, refused);
}

int cmd_writer_submit_group(cmd_writer *w, cmd_item **items, size_t n, cmd_result *refused)
{
    if (n > cmd_writer_batch_max(w)) {
        memset(refused, 0, sizeof *refused);
        refused->status = 500;
        refused->code = "internal";
        refused->message = "more commands than one transaction holds";
        return KQ_EINVAL;
    }
    return cmd_queue_submit_group(&w->q, items, n, refused);
}

const char *cmd_writer_topic(const cmd_writer *w, int t)
{
    return t >= 0 && t < CMD_TOPICS ? w->topics[t] : "?";
}

size_t cmd_writer_batch_max(const cmd_writer *w)
{
    return (size_t)w->cfg->batch_max;
}

/* ------------------------------------------------------------------ catch-up */

static int catch_up(cmd_writer *w, char *errstr, size_t errlen)
{
    cmd_catchup c = {.cfg = w->cfg,
                     .topics = w->topic_ptrs,
                     .st = &w->st,
                     .chain = &w->chain,
                     .metrics = &w->m,
                     .track = w->snap != NULL};
    int rc = cmd_catchup_run(&c, w->prod.cur, errstr, errlen);
    if (c.reset)
        w->events_at_snapshot = (uint64_t)-1; /* snapshot again at the next chance */
    return rc;
}

/* ------------------------------------------------------------------ batches */

/* Produce the command's events (d.nevents, consecutive versions) to its
 * aggregate's topic, each chained on the partition's head. */
static int produce_item(cmd_writer *w, cmd_item *it, char *errstr, size_t errlen)
{
    const cmd_command *c = &it->cmd;
    int t = cmd_kind_topic(c->kind), part, klen, rc;
    int64_t occurred;
    char key[EV_ID_MAX + 32], tp[KQ_TRACEPARENT_LEN + 1];
    cmd_head *head;

    part = kq_kafka_partition_for(c->id, strlen(c->id), w->st.partitions);
    if (part < 0)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "bad id %s", c->id);
    if (it->d.nevents < 1 || it->d.nevents > CMD_MAX_EVENTS)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "bad event count %d", it->d.nevents);
    head = cmd_chain_head(&w->chain, t, part);
    occurred = kq_time_now_us();
    cmd_item_values_free(it);
    for (int i = 0; i < it->d.nevents; i++) {
        cmd_item_event *ie = &it->ev[i], *slot;
        ev_envelope e, scratch;
        uint8_t sealbuf[EV_SECRET_BUF], piibuf[EV_PII_BUF];
        const uint8_t *buf;
        size_t len;

        if ((rc = cmd_aggregate_build(c, &it->d, i, &e, &scratch, errstr, errlen)) != 0)
            return rc;
        if (kq_uuid_v4(e.event_id.bytes) != 0)
            return kq_seterr(errstr, errlen, KQ_EIO, "no randomness for an event id");
        /* a secret goes to the log sealed (ev_secret.h); sealbuf lives until encoded */
        if ((rc = ev_secret_seal(&e, w->keys, sealbuf, sizeof sealbuf, errstr, errlen)) != 0 ||
            (rc = ev_pii_seal(&e, w->keys, piibuf, sizeof piibuf, errstr, errlen)) != 0)
            return rc;
        e.occurred_at_us = occurred;
        if (head->set) {
            e.prev_hash.ptr = head->hash;
            e.prev_hash.len = CMD_CHAIN_HASH_LEN;
        }
        if ((rc = ev_envelope_encode(&w->fb, &e, errstr, errlen)) != 0)
            return rc;
        buf = ev_fb_builder_data(&w->fb, &len);
        klen = kq_kafka_record_key(c->id, e.version, key, sizeof key);
        if (klen < 0)
            return kq_seterr(errstr, errlen, KQ_EINVAL, "bad id %s", c->id);
        /* Applied to the state after commit from these bytes (apply_committed). */
        if ((ie->value = malloc(len)) == NULL)
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        memcpy(ie->value, buf, len);
        ie->len = len;
        /* The next event of this partition chains on this one (restored if the
         * transaction fails: run_transaction). */
        if (cmd_chain_set_head(head, buf, len) != 0)
            return kq_seterr(errstr, errlen, KQ_EIO, "SHA-256 of an envelope failed");
        if (w->nslots >= w->slots_cap)
            return kq_seterr(errstr, errlen, KQ_ERANGE, "too many events in one transaction");
        slot = &w->slots[w->nslots++];
        memset(slot, 0, sizeof *slot);
        slot->offset = -1;
        ie->delivered = 0;
        ie->dr_err = 0;
        ie->offset = -1;
        if (kq_trace_valid(&it->span.ctx))
            kq_trace_format(&it->span.ctx, tp);
        if ((rc = kq_kafka_produce_traced(w->prod.cur, w->topics[t], part, key, (size_t)klen, buf,
                                          len, ev_event_type_name(e.payload_type),
                                          kq_trace_valid(&it->span.ctx) ? tp : NULL, slot, errstr,
                                          errlen)) != 0)
            return rc;
    }
    it->partition = part;
    it->offset = -1;
    return 0;
}

/* Stop accepting commands until the producers are recreated and the log read again. */
static void recover(cmd_writer *w, const char *why)
{
    cmd_producers_drop(&w->prod);
    w->need_catch_up = 1;
    atomic_store(&w->q.ready, 0);
    cmd_queue_set_why(&w->q, "recovering from a Kafka error: %s", why);
}

/* Another instance holds the transactional ids: stop accepting commands for good. */
static void became_fenced(cmd_writer *w, const char *errstr)
{
    char id[KQ_KAFKA_TOPIC_MAX + 32];

    atomic_store(&w->q.fenced, 1);
    atomic_store(&w->q.ready, 0);
    cmd_producers_txn_id(&w->prod, w->prod.k, id, sizeof id);
    cmd_queue_set_why(&w->q,
                      "fenced: another kcqrs-commands instance took over transactional.id %s", id);
    kq_log_error("fenced: another instance with transactional.id %s is the writer now "
                 "(%s); this instance no longer accepts commands",
                 id, errstr);
    cmd_producers_drop(&w->prod);
}

/*
 * The data keys of the resources this batch creates (personal data is sealed
 * under them, events/ev_pii.h), written to the key topic together before any
 * event: one round trip per batch instead of one per create. Keys of other
 * subjects are made one at a time as before (ev_*_seal).
 */
static int create_keys(cmd_writer *w, cmd_item **items, size_t n, char *errstr, size_t errlen)
{
    char(*subj)[KQ_SUBJECT_MAX + 1];
    const char **list;
    size_t m = 0;
    int rc;

    if (w->keys == NULL || n == 0)
        return 0;
    subj = malloc(n * sizeof *subj);
    list = malloc(n * sizeof *list);
    if (subj == NULL || list == NULL) {
        free(subj);
        free(list);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const cmd_item *it = items[i];
        int nb;
        if (it->d.kind != CMD_D_APPEND || it->d.nevents < 1 ||
            it->d.events[0] != EV_RESOURCE_CREATED || it->cmd.id[0] == '\0')
            continue;
        nb = snprintf(subj[m], sizeof subj[m], "resource/%s", it->cmd.id);
        if (nb > 0 && (size_t)nb < sizeof subj[m]) {
            list[m] = subj[m];
            m++;
        }
    }
    rc = kq_keyring_create_many(w->keys, list, m, errstr, errlen);
    free(subj);
    free(list);
    return rc;
}

/* Commit the open transaction. On failure decides what happens to the producer. */
static int run_transaction(cmd_writer *w, cmd_item **items, size_t n, size_t nappend, char *errstr,
                           size_t errlen)
{
    int rc, needs_abort = 0, committing = 0;
    double t0, tbegin = (kq_time_mono_us() / 1e6);

    cmd_chain_save(&w->chain);
    w->nslots = 0;
    if ((rc = create_keys(w, items, n, errstr, errlen)) != 0) {
        /* nothing produced yet: the batch is answered 503, the producer is fine */
        cmd_chain_restore(&w->chain);
        atomic_fetch_add(&w->m.kafka_errors, 1);
        kq_log_warn("data keys of new resources not written: %s", errstr);
        return rc;
    }
    rc = kq_kafka_txn_begin(w->prod.cur, errstr, errlen);
    if (rc != 0)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (items[i]->d.kind == CMD_D_APPEND &&
            (rc = produce_item(w, items[i], errstr, errlen)) != 0) {
            needs_abort = 1;
            goto fail;
        }
    committing = 1;
    rc = kq_kafka_error_take(rd_kafka_commit_transaction(w->prod.cur, w->cfg->kafka_timeout_ms),
                             "commit transaction", &needs_abort, errstr, errlen);
    if (rc != 0)
        goto fail;
    w->last_commit_s = (kq_time_mono_us() / 1e6) - tbegin;
    cmd_wmetrics_commit(&w->m, w->last_commit_s);
    /* The commit flushed and served the delivery reports; make sure. */
    t0 = (kq_time_mono_us() / 1e6);
    for (;;) {
        size_t got = 0;
        for (size_t k = 0; k < w->nslots; k++)
            got += w->slots[k].delivered != 0;
        if (got == nappend || (kq_time_mono_us() / 1e6) - t0 > 5.0)
            break;
        rd_kafka_poll(w->prod.cur, 10);
    }
    for (size_t i = 0, sl = 0; i < n; i++) {
        cmd_item *it = items[i];
        int bad = 0;
        if (it->d.kind != CMD_D_APPEND)
            continue;
        for (int k = 0; k < it->d.nevents; k++) {
            cmd_item_event *ie = &it->ev[k];
            if (sl < w->nslots) {
                ie->partition = w->slots[sl].partition;
                ie->offset = w->slots[sl].offset;
                ie->delivered = w->slots[sl].delivered;
                ie->dr_err = w->slots[sl].dr_err;
            }
            sl++;
            bad |= !ie->delivered || ie->dr_err || ie->offset < 0;
        }
        if (bad) {
            /* Committed, but we do not know where: re-read the log. */
            kq_log_error("transaction committed without a delivery report; re-reading the log");
            w->need_catch_up = 1;
            break;
        }
        it->partition = it->ev[it->d.nevents - 1].partition;
        it->offset = it->ev[it->d.nevents - 1].offset;
        atomic_fetch_add(&w->m.events_by[cmd_kind_topic(it->cmd.kind)],
                         (uint_fast64_t)it->d.nevents);
    }
    atomic_fetch_add(&w->m.committed, 1);
    atomic_fetch_add(&w->m.events, nappend);
    return 0;
fail:
    /* Nothing of this transaction is chained on: aborted, or (unknown outcome)
     * the catch-up that follows reads whatever did commit and moves the heads. */
    cmd_chain_restore(&w->chain);
    atomic_fetch_add(&w->m.kafka_errors, 1);
    atomic_fetch_add(&w->m.aborted, 1);
    if (rc == KQ_EFENCED) {
        became_fenced(w, errstr);
        return rc;
    }
    if (needs_abort) {
        /* Aborted after the batch is answered (finish_abort), so a slow abort
         * does not delay the 503s. */
        w->abort_pending = 1;
        kq_log_warn("transaction failed, aborting: %s", errstr);
        return rc;
    }
    kq_log_error("transaction outcome unknown or producer unusable: %s", errstr);
    atomic_fetch_add(&w->m.unknown, 1);
    if (rc == KQ_ETIMEDOUT && committing) {
        /* A commit can time out on our side while the broker already fenced us:
         * a writer paused (SIGSTOP, a VM freeze) past the timeout while another
         * instance took over wakes up to its own timer, not to the broker's
         * answer. Recreating the producer now would run init_transactions and
         * fence the new writer in turn. So the batch is answered first
         * (outcome unknown: 503) and then the commit is asked again
         * (finish_settle), as librdkafka allows after a timeout: the broker's
         * answer decides between fenced and recover. */
        w->settle_pending = 1;
        w->need_catch_up = 1;
        atomic_store(&w->q.ready, 0);
        cmd_queue_set_why(&w->q, "recovering from a Kafka error: %s", errstr);
        return rc;
    }
    /* Unknown outcome or unusable producer: start over. The next
     * init_transactions settles the transaction, the re-read tells the outcome. */
    recover(w, errstr);
    return rc;
}

static void finish_abort(cmd_writer *w)
{
    char es[512];
    int rc;

    w->abort_pending = 0;
    if (w->prod.cur == NULL)
        return;
    rc = kq_kafka_txn_abort(w->prod.cur, w->cfg->kafka_timeout_ms, es, sizeof es);
    if (rc == KQ_ETIMEDOUT) /* resumed once: the broker's answer, not our timer, decides */
        rc = kq_kafka_txn_abort(w->prod.cur, 2000, es, sizeof es);
    if (rc == 0)
        return;
    if (rc == KQ_EFENCED) {
        /* The abort is where a writer paused past its delivery timeout learns
         * that another instance took over: recreating the producer would
         * fence that one in turn. */
        became_fenced(w, es);
        return;
    }
    kq_log_error("transaction abort failed: %s; recreating the producer", es);
    recover(w, es);
}

/* Ask again for the outcome of a commit that timed out (run_transaction). */
static void finish_settle(cmd_writer *w)
{
    char es[512];
    int rc, needs_abort = 0, t = w->cfg->kafka_timeout_ms < 2000 ? w->cfg->kafka_timeout_ms : 2000;

    w->settle_pending = 0;
    if (w->prod.cur == NULL)
        return;
    rc = kq_kafka_error_take(rd_kafka_commit_transaction(w->prod.cur, t), "commit transaction",
                             &needs_abort, es, sizeof es);
    if (rc != 0 && needs_abort)
        /* Its records timed out meanwhile: the abort (with its epoch bump) is
         * where the broker tells a zombie it was fenced. */
        rc = kq_kafka_txn_abort(w->prod.cur, t, es, sizeof es);
    if (rc == KQ_EFENCED) {
        became_fenced(w, es);
        return;
    }
    if (rc == 0 && needs_abort) {
        kq_log_warn("the transaction that timed out is aborted; re-reading the log");
        return; /* the producer is usable again; need_catch_up re-reads the log */
    }
    if (rc == 0)
        kq_log_warn(
            "the transaction that timed out committed when asked again; re-reading the log");
    else
        kq_log_warn("the transaction that timed out is still unsettled (%s); recreating the "
                    "producer",
                    es);
    recover(w, rc == 0 ? "a commit timed out" : es);
}

/*
 * Apply a committed item's events to the state from the bytes produced, through
 * the function catch-up applies every record with (cmd_aggregate_apply): the
 * state after a commit is the state a restart reads back from the log. A
 * failure means the two disagree: the log is read again before the next batch.
 */
static void apply_committed(cmd_writer *w, cmd_item *it)
{
    int t = cmd_kind_topic(it->cmd.kind);
    char es[256];

    for (int k = 0; k < it->d.nevents; k++) {
        if (cmd_aggregate_apply(&w->st, t, it->ev[k].value, it->ev[k].len, it->ev[k].partition,
                                it->ev[k].offset, es, sizeof es) < 0) {
            kq_log_error("applying committed event of %s: %s", it->cmd.id, es);
            w->need_catch_up = 1;
            return;
        }
    }
}

/* Decide each item against the state plus the batch overlay; returns the
 * number of events to append. */
static size_t decide_batch(cmd_writer *w, cmd_item **items, size_t n)
{
    size_t nappend = 0;

    for (size_t i = 0; i < n; i++) {
        cmd_decision *d = &items[i]->d;
        if (cmd_batch_decide(&w->st, &w->batch, &items[i]->cmd, i, d) != 0) {
            cmd_decision_clear(d);
            memset(d, 0, sizeof *d);
            d->kind = CMD_D_ERROR;
            d->status = 500;
            d->code = "internal";
            snprintf(d->message, sizeof d->message, "out of memory");
        }
        if (d->kind == CMD_D_APPEND)
            nappend += (size_t)d->nevents;
    }
    return nappend;
}

/* Why a transaction failed, as the 503's error code: a record refused for lack
 * of in-sync replicas (min.insync.replicas), or any other Kafka failure. */
static const char *failure_code(const cmd_writer *w)
{
    for (size_t k = 0; k < w->nslots; k++)
        if (w->slots[k].dr_err == RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS ||
            w->slots[k].dr_err == RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND)
            return "not_enough_replicas";
    return "kafka_unavailable";
}

static void process_batch(cmd_writer *w, cmd_item **items, size_t n)
{
    char errstr[512];
    size_t nappend, m = 0;
    int failed = 0;
    const char *fail_code = NULL;
    /* A command is answered within KCQRS_KAFKA_TIMEOUT_MS of its arrival: the
     * transaction may take the delivery timeout, so it may wait the rest. */
    double now = (kq_time_mono_us() / 1e6),
           maxwait = (w->cfg->kafka_timeout_ms - kq_kafka_delivery_timeout_ms(w->cfg)) / 1000.0;

    /* Commands that waited too long to finish within the Kafka bound are not tried. */
    for (size_t i = 0; i < n; i++) {
        cmd_item *it = items[i];
        double q = (double)it->t_queued.tv_sec + (double)it->t_queued.tv_nsec / 1e9;
        if (now - q > maxwait)
            answer_unavailable(w, it, "the command waited too long for the writer; retry");
        else
            items[m++] = it;
    }
    n = m;
    if (n == 0)
        return;
    cmd_batch_reset(&w->batch);
    nappend = decide_batch(w, items, n);
    if (nappend > 0) {
        cmd_wmetrics_batch(&w->m, nappend);
        if (run_transaction(w, items, n, nappend, errstr, sizeof errstr) != 0) {
            failed = 1;
            fail_code = failure_code(w);
        }
    }
    if (!failed && !w->need_catch_up)
        for (size_t i = 0; i < n; i++)
            if (items[i]->d.kind == CMD_D_APPEND)
                apply_committed(w, items[i]);
    cmd_batch_reset(&w->batch);
    cmd_answer_batch(w->topic_ptrs, &w->st, items, n, failed, fail_code, atomic_load(&w->q.fenced));
    if (w->abort_pending || w->settle_pending) {
        /* An abort or a second commit may take seconds (longer than a queued
         * command's KCQRS_KAFKA_TIMEOUT_MS allows) while Kafka is failing:
         * the gate stays closed meanwhile, so those queued and those that
         * arrive get their 503 now instead of after it. */
        atomic_store(&w->q.ready, 0);
        cmd_queue_set_why(&w->q, "recovering from a Kafka error: %s", errstr);
        fail_queued(w, "Kafka is unavailable; retry");
        if (w->abort_pending)
            finish_abort(w);
        if (w->settle_pending)
            finish_settle(w);
        if (w->prod.cur != NULL && !w->need_catch_up && !atomic_load(&w->q.fenced)) {
            atomic_store(&w->q.ready, 1);
            cmd_queue_set_why(&w->q, "ready");
        }
    }
    if (nappend > 0)
        cmd_producers_next(&w->prod);
    w->last_appended = failed ? 0 : n;
}

/*
 * Group commit's linger before the next batch. Under closed-loop load the
 * clients just answered send their next command at once; without waiting
 * for them the next transaction holds only those that queued during the
 * commit, and the two halves take turns, each waiting a whole extra commit.
 * So when commits are slow the writer waits up to half the last commit time
 * (at most KCQRS_BATCH_LINGER_MAX_US, at least KCQRS_BATCH_LINGER_US) for as
 * many commands as it just answered: one transaction per round instead of
 * two, bigger transactions when commits are slow. 0 turns it off.
 */
static size_t take_batch(cmd_writer *w, cmd_item **items, size_t max, int *stopping)
{
    double linger = w->cfg->batch_linger_us / 1e6, adaptive = w->last_commit_s / 2;
    double cap = w->cfg->batch_linger_max_us / 1e6;
    size_t more = max;

    if (cap > 0 && w->last_appended > 0) {
        if (adaptive > cap)
            adaptive = cap;
        if (adaptive > linger)
            linger = adaptive;
        more = w->last_appended;
    }
    return cmd_queue_take_more(&w->q, items, max, more, 0.2, linger, stopping);
}

/*
 * Hand the changes since the last snapshot to the snapshot thread (which
 * writes them to LMDB on its own; see cmd_snapshot.h). `force`: whatever
 * changed, e.g. after catch-up; `wait`: and wait until it is written (stop).
 */
static void maybe_snapshot(cmd_writer *w, int force, int wait)
{
    char es[512];
    double t0;
    uint64_t us;
    int full = 0;

    /* a missing data key: events were skipped; a snapshot past them would hide them */
    if (w->snap == NULL || w->need_catch_up || w->st.missing_keys > 0)
        return;
    if (!force && w->st.events - w->events_at_snapshot < (uint64_t)w->cfg->snapshot_every)
        return;
    if (w->st.events != w->events_at_snapshot || w->st.delta.full || w->st.delta.len > 0) {
        t0 = (kq_time_mono_us() / 1e6);
        if (cmd_snapshotter_submit(w->snap, &w->st, w->chain.heads, &full) != 0) {
            kq_log_error("snapshot: cannot hand over the changes (out of memory); the next "
                         "snapshot is a full one");
            return;
        }
        us = (uint64_t)(((kq_time_mono_us() / 1e6) - t0) * 1e6);
        cmd_wmetrics_handover(&w->m, us);
        if (full)
            kq_log_info("snapshot: handed over the whole state (%zu resources, %zu workflows, "
                        "%zu runs) in %.3f ms",
                        cmd_state_resource_count(&w->st), cmd_state_workflow_count(&w->st),
                        cmd_state_run_count(&w->st), us / 1e3);
        w->events_at_snapshot = w->st.events;
    }
    if (wait && cmd_snapshotter_flush(w->snap, es, sizeof es) != 0)
        kq_log_error("snapshot to %s is behind the state (it is still in the log): %s",
                     w->snapshot_dir, es);
}

/* Publish st.missing_keys to /ready and /metrics; log the first one. */
static void publish_missing_keys(cmd_writer *w)
{
    uint64_t n = w->st.missing_keys, was = atomic_load(&w->missing_keys);

    if (n == was)
        return;
    if (was == 0) {
        memcpy(w->missing_subject, w->st.missing_key_subject, sizeof w->missing_subject);
        kq_log_error("data key of %s is missing from the key topic and the subject was not "
                     "erased: its sealed values cannot be read (/ready answers 503; no snapshot "
                     "is written until a restart reads them with the key back)",
                     w->missing_subject);
    }
    atomic_store(&w->missing_keys, n);
}

/* The workflows' secrets a snapshot holds sealed open once the keys are read
 * (cmd_workflow.h). */
static void open_snapshot_secrets(cmd_writer *w)
{
    cmd_workflow_open_ctx c;

    if (cmd_workflow_open_sealed(&w->st, w->keys, &c) != 0) {
        kq_log_error("snapshot: out of memory opening the workflows' secrets");
        return;
    }
    if (c.opened > 0 || c.resealed > 0)
        kq_log_info("snapshot: opened %zu sealed workflow secrets, sealed %zu plain ones of an "
                    "older snapshot",
                    c.opened, c.resealed);
    if (c.failed > 0)
        kq_log_error("snapshot: %zu workflow secrets do not open (webhooks of those workflows are "
                     "refused), the first: %s: %s",
                     c.failed, c.subject, c.errstr);
}

/* Read the key topic's new keys, open the producers if needed and read the log
 * to its end. 0 = ready. */
static int get_ready(cmd_writer *w, double backoff)
{
    char errstr[512];

    if (w->keys != NULL && !kq_keyring_loaded(w->keys)) { /* later keys are this writer's own */
        int rc = kq_keyring_load(w->keys, errstr, sizeof errstr);
        if (rc == KQ_ECONFIG) {
            /* a wrong KEK, or one without a version the key topic needs: nothing sealed
             * could be read or written. Found before the producers would fence an older
             * instance that has the right one. */
            kq_log_error("stopping: %s", errstr);
            _exit(2);
        }
        if (rc != 0) {
            cmd_queue_set_why(&w->q, "reading the key topic: %s", errstr);
            kq_log_warn("writer not ready: %s (retrying in %.1f s)", errstr, backoff);
            return KQ_EKAFKA;
        }
        open_snapshot_secrets(w);
    }
    if (w->prod.cur == NULL && cmd_producers_open(&w->prod, errstr, sizeof errstr) != 0) {
        if (atomic_load(&w->q.fenced))
            return KQ_EFENCED;
        cmd_queue_set_why(&w->q, "Kafka producer: %s", errstr);
        kq_log_warn("writer not ready: %s (retrying in %.1f s)", errstr, backoff);
        return KQ_EKAFKA;
    }
    if (catch_up(w, errstr, sizeof errstr) != 0) {
        cmd_queue_set_why(&w->q, "reading the log: %s", errstr);
        kq_log_warn("writer not ready: %s (retrying in %.1f s)", errstr, backoff);
        w->need_catch_up = 1;
        return KQ_EKAFKA;
    }
    w->need_catch_up = 0;
    publish_missing_keys(w);
    return 0;
}

/* Sleep up to `s` seconds, waking early when a stop is asked. */
static void backoff_sleep(cmd_writer *w, double s)
{
    double until = (kq_time_mono_us() / 1e6) + s;
    while ((kq_time_mono_us() / 1e6) < until && !cmd_queue_stopping(&w->q)) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void *writer_main(void *arg)
{
    cmd_writer *w = arg;
    size_t max = (size_t)w->cfg->batch_max;
    cmd_item **items = calloc(max, sizeof *items);
    double backoff = 0.5;
    int stopping = 0;

    if (items == NULL) {
        kq_log_error("writer: out of memory");
        return NULL;
    }
    while (!atomic_load(&w->q.fenced)) {
        if (w->prod.cur == NULL || w->need_catch_up) {
            atomic_store(&w->q.ready, 0);
            if (cmd_queue_stopping(&w->q))
                break;
            fail_queued(w, "Kafka is unavailable; retry");
            int rc = get_ready(w, backoff);
            if (rc == KQ_EFENCED)
                break;
            if (rc != 0) {
                fail_queued(w, "Kafka is unavailable; retry");
                backoff_sleep(w, backoff);
                backoff = backoff * 2 > 5.0 ? 5.0 : backoff * 2;
                continue;
            }
            backoff = 0.5;
            maybe_snapshot(w, 1, 0); /* what was read need not be read again */
            atomic_store(&w->q.ready, 1);
            cmd_queue_set_why(&w->q, "ready");
            kq_log_info("writer ready: transactional.id %s (and %d more, .1 to .%d, used in turn), "
                        "%zu resources, %zu workflows, %zu runs",
                        w->prod.txn_id, CMD_WRITER_PRODUCERS - 1, CMD_WRITER_PRODUCERS - 1,
                        cmd_state_resource_count(&w->st), cmd_state_workflow_count(&w->st),
                        cmd_state_run_count(&w->st));
            continue;
        }
        size_t n = take_batch(w, items, max, &stopping);
        if (n > 0) {
            process_batch(w, items, n);
            publish_missing_keys(w);
        } else if (stopping)
            break;
        else /* idle: expired keys and finished runs go (cmd_state.h, "Expiry") */
            cmd_state_expire(&w->st, CMD_EXPIRE_IDLE);
        maybe_snapshot(w, 0, 0);
    }
    atomic_store(&w->q.ready, 0);
    fail_queued(w, atomic_load(&w->q.fenced) ? "fenced" : "the command service is shutting down");
    maybe_snapshot(w, 1, 1);
    free(items);
    return NULL;
}

/* ------------------------------------------------------------------ life cycle */

/* Load the snapshot into w->st and the chain (or start empty), then start the
 * snapshot thread. */
static int load_snapshot(cmd_writer *w, char *errstr, size_t errlen)
{
    char es[512];
    int rc, loaded;

    rc = cmd_snapshot_load(w->snapshot_dir, w->map_size, &w->st, w->chain.heads, w->topic_ptrs, es,
                           sizeof es);
    loaded = rc == 0;
    if (rc == 0) {
        kq_log_info("loaded snapshot from %s: %zu resources, %zu workflows, %zu runs, %zu "
                    "idempotency keys",
                    w->snapshot_dir, cmd_state_resource_count(&w->st),
                    cmd_state_workflow_count(&w->st), cmd_state_run_count(&w->st),
                    cmd_state_idem_count(&w->st));
    } else {
        if (rc != KQ_ENOTFOUND)
            kq_log_warn("ignoring snapshot in %s: %s (reading the log from the start)",
                        w->snapshot_dir, es);
        cmd_chain_reset(&w->chain);
        if ((rc = cmd_state_reinit(&w->st)) != 0)
            return kq_seterr(errstr, errlen, rc, "out of memory");
    }
    /* Loaded: nothing is new but the deletions of what expired since the
     * snapshot was written. Else the fresh state's delta stays full, so its
     * first snapshot empties whatever the directory holds (an ignored
     * snapshot of an older format or another log). */
    if (loaded)
        cmd_state_delta_loaded(&w->st);
    cmd_state_track(&w->st, 1);
    w->events_at_snapshot = w->st.events;
    return cmd_snapshotter_new(w->snapshot_dir, w->map_size, w->topic_ptrs, &w->snap, errstr,
                               errlen);
}

int cmd_writer_new(const cmd_writer_options *opts, cmd_writer **out, char *errstr, size_t errlen)
{
    cmd_writer *w = calloc(1, sizeof *w);
    int rc;

    if (w == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    w->cfg = opts->cfg;
    w->keys = opts->keys;
    w->map_size = opts->snapshot_map_size ? opts->snapshot_map_size : ((size_t)1 << 30);
    for (int t = 0; t < CMD_TOPICS; t++) {
        kq_config_topic(w->cfg, cmd_aggregate_get(t)->name, w->topics[t], sizeof w->topics[t]);
        w->topic_ptrs[t] = w->topics[t];
    }
    cmd_producers_init(&w->prod, w->cfg, w->topic_ptrs, opts->transactional_id,
                       opts->skip_topic_setup);
    cmd_queue_init(&w->q, (size_t)w->cfg->batch_max * 64, "starting: connecting to Kafka");
    ev_fb_builder_init(&w->fb);
    w->need_catch_up = 1;
    if ((rc = cmd_state_init(&w->st, w->cfg->partitions)) != 0 ||
        (rc = cmd_batch_init(&w->batch)) != 0 ||
        (rc = cmd_chain_init(&w->chain, w->cfg->partitions)) != 0) {
        cmd_writer_free(w);
        return kq_seterr(errstr, errlen, rc, "out of memory");
    }
    /* Idempotency-Keys and finished runs are kept this long (cmd_state.h, "Expiry"). */
    cmd_state_set_ttl(&w->st, (int64_t)w->cfg->idempotency_ttl_s * 1000000);
    w->slots_cap = (size_t)(w->cfg->batch_max > 0 ? w->cfg->batch_max : 1) * CMD_MAX_EVENTS;
    w->slots = calloc(w->slots_cap, sizeof *w->slots);
    if (w->slots == NULL) {
        cmd_writer_free(w);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    if (opts->snapshot_dir != NULL) {
        if ((w->snapshot_dir = strdup(opts->snapshot_dir)) == NULL) {
            cmd_writer_free(w);
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        }
        if ((rc = load_snapshot(w, errstr, errlen)) != 0) {
            cmd_writer_free(w);
            return rc;
        }
    }
    w->st.keys = w->keys; /* apply opens sealed secrets (cmd_aggregate_apply) */
    *out = w;
    return 0;
}

int cmd_writer_start(cmd_writer *w, char *errstr, size_t errlen)
{
    int e = pthread_create(&w->thread, NULL, writer_main, w);
    if (e != 0)
        return kq_seterr(errstr, errlen, KQ_EIO, "pthread_create: %s", strerror(e));
    w->started = 1;
    return 0;
}

int cmd_writer_ready(cmd_writer *w, char *why, size_t whylen)
{
    uint64_t n;

    if (!cmd_queue_ready(&w->q, why, whylen))
        return 0;
    if ((n = atomic_load(&w->missing_keys)) > 0) {
        snprintf(why, whylen,
                 "data key of %s is missing from the key topic (not erased): %llu sealed values "
                 "could not be read",
                 w->missing_subject, (unsigned long long)n);
        return 0;
    }
    return 1;
}

int cmd_writer_fenced(cmd_writer *w)
{
    return atomic_load(&w->q.fenced);
}

const cmd_state *cmd_writer_state(const cmd_writer *w)
{
    return &w->st;
}

void cmd_writer_metrics(cmd_writer *w, FILE *f)
{
    cmd_wmetrics_print(&w->m, f, w->snap, atomic_load(&w->q.ready), atomic_load(&w->q.fenced));
    fprintf(f,
            "# HELP kcqrs_commands_missing_data_keys_total Sealed values not read: their "
            "subject's data key is missing and the subject was not erased.\n"
            "# TYPE kcqrs_commands_missing_data_keys_total counter\n"
            "kcqrs_commands_missing_data_keys_total %llu\n",
            (unsigned long long)atomic_load(&w->missing_keys));
}

void cmd_writer_stop(cmd_writer *w)
{
    if (w == NULL || !w->started)
        return;
    cmd_queue_stop(&w->q);
    pthread_join(w->thread, NULL);
    w->started = 0;
}

void cmd_writer_free(cmd_writer *w)
{
    if (w == NULL)
        return;
    cmd_writer_stop(w);
    cmd_snapshotter_free(w->snap);
    cmd_producers_drop(&w->prod);
    cmd_batch_free(&w->batch);
    cmd_state_free(&w->st);
    cmd_chain_free(&w->chain);
    free(w->slots);
    ev_fb_builder_free(&w->fb);
    cmd_queue_destroy(&w->q);
    free(w->snapshot_dir);
    free(w);
}
