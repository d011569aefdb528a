/*
 * wk_outcome.h — what one attempt of an action ended with, as the engine
 * (wk_http, wk_smtp) reports it and the policy (wk_policy) and breaker
 * (wk_breaker) consume it. Plain data, no functions but the names.
 */
#ifndef WK_OUTCOME_H
#define WK_OUTCOME_H

#include <stddef.h>

typedef enum wk_result {
    WK_R_RESPONSE = 0,    /* a status was received: status_code is set */
    WK_R_CONNECT,         /* could not connect (refused, unreachable, DNS failure) */
    WK_R_CONNECT_TIMEOUT, /* connect timeout */
    WK_R_TIMEOUT,         /* total timeout after connecting */
    WK_R_TRANSPORT,       /* other transport error (reset, TLS, protocol) */
    WK_R_REFUSED,         /* the outbound guard refused the resolved address */
    WK_R_TOO_LARGE,       /* the response exceeded the size cap (status_code set) */
    WK_R_ABORTED,         /* the engine was freed before the transfer ended */
} wk_result;

typedef enum wk_proto { WK_PROTO_HTTP = 0, WK_PROTO_SMTP } wk_proto;

typedef struct wk_outcome {
    wk_proto proto;
    wk_result result;
    int status_code;    /* HTTP status or last SMTP reply code; 0 when none */
    long duration_ms;   /* from submit to completion */
    size_t bytes;       /* response body bytes received (HTTP) */
    long retry_after_s; /* parsed Retry-After, -1 when absent or invalid */
    char error[256];    /* one line for the StepAttempted error; "" on WK_R_RESPONSE */
} wk_outcome;

/* Short constant name of a result ("response", "connect", ...). */
const char *wk_result_name(wk_result r);

#endif
