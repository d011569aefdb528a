/*
 * test_openapi.c — the embedded OpenAPI documents against the route tables the
 * services register: every route (with its method) is described and every
 * described operation is a route; public routes need no key in the document
 * and keyed ones declare the bearer scheme; every error answer is
 * application/problem+json with the Problem schema; the GET /openapi.json
 * route kq_openapi_route fills.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_api.h"
#include "kq_openapi.h"
#include "qry_api.h"
#include "qry_console.h"

/* The routes kq_http adds to every server. */
static const char *const builtin[][2] = {
    {"GET", "/health"}, {"GET", "/ready"}, {"GET", "/metrics"}};

static json_t *load(const kq_openapi_doc *d)
{
    json_error_t e;
    json_t *doc;

    assert_non_null(d->text);
    assert_int_equal(strlen(d->text), d->len);
    doc = json_loadb(d->text, d->len, JSON_REJECT_DUPLICATES, &e);
    if (doc == NULL)
        fail_msg("%s: line %d: %s", d->name, e.line, e.text);
    assert_string_equal(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    return doc;
}

static void lower(const char *in, char *out, size_t n)
{
    size_t i = 0;
    for (; in[i] && i + 1 < n; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[i] = '\0';
}

/* The operation object of method+path, or NULL. */
static json_t *operation(json_t *doc, const char *method, const char *path)
{
    char m[16];
    lower(method, m, sizeof m);
    return json_object_get(json_object_get(json_object_get(doc, "paths"), path), m);
}

/* An operation's effective security requirement list. */
static json_t *security_of(json_t *doc, json_t *op)
{
    json_t *s = json_object_get(op, "security");
    return s != NULL ? s : json_object_get(doc, "security");
}

static int requires_scheme(json_t *doc, json_t *op, const char *scheme)
{
    json_t *s = security_of(doc, op), *req;
    size_t i;
    json_array_foreach(s, i, req)
    {
        if (json_object_get(req, scheme) != NULL)
            return 1;
    }
    return 0;
}

/* Every 4xx/5xx answer: application/problem+json with the Problem schema. */
static void check_errors(json_t *doc, const char *what, json_t *op)
{
    json_t *responses = json_object_get(op, "responses"), *r, *comp;
    const char *code;

    assert_non_null(responses);
    comp = json_object_get(json_object_get(doc, "components"), "responses");
    json_object_foreach(responses, code, r)
    {
        json_t *ref = json_object_get(r, "$ref"), *schema;
        if (code[0] != '4' && code[0] != '5')
            continue;
        if (ref != NULL) {
            const char *name = strrchr(json_string_value(ref), '/');
            assert_non_null(name);
            r = json_object_get(comp, name + 1);
            if (r == NULL)
                fail_msg("%s %s: no component %s", what, code, name + 1);
        }
        schema = json_object_get(
            json_object_get(json_object_get(r, "content"), "application/problem+json"), "schema");
        if (schema == NULL)
            fail_msg("%s %s: not application/problem+json", what, code);
        assert_string_equal(json_string_value(json_object_get(schema, "$ref")),
                            "#/components/schemas/Problem");
    }
}

/*
 * The document of a service whose routes are `routes[0..n)` plus the built-in
 * ones and GET /openapi.json: the same set of (method, path), public routes
 * without a key, keyed routes with bearerAuth.
 */
static void check_doc(const kq_openapi_doc *d, const kq_http_route *routes, size_t n)
{
    json_t *doc = load(d), *paths = json_object_get(doc, "paths"), *item, *op;
    const char *path, *method;
    size_t ops = 0, want = n + 4;
    char what[256];

    assert_non_null(paths);
    for (size_t i = 0; i < n; i++) {
        snprintf(what, sizeof what, "%s %s %s", d->name, routes[i].method, routes[i].pattern);
        op = operation(doc, routes[i].method, routes[i].pattern);
        if (op == NULL)
            fail_msg("%s: not in the document", what);
        if (routes[i].role == KQ_HTTP_PUBLIC) {
            if (requires_scheme(doc, op, "bearerAuth"))
                fail_msg("%s: a public route documented with a key", what);
        } else if (!requires_scheme(doc, op, "bearerAuth")) {
            fail_msg("%s: a keyed route documented without bearerAuth", what);
        }
        check_errors(doc, what, op);
    }
    for (size_t i = 0; i < 3; i++) {
        op = operation(doc, builtin[i][0], builtin[i][1]);
        if (op == NULL)
            fail_msg("%s: %s not in the document", d->name, builtin[i][1]);
        assert_int_equal(json_array_size(security_of(doc, op)), 0);
    }
    op = operation(doc, "GET", "/openapi.json");
    assert_non_null(op);
    assert_int_equal(json_array_size(security_of(doc, op)), 0);
    /* nothing documented that the service does not route */
    json_object_foreach(paths, path, item)
    {
        json_object_foreach(item, method, op)
        {
            if (strcmp(method, "parameters") == 0)
                continue;
            ops++;
        }
    }
    assert_int_equal(ops, want);
    json_decref(doc);
}

static void test_commands_doc(void **state)
{
    kq_http_route r[CMD_API_NROUTES];
    cmd_api api;

    (void)state;
    memset(&api, 0, sizeof api);
    cmd_api_routes(&api, r);
    check_doc(&kq_openapi_commands, r, CMD_API_NROUTES);
}

static void test_query_doc(void **state)
{
    kq_http_route r[QRY_API_NROUTES + QRY_CONSOLE_NROUTES];
    qry_api api;
    qry_console console;

    (void)state;
    memset(&api, 0, sizeof api);
    memset(&console, 0, sizeof console);
    qry_api_routes(&api, r);
    qry_console_routes(&console, r + QRY_API_NROUTES);
    check_doc(&kq_openapi_query, r, QRY_API_NROUTES + QRY_CONSOLE_NROUTES);
}

static void test_admin_doc(void **state)
{
    (void)state;
    check_doc(&kq_openapi_admin, NULL, 0);
}

static void test_route(void **state)
{
    kq_http_route r;
    kq_http_param p[1];
    size_t np = 0;

    (void)state;
    memset(&r, 0, sizeof r);
    kq_openapi_route(&r, &kq_openapi_query);
    assert_string_equal(r.method, "GET");
    assert_string_equal(r.pattern, "/openapi.json");
    assert_int_equal(r.role, KQ_HTTP_PUBLIC);
    assert_int_equal(r.body, KQ_HTTP_BODY_NONE);
    assert_ptr_equal(r.arg, &kq_openapi_query);
    assert_non_null(r.handler);
    assert_int_equal(kq_http_route_match(r.pattern, "/openapi.json", p, 1, &np), 1);
    assert_int_equal(kq_http_route_match(r.pattern, "/openapi.yaml", p, 1, &np), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commands_doc),
        cmocka_unit_test(test_query_doc),
        cmocka_unit_test(test_admin_doc),
        cmocka_unit_test(test_route),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
