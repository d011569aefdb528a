/*
 * ev_chain.c — the per-partition hash chain check; see ev_chain.h.
 */
#include "ev_chain.h"
#include "ev_codec.h"
#include "kq_err.h"
#include "kq_rand.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

void ev_chain_init(ev_chain *c)
{
    memset(c, 0, sizeof *c);
    c->head_offset = -1;
    c->brk_offset = -1;
    c->expect_offset = -1;
}

void ev_chain_expect(ev_chain *c, const uint8_t hash[EV_HASH_LEN])
{
    c->expect = 1;
    memcpy(c->expect_hash, hash, EV_HASH_LEN);
}

int ev_chain_sha256(const void *buf, size_t len, uint8_t out[EV_HASH_LEN])
{
    unsigned int n = 0;

    if (EVP_Digest(buf != NULL ? buf : "", buf != NULL ? len : 0, out, &n, EVP_sha256(), NULL) !=
            1 ||
        n != EV_HASH_LEN)
        return KQ_EIO;
    return 0;
}

int ev_chain_hex_parse(const char *s, uint8_t out[EV_HASH_LEN])
{
    uint8_t h[EV_HASH_LEN];

    if (s == NULL || strlen(s) != EV_HEX_LEN || kq_hex_decode(s, EV_HASH_LEN, h) != 0)
        return KQ_EINVAL;
    memcpy(out, h, EV_HASH_LEN);
    return 0;
}

const char *ev_chain_break_name(ev_chain_break k)
{
    switch (k) {
    case EV_CHAIN_INTACT:
        return "intact";
    case EV_CHAIN_TOMBSTONE:
        return "tombstone";
    case EV_CHAIN_INVALID:
        return "invalid";
    case EV_CHAIN_PREV_MISMATCH:
        return "prev_hash";
    case EV_CHAIN_NOT_IN_CHAIN:
        return "not_in_chain";
    case EV_CHAIN_HEAD:
        return "head";
    }
    return "unknown";
}

static void set_break(ev_chain *c, ev_chain_break k, int64_t offset, const char *msg)
{
    if (c->brk != EV_CHAIN_INTACT)
        return;
    c->brk = k;
    c->brk_offset = offset;
    snprintf(c->brk_msg, sizeof c->brk_msg, "%s", msg);
}

/* The record at `offset` with hash `h` becomes the last one. */
static void push(ev_chain *c, int64_t offset, const uint8_t h[EV_HASH_LEN])
{
    memcpy(c->h[1], c->h[0], EV_HASH_LEN);
    c->off[1] = c->off[0];
    memcpy(c->h[0], h, EV_HASH_LEN);
    c->off[0] = offset;
    if (c->nprev < 2)
        c->nprev++;
    c->has_head = 1;
    memcpy(c->head, h, EV_HASH_LEN);
    c->head_offset = offset;
    if (c->expect && c->expect_offset < 0 && memcmp(h, c->expect_hash, EV_HASH_LEN) == 0)
        c->expect_offset = offset;
}

int ev_chain_add(ev_chain *c, int64_t offset, const void *value, size_t len)
{
    uint8_t h[EV_HASH_LEN];
    char msg[320], es[200] = "";
    ev_envelope e;
    const uint8_t *prev = NULL; /* NULL: absent or of a wrong length (matches nothing) */
    int valid = 0, has_prev = 0;

    if (ev_chain_sha256(value, value != NULL ? len : 0, h) != 0)
        return KQ_EIO;
    c->records++;
    if (c->brk != EV_CHAIN_INTACT) {
        push(c, offset, h);
        return 0;
    }
    if (value != NULL && ev_envelope_decode(value, len, &e, es, sizeof es) == 0) {
        valid = 1;
        has_prev = e.prev_hash.ptr != NULL;
        if (has_prev && e.prev_hash.len == EV_HASH_LEN)
            prev = e.prev_hash.ptr;
    }

    /* A mismatch at the previous record: its successor (this one) decides. */
    if (c->pending) {
        c->pending = 0;
        if (prev != NULL && c->nprev == 2 && memcmp(prev, c->h[1], EV_HASH_LEN) == 0) {
            snprintf(msg, sizeof msg,
                     "offset %" PRId64 " is not part of the chain (offset %" PRId64
                     " chains to offset %" PRId64 ")",
                     c->pend_off, offset, c->off[1]);
            set_break(c, EV_CHAIN_NOT_IN_CHAIN, c->pend_off, msg);
        } else {
            set_break(c, EV_CHAIN_PREV_MISMATCH, c->pend_off, c->pend_msg);
        }
        push(c, offset, h);
        return 0;
    }
    if (value == NULL) {
        snprintf(msg, sizeof msg, "offset %" PRId64 ": tombstone (null value): an event was erased",
                 offset);
        set_break(c, EV_CHAIN_TOMBSTONE, offset, msg);
    } else if (!valid) {
        snprintf(msg, sizeof msg, "offset %" PRId64 ": not a valid envelope: %s", offset, es);
        set_break(c, EV_CHAIN_INVALID, offset, msg);
    } else if (c->nprev == 0) {
        if (has_prev) {
            snprintf(msg, sizeof msg,
                     "offset %" PRId64 ": has a prev_hash but is the partition's first record "
                     "(records before it removed)",
                     offset);
            set_break(c, EV_CHAIN_PREV_MISMATCH, offset, msg);
        }
    } else if (prev != NULL && c->nprev == 2 && memcmp(prev, c->h[0], EV_HASH_LEN) != 0 &&
               memcmp(prev, c->h[1], EV_HASH_LEN) == 0) {
        /* chains to the record before the last one: the last one was slipped in */
        snprintf(msg, sizeof msg,
                 "offset %" PRId64 " is not part of the chain (offset %" PRId64
                 " chains to offset %" PRId64 ")",
                 c->off[0], offset, c->off[1]);
        set_break(c, EV_CHAIN_NOT_IN_CHAIN, c->off[0], msg);
    } else if (prev == NULL || memcmp(prev, c->h[0], EV_HASH_LEN) != 0) {
        c->pending = 1;
        c->pend_off = offset;
        if (!has_prev)
            snprintf(c->pend_msg, sizeof c->pend_msg,
                     "offset %" PRId64 ": no prev_hash, but offset %" PRId64
                     " comes before it (not written by the chain's writer)",
                     offset, c->off[0]);
        else
            snprintf(c->pend_msg, sizeof c->pend_msg,
                     "offset %" PRId64 ": prev_hash does not match offset %" PRId64 " (%" PRId64
                     " altered, or records between removed)",
                     offset, c->off[0], c->off[0]);
    }
    push(c, offset, h);
    return 0;
}

void ev_chain_finish(ev_chain *c)
{
    if (c->pending) {
        set_break(c, EV_CHAIN_PREV_MISMATCH, c->pend_off, c->pend_msg);
        c->pending = 0;
    }
    if (c->expect && c->expect_offset < 0 && c->brk == EV_CHAIN_INTACT) {
        char msg[320], hx[EV_HEX_LEN + 1];
        kq_hex_encode(c->expect_hash, EV_HASH_LEN, hx);
        snprintf(msg, sizeof msg,
                 "offset %" PRId64 ": the expected head %s is the hash of no record up to here "
                 "(records altered or removed)",
                 c->head_offset, hx);
        set_break(c, EV_CHAIN_HEAD, c->head_offset, msg);
    }
}
