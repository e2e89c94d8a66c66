#include "blas.h"
#include "thread.h"
#include <cblas.h>
#include <stdatomic.h>

static _Atomic int64_t macs[BLT_MACS_KINDS];

void blt_macs_add(int kind, int64_t n) { atomic_fetch_add_explicit(&macs[kind], n, memory_order_relaxed); }

void blt_macs_read(int64_t out[BLT_MACS_KINDS])
{
    for (int i = 0; i < BLT_MACS_KINDS; i++) out[i] = atomic_load_explicit(&macs[i], memory_order_relaxed);
}

void blt_macs_reset(void)
{
    for (int i = 0; i < BLT_MACS_KINDS; i++) atomic_store_explicit(&macs[i], 0, memory_order_relaxed);
}

/* what a product of these sizes executes (cblas does nothing when one is 0) */
static int64_t product_macs(int64_t M, int64_t N, int64_t K)
{
    return M > 0 && N > 0 && K > 0 ? M * N * K : 0;
}

void blt_blas_init(void) { openblas_set_num_threads(1); }

const char *blt_blas_info(void) { return openblas_get_config(); }

void blt_sgemm_serial(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* cblas may not touch C when K == 0; make beta apply */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    if (M == 1) {
        /* one row (a generated position): a matrix-vector product. OpenBLAS's small-matrix
         * sgemm path ran it at a fraction of sgemv's speed. y = op(B)^T x, x = row 0 of op(A). */
        int64_t incx = transA ? lda : 1;
        if (transB) /* B is [N,K]: y = B x */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)N, (blasint)K, alpha, B, (blasint)ldb, A,
                        (blasint)incx, beta, C, 1);
        else        /* B is [K,N]: y = B^T x */
            cblas_sgemv(CblasRowMajor, CblasTrans, (blasint)K, (blasint)N, alpha, B, (blasint)ldb, A,
                        (blasint)incx, beta, C, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C,
                (blasint)ldc);
}

typedef struct {
    int ta, tb;
    int64_t M, N, K;
    float alpha, beta;
    const float *A, *B;
    int64_t lda, ldb, ldc;
    float *C;
    int split_rows;
} gemm_job;

static void gemm_chunk(void *ctx, int64_t b, int64_t e, int tid)
{
    (void)tid;
    gemm_job *j = ctx;
    if (j->split_rows) {
        /* rows b..e of op(A) and C */
        const float *A = j->ta ? j->A + b : j->A + b * j->lda;
        blt_sgemm_serial(j->ta, j->tb, e - b, j->N, j->K, j->alpha, A, j->lda, j->B, j->ldb,
                         j->beta, j->C + b * j->ldc, j->ldc);
    } else {
        /* columns b..e of op(B) and C */
        const float *B = j->tb ? j->B + b * j->ldb : j->B + b;
        blt_sgemm_serial(j->ta, j->tb, j->M, e - b, j->K, j->alpha, j->A, j->lda, B, j->ldb,
                         j->beta, j->C + b, j->ldc);
    }
}

/* blt_sgemm without counting (blt_sgemm_batched counts its products itself) */
static void sgemm_pool(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc)
{
    gemm_job j = {transA, transB, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C, M >= N};
    double flops = 2.0 * (double)M * (double)N * (double)K;
    if (flops < 2e6 || blt_threads_count() == 1) {
        blt_sgemm_serial(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* chunks of at least 32 rows/columns keep the micro-kernels busy */
    blt_parallel_for(j.split_rows ? M : N, 32, gemm_chunk, &j);
}

void blt_sgemm(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
               float *C, int64_t ldc)
{
    blt_macs_add(BLT_MACS_MATMUL, product_macs(M, N, K));
    sgemm_pool(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

typedef struct {
    gemm_job g;
    int64_t sA, sB, sC;
} batch_job;

static void batch_chunk(void *ctx, int64_t b, int64_t e, int tid)
{
    (void)tid;
    batch_job *j = ctx;
    for (int64_t i = b; i < e; i++)
        blt_sgemm_serial(j->g.ta, j->g.tb, j->g.M, j->g.N, j->g.K, j->g.alpha, j->g.A + i * j->sA,
                         j->g.lda, j->g.B + i * j->sB, j->g.ldb, j->g.beta, j->g.C + i * j->sC,
                         j->g.ldc);
}

void blt_sgemm_batched(int transA, int transB, int64_t count, int64_t M, int64_t N, int64_t K,
                       float alpha, const float *A, int64_t lda, int64_t sA, const float *B,
                       int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc, int64_t sC)
{
    if (count > 0) blt_macs_add(BLT_MACS_MATMUL, count * product_macs(M, N, K));
    if (count < blt_threads_count()) {
        for (int64_t i = 0; i < count; i++)
            sgemm_pool(transA, transB, M, N, K, alpha, A + i * sA, lda, B + i * sB, ldb, beta,
                      C + i * sC, ldc);
        return;
    }
    batch_job j = {{transA, transB, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C, 1}, sA, sB, sC};
    blt_parallel_for(count, 1, batch_chunk, &j);
}

void blt_sgemm_reference(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                         float *C, int64_t ldc, int threads, int reps)
{
    /* threads are set once for all the repetitions: switching OpenBLAS between one
     * and several threads on every call would time its thread start-up too */
    openblas_set_num_threads(threads);
    for (int i = 0; i < reps; i++)
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C,
                    (blasint)ldc);
    openblas_set_num_threads(1);
}
