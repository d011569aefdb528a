/*
 * wk_run.h — kcqrs-worker's view of the runs it owns: the per-run fold of
 * <prefix>.run.events and the scheduler of the next attempts.
 *
 * The fold (wk_runs_apply) keeps, per open run: its partition and the offset
 * of its RunStarted (the commit point while it is open), its version, a copy
 * of the RunStarted record value (steps, payload, signing secret: decoded on
 * demand), the current step (the first without StepSucceeded), the attempts
 * recorded for it, the occurred_at and next_delay_ms of its last
 * StepAttempted, and whether it finished. An event whose version is not
 * above the run's is skipped (re-reads, and events the worker already
 * applied from its own 200 answer, wk_run_advance); events of a run whose
 * RunStarted was not read (finished before the commit point) are ignored.
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
 *   WAIT_LOG  the record was refused (409): wait until the log shows more
 *             of the run (any newer event makes it IDLE) or `wait_until_ms`
 *
 * Pure data structure: no I/O, no threads (the service's one thread owns it).
 */
#ifndef WK_RUN_H
#define WK_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "ev_codec.h"

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
    int64_t version;        /* of the last event applied */
    uint8_t *started;       /* copy of the RunStarted record value (an Envelope) */
    size_t started_len;
    uint32_t step_count;
    uint32_t step;           /* current step: the first without StepSucceeded */
    uint32_t attempts;       /* recorded attempts of the current step */
    int64_t last_attempt_ms; /* occurred_at of its last StepAttempted (ms), 0: none */
    int64_t next_delay_ms;   /* of that StepAttempted, -1: none */
    wk_run_end end;
    wk_run_phase phase;
    int64_t due_ms;        /* heap key */
    int64_t wait_until_ms; /* WAIT_LOG */
    int64_t phase_version; /* version when the current attempt started */
    size_t heap_idx;       /* position in the heap, SIZE_MAX when not in it */
    struct wk_run *next;   /* hash chain (internal) */
} wk_run;

typedef struct wk_runs wk_runs;

/* New empty table. NULL on no memory. */
wk_runs *wk_runs_new(void);
/* Free the table and every run. */
void wk_runs_free(wk_runs *t);

size_t wk_runs_count(const wk_runs *t);
wk_run *wk_runs_get(const wk_runs *t, const char *id);

/*
 * Fold one run-topic record: `value` is its Envelope (`env` its decoding),
 * at (partition, offset). Returns:
 *   1  applied: *changed is the run (new or moved on; check end/phase)
 *   0  skipped (old version, unknown run, or an event that changes nothing)
 *   KQ_ENOMEM
 * A RunStarted of a new run copies `value`. A version gap is applied anyway
 * (the log is the truth) and reported through *gap = 1 so the caller logs it.
 */
int wk_runs_apply(wk_runs *t, const ev_envelope *env, const uint8_t *value, size_t len,
                  int32_t partition, int64_t offset, wk_run **changed, int *gap);

/*
 * After kcqrs-commands answered 200 {"version": V} to our record of attempt
 * `attempt` of the run's current step with `outcome` (1 retry, 2 succeeded,
 * 3 failed, as cmd_outcome): apply what those events say, if the fold has
 * not already (V > version). now_ms is the time used for the retry's due time.
 */
void wk_run_advance(wk_run *r, int64_t version, uint32_t attempt, int outcome,
                    int64_t next_delay_ms, int64_t now_ms);

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
