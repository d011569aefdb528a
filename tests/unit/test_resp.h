/*
 * test_resp.h — the HTTP response a unit test collects with libcurl, shared
 * by the tests that drive an in-process kq_http server (test_http.c,
 * test_qry_api.c): body and header callbacks, the parsed JSON, cleanup and
 * the error code of an error body. Header-only: each unit test is one program.
 */
#ifndef TEST_RESP_H
#define TEST_RESP_H

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef struct resp {
    long status;
    char *body;
    size_t len;
    char headers[4096];
    size_t hlen;
    json_t *json;
    double secs; /* request time, for the tests that measure it */
} resp;

/* CURLOPT_WRITEFUNCTION: append to r->body (kept NUL-terminated). */
static inline size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    resp *r = ud;
    char *nb = realloc(r->body, r->len + sz * n + 1);
    if (nb == NULL)
        return 0;
    r->body = nb;
    memcpy(r->body + r->len, p, sz * n);
    r->len += sz * n;
    r->body[r->len] = '\0';
    return sz * n;
}

/* CURLOPT_HEADERFUNCTION: keep the first 4 KiB of header lines. */
static inline size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    resp *r = ud;
    size_t k = sz * n;
    if (r->hlen + k < sizeof r->headers) {
        memcpy(r->headers + r->hlen, p, k);
        r->hlen += k;
        r->headers[r->hlen] = '\0';
    }
    return k;
}

static inline void resp_free(resp *r)
{
    free(r->body);
    json_decref(r->json);
}

/* The "code" of a problem+json error body, NULL if there is none. */
static inline const char *err_code(const resp *r)
{
    return json_string_value(json_object_get(r->json, "code"));
}

#endif
