/* test_problem.c — kq_problem: the problem+json error body (RFC 9457). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "kq_problem.h"

static const char *str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void test_shape(void **state)
{
    json_t *d =
        json_pack("[{s:s, s:s, s:i}]", "field", "version", "message", "m", "current_version", 3);
    json_t *p = kq_problem_new(412, "precondition_failed", "version mismatch", d, "/api/v1/x");
    const char *keys[] = {"type", "title", "status", "detail", "instance", "code", "errors"};
    const char *k;
    json_t *v;
    size_t i = 0;

    (void)state;
    assert_non_null(p);
    json_object_foreach(p, k, v)
    {
        assert_true(i < 7);
        assert_string_equal(k, keys[i++]); /* members in this order */
    }
    assert_int_equal(i, 7);
    assert_string_equal(str(p, "type"), "urn:kcqrs:problem:precondition_failed");
    assert_string_equal(str(p, "title"), "Version mismatch");
    assert_int_equal(json_integer_value(json_object_get(p, "status")), 412);
    assert_string_equal(str(p, "detail"), "version mismatch");
    assert_string_equal(str(p, "instance"), "/api/v1/x");
    assert_string_equal(str(p, "code"), "precondition_failed");
    v = json_array_get(json_object_get(p, "errors"), 0);
    assert_string_equal(str(v, "field"), "version"); /* the items unchanged */
    assert_int_equal(json_integer_value(json_object_get(v, "current_version")), 3);
    json_decref(p);
}

static void test_defaults(void **state)
{
    json_t *p;

    (void)state;
    /* no details: []; no instance: left out; unknown code: the reason phrase */
    p = kq_problem_new(418, "teapot", "short and stout", NULL, NULL);
    assert_non_null(p);
    assert_int_equal(json_array_size(json_object_get(p, "errors")), 0);
    assert_true(json_is_array(json_object_get(p, "errors")));
    assert_null(json_object_get(p, "instance"));
    assert_string_equal(str(p, "title"), kq_problem_reason(418));
    json_decref(p);
    /* no code: one by class; a message that is not UTF-8: the title */
    p = kq_problem_new(503, NULL, "bad \xc3\x28 text", NULL, "/");
    assert_non_null(p);
    assert_string_equal(str(p, "code"), "internal");
    assert_string_equal(str(p, "detail"), "Internal error");
    json_decref(p);
    assert_string_equal(kq_problem_title("not_found", 404), "Not found");
    assert_string_equal(kq_problem_reason(404), "Not Found");
    assert_string_equal(kq_problem_reason(503), "Service Unavailable");
}

static void test_instance_is_a_uri_reference(void **state)
{
    json_t *p;
    char *text;

    (void)state;
    /* a decoded path with a space, a quote and a byte that is not UTF-8 */
    p = kq_problem_new(404, "not_found", "no", NULL, "/hooks/a b\"\xff:@!~");
    assert_non_null(p);
    assert_string_equal(str(p, "instance"), "/hooks/a%20b%22%FF:@!~");
    text = json_dumps(p, JSON_COMPACT);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"instance\":\"/hooks/a%20b%22%FF:@!~\""));
    free(text);
    json_decref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_instance_is_a_uri_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
