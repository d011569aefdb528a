/*
 * test_http.c — kq_http and kq_json_in: an in-process server on 127.0.0.1:0
 * driven with libcurl (and raw sockets for the connection limit).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_resp.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "kq_auth.h"
#include "kq_err.h"
#include "kq_http.h"
#include "kq_json_in.h"
#include "kq_log.h"

/* ------------------------------------------------------------------ fixture */

static kq_http_server *srv;
static unsigned port;
static const char *scheme = "http"; /* of request(); the TLS test switches to https */
static kq_auth_keys *keys;
static char key_admin[64], key_writer[64], key_reader[64];
static atomic_int ready_flag = 1;
static atomic_int count_calls;

static int ready_cb(void *arg, char *why, size_t whylen)
{
    (void)arg;
    if (atomic_load(&ready_flag))
        return 1;
    snprintf(why, whylen, "kafka unreachable");
    return 0;
}

static const char *const statuses[] = {"active", "inactive", "archived", NULL};
static const kq_jin_field thing_fields[] = {
    {"id", KQ_JIN_ID, 0, 0, NULL, 0, 0},
    {"name", KQ_JIN_STRING, 1, 8, NULL, 0, 0},
    {"status", KQ_JIN_STRING, 0, 0, statuses, 0, 0},
    {"count", KQ_JIN_INT, 0, 0, NULL, 1, 1000},
    {"enabled", KQ_JIN_BOOL, 0, 0, NULL, 0, 0},
    {"tags", KQ_JIN_ARRAY, 0, 0, NULL, 0, 0},
};

static void h_thing_get(kq_http_req *req, void *arg)
{
    const char *q = kq_http_req_query(req, "x");
    (void)arg;
    kq_http_add_header(req, "ETag", "\"7\"");
    kq_http_respond_json(req, 200,
                         json_pack("{s:s, s:s, s:s?}", "id", kq_http_req_param(req, "id"), "actor",
                                   kq_http_req_actor(req), "x", q));
}

static void h_thing_put(kq_http_req *req, void *arg)
{
    (void)arg;
    kq_http_respond_json(req, 200, json_pack("{s:s}", "id", kq_http_req_param(req, "id")));
}

static void h_thing_create(kq_http_req *req, void *arg)
{
    json_t *in = NULL;
    (void)arg;
    if (kq_http_req_json(req, thing_fields, sizeof thing_fields / sizeof thing_fields[0], &in) != 0)
        return;
    kq_http_add_header(req, "Location", "/api/v1/things/new");
    kq_http_respond_json(req, 201,
                         json_pack("{s:O, s:s}", "name", json_object_get(in, "name"), "actor",
                                   kq_http_req_actor(req)));
    json_decref(in);
}

static void h_two_params(kq_http_req *req, void *arg)
{
    (void)arg;
    kq_http_respond_json(req, 200,
                         json_pack("{s:s, s:s, s:n}", "a", kq_http_req_param(req, "a"), "b",
                                   kq_http_req_param(req, "b"), "actor"));
}

static void h_count(kq_http_req *req, void *arg)
{
    (void)arg;
    atomic_fetch_add(&count_calls, 1);
    kq_http_respond_json(req, 200, json_pack("{s:b}", "ok", 1));
}

/* A public route with a body (like a webhook): 202 with the body's length. */
static void h_hook(kq_http_req *req, void *arg)
{
    size_t len = 0;
    (void)arg;
    kq_http_req_body(req, &len);
    kq_http_respond_json(req, 202, json_pack("{s:I}", "len", (json_int_t)len));
}

static void h_silent(kq_http_req *req, void *arg)
{
    (void)req;
    (void)arg;
}

static const kq_http_route routes[] = {
    {"GET", "/api/v1/things/{id}", KQ_AUTH_ROLE_READER, KQ_HTTP_BODY_NONE, "thing_get", h_thing_get,
     NULL},
    {"PUT", "/api/v1/things/{id}", KQ_AUTH_ROLE_WRITER, KQ_HTTP_BODY_NONE, "thing_put", h_thing_put,
     NULL},
    {"POST", "/api/v1/things", KQ_AUTH_ROLE_WRITER, KQ_HTTP_BODY_JSON, "thing_create",
     h_thing_create, NULL},
    {"GET", "/api/v1/p/{a}/sub/{b}", KQ_HTTP_PUBLIC, KQ_HTTP_BODY_NONE, "two_params", h_two_params,
     NULL},
    {"GET", "/api/v1/count", KQ_HTTP_ANY_KEY, KQ_HTTP_BODY_NONE, "count", h_count, NULL},
    {"GET", "/api/v1/silent", KQ_HTTP_PUBLIC, KQ_HTTP_BODY_NONE, "silent", h_silent, NULL},
    {"POST", "/hooks/{id}", KQ_HTTP_PUBLIC, KQ_HTTP_BODY_NONE, "hook", h_hook, NULL},
};

static int add_key(char *key, const char *name, const char *roles, char *text, size_t cap)
{
    char hex[65], err[128];
    if (kq_auth_generate_key(key, 64, err, sizeof err) != 0)
        return -1;
    kq_auth_hash_hex(key, strlen(key), hex);
    snprintf(text + strlen(text), cap - strlen(text), "%s %s %s\n", name, roles, hex);
    return 0;
}

static int setup_server(void **state)
{
    char text[1024] = "# test keys\n", err[256];
    kq_http_options o;

    (void)state;
    /* TEST_HTTP_LOG=1 shows the access log. */
    kq_log_init("test_http", getenv("TEST_HTTP_LOG") ? KQ_LOG_INFO : KQ_LOG_ERROR, KQ_LOG_HUMAN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (add_key(key_admin, "root", "admin", text, sizeof text) ||
        add_key(key_writer, "writer1", "writer", text, sizeof text) ||
        add_key(key_reader, "reader1", "reader,auditor", text, sizeof text))
        return -1;
    if (kq_auth_parse(text, strlen(text), "keys", &keys, err, sizeof err) != 0)
        return -1;
    memset(&o, 0, sizeof o);
    o.addr = "127.0.0.1:0";
    o.limits = kq_http_limits_default();
    o.routes = routes;
    o.nroutes = sizeof routes / sizeof routes[0];
    o.keys = keys;
    o.ready = ready_cb;
    if (kq_http_start(&o, &srv, err, sizeof err) != 0) {
        fprintf(stderr, "start: %s\n", err);
        return -1;
    }
    port = kq_http_port(srv);
    return port == 0 ? -1 : 0;
}

static int teardown_server(void **state)
{
    (void)state;
    kq_http_stop(srv);
    kq_auth_free(keys);
    curl_global_cleanup();
    return 0;
}

/* ------------------------------------------------------------------ client */

typedef struct chunk_src {
    size_t left;
} chunk_src;

static size_t on_read(char *buf, size_t sz, size_t n, void *ud)
{
    chunk_src *s = ud;
    size_t k = sz * n < s->left ? sz * n : s->left;
    memset(buf, ' ', k);
    s->left -= k;
    return k;
}

/*
 * One request. ctype NULL sends no Content-Type; key NULL no Authorization.
 * chunked > 0 streams that many bytes with Transfer-Encoding: chunked.
 */
static void request(const char *method, const char *path, const char *ctype, const char *key,
                    const char *body, size_t blen, size_t chunked, resp *r)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[512], line[256];
    CURLcode cc;
    chunk_src src = {chunked};

    memset(r, 0, sizeof *r);
    assert_non_null(c);
    snprintf(url, sizeof url, "%s://127.0.0.1:%u%s", scheme, port, path);
    if (strcmp(scheme, "https") == 0) { /* the test's self-signed certificate */
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L); /* a body after the head would be a fault */
    else
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    } else if (chunked > 0) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &src);
        h = curl_slist_append(h, "Transfer-Encoding: chunked");
    }
    h = curl_slist_append(h, "Expect:");
    if (ctype != NULL) {
        snprintf(line, sizeof line, "Content-Type: %s", ctype);
        h = curl_slist_append(h, line);
    } else {
        h = curl_slist_append(h, "Content-Type:");
    }
    if (key != NULL) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", key);
        h = curl_slist_append(h, line);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK && !(chunked > 0 && (cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR)))
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(cc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r->body != NULL)
        r->json = json_loads(r->body, 0, NULL);
}

static void get(const char *path, const char *key, resp *r)
{
    request("GET", path, NULL, key, NULL, 0, 0, r);
}

static void post_json(const char *path, const char *key, const char *body, resp *r)
{
    request("POST", path, "application/json", key, body, strlen(body), 0, r);
}

static size_t ndetails(const resp *r)
{
    return json_array_size(json_object_get(r->json, "errors"));
}

static const char *detail(const resp *r, size_t i, const char *what)
{
    json_t *d = json_array_get(json_object_get(r->json, "errors"), i);
    return json_string_value(json_object_get(d, what));
}

static int has_header(const resp *r, const char *line)
{
    return strcasestr(r->headers, line) != NULL;
}

/* ------------------------------------------------------------------ tests */

static void test_parse_addr(void **state)
{
    struct sockaddr_storage ss;
    size_t len;
    char err[256];
    static const struct {
        const char *addr, *want;
    } bad[] = {
        {"", "empty address"},
        {"127.0.0.1", "missing ':port'"},
        {"127.0.0.1:", "port '' is not a number"},
        {"127.0.0.1:65536", "port '65536'"},
        {"127.0.0.1:-1", "port '-1'"},
        {"127.0.0.1:80x", "port '80x'"},
        {"::1:80", "brackets"},
        {"[::1]80", "expected [ipv6]:port"},
        {"no-such-host.invalid:80", "unknown host 'no-such-host.invalid'"},
    };

    (void)state;
    assert_int_equal(kq_http_parse_addr("127.0.0.1:8080", &ss, &len, err, sizeof err), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port), 8080);
    assert_int_equal(kq_http_parse_addr("[::1]:0", &ss, &len, err, sizeof err), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(kq_http_parse_addr(":9000", &ss, &len, err, sizeof err), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(kq_http_parse_addr("localhost:1", &ss, &len, err, sizeof err), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(kq_http_parse_addr(bad[i].addr, &ss, &len, err, sizeof err), KQ_EINVAL);
        if (strstr(err, bad[i].want) == NULL)
            fail_msg("'%s': got '%s', want '%s'", bad[i].addr, err, bad[i].want);
    }
}

static int count_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) != -1)
            n++;
    return n;
}

static void test_start_errors(void **state)
{
    kq_http_options o;
    kq_http_server *s2 = NULL;
    char err[512], addr[64];
    static const kq_http_route bad_route[] = {
        {"GET", "no-slash", KQ_HTTP_PUBLIC, KQ_HTTP_BODY_NONE, "x", h_count, NULL}};
    static const kq_http_route dup_route[] = {
        {"GET", "/health", KQ_HTTP_PUBLIC, KQ_HTTP_BODY_NONE, "x", h_count, NULL}};

    (void)state;
    memset(&o, 0, sizeof o);
    o.limits = kq_http_limits_default();
    /* The port the fixture holds is taken. */
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    o.addr = addr;
    assert_int_equal(kq_http_start(&o, &s2, err, sizeof err), KQ_EIO);
    assert_non_null(strstr(err, addr));
    assert_non_null(strstr(err, "Address already in use"));
    o.addr = "127.0.0.1:0";
    o.routes = bad_route;
    o.nroutes = 1;
    assert_int_equal(kq_http_start(&o, &s2, err, sizeof err), KQ_EINVAL);
    assert_non_null(strstr(err, "must start with '/'"));
    o.routes = dup_route;
    assert_int_equal(kq_http_start(&o, &s2, err, sizeof err), KQ_EINVAL);
    assert_non_null(strstr(err, "defined twice"));
    /* Start/stop cycles leak no descriptors (listeners, epoll sets, eventfds). */
    o.nroutes = 0;
    {
        int before = count_fds();
        for (int i = 0; i < 5; i++) {
            assert_int_equal(kq_http_start(&o, &s2, err, sizeof err), 0);
            assert_true(kq_http_port(s2) > 0);
            kq_http_stop(s2);
            s2 = NULL;
        }
        assert_int_equal(count_fds(), before);
    }
    o.limits.threads = 8;
    o.limits.max_connections = 4;
    assert_int_equal(kq_http_start(&o, &s2, err, sizeof err), KQ_EINVAL);
    assert_null(s2);
}

static void test_content_type(void **state)
{
    (void)state;
    assert_true(kq_jin_content_type_ok("application/json"));
    assert_true(kq_jin_content_type_ok("Application/JSON"));
    assert_true(kq_jin_content_type_ok("application/json; charset=utf-8"));
    assert_true(kq_jin_content_type_ok("application/json;charset=UTF-8"));
    assert_true(kq_jin_content_type_ok("application/json; charset=\"utf-8\""));
    assert_false(kq_jin_content_type_ok(NULL));
    assert_false(kq_jin_content_type_ok(""));
    assert_false(kq_jin_content_type_ok("text/plain"));
    assert_false(kq_jin_content_type_ok("application/jsonx"));
    assert_false(kq_jin_content_type_ok("application/json; charset=latin1"));
    assert_false(kq_jin_content_type_ok("application/json; boundary=x"));
    assert_false(kq_jin_content_type_ok("application/x-www-form-urlencoded"));
}

static void test_jin_direct(void **state)
{
    json_t *d = json_array(), *o = NULL;
    static const char bad_utf8[] = "{\"name\": \"\xc3\x28\"}";

    (void)state;
    /* jansson itself refuses invalid UTF-8, duplicate keys (with the flag) and \u0000. */
    assert_int_equal(kq_jin_parse(bad_utf8, strlen(bad_utf8), &o, d), KQ_EINVAL);
    assert_int_equal(kq_jin_parse("{\"a\":1,\"a\":2}", 13, &o, d), KQ_EINVAL);
    assert_int_equal(kq_jin_parse("{\"a\":\"x\\u0000y\"}", 16, &o, d), KQ_EINVAL);
    assert_int_equal(kq_jin_parse("{} {}", 5, &o, d), KQ_EINVAL);
    assert_int_equal(kq_jin_parse("[1]", 3, &o, d), KQ_EINVAL);
    assert_int_equal(kq_jin_parse("", 0, &o, d), KQ_EINVAL);
    assert_int_equal(json_array_size(d), 6);
    assert_int_equal(kq_jin_parse("{\"a\":1}", 7, &o, d), 0);
    json_decref(o);
    assert_true(kq_jin_id_valid("a"));
    assert_true(kq_jin_id_valid("A.b_c-9"));
    assert_false(kq_jin_id_valid(""));
    assert_false(kq_jin_id_valid("a/b"));
    assert_false(kq_jin_id_valid(
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")); /* 65 */
    assert_int_equal(kq_jin_utf8_chars("h\xc3\xa9\xf0\x9f\x98\x80", 7), 3);
    json_decref(d);

    /* kq_jin_check_bytes: bounds inclusive, one detail when outside. */
    d = json_array();
    o = json_string("abc");
    assert_int_equal(kq_jin_check_bytes(d, "f", o, 3, 3), 0);
    assert_int_equal(kq_jin_check_bytes(d, "f", o, 0, 2), 1);
    assert_int_equal(kq_jin_check_bytes(d, "f", o, 4, 9), 1);
    assert_int_equal(json_array_size(d), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(d, 0), "message")),
                        "must be 0..2 bytes (got 3)");
    json_decref(o);
    json_decref(d);
}

static void test_routing(void **state)
{
    resp r;

    (void)state;
    get("/nope", NULL, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(err_code(&r), "not_found");
    assert_true(json_is_array(json_object_get(r.json, "errors")));
    assert_true(has_header(&r, "Content-Type: application/problem+json"));
    assert_string_equal(json_string_value(json_object_get(r.json, "type")),
                        "urn:kcqrs:problem:not_found");
    assert_string_equal(json_string_value(json_object_get(r.json, "title")), "Not found");
    assert_int_equal(json_integer_value(json_object_get(r.json, "status")), 404);
    assert_string_equal(json_string_value(json_object_get(r.json, "detail")), "no such route");
    assert_string_equal(json_string_value(json_object_get(r.json, "instance")), "/nope");
    resp_free(&r);

    get("/api/v1/things/", key_admin, &r); /* empty {id} */
    assert_int_equal(r.status, 404);
    resp_free(&r);
    get("/api/v1/things/a/b", key_admin, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);

    request("DELETE", "/api/v1/things/abc", NULL, key_admin, NULL, 0, 0, &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(err_code(&r), "method_not_allowed");
    assert_true(has_header(&r, "Allow: GET, HEAD, PUT\r\n"));
    resp_free(&r);

    request("POST", "/health", NULL, NULL, NULL, 0, 0, &r);
    assert_int_equal(r.status, 405);
    assert_true(has_header(&r, "Allow: GET, HEAD\r\n"));
    resp_free(&r);

    get("/api/v1/p/x1/sub/y%202", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "a")), "x1");
    assert_string_equal(json_string_value(json_object_get(r.json, "b")), "y 2");
    resp_free(&r);

    get("/api/v1/things/t-1?x=hello%20world", key_reader, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "id")), "t-1");
    assert_string_equal(json_string_value(json_object_get(r.json, "x")), "hello world");
    assert_string_equal(json_string_value(json_object_get(r.json, "actor")), "reader1");
    assert_true(has_header(&r, "ETag: \"7\""));
    resp_free(&r);

    get("/api/v1/silent", NULL, &r);
    assert_int_equal(r.status, 500);
    assert_string_equal(err_code(&r), "internal");
    resp_free(&r);
}

/* HEAD on every GET route: the GET's status and headers (Content-Length included), no body. */
static void test_head(void **state)
{
    resp g, r;
    char clen[64];

    (void)state;
    get("/api/v1/things/t-1?x=abc", key_reader, &g);
    assert_int_equal(g.status, 200);
    request("HEAD", "/api/v1/things/t-1?x=abc", NULL, key_reader, NULL, 0, 0, &r);
    assert_int_equal(r.status, 200);
    assert_null(r.body);
    assert_true(has_header(&r, "ETag: \"7\""));
    assert_true(has_header(&r, "Content-Type: application/json"));
    snprintf(clen, sizeof clen, "Content-Length: %zu\r\n", strlen(g.body));
    assert_true(has_header(&r, clen));
    resp_free(&r);
    resp_free(&g);

    request("HEAD", "/health", NULL, NULL, NULL, 0, 0, &r);
    assert_int_equal(r.status, 200);
    assert_null(r.body);
    resp_free(&r);
    request("HEAD", "/metrics", NULL, NULL, NULL, 0, 0, &r);
    assert_int_equal(r.status, 200);
    assert_null(r.body);
    resp_free(&r);

    /* The GET route's checks still apply: no key 401, unknown path 404, a POST-only path 405. */
    request("HEAD", "/api/v1/things/t-1", NULL, NULL, NULL, 0, 0, &r);
    assert_int_equal(r.status, 401);
    assert_null(r.body);
    assert_true(has_header(&r, "Content-Type: application/problem+json"));
    resp_free(&r);
    request("HEAD", "/nope", NULL, NULL, NULL, 0, 0, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    request("HEAD", "/api/v1/things", NULL, key_writer, NULL, 0, 0, &r);
    assert_int_equal(r.status, 405);
    assert_true(has_header(&r, "Allow: POST\r\n"));
    resp_free(&r);
}

static void test_auth(void **state)
{
    resp r;

    (void)state;
    get("/api/v1/things/a", NULL, &r);
    assert_int_equal(r.status, 401);
    assert_string_equal(err_code(&r), "unauthorized");
    assert_true(has_header(&r, "WWW-Authenticate: Bearer"));
    resp_free(&r);

    get("/api/v1/things/a", "kq_notakeynotakeynotakeynotakeynotakeynotakey", &r);
    assert_int_equal(r.status, 401);
    resp_free(&r);

    request("GET", "/api/v1/things/a", NULL, NULL, NULL, 0, 0, &r);
    assert_int_equal(r.status, 401);
    resp_free(&r);

    /* reader1 (reader,auditor) may not write; writer1 may not read; admin may do both. */
    post_json("/api/v1/things", key_reader, "{\"name\":\"a\"}", &r);
    assert_int_equal(r.status, 403);
    assert_string_equal(err_code(&r), "forbidden");
    resp_free(&r);
    get("/api/v1/things/a", key_writer, &r);
    assert_int_equal(r.status, 403);
    resp_free(&r);
    get("/api/v1/things/a", key_admin, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "actor")), "root");
    resp_free(&r);

    /* The principal's name reaches the handler. */
    post_json("/api/v1/things", key_writer, "{\"name\":\"a\"}", &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(json_string_value(json_object_get(r.json, "actor")), "writer1");
    assert_true(has_header(&r, "Location: /api/v1/things/new"));
    resp_free(&r);

    /* Any valid key, any role. */
    get("/api/v1/count", key_reader, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    get("/api/v1/count", NULL, &r);
    assert_int_equal(r.status, 401);
    resp_free(&r);
}

static void test_content_type_415(void **state)
{
    resp r;
    const char *b = "{\"name\":\"a\"}";

    (void)state;
    request("POST", "/api/v1/things", NULL, key_writer, b, strlen(b), 0, &r);
    assert_int_equal(r.status, 415);
    assert_string_equal(err_code(&r), "unsupported_media_type");
    resp_free(&r);
    request("POST", "/api/v1/things", "text/plain", key_writer, b, strlen(b), 0, &r);
    assert_int_equal(r.status, 415);
    resp_free(&r);
    request("POST", "/api/v1/things", "Application/JSON; charset=UTF-8", key_writer, b, strlen(b),
            0, &r);
    assert_int_equal(r.status, 201);
    resp_free(&r);
}

static void test_body_cap(void **state)
{
    size_t cap = kq_http_limits_default().max_body;
    char *big = malloc(cap + 2);
    resp r;

    (void)state;
    assert_int_equal(cap, 65536);
    /* Exactly the cap is read (and then refused as a too-long name, not 413)... */
    memset(big, 'x', cap);
    memcpy(big, "{\"name\":\"", 9);
    memcpy(big + cap - 2, "\"}", 2);
    request("POST", "/api/v1/things", "application/json", key_writer, big, cap, 0, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(detail(&r, 0, "field"), "name");
    resp_free(&r);
    /* ...one byte more is 413, decided from Content-Length before the body is read. */
    big[cap] = ' ';
    request("POST", "/api/v1/things", "application/json", key_writer, big, cap + 1, 0, &r);
    assert_int_equal(r.status, 413);
    assert_string_equal(err_code(&r), "payload_too_large");
    resp_free(&r);
    free(big);
    /* A chunked body (no Content-Length) that grows past the cap: 413 as well. */
    request("POST", "/api/v1/things", "application/json", key_writer, NULL, 0, cap + 1, &r);
    assert_int_equal(r.status, 413);
    resp_free(&r);
    request("POST", "/api/v1/things", "application/json", key_writer, NULL, 0, 1 << 20, &r);
    assert_int_equal(r.status, 413);
    resp_free(&r);
    /* One that never ends is cut off at the cap: answered 413 (never a bare close). */
    request("POST", "/api/v1/things", "application/json", key_writer, NULL, 0, 64 << 20, &r);
    assert_int_equal(r.status, 413);
    assert_string_equal(err_code(&r), "payload_too_large");
    resp_free(&r);
    /* A chunked body under the cap is accepted (whitespace only: then invalid JSON). */
    request("POST", "/api/v1/things", "application/json", key_writer, NULL, 0, 1000, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(err_code(&r), "invalid_json");
    resp_free(&r);
}

typedef struct bad_case {
    const char *body;
    const char *code;
    const char *field; /* first detail's field */
    const char *msg;   /* substring of the first detail's message */
    size_t ndetails;
} bad_case;

static void test_bad_json(void **state)
{
    static const bad_case cases[] = {
        {"{\"name\": ", "invalid_json", "body", "malformed JSON", 1},
        {"{\"name\":\"a\",\"name\":\"b\"}", "invalid_json", "body", "duplicate", 1},
        {"{\"name\":\"\xff\xfe\"}", "invalid_json", "body", "malformed JSON", 1},
        {"[{\"name\":\"a\"}]", "invalid_json", "body", "must be a JSON object", 1},
        {"{\"name\":\"a\"} x", "invalid_json", "body", "malformed JSON", 1},
        {"{\"name\":\"a\",\"bogus\":1}", "validation_failed", "bogus", "unknown field", 1},
        {"{\"name\":5}", "validation_failed", "name", "must be a string", 1},
        {"{\"name\":\"a\",\"enabled\":\"true\"}", "validation_failed", "enabled",
         "must be a boolean", 1},
        {"{\"name\":\"a\",\"count\":\"5\"}", "validation_failed", "count", "must be an integer", 1},
        {"{\"name\":\"a\",\"count\":1.5}", "validation_failed", "count", "must be an integer", 1},
        {"{\"name\":\"a\",\"count\":1001}", "validation_failed", "count", "1..1000", 1},
        {"{\"name\":\"a\",\"tags\":{}}", "validation_failed", "tags", "must be an array", 1},
        {"{\"name\":\"123456789\"}", "validation_failed", "name", "longer than 8 characters", 1},
        {"{\"name\":\"a\",\"id\":\"a b\"}", "validation_failed", "id", "[A-Za-z0-9._-]{1,64}", 1},
        {"{\"name\":\"a\",\"id\":\"\"}", "validation_failed", "id", "[A-Za-z0-9._-]{1,64}", 1},
        {"{\"name\":\"a\",\"id\":7}", "validation_failed", "id", "must be a string id", 1},
        {"{\"name\":\"a\",\"status\":\"deleted\"}", "validation_failed", "status",
         "one of: active, inactive, archived", 1},
        {"{}", "validation_failed", "name", "is required", 1},
        {"{\"name\":null}", "validation_failed", "name", "must be a string", 1},
        /* One detail per offending field, unknown fields first. */
        {"{\"zzz\":1,\"name\":5,\"status\":\"x\",\"id\":\"/\"}", "validation_failed", "zzz",
         "unknown field", 4},
    };
    resp r;

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        post_json("/api/v1/things", key_writer, c->body, &r);
        if (r.status != 400 || err_code(&r) == NULL || strcmp(err_code(&r), c->code) != 0 ||
            ndetails(&r) != c->ndetails || strcmp(detail(&r, 0, "field"), c->field) != 0 ||
            strstr(detail(&r, 0, "message"), c->msg) == NULL)
            fail_msg("case %zu %s: got %ld %s", i, c->body, r.status, r.body ? r.body : "");
        resp_free(&r);
    }
    /* Eight characters of two bytes each fit a limit of 8 characters. */
    post_json("/api/v1/things", key_writer,
              "{\"name\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\","
              "\"status\":\"archived\",\"id\":\"A.b_c-9\",\"count\":1000,\"enabled\":false,"
              "\"tags\":[]}",
              &r);
    assert_int_equal(r.status, 201);
    resp_free(&r);
    /* The multi-field case names each field. */
    post_json("/api/v1/things", key_writer, "{\"zzz\":1,\"name\":5,\"status\":\"x\",\"id\":\"/\"}",
              &r);
    assert_string_equal(detail(&r, 1, "field"), "id");
    assert_string_equal(detail(&r, 2, "field"), "name");
    assert_string_equal(detail(&r, 3, "field"), "status");
    resp_free(&r);
}

static void test_health_ready(void **state)
{
    resp r;

    (void)state;
    get("/health", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    resp_free(&r);
    get("/ready", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    atomic_store(&ready_flag, 0);
    get("/ready", NULL, &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(err_code(&r), "not_ready");
    assert_true(has_header(&r, "Retry-After: 5"));
    assert_non_null(strstr(r.body, "kafka unreachable"));
    resp_free(&r);
    atomic_store(&ready_flag, 1);
    get("/health", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

/* Poll /metrics until `needle` appears (completion is counted after the response is sent). */
static int metrics_contains(const char *needle)
{
    for (int i = 0; i < 100; i++) {
        resp r;
        int found;
        get("/metrics", NULL, &r);
        assert_int_equal(r.status, 200);
        found = strstr(r.body, needle) != NULL;
        resp_free(&r);
        if (found)
            return 1;
        usleep(10000);
    }
    return 0;
}

/* Value of the sample `series` ("name{labels}") on /metrics now; -1 if absent. */
static long long metric_value(const char *series)
{
    resp r;
    long long v = -1;
    char *p;
    size_t n = strlen(series);

    get("/metrics", NULL, &r);
    for (p = r.body; p != NULL && (p = strstr(p, series)) != NULL; p += n) {
        if ((p == r.body || p[-1] == '\n') && p[n] == ' ') {
            v = strtoll(p + n + 1, NULL, 10);
            break;
        }
    }
    resp_free(&r);
    return v;
}

static void test_metrics(void **state)
{
    static const char cnt[] =
        "kcqrs_http_requests_total{route=\"two_params\",method=\"GET\",status=\"200\"}";
    static const char inf[] =
        "kcqrs_http_request_duration_seconds_bucket{route=\"two_params\",le=\"+Inf\"}";
    static const char hcount[] = "kcqrs_http_request_duration_seconds_count{route=\"two_params\"}";
    long long c0 = metric_value(cnt), i0 = metric_value(inf), h0 = metric_value(hcount), c1 = 0;
    resp r;

    (void)state;
    assert_true(c0 >= 1); /* test_routing called it once */
    for (int i = 0; i < 3; i++) {
        get("/api/v1/p/a/sub/b", NULL, &r);
        resp_free(&r);
    }
    for (int i = 0; i < 100 && (c1 = metric_value(cnt)) != c0 + 3; i++)
        usleep(10000);
    assert_int_equal(c1, c0 + 3);
    assert_int_equal(metric_value(inf), i0 + 3);
    assert_int_equal(metric_value(hcount), h0 + 3);
    assert_true(metric_value("kcqrs_http_requests_total{route=\"unmatched\",method=\"\","
                             "status=\"404\"}") >= 3);
    assert_true(metric_value("kcqrs_http_requests_total{route=\"thing_create\",method=\"POST\","
                             "status=\"413\"}") >= 3);
    assert_true(metric_value("kcqrs_http_body_too_large_total") >= 3);
    /* Only this request (the previous one may still be completing: poll). */
    assert_true(metrics_contains("kcqrs_http_requests_in_flight 1\n"));
    assert_true(metrics_contains("# TYPE kcqrs_http_request_duration_seconds histogram\n"));
    assert_true(metrics_contains("kcqrs_http_request_duration_seconds_bucket{route=\"two_params\","
                                 "le=\"0.001\"}"));
    get("/metrics", NULL, &r);
    assert_true(has_header(&r, "Content-Type: text/plain; version=0.0.4"));
    resp_free(&r);
}

#define NTHREADS 6
#define PER_THREAD 40

static void *hammer(void *arg)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[128], line[128];
    long ok = 0;

    (void)arg;
    snprintf(url, sizeof url, "http://127.0.0.1:%u/api/v1/count", port);
    snprintf(line, sizeof line, "Authorization: Bearer %s", key_reader);
    h = curl_slist_append(h, line);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    for (int i = 0; i < PER_THREAD; i++) {
        resp r;
        long st = 0;
        memset(&r, 0, sizeof r);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
        /* Alternate keep-alive and fresh connections. */
        curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, (long)(i % 2));
        if (curl_easy_perform(c) == CURLE_OK &&
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st) == CURLE_OK && st == 200)
            ok++;
        free(r.body);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return (void *)(intptr_t)ok;
}

static void test_concurrency(void **state)
{
    pthread_t t[NTHREADS];
    long total = 0;
    int before = atomic_load(&count_calls);
    char needle[160];

    (void)state;
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < NTHREADS; i++) {
        void *ok;
        pthread_join(t[i], &ok);
        total += (long)(intptr_t)ok;
    }
    assert_int_equal(total, NTHREADS * PER_THREAD);
    assert_int_equal(atomic_load(&count_calls) - before, NTHREADS * PER_THREAD);
    /* test_auth made 1 successful and 1 refused call to this route before. */
    snprintf(needle, sizeof needle,
             "kcqrs_http_requests_total{route=\"count\",method=\"GET\",status=\"200\"} %d\n",
             atomic_load(&count_calls));
    assert_true(metrics_contains(needle));
    assert_true(metrics_contains("kcqrs_http_requests_in_flight 1\n"));
}

static int raw_send(int fd)
{
    static const char req[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    return send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof req - 1);
}

/* Read one /health response from fd; 1 if a 200 came back before EOF or the timeout. */
static int raw_read_ok(int fd)
{
    char buf[1024];
    size_t n = 0;

    while (n < sizeof buf - 1) {
        ssize_t k = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        if (k <= 0)
            return 0;
        n += (size_t)k;
        buf[n] = '\0';
        if (strstr(buf, "{\"status\":\"ok\"}") != NULL)
            return strncmp(buf, "HTTP/1.1 200", 12) == 0;
    }
    return 0;
}

/* Send a GET /health on fd and read the response; 1 if a 200 came back. */
static int raw_health(int fd)
{
    return raw_send(fd) && raw_read_ok(fd);
}

static void set_rcvtimeo(int fd, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static int raw_connect(unsigned p)
{
    struct sockaddr_in a;
    struct timeval tv = {2, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)p);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/*
 * Send req[0..len) (if any) on fd, then read until EOF or `ms` pass without bytes;
 * the answer is NUL-terminated in out. Returns the bytes read.
 */
static size_t raw_exchange(int fd, const char *req, size_t len, char *out, size_t cap, long ms)
{
    size_t n = 0;

    if (req != NULL && len > 0)
        assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    set_rcvtimeo(fd, ms);
    while (n + 1 < cap) {
        ssize_t k = recv(fd, out + n, cap - 1 - n, 0);
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    out[n] = '\0';
    return n;
}

/* 1 when the server has closed fd (recv gives 0 or a reset) within 2 s. */
static int raw_eof(int fd)
{
    char b[256];
    ssize_t k;
    set_rcvtimeo(fd, 2000);
    while ((k = recv(fd, b, sizeof b, 0)) > 0)
        ;
    return k == 0 || (k < 0 && errno == ECONNRESET);
}

/* The JSON body of the first answer in `ans` (after the blank line), parsed; NULL if none. */
static json_t *raw_body_json(const char *ans)
{
    const char *b = strstr(ans, "\r\n\r\n");
    return b ? json_loads(b + 4, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
}

static const char *json_err_code(json_t *j)
{
    return json_string_value(json_object_get(j, "code"));
}

static void test_per_ip_limit(void **state)
{
    kq_http_options o;
    kq_http_server *s2 = NULL;
    char err[256];
    int fds[3], extra;
    unsigned p2;
    int ok = 0;

    (void)state;
    memset(&o, 0, sizeof o);
    o.addr = "127.0.0.1:0";
    o.limits = kq_http_limits_default();
    o.limits.max_per_ip = 3;
    o.limits.threads = 2;
    assert_int_equal(kq_http_start(&o, &s2, err, sizeof err), 0);
    p2 = kq_http_port(s2);
    /* Three kept-alive connections, each proven accepted by a served request. */
    for (int i = 0; i < 3; i++) {
        fds[i] = raw_connect(p2);
        assert_true(raw_health(fds[i]));
    }
    /* The fourth from the same IP is answered 503 with a JSON body and Retry-After, then
     * closed (never a bare reset). */
    extra = raw_connect(p2);
    {
        char ans[2048];
        size_t n = raw_exchange(extra, NULL, 0, ans, sizeof ans, 2000);
        assert_true(n > 0);
        assert_true(strncmp(ans, "HTTP/1.1 503 ", 13) == 0);
        assert_non_null(strstr(ans, "Retry-After: "));
        assert_non_null(strstr(ans, "Connection: close\r\n"));
        assert_non_null(strstr(ans, "\"code\":\"server_busy\""));
        assert_true(raw_eof(extra));
    }
    close(extra);
    /* Closing one makes room again (the server notices the close asynchronously). */
    close(fds[0]);
    for (int tries = 0; tries < 100 && !ok; tries++) {
        extra = raw_connect(p2);
        ok = raw_health(extra);
        close(extra);
        if (!ok)
            usleep(20000);
    }
    assert_true(ok);
    close(fds[1]);
    close(fds[2]);
    kq_http_stop(s2);
}

static void test_limits(void **state)
{
    kq_http_options o;
    kq_http_server *s2 = NULL;
    char err[256];
    int a, b, c, ok = 0;
    unsigned p2;
    struct timespec t0, t1;
    char buf[64];
    ssize_t k;

    (void)state;
    memset(&o, 0, sizeof o);
    o.addr = "127.0.0.1:0";
    o.limits = kq_http_limits_default();
    o.limits.threads = 1;
    o.limits.max_connections = 2;
    o.limits.max_per_ip = 0;
    o.limits.timeout_s = 1;
    assert_int_equal(kq_http_start(&o, &s2, err, sizeof err), 0);
    p2 = kq_http_port(s2);

    /* Connection limit: at the limit a new connection evicts the one that has waited longest
     * for a request head: the idle keep-alive connection a (closed quietly); b and the
     * newcomer c are served. */
    a = raw_connect(p2);
    assert_true(raw_health(a));
    b = raw_connect(p2);
    assert_true(raw_health(b));
    c = raw_connect(p2);
    assert_true(raw_health(c));
    set_rcvtimeo(a, 500); /* well below the 1 s idle timeout: closed by the eviction */
    assert_int_equal(recv(a, buf, sizeof buf, 0), 0);
    assert_true(raw_health(b));
    close(a);
    close(b);
    close(c);

    /* Inactivity timeout: an idle connection is closed after about timeout_s (1 s). */
    for (int tries = 0; tries < 100 && !ok; tries++) {
        a = raw_connect(p2);
        ok = raw_health(a);
        if (!ok) {
            close(a);
            usleep(20000);
        }
    }
    assert_true(ok);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    k = recv(a, buf, sizeof buf, 0); /* SO_RCVTIMEO is 2 s */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(k, 0);
    {
        double dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        assert_true(dt > 0.3 && dt < 1.9);
    }
    close(a);
    kq_http_stop(s2);
}

static void test_header_memory(void **state)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[128], *line = malloc(80 * 1024);
    long st = 0;
    resp r;

    (void)state;
    memset(&r, 0, sizeof r);
    /* Headers larger than the per-connection memory (64 KiB) are refused, not stored. */
    memcpy(line, "X-Big: ", 7);
    memset(line + 7, 'a', 70 * 1024);
    line[7 + 70 * 1024] = '\0';
    h = curl_slist_append(h, line);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/health", port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    assert_true(st != 200);
    assert_true(st == 0 || st >= 400);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(line);
    free(r.body);
    get("/health", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

/* ---- deferred answers (kq_http_defer): answered by another thread */

#define MAX_DEFER 32
static pthread_t defer_threads[MAX_DEFER];
static atomic_int ndefer;

static void *answer_later(void *arg)
{
    kq_http_req *req = arg;
    const char *ms = kq_http_req_query(req, "ms");
    json_t *body;

    usleep((useconds_t)(ms ? atoi(ms) : 0) * 1000);
    body = json_pack("{s:s, s:s}", "id", kq_http_req_param(req, "id"), "by", "worker");
    kq_http_add_header(req, "X-Consistency-Token", "t-1");
    kq_http_respond_json(req, 201, body); /* req is gone after this */
    return NULL;
}

static void h_deferred(kq_http_req *req, void *arg)
{
    int i = atomic_fetch_add(&ndefer, 1);
    (void)arg;
    if (i >= MAX_DEFER || kq_http_defer(req) != 0) {
        kq_http_respond_error(req, 500, "internal", "too many deferrals", NULL);
        return;
    }
    if (pthread_create(&defer_threads[i], NULL, answer_later, req) != 0)
        abort();
}

static const kq_http_route droutes[] = {
    {"GET", "/d/{id}", KQ_HTTP_PUBLIC, KQ_HTTP_BODY_NONE, "deferred", h_deferred, NULL},
};

typedef struct bg_get {
    unsigned port;
    const char *path;
    long status;
    char body[256];
} bg_get;

static void *bg_get_run(void *arg)
{
    bg_get *g = arg;
    resp r;
    {
        CURL *c = curl_easy_init();
        char url[256];
        memset(&r, 0, sizeof r);
        snprintf(url, sizeof url, "http://127.0.0.1:%u%s", g->port, g->path);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
        curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &g->status);
        curl_easy_cleanup(c);
    }
    snprintf(g->body, sizeof g->body, "%s|%s", r.body ? r.body : "",
             strcasestr(r.headers, "X-Consistency-Token: t-1") ? "hdr" : "nohdr");
    free(r.body);
    return NULL;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void test_deferred(void **state)
{
    kq_http_options o;
    kq_http_server *s2 = NULL;
    char err[256];
    bg_get slow, fast;
    pthread_t t;
    double t0, dt;
    int fd, n;

    (void)state;
    memset(&o, 0, sizeof o);
    o.addr = "127.0.0.1:0";
    o.limits = kq_http_limits_default();
    o.limits.threads = 1; /* one loop thread: a blocking handler would stall it */
    o.routes = droutes;
    o.nroutes = 1;
    assert_int_equal(kq_http_start(&o, &s2, err, sizeof err), 0);

    memset(&slow, 0, sizeof slow);
    slow.port = kq_http_port(s2);
    slow.path = "/d/abc?ms=400";
    assert_int_equal(pthread_create(&t, NULL, bg_get_run, &slow), 0);
    usleep(100000);
    /* While the slow answer is pending, the same thread serves others at once. */
    t0 = now_s();
    fd = raw_connect(kq_http_port(s2));
    assert_true(raw_health(fd));
    close(fd);
    dt = now_s() - t0;
    assert_true(dt < 0.25);
    pthread_join(t, NULL);
    assert_int_equal(slow.status, 201);
    assert_string_equal(slow.body, "{\"id\":\"abc\",\"by\":\"worker\"}|hdr");

    /* An immediate answer from the other thread works as well. */
    memset(&fast, 0, sizeof fast);
    fast.port = kq_http_port(s2);
    fast.path = "/d/x?ms=0";
    bg_get_run(&fast);
    assert_int_equal(fast.status, 201);

    n = atomic_load(&ndefer);
    for (int i = 0; i < n && i < MAX_DEFER; i++)
        pthread_join(defer_threads[i], NULL);
    kq_http_stop(s2);
}

/* ---- the server's own answers: parser, deadlines, limits (issue #19) */

static unsigned count_substr(const char *s, const char *needle)
{
    unsigned n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* Send `req` on a fresh connection to the fixture; expect one answer `status` with a JSON
 * error body of `code`, Connection: close, and the connection closed. */
static void expect_refused(const char *req, size_t len, unsigned status, const char *code)
{
    char ans[8192], line[32];
    int fd = raw_connect(port);
    json_t *j;

    raw_exchange(fd, req, len, ans, sizeof ans, 3000);
    snprintf(line, sizeof line, "HTTP/1.1 %u ", status);
    if (strncmp(ans, line, strlen(line)) != 0)
        fail_msg("request %.60s: want %u, got: %.200s", req, status, ans);
    assert_int_equal(count_substr(ans, "HTTP/1.1 "), 1);
    assert_non_null(strstr(ans, "Content-Type: application/problem+json\r\n"));
    assert_non_null(strstr(ans, "Content-Length: "));
    assert_non_null(strstr(ans, "Connection: close\r\n"));
    j = raw_body_json(ans);
    assert_non_null(j);
    if (code != NULL)
        assert_string_equal(json_err_code(j), code);
    else
        assert_non_null(json_err_code(j));
    assert_int_equal(json_integer_value(json_object_get(j, "status")), status);
    assert_null(json_object_get(j, "instance")); /* no request path was read */
    json_decref(j);
    close(fd);
}

static void test_parser_errors_json(void **state)
{
    static const char garbage[] = "GARBAGE\r\n\r\n";
    static const char bad_cl[] = "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n";
    static const char two_cl[] =
        "POST /hooks/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
    static const char gzip[] =
        "POST /hooks/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n";
    static const char v2[] = "GET /health HTTP/2.0\r\nHost: x\r\n\r\n";
    static const char nohost[] = "GET /health HTTP/1.1\r\n\r\n";
    static const char nul[] = "GET /api/v1/p/a%00b/sub/c HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char expect[] = "GET /health HTTP/1.1\r\nHost: x\r\nExpect: tea\r\n\r\n";
    char *many = malloc(16384), *big = malloc(80 * 1024), smuggle[1024];
    size_t n;
    int before = atomic_load(&count_calls);

    (void)state;
    expect_refused(garbage, sizeof garbage - 1, 400, "bad_request");
    expect_refused(bad_cl, sizeof bad_cl - 1, 400, "bad_request");
    expect_refused(two_cl, sizeof two_cl - 1, 400, "bad_request");
    expect_refused(gzip, sizeof gzip - 1, 501, "not_implemented");
    expect_refused(v2, sizeof v2 - 1, 505, "http_version_not_supported");
    expect_refused(nohost, sizeof nohost - 1, 400, "bad_request");
    expect_refused(nul, sizeof nul - 1, 400, "bad_request");
    expect_refused(expect, sizeof expect - 1, 417, "expectation_failed");
    /* ~1,000 query parameters (a 7 KB target): 414. */
    n = (size_t)snprintf(many, 16384, "GET /health?");
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(many + n, 16384 - n, "a=%d&", i % 10);
    n += (size_t)snprintf(many + n, 16384 - n, " HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_refused(many, n, 414, "uri_too_long");
    /* A 70 KiB header: 431 with the JSON body. */
    n = (size_t)snprintf(big, 1024, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + n, 'a', 70 * 1024);
    n += 70 * 1024;
    memcpy(big + n, "\r\n\r\n", 4);
    expect_refused(big, n + 4, 431, "header_fields_too_large");
    /* Transfer-Encoding with Content-Length: 400 and the connection closes, so the request
     * smuggled behind it never runs. */
    n = (size_t)snprintf(
        smuggle, sizeof smuggle,
        "POST /hooks/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        "Content-Length: 4\r\n\r\n0\r\n\r\n"
        "GET /api/v1/count HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n",
        key_reader);
    expect_refused(smuggle, n, 400, "bad_request");
    assert_int_equal(atomic_load(&count_calls), before);
    free(many);
    free(big);
}

static void test_public_cap_and_continue(void **state)
{
    size_t cap = kq_http_limits_default().max_body_public;
    char *big = malloc(cap + 4096), head[512], ans[4096];
    resp r;
    int fd;
    size_t n;

    (void)state;
    assert_int_equal(cap, 16384);
    memset(big, 'x', cap + 4096);
    /* A public route takes up to KCQRS_HTTP_MAX_BODY_PUBLIC... */
    request("POST", "/hooks/w1", "application/json", NULL, big, cap, 0, &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(json_integer_value(json_object_get(r.json, "len")), (json_int_t)cap);
    resp_free(&r);
    /* ...one byte more is 413, from Content-Length, before the body is read. */
    request("POST", "/hooks/w1", "application/json", NULL, big, cap + 1, 0, &r);
    assert_int_equal(r.status, 413);
    assert_string_equal(err_code(&r), "payload_too_large");
    resp_free(&r);
    /* A chunked one past the public cap: 413 too. */
    request("POST", "/hooks/w1", "application/json", NULL, NULL, 0, cap + 1, &r);
    assert_int_equal(r.status, 413);
    resp_free(&r);
    /* A keyed route takes more than the public cap (here: a too-long name, so 400). */
    memcpy(big, "{\"name\":\"", 9);
    memcpy(big + cap + 4094, "\"}", 2);
    request("POST", "/api/v1/things", "application/json", key_writer, big, cap + 4096, 0, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(detail(&r, 0, "field"), "name");
    resp_free(&r);

    /* Expect: 100-continue: no 100 before the route, the key and the cap are checked. */
    fd = raw_connect(port);
    n = (size_t)snprintf(head, sizeof head,
                         "POST /api/v1/things HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         "application/json\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\n");
    raw_exchange(fd, head, n, ans, sizeof ans, 2000);
    assert_true(strncmp(ans, "HTTP/1.1 401 ", 13) == 0);
    assert_null(strstr(ans, "100 Continue"));
    close(fd);
    fd = raw_connect(port);
    n = (size_t)snprintf(head, sizeof head,
                         "POST /hooks/w HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n"
                         "Expect: 100-continue\r\n\r\n",
                         cap + 1);
    raw_exchange(fd, head, n, ans, sizeof ans, 2000);
    assert_true(strncmp(ans, "HTTP/1.1 413 ", 13) == 0);
    assert_null(strstr(ans, "100 Continue"));
    close(fd);
    /* With the key and a body within the cap: 100, then the answer once the body came. */
    fd = raw_connect(port);
    n = (size_t)snprintf(head, sizeof head,
                         "POST /api/v1/things HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                         "Content-Type: application/json\r\nContent-Length: 12\r\n"
                         "Expect: 100-continue\r\nConnection: close\r\n\r\n",
                         key_writer);
    assert_int_equal(send(fd, head, n, MSG_NOSIGNAL), (ssize_t)n);
    set_rcvtimeo(fd, 2000);
    {
        ssize_t k = recv(fd, ans, sizeof ans - 1, 0);
        assert_true(k > 0);
        ans[k] = '\0';
        assert_string_equal(ans, "HTTP/1.1 100 Continue\r\n\r\n");
    }
    raw_exchange(fd, "{\"name\":\"a\"}", 12, ans, sizeof ans, 2000);
    assert_true(strncmp(ans, "HTTP/1.1 201 ", 13) == 0);
    close(fd);
    free(big);
}

static kq_http_server *start_with(const kq_http_limits *l, const kq_http_route *rt, size_t nrt,
                                  const char *internal)
{
    kq_http_options o;
    kq_http_server *s2 = NULL;
    char err[256];

    memset(&o, 0, sizeof o);
    o.addr = "127.0.0.1:0";
    o.internal_addr = internal;
    o.limits = *l;
    o.routes = rt;
    o.nroutes = nrt;
    o.keys = keys;
    if (kq_http_start(&o, &s2, err, sizeof err) != 0)
        fail_msg("start: %s", err);
    return s2;
}

static void test_header_deadline(void **state)
{
    kq_http_limits l = kq_http_limits_default();
    kq_http_server *s2;
    char ans[2048];
    double t0, dt;
    int fd;
    json_t *j;

    (void)state;
    l.threads = 1;
    l.header_timeout_ms = 300;
    s2 = start_with(&l, NULL, 0, NULL);
    /* A head that stops half-way: 408 with the JSON body after about 300 ms, then the close. */
    fd = raw_connect(kq_http_port(s2));
    t0 = now_s();
    raw_exchange(fd, "GET /health HTTP/1.1\r\nHo", 24, ans, sizeof ans, 3000);
    dt = now_s() - t0;
    assert_true(strncmp(ans, "HTTP/1.1 408 ", 13) == 0);
    assert_non_null(strstr(ans, "Connection: close\r\n"));
    j = raw_body_json(ans);
    assert_string_equal(json_err_code(j), "request_timeout");
    json_decref(j);
    assert_true(dt > 0.25 && dt < 2.0);
    close(fd);
    /* The deadline is absolute: a byte every 100 ms does not extend it. */
    fd = raw_connect(kq_http_port(s2));
    t0 = now_s();
    for (int i = 0; i < 8; i++) {
        if (send(fd, "G", 1, MSG_NOSIGNAL) != 1)
            break;
        usleep(100000);
    }
    raw_exchange(fd, NULL, 0, ans, sizeof ans, 3000);
    dt = now_s() - t0;
    assert_true(strncmp(ans, "HTTP/1.1 408 ", 13) == 0);
    assert_true(dt < 2.0);
    close(fd);
    /* A kept-alive connection waits for its next request without the deadline (the idle
     * timeout applies), and the deadline restarts with the next request's first byte. */
    fd = raw_connect(kq_http_port(s2));
    assert_true(raw_health(fd));
    usleep(600000);
    assert_true(raw_health(fd));
    close(fd);
    {
        char *m = kq_http_metrics_render(s2);
        assert_non_null(strstr(m, "kcqrs_http_requests_total{route=\"unmatched\",method=\"\","
                                  "status=\"408\"} 2\n"));
        assert_non_null(strstr(m, "kcqrs_http_timeouts_total 2\n"));
        free(m);
    }
    kq_http_stop(s2);
}

static void test_body_rate(void **state)
{
    kq_http_limits l = kq_http_limits_default();
    kq_http_server *s2;
    char ans[2048], head[256];
    double t0, dt;
    size_t n;
    int fd;

    (void)state;
    l.threads = 1;
    l.min_body_rate = 100000; /* bytes/s: 10 bytes in 2 s are far below */
    s2 = start_with(&l, routes, sizeof routes / sizeof routes[0], NULL);
    fd = raw_connect(kq_http_port(s2));
    n = (size_t)snprintf(
        head, sizeof head,
        "POST /hooks/w HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789");
    t0 = now_s();
    raw_exchange(fd, head, n, ans, sizeof ans, 5000);
    dt = now_s() - t0;
    assert_true(strncmp(ans, "HTTP/1.1 408 ", 13) == 0);
    assert_non_null(strstr(ans, "\"code\":\"request_timeout\""));
    assert_non_null(strstr(ans, "Connection: close\r\n"));
    assert_true(dt > 1.8 && dt < 4.0); /* after the 2 s grace */
    close(fd);
    kq_http_stop(s2);
}

static void join_deferred(int from)
{
    int n = atomic_load(&ndefer);
    for (int i = from; i < n && i < MAX_DEFER; i++)
        pthread_join(defer_threads[i], NULL);
}

static void test_eviction(void **state)
{
    kq_http_limits l = kq_http_limits_default();
    kq_http_server *s2;
    char ans[4096];
    int slow, d1, d2, fresh, from = atomic_load(&ndefer);
    static const char dreq1[] = "GET /d/one?ms=700 HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char dreq2[] = "GET /d/two?ms=700 HTTP/1.1\r\nHost: x\r\n\r\n";

    (void)state;
    l.threads = 1;
    l.max_connections = 2;
    l.max_per_ip = 0;
    s2 = start_with(&l, droutes, 1, NULL);
    /* slow: half a head, waiting longest; d1: a request in flight (answered in 700 ms). */
    slow = raw_connect(kq_http_port(s2));
    assert_int_equal(send(slow, "GET /health HT", 14, MSG_NOSIGNAL), 14);
    usleep(50000);
    d1 = raw_connect(kq_http_port(s2));
    assert_int_equal(send(d1, dreq1, sizeof dreq1 - 1, MSG_NOSIGNAL), (ssize_t)(sizeof dreq1 - 1));
    usleep(100000);
    /* A newcomer at the limit evicts the slow head (503 JSON), never the request in flight. */
    fresh = raw_connect(kq_http_port(s2));
    assert_true(raw_health(fresh));
    raw_exchange(slow, NULL, 0, ans, sizeof ans, 2000);
    assert_true(strncmp(ans, "HTTP/1.1 503 ", 13) == 0);
    assert_non_null(strstr(ans, "\"code\":\"server_busy\""));
    assert_non_null(strstr(ans, "Retry-After: "));
    close(slow);
    /* fresh is now idle: a second deferred request on it, so both slots are in flight... */
    assert_int_equal(send(fresh, dreq2, sizeof dreq2 - 1, MSG_NOSIGNAL),
                     (ssize_t)(sizeof dreq2 - 1));
    usleep(100000);
    /* ...and a third connection has nobody to evict: 503 with Retry-After, then the close. */
    d2 = raw_connect(kq_http_port(s2));
    raw_exchange(d2, NULL, 0, ans, sizeof ans, 2000);
    assert_true(strncmp(ans, "HTTP/1.1 503 ", 13) == 0);
    assert_non_null(strstr(ans, "Retry-After: "));
    close(d2);
    /* Both requests in flight were answered. */
    set_rcvtimeo(d1, 3000);
    raw_exchange(d1, NULL, 0, ans, sizeof ans, 1500);
    assert_true(strncmp(ans, "HTTP/1.1 201 ", 13) == 0);
    assert_non_null(strstr(ans, "\"id\":\"one\""));
    raw_exchange(fresh, NULL, 0, ans, sizeof ans, 1500);
    assert_true(strncmp(ans, "HTTP/1.1 201 ", 13) == 0);
    assert_non_null(strstr(ans, "\"id\":\"two\""));
    close(d1);
    close(fresh);
    join_deferred(from);
    kq_http_stop(s2);
}

static void test_pipelined(void **state)
{
    kq_http_limits l = kq_http_limits_default();
    kq_http_server *s2;
    static const char reqs[] = "GET /d/a?ms=200 HTTP/1.1\r\nHost: x\r\n\r\n"
                               "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                               "GET /d/b?ms=0 HTTP/1.1\r\nHost: x\r\n\r\n"
                               "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char ans[8192];
    const char *pa, *ph, *pb, *pn;
    int fd, from = atomic_load(&ndefer);

    (void)state;
    l.threads = 1;
    s2 = start_with(&l, droutes, 1, NULL);
    fd = raw_connect(kq_http_port(s2));
    /* Four requests in one write, two of them answered by other threads (the first one
     * 200 ms late): the answers come in request order, then the close. */
    raw_exchange(fd, reqs, sizeof reqs - 1, ans, sizeof ans, 3000);
    assert_int_equal(count_substr(ans, "HTTP/1.1 "), 4);
    pa = strstr(ans, "{\"id\":\"a\"");
    ph = strstr(ans, "{\"status\":\"ok\"}");
    pb = strstr(ans, "{\"id\":\"b\"");
    pn = strstr(ans, "\"not_found\"");
    assert_true(pa != NULL && ph != NULL && pb != NULL && pn != NULL);
    assert_true(pa < ph && ph < pb && pb < pn);
    assert_true(raw_eof(fd));
    close(fd);
    join_deferred(from);
    kq_http_stop(s2);
}

/* A HEAD then a GET in one write on one connection: the HEAD's answer has no body, so the
 * GET's answer is read as the next one, with its body. */
static void test_head_pipelined(void **state)
{
    static const char reqs[] = "HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
                               "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char ans[4096];
    const char *second;
    int fd;

    (void)state;
    fd = raw_connect(port);
    raw_exchange(fd, reqs, sizeof reqs - 1, ans, sizeof ans, 3000);
    assert_int_equal(count_substr(ans, "HTTP/1.1 200 "), 2);
    assert_int_equal(count_substr(ans, "{\"status\":\"ok\"}"), 1);
    second = strstr(ans + 1, "HTTP/1.1 200 ");
    assert_non_null(second);
    assert_true(strstr(ans, "{\"status\":\"ok\"}") > second);
    assert_true(raw_eof(fd));
    close(fd);
}

static void test_internal_listener(void **state)
{
    kq_http_limits l = kq_http_limits_default();
    kq_http_server *s2;
    char ans[2048];
    int p1, p2, i1, i2;
    unsigned ip;
    resp r;

    (void)state;
    l.threads = 2;
    l.max_per_ip = 1;
    s2 = start_with(&l, routes, sizeof routes / sizeof routes[0], "127.0.0.1:0");
    ip = kq_http_internal_port(s2);
    assert_true(ip > 0 && ip != kq_http_port(s2));
    assert_int_equal(kq_http_internal_port(srv), 0);
    /* The public port allows one connection from 127.0.0.1... */
    p1 = raw_connect(kq_http_port(s2));
    assert_true(raw_health(p1));
    p2 = raw_connect(kq_http_port(s2));
    raw_exchange(p2, NULL, 0, ans, sizeof ans, 2000);
    assert_true(strncmp(ans, "HTTP/1.1 503 ", 13) == 0);
    close(p2);
    /* ...the internal one has no per-IP limit, and the same routes and keys. */
    i1 = raw_connect(ip);
    i2 = raw_connect(ip);
    assert_true(raw_health(i1));
    assert_true(raw_health(i2));
    {
        unsigned keep = port;
        port = ip;
        get("/api/v1/count", NULL, &r);
        assert_int_equal(r.status, 401);
        resp_free(&r);
        get("/api/v1/count", key_reader, &r);
        assert_int_equal(r.status, 200);
        resp_free(&r);
        port = keep;
    }
    close(p1);
    close(i1);
    close(i2);
    kq_http_stop(s2);
}

/* ---- trusted proxies and HTTPS (issue #13 item 3) */

static void h_client(kq_http_req *req, void *arg)
{
    (void)arg;
    kq_http_respond_json(req, 200, json_pack("{s:s}", "client", kq_http_req_client(req)));
}

static const kq_http_route client_routes[] = {
    {"GET", "/client", KQ_HTTP_PUBLIC, KQ_HTTP_BODY_NONE, "client", h_client, NULL},
};

/* GET /client on fd with extra header lines; the "client" of the answer (static buffer). */
static const char *client_seen(int fd, const char *extra)
{
    static char out[64];
    char req[512], ans[2048];
    size_t n =
        (size_t)snprintf(req, sizeof req, "GET /client HTTP/1.1\r\nHost: x\r\n%s\r\n", extra);
    ssize_t k;
    json_t *j;

    assert_int_equal(send(fd, req, n, MSG_NOSIGNAL), (ssize_t)n);
    set_rcvtimeo(fd, 2000);
    k = recv(fd, ans, sizeof ans - 1, 0);
    assert_true(k > 0);
    ans[k] = '\0';
    j = raw_body_json(ans);
    assert_non_null(j);
    snprintf(out, sizeof out, "%s", json_string_value(json_object_get(j, "client")));
    json_decref(j);
    return out;
}

static void test_trusted_proxies(void **state)
{
    kq_http_options o;
    kq_http_server *s2 = NULL;
    char err[256];
    int a, b;

    (void)state;
    memset(&o, 0, sizeof o);
    o.addr = "127.0.0.1:0";
    o.limits = kq_http_limits_default();
    o.limits.threads = 1;
    o.limits.max_per_ip = 1;
    o.routes = client_routes;
    o.nroutes = 1;
    o.trusted_proxies = "10.0.0.0/8, 127.0.0.0/8,::1";
    assert_int_equal(kq_http_start(&o, &s2, err, sizeof err), 0);
    /* A trusted peer is exempt from the per-IP limit (1 here). */
    a = raw_connect(kq_http_port(s2));
    b = raw_connect(kq_http_port(s2));
    /* The nearest X-Forwarded-For hop that is not a trusted proxy is the client. */
    assert_string_equal(client_seen(a, "X-Forwarded-For: 203.0.113.9, 10.1.2.3\r\n"),
                        "203.0.113.9");
    assert_string_equal(client_seen(b, "X-Forwarded-For: 198.51.100.1\r\n"
                                       "X-Forwarded-For: 203.0.113.5\r\n"),
                        "203.0.113.5");
    assert_string_equal(client_seen(a, "X-Forwarded-For: 2001:db8::1\r\n"), "2001:db8::1");
    /* Without the header, or with a malformed hop, the peer is the client. */
    assert_string_equal(client_seen(a, ""), "127.0.0.1");
    assert_string_equal(client_seen(a, "X-Forwarded-For: not-an-ip\r\n"), "127.0.0.1");
    /* A malformed hop stops the walk: the last hop that parsed (a trusted proxy) stays. */
    assert_string_equal(client_seen(b, "X-Forwarded-For: 203.0.113.1, bad, 10.0.0.1\r\n"),
                        "10.0.0.1");
    close(a);
    close(b);
    kq_http_stop(s2);

    /* An untrusted peer's X-Forwarded-For is ignored, and the per-IP limit applies. */
    o.trusted_proxies = "10.0.0.0/8";
    assert_int_equal(kq_http_start(&o, &s2, err, sizeof err), 0);
    a = raw_connect(kq_http_port(s2));
    assert_string_equal(client_seen(a, "X-Forwarded-For: 203.0.113.9\r\n"), "127.0.0.1");
    b = raw_connect(kq_http_port(s2));
    {
        char ans[1024];
        raw_exchange(b, NULL, 0, ans, sizeof ans, 2000);
        assert_true(strncmp(ans, "HTTP/1.1 503 ", 13) == 0);
    }
    close(a);
    close(b);
    kq_http_stop(s2);

    /* Bad lists are refused at start. */
    o.trusted_proxies = "10.0.0.0/33";
    assert_int_equal(kq_http_start(&o, &s2, err, sizeof err), KQ_EINVAL);
    assert_non_null(strstr(err, "bad prefix length"));
    o.trusted_proxies = "10.0.0.0/8, proxy.example";
    assert_int_equal(kq_http_start(&o, &s2, err, sizeof err), KQ_EINVAL);
    assert_non_null(strstr(err, "'proxy.example' is not an IP address"));
}

/* A self-signed P-256 certificate for 127.0.0.1 and its key, as PEM files. */
static void make_cert(const char *certpath, const char *keypath)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *n;
    FILE *f;

    assert_non_null(pk);
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pk);
    n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"127.0.0.1", -1, -1,
                               0);
    X509_set_issuer_name(x, n);
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
    assert_non_null(f = fopen(certpath, "w"));
    PEM_write_X509(f, x);
    fclose(f);
    assert_non_null(f = fopen(keypath, "w"));
    PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
}

static void test_tls(void **state)
{
    char dir[] = "/tmp/test_http_tlsXXXXXX", cert[128], key[128], err[256], ans[1024];
    kq_http_options o;
    kq_http_server *s2 = NULL;
    unsigned keep = port;
    size_t big = 60000;
    char *body = malloc(big);
    resp r;
    int fd;
    double t0;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    make_cert(cert, key);
    memset(&o, 0, sizeof o);
    o.addr = "127.0.0.1:0";
    o.internal_addr = "127.0.0.1:0";
    o.limits = kq_http_limits_default();
    o.limits.threads = 1;
    o.limits.header_timeout_ms = 500;
    o.routes = routes;
    o.nroutes = sizeof routes / sizeof routes[0];
    o.keys = keys;
    /* Start errors name the file at fault. */
    o.tls_cert = "/nonexistent/cert.pem";
    o.tls_key = key;
    assert_int_equal(kq_http_start(&o, &s2, err, sizeof err), KQ_EINVAL);
    assert_non_null(strstr(err, "TLS certificate '/nonexistent/cert.pem'"));
    o.tls_cert = cert;
    o.tls_key = NULL;
    assert_int_equal(kq_http_start(&o, &s2, err, sizeof err), KQ_EINVAL);
    o.tls_key = key;
    assert_int_equal(kq_http_start(&o, &s2, err, sizeof err), 0);

    /* HTTPS on both listeners: routes, keys, a 60 KB body (many TLS records). */
    scheme = "https";
    port = kq_http_port(s2);
    get("/health", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    memset(body, ' ', big);
    memcpy(body, "{\"name\":\"", 9);
    memcpy(body + big - 2, "\"}", 2);
    request("POST", "/api/v1/things", "application/json", key_writer, body, big, 0, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(detail(&r, 0, "field"), "name");
    resp_free(&r);
    post_json("/api/v1/things", key_writer, "{\"name\":\"tls\"}", &r);
    assert_int_equal(r.status, 201);
    resp_free(&r);
    port = kq_http_internal_port(s2);
    get("/api/v1/things/t1", key_reader, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "id")), "t1");
    resp_free(&r);
    scheme = "http";
    port = keep;

    /* Plain HTTP to the HTTPS port: closed (no TLS, no answer), not left hanging. */
    fd = raw_connect(kq_http_port(s2));
    t0 = now_s();
    raw_exchange(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 34, ans, sizeof ans, 3000);
    assert_true(now_s() - t0 < 2.5);
    assert_null(strstr(ans, "200 OK"));
    close(fd);
    /* A connection that never starts its handshake is closed at the header deadline. */
    fd = raw_connect(kq_http_port(s2));
    t0 = now_s();
    assert_true(raw_eof(fd));
    assert_true(now_s() - t0 > 0.3 && now_s() - t0 < 2.0);
    close(fd);
    kq_http_stop(s2);
    unlink(cert);
    unlink(key);
    rmdir(dir);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_addr),
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_jin_direct),
        cmocka_unit_test(test_start_errors),
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_content_type_415),
        cmocka_unit_test(test_body_cap),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_health_ready),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_concurrency),
        cmocka_unit_test(test_per_ip_limit),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_header_memory),
        cmocka_unit_test(test_deferred),
        cmocka_unit_test(test_parser_errors_json),
        cmocka_unit_test(test_public_cap_and_continue),
        cmocka_unit_test(test_header_deadline),
        cmocka_unit_test(test_body_rate),
        cmocka_unit_test(test_eviction),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_head_pipelined),
        cmocka_unit_test(test_internal_listener),
        cmocka_unit_test(test_trusted_proxies),
        cmocka_unit_test(test_tls),
    };
    return cmocka_run_group_tests(tests, setup_server, teardown_server);
}
