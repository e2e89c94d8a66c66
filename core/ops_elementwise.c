/* Element-wise ops: broadcasting binary ops, an affine map, and unary functions. */
#include "ops.h"
#include "thread.h"
#include "vexp.h"
#include <math.h>
#include <string.h>

#define GRAIN 16384

const char *blt_binop_name(blt_binop op)
{
    static const char *names[] = {"add", "sub", "mul", "div"};
    return names[op];
}

const char *blt_unop_name(blt_unop op)
{
    static const char *names[] = {"exp", "log", "tanh", "silu", "gelu", "sigmoid", "relu", "sqrt"};
    return names[op];
}

/* ---- broadcasting ---- */

typedef struct {
    int nd;
    int64_t shape[BLT_MAX_DIMS];
    int64_t sa[BLT_MAX_DIMS], sb[BLT_MAX_DIMS]; /* strides of a and b in out's index space */
    int64_t numel;
} bcast;

static blt_status broadcast(const char *fn, const blt_tensor *a, const blt_tensor *b, bcast *bc)
{
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    bc->nd = nd;
    bc->numel = 1;
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t na = ia >= 0 ? a->shape[ia] : 1, nb = ib >= 0 ? b->shape[ib] : 1;
        if (na != nb && na != 1 && nb != 1) {
            char b1[160], b2[160];
            return blt_fail(BLT_EINVAL, "%s: shapes %s and %s cannot be broadcast (dimension %d: %lld vs %lld)",
                            fn, blt_shape_str(a, b1, sizeof b1), blt_shape_str(b, b2, sizeof b2), i,
                            (long long)na, (long long)nb);
        }
        bc->shape[i] = na == 1 ? nb : na;
        bc->sa[i] = (ia >= 0 && na != 1) ? a->stride[ia] : 0;
        bc->sb[i] = (ib >= 0 && nb != 1) ? b->stride[ib] : 0;
        bc->numel *= bc->shape[i];
    }
    return BLT_OK;
}

/* Modes of the one strided kernel: forward ops and the backward contributions. */
enum { F_ADD, F_SUB, F_MUL, F_DIV, G_COPY, G_NEG, G_MULB, G_MULA, G_DIVB, G_DIVA };

typedef struct {
    int mode;
    const bcast *bc;
    float *o;             /* output, strides so[] (contiguous for forward) */
    const int64_t *so;
    const float *g;       /* gout, contiguous in out's index space (backward) */
    const float *a, *b;
    int accumulate;
} ew_job;

static inline float ew_val(int mode, float g, float a, float b)
{
    switch (mode) {
    case F_ADD: return a + b;
    case F_SUB: return a - b;
    case F_MUL: return a * b;
    case F_DIV: return a / b;
    case G_COPY: return g;
    case G_NEG: return -g;
    case G_MULB: return g * b;          /* d(a*b)/da */
    case G_MULA: return g * a;          /* d(a*b)/db */
    case G_DIVB: return g / b;          /* d(a/b)/da */
    default: return -g * a / (b * b);   /* d(a/b)/db */
    }
}

/* Rows of the innermost dimension [r0, r1) of out's index space. */
static void ew_rows(void *ctx, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    const ew_job *j = ctx;
    const bcast *bc = j->bc;
    int nd = bc->nd;
    int64_t inner = nd ? bc->shape[nd - 1] : 1;
    int64_t sa = nd ? bc->sa[nd - 1] : 0, sb = nd ? bc->sb[nd - 1] : 0, so = nd ? j->so[nd - 1] : 0;
    for (int64_t r = r0; r < r1; r++) {
        int64_t rem = r, oa = 0, ob = 0, oo = 0;
        for (int i = nd - 2; i >= 0; i--) {
            int64_t k = rem % bc->shape[i];
            rem /= bc->shape[i];
            oa += k * bc->sa[i];
            ob += k * bc->sb[i];
            oo += k * j->so[i];
        }
        const float *a = j->a ? j->a + oa : NULL, *b = j->b ? j->b + ob : NULL;
        const float *g = j->g ? j->g + r * inner : NULL;
        float *o = j->o + oo;
        for (int64_t c = 0; c < inner; c++) {
            float v = ew_val(j->mode, g ? g[c] : 0.0f, a ? a[c * sa] : 0.0f, b ? b[c * sb] : 0.0f);
            if (j->accumulate) o[c * so] += v;
            else o[c * so] = v;
        }
    }
}

/* Runs mode over out's index space; dst has strides so (0 where it is broadcast). */
static void ew_run(int mode, const bcast *bc, float *dst, const int64_t *so, const float *g,
                   const float *a, const float *b, int accumulate)
{
    ew_job j = {mode, bc, dst, so, g, a, b, accumulate};
    int nd = bc->nd;
    int64_t rows = nd ? bc->numel / (bc->shape[nd - 1] ? bc->shape[nd - 1] : 1) : 1;
    if (bc->numel == 0) return;
    /* A broadcast destination means several rows add into one place: stay serial. */
    int dst_broadcast = 0;
    for (int i = 0; i < nd; i++) dst_broadcast |= so[i] == 0 && bc->shape[i] > 1;
    int64_t inner = nd ? bc->shape[nd - 1] : 1;
    if (dst_broadcast) ew_rows(&j, 0, rows, 0);
    else blt_parallel_for(rows, GRAIN / inner + 1, ew_rows, &j);
}

typedef struct {
    int mode;
    float *o;
    const float *a, *b, *g;
    int accumulate;
} flat_job;

static void flat_chunk(void *ctx, int64_t i0, int64_t i1, int tid)
{
    (void)tid;
    const flat_job *j = ctx;
    float *o = j->o;
    const float *a = j->a, *b = j->b, *g = j->g;
    switch (j->mode) { /* the common contiguous cases, written so they vectorise */
    case F_ADD: for (int64_t i = i0; i < i1; i++) o[i] = a[i] + b[i]; return;
    case F_SUB: for (int64_t i = i0; i < i1; i++) o[i] = a[i] - b[i]; return;
    case F_MUL: for (int64_t i = i0; i < i1; i++) o[i] = a[i] * b[i]; return;
    case F_DIV: for (int64_t i = i0; i < i1; i++) o[i] = a[i] / b[i]; return;
    }
    if (j->accumulate)
        for (int64_t i = i0; i < i1; i++) o[i] += ew_val(j->mode, g[i], a ? a[i] : 0, b ? b[i] : 0);
    else
        for (int64_t i = i0; i < i1; i++) o[i] = ew_val(j->mode, g[i], a ? a[i] : 0, b ? b[i] : 0);
}

static int same_contig(const blt_tensor *a, const blt_tensor *b)
{
    return a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof(int64_t) * a->ndim) &&
           blt_tensor_is_contiguous(a) && blt_tensor_is_contiguous(b);
}

/* Accumulates the gradient for one operand: gin (contiguous, operand's shape) gets the
 * sum over broadcast dims of mode(g, a, b). */
static void bin_grad(int mode, const bcast *bc, blt_tensor *gin, const blt_tensor *operand,
                     const blt_tensor *g, const blt_tensor *a, const blt_tensor *b, int fresh)
{
    int64_t so[BLT_MAX_DIMS];
    int nd = bc->nd;
    int off = nd - operand->ndim;
    for (int i = 0; i < nd; i++) {
        int k = i - off;
        so[i] = (k >= 0 && operand->shape[k] != 1) ? gin->stride[k] : 0;
    }
    if (gin->numel == bc->numel && same_contig(a, b) && a->numel == bc->numel) {
        flat_job j = {mode, blt_f32(gin), blt_f32(a), blt_f32(b), blt_f32(g), !fresh};
        blt_parallel_for(bc->numel, GRAIN, flat_chunk, &j);
        return;
    }
    if (fresh) memset(blt_f32(gin), 0, sizeof(float) * (size_t)gin->numel); /* the strided path adds */
    ew_run(mode, bc, blt_f32(gin), so, blt_f32(g), blt_f32(a), blt_f32(b), 1);
}

/* Both operands' gradients of a binary op without broadcasting in one pool job (one
 * wake-up of the workers instead of two): ga (mode ma) and gb (mode mb) over the same
 * elements; each written when fresh, else added to. */
typedef struct { flat_job a, b; } pair_job;

static void pair_chunk(void *ctx, int64_t i0, int64_t i1, int tid)
{
    const pair_job *j = ctx;
    flat_chunk((void *)&j->a, i0, i1, tid);
    flat_chunk((void *)&j->b, i0, i1, tid);
}

static blt_status binary_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    blt_binop op = (blt_binop)n->iarg[0];
    blt_tensor *a = n->saved[0], *b = n->saved[1];
    bcast bc;
    BLT_TRY(broadcast(blt_binop_name(op), a, b, &bc));
    static const int ga_mode[] = {G_COPY, G_COPY, G_MULB, G_DIVB};
    static const int gb_mode[] = {G_COPY, G_NEG, G_MULA, G_DIVA};
    if (gin[0] && gin[1] && same_contig(a, b) && a->numel == bc.numel && gin[0] != gin[1]) {
        pair_job j = {{ga_mode[op], blt_f32(gin[0]), blt_f32(a), blt_f32(b), blt_f32(g), !blt_grad_fresh(n, 0)},
                      {gb_mode[op], blt_f32(gin[1]), blt_f32(a), blt_f32(b), blt_f32(g), !blt_grad_fresh(n, 1)}};
        blt_parallel_for(bc.numel, GRAIN, pair_chunk, &j);
        return BLT_OK;
    }
    if (gin[0]) bin_grad(ga_mode[op], &bc, gin[0], a, g, a, b, blt_grad_fresh(n, 0));
    if (gin[1]) bin_grad(gb_mode[op], &bc, gin[1], b, g, a, b, blt_grad_fresh(n, 1));
    return BLT_OK;
}

blt_status blt_binary(blt_tensor **out, blt_binop op, blt_tensor *a, blt_tensor *b)
{
    const char *fn = blt_binop_name(op);
    BLT_TRY(blt_check(fn, "a", a, BLT_F32));
    BLT_TRY(blt_check(fn, "b", b, BLT_F32));
    bcast bc;
    BLT_TRY(broadcast(fn, a, b, &bc));
    blt_tensor *y;
    BLT_TRY(blt_tensor_new(&y, BLT_F32, bc.nd, bc.shape));
    if (same_contig(a, b)) {
        flat_job j = {(int)op, blt_f32(y), blt_f32(a), blt_f32(b), NULL, 0};
        blt_parallel_for(bc.numel, GRAIN, flat_chunk, &j);
    } else {
        ew_run((int)op, &bc, blt_f32(y), y->stride, NULL, blt_f32(a), blt_f32(b), 0);
    }
    blt_tensor *in[2] = {a, b};
    /* add and sub need only shapes, but keeping one code path is simpler and cheap. Without
     * broadcasting, backward writes a fresh gradient in one pass (first_write). */
    return blt_op_finish(out, y, BLT_OK, fn, binary_bw, 2, in,
                         &(blt_node_keep){.save = {a, b}, .iarg = {op}, .first_write = same_contig(a, b) ? 3u : 0u});
}

/* ---- affine ---- */

typedef struct { float *y; const float *x; float alpha, beta; int acc; } aff_job;

static void aff_chunk(void *ctx, int64_t i0, int64_t i1, int tid)
{
    (void)tid;
    const aff_job *j = ctx;
    if (j->acc) for (int64_t i = i0; i < i1; i++) j->y[i] += j->alpha * j->x[i];
    else for (int64_t i = i0; i < i1; i++) j->y[i] = j->alpha * j->x[i] + j->beta;
}

static blt_status affine_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    aff_job j = {blt_f32(gin[0]), blt_f32(g), (float)n->farg[0], 0.0f, !blt_grad_fresh(n, 0)};
    blt_parallel_for(g->numel, GRAIN, aff_chunk, &j);
    return BLT_OK;
}

blt_status blt_affine(blt_tensor **out, blt_tensor *x, float alpha, float beta)
{
    BLT_TRY(blt_check("affine", "x", x, BLT_F32));
    blt_tensor *xc, *y = NULL;
    BLT_TRY(blt_contiguous(&xc, x));
    blt_status s = blt_tensor_new_like(&y, xc);
    if (s == BLT_OK) {
        aff_job j = {blt_f32(y), blt_f32(xc), alpha, beta, 0};
        blt_parallel_for(y->numel, GRAIN, aff_chunk, &j);
    }
    s = blt_op_finish(out, y, s, "affine", affine_bw, 1, &xc, &(blt_node_keep){.farg = {alpha}, .first_write = 1});
    blt_tensor_release(xc);
    return s;
}

/* ---- unary ---- */

static inline float gelu_f(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

typedef struct { blt_unop op; float *y; const float *x, *yv, *g; int backward, fresh; } un_job;

static void un_chunk(void *ctx, int64_t i0, int64_t i1, int tid)
{
    (void)tid;
    const un_job *j = ctx;
    const float *x = j->x;
    float *y = j->y;
    if (!j->backward) {
        switch (j->op) {
        case BLT_EXP: for (int64_t i = i0; i < i1; i++) y[i] = expf(x[i]); break;
        case BLT_LOG: for (int64_t i = i0; i < i1; i++) y[i] = logf(x[i]); break;
        case BLT_TANH: for (int64_t i = i0; i < i1; i++) y[i] = tanhf(x[i]); break;
        case BLT_SILU:
            for (int64_t i = i0; i < i1; i += 256) { /* exp(-x) vectorised through a stack buffer */
                float e[256];
                int64_t k = i1 - i < 256 ? i1 - i : 256;
                for (int64_t c = 0; c < k; c++) e[c] = -x[i + c];
                blt_vexp_shift(e, 0.0f, k);
                for (int64_t c = 0; c < k; c++) y[i + c] = x[i + c] / (1.0f + e[c]);
            }
            break;
        case BLT_GELU: for (int64_t i = i0; i < i1; i++) y[i] = gelu_f(x[i]); break;
        case BLT_SIGMOID: for (int64_t i = i0; i < i1; i++) y[i] = 1.0f / (1.0f + expf(-x[i])); break;
        case BLT_RELU: for (int64_t i = i0; i < i1; i++) y[i] = x[i] > 0 ? x[i] : 0.0f; break;
        case BLT_SQRT: for (int64_t i = i0; i < i1; i++) y[i] = sqrtf(x[i]); break;
        }
        return;
    }
    /* backward: y is gin (accumulated; written when fresh: zeroed here, in cache, instead
     * of a pass over the whole gradient before the op), yv the saved output */
    const float *g = j->g, *o = j->yv;
    if (j->fresh) memset(y + i0, 0, sizeof(float) * (size_t)(i1 - i0));
    switch (j->op) {
    case BLT_EXP: for (int64_t i = i0; i < i1; i++) y[i] += g[i] * o[i]; break;
    case BLT_LOG: for (int64_t i = i0; i < i1; i++) y[i] += g[i] / x[i]; break;
    case BLT_TANH: for (int64_t i = i0; i < i1; i++) y[i] += g[i] * (1.0f - o[i] * o[i]); break;
    case BLT_SILU:
        for (int64_t i = i0; i < i1; i += 256) {
            float e[256];
            int64_t k = i1 - i < 256 ? i1 - i : 256;
            for (int64_t c = 0; c < k; c++) e[c] = -x[i + c];
            blt_vexp_shift(e, 0.0f, k);
            for (int64_t c = 0; c < k; c++) {
                float sg = 1.0f / (1.0f + e[c]);
                y[i + c] += g[i + c] * sg * (1.0f + x[i + c] * (1.0f - sg));
            }
        }
        break;
    case BLT_GELU:
        for (int64_t i = i0; i < i1; i++) {
            float cdf = 0.5f * (1.0f + erff(x[i] * 0.70710678118654752f));
            float pdf = 0.39894228040143268f * expf(-0.5f * x[i] * x[i]);
            y[i] += g[i] * (cdf + x[i] * pdf);
        }
        break;
    case BLT_SIGMOID: for (int64_t i = i0; i < i1; i++) y[i] += g[i] * o[i] * (1.0f - o[i]); break;
    case BLT_RELU: for (int64_t i = i0; i < i1; i++) y[i] += x[i] > 0 ? g[i] : 0.0f; break;
    case BLT_SQRT: for (int64_t i = i0; i < i1; i++) y[i] += g[i] * 0.5f / o[i]; break;
    }
}

static blt_status unary_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    un_job j = {(blt_unop)n->iarg[0], blt_f32(gin[0]), blt_f32(n->saved[0]), blt_f32(n->saved[1]),
                blt_f32(g), 1, blt_grad_fresh(n, 0)};
    blt_parallel_for(g->numel, GRAIN / 4, un_chunk, &j);
    return BLT_OK;
}

blt_status blt_unary(blt_tensor **out, blt_unop op, blt_tensor *x)
{
    const char *fn = blt_unop_name(op);
    BLT_TRY(blt_check(fn, "x", x, BLT_F32));
    blt_tensor *xc, *y = NULL;
    BLT_TRY(blt_contiguous(&xc, x));
    blt_status s = blt_tensor_new_like(&y, xc);
    if (s == BLT_OK) {
        un_job j = {op, blt_f32(y), blt_f32(xc), NULL, NULL, 0, 0};
        blt_parallel_for(y->numel, GRAIN / 4, un_chunk, &j);
    }
    s = blt_op_finish(out, y, s, fn, unary_bw, 1, &xc,
                      &(blt_node_keep){.save = {xc}, .save_out = 1, .iarg = {op}, .first_write = 1});
    blt_tensor_release(xc);
    return s;
}
