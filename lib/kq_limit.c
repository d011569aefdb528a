/*
 * kq_limit.c — token buckets per key in a bounded table; see kq_limit.h.
 */
#include "kq_limit.h"
#include "kq_rand.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NSHARDS 16
#define NIL (-1)

typedef struct entry {
    uint64_t hash;
    double tokens;
    int64_t t_ms;         /* when `tokens` was last brought up to date */
    int32_t chain;        /* next entry of the same hash chain */
    int32_t older, newer; /* LRU list */
    char key[KQ_LIMIT_KEY_MAX + 1];
} entry;

typedef struct shard {
    pthread_mutex_t mu;
    entry *e;       /* cap entries */
    int32_t *heads; /* nheads chain heads */
    uint32_t nheads;
    int32_t cap, used;
    int32_t oldest, newest;
    uint64_t evictions;
} shard;

struct kq_limit {
    double rate; /* tokens per ms */
    double burst;
    uint64_t k0, k1;
    shard s[NSHARDS];
};

/* ------------------------------------------------------------------ SipHash-2-4 */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t siphash(uint64_t k0, uint64_t k1, const unsigned char *in, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    uint64_t m, b = (uint64_t)len << 56;
    size_t i, full = len - len % 8;

    for (i = 0; i < full; i += 8) {
        m = 0;
        for (int j = 7; j >= 0; j--)
            m = (m << 8) | in[i + (size_t)j];
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t j = 0; j < len % 8; j++)
        b |= (uint64_t)in[full + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ------------------------------------------------------------------ table */

int64_t kq_limit_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

kq_limit *kq_limit_new(size_t capacity, double rate_per_s, double burst)
{
    kq_limit *l;
    uint64_t k[2];
    size_t per;

    if (capacity < NSHARDS || capacity > (size_t)1 << 30 || !(rate_per_s > 0) || !(burst > 0) ||
        kq_rand_bytes(k, sizeof k) != 0)
        return NULL;
    if ((l = calloc(1, sizeof *l)) == NULL)
        return NULL;
    l->rate = rate_per_s / 1000.0;
    l->burst = burst;
    l->k0 = k[0];
    l->k1 = k[1];
    per = (capacity + NSHARDS - 1) / NSHARDS;
    for (int i = 0; i < NSHARDS; i++) {
        shard *s = &l->s[i];
        uint32_t nh = 1;
        while (nh < per)
            nh <<= 1;
        pthread_mutex_init(&s->mu, NULL);
        s->cap = (int32_t)per;
        s->nheads = nh;
        s->oldest = s->newest = NIL;
        s->e = calloc(per, sizeof *s->e);
        s->heads = malloc(nh * sizeof *s->heads);
        if (s->e == NULL || s->heads == NULL) {
            kq_limit_free(l);
            return NULL;
        }
        for (uint32_t h = 0; h < nh; h++)
            s->heads[h] = NIL;
    }
    return l;
}

void kq_limit_free(kq_limit *l)
{
    if (l == NULL)
        return;
    for (int i = 0; i < NSHARDS; i++) {
        free(l->s[i].e);
        free(l->s[i].heads);
        pthread_mutex_destroy(&l->s[i].mu);
    }
    free(l);
}

static void lru_unlink(shard *s, int32_t i)
{
    entry *e = &s->e[i];
    if (e->older != NIL)
        s->e[e->older].newer = e->newer;
    else
        s->oldest = e->newer;
    if (e->newer != NIL)
        s->e[e->newer].older = e->older;
    else
        s->newest = e->older;
}

static void lru_push(shard *s, int32_t i)
{
    entry *e = &s->e[i];
    e->older = s->newest;
    e->newer = NIL;
    if (s->newest != NIL)
        s->e[s->newest].newer = i;
    else
        s->oldest = i;
    s->newest = i;
}

static void chain_unlink(shard *s, int32_t i)
{
    int32_t *p = &s->heads[s->e[i].hash & (s->nheads - 1)];
    while (*p != i)
        p = &s->e[*p].chain;
    *p = s->e[i].chain;
}

/* The entry of key (created full, evicting the oldest when the shard is full). Locked. */
static entry *lookup(kq_limit *l, shard *s, uint64_t h, const char *key, int64_t now_ms)
{
    uint32_t b = (uint32_t)(h & (s->nheads - 1));
    int32_t i;

    for (i = s->heads[b]; i != NIL; i = s->e[i].chain)
        if (s->e[i].hash == h && strncmp(s->e[i].key, key, KQ_LIMIT_KEY_MAX) == 0)
            break;
    if (i != NIL) {
        lru_unlink(s, i);
        lru_push(s, i);
        return &s->e[i];
    }
    if (s->used < s->cap) {
        i = s->used++;
    } else {
        i = s->oldest;
        lru_unlink(s, i);
        chain_unlink(s, i);
        s->evictions++;
    }
    entry *e = &s->e[i];
    e->hash = h;
    snprintf(e->key, sizeof e->key, "%s", key);
    e->tokens = l->burst;
    e->t_ms = now_ms;
    e->chain = s->heads[b];
    s->heads[b] = i;
    lru_push(s, i);
    return e;
}

static int use(kq_limit *l, const char *key, int64_t now_ms, int take, int *retry_after_s)
{
    size_t n = strnlen(key, KQ_LIMIT_KEY_MAX);
    uint64_t h = siphash(l->k0, l->k1, (const unsigned char *)key, n);
    shard *s = &l->s[(h >> 59) % NSHARDS];
    entry *e;
    int ok;

    pthread_mutex_lock(&s->mu);
    e = lookup(l, s, h, key, now_ms);
    if (now_ms > e->t_ms) {
        e->tokens += (double)(now_ms - e->t_ms) * l->rate;
        if (e->tokens > l->burst)
            e->tokens = l->burst;
        e->t_ms = now_ms;
    }
    ok = e->tokens >= 1.0;
    if (ok && take)
        e->tokens -= 1.0;
    if (!ok && retry_after_s != NULL) {
        double ms = (1.0 - e->tokens) / l->rate;
        double sec = (ms + 999.0) / 1000.0; /* whole seconds, rounded up */
        *retry_after_s = sec < 1 ? 1 : sec > 86400 ? 86400 : (int)sec;
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

int kq_limit_take(kq_limit *l, const char *key, int64_t now_ms, int *retry_after_s)
{
    return use(l, key, now_ms, 1, retry_after_s);
}

int kq_limit_check(kq_limit *l, const char *key, int64_t now_ms, int *retry_after_s)
{
    return use(l, key, now_ms, 0, retry_after_s);
}

size_t kq_limit_size(kq_limit *l)
{
    size_t n = 0;
    for (int i = 0; i < NSHARDS; i++) {
        pthread_mutex_lock(&l->s[i].mu);
        n += (size_t)l->s[i].used;
        pthread_mutex_unlock(&l->s[i].mu);
    }
    return n;
}

uint64_t kq_limit_evictions(kq_limit *l)
{
    uint64_t n = 0;
    for (int i = 0; i < NSHARDS; i++) {
        pthread_mutex_lock(&l->s[i].mu);
        n += l->s[i].evictions;
        pthread_mutex_unlock(&l->s[i].mu);
    }
    return n;
}
