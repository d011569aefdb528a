/*
 * test_ev_pii.c — personal data in events (events/ev_pii.h): a resource's
 * name and description sealed and opened through the codec (the sealed record
 * holds neither), the event's identity as associated data (another version,
 * aggregate or field does not open), "[erased]" blanking, the subject, plain
 * events passing through, no keys refused; and the command side's digests
 * (commands/cmd_pii.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "cmd_pii.h"
#include "ev_codec.h"
#include "ev_fb.h"
#include "ev_pii.h"
#include "kq_err.h"

static const uint8_t DEK[KQ_CRYPTO_KEY_LEN] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                               12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                               23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static void created(ev_envelope *e, const char *id, const char *name, const char *desc)
{
    memset(e, 0, sizeof *e);
    memset(e->event_id.bytes, 0x42, sizeof e->event_id.bytes);
    e->aggregate_type = EV_AGG_RESOURCE;
    e->aggregate_id = ev_str_c(id);
    e->version = 1;
    e->occurred_at_us = 1763764800000000;
    e->schema_version = 1;
    e->payload_type = EV_RESOURCE_CREATED;
    e->payload.resource_created.name = ev_str_c(name);
    e->payload.resource_created.description = ev_str_c(desc);
    e->payload.resource_created.status = EV_STATUS_ACTIVE;
}

/* Seal e, encode it into b and decode it back into out. */
static void seal_roundtrip(ev_envelope *e, ev_fb_builder *b, uint8_t *sealbuf, ev_envelope *out,
                           const uint8_t **bytes, size_t *len)
{
    char es[256];
    assert_int_equal(ev_pii_seal_with(e, DEK, sealbuf, EV_PII_BUF, es, sizeof es), 0);
    if (ev_envelope_encode(b, e, es, sizeof es) != 0)
        fail_msg("%s", es);
    *bytes = ev_fb_builder_data(b, len);
    assert_int_equal(ev_envelope_decode(*bytes, *len, out, es, sizeof es), 0);
}

static void test_seal_open_created(void **state)
{
    ev_envelope e, d;
    ev_fb_builder b;
    uint8_t *sealbuf = malloc(EV_PII_BUF), *openbuf = malloc(EV_PII_BUF);
    const uint8_t *bytes;
    size_t len;
    char es[256], subject[64];

    (void)state;
    ev_fb_builder_init(&b);
    created(&e, "res-1", "Ada Lovelace", "lives at 12 Analytical Lane");
    seal_roundtrip(&e, &b, sealbuf, &d, &bytes, &len);
    /* the record holds neither value in plain text */
    assert_null(memmem(bytes, len, "Lovelace", 8));
    assert_null(memmem(bytes, len, "Analytical", 10));
    assert_true(ev_pii_sealed(&d));
    assert_int_equal(d.payload.resource_created.name.len, strlen(EV_PII_PLACEHOLDER));
    assert_memory_equal(d.payload.resource_created.name.ptr, EV_PII_PLACEHOLDER,
                        strlen(EV_PII_PLACEHOLDER));
    assert_null(d.payload.resource_created.description.ptr);
    assert_int_equal(ev_pii_subject(&d, subject, sizeof subject), 0);
    assert_string_equal(subject, "resource/res-1");
    /* opened with the key: the plain views are back, the sealed ones cleared */
    assert_int_equal(ev_pii_open_with(&d, DEK, openbuf, EV_PII_BUF, es, sizeof es), 0);
    assert_false(ev_pii_sealed(&d));
    assert_int_equal(d.payload.resource_created.name.len, 12);
    assert_memory_equal(d.payload.resource_created.name.ptr, "Ada Lovelace", 12);
    assert_memory_equal(d.payload.resource_created.description.ptr, "lives at 12 Analytical Lane",
                        27);
    /* without keys: a sealed event is KQ_ENOTFOUND, never a silent blank */
    assert_int_equal(ev_envelope_decode(bytes, len, &d, es, sizeof es), 0);
    assert_int_equal(ev_pii_open(&d, NULL, openbuf, EV_PII_BUF, NULL, es, sizeof es), KQ_ENOTFOUND);
    ev_fb_builder_free(&b);
    free(sealbuf);
    free(openbuf);
}

static void test_identity_is_aad(void **state)
{
    ev_envelope e, d;
    ev_fb_builder b;
    uint8_t *sealbuf = malloc(EV_PII_BUF), *openbuf = malloc(EV_PII_BUF);
    uint8_t other[KQ_CRYPTO_KEY_LEN];
    const uint8_t *bytes;
    size_t len;
    char es[256];

    (void)state;
    ev_fb_builder_init(&b);
    created(&e, "res-2", "Grace Hopper", "");
    seal_roundtrip(&e, &b, sealbuf, &d, &bytes, &len);
    d.version = 2; /* copied into another version */
    assert_int_equal(ev_pii_open_with(&d, DEK, openbuf, EV_PII_BUF, es, sizeof es), KQ_ECORRUPT);
    assert_int_equal(ev_envelope_decode(bytes, len, &d, es, sizeof es), 0);
    d.aggregate_id = ev_str_c("res-3"); /* into another aggregate */
    assert_int_equal(ev_pii_open_with(&d, DEK, openbuf, EV_PII_BUF, es, sizeof es), KQ_ECORRUPT);
    assert_int_equal(ev_envelope_decode(bytes, len, &d, es, sizeof es), 0);
    /* the name's seal in the description's place */
    d.payload.resource_created.description_sealed = d.payload.resource_created.name_sealed;
    d.payload.resource_created.name_sealed.ptr = NULL;
    assert_int_equal(ev_pii_open_with(&d, DEK, openbuf, EV_PII_BUF, es, sizeof es), KQ_ECORRUPT);
    assert_int_equal(ev_envelope_decode(bytes, len, &d, es, sizeof es), 0);
    memcpy(other, DEK, sizeof other);
    other[0] ^= 1; /* another key */
    assert_int_equal(ev_pii_open_with(&d, other, openbuf, EV_PII_BUF, es, sizeof es), KQ_ECORRUPT);
    /* an empty description is sealed too, and opens empty */
    assert_int_equal(ev_pii_open_with(&d, DEK, openbuf, EV_PII_BUF, es, sizeof es), 0);
    assert_non_null(d.payload.resource_created.description.ptr);
    assert_int_equal(d.payload.resource_created.description.len, 0);
    ev_fb_builder_free(&b);
    free(sealbuf);
    free(openbuf);
}

static void test_updated_blank_plain(void **state)
{
    ev_envelope e, d;
    ev_fb_builder b;
    uint8_t *sealbuf = malloc(EV_PII_BUF);
    const uint8_t *bytes;
    size_t len;
    char es[256];

    (void)state;
    ev_fb_builder_init(&b);
    created(&e, "res-4", "x", "y");
    e.version = 2;
    e.payload_type = EV_RESOURCE_UPDATED;
    memset(&e.payload, 0, sizeof e.payload);
    e.payload.resource_updated.name = ev_str_c("Alan Turing");
    seal_roundtrip(&e, &b, sealbuf, &d, &bytes, &len);
    assert_null(memmem(bytes, len, "Turing", 6));
    assert_null(d.payload.resource_updated.name.ptr);
    assert_null(d.payload.resource_updated.description.ptr); /* absent stays absent */
    assert_null(d.payload.resource_updated.description_sealed.ptr);
    /* erased: the fields that were there read "[erased]" */
    ev_pii_blank(&d);
    assert_false(ev_pii_sealed(&d));
    assert_memory_equal(d.payload.resource_updated.name.ptr, EV_PII_ERASED, strlen(EV_PII_ERASED));
    assert_null(d.payload.resource_updated.description.ptr);
    /* a plain event (written before sealing) passes through unchanged */
    created(&e, "res-5", "Old Name", "old");
    assert_false(ev_pii_sealed(&e));
    assert_int_equal(ev_pii_open(&e, NULL, sealbuf, EV_PII_BUF, NULL, es, sizeof es), 0);
    assert_memory_equal(e.payload.resource_created.name.ptr, "Old Name", 8);
    /* the plain record of a record without sealed data is the record itself */
    {
        const uint8_t *out;
        size_t ol;
        ev_pii_state st;
        assert_int_equal(ev_envelope_encode(&b, &e, es, sizeof es), 0);
        bytes = ev_fb_builder_data(&b, &len);
        assert_int_equal(ev_pii_plain_record(bytes, len, NULL, &b, &out, &ol, &st, es, sizeof es),
                         0);
        assert_ptr_equal(out, bytes);
        assert_int_equal(st, EV_PII_NONE);
    }
    /* other event types carry no personal data */
    e.payload_type = EV_RESOURCE_DELETED;
    assert_int_equal(ev_pii_subject(&e, es, sizeof es), KQ_ENOTFOUND);
    ev_fb_builder_free(&b);
    free(sealbuf);
}

static void test_cmd_digests(void **state)
{
    char *s = NULL;

    (void)state;
    /* without keys the text is kept (unit tests of the command side) */
    assert_int_equal(cmd_pii_store(NULL, "r", "Ada", 3, &s), 0);
    assert_string_equal(s, "Ada");
    assert_true(cmd_pii_same(NULL, "r", s, "Ada"));
    assert_false(cmd_pii_same(NULL, "r", s, "Bob"));
    /* absent reads as empty */
    assert_true(cmd_pii_same(NULL, "r", NULL, ""));
    assert_true(cmd_pii_same(NULL, "r", NULL, NULL));
    assert_false(cmd_pii_same(NULL, "r", NULL, "x"));
    assert_int_equal(cmd_pii_store(NULL, "r", NULL, 0, &s), 0);
    assert_null(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_open_created),
        cmocka_unit_test(test_identity_is_aad),
        cmocka_unit_test(test_updated_blank_plain),
        cmocka_unit_test(test_cmd_digests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
