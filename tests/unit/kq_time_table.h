/*
 * kq_time_table.h — the table of time inputs and their answers, shared by
 * test_kq_time.c (kq_time_parse itself) and the tests of every place a user
 * types a time (test_qry_api.c: ?since=/?until=; test_aud_cli.c and
 * test_rp_until.c: --since/--until), so the HTTP API and the command-line
 * tools are shown to accept and refuse the same inputs.
 */
#ifndef KQ_TIME_TABLE_H
#define KQ_TIME_TABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct kq_time_case {
    const char *in;
    int ok; /* 1: accepted as `us`; 0: refused, the reason contains `why` */
    int64_t us;
    const char *why;
} kq_time_case;

static const kq_time_case kq_time_cases[] = {
    /* accepted: RFC 3339 */
    {"1970-01-01T00:00:00Z", 1, 0, NULL},
    {"2026-11-22T10:00:00Z", 1, 1795341600000000LL, NULL},
    {"2026-11-22T10:00:00.123456Z", 1, 1795341600123456LL, NULL},
    {"2026-11-22T10:00:00.5Z", 1, 1795341600500000LL, NULL},
    {"2026-11-22T10:00:00.123456789Z", 1, 1795341600123456LL, NULL}, /* truncated */
    {"2026-11-22T10:00:00.1234567Z", 1, 1795341600123456LL, NULL},
    {"2026-11-22T11:00:00.000001+01:00", 1, 1795341600000001LL, NULL},
    {"2026-11-22T05:30:00-04:30", 1, 1795341600000000LL, NULL},
    {"2023-11-14T22:13:20.123456Z", 1, 1700000000123456LL, NULL},
    {"2023-11-15T00:13:20.5+02:00", 1, 1700000000500000LL, NULL},
    {"2024-02-29t00:00:00z", 1, 1709164800000000LL, NULL},
    {"2024-02-29T00:00:00Z", 1, 1709164800000000LL, NULL},
    {"2000-02-29T00:00:00Z", 1, 951782400000000LL, NULL},
    {"1969-12-31T23:59:59Z", 1, -1000000LL, NULL},
    {"1970-01-01T00:30:00+01:00", 1, -1800000000LL, NULL},
    {"1900-01-01T00:00:00Z", 1, -2208988800000000LL, NULL},
    {"0001-01-01T00:00:00Z", 1, -62135596800000000LL, NULL},
    {"9999-12-31T23:59:59.999999Z", 1, 253402300799999999LL, NULL},
    {"0000-12-31T23:00:00-01:00", 1, -62135596800000000LL, NULL}, /* 0001-01-01 in UTC */
    {"2026-11-22T10:00:00+23:59", 1, 1795255260000000LL, NULL},
    /* accepted: @ microseconds since the epoch */
    {"@0", 1, 0, NULL},
    {"@1795341600123456", 1, 1795341600123456LL, NULL},
    {"@-1000000", 1, -1000000LL, NULL},
    {"@-5", 1, -5, NULL},
    {"@007", 1, 7, NULL},
    {"@-62135596800000000", 1, -62135596800000000LL, NULL},
    {"@253402300799999999", 1, 253402300799999999LL, NULL},
    /* refused */
    {"", 0, 0, "empty"},
    {"yesterday", 0, 0, "expected YYYY-MM-DDThh:mm:ss"},
    {"tomorrow", 0, 0, "expected YYYY-MM-DDThh:mm:ss"},
    {"2026-11-22", 0, 0, "expected YYYY-MM-DDThh:mm:ss"},
    {"2026-11-22 10:00:00Z", 0, 0, "expected YYYY-MM-DDThh:mm:ss"},
    {"2026-11-22T10:00Z", 0, 0, "expected YYYY-MM-DDThh:mm:ss"},
    {"26-11-22T10:00:00Z", 0, 0, "expected YYYY-MM-DDThh:mm:ss"},
    {" 2026-11-22T10:00:00Z", 0, 0, "expected YYYY-MM-DDThh:mm:ss"},
    {"2026-11-22T10:00:00", 0, 0, "missing time zone"},
    {"2026-11-22T10:00:00 Z", 0, 0, "missing time zone"},
    {"2026-11-22T10:00:00+0100", 0, 0, "bad UTC offset"},
    {"2026-11-22T10:00:00+24:00", 0, 0, "bad UTC offset"},
    {"2026-11-22T10:00:00+01:60", 0, 0, "bad UTC offset"},
    {"2026-11-22T10:00:00+01", 0, 0, "bad UTC offset"},
    {"2026-11-22T10:00:00Zjunk", 0, 0, "trailing characters"},
    {"2026-11-22T10:00:00+01:00 ", 0, 0, "trailing characters"},
    {"2026-11-22T10:00:00.Z", 0, 0, "no digits after '.'"},
    {"2026-11-22T10:00:00.1234567890Z", 0, 0, "more than 9 fraction digits"},
    {"2026-13-01T00:00:00Z", 0, 0, "field out of range"},
    {"2026-00-01T00:00:00Z", 0, 0, "field out of range"},
    {"2026-11-00T00:00:00Z", 0, 0, "field out of range"},
    {"2026-11-32T00:00:00Z", 0, 0, "field out of range"},
    {"2026-11-22T24:00:00Z", 0, 0, "field out of range"},
    {"2026-11-22T10:60:00Z", 0, 0, "field out of range"},
    {"2026-11-22T10:00:60Z", 0, 0, "field out of range"}, /* no leap seconds */
    {"2026-02-30T00:00:00Z", 0, 0, "no such date"},
    {"2023-02-29T00:00:00Z", 0, 0, "no such date"},
    {"2023-11-14 22:13:20Z", 0, 0, "expected YYYY-MM-DDThh:mm:ss"},
    {"2023-11-14T22:13:20", 0, 0, "missing time zone"},
    {"2023-11-14T24:00:00Z", 0, 0, "field out of range"},
    {"2023-11-14T22:13:20.Z", 0, 0, "no digits after '.'"},
    {"2023-11-14T22:13:20Zjunk", 0, 0, "trailing characters"},
    {"2026-04-31T00:00:00Z", 0, 0, "no such date"},
    {"2025-02-29T00:00:00Z", 0, 0, "no such date"},
    {"1900-02-29T00:00:00Z", 0, 0, "no such date"},
    {"0000-01-01T00:00:00Z", 0, 0, "outside the years 0001..9999"},
    {"0001-01-01T00:00:00+00:01", 0, 0, "outside the years 0001..9999"},
    {"9999-12-31T23:59:59-23:59", 0, 0, "outside the years 0001..9999"},
    {"@", 0, 0, "not an integer after '@'"},
    {"@-", 0, 0, "not an integer after '@'"},
    {"@+5", 0, 0, "not an integer after '@'"},
    {"@12x", 0, 0, "not an integer after '@'"},
    {"@1.5", 0, 0, "not an integer after '@'"},
    {"@ 1", 0, 0, "not an integer after '@'"},
    {"@99999999999999999999999", 0, 0, "not an integer after '@'"},
    {"@-62135596800000001", 0, 0, "outside the years 0001..9999"},
    {"@253402300800000000", 0, 0, "outside the years 0001..9999"},
};
static const size_t kq_time_cases_n = sizeof kq_time_cases / sizeof kq_time_cases[0];

#endif
