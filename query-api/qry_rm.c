/*
 * qry_rm.c — read-only LMDB read model; see qry_rm.h.
 */
#include "qry_rm.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ev_fb.h"
#include "kq_err.h"
#include "kq_json_in.h"
#include "kq_rm.h"
#include "qry_text.h"

struct qry_rm {
    pthread_mutex_t lock; /* serializes the lazy open */
    atomic_int open;
    char *dir;
    char *data_path;
    size_t map_size;
    MDB_env *env;
    MDB_dbi offsets, resources, by_status;
};

int qry_rm_new(const char *dir, size_t map_size, qry_rm **out)
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
    pthread_mutex_init(&rm->lock, NULL);
    *out = rm;
    return 0;
}

void qry_rm_free(qry_rm *rm)
{
    if (rm == NULL)
        return;
    if (rm->env)
        mdb_env_close(rm->env);
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
    return atomic_load(&rm->open);
}

int qry_rm_open(qry_rm *rm, char *errstr, size_t errlen)
{
    MDB_txn *txn = NULL;
    MDB_env *env = NULL;
    int rc = 0, mrc;

    if (atomic_load(&rm->open))
        return 0;
    pthread_mutex_lock(&rm->lock);
    if (atomic_load(&rm->open))
        goto out;
    if ((rc = kq_rm_env_open(rm->dir, rm->map_size, 0, &env, errstr, errlen)) != 0)
        goto out;
    if ((mrc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0) {
        rc = kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB %s: %s", rm->dir, mdb_strerror(mrc));
        goto out;
    }
    if ((mrc = mdb_dbi_open(txn, KQ_RM_DB_OFFSETS, 0, &rm->offsets)) != 0 ||
        (mrc = mdb_dbi_open(txn, KQ_RM_DB_RESOURCES, 0, &rm->resources)) != 0 ||
        (mrc = mdb_dbi_open(txn, KQ_RM_DB_RES_BY_STATUS, 0, &rm->by_status)) != 0) {
        rc = mrc == MDB_NOTFOUND
                 ? kq_seterr(errstr, errlen, KQ_ENOTFOUND, "read model in %s not initialised yet",
                             rm->dir)
                 : kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB %s: %s", rm->dir, mdb_strerror(mrc));
        goto out;
    }
    mdb_txn_commit(txn); /* keeps the database handles */
    txn = NULL;
    rm->env = env;
    env = NULL;
    atomic_store(&rm->open, 1);
out:
    if (txn)
        mdb_txn_abort(txn);
    if (env)
        mdb_env_close(env);
    pthread_mutex_unlock(&rm->lock);
    return rc;
}

static int begin(qry_rm *rm, MDB_txn **txn, char *errstr, size_t errlen)
{
    int rc = qry_rm_open(rm, errstr, errlen), mrc;

    if (rc != 0)
        return rc;
    if ((mrc = mdb_txn_begin(rm->env, NULL, MDB_RDONLY, txn)) != 0)
        return kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB read: %s", mdb_strerror(mrc));
    return 0;
}

json_t *qry_rm_resource_json(const char *id, size_t idlen, const void *rec, size_t reclen)
{
    kq_rm_resource r;
    char c[QRY_TIME_MAX], u[QRY_TIME_MAX];

    if (kq_rm_resource_decode(rec, reclen, &r) != 0)
        return NULL;
    qry_time_format(r.created_at_us, c);
    qry_time_format(r.updated_at_us, u);
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
    char c[QRY_TIME_MAX], u[QRY_TIME_MAX], *out;
    size_t o = 0;
    int n;

    if (kq_rm_resource_decode(rec, reclen, &r) != 0 || !ev_fb_utf8_valid(id, idlen) ||
        !ev_fb_utf8_valid(r.name, r.name_len) ||
        !ev_fb_utf8_valid(r.description, r.description_len))
        return NULL;
    qry_time_format(r.created_at_us, c);
    qry_time_format(r.updated_at_us, u);
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

int qry_rm_get_text(qry_rm *rm, const char *id, char **out, size_t *len, int64_t *version,
                    char *errstr, size_t errlen)
{
    MDB_txn *txn = NULL;
    MDB_val k, v;
    kq_rm_resource r;
    int rc, mrc;

    *out = NULL;
    if ((rc = begin(rm, &txn, errstr, errlen)) != 0)
        return rc;
    k.mv_data = (void *)id;
    k.mv_size = strlen(id);
    mrc = mdb_get(txn, rm->resources, &k, &v);
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

int qry_rm_list(qry_rm *rm, int by_status, uint8_t status, const char *after_id, int limit,
                json_t **items, int *more, char *errstr, size_t errlen)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v, rk, rv;
    uint8_t kbuf[80];
    json_t *arr = json_array();
    int rc, mrc, n = 0;
    MDB_cursor_op op;

    *items = NULL;
    *more = 0;
    if (arr == NULL)
        return KQ_ENOMEM;
    if ((rc = begin(rm, &txn, errstr, errlen)) != 0)
        goto out;
    if ((mrc = mdb_cursor_open(txn, by_status ? rm->by_status : rm->resources, &cur)) != 0) {
        rc = kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB cursor: %s", mdb_strerror(mrc));
        goto out;
    }
    /* Position at the first key >= (status, after_id) or (status) / after_id or the start. */
    if (by_status) {
        int kl = kq_rm_prefixed_key(status, after_id ? after_id : "",
                                    after_id ? strlen(after_id) : 0, kbuf, sizeof kbuf);
        if (kl < 0) {
            rc = kq_seterr(errstr, errlen, KQ_EINVAL, "id too long");
            goto out;
        }
        k.mv_data = kbuf;
        k.mv_size = (size_t)kl;
        op = MDB_SET_RANGE;
    } else if (after_id) {
        k.mv_data = (void *)after_id;
        k.mv_size = strlen(after_id);
        op = MDB_SET_RANGE;
    } else {
        op = MDB_FIRST;
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, op); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const char *id = k.mv_data;
        size_t idlen = k.mv_size;
        json_t *item;

        if (by_status) {
            if (k.mv_size < 2 || ((const uint8_t *)k.mv_data)[0] != status)
                break;
            id++;
            idlen--;
        }
        if (after_id && idlen == strlen(after_id) && memcmp(id, after_id, idlen) == 0)
            continue; /* the cursor's own item was on the previous page */
        if (n == limit) {
            *more = 1;
            break;
        }
        if (by_status) {
            rk.mv_data = (void *)id;
            rk.mv_size = idlen;
            if ((mrc = mdb_get(txn, rm->resources, &rk, &rv)) != 0) {
                /* the index always matches the table inside one transaction */
                rc =
                    kq_seterr(errstr, errlen, KQ_ECORRUPT, "status index names a missing resource");
                goto out;
            }
        } else {
            rv = v;
        }
        if ((item = qry_rm_resource_json(id, idlen, rv.mv_data, rv.mv_size)) == NULL) {
            rc = kq_seterr(errstr, errlen, KQ_ECORRUPT, "a resource record does not decode");
            goto out;
        }
        json_array_append_new(arr, item);
        n++;
    }
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

int qry_rm_next_offset(qry_rm *rm, const char *topic, int32_t partition, int64_t *next,
                       char *errstr, size_t errlen)
{
    MDB_txn *txn = NULL;
    MDB_val k, v;
    char key[320];
    int kl, rc, mrc;

    *next = 0;
    if ((kl = kq_rm_offset_key(topic, partition, key, sizeof key)) < 0)
        return kq_seterr(errstr, errlen, KQ_ERANGE, "topic name too long");
    if ((rc = begin(rm, &txn, errstr, errlen)) != 0)
        return rc;
    k.mv_data = key;
    k.mv_size = (size_t)kl;
    mrc = mdb_get(txn, rm->offsets, &k, &v);
    if (mrc == 0 && v.mv_size == sizeof(int64_t))
        memcpy(next, v.mv_data, sizeof(int64_t));
    else if (mrc == 0)
        rc = kq_seterr(errstr, errlen, KQ_ECORRUPT, "offset of %s is not 8 bytes", key);
    else if (mrc != MDB_NOTFOUND)
        rc = kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB get: %s", mdb_strerror(mrc));
    mdb_txn_abort(txn);
    return rc;
}

int qry_rm_offsets(qry_rm *rm, json_t **out, char *errstr, size_t errlen)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    json_t *obj = json_object();
    int rc, mrc;

    *out = NULL;
    if (obj == NULL)
        return KQ_ENOMEM;
    if ((rc = begin(rm, &txn, errstr, errlen)) != 0)
        goto out;
    if ((mrc = mdb_cursor_open(txn, rm->offsets, &cur)) != 0) {
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
