/*
 * proj_pg_fold.c — bulk mode of the PostgreSQL target (proj_pg.h,
 * proj_pg_set_fold): every aggregate's last version and every live
 * resource's row held in memory while kcqrs-replay loads an empty shadow,
 * COPY'd into aggregate_versions and resources once at the end. Part of
 * proj_pg (proj_pg_int.h); the proj_pg's thread (the fold itself outlives
 * the proj_pg objects that use it, one at a time).
 */
#include "proj_pg_int.h"

#include <stdlib.h>
#include <string.h>

#include "kq_err.h"
#include "kq_map.h"
#include "kq_pg.h"

/* One aggregate of the fold (keyed "<type>\0<id>", as the batch's table):
 * its last version, for a live resource its row, for a run its fold state
 * (the runs rows are written by statements, not folded, but their
 * classification needs the state). */
typedef struct fentry {
    int64_t version;
    int has_res;
    char *name, *desc; /* malloc'd, owned by the entry */
    uint32_t namelen, desclen;
    int status;
    int64_t rversion, created_us, updated_us;
    ev_run_state run;
} fentry;

struct proj_pg_fold {
    kq_map *m;
    int broken;
};

static void fentry_clear(void *v)
{
    fentry *x = v;

    free(x->name);
    free(x->desc);
}

proj_pg_fold *proj_pg_fold_new(void)
{
    proj_pg_fold *f = calloc(1, sizeof *f);

    if (f == NULL)
        return NULL;
    if ((f->m = kq_map_new(sizeof(fentry), fentry_clear)) == NULL) {
        free(f);
        return NULL;
    }
    return f;
}

void proj_pg_fold_free(proj_pg_fold *f)
{
    if (f == NULL)
        return;
    kq_map_free(f->m);
    free(f);
}

size_t proj_pg_fold_count(const proj_pg_fold *f)
{
    return f ? kq_map_count(f->m) : 0;
}

void proj_pg_set_fold(proj_pg *pg, proj_pg_fold *f)
{
    pg->fold = f;
}

int proj_pg_fold_broken(const proj_pg_fold *f)
{
    return f != NULL && f->broken;
}

/* The fold's entry of the batch's aggregate a (created zeroed when missing
 * and `create`). NULL when missing or out of memory. */
static fentry *fold_find(proj_pg *pg, const proj_pg_agg *a, int create)
{
    fentry *x;
    int created = 0;

    pg->key.len = 0;
    if (proj_pg_buf_put(&pg->key, a->type, strlen(a->type) + 1) ||
        proj_pg_buf_put(&pg->key, a->id, a->idlen))
        return NULL;
    if (!create)
        return kq_map_getb(pg->fold->m, pg->key.p, pg->key.len);
    if ((x = kq_map_putb(pg->fold->m, pg->key.p, pg->key.len, &created)) != NULL && created)
        ev_run_init(&x->run);
    return x;
}

/* The batch's aggregates start from the fold's versions (instead of the
 * stored versions' query). */
int proj_pg_fold_versions(proj_pg *pg)
{
    for (size_t i = 0; i < pg->nused; i++) {
        proj_pg_agg *a = pg->used[i];
        const fentry *x = fold_find(pg, a, 0);
        if (x != NULL) {
            a->stored = a->cur = x->version;
            a->run = x->run;
        }
    }
    return 0;
}

static int fold_str(char **dst, uint32_t *dlen, ev_str v)
{
    char *p = malloc(v.len ? v.len : 1);

    if (p == NULL)
        return KQ_ENOMEM;
    memcpy(p, v.ptr, v.len);
    free(*dst);
    *dst = p;
    *dlen = (uint32_t)v.len;
    return 0;
}

/* After COMMIT: what the merge statement (proj_pg_write_merge) would have done
 * to the tables, to the fold. */
int proj_pg_fold_batch(proj_pg *pg)
{
    for (size_t i = 0; i < pg->nused; i++) {
        proj_pg_agg *a = pg->used[i];
        fentry *x;

        if (a->cur == a->stored && a->rop == PROJ_PG_R_NONE)
            continue;
        if ((x = fold_find(pg, a, 1)) == NULL)
            goto nomem;
        x->version = a->cur;
        x->run = a->run;
        switch (a->rop) {
        case PROJ_PG_R_FULL: /* upsert: every column */
            if ((a->name.ptr == NULL ? (free(x->name), x->name = NULL, 0)
                                     : fold_str(&x->name, &x->namelen, a->name)) ||
                fold_str(&x->desc, &x->desclen, a->desc))
                goto nomem;
            x->has_res = 1;
            x->status = a->status;
            x->rversion = a->rversion;
            x->created_us = a->created_us;
            x->updated_us = a->updated_us;
            break;
        case PROJ_PG_R_PATCH: /* UPDATE of an existing row only; coalesce the changed columns */
            if (!x->has_res)
                break;
            if ((a->name.ptr && fold_str(&x->name, &x->namelen, a->name)) ||
                (a->desc.ptr && fold_str(&x->desc, &x->desclen, a->desc)))
                goto nomem;
            if (proj_pg_resource_status(a->status))
                x->status = a->status;
            x->rversion = a->rversion;
            x->updated_us = a->updated_us;
            break;
        case PROJ_PG_R_DEL:
            x->has_res = 0;
            break;
        default:
            break;
        }
    }
    return 0;
nomem:
    pg->fold->broken = 1; /* committed rows the fold does not hold: refuse to go on */
    return KQ_ENOMEM;
}

/* kq_map_each callbacks of proj_pg_fold_flush: one COPY row per entry. */
static int flush_version(void *arg, const char *key, size_t keylen, void *val)
{
    proj_pg *pg = arg;
    const fentry *x = val;
    size_t tl = strlen(key);
    proj_pg_row r;

    r.n = 0;
    proj_pg_row_cstr(&r, key);
    proj_pg_row_bytes(&r, key + tl + 1, keylen - tl - 1);
    proj_pg_row_i64(&r, x->version);
    return proj_pg_copy_row(&pg->copy, &r);
}

static int flush_resource(void *arg, const char *key, size_t keylen, void *val)
{
    proj_pg *pg = arg;
    const fentry *x = val;
    size_t tl = strlen(key);
    proj_pg_row r;

    if (!x->has_res)
        return 0;
    r.n = 0;
    proj_pg_row_bytes(&r, key + tl + 1, keylen - tl - 1);
    proj_pg_row_bytes(&r, x->name, x->namelen);
    proj_pg_row_bytes(&r, x->desc ? x->desc : "", x->desclen);
    if (proj_pg_resource_status(x->status))
        proj_pg_row_cstr(&r, proj_pg_resource_status(x->status));
    else
        proj_pg_row_null(&r);
    proj_pg_row_i64(&r, x->rversion);
    proj_pg_row_ts(&r, x->created_us);
    proj_pg_row_ts(&r, x->updated_us);
    return proj_pg_copy_row(&pg->copy, &r);
}

int proj_pg_fold_flush(proj_pg *pg, char *errstr, size_t errlen)
{
    proj_pg_fold *f = pg->fold;
    int rc;

    if (f == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "proj_pg_fold_flush: not in bulk mode");
    if (f->broken)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "postgresql bulk fold is incomplete");
    if ((rc = kq_pg_begin(pg->conn, errstr, errlen)))
        return rc;
    proj_pg_copy_start(&pg->copy);
    if (kq_map_each(f->m, flush_version, pg) != 0) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = proj_pg_copy_in(pg->conn,
                              "COPY aggregate_versions (aggregate_type, aggregate_id, version)"
                              " FROM STDIN (FORMAT binary)",
                              &pg->copy, errstr, errlen)))
        goto fail;
    proj_pg_copy_start(&pg->copy);
    if (kq_map_each(f->m, flush_resource, pg) != 0) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = proj_pg_copy_in(pg->conn,
                              "COPY resources (id, name, description, status, version, created_at,"
                              " updated_at) FROM STDIN (FORMAT binary)",
                              &pg->copy, errstr, errlen)) ||
        (rc = kq_pg_commit(pg->conn, errstr, errlen)))
        goto fail;
    return 0;
fail:
    if (PQstatus(pg->conn) == CONNECTION_OK) {
        char ignore[128];
        kq_pg_rollback(pg->conn, ignore, sizeof ignore);
    }
    return rc;
}
