#include "blas.h"
#include "bf16.h"
#include "dnnl.h"
#include "mem.h"
#include "thread.h"
#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* ---- which library serves a product ---- */

enum { MODE_AUTO, MODE_DNNL, MODE_OPENBLAS };
static int mode = MODE_AUTO;
static int dnnl_ok, bf16_native;
static char info[400];

/* Products on the main thread go to oneDNN from 2^24 multiply-adds with every side
 * at least 16 (auto mode, AVX-512 CPUs). Measured here (2 threads, median of 31 calls,
 * best of 3 runs): oneDNN took 1.2-1.7x OpenBLAS's time below 2^22, about the same at
 * 2^23-2^24 (0.84-1.2x; 1.3x and worse with a side under 16: K = 2 or 4), 0.44-0.55x
 * at 2^27-2^30, the BLT's shapes. oneDNN's fixed cost is waking its sleeping OpenMP
 * thread. Everything else stays on OpenBLAS, one row (M == 1) on its sgemv. */
#define DNNL_MIN_MACS ((int64_t)1 << 24)
#define DNNL_MIN_SIDE 16

blt_status blt_blas_init(void)
{
    openblas_set_num_threads(1);
    const char *m = getenv("BLT_BLAS"), *nod = getenv("BLT_NO_DNNL"), *nob = getenv("BLT_NO_BF16");
    if (!m || !*m || !strcmp(m, "auto")) mode = MODE_AUTO;
    else if (!strcmp(m, "dnnl") || !strcmp(m, "onednn")) mode = MODE_DNNL;
    else if (!strcmp(m, "openblas")) mode = MODE_OPENBLAS;
    else return blt_fail(BLT_EINVAL, "BLT_BLAS=%s: unknown library (want auto, onednn or openblas)", m);
    if (nod && *nod && strcmp(nod, "0")) mode = MODE_OPENBLAS;
    dnnl_ok = mode != MODE_OPENBLAS && blt_dnnl_init();
    if (mode == MODE_DNNL && !dnnl_ok)
        return blt_fail(BLT_EINVAL, "BLT_BLAS=onednn: %s", blt_dnnl_info());
    bf16_native = dnnl_ok && blt_dnnl_has_bf16() && !(nob && *nob && strcmp(nob, "0"));
    snprintf(info, sizeof info, "%s; %s; products: %s%s; bf16 rounding: %s", openblas_get_config(),
             mode == MODE_OPENBLAS ? "oneDNN not used" : blt_dnnl_info(),
             mode == MODE_OPENBLAS ? "OpenBLAS (forced)" : mode == MODE_DNNL ? "oneDNN (forced)"
             : !dnnl_ok || !blt_dnnl_has_avx512() ? "OpenBLAS" : "oneDNN from 2^24 multiply-adds (sides >= 16), else OpenBLAS",
             bf16_native ? ", bf16 on oneDNN" : ", bf16 widened to fp32",
             blt_cpu_has_bf16() ? "AVX512_BF16" : "scalar");
    return BLT_OK;
}

int blt_gemm_bf16_native(void) { return bf16_native; }

const char *blt_blas_info(void) { return info[0] ? info : openblas_get_config(); }

/* ---- per-shape statistics of the main products ---- */

static pthread_mutex_t stats_mu = PTHREAD_MUTEX_INITIALIZER;
static blt_gemm_stat stats[BLT_GEMM_STATS_CAP];
static int nstats;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* one more call (or calls) of this shape served by lib; new shapes past the cap
 * are not recorded */
static void record(int bf16, int ta, int tb, int64_t M, int64_t N, int64_t K, const char *lib,
                   const char *impl, int64_t calls, double seconds)
{
    char name[sizeof stats[0].lib];
    snprintf(name, sizeof name, "%s%s%s", lib, impl ? ":" : "", impl ? impl : "");
    pthread_mutex_lock(&stats_mu);
    int i = 0;
    while (i < nstats && !(stats[i].bf16 == bf16 && stats[i].ta == !!ta && stats[i].tb == !!tb && stats[i].M == M &&
                           stats[i].N == N && stats[i].K == K && !strcmp(stats[i].lib, name)))
        i++;
    if (i == nstats && nstats < BLT_GEMM_STATS_CAP) {
        blt_gemm_stat z = {bf16, !!ta, !!tb, M, N, K, {0}, 0, 0.0};
        memcpy(z.lib, name, sizeof name);
        stats[nstats++] = z;
    }
    if (i < nstats) {
        stats[i].calls += calls;
        stats[i].seconds += seconds;
    }
    pthread_mutex_unlock(&stats_mu);
}

int blt_blas_stats(blt_gemm_stat *out, int cap)
{
    pthread_mutex_lock(&stats_mu);
    int n = nstats < cap ? nstats : cap;
    memcpy(out, stats, (size_t)n * sizeof *out);
    pthread_mutex_unlock(&stats_mu);
    return n;
}

void blt_blas_stats_reset(void)
{
    pthread_mutex_lock(&stats_mu);
    nstats = 0;
    pthread_mutex_unlock(&stats_mu);
}

/* C = beta C: what a product with K == 0 leaves (0 * C is 0 even for NaN, as in BLAS) */
static void scale_c(int64_t M, int64_t N, float beta, float *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

/* oneDNN runs the product on this thread's OpenMP team of blt_threads_count()
 * threads while our pool sleeps; 1 when it did. bf16: A and B are bf16; widened: a
 * bf16 product widened to fp32 (for the statistics). */
static int try_dnnl(int bf16, int widened, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const void *A,
                    int64_t lda, const void *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    const char *impl = NULL;
    double t0 = now();
    blt_threads_park();
    if (blt_dnnl_gemm(bf16 ? BLT_DNNL_BF16 : BLT_DNNL_F32, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                      blt_threads_count(), &impl))
        return 0;
    record(bf16 || widened, ta, tb, M, N, K, widened ? "widened+onednn" : "onednn", impl, 1, now() - t0);
    return 1;
}

/* fp32 products on the main thread: oneDNN's when the rule says so */
static int want_dnnl(int64_t M, int64_t N, int64_t K)
{
    if (!dnnl_ok || K <= 0 || blt_threads_in_parallel()) return 0;
    if (mode == MODE_DNNL) return 1;
    return blt_dnnl_has_avx512() && M >= DNNL_MIN_SIDE && N >= DNNL_MIN_SIDE && K >= DNNL_MIN_SIDE &&
           M * N * K >= DNNL_MIN_MACS;
}

void blt_sgemm_serial(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* cblas may not touch C when K == 0; make beta apply */
        scale_c(M, N, beta, C, ldc);
        return;
    }
    if (M == 1) {
        /* one row (a generated position): a matrix-vector product. OpenBLAS's small-matrix
         * sgemm path ran it at a fraction of sgemv's speed. y = op(B)^T x, x = row 0 of op(A). */
        int64_t incx = transA ? lda : 1;
        if (beta == 0.0f) { /* C may be uninitialised (a fresh gradient): some OpenBLAS versions scale it by 0 */
            memset(C, 0, sizeof(float) * (size_t)N);
            beta = 1.0f;
        }
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

/* sgemm_pool or oneDNN, recorded in the statistics under bf16 (1 for a widened
 * bf16 product) */
static void sgemm_dispatch(int bf16, int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                           const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                           int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { scale_c(M, N, beta, C, ldc); return; } /* nothing to record: no product */
    if (want_dnnl(M, N, K) && try_dnnl(0, bf16, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        return;
    double t0 = now();
    sgemm_pool(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    record(bf16, transA, transB, M, N, K, bf16 ? "widened+openblas" : "openblas", NULL, 1, now() - t0);
}

void blt_sgemm(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
               float *C, int64_t ldc)
{
    blt_macs_add(BLT_MACS_MATMUL, product_macs(M, N, K));
    sgemm_dispatch(0, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* a stored [rows, cols] bf16 matrix (row stride ld) widened into a dense fp32 one */
static float *widen(const uint16_t *X, int64_t rows, int64_t cols, int64_t ld)
{
    size_t n = (size_t)rows * (size_t)cols;
    float *x = blt_mem_alloc(n * sizeof *x + 1); /* + 1: never a 0-byte request */
    if (x)
        for (int64_t r = 0; r < rows; r++) blt_bf16_to_f32(X + r * ld, x + r * cols, cols);
    return x;
}

blt_status blt_gemm_bf16(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                         const uint16_t *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta,
                         float *C, int64_t ldc)
{
    blt_macs_add(BLT_MACS_MATMUL, product_macs(M, N, K));
    if (M <= 0 || N <= 0) return BLT_OK;
    if (K <= 0) { scale_c(M, N, beta, C, ldc); return BLT_OK; }
    if (bf16_native && !blt_threads_in_parallel() &&
        try_dnnl(1, 0, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        return BLT_OK;
    /* the fallback: bf16 values are exact in fp32, so this is the same product with
     * fp32 accumulation, only slower */
    int64_t ra = transA ? K : M, ca = transA ? M : K, rb = transB ? N : K, cb = transB ? K : N;
    float *a = widen(A, ra, ca, lda), *b = a ? widen(B, rb, cb, ldb) : NULL;
    if (!b) {
        if (a) blt_mem_free(a, (size_t)ra * (size_t)ca * sizeof *a + 1);
        return blt_fail(BLT_ENOMEM, "gemm_bf16: out of memory widening operands [%lld x %lld] and [%lld x %lld]",
                        (long long)ra, (long long)ca, (long long)rb, (long long)cb);
    }
    sgemm_dispatch(1, transA, transB, M, N, K, alpha, a, ca, b, cb, beta, C, ldc);
    blt_mem_free(a, (size_t)ra * (size_t)ca * sizeof *a + 1);
    blt_mem_free(b, (size_t)rb * (size_t)cb * sizeof *b + 1);
    return BLT_OK;
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
            sgemm_dispatch(0, transA, transB, M, N, K, alpha, A + i * sA, lda, B + i * sB, ldb, beta,
                           C + i * sC, ldc);
        return;
    }
    batch_job j = {{transA, transB, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C, 1}, sA, sB, sC};
    double t0 = now();
    blt_parallel_for(count, 1, batch_chunk, &j);
    record(0, transA, transB, M, N, K, "openblas", "batched", count, now() - t0);
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
