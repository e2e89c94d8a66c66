#include "bf16.h"
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

int blt_cpu_has_bf16(void)
{
#if defined(__x86_64__)
    static int has = -1;
    if (has < 0) {
        unsigned a, b, c, d;
        /* __builtin_cpu_supports checks that the OS saves the zmm registers too;
         * AVX512_BF16 itself is CPUID leaf 7, sub-leaf 1, EAX bit 5 */
        has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
              __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 5 & 1);
    }
    return has;
#else
    return 0;
#endif
}

static uint16_t round_one(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(u >> 16 | 0x40); /* NaN: quiet */
    if ((u & 0x7f800000u) == 0) u &= 0x80000000u; /* denormal (or zero): signed zero */
    u += 0x7fffu + (u >> 16 & 1); /* to nearest, ties to even; overflow carries into inf */
    return (uint16_t)(u >> 16);
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static int64_t round_avx512(const float *x, uint16_t *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
        _mm512_storeu_si512((void *)(y + i), (__m512i)v);
    }
    return i; /* the tail goes through round_one, which matches the instruction */
}
#endif

void blt_f32_to_bf16(const float *x, uint16_t *y, int64_t n, int force_scalar)
{
    int64_t i = 0;
#if defined(__x86_64__)
    if (!force_scalar && blt_cpu_has_bf16()) i = round_avx512(x, y, n);
#endif
    for (; i < n; i++) y[i] = round_one(x[i]);
}

void blt_bf16_to_f32(const uint16_t *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)x[i] << 16;
        memcpy(&y[i], &u, 4);
    }
}
