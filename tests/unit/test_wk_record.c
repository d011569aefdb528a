/*
 * test_wk_record.c — the worker's attempt-record client (wk_record.h)
 * against an in-process libmicrohttpd "kcqrs-commands" on 127.0.0.1:
 * the request (path, Bearer key, JSON body), 503 and 429 retried with the
 * same body until a 200 whose version is reported, a 409 reported with its
 * error code, a connection refused retried until the server comes up, 300
 * records in flight at once, the body builder, bad run ids refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kq_err.h"
#include "wk_record.h"

/* ---- fake commands ---- */

static struct MHD_Daemon *srv;
static unsigned srv_port;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int script[16]; /* statuses, the last repeating */
static size_t nscript;
static size_t nreq;
static char last_path[256], last_auth[256], last_body[1024];

typedef struct creq {
    char body[4096];
    size_t len;
} creq;

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *data,
                               size_t *size, void **ptr)
{
    creq *r = *ptr;
    struct MHD_Response *resp;
    const char *auth;
    char out[256];
    int status;
    size_t i;
    enum MHD_Result ret;

    (void)cls;
    (void)version;
    if (r == NULL) {
        if ((r = calloc(1, sizeof *r)) == NULL)
            return MHD_NO;
        *ptr = r;
        return MHD_YES;
    }
    if (*size) {
        size_t n = *size < sizeof r->body - 1 - r->len ? *size : sizeof r->body - 1 - r->len;
        memcpy(r->body + r->len, data, n);
        r->len += n;
        *size = 0;
        return MHD_YES;
    }
    auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    pthread_mutex_lock(&mu);
    i = strcmp(method, "POST") == 0 ? nreq++ : 0; /* GET /health probes do not count */
    if (strcmp(method, "POST") == 0) {
        snprintf(last_path, sizeof last_path, "%s", url);
        snprintf(last_auth, sizeof last_auth, "%s", auth ? auth : "");
        snprintf(last_body, sizeof last_body, "%.*s", (int)r->len, r->body);
    }
    status = strcmp(method, "GET") == 0 ? 200 : script[i < nscript ? i : nscript - 1];
    pthread_mutex_unlock(&mu);
    if (status == 200)
        snprintf(out, sizeof out, "{\"id\":\"r\",\"version\":%zu,\"consistency_token\":\"t\"}",
                 i + 2);
    else
        snprintf(out, sizeof out,
                 "{\"error\":{\"code\":\"%s\",\"message\":\"m%d\",\"details\":[]}}",
                 status == 409 ? "attempt_recorded" : "unavailable", status);
    resp = MHD_create_response_from_buffer(strlen(out), out, MHD_RESPMEM_MUST_COPY);
    if (status == 429)
        MHD_add_response_header(resp, "Retry-After", "1");
    ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **ptr,
                      enum MHD_RequestTerminationCode t)
{
    (void)cls;
    (void)c;
    (void)t;
    free(*ptr);
    *ptr = NULL;
}

static void srv_start(unsigned port, const int *s, size_t n)
{
    pthread_mutex_lock(&mu);
    memcpy(script, s, n * sizeof *s);
    nscript = n;
    nreq = 0;
    pthread_mutex_unlock(&mu);
    srv = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, (uint16_t)port, NULL,
                           NULL, handler, NULL, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                           MHD_OPTION_CONNECTION_LIMIT, 1000u, MHD_OPTION_END);
    assert_non_null(srv);
    srv_port = MHD_get_daemon_info(srv, MHD_DAEMON_INFO_BIND_PORT)->port;
}

static void srv_stop(void)
{
    MHD_stop_daemon(srv);
    srv = NULL;
}

/* ---- helpers ---- */

static pthread_mutex_t nmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ncond = PTHREAD_COND_INITIALIZER;
static int notified;

static void notify(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&nmu);
    notified++;
    pthread_cond_signal(&ncond);
    pthread_mutex_unlock(&nmu);
}

static wk_recorder *rec_new(unsigned port)
{
    wk_record_settings s;
    char url[64], err[256];
    wk_recorder *r;

    snprintf(url, sizeof url, "http://127.0.0.1:%u/", port);
    memset(&s, 0, sizeof s);
    s.base_url = url;
    s.key = "kq_testkey";
    s.timeout_ms = 2000;
    s.retry_base_ms = 20;
    s.retry_cap_ms = 200;
    s.notify = notify;
    r = wk_recorder_new(&s, err, sizeof err);
    if (r == NULL)
        fail_msg("%s", err);
    return r;
}

/* Wait up to 10 s for n results. */
static size_t take(wk_recorder *r, wk_record_result *out, size_t n)
{
    size_t got = 0;

    for (int i = 0; i < 1000 && got < n; i++) {
        got += wk_recorder_take(r, out + got, n - got);
        if (got < n)
            usleep(10000);
    }
    return got;
}

static void test_body(void **state)
{
    (void)state;
    char *b = wk_record_body(1, 2, 503, NULL, 12, 250, "run.1", 1);
    json_t *j;

    assert_non_null(b);
    j = json_loads(b, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "step")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "attempt")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "status_code")), 503);
    assert_null(json_object_get(j, "error"));
    assert_int_equal(json_integer_value(json_object_get(j, "duration_ms")), 12);
    assert_int_equal(json_integer_value(json_object_get(j, "next_delay_ms")), 250);
    assert_string_equal(json_string_value(json_object_get(j, "delivery_id")), "run.1");
    assert_string_equal(json_string_value(json_object_get(j, "outcome")), "retry");
    json_decref(j);
    free(b);

    b = wk_record_body(0, 1, -1, "connect: refused", 3, 99, "run.0", 3);
    j = json_loads(b, 0, NULL);
    assert_non_null(j);
    assert_null(json_object_get(j, "status_code"));
    assert_null(json_object_get(j, "next_delay_ms")); /* only for retry */
    assert_string_equal(json_string_value(json_object_get(j, "error")), "connect: refused");
    assert_string_equal(json_string_value(json_object_get(j, "outcome")), "failed");
    json_decref(j);
    free(b);
    assert_null(wk_record_body(0, 1, -1, NULL, 0, 0, "x.0", 4));
}

static void test_retry_then_ok(void **state)
{
    (void)state;
    static const int s[] = {503, 429, 200};
    wk_record_result res[2];
    wk_recorder *r;
    int tag;

    srv_start(0, s, 3);
    r = rec_new(srv_port);
    assert_int_equal(wk_recorder_submit(r, "run-1", "{\"step\":0}", &tag), 0);
    assert_int_equal(take(r, res, 1), 1);
    assert_ptr_equal(res[0].tag, &tag);
    assert_int_equal(res[0].status, 200);
    assert_int_equal(res[0].retries, 2);
    pthread_mutex_lock(&mu);
    assert_int_equal(nreq, 3);
    assert_int_equal(res[0].version, 4); /* the third POST answers version 2 + 2 */
    assert_string_equal(last_path, "/internal/v1/runs/run-1/attempts");
    assert_string_equal(last_auth, "Bearer kq_testkey");
    assert_string_equal(last_body, "{\"step\":0}");
    pthread_mutex_unlock(&mu);
    assert_int_equal(wk_recorder_pending(r), 0);
    assert_true(notified > 0);
    wk_recorder_free(r);
    srv_stop();
}

static void test_conflict(void **state)
{
    (void)state;
    static const int s[] = {409};
    wk_record_result res[1];
    wk_recorder *r;

    srv_start(0, s, 1);
    r = rec_new(srv_port);
    assert_int_equal(wk_recorder_submit(r, "run-2", "{}", NULL), 0);
    assert_int_equal(take(r, res, 1), 1);
    assert_int_equal(res[0].status, 409);
    assert_int_equal(res[0].version, -1);
    assert_string_equal(res[0].code, "attempt_recorded");
    assert_int_equal(res[0].retries, 0);
    assert_true(wk_recorder_reachable(r));
    wk_recorder_free(r);
    srv_stop();
}

/* Nothing listens at first: retried until the server is there. */
static void test_refused_then_up(void **state)
{
    (void)state;
    static const int s[] = {200};
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    wk_record_result res[1];
    wk_recorder *r;
    unsigned port;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    /* a free port: bind, read it, close */
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    port = ntohs(a.sin_port);
    close(fd);

    r = rec_new(port);
    assert_int_equal(wk_recorder_submit(r, "run-3", "{\"a\":1}", NULL), 0);
    usleep(300000);
    assert_int_equal(wk_recorder_take(r, res, 1), 0);
    assert_false(wk_recorder_reachable(r));
    srv_start(port, s, 1);
    assert_int_equal(take(r, res, 1), 1);
    assert_int_equal(res[0].status, 200);
    assert_true(res[0].retries >= 1);
    wk_recorder_free(r);
    srv_stop();
}

static void test_many_in_flight(void **state)
{
    (void)state;
    static const int s[] = {200};
    enum { N = 300 };
    static wk_record_result res[N];
    static int tags[N], seen[N];
    wk_recorder *r;
    char id[32];
    FILE *m;
    char *mbuf = NULL;
    size_t mlen = 0;

    srv_start(0, s, 1);
    r = rec_new(srv_port);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "run-%d", i);
        assert_int_equal(wk_recorder_submit(r, id, "{}", &tags[i]), 0);
    }
    assert_int_equal(take(r, res, N), N);
    for (int i = 0; i < N; i++) {
        int k = (int)((int *)res[i].tag - tags);
        assert_true(k >= 0 && k < N);
        assert_int_equal(res[i].status, 200);
        seen[k]++;
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    m = open_memstream(&mbuf, &mlen);
    wk_recorder_metrics(r, m);
    fclose(m);
    assert_non_null(strstr(mbuf, "kcqrs_worker_records_total{result=\"ok\"} 300\n"));
    free(mbuf);
    wk_recorder_free(r);
    srv_stop();
}

static void test_bad_input(void **state)
{
    (void)state;
    wk_record_settings s;
    char err[256];
    wk_recorder *r;

    memset(&s, 0, sizeof s);
    s.base_url = "ftp://x";
    s.key = "k";
    s.timeout_ms = 1;
    s.retry_base_ms = 1;
    s.retry_cap_ms = 1;
    assert_null(wk_recorder_new(&s, err, sizeof err));
    s.base_url = "http://127.0.0.1:1";
    s.key = "two words";
    assert_null(wk_recorder_new(&s, err, sizeof err));
    s.key = "k";
    s.retry_cap_ms = 0;
    assert_null(wk_recorder_new(&s, err, sizeof err));
    s.retry_cap_ms = 5;
    r = wk_recorder_new(&s, err, sizeof err);
    assert_non_null(r);
    assert_int_equal(wk_recorder_submit(r, "../x/y", "{}", NULL), KQ_EINVAL);
    assert_int_equal(wk_recorder_submit(r, "", "{}", NULL), KQ_EINVAL);
    /* one queued to a dead port, then freed: no leak, no result */
    assert_int_equal(wk_recorder_submit(r, "ok-id", "{}", NULL), 0);
    wk_recorder_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body),           cmocka_unit_test(test_retry_then_ok),
        cmocka_unit_test(test_conflict),       cmocka_unit_test(test_refused_then_up),
        cmocka_unit_test(test_many_in_flight), cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
