/*
 * cmd_catchup.c — reading the event topics to their end; see cmd_catchup.h.
 */
#include "cmd_catchup.h"
#include "cmd_aggregate.h"
#include "kq_err.h"
#include "kq_time.h"
#include "kq_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Forget the state (it describes another log) and read from offset 0. */
static int reset_state(cmd_catchup *c, const char *why)
{
    int rc;
    kq_log_warn("discarding the command-side state loaded from the snapshot: %s; reading the "
                "event topics from the start",
                why);
    cmd_chain_reset(c->chain); /* the log is read again from offset 0 */
    /* A fresh state's delta is full: its first snapshot replaces the old one.
     * The expiry settings stay. */
    rc = cmd_state_reinit(c->st);
    cmd_state_track(c->st, c->track);
    c->reset = 1;
    return rc;
}

int cmd_catchup_check_state(cmd_catchup *c, rd_kafka_t *rk, char *errstr, size_t errlen)
{
    cmd_state *st = c->st;
    char *cid = rd_kafka_clusterid(rk, c->cfg->kafka_timeout_ms);
    int rc = 0;

    if (cid != NULL) {
        if (st->cluster_id[0] != '\0' && strcmp(st->cluster_id, cid) != 0) {
            char why[200];
            snprintf(why, sizeof why, "it is of Kafka cluster %s, this is %s", st->cluster_id, cid);
            rc = reset_state(c, why);
        }
        snprintf(st->cluster_id, sizeof st->cluster_id, "%s", cid);
        rd_kafka_mem_free(rk, cid);
        if (rc != 0)
            return kq_seterr(errstr, errlen, rc, "out of memory");
    }
    for (int t = 0; t < CMD_TOPICS; t++)
        for (int p = 0; p < st->partitions; p++) {
            int64_t lo = 0, hi = 0, next = st->next_offset[t * st->partitions + p];
            rd_kafka_resp_err_t err;
            if (next == 0)
                continue;
            err = rd_kafka_query_watermark_offsets(rk, c->topics[t], p, &lo, &hi,
                                                   c->cfg->kafka_timeout_ms);
            if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
                return kq_seterr(errstr, errlen, KQ_EKAFKA, "end offsets of %s [%d]: %s",
                                 c->topics[t], p, rd_kafka_err2str(err));
            if (next > hi) {
                char why[400], cid2[64];
                snprintf(why, sizeof why,
                         "%s partition %d: it covers offsets up to %" PRId64
                         " but the log ends at %" PRId64,
                         c->topics[t], p, next, hi);
                snprintf(cid2, sizeof cid2, "%s", st->cluster_id);
                if ((rc = reset_state(c, why)) != 0)
                    return kq_seterr(errstr, errlen, rc, "out of memory");
                snprintf(st->cluster_id, sizeof st->cluster_id, "%s", cid2);
                return 0;
            }
        }
    return 0;
}

/* The topic index of a consumed message (-1: not one of ours). */
static int msg_topic(const cmd_catchup *c, const rd_kafka_message_t *m)
{
    const char *name = m->rkt != NULL ? rd_kafka_topic_name(m->rkt) : NULL;
    if (name == NULL)
        return -1;
    for (int t = 0; t < CMD_TOPICS; t++)
        if (strcmp(name, c->topics[t]) == 0)
            return t;
    return -1;
}

int cmd_catchup_run(cmd_catchup *c, rd_kafka_t *rk, char *errstr, size_t errlen)
{
    cmd_state *st = c->st;
    char group[KQ_KAFKA_TOPIC_MAX + 32];
    rd_kafka_t *cons;
    rd_kafka_topic_partition_list_t *tp;
    int np = st->partitions, left = CMD_TOPICS * np, rc = 0;
    int *eof = calloc((size_t)(CMD_TOPICS * np), sizeof *eof);
    double last_progress = (kq_time_mono_us() / 1e6), t0 = (kq_time_mono_us() / 1e6);
    uint64_t n = 0, before;

    if (eof == NULL)
        return KQ_ENOMEM;
    snprintf(group, sizeof group, "%s.commands.catchup", c->cfg->topic_prefix);
    if ((cons = kq_kafka_consumer_new(c->cfg, group, NULL, errstr, errlen)) == NULL) {
        free(eof);
        return KQ_EKAFKA;
    }
    if ((rc = cmd_catchup_check_state(c, rk, errstr, errlen)) != 0) {
        rd_kafka_destroy(cons);
        free(eof);
        return rc;
    }
    st = c->st;
    np = st->partitions;
    before = st->events;
    tp = rd_kafka_topic_partition_list_new(CMD_TOPICS * np);
    for (int t = 0; t < CMD_TOPICS; t++)
        for (int p = 0; p < np; p++) {
            int64_t next = st->next_offset[t * np + p];
            rd_kafka_topic_partition_list_add(tp, c->topics[t], p)->offset =
                next > 0 ? next : RD_KAFKA_OFFSET_BEGINNING;
        }
    if (rd_kafka_assign(cons, tp) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = kq_seterr(errstr, errlen, KQ_EKAFKA, "assign the event topics");
        goto out;
    }
    while (left > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 200);
        int t, ix;
        if (m == NULL) {
            if ((kq_time_mono_us() / 1e6) - last_progress >
                2.0 * c->cfg->kafka_timeout_ms / 1000.0) {
                rc = kq_seterr(errstr, errlen, KQ_ETIMEDOUT,
                               "reading the event topics: no progress for %d ms (%d partitions "
                               "not at the end)",
                               2 * c->cfg->kafka_timeout_ms, left);
                goto out;
            }
            continue;
        }
        last_progress = (kq_time_mono_us() / 1e6);
        t = msg_topic(c, m);
        ix = t >= 0 && m->partition >= 0 && m->partition < np ? t * np + m->partition : -1;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (ix >= 0 && !eof[ix]) {
                eof[ix] = 1;
                left--;
                cmd_state_set_topic_offset(st, t, m->partition, m->offset);
            }
        } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            kq_log_warn("reading %s: %s", t >= 0 ? c->topics[t] : "an event topic",
                        rd_kafka_message_errstr(m));
            if (c->metrics != NULL)
                atomic_fetch_add(&c->metrics->kafka_errors, 1);
        } else if (ix >= 0) {
            char es[256];
            if (eof[ix]) {
                /* Only we write; a record after EOF is our own late view. */
                eof[ix] = 0;
                left++;
            }
            if (cmd_chain_set_head(cmd_chain_head(c->chain, t, m->partition), m->payload, m->len) !=
                0) {
                rc = kq_seterr(errstr, errlen, KQ_EIO, "SHA-256 of a record failed");
                rd_kafka_message_destroy(m);
                goto out;
            }
            if (cmd_aggregate_apply(st, t, m->payload, m->len, m->partition, m->offset, es,
                                    sizeof es) < 0)
                kq_log_error("%s [%" PRId32 "] offset %" PRId64 ": cannot apply: %s", c->topics[t],
                             m->partition, m->offset, es);
            cmd_state_set_topic_offset(st, t, m->partition, m->offset + 1);
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    kq_log_info("caught up with the event topics: %" PRIu64 " records read, %" PRIu64
                " events applied, %zu resources, %zu workflows, %zu runs, %.3f s",
                n, st->events - before, cmd_state_resource_count(st), cmd_state_workflow_count(st),
                cmd_state_run_count(st), (kq_time_mono_us() / 1e6) - t0);
out:
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_consumer_close(cons);
    rd_kafka_destroy(cons);
    free(eof);
    return rc;
}
