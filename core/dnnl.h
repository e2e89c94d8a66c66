/* oneDNN matrix products: the only file that talks to oneDNN (core/dnnl.c).
 * libdnnl.so.2 is loaded at run time (dlopen), so ./blt runs without it and every
 * product then stays on OpenBLAS. Built only where the header exists (BLT_HAVE_DNNL,
 * set by the Makefile); elsewhere these functions report "absent". */
#ifndef BLT_DNNL_H
#define BLT_DNNL_H
#include <stdint.h>

enum { BLT_DNNL_F32, BLT_DNNL_BF16 }; /* element type of A and B; C is always float */

/* Loads oneDNN once (later calls return the first answer): 1 when it can serve
 * products, 0 when absent or unusable (blt_dnnl_info says why). */
int blt_dnnl_init(void);
/* "oneDNN 2.6.3 (avx512_core_bf16)", or why it is not used */
const char *blt_dnnl_info(void);
/* oneDNN's instruction set has these natively (checked at run time) */
int blt_dnnl_has_avx512(void);
int blt_dnnl_has_bf16(void);
/* C[M,N] = alpha op(A) op(B) + beta C (row-major, A and B of type dtype, fp32
 * accumulation), run by nthreads OpenMP threads started from the calling thread.
 * M, N, K > 0. Returns 0 when done; nonzero when oneDNN cannot serve this shape
 * (remembered: later calls for it return at once), and C is untouched then.
 * *impl names the implementation that ran ("brg:avx512_core", ...). */
int blt_dnnl_gemm(int dtype, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                  const void *A, int64_t lda, const void *B, int64_t ldb, float beta, float *C,
                  int64_t ldc, int nthreads, const char **impl);

#endif
