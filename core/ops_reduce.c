/* Sum and mean over one dimension or over everything. Sums accumulate in double. */
#include "ops.h"
#include "thread.h"
#include <string.h>

typedef struct {
    const float *x;
    float *y;
    int64_t outer, n, inner;
    double scale;
} red_job;

/* Over outer*inner output positions; each sums n strided inputs. */
static void red_chunk(void *ctx, int64_t p0, int64_t p1, int tid)
{
    (void)tid;
    const red_job *j = ctx;
    for (int64_t p = p0; p < p1; p++) {
        int64_t o = p / j->inner, i = p % j->inner;
        const float *x = j->x + o * j->n * j->inner + i;
        double s = 0.0;
        for (int64_t k = 0; k < j->n; k++) s += x[k * j->inner];
        j->y[p] = (float)(s * j->scale);
    }
}

static void red_bw_chunk(void *ctx, int64_t o0, int64_t o1, int tid)
{
    (void)tid;
    const red_job *j = ctx; /* here x is gout [outer,inner], y is gin [outer,n,inner] */
    float sc = (float)j->scale;
    for (int64_t o = o0; o < o1; o++)
        for (int64_t k = 0; k < j->n; k++) {
            float *d = j->y + (o * j->n + k) * j->inner;
            const float *g = j->x + o * j->inner;
            for (int64_t i = 0; i < j->inner; i++) d[i] += g[i] * sc;
        }
}

static blt_status reduce_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    red_job j = {blt_f32(g), blt_f32(gin[0]), n->iarg[0], n->iarg[1], n->iarg[2], n->farg[0]};
    blt_parallel_for(j.outer, 1 + 16384 / (j.n * j.inner + 1), red_bw_chunk, &j);
    return BLT_OK;
}

static blt_status reduce(const char *fn, blt_tensor **out, blt_tensor *x, int dim, int keepdim, int all,
                         int mean)
{
    BLT_TRY(blt_check(fn, "x", x, BLT_F32));
    int64_t outer = 1, n = 1, inner = 1, shape[BLT_MAX_DIMS];
    int nd = 0;
    if (all) {
        n = x->numel;
        if (keepdim) { nd = x->ndim; for (int i = 0; i < nd; i++) shape[i] = 1; }
    } else {
        int d = dim < 0 ? dim + x->ndim : dim;
        if (d < 0 || d >= x->ndim) {
            char b[160];
            return blt_fail(BLT_EINVAL, "%s: dimension %d out of range for shape %s", fn, dim,
                            blt_shape_str(x, b, sizeof b));
        }
        for (int i = 0; i < d; i++) outer *= x->shape[i];
        n = x->shape[d];
        for (int i = d + 1; i < x->ndim; i++) inner *= x->shape[i];
        for (int i = 0; i < x->ndim; i++) {
            if (i == d && !keepdim) continue;
            shape[nd++] = i == d ? 1 : x->shape[i];
        }
    }
    blt_tensor *xc, *y = NULL;
    BLT_TRY(blt_contiguous(&xc, x));
    blt_status s = blt_tensor_new(&y, BLT_F32, nd, shape);
    double scale = mean ? (n ? 1.0 / (double)n : 0.0) : 1.0;
    if (s == BLT_OK) {
        red_job j = {blt_f32(xc), blt_f32(y), outer, n, inner, scale};
        if (outer * inner == 1 && n > 65536) {
            /* one long sum: fixed chunks summed in order, so the result does not
             * depend on timing */
            enum { CH = 64 };
            double part[CH];
            float *x0 = blt_f32(xc);
            for (int c = 0; c < CH; c++) {
                int64_t b = n * c / CH, e = n * (c + 1) / CH;
                double acc = 0.0;
                for (int64_t k = b; k < e; k++) acc += x0[k];
                part[c] = acc;
            }
            double tot = 0.0;
            for (int c = 0; c < CH; c++) tot += part[c];
            blt_f32(y)[0] = (float)(tot * scale);
        } else {
            blt_parallel_for(outer * inner, 1 + 16384 / (n + 1), red_chunk, &j);
        }
    }
    s = blt_op_finish(out, y, s, fn, reduce_bw, 1, &xc,
                      &(blt_node_keep){.iarg = {outer, n, inner}, .farg = {scale}});
    blt_tensor_release(xc);
    return s;
}

blt_status blt_sum(blt_tensor **out, blt_tensor *x, int dim, int keepdim, int all)
{
    return reduce("sum", out, x, dim, keepdim, all, 0);
}

blt_status blt_mean(blt_tensor **out, blt_tensor *x, int dim, int keepdim, int all)
{
    return reduce("mean", out, x, dim, keepdim, all, 1);
}
