/*
 * qry_chain.c — the incremental hash-chain checker; see qry_chain.h.
 */
#include "qry_chain.h"

#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "ev_chain.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_rand.h"
#include "kq_time.h"

#define POLL_MS 200
#define DISCOVER_MS 1000
#define EVENT_TOPICS 3        /* kq_kafka_topic_names: the event topics come first */
#define STATUS_BUDGET_MS 2000 /* qry_status.h: a refresh takes at most this long */

typedef struct part {
    int topic; /* index into ch->topics */
    int32_t partition;
    ev_chain c;
    int at_end;         /* read to its end at least once */
    int64_t end_offset; /* the end offset at the last end reached; -1 none */
    int64_t checked_us; /* last end reached or record taken; 0 never */
    int io_error;       /* SHA-256 failed once: logged, the state stays not_verified */
    int64_t low;        /* highest low watermark seen since the (re)start; -1 none */
    int64_t moved_ms;   /* mono ms of the last record or end taken */
} part;

struct qry_chain {
    const kq_config *cfg;
    qry_status *status;
    char topics[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX];
    rd_kafka_t *rk;
    pthread_t thread;
    int started;
    atomic_int stopping;
    pthread_mutex_t mu; /* guards parts and nparts */
    part **parts;
    size_t nparts, cap;
    atomic_uint_fast64_t fed;      /* records fed, every partition, since the start */
    atomic_uint_fast64_t restarts; /* partitions checked again from their start */
};

/* The next offset after what p has checked (0: nothing yet). */
static int64_t checked_end(const part *p)
{
    int64_t e = p->c.has_head ? p->c.head_offset + 1 : 0;
    return p->end_offset > e ? p->end_offset : e;
}

static void part_reset(part *p)
{
    ev_chain_init(&p->c);
    p->at_end = 0;
    p->end_offset = -1;
    p->checked_us = 0;
    p->io_error = 0;
    p->low = -1;
    p->moved_ms = 0;
}

/* Under ch->mu: forget what p checked (its log went back: the topic was
 * deleted and created again) and add it to `l` to be read from its start. */
static void restart_locked(qry_chain *ch, part *p, rd_kafka_topic_partition_list_t *l,
                           const char *why)
{
    kq_log_warn("hash chain: %s/%d %s: checked again from its first record", ch->topics[p->topic],
                (int)p->partition, why);
    part_reset(p);
    atomic_fetch_add(&ch->restarts, 1);
    rd_kafka_topic_partition_list_add(l, ch->topics[p->topic], p->partition)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
}

/* Read the partitions of `l` again from their start (unassigned first, so what
 * was fetched before is dropped). */
static void reassign(qry_chain *ch, rd_kafka_topic_partition_list_t *l)
{
    rd_kafka_error_t *e;

    if (l->cnt == 0)
        return;
    if ((e = rd_kafka_incremental_unassign(ch->rk, l)) != NULL) {
        kq_log_warn("hash chain: cannot unassign %d partitions: %s", l->cnt,
                    rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    if ((e = rd_kafka_incremental_assign(ch->rk, l)) != NULL) {
        kq_log_warn("hash chain: cannot assign %d partitions again: %s", l->cnt,
                    rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
}

static part *find(qry_chain *ch, int topic, int32_t partition)
{
    for (size_t i = 0; i < ch->nparts; i++)
        if (ch->parts[i]->topic == topic && ch->parts[i]->partition == partition)
            return ch->parts[i];
    return NULL;
}

static int topic_of(const qry_chain *ch, const char *name, size_t len)
{
    for (int t = 0; t < EVENT_TOPICS; t++)
        if (strlen(ch->topics[t]) == len && memcmp(ch->topics[t], name, len) == 0)
            return t;
    return -1;
}

/* Add the event partitions the status refresher knows and this checker does
 * not yet read, and assign them from their first record; read a known one
 * again from its start when its watermarks went below what was checked. */
static void discover(qry_chain *ch)
{
    json_t *kafka = NULL, *ends = NULL, *v;
    const char *key;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8),
                                    *again = rd_kafka_topic_partition_list_new(1);
    rd_kafka_error_t *e;
    int64_t taken_ms = 0; /* the watermarks were queried after this (mono ms) */

    if (l == NULL || again == NULL)
        goto out;
    qry_status_snapshot(ch->status, &kafka, &ends);
    if (json_is_true(json_object_get(kafka, "connected")) &&
        json_is_integer(json_object_get(kafka, "age_ms")))
        taken_ms = kq_time_mono_ms() - json_integer_value(json_object_get(kafka, "age_ms")) -
                   STATUS_BUDGET_MS;
    json_object_foreach(ends, key, v)
    {
        const char *slash = strrchr(key, '/');
        char *end;
        long p;
        int t;
        part *np;
        if (slash == NULL || (t = topic_of(ch, key, (size_t)(slash - key))) < 0)
            continue;
        errno = 0;
        p = strtol(slash + 1, &end, 10);
        if (errno != 0 || *end != '\0' || end == slash + 1 || p < 0 || p > INT32_MAX)
            continue;
        pthread_mutex_lock(&ch->mu);
        np = find(ch, t, (int32_t)p);
        if (np != NULL && taken_ms > 0 && json_is_array(v) && json_array_size(v) == 2) {
            int64_t lo = json_integer_value(json_array_get(v, 0)),
                    hi = json_integer_value(json_array_get(v, 1));
            /* the log start never moves back; its end is below what was
             * checked only when no record arrived after the query */
            if (np->low >= 0 && lo < np->low)
                restart_locked(ch, np, again, "low watermark went back");
            else if (hi < checked_end(np) && np->moved_ms < taken_ms)
                restart_locked(ch, np, again, "end offset below what was checked");
            else if (lo > np->low)
                np->low = lo;
        }
        if (np == NULL && ch->nparts == ch->cap) {
            size_t ncap = ch->cap ? 2 * ch->cap : 32;
            part **n = realloc(ch->parts, ncap * sizeof *n);
            if (n != NULL) {
                ch->parts = n;
                ch->cap = ncap;
            }
        }
        if (np == NULL && ch->nparts < ch->cap && (np = calloc(1, sizeof *np)) != NULL) {
            np->topic = t;
            np->partition = (int32_t)p;
            part_reset(np);
            ch->parts[ch->nparts++] = np;
            rd_kafka_topic_partition_list_add(l, ch->topics[t], (int32_t)p)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
        }
        pthread_mutex_unlock(&ch->mu);
    }
    if (l->cnt > 0 && (e = rd_kafka_incremental_assign(ch->rk, l)) != NULL) {
        kq_log_warn("hash chain: cannot assign %d partitions: %s", l->cnt,
                    rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    if (again != NULL)
        reassign(ch, again);
out:
    if (l != NULL)
        rd_kafka_topic_partition_list_destroy(l);
    if (again != NULL)
        rd_kafka_topic_partition_list_destroy(again);
    json_decref(kafka);
    json_decref(ends);
}

static void on_message(qry_chain *ch, const rd_kafka_message_t *m)
{
    int t = topic_of(ch, rd_kafka_topic_name(m->rkt), strlen(rd_kafka_topic_name(m->rkt)));
    rd_kafka_topic_partition_list_t *again;
    part *p;

    if (t < 0 || (again = rd_kafka_topic_partition_list_new(1)) == NULL)
        return;
    pthread_mutex_lock(&ch->mu);
    if ((p = find(ch, t, m->partition)) == NULL)
        goto out;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (m->offset < checked_end(p)) { /* the log went back (reset to its start) */
            restart_locked(ch, p, again, "end offset below what was checked");
            goto out;
        }
        p->at_end = 1;
        p->end_offset = m->offset;
        p->checked_us = kq_time_now_us();
        p->moved_ms = kq_time_mono_ms();
    } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (m->offset < checked_end(p)) {
            /* a record at an offset already checked: the consumer was reset
             * to the start of a log that is not the one checked */
            restart_locked(ch, p, again, "a record at an offset already checked");
            goto out;
        }
        p->moved_ms = kq_time_mono_ms();
        atomic_fetch_add(&ch->fed, 1);
        if (ev_chain_add(&p->c, m->offset, m->payload, m->len) != 0 && !p->io_error) {
            p->io_error = 1;
            kq_log_error("hash chain: SHA-256 failed on %s/%d", ch->topics[t], (int)m->partition);
        }
        p->checked_us = kq_time_now_us();
    }
out:
    pthread_mutex_unlock(&ch->mu);
    reassign(ch, again);
    rd_kafka_topic_partition_list_destroy(again);
}

static void *chain_main(void *arg)
{
    qry_chain *ch = arg;
    int64_t next_discover = 0;

    while (!atomic_load(&ch->stopping)) {
        rd_kafka_message_t *m;
        int64_t now = kq_time_mono_ms();
        if (now >= next_discover) {
            discover(ch);
            next_discover = now + DISCOVER_MS;
        }
        if ((m = rd_kafka_consumer_poll(ch->rk, POLL_MS)) == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR || m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            on_message(ch, m);
        else
            kq_log_debug("hash chain: %s", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

int qry_chain_start(const kq_config *cfg, qry_status *status, qry_chain **out, char *errstr,
                    size_t errlen)
{
    qry_chain *ch = calloc(1, sizeof *ch);
    rd_kafka_conf_t *conf;
    char group[KQ_KAFKA_TOPIC_MAX + 16];
    int rc;

    *out = NULL;
    if (ch == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    ch->cfg = cfg;
    ch->status = status;
    pthread_mutex_init(&ch->mu, NULL);
    if (kq_kafka_topic_names(cfg, ch->topics) < 0) {
        rc = kq_seterr(errstr, errlen, KQ_ERANGE, "KCQRS_TOPIC_PREFIX is too long");
        goto fail;
    }
    snprintf(group, sizeof group, "%s.chain", cfg->topic_prefix);
    if ((conf = kq_kafka_consumer_conf_new(cfg, "kcqrs-query-chain", errstr, errlen)) == NULL ||
        (ch->rk = kq_kafka_consumer_new(cfg, group, conf, errstr, errlen)) == NULL) {
        rc = KQ_EKAFKA;
        goto fail;
    }
    if (pthread_create(&ch->thread, NULL, chain_main, ch) != 0) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "cannot start the hash chain thread");
        goto fail;
    }
    ch->started = 1;
    *out = ch;
    return 0;
fail:
    qry_chain_stop(ch);
    return rc;
}

void qry_chain_stop(qry_chain *ch)
{
    if (ch == NULL)
        return;
    atomic_store(&ch->stopping, 1);
    if (ch->started)
        pthread_join(ch->thread, NULL);
    if (ch->rk != NULL) {
        rd_kafka_consumer_close(ch->rk);
        rd_kafka_destroy(ch->rk);
    }
    for (size_t i = 0; i < ch->nparts; i++)
        free(ch->parts[i]);
    free(ch->parts);
    pthread_mutex_destroy(&ch->mu);
    free(ch);
}

static int by_name(const void *a, const void *b)
{
    const part *x = *(part *const *)a, *y = *(part *const *)b;

    if (x->topic != y->topic)
        return x->topic < y->topic ? -1 : 1;
    return (x->partition > y->partition) - (x->partition < y->partition);
}

/* The partition's state, from a copy of its chain (*c; finishing it settles a
 * pending mismatch, so a forged last record shows at once). */
static const char *part_state(const part *p, ev_chain *c)
{
    *c = p->c;
    ev_chain_finish(c);
    if (c->brk != EV_CHAIN_INTACT)
        return "broken";
    return p->at_end && !p->io_error ? "intact" : "not_verified";
}

static json_t *part_json(const qry_chain *ch, const part *p)
{
    ev_chain c;
    char hx[EV_HEX_LEN + 1], at[KQ_TIME_MAX];
    const char *state = part_state(p, &c);
    json_t *brk = json_null();

    if (c.brk != EV_CHAIN_INTACT)
        brk = json_pack("{s:s, s:I, s:s}", "kind", ev_chain_break_name(c.brk), "offset",
                        (json_int_t)c.brk_offset, "message", c.brk_msg);
    if (c.has_head)
        kq_hex_encode(c.head, EV_HASH_LEN, hx);
    if (p->checked_us > 0)
        kq_time_format(p->checked_us, at);
    return json_pack("{s:s, s:i, s:s, s:I, s:o, s:o, s:o, s:o, s:o}", "topic", ch->topics[p->topic],
                     "partition", (int)p->partition, "state", state, "events_checked",
                     (json_int_t)c.records, "last_checked_offset",
                     c.has_head ? json_integer(c.head_offset) : json_null(), "head",
                     c.has_head ? json_string(hx) : json_null(), "end_offset",
                     p->end_offset >= 0 ? json_integer(p->end_offset) : json_null(), "checked_at",
                     p->checked_us > 0 ? json_string(at) : json_null(), "break", brk);
}

json_t *qry_chain_json(qry_chain *ch)
{
    json_t *items = json_array(), *intact;
    part **sorted = NULL;
    size_t n;
    int broken = 0, unverified = 0;

    pthread_mutex_lock(&ch->mu);
    n = ch->nparts;
    if (n > 0 && (sorted = malloc(n * sizeof *sorted)) != NULL) {
        memcpy(sorted, ch->parts, n * sizeof *sorted);
        qsort(sorted, n, sizeof *sorted, by_name);
        for (size_t i = 0; i < n; i++) {
            json_t *pj = part_json(ch, sorted[i]);
            const char *st = json_string_value(json_object_get(pj, "state"));
            if (st == NULL) { /* out of memory: a partition we cannot show is not intact */
                json_decref(pj);
                unverified++;
                continue;
            }
            broken += strcmp(st, "broken") == 0;
            unverified += strcmp(st, "not_verified") == 0;
            json_array_append_new(items, pj);
        }
    }
    pthread_mutex_unlock(&ch->mu);
    free(sorted);
    if (broken)
        intact = json_false();
    else if (unverified || json_array_size(items) == 0)
        intact = json_null();
    else
        intact = json_true();
    return json_pack("{s:o, s:o}", "intact", intact, "partitions", items);
}

void qry_chain_metrics(qry_chain *ch, FILE *out)
{
    static const char *const states[] = {"intact", "broken", "not_verified"};
    size_t n[3] = {0, 0, 0};

    if (ch == NULL)
        return;
    pthread_mutex_lock(&ch->mu);
    for (size_t i = 0; i < ch->nparts; i++) {
        ev_chain c;
        const char *st = part_state(ch->parts[i], &c);
        for (int k = 0; k < 3; k++)
            n[k] += strcmp(st, states[k]) == 0;
    }
    pthread_mutex_unlock(&ch->mu);
    fprintf(out, "# HELP kcqrs_query_chain_partitions Event partitions by hash-chain state.\n"
                 "# TYPE kcqrs_query_chain_partitions gauge\n");
    for (int k = 0; k < 3; k++)
        fprintf(out, "kcqrs_query_chain_partitions{state=\"%s\"} %zu\n", states[k], n[k]);
    fprintf(out,
            "# HELP kcqrs_query_chain_events_checked_total Records fed to the hash-chain check.\n"
            "# TYPE kcqrs_query_chain_events_checked_total counter\n"
            "kcqrs_query_chain_events_checked_total %" PRIuFAST64 "\n"
            "# HELP kcqrs_query_chain_restarts_total Partitions checked again from their first "
            "record because their log went back (topic deleted and created again).\n"
            "# TYPE kcqrs_query_chain_restarts_total counter\n"
            "kcqrs_query_chain_restarts_total %" PRIuFAST64 "\n",
            atomic_load(&ch->fed), atomic_load(&ch->restarts));
}
