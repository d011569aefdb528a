/*
 * test_cmd_resource.c — the resource aggregate on the command side
 * (cmd_resource.c through cmd_aggregate.h): decisions (201/409/404/412/no-op),
 * the batch overlay of group commit, idempotency decisions, applying events
 * from the log; and the API helpers of its routes (If-Match, header tokens,
 * command hash, consistency tokens).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_api.h"
#include "cmd_state.h"
#include "kq_err.h"
#include "kq_token.h"
#include "test_cmd_fixture.h"

#define mk fx_res

/* Decide and, for APPEND, commit at `offset` of partition 0. */
static cmd_decision decide_commit(cmd_state *st, cmd_command *c, int64_t offset)
{
    return fx_decide_commit(st, c, &offset);
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
        ev_envelope e;
        char err[128];
        ev_envelope_init(&e, EV_RESOURCE_CREATED);
        e.aggregate_id = ev_str_c("old");
        e.version = 1;
        e.payload.resource_created.name = ev_str_c("n");
        e.command_id = ev_str_c("legacy");
        assert_int_equal(fx_apply_env(&st, CMD_TOPIC_RESOURCE, &e, 2, 40, err, sizeof err), 0);
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

/* Events read back from the log (from their bytes): duplicates skipped, gaps
 * refused, absent fields unchanged. */
static void test_apply_from_log(void **state)
{
    cmd_state st;
    ev_envelope e;
    char err[256];

    (void)state;
    assert_int_equal(cmd_state_init(&st, 3), 0);
    ev_envelope_init(&e, EV_RESOURCE_CREATED);
    e.aggregate_id = ev_str_c("x");
    e.version = 1;
    e.payload.resource_created.name = ev_str_c("n");
    e.payload.resource_created.status = EV_STATUS_INACTIVE;
    assert_int_equal(fx_apply_env(&st, CMD_TOPIC_RESOURCE, &e, 1, 0, err, sizeof err), 0);
    assert_int_equal(fx_apply_env(&st, CMD_TOPIC_RESOURCE, &e, 1, 0, err, sizeof err),
                     1); /* seen */
    ev_envelope_init(&e, EV_RESOURCE_UPDATED);
    e.aggregate_id = ev_str_c("x");
    e.version = 3;
    e.payload.resource_updated.name = ev_str_c("n");
    assert_int_equal(fx_apply_env(&st, CMD_TOPIC_RESOURCE, &e, 1, 1, err, sizeof err), KQ_ECORRUPT);
    assert_non_null(strstr(err, "gap"));
    ev_envelope_init(&e, EV_RESOURCE_UPDATED);
    e.aggregate_id = ev_str_c("x");
    e.version = 2;
    e.payload.resource_updated.description = ev_str_c("d");
    assert_int_equal(fx_apply_env(&st, CMD_TOPIC_RESOURCE, &e, 1, 1, err, sizeof err), 0);
    assert_string_equal(cmd_state_resource(&st, "x")->name, "n");
    assert_string_equal(cmd_state_resource(&st, "x")->description, "d");
    assert_int_equal(cmd_state_resource(&st, "x")->status, EV_STATUS_INACTIVE);
    e.aggregate_id = ev_str_c("ghost");
    assert_int_equal(fx_apply_env(&st, CMD_TOPIC_RESOURCE, &e, 1, 1, err, sizeof err), KQ_ECORRUPT);
    assert_int_equal(st.next_offset[1], 2);
    cmd_state_free(&st);
}

/* ------------------------------------------------------------ tokens and headers */

static void test_token(void **state)
{
    char tok[KQ_TOKEN_MAX], topic[256];
    int32_t p;
    int64_t o;
    int n;

    (void)state;
    n = kq_token_encode("kcqrs.resource.events", 5, 1234567, tok, sizeof tok);
    assert_true(n > 3);
    assert_int_equal(strncmp(tok, "v1.", 3), 0);
    assert_null(strpbrk(tok + 3, "+/=:"));
    assert_int_equal(kq_token_parse(tok, topic, sizeof topic, &p, &o), 0);
    assert_string_equal(topic, "kcqrs.resource.events");
    assert_int_equal(p, 5);
    assert_int_equal(o, 1234567);
    /* every length modulo 3 round-trips */
    for (int64_t off = 0; off < 1000; off += 7) {
        kq_token_encode("t", 0, off, tok, sizeof tok);
        assert_int_equal(kq_token_parse(tok, topic, sizeof topic, &p, &o), 0);
        assert_int_equal(o, off);
    }
    assert_int_equal(kq_token_parse("v2.abc", topic, sizeof topic, &p, &o), KQ_EINVAL);
    assert_int_equal(kq_token_parse("v1.", topic, sizeof topic, &p, &o), KQ_EINVAL);
    assert_int_equal(kq_token_parse("v1.!!!!", topic, sizeof topic, &p, &o), KQ_EINVAL);
    assert_int_equal(kq_token_parse("v1.dDE6MTp4", topic, sizeof topic, &p, &o),
                     KQ_EINVAL); /* "t1:1:x" */
    assert_int_equal(kq_token_parse("v1.dDE6MQ", topic, sizeof topic, &p, &o),
                     KQ_EINVAL); /* "t1:1" */
    assert_int_equal(kq_token_encode("t", 1, 2, tok, 5), KQ_ERANGE);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_update_delete),
        cmocka_unit_test(test_batch_overlay),
        cmocka_unit_test(test_idempotency),
        cmocka_unit_test(test_apply_from_log),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
