/*
 * cmd_writer.c — the writer thread: producer, catch-up, group commit; see cmd_writer.h.
 */
#include "cmd_writer.h"
#include "cmd_snapshot.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define NBATCH_BUCKETS 12  /* batch sizes 1, 2, 4, ... 2048, +Inf */
#define NCOMMIT_BUCKETS 12 /* commit seconds 0.5 ms, 1 ms, 2 ms, ... 1.024 s, +Inf */

/* Topics whose chain heads the writer keeps: heads[t * partitions + p]; t is
 * the topic index of cmd_state.h (resource 0, workflow 1, run 2). */
#define CHAIN_TOPICS CMD_TOPICS

static const char *const agg_names[CMD_TOPICS] = {"resource", "workflow", "run"};

struct cmd_writer {
    const kq_config *cfg;
    char topics[CMD_TOPICS][KQ_KAFKA_TOPIC_MAX]; /* by topic index */
    const char *topic_ptrs[CMD_TOPICS];
    char *topic;                          /* topics[CMD_TOPIC_RESOURCE] */
    char txn_id[KQ_KAFKA_TOPIC_MAX + 16]; /* of producer 0; producer k > 0: "<txn_id>.<k>" */
    char *snapshot_dir;
    size_t map_size;
    int skip_topic_setup;

    /* queue (mutex-protected) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    cmd_item *head, *tail;
    size_t qlen;
    int stopping;
    char why[256]; /* reason for not being ready */

    atomic_int ready;
    atomic_int fenced;
    int started;
    pthread_t thread;

    /* writer-thread state */
    rd_kafka_t *producers[CMD_WRITER_PRODUCERS];
    rd_kafka_t *producer; /* producers[cur]: the one the next transaction uses */
    int cur;
    int need_catch_up;
    int abort_pending; /* the failed transaction still needs its abort */
    cmd_state st;
    cmd_batch batch;
    ev_fb_builder fb;
    uint64_t events_at_snapshot;
    cmd_snapshotter *snap; /* NULL = no snapshots */
    cmd_head *heads;       /* [CHAIN_TOPICS * partitions]: chain heads of the committed log
                              plus the open transaction's records */
    cmd_head *heads_saved; /* the heads when the open transaction began */
    /* Delivery reports of the open transaction, in produce order (the
     * messages' opaque). Writer-owned, not in the items: a report that comes
     * late (an aborted transaction's purged messages, served during the
     * abort after the batch was answered and its items freed) lands here. */
    cmd_item_event *slots;
    size_t nslots, slots_cap;

    /* metrics */
    atomic_uint_fast64_t m_events, m_committed, m_aborted, m_kafka_errors, m_unknown;
    atomic_uint_fast64_t m_events_by[CMD_TOPICS]; /* committed events per aggregate type */
    atomic_uint_fast64_t m_batches[NBATCH_BUCKETS + 1];
    atomic_uint_fast64_t m_batch_sum;
    atomic_uint_fast64_t m_commit[NCOMMIT_BUCKETS + 1];
    atomic_uint_fast64_t m_commit_sum_us;   /* begin to commit returned, committed ones */
    atomic_uint_fast64_t m_handover_max_us; /* longest snapshot hand-over on this thread */
    atomic_uint_fast64_t m_handover_sum_us, m_handovers;
};

cmd_item *cmd_item_new(void)
{
    return calloc(1, sizeof(cmd_item));
}

static void item_values_free(cmd_item *it)
{
    for (int i = 0; i < CMD_MAX_EVENTS; i++) {
        free(it->ev[i].value);
        it->ev[i].value = NULL;
        it->ev[i].len = 0;
    }
}

void cmd_item_free(cmd_item *it)
{
    if (it == NULL)
        return;
    item_values_free(it);
    cmd_decision_clear(&it->d);
    cmd_command_clear(&it->cmd);
    free(it);
}

static double mono_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void set_why(cmd_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_why(cmd_writer *w, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&w->mu);
    va_start(ap, fmt);
    vsnprintf(w->why, sizeof w->why, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&w->mu);
}

/* ------------------------------------------------------------------ hash chain */

static size_t heads_size(const cmd_writer *w)
{
    return (size_t)CHAIN_TOPICS * (size_t)w->cfg->partitions * sizeof(cmd_head);
}

static cmd_head *topic_heads(cmd_writer *w, int t)
{
    return w->heads + (size_t)t * (size_t)w->cfg->partitions;
}

/* head = SHA-256 of a record value exactly as stored (a tombstone: of no bytes). */
static int chain_set_head(cmd_head *h, const void *value, size_t len)
{
    unsigned int n = 0;

    if (EVP_Digest(value != NULL ? value : "", value != NULL ? len : 0, h->hash, &n, EVP_sha256(),
                   NULL) != 1 ||
        n != CMD_CHAIN_HASH_LEN) {
        h->set = 0;
        return KQ_EIO;
    }
    h->set = 1;
    return 0;
}

/* ------------------------------------------------------------------ answers */

static void answer_error(cmd_item *it, unsigned status, const char *code, const char *msg,
                         int64_t current, int retry_after)
{
    cmd_result r;
    memset(&r, 0, sizeof r);
    r.status = status;
    r.code = code;
    r.message = msg;
    r.current_version = current;
    r.retry_after = retry_after;
    it->done(it, &r);
}

static void answer_refused(cmd_item *it, const cmd_decision *d)
{
    cmd_result r;
    memset(&r, 0, sizeof r);
    r.status = d->status;
    r.code = d->code;
    r.message = d->message;
    r.current_version = d->current_version;
    r.has_attempt_detail = d->has_attempt_detail;
    r.current_step = d->current_step;
    r.recorded_attempts = d->recorded_attempts;
    it->done(it, &r);
}

/* `topic`: topic index of the aggregate (the token's topic); `secret`: shown
 * as webhook_secret or NULL. */
static void answer_ok(cmd_writer *w, cmd_item *it, unsigned status, const char *id, int64_t version,
                      int topic, int32_t partition, int64_t offset, const char *secret)
{
    char token[CMD_TOKEN_MAX] = "";
    cmd_result r;

    memset(&r, 0, sizeof r);
    if (topic < 0 || topic >= CMD_TOPICS)
        topic = CMD_TOPIC_RESOURCE;
    if (offset >= 0)
        cmd_token_encode(w->topics[topic], partition, offset, token, sizeof token);
    r.status = status;
    r.id = id;
    r.version = version;
    r.token = token;
    r.secret = secret;
    it->done(it, &r);
}

static void answer_unavailable(cmd_writer *w, cmd_item *it, const char *msg)
{
    if (atomic_load(&w->fenced))
        answer_error(it, 503, "not_writer", "this instance was fenced by another writer", 0, 5);
    else
        answer_error(it, 503, "unavailable", msg, 0, 1);
}

/* ------------------------------------------------------------------ queue */

int cmd_writer_submit(cmd_writer *w, cmd_item *it, cmd_result *refused)
{
    int rc = 0;

    memset(refused, 0, sizeof *refused);
    pthread_mutex_lock(&w->mu);
    if (atomic_load(&w->fenced)) {
        refused->status = 503;
        refused->code = "not_writer";
        refused->message = "this instance was fenced by another writer";
        refused->retry_after = 5;
        rc = KQ_EFENCED;
    } else if (w->stopping) {
        refused->status = 503;
        refused->code = "unavailable";
        refused->message = "the command service is shutting down";
        refused->retry_after = 1;
        rc = KQ_EINVAL;
    } else if (!atomic_load(&w->ready)) {
        refused->status = 503;
        refused->code = "unavailable";
        refused->message = "the command service is not ready (Kafka unavailable or catching up)";
        refused->retry_after = 1;
        rc = KQ_ETIMEDOUT;
    } else if (w->qlen >= (size_t)w->cfg->batch_max * 64) {
        refused->status = 503;
        refused->code = "overloaded";
        refused->message = "too many commands waiting";
        refused->retry_after = 1;
        rc = KQ_ERANGE;
    } else if (it->on_queue != NULL && it->on_queue(it) != 0) {
        refused->status = 500;
        refused->code = "internal";
        refused->message = "cannot queue the command";
        rc = KQ_EIO;
    } else {
        clock_gettime(CLOCK_MONOTONIC, &it->t_queued);
        it->next = NULL;
        if (w->tail)
            w->tail->next = it;
        else
            w->head = it;
        w->tail = it;
        w->qlen++;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* Take up to `max` items; waits up to `wait_s` for the first and `linger_s` for more. */
static size_t take_batch(cmd_writer *w, cmd_item **out, size_t max, double wait_s, double linger_s,
                         int *stopping)
{
    struct timespec ts;
    size_t n = 0;
    double deadline;

    pthread_mutex_lock(&w->mu);
    if (w->qlen == 0 && !w->stopping) {
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(wait_s * 1e9);
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    if (w->qlen > 0 && w->qlen < max && linger_s > 0 && !w->stopping) {
        deadline = mono_s() + linger_s;
        while (w->qlen < max && !w->stopping) {
            double left = deadline - mono_s();
            if (left <= 0)
                break;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += (long)(left * 1e9);
            ts.tv_sec += ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
            if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
                break;
        }
    }
    while (n < max && w->head) {
        out[n++] = w->head;
        w->head = w->head->next;
        w->qlen--;
    }
    if (w->head == NULL)
        w->tail = NULL;
    *stopping = w->stopping;
    pthread_mutex_unlock(&w->mu);
    return n;
}

/* Answer everything queued with 503 (while not ready). */
static void fail_queued(cmd_writer *w, const char *msg)
{
    cmd_item *it, *nx;

    pthread_mutex_lock(&w->mu);
    it = w->head;
    w->head = w->tail = NULL;
    w->qlen = 0;
    pthread_mutex_unlock(&w->mu);
    for (; it; it = nx) {
        nx = it->next;
        answer_unavailable(w, it, msg);
    }
}

/* ------------------------------------------------------------------ Kafka */

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    cmd_item_event *ev = m->_private;
    (void)rk;
    (void)opaque;
    if (ev == NULL)
        return;
    ev->delivered = 1;
    ev->dr_err = m->err != RD_KAFKA_RESP_ERR_NO_ERROR;
    ev->partition = m->partition;
    ev->offset = m->offset;
}

/* Destroy every producer (the writer recreates all of them together). */
static void drop_producer(cmd_writer *w)
{
    for (int k = 0; k < CMD_WRITER_PRODUCERS; k++) {
        if (w->producers[k] == NULL)
            continue;
        rd_kafka_purge(w->producers[k], RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_destroy(w->producers[k]);
        w->producers[k] = NULL;
    }
    w->producer = NULL;
    w->cur = 0;
}

/*
 * Ask for the resource topic's metadata once, so the producer's first
 * transaction does not wait for it (and for the connection to the partition
 * leaders); a failure only means the first transaction waits.
 */
static void warm_producer(cmd_writer *w, rd_kafka_t *rk)
{
    for (int t = 0; t < CMD_TOPICS; t++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, w->topics[t], NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err;

        if (rkt == NULL)
            continue;
        err = rd_kafka_metadata(rk, 0, rkt, &md, w->cfg->kafka_timeout_ms);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
            kq_log_warn("metadata of %s: %s (the first transaction will fetch it)", w->topics[t],
                        rd_kafka_err2str(err));
        else
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
    }
}

/* The transactional.id of producer k. */
static void producer_txn_id(const cmd_writer *w, int k, char *out, size_t outlen)
{
    if (k == 0)
        snprintf(out, outlen, "%s", w->txn_id);
    else
        snprintf(out, outlen, "%s.%d", w->txn_id, k);
}

/*
 * Create the producers and init transactions on each: this fences every older
 * instance on every transactional id it may use, and settles what it left
 * open, before the writer reads the log. All or nothing.
 */
static int open_producer(cmd_writer *w, char *errstr, size_t errlen)
{
    const char *topics[KQ_KAFKA_NTOPICS];
    char names[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX], id[KQ_KAFKA_TOPIC_MAX + 32];
    int rc = 0, n;

    for (int k = 0; k < CMD_WRITER_PRODUCERS; k++) {
        rd_kafka_conf_t *conf;
        producer_txn_id(w, k, id, sizeof id);
        if ((conf = kq_kafka_conf_new(w->cfg, id, errstr, errlen)) == NULL) {
            rc = KQ_ECONFIG;
            goto fail;
        }
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
        if ((w->producers[k] = kq_kafka_txn_producer_new(w->cfg, id, conf, errstr, errlen)) ==
            NULL) {
            rc = KQ_EKAFKA;
            goto fail;
        }
        if (k == 0 && !w->skip_topic_setup) {
            n = kq_kafka_topic_names(w->cfg, names);
            for (int i = 0; i < n; i++)
                topics[i] = names[i];
            if ((rc = kq_kafka_ensure_topics(w->producers[0], w->cfg, topics, (size_t)n, errstr,
                                             errlen)) != 0)
                goto fail;
        }
        if ((rc = kq_kafka_txn_init(w->producers[k], 2 * w->cfg->kafka_timeout_ms, errstr,
                                    errlen)) != 0)
            goto fail;
        warm_producer(w, w->producers[k]);
    }
    w->cur = 0;
    w->producer = w->producers[0];
    return 0;
fail:
    drop_producer(w);
    return rc;
}

/* The next transaction uses the next producer (see cmd_writer.h). */
static void next_producer(cmd_writer *w)
{
    if (w->producer == NULL)
        return;
    w->cur = (w->cur + 1) % CMD_WRITER_PRODUCERS;
    w->producer = w->producers[w->cur];
}

static int event_from_msg(cmd_writer *w, int topic, const rd_kafka_message_t *m, char *errstr,
                          size_t errlen)
{
    ev_envelope e;
    int rc;

    if ((rc = ev_envelope_decode(m->payload, m->len, &e, errstr, errlen)) != 0)
        return rc;
    rc = cmd_state_apply_envelope(&w->st, topic, &e, m->partition, m->offset, errstr, errlen);
    return rc < 0 ? rc : 0;
}

/* Forget the state (it describes another log) and read from offset 0. */
static int reset_state(cmd_writer *w, const char *why)
{
    int rc;
    kq_log_warn("discarding the command-side state loaded from the snapshot: %s; reading the "
                "event topics from the start",
                why);
    cmd_state_free(&w->st);
    memset(w->heads, 0, heads_size(w)); /* the log is read again from offset 0 */
    /* A fresh state's delta is full: its first snapshot replaces the old one. */
    rc = cmd_state_init(&w->st, w->cfg->partitions);
    cmd_state_track(&w->st, w->snap != NULL);
    w->events_at_snapshot = (uint64_t)-1; /* snapshot again at the next chance */
    return rc;
}

/*
 * Does the state describe this log? The snapshot's cluster id must be this
 * cluster's, and no partition's covered offset may lie past the end of the
 * log (a recreated topic). Otherwise the state is dropped.
 */
static int check_state_matches_log(cmd_writer *w, rd_kafka_t *rk, char *errstr, size_t errlen)
{
    char *cid = rd_kafka_clusterid(rk, w->cfg->kafka_timeout_ms);
    int rc = 0;

    if (cid != NULL) {
        if (w->st.cluster_id[0] != '\0' && strcmp(w->st.cluster_id, cid) != 0) {
            char why[200];
            snprintf(why, sizeof why, "it is of Kafka cluster %s, this is %s", w->st.cluster_id,
                     cid);
            rc = reset_state(w, why);
        }
        snprintf(w->st.cluster_id, sizeof w->st.cluster_id, "%s", cid);
        rd_kafka_mem_free(rk, cid);
        if (rc != 0)
            return kq_seterr(errstr, errlen, rc, "out of memory");
    }
    for (int t = 0; t < CMD_TOPICS; t++)
        for (int p = 0; p < w->st.partitions; p++) {
            int64_t lo = 0, hi = 0, next = w->st.next_offset[t * w->st.partitions + p];
            rd_kafka_resp_err_t err;
            if (next == 0)
                continue;
            err = rd_kafka_query_watermark_offsets(rk, w->topics[t], p, &lo, &hi,
                                                   w->cfg->kafka_timeout_ms);
            if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
                return kq_seterr(errstr, errlen, KQ_EKAFKA, "end offsets of %s [%d]: %s",
                                 w->topics[t], p, rd_kafka_err2str(err));
            if (next > hi) {
                char why[400], cid2[64];
                snprintf(why, sizeof why,
                         "%s partition %d: it covers offsets up to %" PRId64
                         " but the log ends at %" PRId64,
                         w->topics[t], p, next, hi);
                snprintf(cid2, sizeof cid2, "%s", w->st.cluster_id);
                if ((rc = reset_state(w, why)) != 0)
                    return kq_seterr(errstr, errlen, rc, "out of memory");
                snprintf(w->st.cluster_id, sizeof w->st.cluster_id, "%s", cid2);
                return 0;
            }
        }
    return 0;
}

/* The topic index of a consumed message (-1: not one of ours). */
static int msg_topic(const cmd_writer *w, const rd_kafka_message_t *m)
{
    const char *name = m->rkt != NULL ? rd_kafka_topic_name(m->rkt) : NULL;
    if (name == NULL)
        return -1;
    for (int t = 0; t < CMD_TOPICS; t++)
        if (strcmp(name, w->topics[t]) == 0)
            return t;
    return -1;
}

/* Read every partition of the three event topics to its end (read_committed). */
static int catch_up(cmd_writer *w, char *errstr, size_t errlen)
{
    char group[KQ_KAFKA_TOPIC_MAX + 32];
    rd_kafka_t *c;
    rd_kafka_topic_partition_list_t *tp;
    int np = w->st.partitions, left = CMD_TOPICS * np, rc = 0;
    int *eof = calloc((size_t)(CMD_TOPICS * np), sizeof *eof);
    double last_progress = mono_s(), t0 = mono_s();
    uint64_t n = 0, before = w->st.events;

    if (eof == NULL)
        return KQ_ENOMEM;
    snprintf(group, sizeof group, "%s.commands.catchup", w->cfg->topic_prefix);
    if ((c = kq_kafka_consumer_new(w->cfg, group, NULL, errstr, errlen)) == NULL) {
        free(eof);
        return KQ_EKAFKA;
    }
    if ((rc = check_state_matches_log(w, w->producer, errstr, errlen)) != 0) {
        rd_kafka_destroy(c);
        free(eof);
        return rc;
    }
    before = w->st.events;
    tp = rd_kafka_topic_partition_list_new(CMD_TOPICS * np);
    for (int t = 0; t < CMD_TOPICS; t++)
        for (int p = 0; p < np; p++) {
            int64_t next = w->st.next_offset[t * np + p];
            rd_kafka_topic_partition_list_add(tp, w->topics[t], p)->offset =
                next > 0 ? next : RD_KAFKA_OFFSET_BEGINNING;
        }
    if (rd_kafka_assign(c, tp) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = kq_seterr(errstr, errlen, KQ_EKAFKA, "assign the event topics");
        goto out;
    }
    while (left > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        int t, ix;
        if (m == NULL) {
            if (mono_s() - last_progress > 2.0 * w->cfg->kafka_timeout_ms / 1000.0) {
                rc = kq_seterr(errstr, errlen, KQ_ETIMEDOUT,
                               "reading the event topics: no progress for %d ms (%d partitions "
                               "not at the end)",
                               2 * w->cfg->kafka_timeout_ms, left);
                goto out;
            }
            continue;
        }
        last_progress = mono_s();
        t = msg_topic(w, m);
        ix = t >= 0 && m->partition >= 0 && m->partition < np ? t * np + m->partition : -1;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (ix >= 0 && !eof[ix]) {
                eof[ix] = 1;
                left--;
                cmd_state_set_topic_offset(&w->st, t, m->partition, m->offset);
            }
        } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            kq_log_warn("reading %s: %s", t >= 0 ? w->topics[t] : "an event topic",
                        rd_kafka_message_errstr(m));
            atomic_fetch_add(&w->m_kafka_errors, 1);
        } else if (ix >= 0) {
            char es[256];
            if (eof[ix]) {
                /* Only we write; a record after EOF is our own late view. */
                eof[ix] = 0;
                left++;
            }
            if (chain_set_head(&topic_heads(w, t)[m->partition], m->payload, m->len) != 0) {
                rc = kq_seterr(errstr, errlen, KQ_EIO, "SHA-256 of a record failed");
                rd_kafka_message_destroy(m);
                goto out;
            }
            if (event_from_msg(w, t, m, es, sizeof es) != 0)
                kq_log_error("%s [%" PRId32 "] offset %" PRId64 ": cannot apply: %s", w->topics[t],
                             m->partition, m->offset, es);
            cmd_state_set_topic_offset(&w->st, t, m->partition, m->offset + 1);
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    kq_log_info("caught up with the event topics: %" PRIu64 " records read, %" PRIu64
                " events applied, %zu resources, %zu workflows, %zu runs, %.3f s",
                n, w->st.events - before, cmd_state_resource_count(&w->st),
                cmd_state_workflow_count(&w->st), cmd_state_run_count(&w->st), mono_s() - t0);
out:
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    free(eof);
    return rc;
}

/* ------------------------------------------------------------------ batches */

static void uuid_v4(ev_uuid *u)
{
    size_t got = 0;
    while (got < sizeof u->bytes) {
        ssize_t n = getrandom(u->bytes + got, sizeof u->bytes - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (errno != EINTR)
            break;
    }
    u->bytes[6] = (uint8_t)((u->bytes[6] & 0x0f) | 0x40);
    u->bytes[8] = (uint8_t)((u->bytes[8] & 0x3f) | 0x80);
}

/* Fill the payload of event `type` of command `c` (views into c and d, and
 * into *steps_env, which holds decoded step lists). */
static int fill_payload(const cmd_item *it, ev_event_type type, ev_envelope *e,
                        ev_envelope *steps_env, char *errstr, size_t errlen)
{
    const cmd_command *c = &it->cmd;
    const cmd_decision *d = &it->d;
    ev_step_list steps;
    int rc;

    switch (type) {
    case EV_RESOURCE_CREATED:
        e->payload.resource_created.name = ev_str_c(c->name);
        e->payload.resource_created.description = ev_str_c(c->description);
        e->payload.resource_created.status =
            (c->fields & CMD_F_STATUS) ? (ev_resource_status)c->status : EV_STATUS_ACTIVE;
        break;
    case EV_RESOURCE_UPDATED:
        if (d->changed & CMD_F_NAME)
            e->payload.resource_updated.name = ev_str_c(c->name);
        if (d->changed & CMD_F_DESCRIPTION)
            e->payload.resource_updated.description = ev_str_c(c->description);
        if (d->changed & CMD_F_STATUS) {
            e->payload.resource_updated.has_status = true;
            e->payload.resource_updated.status = (ev_resource_status)c->status;
        }
        break;
    case EV_WORKFLOW_CREATED:
        e->payload.workflow_created.name = ev_str_c(c->name);
        e->payload.workflow_created.enabled = (c->fields & CMD_F_ENABLED) ? c->enabled != 0 : 1;
        e->payload.workflow_created.webhook_secret = ev_str_c(c->secret);
        e->payload.workflow_created.steps = ev_step_list_of(NULL, 0);
        if (c->steps_env != NULL) {
            if ((rc = cmd_steps_view(c->steps_env, c->steps_env_len, steps_env, &steps, errstr,
                                     errlen)) != 0)
                return rc;
            e->payload.workflow_created.steps = steps;
        }
        break;
    case EV_WORKFLOW_UPDATED:
        if (d->changed & CMD_F_NAME)
            e->payload.workflow_updated.name = ev_str_c(c->name);
        if (d->changed & CMD_F_SECRET)
            e->payload.workflow_updated.webhook_secret = ev_str_c(c->secret);
        if (d->changed & CMD_F_STEPS) {
            if ((rc = cmd_steps_view(c->steps_env, c->steps_env_len, steps_env, &steps, errstr,
                                     errlen)) != 0)
                return rc;
            e->payload.workflow_updated.steps = steps;
        }
        break;
    case EV_RUN_STARTED: {
        ev_run_started *p = &e->payload.run_started;
        p->workflow_id = ev_str_c(c->workflow_id);
        p->workflow_version = d->wf_version;
        p->trigger = (ev_trigger_kind)c->trigger;
        p->payload_json = ev_str_c(c->payload_json != NULL ? c->payload_json : "{}");
        p->step_count = 0;
        if (d->wf_steps != NULL) {
            if ((rc = cmd_steps_view(d->wf_steps, d->wf_steps_len, steps_env, &steps, errstr,
                                     errlen)) != 0)
                return rc;
            p->steps = steps;
            p->step_count = steps.count;
        }
        if (d->wf_secret != NULL && d->wf_secret[0] != '\0')
            p->signing_secret = ev_str_c(d->wf_secret);
        break;
    }
    case EV_STEP_ATTEMPTED: {
        ev_step_attempted *p = &e->payload.step_attempted;
        p->step = c->step;
        p->attempt = c->attempt;
        p->has_status_code = c->has_status_code != 0;
        p->status_code = c->status_code;
        if (c->error != NULL)
            p->error = ev_str_c(c->error);
        p->duration_ms = c->duration_ms;
        p->has_next_delay_ms = c->outcome == CMD_OUT_RETRY && c->has_next_delay_ms;
        p->next_delay_ms = p->has_next_delay_ms ? c->next_delay_ms : 0;
        if (c->delivery_id[0] != '\0')
            p->delivery_id = ev_str_c(c->delivery_id);
        break;
    }
    case EV_STEP_SUCCEEDED:
        e->payload.step_succeeded.step = c->step;
        e->payload.step_succeeded.attempt = c->attempt;
        e->payload.step_succeeded.has_status_code = c->has_status_code != 0;
        e->payload.step_succeeded.status_code = c->status_code;
        break;
    case EV_STEP_FAILED:
        e->payload.step_failed.step = c->step;
        e->payload.step_failed.attempt = c->attempt;
        if (c->error != NULL)
            e->payload.step_failed.error = ev_str_c(c->error);
        break;
    case EV_RUN_FAILED:
        e->payload.run_failed.step = c->step;
        if (c->error != NULL)
            e->payload.run_failed.error = ev_str_c(c->error);
        break;
    default: /* ResourceDeleted, WorkflowEnabled/Disabled/Deleted, RunSucceeded: no fields */
        break;
    }
    return 0;
}

/* Produce the command's events (d.nevents, consecutive versions) to its
 * aggregate's topic, each chained on the partition's head. */
static int produce_item(cmd_writer *w, cmd_item *it, char *errstr, size_t errlen)
{
    const cmd_command *c = &it->cmd;
    int t = cmd_kind_topic(c->kind), part, klen, rc;
    struct timespec now;
    int64_t occurred;
    char key[EV_ID_MAX + 32];
    cmd_head *head;

    part = kq_kafka_partition_for(c->id, strlen(c->id), w->st.partitions);
    if (part < 0)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "bad id %s", c->id);
    if (it->d.nevents < 1 || it->d.nevents > CMD_MAX_EVENTS)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "bad event count %d", it->d.nevents);
    head = &topic_heads(w, t)[part];
    clock_gettime(CLOCK_REALTIME, &now);
    occurred = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
    item_values_free(it);
    for (int i = 0; i < it->d.nevents; i++) {
        cmd_item_event *ie = &it->ev[i], *slot;
        ev_event_type type = it->d.events[i];
        int64_t version = it->d.version - it->d.nevents + 1 + i;
        ev_envelope e, steps_env;
        const uint8_t *buf;
        size_t len;

        ev_envelope_init(&e, type);
        uuid_v4(&e.event_id);
        e.aggregate_id = ev_str_c(c->id);
        e.version = version;
        e.occurred_at_us = occurred;
        e.actor = ev_str_c(c->actor[0] ? c->actor : "anonymous");
        if (c->idem_key[0])
            e.command_id = ev_str_c(c->idem_key);
        e.correlation_id = ev_str_c(c->correlation_id);
        e.command_hash.ptr = c->hash;
        e.command_hash.len = CMD_HASH_LEN;
        if (head->set) {
            e.prev_hash.ptr = head->hash;
            e.prev_hash.len = CMD_CHAIN_HASH_LEN;
        }
        if ((rc = fill_payload(it, type, &e, &steps_env, errstr, errlen)) != 0)
            return rc;
        if ((rc = ev_envelope_encode(&w->fb, &e, errstr, errlen)) != 0)
            return rc;
        buf = ev_fb_builder_data(&w->fb, &len);
        klen = kq_kafka_record_key(c->id, version, key, sizeof key);
        if (klen < 0)
            return kq_seterr(errstr, errlen, KQ_EINVAL, "bad id %s", c->id);
        if (t != CMD_TOPIC_RESOURCE) {
            /* Applied to the state after commit from these bytes. */
            if ((ie->value = malloc(len)) == NULL)
                return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
            memcpy(ie->value, buf, len);
            ie->len = len;
        }
        /* The next event of this partition chains on this one (restored if the
         * transaction fails: run_transaction). */
        if (chain_set_head(head, buf, len) != 0)
            return kq_seterr(errstr, errlen, KQ_EIO, "SHA-256 of an envelope failed");
        if (w->nslots >= w->slots_cap)
            return kq_seterr(errstr, errlen, KQ_ERANGE, "too many events in one transaction");
        slot = &w->slots[w->nslots++];
        memset(slot, 0, sizeof *slot);
        slot->offset = -1;
        ie->delivered = 0;
        ie->dr_err = 0;
        ie->offset = -1;
        if ((rc = kq_kafka_produce_event(w->producer, w->topics[t], part, key, (size_t)klen, buf,
                                         len, ev_event_type_name(type), slot, errstr, errlen)) != 0)
            return rc;
    }
    it->partition = part;
    it->offset = -1;
    return 0;
}

/* Commit the open transaction. On failure decides what happens to the producer. */
static int run_transaction(cmd_writer *w, cmd_item **items, size_t n, size_t nappend, char *errstr,
                           size_t errlen)
{
    int rc, needs_abort = 0, b = 0;
    double t0, tbegin = mono_s(), took;

    memcpy(w->heads_saved, w->heads, heads_size(w));
    w->nslots = 0;
    rc = kq_kafka_txn_begin(w->producer, errstr, errlen);
    if (rc != 0)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (items[i]->d.kind == CMD_D_APPEND &&
            (rc = produce_item(w, items[i], errstr, errlen)) != 0) {
            needs_abort = 1;
            goto fail;
        }
    rc = kq_kafka_error_take(rd_kafka_commit_transaction(w->producer, w->cfg->kafka_timeout_ms),
                             "commit transaction", &needs_abort, errstr, errlen);
    if (rc != 0)
        goto fail;
    took = mono_s() - tbegin;
    while (b < NCOMMIT_BUCKETS && took > 0.0005 * (double)(1u << b))
        b++;
    atomic_fetch_add(&w->m_commit[b], 1);
    atomic_fetch_add(&w->m_commit_sum_us, (uint_fast64_t)(took * 1e6));
    /* The commit flushed and served the delivery reports; make sure. */
    t0 = mono_s();
    for (;;) {
        size_t got = 0;
        for (size_t k = 0; k < w->nslots; k++)
            got += w->slots[k].delivered != 0;
        if (got == nappend || mono_s() - t0 > 5.0)
            break;
        rd_kafka_poll(w->producer, 10);
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
        atomic_fetch_add(&w->m_events_by[cmd_kind_topic(it->cmd.kind)],
                         (uint_fast64_t)it->d.nevents);
    }
    atomic_fetch_add(&w->m_committed, 1);
    atomic_fetch_add(&w->m_events, nappend);
    return 0;
fail:
    /* Nothing of this transaction is chained on: aborted, or (unknown outcome)
     * the catch-up that follows reads whatever did commit and moves the heads. */
    memcpy(w->heads, w->heads_saved, heads_size(w));
    atomic_fetch_add(&w->m_kafka_errors, 1);
    atomic_fetch_add(&w->m_aborted, 1);
    if (rc == KQ_EFENCED) {
        atomic_store(&w->fenced, 1);
        atomic_store(&w->ready, 0);
        {
            char id[KQ_KAFKA_TOPIC_MAX + 32];
            producer_txn_id(w, w->cur, id, sizeof id);
            set_why(w, "fenced: another kcqrs-commands instance took over transactional.id %s", id);
            kq_log_error("fenced: another instance with transactional.id %s is the writer now "
                         "(%s); this instance no longer accepts commands",
                         id, errstr);
        }
        drop_producer(w);
        return rc;
    }
    if (needs_abort) {
        /* Aborted after the batch is answered (finish_abort), so a slow abort
         * does not delay the 503s. */
        w->abort_pending = 1;
        kq_log_warn("transaction failed, aborting: %s", errstr);
        return rc;
    } else {
        kq_log_error("transaction outcome unknown or producer unusable: %s", errstr);
        atomic_fetch_add(&w->m_unknown, 1);
    }
    /* Unknown outcome or unusable producer: start over. The next
     * init_transactions settles the transaction, the re-read tells the outcome. */
    drop_producer(w);
    w->need_catch_up = 1;
    atomic_store(&w->ready, 0);
    set_why(w, "recovering from a Kafka error: %s", errstr);
    return rc;
}

static void finish_abort(cmd_writer *w)
{
    char es[512];

    w->abort_pending = 0;
    if (w->producer == NULL)
        return;
    if (kq_kafka_txn_abort(w->producer, w->cfg->kafka_timeout_ms, es, sizeof es) == 0)
        return;
    kq_log_error("transaction abort failed: %s; recreating the producer", es);
    drop_producer(w);
    w->need_catch_up = 1;
    atomic_store(&w->ready, 0);
    set_why(w, "recovering from a Kafka error: %s", es);
}

/* The webhook secret an answer shows: a workflow create (its secret), an
 * update that set a generated secret (rotate_secret); NULL otherwise. */
static const char *answer_secret(const cmd_item *it)
{
    const cmd_command *c = &it->cmd;
    if (c->kind == CMD_WF_CREATE || (c->kind == CMD_WF_UPDATE && c->secret_generated))
        return c->secret;
    return NULL;
}

/* A replayed answer: the secret is the workflow's current one. */
static const char *replay_secret(cmd_writer *w, const cmd_item *it)
{
    const cmd_workflow *wf;
    if (answer_secret(it) == NULL)
        return NULL;
    wf = cmd_state_workflow(&w->st, it->d.idem.id);
    return wf != NULL && !wf->deleted ? wf->secret : NULL;
}

/*
 * Answering an item frees it. A CMD_D_FOLLOW item (a retry of an
 * Idempotency-Key whose original is in the same batch) reads its lead, which
 * always has a smaller index: so answer from the last item to the first.
 */
static void answer_batch(cmd_writer *w, cmd_item **items, size_t n, int failed)
{
    for (size_t i = n; i-- > 0;) {
        cmd_item *it = items[i];
        cmd_decision *d = &it->d;
        int topic = cmd_kind_topic(it->cmd.kind);

        if (failed && (d->kind == CMD_D_APPEND || d->kind == CMD_D_FOLLOW || d->pending)) {
            answer_unavailable(w, it, "the transaction failed; retry");
            continue;
        }
        switch (d->kind) {
        case CMD_D_APPEND:
            answer_ok(w, it, cmd_success_status(it->cmd.kind), it->cmd.id, d->version, topic,
                      it->partition, it->offset, answer_secret(it));
            break;
        case CMD_D_FOLLOW: {
            cmd_item *lead;
            if (d->follow >= i) { /* cannot happen: decisions are made in order */
                answer_unavailable(w, it, "internal error; retry");
                break;
            }
            lead = items[d->follow];
            answer_ok(w, it, cmd_success_status(lead->cmd.kind), lead->cmd.id, lead->d.version,
                      cmd_kind_topic(lead->cmd.kind), lead->partition, lead->offset,
                      answer_secret(lead));
            break;
        }
        case CMD_D_REPLAY:
            answer_ok(w, it, d->idem.status, d->idem.id, d->idem.version,
                      d->idem.aggregate >= 1 ? d->idem.aggregate - 1 : CMD_TOPIC_RESOURCE,
                      d->idem.partition, d->idem.offset, replay_secret(w, it));
            break;
        case CMD_D_NOOP:
            if (topic == CMD_TOPIC_WORKFLOW) {
                const cmd_workflow *wf = cmd_state_workflow(&w->st, it->cmd.id);
                if (wf == NULL)
                    answer_unavailable(w, it, "state changed; retry");
                else
                    answer_ok(w, it, 200, it->cmd.id, wf->version, topic, wf->partition, wf->offset,
                              NULL);
            } else {
                const cmd_resource *r = cmd_state_resource(&w->st, it->cmd.id);
                if (r == NULL)
                    answer_unavailable(w, it, "state changed; retry");
                else
                    answer_ok(w, it, 200, it->cmd.id, r->version, topic, r->partition, r->offset,
                              NULL);
            }
            break;
        case CMD_D_ERROR:
        default:
            answer_refused(it, d);
            break;
        }
    }
}

/* Apply a committed item's events to the state: resources from the command
 * (cmd_command_event), workflows and runs from the bytes produced. */
static void apply_committed(cmd_writer *w, cmd_item *it)
{
    int t = cmd_kind_topic(it->cmd.kind);
    char es[256];

    if (t == CMD_TOPIC_RESOURCE) {
        cmd_event ev;
        cmd_command_event(&it->cmd, &it->d, it->ev[0].partition, it->ev[0].offset, &ev);
        if (cmd_state_apply(&w->st, &ev, es, sizeof es) < 0) {
            kq_log_error("applying committed event of %s: %s", it->cmd.id, es);
            w->need_catch_up = 1;
        }
        return;
    }
    for (int k = 0; k < it->d.nevents; k++) {
        ev_envelope e;
        if (ev_envelope_decode(it->ev[k].value, it->ev[k].len, &e, es, sizeof es) != 0 ||
            cmd_state_apply_envelope(&w->st, t, &e, it->ev[k].partition, it->ev[k].offset, es,
                                     sizeof es) < 0) {
            kq_log_error("applying committed event of %s: %s", it->cmd.id, es);
            w->need_catch_up = 1;
            return;
        }
    }
}

static void process_batch(cmd_writer *w, cmd_item **items, size_t n)
{
    char errstr[512];
    size_t nappend = 0, b = 0;
    int failed = 0;
    double now = mono_s(), maxwait = w->cfg->kafka_timeout_ms / 1000.0;
    size_t m = 0;

    /* Commands that waited longer than the Kafka bound are not tried. */
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
    for (size_t i = 0; i < n; i++) {
        if (cmd_batch_decide(&w->st, &w->batch, &items[i]->cmd, i, &items[i]->d) != 0) {
            cmd_decision_clear(&items[i]->d);
            memset(&items[i]->d, 0, sizeof items[i]->d);
            items[i]->d.kind = CMD_D_ERROR;
            items[i]->d.status = 500;
            items[i]->d.code = "internal";
            snprintf(items[i]->d.message, sizeof items[i]->d.message, "out of memory");
        }
        if (items[i]->d.kind == CMD_D_APPEND)
            nappend += (size_t)items[i]->d.nevents;
    }
    if (nappend > 0) {
        while (b < NBATCH_BUCKETS && nappend > ((size_t)1 << b))
            b++;
        atomic_fetch_add(&w->m_batches[b], 1);
        atomic_fetch_add(&w->m_batch_sum, nappend);
        if (run_transaction(w, items, n, nappend, errstr, sizeof errstr) != 0)
            failed = 1;
    }
    if (!failed && !w->need_catch_up)
        for (size_t i = 0; i < n; i++)
            if (items[i]->d.kind == CMD_D_APPEND)
                apply_committed(w, items[i]);
    cmd_batch_reset(&w->batch);
    answer_batch(w, items, n, failed);
    if (w->abort_pending)
        finish_abort(w);
    if (nappend > 0)
        next_producer(w);
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

    if (w->snap == NULL || w->need_catch_up)
        return;
    if (!force && w->st.events - w->events_at_snapshot < (uint64_t)w->cfg->snapshot_every)
        return;
    if (w->st.events != w->events_at_snapshot || w->st.delta.full || w->st.delta.len > 0) {
        t0 = mono_s();
        if (cmd_snapshotter_submit(w->snap, &w->st, w->heads, &full) != 0) {
            kq_log_error("snapshot: cannot hand over the changes (out of memory); the next "
                         "snapshot is a full one");
            return;
        }
        us = (uint64_t)((mono_s() - t0) * 1e6);
        atomic_fetch_add(&w->m_handover_sum_us, us);
        atomic_fetch_add(&w->m_handovers, 1);
        if (us > atomic_load(&w->m_handover_max_us))
            atomic_store(&w->m_handover_max_us, us);
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

static void *writer_main(void *arg)
{
    cmd_writer *w = arg;
    size_t max = (size_t)w->cfg->batch_max;
    cmd_item **items = calloc(max, sizeof *items);
    char errstr[512];
    double backoff = 0.5;
    int stopping = 0;

    if (items == NULL) {
        kq_log_error("writer: out of memory");
        return NULL;
    }
    while (!atomic_load(&w->fenced)) {
        if (w->producer == NULL || w->need_catch_up) {
            atomic_store(&w->ready, 0);
            pthread_mutex_lock(&w->mu);
            stopping = w->stopping;
            pthread_mutex_unlock(&w->mu);
            if (stopping)
                break;
            fail_queued(w, "Kafka is unavailable; retry");
            if (w->producer == NULL && open_producer(w, errstr, sizeof errstr) != 0) {
                if (atomic_load(&w->fenced))
                    break;
                set_why(w, "Kafka producer: %s", errstr);
                kq_log_warn("writer not ready: %s (retrying in %.1f s)", errstr, backoff);
                goto wait;
            }
            if (catch_up(w, errstr, sizeof errstr) != 0) {
                set_why(w, "reading the log: %s", errstr);
                kq_log_warn("writer not ready: %s (retrying in %.1f s)", errstr, backoff);
                w->need_catch_up = 1;
                goto wait;
            }
            w->need_catch_up = 0;
            backoff = 0.5;
            maybe_snapshot(w, 1, 0); /* what was read need not be read again */
            atomic_store(&w->ready, 1);
            set_why(w, "ready");
            kq_log_info("writer ready: transactional.id %s (and %d more, .1 to .%d, used in turn), "
                        "%zu resources, %zu workflows, %zu runs",
                        w->txn_id, CMD_WRITER_PRODUCERS - 1, CMD_WRITER_PRODUCERS - 1,
                        cmd_state_resource_count(&w->st), cmd_state_workflow_count(&w->st),
                        cmd_state_run_count(&w->st));
            continue;
        wait:
            fail_queued(w, "Kafka is unavailable; retry");
            {
                double until = mono_s() + backoff;
                while (mono_s() < until) {
                    pthread_mutex_lock(&w->mu);
                    stopping = w->stopping;
                    pthread_mutex_unlock(&w->mu);
                    if (stopping)
                        break;
                    struct timespec ts = {0, 50 * 1000000L};
                    nanosleep(&ts, NULL);
                }
            }
            backoff = backoff * 2 > 5.0 ? 5.0 : backoff * 2;
            continue;
        }
        size_t n = take_batch(w, items, max, 0.2, w->cfg->batch_linger_us / 1e6, &stopping);
        if (n > 0)
            process_batch(w, items, n);
        else if (stopping)
            break;
        maybe_snapshot(w, 0, 0);
    }
    atomic_store(&w->ready, 0);
    fail_queued(w, atomic_load(&w->fenced) ? "fenced" : "the command service is shutting down");
    maybe_snapshot(w, 1, 1);
    free(items);
    return NULL;
}

/* ------------------------------------------------------------------ life cycle */

int cmd_writer_new(const cmd_writer_options *opts, cmd_writer **out, char *errstr, size_t errlen)
{
    cmd_writer *w = calloc(1, sizeof *w);
    int rc;

    if (w == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    w->cfg = opts->cfg;
    w->skip_topic_setup = opts->skip_topic_setup;
    w->map_size = opts->snapshot_map_size ? opts->snapshot_map_size : ((size_t)1 << 30);
    for (int t = 0; t < CMD_TOPICS; t++) {
        kq_config_topic(w->cfg, agg_names[t], w->topics[t], sizeof w->topics[t]);
        w->topic_ptrs[t] = w->topics[t];
    }
    w->topic = w->topics[CMD_TOPIC_RESOURCE];
    snprintf(w->txn_id, sizeof w->txn_id, "%s",
             opts->transactional_id ? opts->transactional_id : "");
    if (opts->transactional_id == NULL)
        snprintf(w->txn_id, sizeof w->txn_id, "%s.commands", w->cfg->topic_prefix);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    snprintf(w->why, sizeof w->why, "starting: connecting to Kafka");
    ev_fb_builder_init(&w->fb);
    w->need_catch_up = 1;
    if ((rc = cmd_state_init(&w->st, w->cfg->partitions)) != 0 ||
        (rc = cmd_batch_init(&w->batch)) != 0) {
        cmd_writer_free(w);
        return kq_seterr(errstr, errlen, rc, "out of memory");
    }
    w->heads = calloc(1, heads_size(w));
    w->heads_saved = calloc(1, heads_size(w));
    w->slots_cap = (size_t)(w->cfg->batch_max > 0 ? w->cfg->batch_max : 1) * CMD_MAX_EVENTS;
    w->slots = calloc(w->slots_cap, sizeof *w->slots);
    if (w->heads == NULL || w->heads_saved == NULL || w->slots == NULL) {
        cmd_writer_free(w);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    if (opts->snapshot_dir != NULL) {
        char es[512];
        int loaded;
        if ((w->snapshot_dir = strdup(opts->snapshot_dir)) == NULL) {
            cmd_writer_free(w);
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        }
        rc = cmd_snapshot_load(w->snapshot_dir, w->map_size, &w->st, w->heads, w->topic_ptrs, es,
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
            cmd_state_free(&w->st);
            memset(w->heads, 0, heads_size(w));
            if ((rc = cmd_state_init(&w->st, w->cfg->partitions)) != 0) {
                cmd_writer_free(w);
                return kq_seterr(errstr, errlen, rc, "out of memory");
            }
        }
        /* Loaded: nothing is new. Else the fresh state's delta stays full, so
         * its first snapshot empties whatever the directory holds (an ignored
         * snapshot of an older format or another log). */
        if (loaded)
            cmd_state_delta_clear(&w->st);
        cmd_state_track(&w->st, 1);
        w->events_at_snapshot = w->st.events;
        if ((rc = cmd_snapshotter_new(w->snapshot_dir, w->map_size, w->topic_ptrs, &w->snap, errstr,
                                      errlen)) != 0) {
            cmd_writer_free(w);
            return rc;
        }
    }
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
    if (atomic_load(&w->ready))
        return 1;
    pthread_mutex_lock(&w->mu);
    snprintf(why, whylen, "%s", w->why);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

int cmd_writer_fenced(cmd_writer *w)
{
    return atomic_load(&w->fenced);
}

const cmd_state *cmd_writer_state(const cmd_writer *w)
{
    return &w->st;
}

void cmd_writer_metrics(cmd_writer *w, FILE *f)
{
    uint64_t cum = 0;

    fprintf(f,
            "# HELP kcqrs_commands_events_appended_total Events appended in committed "
            "transactions.\n# TYPE kcqrs_commands_events_appended_total counter\n"
            "kcqrs_commands_events_appended_total %llu\n",
            (unsigned long long)atomic_load(&w->m_events));
    fputs("# HELP kcqrs_commands_aggregate_events_appended_total Events appended in committed "
          "transactions, by aggregate type.\n"
          "# TYPE kcqrs_commands_aggregate_events_appended_total counter\n",
          f);
    for (int t = 0; t < CMD_TOPICS; t++)
        fprintf(f, "kcqrs_commands_aggregate_events_appended_total{aggregate=\"%s\"} %llu\n",
                agg_names[t], (unsigned long long)atomic_load(&w->m_events_by[t]));
    fprintf(f,
            "# HELP kcqrs_commands_transactions_total Kafka transactions by result.\n"
            "# TYPE kcqrs_commands_transactions_total counter\n"
            "kcqrs_commands_transactions_total{result=\"committed\"} %llu\n"
            "kcqrs_commands_transactions_total{result=\"aborted\"} %llu\n"
            "kcqrs_commands_transactions_total{result=\"unknown\"} %llu\n",
            (unsigned long long)atomic_load(&w->m_committed),
            (unsigned long long)atomic_load(&w->m_aborted),
            (unsigned long long)atomic_load(&w->m_unknown));
    fprintf(f,
            "# HELP kcqrs_commands_kafka_errors_total Kafka errors seen by the writer.\n"
            "# TYPE kcqrs_commands_kafka_errors_total counter\n"
            "kcqrs_commands_kafka_errors_total %llu\n",
            (unsigned long long)atomic_load(&w->m_kafka_errors));
    fputs("# HELP kcqrs_commands_batch_size Events per committed or attempted transaction.\n"
          "# TYPE kcqrs_commands_batch_size histogram\n",
          f);
    for (int b = 0; b <= NBATCH_BUCKETS; b++) {
        cum += atomic_load(&w->m_batches[b]);
        if (b < NBATCH_BUCKETS)
            fprintf(f, "kcqrs_commands_batch_size_bucket{le=\"%u\"} %llu\n", 1u << b,
                    (unsigned long long)cum);
        else
            fprintf(f, "kcqrs_commands_batch_size_bucket{le=\"+Inf\"} %llu\n",
                    (unsigned long long)cum);
    }
    fprintf(f, "kcqrs_commands_batch_size_sum %llu\nkcqrs_commands_batch_size_count %llu\n",
            (unsigned long long)atomic_load(&w->m_batch_sum), (unsigned long long)cum);
    cum = 0;
    fputs("# HELP kcqrs_commands_commit_seconds Begin to commit returned, per committed "
          "transaction.\n# TYPE kcqrs_commands_commit_seconds histogram\n",
          f);
    for (int b = 0; b <= NCOMMIT_BUCKETS; b++) {
        cum += atomic_load(&w->m_commit[b]);
        if (b < NCOMMIT_BUCKETS)
            fprintf(f, "kcqrs_commands_commit_seconds_bucket{le=\"%g\"} %llu\n",
                    0.0005 * (double)(1u << b), (unsigned long long)cum);
        else
            fprintf(f, "kcqrs_commands_commit_seconds_bucket{le=\"+Inf\"} %llu\n",
                    (unsigned long long)cum);
    }
    fprintf(f, "kcqrs_commands_commit_seconds_sum %.6f\nkcqrs_commands_commit_seconds_count %llu\n",
            atomic_load(&w->m_commit_sum_us) / 1e6, (unsigned long long)cum);
    if (w->snap != NULL) {
        cmd_snapshot_stats ss;
        cmd_snapshotter_stats(w->snap, &ss);
        fprintf(f,
                "# HELP kcqrs_commands_snapshots_total Snapshot writes by result.\n"
                "# TYPE kcqrs_commands_snapshots_total counter\n"
                "kcqrs_commands_snapshots_total{result=\"written\"} %llu\n"
                "kcqrs_commands_snapshots_total{result=\"failed\"} %llu\n"
                "# HELP kcqrs_commands_snapshot_records_total Records written by snapshots.\n"
                "# TYPE kcqrs_commands_snapshot_records_total counter\n"
                "kcqrs_commands_snapshot_records_total %llu\n"
                "# HELP kcqrs_commands_snapshot_write_seconds Duration of the last and the "
                "longest snapshot write (snapshot thread).\n"
                "# TYPE kcqrs_commands_snapshot_write_seconds gauge\n"
                "kcqrs_commands_snapshot_write_seconds{which=\"last\"} %.6f\n"
                "kcqrs_commands_snapshot_write_seconds{which=\"max\"} %.6f\n"
                "# HELP kcqrs_commands_snapshot_handover_seconds Time the writer thread spent "
                "handing changes to the snapshot thread.\n"
                "# TYPE kcqrs_commands_snapshot_handover_seconds summary\n"
                "kcqrs_commands_snapshot_handover_seconds_sum %.6f\n"
                "kcqrs_commands_snapshot_handover_seconds_count %llu\n"
                "# HELP kcqrs_commands_snapshot_handover_max_seconds The longest hand-over.\n"
                "# TYPE kcqrs_commands_snapshot_handover_max_seconds gauge\n"
                "kcqrs_commands_snapshot_handover_max_seconds %.6f\n",
                (unsigned long long)ss.written, (unsigned long long)ss.failures,
                (unsigned long long)ss.records, ss.last_s, ss.max_s,
                atomic_load(&w->m_handover_sum_us) / 1e6,
                (unsigned long long)atomic_load(&w->m_handovers),
                atomic_load(&w->m_handover_max_us) / 1e6);
    }
    fprintf(f,
            "# HELP kcqrs_commands_ready 1 when the writer accepts commands.\n"
            "# TYPE kcqrs_commands_ready gauge\nkcqrs_commands_ready %d\n"
            "# HELP kcqrs_commands_fenced 1 when another instance fenced this writer.\n"
            "# TYPE kcqrs_commands_fenced gauge\nkcqrs_commands_fenced %d\n",
            atomic_load(&w->ready), atomic_load(&w->fenced));
}

void cmd_writer_stop(cmd_writer *w)
{
    if (w == NULL || !w->started)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    w->started = 0;
}

void cmd_writer_free(cmd_writer *w)
{
    if (w == NULL)
        return;
    cmd_writer_stop(w);
    cmd_snapshotter_free(w->snap);
    drop_producer(w);
    cmd_batch_free(&w->batch);
    cmd_state_free(&w->st);
    free(w->heads);
    free(w->heads_saved);
    free(w->slots);
    ev_fb_builder_free(&w->fb);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->snapshot_dir);
    free(w);
}
