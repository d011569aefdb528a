/*
 * ev_fb_verify.c — the FlatBuffers verifier of ev_fb.h, and a strict UTF-8
 * check.
 *
 * The verifier proves, object by object, that the inline readers of ev_fb.h
 * will only touch bytes inside [buf, buf + len): a schema-specific verifier
 * (events/ev_schema.c, the unit tests) calls the checks below for every
 * field it will read. Rules, as in FlatBuffers' own verifier:
 *   - buffer at most EV_FB_MAX_SIZE bytes, so every position fits in 31 bits;
 *   - uoffsets 4-aligned, non-zero, landing inside the buffer;
 *   - tables 4-aligned with room for their soffset; vtables 2-aligned, fully
 *     inside, size even and >= 4; table inline size >= 4 and inside;
 *   - inline fields after the soffset, inside the table, aligned to their
 *     size (structs to their alignment);
 *   - strings 4-aligned, length + bytes + NUL inside, NUL present;
 *   - vectors: count 4-aligned, count * elem_size inside (computed without
 *     overflow), non-empty element arrays aligned to the element alignment;
 *   - nesting and the number of tables bounded (max_depth, max_tables).
 * All sums are done in uint64_t on values below 2^32, so none can wrap.
 * Positions are relative to the start of the buffer (its address need not be
 * aligned: the readers use memcpy).
 *
 * The first failure is recorded (static text + position); the verifier
 * borrows the buffer and allocates nothing. One thread at a time.
 */
#include "ev_fb.h"

#include <string.h>

#include "kq_err.h"

static int fail(ev_fb_verifier *v, const char *what, uint64_t pos)
{
    if (v->err == NULL) {
        v->err = what;
        v->err_pos = (size_t)pos;
    }
    return KQ_ECORRUPT;
}

void ev_fb_verifier_init(ev_fb_verifier *v, const uint8_t *buf, size_t len)
{
    v->buf = buf;
    v->len = len;
    v->depth = 0;
    v->max_depth = EV_FB_DEFAULT_MAX_DEPTH;
    v->tables = 0;
    v->max_tables = EV_FB_DEFAULT_MAX_TABLES;
    v->err = NULL;
    v->err_pos = 0;
}

/* Table header at tpos; outputs vtable position, vtable size, inline size. */
static int table_header(ev_fb_verifier *v, uint32_t tpos, uint32_t *vt, uint32_t *vsize,
                        uint32_t *tsize)
{
    uint64_t len = v->len;
    int64_t vpos;
    uint32_t vs, ts;

    if (tpos & 3)
        return fail(v, "misaligned table", tpos);
    if ((uint64_t)tpos + 4 > len)
        return fail(v, "table out of bounds", tpos);
    vpos = (int64_t)tpos - (int32_t)ev_fb_read_u32(v->buf + tpos);
    if (vpos < 0 || (uint64_t)vpos + 4 > len)
        return fail(v, "vtable out of bounds", tpos);
    if (vpos & 1)
        return fail(v, "misaligned vtable", (uint64_t)vpos);
    vs = ev_fb_read_u16(v->buf + vpos);
    if (vs < 4 || (vs & 1))
        return fail(v, "bad vtable size", (uint64_t)vpos);
    if ((uint64_t)vpos + vs > len)
        return fail(v, "vtable out of bounds", (uint64_t)vpos);
    ts = ev_fb_read_u16(v->buf + vpos + 2);
    if (ts < 4)
        return fail(v, "bad table size", tpos);
    if ((uint64_t)tpos + ts > len)
        return fail(v, "table out of bounds", tpos);
    *vt = (uint32_t)vpos;
    *vsize = vs;
    *tsize = ts;
    return 0;
}

/*
 * Inline field `slot` of the table at tpos: *pos = its position, 0 if absent.
 * Re-checks the table header (a few compares) so that a caller's mistake
 * cannot turn into an out-of-bounds read.
 */
static int field_at(ev_fb_verifier *v, uint32_t tpos, unsigned slot, size_t size, size_t align,
                    uint32_t *pos)
{
    uint32_t vt, vsize, tsize, off;
    uint64_t at = 4 + 2 * (uint64_t)slot;

    *pos = 0;
    if (table_header(v, tpos, &vt, &vsize, &tsize) != 0)
        return KQ_ECORRUPT;
    if (at + 2 > vsize)
        return 0;
    off = ev_fb_read_u16(v->buf + vt + at);
    if (off == 0)
        return 0;
    if (off < 4 || size > tsize || off > tsize - size)
        return fail(v, "field outside table", (uint64_t)tpos + off);
    if (align > 1 && ((tpos + off) & (align - 1)))
        return fail(v, "misaligned field", (uint64_t)tpos + off);
    *pos = tpos + off;
    return 0;
}

/* The uoffset at `at`: *target = where it points. */
static int follow(ev_fb_verifier *v, uint32_t at, uint32_t *target)
{
    uint32_t o;

    if (at & 3)
        return fail(v, "misaligned offset", at);
    if ((uint64_t)at + 4 > v->len)
        return fail(v, "offset out of bounds", at);
    o = ev_fb_read_u32(v->buf + at);
    if (o == 0 || (uint64_t)at + o >= v->len)
        return fail(v, "offset points outside the buffer", at);
    *target = at + o; /* < len <= EV_FB_MAX_SIZE */
    return 0;
}

int ev_fb_verify_table(ev_fb_verifier *v, uint32_t tpos)
{
    uint32_t vt, vsize, tsize;

    if (v->tables >= v->max_tables)
        return fail(v, "too many tables", tpos);
    v->tables++;
    return table_header(v, tpos, &vt, &vsize, &tsize);
}

int ev_fb_verify_root(ev_fb_verifier *v, const char *file_ident, uint32_t *root_tpos)
{
    size_t need = file_ident ? 8 : 4;
    uint32_t root;

    *root_tpos = 0;
    if (v->len > EV_FB_MAX_SIZE)
        return fail(v, "buffer too large", 0);
    if (v->len < need)
        return fail(v, "buffer too small", 0);
    if (file_ident && memcmp(v->buf + 4, file_ident, 4) != 0)
        return fail(v, "wrong file identifier", 4);
    if (follow(v, 0, &root) != 0 || ev_fb_verify_table(v, root) != 0)
        return KQ_ECORRUPT;
    *root_tpos = root;
    return 0;
}

int ev_fb_verify_field(ev_fb_verifier *v, uint32_t tpos, unsigned slot, size_t size, size_t align)
{
    uint32_t pos;

    return field_at(v, tpos, slot, size, align, &pos);
}

int ev_fb_verify_required(ev_fb_verifier *v, uint32_t tpos, unsigned slot)
{
    uint32_t pos;

    if (field_at(v, tpos, slot, 1, 1, &pos) != 0)
        return KQ_ECORRUPT;
    return pos ? 0 : fail(v, "required field missing", tpos);
}

int ev_fb_verify_string_at(ev_fb_verifier *v, uint32_t at)
{
    uint32_t s, n;

    if (follow(v, at, &s) != 0)
        return KQ_ECORRUPT;
    if (s & 3)
        return fail(v, "misaligned string", s);
    if ((uint64_t)s + 4 > v->len)
        return fail(v, "string out of bounds", s);
    n = ev_fb_read_u32(v->buf + s);
    if ((uint64_t)s + 4 + n + 1 > v->len)
        return fail(v, "string length past end", s);
    if (v->buf[(uint64_t)s + 4 + n] != 0)
        return fail(v, "string not NUL-terminated", s);
    return 0;
}

int ev_fb_verify_string(ev_fb_verifier *v, uint32_t tpos, unsigned slot)
{
    uint32_t f;

    if (field_at(v, tpos, slot, 4, 4, &f) != 0)
        return KQ_ECORRUPT;
    return f ? ev_fb_verify_string_at(v, f) : 0;
}

int ev_fb_verify_vector(ev_fb_verifier *v, uint32_t tpos, unsigned slot, size_t elem_size,
                        size_t elem_align, uint32_t *vpos, uint32_t *count)
{
    uint32_t f, vec, n;
    uint64_t avail;

    *vpos = 0;
    *count = 0;
    if (field_at(v, tpos, slot, 4, 4, &f) != 0)
        return KQ_ECORRUPT;
    if (f == 0)
        return 0;
    if (follow(v, f, &vec) != 0)
        return KQ_ECORRUPT;
    if (vec & 3)
        return fail(v, "misaligned vector", vec);
    if ((uint64_t)vec + 4 > v->len)
        return fail(v, "vector out of bounds", vec);
    n = ev_fb_read_u32(v->buf + vec);
    avail = v->len - ((uint64_t)vec + 4);
    /* n < 2^32 and elem_size <= 2^32 - 1: the product fits in 64 bits */
    if (n != 0 && (elem_size > UINT32_MAX || (uint64_t)n * elem_size > avail))
        return fail(v, "vector length past end", vec);
    if (n != 0 && elem_align > 1 && ((vec + 4) & (elem_align - 1)))
        return fail(v, "misaligned vector elements", vec);
    *vpos = vec + 4;
    *count = n;
    return 0;
}

int ev_fb_verify_table_at(ev_fb_verifier *v, uint32_t at, uint32_t *child)
{
    uint32_t t;

    *child = 0;
    if (follow(v, at, &t) != 0 || ev_fb_verify_table(v, t) != 0)
        return KQ_ECORRUPT;
    *child = t;
    return 0;
}

int ev_fb_verify_table_field(ev_fb_verifier *v, uint32_t tpos, unsigned slot, uint32_t *child)
{
    uint32_t f;

    *child = 0;
    if (field_at(v, tpos, slot, 4, 4, &f) != 0)
        return KQ_ECORRUPT;
    return f ? ev_fb_verify_table_at(v, f, child) : 0;
}

int ev_fb_verify_enter(ev_fb_verifier *v)
{
    if (v->depth >= v->max_depth)
        return fail(v, "tables nested too deep", 0);
    v->depth++;
    return 0;
}

void ev_fb_verify_leave(ev_fb_verifier *v)
{
    if (v->depth > 0)
        v->depth--;
}

int ev_fb_verifier_error(const ev_fb_verifier *v, char *errstr, size_t errlen)
{
    return kq_seterr(errstr, errlen, KQ_ECORRUPT, "%s at offset %zu",
                     v->err ? v->err : "no error recorded", v->err_pos);
}

int ev_fb_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end;

    if (len == 0)
        return 1;
    end = p + len;
    while (p < end) {
        unsigned c = *p;
        unsigned lo = 0x80, hi = 0xbf; /* range of the second byte */
        uint64_t w;

        if (end - p >= 8) { /* ASCII runs, 8 bytes at a time */
            memcpy(&w, p, sizeof w);
            if ((w & 0x8080808080808080ull) == 0) {
                p += 8;
                continue;
            }
        }
        if (c < 0x80) {
            p++;
        } else if (c < 0xc2) { /* continuation byte, or overlong C0/C1 */
            return 0;
        } else if (c < 0xe0) {
            if (end - p < 2 || (p[1] & 0xc0) != 0x80)
                return 0;
            p += 2;
        } else if (c < 0xf0) {
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates D800..DFFF */
            if (end - p < 3 || p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80)
                return 0;
            p += 3;
        } else if (c < 0xf5) {
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
            if (end - p < 4 || p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80 ||
                (p[3] & 0xc0) != 0x80)
                return 0;
            p += 4;
        } else {
            return 0;
        }
    }
    return 1;
}
