/*
 * wk_offsets.h — kcqrs-worker's partitions of <prefix>.run.events: which are
 * assigned, which have been read to the end since their assignment (only
 * then do their runs start), the consumed positions, the attempts in flight
 * per partition, and the offsets to commit.
 *
 * The commit point of an assigned partition is the offset of the RunStarted
 * of its oldest open run (wk_runs_oldest_open), or the consumed position when
 * none is open: a restart, or the next owner after a rebalance, re-reads
 * exactly the open runs. A point equal to the last one committed is not sent
 * again.
 *
 * Rebalances, as the service drives them:
 *   assign   the partition is assigned, not ready, positions unknown;
 *   revoke   wk_offsets_revoking: not ready (no new attempts there); the
 *            service lets the attempts in flight there finish and be recorded
 *            (wk_offsets_in_flight says how many), commits their points, then
 *            wk_offsets_revoked: no longer assigned (their runs are forgotten).
 *
 * Pure data: no Kafka calls, no I/O (the service turns the points into
 * rd_kafka_commit). Owned and called by the service's one thread.
 */
#ifndef WK_OFFSETS_H
#define WK_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

#include "wk_run.h"

typedef struct wk_part {
    int assigned;
    int ready;         /* read to the end once since the assignment */
    int64_t next;      /* consumed position (-1: nothing yet) */
    int64_t committed; /* last commit point sent (-1: none) */
    int in_flight;     /* runs with an attempt ACTIVE or RECORDING */
} wk_part;

typedef struct wk_offsets {
    wk_part *parts; /* owned */
    int n;
} wk_offsets;

typedef struct wk_commit_point {
    int32_t partition;
    int64_t offset;
} wk_commit_point;

/* nparts partitions, none assigned. 0 or KQ_ENOMEM (KQ_EINVAL for nparts < 1). */
int wk_offsets_init(wk_offsets *o, int nparts);
/* Free what o owns. */
void wk_offsets_free(wk_offsets *o);

/* The partition's state, NULL when p is out of range. Owned by o. */
wk_part *wk_offsets_part(wk_offsets *o, int32_t p);

/* Assigned by a rebalance: not ready, positions unknown. */
void wk_offsets_assign(wk_offsets *o, int32_t p);
/* Being revoked: no new attempts on it. */
void wk_offsets_revoking(wk_offsets *o, int32_t p);
/* Revoked: no longer assigned. */
void wk_offsets_revoked(wk_offsets *o, int32_t p);

/*
 * A record at `offset` was consumed from p. Returns 1 if p is assigned (the
 * record is the worker's to fold), 0 if not (dropped).
 */
int wk_offsets_consumed(wk_offsets *o, int32_t p, int64_t offset);

/*
 * p was read to its end (the end is `offset`). Returns 1 when this makes p
 * ready for the first time since its assignment (its runs are to be
 * scheduled now), else 0.
 */
int wk_offsets_eof(wk_offsets *o, int32_t p, int64_t offset);

/* Attempts in flight on p move by delta (+1 started, -1 ended). */
void wk_offsets_in_flight_add(wk_offsets *o, int32_t p, int delta);

/* Attempts in flight on the partitions listed (n of them). */
int wk_offsets_in_flight(const wk_offsets *o, const int32_t *parts, size_t n);

/*
 * The commit points to send: one per assigned partition (of `only`, n_only
 * entries, or all when only is NULL) whose point is known and differs from
 * the last one sent; each is marked as sent. out needs room for o->n
 * points. Returns how many were written, or KQ_ENOMEM.
 */
int wk_offsets_commit_points(wk_offsets *o, wk_runs *runs, const int32_t *only, size_t n_only,
                             wk_commit_point *out);

#endif
