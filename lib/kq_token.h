/*
 * kq_token.h — the consistency token: a position in the event log as the
 * client sees it.
 *
 * What it is for
 *   The command service answers every accepted command with the token of the
 *   event it produced (header X-Consistency-Token); the query API parses it
 *   (?consistent_with=, header) and waits until its read model has applied
 *   that position. Both sides link this one module, so they agree on the
 *   format by construction.
 *
 * Wire format: "v1." + base64url without padding (kq_b64.h) of
 * "<topic>:<partition>:<offset>" (decimal, no sign, no leading zeros; the
 * topic is everything before the last two colons and is not empty). Opaque
 * to clients. The decoded text is at most KQ_TOKEN_RAW_MAX bytes (400
 * base64 characters).
 *
 * Threads: reentrant, no global state, nothing allocated.
 */
#ifndef KQ_TOKEN_H
#define KQ_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define KQ_TOKEN_MAX 512     /* a token + NUL always fits */
#define KQ_TOKEN_RAW_MAX 300 /* "<topic>:<partition>:<offset>" */

/*
 * The token of (topic, partition, offset) into out[outlen]. Returns its
 * length, or KQ_ERANGE when it does not fit or the text is over
 * KQ_TOKEN_RAW_MAX bytes.
 */
int kq_token_encode(const char *topic, int32_t partition, int64_t offset, char *out, size_t outlen);

/*
 * Parse a token: the topic into topic[topiclen], partition and offset.
 * 0; KQ_EINVAL for anything malformed (nothing written then); KQ_ERANGE when
 * the topic does not fit topiclen.
 */
int kq_token_parse(const char *token, char *topic, size_t topiclen, int32_t *partition,
                   int64_t *offset);

#endif
