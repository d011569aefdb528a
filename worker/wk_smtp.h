/*
 * wk_smtp.h — email actions through the worker engine: libcurl SMTP(S)
 * (MAIL FROM, RCPT TO per recipient, DATA with an RFC 5322 message).
 *
 * The message is built here:
 *     Date: Sun, 22 Nov 2026 04:00:00 +0000
 *     From: <from>
 *     To: a@x, b@y
 *     Subject: <subject>          (RFC 2047 UTF-8 base64 words if not ASCII)
 *     Message-ID: <<delivery id>@kcqrs>
 *     X-Kcqrs-Delivery: <delivery id>
 *     MIME-Version: 1.0
 *     Content-Type: text/plain; charset=utf-8
 *     Content-Transfer-Encoding: 8bit
 *
 *     body, line endings turned into CRLF (libcurl dot-stuffs lines)
 * Message-ID carries the delivery id, so the retry of a step sends the same
 * Message-ID and mail systems can drop the repeat.
 *
 * smtp:// tries STARTTLS when the server offers it (CURLUSESSL_TRY);
 * smtps:// is TLS from the start. The guard (wk_guard.h) allows only smtp
 * and smtps and checks the resolved address like for HTTP. The outcome's
 * status_code is the last SMTP reply (250 on success; a 4xx or 5xx reply
 * gives WK_R_RESPONSE with that code, which wk_policy classifies).
 * Same thread rules as wk_http.h.
 */
#ifndef WK_SMTP_H
#define WK_SMTP_H

#include <stddef.h>

#include "wk_http.h"

#define WK_SMTP_MAX_RCPT 50
#define WK_SMTP_ADDR_MAX 254

typedef struct wk_smtp_request {
    const char *url;       /* smtp://host[:port] or smtps://host[:port] */
    const char *from;      /* envelope and header sender: local@domain */
    const char *const *to; /* recipients: local@domain each, 1..WK_SMTP_MAX_RCPT */
    size_t n_to;
    const char *subject;     /* UTF-8, no CR/LF, <= 998 bytes */
    const char *body;        /* UTF-8 text; may be NULL (empty) */
    const char *delivery_id; /* as for HTTP (wk_delivery_id_check) */
    const char *username;    /* SMTP AUTH, both or neither */
    const char *password;
} wk_smtp_request;

/*
 * Start one delivery; everything is copied. Same contract as
 * wk_engine_submit_http: on 0 cb runs once later; KQ_EINVAL for a bad
 * address, subject, delivery id or URL, KQ_EUNSUPPORTED for a scheme other
 * than smtp/smtps, KQ_ERANGE for a body over WK_REQUEST_BODY_MAX.
 */
int wk_engine_submit_smtp(wk_engine *e, const wk_smtp_request *req, wk_done_fn cb, void *arg,
                          char *errstr, size_t errlen);

/*
 * The RFC 5322 message alone (the function above uses it), for tests and
 * previews. `now` is the Date. *out is malloc'd, owned by the caller.
 */
int wk_smtp_build_message(const wk_smtp_request *req, long long now, char **out, size_t *outlen,
                          char *errstr, size_t errlen);

/* 0 if `addr` is a plain local@domain address we accept, else KQ_EINVAL. */
int wk_smtp_addr_check(const char *addr, char *errstr, size_t errlen);

#endif
