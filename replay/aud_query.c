/*
 * aud_query.c — `kcqrs-audit query`; see aud_query.h.
 */
#include "aud_query.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "aud_read.h"
#include "ev_pii.h"
#include "kq_err.h"
#include "kq_keyring.h"
#include "kq_log.h"
#include "kq_time.h"

typedef struct row {
    int64_t at;
    int topic; /* index in topics */
    int32_t partition;
    int64_t offset;
    char *json;               /* --format json */
    char *id, *actor;         /* --format table */
    const char *type, *event; /* static names */
    int64_t version;
} row;

typedef struct query {
    const aud_filter *f;
    const aud_topics *t;
    int table;
    row *rows;
    size_t n, cap;
    uint64_t skipped;
    int oom;
    const kq_config *cfg;
    kq_keyring *keys; /* opens sealed personal data; made at the first one */
    ev_fb_builder fb; /* the record with it opened */
} query;

static int topic_index(const aud_topics *t, const char *name)
{
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->name[i], name) == 0)
            return i;
    return 0;
}

static char *dup_str(ev_str s)
{
    return strndup(s.ptr != NULL ? s.ptr : "", s.ptr != NULL ? s.len : 0);
}

static int on_record(void *arg, aud_part *p, const rd_kafka_message_t *m)
{
    query *q = arg;
    rd_kafka_headers_t *hdrs = NULL;
    const void *hv = NULL;
    size_t hl = 0;
    ev_envelope e;
    char es[384];
    aud_verdict v;
    row r;
    const uint8_t *payload = m->payload;
    size_t plen = m->len;

    if (m->payload == NULL) {
        fprintf(stderr,
                "%s: %s [%" PRId32 "] offset %" PRId64
                ": tombstone (an erased event, key %.*s), skipped\n",
                AUD_PROG, p->topic, p->partition, m->offset,
                (int)(m->key_len > 200 ? 200 : m->key_len),
                m->key != NULL ? (const char *)m->key : "");
        q->skipped++;
        return 0;
    }
    if (!aud_filter_key(q->f, m->key, m->key_len))
        return 0;
    if (rd_kafka_message_headers((rd_kafka_message_t *)m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, KQ_KAFKA_HEADER_EVENT_TYPE, &hv, &hl) ==
            RD_KAFKA_RESP_ERR_NO_ERROR &&
        !aud_filter_type_header(q->f, hv, hl))
        return 0;
    if (ev_envelope_decode(m->payload, m->len, &e, es, sizeof es) != 0) {
        fprintf(stderr,
                "%s: %s [%" PRId32 "] offset %" PRId64 ": not a valid envelope (%s), skipped\n",
                AUD_PROG, p->topic, p->partition, m->offset, es);
        q->skipped++;
        return 0;
    }
    if (ev_pii_sealed(&e)) { /* personal data opened, or "[erased]" (ev_pii.h) */
        const uint8_t *pb;
        size_t pl;
        if ((q->keys == NULL && kq_keyring_new(q->cfg, AUD_PROG, &q->keys, es, sizeof es) != 0) ||
            ev_pii_plain_envelope(&e, q->keys, &q->fb, &pb, &pl, NULL, es, sizeof es) != 0 ||
            ev_envelope_decode(pb, pl, &e, es, sizeof es) != 0) {
            fprintf(stderr,
                    "%s: error: %s [%" PRId32 "] offset %" PRId64
                    ": its personal data does not open (%s), skipped\n",
                    AUD_PROG, p->topic, p->partition, m->offset, es);
            q->skipped++;
            return 0;
        }
        payload = pb;
        plen = pl;
    }
    v = aud_filter_envelope(q->f, &e);
    if (v == AUD_STOP)
        return 1;
    if (v == AUD_SKIP)
        return 0;
    memset(&r, 0, sizeof r);
    r.at = e.occurred_at_us;
    r.topic = topic_index(q->t, p->topic);
    r.partition = p->partition;
    r.offset = m->offset;
    if (q->table) {
        const char *tn = aud_aggregate_type_topic(e.aggregate_type);
        r.type = tn != NULL ? tn : "?";
        r.event = ev_event_type_name(e.payload_type);
        if (r.event == NULL)
            r.event = "?";
        r.version = e.version;
        r.id = dup_str(e.aggregate_id);
        r.actor = dup_str(e.actor);
        if (r.id == NULL || r.actor == NULL) {
            free(r.id);
            free(r.actor);
            q->oom = 1;
            return KQ_ENOMEM;
        }
    } else {
        size_t jl;
        int rc = aud_json_line(payload, plen, p->topic, p->partition, m->offset, &r.json, &jl, es,
                               sizeof es);
        if (rc == KQ_ENOMEM) {
            q->oom = 1;
            return rc;
        }
        if (rc != 0) {
            fprintf(stderr, "%s: %s [%" PRId32 "] offset %" PRId64 ": %s, skipped\n", AUD_PROG,
                    p->topic, p->partition, m->offset, es);
            q->skipped++;
            return 0;
        }
    }
    if (q->n == q->cap) {
        size_t nc = q->cap ? 2 * q->cap : 256;
        row *g = realloc(q->rows, nc * sizeof *g);
        if (g == NULL) {
            free(r.json);
            free(r.id);
            free(r.actor);
            q->oom = 1;
            return KQ_ENOMEM;
        }
        q->rows = g;
        q->cap = nc;
    }
    q->rows[q->n++] = r;
    return 0;
}

static int row_cmp(const void *a, const void *b)
{
    const row *x = a, *y = b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    if (x->topic != y->topic)
        return x->topic < y->topic ? -1 : 1;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return 0;
}

static void print_table(const row *rows, size_t n, FILE *out)
{
    int wt = 4, wy = 4, wi = 2, wv = 7, we = 10, wa = 5;
    char tb[KQ_TIME_MAX], vb[32];

    for (size_t i = 0; i < n; i++) {
        int l;
        kq_time_format(rows[i].at, tb);
        if ((l = (int)strlen(tb)) > wt)
            wt = l;
        if ((l = (int)strlen(rows[i].type)) > wy)
            wy = l;
        if ((l = (int)strlen(rows[i].id)) > wi)
            wi = l;
        if ((l = snprintf(vb, sizeof vb, "%" PRId64, rows[i].version)) > wv)
            wv = l;
        if ((l = (int)strlen(rows[i].event)) > we)
            we = l;
        if ((l = (int)strlen(rows[i].actor)) > wa)
            wa = l;
    }
    fprintf(out, "%-*s  %-*s  %-*s  %*s  %-*s  %s\n", wt, "time", wy, "type", wi, "id", wv,
            "version", we, "event type", "actor");
    for (size_t i = 0; i < n; i++) {
        kq_time_format(rows[i].at, tb);
        fprintf(out, "%-*s  %-*s  %-*s  %*" PRId64 "  %-*s  %s\n", wt, tb, wy, rows[i].type, wi,
                rows[i].id, wv, rows[i].version, we, rows[i].event, rows[i].actor);
    }
}

int aud_query_run(const kq_config *cfg, const aud_query_opts *o, FILE *out, char *errstr,
                  size_t errlen)
{
    const aud_filter *f = &o->f;
    query q;
    aud_topics t;
    aud_part *parts = NULL;
    size_t nparts = 0, shown;
    int rc;

    memset(&q, 0, sizeof q);
    q.cfg = cfg;
    ev_fb_builder_init(&q.fb);
    q.f = f;
    q.table = o->table;
    /* an event type names its topic */
    aud_read_topics(cfg,
                    f->agg != EV_AGG_UNKNOWN         ? f->agg
                    : f->event_type != EV_EVENT_NONE ? ev_event_aggregate_type(f->event_type)
                                                     : EV_AGG_UNKNOWN,
                    &t);
    q.t = &t;
    if ((rc = aud_read_plan(cfg, &t, f->aggregate_id, &parts, &nparts, errstr, errlen)) != 0)
        goto out;
    if ((rc = aud_read_run(cfg, "kcqrs.audit.query", parts, nparts,
                           f->since_us != INT64_MIN ? f->since_us : -1, on_record, &q, errstr,
                           errlen)) != 0) {
        if (q.oom)
            rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        goto out;
    }
    if (q.n > 0)
        qsort(q.rows, q.n, sizeof *q.rows, row_cmp);
    shown = q.n;
    if (o->limit > 0 && (unsigned long long)o->limit < shown)
        shown = (size_t)o->limit;
    if (q.table) {
        print_table(q.rows, shown, out);
    } else {
        for (size_t i = 0; i < shown; i++) {
            fputs(q.rows[i].json, out);
            fputc('\n', out);
        }
    }
    if (fflush(out) != 0 || ferror(out)) {
        rc = kq_seterr(errstr, errlen, KQ_EIO, "writing the output: %s", strerror(errno));
        goto out;
    }
    if (q.skipped > 0)
        kq_log_warn("%" PRIu64 " records skipped (see above)", q.skipped);
out:
    for (size_t i = 0; i < q.n; i++) {
        free(q.rows[i].json);
        free(q.rows[i].id);
        free(q.rows[i].actor);
    }
    free(q.rows);
    free(parts);
    kq_keyring_free(q.keys);
    ev_fb_builder_free(&q.fb);
    return rc;
}
