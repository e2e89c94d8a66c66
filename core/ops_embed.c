/* The sum of several embedding lookups in one op: out = w_0[ids_0] + ... + w_{n-1}[ids_{n-1}],
 * the BLT's byte embedding and its hash n-gram tables (docs/model.md). One pass over the
 * output instead of n lookups and n-1 additions, each a pass over [B,T,D] forward and
 * backward, and one thread-pool job each way instead of 2n-1. The rows are added in
 * the order of the list, so the result has the same bits as the chain of lookups and
 * additions it replaces. */
#include "ops.h"
#include "mem.h"
#include "thread.h"
#include <stdio.h>
#include <string.h>

typedef struct {
    int n;
    const float *const *w; /* n tables [V_i, D] */
    float *const *gw;      /* backward: n gradients (NULL: not wanted) */
    const int32_t *ids;    /* [n][N] */
    float *y;              /* forward [N,D]; backward: the output gradient */
    int64_t N, D;
} esum_job;

static void esum_fwd(void *ctx, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    const esum_job *j = ctx;
    int64_t D = j->D;
    for (int64_t r = r0; r < r1; r++) {
        float *y = j->y + r * D;
        memcpy(y, j->w[0] + (int64_t)j->ids[r] * D, sizeof(float) * D);
        for (int i = 1; i < j->n; i++) {
            const float *e = j->w[i] + (int64_t)j->ids[i * j->N + r] * D;
            for (int64_t c = 0; c < D; c++) y[c] += e[c];
        }
    }
}

/* Each chunk owns a range of columns of every table: no two threads add to one place,
 * and each place receives its rows in the order of the positions (deterministic). */
static void esum_bwd(void *ctx, int64_t c0, int64_t c1, int tid)
{
    (void)tid;
    const esum_job *j = ctx;
    int64_t D = j->D;
    for (int i = 0; i < j->n; i++) {
        if (!j->gw[i]) continue;
        const int32_t *ids = j->ids + i * j->N;
        for (int64_t r = 0; r < j->N; r++) {
            float *w = j->gw[i] + (int64_t)ids[r] * D;
            const float *g = j->y + r * D;
            for (int64_t c = c0; c < c1; c++) w[c] += g[c];
        }
    }
}

static blt_status embedding_sum_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    float *gw[BLT_EMBEDDING_SUM_MAX];
    for (int i = 0; i < n->nin; i++) gw[i] = gin[i] ? blt_f32(gin[i]) : NULL;
    esum_job j = {n->nin, NULL, gw, n->aux, blt_f32(g), n->iarg[0], n->iarg[1]};
    blt_parallel_for(j.D, 16, esum_bwd, &j);
    return BLT_OK;
}

blt_status blt_embedding_sum(blt_tensor **out, int n, blt_tensor *const *w, blt_tensor *const *ids)
{
    char b1[160], b2[160];
    if (n < 1 || n > BLT_EMBEDDING_SUM_MAX)
        return blt_fail(BLT_EINVAL, "embedding_sum: %d tables (want 1..%d)", n, BLT_EMBEDDING_SUM_MAX);
    for (int i = 0; i < n; i++) {
        char arg[32];
        snprintf(arg, sizeof arg, "weight %d", i + 1);
        BLT_TRY(blt_check("embedding_sum", arg, w[i], BLT_F32));
        snprintf(arg, sizeof arg, "ids %d", i + 1);
        BLT_TRY(blt_check("embedding_sum", arg, ids[i], BLT_I32));
        if (w[i]->ndim != 2 || w[i]->shape[1] != w[0]->shape[1])
            return blt_fail(BLT_EINVAL, "embedding_sum: weight %d %s must be [V,%lld] (as weight 1 %s)", i + 1,
                            blt_shape_str(w[i], b1, sizeof b1), (long long)w[0]->shape[1],
                            blt_shape_str(w[0], b2, sizeof b2));
        if (ids[i]->ndim != ids[0]->ndim || memcmp(ids[i]->shape, ids[0]->shape, sizeof(int64_t) * ids[0]->ndim))
            return blt_fail(BLT_EINVAL, "embedding_sum: ids %d %s must have the shape of ids 1 %s", i + 1,
                            blt_shape_str(ids[i], b1, sizeof b1), blt_shape_str(ids[0], b2, sizeof b2));
    }
    if (ids[0]->ndim >= BLT_MAX_DIMS) return blt_fail(BLT_EINVAL, "embedding_sum: ids have too many dimensions");
    int64_t N = ids[0]->numel, D = w[0]->shape[1];
    /* the ids of every table, copied (validated) for the forward and kept for backward */
    size_t idbytes = sizeof(int32_t) * (size_t)(n * N) + 1; /* + 1: never a 0-byte request */
    int32_t *id = blt_mem_alloc(idbytes);
    if (!id) return blt_fail(BLT_ENOMEM, "embedding_sum: out of memory");
    blt_status s = BLT_OK;
    blt_tensor *wc[BLT_EMBEDDING_SUM_MAX] = {0}, *y = NULL;
    for (int i = 0; i < n && s == BLT_OK; i++) {
        blt_tensor *ic;
        s = blt_contiguous(&ic, ids[i]);
        if (s != BLT_OK) break;
        memcpy(id + i * N, blt_i32(ic), sizeof(int32_t) * (size_t)N);
        blt_tensor_release(ic);
        for (int64_t r = 0; r < N; r++)
            if (id[i * N + r] < 0 || id[i * N + r] >= w[i]->shape[0]) {
                s = blt_fail(BLT_EINVAL, "embedding_sum: ids %d: id %d at position %lld out of range for weight %d %s",
                             i + 1, id[i * N + r], (long long)r, i + 1, blt_shape_str(w[i], b1, sizeof b1));
                break;
            }
        if (s == BLT_OK) s = blt_contiguous(&wc[i], w[i]);
    }
    int64_t shape[BLT_MAX_DIMS];
    memcpy(shape, ids[0]->shape, sizeof(int64_t) * ids[0]->ndim);
    shape[ids[0]->ndim] = D;
    if (s == BLT_OK) s = blt_tensor_new(&y, BLT_F32, ids[0]->ndim + 1, shape);
    if (s == BLT_OK) {
        const float *wp[BLT_EMBEDDING_SUM_MAX];
        for (int i = 0; i < n; i++) wp[i] = blt_f32(wc[i]);
        esum_job j = {n, wp, NULL, id, blt_f32(y), N, D};
        blt_parallel_for(N, 1 + 8192 / (n * D + 1), esum_fwd, &j);
    }
    s = blt_op_finish(out, y, s, "embedding_sum", embedding_sum_bw, n, wc,
                      &(blt_node_keep){.iarg = {N, D}, .aux = id, .auxbytes = idbytes});
    for (int i = 0; i < n; i++) blt_tensor_release(wc[i]);
    return s;
}
