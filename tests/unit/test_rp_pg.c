/* test_rp_pg.c — kcqrs-replay's PostgreSQL target without a server: schema
 * names (shadow, snapshots, limits) and the validation kq_pg_connect_schema
 * applies before connecting. The target itself runs against a real
 * PostgreSQL in tests/e2e/replay_pg.bats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kq_err.h"
#include "kq_pg.h"
#include "rp_pg.h"
#include "rp_target.h"

static void test_schema_valid(void **state)
{
    char long63[64], long64[65];

    (void)state;
    memset(long63, 'a', 63);
    long63[63] = '\0';
    memset(long64, 'a', 64);
    long64[64] = '\0';
    assert_true(kq_pg_schema_valid("kcqrs"));
    assert_true(kq_pg_schema_valid("_x9"));
    assert_true(kq_pg_schema_valid(long63));
    assert_false(kq_pg_schema_valid(long64));
    assert_false(kq_pg_schema_valid(""));
    assert_false(kq_pg_schema_valid(NULL));
    assert_false(kq_pg_schema_valid("9abc"));
    assert_false(kq_pg_schema_valid("Kcqrs"));
    assert_false(kq_pg_schema_valid("kc-qrs"));
    assert_false(kq_pg_schema_valid("kcqrs;drop"));
    assert_false(kq_pg_schema_valid("kcqrs public"));
    assert_false(kq_pg_schema_valid("\"kcqrs\""));
}

static void test_connect_refuses_bad_schema(void **state)
{
    char err[256] = "";

    (void)state;
    /* refused before any connection attempt: the DSN is never used */
    assert_null(kq_pg_connect_schema("host=/nonexistent", 1000, "t", "a,b", err, sizeof err));
    assert_non_null(strstr(err, "invalid schema name"));
    err[0] = '\0';
    assert_null(kq_pg_connect_schema("host=/nonexistent", 1000, "t", NULL, err, sizeof err));
    assert_non_null(strstr(err, "invalid schema name"));
}

static void test_names(void **state)
{
    char out[64], err[256], live40[41];

    (void)state;
    assert_int_equal(rp_pg_schema_name("kcqrs", NULL, out, sizeof out, err, sizeof err), 0);
    assert_string_equal(out, "kcqrs_shadow");
    assert_int_equal(
        rp_pg_schema_name("kcqrs", "until_20261122t100000", out, sizeof out, err, sizeof err), 0);
    assert_string_equal(out, "kcqrs_snap_until_20261122t100000");
    assert_int_equal(rp_pg_schema_name("kcqrs", "a", out, sizeof out, err, sizeof err), 0);
    assert_string_equal(out, "kcqrs_snap_a");

    /* bad snapshot names */
    assert_int_equal(rp_pg_schema_name("kcqrs", "", out, sizeof out, err, sizeof err), KQ_EINVAL);
    assert_int_equal(rp_pg_schema_name("kcqrs", "Upper", out, sizeof out, err, sizeof err),
                     KQ_EINVAL);
    assert_int_equal(rp_pg_schema_name("kcqrs", "a-b", out, sizeof out, err, sizeof err),
                     KQ_EINVAL);
    assert_int_equal(
        rp_pg_schema_name("kcqrs", "x;drop schema kcqrs", out, sizeof out, err, sizeof err),
        KQ_EINVAL);
    assert_int_equal(rp_pg_schema_name("kcqrs", "abcdefghijklmnopqrstuvwxyz0123456", out,
                                       sizeof out, err, sizeof err),
                     KQ_EINVAL); /* 33 characters */
    assert_non_null(strstr(err, "[a-z0-9_]{1,32}"));
    assert_int_equal(rp_pg_schema_name("kcqrs", "abcdefghijklmnopqrstuvwxyz012345", out, sizeof out,
                                       err, sizeof err),
                     0); /* 32 */

    /* a bad live schema, and names that would exceed 63 bytes */
    assert_int_equal(rp_pg_schema_name("Kcqrs", NULL, out, sizeof out, err, sizeof err), KQ_EINVAL);
    memset(live40, 'k', 40);
    live40[40] = '\0';
    assert_int_equal(rp_pg_schema_name(live40, NULL, out, sizeof out, err, sizeof err), 0);
    assert_int_equal(strlen(out), 47);
    assert_int_equal(
        rp_pg_schema_name(live40, "abcdefghijklmnopqrstuvw", out, sizeof out, err, sizeof err),
        KQ_EINVAL); /* 40 + 6 + 23 = 69 */
    assert_non_null(strstr(err, "63 bytes"));
    assert_int_equal(
        rp_pg_schema_name(live40, "abcdefghijklmnopq", out, sizeof out, err, sizeof err),
        0); /* 40 + 6 + 17 = 63 */
    assert_int_equal(strlen(out), 63);
    /* a small output buffer is refused, not truncated */
    assert_int_equal(rp_pg_schema_name("kcqrs", NULL, out, 8, err, sizeof err), KQ_EINVAL);
}

static void test_ops_table(void **state)
{
    (void)state;
    assert_string_equal(rp_pg_ops.name, "pg");
    assert_non_null(rp_pg_ops.shadow_create);
    assert_non_null(rp_pg_ops.bulk.open);
    assert_non_null(rp_pg_ops.bulk.apply);
    assert_non_null(rp_pg_ops.tail.open);
    assert_non_null(rp_pg_ops.finish);
    assert_non_null(rp_pg_ops.lock_live);
    assert_non_null(rp_pg_ops.switch_live);
    assert_non_null(rp_pg_ops.fingerprint_live);
    assert_non_null(rp_pg_ops.fingerprint_shadow);
    assert_non_null(rp_pg_ops.shadow_drop);
    assert_non_null(rp_pg_ops.shadow_close);
    assert_non_null(rp_pg_ops.drop_snapshot);
}

static void test_refuses_without_config(void **state)
{
    kq_config cfg;
    void *sh = (void *)&cfg, *t = (void *)&cfg;
    char err[256];

    (void)state;
    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(rp_pg_ops.shadow_create(NULL, NULL, &sh, err, sizeof err), KQ_EINVAL);
    assert_null(sh);
    /* open_arg must be the shadow */
    assert_int_equal(rp_pg_ops.bulk.open(&cfg, NULL, &t, err, sizeof err), KQ_EINVAL);
    assert_null(t);
    assert_int_equal(rp_pg_ops.drop_snapshot(&cfg, "Bad!", err, sizeof err), KQ_EINVAL);
    assert_int_equal(rp_pg_ops.finish(NULL, err, sizeof err), KQ_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_valid),
        cmocka_unit_test(test_connect_refuses_bad_schema),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_ops_table),
        cmocka_unit_test(test_refuses_without_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
