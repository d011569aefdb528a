/*
 * proj_runner.c — see proj_runner.h: a runner's life and its two threads'
 * loops. The other parts of a runner: proj_runner_int.h.
 */
#include "proj_runner_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kq_err.h"
#include "kq_keyring.h"
#include "kq_log.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define STANDBY_POLL_MS 200 /* between a standby's waits for the lock (proj_pg_take_active) */

/* Sleep `ms`, waking early when asked to stop. */
static void nap(proj_runner *r, int ms)
{
    while (ms > 0 && !atomic_load(&r->stop)) {
        int step = ms < 50 ? ms : 50;
        nanosleep(&(struct timespec){0, step * 1000000L}, NULL);
        ms -= step;
    }
}

static void on_offset(void *arg, const char *topic, int32_t partition, int64_t next_offset)
{
    proj_runner *r = arg;
    int i = proj_runner_part_index(r, topic, partition);

    if (i >= 0)
        atomic_store(&r->next[i], next_offset);
}

static void check_at_end(proj_runner *r)
{
    if (!r->exit_at_end || !r->have_end || atomic_load(&r->at_end))
        return;
    for (int i = 0; i < r->nparts; i++)
        if (atomic_load(&r->next[i]) < r->end[i])
            return;
    kq_log_info("%s: reached the end offsets observed at start", r->ops->name);
    atomic_store(&r->at_end, 1);
}

/* ------------------------------------------------------------ apply stage */

/* One span per applied event of batch b that carried a trace context (tracing on): a
 * child of the record's context, the batch's apply time, the target's name. */
static void trace_applied(proj_runner *r, const rbatch *b, int64_t t0_ns, int64_t t1_ns)
{
    char name[64];

    snprintf(name, sizeof name, "apply %s", r->ops->name);
    for (size_t k = 0; k < b->b.n; k++) {
        const proj_event *ev = &b->b.ev[k];
        const char *et;
        kq_span sp;

        if (!ev->has_trace || !ev->decoded)
            continue;
        (void)kq_span_start(&sp, &ev->trace, KQ_SPAN_CONSUMER, name);
        sp.start_ns = t0_ns;
        sp.end_ns = t1_ns;
        et = ev_event_type_name(ev->env.payload_type);
        kq_span_attr_str(&sp, "kcqrs.target", r->ops->name);
        kq_span_attr_strn(&sp, "kcqrs.aggregate_id", ev->env.aggregate_id.ptr,
                          ev->env.aggregate_id.len);
        kq_span_attr_str(&sp, "kcqrs.event_type", et ? et : "?");
        kq_span_attr_int(&sp, "kcqrs.version", ev->env.version);
        kq_span_attr_int(&sp, "kcqrs.batch_events", (int64_t)b->b.n);
        kq_span_attr_str(&sp, "messaging.destination.name", ev->topic);
        kq_span_attr_int(&sp, "messaging.kafka.destination.partition", ev->partition);
        kq_span_attr_int(&sp, "messaging.kafka.offset", ev->offset);
        kq_span_end(&sp);
    }
}

static void *apply_main(void *arg)
{
    proj_runner *r = arg;

    pthread_mutex_lock(&r->mu);
    for (;;) {
        rbatch *b;
        long long t0;
        int64_t t0_ns;
        int rc;

        while (!r->job && !r->quit)
            pthread_cond_wait(&r->cv, &r->mu);
        if (!r->job)
            break;
        r->job = 0;
        b = r->inflight;
        pthread_mutex_unlock(&r->mu);
        t0 = kq_time_mono_us();
        t0_ns = kq_trace_exporting() ? kq_trace_now_ns() : 0;
        r->aerr[0] = '\0';
        rc = r->ops->apply(r->t, &b->b, proj_runner_dead_letter, r, r->aerr, sizeof r->aerr);
        t0 = kq_time_mono_us() - t0;
        if (rc == 0 && t0_ns != 0)
            trace_applied(r, b, t0_ns, kq_trace_now_ns());
        pthread_mutex_lock(&r->mu);
        r->arc = rc;
        r->apply_us = t0;
        atomic_store(&r->done, 1);
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Hand r->cur (checked, dead letters sent) to the apply thread, which is idle;
 * gathering continues into the other buffer. */
static void apply_post(proj_runner *r)
{
    pthread_mutex_lock(&r->mu);
    r->inflight = r->cur;
    r->cur = r->cur == &r->bt[0] ? &r->bt[1] : &r->bt[0];
    atomic_store(&r->done, 0);
    r->job = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Wait for the batch being applied. On success publish its offsets and
 * metrics; either way release it (the apply thread is idle afterwards).
 * 0 or the target's error (err filled). */
static int apply_wait(proj_runner *r, char *err, size_t errlen)
{
    rbatch *b = r->inflight;
    long long us;
    int rc;

    pthread_mutex_lock(&r->mu);
    while (!atomic_load(&r->done))
        pthread_cond_wait(&r->cv, &r->mu);
    rc = r->arc;
    us = r->apply_us;
    if (rc != 0)
        snprintf(err, errlen, "%s", r->aerr[0] != '\0' ? r->aerr : "apply failed");
    pthread_mutex_unlock(&r->mu);
    if (rc == 0) {
        proj_runner_observe(r, b->n, us);
        for (int k = 0; k < b->ntouched; k++)
            atomic_store(&r->next[b->touched[k]], b->batch_next[b->touched[k]]);
        atomic_fetch_add(&r->applied, b->nvalid);
        atomic_fetch_add(&r->batches, 1);
    }
    r->inflight = NULL;
    proj_runner_batch_release(b);
    return rc;
}

/* Needs the apply thread idle (no batch in flight). */
static void close_target(proj_runner *r)
{
    atomic_store(&r->connected, 0);
    proj_runner_consumer_close(r);
    if (r->t != NULL) {
        r->ops->close(r->t);
        r->t = NULL;
    }
}

static void *run(void *arg)
{
    proj_runner *r = arg;
    char err[1024];
    int backoff = BACKOFF_MIN_MS;

    for (;;) {
        /* With exit_at_end the thread is done once the end offsets are stored. */
        int ending = atomic_load(&r->stop) || (r->exit_at_end && atomic_load(&r->at_end));
        int rc = 0;

        if (ending && r->inflight == NULL)
            break;
        if (r->t == NULL) { /* closed: nothing in flight, nothing gathered */
            if ((rc = r->ops->open(r->cfg, r->ops->open_arg, &r->t, err, sizeof err)) != 0) {
                r->t = NULL;
                goto failed;
            }
            for (int i = 0; i < r->nparts; i++)
                atomic_store(&r->next[i], 0);
            if ((rc = r->ops->load_offsets(r->t, on_offset, r, err, sizeof err)) != 0 ||
                (r->exit_at_end && !r->have_end &&
                 (rc = proj_runner_query_ends(r, err, sizeof err)) != 0))
                goto failed;
            if (!atomic_load(&r->have_goal)) {
                for (int i = 0; i < r->nparts; i++)
                    r->start[i] = atomic_load(&r->next[i]);
                atomic_store(&r->have_goal, r->have_end ? 1 : 2);
            }
            if ((rc = proj_runner_consumer_open(r, err, sizeof err)) != 0)
                goto failed;
            if (atomic_load(&r->standby))
                kq_log_info("%s: took over as the active target", r->ops->name);
            atomic_store(&r->connected, 1);
            atomic_store(&r->standby, 0);
            kq_log_info("%s: target open, consuming %d partitions from its stored offsets",
                        r->ops->name, r->nparts);
            check_at_end(r);
            continue; /* exit_at_end may already hold */
        }
        if (!ending) { /* batch N+1, while batch N is applied */
            proj_runner_gather(r);
            proj_runner_check_batch(r, r->cur);
        }
        if (r->inflight != NULL) {
            if ((rc = apply_wait(r, err, sizeof err)) != 0) {
                proj_runner_batch_release(r->cur); /* checked against a state that was not stored */
                goto failed;
            }
            backoff = BACKOFF_MIN_MS;
            check_at_end(r);
        }
        if (r->cur->n > 0 || r->cur->ntouched > 0) {
            if ((rc = proj_runner_dead_letter_batch(r, r->cur, err, sizeof err)) != 0) {
                proj_runner_batch_release(r->cur);
                goto failed;
            }
            apply_post(r);
        }
        proj_runner_refresh_watermarks(r);
        continue;
    failed:              /* nothing in flight, nothing gathered */
        if (r->replay) { /* fail fast: the driver decides */
            snprintf(r->failed_err, sizeof r->failed_err, "%s", err);
            atomic_store(&r->failed, rc != 0 ? rc : KQ_EIO);
            kq_log_error("%s: %s", r->ops->name, err);
            break;
        }
        if (rc == KQ_EBUSY) { /* another process is the active one: stand by */
            if (!atomic_exchange(&r->standby, 1))
                kq_log_info("%s: %s; waiting to take over", r->ops->name, err);
            close_target(r);
            nap(r, STANDBY_POLL_MS);
            continue;
        }
        if (rc == KQ_ESWITCHED) { /* a new live model: reopen it now, from its offsets */
            kq_log_info("%s: %s; reopening", r->ops->name, err);
            close_target(r);
            continue;
        }
        atomic_fetch_add(&r->errors, 1);
        kq_log_error("%s: %s; retrying in %d ms", r->ops->name, err, backoff);
        close_target(r);
        proj_runner_query_watermarks(r); /* lag keeps growing while the target is down */
        nap(r, backoff);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    close_target(r);
    return NULL;
}

/* ------------------------------------------------------------ life */

/* End the apply thread (idle) and join it. */
static void apply_quit(proj_runner *r)
{
    if (!r->astarted)
        return;
    pthread_mutex_lock(&r->mu);
    r->quit = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->athread, NULL);
    r->astarted = 0;
}

static void runner_free(proj_runner *r)
{
    if (r == NULL)
        return;
    proj_dlq_free(r->dlq);
    kq_keyring_free(r->keys);
    if (r->wm != NULL)
        rd_kafka_destroy(r->wm);
    free(r->end);
    free(r->until);
    free(r->start);
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; r->bt[k].ev != NULL && i < (size_t)r->cfg->proj_batch_max; i++)
            free(r->bt[k].ev[i].plain);
        free(r->bt[k].batch_next);
        free(r->bt[k].touched);
        free(r->bt[k].msgs);
        free(r->bt[k].msg_part);
        free(r->bt[k].ev);
        free(r->bt[k].nx);
    }
    if (r->sync_init) {
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
    }
    free(r->next);
    free(r->high);
    free(r->eof_once);
    free(r);
}

int proj_runner_start(const kq_config *cfg, const proj_target_ops *ops, int exit_at_end,
                      proj_runner **out, char *errstr, size_t errlen)
{
    proj_runner_opts o;

    memset(&o, 0, sizeof o);
    o.exit_at_end = exit_at_end;
    return proj_runner_start_opts(cfg, ops, &o, out, errstr, errlen);
}

int proj_runner_start_opts(const kq_config *cfg, const proj_target_ops *ops,
                           const proj_runner_opts *o, proj_runner **out, char *errstr,
                           size_t errlen)
{
    char names[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX];
    proj_runner *r;
    size_t max = (size_t)cfg->proj_batch_max;
    int rc;

    *out = NULL;
    if (cfg->partitions < 1 || cfg->proj_batch_max < 1)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "partitions and batch size must be >= 1");
    if (kq_kafka_topic_names(cfg, names) < 0)
        return kq_seterr(errstr, errlen, KQ_ERANGE, "topic prefix too long");
    if ((r = calloc(1, sizeof *r)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    r->cfg = cfg;
    r->ops = ops;
    r->replay = o->replay != 0;
    r->exit_at_end = o->exit_at_end || r->replay;
    for (int ti = 0; ti < NTOPICS; ti++)
        memcpy(r->topics[ti], names[ti], KQ_KAFKA_TOPIC_MAX);
    r->np = cfg->partitions;
    r->nparts = NTOPICS * r->np;
    snprintf(r->group, sizeof r->group, "%s.projector.%s", cfg->topic_prefix, ops->name);
    r->end = calloc((size_t)r->nparts, sizeof *r->end);
    r->start = calloc((size_t)r->nparts, sizeof *r->start);
    r->until = malloc((size_t)r->nparts * sizeof *r->until);
    r->next = calloc((size_t)r->nparts, sizeof *r->next);
    r->high = calloc((size_t)r->nparts, sizeof *r->high);
    r->eof_once = calloc((size_t)r->nparts, sizeof *r->eof_once);
    if (!r->end || !r->start || !r->until || !r->next || !r->high || !r->eof_once) {
        runner_free(r);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    for (int k = 0; k < 2; k++) {
        rbatch *b = &r->bt[k];
        b->batch_next = malloc((size_t)r->nparts * sizeof *b->batch_next);
        b->touched = calloc((size_t)r->nparts, sizeof *b->touched);
        b->msgs = calloc(max, sizeof *b->msgs);
        b->msg_part = calloc(max, sizeof *b->msg_part);
        b->ev = calloc(max, sizeof *b->ev);
        b->nx = calloc((size_t)r->nparts, sizeof *b->nx);
        if (!b->batch_next || !b->touched || !b->msgs || !b->msg_part || !b->ev || !b->nx) {
            runner_free(r);
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        }
        for (int i = 0; i < r->nparts; i++)
            b->batch_next[i] = -1;
    }
    r->cur = &r->bt[0];
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        runner_free(r);
        return kq_seterr(errstr, errlen, KQ_EIO, "cannot create the runner's mutex");
    }
    if (pthread_cond_init(&r->cv, NULL) != 0) {
        pthread_mutex_destroy(&r->mu);
        runner_free(r);
        return kq_seterr(errstr, errlen, KQ_EIO, "cannot create the runner's condition");
    }
    r->sync_init = 1;
    for (int i = 0; i < r->nparts; i++) {
        r->until[i] = -1;
        atomic_store(&r->high[i], -1);
    }
    if (o->nuntil > 0 && !r->replay) {
        runner_free(r);
        return kq_seterr(errstr, errlen, KQ_EINVAL, "end offsets are for replays only");
    }
    for (size_t k = 0; k < o->nuntil; k++) {
        int i = proj_runner_part_index(r, o->until[k].topic, o->until[k].partition);
        if (i < 0 || o->until[k].next_offset < 0) {
            rc = kq_seterr(errstr, errlen, KQ_EINVAL,
                           "no partition %s [%" PRId32 "] (offset %" PRId64 ")", o->until[k].topic,
                           o->until[k].partition, o->until[k].next_offset);
            runner_free(r);
            return rc;
        }
        r->until[i] = o->until[k].next_offset;
    }
    if (!r->replay && (rc = proj_dlq_new(cfg, &r->dlq, errstr, errlen)) != 0) {
        runner_free(r);
        return rc;
    }
    {
        char wgroup[sizeof r->group + 4];
        snprintf(wgroup, sizeof wgroup, "%s.wm", r->group);
        if ((r->wm = kq_kafka_consumer_new(cfg, wgroup, NULL, errstr, errlen)) == NULL) {
            runner_free(r);
            return KQ_EKAFKA;
        }
    }
    if (pthread_create(&r->athread, NULL, apply_main, r) != 0) {
        runner_free(r);
        return kq_seterr(errstr, errlen, KQ_EIO, "cannot start the %s apply thread", ops->name);
    }
    r->astarted = 1;
    if (pthread_create(&r->thread, NULL, run, r) != 0) {
        apply_quit(r);
        runner_free(r);
        return kq_seterr(errstr, errlen, KQ_EIO, "cannot start the %s runner thread", ops->name);
    }
    r->started = 1;
    *out = r;
    return 0;
}

void proj_runner_stop(proj_runner *r)
{
    if (r == NULL)
        return;
    atomic_store(&r->stop, 1);
    if (r->started)
        pthread_join(r->thread, NULL);
    apply_quit(r); /* idle: the runner thread waited for its last batch */
    runner_free(r);
}

int proj_runner_at_end(const proj_runner *r)
{
    return atomic_load(&((proj_runner *)r)->at_end);
}

int proj_runner_failed(proj_runner *r, char *err, size_t errlen)
{
    int rc = atomic_load(&r->failed);

    if (rc != 0 && err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", r->failed_err);
    if (rc == 0 && (rc = atomic_load(&r->pii_failed)) != 0 && err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", r->pii_err);
    return rc;
}
