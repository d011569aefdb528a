/*
 * kq_offsets — what a Kafka topic holds, for the end-to-end tests.
 *
 *   kq_offsets ends TOPIC   one line per partition: "<partition> <high watermark>"
 *   kq_offsets sum TOPIC    the sum of the high watermarks (one number)
 *   kq_offsets dump TOPIC   every committed record from the beginning to the end,
 *                           read_committed, one line per record:
 *                           <partition> <offset> <key> <event_type> <envelope JSON>
 *                           where the JSON is ev_json_decode()'s output made
 *                           compact (one line, key order kept); a value that does
 *                           not verify prints {"undecodable":"<error>"}; a missing
 *                           header prints "-".
 *
 * The high watermark counts transaction markers too: a committed transaction
 * of n records moves it by n + 1 and an aborted one by at least 1 (the abort
 * marker), so "ends unchanged" proves that nothing was produced at all.
 *
 * Settings come from the environment like every kcqrs binary (KCQRS_BROKERS,
 * KCQRS_KAFKA_TIMEOUT_MS, ...). Exit codes: 0 ok, 1 error (missing topic,
 * Kafka unreachable, timeout), 2 usage.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ev_json.h"
#include "ev_pii.h"
#include "kq_config.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_keyring.h"
#include "kq_log.h"

static const char usage[] = "usage: kq_offsets ends|sum|dump|dump-sealed TOPIC\n"
                            "  ends  high watermark of each partition: \"<partition> <offset>\"\n"
                            "  sum   sum of the high watermarks\n"
                            "  dump  every committed record (read_committed), one line each:\n"
                            "        <partition> <offset> <key> <event_type> <envelope JSON>\n"
                            "        (sealed personal data opened with KCQRS_KEK_FILE)\n"
                            "  dump-sealed  the same, records as written (as kcqrs-events cat)";

#define MAX_PARTITIONS 1024
#define DUMP_TIMEOUT_S 30.0
#define SETTLE_TIMEOUT_S 15.0

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int watermarks(rd_kafka_t *rk, const char *topic, int timeout_ms, int *np, int64_t *high,
                      char *err, size_t errlen)
{
    int rc = kq_kafka_topic_partitions(rk, topic, timeout_ms, np, NULL, err, errlen);
    if (rc != 0)
        return rc;
    if (*np < 1 || *np > MAX_PARTITIONS)
        return kq_seterr(err, errlen, KQ_ERANGE, "%s has %d partitions", topic, *np);
    for (int p = 0; p < *np; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, timeout_ms);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            return kq_seterr(err, errlen, KQ_EKAFKA, "watermarks of %s [%d]: %s", topic, p,
                             rd_kafka_err2str(e));
        high[p] = hi;
    }
    return 0;
}

/*
 * Wait until the topic is settled: for every partition the end offset a
 * read_uncommitted client sees (the high watermark) equals the one a
 * read_committed client sees (the last stable offset), i.e. no transaction is
 * open and every commit/abort marker has been written. A producer's commit
 * returns before the coordinator has written the markers, so without this a
 * snapshot taken just after a 2xx could move by itself a moment later.
 */
static int settle(rd_kafka_t *committed, rd_kafka_t *uncommitted, const char *topic, int timeout_ms,
                  int *np, int64_t *high, char *err, size_t errlen)
{
    int64_t lso[MAX_PARTITIONS];
    double deadline = now_s() + SETTLE_TIMEOUT_S;
    int rc, n2 = 0;

    for (;;) {
        int same = 1, p;
        if ((rc = watermarks(uncommitted, topic, timeout_ms, np, high, err, errlen)) != 0 ||
            (rc = watermarks(committed, topic, timeout_ms, &n2, lso, err, errlen)) != 0)
            return rc;
        for (p = 0; p < *np && p < n2; p++)
            if (lso[p] != high[p]) {
                same = 0;
                break;
            }
        if (same)
            return 0;
        if (now_s() > deadline)
            return kq_seterr(err, errlen, KQ_ETIMEDOUT,
                             "%s [%d] not settled within %.0f s: last stable offset %" PRId64
                             " < high watermark %" PRId64 " (a transaction stays open)",
                             topic, p, SETTLE_TIMEOUT_S, lso[p], high[p]);
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
}

/* Print one record's line. */
/* Sealed personal data is printed opened (events/ev_pii.h), as the read models hold it. */
static const kq_config *pii_cfg;
static kq_keyring *pii_keys;

static void print_record(const rd_kafka_message_t *m)
{
    const uint8_t *val = m->payload;
    size_t vlen = m->len;
    ev_fb_builder fb;
    rd_kafka_headers_t *hdrs;
    const void *hv = NULL;
    size_t hl = 0;
    char err[512] = "";
    char *json = NULL, *compact = NULL;
    size_t json_len = 0;
    json_t *root = NULL;
    json_error_t jerr;

    printf("%" PRId32 " %" PRId64 " ", m->partition, m->offset);
    if (m->key != NULL && m->key_len > 0)
        printf("%.*s ", (int)m->key_len, (const char *)m->key);
    else
        printf("- ");
    if (rd_kafka_message_headers(m, &hdrs) == 0 &&
        rd_kafka_header_get_last(hdrs, KQ_KAFKA_HEADER_EVENT_TYPE, &hv, &hl) == 0 && hv != NULL &&
        hl > 0)
        printf("%.*s ", (int)hl, (const char *)hv);
    else
        printf("- ");
    if (m->payload == NULL) {
        printf("null\n");
        return;
    }
    ev_fb_builder_init(&fb);
    if (pii_keys == NULL && pii_cfg != NULL)
        kq_keyring_new(pii_cfg, "kq_offsets", &pii_keys, NULL, 0);
    if (pii_cfg != NULL && ev_pii_plain_record(m->payload, m->len, pii_keys, &fb, &val, &vlen, NULL,
                                               err, sizeof err) != 0)
        val = m->payload, vlen = m->len;
    if (ev_json_decode(val, vlen, &json, &json_len, err, sizeof err) == 0 &&
        (root = json_loadb(json, json_len, 0, &jerr)) != NULL &&
        (compact = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER)) != NULL) {
        printf("%s\n", compact);
    } else {
        json_t *u = json_pack("{s:s}", "undecodable", err[0] ? err : "JSON re-parse failed");
        char *s = u ? json_dumps(u, JSON_COMPACT) : NULL;
        printf("%s\n", s ? s : "{\"undecodable\":\"?\"}");
        free(s);
        json_decref(u);
    }
    free(compact);
    json_decref(root);
    free(json);
    ev_fb_builder_free(&fb);
}

static int dump(rd_kafka_t *c, const char *topic, int np, const int64_t *high, char *err,
                size_t errlen)
{
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(np);
    char done[MAX_PARTITIONS];
    int remaining = 0, rc = 0;
    double deadline = now_s() + DUMP_TIMEOUT_S;

    for (int p = 0; p < np; p++) {
        rd_kafka_topic_partition_list_add(tp, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        done[p] = high[p] == 0;
        if (!done[p])
            remaining++;
    }
    if (rd_kafka_assign(c, tp) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_topic_partition_list_destroy(tp);
        return kq_seterr(err, errlen, KQ_EKAFKA, "assign %s failed", topic);
    }
    /* A partition is done at an end-of-partition event at or past the high
     * watermark the topic settled at (the event's offset is the fetch position,
     * past any transaction markers). An empty partition is done at once. */
    while (remaining > 0) {
        rd_kafka_message_t *m;
        int p;
        if (now_s() > deadline) {
            rc = kq_seterr(err, errlen, KQ_ETIMEDOUT, "did not reach the end of %s within %.0f s",
                           topic, DUMP_TIMEOUT_S);
            break;
        }
        if ((m = rd_kafka_consumer_poll(c, 200)) == NULL)
            continue;
        p = m->partition;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (p >= 0 && p < np && !done[p] && m->offset >= high[p]) {
                done[p] = 1;
                remaining--;
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            rc = kq_seterr(err, errlen, KQ_EKAFKA, "consume %s: %s", topic,
                           rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            break;
        }
        print_record(m);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_topic_partition_list_destroy(tp);
    return rc;
}

int main(int argc, char **argv)
{
    char err[512] = "";
    kq_config cfg;
    rd_kafka_t *c = NULL;
    rd_kafka_t *u = NULL;
    rd_kafka_conf_t *conf = NULL, *uconf = NULL;
    int64_t high[MAX_PARTITIONS];
    int np = 0, rc = 1;
    const char *cmd, *topic;
    char group[128];

    if (kq_config_handle_help(argc, argv, usage))
        return 0;
    if (argc != 3 || (strcmp(argv[1], "ends") != 0 && strcmp(argv[1], "sum") != 0 &&
                      strcmp(argv[1], "dump") != 0 && strcmp(argv[1], "dump-sealed") != 0)) {
        fprintf(stderr, "%s\n", usage);
        return 2;
    }
    cmd = argv[1];
    topic = argv[2];
    if (strcmp(cmd, "dump") == 0)
        pii_cfg = &cfg; /* else records as written */
    if (kq_config_load_and_init_log(&cfg, "kq_offsets", err, sizeof err) != 0) {
        fprintf(stderr, "kq_offsets: %s\n", err);
        return 1;
    }
    /* the keyring's INFO lines (sealed personal data, events/ev_pii.h) are not this tool's output
     */
    if (cfg.log_level < KQ_LOG_WARN)
        kq_log_init("kq_offsets", KQ_LOG_WARN, (kq_log_format)cfg.log_format);
    snprintf(group, sizeof group, "kq_offsets-%ld", (long)getpid());
    /* Short fetch waits: a dump ends at the first end-of-partition event of
     * each partition, and tests call it often. */
    if ((conf = kq_kafka_conf_new(&cfg, "kq_offsets", err, sizeof err)) == NULL) {
        fprintf(stderr, "kq_offsets: %s\n", err);
        goto out;
    }
    if (kq_kafka_conf_set(conf, "fetch.wait.max.ms", "10", err, sizeof err) != 0) {
        rd_kafka_conf_destroy(conf);
        fprintf(stderr, "kq_offsets: %s\n", err);
        goto out;
    }
    if ((c = kq_kafka_consumer_new(&cfg, group, conf, err, sizeof err)) == NULL) {
        fprintf(stderr, "kq_offsets: %s\n", err);
        goto out;
    }
    /* The high watermark comes from a read_uncommitted client (ListOffsets
     * answers a read_committed one with the last stable offset). */
    if ((uconf = kq_kafka_conf_new(&cfg, "kq_offsets", err, sizeof err)) == NULL) {
        fprintf(stderr, "kq_offsets: %s\n", err);
        goto out;
    }
    if (kq_kafka_conf_set(uconf, "isolation.level", "read_uncommitted", err, sizeof err) != 0 ||
        kq_kafka_conf_set(uconf, "group.id", group, err, sizeof err) != 0 ||
        (u = rd_kafka_new(RD_KAFKA_CONSUMER, uconf, err, sizeof err)) == NULL) {
        rd_kafka_conf_destroy(uconf);
        fprintf(stderr, "kq_offsets: %s\n", err);
        goto out;
    }
    if (settle(c, u, topic, cfg.kafka_timeout_ms, &np, high, err, sizeof err) != 0) {
        fprintf(stderr, "kq_offsets: %s\n", err);
        goto out;
    }
    if (strcmp(cmd, "ends") == 0) {
        for (int p = 0; p < np; p++)
            printf("%d %" PRId64 "\n", p, high[p]);
        rc = 0;
    } else if (strcmp(cmd, "sum") == 0) {
        int64_t sum = 0;
        for (int p = 0; p < np; p++)
            sum += high[p];
        printf("%" PRId64 "\n", sum);
        rc = 0;
    } else if (dump(c, topic, np, high, err, sizeof err) != 0) {
        fprintf(stderr, "kq_offsets: %s\n", err);
    } else {
        rc = 0;
    }
out:
    fflush(stdout);
    if (u != NULL)
        rd_kafka_destroy(u);
    if (c != NULL) {
        rd_kafka_consumer_close(c);
        rd_kafka_destroy(c);
    }
    kq_config_free(&cfg);
    return rc;
}
