/*
 * test_cmd_chain.c — the hash chain's heads (cmd_chain.h): a head is the
 * SHA-256 of the record value exactly as stored (the hash kcqrs-audit's
 * ev_chain computes), a tombstone hashes no bytes, each (topic, partition)
 * has its own head, save/restore brings back the heads of before a
 * transaction, reset forgets them all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <string.h>

#include "ev_chain.h"
#include "cmd_chain.h"

static void sha256(const void *p, size_t n, uint8_t out[32])
{
    unsigned int len = 0;
    assert_int_equal(EVP_Digest(p, n, out, &len, EVP_sha256(), NULL), 1);
}

static void test_head_is_the_record_hash(void **state)
{
    cmd_chain c;
    cmd_head *h;
    uint8_t want[32];
    ev_chain a;
    const char rec[] = "an envelope";

    (void)state;
    assert_int_equal(cmd_chain_init(&c, 4), 0);
    h = cmd_chain_head(&c, CMD_TOPIC_RUN, 3);
    assert_int_equal(h->set, 0);
    assert_int_equal(cmd_chain_set_head(h, rec, sizeof rec), 0);
    assert_int_equal(h->set, 1);
    sha256(rec, sizeof rec, want);
    assert_memory_equal(h->hash, want, 32);
    /* the auditor's head of the same record is the same */
    ev_chain_init(&a);
    assert_int_equal(ev_chain_add(&a, 0, rec, sizeof rec), 0);
    assert_memory_equal(a.head, h->hash, 32);
    /* a tombstone: the hash of no bytes */
    assert_int_equal(cmd_chain_set_head(h, NULL, 0), 0);
    sha256("", 0, want);
    assert_memory_equal(h->hash, want, 32);
    cmd_chain_free(&c);
}

/* Heads are per (topic, partition), laid out as the snapshot stores them. */
static void test_heads_are_per_partition(void **state)
{
    cmd_chain c;

    (void)state;
    assert_int_equal(cmd_chain_init(&c, 6), 0);
    for (int t = 0; t < CMD_TOPICS; t++)
        for (int p = 0; p < 6; p++) {
            uint8_t v = (uint8_t)(t * 6 + p);
            assert_ptr_equal(cmd_chain_head(&c, t, p), &c.heads[t * 6 + p]);
            assert_int_equal(cmd_chain_set_head(cmd_chain_head(&c, t, p), &v, 1), 0);
        }
    for (int i = 0; i < CMD_TOPICS * 6; i++)
        for (int j = i + 1; j < CMD_TOPICS * 6; j++)
            assert_memory_not_equal(c.heads[i].hash, c.heads[j].hash, 32);
    cmd_chain_free(&c);
}

/* A failed transaction: restore gives back the heads saved before it. */
static void test_save_restore_reset(void **state)
{
    cmd_chain c;
    cmd_head before;

    (void)state;
    assert_int_equal(cmd_chain_init(&c, 2), 0);
    assert_int_equal(cmd_chain_set_head(cmd_chain_head(&c, 0, 1), "a", 1), 0);
    before = *cmd_chain_head(&c, 0, 1);
    cmd_chain_save(&c);
    assert_int_equal(cmd_chain_set_head(cmd_chain_head(&c, 0, 1), "b", 1), 0);
    assert_int_equal(cmd_chain_set_head(cmd_chain_head(&c, 2, 0), "c", 1), 0);
    assert_memory_not_equal(cmd_chain_head(&c, 0, 1)->hash, before.hash, 32);
    cmd_chain_restore(&c);
    assert_memory_equal(cmd_chain_head(&c, 0, 1), &before, sizeof before);
    assert_int_equal(cmd_chain_head(&c, 2, 0)->set, 0);
    cmd_chain_reset(&c);
    for (int i = 0; i < CMD_TOPICS * 2; i++)
        assert_int_equal(c.heads[i].set, 0);
    cmd_chain_free(&c);
    cmd_chain_free(&c); /* twice is harmless */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_is_the_record_hash),
        cmocka_unit_test(test_heads_are_per_partition),
        cmocka_unit_test(test_save_restore_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
