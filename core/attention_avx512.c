/* AVX-512 block products of the attention kernel (attention.c), used where the CPU
 * has AVX-512F (checked at run time) and not switched off (BLT_NO_AVX512=1,
 * blt_attention_set_kernel). A block is at most 64 x 64: OpenBLAS spends much of such a
 * product packing its operands; here a 4-row by up-to-64-column tile of the result
 * stays in 16 registers for the whole inner loop. */
#include "attention_avx512.h"
#if defined(__x86_64__)
#include <immintrin.h>

#define T512 __attribute__((target("avx512f"), always_inline)) static inline

/* mask of the first n (0..16) lanes */
T512 __mmask16 lanes(int64_t n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* C[r, 0..n) = alpha * X[r, :] . Yt[:, c] for 4 rows (rows past m alias row 0 and are
 * not stored); NV = ceil(n / 16) vectors of columns. */
T512 void nt_tile(int NV, int rows, int64_t n, int64_t hd, float alpha, const float *X, int64_t ldx, const float *Yt,
                  int64_t ldt, float *C, int64_t ldc)
{
    __m512 acc[4][4];
    for (int r = 0; r < 4; r++)
        for (int v = 0; v < 4; v++) acc[r][v] = _mm512_setzero_ps();
    const float *x[4];
    for (int r = 0; r < 4; r++) x[r] = X + (r < rows ? r : 0) * ldx;
    for (int64_t d = 0; d < hd; d++) {
        __m512 y[4];
        for (int v = 0; v < NV; v++) {
            y[v] = _mm512_loadu_ps(Yt + d * ldt + 16 * v);
            __asm__("" : "+v"(y[v])); /* one load per vector, not one per row (GCC folds them into each FMA) */
        }
        for (int r = 0; r < 4; r++) {
            __m512 b = _mm512_set1_ps(x[r][d]);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(b, y[v], acc[r][v]);
        }
    }
    __m512 a = _mm512_set1_ps(alpha);
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < NV; v++)
            _mm512_mask_storeu_ps(C + r * ldc + 16 * v, lanes(n - 16 * v), _mm512_mul_ps(a, acc[r][v]));
}

__attribute__((target("avx512f")))
void blt_attn_nt_avx512(int64_t m, int64_t n, int64_t hd, float alpha, const float *X, int64_t ldx, const float *Yt,
                        int64_t ldt, float *C, int64_t ldc)
{
    int nv = (int)((n + 15) / 16);
    for (int64_t r = 0; r < m; r += 4) {
        int rows = m - r < 4 ? (int)(m - r) : 4;
        const float *x = X + r * ldx;
        float *c = C + r * ldc;
        /* constant NV in each call, so the tile's loops unroll into registers */
        switch (nv) {
        case 1: nt_tile(1, rows, n, hd, alpha, x, ldx, Yt, ldt, c, ldc); break;
        case 2: nt_tile(2, rows, n, hd, alpha, x, ldx, Yt, ldt, c, ldc); break;
        case 3: nt_tile(3, rows, n, hd, alpha, x, ldx, Yt, ldt, c, ldc); break;
        default: nt_tile(4, rows, n, hd, alpha, x, ldx, Yt, ldt, c, ldc); break;
        }
    }
}

/* C[r, d0 + 0..16 NV) += sum_k A(r, k) Y[k, d0 + ...] for R rows (4, or 8 when NV <= 2:
 * 16 sums in registers either way); tail: lanes left in the last vector. */
T512 void nn_tile(int NV, int R, int rows, int64_t kk, const float *A, int64_t sr, int64_t sk, const float *Y,
                  int64_t ldy, float *C, int64_t ldc, int64_t width)
{
    /* rows past m alias row 0: read, computed, never stored (no condition inside the
     * loops, so the compiler keeps all 16 sums in registers) */
    const __mmask16 m0 = lanes(width), m1 = lanes(width - 16), m2 = lanes(width - 32), m3 = lanes(width - 48);
    const __mmask16 mk[4] = {m0, m1, m2, m3};
    float *c[8];
    const float *a[8];
    for (int r = 0; r < R; r++) {
        c[r] = C + (r < rows ? r : 0) * ldc;
        a[r] = A + (r < rows ? r : 0) * sr;
    }
    __m512 acc[8][4];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_maskz_loadu_ps(mk[v], c[r] + 16 * v);
    for (int64_t k = 0; k < kk; k++) {
        __m512 y[4];
        for (int v = 0; v < NV; v++) y[v] = _mm512_maskz_loadu_ps(mk[v], Y + k * ldy + 16 * v);
        for (int r = 0; r < R; r++) {
            __m512 b = _mm512_set1_ps(a[r][k * sk]);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(b, y[v], acc[r][v]);
        }
    }
    for (int r = 0; r < R; r++)
        if (r < rows)
            for (int v = 0; v < NV; v++) _mm512_mask_storeu_ps(c[r] + 16 * v, mk[v], acc[r][v]);
}

__attribute__((target("avx512f")))
void blt_attn_nn_avx512(int64_t m, int64_t hd, int64_t kk, const float *A, int64_t sr, int64_t sk, const float *Y,
                        int64_t ldy, float *C, int64_t ldc)
{
    for (int64_t d0 = 0; d0 < hd; d0 += 64) {
        int64_t width = hd - d0 < 64 ? hd - d0 : 64;
        int nv = (int)((width + 15) / 16), R = nv <= 2 ? 8 : 4;
        for (int64_t r = 0; r < m; r += R) {
            int rows = m - r < R ? (int)(m - r) : R;
            const float *a = A + r * sr;
            float *c = C + r * ldc + d0;
            switch (nv) {
            case 1: nn_tile(1, 8, rows, kk, a, sr, sk, Y + d0, ldy, c, ldc, width); break;
            case 2: nn_tile(2, 8, rows, kk, a, sr, sk, Y + d0, ldy, c, ldc, width); break;
            case 3: nn_tile(3, 4, rows, kk, a, sr, sk, Y + d0, ldy, c, ldc, width); break;
            default: nn_tile(4, 4, rows, kk, a, sr, sk, Y + d0, ldy, c, ldc, width); break;
            }
        }
    }
}

int blt_cpu_has_avx512(void) { return __builtin_cpu_supports("avx512f"); }

#else
int blt_cpu_has_avx512(void) { return 0; }
void blt_attn_nt_avx512(int64_t m, int64_t n, int64_t hd, float alpha, const float *X, int64_t ldx, const float *Yt,
                        int64_t ldt, float *C, int64_t ldc) {}
void blt_attn_nn_avx512(int64_t m, int64_t hd, int64_t kk, const float *A, int64_t sr, int64_t sk, const float *Y,
                        int64_t ldy, float *C, int64_t ldc) {}
#endif
