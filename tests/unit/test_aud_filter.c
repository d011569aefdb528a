/*
 * test_aud_filter.c — kcqrs-audit query's filters and rows: time arguments
 * (RFC 3339 and @µs), the key and header pre-filters, the envelope filter
 * (each field, the inclusive --until and its stop), and the JSON line (valid
 * JSON on one line, the envelope's fields kept, topic/partition/offset
 * appended; checked with jansson as an independent parser).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aud_filter.h"
#include "ev_codec.h"
#include "ev_fb.h"
#include "kq_err.h"

static void test_key_and_header(void **state)
{
    aud_filter f;
    const char *k1 = "r1/00000000000000000003", *k11 = "r11/00000000000000000003";

    (void)state;
    aud_filter_init(&f);
    assert_int_equal(aud_filter_key(&f, k1, strlen(k1)), 1);
    assert_int_equal(aud_filter_type_header(&f, "ResourceCreated", 15), 1);
    f.aggregate_id = "r1";
    assert_int_equal(aud_filter_key(&f, k1, strlen(k1)), 1);
    assert_int_equal(aud_filter_key(&f, k11, strlen(k11)), 0);
    assert_int_equal(aud_filter_key(&f, "r", 1), 1); /* not our key form: decode decides */
    assert_int_equal(aud_filter_key(&f, NULL, 0), 1);
    f.event_type = EV_RESOURCE_DELETED;
    assert_int_equal(aud_filter_type_header(&f, "ResourceDeleted", 15), 1);
    assert_int_equal(aud_filter_type_header(&f, "ResourceDeletedX", 16), 0);
    assert_int_equal(aud_filter_type_header(&f, "ResourceCreated", 15), 0);
    assert_int_equal(aud_filter_type_header(&f, NULL, 0), 1);
    assert_int_equal(aud_aggregate_type_parse("Resource"), EV_AGG_RESOURCE);
    assert_int_equal(aud_aggregate_type_parse("run"), EV_AGG_RUN);
    assert_int_equal(aud_aggregate_type_parse("runs"), EV_AGG_UNKNOWN);
    assert_string_equal(aud_aggregate_type_topic(EV_AGG_WORKFLOW), "workflow");
}

static void envelope(ev_envelope *e, const char *id, const char *actor, int64_t at)
{
    ev_envelope_init(e, EV_RESOURCE_CREATED);
    e->aggregate_type = EV_AGG_RESOURCE;
    e->aggregate_id = ev_str_c(id);
    e->version = 1;
    e->occurred_at_us = at;
    e->actor = ev_str_c(actor);
    e->payload.resource_created.name = ev_str_c("n \"q\"\n");
    e->payload.resource_created.description = ev_str_c("");
}

static void test_envelope_filter(void **state)
{
    aud_filter f;
    ev_envelope e;

    (void)state;
    envelope(&e, "r1", "alice", 1000);
    aud_filter_init(&f);
    assert_int_equal(aud_filter_envelope(&f, &e), AUD_MATCH);
    f.actor = "alice";
    assert_int_equal(aud_filter_envelope(&f, &e), AUD_MATCH);
    f.actor = "alic";
    assert_int_equal(aud_filter_envelope(&f, &e), AUD_SKIP);
    f.actor = NULL;
    f.aggregate_id = "r1";
    assert_int_equal(aud_filter_envelope(&f, &e), AUD_MATCH);
    f.aggregate_id = "r10";
    assert_int_equal(aud_filter_envelope(&f, &e), AUD_SKIP);
    f.aggregate_id = NULL;
    f.agg = EV_AGG_WORKFLOW;
    assert_int_equal(aud_filter_envelope(&f, &e), AUD_SKIP);
    f.agg = EV_AGG_RESOURCE;
    f.event_type = EV_RESOURCE_UPDATED;
    assert_int_equal(aud_filter_envelope(&f, &e), AUD_SKIP);
    f.event_type = EV_RESOURCE_CREATED;
    assert_int_equal(aud_filter_envelope(&f, &e), AUD_MATCH);
    /* [since, until], both inclusive; past until: stop the partition */
    f.since_us = 1000;
    f.until_us = 1000;
    assert_int_equal(aud_filter_envelope(&f, &e), AUD_MATCH);
    f.since_us = 1001;
    f.until_us = 2000;
    assert_int_equal(aud_filter_envelope(&f, &e), AUD_SKIP);
    f.since_us = 0;
    f.until_us = 999;
    assert_int_equal(aud_filter_envelope(&f, &e), AUD_STOP);
}

static void test_json_line(void **state)
{
    ev_fb_builder b;
    ev_envelope e;
    char err[256], *line = NULL;
    const uint8_t *buf;
    size_t len, ll;
    json_t *j;
    json_error_t je;
    uint8_t prev[32];

    (void)state;
    memset(prev, 7, sizeof prev);
    envelope(&e, "r1", "al ice", 1700000000000001LL);
    e.prev_hash.ptr = prev;
    e.prev_hash.len = 32;
    ev_fb_builder_init(&b);
    assert_int_equal(ev_envelope_encode(&b, &e, err, sizeof err), 0);
    buf = ev_fb_builder_data(&b, &len);
    assert_int_equal(
        aud_json_line(buf, len, "p.resource.events", 4, 77, &line, &ll, err, sizeof err), 0);
    assert_int_equal(strlen(line), ll);
    assert_null(strchr(line, '\n'));
    j = json_loads(line, 0, &je);
    if (j == NULL)
        fail_msg("not JSON: %s: %s", je.text, line);
    assert_string_equal(json_string_value(json_object_get(j, "aggregate_id")), "r1");
    assert_string_equal(json_string_value(json_object_get(j, "actor")), "al ice"); /* kept */
    assert_int_equal(json_integer_value(json_object_get(j, "occurred_at_us")), 1700000000000001LL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "payload"), "name")),
                        "n \"q\"\n");
    assert_int_equal(json_array_size(json_object_get(j, "prev_hash")), 32);
    assert_string_equal(json_string_value(json_object_get(j, "topic")), "p.resource.events");
    assert_int_equal(json_integer_value(json_object_get(j, "partition")), 4);
    assert_int_equal(json_integer_value(json_object_get(j, "offset")), 77);
    json_decref(j);
    free(line);
    /* bytes that are not an envelope */
    assert_int_equal(
        aud_json_line((const uint8_t *)"nonsense", 8, "t", 0, 0, &line, &ll, err, sizeof err),
        KQ_ECORRUPT);
    assert_null(line);
    ev_fb_builder_free(&b);
}

static void test_compact(void **state)
{
    char s[] = "{\n  \"a b\": [1, 2],\n  \"c\": \"x \\\" y\\\\\"\n}\n";
    size_t n;

    (void)state;
    n = aud_json_compact(s, strlen(s));
    assert_int_equal(n, strlen("{\"a b\":[1,2],\"c\":\"x \\\" y\\\\\"}"));
    assert_string_equal(s, "{\"a b\":[1,2],\"c\":\"x \\\" y\\\\\"}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_and_header),
        cmocka_unit_test(test_envelope_filter),
        cmocka_unit_test(test_json_line),
        cmocka_unit_test(test_compact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
