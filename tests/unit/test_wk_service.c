/*
 * test_wk_service.c — kcqrs-worker's service loop (wk_service.h) driven
 * without Kafka: real encoded run events fed as consumer messages, the
 * engine sending to an in-process receiver and the record client posting to
 * an in-process fake kcqrs-commands (one libmicrohttpd daemon on 127.0.0.1
 * serves both). A run starts only once its partition was read to the end;
 * records of partitions not assigned are dropped; a 200 step is sent once,
 * recorded (outcome, attempt, delivery id) and the run finishes with the
 * 200 answer; a retry is recorded with its delay and the run stays open; a
 * 409 leaves the run waiting for the log (no attempt is sent again until
 * the log shows the run moving on); a 404 (the run finished and was pruned
 * by kcqrs-commands) drops the run, its step never sent again; a revoke
 * forgets the runs; an event the run fold refuses is counted, not applied.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ev_codec.h"
#include "kq_err.h"
#include "test_wk_recv.h"
#include "wk_service.h"

/* ---- the receiver and fake kcqrs-commands (test_wk_recv.h) ---- */

typedef struct seen {
    int hooks;          /* action requests (/status/N) */
    char delivery[256]; /* of the last one */
    int records;        /* record requests (/internal/v1/runs/...) */
    char path[128];     /* of the last one */
    char body[2048];
} seen;

/* What the server has received since the last reset. */
static seen received(void)
{
    seen v;

    memset(&v, 0, sizeof v);
    pthread_mutex_lock(&recv_mu);
    for (size_t i = 0; i < recv_n; i++) {
        const recv_entry *e = &recv_log[i];
        if (strncmp(e->path, "/status/", 8) == 0) {
            v.hooks++;
            snprintf(v.delivery, sizeof v.delivery, "%s", e->delivery);
        } else if (strncmp(e->path, "/internal/v1/runs/", 18) == 0) {
            v.records++;
            snprintf(v.path, sizeof v.path, "%s", e->path);
            snprintf(v.body, sizeof v.body, "%.*s", (int)e->len, e->body ? e->body : "");
        }
    }
    pthread_mutex_unlock(&recv_mu);
    return v;
}

static void reset(int status, long version)
{
    recv_reset();
    pthread_mutex_lock(&recv_mu);
    recv_commands_status = status;
    recv_commands_version = version;
    pthread_mutex_unlock(&recv_mu);
}

/* ---- events ---- */

static ev_fb_builder fb;

/* Feed one encoded run event of `id` (version v) at (part, off). */
static void feed(wk_service *svc, ev_envelope *e, const char *id, int64_t v, int32_t part,
                 int64_t off)
{
    char err[256];
    const uint8_t *p;
    size_t len;
    rd_kafka_message_t m;

    e->aggregate_id = ev_str_c(id);
    e->version = v;
    e->occurred_at_us = (int64_t)time(NULL) * 1000000;
    e->actor = ev_str_c("test");
    memset(e->event_id.bytes, (int)v, sizeof e->event_id.bytes);
    if (ev_envelope_encode(&fb, e, err, sizeof err) != 0)
        fail_msg("encode: %s", err);
    p = ev_fb_builder_data(&fb, &len);
    memset(&m, 0, sizeof m);
    m.partition = part;
    m.offset = off;
    m.payload = (void *)p;
    m.len = len;
    wk_service_handle_message(svc, &m);
}

static void feed_started(wk_service *svc, const char *id, const char *hook, int32_t part,
                         int64_t off)
{
    ev_envelope e;
    ev_step st;
    char url[128];

    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", recv_port, hook);
    memset(&st, 0, sizeof st);
    st.action_type = EV_ACTION_HTTP;
    st.action.http.method = EV_HTTP_POST;
    st.action.http.url = ev_str_c(url);
    ev_envelope_init(&e, EV_RUN_STARTED);
    e.payload.run_started.workflow_id = ev_str_c("wf1");
    e.payload.run_started.workflow_version = 1;
    e.payload.run_started.payload_json = ev_str_c("{\"a\":1}");
    e.payload.run_started.step_count = 1;
    e.payload.run_started.steps = ev_step_list_of(&st, 1);
    feed(svc, &e, id, 1, part, off);
}

static void feed_eof(wk_service *svc, int32_t part, int64_t off)
{
    rd_kafka_message_t m;

    memset(&m, 0, sizeof m);
    m.err = RD_KAFKA_RESP_ERR__PARTITION_EOF;
    m.partition = part;
    m.offset = off;
    wk_service_handle_message(svc, &m);
}

/* The value of metric `name` (a line "name value"), -1 when absent. */
static long metric(wk_service *svc, const char *name)
{
    char *buf = NULL, *p;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    long v = -1;
    size_t n = strlen(name);

    assert_non_null(f);
    wk_service_metrics(svc, f);
    fclose(f);
    for (p = buf; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, name, n) == 0 && p[n] == ' ') {
            v = strtol(p + n + 1, NULL, 10);
            break;
        }
    free(buf);
    return v;
}

/* Run rounds until `records` records arrived (or 5 s pass); what was received. */
static seen rounds_until(wk_service *svc, int records)
{
    for (int i = 0; i < 250 && received().records < records; i++)
        wk_service_round(svc, 20);
    return received();
}

/* Rounds until the metric has the value (or 5 s pass). */
static long rounds_until_metric(wk_service *svc, const char *name, long want)
{
    long v = -2;

    for (int i = 0; i < 250 && (v = metric(svc, name)) != want; i++)
        wk_service_round(svc, 20);
    return v;
}

static wk_service *new_service(void)
{
    wk_service_settings s;
    wk_service *svc = NULL;
    char url[64], err[256];

    memset(&s, 0, sizeof s);
    snprintf(url, sizeof url, "http://127.0.0.1:%u", recv_port);
    s.topic = "t.run.events";
    s.partitions = 4;
    s.max_runs = 8;
    s.drain_ms = 3000;
    wk_policy_defaults(&s.policy);
    s.policy.base_ms = 400;
    s.policy.cap_ms = 400;
    wk_settings_defaults(&s.engine);
    s.engine.allow_private = 1;
    s.engine.total_timeout_ms = 3000;
    wk_breaker_defaults(&s.breaker);
    s.record.base_url = url;
    s.record.key = "wk-key";
    s.record.timeout_ms = 3000;
    s.record.retry_base_ms = 50;
    s.record.retry_cap_ms = 200;
    if (wk_service_new(&s, &svc, err, sizeof err) != 0)
        fail_msg("wk_service_new: %s", err);
    return svc;
}

static void test_succeeds_once_ready(void **state)
{
    (void)state;
    wk_service *svc = new_service();
    int32_t p0 = 0;
    json_error_t je;
    json_t *rec;
    seen got;

    reset(200, 4); /* StepAttempted 2, StepSucceeded 3, RunSucceeded 4 */
    wk_service_assign(svc, &p0, 1);
    assert_int_equal(metric(svc, "kcqrs_worker_partitions_assigned"), 1);
    feed_started(svc, "run-a", "/status/200", 0, 5);
    feed_started(svc, "run-x", "/status/200", 2, 9); /* partition 2 is not assigned: dropped */
    assert_int_equal(metric(svc, "kcqrs_worker_runs_open"), 1);
    /* not read to the end yet: nothing is sent */
    for (int i = 0; i < 10; i++)
        wk_service_round(svc, 10);
    assert_int_equal(received().hooks, 0);
    feed_eof(svc, 0, 6);
    got = rounds_until(svc, 1);
    assert_int_equal(got.records, 1);
    assert_int_equal(got.hooks, 1);
    assert_string_equal(got.delivery, "run-a.0");
    assert_string_equal(got.path, "/internal/v1/runs/run-a/attempts");
    assert_true(recv_count() >= 2); /* the step, its record (and /health probes) */
    rec = json_loads(got.body, 0, &je);
    assert_non_null(rec);
    assert_string_equal(json_string_value(json_object_get(rec, "outcome")), "succeeded");
    assert_int_equal(json_integer_value(json_object_get(rec, "attempt")), 1);
    assert_int_equal(json_integer_value(json_object_get(rec, "step")), 0);
    assert_int_equal(json_integer_value(json_object_get(rec, "status_code")), 200);
    assert_string_equal(json_string_value(json_object_get(rec, "delivery_id")), "run-a.0");
    json_decref(rec);
    /* the 200 answer finishes the run: forgotten, nothing sent again */
    assert_int_equal(rounds_until_metric(svc, "kcqrs_worker_runs_finished_total", 1), 1);
    assert_int_equal(metric(svc, "kcqrs_worker_runs_open"), 0);
    assert_int_equal(metric(svc, "kcqrs_worker_attempts_total"), 1);
    for (int i = 0; i < 10; i++)
        wk_service_round(svc, 10);
    assert_int_equal(received().hooks, 1);
    /* the log brings the same events later: re-reads, skipped (the run is gone) */
    {
        ev_envelope e;
        ev_envelope_init(&e, EV_RUN_SUCCEEDED);
        feed(svc, &e, "run-a", 4, 0, 8);
    }
    assert_int_equal(metric(svc, "kcqrs_worker_events_refused_total"), 0);
    wk_service_free(svc);
}

static void test_retry_and_conflict(void **state)
{
    (void)state;
    wk_service *svc = new_service();
    int32_t p1 = 1;
    json_error_t je;
    json_t *rec;
    seen got;

    reset(200, 2); /* the retry's StepAttempted is version 2 */
    wk_service_assign(svc, &p1, 1);
    feed_eof(svc, 1, 0);
    feed_started(svc, "run-r", "/status/503", 1, 0);
    got = rounds_until(svc, 1);
    assert_int_equal(got.records, 1);
    rec = json_loads(got.body, 0, &je);
    assert_non_null(rec);
    assert_string_equal(json_string_value(json_object_get(rec, "outcome")), "retry");
    assert_true(json_integer_value(json_object_get(rec, "next_delay_ms")) <= 400);
    assert_int_equal(json_integer_value(json_object_get(rec, "status_code")), 503);
    json_decref(rec);
    /* open, and attempt 2 follows after the delay; this time commands answers 409 */
    reset(409, 0);
    got = rounds_until(svc, 1);
    assert_int_equal(got.records, 1);
    assert_non_null(strstr(got.body, "\"attempt\":2"));
    assert_int_equal(metric(svc, "kcqrs_worker_runs_open"), 1);
    /* waiting for the log: no third attempt while it shows nothing new */
    for (int i = 0; i < 60; i++)
        wk_service_round(svc, 10);
    assert_int_equal(received().records, 1);
    assert_int_equal(metric(svc, "kcqrs_worker_runs_in_flight"), 0);
    /* an event the rule refuses (a gap) is counted and changes nothing */
    {
        ev_envelope e;
        ev_envelope_init(&e, EV_STEP_SUCCEEDED);
        e.payload.step_succeeded.step = 0;
        e.payload.step_succeeded.attempt = 2;
        feed(svc, &e, "run-r", 9, 1, 1);
    }
    assert_int_equal(metric(svc, "kcqrs_worker_events_refused_total"), 1);
    assert_int_equal(metric(svc, "kcqrs_worker_runs_open"), 1);
    assert_int_equal(received().records, 1);
    /* the log shows attempt 2 (version 3): the run wakes up and attempt 3 goes out */
    reset(200, 4);
    {
        ev_envelope e;
        ev_envelope_init(&e, EV_STEP_ATTEMPTED);
        e.payload.step_attempted.step = 0;
        e.payload.step_attempted.attempt = 2;
        e.payload.step_attempted.has_status_code = true;
        e.payload.step_attempted.status_code = 503;
        e.payload.step_attempted.has_next_delay_ms = true;
        e.payload.step_attempted.next_delay_ms = 0;
        e.payload.step_attempted.delivery_id = ev_str_c("run-r.0");
        feed(svc, &e, "run-r", 3, 1, 2);
    }
    got = rounds_until(svc, 1);
    assert_int_equal(got.records, 1);
    assert_non_null(strstr(got.body, "\"attempt\":3"));
    /* a revoke forgets the partition's runs */
    wk_service_revoke(svc, &p1, 1);
    assert_int_equal(metric(svc, "kcqrs_worker_runs_open"), 0);
    assert_int_equal(metric(svc, "kcqrs_worker_partitions_assigned"), 0);
    wk_service_free(svc);
}

/* 404 on a record: kcqrs-commands pruned the run (finished longer ago than
 * KCQRS_IDEMPOTENCY_TTL): the run is dropped at once, not left waiting for
 * the log (which would send the step again after WK_SERVICE_WAIT_LOG_MS). */
static void test_record_404_drops_run(void **state)
{
    (void)state;
    wk_service *svc = new_service();
    int32_t p2 = 2;
    seen got;

    reset(404, 0);
    wk_service_assign(svc, &p2, 1);
    feed_eof(svc, 2, 0);
    feed_started(svc, "run-gone", "/status/503", 2, 0);
    got = rounds_until(svc, 1);
    assert_int_equal(got.records, 1);
    assert_int_equal(got.hooks, 1);
    assert_int_equal(rounds_until_metric(svc, "kcqrs_worker_runs_open", 0), 0);
    for (int i = 0; i < 60; i++)
        wk_service_round(svc, 10);
    got = received();
    assert_int_equal(got.hooks, 1);
    assert_int_equal(got.records, 1);
    assert_int_equal(metric(svc, "kcqrs_worker_runs_in_flight"), 0);
    wk_service_free(svc);
}

static int setup(void **state)
{
    (void)state;
    if (recv_start() != 0)
        return -1;
    ev_fb_builder_init(&fb);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    recv_stop();
    ev_fb_builder_free(&fb);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_succeeds_once_ready),
        cmocka_unit_test(test_retry_and_conflict),
        cmocka_unit_test(test_record_404_drops_run),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
