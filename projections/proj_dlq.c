/*
 * proj_dlq.c — see proj_dlq.h.
 */
#include "proj_dlq.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_time.h"
#include "proj_failpoint.h"

struct proj_dlq {
    rd_kafka_t *rk;
    char topic[KQ_KAFKA_TOPIC_MAX];
    int timeout_ms;
};

/* Delivery status of one record: set by the delivery report callback. */
typedef struct dlq_status {
    int done;
    rd_kafka_resp_err_t err;
} dlq_status;

static void dlq_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    dlq_status *st = m->_private;

    (void)rk;
    (void)opaque;
    if (st != NULL) {
        st->err = m->err;
        st->done = 1;
    }
}

int proj_dlq_new(const kq_config *cfg, proj_dlq **out, char *errstr, size_t errlen)
{
    char names[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX], tmo[32];
    rd_kafka_conf_t *conf;
    proj_dlq *d;
    int rc;

    *out = NULL;
    if (kq_kafka_topic_names(cfg, names) < 0)
        return kq_seterr(errstr, errlen, KQ_ERANGE, "topic prefix too long");
    if ((d = calloc(1, sizeof *d)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    snprintf(d->topic, sizeof d->topic, "%s", names[3]);
    d->timeout_ms = cfg->kafka_timeout_ms;
    snprintf(tmo, sizeof tmo, "%d", cfg->kafka_timeout_ms);
    if ((conf = kq_kafka_conf_new(cfg, "kcqrs-projector-dlq", errstr, errlen)) == NULL) {
        free(d);
        return KQ_EKAFKA;
    }
    if ((rc = kq_kafka_conf_set(conf, "enable.idempotence", "true", errstr, errlen)) != 0 ||
        (rc = kq_kafka_conf_set(conf, "acks", "all", errstr, errlen)) != 0 ||
        (rc = kq_kafka_conf_set(conf, "linger.ms", "0", errstr, errlen)) != 0 ||
        (rc = kq_kafka_conf_set(conf, "message.timeout.ms", tmo, errstr, errlen)) != 0) {
        rd_kafka_conf_destroy(conf);
        free(d);
        return rc;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dlq_on_delivery);
    if ((d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errlen)) == NULL) {
        rd_kafka_conf_destroy(conf);
        free(d);
        return KQ_EKAFKA;
    }
    *out = d;
    return 0;
}

static char *b64(const void *p, size_t len)
{
    char *s = malloc(4 * ((len + 2) / 3) + 1);

    if (s != NULL)
        EVP_EncodeBlock((unsigned char *)s, p, (int)len);
    return s;
}

char *proj_dlq_value_json(const proj_event *ev, const char *target, const char *reason,
                          long long at_ms)
{
    char at[40], *v64 = NULL, *k64 = NULL, *out = NULL;
    time_t secs = (time_t)(at_ms / 1000);
    struct tm tm;
    json_t *o = NULL, *key = NULL, *rs;

    gmtime_r(&secs, &tm);
    strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(at + strlen(at), sizeof at - strlen(at), ".%03dZ", (int)(at_ms % 1000));
    if (ev->len > (size_t)1 << 30 || ev->keylen > (size_t)1 << 30)
        return NULL;
    if ((v64 = b64(ev->value ? ev->value : (const uint8_t *)"", ev->value ? ev->len : 0)) == NULL)
        goto out;
    if (ev->key != NULL)
        key = json_stringn(ev->key, ev->keylen); /* NULL when not valid UTF-8 */
    rs = json_string(reason);
    if (rs == NULL) /* reasons are ours, but may quote bytes of the input */
        rs = json_string("(reason not valid UTF-8)");
    o = json_pack("{s:s, s:i, s:I, s:o, s:s, s:o, s:s, s:s}", "topic", ev->topic, "partition",
                  (int)ev->partition, "offset", (json_int_t)ev->offset, "key",
                  key ? key : json_null(), "target", target, "reason", rs, "value_base64", v64,
                  "at", at);
    if (o == NULL)
        goto out;
    if (ev->key != NULL && key == NULL) {
        if ((k64 = b64(ev->key, ev->keylen)) == NULL)
            goto out;
        json_object_set_new(o, "key_base64", json_string(k64));
    }
    out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
    json_decref(o);
    free(v64);
    free(k64);
    return out;
}

int proj_dlq_send(proj_dlq *d, const proj_event *ev, const char *target, const char *reason,
                  char *errstr, size_t errlen)
{
    char key[KQ_KAFKA_TOPIC_MAX + 48];
    dlq_status st = {0, RD_KAFKA_RESP_ERR_NO_ERROR};
    rd_kafka_resp_err_t e;
    char *value;
    int rc = 0;

    snprintf(key, sizeof key, "%s/%" PRId32 "/%" PRId64, ev->topic, ev->partition, ev->offset);
    if ((value = proj_dlq_value_json(ev, target, reason, kq_time_now_ms())) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "dead letter %s: cannot build its value", key);
    e = rd_kafka_producev(d->rk, RD_KAFKA_V_TOPIC(d->topic), RD_KAFKA_V_KEY(key, strlen(key)),
                          RD_KAFKA_V_VALUE(value, strlen(value)),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_HEADER("reason", reason, (ssize_t)strlen(reason)),
                          RD_KAFKA_V_OPAQUE(&st), RD_KAFKA_V_END);
    free(value);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return kq_seterr(errstr, errlen, KQ_EKAFKA, "dead letter %s: produce: %s", key,
                         rd_kafka_err2str(e));
    /* The delivery report fires within message.timeout.ms; flush a little longer. */
    rd_kafka_flush(d->rk, d->timeout_ms + 1000);
    while (!st.done) /* still queued after the timeout: wait for its (failed) report */
        rd_kafka_poll(d->rk, 100);
    if (st.err != RD_KAFKA_RESP_ERR_NO_ERROR)
        rc = kq_seterr(errstr, errlen,
                       st.err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT ? KQ_ETIMEDOUT : KQ_EKAFKA,
                       "dead letter %s: %s", key, rd_kafka_err2str(st.err));
    else {
        kq_log_warn("dead-lettered %s/%" PRId32 "/%" PRId64 " (target %s): %s", ev->topic,
                    ev->partition, ev->offset, target, reason);
        proj_failpoint("dlq_after_produce");
    }
    return rc;
}

void proj_dlq_free(proj_dlq *d)
{
    if (d == NULL)
        return;
    rd_kafka_flush(d->rk, d->timeout_ms);
    rd_kafka_destroy(d->rk);
    free(d);
}
