/*
 * qry_console.h — the web console's routes on kcqrs-query.
 *
 * What it is for
 *   Serves the console (query-api/console/: plain HTML, CSS and JavaScript
 *   modules, embedded into the binary at build time by the Makefile as
 *   qry_console_assets[]) under /console, its settings at
 *   /console/config.json (the commands API's URL, KCQRS_CONSOLE_COMMANDS_URL)
 *   and GET /api/v1/whoami (the presented key's name and roles: the console
 *   signs in with it and shows only what those roles allow). Every asset
 *   answer carries a Content-Security-Policy that allows scripts, styles and
 *   connections to this origin and the commands API's origin only.
 *
 * What it owns
 *   One qry_console (the commands URL, its origin, the policy text), filled
 *   once by qry_console_init and read-only after; the routes borrow it.
 *
 * Threads: qry_console_init before the server starts; handlers on the HTTP
 *   threads (read-only state, reentrant).
 */
#ifndef QRY_CONSOLE_H
#define QRY_CONSOLE_H

#include <stddef.h>

#include "kq_http.h"

#define QRY_CONSOLE_NROUTES 4
#define QRY_CONSOLE_URL_MAX 512

/* One embedded file (generated: build/gen/qry_console_embed.c). */
typedef struct qry_console_asset {
    const char *name; /* file name under query-api/console/, e.g. "app.js" */
    const unsigned char *data;
    size_t len;
} qry_console_asset;

extern const qry_console_asset qry_console_assets[];
extern const size_t qry_console_assets_count;

typedef struct qry_console {
    char commands_url[QRY_CONSOLE_URL_MAX]; /* without a trailing '/' */
    char origin[QRY_CONSOLE_URL_MAX];       /* scheme://host[:port] of commands_url */
    char csp[2 * QRY_CONSOLE_URL_MAX];
} qry_console;

/*
 * Check `commands_url` (http:// or https://, a host of letters, digits, '.',
 * '-', ':' , '[' or ']', an optional path of URL-safe characters; at most
 * QRY_CONSOLE_URL_MAX - 1 bytes) and fill `c`. KQ_EINVAL with errstr naming
 * the fault otherwise.
 */
int qry_console_init(qry_console *c, const char *commands_url, char *errstr, size_t errlen);

/* The asset called `name` (NULL when there is none). */
const qry_console_asset *qry_console_find(const char *name);

/* The Content-Type of a file name by its extension (text/plain for others). */
const char *qry_console_type(const char *name);

/* Fill routes[QRY_CONSOLE_NROUTES] for `c`. */
void qry_console_routes(qry_console *c, kq_http_route *routes);

#endif
