/*
 * cmd_aggregate.h — the command side's one table of aggregate types.
 *
 * What it is for
 *   Every kind of aggregate the command API writes (resource, workflow, run)
 *   is reached through one cmd_aggregate entry, as curl reaches a protocol
 *   through its Curl_handler: the writer, the state, the snapshot and the
 *   API never switch on the type themselves. An entry says
 *     - which event topic (index = ev_aggregate_type - 1) and snapshot record
 *       kind the type has, and its name ("resource": metric label, logs);
 *     - how the state holds one aggregate (value size, clear, deep copy);
 *     - parse: a request body (JSON object) into a cmd_command, one 400
 *       detail per offending field (HTTP threads; a run trigger's body is
 *       any JSON object: cmd_run_payload);
 *     - decide: a command against the committed state plus the open batch
 *       (cmd_batch_decide dispatches here after the Idempotency-Key checks);
 *     - build: the envelope of the i-th event of an APPEND decision (the ONE
 *       place that says which fields go into which event);
 *     - apply: one committed event, decoded from the bytes in the log, into
 *       the state: the only apply path, used by catch-up and by the writer
 *       after a commit alike;
 *     - snapshot records: put one aggregate into a record buffer (used by the
 *       incremental delta and by a full snapshot alike) and load one back.
 *   The per-type code lives in cmd_resource.c, cmd_workflow.c and cmd_run.c.
 *
 * Adding an aggregate type on the command side: its events in events/; a
 *   topic (CMD_TOPICS grows; kq_kafka_topic_names); a cmd_<type>.c/.h with
 *   its value struct and the hooks below; its cmd_kind values (and their row
 *   in cmd_aggregate.c's kind table); its entry in cmd_aggregate.c's table;
 *   its routes in cmd_api.c calling its parse hook. A new snapshot record
 *   kind needs no change in cmd_snapshot.c.
 *
 * The functions the writer calls (cmd_writer.c and its helpers):
 *   cmd_batch_decide (cmd_state.h)      decide a command of a batch
 *   cmd_aggregate_build                 the envelope of event i of a decision
 *   cmd_aggregate_apply                 apply one record (catch-up, post-commit)
 *   cmd_aggregate_position              version and position of an aggregate
 *                                       (a no-op's answer)
 *   cmd_aggregate_answer_secret         the webhook secret an answer shows
 *   cmd_kind_topic, cmd_success_status  per command kind
 *   cmd_aggregate_get(topic)->name      metric labels
 * and the API (cmd_api.c): cmd_aggregate_get(cmd_kind_topic(kind))->parse.
 *
 * Ownership: the table is static. A cmd_command owns its strings and buffers
 *   (cmd_command_clear); a cmd_decision owns the RunStarted copies
 *   (cmd_decision_clear); envelopes built here hold views into the command,
 *   the decision and the caller's scratch envelope.
 *
 * Threads: the table is constant; parse runs on HTTP threads, everything
 *   else on the writer thread (which owns cmd_state and cmd_batch).
 */
#ifndef CMD_AGGREGATE_H
#define CMD_AGGREGATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ev_codec.h"

#define CMD_HASH_LEN 32
#define CMD_KEY_MAX 255 /* Idempotency-Key and correlation id: 1..255 bytes */

/* Topics the state covers: index = ev_aggregate_type - 1. */
#define CMD_TOPICS 3
#define CMD_TOPIC_RESOURCE 0
#define CMD_TOPIC_WORKFLOW 1
#define CMD_TOPIC_RUN 2

typedef struct cmd_state cmd_state; /* cmd_state.h */
typedef struct cmd_batch cmd_batch; /* cmd_state.h */
typedef struct cmd_delta cmd_delta; /* cmd_delta.h */

/*
 * The answer of an Idempotency-Key's command, kept for KCQRS_IDEMPOTENCY_TTL
 * after its event's time (and in the snapshot as an 'i' record, this struct
 * as raw bytes).
 */
typedef struct cmd_idem {
    int has_hash;
    uint8_t hash[CMD_HASH_LEN];
    unsigned status; /* 201 (created), 202 (run started) or 200 */
    char id[EV_ID_MAX + 1];
    int64_t version;
    int32_t partition;
    int64_t offset;
    int32_t aggregate; /* ev_aggregate_type of the aggregate (its topic: aggregate - 1) */
    int64_t at_us;     /* occurred_at_us of its event: the answer is kept until at_us +
                          KCQRS_IDEMPOTENCY_TTL (cmd_state.h, "Expiry") */
} cmd_idem;

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
    int has_hook_sig; /* webhook: X-Hub-Signature-256, the HMAC-SHA256 below of the raw
                         body, checked by the writer with the workflow's secret */
    uint8_t hook_sig[32];
    char *hook_body; /* owned: the raw body the signature covers (NULL when empty) */
    size_t hook_body_len;

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
    CMD_D_APPEND = 1, /* produce the events below */
    CMD_D_ERROR,      /* refuse: status/code/message (and current_version) */
    CMD_D_REPLAY,     /* answer the original answer in `idem` */
    CMD_D_FOLLOW,     /* same key and request as command `follow` of this batch */
    CMD_D_NOOP,       /* update that changes nothing: 200 with the current state */
} cmd_decision_kind;

typedef struct cmd_decision {
    cmd_decision_kind kind;
    int pending; /* depends on pending events of the batch: 503 if the batch fails */
    /* APPEND: nevents events of the command's aggregate with consecutive
     * versions version - nevents + 1 .. version; `version` is the last one
     * (the answer's). `event` is events[0]. */
    ev_event_type event;
    int64_t version;
    unsigned changed; /* CMD_F_* carried by a ResourceUpdated / WorkflowUpdated */
    int nevents;
    ev_event_type events[CMD_MAX_EVENTS];
    /* APPEND of CMD_RUN_START: the workflow at decision time (committed or
     * pending in the batch), copied into RunStarted. Owned: cmd_decision_clear. */
    int64_t wf_version;
    char *wf_secret;
    uint8_t *wf_steps; /* canonical steps envelope (NULL: no steps) */
    size_t wf_steps_len;
    uint32_t step_count;
    /* ERROR */
    unsigned status;
    const char *code;
    char message[160];
    int64_t current_version;    /* 412/409: the aggregate's version, else 0 */
    int has_attempt_detail;     /* CMD_RUN_ATTEMPT 409 step_mismatch / attempt_*: */
    uint32_t current_step;      /* the run's current step */
    uint32_t recorded_attempts; /* attempts recorded for it */
    /* REPLAY */
    cmd_idem idem;
    /* FOLLOW */
    size_t follow;
} cmd_decision;

/* Free what a decision owns (the RunStarted copies); it stays usable. */
void cmd_decision_clear(cmd_decision *d);

/* Free the strings and buffers a command owns (not the struct). */
void cmd_command_clear(cmd_command *c);

/* Fill d as a refusal (CMD_D_ERROR) with a printf message. */
void cmd_decision_refuse(cmd_decision *d, unsigned status, const char *code, int64_t current,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* For the types' values: *dst becomes a malloc'd copy of src (NULL or an
 * absent ev_str: ""), the old string freed. 0 or KQ_ENOMEM (dst unchanged). */
int cmd_str_set(char **dst, const char *src);
int cmd_str_set_ev(char **dst, ev_str src);

/* ---- the table ---- */

typedef struct cmd_aggregate {
    ev_aggregate_type type;
    int topic;        /* CMD_TOPIC_* = type - 1 */
    const char *name; /* "resource", "workflow", "run" */
    char snap_kind;   /* snapshot record kind: 'r', 'w', 'n' */

    /* The state's value per id: value_size bytes, zeroed when created;
     * clear frees what it owns (NULL: nothing); copy makes dst (cleared) a
     * deep copy of src (the batch overlay's pending copies). */
    size_t value_size;
    void (*clear)(void *val);
    int (*copy)(void *dst, const void *src);

    /* HTTP thread: the JSON object body of a command of this type into c
     * (c->kind and, for updates, c->id set by the caller). Returns 0,
     * KQ_EINVAL with details appended ({"field","message"}: 400
     * validation_failed), KQ_ENOMEM or KQ_EIO (no randomness). */
    int (*parse)(const json_t *obj, cmd_command *c, json_t *details);

    /* Writer: decide c against st plus b (memset d first is done by the
     * caller); an APPEND is recorded in b. 0 or KQ_ENOMEM. */
    int (*decide)(const cmd_state *st, cmd_batch *b, const cmd_command *c, cmd_decision *d);

    /* Writer: the payload of event d->events[i] of c into e (already
     * initialised for that type). Views into c, d and *scratch (which
     * holds a decoded steps envelope; keep it until e is encoded). 0 or
     * KQ_ECORRUPT / KQ_EINVAL with errstr. */
    int (*build)(const cmd_command *c, const cmd_decision *d, int i, ev_envelope *e,
                 ev_envelope *scratch, char *errstr, size_t errlen);

    /* Writer: apply committed event e of aggregate `id` at (partition,
     * offset): 0 applied, 1 skipped (version <= current: a re-read),
     * KQ_ECORRUPT (refused: a gap, an event the state cannot take; errstr
     * says why, nothing changed), KQ_ENOMEM. The idempotency record and the
     * offset are the caller's (cmd_aggregate_apply). */
    int (*apply)(cmd_state *st, const ev_envelope *e, const char *id, int32_t partition,
                 int64_t offset, char *errstr, size_t errlen);

    /* Version, partition and offset of the aggregate's last event. */
    void (*position)(const void *val, int64_t *version, int32_t *partition, int64_t *offset);

    /* Snapshot: append the record of aggregate `id` (value val) to d
     * (0 or KQ_ENOMEM, then d is marked lost); load a record's value into
     * the state (copies; 0, KQ_ECORRUPT with errstr, KQ_ENOMEM). */
    int (*snap_put)(cmd_delta *d, const char *id, const void *val);
    int (*snap_load)(cmd_state *st, const char *id, const void *rec, size_t len, char *errstr,
                     size_t errlen);

    /* The webhook secret a success answer of c shows, or NULL (most types:
     * NULL hook). replay: the answer is a replay of aggregate `id`. */
    const char *(*answer_secret)(const cmd_state *st, const cmd_command *c, const char *id,
                                 int replay);
} cmd_aggregate;

/* The entry of topic index t (CMD_TOPIC_*), NULL when out of range. */
const cmd_aggregate *cmd_aggregate_get(int topic);

/* The entry of a snapshot record kind, NULL for none. */
const cmd_aggregate *cmd_aggregate_of_record(char kind);

/* The topic index (CMD_TOPIC_*) of a command's aggregate. */
int cmd_kind_topic(cmd_kind kind);

/* The HTTP status of a command's success: 201 for creates, 202 for run
 * starts, else 200. */
unsigned cmd_success_status(cmd_kind kind);

/*
 * The envelope of event i (0 .. d->nevents - 1) of APPEND decision d of c:
 * initialised for d->events[i] with aggregate id, version (d->version -
 * d->nevents + 1 + i), actor ("anonymous" when none), command id (the
 * Idempotency-Key, if any), correlation id, command hash and payload. The
 * caller sets event_id, occurred_at_us and prev_hash, then encodes. Views
 * into c, d and *scratch (keep all three until e is encoded). Returns 0 or
 * a negative code with errstr.
 */
int cmd_aggregate_build(const cmd_command *c, const cmd_decision *d, int i, ev_envelope *e,
                        ev_envelope *scratch, char *errstr, size_t errlen);

/*
 * Apply one record of topic index `topic` read at (partition, offset): the
 * value bytes as stored in Kafka. Used by catch-up for every record and by
 * the writer for each event it committed (from the bytes it produced). The
 * state's next offset of the partition moves to offset + 1 in every case;
 * the event's Idempotency-Key (command_id) records the answer. Returns 0
 * applied, 1 skipped (already in the state), KQ_ECORRUPT (not decodable,
 * not of this topic, or refused by the aggregate: errstr says why; the
 * caller logs it and moves on), KQ_ENOMEM.
 */
int cmd_aggregate_apply(cmd_state *st, int topic, const void *value, size_t len, int32_t partition,
                        int64_t offset, char *errstr, size_t errlen);

/* The same for an envelope decoded already. */
int cmd_aggregate_apply_envelope(cmd_state *st, int topic, const ev_envelope *e, int32_t partition,
                                 int64_t offset, char *errstr, size_t errlen);

/* Version, partition and offset of the last event of aggregate `id` of
 * topic `topic` (a no-op answer). 0, or KQ_ENOTFOUND. */
int cmd_aggregate_position(const cmd_state *st, int topic, const char *id, int64_t *version,
                           int32_t *partition, int64_t *offset);

/* The webhook secret a success answer of c shows (a workflow create, a
 * rotate_secret update), or NULL. replay: a replayed answer of aggregate
 * `id` shows the aggregate's current secret. Owned by c or the state. */
const char *cmd_aggregate_answer_secret(const cmd_state *st, const cmd_command *c, const char *id,
                                        int replay);

#endif
