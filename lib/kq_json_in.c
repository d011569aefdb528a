/*
 * kq_json_in.c — strict JSON request bodies; see kq_json_in.h.
 */
#include "kq_json_in.h"
#include "kq_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Length of the valid UTF-8 sequence at p (as jansson judges it), 0 if invalid. */
static size_t utf8_seq(const unsigned char *p)
{
    unsigned c = p[0], cp;
    size_t n;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) /* also stops at the NUL */
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/*
 * Copy `s` into out[outlen], each byte that does not start a valid UTF-8
 * sequence replaced by '?'. jansson refuses a string that is not UTF-8, and a
 * detail can hold such bytes: jansson's own error text quotes the input
 * ("invalid escape near '"\<first byte of a character>'"), and snprintf cuts
 * a long field path or message inside a character.
 */
static void utf8_clean(char *out, size_t outlen, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, n;

    while (*p != '\0' && o + 1 < outlen) {
        if ((n = utf8_seq(p)) == 0) {
            out[o++] = '?';
            p++;
            continue;
        }
        if (o + n >= outlen)
            break;
        memcpy(out + o, p, n);
        o += n;
        p += n;
    }
    out[o] = '\0';
}

int kq_jin_detail_add(json_t *details, const char *field, const char *fmt, ...)
{
    char msg[512], clean_msg[512], clean_field[512];
    va_list ap;
    json_t *d;

    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof msg, fmt, ap) < 0)
        msg[0] = '\0';
    va_end(ap);
    utf8_clean(clean_field, sizeof clean_field, field ? field : "");
    utf8_clean(clean_msg, sizeof clean_msg, msg);
    d = json_pack("{s:s, s:s}", "field", clean_field, "message", clean_msg);
    if (d == NULL || json_array_append_new(details, d) != 0)
        return KQ_ENOMEM;
    return 0;
}

int kq_jin_check_bytes(json_t *details, const char *path, const json_t *v, size_t min, size_t max)
{
    size_t n = json_string_length(v);

    if (n < min || n > max) {
        kq_jin_detail_add(details, path, "must be %zu..%zu bytes (got %zu)", min, max, n);
        return 1;
    }
    return 0;
}

long kq_jin_ctl_find(const char *s, size_t len, unsigned allow, unsigned *cp)
{
    const unsigned char *p = (const unsigned char *)s;

    for (size_t i = 0; i < len; i++) {
        unsigned c = p[i];
        if (c == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f)
            c = p[i + 1]; /* C1: U+0080..U+009F */
        else if (c >= 0x20 && c != 0x7f)
            continue;
        if ((c == '\t' && (allow & KQ_JIN_ALLOW_TAB)) || (c == '\n' && (allow & KQ_JIN_ALLOW_LF)) ||
            (c == '\r' && (allow & KQ_JIN_ALLOW_CR)))
            continue;
        if (cp != NULL)
            *cp = c;
        return (long)i;
    }
    return -1;
}

int kq_jin_check_ctl(json_t *details, const char *path, const json_t *v, unsigned allow)
{
    unsigned cp = 0;
    long at = kq_jin_ctl_find(json_string_value(v), json_string_length(v), allow, &cp);

    if (at < 0)
        return 0;
    kq_jin_detail_add(details, path, "must not contain control characters (U+%04X at byte %ld)%s",
                      cp, at,
                      (allow & KQ_JIN_ALLOW_LF)    ? "; TAB, LF and CR are allowed"
                      : (allow & KQ_JIN_ALLOW_TAB) ? "; TAB is allowed"
                                                   : "");
    return 1;
}

int kq_jin_parse(const char *body, size_t len, json_t **out, json_t *details)
{
    json_error_t err;
    json_t *v;

    if (len == 0) {
        kq_jin_detail_add(details, "body", "request body is empty; a JSON object is required");
        return KQ_EINVAL;
    }
    v = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    if (v == NULL) {
        kq_jin_detail_add(details, "body", "malformed JSON: %s (line %d, column %d)", err.text,
                          err.line, err.column);
        return KQ_EINVAL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        kq_jin_detail_add(details, "body", "must be a JSON object");
        return KQ_EINVAL;
    }
    *out = v;
    return 0;
}

int kq_jin_id_valid(const char *s)
{
    size_t i;
    for (i = 0; s[i] != '\0'; i++) {
        char c = s[i];
        if (i == KQ_JIN_ID_MAX || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return i > 0;
}

size_t kq_jin_utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            n++;
    return n;
}

static const char *type_name(kq_jin_type t)
{
    switch (t) {
    case KQ_JIN_STRING:
        return "a string";
    case KQ_JIN_INT:
        return "an integer";
    case KQ_JIN_BOOL:
        return "a boolean";
    case KQ_JIN_OBJECT:
        return "an object";
    case KQ_JIN_ARRAY:
        return "an array";
    case KQ_JIN_ID:
        return "a string id";
    case KQ_JIN_TEXT:
        return "a string";
    }
    return "?";
}

static int type_ok(const json_t *v, kq_jin_type t)
{
    switch (t) {
    case KQ_JIN_STRING:
    case KQ_JIN_ID:
    case KQ_JIN_TEXT:
        return json_is_string(v);
    case KQ_JIN_INT:
        return json_is_integer(v);
    case KQ_JIN_BOOL:
        return json_is_boolean(v);
    case KQ_JIN_OBJECT:
        return json_is_object(v);
    case KQ_JIN_ARRAY:
        return json_is_array(v);
    }
    return 0;
}

size_t kq_jin_validate(const json_t *obj, const kq_jin_field *fields, size_t n, const char *prefix,
                       json_t *details)
{
    size_t bad = 0;
    const char *key;
    json_t *val;
    char path[256];

#define PATH(name)                                                                                 \
    (snprintf(path, sizeof path, "%s%s%s", prefix ? prefix : "", prefix && *prefix ? "." : "",     \
              (name)),                                                                             \
     path)

    /* Unknown fields first, in the document's order. */
    json_object_foreach((json_t *)obj, key, val)
    {
        size_t i;
        for (i = 0; i < n; i++)
            if (strcmp(fields[i].name, key) == 0)
                break;
        if (i == n) {
            kq_jin_detail_add(details, PATH(key), "unknown field");
            bad++;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const kq_jin_field *f = &fields[i];
        const json_t *v = json_object_get(obj, f->name);

        if (v == NULL) {
            if (f->required) {
                kq_jin_detail_add(details, PATH(f->name), "is required");
                bad++;
            }
            continue;
        }
        if (!type_ok(v, f->type)) {
            kq_jin_detail_add(details, PATH(f->name), "must be %s", type_name(f->type));
            bad++;
            continue;
        }
        if (f->type == KQ_JIN_STRING || f->type == KQ_JIN_ID || f->type == KQ_JIN_TEXT) {
            const char *s = json_string_value(v);
            size_t blen = json_string_length(v);
            if (f->type == KQ_JIN_ID && !kq_jin_id_valid(s)) {
                kq_jin_detail_add(details, PATH(f->name), "must match [A-Za-z0-9._-]{1,64}");
                bad++;
                continue;
            }
            if (kq_jin_check_ctl(details, PATH(f->name), v,
                                 f->type == KQ_JIN_TEXT ? KQ_JIN_ALLOW_LINES : 0) != 0) {
                bad++;
                continue;
            }
            if (f->max_len > 0 && kq_jin_utf8_chars(s, blen) > f->max_len) {
                kq_jin_detail_add(details, PATH(f->name), "longer than %zu characters", f->max_len);
                bad++;
                continue;
            }
            if (f->enum_values != NULL) {
                size_t k;
                char allowed[256] = "";
                size_t al = 0;
                for (k = 0; f->enum_values[k] != NULL; k++)
                    if (strcmp(f->enum_values[k], s) == 0)
                        break;
                if (f->enum_values[k] == NULL) {
                    for (k = 0; f->enum_values[k] != NULL && al < sizeof allowed; k++) {
                        int w = snprintf(allowed + al, sizeof allowed - al, "%s%s", k ? ", " : "",
                                         f->enum_values[k]);
                        if (w < 0)
                            break;
                        al += (size_t)w;
                    }
                    kq_jin_detail_add(details, PATH(f->name), "must be one of: %s", allowed);
                    bad++;
                }
            }
        } else if (f->type == KQ_JIN_INT && f->min < f->max) {
            json_int_t x = json_integer_value(v);
            if (x < f->min || x > f->max) {
                kq_jin_detail_add(details, PATH(f->name), "must be in %lld..%lld", f->min, f->max);
                bad++;
            }
        }
    }
#undef PATH
    return bad;
}

int kq_jin_content_type_ok(const char *ct)
{
    const char *p;
    static const char base[] = "application/json";

    if (ct == NULL)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, base, sizeof base - 1) != 0)
        return 0;
    p = ct + sizeof base - 1;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0')
        return 1;
    if (*p++ != ';')
        return 0;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncasecmp(p, "charset", 7) != 0)
        return 0;
    p += 7;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p++ != '=')
        return 0;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncasecmp(p, "utf-8", 5) == 0)
        p += 5;
    else if (strncasecmp(p, "\"utf-8\"", 7) == 0)
        p += 7;
    else
        return 0;
    while (*p == ' ' || *p == '\t')
        p++;
    return *p == '\0';
}
