/*
 * kq_json_in.h — strict parsing of JSON request bodies (jansson).
 *
 * The HTTP contract (DESIGN.md section 8) answers bad input with 400 and one
 * detail per offending field. This module produces those details: each is a
 * JSON object {"field": "...", "message": "..."} appended to a caller's
 * `details` array, which kq_http puts into the standard error body.
 *
 *   - kq_jin_parse: the body must be one JSON object; duplicate keys
 *     (JSON_REJECT_DUPLICATES), invalid UTF-8 and \u0000 in strings (jansson
 *     refuses both on its own) and trailing garbage are errors;
 *   - kq_jin_validate: checks an object against a table of fields: type,
 *     required, maximum length in characters (code points), allowed enum
 *     values, the id syntax [A-Za-z0-9._-]{1,64}, integer bounds, no control
 *     characters (below); every key not in the table is an "unknown field".
 *     Every offending field gets one detail; validation does not stop at the
 *     first;
 *   - control characters: the one rule of every string a client gives
 *     (names, ids, descriptions, action header names and values, e-mail
 *     addresses, URLs, templates, attempt texts): U+0000..U+001F, U+007F and
 *     the C1 controls U+0080..U+009F (UTF-8 C2 80..C2 9F) are refused, with
 *     one detail naming the first ("must not contain control characters
 *     (U+001B at byte 4)"). KQ_JIN_STRING fields allow none; KQ_JIN_TEXT
 *     fields (multi-line text) allow TAB, LF and CR. kq_jin_ctl_find is the
 *     predicate, kq_jin_check_ctl the detail, for fields outside a table
 *     (header values allow TAB, as HTTP does; events/ev_action.c's URL and
 *     e-mail rules call the predicate);
 *   - kq_jin_content_type_ok: "application/json", optionally with
 *     "; charset=utf-8", both case-insensitive.
 *
 * Thread-safety: reentrant, no global state.
 */
#ifndef KQ_JSON_IN_H
#define KQ_JSON_IN_H

#include <jansson.h>
#include <stddef.h>

typedef enum {
    KQ_JIN_STRING = 0,
    KQ_JIN_INT,
    KQ_JIN_BOOL,
    KQ_JIN_OBJECT,
    KQ_JIN_ARRAY,
    KQ_JIN_ID,   /* a string matching [A-Za-z0-9._-]{1,64} */
    KQ_JIN_TEXT, /* a string that may span lines: TAB, LF and CR allowed (descriptions,
                    body templates); every other control character refused */
} kq_jin_type;

typedef struct kq_jin_field {
    const char *name;
    kq_jin_type type;
    int required;
    size_t max_len;                 /* strings: maximum characters; 0 = no limit */
    const char *const *enum_values; /* strings: NULL-terminated allowed values, or NULL */
    long long min, max;             /* integers: bounds, used when min < max */
} kq_jin_field;

#define KQ_JIN_ID_MAX 64

/*
 * Append {"field": field, "message": printf(fmt, ...)} to `details` (a JSON
 * array). Returns 0 or KQ_ENOMEM.
 */
int kq_jin_detail_add(json_t *details, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * A string field `v` of min..max bytes; when not, one detail at `path`
 * ("must be min..max bytes (got n)"). Returns the number of details added
 * (0 or 1).
 */
int kq_jin_check_bytes(json_t *details, const char *path, const json_t *v, size_t min, size_t max);

/*
 * Parse `len` bytes as one JSON object. On success *out is a new reference
 * owned by the caller. On failure returns KQ_EINVAL and appends one detail
 * (field "body", message with jansson's reason, line and column).
 */
int kq_jin_parse(const char *body, size_t len, json_t **out, json_t *details);

/*
 * Validate `obj` against `fields[0..n)`. `prefix` (may be NULL) is prepended
 * to field names in details ("actions[0]" gives "actions[0].url"). Returns the
 * number of details appended (0 = valid).
 */
size_t kq_jin_validate(const json_t *obj, const kq_jin_field *fields, size_t n, const char *prefix,
                       json_t *details);

/* Control characters a caller lets through (kq_jin_ctl_find's allow). */
#define KQ_JIN_ALLOW_TAB 0x1u
#define KQ_JIN_ALLOW_LF 0x2u
#define KQ_JIN_ALLOW_CR 0x4u
#define KQ_JIN_ALLOW_LINES                                                                         \
    (KQ_JIN_ALLOW_TAB | KQ_JIN_ALLOW_LF | KQ_JIN_ALLOW_CR) /* KQ_JIN_TEXT                          \
                                                            */

/*
 * The byte offset of the first control character of s[0..len) (U+0000..U+001F,
 * U+007F, U+0080..U+009F as UTF-8 C2 80..C2 9F) that `allow` does not let
 * through, or -1 when there is none. *cp (may be NULL) is its code point.
 * Bytes that are not UTF-8 are not judged here (jansson refuses them).
 */
long kq_jin_ctl_find(const char *s, size_t len, unsigned allow, unsigned *cp);

/*
 * A string field `v` without control characters but those `allow` lets
 * through; else one detail at `path` ("must not contain control characters
 * (U+001B at byte 4)"). Returns the number of details added (0 or 1).
 */
int kq_jin_check_ctl(json_t *details, const char *path, const json_t *v, unsigned allow);

/* 1 when `s` matches [A-Za-z0-9._-]{1,64}. */
int kq_jin_id_valid(const char *s);

/* Number of code points of valid UTF-8 `s` of `len` bytes. */
size_t kq_jin_utf8_chars(const char *s, size_t len);

/* 1 when a Content-Type header value is JSON as above; `ct` may be NULL (0). */
int kq_jin_content_type_ok(const char *ct);

#endif
