/*
 * rp_target.h — what kcqrs-replay needs from a read-model target (LMDB:
 * rp_lmdb.c, PostgreSQL: rp_pg.c). The driver (kcqrs_replay.c) only talks
 * to targets through this table, so the two are built and tested apart.
 *
 * A rebuild of the live model:
 *   sh = shadow_create(cfg, NULL)        empty shadow; takes the target's
 *                                        rebuild lock (KQ_EBUSY when another
 *                                        rebuild or verify holds it)
 *   runner(bulk ops, open_arg = sh)      the log up to the end offsets seen at
 *                                        start, in big batches (fail fast)
 *   finish(sh)                           deferred work: indexes, folded rows,
 *                                        sync; the shadow is now a normal read
 *                                        model with its offsets stored
 *   lk = lock_live(cfg)                  the projector waits at its next batch
 *   runner(tail ops, open_arg = sh)      the tail up to the current end offsets
 *   switch_live(sh)                      atomically: shadow -> live, live ->
 *                                        retired (the previous retired dropped)
 *   unlock_live(lk); shadow_close(sh)    the projector notices the switch,
 *                                        reopens and continues from the
 *                                        (former) shadow's offsets
 * A point-in-time build: shadow_create(cfg, NAME), bulk runner up to the
 * until offsets, finish, shadow_close: the named snapshot stays.
 * A verify: fingerprint_live (a consistent snapshot of the live model and the
 * offsets it covers), shadow_create(cfg, NULL), bulk runner up to exactly
 * those offsets, finish, fingerprint_shadow, compare, shadow_drop.
 *
 * Every function returns 0 or a KQ_E* code with the reason in errstr.
 */
#ifndef RP_TARGET_H
#define RP_TARGET_H

#include <stddef.h>

#include "kq_config.h"
#include "proj_runner.h"
#include "rp_fp.h"

typedef struct rp_target_ops {
    const char *name; /* "lmdb" or "pg" */

    /*
     * An empty shadow. name == NULL: the rebuild/verify shadow
     * ($KCQRS_LMDB_DIR/readmodel.shadow, schema <schema>_shadow); a stale one
     * left by a crashed run is dropped first. name != NULL: the named snapshot
     * (snapshots/NAME, schema <schema>_snap_NAME), replaced if it exists.
     */
    int (*shadow_create)(const kq_config *cfg, const char *name, void **sh, char *errstr,
                         size_t errlen);

    /* Runner targets writing into the shadow; their open_arg must be set to sh. */
    proj_target_ops bulk; /* before finish(): may defer indexes and derived rows */
    proj_target_ops tail; /* after finish(): the projector's normal apply */

    int (*finish)(void *sh, char *errstr, size_t errlen);

    /* Hold off the live projector (blocks while it is in a batch). */
    int (*lock_live)(const kq_config *cfg, void **lk, char *errstr, size_t errlen);
    void (*unlock_live)(void *lk);

    /* Under lock_live: the (finished) shadow becomes the live model. */
    int (*switch_live)(void *sh, char *errstr, size_t errlen);

    /* Fingerprints; fingerprint_live also reports the offsets it covers. */
    int (*fingerprint_live)(const kq_config *cfg, rp_fp *fp, proj_offset_fn cb, void *arg,
                            char *errstr, size_t errlen);
    int (*fingerprint_shadow)(void *sh, rp_fp *fp, char *errstr, size_t errlen);

    void (*shadow_drop)(void *sh);  /* discard the shadow, release its locks, free */
    void (*shadow_close)(void *sh); /* keep it (switched or a named snapshot), free */

    /* Remove the named snapshot; KQ_ENOTFOUND when there is none. */
    int (*drop_snapshot)(const kq_config *cfg, const char *name, char *errstr, size_t errlen);
} rp_target_ops;

extern const rp_target_ops rp_lmdb_ops; /* rp_lmdb.c */
extern const rp_target_ops rp_pg_ops;   /* rp_pg.c */

#endif
