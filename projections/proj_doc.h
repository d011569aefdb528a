/*
 * proj_doc.h — the JSON documents of workflows and runs, folded event by
 * event: what GET /api/v1/workflows/{id} and GET /api/v1/runs/{id} answer
 * (CONTRACT6 / query-api/README.md), built here once so that every target
 * (the LMDB read model stores them as they are; the PostgreSQL target uses
 * the actions and step shapes) agrees on them.
 *
 * A workflow document: {"id","name","enabled","actions":[...],"version",
 * "created_at","updated_at"} — never the webhook secret. A run document:
 * {"id","workflow_id","workflow_version","trigger","status","payload",
 * "error"? (after RunFailed),"version","created_at","updated_at","steps":[
 * {"index","name"?,"type"?,"status","attempts":[{"attempt","status_code"?,
 * "error"?,"at","duration_ms","next_delay_ms","delivery_id"}]}]}. Times are
 * RFC 3339 UTC with microseconds (the events' occurred_at).
 *
 * Folding is deterministic: the same events give byte-identical text
 * (proj_doc_dump), so a rebuilt read model fingerprints like the live one.
 *
 * Memory: documents are jansson trees owned by the caller. Reentrant.
 */
#ifndef PROJ_DOC_H
#define PROJ_DOC_H

#include <jansson.h>
#include <stdint.h>

#include "ev_codec.h"

/* Outcomes of a fold (besides KQ_ENOMEM). */
enum {
    PROJ_DOC_OK = 0,      /* *doc is the new document */
    PROJ_DOC_DELETED = 1, /* WorkflowDeleted: *doc was freed and set to NULL */
    PROJ_DOC_SKIP = 2,    /* nothing to change (update of a deleted workflow) */
    PROJ_DOC_REFUSED = 3, /* malformed for the read model: *why says why (static) */
};

/* Run statuses (the flag byte of kq_rm doc records, the PostgreSQL text). */
enum { PROJ_RUN_PENDING = 0, PROJ_RUN_RUNNING = 1, PROJ_RUN_SUCCEEDED = 2, PROJ_RUN_FAILED = 3 };

/* "pending", "running", "succeeded", "failed" (NULL out of range). Static. */
const char *proj_doc_run_status_name(int status);
/* Inverse; -1 when unknown. */
int proj_doc_run_status_parse(const char *s);

/* µs since the epoch -> "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" into out[80]. */
void proj_doc_time(int64_t us, char *out);

/*
 * The actions array of a step list (the query answer's shape, see
 * CONTRACT6). New reference, or NULL when a string is not valid UTF-8 or
 * memory ran out.
 */
json_t *proj_doc_actions(const ev_step_list *steps);

/*
 * Fold a workflow event (`e`, aggregate_type workflow) into *doc (NULL when
 * the workflow has no document: never created, or deleted). Returns a
 * PROJ_DOC_* outcome or KQ_ENOMEM (*doc unchanged on every failure).
 */
int proj_doc_workflow(json_t **doc, const ev_envelope *e, const char **why);

/* Fold a run event into *doc, as proj_doc_workflow. */
int proj_doc_run(json_t **doc, const ev_envelope *e, const char **why);

/* A document's "enabled" (workflow) or status (run, PROJ_RUN_*; -1 if malformed). */
int proj_doc_workflow_enabled(const json_t *doc);
int proj_doc_run_status(const json_t *doc);

/* Compact text of a document (malloc'd, NUL-terminated, *len bytes); NULL when out of memory. */
char *proj_doc_dump(const json_t *doc, size_t *len);

#endif
