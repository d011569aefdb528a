/*
 * kq_topics — the event topics of a kcqrs deployment, for ops and tests.
 *
 *   kq_topics create              create missing topics (kq_kafka_ensure_topics)
 *   kq_topics describe [TOPIC...] one line per topic, from the broker
 *   kq_topics delete TOPIC...     delete the topics (the tests recreate a topic
 *                                 under a running service)
 *
 * Settings come from the environment like every kcqrs binary (KCQRS_BROKERS,
 * KCQRS_TOPIC_PREFIX, KCQRS_PARTITIONS, ...; see --help). Without TOPIC
 * arguments both commands work on <prefix>.resource.events,
 * <prefix>.workflow.events, <prefix>.run.events and <prefix>.dlq.
 *
 * describe prints what the broker reports, one line per topic, e.g. (wrapped here)
 *   kcqrs.run.events partitions=6 replication=1 cleanup.policy=compact retention.ms=-1
 *     delete.retention.ms=3153600000000 min.insync.replicas=1
 *
 * Exit codes: 0 ok, 1 error (a missing topic is an error for describe), 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kq_config.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"

static const char usage[] =
    "usage: kq_topics create | describe [TOPIC...] | delete TOPIC...\n"
    "  create    create the missing event topics with cleanup.policy=compact,\n"
    "            retention.ms=-1 and the configured partitions, replication\n"
    "            factor and min.insync.replicas; check existing ones\n"
    "  describe  print partitions, replication and log configs of each topic\n"
    "  delete    delete the named topics (waits for the controller's answer)";

/* DeleteTopics for `names`; 0 when every one was deleted. */
static int delete_topics(rd_kafka_t *rk, const kq_config *cfg, const char *const *names, size_t n)
{
    rd_kafka_DeleteTopic_t **dt = calloc(n, sizeof *dt);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
    rd_kafka_event_t *ev = NULL;
    int rc = 1;

    if (dt == NULL || q == NULL || o == NULL)
        goto out;
    for (size_t i = 0; i < n; i++)
        dt[i] = rd_kafka_DeleteTopic_new(names[i]);
    rd_kafka_AdminOptions_set_request_timeout(o, cfg->kafka_timeout_ms, NULL, 0);
    rd_kafka_AdminOptions_set_operation_timeout(o, cfg->kafka_timeout_ms, NULL, 0);
    rd_kafka_DeleteTopics(rk, dt, n, o, q);
    ev = rd_kafka_queue_poll(q, cfg->kafka_timeout_ms + 2000);
    if (ev == NULL) {
        fprintf(stderr, "kq_topics: delete: no answer\n");
    } else if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kq_topics: delete: %s\n", rd_kafka_event_error_string(ev));
    } else {
        size_t cnt = 0;
        const rd_kafka_topic_result_t **r =
            rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &cnt);
        rc = 0;
        for (size_t i = 0; i < cnt; i++)
            if (rd_kafka_topic_result_error(r[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                fprintf(stderr, "kq_topics: delete %s: %s\n", rd_kafka_topic_result_name(r[i]),
                        rd_kafka_topic_result_error_string(r[i]));
                rc = 1;
            }
        if (rc == 0)
            printf("deleted %zu topics\n", cnt);
    }
out:
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    if (dt != NULL)
        for (size_t i = 0; i < n; i++)
            if (dt[i] != NULL)
                rd_kafka_DeleteTopic_destroy(dt[i]);
    free(dt);
    if (o != NULL)
        rd_kafka_AdminOptions_destroy(o);
    if (q != NULL)
        rd_kafka_queue_destroy(q);
    return rc;
}

static int describe(rd_kafka_t *rk, const kq_config *cfg, const char *topic)
{
    static const char *const keys[] = {"cleanup.policy", "retention.ms", "delete.retention.ms",
                                       "min.insync.replicas"};
    char err[512], value[256];
    int partitions = 0, replication = 0, rc;

    rc = kq_kafka_topic_partitions(rk, topic, cfg->kafka_timeout_ms, &partitions, &replication, err,
                                   sizeof err);
    if (rc != 0) {
        fprintf(stderr, "kq_topics: %s\n", err);
        return rc;
    }
    printf("%s partitions=%d replication=%d", topic, partitions, replication);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        rc = kq_kafka_topic_config_get(rk, topic, keys[i], cfg->kafka_timeout_ms, value,
                                       sizeof value, NULL, err, sizeof err);
        if (rc != 0) {
            printf("\n");
            fprintf(stderr, "kq_topics: %s\n", err);
            return rc;
        }
        printf(" %s=%s", keys[i], value);
    }
    printf("\n");
    return 0;
}

int main(int argc, char **argv)
{
    char err[512] = "";
    char names[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX];
    const char *deflt[KQ_KAFKA_NTOPICS];
    const char *const *topics;
    size_t ntopics;
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk = NULL;
    kq_config cfg;
    int loaded = 0, rc = 1;

    if (kq_config_handle_help(argc, argv, usage))
        return 0;
    if (argc < 2 ||
        (strcmp(argv[1], "create") != 0 && strcmp(argv[1], "describe") != 0 &&
         strcmp(argv[1], "delete") != 0) ||
        (strcmp(argv[1], "create") == 0 && argc != 2) ||
        (strcmp(argv[1], "delete") == 0 && argc < 3)) {
        fprintf(stderr, "%s\n", usage);
        return 2;
    }
    if (kq_config_load_and_init_log(&cfg, "kq_topics", err, sizeof err) != 0) {
        fprintf(stderr, "kq_topics: %s\n", err);
        return 1;
    }
    loaded = 1;
    if (kq_kafka_topic_names(&cfg, names) != KQ_KAFKA_NTOPICS) {
        fprintf(stderr, "kq_topics: topic prefix too long\n");
        goto out;
    }
    for (size_t i = 0; i < KQ_KAFKA_NTOPICS; i++)
        deflt[i] = names[i];
    topics = deflt;
    ntopics = KQ_KAFKA_NTOPICS;
    if (argc > 2) {
        topics = (const char *const *)argv + 2;
        ntopics = (size_t)(argc - 2);
    }

    if ((conf = kq_kafka_conf_new(&cfg, "kq_topics", err, sizeof err)) == NULL ||
        (rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err)) == NULL) {
        if (conf != NULL)
            rd_kafka_conf_destroy(conf);
        fprintf(stderr, "kq_topics: %s\n", err);
        goto out;
    }
    if (strcmp(argv[1], "create") == 0) {
        if (kq_kafka_ensure_topics(rk, &cfg, topics, ntopics, err, sizeof err) != 0) {
            fprintf(stderr, "kq_topics: %s\n", err);
            goto out;
        }
        printf("topics ready:");
        for (size_t i = 0; i < ntopics; i++)
            printf(" %s", topics[i]);
        printf(" (%d partitions, replication %d, min.insync.replicas %d, compact)\n",
               cfg.partitions, cfg.replication_factor, cfg.min_insync_replicas);
        rc = 0;
    } else if (strcmp(argv[1], "delete") == 0) {
        rc = delete_topics(rk, &cfg, topics, ntopics);
    } else {
        rc = 0;
        for (size_t i = 0; i < ntopics; i++)
            if (describe(rk, &cfg, topics[i]) != 0)
                rc = 1;
    }
out:
    if (rk != NULL)
        rd_kafka_destroy(rk);
    if (loaded)
        kq_config_free(&cfg);
    return rc;
}
