/*
 * bench_cmd_mem.c — memory of the command-side state per item (issue #19
 * item 6): loads N items of each kind into a cmd_state through the one
 * apply path (envelopes encoded and applied from their bytes with
 * cmd_aggregate_apply, as catch-up and the writer do) and reports the heap
 * bytes per item, measured as the growth of glibc's allocated bytes
 * (mallinfo2().uordblks: payload plus malloc's per-chunk overhead) divided
 * by N. Then it advances the state's clock past KCQRS_IDEMPOTENCY_TTL and
 * prunes (cmd_state_expire), reporting what is left.
 *
 *   bench_cmd_mem [N]       (default 100000)
 *
 * Kinds: a resource (16-byte name, no description) without a key; the same
 * with a 36-byte Idempotency-Key and with a 255-byte one (the difference
 * is the key's cost); an open run and a finished run (3 events, no key);
 * the snapshot delta is off (tracking off: it is handed to the snapshot
 * thread and freed as it goes, not part of the steady state).
 * Output: one line per kind, "kind bytes_per_item N".
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_state.h"
#include "ev_codec.h"
#include "kq_err.h"

static int64_t fake_now = 1700000000000000;
static int64_t clock_now(void)
{
    return fake_now;
}

static ev_fb_builder fb;

static void apply(cmd_state *st, int topic, ev_envelope *e, int64_t *off)
{
    char err[256];
    const uint8_t *buf;
    size_t len;

    e->occurred_at_us = fake_now;
    e->actor = ev_str_c("bench");
    e->correlation_id = ev_str_c("c");
    if (ev_envelope_encode(&fb, e, err, sizeof err) != 0) {
        fprintf(stderr, "encode: %s\n", err);
        exit(1);
    }
    buf = ev_fb_builder_data(&fb, &len);
    if (cmd_aggregate_apply(st, topic, buf, len, 0, (*off)++, err, sizeof err) != 0) {
        fprintf(stderr, "apply: %s\n", err);
        exit(1);
    }
}

static size_t heap(void)
{
    return mallinfo2().uordblks;
}

/* N resources, with a key of keylen bytes (0: none). */
static void load_resources(cmd_state *st, int n, size_t keylen, const char *tag)
{
    char id[64], key[300];
    int64_t off = 0;
    uint8_t hash[CMD_HASH_LEN];

    memset(hash, 7, sizeof hash);
    for (int i = 0; i < n; i++) {
        ev_envelope e;
        snprintf(id, sizeof id, "%s-%08d", tag, i);
        ev_envelope_init(&e, EV_RESOURCE_CREATED);
        e.aggregate_id = ev_str_c(id);
        e.version = 1;
        e.payload.resource_created.name = ev_str_c("a resource name.");
        e.payload.resource_created.status = EV_STATUS_ACTIVE;
        if (keylen > 0) {
            int k = snprintf(key, sizeof key, "%s-%08d-", tag, i);
            memset(key + k, 'k', keylen - (size_t)k);
            key[keylen] = '\0';
            e.command_id = ev_str_c(key);
            e.command_hash.ptr = hash;
            e.command_hash.len = CMD_HASH_LEN;
        }
        apply(st, CMD_TOPIC_RESOURCE, &e, &off);
    }
}

/* N runs of one step; finished: attempt succeeded (StepAttempted,
 * StepSucceeded, RunSucceeded). */
static void load_runs(cmd_state *st, int n, int finished)
{
    char id[64];
    int64_t off = 0;
    ev_step step;
    ev_envelope e;

    memset(&step, 0, sizeof step);
    step.action_type = EV_ACTION_HTTP;
    step.action.http.method = EV_HTTP_POST;
    step.action.http.url = ev_str_c("http://h/x");
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "%08d-0000-4000-8000-%s", i,
                 finished ? "fin000000000" : "open00000000");
        ev_envelope_init(&e, EV_RUN_STARTED);
        e.aggregate_id = ev_str_c(id);
        e.version = 1;
        e.payload.run_started.workflow_id = ev_str_c("wf");
        e.payload.run_started.workflow_version = 1;
        e.payload.run_started.payload_json = ev_str_c("{}");
        e.payload.run_started.step_count = 1;
        e.payload.run_started.steps = ev_step_list_of(&step, 1);
        apply(st, CMD_TOPIC_RUN, &e, &off);
        if (!finished)
            continue;
        ev_envelope_init(&e, EV_STEP_ATTEMPTED);
        e.aggregate_id = ev_str_c(id);
        e.version = 2;
        e.payload.step_attempted.attempt = 1;
        e.payload.step_attempted.duration_ms = 1;
        e.payload.step_attempted.delivery_id = ev_str_c("d");
        apply(st, CMD_TOPIC_RUN, &e, &off);
        ev_envelope_init(&e, EV_STEP_SUCCEEDED);
        e.aggregate_id = ev_str_c(id);
        e.version = 3;
        e.payload.step_succeeded.attempt = 1;
        apply(st, CMD_TOPIC_RUN, &e, &off);
        ev_envelope_init(&e, EV_RUN_SUCCEEDED);
        e.aggregate_id = ev_str_c(id);
        e.version = 4;
        apply(st, CMD_TOPIC_RUN, &e, &off);
    }
}

static cmd_state st;

static void fresh(void)
{
    if (cmd_state_init(&st, 6) != 0)
        exit(1);
    st.clock_us = clock_now;
    cmd_state_set_ttl(&st, 86400LL * 1000000);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100000;
    size_t h0, h1;
    double res_plain, per;

    if (n < 1)
        return 2;
    ev_fb_builder_init(&fb);
    printf("# bytes per item of the command-side state, N=%d (mallinfo2 uordblks growth / N)\n", n);

    fresh();
    h0 = heap();
    load_resources(&st, n, 0, "plain");
    h1 = heap();
    res_plain = (double)(h1 - h0) / n;
    printf("resource %.0f %d\n", res_plain, n);
    cmd_state_free(&st);

    fresh();
    h0 = heap();
    load_resources(&st, n, 36, "k36");
    per = (double)(heap() - h0) / n;
    printf("resource+key36 %.0f %d\n", per, n);
    printf("key36 %.0f %d\n", per - res_plain, n);
    cmd_state_free(&st);

    fresh();
    h0 = heap();
    load_resources(&st, n, 255, "k255");
    per = (double)(heap() - h0) / n;
    printf("resource+key255 %.0f %d\n", per, n);
    printf("key255 %.0f %d\n", per - res_plain, n);
    /* past the window: every key goes, the resources stay */
    fake_now += 86400LL * 1000000;
    h0 = heap();
    while (cmd_state_expire(&st, 4096) > 0)
        ;
    printf("key255_pruned_freed %.0f %d\n", (double)(h0 - heap()) / n, n);
    printf("keys_left %zu %d\n", cmd_state_idem_count(&st), n);
    cmd_state_free(&st);
    fake_now -= 86400LL * 1000000;

    fresh();
    h0 = heap();
    load_runs(&st, n, 0);
    printf("run_open %.0f %d\n", (double)(heap() - h0) / n, n);
    cmd_state_free(&st);

    fresh();
    h0 = heap();
    load_runs(&st, n, 1);
    printf("run_finished %.0f %d\n", (double)(heap() - h0) / n, n);
    fake_now += 86400LL * 1000000;
    while (cmd_state_expire(&st, 4096) > 0)
        ;
    printf("runs_left_after_window %zu %d\n", cmd_state_run_count(&st), n);
    cmd_state_free(&st);
    ev_fb_builder_free(&fb);
    return 0;
}
