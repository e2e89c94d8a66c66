/* Matrix products: the only place that talks to cblas. Row-major throughout.
 * OpenBLAS runs single-threaded; parallel products split C into one block of rows
 * (or columns) per pool thread, which matched OpenBLAS's own threading here. */
#ifndef BLT_BLAS_H
#define BLT_BLAS_H
#include <stdint.h>

#include "status.h"

/* Reads BLT_BLAS (auto | onednn | openblas: which library serves the main products;
 * default auto), BLT_NO_DNNL=1 (= openblas) and BLT_NO_BF16=1 (bf16 products widened
 * to fp32), and loads oneDNN when it may be used (core/dnnl.c). Fails on an unknown
 * BLT_BLAS, or on BLT_BLAS=onednn where oneDNN is absent. */
blt_status blt_blas_init(void);
/* C[M,N] = alpha * op(A) op(B) + beta * C; op(A) is [M,K], op(B) is [K,N]. */
void blt_sgemm(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
               float *C, int64_t ldc);
/* Products from the main thread go to oneDNN (fp32, from 2^24 multiply-adds, sides >= 16,
 * on AVX-512 CPUs) or to OpenBLAS on slices in the pool; blt_blas_info says which. */

/* Same, on the calling thread only (for use inside pool tasks); not counted in the
 * multiply-adds below: its callers count their own. */
void blt_sgemm_serial(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc);
/* count independent products; matrix i starts at A + i*sA, B + i*sB, C + i*sC. */
void blt_sgemm_batched(int transA, int transB, int64_t count, int64_t M, int64_t N, int64_t K,
                       float alpha, const float *A, int64_t lda, int64_t sA, const float *B,
                       int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc, int64_t sC);
const char *blt_blas_info(void);

/* C[M,N] = alpha op(A) op(B) + beta C with A and B in bf16 (blt_f32_to_bf16, bf16.h)
 * and fp32 accumulation: oneDNN's bf16 kernels where the CPU has them, else the
 * operands widened to fp32 and blt_sgemm's path. Fails only when out of memory. */
blt_status blt_gemm_bf16(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                         const uint16_t *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta,
                         float *C, int64_t ldc);

/* 1 when blt_gemm_bf16 runs on oneDNN's bf16 kernels (AVX512_BF16, oneDNN loaded,
 * BLT_NO_BF16 unset); 0 when it widens to fp32 (correct, but slower than fp32). */
int blt_gemm_bf16_native(void);

/* Which library served the main products (blt_sgemm, blt_sgemm_batched,
 * blt_gemm_bf16; not blt_sgemm_serial), per shape: calls and seconds since the last
 * reset. lib: "openblas", "onednn:<kernel>", "widened+openblas", ... */
typedef struct {
    int bf16, ta, tb;
    int64_t M, N, K;
    char lib[64];
    int64_t calls;
    double seconds;
} blt_gemm_stat;
#define BLT_GEMM_STATS_CAP 256 /* shapes recorded; later new ones are not */
int blt_blas_stats(blt_gemm_stat *out, int cap);
void blt_blas_stats_reset(void);

/* Multiply-adds executed, kept to check the FLOP formulae of lua/blt/flops.lua
 * (docs/flops.md). matmul: every product through blt_sgemm / blt_sgemm_batched;
 * attention: the block products of core/attention.c (whole key blocks);
 * attention_useful: the part of those for (query, key) pairs the mask allows.
 * Always on: one relaxed atomic add per call or per attention task. */
enum { BLT_MACS_MATMUL, BLT_MACS_ATTENTION, BLT_MACS_ATTENTION_USEFUL, BLT_MACS_KINDS };
void blt_macs_add(int kind, int64_t n);
void blt_macs_read(int64_t out[BLT_MACS_KINDS]);
void blt_macs_reset(void);
/* reps calls of plain cblas_sgemm with OpenBLAS's own threads: the reference for
 * benchmarks. */
void blt_sgemm_reference(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                         float *C, int64_t ldc, int threads, int reps);

#endif
