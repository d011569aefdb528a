/*
 * wk_smtp.c — RFC 5322 message building and SMTP transfers on the worker
 * engine (see wk_smtp.h).
 */
#include "wk_smtp.h"

#include <ctype.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "kq_err.h"
#include "wk_engine_int.h"
#include "wk_guard.h"
#include "wk_hmac.h"

typedef struct mbuf {
    char *p;
    size_t len, cap;
} mbuf;

static int mb_put(mbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (np == NULL)
            return KQ_ENOMEM;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int mb_str(mbuf *b, const char *s)
{
    return mb_put(b, s, strlen(s));
}

int wk_smtp_addr_check(const char *addr, char *errstr, size_t errlen)
{
    const char *at;
    size_t n;
    if (addr == NULL || (n = strlen(addr)) == 0 || n > WK_SMTP_ADDR_MAX)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "email address missing or over %d bytes",
                         WK_SMTP_ADDR_MAX);
    at = strchr(addr, '@');
    if (at == NULL || at == addr || at[1] == '\0' || strchr(at + 1, '@') != NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "'%.64s' is not local@domain", addr);
    for (const char *p = addr; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c >= 0x7f || strchr("<>()[]\\,;:\"", c) != NULL)
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "email address '%.64s': character 0x%02x not accepted", addr, c);
    }
    return 0;
}

static int is_ascii_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

/* Subject as is when printable ASCII, else RFC 2047 encoded words of <= 45 input bytes. */
static int put_subject(mbuf *b, const char *s)
{
    int rc = 0;
    size_t n = strlen(s), off = 0;
    if (is_ascii_printable(s))
        return mb_str(b, s);
    while (off < n && rc == 0) {
        size_t k = n - off > 45 ? 45 : n - off;
        /* do not split a UTF-8 sequence: back up over continuation bytes */
        while (k > 1 && off + k < n && ((unsigned char)s[off + k] & 0xc0) == 0x80)
            k--;
        unsigned char enc[4 * 46 / 3 + 8];
        int el = EVP_EncodeBlock(enc, (const unsigned char *)s + off, (int)k);
        if (off > 0)
            rc = mb_str(b, "\r\n ");
        if (rc == 0)
            rc = mb_str(b, "=?UTF-8?B?");
        if (rc == 0)
            rc = mb_put(b, (const char *)enc, (size_t)el);
        if (rc == 0)
            rc = mb_str(b, "?=");
        off += k;
    }
    return rc;
}

int wk_smtp_build_message(const wk_smtp_request *req, long long now, char **out, size_t *outlen,
                          char *errstr, size_t errlen)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    mbuf b = {0};
    int rc;
    char line[512];
    struct tm tm;
    time_t t = (time_t)now;
    *out = NULL;
    if ((rc = wk_smtp_addr_check(req->from, errstr, errlen)) != 0)
        return rc;
    if (req->n_to == 0 || req->n_to > WK_SMTP_MAX_RCPT || req->to == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "1..%d recipients required", WK_SMTP_MAX_RCPT);
    for (size_t i = 0; i < req->n_to; i++)
        if ((rc = wk_smtp_addr_check(req->to[i], errstr, errlen)) != 0)
            return rc;
    if (req->subject == NULL || strlen(req->subject) > 998 || strchr(req->subject, '\r') ||
        strchr(req->subject, '\n'))
        return kq_seterr(errstr, errlen, KQ_EINVAL,
                         "subject missing, over 998 bytes or with a line break");
    if ((rc = wk_delivery_id_check(req->delivery_id, errstr, errlen)) != 0)
        return rc;
    if (req->body != NULL && strlen(req->body) > WK_REQUEST_BODY_MAX)
        return kq_seterr(errstr, errlen, KQ_ERANGE, "email body over %d bytes",
                         WK_REQUEST_BODY_MAX);
    if (gmtime_r(&t, &tm) == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "bad time %lld", now);
    snprintf(line, sizeof line, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n", days[tm.tm_wday],
             tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    rc = mb_str(&b, line);
    if (rc == 0)
        rc = mb_str(&b, "From: ");
    if (rc == 0)
        rc = mb_str(&b, req->from);
    if (rc == 0)
        rc = mb_str(&b, "\r\nTo: ");
    for (size_t i = 0; i < req->n_to && rc == 0; i++) {
        if (i > 0)
            rc = mb_str(&b, ",\r\n ");
        if (rc == 0)
            rc = mb_str(&b, req->to[i]);
    }
    if (rc == 0)
        rc = mb_str(&b, "\r\nSubject: ");
    if (rc == 0)
        rc = put_subject(&b, req->subject);
    snprintf(line, sizeof line,
             "\r\nMessage-ID: <%s@kcqrs>\r\n" WK_DELIVERY_HEADER ": %s\r\n"
             "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
             "Content-Transfer-Encoding: 8bit\r\n\r\n",
             req->delivery_id, req->delivery_id);
    if (rc == 0)
        rc = mb_str(&b, line);
    /* Body: every line ending becomes CRLF. */
    for (const char *p = req->body ? req->body : ""; *p && rc == 0; p++) {
        if (*p == '\r') {
            rc = mb_put(&b, "\r\n", 2);
            if (p[1] == '\n')
                p++;
        } else if (*p == '\n') {
            rc = mb_put(&b, "\r\n", 2);
        } else {
            rc = mb_put(&b, p, 1);
        }
    }
    if (rc == 0 && (b.len < 2 || memcmp(b.p + b.len - 2, "\r\n", 2) != 0))
        rc = mb_put(&b, "\r\n", 2);
    if (rc != 0) {
        free(b.p);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory building the message");
    }
    *out = b.p;
    if (outlen != NULL)
        *outlen = b.len;
    return 0;
}

static size_t on_read(char *buf, size_t sz, size_t n, void *ud)
{
    wk_xfer *x = ud;
    size_t k = sz * n, left = x->body_len - x->read_off;
    if (k > left)
        k = left;
    memcpy(buf, x->body + x->read_off, k);
    x->read_off += k;
    return k;
}

int wk_engine_submit_smtp(wk_engine *e, const wk_smtp_request *req, wk_done_fn cb, void *arg,
                          char *errstr, size_t errlen)
{
    wk_xfer *x = NULL;
    int rc;
    char addr[WK_SMTP_ADDR_MAX + 3];
    char *msg = NULL;
    size_t msglen = 0;
    if (req == NULL || cb == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "request and callback required");
    if ((rc = wk_guard_check_url(req->url, WK_GUARD_SMTP, errstr, errlen)) != 0)
        return rc;
    if ((req->username == NULL) != (req->password == NULL))
        return kq_seterr(errstr, errlen, KQ_EINVAL, "SMTP username and password go together");
    if ((rc = wk_smtp_build_message(req, (long long)time(NULL), &msg, &msglen, errstr, errlen)) !=
        0)
        return rc;
    if ((x = wk_xfer_new(e, WK_PROTO_SMTP, errstr, errlen)) == NULL) {
        free(msg);
        return KQ_ENOMEM;
    }
    x->body = msg;
    x->body_len = msglen;
    for (size_t i = 0; i < req->n_to; i++) {
        snprintf(addr, sizeof addr, "<%s>", req->to[i]);
        struct curl_slist *nl = curl_slist_append(x->rcpts, addr);
        if (nl == NULL)
            goto nomem;
        x->rcpts = nl;
    }
    snprintf(addr, sizeof addr, "<%s>", req->from);
    curl_easy_setopt(x->h, CURLOPT_URL, req->url);
    curl_easy_setopt(x->h, CURLOPT_MAIL_FROM, addr);
    curl_easy_setopt(x->h, CURLOPT_MAIL_RCPT, x->rcpts);
    curl_easy_setopt(x->h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(x->h, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(x->h, CURLOPT_READDATA, x);
    curl_easy_setopt(x->h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)msglen);
    if (strncasecmp(req->url, "smtp:", 5) == 0)
        curl_easy_setopt(x->h, CURLOPT_USE_SSL, (long)CURLUSESSL_TRY);
    if (req->username != NULL) {
        curl_easy_setopt(x->h, CURLOPT_USERNAME, req->username);
        curl_easy_setopt(x->h, CURLOPT_PASSWORD, req->password);
    }
    return wk_engine_start(e, x, cb, arg, errstr, errlen); /* owns x from here */
nomem:
    wk_xfer_free(x);
    return kq_seterr(errstr, errlen, KQ_ENOMEM, "worker engine: out of memory");
}
