/*
 * qry_evjson.c — an event record as the audit API's JSON; see qry_evjson.h.
 */
#include "qry_evjson.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ev_json.h"
#include "ev_pii.h"
#include "kq_err.h"
#include "kq_log.h"
#include "kq_rand.h"
#include "kq_time.h"

static kq_keyring *keys;
static atomic_ullong missing;

void qry_evjson_set_keys(kq_keyring *kr)
{
    keys = kr;
}

unsigned long long qry_evjson_missing_keys(void)
{
    return atomic_load(&missing);
}

static json_t *str_or_null(ev_str s)
{
    return s.ptr != NULL ? json_stringn(s.ptr, s.len) : json_null();
}

/* The payload object, secrets redacted. NULL on error (*rc says which). */
static json_t *payload(const ev_envelope *e, const uint8_t *buf, int *rc)
{
    char *text = NULL;
    size_t len = 0, cap = 0;
    json_t *p;
    int r = ev_json_payload_append(buf, &text, &len, &cap);

    *rc = 0;
    if (r == KQ_ENOMEM) {
        free(text);
        *rc = KQ_ENOMEM;
        return NULL;
    }
    if (r == KQ_ENOTFOUND || len == 0) {
        free(text);
        return json_object();
    }
    p = json_loadb(text, len, 0, NULL);
    free(text);
    if (p == NULL || !json_is_object(p)) {
        json_decref(p);
        *rc = KQ_ECORRUPT;
        return NULL;
    }
    /* secrets, plain or sealed (ev_secret.h), read "[redacted]" */
    if ((e->payload_type == EV_WORKFLOW_CREATED || e->payload_type == EV_WORKFLOW_UPDATED) &&
        (json_object_get(p, "webhook_secret") != NULL ||
         json_object_get(p, "webhook_secret_sealed") != NULL)) {
        json_object_del(p, "webhook_secret_sealed");
        json_object_set_new(p, "webhook_secret", json_string("[redacted]"));
    }
    if (e->payload_type == EV_RUN_STARTED &&
        (json_object_get(p, "signing_secret") != NULL ||
         json_object_get(p, "signing_secret_sealed") != NULL)) {
        json_object_del(p, "signing_secret_sealed");
        json_object_set_new(p, "signing_secret", json_string("[redacted]"));
    }
    return p;
}

static int build(const ev_envelope *e, const uint8_t *buf, const char *topic, int32_t partition,
                 int64_t offset, json_t **out);

int qry_evjson_build(const ev_envelope *e, const uint8_t *buf, const char *topic, int32_t partition,
                     int64_t offset, json_t **out)
{
    ev_fb_builder fb;
    ev_envelope plain;
    const uint8_t *pb;
    size_t pl;
    char err[384];
    int rc;

    *out = NULL;
    if (!ev_pii_sealed(e))
        return build(e, buf, topic, partition, offset, out);
    /* sealed personal data: print the record with it opened (ev_pii.h) */
    ev_fb_builder_init(&fb);
    if ((rc = ev_pii_plain_envelope(e, keys, &fb, &pb, &pl, NULL, err, sizeof err)) == 0 &&
        (rc = ev_envelope_decode(pb, pl, &plain, err, sizeof err)) == 0)
        rc = build(&plain, pb, topic, partition, offset, out);
    else if (rc == KQ_ENOTFOUND) {
        atomic_fetch_add(&missing, 1);
        kq_log_error("event %s [%d] offset %lld not shown: %s", topic, (int)partition,
                     (long long)offset, err);
    }
    ev_fb_builder_free(&fb);
    return rc;
}

static int build(const ev_envelope *e, const uint8_t *buf, const char *topic, int32_t partition,
                 int64_t offset, json_t **out)
{
    char id[KQ_UUID_STR], when[KQ_TIME_MAX];
    const char *type = ev_event_type_name(e->payload_type);
    const char *agg = ev_aggregate_type_name(e->aggregate_type);
    json_t *p, *o;
    int rc;

    *out = NULL;
    if ((p = payload(e, buf, &rc)) == NULL)
        return rc;
    kq_uuid_format(e->event_id.bytes, id);
    kq_time_format(e->occurred_at_us, when);
    o = json_pack("{s:s, s:s, s:o, s:I, s:s, s:o, s:o, s:o, s:o, s:i, s:o, s:s, s:i, s:I, s:s}",
                  "event_id", id, "aggregate_type", agg ? agg : "unknown", "aggregate_id",
                  str_or_null(e->aggregate_id), "version", (json_int_t)e->version, "event_type",
                  type ? type : "NONE", "actor", str_or_null(e->actor), "command_id",
                  str_or_null(e->command_id), "correlation_id", str_or_null(e->correlation_id),
                  "causation_id", str_or_null(e->causation_id), "schema_version",
                  (int)e->schema_version, "payload", p, "topic", topic, "partition", (int)partition,
                  "offset", (json_int_t)offset, "occurred_at", when);
    if (o == NULL)
        return KQ_ENOMEM;
    *out = o;
    return 0;
}
