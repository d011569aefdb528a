/*
 * ev_action.h — the one owner of workflow actions: their JSON (both ways),
 * the template grammar (check and render) and the URL rule.
 *
 * What it is for
 *   A workflow's actions are written by the API (commands/: a JSON array in
 *   the request body becomes the steps of WorkflowCreated/WorkflowUpdated),
 *   printed by the read models (projections/: the steps of an event become
 *   the "actions" array a query answers) and executed by the worker
 *   (worker/: templates rendered against the trigger payload). All three
 *   call this module, so the API accepts exactly what the read models print
 *   and the worker renders exactly the templates the API let through.
 *
 * Action JSON (the API's request shape and the query answer's shape):
 *   {"type":"http", "name"?, "method"? (GET|POST|PUT|PATCH|DELETE, default
 *    POST), "url", "headers"? {name: value}, "body_template"?}
 *   {"type":"email", "name"?, "to": [1..50 addresses], "subject",
 *    "body_template"?}
 *   - an array of 1..EV_MAX_STEPS actions; unknown fields are refused;
 *   - name: 1..255 bytes;
 *   - url: the URL rule (ev_url_check);
 *   - headers: at most 50; names are HTTP tokens of 1..256 bytes; Host,
 *     Content-Length, Transfer-Encoding, Connection and X-Kcqrs-* (any
 *     case) are refused (the worker sets them); values are strings of
 *     0..8192 bytes without control characters but TAB;
 *   - to: 1..50 addresses (ev_email_ok);
 *   - subject: 0..998 bytes; body_template: 0..65536 bytes (TAB, LF and CR
 *     allowed: multi-line text);
 *   - control characters (lib/kq_json_in.h's one rule: U+0000..U+001F, U+007F,
 *     U+0080..U+009F) are refused in every string of an action: type, name,
 *     method, url, header values (TAB allowed), addresses, subject; header
 *     names are HTTP tokens, so they hold none either;
 *   - url (after the host), header values, subject and body_template are
 *     templates: every "{{" must open a placeholder (ev_template_check).
 *   Every offending field gets one detail {"field","message"} (paths like
 *   "actions[2].url", "actions[0].headers.X-Token", "actions[1].to[3]").
 *
 * Template grammar: "{{" blanks "payload" ("." name)* blanks "}}", blanks
 *   being spaces and tabs, a name 1..200 bytes other than '.', '{', '}',
 *   blanks, CR, LF and NUL. Everything outside placeholders is copied as it
 *   is; a "{{" that does not open a valid placeholder is an error (there is
 *   no escape: a template cannot emit a literal "{{"). One scanner serves
 *   ev_template_check and ev_template_render: they agree by construction.
 *   Rendering: "{{payload}}" is the whole payload; each ".name" steps into
 *   an object by key or into an array by 0-based decimal index
 *   ("{{payload.items.0.sku}}"); a path that is not in the payload is an
 *   error (KQ_ENOTFOUND naming the path): the step fails rather than send a
 *   silently empty field. Values are rendered as text first: a string is
 *   its content, a number its JSON text, true/false as such, an object or
 *   array its compact JSON; null is "" in text and URL mode and "null" in
 *   JSON mode. Then, by mode:
 *     EV_TPL_TEXT   as is (email bodies, non-JSON HTTP bodies)
 *     EV_TPL_JSON   JSON-string-escaped (" \ and control characters), so a
 *                   placeholder inside a JSON string literal stays valid
 *                   JSON: {"name": "{{payload.name}}", "n": {{payload.n}}}
 *     EV_TPL_URL    percent-encoded except unreserved characters (RFC 3986)
 *     EV_TPL_HEADER as text, but CR, LF and NUL are refused (e-mail subject,
 *                   header values): no header injection
 *   The worker renders an HTTP body in JSON mode when the action's
 *   Content-Type is JSON (ev_template_is_json_type) or absent, in text mode
 *   otherwise and for e-mail bodies, and the subject in header mode.
 *
 * URL rule (ev_url_check): at most 2048 bytes, no spaces or control
 *   characters (C1 included), http:// or https:// (any case), then a host (a name of
 *   [A-Za-z0-9.-_~%] or a bracketed IPv6 literal), an optional :port
 *   (1..65535), then /path, ?query or #fragment; no user:password@ part.
 *   Placeholders are allowed after the host only.
 *
 * Ownership: see each function. Threads: reentrant, no global state.
 */
#ifndef EV_ACTION_H
#define EV_ACTION_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ev_codec.h"

#define EV_TEMPLATE_OUT_MAX (1024 * 1024) /* rendered size limit */
#define EV_TEMPLATE_NAME_MAX 200          /* bytes of one ".name" of a placeholder */

/* ---------------------------------------------------------------- names */

/* "http", "email"; NULL for anything else. Static. */
const char *ev_action_type_name(ev_action_type type);
/* "GET", "POST", "PUT", "PATCH", "DELETE"; NULL out of range. Static. */
const char *ev_http_method_name(ev_http_method method);
/* Inverse of ev_http_method_name (exact, upper case): 0 and *out, or KQ_EINVAL. */
int ev_http_method_parse(const char *name, ev_http_method *out);

/* ---------------------------------------------------------------- templates */

typedef enum ev_tpl_mode {
    EV_TPL_TEXT = 0,
    EV_TPL_JSON,
    EV_TPL_URL,
    EV_TPL_HEADER,
} ev_tpl_mode;

/* 0 when `s` (len bytes) is a well-formed template, else KQ_EINVAL with the
 * reason and the byte offset in why, e.g. "placeholder at offset 3 is not
 * closed by }} (or has a bad name)". */
int ev_template_check(const char *s, size_t len, char *why, size_t whylen);

/*
 * Render the template `tpl` (len bytes) against `payload` (a JSON value;
 * NULL behaves like {}) in `mode`. On success *out is a malloc'd
 * NUL-terminated string owned by the caller and *outlen (may be NULL) its
 * length (out holds NUL bytes only if the template or payload strings do).
 * Errors, with errstr saying which ("template: ..."): KQ_EINVAL (tpl NULL, a
 * malformed placeholder, a line break in header mode), KQ_ENOTFOUND (a path
 * not in the payload), KQ_ERANGE (over EV_TEMPLATE_OUT_MAX), KQ_ENOMEM; *out
 * is NULL then. The payload is only read.
 */
int ev_template_render(const char *tpl, size_t len, const json_t *payload, ev_tpl_mode mode,
                       char **out, size_t *outlen, char *errstr, size_t errlen);

/* 1 if a Content-Type value is JSON (application/json, type/x+json; params
 * and case ignored), else 0 (also for NULL). */
int ev_template_is_json_type(const char *content_type);

/* ---------------------------------------------------------------- URL, addresses */

/* 0 when `url` (len bytes) passes the URL rule above, else KQ_EINVAL with the
 * reason in why. */
int ev_url_check(const char *url, size_t len, char *why, size_t whylen);

/* 1 when `addr` (len bytes) is 3..320 bytes with exactly one '@', a
 * non-empty local part and domain, no spaces, control characters, <, >, ',',
 * ';', '"', '(', ')' or '\' (a conservative check, not RFC 5322); else 0. */
int ev_email_ok(const char *addr, size_t len);

/* ---------------------------------------------------------------- action JSON -> steps */

/*
 * Steps parsed from an actions array. `steps[0..count)` and the header and
 * recipient arrays they point into are malloc'd and owned by this struct
 * (ev_actions_free); every string is a VIEW into the JSON the steps were
 * parsed from, which must outlive them.
 */
typedef struct ev_actions {
    ev_step *steps;
    uint32_t count;
    ev_http_header *headers; /* EV_MAX_HEADERS per step */
    ev_str *to;              /* EV_MAX_RECIPIENTS per step */
} ev_actions;

/*
 * Validate the actions array `actions` found at `field` (e.g. "actions")
 * and fill *out. Returns 0, KQ_EINVAL (one detail per offending field
 * appended to `details`, a JSON array; *out is empty) or KQ_ENOMEM. The
 * codec's domain rules are not applied here: ev_actions_env does both.
 */
int ev_actions_parse(const json_t *actions, const char *field, ev_actions *out, json_t *details);

/* Free what ev_actions_parse allocated (not the JSON); *a is empty after. */
void ev_actions_free(ev_actions *a);

/*
 * The actions array as a steps envelope: an encoded Envelope of aggregate
 * `aggregate_id`, version 1, whose payload is a WorkflowUpdated holding only
 * the steps, built with ev_envelope_encode so the codec's domain rules are
 * checked once more (a codec refusal becomes a detail on the matching
 * "<field>[i]..." path). *env is malloc'd, owned by the caller, *envlen its
 * size. Returns 0, KQ_EINVAL (details appended) or KQ_ENOMEM.
 */
int ev_actions_env(const json_t *actions, const char *field, const char *aggregate_id,
                   uint8_t **env, size_t *envlen, json_t *details);

/* ---------------------------------------------------------------- steps -> action JSON */

/* One step as an action object of the shape above (defaults written out:
 * "method"; absent name, headers, body_template left out). New reference
 * owned by the caller, or NULL when a string is not valid UTF-8, the step is
 * malformed (no action type, a header name too long or holding NUL) or
 * memory ran out. */
json_t *ev_action_json(const ev_step *step);

/* The actions array of a step list (an absent list gives []). New reference,
 * or NULL as for ev_action_json. */
json_t *ev_actions_json(const ev_step_list *steps);

#endif
