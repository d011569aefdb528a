/*
 * qry_evjson.h — one event record as the JSON object the audit API shows
 * (GET /api/v1/audit items), built from the Kafka record instead of the
 * PostgreSQL row: event_id, aggregate_type, aggregate_id, version, event_type,
 * actor, command_id, correlation_id, causation_id (null when absent),
 * schema_version, payload (the event table as `kcqrs-events decode` prints it,
 * `{}` when it has none; the workflow's webhook_secret and the run's
 * signing_secret "[redacted]", as the projector stores them), topic, partition,
 * offset, occurred_at (RFC 3339, microseconds). Used by the event stream.
 *
 * Threads: pure, reentrant.
 */
#ifndef QRY_EVJSON_H
#define QRY_EVJSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ev_codec.h"

/*
 * `e` is ev_envelope_decode() of buf[0..len) (verified). *out: a new object owned by
 * the caller. 0, KQ_ECORRUPT (a payload that does not print as a JSON object), KQ_ENOMEM.
 */
int qry_evjson_build(const ev_envelope *e, const uint8_t *buf, const char *topic, int32_t partition,
                     int64_t offset, json_t **out);

#endif
