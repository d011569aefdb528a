/*
 * qry_console.c — the web console's routes: embedded assets, its settings and
 * whoami (see qry_console.h).
 */
#include "qry_console.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "kq_auth.h"
#include "kq_err.h"

static int url_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr("-._~/%", ch) != NULL;
}

static int host_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr(".-:[]", ch) != NULL;
}

int qry_console_init(qry_console *c, const char *url, char *errstr, size_t errlen)
{
    const char *host, *p;
    size_t len, olen;

    memset(c, 0, sizeof *c);
    if (url == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "KCQRS_CONSOLE_COMMANDS_URL is missing");
    len = strlen(url);
    if (strncmp(url, "http://", 7) == 0)
        host = url + 7;
    else if (strncmp(url, "https://", 8) == 0)
        host = url + 8;
    else
        return kq_seterr(errstr, errlen, KQ_EINVAL,
                         "KCQRS_CONSOLE_COMMANDS_URL must start with http:// or https://");
    if (len >= QRY_CONSOLE_URL_MAX)
        return kq_seterr(errstr, errlen, KQ_EINVAL,
                         "KCQRS_CONSOLE_COMMANDS_URL is longer than %d bytes",
                         QRY_CONSOLE_URL_MAX - 1);
    for (p = host; *p != '\0' && *p != '/'; p++)
        if (!host_char((unsigned char)*p))
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "KCQRS_CONSOLE_COMMANDS_URL: bad character in the host");
    if (p == host || *host == ':')
        return kq_seterr(errstr, errlen, KQ_EINVAL, "KCQRS_CONSOLE_COMMANDS_URL has no host");
    olen = (size_t)(p - url);
    for (; *p != '\0'; p++)
        if (!url_char((unsigned char)*p))
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "KCQRS_CONSOLE_COMMANDS_URL: bad character in the path");
    memcpy(c->origin, url, olen);
    c->origin[olen] = '\0';
    while (len > olen && url[len - 1] == '/')
        len--;
    memcpy(c->commands_url, url, len);
    c->commands_url[len] = '\0';
    snprintf(c->csp, sizeof c->csp,
             "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
             "connect-src 'self' %s; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
             c->origin);
    return 0;
}

const qry_console_asset *qry_console_find(const char *name)
{
    for (size_t i = 0; i < qry_console_assets_count; i++)
        if (strcmp(qry_console_assets[i].name, name) == 0)
            return &qry_console_assets[i];
    return NULL;
}

const char *qry_console_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
    };
    const char *dot = strrchr(name, '.');

    for (size_t i = 0; dot != NULL && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "text/plain; charset=utf-8";
}

static void common_headers(kq_http_req *req, const qry_console *c)
{
    kq_http_add_header(req, "Content-Security-Policy", c->csp);
    kq_http_add_header(req, "X-Content-Type-Options", "nosniff");
    kq_http_add_header(req, "Referrer-Policy", "no-referrer");
    kq_http_add_header(req, "Cache-Control", "no-cache");
}

static void serve(kq_http_req *req, const qry_console *c, const char *name)
{
    const qry_console_asset *a = qry_console_find(name);

    if (a == NULL) {
        kq_http_respond_error(req, 404, "not_found", "no such console file", NULL);
        return;
    }
    common_headers(req, c);
    kq_http_respond_text(req, 200, qry_console_type(name), (const char *)a->data, a->len);
}

static void h_index(kq_http_req *req, void *arg)
{
    serve(req, arg, "index.html");
}

static void h_file(kq_http_req *req, void *arg)
{
    serve(req, arg, kq_http_req_param(req, "file"));
}

static void h_config(kq_http_req *req, void *arg)
{
    const qry_console *c = arg;

    common_headers(req, c);
    kq_http_respond_json(req, 200, json_pack("{s:s}", "commands_url", c->commands_url));
}

static void h_whoami(kq_http_req *req, void *arg)
{
    static const struct {
        unsigned bit;
        const char *name;
    } roles[] = {{KQ_AUTH_ROLE_ADMIN, "admin"},
                 {KQ_AUTH_ROLE_WRITER, "writer"},
                 {KQ_AUTH_ROLE_READER, "reader"},
                 {KQ_AUTH_ROLE_AUDITOR, "auditor"},
                 {KQ_AUTH_ROLE_WORKER, "worker"}};
    unsigned have = kq_http_req_roles(req);
    json_t *list = json_array();

    (void)arg;
    for (size_t i = 0; list != NULL && i < sizeof roles / sizeof roles[0]; i++)
        if (have & roles[i].bit)
            json_array_append_new(list, json_string(roles[i].name));
    kq_http_add_header(req, "Cache-Control", "no-store");
    kq_http_respond_json(req, 200,
                         json_pack("{s:s, s:o*}", "actor", kq_http_req_actor(req), "roles", list));
}

void qry_console_routes(qry_console *c, kq_http_route *routes)
{
    const kq_http_route r[QRY_CONSOLE_NROUTES] = {
        {"GET", "/console", KQ_HTTP_PUBLIC, KQ_HTTP_BODY_NONE, "console", h_index, c},
        {"GET", "/console/config.json", KQ_HTTP_PUBLIC, KQ_HTTP_BODY_NONE, "console_config",
         h_config, c},
        {"GET", "/console/{file}", KQ_HTTP_PUBLIC, KQ_HTTP_BODY_NONE, "console_file", h_file, c},
        {"GET", "/api/v1/whoami", KQ_HTTP_ANY_KEY, KQ_HTTP_BODY_NONE, "whoami", h_whoami, c},
    };
    memcpy(routes, r, sizeof r);
}
