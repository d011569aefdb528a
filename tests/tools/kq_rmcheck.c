/*
 * kq_rmcheck — compare the read models with the event log.
 *
 *   kq_rmcheck [--lmdb DIR | --no-lmdb] [--pg DSN] [--quiet]
 *   kq_rmcheck --dump-dlq
 *
 * Reads every event topic to its end (read_committed, after waiting until no
 * transaction is open so the end is stable) and folds the events into the
 * state a correct projector must have, with the projector's rules written
 * again here: a record counts only if it decodes, belongs to its topic's
 * aggregate type, has the key "<id>/<version:020>" of its envelope, lies in
 * its aggregate's partition, and has version = last + 1; resource events
 * maintain the expected resources (an update or delete of a missing resource
 * only advances the version); workflow events the expected workflows (name,
 * enabled; deleted ones gone) and run events the expected runs (workflow_id,
 * status) by THE run fold (events/ev_run.h; an event it refuses is
 * dead-lettered by both targets and does not advance the version). A
 * RunStarted whose payload_json is not a JSON object or that has more than
 * 100 steps is refused (dead-lettered by both targets).
 *
 * Then compares, and prints up to 20 differences:
 *   LMDB (default $KCQRS_LMDB_DIR/readmodel): every resources record (all
 *   fields), the status index (exactly one entry per resource, under its
 *   status), every versions entry, offsets == the end offsets; every
 *   workflows / runs document (version, name, enabled / workflow_id, status,
 *   in the record and in the JSON) and their indexes (workflows_by_enabled,
 *   runs_by_status, runs_by_workflow: one entry each, under the right key);
 *   PostgreSQL (--pg): resources rows, events rows == the number of valid
 *   events with no (topic, partition, offset) twice, aggregate_versions,
 *   workflows rows, runs rows, projection_offsets == the end offsets.
 * Output: a summary line "records R valid V refused X aggregates A resources N"
 * and "lmdb: equal" / "pg: equal" or the differences.
 *
 * --dump-dlq prints every record of <prefix>.dlq as "<key>\t<reason header>\t<value>".
 *
 * Exit status: 0 equal, 1 differences or errors, 2 usage.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <lmdb.h>

#include "ev_codec.h"
#include "ev_run.h"
#include "ev_pii.h"
#include "kq_config.h"
#include "kq_keyring.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_map.h"
#include "kq_pg.h"
#include "kq_rm.h"

static const char usage[] = "usage: kq_rmcheck [--lmdb DIR | --no-lmdb] [--pg DSN] [--quiet]\n"
                            "       kq_rmcheck --dump-dlq\n";

#define MAX_PARTS 4096
#define READ_TIMEOUT_S 120.0
#define SETTLE_TIMEOUT_S 30.0
#define MAX_DIFFS 20

static double mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------- expected state */

typedef struct agg {
    uint8_t type;
    char *id;
    size_t idlen;
    int64_t version;
    int exists;     /* resources, workflows, runs */
    uint8_t status; /* resources: ev_resource_status; workflows: enabled; runs: 0..3 */
    char *name, *desc;
    size_t name_len, desc_len;
    int64_t created_us, updated_us;
    int seen;         /* set while comparing */
    ev_run_state run; /* runs: THE run fold (ev_run.h) */
} agg;

static kq_map *table; /* <type byte><id> -> agg */
static size_t naggs, nresources, nworkflows, nruns;
static const char *const run_status_names[] = {"pending", "running", "succeeded", "failed"};
static int ndiffs;

static agg *lookup(uint8_t type, const char *id, size_t len, int create)
{
    char key[1024];
    agg *a;
    int created = 0;

    if (len >= sizeof key)
        return NULL;
    key[0] = (char)type;
    memcpy(key + 1, id, len);
    if (!create)
        return kq_map_getb(table, key, len + 1);
    if ((a = kq_map_putb(table, key, len + 1, &created)) == NULL ||
        (created && (a->id = malloc(len + 1)) == NULL)) {
        fprintf(stderr, "kq_rmcheck: out of memory\n");
        exit(1);
    }
    if (created) {
        memcpy(a->id, id, len);
        a->id[len] = '\0';
        a->idlen = len;
        a->type = type;
        naggs++;
    }
    return a;
}

static void set_str(char **dst, size_t *dlen, ev_str s)
{
    free(*dst);
    *dst = malloc(s.len + 1);
    if (*dst == NULL) {
        fprintf(stderr, "kq_rmcheck: out of memory\n");
        exit(1);
    }
    if (s.len)
        memcpy(*dst, s.ptr, s.len);
    (*dst)[s.len] = '\0';
    *dlen = s.len;
}

static void diff(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void diff(const char *fmt, ...)
{
    va_list ap;

    if (ndiffs++ >= MAX_DIFFS)
        return;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* Fold one record; returns 1 when it is a valid, applied event. */
/* A RunStarted both targets refuse: payload_json not a JSON object, over 100 steps. */
static int run_started_refused(const ev_envelope *e)
{
    const ev_run_started *r = &e->payload.run_started;
    json_error_t jerr;
    json_t *j;
    int bad;

    if ((r->steps.present ? r->steps.count : r->step_count) > EV_MAX_STEPS)
        return 1;
    if (r->payload_json.ptr == NULL)
        return 0;
    j = json_loadb(r->payload_json.ptr, r->payload_json.len, 0, &jerr);
    bad = !json_is_object(j);
    json_decref(j);
    return bad;
}

/* Sealed personal data is opened as the projector opens it (events/ev_pii.h). */
static const kq_config *pii_cfg;
static kq_keyring *pii_keys;
static uint8_t pii_buf[EV_PII_BUF];

static int fold(int ti, int np, const rd_kafka_message_t *m)
{
    static const ev_aggregate_type types[3] = {EV_AGG_RESOURCE, EV_AGG_WORKFLOW, EV_AGG_RUN};
    ev_envelope e;
    size_t idlen;
    int64_t kver;
    agg *a;

    if (m->payload == NULL || m->len == 0 ||
        ev_envelope_decode(m->payload, m->len, &e, NULL, 0) != 0)
        return 0;
    if (ev_pii_sealed(&e) &&
        ((pii_keys == NULL && kq_keyring_new(pii_cfg, "kq_rmcheck", &pii_keys, NULL, 0) != 0) ||
         ev_pii_open(&e, pii_keys, pii_buf, sizeof pii_buf, NULL, NULL, 0) != 0))
        return 0; /* refused by the projector too */
    if (e.aggregate_type != types[ti] || ev_event_aggregate_type(e.payload_type) != types[ti] ||
        e.version < 1)
        return 0;
    if (m->key == NULL || kq_kafka_record_key_parse(m->key, m->key_len, &idlen, &kver) != 0 ||
        idlen != e.aggregate_id.len || memcmp(m->key, e.aggregate_id.ptr, idlen) != 0 ||
        kver != e.version)
        return 0;
    if (kq_kafka_partition_for(e.aggregate_id.ptr, e.aggregate_id.len, np) != m->partition)
        return 0;
    if (e.aggregate_id.len + 1 > 511)
        return 0;
    a = lookup((uint8_t)e.aggregate_type, e.aggregate_id.ptr, e.aggregate_id.len, 1);
    if (e.version != a->version + 1)
        return 0;
    if (e.payload_type == EV_RUN_STARTED && run_started_refused(&e))
        return 0;
    if (e.aggregate_type == EV_AGG_RUN) { /* both targets refuse what the run fold refuses */
        ev_run_state n = a->run;
        if (a->version == 0)
            ev_run_init(&n);
        if (ev_run_fold(&n, &e, NULL) != EV_FOLD_APPLIED)
            return 0;
        a->run = n;
    }
    a->version = e.version;
    switch (e.payload_type) {
    case EV_RESOURCE_CREATED:
        a->exists = 1;
        a->status = (uint8_t)e.payload.resource_created.status;
        set_str(&a->name, &a->name_len, e.payload.resource_created.name);
        set_str(&a->desc, &a->desc_len, e.payload.resource_created.description);
        a->created_us = a->updated_us = e.occurred_at_us;
        break;
    case EV_RESOURCE_UPDATED:
        if (!a->exists)
            break;
        if (e.payload.resource_updated.name.ptr)
            set_str(&a->name, &a->name_len, e.payload.resource_updated.name);
        if (e.payload.resource_updated.description.ptr)
            set_str(&a->desc, &a->desc_len, e.payload.resource_updated.description);
        if (e.payload.resource_updated.has_status)
            a->status = (uint8_t)e.payload.resource_updated.status;
        a->updated_us = e.occurred_at_us;
        break;
    case EV_RESOURCE_DELETED:
    case EV_WORKFLOW_DELETED:
        a->exists = 0;
        break;
    case EV_WORKFLOW_CREATED:
        a->exists = 1;
        a->status = e.payload.workflow_created.enabled;
        set_str(&a->name, &a->name_len, e.payload.workflow_created.name);
        break;
    case EV_WORKFLOW_UPDATED:
        if (a->exists && e.payload.workflow_updated.name.ptr)
            set_str(&a->name, &a->name_len, e.payload.workflow_updated.name);
        break;
    case EV_WORKFLOW_ENABLED:
    case EV_WORKFLOW_DISABLED:
        if (a->exists)
            a->status = e.payload_type == EV_WORKFLOW_ENABLED;
        break;
    case EV_RUN_STARTED:
        a->exists = 1;
        a->status = (uint8_t)a->run.status;
        set_str(&a->name, &a->name_len, e.payload.run_started.workflow_id);
        break;
    case EV_STEP_ATTEMPTED:
    case EV_STEP_SUCCEEDED:
    case EV_STEP_FAILED:
    case EV_RUN_SUCCEEDED:
    case EV_RUN_FAILED:
        a->status = (uint8_t)a->run.status;
        break;
    default:
        break;
    }
    return 1;
}

/* ---------------------------------------------------------------- reading the log */

static rd_kafka_t *client(const kq_config *cfg, int committed, char *err, size_t errlen)
{
    char group[64];
    rd_kafka_conf_t *conf = kq_kafka_conf_new(cfg, "kq_rmcheck", err, errlen);

    snprintf(group, sizeof group, "kq_rmcheck-%ld", (long)getpid());
    if (conf == NULL)
        return NULL;
    if (committed) {
        if (kq_kafka_conf_set(conf, "fetch.wait.max.ms", "10", err, errlen) != 0) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
        return kq_kafka_consumer_new(cfg, group, conf, err, errlen);
    }
    rd_kafka_t *rk;
    if (kq_kafka_conf_set(conf, "isolation.level", "read_uncommitted", err, errlen) != 0 ||
        kq_kafka_conf_set(conf, "group.id", group, err, errlen) != 0 ||
        (rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen)) == NULL) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return rk;
}

/* High watermarks of every partition of `n` topics, once they equal the last stable offsets. */
static int settle(rd_kafka_t *c, rd_kafka_t *u, char topics[][KQ_KAFKA_TOPIC_MAX], int n, int np,
                  int64_t *high, const kq_config *cfg)
{
    double deadline = mono_s() + SETTLE_TIMEOUT_S;

    for (;;) {
        int same = 1;
        for (int i = 0; i < n * np; i++) {
            int64_t lo, hi, lo2, lso;
            rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(u, topics[i / np], i % np, &lo,
                                                                     &hi, cfg->kafka_timeout_ms);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
                e = rd_kafka_query_watermark_offsets(c, topics[i / np], i % np, &lo2, &lso,
                                                     cfg->kafka_timeout_ms);
            if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
                fprintf(stderr, "kq_rmcheck: watermarks of %s [%d]: %s\n", topics[i / np], i % np,
                        rd_kafka_err2str(e));
                return 1;
            }
            high[i] = hi;
            same &= lso == hi;
        }
        if (same)
            return 0;
        if (mono_s() > deadline) {
            fprintf(stderr, "kq_rmcheck: a transaction stays open; the log does not settle\n");
            return 1;
        }
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
}

typedef void (*record_fn)(int ti, const rd_kafka_message_t *m, void *arg);

static int read_all(rd_kafka_t *c, char topics[][KQ_KAFKA_TOPIC_MAX], int n, int np,
                    const int64_t *high, record_fn fn, void *arg)
{
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(n * np);
    char *done = calloc((size_t)(n * np), 1);
    int remaining = 0, rc = 0;
    double deadline = mono_s() + READ_TIMEOUT_S;

    for (int i = 0; i < n * np; i++) {
        rd_kafka_topic_partition_list_add(tp, topics[i / np], i % np)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
        done[i] = high[i] == 0;
        remaining += !done[i];
    }
    if (rd_kafka_assign(c, tp) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kq_rmcheck: assign failed\n");
        rc = 1;
    }
    while (rc == 0 && remaining > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        int ti = -1, i;

        if (mono_s() > deadline) {
            fprintf(stderr, "kq_rmcheck: the log was not read to its end in time\n");
            rc = 1;
        }
        if (m == NULL)
            continue;
        for (int t = 0; m->rkt && t < n; t++)
            if (strcmp(rd_kafka_topic_name(m->rkt), topics[t]) == 0)
                ti = t;
        i = ti * np + m->partition;
        if (ti < 0 || m->partition < 0 || m->partition >= np) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (!done[i] && m->offset >= high[i]) {
                done[i] = 1;
                remaining--;
            }
        } else if (m->err) {
            fprintf(stderr, "kq_rmcheck: consume: %s\n", rd_kafka_message_errstr(m));
            rc = 1;
        } else if (m->offset < high[i]) {
            fn(ti, m, arg);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_topic_partition_list_destroy(tp);
    free(done);
    return rc;
}

typedef struct fold_ctx {
    int np;
    long records, valid;
} fold_ctx;

static void on_event(int ti, const rd_kafka_message_t *m, void *arg)
{
    fold_ctx *f = arg;

    f->records++;
    f->valid += fold(ti, f->np, m);
}

static void on_dlq(int ti, const rd_kafka_message_t *m, void *arg)
{
    rd_kafka_headers_t *h;
    const void *rv = NULL;
    size_t rl = 0;

    (void)ti;
    (void)arg;
    if (rd_kafka_message_headers(m, &h) != 0 || rd_kafka_header_get_last(h, "reason", &rv, &rl))
        rv = "-", rl = 1;
    printf("%.*s\t%.*s\t%.*s\n", (int)m->key_len, (const char *)m->key, (int)rl, (const char *)rv,
           (int)m->len, (const char *)m->payload);
}

/* Aggregates with at least one applied event. */
static int count_valid(void *arg, const char *key, size_t keylen, void *val)
{
    const agg *a = val;

    (void)key, (void)keylen;
    *(size_t *)arg += a->version > 0;
    return 0;
}

static size_t naggs_valid(void)
{
    size_t n = 0;

    kq_map_each(table, count_valid, &n);
    return n;
}

static int count_one(void *arg, const char *key, size_t keylen, void *val)
{
    const agg *a = val;

    (void)arg, (void)key, (void)keylen;
    nresources += a->exists && a->type == EV_AGG_RESOURCE;
    nworkflows += a->exists && a->type == EV_AGG_WORKFLOW;
    nruns += a->exists && a->type == EV_AGG_RUN;
    return 0;
}

static void count_resources(void)
{
    nresources = nworkflows = nruns = 0;
    kq_map_each(table, count_one, NULL);
}

/* Open a named database; 0 when it does not exist (a model older than workflows). */
static int open_db(MDB_txn *txn, const char *name, MDB_dbi *dbi)
{
    return mdb_dbi_open(txn, name, 0, dbi) == 0;
}

static const char *jstr_or(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* The documents of one type (workflows or runs) and their flag index. */
static void check_docs(MDB_txn *txn, uint8_t type, const char *db, const char *flagdb)
{
    const char *what = type == EV_AGG_WORKFLOW ? "workflow" : "run";
    size_t want = type == EV_AGG_WORKFLOW ? nworkflows : nruns, n = 0, nflag = 0;
    MDB_dbi d, f;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    if (!open_db(txn, db, &d) || !open_db(txn, flagdb, &f)) {
        if (want)
            diff("lmdb: no %s database, expected %zu %ss", db, want, what);
        return;
    }
    mdb_cursor_open(txn, d, &cur);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        agg *a = lookup(type, k.mv_data, k.mv_size, 0);
        kq_rm_doc doc;
        json_error_t jerr;
        json_t *j = NULL;
        const char *name;
        int flag_ok;
        n++;
        if (a == NULL || !a->exists) {
            diff("lmdb: %s %.*s should not exist", what, (int)k.mv_size, (char *)k.mv_data);
            continue;
        }
        if (kq_rm_doc_decode(v.mv_data, v.mv_size, &doc) != 0 ||
            (j = json_loadb(doc.text, doc.text_len, 0, &jerr)) == NULL) {
            diff("lmdb: %s %s: malformed record", what, a->id);
            continue;
        }
        name = jstr_or(j, type == EV_AGG_WORKFLOW ? "name" : "workflow_id");
        flag_ok = type == EV_AGG_WORKFLOW
                      ? json_is_true(json_object_get(j, "enabled")) == (a->status != 0)
                      : strcmp(jstr_or(j, "status"), run_status_names[a->status & 3]) == 0;
        if (doc.version != a->version ||
            json_integer_value(json_object_get(j, "version")) != a->version ||
            doc.flag != a->status || !flag_ok || strcmp(name, a->name) != 0 ||
            strcmp(jstr_or(j, "id"), a->id) != 0)
            diff("lmdb: %s %s: version %" PRId64 "/%" PRId64 " flag %d/%d '%s'/'%s' "
                 "(stored/expected)",
                 what, a->id, doc.version, a->version, doc.flag, a->status, name, a->name);
        json_decref(j);
    }
    mdb_cursor_close(cur);
    if (n != want)
        diff("lmdb: %zu %ss, expected %zu", n, what, want);
    mdb_cursor_open(txn, f, &cur);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        agg *a = k.mv_size > 1 ? lookup(type, (const char *)p + 1, k.mv_size - 1, 0) : NULL;
        nflag++;
        if (a == NULL || !a->exists || a->status != p[0])
            diff("lmdb: %s entry (%d, %.*s) is wrong", flagdb, p[0], (int)k.mv_size - 1,
                 (const char *)p + 1);
    }
    mdb_cursor_close(cur);
    if (nflag != want)
        diff("lmdb: %zu %s entries, expected %zu", nflag, flagdb, want);
}

/* runs_by_workflow: <len><workflow_id><run id>, one per run. */
static void check_runs_by_wf(MDB_txn *txn)
{
    MDB_dbi d;
    MDB_cursor *cur;
    MDB_val k, v;
    size_t n = 0;
    int rc;

    if (!open_db(txn, KQ_RM_DB_RUNS_BY_WF, &d))
        return; /* check_docs reported missing databases */
    mdb_cursor_open(txn, d, &cur);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        size_t wl = k.mv_size ? p[0] : 0;
        agg *a = k.mv_size > 1 + wl
                     ? lookup(EV_AGG_RUN, (const char *)p + 1 + wl, k.mv_size - 1 - wl, 0)
                     : NULL;
        n++;
        if (a == NULL || !a->exists || a->name_len != wl || memcmp(a->name, p + 1, wl) != 0)
            diff("lmdb: runs_by_workflow entry %.*s is wrong", (int)k.mv_size, (const char *)p);
    }
    mdb_cursor_close(cur);
    if (n != nruns)
        diff("lmdb: %zu runs_by_workflow entries, expected %zu", n, nruns);
}

/* ---------------------------------------------------------------- LMDB */

static int check_lmdb(const kq_config *cfg, const char *dir, char topics[][KQ_KAFKA_TOPIC_MAX],
                      int np, const int64_t *high)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dres, dstat, dver, doff;
    MDB_cursor *cur;
    MDB_val k, v;
    char err[512];
    size_t nres = 0, nstat = 0, nver = 0;
    int before = ndiffs, rc;

    if (kq_rm_env_open(dir, (size_t)cfg->lmdb_map_mb << 20, 0, &env, err, sizeof err) != 0) {
        diff("lmdb: %s", err);
        return 1;
    }
    if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_RESOURCES, 0, &dres)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_RES_BY_STATUS, 0, &dstat)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_VERSIONS, 0, &dver)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_OFFSETS, 0, &doff)) != 0) {
        diff("lmdb: %s", mdb_strerror(rc));
        mdb_env_close(env);
        return 1;
    }
    mdb_cursor_open(txn, dres, &cur);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        agg *a = lookup(EV_AGG_RESOURCE, k.mv_data, k.mv_size, 0);
        kq_rm_resource r;
        nres++;
        if (a == NULL || !a->exists) {
            diff("lmdb: resource %.*s should not exist", (int)k.mv_size, (char *)k.mv_data);
            continue;
        }
        if (kq_rm_resource_decode(v.mv_data, v.mv_size, &r) != 0) {
            diff("lmdb: resource %s: malformed record", a->id);
            continue;
        }
        if (r.version != a->version || r.status != a->status || r.name_len != a->name_len ||
            memcmp(r.name, a->name, a->name_len) != 0 || r.description_len != a->desc_len ||
            memcmp(r.description, a->desc, a->desc_len) != 0 || r.created_at_us != a->created_us ||
            r.updated_at_us != a->updated_us)
            diff("lmdb: resource %s: version %" PRId64 "/%" PRId64 " status %d/%d name '%.*s'/'%s' "
                 "created %" PRId64 "/%" PRId64 " updated %" PRId64 "/%" PRId64
                 " (stored/expected)",
                 a->id, r.version, a->version, r.status, a->status, (int)r.name_len, r.name,
                 a->name, r.created_at_us, a->created_us, r.updated_at_us, a->updated_us);
    }
    mdb_cursor_close(cur);
    if (nres != nresources)
        diff("lmdb: %zu resources, expected %zu", nres, nresources);
    mdb_cursor_open(txn, dstat, &cur);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        agg *a =
            k.mv_size > 1 ? lookup(EV_AGG_RESOURCE, (const char *)p + 1, k.mv_size - 1, 0) : NULL;
        nstat++;
        if (a == NULL || !a->exists || a->status != p[0])
            diff("lmdb: status index entry (%d, %.*s) is wrong", p[0], (int)k.mv_size - 1,
                 (const char *)p + 1);
    }
    mdb_cursor_close(cur);
    if (nstat != nresources)
        diff("lmdb: %zu status index entries, expected %zu", nstat, nresources);
    mdb_cursor_open(txn, dver, &cur);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        agg *a = k.mv_size > 1 ? lookup(p[0], (const char *)p + 1, k.mv_size - 1, 0) : NULL;
        int64_t ver = -1;
        nver++;
        if (v.mv_size == 8)
            memcpy(&ver, v.mv_data, 8);
        if (a == NULL || a->version != ver)
            diff("lmdb: version of (%d, %.*s) is %" PRId64 ", expected %" PRId64, p[0],
                 (int)k.mv_size - 1, (const char *)p + 1, ver, a ? a->version : 0);
    }
    mdb_cursor_close(cur);
    check_docs(txn, EV_AGG_WORKFLOW, KQ_RM_DB_WORKFLOWS, KQ_RM_DB_WF_BY_ENABLED);
    check_docs(txn, EV_AGG_RUN, KQ_RM_DB_RUNS, KQ_RM_DB_RUNS_BY_STATUS);
    check_runs_by_wf(txn);
    if (nver != naggs_valid())
        diff("lmdb: %zu versions entries, expected %zu", nver, naggs_valid());
    for (int i = 0; i < 3 * np; i++) {
        char key[512];
        int64_t off = 0;
        int n = kq_rm_offset_key(topics[i / np], i % np, key, sizeof key);
        k.mv_data = key;
        k.mv_size = (size_t)n;
        if (mdb_get(txn, doff, &k, &v) == 0 && v.mv_size == 8)
            memcpy(&off, v.mv_data, 8);
        if (off != high[i])
            diff("lmdb: offset of %s is %" PRId64 ", end offset %" PRId64, key, off, high[i]);
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return ndiffs != before;
}

/* ---------------------------------------------------------------- PostgreSQL */

static PGresult *query(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        diff("pg: %s: %s", sql, PQerrorMessage(c));
        PQclear(r);
        return NULL;
    }
    return r;
}

static int64_t i64(PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static int64_t absdiff(int64_t a, int64_t b)
{
    return a > b ? a - b : b - a;
}

static int check_pg(const kq_config *cfg, const char *dsn, char topics[][KQ_KAFKA_TOPIC_MAX],
                    int np, const int64_t *high, long valid)
{
    static const char *status_names[] = {"active", "inactive", "archived"};
    char err[512];
    PGconn *c = kq_pg_connect_schema(dsn, cfg->kafka_timeout_ms, "kq_rmcheck", cfg->pg_schema, err,
                                     sizeof err);
    PGresult *r;
    int before = ndiffs;

    if (c == NULL) {
        diff("pg: %s", err);
        return 1;
    }
    if ((r = query(c, "SELECT id, name, description, status, version, "
                      "(extract(epoch FROM created_at) * 1000000)::bigint, "
                      "(extract(epoch FROM updated_at) * 1000000)::bigint FROM resources")) !=
        NULL) {
        int n = PQntuples(r);
        for (int i = 0; i < n; i++) {
            const char *id = PQgetvalue(r, i, 0);
            agg *a = lookup(EV_AGG_RESOURCE, id, strlen(id), 0);
            if (a == NULL || !a->exists) {
                diff("pg: resource %s should not exist", id);
                continue;
            }
            if (i64(r, i, 4) != a->version || strcmp(PQgetvalue(r, i, 1), a->name) != 0 ||
                strcmp(PQgetvalue(r, i, 2), a->desc) != 0 ||
                strcmp(PQgetvalue(r, i, 3), status_names[a->status]) != 0 ||
                absdiff(i64(r, i, 5), a->created_us) > 1 ||
                absdiff(i64(r, i, 6), a->updated_us) > 1)
                diff("pg: resource %s: version %s/%" PRId64 " status %s/%s name '%s'/'%s' "
                     "created %s/%" PRId64 " updated %s/%" PRId64 " (stored/expected)",
                     id, PQgetvalue(r, i, 4), a->version, PQgetvalue(r, i, 3),
                     status_names[a->status], PQgetvalue(r, i, 1), a->name, PQgetvalue(r, i, 5),
                     a->created_us, PQgetvalue(r, i, 6), a->updated_us);
        }
        if ((size_t)n != nresources)
            diff("pg: %d resources, expected %zu", n, nresources);
        PQclear(r);
    }
    for (int t = 0; t < 2; t++) {
        uint8_t type = t == 0 ? EV_AGG_WORKFLOW : EV_AGG_RUN;
        size_t want = t == 0 ? nworkflows : nruns;
        if ((r = query(c, t == 0 ? "SELECT id, version, name, enabled::text FROM workflows"
                                 : "SELECT id, version, workflow_id, status FROM runs")) == NULL)
            continue;
        for (int i = 0; i < PQntuples(r); i++) {
            const char *id = PQgetvalue(r, i, 0), *flag = PQgetvalue(r, i, 3);
            agg *a = lookup(type, id, strlen(id), 0);
            if (a == NULL || !a->exists) {
                diff("pg: %s %s should not exist", t == 0 ? "workflow" : "run", id);
                continue;
            }
            if (i64(r, i, 1) != a->version || strcmp(PQgetvalue(r, i, 2), a->name) != 0 ||
                strcmp(flag, t == 0 ? (a->status ? "true" : "false")
                                    : run_status_names[a->status & 3]) != 0)
                diff("pg: %s %s: version %s/%" PRId64 " '%s'/'%s' %s/%d (stored/expected)",
                     t == 0 ? "workflow" : "run", id, PQgetvalue(r, i, 1), a->version,
                     PQgetvalue(r, i, 2), a->name, flag, a->status);
        }
        if ((size_t)PQntuples(r) != want)
            diff("pg: %d %s rows, expected %zu", PQntuples(r), t == 0 ? "workflows" : "runs", want);
        PQclear(r);
    }
    if ((r = query(c, "SELECT count(*), count(DISTINCT (topic, partition, \"offset\")) FROM "
                      "events")) != NULL) {
        if (i64(r, 0, 0) != valid || i64(r, 0, 1) != valid)
            diff("pg: events has %s rows (%s distinct origins), expected %ld", PQgetvalue(r, 0, 0),
                 PQgetvalue(r, 0, 1), valid);
        PQclear(r);
    }
    if ((r = query(c, "SELECT aggregate_type, aggregate_id, version FROM aggregate_versions")) !=
        NULL) {
        int n = PQntuples(r);
        for (int i = 0; i < n; i++) {
            const char *type = PQgetvalue(r, i, 0), *id = PQgetvalue(r, i, 1);
            uint8_t t = strcmp(type, "resource") == 0   ? EV_AGG_RESOURCE
                        : strcmp(type, "workflow") == 0 ? EV_AGG_WORKFLOW
                        : strcmp(type, "run") == 0      ? EV_AGG_RUN
                                                        : 0;
            agg *a = lookup(t, id, strlen(id), 0);
            if (a == NULL || a->version != i64(r, i, 2))
                diff("pg: aggregate_versions (%s, %s) = %s, expected %" PRId64, type, id,
                     PQgetvalue(r, i, 2), a ? a->version : 0);
        }
        if ((size_t)n != naggs_valid())
            diff("pg: %d aggregate_versions rows, expected %zu", n, naggs_valid());
        PQclear(r);
    }
    if ((r = query(c, "SELECT topic, partition, next_offset FROM projection_offsets")) != NULL) {
        for (int i = 0; i < 3 * np; i++) {
            int64_t off = 0;
            for (int j = 0; j < PQntuples(r); j++)
                if (strcmp(PQgetvalue(r, j, 0), topics[i / np]) == 0 &&
                    atoi(PQgetvalue(r, j, 1)) == i % np)
                    off = i64(r, j, 2);
            if (off != high[i])
                diff("pg: offset of %s/%d is %" PRId64 ", end offset %" PRId64, topics[i / np],
                     i % np, off, high[i]);
        }
        PQclear(r);
    }
    PQfinish(c);
    return ndiffs != before;
}

int main(int argc, char **argv)
{
    char names[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX], err[512], lmdb_dir[4096];
    const char *pg = NULL;
    int use_lmdb = 1, dump_dlq = 0, quiet = 0, rc = 1, np;
    int64_t *high = NULL;
    kq_config cfg;
    rd_kafka_t *c = NULL, *u = NULL;
    fold_ctx f = {0, 0, 0};

    if (kq_config_handle_help(argc, argv, usage))
        return 0;
    lmdb_dir[0] = '\0';
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--lmdb") == 0 && i + 1 < argc)
            snprintf(lmdb_dir, sizeof lmdb_dir, "%s", argv[++i]);
        else if (strcmp(argv[i], "--no-lmdb") == 0)
            use_lmdb = 0;
        else if (strcmp(argv[i], "--pg") == 0 && i + 1 < argc)
            pg = argv[++i];
        else if (strcmp(argv[i], "--dump-dlq") == 0)
            dump_dlq = 1;
        else if (strcmp(argv[i], "--quiet") == 0)
            quiet = 1;
        else {
            fputs(usage, stderr);
            return 2;
        }
    }
    pii_cfg = &cfg;
    if (kq_config_load_and_init_log(&cfg, "kq_rmcheck", err, sizeof err) != 0) {
        fprintf(stderr, "kq_rmcheck: %s\n", err);
        return 2;
    }
    /* the keyring's INFO lines (sealed personal data, events/ev_pii.h) are not this tool's output
     */
    if (cfg.log_level < KQ_LOG_WARN)
        kq_log_init("kq_rmcheck", KQ_LOG_WARN, (kq_log_format)cfg.log_format);
    if (lmdb_dir[0] == '\0')
        snprintf(lmdb_dir, sizeof lmdb_dir, "%s/%s", cfg.lmdb_dir, KQ_RM_SUBDIR);
    np = cfg.partitions;
    f.np = np;
    if (kq_kafka_topic_names(&cfg, names) < 0 || np > MAX_PARTS) {
        fprintf(stderr, "kq_rmcheck: bad topic prefix or partition count\n");
        goto out;
    }
    if ((table = kq_map_new(sizeof(agg), NULL)) == NULL ||
        (high = calloc((size_t)(4 * np), sizeof *high)) == NULL)
        goto out;
    if ((c = client(&cfg, 1, err, sizeof err)) == NULL ||
        (u = client(&cfg, 0, err, sizeof err)) == NULL) {
        fprintf(stderr, "kq_rmcheck: %s\n", err);
        goto out;
    }
    if (dump_dlq) {
        char dlq[1][KQ_KAFKA_TOPIC_MAX];
        int n = 0;
        memcpy(dlq[0], names[3], KQ_KAFKA_TOPIC_MAX);
        if (kq_kafka_topic_partitions(c, dlq[0], cfg.kafka_timeout_ms, &n, NULL, err, sizeof err) !=
                0 ||
            n < 1 || n > MAX_PARTS) {
            fprintf(stderr, "kq_rmcheck: %s: %s\n", dlq[0], err);
            goto out;
        }
        free(high);
        if ((high = calloc((size_t)n, sizeof *high)) == NULL ||
            settle(c, u, dlq, 1, n, high, &cfg) != 0 || read_all(c, dlq, 1, n, high, on_dlq, NULL))
            goto out;
        rc = 0;
        goto out;
    }
    if (settle(c, u, names, 3, np, high, &cfg) != 0 ||
        read_all(c, names, 3, np, high, on_event, &f) != 0)
        goto out;
    count_resources();
    printf("records %ld valid %ld refused %ld aggregates %zu resources %zu\n", f.records, f.valid,
           f.records - f.valid, naggs_valid(), nresources);
    rc = 0;
    if (use_lmdb) {
        if (check_lmdb(&cfg, lmdb_dir, names, np, high) != 0)
            rc = 1;
        else if (!quiet)
            printf("lmdb: equal\n");
    }
    if (pg != NULL) {
        if (check_pg(&cfg, pg, names, np, high, f.valid) != 0)
            rc = 1;
        else if (!quiet)
            printf("pg: equal\n");
    }
    if (ndiffs > MAX_DIFFS)
        printf("... %d differences in all\n", ndiffs);
out:
    if (c) {
        rd_kafka_consumer_close(c);
        rd_kafka_destroy(c);
    }
    if (u)
        rd_kafka_destroy(u);
    free(high);
    kq_config_free(&cfg);
    return rc;
}
