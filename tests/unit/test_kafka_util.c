/*
 * test_kafka_util.c — lib/kq_kafka: partitioning, record keys, client
 * configuration, and fault injection with librdkafka's mock cluster.
 *
 * The mock cluster (rdkafka_mock.h) is used only to inject broker failures into
 * the transactional producer: a fencing error on EndTxn must surface as
 * KQ_EFENCED, and a dead broker must fail a commit within the configured bound
 * instead of hanging. Everything else about real brokers is tested end to end
 * (tests/e2e) against Apache Kafka.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "kq_config.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"

/* Kafka protocol API keys (stable since their introduction). */
#define API_PRODUCE 0
#define API_END_TXN 26

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A config that needs no environment; brokers point at a closed port unless
 * a test replaces them. */
static void test_config(kq_config *cfg, const char *brokers, int timeout_ms)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->brokers = (char *)brokers;
    cfg->topic_prefix = (char *)"kq";
    cfg->partitions = 6;
    cfg->replication_factor = 1;
    cfg->min_insync_replicas = 1;
    cfg->kafka_timeout_ms = timeout_ms;
}

/* ---------------------------------------------------------------- hashing */

/* Kafka's own vectors (clients UtilsTest.testMurmur2), as signed Java ints. */
static void test_murmur2_kafka_vectors(void **state)
{
    static const struct {
        const char *in;
        int32_t want;
    } cases[] = {
        {"21", -973932308},
        {"foobar", -790332482},
        {"a-little-bit-long-string", -985981536},
        {"a-little-bit-longer-string", -1486304829},
        {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
        {"abc", 479470107},
        {"", 275646681},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t h = kq_kafka_murmur2(cases[i].in, strlen(cases[i].in));
        assert_int_equal((int32_t)h, cases[i].want);
    }
    /* Java: toPositive(murmur2("foobar")) % 50 */
    assert_int_equal(kq_kafka_partition_for("foobar", 6, 50), 16);
}

/* librdkafka's Java-compatible murmur2 partitioner is an independent oracle. */
static void test_partition_for_matches_librdkafka(void **state)
{
    static const int counts[] = {1, 2, 3, 6, 7, 12, 64, 1000};
    char id[64];

    (void)state;
    for (int i = 0; i < 2000; i++) {
        int n =
            snprintf(id, sizeof id, "%s-%d-%x", i % 2 ? "res" : "wf", i, (unsigned)i * 2654435761u);
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
            int32_t want =
                rd_kafka_msg_partitioner_murmur2(NULL, id, (size_t)n, counts[c], NULL, NULL);
            assert_int_equal(kq_kafka_partition_for(id, (size_t)n, counts[c]), want);
        }
    }
}

static void test_partition_for_spread_and_args(void **state)
{
    int hist[6] = {0};
    char id[64];

    (void)state;
    for (int i = 0; i < 6000; i++) {
        int n = snprintf(id, sizeof id, "resource-%d", i);
        int p = kq_kafka_partition_for(id, (size_t)n, 6);
        assert_in_range(p, 0, 5);
        hist[p]++;
    }
    /* 1000 expected per partition, standard deviation about 29. */
    for (int p = 0; p < 6; p++)
        assert_in_range(hist[p], 850, 1150);

    /* Only the given bytes count, not what follows them. */
    assert_int_equal(kq_kafka_partition_for("abcdef", 3, 64), kq_kafka_partition_for("abc", 3, 64));
    assert_int_equal(kq_kafka_partition_for("abc", 3, 0), KQ_EINVAL);
    assert_int_equal(kq_kafka_partition_for("abc", 3, -6), KQ_EINVAL);
    assert_int_equal(kq_kafka_partition_for(NULL, 3, 6), KQ_EINVAL);
    assert_int_equal(kq_kafka_partition_for(NULL, 0, 6), (int)((275646681u & 0x7fffffffu) % 6));
}

/* ----------------------------------------------------------------- keys */

static void test_record_key(void **state)
{
    char buf[128], small[8];
    size_t id_len;
    int64_t v;

    (void)state;
    assert_int_equal(kq_kafka_record_key("r1", 7, buf, sizeof buf), 23);
    assert_string_equal(buf, "r1/00000000000000000007");
    assert_int_equal(kq_kafka_record_key("r1", 0, buf, sizeof buf), 23);
    assert_string_equal(buf, "r1/00000000000000000000");
    assert_int_equal(kq_kafka_record_key("x", INT64_MAX, buf, sizeof buf), 22);
    assert_string_equal(buf, "x/09223372036854775807");

    /* Zero padding makes byte order equal version order. */
    {
        char a[64], b[64];
        kq_kafka_record_key("agg", 9, a, sizeof a);
        kq_kafka_record_key("agg", 10, b, sizeof b);
        assert_true(strcmp(a, b) < 0);
    }

    /* Exactly fitting buffer, one byte short, tiny. */
    assert_int_equal(kq_kafka_record_key("r1", 7, buf, 24), 23);
    assert_int_equal(kq_kafka_record_key("r1", 7, buf, 23), KQ_ERANGE);
    assert_string_equal(buf, "");
    memset(small, 'z', sizeof small);
    assert_int_equal(kq_kafka_record_key("r1", 7, small, sizeof small), KQ_ERANGE);
    assert_string_equal(small, "");
    assert_int_equal(kq_kafka_record_key("r1", 7, NULL, 0), KQ_ERANGE);

    assert_int_equal(kq_kafka_record_key("", 1, buf, sizeof buf), KQ_EINVAL);
    assert_int_equal(kq_kafka_record_key(NULL, 1, buf, sizeof buf), KQ_EINVAL);
    assert_int_equal(kq_kafka_record_key("r1", -1, buf, sizeof buf), KQ_EINVAL);

    /* Parse is the inverse. */
    kq_kafka_record_key("a/b-c", 42, buf, sizeof buf);
    assert_int_equal(kq_kafka_record_key_parse(buf, strlen(buf), &id_len, &v), 0);
    assert_int_equal(id_len, 5);
    assert_int_equal(v, 42);
    kq_kafka_record_key("x", INT64_MAX, buf, sizeof buf);
    assert_int_equal(kq_kafka_record_key_parse(buf, strlen(buf), &id_len, &v), 0);
    assert_true(v == INT64_MAX);

    assert_int_equal(kq_kafka_record_key_parse("r1/0000000000000000007", 22, &id_len, &v),
                     KQ_ECORRUPT); /* 19 digits */
    assert_int_equal(kq_kafka_record_key_parse("r1/0000000000000000000x", 23, &id_len, &v),
                     KQ_ECORRUPT);
    assert_int_equal(kq_kafka_record_key_parse("/00000000000000000007", 21, &id_len, &v),
                     KQ_ECORRUPT);
    assert_int_equal(kq_kafka_record_key_parse("r100000000000000000007", 22, &id_len, &v),
                     KQ_ECORRUPT);
    assert_int_equal(kq_kafka_record_key_parse("r1/99999999999999999999", 23, &id_len, &v),
                     KQ_ECORRUPT); /* > INT64_MAX */
}

static void test_topic_names(void **state)
{
    char names[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX];
    kq_config cfg;

    (void)state;
    test_config(&cfg, "127.0.0.1:1", 1000);
    assert_int_equal(kq_kafka_topic_names(&cfg, names), 4);
    assert_string_equal(names[0], "kq.resource.events");
    assert_string_equal(names[1], "kq.workflow.events");
    assert_string_equal(names[2], "kq.run.events");
    assert_string_equal(names[3], "kq.dlq");
}

/* ---------------------------------------------------------- configuration */

static void assert_conf(const rd_kafka_conf_t *conf, const char *name, const char *want)
{
    char v[512];
    size_t n = sizeof v;

    assert_int_equal(rd_kafka_conf_get(conf, name, v, &n), RD_KAFKA_CONF_OK);
    if (strcmp(v, want) != 0)
        fail_msg("%s=%s, want %s", name, v, want);
}

static void test_conf_builder(void **state)
{
    char err[512];
    kq_config cfg;
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;

    (void)state;
    test_config(&cfg, "127.0.0.1:1,127.0.0.1:2", 4000);
    conf = kq_kafka_conf_new(&cfg, "unit", err, sizeof err);
    assert_non_null(conf);
    assert_conf(conf, "bootstrap.servers", "127.0.0.1:1,127.0.0.1:2");
    assert_conf(conf, "client.id", "unit");
    assert_conf(conf, "allow.auto.create.topics", "false");
    assert_conf(conf, "socket.timeout.ms", "4000");
    assert_conf(conf, "socket.connection.setup.timeout.ms", "4000");

    /* Bad property: KQ_ECONFIG naming it. */
    assert_int_equal(kq_kafka_conf_set(conf, "no.such.property", "1", err, sizeof err), KQ_ECONFIG);
    assert_non_null(strstr(err, "no.such.property"));
    rd_kafka_conf_destroy(conf);

    /* Small timeouts are raised to what librdkafka accepts. */
    test_config(&cfg, "127.0.0.1:1", 100);
    conf = kq_kafka_conf_new(&cfg, NULL, err, sizeof err);
    assert_non_null(conf);
    assert_conf(conf, "client.id", "kcqrs");
    assert_conf(conf, "socket.timeout.ms", "1500");
    rd_kafka_conf_destroy(conf);

    /* Transactional producer. */
    test_config(&cfg, "127.0.0.1:1", 5000);
    rk = kq_kafka_txn_producer_new(&cfg, "kq.commands", NULL, err, sizeof err);
    assert_non_null(rk);
    assert_conf(rd_kafka_conf(rk), "transactional.id", "kq.commands");
    assert_conf(rd_kafka_conf(rk), "enable.idempotence", "true");
    assert_conf(rd_kafka_conf(rk), "transaction.timeout.ms", "10000");
    /* delivery gets 3/4 of the bound; the rest is for the command's queueing */
    assert_conf(rd_kafka_conf(rk), "message.timeout.ms", "3750");
    assert_conf(rd_kafka_conf(rk), "request.timeout.ms", "3750");
    assert_int_equal(kq_kafka_delivery_timeout_ms(&cfg), 3750);
    rd_kafka_destroy(rk);

    /* The transaction timeout has a floor of 1 s; delivery never exceeds it. */
    test_config(&cfg, "127.0.0.1:1", 200);
    rk = kq_kafka_txn_producer_new(&cfg, "kq.commands", NULL, err, sizeof err);
    assert_non_null(rk);
    assert_conf(rd_kafka_conf(rk), "transaction.timeout.ms", "1000");
    assert_conf(rd_kafka_conf(rk), "message.timeout.ms", "150");
    rd_kafka_destroy(rk);

    assert_null(kq_kafka_txn_producer_new(&cfg, "", NULL, err, sizeof err));
    assert_non_null(strstr(err, "transactional.id"));

    /* A caller's conf is consumed, also on failure. */
    conf = kq_kafka_conf_new(&cfg, "unit", err, sizeof err);
    assert_null(kq_kafka_txn_producer_new(&cfg, NULL, conf, err, sizeof err));

    /* read_committed consumer, nothing committed or stored automatically. */
    rk = kq_kafka_consumer_new(&cfg, "kq.projector", NULL, err, sizeof err);
    assert_non_null(rk);
    assert_conf(rd_kafka_conf(rk), "group.id", "kq.projector");
    assert_conf(rd_kafka_conf(rk), "isolation.level", "read_committed");
    assert_conf(rd_kafka_conf(rk), "enable.auto.commit", "false");
    assert_conf(rd_kafka_conf(rk), "enable.auto.offset.store", "false");
    assert_conf(rd_kafka_conf(rk), "enable.partition.eof", "true");
    rd_kafka_destroy(rk);

    /* librdkafka's consumer API needs a group id, even for assign() only. */
    assert_null(kq_kafka_consumer_new(&cfg, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "group.id"));
}

/* Against a closed port, topic creation fails within the configured bound. */
static void test_ensure_topics_unreachable_is_bounded(void **state)
{
    const char *topics[] = {"kq.resource.events"};
    char err[512] = "";
    kq_config cfg;
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    double t0;
    int rc;

    (void)state;
    test_config(&cfg, "127.0.0.1:1", 1000);
    conf = kq_kafka_conf_new(&cfg, "unit", err, sizeof err);
    assert_non_null(conf);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    assert_non_null(rk);
    t0 = now_s();
    rc = kq_kafka_ensure_topics(rk, &cfg, topics, 1, err, sizeof err);
    assert_true(rc == KQ_ETIMEDOUT || rc == KQ_EKAFKA);
    assert_true(now_s() - t0 < 4.0);
    assert_true(err[0] != '\0');
    rd_kafka_destroy(rk);
}

/* ------------------------------------------------------------ mock cluster */

typedef struct mock {
    rd_kafka_t *host; /* the handle that owns the mock cluster */
    rd_kafka_mock_cluster_t *mc;
    char brokers[256];
} mock;

static void mock_start(mock *m, const char *topic)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    rd_kafka_conf_set_log_cb(conf, NULL);
    assert_int_equal(rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err), RD_KAFKA_CONF_OK);
    m->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    assert_non_null(m->host);
    m->mc = rd_kafka_mock_cluster_new(m->host, 1);
    assert_non_null(m->mc);
    snprintf(m->brokers, sizeof m->brokers, "%s", rd_kafka_mock_cluster_bootstraps(m->mc));
    assert_int_equal(rd_kafka_mock_topic_create(m->mc, topic, 6, 1), 0);
}

static void mock_stop(mock *m)
{
    rd_kafka_mock_cluster_destroy(m->mc);
    rd_kafka_destroy(m->host);
}

static rd_kafka_t *mock_producer(mock *m, kq_config *cfg, int timeout_ms)
{
    char err[512];
    rd_kafka_t *rk;

    test_config(cfg, m->brokers, timeout_ms);
    rk = kq_kafka_txn_producer_new(cfg, "kq.unit.txn", NULL, err, sizeof err);
    if (rk == NULL)
        fail_msg("%s", err);
    if (kq_kafka_txn_init(rk, 10000, err, sizeof err) != 0)
        fail_msg("%s", err);
    return rk;
}

/* Happy path: produce in a transaction and read the record back, with its
 * key, partition and event-type header, through a read_committed consumer. */
static void test_mock_txn_roundtrip(void **state)
{
    char err[512], key[64];
    const char *value = "payload";
    kq_config cfg;
    mock m;
    rd_kafka_t *rk, *c;
    rd_kafka_topic_partition_list_t *tp;
    rd_kafka_message_t *msg = NULL;
    rd_kafka_headers_t *hdrs;
    const void *hv;
    size_t hlen;
    int part, klen;
    double t0;

    (void)state;
    mock_start(&m, "kq.t1");
    rk = mock_producer(&m, &cfg, 5000);
    part = kq_kafka_partition_for("agg-1", 5, 6);
    klen = kq_kafka_record_key("agg-1", 1, key, sizeof key);
    assert_int_equal(kq_kafka_txn_begin(rk, err, sizeof err), 0);
    assert_int_equal(kq_kafka_produce_event(rk, "kq.t1", part, key, (size_t)klen, value,
                                            strlen(value), "ResourceCreated", NULL, err,
                                            sizeof err),
                     0);
    if (kq_kafka_txn_commit(rk, 5000, err, sizeof err) != 0)
        fail_msg("%s", err);
    rd_kafka_destroy(rk);

    c = kq_kafka_consumer_new(&cfg, "kq.unit.reader", NULL, err, sizeof err);
    assert_non_null(c);
    tp = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tp, "kq.t1", part)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(c, tp), 0);
    rd_kafka_topic_partition_list_destroy(tp);
    t0 = now_s();
    while (now_s() - t0 < 10.0) {
        msg = rd_kafka_consumer_poll(c, 200);
        if (msg == NULL)
            continue;
        if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        rd_kafka_message_destroy(msg);
        msg = NULL;
    }
    assert_non_null(msg);
    assert_int_equal(msg->partition, part);
    assert_int_equal(msg->key_len, (size_t)klen);
    assert_memory_equal(msg->key, key, (size_t)klen);
    assert_int_equal(msg->len, strlen(value));
    assert_memory_equal(msg->payload, value, msg->len);
    assert_int_equal(rd_kafka_message_headers(msg, &hdrs), 0);
    assert_int_equal(rd_kafka_header_get_last(hdrs, KQ_KAFKA_HEADER_EVENT_TYPE, &hv, &hlen), 0);
    assert_int_equal(hlen, strlen("ResourceCreated"));
    assert_memory_equal(hv, "ResourceCreated", hlen);
    rd_kafka_message_destroy(msg);
    rd_kafka_destroy(c);
    mock_stop(&m);
}

/* Another instance took over the transactional.id: the broker answers EndTxn
 * with PRODUCER_FENCED, and the writer must learn it is fenced. */
static void test_mock_txn_fenced(void **state)
{
    char err[512];
    kq_config cfg;
    mock m;
    rd_kafka_t *rk;
    int rc;

    (void)state;
    mock_start(&m, "kq.t2");
    rk = mock_producer(&m, &cfg, 5000);
    assert_int_equal(kq_kafka_txn_begin(rk, err, sizeof err), 0);
    assert_int_equal(
        kq_kafka_produce_event(rk, "kq.t2", 0, "k/1", 3, "v", 1, "E", NULL, err, sizeof err), 0);
    rd_kafka_mock_push_request_errors(m.mc, API_END_TXN, 1, RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
    rc = kq_kafka_txn_commit(rk, 5000, err, sizeof err);
    if (rc != KQ_EFENCED)
        fail_msg("commit returned %d (%s), want KQ_EFENCED", rc, err);
    /* Fatal: the producer refuses further transactions. */
    assert_int_equal(kq_kafka_txn_begin(rk, err, sizeof err), KQ_EFENCED);
    rd_kafka_destroy(rk);
    mock_stop(&m);
}

/* The broker goes away mid-transaction: commit must fail within the configured
 * bound (message.timeout.ms = KCQRS_KAFKA_TIMEOUT_MS), never report success. */
static void test_mock_txn_broker_down_is_bounded(void **state)
{
    char err[512];
    kq_config cfg;
    mock m;
    rd_kafka_t *rk;
    double t0, took;
    int rc;

    (void)state;
    mock_start(&m, "kq.t3");
    rk = mock_producer(&m, &cfg, 1000);
    assert_int_equal(kq_kafka_txn_begin(rk, err, sizeof err), 0);
    assert_int_equal(rd_kafka_mock_broker_set_down(m.mc, 1), 0);
    assert_int_equal(
        kq_kafka_produce_event(rk, "kq.t3", 1, "k/1", 3, "v", 1, "E", NULL, err, sizeof err), 0);
    t0 = now_s();
    rc = kq_kafka_txn_commit(rk, 1000, err, sizeof err);
    took = now_s() - t0;
    assert_true(rc == KQ_ETIMEDOUT || rc == KQ_EKAFKA);
    assert_true(took < 5.0);
    /* Abort with the broker still down also returns (with an error) in time. */
    t0 = now_s();
    (void)kq_kafka_txn_abort(rk, 1000, err, sizeof err);
    assert_true(now_s() - t0 < 5.0);
    rd_kafka_destroy(rk);
    mock_stop(&m);
}

/* A failed produce request (retriable broker error, then success) is retried
 * by the idempotent producer within the transaction: commit succeeds. */
static void test_mock_txn_retries_transient_produce_error(void **state)
{
    char err[512];
    kq_config cfg;
    mock m;
    rd_kafka_t *rk;

    (void)state;
    mock_start(&m, "kq.t4");
    rk = mock_producer(&m, &cfg, 5000);
    rd_kafka_mock_push_request_errors(m.mc, API_PRODUCE, 2, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                      RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
    assert_int_equal(kq_kafka_txn_begin(rk, err, sizeof err), 0);
    assert_int_equal(
        kq_kafka_produce_event(rk, "kq.t4", 2, "k/1", 3, "v", 1, "E", NULL, err, sizeof err), 0);
    if (kq_kafka_txn_commit(rk, 5000, err, sizeof err) != 0)
        fail_msg("%s", err);
    rd_kafka_destroy(rk);
    mock_stop(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_murmur2_kafka_vectors),
        cmocka_unit_test(test_partition_for_matches_librdkafka),
        cmocka_unit_test(test_partition_for_spread_and_args),
        cmocka_unit_test(test_record_key),
        cmocka_unit_test(test_topic_names),
        cmocka_unit_test(test_conf_builder),
        cmocka_unit_test(test_ensure_topics_unreachable_is_bounded),
        cmocka_unit_test(test_mock_txn_roundtrip),
        cmocka_unit_test(test_mock_txn_fenced),
        cmocka_unit_test(test_mock_txn_broker_down_is_bounded),
        cmocka_unit_test(test_mock_txn_retries_transient_produce_error),
    };

    /* librdkafka's complaints about the closed ports and the downed mock broker
     * are expected; KCQRS_LOG_LEVEL=debug shows them. */
    kq_log_level level = KQ_LOG_OFF;
    const char *env = getenv("KCQRS_LOG_LEVEL");
    if (env != NULL)
        (void)kq_log_level_parse(env, &level);
    kq_log_init("test_kafka_util", level, KQ_LOG_HUMAN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
