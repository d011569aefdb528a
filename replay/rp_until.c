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

#include "ev_codec.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_time.h"

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
    kq_tm t;

    kq_time_split(us, &t);
    snprintf(out, len, "until_%04lld%02d%02dt%02d%02d%02d", (long long)t.year, t.mon, t.day, t.hour,
             t.min, t.sec);
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
        /* (a negative time would be a logical offset: before 1970 nothing is earlier) */
        rd_kafka_topic_partition_list_add(tp, topics[i / np], i % np)->offset =
            us < 0 ? 0 : us / 1000;
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

int rp_until_bounds(const kq_config *cfg, const char *const *topics, const char *spec, int64_t us,
                    proj_offset *out, size_t *n, const char **name, char *defname, size_t deflen,
                    char *errstr, size_t errlen)
{
    size_t max = (size_t)NTOPICS * (size_t)cfg->partitions;
    int rc;

    if (spec != NULL) {
        if ((rc = rp_parse_offsets(spec, topics, NTOPICS, cfg->partitions, out, max, n, errstr,
                                   errlen)) != 0)
            return rc;
        if (*name == NULL) {
            rp_default_name(kq_time_now_us(), defname, deflen);
            *name = defname;
        }
        return 0;
    }
    if ((rc = rp_until_resolve(cfg, topics, us, out, n, errstr, errlen)) != 0)
        return rc;
    if (*name == NULL) {
        rp_default_name(us, defname, deflen);
        *name = defname;
    }
    for (size_t k = 0; k < *n; k++)
        kq_log_info("until: %s [%" PRId32 "] ends before offset %" PRId64, out[k].topic,
                    out[k].partition, out[k].next_offset);
    return 0;
}
