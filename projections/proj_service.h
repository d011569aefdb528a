/*
 * proj_service.h — the projector service around its runners: which targets
 * a --target selects (the live read models' runner ops), the event topics
 * made sure of before the runners start, the runners as one service for the
 * admin HTTP server (/ready, /metrics) and for --exit-at-end.
 * kcqrs_projector.c's main() only wires these.
 *
 * Owns: the runners it started (proj_service_stop stops and frees them).
 * Threads: start/stop/at_end on the main thread; proj_service_ready and
 * proj_service_metrics are the HTTP server's callbacks (its threads): they
 * read only the runners started so far (n is published after each start).
 */
#ifndef PROJ_SERVICE_H
#define PROJ_SERVICE_H

#include <signal.h>
#include <stddef.h>
#include <stdio.h>

#include "kq_config.h"
#include "proj_runner.h"

#define PROJ_SERVICE_MAX 2

/* The live read models as runner targets (open_arg NULL). */
extern const proj_target_ops proj_lmdb_live_ops; /* "lmdb": proj_lmdb_open */
extern const proj_target_ops proj_pg_live_ops;   /* "pg": proj_pg_open */

typedef struct proj_service {
    const proj_target_ops *sel[PROJ_SERVICE_MAX]; /* the selected targets, nsel of them */
    size_t nsel;
    proj_runner *runners[PROJ_SERVICE_MAX];
    size_t n; /* runners started (atomically published) */
} proj_service;

/* Select the targets of --target ("lmdb", "pg" or "all") into s (zeroed
 * first). 0, or KQ_EINVAL for another name. */
int proj_service_select(proj_service *s, const char *target);

/* Make sure the event topics exist, retrying every 2 s until Kafka answers
 * or one of the signals in `set` comes (*sig set). 0, 1 on a signal, or
 * KQ_ECONFIG (topics refused, logged). */
int proj_service_ensure_topics(const kq_config *cfg, const sigset_t *set, int *sig);

/* One runner per selected target (proj_runner_start). 0, or the first
 * runner's error (errstr names the target); the runners started stay (stop). */
int proj_service_start(proj_service *s, const kq_config *cfg, int exit_at_end, char *errstr,
                       size_t errlen);

/* 1 once every runner reached its end offsets (--exit-at-end). */
int proj_service_at_end(const proj_service *s);

/* kq_http callbacks (arg: the proj_service): ready when every runner is. */
int proj_service_ready(void *arg, char *why, size_t whylen);
void proj_service_metrics(void *arg, FILE *out);

/* Stop every runner (each finishes its batch) and forget them. */
void proj_service_stop(proj_service *s);

#endif
