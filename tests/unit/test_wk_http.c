/*
 * test_wk_http.c — the worker's libcurl multi engine against real sockets on
 * 127.0.0.1: signed requests (HMAC checked with OpenSSL's EVP_MAC, computed
 * independently of wk_hmac), status outcomes and Retry-After, redirects not
 * followed, the resolved-address guard (a name resolving to 127.0.0.1 is
 * refused with allow_private off), refused schemes, the response size cap,
 * connect and total timeouts, connection refused, 200 requests in flight at
 * once, malformed requests, and shutdown with transfers in flight.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_wk_recv.h"

#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kq_err.h"
#include "kq_log.h"
#include "test_wk_tool.h"
#include "wk_hmac.h"
#include "wk_http.h"

typedef struct result {
    int done;
    wk_outcome o;
} result;

static void on_done(void *arg, const wk_outcome *o)
{
    result *r = arg;
    r->done++;
    r->o = *o;
}

static wk_engine *engine(int allow_private, size_t cap, long connect_ms, long total_ms)
{
    wk_settings s;
    char err[256];
    wk_settings_defaults(&s);
    s.allow_private = allow_private;
    if (cap)
        s.response_max = cap;
    if (connect_ms)
        s.connect_timeout_ms = connect_ms;
    if (total_ms)
        s.total_timeout_ms = total_ms;
    wk_engine *e = wk_engine_new(&s, err, sizeof err);
    assert_non_null(e);
    return e;
}

/* Run until every submitted transfer has reported (bounded: 20 s). */
static void run_all(wk_engine *e)
{
    for (int i = 0; i < 2000 && wk_engine_in_flight(e) > 0; i++)
        assert_true(wk_engine_run(e, 10) >= 0);
    assert_int_equal(wk_engine_in_flight(e), 0);
}

static void get(wk_engine *e, const char *path, result *r)
{
    char url[256], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", recv_port, path);
    wk_http_request q = {.method = "GET", .url = url, .delivery_id = "d-1"};
    memset(r, 0, sizeof *r);
    assert_int_equal(wk_engine_submit_http(e, &q, on_done, r, err, sizeof err), 0);
    run_all(e);
    assert_int_equal(r->done, 1);
}

static int setup(void **state)
{
    (void)state;
    return recv_start();
}

static int teardown(void **state)
{
    (void)state;
    recv_stop();
    return 0;
}

/* HMAC-SHA256 through EVP_MAC, as a receiver would compute it. */
static void evp_hmac_hex(const char *key, const char *body, size_t len, char out[65])
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    OSSL_PARAM params[2];
    unsigned char md[32];
    size_t mdlen = 0;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    assert_int_equal(EVP_MAC_init(ctx, (const unsigned char *)key, strlen(key), params), 1);
    assert_int_equal(EVP_MAC_update(ctx, (const unsigned char *)body, len), 1);
    assert_int_equal(EVP_MAC_final(ctx, md, &mdlen, sizeof md), 1);
    assert_int_equal(mdlen, 32);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
}

static void test_signed_post(void **state)
{
    (void)state;
    wk_engine *e = engine(1, 0, 0, 0);
    char url[256], err[256], want[65];
    const char *body = "{\"order\":\"o-1\",\"total\":12.5}";
    const char *secret = "wf-secret-123";
    wk_header hs[] = {{"X-Test", "abc"}};
    result r = {0};
    recv_reset();
    snprintf(url, sizeof url, "http://127.0.0.1:%u/status/201", recv_port);
    wk_http_request q = {.method = "POST",
                         .url = url,
                         .headers = hs,
                         .n_headers = 1,
                         .body = body,
                         .body_len = strlen(body),
                         .delivery_id = "run-42.step-0",
                         .secret = secret,
                         .secret_len = strlen(secret)};
    assert_int_equal(wk_engine_submit_http(e, &q, on_done, &r, err, sizeof err), 0);
    assert_int_equal(wk_engine_in_flight(e), 1);
    run_all(e);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.o.result, WK_R_RESPONSE);
    assert_int_equal(r.o.status_code, 201);
    assert_int_equal(r.o.retry_after_s, -1);
    assert_string_equal(r.o.error, "");
    assert_true(r.o.duration_ms >= 0);
    assert_int_equal(recv_count(), 1);
    recv_entry *le = &recv_log[0];
    assert_string_equal(le->method, "POST");
    assert_string_equal(le->path, "/status/201");
    assert_string_equal(le->delivery, "run-42.step-0");
    assert_string_equal(le->ctype, "application/json");
    assert_string_equal(le->custom, "abc");
    assert_string_equal(le->agent, WK_DEFAULT_USER_AGENT);
    assert_int_equal(le->len, strlen(body));
    assert_memory_equal(le->body, body, le->len);
    evp_hmac_hex(secret, le->body, le->len, want);
    assert_int_equal(strncmp(le->signature, "sha256=", 7), 0);
    assert_string_equal(le->signature + 7, want);
    assert_true(wk_hmac_verify(secret, strlen(secret), le->body, le->len, le->signature));

    /* PUT with its own Content-Type; no secret: no signature header */
    wk_header ct[] = {{"Content-Type", "text/plain"}};
    wk_http_request p = {.method = "PUT",
                         .url = url,
                         .headers = ct,
                         .n_headers = 1,
                         .body = "hello",
                         .body_len = 5,
                         .delivery_id = "d2"};
    assert_int_equal(wk_engine_submit_http(e, &p, on_done, &r, err, sizeof err), 0);
    run_all(e);
    assert_int_equal(r.done, 2);
    assert_int_equal(recv_count(), 2);
    assert_string_equal(recv_log[1].method, "PUT");
    assert_string_equal(recv_log[1].ctype, "text/plain");
    assert_string_equal(recv_log[1].signature, "");
    assert_string_equal(recv_log[1].delivery, "d2");
    wk_engine_free(e);
}

static void test_statuses(void **state)
{
    (void)state;
    wk_engine *e = engine(1, 0, 0, 0);
    result r;
    get(e, "/status/404", &r);
    assert_int_equal(r.o.result, WK_R_RESPONSE);
    assert_int_equal(r.o.status_code, 404);
    get(e, "/status/503", &r);
    assert_int_equal(r.o.status_code, 503);
    get(e, "/retry", &r);
    assert_int_equal(r.o.status_code, 429);
    assert_int_equal(r.o.retry_after_s, 7);
    get(e, "/status/200", &r);
    char m[4096];
    assert_true(wk_engine_metrics(e, m, sizeof m) > 0);
    assert_non_null(
        strstr(m, "kcqrs_worker_transfers_total{proto=\"http\",result=\"response\"} 4\n"));
    assert_non_null(strstr(m, "kcqrs_worker_responses_total{proto=\"http\",class=\"4xx\"} 2\n"));
    assert_non_null(strstr(m, "kcqrs_worker_responses_total{proto=\"http\",class=\"5xx\"} 1\n"));
    assert_non_null(strstr(m, "kcqrs_worker_responses_total{proto=\"http\",class=\"2xx\"} 1\n"));
    assert_non_null(strstr(m, "kcqrs_worker_in_flight 0\n"));
    assert_int_equal(wk_engine_metrics(e, m, 100), KQ_ERANGE);
    wk_engine_free(e);
}

static void test_redirect_not_followed(void **state)
{
    (void)state;
    wk_engine *e = engine(1, 0, 0, 0);
    result r;
    recv_reset();
    get(e, "/redirect", &r);
    assert_int_equal(r.o.result, WK_R_RESPONSE);
    assert_int_equal(r.o.status_code, 302);
    assert_int_equal(recv_count(), 1); /* no second request to /status/200 */
    assert_string_equal(recv_log[0].path, "/redirect");
    wk_engine_free(e);
}

static void test_guard_resolved(void **state)
{
    (void)state;
    wk_engine *e = engine(0, 0, 0, 0);
    char url[256], err[256];
    const char *hosts[] = {"localhost", "127.0.0.1", "127.1.2.3"};
    recv_reset();
    for (size_t i = 0; i < 3; i++) {
        result r = {0};
        snprintf(url, sizeof url, "http://%s:%u/status/200", hosts[i], recv_port);
        wk_http_request q = {.method = "GET", .url = url, .delivery_id = "d"};
        assert_int_equal(wk_engine_submit_http(e, &q, on_done, &r, err, sizeof err), 0);
        run_all(e);
        assert_int_equal(r.done, 1);
        assert_int_equal(r.o.result, WK_R_REFUSED);
        assert_int_equal(r.o.status_code, 0);
        assert_non_null(strstr(r.o.error, "loopback"));
    }
    assert_int_equal(recv_count(), 0); /* nothing reached the receiver */
    /* the same name passes with allow_private */
    wk_engine *ok = engine(1, 0, 0, 0);
    result r = {0};
    snprintf(url, sizeof url, "http://localhost:%u/status/200", recv_port);
    wk_http_request q = {.method = "GET", .url = url, .delivery_id = "d"};
    assert_int_equal(wk_engine_submit_http(ok, &q, on_done, &r, err, sizeof err), 0);
    run_all(ok);
    assert_int_equal(r.o.result, WK_R_RESPONSE);
    assert_int_equal(r.o.status_code, 200);
    assert_int_equal(recv_count(), 1);
    wk_engine_free(ok);

    /* schemes refused at submit; the callback never runs */
    const char *bad[] = {"file:///etc/passwd", "gopher://127.0.0.1:70/", "ftp://127.0.0.1/x",
                         "dict://127.0.0.1/"};
    for (size_t i = 0; i < 4; i++) {
        result b = {0};
        wk_http_request bq = {.method = "GET", .url = bad[i], .delivery_id = "d"};
        assert_int_equal(wk_engine_submit_http(e, &bq, on_done, &b, err, sizeof err),
                         KQ_EUNSUPPORTED);
        assert_int_equal(wk_engine_in_flight(e), 0);
        assert_int_equal(b.done, 0);
    }
    wk_engine_free(e);
}

static void test_response_cap(void **state)
{
    (void)state;
    wk_engine *e = engine(1, 1000, 0, 0);
    result r;
    get(e, "/bytes/1000", &r);
    assert_int_equal(r.o.result, WK_R_RESPONSE);
    assert_int_equal(r.o.bytes, 1000);
    get(e, "/bytes/1001", &r); /* refused on Content-Length */
    assert_int_equal(r.o.result, WK_R_TOO_LARGE);
    assert_int_equal(r.o.status_code, 200);
    assert_true(r.o.bytes <= 1000);
    get(e, "/stream/1000", &r);
    assert_int_equal(r.o.result, WK_R_RESPONSE);
    assert_int_equal(r.o.bytes, 1000);
    get(e, "/stream/100000", &r); /* no Content-Length: aborted in the write callback */
    assert_int_equal(r.o.result, WK_R_TOO_LARGE);
    assert_true(r.o.bytes > 1000 && r.o.bytes < 100000);
    assert_non_null(strstr(r.o.error, "larger than 1000"));
    /* the engine still works after an aborted transfer */
    get(e, "/status/204", &r);
    assert_int_equal(r.o.status_code, 204);
    wk_engine_free(e);
}

/* A listener on 127.0.0.1 with `fill` pending connections in a backlog of 0. */
static int listener(int fill, unsigned *port, int *conns)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, fill ? 0 : 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    for (int i = 0; i < fill; i++) {
        conns[i] = socket(AF_INET, SOCK_STREAM, 0);
        fcntl(conns[i], F_SETFL, O_NONBLOCK);
        connect(conns[i], (struct sockaddr *)&sa, sizeof sa);
    }
    usleep(100000);
    return fd;
}

static void test_timeouts(void **state)
{
    (void)state;
    wk_engine *e = engine(1, 0, 300, 600);
    unsigned port;
    int conns[3], fd;
    char url[128], err[256];
    result r = {0};

    /* backlog full: SYNs are dropped, connect never completes */
    fd = listener(3, &port, conns);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", port);
    wk_http_request q = {
        .method = "POST", .url = url, .body = "x", .body_len = 1, .delivery_id = "d"};
    assert_int_equal(wk_engine_submit_http(e, &q, on_done, &r, err, sizeof err), 0);
    run_all(e);
    assert_int_equal(r.o.result, WK_R_CONNECT_TIMEOUT);
    assert_int_equal(r.o.status_code, 0);
    assert_true(r.o.duration_ms >= 250 && r.o.duration_ms < 3000);
    assert_non_null(strstr(r.o.error, "connect_timeout"));
    for (int i = 0; i < 3; i++)
        close(conns[i]);
    close(fd);

    /* accepted by the kernel, never answered: total timeout */
    fd = listener(0, &port, conns);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", port);
    memset(&r, 0, sizeof r);
    assert_int_equal(wk_engine_submit_http(e, &q, on_done, &r, err, sizeof err), 0);
    run_all(e);
    assert_int_equal(r.o.result, WK_R_TIMEOUT);
    assert_true(r.o.duration_ms >= 550 && r.o.duration_ms < 3000);

    /* closed port: connection refused */
    close(fd);
    memset(&r, 0, sizeof r);
    assert_int_equal(wk_engine_submit_http(e, &q, on_done, &r, err, sizeof err), 0);
    run_all(e);
    assert_int_equal(r.o.result, WK_R_CONNECT);
    wk_engine_free(e);
}

#define MANY 200
static void test_many_in_flight(void **state)
{
    (void)state;
    wk_engine *e = engine(1, 0, 5000, 15000);
    static result rs[MANY];
    char url[128], err[256], id[32];
    recv_reset();
    recv_gate = MANY;
    memset(rs, 0, sizeof rs);
    for (int i = 0; i < MANY; i++) {
        snprintf(url, sizeof url, "http://127.0.0.1:%u/gate/%d", recv_port, i);
        snprintf(id, sizeof id, "many-%d", i);
        wk_http_request q = {.method = "POST",
                             .url = url,
                             .body = id,
                             .body_len = strlen(id),
                             .delivery_id = id,
                             .secret = "s",
                             .secret_len = 1};
        assert_int_equal(wk_engine_submit_http(e, &q, on_done, &rs[i], err, sizeof err), 0);
    }
    assert_int_equal(wk_engine_in_flight(e), MANY);
    run_all(e);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(rs[i].done, 1);
        assert_int_equal(rs[i].o.result, WK_R_RESPONSE);
        assert_int_equal(rs[i].o.status_code, 200);
        assert_int_equal(rs[i].o.bytes, (size_t)i); /* its own response */
    }
    /* the receiver held all of them at the same time */
    assert_int_equal(recv_max_held, MANY);
    assert_int_equal(recv_count(), MANY);
    recv_gate = 0;
    wk_engine_free(e);
}

static void test_bad_requests(void **state)
{
    (void)state;
    wk_engine *e = engine(1, 0, 0, 0);
    char url[128], err[256];
    result r = {0};
    snprintf(url, sizeof url, "http://127.0.0.1:%u/status/200", recv_port);
    wk_header crlf[] = {{"X-A", "v\r\nX-Injected: 1"}};
    wk_header badname[] = {{"X A", "v"}};
    wk_header reserved[] = {{"x-kcqrs-signature", "sha256=00"}};
    wk_header host[] = {{"Host", "evil"}};
    wk_http_request cases[] = {
        {.method = "TRACE", .url = url, .delivery_id = "d"},
        {.method = NULL, .url = url, .delivery_id = "d"},
        {.method = "GET", .url = url, .delivery_id = NULL},
        {.method = "GET", .url = url, .delivery_id = "has space"},
        {.method = "GET", .url = url, .delivery_id = ".lead"},
        {.method = "GET", .url = url, .delivery_id = "a..b"},
        {.method = "GET", .url = url, .delivery_id = "d", .headers = crlf, .n_headers = 1},
        {.method = "GET", .url = url, .delivery_id = "d", .headers = badname, .n_headers = 1},
        {.method = "GET", .url = url, .delivery_id = "d", .headers = reserved, .n_headers = 1},
        {.method = "GET", .url = url, .delivery_id = "d", .headers = host, .n_headers = 1},
        {.method = "POST", .url = url, .delivery_id = "d", .body = NULL, .body_len = 3},
        {.method = "POST", .url = "not a url", .delivery_id = "d"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        assert_int_equal(wk_engine_submit_http(e, &cases[i], on_done, &r, err, sizeof err),
                         KQ_EINVAL);
        assert_true(err[0] != '\0');
    }
    static wk_header many[WK_REQUEST_HEADERS_MAX + 1];
    for (int i = 0; i <= WK_REQUEST_HEADERS_MAX; i++)
        many[i] = (wk_header){"X-Many", "v"};
    wk_http_request hq = {.method = "GET",
                          .url = url,
                          .delivery_id = "d",
                          .headers = many,
                          .n_headers = WK_REQUEST_HEADERS_MAX + 1};
    assert_int_equal(wk_engine_submit_http(e, &hq, on_done, &r, err, sizeof err), KQ_EINVAL);
    hq.n_headers = WK_REQUEST_HEADERS_MAX;
    assert_int_equal(wk_engine_submit_http(e, &hq, on_done, &r, err, sizeof err), 0);
    run_all(e);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.o.status_code, 200);
    r.done = 0;
    wk_http_request big = {.method = "POST",
                           .url = url,
                           .delivery_id = "d",
                           .body = "x",
                           .body_len = WK_REQUEST_BODY_MAX + 1};
    assert_int_equal(wk_engine_submit_http(e, &big, on_done, &r, err, sizeof err), KQ_ERANGE);
    assert_int_equal(wk_engine_in_flight(e), 0);
    assert_int_equal(r.done, 0);
    wk_settings s;
    wk_settings_defaults(&s);
    s.total_timeout_ms = 0;
    assert_null(wk_engine_new(&s, err, sizeof err));
    wk_engine_free(e);
}

/* A callback that tries to submit again (it must be refused while freeing). */
static wk_engine *resubmit_engine;
static int resubmit_rc = 1;
static void on_done_resubmit(void *arg, const wk_outcome *o)
{
    char err[128];
    on_done(arg, o);
    wk_http_request q = {.method = "GET", .url = "http://127.0.0.1:1/", .delivery_id = "d"};
    resubmit_rc = wk_engine_submit_http(resubmit_engine, &q, on_done, arg, err, sizeof err);
}

static void test_free_in_flight(void **state)
{
    (void)state;
    wk_engine *e = engine(1, 0, 1000, 30000);
    unsigned port;
    int conns[1];
    char url[128], err[256];
    result r[3];
    int fd = listener(0, &port, conns);
    memset(r, 0, sizeof r);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", port);
    resubmit_engine = e;
    for (int i = 0; i < 3; i++) {
        wk_http_request q = {.method = "GET", .url = url, .delivery_id = "d"};
        assert_int_equal(wk_engine_submit_http(e, &q, i == 2 ? on_done_resubmit : on_done, &r[i],
                                               err, sizeof err),
                         0);
    }
    for (int i = 0; i < 10; i++)
        assert_int_equal(wk_engine_run(e, 10), 0);
    wk_engine_free(e);
    assert_int_equal(resubmit_rc, KQ_EINVAL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].done, 1);
        assert_int_equal(r[i].o.result, WK_R_ABORTED);
    }
    close(fd);
}

/* The engine against tests/tools/kq_receiver, which the e2e tests use: script and log. */
static void test_kq_receiver(void **state)
{
    (void)state;
    tool t;
    const char *args[] = {"--secret", "wf-secret",
                          "429:retry-after=2,500,302:location=/x,200:bytes=3", NULL};
    int rc = tool_start(&t, "kq_receiver", args);
    if (rc == 1) {
        print_message("kq_receiver not built (make all): skipped\n");
        skip();
    }
    assert_int_equal(rc, 0);
    wk_engine *e = engine(1, 0, 0, 0);
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/hook?x=1", t.port);
    static const int want_status[] = {429, 500, 302, 200, 200};
    for (int i = 0; i < 5; i++) {
        result r = {0};
        const char *body = "{\"a\":\"\\u00e9\"}";
        wk_http_request q = {.method = "POST",
                             .url = url,
                             .body = body,
                             .body_len = strlen(body),
                             .delivery_id = "run-1.step-2",
                             .secret = "wf-secret",
                             .secret_len = 9};
        assert_int_equal(wk_engine_submit_http(e, &q, on_done, &r, err, sizeof err), 0);
        run_all(e);
        assert_int_equal(r.o.result, WK_R_RESPONSE);
        assert_int_equal(r.o.status_code, want_status[i]);
        assert_int_equal(r.o.retry_after_s, i == 0 ? 2 : -1);
        assert_int_equal(r.o.bytes, i >= 3 ? 3 : 0);
    }
    wk_engine_free(e);
    assert_int_equal(tool_stop(&t), 0);
    FILE *f = fopen(t.log, "r");
    assert_non_null(f);
    char line[8192];
    int n = 0;
    json_error_t je;
    while (fgets(line, sizeof line, f) != NULL) {
        json_t *m = json_loads(line, 0, &je);
        assert_non_null(m);
        assert_int_equal(json_integer_value(json_object_get(m, "n")), n + 1);
        assert_string_equal(json_string_value(json_object_get(m, "method")), "POST");
        assert_string_equal(json_string_value(json_object_get(m, "path")), "/hook");
        assert_string_equal(json_string_value(json_object_get(json_object_get(m, "query"), "x")),
                            "1");
        assert_string_equal(json_string_value(json_object_get(m, "body")), "{\"a\":\"\\u00e9\"}");
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(m, "headers"), "X-Kcqrs-Delivery")),
            "run-1.step-2");
        assert_true(json_is_true(json_object_get(m, "signature_ok")));
        json_decref(m);
        n++;
    }
    fclose(f);
    assert_int_equal(n, 5);
    tool_clean(&t);
}

/* kq_receiver's per-path scripts: each path has its own counter; other paths use the default. */
static void test_kq_receiver_routes(void **state)
{
    (void)state;
    tool t;
    const char *args[] = {"/a=500,200", "/b=404", "202", NULL};
    int rc = tool_start(&t, "kq_receiver", args);
    if (rc == 1) {
        print_message("kq_receiver not built (make all): skipped\n");
        skip();
    }
    assert_int_equal(rc, 0);
    wk_engine *e = engine(1, 0, 0, 0);
    static const struct {
        const char *path;
        int status;
    } seq[] = {{"/b", 404}, {"/a", 500}, {"/c", 202}, {"/a", 200}, {"/a", 200}, {"/b", 404}};
    char url[128], err[256];
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        result r = {0};
        snprintf(url, sizeof url, "http://127.0.0.1:%u%s?q=%zu", t.port, seq[i].path, i);
        wk_http_request q = {.method = "GET", .url = url, .delivery_id = "d"};
        assert_int_equal(wk_engine_submit_http(e, &q, on_done, &r, err, sizeof err), 0);
        run_all(e);
        assert_int_equal(r.o.status_code, seq[i].status);
    }
    wk_engine_free(e);
    assert_int_equal(tool_stop(&t), 0);
    tool_clean(&t);
    /* without a default script, other paths get 404 */
    const char *only[] = {"/a=201", NULL};
    assert_int_equal(tool_start(&t, "kq_receiver", only), 0);
    e = engine(1, 0, 0, 0);
    for (int i = 0; i < 2; i++) {
        result r = {0};
        snprintf(url, sizeof url, "http://127.0.0.1:%u/%s", t.port, i ? "a" : "zzz");
        wk_http_request q = {.method = "GET", .url = url, .delivery_id = "d"};
        assert_int_equal(wk_engine_submit_http(e, &q, on_done, &r, err, sizeof err), 0);
        run_all(e);
        assert_int_equal(r.o.status_code, i ? 201 : 404);
    }
    wk_engine_free(e);
    assert_int_equal(tool_stop(&t), 0);
    tool_clean(&t);
}

/* wk_engine_wakeup from another thread ends a long wait early. */
static void *wake_later(void *arg)
{
    usleep(100000);
    wk_engine_wakeup(arg);
    return NULL;
}

static void test_wakeup(void **state)
{
    (void)state;
    wk_engine *e = engine(1, 0, 0, 0);
    pthread_t t;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(pthread_create(&t, NULL, wake_later, e), 0);
    assert_int_equal(wk_engine_run(e, 10000), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    pthread_join(t, NULL);
    long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    assert_true(ms >= 90 && ms < 5000);
    /* and without a wake-up, timeout 0 returns at once */
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(wk_engine_run(e, 0), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    assert_true(ms < 1000);
    wk_engine_free(e);
}

/* ------------------------------------------------------------------ https */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = calloc(1, 65536);
    if (f == NULL || buf == NULL) {
        if (f != NULL)
            fclose(f);
        free(buf);
        return NULL;
    }
    size_t n = fread(buf, 1, 65535, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* TLS: a self-signed certificate is refused with the system CAs and accepted with ca_file. */
static void test_https(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_wk_tls.XXXXXX", cmd[1024], key[128], cert[128], url[128], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout %s -out %s -days 2 -subj /CN=localhost "
             "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1",
             key, cert);
    if (system(cmd) != 0 || !MHD_is_feature_supported(MHD_FEATURE_TLS)) {
        unlink(key);
        unlink(cert);
        rmdir(dir);
        print_message("no openssl command or no TLS in libmicrohttpd: skipped\n");
        skip();
    }
    char *kp = slurp(key), *cp = slurp(cert);
    assert_non_null(kp);
    assert_non_null(cp);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_TLS, 0, NULL, NULL, recv_answer, NULL,
        MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_HTTPS_MEM_KEY, kp, MHD_OPTION_HTTPS_MEM_CERT, cp,
        MHD_OPTION_NOTIFY_COMPLETED, recv_done, NULL, MHD_OPTION_END);
    assert_non_null(d);
    unsigned port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    recv_reset();

    /* the system's CAs do not know this certificate */
    wk_engine *e = engine(1, 0, 0, 0);
    result r = {0};
    snprintf(url, sizeof url, "https://127.0.0.1:%u/status/200", port);
    wk_http_request q = {.method = "POST",
                         .url = url,
                         .body = "{}",
                         .body_len = 2,
                         .delivery_id = "tls-1",
                         .secret = "k",
                         .secret_len = 1};
    assert_int_equal(wk_engine_submit_http(e, &q, on_done, &r, err, sizeof err), 0);
    run_all(e);
    assert_int_equal(r.o.result, WK_R_TRANSPORT);
    assert_non_null(strstr(r.o.error, "certificate"));
    assert_int_equal(recv_count(), 0);
    wk_engine_free(e);

    /* with ca_file it verifies, by IP and by name */
    wk_settings s;
    wk_settings_defaults(&s);
    s.allow_private = 1;
    s.ca_file = cert;
    e = wk_engine_new(&s, err, sizeof err);
    assert_non_null(e);
    for (int i = 0; i < 2; i++) {
        memset(&r, 0, sizeof r);
        snprintf(url, sizeof url, "https://%s:%u/status/201", i ? "localhost" : "127.0.0.1", port);
        assert_int_equal(wk_engine_submit_http(e, &q, on_done, &r, err, sizeof err), 0);
        run_all(e);
        assert_int_equal(r.o.result, WK_R_RESPONSE);
        assert_int_equal(r.o.status_code, 201);
    }
    assert_int_equal(recv_count(), 2);
    assert_string_equal(recv_log[0].delivery, "tls-1");
    assert_true(wk_hmac_verify("k", 1, "{}", 2, recv_log[0].signature));
    wk_engine_free(e);
    s.ca_file = "/nonexistent/ca.pem";
    assert_null(wk_engine_new(&s, err, sizeof err));
    assert_non_null(strstr(err, "CA file"));

    MHD_stop_daemon(d);
    free(kp);
    free(cp);
    unlink(key);
    unlink(cert);
    rmdir(dir);
}

int main(void)
{
    kq_log_init("test_wk_http", KQ_LOG_ERROR, KQ_LOG_HUMAN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signed_post),
        cmocka_unit_test(test_statuses),
        cmocka_unit_test(test_redirect_not_followed),
        cmocka_unit_test(test_guard_resolved),
        cmocka_unit_test(test_response_cap),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_many_in_flight),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_free_in_flight),
        cmocka_unit_test(test_kq_receiver),
        cmocka_unit_test(test_kq_receiver_routes),
        cmocka_unit_test(test_https),
        cmocka_unit_test(test_wakeup),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
