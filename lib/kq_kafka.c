/*
 * kq_kafka.c — Kafka client construction, topic administration, keys and
 * partitions; see kq_kafka.h for the contract and the choice of hash.
 */
#include "kq_kafka.h"
#include "kq_err.h"
#include "kq_kprops.h"
#include "kq_log.h"
#include "kq_time.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ helpers */

static int clamp_int(long v, long lo, long hi)
{
    if (v < lo)
        return (int)lo;
    if (v > hi)
        return (int)hi;
    return (int)v;
}

static int is_timeout(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR__TIMED_OUT || err == RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT ||
           err == RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE || err == RD_KAFKA_RESP_ERR__TRANSPORT ||
           err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN;
}

static int err_code(rd_kafka_resp_err_t err)
{
    return is_timeout(err) ? KQ_ETIMEDOUT : KQ_EKAFKA;
}

/*
 * The last failed login or TLS handshake of any Kafka client of this process,
 * seen in librdkafka's own log lines (they arrive on its threads at once; its
 * error events wait for a poll that a client stuck in a timed-out call never
 * makes). librdkafka logs a repeated failure of one connection only once, so
 * the note stays until a request of this module gets a broker's answer
 * (conn_ok: metadata, an admin result, init or commit of a transaction).
 * conn_explain() names it in place of a bare "Timed out".
 */
static pthread_mutex_t conn_mu = PTHREAD_MUTEX_INITIALIZER;
static const char *conn_fail_what;

static void conn_note(const char *buf)
{
    const char *what = NULL;

    if (strstr(buf, "SASL authentication error") != NULL ||
        strstr(buf, "Authentication failed") != NULL)
        what = "Kafka authentication failed (check sasl.username, sasl.password and "
               "sasl.mechanisms in KCQRS_KAFKA_PROPERTIES)";
    else if (strstr(buf, "certificate verify failed") != NULL)
        what = "Kafka broker certificate verify failed (check ssl.ca.location in "
               "KCQRS_KAFKA_PROPERTIES and the host in KCQRS_BROKERS)";
    else if (strstr(buf, "SSL handshake failed") != NULL)
        what = "Kafka TLS handshake failed (see the log)";
    if (what == NULL)
        return;
    pthread_mutex_lock(&conn_mu);
    conn_fail_what = what;
    pthread_mutex_unlock(&conn_mu);
}

/* A broker answered a request: the connections work (again). Returns rc (0). */
static int conn_ok(int rc)
{
    if (rc == 0) {
        pthread_mutex_lock(&conn_mu);
        conn_fail_what = NULL;
        pthread_mutex_unlock(&conn_mu);
    }
    return rc;
}

const char *kq_kafka_conn_failure(void)
{
    const char *what = NULL;

    pthread_mutex_lock(&conn_mu);
    what = conn_fail_what;
    pthread_mutex_unlock(&conn_mu);
    return what;
}

void kq_kafka_ready_why(char *why, size_t whylen)
{
    const char *fail = kq_kafka_conn_failure();
    char was[256];

    if (fail == NULL || why == NULL || whylen == 0 || strstr(why, fail) != NULL)
        return;
    snprintf(was, sizeof was, "%s", why);
    if (was[0] != '\0')
        snprintf(why, whylen, "%s; %s", fail, was);
    else
        snprintf(why, whylen, "%s", fail);
}

/* A timeout while logins or handshakes fail: say that, and what was being done
 * (errstr up to its first ':'), instead of "Timed out". Returns rc. */
static int conn_explain(int rc, char *errstr, size_t errlen)
{
    const char *why;
    char was[128];
    size_t n;

    if (rc != KQ_ETIMEDOUT || errstr == NULL || errlen == 0 ||
        (why = kq_kafka_conn_failure()) == NULL)
        return rc;
    n = strcspn(errstr, ":");
    snprintf(was, sizeof was, "%.*s", (int)(n < sizeof was ? n : sizeof was - 1), errstr);
    snprintf(errstr, errlen, "%s, during %s", why, was);
    return rc;
}

/* librdkafka log lines (syslog levels) into kq_log. Runs on librdkafka threads. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    kq_log_level l;

    if (level <= 4)
        conn_note(buf);

    if (level <= 3)
        l = KQ_LOG_ERROR;
    else if (level == 4)
        l = KQ_LOG_WARN;
    else if (level <= 6)
        l = KQ_LOG_INFO;
    else
        l = KQ_LOG_DEBUG;
    if (kq_log_enabled(l))
        kq_log(l, "rdkafka %s %s: %s", rk ? rd_kafka_name(rk) : "-", fac, buf);
}

/*
 * librdkafka's client-level errors (error_cb; served by the thread that polls
 * the handle). A failed login or TLS handshake is retried by librdkafka at every
 * reconnect (and logged by it as a FAIL line through log_cb): say what to check,
 * at most once per 10 s per kind (fatal errors always), so a service that cannot
 * reach Kafka is never silent and never floods its log.
 */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    static _Atomic int64_t last_auth, last_ssl, last_other;
    _Atomic int64_t *last = &last_other;
    int64_t now = kq_time_mono_ms(), prev;
    const char *hint = "";

    (void)opaque;
    if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
        err == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED) {
        last = &last_auth;
        hint =
            " (check sasl.username, sasl.password and sasl.mechanisms in KCQRS_KAFKA_PROPERTIES)";
    } else if (err == RD_KAFKA_RESP_ERR__SSL) {
        last = &last_ssl;
        hint = " (check ssl.ca.location in KCQRS_KAFKA_PROPERTIES: the broker's certificate must "
               "be signed by a CA it names, for the host in KCQRS_BROKERS)";
    }
    prev = *last;
    if (err != RD_KAFKA_RESP_ERR__FATAL && prev != 0 && now - prev < 10000)
        return;
    *last = now;
    kq_log(last == &last_other ? KQ_LOG_WARN : KQ_LOG_ERROR, "kafka %s: %s: %s%s",
           rk ? rd_kafka_name(rk) : "-", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason, hint);
}

/* ----------------------------------------------------------- configuration */

int kq_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                      size_t errlen)
{
    char es[512];

    if (rd_kafka_conf_set(conf, name, value, es, sizeof es) != RD_KAFKA_CONF_OK) {
        if (kq_kprops_is_secret(name))
            return kq_seterr(errstr, errlen, KQ_ECONFIG, "kafka setting %s: invalid value", name);
        return kq_seterr(errstr, errlen, KQ_ECONFIG, "kafka setting %s=%s: %s", name, value, es);
    }
    return 0;
}

static int conf_set_int(rd_kafka_conf_t *conf, const char *name, long value, char *errstr,
                        size_t errlen)
{
    char v[32];

    snprintf(v, sizeof v, "%ld", value);
    return kq_kafka_conf_set(conf, name, v, errstr, errlen);
}

rd_kafka_conf_t *kq_kafka_conf_new(const kq_config *cfg, const char *client_id, char *errstr,
                                   size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int t = cfg->kafka_timeout_ms;

    if (conf == NULL) {
        kq_seterr(errstr, errlen, KQ_ENOMEM, "rd_kafka_conf_new: out of memory");
        return NULL;
    }
    if (kq_kafka_conf_set(conf, "bootstrap.servers", cfg->brokers, errstr, errlen) != 0 ||
        kq_kafka_conf_set(conf, "client.id", client_id ? client_id : "kcqrs", errstr, errlen) !=
            0 ||
        /* Topics are created only by kq_kafka_ensure_topics(), with our configs. */
        kq_kafka_conf_set(conf, "allow.auto.create.topics", "false", errstr, errlen) != 0 ||
        /* A request to a dead broker fails within the bound, not after 60 s. The
         * floor of 1500 ms keeps it above fetch.wait.max.ms (500) + 1000, which
         * librdkafka requires for consumers. */
        conf_set_int(conf, "socket.timeout.ms", clamp_int(t, 1500, 300000), errstr, errlen) != 0 ||
        conf_set_int(conf, "socket.connection.setup.timeout.ms", clamp_int(t, 1000, 300000), errstr,
                     errlen) != 0 ||
        /* Reconnect quickly after a broker restart (default backoff grows to 10 s). */
        kq_kafka_conf_set(conf, "reconnect.backoff.max.ms", "1000", errstr, errlen) != 0 ||
        /* The operator's KCQRS_KAFKA_PROPERTIES (TLS, SASL, tuning), validated at start. */
        kq_kprops_apply(cfg->kafka_props, conf, errstr, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    return conf;
}

int kq_kafka_conf_bound_queue(rd_kafka_conf_t *conf, long kbytes, char *errstr, size_t errlen)
{
    long fetch;

    if (kbytes <= 0) /* a kq_config not filled by kq_config_load (tests) */
        kbytes = 8192;
    fetch = kbytes * 1024 / 4;
    if (fetch < 1048576)
        fetch = 1048576;
    return kq_kafka_conf_set(conf, "queued.min.messages", "10000000", errstr, errlen) != 0 ||
                   conf_set_int(conf, "queued.max.messages.kbytes", kbytes, errstr, errlen) != 0 ||
                   conf_set_int(conf, "fetch.max.bytes", fetch, errstr, errlen) != 0 ||
                   kq_kafka_conf_set(conf, "fetch.error.backoff.ms", "10", errstr, errlen) != 0
               ? KQ_ECONFIG
               : 0;
}

rd_kafka_conf_t *kq_kafka_consumer_conf_new(const kq_config *cfg, const char *client_id,
                                            char *errstr, size_t errlen)
{
    rd_kafka_conf_t *conf = kq_kafka_conf_new(cfg, client_id, errstr, errlen);

    if (conf != NULL && kq_kafka_conf_bound_queue(conf, cfg->kafka_queue_kb, errstr, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

int kq_kafka_delivery_timeout_ms(const kq_config *cfg)
{
    return clamp_int((long)cfg->kafka_timeout_ms * 3 / 4, 100, 900000);
}

rd_kafka_t *kq_kafka_txn_producer_new(const kq_config *cfg, const char *transactional_id,
                                      rd_kafka_conf_t *conf, char *errstr, size_t errlen)
{
    char es[512];
    rd_kafka_t *rk = NULL;
    long t = cfg->kafka_timeout_ms;
    long txn_timeout = clamp_int(2 * t, 1000, 900000); /* broker max: 15 min by default */

    if (transactional_id == NULL || *transactional_id == '\0') {
        kq_seterr(errstr, errlen, KQ_EINVAL, "transactional producer needs a transactional.id");
        goto out;
    }
    if (conf == NULL && (conf = kq_kafka_conf_new(cfg, transactional_id, errstr, errlen)) == NULL)
        goto out;
    if (kq_kafka_conf_set(conf, "transactional.id", transactional_id, errstr, errlen) != 0 ||
        kq_kafka_conf_set(conf, "enable.idempotence", "true", errstr, errlen) != 0 ||
        kq_kafka_conf_set(conf, "acks", "all", errstr, errlen) != 0 ||
        conf_set_int(conf, "transaction.timeout.ms", txn_timeout, errstr, errlen) != 0 ||
        /* message.timeout.ms (alias delivery.timeout.ms) may not exceed the
         * transaction timeout; it bounds how long commit waits for delivery. */
        conf_set_int(conf, "message.timeout.ms",
                     clamp_int(kq_kafka_delivery_timeout_ms(cfg), 100, txn_timeout), errstr,
                     errlen) != 0 ||
        conf_set_int(conf, "request.timeout.ms",
                     clamp_int(kq_kafka_delivery_timeout_ms(cfg), 100, txn_timeout), errstr,
                     errlen) != 0 ||
        /* librdkafka: socket.timeout.ms <= transaction.timeout.ms + 100. */
        conf_set_int(conf, "socket.timeout.ms", clamp_int(t, 10, txn_timeout), errstr, errlen) != 0)
        goto out;
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, es, sizeof es);
    if (rk == NULL) {
        kq_seterr(errstr, errlen, KQ_EKAFKA, "kafka producer '%s': %s", transactional_id, es);
        goto out;
    }
    conf = NULL; /* owned by rk now */
out:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    return rk;
}

rd_kafka_t *kq_kafka_consumer_new(const kq_config *cfg, const char *group_id, rd_kafka_conf_t *conf,
                                  char *errstr, size_t errlen)
{
    char es[512];
    rd_kafka_t *rk = NULL;

    if (group_id == NULL || *group_id == '\0') {
        kq_seterr(errstr, errlen, KQ_EINVAL, "kafka consumer needs a group.id");
        goto out;
    }
    if (conf == NULL && (conf = kq_kafka_consumer_conf_new(cfg, group_id, errstr, errlen)) == NULL)
        goto out;
    if (kq_kafka_conf_set(conf, "group.id", group_id, errstr, errlen) != 0 ||
        kq_kafka_conf_set(conf, "isolation.level", "read_committed", errstr, errlen) != 0 ||
        kq_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errlen) != 0 ||
        kq_kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, errlen) != 0 ||
        kq_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, errlen) != 0 ||
        kq_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, errlen) != 0)
        goto out;
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, es, sizeof es);
    if (rk == NULL) {
        kq_seterr(errstr, errlen, KQ_EKAFKA, "kafka consumer: %s", es);
        goto out;
    }
    conf = NULL;
    rd_kafka_poll_set_consumer(rk);
out:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    return rk;
}

/* ------------------------------------------------------------------ topics */

int kq_kafka_topic_names(const kq_config *cfg, char names[][KQ_KAFKA_TOPIC_MAX])
{
    static const char *const types[] = {"resource", "workflow", "run"};
    int n;

    for (size_t i = 0; i < 3; i++) {
        n = kq_config_topic(cfg, types[i], names[i], KQ_KAFKA_TOPIC_MAX);
        if (n < 0 || n >= KQ_KAFKA_TOPIC_MAX)
            return KQ_ERANGE;
    }
    n = snprintf(names[3], KQ_KAFKA_TOPIC_MAX, "%s.%s", cfg->topic_prefix, KQ_KAFKA_DLQ_SUFFIX);
    if (n < 0 || n >= KQ_KAFKA_TOPIC_MAX)
        return KQ_ERANGE;
    return KQ_KAFKA_NTOPICS;
}

int kq_kafka_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, int *partitions,
                              int *replication, char *errstr, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t err;
    int rc = 0;

    if (rkt == NULL)
        return kq_seterr(errstr, errlen, KQ_EKAFKA, "topic handle '%s': %s", topic,
                         rd_kafka_err2str(rd_kafka_last_error()));
    err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = kq_seterr(errstr, errlen, err_code(err), "metadata for topic '%s': %s", topic,
                       rd_kafka_err2str(err));
        goto out;
    }
    if (md->topic_cnt != 1 || strcmp(md->topics[0].topic, topic) != 0) {
        rc = kq_seterr(errstr, errlen, KQ_EKAFKA, "metadata for topic '%s': no answer", topic);
        goto out;
    }
    err = md->topics[0].err;
    if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
        rc = kq_seterr(errstr, errlen, KQ_ENOTFOUND, "topic '%s' does not exist", topic);
        goto out;
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = kq_seterr(errstr, errlen, err_code(err), "metadata for topic '%s': %s", topic,
                       rd_kafka_err2str(err));
        goto out;
    }
    *partitions = md->topics[0].partition_cnt;
    if (replication != NULL)
        *replication =
            md->topics[0].partition_cnt > 0 ? md->topics[0].partitions[0].replica_cnt : 0;
out:
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc == 0 ? conn_ok(rc) : conn_explain(rc, errstr, errlen);
}

/* Wait for the one admin result event of type `type` on q. */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q, rd_kafka_event_type_t type, int timeout_ms,
                                    const char *what, int *rc, char *errstr, size_t errlen)
{
    /* The request itself times out after timeout_ms; the extra second lets the
     * timeout result arrive instead of us giving up first. */
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);

    if (ev == NULL) {
        *rc =
            kq_seterr(errstr, errlen, KQ_ETIMEDOUT, "%s: no answer within %d ms", what, timeout_ms);
        *rc = conn_explain(*rc, errstr, errlen);
        return NULL;
    }
    if (rd_kafka_event_type(ev) != type) {
        *rc = kq_seterr(errstr, errlen, KQ_EKAFKA, "%s: unexpected event %s", what,
                        rd_kafka_event_name(ev));
        rd_kafka_event_destroy(ev);
        return NULL;
    }
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        *rc = kq_seterr(errstr, errlen, err_code(rd_kafka_event_error(ev)), "%s: %s", what,
                        rd_kafka_event_error_string(ev));
        *rc = conn_explain(*rc, errstr, errlen);
        rd_kafka_event_destroy(ev);
        return NULL;
    }
    *rc = conn_ok(0);
    return ev;
}

int kq_kafka_topic_config_get(rd_kafka_t *rk, const char *topic, const char *name, int timeout_ms,
                              char *value, size_t valuelen, int *is_default, char *errstr,
                              size_t errlen)
{
    char es[512];
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_event_t *ev = NULL;
    const rd_kafka_ConfigResource_t **rres;
    const rd_kafka_ConfigEntry_t **entries;
    size_t nres, nentries;
    int rc = KQ_ENOTFOUND;

    if (q == NULL || opt == NULL || res == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "describe configs of '%s': out of memory", topic);
        goto out;
    }
    if (rd_kafka_AdminOptions_set_request_timeout(opt, timeout_ms, es, sizeof es) != 0) {
        rc = kq_seterr(errstr, errlen, KQ_EINVAL, "describe configs: %s", es);
        goto out;
    }
    rd_kafka_DescribeConfigs(rk, &res, 1, opt, q);
    ev = admin_wait(q, RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT, timeout_ms, "describe configs", &rc,
                    errstr, errlen);
    if (ev == NULL)
        goto out;
    rres =
        rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &nres);
    if (nres != 1) {
        rc = kq_seterr(errstr, errlen, KQ_EKAFKA, "describe configs of '%s': %zu results", topic,
                       nres);
        goto out;
    }
    if (rd_kafka_ConfigResource_error(rres[0]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_resp_err_t err = rd_kafka_ConfigResource_error(rres[0]);
        rc =
            kq_seterr(errstr, errlen,
                      err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ? KQ_ENOTFOUND : err_code(err),
                      "describe configs of '%s': %s", topic,
                      rd_kafka_ConfigResource_error_string(rres[0])
                          ? rd_kafka_ConfigResource_error_string(rres[0])
                          : rd_kafka_err2str(err));
        goto out;
    }
    entries = rd_kafka_ConfigResource_configs(rres[0], &nentries);
    rc = kq_seterr(errstr, errlen, KQ_ENOTFOUND, "topic '%s' has no config '%s'", topic, name);
    for (size_t i = 0; i < nentries; i++) {
        const char *v;
        if (strcmp(rd_kafka_ConfigEntry_name(entries[i]), name) != 0)
            continue;
        v = rd_kafka_ConfigEntry_value(entries[i]);
        if (v == NULL)
            v = "";
        if (strlen(v) >= valuelen) {
            rc = kq_seterr(errstr, errlen, KQ_ERANGE, "config '%s' of '%s' is too long", name,
                           topic);
            goto out;
        }
        memcpy(value, v, strlen(v) + 1);
        if (is_default != NULL)
            *is_default = rd_kafka_ConfigEntry_is_default(entries[i]);
        rc = 0;
        break;
    }
out:
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    if (res != NULL)
        rd_kafka_ConfigResource_destroy(res);
    if (opt != NULL)
        rd_kafka_AdminOptions_destroy(opt);
    if (q != NULL)
        rd_kafka_queue_destroy(q);
    return rc;
}

/* An existing topic must match the configuration we would have created it with. */
static int check_existing(rd_kafka_t *rk, const kq_config *cfg, const char *topic, char *errstr,
                          size_t errlen)
{
    char policy[64];
    int partitions = 0, rc;
    int64_t until = kq_time_mono_ms() + cfg->kafka_timeout_ms;

    /* The controller answered that it exists; the broker asked for metadata may not know
     * it yet (just created, or deleted and created again): ask again for a while. */
    while ((rc = kq_kafka_topic_partitions(rk, topic, cfg->kafka_timeout_ms, &partitions, NULL,
                                           errstr, errlen)) == KQ_ENOTFOUND &&
           kq_time_mono_ms() < until) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (rc != 0)
        return rc;
    if (partitions != cfg->partitions)
        return kq_seterr(errstr, errlen, KQ_ECONFIG,
                         "topic '%s' exists with %d partitions but KCQRS_PARTITIONS is %d; "
                         "the partition count is fixed at creation (aggregates would move)",
                         topic, partitions, cfg->partitions);
    rc = kq_kafka_topic_config_get(rk, topic, "cleanup.policy", cfg->kafka_timeout_ms, policy,
                                   sizeof policy, NULL, errstr, errlen);
    if (rc != 0)
        return rc;
    if (strcmp(policy, "compact") != 0)
        return kq_seterr(errstr, errlen, KQ_ECONFIG,
                         "topic '%s' exists with cleanup.policy=%s; the event log needs "
                         "cleanup.policy=compact (anything else deletes history)",
                         topic, policy);
    if (kq_kafka_topic_config_get(rk, topic, "delete.retention.ms", cfg->kafka_timeout_ms, policy,
                                  sizeof policy, NULL, NULL, 0) == 0 &&
        strtoll(policy, NULL, 10) < strtoll(KQ_KAFKA_DELETE_RETENTION_MS, NULL, 10))
        kq_log_warn("topic %s keeps tombstones (erasures) only %s ms after compaction; "
                    "set delete.retention.ms=" KQ_KAFKA_DELETE_RETENTION_MS " on it "
                    "(kafka-configs --alter) so that an erasure is never forgotten",
                    topic, policy);
    return 0;
}

int kq_kafka_ensure_topics(rd_kafka_t *rk, const kq_config *cfg, const char *const *topics,
                           size_t ntopics, char *errstr, size_t errlen)
{
    char es[512], mis[16];
    rd_kafka_NewTopic_t **nt = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_AdminOptions_t *opt = NULL;
    rd_kafka_event_t *ev = NULL;
    const rd_kafka_topic_result_t **tres;
    size_t nres;
    int *exists = NULL;
    int rc = 0;

    if (ntopics == 0)
        return 0;
    nt = calloc(ntopics, sizeof *nt);
    exists = calloc(ntopics, sizeof *exists);
    q = rd_kafka_queue_new(rk);
    opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    if (nt == NULL || exists == NULL || q == NULL || opt == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "create topics: out of memory");
        goto out;
    }
    /* The operation timeout makes the controller answer only once the topics are
     * created (leaders elected), so they are usable when we return. */
    if (rd_kafka_AdminOptions_set_request_timeout(opt, cfg->kafka_timeout_ms, es, sizeof es) ||
        rd_kafka_AdminOptions_set_operation_timeout(opt, cfg->kafka_timeout_ms, es, sizeof es)) {
        rc = kq_seterr(errstr, errlen, KQ_EINVAL, "create topics: %s", es);
        goto out;
    }
    snprintf(mis, sizeof mis, "%d", cfg->min_insync_replicas);
    for (size_t i = 0; i < ntopics; i++) {
        nt[i] = rd_kafka_NewTopic_new(topics[i], cfg->partitions, cfg->replication_factor, es,
                                      sizeof es);
        if (nt[i] == NULL) {
            rc = kq_seterr(errstr, errlen, KQ_EINVAL, "topic '%s': %s", topics[i], es);
            goto out;
        }
        if (rd_kafka_NewTopic_set_config(nt[i], "cleanup.policy", "compact") ||
            rd_kafka_NewTopic_set_config(nt[i], "retention.ms", "-1") ||
            rd_kafka_NewTopic_set_config(nt[i], "delete.retention.ms",
                                         KQ_KAFKA_DELETE_RETENTION_MS) ||
            rd_kafka_NewTopic_set_config(nt[i], "min.insync.replicas", mis)) {
            rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "topic '%s': out of memory", topics[i]);
            goto out;
        }
    }
    rd_kafka_CreateTopics(rk, nt, ntopics, opt, q);
    ev = admin_wait(q, RD_KAFKA_EVENT_CREATETOPICS_RESULT, cfg->kafka_timeout_ms, "create topics",
                    &rc, errstr, errlen);
    if (ev == NULL)
        goto out;
    tres = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &nres);
    for (size_t i = 0; i < nres; i++) {
        rd_kafka_resp_err_t err = rd_kafka_topic_result_error(tres[i]);
        const char *name = rd_kafka_topic_result_name(tres[i]);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            kq_log_info("created topic %s (%d partitions, replication %d, compact)", name,
                        cfg->partitions, cfg->replication_factor);
            continue;
        }
        if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            for (size_t j = 0; j < ntopics; j++)
                if (strcmp(topics[j], name) == 0)
                    exists[j] = 1;
            continue;
        }
        rc = kq_seterr(errstr, errlen, err_code(err), "create topic '%s': %s", name,
                       rd_kafka_topic_result_error_string(tres[i])
                           ? rd_kafka_topic_result_error_string(tres[i])
                           : rd_kafka_err2str(err));
        goto out;
    }
    for (size_t i = 0; i < ntopics; i++) {
        if (exists[i] && (rc = check_existing(rk, cfg, topics[i], errstr, errlen)) != 0)
            goto out;
    }
out:
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    if (nt != NULL) {
        for (size_t i = 0; i < ntopics; i++)
            if (nt[i] != NULL)
                rd_kafka_NewTopic_destroy(nt[i]);
    }
    if (opt != NULL)
        rd_kafka_AdminOptions_destroy(opt);
    if (q != NULL)
        rd_kafka_queue_destroy(q);
    free(nt);
    free(exists);
    return rc;
}

/* ---------------------------------------------------- keys and partitions */

uint32_t kq_kafka_murmur2(const void *data, size_t len)
{
    /* Kafka's Utils.murmur2, translated with unsigned arithmetic (Java's int
     * wraps the same way; >>> is a logical shift). */
    const uint8_t *p = data;
    const uint32_t m = 0x5bd1e995u;
    const int r = 24;
    uint32_t h = 0x9747b28cu ^ (uint32_t)len;
    size_t nblocks = len / 4;

    for (size_t i = 0; i < nblocks; i++) {
        const uint8_t *b = p + 4 * i;
        uint32_t k =
            (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
    }
    p += nblocks * 4;
    switch (len & 3) {
    case 3:
        h ^= (uint32_t)p[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)p[1] << 8;
        /* fall through */
    case 1:
        h ^= (uint32_t)p[0];
        h *= m;
        break;
    default:
        break;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

int kq_kafka_partition_for(const char *aggregate_id, size_t len, int partitions)
{
    if (partitions < 1 || (aggregate_id == NULL && len > 0))
        return KQ_EINVAL;
    return (int)((kq_kafka_murmur2(aggregate_id, len) & 0x7fffffffu) % (uint32_t)partitions);
}

int kq_kafka_record_key(const char *aggregate_id, int64_t version, char *buf, size_t buflen)
{
    int n;

    if (buf != NULL && buflen > 0)
        buf[0] = '\0';
    if (aggregate_id == NULL || *aggregate_id == '\0' || version < 0)
        return KQ_EINVAL;
    if (buf == NULL || buflen == 0)
        return KQ_ERANGE;
    n = snprintf(buf, buflen, "%s/%020" PRId64, aggregate_id, version);
    if (n < 0 || (size_t)n >= buflen) {
        buf[0] = '\0';
        return KQ_ERANGE;
    }
    return n;
}

int kq_kafka_record_key_parse(const char *key, size_t len, size_t *id_len, int64_t *version)
{
    const char *slash = NULL;
    int64_t v = 0;

    if (key == NULL)
        return KQ_ECORRUPT;
    for (size_t i = len; i > 0; i--) {
        if (key[i - 1] == '/') {
            slash = key + i - 1;
            break;
        }
    }
    if (slash == NULL || slash == key || (size_t)(key + len - slash - 1) != KQ_KAFKA_VERSION_DIGITS)
        return KQ_ECORRUPT;
    for (const char *p = slash + 1; p < key + len; p++) {
        if (*p < '0' || *p > '9')
            return KQ_ECORRUPT;
        if (v > (INT64_MAX - (*p - '0')) / 10)
            return KQ_ECORRUPT;
        v = v * 10 + (*p - '0');
    }
    *id_len = (size_t)(slash - key);
    *version = v;
    return 0;
}

/* ------------------------------------------------------------ transactions */

int kq_kafka_error_take(rd_kafka_error_t *error, const char *what, int *needs_abort, char *errstr,
                        size_t errlen)
{
    rd_kafka_resp_err_t code;
    int rc;

    if (needs_abort != NULL)
        *needs_abort = 0;
    if (error == NULL)
        return 0;
    code = rd_kafka_error_code(error);
    if (rd_kafka_error_is_fatal(error)) {
        rc = (code == RD_KAFKA_RESP_ERR__FENCED || code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
              code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH)
                 ? KQ_EFENCED
                 : KQ_EKAFKA;
        kq_seterr(errstr, errlen, rc, "%s: fatal: %s", what, rd_kafka_error_string(error));
    } else if (rd_kafka_error_txn_requires_abort(error)) {
        if (needs_abort != NULL)
            *needs_abort = 1;
        rc = kq_seterr(errstr, errlen, KQ_EKAFKA, "%s: transaction must be aborted: %s", what,
                       rd_kafka_error_string(error));
    } else if (rd_kafka_error_is_retriable(error) || is_timeout(code)) {
        rc = kq_seterr(errstr, errlen, KQ_ETIMEDOUT, "%s: %s", what, rd_kafka_error_string(error));
        rc = conn_explain(rc, errstr, errlen);
    } else {
        rc = kq_seterr(errstr, errlen, KQ_EKAFKA, "%s: %s", what, rd_kafka_error_string(error));
    }
    rd_kafka_error_destroy(error);
    return rc;
}

int kq_kafka_txn_init(rd_kafka_t *rk, int timeout_ms, char *errstr, size_t errlen)
{
    return conn_ok(kq_kafka_error_take(rd_kafka_init_transactions(rk, timeout_ms),
                                       "init transactions", NULL, errstr, errlen));
}

int kq_kafka_txn_begin(rd_kafka_t *rk, char *errstr, size_t errlen)
{
    return kq_kafka_error_take(rd_kafka_begin_transaction(rk), "begin transaction", NULL, errstr,
                               errlen);
}

int kq_kafka_txn_commit(rd_kafka_t *rk, int timeout_ms, char *errstr, size_t errlen)
{
    return conn_ok(kq_kafka_error_take(rd_kafka_commit_transaction(rk, timeout_ms),
                                       "commit transaction", NULL, errstr, errlen));
}

int kq_kafka_txn_abort(rd_kafka_t *rk, int timeout_ms, char *errstr, size_t errlen)
{
    return kq_kafka_error_take(rd_kafka_abort_transaction(rk, timeout_ms), "abort transaction",
                               NULL, errstr, errlen);
}

int kq_kafka_produce_event(rd_kafka_t *rk, const char *topic, int32_t partition, const void *key,
                           size_t keylen, const void *value, size_t len, const char *event_type,
                           void *msg_opaque, char *errstr, size_t errlen)
{
    return kq_kafka_produce_traced(rk, topic, partition, key, keylen, value, len, event_type, NULL,
                                   msg_opaque, errstr, errlen);
}

int kq_kafka_produce_traced(rd_kafka_t *rk, const char *topic, int32_t partition, const void *key,
                            size_t keylen, const void *value, size_t len, const char *event_type,
                            const char *traceparent, void *msg_opaque, char *errstr, size_t errlen)
{
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_resp_err_t err;

    if (event_type != NULL || traceparent != NULL) {
        if ((hdrs = rd_kafka_headers_new(2)) == NULL)
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory (record headers)");
        if (event_type != NULL)
            rd_kafka_header_add(hdrs, KQ_KAFKA_HEADER_EVENT_TYPE, -1, event_type, -1);
        if (traceparent != NULL)
            rd_kafka_header_add(hdrs, "traceparent", -1, traceparent, -1);
    }
    if (hdrs != NULL)
        err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                RD_KAFKA_V_KEY(key, keylen),
                                RD_KAFKA_V_VALUE((void *)(uintptr_t)value, len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
                                RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
    else
        err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                RD_KAFKA_V_KEY(key, keylen),
                                RD_KAFKA_V_VALUE((void *)(uintptr_t)value, len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (hdrs != NULL)
            rd_kafka_headers_destroy(hdrs); /* not taken by a failed producev */
        return kq_seterr(errstr, errlen, err_code(err), "produce to %s [%" PRId32 "]: %s", topic,
                         partition, rd_kafka_err2str(err));
    }
    return 0;
}

int kq_kafka_header_string(const rd_kafka_message_t *m, const char *name, char *out, size_t outlen)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *v = NULL;
    size_t n = 0;

    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR || v == NULL ||
        n >= outlen || memchr(v, '\0', n) != NULL)
        return -1;
    memcpy(out, v, n);
    out[n] = '\0';
    return 0;
}
