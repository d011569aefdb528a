/*
 * qry_snap.h — named LMDB snapshots for `?snapshot=NAME` (kcqrs-replay
 * rebuild --until ... --name NAME writes $KCQRS_LMDB_DIR/snapshots/NAME).
 *
 * A small cache of strict qry_rm handles (qry_rm.h), one per snapshot name,
 * opened read-only on first use (QRY_SNAP_CACHE entries, least recently
 * used one closed first, never one in use). A strict qry_rm notices within
 * QRY_RM_CHECK_MS that its directory was dropped (drop-snapshot) or replaced
 * (a new --until build under the same name) exactly as the live model
 * follows a switch. Names are validated by the caller
 * (qry_snapshot_name_valid in qry_text.h).
 *
 * Threads: any thread; one mutex guards the cache (snapshot reads are for
 * inspection, not the hot path). Owns the handles.
 */
#ifndef QRY_SNAP_H
#define QRY_SNAP_H

#include <jansson.h>
#include <stddef.h>

#include "qry_rm.h"

#define QRY_SNAP_CACHE 8
#define QRY_SNAP_LIST_MAX 256 /* snapshots listed at most (by name) */

typedef struct qry_snap qry_snap;

/* `lmdb_dir` is $KCQRS_LMDB_DIR (copied). 0 or KQ_ENOMEM. */
int qry_snap_new(const char *lmdb_dir, size_t map_size, qry_snap **out);
/* No view may be held any more. NULL is a no-op. */
void qry_snap_free(qry_snap *s);

/*
 * A view of snapshot `name` (release with qry_snap_release). KQ_ENOTFOUND
 * when there is no such snapshot, KQ_EBUSY when every cache entry is in use,
 * KQ_ENOMEM, KQ_ELMDB.
 */
int qry_snap_acquire(qry_snap *s, const char *name, qry_rm_view **v, char *errstr, size_t errlen);
void qry_snap_release(qry_snap *s, qry_rm_view *v);

/*
 * The snapshots that exist, for GET /api/v1/snapshots: a JSON array (new
 * reference) of at most QRY_SNAP_LIST_MAX {"name", "built_at" (when its data
 * file was last written, RFC 3339), "positions" ({"<topic>/<partition>":
 * next offset} where its build stopped) or "error" (why it cannot be
 * read)}, by name. Directories that are not snapshot names (a build in
 * progress, NAME.building) are left out; no snapshots directory is [].
 * Opens each through the cache, as a read would. 0 or KQ_ENOMEM.
 */
int qry_snap_list(qry_snap *s, json_t **out, char *errstr, size_t errlen);

#endif
