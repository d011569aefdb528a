/*
 * cmd_queue.h — commands on their way to the writer: items, answers, the queue.
 *
 * What it is for
 *   An HTTP thread fills a cmd_item (the parsed command, a `done` callback and
 *   its own argument) and hands it to the writer through the queue
 *   (cmd_queue_submit, called by cmd_writer_submit). The writer thread takes
 *   items in batches (cmd_queue_take) and answers each one exactly once
 *   through its `done` callback with a cmd_result.
 *
 * What it owns
 *   The queue owns the items between a successful cmd_queue_submit and
 *   cmd_queue_take / cmd_queue_take_all, which hand them to the writer. It
 *   also holds the writer's gate: `ready` (commands are accepted), `fenced`
 *   (another instance took over, for good), `stopping` (a clean stop was
 *   asked) and the sentence /ready answers while not ready (`why`). A
 *   submit is refused at once (503 + Retry-After, or not_writer) unless the
 *   writer is ready and the queue holds fewer than `cap` items.
 *
 * Threads: submit, ready checks and set_why from any thread (one mutex);
 *   take / take_all from the writer thread; init/destroy from one controlling
 *   thread. `ready` and `fenced` are atomics the writer sets directly.
 */
#ifndef CMD_QUEUE_H
#define CMD_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cmd_state.h"
#include "kq_trace.h"

/* The answer to one command, handed to the item's `done` callback. Strings are
 * owned by the writer and valid only during the callback. */
typedef struct cmd_result {
    unsigned status;         /* HTTP status */
    const char *code;        /* error code (DESIGN.md section 8), NULL on success */
    const char *message;     /* error message, NULL on success */
    const char *id;          /* success: the aggregate id */
    int64_t version;         /* success: the new (or current) version */
    const char *token;       /* success: consistency token */
    int64_t current_version; /* 409/412: the aggregate's version (0 if none) */
    int retry_after;         /* seconds for Retry-After, 0 = none */
    const char *secret;      /* CMD_WF_CREATE success (also a replay) and CMD_WF_UPDATE that
                                set a generated secret: the workflow's webhook secret, shown
                                once as webhook_secret; else NULL */
    /* CMD_RUN_ATTEMPT 409 step_mismatch / attempt_recorded / attempt_gap: the
     * run's current step and the attempts recorded for it (for the details
     * {"field":"attempt","current_step":S,"recorded_attempts":N}) */
    int has_attempt_detail;
    uint32_t current_step;
    uint32_t recorded_attempts;
} cmd_result;

typedef struct cmd_item cmd_item;
typedef void (*cmd_done_fn)(cmd_item *it, const cmd_result *r);

/* One event a command produced (writer-private; also the writer's delivery
 * report slots). */
typedef struct cmd_item_event {
    int32_t partition;
    int64_t offset;
    int delivered, dr_err; /* dr_err: 0 or the delivery's rd_kafka_resp_err_t */
    uint8_t *value;        /* copy of the produced envelope (applied to the state after commit
                              through cmd_aggregate_apply, as catch-up applies a record) */
    size_t len;
} cmd_item_event;

struct cmd_item {
    cmd_command cmd;
    cmd_done_fn done; /* called once on the writer thread; it must free the item
                         (cmd_item_free) */
    void *arg;        /* the caller's (e.g. the HTTP request) */
    void *arg2;       /* the caller's too (e.g. the cmd_api that made it) */
    /* Called under the queue lock just before the item is queued (e.g. to
     * suspend the HTTP connection); NULL = nothing. Non-zero refuses the item. */
    int (*on_queue)(cmd_item *it);
    /* Items queued together by cmd_queue_submit_group: the first carries the
     * group's size (the writer takes a group whole, so its commands share one
     * transaction), the others 0; a lone item 0 or 1. */
    unsigned group;
    /* The command's span (kq_trace.h), started by the API as a child of the request's (or
     * of the context an item names); its context goes on every event record the command
     * produces (the traceparent header); the API ends it when answered. Zeroed (not
     * valid): no header, no span. */
    kq_span span;
    /* writer-private */
    struct timespec t_queued;
    cmd_item *next;
    cmd_decision d;
    int32_t partition; /* of the last event (the answer's) */
    int64_t offset;
    cmd_item_event ev[CMD_MAX_EVENTS];
};

/* A zeroed item (malloc), owned by the caller until submitted. NULL on ENOMEM. */
cmd_item *cmd_item_new(void);
/* Free the item, its command, decision and produced values. NULL is a no-op. */
void cmd_item_free(cmd_item *it);
/* Free the copies of the produced envelopes (it->ev[].value) only. */
void cmd_item_values_free(cmd_item *it);

typedef struct cmd_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    cmd_item *head, *tail;
    size_t len;
    size_t cap; /* submits are refused ("overloaded") at this length */
    int stopping;
    char why[256]; /* reason for not being ready */
    atomic_int ready;
    atomic_int fenced;
} cmd_queue;

/* An empty queue refusing commands (not ready) with `why`. */
void cmd_queue_init(cmd_queue *q, size_t cap, const char *why);
/* Destroy the lock; the queue must be empty (cmd_queue_take_all). */
void cmd_queue_destroy(cmd_queue *q);

/*
 * Queue a command. Returns 0 when queued (the queue, then the writer, owns
 * `it`), or a negative code with *refused filled (503 and Retry-After, or
 * not_writer; 500 if it->on_queue refused) and the caller still owns `it`.
 */
int cmd_queue_submit(cmd_queue *q, cmd_item *it, cmd_result *refused);

/*
 * Queue n items (1..cap) as one group: all or none, in this order, taken by
 * the writer into one batch (one transaction) when n <= its batch size. Only
 * items[0]->on_queue is called. Returns 0 (the queue owns every item) or a
 * negative code with *refused filled as cmd_queue_submit (the caller still
 * owns them all).
 */
int cmd_queue_submit_group(cmd_queue *q, cmd_item **items, size_t n, cmd_result *refused);

/*
 * Take up to `max` items into out[] (the caller owns them then; a group is
 * taken whole unless it alone is larger than `max`): waits up to
 * `wait_s` for the first and, when fewer than `max` are queued, up to
 * `linger_s` more for others. *stopping tells whether a stop was asked.
 */
size_t cmd_queue_take(cmd_queue *q, cmd_item **out, size_t max, double wait_s, double linger_s,
                      int *stopping);

/*
 * cmd_queue_take, but the linger ends as soon as `more` items have arrived
 * after the first wait (or `max` are queued): the writer asks for as many as
 * it just answered, so clients that send their next command at once join the
 * next transaction instead of waiting for the one after it.
 */
size_t cmd_queue_take_more(cmd_queue *q, cmd_item **out, size_t max, size_t more, double wait_s,
                           double linger_s, int *stopping);

/* Take every queued item (linked through ->next; the caller owns them). */
cmd_item *cmd_queue_take_all(cmd_queue *q);

/* Ask for a clean stop (wakes the writer); idempotent. */
void cmd_queue_stop(cmd_queue *q);
/* 1 once cmd_queue_stop was called. */
int cmd_queue_stopping(cmd_queue *q);

/* Set the reason /ready gives while not ready (printf format). */
void cmd_queue_set_why(cmd_queue *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 1 when ready; else 0 and the reason in why. */
int cmd_queue_ready(cmd_queue *q, char *why, size_t whylen);

#endif
