/*
 * test_wk_attempt.c — building an attempt's action from a run's RunStarted
 * (wk_action_build: delivery id, method, URL, headers, body templates in
 * JSON and text mode, the payload as the default body, the signing secret,
 * email subject/body/recipients and the SMTP settings, the breaker key) and
 * the steps that cannot be built (each a failed attempt with its reason);
 * the record of an attempt (wk_attempt_conclude / wk_attempt_failed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ev_codec.h"
#include "kq_err.h"
#include "wk_attempt.h"

static ev_fb_builder fb;

/* Encode a RunStarted of run "run-7" with `steps` and `payload`; malloc'd copy. */
static uint8_t *run_started(const ev_step *steps, uint32_t n, const char *payload,
                            const char *secret, size_t *len)
{
    ev_envelope e;
    char err[256];
    const uint8_t *p;
    uint8_t *copy;

    ev_envelope_init(&e, EV_RUN_STARTED);
    e.aggregate_id = ev_str_c("run-7");
    e.version = 1;
    e.occurred_at_us = 1000000;
    e.actor = ev_str_c("test");
    memset(e.event_id.bytes, 1, sizeof e.event_id.bytes);
    e.payload.run_started.workflow_id = ev_str_c("wf1");
    e.payload.run_started.workflow_version = 1;
    e.payload.run_started.payload_json = payload ? ev_str_c(payload) : ev_str_c("");
    e.payload.run_started.step_count = n;
    e.payload.run_started.steps = ev_step_list_of(steps, n);
    if (secret)
        e.payload.run_started.signing_secret = ev_str_c(secret);
    if (ev_envelope_encode(&fb, &e, err, sizeof err) != 0)
        fail_msg("encode: %s", err);
    p = ev_fb_builder_data(&fb, len);
    copy = malloc(*len);
    assert_non_null(copy);
    memcpy(copy, p, *len);
    return copy;
}

static ev_step http_step(ev_http_method m, const char *url, const ev_http_header *h, uint32_t nh,
                         const char *tpl)
{
    ev_step s;

    memset(&s, 0, sizeof s);
    s.action_type = EV_ACTION_HTTP;
    s.action.http.method = m;
    s.action.http.url = ev_str_c(url);
    s.action.http.headers = ev_header_list_of(h, nh);
    if (tpl)
        s.action.http.body_template = ev_str_c(tpl);
    return s;
}

static void test_http(void **state)
{
    (void)state;
    ev_http_header h[2] = {{ev_str_c("Content-Type"), ev_str_c("application/json")},
                           {ev_str_c("X-Test"), ev_str_c("yes")}};
    ev_http_header th[1] = {{ev_str_c("content-type"), ev_str_c("text/plain")}};
    ev_step steps[4];
    wk_action a;
    char err[256];
    size_t len;
    uint8_t *rs;

    steps[0] = http_step(EV_HTTP_PUT, "https://Hooks.Example.com/a?x=1", h, 2,
                         "{\"name\": \"{{payload.name}}\", \"n\": {{payload.n}}}");
    steps[1] = http_step(EV_HTTP_POST, "http://127.0.0.1:9/b", NULL, 0, NULL);
    steps[2] = http_step(EV_HTTP_GET, "http://127.0.0.1:9/c", NULL, 0, NULL);
    steps[3] = http_step(EV_HTTP_POST, "http://127.0.0.1:9/d", th, 1, "name={{payload.name}}");
    rs = run_started(steps, 4, "{\"name\":\"a\\\"b\",\"n\":3}", "s3cret", &len);

    /* step 0: JSON template, headers, secret, breaker key */
    assert_int_equal(wk_action_build(&a, rs, len, "run-7", 0, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(a.kind, WK_ACTION_HTTP);
    assert_string_equal(a.delivery_id, "run-7.0");
    assert_string_equal(a.http.method, "PUT");
    assert_string_equal(a.http.url, "https://Hooks.Example.com/a?x=1");
    assert_int_equal(a.http.n_headers, 2);
    assert_string_equal(a.http.headers[1].name, "X-Test");
    assert_string_equal(a.http.headers[1].value, "yes");
    assert_string_equal(a.http.body, "{\"name\": \"a\\\"b\", \"n\": 3}");
    assert_int_equal(a.http.body_len, strlen(a.http.body));
    assert_string_equal(a.http.delivery_id, "run-7.0");
    assert_string_equal(a.http.secret, "s3cret");
    assert_int_equal(a.http.secret_len, 6);
    assert_int_equal(a.has_dest, 1);
    assert_string_equal(a.dest, "https://hooks.example.com:443");
    wk_action_free(&a);
    wk_action_free(&a); /* idempotent */

    /* step 1: no template, POST: the payload is the body */
    assert_int_equal(wk_action_build(&a, rs, len, "run-7", 1, NULL, NULL, err, sizeof err), 0);
    assert_string_equal(a.http.method, "POST");
    assert_string_equal(a.http.body, "{\"name\":\"a\\\"b\",\"n\":3}");
    assert_string_equal(a.delivery_id, "run-7.1");
    assert_string_equal(a.dest, "http://127.0.0.1:9");
    wk_action_free(&a);

    /* step 2: GET without a template: no body */
    assert_int_equal(wk_action_build(&a, rs, len, "run-7", 2, NULL, NULL, err, sizeof err), 0);
    assert_string_equal(a.http.method, "GET");
    assert_null(a.http.body);
    assert_int_equal(a.http.body_len, 0);
    wk_action_free(&a);

    /* step 3: a text Content-Type (any case) renders in text mode (no escaping) */
    assert_int_equal(wk_action_build(&a, rs, len, "run-7", 3, NULL, NULL, err, sizeof err), 0);
    assert_string_equal(a.http.body, "name=a\"b");
    wk_action_free(&a);

    /* no such step: a failed attempt with its reason */
    assert_int_equal(wk_action_build(&a, rs, len, "run-7", 4, NULL, NULL, err, sizeof err),
                     WK_ACTION_UNBUILDABLE);
    assert_string_equal(err, "RunStarted carries no definition of this step");
    free(rs);

    /* no payload, no secret: POST sends {}, nothing signs */
    rs = run_started(steps, 4, NULL, NULL, &len);
    assert_int_equal(wk_action_build(&a, rs, len, "run-7", 1, NULL, NULL, err, sizeof err), 0);
    assert_string_equal(a.http.body, "{}");
    assert_null(a.http.secret);
    assert_int_equal(a.http.secret_len, 0);
    wk_action_free(&a);
    /* ... and a template naming a field that is not there fails the attempt */
    assert_int_equal(wk_action_build(&a, rs, len, "run-7", 0, NULL, NULL, err, sizeof err),
                     WK_ACTION_UNBUILDABLE);
    assert_non_null(strstr(err, "payload.name"));
    free(rs);
}

static void test_unbuildable(void **state)
{
    (void)state;
    ev_step s = http_step(EV_HTTP_POST, "http://127.0.0.1:9/x", NULL, 0, "{{payload.a}}");
    wk_action a;
    char err[256];
    size_t len;
    uint8_t *rs;

    /* not an envelope */
    assert_int_equal(wk_action_build(&a, (const uint8_t *)"garbage!", 8, "run-7", 0, NULL, NULL,
                                     err, sizeof err),
                     WK_ACTION_UNBUILDABLE);
    assert_string_equal(err, "RunStarted does not decode");
    /* a payload that is not JSON */
    rs = run_started(&s, 1, "{nope", NULL, &len);
    assert_int_equal(wk_action_build(&a, rs, len, "run-7", 0, NULL, NULL, err, sizeof err),
                     WK_ACTION_UNBUILDABLE);
    assert_non_null(strstr(err, "payload is not JSON"));
    free(rs);
    /* a malformed placeholder */
    s.action.http.body_template = ev_str_c("{{ nope");
    rs = run_started(&s, 1, "{\"a\":1}", NULL, &len);
    assert_int_equal(wk_action_build(&a, rs, len, "run-7", 0, NULL, NULL, err, sizeof err),
                     WK_ACTION_UNBUILDABLE);
    free(rs);
    /* a run id that makes no valid delivery id */
    s.action.http.body_template = ev_str_c("x");
    rs = run_started(&s, 1, "{}", NULL, &len);
    assert_int_equal(wk_action_build(&a, rs, len, "bad id", 0, NULL, NULL, err, sizeof err),
                     WK_ACTION_UNBUILDABLE);
    free(rs);
    /* a URL the rule (ev_url_check) refuses: a failed attempt, nothing sent */
    s = http_step(EV_HTTP_POST, "http://[x", NULL, 0, NULL);
    rs = run_started(&s, 1, "{}", NULL, &len);
    assert_int_equal(wk_action_build(&a, rs, len, "run-7", 0, NULL, NULL, err, sizeof err),
                     WK_ACTION_UNBUILDABLE);
    assert_memory_equal(err, "url: ", 5);
    free(rs);
    s = http_step(EV_HTTP_POST, "http://u:p@example.com/x", NULL, 0, NULL);
    rs = run_started(&s, 1, "{}", NULL, &len);
    assert_int_equal(wk_action_build(&a, rs, len, "run-7", 0, NULL, NULL, err, sizeof err),
                     WK_ACTION_UNBUILDABLE);
    free(rs);
}

static void test_email(void **state)
{
    (void)state;
    ev_str to[2] = {ev_str_c("a@example.com"), ev_str_c("b@example.com")};
    ev_step s;
    wk_smtp_cfg smtp = {"smtp://Mail.Example.com:2525", "worker@example.com", "u", "p"};
    wk_smtp_cfg none = {NULL, "worker@example.com", NULL, NULL};
    wk_action a;
    char err[256];
    size_t len;
    uint8_t *rs;

    memset(&s, 0, sizeof s);
    s.action_type = EV_ACTION_EMAIL;
    s.action.email.to = ev_str_list_of(to, 2);
    s.action.email.subject = ev_str_c("Order {{payload.id}}");
    s.action.email.body_template = ev_str_c("Hello \"{{payload.name}}\"");
    rs = run_started(&s, 1, "{\"id\":42,\"name\":\"Ann\"}", NULL, &len);
    assert_int_equal(wk_action_build(&a, rs, len, "run-7", 0, &smtp, NULL, err, sizeof err), 0);
    assert_int_equal(a.kind, WK_ACTION_EMAIL);
    assert_string_equal(a.smtp.url, "smtp://Mail.Example.com:2525");
    assert_string_equal(a.smtp.from, "worker@example.com");
    assert_int_equal(a.smtp.n_to, 2);
    assert_string_equal(a.smtp.to[1], "b@example.com");
    assert_string_equal(a.smtp.subject, "Order 42");
    assert_string_equal(a.smtp.body, "Hello \"Ann\""); /* text mode */
    assert_string_equal(a.smtp.delivery_id, "run-7.0");
    assert_string_equal(a.smtp.username, "u");
    assert_string_equal(a.smtp.password, "p");
    assert_int_equal(a.has_dest, 1);
    assert_string_equal(a.dest, "smtp://mail.example.com:2525");
    wk_action_free(&a);
    /* no SMTP server configured */
    assert_int_equal(wk_action_build(&a, rs, len, "run-7", 0, &none, NULL, err, sizeof err),
                     WK_ACTION_UNBUILDABLE);
    assert_string_equal(err, "email actions need KCQRS_WORKER_SMTP_URL");
    free(rs);
    /* a subject whose value carries a line break (header mode) */
    rs = run_started(&s, 1, "{\"id\":\"4\\r\\nBcc: x@y\",\"name\":\"Ann\"}", NULL, &len);
    assert_int_equal(wk_action_build(&a, rs, len, "run-7", 0, &smtp, NULL, err, sizeof err),
                     WK_ACTION_UNBUILDABLE);
    free(rs);
}

static uint64_t rng_zero(void *arg)
{
    (void)arg;
    return 0;
}

static void test_conclude(void **state)
{
    (void)state;
    wk_policy p;
    wk_outcome o;
    wk_attempt_result r;

    wk_policy_defaults(&p);
    memset(&o, 0, sizeof o);
    o.retry_after_s = -1;
    o.result = WK_R_RESPONSE;
    o.status_code = 204;
    wk_attempt_conclude(&p, &o, 1, rng_zero, NULL, &r);
    assert_int_equal(r.outcome, WK_OUTCOME_SUCCEEDED);
    assert_int_equal(r.status_code, 204);
    assert_int_equal(r.next_delay_ms, -1);
    assert_int_equal(r.has_error, 0);

    o.status_code = 503;
    o.retry_after_s = 7;
    wk_attempt_conclude(&p, &o, 1, rng_zero, NULL, &r);
    assert_int_equal(r.outcome, WK_OUTCOME_RETRY);
    assert_int_equal(r.next_delay_ms, 7000);
    assert_int_equal(r.status_code, 503);
    assert_int_equal(r.has_error, 0);

    /* attempts exhausted: failed, the status in the error */
    o.retry_after_s = -1;
    wk_attempt_conclude(&p, &o, p.max_attempts, rng_zero, NULL, &r);
    assert_int_equal(r.outcome, WK_OUTCOME_FAILED);
    assert_int_equal(r.has_error, 1);
    assert_non_null(strstr(r.error, "status 503 ("));

    /* a transport error: no status, the error line (cleaned to ASCII) */
    o.result = WK_R_CONNECT;
    o.status_code = 0;
    snprintf(o.error, sizeof o.error, "connect \xc3\xa9\n refused");
    wk_attempt_conclude(&p, &o, 1, rng_zero, NULL, &r);
    assert_int_equal(r.outcome, WK_OUTCOME_RETRY);
    assert_int_equal(r.status_code, -1);
    assert_int_equal(r.next_delay_ms, 0);
    assert_int_equal(r.has_error, 1);
    assert_string_equal(r.error, "connect ??? refused");

    /* a response over the cap keeps its status */
    o.result = WK_R_TOO_LARGE;
    o.status_code = 200;
    o.error[0] = '\0';
    wk_attempt_conclude(&p, &o, 1, rng_zero, NULL, &r);
    assert_int_equal(r.outcome, WK_OUTCOME_FAILED);
    assert_int_equal(r.status_code, 200);

    wk_attempt_failed("bad\ttemplate", &r);
    assert_int_equal(r.outcome, WK_OUTCOME_FAILED);
    assert_int_equal(r.status_code, -1);
    assert_int_equal(r.next_delay_ms, -1);
    assert_string_equal(r.error, "bad?template");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http),
        cmocka_unit_test(test_unbuildable),
        cmocka_unit_test(test_email),
        cmocka_unit_test(test_conclude),
    };
    int rc;

    ev_fb_builder_init(&fb);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    ev_fb_builder_free(&fb);
    return rc;
}
