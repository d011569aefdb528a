/* test_util.c — kq_parse_long, kq_parse_duration_s and kq_read_file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kq_err.h"
#include "kq_util.h"

static void test_parse_duration(void **state)
{
    static const struct {
        const char *s;
        long want; /* -1: refused */
    } rows[] = {
        {"24h", 86400},
        {"90m", 5400},
        {"3600s", 3600},
        {"3600", 3600},
        {"1d", 86400},
        {"1s", 1},
        {"0s", -1},
        {"", -1},
        {"h", -1},
        {"24H", -1},
        {" 24h", -1},
        {"24h ", -1},
        {"+5s", -1},
        {"-5s", -1},
        {"1.5h", -1},
        {"1h30m", -1},
        {"24hh", -1},
        {"3651d", -1},
        {"3650d", 3650L * 86400},
        {"99999999999999999999s", -1},
        {"9223372036854775807d", -1},
    };
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        long v = 42;
        int rc = kq_parse_duration_s(rows[i].s, 1, 3650L * 86400, &v);
        if (rows[i].want < 0) {
            if (rc != KQ_EINVAL || v != 42)
                fail_msg("'%s' accepted as %ld", rows[i].s, v);
        } else if (rc != 0 || v != rows[i].want) {
            fail_msg("'%s': rc %d, %ld, want %ld", rows[i].s, rc, v, rows[i].want);
        }
    }
}

static void test_parse_long(void **state)
{
    long v = 42;

    (void)state;
    assert_int_equal(kq_parse_long("17", 0, 100, &v), 0);
    assert_int_equal(v, 17);
    assert_int_equal(kq_parse_long("-5", -10, 10, &v), 0);
    assert_int_equal(v, -5);
    v = 42;
    static const char *const bad[] = {
        "", " 1", "1 ", "1x", "x", "101", "-1", "0x10", "+5", "\t3", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(kq_parse_long(bad[i], 0, 100, &v), KQ_EINVAL);
    assert_int_equal(v, 42); /* untouched on failure */
    assert_int_equal(kq_parse_long(NULL, 0, 1, &v), KQ_EINVAL);
    assert_int_equal(kq_parse_long("9223372036854775807", 0, LONG_MAX, &v), 0);
    assert_int_equal(v, LONG_MAX);
}

static void test_read_file(void **state)
{
    char path[] = "/tmp/kq_util_XXXXXX", err[256] = "", *buf = NULL;
    size_t len = 0;
    int fd;
    char data[10000];

    (void)state;
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)('a' + i % 26);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, sizeof data), (ssize_t)sizeof data);
    close(fd);

    assert_int_equal(kq_read_file(path, sizeof data, &buf, &len, err, sizeof err), 0);
    assert_int_equal(len, sizeof data);
    assert_memory_equal(buf, data, sizeof data);
    assert_int_equal(buf[len], '\0');
    free(buf);

    buf = NULL;
    assert_int_equal(kq_read_file(path, sizeof data - 1, &buf, &len, err, sizeof err), KQ_ERANGE);
    assert_null(buf);
    assert_non_null(strstr(err, path));

    unlink(path);
    assert_int_equal(kq_read_file(path, 100, &buf, &len, err, sizeof err), KQ_EIO);
    assert_non_null(strstr(err, "No such file"));

    /* an empty file is an empty, terminated string */
    strcpy(path, "/tmp/kq_util_XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(kq_read_file(path, 100, &buf, &len, err, sizeof err), 0);
    assert_int_equal(len, 0);
    assert_string_equal(buf, "");
    free(buf);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_long),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_read_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
