/*
 * test_ev_chain.c — the hash chain check over crafted record streams: an
 * intact chain, and every kind of break at the offset it must name (a
 * tombstone, bytes that are not an envelope, an altered record, a removed
 * record, a forged record with a copied or a wrong prev_hash, a first record
 * with a prev_hash, an expected head that is in the chain or is not).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ev_chain.h"
#include "ev_codec.h"
#include "ev_fb.h"
#include "kq_err.h"
#include "kq_rand.h"

#define N 8

typedef struct rec {
    uint8_t *buf; /* NULL: tombstone */
    size_t len;
} rec;

/* An encoded ResourceCreated/Updated of id r<k>, version k, name `name`,
 * chained on `prev` (NULL: no prev_hash). */
static rec mk(int k, const char *name, const uint8_t *prev)
{
    ev_fb_builder b;
    ev_envelope e;
    char id[16], err[256];
    const uint8_t *p;
    rec r;

    snprintf(id, sizeof id, "r%d", k);
    ev_fb_builder_init(&b);
    ev_envelope_init(&e, EV_RESOURCE_CREATED);
    e.aggregate_id = ev_str_c(id);
    e.version = 1;
    e.occurred_at_us = 1700000000000000LL + k;
    e.actor = ev_str_c("tester");
    e.payload.resource_created.name = ev_str_c(name);
    e.payload.resource_created.description = ev_str_c("");
    if (prev != NULL) {
        e.prev_hash.ptr = prev;
        e.prev_hash.len = EV_HASH_LEN;
    }
    if (ev_envelope_encode(&b, &e, err, sizeof err) != 0)
        fail_msg("%s", err);
    p = ev_fb_builder_data(&b, &r.len);
    r.buf = malloc(r.len);
    assert_non_null(r.buf);
    memcpy(r.buf, p, r.len);
    ev_fb_builder_free(&b);
    return r;
}

static void hash_of(const rec *r, uint8_t out[EV_HASH_LEN])
{
    assert_int_equal(ev_chain_sha256(r->buf, r->len, out), 0);
}

/* A proper chain of n records into rs. */
static void chain(rec *rs, int n)
{
    uint8_t h[EV_HASH_LEN];
    for (int k = 0; k < n; k++) {
        rs[k] = mk(k, "name", k == 0 ? NULL : h);
        hash_of(&rs[k], h);
    }
}

static void free_recs(rec *rs, int n)
{
    for (int k = 0; k < n; k++)
        free(rs[k].buf);
}

/* Feed rs[0..n) at offsets base + index*step; finish. */
static void feed(ev_chain *c, const rec *rs, int n)
{
    for (int k = 0; k < n; k++)
        assert_int_equal(ev_chain_add(c, 10 + k, rs[k].buf, rs[k].len), 0);
    ev_chain_finish(c);
}

static void test_intact(void **state)
{
    rec rs[N];
    ev_chain c;
    uint8_t h[EV_HASH_LEN];

    (void)state;
    ev_chain_init(&c);
    ev_chain_finish(&c);
    assert_int_equal(c.brk, EV_CHAIN_INTACT);
    assert_int_equal(c.has_head, 0);
    assert_int_equal(c.records, 0);

    chain(rs, N);
    ev_chain_init(&c);
    feed(&c, rs, N);
    assert_int_equal(c.brk, EV_CHAIN_INTACT);
    assert_int_equal(c.records, N);
    assert_int_equal(c.has_head, 1);
    assert_int_equal(c.head_offset, 10 + N - 1);
    hash_of(&rs[N - 1], h);
    assert_memory_equal(c.head, h, EV_HASH_LEN);
    free_recs(rs, N);
}

static void test_tombstone(void **state)
{
    rec rs[N];
    ev_chain c;

    (void)state;
    chain(rs, N);
    free(rs[3].buf);
    rs[3].buf = NULL;
    rs[3].len = 0;
    ev_chain_init(&c);
    feed(&c, rs, N);
    assert_int_equal(c.brk, EV_CHAIN_TOMBSTONE);
    assert_int_equal(c.brk_offset, 13);
    assert_non_null(strstr(c.brk_msg, "offset 13: tombstone"));
    assert_int_equal(c.records, N); /* still counted to the end */
    assert_int_equal(c.head_offset, 10 + N - 1);
    free_recs(rs, N);
}

static void test_invalid(void **state)
{
    rec rs[N];
    ev_chain c;

    (void)state;
    chain(rs, N);
    memset(rs[2].buf, 0xff, 8); /* root offset and identifier: not an envelope */
    ev_chain_init(&c);
    feed(&c, rs, N);
    assert_int_equal(c.brk, EV_CHAIN_INVALID);
    assert_int_equal(c.brk_offset, 12);
    assert_non_null(strstr(c.brk_msg, "not a valid envelope"));
    free_recs(rs, N);
}

/* A record altered in place (another name, same prev_hash): its successor
 * no longer matches; the break names the successor and the altered one. */
static void test_altered(void **state)
{
    rec rs[N];
    ev_chain c;
    uint8_t h[EV_HASH_LEN];

    (void)state;
    chain(rs, N);
    /* record 4 (offset 14) rebuilt with its own prev_hash but another name */
    hash_of(&rs[3], h);
    free(rs[4].buf);
    rs[4] = mk(4, "nAme", h);
    ev_chain_init(&c);
    feed(&c, rs, N);
    assert_int_equal(c.brk, EV_CHAIN_PREV_MISMATCH);
    assert_int_equal(c.brk_offset, 15);
    assert_string_equal(c.brk_msg, "offset 15: prev_hash does not match offset 14 (14 altered, or "
                                   "records between removed)");
    free_recs(rs, N);
}

/* A record removed from the middle: the next one names the gap. */
static void test_removed(void **state)
{
    rec rs[N];
    ev_chain c;

    (void)state;
    chain(rs, N);
    ev_chain_init(&c);
    for (int k = 0; k < N; k++)
        if (k != 4)
            assert_int_equal(ev_chain_add(&c, 10 + k, rs[k].buf, rs[k].len), 0);
    ev_chain_finish(&c);
    assert_int_equal(c.brk, EV_CHAIN_PREV_MISMATCH);
    assert_int_equal(c.brk_offset, 15);
    assert_non_null(strstr(c.brk_msg, "does not match offset 13"));
    assert_int_equal(c.records, N - 1);
    free_recs(rs, N);
}

/* A forged record between 2 and 3, with 2's hash copied as its prev_hash (so
 * it looks chained), or with a wrong one: both are "not part of the chain". */
static void test_forged(void **state)
{
    rec rs[N], forged[2];
    ev_chain c;
    uint8_t h2[EV_HASH_LEN], junk[EV_HASH_LEN];

    (void)state;
    chain(rs, N);
    hash_of(&rs[2], h2);
    memset(junk, 0x5a, sizeof junk);
    forged[0] = mk(99, "forged", h2);
    forged[1] = mk(99, "forged", junk);
    for (int f = 0; f < 2; f++) {
        ev_chain_init(&c);
        for (int k = 0; k <= 2; k++)
            assert_int_equal(ev_chain_add(&c, k, rs[k].buf, rs[k].len), 0);
        assert_int_equal(ev_chain_add(&c, 3, forged[f].buf, forged[f].len), 0);
        for (int k = 3; k < N; k++)
            assert_int_equal(ev_chain_add(&c, k + 1, rs[k].buf, rs[k].len), 0);
        ev_chain_finish(&c);
        assert_int_equal(c.brk, EV_CHAIN_NOT_IN_CHAIN);
        assert_int_equal(c.brk_offset, 3);
        assert_string_equal(c.brk_msg,
                            "offset 3 is not part of the chain (offset 4 chains to offset 2)");
    }
    /* a forged last record with a wrong prev_hash: a mismatch, decided at the end */
    ev_chain_init(&c);
    for (int k = 0; k < N; k++)
        assert_int_equal(ev_chain_add(&c, k, rs[k].buf, rs[k].len), 0);
    assert_int_equal(ev_chain_add(&c, N, forged[1].buf, forged[1].len), 0);
    assert_int_equal(c.brk, EV_CHAIN_INTACT); /* pending until its successor or the end */
    ev_chain_finish(&c);
    assert_int_equal(c.brk, EV_CHAIN_PREV_MISMATCH);
    assert_int_equal(c.brk_offset, N);
    free_recs(forged, 2);
    free_recs(rs, N);
}

/* The first record carries a prev_hash (records before it removed); a later
 * record has none (written by something else). */
static void test_first_and_missing(void **state)
{
    rec rs[N], bare;
    ev_chain c;

    (void)state;
    chain(rs, N);
    ev_chain_init(&c);
    feed(&c, rs + 1, N - 1);
    assert_int_equal(c.brk, EV_CHAIN_PREV_MISMATCH);
    assert_int_equal(c.brk_offset, 10);
    assert_non_null(strstr(c.brk_msg, "first record"));

    bare = mk(50, "bare", NULL);
    ev_chain_init(&c);
    assert_int_equal(ev_chain_add(&c, 0, rs[0].buf, rs[0].len), 0);
    assert_int_equal(ev_chain_add(&c, 1, rs[1].buf, rs[1].len), 0);
    assert_int_equal(ev_chain_add(&c, 2, bare.buf, bare.len), 0);
    ev_chain_finish(&c);
    assert_int_equal(c.brk, EV_CHAIN_PREV_MISMATCH);
    assert_int_equal(c.brk_offset, 2);
    assert_non_null(strstr(c.brk_msg, "no prev_hash"));
    free(bare.buf);
    free_recs(rs, N);
}

static void test_expect_head(void **state)
{
    rec rs[N];
    ev_chain c;
    uint8_t h[EV_HASH_LEN];

    (void)state;
    chain(rs, N);
    /* the current head */
    hash_of(&rs[N - 1], h);
    ev_chain_init(&c);
    ev_chain_expect(&c, h);
    feed(&c, rs, N);
    assert_int_equal(c.brk, EV_CHAIN_INTACT);
    assert_int_equal(c.expect_offset, 10 + N - 1);
    /* an earlier head: the log grew since */
    hash_of(&rs[2], h);
    ev_chain_init(&c);
    ev_chain_expect(&c, h);
    feed(&c, rs, N);
    assert_int_equal(c.brk, EV_CHAIN_INTACT);
    assert_int_equal(c.expect_offset, 12);
    /* a head that is in no record: the records it covered were changed */
    h[0] ^= 1;
    ev_chain_init(&c);
    ev_chain_expect(&c, h);
    feed(&c, rs, N);
    assert_int_equal(c.brk, EV_CHAIN_HEAD);
    assert_int_equal(c.brk_offset, 10 + N - 1);
    assert_non_null(strstr(c.brk_msg, "expected head"));
    free_recs(rs, N);
}

/* Truncated envelopes and random bytes: never a crash; a truncated record is
 * refused by the verifier or, when only unreferenced padding was cut, named by
 * its successor; the head still follows every record. */
static void test_garbage(void **state)
{
    rec rs[3];
    ev_chain c;
    uint8_t buf[512], h[EV_HASH_LEN];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int padding_cuts = 0;

    (void)state;
    chain(rs, 3);
    for (size_t cut = 0; cut < rs[1].len; cut++) {
        ev_chain_init(&c);
        assert_int_equal(ev_chain_add(&c, 0, rs[0].buf, rs[0].len), 0);
        assert_int_equal(ev_chain_add(&c, 1, rs[1].buf, cut), 0);
        assert_int_equal(ev_chain_add(&c, 2, rs[2].buf, rs[2].len), 0);
        ev_chain_finish(&c);
        if (c.brk == EV_CHAIN_PREV_MISMATCH && c.brk_offset == 2) {
            padding_cuts++;
        } else if (c.brk != EV_CHAIN_INVALID || c.brk_offset != 1) {
            fail_msg("cut at %zu of %zu: %s at %lld", cut, rs[1].len, ev_chain_break_name(c.brk),
                     (long long)c.brk_offset);
        }
        assert_int_equal(ev_chain_sha256(rs[2].buf, rs[2].len, h), 0);
        assert_memory_equal(c.head, h, EV_HASH_LEN);
    }
    assert_true(padding_cuts < 8); /* only trailing alignment padding */
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(round % (int)sizeof buf);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (uint8_t)x;
        }
        if (n >= 8)
            memcpy(buf + 4, "KQEV", 4); /* get past the file identifier check */
        ev_chain_init(&c);
        assert_int_equal(ev_chain_add(&c, 5, buf, n), 0);
        ev_chain_finish(&c);
        assert_int_equal(c.records, 1);
        assert_int_equal(c.brk, EV_CHAIN_INVALID);
    }
    free_recs(rs, 3);
}

static void test_hex(void **state)
{
    uint8_t h[EV_HASH_LEN], back[EV_HASH_LEN];
    char hx[EV_HEX_LEN + 1];

    (void)state;
    /* SHA-256("abc"), FIPS 180-2 appendix B.1 */
    assert_int_equal(ev_chain_sha256("abc", 3, h), 0);
    kq_hex_encode(h, EV_HASH_LEN, hx);
    assert_string_equal(hx, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(ev_chain_hex_parse(
                         "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", back),
                     0);
    assert_memory_equal(h, back, EV_HASH_LEN);
    assert_int_equal(ev_chain_hex_parse("ba78", back), KQ_EINVAL);
    assert_int_equal(ev_chain_hex_parse(
                         "za7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", back),
                     KQ_EINVAL);
    assert_int_equal(ev_chain_hex_parse(NULL, back), KQ_EINVAL);
    assert_string_equal(ev_chain_break_name(EV_CHAIN_NOT_IN_CHAIN), "not_in_chain");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_intact),
        cmocka_unit_test(test_tombstone),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_altered),
        cmocka_unit_test(test_removed),
        cmocka_unit_test(test_forged),
        cmocka_unit_test(test_first_and_missing),
        cmocka_unit_test(test_expect_head),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
