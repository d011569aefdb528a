/*
 * kq_rm.c — the LMDB read model's record format; see kq_rm.h.
 *
 * A resource record: int64 version, created_at_us, updated_at_us; uint32
 * name_len, description_len; uint8 status; then name and description bytes.
 */
#include "kq_rm.h"
#include "kq_err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define RES_HDR (3 * 8 + 2 * 4 + 1)

size_t kq_rm_resource_size(const kq_rm_resource *r)
{
    return RES_HDR + (size_t)r->name_len + (size_t)r->description_len;
}

void kq_rm_resource_encode(const kq_rm_resource *r, uint8_t *out)
{
    memcpy(out, &r->version, 8);
    memcpy(out + 8, &r->created_at_us, 8);
    memcpy(out + 16, &r->updated_at_us, 8);
    memcpy(out + 24, &r->name_len, 4);
    memcpy(out + 28, &r->description_len, 4);
    out[32] = r->status;
    if (r->name_len)
        memcpy(out + RES_HDR, r->name, r->name_len);
    if (r->description_len)
        memcpy(out + RES_HDR + r->name_len, r->description, r->description_len);
}

int kq_rm_resource_decode(const void *val, size_t len, kq_rm_resource *out)
{
    const uint8_t *p = val;

    if (val == NULL || len < RES_HDR)
        return KQ_ECORRUPT;
    memcpy(&out->version, p, 8);
    memcpy(&out->created_at_us, p + 8, 8);
    memcpy(&out->updated_at_us, p + 16, 8);
    memcpy(&out->name_len, p + 24, 4);
    memcpy(&out->description_len, p + 28, 4);
    out->status = p[32];
    if ((uint64_t)RES_HDR + out->name_len + out->description_len != len || out->status > 2)
        return KQ_ECORRUPT;
    out->name = (const char *)p + RES_HDR;
    out->description = (const char *)p + RES_HDR + out->name_len;
    return 0;
}

void kq_rm_doc_encode(const kq_rm_doc *d, uint8_t *out)
{
    memcpy(out, &d->version, 8);
    out[8] = d->flag;
    if (d->text_len)
        memcpy(out + KQ_RM_DOC_HDR, d->text, d->text_len);
}

int kq_rm_doc_decode(const void *val, size_t len, kq_rm_doc *out)
{
    const uint8_t *p = val;

    if (val == NULL || len <= KQ_RM_DOC_HDR || len - KQ_RM_DOC_HDR > UINT32_MAX)
        return KQ_ECORRUPT;
    memcpy(&out->version, p, 8);
    out->flag = p[8];
    out->text = (const char *)p + KQ_RM_DOC_HDR;
    out->text_len = (uint32_t)(len - KQ_RM_DOC_HDR);
    if (out->text[0] != '{' || memchr(out->text, 0, out->text_len) != NULL)
        return KQ_ECORRUPT;
    return 0;
}

int kq_rm_run_wf_key(const char *wf, size_t wflen, const char *run, size_t runlen, uint8_t *buf,
                     size_t buflen)
{
    size_t n = 1 + wflen + runlen;

    if (wflen == 0 || wflen > 255 || n > buflen || n > 511)
        return KQ_ERANGE;
    buf[0] = (uint8_t)wflen;
    memcpy(buf + 1, wf, wflen);
    if (runlen)
        memcpy(buf + 1 + wflen, run, runlen);
    return (int)n;
}

int kq_rm_offset_key(const char *topic, int32_t partition, char *buf, size_t buflen)
{
    int n = snprintf(buf, buflen, "%s/%d", topic, (int)partition);

    if (n < 0 || (size_t)n >= buflen)
        return KQ_ERANGE;
    return n;
}

int kq_rm_prefixed_key(uint8_t prefix, const char *id, size_t len, uint8_t *buf, size_t buflen)
{
    if (len + 1 > buflen || len + 1 > 511) /* 511: LMDB's default maximum key size */
        return KQ_ERANGE;
    buf[0] = prefix;
    memcpy(buf + 1, id, len);
    return (int)(len + 1);
}

/* mkdir -p: every missing component of `dir`, mode 0700. */
static int mkdirs(const char *dir)
{
    char path[4096];
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(path, dir, n + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(path, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

int kq_rm_env_open(const char *dir, size_t map_size, int create, MDB_env **env, char *errstr,
                   size_t errlen)
{
    MDB_env *e = NULL;
    int rc;

    *env = NULL;
    if (create) {
        if (mkdirs(dir) != 0)
            return kq_seterr(errstr, errlen, KQ_ELMDB, "mkdir %s: %s", dir, strerror(errno));
    } else {
        struct stat st;
        char path[4096];

        if (snprintf(path, sizeof path, "%s/data.mdb", dir) >= (int)sizeof path)
            return kq_seterr(errstr, errlen, KQ_ERANGE, "path too long: %s", dir);
        if (stat(path, &st) != 0)
            return kq_seterr(errstr, errlen, KQ_ENOTFOUND, "no read model in %s yet", dir);
    }
    if ((rc = mdb_env_create(&e)) != 0 || (rc = mdb_env_set_maxdbs(e, KQ_RM_MAXDBS)) != 0 ||
        (rc = mdb_env_set_mapsize(e, map_size)) != 0 ||
        (rc = mdb_env_set_maxreaders(e, 1024)) != 0 || (rc = mdb_env_open(e, dir, 0, 0600)) != 0) {
        if (e)
            mdb_env_close(e);
        return kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB %s: %s", dir, mdb_strerror(rc));
    }
    *env = e;
    return 0;
}
