/*
 * test_wk_policy.c — the worker's retry policy: the status table, transport
 * errors, attempts cap, full-jitter bounds with a pinned RNG, Retry-After
 * (seconds and HTTP-date) honoured and capped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wk_policy.h"

static wk_outcome http(int status)
{
    wk_outcome o;
    memset(&o, 0, sizeof o);
    o.proto = WK_PROTO_HTTP;
    o.result = WK_R_RESPONSE;
    o.status_code = status;
    o.retry_after_s = -1;
    return o;
}

static wk_outcome transport(wk_result r)
{
    wk_outcome o = http(0);
    o.result = r;
    return o;
}

/* RNG returning a fixed value (arg points at it). */
static uint64_t fixed_rng(void *arg)
{
    return *(uint64_t *)arg;
}

static void test_status_table(void **state)
{
    (void)state;
    static const int no_retry[] = {400, 401, 403, 404, 405, 409, 410, 413, 422,
                                   451, 499, 301, 302, 307, 308, 501, 505, 511};
    static const int retry[] = {408, 429, 500, 502, 503, 504};
    static const int ok[] = {200, 201, 202, 204, 299};
    for (size_t i = 0; i < sizeof no_retry / sizeof no_retry[0]; i++) {
        wk_outcome o = http(no_retry[i]);
        assert_int_equal(wk_policy_classify(&o, NULL), WK_VERDICT_FAIL);
    }
    for (size_t i = 0; i < sizeof retry / sizeof retry[0]; i++) {
        wk_outcome o = http(retry[i]);
        assert_int_equal(wk_policy_classify(&o, NULL), WK_VERDICT_RETRY);
        assert_int_equal(wk_policy_is_destination_failure(&o), 1);
    }
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        wk_outcome o = http(ok[i]);
        assert_int_equal(wk_policy_classify(&o, NULL), WK_VERDICT_SUCCESS);
        assert_int_equal(wk_policy_is_destination_failure(&o), 0);
    }
    wk_outcome o404 = http(404);
    assert_int_equal(wk_policy_is_destination_failure(&o404), 0);
}

static void test_transport(void **state)
{
    (void)state;
    const char *why = NULL;
    wk_result retry[] = {WK_R_CONNECT, WK_R_CONNECT_TIMEOUT, WK_R_TIMEOUT, WK_R_TRANSPORT};
    for (size_t i = 0; i < 4; i++) {
        wk_outcome o = transport(retry[i]);
        assert_int_equal(wk_policy_classify(&o, &why), WK_VERDICT_RETRY);
        assert_string_equal(why, "transport error");
        assert_int_equal(wk_policy_is_destination_failure(&o), 1);
    }
    wk_outcome refused = transport(WK_R_REFUSED), big = transport(WK_R_TOO_LARGE);
    big.status_code = 200;
    assert_int_equal(wk_policy_classify(&refused, NULL), WK_VERDICT_FAIL);
    assert_int_equal(wk_policy_classify(&big, NULL), WK_VERDICT_FAIL);
    assert_int_equal(wk_policy_is_destination_failure(&refused), 0);
}

static void test_smtp(void **state)
{
    (void)state;
    wk_outcome o = http(250);
    o.proto = WK_PROTO_SMTP;
    assert_int_equal(wk_policy_classify(&o, NULL), WK_VERDICT_SUCCESS);
    o.status_code = 451;
    assert_int_equal(wk_policy_classify(&o, NULL), WK_VERDICT_RETRY);
    o.status_code = 550;
    assert_int_equal(wk_policy_classify(&o, NULL), WK_VERDICT_FAIL);
}

static void test_attempts_cap(void **state)
{
    (void)state;
    wk_policy p;
    uint64_t r = 12345;
    wk_policy_defaults(&p);
    assert_int_equal(p.max_attempts, 5);
    wk_outcome o = http(503);
    for (unsigned a = 1; a < 5; a++) {
        wk_decision d = wk_policy_decide(&p, &o, a, fixed_rng, &r);
        assert_int_equal(d.verdict, WK_VERDICT_RETRY);
        assert_true(d.delay_ms >= 0);
    }
    wk_decision d = wk_policy_decide(&p, &o, 5, fixed_rng, &r);
    assert_int_equal(d.verdict, WK_VERDICT_FAIL);
    assert_string_equal(d.reason, "attempts exhausted");
    assert_int_equal(d.delay_ms, -1);
    /* a success at the last attempt is still a success */
    wk_outcome ok = http(200);
    assert_int_equal(wk_policy_decide(&p, &ok, 5, fixed_rng, &r).verdict, WK_VERDICT_SUCCESS);
    /* a non-retryable status never waits */
    wk_outcome bad = http(400);
    d = wk_policy_decide(&p, &bad, 1, fixed_rng, &r);
    assert_int_equal(d.verdict, WK_VERDICT_FAIL);
    assert_int_equal(d.delay_ms, -1);
}

static void test_backoff_bounds(void **state)
{
    (void)state;
    wk_policy p;
    wk_policy_defaults(&p);
    /* the largest draw hits the bound exactly: min(cap, base * 2^(n-1)) */
    uint64_t maxr = UINT64_MAX;
    long expect[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000};
    for (unsigned a = 1; a <= 9; a++) {
        long bound = expect[a - 1];
        uint64_t top = (uint64_t)bound; /* r % (bound+1) == bound */
        assert_int_equal(wk_policy_backoff_ms(&p, a, fixed_rng, &top), bound);
        uint64_t zero = 0;
        assert_int_equal(wk_policy_backoff_ms(&p, a, fixed_rng, &zero), 0);
        assert_true(wk_policy_backoff_ms(&p, a, fixed_rng, &maxr) <= bound);
    }
    /* a huge attempt number does not overflow */
    uint64_t top = 60000;
    assert_int_equal(wk_policy_backoff_ms(&p, 4000000000u, fixed_rng, &top), 60000);
    /* random draws stay in [0, bound] and spread over it */
    wk_rng rng;
    wk_rng_seed(&rng);
    long lo = 1 << 30, hi = -1;
    for (int i = 0; i < 20000; i++) {
        long d = wk_policy_backoff_ms(&p, 3, wk_rng_next, &rng);
        assert_true(d >= 0 && d <= 4000);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(lo < 100);
    assert_true(hi > 3900);
    /* configurable base, factor and cap */
    p.base_ms = 100;
    p.factor = 3;
    p.cap_ms = 1000;
    top = 900;
    assert_int_equal(wk_policy_backoff_ms(&p, 3, fixed_rng, &top), 900);
    top = 1000;
    assert_int_equal(wk_policy_backoff_ms(&p, 4, fixed_rng, &top), 1000);
    top = 2700;
    assert_int_equal(wk_policy_backoff_ms(&p, 4, fixed_rng, &top),
                     2700 % 1001); /* uniform modulo */
}

static void test_validate(void **state)
{
    (void)state;
    wk_policy p;
    char err[128];
    wk_policy_defaults(&p);
    assert_int_equal(wk_policy_validate(&p, err, sizeof err), 0);
    p.cap_ms = 10;
    assert_int_equal(wk_policy_validate(&p, err, sizeof err), -1);
    assert_non_null(strstr(err, "cap"));
    wk_policy_defaults(&p);
    p.max_attempts = 0;
    assert_int_equal(wk_policy_validate(&p, err, sizeof err), -1);
    wk_policy_defaults(&p);
    p.base_ms = 0;
    assert_int_equal(wk_policy_validate(&p, err, sizeof err), -1);
    wk_policy_defaults(&p);
    p.factor = 0;
    assert_int_equal(wk_policy_validate(&p, err, sizeof err), -1);
}

static void test_retry_after(void **state)
{
    (void)state;
    time_t now = 1445412480; /* Wed, 21 Oct 2015 07:28:00 GMT */
    assert_int_equal(wk_policy_parse_retry_after("120", now), 120);
    assert_int_equal(wk_policy_parse_retry_after("  0 \r\n", now), 0);
    assert_int_equal(wk_policy_parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), 30);
    assert_int_equal(wk_policy_parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now), 60);
    assert_int_equal(wk_policy_parse_retry_after("Wed Oct 21 07:28:05 2015", now), 5);
    assert_int_equal(wk_policy_parse_retry_after("Tue, 20 Oct 2015 07:28:00 GMT", now), 0);
    assert_int_equal(wk_policy_parse_retry_after("", now), -1);
    assert_int_equal(wk_policy_parse_retry_after("-5", now), -1);
    assert_int_equal(wk_policy_parse_retry_after("12abc", now), -1);
    assert_int_equal(wk_policy_parse_retry_after("soon", now), -1);
    assert_int_equal(wk_policy_parse_retry_after(NULL, now), -1);
    assert_true(wk_policy_parse_retry_after("99999999999999999999999", now) > 0);

    wk_policy p;
    uint64_t r = 0;
    wk_policy_defaults(&p);
    wk_outcome o = http(429);
    o.retry_after_s = 7;
    wk_decision d = wk_policy_decide(&p, &o, 1, fixed_rng, &r);
    assert_int_equal(d.verdict, WK_VERDICT_RETRY);
    assert_int_equal(d.delay_ms, 7000);
    o.retry_after_s = 3600; /* capped */
    d = wk_policy_decide(&p, &o, 1, fixed_rng, &r);
    assert_int_equal(d.delay_ms, 60000);
    o.retry_after_s = 999999999999L;
    d = wk_policy_decide(&p, &o, 1, fixed_rng, &r);
    assert_int_equal(d.delay_ms, 60000);
    o.retry_after_s = -1; /* absent: jittered backoff */
    r = 1000;
    d = wk_policy_decide(&p, &o, 1, fixed_rng, &r);
    assert_int_equal(d.delay_ms, 1000);
    /* 503 honours it too; a 400 with Retry-After is still not retried */
    wk_outcome o503 = http(503);
    o503.retry_after_s = 2;
    assert_int_equal(wk_policy_decide(&p, &o503, 2, fixed_rng, &r).delay_ms, 2000);
    wk_outcome o400 = http(400);
    o400.retry_after_s = 2;
    assert_int_equal(wk_policy_decide(&p, &o400, 1, fixed_rng, &r).verdict, WK_VERDICT_FAIL);
}

/* Random header values: -1 or a non-negative number, never a crash. */
static void test_retry_after_random(void **state)
{
    (void)state;
    static const char alpha[] = "0123456789 ,:-GMTWedOct\t";
    unsigned seed = 777;
    char v[48];
    for (int i = 0; i < 20000; i++) {
        size_t n = (size_t)(rand_r(&seed) % 40);
        for (size_t k = 0; k < n; k++)
            v[k] = alpha[rand_r(&seed) % (sizeof alpha - 1)];
        v[n] = '\0';
        assert_true(wk_policy_parse_retry_after(v, 1445412480) >= -1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_table),   cmocka_unit_test(test_transport),
        cmocka_unit_test(test_smtp),           cmocka_unit_test(test_attempts_cap),
        cmocka_unit_test(test_backoff_bounds), cmocka_unit_test(test_validate),
        cmocka_unit_test(test_retry_after),    cmocka_unit_test(test_retry_after_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
