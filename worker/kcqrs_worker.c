/*
 * kcqrs_worker.c — `kcqrs-worker`: executes the steps of workflow runs and
 * records every attempt with kcqrs-commands.
 *
 * This main only wires: after the common start (kq_service.h: --help, the
 * configuration, the log, the signals, plus SIGUSR1 for its signal thread)
 * it loads the configuration into the service's settings (wk_service.h,
 * where the loop, the offsets and the rebalances are described), starts the signal thread and the
 * admin server (kq_http: /health, /ready, /metrics on KCQRS_WORKER_ADDR), creates the Kafka
 * consumer for the service and runs it until SIGTERM/SIGINT.
 *
 * Exit status: 0 clean stop (SIGTERM/SIGINT), 1 cannot serve, 2 usage or
 * configuration error.
 */
#include <ctype.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kq_config.h"
#include "kq_err.h"
#include "kq_http.h"
#include "kq_kafka.h"
#include "kq_keyring.h"
#include "kq_log.h"
#include "kq_openapi.h"
#include "kq_service.h"
#include "kq_util.h"
#include "wk_service.h"

#define PROG "kcqrs-worker"

static const char usage[] =
    "usage: " PROG "\n"
    "\n"
    "Executes the steps of workflow runs: reads <prefix>.run.events as consumer group\n"
    "KCQRS_WORKER_GROUP (read_committed), sends each step's HTTP request or email\n"
    "(retry policy KCQRS_WORKER_RETRY_*, KCQRS_WORKER_MAX_ATTEMPTS; circuit breaker per\n"
    "destination KCQRS_WORKER_BREAKER_*), and records every attempt with\n"
    "POST /internal/v1/runs/{id}/attempts on KCQRS_WORKER_COMMANDS_URL using the key in\n"
    "KCQRS_WORKER_KEY_FILE (role worker). Admin HTTP (/health, /ready, /metrics) on\n"
    "KCQRS_WORKER_ADDR.\n"
    "Stop with SIGTERM or SIGINT (attempts in flight finish and are recorded).\n"
    "Exit status: 0 clean stop, 1 cannot serve, 2 usage or configuration error.\n";

typedef struct sig_arg {
    wk_service *svc;
    kq_service *ks; /* its signals: SIGTERM, SIGINT and SIGUSR1 (main's "done") */
} sig_arg;

static void *sig_thread(void *arg)
{
    sig_arg *a = arg;
    int sig = kq_service_wait(a->ks);

    if (sig != SIGUSR1)
        kq_log_info("signal %d: stopping (attempts in flight finish and are recorded)", sig);
    wk_service_stop(a->svc);
    return NULL;
}

/* "none" or "" is absent. */
static const char *opt_or_null(const char *v)
{
    return v == NULL || strcmp(v, "none") == 0 || v[0] == '\0' ? NULL : v;
}

/* The commands URL: KCQRS_WORKER_COMMANDS_URL, or http(s)://<the internal listener of
 * kcqrs-commands> (KCQRS_COMMANDS_INTERNAL_ADDR; KCQRS_COMMANDS_ADDR when that is none;
 * https when KCQRS_HTTP_TLS_CERT is set, as kcqrs-commands then serves HTTPS). */
static int commands_url(const kq_config *cfg, char *out, size_t len)
{
    const char *a =
        strcmp(cfg->cmd_internal_addr, "none") != 0 ? cfg->cmd_internal_addr : cfg->commands_addr;
    const char *scheme = strcmp(cfg->http_tls_cert, "none") != 0 ? "https" : "http";

    if (strcmp(cfg->worker_commands_url, "auto") != 0)
        return snprintf(out, len, "%s", cfg->worker_commands_url) >= (int)len ? -1 : 0;
    if (a[0] == ':')
        return snprintf(out, len, "%s://127.0.0.1%s", scheme, a) >= (int)len ? -1 : 0;
    if (strncmp(a, "0.0.0.0:", 8) == 0)
        return snprintf(out, len, "%s://127.0.0.1:%s", scheme, a + 8) >= (int)len ? -1 : 0;
    return snprintf(out, len, "%s://%s", scheme, a) >= (int)len ? -1 : 0;
}

static int read_key(const char *path, char *out, size_t len, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t n = 0, s = 0;
    int rc = kq_read_file(path, 4096, &buf, &n, err, errlen);

    if (rc != 0)
        return rc;
    while (s < n && isspace((unsigned char)buf[s]))
        s++;
    while (n > s && isspace((unsigned char)buf[n - 1]))
        n--;
    if (n == s || n - s >= len) {
        free(buf);
        return kq_seterr(err, errlen, KQ_EINVAL, "%s: no key in the file", path);
    }
    memcpy(out, buf + s, n - s);
    out[n - s] = '\0';
    free(buf);
    if (strpbrk(out, " \t\r\n"))
        return kq_seterr(err, errlen, KQ_EINVAL, "%s: one key expected", path);
    return 0;
}

/* The service's settings from the configuration. 0, or 2 (logged). */
static int settings_from_config(const kq_config *cfg, wk_service_settings *s, char *url,
                                size_t urllen, char *key, size_t keylen, char *topic,
                                size_t topiclen)
{
    char err[512];

    memset(s, 0, sizeof *s);
    s->policy.base_ms = cfg->worker_retry_base_ms;
    s->policy.factor = (unsigned)cfg->worker_retry_factor;
    s->policy.cap_ms = cfg->worker_retry_cap_ms;
    s->policy.max_attempts = (unsigned)cfg->worker_max_attempts;
    if (wk_policy_validate(&s->policy, err, sizeof err) != 0) {
        kq_log_error("retry policy: %s", err);
        return 2;
    }
    if (commands_url(cfg, url, urllen) != 0) {
        kq_log_error("KCQRS_WORKER_COMMANDS_URL too long");
        return 2;
    }
    if (read_key(cfg->worker_key_file, key, keylen, err, sizeof err) != 0) {
        kq_log_error("KCQRS_WORKER_KEY_FILE: %s", err);
        return 2;
    }
    if (kq_config_topic(cfg, "run", topic, topiclen) < 0) {
        kq_log_error("KCQRS_TOPIC_PREFIX too long");
        return 2;
    }
    s->smtp.url = opt_or_null(cfg->worker_smtp_url);
    s->smtp.from = cfg->worker_smtp_from;
    s->smtp.user = opt_or_null(cfg->worker_smtp_user);
    s->smtp.password = opt_or_null(cfg->worker_smtp_password);
    if ((s->smtp.user == NULL) != (s->smtp.password == NULL)) {
        kq_log_error("KCQRS_WORKER_SMTP_USER and KCQRS_WORKER_SMTP_PASSWORD: both or neither");
        return 2;
    }
    s->topic = topic;
    s->partitions = cfg->partitions;
    s->max_runs = cfg->worker_max_runs;
    s->drain_ms = (long)cfg->worker_timeout_ms + 5000;
    wk_settings_defaults(&s->engine);
    s->engine.connect_timeout_ms = cfg->worker_connect_timeout_ms;
    s->engine.total_timeout_ms = cfg->worker_timeout_ms;
    s->engine.response_max = (size_t)cfg->worker_response_max;
    s->engine.max_connections = cfg->worker_max_connections;
    s->engine.allow_private = cfg->worker_allow_private;
    s->engine.ca_file = strcmp(cfg->worker_ca_file, "system") == 0 ? NULL : cfg->worker_ca_file;
    wk_breaker_defaults(&s->breaker);
    s->breaker.failure_threshold = (unsigned)cfg->worker_breaker_failures;
    s->breaker.cooldown_ms = cfg->worker_breaker_cooldown_ms;
    s->record.base_url = url;
    s->record.key = key;
    s->record.timeout_ms = cfg->kafka_timeout_ms * 2L + 1000;
    s->record.retry_base_ms = 100;
    s->record.retry_cap_ms = 5000;
    s->record.batch_max = cfg->worker_record_batch;
    s->record.ca_file = strcmp(cfg->http_tls_ca, "system") == 0 ? NULL : cfg->http_tls_ca;
    return 0;
}

int main(int argc, char **argv)
{
    kq_service ks;
    wk_service_settings ws;
    wk_service *svc = NULL;
    kq_http_options o;
    kq_http_route admin_routes[1]; /* GET /openapi.json */
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk;
    sig_arg sa;
    pthread_t sig_tid;
    int sig_started = 0, rc = 2;
    kq_keyring *keys = NULL;
    char err[512], url[1024], key[600], topic[KQ_KAFKA_TOPIC_MAX], group[KQ_KAFKA_TOPIC_MAX];

    if (kq_service_begin(&ks, PROG, usage, 0, argc, argv, &rc) != 0)
        return rc;
    rc = 2;
    sigaddset(&ks.signals, SIGUSR1); /* how main ends the signal thread */
    pthread_sigmask(SIG_BLOCK, &ks.signals, NULL);

    if (settings_from_config(&ks.cfg, &ws, url, sizeof url, key, sizeof key, topic, sizeof topic) !=
        0)
        goto out;
    /* sealed signing secrets (ev_secret.h) need the KEK: without it, no service */
    if (kq_keyring_new(&ks.cfg, PROG, &keys, err, sizeof err) != 0) {
        kq_log_error("%s", err);
        goto out;
    }
    if ((rc = kq_keyring_load(keys, err, sizeof err)) == KQ_ECONFIG) {
        kq_log_error("%s", err);
        rc = 2;
        goto out;
    }
    if (rc != 0) /* Kafka not there yet: read when the first sealed secret needs it */
        kq_log_warn("key topic not read yet: %s", err);
    rc = 2;
    ws.keys = keys;
    if (strcmp(ks.cfg.worker_group, "auto") == 0)
        snprintf(group, sizeof group, "%s.worker", ks.cfg.topic_prefix);
    else
        snprintf(group, sizeof group, "%s", ks.cfg.worker_group);
    if ((rc = wk_service_new(&ws, &svc, err, sizeof err)) != 0) {
        kq_log_error("%s", err);
        rc = rc == KQ_EINVAL ? 2 : 1;
        goto out;
    }
    rc = 1;
    sa.svc = svc;
    sa.ks = &ks;
    if (pthread_create(&sig_tid, NULL, sig_thread, &sa) != 0) {
        kq_log_error("cannot start the signal thread");
        goto out;
    }
    sig_started = 1;

    memset(&o, 0, sizeof o);
    o.addr = ks.cfg.worker_addr;
    kq_openapi_route(&admin_routes[0], &kq_openapi_admin);
    o.routes = admin_routes;
    o.nroutes = 1;
    o.limits = kq_http_limits_default();
    o.limits.threads = 2;
    o.ready = wk_service_ready;
    o.ready_arg = svc;
    o.metrics = wk_service_metrics;
    o.metrics_arg = svc;
    ks.http_what = "admin HTTP";
    if (kq_service_http_start(&ks, &o) != 0)
        goto out;

    if ((conf = kq_kafka_consumer_conf_new(&ks.cfg, PROG, err, sizeof err)) == NULL ||
        wk_service_consumer_conf(svc, conf, err, sizeof err) != 0) {
        kq_log_error("Kafka: %s", err);
        if (conf)
            rd_kafka_conf_destroy(conf);
        goto out;
    }
    if ((rk = kq_kafka_consumer_new(&ks.cfg, group, conf, err, sizeof err)) == NULL) {
        kq_log_error("Kafka consumer: %s", err);
        goto out;
    }
    if (wk_service_attach(svc, rk, err, sizeof err) != 0) {
        kq_log_error("%s", err);
        goto out;
    }
    kq_log_info("admin on %s://%s (port %u); group %s on %s; commands %s; max runs %d",
                strcmp(ks.cfg.http_tls_cert, "none") != 0 ? "https" : "http", ks.cfg.worker_addr,
                kq_http_port(ks.srv), group, topic, url, ks.cfg.worker_max_runs);
    rc = wk_service_run(svc);
out:
    kq_service_http_stop(&ks);
    if (sig_started) {
        pthread_kill(sig_tid, SIGUSR1);
        pthread_join(sig_tid, NULL);
    }
    wk_service_free(svc); /* the consumer's close drains and commits again (nothing new) */
    kq_keyring_free(keys);
    if (rc == 0)
        kq_log_info("stopped");
    kq_service_end(&ks);
    return rc;
}
