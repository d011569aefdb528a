/*
 * kq_openapi.c — the GET /openapi.json route; see kq_openapi.h. The documents
 * themselves are in the generated build/gen/kq_openapi_docs.c.
 */
#include "kq_openapi.h"

static void h_openapi(kq_http_req *req, void *arg)
{
    const kq_openapi_doc *doc = arg;

    kq_http_add_header(req, "Cache-Control", "no-cache");
    kq_http_respond_text(req, 200, "application/json", doc->text, doc->len);
}

void kq_openapi_route(kq_http_route *r, const kq_openapi_doc *doc)
{
    r->method = "GET";
    r->pattern = "/openapi.json";
    r->role = KQ_HTTP_PUBLIC;
    r->body = KQ_HTTP_BODY_NONE;
    r->name = "openapi";
    r->handler = h_openapi;
    r->arg = (void *)doc;
}
