/*
 * test_kq_limit.c — token buckets per key: burst then refusal with
 * Retry-After, refill over time, check that takes nothing, independent keys,
 * a bounded table that evicts the least recently used key, long keys,
 * concurrent takers never taking more than the bucket holds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "kq_limit.h"

static void test_bad_args(void **state)
{
    (void)state;
    assert_null(kq_limit_new(15, 1, 1));
    assert_null(kq_limit_new(64, 0, 1));
    assert_null(kq_limit_new(64, 1, 0));
    assert_null(kq_limit_new(64, -1, 5));
    kq_limit_free(NULL);
}

static void test_burst_and_refill(void **state)
{
    kq_limit *l = kq_limit_new(64, 2.0, 5); /* 2 tokens/s, 5 at most */
    int ra = -1;

    (void)state;
    assert_non_null(l);
    for (int i = 0; i < 5; i++)
        assert_int_equal(kq_limit_take(l, "k", 1000, &ra), 1);
    assert_int_equal(kq_limit_take(l, "k", 1000, &ra), 0);
    assert_int_equal(ra, 1); /* one token back in 500 ms: rounded up to 1 s */
    assert_int_equal(kq_limit_check(l, "k", 1000, NULL), 0);
    /* another key has its own full bucket */
    assert_int_equal(kq_limit_take(l, "other", 1000, NULL), 1);
    /* 499 ms: not yet; 500 ms: one token, only one */
    assert_int_equal(kq_limit_take(l, "k", 1499, NULL), 0);
    assert_int_equal(kq_limit_take(l, "k", 1500, NULL), 1);
    assert_int_equal(kq_limit_take(l, "k", 1500, NULL), 0);
    /* a long pause refills to the burst, not beyond */
    for (int i = 0; i < 5; i++)
        assert_int_equal(kq_limit_take(l, "k", 100000, NULL), 1);
    assert_int_equal(kq_limit_take(l, "k", 100000, NULL), 0);
    /* a clock going backwards gives nothing */
    assert_int_equal(kq_limit_take(l, "k", 50000, NULL), 0);
    kq_limit_free(l);
}

static void test_check_takes_nothing(void **state)
{
    kq_limit *l = kq_limit_new(64, 1.0 / 60.0, 2); /* one per minute */
    int ra = 0;

    (void)state;
    assert_non_null(l);
    for (int i = 0; i < 10; i++)
        assert_int_equal(kq_limit_check(l, "ip", 0, &ra), 1);
    assert_int_equal(kq_limit_take(l, "ip", 0, NULL), 1);
    assert_int_equal(kq_limit_check(l, "ip", 0, NULL), 1);
    assert_int_equal(kq_limit_take(l, "ip", 0, NULL), 1);
    assert_int_equal(kq_limit_check(l, "ip", 0, &ra), 0);
    assert_int_equal(ra, 60);
    assert_int_equal(kq_limit_check(l, "ip", 30000, &ra), 0);
    assert_int_equal(ra, 30);
    assert_int_equal(kq_limit_check(l, "ip", 60000, &ra), 1);
    kq_limit_free(l);
}

static void test_bounded_lru(void **state)
{
    kq_limit *l = kq_limit_new(160, 0.001, 1); /* 10 entries per shard */
    char key[32];

    (void)state;
    assert_non_null(l);
    assert_int_equal(kq_limit_take(l, "hot", 0, NULL), 1); /* empty now */
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "cold-%d", i);
        assert_int_equal(kq_limit_take(l, key, 0, NULL), 1);
        /* touched after every newcomer: never the oldest of its shard */
        assert_int_equal(kq_limit_check(l, "hot", 0, NULL), 0);
    }
    assert_true(kq_limit_size(l) <= 160);
    assert_true(kq_limit_size(l) >= 150);
    assert_true(kq_limit_evictions(l) >= 5000 - 160);
    /* the first cold keys were evicted: they start full again */
    assert_int_equal(kq_limit_take(l, "cold-0", 0, NULL), 1);
    kq_limit_free(l);
}

static void test_long_keys(void **state)
{
    kq_limit *l = kq_limit_new(64, 0.001, 1);
    char a[300], b[300];

    (void)state;
    assert_non_null(l);
    memset(a, 'a', sizeof a - 1);
    a[sizeof a - 1] = '\0';
    memcpy(b, a, sizeof b);
    b[10] = 'b';
    assert_int_equal(kq_limit_take(l, a, 0, NULL), 1);
    assert_int_equal(kq_limit_take(l, a, 0, NULL), 0);
    assert_int_equal(kq_limit_take(l, b, 0, NULL), 1);
    assert_int_equal(kq_limit_take(l, "", 0, NULL), 1);
    assert_int_equal(kq_limit_take(l, "", 0, NULL), 0);
    kq_limit_free(l);
}

static kq_limit *shared;
static int taken[4];

static void *taker(void *arg)
{
    int *n = arg;
    for (int i = 0; i < 20000; i++)
        *n += kq_limit_take(shared, i % 2 ? "a" : "b", 7, NULL);
    return NULL;
}

static void test_threads(void **state)
{
    pthread_t t[4];

    (void)state;
    shared = kq_limit_new(64, 0.001, 1000);
    assert_non_null(shared);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, taker, &taken[i]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(taken[0] + taken[1] + taken[2] + taken[3], 2000);
    kq_limit_free(shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_burst_and_refill),
        cmocka_unit_test(test_check_takes_nothing),
        cmocka_unit_test(test_bounded_lru),
        cmocka_unit_test(test_long_keys),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
