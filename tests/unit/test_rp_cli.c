/*
 * test_rp_cli.c — kcqrs-replay's command line (rp_cli.h) without Kafka:
 * --until takes exactly the inputs of the query API's ?until= and of
 * kcqrs-audit (the shared table of kq_time_table.h), the commands, targets
 * and the options that exclude each other.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "kq_err.h"
#include "kq_time_table.h"
#include "rp_cli.h"

static int parse(char **argv, rp_args *a, char *err)
{
    int argc = 0;

    while (argv[argc] != NULL)
        argc++;
    return rp_cli_parse(argc, argv, a, err, 512);
}

static void test_until_like_the_api(void **state)
{
    char err[512];
    rp_args a;

    (void)state;
    for (size_t i = 0; i < kq_time_cases_n; i++) {
        const kq_time_case *c = &kq_time_cases[i];
        char *argv[] = {"kcqrs-replay", "rebuild",     "--target", "lmdb",
                        "--until",      (char *)c->in, NULL};
        int rc = parse(argv, &a, err);
        if (c->ok) {
            if (rc != 0)
                fail_msg("--until '%s' refused: %s", c->in, err);
            assert_int_equal(a.until_us, c->us);
            assert_int_equal(a.cmd, RP_CMD_UNTIL);
        } else {
            if (rc != KQ_EINVAL)
                fail_msg("--until '%s' accepted", c->in);
            if (strstr(err, "bad TIME") == NULL || strstr(err, c->why) == NULL)
                fail_msg("--until '%s': '%s' does not say '%s'", c->in, err, c->why);
        }
    }
}

static void test_commands(void **state)
{
    char err[512];
    rp_args a;

    (void)state;
    assert_int_equal(parse((char *[]){"r", "rebuild", "--target", "all", "--json", NULL}, &a, err),
                     0);
    assert_int_equal(a.cmd, RP_CMD_REBUILD);
    assert_int_equal(a.ntargets, 2);
    assert_ptr_equal(a.targets[0], &rp_lmdb_ops);
    assert_ptr_equal(a.targets[1], &rp_pg_ops);
    assert_true(a.json);
    assert_string_equal(rp_cmd_name(a.cmd), "rebuild");
    assert_int_equal(parse((char *[]){"r", "verify", "--target", "pg", NULL}, &a, err), 0);
    assert_int_equal(a.cmd, RP_CMD_VERIFY);
    assert_int_equal(a.ntargets, 1);
    assert_ptr_equal(a.targets[0], &rp_pg_ops);
    assert_int_equal(parse((char *[]){"r", "rebuild", "--target", "lmdb", "--until-offsets",
                                      "t:0=1", "--name", "n1", NULL},
                           &a, err),
                     0);
    assert_int_equal(a.cmd, RP_CMD_UNTIL);
    assert_string_equal(a.until_spec, "t:0=1");
    assert_string_equal(a.name, "n1");
    assert_int_equal(
        parse((char *[]){"r", "drop-snapshot", "--target", "all", "--name", "n1", NULL}, &a, err),
        0);
    assert_int_equal(a.cmd, RP_CMD_DROP);

    static const struct {
        char *argv[10];
        const char *why;
    } bad[] = {
        {{"r", NULL}, "missing command"},
        {{"r", "rebuidl", NULL}, "unknown command 'rebuidl'"},
        {{"r", "rebuild", NULL}, "--target lmdb|pg|all is required"},
        {{"r", "rebuild", "--target", "mysql", NULL}, "--target must be lmdb, pg or all"},
        {{"r", "rebuild", "--target", NULL}, "--target needs a value"},
        {{"r", "rebuild", "--target", "lmdb", "--target", "pg", NULL}, "--target given twice"},
        {{"r", "rebuild", "--target", "lmdb", "--x", NULL}, "unexpected argument '--x'"},
        {{"r", "rebuild", "--target", "lmdb", "--until", "@1", "--until-offsets", "t:0=1", NULL},
         "exclude each other"},
        {{"r", "verify", "--target", "lmdb", "--until", "@1", NULL}, "go with rebuild only"},
        {{"r", "rebuild", "--target", "lmdb", "--name", "n", NULL}, "--name goes with"},
        {{"r", "drop-snapshot", "--target", "lmdb", NULL}, "drop-snapshot needs --name"},
        {{"r", "drop-snapshot", "--target", "lmdb", "--name", "n", "--json", NULL},
         "--json is not for drop-snapshot"},
        {{"r", "rebuild", "--target", "lmdb", "--until", "@1", "--name", "Bad-Name", NULL},
         "--name 'Bad-Name' is not [a-z0-9_]{1,32}"},
        {{"r", "rebuild", "--target", "lmdb", "--until", "yesterday", NULL},
         "bad TIME 'yesterday'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse((char **)bad[i].argv, &a, err), KQ_EINVAL);
        if (strstr(err, bad[i].why) == NULL)
            fail_msg("case %zu: '%s' does not say '%s'", i, err, bad[i].why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_until_like_the_api),
        cmocka_unit_test(test_commands),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
