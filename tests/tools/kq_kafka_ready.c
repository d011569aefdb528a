/*
 * kq_kafka_ready — exit 0 when a Kafka broker answers a metadata request.
 *
 *   kq_kafka_ready BROKERS [TIMEOUT_MS]
 *
 * Used by ops/kafka.sh to wait for a freshly started broker: the port accepting
 * connections is not enough (a KRaft broker listens before it has caught up with
 * the metadata log and been unfenced); a metadata answer that lists at least one
 * broker means clients can create topics and produce. KCQRS_KAFKA_PROPERTIES (a
 * SASL_SSL broker's client settings) is honoured; nothing else of the
 * environment is read. Prints nothing on success,
 * one line on stderr on failure. Exit codes: 0 ready, 1 not ready, 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kq_config.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_kprops.h"
#include "kq_log.h"

int main(int argc, char **argv)
{
    char err[512] = "";
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_resp_err_t kerr;
    kq_config cfg;
    long timeout = 2000;
    char *end;
    const char *props;
    int rc = 1;

    if (argc < 2 || argc > 3 || argv[1][0] == '-') {
        fprintf(stderr, "usage: %s BROKERS [TIMEOUT_MS]\n", argv[0]);
        return 2;
    }
    if (argc == 3) {
        errno = 0;
        timeout = strtol(argv[2], &end, 10);
        if (errno != 0 || *end != '\0' || timeout < 100 || timeout > 600000) {
            fprintf(stderr, "%s: TIMEOUT_MS must be 100..600000\n", argv[0]);
            return 2;
        }
    }
    /* librdkafka's "connection refused" lines are expected while we poll. */
    kq_log_init(argv[0], KQ_LOG_OFF, KQ_LOG_HUMAN);
    memset(&cfg, 0, sizeof cfg);
    cfg.brokers = argv[1];
    cfg.kafka_timeout_ms = (int)timeout;
    props = getenv("KCQRS_KAFKA_PROPERTIES");
    if (props != NULL && *props != '\0' && strcmp(props, "none") != 0 &&
        kq_kprops_load(props, &cfg.kafka_props, err, sizeof err) != 0)
        goto out;
    if ((conf = kq_kafka_conf_new(&cfg, "kq_kafka_ready", err, sizeof err)) == NULL)
        goto out;
    if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err)) == NULL) {
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    kerr = rd_kafka_metadata(rk, 0, NULL, &md, (int)timeout);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, sizeof err, "metadata: %s", rd_kafka_err2str(kerr));
        goto out;
    }
    if (md->broker_cnt < 1) {
        snprintf(err, sizeof err, "metadata lists no broker");
        goto out;
    }
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "kq_kafka_ready: %s: %s\n", argv[1], err);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    if (rk != NULL)
        rd_kafka_destroy(rk);
    kq_kprops_free(cfg.kafka_props);
    return rc;
}
