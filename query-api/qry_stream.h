/*
 * qry_stream.h — GET /api/v1/events/stream: the event log over HTTP, as
 * Server-Sent Events (text/event-stream, the default) or NDJSON
 * (Accept: application/x-ndjson), for consumers that do not speak Kafka.
 *
 * Where a stream starts: ?from=beginning, ?from=now (the default: every
 * partition's last stable offset, which ListOffsets gives a read_committed
 * consumer, so a transaction still open at the request is in the stream once
 * it commits), ?from=<consistency token> (the token's event
 * in its partition, and in every other partition the first event written at
 * or after that event's time), or a position: the Last-Event-ID header
 * (EventSource sends it when it reconnects) or ?after=<id>; a position wins
 * over ?from, and ?after together with ?from is a 400.
 *
 * What it sends: every committed event (read_committed consumer) of the three
 * event topics, in offset order per partition (so in version order per
 * aggregate), as the JSON object the audit API shows (qry_evjson.h),
 * filtered by ?aggregate_type=, ?aggregate_id=, ?event_type= (a name, or
 * several separated by commas). SSE: `id: <position>` and `data: <json>` per
 * event (the default event type "message"); NDJSON: one object per line with
 * the position in "stream_position". The position (qry_spos.h) is the next
 * offset of every partition after that event; resuming at it (with the same
 * filters) repeats nothing and skips nothing.
 *
 * Liveness: a heartbeat every KCQRS_STREAM_HEARTBEAT_MS without an event
 * (SSE `: hb`, NDJSON an empty line), and one as soon as the start is fixed:
 * with from=now, every event committed after the first heartbeat arrived is
 * in the stream. Backpressure: at most
 * KCQRS_STREAM_BUFFER_KB wait unsent (kq_http_stream_write refuses more; one
 * larger event goes alone);
 * while the buffer is full the stream's thread stops reading Kafka (the log
 * is the buffer), so a client that reads slowly gets everything at its pace.
 * A client that reads nothing for KCQRS_STREAM_STALL_MS while its buffer is
 * full is cut with a last message: SSE `event: error` with data a problem
 * object (lib/kq_problem.h: code slow_consumer, status 429, advisory) plus
 * "resume_from" (the position of the last event sent), NDJSON
 * {"error":{...same}}; the connection closes. A stream that cannot go on
 * (Kafka unavailable at its start: 503 unavailable; the server stopping:
 * 503 shutting_down with resume_from) ends the same way. At most KCQRS_STREAM_MAX streams
 * at once: beyond, 503 too_many_streams with Retry-After.
 *
 * Threads: the handler runs on an HTTP thread, checks everything (400s are
 * answered before the stream begins) and starts one thread per stream, which
 * owns a librdkafka consumer (assigned partitions, no group, prefetch bounded
 * to QRY_STREAM_QUEUE_KB) and the kq_http_stream. qry_stream_stop() makes
 * every stream end and waits for their threads.
 */
#ifndef QRY_STREAM_H
#define QRY_STREAM_H

#include <stdio.h>

#include "kq_config.h"
#include "kq_http.h"
#include "kq_kafka.h"
#include "qry_status.h"

#define QRY_STREAM_QUEUE_KB 1024
#define QRY_STREAM_PATH "/api/v1/events/stream"

typedef struct qry_stream qry_stream;

/* The registry of streams. Borrows cfg and status (must outlive it). 0 or KQ_ENOMEM /
 * KQ_ERANGE (topic names). */
int qry_stream_new(const kq_config *cfg, qry_status *status, qry_stream **out);

/* The route handler (arg = the qry_stream). */
void qry_stream_handler(kq_http_req *req, void *arg);

/* Prometheus text: kcqrs_query_streams_active, ..._stream_events_total, ... */
void qry_stream_metrics(qry_stream *ss, FILE *out);

/* End every stream and wait for their threads (at most ~10 s), then free. NULL: no-op. */
void qry_stream_free(qry_stream *ss);

#endif
