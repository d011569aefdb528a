/*
 * qry_api.h — the HTTP side of kcqrs-query: routes, parameter checks, answers
 * (DESIGN.md sections 7 and 8).
 *
 * Routes
 *   GET /api/v1/resources/{id}         reader   LMDB; ETag "<version>", If-None-Match -> 304
 *   GET /api/v1/resources              reader   LMDB; ?status=&limit=&cursor=
 *   GET /api/v1/resources/{id}/events  reader   PostgreSQL; ?limit=&cursor=
 *   GET /api/v1/workflows/{id}         reader   LMDB document; ETag, 304 (never the secret)
 *   GET /api/v1/workflows              reader   LMDB; ?enabled=true|false&limit=&cursor=
 *   GET /api/v1/workflows/{id}/events  reader   PostgreSQL; ?limit=&cursor=
 *   GET /api/v1/runs/{id}              reader   LMDB document; ETag, 304
 *   GET /api/v1/runs                   reader   LMDB; ?workflow_id=&status=&limit=&cursor=
 *   GET /api/v1/runs/{id}/events       reader   PostgreSQL; ?limit=&cursor=
 *   GET /api/v1/audit                  auditor  PostgreSQL; ?aggregate_type=&aggregate_id=
 *                                               &actor=&event_type=&since=&until=&limit=&cursor=
 *   GET /api/v1/status                 reader   Kafka (qry_status), both targets' offsets
 *   GET /api/v1/events/stream          reader   Kafka: SSE or NDJSON (qry_stream.h)
 *   GET /api/v1/snapshots              reader   the named LMDB snapshots (qry_snap.h)
 *   GET /api/v1/audit/chain            auditor  hash chain per partition (qry_chain.h)
 *   GET /api/v1/replay/runs            reader   PostgreSQL; kcqrs-replay results; ?limit=
 *   (admin implies reader and auditor.) Pages answer {"items": [...],
 *   "next_cursor": string or null}; cursors are described in qry_text.h.
 *
 * Bad parameters are answered 400 validation_failed with one detail per
 * offending parameter (unknown and repeated ones too), before any read or
 * wait.
 *
 * Read-your-writes: a consistency token (X-Consistency-Token header, else
 *   ?consistent_with=) names (topic, partition, offset); a malformed token, or
 *   one naming a topic or partition this deployment does not have, is a 400.
 *   The handler checks once whether the endpoint's read model (LMDB for
 *   resources, workflows and runs by id and lists, PostgreSQL for events
 *   and audit) has
 *   next_offset > offset; if not, it defers the request to qry_wait, which
 *   answers it from its watcher thread: the read when applied, else after
 *   cfg->query_wait_ms 503 projection_behind with Retry-After.
 *
 * Named snapshots: ?snapshot=NAME ([a-z0-9_]{1,32}, else 400) on every
 *   read route but /status reads the point-in-time model kcqrs-replay built with
 *   --until ... --name NAME: $KCQRS_LMDB_DIR/snapshots/NAME (qry_snap) for
 *   the LMDB routes, schema <KCQRS_PG_SCHEMA>_snap_NAME (the page
 *   query schema-qualified) for events and audit. No such snapshot -> 404
 *   snapshot_not_found. A consistency token together with ?snapshot= is a 400:
 *   a snapshot never moves, so waiting for it makes no sense.
 *
 * Degradation: the LMDB read model not made yet -> 503 not_ready on LMDB
 *   routes; PostgreSQL down -> 503 unavailable on PostgreSQL routes only.
 *   /status always answers 200 and says what is down.
 *
 * Ownership: the route table points into `api`, which must outlive the
 * server; api borrows cfg, rm, snaps, pg, wait and status (wait and status may be
 * NULL: no waiting, no Kafka section). Threads: handlers on HTTP threads,
 * qry_api_wait_done on the watcher thread.
 */
#ifndef QRY_API_H
#define QRY_API_H

#include <stdatomic.h>
#include <stdio.h>

#include "kq_config.h"
#include "kq_http.h"
#include "kq_kafka.h"
#include "qry_chain.h"
#include "qry_pg.h"
#include "qry_rm.h"
#include "qry_snap.h"
#include "qry_status.h"
#include "qry_stream.h"
#include "qry_wait.h"

typedef struct qry_api {
    const kq_config *cfg;
    qry_rm *rm;
    qry_snap *snaps; /* NULL: no LMDB snapshots (every ?snapshot= is a 404 on LMDB routes) */
    qry_pg *pg;      /* NULL: PostgreSQL routes answer 503 */
    qry_wait *wait;
    qry_status *status;
    qry_stream *stream; /* GET /api/v1/events/stream (qry_stream.h) */
    qry_chain *chain;   /* GET /api/v1/audit/chain (qry_chain.h); NULL: 503 */
    char topics[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX];
    atomic_uint_fast64_t projection_behind; /* 503 projection_behind answers */
    atomic_uint_fast64_t served_after_wait;
} qry_api;

#define QRY_API_NROUTES 15
#define QRY_REPLAY_RUNS_DEFAULT 20 /* GET /api/v1/replay/runs ?limit= */
#define QRY_REPLAY_RUNS_MAX 200

/* Fill topic names from cfg; 0 or KQ_ERANGE. Set rm/pg/wait/status yourself. */
int qry_api_init(qry_api *api, const kq_config *cfg);

/* Fill routes[QRY_API_NROUTES] for `api`. */
void qry_api_routes(qry_api *api, kq_http_route *routes);

/* kq_http callbacks (arg = the qry_api). */
int qry_api_ready(void *arg, char *why, size_t whylen);
void qry_api_metrics(void *arg, FILE *out);

/* qry_wait callbacks (arg = the qry_api). */
int qry_api_wait_load(void *arg, qry_target target, json_t **offsets, char *errstr, size_t errlen);
void qry_api_wait_done(void *arg, kq_http_req *req, int kind, qry_wait_outcome outcome);

#endif
