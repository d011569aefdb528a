/*
 * cmd_idem.h — the answers of Idempotency-Keys in the command-side state.
 *
 * What it is for
 *   An event whose envelope carries a command_id (the Idempotency-Key of the
 *   command that appended it) records the command's answer under that key:
 *   the SHA-256 of the request (if the envelope has one), the status (201
 *   create, 202 run start, else 200), the aggregate's id, type, version and
 *   position, and the event's time. cmd_batch_decide replays it to a retry
 *   with the same hash and refuses one with another (422). The record
 *   (cmd_idem, cmd_aggregate.h) is stored in the snapshot as it is, as an 'i'
 *   record. A key is kept KCQRS_IDEMPOTENCY_TTL after its event's time
 *   (cmd_state.h, "Expiry"): afterwards cmd_state_idem does not find it (a
 *   retry is a new request), an event that old does not record it, and
 *   loading skips it.
 *
 * Ownership: the state owns the records; pointers returned are valid until
 *   the state changes. Threads: the writer thread (the state's owner).
 */
#ifndef CMD_IDEM_H
#define CMD_IDEM_H

#include <stddef.h>
#include <stdint.h>

#include "cmd_aggregate.h"

/* The record of `key`, or NULL (none, or expired). */
const cmd_idem *cmd_state_idem(const cmd_state *st, const char *key);
size_t cmd_state_idem_count(const cmd_state *st);
int cmd_state_each_idem(const cmd_state *st,
                        int (*fn)(void *arg, const char *key, const cmd_idem *i), void *arg);
/* Insert a copy (snapshot loading, tests), queued for expiry by its at_us.
 * 0 or KQ_ENOMEM. */
int cmd_state_put_idem(cmd_state *st, const char *key, const cmd_idem *i);

/* Record (or overwrite) the answer of key's command: the event of envelope
 * e (its command_hash when it has CMD_HASH_LEN bytes, its occurred_at_us) of
 * aggregate `id` at (partition, offset); appended to the delta when
 * tracking. An event older than the window records nothing. 0 or KQ_ENOMEM. */
int cmd_idem_record(cmd_state *st, const char *key, const ev_envelope *e, const char *id,
                    int32_t partition, int64_t offset);

/* Snapshot record 'i' (the cmd_idem as raw bytes): put / load. */
int cmd_idem_snap_put(cmd_delta *d, const char *key, const cmd_idem *i);
int cmd_idem_snap_load(cmd_state *st, const char *key, const void *rec, size_t len, char *errstr,
                       size_t errlen);

#endif
