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

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <lmdb.h>

#include "aud_chain.h"
#include "cmd_api.h"
#include "cmd_snapshot.h"
#include "cmd_writer.h"
#include "ev_codec.h"
#include "kq_config.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"

typedef struct outcome {
    atomic_int done;
    unsigned status;
    int64_t version;
    char code[64];
    char id[EV_ID_MAX + 1];
    char token[CMD_TOKEN_MAX];
    char secret[EV_META_MAX + 1];
    int has_secret;
    int has_attempt_detail;
    uint32_t current_step, recorded_attempts;
} outcome;

static void on_done(cmd_item *it, const cmd_result *r)
{
    outcome *o = it->arg;
    o->status = r->status;
    o->version = r->version;
    snprintf(o->code, sizeof o->code, "%s", r->code ? r->code : "");
    snprintf(o->id, sizeof o->id, "%s", r->id ? r->id : "");
    snprintf(o->token, sizeof o->token, "%s", r->token ? r->token : "");
    o->has_secret = r->secret != NULL;
    snprintf(o->secret, sizeof o->secret, "%s", r->secret ? r->secret : "");
    o->has_attempt_detail = r->has_attempt_detail;
    o->current_step = r->current_step;
    o->recorded_attempts = r->recorded_attempts;
    atomic_store(&o->done, 1);
    cmd_item_free(it);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

typedef struct fixture {
    rd_kafka_t *host;
    rd_kafka_mock_cluster_t *mc;
    char brokers[256];
    kq_config cfg;
    cmd_writer *w;
    const char *snapshot_dir;
} fixture;

static void start_writer(fixture *f)
{
    char err[512];
    cmd_writer_options o;
    double t0;

    f->cfg.brokers = f->brokers;
    f->cfg.topic_prefix = (char *)"u";
    f->cfg.partitions = 6;
    f->cfg.replication_factor = 1;
    f->cfg.min_insync_replicas = 1;
    f->cfg.kafka_timeout_ms = 3000;
    f->cfg.batch_max = 64;
    f->cfg.batch_linger_us = 100000; /* 100 ms: commands submitted together share a batch */
    f->cfg.snapshot_every = 1000000;
    memset(&o, 0, sizeof o);
    o.cfg = &f->cfg;
    o.skip_topic_setup = 1;
    o.snapshot_dir = f->snapshot_dir;
    o.snapshot_map_size = 1 << 24;
    if (cmd_writer_new(&o, &f->w, err, sizeof err) != 0 ||
        cmd_writer_start(f->w, err, sizeof err) != 0)
        fail_msg("%s", err);
    t0 = now_s();
    while (!cmd_writer_ready(f->w, err, sizeof err)) {
        if (now_s() - t0 > 20)
            fail_msg("writer not ready: %s", err);
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void start(fixture *f)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    memset(f, 0, sizeof *f);
    kq_log_init("test_cmd_wf_writer", getenv("TEST_LOG") ? KQ_LOG_DEBUG : KQ_LOG_OFF, KQ_LOG_HUMAN);
    rd_kafka_conf_set_log_cb(conf, NULL);
    assert_int_equal(rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err), RD_KAFKA_CONF_OK);
    f->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    assert_non_null(f->host);
    f->mc = rd_kafka_mock_cluster_new(f->host, 1);
    assert_non_null(f->mc);
    snprintf(f->brokers, sizeof f->brokers, "%s", rd_kafka_mock_cluster_bootstraps(f->mc));
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "u.resource.events", 6, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "u.workflow.events", 6, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "u.run.events", 6, 1), 0);
    start_writer(f);
}

static void stop(fixture *f)
{
    cmd_writer_free(f->w);
    rd_kafka_mock_cluster_destroy(f->mc);
    rd_kafka_destroy(f->host);
}

/* A steps envelope as the API builds it: a WorkflowUpdated holding only
 * `n` HTTP steps (urls http://h/<tag><i>). */
static void steps_env(cmd_command *c, int n, const char *tag)
{
    ev_fb_builder fb;
    ev_envelope e;
    ev_step steps[8];
    char urls[8][64], err[256];
    const uint8_t *buf;
    size_t len;

    assert_true(n <= 8);
    memset(steps, 0, sizeof steps);
    for (int i = 0; i < n; i++) {
        snprintf(urls[i], sizeof urls[i], "http://h/%s%d", tag, i);
        steps[i].action_type = EV_ACTION_HTTP;
        steps[i].action.http.method = EV_HTTP_POST;
        steps[i].action.http.url = ev_str_c(urls[i]);
    }
    ev_fb_builder_init(&fb);
    ev_envelope_init(&e, EV_WORKFLOW_UPDATED);
    e.aggregate_id = ev_str_c("api");
    e.version = 1;
    e.payload.workflow_updated.steps = ev_step_list_of(steps, (uint32_t)n);
    if (ev_envelope_encode(&fb, &e, err, sizeof err) != 0)
        fail_msg("%s", err);
    buf = ev_fb_builder_data(&fb, &len);
    c->steps_env = malloc(len);
    assert_non_null(c->steps_env);
    memcpy(c->steps_env, buf, len);
    c->steps_env_len = len;
    c->fields |= CMD_F_STEPS;
    ev_fb_builder_free(&fb);
}

static cmd_item *item(outcome *o, cmd_kind kind, const char *id)
{
    cmd_item *it = cmd_item_new();
    assert_non_null(it);
    memset(o, 0, sizeof *o);
    it->cmd.kind = kind;
    snprintf(it->cmd.id, sizeof it->cmd.id, "%s", id);
    snprintf(it->cmd.actor, sizeof it->cmd.actor, "tester");
    snprintf(it->cmd.correlation_id, sizeof it->cmd.correlation_id, "corr-wf");
    it->done = on_done;
    it->arg = o;
    return it;
}

static void submit_item(fixture *f, cmd_item *it)
{
    cmd_result refused;
    outcome *o = it->arg;
    if (cmd_writer_submit(f->w, it, &refused) != 0) {
        o->status = refused.status;
        snprintf(o->code, sizeof o->code, "%s", refused.code);
        atomic_store(&o->done, 1);
        cmd_item_free(it);
    }
}

static void wait_one(outcome *o)
{
    double t0 = now_s();
    while (!atomic_load(&o->done)) {
        if (now_s() - t0 > 30)
            fail_msg("command not answered in 30 s");
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void wf_create(fixture *f, outcome *o, const char *id, const char *secret, int nsteps,
                      const char *key)
{
    cmd_item *it = item(o, CMD_WF_CREATE, id);
    it->cmd.fields = CMD_F_NAME | CMD_F_ENABLED | CMD_F_SECRET;
    it->cmd.name = strdup("hooks");
    it->cmd.enabled = 1;
    it->cmd.secret = strdup(secret);
    steps_env(&it->cmd, nsteps, "a");
    if (key != NULL) {
        snprintf(it->cmd.idem_key, sizeof it->cmd.idem_key, "%s", key);
        cmd_api_command_hash("POST", "/api/v1/workflows", id, strlen(id), it->cmd.hash);
    }
    submit_item(f, it);
}

static void run_start(fixture *f, outcome *o, const char *run_id, const char *wf, const char *hook)
{
    cmd_item *it = item(o, CMD_RUN_START, run_id);
    snprintf(it->cmd.workflow_id, sizeof it->cmd.workflow_id, "%s", wf);
    it->cmd.trigger = hook ? EV_TRIGGER_WEBHOOK : EV_TRIGGER_MANUAL;
    it->cmd.payload_json = strdup("{\"a\":1}");
    if (hook != NULL) {
        it->cmd.has_hook_secret = 1;
        snprintf(it->cmd.hook_secret, sizeof it->cmd.hook_secret, "%s", hook);
    }
    submit_item(f, it);
}

static void attempt(fixture *f, outcome *o, const char *run_id, uint32_t step, uint32_t n,
                    cmd_outcome out)
{
    cmd_item *it = item(o, CMD_RUN_ATTEMPT, run_id);
    it->cmd.step = step;
    it->cmd.attempt = n;
    it->cmd.duration_ms = 12;
    it->cmd.outcome = (int)out;
    snprintf(it->cmd.delivery_id, sizeof it->cmd.delivery_id, "%s.%u", run_id, (unsigned)step);
    if (out == CMD_OUT_RETRY) {
        it->cmd.has_status_code = 1;
        it->cmd.status_code = 503;
        it->cmd.has_next_delay_ms = 1;
        it->cmd.next_delay_ms = 500;
    } else if (out == CMD_OUT_SUCCEEDED) {
        it->cmd.has_status_code = 1;
        it->cmd.status_code = 200;
    } else {
        it->cmd.error = strdup("connection refused");
    }
    submit_item(f, it);
}

static void do_attempt(fixture *f, outcome *o, const char *run_id, uint32_t step, uint32_t n,
                       cmd_outcome out)
{
    attempt(f, o, run_id, step, n, out);
    wait_one(o);
}

static void token_topic(const outcome *o, const char *want, const char *id)
{
    char topic[256];
    int32_t p;
    int64_t off;
    assert_int_equal(cmd_token_parse(o->token, topic, sizeof topic, &p, &off), 0);
    assert_string_equal(topic, want);
    assert_int_equal(p, kq_kafka_partition_for(id, strlen(id), 6));
}

/* The events of one aggregate in `topic`, in log order ("Type@version,..."),
 * with every partition's chain checked (aud_chain.h). */
static void read_aggregate(fixture *f, const char *topic, const char *id, char *out, size_t outlen,
                           ev_envelope *last_run_started, uint8_t **keep)
{
    char err[512];
    rd_kafka_t *c;
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(6);
    aud_chain ch[6];
    int left = 6, eof[6] = {0};
    double t0 = now_s();
    size_t o = 0;

    out[0] = '\0';
    c = kq_kafka_consumer_new(&f->cfg, "u.test.wf", NULL, err, sizeof err);
    if (c == NULL)
        fail_msg("%s", err);
    for (int p = 0; p < 6; p++) {
        aud_chain_init(&ch[p]);
        rd_kafka_topic_partition_list_add(tp, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    assert_int_equal(rd_kafka_assign(c, tp), 0);
    while (left > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (now_s() - t0 > 30)
            fail_msg("reading %s: %d partitions not at the end", topic, left);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (!eof[m->partition]) {
                eof[m->partition] = 1;
                left--;
            }
        } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            ev_envelope e;
            assert_int_equal(aud_chain_add(&ch[m->partition], m->offset, m->payload, m->len), 0);
            if (ev_envelope_decode(m->payload, m->len, &e, err, sizeof err) != 0)
                fail_msg("%s", err);
            if (e.aggregate_id.len == strlen(id) &&
                memcmp(e.aggregate_id.ptr, id, e.aggregate_id.len) == 0) {
                int n = snprintf(out + o, outlen - o, "%s%s@%lld", o ? "," : "",
                                 ev_event_type_name(e.payload_type), (long long)e.version);
                assert_true(n > 0 && (size_t)n < outlen - o);
                o += (size_t)n;
                assert_int_equal(m->partition, kq_kafka_partition_for(id, strlen(id), 6));
                if (e.payload_type == EV_RUN_STARTED && last_run_started != NULL) {
                    free(*keep);
                    *keep = malloc(m->len);
                    assert_non_null(*keep);
                    memcpy(*keep, m->payload, m->len);
                    assert_int_equal(
                        ev_envelope_decode(*keep, m->len, last_run_started, err, sizeof err), 0);
                }
            }
        }
        rd_kafka_message_destroy(m);
    }
    for (int p = 0; p < 6; p++) {
        aud_chain_finish(&ch[p]);
        if (ch[p].brk != AUD_INTACT)
            fail_msg("%s partition %d: %s", topic, p, ch[p].brk_msg);
    }
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
}

/* After a restart: the state refuses what was recorded. */
static void check_refusals_after_restart(fixture *f)
{
    outcome o;
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
    wait_one(&o);
    assert_int_equal(o.status, 201);
    assert_int_equal(o.version, 1);
    assert_true(o.has_secret);
    assert_string_equal(o.secret, "s3cret");
}

/* Make the snapshot in `dir` look like a v3 one with a record v4 cannot read
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
    assert_memory_equal(m, "kcqrs.commands.v4", 18);
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
    fixture f;
    outcome o, o2, o3;
    char got[1024], dir[] = "/tmp/test_cmd_wf_writerXXXXXX", cmd[128];
    ev_envelope rs;
    uint8_t *keep = NULL;
    ev_step st0;

    (void)state;
    assert_non_null(mkdtemp(dir));
    start(&f);

    wf_create(&f, &o, "wf-1", "s3cret", 2, "k-wf");
    wait_one(&o);
    assert_int_equal(o.status, 201);
    assert_int_equal(o.version, 1);
    assert_true(o.has_secret);
    assert_string_equal(o.secret, "s3cret");
    token_topic(&o, "u.workflow.events", "wf-1");

    /* manual start; webhook with a wrong secret (401, nothing appended), with the right one */
    run_start(&f, &o, "run-1", "wf-1", NULL);
    run_start(&f, &o2, "run-x", "wf-1", "s3cre");
    run_start(&f, &o3, "run-2", "wf-1", "s3cret");
    wait_one(&o);
    wait_one(&o2);
    wait_one(&o3);
    assert_int_equal(o.status, 202);
    assert_int_equal(o.version, 1);
    assert_string_equal(o.id, "run-1");
    token_topic(&o, "u.run.events", "run-1");
    assert_int_equal(o2.status, 401);
    assert_string_equal(o2.code, "invalid_webhook_secret");
    assert_int_equal(o3.status, 202);
    run_start(&f, &o, "run-y", "wf-none", NULL);
    wait_one(&o);
    assert_int_equal(o.status, 404);

    /* attempts of run-1: retry, repeat (409 attempt_recorded), gap, wrong step */
    do_attempt(&f, &o, "run-1", 0, 1, CMD_OUT_RETRY);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.version, 2);
    token_topic(&o, "u.run.events", "run-1");
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
    wait_one(&o);
    assert_int_equal(o.status, 202);
    do_attempt(&f, &o, "run-3", 0, 1, CMD_OUT_FAILED);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.version, 4);
    do_attempt(&f, &o, "run-3", 0, 2, CMD_OUT_RETRY);
    assert_int_equal(o.status, 409);
    assert_string_equal(o.code, "run_finished");

    /* update name + enabled = WorkflowUpdated + WorkflowDisabled; then a start is 409 */
    {
        cmd_item *it = item(&o, CMD_WF_UPDATE, "wf-1");
        it->cmd.fields = CMD_F_NAME | CMD_F_ENABLED;
        it->cmd.name = strdup("renamed");
        it->cmd.enabled = 0;
        submit_item(&f, it);
        wait_one(&o);
        assert_int_equal(o.status, 200);
        assert_int_equal(o.version, 3);
        assert_false(o.has_secret);
    }
    run_start(&f, &o, "run-4", "wf-1", NULL);
    wait_one(&o);
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
    cmd_writer_free(f.w);
    start_writer(&f);
    check_refusals_after_restart(&f);
    /* with a snapshot: written at the stop, then loaded (nothing left to read) */
    cmd_writer_free(f.w);
    f.snapshot_dir = dir;
    start_writer(&f);
    cmd_writer_free(f.w);
    start_writer(&f);
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
    cmd_writer_free(f.w);
    downgrade_snapshot(dir);
    start_writer(&f);
    {
        const cmd_run *r = cmd_state_run(cmd_writer_state(f.w), "run-2");
        assert_non_null(r);
        assert_int_equal(r->version, 4);
        assert_int_equal(r->step, 1);
        assert_int_equal(r->attempts, 0);
        assert_null(cmd_state_resource(cmd_writer_state(f.w), "stale"));
    }
    cmd_writer_free(f.w);
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
    start_writer(&f);
    stop(&f);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Commands of one batch on one workflow and its runs see each other: the
 * create, a run started on it and an attempt of that run in one transaction. */
static void test_batch_overlay_writer(void **state)
{
    fixture f;
    outcome o[4];
    char got[512];

    (void)state;
    start(&f);
    wf_create(&f, &o[0], "wf-b", "sec", 1, NULL);
    run_start(&f, &o[1], "run-b", "wf-b", "sec");
    attempt(&f, &o[2], "run-b", 0, 1, CMD_OUT_SUCCEEDED);
    attempt(&f, &o[3], "run-b", 0, 2, CMD_OUT_SUCCEEDED);
    for (int i = 0; i < 4; i++)
        wait_one(&o[i]);
    assert_int_equal(o[0].status, 201);
    assert_int_equal(o[1].status, 202);
    assert_int_equal(o[2].status, 200);
    assert_int_equal(o[2].version, 4); /* StepAttempted, StepSucceeded, RunSucceeded */
    assert_int_equal(o[3].status, 409);
    assert_string_equal(o[3].code, "run_finished");
    read_aggregate(&f, "u.run.events", "run-b", got, sizeof got, NULL, NULL);
    assert_string_equal(got, "RunStarted@1,StepAttempted@2,StepSucceeded@3,RunSucceeded@4");
    stop(&f);
}

/* A failed transaction with multi-event commands (an attempt that ends the
 * run, a workflow update with two events): every command of the batch gets
 * 503, the state and the chain heads do not move, and the retries get the
 * versions the failed ones would have had; the log holds each event once. */
static void test_failed_transaction(void **state)
{
    fixture f;
    outcome o[2];
    char got[512];
    double t0;

    (void)state;
    start(&f);
    wf_create(&f, &o[0], "wf-f", "sec", 1, NULL);
    wait_one(&o[0]);
    assert_int_equal(o[0].status, 201);
    run_start(&f, &o[0], "run-f", "wf-f", NULL);
    wait_one(&o[0]);
    assert_int_equal(o[0].status, 202);

    /* The mock cluster hands aborted records to read_committed consumers, so
     * the transaction fails before its records are sent (AddPartitionsToTxn
     * refused): the writer had chained them already and must forget them. */
    rd_kafka_mock_push_request_errors(f.mc, 24 /* AddPartitionsToTxn */, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    attempt(&f, &o[0], "run-f", 0, 1, CMD_OUT_SUCCEEDED);
    {
        cmd_item *it = item(&o[1], CMD_WF_UPDATE, "wf-f");
        it->cmd.fields = CMD_F_NAME | CMD_F_ENABLED;
        it->cmd.name = strdup("other");
        it->cmd.enabled = 0;
        submit_item(&f, it);
    }
    wait_one(&o[0]);
    wait_one(&o[1]);
    assert_int_equal(o[0].status, 503);
    assert_int_equal(o[1].status, 503);
    assert_int_equal(cmd_state_run(cmd_writer_state(f.w), "run-f")->version, 1);

    /* retried until the writer is back: the same versions */
    t0 = now_s();
    do {
        do_attempt(&f, &o[0], "run-f", 0, 1, CMD_OUT_SUCCEEDED);
        if (o[0].status == 503) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
    } while (o[0].status == 503 && now_s() - t0 < 30);
    assert_int_equal(o[0].status, 200);
    assert_int_equal(o[0].version, 4);
    {
        cmd_item *it = item(&o[1], CMD_WF_UPDATE, "wf-f");
        it->cmd.fields = CMD_F_NAME | CMD_F_ENABLED;
        it->cmd.name = strdup("other");
        it->cmd.enabled = 0;
        submit_item(&f, it);
        wait_one(&o[1]);
    }
    assert_int_equal(o[1].status, 200);
    assert_int_equal(o[1].version, 3);
    read_aggregate(&f, "u.run.events", "run-f", got, sizeof got, NULL, NULL);
    assert_string_equal(got, "RunStarted@1,StepAttempted@2,StepSucceeded@3,RunSucceeded@4");
    read_aggregate(&f, "u.workflow.events", "wf-f", got, sizeof got, NULL, NULL);
    assert_string_equal(got, "WorkflowCreated@1,WorkflowUpdated@2,WorkflowDisabled@3");
    stop(&f);
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
