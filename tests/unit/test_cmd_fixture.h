/*
 * test_cmd_fixture.h — shared helpers of the command-side unit tests
 * (test_cmd_*.c): commands of every kind, decide-and-commit through the
 * production path, temporary directories, whole-state comparison.
 *
 * "Committed" here means exactly what the writer does after a commit: every
 * event of an APPEND decision is built with cmd_aggregate_build, encoded
 * with ev_envelope_encode and applied from those bytes with
 * cmd_aggregate_apply (the path catch-up takes too).
 *
 * Header-only (static inline): include it after cmocka.h.
 */
#ifndef TEST_CMD_FIXTURE_H
#define TEST_CMD_FIXTURE_H

#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd_snapshot.h"
#include "cmd_state.h"
#include "ev_codec.h"
#include "kq_err.h"

/* ------------------------------------------------------------ the production apply path */

/* Encode e and apply it from the bytes, as a record of `topic` at (partition, offset). */
static inline int fx_apply_env(cmd_state *st, int topic, const ev_envelope *e, int32_t partition,
                               int64_t offset, char *err, size_t errlen)
{
    ev_fb_builder fb;
    const uint8_t *buf;
    size_t len;
    int rc;

    ev_fb_builder_init(&fb);
    if (ev_envelope_encode(&fb, e, err, errlen) != 0)
        fail_msg("encode: %s", err);
    buf = ev_fb_builder_data(&fb, &len);
    rc = cmd_aggregate_apply(st, topic, buf, len, partition, offset, err, errlen);
    ev_fb_builder_free(&fb);
    return rc;
}

/* The occurred_at_us of the events the fixture commits, and a clock for
 * states that expire keys and runs (cmd_state.clock_us = fx_clock): tests
 * move both. */
static int64_t fx_event_us = 1700000000000000;
static int64_t fx_now_us = 1700000000000000;
static inline int64_t fx_clock(void)
{
    return fx_now_us;
}

/* Commit APPEND decision d of c: its events at partition 0, offsets *offset on. */
static inline void fx_apply_decision(cmd_state *st, const cmd_command *c, const cmd_decision *d,
                                     int64_t *offset)
{
    char err[256];
    cmd_command cc = *c; /* shallow: the API always sets a correlation id */

    if (cc.correlation_id[0] == '\0')
        snprintf(cc.correlation_id, sizeof cc.correlation_id, "corr-test");
    assert_int_equal(d->kind, CMD_D_APPEND);
    for (int i = 0; i < d->nevents; i++) {
        ev_envelope e, scratch;
        int rc;
        if (cmd_aggregate_build(&cc, d, i, &e, &scratch, err, sizeof err) != 0)
            fail_msg("build: %s", err);
        e.occurred_at_us = fx_event_us;
        rc = fx_apply_env(st, cmd_kind_topic(c->kind), &e, 0, (*offset)++, err, sizeof err);
        if (rc != 0)
            fail_msg("apply: %s", err);
    }
}

/* Decide c alone in a batch; an APPEND is committed (fx_apply_decision). */
static inline cmd_decision fx_decide_commit(cmd_state *st, cmd_command *c, int64_t *offset)
{
    cmd_batch b;
    cmd_decision d;

    assert_int_equal(cmd_batch_init(&b), 0);
    assert_int_equal(cmd_batch_decide(st, &b, c, 0, &d), 0);
    if (d.kind == CMD_D_APPEND)
        fx_apply_decision(st, c, &d, offset);
    cmd_batch_free(&b);
    return d;
}

/* fx_decide_commit, then free what the decision and the command own. */
static inline cmd_decision fx_dc(cmd_state *st, cmd_command c, int64_t *offset)
{
    cmd_decision d = fx_decide_commit(st, &c, offset);
    cmd_decision_clear(&d);
    cmd_command_clear(&c);
    return d;
}

static inline void fx_expect_error(cmd_decision d, unsigned status, const char *code)
{
    assert_int_equal(d.kind, CMD_D_ERROR);
    assert_int_equal(d.status, status);
    assert_string_equal(d.code, code);
}

/* ------------------------------------------------------------ commands */

/* A resource command; with a key, the hash is of ("X", id, name). */
static inline cmd_command fx_res(cmd_kind kind, const char *id, const char *name, const char *key)
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
        char req[512];
        unsigned int n = 0;
        int len = snprintf(req, sizeof req, "X%c%s%c%s", 0, id, 0, name ? name : "");
        assert_int_equal(EVP_Digest(req, (size_t)len, c.hash, &n, EVP_sha256(), NULL), 1);
    }
    return c;
}

/* A steps envelope of `n` HTTP steps with urls http://h/<tag><i>, under
 * aggregate id `agg` (the bytes differ with it; the steps do not). */
static inline void fx_set_steps(cmd_command *c, int n, const char *tag, const char *agg)
{
    ev_fb_builder fb;
    ev_envelope e;
    ev_step steps[8];
    char urls[8][64], err[256];
    const uint8_t *buf;
    size_t len;

    memset(steps, 0, sizeof steps);
    for (int i = 0; i < n; i++) {
        snprintf(urls[i], sizeof urls[i], "http://h/%s%d", tag, i);
        steps[i].action_type = EV_ACTION_HTTP;
        steps[i].action.http.url = ev_str_c(urls[i]);
        steps[i].action.http.method = EV_HTTP_POST;
    }
    ev_fb_builder_init(&fb);
    ev_envelope_init(&e, EV_WORKFLOW_UPDATED);
    e.aggregate_id = ev_str_c(agg);
    e.version = 1;
    e.payload.workflow_updated.steps = ev_step_list_of(steps, (uint32_t)n);
    if (ev_envelope_encode(&fb, &e, err, sizeof err) != 0)
        fail_msg("%s", err);
    buf = ev_fb_builder_data(&fb, &len);
    free(c->steps_env);
    c->steps_env = malloc(len);
    assert_non_null(c->steps_env);
    memcpy(c->steps_env, buf, len);
    c->steps_env_len = len;
    c->fields |= CMD_F_STEPS;
    ev_fb_builder_free(&fb);
}

static inline cmd_command fx_wf_create(const char *id, const char *secret, int nsteps)
{
    cmd_command c;
    memset(&c, 0, sizeof c);
    c.kind = CMD_WF_CREATE;
    snprintf(c.id, sizeof c.id, "%s", id);
    c.fields = CMD_F_NAME | CMD_F_ENABLED | CMD_F_SECRET;
    c.name = strdup("wf");
    c.enabled = 1;
    c.secret = strdup(secret);
    fx_set_steps(&c, nsteps, "a", "api");
    return c;
}

static inline cmd_command fx_wf_cmd(cmd_kind kind, const char *id)
{
    cmd_command c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    snprintf(c.id, sizeof c.id, "%s", id);
    return c;
}

static inline cmd_command fx_run_start(const char *run, const char *wf, const char *hook)
{
    cmd_command c;
    memset(&c, 0, sizeof c);
    c.kind = CMD_RUN_START;
    snprintf(c.id, sizeof c.id, "%s", run);
    snprintf(c.workflow_id, sizeof c.workflow_id, "%s", wf);
    c.trigger = hook ? EV_TRIGGER_WEBHOOK : EV_TRIGGER_MANUAL;
    c.payload_json = strdup("{}");
    if (hook != NULL) {
        c.has_hook_secret = 1;
        snprintf(c.hook_secret, sizeof c.hook_secret, "%s", hook);
    }
    return c;
}

static inline cmd_command fx_attempt(const char *run, uint32_t step, uint32_t n, cmd_outcome out)
{
    cmd_command c;
    memset(&c, 0, sizeof c);
    c.kind = CMD_RUN_ATTEMPT;
    snprintf(c.id, sizeof c.id, "%s", run);
    c.step = step;
    c.attempt = n;
    c.outcome = (int)out;
    c.duration_ms = 3;
    c.has_next_delay_ms = out == CMD_OUT_RETRY;
    c.next_delay_ms = 100;
    return c;
}

static inline void fx_with_key(cmd_command *c, const char *key, uint8_t tag)
{
    snprintf(c->idem_key, sizeof c->idem_key, "%s", key);
    memset(c->hash, tag, sizeof c->hash);
}

/* A state with workflows (one deleted, one disabled), open and finished runs, keys. */
static inline void fx_fill(cmd_state *st, int64_t *off)
{
    cmd_command c;

    c = fx_wf_create("w1", "s1", 3);
    fx_with_key(&c, "k1", 1);
    fx_dc(st, c, off);
    fx_dc(st, fx_wf_create("w2", "s2", 1), off);
    fx_dc(st, fx_wf_create("w3", "s3", 1), off);
    c = fx_wf_cmd(CMD_WF_UPDATE, "w2");
    c.fields = CMD_F_ENABLED;
    c.enabled = 0;
    fx_dc(st, c, off);
    fx_dc(st, fx_wf_cmd(CMD_WF_DELETE, "w3"), off);
    fx_dc(st, fx_run_start("r1", "w1", NULL), off);
    fx_dc(st, fx_attempt("r1", 0, 1, CMD_OUT_RETRY), off);
    c = fx_run_start("r2", "w1", "s1");
    fx_with_key(&c, "k2", 2);
    fx_dc(st, c, off);
    fx_dc(st, fx_attempt("r2", 0, 1, CMD_OUT_FAILED), off);
}

/* ------------------------------------------------------------ directories */

static inline char *fx_tmpdir(void)
{
    char *d = strdup("/tmp/test_cmd_snapXXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static inline void fx_rmdir_all(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

/* ------------------------------------------------------------ whole states */

static inline int fx_cmp_res(void *arg, const char *id, const void *val)
{
    const cmd_resource *r = val;
    const cmd_resource *o = cmd_state_resource(arg, id);
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

static inline int fx_cmp_wf(void *arg, const char *id, const void *val)
{
    const cmd_workflow *w = val;
    const cmd_workflow *o = cmd_state_workflow(arg, id);
    if (o == NULL)
        fail_msg("workflow %s missing", id);
    assert_int_equal(o->version, w->version);
    assert_int_equal(o->deleted, w->deleted);
    assert_int_equal(o->enabled, w->enabled);
    assert_int_equal(o->offset, w->offset);
    assert_int_equal(o->partition, w->partition);
    assert_int_equal(o->step_count, w->step_count);
    assert_string_equal(o->name, w->name);
    assert_string_equal(o->secret, w->secret);
    assert_int_equal(o->steps_len, w->steps_len);
    if (w->steps_len)
        assert_memory_equal(o->steps, w->steps, w->steps_len);
    return 0;
}

static inline int fx_cmp_run(void *arg, const char *id, const void *val)
{
    const cmd_run *r = val;
    const cmd_run *o = cmd_state_run(arg, id);
    if (o == NULL)
        fail_msg("run %s missing", id);
    assert_memory_equal(o, r, sizeof *r);
    return 0;
}

static inline int fx_cmp_idem(void *arg, const char *key, const cmd_idem *i)
{
    const cmd_idem *o = cmd_state_idem(arg, key);
    if (o == NULL)
        fail_msg("key %s missing", key);
    assert_memory_equal(o, i, sizeof *i);
    return 0;
}

/* Every aggregate and key of a is in b with the same contents, and the
 * counts, offsets, events and cluster id match. */
static inline void fx_assert_same(const cmd_state *a, const cmd_state *b)
{
    void *bb = (void *)(uintptr_t)b;
    assert_int_equal(cmd_state_resource_count(a), cmd_state_resource_count(b));
    assert_int_equal(cmd_state_workflow_count(a), cmd_state_workflow_count(b));
    assert_int_equal(cmd_state_run_count(a), cmd_state_run_count(b));
    assert_int_equal(cmd_state_idem_count(a), cmd_state_idem_count(b));
    assert_int_equal(a->partitions, b->partitions);
    assert_memory_equal(a->next_offset, b->next_offset,
                        (size_t)CMD_TOPICS * (size_t)a->partitions * sizeof(int64_t));
    assert_int_equal(a->events, b->events);
    assert_string_equal(a->cluster_id, b->cluster_id);
    cmd_state_each(a, CMD_TOPIC_RESOURCE, fx_cmp_res, bb);
    cmd_state_each(a, CMD_TOPIC_WORKFLOW, fx_cmp_wf, bb);
    cmd_state_each(a, CMD_TOPIC_RUN, fx_cmp_run, bb);
    cmd_state_each_idem(a, fx_cmp_idem, bb);
}

#endif
