/*
 * kq_token.c — see kq_token.h.
 */
#include "kq_token.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "kq_b64.h"
#include "kq_err.h"

int kq_token_encode(const char *topic, int32_t partition, int64_t offset, char *out, size_t outlen)
{
    char raw[KQ_TOKEN_RAW_MAX + 1];
    int n = snprintf(raw, sizeof raw, "%s:%" PRId32 ":%" PRId64, topic, partition, offset);

    if (n < 0 || (size_t)n >= sizeof raw || outlen < 3 + KQ_B64_LEN((size_t)n) + 1)
        return KQ_ERANGE;
    memcpy(out, "v1.", 3);
    return 3 + (int)kq_b64_encode(raw, (size_t)n, out + 3);
}

/* Decimal s..end in 0..max, no sign, no leading zero. */
static int parse_i64(const char *s, const char *end, int64_t max, int64_t *out)
{
    int64_t v = 0;

    if (s == end || end - s > 19 || (*s == '0' && end - s > 1))
        return KQ_EINVAL;
    for (; s < end; s++) {
        if (*s < '0' || *s > '9' || v > (max - (*s - '0')) / 10)
            return KQ_EINVAL;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return 0;
}

int kq_token_parse(const char *token, char *topic, size_t topiclen, int32_t *partition,
                   int64_t *offset)
{
    uint8_t raw[KQ_TOKEN_RAW_MAX + 1];
    const char *s = (const char *)raw, *c1 = NULL, *c2;
    size_t len;
    int64_t p, o;
    int n;

    if (token == NULL || strncmp(token, "v1.", 3) != 0)
        return KQ_EINVAL;
    token += 3;
    len = strlen(token);
    if (len == 0 || len > KQ_B64_LEN(KQ_TOKEN_RAW_MAX))
        return KQ_EINVAL;
    if ((n = kq_b64_decode(token, raw, KQ_TOKEN_RAW_MAX)) < 0)
        return KQ_EINVAL;
    raw[n] = '\0';
    if (memchr(raw, '\0', (size_t)n) != NULL)
        return KQ_EINVAL;
    c2 = strrchr(s, ':');
    if (c2 == NULL)
        return KQ_EINVAL;
    for (const char *q = s; q < c2; q++)
        if (*q == ':')
            c1 = q; /* the last colon before c2 */
    if (c1 == NULL || c1 == s)
        return KQ_EINVAL;
    if (parse_i64(c1 + 1, c2, INT32_MAX, &p) != 0 || parse_i64(c2 + 1, s + n, INT64_MAX, &o) != 0)
        return KQ_EINVAL;
    if ((size_t)(c1 - s) >= topiclen)
        return KQ_ERANGE;
    memcpy(topic, s, (size_t)(c1 - s));
    topic[c1 - s] = '\0';
    *partition = (int32_t)p;
    *offset = o;
    return 0;
}
