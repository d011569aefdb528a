/*
 * kq_time.c — see kq_time.h.
 */
#include "kq_time.h"

#include <stdio.h>
#include <time.h>

#include "kq_err.h"

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

void kq_time_split(int64_t us, kq_tm *t)
{
    int64_t secs = us / 1000000, frac = us % 1000000, days;
    unsigned m, d, sod;

    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    days = secs / 86400;
    if (secs % 86400 < 0)
        days -= 1;
    sod = (unsigned)(secs - days * 86400);
    civil_from_days(days, &t->year, &m, &d);
    t->mon = (int)m;
    t->day = (int)d;
    t->hour = (int)(sod / 3600);
    t->min = (int)(sod / 60 % 60);
    t->sec = (int)(sod % 60);
    t->usec = (int)frac;
}

void kq_time_format(int64_t us, char out[KQ_TIME_MAX])
{
    kq_tm t;

    kq_time_split(us, &t);
    snprintf(out, KQ_TIME_MAX, "%04lld-%02d-%02dT%02d:%02d:%02d.%06dZ", (long long)t.year, t.mon,
             t.day, t.hour, t.min, t.sec, t.usec);
}

/* Exactly n decimal digits at *p (stops at a NUL: it is not a digit); advances *p. */
static int digits(const char **p, int n, unsigned *out)
{
    unsigned v = 0;

    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (unsigned)(c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int refuse(const char **why, const char *reason)
{
    if (why != NULL)
        *why = reason;
    return KQ_EINVAL;
}

/* "@<integer µs>" */
static int parse_at(const char *s, int64_t *us, const char **why)
{
    const char *p = s + 1;
    int neg = 0;
    int64_t v = 0;

    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (*p == '\0')
        return refuse(why, "not an integer after '@' (microseconds since the epoch)");
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || v > (INT64_MAX - (*p - '0')) / 10)
            return refuse(why, "not an integer after '@' (microseconds since the epoch)");
        v = v * 10 + (*p - '0');
    }
    if (neg)
        v = -v;
    if (v < KQ_TIME_MIN_US || v > KQ_TIME_MAX_US)
        return refuse(why, "outside the years 0001..9999");
    *us = v;
    return 0;
}

static int parse(const char *s, int64_t *us, const char **why)
{
    static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = s;
    unsigned Y, M, D, h, m, sec, oh = 0, om = 0;
    int64_t frac = 0, scale = 100000, t;
    int sign = 0, fd = 0;

    if (s == NULL || *s == '\0')
        return refuse(why, "empty");
    if (*s == '@')
        return parse_at(s, us, why);
    if (digits(&p, 4, &Y) || *p++ != '-' || digits(&p, 2, &M) || *p++ != '-' || digits(&p, 2, &D) ||
        (*p != 'T' && *p != 't'))
        return refuse(why, "expected YYYY-MM-DDThh:mm:ss");
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &m) || *p++ != ':' || digits(&p, 2, &sec))
        return refuse(why, "expected YYYY-MM-DDThh:mm:ss");
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, fd++) {
            if (fd >= 9)
                return refuse(why, "more than 9 fraction digits");
            frac += (*p - '0') * scale;
            scale /= 10;
        }
        if (fd == 0)
            return refuse(why, "no digits after '.'");
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p++ == '+' ? 1 : -1;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
            return refuse(why, "bad UTC offset (expected +hh:mm)");
    } else {
        return refuse(why, "missing time zone (Z or +hh:mm)");
    }
    if (*p != '\0')
        return refuse(why, "trailing characters");
    if (M < 1 || M > 12 || D < 1 || h > 23 || m > 59 || sec > 59)
        return refuse(why, "field out of range");
    if (D > mdays[M - 1] || (M == 2 && D == 29 && !((Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0)))
        return refuse(why, D > 31 ? "field out of range" : "no such date");
    t = days_from_civil(Y, M, D) * 86400 + h * 3600 + m * 60 + sec;
    t -= sign * (int64_t)(oh * 3600 + om * 60);
    /* In UTC, years 0001..9999 only: what kq_time_format prints back
     * ("9999-12-31T23:59:59-23:59" is in year 10000). */
    if (t < KQ_TIME_MIN_US / 1000000 || t > KQ_TIME_MAX_US / 1000000)
        return refuse(why, "outside the years 0001..9999");
    *us = t * 1000000 + frac;
    return 0;
}

int kq_time_parse(const char *s, int64_t *us)
{
    return parse(s, us, NULL);
}

int kq_time_parse_err(const char *s, int64_t *us, char *errstr, size_t errlen)
{
    const char *why = "invalid";
    int rc = parse(s, us, &why);

    if (rc != 0)
        kq_seterr(errstr, errlen, rc,
                  "bad TIME '%s': %s (RFC 3339 like 2026-11-22T10:00:00Z or "
                  "2026-11-22T10:00:00.123456+01:00, or @<microseconds since the epoch>)",
                  s != NULL ? s : "", why);
    return rc;
}

int64_t kq_time_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t kq_time_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t kq_time_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t kq_time_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
