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
#include "kq_pg.h"

/* One aggregate of the fold: its last version, for a live resource its row,
 * for a run its fold state (the runs rows are written by statements, not
 * folded, but their classification needs the state). */
typedef struct fentry {
    const char *type; /* static name; NULL: free slot */
    char *id;
    uint32_t idlen, hash;
    int64_t version;
    int has_res;
    char *name, *desc;
    uint32_t namelen, desclen;
    int status;
    int64_t rversion, created_us, updated_us;
    ev_run_state run; /* a run's fold state (ev_run.h) */
} fentry;

struct proj_pg_fold {
    fentry *e;
    size_t cap, n; /* cap: power of two */
    int broken;
};

proj_pg_fold *proj_pg_fold_new(void)
{
    proj_pg_fold *f = calloc(1, sizeof *f);

    if (f == NULL)
        return NULL;
    f->cap = 1024;
    if ((f->e = calloc(f->cap, sizeof *f->e)) == NULL) {
        free(f);
        return NULL;
    }
    return f;
}

void proj_pg_fold_free(proj_pg_fold *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->cap; i++) {
        free(f->e[i].id);
        free(f->e[i].name);
        free(f->e[i].desc);
    }
    free(f->e);
    free(f);
}

size_t proj_pg_fold_count(const proj_pg_fold *f)
{
    return f ? f->n : 0;
}

void proj_pg_set_fold(proj_pg *pg, proj_pg_fold *f)
{
    pg->fold = f;
}

int proj_pg_fold_broken(const proj_pg_fold *f)
{
    return f != NULL && f->broken;
}

static fentry *fold_slot(fentry *e, size_t cap, const char *type, const char *id, size_t len,
                         uint32_t h)
{
    size_t mask = cap - 1;

    for (size_t i = h & mask;; i = (i + 1) & mask) {
        fentry *x = &e[i];
        if (x->type == NULL || (x->hash == h && x->idlen == len && strcmp(x->type, type) == 0 &&
                                memcmp(x->id, id, len) == 0))
            return x;
    }
}

static fentry *fold_find(proj_pg_fold *f, const proj_pg_agg *a, int create)
{
    fentry *x;

    if (create && 2 * (f->n + 1) > f->cap) {
        size_t ncap = f->cap * 2;
        fentry *ne = calloc(ncap, sizeof *ne);
        if (ne == NULL)
            return NULL;
        for (size_t i = 0; i < f->cap; i++)
            if (f->e[i].type != NULL)
                *fold_slot(ne, ncap, f->e[i].type, f->e[i].id, f->e[i].idlen, f->e[i].hash) =
                    f->e[i];
        free(f->e);
        f->e = ne;
        f->cap = ncap;
    }
    x = fold_slot(f->e, f->cap, a->type, a->id, a->idlen, a->hash);
    if (x->type != NULL || !create)
        return x->type != NULL ? x : NULL;
    if ((x->id = malloc(a->idlen ? a->idlen : 1)) == NULL)
        return NULL;
    memcpy(x->id, a->id, a->idlen);
    x->type = a->type;
    x->idlen = a->idlen;
    x->hash = a->hash;
    f->n++;
    return x;
}

/* The batch's aggregates start from the fold's versions (instead of the
 * stored versions' query). */
int proj_pg_fold_versions(proj_pg *pg)
{
    for (size_t i = 0; i < pg->nused; i++) {
        proj_pg_agg *a = pg->used[i];
        const fentry *x = fold_find(pg->fold, a, 0);
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
        if ((x = fold_find(pg->fold, a, 1)) == NULL)
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

int proj_pg_fold_flush(proj_pg *pg, char *errstr, size_t errlen)
{
    proj_pg_fold *f = pg->fold;
    proj_pg_row r;
    int rc;

    if (f == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "proj_pg_fold_flush: not in bulk mode");
    if (f->broken)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "postgresql bulk fold is incomplete");
    if ((rc = kq_pg_begin(pg->conn, errstr, errlen)))
        return rc;
    proj_pg_copy_start(&pg->copy);
    for (size_t i = 0; i < f->cap; i++) {
        const fentry *x = &f->e[i];
        if (x->type == NULL)
            continue;
        r.n = 0;
        proj_pg_row_cstr(&r, x->type);
        proj_pg_row_bytes(&r, x->id, x->idlen);
        proj_pg_row_i64(&r, x->version);
        if (proj_pg_copy_row(&pg->copy, &r)) {
            rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
            goto fail;
        }
    }
    if ((rc = proj_pg_copy_in(pg->conn,
                              "COPY aggregate_versions (aggregate_type, aggregate_id, version)"
                              " FROM STDIN (FORMAT binary)",
                              &pg->copy, errstr, errlen)))
        goto fail;
    proj_pg_copy_start(&pg->copy);
    for (size_t i = 0; i < f->cap; i++) {
        const fentry *x = &f->e[i];
        if (x->type == NULL || !x->has_res)
            continue;
        r.n = 0;
        proj_pg_row_bytes(&r, x->id, x->idlen);
        proj_pg_row_bytes(&r, x->name, x->namelen);
        proj_pg_row_bytes(&r, x->desc ? x->desc : "", x->desclen);
        if (proj_pg_resource_status(x->status))
            proj_pg_row_cstr(&r, proj_pg_resource_status(x->status));
        else
            proj_pg_row_null(&r);
        proj_pg_row_i64(&r, x->rversion);
        proj_pg_row_ts(&r, x->created_us);
        proj_pg_row_ts(&r, x->updated_us);
        if (proj_pg_copy_row(&pg->copy, &r)) {
            rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
            goto fail;
        }
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
