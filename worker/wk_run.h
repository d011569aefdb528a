/*
 * wk_run.h — kcqrs-worker's view of the runs it owns: the runs of
 * <prefix>.run.events folded by the one run fold (events/ev_run.h), and the
 * scheduler of their next attempts.
 *
 * The table (wk_runs_apply) keeps, per run read from its RunStarted: its
 * partition and the offset of its RunStarted (the commit point while it is
 * open), a copy of the RunStarted record value (steps, payload, signing
 * secret: decoded on demand by wk_attempt.h), and its ev_run_state — the
 * version, the current step (the first without StepSucceeded), the attempts
 * recorded for it, the occurred_at and next_delay_ms of its last
 * StepAttempted, the status. Every event goes through ev_run_fold, so the
 * worker agrees with kcqrs-commands and the read models on every run:
 *   - a re-read (version at or below the run's) is skipped;
 *   - an event the rule refuses (a version gap, an event for another step
 *     or attempt, anything after the run ended ...) is not applied: it is
 *     reported (WK_RUNS_REFUSED with the rule's reason) for the caller to
 *     log, and the run keeps its state;
 *   - a StepFailed ends the run (FAILED at once); a zero-step run is
 *     SUCCEEDED at its RunStarted.
 * Events of a run whose RunStarted was not read (it finished before the
 * commit point, or the worker forgot it once finished) are ignored.
 *
 * The worker's own answer: after kcqrs-commands answered 200 to a record,
 * wk_run_advance builds the events the writer appended for it (StepAttempted,
 * + StepSucceeded [+ RunSucceeded] or + StepFailed + RunFailed) and folds
 * them with the same rule, so the run is where the fold will find it.
 *
 * The scheduler is a min-heap of the idle runs keyed by the wall-clock time
 * (ms) their next attempt is due: last StepAttempted occurred_at +
 * next_delay_ms, or now when nothing was attempted yet.
 *
 * Phases of a run (the service moves them):
 *   IDLE      nothing in flight; in the heap unless its partition is not
 *             ready (catching up or revoked) or it is finished
 *   ACTIVE    an attempt is executing in the engine
 *   RECORDING its outcome is being recorded with kcqrs-commands
 *   WAIT_LOG  the record was refused (409), or answered with a version the
 *             worker cannot reach yet: wait until the log shows more of the
 *             run (any applied event makes it IDLE) or `wait_until_ms`
 *
 * Pure data structure: no I/O, no threads (the service's one thread owns it).
 */
#ifndef WK_RUN_H
#define WK_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "ev_codec.h"
#include "ev_run.h"
#include "kq_trace.h"

typedef enum wk_run_phase {
    WK_RUN_IDLE = 0,
    WK_RUN_ACTIVE,
    WK_RUN_RECORDING,
    WK_RUN_WAIT_LOG,
} wk_run_phase;

typedef enum wk_run_end { WK_RUN_OPEN = 0, WK_RUN_SUCCEEDED, WK_RUN_FAILED } wk_run_end;

typedef struct wk_run {
    char id[EV_ID_MAX + 1];
    int32_t partition;
    int64_t started_offset; /* offset of its RunStarted */
    uint8_t *started;       /* copy of the RunStarted record value (an Envelope) */
    size_t started_len;
    ev_run_state st; /* the fold (ev_run.h): version, step, attempts, status ... */
    wk_run_end end;  /* OPEN while ev_run_open(&st), else how it finished */
    wk_run_phase phase;
    int64_t due_ms;        /* heap key */
    int64_t wait_until_ms; /* WAIT_LOG */
    int64_t phase_version; /* version when the current attempt started */
    size_t heap_idx;       /* position in the heap, SIZE_MAX when not in it */
    int has_trace;         /* 1: trace = the RunStarted record's traceparent header */
    kq_trace_ctx trace;    /* the parent of every attempt's span (kq_trace.h) */
} wk_run;

typedef struct wk_runs wk_runs;

/* New empty table (a kq_map by run id). NULL on no memory. Free with wk_runs_free. */
wk_runs *wk_runs_new(void);
/* Free the table and every run. */
void wk_runs_free(wk_runs *t);

size_t wk_runs_count(const wk_runs *t);
/* The run, or NULL. Owned by the table: valid until wk_runs_remove / wk_runs_free. */
wk_run *wk_runs_get(const wk_runs *t, const char *id);

/* wk_runs_apply's answers */
#define WK_RUNS_SKIPPED 0 /* a re-read, or an event of a run not in the table */
#define WK_RUNS_APPLIED 1 /* *changed moved on (check end/phase) */
#define WK_RUNS_REFUSED 2 /* the rule refused it (*why); nothing changed */

/*
 * Fold one run-topic record: `value` is its Envelope (`env` its decoding),
 * at (partition, offset). Returns WK_RUNS_APPLIED (*changed: the run, new or
 * moved on), WK_RUNS_SKIPPED, WK_RUNS_REFUSED (*changed: the run, or NULL
 * for a refused RunStarted; *why: the rule's reason, static) or KQ_ENOMEM.
 * A RunStarted of a new run copies `value`.
 */
int wk_runs_apply(wk_runs *t, const ev_envelope *env, const uint8_t *value, size_t len,
                  int32_t partition, int64_t offset, wk_run **changed, const char **why);

/* wk_run_advance's answers */
#define WK_ADVANCE_KNOWN 0   /* the fold had it already (version <= the run's) */
#define WK_ADVANCE_APPLIED 1 /* the answer's events were folded */
#define WK_ADVANCE_AHEAD 2   /* the log holds events before them the worker has not read */

/*
 * After kcqrs-commands answered 200 {"version": V} to our record of attempt
 * `attempt` of the run's current step with `outcome` (WK_OUTCOME_* of
 * wk_attempt.h: 1 retry, 2 succeeded, 3 failed): fold the events the writer
 * appended for it, the last at version V (occurred_at: now_ms), unless the
 * fold has them already. Returns WK_ADVANCE_*; the run changes only on
 * WK_ADVANCE_APPLIED (all the events apply, or none).
 */
int wk_run_advance(wk_run *r, int64_t version, uint32_t attempt, int outcome, int64_t next_delay_ms,
                   int64_t now_ms);

/* When the run's next attempt is due (wall clock ms): see the header. */
int64_t wk_run_due_ms(const wk_run *r, int64_t now_ms);

/* Remove and free one run (also from the heap). */
void wk_runs_remove(wk_runs *t, wk_run *r);

/* Call fn for every run; fn may not add or remove runs. */
void wk_runs_each(wk_runs *t, void (*fn)(void *arg, wk_run *r), void *arg);

/*
 * Commit point of `partition`: the smallest started_offset of its open runs,
 * or -1 when it has none.
 */
int64_t wk_runs_oldest_open(const wk_runs *t, int32_t partition);

/* ---- scheduler (min-heap on due_ms) ---- */

/* Put r in the heap with key due_ms (or move it there). Returns 0 or KQ_ENOMEM. */
int wk_sched_put(wk_runs *t, wk_run *r, int64_t due_ms);
/* Take r out of the heap (no-op when not in it). */
void wk_sched_remove(wk_runs *t, wk_run *r);
/* The earliest run, or NULL when the heap is empty (not removed). */
wk_run *wk_sched_peek(const wk_runs *t);
size_t wk_sched_count(const wk_runs *t);

#endif
