/*
 * kq_http_parse.c — strict HTTP/1.1 request head parser and body decoder;
 * see kq_http_parse.h for the contract.
 *
 * The head is read in two passes over the same bytes.
 *   1. Validation, resumable: a byte state machine runs over the request line
 *      (leading empty lines, method, path, query, version), then whole header
 *      lines are checked as each one's LF arrives. It only reads the buffer.
 *      Where it stopped (position, part of the request line, parameter and
 *      header counts) is packed into the caller's *scan, so bytes validated by
 *      one call are not validated again by the next, and a head fed one byte at
 *      a time costs about what it costs in one piece. All of it runs over at
 *      most max_head bytes ("the view"): a head that has not ended within the
 *      view is 431 unless a byte inside it was refused first.
 *   2. Once the empty line has arrived: the rewrite (NULs after tokens, path
 *      and query decoded over themselves, values trimmed) fills the
 *      kq_hp_head, and the whole-head rules (Host, framing, Expect) run on it.
 * Because pass 1 reports the first offending byte of the view and pass 2 only
 * runs on a complete head, the answer does not depend on how the bytes were
 * split into calls.
 *
 * The body decoder is a byte state machine too (chunk-size line, extension,
 * data, CRLF, trailer lines), with payload copied in runs.
 */
#include "kq_http_parse.h"
#include "kq_err.h"
#include "kq_rand.h"

#include <string.h>
#include <strings.h>

_Static_assert(sizeof(size_t) >= 8, "*scan packs a position and counters into a size_t");

#define MAX_VIEW ((size_t)1 << 31) /* largest max_head honoured */

kq_hp_limits kq_hp_limits_default(void)
{
    kq_hp_limits l = {
        .max_target = 8192,
        .max_params = 64,
        .max_head = 16384,
        .max_headers = 64,
        .max_chunk_line = 256,
        .max_trailers = 4096,
    };
    return l;
}

/* ---------------------------------------------------------------- character classes */

static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

/* A byte allowed in a field value (RFC 9110 field-vchar, SP, HTAB, obs-text). */
static int is_value_byte(unsigned char c)
{
    return c == '\t' || !is_ctl(c);
}

/* A byte allowed raw in the request-target: visible ASCII except '#'. */
static int is_target_byte(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '#';
}

static int is_host_byte(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("-._~!$&'()*+,;=:[]%", c) != NULL;
}

static int refuse(char *err, size_t errlen, int status, const char *why)
{
    return kq_seterr(err, errlen, -status, "%s", why);
}

/* ---------------------------------------------------------------- percent-decoding */

/*
 * The one percent-decoder: validates s[0..len) and, when out is not NULL,
 * writes the decoded bytes to out (out may equal s: it never runs ahead of
 * the input). Returns the decoded length, or -1 when refused.
 */
static long pct_run(const char *s, size_t len, int plus_is_space, char *out)
{
    size_t i = 0, o = 0;

    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= len)
                return -1;
            hi = kq_hex_digit((unsigned char)s[i + 1]);
            lo = kq_hex_digit((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            if (c == 0 || is_ctl(c))
                return -1;
            i += 3;
        } else {
            if (is_ctl(c))
                return -1;
            if (c == '+' && plus_is_space)
                c = ' ';
            i++;
        }
        if (out != NULL)
            out[o] = (char)c;
        o++;
    }
    return (long)o;
}

int kq_hp_pct_decode(char *s, size_t *len, int plus_is_space)
{
    long n;

    if (s == NULL || len == NULL)
        return KQ_EINVAL;
    if (pct_run(s, *len, plus_is_space, NULL) < 0)
        return KQ_EINVAL;
    n = pct_run(s, *len, plus_is_space, s);
    *len = (size_t)n;
    return 0;
}

/* ---------------------------------------------------------------- head: pass 1 */

enum { P_METHOD = 0, P_PATH, P_QUERY, P_VERSION, P_HEADERS };

typedef struct scan_state {
    size_t pos;        /* next byte to validate */
    unsigned phase;    /* P_* */
    unsigned nparams;  /* query pieces started */
    unsigned piece;    /* the current query piece is non-empty */
    unsigned nheaders; /* header lines validated */
} scan_state;

static size_t scan_pack(const scan_state *s)
{
    return (size_t)s->pos | (size_t)s->phase << 32 | (size_t)(s->nparams & 0xff) << 36 |
           (size_t)(s->piece & 1) << 44 | (size_t)(s->nheaders & 0xff) << 45;
}

static void scan_unpack(size_t v, scan_state *s)
{
    s->pos = v & 0xffffffffu;
    s->phase = (unsigned)(v >> 32) & 0xf;
    s->nparams = (unsigned)(v >> 36) & 0xff;
    s->piece = (unsigned)(v >> 44) & 1;
    s->nheaders = (unsigned)(v >> 45) & 0xff;
}

/* Effective limits: clamped to what a kq_hp_head and *scan can hold. */
static void eff_limits(const kq_hp_limits *in, kq_hp_limits *l)
{
    *l = in ? *in : kq_hp_limits_default();
    if (l->max_head > MAX_VIEW - 1)
        l->max_head = MAX_VIEW - 1;
    if (l->max_headers > KQ_HP_MAX_HEADERS)
        l->max_headers = KQ_HP_MAX_HEADERS;
    if (l->max_params > KQ_HP_MAX_PARAMS)
        l->max_params = KQ_HP_MAX_PARAMS;
}

/*
 * Skip the empty lines before the request line. Returns 0 with *rl set, 0
 * with *rl = n when more bytes are needed, or -400.
 */
static int skip_empty(const char *buf, size_t n, size_t *rl, char *err, size_t errlen)
{
    size_t i = 0;
    unsigned k = 0;

    while (i < n) {
        if (buf[i] == '\n')
            return refuse(err, errlen, 400, "bare LF before the request line");
        if (buf[i] != '\r')
            break;
        if (i + 1 >= n) {
            i = n;
            break;
        }
        if (buf[i + 1] != '\n')
            return refuse(err, errlen, 400, "CR without LF before the request line");
        if (++k > KQ_HP_MAX_EMPTY)
            return refuse(err, errlen, 400, "too many empty lines before the request line");
        i += 2;
    }
    *rl = i;
    return 0;
}

/* Check one complete header line p[0..n) (its LF at p[n]). */
static int check_field_line(const char *p, size_t n, char *err, size_t errlen)
{
    size_t i = 0;

    if (n == 0 || p[n - 1] != '\r')
        return refuse(err, errlen, 400, "header line not ending in CRLF");
    n--; /* without the CR */
    if (p[0] == ' ' || p[0] == '\t')
        return refuse(err, errlen, 400, "obsolete line folding in the header section");
    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    if (i == n)
        return refuse(err, errlen, 400, "header line without a colon");
    if (p[i] != ':') {
        if (p[i] == ' ' || p[i] == '\t')
            return refuse(err, errlen, 400, "whitespace between a header name and its colon");
        return refuse(err, errlen, 400, "header name is not a token");
    }
    if (i == 0)
        return refuse(err, errlen, 400, "empty header name");
    for (i++; i < n; i++)
        if (!is_value_byte((unsigned char)p[i]))
            return refuse(err, errlen, 400, "control character in a header value");
    return 0;
}

/*
 * Validate the request line from s->pos on over buf[0..n). Returns 1 when it
 * is complete (s->phase == P_HEADERS), 0 when more bytes are needed (s saved
 * at a resumable point), or -status.
 */
static int scan_request_line(const char *buf, size_t n, const kq_hp_limits *l, scan_state *s,
                             char *err, size_t errlen)
{
    size_t rl = 0, t0 = 0, v0 = 0;
    int rc;

    if ((rc = skip_empty(buf, n, &rl, err, errlen)) < 0)
        return rc;
    if (rl == n)
        return 0;
    if (s->pos < rl)
        s->pos = rl;
    if (s->phase >= P_PATH) {
        size_t m = n - rl < KQ_HP_MAX_METHOD + 1 ? n - rl : KQ_HP_MAX_METHOD + 1;
        const char *sp = memchr(buf + rl, ' ', m);
        t0 = (size_t)(sp - buf) + 1;
    }
    if (s->phase == P_VERSION) {
        const char *sp = memrchr(buf + t0, ' ', s->pos - t0);
        v0 = (size_t)(sp - buf) + 1;
    }
    while (s->pos < n) {
        unsigned char c = (unsigned char)buf[s->pos];
        switch (s->phase) {
        case P_METHOD:
            if (c == ' ') {
                if (s->pos == rl)
                    return refuse(err, errlen, 400, "empty method");
                s->phase = P_PATH;
                t0 = s->pos + 1;
                s->pos++;
                break;
            }
            if (c == '\r' || c == '\n')
                return refuse(err, errlen, 400, "malformed request line");
            if (!is_tchar(c))
                return refuse(err, errlen, 400, "method is not a token");
            if (s->pos - rl >= KQ_HP_MAX_METHOD)
                return refuse(err, errlen, 501, "method too long");
            s->pos++;
            break;
        case P_PATH:
        case P_QUERY:
            if (s->pos == t0 && c != '/')
                return refuse(err, errlen, 400, "request-target is not in origin-form");
            if (c == ' ') {
                s->phase = P_VERSION;
                v0 = s->pos + 1;
                s->pos++;
                break;
            }
            if (s->pos - t0 >= l->max_target)
                return refuse(err, errlen, 414, "request-target too long");
            if (s->phase == P_PATH && c == '?') {
                s->phase = P_QUERY;
                s->piece = 0;
                s->pos++;
                break;
            }
            if (s->phase == P_QUERY) {
                if (c == '&') {
                    s->piece = 0;
                    s->pos++;
                    break;
                }
                if (!s->piece) {
                    s->piece = 1;
                    if (++s->nparams > l->max_params)
                        return refuse(err, errlen, 414, "too many query parameters");
                }
            }
            if (c == '%') {
                int hi, lo;
                if (s->pos + 2 - t0 >= l->max_target)
                    return refuse(err, errlen, 414, "request-target too long");
                if (s->pos + 1 >= n)
                    return 0;
                if ((hi = kq_hex_digit((unsigned char)buf[s->pos + 1])) < 0)
                    return refuse(err, errlen, 400, "invalid percent-escape in the request-target");
                if (s->pos + 2 >= n)
                    return 0;
                if ((lo = kq_hex_digit((unsigned char)buf[s->pos + 2])) < 0)
                    return refuse(err, errlen, 400, "invalid percent-escape in the request-target");
                if (hi == 0 && lo == 0)
                    return refuse(err, errlen, 400, "%00 in the request-target");
                if (is_ctl((unsigned char)(hi << 4 | lo)))
                    return refuse(err, errlen, 400,
                                  "percent-escape of a control character in the request-target");
                s->pos += 3;
                break;
            }
            if (!is_target_byte(c))
                return refuse(err, errlen, 400, "invalid character in the request-target");
            s->pos++;
            break;
        case P_VERSION: {
            static const char tmpl[] = "HTTP/D.D\r\n";
            size_t k = s->pos - v0;
            int ok = tmpl[k] == 'D' ? (c >= '0' && c <= '9') : c == (unsigned char)tmpl[k];
            if (!ok) {
                if (k == 9)
                    return refuse(err, errlen, 400, "request line not ending in CRLF");
                return refuse(err, errlen, 400, "malformed HTTP version");
            }
            s->pos++;
            if (k == 7 && !(buf[v0 + 5] == '1' && (buf[v0 + 7] == '0' || buf[v0 + 7] == '1')))
                return refuse(err, errlen, 505, "HTTP version not supported");
            if (k == 9) {
                s->phase = P_HEADERS;
                return 1;
            }
            break;
        }
        default:
            return 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- head: pass 2 */

/* Decode s[0..len) in place (validated before) and NUL-terminate it. */
static size_t decode_z(char *s, size_t len, int plus_is_space)
{
    long n = pct_run(s, len, plus_is_space, s);
    if (n < 0)
        n = 0; /* cannot happen: pass 1 validated the bytes */
    s[n] = '\0';
    return (size_t)n;
}

static void fill_target(char *t, size_t tlen, kq_hp_head *h)
{
    char *q = memchr(t, '?', tlen);
    size_t plen = q ? (size_t)(q - t) : tlen;

    h->path = t;
    h->path_len = decode_z(t, plen, 0);
    h->nparams = 0;
    if (q == NULL)
        return;
    {
        char *p = q + 1, *end = t + tlen;
        while (p < end && h->nparams < KQ_HP_MAX_PARAMS) {
            char *amp = memchr(p, '&', (size_t)(end - p));
            char *pe = amp ? amp : end;
            if (pe > p) {
                char *eq = memchr(p, '=', (size_t)(pe - p));
                kq_hp_param *pr = &h->params[h->nparams++];
                pr->name = p;
                pr->value = NULL;
                if (eq) {
                    decode_z(p, (size_t)(eq - p), 1);
                    pr->value = eq + 1;
                    decode_z(eq + 1, (size_t)(pe - eq - 1), 1);
                } else {
                    decode_z(p, (size_t)(pe - p), 1);
                }
            }
            p = pe + 1;
        }
    }
}

static int token_eq(const char *a, size_t alen, const char *b)
{
    return strlen(b) == alen && strncasecmp(a, b, alen) == 0;
}

/* Connection: comma-separated tokens; sets *close / *ka for "close" / "keep-alive". */
static void connection_tokens(const char *v, int *close, int *ka)
{
    while (*v) {
        const char *e = strchr(v, ',');
        size_t len = e ? (size_t)(e - v) : strlen(v);
        const char *a = v, *z = v + len;
        while (a < z && (*a == ' ' || *a == '\t'))
            a++;
        while (z > a && (z[-1] == ' ' || z[-1] == '\t'))
            z--;
        if (token_eq(a, (size_t)(z - a), "close"))
            *close = 1;
        else if (token_eq(a, (size_t)(z - a), "keep-alive"))
            *ka = 1;
        v = e ? e + 1 : v + len;
    }
}

static int whole_head_rules(kq_hp_head *h, char *err, size_t errlen)
{
    const char *cl = NULL, *te = NULL, *expect = NULL;
    unsigned nhost = 0, ncl = 0, nte = 0;
    int close = 0, ka = 0;

    for (unsigned i = 0; i < h->nheaders; i++) {
        const char *n = h->headers[i].name, *v = h->headers[i].value;
        if (strcasecmp(n, "host") == 0) {
            nhost++;
            h->host = v;
        } else if (strcasecmp(n, "content-length") == 0) {
            ncl++;
            cl = v;
        } else if (strcasecmp(n, "transfer-encoding") == 0) {
            nte++;
            te = v;
        } else if (strcasecmp(n, "expect") == 0) {
            if (expect == NULL || strcasecmp(expect, "100-continue") == 0)
                expect = v;
        } else if (strcasecmp(n, "connection") == 0) {
            connection_tokens(v, &close, &ka);
        }
    }
    if (h->minor == 1 && nhost != 1)
        return refuse(err, errlen, 400,
                      nhost ? "more than one Host header" : "missing Host header");
    if (nhost > 1)
        return refuse(err, errlen, 400, "more than one Host header");
    if (h->host)
        for (const char *p = h->host; *p; p++)
            if (!is_host_byte((unsigned char)*p))
                return refuse(err, errlen, 400, "invalid Host header");
    if (ncl > 1)
        return refuse(err, errlen, 400, "more than one Content-Length header");
    if (cl) {
        uint64_t v = 0;
        if (*cl == '\0')
            return refuse(err, errlen, 400, "invalid Content-Length");
        for (const char *p = cl; *p; p++) {
            if (*p < '0' || *p > '9')
                return refuse(err, errlen, 400, "invalid Content-Length");
            if (v > (UINT64_C(0x7fffffffffffffff) - (uint64_t)(*p - '0')) / 10)
                return refuse(err, errlen, 400, "Content-Length too large");
            v = v * 10 + (uint64_t)(*p - '0');
        }
        h->framing = KQ_HP_BODY_LENGTH;
        h->content_length = v;
    }
    if (nte > 0) {
        if (h->minor == 0)
            return refuse(err, errlen, 400, "Transfer-Encoding in an HTTP/1.0 request");
        if (ncl > 0)
            return refuse(err, errlen, 400, "both Transfer-Encoding and Content-Length");
        if (nte > 1)
            return refuse(err, errlen, 400, "more than one Transfer-Encoding header");
        if (strcasecmp(te, "chunked") != 0)
            return refuse(err, errlen, 501, "transfer coding not implemented");
        h->framing = KQ_HP_BODY_CHUNKED;
    }
    if (expect && strcasecmp(expect, "100-continue") != 0)
        return refuse(err, errlen, 417, "expectation not supported");
    h->expect_continue = expect != NULL && h->minor == 1;
    h->keep_alive = h->minor == 1 ? !close : ka && !close;
    return 0;
}

/* Rewrite buf[0..hlen) (validated) in place into h, then apply the whole-head rules. */
static int fill_head(char *buf, size_t hlen, kq_hp_head *h, char *err, size_t errlen)
{
    size_t rl = 0, pos;
    char *sp1, *sp2, *t;

    memset(h, 0, sizeof *h);
    while (buf[rl] == '\r')
        rl += 2;
    sp1 = memchr(buf + rl, ' ', hlen - rl);
    t = sp1 + 1;
    sp2 = memchr(t, ' ', hlen - (size_t)(t - buf));
    h->method = buf + rl;
    *sp1 = '\0';
    h->minor = (unsigned)(sp2[8] - '0');
    h->target_len = (size_t)(sp2 - t);
    fill_target(t, h->target_len, h);
    pos = (size_t)(sp2 - buf) + 11; /* " HTTP/1.x\r\n" */
    while (pos + 2 < hlen) {
        char *ls = buf + pos, *lf = memchr(ls, '\n', hlen - pos),
             *colon = memchr(ls, ':', (size_t)(lf - ls));
        char *v = colon + 1, *ve = lf - 1; /* at the CR */
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        *colon = '\0';
        *ve = '\0';
        if (h->nheaders < KQ_HP_MAX_HEADERS) {
            h->headers[h->nheaders].name = ls;
            h->headers[h->nheaders].value = v;
            h->nheaders++;
        }
        pos = (size_t)(lf - buf) + 1;
    }
    return whole_head_rules(h, err, errlen);
}

int kq_hp_head_parse(char *buf, size_t len, const kq_hp_limits *lim, kq_hp_head *h, size_t *scan,
                     char *err, size_t errlen)
{
    kq_hp_limits l;
    scan_state s;
    size_t n;
    int rc;

    if (buf == NULL || h == NULL || scan == NULL)
        return refuse(err, errlen, 400, "no request");
    eff_limits(lim, &l);
    n = len < l.max_head ? len : l.max_head;
    scan_unpack(*scan, &s);
    if (s.pos > n) /* a caller that shrank the buffer: start over */
        memset(&s, 0, sizeof s);
    if (s.phase < P_HEADERS) {
        if ((rc = scan_request_line(buf, n, &l, &s, err, errlen)) < 0)
            return rc;
    }
    if (s.phase == P_HEADERS) {
        while (s.pos < n) {
            const char *ls = buf + s.pos;
            const char *lf = memchr(ls, '\n', n - s.pos);
            size_t llen;
            if (lf == NULL)
                break;
            llen = (size_t)(lf - ls);
            if (llen == 1 && ls[0] == '\r') {
                size_t hlen = s.pos + 2;
                if ((rc = fill_head(buf, hlen, h, err, errlen)) < 0)
                    return rc;
                return (int)hlen;
            }
            if ((rc = check_field_line(ls, llen, err, errlen)) < 0)
                return rc;
            if (++s.nheaders > l.max_headers)
                return refuse(err, errlen, 431, "too many header fields");
            s.pos += llen + 1;
        }
    }
    if (len > l.max_head)
        return refuse(err, errlen, 431, "request header section too large");
    *scan = scan_pack(&s);
    return 0;
}

const char *kq_hp_header(const kq_hp_head *h, const char *name)
{
    for (unsigned i = 0; h != NULL && i < h->nheaders; i++)
        if (strcasecmp(h->headers[i].name, name) == 0)
            return h->headers[i].value;
    return NULL;
}

/* ---------------------------------------------------------------- body */

enum {
    B_DONE = 1,
    B_LENGTH,
    B_SIZE,    /* chunk-size hex digits */
    B_EXT_WS,  /* whitespace after the size, before ';' */
    B_EXT,     /* inside the extensions, until CR */
    B_SIZE_LF, /* CR seen at the end of the size line */
    B_DATA,    /* chunk data */
    B_DATA_CR, /* CRLF after the data */
    B_DATA_LF,
    B_TR_START, /* start of a trailer line (or the final CRLF) */
    B_TR_NAME,
    B_TR_VALUE,
    B_TR_LF,
    B_END_LF, /* CR of the final empty line seen */
};

int kq_hp_body_init(kq_hp_body *b, const kq_hp_head *h, const kq_hp_limits *lim, uint64_t max_body,
                    uint64_t max_wire, char *err, size_t errlen)
{
    kq_hp_limits l = lim ? *lim : kq_hp_limits_default();

    memset(b, 0, sizeof *b);
    b->framing = h ? h->framing : KQ_HP_BODY_NONE;
    b->max_body = max_body;
    b->max_wire = max_wire;
    b->max_chunk_line = l.max_chunk_line;
    b->max_trailers = l.max_trailers;
    switch (b->framing) {
    case KQ_HP_BODY_LENGTH:
        if (h->content_length > max_body) {
            b->state = -413;
            return refuse(err, errlen, 413, "request body too large");
        }
        b->remaining = h->content_length;
        b->state = b->remaining ? B_LENGTH : B_DONE;
        break;
    case KQ_HP_BODY_CHUNKED:
        b->state = B_SIZE;
        break;
    default:
        b->state = B_DONE;
        break;
    }
    return 0;
}

/*
 * One framing byte c (anything but a run of payload) through the state
 * machine. Returns NULL, or the reason of a refusal with *status set.
 */
static const char *body_step(kq_hp_body *b, unsigned char c, int *status)
{
    *status = 400;
    switch (b->state) {
    case B_SIZE:
    case B_EXT_WS:
    case B_EXT:
    case B_SIZE_LF:
        if (++b->line > b->max_chunk_line)
            return "chunk-size line too long";
        break;
    case B_TR_START:
    case B_TR_NAME:
    case B_TR_VALUE:
    case B_TR_LF:
    case B_END_LF:
        if (++b->trailers > b->max_trailers) {
            *status = 431;
            return "trailer section too large";
        }
        break;
    default:
        break;
    }
    switch (b->state) {
    case B_SIZE: {
        int v = kq_hex_digit(c);
        if (v >= 0) {
            if (++b->digits > 15)
                return "chunk-size too large";
            b->remaining = b->remaining << 4 | (uint64_t)v;
            if (b->remaining > b->max_body - b->payload) {
                *status = 413;
                return "request body too large";
            }
        } else if (b->digits == 0) {
            return "chunk-size is not hexadecimal";
        } else if (c == '\r') {
            b->state = B_SIZE_LF;
        } else if (c == ';') {
            b->state = B_EXT;
        } else if (c == ' ' || c == '\t') {
            b->state = B_EXT_WS;
        } else {
            return "invalid chunk-size line";
        }
        return NULL;
    }
    case B_EXT_WS:
        if (c == ';')
            b->state = B_EXT;
        else if (c != ' ' && c != '\t')
            return "invalid chunk extension";
        return NULL;
    case B_EXT:
        if (c == '\r')
            b->state = B_SIZE_LF;
        else if (!is_value_byte(c))
            return "control character in a chunk extension";
        return NULL;
    case B_SIZE_LF:
        if (c != '\n')
            return "chunk-size line not ending in CRLF";
        b->line = 0;
        b->digits = 0;
        b->state = b->remaining ? B_DATA : B_TR_START;
        return NULL;
    case B_DATA_CR:
    case B_DATA_LF:
        if (c != (b->state == B_DATA_CR ? '\r' : '\n'))
            return "chunk data not followed by CRLF";
        b->state = b->state == B_DATA_CR ? B_DATA_LF : B_SIZE;
        return NULL;
    case B_TR_START:
        if (c == '\r')
            b->state = B_END_LF;
        else if (is_tchar(c))
            b->state = B_TR_NAME;
        else
            return "invalid trailer field";
        return NULL;
    case B_TR_NAME:
        if (c == ':')
            b->state = B_TR_VALUE;
        else if (!is_tchar(c))
            return "invalid trailer field name";
        return NULL;
    case B_TR_VALUE:
        if (c == '\r')
            b->state = B_TR_LF;
        else if (!is_value_byte(c))
            return "control character in a trailer field";
        return NULL;
    case B_TR_LF:
    case B_END_LF:
        if (c != '\n')
            return "line in the trailer section not ending in CRLF";
        b->state = b->state == B_TR_LF ? B_TR_START : B_DONE;
        return NULL;
    default:
        return "body decoder in an invalid state";
    }
}

int kq_hp_body_feed(kq_hp_body *b, const char *in, size_t len, size_t *used, char *out,
                    size_t outcap, size_t *outlen, char *err, size_t errlen)
{
    size_t i = 0, o = outlen ? *outlen : 0;
    const char *why = NULL;
    int rc = 0, status = 413;

    if (used)
        *used = 0;
    if (b->state < 0)
        return refuse(err, errlen, -b->state, "request body refused before");
    if (b->state == B_DONE)
        return 1;
    while (i < len && rc == 0) {
        if (b->state == B_LENGTH || b->state == B_DATA) {
            /* a run of payload: as much as the input, the wire cap and out allow */
            uint64_t take = b->remaining, room = outcap > o ? outcap - o : 0;
            if (take > len - i)
                take = len - i;
            if (take > b->max_wire - b->wire)
                take = b->max_wire - b->wire;
            if (out != NULL && take > room)
                take = room;
            if (take == 0) {
                if (b->wire >= b->max_wire)
                    why = "request body too large on the wire";
                break; /* else out is full */
            }
            if (out != NULL) {
                memcpy(out + o, in + i, (size_t)take);
                o += (size_t)take;
            }
            i += (size_t)take;
            b->wire += take;
            b->payload += take;
            b->remaining -= take;
            if (b->remaining == 0)
                b->state = b->state == B_LENGTH ? B_DONE : B_DATA_CR;
        } else if (b->wire >= b->max_wire) {
            status = 413;
            why = "request body too large on the wire";
            break;
        } else if ((why = body_step(b, (unsigned char)in[i], &status)) != NULL) {
            break;
        } else {
            i++;
            b->wire++;
        }
        if (b->state == B_DONE)
            rc = 1;
    }
    if (why != NULL) {
        b->state = -status;
        rc = refuse(err, errlen, status, why);
    }
    if (used)
        *used = i;
    if (outlen)
        *outlen = o;
    return rc;
}
