/*
 * kq_kafka.h — the Kafka helpers every kcqrs service uses (librdkafka 2.0.2 API).
 *
 * What it is for
 *   One place that turns a kq_config into librdkafka clients configured the way
 *   DESIGN.md section 4/5/6 requires, so no service re-invents the settings that
 *   make the log trustworthy:
 *     - kq_kafka_conf_new(): the base conf (brokers, client id, timeouts bounded by
 *       KCQRS_KAFKA_TIMEOUT_MS, librdkafka's log lines routed to kq_log);
 *     - kq_kafka_txn_producer_new(): the single writer's transactional producer
 *       (idempotent, acks=all, delivery and transaction timeouts bounded so an
 *       unreachable broker fails a command in seconds, not minutes);
 *     - kq_kafka_consumer_new(): a read_committed consumer that never commits or
 *       stores offsets behind the caller's back (projectors keep their offsets in
 *       LMDB/PostgreSQL, in the same transaction as the data);
 *     - kq_kafka_ensure_topics(): create missing event topics with
 *       cleanup.policy=compact, retention.ms=-1, the configured replication factor
 *       and min.insync.replicas; refuse existing topics whose partition count
 *       differs from the configuration or that are not compacted;
 *     - kq_kafka_partition_for() and kq_kafka_record_key(): the two functions that
 *       decide where an event lives and under which key. Every producer and every
 *       tool that looks an aggregate up must use these.
 *
 * Partitioning
 *   partition = (murmur2(aggregate_id) & 0x7fffffff) % partitions, where murmur2 is
 *   the 32-bit MurmurHash2 variant with seed 0x9747b28c that Kafka's Java client
 *   uses for keyed records (org.apache.kafka.common.utils.Utils.murmur2) and that
 *   librdkafka exposes as the "murmur2" partitioner. We chose it over FNV-1a
 *   because it is the hash the rest of the Kafka world already computes: any
 *   Kafka client (Java's Utils.murmur2, librdkafka's
 *   rd_kafka_msg_partitioner_murmur2) finds an aggregate's partition from its id
 *   without our code, and the unit tests use librdkafka's function as an
 *   independent oracle. Note that we hash the aggregate id, not the record
 *   key ("<id>/<version>"), so the partition must be passed explicitly when
 *   producing; the built-in partitioner would scatter one aggregate's events.
 *   The function is pure and stable: changing it would move aggregates between
 *   partitions and break per-aggregate ordering of existing logs. Never change it.
 *
 * Ownership
 *   Constructors return handles owned by the caller (rd_kafka_destroy()).
 *   Functions that take an rd_kafka_conf_t consume it: on success it belongs to
 *   the new handle, on failure it has been destroyed. Nothing else here allocates
 *   memory that outlives a call.
 *
 * Threads
 *   Everything here is reentrant. librdkafka handles are thread-safe for produce,
 *   poll and admin calls; the transaction calls (kq_kafka_txn_*) must come from
 *   one thread at a time per producer, as librdkafka requires. The log callback
 *   installed by kq_kafka_conf_new() runs on librdkafka's internal threads and
 *   only calls kq_log(), which is thread-safe.
 *
 * Errors
 *   0 or a negative KQ_E* code (kq_err.h) with a sentence in errstr. Kafka-side
 *   failures are KQ_EKAFKA, deadlines KQ_ETIMEDOUT (outcome may be unknown), a
 *   transactional producer fenced by a newer instance KQ_EFENCED (fatal: destroy
 *   the producer and stop writing).
 */
#ifndef KQ_KAFKA_H
#define KQ_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "kq_config.h"

/* Header that carries the event type name (e.g. "ResourceCreated") on every record. */
#define KQ_KAFKA_HEADER_EVENT_TYPE "event_type"

/* The dead-letter topic is <prefix>.dlq. */
#define KQ_KAFKA_DLQ_SUFFIX "dlq"

/* Longest topic name Kafka accepts is 249; with the NUL this fits any name. */
#define KQ_KAFKA_TOPIC_MAX 256

/* Digits of the zero-padded version in a record key (INT64_MAX has 19). */
#define KQ_KAFKA_VERSION_DIGITS 20

/* -------------------------------------------------------------- configuration */

/*
 * A new base configuration from `cfg`: bootstrap.servers, client.id (`client_id`,
 * "kcqrs" if NULL), socket and connection-setup timeouts bounded by
 * cfg->kafka_timeout_ms, then the operator's properties (cfg->kafka_props,
 * KCQRS_KAFKA_PROPERTIES: TLS, SASL, tuning; see kq_kprops.h), and a log callback
 * that forwards librdkafka's log lines to kq_log. Every Kafka client of every
 * binary is built from this conf, so the properties reach them all. Returns NULL
 * and fills errstr on failure (never with a secret value in it). The conf is
 * owned by the caller until it is passed to a constructor (which consumes it).
 */
rd_kafka_conf_t *kq_kafka_conf_new(const kq_config *cfg, const char *client_id, char *errstr,
                                   size_t errlen);

/*
 * A base conf for a consumer: kq_kafka_conf_new() plus the prefetch bounded by
 * bytes (KCQRS_KAFKA_QUEUE_KB: queued.max.messages.kbytes; fetch.max.bytes a
 * quarter of it, at least 1 MiB; queued.min.messages high enough that the byte
 * bound is the one that holds) and fetch.error.backoff.ms=10 (librdkafka 2.0
 * pauses every partition that long whenever the queue is full, so with a
 * small queue the default 500 ms would starve a fast reader). The caller may
 * override any of them before kq_kafka_consumer_new(). Owned by the caller
 * until passed to a constructor. NULL + errstr on failure.
 */
rd_kafka_conf_t *kq_kafka_consumer_conf_new(const kq_config *cfg, const char *client_id,
                                            char *errstr, size_t errlen);

/* Bound an existing consumer conf's prefetch to `kbytes` (as above; <= 0: 8192). */
int kq_kafka_conf_bound_queue(rd_kafka_conf_t *conf, long kbytes, char *errstr, size_t errlen);

/*
 * The share of cfg->kafka_timeout_ms a transactional producer gives a record to
 * be delivered (message.timeout.ms and request.timeout.ms): three quarters, at
 * least 100 ms. A record that cannot reach min.insync.replicas fails after this
 * long, so the writer can answer 503 within KCQRS_KAFKA_TIMEOUT_MS counted from
 * when the command arrived: the rest of the bound is for waiting in the queue.
 */
int kq_kafka_delivery_timeout_ms(const kq_config *cfg);

/*
 * What stops this process's Kafka clients from connecting, when any of them
 * saw a failed login or TLS handshake (librdkafka's log lines, seen by the log
 * callback of kq_kafka_conf_new) and no request of this module got a broker's
 * answer since (metadata, admin result, init or commit): a fixed sentence such as
 * "Kafka authentication failed (check sasl.username, ...)" or "Kafka broker
 * certificate verify failed (check ssl.ca.location ...)"; else NULL. The
 * functions of this module that time out (metadata, admin requests,
 * transactions) put that sentence in errstr instead of "Timed out", so /ready
 * and the logs name the cause. Any thread.
 */
const char *kq_kafka_conn_failure(void);

/*
 * For a service's /ready answer that is not ready: when kq_kafka_conn_failure()
 * names a failed login or handshake, put that sentence first in `why`
 * ("<sentence>; <why as it was>"), unless it is there already. Any thread.
 */
void kq_kafka_ready_why(char *why, size_t whylen);

/* rd_kafka_conf_set() with our error convention (KQ_ECONFIG naming the property). */
int kq_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                      size_t errlen);

/*
 * Transactional producer with `transactional_id`: enable.idempotence=true,
 * acks=all, message.timeout.ms = request.timeout.ms =
 * kq_kafka_delivery_timeout_ms() (a record that cannot be delivered fails the
 * transaction within that time), transaction.timeout.ms =
 * 2 * kafka_timeout_ms (at least 1 s; the broker aborts a transaction left open
 * longer). `conf` may be NULL (a base conf is built from cfg) or a conf from
 * kq_kafka_conf_new() on which the caller set callbacks (dr_msg_cb, opaque);
 * it is consumed either way. rd_kafka_init_transactions() is NOT called: use
 * kq_kafka_txn_init(). Returns NULL and fills errstr on failure.
 */
rd_kafka_t *kq_kafka_txn_producer_new(const kq_config *cfg, const char *transactional_id,
                                      rd_kafka_conf_t *conf, char *errstr, size_t errlen);

/*
 * Consumer reading only committed transactions: isolation.level=read_committed,
 * enable.auto.commit=false, enable.auto.offset.store=false,
 * auto.offset.reset=earliest, enable.partition.eof=true (reaching the end of a
 * partition is reported as RD_KAFKA_RESP_ERR__PARTITION_EOF, which callers that
 * "read to the end" rely on). `group_id` is required: librdkafka's consumer API
 * (rd_kafka_assign, rd_kafka_consumer_poll) needs one even for a consumer that
 * only assigns partitions; such a consumer never joins the group (no
 * rebalances) and uses the id only if it commits offsets. The main queue is redirected to
 * the consumer queue (rd_kafka_poll_set_consumer), so rd_kafka_consumer_poll()
 * serves everything. `conf` as for kq_kafka_txn_producer_new(). Returns NULL
 * and fills errstr on failure.
 */
rd_kafka_t *kq_kafka_consumer_new(const kq_config *cfg, const char *group_id, rd_kafka_conf_t *conf,
                                  char *errstr, size_t errlen);

/* ---------------------------------------------------------------------- topics */

/*
 * The topics every kcqrs deployment has, in a fixed order:
 * <prefix>.resource.events, <prefix>.workflow.events, <prefix>.run.events,
 * <prefix>.dlq. Fills names[i] (KQ_KAFKA_TOPIC_MAX bytes each) and returns the
 * count (4), or KQ_ERANGE if a name would not fit.
 */
#define KQ_KAFKA_NTOPICS 4

/*
 * delete.retention.ms of every topic kcqrs creates: how long a tombstone outlives the
 * compaction that removed what it deletes. A tombstone in the key topic is an erasure; if
 * the broker dropped it (default: 24 h), a restarted service would take the erased subject
 * for one whose key is missing. 100 years, i.e. for good; not Long.MAX, which the broker
 * adds to the current time.
 */
#define KQ_KAFKA_DELETE_RETENTION_MS "3153600000000"
int kq_kafka_topic_names(const kq_config *cfg, char names[][KQ_KAFKA_TOPIC_MAX]);

/*
 * Make sure every topic in `topics` exists: missing ones are created with
 * cfg->partitions partitions, cfg->replication_factor replicas and the configs
 * cleanup.policy=compact, retention.ms=-1, min.insync.replicas=
 * cfg->min_insync_replicas. A topic that already exists is accepted when it has
 * cfg->partitions partitions and a cleanup.policy of exactly "compact"; otherwise
 * KQ_ECONFIG (a different partition count would move aggregates between
 * partitions; a "delete" policy would throw history away). The whole call is
 * bounded by about 3 * cfg->kafka_timeout_ms (create, metadata, describe).
 * `rk` may be any client handle (a producer is the usual choice).
 */
int kq_kafka_ensure_topics(rd_kafka_t *rk, const kq_config *cfg, const char *const *topics,
                           size_t ntopics, char *errstr, size_t errlen);

/*
 * Partition count of `topic` from cluster metadata, or KQ_ENOTFOUND when the
 * topic does not exist. Optionally (replication != NULL) the replica count of
 * partition 0.
 */
int kq_kafka_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, int *partitions,
                              int *replication, char *errstr, size_t errlen);

/*
 * Value of topic config `name` as the broker reports it (DescribeConfigs),
 * copied into value/valuelen (KQ_ERANGE if it does not fit). KQ_ENOTFOUND when
 * the broker does not report that config. `is_default` (may be NULL) is set to
 * 1 when the value is the broker's default rather than set on the topic.
 */
int kq_kafka_topic_config_get(rd_kafka_t *rk, const char *topic, const char *name, int timeout_ms,
                              char *value, size_t valuelen, int *is_default, char *errstr,
                              size_t errlen);

/* ----------------------------------------------------------- keys and partitions */

/* Kafka's murmur2 (Utils.murmur2), as a uint32_t; see the header comment. */
uint32_t kq_kafka_murmur2(const void *data, size_t len);

/*
 * The partition of aggregate `aggregate_id` (len bytes, need not be
 * NUL-terminated): (murmur2 & 0x7fffffff) % partitions. Returns KQ_EINVAL if
 * partitions < 1 or aggregate_id is NULL with len > 0.
 */
int kq_kafka_partition_for(const char *aggregate_id, size_t len, int partitions);

/*
 * Record key "<aggregate_id>/<version>", version zero-padded to 20 digits
 * ("r1/00000000000000000007"). Writes a NUL-terminated string into buf and
 * returns its length, or KQ_ERANGE when buflen is too small (buf then holds ""
 * if buflen > 0), KQ_EINVAL for an empty or NULL id or a negative version.
 */
int kq_kafka_record_key(const char *aggregate_id, int64_t version, char *buf, size_t buflen);

/*
 * Inverse of kq_kafka_record_key(): split `key` (len bytes) at its last '/'.
 * On success *id_len is the length of the aggregate id (which starts at key)
 * and *version the parsed version. KQ_ECORRUPT if the key is not of that form
 * (exactly 20 digits after the '/', non-empty id).
 */
int kq_kafka_record_key_parse(const char *key, size_t len, size_t *id_len, int64_t *version);

/* -------------------------------------------------------------- transactions */

/*
 * The transaction calls with our error convention. Each maps librdkafka's
 * rd_kafka_error_t:
 *   fatal and fenced (another instance with the same transactional.id) -> KQ_EFENCED,
 *   other fatal errors                                               -> KQ_EKAFKA,
 *     (after either, the producer is unusable: destroy it)
 *   retriable (typically a timeout: the outcome is unknown, the call
 *     may be repeated, or the transaction aborted)                    -> KQ_ETIMEDOUT,
 *   abortable (the transaction failed; call kq_kafka_txn_abort())     -> KQ_EKAFKA.
 * kq_kafka_txn_needs_abort() tells the last two apart for a KQ_EKAFKA result.
 */
int kq_kafka_txn_init(rd_kafka_t *rk, int timeout_ms, char *errstr, size_t errlen);
int kq_kafka_txn_begin(rd_kafka_t *rk, char *errstr, size_t errlen);
int kq_kafka_txn_commit(rd_kafka_t *rk, int timeout_ms, char *errstr, size_t errlen);
int kq_kafka_txn_abort(rd_kafka_t *rk, int timeout_ms, char *errstr, size_t errlen);

/*
 * Convert and destroy a librdkafka error (NULL -> 0). `what` names the operation
 * in errstr. *needs_abort (may be NULL) is set to 1 when the error is abortable.
 */
int kq_kafka_error_take(rd_kafka_error_t *error, const char *what, int *needs_abort, char *errstr,
                        size_t errlen);

/*
 * Produce one event record inside the current transaction: explicit
 * `partition`, key, value (copied), and the KQ_KAFKA_HEADER_EVENT_TYPE header
 * (omitted if event_type is NULL). `msg_opaque` is handed to the delivery report
 * callback. The record is only durable once the transaction commits.
 */
int kq_kafka_produce_event(rd_kafka_t *rk, const char *topic, int32_t partition, const void *key,
                           size_t keylen, const void *value, size_t len, const char *event_type,
                           void *msg_opaque, char *errstr, size_t errlen);

/* The same with a `traceparent` record header (kq_trace.h) when traceparent is not NULL. */
int kq_kafka_produce_traced(rd_kafka_t *rk, const char *topic, int32_t partition, const void *key,
                            size_t keylen, const void *value, size_t len, const char *event_type,
                            const char *traceparent, void *msg_opaque, char *errstr, size_t errlen);

/*
 * The value of the record's last header `name` as a NUL-terminated string into out (at
 * most outlen-1 bytes; a longer value or one holding a NUL is refused). 0, or -1 when m
 * has no such header or it does not fit.
 */
int kq_kafka_header_string(const rd_kafka_message_t *m, const char *name, char *out, size_t outlen);

#endif
