/*
 * cmd_queue.c — items and the queue between HTTP threads and the writer; see cmd_queue.h.
 */
#include "cmd_queue.h"
#include "kq_err.h"
#include "kq_time.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cmd_item *cmd_item_new(void)
{
    return calloc(1, sizeof(cmd_item));
}

void cmd_item_values_free(cmd_item *it)
{
    for (int i = 0; i < CMD_MAX_EVENTS; i++) {
        free(it->ev[i].value);
        it->ev[i].value = NULL;
        it->ev[i].len = 0;
    }
}

void cmd_item_free(cmd_item *it)
{
    if (it == NULL)
        return;
    cmd_item_values_free(it);
    cmd_decision_clear(&it->d);
    cmd_command_clear(&it->cmd);
    free(it);
}

void cmd_queue_init(cmd_queue *q, size_t cap, const char *why)
{
    memset(q, 0, sizeof *q);
    q->cap = cap;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    snprintf(q->why, sizeof q->why, "%s", why);
    atomic_init(&q->ready, 0);
    atomic_init(&q->fenced, 0);
}

void cmd_queue_destroy(cmd_queue *q)
{
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
}

int cmd_queue_submit(cmd_queue *q, cmd_item *it, cmd_result *refused)
{
    it->group = 0;
    return cmd_queue_submit_group(q, &it, 1, refused);
}

int cmd_queue_submit_group(cmd_queue *q, cmd_item **items, size_t n, cmd_result *refused)
{
    cmd_item *it = n > 0 ? items[0] : NULL;
    int rc = 0;

    memset(refused, 0, sizeof *refused);
    if (n == 0 || n > q->cap) {
        refused->status = 500;
        refused->code = "internal";
        refused->message = "cannot queue this many commands at once";
        return KQ_EINVAL;
    }
    pthread_mutex_lock(&q->mu);
    if (atomic_load(&q->fenced)) {
        refused->status = 503;
        refused->code = "not_writer";
        refused->message = "this instance was fenced by another writer";
        refused->retry_after = 5;
        rc = KQ_EFENCED;
    } else if (q->stopping) {
        refused->status = 503;
        refused->code = "unavailable";
        refused->message = "the command service is shutting down";
        refused->retry_after = 1;
        rc = KQ_EINVAL;
    } else if (!atomic_load(&q->ready)) {
        refused->status = 503;
        refused->code = "unavailable";
        refused->message = "the command service is not ready (Kafka unavailable or catching up)";
        refused->retry_after = 1;
        rc = KQ_ETIMEDOUT;
    } else if (q->len + n > q->cap) {
        refused->status = 503;
        refused->code = "overloaded";
        refused->message = "too many commands waiting";
        refused->retry_after = 1;
        rc = KQ_ERANGE;
    } else if (it->on_queue != NULL && it->on_queue(it) != 0) {
        refused->status = 500;
        refused->code = "internal";
        refused->message = "cannot queue the command";
        rc = KQ_EIO;
    } else {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        for (size_t i = 0; i < n; i++) {
            items[i]->t_queued = now;
            items[i]->group = i == 0 && n > 1 ? (unsigned)n : 0;
            items[i]->next = NULL;
            if (q->tail)
                q->tail->next = items[i];
            else
                q->head = items[i];
            q->tail = items[i];
        }
        q->len += n;
        pthread_cond_signal(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

/* Wait on the queue's condition for at most `s` seconds (the lock held). */
static int wait_for(cmd_queue *q, double s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(s * 1e9);
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    return pthread_cond_timedwait(&q->cv, &q->mu, &ts);
}

size_t cmd_queue_take_more(cmd_queue *q, cmd_item **out, size_t max, size_t more, double wait_s,
                           double linger_s, int *stopping)
{
    size_t n = 0, want;
    double deadline;

    pthread_mutex_lock(&q->mu);
    if (q->len == 0 && !q->stopping)
        wait_for(q, wait_s);
    want = more >= max || q->len >= max - more ? max : q->len + more;
    if (q->len > 0 && q->len < want && linger_s > 0 && !q->stopping) {
        deadline = (kq_time_mono_us() / 1e6) + linger_s;
        while (q->len < want && !q->stopping) {
            double left = deadline - (kq_time_mono_us() / 1e6);
            if (left <= 0)
                break;
            if (wait_for(q, left) == ETIMEDOUT)
                break;
        }
    }
    while (n < max && q->head) {
        size_t g = q->head->group > 1 ? q->head->group : 1;
        if (n > 0 && n + g > max)
            break; /* the group goes whole into the next batch */
        for (; g > 0 && n < max && q->head; g--) {
            out[n++] = q->head;
            q->head = q->head->next;
            q->len--;
        }
        if (g > 0 && q->head) /* larger than a batch: the rest stays a group */
            q->head->group = (unsigned)g;
    }
    if (q->head == NULL)
        q->tail = NULL;
    *stopping = q->stopping;
    pthread_mutex_unlock(&q->mu);
    return n;
}

size_t cmd_queue_take(cmd_queue *q, cmd_item **out, size_t max, double wait_s, double linger_s,
                      int *stopping)
{
    return cmd_queue_take_more(q, out, max, max, wait_s, linger_s, stopping);
}

cmd_item *cmd_queue_take_all(cmd_queue *q)
{
    cmd_item *it;

    pthread_mutex_lock(&q->mu);
    it = q->head;
    q->head = q->tail = NULL;
    q->len = 0;
    pthread_mutex_unlock(&q->mu);
    return it;
}

void cmd_queue_stop(cmd_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->stopping = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

int cmd_queue_stopping(cmd_queue *q)
{
    int s;
    pthread_mutex_lock(&q->mu);
    s = q->stopping;
    pthread_mutex_unlock(&q->mu);
    return s;
}

void cmd_queue_set_why(cmd_queue *q, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&q->mu);
    va_start(ap, fmt);
    vsnprintf(q->why, sizeof q->why, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&q->mu);
}

int cmd_queue_ready(cmd_queue *q, char *why, size_t whylen)
{
    if (atomic_load(&q->ready))
        return 1;
    pthread_mutex_lock(&q->mu);
    snprintf(why, whylen, "%s", q->why);
    pthread_mutex_unlock(&q->mu);
    return 0;
}
