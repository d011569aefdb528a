/*
 * fuzz_json_in.c — libFuzzer entry point for untrusted JSON request bodies
 * (lib/kq_json_in.h: what every command handler runs on a request body).
 *
 * The input is a request body. kq_jin_parse must accept it as one object with
 * no detail, or refuse it with KQ_EINVAL and exactly one detail on "body".
 * An accepted object is validated against two field tables: the resource
 * create command (name 1..255 characters required, description 0..4096,
 * status enum, id syntax) and a workflow-like table whose "steps" elements are
 * validated one by one with the prefix "steps[i]" (integers with bounds,
 * booleans, arrays, objects). For every validation an independent re-reading
 * of the field table predicts which fields are at fault; the details appended
 * must be exactly those, each a {"field": string, "message": non-empty
 * string} object, and the count returned must equal the details appended.
 * So "valid" means every required field is present with the right type, and
 * a failure always has at least one detail. The first line of the input is
 * also tried as a Content-Type. Any disagreement abort()s.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kq_err.h"
#include "kq_json_in.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const resource_status[] = {"active", "inactive", "archived", NULL};
static const kq_jin_field resource_create[] = {
    {"id", KQ_JIN_ID, 0, 0, NULL, 0, 0},
    {"name", KQ_JIN_STRING, 1, 255, NULL, 0, 0},
    {"description", KQ_JIN_TEXT, 0, 4096, NULL, 0, 0},
    {"status", KQ_JIN_STRING, 0, 0, resource_status, 0, 0},
};

static const kq_jin_field workflow_create[] = {
    {"name", KQ_JIN_STRING, 1, 255, NULL, 0, 0},
    {"enabled", KQ_JIN_BOOL, 0, 0, NULL, 0, 0},
    {"steps", KQ_JIN_ARRAY, 1, 0, NULL, 0, 0},
    {"meta", KQ_JIN_OBJECT, 0, 0, NULL, 0, 0},
};

static const char *const http_methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};
static const kq_jin_field step_fields[] = {
    {"url", KQ_JIN_STRING, 1, 2048, NULL, 0, 0},
    {"method", KQ_JIN_STRING, 0, 0, http_methods, 0, 0},
    {"timeout_ms", KQ_JIN_INT, 0, 0, NULL, 1, 60000},
    {"retries", KQ_JIN_INT, 0, 0, NULL, 0, 0}, /* min == max: no bounds */
    {"workflow_id", KQ_JIN_ID, 0, 0, NULL, 0, 0},
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_json_in: %s: %s\n", what, detail ? detail : "");
    abort();
}

/* Code points of valid UTF-8 (jansson only yields valid UTF-8), decoded fully. */
static size_t count_chars(const char *s, size_t len)
{
    size_t n = 0, i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t w = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        if (c >= 0x80 && c < 0xc0)
            die("jansson string", "not valid UTF-8");
        i += w;
        n++;
    }
    if (i != len)
        die("jansson string", "truncated UTF-8 sequence");
    return n;
}

static int id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > KQ_JIN_ID_MAX)
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* A control character (U+0000..U+001F, U+007F, U+0080..U+009F) in valid
 * UTF-8 s[0..len), other than TAB/LF/CR when `lines`: decoded code point by
 * code point, independent of kq_jin_ctl_find. */
static int has_ctl(const char *s, size_t len, int lines)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned cp = p[i];
        size_t n = cp < 0x80 ? 1 : cp < 0xe0 ? 2 : cp < 0xf0 ? 3 : 4;
        if (n == 2 && i + 1 < len)
            cp = ((cp & 0x1fu) << 6) | (p[i + 1] & 0x3fu);
        if ((cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) &&
            !(lines && (cp == '\t' || cp == '\n' || cp == '\r')))
            return 1;
        i += n;
    }
    return 0;
}

/* Is field `f` with value `v` (may be NULL) at fault? Independent of kq_jin_validate. */
static int field_bad(const kq_jin_field *f, const json_t *v)
{
    if (v == NULL)
        return f->required;
    switch (f->type) {
    case KQ_JIN_STRING:
    case KQ_JIN_TEXT:
    case KQ_JIN_ID: {
        const char *s;
        size_t len;
        if (!json_is_string(v))
            return 1;
        s = json_string_value(v);
        len = json_string_length(v);
        if (strlen(s) != len)
            die("jansson string", "embedded NUL accepted");
        if (f->type == KQ_JIN_ID && !id_ok(s))
            return 1;
        if (has_ctl(s, len, f->type == KQ_JIN_TEXT))
            return 1;
        if (f->max_len > 0 && count_chars(s, len) > f->max_len)
            return 1;
        if (f->enum_values != NULL) {
            for (size_t k = 0; f->enum_values[k]; k++)
                if (strcmp(f->enum_values[k], s) == 0)
                    return 0;
            return 1;
        }
        return 0;
    }
    case KQ_JIN_INT:
        if (!json_is_integer(v))
            return 1;
        return f->min < f->max &&
               (json_integer_value(v) < f->min || json_integer_value(v) > f->max);
    case KQ_JIN_BOOL:
        return !json_is_boolean(v);
    case KQ_JIN_OBJECT:
        return !json_is_object(v);
    case KQ_JIN_ARRAY:
        return !json_is_array(v);
    }
    die("field table", "unknown type");
    return 1;
}

static int in_table(const kq_jin_field *fields, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(fields[i].name, key) == 0)
            return 1;
    return 0;
}

/* Is there a detail in details[from..) whose field is exactly `want`? */
static int has_detail(const json_t *details, size_t from, const char *want)
{
    for (size_t i = from; i < json_array_size(details); i++) {
        const char *f = json_string_value(json_object_get(json_array_get(details, i), "field"));
        if (f != NULL && strcmp(f, want) == 0)
            return 1;
    }
    return 0;
}

/* Validate `obj` against fields with `prefix` and check the result. */
static void check_validate(const json_t *obj, const kq_jin_field *fields, size_t n,
                           const char *prefix)
{
    json_t *details = json_array();
    const char *key;
    json_t *val;
    size_t got, expected = 0;
    char want[512];

    if (details == NULL)
        return; /* out of memory: nothing to check */
    got = kq_jin_validate(obj, fields, n, prefix, details);
    if (got != json_array_size(details))
        die("kq_jin_validate", "returned count differs from the details appended");

    /* every detail is {"field": string, "message": non-empty string} under the prefix */
    for (size_t i = 0; i < json_array_size(details); i++) {
        const json_t *d = json_array_get(details, i);
        const char *f = json_string_value(json_object_get(d, "field"));
        const char *m = json_string_value(json_object_get(d, "message"));
        if (!json_is_object(d) || json_object_size(d) != 2 || f == NULL || m == NULL || !*m)
            die("kq_jin_validate", "malformed detail");
        if (prefix && *prefix &&
            (strncmp(f, prefix, strlen(prefix)) != 0 || f[strlen(prefix)] != '.'))
            die("kq_jin_validate", "detail field lacks the prefix");
    }

    /* the independent prediction: each unknown key, each field at fault */
    json_object_foreach((json_t *)obj, key, val)
    {
        if (in_table(fields, n, key))
            continue;
        expected++;
        snprintf(want, sizeof want, "%s%s%s", prefix ? prefix : "", prefix && *prefix ? "." : "",
                 key);
        if (strlen(key) < 200 && !has_detail(details, 0, want))
            die("kq_jin_validate", "no detail for an unknown field");
    }
    for (size_t i = 0; i < n; i++) {
        if (!field_bad(&fields[i], json_object_get(obj, fields[i].name)))
            continue;
        expected++;
        snprintf(want, sizeof want, "%s%s%s", prefix ? prefix : "", prefix && *prefix ? "." : "",
                 fields[i].name);
        if (!has_detail(details, 0, want))
            die("kq_jin_validate", "no detail for a field at fault");
    }
    if (got != expected) {
        char msg[64];
        snprintf(msg, sizeof msg, "%zu details, expected %zu", got, expected);
        die("kq_jin_validate", msg);
    }
    if (got == 0) {
        /* valid: every required field present with its type */
        for (size_t i = 0; i < n; i++)
            if (fields[i].required && json_object_get(obj, fields[i].name) == NULL)
                die("kq_jin_validate", "valid without a required field");
    }
    json_decref(details);
}

static void check_content_type(const uint8_t *data, size_t size)
{
    char ct[128];
    size_t n = 0;
    const char *p;

    while (n < size && n < sizeof ct - 1 && data[n] != '\n' && data[n] != '\0') {
        ct[n] = (char)data[n];
        n++;
    }
    ct[n] = '\0';
    if (!kq_jin_content_type_ok(ct))
        return;
    for (p = ct; *p == ' ' || *p == '\t'; p++)
        ;
    if (strncasecmp(p, "application/json", 16) != 0)
        die("kq_jin_content_type_ok", ct);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *details, *obj = NULL, *steps;
    int rc;

    check_content_type(data, size);

    if ((details = json_array()) == NULL)
        return 0;
    rc = kq_jin_parse((const char *)data, size, &obj, details);
    if (rc == 0) {
        if (!json_is_object(obj) || json_array_size(details) != 0)
            die("kq_jin_parse", "success without an object, or with details");
    } else {
        const char *f = json_string_value(json_object_get(json_array_get(details, 0), "field"));
        if (rc != KQ_EINVAL || json_array_size(details) != 1 || f == NULL || strcmp(f, "body") != 0)
            die("kq_jin_parse", "a refusal must be KQ_EINVAL with one detail on \"body\"");
        json_decref(details);
        return 0;
    }
    json_decref(details);

    check_validate(obj, resource_create, N(resource_create), NULL);
    check_validate(obj, workflow_create, N(workflow_create), "");
    steps = json_object_get(obj, "steps");
    if (json_is_array(steps)) {
        for (size_t i = 0; i < json_array_size(steps) && i < 64; i++) {
            const json_t *st = json_array_get(steps, i);
            char prefix[32];
            if (!json_is_object(st))
                continue;
            snprintf(prefix, sizeof prefix, "steps[%zu]", i);
            check_validate(st, step_fields, N(step_fields), prefix);
        }
    }
    json_decref(obj);
    return 0;
}
