/*
 * ev_secret.h — which event fields are secrets, and sealing/opening them.
 *
 * What it is for
 *   The secrets a workflow carries (WorkflowCreated/WorkflowUpdated
 *   webhook_secret, RunStarted signing_secret) are written to the log only
 *   sealed (lib/kq_crypto.h) under their subject's data key (lib/kq_keyring.h):
 *   the *_sealed field holds them, the plain field is absent (WorkflowCreated's
 *   required webhook_secret holds EV_SECRET_PLACEHOLDER).
 *   - Subject: the workflow, "workflow/<id>", for the workflow's events and for
 *     the runs it starts (a run's signing secret is the workflow's secret).
 *   - Associated data: the event's identity and the field,
 *     "<aggregate type>/<aggregate id>/<version>/<field>", so a sealed value
 *     copied into another event, version or field does not open.
 *   ev_secret_open turns a sealed field back into the plain view the rest of
 *   the code reads; events written before sealing (plain fields) pass through
 *   unchanged, so old logs stay readable.
 *
 * Ownership: sealed/opened bytes live in the caller's `buf`, which must outlive
 *   every use of the envelope's views. Threads: reentrant (the keyring locks).
 * Errors: 0 or a negative KQ_E* code, a sentence in errstr.
 */
#ifndef EV_SECRET_H
#define EV_SECRET_H

#include <stddef.h>
#include <stdint.h>

#include "ev_codec.h"
#include "kq_crypto.h"
#include "kq_keyring.h"

#define EV_SECRET_PLACEHOLDER "[sealed]"
/* Enough for one sealed or opened secret of the largest allowed size. */
#define EV_SECRET_BUF (EV_META_MAX + KQ_CRYPTO_SEAL_OVERHEAD + 1)

/*
 * Seal e's plain secret field, if it has one, under its subject's data key
 * (created in the key topic when the subject has none yet). kr NULL: nothing
 * is sealed (0). The sealed bytes go to buf[EV_SECRET_BUF].
 */
int ev_secret_seal(ev_envelope *e, kq_keyring *kr, uint8_t *buf, size_t buflen, char *errstr,
                   size_t errlen);

/*
 * Open e's sealed secret field, if it has one, into the plain view (the
 * sealed view is cleared). Plain or no secret: 0, nothing changes. kr NULL
 * with a sealed field: KQ_ENOTFOUND. A missing key: KQ_ENOTFOUND; a value
 * that does not open: KQ_ECORRUPT. The plain bytes go to buf[EV_SECRET_BUF].
 */
int ev_secret_open(ev_envelope *e, kq_keyring *kr, uint8_t *buf, size_t buflen, char *errstr,
                   size_t errlen);

/* The subject of e's secret field ("workflow/<id>") into out. 0, KQ_ENOTFOUND
 * (no secret field) or KQ_EINVAL. */
int ev_secret_subject(const ev_envelope *e, char *out, size_t outlen);

/* Whether e carries a sealed secret. */
int ev_secret_sealed(const ev_envelope *e);

#endif
