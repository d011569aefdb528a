/*
 * test_kq_service.c — the shared start and stop of the service mains
 * (kq_service.h): --help, stray arguments, a bad configuration and a missing
 * keys file end the start with the right exit status; a good start serves
 * HTTP with the service's keys, takes SIGTERM and stops cleanly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kq_err.h"
#include "kq_service.h"

static void h_ok(kq_http_req *req, void *arg)
{
    (void)arg;
    kq_http_respond_json(req, 200, json_object());
}

static void test_begin_ends_early(void **state)
{
    kq_service s;
    int status = -1;

    (void)state;
    assert_int_equal(kq_service_begin(&s, "t", "usage: t\n", KQ_SERVICE_KEYS, 2,
                                      (char *[]){"t", "--help", NULL}, &status),
                     1);
    assert_int_equal(status, 0);
    assert_int_equal(kq_service_begin(&s, "t", "usage: t\n", KQ_SERVICE_KEYS, 2,
                                      (char *[]){"t", "extra", NULL}, &status),
                     1);
    assert_int_equal(status, 2);
    /* arguments the main takes itself, no keys: an admin server's start */
    assert_int_equal(kq_service_begin(&s, "t", "usage: t\n", KQ_SERVICE_ARGS, 2,
                                      (char *[]){"t", "--target=pg", NULL}, &status),
                     0);
    assert_int_equal(status, 0);
    assert_null(s.keys);
    kq_service_end(&s);
    setenv("KCQRS_PARTITIONS", "many", 1);
    assert_int_equal(
        kq_service_begin(&s, "t", "usage: t\n", KQ_SERVICE_KEYS, 1, (char *[]){"t", NULL}, &status),
        1);
    assert_int_equal(status, 2);
    unsetenv("KCQRS_PARTITIONS");
    setenv("KCQRS_KEYS_FILE", "/nonexistent/kcqrs-keys", 1);
    assert_int_equal(
        kq_service_begin(&s, "t", "usage: t\n", KQ_SERVICE_KEYS, 1, (char *[]){"t", NULL}, &status),
        1);
    assert_int_equal(status, 2);
}

static void test_serve_and_stop(void **state)
{
    char keys[] = "/tmp/kq_service_keys_XXXXXX";
    const kq_http_route routes[] = {
        {"GET", "/x", KQ_HTTP_PUBLIC, KQ_HTTP_BODY_NONE, "x", h_ok, NULL}};
    kq_http_options o;
    kq_service s;
    int fd, status = -1;

    (void)state;
    fd = mkstemp(keys); /* an empty keys file: no key, public routes only */
    assert_true(fd >= 0);
    close(fd);
    setenv("KCQRS_KEYS_FILE", keys, 1);
    assert_int_equal(
        kq_service_begin(&s, "t", "usage: t\n", KQ_SERVICE_KEYS, 1, (char *[]){"t", NULL}, &status),
        0);
    assert_int_equal(status, 0);
    assert_non_null(s.keys);
    memset(&o, 0, sizeof o);
    o.addr = "127.0.0.1:0";
    o.limits = kq_http_limits_default();
    o.routes = routes;
    o.nroutes = 1;
    assert_int_equal(kq_service_http_start(&s, &o), 0);
    assert_ptr_equal(o.keys, s.keys);
    assert_true(kq_http_port(s.srv) > 0);
    pthread_kill(pthread_self(), SIGTERM); /* blocked: pending until taken */
    assert_int_equal(kq_service_wait(&s), SIGTERM);
    kq_service_http_stop(&s);
    assert_null(s.srv);
    kq_service_http_stop(&s); /* idempotent */
    kq_service_end(&s);
    kq_service_end(&s);
    unlink(keys);
    unsetenv("KCQRS_KEYS_FILE");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_begin_ends_early),
        cmocka_unit_test(test_serve_and_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
