/*
 * qry_stream.c — the event stream; see qry_stream.h.
 */
#include "qry_stream.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ev_codec.h"
#include "kq_err.h"
#include "kq_json_in.h"
#include "kq_log.h"
#include "kq_problem.h"
#include "kq_time.h"
#include "kq_token.h"
#include "qry_evjson.h"
#include "qry_spos.h"

#define POLL_MS 100
#define MAX_TYPES 16
#define STOP_WAIT_MS 10000

struct qry_stream {
    const kq_config *cfg;
    qry_status *status;
    char topics[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX]; /* the first three: event topics */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned active; /* mu: streams whose thread runs (or is about to) */
    atomic_int stopping;
    atomic_uint_fast64_t started, refused, events, slow, heartbeats;
};

/* What a request asked for; the thread owns it. */
typedef struct job {
    qry_stream *ss;
    kq_http_stream *hs;
    int ndjson;
    enum { FROM_NOW, FROM_BEGINNING, FROM_TOKEN, FROM_POSITION } from;
    int topic_only;                 /* -1 = all, else the aggregate topic index */
    char aggregate_id[65];          /* "" = all */
    ev_event_type types[MAX_TYPES]; /* ntypes == 0: all */
    int ntypes;
    int ntok_topic; /* FROM_TOKEN: topic index */
    int32_t tok_partition;
    int64_t tok_offset;
    int nparts[QRY_SPOS_TOPICS]; /* partitions per topic now */
    qry_spos pos;                /* FROM_POSITION: the start; then the current position */
} job;

int qry_stream_new(const kq_config *cfg, qry_status *status, qry_stream **out)
{
    qry_stream *ss = calloc(1, sizeof *ss);

    *out = NULL;
    if (ss == NULL)
        return KQ_ENOMEM;
    ss->cfg = cfg;
    ss->status = status;
    if (kq_kafka_topic_names(cfg, ss->topics) < 0) {
        free(ss);
        return KQ_ERANGE;
    }
    pthread_mutex_init(&ss->mu, NULL);
    pthread_cond_init(&ss->cv, NULL);
    *out = ss;
    return 0;
}

void qry_stream_free(qry_stream *ss)
{
    int64_t until;

    if (ss == NULL)
        return;
    atomic_store(&ss->stopping, 1);
    until = kq_time_mono_ms() + STOP_WAIT_MS;
    pthread_mutex_lock(&ss->mu);
    while (ss->active > 0 && kq_time_mono_ms() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ss->cv, &ss->mu, &ts);
    }
    if (ss->active > 0) { /* never expected: leave it allocated for the threads */
        pthread_mutex_unlock(&ss->mu);
        kq_log_error("event stream: %u streams did not end", ss->active);
        return;
    }
    pthread_mutex_unlock(&ss->mu);
    pthread_mutex_destroy(&ss->mu);
    pthread_cond_destroy(&ss->cv);
    free(ss);
}

void qry_stream_metrics(qry_stream *ss, FILE *out)
{
    unsigned active;

    if (ss == NULL)
        return;
    pthread_mutex_lock(&ss->mu);
    active = ss->active;
    pthread_mutex_unlock(&ss->mu);
    fprintf(out,
            "# HELP kcqrs_query_streams_active Event streams open now.\n"
            "# TYPE kcqrs_query_streams_active gauge\n"
            "kcqrs_query_streams_active %u\n"
            "# HELP kcqrs_query_streams_started_total Event streams started.\n"
            "# TYPE kcqrs_query_streams_started_total counter\n"
            "kcqrs_query_streams_started_total %" PRIuFAST64 "\n"
            "# HELP kcqrs_query_streams_refused_total Event streams refused: KCQRS_STREAM_MAX "
            "open.\n"
            "# TYPE kcqrs_query_streams_refused_total counter\n"
            "kcqrs_query_streams_refused_total %" PRIuFAST64 "\n"
            "# HELP kcqrs_query_stream_events_total Events sent on event streams.\n"
            "# TYPE kcqrs_query_stream_events_total counter\n"
            "kcqrs_query_stream_events_total %" PRIuFAST64 "\n"
            "# HELP kcqrs_query_stream_slow_consumers_total Event streams ended because the "
            "client did not read.\n"
            "# TYPE kcqrs_query_stream_slow_consumers_total counter\n"
            "kcqrs_query_stream_slow_consumers_total %" PRIuFAST64 "\n"
            "# HELP kcqrs_query_stream_heartbeats_total Heartbeats sent on event streams.\n"
            "# TYPE kcqrs_query_stream_heartbeats_total counter\n"
            "kcqrs_query_stream_heartbeats_total %" PRIuFAST64 "\n",
            active, atomic_load(&ss->started), atomic_load(&ss->refused), atomic_load(&ss->events),
            atomic_load(&ss->slow), atomic_load(&ss->heartbeats));
}

/* ------------------------------------------------------------------ the stream thread */

static int topic_index(const qry_stream *ss, const char *name)
{
    for (int t = 0; t < QRY_SPOS_TOPICS; t++)
        if (strcmp(ss->topics[t], name) == 0)
            return t;
    return -1;
}

/* The timestamp of the record at (topic, partition, offset) (or the next committed one). */
static int record_time(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t offset,
                       int64_t *ts_ms, job *j)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    int64_t until = kq_time_mono_ms() + j->ss->cfg->kafka_timeout_ms;
    int rc = KQ_ETIMEDOUT;

    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    if (rd_kafka_assign(rk, l) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_topic_partition_list_destroy(l);
        return KQ_EKAFKA;
    }
    rd_kafka_topic_partition_list_destroy(l);
    while (kq_time_mono_ms() < until && !kq_http_stream_gone(j->hs)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, POLL_MS);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            *ts_ms = rd_kafka_message_timestamp(m, NULL);
            rc = 0;
        } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            *ts_ms = -1; /* nothing there (yet): the other partitions start now */
            rc = 0;
        }
        rd_kafka_message_destroy(m);
        if (rc == 0)
            break;
    }
    rd_kafka_assign(rk, NULL);
    return rc;
}

/* Fill j->pos with where every partition starts. 0 or a KQ_E* code. */
static int start_positions(rd_kafka_t *rk, job *j)
{
    qry_stream *ss = j->ss;
    int timeout = ss->cfg->kafka_timeout_ms;
    int64_t ts = -1;
    int rc;

    if (j->from == FROM_TOKEN && (rc = record_time(rk, ss->topics[j->ntok_topic], j->tok_partition,
                                                   j->tok_offset, &ts, j)) != 0)
        return rc;
    for (int t = 0; t < QRY_SPOS_TOPICS; t++) {
        int had = j->from == FROM_POSITION ? j->pos.nparts[t] : 0;
        rd_kafka_topic_partition_list_t *l = NULL;
        if (j->from == FROM_TOKEN && ts >= 0)
            l = rd_kafka_topic_partition_list_new(j->nparts[t]);
        for (int k = 0; k < j->nparts[t]; k++) {
            int64_t lo = 0, hi = 0;
            if (j->from == FROM_POSITION && k < had)
                continue;
            if (j->from == FROM_BEGINNING || j->from == FROM_POSITION) {
                j->pos.next[t][k] = 0; /* a partition added since the position: all of it */
                continue;
            }
            if (l != NULL) {
                rd_kafka_topic_partition_list_add(l, ss->topics[t], k)->offset = ts;
                continue;
            }
            if (rd_kafka_query_watermark_offsets(rk, ss->topics[t], k, &lo, &hi, timeout) !=
                RD_KAFKA_RESP_ERR_NO_ERROR)
                return KQ_EKAFKA;
            j->pos.next[t][k] = hi;
        }
        if (l != NULL) {
            if (rd_kafka_offsets_for_times(rk, l, timeout) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                rd_kafka_topic_partition_list_destroy(l);
                return KQ_EKAFKA;
            }
            for (int i = 0; i < l->cnt; i++) {
                int64_t off = l->elems[i].offset, lo = 0, hi = 0;
                if (l->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                    rd_kafka_topic_partition_list_destroy(l);
                    return KQ_EKAFKA;
                }
                if (off < 0) { /* nothing at or after that time: the end */
                    if (rd_kafka_query_watermark_offsets(rk, ss->topics[t], l->elems[i].partition,
                                                         &lo, &hi,
                                                         timeout) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                        rd_kafka_topic_partition_list_destroy(l);
                        return KQ_EKAFKA;
                    }
                    off = hi;
                }
                j->pos.next[t][l->elems[i].partition] = off;
            }
            rd_kafka_topic_partition_list_destroy(l);
        }
        j->pos.nparts[t] = j->nparts[t];
    }
    if (j->from == FROM_TOKEN)
        j->pos.next[j->ntok_topic][j->tok_partition] = j->tok_offset;
    return 0;
}

static int type_wanted(const job *j, ev_event_type type)
{
    if (j->ntypes == 0)
        return 1;
    for (int i = 0; i < j->ntypes; i++)
        if (j->types[i] == type)
            return 1;
    return 0;
}

/*
 * The last message of a stream that ends early: a problem object (lib/kq_problem.h;
 * `status` is advisory, the answer was 200) with the position to resume from as the
 * extension member resume_from (when an event position is known).
 */
static void end_with(job *j, unsigned status, const char *code, const char *message,
                     const char *resume)
{
    json_t *o = kq_problem_new(status, code, message, NULL, QRY_STREAM_PATH);
    char *text = NULL, *line = NULL;
    int n = -1;

    if (o != NULL && resume != NULL)
        json_object_set_new(o, "resume_from", json_string(resume));
    text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text != NULL)
        n = j->ndjson ? asprintf(&line, "{\"error\":%s}\n", text)
                      : asprintf(&line, "event: error\ndata: %s\n\n", text);
    free(text);
    kq_http_stream_end(j->hs, n > 0 ? line : NULL, n > 0 ? (size_t)n : 0);
    j->hs = NULL;
    if (n > 0)
        free(line);
}

/*
 * Write to the client with backpressure: while the bytes not yet written to the socket
 * would pass the bound, wait (Kafka keeps the rest); a client that reads nothing for
 * KCQRS_STREAM_STALL_MS meanwhile is cut with a last message. 0 written; 1 ended.
 */
static int put(job *j, const char *data, size_t len, const char *last_id)
{
    qry_stream *ss = j->ss;
    int64_t since = kq_time_mono_ms();
    size_t pending = kq_http_stream_pending(j->hs);

    for (;;) {
        int rc = kq_http_stream_write(j->hs, data, len);
        size_t now_pending;
        if (rc == 0)
            return 0;
        if (rc != KQ_ERANGE || atomic_load(&ss->stopping))
            return 1;
        now_pending = kq_http_stream_pending(j->hs);
        if (now_pending < pending) { /* the client read something: wait on */
            pending = now_pending;
            since = kq_time_mono_ms();
        } else if (kq_time_mono_ms() - since >= ss->cfg->stream_stall_ms) {
            atomic_fetch_add(&ss->slow, 1);
            end_with(j, 429, "slow_consumer",
                     "the client read nothing while more than KCQRS_STREAM_BUFFER_KB waited "
                     "unsent; resume from resume_from",
                     last_id);
            return 1;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* One record: filter, format, write. 0 go on (nothing written); 2 written; 1 the stream
 * ended (slow or gone). */
static int on_record(job *j, const rd_kafka_message_t *m, int t, char *id, size_t idlen,
                     char *last_id)
{
    qry_stream *ss = j->ss;
    ev_envelope e;
    json_t *o = NULL;
    char err[256], *text = NULL, *line = NULL;
    int n, rc;

    if (m->partition < 0 || m->partition >= QRY_SPOS_MAX_PARTS || t < 0)
        return 0;
    if (m->partition >= j->pos.nparts[t])
        j->pos.nparts[t] = m->partition + 1; /* never expected: assigned partitions only */
    j->pos.next[t][m->partition] = m->offset + 1;
    if (m->payload == NULL) /* an erased event (tombstone) */
        return 0;
    if (j->topic_only >= 0 && j->topic_only != t)
        return 0;
    if (j->aggregate_id[0] != '\0') {
        size_t il = strlen(j->aggregate_id);
        if (m->key == NULL || m->key_len <= il || memcmp(m->key, j->aggregate_id, il) != 0 ||
            ((const char *)m->key)[il] != '/')
            return 0;
    }
    if (ev_envelope_decode(m->payload, m->len, &e, err, sizeof err) != 0) {
        kq_log_debug("event stream: %s [%" PRId32 "] offset %" PRId64 ": %s, skipped",
                     ss->topics[t], m->partition, m->offset, err);
        return 0;
    }
    if (!type_wanted(j, e.payload_type))
        return 0;
    if ((rc = qry_evjson_build(&e, m->payload, ss->topics[t], m->partition, m->offset, &o)) != 0) {
        kq_log_debug("event stream: %s [%" PRId32 "] offset %" PRId64 ": not printable, skipped",
                     ss->topics[t], m->partition, m->offset);
        return 0;
    }
    if (qry_spos_encode(&j->pos, id, idlen) < 0) {
        json_decref(o);
        return 0;
    }
    if (j->ndjson) {
        json_object_set_new(o, "stream_position", json_string(id));
        text = json_dumps(o, JSON_COMPACT);
        n = text != NULL ? asprintf(&line, "%s\n", text) : -1;
    } else {
        text = json_dumps(o, JSON_COMPACT);
        n = text != NULL ? asprintf(&line, "id: %s\ndata: %s\n\n", id, text) : -1;
    }
    json_decref(o);
    free(text);
    if (n < 0)
        return 0;
    rc = put(j, line, (size_t)n, last_id);
    free(line);
    if (rc != 0)
        return 1;
    atomic_fetch_add(&ss->events, 1);
    memcpy(last_id, id, strlen(id) + 1);
    return 2;
}

static void *stream_main(void *arg)
{
    job *j = arg;
    qry_stream *ss = j->ss;
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *l = NULL;
    char err[512], group[KQ_KAFKA_TOPIC_MAX + 16];
    char *id = malloc(QRY_SPOS_TEXT_MAX), *last_id = malloc(QRY_SPOS_TEXT_MAX);
    int64_t last_write = kq_time_mono_ms(), hb = ss->cfg->stream_heartbeat_ms;
    int rc;

    if (id == NULL || last_id == NULL) {
        end_with(j, 500, "internal", "out of memory", NULL);
        goto out;
    }
    snprintf(group, sizeof group, "%s.stream", ss->cfg->topic_prefix);
    if ((conf = kq_kafka_consumer_conf_new(ss->cfg, "kcqrs-query-stream", err, sizeof err)) ==
            NULL ||
        kq_kafka_conf_bound_queue(conf, QRY_STREAM_QUEUE_KB, err, sizeof err) != 0 ||
        (rk = kq_kafka_consumer_new(ss->cfg, group, conf, err, sizeof err)) == NULL) {
        kq_log_warn("event stream: Kafka consumer: %s", err);
        end_with(j, 503, "unavailable", "Kafka is unavailable", NULL);
        goto out;
    }
    if ((rc = start_positions(rk, j)) != 0) {
        kq_log_warn("event stream: cannot find where to start: %s", kq_strerror(rc));
        end_with(j, 503, "unavailable", "Kafka is unavailable: cannot find where to start", NULL);
        goto out;
    }
    if (qry_spos_encode(&j->pos, last_id, QRY_SPOS_TEXT_MAX) < 0) {
        end_with(j, 500, "internal", "position does not encode", NULL);
        goto out;
    }
    l = rd_kafka_topic_partition_list_new(QRY_SPOS_TOPICS * 8);
    for (int t = 0; t < QRY_SPOS_TOPICS; t++)
        for (int k = 0; k < j->pos.nparts[t]; k++)
            rd_kafka_topic_partition_list_add(l, ss->topics[t], k)->offset = j->pos.next[t][k];
    if (rd_kafka_assign(rk, l) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        end_with(j, 503, "unavailable", "Kafka is unavailable: cannot assign partitions", NULL);
        goto out;
    }
    last_write = kq_time_mono_ms() - hb; /* a heartbeat now: the start is fixed */
    while (!atomic_load(&ss->stopping) && !kq_http_stream_gone(j->hs)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, POLL_MS);
        int64_t now;
        if (m != NULL) {
            int ended = 0;
            if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                ended = on_record(j, m, topic_index(ss, rd_kafka_topic_name(m->rkt)), id,
                                  QRY_SPOS_TEXT_MAX, last_id);
                if (ended == 2) {
                    ended = 0;
                    last_write = kq_time_mono_ms();
                }
            } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                kq_log_debug("event stream: %s", rd_kafka_message_errstr(m));
            }
            rd_kafka_message_destroy(m);
            if (ended)
                goto out;
        }
        now = kq_time_mono_ms();
        if (now - last_write >= hb) {
            const char *beat = j->ndjson ? "\n" : ": hb\n\n";
            if (put(j, beat, strlen(beat), last_id) != 0)
                goto out;
            atomic_fetch_add(&ss->heartbeats, 1);
            last_write = now;
        }
    }
    if (atomic_load(&ss->stopping) && j->hs != NULL)
        end_with(j, 503, "shutting_down", "the server is stopping; resume from resume_from",
                 last_id);
out:
    if (j->hs != NULL)
        kq_http_stream_end(j->hs, NULL, 0);
    if (l != NULL)
        rd_kafka_topic_partition_list_destroy(l);
    if (rk != NULL) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    free(id);
    free(last_id);
    free(j);
    pthread_mutex_lock(&ss->mu);
    ss->active--;
    pthread_cond_broadcast(&ss->cv);
    pthread_mutex_unlock(&ss->mu);
    return NULL;
}

/* ------------------------------------------------------------------ the handler */

static const char *const known[] = {"from",         "after",      "aggregate_type",
                                    "aggregate_id", "event_type", NULL};

typedef struct args_ctx {
    json_t *details;
    unsigned seen;
} args_ctx;

static int check_arg(void *ctx, const char *name, const char *value)
{
    args_ctx *a = ctx;
    unsigned bit = 0;
    (void)value;
    for (size_t i = 0; bit == 0 && known[i]; i++)
        if (strcmp(name, known[i]) == 0)
            bit = 1u << i;
    if (json_array_size(a->details) >= 32)
        return 0;
    if (bit == 0)
        kq_jin_detail_add(a->details, name, "unknown query parameter");
    else if (a->seen & bit)
        kq_jin_detail_add(a->details, name, "query parameter given more than once");
    a->seen |= bit;
    return 0;
}

static void parse_types(job *j, const char *s, json_t *details)
{
    while (*s != '\0') {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        ev_event_type t = ev_event_type_from_name(s, len);
        if (t == EV_EVENT_NONE || j->ntypes == MAX_TYPES) {
            kq_jin_detail_add(details, "event_type",
                              "unknown event type (e.g. ResourceCreated; several: "
                              "ResourceCreated,ResourceUpdated)");
            return;
        }
        j->types[j->ntypes++] = t;
        s += len;
        if (*s == ',' && *++s == '\0') {
            kq_jin_detail_add(details, "event_type", "empty event type after ','");
            return;
        }
    }
    if (j->ntypes == 0)
        kq_jin_detail_add(details, "event_type", "must name at least one event type");
}

/*
 * Partitions per event topic from the status snapshot: 0; KQ_EKAFKA when its last check
 * found Kafka unreachable (`why` says why: the snapshot keeps the last known partitions,
 * so a stream begun now would answer 200 and then fail); KQ_ENOTFOUND while unknown.
 */
static int partition_counts(qry_stream *ss, int nparts[QRY_SPOS_TOPICS], char *why, size_t whylen)
{
    json_t *kafka = NULL, *ends = NULL, *v;
    const char *key;
    int any = 0;

    memset(nparts, 0, sizeof(int) * QRY_SPOS_TOPICS);
    if (ss->status == NULL)
        return KQ_ENOTFOUND;
    qry_status_snapshot(ss->status, &kafka, &ends);
    if (!json_is_true(json_object_get(kafka, "connected"))) {
        const char *e = json_string_value(json_object_get(kafka, "error"));
        snprintf(why, whylen, "%s", e != NULL ? e : "not connected");
        json_decref(kafka);
        json_decref(ends);
        return KQ_EKAFKA;
    }
    json_object_foreach(ends, key, v)
    {
        const char *slash = strrchr(key, '/');
        for (int t = 0; slash != NULL && t < QRY_SPOS_TOPICS; t++) {
            size_t tl = strlen(ss->topics[t]);
            long p;
            if ((size_t)(slash - key) != tl || strncmp(key, ss->topics[t], tl) != 0)
                continue;
            p = strtol(slash + 1, NULL, 10);
            if (p >= 0 && p < QRY_SPOS_MAX_PARTS && p + 1 > nparts[t])
                nparts[t] = (int)p + 1;
            any = 1;
        }
    }
    json_decref(kafka);
    json_decref(ends);
    for (int t = 0; t < QRY_SPOS_TOPICS; t++)
        if (nparts[t] == 0)
            any = 0;
    return any ? 0 : KQ_ENOTFOUND;
}

static void refuse_503(kq_http_req *req, const char *code, const char *msg)
{
    kq_http_add_header(req, "Retry-After", "1");
    kq_http_respond_error(req, 503, code, msg, NULL);
}

/* Parse and check everything of the request into j; details get one item per fault. */
static void parse(qry_stream *ss, kq_http_req *req, job *j, json_t *details)
{
    const char *from = kq_http_req_query(req, "from"), *after = kq_http_req_query(req, "after");
    const char *lei = kq_http_req_header(req, "Last-Event-ID"), *s, *accept;
    args_ctx a = {details, 0};

    kq_http_req_query_each(req, check_arg, &a);
    j->topic_only = -1;
    if ((s = kq_http_req_query(req, "aggregate_type")) != NULL) {
        if (strcmp(s, "resource") == 0)
            j->topic_only = 0;
        else if (strcmp(s, "workflow") == 0)
            j->topic_only = 1;
        else if (strcmp(s, "run") == 0)
            j->topic_only = 2;
        else
            kq_jin_detail_add(details, "aggregate_type", "must be one of resource, workflow, run");
    }
    if ((s = kq_http_req_query(req, "aggregate_id")) != NULL) {
        if (!kq_jin_id_valid(s))
            kq_jin_detail_add(details, "aggregate_id", "must match [A-Za-z0-9._-]{1,64}");
        else
            snprintf(j->aggregate_id, sizeof j->aggregate_id, "%s", s);
    }
    if ((s = kq_http_req_query(req, "event_type")) != NULL)
        parse_types(j, s, details);
    if (after != NULL && from != NULL)
        kq_jin_detail_add(details, "after", "give either after (a position) or from, not both");
    j->from = FROM_NOW;
    if (lei != NULL || after != NULL) {
        j->from = FROM_POSITION;
        if (qry_spos_decode(lei != NULL ? lei : after, &j->pos) != 0)
            kq_jin_detail_add(details, lei != NULL ? "Last-Event-ID" : "after",
                              "not a stream position (the id of an event of this stream)");
    } else if (from == NULL || strcmp(from, "now") == 0) {
        j->from = FROM_NOW;
    } else if (strcmp(from, "beginning") == 0) {
        j->from = FROM_BEGINNING;
    } else {
        char topic[KQ_TOKEN_MAX];
        j->from = FROM_TOKEN;
        if (kq_token_parse(from, topic, sizeof topic, &j->tok_partition, &j->tok_offset) != 0 ||
            (j->ntok_topic = topic_index(ss, topic)) < 0 || j->tok_partition < 0 ||
            j->tok_partition >= QRY_SPOS_MAX_PARTS)
            kq_jin_detail_add(details, "from",
                              "must be beginning, now or a consistency token of an event topic");
    }
    accept = kq_http_req_header(req, "Accept");
    j->ndjson = accept != NULL && strstr(accept, "application/x-ndjson") != NULL;
}

void qry_stream_handler(kq_http_req *req, void *arg)
{
    qry_stream *ss = arg;
    json_t *details = json_array();
    job *j = calloc(1, sizeof *j);
    pthread_t tid;
    pthread_attr_t attr;
    char why[256];
    int over = 0, rc;

    if (j == NULL || details == NULL) {
        free(j);
        json_decref(details);
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        return;
    }
    j->ss = ss;
    parse(ss, req, j, details);
    if (json_array_size(details) > 0) {
        free(j);
        kq_http_respond_error(req, 400, "validation_failed", "invalid request parameters", details);
        return;
    }
    json_decref(details);
    if ((rc = partition_counts(ss, j->nparts, why, sizeof why)) != 0) {
        char msg[384];
        free(j);
        snprintf(msg, sizeof msg, "Kafka is unavailable: %s",
                 rc == KQ_EKAFKA ? why : "its topics are not known yet");
        refuse_503(req, "unavailable", msg);
        return;
    }
    for (int t = 0; t < QRY_SPOS_TOPICS; t++)
        if (j->from == FROM_POSITION && j->pos.nparts[t] > j->nparts[t])
            over = 1;
    if (j->from == FROM_TOKEN && j->tok_partition >= j->nparts[j->ntok_topic])
        over = 1;
    if (over) {
        json_t *d = json_array();
        kq_jin_detail_add(d,
                          j->from == FROM_TOKEN                              ? "from"
                          : kq_http_req_header(req, "Last-Event-ID") != NULL ? "Last-Event-ID"
                                                                             : "after",
                          "names a partition this deployment does not have");
        free(j);
        kq_http_respond_error(req, 400, "validation_failed", "invalid request parameters", d);
        return;
    }
    pthread_mutex_lock(&ss->mu);
    if (atomic_load(&ss->stopping) || ss->active >= (unsigned)ss->cfg->stream_max) {
        pthread_mutex_unlock(&ss->mu);
        free(j);
        atomic_fetch_add(&ss->refused, 1);
        refuse_503(req, "too_many_streams",
                   "too many event streams are open (KCQRS_STREAM_MAX); try again later");
        return;
    }
    ss->active++;
    pthread_mutex_unlock(&ss->mu);
    kq_http_add_header(req, "Cache-Control", "no-cache");
    kq_http_add_header(req, "X-Accel-Buffering", "no");
    if (kq_http_stream_begin(req, 200, j->ndjson ? "application/x-ndjson" : "text/event-stream",
                             (size_t)ss->cfg->stream_buffer_kb * 1024, &j->hs) != 0) {
        free(j);
        kq_http_respond_error(req, 500, "internal", "out of memory", NULL);
        goto undo;
    }
    if (strcmp(kq_http_req_method(req), "HEAD") == 0) {
        kq_http_stream_end(j->hs, NULL, 0); /* the GET's head, no events, no consumer */
        free(j);
        goto undo;
    }
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&tid, &attr, stream_main, j) != 0) {
        pthread_attr_destroy(&attr);
        end_with(j, 500, "internal", "cannot start a thread", NULL);
        free(j);
        goto undo;
    }
    pthread_attr_destroy(&attr);
    atomic_fetch_add(&ss->started, 1);
    return;
undo:
    pthread_mutex_lock(&ss->mu);
    ss->active--;
    pthread_cond_broadcast(&ss->cv);
    pthread_mutex_unlock(&ss->mu);
}
