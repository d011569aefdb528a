/*
 * test_cmd_state.c — command-side state: decisions (201/409/404/412/no-op),
 * the batch overlay of group commit, idempotency decisions, applying events
 * from the log, consistency tokens, and the LMDB snapshot (round trip,
 * MDB_MAP_FULL with a tiny map, refusal of another topic's snapshot;
 * incremental snapshots through the snapshot thread: only the changes,
 * full deltas replacing a stale snapshot, recovery after a failed write).
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

#include "cmd_api.h"
#include "cmd_snapshot.h"
#include "cmd_state.h"
#include "kq_err.h"

#include <lmdb.h>

/* Chain heads for snapshot loads (enough for every partition count here). */
static cmd_head hb[CMD_TOPICS * 16];

/* The three topics' names (resource, workflow, run) of the snapshots here. */
static const char *const TOPICS[CMD_TOPICS] = {"t", "t.wf", "t.run"};
static const char *const OTHER[CMD_TOPICS] = {"other", "other.wf", "other.run"};

/* ------------------------------------------------------------ helpers */

static cmd_command mk(cmd_kind kind, const char *id, const char *name, const char *key)
{
    cmd_command c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    snprintf(c.id, sizeof c.id, "%s", id);
    if (name != NULL) {
        c.fields |= CMD_F_NAME;
        c.name = strdup(name);
    }
    if (kind == CMD_CREATE && c.description == NULL)
        c.description = strdup("");
    if (key != NULL) {
        snprintf(c.idem_key, sizeof c.idem_key, "%s", key);
        cmd_api_command_hash("X", id, name ? name : "", name ? strlen(name) : 0, c.hash);
    }
    return c;
}

/* Decide and, for APPEND, apply as if committed at `offset` of partition 0. */
static cmd_decision decide_commit(cmd_state *st, cmd_command *c, int64_t offset)
{
    cmd_batch b;
    cmd_decision d;
    cmd_event ev;
    char err[256];

    assert_int_equal(cmd_batch_init(&b), 0);
    assert_int_equal(cmd_batch_decide(st, &b, c, 0, &d), 0);
    if (d.kind == CMD_D_APPEND) {
        cmd_command_event(c, &d, 0, offset, &ev);
        assert_int_equal(cmd_state_apply(st, &ev, err, sizeof err), 0);
    }
    cmd_batch_free(&b);
    return d;
}

/* ------------------------------------------------------------ decisions */

static void test_create_update_delete(void **state)
{
    cmd_state st;
    cmd_command c;
    cmd_decision d;
    const cmd_resource *r;

    (void)state;
    assert_int_equal(cmd_state_init(&st, 6), 0);
    c = mk(CMD_CREATE, "r1", "one", NULL);
    d = decide_commit(&st, &c, 10);
    assert_int_equal(d.kind, CMD_D_APPEND);
    assert_int_equal(d.event, EV_RESOURCE_CREATED);
    assert_int_equal(d.version, 1);
    cmd_command_clear(&c);

    /* create again: 409 with the current version */
    c = mk(CMD_CREATE, "r1", "again", NULL);
    d = decide_commit(&st, &c, 11);
    assert_int_equal(d.kind, CMD_D_ERROR);
    assert_int_equal(d.status, 409);
    assert_int_equal(d.current_version, 1);
    cmd_command_clear(&c);

    /* update with a stale If-Match: 412 carrying version 1 */
    c = mk(CMD_UPDATE, "r1", "two", NULL);
    c.has_if_match = 1;
    c.if_match = 7;
    d = decide_commit(&st, &c, 11);
    assert_int_equal(d.kind, CMD_D_ERROR);
    assert_int_equal(d.status, 412);
    assert_int_equal(d.current_version, 1);
    /* right If-Match: version 2, only the name changed */
    c.if_match = 1;
    d = decide_commit(&st, &c, 11);
    assert_int_equal(d.kind, CMD_D_APPEND);
    assert_int_equal(d.event, EV_RESOURCE_UPDATED);
    assert_int_equal(d.version, 2);
    assert_int_equal(d.changed, CMD_F_NAME);
    r = cmd_state_resource(&st, "r1");
    assert_non_null(r);
    assert_string_equal(r->name, "two");
    assert_int_equal(r->offset, 11);
    /* same name again: no-op, no event */
    c.has_if_match = 0;
    d = decide_commit(&st, &c, 12);
    assert_int_equal(d.kind, CMD_D_NOOP);
    assert_int_equal(d.version, 2);
    cmd_command_clear(&c);

    /* unknown id: 404 for update and delete */
    c = mk(CMD_UPDATE, "nope", "x", NULL);
    d = decide_commit(&st, &c, 12);
    assert_int_equal(d.status, 404);
    c.kind = CMD_DELETE;
    d = decide_commit(&st, &c, 12);
    assert_int_equal(d.status, 404);
    cmd_command_clear(&c);

    /* delete, then everything is 404 (update/delete) or 409 (create) */
    c = mk(CMD_DELETE, "r1", NULL, NULL);
    d = decide_commit(&st, &c, 12);
    assert_int_equal(d.kind, CMD_D_APPEND);
    assert_int_equal(d.event, EV_RESOURCE_DELETED);
    assert_int_equal(d.version, 3);
    d = decide_commit(&st, &c, 13);
    assert_int_equal(d.status, 404);
    cmd_command_clear(&c);
    c = mk(CMD_UPDATE, "r1", "zombie", NULL);
    d = decide_commit(&st, &c, 13);
    assert_int_equal(d.status, 404);
    cmd_command_clear(&c);
    c = mk(CMD_CREATE, "r1", "reborn", NULL);
    d = decide_commit(&st, &c, 13);
    assert_int_equal(d.status, 409);
    assert_int_equal(d.current_version, 3);
    cmd_command_clear(&c);
    assert_int_equal(st.next_offset[0], 13);
    assert_int_equal(st.events, 3);
    cmd_state_free(&st);
}

/* Group commit: later commands of a batch see the earlier ones' pending events;
 * nothing reaches the state until the batch is applied. */
static void test_batch_overlay(void **state)
{
    cmd_state st;
    cmd_batch b;
    cmd_command c[5];
    cmd_decision d[5];

    (void)state;
    assert_int_equal(cmd_state_init(&st, 6), 0);
    assert_int_equal(cmd_batch_init(&b), 0);
    c[0] = mk(CMD_CREATE, "a", "n0", NULL);
    c[1] = mk(CMD_CREATE, "a", "n1", NULL);
    c[2] = mk(CMD_UPDATE, "a", "n2", NULL);
    c[3] = mk(CMD_UPDATE, "a", "n3", NULL);
    c[4] = mk(CMD_UPDATE, "a", "n4", NULL);
    c[4].has_if_match = 1;
    c[4].if_match = 2; /* stale: the batch has reached 3 */
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(cmd_batch_decide(&st, &b, &c[i], i, &d[i]), 0);
    assert_int_equal(d[0].kind, CMD_D_APPEND);
    assert_int_equal(d[0].version, 1);
    assert_int_equal(d[1].status, 409); /* one 201, one 409 */
    assert_true(d[1].pending);
    assert_int_equal(d[2].version, 2);
    assert_int_equal(d[3].version, 3);
    assert_int_equal(d[4].status, 412);
    assert_int_equal(d[4].current_version, 3);
    /* the committed state is untouched until the batch is applied */
    assert_null(cmd_state_resource(&st, "a"));
    /* abort: forget the overlay; the same create is accepted again */
    cmd_batch_reset(&b);
    assert_int_equal(cmd_batch_decide(&st, &b, &c[1], 0, &d[1]), 0);
    assert_int_equal(d[1].kind, CMD_D_APPEND);
    assert_int_equal(d[1].version, 1);
    for (size_t i = 0; i < 5; i++)
        cmd_command_clear(&c[i]);
    cmd_batch_free(&b);
    cmd_state_free(&st);
}

static void test_idempotency(void **state)
{
    cmd_state st;
    cmd_batch b;
    cmd_command c, same, other, again;
    cmd_decision d, d2;

    (void)state;
    assert_int_equal(cmd_state_init(&st, 6), 0);
    c = mk(CMD_CREATE, "k1", "x", "key-1");
    d = decide_commit(&st, &c, 5);
    assert_int_equal(d.kind, CMD_D_APPEND);
    assert_non_null(cmd_state_idem(&st, "key-1"));

    /* same key, same request: the original answer, nothing appended */
    same = mk(CMD_CREATE, "k1", "x", "key-1");
    d = decide_commit(&st, &same, 6);
    assert_int_equal(d.kind, CMD_D_REPLAY);
    assert_int_equal(d.idem.status, 201);
    assert_string_equal(d.idem.id, "k1");
    assert_int_equal(d.idem.version, 1);
    assert_int_equal(d.idem.offset, 5);
    assert_int_equal(st.events, 1);

    /* same key, another request: 422 */
    other = mk(CMD_CREATE, "k1", "y", "key-1");
    d = decide_commit(&st, &other, 6);
    assert_int_equal(d.kind, CMD_D_ERROR);
    assert_int_equal(d.status, 422);

    /* one key twice in one batch: the second follows the first; with
     * another request it is 422 */
    assert_int_equal(cmd_batch_init(&b), 0);
    again = mk(CMD_UPDATE, "k1", "z", "key-2");
    assert_int_equal(cmd_batch_decide(&st, &b, &again, 0, &d), 0);
    assert_int_equal(d.kind, CMD_D_APPEND);
    assert_int_equal(cmd_batch_decide(&st, &b, &again, 1, &d2), 0);
    assert_int_equal(d2.kind, CMD_D_FOLLOW);
    assert_int_equal(d2.follow, 0);
    assert_int_equal(cmd_batch_decide(&st, &b, &other, 2, &d2), 0);
    assert_int_equal(d2.status, 422); /* key-1 of the state, another request */
    cmd_command_clear(&other);
    other = mk(CMD_UPDATE, "k1", "w", "key-2");
    assert_int_equal(cmd_batch_decide(&st, &b, &other, 3, &d2), 0);
    assert_int_equal(d2.status, 422);

    /* an event read from the log without command_hash answers any retry */
    {
        cmd_event ev;
        char err[128];
        memset(&ev, 0, sizeof ev);
        ev.type = EV_RESOURCE_CREATED;
        ev.id = "old";
        ev.version = 1;
        ev.name = "n";
        ev.command_id = "legacy";
        ev.partition = 2;
        ev.offset = 40;
        assert_int_equal(cmd_state_apply(&st, &ev, err, sizeof err), 0);
        cmd_command_clear(&other);
        other = mk(CMD_CREATE, "old", "different", "legacy");
        d = decide_commit(&st, &other, 41);
        assert_int_equal(d.kind, CMD_D_REPLAY);
        assert_int_equal(d.idem.partition, 2);
    }
    cmd_command_clear(&c);
    cmd_command_clear(&same);
    cmd_command_clear(&other);
    cmd_command_clear(&again);
    cmd_batch_free(&b);
    cmd_state_free(&st);
}

/* Events read back from the log: duplicates skipped, gaps refused. */
static void test_apply_from_log(void **state)
{
    cmd_state st;
    cmd_event ev;
    char err[256];

    (void)state;
    assert_int_equal(cmd_state_init(&st, 3), 0);
    memset(&ev, 0, sizeof ev);
    ev.type = EV_RESOURCE_CREATED;
    ev.id = "x";
    ev.version = 1;
    ev.name = "n";
    ev.has_status = 1;
    ev.status = EV_STATUS_INACTIVE;
    ev.partition = 1;
    ev.offset = 0;
    assert_int_equal(cmd_state_apply(&st, &ev, err, sizeof err), 0);
    assert_int_equal(cmd_state_apply(&st, &ev, err, sizeof err), 1); /* seen */
    ev.type = EV_RESOURCE_UPDATED;
    ev.version = 3;
    ev.offset = 1;
    assert_int_equal(cmd_state_apply(&st, &ev, err, sizeof err), KQ_ECORRUPT);
    assert_non_null(strstr(err, "gap"));
    ev.version = 2;
    ev.name = NULL;
    ev.description = "d";
    ev.has_status = 0;
    assert_int_equal(cmd_state_apply(&st, &ev, err, sizeof err), 0);
    assert_string_equal(cmd_state_resource(&st, "x")->name, "n");
    assert_string_equal(cmd_state_resource(&st, "x")->description, "d");
    assert_int_equal(cmd_state_resource(&st, "x")->status, EV_STATUS_INACTIVE);
    ev.id = "ghost";
    ev.version = 2;
    assert_int_equal(cmd_state_apply(&st, &ev, err, sizeof err), KQ_ECORRUPT);
    assert_int_equal(st.next_offset[1], 2);
    cmd_state_free(&st);
}

/* ------------------------------------------------------------ tokens and headers */

static void test_token(void **state)
{
    char tok[CMD_TOKEN_MAX], topic[256];
    int32_t p;
    int64_t o;
    int n;

    (void)state;
    n = cmd_token_encode("kcqrs.resource.events", 5, 1234567, tok, sizeof tok);
    assert_true(n > 3);
    assert_int_equal(strncmp(tok, "v1.", 3), 0);
    assert_null(strpbrk(tok + 3, "+/=:"));
    assert_int_equal(cmd_token_parse(tok, topic, sizeof topic, &p, &o), 0);
    assert_string_equal(topic, "kcqrs.resource.events");
    assert_int_equal(p, 5);
    assert_int_equal(o, 1234567);
    /* every length modulo 3 round-trips */
    for (int64_t off = 0; off < 1000; off += 7) {
        cmd_token_encode("t", 0, off, tok, sizeof tok);
        assert_int_equal(cmd_token_parse(tok, topic, sizeof topic, &p, &o), 0);
        assert_int_equal(o, off);
    }
    assert_int_equal(cmd_token_parse("v2.abc", topic, sizeof topic, &p, &o), KQ_EINVAL);
    assert_int_equal(cmd_token_parse("v1.", topic, sizeof topic, &p, &o), KQ_EINVAL);
    assert_int_equal(cmd_token_parse("v1.!!!!", topic, sizeof topic, &p, &o), KQ_EINVAL);
    assert_int_equal(cmd_token_parse("v1.dDE6MTp4", topic, sizeof topic, &p, &o),
                     KQ_EINVAL); /* "t1:1:x" */
    assert_int_equal(cmd_token_parse("v1.dDE6MQ", topic, sizeof topic, &p, &o),
                     KQ_EINVAL); /* "t1:1" */
    assert_int_equal(cmd_token_encode("t", 1, 2, tok, 5), KQ_ERANGE);
}

static void test_headers(void **state)
{
    int any;
    int64_t v = 0;
    uint8_t h1[CMD_HASH_LEN], h2[CMD_HASH_LEN];
    char u[37];

    (void)state;
    assert_int_equal(cmd_api_parse_if_match("\"12\"", &any, &v), 0);
    assert_int_equal(v, 12);
    assert_int_equal(any, 0);
    assert_int_equal(cmd_api_parse_if_match("*", &any, &v), 0);
    assert_int_equal(any, 1);
    assert_int_equal(cmd_api_parse_if_match("12", &any, &v), KQ_EINVAL);
    assert_int_equal(cmd_api_parse_if_match("\"0\"", &any, &v), KQ_EINVAL);
    assert_int_equal(cmd_api_parse_if_match("\"\"", &any, &v), KQ_EINVAL);
    assert_int_equal(cmd_api_parse_if_match("W/\"1\"", &any, &v), KQ_EINVAL);
    assert_int_equal(cmd_api_parse_if_match("\"1\"x", &any, &v), KQ_EINVAL);
    assert_int_equal(cmd_api_parse_if_match("\"99999999999999999999\"", &any, &v), KQ_EINVAL);
    assert_true(cmd_api_header_token_ok("abc-123"));
    assert_false(cmd_api_header_token_ok(""));
    assert_false(cmd_api_header_token_ok("a b"));
    /* the hash separates method, path and body */
    cmd_api_command_hash("POST", "/a", "b", 1, h1);
    cmd_api_command_hash("POST", "/ab", "", 0, h2);
    assert_memory_not_equal(h1, h2, CMD_HASH_LEN);
    cmd_api_uuid(u);
    assert_int_equal(strlen(u), 36);
    assert_int_equal(u[14], '4');
}

/* ------------------------------------------------------------ snapshot */

static char *tmpdir(void)
{
    char *d = strdup("/tmp/test_cmd_snapXXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rmdir_all(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

static void test_snapshot_roundtrip(void **state)
{
    cmd_state st, back;
    cmd_command c;
    char *dir = tmpdir(), sub[512], err[512];
    const cmd_resource *r;
    const cmd_idem *i;

    (void)state;
    snprintf(sub, sizeof sub, "%s/a/commands", dir);
    assert_int_equal(cmd_state_init(&st, 4), 0);
    assert_int_equal(cmd_snapshot_load(sub, 1 << 20, &st, hb, TOPICS, err, sizeof err),
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
        memset(hb, 0xee, sizeof hb);
        assert_int_equal(cmd_state_init(&back, 4), 0);
        if (cmd_snapshot_load(sub, 1 << 24, &back, hb, TOPICS, err, sizeof err) != 0)
            fail_msg("%s", err);
        assert_memory_equal(hb, heads, sizeof heads); /* the heads round-trip */
        cmd_state_free(&back);
    }

    assert_int_equal(cmd_state_init(&back, 4), 0);
    if (cmd_snapshot_load(sub, 1 << 24, &back, hb, TOPICS, err, sizeof err) != 0)
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
    assert_int_equal(cmd_snapshot_load(sub, 1 << 24, &back, hb, OTHER, err, sizeof err),
                     KQ_ECORRUPT);
    cmd_state_free(&back);
    assert_int_equal(cmd_state_init(&back, 5), 0);
    assert_int_equal(cmd_snapshot_load(sub, 1 << 24, &back, hb, TOPICS, err, sizeof err),
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
    assert_int_equal(cmd_snapshot_load(sub, 1 << 24, &back, hb, TOPICS, err, sizeof err),
                     KQ_ECORRUPT);
    assert_non_null(strstr(err, "chain heads"));
    cmd_state_free(&back);

    cmd_state_free(&st);
    rmdir_all(dir);
    free(dir);
}

/* A map too small for the state: MDB_MAP_FULL is an error naming the cause,
 * and the previous snapshot stays readable. */
static void test_snapshot_map_full(void **state)
{
    cmd_state st, back;
    cmd_command c;
    char *dir = tmpdir(), err[512];
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
    assert_int_equal(cmd_snapshot_load(dir, small, &back, hb, TOPICS, err, sizeof err), 0);
    assert_int_equal(cmd_state_resource_count(&back), 1);
    cmd_state_free(&back);
    cmd_state_free(&st);
    rmdir_all(dir);
    free(dir);
}

/* Every resource and key of `a` is in `b` with the same contents. */
static void assert_same_state(const cmd_state *a, const cmd_state *b);

typedef struct cmp_ctx {
    const cmd_state *other;
} cmp_ctx;

static int cmp_res(void *arg, const char *id, const cmd_resource *r)
{
    const cmd_resource *o = cmd_state_resource(((cmp_ctx *)arg)->other, id);
    if (o == NULL)
        fail_msg("resource %s missing", id);
    assert_int_equal(o->version, r->version);
    assert_int_equal(o->deleted, r->deleted);
    assert_int_equal(o->offset, r->offset);
    assert_int_equal(o->partition, r->partition);
    assert_int_equal(o->status, r->status);
    assert_string_equal(o->name, r->name);
    assert_string_equal(o->description, r->description);
    return 0;
}

static int cmp_idem(void *arg, const char *key, const cmd_idem *i)
{
    const cmd_idem *o = cmd_state_idem(((cmp_ctx *)arg)->other, key);
    if (o == NULL)
        fail_msg("key %s missing", key);
    assert_memory_equal(o, i, sizeof *i);
    return 0;
}

static void assert_same_state(const cmd_state *a, const cmd_state *b)
{
    cmp_ctx c = {b};
    assert_int_equal(cmd_state_resource_count(a), cmd_state_resource_count(b));
    assert_int_equal(cmd_state_idem_count(a), cmd_state_idem_count(b));
    assert_int_equal(a->partitions, b->partitions);
    assert_memory_equal(a->next_offset, b->next_offset,
                        (size_t)CMD_TOPICS * (size_t)a->partitions * sizeof(int64_t));
    assert_int_equal(a->events, b->events);
    assert_string_equal(a->cluster_id, b->cluster_id);
    cmd_state_each_resource(a, cmp_res, &c);
    cmd_state_each_idem(a, cmp_idem, &c);
}

static void load_into(const char *dir, size_t map, cmd_state *back, int partitions)
{
    char err[512];
    assert_int_equal(cmd_state_init(back, partitions), 0);
    if (cmd_snapshot_load(dir, map, back, hb, TOPICS, err, sizeof err) != 0)
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
    char *dir = tmpdir(), err[512];
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
    assert_same_state(&st, &back);
    cmd_state_free(&back);

    /* nothing changed: an empty hand-over still moves the offsets */
    assert_int_equal(cmd_snapshotter_new(dir, 1 << 24, TOPICS, &sn, err, sizeof err), 0);
    st.next_offset[1] = 5;
    assert_int_equal(cmd_snapshotter_submit(sn, &st, NULL, &full), 0);
    assert_int_equal(cmd_snapshotter_flush(sn, err, sizeof err), 0);
    cmd_snapshotter_free(sn);
    load_into(dir, 1 << 24, &back, 3);
    assert_same_state(&st, &back);
    cmd_state_free(&back);

    /* cmd_state_delta_full rebuilds the whole state */
    assert_int_equal(cmd_state_delta_full(&st), 0);
    assert_int_equal(st.delta.full, 1);
    assert_int_equal(st.delta.records, cmd_state_resource_count(&st) + cmd_state_idem_count(&st));
    cmd_state_free(&st);
    rmdir_all(dir);
    free(dir);
}

/* A failed write (map full) keeps the previous snapshot, drops the
 * incremental deltas that build on it, and the next hand-over is full. */
static void test_snapshot_incremental_failure(void **state)
{
    cmd_state st, back;
    cmd_command c;
    cmd_snapshotter *sn;
    char *dir = tmpdir(), err[512], big[4097];
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
    assert_same_state(&st, &back);
    assert_null(cmd_state_resource(&back, "first")); /* replaced, not merged */
    cmd_state_free(&back);
    cmd_state_free(&st);
    rmdir_all(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_update_delete),
        cmocka_unit_test(test_batch_overlay),
        cmocka_unit_test(test_idempotency),
        cmocka_unit_test(test_apply_from_log),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_snapshot_roundtrip),
        cmocka_unit_test(test_snapshot_map_full),
        cmocka_unit_test(test_snapshot_incremental),
        cmocka_unit_test(test_snapshot_incremental_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
