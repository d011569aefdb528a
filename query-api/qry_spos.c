/*
 * qry_spos.c — the event stream's position; see qry_spos.h.
 */
#include "qry_spos.h"

#include <string.h>

#include "kq_b64.h"
#include "kq_err.h"

static size_t put_varint(uint8_t *b, uint64_t v)
{
    size_t n = 0;

    while (v >= 0x80) {
        b[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b[n++] = (uint8_t)v;
    return n;
}

/* Read one canonical varint <= INT64_MAX at b[*i..len). 0 or KQ_EINVAL. */
static int get_varint(const uint8_t *b, size_t len, size_t *i, int64_t *out)
{
    uint64_t v = 0;
    unsigned shift = 0;

    for (;;) {
        uint8_t c;
        if (*i >= len || shift > 63)
            return KQ_EINVAL;
        c = b[(*i)++];
        if (shift == 63 && (c & 0x7e) != 0)
            return KQ_EINVAL;
        v |= (uint64_t)(c & 0x7f) << shift;
        if ((c & 0x80) == 0) {
            if (c == 0 && shift > 0) /* overlong */
                return KQ_EINVAL;
            break;
        }
        shift += 7;
    }
    if (v > (uint64_t)INT64_MAX)
        return KQ_EINVAL;
    *out = (int64_t)v;
    return 0;
}

int qry_spos_encode(const qry_spos *p, char *out, size_t outlen)
{
    uint8_t raw[QRY_SPOS_RAW_MAX];
    size_t n = 0;

    raw[n++] = 1;
    for (int t = 0; t < QRY_SPOS_TOPICS; t++) {
        if (p->nparts[t] < 0 || p->nparts[t] > QRY_SPOS_MAX_PARTS)
            return KQ_EINVAL;
        n += put_varint(raw + n, (uint64_t)p->nparts[t]);
        for (int k = 0; k < p->nparts[t]; k++) {
            if (p->next[t][k] < 0)
                return KQ_EINVAL;
            n += put_varint(raw + n, (uint64_t)p->next[t][k]);
        }
    }
    if (KQ_B64_LEN(n) + 1 > outlen)
        return KQ_ERANGE;
    return (int)kq_b64_encode(raw, n, out);
}

int qry_spos_decode(const char *text, qry_spos *p)
{
    uint8_t raw[QRY_SPOS_RAW_MAX];
    size_t i = 1;
    int len;

    memset(p, 0, sizeof *p);
    if (text == NULL || strlen(text) > QRY_SPOS_TEXT_MAX)
        return KQ_EINVAL;
    if ((len = kq_b64_decode(text, raw, sizeof raw)) < 1 || raw[0] != 1)
        return KQ_EINVAL;
    for (int t = 0; t < QRY_SPOS_TOPICS; t++) {
        int64_t np;
        if (get_varint(raw, (size_t)len, &i, &np) != 0 || np > QRY_SPOS_MAX_PARTS)
            goto bad;
        p->nparts[t] = (int)np;
        for (int k = 0; k < p->nparts[t]; k++)
            if (get_varint(raw, (size_t)len, &i, &p->next[t][k]) != 0)
                goto bad;
    }
    if (i == (size_t)len)
        return 0;
bad: /* nothing half-decoded is left */
    memset(p, 0, sizeof *p);
    return KQ_EINVAL;
}
