/*
 * cmd_wf_json.c — workflow / run / attempt request bodies; see cmd_wf_json.h.
 */
#include "cmd_wf_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ev_codec.h"
#include "kq_err.h"
#include "kq_json_in.h"

static const char *const action_types[] = {"http", "email", NULL};
static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};
static const ev_http_method method_values[] = {EV_HTTP_GET, EV_HTTP_POST, EV_HTTP_PUT,
                                               EV_HTTP_PATCH, EV_HTTP_DELETE};
static const kq_jin_field http_fields[] = {
    {"type", KQ_JIN_STRING, 1, 0, action_types, 0, 0},
    {"name", KQ_JIN_STRING, 0, 0, NULL, 0, 0},
    {"method", KQ_JIN_STRING, 0, 0, methods, 0, 0},
    {"url", KQ_JIN_STRING, 1, 0, NULL, 0, 0},
    {"headers", KQ_JIN_OBJECT, 0, 0, NULL, 0, 0},
    {"body_template", KQ_JIN_STRING, 0, 0, NULL, 0, 0},
};

static const kq_jin_field email_fields[] = {
    {"type", KQ_JIN_STRING, 1, 0, action_types, 0, 0},
    {"name", KQ_JIN_STRING, 0, 0, NULL, 0, 0},
    {"to", KQ_JIN_ARRAY, 1, 0, NULL, 0, 0},
    {"subject", KQ_JIN_STRING, 1, 0, NULL, 0, 0},
    {"body_template", KQ_JIN_STRING, 0, 0, NULL, 0, 0},
};

#define NFIELDS(t) (sizeof(t) / sizeof((t)[0]))

/* ------------------------------------------------------------------ small checks */

int cmd_wf_secret_ok(const char *s, size_t len)
{
    return cmd_workflow_secret_ok(s, len);
}

int cmd_wf_secret_generate(char out[CMD_WF_SECRET_GEN_LEN + 1])
{
    return cmd_workflow_secret_generate(out);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* wk_template.c's name characters. */
static int tpl_name_char(char c)
{
    return c != '\0' && c != '.' && c != '}' && c != '{' && c != ' ' && c != '\t' && c != '\r' &&
           c != '\n';
}

int cmd_wf_template_check(const char *s, size_t len, char *why, size_t whylen)
{
    size_t i = 0;

    while (i + 1 < len) {
        size_t open, q;
        if (s[i] != '{' || s[i + 1] != '{') {
            i++;
            continue;
        }
        open = i;
        q = i + 2;
        while (q < len && is_blank(s[q]))
            q++;
        if (len - q < 7 || memcmp(s + q, "payload", 7) != 0 ||
            (q + 7 < len && s[q + 7] != '.' && s[q + 7] != '}' && !is_blank(s[q + 7])))
            return kq_seterr(why, whylen, KQ_EINVAL,
                             "placeholder at offset %zu must be {{payload}} or {{payload.a.b}}",
                             open);
        q += 7;
        while (q < len && s[q] == '.') {
            size_t ns = ++q;
            while (q < len && tpl_name_char(s[q]))
                q++;
            if (q - ns == 0 || q - ns > 200)
                return kq_seterr(why, whylen, KQ_EINVAL,
                                 "placeholder at offset %zu has an empty or over-long (200 bytes) "
                                 "name",
                                 open);
        }
        while (q < len && is_blank(s[q]))
            q++;
        if (len - q < 2 || s[q] != '}' || s[q + 1] != '}')
            return kq_seterr(why, whylen, KQ_EINVAL,
                             "placeholder at offset %zu is not closed by }} (or has a bad name)",
                             open);
        i = q + 2;
    }
    return 0;
}

int cmd_wf_url_check(const char *url, size_t len, char *why, size_t whylen)
{
    size_t i, h, hend;

    if (len > EV_URL_MAX)
        return kq_seterr(why, whylen, KQ_EINVAL, "must be at most %d bytes", EV_URL_MAX);
    for (i = 0; i < len; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] == 0x7f)
            return kq_seterr(why, whylen, KQ_EINVAL,
                             "must not contain spaces or control characters");
    if (len >= 7 && strncasecmp(url, "http://", 7) == 0)
        h = 7;
    else if (len >= 8 && strncasecmp(url, "https://", 8) == 0)
        h = 8;
    else
        return kq_seterr(why, whylen, KQ_EINVAL, "must start with http:// or https://");
    for (hend = h; hend < len && url[hend] != '/' && url[hend] != '?' && url[hend] != '#'; hend++)
        if (url[hend] == '@')
            return kq_seterr(why, whylen, KQ_EINVAL,
                             "must not carry user:password@ (use an Authorization header)");
    /* url[h..hend) is host[:port] */
    i = h;
    if (i < hend && url[i] == '[') {
        for (i++; i < hend && url[i] != ']'; i++) {
            char c = url[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                  c == ':' || c == '.'))
                return kq_seterr(why, whylen, KQ_EINVAL, "bad IPv6 literal in the host");
        }
        if (i >= hend || i == h + 1)
            return kq_seterr(why, whylen, KQ_EINVAL, "bad IPv6 literal in the host");
        i++;
    } else {
        size_t start = i;
        for (; i < hend && url[i] != ':'; i++) {
            char c = url[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '.' || c == '-' || c == '_' || c == '~' || c == '%'))
                return kq_seterr(why, whylen, KQ_EINVAL,
                                 "the host must be a literal name or address (no '%c', no "
                                 "placeholder)",
                                 c);
        }
        if (i == start)
            return kq_seterr(why, whylen, KQ_EINVAL, "a host is required");
    }
    if (i < hend) {
        long port = 0;
        if (url[i] != ':' || i + 1 == hend)
            return kq_seterr(why, whylen, KQ_EINVAL, "bad port after the host");
        for (i++; i < hend; i++) {
            if (url[i] < '0' || url[i] > '9' || port > 65535)
                return kq_seterr(why, whylen, KQ_EINVAL, "the port must be 1..65535");
            port = port * 10 + (url[i] - '0');
        }
        if (port < 1 || port > 65535)
            return kq_seterr(why, whylen, KQ_EINVAL, "the port must be 1..65535");
    }
    return cmd_wf_template_check(url + hend, len - hend, why, whylen);
}

int cmd_wf_email_ok(const char *a, size_t len)
{
    const char *at = NULL;

    if (len < 3 || len > EV_EMAIL_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c <= 0x20 || c == 0x7f || strchr("<>,;\"()\\", c) != NULL)
            return 0;
        if (c == '@') {
            if (at != NULL)
                return 0;
            at = a + i;
        }
    }
    return at != NULL && at != a && at != a + len - 1;
}

/* A string field of `max` bytes (and `min`); one detail when not. */
static int check_bytes(json_t *details, const char *path, const json_t *v, size_t min, size_t max)
{
    size_t n = json_string_length(v);
    if (n < min || n > max) {
        kq_jin_detail_add(details, path, "must be %zu..%zu bytes (got %zu)", min, max, n);
        return 1;
    }
    return 0;
}

static int check_template(json_t *details, const char *path, const json_t *v)
{
    char why[160];
    if (cmd_wf_template_check(json_string_value(v), json_string_length(v), why, sizeof why) != 0) {
        kq_jin_detail_add(details, path, "%s", why);
        return 1;
    }
    return 0;
}

static int no_crlf(json_t *details, const char *path, const json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (memchr(s, '\r', n) != NULL || memchr(s, '\n', n) != NULL || memchr(s, '\0', n) != NULL) {
        kq_jin_detail_add(details, path, "must not contain CR, LF or NUL");
        return 1;
    }
    return 0;
}

static int header_name_ok(const char *s, size_t n)
{
    if (n < 1 || n > EV_HEADER_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              (ch < 0x80 && ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL)))
            return 0;
    }
    return 1;
}

static int header_name_reserved(const char *s)
{
    return strcasecmp(s, "Host") == 0 || strcasecmp(s, "Content-Length") == 0 ||
           strcasecmp(s, "Transfer-Encoding") == 0 || strcasecmp(s, "Connection") == 0 ||
           strncasecmp(s, "X-Kcqrs-", 8) == 0;
}

/* ------------------------------------------------------------------ actions */

/* Everything one step's encoding borrows (views into the JSON). */
typedef struct step_build {
    ev_step *steps;
    ev_http_header *headers; /* EV_MAX_HEADERS per step */
    ev_str *to;              /* EV_MAX_RECIPIENTS per step */
} step_build;

static ev_str jstr(const json_t *v)
{
    ev_str s = {NULL, 0};
    if (json_is_string(v)) {
        s.ptr = json_string_value(v);
        s.len = (uint32_t)json_string_length(v);
    }
    return s;
}

/* Validate action `a` at `prefix` and fill st (views). Returns details appended. */
static size_t check_action(const json_t *a, const char *prefix, ev_step *st,
                           ev_http_header *headers, ev_str *to, json_t *details)
{
    size_t bad = 0;
    const json_t *type = json_object_get(a, "type"), *v;
    char path[320];

    if (!json_is_object(a)) {
        kq_jin_detail_add(details, prefix, "must be an object");
        return 1;
    }
    snprintf(path, sizeof path, "%s.type", prefix);
    if (!json_is_string(type)) {
        kq_jin_detail_add(details, path, "%s",
                          type == NULL ? "is required: \"http\" or \"email\""
                                       : "must be \"http\" or \"email\"");
        return 1;
    }
    if (strcmp(json_string_value(type), "email") == 0) {
        bad += kq_jin_validate(a, email_fields, NFIELDS(email_fields), prefix, details);
        st->action_type = EV_ACTION_EMAIL;
    } else if (strcmp(json_string_value(type), "http") == 0) {
        bad += kq_jin_validate(a, http_fields, NFIELDS(http_fields), prefix, details);
        st->action_type = EV_ACTION_HTTP;
    } else {
        kq_jin_detail_add(details, path, "must be \"http\" or \"email\"");
        return 1;
    }
    if (json_is_string(v = json_object_get(a, "name"))) {
        snprintf(path, sizeof path, "%s.name", prefix);
        bad += check_bytes(details, path, v, 1, EV_META_MAX);
        st->name = jstr(v);
    }
    if (json_is_string(v = json_object_get(a, "body_template"))) {
        snprintf(path, sizeof path, "%s.body_template", prefix);
        if (!check_bytes(details, path, v, 0, EV_TEMPLATE_MAX))
            bad += check_template(details, path, v);
        else
            bad++;
    }
    if (st->action_type == EV_ACTION_HTTP) {
        ev_http_action *h = &st->action.http;
        const char *key;
        json_t *hv;
        size_t k = 0;

        h->body_template = jstr(json_object_get(a, "body_template"));
        h->method = EV_HTTP_POST;
        if (json_is_string(v = json_object_get(a, "method")))
            for (size_t m = 0; methods[m] != NULL; m++)
                if (strcmp(methods[m], json_string_value(v)) == 0)
                    h->method = method_values[m];
        if (json_is_string(v = json_object_get(a, "url"))) {
            char why[160];
            snprintf(path, sizeof path, "%s.url", prefix);
            if (cmd_wf_url_check(json_string_value(v), json_string_length(v), why, sizeof why) !=
                0) {
                kq_jin_detail_add(details, path, "%s", why);
                bad++;
            }
            h->url = jstr(v);
        }
        v = json_object_get(a, "headers");
        if (json_is_object(v) && json_object_size(v) > EV_MAX_HEADERS) {
            snprintf(path, sizeof path, "%s.headers", prefix);
            kq_jin_detail_add(details, path, "at most %d headers (got %zu)", EV_MAX_HEADERS,
                              json_object_size(v));
            bad++;
        } else if (json_is_object(v)) {
            json_object_foreach((json_t *)v, key, hv)
            {
                snprintf(path, sizeof path, "%s.headers.%s", prefix, key);
                if (!header_name_ok(key, strlen(key))) {
                    kq_jin_detail_add(details, path,
                                      "the name must be an HTTP token (RFC 9110) of 1..%d bytes",
                                      EV_HEADER_NAME_MAX);
                    bad++;
                } else if (header_name_reserved(key)) {
                    kq_jin_detail_add(details, path,
                                      "Host, Content-Length, Transfer-Encoding, Connection and "
                                      "X-Kcqrs-* are set by the worker");
                    bad++;
                } else if (!json_is_string(hv)) {
                    kq_jin_detail_add(details, path, "must be a string");
                    bad++;
                } else if (check_bytes(details, path, hv, 0, EV_HEADER_VALUE_MAX) ||
                           no_crlf(details, path, hv) || check_template(details, path, hv)) {
                    bad++;
                }
                headers[k].name = ev_str_c(key);
                headers[k].value = jstr(hv);
                k++;
            }
            h->headers = ev_header_list_of(headers, (uint32_t)k);
        }
    } else {
        ev_email_action *m = &st->action.email;
        size_t n;

        v = json_object_get(a, "to");
        if (json_is_array(v)) {
            n = json_array_size(v);
            if (n < 1 || n > EV_MAX_RECIPIENTS) {
                snprintf(path, sizeof path, "%s.to", prefix);
                kq_jin_detail_add(details, path, "must have 1..%d addresses (got %zu)",
                                  EV_MAX_RECIPIENTS, n);
                bad++;
            } else {
                for (size_t k = 0; k < n; k++) {
                    const json_t *e = json_array_get(v, k);
                    snprintf(path, sizeof path, "%s.to[%zu]", prefix, k);
                    if (!json_is_string(e) ||
                        !cmd_wf_email_ok(json_string_value(e), json_string_length(e))) {
                        kq_jin_detail_add(details, path,
                                          "must be an address like user@example.com (3..%d "
                                          "bytes, one @, no spaces or <>,;\"()\\)",
                                          EV_EMAIL_MAX);
                        bad++;
                    }
                    to[k] = jstr(e);
                }
                m->to = ev_str_list_of(to, (uint32_t)n);
            }
        }
        if (json_is_string(v = json_object_get(a, "subject"))) {
            snprintf(path, sizeof path, "%s.subject", prefix);
            if (check_bytes(details, path, v, 0, EV_SUBJECT_MAX) || no_crlf(details, path, v) ||
                check_template(details, path, v))
                bad++;
            m->subject = jstr(v);
        }
        m->body_template = jstr(json_object_get(a, "body_template"));
    }
    return bad;
}

/* "payload.steps[2].action.url: must ..." -> field "actions[2].url", message. */
static void codec_detail(json_t *details, const char *field, const char *err)
{
    const char *colon = strstr(err, ": ");
    char path[320];
    unsigned long idx;
    int used = 0;

    if (colon != NULL && sscanf(err, "payload.steps[%lu]%n", &idx, &used) == 1 && used > 0 &&
        err + used <= colon) {
        const char *rest = err + used;
        size_t restlen = (size_t)(colon - rest);
        if (restlen >= 7 && strncmp(rest, ".action", 7) == 0) {
            rest += 7;
            restlen -= 7;
        }
        snprintf(path, sizeof path, "%s[%lu]%.*s", field, idx, (int)restlen, rest);
        kq_jin_detail_add(details, path, "%s", colon + 2);
        return;
    }
    kq_jin_detail_add(details, field, "%s", err);
}

int cmd_wf_actions_env(const json_t *actions, const char *field, const char *workflow_id,
                       uint8_t **env, size_t *envlen, json_t *details)
{
    step_build sb = {NULL, NULL, NULL};
    size_t n = json_array_size(actions), bad = 0;
    ev_fb_builder b;
    ev_envelope e;
    char err[512];
    int rc;

    *env = NULL;
    *envlen = 0;
    if (!json_is_array(actions)) {
        kq_jin_detail_add(details, field, "must be an array");
        return KQ_EINVAL;
    }
    if (n < 1 || n > CMD_WF_ACTIONS_MAX) {
        kq_jin_detail_add(details, field, "must have 1..%d actions (got %zu)", CMD_WF_ACTIONS_MAX,
                          n);
        return KQ_EINVAL;
    }
    sb.steps = calloc(n, sizeof *sb.steps);
    sb.headers = calloc(n * EV_MAX_HEADERS, sizeof *sb.headers);
    sb.to = calloc(n * EV_MAX_RECIPIENTS, sizeof *sb.to);
    if (sb.steps == NULL || sb.headers == NULL || sb.to == NULL) {
        rc = KQ_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%s[%zu]", field, i);
        bad +=
            check_action(json_array_get(actions, i), prefix, &sb.steps[i],
                         sb.headers + i * EV_MAX_HEADERS, sb.to + i * EV_MAX_RECIPIENTS, details);
    }
    if (bad > 0) {
        rc = KQ_EINVAL;
        goto out;
    }
    ev_envelope_init(&e, EV_WORKFLOW_UPDATED);
    e.aggregate_id = ev_str_c(workflow_id);
    e.version = 1;
    e.payload.workflow_updated.steps = ev_step_list_of(sb.steps, (uint32_t)n);
    ev_fb_builder_init(&b);
    rc = ev_envelope_encode(&b, &e, err, sizeof err);
    if (rc == 0) {
        size_t len;
        const uint8_t *data = ev_fb_builder_data(&b, &len);
        if ((*env = malloc(len)) == NULL) {
            rc = KQ_ENOMEM;
        } else {
            memcpy(*env, data, len);
            *envlen = len;
        }
    } else if (rc == KQ_EINVAL) {
        codec_detail(details, field, err);
    }
    ev_fb_builder_free(&b);
out:
    free(sb.steps);
    free(sb.headers);
    free(sb.to);
    return rc;
}

/* ------------------------------------------------------------------ transitional */

int cmd_wf_parse_create(const json_t *obj, cmd_command *c, json_t *details)
{
    c->kind = CMD_WF_CREATE;
    return cmd_workflow_type.parse(obj, c, details);
}

int cmd_wf_parse_update(const json_t *obj, cmd_command *c, json_t *details)
{
    c->kind = CMD_WF_UPDATE;
    return cmd_workflow_type.parse(obj, c, details);
}

int cmd_wf_parse_attempt(const json_t *obj, cmd_command *c, json_t *details)
{
    c->kind = CMD_RUN_ATTEMPT;
    return cmd_run_type.parse(obj, c, details);
}

int cmd_wf_payload(const char *body, size_t len, char **out, json_t *details)
{
    return cmd_run_payload(body, len, out, details);
}
