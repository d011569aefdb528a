/*
 * qry_spos.h — the event stream's resumable position (the SSE `id:`).
 *
 * A position is, for each of the three event topics (resource, workflow, run,
 * in that order), the next offset to read of every partition. The stream
 * delivers each partition in offset order, so the events already delivered
 * are, per partition, exactly those below its next offset: resuming at a
 * position repeats nothing and skips nothing, whatever filter was used.
 *
 * Wire form: base64url without padding (lib/kq_b64.h) of
 *   byte 1 (format version), then per topic: varint partition count, then
 *   that many varint next offsets
 * (varint: unsigned LEB128, canonical, at most INT64_MAX). Opaque to clients.
 * At most QRY_SPOS_MAX_PARTS partitions per topic; QRY_SPOS_TEXT_MAX bounds
 * the text.
 *
 * Threads: pure functions, no allocation.
 */
#ifndef QRY_SPOS_H
#define QRY_SPOS_H

#include <stddef.h>
#include <stdint.h>

#define QRY_SPOS_TOPICS 3
#define QRY_SPOS_MAX_PARTS 256
#define QRY_SPOS_RAW_MAX (1 + QRY_SPOS_TOPICS * (2 + QRY_SPOS_MAX_PARTS * 10))
#define QRY_SPOS_TEXT_MAX (QRY_SPOS_RAW_MAX / 3 * 4 + 8)

typedef struct qry_spos {
    int nparts[QRY_SPOS_TOPICS];
    int64_t next[QRY_SPOS_TOPICS][QRY_SPOS_MAX_PARTS];
} qry_spos;

/* Encode into out[outlen] (NUL-terminated). Returns the length, or KQ_ERANGE /
 * KQ_EINVAL (a count or offset out of range). */
int qry_spos_encode(const qry_spos *p, char *out, size_t outlen);

/* Decode; 0 or KQ_EINVAL for anything malformed (version, length, overlong or
 * out-of-range varints, too many partitions, trailing bytes; *p is then all zero). */
int qry_spos_decode(const char *text, qry_spos *p);

#endif
