/*
 * kq_rm.h — the LMDB read model's layout: one definition shared by its writer
 * (kcqrs-projector) and its readers (kcqrs-query, kcqrs-replay).
 *
 * The read model lives in the LMDB environment $KCQRS_LMDB_DIR/readmodel
 * (KQ_RM_SUBDIR), separate from the command side's snapshot in .../commands.
 * Named databases (mdb_dbi_open; the environment is opened with
 * KQ_RM_MAXDBS):
 *
 *   meta                 "format" -> KQ_RM_FORMAT (refuse anything else),
 *                        "cluster_id" -> the Kafka cluster id the offsets belong to
 *   offsets              "<topic>/<partition>" -> int64 next offset to read
 *                        (host byte order), the exactly-once checkpoint:
 *                        written in the same write transaction as the data
 *   versions             <1 byte ev_aggregate_type><aggregate id bytes> -> int64
 *                        last applied version, for every aggregate type
 *                        (gap detection; deleted aggregates keep theirs)
 *   resources            <id bytes> -> kq_rm_resource record (below); a deleted
 *                        resource is removed
 *   resources_by_status  <1 byte ev_resource_status><id bytes> -> "" (ordered
 *                        listing by status, then id)
 *   workflows            <id bytes> -> kq_rm_doc record (below, flag = enabled
 *                        0/1, text = the GET /api/v1/workflows/{id} answer,
 *                        never the secret); a deleted workflow is removed
 *   workflows_by_enabled <1 byte enabled 0/1><id bytes> -> "" (?enabled= listing)
 *   runs                 <id bytes> -> kq_rm_doc record (flag = run status
 *                        0 pending, 1 running, 2 succeeded, 3 failed; text =
 *                        the GET /api/v1/runs/{id} answer), rewritten by
 *                        every event of the run inside the batch transaction
 *   runs_by_workflow     <1 byte len(workflow_id)><workflow_id><run id> -> ""
 *                        (a workflow's runs by run id)
 *   runs_by_status       <1 byte status><run id> -> "" (runs of a status by id)
 *
 * Every batch of events is one write transaction, so readers in other
 * processes (LMDB MVCC) never see half a batch.
 *
 * Values are in host byte order: a read model is local to its machine and
 * rebuilt from the log, never copied.
 */
#ifndef KQ_RM_H
#define KQ_RM_H

#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#define KQ_RM_SUBDIR "readmodel"
/* kcqrs-replay (replay/README.md), all in $KCQRS_LMDB_DIR: */
#define KQ_RM_LOCK_FILE "readmodel.lock"                 /* flock: projector batch vs switch */
#define KQ_RM_REBUILD_LOCK_FILE "readmodel.rebuild.lock" /* flock: one rebuild/verify at a time */
#define KQ_RM_SHADOW_SUBDIR "readmodel.shadow"
#define KQ_RM_RETIRED_SUBDIR "readmodel.retired"
#define KQ_RM_SNAPSHOTS_SUBDIR "snapshots" /* snapshots/NAME: named point-in-time models */
#define KQ_RM_FORMAT "kcqrs.readmodel.v1"
#define KQ_RM_MAXDBS 16
#define KQ_RM_DB_META "meta"
#define KQ_RM_DB_OFFSETS "offsets"
#define KQ_RM_DB_VERSIONS "versions"
#define KQ_RM_DB_RESOURCES "resources"
#define KQ_RM_DB_RES_BY_STATUS "resources_by_status"
#define KQ_RM_DB_WORKFLOWS "workflows"
#define KQ_RM_DB_WF_BY_ENABLED "workflows_by_enabled"
#define KQ_RM_DB_RUNS "runs"
#define KQ_RM_DB_RUNS_BY_WF "runs_by_workflow"
#define KQ_RM_DB_RUNS_BY_STATUS "runs_by_status"

/* A resource as the query API serves it (views into an LMDB value or the caller's strings). */
typedef struct kq_rm_resource {
    int64_t version;
    int64_t created_at_us; /* occurred_at of ResourceCreated, µs since the epoch */
    int64_t updated_at_us; /* occurred_at of the last event */
    uint8_t status;        /* ev_resource_status */
    const char *name;
    uint32_t name_len;
    const char *description; /* never NULL after decode ("" when empty) */
    uint32_t description_len;
} kq_rm_resource;

/* Bytes kq_rm_resource_encode() writes. */
size_t kq_rm_resource_size(const kq_rm_resource *r);
/* Encode into `out`, which holds kq_rm_resource_size(r) bytes. */
void kq_rm_resource_encode(const kq_rm_resource *r, uint8_t *out);
/* Decode an LMDB value: views into `val`. 0, or KQ_ECORRUPT if malformed. */
int kq_rm_resource_decode(const void *val, size_t len, kq_rm_resource *out);

/*
 * A document record (workflows, runs): int64 version, uint8 flag, then the
 * document's compact JSON text (UTF-8, no NUL). Views into the LMDB value.
 */
typedef struct kq_rm_doc {
    int64_t version;
    uint8_t flag;
    const char *text;
    uint32_t text_len;
} kq_rm_doc;

#define KQ_RM_DOC_HDR 9
/* Encode into `out`, which holds KQ_RM_DOC_HDR + d->text_len bytes. */
void kq_rm_doc_encode(const kq_rm_doc *d, uint8_t *out);
/* Decode an LMDB value: views into `val`. 0, or KQ_ECORRUPT if malformed. */
int kq_rm_doc_decode(const void *val, size_t len, kq_rm_doc *out);

/* runs_by_workflow key: <len><workflow_id><run_id> into buf; its length or KQ_ERANGE. */
int kq_rm_run_wf_key(const char *wf, size_t wflen, const char *run, size_t runlen, uint8_t *buf,
                     size_t buflen);

/* "<topic>/<partition>" into buf; returns its length or KQ_ERANGE. */
int kq_rm_offset_key(const char *topic, int32_t partition, char *buf, size_t buflen);

/* <type byte><id> into buf (at least 1 + len bytes); returns the key length or KQ_ERANGE. */
int kq_rm_prefixed_key(uint8_t prefix, const char *id, size_t len, uint8_t *buf, size_t buflen);

/*
 * Open (and with `create`, create, with any missing parent directories) the
 * environment in directory `dir` (the
 * full path, normally $KCQRS_LMDB_DIR/readmodel) with map size `map_size`.
 * Readers pass create = 0 and get KQ_ENOTFOUND while no projector has made it.
 * Returns 0 with *env owned by the caller (mdb_env_close), or KQ_ELMDB.
 */
int kq_rm_env_open(const char *dir, size_t map_size, int create, MDB_env **env, char *errstr,
                   size_t errlen);

#endif
