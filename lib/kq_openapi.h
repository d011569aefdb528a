/*
 * kq_openapi.h — GET /openapi.json: each service's OpenAPI 3.1 description,
 * embedded in the binaries at build time.
 *
 * What it is for
 *   The documents are files of the repository (commands/openapi.json,
 *   query-api/openapi.json, lib/openapi-admin.json for the admin servers of
 *   kcqrs-worker and kcqrs-projector). The Makefile turns them into one
 *   generated C file (build/gen/kq_openapi_docs.c, the bytes of each file and
 *   its length), so a binary serves its document with no path to find at run
 *   time and the document cannot drift from the binary it ships in.
 *
 * What it owns: nothing; the documents are static, read-only data.
 *
 * Threads: any (the handler only reads static data).
 */
#ifndef KQ_OPENAPI_H
#define KQ_OPENAPI_H

#include <stddef.h>

#include "kq_http.h"

typedef struct kq_openapi_doc {
    const char *name; /* "commands", "query", "admin" */
    const char *text; /* the JSON document; NUL-terminated */
    size_t len;       /* bytes of text, without the NUL */
} kq_openapi_doc;

/* The embedded documents (generated from the files named above). */
extern const kq_openapi_doc kq_openapi_commands;
extern const kq_openapi_doc kq_openapi_query;
extern const kq_openapi_doc kq_openapi_admin;

/*
 * Fill *r with the route GET /openapi.json (no key) answering `doc` as
 * application/json. `doc` is borrowed: static storage.
 */
void kq_openapi_route(kq_http_route *r, const kq_openapi_doc *doc);

#endif
