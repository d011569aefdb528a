/*
 * test_kq_json_in.c — lib/kq_json_in's control-character rule (issue #19
 * item 7): the predicate on every C0, DEL and C1 code point and on the
 * allowed ones, the detail it gives, and that every string field of a table
 * applies it (KQ_JIN_STRING none allowed, KQ_JIN_TEXT TAB/LF/CR allowed),
 * the resource bodies of kcqrs-commands included (names, descriptions).
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
#include "kq_err.h"
#include "kq_json_in.h"

/* Every code point U+0000..U+00A0 as UTF-8 inside "ab<cp>cd": found at byte 2
 * exactly when it is a control character not allowed. */
static void test_ctl_find_every_code_point(void **state)
{
    (void)state;
    for (unsigned cp = 0; cp <= 0xa0; cp++) {
        char s[8] = "ab";
        size_t n = 2;
        int ctl = cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
        if (cp < 0x80) {
            s[n++] = (char)cp;
        } else {
            s[n++] = (char)(0xc0 | (cp >> 6));
            s[n++] = (char)(0x80 | (cp & 0x3f));
        }
        s[n++] = 'c';
        s[n++] = 'd';
        for (unsigned allow = 0; allow <= KQ_JIN_ALLOW_LINES; allow++) {
            int allowed = (cp == '\t' && (allow & KQ_JIN_ALLOW_TAB)) ||
                          (cp == '\n' && (allow & KQ_JIN_ALLOW_LF)) ||
                          (cp == '\r' && (allow & KQ_JIN_ALLOW_CR));
            unsigned got = 0xffff;
            long at = kq_jin_ctl_find(s, n, allow, &got);
            if (ctl && !allowed) {
                assert_int_equal(at, 2);
                assert_int_equal(got, cp);
            } else {
                assert_int_equal(at, -1);
            }
        }
    }
}

static void test_ctl_find_edges(void **state)
{
    (void)state;
    /* U+00A0.. and other two-byte characters are text; C2 at the end is not C1 */
    assert_int_equal(kq_jin_ctl_find("\xc2\xa0\xc3\xa9\xe2\x80\xa8", 7, 0, NULL), -1);
    assert_int_equal(kq_jin_ctl_find("x\xc2", 2, 0, NULL), -1);
    assert_int_equal(kq_jin_ctl_find("", 0, 0, NULL), -1);
    /* the first one is reported; NUL inside the length counts */
    assert_int_equal(kq_jin_ctl_find("a\x1b\x01", 3, 0, NULL), 1);
    assert_int_equal(kq_jin_ctl_find("ab\0c", 4, 0, NULL), 2);
    assert_int_equal(kq_jin_ctl_find("a\tb\n\x7f", 5, KQ_JIN_ALLOW_LINES, NULL), 4);
    assert_int_equal(kq_jin_ctl_find("\xc2\x85", 2, KQ_JIN_ALLOW_LINES, NULL), 0); /* NEL */
}

static int has_detail(const json_t *details, const char *field, const char *part)
{
    size_t i;
    json_t *d;
    json_array_foreach(details, i, d)
    {
        const char *f = json_string_value(json_object_get(d, "field"));
        const char *m = json_string_value(json_object_get(d, "message"));
        if (f != NULL && strcmp(f, field) == 0 && m != NULL && strstr(m, part) != NULL)
            return 1;
    }
    return 0;
}

static void test_check_ctl_detail(void **state)
{
    json_t *details = json_array(), *v = json_string("ab\x1b[31m");
    (void)state;
    assert_int_equal(kq_jin_check_ctl(details, "name", v, 0), 1);
    assert_int_equal(json_array_size(details), 1);
    assert_true(has_detail(details, "name", "control characters (U+001B at byte 2)"));
    json_decref(v);
    v = json_string("a\tb");
    assert_int_equal(kq_jin_check_ctl(details, "h", v, KQ_JIN_ALLOW_TAB), 0);
    assert_int_equal(kq_jin_check_ctl(details, "h", v, 0), 1);
    assert_int_equal(json_array_size(details), 2);
    json_decref(v);
    json_decref(details);
}

/* A table: one detail per offending field, each naming the field; TEXT lets
 * line breaks and tabs through, STRING and ID do not. */
static void test_validate_applies_rule(void **state)
{
    static const kq_jin_field fields[] = {
        {"name", KQ_JIN_STRING, 0, 0, NULL, 0, 0},
        {"text", KQ_JIN_TEXT, 0, 0, NULL, 0, 0},
        {"id", KQ_JIN_ID, 0, 0, NULL, 0, 0},
    };
    json_t *details = json_array();
    json_t *obj =
        json_pack("{s:s, s:s, s:s}", "name", "a\x01", "text", "l1\r\nl2\tx\x07", "id", "a\x1b");
    (void)state;
    assert_int_equal(kq_jin_validate(obj, fields, 3, "p", details), 3);
    assert_int_equal(json_array_size(details), 3);
    assert_true(has_detail(details, "p.name", "U+0001 at byte 1"));
    assert_true(has_detail(details, "p.text", "U+0007 at byte 8"));
    assert_true(has_detail(details, "p.id", "[A-Za-z0-9._-]"));
    json_decref(obj);
    json_array_clear(details);
    obj = json_pack("{s:s, s:s}", "name", "caf\xc3\xa9 \xe2\x82\xac", "text", "l1\r\nl2\tx");
    assert_int_equal(kq_jin_validate(obj, fields, 3, NULL, details), 0);
    json_decref(obj);
    obj = json_pack("{s:s}", "name", "x\xc2\x9b"); /* CSI (C1) */
    assert_int_equal(kq_jin_validate(obj, fields, 3, NULL, details), 1);
    assert_true(has_detail(details, "name", "U+009B"));
    json_decref(obj);
    json_decref(details);
}

/* kcqrs-commands' resource bodies: name refuses every control character,
 * description allows TAB, LF and CR only. */
static int resource_parse(const char *text, json_t *details)
{
    json_error_t e;
    json_t *obj = json_loads(text, 0, &e);
    cmd_command c;
    int rc;

    assert_non_null(obj);
    memset(&c, 0, sizeof c);
    c.kind = CMD_CREATE;
    rc = cmd_aggregate_get(CMD_TOPIC_RESOURCE)->parse(obj, &c, details);
    cmd_command_clear(&c);
    json_decref(obj);
    return rc;
}

static void test_resource_bodies(void **state)
{
    static const char *const bad_names[] = {"\\u0001", "\\u001b[2J", "\\t",     "\\n",
                                            "\\u007f", "\\u0085",    "\\u009f", "\\u0000"};
    json_t *details = json_array();
    char text[256];
    (void)state;

    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        snprintf(text, sizeof text, "{\"name\":\"a%sb\"}", bad_names[i]);
        json_array_clear(details);
        if (strcmp(bad_names[i], "\\u0000") == 0) {
            /* jansson refuses \u0000 itself; the API answers 400 invalid_json */
            json_error_t e;
            assert_null(json_loads(text, 0, &e));
            continue;
        }
        assert_int_equal(resource_parse(text, details), KQ_EINVAL);
        assert_true(has_detail(details, "name", "control characters"));
        snprintf(text, sizeof text, "{\"name\":\"n\",\"description\":\"a%sb\"}", bad_names[i]);
        json_array_clear(details);
        if (strcmp(bad_names[i], "\\t") == 0 || strcmp(bad_names[i], "\\n") == 0) {
            assert_int_equal(resource_parse(text, details), 0);
            assert_int_equal(json_array_size(details), 0);
        } else {
            assert_int_equal(resource_parse(text, details), KQ_EINVAL);
            assert_true(has_detail(details, "description", "control characters"));
        }
    }
    json_array_clear(details);
    assert_int_equal(
        resource_parse("{\"name\":\"n\",\"description\":\"l1\\r\\nl2\\tend\"}", details), 0);
    json_decref(details);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ctl_find_every_code_point),
        cmocka_unit_test(test_ctl_find_edges),
        cmocka_unit_test(test_check_ctl_detail),
        cmocka_unit_test(test_validate_applies_rule),
        cmocka_unit_test(test_resource_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
