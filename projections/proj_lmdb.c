/*
 * proj_lmdb.c — see proj_lmdb.h.
 */
#include "proj_lmdb.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "kq_err.h"
#include "kq_log.h"
#include "kq_rm.h"
#include "kq_time.h"
#include "proj_aggregate.h"
#include "proj_doc.h"
#include "proj_failpoint.h"

#define SYNC_EVERY_MS 1000

struct proj_lmdb {
    MDB_env *env;
    MDB_dbi meta, offsets, versions, resources, by_status;
    MDB_dbi workflows, wf_by_enabled, runs, runs_by_wf, runs_by_status;
    int nosync;
    int bulk;        /* no periodic sync (proj_lmdb_set_bulk) */
    int lock_fd;     /* the live model's readmodel.lock, -1 for other environments */
    char data[4200]; /* with lock_fd: path of the live data.mdb */
    long long last_sync_ms;
    uint8_t *buf; /* scratch for encoded resource records */
    size_t bufcap;
};

static int lerr(char *errstr, size_t errlen, int rc, const char *what)
{
    return kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB %s: %s", what, mdb_strerror(rc));
}

int proj_lmdb_open(const kq_config *cfg, proj_lmdb **out, char *errstr, size_t errlen)
{
    char dir[4096];

    char lock[4096];
    proj_lmdb *t;
    int rc, fd;

    if (snprintf(dir, sizeof dir, "%s/%s", cfg->lmdb_dir, KQ_RM_SUBDIR) >= (int)sizeof dir ||
        snprintf(lock, sizeof lock, "%s/%s", cfg->lmdb_dir, KQ_RM_LOCK_FILE) >= (int)sizeof lock)
        return kq_seterr(errstr, errlen, KQ_ERANGE, "KCQRS_LMDB_DIR too long");
    if ((rc = proj_lmdb_open_dir(dir, (size_t)cfg->lmdb_map_mb << 20, 0, &t, errstr, errlen)) != 0)
        return rc;
    if ((fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        rc = kq_seterr(errstr, errlen, KQ_EIO, "open %s: %s", lock, strerror(errno));
        proj_lmdb_close(t);
        return rc;
    }
    t->lock_fd = fd;
    if (snprintf(t->data, sizeof t->data, "%s/%s/data.mdb", cfg->lmdb_dir, KQ_RM_SUBDIR) >=
        (int)sizeof t->data) {
        proj_lmdb_close(t);
        return kq_seterr(errstr, errlen, KQ_ERANGE, "KCQRS_LMDB_DIR too long");
    }
    *out = t;
    return 0;
}

void proj_lmdb_set_bulk(proj_lmdb *t, int on)
{
    t->bulk = on != 0;
}

int proj_lmdb_sync(proj_lmdb *t, char *errstr, size_t errlen)
{
    int rc = mdb_env_sync(t->env, 1);

    return rc != 0 ? lerr(errstr, errlen, rc, "sync") : 0;
}

MDB_env *proj_lmdb_env(proj_lmdb *t)
{
    return t->env;
}

/* 1 when t->data is no longer the file the environment has open (or is gone). */
static int switched(proj_lmdb *t)
{
    struct stat a, b;
    mdb_filehandle_t fd;

    if (mdb_env_get_fd(t->env, &fd) != 0 || fstat(fd, &a) != 0)
        return 1;
    if (stat(t->data, &b) != 0)
        return 1;
    return a.st_dev != b.st_dev || a.st_ino != b.st_ino;
}

int proj_lmdb_open_dir(const char *dir, size_t map_size, int sync, proj_lmdb **out, char *errstr,
                       size_t errlen)
{
    proj_lmdb *t;
    MDB_txn *txn = NULL;
    MDB_val k, v;
    int rc, ret = 0;

    *out = NULL;
    if ((t = calloc(1, sizeof *t)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    t->lock_fd = -1;
    if ((ret = kq_rm_env_open(dir, map_size, 1, &t->env, errstr, errlen)) != 0)
        goto fail;
    t->nosync = !sync;
    if (t->nosync && (rc = mdb_env_set_flags(t->env, MDB_NOSYNC, 1)) != 0) {
        ret = lerr(errstr, errlen, rc, "set MDB_NOSYNC");
        goto fail;
    }
    if ((rc = mdb_txn_begin(t->env, NULL, 0, &txn)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_META, MDB_CREATE, &t->meta)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_OFFSETS, MDB_CREATE, &t->offsets)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_VERSIONS, MDB_CREATE, &t->versions)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_RESOURCES, MDB_CREATE, &t->resources)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_RES_BY_STATUS, MDB_CREATE, &t->by_status)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_WORKFLOWS, MDB_CREATE, &t->workflows)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_WF_BY_ENABLED, MDB_CREATE, &t->wf_by_enabled)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_RUNS, MDB_CREATE, &t->runs)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_RUNS_BY_WF, MDB_CREATE, &t->runs_by_wf)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_RUNS_BY_STATUS, MDB_CREATE, &t->runs_by_status)) != 0) {
        ret = lerr(errstr, errlen, rc, dir);
        goto fail;
    }
    k.mv_data = "format";
    k.mv_size = 6;
    rc = mdb_get(txn, t->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        v.mv_data = KQ_RM_FORMAT;
        v.mv_size = strlen(KQ_RM_FORMAT);
        if ((rc = mdb_put(txn, t->meta, &k, &v, 0)) != 0) {
            ret = lerr(errstr, errlen, rc, "put meta format");
            goto fail;
        }
    } else if (rc != 0) {
        ret = lerr(errstr, errlen, rc, "get meta format");
        goto fail;
    } else if (v.mv_size != strlen(KQ_RM_FORMAT) ||
               memcmp(v.mv_data, KQ_RM_FORMAT, v.mv_size) != 0) {
        ret = kq_seterr(errstr, errlen, KQ_ECORRUPT,
                        "%s holds a read model of format '%.*s', not '%s': move it away to "
                        "rebuild from the log",
                        dir, (int)(v.mv_size > 64 ? 64 : v.mv_size), (const char *)v.mv_data,
                        KQ_RM_FORMAT);
        goto fail;
    }
    if ((rc = mdb_txn_commit(txn)) != 0) {
        txn = NULL;
        ret = lerr(errstr, errlen, rc, "commit");
        goto fail;
    }
    t->last_sync_ms = kq_time_mono_ms();
    *out = t;
    return 0;
fail:
    if (txn)
        mdb_txn_abort(txn);
    if (t->env)
        mdb_env_close(t->env);
    free(t);
    return ret;
}

int proj_lmdb_load_offsets(proj_lmdb *t, proj_offset_fn cb, void *arg, char *errstr, size_t errlen)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc, ret = 0;

    if ((rc = mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn)) != 0)
        return lerr(errstr, errlen, rc, "begin read");
    if ((rc = mdb_cursor_open(txn, t->offsets, &cur)) != 0) {
        mdb_txn_abort(txn);
        return lerr(errstr, errlen, rc, "cursor");
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        char key[512], *slash, *end;
        long part;
        int64_t off;

        if (k.mv_size >= sizeof key || v.mv_size != sizeof off) {
            ret = kq_seterr(errstr, errlen, KQ_ECORRUPT, "malformed offsets entry");
            break;
        }
        memcpy(key, k.mv_data, k.mv_size);
        key[k.mv_size] = '\0';
        memcpy(&off, v.mv_data, sizeof off);
        if ((slash = strrchr(key, '/')) == NULL || slash[1] == '\0') {
            ret = kq_seterr(errstr, errlen, KQ_ECORRUPT, "malformed offsets key '%s'", key);
            break;
        }
        *slash = '\0';
        part = strtol(slash + 1, &end, 10);
        if (*end != '\0' || part < 0 || part > INT32_MAX || off < 0) {
            ret = kq_seterr(errstr, errlen, KQ_ECORRUPT, "malformed offsets entry '%s'", key);
            break;
        }
        cb(arg, key, (int32_t)part, off);
    }
    if (ret == 0 && rc != MDB_NOTFOUND)
        ret = lerr(errstr, errlen, rc, "read offsets");
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return ret;
}

static int grow(proj_lmdb *t, size_t need)
{
    uint8_t *p;

    if (need <= t->bufcap)
        return 0;
    if ((p = realloc(t->buf, need)) == NULL)
        return KQ_ENOMEM;
    t->buf = p;
    t->bufcap = need;
    return 0;
}

/* The batch's write transaction, as the per-type apply functions of
 * proj_aggregate.h see it. */
struct proj_lmdb_txn {
    proj_lmdb *t;
    MDB_txn *txn;
    MDB_cursor *resources; /* on the resources database */
};

/* Put (del = 0) or delete an index key <flag><id> of `dbi`. */
static int put_flag_index(MDB_txn *txn, MDB_dbi dbi, uint8_t flag, const char *id, size_t len,
                          int del)
{
    uint8_t kb[512];
    MDB_val k, v = {0, ""};
    int n = kq_rm_prefixed_key(flag, id, len, kb, sizeof kb), rc;

    if (n < 0)
        return MDB_BAD_VALSIZE;
    k.mv_data = kb;
    k.mv_size = (size_t)n;
    if (del) {
        rc = mdb_del(txn, dbi, &k, NULL);
        return rc == MDB_NOTFOUND ? 0 : rc;
    }
    return mdb_put(txn, dbi, &k, &v, 0);
}

/*
 * Resource events: returns an LMDB code, or PROJ_LMDB_REFUSED with *why set.
 * lt->resources is a cursor on the resources database: the record is looked
 * up with it and, when it exists, replaced at the cursor (MDB_CURRENT), which
 * saves a second descent of the tree.
 */
int proj_lmdb_resource_apply(proj_lmdb_txn *lt, const ev_envelope *e, const char **why)
{
    proj_lmdb *t = lt->t;
    MDB_cursor *rc_cur = lt->resources;
    MDB_val k = {e->aggregate_id.len, (void *)e->aggregate_id.ptr}, v;
    kq_rm_resource r, old;
    int rc, exists;

    rc = mdb_cursor_get(rc_cur, &k, &v, MDB_SET);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    exists = rc == 0;
    if (exists && kq_rm_resource_decode(v.mv_data, v.mv_size, &old) != 0)
        return MDB_CORRUPTED;
    switch (e->payload_type) {
    case EV_RESOURCE_CREATED: {
        const ev_resource_created *c = &e->payload.resource_created;

        if (exists && (rc = put_flag_index(lt->txn, t->by_status, old.status, e->aggregate_id.ptr,
                                           e->aggregate_id.len, 1)) != 0)
            return rc;
        if ((unsigned)c->status > EV_STATUS_ARCHIVED) {
            *why = "ResourceCreated with an unknown status";
            return PROJ_LMDB_REFUSED;
        }
        r.version = e->version;
        r.created_at_us = e->occurred_at_us;
        r.updated_at_us = e->occurred_at_us;
        r.status = (uint8_t)c->status;
        r.name = c->name.ptr ? c->name.ptr : "";
        r.name_len = c->name.len;
        r.description = c->description.ptr ? c->description.ptr : "";
        r.description_len = c->description.len;
        break;
    }
    case EV_RESOURCE_UPDATED: {
        const ev_resource_updated *u = &e->payload.resource_updated;

        if (!exists) /* after a delete: the version advances, nothing to change */
            return 0;
        if (u->has_status && (unsigned)u->status > EV_STATUS_ARCHIVED) {
            *why = "ResourceUpdated with an unknown status";
            return PROJ_LMDB_REFUSED;
        }
        r = old;
        r.version = e->version;
        r.updated_at_us = e->occurred_at_us;
        if (u->name.ptr != NULL) {
            r.name = u->name.ptr;
            r.name_len = u->name.len;
        }
        if (u->description.ptr != NULL) {
            r.description = u->description.ptr;
            r.description_len = u->description.len;
        }
        if (u->has_status)
            r.status = (uint8_t)u->status;
        if (r.status != old.status &&
            (rc = put_flag_index(lt->txn, t->by_status, old.status, e->aggregate_id.ptr,
                                 e->aggregate_id.len, 1)) != 0)
            return rc;
        break;
    }
    case EV_RESOURCE_DELETED:
        if (!exists)
            return 0;
        if ((rc = put_flag_index(lt->txn, t->by_status, old.status, e->aggregate_id.ptr,
                                 e->aggregate_id.len, 1)) != 0)
            return rc;
        return mdb_cursor_del(rc_cur, 0);
    default:
        *why = "event type does not belong to a resource";
        return PROJ_LMDB_REFUSED;
    }
    /* r may point into the old value (a view into the map): encode before any put. */
    if (grow(t, kq_rm_resource_size(&r)) != 0)
        return ENOMEM;
    kq_rm_resource_encode(&r, t->buf);
    v.mv_data = t->buf;
    v.mv_size = kq_rm_resource_size(&r);
    if ((rc = mdb_cursor_put(rc_cur, &k, &v, exists ? MDB_CURRENT : 0)) != 0)
        return rc;
    /* An update that keeps the status keeps its index entry: nothing to write. */
    if (e->payload_type == EV_RESOURCE_UPDATED && r.status == old.status)
        return 0;
    return put_flag_index(lt->txn, t->by_status, r.status, e->aggregate_id.ptr, e->aggregate_id.len,
                          0);
}

/*
 * Workflow and run events: fold the stored document (proj_doc.h) and write it
 * back with its indexes. Returns an LMDB code, or PROJ_LMDB_REFUSED with *why
 * set (also for an event type of another aggregate).
 */
static int apply_doc(proj_lmdb_txn *lt, const ev_envelope *e, int is_run, const char **why)
{
    proj_lmdb *t = lt->t;
    MDB_txn *txn = lt->txn;
    MDB_dbi dbi = is_run ? t->runs : t->workflows;
    MDB_dbi flags = is_run ? t->runs_by_status : t->wf_by_enabled;
    MDB_val k = {e->aggregate_id.len, (void *)e->aggregate_id.ptr}, v;
    json_t *doc = NULL;
    kq_rm_doc old, nd;
    int rc, exists, out, ret = 0;
    char *text = NULL;
    size_t tlen = 0;

    if (ev_event_aggregate_type(e->payload_type) != e->aggregate_type) {
        *why = "event type does not belong to the envelope's aggregate type";
        return PROJ_LMDB_REFUSED;
    }
    if (e->aggregate_id.len == 0 || e->aggregate_id.len > 511)
        return MDB_BAD_VALSIZE;
    rc = mdb_get(txn, dbi, &k, &v);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    exists = rc == 0;
    if (exists) {
        json_error_t jerr;
        if (kq_rm_doc_decode(v.mv_data, v.mv_size, &old) != 0 ||
            (doc = json_loadb(old.text, old.text_len, 0, &jerr)) == NULL)
            return MDB_CORRUPTED;
    }
    out = is_run ? proj_doc_run(&doc, e, why) : proj_doc_workflow(&doc, e, why);
    if (out == PROJ_DOC_REFUSED) {
        ret = PROJ_LMDB_REFUSED;
        goto done;
    }
    if (out < 0) {
        ret = ENOMEM;
        goto done;
    }
    if (out == PROJ_DOC_SKIP)
        goto done;
    if (exists && (ret = put_flag_index(txn, flags, old.flag, e->aggregate_id.ptr,
                                        e->aggregate_id.len, 1)) != 0)
        goto done;
    if (out == PROJ_DOC_DELETED) {
        ret = mdb_del(txn, dbi, &k, NULL);
        goto done;
    }
    nd.version = e->version;
    nd.flag = (uint8_t)(is_run ? proj_doc_run_status(doc) : proj_doc_workflow_enabled(doc));
    if ((text = proj_doc_dump(doc, &tlen)) == NULL || tlen > UINT32_MAX ||
        grow(t, KQ_RM_DOC_HDR + tlen) != 0) {
        ret = ENOMEM;
        goto done;
    }
    nd.text = text;
    nd.text_len = (uint32_t)tlen;
    kq_rm_doc_encode(&nd, t->buf);
    v.mv_data = t->buf;
    v.mv_size = KQ_RM_DOC_HDR + tlen;
    if ((ret = mdb_put(txn, dbi, &k, &v, 0)) != 0 ||
        (ret = put_flag_index(txn, flags, nd.flag, e->aggregate_id.ptr, e->aggregate_id.len, 0)) !=
            0)
        goto done;
    if (is_run && e->payload_type == EV_RUN_STARTED) {
        const ev_str *wf = &e->payload.run_started.workflow_id;
        uint8_t kb[512];
        int n = kq_rm_run_wf_key(wf->ptr, wf->len, e->aggregate_id.ptr, e->aggregate_id.len, kb,
                                 sizeof kb);
        MDB_val ik, iv = {0, ""};
        if (n < 0) {
            ret = MDB_BAD_VALSIZE;
            goto done;
        }
        ik.mv_data = kb;
        ik.mv_size = (size_t)n;
        ret = mdb_put(txn, t->runs_by_wf, &ik, &iv, 0);
    }
done:
    free(text);
    json_decref(doc);
    return ret;
}

int proj_lmdb_workflow_apply(proj_lmdb_txn *lt, const ev_envelope *e, const char **why)
{
    return apply_doc(lt, e, 0, why);
}

int proj_lmdb_run_apply(proj_lmdb_txn *lt, const ev_envelope *e, const char **why)
{
    return apply_doc(lt, e, 1, why);
}

static int apply_txn(proj_lmdb *t, const proj_batch *b, proj_dead_letter_fn dead_letter,
                     void *dlarg, char *errstr, size_t errlen)
{
    MDB_txn *txn = NULL;
    MDB_cursor *vc = NULL, *rcur = NULL; /* versions, resources */
    proj_lmdb_txn lt = {t, NULL, NULL};
    const proj_aggregate *ag;
    int rc, ret = 0;

    if ((rc = mdb_txn_begin(t->env, NULL, 0, &txn)) != 0)
        return lerr(errstr, errlen, rc, "begin");
    if ((rc = mdb_cursor_open(txn, t->versions, &vc)) != 0 ||
        (rc = mdb_cursor_open(txn, t->resources, &rcur)) != 0) {
        ret = lerr(errstr, errlen, rc, "cursor");
        goto fail;
    }
    for (size_t i = 0; i < b->n; i++) {
        const proj_event *ev = &b->ev[i];
        const ev_envelope *e = &ev->env;
        uint8_t vk[512];
        MDB_val k, v;
        int64_t last = 0;
        const char *why = NULL;
        char reason[160];
        int n, known = 0;

        if (!ev->decoded)
            continue;
        n = kq_rm_prefixed_key((uint8_t)e->aggregate_type, e->aggregate_id.ptr, e->aggregate_id.len,
                               vk, sizeof vk);
        if (n < 0) {
            why = "aggregate id too long for the read model";
        } else {
            k.mv_data = vk;
            k.mv_size = (size_t)n;
            rc = mdb_cursor_get(vc, &k, &v, MDB_SET);
            if (rc == 0 && v.mv_size == sizeof last) {
                memcpy(&last, v.mv_data, sizeof last);
                known = 1;
            } else if (rc == 0) {
                ret = kq_seterr(errstr, errlen, KQ_ECORRUPT, "malformed versions entry");
                goto fail;
            } else if (rc != MDB_NOTFOUND) {
                ret = lerr(errstr, errlen, rc, "get version");
                goto fail;
            }
            if (e->version != last + 1) {
                snprintf(reason, sizeof reason,
                         "version %" PRId64 " is not the aggregate's last version %" PRId64 " + 1",
                         e->version, last);
                why = reason;
            } else if ((ag = proj_aggregate_of(e->aggregate_type))->lmdb_apply != NULL) {
                lt.txn = txn;
                lt.resources = rcur;
                rc = ag->lmdb_apply(&lt, e, &why);
                if (rc != 0 && rc != PROJ_LMDB_REFUSED) {
                    snprintf(reason, sizeof reason, "write %s", ag->name);
                    ret = lerr(errstr, errlen, rc, reason);
                    goto fail;
                }
            }
        }
        if (why != NULL) {
            if (dead_letter(dlarg, ev, "lmdb", why) != 0) {
                ret = kq_seterr(errstr, errlen, KQ_EIO,
                                "dead letter of %s/%" PRId32 "/%" PRId64 " failed", ev->topic,
                                ev->partition, ev->offset);
                goto fail;
            }
            continue;
        }
        v.mv_data = (void *)&e->version;
        v.mv_size = sizeof e->version;
        /* The versions cursor still sits on this aggregate's entry (the
         * resource writes above use other databases): replace it in place. */
        if ((rc = mdb_cursor_put(vc, &k, &v, known ? MDB_CURRENT : 0)) != 0) {
            ret = lerr(errstr, errlen, rc, "put version");
            goto fail;
        }
        proj_failpoint("lmdb_after_put");
    }
    for (size_t i = 0; i < b->nnext; i++) {
        char key[512];
        int n = kq_rm_offset_key(b->next[i].topic, b->next[i].partition, key, sizeof key);
        MDB_val k, v;

        if (n < 0) {
            ret = kq_seterr(errstr, errlen, KQ_ERANGE, "topic name too long");
            goto fail;
        }
        k.mv_data = key;
        k.mv_size = (size_t)n;
        v.mv_data = (void *)&b->next[i].next_offset;
        v.mv_size = sizeof(int64_t);
        if ((rc = mdb_put(txn, t->offsets, &k, &v, 0)) != 0) {
            ret = lerr(errstr, errlen, rc, "put offset");
            goto fail;
        }
    }
    proj_failpoint("lmdb_before_commit");
    mdb_cursor_close(vc);
    mdb_cursor_close(rcur);
    vc = rcur = NULL;
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0) {
        ret = lerr(errstr, errlen, rc, "commit");
        goto fail;
    }
    proj_failpoint("lmdb_after_commit");
    if (t->nosync && !t->bulk && kq_time_mono_ms() - t->last_sync_ms >= SYNC_EVERY_MS) {
        if ((rc = mdb_env_sync(t->env, 1)) != 0)
            kq_log_warn("LMDB sync: %s", mdb_strerror(rc));
        t->last_sync_ms = kq_time_mono_ms();
    }
    return 0;
fail:
    if (vc)
        mdb_cursor_close(vc);
    if (rcur)
        mdb_cursor_close(rcur);
    if (txn)
        mdb_txn_abort(txn);
    return ret;
}

int proj_lmdb_apply(proj_lmdb *t, const proj_batch *b, proj_dead_letter_fn dead_letter, void *dlarg,
                    char *errstr, size_t errlen)
{
    int ret;

    if (t->lock_fd < 0)
        return apply_txn(t, b, dead_letter, dlarg, errstr, errlen);
    while (flock(t->lock_fd, LOCK_EX) != 0)
        if (errno != EINTR)
            return kq_seterr(errstr, errlen, KQ_EIO, "lock %s: %s", KQ_RM_LOCK_FILE,
                             strerror(errno));
    if (switched(t))
        ret = kq_seterr(errstr, errlen, KQ_ESWITCHED,
                        "the live read model was replaced (kcqrs-replay)");
    else
        ret = apply_txn(t, b, dead_letter, dlarg, errstr, errlen);
    flock(t->lock_fd, LOCK_UN);
    return ret;
}

void proj_lmdb_close(proj_lmdb *t)
{
    int rc;

    if (t == NULL)
        return;
    if (t->lock_fd >= 0)
        close(t->lock_fd);
    if ((rc = mdb_env_sync(t->env, 1)) != 0)
        kq_log_warn("LMDB sync on close: %s", mdb_strerror(rc));
    mdb_env_close(t->env);
    free(t->buf);
    free(t);
}

int proj_lmdb_target_load(void *t, proj_offset_fn cb, void *arg, char *errstr, size_t errlen)
{
    return proj_lmdb_load_offsets(t, cb, arg, errstr, errlen);
}

int proj_lmdb_target_apply(void *t, const proj_batch *b, proj_dead_letter_fn dl, void *dlarg,
                           char *errstr, size_t errlen)
{
    return proj_lmdb_apply(t, b, dl, dlarg, errstr, errlen);
}

void proj_lmdb_target_close(void *t)
{
    proj_lmdb_close(t);
}
