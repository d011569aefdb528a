/*
 * cmd_state.h — the command side's view of the log, and the decisions made on it.
 *
 * What it is for
 *   A command is accepted or refused by comparing it with the current state of
 *   its aggregate. This module holds that state, in memory, for the three
 *   aggregates: per resource its version, deleted flag, current name,
 *   description and status (so an update emits only the changed fields) and
 *   the position (partition, offset) of its last event (so a no-op update can
 *   still answer a consistency token); per workflow its version, deleted and
 *   enabled flags, name, webhook secret and steps (a canonical steps envelope,
 *   copied into every RunStarted); per run its version, status (open,
 *   succeeded, failed), step count, current step and the attempts recorded
 *   for it (fixed size: a finished run stays small); per Idempotency-Key the
 *   SHA-256 of the command that used it and the original answer (status, id,
 *   version, position, aggregate); per topic (resource, workflow, run) and
 *   partition the next offset the state covers. Everything in it can be
 *   rebuilt from the log: cmd_state_apply_envelope() applies one decoded
 *   event, whether read back from Kafka at start or just committed by the
 *   writer (resource events may also come as a cmd_event: cmd_state_apply).
 *
 * Group commit: the batch overlay
 *   A cmd_batch is the open batch of one transaction. cmd_batch_decide() judges
 *   a command against the committed state plus the batch's pending events
 *   (so two updates of one resource in one batch get versions n+1 and n+2,
 *   a second create of one id gets 409, a second use of one Idempotency-Key
 *   follows the first). Nothing in cmd_state changes while deciding. When the
 *   transaction commits, the writer applies the batch's events to the state
 *   with their offsets (cmd_state_apply); when it fails, cmd_batch_reset()
 *   forgets the overlay and the state is as before.
 *
 * Decisions (DESIGN.md section 5 and 8)
 *   create of an existing or deleted id -> 409; update/delete of an unknown or
 *   deleted id -> 404; If-Match with another version -> 412 carrying the
 *   current version; an update that changes nothing -> 200 with the current
 *   version, no event; an Idempotency-Key seen before with the same command
 *   hash -> the original answer, no event (with another hash -> 422); events
 *   whose envelope has no command_hash (written before it existed) answer any
 *   retry of their key with the original answer.
 * Workflows and runs (issue #6, CONTRACT6): a command appends 1..CMD_MAX_EVENTS
 *   events of one aggregate with consecutive versions (cmd_decision.events;
 *   `version` is the last). Workflow create/update/delete as resources (409,
 *   404, 412; only changed fields; name/secret/steps -> WorkflowUpdated,
 *   enabled -> WorkflowEnabled/Disabled after it). Run start: workflow
 *   unknown or deleted 404; webhook secret differs 401 invalid_webhook_secret
 *   (SHA-256 of both compared with CRYPTO_memcmp; checked before the enabled
 *   flag); disabled 409 workflow_disabled; the decision carries copies of the
 *   workflow's version, secret and steps (committed or pending in the batch).
 *   Run attempt: unknown 404; finished 409 run_finished; not the current step
 *   409 step_mismatch; attempt <= recorded 409 attempt_recorded; attempt >
 *   recorded + 1 409 attempt_gap (the three with current_step and
 *   recorded_attempts); then StepAttempted [+ StepSucceeded [+ RunSucceeded
 *   after the last step]] or [+ StepFailed + RunFailed].
 *
 * A refused command (400..422) appends nothing and is not recorded under its
 *   Idempotency-Key: a retry is judged afresh against the state of its time.
 * Idempotency keys are kept for the life of the state (they are in the log
 *   and in the snapshot); there is no expiry yet.
 *
 * Ownership: cmd_state and cmd_batch own every string they hold (copies).
 * Threads: none of this is thread-safe; the writer thread owns both.
 */
#ifndef CMD_STATE_H
#define CMD_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "cmd_aggregate.h"
#include "ev_codec.h"

typedef struct cmd_map cmd_map; /* string-keyed hash map (internal) */

typedef struct cmd_resource {
    int64_t version;
    int deleted;
    char *name;
    char *description;
    int status; /* ev_resource_status */
    int32_t partition;
    int64_t offset; /* of its last event, -1 when unknown */
} cmd_resource;

/*
 * A workflow as the command side needs it: enough to decide updates (only
 * changed fields become events), run starts (enabled, webhook secret) and to
 * copy its steps into RunStarted. `steps` is a canonical steps envelope
 * (cmd_steps_canonical): the same steps always give the same bytes, so a
 * PUT with unchanged actions is a no-op.
 */
typedef struct cmd_workflow {
    int64_t version;
    int deleted;
    int enabled;
    char *name;
    char *secret;
    uint8_t *steps; /* owned; NULL = no steps */
    size_t steps_len;
    uint32_t step_count;
    int32_t partition;
    int64_t offset; /* of its last event, -1 when unknown */
} cmd_workflow;

typedef enum {
    CMD_RUN_OPEN = 0, /* RunStarted, not finished */
    CMD_RUN_SUCCEEDED = 1,
    CMD_RUN_FAILED = 2,
} cmd_run_status;

/* A run: a fixed-size record (a finished run stays small). */
typedef struct cmd_run {
    int64_t version;
    int64_t offset; /* of its last event, -1 when unknown */
    int32_t partition;
    int32_t status;      /* cmd_run_status */
    uint32_t step_count; /* steps of the workflow at trigger time */
    uint32_t step;       /* the current step: the first one without StepSucceeded */
    uint32_t attempts;   /* attempts recorded (StepAttempted) for the current step */
    uint32_t reserved;   /* 0 */
} cmd_run;

/*
 * Incremental snapshots: the delta
 *   With tracking on (cmd_state_track), every change cmd_state_apply() makes
 *   is also appended to the state's delta as a snapshot record (the layout of
 *   cmd_snapshot.h: 'r' + id -> cmd_snap_res + name + description, 'i' + key
 *   -> cmd_idem), so the delta holds exactly what changed since it was last
 *   taken. The writer hands it to the snapshot thread (cmd_snapshotter_submit)
 *   with a copy of next_offset: every event below those offsets is either in
 *   an earlier delta or in this one. A later record of one key replaces the
 *   earlier one, so records are written in order. Cost per event: one append
 *   of about its own size; taking the delta moves a pointer.
 *   `full` says the delta is the whole state (a fresh or discarded state, or
 *   a rebuild by cmd_state_delta_full after a failed write): the snapshot
 *   must be emptied before it is written. `lost` says a record could not be
 *   kept (out of memory): the next hand-over must be a full one.
 * Record encoding: u8 kind ('r' or 'i'), u16 key length, u32 value length,
 * key bytes, value bytes (host byte order, unaligned).
 */
struct cmd_delta {
    unsigned char *buf;
    size_t len, cap;
    size_t records;
    int full;
    int lost;
};

/* A resource as stored in a snapshot record, followed by name and description. */
typedef struct cmd_snap_res {
    int64_t version, offset;
    int32_t partition, status, deleted;
    uint32_t name_len, desc_len;
} cmd_snap_res;

/* A workflow as stored in a snapshot record ('w'), followed by name, secret
 * and the canonical steps envelope. */
typedef struct cmd_snap_wf {
    int64_t version, offset;
    int32_t partition, deleted, enabled;
    uint32_t step_count, name_len, secret_len, steps_len;
    uint32_t reserved;
} cmd_snap_wf;

#define CMD_DELTA_HDR 7 /* kind + key length + value length */

struct cmd_state {
    cmd_map *resources; /* id -> cmd_resource */
    cmd_map *idem;      /* Idempotency-Key -> cmd_idem */
    cmd_map *workflows; /* id -> cmd_workflow */
    cmd_map *runs;      /* id -> cmd_run */
    int partitions;
    int64_t *next_offset; /* [CMD_TOPICS * partitions]: topic t, partition p at
                             t * partitions + p (the resource topic first); 0 = from
                             the beginning */
    uint64_t events;      /* events applied since creation or load */
    char cluster_id[64];  /* Kafka cluster the offsets refer to; "" = not known yet */
    int track;            /* 1: record changes in `delta` */
    cmd_delta delta;
};

/* One resource event as the state sees it (from Kafka or from a committed
 * batch); workflow and run events go through cmd_state_apply_envelope. */
typedef struct cmd_event {
    ev_event_type type; /* EV_RESOURCE_CREATED / _UPDATED / _DELETED */
    const char *id;
    int64_t version;
    const char *name; /* NULL: absent (unchanged) */
    const char *description;
    int has_status;
    int status;
    const char *command_id;      /* NULL: none */
    const uint8_t *command_hash; /* NULL or CMD_HASH_LEN bytes */
    int32_t partition;
    int64_t offset;
} cmd_event;

struct cmd_batch {
    cmd_map *resources; /* id -> cmd_resource (pending copy) */
    cmd_map *workflows; /* id -> cmd_workflow (pending copy) */
    cmd_map *runs;      /* id -> cmd_run (pending copy) */
    cmd_map *keys;      /* Idempotency-Key -> the command of the batch holding it, its hash */
};

/* ---- state ---- */

/* Empty state for `partitions` partitions. Returns 0 or KQ_ENOMEM. */
int cmd_state_init(cmd_state *st, int partitions);
void cmd_state_free(cmd_state *st);

/* Look-ups; the pointers are owned by the state and valid until it changes. */
const cmd_resource *cmd_state_resource(const cmd_state *st, const char *id);
const cmd_idem *cmd_state_idem(const cmd_state *st, const char *key);
size_t cmd_state_resource_count(const cmd_state *st);
size_t cmd_state_idem_count(const cmd_state *st);
const cmd_workflow *cmd_state_workflow(const cmd_state *st, const char *id);
const cmd_run *cmd_state_run(const cmd_state *st, const char *id);
size_t cmd_state_workflow_count(const cmd_state *st);
size_t cmd_state_run_count(const cmd_state *st);

/*
 * Apply one event. Events at or below the resource's version are skipped (a
 * re-read of the log after an uncertain commit sees its own events again);
 * next_offset[partition] moves to offset + 1. Returns 0, 1 when skipped,
 * KQ_ECORRUPT for a gap or an event the state cannot take (an update of an
 * unknown resource; the caller logs it and moves on), KQ_ENOMEM.
 */
int cmd_state_apply(cmd_state *st, const cmd_event *ev, char *errstr, size_t errlen);

/*
 * Apply one decoded event of any aggregate read from topic index `topic`
 * (CMD_TOPIC_*) at (partition, offset): the path of catch-up and of committed
 * workflow and run events (the writer decodes what it produced). Resource
 * events go on to cmd_state_apply. Same returns as cmd_state_apply; an event
 * whose aggregate does not belong to `topic` is KQ_ECORRUPT. The offset moves
 * in every case.
 */
int cmd_state_apply_envelope(cmd_state *st, int topic, const ev_envelope *e, int32_t partition,
                             int64_t offset, char *errstr, size_t errlen);

/* Set the next offset of a partition that a read reached without events
 * (resource topic; cmd_state_set_topic_offset for any topic). */
void cmd_state_set_offset(cmd_state *st, int32_t partition, int64_t next);
void cmd_state_set_topic_offset(cmd_state *st, int topic, int32_t partition, int64_t next);

/* Iterate (for snapshots): calls fn for every entry; stops at a non-zero return. */
int cmd_state_each_resource(const cmd_state *st,
                            int (*fn)(void *arg, const char *id, const cmd_resource *r), void *arg);
int cmd_state_each_idem(const cmd_state *st,
                        int (*fn)(void *arg, const char *key, const cmd_idem *i), void *arg);
int cmd_state_each_workflow(const cmd_state *st,
                            int (*fn)(void *arg, const char *id, const cmd_workflow *w), void *arg);
int cmd_state_each_run(const cmd_state *st, int (*fn)(void *arg, const char *id, const cmd_run *r),
                       void *arg);

/* Insert copies (for snapshot loading). Returns 0 or KQ_ENOMEM. */
int cmd_state_put_resource(cmd_state *st, const char *id, const cmd_resource *r);
int cmd_state_put_idem(cmd_state *st, const char *key, const cmd_idem *i);
int cmd_state_put_workflow(cmd_state *st, const char *id, const cmd_workflow *w);
int cmd_state_put_run(cmd_state *st, const char *id, const cmd_run *r);

/* ---- steps ---- */

/*
 * The canonical steps envelope of a step list: a WorkflowUpdated holding only
 * the steps, every other field fixed, so equal steps give equal bytes.
 * *out is malloc'ed (caller frees). Returns 0, KQ_EINVAL (a step the codec
 * refuses; errstr says which) or KQ_ENOMEM.
 */
int cmd_steps_canonical(const ev_step_list *steps, uint8_t **out, size_t *outlen, char *errstr,
                        size_t errlen);

/* Decode an envelope holding steps (a canonical one, the API's steps_env, a
 * WorkflowCreated or a WorkflowUpdated with steps) into *e and give its step
 * list (views into buf). Returns 0 or KQ_ECORRUPT. */
int cmd_steps_view(const uint8_t *buf, size_t len, ev_envelope *e, ev_step_list *steps,
                   char *errstr, size_t errlen);

/* ---- delta (incremental snapshots) ----
 * Record kinds: 'r' resource (cmd_snap_res + name + description), 'i'
 * Idempotency-Key (cmd_idem), 'w' workflow (cmd_snap_wf + name + secret +
 * steps), 'n' run (cmd_run). */

/* Turn change tracking on or off (off by default). A state from
 * cmd_state_init starts with an empty delta marked full. */
void cmd_state_track(cmd_state *st, int on);

/* Forget the delta (e.g. right after loading the state from a snapshot:
 * nothing is new). full and lost are cleared. */
void cmd_state_delta_clear(cmd_state *st);

/* Replace the delta with the whole state, marked full (after a failed
 * snapshot write, or a lost record). Takes time proportional to the state.
 * Returns 0 or KQ_ENOMEM (then the delta is marked lost). */
int cmd_state_delta_full(cmd_state *st);

/* Move the delta into *out (which the caller frees with cmd_delta_free) and
 * start an empty one. */
void cmd_state_delta_take(cmd_state *st, cmd_delta *out);

/* Append src's records to dst (src is unchanged); dst->full stays. */
int cmd_delta_append(cmd_delta *dst, const cmd_delta *src);
void cmd_delta_free(cmd_delta *d);

/* Iterate a delta's records: returns 1 and fills the outputs for the next
 * record at *pos (advancing it), 0 at the end, KQ_ECORRUPT for a malformed
 * buffer. */
int cmd_delta_next(const cmd_delta *d, size_t *pos, char *kind, const char **key, size_t *keylen,
                   const void **val, size_t *vallen);

/* ---- batch ---- */

int cmd_batch_init(cmd_batch *b);
/* Forget every pending change (after a commit has been applied, or a failure). */
void cmd_batch_reset(cmd_batch *b);
void cmd_batch_free(cmd_batch *b);

/*
 * Decide command `c`, the `index`-th of batch `b`, against `st` plus the
 * batch. An APPEND is recorded in the batch (later commands see it). Returns
 * 0 or KQ_ENOMEM (then nothing was recorded).
 */
int cmd_batch_decide(const cmd_state *st, cmd_batch *b, const cmd_command *c, size_t index,
                     cmd_decision *d);

/* The command's event as a cmd_event (for cmd_state_apply after commit; resource commands). */
void cmd_command_event(const cmd_command *c, const cmd_decision *d, int32_t partition,
                       int64_t offset, cmd_event *ev);

/* ---- consistency tokens ---- */

/*
 * The consistency token of an event position: "v1." + base64url (no padding)
 * of "<topic>:<partition>:<offset>". Opaque to clients; the query API parses
 * it with cmd_token_parse. Returns the length or KQ_ERANGE.
 */
#define CMD_TOKEN_MAX 512
int cmd_token_encode(const char *topic, int32_t partition, int64_t offset, char *out,
                     size_t outlen);
/* Parse a token; topic into topic[topiclen]. KQ_EINVAL for anything malformed. */
int cmd_token_parse(const char *token, char *topic, size_t topiclen, int32_t *partition,
                    int64_t *offset);

#endif
