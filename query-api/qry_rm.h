/*
 * qry_rm.h — the query API's read-only view of an LMDB read model (lib/kq_rm.h):
 * the live one ($KCQRS_LMDB_DIR/readmodel) or a named snapshot
 * ($KCQRS_LMDB_DIR/snapshots/NAME, see qry_snap.h).
 *
 * What it is for
 *   Point reads and ordered listings of resources, and the stored next
 *   offsets (what the read model has applied, for consistency tokens and
 *   /api/v1/status). The environment is made by kcqrs-projector or
 *   kcqrs-replay, so it may not exist when the query API starts; it is
 *   opened lazily (kq_rm_env_open with create = 0), never with MDB_WRITEMAP,
 *   and never written.
 *
 * Following a replaced read model (kcqrs-replay rebuild)
 *   kcqrs-replay builds a new model in readmodel.shadow and swaps the two
 *   directories (renameat2 RENAME_EXCHANGE, or two renames); the old model
 *   stays as readmodel.retired until the next switch. An open LMDB
 *   environment keeps reading the files it opened, wherever they move, so
 *   nothing notices by itself. Here every open environment is a *view*
 *   (refcounted) that remembers the device and inode of its data.mdb. At
 *   most every QRY_RM_CHECK_MS, the next qry_rm_acquire() stat()s
 *   <dir>/data.mdb; another inode means another model: it opens that one,
 *   makes it the current view and retires the old view. Requests in flight
 *   keep the view they acquired and finish on it undisturbed; the retired
 *   environment is closed when its last reader releases it. No request fails
 *   during a switch: between the two renames of the fallback (no data.mdb at
 *   the path for a moment), and whenever the new model cannot be opened yet,
 *   the current view keeps serving. After `rm -rf readmodel` the last view
 *   keeps serving the deleted files until a new model appears.
 *
 *   A *strict* qry_rm (named snapshots) instead forgets its view as soon as
 *   the path is gone (kcqrs-replay drop-snapshot): the snapshot is then
 *   "not found".
 *
 * Acquiring is lock-free: load the current view, increment its refcount,
 * check that it is still the current one (otherwise release and retry).
 * Views are only freed by qry_rm_free(), so a stale pointer is never
 * dangling; the environment of a retired view is closed (under the mutex,
 * once) when its count reaches zero. The stat check runs on the request
 * thread that finds it due (one at a time, try-lock), opening the new
 * environment there; the others keep using the current view meanwhile.
 *
 * Owns the views, their MDB_envs and database handles. Threads: every
 * function may be called from any number of threads at once; each read is
 * one LMDB read transaction on the calling thread (MVCC: it sees one
 * committed batch, never half of one).
 */
#ifndef QRY_RM_H
#define QRY_RM_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define QRY_RM_CHECK_MS 100 /* at most this long before a replaced model is noticed */

typedef struct qry_rm qry_rm;
typedef struct qry_rm_view qry_rm_view;

/*
 * `dir` is the environment directory (copied). strict = 0: the live model
 * (keep serving the last view while the path is missing); 1: a snapshot
 * (missing path = not found). Returns 0 or KQ_ENOMEM.
 */
int qry_rm_new(const char *dir, size_t map_size, int strict, qry_rm **out);
/* Closes every environment: no view may be held any more. NULL is a no-op. */
void qry_rm_free(qry_rm *rm);

/*
 * The current view, following a replaced model (see above); *v is released
 * with qry_rm_release(). KQ_ENOTFOUND when there is no read model (not made
 * yet, not initialised yet, or a strict model's path is gone), KQ_ELMDB.
 */
int qry_rm_acquire(qry_rm *rm, qry_rm_view **v, char *errstr, size_t errlen);
void qry_rm_release(qry_rm_view *v);

/* The qry_rm a view belongs to. */
qry_rm *qry_rm_view_owner(const qry_rm_view *v);

/* Acquire and release: 0 when a read model can be served, else as qry_rm_acquire. */
int qry_rm_open(qry_rm *rm, char *errstr, size_t errlen);

/* 1 once some view is current. */
int qry_rm_is_open(qry_rm *rm);

/* Path of data.mdb (for inotify); owned by rm. */
const char *qry_rm_data_path(const qry_rm *rm);

/* How many times a replaced model was taken up (for /metrics and tests). */
uint64_t qry_rm_switches(qry_rm *rm);

/*
 * The resource `id` as compact JSON text (what GET /api/v1/resources/{id}
 * sends), rendered without building a JSON tree (jansson's tree and dump
 * were a fifth of the point read's CPU): *out is malloc'd (free), *len its
 * length, *version the resource's version. KQ_ENOTFOUND for an unknown or
 * deleted id, KQ_ECORRUPT for a record that does not decode or is not
 * UTF-8, KQ_ELMDB.
 */
int qry_rm_get_text(qry_rm_view *v, const char *id, char **out, size_t *len, int64_t *version,
                    char *errstr, size_t errlen);

/* The resource JSON text of a decoded record (malloc'd; NULL on a record that
 * does not decode, invalid UTF-8 or allocation failure). */
char *qry_rm_resource_text(const char *id, size_t idlen, const void *rec, size_t reclen,
                           size_t *len);

/*
 * Up to `limit` resources after `after_id` (NULL: from the start), by id, or
 * with `by_status` only those of `status`, by id. *items is a new JSON array;
 * *more is 1 when further items exist (the caller then makes a cursor from
 * the last item's id).
 */
int qry_rm_list(qry_rm_view *v, int by_status, uint8_t status, const char *after_id, int limit,
                json_t **items, int *more, char *errstr, size_t errlen);

/* Stored next offset of (topic, partition); 0 when none is stored. */
int qry_rm_next_offset(qry_rm_view *v, const char *topic, int32_t partition, int64_t *next,
                       char *errstr, size_t errlen);

/* Every stored offset as a JSON object {"<topic>/<partition>": next, ...} (new reference). */
int qry_rm_offsets(qry_rm_view *v, json_t **out, char *errstr, size_t errlen);

/* The resource JSON of a decoded record (new reference; NULL on allocation failure). */
json_t *qry_rm_resource_json(const char *id, size_t idlen, const void *rec, size_t reclen);

/* ---- workflows and runs (documents, lib/kq_rm.h) ---- */

typedef enum { QRY_DOC_WORKFLOW = 0, QRY_DOC_RUN = 1 } qry_doc_kind;

/*
 * The stored document of workflow or run `id` as compact JSON text (the GET
 * answer as the projector wrote it): *out malloc'd (free), *len, *version.
 * KQ_ENOTFOUND for an unknown or deleted id (or a model made before
 * workflows existed), KQ_ECORRUPT, KQ_ELMDB, KQ_ENOMEM.
 */
int qry_rm_doc_get(qry_rm_view *v, qry_doc_kind kind, const char *id, char **out, size_t *len,
                   int64_t *version, char *errstr, size_t errlen);

/*
 * Up to `limit` documents after `after_id` (NULL: from the start) by id.
 * flag >= 0 filters: workflows by enabled (0/1, index workflows_by_enabled),
 * runs by status (ev_run_status, index runs_by_status). For runs, workflow_id
 * != NULL walks runs_by_workflow instead (and filters by status, if given,
 * from each record's flag). *items is a new JSON array of the documents;
 * *more is 1 when further items exist.
 */
int qry_rm_doc_list(qry_rm_view *v, qry_doc_kind kind, int flag, const char *workflow_id,
                    const char *after_id, int limit, json_t **items, int *more, char *errstr,
                    size_t errlen);

#endif
