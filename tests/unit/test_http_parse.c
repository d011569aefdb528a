/*
 * test_http_parse.c — lib/kq_http_parse: the strict HTTP/1.1 request parser.
 *
 * One table row per acceptance or refusal rule of the head parser with the
 * status it must give; every row is also fed one byte at a time and in random
 * pieces, and must give the same answer (and, when accepted, the same head
 * and the same rewritten bytes) as in one piece. The body decoder has its own
 * table, each row fed in two pieces split at every offset and one byte at a
 * time; the wire cap is checked against a stream of chunks with 60,000-byte
 * extensions. The percent-decoder has its own accept/refuse table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kq_err.h"
#include "kq_http_parse.h"

/* ---------------------------------------------------------------- helpers */

/* Parse in[0..len) in one piece, in an exact-size copy (ASan sees reads past the end). */
typedef struct parsed {
    int rc;
    char *buf; /* the rewritten copy (owned) */
    size_t len;
    kq_hp_head h;
    char err[256];
} parsed;

static void parse_once(const char *in, size_t len, const kq_hp_limits *lim, parsed *p)
{
    size_t scan = 0;
    p->buf = malloc(len ? len : 1);
    assert_non_null(p->buf);
    memcpy(p->buf, in, len);
    p->len = len;
    p->err[0] = '\0';
    p->rc = kq_hp_head_parse(p->buf, len, lim, &p->h, &scan, p->err, sizeof p->err);
}

/* The offset of s in buf, or -1 for NULL (pointers of two parses compare by offset). */
static long off(const char *s, const char *buf)
{
    return s ? (long)(s - buf) : -1;
}

static void assert_same_head(const parsed *a, const parsed *b)
{
    assert_int_equal(a->rc, b->rc);
    if (a->rc <= 0)
        return;
    assert_memory_equal(a->buf, b->buf, (size_t)a->rc);
    assert_int_equal(off(a->h.method, a->buf), off(b->h.method, b->buf));
    assert_int_equal(off(a->h.path, a->buf), off(b->h.path, b->buf));
    assert_int_equal(a->h.path_len, b->h.path_len);
    assert_int_equal(a->h.target_len, b->h.target_len);
    assert_int_equal(a->h.minor, b->h.minor);
    assert_int_equal(a->h.nheaders, b->h.nheaders);
    for (unsigned i = 0; i < a->h.nheaders; i++) {
        assert_int_equal(off(a->h.headers[i].name, a->buf), off(b->h.headers[i].name, b->buf));
        assert_int_equal(off(a->h.headers[i].value, a->buf), off(b->h.headers[i].value, b->buf));
    }
    assert_int_equal(a->h.nparams, b->h.nparams);
    for (unsigned i = 0; i < a->h.nparams; i++) {
        assert_int_equal(off(a->h.params[i].name, a->buf), off(b->h.params[i].name, b->buf));
        assert_int_equal(off(a->h.params[i].value, a->buf), off(b->h.params[i].value, b->buf));
    }
    assert_int_equal(a->h.framing, b->h.framing);
    assert_true(a->h.content_length == b->h.content_length);
    assert_int_equal(a->h.keep_alive, b->h.keep_alive);
    assert_int_equal(a->h.expect_continue, b->h.expect_continue);
    assert_int_equal(off(a->h.host, a->buf), off(b->h.host, b->buf));
}

/*
 * Feed in[0..len) growing by the piece sizes the generator gives (step 0 =
 * one byte at a time, else pseudo-random pieces of 1..step bytes seeded by
 * `seed`), each call on an exact-size copy of the bytes so far. Checks that
 * the bytes so far are untouched while the answer is 0.
 */
static void parse_pieces(const char *in, size_t len, const kq_hp_limits *lim, size_t step,
                         unsigned seed, parsed *p)
{
    size_t scan = 0, have = 0;
    p->buf = NULL;
    p->len = len;
    p->rc = 0;
    while (p->rc == 0 && have < len) {
        size_t piece = 1;
        if (step > 0) {
            seed = seed * 1103515245u + 12345u;
            piece = 1 + (seed >> 8) % step;
        }
        have = have + piece > len ? len : have + piece;
        free(p->buf);
        p->buf = malloc(have);
        assert_non_null(p->buf);
        memcpy(p->buf, in, have);
        p->err[0] = '\0';
        p->rc = kq_hp_head_parse(p->buf, have, lim, &p->h, &scan, p->err, sizeof p->err);
        if (p->rc == 0)
            assert_memory_equal(p->buf, in, have);
    }
    if (p->buf == NULL)
        p->buf = malloc(1);
}

/* ---------------------------------------------------------------- the head table */

typedef struct head_row {
    const char *name;
    const char *req;
    size_t len;
    int status;        /* 0 = accepted, else the refusal's HTTP status */
    size_t tail;       /* accepted: bytes after the head (body, next request) */
    size_t max_target; /* limit overrides; 0 = default */
    unsigned max_params;
    size_t max_head;
    unsigned max_headers;
} head_row;

#define REQ(s) .req = s, .len = sizeof(s) - 1
#define BODY(s) .in = s, .len = sizeof(s) - 1
#define H11 " HTTP/1.1\r\nHost: h\r\n"

static const head_row head_rows[] = {
    /* accepted */
    {.name = "simple GET", REQ("GET / HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "HTTP/1.0 without Host", REQ("GET /x HTTP/1.0\r\n\r\n")},
    {.name = "two leading empty lines skipped", REQ("\r\n\r\nGET /" H11 "\r\n")},
    {.name = "KQ_HP_MAX_EMPTY leading empty lines", REQ("\r\n\r\n\r\n\r\nGET /" H11 "\r\n")},
    {.name = "pipelined bytes after the head are not consumed",
     REQ("GET /" H11 "\r\nGET /" H11 "\r\n"),
     .tail = sizeof("GET /" H11 "\r\n") - 1},
    {.name = "body after the head", REQ("POST /p" H11 "Content-Length: 3\r\n\r\nabc"), .tail = 3},
    {.name = "percent-escapes decoded in the path", REQ("GET /a%20b%2Fc+d%e2%82%AC" H11 "\r\n")},
    {.name = "query parameters", REQ("GET /?x=1&y&&z=%41+b&=v&" H11 "\r\n")},
    {.name = "Content-Length with leading zeros",
     REQ("POST /" H11 "Content-Length: 0005\r\n\r\n12345"),
     .tail = 5},
    {.name = "Content-Length 2^63-1",
     REQ("POST /" H11 "Content-Length: 9223372036854775807\r\n\r\n")},
    {.name = "Transfer-Encoding chunked (any case)",
     REQ("POST /" H11 "Transfer-Encoding: Chunked\r\n\r\n")},
    {.name = "Expect 100-continue",
     REQ("POST /" H11 "Expect: 100-Continue\r\nContent-Length: 1\r\n\r\n")},
    {.name = "header value with HTAB, obs-text and OWS",
     REQ("GET /" H11 "X-A: \t a\tb \xe9\xff \t\r\n\r\n")},
    {.name = "empty header value", REQ("GET /" H11 "X-Empty:\r\n\r\n")},
    {.name = "empty Host value", REQ("GET / HTTP/1.1\r\nHost:\r\n\r\n")},
    {.name = "IPv6 Host with port", REQ("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n")},
    {.name = "method at KQ_HP_MAX_METHOD bytes",
     REQ("ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEF /" H11 "\r\n")},
    {.name = "target at exactly max_target",
     REQ("GET /234567890123456" H11 "\r\n"),
     .max_target = 16},
    {.name = "params at exactly max_params", REQ("GET /?a&b&c" H11 "\r\n"), .max_params = 3},
    {.name = "headers at exactly max_headers", REQ("GET /" H11 "A: 1\r\n\r\n"), .max_headers = 2},
    {.name = "head at exactly max_head",
     REQ("GET /" H11 "\r\n"),
     .max_head = sizeof("GET /" H11 "\r\n") - 1},

    /* 400: line ends */
    {.name = "bare LF ending the request line",
     REQ("GET / HTTP/1.1\nHost: h\r\n\r\n"),
     .status = 400},
    {.name = "bare LF ending a header line", REQ("GET / HTTP/1.1\r\nHost: h\n\r\n"), .status = 400},
    {.name = "bare LF as the empty line", REQ("GET /" H11 "\n"), .status = 400},
    {.name = "CR without LF in a header line", REQ("GET /" H11 "X: a\rb\r\n\r\n"), .status = 400},
    {.name = "CR without LF in the request line",
     REQ("GET / HTTP/1.1\rX\r\nHost: h\r\n\r\n"),
     .status = 400},
    {.name = "bare LF before the request line", REQ("\nGET /" H11 "\r\n"), .status = 400},
    {.name = "more than KQ_HP_MAX_EMPTY leading empty lines",
     REQ("\r\n\r\n\r\n\r\n\r\nGET /" H11 "\r\n"),
     .status = 400},
    /* 400: request line */
    {.name = "garbage request line", REQ("GARBAGE\r\n\r\n"), .status = 400},
    {.name = "method not a token", REQ("G(T /" H11 "\r\n"), .status = 400},
    {.name = "empty method", REQ(" /" H11 "\r\n"), .status = 400},
    {.name = "two spaces after the method", REQ("GET  /" H11 "\r\n"), .status = 400},
    {.name = "two spaces before the version",
     REQ("GET /  HTTP/1.1\r\nHost: h\r\n\r\n"),
     .status = 400},
    {.name = "absolute-form target", REQ("GET http://h/x" H11 "\r\n"), .status = 400},
    {.name = "asterisk-form target", REQ("OPTIONS *" H11 "\r\n"), .status = 400},
    {.name = "target without a leading slash", REQ("GET x" H11 "\r\n"), .status = 400},
    {.name = "fragment in the target", REQ("GET /a#b" H11 "\r\n"), .status = 400},
    {.name = "raw non-ASCII byte in the target", REQ("GET /a\xc3\xa9" H11 "\r\n"), .status = 400},
    {.name = "raw control byte in the target", REQ("GET /a\x01" H11 "\r\n"), .status = 400},
    {.name = "HTAB in the target", REQ("GET /a\tb" H11 "\r\n"), .status = 400},
    {.name = "%00 in the path", REQ("GET /api/v1/resources/x%00zzz" H11 "\r\n"), .status = 400},
    {.name = "%00 in a query value", REQ("GET /?a=%00" H11 "\r\n"), .status = 400},
    {.name = "%00 in a query name", REQ("GET /?%00=1" H11 "\r\n"), .status = 400},
    {.name = "escaped LF in the path", REQ("GET /a%0a" H11 "\r\n"), .status = 400},
    {.name = "escaped DEL in the path", REQ("GET /a%7F" H11 "\r\n"), .status = 400},
    {.name = "escaped ESC in a query value", REQ("GET /?n=%1b" H11 "\r\n"), .status = 400},
    {.name = "bad hex in an escape", REQ("GET /a%zz" H11 "\r\n"), .status = 400},
    {.name = "second digit of an escape not hex", REQ("GET /a%4g" H11 "\r\n"), .status = 400},
    {.name = "escape cut by the end of the target", REQ("GET /a%4" H11 "\r\n"), .status = 400},
    {.name = "lone percent in the query", REQ("GET /?a=%" H11 "\r\n"), .status = 400},
    /* 400 / 505: version */
    {.name = "version with trailing garbage",
     REQ("GET / HTTP/1.1x\r\nHost: h\r\n\r\n"),
     .status = 400},
    {.name = "lower-case version", REQ("GET / http/1.1\r\nHost: h\r\n\r\n"), .status = 400},
    {.name = "version without minor", REQ("GET / HTTP/1\r\nHost: h\r\n\r\n"), .status = 400},
    {.name = "two-digit minor", REQ("GET / HTTP/1.10\r\nHost: h\r\n\r\n"), .status = 400},
    {.name = "missing version", REQ("GET /\r\nHost: h\r\n\r\n"), .status = 400},
    {.name = "HTTP/2.0", REQ("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), .status = 505},
    {.name = "HTTP/1.2", REQ("GET / HTTP/1.2\r\nHost: h\r\n\r\n"), .status = 505},
    {.name = "HTTP/0.9", REQ("GET / HTTP/0.9\r\n\r\n"), .status = 505},
    /* 400: header lines */
    {.name = "obs-fold", REQ("GET /" H11 "X-A: a\r\n b\r\n\r\n"), .status = 400},
    {.name = "whitespace before the first header",
     REQ("GET / HTTP/1.1\r\n Host: h\r\n\r\n"),
     .status = 400},
    {.name = "whitespace before a colon", REQ("GET /" H11 "X-A : a\r\n\r\n"), .status = 400},
    {.name = "header name not a token", REQ("GET /" H11 "X@A: a\r\n\r\n"), .status = 400},
    {.name = "empty header name", REQ("GET /" H11 ": a\r\n\r\n"), .status = 400},
    {.name = "header line without a colon", REQ("GET /" H11 "X-A\r\n\r\n"), .status = 400},
    {.name = "control byte in a header value",
     REQ("GET /" H11 "X-A: a\x01\r\n\r\n"),
     .status = 400},
    {.name = "DEL in a header value", REQ("GET /" H11 "X-A: a\x7f\r\n\r\n"), .status = 400},
    {.name = "NUL in a header value", REQ("GET /" H11 "X-A: a\0b\r\n\r\n"), .status = 400},
    {.name = "ESC in a header value", REQ("GET /" H11 "X-A: \x1b[31m\r\n\r\n"), .status = 400},
    /* 400: Host */
    {.name = "HTTP/1.1 without Host", REQ("GET / HTTP/1.1\r\n\r\n"), .status = 400},
    {.name = "HTTP/1.1 with two Host", REQ("GET /" H11 "Host: h\r\n\r\n"), .status = 400},
    {.name = "HTTP/1.0 with two Host",
     REQ("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"),
     .status = 400},
    {.name = "Host with a space inside", REQ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), .status = 400},
    {.name = "Host with a slash", REQ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), .status = 400},
    /* 400: Content-Length */
    {.name = "two equal Content-Length",
     REQ("POST /" H11 "Content-Length: 1\r\nContent-Length: 1\r\n\r\nx"),
     .status = 400},
    {.name = "two different Content-Length",
     REQ("POST /" H11 "Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx"),
     .status = 400},
    {.name = "Content-Length list",
     REQ("POST /" H11 "Content-Length: 1, 1\r\n\r\nx"),
     .status = 400},
    {.name = "negative Content-Length",
     REQ("POST /" H11 "Content-Length: -5\r\n\r\n"),
     .status = 400},
    {.name = "Content-Length with a sign",
     REQ("POST /" H11 "Content-Length: +5\r\n\r\n"),
     .status = 400},
    {.name = "Content-Length not a number",
     REQ("POST /" H11 "Content-Length: abc\r\n\r\n"),
     .status = 400},
    {.name = "empty Content-Length", REQ("POST /" H11 "Content-Length:\r\n\r\n"), .status = 400},
    {.name = "Content-Length 2^63",
     REQ("POST /" H11 "Content-Length: 9223372036854775808\r\n\r\n"),
     .status = 400},
    {.name = "Content-Length 2^64",
     REQ("POST /" H11 "Content-Length: 18446744073709551616\r\n\r\n"),
     .status = 400},
    {.name = "Content-Length hex", REQ("POST /" H11 "Content-Length: 0x10\r\n\r\n"), .status = 400},
    /* 400 / 501: Transfer-Encoding */
    {.name = "Transfer-Encoding with Content-Length",
     REQ("POST /" H11 "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
     .status = 400},
    {.name = "Content-Length then Transfer-Encoding",
     REQ("POST /" H11 "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
     .status = 400},
    {.name = "Transfer-Encoding on HTTP/1.0",
     REQ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
     .status = 400},
    {.name = "two Transfer-Encoding",
     REQ("POST /" H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
     .status = 400},
    {.name = "Transfer-Encoding gzip",
     REQ("POST /" H11 "Transfer-Encoding: gzip\r\n\r\n"),
     .status = 501},
    {.name = "Transfer-Encoding xchunked",
     REQ("POST /" H11 "Transfer-Encoding: xchunked\r\n\r\n"),
     .status = 501},
    {.name = "Transfer-Encoding gzip, chunked",
     REQ("POST /" H11 "Transfer-Encoding: gzip, chunked\r\n\r\n"),
     .status = 501},
    {.name = "Transfer-Encoding chunked, chunked",
     REQ("POST /" H11 "Transfer-Encoding: chunked, chunked\r\n\r\n"),
     .status = 501},
    /* 501, 417 */
    {.name = "method longer than KQ_HP_MAX_METHOD",
     REQ("ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFG /" H11 "\r\n"),
     .status = 501},
    {.name = "Expect other than 100-continue",
     REQ("POST /" H11 "Expect: 200-ok\r\n\r\n"),
     .status = 417},
    /* 414, 431: limits */
    {.name = "target one byte over max_target",
     REQ("GET /2345678901234567" H11 "\r\n"),
     .status = 414,
     .max_target = 16},
    {.name = "target over max_target, line unfinished",
     REQ("GET /23456789012345678901234"),
     .status = 414,
     .max_target = 16},
    {.name = "escape crossing max_target",
     REQ("GET /23456789012345%41" H11 "\r\n"),
     .status = 414,
     .max_target = 16},
    {.name = "params over max_params",
     REQ("GET /?a&b&c&d" H11 "\r\n"),
     .status = 414,
     .max_params = 3},
    {.name = "~1,000 query parameters (7 KB URL)", .status = 414},
    {.name = "headers over max_headers",
     REQ("GET /" H11 "A: 1\r\nB: 2\r\n\r\n"),
     .status = 431,
     .max_headers = 2},
    {.name = "head one byte over max_head",
     REQ("GET /" H11 "\r\n"),
     .status = 431,
     .max_head = sizeof("GET /" H11 "\r\n") - 2},
    {.name = "head over max_head, unfinished",
     REQ("GET /" H11 "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
     .status = 431,
     .max_head = 32},
    {.name = "bad byte before max_head wins over 431",
     REQ("G(T /" H11 "X-Long: aaaaaaaaaaaaaaaaaaaaaaaa"),
     .status = 400,
     .max_head = 8},
};
#define NHEAD (sizeof head_rows / sizeof head_rows[0])

/* The row's request bytes (the 1,000-parameter row is built here); caller frees. */
static char *row_bytes(const head_row *r, size_t *len)
{
    char *s;
    if (r->req != NULL) {
        s = malloc(r->len + 1);
        assert_non_null(s);
        memcpy(s, r->req, r->len + 1);
        *len = r->len;
        return s;
    }
    s = malloc(16384);
    assert_non_null(s);
    *len = (size_t)sprintf(s, "GET /api/v1/resources?");
    for (int i = 0; i < 1000; i++)
        *len += (size_t)sprintf(s + *len, "p%d=v&", i % 100);
    *len += (size_t)sprintf(s + *len, H11 "\r\n");
    return s;
}

static kq_hp_limits row_limits(const head_row *r)
{
    kq_hp_limits l = kq_hp_limits_default();
    if (r->max_target)
        l.max_target = r->max_target;
    if (r->max_params)
        l.max_params = r->max_params;
    if (r->max_head)
        l.max_head = r->max_head;
    if (r->max_headers)
        l.max_headers = r->max_headers;
    return l;
}

static void test_head_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < NHEAD; i++) {
        const head_row *r = &head_rows[i];
        kq_hp_limits l = row_limits(r);
        size_t len;
        char *in = row_bytes(r, &len);
        parsed one;

        parse_once(in, len, &l, &one);
        if ((r->status == 0 && one.rc != (int)(len - r->tail)) ||
            (r->status != 0 && one.rc != -r->status)) {
            fail_msg("row '%s': got %d (%s), want %d", r->name, one.rc, one.err,
                     r->status ? -r->status : (int)(len - r->tail));
        }
        if (r->status != 0 && one.err[0] == '\0')
            fail_msg("row '%s': refused without a reason", r->name);
        if (r->status == 0 && r->tail > 0)
            assert_memory_equal(one.buf + one.rc, in + one.rc, r->tail);
        free(one.buf);
        free(in);
    }
}

/* Every row: one byte at a time and in random pieces == one piece. */
static void test_head_incremental(void **state)
{
    (void)state;
    for (size_t i = 0; i < NHEAD; i++) {
        const head_row *r = &head_rows[i];
        kq_hp_limits l = row_limits(r);
        size_t len;
        char *in = row_bytes(r, &len);
        parsed one, bytes;

        parse_once(in, len, &l, &one);
        parse_pieces(in, len, &l, 0, 0, &bytes);
        if (bytes.rc != one.rc)
            fail_msg("row '%s': byte by byte %d (%s), in one piece %d (%s)", r->name, bytes.rc,
                     bytes.err, one.rc, one.err);
        assert_same_head(&one, &bytes);
        free(bytes.buf);
        for (unsigned seed = 1; seed <= 20; seed++) {
            parsed pieces;
            parse_pieces(in, len, &l, 1 + seed % 9, seed, &pieces);
            if (pieces.rc != one.rc)
                fail_msg("row '%s' seed %u: in pieces %d, in one piece %d", r->name, seed,
                         pieces.rc, one.rc);
            assert_same_head(&one, &pieces);
            free(pieces.buf);
        }
        free(one.buf);
        free(in);
    }
}

static void test_head_fields(void **state)
{
    static const char req[] = "\r\nGET /a%20b%2Fc+d?x=1&y&&z=%41+b&=v&e= HTTP/1.1\r\n"
                              "Host: example.org:8080\r\n"
                              "X-Spaces: \t one two \t\r\n"
                              "Connection: Upgrade, close\r\n"
                              "Expect: 100-continue\r\n"
                              "Content-Length: 42\r\n"
                              "\r\n";
    parsed p;

    (void)state;
    parse_once(req, sizeof req - 1, NULL, &p);
    assert_int_equal(p.rc, (int)sizeof req - 1);
    assert_string_equal(p.h.method, "GET");
    assert_string_equal(p.h.path, "/a b/c+d");
    assert_int_equal(p.h.path_len, 8);
    assert_int_equal(p.h.target_len, strlen("/a%20b%2Fc+d?x=1&y&&z=%41+b&=v&e="));
    assert_int_equal(p.h.minor, 1);
    assert_int_equal(p.h.nparams, 5);
    assert_string_equal(p.h.params[0].name, "x");
    assert_string_equal(p.h.params[0].value, "1");
    assert_string_equal(p.h.params[1].name, "y");
    assert_null(p.h.params[1].value);
    assert_string_equal(p.h.params[2].name, "z");
    assert_string_equal(p.h.params[2].value, "A b");
    assert_string_equal(p.h.params[3].name, "");
    assert_string_equal(p.h.params[3].value, "v");
    assert_string_equal(p.h.params[4].name, "e");
    assert_string_equal(p.h.params[4].value, "");
    assert_int_equal(p.h.nheaders, 5);
    assert_string_equal(p.h.headers[0].name, "Host");
    assert_string_equal(p.h.headers[1].value, "one two");
    assert_string_equal(kq_hp_header(&p.h, "x-spaces"), "one two");
    assert_null(kq_hp_header(&p.h, "x-absent"));
    assert_string_equal(p.h.host, "example.org:8080");
    assert_int_equal(p.h.framing, KQ_HP_BODY_LENGTH);
    assert_true(p.h.content_length == 42);
    assert_int_equal(p.h.keep_alive, 0);
    assert_int_equal(p.h.expect_continue, 1);
    free(p.buf);

    /* keep-alive by version and Connection; Expect ignored on 1.0; chunked framing */
    static const struct {
        const char *req;
        int keep_alive, expect, framing;
        const char *host;
    } ka[] = {
        {"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 1, 0, KQ_HP_BODY_NONE, "h"},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: CLOSE\r\n\r\n", 0, 0, KQ_HP_BODY_NONE, "h"},
        {"GET / HTTP/1.0\r\n\r\n", 0, 0, KQ_HP_BODY_NONE, NULL},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1, 0, KQ_HP_BODY_NONE, NULL},
        {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", 0, 0, KQ_HP_BODY_NONE, NULL},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", 0, 0,
         KQ_HP_BODY_NONE, NULL},
        {"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", 0, 0,
         KQ_HP_BODY_LENGTH, NULL},
        {"POST / HTTP/1.1\r\nHost: \r\nTransfer-Encoding: chunked\r\n\r\n", 1, 0,
         KQ_HP_BODY_CHUNKED, ""},
    };
    for (size_t i = 0; i < sizeof ka / sizeof ka[0]; i++) {
        parse_once(ka[i].req, strlen(ka[i].req), NULL, &p);
        assert_int_equal(p.rc, (int)strlen(ka[i].req));
        assert_int_equal(p.h.keep_alive, ka[i].keep_alive);
        assert_int_equal(p.h.expect_continue, ka[i].expect);
        assert_int_equal(p.h.framing, ka[i].framing);
        if (ka[i].host)
            assert_string_equal(p.h.host, ka[i].host);
        else
            assert_null(p.h.host);
        free(p.buf);
    }
}

/* NULL limits are the defaults; limits above the arrays' sizes are clamped. */
static void test_head_limits(void **state)
{
    kq_hp_limits d = kq_hp_limits_default(), big = d;
    char req[20000];
    size_t len;
    parsed p;

    (void)state;
    assert_int_equal(d.max_target, 8192);
    assert_int_equal(d.max_params, 64);
    assert_int_equal(d.max_head, 16384);
    assert_int_equal(d.max_headers, 64);
    assert_int_equal(d.max_chunk_line, 256);
    assert_int_equal(d.max_trailers, 4096);

    /* 65 parameters: over the default, and over KQ_HP_MAX_PARAMS even when allowed more */
    len = (size_t)sprintf(req, "GET /?");
    for (int i = 0; i < KQ_HP_MAX_PARAMS + 1; i++)
        len += (size_t)sprintf(req + len, "a=%d&", i);
    len += (size_t)sprintf(req + len, H11 "\r\n");
    parse_once(req, len, NULL, &p);
    assert_int_equal(p.rc, -414);
    free(p.buf);
    big.max_params = 1000;
    big.max_headers = 1000;
    parse_once(req, len, &big, &p);
    assert_int_equal(p.rc, -414);
    free(p.buf);

    /* 65 header fields */
    len = (size_t)sprintf(req, "GET /" H11);
    for (int i = 0; i < KQ_HP_MAX_HEADERS; i++)
        len += (size_t)sprintf(req + len, "X-%d: v\r\n", i);
    len += (size_t)sprintf(req + len, "\r\n");
    parse_once(req, len, &big, &p);
    assert_int_equal(p.rc, -431);
    free(p.buf);

    /* a 8193-byte target with the defaults: 414 */
    len = (size_t)sprintf(req, "GET /");
    memset(req + len, 'a', 8192);
    len += 8192;
    len += (size_t)sprintf(req + len, H11 "\r\n");
    parse_once(req, len, NULL, &p);
    assert_int_equal(p.rc, -414);
    free(p.buf);
    parse_once(req, 8192 + 4, NULL, &p); /* "GET " + 8192 target bytes: not refused yet */
    assert_int_equal(p.rc, 0);
    free(p.buf);
    parse_once(req, 8192 + 5, NULL, &p);
    assert_int_equal(p.rc, -414);
    free(p.buf);

    /* a 16385-byte head: 431, and only after byte 16385 */
    len = (size_t)sprintf(req, "GET /" H11 "X-Big: ");
    memset(req + len, 'b', 16384 - len - 2);
    len = 16384 - 2;
    memcpy(req + len, "\r\n\r\n", 4);
    parse_once(req, 16384, NULL, &p); /* the X-Big line: exactly max_head, no empty line yet */
    assert_int_equal(p.rc, 0);
    free(p.buf);
    parse_once(req, 16385, NULL, &p);
    assert_int_equal(p.rc, -431);
    free(p.buf);
}

/* Bad arguments are refused, never dereferenced. */
static void test_head_args(void **state)
{
    char buf[] = "GET / HTTP/1.0\r\n\r\n";
    kq_hp_head h;
    size_t scan = 0;

    (void)state;
    assert_int_equal(kq_hp_head_parse(NULL, 0, NULL, &h, &scan, NULL, 0), -400);
    assert_int_equal(kq_hp_head_parse(buf, sizeof buf - 1, NULL, NULL, &scan, NULL, 0), -400);
    assert_int_equal(kq_hp_head_parse(buf, sizeof buf - 1, NULL, &h, NULL, NULL, 0), -400);
    assert_int_equal(kq_hp_head_parse(buf, 0, NULL, &h, &scan, NULL, 0), 0);
    assert_int_equal(kq_hp_head_parse(buf, sizeof buf - 1, NULL, &h, &scan, NULL, 0),
                     (int)sizeof buf - 1);
}

/* ---------------------------------------------------------------- percent-decoding */

static void test_pct_decode(void **state)
{
    static const struct {
        const char *in;
        int plus;
        const char *out; /* NULL = refused */
    } rows[] = {
        {"", 0, ""},         {"abc", 0, "abc"},
        {"a%41b", 0, "aAb"}, {"%e2%82%AC", 0, "\xe2\x82\xac"},
        {"a+b", 0, "a+b"},   {"a+b", 1, "a b"},
        {"%2B", 1, "+"},     {"%2F%3f%25", 0, "/?%"},
        {"%20", 0, " "},     {"%00", 0, NULL},
        {"a%00b", 1, NULL},  {"%zz", 0, NULL},
        {"%4", 0, NULL},     {"%", 0, NULL},
        {"a%4g", 0, NULL},   {"%0a", 0, NULL},
        {"%1F", 0, NULL},    {"%7f", 0, NULL},
        {"a\x01", 0, NULL},  {"a\tb", 0, NULL},
        {"a\x7f", 0, NULL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        size_t len = strlen(rows[i].in);
        char *s = malloc(len + 1);
        assert_non_null(s);
        memcpy(s, rows[i].in, len + 1);
        int rc = kq_hp_pct_decode(s, &len, rows[i].plus);
        if (rows[i].out == NULL) {
            if (rc != KQ_EINVAL)
                fail_msg("pct '%s': accepted", rows[i].in);
            assert_int_equal(len, strlen(rows[i].in));
        } else {
            if (rc != 0)
                fail_msg("pct '%s': refused", rows[i].in);
            assert_int_equal(len, strlen(rows[i].out));
            assert_memory_equal(s, rows[i].out, len);
        }
        free(s);
    }
    assert_int_equal(kq_hp_pct_decode(NULL, NULL, 0), KQ_EINVAL);
}

/* ---------------------------------------------------------------- the body table */

typedef struct body_row {
    const char *name;
    const char *in;
    size_t len;
    int chunked;                         /* else Content-Length cl */
    uint64_t cl;                         /* Content-Length */
    int status;                          /* 0 = accepted, else the refusal's status */
    const char *want;                    /* accepted: the payload */
    size_t tail;                         /* accepted: bytes after the body (not consumed) */
    uint64_t max_body, max_wire;         /* 0 = 1000 / 4000 */
    size_t max_chunk_line, max_trailers; /* 0 = default */
} body_row;

static const body_row body_rows[] = {
    {.name = "one chunk", BODY("5\r\nhello\r\n0\r\n\r\n"), .chunked = 1, .want = "hello"},
    {.name = "two chunks and a next request",
     BODY("5\r\nhello\r\n1\r\n!\r\n0\r\n\r\nGET"),
     .chunked = 1,
     .want = "hello!",
     .tail = 3},
    {.name = "upper and lower hex",
     BODY("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n"),
     .chunked = 1,
     .want = "0123456789abcdefghij"},
    {.name = "leading zeros in the size",
     BODY("005\r\nhello\r\n000\r\n\r\n"),
     .chunked = 1,
     .want = "hello"},
    {.name = "extensions",
     BODY("5;a=b;c=\"q d\"\r\nhello\r\n0;last\r\n\r\n"),
     .chunked = 1,
     .want = "hello"},
    {.name = "whitespace before an extension",
     BODY("5 \t;a\r\nhello\r\n0\r\n\r\n"),
     .chunked = 1,
     .want = "hello"},
    {.name = "trailers",
     BODY("5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-B:\t2 \r\n\r\n"),
     .chunked = 1,
     .want = "hello"},
    {.name = "empty chunked body", BODY("0\r\n\r\n"), .chunked = 1, .want = ""},
    {.name = "binary payload with CR and LF",
     BODY("4\r\n\r\n\0\n\r\n0\r\n\r\n"),
     .chunked = 1,
     .want = "\r\n\0\n"},
    {.name = "payload at exactly max_body",
     BODY("5\r\nhello\r\n0\r\n\r\n"),
     .chunked = 1,
     .want = "hello",
     .max_body = 5},
    {.name = "wire at exactly max_wire",
     BODY("5\r\nhello\r\n0\r\n\r\n"),
     .chunked = 1,
     .want = "hello",
     .max_wire = sizeof("5\r\nhello\r\n0\r\n\r\n") - 1},
    {.name = "Content-Length body and a next request",
     BODY("helloGET"),
     .cl = 5,
     .want = "hello",
     .tail = 3},

    {.name = "size not hex", BODY("g\r\nhello\r\n0\r\n\r\n"), .chunked = 1, .status = 400},
    {.name = "negative size", BODY("-1\r\nx\r\n0\r\n\r\n"), .chunked = 1, .status = 400},
    {.name = "empty size", BODY("\r\nhello\r\n0\r\n\r\n"), .chunked = 1, .status = 400},
    {.name = "16 hex digits",
     BODY("0000000000000001\r\nx\r\n0\r\n\r\n"),
     .chunked = 1,
     .status = 400,
     .max_body = UINT64_MAX,
     .max_wire = UINT64_MAX},
    {.name = "size overflowing 64 bits",
     BODY("10000000000000000\r\nx\r\n0\r\n\r\n"),
     .chunked = 1,
     .status = 400,
     .max_body = UINT64_MAX,
     .max_wire = UINT64_MAX},
    {.name = "whitespace after the size without ';'",
     BODY("5 \r\nhello\r\n0\r\n\r\n"),
     .chunked = 1,
     .status = 400},
    {.name = "garbage after the size",
     BODY("5x\r\nhello\r\n0\r\n\r\n"),
     .chunked = 1,
     .status = 400},
    {.name = "bare LF after the size", BODY("5\nhello\r\n0\r\n\r\n"), .chunked = 1, .status = 400},
    {.name = "CR without LF after the size",
     BODY("5\rhello\r\n0\r\n\r\n"),
     .chunked = 1,
     .status = 400},
    {.name = "control byte in an extension",
     BODY("5;a\x01\r\nhello\r\n0\r\n\r\n"),
     .chunked = 1,
     .status = 400},
    {.name = "bare LF in an extension",
     BODY("5;a\nhello\r\n0\r\n\r\n"),
     .chunked = 1,
     .status = 400},
    {.name = "chunk line over max_chunk_line",
     BODY("5;aaaaaaaaaa\r\nhello\r\n0\r\n\r\n"),
     .chunked = 1,
     .status = 400,
     .max_chunk_line = 13},
    {.name = "data longer than its size",
     BODY("5\r\nhello!\r\n0\r\n\r\n"),
     .chunked = 1,
     .status = 400},
    {.name = "data followed by bare LF",
     BODY("5\r\nhello\n0\r\n\r\n"),
     .chunked = 1,
     .status = 400},
    {.name = "trailer obs-fold", BODY("0\r\nX: a\r\n b\r\n\r\n"), .chunked = 1, .status = 400},
    {.name = "trailer without a colon", BODY("0\r\nX\r\n\r\n"), .chunked = 1, .status = 400},
    {.name = "trailer name with a space", BODY("0\r\nX : a\r\n\r\n"), .chunked = 1, .status = 400},
    {.name = "control byte in a trailer",
     BODY("0\r\nX: \x01\r\n\r\n"),
     .chunked = 1,
     .status = 400},
    {.name = "bare LF ending a trailer", BODY("0\r\nX: a\n\r\n"), .chunked = 1, .status = 400},
    {.name = "bare LF as the final line", BODY("0\r\n\n"), .chunked = 1, .status = 400},
    {.name = "CR without LF as the final line", BODY("0\r\n\rx"), .chunked = 1, .status = 400},
    {.name = "trailers over max_trailers",
     BODY("0\r\nX-A: 12345678\r\n\r\n"),
     .chunked = 1,
     .status = 431,
     .max_trailers = 12},
    {.name = "payload over max_body",
     BODY("5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n"),
     .chunked = 1,
     .status = 413,
     .max_body = 5},
    {.name = "one chunk over max_body",
     BODY("6\r\nhello!\r\n0\r\n\r\n"),
     .chunked = 1,
     .status = 413,
     .max_body = 5},
    {.name = "wire over max_wire",
     BODY("5\r\nhello\r\n0\r\n\r\n"),
     .chunked = 1,
     .status = 413,
     .max_wire = sizeof("5\r\nhello\r\n0\r\n\r\n") - 2},
    {.name = "extensions over max_wire",
     BODY("1;aaaaaaaaaaaaaaaaaaaa\r\nx\r\n0\r\n\r\n"),
     .chunked = 1,
     .status = 413,
     .max_wire = 20},
    {.name = "Content-Length over max_wire", BODY("hello"), .cl = 5, .status = 413, .max_wire = 4},
};
#define NBODY (sizeof body_rows / sizeof body_rows[0])

typedef struct fed {
    int rc;
    size_t used; /* total bytes taken */
    char out[2048];
    size_t outlen;
    uint64_t wire;
} fed;

static void body_start(const body_row *r, kq_hp_body *b, int *rc)
{
    kq_hp_head h;
    kq_hp_limits l = kq_hp_limits_default();
    char err[128];

    memset(&h, 0, sizeof h);
    h.framing = r->chunked ? KQ_HP_BODY_CHUNKED : KQ_HP_BODY_LENGTH;
    h.content_length = r->cl;
    if (r->max_chunk_line)
        l.max_chunk_line = r->max_chunk_line;
    if (r->max_trailers)
        l.max_trailers = r->max_trailers;
    *rc = kq_hp_body_init(b, &h, &l, r->max_body ? r->max_body : 1000,
                          r->max_wire ? r->max_wire : 4000, err, sizeof err);
}

/* Feed r->in split at the offsets in cuts[0..ncuts) (increasing), each piece an exact copy. */
static void body_feed(const body_row *r, const size_t *cuts, size_t ncuts, fed *f)
{
    kq_hp_body b;
    size_t at = 0;
    char err[128];

    memset(f, 0, sizeof *f);
    body_start(r, &b, &f->rc);
    assert_int_equal(f->rc, 0);
    for (size_t k = 0; k <= ncuts && f->rc == 0; k++) {
        size_t end = k < ncuts ? cuts[k] : r->len, used = 0;
        char *piece;
        if (end < at)
            continue;
        piece = malloc(end - at ? end - at : 1);
        assert_non_null(piece);
        memcpy(piece, r->in + at, end - at);
        err[0] = '\0';
        f->rc = kq_hp_body_feed(&b, piece, end - at, &used, f->out, sizeof f->out, &f->outlen, err,
                                sizeof err);
        free(piece);
        assert_true(used <= end - at);
        if (f->rc < 0)
            assert_true(err[0] != '\0');
        if (f->rc == 0)
            assert_int_equal(used, end - at); /* out never fills in this table */
        f->used += used;
        at = end;
    }
    f->wire = b.wire;
    assert_true(f->wire == f->used);
    assert_true(b.payload == f->outlen);
}

static size_t want_len(const body_row *r)
{
    /* the binary row holds a NUL: its payload is 4 bytes */
    return strcmp(r->name, "binary payload with CR and LF") == 0 ? 4 : strlen(r->want);
}

static void test_body_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < NBODY; i++) {
        const body_row *r = &body_rows[i];
        fed one, two;

        body_feed(r, NULL, 0, &one);
        if (r->status != 0) {
            if (one.rc != -r->status)
                fail_msg("body row '%s': got %d, want %d", r->name, one.rc, -r->status);
            /* refused within the wire cap */
            assert_true(one.used <= (r->max_wire ? r->max_wire : 4000));
        } else {
            if (one.rc != 1)
                fail_msg("body row '%s': got %d, want the end", r->name, one.rc);
            assert_int_equal(one.used, r->len - r->tail);
            assert_int_equal(one.outlen, want_len(r));
            assert_memory_equal(one.out, r->want, one.outlen);
        }
        /* split at every offset, and one byte at a time: the same answer */
        for (size_t cut = 0; cut <= r->len; cut++) {
            body_feed(r, &cut, 1, &two);
            if (two.rc != one.rc || two.used != one.used || two.outlen != one.outlen)
                fail_msg("body row '%s' split at %zu: %d/%zu/%zu, in one piece %d/%zu/%zu", r->name,
                         cut, two.rc, two.used, two.outlen, one.rc, one.used, one.outlen);
            assert_memory_equal(two.out, one.out, one.outlen);
        }
        {
            size_t cuts[256];
            assert_true(r->len <= 256);
            for (size_t k = 0; k < r->len; k++)
                cuts[k] = k + 1;
            body_feed(r, cuts, r->len, &two);
            if (two.rc != one.rc || two.used != one.used || two.outlen != one.outlen)
                fail_msg("body row '%s' byte by byte: %d, in one piece %d", r->name, two.rc,
                         one.rc);
        }
    }
}

/* After the end or an error the decoder answers the same and takes nothing. */
static void test_body_sticky(void **state)
{
    kq_hp_head h;
    kq_hp_body b;
    char out[16], err[128];
    size_t used = 99, outlen = 0;

    (void)state;
    memset(&h, 0, sizeof h);
    h.framing = KQ_HP_BODY_CHUNKED;
    assert_int_equal(kq_hp_body_init(&b, &h, NULL, 100, 1000, err, sizeof err), 0);
    assert_int_equal(
        kq_hp_body_feed(&b, "x\r\n", 3, &used, out, sizeof out, &outlen, err, sizeof err), -400);
    assert_int_equal(used, 0);
    assert_int_equal(
        kq_hp_body_feed(&b, "0\r\n\r\n", 5, &used, out, sizeof out, &outlen, err, sizeof err),
        -400);
    assert_int_equal(used, 0);

    /* no body: ended at once */
    h.framing = KQ_HP_BODY_NONE;
    assert_int_equal(kq_hp_body_init(&b, &h, NULL, 100, 1000, err, sizeof err), 0);
    assert_int_equal(
        kq_hp_body_feed(&b, "GET", 3, &used, out, sizeof out, &outlen, err, sizeof err), 1);
    assert_int_equal(used, 0);
    h.framing = KQ_HP_BODY_LENGTH;
    h.content_length = 0;
    assert_int_equal(kq_hp_body_init(&b, &h, NULL, 100, 1000, err, sizeof err), 0);
    assert_int_equal(
        kq_hp_body_feed(&b, "GET", 3, &used, out, sizeof out, &outlen, err, sizeof err), 1);
    assert_int_equal(used, 0);

    /* Content-Length over max_body: 413 at init, before any byte */
    h.content_length = 101;
    assert_int_equal(kq_hp_body_init(&b, &h, NULL, 100, 1000, err, sizeof err), -413);
    assert_int_equal(kq_hp_body_feed(&b, "x", 1, &used, out, sizeof out, &outlen, err, sizeof err),
                     -413);
    assert_int_equal(used, 0);
}

/* A full out stops the decoder; more room resumes it. out NULL drops the payload. */
static void test_body_out(void **state)
{
    static const char in[] = "a\r\n0123456789\r\n0\r\n\r\nNEXT";
    kq_hp_head h;
    kq_hp_body b;
    char out[16], err[128];
    size_t used = 0, outlen = 0, at = 0;
    int rc;

    (void)state;
    memset(&h, 0, sizeof h);
    h.framing = KQ_HP_BODY_CHUNKED;
    assert_int_equal(kq_hp_body_init(&b, &h, NULL, 100, 1000, err, sizeof err), 0);
    rc = kq_hp_body_feed(&b, in, sizeof in - 1, &used, out, 4, &outlen, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(outlen, 4);
    assert_int_equal(used, 3 + 4);
    at = used;
    rc = kq_hp_body_feed(&b, in + at, sizeof in - 1 - at, &used, out, sizeof out, &outlen, err,
                         sizeof err);
    assert_int_equal(rc, 1);
    assert_int_equal(outlen, 10);
    assert_memory_equal(out, "0123456789", 10);
    assert_string_equal(in + at + used, "NEXT");

    assert_int_equal(kq_hp_body_init(&b, &h, NULL, 100, 1000, err, sizeof err), 0);
    outlen = 0;
    rc = kq_hp_body_feed(&b, in, sizeof in - 1, &used, NULL, 0, &outlen, err, sizeof err);
    assert_int_equal(rc, 1);
    assert_int_equal(outlen, 0);
    assert_true(b.payload == 10);
    assert_int_equal(used, sizeof in - 1 - 4);
}

/*
 * Issue #19 item 2: chunks like "1;<60,000 bytes of extension>\r\na\r\n" streamed
 * without end. With the default chunk line cap: 400 within the first 256 bytes.
 * With the line cap lifted: 413 once max_wire bytes are taken, never more.
 */
static void test_body_wire_cap(void **state)
{
    enum { EXT = 60000 };
    char *chunk = malloc(EXT + 16);
    size_t clen;
    kq_hp_head h;
    kq_hp_limits l = kq_hp_limits_default();
    char out[64], err[128];
    const uint64_t caps[] = {1000, 48 * 1024, 2 * 16384 + 16384, 1 << 20};

    (void)state;
    assert_non_null(chunk);
    chunk[0] = '1';
    chunk[1] = ';';
    memset(chunk + 2, 'e', EXT);
    memcpy(chunk + 2 + EXT, "\r\na\r\n", 5);
    clen = 2 + EXT + 5;
    memset(&h, 0, sizeof h);
    h.framing = KQ_HP_BODY_CHUNKED;

    for (int lifted = 0; lifted <= 1; lifted++) {
        l.max_chunk_line = lifted ? (size_t)1 << 30 : 256;
        for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
            kq_hp_body b;
            uint64_t taken = 0, sent = 0;
            size_t outlen = 0;
            int rc = 0;
            assert_int_equal(kq_hp_body_init(&b, &h, &l, 1 << 20, caps[c], err, sizeof err), 0);
            /* stream the chunk over and over in 4 KiB reads, as a socket would give it */
            while (rc == 0 && sent < (uint64_t)100 * clen) {
                size_t at = (size_t)(sent % clen), n = clen - at < 4096 ? clen - at : 4096, used;
                rc = kq_hp_body_feed(&b, chunk + at, n, &used, out, sizeof out, &outlen, err,
                                     sizeof err);
                taken += used;
                sent += n;
                if (rc == 0)
                    assert_int_equal(used, n);
            }
            if (!lifted) {
                assert_int_equal(rc, -400);
                assert_true(taken <= 256);
            } else {
                assert_int_equal(rc, -413);
                assert_true(taken == caps[c]); /* everything up to the cap, nothing past it */
                assert_true(sent <= caps[c] + 4096);
            }
            assert_true(b.wire == taken);
        }
    }
    free(chunk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_table),  cmocka_unit_test(test_head_incremental),
        cmocka_unit_test(test_head_fields), cmocka_unit_test(test_head_limits),
        cmocka_unit_test(test_head_args),   cmocka_unit_test(test_pct_decode),
        cmocka_unit_test(test_body_table),  cmocka_unit_test(test_body_sticky),
        cmocka_unit_test(test_body_out),    cmocka_unit_test(test_body_wire_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
