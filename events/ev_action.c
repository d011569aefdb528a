/*
 * ev_action.c — workflow actions: names, the template scanner (check and
 * render), the URL and address rules, action JSON both ways (see
 * ev_action.h).
 */
#include "ev_action.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kq_err.h"
#include "kq_json_in.h"

static const char *const action_types[] = {"http", "email", NULL};
static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};
static const ev_http_method method_values[] = {EV_HTTP_GET, EV_HTTP_POST, EV_HTTP_PUT,
                                               EV_HTTP_PATCH, EV_HTTP_DELETE};

/* ------------------------------------------------------------------ names */

const char *ev_action_type_name(ev_action_type type)
{
    return type == EV_ACTION_HTTP ? "http" : type == EV_ACTION_EMAIL ? "email" : NULL;
}

const char *ev_http_method_name(ev_http_method method)
{
    for (size_t i = 0; methods[i] != NULL; i++)
        if (method_values[i] == method)
            return methods[i];
    return NULL;
}

int ev_http_method_parse(const char *name, ev_http_method *out)
{
    for (size_t i = 0; name != NULL && methods[i] != NULL; i++)
        if (strcmp(methods[i], name) == 0) {
            *out = method_values[i];
            return 0;
        }
    return KQ_EINVAL;
}

/* ------------------------------------------------------------------ template scanner */

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static int is_name_char(char c)
{
    return c != '\0' && c != '.' && c != '}' && c != '{' && c != ' ' && c != '\t' && c != '\r' &&
           c != '\n';
}

/* What is wrong with a placeholder (TPL_OK: nothing). */
typedef enum tpl_err { TPL_OK = 0, TPL_NOT_PAYLOAD, TPL_BAD_NAME, TPL_NOT_CLOSED } tpl_err;

/*
 * Scan the placeholder whose "{{" is at s[open] (s holds len bytes): on
 * TPL_OK, s[*pstart..*pend) is its path ("payload" and its ".name" steps)
 * and *end the offset after its "}}".
 */
static tpl_err tpl_scan(const char *s, size_t len, size_t open, size_t *pstart, size_t *pend,
                        size_t *end)
{
    size_t q = open + 2;

    while (q < len && is_blank(s[q]))
        q++;
    *pstart = q;
    if (len - q < 7 || memcmp(s + q, "payload", 7) != 0 ||
        (q + 7 < len && s[q + 7] != '.' && s[q + 7] != '}' && !is_blank(s[q + 7])))
        return TPL_NOT_PAYLOAD;
    q += 7;
    while (q < len && s[q] == '.') {
        size_t ns = ++q;
        while (q < len && is_name_char(s[q]))
            q++;
        if (q - ns == 0 || q - ns > EV_TEMPLATE_NAME_MAX)
            return TPL_BAD_NAME;
    }
    *pend = q;
    while (q < len && is_blank(s[q]))
        q++;
    if (len - q < 2 || s[q] != '}' || s[q + 1] != '}')
        return TPL_NOT_CLOSED;
    *end = q + 2;
    return TPL_OK;
}

/* The offset of the next "{{" at or after `from`, or len when none. */
static size_t tpl_next_open(const char *s, size_t len, size_t from)
{
    for (size_t i = from; i + 1 < len; i++)
        if (s[i] == '{' && s[i + 1] == '{')
            return i;
    return len;
}

static int tpl_fail(tpl_err e, size_t open, const char *prefix, char *why, size_t whylen)
{
    const char *what = e == TPL_NOT_PAYLOAD ? "must be {{payload}} or {{payload.a.b}}"
                       : e == TPL_BAD_NAME  ? "has an empty or over-long (200 bytes) name"
                                            : "is not closed by }} (or has a bad name)";
    return kq_seterr(why, whylen, KQ_EINVAL, "%splaceholder at offset %zu %s", prefix, open, what);
}

int ev_template_check(const char *s, size_t len, char *why, size_t whylen)
{
    size_t i = 0, open, ps, pe, end;
    tpl_err e;

    while ((open = tpl_next_open(s, len, i)) < len) {
        if ((e = tpl_scan(s, len, open, &ps, &pe, &end)) != TPL_OK)
            return tpl_fail(e, open, "", why, whylen);
        i = end;
    }
    return 0;
}

/* ------------------------------------------------------------------ rendering */

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static int sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->len + n > EV_TEMPLATE_OUT_MAX)
        return KQ_ERANGE;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *np;
        while (cap < b->len + n + 1)
            cap *= 2;
        if ((np = realloc(b->p, cap)) == NULL)
            return KQ_ENOMEM;
        b->p = np;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* Append `s` (n bytes) to b, encoded for `mode`; `path` names the placeholder. */
static int put_encoded(sbuf *b, const char *s, size_t n, ev_tpl_mode mode, const char *path,
                       char *errstr, size_t errlen)
{
    int rc = 0;
    size_t i, run = 0;
    char esc[8];

    if (mode == EV_TPL_TEXT)
        return sb_put(b, s, n);
    if (mode == EV_TPL_HEADER) {
        if (memchr(s, '\r', n) != NULL || memchr(s, '\n', n) != NULL || memchr(s, '\0', n) != NULL)
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "template: {{%s}} holds a line break, not allowed in a header", path);
        return sb_put(b, s, n);
    }
    for (i = 0; i < n && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *rep = NULL;
        if (mode == EV_TPL_JSON) {
            if (c == '"')
                rep = "\\\"";
            else if (c == '\\')
                rep = "\\\\";
            else if (c == '\n')
                rep = "\\n";
            else if (c == '\r')
                rep = "\\r";
            else if (c == '\t')
                rep = "\\t";
            else if (c < 0x20 || c == 0x7f) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                rep = esc;
            }
        } else if (!(isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')) { /* URL */
            snprintf(esc, sizeof esc, "%%%02X", c);
            rep = esc;
        }
        if (rep != NULL) {
            if (run > 0)
                rc = sb_put(b, s + i - run, run);
            run = 0;
            if (rc == 0)
                rc = sb_put(b, rep, strlen(rep));
        } else {
            run++;
        }
    }
    if (rc == 0 && run > 0)
        rc = sb_put(b, s + n - run, run);
    return rc;
}

/* Append value v rendered for `mode`. */
static int put_value(sbuf *b, const json_t *v, ev_tpl_mode mode, const char *path, char *errstr,
                     size_t errlen)
{
    char *txt;
    int rc;

    if (json_is_string(v))
        return put_encoded(b, json_string_value(v), json_string_length(v), mode, path, errstr,
                           errlen);
    if (json_is_null(v))
        return mode == EV_TPL_JSON ? sb_put(b, "null", 4) : 0;
    if ((txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
        return KQ_ENOMEM;
    rc = put_encoded(b, txt, strlen(txt), mode, path, errstr, errlen);
    free(txt);
    return rc;
}

/* The value at path s[ps..pe) ("payload" then ".name" steps) or NULL. */
static const json_t *resolve(const json_t *payload, const char *s, size_t ps, size_t pe)
{
    const json_t *v = payload;
    size_t q = ps + 7;

    while (v != NULL && q < pe) { /* s[q] == '.' */
        size_t ns = ++q, nl;
        char name[EV_TEMPLATE_NAME_MAX + 1];
        while (q < pe && s[q] != '.')
            q++;
        nl = q - ns;
        memcpy(name, s + ns, nl);
        name[nl] = '\0';
        if (json_is_object(v)) {
            v = json_object_get(v, name);
        } else if (json_is_array(v)) {
            char *endp;
            unsigned long idx = strtoul(name, &endp, 10);
            v = *endp == '\0' && isdigit((unsigned char)name[0]) ? json_array_get(v, idx) : NULL;
        } else {
            v = NULL;
        }
    }
    return v;
}

int ev_template_render(const char *tpl, size_t len, const json_t *payload, ev_tpl_mode mode,
                       char **out, size_t *outlen, char *errstr, size_t errlen)
{
    sbuf b = {NULL, 0, 0};
    json_t *empty = NULL;
    size_t i = 0, open, ps, pe, end;
    int rc;

    *out = NULL;
    if (tpl == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "template is NULL");
    if (payload == NULL && (payload = empty = json_object()) == NULL) {
        rc = KQ_ENOMEM;
        goto out;
    }
    if ((rc = sb_put(&b, "", 0)) != 0)
        goto out;
    for (;;) {
        const json_t *v;
        char path[256];
        tpl_err e;
        open = tpl_next_open(tpl, len, i);
        if ((rc = sb_put(&b, tpl + i, open - i)) != 0 || open == len)
            goto out;
        if ((e = tpl_scan(tpl, len, open, &ps, &pe, &end)) != TPL_OK) {
            rc = tpl_fail(e, open, "template: ", errstr, errlen);
            goto out;
        }
        snprintf(path, sizeof path, "%.*s", (int)(pe - ps > 250 ? 250 : pe - ps), tpl + ps);
        if ((v = resolve(payload, tpl, ps, pe)) == NULL) {
            rc = kq_seterr(errstr, errlen, KQ_ENOTFOUND, "template: {{%s}} is not in the payload",
                           path);
            goto out;
        }
        if ((rc = put_value(&b, v, mode, path, errstr, errlen)) != 0)
            goto out;
        i = end;
    }
out:
    if (rc == KQ_ERANGE)
        kq_seterr(errstr, errlen, KQ_ERANGE, "template: rendered text over %d bytes",
                  EV_TEMPLATE_OUT_MAX);
    else if (rc == KQ_ENOMEM)
        kq_seterr(errstr, errlen, KQ_ENOMEM, "template: out of memory");
    if (rc != 0) {
        free(b.p);
    } else {
        *out = b.p;
        if (outlen != NULL)
            *outlen = b.len;
    }
    json_decref(empty);
    return rc;
}

int ev_template_is_json_type(const char *ct)
{
    size_t n;
    const char *semi;

    if (ct == NULL)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    semi = strchr(ct, ';');
    n = semi ? (size_t)(semi - ct) : strlen(ct);
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
        return 1;
    if (n > 5 && memchr(ct, '/', n) != NULL && strncasecmp(ct + n - 5, "+json", 5) == 0)
        return 1;
    return 0;
}

/* ------------------------------------------------------------------ URL, addresses */

int ev_url_check(const char *url, size_t len, char *why, size_t whylen)
{
    size_t i, h, hend;

    if (len > EV_URL_MAX)
        return kq_seterr(why, whylen, KQ_EINVAL, "must be at most %d bytes", EV_URL_MAX);
    for (i = 0; i < len; i++)
        if ((unsigned char)url[i] == 0x20)
            return kq_seterr(why, whylen, KQ_EINVAL,
                             "must not contain spaces or control characters");
    if (kq_jin_ctl_find(url, len, 0, NULL) >= 0)
        return kq_seterr(why, whylen, KQ_EINVAL, "must not contain spaces or control characters");
    if (len >= 7 && strncasecmp(url, "http://", 7) == 0)
        h = 7;
    else if (len >= 8 && strncasecmp(url, "https://", 8) == 0)
        h = 8;
    else
        return kq_seterr(why, whylen, KQ_EINVAL, "must start with http:// or https://");
    for (hend = h; hend < len && url[hend] != '/' && url[hend] != '?' && url[hend] != '#'; hend++)
        if (url[hend] == '@')
            return kq_seterr(why, whylen, KQ_EINVAL,
                             "must not carry user:password@ (use an Authorization header)");
    /* url[h..hend) is host[:port] */
    i = h;
    if (i < hend && url[i] == '[') {
        for (i++; i < hend && url[i] != ']'; i++) {
            char c = url[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                  c == ':' || c == '.'))
                return kq_seterr(why, whylen, KQ_EINVAL, "bad IPv6 literal in the host");
        }
        if (i >= hend || i == h + 1)
            return kq_seterr(why, whylen, KQ_EINVAL, "bad IPv6 literal in the host");
        i++;
    } else {
        size_t start = i;
        for (; i < hend && url[i] != ':'; i++) {
            char c = url[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '.' || c == '-' || c == '_' || c == '~' || c == '%'))
                return kq_seterr(why, whylen, KQ_EINVAL,
                                 "the host must be a literal name or address (no '%c', no "
                                 "placeholder)",
                                 c);
        }
        if (i == start)
            return kq_seterr(why, whylen, KQ_EINVAL, "a host is required");
    }
    if (i < hend) {
        long port = 0;
        if (url[i] != ':' || i + 1 == hend)
            return kq_seterr(why, whylen, KQ_EINVAL, "bad port after the host");
        for (i++; i < hend; i++) {
            if (url[i] < '0' || url[i] > '9' || port > 65535)
                return kq_seterr(why, whylen, KQ_EINVAL, "the port must be 1..65535");
            port = port * 10 + (url[i] - '0');
        }
        if (port < 1 || port > 65535)
            return kq_seterr(why, whylen, KQ_EINVAL, "the port must be 1..65535");
    }
    return ev_template_check(url + hend, len - hend, why, whylen);
}

int ev_email_ok(const char *a, size_t len)
{
    const char *at = NULL;

    if (len < 3 || len > EV_EMAIL_MAX || kq_jin_ctl_find(a, len, 0, NULL) >= 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c <= 0x20 || c == 0x7f || strchr("<>,;\"()\\", c) != NULL)
            return 0;
        if (c == '@') {
            if (at != NULL)
                return 0;
            at = a + i;
        }
    }
    return at != NULL && at != a && at != a + len - 1;
}

/* ------------------------------------------------------------------ action JSON -> steps */

static const kq_jin_field http_fields[] = {
    {"type", KQ_JIN_STRING, 1, 0, action_types, 0, 0},
    {"name", KQ_JIN_STRING, 0, 0, NULL, 0, 0},
    {"method", KQ_JIN_STRING, 0, 0, methods, 0, 0},
    {"url", KQ_JIN_STRING, 1, 0, NULL, 0, 0},
    {"headers", KQ_JIN_OBJECT, 0, 0, NULL, 0, 0},
    {"body_template", KQ_JIN_TEXT, 0, 0, NULL, 0, 0},
};

static const kq_jin_field email_fields[] = {
    {"type", KQ_JIN_STRING, 1, 0, action_types, 0, 0},
    {"name", KQ_JIN_STRING, 0, 0, NULL, 0, 0},
    {"to", KQ_JIN_ARRAY, 1, 0, NULL, 0, 0},
    {"subject", KQ_JIN_STRING, 1, 0, NULL, 0, 0},
    {"body_template", KQ_JIN_TEXT, 0, 0, NULL, 0, 0},
};

#define NFIELDS(t) (sizeof(t) / sizeof((t)[0]))

static int check_template(json_t *details, const char *path, const json_t *v)
{
    char why[160];

    if (ev_template_check(json_string_value(v), json_string_length(v), why, sizeof why) != 0) {
        kq_jin_detail_add(details, path, "%s", why);
        return 1;
    }
    return 0;
}

static int header_name_ok(const char *s, size_t n)
{
    if (n < 1 || n > EV_HEADER_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              (ch < 0x80 && ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL)))
            return 0;
    }
    return 1;
}

static int header_name_reserved(const char *s)
{
    return strcasecmp(s, "Host") == 0 || strcasecmp(s, "Content-Length") == 0 ||
           strcasecmp(s, "Transfer-Encoding") == 0 || strcasecmp(s, "Connection") == 0 ||
           strncasecmp(s, "X-Kcqrs-", 8) == 0;
}

static ev_str jview(const json_t *v)
{
    ev_str s = {NULL, 0};

    if (json_is_string(v)) {
        s.ptr = json_string_value(v);
        s.len = (uint32_t)json_string_length(v);
    }
    return s;
}

/* The http part of action `a` at `prefix` into st->action.http (views). Returns details added. */
static size_t parse_http(const json_t *a, const char *prefix, ev_step *st, ev_http_header *headers,
                         json_t *details)
{
    ev_http_action *h = &st->action.http;
    const json_t *v;
    const char *key;
    json_t *hv;
    char path[320];
    size_t bad = 0, k = 0;

    h->body_template = jview(json_object_get(a, "body_template"));
    h->method = EV_HTTP_POST;
    if (json_is_string(v = json_object_get(a, "method")))
        (void)ev_http_method_parse(json_string_value(v), &h->method);
    if (json_is_string(v = json_object_get(a, "url"))) {
        char why[160];
        snprintf(path, sizeof path, "%s.url", prefix);
        /* control characters: the field table's detail already */
        if (kq_jin_ctl_find(json_string_value(v), json_string_length(v), 0, NULL) < 0 &&
            ev_url_check(json_string_value(v), json_string_length(v), why, sizeof why) != 0) {
            kq_jin_detail_add(details, path, "%s", why);
            bad++;
        }
        h->url = jview(v);
    }
    v = json_object_get(a, "headers");
    if (json_is_object(v) && json_object_size(v) > EV_MAX_HEADERS) {
        snprintf(path, sizeof path, "%s.headers", prefix);
        kq_jin_detail_add(details, path, "at most %d headers (got %zu)", EV_MAX_HEADERS,
                          json_object_size(v));
        bad++;
    } else if (json_is_object(v)) {
        json_object_foreach((json_t *)v, key, hv)
        {
            snprintf(path, sizeof path, "%s.headers.%s", prefix, key);
            if (!header_name_ok(key, strlen(key))) {
                kq_jin_detail_add(details, path,
                                  "the name must be an HTTP token (RFC 9110) of 1..%d bytes",
                                  EV_HEADER_NAME_MAX);
                bad++;
            } else if (header_name_reserved(key)) {
                kq_jin_detail_add(details, path,
                                  "Host, Content-Length, Transfer-Encoding, Connection and "
                                  "X-Kcqrs-* are set by the worker");
                bad++;
            } else if (!json_is_string(hv)) {
                kq_jin_detail_add(details, path, "must be a string");
                bad++;
            } else if (kq_jin_check_bytes(details, path, hv, 0, EV_HEADER_VALUE_MAX) ||
                       kq_jin_check_ctl(details, path, hv, KQ_JIN_ALLOW_TAB) ||
                       check_template(details, path, hv)) {
                bad++;
            }
            headers[k].name = ev_str_c(key);
            headers[k].value = jview(hv);
            k++;
        }
        h->headers = ev_header_list_of(headers, (uint32_t)k);
    }
    return bad;
}

/* The email part of action `a` at `prefix` into st->action.email (views). Returns details added. */
static size_t parse_email(const json_t *a, const char *prefix, ev_step *st, ev_str *to,
                          json_t *details)
{
    ev_email_action *m = &st->action.email;
    const json_t *v = json_object_get(a, "to");
    char path[320];
    size_t bad = 0, n;

    if (json_is_array(v)) {
        n = json_array_size(v);
        if (n < 1 || n > EV_MAX_RECIPIENTS) {
            snprintf(path, sizeof path, "%s.to", prefix);
            kq_jin_detail_add(details, path, "must have 1..%d addresses (got %zu)",
                              EV_MAX_RECIPIENTS, n);
            bad++;
        } else {
            for (size_t k = 0; k < n; k++) {
                const json_t *e = json_array_get(v, k);
                snprintf(path, sizeof path, "%s.to[%zu]", prefix, k);
                if (!json_is_string(e) ||
                    !ev_email_ok(json_string_value(e), json_string_length(e))) {
                    kq_jin_detail_add(details, path,
                                      "must be an address like user@example.com (3..%d "
                                      "bytes, one @, no spaces or <>,;\"()\\)",
                                      EV_EMAIL_MAX);
                    bad++;
                }
                to[k] = jview(e);
            }
            m->to = ev_str_list_of(to, (uint32_t)n);
        }
    }
    if (json_is_string(v = json_object_get(a, "subject"))) {
        snprintf(path, sizeof path, "%s.subject", prefix);
        /* control characters (CR, LF...): the field table's detail */
        if (kq_jin_ctl_find(json_string_value(v), json_string_length(v), 0, NULL) < 0 &&
            (kq_jin_check_bytes(details, path, v, 0, EV_SUBJECT_MAX) ||
             check_template(details, path, v)))
            bad++;
        m->subject = jview(v);
    }
    m->body_template = jview(json_object_get(a, "body_template"));
    return bad;
}

/* Validate action `a` at `prefix` and fill st (views). Returns details added. */
static size_t parse_action(const json_t *a, const char *prefix, ev_step *st,
                           ev_http_header *headers, ev_str *to, json_t *details)
{
    const json_t *type = json_object_get(a, "type"), *v;
    char path[320];
    size_t bad = 0;

    if (!json_is_object(a)) {
        kq_jin_detail_add(details, prefix, "must be an object");
        return 1;
    }
    snprintf(path, sizeof path, "%s.type", prefix);
    if (!json_is_string(type)) {
        kq_jin_detail_add(details, path, "%s",
                          type == NULL ? "is required: \"http\" or \"email\""
                                       : "must be \"http\" or \"email\"");
        return 1;
    }
    if (strcmp(json_string_value(type), "email") == 0) {
        bad += kq_jin_validate(a, email_fields, NFIELDS(email_fields), prefix, details);
        st->action_type = EV_ACTION_EMAIL;
    } else if (strcmp(json_string_value(type), "http") == 0) {
        bad += kq_jin_validate(a, http_fields, NFIELDS(http_fields), prefix, details);
        st->action_type = EV_ACTION_HTTP;
    } else {
        kq_jin_detail_add(details, path, "must be \"http\" or \"email\"");
        return 1;
    }
    if (json_is_string(v = json_object_get(a, "name"))) {
        snprintf(path, sizeof path, "%s.name", prefix);
        bad += kq_jin_check_bytes(details, path, v, 1, EV_META_MAX);
        st->name = jview(v);
    }
    if (json_is_string(v = json_object_get(a, "body_template"))) {
        snprintf(path, sizeof path, "%s.body_template", prefix);
        if (!kq_jin_check_bytes(details, path, v, 0, EV_TEMPLATE_MAX))
            bad += check_template(details, path, v);
        else
            bad++;
    }
    if (st->action_type == EV_ACTION_HTTP)
        bad += parse_http(a, prefix, st, headers, details);
    else
        bad += parse_email(a, prefix, st, to, details);
    return bad;
}

void ev_actions_free(ev_actions *a)
{
    free(a->steps);
    free(a->headers);
    free(a->to);
    memset(a, 0, sizeof *a);
}

int ev_actions_parse(const json_t *actions, const char *field, ev_actions *out, json_t *details)
{
    size_t n = json_array_size(actions), bad = 0;
    int rc = 0;

    memset(out, 0, sizeof *out);
    if (!json_is_array(actions)) {
        kq_jin_detail_add(details, field, "must be an array");
        return KQ_EINVAL;
    }
    if (n < 1 || n > EV_MAX_STEPS) {
        kq_jin_detail_add(details, field, "must have 1..%d actions (got %zu)", EV_MAX_STEPS, n);
        return KQ_EINVAL;
    }
    out->steps = calloc(n, sizeof *out->steps);
    out->headers = calloc(n * EV_MAX_HEADERS, sizeof *out->headers);
    out->to = calloc(n * EV_MAX_RECIPIENTS, sizeof *out->to);
    if (out->steps == NULL || out->headers == NULL || out->to == NULL) {
        rc = KQ_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%s[%zu]", field, i);
        bad += parse_action(json_array_get(actions, i), prefix, &out->steps[i],
                            out->headers + i * EV_MAX_HEADERS, out->to + i * EV_MAX_RECIPIENTS,
                            details);
    }
    if (bad > 0)
        rc = KQ_EINVAL;
    out->count = (uint32_t)n;
out:
    if (rc != 0)
        ev_actions_free(out);
    return rc;
}

/* "payload.steps[2].action.url: must ..." -> field "actions[2].url", message. */
static void codec_detail(json_t *details, const char *field, const char *err)
{
    const char *colon = strstr(err, ": ");
    char path[320];
    unsigned long idx;
    int used = 0;

    if (colon != NULL && sscanf(err, "payload.steps[%lu]%n", &idx, &used) == 1 && used > 0 &&
        err + used <= colon) {
        const char *rest = err + used;
        size_t restlen = (size_t)(colon - rest);
        if (restlen >= 7 && strncmp(rest, ".action", 7) == 0) {
            rest += 7;
            restlen -= 7;
        }
        snprintf(path, sizeof path, "%s[%lu]%.*s", field, idx, (int)restlen, rest);
        kq_jin_detail_add(details, path, "%s", colon + 2);
        return;
    }
    kq_jin_detail_add(details, field, "%s", err);
}

int ev_actions_env(const json_t *actions, const char *field, const char *aggregate_id,
                   uint8_t **env, size_t *envlen, json_t *details)
{
    ev_actions a;
    ev_fb_builder b;
    ev_envelope e;
    char err[512];
    int rc;

    *env = NULL;
    *envlen = 0;
    if ((rc = ev_actions_parse(actions, field, &a, details)) != 0)
        return rc;
    ev_envelope_init(&e, EV_WORKFLOW_UPDATED);
    e.aggregate_id = ev_str_c(aggregate_id);
    e.version = 1;
    e.payload.workflow_updated.steps = ev_step_list_of(a.steps, a.count);
    ev_fb_builder_init(&b);
    rc = ev_envelope_encode(&b, &e, err, sizeof err);
    if (rc == 0) {
        size_t len;
        const uint8_t *data = ev_fb_builder_data(&b, &len);
        if ((*env = malloc(len)) == NULL) {
            rc = KQ_ENOMEM;
        } else {
            memcpy(*env, data, len);
            *envlen = len;
        }
    } else if (rc == KQ_EINVAL) {
        codec_detail(details, field, err);
    }
    ev_fb_builder_free(&b);
    ev_actions_free(&a);
    return rc;
}

/* ------------------------------------------------------------------ steps -> action JSON */

/* A view as a JSON string; NULL when invalid UTF-8 or out of memory. */
static json_t *jstr(ev_str s)
{
    return json_stringn(s.ptr ? s.ptr : "", s.len);
}

/* Set key to a new value; -1 (value released) when v is NULL or the set fails. */
static int put(json_t *o, const char *key, json_t *v)
{
    return v == NULL ? -1 : json_object_set_new(o, key, v);
}

json_t *ev_action_json(const ev_step *st)
{
    json_t *a = json_object();
    int bad = a == NULL;

    if (bad)
        return NULL;
    if (st->action_type == EV_ACTION_HTTP) {
        const ev_http_action *h = &st->action.http;
        const char *method = ev_http_method_name(h->method);
        bad |= put(a, "type", json_string("http"));
        if (st->name.ptr)
            bad |= put(a, "name", jstr(st->name));
        bad |= put(a, "method", json_string(method != NULL ? method : "POST"));
        bad |= put(a, "url", jstr(h->url));
        if (h->headers.present && h->headers.count > 0) {
            json_t *hs = json_object();
            bad |= put(a, "headers", hs);
            for (uint32_t i = 0; !bad && i < h->headers.count; i++) {
                ev_http_header hd;
                char name[EV_HEADER_NAME_MAX + 1];
                if (ev_header_list_get(&h->headers, i, &hd) != 0 || hd.name.ptr == NULL ||
                    hd.name.len > EV_HEADER_NAME_MAX || memchr(hd.name.ptr, 0, hd.name.len)) {
                    bad = 1;
                    break;
                }
                memcpy(name, hd.name.ptr, hd.name.len);
                name[hd.name.len] = '\0';
                bad |= put(hs, name, jstr(hd.value));
            }
        }
        if (h->body_template.ptr)
            bad |= put(a, "body_template", jstr(h->body_template));
    } else if (st->action_type == EV_ACTION_EMAIL) {
        const ev_email_action *m = &st->action.email;
        json_t *to = json_array();
        bad |= put(a, "type", json_string("email"));
        if (st->name.ptr)
            bad |= put(a, "name", jstr(st->name));
        bad |= put(a, "to", to);
        for (uint32_t i = 0; !bad && i < m->to.count; i++) {
            ev_str s;
            bad |= ev_str_list_get(&m->to, i, &s) != 0 || json_array_append_new(to, jstr(s)) != 0;
        }
        bad |= put(a, "subject", jstr(m->subject));
        if (m->body_template.ptr)
            bad |= put(a, "body_template", jstr(m->body_template));
    } else {
        bad = 1;
    }
    if (bad) {
        json_decref(a);
        return NULL;
    }
    return a;
}

json_t *ev_actions_json(const ev_step_list *steps)
{
    json_t *arr = json_array();

    if (arr == NULL)
        return NULL;
    for (uint32_t i = 0; steps->present && i < steps->count; i++) {
        ev_step st;
        if (ev_step_list_get(steps, i, &st) != 0 ||
            json_array_append_new(arr, ev_action_json(&st)) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}
