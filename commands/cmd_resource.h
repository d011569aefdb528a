/*
 * cmd_resource.h — the resource aggregate on the command side.
 *
 * What it is for
 *   Everything the command side does with resources, reached through the
 *   resource entry of cmd_aggregate.h: the body of POST/PUT
 *   /api/v1/resources (name 1..255 characters, description 0..4096, status
 *   active|inactive|archived, id [A-Za-z0-9._-]{1,64} or a new UUID v4,
 *   unknown fields refused, an update needs a field), the decisions (create
 *   of an existing or deleted id 409; update/delete of an unknown or deleted
 *   one 404; If-Match with another version 412 carrying the current version;
 *   an update that changes nothing 200 with no event), the events
 *   (ResourceCreated; ResourceUpdated with only the changed fields;
 *   ResourceDeleted), how a committed event changes the state, and the
 *   snapshot record 'r'.
 *
 * State per resource (cmd_resource): version, deleted flag, current name,
 *   description and status (so an update emits only the changed fields) and
 *   the position of its last event (a no-op update still answers a token).
 * Snapshot record 'r' (format v4, v5): cmd_snap_res + name + description.
 *
 * Ownership: the state owns name and description (malloc'd copies).
 * Threads: parse on HTTP threads; the rest on the writer thread.
 */
#ifndef CMD_RESOURCE_H
#define CMD_RESOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "cmd_aggregate.h"

typedef struct cmd_resource {
    int64_t version;
    int deleted;
    char *name;
    char *description;
    int status; /* ev_resource_status */
    int32_t partition;
    int64_t offset; /* of its last event, -1 when unknown */
} cmd_resource;

/* A resource as stored in a snapshot record, followed by name and description. */
typedef struct cmd_snap_res {
    int64_t version, offset;
    int32_t partition, status, deleted;
    uint32_t name_len, desc_len;
} cmd_snap_res;

/* The resource entry of the table (cmd_aggregate.c). */
extern const cmd_aggregate cmd_resource_type;

/* Look-ups; owned by the state, valid until it changes. */
const cmd_resource *cmd_state_resource(const cmd_state *st, const char *id);
size_t cmd_state_resource_count(const cmd_state *st);

#endif
