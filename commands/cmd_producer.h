/*
 * cmd_producer.h — the writer's transactional producers, taken in turn.
 *
 * What it is for
 *   The writer has CMD_WRITER_PRODUCERS transactional producers,
 *   transactional.id "<txn_id>" and "<txn_id>.<k>" for k = 1 ..
 *   CMD_WRITER_PRODUCERS-1, and runs its transactions one after another, each
 *   on the next producer (cmd_producers_next). Transactions never overlap (so
 *   the order of events in every partition is the order of commit, as with
 *   one producer); the point is that a transactional id rests while the
 *   others commit. With one id, Kafka is still writing the previous
 *   transaction's commit markers when the next transaction adds its
 *   partitions (AddPartitionsToTxn answers CONCURRENT_TRANSACTIONS) and
 *   librdkafka 2.0.2 retries after a fixed 20 ms: 15-20 % of back-to-back
 *   commits took over 20 ms; with three ids in turn, 1.5-3 %
 *   (bench_txn_envelopes --producers). cmd_producers_open creates every
 *   producer and initialises its transactions, which fences any older
 *   instance with the same ids and settles what it left open, before the
 *   writer reads the log; then it asks each for the topics' metadata once
 *   (a warm-up, so the first transaction does not wait for it). The count is
 *   part of the deployment contract: an instance must initialise every id an
 *   older one may use, so it may grow between versions, never shrink.
 *
 * Delivery reports: each message's opaque is a cmd_item_event slot; the
 *   report fills its partition, offset, delivered and dr_err.
 *
 * What it owns: the producers (rd_kafka_t). cfg and topics are borrowed.
 * Threads: the writer thread only.
 */
#ifndef CMD_PRODUCER_H
#define CMD_PRODUCER_H

#include <stddef.h>

#include "cmd_queue.h"
#include "kq_kafka.h"

/* Transactional producers the writer takes in turn (see above). Never lower
 * it between versions: a new instance must fence every id an old one uses. */
#define CMD_WRITER_PRODUCERS 3

typedef struct cmd_producers {
    const kq_config *cfg;                 /* borrowed */
    const char *const *topics;            /* [CMD_TOPICS] names by topic index, borrowed */
    char txn_id[KQ_KAFKA_TOPIC_MAX + 16]; /* of producer 0 */
    int skip_topic_setup; /* 1: do not create/check topics (mock cluster; tests only) */
    rd_kafka_t *rk[CMD_WRITER_PRODUCERS];
    rd_kafka_t *cur; /* rk[k]: the one the next transaction uses; NULL = none open */
    int k;
} cmd_producers;

/* No producer yet. `txn_id` NULL = "<prefix>.commands". */
void cmd_producers_init(cmd_producers *p, const kq_config *cfg, const char *const *topics,
                        const char *txn_id, int skip_topic_setup);

/*
 * Create every producer (producer 0 also creates missing topics unless
 * skip_topic_setup) and init transactions on each. All or nothing: on failure
 * none is left. KQ_ECONFIG, KQ_EKAFKA, KQ_EFENCED, KQ_ETIMEDOUT ...
 */
int cmd_producers_open(cmd_producers *p, char *errstr, size_t errlen);

/* Purge and destroy every producer (they are recreated together). */
void cmd_producers_drop(cmd_producers *p);

/* The next transaction uses the next producer. */
void cmd_producers_next(cmd_producers *p);

/* The transactional.id of producer k. */
void cmd_producers_txn_id(const cmd_producers *p, int k, char *out, size_t outlen);

#endif
