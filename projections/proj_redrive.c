/*
 * proj_redrive.c — `kcqrs-dlq redrive`; see proj_redrive.h.
 */
#include "proj_redrive.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <lmdb.h>

#include "ev_cat.h"
#include "ev_codec.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_pg.h"
#include "kq_rm.h"
#include "proj_lmdb.h"
#include "proj_pg.h"
#include "proj_pii.h"
#include "proj_runner_int.h"

#define ORIGIN_MAX 400

typedef struct item {
    char origin[ORIGIN_MAX];
    char topic[KQ_KAFKA_TOPIC_MAX];
    int32_t partition;
    int64_t offset;
    char target[8]; /* "lmdb", "pg" or "?" */
    char bad[200];  /* not a dead letter: why ("" when it is one) */
} item;

typedef struct items {
    item *v;
    size_t n, cap;
    const char *only;
} items;

/* The record at an origin. */
typedef struct rec {
    int64_t want;
    int found;
    void *value;
    size_t len;
    char *key;
    size_t keylen;
    int64_t ts;
} rec;

typedef struct run {
    const kq_config *cfg;
    int dry;
    FILE *out;
    proj_redrive_counts *counts;
    char topics[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX];
    proj_lmdb *lmdb;
    int lmdb_missing;
    proj_pg *pg;      /* the apply side (not in a dry run) */
    PGconn *pgc;      /* version lookups */
    kq_keyring *keys; /* opens sealed personal data (proj_pii.h) */
} run;

static item *add(items *l, const char *origin, const char *target)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].origin, origin) == 0 && strcmp(l->v[i].target, target) == 0)
            return &l->v[i]; /* the last dead letter of an (origin, target) wins */
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 64;
        item *nv = realloc(l->v, nc * sizeof *nv);
        if (nv == NULL)
            return NULL;
        l->v = nv;
        l->cap = nc;
    }
    memset(&l->v[l->n], 0, sizeof l->v[l->n]);
    snprintf(l->v[l->n].origin, ORIGIN_MAX, "%s", origin);
    snprintf(l->v[l->n].target, sizeof l->v[l->n].target, "%s", target);
    return &l->v[l->n++];
}

static int on_dlq(void *arg, const char *topic, const rd_kafka_message_t *m, char *errstr,
                  size_t errlen)
{
    items *l = arg;
    char key[ORIGIN_MAX];
    json_t *v = NULL, *t, *p, *o, *g;
    item *it;
    const char *target = "?", *bad = NULL;

    (void)topic;
    if (m->key == NULL || m->key_len >= sizeof key)
        snprintf(key, sizeof key, "(dlq partition %d offset %" PRId64 ")", (int)m->partition,
                 (int64_t)m->offset);
    else
        snprintf(key, sizeof key, "%.*s", (int)m->key_len, (const char *)m->key);
    if (l->only != NULL && strcmp(key, l->only) != 0)
        return 0;
    if (m->payload == NULL || (v = json_loadb(m->payload, m->len, 0, NULL)) == NULL ||
        !json_is_object(v)) {
        bad = "not a dead letter: not a JSON object";
    } else {
        t = json_object_get(v, "topic");
        p = json_object_get(v, "partition");
        o = json_object_get(v, "offset");
        g = json_object_get(v, "target");
        if (!json_is_string(t) || !json_is_integer(p) || !json_is_integer(o) ||
            !json_is_string(g) || json_integer_value(p) < 0 || json_integer_value(p) > INT32_MAX ||
            json_integer_value(o) < 0 || strlen(json_string_value(t)) >= KQ_KAFKA_TOPIC_MAX)
            bad = "not a dead letter: topic, partition, offset or target missing or invalid";
        else if (strcmp(json_string_value(g), "lmdb") == 0 ||
                 strcmp(json_string_value(g), "pg") == 0)
            target = json_string_value(g);
        else
            bad = "not a dead letter: target is neither lmdb nor pg";
    }
    if ((it = add(l, key, target)) == NULL) {
        json_decref(v);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    if (bad != NULL) {
        snprintf(it->bad, sizeof it->bad, "%s", bad);
    } else {
        it->bad[0] = '\0';
        snprintf(it->topic, sizeof it->topic, "%s", json_string_value(json_object_get(v, "topic")));
        it->partition = (int32_t)json_integer_value(json_object_get(v, "partition"));
        it->offset = json_integer_value(json_object_get(v, "offset"));
    }
    json_decref(v);
    return 1;
}

/* Log order: topic, partition, offset, then target. */
static int by_origin(const void *a, const void *b)
{
    const item *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);

    if (c != 0)
        return c;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return strcmp(x->target, y->target);
}

static int on_origin(void *arg, const char *topic, const rd_kafka_message_t *m, char *errstr,
                     size_t errlen)
{
    rec *r = arg;

    (void)topic;
    if (m->offset != r->want)
        return 1; /* the origin is gone (compacted away): the next record came first */
    r->found = 1;
    r->ts = rd_kafka_message_timestamp(m, NULL);
    if (m->payload != NULL && (r->value = malloc(m->len ? m->len : 1)) != NULL)
        memcpy(r->value, m->payload, m->len);
    r->len = m->len;
    if (m->key != NULL && (r->key = malloc(m->key_len ? m->key_len : 1)) != NULL)
        memcpy(r->key, m->key, m->key_len);
    r->keylen = m->key_len;
    if ((m->payload != NULL && r->value == NULL) || (m->key != NULL && r->key == NULL))
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    return 1;
}

static int lmdb_version(run *R, const ev_envelope *e, int64_t *ver, char *errstr, size_t errlen)
{
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_val k, v;
    uint8_t key[1 + 512];
    int rc;

    *ver = 0;
    if (e->aggregate_id.len > sizeof key - 1)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "aggregate id too long");
    key[0] = (uint8_t)e->aggregate_type;
    memcpy(key + 1, e->aggregate_id.ptr, e->aggregate_id.len);
    k.mv_data = key;
    k.mv_size = 1 + e->aggregate_id.len;
    if ((rc = mdb_txn_begin(proj_lmdb_env(R->lmdb), NULL, MDB_RDONLY, &txn)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_VERSIONS, 0, &dbi)) != 0 ||
        (rc = mdb_get(txn, dbi, &k, &v)) != 0) {
        if (txn != NULL)
            mdb_txn_abort(txn);
        if (rc == MDB_NOTFOUND)
            return 0;
        return kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB read model: %s", mdb_strerror(rc));
    }
    if (v.mv_size == sizeof *ver)
        memcpy(ver, v.mv_data, sizeof *ver);
    mdb_txn_abort(txn);
    return v.mv_size == sizeof *ver
               ? 0
               : kq_seterr(errstr, errlen, KQ_ECORRUPT, "LMDB read model: a version of %zu bytes",
                           (size_t)v.mv_size);
}

static int pg_version(run *R, const ev_envelope *e, int64_t *ver, char *errstr, size_t errlen)
{
    char id[600];
    const char *vals[2];
    PGresult *res = NULL;
    int rc;

    *ver = 0;
    if (R->pgc == NULL &&
        (R->pgc = kq_pg_connect_schema(R->cfg->pg_dsn, R->cfg->kafka_timeout_ms, "kcqrs-dlq",
                                       R->cfg->pg_schema, errstr, errlen)) == NULL)
        return KQ_EPG;
    snprintf(id, sizeof id, "%.*s", (int)e->aggregate_id.len, (const char *)e->aggregate_id.ptr);
    vals[0] = ev_aggregate_type_name(e->aggregate_type);
    vals[1] = id;
    if ((rc = kq_pg_exec_params(R->pgc,
                                "SELECT version FROM aggregate_versions WHERE aggregate_type = $1 "
                                "AND aggregate_id = $2",
                                2, vals, &res, errstr, errlen)) != 0)
        return rc;
    if (PQntuples(res) == 1)
        *ver = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return 0;
}

typedef struct refusal {
    int called;
    char reason[300];
} refusal;

static int capture(void *arg, const proj_event *ev, const char *target, const char *reason)
{
    refusal *f = arg;

    (void)ev;
    (void)target;
    f->called = 1;
    snprintf(f->reason, sizeof f->reason, "%s", reason);
    return 0; /* nothing is dead-lettered again: the batch commits without the event */
}

static void report(run *R, const item *it, const char *outcome, const char *detail)
{
    fprintf(R->out, "%s\t%s\t%s\t%s\n", it->origin, it->target, outcome, detail);
    if (strcmp(outcome, "applied") == 0)
        R->counts->applied++;
    else if (strcmp(outcome, "would_apply") == 0)
        R->counts->would_apply++;
    else
        R->counts->skipped++;
}

/* Open the target's handles as needed; 1 when the target is absent (reported). */
static int open_target(run *R, const item *it, char *errstr, size_t errlen)
{
    if (strcmp(it->target, "lmdb") == 0) {
        char p[4200];
        struct stat st;
        if (R->lmdb != NULL)
            return 0;
        snprintf(p, sizeof p, "%s/%s/data.mdb", R->cfg->lmdb_dir, KQ_RM_SUBDIR);
        if (stat(p, &st) != 0)
            return 1;
        return proj_lmdb_open(R->cfg, &R->lmdb, errstr, errlen);
    }
    if (R->dry || R->pg != NULL)
        return 0;
    return proj_pg_open_schema(R->cfg, R->cfg->pg_schema, PROJ_PG_CREATE_SCHEMA | PROJ_PG_DURABLE,
                               &R->pg, errstr, errlen);
}

static int redrive_one(run *R, const item *it, char *errstr, size_t errlen)
{
    ev_cat_opts o = {0};
    rec r = {0};
    proj_event ev = {0};
    proj_batch b;
    refusal f = {0};
    char spec[KQ_KAFKA_TOPIC_MAX + 48], why[320], detail[900], id[520];
    const char *bad;
    int t, rc = 0;
    int64_t have = 0;

    if (it->bad[0] != '\0') {
        report(R, it, "skipped", it->bad);
        return 0;
    }
    for (t = 0; t < 3 && strcmp(R->topics[t], it->topic) != 0; t++)
        ;
    if (t == 3) {
        report(R, it, "skipped", "the origin is not one of the event topics");
        return 0;
    }
    snprintf(spec, sizeof spec, "%s:%" PRId32 ":%" PRId64, it->topic, it->partition, it->offset);
    o.spec = spec;
    o.max = 1;
    r.want = it->offset;
    rc = ev_cat_each(R->cfg, &o, on_origin, &r, errstr, errlen);
    if (rc == KQ_ENOTFOUND) {
        report(R, it, "skipped", "the origin partition does not exist");
        rc = 0;
        goto out;
    }
    if (rc != 0)
        goto out;
    if (!r.found) {
        report(R, it, "skipped",
               "no record at the origin offset (compacted away or beyond the end)");
        goto out;
    }
    memset(&ev, 0, sizeof ev);
    ev.topic = R->topics[t];
    ev.partition = it->partition;
    ev.offset = it->offset;
    ev.timestamp_ms = r.ts;
    ev.value = r.value;
    ev.len = r.value ? r.len : 0;
    ev.key = r.key;
    ev.keylen = r.key ? r.keylen : 0;
    if ((bad = proj_runner_check_event(&ev, (ev_aggregate_type)(t + 1), R->cfg->partitions, why,
                                       sizeof why)) != NULL) {
        snprintf(detail, sizeof detail, "refused by the projector's check: %s", bad);
        report(R, it, "skipped", detail);
        goto out;
    }
    if ((bad = proj_pii_open(&ev, &R->keys, R->cfg, "kcqrs-dlq", why, sizeof why)) != NULL) {
        snprintf(detail, sizeof detail, "refused by the projector's check: %s", bad);
        report(R, it, "skipped", detail);
        goto out;
    }
    if ((rc = open_target(R, it, errstr, errlen)) != 0) {
        if (rc == 1) {
            report(R, it, "skipped", "there is no LMDB read model in KCQRS_LMDB_DIR");
            rc = 0;
        }
        goto out;
    }
    rc = strcmp(it->target, "lmdb") == 0 ? lmdb_version(R, &ev.env, &have, errstr, errlen)
                                         : pg_version(R, &ev.env, &have, errstr, errlen);
    if (rc != 0)
        goto out;
    snprintf(id, sizeof id, "%.*s", (int)ev.env.aggregate_id.len,
             (const char *)ev.env.aggregate_id.ptr);
    snprintf(detail, sizeof detail, "%s %s version %" PRId64 "; %s at version %" PRId64,
             ev_aggregate_type_name(ev.env.aggregate_type), id, ev.env.version, it->target, have);
    if (have != ev.env.version - 1) {
        strncat(detail,
                have >= ev.env.version ? " (it has this event already)"
                                       : " (events before this one are missing)",
                sizeof detail - strlen(detail) - 1);
        report(R, it, "skipped", detail);
        goto out;
    }
    if (R->dry) {
        report(R, it, "would_apply", detail);
        goto out;
    }
    memset(&b, 0, sizeof b);
    b.ev = &ev;
    b.n = 1;
    rc = strcmp(it->target, "lmdb") == 0 ? proj_lmdb_apply(R->lmdb, &b, capture, &f, errstr, errlen)
                                         : proj_pg_apply(R->pg, &b, capture, &f, errstr, errlen);
    if (rc != 0)
        goto out;
    if (f.called) {
        strncat(detail, "; refused by the apply: ", sizeof detail - strlen(detail) - 1);
        strncat(detail, f.reason, sizeof detail - strlen(detail) - 1);
        report(R, it, "skipped", detail);
    } else {
        report(R, it, "applied", detail);
    }
out:
    free(ev.plain);
    free(r.value);
    free(r.key);
    return rc;
}

int proj_redrive_run(const kq_config *cfg, int dry_run, const char *origin, FILE *out,
                     proj_redrive_counts *counts, char *errstr, size_t errlen)
{
    items l = {0};
    run R;
    ev_cat_opts o = {0};
    int rc;

    memset(&R, 0, sizeof R);
    memset(counts, 0, sizeof *counts);
    R.cfg = cfg;
    R.dry = dry_run;
    R.out = out;
    R.counts = counts;
    if (kq_kafka_topic_names(cfg, R.topics) < 0)
        return kq_seterr(errstr, errlen, KQ_ERANGE, "KCQRS_TOPIC_PREFIX is too long");
    l.only = origin;
    o.spec = "dlq";
    rc = ev_cat_each(cfg, &o, on_dlq, &l, errstr, errlen);
    if (rc == KQ_ENOTFOUND) /* no DLQ topic: nothing was ever dead-lettered */
        rc = 0;
    if (rc != 0)
        goto out;
    qsort(l.v, l.n, sizeof *l.v, by_origin);
    for (size_t i = 0; i < l.n && rc == 0; i++)
        rc = redrive_one(&R, &l.v[i], errstr, errlen);
out:
    proj_lmdb_close(R.lmdb);
    proj_pg_close(R.pg);
    if (R.pgc != NULL)
        PQfinish(R.pgc);
    kq_keyring_free(R.keys);
    free(l.v);
    return rc;
}
