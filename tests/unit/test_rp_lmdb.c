/*
 * test_rp_lmdb.c — kcqrs-replay's LMDB target on temporary directories: the
 * rebuild lock (a second shadow is KQ_EBUSY), the switch (shadow becomes
 * live, live becomes retired, an older retired removed; a live model that
 * does not exist yet), the projector's side of the lock (a live proj_lmdb
 * whose directory was switched returns KQ_ESWITCHED and writes nothing),
 * fingerprints (equal for the same events in another batching, a deleted
 * key named by the diff, the live offsets reported), named snapshots built
 * aside and renamed into place, dropped, and refused names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>

#include "ev_codec.h"
#include "kq_config.h"
#include "kq_err.h"
#include "kq_rm.h"
#include "proj_lmdb.h"
#include "rp_fp.h"
#include "rp_target.h"

#define TOPIC "kcqrs.resource.events"
#define NEV 12

typedef struct fixture {
    char dir[256];
    kq_config cfg;
    uint8_t *bufs[NEV];
    proj_event ev[NEV];
} fixture;

static int no_dl(void *arg, const proj_event *ev, const char *target, const char *reason)
{
    (void)arg;
    fail_msg("unexpected dead letter at %lld: %s (%s)", (long long)ev->offset, reason, target);
    return -1;
}

/* Twelve events on TOPIC partition 0: 4 resources created, some updated, one deleted. */
static void make_events(fixture *f)
{
    static const struct {
        ev_event_type type;
        const char *id;
        int64_t version;
        int status;
    } spec[NEV] = {
        {EV_RESOURCE_CREATED, "a", 1, 0},  {EV_RESOURCE_CREATED, "b", 1, 0},
        {EV_RESOURCE_UPDATED, "a", 2, 1},  {EV_RESOURCE_CREATED, "c", 1, 2},
        {EV_RESOURCE_UPDATED, "b", 2, -1}, {EV_RESOURCE_DELETED, "c", 2, -1},
        {EV_RESOURCE_CREATED, "d", 1, 0},  {EV_RESOURCE_UPDATED, "a", 3, 2},
        {EV_RESOURCE_UPDATED, "d", 2, 1},  {EV_RESOURCE_UPDATED, "b", 3, 2},
        {EV_RESOURCE_UPDATED, "d", 3, 0},  {EV_RESOURCE_UPDATED, "a", 4, -1},
    };
    char err[256];

    for (int i = 0; i < NEV; i++) {
        ev_envelope e;
        ev_fb_builder b;
        const uint8_t *data;
        size_t len;

        ev_envelope_init(&e, spec[i].type);
        memset(e.event_id.bytes, i + 1, 16);
        e.aggregate_id = ev_str_c(spec[i].id);
        e.version = spec[i].version;
        e.occurred_at_us = 1700000000000000LL + i;
        e.actor = ev_str_c("test");
        if (spec[i].type == EV_RESOURCE_CREATED) {
            e.payload.resource_created.name = ev_str_c(spec[i].id);
            e.payload.resource_created.status = spec[i].status;
        } else if (spec[i].type == EV_RESOURCE_UPDATED) {
            e.payload.resource_updated.description = ev_str_c("changed");
            if (spec[i].status >= 0) {
                e.payload.resource_updated.has_status = true;
                e.payload.resource_updated.status = spec[i].status;
            }
        }
        ev_fb_builder_init(&b);
        assert_int_equal(ev_envelope_encode(&b, &e, err, sizeof err), 0);
        data = ev_fb_builder_data(&b, &len);
        f->bufs[i] = malloc(len);
        memcpy(f->bufs[i], data, len);
        ev_fb_builder_free(&b);
        memset(&f->ev[i], 0, sizeof f->ev[i]);
        f->ev[i].topic = TOPIC;
        f->ev[i].offset = i;
        f->ev[i].value = f->bufs[i];
        f->ev[i].len = len;
        f->ev[i].key = spec[i].id;
        f->ev[i].keylen = 1;
        assert_int_equal(ev_envelope_decode(f->bufs[i], len, &f->ev[i].env, err, sizeof err), 0);
        f->ev[i].decoded = 1;
    }
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char err[256];

    snprintf(f->dir, sizeof f->dir, "/tmp/test_rp_lmdb.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    setenv("KCQRS_LMDB_DIR", f->dir, 1);
    setenv("KCQRS_LMDB_MAP_MB", "16", 1);
    setenv("KCQRS_TOPIC_PREFIX", "kcqrs", 1);
    assert_int_equal(kq_config_load(&f->cfg, err, sizeof err), 0);
    make_events(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[600];

    for (int i = 0; i < NEV; i++)
        free(f->bufs[i]);
    kq_config_free(&f->cfg);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Apply events [from, to) in batches of `per` through a runner target of `ops`. */
static void apply_range(fixture *f, const proj_target_ops *ops, void *sh, int from, int to, int per)
{
    void *t;
    char err[256];

    assert_int_equal(ops->open(&f->cfg, sh, &t, err, sizeof err), 0);
    for (int i = from; i < to; i += per) {
        int n = i + per > to ? to - i : per;
        proj_offset nx = {TOPIC, 0, i + n};
        proj_batch b = {&f->ev[i], (size_t)n, &nx, 1};
        assert_int_equal(ops->apply(t, &b, no_dl, NULL, err, sizeof err), 0);
    }
    ops->close(t);
}

static int exists(const fixture *f, const char *rel)
{
    char p[512];
    struct stat st;

    snprintf(p, sizeof p, "%s/%s", f->dir, rel);
    return stat(p, &st) == 0;
}

/* A finished rebuild shadow of events [0, n) in batches of `per`, switched live. */
static void rebuild(fixture *f, int n, int per)
{
    const rp_target_ops *t = &rp_lmdb_ops;
    void *sh, *lk;
    char err[256];

    assert_int_equal(t->shadow_create(&f->cfg, NULL, &sh, err, sizeof err), 0);
    apply_range(f, &t->bulk, sh, 0, n, per);
    assert_int_equal(t->finish(sh, err, sizeof err), 0);
    assert_int_equal(t->lock_live(&f->cfg, &lk, err, sizeof err), 0);
    assert_int_equal(t->switch_live(sh, err, sizeof err), 0);
    t->unlock_live(lk);
    t->shadow_close(sh);
}

static void test_busy(void **state)
{
    fixture *f = *state;
    const rp_target_ops *t = &rp_lmdb_ops;
    void *a, *b = NULL;
    char err[256];

    assert_int_equal(t->shadow_create(&f->cfg, NULL, &a, err, sizeof err), 0);
    assert_true(exists(f, KQ_RM_SHADOW_SUBDIR));
    assert_int_equal(t->shadow_create(&f->cfg, NULL, &b, err, sizeof err), KQ_EBUSY);
    assert_null(b);
    assert_non_null(strstr(err, "busy"));
    /* a named snapshot build takes the same lock */
    assert_int_equal(t->shadow_create(&f->cfg, "snap", &b, err, sizeof err), KQ_EBUSY);
    t->shadow_drop(a);
    assert_false(exists(f, KQ_RM_SHADOW_SUBDIR));
    assert_int_equal(t->shadow_create(&f->cfg, NULL, &b, err, sizeof err), 0);
    t->shadow_drop(b);
}

static void test_switch_and_projector_notices(void **state)
{
    fixture *f = *state;
    const rp_target_ops *t = &rp_lmdb_ops;
    proj_lmdb *live;
    rp_fp *fa, *fb;
    char err[256];

    /* no live model yet: fingerprint_live says so, the switch just moves the shadow in */
    fa = rp_fp_new(1);
    assert_int_equal(t->fingerprint_live(&f->cfg, fa, NULL, NULL, err, sizeof err), KQ_ENOTFOUND);
    rp_fp_free(fa);
    rebuild(f, 6, 6);
    assert_true(exists(f, KQ_RM_SUBDIR "/data.mdb"));
    assert_false(exists(f, KQ_RM_SHADOW_SUBDIR));
    assert_false(exists(f, KQ_RM_RETIRED_SUBDIR));

    /* the projector holds the live model; a rebuild switches another in */
    assert_int_equal(proj_lmdb_open(&f->cfg, &live, err, sizeof err), 0);
    {
        proj_offset nx = {TOPIC, 0, 7};
        proj_batch b = {&f->ev[6], 1, &nx, 1};
        assert_int_equal(proj_lmdb_apply(live, &b, no_dl, NULL, err, sizeof err), 0);
    }
    rebuild(f, NEV, 5);
    assert_true(exists(f, KQ_RM_RETIRED_SUBDIR "/data.mdb"));
    {
        proj_offset nx = {TOPIC, 0, 8};
        proj_batch b = {&f->ev[7], 1, &nx, 1};
        assert_int_equal(proj_lmdb_apply(live, &b, no_dl, NULL, err, sizeof err), KQ_ESWITCHED);
        assert_non_null(strstr(err, "replaced"));
    }
    proj_lmdb_close(live);

    /* the switched-in model holds all 12 events in batches of 5; a shadow of
     * the same events one by one has the same fingerprint */
    {
        void *sh;
        int64_t off = -1;
        fa = rp_fp_new(1);
        fb = rp_fp_new(1);
        assert_int_equal(t->shadow_create(&f->cfg, NULL, &sh, err, sizeof err), 0);
        apply_range(f, &t->tail, sh, 0, NEV, 1);
        assert_int_equal(t->finish(sh, err, sizeof err), 0);
        assert_int_equal(t->fingerprint_shadow(sh, fb, err, sizeof err), 0);
        assert_int_equal(t->fingerprint_live(&f->cfg, fa, NULL, NULL, err, sizeof err), 0);
        assert_true(rp_fp_equal(fa, fb));
        assert_true(rp_fp_rows(fa) > 10);
        rp_fp_free(fa);
        t->shadow_drop(sh);
        (void)off;
    }

    /* the retired model (the one the projector wrote 7 events to) is the
     * previous live one; a third rebuild replaces it */
    rebuild(f, 3, 3);
    assert_true(exists(f, KQ_RM_RETIRED_SUBDIR "/data.mdb"));
    fa = rp_fp_new(1);
    assert_int_equal(t->fingerprint_live(&f->cfg, fa, NULL, NULL, err, sizeof err), 0);
    assert_false(rp_fp_equal(fa, fb));
    rp_fp_free(fa);
    rp_fp_free(fb);
}

static void on_off(void *arg, const char *topic, int32_t partition, int64_t next)
{
    int64_t *o = arg;

    assert_string_equal(topic, TOPIC);
    assert_int_equal(partition, 0);
    *o = next;
}

static void test_fingerprint_diff_names_deleted_key(void **state)
{
    fixture *f = *state;
    const rp_target_ops *t = &rp_lmdb_ops;
    rp_fp *fl = rp_fp_new(1), *fs = rp_fp_new(1);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {1, "b"};
    char err[256], live[512], *out = NULL;
    size_t outlen = 0;
    int64_t off = -1;
    void *sh;
    FILE *mf;

    rebuild(f, NEV, 4);
    snprintf(live, sizeof live, "%s/%s", f->dir, KQ_RM_SUBDIR);
    assert_int_equal(kq_rm_env_open(live, 16u << 20, 0, &env, err, sizeof err), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, KQ_RM_DB_RESOURCES, 0, &dbi), 0);
    assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    assert_int_equal(t->fingerprint_live(&f->cfg, fl, on_off, &off, err, sizeof err), 0);
    assert_int_equal(off, NEV);
    assert_int_equal(t->shadow_create(&f->cfg, NULL, &sh, err, sizeof err), 0);
    apply_range(f, &t->bulk, sh, 0, NEV, NEV);
    assert_int_equal(t->finish(sh, err, sizeof err), 0);
    assert_int_equal(t->fingerprint_shadow(sh, fs, err, sizeof err), 0);
    t->shadow_drop(sh);
    assert_false(rp_fp_equal(fl, fs));
    mf = open_memstream(&out, &outlen);
    assert_int_equal(rp_fp_diff(fl, fs, mf, 20), 1);
    fclose(mf);
    if (strstr(out, "resources \"b\": missing in live") == NULL)
        fail_msg("diff: %s", out);
    free(out);
    rp_fp_free(fl);
    rp_fp_free(fs);
}

static void test_named_snapshot(void **state)
{
    fixture *f = *state;
    const rp_target_ops *t = &rp_lmdb_ops;
    void *sh, *lk;
    char err[256];

    assert_int_equal(t->shadow_create(&f->cfg, "Bad", &sh, err, sizeof err), KQ_EINVAL);
    assert_int_equal(t->drop_snapshot(&f->cfg, "../x", err, sizeof err), KQ_EINVAL);
    assert_int_equal(t->drop_snapshot(&f->cfg, "s1", err, sizeof err), KQ_ENOTFOUND);

    assert_int_equal(t->shadow_create(&f->cfg, "s1", &sh, err, sizeof err), 0);
    assert_true(exists(f, "snapshots/s1.building"));
    apply_range(f, &t->bulk, sh, 0, 4, 2);
    assert_int_equal(t->finish(sh, err, sizeof err), 0);
    assert_int_equal(t->switch_live(sh, err, sizeof err), KQ_EINVAL); /* never live */
    t->shadow_close(sh);
    assert_true(exists(f, "snapshots/s1/data.mdb"));
    assert_false(exists(f, "snapshots/s1.building"));
    assert_false(exists(f, KQ_RM_SUBDIR));

    /* a failed rebuild of the same name leaves the existing one alone */
    assert_int_equal(t->shadow_create(&f->cfg, "s1", &sh, err, sizeof err), 0);
    t->shadow_drop(sh);
    assert_true(exists(f, "snapshots/s1/data.mdb"));

    /* the live lock can be taken while nothing else holds it */
    assert_int_equal(t->lock_live(&f->cfg, &lk, err, sizeof err), 0);
    t->unlock_live(lk);

    assert_int_equal(t->drop_snapshot(&f->cfg, "s1", err, sizeof err), 0);
    assert_false(exists(f, "snapshots/s1"));
    assert_int_equal(t->drop_snapshot(&f->cfg, "s1", err, sizeof err), KQ_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_switch_and_projector_notices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fingerprint_diff_names_deleted_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_named_snapshot, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
