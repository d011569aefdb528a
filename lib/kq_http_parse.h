/*
 * kq_http_parse.h — the strict HTTP/1.1 request parser (RFC 9112) under lib/kq_http.c.
 *
 * What it is for. Every byte a client sends to a kcqrs service passes through
 * here before anything else looks at it: the request head (request line and
 * header section) and the message body (Content-Length or chunked). The
 * parser refuses what RFC 9112 lets a server refuse whenever accepting it
 * could let two parties read the same bytes differently (request smuggling,
 * truncated ids) or let a client spend unbounded server resources, and names
 * the HTTP status of the answer. It never answers itself.
 *
 * What it owns. Nothing: pure functions, no I/O, no allocation, no global
 * state. The head parser rewrites the caller's buffer in place (NULs after
 * tokens, percent-decoded path and query parameters) and every string it
 * returns points into that buffer; the body decoder keeps its state in a
 * caller-owned kq_hp_body and appends payload to a caller-owned buffer.
 *
 * Threads. Reentrant; a kq_hp_body is used by one thread at a time.
 *
 * Status convention. Functions return a negative HTTP status (-400, -413,
 * -414, -417, -431, -501, -505) for a refused request and fill `err` with a
 * short sentence (safe to put in a JSON error body: it never quotes input
 * bytes). kq_hp_pct_decode follows the KQ_E* convention of kq_err.h instead.
 */
#ifndef KQ_HTTP_PARSE_H
#define KQ_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define KQ_HP_MAX_HEADERS 64 /* header fields a kq_hp_head can hold */
#define KQ_HP_MAX_PARAMS 64  /* query parameters a kq_hp_head can hold */
#define KQ_HP_MAX_METHOD 32  /* longest method token; longer -> 501 */
#define KQ_HP_MAX_EMPTY 4    /* empty lines skipped before the request line; more -> 400 */

/* Limits; kq_hp_limits_default() gives the values in the comments. */
typedef struct kq_hp_limits {
    size_t max_target;     /* request-target bytes (8192); longer -> 414 */
    unsigned max_params;   /* query parameters (64, at most KQ_HP_MAX_PARAMS); more -> 414 */
    size_t max_head;       /* leading empty lines + request line + header section incl. every
                              CRLF (16384); a head not complete within it -> 431 */
    unsigned max_headers;  /* header fields (64, at most KQ_HP_MAX_HEADERS); more -> 431 */
    size_t max_chunk_line; /* one chunk-size line incl. extensions and CRLF (256); more -> 400 */
    size_t max_trailers;   /* trailer section bytes incl. CRLFs (4096); more -> 431 */
} kq_hp_limits;

kq_hp_limits kq_hp_limits_default(void);

typedef enum { KQ_HP_BODY_NONE = 0, KQ_HP_BODY_LENGTH, KQ_HP_BODY_CHUNKED } kq_hp_framing;

typedef struct kq_hp_field {
    char *name;  /* as received (case preserved), NUL-terminated */
    char *value; /* OWS-trimmed, NUL-terminated; may be "" */
} kq_hp_field;

typedef struct kq_hp_param {
    char *name;  /* percent-decoded ('+' -> ' '), NUL-terminated; may be "" ("?=v") */
    char *value; /* percent-decoded ('+' -> ' '), NUL-terminated; NULL for "?flag" */
} kq_hp_param;

/*
 * A parsed request head. Every string points into the buffer given to
 * kq_hp_head_parse (owned by its caller) and is valid as long as that buffer
 * is. The raw request-target is not kept: the path and the query are decoded
 * over it (target_len says how long it was, e.g. for a log).
 */
typedef struct kq_hp_head {
    char *method;      /* token, e.g. "GET" */
    char *path;        /* percent-decoded path without the query; starts with '/'; no
                          NUL or other control byte inside ('+' stays '+') */
    size_t path_len;   /* strlen(path) */
    size_t target_len; /* bytes of the raw request-target as received */
    unsigned minor;    /* HTTP/1.<minor>: 0 or 1 */
    kq_hp_field headers[KQ_HP_MAX_HEADERS]; /* in arrival order */
    unsigned nheaders;
    kq_hp_param params[KQ_HP_MAX_PARAMS]; /* in arrival order; empty pieces ("a&&b") skipped */
    unsigned nparams;
    kq_hp_framing framing;
    uint64_t content_length; /* KQ_HP_BODY_LENGTH only (<= 2^63-1); else 0 */
    int keep_alive;          /* HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with
                                "Connection: keep-alive" (and no close) */
    int expect_continue;     /* "Expect: 100-continue" on HTTP/1.1 (ignored on 1.0) */
    const char *host;        /* the Host header's value ("" allowed); NULL when absent (1.0) */
} kq_hp_head;

/*
 * Parse the request head at buf[0..len).
 *
 * Returns the head's length in bytes (> 0: leading empty lines, request line,
 * header fields and the empty line) when it is complete; buf[0..that) was
 * rewritten in place and *h filled. The bytes after it (a body, a pipelined
 * request) are untouched. Returns 0 when more bytes are needed: buf is
 * untouched, *h is unspecified, and *scan (opaque) remembers what has been
 * validated, so each call only looks at the new bytes; call again with the
 * same buffer grown (same start, more bytes) and the same *scan. Set
 * *scan = 0 before the first call of each request (and after moving the
 * bytes). Returns -status with a reason in err on a refused request; buf[0..len)
 * may then have been rewritten (the connection is answered and closed).
 *
 * The answer depends only on the bytes, never on how they were split into
 * calls: errors are reported in byte order (the first offending byte wins),
 * then the whole-head rules below in the order listed.
 *
 * Refused, byte-order rules:
 *   400  a line not ending in CRLF (bare LF, or CR not followed by LF);
 *        more than KQ_HP_MAX_EMPTY empty lines before the request line;
 *        a method that is not a token, not exactly one SP between the parts;
 *        a request-target not in origin-form ("/..."), with a byte that is not
 *        visible ASCII or with '#'; a '%' not followed by two hex digits, %00,
 *        or any escape decoding to a control byte (0x01-0x1f, 0x7f), in the
 *        path or the query;
 *        a version that is not "HTTP/" DIGIT "." DIGIT;
 *        obs-fold (a header line starting with SP or HTAB);
 *        a header name that is not a token (e.g. empty), whitespace before the colon,
 *        a header line without a colon;
 *        a control byte other than HTAB in a header value (0x80-0xff is allowed);
 *   501  a method longer than KQ_HP_MAX_METHOD;
 *   414  a request-target longer than max_target, more than max_params parameters;
 *   505  "HTTP/x.y" other than HTTP/1.0 and HTTP/1.1;
 *   431  more than max_headers header fields; the head not complete within max_head
 *        bytes (checked after the byte-order rules of those bytes).
 * Refused, whole-head rules (in this order):
 *   400  HTTP/1.1 without exactly one Host, more than one Host on HTTP/1.0, a Host
 *        value with bytes outside the URI host[:port] alphabet;
 *   400  more than one Content-Length, or a value that is not 1*DIGIT <= 2^63-1
 *        (no sign, no list, no spaces inside);
 *   400  Transfer-Encoding on HTTP/1.0, Transfer-Encoding with Content-Length, more
 *        than one Transfer-Encoding field;
 *   501  a Transfer-Encoding other than exactly "chunked" (case-insensitive);
 *   417  an Expect other than "100-continue" (case-insensitive).
 *
 * lim: NULL means kq_hp_limits_default(). err may be NULL.
 */
int kq_hp_head_parse(char *buf, size_t len, const kq_hp_limits *lim, kq_hp_head *h, size_t *scan,
                     char *err, size_t errlen);

/* The value of header `name` (case-insensitive) in h, NULL if absent (the first if repeated). */
const char *kq_hp_header(const kq_hp_head *h, const char *name);

/*
 * Incremental body decoder. The state is private to kq_http_parse.c (the
 * fields are here only so a caller can embed it); initialise it with
 * kq_hp_body_init. Every wire byte of the body (payload, chunk-size lines
 * with their extensions, CRLFs, trailers) counts against max_wire; the
 * decoded payload against max_body.
 */
typedef struct kq_hp_body {
    int state;             /* private */
    kq_hp_framing framing; /* private */
    uint64_t remaining;    /* private: payload bytes left (length) or in this chunk */
    uint64_t wire;         /* wire bytes consumed so far (readable: for metrics) */
    uint64_t payload;      /* payload bytes decoded so far (readable) */
    uint64_t max_wire;     /* private */
    uint64_t max_body;     /* private */
    size_t line;           /* private: bytes of the current chunk line / trailer line */
    size_t trailers;       /* private: trailer section bytes so far */
    size_t max_chunk_line; /* private */
    size_t max_trailers;   /* private */
    unsigned digits;       /* private: hex digits of the current chunk size */
    unsigned flags;        /* private */
} kq_hp_body;

/*
 * Prepare to decode the body that head h announced. lim: NULL means the
 * defaults (max_chunk_line, max_trailers). max_body caps the decoded payload,
 * max_wire every body byte on the wire. Returns 0, or -413 (err filled) at
 * once when h's Content-Length exceeds max_body. A head without a body
 * (KQ_HP_BODY_NONE, or Content-Length 0) gives a decoder that has ended.
 * h is read only during the call.
 */
int kq_hp_body_init(kq_hp_body *b, const kq_hp_head *h, const kq_hp_limits *lim, uint64_t max_body,
                    uint64_t max_wire, char *err, size_t errlen);

/*
 * Consume in[0..len): sets *used to the bytes taken (never past the end of
 * the body: what follows is the next request) and appends the payload to
 * out[*outlen..outcap), advancing *outlen. When out is full the decoder stops
 * (returns 0 with *used < len): give it more room and call again with the
 * rest. out may be NULL (with outcap 0): the payload is counted and dropped
 * (e.g. to drain a body after answering).
 * Returns 1 when the body (and its trailers) has ended, 0 when more is needed,
 * or -status with err filled: -400 bad chunk syntax (a chunk-size that is not
 * hex or has more than 15 hex digits, a bad extension, a chunk line longer
 * than max_chunk_line, data not followed by CRLF, a bad trailer line), -413
 * payload over max_body or wire bytes over max_wire (reported on the first
 * byte past the cap: at most max_wire bytes are ever consumed), -431 trailer
 * section over max_trailers. After an error or the end, further calls return
 * the same answer and take nothing. Trailer fields are validated and dropped.
 */
int kq_hp_body_feed(kq_hp_body *b, const char *in, size_t len, size_t *used, char *out,
                    size_t outcap, size_t *outlen, char *err, size_t errlen);

/*
 * Strict percent-decoding in place of s[0..*len) (the one routine for paths
 * and query names/values): "%XX" (either case hex) becomes one byte, '+'
 * becomes ' ' when plus_is_space. Refused with KQ_EINVAL: '%' without two hex
 * digits, %00, an escape decoding to a control byte (0x01-0x1f, 0x7f), a raw
 * control byte. On success *len is the decoded length (<= the input's) and
 * s[*len] is NOT written; on failure s may be partly rewritten and *len is
 * unchanged. Returns 0 or KQ_EINVAL.
 */
int kq_hp_pct_decode(char *s, size_t *len, int plus_is_space);

#endif
