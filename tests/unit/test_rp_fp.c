/* test_rp_fp.c — read-model fingerprints: order independence, sensitivity, the diff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rp_fp.h"

static void add(rp_fp *f, const char *t, const char *k, const char *v)
{
    assert_int_equal(rp_fp_add(f, t, k, strlen(k), v, strlen(v)), 0);
}

static void test_order_independent(void **state)
{
    (void)state;
    rp_fp *a = rp_fp_new(0), *b = rp_fp_new(0);
    add(a, "resources", "r1", "one");
    add(a, "resources", "r2", "two");
    add(a, "versions", "r1", "1");
    add(b, "versions", "r1", "1");
    add(b, "resources", "r2", "two");
    add(b, "resources", "r1", "one");
    assert_true(rp_fp_equal(a, b));
    assert_int_equal(rp_fp_rows(a), 3);
    rp_fp_free(a);
    rp_fp_free(b);
}

static void test_sensitive(void **state)
{
    (void)state;
    rp_fp *base = rp_fp_new(0), *val = rp_fp_new(0), *tab = rp_fp_new(0), *dup = rp_fp_new(0),
          *split = rp_fp_new(0);
    add(base, "resources", "r1", "one");
    add(val, "resources", "r1", "onE");
    add(tab, "resourcez", "r1", "one");
    /* the same row twice must not cancel out (it would with XOR) */
    add(dup, "resources", "r1", "one");
    add(dup, "resources", "r2", "x");
    add(dup, "resources", "r2", "x");
    /* moving a byte from key to value is another row (length prefixes) */
    add(split, "resources", "r", "1one");
    assert_false(rp_fp_equal(base, val));
    assert_false(rp_fp_equal(base, tab));
    assert_false(rp_fp_equal(base, dup));
    assert_false(rp_fp_equal(base, split));
    unsigned char d1[RP_FP_LEN], d2[RP_FP_LEN];
    rp_fp_digest(base, d1);
    rp_fp_digest(dup, d2);
    assert_memory_not_equal(d1, d2, RP_FP_LEN);
    rp_fp_free(base);
    rp_fp_free(val);
    rp_fp_free(tab);
    rp_fp_free(dup);
    rp_fp_free(split);
}

static void test_diff(void **state)
{
    (void)state;
    rp_fp *live = rp_fp_new(1), *shadow = rp_fp_new(1);
    char buf[4096] = "";
    FILE *out = fmemopen(buf, sizeof buf, "w");

    add(live, "resources", "a", "1");
    add(live, "resources", "b", "2"); /* edited behind the projector's back */
    add(live, "resources", "x", "9"); /* not explained by the log */
    add(shadow, "resources", "a", "1");
    add(shadow, "resources", "b", "3");
    add(shadow, "versions", "k\001", "1"); /* deleted from live */
    assert_int_equal(rp_fp_diff(live, shadow, out, 10), 3);
    fclose(out);
    assert_string_equal(buf, "resources \"b\": differs\n"
                             "resources \"x\": missing in shadow\n"
                             "versions \"k\\x01\": missing in live\n");

    out = fmemopen(buf, sizeof buf, "w");
    assert_int_equal(rp_fp_diff(live, shadow, out, 1), 3);
    fclose(out);
    assert_string_equal(buf, "resources \"b\": differs\n... and 2 more\n");

    memset(buf, 0, sizeof buf);
    out = fmemopen(buf, sizeof buf, "w");
    assert_int_equal(rp_fp_diff(live, live, out, 10), 0);
    fclose(out);
    assert_string_equal(buf, "");
    rp_fp_free(live);
    rp_fp_free(shadow);
}

static void test_diff_needs_rows(void **state)
{
    (void)state;
    rp_fp *a = rp_fp_new(0), *b = rp_fp_new(1);
    assert_int_equal(rp_fp_diff(a, b, stderr, 1), -1);
    rp_fp_free(a);
    rp_fp_free(b);
}

static void test_print(void **state)
{
    (void)state;
    rp_fp *f = rp_fp_new(0);
    char buf[1024] = "";
    FILE *out = fmemopen(buf, sizeof buf, "w");
    assert_int_equal(rp_fp_table(f, "empty"), 0);
    add(f, "resources", "a", "1");
    rp_fp_print(f, "lmdb", out);
    fclose(out);
    assert_non_null(strstr(buf, "lmdb empty rows=0 digest=0000"));
    assert_non_null(strstr(buf, "lmdb resources rows=1 digest="));
    assert_non_null(strstr(buf, "lmdb total rows=1 digest="));
    rp_fp_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_independent),
        cmocka_unit_test(test_sensitive),
        cmocka_unit_test(test_diff),
        cmocka_unit_test(test_diff_needs_rows),
        cmocka_unit_test(test_print),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
