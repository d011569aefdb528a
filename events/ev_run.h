/*
 * ev_run.h — THE run fold: how a run's events (RunStarted, StepAttempted,
 * StepSucceeded, StepFailed, RunSucceeded, RunFailed) fold into its state.
 *
 * What it is for
 *   The command side (its run state and the attempt decisions), the worker
 *   (which runs are open, which step to attempt next and when) and both read
 *   models (the LMDB run document, the PostgreSQL run row) all fold a run's
 *   events. They all call ev_run_fold() so that they cannot disagree about a
 *   run's status, current step, recorded attempts or step statuses.
 *
 * What it owns
 *   Nothing but the rule. ev_run_state is a fixed-size value the caller owns
 *   (and may store as it is); ev_run_fold() is a pure function: no
 *   allocation, no I/O, no global state. Reentrant; any thread.
 *
 * The rule (one event at a time, in the order of the run's partition)
 *   Versions. An event whose version is <= the state's is a DUPLICATE (a
 *     re-read): nothing changes. An event whose version is > state + 1 is
 *     REFUSED as a gap, never applied. A version < 1 is REFUSED. An event
 *     other than RunStarted of a run without a RunStarted is REFUSED
 *     (unknown run). A REFUSED event leaves the state unchanged (its version
 *     too), so the events after it are refused as gaps.
 *   RunStarted (version 1): status PENDING, step 0, no attempts; step_count
 *     is the number of steps (steps.count, or step_count for events written
 *     before steps were copied into RunStarted); more than EV_MAX_STEPS is
 *     REFUSED. A run with zero steps is SUCCEEDED at once: nothing to do is
 *     done (the writer appends nothing after such a RunStarted). A RunStarted
 *     of a run that has one already is REFUSED.
 *   StepAttempted: the run must be open (PENDING or RUNNING), `step` the
 *     current one and `attempt` the next (recorded attempts + 1), else
 *     REFUSED. Then attempts = attempt, last_attempt_us = occurred_at,
 *     next_delay_ms = its next_delay_ms (-1 when absent), status RUNNING.
 *   StepSucceeded: the run must be open and `step` the current one, else
 *     REFUSED. Then step++, attempts = 0, no last attempt, status RUNNING;
 *     after the last step the run is SUCCEEDED (every step succeeded).
 *   StepFailed: the run must be open and `step` the current one, else
 *     REFUSED. Then step_failed = 1 and the run is FAILED at once: a failed
 *     step ends the run, no further attempt is accepted (the writer appends
 *     RunFailed with every StepFailed).
 *   The `attempt` of StepSucceeded/StepFailed and the `step` of RunFailed are
 *     informational: not checked.
 *   RunSucceeded: accepted once, unless the run FAILED: status SUCCEEDED,
 *     ended. The writer appends it with the last StepSucceeded; a log may
 *     also end an open run with it early (its remaining steps stay pending),
 *     and a zero-step run may carry one.
 *   RunFailed: accepted once, unless the run SUCCEEDED: status FAILED, ended
 *     (the writer appends it after StepFailed; a log may fail an open run).
 *   After RunSucceeded or RunFailed (ended) every event is REFUSED.
 *
 * Sequences the writer appends (commands/): RunStarted; per recorded attempt
 *   StepAttempted (retry), StepAttempted + StepSucceeded (+ RunSucceeded after
 *   the last step), or StepAttempted + StepFailed + RunFailed. Each is APPLIED
 *   in full by this rule.
 *
 * Step statuses (ev_run_step_status): a step before the current one
 *   SUCCEEDED; the current one FAILED after StepFailed, RUNNING once
 *   attempted, else PENDING; the later ones PENDING.
 */
#ifndef EV_RUN_H
#define EV_RUN_H

#include <stdint.h>

#include "ev_codec.h"

/* Run statuses. The values are stored (the LMDB document record's flag byte,
 * the PostgreSQL text through ev_run_status_name): never renumber. */
/* (EV_RUN_SUCCEEDED, EV_STEP_FAILED, ... are event types: hence the _IS_.) */
typedef enum ev_run_status {
    EV_RUN_IS_PENDING = 0,   /* started, nothing attempted yet */
    EV_RUN_IS_RUNNING = 1,   /* an attempt was recorded, the run is not finished */
    EV_RUN_IS_SUCCEEDED = 2, /* every step succeeded (or RunSucceeded) */
    EV_RUN_IS_FAILED = 3,    /* a step failed (or RunFailed) */
} ev_run_status;

typedef enum ev_step_status {
    EV_STEP_IS_PENDING = 0,
    EV_STEP_IS_RUNNING = 1,
    EV_STEP_IS_SUCCEEDED = 2,
    EV_STEP_IS_FAILED = 3,
} ev_step_status;

/* Outcomes of ev_run_fold. */
enum {
    EV_FOLD_APPLIED = 0,   /* the state moved to the event's version */
    EV_FOLD_DUPLICATE = 1, /* version <= the state's: nothing changed */
    EV_FOLD_REFUSED = 2,   /* against the rule: *why says why; nothing changed */
};

/* A run's state: fixed size, no pointers; all zero = no RunStarted yet
 * (ev_run_init). */
typedef struct ev_run_state {
    int64_t version;         /* of the last applied event; 0 = no RunStarted yet */
    int32_t status;          /* ev_run_status */
    uint32_t step_count;     /* steps of the run */
    uint32_t step;           /* the current step: the first without StepSucceeded */
    uint32_t attempts;       /* recorded attempts (StepAttempted) of the current step */
    int32_t step_failed;     /* StepFailed seen for the current step */
    int32_t ended;           /* RunSucceeded or RunFailed seen */
    int64_t last_attempt_us; /* occurred_at of the current step's last StepAttempted, 0 none */
    int64_t next_delay_ms;   /* next_delay_ms of that StepAttempted, -1 none */
} ev_run_state;

/* The state of a run without events: version 0, next_delay_ms -1. */
void ev_run_init(ev_run_state *s);

/*
 * Fold one event of the run into *s by the rule above. Returns
 * EV_FOLD_APPLIED, EV_FOLD_DUPLICATE or EV_FOLD_REFUSED (then *why is a
 * static sentence saying why, e.g. "StepAttempted: not the run's current
 * step"; why may be NULL). *s changes only on EV_FOLD_APPLIED. `e` is only
 * read (views into the caller's buffer; nothing is kept).
 */
int ev_run_fold(ev_run_state *s, const ev_envelope *e, const char **why);

/* 1 when the run accepts attempts (PENDING or RUNNING: its current step is
 * < step_count and nothing ended it), else 0. */
int ev_run_open(const ev_run_state *s);

/* The status of step `step` (0-based) by the rule above; PENDING for a step
 * >= step_count. */
ev_step_status ev_run_step_status(const ev_run_state *s, uint32_t step);

/* "pending", "running", "succeeded", "failed" (the API's and PostgreSQL's
 * words); NULL out of range. Static strings. */
const char *ev_run_status_name(int status);
/* Inverse of ev_run_status_name (a NUL-terminated word); -1 when unknown or NULL. */
int ev_run_status_parse(const char *s);
/* "pending", "running", "succeeded", "failed" for a step; NULL out of range. */
const char *ev_step_status_name(int status);

#endif
