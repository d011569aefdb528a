/*
 * cmd_wf_json.h — request bodies of the workflow, run and attempt commands:
 * JSON in, a filled cmd_command out (CONTRACT of issue #6).
 *
 * What it is for
 *   cmd_api.c parses a body with kq_jin_parse and hands the object here.
 *   Everything that can be checked without the aggregate's state is checked
 *   here, on the HTTP thread, with one detail {"field","message"} per
 *   offending field appended to the caller's `details` array (paths like
 *   "actions[2].url", "actions[0].headers.X-Token", "actions[1].to[3]"):
 *   unknown fields, types, lengths in bytes or characters as the event
 *   codec counts them, enums, the action rules below. A body that passes is
 *   turned into the command's fields; the workflow's actions become the
 *   steps envelope (cmd_command.steps_env): an Envelope whose payload is a
 *   WorkflowUpdated holding only `steps`, built with ev_envelope_encode so
 *   the codec's domain rules are checked once more (a codec refusal is
 *   reported as a detail on the matching "actions[i]..." path).
 *
 * Action JSON (the same shape the query API answers):
 *   {"type":"http", "name"?, "method"? (GET|POST|PUT|PATCH|DELETE, default
 *    POST), "url", "headers"? {name: value}, "body_template"?}
 *   {"type":"email", "name"?, "to": [1..50 addresses], "subject",
 *    "body_template"?}
 *   - name: 1..255 bytes;
 *   - url: <= 2048 bytes, http:// or https:// (lower or upper case), then a
 *     host (a name of [A-Za-z0-9.-_~%] or a bracketed IPv6 literal), an
 *     optional :port (1..65535), then /path, ?query or #fragment; no
 *     user:password@ part, no spaces or control characters. Placeholders
 *     are allowed after the host only;
 *   - headers: at most 50; names are HTTP tokens of 1..256 bytes; Host,
 *     Content-Length, Transfer-Encoding, Connection and X-Kcqrs-* (any
 *     case) are refused (the worker sets them); values are strings of
 *     0..8192 bytes without CR, LF or NUL;
 *   - to: 1..50 addresses of 3..320 bytes with exactly one '@', a non-empty
 *     local part and domain, no spaces, control characters, <, >, ',', ';',
 *     '"', '(' or ')' (a conservative check, not RFC 5322);
 *   - subject: 0..998 bytes without CR or LF; body_template: 0..65536 bytes;
 *   - url, header values, subject and body_template are templates: every
 *     "{{" must open a placeholder of worker/wk_template.h's grammar
 *     ("{{" blanks "payload" ("." name)* blanks "}}", a name being 1..200
 *     bytes other than '.', '{', '}', blanks, CR, LF), else 400.
 * Secret: 1..255 visible ASCII bytes (0x21..0x7e). A generated one is 32
 *   bytes from getrandom(2) as 64 lowercase hex digits.
 *
 * Ownership: strings put into a cmd_command are malloc'd copies the command
 *   owns (cmd_command_clear frees them). Nothing is kept in the json_t.
 * Threads: reentrant, no global state.
 */
#ifndef CMD_WF_JSON_H
#define CMD_WF_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "cmd_state.h"

#define CMD_WF_ACTIONS_MAX EV_MAX_STEPS /* actions per workflow: 1..100 */

/*
 * Workflow create (POST /api/v1/workflows): fields id?, name, enabled?,
 * secret?, actions. Fills c->id (the given id or a new UUID v4), c->name,
 * c->enabled (default 1), c->secret (the given one, or a generated one with
 * c->secret_generated = 1), c->steps_env; c->fields gets CMD_F_NAME |
 * CMD_F_ENABLED | CMD_F_SECRET | CMD_F_STEPS. c->kind is not touched.
 * Returns 0, KQ_EINVAL (details appended; the command may hold partial
 * fields, which cmd_command_clear frees) or KQ_ENOMEM / KQ_EIO (no
 * randomness).
 */
int cmd_wf_parse_create(const json_t *obj, cmd_command *c, json_t *details);

/*
 * Workflow update (PUT /api/v1/workflows/{id}); c->id must be set already
 * (the steps envelope names it). Fields name?, enabled?, secret?, actions?,
 * rotate_secret? (must be true; not with secret): at least one. rotate_secret
 * sets a generated secret with c->secret_generated = 1. Only the fields
 * present get their CMD_F_* bit. Returns as cmd_wf_parse_create.
 */
int cmd_wf_parse_update(const json_t *obj, cmd_command *c, json_t *details);

/*
 * The actions array (at path `field`, e.g. "actions") into an encoded steps
 * envelope for workflow `workflow_id`: *env (malloc'd, owned by the caller)
 * and *envlen. Returns 0, KQ_EINVAL (details appended) or KQ_ENOMEM.
 */
int cmd_wf_actions_env(const json_t *actions, const char *field, const char *workflow_id,
                       uint8_t **env, size_t *envlen, json_t *details);

/*
 * Worker attempt (POST /internal/v1/runs/{id}/attempts): step, attempt,
 * status_code?, error?, duration_ms, next_delay_ms? (required iff outcome is
 * retry, refused otherwise), delivery_id, outcome. Fills the run-attempt
 * section of `c`. Returns 0, KQ_EINVAL (details appended) or KQ_ENOMEM.
 */
int cmd_wf_parse_attempt(const json_t *obj, cmd_command *c, json_t *details);

/*
 * A trigger payload: `len` bytes of a JSON object (0 bytes = {}). On success
 * *out is its compact JSON (malloc'd, owned by the caller), at most
 * EV_PAYLOAD_JSON_MAX bytes. Returns 0, KQ_EINVAL (one detail: field
 * "body", not JSON / not an object / too large) or KQ_ENOMEM.
 */
int cmd_wf_payload(const char *body, size_t len, char **out, json_t *details);

/* 0 when `s` (len bytes) is a well-formed template, else KQ_EINVAL with the
 * reason (and the byte offset) in why. */
int cmd_wf_template_check(const char *s, size_t len, char *why, size_t whylen);

/* 0 when `url` is acceptable as above, else KQ_EINVAL with the reason. */
int cmd_wf_url_check(const char *url, size_t len, char *why, size_t whylen);

/* 1 when `addr` passes the conservative e-mail check above. */
int cmd_wf_email_ok(const char *addr, size_t len);

/* 1 when `s` (len bytes) is a valid secret: 1..255 bytes of 0x21..0x7e. */
int cmd_wf_secret_ok(const char *s, size_t len);

/* A new secret: 64 lowercase hex digits + NUL into out[65]. 0 or KQ_EIO. */
int cmd_wf_secret_generate(char out[CMD_WF_SECRET_GEN_LEN + 1]);

#endif
