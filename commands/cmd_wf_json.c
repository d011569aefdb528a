/*
 * cmd_wf_json.c — the old entry points of the bodies (transitional); see
 * cmd_wf_json.h.
 */
#include "cmd_wf_json.h"

int cmd_wf_parse_create(const json_t *obj, cmd_command *c, json_t *details)
{
    c->kind = CMD_WF_CREATE;
    return cmd_workflow_type.parse(obj, c, details);
}

int cmd_wf_parse_update(const json_t *obj, cmd_command *c, json_t *details)
{
    c->kind = CMD_WF_UPDATE;
    return cmd_workflow_type.parse(obj, c, details);
}

int cmd_wf_parse_attempt(const json_t *obj, cmd_command *c, json_t *details)
{
    c->kind = CMD_RUN_ATTEMPT;
    return cmd_run_type.parse(obj, c, details);
}

int cmd_wf_payload(const char *body, size_t len, char **out, json_t *details)
{
    return cmd_run_payload(body, len, out, details);
}

int cmd_wf_secret_ok(const char *s, size_t len)
{
    return cmd_workflow_secret_ok(s, len);
}
