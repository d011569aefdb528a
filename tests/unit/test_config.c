/* test_config.c — configuration table, environment parsing, log formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kq_config.h"
#include "kq_err.h"
#include "kq_log.h"

static const char *const vars[] = {
    "KCQRS_BROKERS",
    "KCQRS_PG_DSN",
    "KCQRS_TOPIC_PREFIX",
    "KCQRS_PARTITIONS",
    "KCQRS_REPLICATION_FACTOR",
    "KCQRS_MIN_INSYNC_REPLICAS",
    "KCQRS_KAFKA_TIMEOUT_MS",
    "KCQRS_KAFKA_PROPERTIES",
    "KCQRS_LOG_LEVEL",
    "KCQRS_LOG_FORMAT",
    "KCQRS_LMDB_DIR",
    "KCQRS_COMMANDS_ADDR",
    "KCQRS_HTTP_MAX_BODY",
    "KCQRS_HTTP_MAX_CONNECTIONS",
    "KCQRS_HTTP_MAX_PER_IP",
    "KCQRS_HTTP_TIMEOUT_S",
    "KCQRS_HTTP_CONN_MEMORY",
    "KCQRS_HTTP_THREADS",
    "KCQRS_HTTP_MAX_BODY_PUBLIC",
    "KCQRS_HTTP_HEADER_TIMEOUT_MS",
    "KCQRS_HTTP_MIN_BODY_RATE",
    "KCQRS_HTTP_TLS_CERT",
    "KCQRS_HTTP_TLS_KEY",
    "KCQRS_HTTP_TLS_CA",
    "KCQRS_HTTP_TRUSTED_PROXIES",
    "KCQRS_ACCESS_LOG",
    "KCQRS_COMMANDS_INTERNAL_ADDR",
    "KCQRS_BATCH_MAX",
    "KCQRS_BATCH_LINGER_US",
    "KCQRS_SNAPSHOT_EVERY",
    "KCQRS_QUERY_ADDR",
    "KCQRS_PROJECTOR_ADDR",
    "KCQRS_LMDB_MAP_MB",
    "KCQRS_PROJ_BATCH_MAX",
    "KCQRS_PROJ_BATCH_MS",
    "KCQRS_QUERY_WAIT_MS",
    "KCQRS_QUERY_READY_LAG",
    "KCQRS_PG_SCHEMA",
    "KCQRS_REPLAY_BATCH_MAX",
    "KCQRS_REPLAY_RUNS_KEEP",
    "KCQRS_WORKER_ADDR",
    "KCQRS_WORKER_COMMANDS_URL",
    "KCQRS_WORKER_KEY_FILE",
    "KCQRS_WORKER_GROUP",
    "KCQRS_WORKER_MAX_RUNS",
    "KCQRS_WORKER_CONNECT_TIMEOUT_MS",
    "KCQRS_WORKER_TIMEOUT_MS",
    "KCQRS_WORKER_RESPONSE_MAX",
    "KCQRS_WORKER_MAX_CONNECTIONS",
    "KCQRS_WORKER_ALLOW_PRIVATE",
    "KCQRS_WORKER_CA_FILE",
    "KCQRS_WORKER_RETRY_BASE_MS",
    "KCQRS_WORKER_RETRY_FACTOR",
    "KCQRS_WORKER_RETRY_CAP_MS",
    "KCQRS_WORKER_MAX_ATTEMPTS",
    "KCQRS_WORKER_BREAKER_FAILURES",
    "KCQRS_WORKER_BREAKER_COOLDOWN_MS",
    "KCQRS_WORKER_SMTP_URL",
    "KCQRS_WORKER_SMTP_FROM",
    "KCQRS_WORKER_SMTP_USER",
    "KCQRS_WORKER_SMTP_PASSWORD",
    "KCQRS_FAILPOINT",
    "KCQRS_IDEMPOTENCY_TTL",
};

static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    return 0;
}

static void test_defaults(void **state)
{
    kq_config cfg;
    char err[256] = "";
    char topic[64];

    (void)state;
    assert_int_equal(kq_config_load(&cfg, err, sizeof err), 0);
    assert_string_equal(cfg.brokers, "127.0.0.1:9092");
    assert_string_equal(cfg.topic_prefix, "kcqrs");
    assert_int_equal(cfg.partitions, 6);
    assert_int_equal(cfg.replication_factor, 1);
    assert_int_equal(cfg.log_level, KQ_LOG_INFO);
    assert_int_equal(cfg.log_format, KQ_LOG_HUMAN);
    assert_int_equal(cfg.idempotency_ttl_s, 86400);
    kq_config_topic(&cfg, "resource", topic, sizeof topic);
    assert_string_equal(topic, "kcqrs.resource.events");
    assert_int_equal(cfg.http_max_conns, 4096);
    assert_int_equal(cfg.http_max_body_public, 16384);
    assert_int_equal(cfg.http_head_timeout_ms, 10000);
    assert_int_equal(cfg.http_min_body_rate, 1024);
    assert_int_equal(cfg.access_log_every, 1);
    assert_string_equal(cfg.cmd_internal_addr, "127.0.0.1:8090");
    assert_string_equal(cfg.http_tls_cert, "none");
    kq_config_free(&cfg);
    assert_null(cfg.brokers);
}

/* KCQRS_ACCESS_LOG: all (1), errors (0), sample:N (N). */
static void test_access_log(void **state)
{
    static const struct {
        const char *val;
        int every;
    } ok[] = {{"all", 1}, {"errors", 0}, {"sample:1", 1}, {"sample:100", 100}};
    kq_config cfg;
    char err[256] = "";

    (void)state;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        setenv("KCQRS_ACCESS_LOG", ok[i].val, 1);
        assert_int_equal(kq_config_load(&cfg, err, sizeof err), 0);
        assert_int_equal(cfg.access_log_every, ok[i].every);
        kq_config_free(&cfg);
    }
    unsetenv("KCQRS_ACCESS_LOG");
}

static void test_overrides(void **state)
{
    kq_config cfg;
    char err[256] = "";

    (void)state;
    setenv("KCQRS_BROKERS", "10.0.0.1:9092,10.0.0.2:9092", 1);
    setenv("KCQRS_PARTITIONS", "12", 1);
    setenv("KCQRS_REPLICATION_FACTOR", "3", 1);
    setenv("KCQRS_MIN_INSYNC_REPLICAS", "2", 1);
    setenv("KCQRS_LOG_LEVEL", "debug", 1);
    setenv("KCQRS_LOG_FORMAT", "json", 1);
    setenv("KCQRS_TOPIC_PREFIX", "acme-prod", 1);
    setenv("KCQRS_IDEMPOTENCY_TTL", "90m", 1);
    assert_int_equal(kq_config_load(&cfg, err, sizeof err), 0);
    assert_int_equal(cfg.idempotency_ttl_s, 5400);
    assert_string_equal(cfg.brokers, "10.0.0.1:9092,10.0.0.2:9092");
    assert_int_equal(cfg.partitions, 12);
    assert_int_equal(cfg.replication_factor, 3);
    assert_int_equal(cfg.min_insync_replicas, 2);
    assert_int_equal(cfg.log_level, KQ_LOG_DEBUG);
    assert_int_equal(cfg.log_format, KQ_LOG_JSON);
    assert_string_equal(cfg.topic_prefix, "acme-prod");
    kq_config_free(&cfg);
}

/* Each bad value is refused with the variable's name in the message. */
static void test_invalid_values(void **state)
{
    static const struct {
        const char *var, *val;
    } bad[] = {
        {"KCQRS_PARTITIONS", "0"},
        {"KCQRS_PARTITIONS", "six"},
        {"KCQRS_PARTITIONS", "6x"},
        {"KCQRS_PARTITIONS", ""},
        {"KCQRS_PARTITIONS", "99999999999999999999"},
        {"KCQRS_KAFKA_TIMEOUT_MS", "-5"},
        {"KCQRS_LOG_LEVEL", "verbose"},
        {"KCQRS_LOG_FORMAT", "xml"},
        {"KCQRS_BROKERS", ""},
        {"KCQRS_TOPIC_PREFIX", "a b"},
        {"KCQRS_TOPIC_PREFIX", "x/y"},
        {"KCQRS_MIN_INSYNC_REPLICAS", "2"}, /* > replication factor 1 */
        {"KCQRS_BATCH_MAX", "0"},
        {"KCQRS_BATCH_LINGER_US", "-1"},
        {"KCQRS_HTTP_THREADS", "0"},
        {"KCQRS_HTTP_CONN_MEMORY", "100"},
        {"KCQRS_HTTP_MAX_CONNECTIONS", "2"}, /* below the 4 threads */
        {"KCQRS_COMMANDS_ADDR", ""},
        {"KCQRS_PG_SCHEMA", "Kcqrs"},
        {"KCQRS_PG_SCHEMA", "1abc"},
        {"KCQRS_PG_SCHEMA", "a;drop"},
        {"KCQRS_PG_SCHEMA", "a23456789012345678901234567890123456789012"},
        {"KCQRS_REPLAY_BATCH_MAX", "0"},
        {"KCQRS_REPLAY_RUNS_KEEP", "0"},
        {"KCQRS_ACCESS_LOG", "some"},
        {"KCQRS_ACCESS_LOG", "sample:0"},
        {"KCQRS_ACCESS_LOG", "sample:"},
        {"KCQRS_ACCESS_LOG", "sample:x"},
        {"KCQRS_HTTP_MAX_BODY_PUBLIC", "0"},
        {"KCQRS_HTTP_HEADER_TIMEOUT_MS", "-1"},
        {"KCQRS_HTTP_TLS_CERT", "/etc/cert.pem"}, /* without a key */
        {"KCQRS_HTTP_TLS_KEY", "/etc/key.pem"},   /* without a certificate */
        {"KCQRS_IDEMPOTENCY_TTL", "0s"},
        {"KCQRS_IDEMPOTENCY_TTL", "24 h"},
        {"KCQRS_IDEMPOTENCY_TTL", "1.5h"},
        {"KCQRS_IDEMPOTENCY_TTL", "-1h"},
        {"KCQRS_IDEMPOTENCY_TTL", "1w"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kq_config cfg;
        char err[256] = "";
        clear_env(NULL);
        setenv(bad[i].var, bad[i].val, 1);
        assert_int_equal(kq_config_load(&cfg, err, sizeof err), KQ_ECONFIG);
        assert_non_null(strstr(err, bad[i].var));
        assert_null(cfg.brokers); /* nothing left to free */
    }
}

static void test_markdown_table_lists_every_variable(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    (void)state;
    assert_non_null(f);
    kq_config_print_markdown(f);
    fclose(f);
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        assert_non_null(strstr(text, vars[i]));
    assert_non_null(strstr(text, "| variable | default | meaning |"));
    free(text);
}

/* Which binary lists which setting in --help. */
static void test_readers(void **state)
{
    (void)state;
    assert_int_equal(kq_config_bin_of("kcqrs-worker"), KQ_BIN_WORKER);
    assert_int_equal(kq_config_bin_of("kcqrs-dlq"), KQ_BIN_DLQ);
    assert_int_equal(kq_config_bin_of("kcqrs"), 0);
    assert_int_equal(kq_config_reads("KCQRS_LOG_LEVEL", KQ_BIN_KEYS), 1);
    assert_int_equal(kq_config_reads("KCQRS_BROKERS", KQ_BIN_KEYS), 0);
    assert_int_equal(kq_config_reads("KCQRS_BROKERS", KQ_BIN_EVENTS), 1);
    assert_int_equal(kq_config_reads("KCQRS_HTTP_TLS_CA", KQ_BIN_WORKER), 1);
    assert_int_equal(kq_config_reads("KCQRS_HTTP_TLS_CA", KQ_BIN_QUERY), 0);
    assert_int_equal(kq_config_reads("KCQRS_HTTP_THREADS", KQ_BIN_QUERY), 1);
    assert_int_equal(kq_config_reads("KCQRS_BATCH_MAX", KQ_BIN_WORKER), 1);
    assert_int_equal(kq_config_reads("KCQRS_BATCH_LINGER_US", KQ_BIN_WORKER), 0);
    assert_int_equal(kq_config_reads("KCQRS_WORKER_SMTP_URL", KQ_BIN_WORKER), 1);
    assert_int_equal(kq_config_reads("KCQRS_WORKER_SMTP_URL", KQ_BIN_ALL & ~KQ_BIN_WORKER), 0);
    assert_int_equal(kq_config_reads("KCQRS_NO_SUCH_SETTING", KQ_BIN_ALL), 0);
    /* every setting is read by at least one binary */
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        assert_int_equal(kq_config_reads(vars[i], KQ_BIN_ALL), 1);
}

static void test_log_records(void **state)
{
    char line[512];
    size_t n;

    (void)state;
    kq_log_init("/usr/bin/kcqrs-test", KQ_LOG_INFO, KQ_LOG_JSON);
    n = kq_log_format_record(line, sizeof line, KQ_LOG_WARN, "say \"hi\"\n\x01");
    assert_int_equal(n, strlen(line));
    assert_non_null(strstr(line, "\"level\":\"warn\""));
    assert_non_null(strstr(line, "\"prog\":\"kcqrs-test\""));
    assert_non_null(strstr(line, "\"msg\":\"say \\\"hi\\\"\\n\\u0001\"}\n"));
    assert_int_equal(kq_log_enabled(KQ_LOG_DEBUG), 0);
    assert_int_equal(kq_log_enabled(KQ_LOG_ERROR), 1);

    /* a message longer than the buffer still yields one well-formed line */
    {
        char big[1000], small[128];
        memset(big, 'x', sizeof big - 1);
        big[sizeof big - 1] = '\0';
        n = kq_log_format_record(small, sizeof small, KQ_LOG_ERROR, big);
        assert_true(n < sizeof small);
        assert_int_equal(small[n - 1], '\n');
        assert_non_null(strstr(small, "\"}\n"));
    }

    kq_log_init("kcqrs-test", KQ_LOG_DEBUG, KQ_LOG_HUMAN);
    n = kq_log_format_record(line, sizeof line, KQ_LOG_ERROR, "boom");
    assert_non_null(strstr(line, " ERROR kcqrs-test: boom\n"));
    assert_int_equal(line[n - 1], '\n');
}

static void test_strerror(void **state)
{
    char err[16];

    (void)state;
    assert_string_equal(kq_strerror(KQ_OK), "success");
    assert_string_equal(kq_strerror(KQ_ECORRUPT), "data failed verification");
    assert_string_equal(kq_strerror(-9999), "unknown error");
    assert_int_equal(kq_seterr(err, sizeof err, KQ_EINVAL, "%s", "a very long message"), KQ_EINVAL);
    assert_int_equal(strlen(err), sizeof err - 1); /* truncated, terminated */
    assert_int_equal(kq_seterr(NULL, 0, KQ_EIO, "x"), KQ_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clear_env),
        cmocka_unit_test_setup(test_overrides, clear_env),
        cmocka_unit_test_setup(test_invalid_values, clear_env),
        cmocka_unit_test_setup(test_access_log, clear_env),
        cmocka_unit_test(test_markdown_table_lists_every_variable),
        cmocka_unit_test(test_readers),
        cmocka_unit_test(test_log_records),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
