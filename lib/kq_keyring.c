/*
 * kq_keyring.c — the key topic, read and written; see kq_keyring.h.
 */
#include "kq_keyring.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_map.h"
#include "kq_rand.h"
#include "kq_time.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct held_key {
    uint8_t dek[KQ_CRYPTO_KEY_LEN];
} held_key;

struct kq_keyring {
    const kq_config *cfg; /* borrowed */
    char topic[KQ_KAFKA_TOPIC_MAX];
    kq_kek kek;
    pthread_mutex_t mu;
    kq_map *keys;   /* subject -> held_key */
    kq_map *erased; /* subject -> nothing: a tombstone was read */
    rd_kafka_t *cons;
    rd_kafka_t *prod; /* created at the first write */
    char client_id[64];
    int loaded; /* the topic was read to its end once */
    int partitions;
    int64_t *next; /* [partitions]: next offset to read */
};

static void held_clear(void *v)
{
    memset(v, 0, sizeof(held_key));
}

int kq_keyring_topic(const kq_config *cfg, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s.keys", cfg->topic_prefix);
    return n < 0 || (size_t)n >= outlen ? KQ_ERANGE : 0;
}

/* One record of the key topic: hold its key, or forget an erased subject. */
static int take_record(kq_keyring *kr, const rd_kafka_message_t *m, char *errstr, size_t errlen)
{
    char subject[KQ_SUBJECT_MAX + 1];
    held_key *h;
    int rc;

    if (m->key == NULL || m->key_len == 0 || m->key_len > KQ_SUBJECT_MAX ||
        memchr(m->key, '\0', m->key_len) != NULL) {
        kq_log(KQ_LOG_WARN, "key topic %s: record at %d:%" PRId64 " has no valid subject; ignored",
               kr->topic, (int)m->partition, m->offset);
        return 0;
    }
    memcpy(subject, m->key, m->key_len);
    subject[m->key_len] = '\0';
    if (m->payload == NULL) { /* tombstone: the subject was erased */
        kq_map_remove(kr->keys, subject);
        return kq_map_put(kr->erased, subject, NULL) == NULL
                   ? kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory")
                   : 0;
    }
    kq_map_remove(kr->erased, subject);
    if ((h = kq_map_put(kr->keys, subject, NULL)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    if ((rc = kq_kek_unwrap(&kr->kek, subject, m->payload, m->len, h->dek, NULL, errstr, errlen)) !=
        0) {
        kq_map_remove(kr->keys, subject);
        if (rc == KQ_EINVAL) { /* not a wrapped key at all: one bad record stops nothing */
            kq_log(KQ_LOG_WARN,
                   "key topic %s: record at %d:%" PRId64 " is not a wrapped data key; ignored "
                   "(the key of %s counts as missing)",
                   kr->topic, (int)m->partition, m->offset, subject);
            return 0;
        }
        return KQ_ECONFIG; /* a KEK version missing from the file, or a wrong KEK */
    }
    return 0;
}

/* Read every partition from kr->next to its current end (high watermark). */
static int read_to_end(kq_keyring *kr, char *errstr, size_t errlen)
{
    int64_t *high = calloc((size_t)kr->partitions, sizeof *high);
    rd_kafka_topic_partition_list_t *tp = NULL;
    int64_t deadline = 0, until = kq_time_mono_us() + (int64_t)kr->cfg->kafka_timeout_ms * 1000;
    int pending = 0, rc = 0;

    if (high == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    for (int p = 0; p < kr->partitions; p++) {
        int64_t lo = 0, hi = 0, left_ms = (until - kq_time_mono_us()) / 1000;
        /* one bound for all partitions: a broker that is down costs one timeout, not one each */
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
            kr->cons, kr->topic, p, &lo, &hi, left_ms > 100 ? (int)left_ms : 100);
        if (err) {
            rc = kq_seterr(errstr, errlen,
                           err == RD_KAFKA_RESP_ERR__TIMED_OUT ? KQ_ETIMEDOUT : KQ_EKAFKA,
                           "key topic %s: %s", kr->topic, rd_kafka_err2str(err));
            goto out;
        }
        high[p] = hi;
        if (kr->next[p] < hi)
            pending++;
    }
    if (pending == 0)
        goto out;
    if ((tp = rd_kafka_topic_partition_list_new(kr->partitions)) == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        goto out;
    }
    for (int p = 0; p < kr->partitions; p++)
        if (kr->next[p] < high[p])
            rd_kafka_topic_partition_list_add(tp, kr->topic, p)->offset =
                kr->next[p] > 0 ? kr->next[p] : RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(kr->cons, tp) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = kq_seterr(errstr, errlen, KQ_EKAFKA, "key topic %s: assign failed", kr->topic);
        goto out;
    }
    deadline = (int64_t)kr->cfg->kafka_timeout_ms * 3;
    while (pending > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(kr->cons, 100);
        if (m == NULL) {
            if ((deadline -= 100) <= 0) {
                rc = kq_seterr(errstr, errlen, KQ_ETIMEDOUT,
                               "key topic %s: not read to its end in time", kr->topic);
                break;
            }
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < kr->partitions &&
                kr->next[m->partition] < high[m->partition]) {
                kr->next[m->partition] = high[m->partition]; /* aborted/control records */
                pending--;
            }
        } else if (m->err) {
            rc = kq_seterr(errstr, errlen, KQ_EKAFKA, "key topic %s: %s", kr->topic,
                           rd_kafka_message_errstr(m));
        } else if (m->partition >= 0 && m->partition < kr->partitions) {
            int was_pending = kr->next[m->partition] < high[m->partition];
            rc = take_record(kr, m, errstr, errlen);
            kr->next[m->partition] = m->offset + 1;
            if (was_pending && kr->next[m->partition] >= high[m->partition])
                pending--;
        }
        rd_kafka_message_destroy(m);
        if (rc != 0)
            break;
    }
    rd_kafka_assign(kr->cons, NULL);
out:
    if (tp != NULL)
        rd_kafka_topic_partition_list_destroy(tp);
    free(high);
    return rc;
}

int kq_keyring_new(const kq_config *cfg, const char *client_id, kq_keyring **out, char *errstr,
                   size_t errlen)
{
    kq_keyring *kr = calloc(1, sizeof *kr);
    int rc;

    *out = NULL;
    if (kr == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    kr->cfg = cfg;
    pthread_mutex_init(&kr->mu, NULL);
    snprintf(kr->client_id, sizeof kr->client_id, "%s", client_id ? client_id : "kcqrs");
    if ((rc = kq_kek_load(cfg->kek_file, &kr->kek, errstr, errlen)) != 0)
        goto fail;
    if ((rc = kq_keyring_topic(cfg, kr->topic, sizeof kr->topic)) != 0) {
        kq_seterr(errstr, errlen, rc, "topic prefix too long");
        goto fail;
    }
    if ((kr->keys = kq_map_new(sizeof(held_key), held_clear)) == NULL ||
        (kr->erased = kq_map_new(1, NULL)) == NULL ||
        (kr->next = calloc((size_t)cfg->partitions, sizeof *kr->next)) == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        goto fail;
    }
    kr->partitions = cfg->partitions;
    *out = kr;
    return 0;
fail:
    kq_keyring_free(kr);
    return rc;
}

/* Connect (once) and read the topic's new records. Under kr->mu. */
static int load_locked(kq_keyring *kr, char *errstr, size_t errlen)
{
    int first = kr->cons == NULL, rc;

    if (first) {
        char group[KQ_KAFKA_TOPIC_MAX + 32];
        const char *topics[1] = {kr->topic};
        snprintf(group, sizeof group, "%s.keyring", kr->topic);
        if ((kr->cons = kq_kafka_consumer_new(kr->cfg, group, NULL, errstr, errlen)) == NULL)
            return KQ_EKAFKA;
        if ((rc = kq_kafka_ensure_topics(kr->cons, kr->cfg, topics, 1, errstr, errlen)) != 0) {
            rd_kafka_destroy(kr->cons);
            kr->cons = NULL;
            return rc;
        }
    }
    if ((rc = read_to_end(kr, errstr, errlen)) != 0)
        return rc;
    if (!kr->loaded)
        kq_log(KQ_LOG_INFO,
               "%s: %zu data keys read from %s; KEK file %s, new keys wrapped by KEK version %u",
               kr->client_id, kq_map_count(kr->keys), kr->topic, kr->cfg->kek_file,
               (unsigned)kr->kek.current);
    kr->loaded = 1;
    return 0;
}

int kq_keyring_load(kq_keyring *kr, char *errstr, size_t errlen)
{
    int rc;
    pthread_mutex_lock(&kr->mu);
    rc = load_locked(kr, errstr, errlen);
    pthread_mutex_unlock(&kr->mu);
    return rc;
}

int kq_keyring_get(kq_keyring *kr, const char *subject, uint8_t dek[KQ_CRYPTO_KEY_LEN],
                   char *errstr, size_t errlen)
{
    held_key *h;
    int rc = 0;

    pthread_mutex_lock(&kr->mu);
    if ((h = kq_map_get(kr->keys, subject)) == NULL) {
        if ((rc = load_locked(kr, errstr, errlen)) == 0 &&
            (h = kq_map_get(kr->keys, subject)) == NULL)
            rc = kq_seterr(errstr, errlen, KQ_ENOTFOUND,
                           "no data key for %s in %s (erased, or the key topic lost it)", subject,
                           kr->topic);
    }
    if (h != NULL)
        memcpy(dek, h->dek, KQ_CRYPTO_KEY_LEN);
    pthread_mutex_unlock(&kr->mu);
    return rc;
}

int kq_keyring_held(kq_keyring *kr, const char *subject, uint8_t dek[KQ_CRYPTO_KEY_LEN])
{
    held_key *h;
    pthread_mutex_lock(&kr->mu);
    if ((h = kq_map_get(kr->keys, subject)) != NULL)
        memcpy(dek, h->dek, KQ_CRYPTO_KEY_LEN);
    pthread_mutex_unlock(&kr->mu);
    return h != NULL;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->_private != NULL)
        *(rd_kafka_resp_err_t *)m->_private = m->err;
}

static int ensure_producer(kq_keyring *kr, char *errstr, size_t errlen)
{
    char es[512], tmo[16];
    rd_kafka_conf_t *conf;

    if (kr->prod != NULL)
        return 0;
    if ((conf = kq_kafka_conf_new(kr->cfg, "kcqrs-keyring", errstr, errlen)) == NULL)
        return KQ_EKAFKA;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    /* A key write fails (503 to the commands that wait for it) within the delivery
     * timeout, as the writer's transactions do, not librdkafka's default 5 minutes:
     * commands are answered within KCQRS_KAFKA_TIMEOUT_MS. */
    snprintf(tmo, sizeof tmo, "%d", kq_kafka_delivery_timeout_ms(kr->cfg));
    if (rd_kafka_conf_set(conf, "enable.idempotence", "true", es, sizeof es) != 0 ||
        rd_kafka_conf_set(conf, "acks", "all", es, sizeof es) != 0 ||
        rd_kafka_conf_set(conf, "message.timeout.ms", tmo, es, sizeof es) != 0 ||
        rd_kafka_conf_set(conf, "request.timeout.ms", tmo, es, sizeof es) != 0) {
        rd_kafka_conf_destroy(conf);
        return kq_seterr(errstr, errlen, KQ_EKAFKA, "key producer: %s", es);
    }
    if ((kr->prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, es, sizeof es)) == NULL) {
        rd_kafka_conf_destroy(conf); /* still ours when rd_kafka_new fails */
        return kq_seterr(errstr, errlen, KQ_EKAFKA, "key producer: %s", es);
    }
    return 0;
}

/* Produce one wrapped key (not waited for); *result gets its delivery report. */
static int produce_key(kq_keyring *kr, const char *subject, const uint8_t *wrapped, size_t len,
                       rd_kafka_resp_err_t *result, char *errstr, size_t errlen)
{
    rd_kafka_resp_err_t err;
    int part = kq_kafka_partition_for(subject, strlen(subject), kr->partitions);

    *result = RD_KAFKA_RESP_ERR__IN_PROGRESS;
    if (part < 0)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "bad subject %s", subject);
    err = rd_kafka_producev(
        kr->prod, RD_KAFKA_V_TOPIC(kr->topic), RD_KAFKA_V_PARTITION(part),
        RD_KAFKA_V_KEY(subject, strlen(subject)), RD_KAFKA_V_VALUE((void *)wrapped, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(result), RD_KAFKA_V_END);
    if (err)
        return kq_seterr(errstr, errlen, KQ_EKAFKA, "key topic %s: %s", kr->topic,
                         rd_kafka_err2str(err));
    return 0;
}

/* Wait for the delivery of the keys produced (results[0..n)): 0 once all are acknowledged. */
static int flush_keys(kq_keyring *kr, rd_kafka_resp_err_t *results, size_t n, char *errstr,
                      size_t errlen)
{
    /* every report comes by the delivery timeout (message.timeout.ms): a little more */
    rd_kafka_flush(kr->prod, kq_kafka_delivery_timeout_ms(kr->cfg) + 250);
    for (size_t i = 0; i < n; i++)
        if (results[i] == RD_KAFKA_RESP_ERR__IN_PROGRESS) {
            rd_kafka_purge(kr->prod, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            rd_kafka_flush(kr->prod, 1000);
            return kq_seterr(errstr, errlen, KQ_ETIMEDOUT, "key topic %s: write timed out",
                             kr->topic);
        }
    for (size_t i = 0; i < n; i++)
        if (results[i])
            return kq_seterr(errstr, errlen, KQ_EKAFKA, "key topic %s: %s", kr->topic,
                             rd_kafka_err2str(results[i]));
    return 0;
}

static int write_key(kq_keyring *kr, const char *subject, const uint8_t *wrapped, size_t len,
                     char *errstr, size_t errlen)
{
    rd_kafka_resp_err_t result;
    int rc;

    if ((rc = ensure_producer(kr, errstr, errlen)) != 0 ||
        (rc = produce_key(kr, subject, wrapped, len, &result, errstr, errlen)) != 0)
        return rc;
    return flush_keys(kr, &result, 1, errstr, errlen);
}

int kq_keyring_create_many(kq_keyring *kr, const char *const *subjects, size_t n, char *errstr,
                           size_t errlen)
{
    uint8_t(*fresh)[KQ_CRYPTO_KEY_LEN] = NULL, wrapped[KQ_CRYPTO_WRAPPED_LEN];
    rd_kafka_resp_err_t *results = NULL;
    const char **todo = NULL;
    size_t m = 0;
    int rc = 0;

    if (n == 0)
        return 0;
    fresh = calloc(n, sizeof *fresh);
    results = calloc(n, sizeof *results);
    todo = calloc(n, sizeof *todo);
    if (fresh == NULL || results == NULL || todo == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        goto out;
    }
    pthread_mutex_lock(&kr->mu);
    if ((rc = ensure_producer(kr, errstr, errlen)) != 0)
        goto unlock;
    for (size_t i = 0; i < n; i++) {
        int dup = 0;
        if (strlen(subjects[i]) > KQ_SUBJECT_MAX) {
            rc = kq_seterr(errstr, errlen, KQ_EINVAL, "subject too long");
            goto unlock;
        }
        for (size_t k = 0; k < m && !dup; k++)
            dup = strcmp(todo[k], subjects[i]) == 0;
        if (dup || kq_map_get(kr->keys, subjects[i]) != NULL || kq_map_get(kr->erased, subjects[i]))
            continue;
        if (kq_rand_bytes(fresh[m], KQ_CRYPTO_KEY_LEN) != 0) {
            rc = kq_seterr(errstr, errlen, KQ_EIO, "no randomness for a data key");
            goto unlock;
        }
        if ((rc = kq_kek_wrap(&kr->kek, subjects[i], fresh[m], wrapped, errstr, errlen)) != 0 ||
            (rc = produce_key(kr, subjects[i], wrapped, sizeof wrapped, &results[m], errstr,
                              errlen)) != 0) {
            m++; /* its report may still come: wait for it below */
            break;
        }
        todo[m++] = subjects[i];
    }
    if (m > 0) {
        int frc = flush_keys(kr, results, m, errstr, errlen);
        if (rc == 0)
            rc = frc;
    }
    for (size_t k = 0; rc == 0 && k < m; k++) {
        held_key *h = kq_map_put(kr->keys, todo[k], NULL);
        if (h == NULL)
            rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        else
            memcpy(h->dek, fresh[k], KQ_CRYPTO_KEY_LEN);
    }
unlock:
    pthread_mutex_unlock(&kr->mu);
out:
    if (fresh != NULL)
        memset(fresh, 0, n * sizeof *fresh);
    free(fresh);
    free(results);
    free(todo);
    return rc;
}

int kq_keyring_get_or_create(kq_keyring *kr, const char *subject, uint8_t dek[KQ_CRYPTO_KEY_LEN],
                             char *errstr, size_t errlen)
{
    uint8_t fresh[KQ_CRYPTO_KEY_LEN], wrapped[KQ_CRYPTO_WRAPPED_LEN];
    held_key *h;
    int rc;

    if ((rc = kq_keyring_get(kr, subject, dek, errstr, errlen)) != KQ_ENOTFOUND)
        return rc;
    if (strlen(subject) > KQ_SUBJECT_MAX)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "subject too long");
    pthread_mutex_lock(&kr->mu);
    if ((h = kq_map_get(kr->keys, subject)) != NULL) { /* another thread made it meanwhile */
        memcpy(dek, h->dek, KQ_CRYPTO_KEY_LEN);
        goto out;
    }
    if (kq_rand_bytes(fresh, sizeof fresh) != 0) {
        rc = kq_seterr(errstr, errlen, KQ_EIO, "no randomness for a data key");
        goto out;
    }
    if ((rc = kq_kek_wrap(&kr->kek, subject, fresh, wrapped, errstr, errlen)) != 0 ||
        (rc = write_key(kr, subject, wrapped, sizeof wrapped, errstr, errlen)) != 0)
        goto out;
    if ((h = kq_map_put(kr->keys, subject, NULL)) == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        goto out;
    }
    memcpy(h->dek, fresh, sizeof fresh);
    memcpy(dek, fresh, sizeof fresh);
out:
    pthread_mutex_unlock(&kr->mu);
    memset(fresh, 0, sizeof fresh);
    return rc;
}

size_t kq_keyring_count(kq_keyring *kr)
{
    size_t n;
    pthread_mutex_lock(&kr->mu);
    n = kq_map_count(kr->keys);
    pthread_mutex_unlock(&kr->mu);
    return n;
}

int kq_keyring_erased(kq_keyring *kr, const char *subject)
{
    int v;
    pthread_mutex_lock(&kr->mu);
    v = kq_map_get(kr->erased, subject) != NULL;
    pthread_mutex_unlock(&kr->mu);
    return v;
}

int kq_keyring_loaded(kq_keyring *kr)
{
    int v;
    pthread_mutex_lock(&kr->mu);
    v = kr->loaded;
    pthread_mutex_unlock(&kr->mu);
    return v;
}

unsigned kq_keyring_kek_version(const kq_keyring *kr)
{
    return kr->kek.current;
}

void kq_keyring_free(kq_keyring *kr)
{
    if (kr == NULL)
        return;
    if (kr->prod != NULL) {
        rd_kafka_flush(kr->prod, 1000);
        rd_kafka_destroy(kr->prod);
    }
    if (kr->cons != NULL) {
        rd_kafka_consumer_close(kr->cons);
        rd_kafka_destroy(kr->cons);
    }
    kq_map_free(kr->keys);
    kq_map_free(kr->erased);
    free(kr->next);
    kq_kek_wipe(&kr->kek);
    pthread_mutex_destroy(&kr->mu);
    free(kr);
}
