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
    if (d->len - *pos - CMD_DELTA_HDR < (size_t)k16 + v32 || (p[0] != 'r' && p[0] != 'i'))
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
    st->next_offset = calloc((size_t)partitions, sizeof *st->next_offset);
    if (st->resources == NULL || st->idem == NULL || st->next_offset == NULL) {
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

int cmd_state_delta_full(cmd_state *st)
{
    full_ctx c = {&st->delta};

    cmd_state_delta_clear(st);
    st->delta.full = 1;
    if (map_each(st->resources, full_res, &c) != 0 || map_each(st->idem, full_idem, &c) != 0) {
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

void cmd_state_set_offset(cmd_state *st, int32_t partition, int64_t next)
{
    if (partition >= 0 && partition < st->partitions && next > st->next_offset[partition])
        st->next_offset[partition] = next;
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
    if (ev->command_id != NULL && *ev->command_id != '\0') {
        cmd_idem *i = map_put(st->idem, ev->command_id, &created);
        if (i == NULL)
            return KQ_ENOMEM;
        i->has_hash = ev->command_hash != NULL;
        if (i->has_hash)
            memcpy(i->hash, ev->command_hash, CMD_HASH_LEN);
        i->status = ev->type == EV_RESOURCE_CREATED ? 201 : 200;
        snprintf(i->id, sizeof i->id, "%s", ev->id);
        i->version = ev->version;
        i->partition = ev->partition;
        i->offset = ev->offset;
        if (st->track)
            delta_put_idem(&st->delta, ev->command_id, i); /* failure marks the delta lost */
    }
    if (st->track)
        delta_put_res(&st->delta, ev->id, r);
    return rc;
}

typedef struct each_ctx {
    int (*rfn)(void *arg, const char *id, const cmd_resource *r);
    int (*ifn)(void *arg, const char *key, const cmd_idem *i);
    void *arg;
} each_ctx;

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
    each_ctx c = {fn, NULL, arg};
    return map_each(st->resources, each_r, &c);
}

int cmd_state_each_idem(const cmd_state *st,
                        int (*fn)(void *arg, const char *key, const cmd_idem *i), void *arg)
{
    each_ctx c = {NULL, fn, arg};
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
    if (b->resources == NULL || b->keys == NULL) {
        cmd_batch_free(b);
        return KQ_ENOMEM;
    }
    return 0;
}

void cmd_batch_reset(cmd_batch *b)
{
    map_clear(b->resources);
    map_clear(b->keys);
}

void cmd_batch_free(cmd_batch *b)
{
    map_free(b->resources);
    map_free(b->keys);
    b->resources = NULL;
    b->keys = NULL;
}

static void refuse(cmd_decision *d, unsigned status, const char *code, int64_t current,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void refuse(cmd_decision *d, unsigned status, const char *code, int64_t current,
                   const char *fmt, ...)
{
    va_list ap;

    d->kind = CMD_D_ERROR;
    d->status = status;
    d->code = code;
    d->current_version = current;
    va_start(ap, fmt);
    vsnprintf(d->message, sizeof d->message, fmt, ap);
    va_end(ap);
}

static int streq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

int cmd_batch_decide(const cmd_state *st, cmd_batch *b, const cmd_command *c, size_t index,
                     cmd_decision *d)
{
    const cmd_resource *cur;
    cmd_resource *p;
    int created;

    memset(d, 0, sizeof *d);
    if (c->idem_key[0] != '\0') {
        const batch_key *held = map_get(b->keys, c->idem_key);
        const cmd_idem *i = map_get(st->idem, c->idem_key);
        if (held != NULL) {
            d->pending = 1;
            if (memcmp(held->hash, c->hash, CMD_HASH_LEN) != 0) {
                refuse(d, 422, "idempotency_key_reused", 0,
                       "the Idempotency-Key was used with another request");
                return 0;
            }
            d->kind = CMD_D_FOLLOW;
            d->follow = held->index;
            return 0;
        }
        if (i != NULL) {
            if (i->has_hash && memcmp(i->hash, c->hash, CMD_HASH_LEN) != 0) {
                refuse(d, 422, "idempotency_key_reused", 0,
                       "the Idempotency-Key was used with another request");
                return 0;
            }
            d->kind = CMD_D_REPLAY;
            d->idem = *i;
            return 0;
        }
    }
    p = map_get(b->resources, c->id);
    cur = p ? p : map_get(st->resources, c->id);
    d->pending = p != NULL;
    switch (c->kind) {
    case CMD_CREATE:
        if (cur != NULL) {
            refuse(d, 409, "conflict", cur->version, "resource %s exists already", c->id);
            return 0;
        }
        d->event = EV_RESOURCE_CREATED;
        d->version = 1;
        d->changed = CMD_F_NAME | CMD_F_DESCRIPTION | CMD_F_STATUS;
        break;
    case CMD_UPDATE:
    case CMD_DELETE:
        if (cur == NULL || cur->deleted) {
            refuse(d, 404, "not_found", 0, "resource %s does not exist", c->id);
            return 0;
        }
        if (c->has_if_match && !c->if_match_any && c->if_match != cur->version) {
            refuse(d, 412, "precondition_failed", cur->version,
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
        refuse(d, 400, "unsupported", 0, "command kind %d is not handled yet", (int)c->kind);
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
    if (c->idem_key[0] != '\0') {
        batch_key *held = map_put(b->keys, c->idem_key, &created);
        if (held == NULL)
            return KQ_ENOMEM;
        held->index = index;
        memcpy(held->hash, c->hash, CMD_HASH_LEN);
    }
    d->kind = CMD_D_APPEND;
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

void cmd_command_clear(cmd_command *c)
{
    free(c->name);
    free(c->description);
    c->name = c->description = NULL;
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
