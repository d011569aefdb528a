/*
 * cmd_producer.c — the writer's transactional producers; see cmd_producer.h.
 */
#include "cmd_producer.h"
#include "kq_err.h"
#include "kq_log.h"

#include <stdio.h>
#include <string.h>

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    cmd_item_event *ev = m->_private;
    (void)rk;
    (void)opaque;
    if (ev == NULL)
        return;
    ev->delivered = 1;
    ev->dr_err = (int)m->err; /* 0 or the rd_kafka_resp_err_t */
    ev->partition = m->partition;
    ev->offset = m->offset;
}

void cmd_producers_init(cmd_producers *p, const kq_config *cfg, const char *const *topics,
                        const char *txn_id, int skip_topic_setup)
{
    memset(p, 0, sizeof *p);
    p->cfg = cfg;
    p->topics = topics;
    p->skip_topic_setup = skip_topic_setup;
    if (txn_id != NULL)
        snprintf(p->txn_id, sizeof p->txn_id, "%s", txn_id);
    else
        snprintf(p->txn_id, sizeof p->txn_id, "%s.commands", cfg->topic_prefix);
}

void cmd_producers_drop(cmd_producers *p)
{
    for (int k = 0; k < CMD_WRITER_PRODUCERS; k++) {
        if (p->rk[k] == NULL)
            continue;
        rd_kafka_purge(p->rk[k], RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_destroy(p->rk[k]);
        p->rk[k] = NULL;
    }
    p->cur = NULL;
    p->k = 0;
}

/*
 * Ask for the event topics' metadata once, so the producer's first
 * transaction does not wait for it (and for the connection to the partition
 * leaders); a failure only means the first transaction waits.
 */
static void warm_producer(cmd_producers *p, rd_kafka_t *rk)
{
    for (int t = 0; t < CMD_TOPICS; t++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, p->topics[t], NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err;

        if (rkt == NULL)
            continue;
        err = rd_kafka_metadata(rk, 0, rkt, &md, p->cfg->kafka_timeout_ms);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
            kq_log_warn("metadata of %s: %s (the first transaction will fetch it)", p->topics[t],
                        rd_kafka_err2str(err));
        else
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
    }
}

void cmd_producers_txn_id(const cmd_producers *p, int k, char *out, size_t outlen)
{
    if (k == 0)
        snprintf(out, outlen, "%s", p->txn_id);
    else
        snprintf(out, outlen, "%s.%d", p->txn_id, k);
}

int cmd_producers_open(cmd_producers *p, char *errstr, size_t errlen)
{
    const char *topics[KQ_KAFKA_NTOPICS];
    char names[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX], id[KQ_KAFKA_TOPIC_MAX + 32];
    int rc = 0, n;

    for (int k = 0; k < CMD_WRITER_PRODUCERS; k++) {
        rd_kafka_conf_t *conf;
        cmd_producers_txn_id(p, k, id, sizeof id);
        if ((conf = kq_kafka_conf_new(p->cfg, id, errstr, errlen)) == NULL) {
            rc = KQ_ECONFIG;
            goto fail;
        }
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
        if ((p->rk[k] = kq_kafka_txn_producer_new(p->cfg, id, conf, errstr, errlen)) == NULL) {
            rc = KQ_EKAFKA;
            goto fail;
        }
        if (k == 0 && !p->skip_topic_setup) {
            n = kq_kafka_topic_names(p->cfg, names);
            for (int i = 0; i < n; i++)
                topics[i] = names[i];
            if ((rc = kq_kafka_ensure_topics(p->rk[0], p->cfg, topics, (size_t)n, errstr,
                                             errlen)) != 0)
                goto fail;
        }
        if ((rc = kq_kafka_txn_init(p->rk[k], 2 * p->cfg->kafka_timeout_ms, errstr, errlen)) != 0)
            goto fail;
        warm_producer(p, p->rk[k]);
    }
    p->k = 0;
    p->cur = p->rk[0];
    return 0;
fail:
    cmd_producers_drop(p);
    return rc;
}

void cmd_producers_next(cmd_producers *p)
{
    if (p->cur == NULL)
        return;
    p->k = (p->k + 1) % CMD_WRITER_PRODUCERS;
    p->cur = p->rk[p->k];
}
