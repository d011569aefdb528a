/*
 * test_wk_smtp.c — email through the worker engine against a minimal SMTP
 * sink running in a thread of this test (127.0.0.1:0): the message arrives
 * with the envelope (MAIL FROM, one RCPT per recipient) and the headers
 * (Subject, To, Date, Message-ID = delivery id); a rejected recipient gives
 * a 5xx outcome, a 4xx reply a retryable one; the message builder's output
 * (CRLF, encoded subject) and its refusals; the smtp/smtps scheme guard.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "kq_err.h"
#include "kq_log.h"
#include "test_wk_tool.h"
#include "wk_policy.h"
#include "wk_smtp.h"

/* ------------------------------------------------------------------ the sink */

static int sink_fd = -1;
static unsigned sink_port;
static pthread_t sink_thread;
static atomic_int sink_stop;
static pthread_mutex_t sink_mu = PTHREAD_MUTEX_INITIALIZER;
static char sink_from[256], sink_rcpts[1024], sink_data[65536];
static int sink_mails;

static void sink_send(int c, const char *s)
{
    size_t n = strlen(s), off = 0;
    while (off < n) {
        ssize_t w = write(c, s + off, n - off);
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

/* One line (without CRLF) into line; 0 on EOF/error. */
static int sink_line(int c, char *buf, size_t *have, char *line, size_t max)
{
    for (;;) {
        char *nl = memchr(buf, '\n', *have);
        if (nl != NULL) {
            size_t k = (size_t)(nl - buf) + 1, l = k;
            while (l > 0 && (buf[l - 1] == '\n' || buf[l - 1] == '\r'))
                l--;
            if (l >= max)
                l = max - 1;
            memcpy(line, buf, l);
            line[l] = '\0';
            memmove(buf, buf + k, *have - k);
            *have -= k;
            return 1;
        }
        if (*have >= 8191)
            return 0;
        ssize_t r = read(c, buf + *have, 8191 - *have);
        if (r <= 0)
            return 0;
        *have += (size_t)r;
    }
}

static void sink_session(int c)
{
    char buf[8192], line[4096];
    size_t have = 0;
    char from[256] = "", rcpts[1024] = "";
    sink_send(c, "220 test-sink ESMTP\r\n");
    while (sink_line(c, buf, &have, line, sizeof line)) {
        if (strncasecmp(line, "EHLO", 4) == 0 || strncasecmp(line, "HELO", 4) == 0) {
            sink_send(c, "250-test-sink\r\n250 8BITMIME\r\n");
        } else if (strncasecmp(line, "MAIL FROM:", 10) == 0) {
            snprintf(from, sizeof from, "%.200s", line + 10);
            rcpts[0] = '\0';
            sink_send(c, "250 OK\r\n");
        } else if (strncasecmp(line, "RCPT TO:", 8) == 0) {
            if (strstr(line, "<reject") != NULL) {
                sink_send(c, "550 no such user\r\n");
            } else if (strstr(line, "<busy") != NULL) {
                sink_send(c, "451 try again later\r\n");
            } else {
                size_t l = strlen(rcpts);
                snprintf(rcpts + l, sizeof rcpts - l, "%s%.200s", l ? " " : "", line + 8);
                sink_send(c, "250 OK\r\n");
            }
        } else if (strncasecmp(line, "DATA", 4) == 0) {
            char data[65536];
            size_t dl = 0;
            sink_send(c, "354 go ahead\r\n");
            while (sink_line(c, buf, &have, line, sizeof line)) {
                if (strcmp(line, ".") == 0)
                    break;
                const char *p = line[0] == '.' ? line + 1 : line; /* dot-unstuffing */
                dl += (size_t)snprintf(data + dl, sizeof data - dl, "%s\r\n", p);
                if (dl >= sizeof data)
                    dl = sizeof data - 1;
            }
            pthread_mutex_lock(&sink_mu);
            snprintf(sink_from, sizeof sink_from, "%s", from);
            snprintf(sink_rcpts, sizeof sink_rcpts, "%s", rcpts);
            memcpy(sink_data, data, dl);
            sink_data[dl] = '\0';
            sink_mails++;
            pthread_mutex_unlock(&sink_mu);
            sink_send(c, "250 queued\r\n");
        } else if (strncasecmp(line, "QUIT", 4) == 0) {
            sink_send(c, "221 bye\r\n");
            break;
        } else if (strncasecmp(line, "RSET", 4) == 0 || strncasecmp(line, "NOOP", 4) == 0) {
            sink_send(c, "250 OK\r\n");
        } else {
            sink_send(c, "502 not implemented\r\n");
        }
    }
}

static void *sink_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&sink_stop)) {
        struct pollfd p = {sink_fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int c = accept(sink_fd, NULL, NULL);
        if (c < 0)
            continue;
        sink_session(c);
        close(c);
    }
    return NULL;
}

static int setup(void **state)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    (void)state;
    sink_fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (sink_fd < 0 || bind(sink_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(sink_fd, 16) != 0 || getsockname(sink_fd, (struct sockaddr *)&sa, &sl) != 0)
        return -1;
    sink_port = ntohs(sa.sin_port);
    return pthread_create(&sink_thread, NULL, sink_main, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    atomic_store(&sink_stop, 1);
    pthread_join(sink_thread, NULL);
    close(sink_fd);
    return 0;
}

/* ------------------------------------------------------------------ tests */

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

static wk_engine *engine(int allow_private)
{
    wk_settings s;
    char err[256];
    wk_settings_defaults(&s);
    s.allow_private = allow_private;
    s.total_timeout_ms = 10000;
    wk_engine *e = wk_engine_new(&s, err, sizeof err);
    assert_non_null(e);
    return e;
}

static void send_mail(wk_engine *e, const wk_smtp_request *q, result *r)
{
    char err[256];
    memset(r, 0, sizeof *r);
    assert_int_equal(wk_engine_submit_smtp(e, q, on_done, r, err, sizeof err), 0);
    for (int i = 0; i < 1000 && wk_engine_in_flight(e) > 0; i++)
        assert_true(wk_engine_run(e, 10) >= 0);
    assert_int_equal(r->done, 1);
}

static void test_delivered(void **state)
{
    (void)state;
    wk_engine *e = engine(1);
    char url[64];
    const char *to[] = {"ops@example.com", "dev@example.org"};
    result r;
    snprintf(url, sizeof url, "smtp://127.0.0.1:%u", sink_port);
    wk_smtp_request q = {.url = url,
                         .from = "worker@kcqrs.test",
                         .to = to,
                         .n_to = 2,
                         .subject = "Order o-1 shipped",
                         .body = "Hello,\nyour order shipped.\n.hidden dot line\nBye",
                         .delivery_id = "run-7.step-1"};
    int before = sink_mails;
    send_mail(e, &q, &r);
    assert_int_equal(r.o.proto, WK_PROTO_SMTP);
    assert_int_equal(r.o.result, WK_R_RESPONSE);
    assert_int_equal(r.o.status_code, 250);
    assert_int_equal(wk_policy_classify(&r.o, NULL), WK_VERDICT_SUCCESS);
    pthread_mutex_lock(&sink_mu);
    assert_int_equal(sink_mails, before + 1);
    assert_string_equal(sink_from, "<worker@kcqrs.test>");
    assert_string_equal(sink_rcpts, "<ops@example.com> <dev@example.org>");
    assert_non_null(strstr(sink_data, "Subject: Order o-1 shipped\r\n"));
    assert_non_null(strstr(sink_data, "From: worker@kcqrs.test\r\n"));
    assert_non_null(strstr(sink_data, "To: ops@example.com,\r\n dev@example.org\r\n"));
    assert_non_null(strstr(sink_data, "Message-ID: <run-7.step-1@kcqrs>\r\n"));
    assert_non_null(strstr(sink_data, "X-Kcqrs-Delivery: run-7.step-1\r\n"));
    assert_non_null(strstr(sink_data, "Date: "));
    assert_non_null(strstr(sink_data, " +0000\r\n"));
    assert_non_null(
        strstr(sink_data, "\r\n\r\nHello,\r\nyour order shipped.\r\n.hidden dot line\r\nBye\r\n"));
    pthread_mutex_unlock(&sink_mu);
    wk_engine_free(e);
}

static void test_rejected(void **state)
{
    (void)state;
    wk_engine *e = engine(1);
    char url[64];
    const char *to1[] = {"reject@example.com"};
    const char *to2[] = {"busy@example.com"};
    result r;
    snprintf(url, sizeof url, "smtp://127.0.0.1:%u", sink_port);
    wk_smtp_request q = {.url = url,
                         .from = "w@x.test",
                         .to = to1,
                         .n_to = 1,
                         .subject = "s",
                         .body = "b",
                         .delivery_id = "d1"};
    int before = sink_mails;
    send_mail(e, &q, &r);
    assert_int_equal(r.o.result, WK_R_RESPONSE);
    assert_int_equal(r.o.status_code, 550);
    assert_int_equal(wk_policy_classify(&r.o, NULL), WK_VERDICT_FAIL);
    assert_non_null(strstr(r.o.error, "550"));
    q.to = to2;
    send_mail(e, &q, &r);
    assert_int_equal(r.o.status_code, 451);
    assert_int_equal(wk_policy_classify(&r.o, NULL), WK_VERDICT_RETRY);
    assert_int_equal(sink_mails, before);
    wk_engine_free(e);
}

static void test_guard(void **state)
{
    (void)state;
    wk_engine *e = engine(0);
    char url[64], err[256];
    const char *to[] = {"a@example.com"};
    result r;
    snprintf(url, sizeof url, "smtp://localhost:%u", sink_port);
    wk_smtp_request q = {.url = url,
                         .from = "w@x.test",
                         .to = to,
                         .n_to = 1,
                         .subject = "s",
                         .body = "b",
                         .delivery_id = "d1"};
    int before = sink_mails;
    send_mail(e, &q, &r);
    assert_int_equal(r.o.result, WK_R_REFUSED);
    assert_int_equal(sink_mails, before);
    q.url = "http://example.com/";
    assert_int_equal(wk_engine_submit_smtp(e, &q, on_done, &r, err, sizeof err), KQ_EUNSUPPORTED);
    q.url = "ftp://example.com/";
    assert_int_equal(wk_engine_submit_smtp(e, &q, on_done, &r, err, sizeof err), KQ_EUNSUPPORTED);
    wk_engine_free(e);
}

static void test_message(void **state)
{
    (void)state;
    char *m = NULL, err[256];
    size_t len = 0;
    const char *to[] = {"a@example.com"};
    wk_smtp_request q = {.url = "smtp://x",
                         .from = "w@x.test",
                         .to = to,
                         .n_to = 1,
                         .subject = "Caf\xc3\xa9 \xe2\x82\xac order",
                         .body = "l1\r\nl2\rl3\n",
                         .delivery_id = "abc-1"};
    assert_int_equal(wk_smtp_build_message(&q, 1445412480LL, &m, &len, err, sizeof err), 0);
    assert_int_equal(strlen(m), len);
    assert_non_null(strstr(m, "Date: Wed, 21 Oct 2015 07:28:00 +0000\r\n"));
    assert_non_null(strstr(m, "Subject: =?UTF-8?B?Q2Fmw6kg4oKsIG9yZGVy?=\r\n"));
    assert_non_null(strstr(m, "\r\n\r\nl1\r\nl2\r\nl3\r\n"));
    assert_null(strstr(m, "\n\n"));
    free(m);
    /* a long non-ASCII subject folds into several encoded words */
    char subj[400] = "";
    for (int i = 0; i < 60; i++)
        strcat(subj, "\xc3\xa9");
    q.subject = subj;
    assert_int_equal(wk_smtp_build_message(&q, 0, &m, &len, err, sizeof err), 0);
    assert_non_null(strstr(m, "?=\r\n =?UTF-8?B?"));
    free(m);

    const char *bad_to[] = {"no-at-sign"};
    const char *inj_to[] = {"a@b.c\r\nBcc: x@y.z"};
    wk_smtp_request bad[] = {q, q, q, q, q, q};
    bad[0].subject = "line\r\nBcc: evil@x";
    bad[1].to = bad_to;
    bad[2].to = inj_to;
    bad[3].n_to = 0;
    bad[4].from = "<w@x>";
    bad[5].delivery_id = "a b";
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m = (char *)1;
        assert_int_equal(wk_smtp_build_message(&bad[i], 0, &m, &len, err, sizeof err), KQ_EINVAL);
        assert_null(m);
    }
    char *huge = malloc(WK_REQUEST_BODY_MAX + 2);
    assert_non_null(huge);
    memset(huge, 'a', WK_REQUEST_BODY_MAX + 1);
    huge[WK_REQUEST_BODY_MAX + 1] = '\0';
    wk_smtp_request hq = q;
    hq.body = huge;
    assert_int_equal(wk_smtp_build_message(&hq, 0, &m, &len, err, sizeof err), KQ_ERANGE);
    free(huge);
    wk_smtp_request auth = q;
    auth.username = "u";
    wk_engine *e = engine(1);
    result r;
    assert_int_equal(wk_engine_submit_smtp(e, &auth, on_done, &r, err, sizeof err), KQ_EINVAL);
    wk_engine_free(e);
}

/* The same delivery through tests/tools/kq_smtp_sink, which the e2e tests use. */
static void test_kq_smtp_sink(void **state)
{
    (void)state;
    tool t;
    const char *script[] = {"250,451", NULL};
    int rc = tool_start(&t, "kq_smtp_sink", script);
    if (rc == 1) {
        print_message("kq_smtp_sink not built (make all): skipped\n");
        skip();
    }
    assert_int_equal(rc, 0);
    wk_engine *e = engine(1);
    char url[64];
    const char *to[] = {"ops@example.com", "dev@example.org"};
    result r;
    snprintf(url, sizeof url, "smtp://127.0.0.1:%u", t.port);
    wk_smtp_request q = {.url = url,
                         .from = "worker@kcqrs.test",
                         .to = to,
                         .n_to = 2,
                         .subject = "R\xc3\xa9sum\xc3\xa9 ready",
                         .body = "line 1\n.line 2\n",
                         .delivery_id = "run-9.step-0"};
    send_mail(e, &q, &r);
    assert_int_equal(r.o.status_code, 250);
    send_mail(e, &q, &r); /* the sink's script answers 451 to the second message */
    assert_int_equal(r.o.result, WK_R_RESPONSE);
    assert_int_equal(r.o.status_code, 451);
    assert_int_equal(wk_policy_classify(&r.o, NULL), WK_VERDICT_RETRY);
    wk_engine_free(e);
    assert_int_equal(tool_stop(&t), 0);

    json_error_t je;
    FILE *f = fopen(t.log, "r");
    assert_non_null(f);
    char line[65536];
    int n = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        json_t *m = json_loads(line, 0, &je);
        assert_non_null(m);
        json_t *h = json_object_get(m, "headers");
        assert_int_equal(json_integer_value(json_object_get(m, "n")), n + 1);
        assert_string_equal(json_string_value(json_object_get(m, "from")), "worker@kcqrs.test");
        assert_int_equal(json_array_size(json_object_get(m, "rcpt")), 2);
        assert_string_equal(json_string_value(json_array_get(json_object_get(m, "rcpt"), 1)),
                            "dev@example.org");
        assert_string_equal(json_string_value(json_object_get(h, "Subject")),
                            "=?UTF-8?B?UsOpc3Vtw6kgcmVhZHk=?=");
        assert_string_equal(json_string_value(json_object_get(h, "Message-ID")),
                            "<run-9.step-0@kcqrs>");
        assert_string_equal(json_string_value(json_object_get(h, "To")),
                            "ops@example.com, dev@example.org");
        assert_string_equal(json_string_value(json_object_get(h, "X-Kcqrs-Delivery")),
                            "run-9.step-0");
        assert_non_null(strstr(json_string_value(json_object_get(h, "Date")), " +0000"));
        assert_string_equal(json_string_value(json_object_get(m, "body")), "line 1\r\n.line 2\r\n");
        assert_int_equal(json_integer_value(json_object_get(m, "reply")), n == 0 ? 250 : 451);
        json_decref(m);
        n++;
    }
    fclose(f);
    assert_int_equal(n, 2);
    tool_clean(&t);
}

int main(void)
{
    kq_log_init("test_wk_smtp", KQ_LOG_ERROR, KQ_LOG_HUMAN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delivered),    cmocka_unit_test(test_rejected),
        cmocka_unit_test(test_guard),        cmocka_unit_test(test_message),
        cmocka_unit_test(test_kq_smtp_sink),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
