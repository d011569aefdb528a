/*
 * aud_filter.c — filters and output rows of kcqrs-audit query; see aud_filter.h.
 */
#include "aud_filter.h"
#include "ev_json.h"
#include "kq_err.h"
#include "kq_kafka.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void aud_filter_init(aud_filter *f)
{
    memset(f, 0, sizeof *f);
    f->agg = EV_AGG_UNKNOWN;
    f->event_type = EV_EVENT_NONE;
    f->since_us = INT64_MIN;
    f->until_us = INT64_MAX;
}

ev_aggregate_type aud_aggregate_type_parse(const char *s)
{
    if (s == NULL)
        return EV_AGG_UNKNOWN;
    if (strcasecmp(s, "resource") == 0)
        return EV_AGG_RESOURCE;
    if (strcasecmp(s, "workflow") == 0)
        return EV_AGG_WORKFLOW;
    if (strcasecmp(s, "run") == 0)
        return EV_AGG_RUN;
    return EV_AGG_UNKNOWN;
}

const char *aud_aggregate_type_topic(ev_aggregate_type t)
{
    switch (t) {
    case EV_AGG_RESOURCE:
        return "resource";
    case EV_AGG_WORKFLOW:
        return "workflow";
    case EV_AGG_RUN:
        return "run";
    default:
        return NULL;
    }
}

int aud_filter_key(const aud_filter *f, const void *key, size_t keylen)
{
    size_t idlen;
    int64_t version;

    if (f->aggregate_id == NULL || key == NULL)
        return 1;
    if (kq_kafka_record_key_parse(key, keylen, &idlen, &version) != 0)
        return 1; /* not our key form: let the envelope decide */
    return idlen == strlen(f->aggregate_id) && memcmp(key, f->aggregate_id, idlen) == 0;
}

int aud_filter_type_header(const aud_filter *f, const void *value, size_t len)
{
    const char *want;

    if (f->event_type == EV_EVENT_NONE || value == NULL)
        return 1;
    want = ev_event_type_name(f->event_type);
    return want != NULL && strlen(want) == len && memcmp(want, value, len) == 0;
}

static int str_eq(ev_str s, const char *c)
{
    size_t n = strlen(c);
    return s.ptr != NULL && s.len == n && memcmp(s.ptr, c, n) == 0;
}

aud_verdict aud_filter_envelope(const aud_filter *f, const ev_envelope *e)
{
    if (e->occurred_at_us > f->until_us)
        return AUD_STOP;
    if (e->occurred_at_us < f->since_us)
        return AUD_SKIP;
    if (f->agg != EV_AGG_UNKNOWN && e->aggregate_type != f->agg)
        return AUD_SKIP;
    if (f->aggregate_id != NULL && !str_eq(e->aggregate_id, f->aggregate_id))
        return AUD_SKIP;
    if (f->actor != NULL && !str_eq(e->actor, f->actor))
        return AUD_SKIP;
    if (f->event_type != EV_EVENT_NONE && e->payload_type != f->event_type)
        return AUD_SKIP;
    return AUD_MATCH;
}

size_t aud_json_compact(char *s, size_t len)
{
    size_t o = 0;
    int in_str = 0, esc = 0;

    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (in_str) {
            s[o++] = ch;
            if (esc)
                esc = 0;
            else if (ch == '\\')
                esc = 1;
            else if (ch == '"')
                in_str = 0;
        } else if (ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r') {
            continue;
        } else {
            if (ch == '"')
                in_str = 1;
            s[o++] = ch;
        }
    }
    if (o < len)
        s[o] = '\0';
    return o;
}

int aud_json_line(const uint8_t *buf, size_t len, const char *topic, int32_t partition,
                  int64_t offset, char **out, size_t *outlen, char *errstr, size_t errlen)
{
    char *json = NULL, *res;
    size_t jl = 0, n, tl = strlen(topic);
    int rc;

    *out = NULL;
    if ((rc = ev_json_decode(buf, len, &json, &jl, errstr, errlen)) != 0)
        return rc;
    n = aud_json_compact(json, jl);
    /* the object ends with '}'; topic names are [A-Za-z0-9._-]: no escaping */
    if (n < 2 || json[n - 1] != '}') {
        free(json);
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "decoded envelope is not a JSON object");
    }
    res = malloc(n + tl + 96);
    if (res == NULL) {
        free(json);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    memcpy(res, json, n - 1);
    *outlen = n - 1;
    *outlen += (size_t)sprintf(
        res + n - 1, "%s\"topic\":\"%s\",\"partition\":%" PRId32 ",\"offset\":%" PRId64 "}",
        n > 2 ? "," : "", topic, partition, offset);
    free(json);
    *out = res;
    return 0;
}
