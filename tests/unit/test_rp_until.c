/*
 * test_rp_until.c — kcqrs-replay's bounds without Kafka: snapshot names,
 * TIME (RFC 3339 with fractions and offsets, @µs: kq_time_parse_err, the
 * parser of every --until and --since) and SPEC parsing with their error
 * messages, default names; and the runner's replay options
 * that are refused before any thread or consumer exists.
 */
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
#include "kq_time.h"
#include "kq_time_table.h"
#include "proj_runner.h"
#include "rp_until.h"

static void test_names(void **state)
{
    (void)state;
    assert_true(rp_name_valid("a"));
    assert_true(rp_name_valid("until_20261122t100000"));
    assert_true(rp_name_valid("abcdefghijklmnopqrstuvwxyz012345")); /* 32 */
    assert_false(rp_name_valid("abcdefghijklmnopqrstuvwxyz0123456"));
    assert_false(rp_name_valid(""));
    assert_false(rp_name_valid(NULL));
    assert_false(rp_name_valid("Upper"));
    assert_false(rp_name_valid("a-b"));
    assert_false(rp_name_valid("a.b"));
    assert_false(rp_name_valid("../x"));
}

static void test_time_ok(void **state)
{
    char err[512];
    int64_t us = 0;

    (void)state;
    assert_int_equal(kq_time_parse_err("1970-01-01T00:00:00Z", &us, err, sizeof err), 0);
    assert_int_equal(us, 0);
    assert_int_equal(kq_time_parse_err("2026-11-22T10:00:00Z", &us, err, sizeof err), 0);
    assert_int_equal(us, 1795341600000000LL);
    assert_int_equal(kq_time_parse_err("2026-11-22T10:00:00.123456Z", &us, err, sizeof err), 0);
    assert_int_equal(us, 1795341600123456LL);
    assert_int_equal(kq_time_parse_err("2026-11-22T10:00:00.5Z", &us, err, sizeof err), 0);
    assert_int_equal(us, 1795341600500000LL);
    /* nanoseconds are truncated: still <= the bound */
    assert_int_equal(kq_time_parse_err("2026-11-22T10:00:00.123456789Z", &us, err, sizeof err), 0);
    assert_int_equal(us, 1795341600123456LL);
    assert_int_equal(kq_time_parse_err("2026-11-22T11:00:00.000001+01:00", &us, err, sizeof err),
                     0);
    assert_int_equal(us, 1795341600000001LL);
    assert_int_equal(kq_time_parse_err("2026-11-22T05:30:00-04:30", &us, err, sizeof err), 0);
    assert_int_equal(us, 1795341600000000LL);
    assert_int_equal(kq_time_parse_err("2024-02-29t00:00:00z", &us, err, sizeof err), 0);
    assert_int_equal(kq_time_parse_err("@1795341600123456", &us, err, sizeof err), 0);
    assert_int_equal(us, 1795341600123456LL);
    assert_int_equal(kq_time_parse_err("@0", &us, err, sizeof err), 0);
    assert_int_equal(us, 0);
}

static void bad_time(const char *s, const char *why)
{
    char err[512];
    int64_t us = 42;

    assert_int_equal(kq_time_parse_err(s, &us, err, sizeof err), KQ_EINVAL);
    assert_int_equal(us, 42);
    if (strstr(err, why) == NULL)
        fail_msg("'%s': '%s' does not say '%s'", s, err, why);
}

static void test_time_bad(void **state)
{
    (void)state;
    bad_time("", "empty");
    bad_time("yesterday", "expected YYYY-MM-DDThh:mm:ss");
    bad_time("2026-11-22", "expected YYYY-MM-DDThh:mm:ss");
    bad_time("2026-11-22 10:00:00Z", "expected YYYY-MM-DDThh:mm:ss");
    bad_time("2026-11-22T10:00Z", "expected YYYY-MM-DDThh:mm:ss");
    bad_time("2026-11-22T10:00:00", "missing time zone");
    bad_time("2026-11-22T10:00:00+0100", "bad UTC offset");
    bad_time("2026-11-22T10:00:00+24:00", "bad UTC offset");
    bad_time("2026-11-22T10:00:00Zjunk", "trailing characters");
    bad_time("2026-11-22T10:00:00.Z", "no digits after '.'");
    bad_time("2026-11-22T10:00:00.1234567890Z", "more than 9 fraction digits");
    bad_time("2026-13-01T00:00:00Z", "field out of range");
    bad_time("2026-11-22T24:00:00Z", "field out of range");
    bad_time("2026-11-22T10:60:00Z", "field out of range");
    bad_time("2026-02-30T00:00:00Z", "no such date");
    bad_time("2025-02-29T00:00:00Z", "no such date");
    bad_time("@", "not an integer after '@'");
    bad_time("@12x", "not an integer after '@'");
    bad_time("@99999999999999999999999", "not an integer after '@'");
    /* the whole error names the option's value and the accepted forms */
    bad_time("2026-11-22T10:00:00", "bad TIME '2026-11-22T10:00:00': missing time zone");
    bad_time("x", "or @<microseconds since the epoch>");
}

/* Issue #12: the tools take the same times as the query API (one parser,
 * kq_time): before 1970 and negative @µs too. */
static void test_time_like_the_api(void **state)
{
    char err[512];
    int64_t us = 0;

    (void)state;
    assert_int_equal(kq_time_parse_err("1969-12-31T23:59:59Z", &us, err, sizeof err), 0);
    assert_int_equal(us, -1000000);
    assert_int_equal(kq_time_parse_err("1970-01-01T00:30:00+01:00", &us, err, sizeof err), 0);
    assert_int_equal(us, -1800000000LL);
    assert_int_equal(kq_time_parse_err("@-5", &us, err, sizeof err), 0);
    assert_int_equal(us, -5);
    for (size_t i = 0; i < kq_time_cases_n; i++) {
        const kq_time_case *c = &kq_time_cases[i];
        int64_t a = 42, b = 42;
        int ra = kq_time_parse_err(c->in, &a, err, sizeof err), rb = kq_time_parse(c->in, &b);
        assert_int_equal(ra, rb);
        assert_int_equal(ra, c->ok ? 0 : KQ_EINVAL);
        assert_int_equal(a, b);
    }
}

static const char *const topics[] = {"p.resource.events", "p.workflow.events", "p.run.events"};

static void test_spec_ok(void **state)
{
    proj_offset out[8];
    size_t n = 99;
    char err[512];

    (void)state;
    assert_int_equal(
        rp_parse_offsets("p.resource.events:0=10", topics, 3, 4, out, 8, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    assert_ptr_equal(out[0].topic, topics[0]);
    assert_int_equal(out[0].partition, 0);
    assert_int_equal(out[0].next_offset, 10);
    assert_int_equal(rp_parse_offsets("p.resource.events:3=0,p.run.events:1=123456789012", topics,
                                      3, 4, out, 8, &n, err, sizeof err),
                     0);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].partition, 3);
    assert_int_equal(out[0].next_offset, 0);
    assert_ptr_equal(out[1].topic, topics[2]);
    assert_int_equal(out[1].next_offset, 123456789012LL);
}

static void bad_spec(const char *spec, const char *why)
{
    proj_offset out[4];
    size_t n = 0;
    char err[512];

    assert_int_equal(rp_parse_offsets(spec, topics, 3, 4, out, 4, &n, err, sizeof err), KQ_EINVAL);
    if (strstr(err, why) == NULL)
        fail_msg("'%s': '%s' does not say '%s'", spec, err, why);
}

static void test_spec_bad(void **state)
{
    (void)state;
    bad_spec("", "empty SPEC");
    bad_spec("p.resource.events:0", "no '='");
    bad_spec("p.resource.events=5", "no ':'");
    bad_spec("other.topic:0=5", "'other.topic' is not an event topic");
    bad_spec("p.resource.events:4=5", "partition is not in [0, KCQRS_PARTITIONS)");
    bad_spec("p.resource.events:-1=5", "partition is not in");
    bad_spec("p.resource.events:x=5", "partition is not in");
    bad_spec("p.resource.events:0=-1", "offset is not a non-negative integer");
    bad_spec("p.resource.events:0=", "offset is not a non-negative integer");
    bad_spec("p.resource.events:0=1x", "offset is not a non-negative integer");
    bad_spec("p.resource.events:0=1,", "trailing ','");
    bad_spec("p.resource.events:0=1,,p.run.events:0=1", "empty");
    bad_spec("p.resource.events:0=1,p.resource.events:0=2", "partition given twice");
    bad_spec("p.resource.events:0=1,p.resource.events:1=1,p.resource.events:2=1,"
             "p.resource.events:3=1,p.run.events:0=1",
             "too many items");
}

static void test_default_name(void **state)
{
    char name[64];

    (void)state;
    rp_default_name(1795341600123456LL, name, sizeof name);
    assert_string_equal(name, "until_20261122t100000");
    assert_true(rp_name_valid(name));
    rp_default_name(0, name, sizeof name);
    assert_string_equal(name, "until_19700101t000000");
    rp_default_name(-1, name, sizeof name); /* the second before the epoch */
    assert_string_equal(name, "until_19691231t235959");
    assert_true(rp_name_valid(name));
}

/* Options the runner refuses before it creates anything. */
static void test_runner_opts_refused(void **state)
{
    static const proj_target_ops ops = {"lmdb", NULL, NULL, NULL, NULL, NULL};
    kq_config cfg;
    proj_runner_opts o;
    proj_runner *r = (proj_runner *)1;
    proj_offset until[1] = {{"kcqrs.resource.events", 0, 5}};
    char err[512];

    (void)state;
    assert_int_equal(kq_config_load(&cfg, err, sizeof err), 0);
    memset(&o, 0, sizeof o);
    o.until = until;
    o.nuntil = 1;
    assert_int_equal(proj_runner_start_opts(&cfg, &ops, &o, &r, err, sizeof err), KQ_EINVAL);
    assert_null(r);
    assert_non_null(strstr(err, "replays only"));
    o.replay = 1;
    until[0].topic = "nosuch.resource.events";
    assert_int_equal(proj_runner_start_opts(&cfg, &ops, &o, &r, err, sizeof err), KQ_EINVAL);
    assert_non_null(strstr(err, "no partition nosuch.resource.events [0]"));
    until[0].topic = "kcqrs.resource.events";
    until[0].partition = cfg.partitions;
    assert_int_equal(proj_runner_start_opts(&cfg, &ops, &o, &r, err, sizeof err), KQ_EINVAL);
    until[0].partition = 0;
    until[0].next_offset = -1;
    assert_int_equal(proj_runner_start_opts(&cfg, &ops, &o, &r, err, sizeof err), KQ_EINVAL);
    kq_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),        cmocka_unit_test(test_time_ok),
        cmocka_unit_test(test_time_bad),     cmocka_unit_test(test_time_like_the_api),
        cmocka_unit_test(test_spec_ok),      cmocka_unit_test(test_spec_bad),
        cmocka_unit_test(test_default_name), cmocka_unit_test(test_runner_opts_refused),
    };

    setenv("KCQRS_TOPIC_PREFIX", "kcqrs", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
