/*
 * bench_codec.c — single-core throughput of the event codec (ev_codec.h), with
 * its baselines measured in the same process, on the same input.
 *
 * The input is one typical ResourceCreated envelope: random event id, a UUID
 * as aggregate id, version, time, an API key name as actor, UUID command and
 * correlation ids, a 30-character name, a 61-character description and a
 * 32-byte prev_hash (no causation id). Its encoded size is printed with every
 * result (bytes=N).
 *
 * Measurements (ops/s, one thread; bench/run.sh pins it to one CPU):
 *   codec.encode    ev_envelope_encode() into a reused builder: domain
 *                   validation + FlatBuffers build (the version changes every
 *                   iteration, so nothing is loop-invariant)
 *   codec.validate  ev_envelope_validate() alone: the validation share of encode
 *   codec.verify    ev_schema_verify(): bounds, required fields, enums, UTF-8
 *   codec.decode    ev_envelope_decode(): verify + fill the struct with views
 *   codec.base.encode / codec.base.decode — the baseline: a hand-rolled
 *                   fixed-layout format (packed header, u16 string lengths,
 *                   string bytes) written and read by code specialised for
 *                   this one event, giving the same guarantees: encode runs
 *                   the same ev_envelope_validate(), decode checks every length
 *                   against the buffer, enum ranges and UTF-8 (ev_fb_utf8_valid,
 *                   the verifier's own function) and fills the same ev_envelope
 *                   with views. It is the fastest serializer we could write
 *                   without a schema language; the ratio to it is the price of
 *                   FlatBuffers' format and of a generic, descriptor-driven
 *                   verifier.
 *   codec.memcpy    memcpy of the encoded size: the floor no format beats,
 *                   printed for scale (a ratio to it would only say "memcpy is
 *                   cheap", which is why it is not the baseline).
 *
 * Timing: after a warm-up that also calibrates, the operations run round
 * robin in 10 rounds of short slices (a tenth of --min-time-ms each), so
 * interference from the rest of the machine is shared by the codec and its
 * baseline instead of landing on whichever ran at the wrong moment.
 *
 * Usage: bench_codec [--min-time-ms N]   (default 1000 per operation)
 * Exit 0 after printing the RESULT lines; 1 if any call failed or a decoded
 * envelope differs from the input (checked before timing).
 * Threads: one.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ev_codec.h"
#include "ev_fb.h"
#include "ev_schema.h"
#include "kq_err.h"
#include "bench_util.h"

/* Tell the compiler that `p` (and what it points to) is read and may have
 * changed, so a pure call on it is neither hoisted nor removed. */
#define BC_CLOBBER(p) __asm__ volatile("" : "+r"(p) : : "memory")

/* ------------------------------------------------------------------ fixture */

static const uint8_t bc_event_id[16] = {0x9b, 0x2f, 0x41, 0x0c, 0x6e, 0x53, 0x4a, 0x7d,
                                        0xa1, 0x08, 0x3c, 0xe4, 0x5f, 0x90, 0x12, 0xb6};
static const uint8_t bc_prev_hash[EV_HASH_LEN] = {
    0x3a, 0x7f, 0x12, 0x9c, 0xe0, 0x44, 0x5b, 0xd1, 0x08, 0x6e, 0xa3, 0x2c, 0x91, 0xf7, 0x50, 0x0d,
    0xbe, 0x13, 0x87, 0x66, 0x2a, 0xc9, 0x04, 0x7b, 0xe5, 0x38, 0x9d, 0x41, 0xfa, 0x26, 0x6c, 0xb0};

static void bc_fixture(ev_envelope *e)
{
    ev_envelope_init(e, EV_RESOURCE_CREATED);
    memcpy(e->event_id.bytes, bc_event_id, sizeof bc_event_id);
    e->aggregate_type = EV_AGG_RESOURCE;
    e->aggregate_id = ev_str_c("7c9e6679-7425-40de-944b-e07fc1f90ae7");
    e->version = 3;
    e->occurred_at_us = INT64_C(1795300000123456);
    e->actor = ev_str_c("writer-key-01");
    e->command_id = ev_str_c("f47ac10b-58cc-4372-a567-0e02b2c3d479");
    e->correlation_id = ev_str_c("0d4b2c1e-8f3a-4e6b-9c7d-5a1f2e3b4c5d");
    e->prev_hash.ptr = bc_prev_hash;
    e->prev_hash.len = EV_HASH_LEN;
    e->payload.resource_created.name = ev_str_c("Quarterly capacity report 2026");
    e->payload.resource_created.description =
        ev_str_c("Capacity and utilisation figures for the EU-West cluster, Q3.");
    e->payload.resource_created.status = EV_STATUS_ACTIVE;
}

static int bc_str_eq(ev_str a, ev_str b)
{
    if ((a.ptr == NULL) != (b.ptr == NULL))
        return 0;
    return a.ptr == NULL || (a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* 1 if the decoded envelope `d` carries the same ResourceCreated as `e`. */
static int bc_same(const ev_envelope *e, const ev_envelope *d)
{
    const ev_resource_created *x = &e->payload.resource_created, *y = &d->payload.resource_created;
    return memcmp(e->event_id.bytes, d->event_id.bytes, 16) == 0 &&
           e->aggregate_type == d->aggregate_type && bc_str_eq(e->aggregate_id, d->aggregate_id) &&
           e->version == d->version && e->occurred_at_us == d->occurred_at_us &&
           bc_str_eq(e->actor, d->actor) && bc_str_eq(e->command_id, d->command_id) &&
           bc_str_eq(e->correlation_id, d->correlation_id) &&
           bc_str_eq(e->causation_id, d->causation_id) && e->schema_version == d->schema_version &&
           e->prev_hash.len == d->prev_hash.len &&
           (e->prev_hash.len == 0 ||
            memcmp(e->prev_hash.ptr, d->prev_hash.ptr, e->prev_hash.len) == 0) &&
           e->payload_type == d->payload_type && bc_str_eq(x->name, y->name) &&
           bc_str_eq(x->description, y->description) && x->status == y->status;
}

/* ------------------------------------------------------------------ baseline */
/*
 * Fixed layout, little-endian (as the host: ev_fb supports only that):
 *   header (64 bytes): magic "KQB1", aggregate_type u8, payload_type u8,
 *   status u8, flags u8 (bit 0: prev_hash present), schema_version u16,
 *   len[7] u16 (aggregate_id, actor, command_id, correlation_id, causation_id,
 *   name, description; 0xffff = absent), 2 x u16 padding, version i64,
 *   occurred_at_us i64, event_id [16].
 *   Then prev_hash (32 bytes, if present), then the string bytes in that order.
 */
#define BC_BASE_ABSENT 0xffffu
#define BC_NSTR 7

typedef struct bc_base_hdr { /* 64 bytes, no implicit padding */
    char magic[4];
    uint8_t aggregate_type, payload_type, status, flags;
    uint16_t schema_version;
    uint16_t len[BC_NSTR];
    uint16_t pad[2];
    int64_t version, occurred_at_us;
    uint8_t event_id[16];
} bc_base_hdr;
_Static_assert(sizeof(bc_base_hdr) == 64, "bc_base_hdr has implicit padding");

static int bc_base_put(const ev_str *s, uint16_t *len)
{
    if (s->ptr == NULL) {
        *len = BC_BASE_ABSENT;
        return 0;
    }
    if (s->len >= BC_BASE_ABSENT)
        return KQ_ERANGE;
    *len = (uint16_t)s->len;
    return 0;
}

/* Validate `e` (the codec's own domain rules) and write it into out[0..cap).
 * Returns the size, or a negative KQ_E* code. */
static __attribute__((noinline)) long bc_base_encode(const ev_envelope *e, uint8_t *out, size_t cap,
                                                     char *errstr, size_t errlen)
{
    const ev_resource_created *rc = &e->payload.resource_created;
    const ev_str *strs[BC_NSTR] = {&e->aggregate_id, &e->actor, &e->command_id,  &e->correlation_id,
                                   &e->causation_id, &rc->name, &rc->description};
    bc_base_hdr h;
    size_t at;
    int err;

    if ((err = ev_envelope_validate(e, errstr, errlen)) != 0)
        return err;
    if (e->payload_type != EV_RESOURCE_CREATED ||
        (e->prev_hash.ptr != NULL && e->prev_hash.len != EV_HASH_LEN))
        return KQ_EUNSUPPORTED;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, "KQB1", 4);
    h.aggregate_type = (uint8_t)e->aggregate_type;
    h.payload_type = (uint8_t)e->payload_type;
    h.status = (uint8_t)rc->status;
    h.flags = e->prev_hash.ptr != NULL;
    h.schema_version = e->schema_version;
    h.version = e->version;
    h.occurred_at_us = e->occurred_at_us;
    memcpy(h.event_id, e->event_id.bytes, 16);
    at = sizeof h + (h.flags ? EV_HASH_LEN : 0);
    for (int i = 0; i < BC_NSTR; i++) {
        if ((err = bc_base_put(strs[i], &h.len[i])) != 0)
            return err;
        at += strs[i]->ptr ? strs[i]->len : 0;
    }
    if (at > cap)
        return KQ_ERANGE;
    memcpy(out, &h, sizeof h);
    at = sizeof h;
    if (h.flags) {
        memcpy(out + at, e->prev_hash.ptr, EV_HASH_LEN);
        at += EV_HASH_LEN;
    }
    for (int i = 0; i < BC_NSTR; i++)
        if (strs[i]->ptr != NULL) {
            memcpy(out + at, strs[i]->ptr, strs[i]->len);
            at += strs[i]->len;
        }
    return (long)at;
}

/* Check `len` bytes at `buf` and fill `out` with views into it. */
static __attribute__((noinline)) int bc_base_decode(const uint8_t *buf, size_t len,
                                                    ev_envelope *out)
{
    bc_base_hdr h;
    ev_str *strs[BC_NSTR];
    size_t at, need;
    ev_resource_created *rc = &out->payload.resource_created;

    if (len < sizeof h)
        return KQ_ECORRUPT;
    memcpy(&h, buf, sizeof h);
    if (memcmp(h.magic, "KQB1", 4) != 0 || h.payload_type != EV_RESOURCE_CREATED ||
        h.aggregate_type > EV_AGG_RUN || h.status > EV_STATUS_ARCHIVED || h.flags > 1)
        return KQ_ECORRUPT;
    need = sizeof h + (h.flags ? EV_HASH_LEN : 0);
    for (int i = 0; i < BC_NSTR; i++)
        need += h.len[i] == BC_BASE_ABSENT ? 0 : h.len[i];
    if (need != len || h.len[0] == BC_BASE_ABSENT || h.len[5] == BC_BASE_ABSENT)
        return KQ_ECORRUPT; /* aggregate_id and name are required */

    memset(out, 0, sizeof *out);
    strs[0] = &out->aggregate_id;
    strs[1] = &out->actor;
    strs[2] = &out->command_id;
    strs[3] = &out->correlation_id;
    strs[4] = &out->causation_id;
    strs[5] = &rc->name;
    strs[6] = &rc->description;
    memcpy(out->event_id.bytes, h.event_id, 16);
    out->aggregate_type = (ev_aggregate_type)h.aggregate_type;
    out->version = h.version;
    out->occurred_at_us = h.occurred_at_us;
    out->schema_version = h.schema_version;
    out->payload_type = EV_RESOURCE_CREATED;
    rc->status = (ev_resource_status)h.status;
    at = sizeof h;
    if (h.flags) {
        out->prev_hash.ptr = buf + at;
        out->prev_hash.len = EV_HASH_LEN;
        at += EV_HASH_LEN;
    }
    for (int i = 0; i < BC_NSTR; i++) {
        if (h.len[i] == BC_BASE_ABSENT)
            continue;
        if (!ev_fb_utf8_valid((const char *)buf + at, h.len[i]))
            return KQ_ECORRUPT;
        strs[i]->ptr = (const char *)buf + at;
        strs[i]->len = h.len[i];
        at += h.len[i];
    }
    return 0;
}

/* ------------------------------------------------------------------ harness */

/*
 * Everything one measured operation needs. The operations run `n` iterations
 * each call; the harness calls them in short slices, round robin, so that
 * whatever else the machine does in the meantime hits the codec and its
 * baseline alike and their ratio stays meaningful.
 */
typedef struct bc_ctx {
    ev_envelope e, d;
    ev_fb_builder b;
    const uint8_t *fb; /* FlatBuffers envelope (private copy) */
    size_t fblen;
    const uint8_t *base; /* fixed-layout envelope */
    size_t baselen;
    uint8_t scratch[1024];
    int failed;
} bc_ctx;

typedef void (*bc_op_fn)(bc_ctx *c, uint64_t n);

static void bc_op_encode(bc_ctx *c, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        c->e.version = (int64_t)i + 1; /* nothing is loop-invariant */
        if (ev_envelope_encode(&c->b, &c->e, NULL, 0) != 0)
            c->failed = 1;
    }
}

static void bc_op_base_encode(bc_ctx *c, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        uint8_t *q = c->scratch;
        c->e.version = (int64_t)i + 1;
        if (bc_base_encode(&c->e, q, sizeof c->scratch, NULL, 0) < 0)
            c->failed = 1;
        BC_CLOBBER(q);
    }
}

static void bc_op_validate(bc_ctx *c, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        c->e.version = (int64_t)i + 1;
        if (ev_envelope_validate(&c->e, NULL, 0) != 0)
            c->failed = 1;
    }
}

static void bc_op_verify(bc_ctx *c, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *p = c->fb;
        BC_CLOBBER(p);
        if (ev_schema_verify(p, c->fblen, NULL, 0) != 0)
            c->failed = 1;
    }
}

static void bc_op_decode(bc_ctx *c, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *p = c->fb;
        BC_CLOBBER(p);
        if (ev_envelope_decode(p, c->fblen, &c->d, NULL, 0) != 0)
            c->failed = 1;
        BC_CLOBBER(c->d.aggregate_id.ptr);
    }
}

static void bc_op_base_decode(bc_ctx *c, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *p = c->base;
        BC_CLOBBER(p);
        if (bc_base_decode(p, c->baselen, &c->d) != 0)
            c->failed = 1;
        BC_CLOBBER(c->d.aggregate_id.ptr);
    }
}

static void bc_op_memcpy(bc_ctx *c, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *p = c->fb;
        uint8_t *q = c->scratch;
        BC_CLOBBER(p);
        memcpy(q, p, c->fblen);
        BC_CLOBBER(q);
    }
}

typedef struct bc_op {
    const char *name, *baseline, *target;
    bc_op_fn fn;
    int fixed_layout; /* its bytes= is the fixed-layout size */
    uint64_t per_slice, n, ns;
} bc_op;

#define BC_ROUNDS 10

static void bc_result(const bc_op *op, size_t bytes)
{
    printf("RESULT name=%s unit=ops/s value=%.0f", op->name,
           (double)op->n / ((double)op->ns / 1e9));
    if (op->baseline != NULL)
        printf(" baseline=%s", op->baseline);
    if (op->target != NULL)
        printf(" target=%s", op->target);
    printf(" bytes=%zu rounds=%d\n", bytes, BC_ROUNDS);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static bc_ctx c; /* ~1 KiB of scratch plus two envelopes: keep off the stack */
    bc_op ops[] = {
        {"codec.encode", "codec.base.encode", ">=1000000", bc_op_encode, 0, 0, 0, 0},
        {"codec.base.encode", NULL, NULL, bc_op_base_encode, 1, 0, 0, 0},
        {"codec.validate", NULL, NULL, bc_op_validate, 0, 0, 0, 0},
        {"codec.verify", "codec.base.decode", NULL, bc_op_verify, 0, 0, 0, 0},
        {"codec.decode", "codec.base.decode", ">=2000000", bc_op_decode, 0, 0, 0, 0},
        {"codec.base.decode", NULL, NULL, bc_op_base_decode, 1, 0, 0, 0},
        {"codec.memcpy", NULL, NULL, bc_op_memcpy, 0, 0, 0, 0},
    };
    const size_t nops = sizeof ops / sizeof ops[0];
    long min_ms = 1000, baselen;
    uint64_t slice_ns;
    const uint8_t *fb;
    uint8_t *fbcopy = NULL, base[1024];
    size_t fblen = 0;
    char errstr[512];
    int status = 1;

    ev_fb_builder_init(&c.b);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--min-time-ms") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            min_ms = strtol(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || min_ms < 1 || min_ms > 600000)
                goto usage;
        } else {
            goto usage;
        }
    }
    slice_ns = (uint64_t)min_ms * 1000000u / BC_ROUNDS;

    /* Build the input once and check both codecs round-trip it exactly. */
    bc_fixture(&c.e);
    if (ev_envelope_encode(&c.b, &c.e, errstr, sizeof errstr) != 0) {
        fprintf(stderr, "bench_codec: encode: %s\n", errstr);
        goto out;
    }
    fb = ev_fb_builder_data(&c.b, &fblen);
    /* A private copy, so the decoders do not read the builder's buffer while
     * codec.encode rewrites it. */
    if ((fbcopy = malloc(fblen)) == NULL || fblen > sizeof c.scratch)
        goto out;
    memcpy(fbcopy, fb, fblen);
    if (ev_envelope_decode(fbcopy, fblen, &c.d, errstr, sizeof errstr) != 0 ||
        !bc_same(&c.e, &c.d)) {
        fprintf(stderr, "bench_codec: FlatBuffers round trip failed: %s\n", errstr);
        goto out;
    }
    baselen = bc_base_encode(&c.e, base, sizeof base, errstr, sizeof errstr);
    if (baselen < 0 || bc_base_decode(base, (size_t)baselen, &c.d) != 0 || !bc_same(&c.e, &c.d)) {
        fprintf(stderr, "bench_codec: baseline round trip failed (%ld)\n", baselen);
        goto out;
    }
    c.fb = fbcopy;
    c.fblen = fblen;
    c.base = base;
    c.baselen = (size_t)baselen;
    fprintf(stderr, "bench_codec: envelope %zu bytes (FlatBuffers), %ld bytes (fixed layout)\n",
            fblen, baselen);

    /* Warm up and calibrate: iterations per slice for each operation. */
    for (size_t k = 0; k < nops; k++) {
        uint64_t n = 64, t;
        for (;;) {
            uint64_t t0 = bench_now_ns();
            ops[k].fn(&c, n);
            t = bench_now_ns() - t0;
            if (t >= slice_ns / 4 || n >= (UINT64_C(1) << 40))
                break;
            n *= 2;
        }
        ops[k].per_slice = (uint64_t)((double)n * (double)slice_ns / (double)(t ? t : 1)) + 1;
    }
    /* Measure: BC_ROUNDS rounds, every operation once per round. */
    for (int r = 0; r < BC_ROUNDS; r++)
        for (size_t k = 0; k < nops; k++) {
            uint64_t t0 = bench_now_ns();
            ops[k].fn(&c, ops[k].per_slice);
            ops[k].ns += bench_now_ns() - t0;
            ops[k].n += ops[k].per_slice;
        }
    if (c.failed) {
        fprintf(stderr, "bench_codec: a timed call returned an error\n");
        goto out;
    }
    for (size_t k = 0; k < nops; k++)
        bc_result(&ops[k], ops[k].fixed_layout ? (size_t)baselen : fblen);
    status = 0;
    goto out;
usage:
    fprintf(stderr, "usage: %s [--min-time-ms N]\n", argv[0]);
    status = 2;
out:
    ev_fb_builder_free(&c.b);
    free(fbcopy);
    return status;
}
