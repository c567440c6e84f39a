/* distance.h - the SIMD distance kernels, shared by the exact scan (search.c) and the HNSW
 * storage and graph walk (faiss_bridge.cpp). Header-only so both languages inline them; the
 * files that include it are compiled with -march=native (CMakeLists.txt), where AVX-512 or
 * AVX2+FMA is picked at compile time, with a scalar fallback. Debian's FAISS computes these
 * with scalar code (shared/notes/platform.md, section 1), 2.5-3.5x slower.
 * Thread: pure functions. */
#ifndef STW_DISTANCE_H
#define STW_DISTANCE_H

#include <stddef.h>
#include <stdint.h>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
/* Horizontal sum; GCC 12's _mm512_reduce_add_ps trips -Wuninitialized inside its header. */
static inline float dist_hsum512(__m512 v)
{
    float t[16];
    float s = 0;
    _mm512_storeu_ps(t, v);
    for (int i = 0; i < 16; i++)
        s += t[i];
    return s;
}
#endif

/* Ask for the cache lines of [p, p + n) ahead of use (for reading; nta: the lines are read
 * once, keep them out of the outer caches). An asm statement on x86-64, not __builtin_prefetch:
 * GCC 12 treats the builtin as free of side effects, and its dead-code pass deleted the whole
 * request loop of the graph walk's batch (fx_search kept one prefetch instruction, for the next
 * candidate's list), so the walk fetched its rows one miss at a time (docs/search.md,
 * session 8). Other targets keep the builtin: check their machine code for it. */
static inline void dist_prefetch(const void *p, size_t n, int nta)
{
    for (size_t off = 0; off < n; off += 64) {
        const char *a = (const char *)p + off;
#if defined(__x86_64__)
        if (nta)
            __asm__ volatile("prefetchnta %0" : : "m"(*a));
        else
            __asm__ volatile("prefetcht0 %0" : : "m"(*a));
#else
        if (nta)
            __builtin_prefetch(a, 0, 0);
        else
            __builtin_prefetch(a);
#endif
    }
}

/* Inner product of a and b (d floats). */
static inline float dist_dot(const float *a, const float *b, size_t d)
{
    size_t i = 0;
    float r = 0;
#if defined(__AVX512F__)
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (; i + 64 <= d; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= d; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    r = dist_hsum512(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
#elif defined(__AVX2__) && defined(__FMA__)
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    for (; i + 16 <= d; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    __m256 s = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_hadd_ps(h, h);
    h = _mm_hadd_ps(h, h);
    r = _mm_cvtss_f32(h);
#endif
    for (; i < d; i++)
        r += a[i] * b[i];
    return r;
}

/* Squared Euclidean distance between a and b (d floats). */
static inline float dist_l2sq(const float *a, const float *b, size_t d)
{
    size_t i = 0;
    float r = 0;
#if defined(__AVX512F__)
    __m512 s0 = _mm512_setzero_ps();
    for (; i + 16 <= d; i += 16) {
        __m512 t = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        s0 = _mm512_fmadd_ps(t, t, s0);
    }
    r = dist_hsum512(s0);
#endif
    for (; i < d; i++) {
        float t = a[i] - b[i];
        r += t * t;
    }
    return r;
}

/* sum(a[i] * b[i]) over d bytes, a unsigned, b signed: the int8 first pass of the quantised
 * scan (search.c). AVX-512 VNNI does 64 products per instruction (vpdpbusd); products and
 * sums fit in 32 bits for d < 2^16. */
static inline int32_t dist_dot_u8s8(const uint8_t *a, const int8_t *b, size_t d)
{
    size_t i = 0;
    int32_t r = 0;
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
    __m512i s0 = _mm512_setzero_si512(), s1 = s0;
    for (; i + 128 <= d; i += 128) {
        s0 = _mm512_dpbusd_epi32(s0, _mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i));
        s1 = _mm512_dpbusd_epi32(s1, _mm512_loadu_si512(a + i + 64),
                                 _mm512_loadu_si512(b + i + 64));
    }
    for (; i + 64 <= d; i += 64)
        s0 = _mm512_dpbusd_epi32(s0, _mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i));
    {
        int32_t t[16];
        _mm512_storeu_si512(t, _mm512_add_epi32(s0, s1));
        for (int j = 0; j < 16; j++)
            r += t[j];
    }
#elif defined(__AVX2__)
    __m256i s = _mm256_setzero_si256();
    for (; i + 16 <= d; i += 16) {
        __m256i x = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256i y = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + i)));
        s = _mm256_add_epi32(s, _mm256_madd_epi16(x, y));
    }
    {
        int32_t t[8];
        _mm256_storeu_si256((__m256i *)t, s);
        for (int j = 0; j < 8; j++)
            r += t[j];
    }
#endif
    for (; i < d; i++)
        r += (int32_t)a[i] * (int32_t)b[i];
    return r;
}

/* Sum of a[i] over the set bits i of mask (words 64-bit words, bit j of word w is i = 64w + j):
 * the 1-bit first pass of the quantised scan (search.c) scores a row's sign bits against the
 * 8-bit query this way. a must have 64 * words readable bytes. */
static inline uint32_t dist_sum_u8_masked(const uint8_t *a, const uint64_t *mask, size_t words)
{
    uint64_t r = 0;
#if defined(__AVX512BW__)
    __m512i s = _mm512_setzero_si512();
    for (size_t w = 0; w < words; w++) {
        __m512i v = _mm512_maskz_loadu_epi8((__mmask64)mask[w], a + 64 * w);
        s = _mm512_add_epi64(s, _mm512_sad_epu8(v, _mm512_setzero_si512()));
    }
    {
        __m256i h = _mm256_add_epi64(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
        __m128i x = _mm_add_epi64(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        r = (uint64_t)_mm_cvtsi128_si64(x) + (uint64_t)_mm_extract_epi64(x, 1);
    }
#else
    for (size_t w = 0; w < words; w++)
        for (uint64_t m = mask[w]; m != 0; m &= m - 1)
            r += a[64 * w + (size_t)__builtin_ctzll(m)];
#endif
    return (uint32_t)r;
}

#endif
