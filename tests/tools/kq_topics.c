/*
 * kq_topics — the event topics of a kcqrs deployment, for ops and tests.
 *
 *   kq_topics create              create missing topics (kq_kafka_ensure_topics)
 *   kq_topics describe [TOPIC...] one line per topic, from the broker
 *
 * Settings come from the environment like every kcqrs binary (KCQRS_BROKERS,
 * KCQRS_TOPIC_PREFIX, KCQRS_PARTITIONS, ...; see --help). Without TOPIC
 * arguments both commands work on <prefix>.resource.events,
 * <prefix>.workflow.events, <prefix>.run.events and <prefix>.dlq.
 *
 * describe prints what the broker reports, e.g.
 *   kcqrs.run.events partitions=6 replication=1 cleanup.policy=compact retention.ms=-1
 * min.insync.replicas=1 Exit codes: 0 ok, 1 error (a missing topic is an error for describe), 2
 * usage.
 */
#include <stdio.h>
#include <string.h>

#include "kq_config.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"

static const char usage[] =
    "usage: kq_topics create | describe [TOPIC...]\n"
    "  create    create the missing event topics with cleanup.policy=compact,\n"
    "            retention.ms=-1 and the configured partitions, replication\n"
    "            factor and min.insync.replicas; check existing ones\n"
    "  describe  print partitions, replication and log configs of each topic";

static int describe(rd_kafka_t *rk, const kq_config *cfg, const char *topic)
{
    static const char *const keys[] = {"cleanup.policy", "retention.ms", "min.insync.replicas"};
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
    if (argc < 2 || (strcmp(argv[1], "create") != 0 && strcmp(argv[1], "describe") != 0) ||
        (strcmp(argv[1], "create") == 0 && argc != 2)) {
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
