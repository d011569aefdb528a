/*
 * test_codec.c — the event codec: schema descriptors, the generic verifier,
 * the JSON codec and the typed codec (events/ev_schema.h, ev_json.h, ev_codec.h).
 *
 *   - descriptor invariants (slots, union pairs, pointers);
 *   - typed encode/decode roundtrip of every event type with every field set,
 *     and typed == JSON for every example in tests/data/events;
 *   - domain validation errors, one per rule, with the field path;
 *   - JSON strictness the conformance tests do not reach (NUL in strings,
 *     numbers for enums, size limit, lossless roundtrip of explicit defaults);
 *   - robustness: every truncation and every single-bit flip of several
 *     envelopes, hand-made corruptions (offsets outside the buffer, misaligned
 *     tables, huge vector counts, bad vtables), union/enum/bool/UTF-8 policy,
 *     shared-string amplification, deep nesting, random bytes. Nothing may
 *     crash or read out of bounds: CI runs this under ASan/UBSan.
 *
 * Example files are read from $KCQRS_SRCDIR/tests/data/events (default ".").
 */
#include "ev_codec.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "ev_fb.h"
#include "ev_json.h"
#include "ev_schema.h"
#include "kq_err.h"
#include "kq_util.h"

/* ------------------------------------------------------------ helpers */

/* The whole file, NUL-terminated (caller frees), or NULL. */
static char *read_file(const char *path, size_t *len)
{
    char *buf = NULL;
    return kq_read_file(path, 16u << 20, &buf, len, NULL, 0) == 0 ? buf : NULL;
}

static const char *srcdir(void)
{
    const char *d = getenv("KCQRS_SRCDIR");
    return d && *d ? d : ".";
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted *.json names in tests/data/events/<sub>; caller frees. */
static char **list_examples(const char *sub, size_t *count, char *dir, size_t dirlen)
{
    char **names = NULL;
    size_t n = 0, cap = 0;
    DIR *d;
    struct dirent *de;

    snprintf(dir, dirlen, "%s/tests/data/events%s", srcdir(), sub);
    d = opendir(dir);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            names = realloc(names, cap * sizeof *names);
            assert_non_null(names);
        }
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_names);
    *count = n;
    return names;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* A copy of the builder's finished buffer (malloc'd: ASan sees its exact end). */
static uint8_t *take(ev_fb_builder *b, size_t *len)
{
    const uint8_t *p = ev_fb_builder_data(b, len);
    uint8_t *c = malloc(*len ? *len : 1);
    assert_non_null(c);
    memcpy(c, p, *len);
    return c;
}

static uint8_t *json_to_buf(const char *json, size_t *len)
{
    ev_fb_builder b;
    char err[256] = "";
    uint8_t *out;
    int rc;

    ev_fb_builder_init(&b);
    rc = ev_json_encode(json, strlen(json), &b, err, sizeof err);
    if (rc != 0)
        fail_msg("ev_json_encode: %s", err);
    out = take(&b, len);
    ev_fb_builder_free(&b);
    return out;
}

static uint8_t *env_to_buf(const ev_envelope *e, size_t *len)
{
    ev_fb_builder b;
    char err[256] = "";
    uint8_t *out;
    int rc;

    ev_fb_builder_init(&b);
    rc = ev_envelope_encode(&b, e, err, sizeof err);
    if (rc != 0)
        fail_msg("ev_envelope_encode: %s", err);
    out = take(&b, len);
    ev_fb_builder_free(&b);
    return out;
}

static char *buf_to_json(const uint8_t *buf, size_t len)
{
    char *json = NULL, err[256] = "";
    size_t jlen;
    int rc = ev_json_decode(buf, len, &json, &jlen, err, sizeof err);
    if (rc != 0)
        fail_msg("ev_json_decode: %s", err);
    assert_int_equal(strlen(json), jlen);
    return json;
}

static void assert_str_eq(ev_str a, ev_str b)
{
    if (a.ptr == NULL || b.ptr == NULL) {
        assert_true(a.ptr == NULL && b.ptr == NULL);
        return;
    }
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.ptr, b.ptr, a.len);
}

#define S(lit) ((ev_str){(lit), (uint32_t)(sizeof(lit) - 1)})

/* ------------------------------------------------------------ descriptors */

static void check_table(const ev_schema_table *t, int depth)
{
    unsigned next_slot = 0;

    assert_true(depth < 8);
    for (uint32_t i = 0; i < t->nfields; i++) {
        const ev_schema_field *f = &t->fields[i];
        assert_int_equal(f->slot, next_slot);
        next_slot = f->slot + 1u;
        assert_ptr_equal(ev_schema_field_by_name(t, f->name, strlen(f->name)), f);
        switch (f->kind) {
        case EV_K_ENUM:
            assert_non_null(f->enm);
            assert_true((f->flags & EV_F_OPTIONAL) || (uint64_t)f->def < f->enm->count);
            break;
        case EV_K_TABLE:
        case EV_K_VEC_TABLE:
            assert_non_null(f->table);
            check_table(f->table, depth + 1);
            break;
        case EV_K_UTYPE:
            assert_non_null(f->uni);
            assert_true(i + 1 < t->nfields);
            assert_int_equal(t->fields[i + 1].kind, EV_K_UNION);
            assert_ptr_equal(t->fields[i + 1].uni, f->uni);
            assert_int_equal(strlen(f->name), strlen(t->fields[i + 1].name) + 5);
            assert_memory_equal(f->name, t->fields[i + 1].name, strlen(t->fields[i + 1].name));
            assert_string_equal(f->name + strlen(t->fields[i + 1].name), "_type");
            break;
        case EV_K_UNION:
            assert_true(i > 0 && t->fields[i - 1].kind == EV_K_UTYPE);
            for (uint32_t m = 0; m < f->uni->count; m++)
                check_table(f->uni->members[m], depth + 1);
            break;
        default:
            assert_true(f->kind >= EV_K_BOOL && f->kind <= EV_K_UNION);
        }
        if (f->kind != EV_K_VEC_UBYTE)
            assert_int_equal(f->len, 0);
    }
}

static void test_descriptors(void **state)
{
    (void)state;
    check_table(&ev_schema_envelope, 0);
    assert_int_equal(ev_schema_event.count, 14);
    assert_int_equal(ev_schema_event.count, EV_EVENT_TYPE_MAX);
    assert_int_equal(ev_schema_action.count, 2);
    assert_int_equal(ev_schema_envelope.nfields, 14);
    assert_int_equal(ev_schema_envelope.fields[12].slot, EV_SLOT_ENVELOPE_PAYLOAD);
    /* command_hash: appended after the payload union, so slot 13; any length
     * here (its 32 bytes are a domain rule, like prev_hash's) */
    assert_string_equal(ev_schema_envelope.fields[13].name, "command_hash");
    assert_int_equal(ev_schema_envelope.fields[13].slot, EV_SLOT_ENVELOPE_COMMAND_HASH);
    assert_int_equal(EV_SLOT_ENVELOPE_COMMAND_HASH, 13);
    assert_int_equal(ev_schema_envelope.fields[13].kind, EV_K_VEC_UBYTE);
    assert_int_equal(ev_schema_envelope.fields[13].flags, 0);
    assert_int_equal(ev_schema_envelope.fields[13].len, 0);
    /* event_id: [ubyte] (required), exactly 16 bytes; prev_hash: any length here */
    assert_string_equal(ev_schema_envelope.fields[0].name, "event_id");
    assert_int_equal(ev_schema_envelope.fields[0].slot, EV_SLOT_ENVELOPE_EVENT_ID);
    assert_int_equal(ev_schema_envelope.fields[0].kind, EV_K_VEC_UBYTE);
    assert_int_equal(ev_schema_envelope.fields[0].flags, EV_F_REQUIRED);
    assert_int_equal(ev_schema_envelope.fields[0].len, EV_EVENT_ID_LEN);
    assert_int_equal(ev_schema_envelope.fields[10].kind, EV_K_VEC_UBYTE);
    assert_int_equal(ev_schema_envelope.fields[10].len, 0);
    assert_int_equal(ev_schema_union_type(&ev_schema_event, "NONE", 4), 0);
    assert_int_equal(ev_schema_union_type(&ev_schema_event, "RunFailed", 9), 14);
    assert_int_equal(ev_schema_union_type(&ev_schema_event, "RunFaile", 8), -1);
    assert_int_equal(ev_schema_enum_value(&ev_schema_http_method, "DELETE", 6), 4);
    assert_int_equal(ev_schema_enum_value(&ev_schema_http_method, "delete", 6), -1);
    assert_null(ev_schema_union_type_name(&ev_schema_event, 15));
}

static void test_event_type_names(void **state)
{
    static const char *const names[] = {"ResourceCreated",  "ResourceUpdated", "ResourceDeleted",
                                        "WorkflowCreated",  "WorkflowUpdated", "WorkflowEnabled",
                                        "WorkflowDisabled", "WorkflowDeleted", "RunStarted",
                                        "StepAttempted",    "StepSucceeded",   "StepFailed",
                                        "RunSucceeded",     "RunFailed"};
    (void)state;
    for (int t = 1; t <= EV_EVENT_TYPE_MAX; t++) {
        const char *n = ev_event_type_name((ev_event_type)t);
        assert_string_equal(n, names[t - 1]);
        assert_int_equal(ev_event_type_from_name(n, strlen(n)), t);
    }
    assert_null(ev_event_type_name(EV_EVENT_NONE));
    assert_null(ev_event_type_name((ev_event_type)15));
    assert_int_equal(ev_event_type_from_name("NONE", 4), EV_EVENT_NONE);
    assert_int_equal(ev_event_type_from_name("RunFailedX", 10), EV_EVENT_NONE);
    assert_int_equal(ev_event_type_from_name("RunFailedX", 9), EV_RUN_FAILED); /* by length */
    assert_int_equal(ev_event_type_from_name("", 0), EV_EVENT_NONE);
    assert_int_equal(ev_event_type_from_name(NULL, 0), EV_EVENT_NONE);
    assert_int_equal(ev_event_aggregate_type(EV_RESOURCE_DELETED), EV_AGG_RESOURCE);
    assert_int_equal(ev_event_aggregate_type(EV_WORKFLOW_DISABLED), EV_AGG_WORKFLOW);
    assert_int_equal(ev_event_aggregate_type(EV_STEP_FAILED), EV_AGG_RUN);
    assert_string_equal(ev_aggregate_type_name(EV_AGG_RUN), "run");
    assert_null(ev_aggregate_type_name((ev_aggregate_type)4));
}

/* ------------------------------------------------------------ typed roundtrip */

static const uint8_t HASH[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t CMD_HASH[32] = {
    0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf,
    0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf};
static const ev_http_header HEADERS[2] = {{S("Content-Type"), S("application/json")},
                                          {S("X-Empty"), S("")}};
static const ev_str TO[2] = {S("a@example.com"), S("b@example.org")};

static void make_steps(ev_step steps[3])
{
    memset(steps, 0, 3 * sizeof *steps);
    steps[0].name = S("call");
    steps[0].action_type = EV_ACTION_HTTP;
    steps[0].action.http.method = EV_HTTP_PATCH;
    steps[0].action.http.url = S("https://example.com/x");
    steps[0].action.http.headers = ev_header_list_of(HEADERS, 2);
    steps[0].action.http.body_template = S("{\"a\": {{payload.a}}}");
    steps[1].action_type = EV_ACTION_EMAIL;
    steps[1].action.email.to = ev_str_list_of(TO, 2);
    steps[1].action.email.subject = S("Hi \xc3\xa9");
    steps[2].action_type = EV_ACTION_HTTP;
    steps[2].action.http.method = EV_HTTP_POST;
    steps[2].action.http.url = S("http://h/");
}

/* Every field set (defaults differ from the schema's where possible). */
static void make_envelope(ev_envelope *e, ev_event_type t, const ev_step *steps)
{
    ev_envelope_init(e, t);
    for (int i = 0; i < 16; i++)
        e->event_id.bytes[i] = (uint8_t)(0xa0 + i);
    e->aggregate_id = S("agg-1.x_Y");
    e->version = 42;
    e->occurred_at_us = 1763764800123456LL;
    e->actor = S("writer");
    e->command_id = S("cmd-1");
    e->correlation_id = S("corr-1");
    e->causation_id = S("cause-1");
    e->schema_version = 3;
    e->prev_hash.ptr = HASH;
    e->prev_hash.len = 32;
    e->command_hash.ptr = CMD_HASH;
    e->command_hash.len = 32;
    switch (t) {
    case EV_RESOURCE_CREATED:
        e->payload.resource_created.name = S("R \xe6\x97\xa5");
        e->payload.resource_created.description = S("");
        e->payload.resource_created.status = EV_STATUS_ARCHIVED;
        break;
    case EV_RESOURCE_UPDATED:
        e->payload.resource_updated.description = S("d");
        e->payload.resource_updated.has_status = true;
        e->payload.resource_updated.status = EV_STATUS_ACTIVE;
        break;
    case EV_RESOURCE_DELETED:
        e->payload.resource_deleted.reason = S("gone");
        break;
    case EV_WORKFLOW_CREATED:
        e->payload.workflow_created.name = S("wf");
        e->payload.workflow_created.enabled = false;
        e->payload.workflow_created.webhook_secret = S("secret");
        e->payload.workflow_created.steps = ev_step_list_of(steps, 3);
        break;
    case EV_WORKFLOW_UPDATED:
        e->payload.workflow_updated.webhook_secret = S("new");
        e->payload.workflow_updated.steps = ev_step_list_of(steps, 0); /* present, empty */
        break;
    case EV_WORKFLOW_DELETED:
        e->payload.workflow_deleted.reason = S("");
        break;
    case EV_RUN_STARTED:
        e->payload.run_started.workflow_id = S("wf-1");
        e->payload.run_started.workflow_version = 7;
        e->payload.run_started.trigger = EV_TRIGGER_WEBHOOK;
        e->payload.run_started.payload_json = S("{\"k\":[1,2]}");
        e->payload.run_started.step_count = 3;
        e->payload.run_started.steps = ev_step_list_of(steps, 3);
        e->payload.run_started.signing_secret = S("s3cret");
        break;
    case EV_STEP_ATTEMPTED:
        e->payload.step_attempted.step = UINT32_MAX;
        e->payload.step_attempted.attempt = 2;
        e->payload.step_attempted.has_status_code = true;
        e->payload.step_attempted.status_code = 503;
        e->payload.step_attempted.error = S("busy");
        e->payload.step_attempted.duration_ms = INT64_MAX;
        e->payload.step_attempted.has_next_delay_ms = true;
        e->payload.step_attempted.next_delay_ms = 0;
        e->payload.step_attempted.delivery_id = S("d-1");
        break;
    case EV_STEP_SUCCEEDED:
        e->payload.step_succeeded.step = 1;
        e->payload.step_succeeded.attempt = 1;
        e->payload.step_succeeded.has_status_code = true;
        e->payload.step_succeeded.status_code = 250;
        break;
    case EV_STEP_FAILED:
        e->payload.step_failed.step = 0;
        e->payload.step_failed.attempt = 9;
        e->payload.step_failed.error = S("no");
        break;
    case EV_RUN_FAILED:
        e->payload.run_failed.step = 5;
        e->payload.run_failed.error = S("e");
        break;
    default:
        break;
    }
}

static void assert_steps_eq(const ev_step_list *a, const ev_step_list *b)
{
    assert_int_equal(a->present, b->present);
    assert_int_equal(a->count, b->count);
    for (uint32_t i = 0; i < a->count; i++) {
        ev_step x, y;
        assert_int_equal(ev_step_list_get(a, i, &x), 0);
        assert_int_equal(ev_step_list_get(b, i, &y), 0);
        assert_str_eq(x.name, y.name);
        assert_int_equal(x.action_type, y.action_type);
        if (x.action_type == EV_ACTION_HTTP) {
            assert_int_equal(x.action.http.method, y.action.http.method);
            assert_str_eq(x.action.http.url, y.action.http.url);
            assert_str_eq(x.action.http.body_template, y.action.http.body_template);
            assert_int_equal(x.action.http.headers.count, y.action.http.headers.count);
            for (uint32_t k = 0; k < x.action.http.headers.count; k++) {
                ev_http_header h1, h2;
                assert_int_equal(ev_header_list_get(&x.action.http.headers, k, &h1), 0);
                assert_int_equal(ev_header_list_get(&y.action.http.headers, k, &h2), 0);
                assert_str_eq(h1.name, h2.name);
                assert_str_eq(h1.value, h2.value);
            }
        } else {
            assert_str_eq(x.action.email.subject, y.action.email.subject);
            assert_str_eq(x.action.email.body_template, y.action.email.body_template);
            assert_int_equal(x.action.email.to.count, y.action.email.to.count);
            for (uint32_t k = 0; k < x.action.email.to.count; k++) {
                ev_str s1, s2;
                assert_int_equal(ev_str_list_get(&x.action.email.to, k, &s1), 0);
                assert_int_equal(ev_str_list_get(&y.action.email.to, k, &s2), 0);
                assert_str_eq(s1, s2);
            }
        }
        /* out of range */
        assert_int_equal(ev_step_list_get(a, a->count, &x), KQ_ERANGE);
    }
}

static void assert_envelope_eq(const ev_envelope *a, const ev_envelope *b)
{
    assert_memory_equal(a->event_id.bytes, b->event_id.bytes, 16);
    assert_int_equal(a->aggregate_type, b->aggregate_type);
    assert_str_eq(a->aggregate_id, b->aggregate_id);
    assert_int_equal(a->version, b->version);
    assert_int_equal(a->occurred_at_us, b->occurred_at_us);
    assert_str_eq(a->actor, b->actor);
    assert_str_eq(a->command_id, b->command_id);
    assert_str_eq(a->correlation_id, b->correlation_id);
    assert_str_eq(a->causation_id, b->causation_id);
    assert_int_equal(a->schema_version, b->schema_version);
    assert_int_equal(a->prev_hash.len, b->prev_hash.len);
    assert_true((a->prev_hash.ptr == NULL) == (b->prev_hash.ptr == NULL));
    if (a->prev_hash.ptr)
        assert_memory_equal(a->prev_hash.ptr, b->prev_hash.ptr, a->prev_hash.len);
    assert_int_equal(a->command_hash.len, b->command_hash.len);
    assert_true((a->command_hash.ptr == NULL) == (b->command_hash.ptr == NULL));
    if (a->command_hash.ptr)
        assert_memory_equal(a->command_hash.ptr, b->command_hash.ptr, a->command_hash.len);
    assert_int_equal(a->payload_type, b->payload_type);
    switch (a->payload_type) {
    case EV_RESOURCE_CREATED:
        assert_str_eq(a->payload.resource_created.name, b->payload.resource_created.name);
        assert_str_eq(a->payload.resource_created.description,
                      b->payload.resource_created.description);
        assert_int_equal(a->payload.resource_created.status, b->payload.resource_created.status);
        break;
    case EV_RESOURCE_UPDATED:
        assert_str_eq(a->payload.resource_updated.name, b->payload.resource_updated.name);
        assert_str_eq(a->payload.resource_updated.description,
                      b->payload.resource_updated.description);
        assert_int_equal(a->payload.resource_updated.has_status,
                         b->payload.resource_updated.has_status);
        assert_int_equal(a->payload.resource_updated.status, b->payload.resource_updated.status);
        break;
    case EV_RESOURCE_DELETED:
        assert_str_eq(a->payload.resource_deleted.reason, b->payload.resource_deleted.reason);
        break;
    case EV_WORKFLOW_CREATED:
        assert_str_eq(a->payload.workflow_created.name, b->payload.workflow_created.name);
        assert_int_equal(a->payload.workflow_created.enabled, b->payload.workflow_created.enabled);
        assert_str_eq(a->payload.workflow_created.webhook_secret,
                      b->payload.workflow_created.webhook_secret);
        assert_steps_eq(&a->payload.workflow_created.steps, &b->payload.workflow_created.steps);
        break;
    case EV_WORKFLOW_UPDATED:
        assert_str_eq(a->payload.workflow_updated.name, b->payload.workflow_updated.name);
        assert_str_eq(a->payload.workflow_updated.webhook_secret,
                      b->payload.workflow_updated.webhook_secret);
        assert_steps_eq(&a->payload.workflow_updated.steps, &b->payload.workflow_updated.steps);
        break;
    case EV_WORKFLOW_DELETED:
        assert_str_eq(a->payload.workflow_deleted.reason, b->payload.workflow_deleted.reason);
        break;
    case EV_RUN_STARTED: {
        const ev_run_started *x = &a->payload.run_started, *y = &b->payload.run_started;
        assert_str_eq(x->workflow_id, y->workflow_id);
        assert_int_equal(x->workflow_version, y->workflow_version);
        assert_int_equal(x->trigger, y->trigger);
        assert_str_eq(x->payload_json, y->payload_json);
        assert_int_equal(x->step_count, y->step_count);
        assert_steps_eq(&x->steps, &y->steps);
        assert_str_eq(x->signing_secret, y->signing_secret);
        break;
    }
    case EV_STEP_ATTEMPTED: {
        const ev_step_attempted *x = &a->payload.step_attempted, *y = &b->payload.step_attempted;
        assert_int_equal(x->step, y->step);
        assert_int_equal(x->attempt, y->attempt);
        assert_int_equal(x->has_status_code, y->has_status_code);
        assert_int_equal(x->status_code, y->status_code);
        assert_str_eq(x->error, y->error);
        assert_int_equal(x->duration_ms, y->duration_ms);
        assert_int_equal(x->has_next_delay_ms, y->has_next_delay_ms);
        assert_int_equal(x->next_delay_ms, y->next_delay_ms);
        assert_str_eq(x->delivery_id, y->delivery_id);
        break;
    }
    case EV_STEP_SUCCEEDED: {
        const ev_step_succeeded *x = &a->payload.step_succeeded, *y = &b->payload.step_succeeded;
        assert_int_equal(x->step, y->step);
        assert_int_equal(x->attempt, y->attempt);
        assert_int_equal(x->has_status_code, y->has_status_code);
        assert_int_equal(x->status_code, y->status_code);
        break;
    }
    case EV_STEP_FAILED:
        assert_int_equal(a->payload.step_failed.step, b->payload.step_failed.step);
        assert_int_equal(a->payload.step_failed.attempt, b->payload.step_failed.attempt);
        assert_str_eq(a->payload.step_failed.error, b->payload.step_failed.error);
        break;
    case EV_RUN_FAILED:
        assert_int_equal(a->payload.run_failed.step, b->payload.run_failed.step);
        assert_str_eq(a->payload.run_failed.error, b->payload.run_failed.error);
        break;
    default:
        break;
    }
}

static void test_typed_roundtrip_every_type(void **state)
{
    ev_step steps[3];
    (void)state;

    make_steps(steps);
    for (int t = 1; t <= EV_EVENT_TYPE_MAX; t++) {
        ev_envelope e, d, d2;
        char err[256] = "";
        size_t len, len2;
        uint8_t *buf = NULL, *buf2;
        char *json;

        make_envelope(&e, (ev_event_type)t, steps);
        buf = env_to_buf(&e, &len);
        assert_int_equal(ev_envelope_decode(buf, len, &d, err, sizeof err), 0);
        assert_envelope_eq(&e, &d);
        /* decoded views point into the buffer: zero copy */
        assert_true((const uint8_t *)d.aggregate_id.ptr > buf &&
                    (const uint8_t *)d.aggregate_id.ptr < buf + len);
        assert_true(d.prev_hash.ptr > buf && d.prev_hash.ptr < buf + len);
        assert_true(d.command_hash.ptr > buf && d.command_hash.ptr < buf + len);
        assert_int_equal(d.command_hash.len, EV_HASH_LEN);
        assert_memory_equal(d.command_hash.ptr, CMD_HASH, EV_HASH_LEN);
        assert_int_equal(d.aggregate_id.ptr[d.aggregate_id.len], '\0');
        /* a decoded envelope re-encodes to the same bytes */
        buf2 = env_to_buf(&d, &len2);
        assert_int_equal(len, len2);
        assert_memory_equal(buf, buf2, len);
        /* the JSON codec agrees with the typed one */
        json = buf_to_json(buf, len);
        free(buf2);
        buf2 = json_to_buf(json, &len2);
        assert_int_equal(ev_envelope_decode(buf2, len2, &d2, err, sizeof err), 0);
        assert_envelope_eq(&e, &d2);
        assert_non_null(strstr(json, ev_event_type_name((ev_event_type)t)));
        free(json);
        free(buf2);
        free(buf);
    }
}

static void test_typed_defaults_omitted(void **state)
{
    ev_envelope e, d;
    char err[256] = "", *json;
    size_t len;
    uint8_t *buf;
    ev_step step;
    (void)state;

    /* defaults: schema_version 1, enabled true, method POST: not written */
    ev_envelope_init(&e, EV_WORKFLOW_CREATED);
    e.aggregate_id = S("wf");
    e.version = 1;
    e.payload.workflow_created.name = S("n");
    e.payload.workflow_created.webhook_secret = S("s");
    memset(&step, 0, sizeof step);
    step.action_type = EV_ACTION_HTTP;
    step.action.http.method = EV_HTTP_POST;
    step.action.http.url = S("http://x");
    e.payload.workflow_created.steps = ev_step_list_of(&step, 1);
    buf = env_to_buf(&e, &len);
    json = buf_to_json(buf, len);
    assert_null(strstr(json, "schema_version"));
    assert_null(strstr(json, "enabled"));
    assert_null(strstr(json, "method"));
    assert_null(strstr(json, "prev_hash"));
    assert_null(strstr(json, "command_hash"));
    assert_null(strstr(json, "\"headers\""));
    assert_int_equal(ev_envelope_decode(buf, len, &d, err, sizeof err), 0);
    assert_int_equal(d.schema_version, 1);
    assert_true(d.payload.workflow_created.enabled);
    assert_null(d.actor.ptr);
    assert_null(d.prev_hash.ptr);
    assert_null(d.command_hash.ptr);
    assert_int_equal(d.command_hash.len, 0);
    free(json);
    free(buf);

    /* ResourceUpdated: absent optional status vs present "active" */
    ev_envelope_init(&e, EV_RESOURCE_UPDATED);
    e.aggregate_id = S("r");
    e.version = 2;
    e.payload.resource_updated.name = S("x");
    buf = env_to_buf(&e, &len);
    assert_int_equal(ev_envelope_decode(buf, len, &d, err, sizeof err), 0);
    assert_false(d.payload.resource_updated.has_status);
    assert_null(d.payload.resource_updated.description.ptr);
    free(buf);
}

/* Every example: JSON -> buffer -> typed -> buffer -> JSON gives the same JSON
 * whenever the example satisfies the domain rules (all 14 event examples do). */
static void test_examples_typed_equals_json(void **state)
{
    char dir[512], path[1024];
    size_t n, valid = 0;
    char **names = list_examples("", &n, dir, sizeof dir);
    (void)state;

    assert_true(n >= 14);
    for (size_t i = 0; i < n; i++) {
        size_t jlen, len, len2;
        char *json, *out1, *out2, err[256] = "";
        uint8_t *buf, *buf2;
        ev_envelope e;

        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        json = read_file(path, &jlen);
        assert_non_null(json);
        buf = json_to_buf(json, &len);
        assert_int_equal(ev_envelope_decode(buf, len, &e, err, sizeof err), 0);
        if (ev_envelope_validate(&e, err, sizeof err) == 0) {
            valid++;
            buf2 = env_to_buf(&e, &len2);
            out1 = buf_to_json(buf, len);
            out2 = buf_to_json(buf2, len2);
            if (strcmp(out1, out2) != 0)
                fail_msg("%s: typed and JSON encodings differ:\n%s\n%s", names[i], out1, out2);
            free(out1);
            free(out2);
            free(buf2);
        } else {
            assert_true(strncmp(names[i], "edge_", 5) == 0); /* only edge cases may break rules */
        }
        free(buf);
        free(json);
    }
    assert_true(valid >= 14);
    free_names(names, n);
}

/* ------------------------------------------------------------ domain validation */

typedef void (*mutator)(ev_envelope *e, ev_step *steps);

static ev_http_header bad_headers[1];
static ev_str bad_to[1];
static ev_step many_steps[EV_MAX_STEPS + 1];
static char long_text[EV_DESCRIPTION_MAX_CHARS * 4 + 8];

#define MUT(name, body)                                                                            \
    static void name(ev_envelope *e, ev_step *steps)                                               \
    {                                                                                              \
        (void)steps;                                                                               \
        body;                                                                                      \
    }

MUT(m_id_empty, e->aggregate_id = S(""))
MUT(m_id_absent, e->aggregate_id.ptr = NULL)
MUT(m_id_chars, e->aggregate_id = S("a/b"))
MUT(m_id_long,
    e->aggregate_id = S("0123456789012345678901234567890123456789012345678901234567890123X"))
MUT(m_type_none, e->payload_type = EV_EVENT_NONE)
MUT(m_type_big, e->payload_type = (ev_event_type)15)
MUT(m_agg_mismatch, e->aggregate_type = EV_AGG_RUN)
MUT(m_version_zero, e->version = 0)
MUT(m_time_negative, e->occurred_at_us = -1)
MUT(m_actor_empty, e->actor = S(""))
MUT(m_actor_utf8, e->actor = S("bad \xc3"))
MUT(m_schema_zero, e->schema_version = 0)
MUT(m_hash_short, e->prev_hash.len = 31)
MUT(m_cmd_hash_short, e->command_hash.len = 31)
MUT(m_cmd_hash_empty, e->command_hash.len = 0)
MUT(m_cmd_hash_absent, {
    e->command_hash.ptr = NULL;
    e->command_hash.len = 0;
})
MUT(m_name_empty, e->payload.workflow_created.name = S(""))
MUT(m_name_long, {
    /* 256 characters of 2 bytes each */
    for (int i = 0; i < 256; i++)
        memcpy(long_text + 2 * i, "\xc3\xa9", 2);
    e->payload.workflow_created.name.ptr = long_text;
    e->payload.workflow_created.name.len = 512;
})
MUT(m_secret_absent, e->payload.workflow_created.webhook_secret.ptr = NULL)
MUT(m_steps_absent, e->payload.workflow_created.steps.present = false)
MUT(m_steps_many, {
    for (int i = 0; i <= EV_MAX_STEPS; i++)
        many_steps[i] = steps[2];
    e->payload.workflow_created.steps = ev_step_list_of(many_steps, EV_MAX_STEPS + 1);
})
MUT(m_url_scheme, steps[0].action.http.url = S("ftp://x"))
MUT(m_url_space, steps[0].action.http.url = S("http://x y"))
MUT(m_method, steps[0].action.http.method = (ev_http_method)5)
MUT(m_header_crlf, {
    bad_headers[0].name = S("X-A");
    bad_headers[0].value = S("v\r\nInjected: 1");
    steps[0].action.http.headers = ev_header_list_of(bad_headers, 1);
})
MUT(m_header_name, {
    bad_headers[0].name = S("X A");
    bad_headers[0].value = S("v");
    steps[0].action.http.headers = ev_header_list_of(bad_headers, 1);
})
MUT(m_email_at, {
    bad_to[0] = S("nobody");
    steps[1].action.email.to = ev_str_list_of(bad_to, 1);
})
MUT(m_email_none, steps[1].action.email.to = ev_str_list_of(TO, 0))
MUT(m_subject_nl, steps[1].action.email.subject = S("a\nBcc: x@y"))
MUT(m_action_none, steps[2].action_type = EV_ACTION_NONE)

static void test_validation_errors(void **state)
{
    static const struct {
        ev_event_type type;
        mutator mut;
        int rc;
        const char *msg;
    } cases[] = {
        {EV_WORKFLOW_CREATED, NULL, 0, ""},
        {EV_WORKFLOW_CREATED, m_id_empty, KQ_EINVAL, "aggregate_id: must be 1..64"},
        {EV_WORKFLOW_CREATED, m_id_absent, KQ_EINVAL, "aggregate_id: required"},
        {EV_WORKFLOW_CREATED, m_id_chars, KQ_EINVAL, "aggregate_id: must match"},
        {EV_WORKFLOW_CREATED, m_id_long, KQ_EINVAL, "aggregate_id: must be 1..64"},
        {EV_WORKFLOW_CREATED, m_type_none, KQ_EINVAL, "payload_type: unknown event type 0"},
        {EV_WORKFLOW_CREATED, m_type_big, KQ_EINVAL, "payload_type: unknown event type 15"},
        {EV_WORKFLOW_CREATED, m_agg_mismatch, KQ_EINVAL, "aggregate_type: must be workflow"},
        {EV_WORKFLOW_CREATED, m_version_zero, KQ_EINVAL, "version: must be >= 1"},
        {EV_WORKFLOW_CREATED, m_time_negative, KQ_EINVAL, "occurred_at_us: must be >= 0"},
        {EV_WORKFLOW_CREATED, m_actor_empty, KQ_EINVAL, "actor: must be 1..255 bytes"},
        {EV_WORKFLOW_CREATED, m_actor_utf8, KQ_EINVAL, "actor: invalid UTF-8"},
        {EV_WORKFLOW_CREATED, m_schema_zero, KQ_EINVAL, "schema_version: must be >= 1"},
        {EV_WORKFLOW_CREATED, m_hash_short, KQ_EINVAL, "prev_hash: must be 32 bytes"},
        {EV_WORKFLOW_CREATED, m_cmd_hash_short, KQ_EINVAL,
         "command_hash: must be 32 bytes (got 31)"},
        {EV_WORKFLOW_CREATED, m_cmd_hash_empty, KQ_EINVAL,
         "command_hash: must be 32 bytes (got 0)"},
        {EV_WORKFLOW_CREATED, m_cmd_hash_absent, 0, ""},
        {EV_WORKFLOW_CREATED, m_name_empty, KQ_EINVAL, "payload.name: must be 1..255 characters"},
        {EV_WORKFLOW_CREATED, m_name_long, KQ_EINVAL, "(got 256)"},
        {EV_WORKFLOW_CREATED, m_secret_absent, KQ_EINVAL, "payload.webhook_secret: required"},
        {EV_WORKFLOW_CREATED, m_steps_absent, KQ_EINVAL, "payload.steps: required"},
        {EV_WORKFLOW_CREATED, m_steps_many, KQ_EINVAL, "payload.steps: at most 100"},
        {EV_WORKFLOW_CREATED, m_url_scheme, KQ_EINVAL, "payload.steps[0].action.url: must start"},
        {EV_WORKFLOW_CREATED, m_url_space, KQ_EINVAL, "payload.steps[0].action.url: must not"},
        {EV_WORKFLOW_CREATED, m_method, KQ_EINVAL, "payload.steps[0].action.method"},
        {EV_WORKFLOW_CREATED, m_header_crlf, KQ_EINVAL,
         "payload.steps[0].action.headers[0].value: must not contain CR"},
        {EV_WORKFLOW_CREATED, m_header_name, KQ_EINVAL,
         "payload.steps[0].action.headers[0].name: must be an HTTP token"},
        {EV_WORKFLOW_CREATED, m_email_at, KQ_EINVAL, "payload.steps[1].action.to[0]: must be"},
        {EV_WORKFLOW_CREATED, m_email_none, KQ_EINVAL, "payload.steps[1].action.to: must have"},
        {EV_WORKFLOW_CREATED, m_subject_nl, KQ_EINVAL, "payload.steps[1].action.subject"},
        {EV_WORKFLOW_CREATED, m_action_none, KQ_EINVAL, "payload.steps[2].action_type"},
    };
    ev_step steps[3];
    ev_fb_builder b;
    (void)state;

    ev_fb_builder_init(&b);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ev_envelope e;
        char err[256] = "";
        int rc;

        make_steps(steps);
        make_envelope(&e, cases[i].type, steps);
        if (cases[i].mut)
            cases[i].mut(&e, steps);
        rc = ev_envelope_encode(&b, &e, err, sizeof err);
        if (rc != cases[i].rc || strstr(err, cases[i].msg) == NULL)
            fail_msg("case %zu: rc %d (want %d), message '%s' (want '%s')", i, rc, cases[i].rc, err,
                     cases[i].msg);
        assert_int_equal(ev_envelope_validate(&e, err, sizeof err), cases[i].rc);
    }
    ev_fb_builder_free(&b);
}

static void test_validation_per_event(void **state)
{
    ev_step steps[3];
    ev_envelope e;
    char err[256];
    (void)state;

    make_steps(steps);
#define EXPECT_FAIL(type, stmt, msg)                                                               \
    do {                                                                                           \
        make_envelope(&e, type, steps);                                                            \
        stmt;                                                                                      \
        err[0] = '\0';                                                                             \
        assert_int_equal(ev_envelope_validate(&e, err, sizeof err), KQ_EINVAL);                    \
        if (strstr(err, msg) == NULL)                                                              \
            fail_msg("got '%s', want '%s'", err, msg);                                             \
    } while (0)

    EXPECT_FAIL(EV_RESOURCE_CREATED, e.payload.resource_created.name.ptr = NULL,
                "payload.name: required");
    EXPECT_FAIL(EV_RESOURCE_CREATED, e.payload.resource_created.status = (ev_resource_status)3,
                "payload.status");
    memset(long_text, 'x', EV_DESCRIPTION_MAX_CHARS + 1);
    EXPECT_FAIL(EV_RESOURCE_CREATED,
                e.payload.resource_created.description =
                    ((ev_str){long_text, EV_DESCRIPTION_MAX_CHARS + 1}),
                "payload.description: must be 0..4096 characters (got 4097)");
    EXPECT_FAIL(EV_RESOURCE_UPDATED,
                (e.payload.resource_updated.description.ptr = NULL,
                 e.payload.resource_updated.has_status = false),
                "payload: an update must change at least one field");
    EXPECT_FAIL(EV_WORKFLOW_UPDATED,
                (e.payload.workflow_updated.webhook_secret.ptr = NULL,
                 e.payload.workflow_updated.steps.present = false),
                "payload: an update must change at least one field");
    EXPECT_FAIL(EV_RUN_STARTED, e.payload.run_started.workflow_id = S("a b"),
                "payload.workflow_id: must match");
    EXPECT_FAIL(EV_RUN_STARTED, e.payload.run_started.workflow_version = 0,
                "payload.workflow_version");
    EXPECT_FAIL(EV_RUN_STARTED, e.payload.run_started.step_count = 2,
                "payload.steps: 3 steps but step_count 2");
    EXPECT_FAIL(EV_RUN_STARTED, e.payload.run_started.signing_secret = S(""),
                "payload.signing_secret");
    EXPECT_FAIL(EV_STEP_ATTEMPTED, e.payload.step_attempted.attempt = 0, "payload.attempt");
    EXPECT_FAIL(EV_STEP_ATTEMPTED, e.payload.step_attempted.status_code = 99,
                "payload.status_code: must be 100..999");
    EXPECT_FAIL(EV_STEP_ATTEMPTED, e.payload.step_attempted.next_delay_ms = -1,
                "payload.next_delay_ms");
    EXPECT_FAIL(EV_STEP_ATTEMPTED, e.payload.step_attempted.duration_ms = -1,
                "payload.duration_ms");
    EXPECT_FAIL(EV_STEP_SUCCEEDED, e.payload.step_succeeded.status_code = 1000,
                "payload.status_code");
    EXPECT_FAIL(EV_STEP_FAILED, e.payload.step_failed.attempt = 0, "payload.attempt");
    memset(long_text, 'x', EV_TEXT_MAX + 1);
    EXPECT_FAIL(EV_RUN_FAILED, e.payload.run_failed.error = ((ev_str){long_text, EV_TEXT_MAX + 1}),
                "payload.error: must be 0..4096 bytes");
    /* limits are inclusive */
    make_envelope(&e, EV_RESOURCE_CREATED, steps);
    for (int i = 0; i < EV_DESCRIPTION_MAX_CHARS; i++)
        memcpy(long_text + 3 * i, "\xe6\x97\xa5", 3);
    e.payload.resource_created.description = (ev_str){long_text, 3 * EV_DESCRIPTION_MAX_CHARS};
    assert_int_equal(ev_envelope_validate(&e, err, sizeof err), 0);
#undef EXPECT_FAIL
}

/* ------------------------------------------------------------ JSON codec */

#define ENV_HEAD "{\"event_id\": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0], "

static void test_json_specifics(void **state)
{
    ev_fb_builder b;
    char err[256], *json;
    size_t len, jlen;
    const uint8_t *buf;
    ev_envelope e;
    (void)state;

    ev_fb_builder_init(&b);
    /* NUL inside a string survives, printed as flatc prints it */
    static const char nul[] = ENV_HEAD "\"aggregate_id\": \"a\\u0000b\", \"payload_type\": "
                                       "\"RunSucceeded\", \"payload\": {}}";
    assert_int_equal(ev_json_encode(nul, strlen(nul), &b, err, sizeof err), 0);
    buf = ev_fb_builder_data(&b, &len);
    assert_int_equal(ev_envelope_decode(buf, len, &e, err, sizeof err), 0);
    assert_int_equal(e.aggregate_id.len, 3);
    assert_memory_equal(e.aggregate_id.ptr, "a\0b", 3);
    assert_int_equal(ev_json_decode(buf, len, &json, &jlen, err, sizeof err), 0);
    assert_non_null(strstr(json, "\"aggregate_id\": \"a\\u0000b\""));
    free(json);

    /* the input need not be NUL-terminated; trailing bytes beyond len are ignored */
    static const char part[] = ENV_HEAD "\"aggregate_id\": \"r\", \"payload_type\": "
                                        "\"RunSucceeded\", \"payload\": {}}GARBAGE";
    assert_int_equal(ev_json_encode(part, strlen(part) - 7, &b, err, sizeof err), 0);
    assert_int_equal(ev_json_encode(part, strlen(part), &b, err, sizeof err), KQ_EINVAL);

    /* a key with an embedded NUL is never taken for the field it starts like */
    static const char nulkey[] = ENV_HEAD "\"aggregate_id\": \"r\", \"actor\\u0000x\": \"a\", "
                                          "\"payload_type\": \"RunSucceeded\", \"payload\": {}}";
    assert_int_equal(ev_json_encode(nulkey, strlen(nulkey), &b, err, sizeof err), KQ_EINVAL);
    assert_non_null(strstr(err, "NUL byte in object key")); /* jansson refuses them */

    /* size limit */
    size_t big = EV_JSON_MAX_INPUT + 1;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    assert_int_equal(ev_json_encode(huge, big, &b, err, sizeof err), KQ_EINVAL);
    assert_non_null(strstr(err, "limit"));
    free(huge);

    /* union type given as NONE with a value, and a type without value on a table where
     * the union is required: both rejected */
    static const char none[] = ENV_HEAD "\"aggregate_id\": \"r\", \"payload_type\": \"NONE\", "
                                        "\"payload\": {}}";
    assert_int_equal(ev_json_encode(none, strlen(none), &b, err, sizeof err), KQ_EINVAL);
    assert_non_null(strstr(err, "payload: union value given but payload_type is NONE"));

    /* decode of a non-buffer: KQ_ECORRUPT and *json NULL */
    json = (char *)1;
    assert_int_equal(ev_json_decode((const uint8_t *)"abcdefgh", 8, &json, &jlen, err, sizeof err),
                     KQ_ECORRUPT);
    assert_null(json);
    ev_fb_builder_free(&b);
}

/* event_id is a [ubyte] of exactly 16 bytes on the wire; every codec holds to it. */
static void test_event_id_vector(void **state)
{
    static const struct {
        const char *id, *msg;
    } bad[] = {
        {"[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14]", "event_id: expected exactly 16 elements, got 15"},
        {"[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]",
         "event_id: expected exactly 16 elements, got 17"},
        {"[]", "event_id: expected exactly 16 elements, got 0"},
        {"[256,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]", "event_id[0]: 256 is out of range for ubyte"},
        {"{\"bytes\": [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]}",
         "event_id: expected array, got object"},
        {"\"123e4567-e89b-42d3-a456-426614174000\"", "event_id: expected array, got string"},
    };
    ev_step steps[3];
    ev_envelope e, d;
    ev_fb_builder b;
    char err[256] = "", json[256], *out;
    uint8_t *buf;
    size_t len;
    uint32_t at, count;
    (void)state;

    /* typed encode writes a 16-byte vector; decode copies it back */
    make_steps(steps);
    make_envelope(&e, EV_RUN_SUCCEEDED, steps);
    buf = env_to_buf(&e, &len);
    at = ev_fb_vector(buf, ev_fb_root(buf), EV_SLOT_ENVELOPE_EVENT_ID, &count);
    assert_int_not_equal(at, 0);
    assert_int_equal(count, EV_EVENT_ID_LEN);
    assert_memory_equal(buf + at, e.event_id.bytes, EV_EVENT_ID_LEN);
    assert_int_equal(ev_envelope_decode(buf, len, &d, err, sizeof err), 0);
    assert_memory_equal(d.event_id.bytes, e.event_id.bytes, EV_EVENT_ID_LEN);
    /* printed as flatc prints a [ubyte]: one number per line */
    out = buf_to_json(buf, len);
    assert_non_null(strstr(out, "{\n  \"event_id\": [\n    160,\n    161,\n"));
    assert_non_null(strstr(out, "    175\n  ],\n"));
    free(out);
    free(buf);

    /* JSON input: any other length, value or shape names event_id */
    ev_fb_builder_init(&b);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(json, sizeof json,
                 "{\"event_id\": %s, \"aggregate_id\": \"r\", \"payload_type\": "
                 "\"RunSucceeded\", \"payload\": {}}",
                 bad[i].id);
        err[0] = '\0';
        assert_int_equal(ev_json_encode(json, strlen(json), &b, err, sizeof err), KQ_EINVAL);
        if (strstr(err, bad[i].msg) == NULL)
            fail_msg("case %zu: got '%s', want '%s'", i, err, bad[i].msg);
    }
    ev_fb_builder_free(&b);
}

/* ------------------------------------------------------------ robustness */

/* Valid envelopes to corrupt: typed ones and a few examples. */
typedef struct sample {
    uint8_t *buf;
    size_t len;
    char *json; /* its decode */
} sample;

static size_t load_samples(sample *s, size_t max)
{
    static const char *const files[] = {"workflow_created.json", "step_attempted.json",
                                        "edge_unicode.json", "resource_created.json"};
    char path[1024];
    size_t n = 0, jlen;
    ev_step steps[3];
    ev_envelope e;

    make_steps(steps);
    make_envelope(&e, EV_WORKFLOW_CREATED, steps);
    s[n].buf = env_to_buf(&e, &s[n].len);
    n++;
    make_envelope(&e, EV_RESOURCE_CREATED, steps);
    s[n].buf = env_to_buf(&e, &s[n].len);
    n++;
    for (size_t i = 0; i < sizeof files / sizeof files[0] && n < max; i++) {
        char *json;
        snprintf(path, sizeof path, "%s/tests/data/events/%s", srcdir(), files[i]);
        json = read_file(path, &jlen);
        assert_non_null(json);
        s[n].buf = json_to_buf(json, &s[n].len);
        free(json);
        n++;
    }
    for (size_t i = 0; i < n; i++)
        s[i].json = buf_to_json(s[i].buf, s[i].len);
    return n;
}

static void free_samples(sample *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(s[i].buf);
        free(s[i].json);
    }
}

/*
 * Run every reader on `buf`: verify, typed decode (walking every list), JSON
 * decode, and for accepted buffers the JSON roundtrip (what the fuzzer checks).
 * Returns 1 if accepted.
 */
static int exercise(const uint8_t *buf, size_t len)
{
    char err[256], *json = NULL, *json2 = NULL;
    size_t jlen, len2, jlen2;
    ev_envelope e;
    int ok_verify, ok_typed, ok_json;
    ev_fb_builder b;

    ok_verify = ev_schema_verify(buf, len, err, sizeof err) == 0;
    if (!ok_verify)
        assert_true(err[0] != '\0');
    ok_typed = ev_envelope_decode(buf, len, &e, err, sizeof err) == 0;
    ok_json = ev_json_decode(buf, len, &json, &jlen, err, sizeof err) == 0;
    assert_int_equal(ok_verify, ok_typed);
    assert_int_equal(ok_verify, ok_json);
    if (!ok_verify)
        return 0;
    if (e.payload_type == EV_WORKFLOW_CREATED || e.payload_type == EV_WORKFLOW_UPDATED) {
        const ev_step_list *l = e.payload_type == EV_WORKFLOW_CREATED
                                    ? &e.payload.workflow_created.steps
                                    : &e.payload.workflow_updated.steps;
        for (uint32_t i = 0; i < l->count; i++) {
            ev_step st;
            ev_str s;
            ev_http_header h;
            assert_int_equal(ev_step_list_get(l, i, &st), 0);
            if (st.action_type == EV_ACTION_HTTP)
                for (uint32_t k = 0; k < st.action.http.headers.count; k++)
                    assert_int_equal(ev_header_list_get(&st.action.http.headers, k, &h), 0);
            else
                for (uint32_t k = 0; k < st.action.email.to.count; k++)
                    assert_int_equal(ev_str_list_get(&st.action.email.to, k, &s), 0);
        }
    }
    ev_fb_builder_init(&b);
    if (ev_json_encode(json, jlen, &b, err, sizeof err) != 0)
        fail_msg("re-encoding our own JSON failed: %s\n%s", err, json);
    const uint8_t *buf2 = ev_fb_builder_data(&b, &len2);
    assert_int_equal(ev_json_decode(buf2, len2, &json2, &jlen2, err, sizeof err), 0);
    assert_string_equal(json, json2);
    ev_fb_builder_free(&b);
    free(json);
    free(json2);
    return 1;
}

static void test_truncations(void **state)
{
    sample s[8];
    size_t n = load_samples(s, 8);
    (void)state;

    for (size_t k = 0; k < n; k++) {
        for (size_t cut = 0; cut < s[k].len; cut++) {
            uint8_t *p = malloc(cut ? cut : 1);
            char *json = NULL, err[256];
            size_t jlen;
            memcpy(p, s[k].buf, cut);
            if (exercise(p, cut)) {
                /* only trailing padding may go: then it is the same event */
                assert_true(cut + 3 >= s[k].len);
                assert_int_equal(ev_json_decode(p, cut, &json, &jlen, err, sizeof err), 0);
                assert_string_equal(json, s[k].json);
                free(json);
            }
            free(p);
        }
    }
    free_samples(s, n);
}

static void test_bit_flips(void **state)
{
    sample s[8];
    size_t n = load_samples(s, 8);
    size_t flips = 0, rejected = 0;
    (void)state;

    for (size_t k = 0; k < n; k++) {
        uint8_t *p = malloc(s[k].len);
        for (size_t bit = 0; bit < s[k].len * 8; bit++) {
            int ok;
            memcpy(p, s[k].buf, s[k].len);
            p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            ok = exercise(p, s[k].len);
            flips++;
            rejected += !ok;
            if (bit / 8 >= 4 && bit / 8 < 8)
                assert_false(ok); /* file identifier */
            if (bit < 2)
                assert_false(ok); /* root offset no longer 4-aligned */
        }
        free(p);
    }
    print_message("bit flips: %zu, rejected %zu (%.0f%%)\n", flips, rejected,
                  100.0 * (double)rejected / (double)flips);
    /* Flips in offsets, lengths, vtables, UTF-8 lead bits, enum and union
     * values are caught; flips in scalars, in padding and in 7 of the 8 bits
     * of an ASCII letter give another valid envelope (FlatBuffers has no
     * checksum; the log's hash chain covers that). These samples are mostly
     * text, hence a bit under half accepted; a laxer verifier (no UTF-8
     * check, no enum check) drops well below the bound. Every accepted flip
     * passed the JSON roundtrip check in exercise(). */
    assert_true(rejected * 100 > flips * 40);
    free_samples(s, n);
}

/* Copy of the sample with a u32/u16 patched at `pos`. */
static void expect_rejected_u32(const sample *s, uint32_t pos, uint32_t value, const char *what)
{
    uint8_t *p = malloc(s->len);
    char err[256] = "";

    memcpy(p, s->buf, s->len);
    assert_true(pos + 4 <= s->len);
    memcpy(p + pos, &value, 4);
    assert_int_equal(ev_schema_verify(p, s->len, err, sizeof err), KQ_ECORRUPT);
    if (what && strstr(err, what) == NULL)
        fail_msg("got '%s', want '%s'", err, what);
    assert_int_equal(exercise(p, s->len), 0);
    free(p);
}

static void expect_rejected_u16(const sample *s, uint32_t pos, uint16_t value, const char *what)
{
    uint8_t *p = malloc(s->len);
    char err[256] = "";

    memcpy(p, s->buf, s->len);
    memcpy(p + pos, &value, 2);
    assert_int_equal(ev_schema_verify(p, s->len, err, sizeof err), KQ_ECORRUPT);
    if (what && strstr(err, what) == NULL)
        fail_msg("got '%s', want '%s'", err, what);
    assert_int_equal(exercise(p, s->len), 0);
    free(p);
}

static void test_handmade_corruptions(void **state)
{
    sample s[8];
    size_t n = load_samples(s, 8);
    const sample *wf = &s[0]; /* typed WorkflowCreated: every field present */
    const uint8_t *buf = wf->buf;
    uint32_t root = ev_fb_root(buf), vt, f, str, vec, count, payload, step0;
    (void)state;

    vt = (uint32_t)((int64_t)root - (int32_t)ev_fb_read_u32(buf + root));
    /* root offset outside, misaligned root table */
    expect_rejected_u32(wf, 0, (uint32_t)wf->len + 64, "outside the buffer");
    expect_rejected_u32(wf, 0, 0xfffffff0u, "outside the buffer");
    expect_rejected_u32(wf, 0, root + 2, NULL);
    /* vtable outside the buffer (soffset) */
    expect_rejected_u32(wf, root, 0x7fffffffu, "(root): vtable out of bounds");
    expect_rejected_u32(wf, root, 0x80000000u, "(root): vtable out of bounds");
    /* vtable size odd / huge, table size too small */
    expect_rejected_u16(wf, vt, 5, "bad vtable size");
    expect_rejected_u16(wf, vt, 0xfffe, "vtable out of bounds");
    expect_rejected_u16(wf, vt + 2, 2, "bad table size");
    /* field offset pointing past the table */
    expect_rejected_u16(wf, vt + 4 + 2 * EV_SLOT_ENVELOPE_VERSION, 0xfff0,
                        "version: field outside");
    /* string offset outside, string length past the end, missing NUL */
    f = ev_fb_field(buf, root, EV_SLOT_ENVELOPE_AGGREGATE_ID);
    str = ev_fb_deref(buf, f);
    expect_rejected_u32(wf, f, 0x7ffffff0u, "aggregate_id: offset points outside");
    expect_rejected_u32(wf, str, 0xffffffffu, "aggregate_id: string length past end");
    expect_rejected_u32(wf, str, ev_fb_read_u32(buf + str) - 1, "aggregate_id: string not NUL");
    /* event_id's count changed: any length but 16 is rejected by the verifier,
     * also where the bytes would still be inside the buffer */
    f = ev_fb_field(buf, root, EV_SLOT_ENVELOPE_EVENT_ID);
    vec = ev_fb_deref(buf, f);
    assert_int_equal(ev_fb_read_u32(buf + vec), EV_EVENT_ID_LEN);
    expect_rejected_u32(wf, vec, 15, "event_id: must be exactly 16 bytes, got 15");
    expect_rejected_u32(wf, vec, 17, "event_id: must be exactly 16 bytes, got 17");
    expect_rejected_u32(wf, vec, 0, "event_id: must be exactly 16 bytes, got 0");
    expect_rejected_u32(wf, vec, 0xffffffffu, "event_id: vector length past end");
    /* huge vector counts */
    f = ev_fb_field(buf, root, EV_SLOT_ENVELOPE_PREV_HASH);
    vec = ev_fb_deref(buf, f);
    expect_rejected_u32(wf, vec, 0xffffffffu, "prev_hash: vector length past end");
    f = ev_fb_field(buf, root, EV_SLOT_ENVELOPE_COMMAND_HASH);
    assert_int_not_equal(f, 0);
    vec = ev_fb_deref(buf, f);
    expect_rejected_u32(wf, vec, 0xffffffffu, "command_hash: vector length past end");
    payload = ev_fb_table(buf, root, EV_SLOT_ENVELOPE_PAYLOAD);
    vec = ev_fb_vector(buf, payload, EV_SLOT_WORKFLOW_CREATED_STEPS, &count) - 4;
    assert_int_equal(count, 3);
    expect_rejected_u32(wf, vec, 0x40000000u, "payload.steps: vector length past end");
    expect_rejected_u32(wf, vec, 0xffffffffu, "payload.steps: vector length past end");
    /* a step offset outside, a misaligned step table */
    expect_rejected_u32(wf, vec + 4, 0x7ffffff0u, "payload.steps[0]: offset");
    step0 = ev_fb_read_u32(buf + vec + 4);
    expect_rejected_u32(wf, vec + 4, step0 + 1, "payload.steps[0]: misaligned table");
    expect_rejected_u32(wf, vec + 8, step0 + 2, "payload.steps[1]: misaligned table");
    /* union: payload type changed to another member whose fields do not match,
     * to NONE (value without type) and to an unknown type */
    f = ev_fb_field(buf, root, EV_SLOT_ENVELOPE_PAYLOAD_TYPE);
    {
        uint8_t *p = malloc(wf->len);
        char err[256];
        static const uint8_t bad_types[] = {0, 15, 255};
        for (size_t i = 0; i < sizeof bad_types; i++) {
            memcpy(p, buf, wf->len);
            p[f] = bad_types[i];
            assert_int_equal(ev_schema_verify(p, wf->len, err, sizeof err), KQ_ECORRUPT);
            assert_non_null(strstr(err, bad_types[i] ? "payload_type: unknown union type"
                                                     : "payload: union value present but"));
            assert_int_equal(exercise(p, wf->len), 0);
        }
        /* other members: must never crash; accepted or not depends on the fields */
        for (uint8_t t = 1; t <= EV_EVENT_TYPE_MAX; t++) {
            memcpy(p, buf, wf->len);
            p[f] = t;
            exercise(p, wf->len);
        }
        free(p);
    }
    free_samples(s, n);
}

/* Envelopes built with the raw builder, breaking the policy of ev_schema.h. */
/* id_len: bytes of event_id, -1 for none. */
static uint8_t *raw_envelope(int id_len, int ptype, int with_payload, int status, int enabled,
                             const char *name, size_t name_len, size_t *len)
{
    ev_fb_builder b;
    ev_fb_ref payload = 0, id = 0, agg, nm, secret, steps, env;
    uint8_t id_bytes[64] = {0};
    uint8_t *out;

    ev_fb_builder_init(&b);
    if (with_payload) {
        nm = ev_fb_create_string(&b, name, name_len);
        secret = ev_fb_create_string(&b, "s", 1);
        steps = ev_fb_create_ref_vector(&b, NULL, 0);
        ev_fb_table_start(&b);
        ev_fb_table_add_ref(&b, 0, nm); /* name is slot 0 in both tables used here */
        if (ptype == EV_WORKFLOW_CREATED) {
            uint8_t en = (uint8_t)enabled;
            ev_fb_table_add_ref(&b, EV_SLOT_WORKFLOW_CREATED_WEBHOOK_SECRET, secret);
            ev_fb_table_add_ref(&b, EV_SLOT_WORKFLOW_CREATED_STEPS, steps);
            ev_fb_table_add_scalar(&b, EV_SLOT_WORKFLOW_CREATED_ENABLED, &en, 1);
        } else if (status >= 0) {
            uint8_t st = (uint8_t)status;
            ev_fb_table_add_scalar(&b, EV_SLOT_RESOURCE_CREATED_STATUS, &st, 1);
        }
        payload = ev_fb_table_end(&b);
    }
    assert_true(id_len <= (int)sizeof id_bytes);
    if (id_len >= 0)
        id = ev_fb_create_vector(&b, id_bytes, (size_t)id_len, 1, 1);
    agg = ev_fb_create_string(&b, "a", 1);
    ev_fb_table_start(&b);
    ev_fb_table_add_ref(&b, EV_SLOT_ENVELOPE_EVENT_ID, id);
    ev_fb_table_add_ref(&b, EV_SLOT_ENVELOPE_AGGREGATE_ID, agg);
    if (ptype >= 0) {
        uint8_t t = (uint8_t)ptype;
        ev_fb_table_add_scalar(&b, EV_SLOT_ENVELOPE_PAYLOAD_TYPE, &t, 1);
    }
    ev_fb_table_add_ref(&b, EV_SLOT_ENVELOPE_PAYLOAD, payload);
    env = ev_fb_table_end(&b);
    assert_int_equal(ev_fb_finish(&b, env, EV_FILE_IDENT), 0);
    out = take(&b, len);
    ev_fb_builder_free(&b);
    return out;
}

static void test_policy(void **state)
{
    static const struct {
        int id_len, ptype, with_payload, status, enabled;
        const char *name;
        size_t name_len;
        const char *msg; /* NULL: accepted */
    } cases[] = {
        {16, EV_RESOURCE_CREATED, 1, 2, 0, "ok", 2, NULL},
        {-1, EV_RESOURCE_CREATED, 1, 2, 0, "ok", 2, "event_id: required field missing"},
        {0, EV_RESOURCE_CREATED, 1, 2, 0, "ok", 2, "event_id: must be exactly 16 bytes, got 0"},
        {15, EV_RESOURCE_CREATED, 1, 2, 0, "ok", 2, "event_id: must be exactly 16 bytes, got 15"},
        {17, EV_RESOURCE_CREATED, 1, 2, 0, "ok", 2, "event_id: must be exactly 16 bytes, got 17"},
        {32, EV_RESOURCE_CREATED, 1, 2, 0, "ok", 2, "event_id: must be exactly 16 bytes, got 32"},
        {16, EV_RESOURCE_CREATED, 0, -1, 0, "ok", 2, "payload: required field missing"},
        {16, -1, 1, -1, 0, "ok", 2, "payload: union value present but its type is NONE"},
        {16, 0, 1, -1, 0, "ok", 2, "payload: union value present but its type is NONE"},
        {16, 15, 1, -1, 0, "ok", 2, "payload_type: unknown union type"},
        {16, EV_RESOURCE_CREATED, 1, 3, 0, "ok", 2, "payload.status: unknown enum value"},
        {16, EV_RESOURCE_CREATED, 1, 255, 0, "ok", 2, "payload.status: unknown enum value"},
        {16, EV_WORKFLOW_CREATED, 1, -1, 1, "ok", 2, NULL},
        {16, EV_WORKFLOW_CREATED, 1, -1, 2, "ok", 2, "payload.enabled: bool is neither 0 nor 1"},
        {16, EV_RESOURCE_CREATED, 1, -1, 0, "a\xc3", 2, "payload.name: invalid UTF-8"},
        {16, EV_RESOURCE_CREATED, 1, -1, 0, "\xed\xa0\x80", 3, "payload.name: invalid UTF-8"},
        {16, EV_RESOURCE_CREATED, 1, -1, 0, "\xc0\x80", 2, "payload.name: invalid UTF-8"},
        {16, EV_RESOURCE_CREATED, 1, -1, 0, "\xf4\x90\x80\x80", 4, "payload.name: invalid UTF-8"},
        {16, EV_RESOURCE_CREATED, 1, -1, 0, "a\0b", 3, NULL}, /* NUL is valid UTF-8 */
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        char err[256] = "";
        uint8_t *buf =
            raw_envelope(cases[i].id_len, cases[i].ptype, cases[i].with_payload, cases[i].status,
                         cases[i].enabled, cases[i].name, cases[i].name_len, &len);
        int rc = ev_schema_verify(buf, len, err, sizeof err);
        if (cases[i].msg == NULL ? rc != 0 : (rc != KQ_ECORRUPT || !strstr(err, cases[i].msg)))
            fail_msg("case %zu: rc %d '%s', want '%s'", i, rc, err,
                     cases[i].msg ? cases[i].msg : "accepted");
        exercise(buf, len);
        free(buf);
    }

    /* invalid UTF-8 inside a vector of strings is found too, with its index */
    static const char json[] = ENV_HEAD
        "\"aggregate_id\": \"w\", \"payload_type\": \"WorkflowCreated\", \"payload\": "
        "{\"name\": \"n\", \"webhook_secret\": \"s\", \"steps\": [{\"action_type\": "
        "\"EmailAction\", \"action\": {\"to\": [\"a@b\", \"XX@b\"], \"subject\": \"s\"}}]}}";
    size_t len;
    char err[256];
    uint8_t *buf = json_to_buf(json, &len);
    uint8_t *xx = memmem(buf, len, "XX@b", 4);
    assert_non_null(xx);
    xx[0] = 0xff;
    assert_int_equal(ev_schema_verify(buf, len, err, sizeof err), KQ_ECORRUPT);
    assert_non_null(strstr(err, "payload.steps[0].action.to[1]: invalid UTF-8"));
    free(buf);
}

/* One 64 KiB string referenced 200000 times from a vector of strings: 13 GB
 * of UTF-8 to check from a ~870 KB buffer. The work limit must stop it fast. */
static void test_shared_string_amplification(void **state)
{
    enum { NREF = 200000, SLEN = 65536 };
    ev_fb_builder b;
    ev_fb_ref s, *refs, to, subj, act, step, steps, nm, sec, payload, id, agg, env;
    char *text = malloc(SLEN);
    uint8_t id_bytes[EV_EVENT_ID_LEN] = {0}, t;
    const uint8_t *buf;
    size_t len;
    char err[256];
    clock_t c0;
    (void)state;

    memset(text, 'a', SLEN);
    refs = malloc(NREF * sizeof *refs);
    ev_fb_builder_init(&b);
    s = ev_fb_create_string(&b, text, SLEN);
    for (int i = 0; i < NREF; i++)
        refs[i] = s;
    to = ev_fb_create_ref_vector(&b, refs, NREF);
    subj = ev_fb_create_string(&b, "s", 1);
    ev_fb_table_start(&b);
    ev_fb_table_add_ref(&b, EV_SLOT_EMAIL_ACTION_TO, to);
    ev_fb_table_add_ref(&b, EV_SLOT_EMAIL_ACTION_SUBJECT, subj);
    act = ev_fb_table_end(&b);
    ev_fb_table_start(&b);
    t = EV_ACTION_EMAIL;
    ev_fb_table_add_scalar(&b, EV_SLOT_STEP_ACTION_TYPE, &t, 1);
    ev_fb_table_add_ref(&b, EV_SLOT_STEP_ACTION, act);
    step = ev_fb_table_end(&b);
    steps = ev_fb_create_ref_vector(&b, &step, 1);
    nm = ev_fb_create_string(&b, "n", 1);
    sec = ev_fb_create_string(&b, "s", 1);
    ev_fb_table_start(&b);
    ev_fb_table_add_ref(&b, EV_SLOT_WORKFLOW_CREATED_NAME, nm);
    ev_fb_table_add_ref(&b, EV_SLOT_WORKFLOW_CREATED_WEBHOOK_SECRET, sec);
    ev_fb_table_add_ref(&b, EV_SLOT_WORKFLOW_CREATED_STEPS, steps);
    payload = ev_fb_table_end(&b);
    id = ev_fb_create_vector(&b, id_bytes, sizeof id_bytes, 1, 1);
    agg = ev_fb_create_string(&b, "w", 1);
    ev_fb_table_start(&b);
    ev_fb_table_add_ref(&b, EV_SLOT_ENVELOPE_EVENT_ID, id);
    ev_fb_table_add_ref(&b, EV_SLOT_ENVELOPE_AGGREGATE_ID, agg);
    t = EV_WORKFLOW_CREATED;
    ev_fb_table_add_scalar(&b, EV_SLOT_ENVELOPE_PAYLOAD_TYPE, &t, 1);
    ev_fb_table_add_ref(&b, EV_SLOT_ENVELOPE_PAYLOAD, payload);
    env = ev_fb_table_end(&b);
    assert_int_equal(ev_fb_finish(&b, env, EV_FILE_IDENT), 0);
    buf = ev_fb_builder_data(&b, &len);

    c0 = clock();
    assert_int_equal(ev_schema_verify(buf, len, err, sizeof err), KQ_ECORRUPT);
    assert_non_null(strstr(err, "work limit"));
    assert_true((double)(clock() - c0) / CLOCKS_PER_SEC < 2.0);
    ev_fb_builder_free(&b);
    free(refs);
    free(text);
}

/*
 * Deep nesting. events.fbs is not recursive (its tables nest at most 5 deep),
 * so this uses a recursive test schema `table Node { child: Node; }` through
 * ev_schema_verify_root: a chain of 1000 tables must be rejected by the depth
 * limit (not by the C stack), and a chain of 10 accepted.
 */
extern const ev_schema_table test_node; /* defined below; non-static for self-reference */
static const ev_schema_field test_node_fields[] = {
    {"child", 0, EV_K_TABLE, 0, 0, NULL, &test_node, NULL, 0},
};
const ev_schema_table test_node = {"Node", test_node_fields, 1};

static void test_deep_nesting(void **state)
{
    static const int depths[] = {10, 1000};
    (void)state;

    for (size_t k = 0; k < 2; k++) {
        ev_fb_builder b;
        ev_fb_ref child = 0;
        const uint8_t *buf;
        size_t len;
        char err[256] = "";
        int rc;

        ev_fb_builder_init(&b);
        for (int i = 0; i < depths[k]; i++) {
            ev_fb_table_start(&b);
            ev_fb_table_add_ref(&b, 0, child);
            child = ev_fb_table_end(&b);
        }
        assert_int_equal(ev_fb_finish(&b, child, "NODE"), 0);
        buf = ev_fb_builder_data(&b, &len);
        rc = ev_schema_verify_root(buf, len, "NODE", &test_node, err, sizeof err);
        if (depths[k] <= 10) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, KQ_ECORRUPT);
            assert_true(strstr(err, "too deep") != NULL);
        }
        /* and it is not an Envelope */
        assert_int_equal(ev_schema_verify(buf, len, err, sizeof err), KQ_ECORRUPT);
        ev_fb_builder_free(&b);
    }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static void test_random_bytes(void **state)
{
    sample s[8];
    size_t n = load_samples(s, 8), accepted = 0;
    (void)state;

    for (int iter = 0; iter < 20000; iter++) {
        size_t len = rnd() % 600;
        uint8_t *p = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++)
            p[i] = (uint8_t)rnd();
        if (len >= 8 && iter % 2) {
            /* plausible header: identifier and an aligned root offset in range */
            uint32_t root = (rnd() % (uint32_t)len) & ~3u;
            memcpy(p, &root, 4);
            memcpy(p + 4, "KQEV", 4);
        }
        if (iter % 4 == 3) {
            /* a valid envelope with random bytes pasted over a random window */
            const sample *v = &s[rnd() % n];
            free(p);
            len = v->len;
            p = malloc(len);
            memcpy(p, v->buf, len);
            size_t at = rnd() % len, w = 1 + rnd() % 8;
            for (size_t i = at; i < at + w && i < len; i++)
                p[i] = (uint8_t)rnd();
        }
        accepted += exercise(p, len);
        free(p);
    }
    print_message("random buffers accepted: %zu of 20000\n", accepted);
    free_samples(s, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptors),
        cmocka_unit_test(test_event_type_names),
        cmocka_unit_test(test_typed_roundtrip_every_type),
        cmocka_unit_test(test_typed_defaults_omitted),
        cmocka_unit_test(test_examples_typed_equals_json),
        cmocka_unit_test(test_validation_errors),
        cmocka_unit_test(test_validation_per_event),
        cmocka_unit_test(test_json_specifics),
        cmocka_unit_test(test_event_id_vector),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_handmade_corruptions),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_shared_string_amplification),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_random_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
