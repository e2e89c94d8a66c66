/* bfloat16 conversions (the upper 16 bits of an fp32, rounded). */
#ifndef BLT_BF16_H
#define BLT_BF16_H
#include <stdint.h>

/* fp32 -> bf16, round to nearest even, exactly as the AVX512_BF16 instructions do
 * (so both paths give the same bits): denormal inputs become signed zeros, NaNs stay
 * NaN (made quiet). The vector path is taken when the CPU has AVX512_BF16 (checked
 * at run time) and force_scalar is 0. */
void blt_f32_to_bf16(const float *x, uint16_t *y, int64_t n, int force_scalar);
/* bf16 -> fp32, exact */
void blt_bf16_to_f32(const uint16_t *x, float *y, int64_t n);
/* y[n] = sum_k W[n,k] x[k] for n < N (row stride ldw): bf16 operands, fp32 sums
 * (core/gemv_bf16.c). AVX512_BF16's dot products where the CPU has them, unless
 * force_scalar or BLT_NO_BF16 is set; else a scalar loop with the same products
 * (exact in fp32), summed in another order. Parallel from 2 MFLOP. */
void blt_gemv_bf16(const uint16_t *w, int64_t ldw, const uint16_t *x, float *y, int64_t N, int64_t K,
                   int force_scalar);
/* the CPU (and OS) can run AVX512_BF16 instructions */
int blt_cpu_has_bf16(void);

#endif
