/*
 * cmd_state.c — command-side state, batch overlay, decisions and consistency
 * tokens; see cmd_state.h.
 *
 * Internals: cmd_map is a chained hash map (FNV-1a, power-of-two buckets,
 * doubled at load factor 1) from a copied string key to a value of fixed size
 * stored inline after the entry, so an entry is one allocation.
 */
#include "cmd_state.h"
#include "kq_err.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ map */

typedef struct map_entry {
    struct map_entry *next;
    uint64_t h;
    char *key;
    void (*clear)(void *val);
    _Alignas(16) unsigned char val[];
} map_entry;

struct cmd_map {
    map_entry **b;
    size_t nb, n, valsize;
    void (*clear)(void *val); /* frees what a value owns (not the value) */
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static cmd_map *map_new(size_t valsize, void (*clear)(void *))
{
    cmd_map *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->nb = 64;
    m->valsize = valsize;
    m->clear = clear;
    if ((m->b = calloc(m->nb, sizeof *m->b)) == NULL) {
        free(m);
        return NULL;
    }
    return m;
}

static void map_clear(cmd_map *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        map_entry *e = m->b[i], *nx;
        for (; e; e = nx) {
            nx = e->next;
            if (m->clear)
                m->clear(e->val);
            free(e);
        }
        m->b[i] = NULL;
    }
    m->n = 0;
}

static void map_free(cmd_map *m)
{
    if (m == NULL)
        return;
    map_clear(m);
    free(m->b);
    free(m);
}

static void *map_get(const cmd_map *m, const char *key)
{
    uint64_t h = fnv1a(key);
    for (map_entry *e = m->b[h & (m->nb - 1)]; e; e = e->next)
        if (e->h == h && strcmp(e->key, key) == 0)
            return e->val;
    return NULL;
}

static int map_grow(cmd_map *m)
{
    size_t nb = m->nb * 2;
    map_entry **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return KQ_ENOMEM;
    for (size_t i = 0; i < m->nb; i++) {
        map_entry *e = m->b[i], *nx;
        for (; e; e = nx) {
            nx = e->next;
            e->next = b[e->h & (nb - 1)];
            b[e->h & (nb - 1)] = e;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
    return 0;
}

/* The value for `key`, created zeroed if missing (*created = 1). NULL on ENOMEM. */
static void *map_put(cmd_map *m, const char *key, int *created)
{
    uint64_t h = fnv1a(key);
    size_t klen = strlen(key);
    map_entry *e;
    void *v = map_get(m, key);

    *created = 0;
    if (v != NULL)
        return v;
    if (m->n >= m->nb && map_grow(m) != 0)
        return NULL;
    if ((e = calloc(1, sizeof *e + m->valsize + klen + 1)) == NULL)
        return NULL;
    e->key = (char *)e->val + m->valsize;
    memcpy(e->key, key, klen + 1);
    e->h = h;
    e->next = m->b[h & (m->nb - 1)];
    m->b[h & (m->nb - 1)] = e;
    m->n++;
    *created = 1;
    return e->val;
}

static int map_each(const cmd_map *m, int (*fn)(void *arg, const char *key, void *val), void *arg)
{
    int rc;
    for (size_t i = 0; i < m->nb; i++)
        for (map_entry *e = m->b[i]; e; e = e->next)
            if ((rc = fn(arg, e->key, e->val)) != 0)
                return rc;
    return 0;
}

/* ------------------------------------------------------------------ delta */

static int delta_reserve(cmd_delta *d, size_t more)
{
    size_t need = d->len + more, cap = d->cap ? d->cap : 4096;
    unsigned char *b;

    if (need <= d->cap)
        return 0;
    while (cap < need)
        cap *= 2;
    if ((b = realloc(d->buf, cap)) == NULL)
        return KQ_ENOMEM;
    d->buf = b;
    d->cap = cap;
    return 0;
}

/* Append one record; the value is given in up to three pieces. */
static int delta_put(cmd_delta *d, char kind, const char *key, const void *v1, size_t l1,
                     const void *v2, size_t l2, const void *v3, size_t l3)
{
    size_t klen = strlen(key);
    uint16_t k16 = (uint16_t)klen;
    uint32_t v32 = (uint32_t)(l1 + l2 + l3);
    unsigned char *p;

    if (klen > CMD_KEY_MAX || delta_reserve(d, CMD_DELTA_HDR + klen + l1 + l2 + l3) != 0) {
        d->lost = 1;
        return KQ_ENOMEM;
    }
    p = d->buf + d->len;
    *p++ = (unsigned char)kind;
    memcpy(p, &k16, 2);
    memcpy(p + 2, &v32, 4);
    p += 6;
    memcpy(p, key, klen);
    p += klen;
    if (l1)
        memcpy(p, v1, l1);
    if (l2)
        memcpy(p + l1, v2, l2);
    if (l3)
        memcpy(p + l1 + l2, v3, l3);
    d->len += CMD_DELTA_HDR + klen + l1 + l2 + l3;
    d->records++;
    return 0;
}

static int delta_put_res(cmd_delta *d, const char *id, const cmd_resource *r)
{
    cmd_snap_res h;
    size_t nl = r->name ? strlen(r->name) : 0, dl = r->description ? strlen(r->description) : 0;

    memset(&h, 0, sizeof h);
    h.version = r->version;
    h.offset = r->offset;
    h.partition = r->partition;
    h.status = r->status;
    h.deleted = r->deleted;
    h.name_len = (uint32_t)nl;
    h.desc_len = (uint32_t)dl;
    return delta_put(d, 'r', id, &h, sizeof h, r->name, nl, r->description, dl);
}

static int delta_put_idem(cmd_delta *d, const char *key, const cmd_idem *i)
{
    return delta_put(d, 'i', key, i, sizeof *i, NULL, 0, NULL, 0);
}

/* 'w': cmd_snap_wf + name + secret + steps; the header is built in a buffer
 * with the name so delta_put's three pieces suffice. */
static int delta_put_wf(cmd_delta *d, const char *id, const cmd_workflow *w)
{
    size_t nl = w->name ? strlen(w->name) : 0, sl = w->secret ? strlen(w->secret) : 0;
    unsigned char *hn = malloc(sizeof(cmd_snap_wf) + nl);
    cmd_snap_wf h;
    int rc;

    if (hn == NULL) {
        d->lost = 1;
        return KQ_ENOMEM;
    }
    memset(&h, 0, sizeof h);
    h.version = w->version;
    h.offset = w->offset;
    h.partition = w->partition;
    h.deleted = w->deleted;
    h.enabled = w->enabled;
    h.step_count = w->step_count;
    h.name_len = (uint32_t)nl;
    h.secret_len = (uint32_t)sl;
    h.steps_len = (uint32_t)w->steps_len;
    memcpy(hn, &h, sizeof h);
    if (nl)
        memcpy(hn + sizeof h, w->name, nl);
    rc = delta_put(d, 'w', id, hn, sizeof h + nl, w->secret, sl, w->steps, w->steps_len);
    free(hn);
    return rc;
}

static int delta_put_run(cmd_delta *d, const char *id, const cmd_run *r)
{
    return delta_put(d, 'n', id, r, sizeof *r, NULL, 0, NULL, 0);
}

void cmd_delta_free(cmd_delta *d)
{
    free(d->buf);
    memset(d, 0, sizeof *d);
}

int cmd_delta_append(cmd_delta *dst, const cmd_delta *src)
{
    if (src->len == 0)
        return 0;
    if (delta_reserve(dst, src->len) != 0)
        return KQ_ENOMEM;
    memcpy(dst->buf + dst->len, src->buf, src->len);
    dst->len += src->len;
    dst->records += src->records;
    dst->lost |= src->lost;
    return 0;
}

int cmd_delta_next(const cmd_delta *d, size_t *pos, char *kind, const char **key, size_t *keylen,
                   const void **val, size_t *vallen)
{
    uint16_t k16;
    uint32_t v32;
    const unsigned char *p;

    if (*pos == d->len)
        return 0;
    if (d->len - *pos < CMD_DELTA_HDR)
        return KQ_ECORRUPT;
    p = d->buf + *pos;
    memcpy(&k16, p + 1, 2);
    memcpy(&v32, p + 3, 4);
    if (d->len - *pos - CMD_DELTA_HDR < (size_t)k16 + v32 ||
        (p[0] != 'r' && p[0] != 'i' && p[0] != 'w' && p[0] != 'n'))
        return KQ_ECORRUPT;
    *kind = (char)p[0];
    *key = (const char *)p + CMD_DELTA_HDR;
    *keylen = k16;
    *val = p + CMD_DELTA_HDR + k16;
    *vallen = v32;
    *pos += CMD_DELTA_HDR + (size_t)k16 + v32;
    return 1;
}

/* ------------------------------------------------------------------ state */

static void resource_clear(void *v)
{
    cmd_resource *r = v;
    free(r->name);
    free(r->description);
    r->name = r->description = NULL;
}

static void workflow_clear(void *v)
{
    cmd_workflow *w = v;
    free(w->name);
    free(w->secret);
    free(w->steps);
    w->name = w->secret = NULL;
    w->steps = NULL;
    w->steps_len = 0;
}

static int set_str(char **dst, const char *src)
{
    char *c = strdup(src ? src : "");
    if (c == NULL)
        return KQ_ENOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

int cmd_state_init(cmd_state *st, int partitions)
{
    memset(st, 0, sizeof *st);
    if (partitions < 1)
        return KQ_EINVAL;
    st->partitions = partitions;
    st->resources = map_new(sizeof(cmd_resource), resource_clear);
    st->idem = map_new(sizeof(cmd_idem), NULL);
    st->workflows = map_new(sizeof(cmd_workflow), workflow_clear);
    st->runs = map_new(sizeof(cmd_run), NULL);
    st->next_offset = calloc((size_t)CMD_TOPICS * (size_t)partitions, sizeof *st->next_offset);
    if (st->resources == NULL || st->idem == NULL || st->workflows == NULL || st->runs == NULL ||
        st->next_offset == NULL) {
        cmd_state_free(st);
        return KQ_ENOMEM;
    }
    st->delta.full = 1; /* an empty state: whatever a snapshot holds is not in it */
    return 0;
}

void cmd_state_free(cmd_state *st)
{
    map_free(st->resources);
    map_free(st->idem);
    map_free(st->workflows);
    map_free(st->runs);
    free(st->next_offset);
    cmd_delta_free(&st->delta);
    memset(st, 0, sizeof *st);
}

void cmd_state_track(cmd_state *st, int on)
{
    st->track = on != 0;
}

void cmd_state_delta_clear(cmd_state *st)
{
    st->delta.len = 0;
    st->delta.records = 0;
    st->delta.full = 0;
    st->delta.lost = 0;
}

typedef struct full_ctx {
    cmd_delta *d;
} full_ctx;

static int full_res(void *arg, const char *key, void *val)
{
    return delta_put_res(((full_ctx *)arg)->d, key, val);
}

static int full_idem(void *arg, const char *key, void *val)
{
    return delta_put_idem(((full_ctx *)arg)->d, key, val);
}

static int full_wf(void *arg, const char *key, void *val)
{
    return delta_put_wf(((full_ctx *)arg)->d, key, val);
}

static int full_run(void *arg, const char *key, void *val)
{
    return delta_put_run(((full_ctx *)arg)->d, key, val);
}

int cmd_state_delta_full(cmd_state *st)
{
    full_ctx c = {&st->delta};

    cmd_state_delta_clear(st);
    st->delta.full = 1;
    if (map_each(st->resources, full_res, &c) != 0 || map_each(st->idem, full_idem, &c) != 0 ||
        map_each(st->workflows, full_wf, &c) != 0 || map_each(st->runs, full_run, &c) != 0) {
        st->delta.lost = 1;
        return KQ_ENOMEM;
    }
    return 0;
}

void cmd_state_delta_take(cmd_state *st, cmd_delta *out)
{
    *out = st->delta;
    memset(&st->delta, 0, sizeof st->delta);
}

const cmd_resource *cmd_state_resource(const cmd_state *st, const char *id)
{
    return map_get(st->resources, id);
}

const cmd_idem *cmd_state_idem(const cmd_state *st, const char *key)
{
    return map_get(st->idem, key);
}

size_t cmd_state_resource_count(const cmd_state *st)
{
    return st->resources->n;
}

size_t cmd_state_idem_count(const cmd_state *st)
{
    return st->idem->n;
}

const cmd_workflow *cmd_state_workflow(const cmd_state *st, const char *id)
{
    return map_get(st->workflows, id);
}

const cmd_run *cmd_state_run(const cmd_state *st, const char *id)
{
    return map_get(st->runs, id);
}

size_t cmd_state_workflow_count(const cmd_state *st)
{
    return st->workflows->n;
}

size_t cmd_state_run_count(const cmd_state *st)
{
    return st->runs->n;
}

void cmd_state_set_topic_offset(cmd_state *st, int topic, int32_t partition, int64_t next)
{
    int64_t *o;

    if (topic < 0 || topic >= CMD_TOPICS || partition < 0 || partition >= st->partitions)
        return;
    o = &st->next_offset[(size_t)topic * (size_t)st->partitions + (size_t)partition];
    if (next > *o)
        *o = next;
}

void cmd_state_set_offset(cmd_state *st, int32_t partition, int64_t next)
{
    cmd_state_set_topic_offset(st, CMD_TOPIC_RESOURCE, partition, next);
}

/* Record (or overwrite) the answer of an Idempotency-Key's command. */
static int record_idem(cmd_state *st, const char *key, const uint8_t *hash, unsigned status,
                       int aggregate, const char *id, int64_t version, int32_t partition,
                       int64_t offset)
{
    int created;
    cmd_idem *i = map_put(st->idem, key, &created);

    if (i == NULL)
        return KQ_ENOMEM;
    i->has_hash = hash != NULL;
    if (i->has_hash)
        memcpy(i->hash, hash, CMD_HASH_LEN);
    i->status = status;
    snprintf(i->id, sizeof i->id, "%s", id);
    i->version = version;
    i->partition = partition;
    i->offset = offset;
    i->aggregate = aggregate;
    if (st->track)
        delta_put_idem(&st->delta, key, i); /* failure marks the delta lost */
    return 0;
}

int cmd_state_apply(cmd_state *st, const cmd_event *ev, char *errstr, size_t errlen)
{
    cmd_resource *r;
    int created, rc = 0;

    cmd_state_set_offset(st, ev->partition, ev->offset + 1);
    if (ev->id == NULL || *ev->id == '\0')
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "event without aggregate id");
    r = map_get(st->resources, ev->id);
    if (r != NULL && ev->version <= r->version)
        return 1;
    switch (ev->type) {
    case EV_RESOURCE_CREATED:
        if (ev->version != 1)
            return kq_seterr(errstr, errlen, KQ_ECORRUPT,
                             "resource %s: ResourceCreated with version %" PRId64, ev->id,
                             ev->version);
        if ((r = map_put(st->resources, ev->id, &created)) == NULL)
            return KQ_ENOMEM;
        if (set_str(&r->name, ev->name) != 0 || set_str(&r->description, ev->description) != 0)
            return KQ_ENOMEM;
        r->status = ev->has_status ? ev->status : EV_STATUS_ACTIVE;
        r->deleted = 0;
        break;
    case EV_RESOURCE_UPDATED:
    case EV_RESOURCE_DELETED:
        if (r == NULL)
            return kq_seterr(errstr, errlen, KQ_ECORRUPT, "resource %s: %s of an unknown resource",
                             ev->id, ev_event_type_name(ev->type));
        if (ev->version != r->version + 1)
            return kq_seterr(errstr, errlen, KQ_ECORRUPT,
                             "resource %s: version %" PRId64 " follows %" PRId64 " (gap)", ev->id,
                             ev->version, r->version);
        if (ev->type == EV_RESOURCE_DELETED) {
            r->deleted = 1;
            break;
        }
        if ((ev->name && set_str(&r->name, ev->name) != 0) ||
            (ev->description && set_str(&r->description, ev->description) != 0))
            return KQ_ENOMEM;
        if (ev->has_status)
            r->status = ev->status;
        break;
    default:
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "resource %s: unexpected event type %d",
                         ev->id, (int)ev->type);
    }
    r->version = ev->version;
    r->partition = ev->partition;
    r->offset = ev->offset;
    st->events++;
    if (ev->command_id != NULL && *ev->command_id != '\0' &&
        record_idem(st, ev->command_id, ev->command_hash,
                    ev->type == EV_RESOURCE_CREATED ? 201 : 200, EV_AGG_RESOURCE, ev->id,
                    ev->version, ev->partition, ev->offset) != 0)
        return KQ_ENOMEM;
    if (st->track)
        delta_put_res(&st->delta, ev->id, r);
    return rc;
}

/* ------------------------------------------------------------------ steps */

int cmd_steps_canonical(const ev_step_list *steps, uint8_t **out, size_t *outlen, char *errstr,
                        size_t errlen)
{
    ev_fb_builder fb;
    ev_envelope e;
    const uint8_t *buf;
    size_t len;
    int rc;

    *out = NULL;
    *outlen = 0;
    ev_fb_builder_init(&fb);
    ev_envelope_init(&e, EV_WORKFLOW_UPDATED);
    e.aggregate_id = ev_str_c("steps");
    e.version = 1;
    e.payload.workflow_updated.steps = *steps;
    e.payload.workflow_updated.steps.present = true;
    if ((rc = ev_envelope_encode(&fb, &e, errstr, errlen)) != 0) {
        ev_fb_builder_free(&fb);
        return rc;
    }
    buf = ev_fb_builder_data(&fb, &len);
    if ((*out = malloc(len ? len : 1)) == NULL) {
        ev_fb_builder_free(&fb);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    memcpy(*out, buf, len);
    *outlen = len;
    ev_fb_builder_free(&fb);
    return 0;
}

int cmd_steps_view(const uint8_t *buf, size_t len, ev_envelope *e, ev_step_list *steps,
                   char *errstr, size_t errlen)
{
    int rc;

    if (buf == NULL || len == 0)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "no steps envelope");
    if ((rc = ev_envelope_decode(buf, len, e, errstr, errlen)) != 0)
        return rc;
    if (e->payload_type == EV_WORKFLOW_UPDATED && e->payload.workflow_updated.steps.present)
        *steps = e->payload.workflow_updated.steps;
    else if (e->payload_type == EV_WORKFLOW_CREATED && e->payload.workflow_created.steps.present)
        *steps = e->payload.workflow_created.steps;
    else if (e->payload_type == EV_RUN_STARTED && e->payload.run_started.steps.present)
        *steps = e->payload.run_started.steps;
    else
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "the envelope holds no steps");
    return 0;
}

/* ------------------------------------------------------------------ apply (envelopes) */

static char *dup_str(ev_str s)
{
    return strndup(s.ptr != NULL ? s.ptr : "", s.ptr != NULL ? s.len : 0);
}

static int set_evstr(char **dst, ev_str src)
{
    char *c = dup_str(src);
    if (c == NULL)
        return KQ_ENOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

static unsigned event_status(ev_event_type t)
{
    if (t == EV_RESOURCE_CREATED || t == EV_WORKFLOW_CREATED)
        return 201;
    return t == EV_RUN_STARTED ? 202 : 200;
}

static int apply_resource_env(cmd_state *st, const ev_envelope *e, const char *id, const char *cid,
                              int32_t partition, int64_t offset, char *errstr, size_t errlen)
{
    cmd_event ev;
    char *name = NULL, *desc = NULL;
    int rc;

    memset(&ev, 0, sizeof ev);
    ev.type = e->payload_type;
    ev.id = id;
    ev.version = e->version;
    ev.partition = partition;
    ev.offset = offset;
    ev.command_id = cid;
    if (cid != NULL && e->command_hash.ptr != NULL && e->command_hash.len == CMD_HASH_LEN)
        ev.command_hash = e->command_hash.ptr;
    if (e->payload_type == EV_RESOURCE_CREATED || e->payload_type == EV_RESOURCE_UPDATED) {
        ev_str nm = e->payload_type == EV_RESOURCE_CREATED ? e->payload.resource_created.name
                                                           : e->payload.resource_updated.name;
        ev_str ds = e->payload_type == EV_RESOURCE_CREATED
                        ? e->payload.resource_created.description
                        : e->payload.resource_updated.description;
        if ((nm.ptr != NULL && (name = dup_str(nm)) == NULL) ||
            (ds.ptr != NULL && (desc = dup_str(ds)) == NULL)) {
            free(name);
            return KQ_ENOMEM;
        }
        ev.name = name;
        ev.description = desc;
        if (e->payload_type == EV_RESOURCE_CREATED) {
            ev.has_status = 1;
            ev.status = (int)e->payload.resource_created.status;
            if (ev.description == NULL)
                ev.description = "";
        } else {
            ev.has_status = e->payload.resource_updated.has_status;
            ev.status = (int)e->payload.resource_updated.status;
        }
    }
    rc = cmd_state_apply(st, &ev, errstr, errlen);
    free(name);
    free(desc);
    return rc;
}

/* Canonical steps of a list that may be absent (absent = no steps). */
static int steps_of(const ev_step_list *l, uint8_t **out, size_t *len, uint32_t *count,
                    char *errstr, size_t errlen)
{
    *out = NULL;
    *len = 0;
    *count = 0;
    if (!l->present)
        return 0;
    *count = l->count;
    return cmd_steps_canonical(l, out, len, errstr, errlen);
}

static int apply_workflow_env(cmd_state *st, const ev_envelope *e, const char *id,
                              int32_t partition, int64_t offset, char *errstr, size_t errlen)
{
    cmd_workflow *w = map_get(st->workflows, id);
    uint8_t *steps = NULL;
    size_t steps_len = 0;
    uint32_t count = 0;
    int created, rc;

    if (w != NULL && e->version <= w->version)
        return 1;
    if (e->payload_type == EV_WORKFLOW_CREATED) {
        const ev_workflow_created *p = &e->payload.workflow_created;
        if (e->version != 1)
            return kq_seterr(errstr, errlen, KQ_ECORRUPT,
                             "workflow %s: WorkflowCreated with version %" PRId64, id, e->version);
        if ((rc = steps_of(&p->steps, &steps, &steps_len, &count, errstr, errlen)) != 0)
            return rc == KQ_ENOMEM ? rc : KQ_ECORRUPT;
        if ((w = map_put(st->workflows, id, &created)) == NULL) {
            free(steps);
            return KQ_ENOMEM;
        }
        workflow_clear(w);
        w->steps = steps;
        w->steps_len = steps_len;
        w->step_count = count;
        w->enabled = p->enabled;
        w->deleted = 0;
        if (set_evstr(&w->name, p->name) != 0 || set_evstr(&w->secret, p->webhook_secret) != 0)
            return KQ_ENOMEM;
    } else {
        if (w == NULL)
            return kq_seterr(errstr, errlen, KQ_ECORRUPT, "workflow %s: %s of an unknown workflow",
                             id, ev_event_type_name(e->payload_type));
        if (e->version != w->version + 1)
            return kq_seterr(errstr, errlen, KQ_ECORRUPT,
                             "workflow %s: version %" PRId64 " follows %" PRId64 " (gap)", id,
                             e->version, w->version);
        switch (e->payload_type) {
        case EV_WORKFLOW_UPDATED: {
            const ev_workflow_updated *p = &e->payload.workflow_updated;
            if (p->steps.present) {
                if ((rc = steps_of(&p->steps, &steps, &steps_len, &count, errstr, errlen)) != 0)
                    return rc == KQ_ENOMEM ? rc : KQ_ECORRUPT;
                free(w->steps);
                w->steps = steps;
                w->steps_len = steps_len;
                w->step_count = count;
            }
            if ((p->name.ptr != NULL && set_evstr(&w->name, p->name) != 0) ||
                (p->webhook_secret.ptr != NULL && set_evstr(&w->secret, p->webhook_secret) != 0))
                return KQ_ENOMEM;
            break;
        }
        case EV_WORKFLOW_ENABLED:
            w->enabled = 1;
            break;
        case EV_WORKFLOW_DISABLED:
            w->enabled = 0;
            break;
        case EV_WORKFLOW_DELETED:
            w->deleted = 1;
            break;
        default:
            return kq_seterr(errstr, errlen, KQ_ECORRUPT, "workflow %s: unexpected event type %d",
                             id, (int)e->payload_type);
        }
    }
    w->version = e->version;
    w->partition = partition;
    w->offset = offset;
    if (st->track)
        delta_put_wf(&st->delta, id, w);
    return 0;
}

static int apply_run_env(cmd_state *st, const ev_envelope *e, const char *id, int32_t partition,
                         int64_t offset, char *errstr, size_t errlen)
{
    cmd_run *r = map_get(st->runs, id);
    int created;

    if (r != NULL && e->version <= r->version)
        return 1;
    if (e->payload_type == EV_RUN_STARTED) {
        const ev_run_started *p = &e->payload.run_started;
        if (e->version != 1)
            return kq_seterr(errstr, errlen, KQ_ECORRUPT,
                             "run %s: RunStarted with version %" PRId64, id, e->version);
        if ((r = map_put(st->runs, id, &created)) == NULL)
            return KQ_ENOMEM;
        memset(r, 0, sizeof *r);
        r->status = CMD_RUN_OPEN;
        r->step_count = p->steps.present ? p->steps.count : p->step_count;
    } else {
        if (r == NULL)
            return kq_seterr(errstr, errlen, KQ_ECORRUPT, "run %s: %s of an unknown run", id,
                             ev_event_type_name(e->payload_type));
        if (e->version != r->version + 1)
            return kq_seterr(errstr, errlen, KQ_ECORRUPT,
                             "run %s: version %" PRId64 " follows %" PRId64 " (gap)", id,
                             e->version, r->version);
        switch (e->payload_type) {
        case EV_STEP_ATTEMPTED: {
            const ev_step_attempted *p = &e->payload.step_attempted;
            if (p->step == r->step && p->attempt > r->attempts)
                r->attempts = p->attempt;
            break;
        }
        case EV_STEP_SUCCEEDED:
            if (e->payload.step_succeeded.step == r->step) {
                r->step++;
                r->attempts = 0;
            }
            break;
        case EV_STEP_FAILED:
            break;
        case EV_RUN_SUCCEEDED:
            r->status = CMD_RUN_SUCCEEDED;
            break;
        case EV_RUN_FAILED:
            r->status = CMD_RUN_FAILED;
            break;
        default:
            return kq_seterr(errstr, errlen, KQ_ECORRUPT, "run %s: unexpected event type %d", id,
                             (int)e->payload_type);
        }
    }
    r->version = e->version;
    r->partition = partition;
    r->offset = offset;
    if (st->track)
        delta_put_run(&st->delta, id, r);
    return 0;
}

int cmd_state_apply_envelope(cmd_state *st, int topic, const ev_envelope *e, int32_t partition,
                             int64_t offset, char *errstr, size_t errlen)
{
    char id[EV_ID_MAX + 1], cid[CMD_KEY_MAX + 1];
    const char *cidp = NULL;
    ev_aggregate_type agg = ev_event_aggregate_type(e->payload_type);
    int rc;

    cmd_state_set_topic_offset(st, topic, partition, offset + 1);
    if (e->aggregate_id.ptr == NULL || e->aggregate_id.len == 0 ||
        e->aggregate_id.len > EV_ID_MAX || memchr(e->aggregate_id.ptr, '\0', e->aggregate_id.len))
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "aggregate id absent or out of range");
    if (e->command_id.len > CMD_KEY_MAX ||
        (e->command_id.ptr != NULL && memchr(e->command_id.ptr, '\0', e->command_id.len)))
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "command id out of range");
    if (agg == EV_AGG_UNKNOWN || (int)agg - 1 != topic)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "%s does not belong to topic %d",
                         ev_event_type_name(e->payload_type) ? ev_event_type_name(e->payload_type)
                                                             : "unknown event",
                         topic);
    memcpy(id, e->aggregate_id.ptr, e->aggregate_id.len);
    id[e->aggregate_id.len] = '\0';
    if (e->command_id.ptr != NULL && e->command_id.len > 0) {
        memcpy(cid, e->command_id.ptr, e->command_id.len);
        cid[e->command_id.len] = '\0';
        cidp = cid;
    }
    if (agg == EV_AGG_RESOURCE)
        return apply_resource_env(st, e, id, cidp, partition, offset, errstr, errlen);
    rc = agg == EV_AGG_WORKFLOW ? apply_workflow_env(st, e, id, partition, offset, errstr, errlen)
                                : apply_run_env(st, e, id, partition, offset, errstr, errlen);
    if (rc != 0)
        return rc;
    st->events++;
    if (cidp != NULL &&
        record_idem(
            st, cidp,
            e->command_hash.ptr != NULL && e->command_hash.len == CMD_HASH_LEN ? e->command_hash.ptr
                                                                               : NULL,
            event_status(e->payload_type), (int)agg, id, e->version, partition, offset) != 0)
        return KQ_ENOMEM;
    return 0;
}

typedef struct each_ctx {
    int (*rfn)(void *arg, const char *id, const cmd_resource *r);
    int (*ifn)(void *arg, const char *key, const cmd_idem *i);
    int (*wfn)(void *arg, const char *id, const cmd_workflow *w);
    int (*nfn)(void *arg, const char *id, const cmd_run *r);
    void *arg;
} each_ctx;

static int each_w(void *arg, const char *key, void *val)
{
    each_ctx *c = arg;
    return c->wfn(c->arg, key, val);
}

static int each_n(void *arg, const char *key, void *val)
{
    each_ctx *c = arg;
    return c->nfn(c->arg, key, val);
}

int cmd_state_each_workflow(const cmd_state *st,
                            int (*fn)(void *arg, const char *id, const cmd_workflow *w), void *arg)
{
    each_ctx c = {NULL, NULL, fn, NULL, arg};
    return map_each(st->workflows, each_w, &c);
}

int cmd_state_each_run(const cmd_state *st, int (*fn)(void *arg, const char *id, const cmd_run *r),
                       void *arg)
{
    each_ctx c = {NULL, NULL, NULL, fn, arg};
    return map_each(st->runs, each_n, &c);
}

/* Deep copy of a workflow into a cleared one. */
static int wf_copy(cmd_workflow *d, const cmd_workflow *src)
{
    workflow_clear(d);
    *d = *src;
    d->name = d->secret = NULL;
    d->steps = NULL;
    d->steps_len = 0;
    if (set_str(&d->name, src->name) != 0 || set_str(&d->secret, src->secret) != 0)
        return KQ_ENOMEM;
    if (src->steps != NULL) {
        if ((d->steps = malloc(src->steps_len ? src->steps_len : 1)) == NULL)
            return KQ_ENOMEM;
        memcpy(d->steps, src->steps, src->steps_len);
        d->steps_len = src->steps_len;
    }
    return 0;
}

int cmd_state_put_workflow(cmd_state *st, const char *id, const cmd_workflow *w)
{
    int created;
    cmd_workflow *d = map_put(st->workflows, id, &created);
    if (d == NULL)
        return KQ_ENOMEM;
    return wf_copy(d, w);
}

int cmd_state_put_run(cmd_state *st, const char *id, const cmd_run *r)
{
    int created;
    cmd_run *d = map_put(st->runs, id, &created);
    if (d == NULL)
        return KQ_ENOMEM;
    *d = *r;
    return 0;
}

static int each_r(void *arg, const char *key, void *val)
{
    each_ctx *c = arg;
    return c->rfn(c->arg, key, val);
}

static int each_i(void *arg, const char *key, void *val)
{
    each_ctx *c = arg;
    return c->ifn(c->arg, key, val);
}

int cmd_state_each_resource(const cmd_state *st,
                            int (*fn)(void *arg, const char *id, const cmd_resource *r), void *arg)
{
    each_ctx c = {fn, NULL, NULL, NULL, arg};
    return map_each(st->resources, each_r, &c);
}

int cmd_state_each_idem(const cmd_state *st,
                        int (*fn)(void *arg, const char *key, const cmd_idem *i), void *arg)
{
    each_ctx c = {NULL, fn, NULL, NULL, arg};
    return map_each(st->idem, each_i, &c);
}

int cmd_state_put_resource(cmd_state *st, const char *id, const cmd_resource *r)
{
    int created;
    cmd_resource *d = map_put(st->resources, id, &created);
    if (d == NULL)
        return KQ_ENOMEM;
    resource_clear(d);
    *d = *r;
    d->name = d->description = NULL;
    if (set_str(&d->name, r->name) != 0 || set_str(&d->description, r->description) != 0)
        return KQ_ENOMEM;
    return 0;
}

int cmd_state_put_idem(cmd_state *st, const char *key, const cmd_idem *i)
{
    int created;
    cmd_idem *d = map_put(st->idem, key, &created);
    if (d == NULL)
        return KQ_ENOMEM;
    *d = *i;
    return 0;
}

/* ------------------------------------------------------------------ batch */

typedef struct batch_key {
    size_t index; /* the command of the batch that holds the key */
    uint8_t hash[CMD_HASH_LEN];
} batch_key;

int cmd_batch_init(cmd_batch *b)
{
    b->resources = map_new(sizeof(cmd_resource), resource_clear);
    b->keys = map_new(sizeof(batch_key), NULL);
    b->workflows = map_new(sizeof(cmd_workflow), workflow_clear);
    b->runs = map_new(sizeof(cmd_run), NULL);
    if (b->resources == NULL || b->keys == NULL || b->workflows == NULL || b->runs == NULL) {
        cmd_batch_free(b);
        return KQ_ENOMEM;
    }
    return 0;
}

void cmd_batch_reset(cmd_batch *b)
{
    map_clear(b->resources);
    map_clear(b->keys);
    map_clear(b->workflows);
    map_clear(b->runs);
}

void cmd_batch_free(cmd_batch *b)
{
    map_free(b->resources);
    map_free(b->keys);
    map_free(b->workflows);
    map_free(b->runs);
    b->resources = NULL;
    b->keys = NULL;
    b->workflows = NULL;
    b->runs = NULL;
}

static int streq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static void attempt_detail(cmd_decision *d, const cmd_run *r)
{
    d->has_attempt_detail = 1;
    d->current_step = r->step;
    d->recorded_attempts = r->attempts;
}

/* Resource commands: the pending copy of the resource is recorded in the overlay. */
static int decide_resource(const cmd_state *st, cmd_batch *b, const cmd_command *c, cmd_decision *d)
{
    const cmd_resource *cur;
    cmd_resource *p;
    int created;

    p = map_get(b->resources, c->id);
    cur = p ? p : map_get(st->resources, c->id);
    d->pending = p != NULL;
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
        if ((c->fields & CMD_F_NAME) && !streq(c->name, cur->name))
            d->changed |= CMD_F_NAME;
        if ((c->fields & CMD_F_DESCRIPTION) && !streq(c->description, cur->description))
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
    if ((p = map_put(b->resources, c->id, &created)) == NULL)
        return KQ_ENOMEM;
    if (created) {
        if (cur != NULL) {
            *p = *cur;
            p->name = p->description = NULL;
            if (set_str(&p->name, cur->name) != 0 ||
                set_str(&p->description, cur->description) != 0)
                return KQ_ENOMEM;
        } else {
            p->status = EV_STATUS_ACTIVE;
        }
    }
    if (d->event == EV_RESOURCE_CREATED) {
        if (set_str(&p->name, c->name) != 0 || set_str(&p->description, c->description) != 0)
            return KQ_ENOMEM;
        p->status = (c->fields & CMD_F_STATUS) ? c->status : EV_STATUS_ACTIVE;
    } else if (d->event == EV_RESOURCE_UPDATED) {
        if (((d->changed & CMD_F_NAME) && set_str(&p->name, c->name) != 0) ||
            ((d->changed & CMD_F_DESCRIPTION) && set_str(&p->description, c->description) != 0))
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

/* The canonical steps of the command's steps_env. 1 = refused (d filled). */
static int command_steps(const cmd_command *c, cmd_decision *d, uint8_t **out, size_t *len,
                         uint32_t *count)
{
    ev_envelope e;
    ev_step_list l;
    char es[128];
    int rc;

    if (cmd_steps_view(c->steps_env, c->steps_env_len, &e, &l, es, sizeof es) != 0) {
        cmd_decision_refuse(d, 400, "invalid_steps", 0, "the actions cannot be read: %s", es);
        return 1;
    }
    *count = l.count;
    if ((rc = cmd_steps_canonical(&l, out, len, es, sizeof es)) != 0) {
        if (rc == KQ_ENOMEM)
            return rc;
        cmd_decision_refuse(d, 400, "invalid_steps", 0, "the actions are invalid: %s", es);
        return 1;
    }
    return 0;
}

static int decide_workflow(const cmd_state *st, cmd_batch *b, const cmd_command *c, cmd_decision *d)
{
    cmd_workflow *p = map_get(b->workflows, c->id);
    const cmd_workflow *cur = p ? p : map_get(st->workflows, c->id);
    uint8_t *steps = NULL;
    size_t steps_len = 0;
    uint32_t count = 0;
    int n = 0, created, rc, enabled = cur != NULL ? cur->enabled : 1;

    d->pending = p != NULL;
    if (c->kind == CMD_WF_CREATE) {
        if (cur != NULL) {
            cmd_decision_refuse(d, 409, "conflict", cur->version, "workflow %s exists already",
                                c->id);
            return 0;
        }
        if (c->name == NULL || c->secret == NULL || c->secret[0] == '\0') {
            cmd_decision_refuse(d, 400, "invalid_request", 0,
                                "a workflow needs a name and a secret");
            return 0;
        }
        if (c->steps_env != NULL) {
            if ((rc = command_steps(c, d, &steps, &steps_len, &count)) != 0)
                return rc < 0 ? rc : 0;
        } else {
            /* no actions: an empty list, as WorkflowCreated will hold */
            ev_step_list none = ev_step_list_of(NULL, 0);
            char es[128];
            if (cmd_steps_canonical(&none, &steps, &steps_len, es, sizeof es) != 0)
                return KQ_ENOMEM;
        }
        d->events[n++] = EV_WORKFLOW_CREATED;
        d->changed = CMD_F_NAME | CMD_F_ENABLED | CMD_F_SECRET | CMD_F_STEPS;
        enabled = (c->fields & CMD_F_ENABLED) ? c->enabled != 0 : 1;
    } else {
        if (cur == NULL || cur->deleted) {
            cmd_decision_refuse(d, 404, "not_found", 0, "workflow %s does not exist", c->id);
            return 0;
        }
        if (c->has_if_match && !c->if_match_any && c->if_match != cur->version) {
            cmd_decision_refuse(d, 412, "precondition_failed", cur->version,
                                "workflow %s has another version than If-Match", c->id);
            return 0;
        }
        if (c->kind == CMD_WF_DELETE) {
            d->events[n++] = EV_WORKFLOW_DELETED;
        } else {
            if ((c->fields & CMD_F_NAME) && c->name != NULL && !streq(c->name, cur->name))
                d->changed |= CMD_F_NAME;
            if ((c->fields & CMD_F_SECRET) && c->secret != NULL && c->secret[0] != '\0' &&
                !streq(c->secret, cur->secret))
                d->changed |= CMD_F_SECRET;
            if ((c->fields & CMD_F_STEPS) && c->steps_env != NULL) {
                if ((rc = command_steps(c, d, &steps, &steps_len, &count)) != 0)
                    return rc < 0 ? rc : 0;
                if (steps_len == cur->steps_len && cur->steps != NULL &&
                    memcmp(steps, cur->steps, steps_len) == 0) {
                    free(steps);
                    steps = NULL;
                } else {
                    d->changed |= CMD_F_STEPS;
                }
            }
            if (d->changed != 0)
                d->events[n++] = EV_WORKFLOW_UPDATED;
            if ((c->fields & CMD_F_ENABLED) && (c->enabled != 0) != (cur->enabled != 0)) {
                d->changed |= CMD_F_ENABLED;
                enabled = c->enabled != 0;
                d->events[n++] = enabled ? EV_WORKFLOW_ENABLED : EV_WORKFLOW_DISABLED;
            }
            if (n == 0) {
                d->kind = CMD_D_NOOP;
                d->version = cur->version;
                return 0;
            }
        }
    }
    d->nevents = n;
    d->event = d->events[0];
    d->version = (cur != NULL && c->kind != CMD_WF_CREATE ? cur->version : 0) + n;
    /* Record the pending events in the overlay. */
    if ((p = map_put(b->workflows, c->id, &created)) == NULL) {
        free(steps);
        return KQ_ENOMEM;
    }
    if (created && cur != NULL && (rc = wf_copy(p, cur)) != 0) {
        free(steps);
        return rc;
    }
    if (c->kind == CMD_WF_CREATE) {
        workflow_clear(p);
        p->deleted = 0;
        if (set_str(&p->name, c->name) != 0 || set_str(&p->secret, c->secret) != 0) {
            free(steps);
            return KQ_ENOMEM;
        }
    } else if (c->kind == CMD_WF_DELETE) {
        p->deleted = 1;
    } else {
        if (((d->changed & CMD_F_NAME) && set_str(&p->name, c->name) != 0) ||
            ((d->changed & CMD_F_SECRET) && set_str(&p->secret, c->secret) != 0)) {
            free(steps);
            return KQ_ENOMEM;
        }
    }
    if (c->kind == CMD_WF_CREATE || (d->changed & CMD_F_STEPS)) {
        free(p->steps);
        p->steps = steps;
        p->steps_len = steps_len;
        p->step_count = count;
        steps = NULL;
    }
    free(steps);
    p->enabled = enabled;
    p->version = d->version;
    p->offset = -1;
    d->kind = CMD_D_APPEND;
    return 0;
}

/* SHA-256 of both, compared in constant time (the length is not leaked). */
static int secret_matches(const char *given, const char *secret)
{
    unsigned char a[32], b[32];
    unsigned int na = 0, nb = 0;

    if (given == NULL || secret == NULL)
        return 0;
    if (EVP_Digest(given, strlen(given), a, &na, EVP_sha256(), NULL) != 1 ||
        EVP_Digest(secret, strlen(secret), b, &nb, EVP_sha256(), NULL) != 1 || na != 32 || nb != 32)
        return 0;
    return CRYPTO_memcmp(a, b, 32) == 0;
}

static int decide_run_start(const cmd_state *st, cmd_batch *b, const cmd_command *c,
                            cmd_decision *d)
{
    cmd_run *rp = map_get(b->runs, c->id);
    const cmd_run *run = rp ? rp : map_get(st->runs, c->id);
    cmd_workflow *wp = map_get(b->workflows, c->workflow_id);
    const cmd_workflow *wf = wp ? wp : map_get(st->workflows, c->workflow_id);
    int created;

    d->pending = rp != NULL || wp != NULL;
    if (run != NULL) {
        cmd_decision_refuse(d, 409, "conflict", run->version, "run %s exists already", c->id);
        return 0;
    }
    if (wf == NULL || wf->deleted) {
        cmd_decision_refuse(d, 404, "not_found", 0, "workflow %s does not exist", c->workflow_id);
        return 0;
    }
    if (c->has_hook_secret && !secret_matches(c->hook_secret, wf->secret)) {
        cmd_decision_refuse(d, 401, "invalid_webhook_secret", 0,
                            "the webhook secret is not the workflow's");
        return 0;
    }
    if (!wf->enabled) {
        cmd_decision_refuse(d, 409, "workflow_disabled", wf->version, "workflow %s is disabled",
                            c->workflow_id);
        return 0;
    }
    if ((d->wf_secret = strdup(wf->secret ? wf->secret : "")) == NULL)
        return KQ_ENOMEM;
    if (wf->steps != NULL) {
        if ((d->wf_steps = malloc(wf->steps_len ? wf->steps_len : 1)) == NULL) {
            cmd_decision_clear(d);
            return KQ_ENOMEM;
        }
        memcpy(d->wf_steps, wf->steps, wf->steps_len);
        d->wf_steps_len = wf->steps_len;
    }
    d->wf_version = wf->version;
    d->step_count = wf->steps != NULL ? wf->step_count : 0;
    if ((rp = map_put(b->runs, c->id, &created)) == NULL) {
        cmd_decision_clear(d);
        return KQ_ENOMEM;
    }
    memset(rp, 0, sizeof *rp);
    rp->version = 1;
    rp->offset = -1;
    rp->status = CMD_RUN_OPEN;
    rp->step_count = d->step_count;
    d->nevents = 1;
    d->events[0] = d->event = EV_RUN_STARTED;
    d->version = 1;
    d->kind = CMD_D_APPEND;
    return 0;
}

static int decide_run_attempt(const cmd_state *st, cmd_batch *b, const cmd_command *c,
                              cmd_decision *d)
{
    cmd_run *p = map_get(b->runs, c->id);
    const cmd_run *cur = p ? p : map_get(st->runs, c->id);
    int n = 0, created, last;

    d->pending = p != NULL;
    if (cur == NULL) {
        cmd_decision_refuse(d, 404, "not_found", 0, "run %s does not exist", c->id);
        return 0;
    }
    if (cur->status != CMD_RUN_OPEN) {
        cmd_decision_refuse(d, 409, "run_finished", cur->version, "run %s has %s", c->id,
                            cur->status == CMD_RUN_SUCCEEDED ? "succeeded" : "failed");
        return 0;
    }
    if (c->step != cur->step || c->step >= cur->step_count) {
        cmd_decision_refuse(d, 409, "step_mismatch", cur->version,
                            "step %u is not the run's current step %u (of %u)", (unsigned)c->step,
                            (unsigned)cur->step, (unsigned)cur->step_count);
        attempt_detail(d, cur);
        return 0;
    }
    if (c->attempt <= cur->attempts) {
        cmd_decision_refuse(d, 409, "attempt_recorded", cur->version,
                            "attempt %u of step %u is recorded already (%u recorded)",
                            (unsigned)c->attempt, (unsigned)c->step, (unsigned)cur->attempts);
        attempt_detail(d, cur);
        return 0;
    }
    if (c->attempt > cur->attempts + 1) {
        cmd_decision_refuse(d, 409, "attempt_gap", cur->version,
                            "attempt %u of step %u follows %u recorded attempts",
                            (unsigned)c->attempt, (unsigned)c->step, (unsigned)cur->attempts);
        attempt_detail(d, cur);
        return 0;
    }
    if (c->outcome != CMD_OUT_RETRY && c->outcome != CMD_OUT_SUCCEEDED &&
        c->outcome != CMD_OUT_FAILED) {
        cmd_decision_refuse(d, 400, "invalid_request", 0, "unknown outcome %d", c->outcome);
        return 0;
    }
    if ((c->outcome == CMD_OUT_RETRY) != (c->has_next_delay_ms != 0)) {
        cmd_decision_refuse(d, 400, "invalid_request", 0,
                            "next_delay_ms is required iff the outcome is retry");
        return 0;
    }
    last = c->step + 1 == cur->step_count;
    d->events[n++] = EV_STEP_ATTEMPTED;
    if (c->outcome == CMD_OUT_SUCCEEDED) {
        d->events[n++] = EV_STEP_SUCCEEDED;
        if (last)
            d->events[n++] = EV_RUN_SUCCEEDED;
    } else if (c->outcome == CMD_OUT_FAILED) {
        d->events[n++] = EV_STEP_FAILED;
        d->events[n++] = EV_RUN_FAILED;
    }
    d->nevents = n;
    d->event = d->events[0];
    d->version = cur->version + n;
    if ((p = map_put(b->runs, c->id, &created)) == NULL)
        return KQ_ENOMEM;
    if (created)
        *p = *cur;
    p->attempts = c->attempt;
    if (c->outcome == CMD_OUT_SUCCEEDED) {
        p->step++;
        p->attempts = 0;
        if (last)
            p->status = CMD_RUN_SUCCEEDED;
    } else if (c->outcome == CMD_OUT_FAILED) {
        p->status = CMD_RUN_FAILED;
    }
    p->version = d->version;
    p->offset = -1;
    d->kind = CMD_D_APPEND;
    return 0;
}

int cmd_batch_decide(const cmd_state *st, cmd_batch *b, const cmd_command *c, size_t index,
                     cmd_decision *d)
{
    int rc, created;

    memset(d, 0, sizeof *d);
    if (c->idem_key[0] != '\0') {
        const batch_key *held = map_get(b->keys, c->idem_key);
        const cmd_idem *i = map_get(st->idem, c->idem_key);
        if (held != NULL) {
            d->pending = 1;
            if (memcmp(held->hash, c->hash, CMD_HASH_LEN) != 0) {
                cmd_decision_refuse(d, 422, "idempotency_key_reused", 0,
                                    "the Idempotency-Key was used with another request");
                return 0;
            }
            d->kind = CMD_D_FOLLOW;
            d->follow = held->index;
            return 0;
        }
        if (i != NULL) {
            if (i->has_hash && memcmp(i->hash, c->hash, CMD_HASH_LEN) != 0) {
                cmd_decision_refuse(d, 422, "idempotency_key_reused", 0,
                                    "the Idempotency-Key was used with another request");
                return 0;
            }
            d->kind = CMD_D_REPLAY;
            d->idem = *i;
            return 0;
        }
    }
    switch (c->kind) {
    case CMD_CREATE:
    case CMD_UPDATE:
    case CMD_DELETE:
        rc = decide_resource(st, b, c, d);
        break;
    case CMD_WF_CREATE:
    case CMD_WF_UPDATE:
    case CMD_WF_DELETE:
        rc = decide_workflow(st, b, c, d);
        break;
    case CMD_RUN_START:
        rc = decide_run_start(st, b, c, d);
        break;
    case CMD_RUN_ATTEMPT:
        rc = decide_run_attempt(st, b, c, d);
        break;
    default:
        cmd_decision_refuse(d, 400, "unsupported", 0, "command kind %d is not handled",
                            (int)c->kind);
        return 0;
    }
    if (rc != 0) {
        cmd_decision_clear(d);
        return rc;
    }
    if (d->kind == CMD_D_APPEND && c->idem_key[0] != '\0') {
        batch_key *held = map_put(b->keys, c->idem_key, &created);
        if (held == NULL) {
            cmd_decision_clear(d);
            return KQ_ENOMEM;
        }
        held->index = index;
        memcpy(held->hash, c->hash, CMD_HASH_LEN);
    }
    return 0;
}

void cmd_command_event(const cmd_command *c, const cmd_decision *d, int32_t partition,
                       int64_t offset, cmd_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->type = d->event;
    ev->id = c->id;
    ev->version = d->version;
    if (d->event == EV_RESOURCE_CREATED) {
        ev->name = c->name;
        ev->description = c->description ? c->description : "";
        ev->has_status = 1;
        ev->status = (c->fields & CMD_F_STATUS) ? c->status : EV_STATUS_ACTIVE;
    } else if (d->event == EV_RESOURCE_UPDATED) {
        ev->name = (d->changed & CMD_F_NAME) ? c->name : NULL;
        ev->description = (d->changed & CMD_F_DESCRIPTION) ? c->description : NULL;
        ev->has_status = (d->changed & CMD_F_STATUS) != 0;
        ev->status = c->status;
    }
    ev->command_id = c->idem_key[0] ? c->idem_key : NULL;
    ev->command_hash = c->idem_key[0] ? c->hash : NULL;
    ev->partition = partition;
    ev->offset = offset;
}

/* ------------------------------------------------------------------ tokens */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int cmd_token_encode(const char *topic, int32_t partition, int64_t offset, char *out, size_t outlen)
{
    char raw[320];
    int n = snprintf(raw, sizeof raw, "%s:%" PRId32 ":%" PRId64, topic, partition, offset);
    size_t o = 3, i;

    if (n < 0 || (size_t)n >= sizeof raw || outlen < 4 + ((size_t)n * 4 + 2) / 3)
        return KQ_ERANGE;
    memcpy(out, "v1.", 3);
    for (i = 0; i + 2 < (size_t)n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)raw[i] << 16 |
                     (uint32_t)(unsigned char)raw[i + 1] << 8 | (unsigned char)raw[i + 2];
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
        out[o++] = b64[v & 63];
    }
    if ((size_t)n - i == 1) {
        uint32_t v = (uint32_t)(unsigned char)raw[i] << 16;
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
    } else if ((size_t)n - i == 2) {
        uint32_t v = (uint32_t)(unsigned char)raw[i] << 16 | (uint32_t)(unsigned char)raw[i + 1]
                                                                 << 8;
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
    }
    out[o] = '\0';
    return (int)o;
}

static int b64val(char ch)
{
    const char *p = ch ? strchr(b64, ch) : NULL;
    return p ? (int)(p - b64) : -1;
}

static int parse_i64(const char *s, const char *end, int64_t max, int64_t *out)
{
    int64_t v = 0;
    if (s == end || end - s > 19 || (*s == '0' && end - s > 1))
        return KQ_EINVAL;
    for (; s < end; s++) {
        if (*s < '0' || *s > '9' || v > (max - (*s - '0')) / 10)
            return KQ_EINVAL;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return 0;
}

int cmd_token_parse(const char *token, char *topic, size_t topiclen, int32_t *partition,
                    int64_t *offset)
{
    char raw[320];
    size_t n = 0, len;
    uint32_t acc = 0;
    int bits = 0;
    const char *c1, *c2;
    int64_t p, o;

    if (token == NULL || strncmp(token, "v1.", 3) != 0)
        return KQ_EINVAL;
    token += 3;
    len = strlen(token);
    if (len == 0 || len > 400 || len % 4 == 1)
        return KQ_EINVAL;
    for (size_t i = 0; i < len; i++) {
        int v = b64val(token[i]);
        if (v < 0)
            return KQ_EINVAL;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n + 1 >= sizeof raw)
                return KQ_EINVAL;
            raw[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    if ((acc & ((1u << bits) - 1)) != 0) /* non-canonical trailing bits */
        return KQ_EINVAL;
    raw[n] = '\0';
    if (memchr(raw, '\0', n) != NULL)
        return KQ_EINVAL;
    c2 = strrchr(raw, ':');
    if (c2 == NULL)
        return KQ_EINVAL;
    c1 = c2 - 1;
    while (c1 >= raw && *c1 != ':')
        c1--;
    if (c1 <= raw)
        return KQ_EINVAL;
    if (parse_i64(c1 + 1, c2, INT32_MAX, &p) != 0 || parse_i64(c2 + 1, raw + n, INT64_MAX, &o) != 0)
        return KQ_EINVAL;
    if ((size_t)(c1 - raw) >= topiclen)
        return KQ_ERANGE;
    memcpy(topic, raw, (size_t)(c1 - raw));
    topic[c1 - raw] = '\0';
    *partition = (int32_t)p;
    *offset = o;
    return 0;
}
