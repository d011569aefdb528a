/*
 * test_kq_time.c — kq_time: the table of inputs every time parameter accepts
 * and refuses (the query API's ?since=/?until=, kcqrs-audit's and
 * kcqrs-replay's --since/--until all call kq_time_parse), the printer, the
 * round trip and the calendar split.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "kq_err.h"
#include "kq_time.h"
#include "kq_time_table.h"

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < kq_time_cases_n; i++) {
        const kq_time_case *c = &kq_time_cases[i];
        char why[512] = "";
        int64_t us = 42;
        int rc = kq_time_parse_err(c->in, &us, why, sizeof why);

        if (c->ok) {
            if (rc != 0)
                fail_msg("'%s' refused (%s)", c->in, why);
            if (us != c->us)
                fail_msg("'%s' -> %lld, want %lld", c->in, (long long)us, (long long)c->us);
        } else {
            if (rc != KQ_EINVAL)
                fail_msg("'%s' accepted as %lld", c->in, (long long)us);
            if (us != 42)
                fail_msg("'%s' refused but wrote *us", c->in);
            if (strstr(why, c->why) == NULL)
                fail_msg("'%s': '%s' does not say '%s'", c->in, why, c->why);
            assert_int_equal(kq_time_parse(c->in, &us), KQ_EINVAL);
        }
    }
    assert_int_equal(kq_time_parse(NULL, NULL), KQ_EINVAL);
}

static void test_format(void **state)
{
    char buf[KQ_TIME_MAX];

    (void)state;
    kq_time_format(1700000000123456LL, buf);
    assert_string_equal(buf, "2023-11-14T22:13:20.123456Z");
    kq_time_format(0, buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000000Z");
    kq_time_format(-1, buf);
    assert_string_equal(buf, "1969-12-31T23:59:59.999999Z");
    kq_time_format(KQ_TIME_MIN_US, buf);
    assert_string_equal(buf, "0001-01-01T00:00:00.000000Z");
    kq_time_format(KQ_TIME_MAX_US, buf);
    assert_string_equal(buf, "9999-12-31T23:59:59.999999Z");
    kq_time_format(951782400000000LL, buf); /* a leap day of a year divisible by 400 */
    assert_string_equal(buf, "2000-02-29T00:00:00.000000Z");
    /* any int64 fits the buffer, even far outside what the parser takes */
    kq_time_format(INT64_MAX, buf);
    assert_true(strlen(buf) < KQ_TIME_MAX);
    kq_time_format(INT64_MIN, buf);
    assert_true(strlen(buf) < KQ_TIME_MAX);
}

static void test_round_trip(void **state)
{
    static const int64_t v[] = {0,
                                1,
                                -1,
                                999999,
                                -999999,
                                1795341600123456LL,
                                -86400000000LL,
                                KQ_TIME_MIN_US,
                                KQ_TIME_MAX_US,
                                951782400000000LL - 1};
    char buf[KQ_TIME_MAX], at[40];
    int64_t us;

    (void)state;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        kq_time_format(v[i], buf);
        assert_int_equal(kq_time_parse(buf, &us), 0);
        assert_int_equal(us, v[i]);
        snprintf(at, sizeof at, "@%lld", (long long)v[i]);
        assert_int_equal(kq_time_parse(at, &us), 0);
        assert_int_equal(us, v[i]);
    }
    /* every day of four years, at a second before midnight */
    for (int64_t d = -800; d < 800; d++) {
        int64_t t = (d * 86400 + 86399) * 1000000 + 7;
        kq_time_format(t, buf);
        assert_int_equal(kq_time_parse(buf, &us), 0);
        assert_int_equal(us, t);
    }
}

static void test_split_and_clocks(void **state)
{
    kq_tm t;
    int64_t a, b;

    (void)state;
    kq_time_split(-1, &t);
    assert_int_equal(t.year, 1969);
    assert_int_equal(t.mon, 12);
    assert_int_equal(t.day, 31);
    assert_int_equal(t.hour, 23);
    assert_int_equal(t.min, 59);
    assert_int_equal(t.sec, 59);
    assert_int_equal(t.usec, 999999);
    kq_time_split(1795341600123456LL, &t);
    assert_int_equal(t.year, 2026);
    assert_int_equal(t.mon, 11);
    assert_int_equal(t.day, 22);
    assert_int_equal(t.hour, 10);
    assert_int_equal(t.usec, 123456);
    a = kq_time_now_us();
    assert_true(a > 1700000000000000LL);
    b = kq_time_now_ms();
    assert_true(b >= a / 1000 && b - a / 1000 < 60000);
    a = kq_time_mono_us();
    b = kq_time_mono_us();
    assert_true(b >= a);
    a = kq_time_mono_ms();
    assert_true(a >= b / 1000 - 1 && a - b / 1000 < 60000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_split_and_clocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
