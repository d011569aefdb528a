/*
 * test_kq_codec.c — lib's small codecs: base64url (kq_b64), the consistency
 * token (kq_token), random bytes, UUIDs and hex (kq_rand).
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
#include "kq_rand.h"
#include "kq_token.h"

static void test_b64(void **state)
{
    static const struct {
        const char *raw, *enc;
    } v[] = {{"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
             {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
    static const uint8_t hi[] = {0xfb, 0xff, 0xbf};
    char enc[64];
    uint8_t dec[64];

    (void)state;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t n = strlen(v[i].raw);
        assert_int_equal(kq_b64_encode(v[i].raw, n, enc), strlen(v[i].enc));
        assert_int_equal(KQ_B64_LEN(n), strlen(v[i].enc));
        assert_string_equal(enc, v[i].enc);
        assert_int_equal(kq_b64_decode(v[i].enc, dec, sizeof dec), (int)n);
        assert_memory_equal(dec, v[i].raw, n);
    }
    kq_b64_encode(hi, 3, enc);
    assert_string_equal(enc, "-_-_"); /* the URL-safe alphabet */
    assert_int_equal(kq_b64_decode("-_-_", dec, sizeof dec), 3);
    assert_memory_equal(dec, hi, 3);
    assert_int_equal(kq_b64_decode("Zm9v", dec, 2), KQ_EINVAL);           /* does not fit */
    assert_int_equal(kq_b64_decode("Zm9vY", dec, sizeof dec), KQ_EINVAL); /* bad length */
    assert_int_equal(kq_b64_decode("Zm9=", dec, sizeof dec), KQ_EINVAL);  /* padding */
    assert_int_equal(kq_b64_decode("Zm+v", dec, sizeof dec), KQ_EINVAL);  /* not URL-safe */
    assert_int_equal(kq_b64_decode("Zh", dec, sizeof dec), KQ_EINVAL);    /* trailing bits */
    assert_int_equal(kq_b64_decode("Zm 9", dec, sizeof dec), KQ_EINVAL);
}

static void test_token(void **state)
{
    char tok[KQ_TOKEN_MAX], topic[256], longtopic[400];
    int32_t p = -1;
    int64_t o = -1;
    int n;

    (void)state;
    n = kq_token_encode("kcqrs.resource.events", 5, 1234567, tok, sizeof tok);
    assert_true(n > 3);
    assert_int_equal((size_t)n, strlen(tok));
    assert_memory_equal(tok, "v1.", 3);
    assert_int_equal(kq_token_parse(tok, topic, sizeof topic, &p, &o), 0);
    assert_string_equal(topic, "kcqrs.resource.events");
    assert_int_equal(p, 5);
    assert_int_equal(o, 1234567);
    /* the wire format: base64url of "<topic>:<partition>:<offset>" */
    assert_int_equal(kq_token_encode("t1", 1, 0, tok, sizeof tok), 11);
    assert_string_equal(tok, "v1.dDE6MTow");
    assert_int_equal(kq_token_parse("v1.dDE6MTow", topic, sizeof topic, &p, &o), 0);
    /* colons inside a topic name stay in the topic */
    kq_token_encode("a:b", 0, INT64_MAX, tok, sizeof tok);
    assert_int_equal(kq_token_parse(tok, topic, sizeof topic, &p, &o), 0);
    assert_string_equal(topic, "a:b");
    assert_int_equal(o, INT64_MAX);

    assert_int_equal(kq_token_parse(NULL, topic, sizeof topic, &p, &o), KQ_EINVAL);
    assert_int_equal(kq_token_parse("v2.abc", topic, sizeof topic, &p, &o), KQ_EINVAL);
    assert_int_equal(kq_token_parse("v1.", topic, sizeof topic, &p, &o), KQ_EINVAL);
    assert_int_equal(kq_token_parse("v1.!!!!", topic, sizeof topic, &p, &o), KQ_EINVAL);
    assert_int_equal(kq_token_parse("v1.dDE6MTp4", topic, sizeof topic, &p, &o), KQ_EINVAL);
    assert_int_equal(kq_token_parse("v1.dDE6MQ", topic, sizeof topic, &p, &o), KQ_EINVAL);
    assert_int_equal(kq_token_parse("v1.OjE6MQ", topic, sizeof topic, &p, &o),
                     KQ_EINVAL); /* ":1:1" */
    assert_int_equal(kq_token_parse("v1.dDowMTox", topic, sizeof topic, &p, &o),
                     KQ_EINVAL); /* "t:01:1" */
    assert_int_equal(kq_token_parse("v1.dDotMTox", topic, sizeof topic, &p, &o),
                     KQ_EINVAL); /* "t:-1:1" */
    kq_token_encode("t", INT32_MAX, 1, tok, sizeof tok);
    assert_int_equal(kq_token_parse(tok, topic, sizeof topic, &p, &o), 0);
    assert_int_equal(p, INT32_MAX);
    assert_int_equal(kq_token_parse(tok, topic, 1, &p, &o), KQ_ERANGE); /* topic does not fit */
    assert_int_equal(kq_token_encode("t", 1, 2, tok, 5), KQ_ERANGE);
    memset(longtopic, 'x', sizeof longtopic - 1);
    longtopic[sizeof longtopic - 1] = '\0';
    assert_int_equal(kq_token_encode(longtopic, 1, 2, tok, sizeof tok), KQ_ERANGE);
    /* the longest text that encodes also parses */
    longtopic[KQ_TOKEN_RAW_MAX - 4] = '\0';
    n = kq_token_encode(longtopic, 1, 2, tok, sizeof tok);
    assert_true(n > 0);
    assert_int_equal(kq_token_parse(tok, longtopic, sizeof longtopic, &p, &o), 0);
    longtopic[KQ_TOKEN_RAW_MAX - 4] = 'x';
    longtopic[KQ_TOKEN_RAW_MAX - 3] = '\0';
    assert_int_equal(kq_token_encode(longtopic, 1, 2, tok, sizeof tok), KQ_ERANGE);
}

static void test_rand(void **state)
{
    uint8_t a[16], b[16], zero[64] = {0}, big[64];
    char s[KQ_UUID_STR], hex[2 * 40 + 1];

    (void)state;
    assert_int_equal(kq_rand_bytes(big, sizeof big), 0);
    assert_memory_not_equal(big, zero, sizeof big);
    assert_int_equal(kq_rand_bytes(big, 0), 0);
    assert_int_equal(kq_uuid_v4(a), 0);
    assert_int_equal(kq_uuid_v4(b), 0);
    assert_memory_not_equal(a, b, 16);
    assert_int_equal(a[6] >> 4, 4);
    assert_int_equal(a[8] >> 6, 2);
    kq_uuid_format(a, s);
    assert_int_equal(strlen(s), 36);
    assert_int_equal(s[14], '4');
    assert_int_equal(kq_uuid_parse(s, b), 0);
    assert_memory_equal(a, b, 16);

    static const uint8_t u[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                                  0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};
    kq_uuid_format(u, s);
    assert_string_equal(s, "01234567-89ab-cdef-fedc-ba9876543210");
    assert_int_equal(kq_uuid_parse("01234567-89AB-CDEF-FEDC-BA9876543210", b), 0);
    assert_memory_equal(u, b, 16);
    memcpy(b, a, 16);
    assert_int_equal(kq_uuid_parse("01234567-89ab-cdef-fedc-ba987654321", b), KQ_EINVAL);
    assert_int_equal(kq_uuid_parse("01234567089ab-cdef-fedc-ba9876543210", b), KQ_EINVAL);
    assert_int_equal(kq_uuid_parse("0123456g-89ab-cdef-fedc-ba9876543210", b), KQ_EINVAL);
    assert_int_equal(kq_uuid_parse(NULL, b), KQ_EINVAL);
    assert_memory_equal(a, b, 16); /* untouched on failure */

    assert_int_equal(kq_rand_hex(hex, 32), 0);
    assert_int_equal(strlen(hex), 64);
    for (size_t i = 0; i < 64; i++)
        assert_non_null(strchr("0123456789abcdef", hex[i]));
    assert_int_equal(kq_uuid_parse("0123abcd-0000-4000-8000-00000000ffff", b), 0);
    kq_uuid_format(b, s);
    assert_string_equal(s, "0123abcd-0000-4000-8000-00000000ffff");
    assert_int_equal(kq_uuid_parse("0123abcd00000-4000-8000-00000000ffff", b), KQ_EINVAL);
    assert_int_equal(kq_uuid_parse("0123abcd-0000-4000-8000-00000000fff-", b), KQ_EINVAL);

    kq_hex_encode("\x00\xff\x10", 3, hex);
    assert_string_equal(hex, "00ff10");
    kq_hex_encode("", 0, hex);
    assert_string_equal(hex, "");
    assert_int_equal(kq_hex_decode("00fF10", 3, big), 0);
    assert_memory_equal(big, "\x00\xff\x10", 3);
    assert_int_equal(kq_hex_decode("00fg10", 3, big), KQ_EINVAL);
    assert_int_equal(kq_hex_decode("00f", 2, big), KQ_EINVAL); /* the NUL is no digit */
    assert_int_equal(kq_hex_decode("", 0, big), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_rand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
