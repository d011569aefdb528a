/*
 * kq_util.h — small helpers every module needs and none should re-invent:
 * strict integer and duration parsing and bounded whole-file reads.
 *
 * Reentrant; no global state.
 */
#ifndef KQ_UTIL_H
#define KQ_UTIL_H

#include <stddef.h>

/*
 * Parse all of `s` as a base-10 long in lo..hi. Leading/trailing garbage, an
 * empty string, overflow or a value out of range give KQ_EINVAL and leave
 * *out untouched.
 */
int kq_parse_long(const char *s, long lo, long hi, long *out);

/*
 * Parse all of `s` as a duration in seconds: 1*DIGIT followed by one unit,
 * s (seconds), m (minutes), h (hours) or d (days); a bare number is seconds
 * ("24h", "90m", "3600s", "3600"). The result must be in lo..hi seconds.
 * Anything else (spaces, signs, fractions, two units, overflow) gives
 * KQ_EINVAL and leaves *out untouched.
 */
int kq_parse_duration_s(const char *s, long lo, long hi, long *out);

/*
 * Read the whole file at `path` into a malloc'd, NUL-terminated buffer
 * (*buf, owned by the caller; *len excludes the NUL). Files over `max` bytes
 * give KQ_ERANGE; open/read failures KQ_EIO, with the path in errstr.
 */
int kq_read_file(const char *path, size_t max, char **buf, size_t *len, char *errstr,
                 size_t errlen);

#endif
