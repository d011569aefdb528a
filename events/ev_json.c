/*
 * ev_json.c — flatc-compatible JSON for Envelope buffers (see ev_json.h).
 *
 * Encoding parses with jansson, then walks the descriptors depth first:
 * every child object (string, vector, table) of a table is built before the
 * table itself, as the ev_fb builder requires. Decoding verifies the buffer
 * with ev_schema_verify() and then prints it with the unchecked ev_fb readers,
 * into a growable text buffer.
 */
#include "ev_json.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ev_schema.h"
#include "kq_err.h"

#define MAX_FIELDS 32 /* per table; events.fbs has at most 13 */

/* ================================================================ encode */

typedef struct jenc {
    ev_fb_builder *b;
    char path[512]; /* JSON path of the value being encoded, for messages */
    size_t plen;
    char *errstr;
    size_t errlen;
} jenc;

static size_t path_push_name(jenc *j, const char *name)
{
    size_t old = j->plen;
    int w = snprintf(j->path + old, sizeof j->path - old, "%s%s", old ? "." : "", name);

    if (w > 0)
        j->plen = old + (size_t)w < sizeof j->path ? old + (size_t)w : sizeof j->path - 1;
    return old;
}

static size_t path_push_index(jenc *j, size_t i)
{
    size_t old = j->plen;
    int w = snprintf(j->path + old, sizeof j->path - old, "[%zu]", i);

    if (w > 0)
        j->plen = old + (size_t)w < sizeof j->path ? old + (size_t)w : sizeof j->path - 1;
    return old;
}

static void path_pop(jenc *j, size_t old)
{
    j->plen = old;
    j->path[old] = '\0';
}

__attribute__((format(printf, 2, 3))) static int jfail(jenc *j, const char *fmt, ...)
{
    char what[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return kq_seterr(j->errstr, j->errlen, KQ_EINVAL, "%s: %s", j->plen ? j->path : "(root)", what);
}

static const char *jtype(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

static int expect(jenc *j, const json_t *v, json_type want, const char *what)
{
    if (json_typeof(v) == want)
        return 0;
    return jfail(j, "expected %s, got %s", what, jtype(v));
}

/* Integer within [lo, hi]. */
static int get_int(jenc *j, const json_t *v, int64_t lo, int64_t hi, const char *tname,
                   int64_t *out)
{
    json_int_t n;

    if (!json_is_integer(v))
        return jfail(j, "expected integer (%s), got %s", tname, jtype(v));
    n = json_integer_value(v);
    if (n < lo || n > hi)
        return jfail(j, "%lld is out of range for %s (%lld..%lld)", (long long)n, tname,
                     (long long)lo, (long long)hi);
    *out = n;
    return 0;
}

/* Enum value or union type: a name, or the number of a known one. */
static int get_named(jenc *j, const ev_schema_field *f, const json_t *v, int64_t *out)
{
    const char *what = f->kind == EV_K_ENUM ? f->enm->name : f->uni->name;
    int64_t max = f->kind == EV_K_ENUM ? (int64_t)f->enm->count - 1 : (int64_t)f->uni->count;
    int val;

    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n < 0 || n > max)
            return jfail(j, "%lld is not a value of %s", (long long)n, what);
        *out = n;
        return 0;
    }
    if (!json_is_string(v))
        return jfail(j, "expected %s name, got %s", what, jtype(v));
    if (f->kind == EV_K_ENUM)
        val = ev_schema_enum_value(f->enm, json_string_value(v), json_string_length(v));
    else
        val = ev_schema_union_type(f->uni, json_string_value(v), json_string_length(v));
    if (val < 0)
        return jfail(j, "\"%.64s\" is not a value of %s", json_string_value(v), what);
    *out = val;
    return 0;
}

static int enc_table(jenc *j, const ev_schema_table *t, const json_t *obj, ev_fb_ref *out);

/* [ubyte]; a field with an exact length (event_id) must have exactly that
 * many elements, as ev_schema_verify() would otherwise reject the buffer. */
static int enc_vec_ubyte(jenc *j, const ev_schema_field *f, const json_t *v, ev_fb_ref *out)
{
    size_t n, i;
    uint8_t *tmp = NULL;
    int rc = 0;

    if (expect(j, v, JSON_ARRAY, "array"))
        return KQ_EINVAL;
    n = json_array_size(v);
    if (f->len != 0 && n != f->len)
        return jfail(j, "expected exactly %lu elements, got %zu", (unsigned long)f->len, n);
    if (n && (tmp = malloc(n)) == NULL)
        return kq_seterr(j->errstr, j->errlen, KQ_ENOMEM, "out of memory");
    for (i = 0; rc == 0 && i < n; i++) {
        size_t old = path_push_index(j, i);
        int64_t x;
        rc = get_int(j, json_array_get(v, i), 0, 255, "ubyte", &x);
        if (rc == 0)
            tmp[i] = (uint8_t)x;
        path_pop(j, old);
    }
    if (rc == 0)
        *out = ev_fb_create_vector(j->b, tmp, n, 1, 1);
    free(tmp);
    return rc;
}

/* [string] or [table]: build every element, then the vector of offsets. */
static int enc_vec_refs(jenc *j, const ev_schema_field *f, const json_t *v, ev_fb_ref *out)
{
    size_t n, i;
    ev_fb_ref *refs = NULL;
    int rc = 0;

    if (expect(j, v, JSON_ARRAY, "array"))
        return KQ_EINVAL;
    n = json_array_size(v);
    if (n && (refs = malloc(n * sizeof *refs)) == NULL)
        return kq_seterr(j->errstr, j->errlen, KQ_ENOMEM, "out of memory");
    for (i = 0; rc == 0 && i < n; i++) {
        size_t old = path_push_index(j, i);
        const json_t *e = json_array_get(v, i);
        if (f->kind == EV_K_VEC_STRING) {
            if (expect(j, e, JSON_STRING, "string"))
                rc = KQ_EINVAL;
            else
                refs[i] = ev_fb_create_string(j->b, json_string_value(e), json_string_length(e));
        } else {
            rc = enc_table(j, f->table, e, &refs[i]);
        }
        path_pop(j, old);
    }
    if (rc == 0)
        *out = ev_fb_create_ref_vector(j->b, refs, n);
    free(refs);
    return rc;
}

typedef struct fval {
    int present;
    int64_t num;   /* scalars, bools, enums, union types */
    ev_fb_ref ref; /* strings, vectors, tables, union values */
} fval;

static size_t kind_size(uint8_t kind)
{
    switch (kind) {
    case EV_K_LONG:
        return 8;
    case EV_K_INT:
    case EV_K_UINT:
        return 4;
    case EV_K_USHORT:
        return 2;
    case EV_K_BOOL:
    case EV_K_UBYTE:
    case EV_K_ENUM:
    case EV_K_UTYPE:
        return 1;
    default:
        return 0; /* not a scalar */
    }
}

static int enc_field(jenc *j, const ev_schema_table *t, const ev_schema_field *f, const json_t *v,
                     fval *vals, uint32_t idx)
{
    fval *fv = &vals[idx];

    switch ((ev_schema_kind)f->kind) {
    case EV_K_BOOL:
        if (!json_is_boolean(v))
            return jfail(j, "expected true or false, got %s", jtype(v));
        fv->num = json_is_true(v);
        return 0;
    case EV_K_UBYTE:
        return get_int(j, v, 0, UINT8_MAX, "ubyte", &fv->num);
    case EV_K_USHORT:
        return get_int(j, v, 0, UINT16_MAX, "ushort", &fv->num);
    case EV_K_INT:
        return get_int(j, v, INT32_MIN, INT32_MAX, "int", &fv->num);
    case EV_K_UINT:
        return get_int(j, v, 0, UINT32_MAX, "uint", &fv->num);
    case EV_K_LONG:
        return get_int(j, v, INT64_MIN, INT64_MAX, "long", &fv->num);
    case EV_K_ENUM:
    case EV_K_UTYPE:
        return get_named(j, f, v, &fv->num);
    case EV_K_STRING:
        if (expect(j, v, JSON_STRING, "string"))
            return KQ_EINVAL;
        fv->ref = ev_fb_create_string(j->b, json_string_value(v), json_string_length(v));
        return 0;
    case EV_K_VEC_UBYTE:
        return enc_vec_ubyte(j, f, v, &fv->ref);
    case EV_K_VEC_STRING:
    case EV_K_VEC_TABLE:
        return enc_vec_refs(j, f, v, &fv->ref);
    case EV_K_TABLE:
        return enc_table(j, f->table, v, &fv->ref);
    case EV_K_UNION: {
        /* The type row is the previous field (ev_schema.h). */
        const fval *tv = idx > 0 ? &vals[idx - 1] : NULL;
        if (tv == NULL || !tv->present)
            return jfail(j, "union value without %s",
                         idx > 0 ? t->fields[idx - 1].name : "its type");
        if (tv->num == 0)
            return jfail(j, "union value given but %s is NONE", t->fields[idx - 1].name);
        return enc_table(j, f->uni->members[tv->num - 1], v, &fv->ref);
    }
    }
    return jfail(j, "internal error: unknown field kind");
}

static int enc_table(jenc *j, const ev_schema_table *t, const json_t *obj, ev_fb_ref *out)
{
    fval vals[MAX_FIELDS];
    const char *key;
    size_t klen;
    json_t *val;
    int rc;

    if (expect(j, obj, JSON_OBJECT, "object"))
        return KQ_EINVAL;
    if (t->nfields > MAX_FIELDS)
        return jfail(j, "internal error: table %s has too many fields", t->name);

    json_object_keylen_foreach((json_t *)obj, key, klen, val)
    {
        if (ev_schema_field_by_name(t, key, klen) == NULL) {
            size_t old = path_push_name(j, key);
            rc = jfail(j, "unknown field of %s", t->name);
            path_pop(j, old);
            return rc;
        }
    }

    for (uint32_t i = 0; i < t->nfields; i++) {
        const ev_schema_field *f = &t->fields[i];
        size_t old = path_push_name(j, f->name);

        memset(&vals[i], 0, sizeof vals[i]);
        val = json_object_get(obj, f->name);
        if (val == NULL) {
            rc = 0;
            if (f->flags & EV_F_REQUIRED)
                rc = jfail(j, "required field missing");
            else if (f->kind == EV_K_UNION && i > 0 && vals[i - 1].present && vals[i - 1].num)
                rc = jfail(j, "missing (%s is %s)", t->fields[i - 1].name,
                           ev_schema_union_type_name(f->uni, (unsigned)vals[i - 1].num));
        } else if (json_is_null(val)) {
            rc = jfail(j, "null is not allowed (omit the field instead)");
        } else {
            rc = enc_field(j, t, f, val, vals, i);
            vals[i].present = rc == 0;
        }
        path_pop(j, old);
        if (rc)
            return rc;
    }

    /* Largest scalars first, as flatc does, to keep padding small. */
    ev_fb_table_start(j->b);
    for (size_t size = 8; size >= 1; size /= 2) {
        for (uint32_t i = 0; i < t->nfields; i++) {
            const ev_schema_field *f = &t->fields[i];
            const fval *fv = &vals[i];
            if (!fv->present)
                continue;
            if (kind_size(f->kind) == size) {
                uint8_t u8 = (uint8_t)fv->num;
                uint16_t u16 = (uint16_t)fv->num;
                uint32_t u32 = (uint32_t)fv->num;
                uint64_t u64 = (uint64_t)fv->num;
                const void *p = size == 8   ? (const void *)&u64
                                : size == 4 ? (const void *)&u32
                                : size == 2 ? (const void *)&u16
                                            : (const void *)&u8;
                ev_fb_table_add_scalar(j->b, f->slot, p, size);
            } else if (size == 4 && kind_size(f->kind) == 0) {
                ev_fb_table_add_ref(j->b, f->slot, fv->ref);
            }
        }
    }
    *out = ev_fb_table_end(j->b);
    return 0;
}

int ev_json_encode(const char *json, size_t len, ev_fb_builder *b, char *errstr, size_t errlen)
{
    jenc j;
    json_t *root = NULL;
    json_error_t jerr;
    ev_fb_ref ref = 0;
    int rc;

    j.b = b;
    j.plen = 0;
    j.path[0] = '\0';
    j.errstr = errstr;
    j.errlen = errlen;

    if (json == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_EINVAL, "no input");
        goto out;
    }
    if (len > EV_JSON_MAX_INPUT) {
        rc = kq_seterr(errstr, errlen, KQ_EINVAL, "input is %zu bytes, over the limit of %u", len,
                       EV_JSON_MAX_INPUT);
        goto out;
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (root == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_EINVAL, "invalid JSON at line %d column %d: %s",
                       jerr.line, jerr.column, jerr.text);
        goto out;
    }
    ev_fb_builder_reset(b);
    if ((rc = enc_table(&j, &ev_schema_envelope, root, &ref)))
        goto out;
    if ((rc = ev_fb_finish(b, ref, EV_FILE_IDENT)))
        rc = kq_seterr(errstr, errlen, rc, "building the buffer failed: %s", kq_strerror(rc));
out:
    json_decref(root);
    return rc;
}

/* ================================================================ decode */

typedef struct jbuf {
    char *p;
    size_t len, cap;
    int oom;
} jbuf;

static void jb_reserve(jbuf *o, size_t more)
{
    size_t cap;
    char *np;

    if (o->oom || o->cap - o->len > more)
        return;
    cap = o->cap ? o->cap : 1024;
    while (cap - o->len <= more) {
        if (cap > SIZE_MAX / 2) {
            o->oom = 1;
            return;
        }
        cap *= 2;
    }
    if ((np = realloc(o->p, cap)) == NULL) {
        o->oom = 1;
        return;
    }
    o->p = np;
    o->cap = cap;
}

static void jb_put(jbuf *o, const char *s, size_t n)
{
    jb_reserve(o, n);
    if (o->oom)
        return;
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void jb_puts(jbuf *o, const char *s)
{
    jb_put(o, s, strlen(s));
}

static void jb_indent(jbuf *o, unsigned n)
{
    static const char spaces[] = "                                ";

    while (n > 0) {
        unsigned k = n < sizeof spaces - 1 ? n : (unsigned)(sizeof spaces - 1);
        jb_put(o, spaces, k);
        n -= k;
    }
}

/* "\n" + indent, flatc's AddNewLine + AddIndent. */
static void jb_nl(jbuf *o, unsigned indent)
{
    jb_put(o, "\n", 1);
    jb_indent(o, indent);
}

static void jb_i64(jbuf *o, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRId64, v);
    jb_put(o, tmp, (size_t)n);
}

static void jb_u64(jbuf *o, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    jb_put(o, tmp, (size_t)n);
}

static void jb_u16hex(jbuf *o, unsigned v)
{
    static const char hex[] = "0123456789ABCDEF";
    char tmp[6] = {'\\',       'u', hex[(v >> 12) & 15], hex[(v >> 8) & 15], hex[(v >> 4) & 15],
                   hex[v & 15]};
    jb_put(o, tmp, sizeof tmp);
}

/* flatc's EscapeString() with natural_utf8 off; `s` is valid UTF-8 (verified). */
static void jb_string(jbuf *o, const char *s, uint32_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;

    jb_reserve(o, (size_t)len + 2);
    jb_put(o, "\"", 1);
    while (p < end) {
        const unsigned char *run = p;
        while (p < end && *p >= 0x20 && *p <= 0x7e && *p != '"' && *p != '\\')
            p++;
        if (p > run)
            jb_put(o, (const char *)run, (size_t)(p - run));
        if (p >= end)
            break;
        unsigned c = *p;
        switch (c) {
        case '\n':
            jb_put(o, "\\n", 2);
            p++;
            continue;
        case '\t':
            jb_put(o, "\\t", 2);
            p++;
            continue;
        case '\r':
            jb_put(o, "\\r", 2);
            p++;
            continue;
        case '\b':
            jb_put(o, "\\b", 2);
            p++;
            continue;
        case '\f':
            jb_put(o, "\\f", 2);
            p++;
            continue;
        case '"':
            jb_put(o, "\\\"", 2);
            p++;
            continue;
        case '\\':
            jb_put(o, "\\\\", 2);
            p++;
            continue;
        default:
            break;
        }
        /* Decode one code point (ASCII control characters and DEL included). */
        uint32_t ucc;
        int n;
        if (c < 0x80) {
            ucc = c;
            n = 1;
        } else if (c < 0xe0) {
            ucc = c & 0x1f;
            n = 2;
        } else if (c < 0xf0) {
            ucc = c & 0x0f;
            n = 3;
        } else {
            ucc = c & 0x07;
            n = 4;
        }
        if ((size_t)(end - p) < (size_t)n)
            n = (int)(end - p); /* cannot happen on verified input */
        for (int k = 1; k < n; k++)
            ucc = (ucc << 6) | (p[k] & 0x3f);
        p += n;
        if (ucc <= 0xffff) {
            jb_u16hex(o, ucc);
        } else {
            uint32_t base = ucc - 0x10000;
            jb_u16hex(o, (base >> 10) + 0xd800);
            jb_u16hex(o, (base & 0x3ff) + 0xdc00);
        }
    }
    jb_put(o, "\"", 1);
}

static void print_table(jbuf *o, const uint8_t *buf, const ev_schema_table *t, uint32_t tpos,
                        unsigned indent);

/* flatc's vector layout: "[" NL elem ("," NL elem)* NL "]"; an empty one is "[\n\n]". */
static void print_vec_open(jbuf *o)
{
    jb_put(o, "[", 1);
}

static void print_vec_sep(jbuf *o, uint32_t i, unsigned indent)
{
    if (i)
        jb_put(o, ",", 1);
    jb_nl(o, indent);
}

static void print_vec_close(jbuf *o, uint32_t count, unsigned indent)
{
    if (count == 0)
        jb_put(o, "\n", 1);
    jb_nl(o, indent);
    jb_put(o, "]", 1);
}

static void print_field(jbuf *o, const uint8_t *buf, const ev_schema_table *t,
                        const ev_schema_field *f, uint32_t tpos, uint32_t at, unsigned indent)
{
    uint32_t vpos, count;

    switch ((ev_schema_kind)f->kind) {
    case EV_K_BOOL:
        jb_puts(o, buf[at] ? "true" : "false");
        return;
    case EV_K_UBYTE:
        jb_u64(o, buf[at]);
        return;
    case EV_K_USHORT:
        jb_u64(o, ev_fb_read_u16(buf + at));
        return;
    case EV_K_INT:
        jb_i64(o, (int32_t)ev_fb_read_u32(buf + at));
        return;
    case EV_K_UINT:
        jb_u64(o, ev_fb_read_u32(buf + at));
        return;
    case EV_K_LONG:
        jb_i64(o, (int64_t)ev_fb_read_u64(buf + at));
        return;
    case EV_K_ENUM:
        jb_put(o, "\"", 1);
        jb_puts(o, f->enm->values[buf[at]]);
        jb_put(o, "\"", 1);
        return;
    case EV_K_UTYPE:
        jb_put(o, "\"", 1);
        jb_puts(o, ev_schema_union_type_name(f->uni, buf[at]));
        jb_put(o, "\"", 1);
        return;
    case EV_K_STRING: {
        uint32_t s = ev_fb_deref(buf, at);
        jb_string(o, (const char *)buf + s + 4, ev_fb_read_u32(buf + s));
        return;
    }
    case EV_K_VEC_UBYTE:
        vpos = ev_fb_deref(buf, at) + 4;
        count = ev_fb_read_u32(buf + vpos - 4);
        print_vec_open(o);
        for (uint32_t i = 0; i < count; i++) {
            print_vec_sep(o, i, indent + 2);
            jb_u64(o, buf[vpos + i]);
        }
        print_vec_close(o, count, indent);
        return;
    case EV_K_VEC_STRING:
    case EV_K_VEC_TABLE:
        vpos = ev_fb_deref(buf, at) + 4;
        count = ev_fb_read_u32(buf + vpos - 4);
        print_vec_open(o);
        for (uint32_t i = 0; i < count; i++) {
            uint32_t e = ev_fb_deref(buf, vpos + 4u * i);
            print_vec_sep(o, i, indent + 2);
            if (f->kind == EV_K_VEC_STRING)
                jb_string(o, (const char *)buf + e + 4, ev_fb_read_u32(buf + e));
            else
                print_table(o, buf, f->table, e, indent + 2);
        }
        print_vec_close(o, count, indent);
        return;
    case EV_K_TABLE:
        print_table(o, buf, f->table, ev_fb_deref(buf, at), indent);
        return;
    case EV_K_UNION: {
        unsigned type = ev_fb_get_u8(buf, tpos, f->slot - 1u, 0);
        print_table(o, buf, f->uni->members[type - 1], ev_fb_deref(buf, at), indent);
        return;
    }
    }
}

static void print_table(jbuf *o, const uint8_t *buf, const ev_schema_table *t, uint32_t tpos,
                        unsigned indent)
{
    unsigned out = 0;

    jb_put(o, "{", 1);
    for (uint32_t i = 0; i < t->nfields; i++) {
        const ev_schema_field *f = &t->fields[i];
        uint32_t at = ev_fb_field(buf, tpos, f->slot);

        if (at == 0)
            continue;
        if (out++)
            jb_put(o, ",", 1);
        jb_nl(o, indent + 2);
        jb_put(o, "\"", 1);
        jb_puts(o, f->name);
        jb_put(o, "\": ", 3);
        print_field(o, buf, t, f, tpos, at, indent + 2);
    }
    jb_nl(o, indent);
    jb_put(o, "}", 1);
}

int ev_json_decode(const uint8_t *buf, size_t len, char **json, size_t *json_len, char *errstr,
                   size_t errlen)
{
    jbuf o = {NULL, 0, 0, 0};
    int rc;

    *json = NULL;
    *json_len = 0;
    if ((rc = ev_schema_verify(buf, len, errstr, errlen)))
        return rc;
    jb_reserve(&o, len * 2 + 64);
    print_table(&o, buf, &ev_schema_envelope, ev_fb_root(buf), 0);
    jb_put(&o, "\n", 1);
    jb_put(&o, "", 1); /* NUL */
    if (o.oom) {
        free(o.p);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory printing JSON");
    }
    *json = o.p;
    *json_len = o.len - 1;
    return 0;
}

int ev_json_payload_append(const uint8_t *buf, char **json, size_t *len, size_t *cap)
{
    const ev_schema_field *ft = ev_schema_field_by_name(&ev_schema_envelope, "payload_type", 12);
    const ev_schema_field *fv = ev_schema_field_by_name(&ev_schema_envelope, "payload", 7);
    jbuf o = {*json, *len, *cap, 0};
    uint32_t root = ev_fb_root(buf), at;
    unsigned type;

    if (ft == NULL || fv == NULL)
        return KQ_ENOTFOUND;
    type = ev_fb_get_u8(buf, root, ft->slot, 0);
    at = ev_fb_field(buf, root, fv->slot);
    if (type == 0 || type > fv->uni->count || at == 0)
        return KQ_ENOTFOUND;
    print_table(&o, buf, fv->uni->members[type - 1], ev_fb_deref(buf, at), 0);
    jb_reserve(&o, 1);
    if (!o.oom)
        o.p[o.len] = '\0';
    *json = o.p;
    *cap = o.cap;
    if (o.oom)
        return KQ_ENOMEM;
    *len = o.len;
    return 0;
}
