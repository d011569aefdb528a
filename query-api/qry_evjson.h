/*
 * qry_evjson.h — one event record as the JSON object the audit API shows
 * (GET /api/v1/audit items), built from the Kafka record instead of the
 * PostgreSQL row: event_id, aggregate_type, aggregate_id, version, event_type,
 * actor, command_id, correlation_id, causation_id (null when absent),
 * schema_version, payload (the event table as `kcqrs-events decode` prints it,
 * `{}` when it has none; the workflow's webhook_secret and the run's
 * signing_secret "[redacted]", as the projector stores them), topic, partition,
 * offset, occurred_at (RFC 3339, microseconds). Used by the event stream.
 * Personal data sealed in the record (events/ev_pii.h) is opened with the
 * keys given to qry_evjson_set_keys ("[erased]" for an erased subject); a
 * missing data key of a subject not erased is KQ_ENOTFOUND, logged as an
 * error, counted (qry_evjson_missing_keys) and the event is not shown.
 *
 * Threads: reentrant (the keyring locks); set_keys before any build.
 */
#ifndef QRY_EVJSON_H
#define QRY_EVJSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ev_codec.h"
#include "kq_keyring.h"

/* The keys that open sealed personal data (borrowed; NULL: none, a sealed
 * record is then KQ_ENOTFOUND). */
void qry_evjson_set_keys(kq_keyring *kr);

/* Records not shown because a data key was missing (subject not erased). */
unsigned long long qry_evjson_missing_keys(void);

/*
 * `e` is ev_envelope_decode() of buf[0..len) (verified). *out: a new object owned by
 * the caller. 0, KQ_ECORRUPT (a payload that does not print as a JSON object), KQ_ENOMEM,
 * KQ_ENOTFOUND (sealed personal data without its data key).
 */
int qry_evjson_build(const ev_envelope *e, const uint8_t *buf, const char *topic, int32_t partition,
                     int64_t offset, json_t **out);

#endif
