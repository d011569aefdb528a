/*
 * test_http_stream.c — kq_http's streaming answers (kq_http_stream_*): an
 * in-process server on 127.0.0.1:0, a producer thread per stream, raw-socket
 * clients that read at once, read late, or leave.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
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

#include "kq_err.h"
#include "kq_http.h"
#include "kq_log.h"
#include "kq_time.h"

/* ------------------------------------------------------------------ the producer */

/* What the last stream's producer saw (one stream at a time in these tests). */
static struct {
    atomic_int done;           /* the producer returned */
    atomic_int refused;        /* KQ_ERANGE answers (the client did not read) */
    atomic_int saw_gone;       /* a write answered KQ_EIO and kq_http_stream_gone was 1 */
    atomic_size_t max_pending; /* highest kq_http_stream_pending seen */
    atomic_long lines;         /* lines appended */
} prod;

static atomic_int misuse_begin_twice = 1, misuse_respond_after = 1;

typedef struct job {
    kq_http_stream *s;
    long n; /* lines to write (each "%08ld" + padding + "\n", `size` bytes) */
    size_t size;
    size_t max;
} job;

static void line_of(long i, size_t size, char *buf)
{
    int k = snprintf(buf, size, "%08ld", i);
    memset(buf + k, 'a' + (int)(i % 26), size - 1 - (size_t)k);
    buf[size - 1] = '\n';
}

static void note_pending(kq_http_stream *s)
{
    size_t p = kq_http_stream_pending(s), m = atomic_load(&prod.max_pending);
    while (p > m && !atomic_compare_exchange_weak(&prod.max_pending, &m, p))
        ;
}

static void *producer(void *arg)
{
    job *j = arg;
    char buf[4096];

    for (long i = 0; i < j->n; i++) {
        int rc;
        line_of(i, j->size, buf);
        while ((rc = kq_http_stream_write(j->s, buf, j->size)) == KQ_ERANGE) {
            struct timespec ts = {0, 1000000L};
            atomic_fetch_add(&prod.refused, 1);
            note_pending(j->s);
            nanosleep(&ts, NULL);
        }
        note_pending(j->s);
        if (rc == KQ_EIO) {
            atomic_store(&prod.saw_gone, kq_http_stream_gone(j->s));
            break;
        }
        if (rc != 0) /* never expected: the test sees lines < n */
            break;
        atomic_fetch_add(&prod.lines, 1);
    }
    kq_http_stream_end(j->s, "END\n", 4);
    free(j);
    atomic_store(&prod.done, 1);
    return NULL;
}

/* GET /stream?n=&size=&max=: n lines of size bytes, at most max bytes unsent. */
static void h_stream(kq_http_req *req, void *arg)
{
    job *j = calloc(1, sizeof *j);
    pthread_t t;
    kq_http_stream *again = NULL;

    (void)arg;
    j->n = atol(kq_http_req_query(req, "n"));
    j->size = (size_t)atol(kq_http_req_query(req, "size"));
    j->max = (size_t)atol(kq_http_req_query(req, "max"));
    memset(&prod, 0, sizeof prod);
    kq_http_add_header(req, "Cache-Control", "no-cache");
    assert_int_equal(kq_http_stream_begin(req, 200, "text/plain", j->max, &j->s), 0);
    /* a second begin, or an ordinary answer after it, is refused */
    atomic_store(&misuse_begin_twice,
                 kq_http_stream_begin(req, 200, "text/plain", 10, &again) == KQ_EINVAL &&
                     again == NULL);
    atomic_store(&misuse_respond_after, kq_http_respond_text(req, 500, "text/plain", "x", 1) != 0);
    assert_int_equal(pthread_create(&t, NULL, producer, j), 0);
    pthread_detach(t);
}

static const kq_http_route routes[] = {
    {"GET", "/stream", KQ_HTTP_PUBLIC, KQ_HTTP_BODY_NONE, "stream", h_stream, NULL},
};

/* ------------------------------------------------------------------ fixture, client */

static kq_http_server *srv;
static unsigned port;

static kq_http_server *start_server(void)
{
    kq_http_options o;
    kq_http_server *s = NULL;
    char err[256];

    memset(&o, 0, sizeof o);
    o.addr = "127.0.0.1:0";
    o.limits = kq_http_limits_default();
    o.routes = routes;
    o.nroutes = sizeof routes / sizeof routes[0];
    if (kq_http_start(&o, &s, err, sizeof err) != 0)
        fprintf(stderr, "start: %s\n", err);
    return s;
}

static int setup_server(void **state)
{
    (void)state;
    kq_log_init("test_http_stream", getenv("TEST_HTTP_LOG") ? KQ_LOG_INFO : KQ_LOG_ERROR,
                KQ_LOG_HUMAN);
    if ((srv = start_server()) == NULL)
        return -1;
    port = kq_http_port(srv);
    return port == 0 ? -1 : 0;
}

static int teardown_server(void **state)
{
    (void)state;
    kq_http_stop(srv);
    return 0;
}

/* Connect (receive buffer rcvbuf bytes when > 0) and send GET path. */
static int open_stream(unsigned p, const char *path, int rcvbuf)
{
    struct sockaddr_in a;
    struct timeval tv = {5, 0};
    char req[512];
    int fd = socket(AF_INET, SOCK_STREAM, 0), n;

    assert_true(fd >= 0);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)p);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    return fd;
}

/* Read until EOF (or 5 s without a byte); *len bytes, NUL-terminated, caller frees. */
static char *read_all(int fd, size_t *len)
{
    size_t n = 0, cap = 65536;
    char *b = malloc(cap);

    assert_non_null(b);
    for (;;) {
        ssize_t k;
        if (n + 1 >= cap) {
            cap *= 2;
            assert_non_null(b = realloc(b, cap));
        }
        k = recv(fd, b + n, cap - 1 - n, 0);
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    b[n] = '\0';
    *len = n;
    return b;
}

/* The body after the head; checks the head of a streaming answer. */
static const char *check_head(const char *ans)
{
    const char *body = strstr(ans, "\r\n\r\n");

    assert_non_null(body);
    assert_true(strncmp(ans, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_non_null(strstr(ans, "Content-Type: text/plain\r\n"));
    assert_non_null(strstr(ans, "Connection: close\r\n"));
    assert_non_null(strstr(ans, "Cache-Control: no-cache\r\n"));
    assert_true(strstr(ans, "Content-Length") == NULL || strstr(ans, "Content-Length") > body);
    assert_true(strstr(ans, "Transfer-Encoding") == NULL ||
                strstr(ans, "Transfer-Encoding") > body);
    return body + 4;
}

/* body holds lines 0..n-1 of `size` bytes, in order, then "END\n". */
static void check_lines(const char *body, size_t blen, long n, size_t size)
{
    char want[4096];

    assert_int_equal(blen, (size_t)n * size + 4);
    for (long i = 0; i < n; i++) {
        line_of(i, size, want);
        if (memcmp(body + (size_t)i * size, want, size) != 0)
            fail_msg("line %ld differs", i);
    }
    assert_memory_equal(body + (size_t)n * size, "END\n", 4);
}

static void wait_done(int ms)
{
    int64_t until = kq_time_mono_ms() + ms;
    while (!atomic_load(&prod.done) && kq_time_mono_ms() < until) {
        struct timespec ts = {0, 5000000L};
        nanosleep(&ts, NULL);
    }
    assert_true(atomic_load(&prod.done));
}

/* ------------------------------------------------------------------ tests */

/* A client that reads at once gets every byte in order, then the end and EOF. */
static void test_stream_whole(void **state)
{
    size_t len;
    char *ans;
    int fd;

    (void)state;
    fd = open_stream(port, "/stream?n=2000&size=100&max=1048576", 0);
    ans = read_all(fd, &len);
    close(fd);
    {
        const char *body = check_head(ans);
        check_lines(body, len - (size_t)(body - ans), 2000, 100);
    }
    wait_done(5000);
    assert_int_equal(atomic_load(&prod.lines), 2000);
    assert_false(atomic_load(&prod.saw_gone));
    assert_true(atomic_load(&misuse_begin_twice));
    assert_true(atomic_load(&misuse_respond_after));
    free(ans);
}

/* A write larger than the bound goes through alone (when nothing is pending). */
static void test_stream_write_over_bound(void **state)
{
    size_t len;
    char *ans;
    int fd;

    (void)state;
    fd = open_stream(port, "/stream?n=50&size=3000&max=1024", 0);
    ans = read_all(fd, &len);
    close(fd);
    {
        const char *body = check_head(ans);
        check_lines(body, len - (size_t)(body - ans), 50, 3000);
    }
    wait_done(5000);
    assert_int_equal(atomic_load(&prod.lines), 50);
    assert_true(atomic_load(&prod.max_pending) <= 3000 + 1024);
    free(ans);
}

/*
 * A client that does not read: the producer's writes are refused (KQ_ERANGE) once the
 * bound is reached and the unsent bytes never pass it; when the client reads, it gets
 * everything, in order, nothing lost or repeated. 12 MB: more than the kernel's socket
 * buffers take on loopback without a reader (the send buffer grows up to tcp_wmem's
 * maximum, 4 MiB by default), so the bound, not the kernel, is what stops the producer.
 */
static void test_stream_backpressure(void **state)
{
    const size_t max = 16384;
    size_t len;
    char *ans;
    int fd;
    struct timespec ts = {0, 500 * 1000000L};

    (void)state;
    fd = open_stream(port, "/stream?n=12000&size=1000&max=16384", 4096);
    nanosleep(&ts, NULL);
    assert_true(atomic_load(&prod.refused) > 0);
    assert_false(atomic_load(&prod.done));
    assert_true(atomic_load(&prod.lines) < 12000);
    ans = read_all(fd, &len);
    close(fd);
    {
        const char *body = check_head(ans);
        check_lines(body, len - (size_t)(body - ans), 12000, 1000);
    }
    wait_done(5000);
    /* the head counts too; the bound holds whatever the client does */
    assert_true(atomic_load(&prod.max_pending) <= max);
    assert_true(atomic_load(&prod.max_pending) > max / 2);
    free(ans);
}

/* A client that leaves: the producer's writes fail with KQ_EIO and gone is 1. */
static void test_stream_client_leaves(void **state)
{
    char b[4096];
    int fd;

    (void)state;
    fd = open_stream(port, "/stream?n=100000000&size=100&max=65536", 0);
    assert_true(recv(fd, b, sizeof b, MSG_WAITALL) > 0);
    close(fd);
    wait_done(5000);
    assert_true(atomic_load(&prod.saw_gone));
    assert_true(atomic_load(&prod.lines) < 100000000);
    /* the server still answers */
    fd = open_stream(port, "/stream?n=3&size=10&max=1024", 0);
    {
        size_t len;
        char *ans = read_all(fd, &len);
        const char *body = check_head(ans);
        check_lines(body, len - (size_t)(body - ans), 3, 10);
        free(ans);
    }
    close(fd);
    wait_done(5000);
}

/*
 * A stream that ended while its client reads nothing is closed after 2 s (the linger),
 * not kept: the client that reads at last finds the end of the connection before the
 * end of the body (20 MB do not fit in the sockets' buffers).
 */
static void test_stream_end_unread(void **state)
{
    int64_t t0;
    size_t got = 0;
    char b[65536];
    ssize_t k;
    int fd;

    (void)state;
    fd = open_stream(port, "/stream?n=20000&size=1000&max=33554432", 2048);
    wait_done(5000);
    {
        struct timespec ts = {3, 0};
        nanosleep(&ts, NULL); /* past the linger */
    }
    t0 = kq_time_mono_ms();
    while ((k = recv(fd, b, sizeof b, 0)) > 0)
        got += (size_t)k;
    assert_true(k == 0 || (k < 0 && errno == ECONNRESET));
    assert_true(kq_time_mono_ms() - t0 < 4000);
    assert_true(got < 20000u * 1000u);
    close(fd);
}

/* Stopping the server ends its streams: the producer learns it, the stop does not hang. */
static void test_stream_server_stop(void **state)
{
    kq_http_server *s2 = start_server();
    char b[1024];
    int64_t t0;
    int fd;

    (void)state;
    assert_non_null(s2);
    fd = open_stream(kq_http_port(s2), "/stream?n=100000000&size=100&max=65536", 0);
    assert_true(recv(fd, b, sizeof b, MSG_WAITALL) > 0);
    t0 = kq_time_mono_ms();
    kq_http_stop(s2);
    assert_true(kq_time_mono_ms() - t0 < 5000);
    wait_done(5000);
    assert_true(atomic_load(&prod.saw_gone));
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_whole),        cmocka_unit_test(test_stream_write_over_bound),
        cmocka_unit_test(test_stream_backpressure), cmocka_unit_test(test_stream_client_leaves),
        cmocka_unit_test(test_stream_end_unread),   cmocka_unit_test(test_stream_server_stop),
    };
    return cmocka_run_group_tests(tests, setup_server, teardown_server);
}
