/*
 * qry_chain.h — the hash-chain state of every partition of the event topics,
 * kept current by the query API for GET /api/v1/audit/chain.
 *
 * What it is for
 *   kcqrs-audit verify-chain reads the whole log each time it runs. The
 *   console's audit page and monitoring want the answer at any moment and at
 *   no cost, so kcqrs-query checks the chain incrementally: one background
 *   thread with one read_committed Kafka consumer (never joins a group,
 *   never commits) reads every partition of the three event topics from its
 *   first record and feeds each record to that partition's ev_chain
 *   (events/ev_chain.h, the code verify-chain uses), then keeps following
 *   the log. A request copies the states under a mutex; it never waits for
 *   Kafka.
 *
 *   The state lives in memory: a restart reads the log again from the start
 *   (each partition shows "not_verified" until it was read to its end once).
 *   New partitions are picked up from the status refresher's watermarks
 *   (qry_status.h) within a second and assigned incrementally.
 *
 *   A log that goes back (the topic deleted and created again while this
 *   runs) is read again from its start, that partition's state forgotten:
 *   when a record or the partition's end arrives at an offset below what
 *   was checked (the consumer was reset to the start of the new log), when
 *   the low watermark goes below the highest seen, or when the high
 *   watermark is below what was checked and no record arrived since the
 *   watermarks were queried. Logged, and counted in
 *   kcqrs_query_chain_restarts_total. librdkafka 2.0 does not expose topic
 *   ids, so a new log that has already grown past the checked offset before
 *   the consumer comes back is not told apart: it shows as a break (a
 *   prev_hash mismatch) at the first offset read from it, never as silence.
 *
 * Per partition: state "intact" (read to its end, no break), "broken" (the
 *   first break: kind, offset, message; ev_chain_finish is applied to a copy,
 *   so a mismatch on the last record shows at once), or "not_verified" (not
 *   yet read to its end); events_checked (records fed, tombstones and invalid
 *   records included), last_checked_offset and head (hash of that record),
 *   end_offset (the end seen when the partition was last read to its end),
 *   checked_at (when the checker last reached the end or took a record).
 *
 * Owns its thread and librdkafka handle. Threads: qry_chain_json and
 * qry_chain_metrics from any thread.
 */
#ifndef QRY_CHAIN_H
#define QRY_CHAIN_H

#include <jansson.h>
#include <stdio.h>

#include "kq_config.h"
#include "qry_status.h"

typedef struct qry_chain qry_chain;

/* Start the checker (cfg and status borrowed; must outlive it). 0, KQ_ENOMEM,
 * KQ_ERANGE (topic prefix too long) or KQ_EKAFKA with errstr. */
int qry_chain_start(const kq_config *cfg, qry_status *status, qry_chain **out, char *errstr,
                    size_t errlen);

/* Stop the thread and free everything (NULL is fine). */
void qry_chain_stop(qry_chain *ch);

/*
 * The answer of GET /api/v1/audit/chain (a new reference): {"intact": true
 * when every known partition is intact, false when one is broken, null while
 * one is not verified yet, "partitions": [{"topic","partition","state",
 * "events_checked","last_checked_offset","head","end_offset","checked_at",
 * "break": null | {"kind","offset","message"}}]} by topic then partition.
 */
json_t *qry_chain_json(qry_chain *ch);

/*
 * Its /metrics part: kcqrs_query_chain_partitions{state="intact"|"broken"|
 * "not_verified"} (gauges, the states of the answer above),
 * kcqrs_query_chain_events_checked_total (records fed since the start) and
 * kcqrs_query_chain_restarts_total (partitions read again from their start).
 * Nothing when ch is NULL.
 */
void qry_chain_metrics(qry_chain *ch, FILE *out);

#endif
