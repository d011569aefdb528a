/*
 * fuzz_envelope.c — libFuzzer entry point for untrusted Envelope bytes.
 *
 * The input is treated two ways:
 *   1. as a buffer from Kafka: ev_schema_verify, the typed decoder (walking
 *      every list) and the JSON decoder must agree on accepting it (and an
 *      accepted event_id is exactly 16 bytes); when they
 *      do, the JSON must encode back (ev_json_encode) to a buffer whose JSON
 *      is identical, and a domain-valid typed envelope must re-encode to a
 *      buffer that decodes to the same typed envelope bytes;
 *   2. as JSON text: when ev_json_encode accepts it, the buffer it built must
 *      verify and decode.
 * Any disagreement abort()s; memory errors are ASan's.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ev_codec.h"
#include "ev_fb.h"
#include "ev_json.h"
#include "ev_schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const char *err)
{
    fprintf(stderr, "fuzz_envelope: %s: %s\n", what, err);
    abort();
}

/* Read every byte the decoder exposes, so ASan sees out-of-bounds views. */
static unsigned touch(ev_str s)
{
    unsigned h = 0;
    for (uint32_t i = 0; s.ptr && i < s.len; i++)
        h = h * 31 + (unsigned char)s.ptr[i];
    return h;
}

static unsigned walk_steps(const ev_step_list *l)
{
    unsigned h = 0;
    for (uint32_t i = 0; i < l->count; i++) {
        ev_step st;
        if (ev_step_list_get(l, i, &st) != 0)
            die("ev_step_list_get", "in range but failed");
        h += touch(st.name);
        if (st.action_type == EV_ACTION_HTTP) {
            h += touch(st.action.http.url) + touch(st.action.http.body_template);
            for (uint32_t k = 0; k < st.action.http.headers.count; k++) {
                ev_http_header hd;
                ev_header_list_get(&st.action.http.headers, k, &hd);
                h += touch(hd.name) + touch(hd.value);
            }
        } else if (st.action_type == EV_ACTION_EMAIL) {
            h += touch(st.action.email.subject) + touch(st.action.email.body_template);
            for (uint32_t k = 0; k < st.action.email.to.count; k++) {
                ev_str s;
                ev_str_list_get(&st.action.email.to, k, &s);
                h += touch(s);
            }
        } else {
            die("decode", "step with unknown action type passed verification");
        }
    }
    return h;
}

static void as_buffer(const uint8_t *data, size_t size)
{
    char err[512], *json = NULL, *json2 = NULL;
    size_t jlen, jlen2, len2;
    ev_envelope e, e2;
    ev_fb_builder b;
    int v, t, j;
    volatile unsigned sink = 0;

    v = ev_schema_verify(data, size, err, sizeof err);
    t = ev_envelope_decode(data, size, &e, err, sizeof err);
    j = ev_json_decode(data, size, &json, &jlen, err, sizeof err);
    if ((v == 0) != (t == 0) || (v == 0) != (j == 0))
        die("verify/typed/json disagree", err);
    if (v != 0)
        return;

    /* the typed decoder copies event_id whole: the verifier must have proved
     * it is a vector of exactly EV_EVENT_ID_LEN bytes */
    {
        uint32_t idn = 0;
        if (ev_fb_vector(data, ev_fb_root(data), EV_SLOT_ENVELOPE_EVENT_ID, &idn) == 0 ||
            idn != EV_EVENT_ID_LEN)
            die("verify", "accepted an event_id that is not 16 bytes");
        for (uint32_t i = 0; i < EV_EVENT_ID_LEN; i++)
            sink += e.event_id.bytes[i];
    }
    sink += touch(e.aggregate_id) + touch(e.actor) + touch(e.command_id);
    if (e.prev_hash.ptr)
        for (uint32_t i = 0; i < e.prev_hash.len; i++)
            sink += e.prev_hash.ptr[i];
    if (e.payload_type == EV_WORKFLOW_CREATED)
        sink += walk_steps(&e.payload.workflow_created.steps);
    if (e.payload_type == EV_WORKFLOW_UPDATED)
        sink += walk_steps(&e.payload.workflow_updated.steps);

    ev_fb_builder_init(&b);
    /* JSON roundtrip: decode(encode(json)) == json */
    if (ev_json_encode(json, jlen, &b, err, sizeof err) != 0)
        die("re-encoding our own JSON", err);
    const uint8_t *buf2 = ev_fb_builder_data(&b, &len2);
    if (ev_json_decode(buf2, len2, &json2, &jlen2, err, sizeof err) != 0)
        die("decoding the re-encoded JSON", err);
    if (jlen != jlen2 || memcmp(json, json2, jlen) != 0)
        die("JSON roundtrip", "decode(encode(json)) != json");

    /* typed roundtrip for domain-valid envelopes: encode(decode(x)) is a fixed point */
    if (ev_envelope_validate(&e, err, sizeof err) == 0) {
        uint8_t *copy;
        size_t clen;
        if (ev_envelope_encode(&b, &e, err, sizeof err) != 0)
            die("typed re-encode", err);
        buf2 = ev_fb_builder_data(&b, &clen);
        copy = malloc(clen);
        if (copy == NULL)
            abort();
        memcpy(copy, buf2, clen);
        if (ev_envelope_decode(copy, clen, &e2, err, sizeof err) != 0)
            die("typed decode of typed encode", err);
        if (ev_envelope_encode(&b, &e2, err, sizeof err) != 0)
            die("typed re-encode (2)", err);
        buf2 = ev_fb_builder_data(&b, &len2);
        if (len2 != clen || memcmp(buf2, copy, clen) != 0)
            die("typed roundtrip", "encode(decode(encode(e))) != encode(e)");
        free(copy);
    }
    ev_fb_builder_free(&b);
    free(json);
    free(json2);
    (void)sink;
}

static void as_json(const uint8_t *data, size_t size)
{
    char err[512], *json = NULL;
    size_t len, jlen;
    ev_fb_builder b;

    if (size == 0 || (data[0] != '{' && data[0] != ' ' && data[0] != '\n'))
        return; /* not worth a parse */
    ev_fb_builder_init(&b);
    if (ev_json_encode((const char *)data, size, &b, err, sizeof err) == 0) {
        const uint8_t *buf = ev_fb_builder_data(&b, &len);
        if (ev_json_decode(buf, len, &json, &jlen, err, sizeof err) != 0)
            die("a buffer built from accepted JSON does not verify", err);
        free(json);
    }
    ev_fb_builder_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    as_buffer(data, size);
    as_json(data, size);
    return 0;
}
