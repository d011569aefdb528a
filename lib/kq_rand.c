/*
 * kq_rand.c — see kq_rand.h.
 */
#include "kq_rand.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "kq_err.h"

int kq_rand_bytes(void *buf, size_t len)
{
    unsigned char *p = buf;
    size_t got = 0;

    while (got < len) {
        ssize_t n = getrandom(p + got, len - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return KQ_EIO;
        got += (size_t)n;
    }
    return 0;
}

int kq_uuid_v4(uint8_t u[16])
{
    int rc = kq_rand_bytes(u, 16);

    if (rc != 0)
        return rc;
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40); /* version 4 */
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80); /* variant 10 */
    return 0;
}

static const char hexdig[] = "0123456789abcdef";

void kq_hex_encode(const void *in, size_t len, char *out)
{
    const unsigned char *p = in;

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hexdig[p[i] >> 4];
        out[2 * i + 1] = hexdig[p[i] & 15];
    }
    out[2 * len] = '\0';
}

void kq_uuid_format(const uint8_t u[16], char out[KQ_UUID_STR])
{
    size_t o = 0;

    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hexdig[u[i] >> 4];
        out[o++] = hexdig[u[i] & 15];
    }
    out[o] = '\0';
}

int kq_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int kq_hex_decode(const char *s, size_t len, void *out)
{
    unsigned char *o = out;

    for (size_t i = 0; i < len; i++) {
        int hi = kq_hex_digit((unsigned char)s[2 * i]), lo;
        if (hi < 0 || (lo = kq_hex_digit((unsigned char)s[2 * i + 1])) < 0)
            return KQ_EINVAL;
        o[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

int kq_uuid_parse(const char *s, uint8_t out[16])
{
    uint8_t u[16];

    if (s == NULL || strlen(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' ||
        s[23] != '-' || kq_hex_decode(s, 4, u) != 0 || kq_hex_decode(s + 9, 2, u + 4) != 0 ||
        kq_hex_decode(s + 14, 2, u + 6) != 0 || kq_hex_decode(s + 19, 2, u + 8) != 0 ||
        kq_hex_decode(s + 24, 6, u + 10) != 0)
        return KQ_EINVAL;
    memcpy(out, u, 16);
    return 0;
}

int kq_rand_hex(char *out, size_t nbytes)
{
    unsigned char buf[64];
    size_t done = 0;

    while (done < nbytes) { /* in chunks; the hex goes straight to its place */
        size_t n = nbytes - done < sizeof buf ? nbytes - done : sizeof buf;
        int rc = kq_rand_bytes(buf, n);
        if (rc != 0) {
            out[0] = '\0';
            return rc;
        }
        kq_hex_encode(buf, n, out + 2 * done);
        done += n;
    }
    out[2 * nbytes] = '\0';
    return 0;
}
