#include "optim.h"
#include "thread.h"
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>

typedef struct {
    float *p, *m, *v;
    const float *g;
    const blt_slice *sl;
    int nsl;
    blt_adamw_hp hp;
    float c1, c2; /* bias corrections */
    float momentum;
    int64_t step;
    atomic_int *nonfinite; /* set when an updated parameter or moment is not finite */
} opt_job;

/* x is finite: NaN fails every comparison, so one test catches NaN and both infinities
 * (an integer OR of comparisons keeps the loops vectorised) */
#define FINITE(x) (fabsf(x) <= FLT_MAX)

/* Elements [b, e) of the flat buffer; the slice a position belongs to sets decay. */
static void adamw_chunk(void *ctx, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const opt_job *j = ctx;
    const float b1 = j->hp.beta1, b2 = j->hp.beta2, lr = j->hp.lr, eps = j->hp.eps;
    for (int s = 0; s < j->nsl; s++) {
        int64_t lo = j->sl[s].off > b ? j->sl[s].off : b;
        int64_t hi = j->sl[s].off + j->sl[s].len < e ? j->sl[s].off + j->sl[s].len : e;
        if (lo >= hi) continue;
        float decay = j->sl[s].decay ? 1.0f - lr * j->hp.weight_decay : 1.0f;
        float *p = j->p, *m = j->m, *v = j->v;
        const float *g = j->g;
        int bad = 0;
        for (int64_t i = lo; i < hi; i++) {
            m[i] = b1 * m[i] + (1.0f - b1) * g[i];
            v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
            float mh = m[i] / j->c1, vh = v[i] / j->c2;
            p[i] = p[i] * decay - lr * mh / (sqrtf(vh) + eps);
            bad |= !FINITE(p[i]) | !FINITE(m[i]) | !FINITE(v[i]);
        }
        if (bad) atomic_store_explicit(j->nonfinite, 1, memory_order_relaxed);
    }
}

int blt_adamw_step(float *param, const float *grad, float *m, float *v, const blt_slice *sl, int nsl,
                   int64_t step, blt_adamw_hp hp)
{
    if (nsl == 0) return 0;
    int64_t n = sl[nsl - 1].off + sl[nsl - 1].len;
    atomic_int nonfinite = 0;
    opt_job j = {param, m, v, grad, sl, nsl, hp, (float)(1.0 - pow(hp.beta1, (double)step)),
                 (float)(1.0 - pow(hp.beta2, (double)step)), 0.0f, step, &nonfinite};
    blt_parallel_for(n, 65536, adamw_chunk, &j);
    return atomic_load(&nonfinite);
}

static void sgd_chunk(void *ctx, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const opt_job *j = ctx;
    for (int s = 0; s < j->nsl; s++) {
        int64_t lo = j->sl[s].off > b ? j->sl[s].off : b;
        int64_t hi = j->sl[s].off + j->sl[s].len < e ? j->sl[s].off + j->sl[s].len : e;
        if (lo >= hi) continue;
        float decay = j->sl[s].decay ? 1.0f - j->hp.lr * j->hp.weight_decay : 1.0f;
        int bad = 0;
        for (int64_t i = lo; i < hi; i++) {
            float g = j->g[i];
            if (j->momentum != 0.0f) {
                j->m[i] = j->step == 1 ? g : j->momentum * j->m[i] + g;
                g = j->m[i];
            }
            j->p[i] = j->p[i] * decay - j->hp.lr * g;
            bad |= !FINITE(j->p[i]) | !FINITE(g);
        }
        if (bad) atomic_store_explicit(j->nonfinite, 1, memory_order_relaxed);
    }
}

int blt_sgd_step(float *param, const float *grad, float *buf, const blt_slice *sl, int nsl, float lr,
                 float momentum, float weight_decay, int64_t step)
{
    if (nsl == 0) return 0;
    int64_t n = sl[nsl - 1].off + sl[nsl - 1].len;
    blt_adamw_hp hp = {lr, 0, 0, 0, weight_decay};
    atomic_int nonfinite = 0;
    opt_job j = {param, buf, NULL, grad, sl, nsl, hp, 1, 1, momentum, step, &nonfinite};
    blt_parallel_for(n, 65536, sgd_chunk, &j);
    return atomic_load(&nonfinite);
}

#define NCHUNK 64
typedef struct { const float *x; int64_t n; double part[NCHUNK]; } norm_job;

static void norm_chunk(void *ctx, int64_t c0, int64_t c1, int tid)
{
    (void)tid;
    norm_job *j = ctx;
    for (int64_t c = c0; c < c1; c++) {
        int64_t b = j->n * c / NCHUNK, e = j->n * (c + 1) / NCHUNK;
        double s = 0.0;
        for (int64_t i = b; i < e; i++) s += (double)j->x[i] * j->x[i];
        j->part[c] = s;
    }
}

double blt_l2norm(const float *x, int64_t n)
{
    norm_job j = {x, n, {0}};
    blt_parallel_for(NCHUNK, 1, norm_chunk, &j);
    double s = 0.0;
    for (int c = 0; c < NCHUNK; c++) s += j.part[c];
    return sqrt(s);
}

typedef struct { float *x; float s; } scale_job;

static void scale_chunk(void *ctx, int64_t b, int64_t e, int tid)
{
    (void)tid;
    scale_job *j = ctx;
    for (int64_t i = b; i < e; i++) j->x[i] *= j->s;
}

void blt_scale_inplace(float *x, int64_t n, float s)
{
    scale_job j = {x, s};
    blt_parallel_for(n, 65536, scale_chunk, &j);
}
