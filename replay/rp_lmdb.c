/*
 * rp_lmdb.c — the LMDB read model as a kcqrs-replay target (rp_target.h).
 *
 * Everything lives in $KCQRS_LMDB_DIR (lib/kq_rm.h names the entries):
 *   readmodel/               the live model (kcqrs-projector, kcqrs-query)
 *   readmodel.shadow/        the rebuild/verify shadow being built
 *   readmodel.retired/       the model the last switch replaced
 *   snapshots/NAME/          named point-in-time models; built in
 *                            snapshots/NAME.building/ and renamed into
 *                            place by shadow_close (a failed build leaves
 *                            an existing snapshot of that name alone)
 *   readmodel.lock           flock: each projector batch vs the switch
 *   readmodel.rebuild.lock   flock (LOCK_NB): one shadow at a time
 *
 * The shadow is written by the projector's own apply code (proj_lmdb), with
 * no periodic sync during the bulk pass (one mdb_env_sync in finish). The
 * switch exchanges readmodel.shadow and readmodel with
 * renameat2(RENAME_EXCHANGE) under the live lock (two renames where the file
 * system refuses the exchange), then the former live model becomes
 * readmodel.retired. The projector, at its next batch, finds
 * readmodel/data.mdb is no longer the file it has open (KQ_ESWITCHED),
 * reopens and continues from the former shadow's offsets.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>

#include "kq_err.h"
#include "kq_log.h"
#include "kq_rm.h"
#include "proj_lmdb.h"
#include "rp_target.h"
#include "rp_until.h"

#define PATH_LEN 4096

typedef struct rp_lmdb_shadow {
    const kq_config *cfg;
    size_t map;
    int lock_fd;          /* readmodel.rebuild.lock, held (LOCK_EX) */
    char dir[PATH_LEN];   /* where the shadow is built */
    char final[PATH_LEN]; /* named: snapshots/NAME ("" for the rebuild shadow) */
    char live[PATH_LEN];  /* readmodel */
    char retired[PATH_LEN];
} rp_lmdb_shadow;

static int path_of(char *out, const kq_config *cfg, const char *a, const char *b, char *errstr,
                   size_t errlen)
{
    int n = b ? snprintf(out, PATH_LEN, "%s/%s/%s", cfg->lmdb_dir, a, b)
              : snprintf(out, PATH_LEN, "%s/%s", cfg->lmdb_dir, a);

    if (n < 0 || n >= PATH_LEN)
        return kq_seterr(errstr, errlen, KQ_ERANGE, "KCQRS_LMDB_DIR too long");
    return 0;
}

/* mkdir -p, mode 0700. */
static int mkdirs(const char *dir, char *errstr, size_t errlen)
{
    char p[PATH_LEN];
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof p)
        return kq_seterr(errstr, errlen, KQ_ERANGE, "bad directory '%s'", dir);
    memcpy(p, dir, n + 1);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            return kq_seterr(errstr, errlen, KQ_EIO, "mkdir %s: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0700) != 0 && errno != EEXIST)
        return kq_seterr(errstr, errlen, KQ_EIO, "mkdir %s: %s", p, strerror(errno));
    return 0;
}

/* Remove an environment directory (its files, then itself); a missing one is fine. */
static int rm_env_dir(const char *dir, char *errstr, size_t errlen)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int ret = 0;

    if (d == NULL)
        return errno == ENOENT
                   ? 0
                   : kq_seterr(errstr, errlen, KQ_EIO, "open %s: %s", dir, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) != 0 && errno != ENOENT) {
            ret = kq_seterr(errstr, errlen, KQ_EIO, "remove %s/%s: %s", dir, e->d_name,
                            strerror(errno));
            break;
        }
    }
    closedir(d);
    if (ret == 0 && rmdir(dir) != 0 && errno != ENOENT)
        ret = kq_seterr(errstr, errlen, KQ_EIO, "rmdir %s: %s", dir, strerror(errno));
    return ret;
}

static int lock_file(const char *path, int nonblock, int *fd_out, char *errstr, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

    *fd_out = -1;
    if (fd < 0)
        return kq_seterr(errstr, errlen, KQ_EIO, "open %s: %s", path, strerror(errno));
    while (flock(fd, LOCK_EX | (nonblock ? LOCK_NB : 0)) != 0) {
        int e = errno;
        if (e == EINTR)
            continue;
        close(fd);
        if (e == EWOULDBLOCK)
            return kq_seterr(errstr, errlen, KQ_EBUSY,
                             "busy: another kcqrs-replay rebuild or verify holds %s", path);
        return kq_seterr(errstr, errlen, KQ_EIO, "lock %s: %s", path, strerror(e));
    }
    *fd_out = fd;
    return 0;
}

/* ------------------------------------------------------------ shadow */

static int shadow_create(const kq_config *cfg, const char *name, void **out, char *errstr,
                         size_t errlen)
{
    rp_lmdb_shadow *sh;
    char lock[PATH_LEN];
    int rc;

    *out = NULL;
    if (name != NULL && !rp_name_valid(name))
        return kq_seterr(errstr, errlen, KQ_EINVAL, "snapshot name '%s' is not [a-z0-9_]{1,32}",
                         name);
    if ((sh = calloc(1, sizeof *sh)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    sh->cfg = cfg;
    sh->map = (size_t)cfg->lmdb_map_mb << 20;
    sh->lock_fd = -1;
    if ((rc = path_of(lock, cfg, KQ_RM_REBUILD_LOCK_FILE, NULL, errstr, errlen)) != 0 ||
        (rc = path_of(sh->live, cfg, KQ_RM_SUBDIR, NULL, errstr, errlen)) != 0 ||
        (rc = path_of(sh->retired, cfg, KQ_RM_RETIRED_SUBDIR, NULL, errstr, errlen)) != 0)
        goto fail;
    if (name == NULL) {
        if ((rc = path_of(sh->dir, cfg, KQ_RM_SHADOW_SUBDIR, NULL, errstr, errlen)) != 0)
            goto fail;
    } else {
        char tmp[64];
        snprintf(tmp, sizeof tmp, "%s.building", name);
        if ((rc = path_of(sh->dir, cfg, KQ_RM_SNAPSHOTS_SUBDIR, tmp, errstr, errlen)) != 0 ||
            (rc = path_of(sh->final, cfg, KQ_RM_SNAPSHOTS_SUBDIR, name, errstr, errlen)) != 0)
            goto fail;
    }
    if ((rc = mkdirs(cfg->lmdb_dir, errstr, errlen)) != 0 ||
        (rc = lock_file(lock, 1, &sh->lock_fd, errstr, errlen)) != 0)
        goto fail;
    /* A stale shadow of a crashed run: start empty. */
    if ((rc = rm_env_dir(sh->dir, errstr, errlen)) != 0 ||
        (rc = mkdirs(sh->dir, errstr, errlen)) != 0)
        goto fail;
    *out = sh;
    return 0;
fail:
    if (sh->lock_fd >= 0)
        close(sh->lock_fd);
    free(sh);
    return rc;
}

static void shadow_drop(void *p)
{
    rp_lmdb_shadow *sh = p;
    char err[512];

    if (sh == NULL)
        return;
    if (rm_env_dir(sh->dir, err, sizeof err) != 0)
        kq_log_warn("lmdb shadow: %s", err);
    if (sh->lock_fd >= 0)
        close(sh->lock_fd);
    free(sh);
}

static void shadow_close(void *p)
{
    rp_lmdb_shadow *sh = p;
    char err[512];

    if (sh == NULL)
        return;
    if (sh->final[0] != '\0') {
        if (rm_env_dir(sh->final, err, sizeof err) != 0)
            kq_log_error("lmdb snapshot: %s", err);
        else if (rename(sh->dir, sh->final) != 0)
            kq_log_error("lmdb snapshot: rename %s -> %s: %s", sh->dir, sh->final, strerror(errno));
    }
    if (sh->lock_fd >= 0)
        close(sh->lock_fd);
    free(sh);
}

/* ------------------------------------------------------------ runner targets */

static int open_shadow(void *arg, int bulk, void **t, char *errstr, size_t errlen)
{
    rp_lmdb_shadow *sh = arg;
    int rc;

    if (sh == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "lmdb shadow target without a shadow");
    if ((rc = proj_lmdb_open_dir(sh->dir, sh->map, 0, (proj_lmdb **)t, errstr, errlen)) != 0)
        return rc;
    proj_lmdb_set_bulk(*t, bulk);
    return 0;
}
static int bulk_open(const kq_config *cfg, void *arg, void **t, char *errstr, size_t errlen)
{
    (void)cfg;
    return open_shadow(arg, 1, t, errstr, errlen);
}
static int tail_open(const kq_config *cfg, void *arg, void **t, char *errstr, size_t errlen)
{
    (void)cfg;
    return open_shadow(arg, 0, t, errstr, errlen);
}

static int finish(void *p, char *errstr, size_t errlen)
{
    rp_lmdb_shadow *sh = p;
    proj_lmdb *t;
    int rc;

    if ((rc = proj_lmdb_open_dir(sh->dir, sh->map, 0, &t, errstr, errlen)) != 0)
        return rc;
    rc = proj_lmdb_sync(t, errstr, errlen);
    proj_lmdb_close(t);
    return rc;
}

/* ------------------------------------------------------------ live lock, switch */

static int lock_live(const kq_config *cfg, void **lk, char *errstr, size_t errlen)
{
    char path[PATH_LEN];
    int rc, fd, *box;

    *lk = NULL;
    if ((rc = path_of(path, cfg, KQ_RM_LOCK_FILE, NULL, errstr, errlen)) != 0 ||
        (rc = mkdirs(cfg->lmdb_dir, errstr, errlen)) != 0 ||
        (rc = lock_file(path, 0, &fd, errstr, errlen)) != 0)
        return rc;
    if ((box = malloc(sizeof *box)) == NULL) {
        close(fd);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    *box = fd;
    *lk = box;
    return 0;
}

static void unlock_live(void *lk)
{
    int *box = lk;

    if (box == NULL)
        return;
    close(*box); /* releases the flock */
    free(box);
}

static int switch_live(void *p, char *errstr, size_t errlen)
{
    rp_lmdb_shadow *sh = p;
    int rc;

    if (sh->final[0] != '\0')
        return kq_seterr(errstr, errlen, KQ_EINVAL, "a named snapshot is never switched live");
    if ((rc = rm_env_dir(sh->retired, errstr, errlen)) != 0)
        return rc;
    if (renameat2(AT_FDCWD, sh->dir, AT_FDCWD, sh->live, RENAME_EXCHANGE) == 0) {
        /* sh->dir now holds the former live model */
        if (rename(sh->dir, sh->retired) != 0)
            kq_log_warn("lmdb: rename %s -> %s: %s (the old model stays there)", sh->dir,
                        sh->retired, strerror(errno));
        return 0;
    }
    if (errno != ENOENT && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        return kq_seterr(errstr, errlen, KQ_EIO, "exchange %s and %s: %s", sh->dir, sh->live,
                         strerror(errno));
    if (errno != ENOENT) {
        kq_log_warn("lmdb: the file system refuses RENAME_EXCHANGE: two renames");
        if (rename(sh->live, sh->retired) != 0 && errno != ENOENT)
            return kq_seterr(errstr, errlen, KQ_EIO, "rename %s -> %s: %s", sh->live, sh->retired,
                             strerror(errno));
    }
    if (rename(sh->dir, sh->live) != 0)
        return kq_seterr(errstr, errlen, KQ_EIO, "rename %s -> %s: %s", sh->dir, sh->live,
                         strerror(errno));
    return 0;
}

/* ------------------------------------------------------------ fingerprints */

static const char *const fp_dbs[] = {
    KQ_RM_DB_META,          KQ_RM_DB_OFFSETS,       KQ_RM_DB_VERSIONS,      KQ_RM_DB_RESOURCES,
    KQ_RM_DB_RES_BY_STATUS, KQ_RM_DB_WORKFLOWS,     KQ_RM_DB_WF_BY_ENABLED, KQ_RM_DB_RUNS,
    KQ_RM_DB_RUNS_BY_WF,    KQ_RM_DB_RUNS_BY_STATUS};

static int parse_offset(const MDB_val *k, const MDB_val *v, char *topic, size_t tlen, int32_t *part,
                        int64_t *off)
{
    const char *slash;
    char num[16], *end;
    size_t n;
    long p;

    if (v->mv_size != sizeof *off || k->mv_size == 0 || k->mv_size >= tlen)
        return KQ_ECORRUPT;
    memcpy(topic, k->mv_data, k->mv_size);
    topic[k->mv_size] = '\0';
    if ((slash = strrchr(topic, '/')) == NULL || (n = strlen(slash + 1)) == 0 || n >= sizeof num)
        return KQ_ECORRUPT;
    memcpy(num, slash + 1, n + 1);
    topic[slash - topic] = '\0';
    p = strtol(num, &end, 10);
    memcpy(off, v->mv_data, sizeof *off);
    if (*end != '\0' || p < 0 || p > INT32_MAX || *off < 0)
        return KQ_ECORRUPT;
    *part = (int32_t)p;
    return 0;
}

/* Every key/value of every named database in ONE read transaction of `dir`. */
static int fp_dir(const char *dir, size_t map, rp_fp *fp, proj_offset_fn cb, void *arg,
                  char *errstr, size_t errlen)
{
    MDB_env *env;
    MDB_txn *txn = NULL;
    int rc, ret;

    if ((ret = kq_rm_env_open(dir, map, 0, &env, errstr, errlen)) != 0)
        return ret;
    if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0) {
        ret = kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB %s: %s", dir, mdb_strerror(rc));
        goto out;
    }
    for (size_t d = 0; d < sizeof fp_dbs / sizeof fp_dbs[0] && ret == 0; d++) {
        MDB_dbi dbi;
        MDB_cursor *cur;
        MDB_val k, v;

        if ((ret = rp_fp_table(fp, fp_dbs[d])) != 0) {
            kq_seterr(errstr, errlen, ret, "fingerprint: out of memory");
            break;
        }
        rc = mdb_dbi_open(txn, fp_dbs[d], 0, &dbi);
        if (rc == MDB_NOTFOUND)
            continue;
        if (rc != 0 || (rc = mdb_cursor_open(txn, dbi, &cur)) != 0) {
            ret = kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB %s %s: %s", dir, fp_dbs[d],
                            mdb_strerror(rc));
            break;
        }
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if ((ret = rp_fp_add(fp, fp_dbs[d], k.mv_data, k.mv_size, v.mv_data, v.mv_size)) != 0) {
                kq_seterr(errstr, errlen, ret, "fingerprint: out of memory");
                break;
            }
            if (cb != NULL && d == 1) {
                char topic[512];
                int32_t part;
                int64_t off;
                if (parse_offset(&k, &v, topic, sizeof topic, &part, &off) != 0) {
                    ret =
                        kq_seterr(errstr, errlen, KQ_ECORRUPT, "%s: malformed offsets entry", dir);
                    break;
                }
                cb(arg, topic, part, off);
            }
        }
        if (ret == 0 && rc != MDB_NOTFOUND)
            ret = kq_seterr(errstr, errlen, KQ_ELMDB, "LMDB %s %s: %s", dir, fp_dbs[d],
                            mdb_strerror(rc));
        mdb_cursor_close(cur);
    }
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    mdb_env_close(env);
    return ret;
}

static int fingerprint_live(const kq_config *cfg, rp_fp *fp, proj_offset_fn cb, void *arg,
                            char *errstr, size_t errlen)
{
    char live[PATH_LEN];
    int rc;

    if ((rc = path_of(live, cfg, KQ_RM_SUBDIR, NULL, errstr, errlen)) != 0)
        return rc;
    return fp_dir(live, (size_t)cfg->lmdb_map_mb << 20, fp, cb, arg, errstr, errlen);
}

static int fingerprint_shadow(void *p, rp_fp *fp, char *errstr, size_t errlen)
{
    rp_lmdb_shadow *sh = p;

    return fp_dir(sh->dir, sh->map, fp, NULL, NULL, errstr, errlen);
}

static int drop_snapshot(const kq_config *cfg, const char *name, char *errstr, size_t errlen)
{
    char dir[PATH_LEN];
    struct stat st;
    int rc;

    if (!rp_name_valid(name))
        return kq_seterr(errstr, errlen, KQ_EINVAL, "snapshot name '%s' is not [a-z0-9_]{1,32}",
                         name);
    if ((rc = path_of(dir, cfg, KQ_RM_SNAPSHOTS_SUBDIR, name, errstr, errlen)) != 0)
        return rc;
    if (stat(dir, &st) != 0)
        return kq_seterr(errstr, errlen, KQ_ENOTFOUND, "no LMDB snapshot '%s' (%s)", name, dir);
    return rm_env_dir(dir, errstr, errlen);
}

const rp_target_ops rp_lmdb_ops = {
    .name = "lmdb",
    .shadow_create = shadow_create,
    .bulk = {"lmdb", bulk_open, proj_lmdb_target_load, proj_lmdb_target_apply,
             proj_lmdb_target_close, NULL},
    .tail = {"lmdb", tail_open, proj_lmdb_target_load, proj_lmdb_target_apply,
             proj_lmdb_target_close, NULL},
    .finish = finish,
    .lock_live = lock_live,
    .unlock_live = unlock_live,
    .switch_live = switch_live,
    .fingerprint_live = fingerprint_live,
    .fingerprint_shadow = fingerprint_shadow,
    .shadow_drop = shadow_drop,
    .shadow_close = shadow_close,
    .drop_snapshot = drop_snapshot,
};
