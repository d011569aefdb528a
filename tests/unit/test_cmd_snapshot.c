/*
 * test_cmd_snapshot.c — the command-side snapshot (cmd_snapshot.c, records
 * by cmd_delta.h and the aggregate types' put/load hooks): the LMDB round
 * trip of resources, workflows, runs, keys, offsets and chain heads;
 * MDB_MAP_FULL with a tiny map; refusal of another topic's, another
 * partition count's, a headless (v2) or a v3 snapshot; incremental snapshots
 * through the snapshot thread (only the changes, full deltas replacing a
 * stale snapshot, recovery after a failed write); a run record written
 * before the run fold (flags 0) stays readable; a workflow's secret is in
 * the file only sealed, a plain record (before sealing) still loads. cmd_snapshot_save writes
 * the records cmd_state_delta_full makes, through the snapshot thread's
 * write: every test here exercises the one record encoder.
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

#include "cmd_snapshot.h"
#include "cmd_state.h"
#include "kq_err.h"
#include "test_cmd_fixture.h"

/* Chain heads for snapshot loads (enough for every partition count here). */
static cmd_head g_heads[CMD_TOPICS * 16];

/* The three topics' names (resource, workflow, run) of the snapshots here. */
static const char *const TOPICS[CMD_TOPICS] = {"t", "t.wf", "t.run"};
static const char *const OTHER[CMD_TOPICS] = {"other", "other.wf", "other.run"};

#define mk fx_res

/* Decide and, for APPEND, commit at `offset` of partition 0. */
static cmd_decision decide_commit(cmd_state *st, cmd_command *c, int64_t offset)
{
    return fx_decide_commit(st, c, &offset);
}

static void test_snapshot_roundtrip(void **state)
{
    cmd_state st, back;
    cmd_command c;
    char *dir = fx_tmpdir(), sub[512], err[512];
    const cmd_resource *r;
    const cmd_idem *i;

    (void)state;
    snprintf(sub, sizeof sub, "%s/a/commands", dir);
    assert_int_equal(cmd_state_init(&st, 4), 0);
    assert_int_equal(cmd_snapshot_load(sub, 1 << 20, &st, g_heads, TOPICS, err, sizeof err),
                     KQ_ENOTFOUND);
    for (int k = 0; k < 300; k++) {
        char id[16];
        snprintf(id, sizeof id, "r%d", k);
        c = mk(CMD_CREATE, id, "name", k % 3 == 0 ? id : NULL);
        decide_commit(&st, &c, k);
        cmd_command_clear(&c);
    }
    c = mk(CMD_DELETE, "r7", NULL, NULL);
    decide_commit(&st, &c, 300);
    cmd_command_clear(&c);
    st.next_offset[3] = 77;
    {
        cmd_head heads[CMD_TOPICS * 4];
        memset(heads, 0, sizeof heads);
        heads[3].set = 1;
        heads[CMD_TOPIC_RUN * 4 + 1].set = 1;
        for (int b = 0; b < CMD_CHAIN_HASH_LEN; b++) {
            heads[3].hash[b] = (uint8_t)(b * 7 + 1);
            heads[CMD_TOPIC_RUN * 4 + 1].hash[b] = (uint8_t)(b * 3 + 2);
        }
        assert_int_equal(cmd_snapshot_save(sub, 1 << 24, &st, heads, TOPICS, err, sizeof err), 0);
        memset(g_heads, 0xee, sizeof g_heads);
        assert_int_equal(cmd_state_init(&back, 4), 0);
        if (cmd_snapshot_load(sub, 1 << 24, &back, g_heads, TOPICS, err, sizeof err) != 0)
            fail_msg("%s", err);
        assert_memory_equal(g_heads, heads, sizeof heads); /* the heads round-trip */
        cmd_state_free(&back);
    }

    assert_int_equal(cmd_state_init(&back, 4), 0);
    if (cmd_snapshot_load(sub, 1 << 24, &back, g_heads, TOPICS, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(cmd_state_resource_count(&back), 300);
    assert_int_equal(cmd_state_idem_count(&back), 100);
    assert_int_equal(back.events, st.events);
    assert_memory_equal(back.next_offset, st.next_offset, 4 * sizeof(int64_t));
    r = cmd_state_resource(&back, "r7");
    assert_non_null(r);
    assert_int_equal(r->version, 2);
    assert_true(r->deleted);
    assert_string_equal(r->name, "name");
    assert_string_equal(r->description, "");
    i = cmd_state_idem(&back, "r3");
    assert_non_null(i);
    assert_memory_equal(i->hash, cmd_state_idem(&st, "r3")->hash, CMD_HASH_LEN);
    assert_int_equal(i->offset, 3);
    cmd_state_free(&back);

    /* another topic or partition count: refused */
    assert_int_equal(cmd_state_init(&back, 4), 0);
    assert_int_equal(cmd_snapshot_load(sub, 1 << 24, &back, g_heads, OTHER, err, sizeof err),
                     KQ_ECORRUPT);
    cmd_state_free(&back);
    assert_int_equal(cmd_state_init(&back, 5), 0);
    assert_int_equal(cmd_snapshot_load(sub, 1 << 24, &back, g_heads, TOPICS, err, sizeof err),
                     KQ_ECORRUPT);
    cmd_state_free(&back);

    /* without the chain heads (what a v2 writer left, or damage): refused */
    {
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        MDB_val k = {3, (void *)"h/t"};
        assert_int_equal(mdb_env_create(&env), 0);
        assert_int_equal(mdb_env_set_mapsize(env, 1 << 24), 0);
        assert_int_equal(mdb_env_open(env, sub, 0, 0600), 0);
        assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
        assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
        assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
        assert_int_equal(mdb_txn_commit(txn), 0);
        mdb_env_close(env);
    }
    assert_int_equal(cmd_state_init(&back, 4), 0);
    assert_int_equal(cmd_snapshot_load(sub, 1 << 24, &back, g_heads, TOPICS, err, sizeof err),
                     KQ_ECORRUPT);
    assert_non_null(strstr(err, "chain heads"));
    cmd_state_free(&back);

    cmd_state_free(&st);
    fx_rmdir_all(dir);
    free(dir);
}

/* A map too small for the state: MDB_MAP_FULL is an error naming the cause,
 * and the previous snapshot stays readable. */
static void test_snapshot_map_full(void **state)
{
    cmd_state st, back;
    cmd_command c;
    char *dir = fx_tmpdir(), err[512];
    size_t small = 64 * 1024;
    char big[4097];

    (void)state;
    assert_int_equal(cmd_state_init(&st, 2), 0);
    c = mk(CMD_CREATE, "first", "n", NULL);
    decide_commit(&st, &c, 0);
    cmd_command_clear(&c);
    assert_int_equal(cmd_snapshot_save(dir, small, &st, NULL, TOPICS, err, sizeof err), 0);
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int k = 0; k < 200; k++) {
        char id[16];
        snprintf(id, sizeof id, "b%d", k);
        c = mk(CMD_CREATE, id, "n", NULL);
        free(c.description);
        c.description = strdup(big);
        decide_commit(&st, &c, k + 1);
        cmd_command_clear(&c);
    }
    assert_int_equal(cmd_snapshot_save(dir, small, &st, NULL, TOPICS, err, sizeof err), KQ_ELMDB);
    assert_non_null(strstr(err, "map"));
    assert_int_equal(cmd_state_init(&back, 2), 0);
    assert_int_equal(cmd_snapshot_load(dir, small, &back, g_heads, TOPICS, err, sizeof err), 0);
    assert_int_equal(cmd_state_resource_count(&back), 1);
    cmd_state_free(&back);
    cmd_state_free(&st);
    fx_rmdir_all(dir);
    free(dir);
}

static void load_into(const char *dir, size_t map, cmd_state *back, int partitions)
{
    char err[512];
    assert_int_equal(cmd_state_init(back, partitions), 0);
    if (cmd_snapshot_load(dir, map, back, g_heads, TOPICS, err, sizeof err) != 0)
        fail_msg("%s", err);
}

/* The delta holds exactly the changes since it was last taken; handed to the
 * snapshot thread in pieces it builds the same snapshot as a full save. A full
 * delta replaces a snapshot of another state. */
static void test_snapshot_incremental(void **state)
{
    cmd_state st, back;
    cmd_command c;
    cmd_snapshotter *sn;
    char *dir = fx_tmpdir(), err[512];
    int full = -1;
    size_t recs;

    (void)state;
    /* a stale snapshot of another state */
    assert_int_equal(cmd_state_init(&st, 3), 0);
    c = mk(CMD_CREATE, "stale", "s", "stale-key");
    decide_commit(&st, &c, 0);
    cmd_command_clear(&c);
    assert_int_equal(cmd_snapshot_save(dir, 1 << 24, &st, NULL, TOPICS, err, sizeof err), 0);
    cmd_state_free(&st);

    assert_int_equal(cmd_state_init(&st, 3), 0);
    assert_int_equal(st.delta.full, 1);
    cmd_state_track(&st, 1);
    snprintf(st.cluster_id, sizeof st.cluster_id, "cluster-1");
    for (int k = 0; k < 50; k++) {
        char id[16];
        snprintf(id, sizeof id, "r%d", k);
        c = mk(CMD_CREATE, id, "name", k % 2 == 0 ? id : NULL);
        decide_commit(&st, &c, k);
        cmd_command_clear(&c);
    }
    assert_int_equal(st.delta.records, 75); /* 50 resources + 25 keys */
    assert_int_equal(cmd_snapshotter_new(dir, 1 << 24, TOPICS, &sn, err, sizeof err), 0);
    assert_int_equal(cmd_snapshotter_submit(sn, &st, NULL, &full), 0);
    assert_int_equal(full, 1);
    assert_int_equal(st.delta.len, 0);
    assert_int_equal(st.delta.full, 0);
    /* changes after the hand-over: only they go into the next delta */
    c = mk(CMD_UPDATE, "r3", "renamed", NULL);
    decide_commit(&st, &c, 50);
    cmd_command_clear(&c);
    c = mk(CMD_DELETE, "r4", NULL, NULL);
    decide_commit(&st, &c, 51);
    cmd_command_clear(&c);
    c = mk(CMD_UPDATE, "r3", "again", "upd-key");
    decide_commit(&st, &c, 52);
    cmd_command_clear(&c);
    st.next_offset[2] = 9;
    recs = st.delta.records;
    assert_int_equal(recs, 4); /* r3, r4, r3 + upd-key */
    assert_int_equal(cmd_snapshotter_submit(sn, &st, NULL, &full), 0);
    assert_int_equal(full, 0);
    if (cmd_snapshotter_flush(sn, err, sizeof err) != 0)
        fail_msg("%s", err);
    {
        cmd_snapshot_stats ss;
        cmd_snapshotter_stats(sn, &ss);
        assert_true(ss.written >= 1 && ss.written <= 2); /* the second may merge into the first */
        assert_int_equal(ss.records, 75 + 4);
        assert_int_equal(ss.failures, 0);
    }
    cmd_snapshotter_free(sn);

    load_into(dir, 1 << 24, &back, 3);
    assert_null(cmd_state_resource(&back, "stale"));
    assert_null(cmd_state_idem(&back, "stale-key"));
    assert_string_equal(cmd_state_resource(&back, "r3")->name, "again");
    assert_int_equal(cmd_state_resource(&back, "r3")->version, 3);
    assert_true(cmd_state_resource(&back, "r4")->deleted);
    fx_assert_same(&st, &back);
    cmd_state_free(&back);

    /* nothing changed: an empty hand-over still moves the offsets */
    assert_int_equal(cmd_snapshotter_new(dir, 1 << 24, TOPICS, &sn, err, sizeof err), 0);
    st.next_offset[1] = 5;
    assert_int_equal(cmd_snapshotter_submit(sn, &st, NULL, &full), 0);
    assert_int_equal(cmd_snapshotter_flush(sn, err, sizeof err), 0);
    cmd_snapshotter_free(sn);
    load_into(dir, 1 << 24, &back, 3);
    fx_assert_same(&st, &back);
    cmd_state_free(&back);

    /* cmd_state_delta_full rebuilds the whole state */
    assert_int_equal(cmd_state_delta_full(&st), 0);
    assert_int_equal(st.delta.full, 1);
    assert_int_equal(st.delta.records, cmd_state_resource_count(&st) + cmd_state_idem_count(&st));
    cmd_state_free(&st);
    fx_rmdir_all(dir);
    free(dir);
}

/* A failed write (map full) keeps the previous snapshot, drops the
 * incremental deltas that build on it, and the next hand-over is full. */
static void test_snapshot_incremental_failure(void **state)
{
    cmd_state st, back;
    cmd_command c;
    cmd_snapshotter *sn;
    char *dir = fx_tmpdir(), err[512], big[4097];
    size_t small = 64 * 1024;
    int full = -1;

    (void)state;
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(cmd_state_init(&st, 2), 0);
    cmd_state_track(&st, 1);
    c = mk(CMD_CREATE, "first", "n", NULL);
    decide_commit(&st, &c, 0);
    cmd_command_clear(&c);
    assert_int_equal(cmd_snapshotter_new(dir, small, TOPICS, &sn, err, sizeof err), 0);
    assert_int_equal(cmd_snapshotter_submit(sn, &st, NULL, &full), 0);
    assert_int_equal(cmd_snapshotter_flush(sn, err, sizeof err), 0);
    for (int k = 0; k < 200; k++) {
        char id[16];
        snprintf(id, sizeof id, "b%d", k);
        c = mk(CMD_CREATE, id, "n", NULL);
        free(c.description);
        c.description = strdup(big);
        decide_commit(&st, &c, k + 1);
        cmd_command_clear(&c);
    }
    assert_int_equal(cmd_snapshotter_submit(sn, &st, NULL, &full), 0);
    assert_int_equal(full, 0);
    assert_int_equal(cmd_snapshotter_flush(sn, err, sizeof err), KQ_ELMDB);
    assert_non_null(strstr(err, "map"));
    /* the previous snapshot is intact: one resource, its offsets */
    load_into(dir, small, &back, 2);
    assert_int_equal(cmd_state_resource_count(&back), 1);
    assert_int_equal(back.next_offset[0], 1);
    cmd_state_free(&back);
    /* the next hand-over is the whole state; the big resources are deleted
     * from the state here so it fits: it must still contain "first" */
    cmd_state_free(&st);
    assert_int_equal(cmd_state_init(&st, 2), 0);
    cmd_state_track(&st, 1);
    cmd_state_delta_clear(&st);
    c = mk(CMD_CREATE, "second", "n", NULL);
    decide_commit(&st, &c, 300);
    cmd_command_clear(&c);
    assert_int_equal(cmd_snapshotter_submit(sn, &st, NULL, &full), 0);
    assert_int_equal(full, 1);
    assert_int_equal(cmd_snapshotter_flush(sn, err, sizeof err), 0);
    cmd_snapshotter_free(sn);
    load_into(dir, small, &back, 2);
    fx_assert_same(&st, &back);
    assert_null(cmd_state_resource(&back, "first")); /* replaced, not merged */
    cmd_state_free(&back);
    cmd_state_free(&st);
    fx_rmdir_all(dir);
    free(dir);
}

/* 1 when the bytes of `text` are in file `path`. */
static int file_has(const char *path, const char *text)
{
    FILE *f = fopen(path, "rb");
    size_t n = strlen(text), len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    int found = 0;

    assert_non_null(f);
    assert_non_null(buf);
    for (size_t r; (r = fread(buf + len, 1, cap - len, f)) > 0;) {
        len += r;
        if (len == cap) {
            cap *= 2;
            assert_non_null(buf = realloc(buf, cap));
        }
    }
    fclose(f);
    for (size_t i = 0; i + n <= len && !found; i++)
        found = memcmp(buf + i, text, n) == 0;
    free(buf);
    return found;
}

/* A workflow's sealed copy is what the record holds (never the secret), and a
 * load keeps it sealed (no secret until the keys open it); a plain record
 * (flags 0, as every snapshot before sealing wrote) still loads its secret;
 * one whose secret could not be sealed is refused, and holds no secret either. */
static void test_snapshot_sealed_secret(void **state)
{
    cmd_state st, back;
    cmd_workflow *w;
    const cmd_workflow *b;
    char *dir = fx_tmpdir(), path[512], err[512];
    static const uint8_t sealed[] = "\x01NONCE-------SEALED-BYTES-HERE-TAG------------";
    int64_t off = 0;

    (void)state;
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    assert_int_equal(cmd_state_init(&st, 4), 0);
    fx_dc(&st, fx_wf_create("ws", "unit-sealed-secret-0123", 1), &off);
    fx_dc(&st, fx_wf_create("wp", "unit-plain-secret-4567", 1), &off);
    w = (cmd_workflow *)cmd_state_workflow(&st, "ws");
    assert_null(w->sealed); /* no keyring in this state: nothing sealed */
    assert_non_null(w->sealed = malloc(sizeof sealed));
    memcpy(w->sealed, sealed, sizeof sealed);
    w->sealed_len = sizeof sealed;
    assert_int_equal(cmd_snapshot_save(dir, 1 << 24, &st, NULL, TOPICS, err, sizeof err), 0);
    assert_false(file_has(path, "unit-sealed-secret-0123"));
    assert_true(file_has(path, "SEALED-BYTES-HERE")); /* the search finds what is there */
    assert_true(file_has(path, "unit-plain-secret-4567"));

    assert_int_equal(cmd_state_init(&back, 4), 0);
    if (cmd_snapshot_load(dir, 1 << 24, &back, g_heads, TOPICS, err, sizeof err) != 0)
        fail_msg("%s", err);
    b = cmd_state_workflow(&back, "ws");
    assert_null(b->secret);
    assert_int_equal(b->sealed_len, sizeof sealed);
    assert_memory_equal(b->sealed, sealed, sizeof sealed);
    assert_string_equal(cmd_state_workflow(&back, "wp")->secret, "unit-plain-secret-4567");
    assert_null(cmd_state_workflow(&back, "wp")->sealed);
    cmd_state_free(&back);

    /* not sealable: withheld, and the snapshot is refused (the log is read again) */
    free(w->sealed);
    w->sealed = NULL;
    w->sealed_len = 0;
    w->seal_failed = 1;
    fx_rmdir_all(dir);
    assert_int_equal(cmd_snapshot_save(dir, 1 << 24, &st, NULL, TOPICS, err, sizeof err), 0);
    assert_false(file_has(path, "unit-sealed-secret-0123"));
    assert_int_equal(cmd_state_init(&back, 4), 0);
    assert_int_equal(cmd_snapshot_load(dir, 1 << 24, &back, g_heads, TOPICS, err, sizeof err),
                     KQ_ECORRUPT);
    assert_non_null(strstr(err, "secret"));
    cmd_state_free(&back);

    cmd_state_free(&st);
    fx_rmdir_all(dir);
    free(dir);
}

static void test_snapshot_v4(void **state)
{
    cmd_state st, back;
    cmd_head heads[CMD_TOPICS * 4], hb[CMD_TOPICS * 4];
    char *dir = fx_tmpdir(), err[512];
    int64_t off = 0;

    (void)state;
    assert_int_equal(cmd_state_init(&st, 4), 0);
    fx_fill(&st, &off);
    st.next_offset[CMD_TOPIC_RESOURCE * 4 + 1] = 11;
    memset(heads, 0, sizeof heads);
    for (int t = 0; t < CMD_TOPICS; t++) {
        heads[t * 4 + t].set = 1;
        memset(heads[t * 4 + t].hash, 0x10 + t, CMD_CHAIN_HASH_LEN);
    }
    assert_int_equal(cmd_snapshot_save(dir, 1 << 24, &st, heads, TOPICS, err, sizeof err), 0);
    assert_int_equal(cmd_state_init(&back, 4), 0);
    memset(hb, 0xee, sizeof hb);
    if (cmd_snapshot_load(dir, 1 << 24, &back, hb, TOPICS, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_memory_equal(hb, heads, sizeof heads);
    fx_assert_same(&st, &back);
    assert_int_equal(cmd_state_workflow_count(&back), 3);
    assert_true(cmd_state_workflow(&back, "w3")->deleted);
    assert_false(cmd_state_workflow(&back, "w2")->enabled);
    assert_int_equal(cmd_state_run(&back, "r2")->status, CMD_RUN_FAILED);
    cmd_state_free(&back);

    /* the loaded state decides as the original: the recorded attempt is refused */
    assert_int_equal(cmd_state_init(&back, 4), 0);
    assert_int_equal(cmd_snapshot_load(dir, 1 << 24, &back, hb, TOPICS, err, sizeof err), 0);
    fx_expect_error(fx_dc(&back, fx_attempt("r1", 0, 1, CMD_OUT_RETRY), &off), 409,
                    "attempt_recorded");
    fx_expect_error(fx_dc(&back, fx_run_start("r9", "w1", "s2"), &off), 401,
                    "invalid_webhook_secret");
    cmd_state_free(&back);

    /* a v5 snapshot (resource names in plain text), a v4 one (no event times
     * of keys and runs) and a v3 one (resources only) are read as none */
    for (char was = '6', older = '5'; older >= '3'; was = older, older--) {
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        MDB_val k = {1, (void *)"m"}, v;
        char *m, magic[] = "kcqrs.commands.vN";
        assert_int_equal(mdb_env_create(&env), 0);
        assert_int_equal(mdb_env_set_mapsize(env, 1 << 24), 0);
        assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
        assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
        assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
        assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
        m = malloc(v.mv_size);
        memcpy(m, v.mv_data, v.mv_size);
        magic[16] = was;
        assert_memory_equal(m, magic, 18);
        m[16] = older;
        v.mv_data = m;
        assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
        assert_int_equal(mdb_txn_commit(txn), 0);
        mdb_env_close(env);
        free(m);
        assert_int_equal(cmd_state_init(&back, 4), 0);
        assert_int_equal(cmd_snapshot_load(dir, 1 << 24, &back, hb, TOPICS, err, sizeof err),
                         KQ_ECORRUPT);
        assert_non_null(strstr(err, "older format"));
        cmd_state_free(&back);
    }
    cmd_state_free(&st);
    fx_rmdir_all(dir);
    free(dir);
}

/* The snapshot thread writes 'w' and 'n' records of the delta; later changes
 * go in as increments, and the result loads as the state. */
static void test_snapshot_incremental_v4(void **state)
{
    cmd_state st, back;
    cmd_snapshotter *sn;
    cmd_head hb[CMD_TOPICS * 4];
    char *dir = fx_tmpdir(), err[512];
    int64_t off = 0;
    int full = 0;
    cmd_command c;

    (void)state;
    assert_int_equal(cmd_state_init(&st, 4), 0);
    cmd_state_track(&st, 1);
    fx_fill(&st, &off);
    assert_int_equal(cmd_snapshotter_new(dir, 1 << 24, TOPICS, &sn, err, sizeof err), 0);
    assert_int_equal(cmd_snapshotter_submit(sn, &st, NULL, &full), 0);
    assert_int_equal(full, 1);
    /* increments: an attempt, a rename, a new run */
    fx_dc(&st, fx_attempt("r1", 0, 2, CMD_OUT_SUCCEEDED), &off);
    c = fx_wf_cmd(CMD_WF_UPDATE, "w1");
    c.fields = CMD_F_NAME;
    c.name = strdup("later");
    fx_dc(&st, c, &off);
    fx_dc(&st, fx_run_start("r3", "w1", NULL), &off);
    {
        size_t pos = 0, kl, vl, nw = 0, nn = 0;
        char kind;
        const char *k;
        const void *v;
        while (cmd_delta_next(&st.delta, &pos, &kind, &k, &kl, &v, &vl) == 1) {
            nw += kind == 'w';
            nn += kind == 'n';
        }
        assert_int_equal(nw, 1);
        assert_int_equal(nn, 3); /* r1 twice (two events), r3 */
    }
    assert_int_equal(cmd_snapshotter_submit(sn, &st, NULL, &full), 0);
    assert_int_equal(full, 0);
    assert_int_equal(cmd_snapshotter_flush(sn, err, sizeof err), 0);
    cmd_snapshotter_free(sn);
    assert_int_equal(cmd_state_init(&back, 4), 0);
    if (cmd_snapshot_load(dir, 1 << 24, &back, hb, TOPICS, err, sizeof err) != 0)
        fail_msg("%s", err);
    fx_assert_same(&st, &back);
    assert_string_equal(cmd_state_workflow(&back, "w1")->name, "later");
    assert_int_equal(cmd_state_run(&back, "r1")->step, 1);
    cmd_state_free(&back);

    /* delta_full holds every workflow and run */
    assert_int_equal(cmd_state_delta_full(&st), 0);
    assert_int_equal(st.delta.records, cmd_state_resource_count(&st) + cmd_state_idem_count(&st) +
                                           cmd_state_workflow_count(&st) +
                                           cmd_state_run_count(&st));
    cmd_state_free(&st);
    fx_rmdir_all(dir);
    free(dir);
}

/* A run record as a writer before the run fold left it (flags 0) loads
 * and decides as it did. */
static void test_snapshot_old_run_record(void **state)
{
    cmd_state st, back;
    char *dir = fx_tmpdir(), err[512];
    int64_t off = 0;
    cmd_run r;

    (void)state;
    assert_int_equal(cmd_state_init(&st, 1), 0);
    fx_dc(&st, fx_wf_create("w1", "s", 2), &off);
    memset(&r, 0, sizeof r);
    r.version = 2;
    r.offset = 5;
    r.status = CMD_RUN_OPEN;
    r.step_count = 2;
    r.attempts = 1; /* one attempt of step 0 recorded */
    assert_int_equal(cmd_state_put_run(&st, "old", &r), 0);
    r.status = CMD_RUN_SUCCEEDED;
    r.version = 7;
    r.step = 2;
    r.attempts = 0;
    assert_int_equal(cmd_state_put_run(&st, "done", &r), 0);
    assert_int_equal(cmd_snapshot_save(dir, 1 << 24, &st, NULL, TOPICS, err, sizeof err), 0);
    assert_int_equal(cmd_state_init(&back, 1), 0);
    if (cmd_snapshot_load(dir, 1 << 24, &back, g_heads, TOPICS, err, sizeof err) != 0)
        fail_msg("%s", err);
    fx_assert_same(&st, &back);
    fx_expect_error(fx_dc(&back, fx_attempt("old", 0, 1, CMD_OUT_RETRY), &off), 409,
                    "attempt_recorded");
    fx_expect_error(fx_dc(&back, fx_attempt("done", 1, 1, CMD_OUT_RETRY), &off), 409,
                    "run_finished");
    assert_int_equal(fx_dc(&back, fx_attempt("old", 0, 2, CMD_OUT_SUCCEEDED), &off).kind,
                     CMD_D_APPEND);
    assert_int_equal(cmd_state_run(&back, "old")->step, 1);
    assert_int_equal(cmd_state_run(&back, "old")->version, 4);
    cmd_state_free(&back);
    cmd_state_free(&st);
    fx_rmdir_all(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_roundtrip),
        cmocka_unit_test(test_snapshot_map_full),
        cmocka_unit_test(test_snapshot_incremental),
        cmocka_unit_test(test_snapshot_incremental_failure),
        cmocka_unit_test(test_snapshot_v4),
        cmocka_unit_test(test_snapshot_incremental_v4),
        cmocka_unit_test(test_snapshot_old_run_record),
        cmocka_unit_test(test_snapshot_sealed_secret),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
