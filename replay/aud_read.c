/*
 * aud_read.c — reading topic-partitions to the end offsets seen at start; see aud_read.h.
 */
#include "aud_read.h"
#include "aud_filter.h"
#include "kq_err.h"
#include "kq_log.h"
#include "kq_time.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double mono_s(void)
{
    return (double)kq_time_mono_us() / 1e6;
}

static rd_kafka_t *consumer(const kq_config *cfg, const char *group, char *errstr, size_t errlen)
{
    rd_kafka_conf_t *conf = kq_kafka_conf_new(cfg, "kcqrs-audit", errstr, errlen);

    if (conf == NULL)
        return NULL;
    if (kq_kafka_conf_set(conf, "check.crcs", "false", errstr, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return kq_kafka_consumer_new(cfg, group, conf, errstr, errlen);
}

int aud_read_partitions(const kq_config *cfg, const char *topic, int *partitions, char *errstr,
                        size_t errlen)
{
    rd_kafka_t *rk = consumer(cfg, "kcqrs.audit.metadata", errstr, errlen);
    int rc;

    if (rk == NULL)
        return KQ_EKAFKA;
    rc = kq_kafka_topic_partitions(rk, topic, cfg->kafka_timeout_ms, partitions, NULL, errstr,
                                   errlen);
    rd_kafka_destroy(rk);
    return rc;
}

static aud_part *find(aud_part *parts, size_t n, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < n; i++)
        if (parts[i].partition == partition && strcmp(parts[i].topic, topic) == 0)
            return &parts[i];
    return NULL;
}

/* Stop fetching a finished partition (best effort: later records are ignored anyway). */
static void finish(rd_kafka_t *rk, aud_part *p, size_t *left)
{
    rd_kafka_topic_partition_list_t *l;

    if (p->done)
        return;
    p->done = 1;
    (*left)--;
    l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
    rd_kafka_pause_partitions(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

int aud_read_run(const kq_config *cfg, const char *group, aud_part *parts, size_t n,
                 int64_t since_us, aud_record_fn fn, void *arg, char *errstr, size_t errlen)
{
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *tp = NULL;
    size_t left = 0;
    double last = 0;
    int rc = 0;

    if ((rk = consumer(cfg, group, errstr, errlen)) == NULL)
        return KQ_EKAFKA;
    tp = rd_kafka_topic_partition_list_new((int)(n > 0 ? n : 1));
    for (size_t i = 0; i < n; i++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t err;
        double deadline = mono_s() + cfg->kafka_timeout_ms / 1000.0;
        /* A broker that just started answers "not leader" until its
         * partitions have leaders: retry those within the Kafka bound. */
        while ((err = rd_kafka_query_watermark_offsets(rk, parts[i].topic, parts[i].partition, &lo,
                                                       &hi, cfg->kafka_timeout_ms)) ==
                   RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
               err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
               err == RD_KAFKA_RESP_ERR__TRANSPORT ||
               err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
            if (mono_s() > deadline)
                break;
            kq_log_debug("end offset of %s [%" PRId32 "]: %s; retrying", parts[i].topic,
                         parts[i].partition, rd_kafka_err2str(err));
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rc = kq_seterr(errstr, errlen, KQ_EKAFKA, "end offset of %s [%" PRId32 "]: %s",
                           parts[i].topic, parts[i].partition, rd_kafka_err2str(err));
            goto out;
        }
        parts[i].end = hi;
        parts[i].read = 0;
        parts[i].done = hi <= lo;
        /* by time: a timestamp in ms (negative values are special offsets: clamp) */
        rd_kafka_topic_partition_list_add(tp, parts[i].topic, parts[i].partition)->offset =
            since_us < 0                               ? RD_KAFKA_OFFSET_BEGINNING
            : since_us / 1000 - AUD_SEEK_MARGIN_MS < 0 ? 0
                                                       : since_us / 1000 - AUD_SEEK_MARGIN_MS;
    }
    if (since_us >= 0 && n > 0) {
        rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, tp, cfg->kafka_timeout_ms);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rc =
                kq_seterr(errstr, errlen, KQ_EKAFKA, "offsets for time: %s", rd_kafka_err2str(err));
            goto out;
        }
        for (int i = 0; i < tp->cnt; i++) {
            aud_part *p = find(parts, n, tp->elems[i].topic, tp->elems[i].partition);
            if (tp->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                rc = kq_seterr(errstr, errlen, KQ_EKAFKA, "offset for time of %s [%" PRId32 "]: %s",
                               tp->elems[i].topic, tp->elems[i].partition,
                               rd_kafka_err2str(tp->elems[i].err));
                goto out;
            }
            /* -1 (OFFSET_END): no record at or after that time */
            if (p != NULL && (tp->elems[i].offset < 0 || tp->elems[i].offset >= p->end))
                p->done = 1;
            kq_log_debug("%s [%" PRId32 "]: from offset %" PRId64 " (time)", tp->elems[i].topic,
                         tp->elems[i].partition, tp->elems[i].offset);
        }
    }
    for (size_t i = 0; i < n; i++)
        left += !parts[i].done;
    if (left == 0)
        goto out;
    {
        /* assign only the partitions that have something to read */
        rd_kafka_topic_partition_list_t *as = rd_kafka_topic_partition_list_new((int)left);
        rd_kafka_resp_err_t err;
        for (int i = 0; i < tp->cnt; i++) {
            aud_part *p = find(parts, n, tp->elems[i].topic, tp->elems[i].partition);
            if (p != NULL && !p->done)
                rd_kafka_topic_partition_list_add(as, p->topic, p->partition)->offset =
                    tp->elems[i].offset;
        }
        err = rd_kafka_assign(rk, as);
        rd_kafka_topic_partition_list_destroy(as);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rc = kq_seterr(errstr, errlen, KQ_EKAFKA, "assign: %s", rd_kafka_err2str(err));
            goto out;
        }
    }
    last = mono_s();
    while (left > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        aud_part *p;

        if (m == NULL) {
            if (mono_s() - last > 2.0 * cfg->kafka_timeout_ms / 1000.0) {
                rc = kq_seterr(errstr, errlen, KQ_ETIMEDOUT,
                               "no progress for %d ms (%zu partitions not at their end)",
                               2 * cfg->kafka_timeout_ms, left);
                goto out;
            }
            continue;
        }
        last = mono_s();
        p = m->rkt != NULL ? find(parts, n, rd_kafka_topic_name(m->rkt), m->partition) : NULL;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (p != NULL)
                finish(rk, p, &left);
        } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            kq_log_warn("reading %s [%" PRId32 "]: %s", m->rkt ? rd_kafka_topic_name(m->rkt) : "?",
                        m->partition, rd_kafka_message_errstr(m));
            if (rd_kafka_fatal_error(rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                rc = kq_seterr(errstr, errlen, KQ_EKAFKA, "%s", rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                goto out;
            }
        } else if (p != NULL && !p->done) {
            if (m->offset >= p->end) {
                finish(rk, p, &left);
            } else {
                int r;
                p->read++;
                r = fn(arg, p, m);
                if (r < 0) {
                    rc = r;
                    rd_kafka_message_destroy(m);
                    goto out;
                }
                if (r > 0 || m->offset + 1 >= p->end)
                    finish(rk, p, &left);
            }
        }
        rd_kafka_message_destroy(m);
    }
out:
    if (tp != NULL)
        rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

void aud_read_topics(const kq_config *cfg, ev_aggregate_type only, aud_topics *t)
{
    static const ev_aggregate_type all[3] = {EV_AGG_RESOURCE, EV_AGG_WORKFLOW, EV_AGG_RUN};

    t->n = 0;
    for (int i = 0; i < 3; i++) {
        if (only != EV_AGG_UNKNOWN && all[i] != only)
            continue;
        t->agg[t->n] = aud_aggregate_type_topic(all[i]);
        kq_config_topic(cfg, t->agg[t->n], t->name[t->n], KQ_KAFKA_TOPIC_MAX);
        t->n++;
    }
}

int aud_read_plan(const kq_config *cfg, const aud_topics *t, const char *id, aud_part **out,
                  size_t *n, char *errstr, size_t errlen)
{
    aud_part *parts = NULL;
    size_t cnt = 0;

    for (int i = 0; i < t->n; i++) {
        int np = 0, rc;
        aud_part *grown;
        if ((rc = aud_read_partitions(cfg, t->name[i], &np, errstr, errlen)) == KQ_ENOTFOUND) {
            kq_log_warn("topic %s does not exist: nothing to read there", t->name[i]);
            continue;
        }
        if (rc != 0) {
            free(parts);
            return rc;
        }
        grown = realloc(parts, (cnt + (size_t)np) * sizeof *parts);
        if (grown == NULL) {
            free(parts);
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        }
        parts = grown;
        for (int p = 0; p < np; p++) {
            if (id != NULL && kq_kafka_partition_for(id, strlen(id), np) != p)
                continue;
            memset(&parts[cnt], 0, sizeof parts[cnt]);
            snprintf(parts[cnt].topic, sizeof parts[cnt].topic, "%s", t->name[i]);
            parts[cnt].partition = p;
            cnt++;
        }
    }
    *out = parts;
    *n = cnt;
    return 0;
}
