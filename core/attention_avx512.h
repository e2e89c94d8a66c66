/* AVX-512 block products for attention.c; call them only where blt_cpu_has_avx512(). */
#ifndef BLT_ATTENTION_AVX512_H
#define BLT_ATTENTION_AVX512_H
#include <stdint.h>

/* the CPU (and OS) run AVX-512F */
int blt_cpu_has_avx512(void);
/* C[r*ldc + c] = alpha * sum_d X[r*ldx + d] * Yt[d*ldt + c] for r < m, c < n <= 64:
 * X times the transpose of a block stored transposed (Yt, hd rows). Yt's columns
 * up to n rounded up to 16 must be readable. */
void blt_attn_nt_avx512(int64_t m, int64_t n, int64_t hd, float alpha, const float *X, int64_t ldx, const float *Yt,
                        int64_t ldt, float *C, int64_t ldc);
/* C[r*ldc + d] += sum_k A[r*sr + k*sk] * Y[k*ldy + d] for r < m, d < hd, k < kk:
 * A (sr = lda, sk = 1) or its transpose (sr = 1, sk = lda) times Y. */
void blt_attn_nn_avx512(int64_t m, int64_t hd, int64_t kk, const float *A, int64_t sr, int64_t sk, const float *Y,
                        int64_t ldy, float *C, int64_t ldc);

#endif
