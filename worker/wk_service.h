/*
 * wk_service.h — kcqrs-worker's service: the loop that executes the steps of
 * workflow runs and records every attempt with kcqrs-commands.
 *
 * One service thread (the one calling wk_service_run) owns everything that
 * moves: the consumer of <prefix>.run.events (offsets committed by hand,
 * wk_offsets.h), the run table and scheduler (wk_run.h), the action engine
 * (wk_http.h / wk_smtp.h), the policy and the breakers (wk_policy.h,
 * wk_breaker.h) and the record client (wk_record.h). It sleeps in
 * wk_engine_run; whatever has news wakes it: the consumer queue, the record
 * client's thread, wk_service_stop from a signal thread. The admin server's
 * threads call wk_service_ready and wk_service_metrics, which read atomics
 * and the record client's reachability only.
 *
 * Life of a run: its RunStarted is folded (wk_runs_apply) -> once its
 * partition has been read to the end after the assignment, the run is
 * scheduled at its due time -> the step's action is built (wk_attempt.h)
 * and sent, unless the destination's breaker is open (then it waits for the
 * breaker, no attempt used) -> the policy decides retry / succeeded / failed
 * -> POST /internal/v1/runs/{id}/attempts -> only on 200 does the run move
 * on (wk_run_advance: next step now, or the retry after next_delay_ms); a 409
 * means the log already has that attempt: the run waits for the consumer to
 * show it (at most WK_SERVICE_WAIT_LOG_MS, then it is tried again with the
 * same delivery id).
 *
 * Offsets and rebalances: see wk_offsets.h. On a revoke (and at stop) the
 * attempts in flight finish and are recorded first, bounded by drain_ms.
 */
#ifndef WK_SERVICE_H
#define WK_SERVICE_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdio.h>

#include "wk_attempt.h"
#include "wk_breaker.h"
#include "wk_http.h"
#include "wk_policy.h"
#include "wk_record.h"

#define WK_SERVICE_WAIT_LOG_MS 10000 /* a refused record waits this long for the log at most */
#define WK_SERVICE_KEY_RETRY_MS 5000 /* a run whose signing secret's data key is missing */
#define WK_SERVICE_TICK_MS 1000      /* commits, lag, WAIT_LOG time-outs */

typedef struct wk_service_settings {
    const char *topic;         /* <prefix>.run.events (copied) */
    int partitions;            /* of the topic, >= 1 */
    int max_runs;              /* attempts in flight at once, >= 1 */
    long drain_ms;             /* bound on waiting for attempts in flight at a revoke or stop */
    wk_policy policy;          /* validated by wk_service_new */
    wk_settings engine;        /* the action engine */
    wk_breaker_cfg breaker;    /* per destination */
    wk_record_settings record; /* notify/notify_arg are the service's own */
    wk_smtp_cfg smtp;          /* strings copied; url NULL: email actions fail */
    struct kq_keyring *keys;   /* borrowed: opens sealed signing secrets; NULL = none */
} wk_service_settings;

typedef struct wk_service wk_service;

/*
 * New service with its engine, breakers and record client (its thread
 * starts). 0 with *out owned by the caller (wk_service_free), or an error
 * with errstr: KQ_EINVAL for a bad setting, KQ_ENOMEM.
 */
int wk_service_new(const wk_service_settings *s, wk_service **out, char *errstr, size_t errlen);

/*
 * Settings of the consumer's conf the service needs (short session timeout,
 * the rebalance callback with the service as opaque). Call before the
 * consumer is created from conf. 0 or KQ_ECONFIG.
 */
int wk_service_consumer_conf(wk_service *svc, rd_kafka_conf_t *conf, char *errstr, size_t errlen);

/*
 * Hand the consumer (created from a conf prepared above) to the service,
 * which owns it from now on (also on error), wakes up on its queue and
 * subscribes it to the topic. 0 or KQ_EKAFKA.
 */
int wk_service_attach(wk_service *svc, rd_kafka_t *rk, char *errstr, size_t errlen);

/*
 * Run until wk_service_stop: consume, fold, schedule, record. Then the
 * attempts in flight finish and are recorded (bounded by drain_ms) and the
 * offsets are committed. Returns 0.
 */
int wk_service_run(wk_service *svc);

/*
 * The same loop driven from outside, without a consumer (tests, tools);
 * service thread only:
 *   wk_service_assign / _revoke  what a rebalance does with these partitions
 *                                (revoke: drain the attempts in flight there,
 *                                commit, forget their runs);
 *   wk_service_handle_message    one consumer message (an event, or the end
 *                                of a partition: RD_KAFKA_RESP_ERR__PARTITION_EOF);
 *                                its headers are not read (a message built
 *                                outside librdkafka has none it can read): the
 *                                run is not traced;
 *   wk_service_round             one round: records' answers, due attempts,
 *                                the tick, the engine for up to max_wait_ms.
 */
void wk_service_assign(wk_service *svc, const int32_t *parts, size_t n);
void wk_service_revoke(wk_service *svc, const int32_t *parts, size_t n);
void wk_service_handle_message(wk_service *svc, const rd_kafka_message_t *m);
void wk_service_round(wk_service *svc, int max_wait_ms);

/* Ask wk_service_run to return (any thread, e.g. a signal thread). */
void wk_service_stop(wk_service *svc);

/* Close the consumer (its revoke drains and commits), stop the record client
 * and the engine, free everything. NULL-safe. The admin server and every
 * thread calling wk_service_stop must be gone. */
void wk_service_free(wk_service *svc);

/* kq_http ready function (arg: the service): group joined and kcqrs-commands reachable. */
int wk_service_ready(void *arg, char *why, size_t whylen);

/* kq_http metrics function (arg: the service): engine, breakers, records, the service's own. */
void wk_service_metrics(void *arg, FILE *out);

#endif
