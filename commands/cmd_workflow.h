/*
 * cmd_workflow.h — the workflow aggregate on the command side.
 *
 * What it is for
 *   Everything the command side does with workflows, reached through the
 *   workflow entry of cmd_aggregate.h:
 *   - body of POST /api/v1/workflows (id?, name, enabled?, secret?,
 *     actions) and PUT /api/v1/workflows/{id} (any of name, enabled, secret,
 *     actions, "rotate_secret": true; at least one; rotate_secret not with
 *     secret): name 1..255 characters; id [A-Za-z0-9._-]{1,64} else a UUID
 *     v4; enabled boolean (default true); secret 1..255 visible ASCII bytes
 *     (none, or rotate_secret: 32 random bytes as 64 hex digits, answered
 *     once as webhook_secret); actions 1..100, each checked by the action
 *     rules (events/ev_action.h) and turned into the steps envelope
 *     (cmd_command.steps_env);
 *   - decisions: create of an existing or deleted id 409 conflict;
 *     update/delete of an unknown or deleted one 404; If-Match 412; an
 *     update emits WorkflowUpdated with only the changed name / secret /
 *     steps, then WorkflowEnabled or WorkflowDisabled when `enabled`
 *     changed; nothing changed: 200, no event;
 *   - the events' payloads, and how a committed event changes the state;
 *   - the snapshot record 'w'.
 *
 * State per workflow (cmd_workflow): version, deleted, enabled, name,
 *   webhook secret and its steps as a canonical steps envelope (a
 *   WorkflowUpdated holding only the steps, every other field fixed: equal
 *   actions give equal bytes, so a PUT with the same actions is a no-op; it
 *   is copied into every RunStarted).
 * Snapshot record 'w' (format v4, v5): cmd_snap_wf + name + secret + canonical
 *   steps envelope. The secret is stored sealed (flags CMD_SNAP_WF_SEALED:
 *   kq_crypto_seal under the workflow's data key, associated data
 *   "workflow/<id>/snapshot/webhook_secret"), sealed when an event sets it;
 *   a load keeps it sealed until the keys are read (cmd_workflow_open_sealed).
 *   Plain (flags 0) only without a keyring, or in snapshots written before.
 *
 * Ownership: the state owns name, secret and steps (malloc'd copies).
 * Threads: parse on HTTP threads; the rest on the writer thread.
 */
#ifndef CMD_WORKFLOW_H
#define CMD_WORKFLOW_H

#include <stddef.h>
#include <stdint.h>

#include "cmd_aggregate.h"

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
    int64_t offset;  /* of its last event, -1 when unknown */
    uint8_t *sealed; /* owned: the secret sealed for the snapshot; NULL = none */
    size_t sealed_len;
    int seal_failed; /* the secret could not be sealed: the snapshot withholds it */
} cmd_workflow;

/* A workflow as stored in a snapshot record ('w'), followed by name, secret
 * and the canonical steps envelope. */
typedef struct cmd_snap_wf {
    int64_t version, offset;
    int32_t partition, deleted, enabled;
    uint32_t step_count, name_len, secret_len, steps_len;
    uint32_t flags; /* CMD_SNAP_WF_*; 0 in snapshots written before sealing */
} cmd_snap_wf;

#define CMD_SNAP_WF_PLAIN 0    /* the secret's bytes (no keyring, or an older snapshot) */
#define CMD_SNAP_WF_SEALED 1   /* kq_crypto_seal under "workflow/<id>"'s data key */
#define CMD_SNAP_WF_WITHHELD 2 /* could not be sealed: not stored, the load refuses it */

/* What cmd_workflow_open_sealed did: secrets opened, and those that did not
 * open (the first one's subject and reason). */
typedef struct cmd_workflow_open_ctx {
    struct kq_keyring *keys;
    cmd_state *st;
    size_t opened, resealed, failed;
    int first_rc;
    char subject[160];
    char errstr[256];
} cmd_workflow_open_ctx;

/* Open the secrets a snapshot load left sealed (workflows with a sealed copy
 * and no secret) with the keys of `keys` (read to the topic's end first).
 * One that does not open keeps its sealed copy (and no secret: its webhooks
 * are refused). Plain secrets of an older snapshot's records are sealed and
 * their records marked changed (cmd_state_changed), so the next snapshot
 * rewrites them sealed. 0 or KQ_ENOMEM. */
int cmd_workflow_open_sealed(cmd_state *st, struct kq_keyring *keys, cmd_workflow_open_ctx *out);

#define CMD_WF_SECRET_GEN_LEN 64 /* generated secret: 64 hex digits */

/* The workflow entry of the table (cmd_aggregate.c). */
extern const cmd_aggregate cmd_workflow_type;

/* Look-ups; owned by the state, valid until it changes. */
const cmd_workflow *cmd_state_workflow(const cmd_state *st, const char *id);
size_t cmd_state_workflow_count(const cmd_state *st);

/* 1 when `s` (len bytes) is a valid webhook secret: 1..255 bytes of 0x21..0x7e. */
int cmd_workflow_secret_ok(const char *s, size_t len);

/* A new secret: 64 lowercase hex digits + NUL into out[65]. 0 or KQ_EIO. */
int cmd_workflow_secret_generate(char out[CMD_WF_SECRET_GEN_LEN + 1]);

/* 1 when `given` is the workflow's secret: SHA-256 of both compared with
 * CRYPTO_memcmp (constant time; the length is not leaked). */
int cmd_workflow_secret_matches(const char *given, const char *secret);

/* Parse an X-Hub-Signature-256 value, "sha256=" and 64 hex digits (either
 * case), into out[32]. Returns 0 or KQ_EINVAL. */
int cmd_workflow_sig_parse(const char *v, uint8_t out[32]);

/*
 * 1 when the webhook credentials of run start `c` hold for a workflow whose
 * secret is `secret`: at least one is given (X-Webhook-Secret and/or
 * X-Hub-Signature-256) and each given one matches (the secret by
 * cmd_workflow_secret_matches, the signature as HMAC-SHA256 of c's raw body
 * with the secret, compared with CRYPTO_memcmp). With `secret` NULL (no such
 * workflow, or a deleted one) the same work is done against a fixed secret
 * and 0 is returned: an unknown workflow costs what a wrong secret costs.
 */
int cmd_workflow_hook_ok(const cmd_command *c, const char *secret);

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
 * WorkflowCreated, WorkflowUpdated or RunStarted with steps) into *e and give
 * its step list (views into buf). Returns 0 or KQ_ECORRUPT. */
int cmd_steps_view(const uint8_t *buf, size_t len, ev_envelope *e, ev_step_list *steps,
                   char *errstr, size_t errlen);

#endif
