/*
 * qry_status.c — Kafka metadata and watermarks refresher; see qry_status.h.
 */
#include "qry_status.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_time.h"

#define REFRESH_MS 1000
#define BUDGET_MS 2000

struct qry_status {
    const kq_config *cfg;
    rd_kafka_t *rk;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stopping;
    json_t *kafka; /* guarded by lock */
    json_t *ends;
    int64_t good_ms; /* when the last successful refresh finished, 0 = never */
    char topics[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX];
    struct known_broker *known; /* MAX_KNOWN entries; the refresher thread's own */
    int nknown;
};

/* Every broker this process has seen (in the broker list or as a replica), so
 * that one missing from the metadata can be named as down. */
#define MAX_KNOWN 64

typedef struct known_broker {
    int32_t id;
    char host[128]; /* "" until seen in the broker list */
    int port;
} known_broker;

static known_broker *known_get(qry_status *st, int32_t id);

static int in_brokers(const struct rd_kafka_metadata *md, int32_t id)
{
    for (int i = 0; i < md->broker_cnt; i++)
        if (md->brokers[i].id == id)
            return 1;
    return 0;
}

/*
 * Which known brokers accept a TCP connection, all probed at once within
 * PROBE_MS. The metadata alone is not enough: a broker left without a
 * controller quorum keeps serving the last metadata, which still lists the
 * brokers that died after the quorum was lost.
 */
#define PROBE_MS 500

static void probe_brokers(qry_status *st, int *reachable)
{
    struct pollfd pfd[MAX_KNOWN];
    int idx[MAX_KNOWN], n = 0;
    int64_t deadline = kq_time_mono_ms() + PROBE_MS;

    for (int i = 0; i < st->nknown; i++) {
        struct addrinfo hints, *ai = NULL;
        char port[16];
        int fd;

        reachable[i] = 0;
        if (st->known[i].host[0] == '\0')
            continue;
        memset(&hints, 0, sizeof hints);
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICSERV;
        snprintf(port, sizeof port, "%d", st->known[i].port);
        if (getaddrinfo(st->known[i].host, port, &hints, &ai) != 0 || ai == NULL)
            continue;
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            reachable[i] = 1;
            close(fd);
        } else if (fd >= 0 && errno == EINPROGRESS) {
            pfd[n].fd = fd;
            pfd[n].events = POLLOUT;
            idx[n++] = i;
        } else if (fd >= 0) {
            close(fd);
        }
        freeaddrinfo(ai);
    }
    while (n > 0) {
        int left = (int)(deadline - kq_time_mono_ms()), m = 0;
        if (left <= 0 || poll(pfd, (nfds_t)n, left) <= 0)
            break;
        for (int j = 0; j < n; j++) {
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (pfd[j].revents == 0) {
                pfd[m] = pfd[j];
                idx[m++] = idx[j];
                continue;
            }
            if (getsockopt(pfd[j].fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                reachable[idx[j]] = 1;
            close(pfd[j].fd);
        }
        n = m;
    }
    for (int j = 0; j < n; j++)
        close(pfd[j].fd);
}

/* Up: listed in the metadata and reachable. */
static int broker_up(const qry_status *st, const struct rd_kafka_metadata *md, const int *reachable,
                     int32_t id)
{
    if (!in_brokers(md, id))
        return 0;
    for (int i = 0; i < st->nknown; i++)
        if (st->known[i].id == id)
            return reachable[i];
    return 0;
}

/*
 * A partition's state from its metadata and the brokers that are up:
 * unavailable (no leader, or the leader is down), not_enough_replicas (fewer
 * live in-sync replicas than min.insync.replicas: acks=all writes fail),
 * under_replicated (a replica out of sync or down) or ok.
 */
static const char *partition_state(const qry_status *st, const struct rd_kafka_metadata *md,
                                   const int *reachable,
                                   const struct rd_kafka_metadata_partition *mp, int min_isr)
{
    int live_isr = 0;

    if (mp->leader < 0 || !broker_up(st, md, reachable, mp->leader))
        return "unavailable";
    for (int i = 0; i < mp->isr_cnt; i++)
        live_isr += broker_up(st, md, reachable, mp->isrs[i]);
    if (live_isr < min_isr)
        return "not_enough_replicas";
    if (live_isr < mp->replica_cnt)
        return "under_replicated";
    return "ok";
}

static json_t *id_array(const int32_t *ids, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(ids[i]));
    return a;
}

/* One refresh; returns 0 when Kafka answered. */
static int refresh(qry_status *st, json_t **kafka, json_t **ends)
{
    const struct rd_kafka_metadata *md = NULL;
    int64_t deadline =
        kq_time_mono_ms() +
        (st->cfg->kafka_timeout_ms < BUDGET_MS ? st->cfg->kafka_timeout_ms : BUDGET_MS);
    json_t *brokers = json_array(), *topics = json_object(), *down = json_array();
    json_t *unavailable = json_array(), *under = json_array();
    rd_kafka_topic_partition_list_t *lows = NULL, *highs = NULL;
    rd_kafka_resp_err_t err;
    int ok = 1, reachable[MAX_KNOWN];

    *kafka = json_object();
    /* Partitions whose leader is down keep their last known watermarks. */
    *ends = json_deep_copy(st->ends);
    err = rd_kafka_metadata(st->rk, 1, NULL, &md, (int)(deadline - kq_time_mono_ms()));
    if (err) {
        json_object_set_new(*kafka, "connected", json_false());
        json_object_set_new(*kafka, "error", json_string(rd_kafka_err2str(err)));
        json_decref(brokers);
        json_decref(topics);
        json_decref(down);
        json_decref(unavailable);
        json_decref(under);
        return KQ_EKAFKA;
    }
    for (int i = 0; i < md->broker_cnt; i++) {
        known_broker *k = known_get(st, md->brokers[i].id);
        if (k != NULL) {
            snprintf(k->host, sizeof k->host, "%s", md->brokers[i].host);
            k->port = md->brokers[i].port;
        }
    }
    for (int t = 0; t < md->topic_cnt; t++) /* replicas make brokers known */
        for (int p = 0; p < md->topics[t].partition_cnt; p++)
            for (int r = 0; r < md->topics[t].partitions[p].replica_cnt; r++)
                (void)known_get(st, md->topics[t].partitions[p].replicas[r]);
    probe_brokers(st, reachable);
    /* Every partition's low and high watermark in two ListOffsets requests
     * (one per end) rather than two per partition every second: the broker
     * answers each request on its network and handler threads. Partitions
     * without a live leader are left out: no budget spent waiting for them. */
    lows = rd_kafka_topic_partition_list_new(KQ_KAFKA_NTOPICS * 8);
    highs = rd_kafka_topic_partition_list_new(KQ_KAFKA_NTOPICS * 8);
    for (int t = 0; t < KQ_KAFKA_NTOPICS; t++)
        for (int i = 0; i < md->topic_cnt; i++)
            if (strcmp(md->topics[i].topic, st->topics[t]) == 0 && !md->topics[i].err)
                for (int p = 0; p < md->topics[i].partition_cnt; p++) {
                    const struct rd_kafka_metadata_partition *mp = &md->topics[i].partitions[p];
                    if (strcmp(partition_state(st, md, reachable, mp, st->cfg->min_insync_replicas),
                               "unavailable") == 0)
                        continue;
                    rd_kafka_topic_partition_list_add(lows, st->topics[t], mp->id)->offset =
                        RD_KAFKA_OFFSET_BEGINNING;
                    rd_kafka_topic_partition_list_add(highs, st->topics[t], mp->id)->offset =
                        RD_KAFKA_OFFSET_END;
                }
    for (int k = 0; k < 2; k++) {
        rd_kafka_topic_partition_list_t *l = k == 0 ? lows : highs;
        int left = (int)(deadline - kq_time_mono_ms());
        rd_kafka_resp_err_t e = l->cnt == 0 ? RD_KAFKA_RESP_ERR_NO_ERROR
                                : left > 0  ? rd_kafka_offsets_for_times(st->rk, l, left)
                                            : RD_KAFKA_RESP_ERR__TIMED_OUT;
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            for (int i = 0; i < l->cnt; i++)
                if (l->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
                    l->elems[i].err = e;
    }
    for (int t = 0; t < KQ_KAFKA_NTOPICS; t++) {
        const struct rd_kafka_metadata_topic *mt = NULL;
        json_t *parts = json_array();

        for (int i = 0; i < md->topic_cnt; i++)
            if (strcmp(md->topics[i].topic, st->topics[t]) == 0)
                mt = &md->topics[i];
        if (mt == NULL || mt->err) {
            json_object_set_new(topics, st->topics[t],
                                json_pack("{s:o, s:s}", "partitions", parts, "error",
                                          mt ? rd_kafka_err2str(mt->err) : "no such topic"));
            continue;
        }
        for (int p = 0; p < mt->partition_cnt; p++) {
            const struct rd_kafka_metadata_partition *mp = &mt->partitions[p];
            const char *state =
                partition_state(st, md, reachable, mp, st->cfg->min_insync_replicas);
            int32_t id = mp->id;
            const rd_kafka_topic_partition_t *lo =
                rd_kafka_topic_partition_list_find(lows, st->topics[t], id);
            const rd_kafka_topic_partition_t *hi =
                rd_kafka_topic_partition_list_find(highs, st->topics[t], id);
            char key[KQ_KAFKA_TOPIC_MAX + 16];
            json_t *po;

            snprintf(key, sizeof key, "%s/%" PRId32, st->topics[t], id);
            po = json_pack("{s:i, s:i, s:o, s:o, s:s}", "partition", id, "leader", mp->leader,
                           "replicas", id_array(mp->replicas, mp->replica_cnt), "isr",
                           id_array(mp->isrs, mp->isr_cnt), "state", state);
            if (strcmp(state, "under_replicated") == 0)
                json_array_append_new(under, json_string(key));
            else if (strcmp(state, "ok") != 0)
                json_array_append_new(unavailable, json_string(key));
            if (strcmp(state, "unavailable") == 0)
                err = RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE; /* not asked */
            else
                err = lo == NULL || hi == NULL ? RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION
                      : lo->err                ? lo->err
                                               : hi->err;
            if (err == RD_KAFKA_RESP_ERR_NO_ERROR && (lo->offset < 0 || hi->offset < 0))
                err = RD_KAFKA_RESP_ERR__BAD_MSG; /* no offset in the answer */
            if (err) {
                ok = 0;
                json_object_set_new(po, "error", json_string(rd_kafka_err2str(err)));
                json_array_append_new(parts, po);
                continue;
            }
            json_object_set_new(po, "low", json_integer((json_int_t)lo->offset));
            json_object_set_new(po, "high", json_integer((json_int_t)hi->offset));
            json_array_append_new(parts, po);
            json_object_set_new(*ends, key,
                                json_pack("[I,I]", (json_int_t)lo->offset, (json_int_t)hi->offset));
        }
        json_object_set_new(topics, st->topics[t], json_pack("{s:o}", "partitions", parts));
    }
    for (int i = 0; i < st->nknown; i++) {
        const known_broker *k = &st->known[i];
        int up = broker_up(st, md, reachable, k->id);
        json_t *b = json_pack("{s:i, s:s}", "id", k->id, "state", up ? "up" : "down");
        if (k->host[0]) {
            json_object_set_new(b, "host", json_string(k->host));
            json_object_set_new(b, "port", json_integer(k->port));
        }
        json_array_append_new(brokers, b);
        if (!up)
            json_array_append_new(down, json_integer(k->id));
    }
    json_object_set_new(*kafka, "connected", json_true());
    json_object_set_new(*kafka, "brokers", brokers);
    json_object_set_new(*kafka, "brokers_down", down);
    json_object_set_new(*kafka, "partitions_unavailable", unavailable);
    json_object_set_new(*kafka, "partitions_under_replicated", under);
    json_object_set_new(*kafka, "topics", topics);
    if (!ok)
        json_object_set_new(*kafka, "error", json_string("some watermarks are missing"));
    rd_kafka_topic_partition_list_destroy(lows);
    rd_kafka_topic_partition_list_destroy(highs);
    rd_kafka_metadata_destroy(md);
    return 0;
}

/* The entry of broker `id`, added if new (NULL when the table is full). Only
 * the refresher thread calls it. */
static known_broker *known_get(qry_status *st, int32_t id)
{
    for (int i = 0; i < st->nknown; i++)
        if (st->known[i].id == id)
            return &st->known[i];
    if (st->nknown == MAX_KNOWN)
        return NULL;
    memset(&st->known[st->nknown], 0, sizeof st->known[0]);
    st->known[st->nknown].id = id;
    return &st->known[st->nknown++];
}

static void *run(void *arg)
{
    qry_status *st = arg;

    pthread_mutex_lock(&st->lock);
    while (!st->stopping) {
        json_t *kafka, *ends;
        int rc;
        struct timespec ts;

        pthread_mutex_unlock(&st->lock);
        rc = refresh(st, &kafka, &ends);
        pthread_mutex_lock(&st->lock);
        if (rc == 0) {
            json_decref(st->kafka);
            json_decref(st->ends);
            st->kafka = kafka;
            st->ends = ends;
            st->good_ms = kq_time_mono_ms();
        } else {
            /* keep the last good watermarks; report the failure */
            json_object_set_new(
                kafka, "last_good_brokers",
                json_deep_copy(st->kafka ? json_object_get(st->kafka, "brokers") : NULL));
            json_decref(st->kafka);
            st->kafka = kafka;
            json_decref(ends);
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += REFRESH_MS / 1000;
        if (!st->stopping)
            pthread_cond_timedwait(&st->cond, &st->lock, &ts);
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

int qry_status_start(const kq_config *cfg, qry_status **out, char *errstr, size_t errlen)
{
    qry_status *st = calloc(1, sizeof *st);
    rd_kafka_conf_t *conf;
    char kerr[512];

    *out = NULL;
    if (st == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    st->cfg = cfg;
    if ((st->known = calloc(MAX_KNOWN, sizeof *st->known)) == NULL) {
        free(st);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    if (kq_kafka_topic_names(cfg, st->topics) < 0) {
        free(st->known);
        free(st);
        return kq_seterr(errstr, errlen, KQ_ERANGE, "topic prefix too long");
    }
    if ((conf = kq_kafka_conf_new(cfg, "kcqrs-query", errstr, errlen)) == NULL) {
        free(st->known);
        free(st);
        return KQ_EKAFKA;
    }
    if ((st->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof kerr)) == NULL) {
        rd_kafka_conf_destroy(conf);
        free(st->known);
        free(st);
        return kq_seterr(errstr, errlen, KQ_EKAFKA, "librdkafka: %s", kerr);
    }
    st->ends = json_object();
    st->kafka = json_pack("{s:b, s:s}", "connected", 0, "error", "not checked yet");
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->cond, NULL);
    if (pthread_create(&st->thread, NULL, run, st) != 0) {
        rd_kafka_destroy(st->rk);
        json_decref(st->ends);
        json_decref(st->kafka);
        free(st->known);
        free(st);
        return kq_seterr(errstr, errlen, KQ_EIO, "status thread: cannot start");
    }
    *out = st;
    return 0;
}

void qry_status_stop(qry_status *st)
{
    if (st == NULL)
        return;
    pthread_mutex_lock(&st->lock);
    st->stopping = 1;
    pthread_cond_signal(&st->cond);
    pthread_mutex_unlock(&st->lock);
    pthread_join(st->thread, NULL);
    rd_kafka_destroy(st->rk);
    json_decref(st->kafka);
    json_decref(st->ends);
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->cond);
    free(st->known);
    free(st);
}

void qry_status_snapshot(qry_status *st, json_t **kafka, json_t **ends)
{
    pthread_mutex_lock(&st->lock);
    *kafka = json_deep_copy(st->kafka);
    *ends = json_deep_copy(st->ends);
    if (*kafka)
        json_object_set_new(*kafka, "age_ms",
                            st->good_ms ? json_integer(kq_time_mono_ms() - st->good_ms)
                                        : json_null());
    pthread_mutex_unlock(&st->lock);
}
