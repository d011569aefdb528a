/*
 * cmd_wf_json.h — the old entry points of the workflow, run and attempt
 * bodies (transitional).
 *
 * The bodies are parsed by their aggregate types now (cmd_aggregate.h parse
 * hooks: cmd_workflow.c, cmd_run.c; trigger payloads cmd_run_payload) and
 * workflow actions by events/ev_action.h. These names stay only until
 * cmd_api.c calls those itself; then this file goes.
 */
#ifndef CMD_WF_JSON_H
#define CMD_WF_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "cmd_state.h"

/* Workflow create / update, worker attempt: the parse hook of the type. */
int cmd_wf_parse_create(const json_t *obj, cmd_command *c, json_t *details);
int cmd_wf_parse_update(const json_t *obj, cmd_command *c, json_t *details);
int cmd_wf_parse_attempt(const json_t *obj, cmd_command *c, json_t *details);

/* cmd_run_payload. */
int cmd_wf_payload(const char *body, size_t len, char **out, json_t *details);

/* cmd_workflow_secret_ok. */
int cmd_wf_secret_ok(const char *s, size_t len);

#endif
