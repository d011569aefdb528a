/*
 * cmd_workflow.c — the workflow aggregate: bodies, decisions, events, apply,
 * snapshot record, canonical steps; see cmd_workflow.h.
 */
#include "cmd_workflow.h"
#include "cmd_state.h"
#include "ev_action.h"
#include "kq_crypto.h"
#include "kq_err.h"
#include "kq_json_in.h"
#include "kq_keyring.h"
#include "kq_log.h"
#include "kq_rand.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T CMD_TOPIC_WORKFLOW

static const kq_jin_field create_fields[] = {
    {"id", KQ_JIN_ID, 0, 0, NULL, 0, 0},
    {"name", KQ_JIN_STRING, 1, EV_NAME_MAX_CHARS, NULL, 0, 0},
    {"enabled", KQ_JIN_BOOL, 0, 0, NULL, 0, 0},
    {"secret", KQ_JIN_STRING, 0, 0, NULL, 0, 0},
    {"actions", KQ_JIN_ARRAY, 1, 0, NULL, 0, 0},
};

static const kq_jin_field update_fields[] = {
    {"name", KQ_JIN_STRING, 0, EV_NAME_MAX_CHARS, NULL, 0, 0},
    {"enabled", KQ_JIN_BOOL, 0, 0, NULL, 0, 0},
    {"secret", KQ_JIN_STRING, 0, 0, NULL, 0, 0},
    {"actions", KQ_JIN_ARRAY, 0, 0, NULL, 0, 0},
    {"rotate_secret", KQ_JIN_BOOL, 0, 0, NULL, 0, 0},
};

#define NFIELDS(t) (sizeof(t) / sizeof((t)[0]))

/* ------------------------------------------------------------------ value */

static void wf_clear(void *v)
{
    cmd_workflow *w = v;
    free(w->name);
    free(w->secret);
    free(w->steps);
    free(w->sealed);
    w->name = w->secret = NULL;
    w->steps = NULL;
    w->steps_len = 0;
    w->sealed = NULL;
    w->sealed_len = 0;
}

static int wf_copy(void *dst, const void *src)
{
    cmd_workflow *d = dst;
    const cmd_workflow *s = src;

    wf_clear(d);
    *d = *s;
    d->name = d->secret = NULL;
    d->steps = NULL;
    d->steps_len = 0;
    d->sealed = NULL;
    d->sealed_len = 0;
    if (cmd_str_set(&d->name, s->name) != 0 || cmd_str_set(&d->secret, s->secret) != 0)
        return KQ_ENOMEM;
    if (s->sealed != NULL) {
        if ((d->sealed = malloc(s->sealed_len)) == NULL)
            return KQ_ENOMEM;
        memcpy(d->sealed, s->sealed, s->sealed_len);
        d->sealed_len = s->sealed_len;
    }
    if (s->steps != NULL) {
        if ((d->steps = malloc(s->steps_len ? s->steps_len : 1)) == NULL)
            return KQ_ENOMEM;
        memcpy(d->steps, s->steps, s->steps_len);
        d->steps_len = s->steps_len;
    }
    return 0;
}

static void wf_position(const void *val, int64_t *version, int32_t *partition, int64_t *offset)
{
    const cmd_workflow *w = val;
    *version = w->version;
    *partition = w->partition;
    *offset = w->offset;
}

const cmd_workflow *cmd_state_workflow(const cmd_state *st, const char *id)
{
    return cmd_state_get(st, T, id);
}

size_t cmd_state_workflow_count(const cmd_state *st)
{
    return cmd_state_count(st, T);
}

/* ------------------------------------------------------------------ secrets */

int cmd_workflow_secret_ok(const char *s, size_t len)
{
    if (len < 1 || len > EV_META_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

int cmd_workflow_secret_generate(char out[CMD_WF_SECRET_GEN_LEN + 1])
{
    return kq_rand_hex(out, CMD_WF_SECRET_GEN_LEN / 2);
}

int cmd_workflow_secret_matches(const char *given, const char *secret)
{
    unsigned char a[32], b[32];
    unsigned int na = 0, nb = 0;

    if (given == NULL || secret == NULL)
        return 0;
    if (EVP_Digest(given, strlen(given), a, &na, EVP_sha256(), NULL) != 1 ||
        EVP_Digest(secret, strlen(secret), b, &nb, EVP_sha256(), NULL) != 1 || na != 32 || nb != 32)
        return 0;
    return CRYPTO_memcmp(a, b, 32) == 0;
}

int cmd_workflow_sig_parse(const char *v, uint8_t out[32])
{
    if (v == NULL || strncmp(v, "sha256=", 7) != 0 || strlen(v + 7) != 64)
        return KQ_EINVAL;
    v += 7;
    for (int i = 0; i < 64; i++) {
        int c = (unsigned char)v[i], x;
        if (c >= '0' && c <= '9')
            x = c - '0';
        else if (c >= 'a' && c <= 'f')
            x = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            x = c - 'A' + 10;
        else
            return KQ_EINVAL;
        if (i % 2 == 0)
            out[i / 2] = (uint8_t)(x << 4);
        else
            out[i / 2] |= (uint8_t)x;
    }
    return 0;
}

int cmd_workflow_hook_ok(const cmd_command *c, const char *secret)
{
    /* what an unknown workflow is compared with: as long as a generated secret */
    static const char dummy[] = "0000000000000000000000000000000000000000000000000000000000000000";
    const char *s = secret != NULL ? secret : dummy;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = c->has_hook_secret || c->has_hook_sig;

    if (c->has_hook_secret && !cmd_workflow_secret_matches(c->hook_secret, s))
        ok = 0;
    if (c->has_hook_sig) {
        static const unsigned char empty[1] = {0};
        const unsigned char *body =
            c->hook_body_len > 0 ? (const unsigned char *)c->hook_body : empty;
        if (HMAC(EVP_sha256(), s, (int)strlen(s), body, c->hook_body_len, md, &mdlen) == NULL ||
            mdlen != 32 || CRYPTO_memcmp(md, c->hook_sig, 32) != 0)
            ok = 0;
    }
    return secret != NULL && ok;
}

/* ------------------------------------------------------------------ steps */

int cmd_steps_canonical(const ev_step_list *steps, uint8_t **out, size_t *outlen, char *errstr,
                        size_t errlen)
{
    ev_fb_builder fb;
    ev_envelope e;
    const uint8_t *buf;
    size_t len;
    int rc;

    *out = NULL;
    *outlen = 0;
    ev_fb_builder_init(&fb);
    ev_envelope_init(&e, EV_WORKFLOW_UPDATED);
    e.aggregate_id = ev_str_c("steps");
    e.version = 1;
    e.payload.workflow_updated.steps = *steps;
    e.payload.workflow_updated.steps.present = true;
    if ((rc = ev_envelope_encode(&fb, &e, errstr, errlen)) != 0)
        goto out;
    buf = ev_fb_builder_data(&fb, &len);
    if ((*out = malloc(len ? len : 1)) == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        goto out;
    }
    memcpy(*out, buf, len);
    *outlen = len;
out:
    ev_fb_builder_free(&fb);
    return rc;
}

int cmd_steps_view(const uint8_t *buf, size_t len, ev_envelope *e, ev_step_list *steps,
                   char *errstr, size_t errlen)
{
    int rc;

    if (buf == NULL || len == 0)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "no steps envelope");
    if ((rc = ev_envelope_decode(buf, len, e, errstr, errlen)) != 0)
        return rc;
    if (e->payload_type == EV_WORKFLOW_UPDATED && e->payload.workflow_updated.steps.present)
        *steps = e->payload.workflow_updated.steps;
    else if (e->payload_type == EV_WORKFLOW_CREATED && e->payload.workflow_created.steps.present)
        *steps = e->payload.workflow_created.steps;
    else if (e->payload_type == EV_RUN_STARTED && e->payload.run_started.steps.present)
        *steps = e->payload.run_started.steps;
    else
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "the envelope holds no steps");
    return 0;
}

/* Canonical steps of a list that may be absent (absent = no steps). */
static int steps_of(const ev_step_list *l, uint8_t **out, size_t *len, uint32_t *count,
                    char *errstr, size_t errlen)
{
    *out = NULL;
    *len = 0;
    *count = 0;
    if (!l->present)
        return 0;
    *count = l->count;
    return cmd_steps_canonical(l, out, len, errstr, errlen);
}

/* ------------------------------------------------------------------ body */

static int take_secret(const json_t *obj, cmd_command *c, json_t *details)
{
    const json_t *v = json_object_get(obj, "secret");

    if (!json_is_string(v))
        return 0;
    if (kq_jin_ctl_find(json_string_value(v), json_string_length(v), 0, NULL) >= 0)
        return KQ_EINVAL; /* the field table's detail says so */
    if (!cmd_workflow_secret_ok(json_string_value(v), json_string_length(v))) {
        kq_jin_detail_add(details, "secret", "must be 1..%d visible ASCII characters (no spaces)",
                          EV_META_MAX);
        return KQ_EINVAL;
    }
    if ((c->secret = strdup(json_string_value(v))) == NULL)
        return KQ_ENOMEM;
    c->fields |= CMD_F_SECRET;
    return 0;
}

static int generate_secret(cmd_command *c)
{
    char s[CMD_WF_SECRET_GEN_LEN + 1];
    if (cmd_workflow_secret_generate(s) != 0)
        return KQ_EIO;
    if ((c->secret = strdup(s)) == NULL)
        return KQ_ENOMEM;
    c->secret_generated = 1;
    c->fields |= CMD_F_SECRET;
    return 0;
}

/* name, enabled, secret, actions shared by create and update; rc or KQ_EINVAL. */
static int take_common(const json_t *obj, cmd_command *c, json_t *details)
{
    const json_t *v;
    int rc = 0, r;

    if (json_is_string(v = json_object_get(obj, "name"))) {
        if (json_string_length(v) == 0) {
            kq_jin_detail_add(details, "name", "must be 1..%d characters", EV_NAME_MAX_CHARS);
            rc = KQ_EINVAL;
        } else if ((c->name = strdup(json_string_value(v))) == NULL) {
            return KQ_ENOMEM;
        } else {
            c->fields |= CMD_F_NAME;
        }
    }
    if (json_is_boolean(v = json_object_get(obj, "enabled"))) {
        c->enabled = json_is_true(v);
        c->fields |= CMD_F_ENABLED;
    }
    if ((r = take_secret(obj, c, details)) == KQ_ENOMEM)
        return r;
    if (r != 0)
        rc = r;
    if (json_is_array(v = json_object_get(obj, "actions"))) {
        r = ev_actions_env(v, "actions", c->id, &c->steps_env, &c->steps_env_len, details);
        if (r == KQ_ENOMEM)
            return r;
        if (r != 0)
            rc = r;
        else
            c->fields |= CMD_F_STEPS;
    }
    return rc;
}

static int parse_create(const json_t *obj, cmd_command *c, json_t *details)
{
    const json_t *id = json_object_get(obj, "id");
    size_t bad = kq_jin_validate(obj, create_fields, NFIELDS(create_fields), NULL, details);
    int rc;

    if (json_is_string(id) && kq_jin_id_valid(json_string_value(id))) {
        snprintf(c->id, sizeof c->id, "%s", json_string_value(id));
    } else {
        uint8_t u[16];
        char s[KQ_UUID_STR];
        if (kq_uuid_v4(u) != 0)
            return KQ_EIO;
        kq_uuid_format(u, s);
        snprintf(c->id, sizeof c->id, "%s", s);
    }
    rc = take_common(obj, c, details);
    if (rc == KQ_ENOMEM)
        return rc;
    if (rc == 0 && bad == 0 && !(c->fields & CMD_F_ENABLED)) {
        c->enabled = 1;
        c->fields |= CMD_F_ENABLED;
    }
    if (rc == 0 && bad == 0 && !(c->fields & CMD_F_SECRET))
        rc = generate_secret(c);
    return rc != 0 ? rc : bad > 0 ? KQ_EINVAL : 0;
}

static int parse_update(const json_t *obj, cmd_command *c, json_t *details)
{
    size_t bad = kq_jin_validate(obj, update_fields, NFIELDS(update_fields), NULL, details);
    const json_t *rot = json_object_get(obj, "rotate_secret");
    int rc;

    if (json_object_size(obj) == 0) {
        kq_jin_detail_add(details, "body",
                          "give at least one of name, enabled, secret, actions, rotate_secret");
        bad++;
    }
    if (json_is_boolean(rot) && !json_is_true(rot)) {
        kq_jin_detail_add(details, "rotate_secret", "must be true (leave it out otherwise)");
        bad++;
    } else if (json_is_true(rot) && json_object_get(obj, "secret") != NULL) {
        kq_jin_detail_add(details, "rotate_secret", "give either secret or rotate_secret");
        bad++;
    }
    rc = take_common(obj, c, details);
    if (rc == KQ_ENOMEM)
        return rc;
    if (rc == 0 && bad == 0 && json_is_true(rot))
        rc = generate_secret(c);
    return rc != 0 ? rc : bad > 0 ? KQ_EINVAL : 0;
}

/* POST /api/v1/workflows (CMD_WF_CREATE) or PUT /api/v1/workflows/{id}. */
static int wf_parse(const json_t *obj, cmd_command *c, json_t *details)
{
    return c->kind == CMD_WF_CREATE ? parse_create(obj, c, details) : parse_update(obj, c, details);
}

/* ------------------------------------------------------------------ decide */

static int streq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* The canonical steps of the command's steps_env. 1 = refused (d filled). */
static int command_steps(const cmd_command *c, cmd_decision *d, uint8_t **out, size_t *len,
                         uint32_t *count)
{
    ev_envelope e;
    ev_step_list l;
    char es[128];
    int rc;

    if (cmd_steps_view(c->steps_env, c->steps_env_len, &e, &l, es, sizeof es) != 0) {
        cmd_decision_refuse(d, 400, "invalid_steps", 0, "the actions cannot be read: %s", es);
        return 1;
    }
    *count = l.count;
    if ((rc = cmd_steps_canonical(&l, out, len, es, sizeof es)) != 0) {
        if (rc == KQ_ENOMEM)
            return rc;
        cmd_decision_refuse(d, 400, "invalid_steps", 0, "the actions are invalid: %s", es);
        return 1;
    }
    return 0;
}

/* The events of c against cur (NULL for a create) into d, and the new steps
 * (canonical) into *steps when they change. 1 = decided without events
 * (refused or no-op), 0 = APPEND to record, < 0 = error. */
static int wf_events(const cmd_workflow *cur, const cmd_command *c, cmd_decision *d,
                     uint8_t **steps, size_t *steps_len, uint32_t *count, int *enabled)
{
    int n = 0, rc;

    *enabled = cur != NULL ? cur->enabled : 1;
    if (c->kind == CMD_WF_CREATE) {
        if (cur != NULL) {
            cmd_decision_refuse(d, 409, "conflict", cur->version, "workflow %s exists already",
                                c->id);
            return 1;
        }
        if (c->name == NULL || c->secret == NULL || c->secret[0] == '\0') {
            cmd_decision_refuse(d, 400, "invalid_request", 0,
                                "a workflow needs a name and a secret");
            return 1;
        }
        if (c->steps_env != NULL) {
            if ((rc = command_steps(c, d, steps, steps_len, count)) != 0)
                return rc;
        } else {
            /* no actions: an empty list, as WorkflowCreated will hold */
            ev_step_list none = ev_step_list_of(NULL, 0);
            char es[128];
            if (cmd_steps_canonical(&none, steps, steps_len, es, sizeof es) != 0)
                return KQ_ENOMEM;
        }
        d->events[n++] = EV_WORKFLOW_CREATED;
        d->changed = CMD_F_NAME | CMD_F_ENABLED | CMD_F_SECRET | CMD_F_STEPS;
        *enabled = (c->fields & CMD_F_ENABLED) ? c->enabled != 0 : 1;
        d->nevents = n;
        return 0;
    }
    if (cur == NULL || cur->deleted) {
        cmd_decision_refuse(d, 404, "not_found", 0, "workflow %s does not exist", c->id);
        return 1;
    }
    if (c->has_if_match && !c->if_match_any && c->if_match != cur->version) {
        cmd_decision_refuse(d, 412, "precondition_failed", cur->version,
                            "workflow %s has another version than If-Match", c->id);
        return 1;
    }
    if (c->kind == CMD_WF_DELETE) {
        d->events[n++] = EV_WORKFLOW_DELETED;
        d->nevents = n;
        return 0;
    }
    if ((c->fields & CMD_F_NAME) && c->name != NULL && !streq(c->name, cur->name))
        d->changed |= CMD_F_NAME;
    if ((c->fields & CMD_F_SECRET) && c->secret != NULL && c->secret[0] != '\0' &&
        !streq(c->secret, cur->secret))
        d->changed |= CMD_F_SECRET;
    if ((c->fields & CMD_F_STEPS) && c->steps_env != NULL) {
        if ((rc = command_steps(c, d, steps, steps_len, count)) != 0)
            return rc;
        if (*steps_len == cur->steps_len && cur->steps != NULL &&
            memcmp(*steps, cur->steps, *steps_len) == 0) {
            free(*steps);
            *steps = NULL;
        } else {
            d->changed |= CMD_F_STEPS;
        }
    }
    if (d->changed != 0)
        d->events[n++] = EV_WORKFLOW_UPDATED;
    if ((c->fields & CMD_F_ENABLED) && (c->enabled != 0) != (cur->enabled != 0)) {
        d->changed |= CMD_F_ENABLED;
        *enabled = c->enabled != 0;
        d->events[n++] = *enabled ? EV_WORKFLOW_ENABLED : EV_WORKFLOW_DISABLED;
    }
    if (n == 0) {
        d->kind = CMD_D_NOOP;
        d->version = cur->version;
        return 1;
    }
    d->nevents = n;
    return 0;
}

static int wf_decide(const cmd_state *st, cmd_batch *b, const cmd_command *c, cmd_decision *d)
{
    const cmd_workflow *cur = cmd_batch_view(st, b, T, c->id, &d->pending);
    cmd_workflow *p;
    uint8_t *steps = NULL;
    size_t steps_len = 0;
    uint32_t count = 0;
    int enabled, rc;

    rc = wf_events(cur, c, d, &steps, &steps_len, &count, &enabled);
    if (rc != 0) {
        free(steps);
        return rc < 0 ? rc : 0;
    }
    d->event = d->events[0];
    d->version = (cur != NULL && c->kind != CMD_WF_CREATE ? cur->version : 0) + d->nevents;
    /* Record the pending events in the overlay. */
    if ((p = cmd_batch_take(st, b, T, c->id, NULL)) == NULL) {
        rc = KQ_ENOMEM;
        goto out;
    }
    if (c->kind == CMD_WF_CREATE) {
        wf_clear(p);
        p->deleted = 0;
        if (cmd_str_set(&p->name, c->name) != 0 || cmd_str_set(&p->secret, c->secret) != 0) {
            rc = KQ_ENOMEM;
            goto out;
        }
    } else if (c->kind == CMD_WF_DELETE) {
        p->deleted = 1;
    } else if (((d->changed & CMD_F_NAME) && cmd_str_set(&p->name, c->name) != 0) ||
               ((d->changed & CMD_F_SECRET) && cmd_str_set(&p->secret, c->secret) != 0)) {
        rc = KQ_ENOMEM;
        goto out;
    }
    if (c->kind == CMD_WF_CREATE || (d->changed & CMD_F_STEPS)) {
        free(p->steps);
        p->steps = steps;
        p->steps_len = steps_len;
        p->step_count = count;
        steps = NULL;
    }
    p->enabled = enabled;
    p->version = d->version;
    p->offset = -1;
    d->kind = CMD_D_APPEND;
out:
    free(steps);
    return rc;
}

/* ------------------------------------------------------------------ build */

static int wf_build(const cmd_command *c, const cmd_decision *d, int i, ev_envelope *e,
                    ev_envelope *scratch, char *errstr, size_t errlen)
{
    ev_step_list steps;
    int rc;

    switch (e->payload_type) {
    case EV_WORKFLOW_CREATED:
        e->payload.workflow_created.name = ev_str_c(c->name);
        e->payload.workflow_created.enabled = (c->fields & CMD_F_ENABLED) ? c->enabled != 0 : 1;
        e->payload.workflow_created.webhook_secret = ev_str_c(c->secret);
        e->payload.workflow_created.steps = ev_step_list_of(NULL, 0);
        if (c->steps_env != NULL) {
            if ((rc = cmd_steps_view(c->steps_env, c->steps_env_len, scratch, &steps, errstr,
                                     errlen)) != 0)
                return rc;
            e->payload.workflow_created.steps = steps;
        }
        break;
    case EV_WORKFLOW_UPDATED:
        if (d->changed & CMD_F_NAME)
            e->payload.workflow_updated.name = ev_str_c(c->name);
        if (d->changed & CMD_F_SECRET)
            e->payload.workflow_updated.webhook_secret = ev_str_c(c->secret);
        if (d->changed & CMD_F_STEPS) {
            if ((rc = cmd_steps_view(c->steps_env, c->steps_env_len, scratch, &steps, errstr,
                                     errlen)) != 0)
                return rc;
            e->payload.workflow_updated.steps = steps;
        }
        break;
    default: /* WorkflowEnabled/Disabled/Deleted: no fields */
        break;
    }
    return 0;
}

/* ------------------------------------------------------------------ sealed copy */

/* The associated data of a snapshot's sealed secret: not an event's identity,
 * so a snapshot's value does not open as an event's and the other way round. */
static int snap_aad(const char *id, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "workflow/%s/snapshot/webhook_secret", id);
    return n < 0 || (size_t)n >= outlen ? KQ_ERANGE : n;
}

/* Seal w's secret under the workflow's data key into w->sealed (what the
 * snapshot stores). No keyring: nothing (the snapshot keeps it plain). A
 * failure leaves w->seal_failed set: the record is written without the secret
 * and a load refuses it (the log is read again). */
static void wf_seal(kq_keyring *keys, const char *id, cmd_workflow *w)
{
    char subject[KQ_SUBJECT_MAX + 1], aad[256], es[256];
    uint8_t dek[KQ_CRYPTO_KEY_LEN], *out = NULL;
    size_t sl, n = 0;
    int alen, rc;

    free(w->sealed);
    w->sealed = NULL;
    w->sealed_len = 0;
    w->seal_failed = 0;
    if (keys == NULL || w->secret == NULL)
        return;
    sl = strlen(w->secret);
    snprintf(subject, sizeof subject, "workflow/%s", id);
    if ((alen = snap_aad(id, aad, sizeof aad)) < 0 ||
        (out = malloc(sl + KQ_CRYPTO_SEAL_OVERHEAD)) == NULL) {
        w->seal_failed = 1;
        return;
    }
    rc = kq_keyring_get_or_create(keys, subject, dek, es, sizeof es);
    if (rc == 0)
        rc = kq_crypto_seal(dek, aad, (size_t)alen, w->secret, sl, out,
                            sl + KQ_CRYPTO_SEAL_OVERHEAD, &n, es, sizeof es);
    memset(dek, 0, sizeof dek);
    if (rc != 0) {
        kq_log_warn("workflow %s: cannot seal its secret for the snapshot: %s", id, es);
        free(out);
        w->seal_failed = 1;
        return;
    }
    w->sealed = out;
    w->sealed_len = n;
}

static int open_one(void *arg, const char *key, size_t keylen, void *val)
{
    cmd_workflow_open_ctx *c = arg;
    cmd_workflow *w = val;
    char subject[KQ_SUBJECT_MAX + 1], aad[256], es[256];
    uint8_t dek[KQ_CRYPTO_KEY_LEN];
    char *plain;
    size_t n = 0;
    int alen, rc;

    (void)keylen;
    if (w->secret != NULL && w->sealed == NULL && !w->seal_failed) {
        /* a plain record of an older snapshot: sealed, and rewritten sealed */
        wf_seal(c->keys, key, w);
        if (w->sealed != NULL) {
            c->resealed++;
            cmd_state_changed(c->st, T, key);
        }
        return 0;
    }
    if (w->secret != NULL || w->sealed == NULL)
        return 0;
    snprintf(subject, sizeof subject, "workflow/%s", key);
    if ((alen = snap_aad(key, aad, sizeof aad)) < 0 || (plain = malloc(w->sealed_len + 1)) == NULL)
        return KQ_ENOMEM;
    rc = kq_keyring_get(c->keys, subject, dek, es, sizeof es);
    if (rc == 0)
        rc = kq_crypto_open(dek, aad, (size_t)alen, w->sealed, w->sealed_len, (uint8_t *)plain,
                            w->sealed_len, &n, es, sizeof es);
    memset(dek, 0, sizeof dek);
    if (rc != 0) {
        free(plain);
        c->failed++;
        if (c->first_rc == 0) {
            c->first_rc = rc;
            snprintf(c->subject, sizeof c->subject, "%s", subject);
            snprintf(c->errstr, sizeof c->errstr, "%s", es);
        }
        return 0;
    }
    plain[n] = '\0';
    w->secret = plain;
    c->opened++;
    return 0;
}

int cmd_workflow_open_sealed(cmd_state *st, kq_keyring *keys, cmd_workflow_open_ctx *out)
{
    memset(out, 0, sizeof *out);
    out->keys = keys;
    out->st = st;
    if (keys == NULL)
        return 0;
    return kq_map_each(st->agg[T], open_one, out) != 0 ? KQ_ENOMEM : 0;
}

/* ------------------------------------------------------------------ apply */

static int wf_apply(cmd_state *st, const ev_envelope *e, const char *id, int32_t partition,
                    int64_t offset, char *errstr, size_t errlen)
{
    cmd_workflow *w = cmd_state_get(st, T, id);
    uint8_t *steps = NULL;
    size_t steps_len = 0;
    uint32_t count = 0;
    int rc;

    if (w != NULL && e->version <= w->version)
        return 1;
    if (e->payload_type == EV_WORKFLOW_CREATED) {
        const ev_workflow_created *p = &e->payload.workflow_created;
        if (e->version != 1)
            return kq_seterr(errstr, errlen, KQ_ECORRUPT,
                             "workflow %s: WorkflowCreated with version %" PRId64, id, e->version);
        if ((rc = steps_of(&p->steps, &steps, &steps_len, &count, errstr, errlen)) != 0)
            return rc == KQ_ENOMEM ? rc : KQ_ECORRUPT;
        if ((w = cmd_state_put(st, T, id, NULL)) == NULL) {
            free(steps);
            return KQ_ENOMEM;
        }
        wf_clear(w);
        w->steps = steps;
        w->steps_len = steps_len;
        w->step_count = count;
        w->enabled = p->enabled;
        w->deleted = 0;
        if (cmd_str_set_ev(&w->name, p->name) != 0 ||
            cmd_str_set_ev(&w->secret, p->webhook_secret) != 0)
            return KQ_ENOMEM;
        wf_seal(st->keys, id, w);
    } else {
        if (w == NULL)
            return kq_seterr(errstr, errlen, KQ_ECORRUPT, "workflow %s: %s of an unknown workflow",
                             id, ev_event_type_name(e->payload_type));
        if (e->version != w->version + 1)
            return kq_seterr(errstr, errlen, KQ_ECORRUPT,
                             "workflow %s: version %" PRId64 " follows %" PRId64 " (gap)", id,
                             e->version, w->version);
        switch (e->payload_type) {
        case EV_WORKFLOW_UPDATED: {
            const ev_workflow_updated *p = &e->payload.workflow_updated;
            if (p->steps.present) {
                if ((rc = steps_of(&p->steps, &steps, &steps_len, &count, errstr, errlen)) != 0)
                    return rc == KQ_ENOMEM ? rc : KQ_ECORRUPT;
                free(w->steps);
                w->steps = steps;
                w->steps_len = steps_len;
                w->step_count = count;
            }
            if ((p->name.ptr != NULL && cmd_str_set_ev(&w->name, p->name) != 0) ||
                (p->webhook_secret.ptr != NULL &&
                 cmd_str_set_ev(&w->secret, p->webhook_secret) != 0))
                return KQ_ENOMEM;
            if (p->webhook_secret.ptr != NULL)
                wf_seal(st->keys, id, w);
            break;
        }
        case EV_WORKFLOW_ENABLED:
            w->enabled = 1;
            break;
        case EV_WORKFLOW_DISABLED:
            w->enabled = 0;
            break;
        case EV_WORKFLOW_DELETED:
            w->deleted = 1;
            break;
        default:
            return kq_seterr(errstr, errlen, KQ_ECORRUPT, "workflow %s: unexpected event type %d",
                             id, (int)e->payload_type);
        }
    }
    w->version = e->version;
    w->partition = partition;
    w->offset = offset;
    return 0;
}

/* ------------------------------------------------------------------ snapshot record */

static int wf_snap_put(cmd_delta *d, const char *id, const void *val)
{
    const cmd_workflow *w = val;
    size_t nl = w->name ? strlen(w->name) : 0, sl = w->secret ? strlen(w->secret) : 0;
    const void *sp = w->secret;
    cmd_snap_wf h;
    cmd_piece p[4];

    memset(&h, 0, sizeof h);
    h.version = w->version;
    h.offset = w->offset;
    h.partition = w->partition;
    h.deleted = w->deleted;
    h.enabled = w->enabled;
    h.step_count = w->step_count;
    h.name_len = (uint32_t)nl;
    if (w->sealed != NULL) { /* sealed (or loaded sealed and not opened yet) */
        h.flags = CMD_SNAP_WF_SEALED;
        sp = w->sealed;
        sl = w->sealed_len;
    } else if (w->seal_failed) { /* never plain: the load refuses it */
        h.flags = CMD_SNAP_WF_WITHHELD;
        sl = 0;
    }
    h.secret_len = (uint32_t)sl;
    h.steps_len = (uint32_t)w->steps_len;
    p[0] = (cmd_piece){&h, sizeof h};
    p[1] = (cmd_piece){w->name, nl};
    p[2] = (cmd_piece){sp, sl};
    p[3] = (cmd_piece){w->steps, w->steps_len};
    return cmd_delta_put(d, 'w', id, p, 4);
}

static int wf_snap_load(cmd_state *st, const char *id, const void *rec, size_t len, char *errstr,
                        size_t errlen)
{
    cmd_snap_wf h;
    cmd_workflow *w;
    const char *s = (const char *)rec + sizeof h;

    if (len < sizeof h)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "workflow %s", id);
    memcpy(&h, rec, sizeof h);
    if ((uint64_t)h.name_len + h.secret_len + h.steps_len != len - sizeof h)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "workflow %s", id);
    if ((w = cmd_state_put(st, T, id, NULL)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    wf_clear(w);
    memset(w, 0, sizeof *w);
    w->version = h.version;
    w->offset = h.offset;
    w->partition = h.partition;
    w->deleted = h.deleted;
    w->enabled = h.enabled;
    w->step_count = h.step_count;
    if (h.flags == CMD_SNAP_WF_WITHHELD || h.flags > CMD_SNAP_WF_SEALED ||
        (h.flags == CMD_SNAP_WF_SEALED && h.secret_len < KQ_CRYPTO_SEAL_OVERHEAD))
        return kq_seterr(errstr, errlen, KQ_ECORRUPT,
                         "workflow %s: its secret is not in the snapshot", id);
    w->name = strndup(s, h.name_len);
    if (w->name == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    if (h.flags == CMD_SNAP_WF_SEALED) { /* opened once the keys are read */
        if ((w->sealed = malloc(h.secret_len)) == NULL)
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        memcpy(w->sealed, s + h.name_len, h.secret_len);
        w->sealed_len = h.secret_len;
    } else if ((w->secret = strndup(s + h.name_len, h.secret_len)) == NULL) {
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    if (h.steps_len > 0) {
        if ((w->steps = malloc(h.steps_len)) == NULL)
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        memcpy(w->steps, s + h.name_len + h.secret_len, h.steps_len);
        w->steps_len = h.steps_len;
    }
    return 0;
}

/* ------------------------------------------------------------------ answers */

/* A create, or an update that set a generated secret (rotate_secret), shows
 * the secret; a replay shows the workflow's current one. */
static const char *wf_answer_secret(const cmd_state *st, const cmd_command *c, const char *id,
                                    int replay)
{
    const cmd_workflow *w;

    if (c->kind != CMD_WF_CREATE && !(c->kind == CMD_WF_UPDATE && c->secret_generated))
        return NULL;
    if (!replay)
        return c->secret;
    w = cmd_state_workflow(st, id);
    return w != NULL && !w->deleted ? w->secret : NULL;
}

const cmd_aggregate cmd_workflow_type = {
    .type = EV_AGG_WORKFLOW,
    .topic = CMD_TOPIC_WORKFLOW,
    .name = "workflow",
    .snap_kind = 'w',
    .value_size = sizeof(cmd_workflow),
    .clear = wf_clear,
    .copy = wf_copy,
    .parse = wf_parse,
    .decide = wf_decide,
    .build = wf_build,
    .apply = wf_apply,
    .position = wf_position,
    .snap_put = wf_snap_put,
    .snap_load = wf_snap_load,
    .answer_secret = wf_answer_secret,
};
