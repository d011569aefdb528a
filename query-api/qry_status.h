/*
 * qry_status.h — what the query API knows about Kafka, for GET /api/v1/status
 * and the lag part of /ready.
 *
 * A background thread refreshes a snapshot every second: cluster metadata
 * (brokers, the kcqrs topics and their partitions) and, per partition of the
 * three event topics and the dead-letter topic, the low and high watermarks
 * (rd_kafka_query_watermark_offsets), each call bounded by the time left of a
 * 2 s budget (at most cfg->kafka_timeout_ms). Readers copy the last snapshot
 * and never wait for Kafka, so /status answers in bounded time and still
 * answers (connected: false, the error, the age of the last good data) while
 * Kafka is down.
 *
 * Owns its librdkafka handle (a plain producer used only for metadata
 * requests) and thread. Threads: qry_status_snapshot from any thread.
 */
#ifndef QRY_STATUS_H
#define QRY_STATUS_H

#include <jansson.h>
#include <stddef.h>

#include "kq_config.h"

typedef struct qry_status qry_status;

/* Start the refresher (cfg borrowed; must outlive it). 0, KQ_EKAFKA or KQ_EIO. */
int qry_status_start(const kq_config *cfg, qry_status **out, char *errstr, size_t errlen);
void qry_status_stop(qry_status *st);

/*
 * Copy of the last snapshot: *kafka = {"connected", "error"?, "age_ms",
 * "brokers": [{"id","host","port","state": "up"|"down"}], "brokers_down": [id],
 * "partitions_unavailable": ["<topic>/<partition>"], "partitions_under_replicated":
 * [...], "topics": {"<topic>": {"partitions": [{"partition","leader","replicas",
 * "isr","state","low","high"}]}}} and *ends = {"<topic>/<partition>": [low, high]}
 * (both new references). The brokers are every one this process has seen or
 * that holds a replica of a topic; one is down when the metadata does not list
 * it or it does not accept a TCP connection within 0.5 s (a broker that lost
 * the controller quorum keeps serving stale metadata). A partition's state: ok,
 * under_replicated (a replica out of sync or down), not_enough_replicas (fewer
 * live in-sync replicas than KCQRS_MIN_INSYNC_REPLICAS: writes fail) or
 * unavailable (no live leader); the last two are listed in
 * partitions_unavailable. *ends is empty until a refresh has succeeded; a
 * partition without a live leader keeps its last known watermarks.
 */
void qry_status_snapshot(qry_status *st, json_t **kafka, json_t **ends);

#endif
