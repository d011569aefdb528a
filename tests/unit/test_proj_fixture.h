/*
 * test_proj_fixture.h — crafted envelopes for the projection tests: a JSON
 * envelope (as `kcqrs-events encode` reads it) encoded with ev_json_encode
 * and decoded again. Include after cmocka.h.
 */
#ifndef TEST_PROJ_FIXTURE_H
#define TEST_PROJ_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ev_codec.h"
#include "ev_fb.h"
#include "ev_json.h"

#define PROJ_TEST_EVID "\"event_id\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]"
#define PROJ_TEST_T0 1763767000000000LL

/* An envelope of aggregate `agg` id `id`, version v, occurred at T0 + v s
 * (+123 µs), with `type` and payload JSON; encoded into *buf (malloc'd, the
 * caller frees it) and decoded into *e (views into *buf); *len its size
 * (len may be NULL). */
static inline void proj_test_make(ev_envelope *e, uint8_t **buf, size_t *len, const char *agg,
                                  const char *id, int64_t v, const char *type, const char *payload)
{
    char json[8192], err[256];
    ev_fb_builder b;
    const uint8_t *data;
    size_t n;

    snprintf(json, sizeof json,
             "{" PROJ_TEST_EVID ",\"aggregate_type\":\"%s\",\"aggregate_id\":\"%s\","
             "\"version\":%lld,\"occurred_at_us\":%lld,\"payload_type\":\"%s\",\"payload\":%s}",
             agg, id, (long long)v, (long long)(PROJ_TEST_T0 + v * 1000000 + 123), type, payload);
    ev_fb_builder_init(&b);
    if (ev_json_encode(json, strlen(json), &b, err, sizeof err) != 0)
        fail_msg("encode: %s\n%s", err, json);
    data = ev_fb_builder_data(&b, &n);
    *buf = malloc(n);
    memcpy(*buf, data, n);
    ev_fb_builder_free(&b);
    if (len != NULL)
        *len = n;
    assert_int_equal(ev_envelope_decode(*buf, n, e, err, sizeof err), 0);
}

#endif
