/* Fused multi-head attention, forward and backward, in the FlashAttention-2 manner:
 * queries in blocks of BQ, keys in blocks of BK, an online softmax, and only the
 * log-sum-exp per query kept for backward, which recomputes the probabilities
 * block by block. No score matrix larger than BQ x BK ever exists, and key blocks
 * that no query of a block may see are never visited. See docs/attention.md.
 *
 * Every mask kind reduces to: query i may see key j iff lo[i] <= j < hi[i] and (with
 * segments) qseg[i] == kseg[j]. lo/hi come from causal, window and key ranges, and
 * from sorted segments by binary search. */
#include "ops.h"
#include "attention_avx512.h"
#include "blas.h"
#include "mem.h"
#include "thread.h"
#include "vexp.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BQ 64
#define BK 64

typedef struct {
    int64_t B, Tq, Tk, H, hd, D;
    float scale;
    const float *q, *k, *v, *o, *go; /* [B,T,D] */
    float *out, *lse;                /* out [B,Tq,D]; lse [B,H,Tq] */
    float *gq, *gk, *gv;             /* accumulated gradients, may be NULL */
    const int32_t *lo, *hi;          /* [B,Tq] */
    const int32_t *qseg, *kseg;      /* [B,Tq], [B,Tk] or NULL */
    int failed;                      /* a task could not get its scratch memory */
    int avx;                         /* block products on the AVX-512 tiles (attention_avx512.c) */
} attn_ctx;

/* Which kernel runs the block products: -1 not decided yet, 0 portable (OpenBLAS),
 * 1 AVX-512. */
static int use_avx512 = -1;

int blt_attention_avx512(void)
{
    if (use_avx512 < 0) {
        const char *e = getenv("BLT_NO_AVX512");
        use_avx512 = blt_cpu_has_avx512() && !(e && *e && strcmp(e, "0"));
    }
    return use_avx512;
}

blt_status blt_attention_set_avx512(int on)
{
    if (on && !blt_cpu_has_avx512())
        return blt_fail(BLT_EINVAL, "attention: the avx512 kernel needs a CPU with AVX-512F; this one has none");
    use_avx512 = !!on;
    return BLT_OK;
}

/* The AVX-512 tiles read keys and values transposed, [hd][Tkp] with Tkp = Tk rounded
 * up to BK, each key block copied on its first visit (a window visits few). */
static int64_t padded_keys(const attn_ctx *c) { return c->avx ? (c->Tk + BK - 1) / BK * BK : 0; }

/* Scratch for one task, from the pool. */
typedef struct {
    float *S, *P, *acc, *m, *l, *dd, *Kt, *Vt;
    uint8_t *kdone, *vdone; /* per key block: copied into Kt / Vt for this (b, h) */
    size_t bytes;
    void *base;
} scratch;

static int scratch_get(scratch *s, const attn_ctx *c)
{
    int64_t hd = c->hd, tkp = padded_keys(c), nb = tkp / BK;
    s->bytes = sizeof(float) * (size_t)(2 * BQ * BK + BQ * hd + 3 * BQ + 2 * hd * tkp) + (size_t)(2 * nb);
    s->base = blt_mem_alloc(s->bytes);
    if (!s->base) return -1;
    float *p = s->base;
    s->S = p; p += BQ * BK;
    s->P = p; p += BQ * BK;
    s->acc = p; p += BQ * hd;
    s->m = p; p += BQ;
    s->l = p; p += BQ;
    s->dd = p; p += BQ;
    s->Kt = p; p += hd * tkp;
    s->Vt = p; p += hd * tkp;
    s->kdone = (uint8_t *)p;
    s->vdone = s->kdone + nb;
    return 0;
}

/* a new (b, h): no key block copied yet */
static void scratch_new_head(scratch *s, const attn_ctx *c)
{
    int64_t nb = padded_keys(c) / BK;
    memset(s->kdone, 0, (size_t)(2 * nb));
}

/* S[r*BK + j] = alpha X_r . Y_{j0+j} for r < nq, j < nk: a query block against a key
 * block (Y: K or V of this head, row stride D). T/done: Y's transposed copy. */
static void prod_nt(const attn_ctx *c, float *T, uint8_t *done, const float *Y, int64_t j0, int64_t nq, int64_t nk,
                    float alpha, const float *X, float *S)
{
    int64_t hd = c->hd, D = c->D;
    if (!c->avx) {
        blt_sgemm_serial(0, 1, nq, nk, hd, alpha, X, D, Y + j0 * D, D, 0.0f, S, BK);
        return;
    }
    int64_t tkp = padded_keys(c);
    if (!done[j0 / BK]) {
        /* d outside: contiguous writes; the block's rows stay in L1 for the strided reads */
        const float *y = Y + j0 * D;
        for (int64_t d = 0; d < hd; d++) {
            float *t = T + d * tkp + j0;
            for (int64_t j = 0; j < nk; j++) t[j] = y[j * D + d];
            for (int64_t j = nk; j < BK; j++) t[j] = 0.0f;
        }
        done[j0 / BK] = 1;
    }
    blt_attn_nt_avx512(nq, nk, hd, alpha, X, D, T + j0, tkp, S, BK);
}

/* C_r += sum_k A(r, k) Y_k for r < m, k < kk: A is a BK-strided block (transA: its
 * transpose), Y rows of stride D, C rows of stride ldc. */
static void prod_acc(const attn_ctx *c, int transA, int64_t m, int64_t kk, const float *A, const float *Y, float *C,
                     int64_t ldc)
{
    if (c->avx) blt_attn_nn_avx512(m, c->hd, kk, A, transA ? 1 : BK, transA ? BK : 1, Y, c->D, C, ldc);
    else blt_sgemm_serial(transA, 0, m, c->hd, kk, 1.0f, A, BK, Y, c->D, 1.0f, C, ldc);
}

/* Key range [*k0, *k1) that some query in [i0, i1) of row b may see. */
static void block_keys(const attn_ctx *c, int64_t b, int64_t i0, int64_t i1, int64_t *k0, int64_t *k1)
{
    int64_t mn = c->Tk, mx = 0;
    for (int64_t i = i0; i < i1; i++) {
        int64_t lo = c->lo[b * c->Tq + i], hi = c->hi[b * c->Tq + i];
        if (lo < hi) {
            if (lo < mn) mn = lo;
            if (hi > mx) mx = hi;
        }
    }
    *k0 = mn;
    *k1 = mx > mn ? mx : mn;
}

/* Sets S[r][c] to -inf where query i0+r may not see key j0+c; returns how many
 * (query, key) pairs of the block are allowed (0: none). */
static int64_t apply_mask(const attn_ctx *c, int64_t b, int64_t i0, int64_t nq, int64_t j0, int64_t nk, float *S)
{
    int64_t allowed = 0;
    for (int64_t r = 0; r < nq; r++) {
        int64_t i = i0 + r, lo = c->lo[b * c->Tq + i], hi = c->hi[b * c->Tq + i];
        float *row = S + r * BK;
        if (!c->kseg && lo <= j0 && j0 + nk <= hi) { allowed += nk; continue; } /* the whole row is visible */
        int32_t qs = c->qseg ? c->qseg[b * c->Tq + i] : 0;
        for (int64_t cc = 0; cc < nk; cc++) {
            int64_t j = j0 + cc;
            int ok = j >= lo && j < hi && (!c->kseg || c->kseg[b * c->Tk + j] == qs);
            if (!ok) row[cc] = -INFINITY;
            allowed += ok;
        }
    }
    return allowed;
}

static void attn_fwd_task(void *ctx, int64_t t0, int64_t t1, int tid)
{
    (void)tid;
    const attn_ctx *c = ctx;
    scratch sc;
    if (scratch_get(&sc, c)) { ((attn_ctx *)ctx)->failed = 1; return; }
    int64_t hd = c->hd, D = c->D;
    int64_t done = 0, pairs = 0; /* multiply-adds executed; allowed pairs (blt_macs_add) */
    for (int64_t t = t0; t < t1; t++) {
        int64_t b = t / c->H, h = t % c->H;
        const float *Q = c->q + b * c->Tq * D + h * hd;
        const float *K = c->k + b * c->Tk * D + h * hd;
        const float *V = c->v + b * c->Tk * D + h * hd;
        scratch_new_head(&sc, c);
        for (int64_t i0 = 0; i0 < c->Tq; i0 += BQ) {
            int64_t nq = c->Tq - i0 < BQ ? c->Tq - i0 : BQ, k0, k1;
            block_keys(c, b, i0, i0 + nq, &k0, &k1);
            for (int64_t r = 0; r < nq; r++) { sc.m[r] = -INFINITY; sc.l[r] = 0.0f; }
            memset(sc.acc, 0, sizeof(float) * nq * hd);
            for (int64_t j0 = k0 - k0 % BK; j0 < k1; j0 += BK) {
                int64_t nk = c->Tk - j0 < BK ? c->Tk - j0 : BK;
                prod_nt(c, sc.Kt, sc.kdone, K, j0, nq, nk, c->scale, Q + i0 * D, sc.S);
                done += nq * nk * hd;
                int64_t allowed = apply_mask(c, b, i0, nq, j0, nk, sc.S);
                if (!allowed) continue;
                pairs += allowed;
                done += nq * nk * hd; /* the P V product below */
                for (int64_t r = 0; r < nq; r++) {
                    float *s = sc.S + r * BK, mx = blt_vmax(s, nk, sc.m[r]);
                    if (mx == -INFINITY) { /* nothing visible yet in this row */
                        for (int64_t cc = 0; cc < nk; cc++) s[cc] = 0.0f;
                        continue;
                    }
                    float corr = expf(sc.m[r] - mx);
                    blt_vexp_shift(s, mx, nk);
                    float sum = blt_vsum(s, nk);
                    sc.l[r] = sc.l[r] * corr + sum;
                    sc.m[r] = mx;
                    if (corr != 1.0f) for (int64_t d = 0; d < hd; d++) sc.acc[r * hd + d] *= corr;
                }
                prod_acc(c, 0, nq, nk, sc.S, V + j0 * D, sc.acc, hd);
            }
            for (int64_t r = 0; r < nq; r++) {
                float *o = c->out + (b * c->Tq + i0 + r) * D + h * hd;
                float inv = sc.l[r] > 0.0f ? 1.0f / sc.l[r] : 0.0f;
                for (int64_t d = 0; d < hd; d++) o[d] = sc.acc[r * hd + d] * inv;
                c->lse[(b * c->H + h) * c->Tq + i0 + r] = sc.l[r] > 0.0f ? sc.m[r] + logf(sc.l[r]) : -INFINITY;
            }
        }
    }
    blt_macs_add(BLT_MACS_ATTENTION, done);
    blt_macs_add(BLT_MACS_ATTENTION_USEFUL, 2 * pairs * hd); /* S = Q K^T and P V */
    blt_mem_free(sc.base, sc.bytes);
}

static void attn_bwd_task(void *ctx, int64_t t0, int64_t t1, int tid)
{
    (void)tid;
    const attn_ctx *c = ctx;
    scratch sc;
    if (scratch_get(&sc, c)) { ((attn_ctx *)ctx)->failed = 1; return; }
    int64_t hd = c->hd, D = c->D;
    int64_t done = 0, pairs = 0; /* multiply-adds executed; allowed pairs (blt_macs_add) */
    /* products per visited block: S recomputed, dP, and dV, dQ, dK when wanted */
    int64_t products = 2 + (c->gv != NULL) + (c->gq != NULL) + (c->gk != NULL);
    for (int64_t t = t0; t < t1; t++) {
        int64_t b = t / c->H, h = t % c->H;
        int64_t qoff = b * c->Tq * D + h * hd, koff = b * c->Tk * D + h * hd;
        const float *Q = c->q + qoff, *K = c->k + koff, *V = c->v + koff;
        const float *O = c->o + qoff, *GO = c->go + qoff;
        const float *lse = c->lse + (b * c->H + h) * c->Tq;
        float *GQ = c->gq ? c->gq + qoff : NULL, *GK = c->gk ? c->gk + koff : NULL;
        float *GV = c->gv ? c->gv + koff : NULL;
        scratch_new_head(&sc, c);
        for (int64_t i0 = 0; i0 < c->Tq; i0 += BQ) {
            int64_t nq = c->Tq - i0 < BQ ? c->Tq - i0 : BQ, k0, k1;
            block_keys(c, b, i0, i0 + nq, &k0, &k1);
            for (int64_t r = 0; r < nq; r++) { /* dd_i = dO_i . O_i */
                const float *go = GO + (i0 + r) * D, *o = O + (i0 + r) * D;
                float s = 0.0f;
                for (int64_t d = 0; d < hd; d++) s += go[d] * o[d];
                sc.dd[r] = s;
            }
            for (int64_t j0 = k0 - k0 % BK; j0 < k1; j0 += BK) {
                int64_t nk = c->Tk - j0 < BK ? c->Tk - j0 : BK;
                prod_nt(c, sc.Kt, sc.kdone, K, j0, nq, nk, c->scale, Q + i0 * D, sc.S);
                int64_t allowed = apply_mask(c, b, i0, nq, j0, nk, sc.S);
                done += (allowed ? products : 1) * nq * nk * hd;
                if (!allowed) continue;
                pairs += allowed;
                for (int64_t r = 0; r < nq; r++) { /* P = exp(S - lse) */
                    float *s = sc.S + r * BK, L = lse[i0 + r];
                    if (L == -INFINITY) memset(s, 0, sizeof(float) * nk); /* the query sees no key */
                    else blt_vexp_shift(s, L, nk);                      /* masked -inf -> 0 */
                }
                if (GV) prod_acc(c, 1, nk, nq, sc.S, GO + i0 * D, GV + j0 * D, D);
                /* dP = dO V^T, then dS = P (dP - dd) * scale */
                prod_nt(c, sc.Vt, sc.vdone, V, j0, nq, nk, 1.0f, GO + i0 * D, sc.P);
                for (int64_t r = 0; r < nq; r++) {
                    float *p = sc.S + r * BK, *dp = sc.P + r * BK, dd = sc.dd[r];
                    for (int64_t cc = 0; cc < nk; cc++) dp[cc] = p[cc] * (dp[cc] - dd) * c->scale;
                }
                if (GQ) prod_acc(c, 0, nq, nk, sc.P, K + j0 * D, GQ + i0 * D, D);
                if (GK) prod_acc(c, 1, nk, nq, sc.P, Q + i0 * D, GK + j0 * D, D);
            }
        }
    }
    blt_macs_add(BLT_MACS_ATTENTION, done);
    blt_macs_add(BLT_MACS_ATTENTION_USEFUL, products * pairs * hd);
    blt_mem_free(sc.base, sc.bytes);
}

/* Tasks per thread-pool chunk: all of them (run inline) when the whole attention is
 * tiny, as one generated position is: waking a worker (50-80 us) would cost more than
 * the work. Otherwise one (b, h) pair per chunk. */
static int64_t task_grain(int64_t tasks, int64_t Tq, int64_t Tk, int64_t D)
{
    double work = (double)Tq * (double)Tk * (double)D;
    return work < 262144.0 ? tasks : 1;
}

/* Saved for backward in node->aux: lse, lo, hi (and the dims in iarg). */
static blt_status attention_bw(blt_node *n, blt_tensor *g, blt_tensor **gin)
{
    blt_tensor *q = n->saved[0], *k = n->saved[1], *v = n->saved[2], *o = n->saved[3];
    int64_t B = q->shape[0], Tq = q->shape[1], Tk = k->shape[1], D = q->shape[2], H = n->iarg[0];
    float *lse = n->aux;
    int32_t *lo = (int32_t *)(lse + B * H * Tq), *hi = lo + B * Tq;
    int32_t *qseg = n->iarg[1] ? hi + B * Tq : NULL, *kseg = qseg ? qseg + B * Tq : NULL;
    attn_ctx c = {B, Tq, Tk, H, D / H, D, (float)n->farg[0], blt_f32(q), blt_f32(k), blt_f32(v),
                  blt_f32(o), blt_f32(g), NULL, lse,
                  gin[0] ? blt_f32(gin[0]) : NULL, gin[1] ? blt_f32(gin[1]) : NULL,
                  gin[2] ? blt_f32(gin[2]) : NULL, lo, hi, qseg, kseg, 0, (int)n->iarg[2]};
    blt_parallel_for(B * H, task_grain(B * H, Tq, Tk, D), attn_bwd_task, &c);
    if (c.failed) return blt_fail(BLT_ENOMEM, "attention: out of memory in backward");
    return BLT_OK;
}

static blt_status check_idx(const char *arg, blt_tensor *t, int64_t B, int64_t T, blt_tensor **tc)
{
    char b1[160];
    BLT_TRY(blt_check("attention", arg, t, BLT_I32));
    if (t->ndim != 2 || t->shape[0] != B || t->shape[1] != T)
        return blt_fail(BLT_EINVAL, "attention: %s %s must be [%lld,%lld]", arg,
                        blt_shape_str(t, b1, sizeof b1), (long long)B, (long long)T);
    return blt_contiguous(tc, t);
}

blt_status blt_attention(blt_tensor **out, blt_tensor *q, blt_tensor *k, blt_tensor *v,
                         const blt_attn_opts *opt)
{
    BLT_TRY(blt_check("attention", "q", q, BLT_F32));
    BLT_TRY(blt_check("attention", "k", k, BLT_F32));
    BLT_TRY(blt_check("attention", "v", v, BLT_F32));
    char b1[160], b2[160], b3[160];
    if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3 || k->shape[0] != q->shape[0] ||
        v->shape[0] != q->shape[0] || k->shape[2] != q->shape[2] || v->shape[2] != q->shape[2] ||
        v->shape[1] != k->shape[1])
        return blt_fail(BLT_EINVAL, "attention: q %s, k %s, v %s: want q [B,Tq,D] and k, v [B,Tk,D]",
                        blt_shape_str(q, b1, sizeof b1), blt_shape_str(k, b2, sizeof b2),
                        blt_shape_str(v, b3, sizeof b3));
    int64_t B = q->shape[0], Tq = q->shape[1], Tk = k->shape[1], D = q->shape[2], H = opt->heads;
    if (H <= 0 || D % H)
        return blt_fail(BLT_EINVAL, "attention: %lld heads do not divide the width %lld of q %s",
                        (long long)H, (long long)D, blt_shape_str(q, b1, sizeof b1));
    if (opt->window < 0 || (opt->window > 0 && !opt->causal))
        return blt_fail(BLT_EINVAL, "attention: window %lld needs causal = true and must be >= 0",
                        (long long)opt->window);
    if ((opt->q_seg == NULL) != (opt->k_seg == NULL) || (opt->k_start == NULL) != (opt->k_end == NULL))
        return blt_fail(BLT_EINVAL, "attention: q_seg and k_seg (and k_start and k_end) come in pairs");
    if (Tk > INT32_MAX || Tq > INT32_MAX) return blt_fail(BLT_EINVAL, "attention: sequence too long");
    if (opt->q_offset < 0 || opt->q_offset > Tk)
        return blt_fail(BLT_EINVAL, "attention: q_offset %lld must be in 0..%lld (the keys)", (long long)opt->q_offset,
                        (long long)Tk);
    int seg = opt->q_seg != NULL;
    size_t auxbytes = sizeof(float) * (size_t)(B * H * Tq) + sizeof(int32_t) * (size_t)(2 * B * Tq) +
                      (seg ? sizeof(int32_t) * (size_t)(B * (Tq + Tk)) : 0);
    float *aux = blt_mem_alloc(auxbytes);
    if (!aux) return blt_fail(BLT_ENOMEM, "attention: out of memory");
    int32_t *lo = (int32_t *)(aux + B * H * Tq), *hi = lo + B * Tq;
    int32_t *qseg = seg ? hi + B * Tq : NULL, *kseg = seg ? qseg + B * Tq : NULL;
    blt_tensor *qs = NULL, *ks = NULL, *st = NULL, *en = NULL;
    blt_status s = BLT_OK;
    if (seg) {
        s = check_idx("q_seg", opt->q_seg, B, Tq, &qs);
        if (s == BLT_OK) s = check_idx("k_seg", opt->k_seg, B, Tk, &ks);
        if (s == BLT_OK) {
            memcpy(qseg, blt_i32(qs), sizeof(int32_t) * B * Tq);
            memcpy(kseg, blt_i32(ks), sizeof(int32_t) * B * Tk);
        }
    }
    if (s == BLT_OK && opt->k_start) {
        s = check_idx("k_start", opt->k_start, B, Tq, &st);
        if (s == BLT_OK) s = check_idx("k_end", opt->k_end, B, Tq, &en);
    }
    for (int64_t b = 0; s == BLT_OK && b < B; b++) {
        /* sorted key segments let each query's keys be found by binary search */
        int sorted = 1;
        for (int64_t j = 1; seg && j < Tk; j++) sorted &= kseg[b * Tk + j - 1] <= kseg[b * Tk + j];
        for (int64_t i = 0; i < Tq; i++) {
            int64_t l = 0, h = Tk, at = opt->q_offset + i; /* the query's key position */
            if (opt->causal) h = at + 1 < Tk ? at + 1 : Tk;
            if (opt->window > 0 && at - opt->window + 1 > l) l = at - opt->window + 1;
            if (st) {
                int64_t a = blt_i32(st)[b * Tq + i], e = blt_i32(en)[b * Tq + i];
                if (a > l) l = a;
                if (e < h) h = e;
            }
            if (seg && sorted) {
                const int32_t *ksb = kseg + b * Tk;
                int32_t want = qseg[b * Tq + i];
                int64_t a = 0, e = Tk;
                while (a < e) { int64_t m = (a + e) / 2; if (ksb[m] < want) a = m + 1; else e = m; }
                int64_t first = a;
                e = Tk;
                while (a < e) { int64_t m = (a + e) / 2; if (ksb[m] <= want) a = m + 1; else e = m; }
                if (first > l) l = first;
                if (a < h) h = a;
            }
            if (h < l) h = l;
            lo[b * Tq + i] = (int32_t)l;
            hi[b * Tq + i] = (int32_t)h;
        }
    }
    blt_tensor *qc = NULL, *kc = NULL, *vc = NULL, *y = NULL;
    if (s == BLT_OK) s = blt_contiguous(&qc, q);
    if (s == BLT_OK) s = blt_contiguous(&kc, k);
    if (s == BLT_OK) s = blt_contiguous(&vc, v);
    if (s == BLT_OK) s = blt_tensor_new_like(&y, qc);
    float scale = opt->scale > 0.0f ? opt->scale : 1.0f / sqrtf((float)(D / H));
    /* fewer than 4 queries (a generated position) stay on OpenBLAS's matrix-vector
     * product: the tiles would first copy every visited key block transposed. Backward
     * uses the forward's choice. */
    int avx = blt_attention_avx512() && Tq >= 4;
    if (s == BLT_OK) {
        attn_ctx c = {B, Tq, Tk, H, D / H, D, scale, blt_f32(qc), blt_f32(kc), blt_f32(vc), NULL, NULL,
                      blt_f32(y), aux, NULL, NULL, NULL, lo, hi, qseg, kseg, 0, avx};
        blt_parallel_for(B * H, task_grain(B * H, Tq, Tk, D), attn_fwd_task, &c);
        if (c.failed) s = blt_fail(BLT_ENOMEM, "attention: out of memory");
    }
    blt_tensor *in[3] = {qc, kc, vc};
    s = blt_op_finish(out, y, s, "attention", attention_bw, 3, in,
                      &(blt_node_keep){.save = {qc, kc, vc}, .save_out = 1, .iarg = {H, seg, avx}, .farg = {scale},
                                       .aux = aux, .auxbytes = auxbytes});
    blt_tensor_release(qs); blt_tensor_release(ks); blt_tensor_release(st); blt_tensor_release(en);
    blt_tensor_release(qc); blt_tensor_release(kc); blt_tensor_release(vc);
    return s;
}
