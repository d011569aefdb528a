/*
 * ev_fb_builder.c — the FlatBuffers builder of ev_fb.h.
 *
 * The buffer grows from the end of one allocation towards its start, as in
 * every FlatBuffers builder: data lives in buf[cap - size .. cap), so an
 * object's distance from the end (its ev_fb_ref) never changes, and children
 * are written before the parents that point at them, which makes every
 * uoffset point forward. When the allocation is full, a twice larger one is
 * taken and the data copied to its end.
 *
 * Alignment follows FlatBuffers exactly, so that for the same calls in the
 * same order the bytes equal those flatc writes: before an object of `len`
 * bytes that needs alignment `a`, zero padding is written so that the
 * object's end distance is a multiple of `a`; the largest `a` seen
 * (minalign) pads the finished buffer so that distances from the end and
 * positions from the start agree modulo every alignment used.
 *
 * Tables: fields are written as they are added (scalars inline, offsets as
 * uoffsets); slot_ref remembers where. table_end writes the soffset, then the
 * vtable — unless a byte-identical vtable was written earlier in this buffer,
 * in which case the soffset points at that one (vtable deduplication).
 *
 * Errors are sticky: the first one is kept in b->err, every later call does
 * nothing, and ev_fb_finish() returns it. Memory: the builder owns buf and
 * vtables; ev_fb_builder_free() releases them. One thread at a time.
 */
#include "ev_fb.h"

#include <stdlib.h>
#include <string.h>

#include "kq_err.h"

#if !defined(__BYTE_ORDER__) || !defined(__ORDER_LITTLE_ENDIAN__)
#error "cannot tell the byte order of this host"
#endif
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "ev_fb supports little-endian hosts only");

#define INITIAL_CAP 256
#define MAX_ALIGN 256 /* largest alignment accepted for structs and vectors */

static void set_err(ev_fb_builder *b, int err)
{
    if (b->err == 0)
        b->err = err;
}

static int valid_align(size_t align)
{
    return align != 0 && align <= MAX_ALIGN && (align & (align - 1)) == 0;
}

/* Make room for `n` more bytes in front of the data. */
static int grow(ev_fb_builder *b, size_t n)
{
    size_t cap = b->cap ? b->cap : INITIAL_CAP;
    uint8_t *nbuf;

    if (n > EV_FB_MAX_SIZE - b->size) {
        set_err(b, KQ_ERANGE);
        return -1;
    }
    while (cap - b->size < n)
        cap *= 2; /* size + n <= 2^31 - 1, so cap stops at 2^31 */
    nbuf = malloc(cap);
    if (nbuf == NULL) {
        set_err(b, KQ_ENOMEM);
        return -1;
    }
    if (b->size)
        memcpy(nbuf + cap - b->size, b->buf + b->cap - b->size, b->size);
    free(b->buf);
    b->buf = nbuf;
    b->cap = cap;
    return 0;
}

/*
 * Write the zero padding that makes an object of `len` bytes end `align`
 * aligned, then make room for `extra` + `len` bytes in front of it and return
 * where they start (the object's `len` bytes are the last ones; `extra` is a
 * header such as a length that precedes it). NULL on error (b->err set).
 * Callers keep len + extra <= EV_FB_MAX_SIZE.
 */
static uint8_t *alloc_aligned(ev_fb_builder *b, size_t len, size_t align, size_t extra)
{
    size_t pad = (0 - (b->size + len)) & (align - 1);
    size_t n = pad + len + extra;

    if (align > b->minalign)
        b->minalign = align;
    if ((n > b->cap - b->size || n > EV_FB_MAX_SIZE - b->size) && grow(b, n) != 0)
        return NULL;
    memset(b->buf + b->cap - b->size - pad, 0, pad);
    b->size += n;
    return b->buf + b->cap - b->size;
}

static void put_u16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, sizeof v);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, sizeof v);
}

/* May a new string or vector be written now? Misuse sets KQ_EINVAL. */
static int can_create(ev_fb_builder *b)
{
    if (b->err)
        return 0;
    if (b->in_table || b->finished) {
        set_err(b, KQ_EINVAL);
        return 0;
    }
    return 1;
}

/* May field `slot` be added now? */
static int can_add(ev_fb_builder *b, unsigned slot)
{
    if (b->err)
        return 0;
    if (!b->in_table || slot >= EV_FB_MAX_SLOTS || b->slot_ref[slot] != 0) {
        set_err(b, KQ_EINVAL);
        return 0;
    }
    return 1;
}

static void note_slot(ev_fb_builder *b, unsigned slot)
{
    b->slot_ref[slot] = (uint32_t)b->size;
    if (slot >= b->nslots)
        b->nslots = slot + 1;
}

void ev_fb_builder_init(ev_fb_builder *b)
{
    memset(b, 0, sizeof *b);
    b->minalign = 1;
}

void ev_fb_builder_reset(ev_fb_builder *b)
{
    memset(b->slot_ref, 0, b->nslots * sizeof b->slot_ref[0]);
    b->nslots = 0;
    b->size = 0;
    b->minalign = 1;
    b->in_table = 0;
    b->table_start = 0;
    b->nvtables = 0;
    b->err = 0;
    b->finished = 0;
}

void ev_fb_builder_free(ev_fb_builder *b)
{
    free(b->buf);
    free(b->vtables);
    ev_fb_builder_init(b);
}

ev_fb_ref ev_fb_create_string(ev_fb_builder *b, const char *s, size_t len)
{
    uint8_t *p;

    if (!can_create(b))
        return 0;
    if (s == NULL && len != 0) {
        set_err(b, KQ_EINVAL);
        return 0;
    }
    if (len > EV_FB_MAX_SIZE - 5) {
        set_err(b, KQ_ERANGE);
        return 0;
    }
    /* u32 length | bytes | NUL, the bytes + NUL ending 4-aligned */
    p = alloc_aligned(b, len + 1, 4, 4);
    if (p == NULL)
        return 0;
    put_u32(p, (uint32_t)len);
    if (len)
        memcpy(p + 4, s, len);
    p[4 + len] = 0;
    return (ev_fb_ref)b->size;
}

ev_fb_ref ev_fb_create_vector(ev_fb_builder *b, const void *elems, size_t count, size_t elem_size,
                              size_t align)
{
    size_t bytes;
    uint8_t *p;

    if (!can_create(b))
        return 0;
    if (elem_size == 0 || !valid_align(align) || (elems == NULL && count != 0)) {
        set_err(b, KQ_EINVAL);
        return 0;
    }
    if (count > (EV_FB_MAX_SIZE - 4) / elem_size) {
        set_err(b, KQ_ERANGE);
        return 0;
    }
    bytes = count * elem_size;
    /* Elements end aligned to max(4, align): they start `align`-aligned and
     * the u32 count right before them is 4-aligned. */
    p = alloc_aligned(b, bytes, align < 4 ? 4 : align, 4);
    if (p == NULL)
        return 0;
    put_u32(p, (uint32_t)count);
    if (bytes)
        memcpy(p + 4, elems, bytes);
    return (ev_fb_ref)b->size;
}

ev_fb_ref ev_fb_create_ref_vector(ev_fb_builder *b, const ev_fb_ref *refs, size_t count)
{
    size_t i, end;
    uint8_t *p;

    if (!can_create(b))
        return 0;
    if (refs == NULL && count != 0) {
        set_err(b, KQ_EINVAL);
        return 0;
    }
    for (i = 0; i < count; i++) {
        if (refs[i] == 0 || refs[i] > b->size) {
            set_err(b, KQ_EINVAL);
            return 0;
        }
    }
    if (count > (EV_FB_MAX_SIZE - 4) / 4) {
        set_err(b, KQ_ERANGE);
        return 0;
    }
    p = alloc_aligned(b, count * 4, 4, 4);
    if (p == NULL)
        return 0;
    put_u32(p, (uint32_t)count);
    /* element i sits at distance `end - 4 * i` from the end of the buffer */
    end = b->size - 4;
    for (i = 0; i < count; i++)
        put_u32(p + 4 + 4 * i, (uint32_t)(end - 4 * i - refs[i]));
    return (ev_fb_ref)b->size;
}

void ev_fb_table_start(ev_fb_builder *b)
{
    if (!can_create(b))
        return;
    b->in_table = 1;
    b->table_start = b->size;
}

void ev_fb_table_add_scalar(ev_fb_builder *b, unsigned slot, const void *value, size_t size)
{
    uint8_t *p;

    if (!can_add(b, slot))
        return;
    if ((size != 1 && size != 2 && size != 4 && size != 8) || value == NULL) {
        set_err(b, KQ_EINVAL);
        return;
    }
    p = alloc_aligned(b, size, size, 0);
    if (p == NULL)
        return;
    memcpy(p, value, size);
    note_slot(b, slot);
}

void ev_fb_table_add_struct(ev_fb_builder *b, unsigned slot, const void *data, size_t size,
                            size_t align)
{
    uint8_t *p;

    if (!can_add(b, slot))
        return;
    if (size == 0 || size > 0xffff || !valid_align(align) || data == NULL) {
        set_err(b, KQ_EINVAL);
        return;
    }
    p = alloc_aligned(b, size, align, 0);
    if (p == NULL)
        return;
    memcpy(p, data, size);
    note_slot(b, slot);
}

void ev_fb_table_add_ref(ev_fb_builder *b, unsigned slot, ev_fb_ref ref)
{
    uint8_t *p;

    if (!can_add(b, slot) || ref == 0)
        return;
    if (ref > b->table_start) { /* not built yet, or inside this table */
        set_err(b, KQ_EINVAL);
        return;
    }
    p = alloc_aligned(b, 4, 4, 0);
    if (p == NULL)
        return;
    put_u32(p, (uint32_t)(b->size - ref));
    note_slot(b, slot);
}

/* Remember a new vtable (by ref) for deduplication. */
static int add_vtable(ev_fb_builder *b, uint32_t ref)
{
    if (b->nvtables == b->vtables_cap) {
        size_t ncap = b->vtables_cap ? 2 * b->vtables_cap : 16;
        uint32_t *nv = realloc(b->vtables, ncap * sizeof *nv);

        if (nv == NULL) {
            set_err(b, KQ_ENOMEM);
            return -1;
        }
        b->vtables = nv;
        b->vtables_cap = ncap;
    }
    b->vtables[b->nvtables++] = ref;
    return 0;
}

ev_fb_ref ev_fb_table_end(ev_fb_builder *b)
{
    size_t loc, tsize, vsize, i;
    uint32_t vt_ref = 0;
    uint8_t *p, *vt;
    int32_t soff;

    if (b->err)
        return 0;
    if (!b->in_table) {
        set_err(b, KQ_EINVAL);
        return 0;
    }
    /* soffset to the vtable; its value is known once the vtable is placed */
    if (alloc_aligned(b, 4, 4, 0) == NULL)
        return 0;
    loc = b->size;
    tsize = loc - b->table_start;
    if (tsize > 0xffff) {
        set_err(b, KQ_ERANGE);
        return 0;
    }
    /* Write the candidate vtable in front of the data without committing it
     * (the size does not include it until it turns out to be new). */
    vsize = 4 + 2 * (size_t)b->nslots;
    if ((vsize > b->cap - b->size || vsize > EV_FB_MAX_SIZE - b->size) && grow(b, vsize) != 0)
        return 0;
    vt = b->buf + b->cap - b->size - vsize;
    put_u16(vt, (uint16_t)vsize);
    put_u16(vt + 2, (uint16_t)tsize);
    for (i = 0; i < b->nslots; i++) {
        put_u16(vt + 4 + 2 * i, b->slot_ref[i] ? (uint16_t)(loc - b->slot_ref[i]) : 0);
        b->slot_ref[i] = 0;
    }
    b->nslots = 0;
    for (i = 0; i < b->nvtables; i++) {
        const uint8_t *old = b->buf + b->cap - b->vtables[i];
        if (ev_fb_read_u16(old) == vsize && memcmp(old, vt, vsize) == 0) {
            vt_ref = b->vtables[i];
            break;
        }
    }
    if (vt_ref == 0) {
        b->size += vsize; /* commit the new vtable */
        vt_ref = (uint32_t)b->size;
        if (add_vtable(b, vt_ref) != 0)
            return 0;
    }
    /* table position - vtable position, both measured from the start */
    soff = (int32_t)((int64_t)vt_ref - (int64_t)loc);
    p = b->buf + b->cap - loc;
    memcpy(p, &soff, sizeof soff);
    b->in_table = 0;
    return (ev_fb_ref)loc;
}

int ev_fb_finish(ev_fb_builder *b, ev_fb_ref root, const char *file_ident)
{
    size_t idlen = file_ident ? 4 : 0;
    uint8_t *p;

    if (b->err)
        return b->err;
    if (b->in_table || b->finished || root == 0 || root > b->size ||
        (file_ident && strnlen(file_ident, 4) < 4)) {
        set_err(b, KQ_EINVAL);
        return b->err;
    }
    /* root uoffset | identifier, aligned so the whole buffer is minalign'ed */
    p = alloc_aligned(b, 4 + idlen, b->minalign, 0);
    if (p == NULL)
        return b->err;
    put_u32(p, (uint32_t)(b->size - root));
    if (file_ident)
        memcpy(p + 4, file_ident, 4);
    b->finished = 1;
    return 0;
}

const uint8_t *ev_fb_builder_data(const ev_fb_builder *b, size_t *len)
{
    if (!b->finished) {
        *len = 0;
        return NULL;
    }
    *len = b->size;
    return b->buf + b->cap - b->size;
}
