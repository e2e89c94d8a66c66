/* One-row products with bf16 operands: y = W x, W [N,K] and x [K] in bf16, fp32
 * accumulation. Generation's cached step multiplies one row by every weight matrix
 * once per byte: it is memory-bound, and bf16 weights halve the bytes it reads. */
#include "bf16.h"
#include "blas.h"
#include "thread.h"
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* bf16 -> fp32 is exact: the bits shifted up */
static inline float widen1(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Rows [n0, n1): each product of two bf16 values is exact in fp32 (8 x 8 significant
 * bits), so only the order of the fp32 sums differs from the vector path. */
static void rows_scalar(const uint16_t *w, int64_t ldw, const uint16_t *x, float *y, int64_t n0, int64_t n1,
                        int64_t K)
{
    for (int64_t n = n0; n < n1; n++) {
        const uint16_t *r = w + n * ldw;
        float acc = 0.0f;
        for (int64_t k = 0; k < K; k++) acc += widen1(r[k]) * widen1(x[k]);
        y[n] = acc;
    }
}

#if defined(__x86_64__)
/* VDPBF16PS: 16 fp32 lanes each add the products of a pair of bf16s. Four rows at a
 * time share each load of x; the tail of K goes through masked loads (zeros add 0). */
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void rows_avx512(const uint16_t *w, int64_t ldw, const uint16_t *x, float *y, int64_t n0, int64_t n1,
                        int64_t K)
{
    int64_t kv = K & ~(int64_t)31;
    __mmask32 tail = (__mmask32)((K - kv) ? (1ull << (K - kv)) - 1 : 0);
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) {
        const uint16_t *r0 = w + n * ldw, *r1 = r0 + ldw, *r2 = r1 + ldw, *r3 = r2 + ldw;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
               a3 = _mm512_setzero_ps();
        for (int64_t k = 0; k < kv; k += 32) {
            __m512bh xv = (__m512bh)_mm512_loadu_si512((const void *)(x + k));
            a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512((const void *)(r0 + k)), xv);
            a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512((const void *)(r1 + k)), xv);
            a2 = _mm512_dpbf16_ps(a2, (__m512bh)_mm512_loadu_si512((const void *)(r2 + k)), xv);
            a3 = _mm512_dpbf16_ps(a3, (__m512bh)_mm512_loadu_si512((const void *)(r3 + k)), xv);
        }
        if (tail) {
            __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(tail, x + kv);
            a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_maskz_loadu_epi16(tail, r0 + kv), xv);
            a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_maskz_loadu_epi16(tail, r1 + kv), xv);
            a2 = _mm512_dpbf16_ps(a2, (__m512bh)_mm512_maskz_loadu_epi16(tail, r2 + kv), xv);
            a3 = _mm512_dpbf16_ps(a3, (__m512bh)_mm512_maskz_loadu_epi16(tail, r3 + kv), xv);
        }
        y[n] = _mm512_reduce_add_ps(a0);
        y[n + 1] = _mm512_reduce_add_ps(a1);
        y[n + 2] = _mm512_reduce_add_ps(a2);
        y[n + 3] = _mm512_reduce_add_ps(a3);
    }
    for (; n < n1; n++) {
        const uint16_t *r = w + n * ldw;
        __m512 a = _mm512_setzero_ps();
        for (int64_t k = 0; k < kv; k += 32)
            a = _mm512_dpbf16_ps(a, (__m512bh)_mm512_loadu_si512((const void *)(r + k)),
                                 (__m512bh)_mm512_loadu_si512((const void *)(x + k)));
        if (tail)
            a = _mm512_dpbf16_ps(a, (__m512bh)_mm512_maskz_loadu_epi16(tail, r + kv),
                                 (__m512bh)_mm512_maskz_loadu_epi16(tail, x + kv));
        y[n] = _mm512_reduce_add_ps(a);
    }
}
#endif

/* The vector path unless the CPU lacks AVX512_BF16 or BLT_NO_BF16 is set (which
 * forces the scalar path, as it forces widened products in blas.c). */
static int vector_ok(void)
{
    static int ok = -1;
    if (ok < 0) {
        const char *nob = getenv("BLT_NO_BF16");
        ok = blt_cpu_has_bf16() && !(nob && *nob && strcmp(nob, "0"));
    }
    return ok;
}

typedef struct {
    const uint16_t *w, *x;
    float *y;
    int64_t ldw, K;
    int vector;
} gemv_job;

static void gemv_chunk(void *ctx, int64_t n0, int64_t n1, int tid)
{
    (void)tid;
    const gemv_job *j = ctx;
#if defined(__x86_64__)
    if (j->vector) { rows_avx512(j->w, j->ldw, j->x, j->y, n0, n1, j->K); return; }
#endif
    rows_scalar(j->w, j->ldw, j->x, j->y, n0, n1, j->K);
}

void blt_gemv_bf16(const uint16_t *w, int64_t ldw, const uint16_t *x, float *y, int64_t N, int64_t K,
                   int force_scalar)
{
    if (N <= 0) return;
    if (K > 0) blt_macs_add(BLT_MACS_MATMUL, N * K);
    gemv_job j = {w, x, y, ldw, K, !force_scalar && vector_ok()};
    /* as blt_sgemm: below 2 MFLOP the pool's wake-up costs more than it saves */
    if (2.0 * (double)N * (double)K < 2e6 || blt_threads_count() == 1) gemv_chunk(&j, 0, N, 0);
    else blt_parallel_for(N, 64, gemv_chunk, &j);
}
