/*
 * kq_smoke — the whole toolchain once, against a real Kafka and PostgreSQL.
 *
 *   kq_smoke EVENT.json [--produced FILE] [--consumed FILE]
 *
 * 1. ensure the deployment's topics (kq_kafka_ensure_topics: compacted,
 *    retention.ms=-1, KCQRS_PARTITIONS partitions);
 * 2. encode the JSON envelope (ev_json_encode) and produce it in a Kafka
 *    transaction to <prefix>.<aggregate_type>.events, partition
 *    kq_kafka_partition_for(aggregate_id), key "<aggregate_id>/<version:020>",
 *    header event_type=<payload_type>; commit;
 * 3. produce the same event as version+1 in a second transaction, wait until
 *    the broker has it (so it really is in the log), and ABORT;
 * 4. produce version+2 in a third transaction and commit (so a reader must read
 *    past the aborted record, not merely stop before it);
 * 5. read the partition from the beginning with a read_committed consumer until
 *    the last committed record, decode every record (ev_json_decode) and insert
 *    it into PostgreSQL table smoke_events (key, topic, partition, offset,
 *    raw value, decoded JSON as JSONB) in one transaction.
 *
 * It prints one line per step ("smoke: ..."), including every record it read;
 * the assertions live in tests/e2e/smoke.bats. --produced/--consumed write the
 * bytes of the first event as produced and as read back, for comparison.
 * Settings from the environment (KCQRS_BROKERS, KCQRS_PG_DSN,
 * KCQRS_TOPIC_PREFIX, ...). Exit 0 when every step worked, 1 otherwise.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "ev_fb.h"
#include "ev_json.h"
#include "kq_config.h"
#include "kq_err.h"
#include "kq_util.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_pg.h"

#define MAX_READ 16

static const char usage[] = "usage: kq_smoke EVENT.json [--produced FILE] [--consumed FILE]";

static const char schema_sql[] = "CREATE TABLE IF NOT EXISTS smoke_events ("
                                 "  topic text NOT NULL,"
                                 "  record_key text NOT NULL,"
                                 "  kafka_partition integer NOT NULL,"
                                 "  kafka_offset bigint NOT NULL,"
                                 "  aggregate_id text NOT NULL,"
                                 "  version bigint NOT NULL,"
                                 "  event_type text,"
                                 "  value bytea NOT NULL,"
                                 "  event jsonb NOT NULL,"
                                 "  PRIMARY KEY (topic, record_key),"
                                 "  UNIQUE (topic, kafka_partition, kafka_offset))";

/* One event to produce: its key and encoded envelope. */
typedef struct smoke_event {
    int64_t version;
    char key[128];
    int keylen;
    uint8_t *value;
    size_t len;
    int64_t offset; /* from the delivery report; -1 until delivered */
    int delivered;  /* 1 ok, -1 failed */
} smoke_event;

/* One record read back. */
typedef struct smoke_record {
    char key[128];
    int64_t offset;
    char event_type[64];
    uint8_t *value;
    size_t len;
} smoke_record;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    smoke_event *ev = m->_private;

    (void)rk;
    (void)opaque;
    if (ev == NULL)
        return;
    ev->delivered = m->err == RD_KAFKA_RESP_ERR_NO_ERROR ? 1 : -1;
    ev->offset = m->offset;
    if (m->err)
        fprintf(stderr, "smoke: delivery of %s failed: %s\n", ev->key, rd_kafka_err2str(m->err));
}

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    int ok;

    if (f == NULL)
        return -1;
    ok = fwrite(data, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    return ok ? 0 : -1;
}

/* Encode `doc` with "version" replaced by `version` into ev (key and bytes). */
static int encode_version(json_t *doc, const char *aggregate_id, int64_t version, smoke_event *ev,
                          char *err, size_t errlen)
{
    ev_fb_builder b;
    const uint8_t *data;
    char *text = NULL;
    int rc;

    memset(ev, 0, sizeof *ev);
    ev->version = version;
    ev->offset = -1;
    ev->keylen = kq_kafka_record_key(aggregate_id, version, ev->key, sizeof ev->key);
    if (ev->keylen < 0)
        return kq_seterr(err, errlen, ev->keylen, "record key for '%s' does not fit", aggregate_id);
    json_object_set_new(doc, "version", json_integer((json_int_t)version));
    if ((text = json_dumps(doc, JSON_COMPACT)) == NULL)
        return kq_seterr(err, errlen, KQ_ENOMEM, "json_dumps: out of memory");
    ev_fb_builder_init(&b);
    rc = ev_json_encode(text, strlen(text), &b, err, errlen);
    if (rc == 0) {
        data = ev_fb_builder_data(&b, &ev->len);
        if ((ev->value = malloc(ev->len)) == NULL)
            rc = kq_seterr(err, errlen, KQ_ENOMEM, "out of memory");
        else
            memcpy(ev->value, data, ev->len);
    }
    ev_fb_builder_free(&b);
    free(text);
    return rc;
}

/* One transaction with one record; commit or (after making sure the broker
 * has the record) abort. */
static int produce_txn(rd_kafka_t *rk, const kq_config *cfg, const char *topic, int partition,
                       const char *event_type, smoke_event *ev, int commit, char *err,
                       size_t errlen)
{
    int rc;

    if ((rc = kq_kafka_txn_begin(rk, err, errlen)) != 0)
        return rc;
    rc = kq_kafka_produce_event(rk, topic, partition, ev->key, (size_t)ev->keylen, ev->value,
                                ev->len, event_type, ev, err, errlen);
    if (rc != 0)
        goto abort;
    if (!commit) {
        /* Wait for the delivery report: the record is in the partition's log,
         * uncommitted, before we abort. */
        rd_kafka_flush(rk, cfg->kafka_timeout_ms);
        if (ev->delivered != 1) {
            rc = kq_seterr(err, errlen, KQ_EKAFKA, "record %s was not delivered", ev->key);
            goto abort;
        }
        return kq_kafka_txn_abort(rk, cfg->kafka_timeout_ms, err, errlen);
    }
    if ((rc = kq_kafka_txn_commit(rk, cfg->kafka_timeout_ms, err, errlen)) != 0)
        goto abort;
    rd_kafka_poll(rk, 0); /* serve the delivery report if not yet served */
    if (ev->delivered != 1)
        return kq_seterr(err, errlen, KQ_EKAFKA, "committed, but no delivery report for %s",
                         ev->key);
    return 0;
abort:
    (void)kq_kafka_txn_abort(rk, cfg->kafka_timeout_ms, NULL, 0);
    return rc;
}

/* Read `partition` from the beginning until the record at offset `last` has
 * been returned (or the deadline passes). */
static int read_back(const kq_config *cfg, const char *group, const char *topic, int partition,
                     int64_t last, smoke_record *recs, int *nrecs, char *err, size_t errlen)
{
    rd_kafka_t *c;
    rd_kafka_topic_partition_list_t *tp;
    double deadline = now_s() + 30.0;
    int rc = 0, done = 0;

    *nrecs = 0;
    if ((c = kq_kafka_consumer_new(cfg, group, NULL, err, errlen)) == NULL)
        return KQ_EKAFKA;
    tp = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tp, topic, partition)->offset = RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(c, tp) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = kq_seterr(err, errlen, KQ_EKAFKA, "assign %s [%d] failed", topic, partition);
        goto out;
    }
    while (!done) {
        rd_kafka_message_t *m;
        if (now_s() > deadline) {
            rc = kq_seterr(err, errlen, KQ_ETIMEDOUT,
                           "did not read up to offset %" PRId64 " within 30 s", last);
            goto out;
        }
        if ((m = rd_kafka_consumer_poll(c, 200)) == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* The last transaction's commit marker may still be on its way. */
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            rc = kq_seterr(err, errlen, KQ_EKAFKA, "consume: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            goto out;
        }
        if (*nrecs < MAX_READ) {
            smoke_record *r = &recs[(*nrecs)++];
            rd_kafka_headers_t *hdrs;
            const void *hv;
            size_t hl;
            memset(r, 0, sizeof *r);
            snprintf(r->key, sizeof r->key, "%.*s", (int)m->key_len, (const char *)m->key);
            r->offset = m->offset;
            if (rd_kafka_message_headers(m, &hdrs) == 0 &&
                rd_kafka_header_get_last(hdrs, KQ_KAFKA_HEADER_EVENT_TYPE, &hv, &hl) == 0 &&
                hv != NULL)
                snprintf(r->event_type, sizeof r->event_type, "%.*s", (int)hl, (const char *)hv);
            r->len = m->len;
            if ((r->value = malloc(m->len ? m->len : 1)) == NULL) {
                rc = kq_seterr(err, errlen, KQ_ENOMEM, "out of memory");
                rd_kafka_message_destroy(m);
                goto out;
            }
            memcpy(r->value, m->payload, m->len);
            printf("smoke: read key=%s offset=%" PRId64 " event_type=%s bytes=%zu\n", r->key,
                   r->offset, r->event_type, r->len);
        }
        done = m->offset >= last;
        rd_kafka_message_destroy(m);
    }
out:
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return rc;
}

static int store_pg(const kq_config *cfg, const char *topic, int partition,
                    const smoke_record *recs, int nrecs, char *err, size_t errlen)
{
    PGconn *pg = kq_pg_connect(cfg->pg_dsn, 5000, "kq_smoke", err, errlen);
    int rc = 0;

    if (pg == NULL)
        return KQ_EPG;
    if ((rc = kq_pg_exec(pg, schema_sql, err, errlen)) != 0 ||
        (rc = kq_pg_begin(pg, err, errlen)) != 0)
        goto out;
    for (int i = 0; i < nrecs; i++) {
        const smoke_record *r = &recs[i];
        char part[16], off[32], ver[32], *json = NULL, *hex = NULL;
        size_t json_len, id_len;
        int64_t version;
        const char *vals[9];
        char idbuf[128];

        if (kq_kafka_record_key_parse(r->key, strlen(r->key), &id_len, &version) != 0) {
            rc = kq_seterr(err, errlen, KQ_ECORRUPT, "record key '%s' is malformed", r->key);
            goto rollback;
        }
        if ((rc = ev_json_decode(r->value, r->len, &json, &json_len, err, errlen)) != 0)
            goto rollback;
        if ((hex = malloc(2 * r->len + 3)) == NULL) {
            free(json);
            rc = kq_seterr(err, errlen, KQ_ENOMEM, "out of memory");
            goto rollback;
        }
        hex[0] = '\\';
        hex[1] = 'x';
        for (size_t j = 0; j < r->len; j++)
            snprintf(hex + 2 + 2 * j, 3, "%02x", r->value[j]);
        snprintf(part, sizeof part, "%d", partition);
        snprintf(off, sizeof off, "%" PRId64, r->offset);
        snprintf(ver, sizeof ver, "%" PRId64, version);
        snprintf(idbuf, sizeof idbuf, "%.*s", (int)id_len, r->key);
        vals[0] = topic;
        vals[1] = r->key;
        vals[2] = part;
        vals[3] = off;
        vals[4] = idbuf;
        vals[5] = ver;
        vals[6] = r->event_type[0] ? r->event_type : NULL;
        vals[7] = hex;
        vals[8] = json;
        rc = kq_pg_exec_params(pg,
                               "INSERT INTO smoke_events (topic, record_key, kafka_partition,"
                               " kafka_offset, aggregate_id, version, event_type, value, event)"
                               " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::bytea, $9::jsonb)",
                               9, vals, NULL, err, errlen);
        free(json);
        free(hex);
        if (rc != 0)
            goto rollback;
    }
    rc = kq_pg_commit(pg, err, errlen);
    goto out;
rollback:
    (void)kq_pg_rollback(pg, NULL, 0);
out:
    PQfinish(pg);
    return rc;
}

int main(int argc, char **argv)
{
    char err[512] = "", topic[KQ_KAFKA_TOPIC_MAX], txn_id[KQ_KAFKA_TOPIC_MAX + 16];
    char group[KQ_KAFKA_TOPIC_MAX + 16];
    char names[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX];
    const char *topics[KQ_KAFKA_NTOPICS];
    const char *path = NULL, *produced_path = NULL, *consumed_path = NULL;
    smoke_event ev[3];
    smoke_record recs[MAX_READ];
    int nrecs = 0, partition, loaded = 0, rc = 1, nev = 0;
    json_t *doc = NULL;
    json_error_t jerr;
    const char *aggregate_id, *aggregate_type, *payload_type;
    int64_t version;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    kq_config cfg;
    char *text = NULL;
    size_t text_len;

    memset(ev, 0, sizeof ev);
    memset(recs, 0, sizeof recs);
    if (kq_config_handle_help(argc, argv, usage))
        return 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--produced") == 0 && i + 1 < argc)
            produced_path = argv[++i];
        else if (strcmp(argv[i], "--consumed") == 0 && i + 1 < argc)
            consumed_path = argv[++i];
        else if (argv[i][0] != '-' && path == NULL)
            path = argv[i];
        else {
            fprintf(stderr, "%s\n", usage);
            return 2;
        }
    }
    if (path == NULL) {
        fprintf(stderr, "%s\n", usage);
        return 2;
    }
    if (kq_config_load_and_init_log(&cfg, "kq_smoke", err, sizeof err) != 0)
        goto out;
    loaded = 1;

    /* The event: fields we need for routing, from the JSON itself. */
    if (kq_read_file(path, 1u << 20, &text, &text_len, err, sizeof err) != 0)
        goto out;
    if ((doc = json_loadb(text, text_len, 0, &jerr)) == NULL) {
        snprintf(err, sizeof err, "%s:%d: %s", path, jerr.line, jerr.text);
        goto out;
    }
    aggregate_id = json_string_value(json_object_get(doc, "aggregate_id"));
    aggregate_type = json_string_value(json_object_get(doc, "aggregate_type"));
    payload_type = json_string_value(json_object_get(doc, "payload_type"));
    version = json_integer_value(json_object_get(doc, "version"));
    if (aggregate_id == NULL || aggregate_type == NULL || payload_type == NULL || version < 1) {
        snprintf(err, sizeof err,
                 "%s: need aggregate_id, aggregate_type, payload_type and version >= 1", path);
        goto out;
    }
    if (kq_config_topic(&cfg, aggregate_type, topic, sizeof topic) >= (int)sizeof topic) {
        snprintf(err, sizeof err, "topic name too long");
        goto out;
    }
    partition = kq_kafka_partition_for(aggregate_id, strlen(aggregate_id), cfg.partitions);
    for (int i = 0; i < 3; i++, nev++)
        if (encode_version(doc, aggregate_id, version + i, &ev[i], err, sizeof err) != 0)
            goto out;
    printf("smoke: topic=%s partition=%d key=%s bytes=%zu\n", topic, partition, ev[0].key,
           ev[0].len);
    if (produced_path != NULL && write_file(produced_path, ev[0].value, ev[0].len) != 0) {
        snprintf(err, sizeof err, "cannot write %s", produced_path);
        goto out;
    }

    /* Topics, then the transactional producer. */
    snprintf(txn_id, sizeof txn_id, "%s.smoke", cfg.topic_prefix);
    snprintf(group, sizeof group, "%s.smoke-reader", cfg.topic_prefix);
    if ((conf = kq_kafka_conf_new(&cfg, txn_id, err, sizeof err)) == NULL)
        goto out;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    if ((rk = kq_kafka_txn_producer_new(&cfg, txn_id, conf, err, sizeof err)) == NULL)
        goto out;
    if (kq_kafka_topic_names(&cfg, names) != KQ_KAFKA_NTOPICS)
        goto out;
    for (int i = 0; i < KQ_KAFKA_NTOPICS; i++)
        topics[i] = names[i];
    if (kq_kafka_ensure_topics(rk, &cfg, topics, KQ_KAFKA_NTOPICS, err, sizeof err) != 0)
        goto out;
    printf("smoke: topics ensured (%d partitions, compact)\n", cfg.partitions);
    if (kq_kafka_txn_init(rk, cfg.kafka_timeout_ms, err, sizeof err) != 0)
        goto out;

    if (produce_txn(rk, &cfg, topic, partition, payload_type, &ev[0], 1, err, sizeof err) != 0)
        goto out;
    printf("smoke: committed key=%s offset=%" PRId64 "\n", ev[0].key, ev[0].offset);
    if (produce_txn(rk, &cfg, topic, partition, payload_type, &ev[1], 0, err, sizeof err) != 0)
        goto out;
    printf("smoke: aborted key=%s offset=%" PRId64 "\n", ev[1].key, ev[1].offset);
    if (produce_txn(rk, &cfg, topic, partition, payload_type, &ev[2], 1, err, sizeof err) != 0)
        goto out;
    printf("smoke: committed key=%s offset=%" PRId64 "\n", ev[2].key, ev[2].offset);

    /* Read back, committed only. */
    if (read_back(&cfg, group, topic, partition, ev[2].offset, recs, &nrecs, err, sizeof err) != 0)
        goto out;
    for (int i = 0; i < nrecs; i++) {
        if (strcmp(recs[i].key, ev[0].key) == 0 && consumed_path != NULL &&
            write_file(consumed_path, recs[i].value, recs[i].len) != 0) {
            snprintf(err, sizeof err, "cannot write %s", consumed_path);
            goto out;
        }
    }
    if (store_pg(&cfg, topic, partition, recs, nrecs, err, sizeof err) != 0)
        goto out;
    printf("smoke: stored %d records in smoke_events\n", nrecs);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "kq_smoke: %s\n", err[0] ? err : "failed");
    if (rk != NULL)
        rd_kafka_destroy(rk);
    for (int i = 0; i < nev; i++)
        free(ev[i].value);
    for (int i = 0; i < nrecs; i++)
        free(recs[i].value);
    json_decref(doc);
    free(text);
    if (loaded)
        kq_config_free(&cfg);
    return rc;
}
