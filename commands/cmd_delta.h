/*
 * cmd_delta.h — snapshot records in a buffer: the delta of an incremental
 * snapshot, or a whole state about to be written.
 *
 * What it is for
 *   The command snapshot (cmd_snapshot.h) is a set of records "<kind>/<key>"
 *   -> value. Every record is made in exactly one place — the put hook of its
 *   aggregate type (cmd_aggregate.h: 'r' resource, 'w' workflow, 'n' run) or
 *   cmd_idem_snap_put ('i' Idempotency-Key) — and appended to a cmd_delta.
 *   While the state changes it appends the record of each changed entry to
 *   its delta (cmd_state_track); a full snapshot appends every entry
 *   (cmd_state_delta_full). The snapshot thread writes a delta's records in
 *   order, so a later record of one key replaces an earlier one.
 *
 * Buffer encoding: per record u8 kind, u16 key length, u32 value length, key
 *   bytes, value bytes (host byte order, unaligned). The value layouts are
 *   the on-disk ones (format kcqrs.commands.v5), written by the owners named
 *   above.
 *
 * A record with an empty value is a deletion (cmd_delta_del: an expired
 *   Idempotency-Key or finished run leaves the snapshot that way).
 *
 * `full` says the delta is the whole state (a fresh or discarded state, or a
 *   rebuild after a failed write): the snapshot is emptied before it is
 *   written. `lost` says a record could not be kept (out of memory): the next
 *   hand-over must be a full one.
 *
 * Ownership: a delta owns its buffer (cmd_delta_free). Threads: one at a time.
 */
#ifndef CMD_DELTA_H
#define CMD_DELTA_H

#include <stddef.h>
#include <stdint.h>

struct cmd_delta {
    unsigned char *buf;
    size_t len, cap;
    size_t records;
    int full;
    int lost;
};
typedef struct cmd_delta cmd_delta;

#define CMD_DELTA_HDR 7 /* kind + key length + value length */

/* One piece of a record's value (a record is the concatenation of pieces). */
typedef struct cmd_piece {
    const void *p;
    size_t n;
} cmd_piece;

/* Append record kind/key with the value made of pieces[0..n). 0, or KQ_ENOMEM
 * (or a key longer than CMD_KEY_MAX) and d->lost set. */
int cmd_delta_put(cmd_delta *d, char kind, const char *key, const cmd_piece *pieces, int n);

/* Append the deletion of record kind/key (a record with an empty value: no
 * record kind has one): the snapshot thread deletes it. 0 or KQ_ENOMEM (d->lost set). */
int cmd_delta_del(cmd_delta *d, char kind, const char *key);

/* Forget the records (the buffer is kept); full and lost are cleared. */
void cmd_delta_reset(cmd_delta *d);

/* Append src's records to dst (src is unchanged); dst->full stays. 0 or KQ_ENOMEM. */
int cmd_delta_append(cmd_delta *dst, const cmd_delta *src);

/* Free the buffer; d is empty afterwards. */
void cmd_delta_free(cmd_delta *d);

/* Iterate a delta's records: returns 1 and fills the outputs (views into d)
 * for the record at *pos, advancing it; 0 at the end; KQ_ECORRUPT for a
 * malformed buffer or an unknown kind. */
int cmd_delta_next(const cmd_delta *d, size_t *pos, char *kind, const char **key, size_t *keylen,
                   const void **val, size_t *vallen);

#endif
