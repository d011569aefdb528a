/*
 * test_cmd_hookguard.c — limits on failed webhook attempts: a client address
 * and a workflow each run out after `burst` failures, whichever is empty
 * refuses with Retry-After, successes (checks) take nothing, an IPv6 address
 * counts as its /64, tokens come back at the rate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cmd_hookguard.h"

static void test_per_address_and_workflow(void **state)
{
    cmd_hookguard *g = cmd_hookguard_new(64, 6, 2); /* 2 failures, one back per 10 s */
    int ra = 0;

    (void)state;
    assert_non_null(g);
    for (int i = 0; i < 5; i++) /* checks alone take nothing */
        assert_int_equal(cmd_hookguard_check(g, "10.0.0.1", "wa", 0, NULL), 1);
    /* the workflow: two addresses fail once each, a third is refused on it */
    cmd_hookguard_fail(g, "10.0.0.1", "wa", 0);
    cmd_hookguard_fail(g, "10.0.0.2", "wa", 0);
    assert_int_equal(cmd_hookguard_check(g, "10.0.0.3", "wa", 0, &ra), 0);
    assert_int_equal(ra, 10);
    assert_int_equal(cmd_hookguard_check(g, "10.0.0.3", "wb", 0, NULL), 1);
    /* the address: 10.0.0.1 fails once more (on another workflow) and is refused anywhere */
    cmd_hookguard_fail(g, "10.0.0.1", "wc", 0);
    assert_int_equal(cmd_hookguard_check(g, "10.0.0.1", "wd", 0, NULL), 0);
    assert_int_equal(cmd_hookguard_check(g, "10.0.0.2", "wd", 0, NULL), 1);
    /* ten seconds later one token is back for both */
    assert_int_equal(cmd_hookguard_check(g, "10.0.0.3", "wa", 9999, NULL), 0);
    assert_int_equal(cmd_hookguard_check(g, "10.0.0.3", "wa", 10000, NULL), 1);
    assert_int_equal(cmd_hookguard_check(g, "10.0.0.1", "wd", 10000, NULL), 1);
    assert_int_equal(cmd_hookguard_failures(g), 3);
    assert_int_equal(cmd_hookguard_refused(g), 3);
    cmd_hookguard_free(g);
}

static void test_ipv6_by_64(void **state)
{
    cmd_hookguard *g = cmd_hookguard_new(64, 1, 2);

    (void)state;
    assert_non_null(g);
    cmd_hookguard_fail(g, "2001:db8:1:2::1", "w1", 0);
    cmd_hookguard_fail(g, "2001:db8:1:2:ffff:ffff:ffff:fffe", "w2", 0);
    /* the same /64, another host part and workflow: refused */
    assert_int_equal(cmd_hookguard_check(g, "2001:db8:1:2:aaaa::9", "w3", 0, NULL), 0);
    /* the next /64: its own bucket */
    assert_int_equal(cmd_hookguard_check(g, "2001:db8:1:3::1", "w3", 0, NULL), 1);
    /* IPv4 and unparsable names are keyed as given */
    cmd_hookguard_fail(g, "192.0.2.1", "w4", 0);
    cmd_hookguard_fail(g, "192.0.2.1", "w5", 0);
    assert_int_equal(cmd_hookguard_check(g, "192.0.2.1", "w6", 0, NULL), 0);
    assert_int_equal(cmd_hookguard_check(g, "192.0.2.2", "w6", 0, NULL), 1);
    assert_int_equal(cmd_hookguard_check(g, "not:an:address", "w6", 0, NULL), 1);
    assert_int_equal(cmd_hookguard_check(g, NULL, NULL, 0, NULL), 1);
    cmd_hookguard_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_per_address_and_workflow),
        cmocka_unit_test(test_ipv6_by_64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
