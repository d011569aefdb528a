/*
 * ev_cat.c — see ev_cat.h.
 */
#include "ev_cat.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <openssl/evp.h>

#include "ev_frame.h"
#include "ev_json.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_time.h"
#include "kq_util.h"

int ev_cat_parse_spec(const kq_config *cfg, const char *spec, char *topic, size_t tlen,
                      int32_t *partition, int64_t *offset, char *errstr, size_t errlen)
{
    const char *c1 = strchr(spec, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    size_t n = c1 ? (size_t)(c1 - spec) : strlen(spec);
    char name[KQ_KAFKA_TOPIC_MAX], num[32];
    long v;

    *partition = -1;
    *offset = -1;
    if (n == 0 || n >= sizeof name)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "'%s': the topic must be 1..%zu characters",
                         spec, sizeof name - 1);
    if (c2 != NULL && strchr(c2 + 1, ':') != NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "'%s' is not TOPIC[:PARTITION[:OFFSET]]", spec);
    memcpy(name, spec, n);
    name[n] = '\0';
    if (strcmp(name, "resource") == 0 || strcmp(name, "workflow") == 0 || strcmp(name, "run") == 0)
        n = (size_t)kq_config_topic(cfg, name, topic, tlen);
    else if (strcmp(name, "dlq") == 0)
        n = (size_t)snprintf(topic, tlen, "%s.dlq", cfg->topic_prefix);
    else
        n = (size_t)snprintf(topic, tlen, "%s", name);
    if (n >= tlen)
        return kq_seterr(errstr, errlen, KQ_ERANGE, "topic name too long");
    if (c1 != NULL) {
        size_t k = c2 ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1);
        if (k == 0 || k >= sizeof num)
            return kq_seterr(errstr, errlen, KQ_EINVAL, "'%s': bad partition", spec);
        memcpy(num, c1 + 1, k);
        num[k] = '\0';
        if (kq_parse_long(num, 0, INT32_MAX, &v) != 0)
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "'%s': the partition '%s' is not an integer >= 0", spec, num);
        *partition = (int32_t)v;
    }
    if (c2 != NULL) {
        if (kq_parse_long(c2 + 1, 0, INT64_MAX, &v) != 0)
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "'%s': the offset '%s' is not an integer >= 0", spec, c2 + 1);
        *offset = v;
    }
    return 0;
}

typedef struct cat_part {
    int32_t partition;
    int64_t end; /* high watermark at start */
    int done;
} cat_part;

static double mono_s(void)
{
    return (double)kq_time_mono_us() / 1e6;
}

/* `s` as a JSON string into the output, or 0 when it is not valid UTF-8. */
static int put_json_string(FILE *out, const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    char *d;

    if (j == NULL)
        return 0;
    d = json_dumps(j, JSON_ENCODE_ANY);
    json_decref(j);
    if (d == NULL)
        return 0;
    fputs(d, out);
    free(d);
    return 1;
}

static void put_base64(FILE *out, const void *p, size_t n)
{
    char *s = malloc(4 * ((n + 2) / 3) + 1);
    if (s == NULL) {
        fputs("\"\"", out);
        return;
    }
    EVP_EncodeBlock((unsigned char *)s, p, (int)n);
    fprintf(out, "\"%s\"", s);
    free(s);
}

static int write_line(FILE *out, const char *topic, const rd_kafka_message_t *m)
{
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    char when[KQ_TIME_MAX], err[256];
    char *json = NULL;
    size_t jlen = 0;
    int rc;

    fprintf(out, "{\"topic\":");
    put_json_string(out, topic, strlen(topic));
    fprintf(out, ",\"partition\":%" PRId32 ",\"offset\":%" PRId64, m->partition, m->offset);
    if (ts >= 0) {
        kq_time_format(ts * 1000, when);
        fprintf(out, ",\"timestamp\":\"%s\"", when);
    }
    if (m->key == NULL) {
        fputs(",\"key\":null", out);
    } else {
        fputs(",\"key\":", out);
        if (!put_json_string(out, m->key, m->key_len)) {
            fputs("null,\"key_base64\":", out);
            put_base64(out, m->key, m->key_len);
        }
    }
    rc = m->payload == NULL ? KQ_ECORRUPT
                            : ev_json_decode(m->payload, m->len, &json, &jlen, err, sizeof err);
    if (rc == 0) {
        jlen = ev_json_compact(json, jlen);
        fputs(",\"event\":", out);
        fwrite(json, 1, jlen, out);
    } else {
        json_t *v = NULL;
        if (rc != KQ_ENOMEM && m->payload == NULL)
            snprintf(err, sizeof err, "no value (a tombstone)");
        fputs(",\"error\":", out);
        put_json_string(out, err, strlen(err));
        if (m->payload != NULL &&
            (v = json_loadb(m->payload, m->len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL)) !=
                NULL) {
            char *d = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
            if (d != NULL)
                fprintf(out, ",\"value\":%s", d);
            free(d);
            json_decref(v);
        } else if (m->payload != NULL) {
            fputs(",\"value_base64\":", out);
            put_base64(out, m->payload, m->len);
        }
    }
    fputs("}\n", out);
    free(json);
    return ferror(out) ? KQ_EIO : 0;
}

int ev_cat_each(const kq_config *cfg, const ev_cat_opts *o, ev_cat_fn fn, void *arg, char *errstr,
                size_t errlen)
{
    char topic[KQ_KAFKA_TOPIC_MAX];
    int32_t only;
    int64_t from;
    rd_kafka_t *rk = NULL;
    rd_kafka_conf_t *conf;
    rd_kafka_topic_partition_list_t *as = NULL;
    cat_part *parts = NULL;
    int nparts = 0, left = 0, rc;
    long long written = 0;
    double last;

    if ((rc = ev_cat_parse_spec(cfg, o->spec, topic, sizeof topic, &only, &from, errstr, errlen)) !=
        0)
        return rc;
    if ((conf = kq_kafka_consumer_conf_new(cfg, "kcqrs-events", errstr, errlen)) == NULL)
        return KQ_EKAFKA;
    if ((rk = kq_kafka_consumer_new(cfg, "kcqrs-events.cat", conf, errstr, errlen)) == NULL)
        return KQ_EKAFKA;
    if ((rc = kq_kafka_topic_partitions(rk, topic, cfg->kafka_timeout_ms, &nparts, NULL, errstr,
                                        errlen)) != 0) {
        if (rc == KQ_ENOTFOUND)
            kq_seterr(errstr, errlen, rc, "topic %s does not exist", topic);
        goto out;
    }
    if (only >= nparts) {
        rc = kq_seterr(errstr, errlen, KQ_ENOTFOUND, "topic %s has partitions 0..%d, not %" PRId32,
                       topic, nparts - 1, only);
        goto out;
    }
    if ((parts = calloc((size_t)nparts, sizeof *parts)) == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        goto out;
    }
    as = rd_kafka_topic_partition_list_new(nparts);
    for (int32_t p = 0; p < nparts; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t err;
        parts[p].partition = p;
        if (only >= 0 && p != only) {
            parts[p].done = 1;
            continue;
        }
        err = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, cfg->kafka_timeout_ms);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rc = kq_seterr(errstr, errlen, KQ_EKAFKA, "end offset of %s [%" PRId32 "]: %s", topic,
                           p, rd_kafka_err2str(err));
            goto out;
        }
        parts[p].end = hi;
        parts[p].done = !o->follow && (hi <= lo || (from >= 0 && from >= hi));
        if (!parts[p].done) {
            rd_kafka_topic_partition_list_add(as, topic, p)->offset =
                from >= 0 ? from : RD_KAFKA_OFFSET_BEGINNING;
            left++;
        }
    }
    if (left == 0)
        goto out;
    {
        rd_kafka_resp_err_t err = rd_kafka_assign(rk, as);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rc = kq_seterr(errstr, errlen, KQ_EKAFKA, "assign: %s", rd_kafka_err2str(err));
            goto out;
        }
    }
    last = mono_s();
    while (left > 0 && (o->max <= 0 || written < o->max)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        cat_part *p;

        if (m == NULL) {
            if (!o->follow && mono_s() - last > 2.0 * cfg->kafka_timeout_ms / 1000.0) {
                rc = kq_seterr(errstr, errlen, KQ_ETIMEDOUT,
                               "no progress for %d ms (%d partitions not at their end)",
                               2 * cfg->kafka_timeout_ms, left);
                goto out;
            }
            continue;
        }
        last = mono_s();
        p = m->partition >= 0 && m->partition < nparts ? &parts[m->partition] : NULL;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (p != NULL && !p->done && !o->follow) {
                p->done = 1;
                left--;
            }
        } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            kq_log_warn("reading %s [%" PRId32 "]: %s", topic, m->partition,
                        rd_kafka_message_errstr(m));
            if (rd_kafka_fatal_error(rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                rc = kq_seterr(errstr, errlen, KQ_EKAFKA, "%s", rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                goto out;
            }
        } else if (p != NULL && !p->done) {
            if (!o->follow && m->offset >= p->end) {
                p->done = 1;
                left--;
            } else {
                if ((rc = fn(arg, topic, m, errstr, errlen)) < 0) {
                    rd_kafka_message_destroy(m);
                    goto out;
                }
                written += rc;
                rc = 0;
                if (!o->follow && m->offset + 1 >= p->end) {
                    p->done = 1;
                    left--;
                }
            }
        }
        rd_kafka_message_destroy(m);
    }
out:
    if (as != NULL)
        rd_kafka_topic_partition_list_destroy(as);
    free(parts);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

typedef struct cat_out {
    FILE *out;
    const ev_cat_opts *o;
} cat_out;

static int cat_write(void *arg, const char *topic, const rd_kafka_message_t *m, char *errstr,
                     size_t errlen)
{
    cat_out *c = arg;
    int rc;

    if (c->o->framed && m->payload == NULL)
        return 0; /* a tombstone has no record to frame */
    rc = c->o->framed ? ev_frame_write(c->out, m->payload, m->len, errstr, errlen)
                      : write_line(c->out, topic, m);
    if (rc != 0)
        return kq_seterr(errstr, errlen, KQ_EIO, "writing stdout failed");
    if (c->o->follow && fflush(c->out) != 0)
        return kq_seterr(errstr, errlen, KQ_EIO, "writing stdout failed");
    return 1;
}

int ev_cat_run(const kq_config *cfg, const ev_cat_opts *o, FILE *out, char *errstr, size_t errlen)
{
    cat_out c = {out, o};
    int rc = ev_cat_each(cfg, o, cat_write, &c, errstr, errlen);

    if (fflush(out) != 0 && rc == 0)
        rc = kq_seterr(errstr, errlen, KQ_EIO, "writing stdout failed");
    return rc;
}
