/*
 * test_proj_lmdb.c — the projector's LMDB target against a real LMDB in a
 * temporary directory: batches of resource events (create, update with and
 * without a status change, delete), the status index kept consistent,
 * versions and offsets stored in the same transaction, version gaps handed
 * to the dead-letter callback and skipped (also inside one batch), refused
 * records (decoded = 0) skipped, a failing dead-letter callback rolling the
 * whole batch back, MDB_MAP_FULL leaving the previous state intact, reopen,
 * and the refusal of an environment of another format.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lmdb.h>

#include "ev_codec.h"
#include "kq_err.h"
#include "kq_rm.h"
#include "proj_lmdb.h"

#define TOPIC "t.resource.events"
#define WTOPIC "t.workflow.events"
#define MAXEV 64

/* ------------------------------------------------------------ helpers */

typedef struct fixture {
    char dir[256];
    proj_lmdb *t;
    proj_event ev[MAXEV];
    uint8_t *bufs[MAXEV];
    size_t n;
    int64_t next_off;
} fixture;

typedef struct dl_rec {
    int calls;
    int fail;
    int64_t offsets[MAXEV];
    char reasons[MAXEV][160];
} dl_rec;

static int record_dl(void *arg, const proj_event *ev, const char *target, const char *reason)
{
    dl_rec *d = arg;

    assert_string_equal(target, "lmdb");
    if (d->calls < MAXEV) {
        d->offsets[d->calls] = ev->offset;
        snprintf(d->reasons[d->calls], sizeof d->reasons[0], "%s", reason);
    }
    d->calls++;
    return d->fail ? -1 : 0;
}

static void rmrf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char err[256];

    snprintf(f->dir, sizeof f->dir, "/tmp/test_proj_lmdb.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    strcat(f->dir, "/readmodel");
    assert_int_equal(proj_lmdb_open_dir(f->dir, 16u << 20, 0, &f->t, err, sizeof err), 0);
    *state = f;
    return 0;
}

static void batch_clear(fixture *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->bufs[i]);
    f->n = 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char parent[256];

    batch_clear(f);
    proj_lmdb_close(f->t);
    snprintf(parent, sizeof parent, "%s", f->dir);
    *strrchr(parent, '/') = '\0';
    rmrf(parent);
    free(f);
    return 0;
}

/* Append a resource event (status < 0: none in an update). */
static void add(fixture *f, ev_event_type type, const char *id, int64_t version, const char *name,
                const char *desc, int status)
{
    ev_envelope e;
    ev_fb_builder b;
    const uint8_t *data;
    size_t len;
    char err[256];
    proj_event *ev = &f->ev[f->n];

    assert_true(f->n < MAXEV);
    ev_envelope_init(&e, type);
    memset(e.event_id.bytes, (int)f->next_off + 1, 16);
    e.aggregate_id = ev_str_c(id);
    e.version = version;
    e.occurred_at_us = 1700000000000000LL + version * 1000 + (int64_t)f->next_off;
    e.actor = ev_str_c("test");
    switch (type) {
    case EV_RESOURCE_CREATED:
        e.payload.resource_created.name = ev_str_c(name);
        e.payload.resource_created.description = ev_str_c(desc);
        e.payload.resource_created.status = status;
        break;
    case EV_RESOURCE_UPDATED:
        e.payload.resource_updated.name = ev_str_c(name);
        e.payload.resource_updated.description = ev_str_c(desc);
        if (status >= 0) {
            e.payload.resource_updated.has_status = true;
            e.payload.resource_updated.status = status;
        }
        break;
    case EV_WORKFLOW_CREATED:
        e.payload.workflow_created.name = ev_str_c(name);
        e.payload.workflow_created.webhook_secret = ev_str_c("s");
        e.payload.workflow_created.steps = ev_step_list_of(NULL, 0);
        break;
    default:
        break;
    }
    ev_fb_builder_init(&b);
    assert_int_equal(ev_envelope_encode(&b, &e, err, sizeof err), 0);
    data = ev_fb_builder_data(&b, &len);
    f->bufs[f->n] = malloc(len);
    memcpy(f->bufs[f->n], data, len);
    ev_fb_builder_free(&b);
    memset(ev, 0, sizeof *ev);
    ev->topic = ev_event_aggregate_type(type) == EV_AGG_RESOURCE ? TOPIC : WTOPIC;
    ev->partition = 0;
    ev->offset = f->next_off++;
    ev->value = f->bufs[f->n];
    ev->len = len;
    ev->key = id;
    ev->keylen = strlen(id);
    assert_int_equal(ev_envelope_decode(ev->value, ev->len, &ev->env, err, sizeof err), 0);
    ev->decoded = 1;
    f->n++;
}

/* Apply the gathered events with next offsets for (TOPIC, 0) and, if used, (WTOPIC, 0). */
static int apply(fixture *f, dl_rec *d)
{
    proj_offset nx[2] = {{TOPIC, 0, f->next_off}, {WTOPIC, 0, f->next_off}};
    proj_batch b = {f->ev, f->n, nx, 2};
    char err[256];
    int rc = proj_lmdb_apply(f->t, &b, record_dl, d, err, sizeof err);

    batch_clear(f);
    return rc;
}

/* Read the read model with a separate environment handle, as the query API does. */
typedef struct view {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi res, st, ver, off;
} view;

static void view_open(fixture *f, view *v)
{
    char err[256];
    assert_int_equal(kq_rm_env_open(f->dir, 16u << 20, 0, &v->env, err, sizeof err), 0);
    assert_int_equal(mdb_txn_begin(v->env, NULL, MDB_RDONLY, &v->txn), 0);
    assert_int_equal(mdb_dbi_open(v->txn, KQ_RM_DB_RESOURCES, 0, &v->res), 0);
    assert_int_equal(mdb_dbi_open(v->txn, KQ_RM_DB_RES_BY_STATUS, 0, &v->st), 0);
    assert_int_equal(mdb_dbi_open(v->txn, KQ_RM_DB_VERSIONS, 0, &v->ver), 0);
    assert_int_equal(mdb_dbi_open(v->txn, KQ_RM_DB_OFFSETS, 0, &v->off), 0);
}

static void view_close(view *v)
{
    mdb_txn_abort(v->txn);
    mdb_env_close(v->env);
}

/* 0 and *r, or KQ_ENOTFOUND. */
static int get_res(view *v, const char *id, kq_rm_resource *r)
{
    MDB_val k = {strlen(id), (void *)id}, val;
    if (mdb_get(v->txn, v->res, &k, &val) != 0)
        return KQ_ENOTFOUND;
    assert_int_equal(kq_rm_resource_decode(val.mv_data, val.mv_size, r), 0);
    return 0;
}

static int64_t get_version(view *v, uint8_t type, const char *id)
{
    uint8_t kb[128];
    int n = kq_rm_prefixed_key(type, id, strlen(id), kb, sizeof kb);
    MDB_val k = {(size_t)n, kb}, val;
    int64_t x;
    if (mdb_get(v->txn, v->ver, &k, &val) != 0)
        return 0;
    assert_int_equal(val.mv_size, 8);
    memcpy(&x, val.mv_data, 8);
    return x;
}

static int64_t get_offset(view *v, const char *topic)
{
    char key[128];
    int n = kq_rm_offset_key(topic, 0, key, sizeof key);
    MDB_val k = {(size_t)n, key}, val;
    int64_t x;
    if (mdb_get(v->txn, v->off, &k, &val) != 0)
        return -1;
    memcpy(&x, val.mv_data, 8);
    return x;
}

/* The status index as "status:id,status:id,..." in key order. */
static void index_str(view *v, char *out, size_t outlen)
{
    MDB_cursor *c;
    MDB_val k, val;
    size_t used = 0;

    out[0] = '\0';
    assert_int_equal(mdb_cursor_open(v->txn, v->st, &c), 0);
    for (int rc = mdb_cursor_get(c, &k, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &val, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        used += (size_t)snprintf(out + used, outlen - used, "%s%d:%.*s", used ? "," : "", p[0],
                                 (int)k.mv_size - 1, (const char *)p + 1);
    }
    mdb_cursor_close(c);
}

/* ------------------------------------------------------------ tests */

static void test_create_update_delete(void **state)
{
    fixture *f = *state;
    dl_rec d = {0};
    view v;
    kq_rm_resource r;
    char idx[512];

    add(f, EV_RESOURCE_CREATED, "a", 1, "A", "first", EV_STATUS_ACTIVE);
    add(f, EV_RESOURCE_CREATED, "b", 1, "B", "", EV_STATUS_INACTIVE);
    add(f, EV_RESOURCE_UPDATED, "a", 2, "A2", NULL, -1); /* same batch as its create */
    assert_int_equal(apply(f, &d), 0);
    assert_int_equal(d.calls, 0);

    view_open(f, &v);
    assert_int_equal(get_res(&v, "a", &r), 0);
    assert_int_equal(r.version, 2);
    assert_int_equal(r.name_len, 2);
    assert_memory_equal(r.name, "A2", 2);
    assert_int_equal(r.description_len, 5);
    assert_memory_equal(r.description, "first", 5);
    assert_int_equal(r.status, EV_STATUS_ACTIVE);
    assert_int_equal(r.created_at_us, 1700000000000000LL + 1000 + 0);
    assert_int_equal(r.updated_at_us, 1700000000000000LL + 2000 + 2);
    index_str(&v, idx, sizeof idx);
    assert_string_equal(idx, "0:a,1:b");
    assert_int_equal(get_version(&v, EV_AGG_RESOURCE, "a"), 2);
    assert_int_equal(get_offset(&v, TOPIC), 3);
    view_close(&v);

    /* A status change moves the index entry; a delete removes both. */
    add(f, EV_RESOURCE_UPDATED, "a", 3, NULL, "second", EV_STATUS_ARCHIVED);
    add(f, EV_RESOURCE_DELETED, "b", 2, NULL, NULL, -1);
    assert_int_equal(apply(f, &d), 0);
    view_open(f, &v);
    assert_int_equal(get_res(&v, "a", &r), 0);
    assert_int_equal(r.status, EV_STATUS_ARCHIVED);
    assert_memory_equal(r.name, "A2", 2);
    assert_memory_equal(r.description, "second", 6);
    assert_int_equal(get_res(&v, "b", &r), KQ_ENOTFOUND);
    index_str(&v, idx, sizeof idx);
    assert_string_equal(idx, "2:a");
    assert_int_equal(get_version(&v, EV_AGG_RESOURCE, "b"), 2); /* deleted keep their version */
    assert_int_equal(get_offset(&v, TOPIC), 5);
    view_close(&v);
}

static void test_gaps_dead_lettered(void **state)
{
    fixture *f = *state;
    dl_rec d = {0};
    view v;
    kq_rm_resource r;
    char idx[512];

    add(f, EV_RESOURCE_CREATED, "g", 2, "G", "", 0);      /* offset 0: version 1 missing */
    add(f, EV_RESOURCE_CREATED, "g", 1, "G", "", 0);      /* 1: applied */
    add(f, EV_RESOURCE_UPDATED, "g", 1, "again", "", -1); /* 2: duplicate version */
    add(f, EV_RESOURCE_UPDATED, "g", 3, "skip", "", -1);  /* 3: gap (2 missing) */
    add(f, EV_RESOURCE_UPDATED, "g", 2, "G2", "", 1);     /* 4: applied */
    assert_int_equal(apply(f, &d), 0);
    assert_int_equal(d.calls, 3);
    assert_int_equal(d.offsets[0], 0);
    assert_int_equal(d.offsets[1], 2);
    assert_int_equal(d.offsets[2], 3);
    assert_non_null(strstr(d.reasons[0], "version 2"));
    assert_non_null(strstr(d.reasons[2], "last version 1"));

    view_open(f, &v);
    assert_int_equal(get_res(&v, "g", &r), 0);
    assert_int_equal(r.version, 2);
    assert_memory_equal(r.name, "G2", 2);
    index_str(&v, idx, sizeof idx);
    assert_string_equal(idx, "1:g");
    assert_int_equal(get_offset(&v, TOPIC), 5);
    view_close(&v);
}

static void test_refused_records_skipped(void **state)
{
    fixture *f = *state;
    dl_rec d = {0};
    view v;
    kq_rm_resource r;

    add(f, EV_RESOURCE_CREATED, "x", 1, "X", "", 0);
    f->ev[0].decoded = 0; /* the runner dead-lettered it */
    add(f, EV_RESOURCE_CREATED, "y", 1, "Y", "", 0);
    assert_int_equal(apply(f, &d), 0);
    assert_int_equal(d.calls, 0);
    view_open(f, &v);
    assert_int_equal(get_res(&v, "x", &r), KQ_ENOTFOUND);
    assert_int_equal(get_version(&v, EV_AGG_RESOURCE, "x"), 0);
    assert_int_equal(get_res(&v, "y", &r), 0);
    assert_int_equal(get_offset(&v, TOPIC), 2);
    view_close(&v);
}

static void test_dead_letter_failure_rolls_back(void **state)
{
    fixture *f = *state;
    dl_rec d = {0};
    view v;
    kq_rm_resource r;

    add(f, EV_RESOURCE_CREATED, "p", 1, "P", "", 0);
    assert_int_equal(apply(f, &d), 0);
    add(f, EV_RESOURCE_UPDATED, "p", 2, "P2", "", -1);
    add(f, EV_RESOURCE_UPDATED, "p", 9, "gap", "", -1);
    d.fail = 1;
    assert_int_equal(apply(f, &d), KQ_EIO);
    view_open(f, &v);
    assert_int_equal(get_res(&v, "p", &r), 0);
    assert_int_equal(r.version, 1); /* the update before the gap was rolled back too */
    assert_int_equal(get_offset(&v, TOPIC), 1);
    view_close(&v);
}

static void test_workflows_only_versions(void **state)
{
    fixture *f = *state;
    dl_rec d = {0};
    view v;

    add(f, EV_WORKFLOW_CREATED, "w", 1, "W", NULL, 0);
    add(f, EV_WORKFLOW_DISABLED, "w", 2, NULL, NULL, 0);
    add(f, EV_WORKFLOW_ENABLED, "w", 4, NULL, NULL, 0); /* gap */
    assert_int_equal(apply(f, &d), 0);
    assert_int_equal(d.calls, 1);
    view_open(f, &v);
    assert_int_equal(get_version(&v, EV_AGG_WORKFLOW, "w"), 2);
    assert_int_equal(get_version(&v, EV_AGG_RESOURCE, "w"), 0); /* types do not mix */
    assert_int_equal(get_offset(&v, WTOPIC), 3);
    view_close(&v);
}

static void offset_cb(void *arg, const char *topic, int32_t partition, int64_t next)
{
    char *out = arg;
    size_t used = strlen(out);
    snprintf(out + used, 512 - used, "%s/%d=%lld;", topic, (int)partition, (long long)next);
}

static void test_reopen_loads_offsets(void **state)
{
    fixture *f = *state;
    dl_rec d = {0};
    char err[256], got[512] = "";
    kq_rm_resource r;
    view v;

    add(f, EV_RESOURCE_CREATED, "r", 1, "R", "", 2);
    add(f, EV_RESOURCE_CREATED, "s", 1, "S", "", 0);
    assert_int_equal(apply(f, &d), 0);
    proj_lmdb_close(f->t);
    f->t = NULL;
    assert_int_equal(proj_lmdb_open_dir(f->dir, 16u << 20, 1, &f->t, err, sizeof err), 0);
    assert_int_equal(proj_lmdb_load_offsets(f->t, offset_cb, got, err, sizeof err), 0);
    assert_string_equal(got, TOPIC "/0=2;" WTOPIC "/0=2;");
    view_open(f, &v);
    assert_int_equal(get_res(&v, "r", &r), 0);
    assert_int_equal(r.status, 2);
    view_close(&v);
}

static void test_map_full_keeps_state(void **state)
{
    fixture *f = *state;
    dl_rec d = {0};
    char err[256], dir[300], big[4000];
    proj_lmdb *t;
    proj_offset nx = {TOPIC, 0, 0};
    int rc = 0, batches = 0;

    snprintf(dir, sizeof dir, "%s-small", f->dir);
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(proj_lmdb_open_dir(dir, 256u << 10, 0, &t, err, sizeof err), 0);
    /* Fill a 256 KiB map until a batch fails; the one before stays stored. */
    while (rc == 0 && batches < 200) {
        for (int i = 0; i < 8; i++) {
            char id[32];
            snprintf(id, sizeof id, "big-%d-%d", batches, i);
            add(f, EV_RESOURCE_CREATED, id, 1, "B", big, 0);
        }
        nx.next_offset = f->next_off;
        proj_batch b = {f->ev, f->n, &nx, 1};
        rc = proj_lmdb_apply(t, &b, record_dl, &d, err, sizeof err);
        batch_clear(f);
        batches++;
    }
    assert_int_equal(rc, KQ_ELMDB);
    assert_non_null(strstr(err, "MDB_MAP_FULL"));
    char got[512] = "", want[128];
    assert_int_equal(proj_lmdb_load_offsets(t, offset_cb, got, err, sizeof err), 0);
    snprintf(want, sizeof want, TOPIC "/0=%d;", (batches - 1) * 8);
    assert_string_equal(got, want);
    proj_lmdb_close(t);
    snprintf(big, sizeof big, "rm -rf '%s'", dir);
    assert_int_equal(system(big), 0);
}

static void test_other_format_refused(void **state)
{
    fixture *f = *state;
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta;
    MDB_val k = {6, "format"}, v = {9, "other.v9"};
    char err[256];
    proj_lmdb *t = NULL;

    proj_lmdb_close(f->t);
    f->t = NULL;
    assert_int_equal(kq_rm_env_open(f->dir, 16u << 20, 0, &env, err, sizeof err), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, KQ_RM_DB_META, 0, &meta), 0);
    assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    assert_int_equal(proj_lmdb_open_dir(f->dir, 16u << 20, 0, &t, err, sizeof err), KQ_ECORRUPT);
    assert_null(t);
    assert_non_null(strstr(err, "other.v9"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_update_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gaps_dead_lettered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_records_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letter_failure_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workflows_only_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_loads_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_full_keeps_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_format_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
