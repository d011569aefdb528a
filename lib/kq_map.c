/*
 * kq_map.c — the hash map; see kq_map.h.
 */
#include "kq_map.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kq_err.h"

typedef struct map_entry {
    struct map_entry *next;
    uint64_t h;
    size_t keylen;
    char *key; /* after the value, NUL-terminated */
    _Alignas(16) unsigned char val[];
} map_entry;

struct kq_map {
    map_entry **b;
    size_t nb, n, valsize;
    void (*clear)(void *val);
};

#define MAP_MIN_BUCKETS 64

static uint64_t fnv1a(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

kq_map *kq_map_new(size_t valsize, void (*clear)(void *val))
{
    kq_map *m = calloc(1, sizeof *m);

    if (m == NULL)
        return NULL;
    m->nb = MAP_MIN_BUCKETS;
    m->valsize = (valsize + 15) & ~(size_t)15; /* the key after it stays simple to place */
    m->clear = clear;
    if ((m->b = calloc(m->nb, sizeof *m->b)) == NULL) {
        free(m);
        return NULL;
    }
    return m;
}

void kq_map_clear(kq_map *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        map_entry *e = m->b[i], *nx;
        for (; e != NULL; e = nx) {
            nx = e->next;
            if (m->clear != NULL)
                m->clear(e->val);
            free(e);
        }
        m->b[i] = NULL;
    }
    m->n = 0;
}

void kq_map_free(kq_map *m)
{
    if (m == NULL)
        return;
    kq_map_clear(m);
    free(m->b);
    free(m);
}

size_t kq_map_count(const kq_map *m)
{
    return m->n;
}

/* The link that points at the entry of key (or the NULL link ending its chain). */
static map_entry **find(const kq_map *m, const void *key, size_t keylen, uint64_t h)
{
    map_entry **pe = &m->b[h & (m->nb - 1)];

    for (; *pe != NULL; pe = &(*pe)->next)
        if ((*pe)->h == h && (*pe)->keylen == keylen &&
            (keylen == 0 || memcmp((*pe)->key, key, keylen) == 0))
            break;
    return pe;
}

void *kq_map_getb(const kq_map *m, const void *key, size_t keylen)
{
    map_entry *e = *find(m, key, keylen, fnv1a(key, keylen));
    return e != NULL ? e->val : NULL;
}

void *kq_map_get(const kq_map *m, const char *key)
{
    return kq_map_getb(m, key, strlen(key));
}

static int grow(kq_map *m)
{
    size_t nb = m->nb * 2;
    map_entry **b = calloc(nb, sizeof *b);

    if (b == NULL)
        return KQ_ENOMEM;
    for (size_t i = 0; i < m->nb; i++) {
        map_entry *e = m->b[i], *nx;
        for (; e != NULL; e = nx) {
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

void *kq_map_putb(kq_map *m, const void *key, size_t keylen, int *created)
{
    uint64_t h = fnv1a(key, keylen);
    map_entry *e = *find(m, key, keylen, h);

    if (created != NULL)
        *created = 0;
    if (e != NULL)
        return e->val;
    if (m->n >= m->nb)
        (void)grow(m); /* out of memory here only lengthens the chains */
    if (keylen > SIZE_MAX - sizeof *e - m->valsize - 1 ||
        (e = calloc(1, sizeof *e + m->valsize + keylen + 1)) == NULL)
        return NULL;
    e->key = (char *)e->val + m->valsize;
    if (keylen > 0)
        memcpy(e->key, key, keylen);
    e->key[keylen] = '\0';
    e->keylen = keylen;
    e->h = h;
    e->next = m->b[h & (m->nb - 1)];
    m->b[h & (m->nb - 1)] = e;
    m->n++;
    if (created != NULL)
        *created = 1;
    return e->val;
}

void *kq_map_put(kq_map *m, const char *key, int *created)
{
    return kq_map_putb(m, key, strlen(key), created);
}

const char *kq_map_key_of(const kq_map *m, const void *val, size_t *keylen)
{
    const map_entry *e =
        (const map_entry *)(const void *)((const unsigned char *)val - offsetof(map_entry, val));

    (void)m;
    if (keylen != NULL)
        *keylen = e->keylen;
    return e->key;
}

int kq_map_removeb(kq_map *m, const void *key, size_t keylen)
{
    map_entry **pe = find(m, key, keylen, fnv1a(key, keylen)), *e = *pe;

    if (e == NULL)
        return KQ_ENOTFOUND;
    *pe = e->next;
    if (m->clear != NULL)
        m->clear(e->val);
    free(e);
    m->n--;
    return 0;
}

int kq_map_remove(kq_map *m, const char *key)
{
    return kq_map_removeb(m, key, strlen(key));
}

int kq_map_each(kq_map *m, kq_map_fn fn, void *arg)
{
    int rc;

    for (size_t i = 0; i < m->nb; i++) {
        map_entry *e = m->b[i], *nx;
        for (; e != NULL; e = nx) {
            nx = e->next; /* fn may remove e */
            if ((rc = fn(arg, e->key, e->keylen, e->val)) != 0)
                return rc;
        }
    }
    return 0;
}
