/* test_kprops.c — KCQRS_KAFKA_PROPERTIES: parsing, validation with PATH:LINE,
 * secrets never shown, and the properties reaching every conf kq_kafka builds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kq_config.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_kprops.h"

static char path[64];

/* Write `text` (len bytes, may hold NULs) to a fresh temporary file. */
static const char *file_of(const char *text, size_t len)
{
    int fd;
    FILE *f;

    snprintf(path, sizeof path, "/tmp/test_kprops.XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
    return path;
}

static int cleanup(void **state)
{
    (void)state;
    if (path[0])
        unlink(path);
    path[0] = '\0';
    unsetenv("KCQRS_KAFKA_PROPERTIES");
    return 0;
}

static void test_good_file(void **state)
{
    static const char text[] = "# TLS and SASL\n"
                               "\n"
                               "   security.protocol = SASL_SSL  \n"
                               "sasl.mechanisms=SCRAM-SHA-512\r\n"
                               "\t# indented comment\n"
                               "sasl.username=kcqrs\n"
                               "sasl.password=p=ss w#rd\n"
                               "queue.buffering.max.ms=5";
    kq_kprops *p = NULL;
    char err[512] = "";

    (void)state;
    assert_int_equal(kq_kprops_load(file_of(text, strlen(text)), &p, err, sizeof err), 0);
    assert_int_equal(p->n, 5);
    assert_string_equal(p->keys[0], "security.protocol");
    assert_string_equal(p->values[0], "SASL_SSL");
    assert_int_equal(p->lines[0], 3);
    assert_string_equal(p->values[1], "SCRAM-SHA-512"); /* CR dropped */
    assert_string_equal(kq_kprops_get(p, "sasl.password"), "p=ss w#rd");
    assert_string_equal(p->values[4], "5"); /* last line without a newline */
    assert_null(kq_kprops_get(p, "ssl.ca.location"));
    /* secrets are shown redacted, the rest as is */
    assert_string_equal(kq_kprops_shown(p, 3), "[redacted]");
    assert_string_equal(kq_kprops_shown(p, 2), "kcqrs");
    kq_kprops_free(p);
}

/* One row per refusal: the file, the line the message must name, a phrase. */
static void test_refusals(void **state)
{
    static const struct {
        const char *text;
        int line;
        const char *phrase;
    } bad[] = {
        {"security.protocl=SSL\n", 1, "unknown librdkafka property 'security.protocl'"},
        {"# ok\nsecurity.protocol=bogus\n", 2, "security.protocol"},
        {"\n\nsasl.username\n", 3, "expected key=value"},
        {"=x\n", 1, "empty key"},
        {"sasl.username=a\nsasl.username=b\n", 2, "again (first on line 1)"},
        {"bootstrap.servers=h:1\n", 1, "KCQRS_BROKERS"},
        {"acks=1\n", 1, "set by kcqrs"},
        {"isolation.level=read_uncommitted\n", 1, "set by kcqrs"},
        {"transactional.id=x\n", 1, "set by kcqrs"},
        {"message.timeout.ms=1\n", 1, "KCQRS_KAFKA_TIMEOUT_MS"},
        {"sasl.username=a\x01\n", 1, "control character"},
        {"queue.buffering.max.ms=abc\n", 1, "queue.buffering.max.ms"},
    };
    char err[512];

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kq_kprops *p = (kq_kprops *)1;
        char want[128];
        const char *f = file_of(bad[i].text, strlen(bad[i].text));

        err[0] = '\0';
        assert_int_equal(kq_kprops_load(f, &p, err, sizeof err), KQ_ECONFIG);
        assert_null(p);
        snprintf(want, sizeof want, "%s:%d: ", f, bad[i].line);
        if (strstr(err, want) == NULL || strstr(err, bad[i].phrase) == NULL)
            fail_msg("row %zu: '%s' lacks '%s' or '%s'", i, err, want, bad[i].phrase);
        unlink(f);
    }
}

static void test_nul_byte_and_missing_file(void **state)
{
    kq_kprops *p = NULL;
    char err[512] = "";

    (void)state;
    assert_int_equal(kq_kprops_load(file_of("sasl.username=a\0b\n", 18), &p, err, sizeof err),
                     KQ_ECONFIG);
    assert_non_null(strstr(err, ":1: NUL byte"));
    assert_int_equal(kq_kprops_load("/nonexistent/kafka.properties", &p, err, sizeof err), KQ_EIO);
    assert_non_null(strstr(err, "/nonexistent/kafka.properties"));
}

/* A secret's bad value never appears in an error message. */
static void test_secret_not_in_errors(void **state)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[512] = "";

    (void)state;
    /* librdkafka refuses this (unknown) secret-named property: the message
     * names it without its value. */
    assert_true(kq_kprops_is_secret("sasl.password"));
    assert_true(kq_kprops_is_secret("ssl.keystore.password"));
    assert_true(kq_kprops_is_secret("sasl.oauthbearer.client.secret"));
    assert_true(kq_kprops_is_secret("ssl.key.pem"));
    assert_false(kq_kprops_is_secret("sasl.username"));
    assert_false(kq_kprops_is_secret("ssl.ca.location"));
    assert_int_equal(kq_kafka_conf_set(conf, "sasl.password.x", "hunter2", err, sizeof err),
                     KQ_ECONFIG);
    assert_null(strstr(err, "hunter2"));
    rd_kafka_conf_destroy(conf);
}

/* kq_config loads the file; every conf from kq_kafka_conf_new carries it. */
static void test_config_and_conf(void **state)
{
    static const char text[] = "security.protocol=sasl_plaintext\nsasl.mechanisms=PLAIN\n"
                               "sasl.username=u\nsasl.password=hunter2\n";
    kq_config cfg;
    char err[512] = "", val[64];
    size_t vlen = sizeof val;
    rd_kafka_conf_t *conf;

    (void)state;
    setenv("KCQRS_KAFKA_PROPERTIES", file_of(text, strlen(text)), 1);
    assert_int_equal(kq_config_load(&cfg, err, sizeof err), 0);
    assert_non_null(cfg.kafka_props);
    assert_int_equal(cfg.kafka_props->n, 4);
    conf = kq_kafka_conf_new(&cfg, "t", err, sizeof err);
    assert_non_null(conf);
    assert_int_equal(rd_kafka_conf_get(conf, "security.protocol", val, &vlen), RD_KAFKA_CONF_OK);
    assert_string_equal(val, "sasl_plaintext");
    vlen = sizeof val;
    assert_int_equal(rd_kafka_conf_get(conf, "sasl.username", val, &vlen), RD_KAFKA_CONF_OK);
    assert_string_equal(val, "u");
    rd_kafka_conf_destroy(conf);
    kq_config_free(&cfg);
    assert_null(cfg.kafka_props);

    /* a bad file stops kq_config_load with PATH:LINE */
    unlink(path);
    setenv("KCQRS_KAFKA_PROPERTIES", file_of("a=b\n", 4), 1);
    assert_int_equal(kq_config_load(&cfg, err, sizeof err), KQ_ECONFIG);
    assert_non_null(strstr(err, ":1: unknown librdkafka property 'a'"));
    /* none: no file */
    setenv("KCQRS_KAFKA_PROPERTIES", "none", 1);
    assert_int_equal(kq_config_load(&cfg, err, sizeof err), 0);
    assert_null(cfg.kafka_props);
    kq_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_good_file, cleanup),
        cmocka_unit_test_teardown(test_refusals, cleanup),
        cmocka_unit_test_teardown(test_nul_byte_and_missing_file, cleanup),
        cmocka_unit_test_teardown(test_secret_not_in_errors, cleanup),
        cmocka_unit_test_teardown(test_config_and_conf, cleanup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
