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

/* Topics whose chain heads the writer keeps: heads[t * partitions + p]; t = 0
 * is the resource topic (the only one written today; issue #6 adds the
 * workflow and run topics as t = 1, 2). */
#define CHAIN_TOPICS 1
#define CHAIN_RESOURCE 0

struct cmd_writer {
    const kq_config *cfg;
    char topic[KQ_KAFKA_TOPIC_MAX];
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

    /* metrics */
    atomic_uint_fast64_t m_events, m_committed, m_aborted, m_kafka_errors, m_unknown;
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

void cmd_item_free(cmd_item *it)
{
    if (it == NULL)
        return;
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

static void answer_ok(cmd_writer *w, cmd_item *it, unsigned status, const char *id, int64_t version,
                      int32_t partition, int64_t offset)
{
    char token[CMD_TOKEN_MAX] = "";
    cmd_result r;

    memset(&r, 0, sizeof r);
    if (offset >= 0)
        cmd_token_encode(w->topic, partition, offset, token, sizeof token);
    r.status = status;
    r.id = id;
    r.version = version;
    r.token = token;
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
    cmd_item *it = m->_private;
    (void)rk;
    (void)opaque;
    if (it == NULL)
        return;
    it->delivered = 1;
    it->dr_err = m->err != RD_KAFKA_RESP_ERR_NO_ERROR;
    it->partition = m->partition;
    it->offset = m->offset;
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
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, w->topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;

    if (rkt == NULL)
        return;
    err = rd_kafka_metadata(rk, 0, rkt, &md, w->cfg->kafka_timeout_ms);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        kq_log_warn("metadata of %s: %s (the first transaction will fetch it)", w->topic,
                    rd_kafka_err2str(err));
    else
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
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

static int event_from_msg(cmd_writer *w, const rd_kafka_message_t *m, char *errstr, size_t errlen)
{
    ev_envelope e;
    cmd_event ev;
    char id[EV_ID_MAX + 1], cid[CMD_KEY_MAX + 1], *name = NULL, *desc = NULL;
    int rc;

    if ((rc = ev_envelope_decode(m->payload, m->len, &e, errstr, errlen)) != 0)
        return rc;
    if (e.aggregate_id.len == 0 || e.aggregate_id.len > EV_ID_MAX || e.command_id.len > CMD_KEY_MAX)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "aggregate or command id out of range");
    memset(&ev, 0, sizeof ev);
    memcpy(id, e.aggregate_id.ptr, e.aggregate_id.len);
    id[e.aggregate_id.len] = '\0';
    ev.type = e.payload_type;
    ev.id = id;
    ev.version = e.version;
    ev.partition = m->partition;
    ev.offset = m->offset;
    if (e.command_id.ptr != NULL && e.command_id.len > 0) {
        memcpy(cid, e.command_id.ptr, e.command_id.len);
        cid[e.command_id.len] = '\0';
        ev.command_id = cid;
    }
    if (e.command_hash.ptr != NULL && e.command_hash.len == CMD_HASH_LEN)
        ev.command_hash = e.command_hash.ptr;
    /* Decoded strings are views into the record; the state keeps copies. */
    if (e.payload_type == EV_RESOURCE_CREATED || e.payload_type == EV_RESOURCE_UPDATED) {
        ev_str nm = e.payload_type == EV_RESOURCE_CREATED ? e.payload.resource_created.name
                                                          : e.payload.resource_updated.name;
        ev_str ds = e.payload_type == EV_RESOURCE_CREATED ? e.payload.resource_created.description
                                                          : e.payload.resource_updated.description;
        if (nm.ptr != NULL) {
            if ((name = strndup(nm.ptr, nm.len)) == NULL)
                return KQ_ENOMEM;
            ev.name = name;
        }
        if (ds.ptr != NULL) {
            if ((desc = strndup(ds.ptr, ds.len)) == NULL) {
                free(name);
                return KQ_ENOMEM;
            }
            ev.description = desc;
        }
        if (e.payload_type == EV_RESOURCE_CREATED) {
            ev.has_status = 1;
            ev.status = (int)e.payload.resource_created.status;
            if (ev.description == NULL)
                ev.description = "";
        } else {
            ev.has_status = e.payload.resource_updated.has_status;
            ev.status = (int)e.payload.resource_updated.status;
        }
    }
    rc = cmd_state_apply(&w->st, &ev, errstr, errlen);
    free(name);
    free(desc);
    return rc < 0 ? rc : 0;
}

/* Forget the state (it describes another log) and read from offset 0. */
static int reset_state(cmd_writer *w, const char *why)
{
    int rc;
    kq_log_warn("discarding the command-side state loaded from the snapshot: %s; reading %s "
                "from the start",
                why, w->topic);
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
    for (int p = 0; p < w->st.partitions; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t err;
        if (w->st.next_offset[p] == 0)
            continue;
        err = rd_kafka_query_watermark_offsets(rk, w->topic, p, &lo, &hi, w->cfg->kafka_timeout_ms);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
            return kq_seterr(errstr, errlen, KQ_EKAFKA, "end offsets of %s [%d]: %s", w->topic, p,
                             rd_kafka_err2str(err));
        if (w->st.next_offset[p] > hi) {
            char why[200], cid2[64];
            snprintf(why, sizeof why,
                     "partition %d: it covers offsets up to %" PRId64
                     " but the log ends at %" PRId64,
                     p, w->st.next_offset[p], hi);
            snprintf(cid2, sizeof cid2, "%s", w->st.cluster_id);
            if ((rc = reset_state(w, why)) != 0)
                return kq_seterr(errstr, errlen, rc, "out of memory");
            snprintf(w->st.cluster_id, sizeof w->st.cluster_id, "%s", cid2);
            break;
        }
    }
    return 0;
}

/* Read every partition of the resource topic to its end (read_committed). */
static int catch_up(cmd_writer *w, char *errstr, size_t errlen)
{
    char group[KQ_KAFKA_TOPIC_MAX + 32];
    rd_kafka_t *c;
    rd_kafka_topic_partition_list_t *tp;
    int np = w->st.partitions, left = np, rc = 0;
    int *eof = calloc((size_t)np, sizeof *eof);
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
    tp = rd_kafka_topic_partition_list_new(np);
    for (int p = 0; p < np; p++)
        rd_kafka_topic_partition_list_add(tp, w->topic, p)->offset =
            w->st.next_offset[p] > 0 ? w->st.next_offset[p] : RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(c, tp) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = kq_seterr(errstr, errlen, KQ_EKAFKA, "assign %s", w->topic);
        goto out;
    }
    while (left > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        if (m == NULL) {
            if (mono_s() - last_progress > 2.0 * w->cfg->kafka_timeout_ms / 1000.0) {
                rc = kq_seterr(errstr, errlen, KQ_ETIMEDOUT,
                               "reading %s: no progress for %d ms (%d partitions not at the end)",
                               w->topic, 2 * w->cfg->kafka_timeout_ms, left);
                goto out;
            }
            continue;
        }
        last_progress = mono_s();
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < np && !eof[m->partition]) {
                eof[m->partition] = 1;
                left--;
                cmd_state_set_offset(&w->st, m->partition, m->offset);
            }
        } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            kq_log_warn("reading %s: %s", w->topic, rd_kafka_message_errstr(m));
            atomic_fetch_add(&w->m_kafka_errors, 1);
        } else {
            char es[256];
            if (m->partition >= 0 && m->partition < np && eof[m->partition]) {
                /* Only we write; a record after EOF is our own late view. */
                eof[m->partition] = 0;
                left++;
            }
            if (m->partition >= 0 && m->partition < np &&
                chain_set_head(&topic_heads(w, CHAIN_RESOURCE)[m->partition], m->payload, m->len) !=
                    0) {
                rc = kq_seterr(errstr, errlen, KQ_EIO, "SHA-256 of a record failed");
                rd_kafka_message_destroy(m);
                goto out;
            }
            if (event_from_msg(w, m, es, sizeof es) != 0)
                kq_log_error("%s [%" PRId32 "] offset %" PRId64 ": cannot apply: %s", w->topic,
                             m->partition, m->offset, es);
            cmd_state_set_offset(&w->st, m->partition, m->offset + 1);
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    kq_log_info("caught up with %s: %" PRIu64 " records read, %" PRIu64
                " events applied, %zu resources, %.3f s",
                w->topic, n, w->st.events - before, cmd_state_resource_count(&w->st),
                mono_s() - t0);
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

static int produce_item(cmd_writer *w, cmd_item *it, char *errstr, size_t errlen)
{
    const cmd_command *c = &it->cmd;
    ev_envelope e;
    struct timespec now;
    char key[EV_ID_MAX + 32];
    const uint8_t *buf;
    size_t len;
    int klen, part, rc;
    cmd_head *head;

    part = kq_kafka_partition_for(c->id, strlen(c->id), w->st.partitions);
    if (part < 0)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "bad id %s", c->id);
    head = &topic_heads(w, CHAIN_RESOURCE)[part];
    ev_envelope_init(&e, it->d.event);
    uuid_v4(&e.event_id);
    clock_gettime(CLOCK_REALTIME, &now);
    e.aggregate_id = ev_str_c(c->id);
    e.version = it->d.version;
    e.occurred_at_us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
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
    switch (it->d.event) {
    case EV_RESOURCE_CREATED:
        e.payload.resource_created.name = ev_str_c(c->name);
        e.payload.resource_created.description = ev_str_c(c->description);
        e.payload.resource_created.status =
            (c->fields & CMD_F_STATUS) ? (ev_resource_status)c->status : EV_STATUS_ACTIVE;
        break;
    case EV_RESOURCE_UPDATED:
        if (it->d.changed & CMD_F_NAME)
            e.payload.resource_updated.name = ev_str_c(c->name);
        if (it->d.changed & CMD_F_DESCRIPTION)
            e.payload.resource_updated.description = ev_str_c(c->description);
        if (it->d.changed & CMD_F_STATUS) {
            e.payload.resource_updated.has_status = true;
            e.payload.resource_updated.status = (ev_resource_status)c->status;
        }
        break;
    default:
        break;
    }
    if ((rc = ev_envelope_encode(&w->fb, &e, errstr, errlen)) != 0)
        return rc;
    buf = ev_fb_builder_data(&w->fb, &len);
    klen = kq_kafka_record_key(c->id, it->d.version, key, sizeof key);
    if (klen < 0)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "bad id %s", c->id);
    /* The next event of this partition chains on this one (restored if the
     * transaction fails: run_transaction). */
    if (chain_set_head(head, buf, len) != 0)
        return kq_seterr(errstr, errlen, KQ_EIO, "SHA-256 of an envelope failed");
    it->delivered = 0;
    it->offset = -1;
    return kq_kafka_produce_event(w->producer, w->topic, part, key, (size_t)klen, buf, len,
                                  ev_event_type_name(it->d.event), it, errstr, errlen);
}

/* Commit the open transaction. On failure decides what happens to the producer. */
static int run_transaction(cmd_writer *w, cmd_item **items, size_t n, size_t nappend, char *errstr,
                           size_t errlen)
{
    int rc, needs_abort = 0, b = 0;
    double t0, tbegin = mono_s(), took;

    memcpy(w->heads_saved, w->heads, heads_size(w));
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
        for (size_t i = 0; i < n; i++)
            got += items[i]->d.kind == CMD_D_APPEND && items[i]->delivered;
        if (got == nappend || mono_s() - t0 > 5.0)
            break;
        rd_kafka_poll(w->producer, 10);
    }
    for (size_t i = 0; i < n; i++)
        if (items[i]->d.kind == CMD_D_APPEND &&
            (!items[i]->delivered || items[i]->dr_err || items[i]->offset < 0)) {
            /* Committed, but we do not know where: re-read the log. */
            kq_log_error("transaction committed without a delivery report; re-reading the log");
            w->need_catch_up = 1;
            break;
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
        const cmd_resource *r;

        if (failed && (d->kind == CMD_D_APPEND || d->kind == CMD_D_FOLLOW || d->pending)) {
            answer_unavailable(w, it, "the transaction failed; retry");
            continue;
        }
        switch (d->kind) {
        case CMD_D_APPEND:
            answer_ok(w, it, d->event == EV_RESOURCE_CREATED ? 201 : 200, it->cmd.id, d->version,
                      it->partition, it->offset);
            break;
        case CMD_D_FOLLOW: {
            cmd_item *lead;
            if (d->follow >= i) { /* cannot happen: decisions are made in order */
                answer_unavailable(w, it, "internal error; retry");
                break;
            }
            lead = items[d->follow];
            answer_ok(w, it, lead->d.event == EV_RESOURCE_CREATED ? 201 : 200, lead->cmd.id,
                      lead->d.version, lead->partition, lead->offset);
            break;
        }
        case CMD_D_REPLAY:
            answer_ok(w, it, d->idem.status, d->idem.id, d->idem.version, d->idem.partition,
                      d->idem.offset);
            break;
        case CMD_D_NOOP:
            r = cmd_state_resource(&w->st, it->cmd.id);
            if (r == NULL)
                answer_unavailable(w, it, "state changed; retry");
            else
                answer_ok(w, it, 200, it->cmd.id, r->version, r->partition, r->offset);
            break;
        case CMD_D_ERROR:
        default:
            answer_error(it, d->status, d->code, d->message, d->current_version, 0);
            break;
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
            memset(&items[i]->d, 0, sizeof items[i]->d);
            items[i]->d.kind = CMD_D_ERROR;
            items[i]->d.status = 500;
            items[i]->d.code = "internal";
            snprintf(items[i]->d.message, sizeof items[i]->d.message, "out of memory");
        }
        nappend += items[i]->d.kind == CMD_D_APPEND;
    }
    if (nappend > 0) {
        while (b < NBATCH_BUCKETS && nappend > ((size_t)1 << b))
            b++;
        atomic_fetch_add(&w->m_batches[b], 1);
        atomic_fetch_add(&w->m_batch_sum, nappend);
        if (run_transaction(w, items, n, nappend, errstr, sizeof errstr) != 0)
            failed = 1;
    }
    if (!failed) {
        for (size_t i = 0; i < n; i++) {
            cmd_event ev;
            char es[256];
            if (items[i]->d.kind != CMD_D_APPEND)
                continue;
            cmd_command_event(&items[i]->cmd, &items[i]->d, items[i]->partition, items[i]->offset,
                              &ev);
            if (cmd_state_apply(&w->st, &ev, es, sizeof es) < 0) {
                kq_log_error("applying committed event of %s: %s", items[i]->cmd.id, es);
                w->need_catch_up = 1;
            }
        }
    }
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
        if (cmd_snapshotter_submit(w->snap, &w->st, topic_heads(w, CHAIN_RESOURCE), &full) != 0) {
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
            kq_log_info("snapshot: handed over the whole state (%zu resources) in %.3f ms",
                        cmd_state_resource_count(&w->st), us / 1e3);
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
                        "%zu resources",
                        w->txn_id, CMD_WRITER_PRODUCERS - 1, CMD_WRITER_PRODUCERS - 1,
                        cmd_state_resource_count(&w->st));
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
    kq_config_topic(w->cfg, "resource", w->topic, sizeof w->topic);
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
    if (w->heads == NULL || w->heads_saved == NULL) {
        cmd_writer_free(w);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    if (opts->snapshot_dir != NULL) {
        char es[512];
        if ((w->snapshot_dir = strdup(opts->snapshot_dir)) == NULL) {
            cmd_writer_free(w);
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        }
        rc = cmd_snapshot_load(w->snapshot_dir, w->map_size, &w->st, topic_heads(w, CHAIN_RESOURCE),
                               w->topic, es, sizeof es);
        if (rc == 0) {
            kq_log_info("loaded snapshot from %s: %zu resources, %zu idempotency keys",
                        w->snapshot_dir, cmd_state_resource_count(&w->st),
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
        if (rc == 0)
            cmd_state_delta_clear(&w->st); /* loaded: nothing is new */
        cmd_state_track(&w->st, 1);
        w->events_at_snapshot = w->st.events;
        if ((rc = cmd_snapshotter_new(w->snapshot_dir, w->map_size, w->topic, &w->snap, errstr,
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
    ev_fb_builder_free(&w->fb);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->snapshot_dir);
    free(w);
}
