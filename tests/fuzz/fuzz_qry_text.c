/*
 * fuzz_qry_text.c — libFuzzer entry point for the query API's parsers of
 * untrusted query parameters and headers (query-api/qry_text.h; times,
 * base64url and UUIDs are lib/kq_time.h, kq_b64.h, kq_rand.h): cursors,
 * RFC 3339 times, base64url, limits, statuses, UUIDs, If-None-Match.
 *
 * The first byte picks the parser, the rest (NUL-terminated) is its input.
 * Whatever parses must survive a round trip: a decoded cursor re-encodes to a
 * cursor that decodes to the same fields; a parsed time formats to a string
 * that parses to the same microsecond; decoded base64url re-encodes to bytes
 * that decode the same; a parsed UUID formats and parses to the same bytes; a
 * parsed limit is in 1..QRY_LIMIT_MAX. Any disagreement abort()s.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kq_b64.h"
#include "kq_rand.h"
#include "kq_time.h"
#include "qry_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_cursor(const char *s, qry_cursor_kind kind, uint8_t status)
{
    qry_cursor c, d;
    char enc[QRY_CURSOR_MAX], err[128];

    memset(&c, 0, sizeof c);
    if (qry_cursor_decode(s, kind, status, &c, err, sizeof err) != 0)
        return;
    if (c.kind != kind || (kind == QRY_CURSOR_BY_STATUS && c.status != status))
        abort();
    if (qry_cursor_encode(&c, enc) != 0)
        abort();
    memset(&d, 0, sizeof d);
    if (qry_cursor_decode(enc, kind, status, &d, err, sizeof err) != 0)
        abort();
    if (d.kind != c.kind || d.status != c.status || strcmp(d.id, c.id) != 0 || d.num != c.num ||
        memcmp(d.uuid, c.uuid, 16) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s;
    uint8_t sel;

    if (size < 1 || size > 4096)
        return 0;
    sel = data[0];
    if ((s = malloc(size)) == NULL)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';

    switch (sel % 6) {
    case 0: /* cursors of every kind, and of each status */
        check_cursor(s, QRY_CURSOR_RESOURCES, 0);
        for (uint8_t st = 0; st < 3; st++)
            check_cursor(s, QRY_CURSOR_BY_STATUS, st);
        check_cursor(s, QRY_CURSOR_EVENTS, 0);
        check_cursor(s, QRY_CURSOR_AUDIT, 0);
        break;
    case 1: { /* times */
        int64_t us, us2;
        char out[KQ_TIME_MAX];
        if (kq_time_parse(s, &us) == 0) {
            kq_time_format(us, out);
            if (kq_time_parse(out, &us2) != 0 || us2 != us)
                abort();
        }
        break;
    }
    case 2: { /* base64url */
        uint8_t buf[4096], buf2[4096];
        char *enc;
        int n = kq_b64_decode(s, buf, sizeof buf);
        if (n >= 0) {
            if ((size_t)n > sizeof buf || (enc = malloc(4 * ((size_t)n / 3 + 1) + 1)) == NULL)
                abort();
            kq_b64_encode(buf, (size_t)n, enc);
            if (kq_b64_decode(enc, buf2, sizeof buf2) != n || memcmp(buf, buf2, (size_t)n))
                abort();
            free(enc);
        }
        break;
    }
    case 3: { /* limit and status */
        int limit = -1;
        uint8_t st = 0xff;
        if (qry_limit_parse(s, &limit) == 0 && (limit < 1 || limit > QRY_LIMIT_MAX))
            abort();
        if (qry_status_parse(s, &st) == 0 && strcmp(qry_status_name(st), s) != 0)
            abort();
        break;
    }
    case 4: { /* UUIDs */
        uint8_t u[16], u2[16];
        char out[37];
        if (kq_uuid_parse(s, u) == 0) {
            kq_uuid_format(u, out);
            if (kq_uuid_parse(out, u2) != 0 || memcmp(u, u2, 16) != 0)
                abort();
        }
        break;
    }
    default: /* If-None-Match against a few ETags */
        (void)qry_etag_match(s, "\"1\"");
        (void)qry_etag_match(s, "\"9223372036854775807\"");
        break;
    }
    free(s);
    return 0;
}
