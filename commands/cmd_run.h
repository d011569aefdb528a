/*
 * cmd_run.h — the run aggregate on the command side.
 *
 * What it is for
 *   Everything the command side does with runs, reached through the run
 *   entry of cmd_aggregate.h:
 *   - bodies: the trigger payload of POST /api/v1/workflows/{id}/runs and
 *     POST /hooks/{workflow_id} (any JSON object, stored compact in
 *     RunStarted.payload_json: cmd_run_payload) and the worker's attempt,
 *     POST /internal/v1/runs/{id}/attempts (the parse hook: step 0..99,
 *     attempt >= 1, status_code 100..999, error 0..4096 bytes, duration_ms
 *     >= 0, next_delay_ms >= 0 required iff outcome is retry, delivery_id
 *     1..255 bytes, outcome retry|succeeded|failed);
 *   - decisions. Run start: run id taken 409 conflict; workflow unknown or
 *     deleted 404; webhook secret differs 401 invalid_webhook_secret (checked
 *     before the enabled flag); disabled 409 workflow_disabled; RunStarted
 *     copies the workflow's version, steps and secret as the batch sees
 *     them. Attempt: unknown run 404; finished 409 run_finished; not the
 *     current step (or past the last; a run without steps has none) 409
 *     step_mismatch; attempt <= recorded 409 attempt_recorded; attempt >
 *     recorded + 1 409 attempt_gap (the last three carry current_step and
 *     recorded_attempts); then StepAttempted [+ StepSucceeded [+ RunSucceeded
 *     after the last step]] or [+ StepFailed + RunFailed];
 *   - the events' payloads; how a committed event changes the state, which
 *     is events/ev_run.h's fold (ev_run_fold: the one rule the worker and the
 *     read models use too; an event the fold refuses is not applied: logged
 *     by the caller); the batch's pending copy is folded the same way;
 *   - the snapshot record 'n'.
 *
 * State per run: cmd_run, fixed size. It is
 *   the snapshot record 'n' as it is (48 bytes, format v5) and maps to and
 *   from ev_run_state (cmd_run_to_fold / cmd_run_from_fold). `flags` was a
 *   reserved 0 before the fold: a record without CMD_RUN_F_SET is read as
 *   the old writer left it (an open run RUNNING once it has an attempt or a
 *   step behind it; a finished one ended).
 *
 * Finished runs leave the state (cmd_state.h, "Expiry"): once the run has
 *   finished for good (its RunSucceeded or RunFailed applied, or it has no
 *   steps) it is kept KCQRS_IDEMPOTENCY_TTL after that event's time, then
 *   pruned, from memory and from the snapshot. Until then an attempt answers
 *   409 run_finished; afterwards 404 not_found, as for a run that never
 *   existed (nothing can be appended to a finished run either way). The
 *   worker drops a run whose attempt record is answered 404 (it never runs
 *   the step again); and it only acts on a run after reading its partition
 *   to the end, so it sends attempts only for runs whose end it has not read.
 *
 * Threads: parse/payload on HTTP threads; the rest on the writer thread.
 */
#ifndef CMD_RUN_H
#define CMD_RUN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "cmd_aggregate.h"
#include "ev_run.h"

typedef enum {
    CMD_RUN_OPEN = 0, /* started, not finished (ev_run PENDING or RUNNING) */
    CMD_RUN_SUCCEEDED = 1,
    CMD_RUN_FAILED = 2,
} cmd_run_status;

#define CMD_RUN_F_RUNNING 0x1u     /* ev_run RUNNING (an attempt was recorded) */
#define CMD_RUN_F_STEP_FAILED 0x2u /* StepFailed of the current step seen */
#define CMD_RUN_F_ENDED 0x4u       /* RunSucceeded or RunFailed seen */
#define CMD_RUN_F_SET 0x80000000u  /* the flags above are set (written by the fold) */

/* A run: a fixed-size record, stored as it is in the snapshot ('n'). */
typedef struct cmd_run {
    int64_t version;
    int64_t offset; /* of its last event, -1 when unknown */
    int32_t partition;
    int32_t status;      /* cmd_run_status */
    uint32_t step_count; /* steps of the workflow at trigger time */
    uint32_t step;       /* the current step: the first one without StepSucceeded */
    uint32_t attempts;   /* attempts recorded (StepAttempted) for the current step */
    uint32_t flags;      /* CMD_RUN_F_* (0 in records written before the fold) */
    int64_t ended_at_us; /* occurred_at_us of the event that finished it (its end event;
                            RunStarted of a run without steps); 0 while open */
} cmd_run;

/* The run entry of the table (cmd_aggregate.c). */
extern const cmd_aggregate cmd_run_type;

/* The run as ev_run_state (last_attempt_us 0, next_delay_ms -1: the command
 * side does not keep them), and back (partition and offset untouched). */
void cmd_run_to_fold(const cmd_run *r, ev_run_state *s);
void cmd_run_from_fold(const ev_run_state *s, cmd_run *r);

/* Look-ups; owned by the state, valid until it changes. */
const cmd_run *cmd_state_run(const cmd_state *st, const char *id);
size_t cmd_state_run_count(const cmd_state *st);
/* Insert a copy (snapshot loading, tests), queued for expiry when it has
 * finished. 0 or KQ_ENOMEM. */
int cmd_state_put_run(cmd_state *st, const char *id, const cmd_run *r);

/* 1 when run r has finished for good (end event seen, or no steps): it is
 * pruned ended_at_us + ttl later. */
int cmd_run_final(const cmd_run *r);

/* 1 when run r is final and its window is over. */
int cmd_run_expired(const cmd_state *st, const cmd_run *r);

/*
 * A trigger payload: `len` bytes of a JSON object (0 bytes = {}). On success
 * *out is its compact JSON (malloc'd, owned by the caller), at most
 * EV_PAYLOAD_JSON_MAX bytes. Returns 0, KQ_EINVAL (one detail: field
 * "body", not JSON / not an object / too large) or KQ_ENOMEM.
 */
int cmd_run_payload(const char *body, size_t len, char **out, json_t *details);

#endif
