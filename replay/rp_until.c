/*
 * rp_until.c — see rp_until.h.
 */
#include "rp_until.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ev_codec.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"

#define NTOPICS 3
#define POLL_MS 100

int rp_name_valid(const char *name)
{
    size_t n = 0;

    if (name == NULL)
        return 0;
    for (; name[n] != '\0'; n++)
        if (!((name[n] >= 'a' && name[n] <= 'z') || (name[n] >= '0' && name[n] <= '9') ||
              name[n] == '_'))
            return 0;
    return n >= 1 && n <= RP_NAME_MAX;
}

/* Exactly `w` decimal digits at *p; advances *p. */
static int digits(const char **p, int w, int *out)
{
    int v = 0;

    for (int i = 0; i < w; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += w;
    *out = v;
    return 0;
}

static int bad_time(const char *s, const char *why, char *errstr, size_t errlen)
{
    return kq_seterr(errstr, errlen, KQ_EINVAL,
                     "bad TIME '%s': %s (RFC 3339 like 2026-11-22T10:00:00Z or "
                     "2026-11-22T10:00:00.123456+01:00, or @<microseconds since the epoch>)",
                     s, why);
}

int rp_parse_time(const char *s, int64_t *us, char *errstr, size_t errlen)
{
    const char *p = s;
    struct tm tm, chk;
    int Y, M, D, h, m, sec, frac = 0, fd = 0, off = 0;
    time_t t;

    if (s == NULL || *s == '\0')
        return bad_time("", "empty", errstr, errlen);
    if (*s == '@') {
        char *end;
        long long v;
        errno = 0;
        v = strtoll(s + 1, &end, 10);
        if (s[1] == '\0' || *end != '\0' || errno != 0 || v < 0 || !isdigit((unsigned char)s[1]))
            return bad_time(s, "not a non-negative integer after '@'", errstr, errlen);
        *us = v;
        return 0;
    }
    if (digits(&p, 4, &Y) || *p++ != '-' || digits(&p, 2, &M) || *p++ != '-' || digits(&p, 2, &D) ||
        (*p != 'T' && *p != 't'))
        return bad_time(s, "expected YYYY-MM-DDThh:mm:ss", errstr, errlen);
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &m) || *p++ != ':' || digits(&p, 2, &sec))
        return bad_time(s, "expected YYYY-MM-DDThh:mm:ss", errstr, errlen);
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) {
            if (fd >= 9)
                return bad_time(s, "more than 9 fraction digits", errstr, errlen);
            if (fd < 6)
                frac = frac * 10 + (*p - '0');
            fd++;
            p++;
        }
        if (fd == 0)
            return bad_time(s, "no digits after '.'", errstr, errlen);
        for (int i = fd; i < 6; i++)
            frac *= 10;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
            return bad_time(s, "bad UTC offset (expected +hh:mm)", errstr, errlen);
        off = sign * (oh * 3600 + om * 60);
    } else {
        return bad_time(s, "missing time zone (Z or +hh:mm)", errstr, errlen);
    }
    if (*p != '\0')
        return bad_time(s, "trailing characters", errstr, errlen);
    if (Y < 1970 || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 59)
        return bad_time(s, "field out of range", errstr, errlen);
    memset(&tm, 0, sizeof tm);
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec;
    t = timegm(&tm);
    if (gmtime_r(&t, &chk) == NULL || chk.tm_mday != D || chk.tm_mon != M - 1)
        return bad_time(s, "no such date", errstr, errlen);
    t -= off;
    if (t < 0)
        return bad_time(s, "before the epoch", errstr, errlen);
    *us = (int64_t)t * 1000000 + frac;
    return 0;
}

static int bad_spec(const char *item, const char *why, char *errstr, size_t errlen)
{
    return kq_seterr(errstr, errlen, KQ_EINVAL,
                     "bad SPEC item '%s': %s (expected topic:partition=next_offset[,...])", item,
                     why);
}

int rp_parse_offsets(const char *spec, const char *const *topics, int ntopics, int np,
                     proj_offset *out, size_t max, size_t *n, char *errstr, size_t errlen)
{
    char item[512];
    const char *p = spec;

    *n = 0;
    if (spec == NULL || *spec == '\0')
        return kq_seterr(errstr, errlen, KQ_EINVAL, "empty SPEC");
    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char *colon, *eq, *end;
        long part;
        long long off;
        int ti = -1;

        if (len == 0 || len >= sizeof item)
            return bad_spec(len == 0 ? "" : "(too long)", "empty or too long", errstr, errlen);
        memcpy(item, p, len);
        item[len] = '\0';
        p += len + (comma ? 1 : 0);
        if (comma && *p == '\0')
            return bad_spec(item, "trailing ','", errstr, errlen);
        if ((eq = strrchr(item, '=')) == NULL)
            return bad_spec(item, "no '='", errstr, errlen);
        *eq = '\0';
        if ((colon = strrchr(item, ':')) == NULL) {
            *eq = '=';
            return bad_spec(item, "no ':' between topic and partition", errstr, errlen);
        }
        *colon = '\0';
        for (int k = 0; k < ntopics; k++)
            if (strcmp(item, topics[k]) == 0)
                ti = k;
        if (ti < 0) {
            char why[600];
            snprintf(why, sizeof why, "'%s' is not an event topic (%s, %s or %s)", item, topics[0],
                     ntopics > 1 ? topics[1] : "", ntopics > 2 ? topics[2] : "");
            *colon = ':';
            *eq = '=';
            return bad_spec(item, why, errstr, errlen);
        }
        errno = 0;
        part = strtol(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || !isdigit((unsigned char)colon[1]) || part < 0 ||
            part >= np) {
            *colon = ':';
            *eq = '=';
            return bad_spec(item, "partition is not in [0, KCQRS_PARTITIONS)", errstr, errlen);
        }
        off = strtoll(eq + 1, &end, 10);
        if (eq[1] == '\0' || *end != '\0' || errno != 0 || !isdigit((unsigned char)eq[1])) {
            *colon = ':';
            *eq = '=';
            return bad_spec(item, "offset is not a non-negative integer", errstr, errlen);
        }
        for (size_t k = 0; k < *n; k++)
            if (out[k].topic == topics[ti] && out[k].partition == part) {
                *colon = ':';
                *eq = '=';
                return bad_spec(item, "partition given twice", errstr, errlen);
            }
        if (*n >= max)
            return bad_spec(item, "too many items", errstr, errlen);
        out[*n].topic = topics[ti];
        out[*n].partition = (int32_t)part;
        out[*n].next_offset = off;
        (*n)++;
    }
    return 0;
}

void rp_default_name(int64_t us, char *out, size_t len)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;

    gmtime_r(&t, &tm);
    snprintf(out, len, "until_%04d%02d%02dt%02d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ------------------------------------------------------------ TIME -> offsets */

int rp_until_resolve(const kq_config *cfg, const char *const *topics, int64_t us, proj_offset *out,
                     size_t *n, char *errstr, size_t errlen)
{
    int np = cfg->partitions, nparts = NTOPICS * cfg->partitions, left = 0, ret = 0;
    rd_kafka_topic_partition_list_t *tp = NULL, *asg = NULL;
    rd_kafka_t *c = NULL;
    rd_kafka_resp_err_t e;
    int64_t *hi = NULL;
    char group[KQ_KAFKA_TOPIC_MAX + 32];
    int *done = NULL;
    long long idle_ms = 0;

    *n = 0;
    snprintf(group, sizeof group, "%s.replay.until", cfg->topic_prefix);
    if ((c = kq_kafka_consumer_new(cfg, group, NULL, errstr, errlen)) == NULL)
        return KQ_EKAFKA;
    hi = calloc((size_t)nparts, sizeof *hi);
    done = calloc((size_t)nparts, sizeof *done);
    tp = rd_kafka_topic_partition_list_new(nparts);
    if (hi == NULL || done == NULL || tp == NULL) {
        ret = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < nparts; i++) {
        int64_t lo = 0;
        e = rd_kafka_query_watermark_offsets(c, topics[i / np], i % np, &lo, &hi[i],
                                             cfg->kafka_timeout_ms);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            ret = kq_seterr(errstr, errlen, KQ_EKAFKA, "end offset of %s [%d]: %s", topics[i / np],
                            i % np, rd_kafka_err2str(e));
            goto out;
        }
        rd_kafka_topic_partition_list_add(tp, topics[i / np], i % np)->offset = us / 1000;
    }
    e = rd_kafka_offsets_for_times(c, tp, cfg->kafka_timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ret = kq_seterr(errstr, errlen, KQ_EKAFKA, "offsets for times: %s", rd_kafka_err2str(e));
        goto out;
    }
    asg = rd_kafka_topic_partition_list_new(nparts);
    for (int i = 0; i < nparts; i++) {
        rd_kafka_topic_partition_t *p = &tp->elems[i];
        out[i].topic = topics[i / np];
        out[i].partition = i % np;
        out[i].next_offset = hi[i];
        if (p->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            ret = kq_seterr(errstr, errlen, KQ_EKAFKA, "offset for time of %s [%d]: %s",
                            topics[i / np], i % np, rd_kafka_err2str(p->err));
            goto out;
        }
        if (p->offset < 0 || p->offset >= hi[i]) { /* nothing at or after the time */
            done[i] = 1;
            continue;
        }
        rd_kafka_topic_partition_list_add(asg, topics[i / np], i % np)->offset = p->offset;
        left++;
    }
    *n = (size_t)nparts;
    if (left == 0)
        goto out;
    if ((e = rd_kafka_assign(c, asg)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ret = kq_seterr(errstr, errlen, KQ_EKAFKA, "assign: %s", rd_kafka_err2str(e));
        goto out;
    }
    while (left > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, POLL_MS);
        int i = -1;

        if (m == NULL) {
            if ((idle_ms += POLL_MS) > cfg->kafka_timeout_ms) {
                ret = kq_seterr(errstr, errlen, KQ_ETIMEDOUT,
                                "no record for %d ms while looking for the end offsets",
                                cfg->kafka_timeout_ms);
                goto out;
            }
            continue;
        }
        idle_ms = 0;
        if (m->rkt != NULL && m->partition >= 0 && m->partition < np)
            for (int ti = 0; ti < NTOPICS; ti++)
                if (strcmp(rd_kafka_topic_name(m->rkt), topics[ti]) == 0)
                    i = ti * np + m->partition;
        if (i < 0 || done[i]) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            out[i].next_offset = m->offset < hi[i] ? m->offset : hi[i];
            done[i] = 1;
            left--;
        } else if (m->err) {
            kq_log_warn("until: consumer: %s", rd_kafka_message_errstr(m));
        } else if (m->offset >= hi[i]) {
            done[i] = 1;
            left--;
        } else {
            ev_envelope env;
            char derr[256];
            if (m->payload != NULL &&
                ev_envelope_decode(m->payload, m->len, &env, derr, sizeof derr) == 0 &&
                env.occurred_at_us > us) {
                out[i].next_offset = m->offset;
                done[i] = 1;
                left--;
            }
        }
        rd_kafka_message_destroy(m);
    }
out:
    if (ret != 0)
        *n = 0;
    if (tp != NULL)
        rd_kafka_topic_partition_list_destroy(tp);
    if (asg != NULL)
        rd_kafka_topic_partition_list_destroy(asg);
    free(hi);
    free(done);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return ret;
}
