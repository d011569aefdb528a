/*
 * fuzz_http_route.c — libFuzzer entry point for the HTTP routing of untrusted
 * request lines (lib/kq_http.h: kq_http_route_match, the matcher the server
 * runs on every request).
 *
 * The input is split on '\n' into a method, a decoded path and, optionally, a
 * route pattern. The request is dispatched over a route table like the
 * services' (first route whose pattern matches and whose method is equal;
 * else 405 if some pattern matched, else 404), plus the input's own pattern.
 * For every (pattern, path) an independent matcher (split both on '/', keep
 * empty segments) predicts the answer; on a match the parameters must be
 * views into the pattern and the path, and substituting them into the
 * pattern must give back the path exactly. Invalid patterns must give
 * KQ_EINVAL exactly when the independent reading of the pattern rules says
 * so. Any disagreement abort()s.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kq_err.h"
#include "kq_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXSEG 16 /* kq_http's limit on pattern segments */

static const struct {
    const char *method, *pattern;
} routes[] = {
    {"GET", "/health"},
    {"GET", "/ready"},
    {"GET", "/metrics"},
    {"POST", "/api/v1/resources"},
    {"GET", "/api/v1/resources"},
    {"GET", "/api/v1/resources/{id}"},
    {"PUT", "/api/v1/resources/{id}"},
    {"PATCH", "/api/v1/resources/{id}"},
    {"DELETE", "/api/v1/resources/{id}"},
    {"GET", "/api/v1/resources/{id}/events"},
    {"POST", "/api/v1/workflows/{id}/runs"},
    {"GET", "/api/v1/workflows/{id}/runs/{run_id}"},
    {"POST", "/hooks/{workflow_id}"},
    {"GET", "/"},
};
#define NROUTES (sizeof routes / sizeof routes[0])

static void die(const char *what, const char *pattern, const char *path)
{
    fprintf(stderr, "fuzz_http_route: %s (pattern '%s', path '%s')\n", what,
            pattern ? pattern : "(null)", path ? path : "(null)");
    abort();
}

typedef struct {
    const char *s;
    size_t len;
} span;

/* Split s after its leading '/' on every '/', keeping empty pieces. */
static size_t split(const char *s, span *out, size_t max)
{
    size_t n = 0;
    const char *p = s + 1;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (n == max)
            return max + 1;
        out[n].s = p;
        out[n].len = len;
        n++;
        if (e == NULL)
            return n;
        p = e + 1;
    }
}

static int is_param(span sg)
{
    return sg.len >= 3 && sg.s[0] == '{' && sg.s[sg.len - 1] == '}';
}

/* The pattern rules of kq_http.h, read independently: -1 invalid, else segment count. */
static int pattern_segs(const char *pattern, span *segs)
{
    size_t n;
    if (pattern[0] != '/')
        return -1;
    if (strcmp(pattern, "/") == 0)
        return 0;
    n = split(pattern, segs, MAXSEG);
    if (n > MAXSEG)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (segs[i].len == 0)
            return -1;
        if (segs[i].s[0] == '{' && !is_param(segs[i]))
            return -1;
    }
    return (int)n;
}

/* Independent prediction: does `path` match the (valid) pattern? */
static int oracle_match(const span *segs, int nseg, const char *path)
{
    span ps[MAXSEG + 2];
    size_t n;

    if (path[0] != '/')
        return 0;
    if (nseg == 0)
        return strcmp(path, "/") == 0;
    n = split(path, ps, MAXSEG + 1);
    if (n != (size_t)nseg)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (ps[i].len == 0)
            return 0;
        if (!is_param(segs[i]) &&
            (ps[i].len != segs[i].len || memcmp(ps[i].s, segs[i].s, ps[i].len) != 0))
            return 0;
    }
    return 1;
}

static int inside(const char *p, size_t len, const char *base)
{
    size_t blen = strlen(base);
    return p >= base && p <= base + blen && len <= (size_t)(base + blen - p);
}

/* Match and check against the oracle; returns kq_http_route_match's answer. */
static int check(const char *pattern, const char *path)
{
    kq_http_param params[KQ_HTTP_MAX_PARAMS];
    span segs[MAXSEG + 1];
    size_t np = 12345, np0 = 12345, nparam_segs = 0;
    int nseg = pattern_segs(pattern, segs);
    int rc = kq_http_route_match(pattern, path, params, KQ_HTTP_MAX_PARAMS, &np);
    int rc0 = kq_http_route_match(pattern, path, NULL, 0, &np0);

    if (rc != rc0 || np0 != 0)
        die("the answer depends on the params buffer", pattern, path);
    if (nseg < 0) {
        if (rc != KQ_EINVAL || np != 0)
            die("an invalid pattern was not refused", pattern, path);
        return rc;
    }
    if (rc == KQ_EINVAL)
        die("a valid pattern was refused", pattern, path);
    if (rc != oracle_match(segs, nseg, path))
        die(rc ? "matched, the oracle says no" : "no match, the oracle says yes", pattern, path);
    if (rc == 0) {
        if (np != 0)
            die("parameters without a match", pattern, path);
        return rc;
    }
    for (int i = 0; i < nseg; i++)
        nparam_segs += is_param(segs[i]);
    if (np != (nparam_segs < KQ_HTTP_MAX_PARAMS ? nparam_segs : KQ_HTTP_MAX_PARAMS))
        die("wrong parameter count", pattern, path);

    /* substitute the parameters into the pattern: must give the path back */
    {
        char rebuilt[4096];
        size_t at = 0, k = 0;
        for (int i = 0; i < nseg; i++) {
            const char *s = segs[i].s;
            size_t len = segs[i].len;
            if (is_param(segs[i]) && k < np) {
                const kq_http_param *p = &params[k++];
                if (!inside(p->name, p->name_len, pattern) || !inside(p->value, p->value_len, path))
                    die("a parameter view outside its string", pattern, path);
                if (p->value_len == 0 || memchr(p->value, '/', p->value_len) != NULL)
                    die("a parameter value that is not one segment", pattern, path);
                if (p->name != segs[i].s + 1 || p->name_len != segs[i].len - 2)
                    die("a parameter name that is not its segment's", pattern, path);
                s = p->value;
                len = p->value_len;
            } else if (is_param(segs[i])) {
                return rc; /* more than KQ_HTTP_MAX_PARAMS: values beyond are not reported */
            }
            if (at + 1 + len >= sizeof rebuilt)
                return rc;
            rebuilt[at++] = '/';
            memcpy(rebuilt + at, s, len);
            at += len;
        }
        rebuilt[at] = '\0';
        if (nseg > 0 && strcmp(rebuilt, path) != 0)
            die("the parameters do not rebuild the path", pattern, path);
    }
    return rc;
}

/* The next '\n'-terminated piece of the input as a NUL-terminated copy (caller frees). */
static char *piece(const uint8_t **data, size_t *size)
{
    const uint8_t *nl = memchr(*data, '\n', *size);
    size_t len = nl ? (size_t)(nl - *data) : *size;
    char *s = malloc(len + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, *data, len);
    s[len] = '\0';
    *data += nl ? len + 1 : len;
    *size -= nl ? len + 1 : len;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *method = piece(&data, &size);
    char *path = piece(&data, &size);
    char *pattern = size > 0 ? piece(&data, &size) : NULL;
    int status = 404;

    if (method == NULL || path == NULL)
        goto out;
    for (size_t i = 0; i < NROUTES; i++) {
        int rc = check(routes[i].pattern, path);
        if (rc == KQ_EINVAL)
            die("the route table's own pattern was refused", routes[i].pattern, path);
        if (rc == 1 && strcmp(routes[i].method, method) == 0) {
            status = 200;
            break;
        }
        if (rc == 1)
            status = 405;
    }
    if (status == 200 && path[0] != '/')
        die("dispatched a path without a leading '/'", NULL, path);
    if (pattern != NULL) {
        check(pattern, path);
        /* the pattern matches its own instance with every {x} replaced by "v" */
        span segs[MAXSEG + 1];
        int n = pattern_segs(pattern, segs);
        if (n > 0) {
            char inst[4096];
            size_t at = 0;
            for (int i = 0; i < n && at + 2 + segs[i].len < sizeof inst; i++) {
                inst[at++] = '/';
                if (is_param(segs[i])) {
                    inst[at++] = 'v';
                } else {
                    memcpy(inst + at, segs[i].s, segs[i].len);
                    at += segs[i].len;
                }
            }
            inst[at] = '\0';
            if (strlen(pattern) + 1 < sizeof inst && check(pattern, inst) != 1)
                die("a pattern does not match its own instance", pattern, inst);
        }
    }
out:
    free(method);
    free(path);
    free(pattern);
    return 0;
}
