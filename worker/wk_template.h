/*
 * wk_template.h — {{payload.field}} substitution from the trigger payload.
 *
 * Syntax: "{{" [blanks] path [blanks] "}}" where path is "payload" followed
 * by zero or more ".name" steps; a step on an array is a 0-based decimal
 * index ("{{payload.items.0.sku}}"). Names are any bytes but '.', '}',
 * blanks and '{'. "{{payload}}" is the whole payload. Everything outside
 * placeholders is copied as is; a "{{" that does not open a valid
 * placeholder is an error (there is no escape: a template cannot emit a
 * literal "{{").
 *
 * Values are rendered as text first: a string is its content, a number its
 * JSON text, true/false as such, an object or array its compact JSON; null
 * is "" in text and URL mode and "null" in JSON mode. Then, by mode:
 *   WK_TPL_TEXT  as is (email bodies, non-JSON HTTP bodies)
 *   WK_TPL_JSON  JSON-string-escaped (" \ and control characters), so a
 *                placeholder inside a JSON string literal stays valid JSON:
 *                {"name": "{{payload.name}}", "n": {{payload.count}}}
 *                (a number or boolean placed outside quotes is valid as is;
 *                objects and arrays are meant to sit inside quotes)
 *   WK_TPL_URL   percent-encoded except unreserved characters (RFC 3986)
 *   WK_TPL_HEADER as text, but CR and LF are refused (email subject, header
 *                values): no header injection
 * The worker uses JSON mode for an HTTP body whose action sets a JSON
 * Content-Type (application/json or ...+json, the default when the action
 * sets none), text mode otherwise and for email bodies, header mode for the
 * subject.
 *
 * A placeholder whose path does not exist in the payload is an error
 * (KQ_ENOTFOUND naming the path): the step fails rather than sending a
 * request with a silently empty field.
 *
 * Reentrant; the payload is only read.
 */
#ifndef WK_TEMPLATE_H
#define WK_TEMPLATE_H

#include <jansson.h>
#include <stddef.h>

#define WK_TEMPLATE_OUT_MAX (1024 * 1024) /* rendered size limit */

typedef enum wk_tpl_mode { WK_TPL_TEXT = 0, WK_TPL_JSON, WK_TPL_URL, WK_TPL_HEADER } wk_tpl_mode;

/*
 * Render `tpl` against `payload` (a JSON object; NULL behaves like {}).
 * On success *out is a malloc'd NUL-terminated string owned by the caller
 * and *outlen its length (out may hold NULs only if the payload strings do).
 * Errors: KQ_EINVAL (malformed placeholder), KQ_ENOTFOUND (missing field),
 * KQ_ERANGE (over WK_TEMPLATE_OUT_MAX), KQ_ENOMEM; errstr says which.
 */
int wk_template_render(const char *tpl, const json_t *payload, wk_tpl_mode mode, char **out,
                       size_t *outlen, char *errstr, size_t errlen);

/* 1 if a Content-Type value is JSON (application/json, type/x+json; params ignored). */
int wk_template_is_json_type(const char *content_type);

#endif
