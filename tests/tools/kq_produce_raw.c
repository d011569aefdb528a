/*
 * kq_produce_raw — write records straight into the event topics, bypassing
 * kcqrs-commands: poison records for the projector's tests, and fast loads
 * of valid events for its crash tests and benchmark.
 *
 *   kq_produce_raw raw AGG PARTITION KEY (--hex HEX | --random N | --text S | --null)
 *       one record with arbitrary bytes as its value into
 *       <prefix>.<AGG>.events (AGG: resource, workflow, run) partition
 *       PARTITION with key KEY ("-" for none), non-transactional; --null
 *       writes a tombstone (null value: erases the event of that key once
 *       the log is compacted);
 *   kq_produce_raw event ID VERSION [--type created|updated|deleted]
 *                  [--status active|inactive|archived] [--name NAME]
 *                  [--topic resource|workflow|run] [--partition P] [--key K]
 *                  [--prev HEX] [--actor A]
 *       one valid resource event (default: ResourceCreated, active, name
 *       "raw ID") with the given version, at the aggregate's partition and
 *       with its record key: a version gap when VERSION is not the next one;
 *       --topic, --partition and --key put it where it does not belong;
 *       --prev sets its prev_hash (64 hex digits: a forger copying the hash
 *       chain), --actor its actor (default kq_produce_raw);
 *   kq_produce_raw load N [--ids K] [--prefix P] [--txn T] [--seed S] [--pause-ms M]
 *       N valid events in transactions of T records (default 500), M ms
 *       apart (default 0: as fast as possible): K
 *       aggregates at a time (default 1000) named P-<n> (default "load"),
 *       each 10th of them a workflow (WorkflowCreated, then Disabled/Enabled
 *       in turn), the others resources (ResourceCreated, ResourceUpdated
 *       changing name, description or status, and every 8th version a
 *       ResourceDeleted, after which a fresh id takes the slot); every
 *       event has a random event id and correlation id, as kcqrs-commands
 *       gives it.
 *       Prints "produced N events in S s (R/s)".
 *
 * Environment: the usual KCQRS_* settings (brokers, topic prefix, partitions).
 * Exit status 0 on success, 1 on failure, 2 on usage errors.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ev_codec.h"
#include "kq_config.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_rand.h"
#include "kq_util.h"

static const char usage[] =
    "usage: kq_produce_raw raw AGG PARTITION KEY (--hex HEX | --random N | --text S | --null)\n"
    "       kq_produce_raw event ID VERSION [--type created|updated|deleted]\n"
    "                      [--status active|inactive|archived] [--name NAME]\n"
    "                      [--topic resource|workflow|run] [--partition P] [--key K]\n"
    "                      [--prev HEX] [--actor A]\n"
    "       kq_produce_raw load N [--ids K] [--prefix P] [--txn T] [--seed S] [--pause-ms M]\n";

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Event ids must be unique across runs (the PostgreSQL read model has a
 * unique index on them): from the kernel's generator, not from rnd(). */
static void fill_uuid(ev_uuid *u)
{
    if (kq_uuid_v4(u->bytes) != 0) {
        perror("kq_produce_raw: getrandom");
        exit(1);
    }
}

/* ---------------------------------------------------------------- single records */

/* Create the topics if this is the first writer (as kcqrs-commands would). */
static int ensure(rd_kafka_t *rk, const kq_config *cfg, char *err, size_t errlen)
{
    char names[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX];
    const char *topics[KQ_KAFKA_NTOPICS];

    if (kq_kafka_topic_names(cfg, names) < 0)
        return KQ_ERANGE;
    for (int i = 0; i < KQ_KAFKA_NTOPICS; i++)
        topics[i] = names[i];
    return kq_kafka_ensure_topics(rk, cfg, topics, KQ_KAFKA_NTOPICS, err, errlen);
}

static rd_kafka_t *plain_producer(const kq_config *cfg, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = kq_kafka_conf_new(cfg, "kq_produce_raw", err, errlen);
    rd_kafka_t *rk;

    if (conf == NULL)
        return NULL;
    if (kq_kafka_conf_set(conf, "enable.idempotence", "true", err, errlen) != 0 ||
        (rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen)) == NULL) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return rk;
}

static int produce_one(const kq_config *cfg, const char *topic, int32_t partition, const char *key,
                       const void *value, size_t len, const char *event_type)
{
    char err[512];
    rd_kafka_t *rk = plain_producer(cfg, err, sizeof err);
    rd_kafka_resp_err_t e;

    if (rk == NULL || ensure(rk, cfg, err, sizeof err) != 0) {
        fprintf(stderr, "kq_produce_raw: %s\n", err);
        if (rk)
            rd_kafka_destroy(rk);
        return 1;
    }
    e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_KEY(key, key ? strlen(key) : 0), RD_KAFKA_V_VALUE((void *)value, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADER(KQ_KAFKA_HEADER_EVENT_TYPE, event_type ? event_type : "raw", -1),
        RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        e = rd_kafka_flush(rk, cfg->kafka_timeout_ms * 2);
    rd_kafka_destroy(rk);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kq_produce_raw: produce to %s [%d]: %s\n", topic, (int)partition,
                rd_kafka_err2str(e));
        return 1;
    }
    printf("%s %d %s\n", topic, (int)partition, key ? key : "-");
    return 0;
}

/* AGG of `raw`: an event topic (resource, workflow, run) or the key topic (keys). 0 or -1. */
static int raw_topic(const kq_config *cfg, const char *agg, char *topic, size_t len)
{
    if (strcmp(agg, "keys") == 0) {
        int n = snprintf(topic, len, "%s.keys", cfg->topic_prefix);
        return n < 0 || (size_t)n >= len ? -1 : 0;
    }
    if (strcmp(agg, "resource") && strcmp(agg, "workflow") && strcmp(agg, "run"))
        return -1;
    kq_config_topic(cfg, agg, topic, len);
    return 0;
}

static int cmd_raw(const kq_config *cfg, int argc, char **argv)
{
    char topic[KQ_KAFKA_TOPIC_MAX];
    uint8_t *buf = NULL;
    size_t len = 0;
    long part;
    int rc;

    /* raw AGG PARTITION KEY --null: a tombstone */
    if (argc == 5 && strcmp(argv[4], "--null") == 0 &&
        kq_parse_long(argv[2], 0, INT32_MAX, &part) == 0 &&
        raw_topic(cfg, argv[1], topic, sizeof topic) == 0) {
        return produce_one(cfg, topic, (int32_t)part, strcmp(argv[3], "-") ? argv[3] : NULL, NULL,
                           0, NULL);
    }
    /* raw AGG PARTITION KEY MODE VALUE */
    if (argc != 6 || kq_parse_long(argv[2], 0, INT32_MAX, &part) != 0 ||
        raw_topic(cfg, argv[1], topic, sizeof topic) != 0) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(argv[4], "--hex") == 0) {
        size_t n = strlen(argv[5]);
        if (n % 2 || (buf = malloc(n / 2 + 1)) == NULL)
            return 2;
        if (kq_hex_decode(argv[5], n / 2, buf) != 0) {
            free(buf);
            return 2;
        }
        len = n / 2;
    } else if (strcmp(argv[4], "--random") == 0) {
        long n;
        if (kq_parse_long(argv[5], 1, 1000000, &n) != 0)
            return 2;
        rng ^= (uint64_t)now_us() * 0x2545f4914f6cdd1dull;
        if ((buf = malloc((size_t)n)) == NULL)
            return 1;
        for (len = 0; len < (size_t)n; len++)
            buf[len] = (uint8_t)rnd();
    } else if (strcmp(argv[4], "--text") == 0) {
        len = strlen(argv[5]);
        if ((buf = malloc(len + 1)) == NULL)
            return 1;
        memcpy(buf, argv[5], len);
    } else {
        fputs(usage, stderr);
        return 2;
    }
    rc = produce_one(cfg, topic, (int32_t)part, strcmp(argv[3], "-") ? argv[3] : NULL, buf, len,
                     NULL);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------- valid events */

static const char *status_names[] = {"active", "inactive", "archived"};

static int parse_status(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, status_names[i]) == 0)
            return i;
    return -1;
}

static int cmd_event(const kq_config *cfg, int argc, char **argv)
{
    char topic[KQ_KAFKA_TOPIC_MAX], key[160], name[160], err[512];
    const char *type = "created", *nm = NULL, *agg = "resource", *keyarg = NULL, *actor = NULL;
    uint8_t prev[32];
    int has_prev = 0;
    int status = -1, part = -1, rc;
    long version;
    ev_envelope e;
    ev_fb_builder fb;
    const uint8_t *buf;
    size_t len;

    /* event ID VERSION [options] */
    if (argc < 3 || kq_parse_long(argv[2], 0, INT32_MAX, &version) != 0) {
        fputs(usage, stderr);
        return 2;
    }
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--type") == 0)
            type = argv[i + 1];
        else if (strcmp(argv[i], "--status") == 0 && (status = parse_status(argv[i + 1])) >= 0)
            ;
        else if (strcmp(argv[i], "--name") == 0)
            nm = argv[i + 1];
        else if (strcmp(argv[i], "--topic") == 0 &&
                 (strcmp(argv[i + 1], "resource") == 0 || strcmp(argv[i + 1], "workflow") == 0 ||
                  strcmp(argv[i + 1], "run") == 0))
            agg = argv[i + 1];
        else if (strcmp(argv[i], "--key") == 0)
            keyarg = argv[i + 1];
        else if (strcmp(argv[i], "--actor") == 0 && argv[i + 1][0] != '\0')
            actor = argv[i + 1];
        else if (strcmp(argv[i], "--prev") == 0 && strlen(argv[i + 1]) == 64) {
            if (kq_hex_decode(argv[i + 1], 32, prev) != 0) {
                fputs(usage, stderr);
                return 2;
            }
            has_prev = 1;
        } else if (strcmp(argv[i], "--partition") == 0 &&
                   kq_parse_long(argv[i + 1], 0, INT32_MAX, &(long){0}) == 0)
            part = atoi(argv[i + 1]);
        else {
            fputs(usage, stderr);
            return 2;
        }
    }
    if ((argc - 3) % 2 != 0) {
        fputs(usage, stderr);
        return 2;
    }
    snprintf(name, sizeof name, "raw %s", argv[1]);
    rng ^= (uint64_t)now_us();
    if (strcmp(type, "created") == 0) {
        ev_envelope_init(&e, EV_RESOURCE_CREATED);
        e.payload.resource_created.name = ev_str_c(nm ? nm : name);
        e.payload.resource_created.status = status >= 0 ? status : EV_STATUS_ACTIVE;
    } else if (strcmp(type, "updated") == 0) {
        ev_envelope_init(&e, EV_RESOURCE_UPDATED);
        e.payload.resource_updated.name = ev_str_c(nm ? nm : name);
        if (status >= 0) {
            e.payload.resource_updated.has_status = true;
            e.payload.resource_updated.status = status;
        }
    } else if (strcmp(type, "deleted") == 0) {
        ev_envelope_init(&e, EV_RESOURCE_DELETED);
    } else {
        fputs(usage, stderr);
        return 2;
    }
    fill_uuid(&e.event_id);
    e.aggregate_id = ev_str_c(argv[1]);
    e.version = version;
    e.occurred_at_us = now_us();
    e.actor = ev_str_c(actor ? actor : "kq_produce_raw");
    if (has_prev) {
        e.prev_hash.ptr = prev;
        e.prev_hash.len = 32;
    }
    ev_fb_builder_init(&fb);
    if ((rc = ev_envelope_encode(&fb, &e, err, sizeof err)) != 0) {
        fprintf(stderr, "kq_produce_raw: %s\n", err);
        ev_fb_builder_free(&fb);
        return 1;
    }
    buf = ev_fb_builder_data(&fb, &len);
    kq_config_topic(cfg, agg, topic, sizeof topic);
    if (part < 0)
        part = kq_kafka_partition_for(argv[1], strlen(argv[1]), cfg->partitions);
    if (keyarg != NULL)
        snprintf(key, sizeof key, "%s", keyarg);
    else if (kq_kafka_record_key(argv[1], version, key, sizeof key) < 0)
        part = -1;
    if (part < 0) {
        ev_fb_builder_free(&fb);
        return 2;
    }
    rc = produce_one(cfg, topic, part, key, buf, len, ev_event_type_name(e.payload_type));
    ev_fb_builder_free(&fb);
    return rc;
}

/* ---------------------------------------------------------------- load */

typedef struct slot {
    char id[64];
    int64_t version; /* last produced */
    int workflow;
    int status;
} slot;

static void slot_new(slot *s, const char *prefix, long *seq)
{
    long n = (*seq)++;

    snprintf(s->id, sizeof s->id, "%s-%ld", prefix, n);
    s->version = 0;
    s->workflow = n % 10 == 9;
    s->status = 0;
}

/* The next event of slot s into e (views into static strings, s and text);
 * *retire = 1 when it deletes the aggregate. */
static void next_event(slot *s, ev_envelope *e, char *text, size_t textlen, int *retire)
{
    int64_t v = s->version + 1;

    *retire = 0;
    if (s->workflow) {
        if (v == 1) {
            ev_envelope_init(e, EV_WORKFLOW_CREATED);
            e->payload.workflow_created.name = ev_str_c("load workflow");
            e->payload.workflow_created.webhook_secret = ev_str_c("load-secret");
            e->payload.workflow_created.steps = ev_step_list_of(NULL, 0);
        } else {
            ev_envelope_init(e, v % 2 == 0 ? EV_WORKFLOW_DISABLED : EV_WORKFLOW_ENABLED);
        }
    } else if (v == 1) {
        ev_envelope_init(e, EV_RESOURCE_CREATED);
        snprintf(text, textlen, "resource %s", s->id);
        e->payload.resource_created.name = ev_str_c(text);
        e->payload.resource_created.description = ev_str_c("loaded by kq_produce_raw");
        s->status = (int)(rnd() % 3);
        e->payload.resource_created.status = s->status;
    } else if (v % 8 == 0) {
        ev_envelope_init(e, EV_RESOURCE_DELETED);
        e->payload.resource_deleted.reason = ev_str_c("load");
        *retire = 1;
    } else {
        uint64_t r = rnd();
        ev_envelope_init(e, EV_RESOURCE_UPDATED);
        snprintf(text, textlen, "resource %s v%" PRId64, s->id, v);
        if (r % 3 == 0) {
            e->payload.resource_updated.has_status = true;
            s->status = (int)((r >> 8) % 3);
            e->payload.resource_updated.status = s->status;
        } else if (r % 3 == 1) {
            e->payload.resource_updated.name = ev_str_c(text);
        } else {
            e->payload.resource_updated.description = ev_str_c(text);
        }
    }
    fill_uuid(&e->event_id);
    /* kcqrs-commands gives every event a correlation id (X-Correlation-Id or
     * a fresh UUID); so does the load, so the audit log's rows look alike */
    {
        static char corr[KQ_UUID_STR];
        ev_uuid u;
        fill_uuid(&u);
        kq_uuid_format(u.bytes, corr);
        e->correlation_id = ev_str_c(corr);
    }
    e->aggregate_id = ev_str_c(s->id);
    e->version = v;
    e->occurred_at_us = now_us();
    e->actor = ev_str_c("kq_produce_raw");
    s->version = v;
}

static int cmd_load(const kq_config *cfg, int argc, char **argv)
{
    char err[512], txid[96], text[160], key[160];
    char topics[3][KQ_KAFKA_TOPIC_MAX];
    const char *prefix = "load";
    long n, ids = 1000, txn = 500, seq = 0, done = 0, pause_ms = 0;
    slot *slots;
    rd_kafka_t *rk;
    ev_fb_builder fb;
    double t0;
    int rc = 1;

    if (argc < 2 || kq_parse_long(argv[1], 1, 1000000000L, &n) != 0) {
        fputs(usage, stderr);
        return 2;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        long v;
        if (strcmp(argv[i], "--prefix") == 0) {
            prefix = argv[i + 1];
            continue;
        }
        if (kq_parse_long(argv[i + 1], 1, 100000000L, &v) != 0) {
            fputs(usage, stderr);
            return 2;
        }
        if (strcmp(argv[i], "--ids") == 0)
            ids = v;
        else if (strcmp(argv[i], "--txn") == 0)
            txn = v;
        else if (strcmp(argv[i], "--pause-ms") == 0)
            pause_ms = v;
        else if (strcmp(argv[i], "--seed") == 0)
            rng ^= (uint64_t)v * 0x2545f4914f6cdd1dull;
        else {
            fputs(usage, stderr);
            return 2;
        }
    }
    if ((argc - 2) % 2 != 0 || strlen(prefix) > 40) {
        fputs(usage, stderr);
        return 2;
    }
    kq_config_topic(cfg, "resource", topics[0], sizeof topics[0]);
    kq_config_topic(cfg, "workflow", topics[1], sizeof topics[1]);
    if ((slots = calloc((size_t)ids, sizeof *slots)) == NULL)
        return 1;
    for (long i = 0; i < ids; i++)
        slot_new(&slots[i], prefix, &seq);
    snprintf(txid, sizeof txid, "kq_produce_raw-%s-%ld", prefix, (long)getpid());
    if ((rk = kq_kafka_txn_producer_new(cfg, txid, NULL, err, sizeof err)) == NULL ||
        ensure(rk, cfg, err, sizeof err) != 0 ||
        kq_kafka_txn_init(rk, cfg->kafka_timeout_ms, err, sizeof err) != 0) {
        fprintf(stderr, "kq_produce_raw: %s\n", err);
        free(slots);
        if (rk)
            rd_kafka_destroy(rk);
        return 1;
    }
    ev_fb_builder_init(&fb);
    t0 = mono_s();
    while (done < n) {
        long batch = n - done < txn ? n - done : txn;
        if (kq_kafka_txn_begin(rk, err, sizeof err) != 0)
            goto fail;
        for (long k = 0; k < batch; k++) {
            slot *s = &slots[(done + k) % ids];
            ev_envelope e;
            const uint8_t *buf;
            size_t len;
            int retire, part;

            next_event(s, &e, text, sizeof text, &retire);
            if (ev_envelope_encode(&fb, &e, err, sizeof err) != 0)
                goto fail;
            buf = ev_fb_builder_data(&fb, &len);
            part = kq_kafka_partition_for(s->id, strlen(s->id), cfg->partitions);
            kq_kafka_record_key(s->id, e.version, key, sizeof key);
            while ((rc = kq_kafka_produce_event(rk, topics[s->workflow], part, key, strlen(key),
                                                buf, len, ev_event_type_name(e.payload_type), NULL,
                                                err, sizeof err)) != 0 &&
                   strstr(err, "Queue full") != NULL)
                rd_kafka_poll(rk, 10);
            if (rc != 0)
                goto fail;
            if (retire)
                slot_new(s, prefix, &seq);
        }
        if (kq_kafka_txn_commit(rk, cfg->kafka_timeout_ms * 2, err, sizeof err) != 0)
            goto fail;
        done += batch;
        if (pause_ms > 0 && done < n)
            nanosleep(&(struct timespec){pause_ms / 1000, (pause_ms % 1000) * 1000000L}, NULL);
    }
    printf("produced %ld events in %.2f s (%.0f/s)\n", n, mono_s() - t0, n / (mono_s() - t0));
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "kq_produce_raw: after %ld events: %s\n", done, err);
    rc = 1;
out:
    ev_fb_builder_free(&fb);
    rd_kafka_destroy(rk);
    free(slots);
    return rc;
}

int main(int argc, char **argv)
{
    kq_config cfg;
    char err[512];
    int rc;

    if (kq_config_handle_help(argc, argv, usage))
        return 0;
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (kq_config_load_and_init_log(&cfg, "kq_produce_raw", err, sizeof err) != 0) {
        fprintf(stderr, "kq_produce_raw: %s\n", err);
        return 2;
    }
    if (strcmp(argv[1], "raw") == 0)
        rc = cmd_raw(&cfg, argc - 1, argv + 1);
    else if (strcmp(argv[1], "event") == 0)
        rc = cmd_event(&cfg, argc - 1, argv + 1);
    else if (strcmp(argv[1], "load") == 0)
        rc = cmd_load(&cfg, argc - 1, argv + 1);
    else {
        fputs(usage, stderr);
        rc = 2;
    }
    kq_config_free(&cfg);
    return rc;
}
