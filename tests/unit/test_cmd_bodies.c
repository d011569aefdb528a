/*
 * test_cmd_bodies.c — the workflow / run / attempt request bodies of
 * kcqrs-commands (the parse hooks of cmd_workflow.c and cmd_run.c, trigger
 * payloads, secrets; the action rules they apply are events/ev_action.h's,
 * tested in test_ev_action.c, so here only that a body's actions reach them):
 * every validation rule gives its 400 detail on the right field path, and a
 * valid body becomes the right command (the steps envelope decoded back with
 * ev_envelope_decode).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_state.h"
#include "ev_codec.h"
#include "kq_err.h"
#include "kq_json_in.h"

enum { CREATE, UPDATE, ATTEMPT };

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, &e);
    if (v == NULL)
        fail_msg("test JSON does not parse: %s: %s", e.text, text);
    return v;
}

/* The parse hook of the type, as the API calls it (kind and id set). */
static int run_parse(int what, json_t *obj, cmd_command *c, json_t *details)
{
    memset(c, 0, sizeof *c);
    snprintf(c->id, sizeof c->id, "wf-1");
    c->kind = what == CREATE ? CMD_WF_CREATE : what == UPDATE ? CMD_WF_UPDATE : CMD_RUN_ATTEMPT;
    return cmd_aggregate_get(cmd_kind_topic(c->kind))->parse(obj, c, details);
}

static int has_field(const json_t *details, const char *field)
{
    size_t i;
    json_t *d;
    json_array_foreach(details, i, d)
    {
        const char *f = json_string_value(json_object_get(d, "field"));
        const char *m = json_string_value(json_object_get(d, "message"));
        if (f != NULL && strcmp(f, field) == 0 && m != NULL && m[0] != '\0')
            return 1;
    }
    return 0;
}

/* `text` is refused (KQ_EINVAL) with a detail naming `field`. */
static void refused(int what, const char *text, const char *field)
{
    json_t *obj = parse(text), *details = json_array();
    cmd_command c;
    int rc = run_parse(what, obj, &c, details);
    char *dump = json_dumps(details, JSON_COMPACT);

    if (rc != KQ_EINVAL || !has_field(details, field))
        fail_msg("expected a detail on '%s' for %s; rc %d, details %s", field, text, rc,
                 dump ? dump : "?");
    free(dump);
    cmd_command_clear(&c);
    json_decref(details);
    json_decref(obj);
}

/* `text` is accepted; the command is left in *c (caller clears). */
static void accepted(int what, const char *text, cmd_command *c)
{
    json_t *obj = parse(text), *details = json_array();
    int rc = run_parse(what, obj, c, details);
    char *dump = json_dumps(details, JSON_COMPACT);

    if (rc != 0 || json_array_size(details) != 0)
        fail_msg("expected %s to pass; rc %d, details %s", text, rc, dump ? dump : "?");
    free(dump);
    json_decref(details);
    json_decref(obj);
}

#define HTTP_OK "{\"type\":\"http\",\"url\":\"https://example.com/x\"}"
#define MAIL_OK "{\"type\":\"email\",\"to\":[\"a@example.com\"],\"subject\":\"hi\"}"

static void wf(int what, const char *actions_or_fields, const char *field)
{
    char text[8192];
    snprintf(text, sizeof text, "{\"name\":\"w\",\"actions\":[%s]}", actions_or_fields);
    refused(what, text, field);
}

/* ------------------------------------------------------------------ create */

static void test_create_ok(void **state)
{
    cmd_command c;
    ev_envelope e;
    ev_step st;
    ev_http_header h;
    ev_str s;
    char err[256];
    (void)state;

    accepted(CREATE,
             "{\"id\":\"wf-9\",\"name\":\"Order hook\",\"actions\":["
             "{\"type\":\"http\",\"name\":\"notify\",\"method\":\"PUT\","
             "\"url\":\"https://h.example:8443/o/{{payload.id}}?x=1\","
             "\"headers\":{\"X-Token\":\"t {{payload.tok}}\",\"Accept\":\"*/*\"},"
             "\"body_template\":\"{\\\"n\\\": {{ payload.n }}}\"},"
             "{\"type\":\"email\",\"to\":[\"ops@example.com\",\"b@c.d\"],"
             "\"subject\":\"Order {{payload.id}}\",\"body_template\":\"{{payload}}\"}]}",
             &c);
    assert_string_equal(c.id, "wf-9");
    assert_string_equal(c.name, "Order hook");
    assert_int_equal(c.fields, CMD_F_NAME | CMD_F_ENABLED | CMD_F_SECRET | CMD_F_STEPS);
    assert_int_equal(c.enabled, 1);
    assert_int_equal(c.secret_generated, 1);
    assert_int_equal(strlen(c.secret), 64);
    assert_int_equal(strspn(c.secret, "0123456789abcdef"), 64);
    assert_non_null(c.steps_env);
    assert_int_equal(ev_envelope_decode(c.steps_env, c.steps_env_len, &e, err, sizeof err), 0);
    assert_int_equal(e.payload_type, EV_WORKFLOW_UPDATED);
    assert_string_equal(e.aggregate_id.ptr, "wf-9");
    assert_null(e.payload.workflow_updated.name.ptr);
    assert_null(e.payload.workflow_updated.webhook_secret.ptr);
    assert_true(e.payload.workflow_updated.steps.present);
    assert_int_equal(e.payload.workflow_updated.steps.count, 2);

    assert_int_equal(ev_step_list_get(&e.payload.workflow_updated.steps, 0, &st), 0);
    assert_int_equal(st.action_type, EV_ACTION_HTTP);
    assert_string_equal(st.name.ptr, "notify");
    assert_int_equal(st.action.http.method, EV_HTTP_PUT);
    assert_string_equal(st.action.http.url.ptr, "https://h.example:8443/o/{{payload.id}}?x=1");
    assert_string_equal(st.action.http.body_template.ptr, "{\"n\": {{ payload.n }}}");
    assert_int_equal(st.action.http.headers.count, 2);
    assert_int_equal(ev_header_list_get(&st.action.http.headers, 0, &h), 0);
    assert_string_equal(h.name.ptr, "X-Token");
    assert_string_equal(h.value.ptr, "t {{payload.tok}}");
    assert_int_equal(ev_header_list_get(&st.action.http.headers, 1, &h), 0);
    assert_string_equal(h.name.ptr, "Accept");

    assert_int_equal(ev_step_list_get(&e.payload.workflow_updated.steps, 1, &st), 0);
    assert_int_equal(st.action_type, EV_ACTION_EMAIL);
    assert_null(st.name.ptr);
    assert_int_equal(st.action.email.to.count, 2);
    assert_int_equal(ev_str_list_get(&st.action.email.to, 1, &s), 0);
    assert_string_equal(s.ptr, "b@c.d");
    assert_string_equal(st.action.email.subject.ptr, "Order {{payload.id}}");
    assert_string_equal(st.action.email.body_template.ptr, "{{payload}}");
    cmd_command_clear(&c);
}

static void test_create_given_fields(void **state)
{
    cmd_command c;
    ev_envelope e;
    ev_step st;
    char err[256];
    (void)state;

    accepted(CREATE,
             "{\"name\":\"w\",\"enabled\":false,\"secret\":\"s3cr3t!\",\"actions\":[" HTTP_OK "]}",
             &c);
    assert_int_equal(strlen(c.id), 36); /* a UUID v4 */
    assert_int_equal(c.id[14], '4');
    assert_int_equal(c.enabled, 0);
    assert_int_equal(c.fields & CMD_F_ENABLED, CMD_F_ENABLED);
    assert_string_equal(c.secret, "s3cr3t!");
    assert_int_equal(c.secret_generated, 0);
    assert_int_equal(ev_envelope_decode(c.steps_env, c.steps_env_len, &e, err, sizeof err), 0);
    assert_int_equal(ev_step_list_get(&e.payload.workflow_updated.steps, 0, &st), 0);
    assert_int_equal(st.action.http.method, EV_HTTP_POST); /* the default */
    assert_false(st.action.http.headers.present && st.action.http.headers.count > 0);
    cmd_command_clear(&c);
}

static void test_create_top_level_errors(void **state)
{
    char big[400];
    (void)state;

    refused(CREATE, "{}", "name");
    refused(CREATE, "{}", "actions");
    refused(CREATE, "{\"name\":\"\",\"actions\":[" HTTP_OK "]}", "name");
    memset(big, 'n', 256);
    big[256] = '\0';
    {
        char text[1024];
        snprintf(text, sizeof text, "{\"name\":\"%s\",\"actions\":[" HTTP_OK "]}", big);
        refused(CREATE, text, "name");
        snprintf(text, sizeof text, "{\"name\":\"w\",\"secret\":\"%s\",\"actions\":[" HTTP_OK "]}",
                 big);
        refused(CREATE, text, "secret");
    }
    refused(CREATE, "{\"name\":\"w\",\"foo\":1,\"actions\":[" HTTP_OK "]}", "foo");
    refused(CREATE, "{\"name\":\"w\",\"id\":\"bad id\",\"actions\":[" HTTP_OK "]}", "id");
    refused(CREATE, "{\"name\":\"w\",\"enabled\":\"yes\",\"actions\":[" HTTP_OK "]}", "enabled");
    refused(CREATE, "{\"name\":\"w\",\"secret\":\"\",\"actions\":[" HTTP_OK "]}", "secret");
    refused(CREATE, "{\"name\":\"w\",\"secret\":\"a b\",\"actions\":[" HTTP_OK "]}", "secret");
    refused(CREATE, "{\"name\":\"w\",\"secret\":\"caf\\u00e9\",\"actions\":[" HTTP_OK "]}",
            "secret");
    refused(CREATE, "{\"name\":\"w\",\"secret\":7,\"actions\":[" HTTP_OK "]}", "secret");
    refused(CREATE, "{\"name\":\"w\",\"actions\":[]}", "actions");
    refused(CREATE, "{\"name\":\"w\",\"actions\":\"x\"}", "actions");
    refused(CREATE, "{\"name\":\"w\",\"rotate_secret\":true,\"actions\":[" HTTP_OK "]}",
            "rotate_secret");
    {
        /* 101 actions */
        size_t cap = 101 * (sizeof HTTP_OK + 1) + 64, n;
        char *text = malloc(cap);
        assert_non_null(text);
        n = (size_t)snprintf(text, cap, "{\"name\":\"w\",\"actions\":[");
        for (int i = 0; i < 101; i++)
            n += (size_t)snprintf(text + n, cap - n, "%s%s", i ? "," : "", HTTP_OK);
        snprintf(text + n, cap - n, "]}");
        refused(CREATE, text, "actions");
        free(text);
    }
}

static void test_create_every_detail_at_once(void **state)
{
    json_t *obj = parse("{\"name\":\"\",\"bogus\":1,\"actions\":[" HTTP_OK
                        ",{\"type\":\"http\",\"url\":\"ftp://x\"},"
                        "{\"type\":\"email\",\"to\":[\"nobody\"],\"subject\":\"s\"}]}");
    json_t *details = json_array();
    cmd_command c;
    (void)state;

    assert_int_equal(run_parse(CREATE, obj, &c, details), KQ_EINVAL);
    assert_true(has_field(details, "name"));
    assert_true(has_field(details, "bogus"));
    assert_true(has_field(details, "actions[1].url"));
    assert_true(has_field(details, "actions[2].to[0]"));
    assert_false(has_field(details, "actions[0].url"));
    assert_int_equal(json_array_size(details), 4);
    cmd_command_clear(&c);
    json_decref(details);
    json_decref(obj);
}

static void test_action_errors(void **state)
{
    (void)state;

    /* The body's actions go through ev_actions_env with the prefix "actions": its
     * details name the action and the field (every action rule is tested in
     * test_ev_action.c). */
    wf(CREATE, "7", "actions[0]");
    wf(CREATE, HTTP_OK ",{\"url\":\"http://x/\"}", "actions[1].type");
    wf(CREATE, "{\"type\":\"http\",\"url\":\"ftp://x/\"}", "actions[0].url");
    wf(CREATE, "{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":{\"host\":\"v\"}}",
       "actions[0].headers.host");
    wf(CREATE, "{\"type\":\"http\",\"url\":\"http://x/\",\"body_template\":\"{{nope}}\"}",
       "actions[0].body_template");
    wf(CREATE, "{\"type\":\"email\",\"to\":[\"a@b.c\",7],\"subject\":\"s\"}", "actions[0].to[1]");
    wf(CREATE, "{\"type\":\"email\",\"to\":[\"a@b.c\"]}", "actions[0].subject");
}

static void test_action_limits_accepted(void **state)
{
    cmd_command c;
    char text[8192], subj[1000];
    (void)state;

    /* edge values that must pass */
    accepted(CREATE,
             "{\"name\":\"w\",\"actions\":[{\"type\":\"http\",\"url\":\"HTTP://[::1]:65535\"},"
             "{\"type\":\"http\",\"url\":\"https://x?q=1#f\",\"method\":\"DELETE\","
             "\"headers\":{\"X-Empty\":\"\"},\"body_template\":\"a } { b }} {x}\"}]}",
             &c);
    cmd_command_clear(&c);
    memset(subj, 's', 998);
    subj[998] = '\0';
    snprintf(text, sizeof text,
             "{\"name\":\"w\",\"actions\":[{\"type\":\"email\",\"to\":[\"a.b+c@d-e.f\"],"
             "\"subject\":\"%s\",\"body_template\":\"\"}]}",
             subj);
    accepted(CREATE, text, &c);
    cmd_command_clear(&c);
}

/* ------------------------------------------------------------------ update */

static void test_update(void **state)
{
    cmd_command c;
    ev_envelope e;
    char err[256];
    (void)state;

    refused(UPDATE, "{}", "body");
    refused(UPDATE, "{\"rotate_secret\":true,\"secret\":\"abc\"}", "rotate_secret");
    refused(UPDATE, "{\"rotate_secret\":false}", "rotate_secret");
    refused(UPDATE, "{\"rotate_secret\":1}", "rotate_secret");
    refused(UPDATE, "{\"name\":\"\"}", "name");
    refused(UPDATE, "{\"id\":\"x\"}", "id");
    refused(UPDATE, "{\"actions\":[]}", "actions");
    refused(UPDATE, "{\"actions\":[{\"type\":\"http\",\"url\":\"gopher://x\"}]}", "actions[0].url");

    accepted(UPDATE, "{\"enabled\":false}", &c);
    assert_int_equal(c.fields, CMD_F_ENABLED);
    assert_int_equal(c.enabled, 0);
    assert_null(c.secret);
    cmd_command_clear(&c);

    accepted(UPDATE, "{\"rotate_secret\":true}", &c);
    assert_int_equal(c.fields, CMD_F_SECRET);
    assert_int_equal(c.secret_generated, 1);
    assert_int_equal(strlen(c.secret), 64);
    cmd_command_clear(&c);

    accepted(UPDATE, "{\"secret\":\"new-secret\",\"name\":\"n2\"}", &c);
    assert_int_equal(c.fields, CMD_F_SECRET | CMD_F_NAME);
    assert_int_equal(c.secret_generated, 0);
    assert_string_equal(c.secret, "new-secret");
    assert_string_equal(c.name, "n2");
    cmd_command_clear(&c);

    accepted(UPDATE, "{\"actions\":[" MAIL_OK "]}", &c);
    assert_int_equal(c.fields, CMD_F_STEPS);
    assert_int_equal(ev_envelope_decode(c.steps_env, c.steps_env_len, &e, err, sizeof err), 0);
    assert_string_equal(e.aggregate_id.ptr, "wf-1");
    assert_int_equal(e.payload.workflow_updated.steps.count, 1);
    cmd_command_clear(&c);
}

/* ------------------------------------------------------------------ attempts */

#define ATT_OK "\"step\":0,\"attempt\":1,\"duration_ms\":12,\"delivery_id\":\"r.0\""

static void test_attempt(void **state)
{
    cmd_command c;
    char text[5000], errtext[4200];
    (void)state;

    accepted(ATTEMPT,
             "{" ATT_OK ",\"status_code\":503,\"next_delay_ms\":250,\"outcome\":\"retry\"}", &c);
    assert_int_equal(c.step, 0);
    assert_int_equal(c.attempt, 1);
    assert_int_equal(c.duration_ms, 12);
    assert_int_equal(c.has_status_code, 1);
    assert_int_equal(c.status_code, 503);
    assert_int_equal(c.has_next_delay_ms, 1);
    assert_int_equal(c.next_delay_ms, 250);
    assert_string_equal(c.delivery_id, "r.0");
    assert_int_equal(c.outcome, CMD_OUT_RETRY);
    assert_null(c.error);
    cmd_command_clear(&c);

    accepted(ATTEMPT,
             "{\"step\":3,\"attempt\":7,\"duration_ms\":0,\"delivery_id\":\"r.3\","
             "\"error\":\"connect: refused\",\"outcome\":\"failed\"}",
             &c);
    assert_int_equal(c.step, 3);
    assert_int_equal(c.has_status_code, 0);
    assert_int_equal(c.has_next_delay_ms, 0);
    assert_string_equal(c.error, "connect: refused");
    assert_int_equal(c.outcome, CMD_OUT_FAILED);
    cmd_command_clear(&c);

    accepted(ATTEMPT, "{" ATT_OK ",\"status_code\":200,\"outcome\":\"succeeded\"}", &c);
    assert_int_equal(c.outcome, CMD_OUT_SUCCEEDED);
    cmd_command_clear(&c);

    refused(ATTEMPT, "{" ATT_OK ",\"outcome\":\"retry\"}", "next_delay_ms");
    refused(ATTEMPT, "{" ATT_OK ",\"next_delay_ms\":5,\"outcome\":\"succeeded\"}", "next_delay_ms");
    refused(ATTEMPT, "{" ATT_OK ",\"next_delay_ms\":-1,\"outcome\":\"retry\"}", "next_delay_ms");
    refused(ATTEMPT, "{" ATT_OK ",\"outcome\":\"maybe\"}", "outcome");
    refused(ATTEMPT, "{" ATT_OK "}", "outcome");
    refused(ATTEMPT, "{" ATT_OK ",\"outcome\":\"failed\",\"extra\":1}", "extra");
    refused(ATTEMPT, "{" ATT_OK ",\"status_code\":99,\"outcome\":\"failed\"}", "status_code");
    refused(ATTEMPT, "{" ATT_OK ",\"status_code\":1000,\"outcome\":\"failed\"}", "status_code");
    refused(ATTEMPT, "{" ATT_OK ",\"status_code\":\"200\",\"outcome\":\"failed\"}", "status_code");
    refused(ATTEMPT,
            "{\"step\":-1,\"attempt\":1,\"duration_ms\":1,\"delivery_id\":\"d\","
            "\"outcome\":\"failed\"}",
            "step");
    refused(ATTEMPT,
            "{\"step\":100,\"attempt\":1,\"duration_ms\":1,\"delivery_id\":\"d\","
            "\"outcome\":\"failed\"}",
            "step");
    refused(ATTEMPT,
            "{\"step\":0,\"attempt\":0,\"duration_ms\":1,\"delivery_id\":\"d\","
            "\"outcome\":\"failed\"}",
            "attempt");
    refused(ATTEMPT, "{\"step\":0,\"attempt\":1,\"delivery_id\":\"d\",\"outcome\":\"failed\"}",
            "duration_ms");
    refused(ATTEMPT,
            "{\"step\":0,\"attempt\":1,\"duration_ms\":-5,\"delivery_id\":\"d\","
            "\"outcome\":\"failed\"}",
            "duration_ms");
    refused(ATTEMPT,
            "{\"step\":0,\"attempt\":1,\"duration_ms\":1,\"delivery_id\":\"\","
            "\"outcome\":\"failed\"}",
            "delivery_id");
    refused(ATTEMPT, "{\"step\":0,\"attempt\":1,\"duration_ms\":1,\"outcome\":\"failed\"}",
            "delivery_id");
    memset(errtext, 'e', 4097);
    errtext[4097] = '\0';
    snprintf(text, sizeof text, "{" ATT_OK ",\"error\":\"%s\",\"outcome\":\"failed\"}", errtext);
    refused(ATTEMPT, text, "error");
}

/* ------------------------------------------------------------------ payload */

static void test_payload(void **state)
{
    json_t *details = json_array();
    char *out = NULL, *big;
    size_t n = EV_PAYLOAD_JSON_MAX + 16;
    (void)state;

    assert_int_equal(cmd_run_payload("", 0, &out, details), 0);
    assert_string_equal(out, "{}");
    free(out);
    {
        const char *in = "{ \"a\" : [1, 2],\n \"b\": {\"c\": \"\\u00e9\"} }";
        assert_int_equal(cmd_run_payload(in, strlen(in), &out, details), 0);
    }
    assert_string_equal(out, "{\"a\":[1,2],\"b\":{\"c\":\"\xc3\xa9\"}}");
    free(out);
    assert_int_equal(json_array_size(details), 0);

    assert_int_equal(cmd_run_payload("[1]", 3, &out, details), KQ_EINVAL);
    assert_null(out);
    assert_true(has_field(details, "body"));
    json_array_clear(details);
    assert_int_equal(cmd_run_payload("nope", 4, &out, details), KQ_EINVAL);
    assert_true(has_field(details, "body"));
    json_array_clear(details);
    assert_int_equal(cmd_run_payload("{\"a\":1}x", 8, &out, details), KQ_EINVAL);
    assert_true(has_field(details, "body"));
    json_array_clear(details);

    big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'x', n);
    memcpy(big, "{\"a\":\"", 6);
    memcpy(big + n - 2, "\"}", 2);
    big[n] = '\0';
    assert_int_equal(cmd_run_payload(big, n, &out, details), KQ_EINVAL);
    assert_true(has_field(details, "body"));
    assert_null(out);
    free(big);
    json_decref(details);
}

/* ------------------------------------------------------------------ secrets */

/* Webhook secrets. (The template, URL and address rules the bodies apply are
 * events/ev_action.h's, tested in test_ev_action.c.) */
static void test_secrets(void **state)
{
    char a[65], b[65];
    (void)state;

    assert_true(cmd_workflow_secret_ok("!~", 2));
    assert_false(cmd_workflow_secret_ok("", 0));
    assert_false(cmd_workflow_secret_ok("a\x7f", 2));

    assert_int_equal(cmd_workflow_secret_generate(a), 0);
    assert_int_equal(cmd_workflow_secret_generate(b), 0);
    assert_int_equal(strlen(a), 64);
    assert_int_equal(strspn(a, "0123456789abcdef"), 64);
    assert_string_not_equal(a, b);
}

/* ------------------------------------------------------------------ mutations */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/*
 * Byte mutations of a valid workflow body: whatever parses as a JSON object
 * gives either KQ_EINVAL with well-formed details, or a command whose steps
 * envelope decodes and passes the codec's domain rules. Under the sanitizers
 * this also proves there is no out-of-bounds access or leak on any path.
 */
static void test_create_mutations(void **state)
{
    static const char base[] =
        "{\"id\":\"wf-1\",\"name\":\"n\",\"enabled\":true,\"secret\":\"s3\",\"actions\":["
        "{\"type\":\"http\",\"name\":\"h\",\"method\":\"PUT\",\"url\":\"https://x.y:8/"
        "p?{{payload.a}}\","
        "\"headers\":{\"X-A\":\"v\"},\"body_template\":\"{{payload}}\"},"
        "{\"type\":\"email\",\"to\":[\"a@b.c\"],\"subject\":\"s\",\"body_template\":\"b\"}]}";
    static const char alphabet[] = "{}[]\":,.@ \\/0123456789abcdefhpstuxyz-_\x01\x7f";
    size_t ok = 0, bad = 0;
    (void)state;

    for (int i = 0; i < 4000; i++) {
        char text[sizeof base + 8];
        json_error_t e;
        json_t *obj, *details;
        cmd_command c;
        int rc, nmut = 1 + (int)(next_rand() % 3);

        memcpy(text, base, sizeof base);
        for (int k = 0; k < nmut; k++)
            text[next_rand() % (sizeof base - 1)] = alphabet[next_rand() % (sizeof alphabet - 1)];
        obj = json_loads(text, JSON_REJECT_DUPLICATES, &e);
        if (!json_is_object(obj)) {
            json_decref(obj);
            continue;
        }
        details = json_array();
        rc = run_parse(CREATE, obj, &c, details);
        if (rc == 0) {
            ev_envelope env;
            char err[256];
            assert_int_equal(json_array_size(details), 0);
            assert_int_equal(
                ev_envelope_decode(c.steps_env, c.steps_env_len, &env, err, sizeof err), 0);
            if (ev_envelope_validate(&env, err, sizeof err) != 0)
                fail_msg("accepted %s but the codec refuses it: %s", text, err);
            assert_non_null(c.secret);
            assert_non_null(c.name);
            ok++;
        } else {
            size_t k;
            json_t *d;
            assert_int_equal(rc, KQ_EINVAL);
            assert_true(json_array_size(details) > 0);
            json_array_foreach(details, k, d)
            {
                assert_true(json_is_string(json_object_get(d, "field")));
                assert_true(json_is_string(json_object_get(d, "message")));
            }
            bad++;
        }
        cmd_command_clear(&c);
        json_decref(details);
        json_decref(obj);
    }
    assert_true(ok > 100);
    assert_true(bad > 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_ok),
        cmocka_unit_test(test_create_given_fields),
        cmocka_unit_test(test_create_top_level_errors),
        cmocka_unit_test(test_create_every_detail_at_once),
        cmocka_unit_test(test_action_errors),
        cmocka_unit_test(test_action_limits_accepted),
        cmocka_unit_test(test_update),
        cmocka_unit_test(test_attempt),
        cmocka_unit_test(test_payload),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_create_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
