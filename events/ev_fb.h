/*
 * ev_fb.h — kcqrs's own FlatBuffers runtime: builder, verifier, readers.
 *
 * Wire format (the standard one, as flatc writes and reads it; see
 * ARCHITECTURE.md "The event format" for a byte-level walk-through):
 *
 *   buffer   : uoffset root (u32) | [file identifier, 4 bytes] | ... objects ...
 *   table    : soffset (i32) to its vtable (vtable = table - soffset) | inline fields
 *   vtable   : u16 vtable bytes | u16 table bytes | u16 field offset per slot (0 = absent)
 *   string   : u32 length | bytes | NUL
 *   vector   : u32 count | elements (scalars/structs inline, tables/strings as uoffsets)
 *   uoffset  : u32, always relative to its own position and pointing forward
 *   union    : two slots: type (u8) at slot n, value (uoffset to a table) at slot n+1
 *
 * Everything is little-endian; this runtime supports little-endian hosts only
 * (checked at compile time in ev_fb_builder.c).
 *
 * Positions: readers and the verifier name objects by their absolute byte
 * position in the buffer (uint32_t). Position 0 holds the root offset and is
 * never an object, so 0 means "absent".
 *
 * Refs: the builder writes back to front; an ev_fb_ref names an object by its
 * distance from the END of the buffer, which does not change as the buffer
 * grows. 0 means "none".
 *
 * Threads: a builder or verifier belongs to one thread at a time; readers are
 * pure functions of the buffer.
 */
#ifndef EV_FB_H
#define EV_FB_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define EV_FB_MAX_SIZE 0x7fffffffu /* FlatBuffers' 2 GiB limit */
#define EV_FB_MAX_SLOTS 256        /* per table; ample for our schema */

/* ------------------------------------------------------------------ builder */

typedef uint32_t ev_fb_ref;

typedef struct ev_fb_builder {
    uint8_t *buf; /* allocation; data lives in buf[cap - size .. cap) */
    size_t cap, size;
    size_t minalign; /* largest alignment requested so far */
    /* table under construction */
    int in_table;
    size_t table_start;                 /* size when the table was started */
    uint32_t slot_ref[EV_FB_MAX_SLOTS]; /* ref of each field's value, 0 = absent */
    unsigned nslots;                    /* 1 + highest slot used */
    /* vtables written so far, as refs, for deduplication */
    uint32_t *vtables;
    size_t nvtables, vtables_cap;
    int err; /* sticky KQ_E* error; reported by ev_fb_finish() */
    int finished;
} ev_fb_builder;

/* Initialise an empty builder (allocates lazily). */
void ev_fb_builder_init(ev_fb_builder *b);
/* Forget the content but keep the memory, for building the next buffer. */
void ev_fb_builder_reset(ev_fb_builder *b);
/* Release the memory owned by the builder. */
void ev_fb_builder_free(ev_fb_builder *b);

/* Strings: `len` bytes from `s` (need not be NUL-terminated), NUL appended. */
ev_fb_ref ev_fb_create_string(ev_fb_builder *b, const char *s, size_t len);
/* Vector of `count` scalars or structs of `elem_size` bytes, aligned to `align`,
 * copied from `elems` (host = little-endian order). */
ev_fb_ref ev_fb_create_vector(ev_fb_builder *b, const void *elems, size_t count, size_t elem_size,
                              size_t align);
/* Vector of offsets to already-built strings or tables, in the given order. */
ev_fb_ref ev_fb_create_ref_vector(ev_fb_builder *b, const ev_fb_ref *refs, size_t count);

/* Tables: start, add fields in any order, end. No nesting: build children first. */
void ev_fb_table_start(ev_fb_builder *b);
/* Scalar field of `size` (1, 2, 4, 8) bytes, always written (use for optional
 * scalars and forced defaults). */
void ev_fb_table_add_scalar(ev_fb_builder *b, unsigned slot, const void *value, size_t size);
/* Struct field, written inline, aligned to `align`. */
void ev_fb_table_add_struct(ev_fb_builder *b, unsigned slot, const void *data, size_t size,
                            size_t align);
/* Offset field (string, vector, table, union value). A 0 ref adds nothing. */
void ev_fb_table_add_ref(ev_fb_builder *b, unsigned slot, ev_fb_ref ref);
/* Write the vtable (reusing an identical earlier one) and return the table. */
ev_fb_ref ev_fb_table_end(ev_fb_builder *b);

/* Scalars with a schema default: nothing is written when value == def, as
 * flatc does. */
#define EV_FB_ADD_DEFAULTED(name, type)                                                            \
    static inline void ev_fb_add_##name(ev_fb_builder *b, unsigned slot, type v, type def)         \
    {                                                                                              \
        if (v != def)                                                                              \
            ev_fb_table_add_scalar(b, slot, &v, sizeof v);                                         \
    }
EV_FB_ADD_DEFAULTED(u8, uint8_t)
EV_FB_ADD_DEFAULTED(i8, int8_t)
EV_FB_ADD_DEFAULTED(u16, uint16_t)
EV_FB_ADD_DEFAULTED(i16, int16_t)
EV_FB_ADD_DEFAULTED(u32, uint32_t)
EV_FB_ADD_DEFAULTED(i32, int32_t)
EV_FB_ADD_DEFAULTED(u64, uint64_t)
EV_FB_ADD_DEFAULTED(i64, int64_t)
#undef EV_FB_ADD_DEFAULTED

/*
 * Finish the buffer with `root` as root table and an optional 4-byte file
 * identifier (NULL for none). Returns 0, or the first error any builder call
 * met (KQ_ENOMEM, KQ_ERANGE over 2 GiB, KQ_EINVAL for misuse).
 */
int ev_fb_finish(ev_fb_builder *b, ev_fb_ref root, const char *file_ident);
/* The finished buffer; owned by the builder, valid until reset/free. */
const uint8_t *ev_fb_builder_data(const ev_fb_builder *b, size_t *len);

/* ------------------------------------------------------------------ readers */
/* Only for buffers that passed the verifier: readers do no bounds checks. */

static inline uint16_t ev_fb_read_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline uint32_t ev_fb_read_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline uint64_t ev_fb_read_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Position of the root table. */
static inline uint32_t ev_fb_root(const uint8_t *buf)
{
    return ev_fb_read_u32(buf);
}
/* Position of field `slot` of the table at `tpos`, or 0 if absent. */
static inline uint32_t ev_fb_field(const uint8_t *buf, uint32_t tpos, unsigned slot)
{
    uint32_t vt = (uint32_t)((int64_t)tpos - (int32_t)ev_fb_read_u32(buf + tpos));
    uint16_t vsize = ev_fb_read_u16(buf + vt);
    uint32_t at = 4u + 2u * slot;
    uint16_t off;

    if (at + 2u > vsize)
        return 0;
    off = ev_fb_read_u16(buf + vt + at);
    return off ? tpos + off : 0;
}
/* Follow the uoffset stored at `pos`. */
static inline uint32_t ev_fb_deref(const uint8_t *buf, uint32_t pos)
{
    return pos + ev_fb_read_u32(buf + pos);
}
/* String field: pointer to its NUL-terminated bytes and its length, or NULL. */
static inline const char *ev_fb_string(const uint8_t *buf, uint32_t tpos, unsigned slot,
                                       uint32_t *len)
{
    uint32_t f = ev_fb_field(buf, tpos, slot), s;
    if (f == 0) {
        *len = 0;
        return NULL;
    }
    s = ev_fb_deref(buf, f);
    *len = ev_fb_read_u32(buf + s);
    return (const char *)buf + s + 4;
}
/* Vector field: position of its first element and its count, or 0. */
static inline uint32_t ev_fb_vector(const uint8_t *buf, uint32_t tpos, unsigned slot,
                                    uint32_t *count)
{
    uint32_t f = ev_fb_field(buf, tpos, slot), v;
    if (f == 0) {
        *count = 0;
        return 0;
    }
    v = ev_fb_deref(buf, f);
    *count = ev_fb_read_u32(buf + v);
    return v + 4;
}
/* Table field (or union value): position of the child table, or 0. */
static inline uint32_t ev_fb_table(const uint8_t *buf, uint32_t tpos, unsigned slot)
{
    uint32_t f = ev_fb_field(buf, tpos, slot);
    return f ? ev_fb_deref(buf, f) : 0;
}

#define EV_FB_GET(name, type, rd)                                                                  \
    static inline type ev_fb_get_##name(const uint8_t *buf, uint32_t tpos, unsigned slot,          \
                                        type def)                                                  \
    {                                                                                              \
        uint32_t f = ev_fb_field(buf, tpos, slot);                                                 \
        type v;                                                                                    \
        if (f == 0)                                                                                \
            return def;                                                                            \
        rd;                                                                                        \
        return v;                                                                                  \
    }
EV_FB_GET(u8, uint8_t, v = buf[f])
EV_FB_GET(i8, int8_t, v = (int8_t)buf[f])
EV_FB_GET(u16, uint16_t, v = ev_fb_read_u16(buf + f))
EV_FB_GET(i16, int16_t, v = (int16_t)ev_fb_read_u16(buf + f))
EV_FB_GET(u32, uint32_t, v = ev_fb_read_u32(buf + f))
EV_FB_GET(i32, int32_t, v = (int32_t)ev_fb_read_u32(buf + f))
EV_FB_GET(u64, uint64_t, v = ev_fb_read_u64(buf + f))
EV_FB_GET(i64, int64_t, v = (int64_t)ev_fb_read_u64(buf + f))
#undef EV_FB_GET

/* ------------------------------------------------------------------ verifier */

typedef struct ev_fb_verifier {
    const uint8_t *buf;
    size_t len;
    unsigned depth, max_depth; /* nesting of tables entered */
    size_t tables, max_tables; /* total tables verified: bounds the work */
    const char *err;           /* first failure (static text), NULL if none */
    size_t err_pos;            /* byte position it concerns */
} ev_fb_verifier;

#define EV_FB_DEFAULT_MAX_DEPTH 64
#define EV_FB_DEFAULT_MAX_TABLES 100000

/* Prepare to verify `len` bytes at `buf` (borrowed, not copied). */
void ev_fb_verifier_init(ev_fb_verifier *v, const uint8_t *buf, size_t len);

/*
 * Each check returns 0 when the object is safe to read with the readers above,
 * or KQ_ECORRUPT after recording the first failure in v->err / v->err_pos.
 * All arithmetic is done in 64 bits or checked so that no offset, count or
 * size in the buffer can overflow.
 */
/* Size and identifier (if file_ident != NULL), root offset; verifies the root
 * table header and returns its position. */
int ev_fb_verify_root(ev_fb_verifier *v, const char *file_ident, uint32_t *root_tpos);
/* Table header at `tpos`: alignment, soffset, vtable bounds/alignment/size,
 * inline size. Counts against max_tables. */
int ev_fb_verify_table(ev_fb_verifier *v, uint32_t tpos);
/* Inline scalar/struct field: if present, within the table and aligned. */
int ev_fb_verify_field(ev_fb_verifier *v, uint32_t tpos, unsigned slot, size_t size, size_t align);
/* Fails if field `slot` is absent. */
int ev_fb_verify_required(ev_fb_verifier *v, uint32_t tpos, unsigned slot);
/* String field (absent is fine): offset, length, bytes and NUL terminator in
 * bounds. Does not check UTF-8 (see ev_fb_utf8_valid). */
int ev_fb_verify_string(ev_fb_verifier *v, uint32_t tpos, unsigned slot);
/* Vector field of fixed-size elements (absent is fine): *vpos = first element
 * (0 if absent), *count = count. For vectors of offsets pass elem_size 4 and
 * then check each element with ev_fb_verify_string_at / ev_fb_verify_table_at. */
int ev_fb_verify_vector(ev_fb_verifier *v, uint32_t tpos, unsigned slot, size_t elem_size,
                        size_t elem_align, uint32_t *vpos, uint32_t *count);
/* Child table field or union value (absent is fine): verifies the offset and
 * the child's header; *child = its position (0 if absent). */
int ev_fb_verify_table_field(ev_fb_verifier *v, uint32_t tpos, unsigned slot, uint32_t *child);
/* The same checks for a uoffset stored at absolute position `at` (vector elements). */
int ev_fb_verify_string_at(ev_fb_verifier *v, uint32_t at);
int ev_fb_verify_table_at(ev_fb_verifier *v, uint32_t at, uint32_t *child);
/* Nesting: call enter before descending into a child's fields, leave after. */
int ev_fb_verify_enter(ev_fb_verifier *v);
void ev_fb_verify_leave(ev_fb_verifier *v);

/* "what at offset N" into errstr; returns KQ_ECORRUPT. */
int ev_fb_verifier_error(const ev_fb_verifier *v, char *errstr, size_t errlen);

/* 1 if s[0..len) is well-formed UTF-8 (no overlongs, surrogates, > U+10FFFF). */
int ev_fb_utf8_valid(const char *s, size_t len);

#endif
