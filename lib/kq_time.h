/*
 * kq_time.h — instants as kcqrs prints and reads them, and the clocks.
 *
 * What it is for
 *   One RFC 3339 printer and one parser for everything a user types or reads:
 *   the query API's ?since=/?until= and times in JSON bodies, kcqrs-audit's
 *   and kcqrs-replay's --since/--until, the read models' timestamps. Because
 *   both sides call kq_time_parse, the HTTP API and the command-line tools
 *   accept and refuse exactly the same inputs.
 *
 * The accepted inputs (the unit test tests/unit/test_kq_time.c lists a table):
 *   - an RFC 3339 date-time "YYYY-MM-DDThh:mm:ss[.f]Z|±hh:mm": 'T' and 'Z' in
 *     either case, a fraction of 1..9 digits (truncated to microseconds, so a
 *     bound never moves past what was typed), offsets up to ±23:59, real
 *     calendar dates (leap years), no leap second (ss <= 59); the instant,
 *     in UTC, in the years 0001..9999 (so 1969-12-31T23:59:59Z is accepted);
 *   - "@<integer>": microseconds since the Unix epoch, optionally negative,
 *     within the same years.
 *   Anything else (spaces, a missing zone, "+0100", trailing text) is refused.
 *
 * Output: UTC with exactly 6 fraction digits and 'Z'
 * ("2026-11-22T01:07:49.123456Z"); kq_time_parse reads it back exactly.
 *
 * Threads: reentrant, no global state, nothing allocated.
 */
#ifndef KQ_TIME_H
#define KQ_TIME_H

#include <stddef.h>
#include <stdint.h>

#define KQ_TIME_MAX 80 /* "YYYY-MM-DDThh:mm:ss.uuuuuuZ" + NUL, room for any int64 */

/* The smallest and largest instants kq_time_parse accepts (µs since the epoch). */
#define KQ_TIME_MIN_US (-62135596800LL * 1000000)     /* 0001-01-01T00:00:00Z */
#define KQ_TIME_MAX_US (253402300800LL * 1000000 - 1) /* 9999-12-31T23:59:59.999999Z */

/* µs since the epoch -> RFC 3339 UTC with 6 fraction digits into out[KQ_TIME_MAX]. */
void kq_time_format(int64_t us, char out[KQ_TIME_MAX]);

/* Parse `s` (see above) into *us. 0, or KQ_EINVAL with *us untouched. */
int kq_time_parse(const char *s, int64_t *us);

/*
 * kq_time_parse that also says why an input is refused, for the command-line
 * tools: on KQ_EINVAL errstr holds "bad TIME '<s>': <reason> (RFC 3339 like
 * 2026-11-22T10:00:00Z or 2026-11-22T10:00:00.123456+01:00, or
 * @<microseconds since the epoch>)", the reason one of "empty", "missing
 * time zone (Z or +hh:mm)", "no such date", ... (tests/unit/kq_time_table.h).
 */
int kq_time_parse_err(const char *s, int64_t *us, char *errstr, size_t errlen);

/* An instant split into its UTC calendar fields (proleptic Gregorian). */
typedef struct kq_tm {
    int64_t year;
    int mon, day, hour, min, sec; /* mon 1..12, day 1..31 */
    int usec;                     /* 0..999999 */
} kq_tm;
void kq_time_split(int64_t us, kq_tm *t);

/* Wall clock (CLOCK_REALTIME) in µs / ms since the epoch. */
int64_t kq_time_now_us(void);
int64_t kq_time_now_ms(void);

/* Monotonic clock (CLOCK_MONOTONIC) in µs / ms, for durations and deadlines. */
int64_t kq_time_mono_us(void);
int64_t kq_time_mono_ms(void);

#endif
