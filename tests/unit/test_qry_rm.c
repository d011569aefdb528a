/*
 * test_qry_rm.c — the query API follows a replaced LMDB read model (qry_rm)
 * and serves named snapshots (qry_snap), on real LMDB environments in a
 * temporary directory swapped the way kcqrs-replay swaps them
 * (renameat2 RENAME_EXCHANGE, two renames, rm -rf).
 *
 * Every environment holds one resource "x" whose name says which model it
 * is ("A", "B", ...), so a read tells which environment answered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kq_err.h"
#include "kq_log.h"
#include "kq_rm.h"
#include "qry_rm.h"
#include "qry_snap.h"
#include "qry_text.h"

#define MAP (8u << 20)

static char tmpdir[256];

static void path_of(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmpdir, name);
}

/* A complete read model in tmpdir/name with resource "x" named `label`. */
static void make_model(const char *name, const char *label)
{
    char dir[512], err[256], sk[32];
    MDB_env *env = NULL;
    MDB_txn *txn;
    MDB_dbi meta, offs, vers, res, bys;
    MDB_val k, v;
    uint8_t rec[256];
    kq_rm_resource r;
    int64_t next = 7;
    int skl;

    path_of(dir, sizeof dir, name);
    if (kq_rm_env_open(dir, MAP, 1, &env, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, KQ_RM_DB_META, MDB_CREATE, &meta), 0);
    assert_int_equal(mdb_dbi_open(txn, KQ_RM_DB_OFFSETS, MDB_CREATE, &offs), 0);
    assert_int_equal(mdb_dbi_open(txn, KQ_RM_DB_VERSIONS, MDB_CREATE, &vers), 0);
    assert_int_equal(mdb_dbi_open(txn, KQ_RM_DB_RESOURCES, MDB_CREATE, &res), 0);
    assert_int_equal(mdb_dbi_open(txn, KQ_RM_DB_RES_BY_STATUS, MDB_CREATE, &bys), 0);
    memset(&r, 0, sizeof r);
    r.version = 1;
    r.created_at_us = r.updated_at_us = 1700000000000000LL;
    r.name = label;
    r.name_len = (uint32_t)strlen(label);
    r.description = "";
    kq_rm_resource_encode(&r, rec);
    k.mv_data = "x";
    k.mv_size = 1;
    v.mv_data = rec;
    v.mv_size = kq_rm_resource_size(&r);
    assert_int_equal(mdb_put(txn, res, &k, &v, 0), 0);
    skl = kq_rm_prefixed_key(0, "x", 1, (uint8_t *)sk, sizeof sk);
    k.mv_data = sk;
    k.mv_size = (size_t)skl;
    v.mv_data = "";
    v.mv_size = 0;
    assert_int_equal(mdb_put(txn, bys, &k, &v, 0), 0);
    k.mv_data = "t/0";
    k.mv_size = 3;
    v.mv_data = &next;
    v.mv_size = sizeof next;
    assert_int_equal(mdb_put(txn, offs, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env); /* LMDB: never the same environment open twice in one process */
}

static void rm_rf(const char *name)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/%s'", tmpdir, name);
    assert_int_equal(system(cmd), 0);
}

static void mv(const char *from, const char *to)
{
    char a[512], b[512];
    path_of(a, sizeof a, from);
    path_of(b, sizeof b, to);
    if (rename(a, b) != 0)
        fail_msg("rename %s %s: %s", a, b, strerror(errno));
}

static void exchange(const char *x, const char *y)
{
    char a[512], b[512];
    path_of(a, sizeof a, x);
    path_of(b, sizeof b, y);
    if (syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, 2 /* RENAME_EXCHANGE */) != 0)
        fail_msg("renameat2 %s %s: %s", a, b, strerror(errno));
}

/* The name of resource "x" as the view serves it ("" when unreadable). */
static void name_of(qry_rm_view *v, char *out, size_t n)
{
    char *text = NULL, err[256];
    size_t len = 0;
    int64_t version = 0;
    json_t *j;

    out[0] = '\0';
    if (qry_rm_get_text(v, "x", &text, &len, &version, err, sizeof err) != 0) {
        static int once;
        if (!once++)
            fprintf(stderr, "get: %s\n", err);
        return;
    }
    j = json_loadb(text, len, 0, NULL);
    snprintf(out, n, "%s", json_string_value(json_object_get(j, "name")));
    json_decref(j);
    free(text);
}

/* Acquire, read, release: the name the current model serves. */
static void current_name(qry_rm *rm, char *out, size_t n)
{
    qry_rm_view *v = NULL;
    char err[256];

    if (qry_rm_acquire(rm, &v, err, sizeof err) != 0)
        fail_msg("acquire: %s", err);
    name_of(v, out, n);
    qry_rm_release(v);
}

static void pause_check(void)
{
    usleep((QRY_RM_CHECK_MS + 30) * 1000);
}

static int setup(void **state)
{
    (void)state;
    kq_log_init("test_qry_rm", getenv("TEST_QRY_LOG") ? KQ_LOG_INFO : KQ_LOG_ERROR, KQ_LOG_HUMAN);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_qry_rm_XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    char cmd[400];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* RENAME_EXCHANGE: the next check takes up the new model; a view acquired before keeps
 * reading the old one until released. */
static void test_exchange(void **state)
{
    char dir[512], name[64], err[256];
    qry_rm *rm = NULL;
    qry_rm_view *old = NULL;
    (void)state;

    rm_rf("readmodel");
    rm_rf("readmodel.shadow");
    path_of(dir, sizeof dir, "readmodel");
    assert_int_equal(qry_rm_new(dir, MAP, 0, &rm), 0);
    assert_false(qry_rm_is_open(rm));
    assert_int_equal(qry_rm_open(rm, err, sizeof err), KQ_ENOTFOUND); /* not made yet */
    make_model("readmodel", "A");
    current_name(rm, name, sizeof name); /* appears: taken up at once */
    assert_string_equal(name, "A");
    assert_int_equal(qry_rm_acquire(rm, &old, err, sizeof err), 0);

    make_model("readmodel.shadow", "B");
    exchange("readmodel.shadow", "readmodel");
    pause_check();
    current_name(rm, name, sizeof name);
    assert_string_equal(name, "B");
    assert_int_equal(qry_rm_switches(rm), 1);
    name_of(old, name, sizeof name); /* the request in flight finishes on its model */
    assert_string_equal(name, "A");
    qry_rm_release(old); /* the last reader: the retired environment closes */

    /* and back again (kcqrs-replay keeps the old one as readmodel.retired) */
    mv("readmodel.shadow", "readmodel.retired");
    make_model("readmodel.shadow", "C");
    exchange("readmodel.shadow", "readmodel");
    pause_check();
    current_name(rm, name, sizeof name);
    assert_string_equal(name, "C");
    assert_int_equal(qry_rm_switches(rm), 2);
    qry_rm_free(rm);
}

/* The two-rename fallback has a moment without a model at the path, and `rm -rf` leaves
 * none for a while: the last model keeps serving, nothing fails. */
static void test_gap_and_delete(void **state)
{
    char dir[512], name[64];
    qry_rm *rm = NULL;
    (void)state;

    rm_rf("readmodel");
    rm_rf("readmodel.shadow");
    rm_rf("readmodel.retired");
    make_model("readmodel", "A");
    path_of(dir, sizeof dir, "readmodel");
    assert_int_equal(qry_rm_new(dir, MAP, 0, &rm), 0);
    current_name(rm, name, sizeof name);
    assert_string_equal(name, "A");

    mv("readmodel", "readmodel.retired"); /* first rename */
    pause_check();
    current_name(rm, name, sizeof name); /* no model at the path: still served */
    assert_string_equal(name, "A");
    make_model("readmodel.shadow", "B");
    mv("readmodel.shadow", "readmodel"); /* second rename */
    pause_check();
    current_name(rm, name, sizeof name);
    assert_string_equal(name, "B");

    rm_rf("readmodel"); /* the disaster: the deleted files keep serving */
    pause_check();
    current_name(rm, name, sizeof name);
    assert_string_equal(name, "B");
    make_model("readmodel", "R"); /* rebuilt */
    pause_check();
    current_name(rm, name, sizeof name);
    assert_string_equal(name, "R");
    assert_int_equal(qry_rm_switches(rm), 2);
    qry_rm_free(rm);
}

/* A strict handle (a snapshot) forgets a model whose path is gone. */
static void test_strict(void **state)
{
    char dir[512], name[64], err[256];
    qry_rm *rm = NULL;
    qry_rm_view *v = NULL;
    (void)state;

    rm_rf("snap");
    make_model("snap", "S");
    path_of(dir, sizeof dir, "snap");
    assert_int_equal(qry_rm_new(dir, MAP, 1, &rm), 0);
    current_name(rm, name, sizeof name);
    assert_string_equal(name, "S");
    assert_int_equal(qry_rm_acquire(rm, &v, err, sizeof err), 0);
    rm_rf("snap");
    pause_check();
    assert_int_equal(qry_rm_open(rm, err, sizeof err), KQ_ENOTFOUND);
    assert_false(qry_rm_is_open(rm));
    name_of(v, name, sizeof name); /* held across the drop: still readable */
    assert_string_equal(name, "S");
    qry_rm_release(v);
    qry_rm_free(rm);
}

typedef struct hammer {
    qry_rm *rm;
    atomic_int stop;
    atomic_long reads, errors, bad;
} hammer;

static void *reader(void *arg)
{
    hammer *h = arg;
    char name[64], err[256];

    while (!atomic_load(&h->stop)) {
        qry_rm_view *v = NULL;
        if (qry_rm_acquire(h->rm, &v, err, sizeof err) != 0) {
            atomic_fetch_add(&h->errors, 1);
            continue;
        }
        name_of(v, name, sizeof name);
        qry_rm_release(v);
        if (strcmp(name, "A") != 0 && strcmp(name, "B") != 0)
            atomic_fetch_add(&h->bad, 1);
        atomic_fetch_add(&h->reads, 1);
    }
    return NULL;
}

/* Readers on four threads while the model is swapped 30 times: every read succeeds and
 * sees one of the two models (under ASan this also catches a view closed while in use). */
static void test_hammer(void **state)
{
    enum { THREADS = 4, SWAPS = 30 };
    char dir[512];
    pthread_t th[THREADS];
    hammer h;
    (void)state;

    rm_rf("readmodel");
    rm_rf("readmodel.shadow");
    rm_rf("readmodel.retired");
    make_model("readmodel", "A");
    make_model("readmodel.shadow", "B");
    path_of(dir, sizeof dir, "readmodel");
    memset(&h, 0, sizeof h);
    assert_int_equal(qry_rm_new(dir, MAP, 0, &h.rm), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, reader, &h), 0);
    for (int i = 0; i < SWAPS; i++) {
        usleep((QRY_RM_CHECK_MS + 20) * 1000 / (i % 3 + 1)); /* some swaps faster than a check */
        exchange("readmodel.shadow", "readmodel");
    }
    usleep(50000);
    atomic_store(&h.stop, 1);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    fprintf(stderr, "%ld reads during %d swaps, %" PRIu64 " switches taken up\n",
            atomic_load(&h.reads), SWAPS, qry_rm_switches(h.rm));
    assert_int_equal(atomic_load(&h.errors), 0);
    assert_int_equal(atomic_load(&h.bad), 0);
    assert_true(atomic_load(&h.reads) > 1000);
    assert_true(qry_rm_switches(h.rm) >= 3); /* some swaps cancel out between two checks */
    qry_rm_free(h.rm);
}

/* Named snapshots: found by name, cached, busy when every entry is in use, not found when
 * missing or dropped. */
static void test_snapshots(void **state)
{
    qry_snap *s = NULL;
    qry_rm_view *held[QRY_SNAP_CACHE + 1];
    char name[64], label[16], err[256], sub[64];
    (void)state;

    rm_rf("snapshots");
    for (int i = 0; i <= QRY_SNAP_CACHE; i++) {
        snprintf(sub, sizeof sub, "snapshots/s%d", i);
        snprintf(label, sizeof label, "S%d", i);
        make_model(sub, label);
    }
    assert_int_equal(qry_snap_new(tmpdir, MAP, &s), 0);
    assert_int_equal(qry_snap_acquire(s, "nosuch", &held[0], err, sizeof err), KQ_ENOTFOUND);
    assert_null(held[0]);
    /* more names than entries, one after the other: evictions */
    for (int round = 0; round < 2; round++)
        for (int i = 0; i <= QRY_SNAP_CACHE; i++) {
            snprintf(sub, sizeof sub, "s%d", i);
            snprintf(label, sizeof label, "S%d", i);
            assert_int_equal(qry_snap_acquire(s, sub, &held[0], err, sizeof err), 0);
            name_of(held[0], name, sizeof name);
            assert_string_equal(name, label);
            qry_snap_release(s, held[0]);
        }
    /* every entry held: the next name is refused, a held one is still served */
    for (int i = 0; i < QRY_SNAP_CACHE; i++) {
        snprintf(sub, sizeof sub, "s%d", i);
        assert_int_equal(qry_snap_acquire(s, sub, &held[i], err, sizeof err), 0);
    }
    snprintf(sub, sizeof sub, "s%d", QRY_SNAP_CACHE);
    assert_int_equal(qry_snap_acquire(s, sub, &held[QRY_SNAP_CACHE], err, sizeof err), KQ_EBUSY);
    assert_int_equal(qry_snap_acquire(s, "s0", &held[QRY_SNAP_CACHE], err, sizeof err), 0);
    qry_snap_release(s, held[QRY_SNAP_CACHE]);
    for (int i = 0; i < QRY_SNAP_CACHE; i++)
        qry_snap_release(s, held[i]);
    /* dropped: not found once the check runs */
    rm_rf("snapshots/s1");
    pause_check();
    assert_int_equal(qry_snap_acquire(s, "s1", &held[0], err, sizeof err), KQ_ENOTFOUND);
    /* rebuilt under the same name: the new one */
    make_model("snapshots/s1", "S1bis");
    assert_int_equal(qry_snap_acquire(s, "s1", &held[0], err, sizeof err), 0);
    name_of(held[0], name, sizeof name);
    assert_string_equal(name, "S1bis");
    qry_snap_release(s, held[0]);
    qry_snap_free(s);
}

/* The list of GET /api/v1/snapshots: by name, with a build time and positions,
 * an unreadable one with its error, a build in progress left out. */
static void test_snapshot_list(void **state)
{
    qry_snap *s = NULL;
    json_t *l = NULL;
    char err[256], dir[512];
    (void)state;

    rm_rf("snapshots");
    assert_int_equal(qry_snap_new(tmpdir, MAP, &s), 0);
    assert_int_equal(qry_snap_list(s, &l, err, sizeof err), 0); /* no directory at all */
    assert_true(json_is_array(l) && json_array_size(l) == 0);
    json_decref(l);
    make_model("snapshots/b_2", "B");
    make_model("snapshots/a_1", "A");
    make_model("snapshots/c.building", "C");
    snprintf(dir, sizeof dir, "%s/snapshots/empty", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(qry_snap_list(s, &l, err, sizeof err), 0);
    assert_int_equal(json_array_size(l), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "name")), "a_1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 1), "name")), "b_2");
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 2), "name")), "empty");
    for (int i = 0; i < 2; i++) {
        json_t *it = json_array_get(l, (size_t)i);
        const char *t = json_string_value(json_object_get(it, "built_at"));
        assert_non_null(t);
        assert_true(strlen(t) > 20 && t[strlen(t) - 1] == 'Z');
        assert_true(json_is_object(json_object_get(it, "positions")));
        assert_null(json_object_get(it, "error"));
    }
    assert_null(json_object_get(json_array_get(l, 2), "positions"));
    assert_true(json_is_string(json_object_get(json_array_get(l, 2), "error")));
    json_decref(l);
    qry_snap_free(s);
}

/* A model made before workflows and runs existed (no such databases) serves
 * resources as before and reads as having no workflows and no runs. */
static void test_model_without_documents(void **state)
{
    char dir[512], err[256], *text = NULL;
    qry_rm *rm;
    qry_rm_view *v;
    json_t *items = NULL;
    size_t len;
    int64_t version;
    int more = 1;
    (void)state;

    make_model("old", "before");
    path_of(dir, sizeof dir, "old");
    assert_int_equal(qry_rm_new(dir, MAP, 0, &rm), 0);
    assert_int_equal(qry_rm_acquire(rm, &v, err, sizeof err), 0);
    assert_int_equal(qry_rm_get_text(v, "x", &text, &len, &version, err, sizeof err), 0);
    free(text);
    assert_int_equal(
        qry_rm_doc_get(v, QRY_DOC_WORKFLOW, "x", &text, &len, &version, err, sizeof err),
        KQ_ENOTFOUND);
    assert_int_equal(qry_rm_doc_get(v, QRY_DOC_RUN, "x", &text, &len, &version, err, sizeof err),
                     KQ_ENOTFOUND);
    assert_int_equal(
        qry_rm_doc_list(v, QRY_DOC_RUN, 1, "wf", NULL, 10, &items, &more, err, sizeof err), 0);
    assert_int_equal(json_array_size(items), 0);
    assert_int_equal(more, 0);
    json_decref(items);
    qry_rm_release(v);
    qry_rm_free(rm);
    rm_rf("old");
}

static void test_names(void **state)
{
    char out[64];
    static const char *const good[] = {"a", "until_20261122t101500", "0_9",
                                       "abcdefghij"
                                       "abcdefghij"
                                       "abcdefghij"
                                       "ab"};
    static const char *const badn[] = {"",       "A",        "a-b",
                                       "a b",    "a.b",      "../x",
                                       "x;drop", "\xc3\xa9", "abcdefghijabcdefghijabcdefghijabc"};
    (void)state;

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_true(qry_snapshot_name_valid(good[i]));
    for (size_t i = 0; i < sizeof badn / sizeof badn[0]; i++)
        if (qry_snapshot_name_valid(badn[i]))
            fail_msg("'%s' accepted", badn[i]);
    assert_false(qry_snapshot_name_valid(NULL));
    assert_int_equal(qry_snapshot_schema("kcqrs", "s1", out, sizeof out), 0);
    assert_string_equal(out, "kcqrs_snap_s1");
    /* 40 + 6 + 32 bytes: over PostgreSQL's 63, which would be truncated silently */
    assert_int_equal(qry_snapshot_schema("abcdefghijabcdefghijabcdefghijabcdefghij",
                                         "abcdefghijabcdefghijabcdefghijab", out, sizeof out),
                     KQ_ERANGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),          cmocka_unit_test(test_exchange),
        cmocka_unit_test(test_gap_and_delete), cmocka_unit_test(test_strict),
        cmocka_unit_test(test_hammer),         cmocka_unit_test(test_snapshots),
        cmocka_unit_test(test_snapshot_list),  cmocka_unit_test(test_model_without_documents),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
