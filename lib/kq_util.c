/* kq_util.c — see kq_util.h. */
#include "kq_util.h"
#include "kq_err.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kq_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    /* strtol would skip leading white space and accept '+': we do not */
    if (s == NULL || !((*s >= '0' && *s <= '9') || *s == '-'))
        return KQ_EINVAL;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return KQ_EINVAL;
    *out = v;
    return 0;
}

int kq_parse_duration_s(const char *s, long lo, long hi, long *out)
{
    long v = 0, unit = 1;
    size_t i = 0;

    if (s == NULL || s[0] < '0' || s[0] > '9')
        return KQ_EINVAL;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (LONG_MAX - (s[i] - '0')) / 10)
            return KQ_EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    switch (s[i]) {
    case '\0':
        break;
    case 's':
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    default:
        return KQ_EINVAL;
    }
    if (s[i] != '\0' && s[i + 1] != '\0')
        return KQ_EINVAL;
    if (v > LONG_MAX / unit || v * unit < lo || v * unit > hi)
        return KQ_EINVAL;
    *out = v * unit;
    return 0;
}

int kq_read_file(const char *path, size_t max, char **buf, size_t *len, char *errstr, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t cap = 0, n = 0;
    int rc = 0;

    if (f == NULL)
        return kq_seterr(errstr, errlen, KQ_EIO, "%s: %s", path, strerror(errno));
    for (;;) {
        size_t got;
        if (cap - n < 2) {
            size_t ncap = cap ? cap * 2 : 4096;
            char *nd;
            if (cap > max + 1) {
                rc = kq_seterr(errstr, errlen, KQ_ERANGE, "%s: larger than %zu bytes", path, max);
                goto out;
            }
            if ((nd = realloc(data, ncap)) == NULL) {
                rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "%s: out of memory", path);
                goto out;
            }
            data = nd;
            cap = ncap;
        }
        got = fread(data + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        rc = kq_seterr(errstr, errlen, KQ_EIO, "%s: read error", path);
        goto out;
    }
    if (n > max) {
        rc = kq_seterr(errstr, errlen, KQ_ERANGE, "%s: larger than %zu bytes", path, max);
        goto out;
    }
    data[n] = '\0';
    *buf = data;
    *len = n;
    data = NULL;
out:
    free(data);
    fclose(f);
    return rc;
}
