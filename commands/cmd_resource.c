/*
 * cmd_resource.c — the resource aggregate: body, decisions, events, apply,
 * snapshot record; see cmd_resource.h.
 */
#include "cmd_resource.h"
#include "cmd_pii.h"
#include "cmd_state.h"
#include "kq_err.h"
#include "kq_json_in.h"
#include "kq_rand.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T CMD_TOPIC_RESOURCE

static const char *const statuses[] = {"active", "inactive", "archived", NULL};

static const kq_jin_field create_fields[] = {
    {"id", KQ_JIN_ID, 0, 0, NULL, 0, 0},
    {"name", KQ_JIN_STRING, 1, EV_NAME_MAX_CHARS, NULL, 0, 0},
    {"description", KQ_JIN_TEXT, 0, EV_DESCRIPTION_MAX_CHARS, NULL, 0, 0},
    {"status", KQ_JIN_STRING, 0, 0, statuses, 0, 0},
};

static const kq_jin_field update_fields[] = {
    {"name", KQ_JIN_STRING, 0, EV_NAME_MAX_CHARS, NULL, 0, 0},
    {"description", KQ_JIN_TEXT, 0, EV_DESCRIPTION_MAX_CHARS, NULL, 0, 0},
    {"status", KQ_JIN_STRING, 0, 0, statuses, 0, 0},
};

/* ------------------------------------------------------------------ value */

static void res_clear(void *v)
{
    cmd_resource *r = v;
    free(r->name);
    free(r->description);
    r->name = r->description = NULL;
}

static int res_copy(void *dst, const void *src)
{
    cmd_resource *d = dst;
    const cmd_resource *s = src;

    res_clear(d);
    *d = *s;
    d->name = d->description = NULL;
    if (cmd_str_set(&d->name, s->name) != 0 || cmd_str_set(&d->description, s->description) != 0)
        return KQ_ENOMEM;
    return 0;
}

static void res_position(const void *val, int64_t *version, int32_t *partition, int64_t *offset)
{
    const cmd_resource *r = val;
    *version = r->version;
    *partition = r->partition;
    *offset = r->offset;
}

const cmd_resource *cmd_state_resource(const cmd_state *st, const char *id)
{
    return cmd_state_get(st, T, id);
}

size_t cmd_state_resource_count(const cmd_state *st)
{
    return cmd_state_count(st, T);
}

/* ------------------------------------------------------------------ body */

static int status_of(const char *s)
{
    for (int i = 0; statuses[i]; i++)
        if (strcmp(s, statuses[i]) == 0)
            return i;
    return 0;
}

/* POST (CMD_CREATE) or PUT (CMD_UPDATE) /api/v1/resources[/{id}]. */
static int res_parse(const json_t *obj, cmd_command *c, json_t *details)
{
    int create = c->kind == CMD_CREATE;
    const json_t *v;

    if (create)
        kq_jin_validate(obj, create_fields, sizeof create_fields / sizeof create_fields[0], NULL,
                        details);
    else
        kq_jin_validate(obj, update_fields, sizeof update_fields / sizeof update_fields[0], NULL,
                        details);
    v = json_object_get(obj, "name");
    if (json_is_string(v) && json_string_length(v) == 0)
        kq_jin_detail_add(details, "name", "must be 1..%d characters", EV_NAME_MAX_CHARS);
    if (!create && json_object_size(obj) == 0)
        kq_jin_detail_add(details, "body", "give at least one of name, description, status");
    if (json_array_size(details) > 0)
        return KQ_EINVAL;
    if (create) {
        if ((v = json_object_get(obj, "id")) != NULL) {
            snprintf(c->id, sizeof c->id, "%s", json_string_value(v));
        } else {
            uint8_t u[16];
            char s[KQ_UUID_STR];
            if (kq_uuid_v4(u) != 0)
                return KQ_EIO;
            kq_uuid_format(u, s);
            snprintf(c->id, sizeof c->id, "%s", s);
        }
    }
    if ((v = json_object_get(obj, "name")) != NULL) {
        c->fields |= CMD_F_NAME;
        if ((c->name = strdup(json_string_value(v))) == NULL)
            return KQ_ENOMEM;
    }
    if ((v = json_object_get(obj, "description")) != NULL) {
        c->fields |= CMD_F_DESCRIPTION;
        if ((c->description = strdup(json_string_value(v))) == NULL)
            return KQ_ENOMEM;
    }
    if ((v = json_object_get(obj, "status")) != NULL) {
        c->fields |= CMD_F_STATUS;
        c->status = status_of(json_string_value(v));
    }
    if (create && c->description == NULL && (c->description = strdup("")) == NULL)
        return KQ_ENOMEM;
    return 0;
}

/* ------------------------------------------------------------------ decide */

/* What the state keeps of a name or description: a digest with keys (cmd_pii.h). */
static int store(const cmd_state *st, const char *id, const char *s, char **dst)
{
    return cmd_pii_store(st->keys, id, s, s ? strlen(s) : 0, dst);
}

static int store_ev(const cmd_state *st, const char *id, ev_str s, char **dst)
{
    return cmd_pii_store(st->keys, id, s.ptr, s.len, dst);
}

static int res_decide(const cmd_state *st, cmd_batch *b, const cmd_command *c, cmd_decision *d)
{
    const cmd_resource *cur = cmd_batch_view(st, b, T, c->id, &d->pending);
    cmd_resource *p;
    int fresh;

    switch (c->kind) {
    case CMD_CREATE:
        if (cur != NULL) {
            cmd_decision_refuse(d, 409, "conflict", cur->version, "resource %s exists already",
                                c->id);
            return 0;
        }
        d->event = EV_RESOURCE_CREATED;
        d->version = 1;
        d->changed = CMD_F_NAME | CMD_F_DESCRIPTION | CMD_F_STATUS;
        break;
    case CMD_UPDATE:
    case CMD_DELETE:
        if (cur == NULL || cur->deleted) {
            cmd_decision_refuse(d, 404, "not_found", 0, "resource %s does not exist", c->id);
            return 0;
        }
        if (c->has_if_match && !c->if_match_any && c->if_match != cur->version) {
            cmd_decision_refuse(d, 412, "precondition_failed", cur->version,
                                "resource %s has another version than If-Match", c->id);
            return 0;
        }
        d->version = cur->version + 1;
        if (c->kind == CMD_DELETE) {
            d->event = EV_RESOURCE_DELETED;
            break;
        }
        d->event = EV_RESOURCE_UPDATED;
        /* the state keeps digests of personal data (cmd_pii.h) */
        if ((c->fields & CMD_F_NAME) && !cmd_pii_same(st->keys, c->id, cur->name, c->name))
            d->changed |= CMD_F_NAME;
        if ((c->fields & CMD_F_DESCRIPTION) &&
            !cmd_pii_same(st->keys, c->id, cur->description, c->description))
            d->changed |= CMD_F_DESCRIPTION;
        if ((c->fields & CMD_F_STATUS) && c->status != cur->status)
            d->changed |= CMD_F_STATUS;
        if (d->changed == 0) {
            d->kind = CMD_D_NOOP;
            d->event = EV_EVENT_NONE;
            d->version = cur->version;
            return 0;
        }
        break;
    default:
        cmd_decision_refuse(d, 400, "unsupported", 0, "command kind %d is not handled",
                            (int)c->kind);
        return 0;
    }
    /* Record the pending event in the overlay. */
    if ((p = cmd_batch_take(st, b, T, c->id, &fresh)) == NULL)
        return KQ_ENOMEM;
    if (fresh)
        p->status = EV_STATUS_ACTIVE;
    if (d->event == EV_RESOURCE_CREATED) {
        if (store(st, c->id, c->name, &p->name) != 0 ||
            store(st, c->id, c->description, &p->description) != 0)
            return KQ_ENOMEM;
        p->status = (c->fields & CMD_F_STATUS) ? c->status : EV_STATUS_ACTIVE;
    } else if (d->event == EV_RESOURCE_UPDATED) {
        if (((d->changed & CMD_F_NAME) && store(st, c->id, c->name, &p->name) != 0) ||
            ((d->changed & CMD_F_DESCRIPTION) &&
             store(st, c->id, c->description, &p->description) != 0))
            return KQ_ENOMEM;
        if (d->changed & CMD_F_STATUS)
            p->status = c->status;
    } else {
        p->deleted = 1;
    }
    p->version = d->version;
    p->offset = -1;
    d->nevents = 1;
    d->events[0] = d->event;
    d->kind = CMD_D_APPEND;
    return 0;
}

/* ------------------------------------------------------------------ build */

static int res_build(const cmd_command *c, const cmd_decision *d, int i, ev_envelope *e,
                     ev_envelope *scratch, char *errstr, size_t errlen)
{
    switch (e->payload_type) {
    case EV_RESOURCE_CREATED:
        e->payload.resource_created.name = ev_str_c(c->name);
        e->payload.resource_created.description = ev_str_c(c->description);
        e->payload.resource_created.status =
            (c->fields & CMD_F_STATUS) ? (ev_resource_status)c->status : EV_STATUS_ACTIVE;
        break;
    case EV_RESOURCE_UPDATED:
        if (d->changed & CMD_F_NAME)
            e->payload.resource_updated.name = ev_str_c(c->name);
        if (d->changed & CMD_F_DESCRIPTION)
            e->payload.resource_updated.description = ev_str_c(c->description);
        if (d->changed & CMD_F_STATUS) {
            e->payload.resource_updated.has_status = true;
            e->payload.resource_updated.status = (ev_resource_status)c->status;
        }
        break;
    default: /* ResourceDeleted: no fields */
        break;
    }
    return 0;
}

/* ------------------------------------------------------------------ apply */

static int res_apply(cmd_state *st, const ev_envelope *e, const char *id, int32_t partition,
                     int64_t offset, char *errstr, size_t errlen)
{
    cmd_resource *r = cmd_state_get(st, T, id);

    if (r != NULL && e->version <= r->version)
        return 1;
    switch (e->payload_type) {
    case EV_RESOURCE_CREATED: {
        const ev_resource_created *p = &e->payload.resource_created;
        if (e->version != 1)
            return kq_seterr(errstr, errlen, KQ_ECORRUPT,
                             "resource %s: ResourceCreated with version %" PRId64, id, e->version);
        if ((r = cmd_state_put(st, T, id, NULL)) == NULL)
            return KQ_ENOMEM;
        if (store_ev(st, id, p->name, &r->name) != 0 ||
            store_ev(st, id, p->description, &r->description) != 0)
            return KQ_ENOMEM;
        r->status = (int)p->status;
        r->deleted = 0;
        break;
    }
    case EV_RESOURCE_UPDATED:
    case EV_RESOURCE_DELETED:
        if (r == NULL)
            return kq_seterr(errstr, errlen, KQ_ECORRUPT, "resource %s: %s of an unknown resource",
                             id, ev_event_type_name(e->payload_type));
        if (e->version != r->version + 1)
            return kq_seterr(errstr, errlen, KQ_ECORRUPT,
                             "resource %s: version %" PRId64 " follows %" PRId64 " (gap)", id,
                             e->version, r->version);
        if (e->payload_type == EV_RESOURCE_DELETED) {
            r->deleted = 1;
            break;
        }
        {
            const ev_resource_updated *p = &e->payload.resource_updated;
            if ((p->name.ptr != NULL && store_ev(st, id, p->name, &r->name) != 0) ||
                (p->description.ptr != NULL &&
                 store_ev(st, id, p->description, &r->description) != 0))
                return KQ_ENOMEM;
            if (p->has_status)
                r->status = (int)p->status;
        }
        break;
    default:
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "resource %s: unexpected event type %d", id,
                         (int)e->payload_type);
    }
    r->version = e->version;
    r->partition = partition;
    r->offset = offset;
    return 0;
}

/* ------------------------------------------------------------------ snapshot record */

static int res_snap_put(cmd_delta *d, const char *id, const void *val)
{
    const cmd_resource *r = val;
    size_t nl = r->name ? strlen(r->name) : 0, dl = r->description ? strlen(r->description) : 0;
    cmd_snap_res h;
    cmd_piece p[3];

    memset(&h, 0, sizeof h);
    h.version = r->version;
    h.offset = r->offset;
    h.partition = r->partition;
    h.status = r->status;
    h.deleted = r->deleted;
    h.name_len = (uint32_t)nl;
    h.desc_len = (uint32_t)dl;
    p[0] = (cmd_piece){&h, sizeof h};
    p[1] = (cmd_piece){r->name, nl};
    p[2] = (cmd_piece){r->description, dl};
    return cmd_delta_put(d, 'r', id, p, 3);
}

static int res_snap_load(cmd_state *st, const char *id, const void *rec, size_t len, char *errstr,
                         size_t errlen)
{
    cmd_snap_res h;
    cmd_resource *r;
    const char *s = (const char *)rec + sizeof h;

    if (len < sizeof h)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "resource %s", id);
    memcpy(&h, rec, sizeof h);
    if ((size_t)h.name_len + h.desc_len != len - sizeof h)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "resource %s", id);
    if ((r = cmd_state_put(st, T, id, NULL)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    res_clear(r);
    memset(r, 0, sizeof *r);
    r->version = h.version;
    r->offset = h.offset;
    r->partition = h.partition;
    r->status = h.status;
    r->deleted = h.deleted;
    r->name = strndup(s, h.name_len);
    r->description = strndup(s + h.name_len, h.desc_len);
    if (r->name == NULL || r->description == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    return 0;
}

const cmd_aggregate cmd_resource_type = {
    .type = EV_AGG_RESOURCE,
    .topic = CMD_TOPIC_RESOURCE,
    .name = "resource",
    .snap_kind = 'r',
    .value_size = sizeof(cmd_resource),
    .clear = res_clear,
    .copy = res_copy,
    .parse = res_parse,
    .decide = res_decide,
    .build = res_build,
    .apply = res_apply,
    .position = res_position,
    .snap_put = res_snap_put,
    .snap_load = res_snap_load,
    .answer_secret = NULL,
};
