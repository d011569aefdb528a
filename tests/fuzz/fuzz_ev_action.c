/*
 * fuzz_ev_action.c — libFuzzer entry point for workflow actions
 * (events/ev_action.h), which take untrusted request bodies and templates.
 *
 * The input is tried three ways:
 *   - as a template: ev_template_check refuses it (KQ_EINVAL) exactly when
 *     ev_template_render refuses it as malformed, in text, JSON and URL mode
 *     (a KQ_ENOTFOUND stops the renderer early and proves nothing); a
 *     rendering holds no "{{" that the template did not (no placeholder
 *     survives) unless the payload put it there — the payload has none;
 *   - as a URL: ev_url_check answers 0 or KQ_EINVAL with a reason;
 *   - as JSON: an actions array goes through ev_actions_env; a refusal
 *     has at least one well-formed detail, an acceptance gives an envelope
 *     that decodes and whose steps print (ev_actions_json) as the input
 *     does, once the input's defaults are written out (method POST) and
 *     empty header objects dropped — the API and the read models agree.
 * Any disagreement abort()s.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ev_action.h"
#include "ev_codec.h"
#include "kq_err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_ev_action: %s: %s\n", what, detail);
    abort();
}

static void as_template(const char *s, size_t n, const json_t *payload)
{
    char why[256], err[256];
    int check = ev_template_check(s, n, why, sizeof why);

    if (check != 0 && check != KQ_EINVAL)
        die("ev_template_check", "unexpected code");
    for (int mode = EV_TPL_TEXT; mode <= EV_TPL_URL; mode++) {
        char *out = NULL;
        size_t len = 0;
        int rc = ev_template_render(s, n, payload, (ev_tpl_mode)mode, &out, &len, err, sizeof err);
        if (rc != 0 && rc != KQ_EINVAL && rc != KQ_ENOTFOUND && rc != KQ_ERANGE)
            die("ev_template_render", "unexpected code");
        if ((rc == 0) != (out != NULL))
            die("ev_template_render", "output vs code");
        if (rc != KQ_ENOTFOUND && (rc == KQ_EINVAL) != (check == KQ_EINVAL))
            die("check and render disagree", rc ? err : why);
        if (rc == 0 && out[len] != '\0')
            die("ev_template_render", "not NUL-terminated");
        free(out);
    }
}

/* The input array with the defaults the read model writes out. */
static json_t *normalized(const json_t *actions)
{
    json_t *c = json_deep_copy(actions), *a;
    size_t i;

    json_array_foreach(c, i, a)
    {
        json_t *h = json_object_get(a, "headers");
        if (strcmp(json_string_value(json_object_get(a, "type")), "http") == 0 &&
            json_object_get(a, "method") == NULL)
            json_object_set_new(a, "method", json_string("POST"));
        if (json_is_object(h) && json_object_size(h) == 0)
            json_object_del(a, "headers");
    }
    return c;
}

static void as_actions(const json_t *actions)
{
    json_t *details = json_array(), *d, *back, *want;
    uint8_t *env = NULL;
    size_t envlen = 0, i;
    ev_envelope e;
    char err[256];
    int rc = ev_actions_env(actions, "actions", "wf-fuzz", &env, &envlen, details);

    if (rc == KQ_ENOMEM)
        goto out;
    if (rc == KQ_EINVAL) {
        if (json_array_size(details) == 0 || env != NULL)
            die("ev_actions_env", "refused without a detail");
        json_array_foreach(details, i, d)
        {
            const char *f = json_string_value(json_object_get(d, "field"));
            const char *m = json_string_value(json_object_get(d, "message"));
            if (f == NULL || strncmp(f, "actions", 7) != 0 || m == NULL || m[0] == '\0')
                die("ev_actions_env", "malformed detail");
        }
        goto out;
    }
    if (rc != 0 || json_array_size(details) != 0)
        die("ev_actions_env", "accepted with details or unexpected code");
    if (ev_envelope_decode(env, envlen, &e, err, sizeof err) != 0)
        die("ev_envelope_decode", err);
    if ((back = ev_actions_json(&e.payload.workflow_updated.steps)) == NULL)
        die("ev_actions_json", "NULL for accepted steps");
    want = normalized(actions);
    if (!json_equal(back, want)) {
        char *b = json_dumps(back, JSON_COMPACT), *w = json_dumps(want, JSON_COMPACT);
        fprintf(stderr, "got  %s\nwant %s\n", b ? b : "?", w ? w : "?");
        die("round trip", "the read model's actions differ from the API's");
    }
    json_decref(back);
    json_decref(want);
out:
    free(env);
    json_decref(details);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *payload;
    const char *s = (const char *)data;
    char why[256];
    json_error_t je;
    json_t *j;
    int rc;

    if (payload == NULL)
        payload =
            json_pack("{s:s,s:i,s:{s:[i,s]},s:n}", "a", "x y", "n", 7, "o", "l", 1, "z", "nil");
    as_template(s, size, payload);
    rc = ev_url_check(s, size, why, sizeof why);
    if (rc != 0 && (rc != KQ_EINVAL || why[0] == '\0'))
        die("ev_url_check", "unexpected code or no reason");
    j = json_loadb(s, size, JSON_REJECT_DUPLICATES, &je);
    if (j != NULL) {
        if (json_is_array(j))
            as_actions(j);
        json_decref(j);
    }
    return 0;
}
