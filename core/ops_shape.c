/* Views (reshape, transpose, narrow), copies, and index-driven ops. */
#include "ops.h"
#include "mem.h"
#include "thread.h"
#include <stdlib.h>
#include <string.h>

static int norm_dim(int dim, int ndim) { return dim < 0 ? dim + ndim : dim; }

/* ---- contiguous ---- */

static blt_status contiguous_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    if (blt_grad_fresh(n, 0)) blt_strided_copy(gin[0], g);
    else blt_strided_add(gin[0], g);
    return BLT_OK;
}

blt_status blt_contiguous(blt_tensor **out, blt_tensor *x)
{
    BLT_TRY(blt_check_live("contiguous", "x", x));
    if (blt_tensor_is_contiguous(x)) {
        *out = blt_tensor_retain(x);
        return BLT_OK;
    }
    blt_tensor *y;
    BLT_TRY(blt_tensor_new_like(&y, x));
    blt_strided_copy(y, x);
    return blt_op_finish(out, y, BLT_OK, "contiguous", contiguous_bw, 1, &x, &(blt_node_keep){.first_write = 1});
}

/* ---- reshape ---- */

static blt_status reshape_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    float *d = blt_f32(gin[0]);
    const float *s = blt_f32(g);
    if (blt_grad_fresh(n, 0)) memcpy(d, s, sizeof(float) * (size_t)g->numel);
    else for (int64_t i = 0; i < g->numel; i++) d[i] += s[i];
    return BLT_OK;
}

blt_status blt_reshape(blt_tensor **out, blt_tensor *x, int ndim, const int64_t *shape)
{
    BLT_TRY(blt_check_live("reshape", "x", x));
    char b1[160], b2[160];
    if (ndim < 0 || ndim > BLT_MAX_DIMS)
        return blt_fail(BLT_EINVAL, "reshape: %d dimensions (at most %d)", ndim, BLT_MAX_DIMS);
    int64_t sh[BLT_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        sh[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0) return blt_fail(BLT_EINVAL, "reshape: more than one -1 in shape %s",
                                            blt_fmt_shape(b1, sizeof b1, ndim, shape));
            infer = i;
        } else if (shape[i] < 0) {
            return blt_fail(BLT_EINVAL, "reshape: negative size in shape %s",
                            blt_fmt_shape(b1, sizeof b1, ndim, shape));
        } else {
            /* no tensor holds more than 2^40 elements: stopping there keeps the product from overflowing */
            if (shape[i] > 0 && known > ((int64_t)1 << 40) / shape[i] + 1)
                return blt_fail(BLT_EINVAL, "reshape: cannot view %s (%lld elements) as %s",
                                blt_shape_str(x, b1, sizeof b1), (long long)x->numel,
                                blt_fmt_shape(b2, sizeof b2, ndim, shape));
            known *= shape[i];
        }
    }
    if (infer >= 0) sh[infer] = known ? x->numel / known : 0;
    int64_t n = 1;
    for (int i = 0; i < ndim && n; i++) n *= sh[i];
    if (n != x->numel)
        return blt_fail(BLT_EINVAL, "reshape: cannot view %s (%lld elements) as %s",
                        blt_shape_str(x, b1, sizeof b1), (long long)x->numel,
                        blt_fmt_shape(b2, sizeof b2, ndim, shape));
    blt_tensor *xc;
    BLT_TRY(blt_contiguous(&xc, x));
    blt_tensor *y = NULL;
    blt_status s = blt_tensor_alias(&y, xc);
    if (s == BLT_OK) {
        y->ndim = ndim;
        int64_t st = 1;
        for (int i = ndim - 1; i >= 0; i--) {
            y->shape[i] = sh[i];
            y->stride[i] = st;
            st *= sh[i];
        }
    }
    s = blt_op_finish(out, y, s, "reshape", reshape_bw, 1, &xc, &(blt_node_keep){.first_write = 1});
    blt_tensor_release(xc);
    return s;
}

/* ---- transpose ---- */

static blt_status transpose_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    blt_tensor v = *gin[0];
    int d0 = (int)n->iarg[0], d1 = (int)n->iarg[1];
    int64_t t = v.shape[d0]; v.shape[d0] = v.shape[d1]; v.shape[d1] = t;
    t = v.stride[d0]; v.stride[d0] = v.stride[d1]; v.stride[d1] = t;
    if (blt_grad_fresh(n, 0)) blt_strided_copy(&v, g);
    else blt_strided_add(&v, g);
    return BLT_OK;
}

blt_status blt_transpose(blt_tensor **out, blt_tensor *x, int d0, int d1)
{
    BLT_TRY(blt_check_live("transpose", "x", x));
    char b[160];
    int a0 = norm_dim(d0, x->ndim), a1 = norm_dim(d1, x->ndim);
    if (a0 < 0 || a0 >= x->ndim || a1 < 0 || a1 >= x->ndim)
        return blt_fail(BLT_EINVAL, "transpose: dimensions %d and %d out of range for shape %s", d0,
                        d1, blt_shape_str(x, b, sizeof b));
    blt_tensor *y;
    BLT_TRY(blt_tensor_alias(&y, x));
    int64_t t = y->shape[a0]; y->shape[a0] = y->shape[a1]; y->shape[a1] = t;
    t = y->stride[a0]; y->stride[a0] = y->stride[a1]; y->stride[a1] = t;
    return blt_op_finish(out, y, BLT_OK, "transpose", transpose_bw, 1, &x,
                         &(blt_node_keep){.iarg = {a0, a1}, .first_write = 1});
}

/* ---- narrow ---- */

static blt_status narrow_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    blt_tensor v = *gin[0];
    int d = (int)n->iarg[0];
    v.offset += n->iarg[1] * v.stride[d];
    v.shape[d] = n->iarg[2];
    v.numel = g->numel; /* the strided add walks numel elements of the view */
    blt_strided_add(&v, g);
    return BLT_OK;
}

blt_status blt_narrow(blt_tensor **out, blt_tensor *x, int dim, int64_t start, int64_t len)
{
    BLT_TRY(blt_check_live("narrow", "x", x));
    char b[160];
    int d = norm_dim(dim, x->ndim);
    if (d < 0 || d >= x->ndim)
        return blt_fail(BLT_EINVAL, "narrow: dimension %d out of range for shape %s", dim,
                        blt_shape_str(x, b, sizeof b));
    if (start < 0 || len < 0 || start > x->shape[d] || len > x->shape[d] - start) /* no start + len: it may overflow */
        return blt_fail(BLT_EINVAL, "narrow: start %lld, length %lld out of range for dimension %d "
                        "of shape %s", (long long)start, (long long)len, dim,
                        blt_shape_str(x, b, sizeof b));
    blt_tensor *y;
    BLT_TRY(blt_tensor_alias(&y, x));
    y->offset += start * y->stride[d];
    y->shape[d] = len;
    y->numel = 1;
    for (int k = 0; k < y->ndim; k++) y->numel *= y->shape[k];
    return blt_op_finish(out, y, BLT_OK, "narrow", narrow_bw, 1, &x,
                         &(blt_node_keep){.iarg = {d, start, len}});
}

/* ---- concat ---- */

static blt_status concat_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    int d = (int)n->iarg[0];
    int64_t off = 0;
    for (int i = 0; i < n->nin; i++) {
        int64_t len = n->aux ? ((int64_t *)n->aux)[i] : 0;
        if (gin[i]) {
            blt_tensor v = *g;
            v.offset += off * v.stride[d];
            v.shape[d] = len;
            blt_strided_add(gin[i], &v);
        }
        off += len;
    }
    return BLT_OK;
}

typedef struct { blt_tensor *const *xs; int n, d; } concat_lengths;

static void fill_lengths(void *buffer, const void *arg)
{
    const concat_lengths *c = arg;
    for (int i = 0; i < c->n; i++) ((int64_t *)buffer)[i] = c->xs[i]->shape[c->d];
}

blt_status blt_concat(blt_tensor **out, int n, blt_tensor *const *xs, int dim)
{
    char b1[160], b2[160];
    if (n < 1) return blt_fail(BLT_EINVAL, "concat: needs at least one tensor");
    for (int i = 0; i < n; i++) BLT_TRY(blt_check_live("concat", "tensors", xs[i]));
    const blt_tensor *x0 = xs[0];
    int d = norm_dim(dim, x0->ndim);
    if (d < 0 || d >= x0->ndim)
        return blt_fail(BLT_EINVAL, "concat: dimension %d out of range for shape %s", dim,
                        blt_shape_str(x0, b1, sizeof b1));
    int64_t shape[BLT_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    shape[d] = 0;
    for (int i = 0; i < n; i++) {
        const blt_tensor *x = xs[i];
        int ok = x->ndim == x0->ndim && x->dtype == x0->dtype;
        for (int k = 0; ok && k < x0->ndim; k++) ok = k == d || x->shape[k] == x0->shape[k];
        if (!ok)
            return blt_fail(BLT_EINVAL, "concat: tensor %d has shape %s %s, tensor 1 has %s %s "
                            "(all dimensions but %d must match)", i + 1, blt_shape_str(x, b1, sizeof b1),
                            blt_dtype_name(x->dtype), blt_shape_str(x0, b2, sizeof b2),
                            blt_dtype_name(x0->dtype), d + 1);
        shape[d] += x->shape[d];
    }
    blt_tensor *y;
    BLT_TRY(blt_tensor_new(&y, x0->dtype, x0->ndim, shape));
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        blt_tensor v = *y;
        v.offset += off * v.stride[d];
        v.shape[d] = xs[i]->shape[d];
        v.numel = xs[i]->numel;
        blt_strided_copy(&v, xs[i]);
        off += xs[i]->shape[d];
    }
    /* the node keeps each input's length along d; int32 inputs make none (nin 0) */
    concat_lengths cl = {xs, n, d};
    return blt_op_finish(out, y, BLT_OK, "concat", concat_bw, x0->dtype == BLT_F32 ? n : 0, xs,
                         &(blt_node_keep){.iarg = {d}, .newbytes = (size_t)n * sizeof(int64_t),
                                          .fill = fill_lengths, .arg = &cl});
}

/* ---- gather ---- */

/* Walks every element of index (contiguous) with its multi-index; calls back with
 * the flat offset into x (dim replaced by the index value). */
static blt_status gather_walk(const char *fn, const blt_tensor *x, const blt_tensor *index, int d,
                              float *y, float *gx, const float *gy)
{
    int nd = index->ndim;
    int64_t idx[BLT_MAX_DIMS] = {0};
    const int32_t *ix = blt_i32(index);
    const float *xd = x ? blt_f32(x) : NULL;
    for (int64_t e = 0; e < index->numel; e++) {
        int64_t v = ix[e];
        if (v < 0 || v >= x->shape[d]) {
            char b[160];
            return blt_fail(BLT_EINVAL, "%s: index %lld out of range for dimension %d of x %s", fn,
                            (long long)v, d + 1, blt_shape_str(x, b, sizeof b)); /* 1-based, as in Lua */
        }
        int64_t off = 0;
        for (int k = 0; k < nd; k++) off += (k == d ? v : idx[k]) * x->stride[k];
        if (y) y[e] = xd[off];
        if (gx) gx[off] += gy[e];
        for (int k = nd - 1; k >= 0; k--) {
            if (++idx[k] < index->shape[k]) break;
            idx[k] = 0;
        }
    }
    return BLT_OK;
}

static blt_status gather_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    /* gin[0] is contiguous and shaped like x: walk with its strides */
    return gather_walk("gather", gin[0], n->saved[0], (int)n->iarg[0], NULL, blt_f32(gin[0]), blt_f32(g));
}

blt_status blt_gather(blt_tensor **out, blt_tensor *x, int dim, blt_tensor *index)
{
    BLT_TRY(blt_check("gather", "x", x, BLT_F32));
    BLT_TRY(blt_check("gather", "index", index, BLT_I32));
    char b1[160], b2[160];
    int d = norm_dim(dim, x->ndim);
    if (d < 0 || d >= x->ndim)
        return blt_fail(BLT_EINVAL, "gather: dimension %d out of range for x %s", dim,
                        blt_shape_str(x, b1, sizeof b1));
    int ok = index->ndim == x->ndim;
    for (int k = 0; ok && k < x->ndim; k++) ok = k == d || index->shape[k] <= x->shape[k];
    if (!ok)
        return blt_fail(BLT_EINVAL, "gather: index %s does not fit x %s along dimension %d",
                        blt_shape_str(index, b2, sizeof b2), blt_shape_str(x, b1, sizeof b1), d + 1);
    blt_tensor *ic, *y = NULL;
    BLT_TRY(blt_contiguous(&ic, index));
    blt_status s = blt_tensor_new(&y, BLT_F32, index->ndim, index->shape);
    if (s == BLT_OK) s = gather_walk("gather", x, ic, d, blt_f32(y), NULL, NULL);
    s = blt_op_finish(out, y, s, "gather", gather_bw, 1, &x, &(blt_node_keep){.save = {ic}, .iarg = {d}});
    blt_tensor_release(ic);
    return s;
}

/* ---- index_select ---- */

static blt_status index_select_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    const int32_t *ix = blt_i32(n->saved[0]);
    int64_t outer = n->iarg[0], nsrc = n->iarg[1], nidx = n->iarg[2], inner = n->iarg[3];
    float *gx = blt_f32(gin[0]);
    const float *gy = blt_f32(g);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < nidx; i++) {
            float *dst = gx + (o * nsrc + ix[i]) * inner;
            const float *src = gy + (o * nidx + i) * inner;
            for (int64_t j = 0; j < inner; j++) dst[j] += src[j];
        }
    return BLT_OK;
}

blt_status blt_index_select(blt_tensor **out, blt_tensor *x, int dim, blt_tensor *index)
{
    BLT_TRY(blt_check_live("index_select", "x", x));
    BLT_TRY(blt_check("index_select", "index", index, BLT_I32));
    char b1[160], b2[160];
    int d = norm_dim(dim, x->ndim);
    if (d < 0 || d >= x->ndim)
        return blt_fail(BLT_EINVAL, "index_select: dimension %d out of range for x %s", dim,
                        blt_shape_str(x, b1, sizeof b1));
    if (index->ndim != 1)
        return blt_fail(BLT_EINVAL, "index_select: index must be 1-d, got %s",
                        blt_shape_str(index, b2, sizeof b2));
    blt_tensor *ic;
    BLT_TRY(blt_contiguous(&ic, index));
    const int32_t *ix = blt_i32(ic);
    for (int64_t i = 0; i < ic->numel; i++)
        if (ix[i] < 0 || ix[i] >= x->shape[d]) {
            blt_tensor_release(ic);
            return blt_fail(BLT_EINVAL, "index_select: index %d out of range for dimension %d of x %s",
                            ix[i], d + 1, blt_shape_str(x, b1, sizeof b1)); /* 1-based, as in Lua */
        }
    blt_tensor *xc = NULL, *y = NULL;
    blt_status s = blt_contiguous(&xc, x);
    int64_t shape[BLT_MAX_DIMS], outer = 1, inner = 1;
    memcpy(shape, x->shape, sizeof shape);
    shape[d] = ic->numel;
    for (int k = 0; k < d; k++) outer *= x->shape[k];
    for (int k = d + 1; k < x->ndim; k++) inner *= x->shape[k];
    if (s == BLT_OK) s = blt_tensor_new(&y, x->dtype, x->ndim, shape);
    if (s == BLT_OK) {
        size_t es = 4;
        const char *src = (const char *)xc->st->data + xc->offset * es;
        char *dst = y->st->data;
        for (int64_t o = 0; o < outer; o++)
            for (int64_t i = 0; i < ic->numel; i++)
                memcpy(dst + ((o * ic->numel + i) * inner) * es,
                       src + ((o * x->shape[d] + ix[i]) * inner) * es, (size_t)inner * es);
    }
    /* int32 rows make no node (nin 0) */
    s = blt_op_finish(out, y, s, "index_select", index_select_bw, x->dtype == BLT_F32 ? 1 : 0, &xc,
                      &(blt_node_keep){.save = {ic}, .iarg = {outer, x->shape[d], ic->numel, inner}});
    blt_tensor_release(xc);
    blt_tensor_release(ic);
    return s;
}

/* ---- segment max-pool (patch pooling) ---- */

typedef struct {
    const float *x;
    float *y;
    int32_t *arg;
    const int32_t *len;
    int64_t T, P, D;
} pool_job;

static void pool_fwd_chunk(void *ctx, int64_t b0, int64_t b1, int tid)
{
    (void)tid;
    pool_job *j = ctx;
    for (int64_t b = b0; b < b1; b++) {
        int64_t t = 0;
        for (int64_t p = 0; p < j->P; p++) {
            int64_t L = j->len[b * j->P + p];
            float *y = j->y + (b * j->P + p) * j->D;
            int32_t *a = j->arg + (b * j->P + p) * j->D;
            if (L == 0) {
                for (int64_t k = 0; k < j->D; k++) { y[k] = 0.0f; a[k] = -1; }
                continue;
            }
            const float *x = j->x + (b * j->T + t) * j->D;
            for (int64_t k = 0; k < j->D; k++) { y[k] = x[k]; a[k] = (int32_t)t; }
            for (int64_t r = 1; r < L; r++) {
                x += j->D;
                for (int64_t k = 0; k < j->D; k++)
                    if (x[k] > y[k]) { y[k] = x[k]; a[k] = (int32_t)(t + r); }
            }
            t += L;
        }
    }
}

static blt_status segment_maxpool_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    int64_t B = n->iarg[0], T = n->iarg[1], P = n->iarg[2], D = n->iarg[3];
    const int32_t *a = n->aux;
    float *gx = blt_f32(gin[0]);
    const float *gy = blt_f32(g);
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < P * D; i++) {
            int32_t t = a[b * P * D + i];
            if (t >= 0) gx[(b * T + t) * D + i % D] += gy[b * P * D + i];
        }
    return BLT_OK;
}

blt_status blt_segment_maxpool(blt_tensor **out, blt_tensor *x, blt_tensor *lengths)
{
    BLT_TRY(blt_check("segment_maxpool", "x", x, BLT_F32));
    BLT_TRY(blt_check("segment_maxpool", "lengths", lengths, BLT_I32));
    char b1[160], b2[160];
    int batched = x->ndim == 3;
    if (!(x->ndim == 3 && lengths->ndim == 2 && lengths->shape[0] == x->shape[0]) &&
        !(x->ndim == 2 && lengths->ndim == 1))
        return blt_fail(BLT_EINVAL, "segment_maxpool: x %s and lengths %s: expected x [B,T,D] with "
                        "lengths [B,P], or x [T,D] with lengths [P]", blt_shape_str(x, b1, sizeof b1),
                        blt_shape_str(lengths, b2, sizeof b2));
    int64_t B = batched ? x->shape[0] : 1, T = x->shape[x->ndim - 2], D = x->shape[x->ndim - 1];
    int64_t P = lengths->shape[lengths->ndim - 1];
    blt_tensor *lc, *xc = NULL, *y = NULL;
    BLT_TRY(blt_contiguous(&lc, lengths));
    const int32_t *len = blt_i32(lc);
    blt_status s = BLT_OK;
    for (int64_t b = 0; b < B && s == BLT_OK; b++) {
        int64_t sum = 0;
        for (int64_t p = 0; p < P; p++) {
            if (len[b * P + p] < 0) {
                s = blt_fail(BLT_EINVAL, "segment_maxpool: negative length %d in row %lld",
                             len[b * P + p], (long long)b + 1);
                break;
            }
            sum += len[b * P + p];
        }
        if (s == BLT_OK && sum > T)
            s = blt_fail(BLT_EINVAL, "segment_maxpool: lengths of row %lld sum to %lld, more than "
                         "the %lld rows of x %s", (long long)b + 1, (long long)sum, (long long)T,
                         blt_shape_str(x, b1, sizeof b1));
    }
    if (s == BLT_OK) s = blt_contiguous(&xc, x);
    int64_t shape[3] = {B, P, D};
    if (s == BLT_OK) s = batched ? blt_tensor_new(&y, BLT_F32, 3, shape)
                                 : blt_tensor_new(&y, BLT_F32, 2, shape + 1);
    size_t abytes = (size_t)(B * P * D) * sizeof(int32_t);
    int32_t *arg = s == BLT_OK ? blt_mem_alloc(abytes) : NULL;
    if (s == BLT_OK && !arg) s = blt_fail(BLT_ENOMEM, "segment_maxpool: out of memory");
    if (s == BLT_OK) {
        pool_job j = {blt_f32(xc), blt_f32(y), arg, len, T, P, D};
        blt_parallel_for(B, 1, pool_fwd_chunk, &j);
    }
    s = blt_op_finish(out, y, s, "segment_maxpool", segment_maxpool_bw, 1, &xc,
                      &(blt_node_keep){.iarg = {B, T, P, D}, .aux = arg, .auxbytes = abytes});
    blt_tensor_release(xc);
    blt_tensor_release(lc);
    return s;
}
