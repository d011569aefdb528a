/*
 * fuzz_http_parse.c — libFuzzer entry point for lib/kq_http_parse.h, the
 * parser every byte a client sends to a service goes through.
 *
 * Input: one option byte, then raw bytes from a client. Bit 0 of the option
 * byte picks tiny limits (so the limit paths are reached by short inputs),
 * bits 1-7 seed how the bytes are split into calls.
 *
 * 1. The head: parsed in one piece and again in pieces (one byte at a time
 *    for short inputs), each call seeing only the bytes so far (the rest is
 *    poisoned under ASan). Both must give the same answer, the same rewritten
 *    bytes and the same head; a 0 answer must leave the bytes untouched; a
 *    refusal must be one of the documented statuses with a reason.
 * 2. A parsed head must be sound (path starts with '/', no control byte in a
 *    decoded string, lengths within the input, framing consistent) and must
 *    survive a round trip: re-serialized canonically (every byte of path and
 *    query percent-encoded except unreserved ones and '/', headers as
 *    "name: value") it parses to the same head.
 * 3. The body: the bytes after the head (or, when the head was refused or has
 *    no body, all of them as a chunked body) decoded in one piece and in
 *    pieces with a small, growing output buffer: same answer, same bytes
 *    taken, same payload; never more taken than given or than max_wire, never
 *    more payload than taken or than max_body. A decoded body re-chunked
 *    canonically decodes to the same payload.
 * 4. kq_hp_pct_decode on the whole input: decoded length <= input length and
 *    no control byte in the output.
 * Any disagreement abort()s.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kq_err.h"
#include "kq_http_parse.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KQ_FUZZ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(KQ_FUZZ_ASAN)
#define KQ_FUZZ_ASAN 1
#endif
#ifdef KQ_FUZZ_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what)
{
    fprintf(stderr, "fuzz_http_parse: %s\n", what);
    abort();
}

static unsigned next(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 16;
}

static int is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

static int no_ctl(const char *s)
{
    for (; *s; s++)
        if (is_ctl((unsigned char)*s))
            return 0;
    return 1;
}

static long off(const char *s, const char *buf)
{
    return s ? (long)(s - buf) : -1;
}

/* ---------------------------------------------------------------- head */

static void same_head(const kq_hp_head *a, const char *abuf, const kq_hp_head *b, const char *bbuf)
{
    if (off(a->method, abuf) != off(b->method, bbuf) || off(a->path, abuf) != off(b->path, bbuf) ||
        a->path_len != b->path_len || a->target_len != b->target_len || a->minor != b->minor ||
        a->nheaders != b->nheaders || a->nparams != b->nparams || a->framing != b->framing ||
        a->content_length != b->content_length || a->keep_alive != b->keep_alive ||
        a->expect_continue != b->expect_continue || off(a->host, abuf) != off(b->host, bbuf))
        die("head in pieces differs from head in one piece");
    for (unsigned i = 0; i < a->nheaders; i++)
        if (off(a->headers[i].name, abuf) != off(b->headers[i].name, bbuf) ||
            off(a->headers[i].value, abuf) != off(b->headers[i].value, bbuf))
            die("header in pieces differs");
    for (unsigned i = 0; i < a->nparams; i++)
        if (off(a->params[i].name, abuf) != off(b->params[i].name, bbuf) ||
            off(a->params[i].value, abuf) != off(b->params[i].value, bbuf))
            die("parameter in pieces differs");
}

static int streq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

/* The same head read from two different buffers: compare by content. */
static void equal_heads(const kq_hp_head *a, const kq_hp_head *b)
{
    if (!streq(a->method, b->method) || !streq(a->path, b->path) || a->path_len != b->path_len ||
        a->minor != b->minor || a->nheaders != b->nheaders || a->nparams != b->nparams ||
        a->framing != b->framing || a->content_length != b->content_length ||
        a->keep_alive != b->keep_alive || a->expect_continue != b->expect_continue ||
        !streq(a->host, b->host))
        die("round trip changed the head");
    for (unsigned i = 0; i < a->nheaders; i++)
        if (!streq(a->headers[i].name, b->headers[i].name) ||
            !streq(a->headers[i].value, b->headers[i].value))
            die("round trip changed a header");
    for (unsigned i = 0; i < a->nparams; i++)
        if (!streq(a->params[i].name, b->params[i].name) ||
            !streq(a->params[i].value, b->params[i].value))
            die("round trip changed a parameter");
}

static int valid_status(int rc)
{
    return rc == -400 || rc == -414 || rc == -417 || rc == -431 || rc == -501 || rc == -505;
}

static int head_pieces(const char *in, size_t len, const kq_hp_limits *lim, unsigned seed,
                       char *buf, kq_hp_head *h)
{
    size_t scan = 0, have = 0;
    int rc = 0;
    char err[128];

    memcpy(buf, in, len);
    while (rc == 0 && have < len) {
        size_t piece = len <= 200 ? 1 : 1 + next(&seed) % (len / 4 + 1);
        have = have + piece > len ? len : have + piece;
        POISON(buf + have, len - have);
        rc = kq_hp_head_parse(buf, have, lim, h, &scan, err, sizeof err);
        UNPOISON(buf + have, len - have);
        if (rc == 0 && memcmp(buf, in, have) != 0)
            die("a 0 answer rewrote the buffer");
        if (rc < 0 && err[0] == '\0')
            die("refused without a reason");
    }
    return rc;
}

/* Append s[0..n) percent-encoded (all but unreserved, and '/' when keep_slash). */
static size_t enc(char *out, size_t at, const char *s, size_t n, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
            out[at++] = (char)c;
        } else {
            out[at++] = '%';
            out[at++] = hex[c >> 4];
            out[at++] = hex[c & 15];
        }
    }
    return at;
}

static void check_head(const kq_hp_head *h, const char *buf, size_t hlen, const kq_hp_limits *lim)
{
    if (h->method == NULL || h->path == NULL || h->path[0] != '/' ||
        strlen(h->path) != h->path_len || h->path_len > h->target_len || !no_ctl(h->path) ||
        h->minor > 1 || h->nheaders > lim->max_headers || h->nparams > lim->max_params ||
        h->target_len > lim->max_target || hlen > lim->max_head)
        die("unsound head");
    if (h->method < buf || h->path < buf || h->path + h->path_len >= buf + hlen)
        die("a head string outside the head");
    for (unsigned i = 0; i < h->nparams; i++)
        if (!no_ctl(h->params[i].name) || (h->params[i].value && !no_ctl(h->params[i].value)))
            die("a control byte in a decoded parameter");
    for (unsigned i = 0; i < h->nheaders; i++) {
        const char *v = h->headers[i].value;
        if (h->headers[i].name[0] == '\0')
            die("empty header name");
        for (; *v; v++)
            if (is_ctl((unsigned char)*v) && *v != '\t')
                die("a control byte in a header value");
    }
    if ((h->framing == KQ_HP_BODY_LENGTH) != (kq_hp_header(h, "content-length") != NULL))
        die("framing without Content-Length");
    if (h->framing != KQ_HP_BODY_LENGTH && h->content_length != 0)
        die("a content length without length framing");
    if (h->host != kq_hp_header(h, "host"))
        die("host is not the Host header");
    if (h->minor == 1 && h->host == NULL)
        die("HTTP/1.1 without Host accepted");
}

/* Re-serialize h canonically, parse it again: the same head. */
static void round_trip(const kq_hp_head *h, const kq_hp_limits *lim)
{
    size_t cap = 64 + 3 * h->target_len + 3 * 64 * 4, at = 0;
    char *out;
    kq_hp_limits l2 = *lim;
    kq_hp_head h2;
    size_t scan = 0;
    char err[128];
    int rc;

    for (unsigned i = 0; i < h->nheaders; i++)
        cap += strlen(h->headers[i].name) + strlen(h->headers[i].value) + 4;
    out = malloc(cap);
    if (out == NULL)
        die("out of memory");
    at = (size_t)sprintf(out, "%s ", h->method);
    at = enc(out, at, h->path, h->path_len, 1);
    for (unsigned i = 0; i < h->nparams; i++) {
        out[at++] = i == 0 ? '?' : '&';
        at = enc(out, at, h->params[i].name, strlen(h->params[i].name), 0);
        if (h->params[i].value) {
            out[at++] = '=';
            at = enc(out, at, h->params[i].value, strlen(h->params[i].value), 0);
        }
    }
    at += (size_t)sprintf(out + at, " HTTP/1.%u\r\n", h->minor);
    for (unsigned i = 0; i < h->nheaders; i++)
        at += (size_t)sprintf(out + at, "%s: %s\r\n", h->headers[i].name, h->headers[i].value);
    out[at++] = '\r';
    out[at++] = '\n';
    if (at > cap)
        die("round trip buffer overflow");
    l2.max_target = cap;
    l2.max_head = cap;
    rc = kq_hp_head_parse(out, at, &l2, &h2, &scan, err, sizeof err);
    if (rc != (int)at) {
        fprintf(stderr, "re-serialized head: rc %d (%s): %.*s\n", rc, err, (int)at, out);
        die("a canonical re-serialization of an accepted head was not accepted");
    }
    equal_heads(h, &h2);
    free(out);
}

/* ---------------------------------------------------------------- body */

typedef struct body_res {
    int rc;
    size_t used;
    size_t outlen;
} body_res;

static body_res body_run(const kq_hp_head *h, const kq_hp_limits *lim, uint64_t max_body,
                         uint64_t max_wire, const char *in, size_t len, unsigned seed, int pieces,
                         char *out, size_t outcap)
{
    kq_hp_body b;
    body_res r = {0, 0, 0};
    char err[128];
    size_t cap = pieces ? 0 : outcap;

    r.rc = kq_hp_body_init(&b, h, lim, max_body, max_wire, err, sizeof err);
    if (r.rc != 0) {
        if (r.rc != -413 || h->framing != KQ_HP_BODY_LENGTH || h->content_length <= max_body)
            die("body init refused what it should not");
        return r;
    }
    while (r.rc == 0 && r.used < len) {
        size_t n = len - r.used, used = 0;
        if (pieces) {
            n = 1 + next(&seed) % (n < 64 ? n : 64);
            cap = cap + 1 + next(&seed) % 16;
            if (cap > outcap)
                cap = outcap;
        }
        err[0] = '\0';
        r.rc = kq_hp_body_feed(&b, in + r.used, n, &used, out, cap, &r.outlen, err, sizeof err);
        if (used > n || r.outlen > cap)
            die("body decoder took or wrote too much");
        if (r.rc < 0 && (err[0] == '\0' || (r.rc != -400 && r.rc != -413 && r.rc != -431)))
            die("body refused without a documented status and reason");
        if (r.rc == 0 && used < n && r.outlen < cap)
            die("body decoder stopped with room left");
        if (r.rc == 0 && used == 0 && !pieces)
            die("body decoder made no progress");
        r.used += used;
    }
    if (b.wire != r.used || b.payload != r.outlen || r.outlen > r.used || b.wire > max_wire ||
        b.payload > max_body)
        die("body accounting");
    return r;
}

static void check_body(const kq_hp_head *h, const kq_hp_limits *lim, int tiny, const char *in,
                       size_t len, unsigned seed)
{
    uint64_t max_body = tiny ? 64 : 65536, max_wire = tiny ? 256 : 2 * 65536 + 16384;
    size_t outcap = (size_t)max_body;
    char *out1 = malloc(outcap + 1), *out2 = malloc(outcap + 1);
    body_res a, b;

    if (out1 == NULL || out2 == NULL)
        die("out of memory");
    a = body_run(h, lim, max_body, max_wire, in, len, seed, 0, out1, outcap);
    b = body_run(h, lim, max_body, max_wire, in, len, seed, 1, out2, outcap);
    if (a.rc != b.rc || a.used != b.used || a.outlen != b.outlen ||
        memcmp(out1, out2, a.outlen) != 0)
        die("body in pieces differs from body in one piece");
    if (a.rc == 1 && a.outlen > 0) {
        /* re-chunk canonically: "<hex>\r\n<payload>\r\n0\r\n\r\n" decodes to the same */
        kq_hp_head hc;
        char *wire = malloc(a.outlen + 32);
        size_t wl;
        body_res c;
        if (wire == NULL)
            die("out of memory");
        memset(&hc, 0, sizeof hc);
        hc.framing = KQ_HP_BODY_CHUNKED;
        wl = (size_t)sprintf(wire, "%zx\r\n", a.outlen);
        memcpy(wire + wl, out1, a.outlen);
        wl += a.outlen;
        memcpy(wire + wl, "\r\n0\r\n\r\n", 7);
        wl += 7;
        c = body_run(&hc, lim, max_body, (uint64_t)wl, wire, wl, seed, 0, out2, outcap);
        if (c.rc != 1 || c.used != wl || c.outlen != a.outlen || memcmp(out1, out2, a.outlen))
            die("a re-chunked body did not decode to the same payload");
        free(wire);
    }
    free(out1);
    free(out2);
}

/* ---------------------------------------------------------------- entry */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kq_hp_limits lim = kq_hp_limits_default();
    kq_hp_head h1, h2;
    char *buf1 = NULL, *buf2 = NULL, err[128];
    const char *in;
    size_t len, scan = 0;
    unsigned seed;
    int tiny, rc1, rc2;

    if (size == 0)
        return 0;
    tiny = data[0] & 1;
    seed = data[0] >> 1;
    in = (const char *)data + 1;
    len = size - 1;
    if (tiny) {
        lim.max_target = 32;
        lim.max_params = 3;
        lim.max_head = 160;
        lim.max_headers = 4;
        lim.max_chunk_line = 16;
        lim.max_trailers = 32;
    }
    buf1 = malloc(len ? len : 1);
    buf2 = malloc(len ? len : 1);
    if (buf1 == NULL || buf2 == NULL)
        die("out of memory");

    /* 1. head in one piece and in pieces */
    memcpy(buf1, in, len);
    err[0] = '\0';
    rc1 = kq_hp_head_parse(buf1, len, &lim, &h1, &scan, err, sizeof err);
    if (rc1 > (int)len)
        die("head longer than the input");
    if (rc1 < 0 && (!valid_status(rc1) || err[0] == '\0'))
        die("undocumented refusal");
    if (rc1 == 0 && memcmp(buf1, in, len) != 0)
        die("a 0 answer rewrote the buffer");
    if (rc1 == 0 && len > lim.max_head)
        die("no answer after max_head bytes");
    rc2 = head_pieces(in, len, &lim, seed, buf2, &h2);
    if (rc1 != rc2) {
        fprintf(stderr, "one piece %d, pieces %d\n", rc1, rc2);
        die("the answer depends on how the bytes were split");
    }
    if (rc1 > 0) {
        if (memcmp(buf1, buf2, (size_t)rc1) != 0)
            die("the rewritten bytes depend on how the bytes were split");
        if (memcmp(buf1 + rc1, in + rc1, len - (size_t)rc1) != 0)
            die("bytes after the head were touched");
        same_head(&h1, buf1, &h2, buf2);
        /* 2. soundness and the canonical round trip */
        check_head(&h1, buf1, (size_t)rc1, &lim);
        round_trip(&h1, &lim);
    }

    /* 3. the body: after an accepted head with a body, else everything as chunked */
    if (rc1 > 0 && h1.framing != KQ_HP_BODY_NONE) {
        check_body(&h1, &lim, tiny, in + rc1, len - (size_t)rc1, seed);
    } else {
        kq_hp_head hc;
        memset(&hc, 0, sizeof hc);
        hc.framing = KQ_HP_BODY_CHUNKED;
        check_body(&hc, &lim, tiny, in, len, seed);
    }

    /* 4. the percent-decoder on everything */
    for (int plus = 0; plus <= 1; plus++) {
        size_t n = len;
        memcpy(buf2, in, len);
        if (kq_hp_pct_decode(buf2, &n, plus) == 0) {
            if (n > len)
                die("decoded longer than its input");
            for (size_t i = 0; i < n; i++)
                if (is_ctl((unsigned char)buf2[i]))
                    die("a control byte decoded");
        } else if (n != len) {
            die("a refused decode changed the length");
        }
    }
    free(buf1);
    free(buf2);
    return 0;
}
