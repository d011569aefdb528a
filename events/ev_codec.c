/*
 * ev_codec.c — typed encode/decode of Envelope buffers (see ev_codec.h).
 *
 * Encoding builds bottom-up, as the ev_fb builder requires: the payload's
 * strings and vectors, the payload table, the envelope's strings, then the
 * envelope. Slot numbers come from ev_schema.h, shared with the descriptors,
 * so the typed codec and the generic verifier/JSON cannot disagree on them;
 * the unit tests cross-check typed and JSON encodings of every example.
 *
 * Decoding runs ev_schema_verify() first; after that the unchecked ev_fb
 * readers are safe and every enum value is known.
 */
#include "ev_codec.h"

#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#include "ev_schema.h"
#include "kq_err.h"
#include "kq_crypto.h"

/* The typed envelope copies event_id whole; the verifier guarantees its length. */
_Static_assert(sizeof(((ev_envelope *)0)->event_id.bytes) == EV_EVENT_ID_LEN,
               "ev_uuid must hold exactly Envelope.event_id");

/* ================================================================ names */

static const uint8_t event_aggregate[EV_EVENT_TYPE_MAX + 1] = {
    [EV_EVENT_NONE] = EV_AGG_UNKNOWN,
    [EV_RESOURCE_CREATED] = EV_AGG_RESOURCE,
    [EV_RESOURCE_UPDATED] = EV_AGG_RESOURCE,
    [EV_RESOURCE_DELETED] = EV_AGG_RESOURCE,
    [EV_WORKFLOW_CREATED] = EV_AGG_WORKFLOW,
    [EV_WORKFLOW_UPDATED] = EV_AGG_WORKFLOW,
    [EV_WORKFLOW_ENABLED] = EV_AGG_WORKFLOW,
    [EV_WORKFLOW_DISABLED] = EV_AGG_WORKFLOW,
    [EV_WORKFLOW_DELETED] = EV_AGG_WORKFLOW,
    [EV_RUN_STARTED] = EV_AGG_RUN,
    [EV_STEP_ATTEMPTED] = EV_AGG_RUN,
    [EV_STEP_SUCCEEDED] = EV_AGG_RUN,
    [EV_STEP_FAILED] = EV_AGG_RUN,
    [EV_RUN_SUCCEEDED] = EV_AGG_RUN,
    [EV_RUN_FAILED] = EV_AGG_RUN,
};

const char *ev_event_type_name(ev_event_type type)
{
    if (type <= EV_EVENT_NONE || (unsigned)type > ev_schema_event.count)
        return NULL;
    return ev_schema_event.members[type - 1]->name;
}

ev_event_type ev_event_type_from_name(const char *name, size_t len)
{
    int t = name ? ev_schema_union_type(&ev_schema_event, name, len) : -1;
    return t > 0 ? (ev_event_type)t : EV_EVENT_NONE;
}

ev_aggregate_type ev_event_aggregate_type(ev_event_type type)
{
    if (type < EV_EVENT_NONE || type > EV_EVENT_TYPE_MAX)
        return EV_AGG_UNKNOWN;
    return (ev_aggregate_type)event_aggregate[type];
}

const char *ev_aggregate_type_name(ev_aggregate_type type)
{
    if ((unsigned)type >= ev_schema_aggregate_type.count)
        return NULL;
    return ev_schema_aggregate_type.values[type];
}

/* ================================================================ lists */

int ev_str_list_get(const ev_str_list *l, uint32_t i, ev_str *out)
{
    if (i >= l->count || (l->items == NULL && l->buf == NULL)) {
        out->ptr = NULL;
        out->len = 0;
        return KQ_ERANGE;
    }
    if (l->items) {
        *out = l->items[i];
    } else {
        uint32_t s = ev_fb_deref(l->buf, l->pos + 4u * i);
        out->len = ev_fb_read_u32(l->buf + s);
        out->ptr = (const char *)l->buf + s + 4;
    }
    return 0;
}

static ev_str rd_str(const uint8_t *buf, uint32_t tpos, unsigned slot)
{
    ev_str s;
    s.ptr = ev_fb_string(buf, tpos, slot, &s.len);
    return s;
}

static ev_bytes rd_bytes(const uint8_t *buf, uint32_t tpos, unsigned slot)
{
    ev_bytes v;
    uint32_t at = ev_fb_vector(buf, tpos, slot, &v.len);
    v.ptr = at ? buf + at : NULL;
    if (v.ptr == NULL)
        v.len = 0;
    return v;
}

int ev_header_list_get(const ev_header_list *l, uint32_t i, ev_http_header *out)
{
    if (i >= l->count || (l->items == NULL && l->buf == NULL)) {
        memset(out, 0, sizeof *out);
        return KQ_ERANGE;
    }
    if (l->items) {
        *out = l->items[i];
    } else {
        uint32_t t = ev_fb_deref(l->buf, l->pos + 4u * i);
        out->name = rd_str(l->buf, t, EV_SLOT_HTTP_HEADER_NAME);
        out->value = rd_str(l->buf, t, EV_SLOT_HTTP_HEADER_VALUE);
    }
    return 0;
}

/* The vector field `slot` of table `tpos` as a list (absent: present = false). */
#define RD_LIST(l, buf, tpos, slot)                                                                \
    do {                                                                                           \
        (l).items = NULL;                                                                          \
        (l).buf = (buf);                                                                           \
        (l).pos = ev_fb_vector((buf), (tpos), (slot), &(l).count);                                 \
        (l).present = (l).pos != 0;                                                                \
    } while (0)

int ev_step_list_get(const ev_step_list *l, uint32_t i, ev_step *out)
{
    const uint8_t *buf = l->buf;
    uint32_t t, a;

    memset(out, 0, sizeof *out);
    if (i >= l->count || (l->items == NULL && l->buf == NULL))
        return KQ_ERANGE;
    if (l->items) {
        *out = l->items[i];
        return 0;
    }
    t = ev_fb_deref(buf, l->pos + 4u * i);
    out->name = rd_str(buf, t, EV_SLOT_STEP_NAME);
    out->action_type = (ev_action_type)ev_fb_get_u8(buf, t, EV_SLOT_STEP_ACTION_TYPE, 0);
    a = ev_fb_table(buf, t, EV_SLOT_STEP_ACTION);
    if (out->action_type == EV_ACTION_HTTP) {
        ev_http_action *h = &out->action.http;
        h->method = (ev_http_method)ev_fb_get_u8(buf, a, EV_SLOT_HTTP_ACTION_METHOD,
                                                 EV_DEFAULT_HTTP_METHOD);
        h->url = rd_str(buf, a, EV_SLOT_HTTP_ACTION_URL);
        RD_LIST(h->headers, buf, a, EV_SLOT_HTTP_ACTION_HEADERS);
        h->body_template = rd_str(buf, a, EV_SLOT_HTTP_ACTION_BODY_TEMPLATE);
    } else if (out->action_type == EV_ACTION_EMAIL) {
        ev_email_action *m = &out->action.email;
        RD_LIST(m->to, buf, a, EV_SLOT_EMAIL_ACTION_TO);
        m->subject = rd_str(buf, a, EV_SLOT_EMAIL_ACTION_SUBJECT);
        m->body_template = rd_str(buf, a, EV_SLOT_EMAIL_ACTION_BODY_TEMPLATE);
    }
    return 0;
}

/* ================================================================ validation */

typedef struct chk {
    char path[192]; /* e.g. "payload.steps[3].action.headers[0]" */
    size_t plen;
    char *errstr;
    size_t errlen;
} chk;

/* Append "name." or "name[index]." to the path (truncated if it would not fit).
 * Called on every validation, so no printf. */
static size_t chk_push(chk *c, const char *name, long index)
{
    size_t old = c->plen, n = strlen(name);
    char num[24];
    size_t k = 0;

    if (index >= 0) {
        char rev[24];
        size_t r = 0;
        unsigned long v = (unsigned long)index;
        do {
            rev[r++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        num[k++] = '[';
        while (r)
            num[k++] = rev[--r];
        num[k++] = ']';
    }
    if (old + n + k + 2 > sizeof c->path)
        return old;
    memcpy(c->path + old, name, n);
    memcpy(c->path + old + n, num, k);
    c->path[old + n + k] = '.';
    c->path[old + n + k + 1] = '\0';
    c->plen = old + n + k + 1;
    return old;
}

static void chk_pop(chk *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}

__attribute__((format(printf, 3, 4))) static int cfail(chk *c, const char *field, const char *fmt,
                                                       ...)
{
    char what[200];
    va_list ap;

    int plen = (int)c->plen;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (field[0] == '\0' && plen > 0 && c->path[plen - 1] == '.')
        plen--; /* "payload.steps[1]: ..." rather than "payload.steps[1].: ..." */
    return kq_seterr(c->errstr, c->errlen, KQ_EINVAL, "%.*s%s: %s", plen, c->path, field, what);
}

enum { OPTIONAL = 0, REQUIRED = 1 };
enum { BYTES = 0, CHARS = 1 };

static uint32_t utf8_chars(ev_str s)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s.len; i++)
        n += ((unsigned char)s.ptr[i] & 0xc0) != 0x80;
    return n;
}

/* Present if required; valid UTF-8; min..max bytes or characters. */
static int check_text(chk *c, const char *field, ev_str s, int required, uint32_t min, uint32_t max,
                      int unit)
{
    uint32_t n;

    if (s.ptr == NULL)
        return required ? cfail(c, field, "required") : 0;
    if (!ev_fb_utf8_valid(s.ptr, s.len))
        return cfail(c, field, "invalid UTF-8");
    n = unit == CHARS ? utf8_chars(s) : s.len;
    if (n < min || n > max)
        return cfail(c, field, "must be %u..%u %s (got %u)", min, max,
                     unit == CHARS ? "characters" : "bytes", n);
    return 0;
}

/* A sealed value (lib/kq_crypto.h): absent, or the seal of a min..max byte plain text. */
static int check_sealed_n(chk *c, const char *field, ev_bytes v, uint32_t min, uint32_t max)
{
    if (v.ptr == NULL)
        return 0;
    if (v.len < KQ_CRYPTO_SEAL_OVERHEAD + min || v.len > KQ_CRYPTO_SEAL_OVERHEAD + max)
        return cfail(c, field, "must be %u..%u bytes (got %u)", KQ_CRYPTO_SEAL_OVERHEAD + min,
                     KQ_CRYPTO_SEAL_OVERHEAD + max, v.len);
    return 0;
}

/* A sealed secret: the seal of a 1..EV_META_MAX byte secret. */
static int check_sealed(chk *c, const char *field, ev_bytes v)
{
    return check_sealed_n(c, field, v, 1, EV_META_MAX);
}

/* Sealed personal data (ev_pii.h): a name (1..255 characters, at most 4 bytes
 * each) or a description (0..4096 characters). */
static int check_sealed_pii(chk *c, ev_bytes name, ev_bytes description)
{
    int rc;
    if ((rc = check_sealed_n(c, "name_sealed", name, 1, EV_NAME_MAX_CHARS * 4)) != 0)
        return rc;
    return check_sealed_n(c, "description_sealed", description, 0, EV_DESCRIPTION_MAX_CHARS * 4);
}

/* No byte in `bad` (a set of ASCII bytes; NUL always counts). */
static int check_no_bytes(chk *c, const char *field, ev_str s, const char *bad, const char *what)
{
    for (uint32_t i = 0; i < s.len; i++)
        if (s.ptr[i] == '\0' || strchr(bad, s.ptr[i]) != NULL)
            return cfail(c, field, "must not contain %s", what);
    return 0;
}

/* [A-Za-z0-9._-] */
static const uint8_t id_char[256] = {
    ['-'] = 1, ['.'] = 1, ['_'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
    ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1,
    ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1,
    ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1,
    ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1,
    ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,
    ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1,
    ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1,
    ['z'] = 1,
};

static int check_id(chk *c, const char *field, ev_str s)
{
    unsigned ok = 1;

    if (s.ptr == NULL)
        return cfail(c, field, "required");
    if (s.len < 1 || s.len > EV_ID_MAX)
        return cfail(c, field, "must be 1..%d characters (got %u)", EV_ID_MAX, s.len);
    for (uint32_t i = 0; i < s.len; i++)
        ok &= id_char[(unsigned char)s.ptr[i]];
    if (!ok)
        return cfail(c, field, "must match [A-Za-z0-9._-]{1,%d}", EV_ID_MAX);
    return 0;
}

static int check_header_name(chk *c, ev_str s)
{
    int rc;

    if ((rc = check_text(c, "name", s, REQUIRED, 1, EV_HEADER_NAME_MAX, BYTES)))
        return rc;
    for (uint32_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              (ch < 0x80 && strchr("!#$%&'*+-.^_`|~", ch) != NULL)))
            return cfail(c, "name", "must be an HTTP token (RFC 9110)");
    }
    return 0;
}

static int check_url(chk *c, ev_str s)
{
    int rc;

    if ((rc = check_text(c, "url", s, REQUIRED, 1, EV_URL_MAX, BYTES)))
        return rc;
    if (!((s.len > 7 && strncasecmp(s.ptr, "http://", 7) == 0) ||
          (s.len > 8 && strncasecmp(s.ptr, "https://", 8) == 0)))
        return cfail(c, "url", "must start with http:// or https://");
    for (uint32_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if (ch <= 0x20 || ch == 0x7f)
            return cfail(c, "url", "must not contain spaces or control characters");
    }
    return 0;
}

static int check_email(chk *c, ev_str s)
{
    const char *at;
    int rc;

    if ((rc = check_text(c, "", s, REQUIRED, 3, EV_EMAIL_MAX, BYTES)))
        return rc;
    if ((rc = check_no_bytes(c, "", s, " \t\r\n<>,;", "spaces, CR, LF, <, >, comma or ;")))
        return rc;
    at = memchr(s.ptr, '@', s.len);
    if (at == NULL || at == s.ptr || at == s.ptr + s.len - 1)
        return cfail(c, "", "must be an address like user@example.com");
    return 0;
}

static int check_steps(chk *c, const ev_step_list *l)
{
    int rc = 0;

    if (l->count > EV_MAX_STEPS)
        return cfail(c, "steps", "at most %d steps (got %u)", EV_MAX_STEPS, l->count);
    for (uint32_t i = 0; rc == 0 && i < l->count; i++) {
        size_t old = chk_push(c, "steps", (long)i);
        ev_step st;

        if (ev_step_list_get(l, i, &st)) {
            rc = cfail(c, "", "no such element (list has neither items nor buffer)");
            goto next;
        }
        if ((rc = check_text(c, "name", st.name, OPTIONAL, 1, EV_META_MAX, BYTES)))
            goto next;
        if (st.action_type == EV_ACTION_HTTP) {
            const ev_http_action *h = &st.action.http;
            size_t o2 = chk_push(c, "action", -1);
            if ((unsigned)h->method >= ev_schema_http_method.count)
                rc = cfail(c, "method", "unknown HTTP method %d", (int)h->method);
            else if ((rc = check_url(c, h->url)) == 0 &&
                     (rc = check_text(c, "body_template", h->body_template, OPTIONAL, 0,
                                      EV_TEMPLATE_MAX, BYTES)) == 0) {
                if (h->headers.count > EV_MAX_HEADERS)
                    rc = cfail(c, "headers", "at most %d headers (got %u)", EV_MAX_HEADERS,
                               h->headers.count);
                for (uint32_t k = 0; rc == 0 && k < h->headers.count; k++) {
                    size_t o3 = chk_push(c, "headers", (long)k);
                    ev_http_header hd;
                    if (ev_header_list_get(&h->headers, k, &hd))
                        rc = cfail(c, "", "no such element");
                    else if ((rc = check_header_name(c, hd.name)) == 0 &&
                             (rc = check_text(c, "value", hd.value, REQUIRED, 0,
                                              EV_HEADER_VALUE_MAX, BYTES)) == 0)
                        rc = check_no_bytes(c, "value", hd.value, "\r\n", "CR, LF or NUL");
                    chk_pop(c, o3);
                }
            }
            chk_pop(c, o2);
        } else if (st.action_type == EV_ACTION_EMAIL) {
            const ev_email_action *m = &st.action.email;
            size_t o2 = chk_push(c, "action", -1);
            if (m->to.count < 1 || m->to.count > EV_MAX_RECIPIENTS)
                rc = cfail(c, "to", "must have 1..%d recipients (got %u)", EV_MAX_RECIPIENTS,
                           m->to.count);
            for (uint32_t k = 0; rc == 0 && k < m->to.count; k++) {
                size_t o3 = chk_push(c, "to", (long)k);
                ev_str to;
                if (ev_str_list_get(&m->to, k, &to))
                    rc = cfail(c, "", "no such element");
                else
                    rc = check_email(c, to);
                chk_pop(c, o3);
            }
            if (rc == 0 &&
                (rc = check_text(c, "subject", m->subject, REQUIRED, 0, EV_SUBJECT_MAX, BYTES)) ==
                    0 &&
                (rc = check_no_bytes(c, "subject", m->subject, "\r\n", "CR, LF or NUL")) == 0)
                rc = check_text(c, "body_template", m->body_template, OPTIONAL, 0, EV_TEMPLATE_MAX,
                                BYTES);
            chk_pop(c, o2);
        } else {
            rc = cfail(c, "action_type", "must be HttpAction or EmailAction (got %d)",
                       (int)st.action_type);
        }
    next:
        chk_pop(c, old);
    }
    return rc;
}

static int check_payload(chk *c, const ev_envelope *e)
{
    int rc = 0;

    switch (e->payload_type) {
    case EV_RESOURCE_CREATED: {
        const ev_resource_created *p = &e->payload.resource_created;
        if ((rc = check_text(c, "name", p->name, REQUIRED, 1, EV_NAME_MAX_CHARS, CHARS)) ||
            (rc = check_text(c, "description", p->description, OPTIONAL, 0,
                             EV_DESCRIPTION_MAX_CHARS, CHARS)) ||
            (rc = check_sealed_pii(c, p->name_sealed, p->description_sealed)))
            return rc;
        if ((unsigned)p->status >= ev_schema_resource_status.count)
            return cfail(c, "status", "unknown status %d", (int)p->status);
        return 0;
    }
    case EV_RESOURCE_UPDATED: {
        const ev_resource_updated *p = &e->payload.resource_updated;
        if (!p->name.ptr && !p->description.ptr && !p->has_status && !p->name_sealed.ptr &&
            !p->description_sealed.ptr)
            return cfail(c, "", "an update must change at least one field");
        if ((rc = check_text(c, "name", p->name, OPTIONAL, 1, EV_NAME_MAX_CHARS, CHARS)) ||
            (rc = check_text(c, "description", p->description, OPTIONAL, 0,
                             EV_DESCRIPTION_MAX_CHARS, CHARS)) ||
            (rc = check_sealed_pii(c, p->name_sealed, p->description_sealed)))
            return rc;
        if (p->has_status && (unsigned)p->status >= ev_schema_resource_status.count)
            return cfail(c, "status", "unknown status %d", (int)p->status);
        return 0;
    }
    case EV_RESOURCE_DELETED:
        return check_text(c, "reason", e->payload.resource_deleted.reason, OPTIONAL, 0, EV_TEXT_MAX,
                          BYTES);
    case EV_WORKFLOW_CREATED: {
        const ev_workflow_created *p = &e->payload.workflow_created;
        if ((rc = check_text(c, "name", p->name, REQUIRED, 1, EV_NAME_MAX_CHARS, CHARS)) ||
            (rc = check_text(c, "webhook_secret", p->webhook_secret, REQUIRED, 1, EV_META_MAX,
                             BYTES)) ||
            (rc = check_sealed(c, "webhook_secret_sealed", p->webhook_secret_sealed)))
            return rc;
        if (!p->steps.present)
            return cfail(c, "steps", "required");
        return check_steps(c, &p->steps);
    }
    case EV_WORKFLOW_UPDATED: {
        const ev_workflow_updated *p = &e->payload.workflow_updated;
        if (!p->name.ptr && !p->webhook_secret.ptr && !p->steps.present &&
            !p->webhook_secret_sealed.ptr)
            return cfail(c, "", "an update must change at least one field");
        if ((rc = check_text(c, "name", p->name, OPTIONAL, 1, EV_NAME_MAX_CHARS, CHARS)) ||
            (rc = check_text(c, "webhook_secret", p->webhook_secret, OPTIONAL, 1, EV_META_MAX,
                             BYTES)) ||
            (rc = check_sealed(c, "webhook_secret_sealed", p->webhook_secret_sealed)))
            return rc;
        return p->steps.present ? check_steps(c, &p->steps) : 0;
    }
    case EV_WORKFLOW_ENABLED:
    case EV_WORKFLOW_DISABLED:
    case EV_RUN_SUCCEEDED:
        return 0;
    case EV_WORKFLOW_DELETED:
        return check_text(c, "reason", e->payload.workflow_deleted.reason, OPTIONAL, 0, EV_TEXT_MAX,
                          BYTES);
    case EV_RUN_STARTED: {
        const ev_run_started *p = &e->payload.run_started;
        if ((rc = check_id(c, "workflow_id", p->workflow_id)))
            return rc;
        if (p->workflow_version < 1)
            return cfail(c, "workflow_version", "must be >= 1 (got %lld)",
                         (long long)p->workflow_version);
        if ((unsigned)p->trigger >= ev_schema_trigger_kind.count)
            return cfail(c, "trigger", "unknown trigger %d", (int)p->trigger);
        if ((rc = check_text(c, "payload_json", p->payload_json, OPTIONAL, 0, EV_PAYLOAD_JSON_MAX,
                             BYTES)) ||
            (rc = check_text(c, "signing_secret", p->signing_secret, OPTIONAL, 1, EV_META_MAX,
                             BYTES)) ||
            (rc = check_sealed(c, "signing_secret_sealed", p->signing_secret_sealed)))
            return rc;
        if (!p->steps.present)
            return 0;
        if (p->steps.count != p->step_count)
            return cfail(c, "steps", "%u steps but step_count %u", (unsigned)p->steps.count,
                         (unsigned)p->step_count);
        return check_steps(c, &p->steps);
    }
    case EV_STEP_ATTEMPTED: {
        const ev_step_attempted *p = &e->payload.step_attempted;
        if (p->attempt < 1)
            return cfail(c, "attempt", "must be >= 1");
        if (p->has_status_code && (p->status_code < 100 || p->status_code > 999))
            return cfail(c, "status_code", "must be 100..999 (got %d)", (int)p->status_code);
        if (p->duration_ms < 0)
            return cfail(c, "duration_ms", "must be >= 0");
        if (p->has_next_delay_ms && p->next_delay_ms < 0)
            return cfail(c, "next_delay_ms", "must be >= 0");
        if ((rc = check_text(c, "error", p->error, OPTIONAL, 0, EV_TEXT_MAX, BYTES)))
            return rc;
        return check_text(c, "delivery_id", p->delivery_id, OPTIONAL, 1, EV_META_MAX, BYTES);
    }
    case EV_STEP_SUCCEEDED: {
        const ev_step_succeeded *p = &e->payload.step_succeeded;
        if (p->attempt < 1)
            return cfail(c, "attempt", "must be >= 1");
        if (p->has_status_code && (p->status_code < 100 || p->status_code > 999))
            return cfail(c, "status_code", "must be 100..999 (got %d)", (int)p->status_code);
        return 0;
    }
    case EV_STEP_FAILED: {
        const ev_step_failed *p = &e->payload.step_failed;
        if (p->attempt < 1)
            return cfail(c, "attempt", "must be >= 1");
        return check_text(c, "error", p->error, OPTIONAL, 0, EV_TEXT_MAX, BYTES);
    }
    case EV_RUN_FAILED:
        return check_text(c, "error", e->payload.run_failed.error, OPTIONAL, 0, EV_TEXT_MAX, BYTES);
    case EV_EVENT_NONE:
        break;
    }
    return kq_seterr(c->errstr, c->errlen, KQ_EINVAL, "payload_type: unknown event type %d",
                     (int)e->payload_type);
}

int ev_envelope_validate(const ev_envelope *e, char *errstr, size_t errlen)
{
    chk c;
    int rc;

    c.plen = 0;
    c.path[0] = '\0';
    c.errstr = errstr;
    c.errlen = errlen;

    if (e->payload_type <= EV_EVENT_NONE || e->payload_type > EV_EVENT_TYPE_MAX)
        return cfail(&c, "payload_type", "unknown event type %d", (int)e->payload_type);
    if (e->aggregate_type != ev_event_aggregate_type(e->payload_type))
        return cfail(&c, "aggregate_type", "must be %s for %s",
                     ev_aggregate_type_name(ev_event_aggregate_type(e->payload_type)),
                     ev_event_type_name(e->payload_type));
    if ((rc = check_id(&c, "aggregate_id", e->aggregate_id)))
        return rc;
    if (e->version < 1)
        return cfail(&c, "version", "must be >= 1 (got %lld)", (long long)e->version);
    if (e->occurred_at_us < 0)
        return cfail(&c, "occurred_at_us", "must be >= 0 (got %lld)", (long long)e->occurred_at_us);
    if ((rc = check_text(&c, "actor", e->actor, OPTIONAL, 1, EV_META_MAX, BYTES)) ||
        (rc = check_text(&c, "command_id", e->command_id, OPTIONAL, 1, EV_META_MAX, BYTES)) ||
        (rc = check_text(&c, "correlation_id", e->correlation_id, OPTIONAL, 1, EV_META_MAX,
                         BYTES)) ||
        (rc = check_text(&c, "causation_id", e->causation_id, OPTIONAL, 1, EV_META_MAX, BYTES)))
        return rc;
    if (e->schema_version < 1)
        return cfail(&c, "schema_version", "must be >= 1");
    if (e->prev_hash.ptr != NULL && e->prev_hash.len != EV_HASH_LEN)
        return cfail(&c, "prev_hash", "must be %d bytes (got %u)", EV_HASH_LEN, e->prev_hash.len);
    if (e->command_hash.ptr != NULL && e->command_hash.len != EV_HASH_LEN)
        return cfail(&c, "command_hash", "must be %d bytes (got %u)", EV_HASH_LEN,
                     e->command_hash.len);
    chk_push(&c, "payload", -1);
    return check_payload(&c, e);
}

/* ================================================================ encode */

static ev_fb_ref put_str(ev_fb_builder *b, ev_str s)
{
    return s.ptr ? ev_fb_create_string(b, s.ptr, s.len) : 0;
}

static ev_fb_ref put_bytes(ev_fb_builder *b, ev_bytes v)
{
    return v.ptr ? ev_fb_create_vector(b, v.ptr, v.len, 1, 1) : 0;
}

static void add_ref(ev_fb_builder *b, unsigned slot, ev_fb_ref r)
{
    ev_fb_table_add_ref(b, slot, r);
}

static ev_fb_ref enc_http(ev_fb_builder *b, const ev_http_action *h)
{
    ev_fb_ref hdrs[EV_MAX_HEADERS], url, body, vec = 0;
    uint32_t n = h->headers.count;

    for (uint32_t i = 0; i < n; i++) {
        ev_http_header hd;
        ev_fb_ref name, value;
        ev_header_list_get(&h->headers, i, &hd);
        name = put_str(b, hd.name);
        value = put_str(b, hd.value);
        ev_fb_table_start(b);
        add_ref(b, EV_SLOT_HTTP_HEADER_NAME, name);
        add_ref(b, EV_SLOT_HTTP_HEADER_VALUE, value);
        hdrs[i] = ev_fb_table_end(b);
    }
    if (h->headers.present)
        vec = ev_fb_create_ref_vector(b, hdrs, n);
    url = put_str(b, h->url);
    body = put_str(b, h->body_template);
    ev_fb_table_start(b);
    add_ref(b, EV_SLOT_HTTP_ACTION_URL, url);
    add_ref(b, EV_SLOT_HTTP_ACTION_HEADERS, vec);
    add_ref(b, EV_SLOT_HTTP_ACTION_BODY_TEMPLATE, body);
    ev_fb_add_u8(b, EV_SLOT_HTTP_ACTION_METHOD, (uint8_t)h->method, EV_DEFAULT_HTTP_METHOD);
    return ev_fb_table_end(b);
}

static ev_fb_ref enc_email(ev_fb_builder *b, const ev_email_action *m)
{
    ev_fb_ref to[EV_MAX_RECIPIENTS], vec, subject, body;
    uint32_t n = m->to.count;

    for (uint32_t i = 0; i < n; i++) {
        ev_str s;
        ev_str_list_get(&m->to, i, &s);
        to[i] = put_str(b, s);
    }
    vec = ev_fb_create_ref_vector(b, to, n);
    subject = put_str(b, m->subject);
    body = put_str(b, m->body_template);
    ev_fb_table_start(b);
    add_ref(b, EV_SLOT_EMAIL_ACTION_TO, vec);
    add_ref(b, EV_SLOT_EMAIL_ACTION_SUBJECT, subject);
    add_ref(b, EV_SLOT_EMAIL_ACTION_BODY_TEMPLATE, body);
    return ev_fb_table_end(b);
}

/* A validated step list: count <= EV_MAX_STEPS, known action types. */
static ev_fb_ref enc_steps(ev_fb_builder *b, const ev_step_list *l)
{
    ev_fb_ref steps[EV_MAX_STEPS];

    for (uint32_t i = 0; i < l->count; i++) {
        ev_step st;
        ev_fb_ref name, action;
        uint8_t type;

        ev_step_list_get(l, i, &st);
        type = (uint8_t)st.action_type;
        action =
            type == EV_ACTION_HTTP ? enc_http(b, &st.action.http) : enc_email(b, &st.action.email);
        name = put_str(b, st.name);
        ev_fb_table_start(b);
        add_ref(b, EV_SLOT_STEP_NAME, name);
        add_ref(b, EV_SLOT_STEP_ACTION, action);
        ev_fb_table_add_scalar(b, EV_SLOT_STEP_ACTION_TYPE, &type, 1);
        steps[i] = ev_fb_table_end(b);
    }
    return ev_fb_create_ref_vector(b, steps, l->count);
}

static void add_opt_i32(ev_fb_builder *b, unsigned slot, bool has, int32_t v)
{
    if (has)
        ev_fb_table_add_scalar(b, slot, &v, sizeof v);
}

static void add_opt_i64(ev_fb_builder *b, unsigned slot, bool has, int64_t v)
{
    if (has)
        ev_fb_table_add_scalar(b, slot, &v, sizeof v);
}

/* The payload table of a validated envelope. */
static ev_fb_ref enc_payload(ev_fb_builder *b, const ev_envelope *e)
{
    ev_fb_ref r0, r1, r2, r3, r4;

    switch (e->payload_type) {
    case EV_RESOURCE_CREATED: {
        const ev_resource_created *p = &e->payload.resource_created;
        r0 = put_str(b, p->name);
        r1 = put_str(b, p->description);
        r2 = put_bytes(b, p->name_sealed);
        r3 = put_bytes(b, p->description_sealed);
        ev_fb_table_start(b);
        add_ref(b, EV_SLOT_RESOURCE_CREATED_NAME_SEALED, r2);
        add_ref(b, EV_SLOT_RESOURCE_CREATED_DESCRIPTION_SEALED, r3);
        add_ref(b, EV_SLOT_RESOURCE_CREATED_NAME, r0);
        add_ref(b, EV_SLOT_RESOURCE_CREATED_DESCRIPTION, r1);
        ev_fb_add_u8(b, EV_SLOT_RESOURCE_CREATED_STATUS, (uint8_t)p->status, 0);
        break;
    }
    case EV_RESOURCE_UPDATED: {
        const ev_resource_updated *p = &e->payload.resource_updated;
        uint8_t status = (uint8_t)p->status;
        r0 = put_str(b, p->name);
        r1 = put_str(b, p->description);
        r2 = put_bytes(b, p->name_sealed);
        r3 = put_bytes(b, p->description_sealed);
        ev_fb_table_start(b);
        add_ref(b, EV_SLOT_RESOURCE_UPDATED_NAME_SEALED, r2);
        add_ref(b, EV_SLOT_RESOURCE_UPDATED_DESCRIPTION_SEALED, r3);
        add_ref(b, EV_SLOT_RESOURCE_UPDATED_NAME, r0);
        add_ref(b, EV_SLOT_RESOURCE_UPDATED_DESCRIPTION, r1);
        if (p->has_status)
            ev_fb_table_add_scalar(b, EV_SLOT_RESOURCE_UPDATED_STATUS, &status, 1);
        break;
    }
    case EV_RESOURCE_DELETED:
        r0 = put_str(b, e->payload.resource_deleted.reason);
        ev_fb_table_start(b);
        add_ref(b, EV_SLOT_RESOURCE_DELETED_REASON, r0);
        break;
    case EV_WORKFLOW_DELETED:
        r0 = put_str(b, e->payload.workflow_deleted.reason);
        ev_fb_table_start(b);
        add_ref(b, EV_SLOT_WORKFLOW_DELETED_REASON, r0);
        break;
    case EV_WORKFLOW_CREATED: {
        const ev_workflow_created *p = &e->payload.workflow_created;
        r2 = enc_steps(b, &p->steps);
        r0 = put_str(b, p->name);
        r1 = put_str(b, p->webhook_secret);
        r3 = put_bytes(b, p->webhook_secret_sealed);
        ev_fb_table_start(b);
        add_ref(b, EV_SLOT_WORKFLOW_CREATED_WEBHOOK_SECRET_SEALED, r3);
        add_ref(b, EV_SLOT_WORKFLOW_CREATED_NAME, r0);
        add_ref(b, EV_SLOT_WORKFLOW_CREATED_WEBHOOK_SECRET, r1);
        add_ref(b, EV_SLOT_WORKFLOW_CREATED_STEPS, r2);
        ev_fb_add_u8(b, EV_SLOT_WORKFLOW_CREATED_ENABLED, p->enabled ? 1 : 0, EV_DEFAULT_ENABLED);
        break;
    }
    case EV_WORKFLOW_UPDATED: {
        const ev_workflow_updated *p = &e->payload.workflow_updated;
        r2 = p->steps.present ? enc_steps(b, &p->steps) : 0;
        r0 = put_str(b, p->name);
        r1 = put_str(b, p->webhook_secret);
        r3 = put_bytes(b, p->webhook_secret_sealed);
        ev_fb_table_start(b);
        add_ref(b, EV_SLOT_WORKFLOW_UPDATED_WEBHOOK_SECRET_SEALED, r3);
        add_ref(b, EV_SLOT_WORKFLOW_UPDATED_NAME, r0);
        add_ref(b, EV_SLOT_WORKFLOW_UPDATED_WEBHOOK_SECRET, r1);
        add_ref(b, EV_SLOT_WORKFLOW_UPDATED_STEPS, r2);
        break;
    }
    case EV_RUN_STARTED: {
        const ev_run_started *p = &e->payload.run_started;
        r1 = p->steps.present ? enc_steps(b, &p->steps) : 0;
        r2 = put_str(b, p->signing_secret);
        r0 = put_str(b, p->workflow_id);
        r3 = put_str(b, p->payload_json);
        r4 = put_bytes(b, p->signing_secret_sealed);
        ev_fb_table_start(b);
        add_ref(b, EV_SLOT_RUN_STARTED_SIGNING_SECRET_SEALED, r4);
        add_ref(b, EV_SLOT_RUN_STARTED_STEPS, r1);
        add_ref(b, EV_SLOT_RUN_STARTED_SIGNING_SECRET, r2);
        ev_fb_add_i64(b, EV_SLOT_RUN_STARTED_WORKFLOW_VERSION, p->workflow_version, 0);
        add_ref(b, EV_SLOT_RUN_STARTED_WORKFLOW_ID, r0);
        add_ref(b, EV_SLOT_RUN_STARTED_PAYLOAD_JSON, r3);
        ev_fb_add_u32(b, EV_SLOT_RUN_STARTED_STEP_COUNT, p->step_count, 0);
        ev_fb_add_u8(b, EV_SLOT_RUN_STARTED_TRIGGER, (uint8_t)p->trigger, 0);
        break;
    }
    case EV_STEP_ATTEMPTED: {
        const ev_step_attempted *p = &e->payload.step_attempted;
        r0 = put_str(b, p->error);
        r1 = put_str(b, p->delivery_id);
        ev_fb_table_start(b);
        ev_fb_add_i64(b, EV_SLOT_STEP_ATTEMPTED_DURATION_MS, p->duration_ms, 0);
        add_opt_i64(b, EV_SLOT_STEP_ATTEMPTED_NEXT_DELAY_MS, p->has_next_delay_ms,
                    p->next_delay_ms);
        ev_fb_add_u32(b, EV_SLOT_STEP_ATTEMPTED_STEP, p->step, 0);
        ev_fb_add_u32(b, EV_SLOT_STEP_ATTEMPTED_ATTEMPT, p->attempt, 0);
        add_opt_i32(b, EV_SLOT_STEP_ATTEMPTED_STATUS_CODE, p->has_status_code, p->status_code);
        add_ref(b, EV_SLOT_STEP_ATTEMPTED_ERROR, r0);
        add_ref(b, EV_SLOT_STEP_ATTEMPTED_DELIVERY_ID, r1);
        break;
    }
    case EV_STEP_SUCCEEDED: {
        const ev_step_succeeded *p = &e->payload.step_succeeded;
        ev_fb_table_start(b);
        ev_fb_add_u32(b, EV_SLOT_STEP_SUCCEEDED_STEP, p->step, 0);
        ev_fb_add_u32(b, EV_SLOT_STEP_SUCCEEDED_ATTEMPT, p->attempt, 0);
        add_opt_i32(b, EV_SLOT_STEP_SUCCEEDED_STATUS_CODE, p->has_status_code, p->status_code);
        break;
    }
    case EV_STEP_FAILED: {
        const ev_step_failed *p = &e->payload.step_failed;
        r0 = put_str(b, p->error);
        ev_fb_table_start(b);
        ev_fb_add_u32(b, EV_SLOT_STEP_FAILED_STEP, p->step, 0);
        ev_fb_add_u32(b, EV_SLOT_STEP_FAILED_ATTEMPT, p->attempt, 0);
        add_ref(b, EV_SLOT_STEP_FAILED_ERROR, r0);
        break;
    }
    case EV_RUN_FAILED: {
        const ev_run_failed *p = &e->payload.run_failed;
        r0 = put_str(b, p->error);
        ev_fb_table_start(b);
        ev_fb_add_u32(b, EV_SLOT_RUN_FAILED_STEP, p->step, 0);
        add_ref(b, EV_SLOT_RUN_FAILED_ERROR, r0);
        break;
    }
    default: /* WorkflowEnabled, WorkflowDisabled, RunSucceeded: empty tables */
        ev_fb_table_start(b);
        break;
    }
    return ev_fb_table_end(b);
}

int ev_envelope_encode(ev_fb_builder *b, const ev_envelope *e, char *errstr, size_t errlen)
{
    ev_fb_ref payload, id, agg, actor, cmd, corr, caus, hash = 0, cmd_hash = 0, env;
    uint8_t type = (uint8_t)e->payload_type;
    int rc;

    if ((rc = ev_envelope_validate(e, errstr, errlen)))
        return rc;
    ev_fb_builder_reset(b);
    payload = enc_payload(b, e);
    id = ev_fb_create_vector(b, e->event_id.bytes, EV_EVENT_ID_LEN, 1, 1);
    agg = put_str(b, e->aggregate_id);
    actor = put_str(b, e->actor);
    cmd = put_str(b, e->command_id);
    corr = put_str(b, e->correlation_id);
    caus = put_str(b, e->causation_id);
    if (e->prev_hash.ptr)
        hash = ev_fb_create_vector(b, e->prev_hash.ptr, e->prev_hash.len, 1, 1);
    if (e->command_hash.ptr)
        cmd_hash = ev_fb_create_vector(b, e->command_hash.ptr, e->command_hash.len, 1, 1);

    ev_fb_table_start(b);
    ev_fb_add_i64(b, EV_SLOT_ENVELOPE_VERSION, e->version, 0);
    ev_fb_add_i64(b, EV_SLOT_ENVELOPE_OCCURRED_AT_US, e->occurred_at_us, 0);
    add_ref(b, EV_SLOT_ENVELOPE_EVENT_ID, id);
    add_ref(b, EV_SLOT_ENVELOPE_AGGREGATE_ID, agg);
    add_ref(b, EV_SLOT_ENVELOPE_ACTOR, actor);
    add_ref(b, EV_SLOT_ENVELOPE_COMMAND_ID, cmd);
    add_ref(b, EV_SLOT_ENVELOPE_CORRELATION_ID, corr);
    add_ref(b, EV_SLOT_ENVELOPE_CAUSATION_ID, caus);
    add_ref(b, EV_SLOT_ENVELOPE_PREV_HASH, hash);
    add_ref(b, EV_SLOT_ENVELOPE_PAYLOAD, payload);
    add_ref(b, EV_SLOT_ENVELOPE_COMMAND_HASH, cmd_hash);
    ev_fb_add_u16(b, EV_SLOT_ENVELOPE_SCHEMA_VERSION, e->schema_version, EV_DEFAULT_SCHEMA_VERSION);
    ev_fb_add_u8(b, EV_SLOT_ENVELOPE_AGGREGATE_TYPE, (uint8_t)e->aggregate_type, 0);
    ev_fb_table_add_scalar(b, EV_SLOT_ENVELOPE_PAYLOAD_TYPE, &type, 1);
    env = ev_fb_table_end(b);

    if ((rc = ev_fb_finish(b, env, EV_FILE_IDENT)))
        return kq_seterr(errstr, errlen, rc, "building the envelope failed: %s", kq_strerror(rc));
    return 0;
}

void ev_envelope_init(ev_envelope *e, ev_event_type type)
{
    memset(e, 0, sizeof *e);
    e->schema_version = EV_DEFAULT_SCHEMA_VERSION;
    e->payload_type = type;
    e->aggregate_type = ev_event_aggregate_type(type);
    if (type == EV_WORKFLOW_CREATED)
        e->payload.workflow_created.enabled = EV_DEFAULT_ENABLED;
}

/* ================================================================ decode */

int ev_envelope_decode(const uint8_t *buf, size_t len, ev_envelope *out, char *errstr,
                       size_t errlen)
{
    uint32_t r, p, at, n;
    int rc;

    if ((rc = ev_schema_verify(buf, len, errstr, errlen)))
        return rc;
    memset(out, 0, sizeof *out);
    r = ev_fb_root(buf);

    /* required, and verified to hold exactly EV_EVENT_ID_LEN bytes */
    at = ev_fb_vector(buf, r, EV_SLOT_ENVELOPE_EVENT_ID, &n);
    memcpy(out->event_id.bytes, buf + at, EV_EVENT_ID_LEN);
    out->aggregate_type =
        (ev_aggregate_type)ev_fb_get_u8(buf, r, EV_SLOT_ENVELOPE_AGGREGATE_TYPE, 0);
    out->aggregate_id = rd_str(buf, r, EV_SLOT_ENVELOPE_AGGREGATE_ID);
    out->version = ev_fb_get_i64(buf, r, EV_SLOT_ENVELOPE_VERSION, 0);
    out->occurred_at_us = ev_fb_get_i64(buf, r, EV_SLOT_ENVELOPE_OCCURRED_AT_US, 0);
    out->actor = rd_str(buf, r, EV_SLOT_ENVELOPE_ACTOR);
    out->command_id = rd_str(buf, r, EV_SLOT_ENVELOPE_COMMAND_ID);
    out->correlation_id = rd_str(buf, r, EV_SLOT_ENVELOPE_CORRELATION_ID);
    out->causation_id = rd_str(buf, r, EV_SLOT_ENVELOPE_CAUSATION_ID);
    out->schema_version =
        ev_fb_get_u16(buf, r, EV_SLOT_ENVELOPE_SCHEMA_VERSION, EV_DEFAULT_SCHEMA_VERSION);
    at = ev_fb_vector(buf, r, EV_SLOT_ENVELOPE_PREV_HASH, &out->prev_hash.len);
    out->prev_hash.ptr = at ? buf + at : NULL;
    at = ev_fb_vector(buf, r, EV_SLOT_ENVELOPE_COMMAND_HASH, &out->command_hash.len);
    out->command_hash.ptr = at ? buf + at : NULL;
    out->payload_type = (ev_event_type)ev_fb_get_u8(buf, r, EV_SLOT_ENVELOPE_PAYLOAD_TYPE, 0);
    p = ev_fb_table(buf, r, EV_SLOT_ENVELOPE_PAYLOAD);

    switch (out->payload_type) {
    case EV_RESOURCE_CREATED: {
        ev_resource_created *q = &out->payload.resource_created;
        q->name = rd_str(buf, p, EV_SLOT_RESOURCE_CREATED_NAME);
        q->description = rd_str(buf, p, EV_SLOT_RESOURCE_CREATED_DESCRIPTION);
        q->status = (ev_resource_status)ev_fb_get_u8(buf, p, EV_SLOT_RESOURCE_CREATED_STATUS, 0);
        q->name_sealed = rd_bytes(buf, p, EV_SLOT_RESOURCE_CREATED_NAME_SEALED);
        q->description_sealed = rd_bytes(buf, p, EV_SLOT_RESOURCE_CREATED_DESCRIPTION_SEALED);
        break;
    }
    case EV_RESOURCE_UPDATED: {
        ev_resource_updated *q = &out->payload.resource_updated;
        q->name = rd_str(buf, p, EV_SLOT_RESOURCE_UPDATED_NAME);
        q->description = rd_str(buf, p, EV_SLOT_RESOURCE_UPDATED_DESCRIPTION);
        q->has_status = ev_fb_field(buf, p, EV_SLOT_RESOURCE_UPDATED_STATUS) != 0;
        q->status = (ev_resource_status)ev_fb_get_u8(buf, p, EV_SLOT_RESOURCE_UPDATED_STATUS, 0);
        q->name_sealed = rd_bytes(buf, p, EV_SLOT_RESOURCE_UPDATED_NAME_SEALED);
        q->description_sealed = rd_bytes(buf, p, EV_SLOT_RESOURCE_UPDATED_DESCRIPTION_SEALED);
        break;
    }
    case EV_RESOURCE_DELETED:
        out->payload.resource_deleted.reason = rd_str(buf, p, EV_SLOT_RESOURCE_DELETED_REASON);
        break;
    case EV_WORKFLOW_CREATED: {
        ev_workflow_created *q = &out->payload.workflow_created;
        q->name = rd_str(buf, p, EV_SLOT_WORKFLOW_CREATED_NAME);
        q->enabled = ev_fb_get_u8(buf, p, EV_SLOT_WORKFLOW_CREATED_ENABLED, EV_DEFAULT_ENABLED);
        q->webhook_secret = rd_str(buf, p, EV_SLOT_WORKFLOW_CREATED_WEBHOOK_SECRET);
        q->webhook_secret_sealed = rd_bytes(buf, p, EV_SLOT_WORKFLOW_CREATED_WEBHOOK_SECRET_SEALED);
        RD_LIST(q->steps, buf, p, EV_SLOT_WORKFLOW_CREATED_STEPS);
        break;
    }
    case EV_WORKFLOW_UPDATED: {
        ev_workflow_updated *q = &out->payload.workflow_updated;
        q->name = rd_str(buf, p, EV_SLOT_WORKFLOW_UPDATED_NAME);
        q->webhook_secret = rd_str(buf, p, EV_SLOT_WORKFLOW_UPDATED_WEBHOOK_SECRET);
        q->webhook_secret_sealed = rd_bytes(buf, p, EV_SLOT_WORKFLOW_UPDATED_WEBHOOK_SECRET_SEALED);
        RD_LIST(q->steps, buf, p, EV_SLOT_WORKFLOW_UPDATED_STEPS);
        break;
    }
    case EV_WORKFLOW_DELETED:
        out->payload.workflow_deleted.reason = rd_str(buf, p, EV_SLOT_WORKFLOW_DELETED_REASON);
        break;
    case EV_RUN_STARTED: {
        ev_run_started *q = &out->payload.run_started;
        q->workflow_id = rd_str(buf, p, EV_SLOT_RUN_STARTED_WORKFLOW_ID);
        q->workflow_version = ev_fb_get_i64(buf, p, EV_SLOT_RUN_STARTED_WORKFLOW_VERSION, 0);
        q->trigger = (ev_trigger_kind)ev_fb_get_u8(buf, p, EV_SLOT_RUN_STARTED_TRIGGER, 0);
        q->payload_json = rd_str(buf, p, EV_SLOT_RUN_STARTED_PAYLOAD_JSON);
        q->step_count = ev_fb_get_u32(buf, p, EV_SLOT_RUN_STARTED_STEP_COUNT, 0);
        RD_LIST(q->steps, buf, p, EV_SLOT_RUN_STARTED_STEPS);
        q->signing_secret = rd_str(buf, p, EV_SLOT_RUN_STARTED_SIGNING_SECRET);
        q->signing_secret_sealed = rd_bytes(buf, p, EV_SLOT_RUN_STARTED_SIGNING_SECRET_SEALED);
        break;
    }
    case EV_STEP_ATTEMPTED: {
        ev_step_attempted *q = &out->payload.step_attempted;
        q->step = ev_fb_get_u32(buf, p, EV_SLOT_STEP_ATTEMPTED_STEP, 0);
        q->attempt = ev_fb_get_u32(buf, p, EV_SLOT_STEP_ATTEMPTED_ATTEMPT, 0);
        q->has_status_code = ev_fb_field(buf, p, EV_SLOT_STEP_ATTEMPTED_STATUS_CODE) != 0;
        q->status_code = ev_fb_get_i32(buf, p, EV_SLOT_STEP_ATTEMPTED_STATUS_CODE, 0);
        q->error = rd_str(buf, p, EV_SLOT_STEP_ATTEMPTED_ERROR);
        q->duration_ms = ev_fb_get_i64(buf, p, EV_SLOT_STEP_ATTEMPTED_DURATION_MS, 0);
        q->has_next_delay_ms = ev_fb_field(buf, p, EV_SLOT_STEP_ATTEMPTED_NEXT_DELAY_MS) != 0;
        q->next_delay_ms = ev_fb_get_i64(buf, p, EV_SLOT_STEP_ATTEMPTED_NEXT_DELAY_MS, 0);
        q->delivery_id = rd_str(buf, p, EV_SLOT_STEP_ATTEMPTED_DELIVERY_ID);
        break;
    }
    case EV_STEP_SUCCEEDED: {
        ev_step_succeeded *q = &out->payload.step_succeeded;
        q->step = ev_fb_get_u32(buf, p, EV_SLOT_STEP_SUCCEEDED_STEP, 0);
        q->attempt = ev_fb_get_u32(buf, p, EV_SLOT_STEP_SUCCEEDED_ATTEMPT, 0);
        q->has_status_code = ev_fb_field(buf, p, EV_SLOT_STEP_SUCCEEDED_STATUS_CODE) != 0;
        q->status_code = ev_fb_get_i32(buf, p, EV_SLOT_STEP_SUCCEEDED_STATUS_CODE, 0);
        break;
    }
    case EV_STEP_FAILED: {
        ev_step_failed *q = &out->payload.step_failed;
        q->step = ev_fb_get_u32(buf, p, EV_SLOT_STEP_FAILED_STEP, 0);
        q->attempt = ev_fb_get_u32(buf, p, EV_SLOT_STEP_FAILED_ATTEMPT, 0);
        q->error = rd_str(buf, p, EV_SLOT_STEP_FAILED_ERROR);
        break;
    }
    case EV_RUN_FAILED: {
        ev_run_failed *q = &out->payload.run_failed;
        q->step = ev_fb_get_u32(buf, p, EV_SLOT_RUN_FAILED_STEP, 0);
        q->error = rd_str(buf, p, EV_SLOT_RUN_FAILED_ERROR);
        break;
    }
    default: /* empty tables; NONE cannot pass verification (payload is required) */
        break;
    }
    return 0;
}
