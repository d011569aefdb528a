/*
 * qry_text.c — wire forms of the query API; see qry_text.h.
 */
#include "qry_text.h"

#include <stdio.h>
#include <string.h>

#include "kq_b64.h"
#include "kq_err.h"
#include "kq_json_in.h"

/* ------------------------------------------------------------------ cursors */

static void put64(uint8_t *p, int64_t v)
{
    for (int i = 7; i >= 0; i--, v = (int64_t)((uint64_t)v >> 8))
        p[i] = (uint8_t)v;
}

static int64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return (int64_t)v;
}

int qry_cursor_encode(const qry_cursor *c, char *out)
{
    uint8_t buf[96];
    size_t n = 0, idlen;

    buf[n++] = QRY_CURSOR_V1;
    buf[n++] = (uint8_t)c->kind;
    switch (c->kind) {
    case QRY_CURSOR_BY_STATUS:
    case QRY_CURSOR_WORKFLOWS:
    case QRY_CURSOR_RUNS:
        buf[n++] = c->status;
        /* fall through */
    case QRY_CURSOR_RESOURCES:
        if (!kq_jin_id_valid(c->id))
            return KQ_EINVAL;
        idlen = strlen(c->id);
        memcpy(buf + n, c->id, idlen);
        n += idlen;
        break;
    case QRY_CURSOR_EVENTS:
        put64(buf + n, c->num);
        n += 8;
        break;
    case QRY_CURSOR_AUDIT:
        put64(buf + n, c->num);
        memcpy(buf + n + 8, c->uuid, 16);
        n += 24;
        break;
    default:
        return KQ_EINVAL;
    }
    kq_b64_encode(buf, n, out);
    return 0;
}

int qry_cursor_decode(const char *s, qry_cursor_kind kind, uint8_t status, qry_cursor *c,
                      char *errstr, size_t errlen)
{
    uint8_t buf[96];
    int n;
    size_t idlen, off;

    if (s == NULL || strlen(s) >= QRY_CURSOR_MAX)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "not a cursor of this listing");
    n = kq_b64_decode(s, buf, sizeof buf);
    if (n < 2)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "not a cursor of this listing");
    if (buf[0] != QRY_CURSOR_V1)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "unknown cursor version");
    if (buf[1] != (uint8_t)kind)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "cursor belongs to another listing");
    memset(c, 0, sizeof *c);
    c->kind = kind;
    switch (kind) {
    case QRY_CURSOR_BY_STATUS:
    case QRY_CURSOR_WORKFLOWS:
    case QRY_CURSOR_RUNS:
    case QRY_CURSOR_RESOURCES:
        off = 2;
        if (kind != QRY_CURSOR_RESOURCES) {
            if (n < 3 || buf[2] != status)
                return kq_seterr(errstr, errlen, KQ_EINVAL,
                                 "cursor belongs to another status filter");
            c->status = buf[2];
            off = 3;
        }
        idlen = (size_t)n - off;
        if (idlen < 1 || idlen > 64)
            return kq_seterr(errstr, errlen, KQ_EINVAL, "not a cursor of this listing");
        memcpy(c->id, buf + off, idlen);
        c->id[idlen] = '\0';
        if (!kq_jin_id_valid(c->id))
            return kq_seterr(errstr, errlen, KQ_EINVAL, "not a cursor of this listing");
        return 0;
    case QRY_CURSOR_EVENTS:
        if (n != 10)
            return kq_seterr(errstr, errlen, KQ_EINVAL, "not a cursor of this listing");
        c->num = get64(buf + 2);
        if (c->num < 0)
            return kq_seterr(errstr, errlen, KQ_EINVAL, "not a cursor of this listing");
        return 0;
    case QRY_CURSOR_AUDIT:
        if (n != 26)
            return kq_seterr(errstr, errlen, KQ_EINVAL, "not a cursor of this listing");
        c->num = get64(buf + 2);
        memcpy(c->uuid, buf + 10, 16);
        return 0;
    }
    return kq_seterr(errstr, errlen, KQ_EINVAL, "not a cursor of this listing");
}

/* ------------------------------------------------------------------ parameters */

int qry_limit_parse(const char *s, int *limit)
{
    int v = 0;

    if (s == NULL) {
        *limit = QRY_LIMIT_DEFAULT;
        return 0;
    }
    if (*s == '\0' || strlen(s) > 4)
        return KQ_EINVAL;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return KQ_EINVAL;
        v = v * 10 + (*p - '0');
    }
    if (v < 1 || v > QRY_LIMIT_MAX)
        return KQ_EINVAL;
    *limit = v;
    return 0;
}

static const char *const status_names[] = {"active", "inactive", "archived"};

int qry_status_parse(const char *s, uint8_t *status)
{
    for (uint8_t i = 0; i < 3; i++)
        if (s != NULL && strcmp(s, status_names[i]) == 0) {
            *status = i;
            return 0;
        }
    return KQ_EINVAL;
}

const char *qry_status_name(uint8_t status)
{
    return status < 3 ? status_names[status] : "unknown";
}

int qry_etag_match(const char *inm, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = inm;

    if (inm == NULL)
        return 0;
    while (*p) {
        const char *start, *end;
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        start = p;
        while (*p && *p != ',')
            p++;
        end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end - start == 1 && *start == '*')
            return 1;
        if (end - start >= 2 && start[0] == 'W' && start[1] == '/')
            start += 2;
        if ((size_t)(end - start) == elen && memcmp(start, etag, elen) == 0)
            return 1;
    }
    return 0;
}

int qry_snapshot_name_valid(const char *s)
{
    size_t n = 0;

    if (s == NULL)
        return 0;
    for (; s[n] != '\0'; n++)
        if (n >= 32 ||
            !((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
            return 0;
    return n >= 1;
}

int qry_snapshot_schema(const char *schema, const char *name, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s_snap_%s", schema, name);

    if (n < 0 || (size_t)n >= outlen || n > 63)
        return KQ_ERANGE;
    return 0;
}
