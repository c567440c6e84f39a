/* bench_common.h - helpers shared by the bench/ programs: clocks, percentiles, a seeded RNG,
 * the clustered data generator, and the machine-load line every benchmark prints. */
#ifndef STW_BENCH_COMMON_H
#define STW_BENCH_COMMON_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* p in [0,1]; sorts v in place */
static inline double bench_pct(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, bench_cmp_double);
    return v[(size_t)(p * (double)(n - 1) + 0.5)];
}

/* xorshift64* */
static inline uint64_t bench_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static inline double bench_unif(uint64_t *s)
{
    return (double)(bench_rand(s) >> 11) * (1.0 / 9007199254740992.0);
}

static inline double bench_gauss(uint64_t *s)
{
    double u = bench_unif(s), v = bench_unif(s);
    if (u < 1e-300)
        u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* Gaussian mixture: nc unit-norm centres; point = centre + N(0, 0.6^2/d); L2-normalised
 * (the data shape of shared/notes/platform.md 4c). out: n * d. */
static inline void bench_mixture(float *out, size_t n, size_t d, const float *centres, size_t nc,
                                 uint64_t *s)
{
    double sig = 0.6 / sqrt((double)d);
    for (size_t i = 0; i < n; i++) {
        const float *c = centres + (bench_rand(s) % nc) * d;
        double norm = 0;
        for (size_t j = 0; j < d; j++) {
            double v = c[j] + sig * bench_gauss(s);
            out[i * d + j] = (float)v;
            norm += v * v;
        }
        norm = sqrt(norm);
        for (size_t j = 0; j < d; j++)
            out[i * d + j] = (float)(out[i * d + j] / norm);
    }
}

static inline void bench_centres(float *c, size_t nc, size_t d, uint64_t *s)
{
    for (size_t i = 0; i < nc; i++) {
        double norm = 0;
        for (size_t j = 0; j < d; j++) {
            double v = bench_gauss(s);
            c[i * d + j] = (float)v;
            norm += v * v;
        }
        norm = sqrt(norm);
        for (size_t j = 0; j < d; j++)
            c[i * d + j] = (float)(c[i * d + j] / norm);
    }
}

/* The machine's load, printed with every benchmark's figures. */
static inline void bench_print_load(void)
{
    double l[3] = {0, 0, 0};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f != NULL) {
        if (fscanf(f, "%lf %lf %lf", &l[0], &l[1], &l[2]) != 3)
            l[0] = l[1] = l[2] = -1;
        fclose(f);
    }
    printf("machine load average: %.2f %.2f %.2f\n", l[0], l[1], l[2]);
}

/* This process's resident memory (from smaps). */
static inline void bench_print_rss(void)
{
    char line[256];
    long rss = -1, v;
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "Rss: %ld", &v) == 1)
            rss = v;
    }
    fclose(f);
    if (rss >= 0)
        printf("process memory: resident %.1f MB\n", rss / 1024.0);
}

#endif
