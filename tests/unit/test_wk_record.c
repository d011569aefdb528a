/*
 * test_wk_record.c — the worker's attempt-record client (wk_record.h)
 * against an in-process libmicrohttpd "kcqrs-commands" on 127.0.0.1:
 * the request (path, Bearer key, JSON body), 503 and 429 retried with the
 * same body until a 200 whose version is reported, a 409 reported with its
 * error code, a connection refused retried until the server comes up, 300
 * records in flight at once, the body builder, bad run ids refused; batches
 * (POST /internal/v1/runs/attempts, each item answered on its own, an item's
 * 503 retried alone) and the fallback to one request per record when the
 * route is missing.
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
    char body[65536];
    size_t len;
} creq;

/* The batch route: 404 when batch_missing; else each item's status from its
 * run id ("b409-*": 409, "b503once-*": 503 the first time, then 200; else 200). */
static int batch_missing;
static size_t nbatch, batch_items_max, n503once;
static char last_batch[65536];

static char *batch_answer(const char *body, size_t len, int *status)
{
    json_t *j = json_loadb(body, len, 0, NULL), *arr = json_object_get(j, "attempts");
    json_t *out = json_array(), *ans;
    char *s;
    size_t i;

    *status = 200;
    if (!json_is_array(arr) || json_object_size(j) != 1) {
        *status = 400;
        json_decref(j);
        json_decref(out);
        return strdup("{\"type\":\"urn:kcqrs:problem:validation_failed\",\"title\":\"t\","
                      "\"status\":400,\"detail\":\"m\",\"code\":\"validation_failed\","
                      "\"errors\":[]}");
    }
    for (i = 0; i < json_array_size(arr); i++) {
        json_t *it = json_array_get(arr, i);
        const char *id = json_string_value(json_object_get(it, "run_id"));
        int st = 200;
        if (id == NULL || json_object_get(it, "step") == NULL)
            st = 400;
        else if (strncmp(id, "b409-", 5) == 0)
            st = 409;
        else if (strncmp(id, "b503once-", 9) == 0 && n503once++ == 0)
            st = 503;
        if (st == 200)
            json_array_append_new(out, json_pack("{s:s, s:i, s:i, s:s}", "id", id, "status", 200,
                                                 "version", 7, "consistency_token", "t"));
        else
            json_array_append_new(out, json_pack("{s:s?, s:i, s:{s:i, s:s, s:s, s:[]}}", "id", id,
                                                 "status", st, "problem", "status", st, "code",
                                                 st == 409 ? "attempt_recorded" : "unavailable",
                                                 "detail", "m", "errors"));
    }
    nbatch++;
    if (i > batch_items_max)
        batch_items_max = i;
    ans = json_pack("{s:o}", "results", out);
    s = json_dumps(ans, JSON_COMPACT);
    json_decref(ans);
    json_decref(j);
    return s;
}

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
    if (strcmp(url, "/internal/v1/runs/attempts") == 0) {
        char *ab = NULL;
        pthread_mutex_lock(&mu);
        snprintf(last_batch, sizeof last_batch, "%.*s", (int)r->len, r->body);
        if (batch_missing) {
            status = 404;
            ab = strdup("{\"status\":404,\"code\":\"not_found\",\"detail\":\"m\",\"errors\":[]}");
        } else {
            ab = batch_answer(r->body, r->len, &status);
        }
        pthread_mutex_unlock(&mu);
        resp = MHD_create_response_from_buffer(strlen(ab), ab, MHD_RESPMEM_MUST_FREE);
        ret = MHD_queue_response(c, (unsigned)status, resp);
        MHD_destroy_response(resp);
        return ret;
    }
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
                 "{\"status\":%d,\"code\":\"%s\",\"detail\":\"m%d\",\"errors\":[]}", status,
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

static wk_recorder *rec_new_batch(unsigned port, int batch_max)
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
    s.batch_max = batch_max;
    r = wk_recorder_new(&s, err, sizeof err);
    if (r == NULL)
        fail_msg("%s", err);
    return r;
}

static wk_recorder *rec_new(unsigned port)
{
    return rec_new_batch(port, 0);
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
    assert_int_equal(wk_recorder_submit(r, "run-1", "{\"step\":0}", NULL, &tag), 0);
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
    assert_int_equal(wk_recorder_submit(r, "run-2", "{}", NULL, NULL), 0);
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
    assert_int_equal(wk_recorder_submit(r, "run-3", "{\"a\":1}", NULL, NULL), 0);
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
        assert_int_equal(wk_recorder_submit(r, id, "{}", NULL, &tags[i]), 0);
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

/* Batches: 300 records in requests of at most 16 items, each item answered on
 * its own (a 409 reported, an item's 503 retried alone), every body item
 * carrying its run id and its own fields. */
static void test_batch(void **state)
{
    (void)state;
    static const int s[] = {200};
    enum { N = 300 };
    static wk_record_result res[N];
    static int tags[N], seen[N];
    wk_recorder *r;
    char id[32];
    json_t *j;
    int n409 = 0, retried = 0;
    FILE *m;
    char *mbuf = NULL;
    size_t mlen = 0;

    srv_start(0, s, 1);
    pthread_mutex_lock(&mu);
    batch_missing = 0;
    nbatch = batch_items_max = n503once = 0;
    pthread_mutex_unlock(&mu);
    r = rec_new_batch(srv_port, 16);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, i == 7 ? "b409-%d" : i == 9 ? "b503once-%d" : "run-%d", i);
        assert_int_equal(wk_recorder_submit(r, id, "{\"step\":0,\"attempt\":1}", NULL, &tags[i]),
                         0);
    }
    assert_int_equal(take(r, res, N), N);
    for (int i = 0; i < N; i++) {
        int k = (int)((int *)res[i].tag - tags);
        assert_true(k >= 0 && k < N);
        seen[k]++;
        if (k == 7) {
            assert_int_equal(res[i].status, 409);
            assert_string_equal(res[i].code, "attempt_recorded");
            n409++;
        } else {
            assert_int_equal(res[i].status, 200);
            assert_int_equal(res[i].version, 7);
        }
        if (k == 9) {
            assert_int_equal(res[i].retries, 1);
            retried++;
        }
    }
    assert_int_equal(n409, 1);
    assert_int_equal(retried, 1);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    pthread_mutex_lock(&mu);
    assert_true(nbatch >= N / 16 && nbatch < N); /* batched, never more than 16 at once */
    assert_true(batch_items_max > 1 && batch_items_max <= 16);
    assert_int_equal(nreq, 0); /* nothing went to the single route */
    j = json_loads(last_batch, 0, NULL);
    assert_non_null(j);
    assert_non_null(json_string_value(
        json_object_get(json_array_get(json_object_get(j, "attempts"), 0), "run_id")));
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(j, "attempts"), 0), "attempt")),
                     1);
    json_decref(j);
    pthread_mutex_unlock(&mu);
    m = open_memstream(&mbuf, &mlen);
    wk_recorder_metrics(r, m);
    fclose(m);
    assert_non_null(strstr(mbuf, "kcqrs_worker_records_total{result=\"ok\"} 299\n"));
    assert_non_null(strstr(mbuf, "kcqrs_worker_record_requests_total{route=\"single\"} 0\n"));
    free(mbuf);
    wk_recorder_free(r);
    srv_stop();
}

/* A kcqrs-commands without the batch route (404): the records go one by one. */
static void test_batch_fallback(void **state)
{
    (void)state;
    static const int s[] = {200};
    wk_record_result res[20];
    wk_recorder *r;
    char id[32];

    srv_start(0, s, 1);
    pthread_mutex_lock(&mu);
    batch_missing = 1;
    nbatch = 0;
    pthread_mutex_unlock(&mu);
    r = rec_new_batch(srv_port, 16);
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "run-%d", i);
        assert_int_equal(wk_recorder_submit(r, id, "{\"step\":0}", NULL, NULL), 0);
    }
    assert_int_equal(take(r, res, 20), 20);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(res[i].status, 200);
        assert_int_equal(res[i].retries, 0);
    }
    pthread_mutex_lock(&mu);
    assert_int_equal(nreq, 20); /* every record through the single route */
    assert_string_equal(last_body, "{\"step\":0}");
    batch_missing = 0;
    pthread_mutex_unlock(&mu);
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
    assert_int_equal(wk_recorder_submit(r, "../x/y", "{}", NULL, NULL), KQ_EINVAL);
    assert_int_equal(wk_recorder_submit(r, "", "{}", NULL, NULL), KQ_EINVAL);
    /* one queued to a dead port, then freed: no leak, no result */
    assert_int_equal(wk_recorder_submit(r, "ok-id", "{}", NULL, NULL), 0);
    wk_recorder_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body),           cmocka_unit_test(test_retry_then_ok),
        cmocka_unit_test(test_conflict),       cmocka_unit_test(test_refused_then_up),
        cmocka_unit_test(test_many_in_flight), cmocka_unit_test(test_batch),
        cmocka_unit_test(test_batch_fallback), cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
