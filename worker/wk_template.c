/*
 * wk_template.c — placeholder substitution (see wk_template.h for the rules).
 */
#include "wk_template.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kq_err.h"

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int over;
} sbuf;

static int sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->len + n > WK_TEMPLATE_OUT_MAX) {
        b->over = 1;
        return KQ_ERANGE;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
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

static int is_name_char(char c)
{
    return c != '\0' && c != '.' && c != '}' && c != '{' && c != ' ' && c != '\t' && c != '\r' &&
           c != '\n';
}

/* Append `s` (n bytes) to b, encoded for `mode`. */
static int put_encoded(sbuf *b, const char *s, size_t n, wk_tpl_mode mode, const char *path,
                       char *errstr, size_t errlen)
{
    int rc = 0;
    size_t i, run = 0;
    char esc[8];
    if (mode == WK_TPL_TEXT)
        return sb_put(b, s, n);
    if (mode == WK_TPL_HEADER) {
        if (memchr(s, '\r', n) != NULL || memchr(s, '\n', n) != NULL || memchr(s, '\0', n) != NULL)
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "template: {{%s}} holds a line break, not allowed in a header", path);
        return sb_put(b, s, n);
    }
    for (i = 0; i < n && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *rep = NULL;
        if (mode == WK_TPL_JSON) {
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
        } else { /* URL */
            if (!(isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')) {
                snprintf(esc, sizeof esc, "%%%02X", c);
                rep = esc;
            }
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

/* Render value v for mode. */
static int put_value(sbuf *b, const json_t *v, wk_tpl_mode mode, const char *path, char *errstr,
                     size_t errlen)
{
    int rc;
    char *txt = NULL;
    if (json_is_string(v))
        return put_encoded(b, json_string_value(v), json_string_length(v), mode, path, errstr,
                           errlen);
    if (json_is_null(v))
        return mode == WK_TPL_JSON ? sb_put(b, "null", 4) : 0;
    txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (txt == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "template: out of memory");
    rc = put_encoded(b, txt, strlen(txt), mode, path, errstr, errlen);
    free(txt);
    return rc;
}

int wk_template_render(const char *tpl, const json_t *payload, wk_tpl_mode mode, char **out,
                       size_t *outlen, char *errstr, size_t errlen)
{
    sbuf b = {0};
    int rc = 0;
    json_t *empty = NULL;
    const char *p = tpl;
    *out = NULL;
    if (tpl == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "template is NULL");
    if (payload == NULL)
        payload = empty = json_object();
    if (sb_put(&b, "", 0) != 0) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "template: out of memory");
        goto out;
    }
    while (*p) {
        const char *open = strstr(p, "{{");
        if (open == NULL) {
            rc = sb_put(&b, p, strlen(p));
            break;
        }
        if ((rc = sb_put(&b, p, (size_t)(open - p))) != 0)
            break;
        const char *q = open + 2, *pstart;
        while (*q == ' ' || *q == '\t')
            q++;
        pstart = q;
        if (strncmp(q, "payload", 7) != 0 ||
            (q[7] != '.' && q[7] != '}' && q[7] != ' ' && q[7] != '\t')) {
            rc = kq_seterr(errstr, errlen, KQ_EINVAL,
                           "template: placeholder at offset %zu does not start with 'payload'",
                           (size_t)(open - tpl));
            goto out;
        }
        q += 7;
        const json_t *v = payload;
        char path[256];
        int found = 1;
        while (*q == '.') {
            const char *ns = ++q;
            while (is_name_char(*q))
                q++;
            size_t nl = (size_t)(q - ns);
            if (nl == 0 || nl > 200) {
                rc = kq_seterr(errstr, errlen, KQ_EINVAL,
                               "template: empty or too long name in placeholder at offset %zu",
                               (size_t)(open - tpl));
                goto out;
            }
            if (!found)
                continue;
            char name[201];
            memcpy(name, ns, nl);
            name[nl] = '\0';
            if (json_is_object(v)) {
                v = json_object_get(v, name);
            } else if (json_is_array(v)) {
                char *end;
                unsigned long idx = strtoul(name, &end, 10);
                v = (*end == '\0' && isdigit((unsigned char)name[0])) ? json_array_get(v, idx)
                                                                      : NULL;
            } else {
                v = NULL;
            }
            if (v == NULL)
                found = 0;
        }
        size_t plen = (size_t)(q - pstart);
        snprintf(path, sizeof path, "%.*s", (int)(plen > 250 ? 250 : plen), pstart);
        while (*q == ' ' || *q == '\t')
            q++;
        if (q[0] != '}' || q[1] != '}') {
            rc = kq_seterr(errstr, errlen, KQ_EINVAL,
                           "template: unterminated or malformed placeholder at offset %zu",
                           (size_t)(open - tpl));
            goto out;
        }
        if (!found) {
            rc = kq_seterr(errstr, errlen, KQ_ENOTFOUND, "template: {{%s}} is not in the payload",
                           path);
            goto out;
        }
        if ((rc = put_value(&b, v, mode, path, errstr, errlen)) != 0)
            goto out;
        p = q + 2;
    }
out:
    if (rc == KQ_ERANGE || b.over)
        rc = kq_seterr(errstr, errlen, KQ_ERANGE, "template: rendered text over %d bytes",
                       WK_TEMPLATE_OUT_MAX);
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

int wk_template_is_json_type(const char *ct)
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
