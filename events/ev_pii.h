/*
 * ev_pii.h — which event fields are personal data, and sealing/opening them.
 *
 * What it is for
 *   Personal data in events is written to the log only sealed (lib/kq_crypto.h)
 *   under its subject's data key (lib/kq_keyring.h), so that erasing the
 *   subject (tombstoning its key) makes every copy in the log unreadable
 *   without rewriting the log. The list is fixed (README "Personal data"):
 *   - ResourceCreated / ResourceUpdated: name, description.
 *     Subject: the resource, "resource/<id>". The *_sealed field holds the
 *     value; the plain field is absent (ResourceCreated's required name holds
 *     EV_PII_PLACEHOLDER).
 *   - Associated data: the event's identity and the field,
 *     "<aggregate type>/<aggregate id>/<version>/<field>" (as ev_secret.h).
 *   ev_pii_open turns the sealed fields back into the plain views the rest of
 *   the code reads; an erased subject's fields read EV_PII_ERASED; events
 *   written before sealing (plain fields) pass through unchanged.
 *
 * Ownership: sealed/opened bytes live in the caller's `buf` (EV_PII_BUF
 *   bytes), which must outlive every use of the envelope's views.
 * Threads: reentrant (the keyring locks).
 * Errors: 0 or a negative KQ_E* code, a sentence in errstr.
 */
#ifndef EV_PII_H
#define EV_PII_H

#include <stddef.h>
#include <stdint.h>

#include "ev_codec.h"
#include "ev_fb.h"
#include "kq_crypto.h"
#include "kq_keyring.h"

#define EV_PII_PLACEHOLDER "[sealed]"
#define EV_PII_ERASED "[erased]"
/* Room for a sealed or opened name and description of the largest size. */
#define EV_PII_BUF                                                                                 \
    ((EV_NAME_MAX_CHARS + EV_DESCRIPTION_MAX_CHARS) * 4 + 2 * KQ_CRYPTO_SEAL_OVERHEAD + 2)

/* What ev_pii_open found. */
typedef enum ev_pii_state {
    EV_PII_NONE = 0, /* no sealed personal data (plain or none): nothing changed */
    EV_PII_OPENED,   /* opened: the plain views hold the values */
    EV_PII_IS_ERASED /* the subject is erased: the plain views read EV_PII_ERASED */
} ev_pii_state;

/*
 * Seal e's plain personal-data fields, if it has any, under the subject's data
 * key (created in the key topic when the subject has none yet). kr NULL:
 * nothing is sealed (0). The sealed bytes go to buf[buflen >= EV_PII_BUF].
 */
int ev_pii_seal(ev_envelope *e, kq_keyring *kr, uint8_t *buf, size_t buflen, char *errstr,
                size_t errlen);

/*
 * Open e's sealed personal-data fields into the plain views (the sealed views
 * are cleared); *state (may be NULL) says what was done. An erased subject
 * (a tombstone in the key topic): the views read EV_PII_ERASED, 0. kr NULL
 * with sealed fields, or a missing key of a subject not erased: KQ_ENOTFOUND;
 * a value that does not open: KQ_ECORRUPT. The plain bytes go to buf.
 */
int ev_pii_open(ev_envelope *e, kq_keyring *kr, uint8_t *buf, size_t buflen, ev_pii_state *state,
                char *errstr, size_t errlen);

/*
 * The record in[0..len) with its personal data opened (or EV_PII_ERASED),
 * for readers that print or store the record as a whole (the projectors,
 * the event stream, kcqrs-audit query). A record without sealed personal
 * data (or one that does not decode: the caller's own checks refuse it) is
 * returned as it is: *out = in, 0. Otherwise it is re-encoded into b and
 * *out points into b (valid until b's next use). *state as ev_pii_open; the
 * errors of ev_pii_open (KQ_ENOTFOUND: a missing key of a subject not
 * erased). The hash chain is over the record as written: never verify it on
 * *out.
 */
int ev_pii_plain_record(const uint8_t *in, size_t len, kq_keyring *kr, ev_fb_builder *b,
                        const uint8_t **out, size_t *outlen, ev_pii_state *state, char *errstr,
                        size_t errlen);

/* The same for a decoded envelope with sealed personal data (*out always
 * points into b on success). */
int ev_pii_plain_envelope(const ev_envelope *e, kq_keyring *kr, ev_fb_builder *b,
                          const uint8_t **out, size_t *outlen, ev_pii_state *state, char *errstr,
                          size_t errlen);

/* ev_pii_seal and ev_pii_open with the subject's data key given (no keyring). */
int ev_pii_seal_with(ev_envelope *e, const uint8_t dek[KQ_CRYPTO_KEY_LEN], uint8_t *buf,
                     size_t buflen, char *errstr, size_t errlen);
int ev_pii_open_with(ev_envelope *e, const uint8_t dek[KQ_CRYPTO_KEY_LEN], uint8_t *buf,
                     size_t buflen, char *errstr, size_t errlen);

/* Replace e's personal-data fields (plain or sealed) by EV_PII_ERASED. */
void ev_pii_blank(ev_envelope *e);

/* The subject of e's personal data ("resource/<id>") into out. 0, KQ_ENOTFOUND
 * (an event without personal data) or KQ_EINVAL. */
int ev_pii_subject(const ev_envelope *e, char *out, size_t outlen);

/* Whether e carries sealed personal data. */
int ev_pii_sealed(const ev_envelope *e);

#endif
