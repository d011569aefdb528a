/*
 * wk_engine_int.h — what wk_http.c shares with wk_smtp.c: one transfer's
 * state and the calls that create, start and free it. Not for other modules.
 */
#ifndef WK_ENGINE_INT_H
#define WK_ENGINE_INT_H

#include <curl/curl.h>
#include <stdint.h>

#include "wk_guard.h"
#include "wk_http.h"

typedef struct wk_xfer {
    struct wk_xfer *prev, *next; /* the engine's in-flight list */
    wk_engine *eng;
    CURL *h;
    struct curl_slist *hdrs;  /* HTTP request headers */
    struct curl_slist *rcpts; /* SMTP recipients */
    char *body;               /* owned copy: HTTP request body or SMTP message */
    size_t body_len, read_off;
    wk_guard_ctx guard;
    wk_outcome out;
    int too_big;
    char retry_after[64];
    int64_t start_us;
    wk_done_fn cb;
    void *arg;
    char errbuf[CURL_ERROR_SIZE];
} wk_xfer;

/*
 * A transfer with an easy handle carrying the common options (timeouts,
 * guard for `proto`, error buffer, no signals). NULL with errstr on failure.
 */
wk_xfer *wk_xfer_new(wk_engine *e, wk_proto proto, char *errstr, size_t errlen);

/* Free a transfer that was not started (or has ended): its handle returns to the pool. */
void wk_xfer_free(wk_xfer *x);

/* Add to the multi handle; on 0 the engine owns x and will call cb once; on
 * an error x is freed (the caller must not touch it) and cb is not called. */
int wk_engine_start(wk_engine *e, wk_xfer *x, wk_done_fn cb, void *arg, char *errstr,
                    size_t errlen);

const wk_settings *wk_engine_settings(const wk_engine *e);

#endif
