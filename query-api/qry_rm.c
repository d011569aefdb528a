/*
 * qry_rm.c — read-only LMDB read model; see qry_rm.h.
 */
#include "qry_rm.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ev_fb.h"
#include "kq_err.h"
#include "kq_json_in.h"
#include "kq_log.h"
#include "kq_rm.h"
#include "kq_time.h"
#include "qry_text.h"

struct qry_rm_view {
    qry_rm *rm;
    qry_rm_view *next; /* rm->views: every view ever made, freed by qry_rm_free */
    atomic_int refs;   /* 1 while current, plus one per reader */
    int closed;        /* env closed (guarded by rm->lock) */
    MDB_env *env;
    MDB_dbi offsets, resources, by_status;
    MDB_dbi docs[2];     /* QRY_DOC_WORKFLOW: workflows, QRY_DOC_RUN: runs */
    MDB_dbi doc_flag[2]; /* workflows_by_enabled, runs_by_status */
    MDB_dbi runs_by_wf;
    int have_docs; /* 0: a model made before workflows and runs (no such databases) */
    dev_t dev;
    ino_t ino;
};

struct qry_rm {
    pthread_mutex_t lock; /* opening and switching views, closing retired ones */
    _Atomic(qry_rm_view *) cur;
    atomic_llong next_check_ms;
    atomic_ullong switches;
    int strict;
    char *dir;
    char *data_path;
    size_t map_size;
    qry_rm_view *views; /* guarded by lock */
    ino_t warned_ino;   /* the replacement we already warned about (guarded by lock) */
};

static int64_t coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int qry_rm_new(const char *dir, size_t map_size, int strict, qry_rm **out)
{
    qry_rm *rm = calloc(1, sizeof *rm);
    size_t n = strlen(dir) + sizeof "/data.mdb";

    *out = NULL;
    if (rm == NULL)
        return KQ_ENOMEM;
    rm->dir = strdup(dir);
    rm->data_path = malloc(n);
    if (rm->dir == NULL || rm->data_path == NULL) {
        free(rm->dir);
        free(rm->data_path);
        free(rm);
        return KQ_ENOMEM;
    }
    snprintf(rm->data_path, n, "%s/data.mdb", dir);
    rm->map_size = map_size;
    rm->strict = strict;
    atomic_init(&rm->cur, NULL);
    atomic_init(&rm->next_check_ms, 0);
    atomic_init(&rm->switches, 0);
    pthread_mutex_init(&rm->lock, NULL);
    *out = rm;
    return 0;
}

void qry_rm_free(qry_rm *rm)
{
    qry_rm_view *v, *next;

    if (rm == NULL)
        return;
    for (v = rm->views; v; v = next) {
        next = v->next;
        if (!v->closed)
            mdb_env_close(v->env);
        free(v);
    }
    pthread_mutex_destroy(&rm->lock);
    free(rm->dir);
    free(rm->data_path);
    free(rm);
}

const char *qry_rm_data_path(const qry_rm *rm)
{
    return rm->data_path;
}

int qry_rm_is_open(qry_rm *rm)
{
    return atomic_load(&rm->cur) != NULL;
}

uint64_t qry_rm_switches(qry_rm *rm)
{
    return atomic_load(&rm->switches);
}

void qry_rm_release(qry_rm_view *v)
{
    qry_rm *rm;

    if (v == NULL || atomic_fetch_sub(&v->refs, 1) != 1)
        return;
    /* Last reference of a retired view (the current one always holds its own). A reader
     * that raced us may have incremented and decremented again: whoever gets here with
     * refs at 0 and the env still open closes it, once. */
    rm = v->rm;
    pthread_mutex_lock(&rm->lock);
    if (!v->closed && atomic_load(&v->refs) == 0 && atomic_load(&rm->cur) != v) {
        mdb_env_close(v->env);
        v->env = NULL;
        v->closed = 1;
    }
    pthread_mutex_unlock(&rm->lock);
}

/* Open the model now at rm->dir as a new view (not yet current). Under rm->lock. */
static int view_open(qry_rm *rm, qry_rm_view **out, char *errstr, size_t errlen)
{
    qry_rm_view *v = calloc(1, sizeof *v);
    MDB_txn *txn = NULL;
    struct stat st;
    char fddir[64];
    int rc = 0, mrc, fd = -1, dfd = -1;

    *out = NULL;
    if (v == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    v->rm = rm;
    /* LMDB opens <dir>/lock.mdb and <dir>/data.mdb by name, one after the other: were the
     * directory swapped in between, they would belong to two different models. Through an
     * open descriptor of the directory both come from the same one. */
    if ((dfd = open(rm->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rc = errno == ENOENT
                 ? kq_seterr(errstr, errlen, KQ_ENOTFOUND, "no read model in %s yet", rm->dir)
                 : kq_seterr(errstr, errlen, KQ_ELMDB, "open %s: %s", rm->dir, strerror(errno));
        goto out;
    }
    snprintf(fddir, sizeof fddir, "/proc/self/fd/%d", dfd);
    if ((rc = kq_rm_env_open(fddir, rm->map_size, 0, &v->env, errstr, errlen)) != 0)
        goto out;
    /* the identity of the file actually opened (the path may have moved since the stat) */
    if (mdb_env_get_fd(v->env, &fd) != 0 || fstat(fd, &st) != 0) {
        rc = kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB %s: fstat failed", rm->dir);
        goto out;
    }
    v->dev = st.st_dev;
    v->ino = st.st_ino;
    if ((mrc = mdb_txn_begin(v->env, NULL, MDB_RDONLY, &txn)) != 0) {
        rc = kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB %s: %s", rm->dir, mdb_strerror(mrc));
        goto out;
    }
    if ((mrc = mdb_dbi_open(txn, KQ_RM_DB_OFFSETS, 0, &v->offsets)) != 0 ||
        (mrc = mdb_dbi_open(txn, KQ_RM_DB_RESOURCES, 0, &v->resources)) != 0 ||
        (mrc = mdb_dbi_open(txn, KQ_RM_DB_RES_BY_STATUS, 0, &v->by_status)) != 0) {
        rc = mrc == MDB_NOTFOUND
                 ? kq_seterr(errstr, errlen, KQ_ENOTFOUND, "read model in %s not initialised yet",
                             rm->dir)
                 : kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB %s: %s", rm->dir, mdb_strerror(mrc));
        goto out;
    }
    /* workflows and runs: a model made by an older projector lacks them (read as empty) */
    v->have_docs = mdb_dbi_open(txn, KQ_RM_DB_WORKFLOWS, 0, &v->docs[0]) == 0 &&
                   mdb_dbi_open(txn, KQ_RM_DB_WF_BY_ENABLED, 0, &v->doc_flag[0]) == 0 &&
                   mdb_dbi_open(txn, KQ_RM_DB_RUNS, 0, &v->docs[1]) == 0 &&
                   mdb_dbi_open(txn, KQ_RM_DB_RUNS_BY_STATUS, 0, &v->doc_flag[1]) == 0 &&
                   mdb_dbi_open(txn, KQ_RM_DB_RUNS_BY_WF, 0, &v->runs_by_wf) == 0;
    mdb_txn_commit(txn); /* keeps the database handles */
    txn = NULL;
    atomic_init(&v->refs, 1);
    *out = v;
    v = NULL;
out:
    if (dfd >= 0)
        close(dfd); /* LMDB keeps its own descriptors of both files */
    if (txn)
        mdb_txn_abort(txn);
    if (v) {
        if (v->env)
            mdb_env_close(v->env);
        free(v);
    }
    return rc;
}

/*
 * Is the model at the path still the current view's? If not, open the new one and make
 * it current. Runs on one thread at a time; returns the view to retire (its base
 * reference still to drop, outside the lock) in *retire. Errors only matter when no view
 * is current.
 */
static int refresh(qry_rm *rm, int64_t now, qry_rm_view **retire, char *errstr, size_t errlen)
{
    qry_rm_view *cur, *v = NULL;
    struct stat st;
    int rc = 0;

    *retire = NULL;
    cur = atomic_load(&rm->cur);
    if (cur == NULL)
        pthread_mutex_lock(&rm->lock); /* nothing to serve meanwhile: wait for the opener */
    else if (pthread_mutex_trylock(&rm->lock) != 0)
        return 0; /* another thread is checking; serve the current view */
    cur = atomic_load(&rm->cur);
    if (cur != NULL && now < atomic_load(&rm->next_check_ms))
        goto out;
    atomic_store(&rm->next_check_ms, now + QRY_RM_CHECK_MS);
    if (stat(rm->data_path, &st) != 0) {
        if (cur != NULL && rm->strict) {
            atomic_store(&rm->cur, NULL);
            *retire = cur;
        }
        if (cur == NULL || rm->strict)
            rc = kq_seterr(errstr, errlen, KQ_ENOTFOUND, "no read model in %s", rm->dir);
        goto out;
    }
    if (cur != NULL && cur->dev == st.st_dev && cur->ino == st.st_ino)
        goto out;
    /* A retired view of that very file still open (swapped back): take it up again rather
     * than open the file a second time. LMDB must never have one environment open twice in
     * a process: closing either would clear the other's reader slots (MDB_BAD_RSLOT). */
    for (v = rm->views; v != NULL; v = v->next)
        if (!v->closed && v->dev == st.st_dev && v->ino == st.st_ino)
            break;
    if (v != NULL) {
        atomic_fetch_add(&v->refs, 1);
        atomic_store(&rm->cur, v);
        if (cur != NULL) {
            atomic_fetch_add(&rm->switches, 1);
            *retire = cur;
        }
        goto out;
    }
    if ((rc = view_open(rm, &v, errstr, errlen)) != 0) {
        if (cur != NULL) {
            if (rm->warned_ino != st.st_ino) /* once per replacement, not every check */
                kq_log_warn("read model %s was replaced but cannot be opened yet (%s); serving "
                            "the previous one",
                            rm->dir, errstr);
            rm->warned_ino = st.st_ino;
            rc = 0;
        }
        goto out;
    }
    if (cur != NULL && cur->dev == v->dev && cur->ino == v->ino) {
        /* moved back and forth between the stat and the open: the same files */
        mdb_env_close(v->env);
        free(v);
        goto out;
    }
    v->next = rm->views;
    rm->views = v;
    atomic_store(&rm->cur, v);
    if (cur != NULL) {
        atomic_fetch_add(&rm->switches, 1);
        kq_log_info("read model %s was replaced: serving the new one", rm->dir);
        *retire = cur;
    }
out:
    pthread_mutex_unlock(&rm->lock);
    return rc;
}

int qry_rm_acquire(qry_rm *rm, qry_rm_view **out, char *errstr, size_t errlen)
{
    int64_t now = coarse_ms();
    qry_rm_view *v, *retire = NULL;
    int rc = 0;

    *out = NULL;
    if (atomic_load(&rm->cur) == NULL || now >= atomic_load(&rm->next_check_ms)) {
        rc = refresh(rm, now, &retire, errstr, errlen);
        qry_rm_release(retire); /* the old current view's own reference */
        if (rc != 0)
            return rc;
    }
    for (;;) {
        v = atomic_load(&rm->cur);
        if (v == NULL)
            return kq_seterr(errstr, errlen, KQ_ENOTFOUND, "no read model in %s", rm->dir);
        atomic_fetch_add(&v->refs, 1);
        if (atomic_load(&rm->cur) == v)
            break;
        qry_rm_release(v); /* replaced meanwhile: take the new one */
    }
    *out = v;
    return 0;
}

qry_rm *qry_rm_view_owner(const qry_rm_view *v)
{
    return v->rm;
}

int qry_rm_open(qry_rm *rm, char *errstr, size_t errlen)
{
    qry_rm_view *v = NULL;
    int rc = qry_rm_acquire(rm, &v, errstr, errlen);

    qry_rm_release(v);
    return rc;
}

static int begin(qry_rm_view *v, MDB_txn **txn, char *errstr, size_t errlen)
{
    int mrc = mdb_txn_begin(v->env, NULL, MDB_RDONLY, txn);

    if (mrc != 0)
        return kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB read: %s", mdb_strerror(mrc));
    return 0;
}

json_t *qry_rm_resource_json(const char *id, size_t idlen, const void *rec, size_t reclen)
{
    kq_rm_resource r;
    char c[KQ_TIME_MAX], u[KQ_TIME_MAX];

    if (kq_rm_resource_decode(rec, reclen, &r) != 0)
        return NULL;
    kq_time_format(r.created_at_us, c);
    kq_time_format(r.updated_at_us, u);
    return json_pack("{s:s%, s:s%, s:s%, s:s, s:I, s:s, s:s}", "id", id, idlen, "name", r.name,
                     (size_t)r.name_len, "description", r.description, (size_t)r.description_len,
                     "status", qry_status_name(r.status), "version", (json_int_t)r.version,
                     "created_at", c, "updated_at", u);
}

/* Append s[0..n) as a JSON string, quotes included, at out + *o (room for
 * 6 * n + 2 bytes). The caller has checked that s is valid UTF-8. */
static void json_str(char *out, size_t *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t k = *o;

    out[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            out[k++] = '\\';
            out[k++] = (char)ch;
        } else if (ch < 0x20) {
            out[k++] = '\\';
            switch (ch) {
            case '\n':
                out[k++] = 'n';
                break;
            case '\r':
                out[k++] = 'r';
                break;
            case '\t':
                out[k++] = 't';
                break;
            case '\b':
                out[k++] = 'b';
                break;
            case '\f':
                out[k++] = 'f';
                break;
            default:
                out[k++] = 'u';
                out[k++] = '0';
                out[k++] = '0';
                out[k++] = hex[ch >> 4];
                out[k++] = hex[ch & 15];
            }
        } else {
            out[k++] = (char)ch;
        }
    }
    out[k++] = '"';
    *o = k;
}

char *qry_rm_resource_text(const char *id, size_t idlen, const void *rec, size_t reclen,
                           size_t *len)
{
    kq_rm_resource r;
    char c[KQ_TIME_MAX], u[KQ_TIME_MAX], *out;
    size_t o = 0;
    int n;

    if (kq_rm_resource_decode(rec, reclen, &r) != 0 || !ev_fb_utf8_valid(id, idlen) ||
        !ev_fb_utf8_valid(r.name, r.name_len) ||
        !ev_fb_utf8_valid(r.description, r.description_len))
        return NULL;
    kq_time_format(r.created_at_us, c);
    kq_time_format(r.updated_at_us, u);
    if ((out = malloc(6 * ((size_t)idlen + r.name_len + r.description_len) + 256)) == NULL)
        return NULL;
    memcpy(out + o, "{\"id\":", 6);
    o += 6;
    json_str(out, &o, id, idlen);
    memcpy(out + o, ",\"name\":", 8);
    o += 8;
    json_str(out, &o, r.name, r.name_len);
    memcpy(out + o, ",\"description\":", 15);
    o += 15;
    json_str(out, &o, r.description, r.description_len);
    n = snprintf(out + o, 200,
                 ",\"status\":\"%s\",\"version\":%" PRId64
                 ",\"created_at\":\"%s\",\"updated_at\":\"%s\"}",
                 qry_status_name(r.status), r.version, c, u);
    *len = o + (size_t)n;
    return out;
}

int qry_rm_get_text(qry_rm_view *vw, const char *id, char **out, size_t *len, int64_t *version,
                    char *errstr, size_t errlen)
{
    MDB_txn *txn = NULL;
    MDB_val k, v;
    kq_rm_resource r;
    int rc, mrc;

    *out = NULL;
    if ((rc = begin(vw, &txn, errstr, errlen)) != 0)
        return rc;
    k.mv_data = (void *)id;
    k.mv_size = strlen(id);
    mrc = mdb_get(txn, vw->resources, &k, &v);
    if (mrc == MDB_NOTFOUND) {
        rc = KQ_ENOTFOUND;
    } else if (mrc != 0) {
        rc = kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB get: %s", mdb_strerror(mrc));
    } else if (kq_rm_resource_decode(v.mv_data, v.mv_size, &r) != 0 ||
               (*out = qry_rm_resource_text(id, k.mv_size, v.mv_data, v.mv_size, len)) == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_ECORRUPT, "resource '%s': record does not decode", id);
    } else {
        *version = r.version;
    }
    mdb_txn_abort(txn);
    return rc;
}

/*
 * One page of a listing: walk `index` from prefix+after_id while its keys
 * start with `prefix`; the rest of a key is an id whose record is in `table`
 * (the key's own value when index == table). The cursor's own item
 * (after_id) is passed over; `keep` (may be NULL) filters on the record;
 * after `limit` items *more says whether another would follow; `append`
 * adds an item to *items (0, or a KQ_E* with the sentence it gives).
 */
typedef struct page_walk {
    MDB_dbi index, table;
    const uint8_t *prefix;
    size_t plen;
    const char *after_id; /* NULL: from the start */
    int limit;
    int (*keep)(void *arg, const MDB_val *rec, char *errstr, size_t errlen); /* 1, 0, KQ_E* */
    int (*append)(void *arg, json_t *arr, const char *id, size_t idlen, const MDB_val *rec,
                  char *errstr, size_t errlen);
    void *arg;
    const char *missing; /* the sentence when the index names a missing record */
} page_walk;

static int page(qry_rm_view *vw, const page_walk *w, json_t **items, int *more, char *errstr,
                size_t errlen)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v, rv;
    uint8_t kbuf[512];
    size_t alen = w->after_id ? strlen(w->after_id) : 0;
    json_t *arr = json_array();
    int rc, mrc, n = 0;

    *items = NULL;
    *more = 0;
    if (arr == NULL)
        return KQ_ENOMEM;
    if (w->plen + alen > sizeof kbuf) {
        rc = kq_seterr(errstr, errlen, KQ_EINVAL, "id too long");
        goto out;
    }
    memcpy(kbuf, w->prefix, w->plen);
    if (alen)
        memcpy(kbuf + w->plen, w->after_id, alen);
    if ((rc = begin(vw, &txn, errstr, errlen)) != 0)
        goto out;
    if ((mrc = mdb_cursor_open(txn, w->index, &cur)) != 0) {
        rc = kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB cursor: %s", mdb_strerror(mrc));
        goto out;
    }
    k.mv_data = kbuf;
    k.mv_size = w->plen + alen;
    for (mrc = mdb_cursor_get(cur, &k, &v, k.mv_size ? MDB_SET_RANGE : MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const char *id = (const char *)k.mv_data + w->plen;
        size_t idlen;

        if (k.mv_size <= w->plen || memcmp(k.mv_data, w->prefix, w->plen) != 0)
            break;
        idlen = k.mv_size - w->plen;
        if (alen && idlen == alen && memcmp(id, w->after_id, idlen) == 0)
            continue;                          /* the cursor's own item was on the previous page */
        if (w->keep != NULL || n < w->limit) { /* the record is needed */
            if (w->index != w->table) {
                MDB_val rk = {idlen, (void *)id};
                if ((mrc = mdb_get(txn, w->table, &rk, &rv)) != 0) {
                    /* the indexes always match their table inside one transaction */
                    rc = kq_seterr(errstr, errlen, KQ_ECORRUPT, "%s", w->missing);
                    goto out;
                }
            } else {
                rv = v;
            }
        }
        if (w->keep != NULL && (rc = w->keep(w->arg, &rv, errstr, errlen)) <= 0) {
            if (rc < 0)
                goto out;
            continue;
        }
        if (n == w->limit) {
            *more = 1;
            break;
        }
        if ((rc = w->append(w->arg, arr, id, idlen, &rv, errstr, errlen)) != 0)
            goto out;
        n++;
    }
    rc = 0;
    if (mrc != 0 && mrc != MDB_NOTFOUND) {
        rc = kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB cursor: %s", mdb_strerror(mrc));
        goto out;
    }
    *items = arr;
    arr = NULL;
out:
    if (cur)
        mdb_cursor_close(cur);
    if (txn)
        mdb_txn_abort(txn);
    json_decref(arr);
    return rc;
}

static int resource_append(void *arg, json_t *arr, const char *id, size_t idlen, const MDB_val *rec,
                           char *errstr, size_t errlen)
{
    json_t *item = qry_rm_resource_json(id, idlen, rec->mv_data, rec->mv_size);

    (void)arg;
    if (item == NULL)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "a resource record does not decode");
    json_array_append_new(arr, item);
    return 0;
}

int qry_rm_list(qry_rm_view *vw, int by_status, uint8_t status, const char *after_id, int limit,
                json_t **items, int *more, char *errstr, size_t errlen)
{
    uint8_t prefix[8];
    page_walk w = {.index = by_status ? vw->by_status : vw->resources,
                   .table = vw->resources,
                   .prefix = prefix,
                   .after_id = after_id,
                   .limit = limit,
                   .append = resource_append,
                   .missing = "status index names a missing resource"};

    if (by_status)
        w.plen = (size_t)kq_rm_prefixed_key(status, "", 0, prefix, sizeof prefix);
    return page(vw, &w, items, more, errstr, errlen);
}

int qry_rm_next_offset(qry_rm_view *vw, const char *topic, int32_t partition, int64_t *next,
                       char *errstr, size_t errlen)
{
    MDB_txn *txn = NULL;
    MDB_val k, v;
    char key[320];
    int kl, rc, mrc;

    *next = 0;
    if ((kl = kq_rm_offset_key(topic, partition, key, sizeof key)) < 0)
        return kq_seterr(errstr, errlen, KQ_ERANGE, "topic name too long");
    if ((rc = begin(vw, &txn, errstr, errlen)) != 0)
        return rc;
    k.mv_data = key;
    k.mv_size = (size_t)kl;
    mrc = mdb_get(txn, vw->offsets, &k, &v);
    if (mrc == 0 && v.mv_size == sizeof(int64_t))
        memcpy(next, v.mv_data, sizeof(int64_t));
    else if (mrc == 0)
        rc = kq_seterr(errstr, errlen, KQ_ECORRUPT, "offset of %s is not 8 bytes", key);
    else if (mrc != MDB_NOTFOUND)
        rc = kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB get: %s", mdb_strerror(mrc));
    mdb_txn_abort(txn);
    return rc;
}

int qry_rm_offsets(qry_rm_view *vw, json_t **out, char *errstr, size_t errlen)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    json_t *obj = json_object();
    int rc, mrc;

    *out = NULL;
    if (obj == NULL)
        return KQ_ENOMEM;
    if ((rc = begin(vw, &txn, errstr, errlen)) != 0)
        goto out;
    if ((mrc = mdb_cursor_open(txn, vw->offsets, &cur)) != 0) {
        rc = kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB cursor: %s", mdb_strerror(mrc));
        goto out;
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        char key[320];
        int64_t next;
        if (k.mv_size >= sizeof key || v.mv_size != sizeof next)
            continue;
        memcpy(key, k.mv_data, k.mv_size);
        key[k.mv_size] = '\0';
        memcpy(&next, v.mv_data, sizeof next);
        json_object_set_new(obj, key, json_integer(next));
    }
    *out = obj;
    obj = NULL;
out:
    if (cur)
        mdb_cursor_close(cur);
    if (txn)
        mdb_txn_abort(txn);
    json_decref(obj);
    return rc;
}

int qry_rm_doc_get(qry_rm_view *vw, qry_doc_kind kind, const char *id, char **out, size_t *len,
                   int64_t *version, char *errstr, size_t errlen)
{
    MDB_txn *txn = NULL;
    MDB_val k, v;
    kq_rm_doc d;
    int rc, mrc;

    *out = NULL;
    if (!vw->have_docs)
        return KQ_ENOTFOUND;
    if ((rc = begin(vw, &txn, errstr, errlen)) != 0)
        return rc;
    k.mv_data = (void *)id;
    k.mv_size = strlen(id);
    mrc = mdb_get(txn, vw->docs[kind], &k, &v);
    if (mrc == MDB_NOTFOUND) {
        rc = KQ_ENOTFOUND;
    } else if (mrc != 0) {
        rc = kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB get: %s", mdb_strerror(mrc));
    } else if (kq_rm_doc_decode(v.mv_data, v.mv_size, &d) != 0) {
        rc = kq_seterr(errstr, errlen, KQ_ECORRUPT, "'%s': record does not decode", id);
    } else if ((*out = malloc((size_t)d.text_len + 1)) == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    } else {
        memcpy(*out, d.text, d.text_len);
        (*out)[d.text_len] = '\0';
        *len = d.text_len;
        *version = d.version;
    }
    mdb_txn_abort(txn);
    return rc;
}

/* Append the document of record `v` to arr; 0 or KQ_ECORRUPT. */
static int doc_append(void *arg, json_t *arr, const char *id, size_t idlen, const MDB_val *v,
                      char *errstr, size_t errlen)
{
    kq_rm_doc d;
    json_error_t jerr;
    json_t *item;

    (void)arg;
    (void)id;
    (void)idlen;
    if (kq_rm_doc_decode(v->mv_data, v->mv_size, &d) != 0 ||
        (item = json_loadb(d.text, d.text_len, 0, &jerr)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "a document record does not decode");
    if (json_array_append_new(arr, item) != 0)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "a document record does not decode");
    return 0;
}

/* Runs of one workflow and one status: the status from the record's flag. */
static int run_flag_keep(void *arg, const MDB_val *rec, char *errstr, size_t errlen)
{
    kq_rm_doc d;

    if (kq_rm_doc_decode(rec->mv_data, rec->mv_size, &d) != 0)
        return kq_seterr(errstr, errlen, KQ_ECORRUPT, "a run record does not decode");
    return d.flag == *(const uint8_t *)arg;
}

int qry_rm_doc_list(qry_rm_view *vw, qry_doc_kind kind, int flag, const char *workflow_id,
                    const char *after_id, int limit, json_t **items, int *more, char *errstr,
                    size_t errlen)
{
    uint8_t prefix[300], fl = (uint8_t)flag;
    page_walk w = {.table = vw->docs[kind],
                   .prefix = prefix,
                   .after_id = after_id,
                   .limit = limit,
                   .append = doc_append,
                   .arg = &fl,
                   .missing = "an index names a missing document"};
    int kl;

    if (!vw->have_docs) {
        *more = 0;
        return (*items = json_array()) != NULL ? 0 : KQ_ENOMEM;
    }
    /* the index walked: by workflow (runs), by flag, or the documents by id */
    if (kind == QRY_DOC_RUN && workflow_id != NULL) {
        w.index = vw->runs_by_wf;
        kl = kq_rm_run_wf_key(workflow_id, strlen(workflow_id), "", 0, prefix, sizeof prefix);
        if (flag >= 0)
            w.keep = run_flag_keep;
    } else if (flag >= 0) {
        w.index = vw->doc_flag[kind];
        kl = kq_rm_prefixed_key(fl, "", 0, prefix, sizeof prefix);
    } else {
        w.index = vw->docs[kind];
        kl = 0;
    }
    if (kl < 0 || (after_id != NULL && strlen(after_id) > 255)) {
        *items = NULL;
        *more = 0;
        return kq_seterr(errstr, errlen, KQ_EINVAL, "id too long");
    }
    w.plen = (size_t)kl;
    return page(vw, &w, items, more, errstr, errlen);
}
