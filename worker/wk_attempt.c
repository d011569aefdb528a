/*
 * wk_attempt.c — an attempt's action built from the run's RunStarted, and
 * its record (wk_attempt.h).
 */
#include "wk_attempt.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ev_action.h"
#include "ev_codec.h"
#include "ev_secret.h"
#include "kq_err.h"

static char *dup_str(ev_str s)
{
    char *p = malloc(s.len + 1);

    if (p) {
        memcpy(p, s.ptr ? s.ptr : "", s.len);
        p[s.len] = '\0';
    }
    return p;
}

/* Find a header value (case-insensitive) among the action's headers. */
static const char *header_value(const wk_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(h[i].name, name) == 0)
            return h[i].value;
    return NULL;
}

/* Render template `t` (a view into the RunStarted) into *out (ev_action.h). */
static int render(ev_str t, const json_t *payload, ev_tpl_mode mode, char **out, size_t *outlen,
                  char *errstr, size_t errlen)
{
    int rc =
        ev_template_render(t.ptr ? t.ptr : "", t.len, payload, mode, out, outlen, errstr, errlen);

    return rc == KQ_ENOMEM ? rc : rc != 0 ? WK_ACTION_UNBUILDABLE : 0;
}

static int build_http(wk_action *a, const ev_http_action *h, const json_t *payload, char *errstr,
                      size_t errlen)
{
    wk_http_request *req = &a->http;
    size_t nh = 0, body_len = 0;
    const char *ct;
    char why[256];
    int rc;

    a->kind = WK_ACTION_HTTP;
    if (ev_url_check(h->url.ptr ? h->url.ptr : "", h->url.len, why, sizeof why) != 0) {
        kq_seterr(errstr, errlen, KQ_EINVAL, "url: %s", why);
        return WK_ACTION_UNBUILDABLE;
    }
    a->url = dup_str(h->url);
    a->nstrs = h->headers.count * 2;
    if (a->url == NULL || (a->nstrs && (a->strs = calloc(a->nstrs, sizeof *a->strs)) == NULL))
        return KQ_ENOMEM;
    if (h->headers.count > WK_REQUEST_HEADERS_MAX) {
        kq_seterr(errstr, errlen, KQ_EINVAL, "too many headers");
        return WK_ACTION_UNBUILDABLE;
    }
    for (uint32_t i = 0; i < h->headers.count; i++) {
        ev_http_header hd;
        if (ev_header_list_get(&h->headers, i, &hd) != 0 ||
            (a->strs[2 * i] = dup_str(hd.name)) == NULL ||
            (a->strs[2 * i + 1] = dup_str(hd.value)) == NULL)
            return KQ_ENOMEM;
        a->hdrs[nh].name = a->strs[2 * i];
        a->hdrs[nh].value = a->strs[2 * i + 1];
        nh++;
    }
    ct = header_value(a->hdrs, nh, "Content-Type");
    if (h->body_template.ptr) {
        rc = render(h->body_template, payload,
                    ct == NULL || ev_template_is_json_type(ct) ? EV_TPL_JSON : EV_TPL_TEXT,
                    &a->body, &body_len, errstr, errlen);
        if (rc != 0)
            return rc;
    } else if (h->method != EV_HTTP_GET) {
        /* no template: the trigger payload is the body */
        a->body = payload ? json_dumps(payload, JSON_COMPACT) : strdup("{}");
        if (a->body == NULL)
            return KQ_ENOMEM;
        body_len = strlen(a->body);
    }
    a->has_dest = wk_breaker_key(a->url, a->dest, sizeof a->dest, NULL, 0) == 0;
    req->method = ev_http_method_name(h->method);
    if (req->method == NULL) /* not a known method: POST, the schema default */
        req->method = "POST";
    req->url = a->url;
    req->headers = a->hdrs;
    req->n_headers = nh;
    req->body = a->body;
    req->body_len = body_len;
    req->delivery_id = a->delivery_id;
    req->secret = a->secret;
    req->secret_len = a->secret ? strlen(a->secret) : 0;
    return 0;
}

static int build_email(wk_action *a, const ev_email_action *m, const json_t *payload,
                       const wk_smtp_cfg *smtp, char *errstr, size_t errlen)
{
    wk_smtp_request *req = &a->smtp;
    size_t len = 0;
    int rc;

    a->kind = WK_ACTION_EMAIL;
    if (smtp == NULL || smtp->url == NULL) {
        kq_seterr(errstr, errlen, KQ_EINVAL, "email actions need KCQRS_WORKER_SMTP_URL");
        return WK_ACTION_UNBUILDABLE;
    }
    a->nstrs = m->to.count;
    if (a->nstrs == 0 || a->nstrs > WK_SMTP_MAX_RCPT) {
        a->nstrs = 0;
        kq_seterr(errstr, errlen, KQ_EINVAL, "email action without a valid recipient list");
        return WK_ACTION_UNBUILDABLE;
    }
    if ((a->strs = calloc(a->nstrs, sizeof *a->strs)) == NULL)
        return KQ_ENOMEM;
    for (uint32_t i = 0; i < m->to.count; i++) {
        ev_str s;
        if (ev_str_list_get(&m->to, i, &s) != 0 || (a->strs[i] = dup_str(s)) == NULL)
            return KQ_ENOMEM;
    }
    if ((rc = render(m->subject, payload, EV_TPL_HEADER, &a->subject, &len, errstr, errlen)) != 0)
        return rc;
    if (m->body_template.ptr &&
        (rc = render(m->body_template, payload, EV_TPL_TEXT, &a->body, &len, errstr, errlen)) != 0)
        return rc;
    a->has_dest = wk_breaker_key(smtp->url, a->dest, sizeof a->dest, NULL, 0) == 0;
    req->url = smtp->url;
    req->from = smtp->from;
    req->to = (const char *const *)a->strs;
    req->n_to = a->nstrs;
    req->subject = a->subject;
    req->body = a->body;
    req->delivery_id = a->delivery_id;
    req->username = smtp->user;
    req->password = smtp->password;
    return 0;
}

int wk_action_build(wk_action *a, const uint8_t *started, size_t len, const char *run_id,
                    uint32_t step, const wk_smtp_cfg *smtp, struct kq_keyring *keys, char *errstr,
                    size_t errlen)
{
    uint8_t secret[EV_SECRET_BUF];
    ev_envelope env;
    ev_step st;
    const ev_run_started *rs;
    json_t *payload = NULL;
    char err[256], subject[WK_KEY_SUBJECT_MAX] = "";
    int rc = WK_ACTION_UNBUILDABLE;

    memset(a, 0, sizeof *a);
    if (snprintf(a->delivery_id, sizeof a->delivery_id, "%s.%u", run_id, step) >=
        (int)sizeof a->delivery_id) {
        kq_seterr(errstr, errlen, KQ_EINVAL, "delivery id too long");
        goto out;
    }
    if (ev_envelope_decode(started, len, &env, err, sizeof err) != 0) {
        kq_seterr(errstr, errlen, KQ_EINVAL, "RunStarted does not decode");
        goto out;
    }
    if ((rc = ev_secret_open(&env, keys, secret, sizeof secret, err, sizeof err)) != 0) {
        kq_seterr(errstr, errlen, rc, "the signing secret: %s", err);
        if (rc == KQ_ENOTFOUND && keys != NULL && ev_secret_sealed(&env) &&
            ev_secret_subject(&env, subject, sizeof subject) == 0 &&
            !kq_keyring_erased(keys, subject))
            rc = WK_ACTION_KEY_MISSING; /* lost, not erased: wait for it, do not fail the run */
        else if (rc != KQ_EKAFKA && rc != KQ_ETIMEDOUT)
            rc = WK_ACTION_UNBUILDABLE;
        goto out;
    }
    rc = WK_ACTION_UNBUILDABLE;
    rs = &env.payload.run_started;
    if (env.payload_type != EV_RUN_STARTED || !rs->steps.present ||
        ev_step_list_get(&rs->steps, step, &st) != 0) {
        kq_seterr(errstr, errlen, KQ_EINVAL, "RunStarted carries no definition of this step");
        goto out;
    }
    if (wk_delivery_id_check(a->delivery_id, errstr, errlen) != 0)
        goto out;
    if (rs->payload_json.ptr && rs->payload_json.len) {
        json_error_t je;
        payload = json_loadb(rs->payload_json.ptr, rs->payload_json.len, 0, &je);
        if (payload == NULL) {
            kq_seterr(errstr, errlen, KQ_EINVAL, "payload is not JSON: %s", je.text);
            goto out;
        }
    }
    if (rs->signing_secret.ptr && rs->signing_secret.len &&
        (a->secret = dup_str(rs->signing_secret)) == NULL) {
        rc = KQ_ENOMEM;
        goto out;
    }
    if (st.action_type == EV_ACTION_HTTP)
        rc = build_http(a, &st.action.http, payload, errstr, errlen);
    else if (st.action_type == EV_ACTION_EMAIL)
        rc = build_email(a, &st.action.email, payload, smtp, errstr, errlen);
    else
        kq_seterr(errstr, errlen, KQ_EINVAL, "unknown action type");
out:
    json_decref(payload);
    if (rc != 0)
        wk_action_free(a);
    if (rc == WK_ACTION_KEY_MISSING)
        memcpy(a->key_subject, subject, sizeof a->key_subject);
    return rc;
}

int wk_action_submit(const wk_action *a, wk_engine *e, wk_done_fn cb, void *arg, char *errstr,
                     size_t errlen)
{
    if (a->kind == WK_ACTION_HTTP)
        return wk_engine_submit_http(e, &a->http, cb, arg, errstr, errlen);
    if (a->kind == WK_ACTION_EMAIL)
        return wk_engine_submit_smtp(e, &a->smtp, cb, arg, errstr, errlen);
    return kq_seterr(errstr, errlen, KQ_EINVAL, "no action");
}

void wk_action_free(wk_action *a)
{
    if (a == NULL)
        return;
    if (a->strs)
        for (size_t i = 0; i < a->nstrs; i++)
            free(a->strs[i]);
    free(a->strs);
    free(a->url);
    free(a->body);
    free(a->subject);
    free(a->secret);
    memset(a, 0, sizeof *a);
}

void wk_attempt_clean_text(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            *s = '?';
}

void wk_attempt_failed(const char *why, wk_attempt_result *res)
{
    memset(res, 0, sizeof *res);
    res->outcome = WK_OUTCOME_FAILED;
    res->next_delay_ms = -1;
    res->status_code = -1;
    res->has_error = 1;
    res->reason = "not sent";
    snprintf(res->error, sizeof res->error, "%s", why);
    wk_attempt_clean_text(res->error);
}

void wk_attempt_conclude(const wk_policy *p, const wk_outcome *o, unsigned attempt, wk_rng_fn rng,
                         void *rng_arg, wk_attempt_result *res)
{
    wk_decision d = wk_policy_decide(p, o, attempt, rng, rng_arg);

    memset(res, 0, sizeof *res);
    res->next_delay_ms = -1;
    res->status_code = -1;
    res->reason = d.reason;
    if (o->result == WK_R_RESPONSE || (o->result == WK_R_TOO_LARGE && o->status_code > 0))
        res->status_code = o->status_code;
    switch (d.verdict) {
    case WK_VERDICT_SUCCESS:
        res->outcome = WK_OUTCOME_SUCCEEDED;
        break;
    case WK_VERDICT_RETRY:
        res->outcome = WK_OUTCOME_RETRY;
        res->next_delay_ms = d.delay_ms;
        if (o->error[0]) {
            res->has_error = 1;
            snprintf(res->error, sizeof res->error, "%s", o->error);
        }
        break;
    default:
        res->outcome = WK_OUTCOME_FAILED;
        res->has_error = 1;
        if (o->error[0])
            snprintf(res->error, sizeof res->error, "%s (%s)", o->error, d.reason);
        else if (res->status_code >= 0)
            snprintf(res->error, sizeof res->error, "status %d (%s)", res->status_code, d.reason);
        else
            snprintf(res->error, sizeof res->error, "%s", d.reason);
        break;
    }
    wk_attempt_clean_text(res->error);
}
