/*
 * cmd_expiry.h — a FIFO of (due time, value pointer): the order in which the
 * command-side state forgets Idempotency-Keys and finished runs.
 *
 * What it is for
 *   KCQRS_IDEMPOTENCY_TTL bounds the state: a key's answer, and a finished
 *   run, are kept for the window after their event's time (cmd_state.h,
 *   "Expiry"). Each such entry of the state's maps is pushed here once, when
 *   it is made, with the time it is due; cmd_state_expire pops the entries
 *   that are due, a few at a time (no pass over the whole state). Pushes
 *   come in event-time order on the live path, so the head is the oldest
 *   entry; the entries a catch-up pushes are within one window of each other.
 *
 * What it owns: a ring buffer of entries (16 bytes each), grown by doubling
 *   and shrunk by half when a quarter full. The values pointed to belong to
 *   the state's kq_maps (stable addresses: kq_map.h); a value leaves its map
 *   only through this queue, so a pointer here is never dangling.
 *
 * Threads: the writer thread (the state's owner).
 */
#ifndef CMD_EXPIRY_H
#define CMD_EXPIRY_H

#include <stddef.h>
#include <stdint.h>

typedef struct cmd_expiry_ent {
    int64_t due_us; /* wall-clock µs at which the entry may go */
    void *val;      /* the value in the state's map */
} cmd_expiry_ent;

typedef struct cmd_expiry {
    cmd_expiry_ent *e;
    size_t cap, head, n;
} cmd_expiry;

/* Append an entry. 0 or KQ_ENOMEM (the queue is unchanged). */
int cmd_expiry_push(cmd_expiry *q, int64_t due_us, void *val);

/* The oldest entry, or NULL when empty. Valid until the next push/pop. */
const cmd_expiry_ent *cmd_expiry_peek(const cmd_expiry *q);

/* Drop the oldest entry (none: no-op). */
void cmd_expiry_pop(cmd_expiry *q);

size_t cmd_expiry_count(const cmd_expiry *q);

/* Bytes the ring holds (cap x 16). */
size_t cmd_expiry_bytes(const cmd_expiry *q);

/* Forget every entry and free the ring. */
void cmd_expiry_free(cmd_expiry *q);

#endif
