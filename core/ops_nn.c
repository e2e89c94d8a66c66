/* Softmax, log-softmax, fused softmax cross-entropy, RMSNorm, embedding, RoPE. */
#include "ops.h"
#include "mem.h"
#include "thread.h"
#include "vexp.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rows: the product of the leading dimensions (not numel / cols, which is 0 for [R, 0]:
 * cross_entropy would skip its target checks and softmax_entropy leave R outputs unset). */
static int64_t rows_of(const blt_tensor *x)
{
    int64_t r = 1;
    for (int i = 0; i + 1 < x->ndim; i++) r *= x->shape[i];
    return r;
}
static int64_t cols_of(const blt_tensor *x) { return x->ndim ? x->shape[x->ndim - 1] : 1; }

/* ---- softmax / log_softmax ---- */

typedef struct { const float *x, *g; float *y; int64_t C; int log; } sm_job;

static void sm_fwd(void *ctx, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    const sm_job *j = ctx;
    int64_t C = j->C;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + r * C;
        float *y = j->y + r * C;
        float m = blt_vmax(x, C, -INFINITY);
        if (m == -INFINITY) { /* a row of all -inf has no mass: softmax 0, log-softmax -inf */
            for (int64_t c = 0; c < C; c++) y[c] = j->log ? -INFINITY : 0.0f;
            continue;
        }
        if (j->log) {
            float ls = logf(blt_vexp_sum(x, m, C)); /* (x - m) - ls: m + ls would round away digits of large logits */
            for (int64_t c = 0; c < C; c++) y[c] = (x[c] - m) - ls;
        } else {
            memcpy(y, x, sizeof(float) * (size_t)C);
            blt_vexp_shift(y, m, C);
            float inv = 1.0f / blt_vsum(y, C);
            for (int64_t c = 0; c < C; c++) y[c] *= inv;
        }
    }
}

/* x here is the saved output y; y is gin */
static void sm_bwd(void *ctx, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    const sm_job *j = ctx;
    int64_t C = j->C;
    for (int64_t r = r0; r < r1; r++) {
        const float *y = j->x + r * C, *g = j->g + r * C;
        float *gx = j->y + r * C;
        double s = 0.0;
        if (j->log) {
            if (blt_vmax(y, C, -INFINITY) == -INFINITY) continue; /* an all -inf row: zero gradient */
            for (int64_t c = 0; c < C; c++) s += g[c];
            for (int64_t c = 0; c < C; c++) gx[c] += g[c];
            blt_vexp_axpy(gx, y, 0.0f, -(float)s, C); /* softmax = exp(log_softmax) */
        } else {
            for (int64_t c = 0; c < C; c++) s += (double)g[c] * y[c];
            for (int64_t c = 0; c < C; c++) gx[c] += y[c] * (g[c] - (float)s);
        }
    }
}

static blt_status softmax_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    sm_job j = {blt_f32(n->saved[0]), blt_f32(g), blt_f32(gin[0]), cols_of(g), (int)n->iarg[0]};
    blt_parallel_for(rows_of(g), 1 + 4096 / (j.C + 1), sm_bwd, &j);
    return BLT_OK;
}

static blt_status softmax_impl(const char *fn, blt_tensor **out, blt_tensor *x, int log)
{
    BLT_TRY(blt_check(fn, "x", x, BLT_F32));
    if (x->ndim == 0) return blt_fail(BLT_EINVAL, "%s: x must have at least one dimension", fn);
    blt_tensor *xc, *y = NULL;
    BLT_TRY(blt_contiguous(&xc, x));
    blt_status s = blt_tensor_new_like(&y, xc);
    if (s == BLT_OK) {
        sm_job j = {blt_f32(xc), NULL, blt_f32(y), cols_of(xc), log};
        blt_parallel_for(rows_of(xc), 1 + 4096 / (j.C + 1), sm_fwd, &j);
    }
    s = blt_op_finish(out, y, s, fn, softmax_bw, 1, &xc, &(blt_node_keep){.save_out = 1, .iarg = {log}});
    blt_tensor_release(xc);
    return s;
}

blt_status blt_softmax(blt_tensor **out, blt_tensor *x) { return softmax_impl("softmax", out, x, 0); }
blt_status blt_log_softmax(blt_tensor **out, blt_tensor *x) { return softmax_impl("log_softmax", out, x, 1); }

/* ---- entropy of the softmax ----
 * With e = exp(x - m) and Z = sum e: ln p = x - m - ln Z, H = ln Z - sum e (x - m) / Z.
 * dH/dx_i = -p_i (ln p_i + H). Saved per row: ln Z + m (the log-sum-exp) and H. */

typedef struct { const float *x, *g; float *y, *gx, *aux; int64_t V; } ent_job;

static void ent_fwd(void *ctx, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    const ent_job *j = ctx;
    int64_t V = j->V;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + r * V;
        float m = blt_vmax(x, V, -INFINITY), z = 0.0f, s1 = 0.0f;
        if (m == -INFINITY) { /* a row of all -inf: entropy 0, zero gradient (lse -inf marks it) */
            j->y[r] = 0.0f;
            j->aux[2 * r] = -INFINITY;
            j->aux[2 * r + 1] = 0.0f;
            continue;
        }
        for (int64_t i = 0; i < V; i += 256) {
            float e[256];
            int64_t k = V - i < 256 ? V - i : 256;
            memcpy(e, x + i, sizeof(float) * (size_t)k);
            blt_vexp_shift(e, m, k);
            z += blt_vsum(e, k);
            for (int64_t c = 0; c < k; c++) e[c] *= x[i + c] - m;
            s1 += blt_vsum(e, k);
        }
        float h = logf(z) - s1 / z;
        j->y[r] = h;
        j->aux[2 * r] = m + logf(z);
        j->aux[2 * r + 1] = h;
    }
}

static void ent_bwd(void *ctx, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    const ent_job *j = ctx;
    int64_t V = j->V;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + r * V;
        float *gx = j->gx + r * V, lse = j->aux[2 * r], h = j->aux[2 * r + 1], g = j->g[r];
        if (lse == -INFINITY) continue;
        for (int64_t i = 0; i < V; i += 256) {
            float p[256];
            int64_t k = V - i < 256 ? V - i : 256;
            memcpy(p, x + i, sizeof(float) * (size_t)k);
            blt_vexp_shift(p, lse, k);
            for (int64_t c = 0; c < k; c++) gx[i + c] -= g * p[c] * ((x[i + c] - lse) + h);
        }
    }
}

static blt_status softmax_entropy_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    blt_tensor *x = n->saved[0];
    ent_job j = {blt_f32(x), blt_f32(g), NULL, blt_f32(gin[0]), n->aux, cols_of(x)};
    blt_parallel_for(rows_of(x), 1 + 4096 / (j.V + 1), ent_bwd, &j);
    return BLT_OK;
}

blt_status blt_softmax_entropy(blt_tensor **out, blt_tensor *x)
{
    BLT_TRY(blt_check("softmax_entropy", "x", x, BLT_F32));
    if (x->ndim == 0) return blt_fail(BLT_EINVAL, "softmax_entropy: x must have at least one dimension");
    char b1[160];
    if (x->shape[x->ndim - 1] == 0 && x->numel == 0 && rows_of(x) > 0) /* a softmax over no classes */
        return blt_fail(BLT_EINVAL, "softmax_entropy: x %s has no classes (its last dimension is 0)",
                        blt_shape_str(x, b1, sizeof b1));
    blt_tensor *xc, *y = NULL;
    BLT_TRY(blt_contiguous(&xc, x));
    int64_t R = rows_of(xc);
    size_t abytes = sizeof(float) * (size_t)(2 * R + 1);
    float *aux = blt_mem_alloc(abytes);
    blt_status s = aux ? blt_tensor_new(&y, BLT_F32, x->ndim - 1, x->shape)
                       : blt_fail(BLT_ENOMEM, "softmax_entropy: out of memory");
    if (s == BLT_OK) {
        ent_job j = {blt_f32(xc), NULL, blt_f32(y), NULL, aux, cols_of(xc)};
        blt_parallel_for(R, 1 + 4096 / (j.V + 1), ent_fwd, &j);
    }
    s = blt_op_finish(out, y, s, "softmax_entropy", softmax_entropy_bw, 1, &xc,
                      &(blt_node_keep){.save = {xc}, .aux = aux, .auxbytes = abytes});
    blt_tensor_release(xc);
    return s;
}

/* ---- cross-entropy ---- */

typedef struct {
    const float *x;
    const int32_t *t;
    float *lse;      /* per row; NaN for ignored rows */
    double *part;    /* per-chunk loss sums */
    float *gx;
    float gscale;
    int64_t V;
    int ignore;
    int64_t rows;
    int chunks;
    int fresh; /* backward: gx is uninitialised; each row is zeroed just before its use */
} ce_job;

static void ce_fwd(void *ctx, int64_t c0, int64_t c1, int tid)
{
    (void)tid;
    const ce_job *j = ctx;
    for (int64_t c = c0; c < c1; c++) {
        int64_t r0 = j->rows * c / j->chunks, r1 = j->rows * (c + 1) / j->chunks;
        double acc = 0.0;
        for (int64_t r = r0; r < r1; r++) {
            if (j->t[r] == j->ignore) { j->lse[r] = NAN; continue; }
            const float *x = j->x + r * j->V;
            float m = blt_vmax(x, j->V, -INFINITY);
            if (m == -INFINITY) { /* a row of all -inf: the target has probability 0, loss +inf */
                j->lse[r] = -INFINITY; /* and zero gradient */
                acc += INFINITY;
                continue;
            }
            double ls = log((double)blt_vexp_sum(x, m, j->V));
            j->lse[r] = m + (float)ls;
            acc += ((double)m - x[j->t[r]]) + ls;
        }
        j->part[c] = acc;
    }
}

static void ce_bwd(void *ctx, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    const ce_job *j = ctx;
    for (int64_t r = r0; r < r1; r++) {
        if (j->fresh) memset(j->gx + r * j->V, 0, sizeof(float) * (size_t)j->V);
        if (j->t[r] == j->ignore) continue;
        const float *x = j->x + r * j->V;
        float *gx = j->gx + r * j->V, lse = j->lse[r];
        if (lse == -INFINITY) continue;
        blt_vexp_axpy(gx, x, lse, j->gscale, j->V);
        gx[j->t[r]] -= j->gscale;
    }
}

static blt_status ce_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    blt_tensor *x = n->saved[0], *t = n->saved[1];
    int64_t V = cols_of(x);
    ce_job j = {blt_f32(x), blt_i32(t), n->aux, NULL, blt_f32(gin[0]),
                (float)(blt_f32(g)[0] * n->farg[0]), V, (int)n->iarg[0], rows_of(x), 0, blt_grad_fresh(n, 0)};
    blt_parallel_for(j.rows, 1 + 4096 / (V + 1), ce_bwd, &j);
    return BLT_OK;
}

blt_status blt_cross_entropy(blt_tensor **out, blt_tensor *logits, blt_tensor *targets,
                             int ignore_index, int mean)
{
    BLT_TRY(blt_check("cross_entropy", "logits", logits, BLT_F32));
    BLT_TRY(blt_check("cross_entropy", "targets", targets, BLT_I32));
    char b1[160], b2[160];
    int ok = logits->ndim >= 1 && targets->ndim == logits->ndim - 1;
    for (int i = 0; ok && i < targets->ndim; i++) ok = targets->shape[i] == logits->shape[i];
    if (!ok)
        return blt_fail(BLT_EINVAL, "cross_entropy: logits %s and targets %s: targets must have the "
                        "shape of logits without its last dimension", blt_shape_str(logits, b1, sizeof b1),
                        blt_shape_str(targets, b2, sizeof b2));
    blt_tensor *xc = NULL, *tc = NULL, *y = NULL;
    BLT_TRY(blt_contiguous(&xc, logits));
    blt_status s = blt_contiguous(&tc, targets);
    int64_t R = rows_of(xc), V = cols_of(xc), count = 0;
    const int32_t *t = s == BLT_OK ? blt_i32(tc) : NULL;
    for (int64_t r = 0; s == BLT_OK && r < R; r++) {
        if (t[r] == ignore_index) continue;
        if (t[r] < 0 || t[r] >= V)
            s = blt_fail(BLT_EINVAL, "cross_entropy: target %d at position %lld out of range for %lld "
                         "classes (ignore_index %d)", t[r], (long long)r, (long long)V, ignore_index);
        count++;
    }
    size_t lbytes = (size_t)R * sizeof(float);
    float *lse = s == BLT_OK ? blt_mem_alloc(lbytes) : NULL;
    if (s == BLT_OK && !lse) s = blt_fail(BLT_ENOMEM, "cross_entropy: out of memory");
    if (s == BLT_OK) s = blt_tensor_new(&y, BLT_F32, 0, NULL);
    double scale = 0.0;
    if (s == BLT_OK) {
        enum { CH = 64 }; /* fixed chunks: the sum is the same for any thread count */
        double part[CH];
        ce_job j = {blt_f32(xc), t, lse, part, NULL, 0.0f, V, ignore_index, R, CH, 0};
        blt_parallel_for(CH, 1, ce_fwd, &j);
        double tot = 0.0;
        for (int c = 0; c < CH; c++) tot += part[c];
        scale = mean ? (count ? 1.0 / (double)count : 0.0) : 1.0;
        blt_f32(y)[0] = (float)(tot * scale);
    }
    s = blt_op_finish(out, y, s, "cross_entropy", ce_bw, 1, &xc,
                      &(blt_node_keep){.save = {xc, tc}, .iarg = {ignore_index}, .farg = {scale}, .aux = lse,
                                       .auxbytes = lbytes, .first_write = 1});
    blt_tensor_release(xc);
    blt_tensor_release(tc);
    return s;
}

/* ---- RMSNorm ---- */

typedef struct {
    const float *x, *g, *gy;
    float *y, *rstd, *gx, *gg_part; /* gg_part: one row of D per chunk */
    int64_t R, D;
    float eps;
    int chunks;
    int fresh; /* backward: gx is uninitialised, written */
} rms_job;

static void rms_fwd(void *ctx, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    const rms_job *j = ctx;
    int64_t D = j->D;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + r * D;
        float *y = j->y + r * D;
        float ss = 0.0f;
        for (int64_t c = 0; c < D; c++) ss += x[c] * x[c];
        float rs = 1.0f / sqrtf(ss / (float)D + j->eps);
        j->rstd[r] = rs;
        for (int64_t c = 0; c < D; c++) y[c] = x[c] * rs * j->g[c];
    }
}

static void rms_bwd(void *ctx, int64_t c0, int64_t c1, int tid)
{
    (void)tid;
    const rms_job *j = ctx;
    int64_t D = j->D;
    for (int64_t ch = c0; ch < c1; ch++) {
        int64_t r0 = j->R * ch / j->chunks, r1 = j->R * (ch + 1) / j->chunks;
        float *gg = j->gg_part + ch * D;
        memset(gg, 0, sizeof(float) * D);
        for (int64_t r = r0; r < r1; r++) {
            const float *x = j->x + r * D, *gy = j->gy + r * D;
            float rs = j->rstd[r], dot = 0.0f;
            for (int64_t c = 0; c < D; c++) {
                float xh = x[c] * rs;
                gg[c] += gy[c] * xh;
                dot += gy[c] * j->g[c] * xh;
            }
            if (j->gx) {
                float *gx = j->gx + r * D, m = dot / (float)D;
                if (j->fresh) for (int64_t c = 0; c < D; c++) gx[c] = rs * (gy[c] * j->g[c] - x[c] * rs * m);
                else for (int64_t c = 0; c < D; c++) gx[c] += rs * (gy[c] * j->g[c] - x[c] * rs * m);
            }
        }
    }
}

static blt_status rmsnorm_bw(blt_node *n, blt_tensor *gy, blt_tensor **gin)
{
    blt_tensor *x = n->saved[0], *g = n->saved[1];
    int64_t R = rows_of(x), D = cols_of(x);
    int chunks = blt_threads_count() * 4;
    if (chunks > R) chunks = (int)(R ? R : 1);
    size_t pbytes = (size_t)chunks * D * sizeof(float);
    float *part = blt_mem_alloc(pbytes);
    if (!part) return blt_fail(BLT_ENOMEM, "rmsnorm: out of memory in backward");
    rms_job j = {blt_f32(x), blt_f32(g), blt_f32(gy), NULL, n->aux, gin[0] ? blt_f32(gin[0]) : NULL,
                 part, R, D, 0.0f, chunks, blt_grad_fresh(n, 0)};
    blt_parallel_for(chunks, 1, rms_bwd, &j);
    if (gin[1]) { /* partial sums added in chunk order: deterministic for a fixed thread count */
        float *gg = blt_f32(gin[1]);
        for (int ch = 0; ch < chunks; ch++)
            for (int64_t c = 0; c < D; c++) gg[c] += part[ch * D + c];
    }
    blt_mem_free(part, pbytes);
    return BLT_OK;
}

blt_status blt_rmsnorm(blt_tensor **out, blt_tensor *x, blt_tensor *g, float eps)
{
    BLT_TRY(blt_check("rmsnorm", "x", x, BLT_F32));
    BLT_TRY(blt_check("rmsnorm", "weight", g, BLT_F32));
    char b1[160], b2[160];
    if (x->ndim < 1 || g->ndim != 1 || g->shape[0] != x->shape[x->ndim - 1])
        return blt_fail(BLT_EINVAL, "rmsnorm: weight %s must be 1-d with the last dimension of x %s",
                        blt_shape_str(g, b2, sizeof b2), blt_shape_str(x, b1, sizeof b1));
    if (!(eps > 0.0f)) return blt_fail(BLT_EINVAL, "rmsnorm: eps must be positive, got %g", eps);
    blt_tensor *xc = NULL, *gc = NULL, *y = NULL;
    BLT_TRY(blt_contiguous(&xc, x));
    blt_status s = blt_contiguous(&gc, g);
    int64_t R = rows_of(xc), D = cols_of(xc);
    size_t rbytes = (size_t)(R ? R : 1) * sizeof(float);
    float *rstd = s == BLT_OK ? blt_mem_alloc(rbytes) : NULL;
    if (s == BLT_OK && !rstd) s = blt_fail(BLT_ENOMEM, "rmsnorm: out of memory");
    if (s == BLT_OK) s = blt_tensor_new_like(&y, xc);
    if (s == BLT_OK) {
        rms_job j = {blt_f32(xc), blt_f32(gc), NULL, blt_f32(y), rstd, NULL, NULL, R, D, eps, 0, 0};
        blt_parallel_for(R, 1 + 8192 / (D + 1), rms_fwd, &j);
    }
    blt_tensor *in[2] = {xc, gc};
    s = blt_op_finish(out, y, s, "rmsnorm", rmsnorm_bw, 2, in,
                      &(blt_node_keep){.save = {xc, gc}, .aux = rstd, .auxbytes = rbytes, .first_write = 1});
    blt_tensor_release(xc);
    blt_tensor_release(gc);
    return s;
}

/* ---- embedding ---- */

typedef struct { const int32_t *ids; const float *src; float *dst; int64_t n, D; } emb_job;

static void emb_fwd(void *ctx, int64_t i0, int64_t i1, int tid)
{
    (void)tid;
    const emb_job *j = ctx;
    for (int64_t i = i0; i < i1; i++)
        memcpy(j->dst + i * j->D, j->src + (int64_t)j->ids[i] * j->D, sizeof(float) * j->D);
}

/* Backward: each chunk owns a range of columns, so no two threads add to one place. */
static void emb_bwd(void *ctx, int64_t c0, int64_t c1, int tid)
{
    (void)tid;
    const emb_job *j = ctx;
    for (int64_t i = 0; i < j->n; i++) {
        float *w = j->dst + (int64_t)j->ids[i] * j->D;
        const float *g = j->src + i * j->D;
        for (int64_t c = c0; c < c1; c++) w[c] += g[c];
    }
}

static blt_status embedding_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    blt_tensor *ids = n->saved[0];
    emb_job j = {blt_i32(ids), blt_f32(g), blt_f32(gin[0]), ids->numel, gin[0]->shape[1]};
    blt_parallel_for(j.D, 16, emb_bwd, &j);
    return BLT_OK;
}

blt_status blt_embedding(blt_tensor **out, blt_tensor *weight, blt_tensor *ids)
{
    BLT_TRY(blt_check("embedding", "weight", weight, BLT_F32));
    BLT_TRY(blt_check("embedding", "ids", ids, BLT_I32));
    char b1[160];
    if (weight->ndim != 2)
        return blt_fail(BLT_EINVAL, "embedding: weight must be [V,D], got %s",
                        blt_shape_str(weight, b1, sizeof b1));
    if (ids->ndim >= BLT_MAX_DIMS)
        return blt_fail(BLT_EINVAL, "embedding: ids have too many dimensions");
    blt_tensor *wc = NULL, *ic = NULL, *y = NULL;
    BLT_TRY(blt_contiguous(&ic, ids));
    blt_status s = BLT_OK;
    const int32_t *id = blt_i32(ic);
    for (int64_t i = 0; i < ic->numel; i++)
        if (id[i] < 0 || id[i] >= weight->shape[0]) {
            s = blt_fail(BLT_EINVAL, "embedding: id %d at position %lld out of range for weight %s", id[i],
                         (long long)i, blt_shape_str(weight, b1, sizeof b1));
            break;
        }
    if (s == BLT_OK) s = blt_contiguous(&wc, weight);
    int64_t shape[BLT_MAX_DIMS];
    memcpy(shape, ids->shape, sizeof(int64_t) * ids->ndim);
    shape[ids->ndim] = weight->shape[1];
    if (s == BLT_OK) s = blt_tensor_new(&y, BLT_F32, ids->ndim + 1, shape);
    if (s == BLT_OK) {
        emb_job j = {id, blt_f32(wc), blt_f32(y), ic->numel, weight->shape[1]};
        blt_parallel_for(j.n, 64, emb_fwd, &j);
    }
    s = blt_op_finish(out, y, s, "embedding", embedding_bw, 1, &wc, &(blt_node_keep){.save = {ic}});
    blt_tensor_release(wc);
    blt_tensor_release(ic);
    return s;
}

/* ---- RoPE ---- */

typedef struct {
    const float *x;
    float *y;
    const float *cs; /* [rows of table, half] pairs (cos, sin) */
    int64_t T, H, hd, rows_per_table; /* table row of (b,t): tabled per batch row or shared */
    int64_t B;
    int per_batch;
    float sign; /* +1 forward, -1 backward (rotate back) */
    int acc;
} rope_job;

static void rope_chunk(void *ctx, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    const rope_job *j = ctx;
    int64_t half = j->hd / 2, D = j->H * j->hd;
    for (int64_t r = r0; r < r1; r++) { /* r = b*T + t */
        int64_t trow = j->per_batch ? r : r % j->T;
        const float *cs = j->cs + trow * half * 2;
        const float *x = j->x + r * D;
        float *y = j->y + r * D;
        for (int64_t h = 0; h < j->H; h++)
            for (int64_t i = 0; i < half; i++) {
                float c = cs[2 * i], s = j->sign * cs[2 * i + 1];
                float x0 = x[h * j->hd + 2 * i], x1 = x[h * j->hd + 2 * i + 1];
                float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
                if (j->acc) { y[h * j->hd + 2 * i] += y0; y[h * j->hd + 2 * i + 1] += y1; }
                else { y[h * j->hd + 2 * i] = y0; y[h * j->hd + 2 * i + 1] = y1; }
            }
    }
}

static blt_status rope_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    rope_job j = {blt_f32(g), blt_f32(gin[0]), n->aux, n->iarg[0], n->iarg[1], n->iarg[2], 0,
                  n->iarg[3], (int)n->iarg[4], -1.0f, !blt_grad_fresh(n, 0)};
    blt_parallel_for(j.B * j.T, 16, rope_chunk, &j);
    return BLT_OK;
}

blt_status blt_rope(blt_tensor **out, blt_tensor *x, int heads, double theta, blt_tensor *positions)
{
    BLT_TRY(blt_check("rope", "x", x, BLT_F32));
    char b1[160], b2[160];
    if (x->ndim != 2 && x->ndim != 3)
        return blt_fail(BLT_EINVAL, "rope: x must be [B,T,D] or [T,D], got %s", blt_shape_str(x, b1, sizeof b1));
    int64_t D = x->shape[x->ndim - 1], T = x->shape[x->ndim - 2], B = x->ndim == 3 ? x->shape[0] : 1;
    if (heads <= 0 || D % heads || (D / heads) % 2)
        return blt_fail(BLT_EINVAL, "rope: width %lld of x %s must split into %d heads of even size", (long long)D,
                        blt_shape_str(x, b1, sizeof b1), heads);
    if (!(theta > 0.0)) return blt_fail(BLT_EINVAL, "rope: theta must be positive, got %g", theta);
    int per_batch = 0;
    if (positions) {
        BLT_TRY(blt_check("rope", "positions", positions, BLT_I32));
        if (positions->ndim == 2 && positions->shape[0] == B && positions->shape[1] == T) per_batch = 1;
        else if (!(positions->ndim == 1 && positions->shape[0] == T))
            return blt_fail(BLT_EINVAL, "rope: positions %s must be [T] or [B,T] for x %s",
                            blt_shape_str(positions, b2, sizeof b2), blt_shape_str(x, b1, sizeof b1));
    }
    int64_t hd = D / heads, half = hd / 2, trows = per_batch ? B * T : T;
    size_t cbytes = (size_t)(trows * half * 2 + 1) * sizeof(float);
    float *cs = blt_mem_alloc(cbytes);
    double *freq = blt_mem_alloc((size_t)half * sizeof(double));
    if (!cs || !freq) {
        blt_mem_free(cs, cbytes);
        blt_mem_free(freq, (size_t)half * sizeof(double));
        return blt_fail(BLT_ENOMEM, "rope: out of memory");
    }
    /* the frequencies once per call, not once per row: pow cost as much as sin and cos */
    for (int64_t i = 0; i < half; i++) freq[i] = pow(theta, -2.0 * (double)i / (double)hd);
    blt_tensor *pc = NULL;
    if (positions && blt_contiguous(&pc, positions) != BLT_OK) {
        blt_mem_free(cs, cbytes);
        blt_mem_free(freq, (size_t)half * sizeof(double));
        return BLT_ENOMEM;
    }
    for (int64_t r = 0; r < trows; r++) {
        double pos = pc ? (double)blt_i32(pc)[r] : (double)r;
        for (int64_t i = 0; i < half; i++) {
            double a = pos * freq[i];
            cs[(r * half + i) * 2] = (float)cos(a);
            cs[(r * half + i) * 2 + 1] = (float)sin(a);
        }
    }
    blt_mem_free(freq, (size_t)half * sizeof(double));
    blt_tensor_release(pc);
    blt_tensor *xc = NULL, *y = NULL;
    blt_status s = blt_contiguous(&xc, x);
    if (s == BLT_OK) s = blt_tensor_new_like(&y, xc);
    if (s == BLT_OK) {
        rope_job j = {blt_f32(xc), blt_f32(y), cs, T, heads, hd, 0, B, per_batch, 1.0f, 0};
        blt_parallel_for(B * T, 16, rope_chunk, &j);
    }
    s = blt_op_finish(out, y, s, "rope", rope_bw, 1, &xc,
                      &(blt_node_keep){.iarg = {T, heads, hd, B, per_batch}, .aux = cs, .auxbytes = cbytes,
                                       .first_write = 1});
    blt_tensor_release(xc);
    return s;
}
