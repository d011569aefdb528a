/*
 * cmd_state.h — the command side's view of the log, and the decisions made on it.
 *
 * What it is for
 *   A command is accepted or refused by comparing it with the current state of
 *   its aggregate. This module holds that state, in memory, for the Resource
 *   aggregate: per resource its version, deleted flag, current name,
 *   description and status (so an update emits only the changed fields) and
 *   the position (partition, offset) of its last event (so a no-op update can
 *   still answer a consistency token); per Idempotency-Key the SHA-256 of the
 *   command that used it and the original answer (status, id, version,
 *   position); per partition of the resource topic the next offset the state
 *   covers. Everything in it can be rebuilt from the log: cmd_state_apply()
 *   applies one event, whether read back from Kafka at start or just
 *   committed by the writer.
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

#include "ev_codec.h"

#define CMD_HASH_LEN 32
#define CMD_KEY_MAX 255 /* Idempotency-Key and correlation id: 1..255 bytes */

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

typedef struct cmd_idem {
    int has_hash;
    uint8_t hash[CMD_HASH_LEN];
    unsigned status; /* 201 (created) or 200 */
    char id[EV_ID_MAX + 1];
    int64_t version;
    int32_t partition;
    int64_t offset;
} cmd_idem;

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
typedef struct cmd_delta {
    unsigned char *buf;
    size_t len, cap;
    size_t records;
    int full;
    int lost;
} cmd_delta;

/* A resource as stored in a snapshot record, followed by name and description. */
typedef struct cmd_snap_res {
    int64_t version, offset;
    int32_t partition, status, deleted;
    uint32_t name_len, desc_len;
} cmd_snap_res;

#define CMD_DELTA_HDR 7 /* kind + key length + value length */

typedef struct cmd_state {
    cmd_map *resources; /* id -> cmd_resource */
    cmd_map *idem;      /* Idempotency-Key -> cmd_idem */
    int partitions;
    int64_t *next_offset; /* [partitions]; 0 = from the beginning */
    uint64_t events;      /* events applied since creation or load */
    char cluster_id[64];  /* Kafka cluster the offsets refer to; "" = not known yet */
    int track;            /* 1: record changes in `delta` */
    cmd_delta delta;
} cmd_state;

/* One event as the state sees it (from Kafka or from a committed batch). */
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

/* ---- commands and decisions ---- */

typedef enum {
    CMD_CREATE = 1, /* resource */
    CMD_UPDATE,
    CMD_DELETE,
    CMD_WF_CREATE,   /* workflow: WorkflowCreated */
    CMD_WF_UPDATE,   /* WorkflowUpdated and/or WorkflowEnabled / WorkflowDisabled */
    CMD_WF_DELETE,   /* WorkflowDeleted */
    CMD_RUN_START,   /* manual trigger or webhook: RunStarted of a new run `id` */
    CMD_RUN_ATTEMPT, /* the worker records one attempt: StepAttempted [+ StepSucceeded
                        [+ RunSucceeded]] or [+ StepFailed + RunFailed] */
} cmd_kind;

#define CMD_F_NAME 0x1u
#define CMD_F_DESCRIPTION 0x2u
#define CMD_F_STATUS 0x4u
#define CMD_F_ENABLED 0x8u /* workflow */
#define CMD_F_SECRET 0x10u
#define CMD_F_STEPS 0x20u

/* CMD_RUN_ATTEMPT: what the worker's policy made of the attempt. */
typedef enum {
    CMD_OUT_RETRY = 1, /* StepAttempted with next_delay_ms */
    CMD_OUT_SUCCEEDED, /* + StepSucceeded (+ RunSucceeded after the last step) */
    CMD_OUT_FAILED,    /* + StepFailed + RunFailed */
} cmd_outcome;

/* Most events one command appends (StepAttempted + StepSucceeded + RunSucceeded). */
#define CMD_MAX_EVENTS 3

typedef struct cmd_command {
    cmd_kind kind;
    char id[EV_ID_MAX + 1];
    unsigned fields; /* CMD_F_* present in the request */
    char *name;      /* owned (malloc) when present */
    char *description;
    int status;
    int has_if_match; /* If-Match: "<version>" */
    int if_match_any; /* If-Match: * */
    int64_t if_match;
    char idem_key[CMD_KEY_MAX + 1]; /* "" = none */
    uint8_t hash[CMD_HASH_LEN];     /* SHA-256 of method, path, body */
    char actor[64 + 1];
    char correlation_id[CMD_KEY_MAX + 1];

    /* ---- workflow (CMD_WF_*); `id` is the workflow id ---- */
    int enabled;          /* CMD_F_ENABLED (create: the API always sets it, default 1) */
    char *secret;         /* CMD_F_SECRET: the webhook secret (owned; create: always set,
                             generated by the API when the client gave none) */
    int secret_generated; /* 1: the API made `secret` (answer it once as webhook_secret) */
    uint8_t *steps_env;   /* CMD_F_STEPS: an encoded Envelope (owned) whose payload is a
                             WorkflowUpdated holding only `steps`, built and validated by the
                             API with ev_envelope_encode; the writer decodes it and copies the
                             steps into the event it appends */
    size_t steps_env_len;

    /* ---- run start (CMD_RUN_START); `id` is the new run id (UUID v4) ---- */
    char workflow_id[EV_ID_MAX + 1];
    int trigger;         /* ev_trigger_kind */
    char *payload_json;  /* owned: the trigger payload, a JSON object (compact) */
    int has_hook_secret; /* webhook: the X-Webhook-Secret header, compared by the
                            writer with the workflow's secret in constant time */
    char hook_secret[EV_META_MAX + 1];

    /* ---- run attempt (CMD_RUN_ATTEMPT); `id` is the run id ---- */
    uint32_t step;    /* 0-based */
    uint32_t attempt; /* 1-based */
    int has_status_code;
    int32_t status_code;
    char *error; /* owned; NULL = none */
    int64_t duration_ms;
    int has_next_delay_ms;
    int64_t next_delay_ms;
    char delivery_id[EV_META_MAX + 1];
    int outcome; /* cmd_outcome */
} cmd_command;

typedef enum {
    CMD_D_APPEND = 1, /* produce one event: type/version/changed below */
    CMD_D_ERROR,      /* refuse: status/code/message (and current_version) */
    CMD_D_REPLAY,     /* answer the original answer in `idem` */
    CMD_D_FOLLOW,     /* same key and request as command `follow` of this batch */
    CMD_D_NOOP,       /* update that changes nothing: 200 with the current state */
} cmd_decision_kind;

typedef struct cmd_decision {
    cmd_decision_kind kind;
    int pending; /* depends on pending events of the batch: 503 if the batch fails */
    /* APPEND */
    ev_event_type event;
    int64_t version;
    unsigned changed; /* CMD_F_* carried by a ResourceUpdated */
    /* ERROR */
    unsigned status;
    const char *code;
    char message[160];
    int64_t current_version; /* 412/409: the aggregate's version, else 0 */
    /* REPLAY */
    cmd_idem idem;
    /* FOLLOW */
    size_t follow;
} cmd_decision;

typedef struct cmd_batch {
    cmd_map *resources; /* id -> cmd_resource (pending copy) */
    cmd_map *keys;      /* Idempotency-Key -> the command of the batch holding it, its hash */
} cmd_batch;

/* ---- state ---- */

/* Empty state for `partitions` partitions. Returns 0 or KQ_ENOMEM. */
int cmd_state_init(cmd_state *st, int partitions);
void cmd_state_free(cmd_state *st);

/* Look-ups; the pointers are owned by the state and valid until it changes. */
const cmd_resource *cmd_state_resource(const cmd_state *st, const char *id);
const cmd_idem *cmd_state_idem(const cmd_state *st, const char *key);
size_t cmd_state_resource_count(const cmd_state *st);
size_t cmd_state_idem_count(const cmd_state *st);

/*
 * Apply one event. Events at or below the resource's version are skipped (a
 * re-read of the log after an uncertain commit sees its own events again);
 * next_offset[partition] moves to offset + 1. Returns 0, 1 when skipped,
 * KQ_ECORRUPT for a gap or an event the state cannot take (an update of an
 * unknown resource; the caller logs it and moves on), KQ_ENOMEM.
 */
int cmd_state_apply(cmd_state *st, const cmd_event *ev, char *errstr, size_t errlen);

/* Set the next offset of a partition that a read reached without events. */
void cmd_state_set_offset(cmd_state *st, int32_t partition, int64_t next);

/* Iterate (for snapshots): calls fn for every entry; stops at a non-zero return. */
int cmd_state_each_resource(const cmd_state *st,
                            int (*fn)(void *arg, const char *id, const cmd_resource *r), void *arg);
int cmd_state_each_idem(const cmd_state *st,
                        int (*fn)(void *arg, const char *key, const cmd_idem *i), void *arg);

/* Insert copies (for snapshot loading). Returns 0 or KQ_ENOMEM. */
int cmd_state_put_resource(cmd_state *st, const char *id, const cmd_resource *r);
int cmd_state_put_idem(cmd_state *st, const char *key, const cmd_idem *i);

/* ---- delta (incremental snapshots) ---- */

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

/* The command's event as a cmd_event (for cmd_state_apply after commit). */
void cmd_command_event(const cmd_command *c, const cmd_decision *d, int32_t partition,
                       int64_t offset, cmd_event *ev);

/* Free the strings a command owns (not the struct). */
void cmd_command_clear(cmd_command *c);

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
