/*
 * qry_snap.c — the cache of named LMDB snapshots; see qry_snap.h.
 */
#include "qry_snap.h"

#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kq_err.h"
#include "kq_time.h"
#include "qry_text.h"

#define NAME_MAX_LEN 32

typedef struct entry {
    char name[NAME_MAX_LEN + 1]; /* "" = free slot */
    qry_rm *rm;
    int users;     /* views handed out and not yet released */
    uint64_t used; /* LRU clock */
} entry;

struct qry_snap {
    pthread_mutex_t lock;
    char *dir; /* $KCQRS_LMDB_DIR/snapshots */
    size_t map_size;
    uint64_t clock;
    entry e[QRY_SNAP_CACHE];
};

int qry_snap_new(const char *lmdb_dir, size_t map_size, qry_snap **out)
{
    qry_snap *s = calloc(1, sizeof *s);
    size_t n = strlen(lmdb_dir) + sizeof "/snapshots";

    *out = NULL;
    if (s == NULL || (s->dir = malloc(n)) == NULL) {
        free(s);
        return KQ_ENOMEM;
    }
    snprintf(s->dir, n, "%s/snapshots", lmdb_dir);
    s->map_size = map_size;
    pthread_mutex_init(&s->lock, NULL);
    *out = s;
    return 0;
}

void qry_snap_free(qry_snap *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < QRY_SNAP_CACHE; i++)
        qry_rm_free(s->e[i].rm);
    pthread_mutex_destroy(&s->lock);
    free(s->dir);
    free(s);
}

/* Close an unused entry. Under the lock. */
static void drop(entry *x)
{
    qry_rm_free(x->rm);
    memset(x, 0, sizeof *x);
}

int qry_snap_acquire(qry_snap *s, const char *name, qry_rm_view **v, char *errstr, size_t errlen)
{
    entry *x = NULL, *victim = NULL;
    int rc;

    *v = NULL;
    if (strlen(name) > NAME_MAX_LEN)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "snapshot name too long");
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < QRY_SNAP_CACHE && x == NULL; i++)
        if (strcmp(s->e[i].name, name) == 0)
            x = &s->e[i];
    if (x == NULL) {
        char path[4096];
        for (int i = 0; i < QRY_SNAP_CACHE; i++) {
            entry *c = &s->e[i];
            if (c->name[0] == '\0') {
                victim = c;
                break;
            }
            if (c->users == 0 && (victim == NULL || c->used < victim->used))
                victim = c;
        }
        if (victim == NULL) {
            rc = kq_seterr(errstr, errlen, KQ_EBUSY, "every cached snapshot is in use");
            goto out;
        }
        if (victim->name[0] != '\0')
            drop(victim);
        if (snprintf(path, sizeof path, "%s/%s", s->dir, name) >= (int)sizeof path) {
            rc = kq_seterr(errstr, errlen, KQ_ERANGE, "snapshot path too long");
            goto out;
        }
        if (qry_rm_new(path, s->map_size, 1, &victim->rm) != 0) {
            rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
            goto out;
        }
        snprintf(victim->name, sizeof victim->name, "%s", name);
        x = victim;
    }
    x->used = ++s->clock;
    if ((rc = qry_rm_acquire(x->rm, v, errstr, errlen)) != 0) {
        if (x->users == 0)
            drop(x); /* gone (or never there): do not keep it */
        goto out;
    }
    x->users++;
out:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void qry_snap_release(qry_snap *s, qry_rm_view *v)
{
    qry_rm *owner;

    if (v == NULL)
        return;
    owner = qry_rm_view_owner(v);
    pthread_mutex_lock(&s->lock);
    qry_rm_release(v);
    for (int i = 0; i < QRY_SNAP_CACHE; i++)
        if (s->e[i].rm == owner) {
            s->e[i].users--;
            break;
        }
    pthread_mutex_unlock(&s->lock);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One snapshot's item: its name, when its data file was last written and the
 * positions its build stopped at (or why it cannot be read). */
static json_t *item(qry_snap *s, const char *name)
{
    char path[4096], when[KQ_TIME_MAX], err[512];
    struct stat st;
    qry_rm_view *v = NULL;
    json_t *pos = NULL, *it = json_pack("{s:s}", "name", name);

    if (it == NULL)
        return NULL;
    snprintf(path, sizeof path, "%s/%s/data.mdb", s->dir, name);
    if (stat(path, &st) == 0) {
        kq_time_format((int64_t)st.st_mtim.tv_sec * 1000000 + st.st_mtim.tv_nsec / 1000, when);
        json_object_set_new(it, "built_at", json_string(when));
    }
    if (qry_snap_acquire(s, name, &v, err, sizeof err) != 0 ||
        qry_rm_offsets(v, &pos, err, sizeof err) != 0)
        json_object_set_new(it, "error", json_string(err));
    else
        json_object_set_new(it, "positions", pos);
    if (v != NULL)
        qry_snap_release(s, v);
    return it;
}

int qry_snap_list(qry_snap *s, json_t **out, char *errstr, size_t errlen)
{
    DIR *d = opendir(s->dir);
    struct dirent *e;
    char *names[QRY_SNAP_LIST_MAX];
    size_t n = 0;
    int rc = 0;

    if ((*out = json_array()) == NULL) {
        if (d != NULL)
            closedir(d);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    if (d == NULL)
        return 0; /* no snapshot was ever built */
    while ((e = readdir(d)) != NULL && n < QRY_SNAP_LIST_MAX)
        if (qry_snapshot_name_valid(e->d_name) && (names[n] = strdup(e->d_name)) != NULL)
            n++;
    closedir(d);
    qsort(names, n, sizeof names[0], by_name);
    for (size_t i = 0; i < n; i++) {
        json_t *it = rc == 0 ? item(s, names[i]) : NULL;
        if (rc == 0 && (it == NULL || json_array_append_new(*out, it) != 0))
            rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        free(names[i]);
    }
    if (rc != 0) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}
