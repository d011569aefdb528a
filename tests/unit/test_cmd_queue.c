/*
 * test_cmd_queue.c — the queue between HTTP threads and the writer
 * (cmd_queue.h): the gate's refusals in order (fenced, stopping, not ready,
 * full, on_queue), first-in first-out takes of at most `max`, the linger
 * that waits for more, a take woken by another thread's submit, take_all,
 * the reason /ready gives, groups (all or none, taken whole).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cmd_queue.h"
#include "kq_err.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static cmd_item *item(const char *id)
{
    cmd_item *it = cmd_item_new();
    assert_non_null(it);
    snprintf(it->cmd.id, sizeof it->cmd.id, "%s", id);
    return it;
}

static int refuse_queue(cmd_item *it)
{
    (void)it;
    return -1;
}

static int queued_calls;
static int count_queue(cmd_item *it)
{
    (void)it;
    queued_calls++;
    return 0;
}

static void free_all(cmd_item *it)
{
    while (it != NULL) {
        cmd_item *nx = it->next;
        cmd_item_free(it);
        it = nx;
    }
}

/* Each refusal, in the order the gate checks them, leaves the item with the caller. */
static void test_refusals(void **state)
{
    cmd_queue q;
    cmd_result r;
    cmd_item *it = item("a");
    char why[64];

    (void)state;
    cmd_queue_init(&q, 2, "starting");
    assert_int_equal(cmd_queue_ready(&q, why, sizeof why), 0);
    assert_string_equal(why, "starting");

    assert_int_equal(cmd_queue_submit(&q, it, &r), KQ_ETIMEDOUT); /* not ready */
    assert_int_equal(r.status, 503);
    assert_string_equal(r.code, "unavailable");
    assert_int_equal(r.retry_after, 1);

    atomic_store(&q.ready, 1);
    assert_int_equal(cmd_queue_ready(&q, why, sizeof why), 1);
    it->on_queue = refuse_queue;
    assert_int_equal(cmd_queue_submit(&q, it, &r), KQ_EIO);
    assert_int_equal(r.status, 500);
    assert_string_equal(r.code, "internal");
    it->on_queue = count_queue;
    queued_calls = 0;
    assert_int_equal(cmd_queue_submit(&q, it, &r), 0);
    assert_int_equal(queued_calls, 1);
    assert_int_equal(cmd_queue_submit(&q, item("b"), &r), 0);
    it = item("c");
    assert_int_equal(cmd_queue_submit(&q, it, &r), KQ_ERANGE); /* cap 2 */
    assert_string_equal(r.code, "overloaded");
    assert_int_equal(r.retry_after, 1);

    cmd_queue_stop(&q);
    assert_int_equal(cmd_queue_stopping(&q), 1);
    assert_int_equal(cmd_queue_submit(&q, it, &r), KQ_EINVAL);
    assert_string_equal(r.code, "unavailable");
    assert_non_null(strstr(r.message, "shutting down"));

    atomic_store(&q.fenced, 1); /* fenced is checked first */
    assert_int_equal(cmd_queue_submit(&q, it, &r), KQ_EFENCED);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.code, "not_writer");
    assert_int_equal(r.retry_after, 5);

    cmd_item_free(it);
    free_all(cmd_queue_take_all(&q));
    cmd_queue_destroy(&q);
}

/* Items come out in submit order, at most `max` at a time; take_all empties. */
static void test_fifo_and_max(void **state)
{
    cmd_queue q;
    cmd_result r;
    cmd_item *out[4], *rest;
    int stopping = -1;
    char id[16];

    (void)state;
    cmd_queue_init(&q, 100, "");
    atomic_store(&q.ready, 1);
    for (int i = 0; i < 6; i++) {
        snprintf(id, sizeof id, "i%d", i);
        assert_int_equal(cmd_queue_submit(&q, item(id), &r), 0);
    }
    assert_int_equal(cmd_queue_take(&q, out, 4, 0.01, 0.0, &stopping), 4);
    assert_int_equal(stopping, 0);
    for (int i = 0; i < 4; i++) {
        snprintf(id, sizeof id, "i%d", i);
        assert_string_equal(out[i]->cmd.id, id);
        assert_true(out[i]->t_queued.tv_sec > 0 || out[i]->t_queued.tv_nsec > 0);
        cmd_item_free(out[i]);
    }
    rest = cmd_queue_take_all(&q);
    assert_non_null(rest);
    assert_string_equal(rest->cmd.id, "i4");
    assert_string_equal(rest->next->cmd.id, "i5");
    assert_null(rest->next->next);
    free_all(rest);
    assert_null(cmd_queue_take_all(&q));
    /* empty: waits `wait_s` and returns nothing */
    assert_int_equal(cmd_queue_take(&q, out, 4, 0.05, 0.0, &stopping), 0);
    cmd_queue_destroy(&q);
}

typedef struct later {
    cmd_queue *q;
    double delay_s;
} later;

static void *submit_later(void *arg)
{
    later *l = arg;
    cmd_result r;
    struct timespec ts = {0, (long)(l->delay_s * 1e9)};
    nanosleep(&ts, NULL);
    assert_int_equal(cmd_queue_submit(l->q, item("late"), &r), 0);
    return NULL;
}

/* With one item queued, the take lingers for more: an item submitted during
 * the linger joins the batch; a take with nothing queued wakes on a submit. */
static void test_linger_and_wake(void **state)
{
    cmd_queue q;
    cmd_result r;
    cmd_item *out[4];
    pthread_t th;
    later l;
    int stopping;
    double t0;
    size_t n;

    (void)state;
    cmd_queue_init(&q, 100, "");
    atomic_store(&q.ready, 1);
    assert_int_equal(cmd_queue_submit(&q, item("first"), &r), 0);
    l.q = &q;
    l.delay_s = 0.05;
    assert_int_equal(pthread_create(&th, NULL, submit_later, &l), 0);
    t0 = now_s();
    n = cmd_queue_take(&q, out, 2, 1.0, 3.0, &stopping);
    pthread_join(th, NULL);
    /* the linger (3 s) waits for `max` or its end: the late item is in, and
     * with `max` reached the take returns at once */
    assert_int_equal(n, 2);
    assert_true(now_s() - t0 < 2.0);
    assert_string_equal(out[0]->cmd.id, "first");
    assert_string_equal(out[1]->cmd.id, "late");
    cmd_item_free(out[0]);
    cmd_item_free(out[1]);

    /* nothing queued: a submit wakes the take long before its 5 s wait */
    l.delay_s = 0.05;
    t0 = now_s();
    assert_int_equal(pthread_create(&th, NULL, submit_later, &l), 0);
    n = cmd_queue_take(&q, out, 4, 5.0, 0.0, &stopping);
    pthread_join(th, NULL);
    assert_int_equal(n, 1);
    assert_true(now_s() - t0 < 2.0);
    cmd_item_free(out[0]);

    /* a stop ends the linger at once and is reported */
    assert_int_equal(cmd_queue_submit(&q, item("x"), &r), 0);
    cmd_queue_stop(&q);
    t0 = now_s();
    n = cmd_queue_take(&q, out, 4, 5.0, 5.0, &stopping);
    assert_int_equal(n, 1);
    assert_int_equal(stopping, 1);
    assert_true(now_s() - t0 < 2.0);
    cmd_item_free(out[0]);
    cmd_queue_destroy(&q);
}

/* cmd_queue_take_more: the linger ends once `more` items arrived after the
 * first wait, far below `max`, long before the linger's end. */
static void test_take_more(void **state)
{
    cmd_queue q;
    cmd_result r;
    cmd_item *out[8];
    pthread_t th;
    later l;
    int stopping;
    double t0;
    size_t n;

    (void)state;
    cmd_queue_init(&q, 100, "");
    atomic_store(&q.ready, 1);
    assert_int_equal(cmd_queue_submit(&q, item("a"), &r), 0);
    assert_int_equal(cmd_queue_submit(&q, item("b"), &r), 0);
    l.q = &q;
    l.delay_s = 0.05;
    assert_int_equal(pthread_create(&th, NULL, submit_later, &l), 0);
    t0 = now_s();
    /* two queued, one more wanted: returns with three when "late" arrives,
     * though max is 8 and the linger 3 s */
    n = cmd_queue_take_more(&q, out, 8, 1, 1.0, 3.0, &stopping);
    pthread_join(th, NULL);
    assert_int_equal(n, 3);
    assert_true(now_s() - t0 < 2.0);
    assert_string_equal(out[2]->cmd.id, "late");
    for (size_t i = 0; i < n; i++)
        cmd_item_free(out[i]);

    /* nobody comes: the linger ends at its deadline with what is there */
    assert_int_equal(cmd_queue_submit(&q, item("c"), &r), 0);
    t0 = now_s();
    n = cmd_queue_take_more(&q, out, 8, 4, 1.0, 0.1, &stopping);
    assert_int_equal(n, 1);
    assert_true(now_s() - t0 >= 0.09);
    cmd_item_free(out[0]);
    cmd_queue_destroy(&q);
}

/* A group goes in all or none, is taken whole (never split over two batches
 * unless it alone exceeds `max`), and calls only its first on_queue. */
static void test_group(void **state)
{
    cmd_queue q;
    cmd_result r;
    cmd_item *g[5], *out[4], *one;
    int stopping;
    char id[16];

    (void)state;
    cmd_queue_init(&q, 6, "");
    atomic_store(&q.ready, 1);
    one = item("lone");
    assert_int_equal(cmd_queue_submit(&q, one, &r), 0);
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "g%d", i);
        g[i] = item(id);
        g[i]->on_queue = count_queue;
    }
    queued_calls = 0;
    assert_int_equal(cmd_queue_submit_group(&q, g, 3, &r), 0);
    assert_int_equal(queued_calls, 1);
    /* 4 + the 4 queued > cap 6: refused whole, nothing queued */
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "h%d", i);
        g[i] = item(id);
    }
    g[3] = item("h3");
    assert_int_equal(cmd_queue_submit_group(&q, g, 4, &r), KQ_ERANGE);
    assert_string_equal(r.code, "overloaded");
    assert_int_equal(cmd_queue_submit_group(&q, g, 0, &r), KQ_EINVAL);
    /* max 3: the lone item, then the group does not fit beside it */
    assert_int_equal(cmd_queue_take(&q, out, 3, 0.01, 0.0, &stopping), 1);
    assert_string_equal(out[0]->cmd.id, "lone");
    cmd_item_free(out[0]);
    assert_int_equal(cmd_queue_take(&q, out, 3, 0.01, 0.0, &stopping), 3);
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "g%d", i);
        assert_string_equal(out[i]->cmd.id, id);
        cmd_item_free(out[i]);
    }
    /* a group larger than max is split, its rest taken as a group next */
    g[4] = item("h4");
    assert_int_equal(cmd_queue_submit_group(&q, g, 5, &r), 0);
    assert_int_equal(cmd_queue_take(&q, out, 2, 0.01, 0.0, &stopping), 2);
    assert_string_equal(out[0]->cmd.id, "h0");
    cmd_item_free(out[0]);
    cmd_item_free(out[1]);
    assert_int_equal(cmd_queue_take(&q, out, 4, 0.01, 0.0, &stopping), 3);
    assert_string_equal(out[2]->cmd.id, "h4");
    for (int i = 0; i < 3; i++)
        cmd_item_free(out[i]);
    cmd_queue_destroy(&q);
}

static void test_why(void **state)
{
    cmd_queue q;
    char why[16];

    (void)state;
    cmd_queue_init(&q, 1, "starting");
    cmd_queue_set_why(&q, "reading the log: %s", "timed out");
    assert_int_equal(cmd_queue_ready(&q, why, sizeof why), 0);
    assert_string_equal(why, "reading the log"); /* cut to the buffer */
    atomic_store(&q.ready, 1);
    why[0] = '\0';
    assert_int_equal(cmd_queue_ready(&q, why, sizeof why), 1);
    assert_string_equal(why, ""); /* ready: no reason written */
    cmd_queue_destroy(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals),        cmocka_unit_test(test_fifo_and_max),
        cmocka_unit_test(test_linger_and_wake), cmocka_unit_test(test_take_more),
        cmocka_unit_test(test_group),           cmocka_unit_test(test_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
