/* test_obs.c — what operators read: the process metrics' /proc parser and
 * output, JSON log records with fields (always one valid JSON object per line,
 * whatever the size), and the request-id rule of kq_http. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kq_version.h"
#include "kq_err.h"
#include "kq_http.h"
#include "kq_log.h"
#include "kq_procmetrics.h"

static void test_parse_stat(void **state)
{
    /* a command name with spaces and parentheses; fields 14, 15, 20, 22, 23, 24 */
    const char *line = "4242 (kcqrs (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 "
                       "250 75 0 0 20 0 9 0 123456 987654321 2048 18446744073709551615 1 1 0 0";
    kq_proc_stat st;

    (void)state;
    assert_int_equal(kq_procmetrics_parse_stat(line, &st), 0);
    assert_int_equal(st.utime, 250);
    assert_int_equal(st.stime, 75);
    assert_int_equal(st.threads, 9);
    assert_int_equal(st.starttime, 123456);
    assert_int_equal(st.vsize, 987654321ULL);
    assert_int_equal(st.rss, 2048);
    assert_int_equal(kq_procmetrics_parse_stat("4242 (no close paren S 1", &st), KQ_EINVAL);
    assert_int_equal(kq_procmetrics_parse_stat("4242 (short) S 1 2 3", &st), KQ_EINVAL);
    assert_int_equal(kq_procmetrics_parse_stat("1 (a) S 1 2 x 4 5 6 7 8 9 10 11 12 13 14 15 16 17 "
                                               "18 19 20 21 22 23 24",
                                               &st),
                     KQ_EINVAL);
    assert_int_equal(kq_procmetrics_parse_stat(NULL, &st), KQ_EINVAL);
}

/* The value of a sample line "name value" in text, or -1. */
static double sample(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, name, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static void test_write(void **state)
{
    char *buf = NULL, want[256];
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    volatile double spin = 0;

    (void)state;
    for (long i = 0; i < 20000000; i++) /* some CPU time to see */
        spin += (double)i;
    assert_non_null(f);
    kq_procmetrics_write(f);
    assert_int_equal(fclose(f), 0);
    snprintf(want, sizeof want, "kcqrs_build_info{version=\"%s\",commit=\"%s\"} 1\n", kq_version,
             kq_version_commit);
    assert_non_null(strstr(buf, want));
    assert_true(strlen(kq_version) > 0 && strlen(kq_version_commit) > 0);
    assert_non_null(strstr(buf, "# TYPE process_cpu_seconds_total counter\n"));
    assert_true(sample(buf, "process_cpu_seconds_total") > 0);
    assert_true(sample(buf, "process_resident_memory_bytes") > 1e5);
    assert_true(sample(buf, "process_virtual_memory_bytes") >=
                sample(buf, "process_resident_memory_bytes"));
    assert_true(sample(buf, "process_open_fds") >= 3);
    assert_true(sample(buf, "process_max_fds") >= sample(buf, "process_open_fds"));
    assert_true(sample(buf, "process_threads") >= 1);
    {
        double start = sample(buf, "process_start_time_seconds"), now = (double)time(NULL);
        assert_true(start > now - 3600 && start <= now + 1);
    }
    free(buf);
}

static void test_log_fields_json(void **state)
{
    char line[4096];
    json_t *j;
    json_error_t err;
    kq_log_field f[] = {
        {"request_id", "r-1", 0}, {"status", NULL, 201},  {"duration_ms", NULL, 1.5},
        {NULL, "skipped", 0},     {"actor", "a\"b\n", 0},
    };
    size_t n;

    (void)state;
    kq_log_init("kcqrs-test", KQ_LOG_DEBUG, KQ_LOG_JSON);
    n = kq_log_format_fields(line, sizeof line, KQ_LOG_INFO, "http POST /x 201", f, 5);
    assert_int_equal(line[n - 1], '\n');
    j = json_loads(line, 0, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "http POST /x 201");
    assert_string_equal(json_string_value(json_object_get(j, "request_id")), "r-1");
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 201);
    assert_true(json_real_value(json_object_get(j, "duration_ms")) == 1.5);
    assert_string_equal(json_string_value(json_object_get(j, "actor")), "a\"b\n");
    assert_int_equal(json_object_size(j), 8); /* ts level prog msg + 4 fields */
    json_decref(j);

    /* every buffer size: still one JSON object (fields that do not fit are left out) */
    for (size_t cap = 80; cap < 200; cap++) {
        char small[200];
        n = kq_log_format_fields(small, cap, KQ_LOG_INFO, "message", f, 5);
        assert_true(n < cap);
        assert_int_equal(small[n - 1], '\n');
        j = json_loads(small, 0, &err);
        if (j == NULL)
            fail_msg("cap %zu: %s: %s", cap, err.text, small);
        json_decref(j);
    }

    /* human form: the message alone */
    kq_log_init("kcqrs-test", KQ_LOG_DEBUG, KQ_LOG_HUMAN);
    kq_log_format_fields(line, sizeof line, KQ_LOG_INFO, "hello", f, 5);
    assert_non_null(strstr(line, "kcqrs-test: hello\n"));
    assert_null(strstr(line, "r-1"));
}

static void test_request_id_rule(void **state)
{
    char big[80];

    (void)state;
    assert_true(kq_http_request_id_ok("abc"));
    assert_true(kq_http_request_id_ok("4bf92f35-77b3-4da6-a3ce-929d0e0e4736"));
    assert_true(kq_http_request_id_ok("req_1.2:3"));
    assert_false(kq_http_request_id_ok(""));
    assert_false(kq_http_request_id_ok(NULL));
    assert_false(kq_http_request_id_ok("a b"));
    assert_false(kq_http_request_id_ok("a\"b"));
    assert_false(kq_http_request_id_ok("caf\xc3\xa9"));
    assert_false(kq_http_request_id_ok("a\r\nX-Evil: 1"));
    memset(big, 'a', sizeof big);
    big[KQ_HTTP_REQID_MAX] = '\0';
    assert_true(kq_http_request_id_ok(big));
    big[KQ_HTTP_REQID_MAX] = 'a';
    big[KQ_HTTP_REQID_MAX + 1] = '\0';
    assert_false(kq_http_request_id_ok(big));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_stat),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_log_fields_json),
        cmocka_unit_test(test_request_id_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
