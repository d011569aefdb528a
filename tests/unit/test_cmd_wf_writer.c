/*
 * test_cmd_wf_writer.c — workflows and runs through the writer on librdkafka's
 * mock cluster: create a workflow, start runs (manual and webhook, right and
 * wrong secret), record attempts (retry, succeeded, the last step's
 * RunSucceeded, failed -> RunFailed), the refusals the worker relies on
 * (attempt_recorded, attempt_gap, step_mismatch, run_finished), a workflow
 * update with name + enabled = two events, a disabled workflow's 409; the
 * events land in their aggregate's topic, in order, chained per partition;
 * then new writers catch up from the log and from the snapshot and still
 * refuse the same attempt; an older (v3) snapshot is read as none and
 * replaced.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "test_cmd_fixture.h"
#include "test_cmd_cluster.h"

#include "cmd_api.h"
#include "cmd_snapshot.h"
#include "kq_err.h"

static void start(cl_fixture *f)
{
    cl_start(f, "test_cmd_wf_writer",
             100000); /* 100 ms: commands submitted together share a batch */
}

static void wf_create(cl_fixture *f, cl_outcome *o, const char *id, const char *secret, int nsteps,
                      const char *key)
{
    cmd_command c = fx_wf_create(id, secret, nsteps);
    if (key != NULL) {
        snprintf(c.idem_key, sizeof c.idem_key, "%s", key);
        cmd_api_command_hash("POST", "/api/v1/workflows", id, strlen(id), c.hash);
    }
    cl_submit(f, o, c);
}

static void run_start(cl_fixture *f, cl_outcome *o, const char *run_id, const char *wf,
                      const char *hook)
{
    cmd_command c = fx_run_start(run_id, wf, hook);
    free(c.payload_json);
    c.payload_json = strdup("{\"a\":1}");
    cl_submit(f, o, c);
}

/* An attempt as the worker records it (status code, delivery id, error). */
static void attempt(cl_fixture *f, cl_outcome *o, const char *run_id, uint32_t step, uint32_t n,
                    cmd_outcome out)
{
    cmd_command c = fx_attempt(run_id, step, n, out);
    c.duration_ms = 12;
    snprintf(c.delivery_id, sizeof c.delivery_id, "%s.%u", run_id, (unsigned)step);
    c.has_next_delay_ms = 0;
    if (out == CMD_OUT_RETRY) {
        c.has_status_code = 1;
        c.status_code = 503;
        c.has_next_delay_ms = 1;
        c.next_delay_ms = 500;
    } else if (out == CMD_OUT_SUCCEEDED) {
        c.has_status_code = 1;
        c.status_code = 200;
    } else {
        c.error = strdup("connection refused");
    }
    cl_submit(f, o, c);
}

static void do_attempt(cl_fixture *f, cl_outcome *o, const char *run_id, uint32_t step, uint32_t n,
                       cmd_outcome out)
{
    attempt(f, o, run_id, step, n, out);
    cl_wait_all(o, 1);
}

/* A workflow update of name and enabled (WorkflowUpdated + WorkflowEnabled/Disabled). */
static void wf_rename(cl_fixture *f, cl_outcome *o, const char *id, const char *name, int enabled)
{
    cmd_command c = fx_wf_cmd(CMD_WF_UPDATE, id);
    c.fields = CMD_F_NAME | CMD_F_ENABLED;
    c.name = strdup(name);
    c.enabled = enabled;
    cl_submit(f, o, c);
}

/* What read_aggregate collects: the events of one aggregate ("Type@version,..."). */
typedef struct agg_read {
    const char *id;
    char *out;
    size_t outlen, o;
    ev_envelope *last_run_started;
    uint8_t **keep;
} agg_read;

static void agg_record(void *arg, const rd_kafka_message_t *m)
{
    agg_read *r = arg;
    ev_envelope e;
    char err[256];

    if (ev_envelope_decode(m->payload, m->len, &e, err, sizeof err) != 0)
        fail_msg("%s", err);
    if (e.aggregate_id.len != strlen(r->id) ||
        memcmp(e.aggregate_id.ptr, r->id, e.aggregate_id.len))
        return;
    int n = snprintf(r->out + r->o, r->outlen - r->o, "%s%s@%lld", r->o ? "," : "",
                     ev_event_type_name(e.payload_type), (long long)e.version);
    assert_true(n > 0 && (size_t)n < r->outlen - r->o);
    r->o += (size_t)n;
    assert_int_equal(m->partition, kq_kafka_partition_for(r->id, strlen(r->id), 6));
    if (e.payload_type == EV_RUN_STARTED && r->last_run_started != NULL) {
        free(*r->keep);
        *r->keep = malloc(m->len);
        assert_non_null(*r->keep);
        memcpy(*r->keep, m->payload, m->len);
        assert_int_equal(ev_envelope_decode(*r->keep, m->len, r->last_run_started, err, sizeof err),
                         0);
    }
}

/* The events of one aggregate in `topic`, in log order ("Type@version,..."),
 * with every partition's chain checked (ev_chain.h). */
static void read_aggregate(cl_fixture *f, const char *topic, const char *id, char *out,
                           size_t outlen, ev_envelope *last_run_started, uint8_t **keep)
{
    agg_read r = {id, out, outlen, 0, last_run_started, keep};
    out[0] = '\0';
    cl_read_topic(f, topic, agg_record, &r);
}

/* After a restart: the state refuses what was recorded. */
static void check_refusals_after_restart(cl_fixture *f)
{
    cl_outcome o;
    const cmd_run *r;

    r = cmd_state_run(cmd_writer_state(f->w), "run-1");
    assert_non_null(r);
    assert_int_equal(r->status, CMD_RUN_SUCCEEDED);
    assert_int_equal(r->version, 7);
    r = cmd_state_run(cmd_writer_state(f->w), "run-2");
    assert_non_null(r);
    assert_int_equal(r->status, CMD_RUN_OPEN);
    assert_int_equal(r->attempts, 1);
    assert_int_equal(cmd_state_workflow(cmd_writer_state(f->w), "wf-1")->version, 3);
    do_attempt(f, &o, "run-1", 1, 1, CMD_OUT_SUCCEEDED);
    assert_int_equal(o.status, 409);
    assert_string_equal(o.code, "run_finished");
    do_attempt(f, &o, "run-2", 0, 1, CMD_OUT_RETRY);
    assert_int_equal(o.status, 409);
    assert_string_equal(o.code, "attempt_recorded");
    assert_int_equal(o.recorded_attempts, 1);
    /* the Idempotency-Key of the create still answers the original, with the secret */
    wf_create(f, &o, "wf-1", "s3cret", 2, "k-wf");
    cl_wait_all(&o, 1);
    assert_int_equal(o.status, 201);
    assert_int_equal(o.version, 1);
    assert_true(o.has_secret);
    assert_string_equal(o.secret, "s3cret");
}

/* Make the snapshot in `dir` look like a v3 one with a record v5 cannot read
 * (an idempotency record of the old size) and a stale resource. */
static void downgrade_snapshot(const char *dir)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {1, (void *)"m"}, v;
    char *m, junk[40];
    cmd_snap_res res;

    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_mapsize(env, 1 << 24), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
    m = malloc(v.mv_size);
    assert_non_null(m);
    memcpy(m, v.mv_data, v.mv_size);
    assert_memory_equal(m, "kcqrs.commands.v6", 18);
    m[16] = '3';
    v.mv_data = m;
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    memset(junk, 1, sizeof junk);
    k.mv_data = (void *)"i/old-key";
    k.mv_size = 9;
    v.mv_data = junk;
    v.mv_size = sizeof junk;
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    memset(&res, 0, sizeof res);
    res.version = 1;
    k.mv_data = (void *)"r/stale";
    k.mv_size = 7;
    v.mv_data = &res;
    v.mv_size = sizeof res;
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(m);
}

static void test_workflow_run_flow(void **state)
{
    cl_fixture f;
    cl_outcome o, o2, o3;
    char got[1024], dir[] = "/tmp/test_cmd_wf_writerXXXXXX", cmd[128];
    ev_envelope rs;
    uint8_t *keep = NULL;
    ev_step st0;

    (void)state;
    assert_non_null(mkdtemp(dir));
    start(&f);

    wf_create(&f, &o, "wf-1", "s3cret", 2, "k-wf");
    cl_wait_all(&o, 1);
    assert_int_equal(o.status, 201);
    assert_int_equal(o.version, 1);
    assert_true(o.has_secret);
    assert_string_equal(o.secret, "s3cret");
    cl_token_is(&o, "u.workflow.events", "wf-1");

    /* manual start; webhook with a wrong secret (401, nothing appended), with the right one */
    run_start(&f, &o, "run-1", "wf-1", NULL);
    run_start(&f, &o2, "run-x", "wf-1", "s3cre");
    run_start(&f, &o3, "run-2", "wf-1", "s3cret");
    cl_wait_all(&o, 1);
    cl_wait_all(&o2, 1);
    cl_wait_all(&o3, 1);
    assert_int_equal(o.status, 202);
    assert_int_equal(o.version, 1);
    assert_string_equal(o.id, "run-1");
    cl_token_is(&o, "u.run.events", "run-1");
    assert_int_equal(o2.status, 401);
    assert_string_equal(o2.code, "invalid_webhook_secret");
    assert_int_equal(o3.status, 202);
    run_start(&f, &o, "run-y", "wf-none", NULL);
    cl_wait_all(&o, 1);
    assert_int_equal(o.status, 404);

    /* attempts of run-1: retry, repeat (409 attempt_recorded), gap, wrong step */
    do_attempt(&f, &o, "run-1", 0, 1, CMD_OUT_RETRY);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.version, 2);
    cl_token_is(&o, "u.run.events", "run-1");
    do_attempt(&f, &o, "run-1", 0, 1, CMD_OUT_RETRY);
    assert_int_equal(o.status, 409);
    assert_string_equal(o.code, "attempt_recorded");
    assert_true(o.has_attempt_detail);
    assert_int_equal(o.current_step, 0);
    assert_int_equal(o.recorded_attempts, 1);
    do_attempt(&f, &o, "run-1", 0, 3, CMD_OUT_RETRY);
    assert_int_equal(o.status, 409);
    assert_string_equal(o.code, "attempt_gap");
    do_attempt(&f, &o, "run-1", 1, 1, CMD_OUT_SUCCEEDED);
    assert_int_equal(o.status, 409);
    assert_string_equal(o.code, "step_mismatch");
    /* step 0 succeeds (2 events), step 1 succeeds: the last step, + RunSucceeded (3 events) */
    do_attempt(&f, &o, "run-1", 0, 2, CMD_OUT_SUCCEEDED);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.version, 4);
    do_attempt(&f, &o, "run-1", 1, 1, CMD_OUT_SUCCEEDED);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.version, 7);
    do_attempt(&f, &o, "run-1", 1, 2, CMD_OUT_SUCCEEDED);
    assert_int_equal(o.status, 409);
    assert_string_equal(o.code, "run_finished");
    /* run-2: one retry recorded; run-3 fails at once (3 events) */
    do_attempt(&f, &o, "run-2", 0, 1, CMD_OUT_RETRY);
    assert_int_equal(o.status, 200);
    run_start(&f, &o, "run-3", "wf-1", NULL);
    cl_wait_all(&o, 1);
    assert_int_equal(o.status, 202);
    do_attempt(&f, &o, "run-3", 0, 1, CMD_OUT_FAILED);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.version, 4);
    do_attempt(&f, &o, "run-3", 0, 2, CMD_OUT_RETRY);
    assert_int_equal(o.status, 409);
    assert_string_equal(o.code, "run_finished");

    /* update name + enabled = WorkflowUpdated + WorkflowDisabled; then a start is 409 */
    wf_rename(&f, &o, "wf-1", "renamed", 0);
    cl_wait_all(&o, 1);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.version, 3);
    assert_false(o.has_secret);
    run_start(&f, &o, "run-4", "wf-1", NULL);
    cl_wait_all(&o, 1);
    assert_int_equal(o.status, 409);
    assert_string_equal(o.code, "workflow_disabled");

    /* the log: each aggregate's events in its topic, in order, chained */
    read_aggregate(&f, "u.workflow.events", "wf-1", got, sizeof got, NULL, NULL);
    assert_string_equal(got, "WorkflowCreated@1,WorkflowUpdated@2,WorkflowDisabled@3");
    read_aggregate(&f, "u.run.events", "run-1", got, sizeof got, &rs, &keep);
    assert_string_equal(got, "RunStarted@1,StepAttempted@2,StepAttempted@3,StepSucceeded@4,"
                             "StepAttempted@5,StepSucceeded@6,RunSucceeded@7");
    assert_int_equal(rs.payload.run_started.workflow_version, 1);
    assert_int_equal(rs.payload.run_started.step_count, 2);
    assert_int_equal(rs.payload.run_started.steps.count, 2);
    assert_int_equal(ev_step_list_get(&rs.payload.run_started.steps, 1, &st0), 0);
    assert_string_equal(st0.action.http.url.ptr, "http://h/a1");
    assert_int_equal(rs.payload.run_started.signing_secret.len, 6);
    assert_memory_equal(rs.payload.run_started.signing_secret.ptr, "s3cret", 6);
    read_aggregate(&f, "u.run.events", "run-3", got, sizeof got, NULL, NULL);
    assert_string_equal(got, "RunStarted@1,StepAttempted@2,StepFailed@3,RunFailed@4");
    read_aggregate(&f, "u.run.events", "run-x", got, sizeof got, NULL, NULL);
    assert_string_equal(got, "");
    free(keep);

    /* a new writer catches up from the log alone */
    cl_writer_stop(&f);
    cl_writer_start(&f);
    check_refusals_after_restart(&f);
    /* with a snapshot: written at the stop, then loaded (nothing left to read) */
    cl_writer_stop(&f);
    f.snapshot_dir = dir;
    cl_writer_start(&f);
    cl_writer_stop(&f);
    cl_writer_start(&f);
    assert_int_equal(cmd_state_run_count(cmd_writer_state(f.w)), 3);
    check_refusals_after_restart(&f);
    /* the chain continues after the snapshot: a new attempt is chained on the log */
    do_attempt(&f, &o, "run-2", 0, 2, CMD_OUT_SUCCEEDED);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.version, 4);
    read_aggregate(&f, "u.run.events", "run-2", got, sizeof got, NULL, NULL);
    assert_string_equal(got, "RunStarted@1,StepAttempted@2,StepAttempted@3,StepSucceeded@4");

    /* an older snapshot (v3) with records this version cannot read is ignored:
     * the log is read, and the first snapshot empties the directory */
    cl_writer_stop(&f);
    downgrade_snapshot(dir);
    cl_writer_start(&f);
    {
        const cmd_run *r = cmd_state_run(cmd_writer_state(f.w), "run-2");
        assert_non_null(r);
        assert_int_equal(r->version, 4);
        assert_int_equal(r->step, 1);
        assert_int_equal(r->attempts, 0);
        assert_null(cmd_state_resource(cmd_writer_state(f.w), "stale"));
    }
    cl_writer_stop(&f);
    {
        static const char *const topics[CMD_TOPICS] = {"u.resource.events", "u.workflow.events",
                                                       "u.run.events"};
        cmd_state st;
        cmd_head heads[CMD_TOPICS * 6];
        char err[512];
        assert_int_equal(cmd_state_init(&st, 6), 0);
        if (cmd_snapshot_load(dir, 1 << 24, &st, heads, topics, err, sizeof err) != 0)
            fail_msg("%s", err);
        assert_null(cmd_state_resource(&st, "stale"));
        assert_int_equal(cmd_state_run(&st, "run-2")->version, 4);
        cmd_state_free(&st);
    }
    cl_writer_start(&f);
    cl_stop(&f);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Commands of one batch on one workflow and its runs see each other: the
 * create, a run started on it and an attempt of that run in one transaction. */
static void test_batch_overlay_writer(void **state)
{
    cl_fixture f;
    cl_outcome o[4];
    char got[512];

    (void)state;
    start(&f);
    wf_create(&f, &o[0], "wf-b", "sec", 1, NULL);
    run_start(&f, &o[1], "run-b", "wf-b", "sec");
    attempt(&f, &o[2], "run-b", 0, 1, CMD_OUT_SUCCEEDED);
    attempt(&f, &o[3], "run-b", 0, 2, CMD_OUT_SUCCEEDED);
    for (int i = 0; i < 4; i++)
        cl_wait_all(&o[i], 1);
    assert_int_equal(o[0].status, 201);
    assert_int_equal(o[1].status, 202);
    assert_int_equal(o[2].status, 200);
    assert_int_equal(o[2].version, 4); /* StepAttempted, StepSucceeded, RunSucceeded */
    assert_int_equal(o[3].status, 409);
    assert_string_equal(o[3].code, "run_finished");
    read_aggregate(&f, "u.run.events", "run-b", got, sizeof got, NULL, NULL);
    assert_string_equal(got, "RunStarted@1,StepAttempted@2,StepSucceeded@3,RunSucceeded@4");
    cl_stop(&f);
}

/* A failed transaction with multi-event commands (an attempt that ends the
 * run, a workflow update with two events): every command of the batch gets
 * 503, the state and the chain heads do not move, and the retries get the
 * versions the failed ones would have had; the log holds each event once. */
static void test_failed_transaction(void **state)
{
    cl_fixture f;
    cl_outcome o[2];
    char got[512];
    double t0;

    (void)state;
    start(&f);
    wf_create(&f, &o[0], "wf-f", "sec", 1, NULL);
    cl_wait_all(&o[0], 1);
    assert_int_equal(o[0].status, 201);
    run_start(&f, &o[0], "run-f", "wf-f", NULL);
    cl_wait_all(&o[0], 1);
    assert_int_equal(o[0].status, 202);

    /* The mock cluster hands aborted records to read_committed consumers, so
     * the transaction fails before its records are sent (AddPartitionsToTxn
     * refused): the writer had chained them already and must forget them. */
    rd_kafka_mock_push_request_errors(f.mc, CL_API_ADD_PARTITIONS_TO_TXN, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    attempt(&f, &o[0], "run-f", 0, 1, CMD_OUT_SUCCEEDED);
    wf_rename(&f, &o[1], "wf-f", "other", 0);
    cl_wait_all(&o[0], 1);
    cl_wait_all(&o[1], 1);
    assert_int_equal(o[0].status, 503);
    assert_int_equal(o[1].status, 503);
    assert_int_equal(cmd_state_run(cmd_writer_state(f.w), "run-f")->version, 1);

    /* retried until the writer is back: the same versions */
    t0 = cl_now();
    do {
        do_attempt(&f, &o[0], "run-f", 0, 1, CMD_OUT_SUCCEEDED);
        if (o[0].status == 503)
            cl_sleep_ms(100);
    } while (o[0].status == 503 && cl_now() - t0 < 30);
    assert_int_equal(o[0].status, 200);
    assert_int_equal(o[0].version, 4);
    wf_rename(&f, &o[1], "wf-f", "other", 0);
    cl_wait_all(&o[1], 1);
    assert_int_equal(o[1].status, 200);
    assert_int_equal(o[1].version, 3);
    read_aggregate(&f, "u.run.events", "run-f", got, sizeof got, NULL, NULL);
    assert_string_equal(got, "RunStarted@1,StepAttempted@2,StepSucceeded@3,RunSucceeded@4");
    read_aggregate(&f, "u.workflow.events", "wf-f", got, sizeof got, NULL, NULL);
    assert_string_equal(got, "WorkflowCreated@1,WorkflowUpdated@2,WorkflowDisabled@3");
    cl_stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workflow_run_flow),
        cmocka_unit_test(test_batch_overlay_writer),
        cmocka_unit_test(test_failed_transaction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
