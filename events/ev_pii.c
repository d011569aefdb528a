/*
 * ev_pii.c — sealing and opening the personal-data fields of events; see ev_pii.h.
 */
#include "ev_pii.h"
#include "kq_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The personal-data fields of e: plain and sealed views, names. */
typedef struct pii_fields {
    int n;
    ev_str *plain[2];
    ev_bytes *sealed[2];
    const char *name[2];
    int required[2]; /* the schema requires the plain field: it holds the placeholder */
} pii_fields;

static int fields_of(ev_envelope *e, pii_fields *f)
{
    memset(f, 0, sizeof *f);
    switch (e->payload_type) {
    case EV_RESOURCE_CREATED: {
        ev_resource_created *p = &e->payload.resource_created;
        *f = (pii_fields){2,
                          {&p->name, &p->description},
                          {&p->name_sealed, &p->description_sealed},
                          {"name", "description"},
                          {1, 0}};
        return 1;
    }
    case EV_RESOURCE_UPDATED: {
        ev_resource_updated *p = &e->payload.resource_updated;
        *f = (pii_fields){2,
                          {&p->name, &p->description},
                          {&p->name_sealed, &p->description_sealed},
                          {"name", "description"},
                          {0, 0}};
        return 1;
    }
    default:
        return 0;
    }
}

int ev_pii_subject(const ev_envelope *e, char *out, size_t outlen)
{
    pii_fields f;
    int n;
    if (!fields_of((ev_envelope *)e, &f))
        return KQ_ENOTFOUND;
    n = snprintf(out, outlen, "resource/%.*s", (int)e->aggregate_id.len,
                 e->aggregate_id.ptr ? e->aggregate_id.ptr : "");
    return e->aggregate_id.len == 0 || n < 0 || (size_t)n >= outlen ? KQ_EINVAL : 0;
}

int ev_pii_sealed(const ev_envelope *e)
{
    pii_fields f;
    if (!fields_of((ev_envelope *)e, &f))
        return 0;
    for (int i = 0; i < f.n; i++)
        if (f.sealed[i]->ptr != NULL)
            return 1;
    return 0;
}

static int aad_of(const ev_envelope *e, const char *field, char *out, size_t outlen)
{
    const char *type = ev_aggregate_type_name(ev_event_aggregate_type(e->payload_type));
    int n = snprintf(out, outlen, "%s/%.*s/%lld/%s", type ? type : "?", (int)e->aggregate_id.len,
                     e->aggregate_id.ptr ? e->aggregate_id.ptr : "", (long long)e->version, field);
    return n < 0 || (size_t)n >= outlen ? KQ_ERANGE : n;
}

int ev_pii_seal_with(ev_envelope *e, const uint8_t dek[KQ_CRYPTO_KEY_LEN], uint8_t *buf,
                     size_t buflen, char *errstr, size_t errlen)
{
    char aad[EV_ID_MAX * 2 + 64];
    pii_fields f;
    size_t used = 0, n;
    int rc, alen;

    if (!fields_of(e, &f))
        return 0;
    for (int i = 0; i < f.n; i++) {
        if (f.plain[i]->ptr == NULL)
            continue;
        if ((alen = aad_of(e, f.name[i], aad, sizeof aad)) < 0)
            return kq_seterr(errstr, errlen, KQ_EINVAL, "identity of %.*s too long",
                             (int)e->aggregate_id.len, e->aggregate_id.ptr);
        if (used > buflen)
            return kq_seterr(errstr, errlen, KQ_ERANGE, "no room to seal the %s", f.name[i]);
        if ((rc = kq_crypto_seal(dek, aad, (size_t)alen, f.plain[i]->ptr, f.plain[i]->len,
                                 buf + used, buflen - used, &n, errstr, errlen)) != 0)
            return rc;
        f.sealed[i]->ptr = buf + used;
        f.sealed[i]->len = (uint32_t)n;
        used += n;
        if (f.required[i])
            *f.plain[i] = ev_str_c(EV_PII_PLACEHOLDER);
        else
            f.plain[i]->ptr = NULL, f.plain[i]->len = 0;
    }
    return 0;
}

int ev_pii_seal(ev_envelope *e, kq_keyring *kr, uint8_t *buf, size_t buflen, char *errstr,
                size_t errlen)
{
    char subject[KQ_SUBJECT_MAX + 1];
    uint8_t dek[KQ_CRYPTO_KEY_LEN];
    pii_fields f;
    int rc, any = 0;

    if (kr == NULL || !fields_of(e, &f))
        return 0;
    for (int i = 0; i < f.n; i++)
        any |= f.plain[i]->ptr != NULL;
    if (!any)
        return 0;
    if (ev_pii_subject(e, subject, sizeof subject) != 0)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "no subject for the personal data of %.*s",
                         (int)e->aggregate_id.len, e->aggregate_id.ptr);
    if ((rc = kq_keyring_get_or_create(kr, subject, dek, errstr, errlen)) != 0)
        return rc;
    rc = ev_pii_seal_with(e, dek, buf, buflen, errstr, errlen);
    memset(dek, 0, sizeof dek);
    return rc;
}

void ev_pii_blank(ev_envelope *e)
{
    pii_fields f;
    if (!fields_of(e, &f))
        return;
    for (int i = 0; i < f.n; i++) {
        if (f.plain[i]->ptr == NULL && f.sealed[i]->ptr == NULL)
            continue;
        *f.plain[i] = ev_str_c(EV_PII_ERASED);
        f.sealed[i]->ptr = NULL;
        f.sealed[i]->len = 0;
    }
}

int ev_pii_open_with(ev_envelope *e, const uint8_t dek[KQ_CRYPTO_KEY_LEN], uint8_t *buf,
                     size_t buflen, char *errstr, size_t errlen)
{
    char aad[EV_ID_MAX * 2 + 64];
    pii_fields f;
    size_t used = 0, n;
    int rc, alen;

    if (!fields_of(e, &f))
        return 0;
    for (int i = 0; i < f.n; i++) {
        if (f.sealed[i]->ptr == NULL)
            continue;
        if ((alen = aad_of(e, f.name[i], aad, sizeof aad)) < 0 || used >= buflen)
            return kq_seterr(errstr, errlen, KQ_ECORRUPT, "the sealed %s of %.*s does not fit",
                             f.name[i], (int)e->aggregate_id.len, e->aggregate_id.ptr);
        if ((rc = kq_crypto_open(dek, aad, (size_t)alen, f.sealed[i]->ptr, f.sealed[i]->len,
                                 buf + used, buflen - used, &n, errstr, errlen)) != 0)
            return kq_seterr(errstr, errlen, rc, "the sealed %s of %.*s version %lld does not open",
                             f.name[i], (int)e->aggregate_id.len, e->aggregate_id.ptr,
                             (long long)e->version);
        f.plain[i]->ptr = (const char *)(buf + used);
        f.plain[i]->len = (uint32_t)n;
        f.sealed[i]->ptr = NULL;
        f.sealed[i]->len = 0;
        used += n;
    }
    return 0;
}

int ev_pii_open(ev_envelope *e, kq_keyring *kr, uint8_t *buf, size_t buflen, ev_pii_state *state,
                char *errstr, size_t errlen)
{
    char subject[KQ_SUBJECT_MAX + 1];
    uint8_t dek[KQ_CRYPTO_KEY_LEN];
    int rc;

    if (state != NULL)
        *state = EV_PII_NONE;
    if (!ev_pii_sealed(e))
        return 0;
    if (ev_pii_subject(e, subject, sizeof subject) != 0)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "no subject for the sealed data of %.*s",
                         (int)e->aggregate_id.len, e->aggregate_id.ptr);
    if (kr == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOTFOUND,
                         "the personal data of %s is sealed and no keys are loaded", subject);
    if ((rc = kq_keyring_get(kr, subject, dek, errstr, errlen)) != 0) {
        if (rc == KQ_ENOTFOUND && kq_keyring_erased(kr, subject)) {
            ev_pii_blank(e);
            if (state != NULL)
                *state = EV_PII_IS_ERASED;
            return 0;
        }
        return rc;
    }
    rc = ev_pii_open_with(e, dek, buf, buflen, errstr, errlen);
    memset(dek, 0, sizeof dek);
    if (rc == 0 && state != NULL)
        *state = EV_PII_OPENED;
    return rc;
}

int ev_pii_plain_envelope(const ev_envelope *in, kq_keyring *kr, ev_fb_builder *b,
                          const uint8_t **out, size_t *outlen, ev_pii_state *state, char *errstr,
                          size_t errlen)
{
    ev_envelope e = *in;
    uint8_t *buf;
    int rc;

    if ((buf = malloc(EV_PII_BUF)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    if ((rc = ev_pii_open(&e, kr, buf, EV_PII_BUF, state, errstr, errlen)) == 0 &&
        (rc = ev_envelope_encode(b, &e, errstr, errlen)) == 0)
        *out = ev_fb_builder_data(b, outlen);
    free(buf);
    return rc;
}

int ev_pii_plain_record(const uint8_t *in, size_t len, kq_keyring *kr, ev_fb_builder *b,
                        const uint8_t **out, size_t *outlen, ev_pii_state *state, char *errstr,
                        size_t errlen)
{
    ev_envelope e;

    *out = in;
    *outlen = len;
    if (state != NULL)
        *state = EV_PII_NONE;
    if (in == NULL || ev_envelope_decode(in, len, &e, NULL, 0) != 0 || !ev_pii_sealed(&e))
        return 0;
    return ev_pii_plain_envelope(&e, kr, b, out, outlen, state, errstr, errlen);
}
