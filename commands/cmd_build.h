/*
 * cmd_build.h — the payload of each event a decided command appends.
 *
 * What it is for
 *   The writer turns an APPEND decision into 1..CMD_MAX_EVENTS envelopes; the
 *   envelope's header (ids, version, actor, hashes) is the writer's, the
 *   payload of each event type is filled here from the command and its
 *   decision: ResourceUpdated and WorkflowUpdated carry only the fields the
 *   decision marks changed, RunStarted copies the workflow's version, steps
 *   and secret the decision carries, the run events the attempt's fields.
 *
 * Ownership: the payload's strings and step lists are views into the command,
 *   the decision and *steps_env (which holds decoded step lists); they live as
 *   long as those. Threads: any (pure).
 */
#ifndef CMD_BUILD_H
#define CMD_BUILD_H

#include <stddef.h>

#include "cmd_state.h"

/* Fill e->payload for event `type` of command c decided as d. 0, or the
 * codec's error when a steps envelope cannot be read (errstr). */
int cmd_build_payload(const cmd_command *c, const cmd_decision *d, ev_event_type type,
                      ev_envelope *e, ev_envelope *steps_env, char *errstr, size_t errlen);

#endif
