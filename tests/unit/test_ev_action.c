/*
 * test_ev_action.c — workflow actions (events/ev_action.h): the template
 * scanner (check) and renderer (paths, arrays, modes: text, JSON-escaped,
 * URL, header; missing fields, malformed placeholders, the size limit), the
 * two agreeing on random templates, the URL and address rules, the action
 * JSON parsed into steps with one detail per offending field, and random
 * valid action arrays surviving JSON -> steps envelope -> decode -> JSON
 * unchanged (the API and the read models agree by construction).
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

#include "ev_action.h"
#include "ev_codec.h"
#include "kq_err.h"

static json_t *payload;

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
    if (v == NULL)
        fail_msg("test JSON does not parse: %s: %s", e.text, text);
    return v;
}

static int setup(void **state)
{
    (void)state;
    payload = parse("{\"name\":\"Ann \\\"A\\\"\\n\\\\\", \"n\": 42, \"f\": 1.5, \"ok\": true,"
                    " \"nil\": null, \"a\": {\"b\": {\"c\": \"deep\"}},"
                    " \"items\": [{\"sku\": \"x1\"}, {\"sku\": \"x/2 &\"}],"
                    " \"obj\": {\"k\": [1,2]}, \"utf\": \"h\\u00e9\"}");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    json_decref(payload);
    return 0;
}

/* ------------------------------------------------------------------ rendering */

static char *render(const char *tpl, ev_tpl_mode mode, int expect_rc)
{
    char *out = NULL, err[256] = "";
    size_t len = 0;
    int rc = ev_template_render(tpl, strlen(tpl), payload, mode, &out, &len, err, sizeof err);

    assert_int_equal(rc, expect_rc);
    if (rc == 0) {
        assert_non_null(out);
        assert_int_equal(strlen(out), len);
    } else {
        assert_null(out);
        assert_true(err[0] != '\0');
    }
    return out;
}

static void expect(const char *tpl, ev_tpl_mode mode, const char *want)
{
    char *out = render(tpl, mode, 0);
    assert_string_equal(out, want);
    free(out);
}

static void test_text(void **state)
{
    (void)state;
    expect("", EV_TPL_TEXT, "");
    expect("no placeholders } { }", EV_TPL_TEXT, "no placeholders } { }");
    expect("n={{payload.n}} f={{ payload.f }} ok={{payload.ok}} nil=[{{payload.nil}}]", EV_TPL_TEXT,
           "n=42 f=1.5 ok=true nil=[]");
    expect("{{payload.a.b.c}}/{{payload.items.1.sku}}", EV_TPL_TEXT, "deep/x/2 &");
    expect("{{payload.obj}}", EV_TPL_TEXT, "{\"k\":[1,2]}");
    expect("{{payload.name}}", EV_TPL_TEXT, "Ann \"A\"\n\\");
    expect("{{payload.utf}}", EV_TPL_TEXT, "h\xc3\xa9");
}

static void test_json_mode(void **state)
{
    char *out = render("{\"name\": \"{{payload.name}}\", \"n\": {{payload.n}}, \"nil\": "
                       "{{payload.nil}}, \"obj\": \"{{payload.obj}}\", \"all\": \"{{payload}}\"}",
                       EV_TPL_JSON, 0);
    json_t *j = parse(out), *all, *p2;
    char *o2 = NULL, err[128];
    (void)state;

    assert_string_equal(json_string_value(json_object_get(j, "name")), "Ann \"A\"\n\\");
    assert_int_equal(json_integer_value(json_object_get(j, "n")), 42);
    assert_true(json_is_null(json_object_get(j, "nil")));
    assert_string_equal(json_string_value(json_object_get(j, "obj")), "{\"k\":[1,2]}");
    all = parse(json_string_value(json_object_get(j, "all")));
    assert_true(json_equal(all, payload));
    json_decref(all);
    json_decref(j);
    free(out);
    /* a control character is \u-escaped */
    p2 = json_pack("{s:s}", "c",
                   "a\x01"
                   "b");
    assert_int_equal(
        ev_template_render("{{payload.c}}", 13, p2, EV_TPL_JSON, &o2, NULL, err, sizeof err), 0);
    assert_string_equal(o2, "a\\u0001b");
    free(o2);
    json_decref(p2);
}

static void test_url_header_modes(void **state)
{
    (void)state;
    expect("https://x/{{payload.items.1.sku}}?q={{payload.utf}}", EV_TPL_URL,
           "https://x/x%2F2%20%26?q=h%C3%A9");
    expect("Order {{payload.a.b.c}} for {{payload.utf}}", EV_TPL_HEADER,
           "Order deep for h\xc3\xa9");
    free(render("Hi {{payload.name}}", EV_TPL_HEADER, KQ_EINVAL)); /* has a LF */
}

static void test_render_errors(void **state)
{
    char err[128], *out = (char *)1;
    (void)state;

    free(render("{{payload.missing}}", EV_TPL_TEXT, KQ_ENOTFOUND));
    free(render("{{payload.a.b.x}}", EV_TPL_TEXT, KQ_ENOTFOUND));
    free(render("{{payload.items.5.sku}}", EV_TPL_TEXT, KQ_ENOTFOUND));
    free(render("{{payload.items.x}}", EV_TPL_TEXT, KQ_ENOTFOUND));
    free(render("{{payload.n.x}}", EV_TPL_TEXT, KQ_ENOTFOUND));
    free(render("{{other.x}}", EV_TPL_TEXT, KQ_EINVAL));
    free(render("{{payloadx}}", EV_TPL_TEXT, KQ_EINVAL));
    free(render("{{payload.n", EV_TPL_TEXT, KQ_EINVAL));
    free(render("{{payload..n}}", EV_TPL_TEXT, KQ_EINVAL));
    free(render("{{payload.n}", EV_TPL_TEXT, KQ_EINVAL));
    free(render("x {{", EV_TPL_TEXT, KQ_EINVAL));
    /* a syntax error after a missing path is still a syntax error */
    free(render("{{payload.missing.x}", EV_TPL_TEXT, KQ_EINVAL));
    assert_int_equal(ev_template_render(NULL, 0, payload, EV_TPL_TEXT, &out, NULL, err, sizeof err),
                     KQ_EINVAL);
    assert_null(out);
    /* NULL payload behaves like {} */
    assert_int_equal(
        ev_template_render("a {{payload.x}}", 15, NULL, EV_TPL_TEXT, &out, NULL, err, sizeof err),
        KQ_ENOTFOUND);
    assert_int_equal(ev_template_render("plain", 5, NULL, EV_TPL_TEXT, &out, NULL, err, sizeof err),
                     0);
    assert_string_equal(out, "plain");
    free(out);
    /* the length is honoured: only the first 5 bytes are the template */
    assert_int_equal(
        ev_template_render("plain{{", 5, NULL, EV_TPL_TEXT, &out, NULL, err, sizeof err), 0);
    assert_string_equal(out, "plain");
    free(out);
}

static void test_size_limit(void **state)
{
    size_t n = 300 * 1024;
    char *big = malloc(n + 1), *out = NULL, err[128];
    const char *t3 = "{{payload.big}}{{payload.big}}{{payload.big}}";
    const char *t4 = "{{payload.big}}{{payload.big}}{{payload.big}}{{payload.big}}";
    json_t *p;
    (void)state;

    assert_non_null(big);
    memset(big, 'x', n);
    big[n] = '\0';
    p = json_pack("{s:s}", "big", big);
    assert_int_equal(
        ev_template_render(t3, strlen(t3), p, EV_TPL_TEXT, &out, NULL, err, sizeof err), 0);
    assert_int_equal(strlen(out), 3 * n);
    free(out);
    assert_int_equal(
        ev_template_render(t4, strlen(t4), p, EV_TPL_TEXT, &out, NULL, err, sizeof err), KQ_ERANGE);
    assert_null(out);
    json_decref(p);
    free(big);
}

static void test_json_type(void **state)
{
    (void)state;
    assert_true(ev_template_is_json_type("application/json"));
    assert_true(ev_template_is_json_type(" Application/JSON; charset=utf-8"));
    assert_true(ev_template_is_json_type("application/vnd.api+json"));
    assert_false(ev_template_is_json_type("text/plain"));
    assert_false(ev_template_is_json_type("application/jsonx"));
    assert_false(ev_template_is_json_type("+json"));
    assert_false(ev_template_is_json_type(NULL));
}

/* Random templates over an alphabet rich in braces and dots: only the
 * documented codes, no crash (the sanitizer build checks the memory side). */
static void test_render_random(void **state)
{
    static const char alpha[] = "{{}}..payload nameitems01a\\\"x";
    unsigned seed = 12345;
    char tpl[64], *out, err[256];
    (void)state;

    for (int i = 0; i < 20000; i++) {
        size_t n = (size_t)(rand_r(&seed) % 40);
        for (size_t k = 0; k < n; k++)
            tpl[k] = alpha[rand_r(&seed) % (sizeof alpha - 1)];
        tpl[n] = '\0';
        if (i % 3 == 0 && n > 12)
            memcpy(tpl, "{{payload.", 10);
        for (int mode = EV_TPL_TEXT; mode <= EV_TPL_HEADER; mode++) {
            int rc;
            out = NULL;
            rc =
                ev_template_render(tpl, n, payload, (ev_tpl_mode)mode, &out, NULL, err, sizeof err);
            assert_true(rc == 0 || rc == KQ_EINVAL || rc == KQ_ENOTFOUND);
            assert_true((rc == 0) == (out != NULL));
            if (rc == 0 && strstr(tpl, "{{") == NULL)
                assert_string_equal(out, tpl); /* no placeholder: copied as is */
            free(out);
        }
    }
}

/* ------------------------------------------------------------------ check, URL, addresses */

static void test_check_url_email(void **state)
{
    char why[160];
    (void)state;

    assert_int_equal(ev_template_check("", 0, why, sizeof why), 0);
    assert_int_equal(ev_template_check("{{payload}}", 11, why, sizeof why), 0);
    assert_int_equal(ev_template_check("x{{ payload.a.b-c_d.0 }}y", 25, why, sizeof why), 0);
    assert_int_equal(ev_template_check("{ {payload} }", 13, why, sizeof why), 0);
    assert_int_equal(ev_template_check("{{", 2, why, sizeof why), KQ_EINVAL);
    assert_int_equal(ev_template_check("{{payload", 9, why, sizeof why), KQ_EINVAL);
    assert_int_equal(ev_template_check("{{payload}", 10, why, sizeof why), KQ_EINVAL);
    assert_int_equal(ev_template_check("{{payload.a b}}", 15, why, sizeof why), KQ_EINVAL);
    assert_int_equal(ev_template_check("{{payload..a}}", 14, why, sizeof why), KQ_EINVAL);
    assert_int_equal(ev_template_check("{{ok}} {{payload}}", 18, why, sizeof why), KQ_EINVAL);
    assert_non_null(strstr(why, "offset 0"));
    assert_int_equal(ev_template_check("ab {{payload.}}", 15, why, sizeof why), KQ_EINVAL);
    assert_non_null(strstr(why, "offset 3"));
    /* the length is honoured: the placeholder's end is outside the first 10 bytes */
    assert_int_equal(ev_template_check("{{payload}}", 10, why, sizeof why), KQ_EINVAL);
    {
        char name[260] = "{{payload.";
        memset(name + 10, 'n', 200);
        memcpy(name + 210, "}}", 3);
        assert_int_equal(ev_template_check(name, 212, why, sizeof why), 0);
        memset(name + 10, 'n', 201);
        memcpy(name + 211, "}}", 3);
        assert_int_equal(ev_template_check(name, 213, why, sizeof why), KQ_EINVAL);
    }

    assert_int_equal(ev_url_check("http://a", 8, why, sizeof why), 0);
    assert_int_equal(ev_url_check("HTTP://[::1]:65535", 18, why, sizeof why), 0);
    assert_int_equal(ev_url_check("https://a.b:1/{{payload.x}}", 27, why, sizeof why), 0);
    assert_int_equal(ev_url_check("http://a%2e:80", 14, why, sizeof why), 0);
    assert_int_equal(ev_url_check("https://x?q=1#f", 15, why, sizeof why), 0);
    assert_int_equal(ev_url_check("http:/a", 7, why, sizeof why), KQ_EINVAL);
    assert_int_equal(ev_url_check("ftp://x/", 8, why, sizeof why), KQ_EINVAL);
    assert_int_equal(ev_url_check("http://", 7, why, sizeof why), KQ_EINVAL);
    assert_int_equal(ev_url_check("http:///p", 9, why, sizeof why), KQ_EINVAL);
    assert_int_equal(ev_url_check("http://[]/", 10, why, sizeof why), KQ_EINVAL);
    assert_int_equal(ev_url_check("http://[::1]x/", 14, why, sizeof why), KQ_EINVAL);
    assert_int_equal(ev_url_check("http://u:p@x/", 13, why, sizeof why), KQ_EINVAL);
    assert_int_equal(ev_url_check("http://x:0/", 11, why, sizeof why), KQ_EINVAL);
    assert_int_equal(ev_url_check("http://x:70000/", 15, why, sizeof why), KQ_EINVAL);
    assert_int_equal(ev_url_check("http://x:/", 10, why, sizeof why), KQ_EINVAL);
    assert_int_equal(ev_url_check("http://a b/", 11, why, sizeof why), KQ_EINVAL);
    assert_int_equal(ev_url_check("http://{{payload.h}}/", 21, why, sizeof why), KQ_EINVAL);
    assert_int_equal(ev_url_check("http://x/{{payload.a", 20, why, sizeof why), KQ_EINVAL);
    {
        char url[EV_URL_MAX + 2];
        memset(url, 'a', sizeof url);
        memcpy(url, "http://x/", 9);
        assert_int_equal(ev_url_check(url, EV_URL_MAX, why, sizeof why), 0);
        assert_int_equal(ev_url_check(url, EV_URL_MAX + 1, why, sizeof why), KQ_EINVAL);
    }

    assert_true(ev_email_ok("a@b", 3));
    assert_false(ev_email_ok("ab", 2));
    assert_false(ev_email_ok("@ab", 3));
    assert_false(ev_email_ok("ab@", 3));
    assert_false(ev_email_ok("a@b@c", 5));
    assert_false(ev_email_ok("a\"b@c", 5));
    assert_false(ev_email_ok("a@b\0c", 5));
}

static void test_names(void **state)
{
    ev_http_method m = EV_HTTP_GET;
    (void)state;

    assert_string_equal(ev_action_type_name(EV_ACTION_HTTP), "http");
    assert_string_equal(ev_action_type_name(EV_ACTION_EMAIL), "email");
    assert_null(ev_action_type_name(EV_ACTION_NONE));
    for (int i = EV_HTTP_GET; i <= EV_HTTP_DELETE; i++) {
        assert_int_equal(ev_http_method_parse(ev_http_method_name((ev_http_method)i), &m), 0);
        assert_int_equal(m, i);
    }
    assert_string_equal(ev_http_method_name(EV_HTTP_PATCH), "PATCH");
    assert_null(ev_http_method_name((ev_http_method)9));
    assert_int_equal(ev_http_method_parse("get", &m), KQ_EINVAL);
    assert_int_equal(ev_http_method_parse(NULL, &m), KQ_EINVAL);
}

/* ------------------------------------------------------------------ differential */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/*
 * The check agrees with the renderer: for random templates over an alphabet
 * rich in braces, dots and blanks, ev_template_render gives KQ_EINVAL
 * (malformed) exactly when ev_template_check refuses, in every mode but
 * header (which also refuses line breaks in values). A KQ_ENOTFOUND stops the
 * renderer before later placeholders, so those templates are skipped.
 */
static void test_check_matches_render(void **state)
{
    static const char *const pieces[] = {"{{", "}}", "{",       "}",         ".",
                                         " ",  "\t", "payload", "a",         "b",
                                         "x",  "0",  "-",       "payload.a", "payload.x"};
    json_t *p = parse("{\"a\":{\"b\":1,\"0\":2},\"x\":\"s\",\"-\":3}");
    size_t compared = 0, refused_n = 0;
    (void)state;

    for (int i = 0; i < 20000; i++) {
        char tpl[128] = "", why[160], *out = NULL, err[256];
        size_t len = 0;
        int n = 1 + (int)(next_rand() % 10), rc, mine;
        for (int k = 0; k < n; k++) {
            const char *s = pieces[next_rand() % (sizeof pieces / sizeof pieces[0])];
            size_t pl = strlen(s);
            if (len + pl >= sizeof tpl)
                break;
            memcpy(tpl + len, s, pl + 1);
            len += pl;
        }
        mine = ev_template_check(tpl, len, why, sizeof why);
        for (int mode = EV_TPL_TEXT; mode <= EV_TPL_URL; mode++) {
            rc = ev_template_render(tpl, len, p, (ev_tpl_mode)mode, &out, NULL, err, sizeof err);
            free(out);
            out = NULL;
            if (rc == KQ_ENOTFOUND)
                continue;
            compared++;
            if ((rc == KQ_EINVAL) != (mine == KQ_EINVAL))
                fail_msg("template '%s': renderer rc %d (%s), check rc %d (%s)", tpl, rc,
                         rc ? err : "ok", mine, mine ? why : "ok");
            refused_n += mine == KQ_EINVAL;
        }
    }
    assert_true(compared > 15000);
    assert_true(refused_n > 3000 && refused_n < compared - 3000);
    json_decref(p);
}

/* ------------------------------------------------------------------ action JSON */

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

/* The actions array `text` is refused with a detail on `field`. */
static void refused(const char *text, const char *field)
{
    json_t *a = parse(text), *details = json_array();
    ev_actions acts;
    uint8_t *env = (uint8_t *)1;
    size_t envlen = 7;
    int rc = ev_actions_parse(a, "actions", &acts, details);
    char *dump = json_dumps(details, JSON_COMPACT);

    if (rc != KQ_EINVAL || !has_field(details, field))
        fail_msg("expected a detail on '%s' for %s; rc %d, details %s", field, text, rc,
                 dump ? dump : "?");
    assert_null(acts.steps);
    assert_int_equal(acts.count, 0);
    free(dump);
    json_array_clear(details);
    assert_int_equal(ev_actions_env(a, "actions", "wf", &env, &envlen, details), KQ_EINVAL);
    assert_true(has_field(details, field));
    assert_null(env);
    assert_int_equal(envlen, 0);
    json_decref(details);
    json_decref(a);
}

static void test_actions_refused(void **state)
{
    (void)state;
    refused("{}", "actions");
    refused("[]", "actions");
    refused("[7]", "actions[0]");
    refused("[{\"type\":\"http\",\"url\":\"http://x/\"},{\"url\":\"http://x/\"}]",
            "actions[1].type");
    refused("[{\"type\":\"sms\"}]", "actions[0].type");
    refused("[{\"type\":\"http\"}]", "actions[0].url");
    refused("[{\"type\":\"http\",\"url\":\"ftp://x/\"}]", "actions[0].url");
    refused("[{\"type\":\"http\",\"url\":\"http://x/\",\"name\":\"\"}]", "actions[0].name");
    refused("[{\"type\":\"http\",\"url\":\"http://x/\",\"method\":\"get\"}]", "actions[0].method");
    refused("[{\"type\":\"http\",\"url\":\"http://x/\",\"to\":[\"a@b.c\"]}]", "actions[0].to");
    refused("[{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":{\"Host\":\"v\"}}]",
            "actions[0].headers.Host");
    refused("[{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":{\"X-A\":\"a\\nb\"}}]",
            "actions[0].headers.X-A");
    refused("[{\"type\":\"http\",\"url\":\"http://x/\",\"body_template\":\"{{nope}}\"}]",
            "actions[0].body_template");
    refused("[{\"type\":\"email\",\"to\":[],\"subject\":\"s\"}]", "actions[0].to");
    refused("[{\"type\":\"email\",\"to\":[\"a@b\",\"nope\"],\"subject\":\"s\"}]",
            "actions[0].to[1]");
    refused("[{\"type\":\"email\",\"to\":[\"a@b\"],\"subject\":\"a\\r\\nBcc: x\"}]",
            "actions[0].subject");
    refused("[{\"type\":\"email\",\"to\":[\"a@b\"]}]", "actions[0].subject");
    {
        /* 101 actions */
        char text[4096];
        size_t n = (size_t)snprintf(text, sizeof text, "[");
        for (int i = 0; i <= EV_MAX_STEPS; i++)
            n += (size_t)snprintf(text + n, sizeof text - n,
                                  "%s{\"type\":\"http\",\"url\":\"http://x\"}", i ? "," : "");
        snprintf(text + n, sizeof text - n, "]");
        refused(text, "actions");
    }
}

/* The one action `action` (JSON text) is refused with a detail on `field`. */
static void refused_action(const char *action, const char *field)
{
    char text[8192];

    snprintf(text, sizeof text, "[%s]", action);
    refused(text, field);
}

/* Every rule of an action, one offending field at a time (URL, headers,
 * templates, addresses, limits). */
static void test_action_rules(void **state)
{
    char url[2100], text[4096];
    (void)state;

    refused_action("{\"type\":\"http\",\"url\":7}", "actions[0].url");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\",\"method\":\"TRACE\"}",
                   "actions[0].method");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\",\"body_template\":7}",
                   "actions[0].body_template");

    /* URLs */
    refused_action("{\"type\":\"http\",\"url\":\"http://\"}", "actions[0].url");
    refused_action("{\"type\":\"http\",\"url\":\"http:///path\"}", "actions[0].url");
    refused_action("{\"type\":\"http\",\"url\":\"http://a b/\"}", "actions[0].url");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\\t\"}", "actions[0].url");
    refused_action("{\"type\":\"http\",\"url\":\"http://u:p@x/\"}", "actions[0].url");
    refused_action("{\"type\":\"http\",\"url\":\"http://x:0/\"}", "actions[0].url");
    refused_action("{\"type\":\"http\",\"url\":\"http://x:70000/\"}", "actions[0].url");
    refused_action("{\"type\":\"http\",\"url\":\"http://x:/\"}", "actions[0].url");
    refused_action("{\"type\":\"http\",\"url\":\"http://x:8a/\"}", "actions[0].url");
    refused_action("{\"type\":\"http\",\"url\":\"http://[::1/\"}", "actions[0].url");
    refused_action("{\"type\":\"http\",\"url\":\"http://{{payload.host}}/\"}", "actions[0].url");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/{{payload.a\"}", "actions[0].url");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/{{ payload.a }}\"}", "actions[0].url");
    memset(url, 'a', sizeof url);
    memcpy(url, "http://x/", 9);
    url[2049] = '\0';
    snprintf(text, sizeof text, "{\"type\":\"http\",\"url\":\"%s\"}", url);
    refused_action(text, "actions[0].url");

    /* headers */
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":[]}",
                   "actions[0].headers");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":{\"Bad Name\":\"v\"}}",
                   "actions[0].headers.Bad Name");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":{\"\":\"v\"}}",
                   "actions[0].headers.");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":{\"host\":\"v\"}}",
                   "actions[0].headers.host");
    refused_action(
        "{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":{\"Content-Length\":\"1\"}}",
        "actions[0].headers.Content-Length");
    refused_action(
        "{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":{\"transfer-encoding\":\"x\"}}",
        "actions[0].headers.transfer-encoding");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":{\"Connection\":\"x\"}}",
                   "actions[0].headers.Connection");
    refused_action(
        "{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":{\"x-kcqrs-delivery\":\"x\"}}",
        "actions[0].headers.x-kcqrs-delivery");
    refused_action(
        "{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":{\"X-A\":\"a\\r\\nB: c\"}}",
        "actions[0].headers.X-A");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":{\"X-A\":1}}",
                   "actions[0].headers.X-A");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":{\"X-A\":\"{{oops}}\"}}",
                   "actions[0].headers.X-A");
    {
        size_t n = (size_t)snprintf(text, sizeof text,
                                    "{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":{");
        for (int i = 0; i < 51; i++)
            n += (size_t)snprintf(text + n, sizeof text - n, "%s\"H%d\":\"v\"", i ? "," : "", i);
        snprintf(text + n, sizeof text - n, "}}");
        refused_action(text, "actions[0].headers");
    }

    /* templates */
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\",\"body_template\":\"{{nope}}\"}",
                   "actions[0].body_template");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\",\"body_template\":\"{{payload.}}\"}",
                   "actions[0].body_template");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\",\"body_template\":\"{{payload.a\"}",
                   "actions[0].body_template");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\",\"body_template\":\"{{payloadx}}\"}",
                   "actions[0].body_template");

    /* control characters (kq_json_in's one rule): C0, DEL and C1 everywhere
     * but TAB in header values and TAB/LF/CR in body templates */
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\",\"name\":\"a\\u0001\"}",
                   "actions[0].name");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\\u0085\"}", "actions[0].url");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\\u007f\"}", "actions[0].url");
    refused_action(
        "{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":{\"X-A\":\"\\u001b[31m\"}}",
        "actions[0].headers.X-A");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":{\"X-A\":\"a\\u009bb\"}}",
                   "actions[0].headers.X-A");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":{\"X\\u0001\":\"v\"}}",
                   "actions[0].headers.X\001");
    refused_action("{\"type\":\"http\",\"url\":\"http://x/\",\"body_template\":\"a\\u0007\"}",
                   "actions[0].body_template");
    refused_action("{\"type\":\"email\",\"to\":[\"a\\u0085@b.c\"],\"subject\":\"s\"}",
                   "actions[0].to[0]");
    refused_action("{\"type\":\"email\",\"to\":[\"a@b.c\"],\"subject\":\"a\\tb\"}",
                   "actions[0].subject");
    refused_action("{\"type\":\"email\",\"to\":[\"a@b.c\"],\"subject\":\"s\",\"body_template\":"
                   "\"\\u001b\"}",
                   "actions[0].body_template");

    /* e-mail */
    refused_action("{\"type\":\"email\",\"subject\":\"s\"}", "actions[0].to");
    refused_action("{\"type\":\"email\",\"to\":\"a@b.c\",\"subject\":\"s\"}", "actions[0].to");
    refused_action("{\"type\":\"email\",\"to\":[\"a@b.c\",7],\"subject\":\"s\"}",
                   "actions[0].to[1]");
    refused_action("{\"type\":\"email\",\"to\":[\"a@b@c\"],\"subject\":\"s\"}", "actions[0].to[0]");
    refused_action("{\"type\":\"email\",\"to\":[\"@b.c\"],\"subject\":\"s\"}", "actions[0].to[0]");
    refused_action("{\"type\":\"email\",\"to\":[\"a@\"],\"subject\":\"s\"}", "actions[0].to[0]");
    refused_action("{\"type\":\"email\",\"to\":[\"a b@c.d\"],\"subject\":\"s\"}",
                   "actions[0].to[0]");
    refused_action("{\"type\":\"email\",\"to\":[\"<a@c.d>\"],\"subject\":\"s\"}",
                   "actions[0].to[0]");
    refused_action("{\"type\":\"email\",\"to\":[\"a@c.d\\r\\nBcc: x@y.z\"],\"subject\":\"s\"}",
                   "actions[0].to[0]");
    refused_action("{\"type\":\"email\",\"to\":[\"a@b.c\"]}", "actions[0].subject");
    refused_action("{\"type\":\"email\",\"to\":[\"a@b.c\"],\"subject\":\"a\\nBcc: x\"}",
                   "actions[0].subject");
    refused_action("{\"type\":\"email\",\"to\":[\"a@b.c\"],\"subject\":\"{{x}}\"}",
                   "actions[0].subject");
    refused_action(
        "{\"type\":\"email\",\"to\":[\"a@b.c\"],\"subject\":\"s\",\"url\":\"http://x/\"}",
        "actions[0].url");
    {
        size_t n = (size_t)snprintf(text, sizeof text,
                                    "{\"type\":\"email\",\"subject\":\"s\","
                                    "\"to\":[");
        for (int i = 0; i < 51; i++)
            n += (size_t)snprintf(text + n, sizeof text - n, "%s\"u%d@x.y\"", i ? "," : "", i);
        snprintf(text + n, sizeof text - n, "]}");
        refused_action(text, "actions[0].to");
        char subj[1100];
        memset(subj, 's', 999);
        subj[999] = '\0';
        snprintf(text, sizeof text, "{\"type\":\"email\",\"to\":[\"a@b.c\"],\"subject\":\"%s\"}",
                 subj);
        refused_action(text, "actions[0].subject");
    }
}

/* Every offending field of every action gets its detail; valid ones none. */
static void test_actions_details(void **state)
{
    json_t *a = parse("[{\"type\":\"http\",\"url\":\"http://ok/\"},"
                      "{\"type\":\"http\",\"url\":\"http://u@x/\",\"bogus\":1},"
                      "{\"type\":\"email\",\"to\":[\"x\"],\"subject\":\"{{\"}]");
    json_t *details = json_array();
    ev_actions acts;
    (void)state;

    assert_int_equal(ev_actions_parse(a, "steps", &acts, details), KQ_EINVAL);
    assert_true(has_field(details, "steps[1].url"));
    assert_true(has_field(details, "steps[1].bogus"));
    assert_true(has_field(details, "steps[2].to[0]"));
    assert_true(has_field(details, "steps[2].subject"));
    assert_false(has_field(details, "steps[0].url"));
    assert_int_equal(json_array_size(details), 4);
    json_decref(details);
    json_decref(a);
}

/* The control characters the rule lets through: TAB in header values, TAB,
 * LF and CR in body templates (and a C1 control is refused in each, exactly
 * once: one detail per field). */
static void test_actions_ctl_allowed(void **state)
{
    json_t *a = parse("[{\"type\":\"http\",\"url\":\"http://x/\",\"headers\":{\"X-A\":\"a\\tb\"},"
                      "\"body_template\":\"{\\r\\n\\t\\\"a\\\": 1\\n}\"},"
                      "{\"type\":\"email\",\"to\":[\"a@b.c\"],\"subject\":\"s\","
                      "\"body_template\":\"Hello,\\r\\n\\tworld\"}]");
    json_t *details = json_array();
    ev_actions acts;
    (void)state;

    assert_int_equal(ev_actions_parse(a, "actions", &acts, details), 0);
    assert_int_equal(json_array_size(details), 0);
    ev_actions_free(&acts);
    json_decref(a);
    a = parse("[{\"type\":\"http\",\"url\":\"http://x/\\u0090\",\"headers\":{\"X-A\":\"\\u0090\"},"
              "\"body_template\":\"\\u0090\"},"
              "{\"type\":\"email\",\"to\":[\"a@b.c\"],\"subject\":\"\\u0090\"}]");
    assert_int_equal(ev_actions_parse(a, "actions", &acts, details), KQ_EINVAL);
    assert_int_equal(json_array_size(details), 4);
    assert_true(has_field(details, "actions[0].url"));
    assert_true(has_field(details, "actions[0].headers.X-A"));
    assert_true(has_field(details, "actions[0].body_template"));
    assert_true(has_field(details, "actions[1].subject"));
    json_decref(details);
    json_decref(a);
}

/* JSON -> steps envelope -> decode -> JSON; the result must equal `want`. */
static void round_trip(const json_t *actions, const json_t *want)
{
    json_t *details = json_array(), *back;
    uint8_t *env = NULL;
    size_t envlen = 0;
    ev_envelope e;
    char err[256];
    int rc = ev_actions_env(actions, "actions", "wf-1", &env, &envlen, details);

    if (rc != 0) {
        char *a = json_dumps(actions, JSON_COMPACT), *d = json_dumps(details, JSON_COMPACT);
        fail_msg("refused %s: %s", a, d);
    }
    assert_int_equal(json_array_size(details), 0);
    assert_int_equal(ev_envelope_decode(env, envlen, &e, err, sizeof err), 0);
    assert_int_equal(e.payload_type, EV_WORKFLOW_UPDATED);
    assert_true(e.payload.workflow_updated.steps.present);
    back = ev_actions_json(&e.payload.workflow_updated.steps);
    assert_non_null(back);
    if (!json_equal(back, want)) {
        char *b = json_dumps(back, JSON_COMPACT), *w = json_dumps(want, JSON_COMPACT);
        fail_msg("round trip: got %s, want %s", b, w);
    }
    json_decref(back);
    free(env);
    json_decref(details);
}

static void test_actions_round_trip(void **state)
{
    json_t *in = parse(
        "[{\"type\":\"http\",\"name\":\"hook\",\"method\":\"PUT\",\"url\":\"https://h.example:8443/"
        "o/{{payload.id}}?x=1\",\"headers\":{\"X-Team\":\"ops\",\"Content-Type\":\"text/plain\"},"
        "\"body_template\":\"{{payload.service}}\"},"
        "{\"type\":\"http\",\"url\":\"http://x\"},"
        "{\"type\":\"email\",\"to\":[\"a@b.c\",\"d@e.f\"],\"subject\":\"Deployed "
        "{{payload.s}}\",\"body_template\":\"\"}]");
    json_t *want = json_deep_copy(in);
    (void)state;

    /* the default method is written out */
    json_object_set_new(json_array_get(want, 1), "method", json_string("POST"));
    round_trip(in, want);
    json_decref(want);
    json_decref(in);
    /* an absent list prints as [] */
    {
        ev_step_list none = {NULL, NULL, 0, 0, false};
        json_t *arr = ev_actions_json(&none);
        assert_true(json_is_array(arr) && json_array_size(arr) == 0);
        json_decref(arr);
    }
    /* a malformed step prints as NULL */
    {
        ev_step st;
        memset(&st, 0, sizeof st);
        assert_null(ev_action_json(&st));
    }
}

/* Random valid action arrays: JSON -> envelope -> JSON is the identity (once
 * the default method is written out). */
static void test_actions_random(void **state)
{
    static const char *const words[] = {"a", "ops", "{{payload.x}}", "h\xc3\xa9",
                                        "",  "x y", "{{ payload }}", "q=1&r=2"};
    static const char *const hosts[] = {"http://x", "https://h.example:8443", "HTTP://[::1]:80",
                                        "http://a-b.c_d~e%2e"};
    (void)state;

    for (int i = 0; i < 500; i++) {
        json_t *in = json_array(), *want = json_array();
        uint32_t n = 1 + next_rand() % 5;
        for (uint32_t k = 0; k < n; k++) {
            json_t *a = json_object();
            if (next_rand() % 3 == 0) {
                json_t *to = json_array();
                uint32_t nt = 1 + next_rand() % 3;
                json_object_set_new(a, "type", json_string("email"));
                for (uint32_t t = 0; t < nt; t++) {
                    char addr[32];
                    snprintf(addr, sizeof addr, "u%u@d%u.example", next_rand() % 100, t);
                    json_array_append_new(to, json_string(addr));
                }
                json_object_set_new(a, "to", to);
                json_object_set_new(a, "subject", json_string(words[next_rand() % 8]));
            } else {
                char url[128];
                json_object_set_new(a, "type", json_string("http"));
                json_object_set_new(
                    a, "method",
                    json_string(ev_http_method_name((ev_http_method)(next_rand() % 5))));
                snprintf(url, sizeof url, "%s/%s", hosts[next_rand() % 4],
                         next_rand() % 2 ? "p/{{payload.id}}" : "");
                json_object_set_new(a, "url", json_string(url));
                if (next_rand() % 2) {
                    json_t *h = json_object();
                    uint32_t nh = 1 + next_rand() % 4;
                    for (uint32_t t = 0; t < nh; t++) {
                        char name[16];
                        snprintf(name, sizeof name, "X-H%u", t);
                        json_object_set_new(h, name, json_string(words[next_rand() % 8]));
                    }
                    json_object_set_new(a, "headers", h);
                }
            }
            if (next_rand() % 2)
                json_object_set_new(a, "name", json_string(next_rand() % 2 ? "step" : "h\xc3\xa9"));
            if (next_rand() % 2)
                json_object_set_new(a, "body_template", json_string(words[next_rand() % 8]));
            json_array_append_new(in, a);
            json_array_append_new(want, json_deep_copy(a));
        }
        round_trip(in, want);
        json_decref(in);
        json_decref(want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_json_mode),
        cmocka_unit_test(test_url_header_modes),
        cmocka_unit_test(test_render_errors),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_json_type),
        cmocka_unit_test(test_render_random),
        cmocka_unit_test(test_check_url_email),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_check_matches_render),
        cmocka_unit_test(test_actions_refused),
        cmocka_unit_test(test_action_rules),
        cmocka_unit_test(test_actions_details),
        cmocka_unit_test(test_actions_ctl_allowed),
        cmocka_unit_test(test_actions_round_trip),
        cmocka_unit_test(test_actions_random),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
