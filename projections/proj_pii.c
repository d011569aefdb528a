/*
 * proj_pii.c — a checked event's sealed personal data opened; see proj_pii.h.
 */
#include "proj_pii.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ev_pii.h"
#include "kq_err.h"
#include "kq_log.h"

#define PII_RETRIES 30 /* seconds of an unreadable key topic before the record is refused */

const char *proj_pii_open(proj_event *ev, kq_keyring **keys, const kq_config *cfg,
                          const char *client, char *why, size_t whylen)
{
    char err[384];
    const uint8_t *out;
    size_t outlen;
    ev_fb_builder fb;
    int rc;

    if (!ev_pii_sealed(&ev->env))
        return NULL;
    ev->decoded = 0;
    if (*keys == NULL && kq_keyring_new(cfg, client, keys, err, sizeof err) != 0) {
        ev->pii_failed = 1;
        snprintf(why, whylen, "sealed personal data and no keys: %s", err);
        return why;
    }
    ev_fb_builder_init(&fb);
    /* the key topic unreadable for a moment is not a reason to refuse the record */
    for (int attempt = 0;; attempt++) {
        rc = ev_pii_plain_record(ev->value, ev->len, *keys, &fb, &out, &outlen, NULL, err,
                                 sizeof err);
        if ((rc != KQ_EKAFKA && rc != KQ_ETIMEDOUT) || attempt >= PII_RETRIES)
            break;
        kq_log_warn("%s: reading the key topic: %s (retrying in 1 s)", client, err);
        sleep(1);
    }
    if (rc == 0) {
        if ((ev->plain = malloc(outlen)) == NULL)
            rc = kq_seterr(err, sizeof err, KQ_ENOMEM, "out of memory");
        else {
            memcpy(ev->plain, out, outlen);
            ev->plain_len = outlen;
            rc = ev_envelope_decode(ev->plain, outlen, &ev->env, err, sizeof err);
        }
    }
    ev_fb_builder_free(&fb);
    if (rc != 0) {
        free(ev->plain);
        ev->plain = NULL;
        ev->missing_key = rc == KQ_ENOTFOUND;
        ev->pii_failed = 1;
        snprintf(why, whylen, "personal data: %s", err);
        return why;
    }
    ev->decoded = 1;
    return NULL;
}
