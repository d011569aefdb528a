/*
 * ev_secret.c — sealing and opening the secret fields of events; see ev_secret.h.
 */
#include "ev_secret.h"
#include "kq_err.h"

#include <stdio.h>
#include <string.h>

/* The secret field of e: its plain view, its sealed view, its name, and the
 * workflow id that names the subject. NULL when e has no secret field. */
typedef struct secret_field {
    ev_str *plain;
    ev_bytes *sealed;
    const char *name;
    ev_str workflow_id;
} secret_field;

static int field_of(ev_envelope *e, secret_field *f)
{
    memset(f, 0, sizeof *f);
    switch (e->payload_type) {
    case EV_WORKFLOW_CREATED:
        f->plain = &e->payload.workflow_created.webhook_secret;
        f->sealed = &e->payload.workflow_created.webhook_secret_sealed;
        f->name = "webhook_secret";
        f->workflow_id = e->aggregate_id;
        return 1;
    case EV_WORKFLOW_UPDATED:
        f->plain = &e->payload.workflow_updated.webhook_secret;
        f->sealed = &e->payload.workflow_updated.webhook_secret_sealed;
        f->name = "webhook_secret";
        f->workflow_id = e->aggregate_id;
        return 1;
    case EV_RUN_STARTED:
        f->plain = &e->payload.run_started.signing_secret;
        f->sealed = &e->payload.run_started.signing_secret_sealed;
        f->name = "signing_secret";
        f->workflow_id = e->payload.run_started.workflow_id;
        return 1;
    default:
        return 0;
    }
}

static int subject_of(const secret_field *f, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "workflow/%.*s", (int)f->workflow_id.len,
                     f->workflow_id.ptr ? f->workflow_id.ptr : "");
    return f->workflow_id.len == 0 || n < 0 || (size_t)n >= outlen ? KQ_EINVAL : 0;
}

static int aad_of(const ev_envelope *e, const secret_field *f, char *out, size_t outlen)
{
    const char *type = ev_aggregate_type_name(ev_event_aggregate_type(e->payload_type));
    int n =
        snprintf(out, outlen, "%s/%.*s/%lld/%s", type ? type : "?", (int)e->aggregate_id.len,
                 e->aggregate_id.ptr ? e->aggregate_id.ptr : "", (long long)e->version, f->name);
    return n < 0 || (size_t)n >= outlen ? KQ_ERANGE : n;
}

int ev_secret_subject(const ev_envelope *e, char *out, size_t outlen)
{
    secret_field f;
    if (!field_of((ev_envelope *)e, &f))
        return KQ_ENOTFOUND;
    return subject_of(&f, out, outlen);
}

int ev_secret_sealed(const ev_envelope *e)
{
    secret_field f;
    return field_of((ev_envelope *)e, &f) && f.sealed->ptr != NULL;
}

int ev_secret_seal(ev_envelope *e, kq_keyring *kr, uint8_t *buf, size_t buflen, char *errstr,
                   size_t errlen)
{
    char subject[KQ_SUBJECT_MAX + 1], aad[EV_ID_MAX * 2 + 64];
    uint8_t dek[KQ_CRYPTO_KEY_LEN];
    secret_field f;
    size_t n;
    int rc, alen;

    if (kr == NULL || !field_of(e, &f) || f.plain->ptr == NULL)
        return 0;
    if (subject_of(&f, subject, sizeof subject) != 0 || (alen = aad_of(e, &f, aad, sizeof aad)) < 0)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "no subject for the %s of %.*s", f.name,
                         (int)e->aggregate_id.len, e->aggregate_id.ptr);
    if ((rc = kq_keyring_get_or_create(kr, subject, dek, errstr, errlen)) != 0)
        return rc;
    rc = kq_crypto_seal(dek, aad, (size_t)alen, f.plain->ptr, f.plain->len, buf, buflen, &n, errstr,
                        errlen);
    memset(dek, 0, sizeof dek);
    if (rc != 0)
        return rc;
    f.sealed->ptr = buf;
    f.sealed->len = (uint32_t)n;
    if (e->payload_type == EV_WORKFLOW_CREATED)
        *f.plain = ev_str_c(EV_SECRET_PLACEHOLDER);
    else
        f.plain->ptr = NULL, f.plain->len = 0;
    return 0;
}

int ev_secret_open(ev_envelope *e, kq_keyring *kr, uint8_t *buf, size_t buflen, char *errstr,
                   size_t errlen)
{
    char subject[KQ_SUBJECT_MAX + 1], aad[EV_ID_MAX * 2 + 64];
    uint8_t dek[KQ_CRYPTO_KEY_LEN];
    secret_field f;
    size_t n;
    int rc, alen;

    if (!field_of(e, &f) || f.sealed->ptr == NULL)
        return 0;
    if (subject_of(&f, subject, sizeof subject) != 0 || (alen = aad_of(e, &f, aad, sizeof aad)) < 0)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "no subject for the sealed %s of %.*s",
                         f.name, (int)e->aggregate_id.len, e->aggregate_id.ptr);
    if (kr == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOTFOUND,
                         "%s of %.*s is sealed and no keys are loaded", f.name,
                         (int)e->aggregate_id.len, e->aggregate_id.ptr);
    if ((rc = kq_keyring_get(kr, subject, dek, errstr, errlen)) != 0)
        return rc;
    rc = kq_crypto_open(dek, aad, (size_t)alen, f.sealed->ptr, f.sealed->len, buf, buflen - 1, &n,
                        errstr, errlen);
    memset(dek, 0, sizeof dek);
    if (rc != 0)
        return kq_seterr(errstr, errlen, rc, "the sealed %s of %.*s version %lld does not open",
                         f.name, (int)e->aggregate_id.len, e->aggregate_id.ptr,
                         (long long)e->version);
    buf[n] = '\0';
    f.plain->ptr = (const char *)buf;
    f.plain->len = (uint32_t)n;
    f.sealed->ptr = NULL;
    f.sealed->len = 0;
    return 0;
}
