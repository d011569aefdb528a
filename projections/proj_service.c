/*
 * proj_service.c — see proj_service.h.
 */
#include "proj_service.h"

#include <string.h>
#include <time.h>

#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "proj_lmdb.h"
#include "proj_pg.h"

static int lmdb_open(const kq_config *cfg, void *arg, void **t, char *errstr, size_t errlen)
{
    (void)arg;
    return proj_lmdb_open(cfg, (proj_lmdb **)t, errstr, errlen);
}

static int pg_open(const kq_config *cfg, void *arg, void **t, char *errstr, size_t errlen)
{
    (void)arg;
    return proj_pg_open_live(cfg, (proj_pg **)t, errstr, errlen);
}

const proj_target_ops proj_lmdb_live_ops = {
    "lmdb", lmdb_open, proj_lmdb_target_load, proj_lmdb_target_apply, proj_lmdb_target_close, NULL};
const proj_target_ops proj_pg_live_ops = {
    "pg", pg_open, proj_pg_target_load, proj_pg_target_apply, proj_pg_target_close, NULL};

int proj_service_select(proj_service *s, const char *target)
{
    int all = strcmp(target, "all") == 0;

    memset(s, 0, sizeof *s);
    if (all || strcmp(target, "lmdb") == 0)
        s->sel[s->nsel++] = &proj_lmdb_live_ops;
    if (all || strcmp(target, "pg") == 0)
        s->sel[s->nsel++] = &proj_pg_live_ops;
    return s->nsel > 0 ? 0 : KQ_EINVAL;
}

int proj_service_ensure_topics(const kq_config *cfg, const sigset_t *set, int *sig)
{
    char names[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX], err[512];
    const char *topics[KQ_KAFKA_NTOPICS];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    int rc;

    if (kq_kafka_topic_names(cfg, names) < 0) {
        kq_log_error("KCQRS_TOPIC_PREFIX too long");
        return KQ_ECONFIG;
    }
    for (int i = 0; i < KQ_KAFKA_NTOPICS; i++)
        topics[i] = names[i];
    if ((conf = kq_kafka_conf_new(cfg, "kcqrs-projector-admin", err, sizeof err)) == NULL ||
        (rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err)) == NULL) {
        if (conf)
            rd_kafka_conf_destroy(conf);
        kq_log_error("Kafka client: %s", err);
        return KQ_ECONFIG;
    }
    for (;;) {
        struct timespec ts = {2, 0};

        rc = kq_kafka_ensure_topics(rk, cfg, topics, KQ_KAFKA_NTOPICS, err, sizeof err);
        if (rc == 0 || rc == KQ_ECONFIG)
            break;
        kq_log_warn("event topics: %s; retrying", err);
        if ((*sig = sigtimedwait(set, NULL, &ts)) > 0) {
            rc = 1;
            break;
        }
    }
    if (rc == KQ_ECONFIG)
        kq_log_error("event topics: %s", err);
    rd_kafka_destroy(rk);
    return rc;
}

int proj_service_start(proj_service *s, const kq_config *cfg, int exit_at_end, char *errstr,
                       size_t errlen)
{
    /* n grows only after a runner started: the readiness and metrics
     * callbacks (other threads) read runners[0..n). */
    for (size_t i = 0; i < s->nsel; i++) {
        proj_runner *r;
        char err[512];
        int rc;
        if ((rc = proj_runner_start(cfg, s->sel[i], exit_at_end, &r, err, sizeof err)) != 0)
            return kq_seterr(errstr, errlen, rc, "%s runner: %s", s->sel[i]->name, err);
        s->runners[i] = r;
        __atomic_store_n(&s->n, i + 1, __ATOMIC_RELEASE);
    }
    return 0;
}

int proj_service_at_end(const proj_service *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (!proj_runner_at_end(s->runners[i]))
            return 0;
    return 1;
}

int proj_service_ready(void *arg, char *why, size_t whylen)
{
    proj_service *s = arg;
    size_t n = __atomic_load_n(&s->n, __ATOMIC_ACQUIRE);

    for (size_t i = 0; i < n; i++)
        if (!proj_runner_ready(s->runners[i], why, whylen)) {
            kq_kafka_ready_why(why, whylen);
            return 0;
        }
    if (n == 0) {
        snprintf(why, whylen, "event topics not available yet");
        kq_kafka_ready_why(why, whylen);
        return 0;
    }
    return 1;
}

void proj_service_metrics(void *arg, FILE *out)
{
    proj_service *s = arg;

    proj_runner_metrics(s->runners, __atomic_load_n(&s->n, __ATOMIC_ACQUIRE), out);
}

void proj_service_stop(proj_service *s)
{
    for (size_t i = 0; i < s->n; i++)
        proj_runner_stop(s->runners[i]);
    s->n = 0;
}
