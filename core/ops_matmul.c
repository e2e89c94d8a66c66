/* Matrix products with their backward passes, through blt_sgemm, or blt_gemm_bf16
 * for blt_linear in bf16 precision (blt_set_precision). */
#include "ops.h"
#include "bf16.h"
#include "blas.h"
#include "mem.h"
#include "thread.h"
#include <stdlib.h>
#include <string.h>

/* Shapes of one product: batch count and the stored row lengths. */
typedef struct { int64_t Bt, M, N, K, lda, ldb, sA, sB; int ta, tb; } mm_dims;

static blt_status matmul_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    blt_tensor *a = n->saved[0], *b = n->saved[1];
    mm_dims d;
    memcpy(&d, n->aux, sizeof d);
    const float *A = blt_f32(a), *B = blt_f32(b), *G = blt_f32(g);
    int64_t sG = d.M * d.N, sBg = d.Bt > 1 ? d.sB : 0;
    if (gin[0]) {
        float *dA = blt_f32(gin[0]);
        if (!d.ta) /* dA[M,K] += G op(B)^T */
            blt_sgemm_batched(0, !d.tb, d.Bt, d.M, d.K, d.N, 1.0f, G, d.N, sG, B, d.ldb, sBg, 1.0f, dA,
                              d.K, d.sA);
        else /* dA[K,M] += op(B) G^T */
            blt_sgemm_batched(d.tb, 1, d.Bt, d.K, d.M, d.N, 1.0f, B, d.ldb, sBg, G, d.N, sG, 1.0f, dA,
                              d.M, d.sA);
    }
    if (gin[1]) {
        float *dB = blt_f32(gin[1]);
        if (d.Bt > 1) {
            if (!d.tb) /* dB[K,N] += op(A)^T G */
                blt_sgemm_batched(!d.ta, 0, d.Bt, d.K, d.N, d.M, 1.0f, A, d.lda, d.sA, G, d.N, sG, 1.0f,
                                  dB, d.N, d.sB);
            else /* dB[N,K] += G^T op(A) */
                blt_sgemm_batched(1, d.ta, d.Bt, d.N, d.K, d.M, 1.0f, G, d.N, sG, A, d.lda, d.sA, 1.0f,
                                  dB, d.K, d.sB);
        } else {
            if (!d.tb)
                blt_sgemm(!d.ta, 0, d.K, d.N, d.M, 1.0f, A, d.lda, G, d.N, 1.0f, dB, d.N);
            else
                blt_sgemm(1, d.ta, d.N, d.K, d.M, 1.0f, G, d.N, A, d.lda, 1.0f, dB, d.K);
        }
    }
    return BLT_OK;
}

blt_status blt_matmul(blt_tensor **out, blt_tensor *a, blt_tensor *b, int ta, int tb)
{
    BLT_TRY(blt_check("matmul", "a", a, BLT_F32));
    BLT_TRY(blt_check("matmul", "b", b, BLT_F32));
    char b1[160], b2[160];
    mm_dims d = {0};
    d.ta = ta;
    d.tb = tb;
    int64_t shape[BLT_MAX_DIMS];
    int nd;
    if (a->ndim == 3 && b->ndim == 3) {
        if (a->shape[0] != b->shape[0])
            return blt_fail(BLT_EINVAL, "matmul: batch sizes differ: a %s, b %s",
                            blt_shape_str(a, b1, sizeof b1), blt_shape_str(b, b2, sizeof b2));
        d.Bt = a->shape[0];
        d.M = ta ? a->shape[2] : a->shape[1];
        d.K = ta ? a->shape[1] : a->shape[2];
        nd = 3;
        shape[0] = d.Bt;
    } else if (b->ndim == 2 && a->ndim >= 2 && (!ta || a->ndim == 2)) {
        d.Bt = 1;
        d.K = ta ? a->shape[0] : a->shape[a->ndim - 1];
        d.M = ta ? a->shape[1] : a->numel / (d.K ? d.K : 1);
        if (d.K == 0) { d.M = 1; for (int i = 0; i < a->ndim - 1; i++) d.M *= a->shape[i]; }
        nd = a->ndim;
        for (int i = 0; i < a->ndim - 2; i++) shape[i] = a->shape[i];
    } else {
        return blt_fail(BLT_EINVAL, "matmul: unsupported shapes a %s, b %s (want [..,M,K] x [K,N], or "
                        "[B,M,K] x [B,K,N]; a transposed only when 2-d)", blt_shape_str(a, b1, sizeof b1),
                        blt_shape_str(b, b2, sizeof b2));
    }
    int64_t bK = tb ? b->shape[b->ndim - 1] : b->shape[b->ndim - 2];
    d.N = tb ? b->shape[b->ndim - 2] : b->shape[b->ndim - 1];
    if (bK != d.K)
        return blt_fail(BLT_EINVAL, "matmul: inner dimensions differ: a %s%s has %lld, b %s%s has %lld",
                        blt_shape_str(a, b1, sizeof b1), ta ? " (transposed)" : "", (long long)d.K,
                        blt_shape_str(b, b2, sizeof b2), tb ? " (transposed)" : "", (long long)bK);
    /* [..,M,K] x [K,N] keeps a's leading dims: its rows are M only when a is 2-d */
    shape[nd - 2] = (a->ndim == 3 && b->ndim == 3) || a->ndim == 2 ? d.M : a->shape[a->ndim - 2];
    shape[nd - 1] = d.N;
    d.lda = ta ? d.M : d.K;
    d.ldb = tb ? d.K : d.N;
    d.sA = d.M * d.K;
    d.sB = d.K * d.N;
    blt_tensor *ac = NULL, *bc = NULL, *y = NULL;
    BLT_TRY(blt_contiguous(&ac, a));
    blt_status s = blt_contiguous(&bc, b);
    if (s == BLT_OK) s = blt_tensor_new(&y, BLT_F32, nd, shape);
    if (s == BLT_OK) {
        if (d.Bt > 1 || nd == 3)
            blt_sgemm_batched(ta, tb, d.Bt, d.M, d.N, d.K, 1.0f, blt_f32(ac), d.lda, d.sA, blt_f32(bc),
                              d.ldb, d.sB, 0.0f, blt_f32(y), d.N, d.M * d.N);
        else
            blt_sgemm(ta, tb, d.M, d.N, d.K, 1.0f, blt_f32(ac), d.lda, blt_f32(bc), d.ldb, 0.0f,
                      blt_f32(y), d.N);
    }
    blt_tensor *in[2] = {ac, bc};
    s = blt_op_finish(out, y, s, "matmul", matmul_bw, 2, in,
                      &(blt_node_keep){.save = {ac, bc}, .newbytes = sizeof d, .arg = &d});
    blt_tensor_release(ac);
    blt_tensor_release(bc);
    return s;
}

/* ---- linear ---- */

static int linear_bf16; /* blt_set_precision */

blt_status blt_set_precision(int bf16)
{
    const char *slow = getenv("BLT_BF16_SLOW"); /* tests: the bf16 path on any machine, widened */
    if (bf16 && !blt_gemm_bf16_native() && !(slow && *slow && strcmp(slow, "0"))) {
        const char *nob = getenv("BLT_NO_BF16");
        return blt_fail(BLT_EINVAL, "bf16 products would be widened to fp32 here, slower than fp32: %s",
                        nob && *nob && strcmp(nob, "0") ? "BLT_NO_BF16 is set"
                        : !blt_cpu_has_bf16() ? "this CPU has no AVX512_BF16"
                        : "oneDNN is not in use (BLT_BLAS, BLT_NO_DNNL, or not installed)");
    }
    linear_bf16 = !!bf16;
    return BLT_OK;
}

int blt_precision(void) { return linear_bf16; }

static int64_t roundings[2]; /* weight storages rounded to bf16, and their floats (blt_bf16_roundings) */

void blt_bf16_roundings(int64_t out[2]) { out[0] = roundings[0]; out[1] = roundings[1]; }

/* The bf16 copy of t's data: the whole storage is rounded once per version (the
 * parameters share one flat storage, so once per optimiser step for all of them). */
static const uint16_t *storage_bf16(const blt_tensor *t)
{
    blt_storage *st = t->st;
    size_t n = st->nbytes / sizeof(float);
    if (!st->bf16) {
        st->bf16_bytes = n * sizeof(uint16_t) + 2; /* + 2: never a 0-byte request */
        st->bf16 = blt_mem_alloc(st->bf16_bytes);
        if (!st->bf16) return NULL;
        st->bf16_version = st->version + 1; /* stale */
    }
    if (st->bf16_version != st->version) {
        blt_f32_to_bf16(st->data, st->bf16, (int64_t)n, 0);
        st->bf16_version = st->version;
        roundings[0]++;
        roundings[1] += (int64_t)n;
    }
    return st->bf16 + t->offset;
}

/* a per-call bf16 copy of n floats (activations, output gradients); free with bf16_free */
static uint16_t *bf16_copy(const float *x, int64_t n)
{
    uint16_t *y = blt_mem_alloc((size_t)n * sizeof *y + 2);
    if (y) blt_f32_to_bf16(x, y, n, 0);
    return y;
}

static void bf16_free(uint16_t *y, int64_t n) { if (y) blt_mem_free(y, (size_t)n * sizeof *y + 2); }

/* y[R,N] = x[R,K] w[N,K]^T with bf16 operands */
static blt_status linear_bf16_fw(const blt_tensor *x, const blt_tensor *w, float *y, int64_t R, int64_t N, int64_t K)
{
    const uint16_t *wb = storage_bf16(w);
    uint16_t *xb = bf16_copy(blt_f32(x), R * K);
    blt_status s = BLT_OK;
    if (!wb || !xb) s = blt_fail(BLT_ENOMEM, "linear: out of memory rounding operands to bf16");
    else if (R == 1) blt_gemv_bf16(wb, K, xb, y, N, K, 0); /* generation's cached step: memory-bound */
    else s = blt_gemm_bf16(0, 1, R, N, K, 1.0f, xb, K, wb, K, 0.0f, y, N);
    bf16_free(xb, R * K);
    return s;
}

/* dx[R,K] += g w, dw[N,K] += g^T x, with g, w and x in bf16 */
static blt_status linear_bf16_bw(const blt_tensor *x, const blt_tensor *w, const float *G, float *dx, float *dw,
                                 int64_t R, int64_t N, int64_t K, float bx, float bw)
{
    uint16_t *gb = bf16_copy(G, R * N), *xb = NULL;
    const uint16_t *wb = NULL;
    blt_status s = gb ? BLT_OK : blt_fail(BLT_ENOMEM, "linear: out of memory rounding the gradient to bf16");
    if (s == BLT_OK && dx) {
        wb = storage_bf16(w);
        s = wb ? blt_gemm_bf16(0, 0, R, K, N, 1.0f, gb, N, wb, K, bx, dx, K)
               : blt_fail(BLT_ENOMEM, "linear: out of memory rounding the weight to bf16");
    }
    if (s == BLT_OK && dw) {
        xb = bf16_copy(blt_f32(x), R * K);
        s = xb ? blt_gemm_bf16(1, 0, N, K, R, 1.0f, gb, N, xb, K, bw, dw, K)
               : blt_fail(BLT_ENOMEM, "linear: out of memory rounding the input to bf16");
    }
    bf16_free(gb, R * N);
    bf16_free(xb, R * K);
    return s;
}

typedef struct { float *y; const float *bias; int64_t R, N; } bias_job;

static void bias_add(void *ctx, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    const bias_job *j = ctx;
    for (int64_t r = r0; r < r1; r++)
        for (int64_t c = 0; c < j->N; c++) j->y[r * j->N + c] += j->bias[c];
}

/* column sums of g [R,N] into gb [N]: each chunk owns columns */
static void bias_grad(void *ctx, int64_t c0, int64_t c1, int tid)
{
    (void)tid;
    const bias_job *j = ctx; /* y is gb, bias is g */
    for (int64_t r = 0; r < j->R; r++)
        for (int64_t c = c0; c < c1; c++) j->y[c] += j->bias[r * j->N + c];
}

static blt_status linear_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    blt_tensor *x = n->saved[0], *w = n->saved[1];
    int64_t N = w->shape[0], K = w->shape[1], R = K ? x->numel / K : 0;
    if (K == 0) { R = 1; for (int i = 0; i < x->ndim - 1; i++) R *= x->shape[i]; } /* as in the forward: the bias still has R rows of gradient */
    const float *G = blt_f32(g);
    /* beta 0 writes a fresh gradient (BLAS never reads C then) */
    float bx = blt_grad_fresh(n, 0) ? 0.0f : 1.0f, bw = blt_grad_fresh(n, 1) ? 0.0f : 1.0f;
    if (n->iarg[0]) /* made in bf16 precision */
        BLT_TRY(linear_bf16_bw(x, w, G, gin[0] ? blt_f32(gin[0]) : NULL, gin[1] ? blt_f32(gin[1]) : NULL, R, N, K,
                               bx, bw));
    else if (gin[0]) blt_sgemm(0, 0, R, K, N, 1.0f, G, N, blt_f32(w), K, bx, blt_f32(gin[0]), K);
    if (!n->iarg[0] && gin[1]) blt_sgemm(1, 0, N, K, R, 1.0f, G, N, blt_f32(x), K, bw, blt_f32(gin[1]), K);
    if (n->nin > 2 && gin[2]) {
        bias_job j = {blt_f32(gin[2]), G, R, N};
        blt_parallel_for(N, 64, bias_grad, &j);
    }
    return BLT_OK;
}

blt_status blt_linear(blt_tensor **out, blt_tensor *x, blt_tensor *w, blt_tensor *bias)
{
    BLT_TRY(blt_check("linear", "x", x, BLT_F32));
    BLT_TRY(blt_check("linear", "weight", w, BLT_F32));
    char b1[160], b2[160];
    if (w->ndim != 2 || x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1])
        return blt_fail(BLT_EINVAL, "linear: x %s does not fit weight %s (want x [...,in], weight [out,in])",
                        blt_shape_str(x, b1, sizeof b1), blt_shape_str(w, b2, sizeof b2));
    if (bias) {
        BLT_TRY(blt_check("linear", "bias", bias, BLT_F32));
        if (bias->ndim != 1 || bias->shape[0] != w->shape[0])
            return blt_fail(BLT_EINVAL, "linear: bias %s must be [%lld] for weight %s",
                            blt_shape_str(bias, b1, sizeof b1), (long long)w->shape[0],
                            blt_shape_str(w, b2, sizeof b2));
    }
    int64_t N = w->shape[0], K = w->shape[1], R = K ? x->numel / K : 0;
    if (K == 0) { R = 1; for (int i = 0; i < x->ndim - 1; i++) R *= x->shape[i]; }
    int64_t shape[BLT_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = N;
    blt_tensor *xc = NULL, *wc = NULL, *bc = NULL, *y = NULL;
    BLT_TRY(blt_contiguous(&xc, x));
    blt_status s = blt_contiguous(&wc, w);
    if (s == BLT_OK && bias) s = blt_contiguous(&bc, bias);
    if (s == BLT_OK) s = blt_tensor_new(&y, BLT_F32, x->ndim, shape);
    if (s == BLT_OK) {
        if (linear_bf16) s = linear_bf16_fw(xc, wc, blt_f32(y), R, N, K);
        else blt_sgemm(0, 1, R, N, K, 1.0f, blt_f32(xc), K, blt_f32(wc), K, 0.0f, blt_f32(y), N);
    }
    if (s == BLT_OK) {
        if (bc) {
            bias_job j = {blt_f32(y), blt_f32(bc), R, N};
            blt_parallel_for(R, 64, bias_add, &j);
        }
    }
    blt_tensor *in[3] = {xc, wc, bc};
    /* iarg[0]: the backward runs in the forward's precision */
    s = blt_op_finish(out, y, s, "linear", linear_bw, bc ? 3 : 2, in,
                      &(blt_node_keep){.save = {xc, wc}, .iarg = {linear_bf16}, .first_write = 3});
    blt_tensor_release(xc);
    blt_tensor_release(wc);
    blt_tensor_release(bc);
    return s;
}
