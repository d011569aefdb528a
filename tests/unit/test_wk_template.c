/*
 * test_wk_template.c — {{payload...}} substitution: paths, arrays, modes
 * (text, JSON-escaped, URL, header), missing fields, malformed placeholders.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "kq_err.h"
#include "wk_template.h"

static json_t *payload;

static int setup(void **state)
{
    (void)state;
    json_error_t je;
    payload = json_loads("{\"name\":\"Ann \\\"A\\\"\\n\\\\\", \"n\": 42, \"f\": 1.5, \"ok\": true,"
                         " \"nil\": null, \"a\": {\"b\": {\"c\": \"deep\"}},"
                         " \"items\": [{\"sku\": \"x1\"}, {\"sku\": \"x/2 &\"}],"
                         " \"obj\": {\"k\": [1,2]}, \"utf\": \"h\\u00e9\"}",
                         0, &je);
    assert_non_null(payload);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    json_decref(payload);
    return 0;
}

static char *render(const char *tpl, wk_tpl_mode mode, int expect_rc)
{
    char *out = NULL, err[256] = "";
    size_t len = 0;
    int rc = wk_template_render(tpl, payload, mode, &out, &len, err, sizeof err);
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

static void expect(const char *tpl, wk_tpl_mode mode, const char *want)
{
    char *out = render(tpl, mode, 0);
    assert_string_equal(out, want);
    free(out);
}

static void test_text(void **state)
{
    (void)state;
    expect("", WK_TPL_TEXT, "");
    expect("no placeholders } { }", WK_TPL_TEXT, "no placeholders } { }");
    expect("n={{payload.n}} f={{ payload.f }} ok={{payload.ok}} nil=[{{payload.nil}}]", WK_TPL_TEXT,
           "n=42 f=1.5 ok=true nil=[]");
    expect("{{payload.a.b.c}}/{{payload.items.1.sku}}", WK_TPL_TEXT, "deep/x/2 &");
    expect("{{payload.obj}}", WK_TPL_TEXT, "{\"k\":[1,2]}");
    expect("{{payload.name}}", WK_TPL_TEXT, "Ann \"A\"\n\\");
    expect("{{payload.utf}}", WK_TPL_TEXT, "h\xc3\xa9");
}

static void test_json(void **state)
{
    (void)state;
    char *out =
        render("{\"name\": \"{{payload.name}}\", \"n\": {{payload.n}}, \"nil\": {{payload.nil}},"
               " \"obj\": \"{{payload.obj}}\", \"all\": \"{{payload}}\"}",
               WK_TPL_JSON, 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    assert_non_null(j); /* the result is valid JSON */
    assert_string_equal(json_string_value(json_object_get(j, "name")), "Ann \"A\"\n\\");
    assert_int_equal(json_integer_value(json_object_get(j, "n")), 42);
    assert_true(json_is_null(json_object_get(j, "nil")));
    assert_string_equal(json_string_value(json_object_get(j, "obj")), "{\"k\":[1,2]}");
    json_t *all = json_loads(json_string_value(json_object_get(j, "all")), 0, &je);
    assert_non_null(all);
    assert_true(json_equal(all, payload));
    json_decref(all);
    json_decref(j);
    free(out);
    /* a control character is \u-escaped */
    json_t *p2 = json_pack("{s:s}", "c",
                           "a\x01"
                           "b");
    char *o2 = NULL, err[128];
    assert_int_equal(
        wk_template_render("{{payload.c}}", p2, WK_TPL_JSON, &o2, NULL, err, sizeof err), 0);
    assert_string_equal(o2, "a\\u0001b");
    free(o2);
    json_decref(p2);
}

static void test_url_header(void **state)
{
    (void)state;
    expect("https://x/{{payload.items.1.sku}}?q={{payload.utf}}", WK_TPL_URL,
           "https://x/x%2F2%20%26?q=h%C3%A9");
    expect("Order {{payload.a.b.c}} for {{payload.utf}}", WK_TPL_HEADER,
           "Order deep for h\xc3\xa9");
    free(render("Hi {{payload.name}}", WK_TPL_HEADER, KQ_EINVAL)); /* has a LF */
}

static void test_errors(void **state)
{
    (void)state;
    free(render("{{payload.missing}}", WK_TPL_TEXT, KQ_ENOTFOUND));
    free(render("{{payload.a.b.x}}", WK_TPL_TEXT, KQ_ENOTFOUND));
    free(render("{{payload.items.5.sku}}", WK_TPL_TEXT, KQ_ENOTFOUND));
    free(render("{{payload.items.x}}", WK_TPL_TEXT, KQ_ENOTFOUND));
    free(render("{{payload.n.x}}", WK_TPL_TEXT, KQ_ENOTFOUND));
    free(render("{{other.x}}", WK_TPL_TEXT, KQ_EINVAL));
    free(render("{{payloadx}}", WK_TPL_TEXT, KQ_EINVAL));
    free(render("{{payload.n", WK_TPL_TEXT, KQ_EINVAL));
    free(render("{{payload..n}}", WK_TPL_TEXT, KQ_EINVAL));
    free(render("{{payload.n}", WK_TPL_TEXT, KQ_EINVAL));
    free(render("x {{", WK_TPL_TEXT, KQ_EINVAL));
    char err[128];
    char *out = (char *)1;
    assert_int_equal(wk_template_render(NULL, payload, WK_TPL_TEXT, &out, NULL, err, sizeof err),
                     KQ_EINVAL);
    assert_null(out);
    /* NULL payload behaves like {} */
    assert_int_equal(
        wk_template_render("a {{payload.x}}", NULL, WK_TPL_TEXT, &out, NULL, err, sizeof err),
        KQ_ENOTFOUND);
    assert_int_equal(wk_template_render("plain", NULL, WK_TPL_TEXT, &out, NULL, err, sizeof err),
                     0);
    assert_string_equal(out, "plain");
    free(out);
}

static void test_size_limit(void **state)
{
    (void)state;
    size_t n = 300 * 1024;
    char *big = malloc(n + 1), *out = NULL, err[128];
    memset(big, 'x', n);
    big[n] = '\0';
    json_t *p = json_pack("{s:s}", "big", big);
    assert_int_equal(wk_template_render("{{payload.big}}{{payload.big}}{{payload.big}}", p,
                                        WK_TPL_TEXT, &out, NULL, err, sizeof err),
                     0);
    assert_int_equal(strlen(out), 3 * n);
    free(out);
    assert_int_equal(
        wk_template_render("{{payload.big}}{{payload.big}}{{payload.big}}{{payload.big}}", p,
                           WK_TPL_TEXT, &out, NULL, err, sizeof err),
        KQ_ERANGE);
    assert_null(out);
    json_decref(p);
    free(big);
}

static void test_json_type(void **state)
{
    (void)state;
    assert_true(wk_template_is_json_type("application/json"));
    assert_true(wk_template_is_json_type(" Application/JSON; charset=utf-8"));
    assert_true(wk_template_is_json_type("application/vnd.api+json"));
    assert_false(wk_template_is_json_type("text/plain"));
    assert_false(wk_template_is_json_type("application/jsonx"));
    assert_false(wk_template_is_json_type("+json"));
    assert_false(wk_template_is_json_type(NULL));
}

/* Random templates over an alphabet rich in braces and dots: only the documented codes, no crash
 * (a small fuzz run; the sanitizer build checks the memory side). */
static void test_random(void **state)
{
    (void)state;
    static const char alpha[] = "{{}}..payload nameitems01a\\\"x";
    unsigned seed = 12345;
    char tpl[64], *out, err[256];
    for (int i = 0; i < 20000; i++) {
        size_t n = (size_t)(rand_r(&seed) % 40);
        for (size_t k = 0; k < n; k++)
            tpl[k] = alpha[rand_r(&seed) % (sizeof alpha - 1)];
        tpl[n] = '\0';
        if (i % 3 == 0 && n > 12)
            memcpy(tpl, "{{payload.", 10);
        for (int mode = WK_TPL_TEXT; mode <= WK_TPL_HEADER; mode++) {
            out = NULL;
            int rc =
                wk_template_render(tpl, payload, (wk_tpl_mode)mode, &out, NULL, err, sizeof err);
            assert_true(rc == 0 || rc == KQ_EINVAL || rc == KQ_ENOTFOUND);
            assert_true((rc == 0) == (out != NULL));
            if (rc == 0 && strstr(tpl, "{{") == NULL)
                assert_string_equal(out, tpl); /* no placeholder: copied as is */
            free(out);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text),       cmocka_unit_test(test_json),
        cmocka_unit_test(test_url_header), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_size_limit), cmocka_unit_test(test_json_type),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
