/*
 * cmd_token.h — the consistency token under its old names (transitional).
 *
 * The token is lib/kq_token.h's ("v1." + base64url of
 * "<topic>:<partition>:<offset>"); these names stay only until every caller
 * calls kq_token_encode / kq_token_parse itself.
 */
#ifndef CMD_TOKEN_H
#define CMD_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "kq_token.h"

#define CMD_TOKEN_MAX KQ_TOKEN_MAX

static inline int cmd_token_encode(const char *topic, int32_t partition, int64_t offset, char *out,
                                   size_t outlen)
{
    return kq_token_encode(topic, partition, offset, out, outlen);
}

static inline int cmd_token_parse(const char *token, char *topic, size_t topiclen,
                                  int32_t *partition, int64_t *offset)
{
    return kq_token_parse(token, topic, topiclen, partition, offset);
}

#endif
