/*
 * test_kq_map.c — kq_map against a plain array model: put/get/remove/each
 * over many keys (growth), byte keys with NULs, value stability, zeroing,
 * the clear callback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kq_err.h"
#include "kq_map.h"

typedef struct val {
    int64_t n;
    char *owned;
    char pad[40];
} val;

static int cleared;

static void val_clear(void *v)
{
    val *x = v;
    free(x->owned);
    x->owned = NULL;
    cleared++;
}

static void test_basic(void **state)
{
    kq_map *m = kq_map_new(sizeof(val), val_clear);
    int created = -1;
    val *a, *b;

    (void)state;
    cleared = 0;
    assert_non_null(m);
    assert_int_equal(kq_map_count(m), 0);
    assert_null(kq_map_get(m, "a"));
    a = kq_map_put(m, "a", &created);
    assert_non_null(a);
    assert_int_equal(created, 1);
    assert_int_equal(a->n, 0); /* zeroed */
    assert_null(a->owned);
    assert_int_equal((uintptr_t)a % 16, 0);
    a->n = 7;
    a->owned = strdup("x");
    b = kq_map_put(m, "a", &created);
    assert_ptr_equal(a, b);
    assert_int_equal(created, 0);
    assert_ptr_equal(kq_map_get(m, "a"), a);
    assert_non_null(kq_map_put(m, "", NULL)); /* the empty key is a key */
    assert_int_equal(kq_map_count(m), 2);
    assert_non_null(kq_map_get(m, ""));
    {
        size_t kl = 99;
        assert_string_equal(kq_map_key_of(m, a, &kl), "a");
        assert_int_equal(kl, 1);
        assert_string_equal(kq_map_key_of(m, kq_map_get(m, ""), &kl), "");
        assert_int_equal(kl, 0);
    }
    assert_int_equal(kq_map_remove(m, "a"), 0);
    assert_int_equal(cleared, 1);
    assert_int_equal(kq_map_remove(m, "a"), KQ_ENOTFOUND);
    assert_null(kq_map_get(m, "a"));
    a = kq_map_put(m, "a", &created);
    assert_int_equal(created, 1);
    assert_int_equal(a->n, 0); /* a new entry is zeroed again */
    kq_map_clear(m);
    assert_int_equal(kq_map_count(m), 0);
    assert_int_equal(cleared, 3);
    assert_non_null(kq_map_put(m, "b", NULL));
    kq_map_free(m);
    assert_int_equal(cleared, 4);
    kq_map_free(NULL);
}

static void test_bytes(void **state)
{
    kq_map *m = kq_map_new(sizeof(int), NULL);
    static const char k1[] = {'r', 0, 'x'}, k2[] = {'r', 0, 'y'}, k3[] = {'r'};
    int *v;

    (void)state;
    *(int *)kq_map_putb(m, k1, 3, NULL) = 1;
    *(int *)kq_map_putb(m, k2, 3, NULL) = 2;
    *(int *)kq_map_putb(m, k3, 1, NULL) = 3;
    assert_int_equal(kq_map_count(m), 3);
    assert_int_equal(*(int *)kq_map_getb(m, k1, 3), 1);
    assert_int_equal(*(int *)kq_map_getb(m, k2, 3), 2);
    assert_int_equal(*(int *)kq_map_get(m, "r"), 3); /* the string and byte forms agree */
    assert_null(kq_map_getb(m, k1, 2));
    assert_int_equal(kq_map_removeb(m, k2, 3), 0);
    assert_null(kq_map_getb(m, k2, 3));
    v = kq_map_getb(m, k1, 3);
    assert_non_null(v);
    kq_map_free(m);
}

#define N 20000

typedef struct walk {
    int seen[N];
    int64_t sum;
    int stop_after;
    int calls;
} walk;

static int walk_fn(void *arg, const char *key, size_t keylen, void *v)
{
    walk *w = arg;
    int i = atoi(key + 1);

    assert_int_equal(keylen, strlen(key));
    assert_int_equal(((val *)v)->n, i);
    w->seen[i]++;
    w->sum += i;
    if (++w->calls == w->stop_after)
        return 99;
    return 0;
}

typedef struct rmctx {
    kq_map *m;
} rmctx;

/* Removes every odd entry while walking (allowed: the entry it was given). */
static int remove_odd(void *arg, const char *key, size_t keylen, void *v)
{
    rmctx *c = arg;
    (void)keylen;
    if (((val *)v)->n % 2 == 1)
        assert_int_equal(kq_map_remove(c->m, key), 0);
    return 0;
}

static void test_many(void **state)
{
    kq_map *m = kq_map_new(sizeof(val), val_clear);
    val **ptr = calloc(N, sizeof *ptr);
    walk *w = calloc(1, sizeof *w);
    char key[32];
    rmctx c = {m};

    (void)state;
    cleared = 0;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k%d", i);
        ptr[i] = kq_map_put(m, key, NULL);
        assert_non_null(ptr[i]);
        ptr[i]->n = i;
    }
    assert_int_equal(kq_map_count(m), N);
    for (int i = 0; i < N; i++) { /* growth moved no value */
        snprintf(key, sizeof key, "k%d", i);
        assert_ptr_equal(kq_map_get(m, key), ptr[i]);
    }
    assert_int_equal(kq_map_each(m, walk_fn, w), 0);
    assert_int_equal(w->calls, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(w->seen[i], 1);
    assert_int_equal(w->sum, (int64_t)N * (N - 1) / 2);
    memset(w, 0, sizeof *w);
    w->stop_after = 10;
    assert_int_equal(kq_map_each(m, walk_fn, w), 99);
    assert_int_equal(w->calls, 10);

    assert_int_equal(kq_map_each(m, remove_odd, &c), 0);
    assert_int_equal(kq_map_count(m), N / 2);
    assert_int_equal(cleared, N / 2);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k%d", i);
        if (i % 2)
            assert_null(kq_map_get(m, key));
        else
            assert_ptr_equal(kq_map_get(m, key), ptr[i]);
    }
    kq_map_free(m);
    free(ptr);
    free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
