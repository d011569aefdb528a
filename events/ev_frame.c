/*
 * ev_frame.c — see ev_frame.h.
 */
#include "ev_frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kq_err.h"

int ev_frame_is_bare(const uint8_t *head, size_t len)
{
    return len >= 8 && memcmp(head + 4, "KQEV", 4) == 0;
}

/* Read exactly n bytes, first from pre. Returns bytes obtained (< n at EOF) or -1. */
static long read_n(FILE *f, const uint8_t **pre, size_t *npre, uint8_t *out, size_t n)
{
    size_t got = 0;

    if (*npre > 0) {
        size_t k = *npre < n ? *npre : n;
        memcpy(out, *pre, k);
        *pre += k;
        *npre -= k;
        got = k;
    }
    if (got < n) {
        got += fread(out + got, 1, n - got, f);
        if (got < n && ferror(f))
            return -1;
    }
    return (long)got;
}

int ev_frame_read(FILE *f, const uint8_t *pre, size_t npre, uint8_t **buf, size_t *cap, size_t *len,
                  char *errstr, size_t errlen)
{
    uint8_t h[4];
    uint32_t n;
    long got;

    *len = 0;
    if ((got = read_n(f, &pre, &npre, h, 4)) < 0)
        return kq_seterr(errstr, errlen, KQ_EIO, "reading stdin: %s", strerror(errno));
    if (got == 0)
        return 0;
    if (got < 4)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT,
                         "the stream ends inside a length prefix (%ld of 4 bytes)", got);
    n = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
    if (n == 0 || n > EV_FRAME_MAX)
        return kq_seterr(errstr, errlen, KQ_ERANGE, "frame length %u is not in 1..%u", n,
                         EV_FRAME_MAX);
    if (*cap < n) {
        uint8_t *nb = realloc(*buf, n);
        if (nb == NULL)
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        *buf = nb;
        *cap = n;
    }
    if ((got = read_n(f, &pre, &npre, *buf, n)) < 0)
        return kq_seterr(errstr, errlen, KQ_EIO, "reading stdin: %s", strerror(errno));
    if ((size_t)got < n)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT,
                         "the stream ends inside a record (%ld of %u bytes)", got, n);
    *len = n;
    return 1;
}

int ev_frame_write(FILE *f, const void *rec, size_t len, char *errstr, size_t errlen)
{
    uint8_t h[4];

    if (len == 0 || len > EV_FRAME_MAX)
        return kq_seterr(errstr, errlen, KQ_ERANGE, "record of %zu bytes cannot be framed", len);
    h[0] = (uint8_t)len;
    h[1] = (uint8_t)(len >> 8);
    h[2] = (uint8_t)(len >> 16);
    h[3] = (uint8_t)(len >> 24);
    if (fwrite(h, 1, 4, f) != 4 || fwrite(rec, 1, len, f) != len)
        return kq_seterr(errstr, errlen, KQ_EIO, "writing: %s", strerror(errno));
    return 0;
}

size_t ev_json_compact(char *json, size_t len)
{
    size_t o = 0;
    int in_str = 0, esc = 0;

    for (size_t i = 0; i < len; i++) {
        char c = json[i];
        if (in_str) {
            if (esc)
                esc = 0;
            else if (c == '\\')
                esc = 1;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
            continue;
        }
        json[o++] = c;
    }
    if (o < len)
        json[o] = '\0';
    return o;
}
