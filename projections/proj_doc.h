/*
 * proj_doc.h — the JSON documents of workflows and runs, folded event by
 * event: what GET /api/v1/workflows/{id} and GET /api/v1/runs/{id} answer
 * (query-api/README.md), built here once so that every target
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
 * Runs follow THE run fold (events/ev_run.h): the document's status and its
 * steps' statuses are the fold's (a StepFailed fails the run at once, a run
 * of zero steps is succeeded at its RunStarted), and an event the fold
 * refuses (a run event before RunStarted, a step other than the current one,
 * an attempt out of order, anything after the run ended) is refused here, so
 * both targets dead-letter it. The fold's state is not stored: it is rebuilt
 * from the document (proj_run_state_load), as the PostgreSQL target rebuilds
 * it from its rows.
 *
 * Memory: documents are jansson trees owned by the caller. Reentrant.
 */
#ifndef PROJ_DOC_H
#define PROJ_DOC_H

#include <jansson.h>
#include <stdint.h>

#include "ev_codec.h"
#include "ev_run.h"

/* Outcomes of a fold (besides KQ_ENOMEM). */
enum {
    PROJ_DOC_OK = 0,      /* *doc is the new document */
    PROJ_DOC_DELETED = 1, /* WorkflowDeleted: *doc was freed and set to NULL */
    PROJ_DOC_SKIP = 2,    /* nothing to change (update of a deleted workflow) */
    PROJ_DOC_REFUSED = 3, /* malformed for the read model: *why says why (static) */
};

/*
 * What a read model stores of a run, enough to rebuild its fold state: the
 * LMDB document (its steps' statuses and attempts) and the PostgreSQL rows
 * (runs.status, runs.steps, run_attempts) both hold it.
 */
typedef struct proj_run_stored {
    int64_t version;         /* the run's version; 0: no run */
    int status;              /* ev_run_status of the stored run (-1 unknown: corrupt) */
    uint32_t step_count;     /* steps of the run */
    uint32_t done;           /* leading steps stored as succeeded */
    int current_failed;      /* the step after them is stored as failed */
    uint32_t attempts;       /* attempts stored for that step */
    int64_t total_attempts;  /* attempts stored for the whole run */
    int64_t last_attempt_us; /* that step's last attempt: its time (0 none) */
    int64_t next_delay_ms;   /* and its next_delay_ms (-1 none) */
} proj_run_stored;

/*
 * The run fold's state (ev_run.h) of a stored run: version, status, steps,
 * the current step (after the `done` ones) with its attempts and failure;
 * `ended` (RunSucceeded/RunFailed seen) is what the version holds beyond
 * the events that left a trace (RunStarted, one per attempt, one per
 * succeeded or failed step). Exact for runs stored by this fold. 0, or
 * KQ_ECORRUPT when the values cannot be a run's.
 */
int proj_run_state_load(const proj_run_stored *st, ev_run_state *s);

/*
 * Fold a workflow event (`e`, aggregate_type workflow) into *doc (NULL when
 * the workflow has no document: never created, or deleted). Returns a
 * PROJ_DOC_* outcome or KQ_ENOMEM (*doc unchanged on every failure).
 */
int proj_doc_workflow(json_t **doc, const ev_envelope *e, const char **why);

/* Fold a run event into *doc, as proj_doc_workflow, by ev_run_fold (an event the
 * fold refuses is PROJ_DOC_REFUSED with the fold's reason). */
int proj_doc_run(json_t **doc, const ev_envelope *e, const char **why);

/* A document's "enabled" (workflow) or status (run: ev_run_status, the flag byte of its
 * kq_rm record; -1 if malformed). */
int proj_doc_workflow_enabled(const json_t *doc);
int proj_doc_run_status(const json_t *doc);

/* Compact text of a document (malloc'd, NUL-terminated, *len bytes); NULL when out of memory. */
char *proj_doc_dump(const json_t *doc, size_t *len);

#endif
