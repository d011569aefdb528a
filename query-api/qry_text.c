/*
 * qry_text.c — wire forms of the query API; see qry_text.h.
 */
#include "qry_text.h"

#include <stdio.h>
#include <string.h>

#include "ev_codec.h"
#include "kq_err.h"
#include "kq_json_in.h"

/* ------------------------------------------------------------------ times */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void qry_time_format(int64_t us, char *out)
{
    int64_t secs = us / 1000000, frac = us % 1000000, days, y;
    unsigned m, d, sod;

    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    days = secs / 86400;
    if (secs % 86400 < 0)
        days -= 1;
    sod = (unsigned)(secs - days * 86400);
    civil_from_days(days, &y, &m, &d);
    snprintf(out, QRY_TIME_MAX, "%04lld-%02u-%02uT%02u:%02u:%02u.%06lldZ", (long long)y, m, d,
             sod / 3600, sod / 60 % 60, sod % 60, (long long)frac);
}

static int digits(const char *s, int n, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return KQ_EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

int qry_time_parse(const char *s, int64_t *us)
{
    static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    unsigned y, mo, d, h, mi, sec, oh = 0, om = 0;
    int64_t frac = 0, scale = 100000, t;
    const char *p;
    int sign = 0;

    if (s == NULL || strlen(s) < 20)
        return KQ_EINVAL;
    if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || digits(s + 11, 2, &h) ||
        s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &sec))
        return KQ_EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 59)
        return KQ_EINVAL;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return KQ_EINVAL;
    p = s + 19;
    if (*p == '.') {
        int n = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, n++) {
            if (n >= 9)
                return KQ_EINVAL;
            frac += (*p - '0') * scale;
            scale /= 10;
        }
        if (n == 0)
            return KQ_EINVAL;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '+' ? 1 : -1;
        if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return KQ_EINVAL;
        p += 6;
    } else {
        return KQ_EINVAL;
    }
    if (*p != '\0')
        return KQ_EINVAL;
    t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    t -= sign * (int64_t)(oh * 3600 + om * 60);
    /* In UTC, years 0001..9999 only: what qry_time_format can print back
     * ("9999-12-31T23:59:59-23:59" is in year 10000). */
    if (t < days_from_civil(1, 1, 1) * 86400 || t >= days_from_civil(10000, 1, 1) * 86400)
        return KQ_EINVAL;
    *us = t * 1000000 + frac;
    return 0;
}

/* ------------------------------------------------------------------ base64url */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t qry_b64url_encode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0, i = 0;

    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64[v >> 18];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = b64[v >> 6 & 63];
        out[o++] = b64[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64[v >> 18];
        out[o++] = b64[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64[v >> 18];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = b64[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64val(char c)
{
    const char *p = c ? strchr(b64, c) : NULL;
    return p ? (int)(p - b64) : -1;
}

int qry_b64url_decode(const char *in, uint8_t *out, size_t outlen)
{
    size_t n = strlen(in), o = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (n % 4 == 1)
        return KQ_EINVAL;
    for (size_t i = 0; i < n; i++) {
        int v = b64val(in[i]);
        if (v < 0)
            return KQ_EINVAL;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= outlen)
                return KQ_EINVAL;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) /* non-canonical trailing bits */
        return KQ_EINVAL;
    return (int)o;
}

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
    qry_b64url_encode(buf, n, out);
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
    n = qry_b64url_decode(s, buf, sizeof buf);
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

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int qry_uuid_parse(const char *s, uint8_t out[16])
{
    size_t o = 0;

    if (s == NULL || strlen(s) != 36)
        return KQ_EINVAL;
    for (size_t i = 0; i < 36;) {
        int hi, lo;
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i++] != '-')
                return KQ_EINVAL;
            continue;
        }
        hi = hexval(s[i]);
        lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return KQ_EINVAL;
        out[o++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return 0;
}

void qry_uuid_format(const uint8_t u[16], char out[37])
{
    static const char hx[] = "0123456789abcdef";
    size_t o = 0;

    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hx[u[i] >> 4];
        out[o++] = hx[u[i] & 15];
    }
    out[o] = '\0';
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
