/*
 * test_wk_breaker.c — per-destination circuit breakers with an injected
 * clock: open after K failures, refuse while open, half-open after the
 * cool-down, close on a probe's success, re-open on its failure; the change
 * callback fires once per change; metrics text; destination keys.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kq_err.h"
#include "kq_log.h"
#include "wk_breaker.h"

static uint64_t fake_now;
static uint64_t fake_clock(void *arg)
{
    (void)arg;
    return fake_now;
}

typedef struct changes {
    int n;
    char log[32][96];
} changes;

static void on_change(void *arg, const char *dest, wk_breaker_state from, wk_breaker_state to)
{
    changes *c = arg;
    if (c->n < 32)
        snprintf(c->log[c->n], sizeof c->log[0], "%s %s->%s", dest, wk_breaker_state_name(from),
                 wk_breaker_state_name(to));
    c->n++;
}

static wk_breaker_set *mk(changes *c, unsigned k, long cool)
{
    wk_breaker_cfg cfg;
    char err[128];
    wk_breaker_defaults(&cfg);
    cfg.failure_threshold = k;
    cfg.cooldown_ms = cool;
    wk_breaker_set *s = wk_breaker_new(&cfg, fake_clock, NULL, on_change, c, err, sizeof err);
    assert_non_null(s);
    return s;
}

static void test_cycle(void **state)
{
    (void)state;
    changes c = {0};
    const char *d = "http://a.example:80";
    fake_now = 1000;
    wk_breaker_set *s = mk(&c, 3, 5000);
    /* two failures, a success resets the count */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(wk_breaker_allow(s, d), 1);
        wk_breaker_record(s, d, 1);
    }
    wk_breaker_record(s, d, 0);
    assert_int_equal(wk_breaker_get(s, d), WK_BREAKER_CLOSED);
    for (int i = 0; i < 2; i++)
        wk_breaker_record(s, d, 1);
    assert_int_equal(wk_breaker_get(s, d), WK_BREAKER_CLOSED);
    assert_int_equal(c.n, 0);
    wk_breaker_record(s, d, 1); /* third consecutive failure */
    assert_int_equal(wk_breaker_get(s, d), WK_BREAKER_OPEN);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.log[0], "http://a.example:80 closed->open");
    /* refused while open; other destinations unaffected */
    assert_int_equal(wk_breaker_allow(s, d), 0);
    assert_int_equal(wk_breaker_allow(s, "http://b.example:80"), 1);
    assert_int_equal(wk_breaker_retry_in_ms(s, d), 5000);
    assert_int_equal(wk_breaker_retry_in_ms(s, "http://b.example:80"), 0);
    fake_now += 4999;
    assert_int_equal(wk_breaker_retry_in_ms(s, d), 1);
    assert_int_equal(wk_breaker_allow(s, d), 0);
    assert_int_equal(c.n, 1);
    /* cool-down over: half-open, one probe only */
    fake_now += 1;
    assert_int_equal(wk_breaker_get(s, d), WK_BREAKER_HALF_OPEN);
    assert_int_equal(wk_breaker_retry_in_ms(s, d), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.log[1], "http://a.example:80 open->half_open");
    assert_int_equal(wk_breaker_allow(s, d), 1);
    assert_int_equal(wk_breaker_allow(s, d), 0);
    /* the probe fails: open again, cool-down restarts */
    wk_breaker_record(s, d, 1);
    assert_int_equal(wk_breaker_get(s, d), WK_BREAKER_OPEN);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.log[2], "http://a.example:80 half_open->open");
    fake_now += 3000;
    assert_int_equal(wk_breaker_allow(s, d), 0);
    fake_now += 2000;
    assert_int_equal(wk_breaker_allow(s, d), 1); /* half-open probe */
    assert_int_equal(c.n, 4);
    wk_breaker_record(s, d, 0);
    assert_int_equal(wk_breaker_get(s, d), WK_BREAKER_CLOSED);
    assert_int_equal(c.n, 5);
    assert_string_equal(c.log[4], "http://a.example:80 half_open->closed");
    /* closed again: needs K fresh failures */
    wk_breaker_record(s, d, 1);
    wk_breaker_record(s, d, 1);
    assert_int_equal(wk_breaker_get(s, d), WK_BREAKER_CLOSED);
    /* repeated gets do not repeat callbacks */
    for (int i = 0; i < 5; i++)
        wk_breaker_get(s, d);
    assert_int_equal(c.n, 5);

    char buf[4096];
    int n = wk_breaker_metrics(s, buf, sizeof buf);
    assert_true(n > 0);
    assert_non_null(
        strstr(buf, "kcqrs_worker_breaker_state{destination=\"http://a.example:80\"} 0\n"));
    assert_non_null(strstr(buf, "kcqrs_worker_breaker_transitions_total{destination=\"http://"
                                "a.example:80\",to=\"open\"} 2\n"));
    assert_non_null(strstr(buf, "kcqrs_worker_breaker_transitions_total{destination=\"http://"
                                "a.example:80\",to=\"half_open\"} 2\n"));
    assert_non_null(strstr(buf, "kcqrs_worker_breaker_transitions_total{destination=\"http://"
                                "a.example:80\",to=\"closed\"} 1\n"));
    assert_int_equal(wk_breaker_metrics(s, buf, 40), KQ_ERANGE);
    wk_breaker_free(s);
}

/* State changes are logged: capture stderr (kq_log writes there) around one cycle. */
static void test_logged(void **state)
{
    (void)state;
    changes c = {0};
    char path[] = "/tmp/test_wk_breaker.XXXXXX", text[4096] = "";
    int fd = mkstemp(path), saved = dup(2);
    assert_true(fd >= 0 && saved >= 0);
    fake_now = 0;
    wk_breaker_set *s = mk(&c, 1, 100);
    kq_log_init("test_wk_breaker", KQ_LOG_INFO, KQ_LOG_HUMAN);
    dup2(fd, 2);
    wk_breaker_record(s, "http://log.example:80", 1);
    fake_now = 100;
    wk_breaker_get(s, "http://log.example:80");
    wk_breaker_record(s, "http://log.example:80", 0);
    dup2(saved, 2);
    close(saved);
    kq_log_init("test_wk_breaker", KQ_LOG_ERROR, KQ_LOG_HUMAN);
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    assert_true(n > 0);
    text[n] = '\0';
    close(fd);
    unlink(path);
    assert_non_null(
        strstr(text, "circuit breaker http://log.example:80: closed -> open (retry after 100 ms)"));
    assert_non_null(strstr(text, "circuit breaker http://log.example:80: open -> half_open"));
    assert_non_null(strstr(text, "circuit breaker http://log.example:80: half_open -> closed"));
    assert_int_equal(c.n, 3);
    wk_breaker_free(s);
}

static void test_many_and_bad_cfg(void **state)
{
    (void)state;
    changes c = {0};
    char key[64], err[128];
    fake_now = 0;
    wk_breaker_set *s = mk(&c, 1, 10);
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "http://h%d:80", i);
        wk_breaker_record(s, key, i % 2);
    }
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "http://h%d:80", i);
        assert_int_equal(wk_breaker_get(s, key), i % 2 ? WK_BREAKER_OPEN : WK_BREAKER_CLOSED);
    }
    assert_int_equal(c.n, 500);
    wk_breaker_free(s);
    wk_breaker_cfg cfg = {0, 10, 1};
    assert_null(wk_breaker_new(&cfg, NULL, NULL, NULL, NULL, err, sizeof err));
    cfg.failure_threshold = 1;
    cfg.cooldown_ms = 0;
    assert_null(wk_breaker_new(&cfg, NULL, NULL, NULL, NULL, err, sizeof err));
}

static void test_key(void **state)
{
    (void)state;
    char k[WK_BREAKER_KEY_MAX], err[128];
    assert_int_equal(wk_breaker_key("https://API.Example.com/x?y=1", k, sizeof k, err, sizeof err),
                     0);
    assert_string_equal(k, "https://api.example.com:443");
    assert_int_equal(wk_breaker_key("http://h:8080/p", k, sizeof k, err, sizeof err), 0);
    assert_string_equal(k, "http://h:8080");
    assert_int_equal(wk_breaker_key("http://[::1]/", k, sizeof k, err, sizeof err), 0);
    assert_string_equal(k, "http://[::1]:80");
    assert_int_equal(wk_breaker_key("smtp://mail.example", k, sizeof k, err, sizeof err), 0);
    assert_string_equal(k, "smtp://mail.example:25");
    assert_int_equal(wk_breaker_key("not a url", k, sizeof k, err, sizeof err), KQ_EINVAL);
    assert_int_equal(wk_breaker_key("/relative", k, sizeof k, err, sizeof err), KQ_EINVAL);
    assert_int_equal(wk_breaker_key("http://h/", k, 5, err, sizeof err), KQ_ERANGE);
}

int main(void)
{
    kq_log_init("test_wk_breaker", KQ_LOG_ERROR, KQ_LOG_HUMAN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cycle),
        cmocka_unit_test(test_logged),
        cmocka_unit_test(test_many_and_bad_cfg),
        cmocka_unit_test(test_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
