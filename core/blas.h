/* Matrix products: the only place that talks to cblas. Row-major throughout.
 * OpenBLAS runs single-threaded; parallel products split C into one block of rows
 * (or columns) per pool thread, which matched OpenBLAS's own threading here. */
#ifndef BLT_BLAS_H
#define BLT_BLAS_H
#include <stdint.h>

void blt_blas_init(void);
/* C[M,N] = alpha * op(A) op(B) + beta * C; op(A) is [M,K], op(B) is [K,N]. */
void blt_sgemm(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
               float *C, int64_t ldc);
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
