/*
 * qry_rm.h — the query API's read-only view of the LMDB read model (lib/kq_rm.h).
 *
 * What it is for
 *   Point reads and ordered listings of resources, and the stored next
 *   offsets (what the read model has applied, for consistency tokens and
 *   /api/v1/status). The environment $KCQRS_LMDB_DIR/readmodel is made by
 *   kcqrs-projector, so it may not exist when the query API starts: every
 *   call first opens it lazily (kq_rm_env_open with create = 0) and answers
 *   KQ_ENOTFOUND ("not ready") until it exists and has its databases. It is
 *   opened without MDB_WRITEMAP and never written.
 *
 * Owns the MDB_env and the database handles (opened once, under a mutex).
 * Threads: any number of threads may call everything at once; each call is
 * one read transaction on the calling thread (LMDB MVCC: a call sees one
 * committed projector batch, never half of one).
 */
#ifndef QRY_RM_H
#define QRY_RM_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct qry_rm qry_rm;

/* `dir` is the environment directory (copied). Returns 0 or KQ_ENOMEM. */
int qry_rm_new(const char *dir, size_t map_size, qry_rm **out);
void qry_rm_free(qry_rm *rm);

/* Open the environment if not yet done: 0, KQ_ENOTFOUND (not made yet) or KQ_ELMDB. */
int qry_rm_open(qry_rm *rm, char *errstr, size_t errlen);

/* 1 once the environment is open. */
int qry_rm_is_open(qry_rm *rm);

/* Path of data.mdb (for inotify); owned by rm. */
const char *qry_rm_data_path(const qry_rm *rm);

/*
 * The resource `id` as compact JSON text (what GET /api/v1/resources/{id}
 * sends), rendered without building a JSON tree (jansson's tree and dump
 * were a fifth of the point read's CPU): *out is malloc'd (free), *len its
 * length, *version the resource's version. KQ_ENOTFOUND for an unknown or
 * deleted id, KQ_ECORRUPT for a record that does not decode or is not
 * UTF-8, KQ_ELMDB, or the qry_rm_open errors.
 */
int qry_rm_get_text(qry_rm *rm, const char *id, char **out, size_t *len, int64_t *version,
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
int qry_rm_list(qry_rm *rm, int by_status, uint8_t status, const char *after_id, int limit,
                json_t **items, int *more, char *errstr, size_t errlen);

/* Stored next offset of (topic, partition); 0 when none is stored. */
int qry_rm_next_offset(qry_rm *rm, const char *topic, int32_t partition, int64_t *next,
                       char *errstr, size_t errlen);

/* Every stored offset as a JSON object {"<topic>/<partition>": next, ...} (new reference). */
int qry_rm_offsets(qry_rm *rm, json_t **out, char *errstr, size_t errlen);

/* The resource JSON of a decoded record (new reference; NULL on allocation failure). */
json_t *qry_rm_resource_json(const char *id, size_t idlen, const void *rec, size_t reclen);

#endif
