/*
 * test_aud_cli.c — kcqrs-audit's command line (aud_cli.h) without Kafka:
 * --since/--until take exactly the inputs of the query API's ?since=/?until=
 * (the shared table of kq_time_table.h, also run by test_qry_api.c through
 * HTTP), the other options and their refusals, --expect-head.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "aud_cli.h"
#include "kq_err.h"
#include "kq_time_table.h"

#define ARGV(...) ((char *[]){"query", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *[]){"query", __VA_ARGS__}) / sizeof(char *)))

static int query(char **argv, int argc, aud_query_opts *o, char *err)
{
    return aud_cli_query(argc, argv, o, err, 512);
}

static void test_times_like_the_api(void **state)
{
    static const char *const names[] = {"--since", "--until"};
    char err[512], eq[256];
    aud_query_opts o;

    (void)state;
    for (size_t i = 0; i < kq_time_cases_n; i++) {
        const kq_time_case *c = &kq_time_cases[i];
        for (int n = 0; n < 2; n++) {
            char *argv[] = {"query", (char *)names[n], (char *)c->in, NULL};
            int rc = aud_cli_query(3, argv, &o, err, sizeof err);
            int64_t got = n == 0 ? o.f.since_us : o.f.until_us;
            if (c->ok) {
                if (rc != 0)
                    fail_msg("%s '%s' refused: %s", names[n], c->in, err);
                assert_int_equal(got, c->us);
            } else {
                if (rc != KQ_EINVAL)
                    fail_msg("%s '%s' accepted", names[n], c->in);
                if (strncmp(err, names[n], strlen(names[n])) != 0 || strstr(err, c->why) == NULL)
                    fail_msg("%s '%s': '%s' does not say '%s'", names[n], c->in, err, c->why);
            }
            /* the --name=value form gives the same answer */
            snprintf(eq, sizeof eq, "%s=%s", names[n], c->in);
            char *argv2[] = {"query", eq, NULL};
            assert_int_equal(aud_cli_query(2, argv2, &o, err, sizeof err), c->ok ? 0 : KQ_EINVAL);
        }
    }
}

static void test_query_options(void **state)
{
    char err[512];
    aud_query_opts o;

    (void)state;
    assert_int_equal(query(ARGV("--format", "table"), ARGC("--format", "table"), &o, err), 0);
    assert_true(o.table);
    assert_int_equal(o.limit, -1);
    assert_int_equal(o.f.since_us, INT64_MIN);
    assert_int_equal(o.f.until_us, INT64_MAX);
    assert_int_equal(query(ARGV("--aggregate-type", "run", "--aggregate-id", "r-1", "--actor",
                                "alice", "--event-type", "RunStarted", "--limit=5"),
                           ARGC("--aggregate-type", "run", "--aggregate-id", "r-1", "--actor",
                                "alice", "--event-type", "RunStarted", "--limit=5"),
                           &o, err),
                     0);
    assert_int_equal(o.f.agg, EV_AGG_RUN);
    assert_string_equal(o.f.aggregate_id, "r-1");
    assert_string_equal(o.f.actor, "alice");
    assert_int_equal(o.f.event_type, EV_RUN_STARTED);
    assert_int_equal(o.limit, 5);
    assert_false(o.table);
    assert_int_equal(query(ARGV("--since", "@5", "--until", "@5"),
                           ARGC("--since", "@5", "--until", "@5"), &o, err),
                     0); /* inclusive both ends: one instant */

    static const struct {
        const char *a, *b, *why;
    } bad[] = {
        {"--aggregate-type", "thing", "--aggregate-type must be resource, workflow or run"},
        {"--aggregate-id", "bad/id", "--aggregate-id must match"},
        {"--actor", "", "--actor must be 1..255 bytes"},
        {"--event-type", "Nope", "unknown --event-type 'Nope'"},
        {"--format", "xml", "--format must be json or table, not 'xml'"},
        {"--limit", "0", "--limit must be a positive integer"},
        {"--limit", "-3", "--limit must be a positive integer"},
        {"--limit", "5x", "--limit must be a positive integer"},
        {"--whatever", "x", "unexpected argument '--whatever' (see --help)"},
        {"--since", "yesterday", "--since: bad TIME 'yesterday'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[] = {"query", (char *)bad[i].a, (char *)bad[i].b, NULL};
        assert_int_equal(aud_cli_query(3, argv, &o, err, sizeof err), KQ_EINVAL);
        if (strstr(err, bad[i].why) == NULL)
            fail_msg("%s %s: '%s' does not say '%s'", bad[i].a, bad[i].b, err, bad[i].why);
    }
    assert_int_equal(query(ARGV("--until"), ARGC("--until"), &o, err), KQ_EINVAL);
    assert_non_null(strstr(err, "missing value for '--until'"));
    assert_int_equal(query(ARGV("--since", "@2", "--until", "@1"),
                           ARGC("--since", "@2", "--until", "@1"), &o, err),
                     KQ_EINVAL);
    assert_string_equal(err, "--since is after --until");
}

static void test_verify_options(void **state)
{
    static const char head[] = "k.run.events:3=00112233445566778899aabbccddeeff"
                               "00112233445566778899aabbccddeeff";
    char err[512];
    aud_verify_opts o;
    aud_expect e;

    (void)state;
    {
        char *argv[] = {"verify-chain", "--json", "--expect-head", (char *)head, NULL};
        assert_int_equal(aud_cli_verify(4, argv, &o, err, sizeof err), 0);
        assert_true(o.json);
        assert_int_equal(o.nex, 1);
        assert_string_equal(o.ex[0].topic, "k.run.events");
        assert_int_equal(o.ex[0].partition, 3);
        assert_int_equal(o.ex[0].hash[1], 0x11);
        aud_verify_opts_free(&o);
    }
    {
        char *argv[] = {"verify-chain", "--expect-head", "t:1=abc", NULL};
        assert_int_equal(aud_cli_verify(3, argv, &o, err, sizeof err), KQ_EINVAL);
        assert_non_null(strstr(err, "is not TOPIC:PARTITION=HEX"));
        assert_null(o.ex);
    }
    {
        char *argv[] = {"verify-chain", "--bogus", NULL};
        assert_int_equal(aud_cli_verify(2, argv, &o, err, sizeof err), KQ_EINVAL);
        assert_non_null(strstr(err, "unexpected argument '--bogus'"));
    }
    assert_int_equal(aud_expect_parse(head, &e), 0);
    assert_int_equal(aud_expect_parse("a:b:2=00112233445566778899aabbccddeeff"
                                      "00112233445566778899aabbccddeeff",
                                      &e),
                     0);
    assert_string_equal(e.topic, "a:b"); /* the last colon splits */
    assert_int_equal(aud_expect_parse(":2=00", &e), KQ_EINVAL);
    assert_int_equal(aud_expect_parse("t:x=00112233445566778899aabbccddeeff"
                                      "00112233445566778899aabbccddeeff",
                                      &e),
                     KQ_EINVAL);
    assert_int_equal(aud_expect_parse("t:-1=00112233445566778899aabbccddeeff"
                                      "00112233445566778899aabbccddeeff",
                                      &e),
                     KQ_EINVAL);
    assert_int_equal(aud_expect_parse("t:1", &e), KQ_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_times_like_the_api),
        cmocka_unit_test(test_query_options),
        cmocka_unit_test(test_verify_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
