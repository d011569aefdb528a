/*
 * test_trace.c — kq_trace: traceparent parse/format/validate (the W3C cases), new traces
 * and child spans, attributes, the OTLP/HTTP JSON body, and the exporter against an
 * in-process HTTP receiver (the POST path and body, batching of many spans, counters),
 * an unreachable endpoint (spans counted as dropped, the caller never waits) and a full
 * queue (dropped and counted).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kq_err.h"
#include "kq_log.h"
#include "kq_trace.h"
#include "test_wk_recv.h"

static const char *GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

static void test_parse_format_roundtrip(void **state)
{
    kq_trace_ctx c;
    char out[KQ_TRACEPARENT_LEN + 1];

    (void)state;
    assert_int_equal(kq_trace_parse(GOOD, &c), 0);
    assert_int_equal(c.trace_id[0], 0x4b);
    assert_int_equal(c.trace_id[15], 0x36);
    assert_int_equal(c.span_id[0], 0x00);
    assert_int_equal(c.span_id[7], 0xb7);
    assert_int_equal(c.flags, 1);
    kq_trace_format(&c, out);
    assert_string_equal(out, GOOD);
    assert_int_equal(strlen(out), KQ_TRACEPARENT_LEN);
    /* a future version may carry more, after a '-' */
    assert_int_equal(
        kq_trace_parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra", &c), 0);
    assert_int_equal(c.flags, 0);
}

static void test_parse_rejects(void **state)
{
    static const char *bad[] = {
        NULL,
        "",
        "00-zz-bad",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",     /* short */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",   /* v00 too long */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",    /* upper case */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",    /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",    /* zero span id */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    /* version ff */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    /* separator */
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",    /* not hex */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",   /* v01 junk after */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\x01", /* control char */
    };
    kq_trace_ctx c;

    (void)state;
    memset(&c, 0x5a, sizeof c);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(kq_trace_parse(bad[i], &c), KQ_EINVAL);
        assert_int_equal(c.trace_id[0], 0x5a); /* untouched */
    }
}

static void test_new_and_child(void **state)
{
    kq_trace_ctx a, b, parent;
    kq_span s;
    char tp[KQ_TRACEPARENT_LEN + 1];

    (void)state;
    assert_int_equal(kq_trace_new(&a), 0);
    assert_int_equal(kq_trace_new(&b), 0);
    assert_true(kq_trace_valid(&a));
    assert_int_equal(a.flags, 1);
    assert_memory_not_equal(a.trace_id, b.trace_id, 16);
    kq_trace_format(&a, tp);
    assert_int_equal(kq_trace_parse(tp, &b), 0);
    assert_memory_equal(&a, &b, sizeof a);

    assert_int_equal(kq_trace_parse(GOOD, &parent), 0);
    assert_int_equal(kq_span_start(&s, &parent, KQ_SPAN_SERVER, "GET x"), 0);
    assert_memory_equal(s.ctx.trace_id, parent.trace_id, 16);
    assert_memory_equal(s.parent, parent.span_id, 8);
    assert_memory_not_equal(s.ctx.span_id, parent.span_id, 8);
    assert_int_equal(s.has_parent, 1);
    assert_true(s.start_ns > 1600000000LL * 1000000000LL);

    /* an invalid parent starts a new trace */
    memset(&parent, 0, sizeof parent);
    assert_int_equal(kq_span_start(&s, &parent, KQ_SPAN_INTERNAL, "x"), 0);
    assert_int_equal(s.has_parent, 0);
    assert_true(kq_trace_valid(&s.ctx));
    assert_int_equal(kq_span_start(&s, NULL, KQ_SPAN_INTERNAL, "x"), 0);
    assert_int_equal(s.has_parent, 0);
}

static void test_attrs_bounded(void **state)
{
    kq_span s;
    char big[400];

    (void)state;
    kq_span_start(&s, NULL, KQ_SPAN_INTERNAL, "a");
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    kq_span_attr_str(&s, "long", big);
    assert_int_equal(strlen(s.attrs[0].s), KQ_TRACE_STR_MAX - 1);
    for (int i = 0; i < 40; i++)
        kq_span_attr_int(&s, "n", i);
    assert_int_equal(s.nattrs, KQ_TRACE_ATTRS);
    kq_span_attr_strn(&s, "ignored", "y", 1);
    assert_int_equal(s.nattrs, KQ_TRACE_ATTRS);
}

/* Client bytes that are not UTF-8 (a decoded "/%ff" path) become '?', a cut never
 * splits a character, and the batch's JSON body is still made. */
static void test_attrs_utf8(void **state)
{
    kq_span s;
    char many[KQ_TRACE_STR_MAX + 8], *body;
    size_t n;

    (void)state;
    kq_span_start(&s, NULL, KQ_SPAN_SERVER, "GET");
    kq_span_attr_str(&s, "url.path", "/\xff/\xc3\xa9/\xe2\x82/\xed\xa0\x80/\xc0\xaf");
    assert_string_equal(s.attrs[0].s, "/?/\xc3\xa9/"
                                      "??"
                                      "/"
                                      "???"
                                      "/"
                                      "??");
    /* "xy" then two-byte characters: 126 bytes fit of 127, the next one is left out whole */
    memcpy(many, "xy", 2);
    for (n = 2; n + 2 <= sizeof many - 1; n += 2)
        memcpy(many + n, "\xc3\xa9", 2);
    many[n] = '\0';
    kq_span_attr_str(&s, "long", many);
    assert_int_equal(strlen(s.attrs[1].s), 2 + (KQ_TRACE_STR_MAX - 1 - 2) / 2 * 2);
    assert_int_equal(((unsigned char)s.attrs[1].s[strlen(s.attrs[1].s) - 1]), 0xa9);
    s.end_ns = s.start_ns + 1;
    body = kq_trace_otlp_json(&s, 1, "kcqrs-commands");
    assert_non_null(body);
    free(body);
}

static const json_t *attr_of(const json_t *span, const char *key)
{
    size_t i;
    json_t *a;

    json_array_foreach(json_object_get(span, "attributes"), i, a)
    {
        if (strcmp(json_string_value(json_object_get(a, "key")), key) == 0)
            return json_object_get(a, "value");
    }
    return NULL;
}

static void test_otlp_json(void **state)
{
    kq_trace_ctx parent;
    kq_span s[2];
    json_error_t je;
    json_t *root, *rs, *spans, *sp;
    char *body;

    (void)state;
    assert_int_equal(kq_trace_parse(GOOD, &parent), 0);
    kq_span_start(&s[0], &parent, KQ_SPAN_SERVER, "POST hook");
    kq_span_attr_str(&s[0], "http.route", "hook \"quoted\"");
    kq_span_attr_int(&s[0], "http.response.status_code", 202);
    s[0].start_ns = 1700000000123456789LL;
    s[0].end_ns = 1700000000223456789LL;
    s[0].error = 1;
    kq_span_start(&s[1], NULL, KQ_SPAN_CONSUMER, "apply lmdb");
    s[1].end_ns = s[1].start_ns + 5;
    body = kq_trace_otlp_json(s, 2, "kcqrs-commands");
    assert_non_null(body);
    root = json_loads(body, 0, &je);
    assert_non_null(root);
    rs = json_array_get(json_object_get(root, "resourceSpans"), 0);
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(
                json_array_get(json_object_get(json_object_get(rs, "resource"), "attributes"), 0),
                "value"),
            "stringValue")),
        "kcqrs-commands");
    spans = json_object_get(json_array_get(json_object_get(rs, "scopeSpans"), 0), "spans");
    assert_int_equal(json_array_size(spans), 2);
    sp = json_array_get(spans, 0);
    assert_string_equal(json_string_value(json_object_get(sp, "traceId")),
                        "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(json_string_value(json_object_get(sp, "parentSpanId")), "00f067aa0ba902b7");
    assert_int_equal(strlen(json_string_value(json_object_get(sp, "spanId"))), 16);
    assert_int_equal(json_integer_value(json_object_get(sp, "kind")), 2);
    assert_string_equal(json_string_value(json_object_get(sp, "startTimeUnixNano")),
                        "1700000000123456789");
    assert_string_equal(json_string_value(json_object_get(sp, "endTimeUnixNano")),
                        "1700000000223456789");
    assert_string_equal(
        json_string_value(json_object_get(attr_of(sp, "http.route"), "stringValue")),
        "hook \"quoted\"");
    assert_string_equal(
        json_string_value(json_object_get(attr_of(sp, "http.response.status_code"), "intValue")),
        "202");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(sp, "status"), "code")), 2);
    sp = json_array_get(spans, 1);
    assert_null(json_object_get(sp, "parentSpanId"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(sp, "status"), "code")), 0);
    json_decref(root);
    free(body);
}

static void test_export_start_refuses(void **state)
{
    char err[256];

    (void)state;
    assert_int_equal(kq_trace_export_start("ftp://x", "s", 10, err, sizeof err), KQ_EINVAL);
    assert_non_null(strstr(err, "KCQRS_OTLP_ENDPOINT"));
    assert_int_equal(kq_trace_export_start("http://127.0.0.1:1", "s", 0, err, sizeof err),
                     KQ_EINVAL);
    assert_false(kq_trace_exporting());
}

static void test_export_to_receiver(void **state)
{
    char err[256], url[128], path[160];
    kq_trace_stats st;
    size_t nspans = 0, nposts;
    kq_span s;

    (void)state;
    assert_int_equal(recv_start(), 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/status/200/", recv_port);
    assert_int_equal(kq_trace_export_start(url, "kcqrs-test", 4096, err, sizeof err), 0);
    assert_true(kq_trace_exporting());
    for (int i = 0; i < 1200; i++) { /* more than two batches */
        kq_span_start(&s, NULL, KQ_SPAN_INTERNAL, "work");
        kq_span_attr_int(&s, "i", i);
        kq_span_end(&s);
    }
    kq_trace_export_stop(); /* sends what is queued */
    assert_false(kq_trace_exporting());
    st = kq_trace_stats_get();
    assert_int_equal(st.exported, 1200);
    assert_int_equal(st.dropped_full + st.dropped_failed, 0);
    nposts = recv_count();
    assert_true(nposts >= 3); /* at most KQ_TRACE_BATCH spans per request */
    snprintf(path, sizeof path, "/status/200/v1/traces");
    for (size_t i = 0; i < nposts; i++) {
        json_error_t je;
        json_t *root, *spans;
        assert_string_equal(recv_log[i].method, "POST");
        assert_string_equal(recv_log[i].path, path);
        assert_string_equal(recv_log[i].ctype, "application/json");
        root = json_loadb(recv_log[i].body, recv_log[i].len, 0, &je);
        assert_non_null(root);
        spans = json_object_get(
            json_array_get(
                json_object_get(json_array_get(json_object_get(root, "resourceSpans"), 0),
                                "scopeSpans"),
                0),
            "spans");
        assert_true(json_array_size(spans) >= 1 && json_array_size(spans) <= KQ_TRACE_BATCH);
        nspans += json_array_size(spans);
        json_decref(root);
    }
    assert_int_equal(nspans, 1200);
    recv_stop();
}

static void test_export_failures_counted(void **state)
{
    char err[256];
    kq_trace_stats st;
    kq_span s;

    (void)state;
    /* nothing listens on port 1: the batch fails, is counted, the caller never waits */
    assert_int_equal(kq_trace_export_start("http://127.0.0.1:1", "t", 2, err, sizeof err), 0);
    for (int i = 0; i < 500; i++) {
        kq_span_start(&s, NULL, KQ_SPAN_INTERNAL, "x");
        kq_span_end(&s);
    }
    kq_trace_export_stop();
    st = kq_trace_stats_get();
    assert_int_equal(st.exported, 0);
    assert_int_equal(st.dropped_full + st.dropped_failed, 500);
    assert_true(st.dropped_full >= 400); /* a queue of 2 spans could not hold them */
    /* not exporting: kq_span_end queues nothing */
    kq_span_start(&s, NULL, KQ_SPAN_INTERNAL, "x");
    kq_span_end(&s);
    assert_int_equal(kq_trace_stats_get().dropped_full, st.dropped_full);
}

/* A token in the endpoint's user-info is sent, never logged (start and failure lines). */
static void test_export_log_hides_userinfo(void **state)
{
    char err[256], text[4096];
    FILE *f = tmpfile();
    int saved = dup(2);
    kq_span s;
    size_t n;

    (void)state;
    assert_non_null(f);
    assert_true(saved >= 0);
    kq_log_flush();
    assert_int_equal(dup2(fileno(f), 2), 2);
    assert_int_equal(
        kq_trace_export_start("http://alice:s3cr3t-t0k@127.0.0.1:1/otlp", "t", 8, err, sizeof err),
        0);
    kq_span_start(&s, NULL, KQ_SPAN_INTERNAL, "x");
    kq_span_end(&s);
    kq_trace_export_stop();
    kq_log_flush();
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    rewind(f);
    n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    assert_non_null(strstr(text, "to http://127.0.0.1:1/otlp/v1/traces as t"));
    assert_non_null(strstr(text, "trace export to http://127.0.0.1:1/otlp/v1/traces failed"));
    assert_null(strstr(text, "s3cr3t-t0k"));
    assert_null(strstr(text, "alice"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_format_roundtrip),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_new_and_child),
        cmocka_unit_test(test_attrs_bounded),
        cmocka_unit_test(test_attrs_utf8),
        cmocka_unit_test(test_otlp_json),
        cmocka_unit_test(test_export_start_refuses),
        cmocka_unit_test(test_export_to_receiver),
        cmocka_unit_test(test_export_failures_counted),
        cmocka_unit_test(test_export_log_hides_userinfo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
