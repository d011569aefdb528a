/*
 * cmd_delta.c — snapshot record buffers; see cmd_delta.h.
 */
#include "cmd_delta.h"
#include "cmd_aggregate.h"
#include "kq_err.h"

#include <stdlib.h>
#include <string.h>

static int reserve(cmd_delta *d, size_t more)
{
    size_t need = d->len + more, cap = d->cap ? d->cap : 4096;
    unsigned char *b;

    if (need <= d->cap)
        return 0;
    while (cap < need)
        cap *= 2;
    if ((b = realloc(d->buf, cap)) == NULL)
        return KQ_ENOMEM;
    d->buf = b;
    d->cap = cap;
    return 0;
}

int cmd_delta_put(cmd_delta *d, char kind, const char *key, const cmd_piece *pieces, int n)
{
    size_t klen = strlen(key), vlen = 0;
    uint16_t k16 = (uint16_t)klen;
    uint32_t v32;
    unsigned char *p;

    for (int i = 0; i < n; i++)
        vlen += pieces[i].n;
    if (klen > CMD_KEY_MAX || vlen > UINT32_MAX || reserve(d, CMD_DELTA_HDR + klen + vlen) != 0) {
        d->lost = 1;
        return KQ_ENOMEM;
    }
    v32 = (uint32_t)vlen;
    p = d->buf + d->len;
    *p++ = (unsigned char)kind;
    memcpy(p, &k16, 2);
    memcpy(p + 2, &v32, 4);
    p += 6;
    memcpy(p, key, klen);
    p += klen;
    for (int i = 0; i < n; i++)
        if (pieces[i].n) {
            memcpy(p, pieces[i].p, pieces[i].n);
            p += pieces[i].n;
        }
    d->len += CMD_DELTA_HDR + klen + vlen;
    d->records++;
    return 0;
}

int cmd_delta_del(cmd_delta *d, char kind, const char *key)
{
    return cmd_delta_put(d, kind, key, NULL, 0);
}

void cmd_delta_reset(cmd_delta *d)
{
    d->len = 0;
    d->records = 0;
    d->full = 0;
    d->lost = 0;
}

void cmd_delta_free(cmd_delta *d)
{
    free(d->buf);
    memset(d, 0, sizeof *d);
}

int cmd_delta_append(cmd_delta *dst, const cmd_delta *src)
{
    if (src->len == 0)
        return 0;
    if (reserve(dst, src->len) != 0)
        return KQ_ENOMEM;
    memcpy(dst->buf + dst->len, src->buf, src->len);
    dst->len += src->len;
    dst->records += src->records;
    dst->lost |= src->lost;
    return 0;
}

int cmd_delta_next(const cmd_delta *d, size_t *pos, char *kind, const char **key, size_t *keylen,
                   const void **val, size_t *vallen)
{
    uint16_t k16;
    uint32_t v32;
    const unsigned char *p;

    if (*pos == d->len)
        return 0;
    if (d->len - *pos < CMD_DELTA_HDR)
        return KQ_ECORRUPT;
    p = d->buf + *pos;
    memcpy(&k16, p + 1, 2);
    memcpy(&v32, p + 3, 4);
    if (d->len - *pos - CMD_DELTA_HDR < (size_t)k16 + v32 ||
        (p[0] != 'i' && cmd_aggregate_of_record((char)p[0]) == NULL))
        return KQ_ECORRUPT;
    *kind = (char)p[0];
    *key = (const char *)p + CMD_DELTA_HDR;
    *keylen = k16;
    *val = p + CMD_DELTA_HDR + k16;
    *vallen = v32;
    *pos += CMD_DELTA_HDR + (size_t)k16 + v32;
    return 1;
}
