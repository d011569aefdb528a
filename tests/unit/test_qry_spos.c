/*
 * test_qry_spos.c — the event stream's position (query-api/qry_spos.h):
 * round trips, the wire form, and every kind of malformed text refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "kq_b64.h"
#include "kq_err.h"
#include "qry_spos.h"

static char text[QRY_SPOS_TEXT_MAX];

static void roundtrip(const qry_spos *p)
{
    qry_spos q;
    int n = qry_spos_encode(p, text, sizeof text);

    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(text));
    assert_int_equal(qry_spos_decode(text, &q), 0);
    for (int t = 0; t < QRY_SPOS_TOPICS; t++) {
        assert_int_equal(q.nparts[t], p->nparts[t]);
        for (int k = 0; k < p->nparts[t]; k++)
            assert_int_equal(q.next[t][k], p->next[t][k]);
    }
}

static void test_roundtrip(void **state)
{
    static qry_spos p;

    (void)state;
    memset(&p, 0, sizeof p);
    roundtrip(&p); /* no partitions at all */
    p.nparts[0] = 6;
    p.nparts[1] = 1;
    p.nparts[2] = 3;
    for (int k = 0; k < 6; k++)
        p.next[0][k] = (int64_t)k * 1000 + 127;
    p.next[1][0] = INT64_MAX;
    p.next[2][0] = 0;
    p.next[2][1] = 128;
    p.next[2][2] = 16384;
    roundtrip(&p);
    /* the largest position: every partition, every offset huge */
    for (int t = 0; t < QRY_SPOS_TOPICS; t++) {
        p.nparts[t] = QRY_SPOS_MAX_PARTS;
        for (int k = 0; k < QRY_SPOS_MAX_PARTS; k++)
            p.next[t][k] = INT64_MAX - k;
    }
    roundtrip(&p);
    assert_true(strlen(text) < sizeof text);
}

/* The wire form is base64url (no padding, no '+' '/' '='): safe in a header and a query. */
static void test_wire_form(void **state)
{
    qry_spos p;
    uint8_t raw[16];

    (void)state;
    memset(&p, 0, sizeof p);
    p.nparts[0] = 2;
    p.next[0][0] = 5;
    p.next[0][1] = 300; /* varint ac 02 */
    p.nparts[2] = 1;
    p.next[2][0] = 0;
    assert_int_equal(qry_spos_encode(&p, text, sizeof text), 11);
    assert_int_equal(strlen(text), 11);
    assert_null(strpbrk(text, "+/=\r\n "));
    assert_int_equal(kq_b64_decode(text, raw, sizeof raw), 8);
    {
        const uint8_t want[] = {1, 2, 5, 0xac, 0x02, 0, 1, 0};
        assert_memory_equal(raw, want, sizeof want);
    }
}

static void test_encode_errors(void **state)
{
    static qry_spos p;
    char small[8];

    (void)state;
    memset(&p, 0, sizeof p);
    p.nparts[0] = 1;
    p.next[0][0] = -1;
    assert_int_equal(qry_spos_encode(&p, text, sizeof text), KQ_EINVAL);
    p.next[0][0] = 1;
    p.nparts[1] = QRY_SPOS_MAX_PARTS + 1;
    assert_int_equal(qry_spos_encode(&p, text, sizeof text), KQ_EINVAL);
    p.nparts[1] = -1;
    assert_int_equal(qry_spos_encode(&p, text, sizeof text), KQ_EINVAL);
    p.nparts[1] = 3;
    p.next[1][0] = p.next[1][1] = p.next[1][2] = INT64_MAX;
    assert_int_equal(qry_spos_encode(&p, small, sizeof small), KQ_ERANGE);
}

/* base64url of raw bytes, for hand-made malformed positions. */
static const char *b64(const uint8_t *raw, size_t n)
{
    kq_b64_encode(raw, n, text);
    return text;
}

static void test_decode_errors(void **state)
{
    static qry_spos p;
    static const struct {
        uint8_t raw[16];
        size_t n;
        const char *why;
    } bad[] = {
        {{0}, 0, "empty"},
        {{2, 0, 0, 0}, 4, "unknown version"},
        {{1, 0, 0}, 3, "a topic missing"},
        {{1, 0, 0, 0, 0}, 5, "trailing byte"},
        {{1, 1}, 2, "an offset missing"},
        {{1, 1, 0x80}, 3, "a varint cut short"},
        {{1, 1, 0x80, 0x00, 0, 0}, 6, "an overlong varint"},
        {{1, 0x81, 0x02, 0, 0}, 5, "257 partitions"},
        {{1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80, 0x01, 0, 0},
         14,
         "an offset over INT64_MAX"},
        {{1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0},
         15,
         "a varint of 11 bytes"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p.nparts[0] = 99;
        if (qry_spos_decode(b64(bad[i].raw, bad[i].n), &p) != KQ_EINVAL)
            fail_msg("accepted: %s (%s)", bad[i].why, text);
        assert_int_equal(p.nparts[0], 0); /* nothing half-decoded is left */
    }
    assert_int_equal(qry_spos_decode(NULL, &p), KQ_EINVAL);
    assert_int_equal(qry_spos_decode("", &p), KQ_EINVAL);
    assert_int_equal(qry_spos_decode("AQAAAA=", &p), KQ_EINVAL); /* padding */
    assert_int_equal(qry_spos_decode("AQ+AAA", &p), KQ_EINVAL);  /* not base64url */
    assert_int_equal(qry_spos_decode("AQ AAA", &p), KQ_EINVAL);
    assert_int_equal(qry_spos_decode("AQAAAA", &p), 0); /* 1,0,0,0: the empty position */
    /* too long a text is refused before decoding */
    {
        static char longtext[QRY_SPOS_TEXT_MAX + 64];
        memset(longtext, 'A', sizeof longtext - 1);
        longtext[sizeof longtext - 1] = '\0';
        assert_int_equal(qry_spos_decode(longtext, &p), KQ_EINVAL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_wire_form),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_decode_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
