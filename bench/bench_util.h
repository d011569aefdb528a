/*
 * bench_util.h — helpers shared by the benchmark programs: monotonic clocks
 * and nearest-rank percentiles. Header-only (static inline) because each
 * benchmark source file is a program of its own.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline double bench_now_s(void)
{
    return (double)bench_now_ns() / 1e9;
}

/* Index of the nearest-rank p-th percentile (p in (0, 100]) of n > 0 sorted values. */
static inline size_t bench_rank_index(size_t n, double p)
{
    size_t rank = (size_t)((p / 100.0) * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return rank - 1;
}

static inline int bench_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Percentiles of sorted arrays; 0 for an empty one. */
static inline uint64_t bench_pct_u64(const uint64_t *sorted, size_t n, double p)
{
    return n ? sorted[bench_rank_index(n, p)] : 0;
}

static inline double bench_pct_double(const double *sorted, size_t n, double p)
{
    return n ? sorted[bench_rank_index(n, p)] : 0;
}

#endif
