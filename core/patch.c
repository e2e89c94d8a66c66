/* Patchers, decoder alignment and hash n-gram buckets. See patch.h and docs/patching.md.
 *
 * Speed: each scheme is one branch-free loop over the row chosen once per row (the
 * scheme switch is outside the loops); input validation is an OR-reduction that
 * only looks for the culprit when it found one; max_len is a separate pass that
 * runs only when a limit is set. Lengths come from a branch-free compaction of
 * start positions. */
#include "ids.h"
#include "patch.h"
#include "thread.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const scheme_names[] = {"fixed", "space", "entropy", "entropy_delta", "byte", "given"};

const char *blt_patch_scheme_name(blt_patch_scheme s)
{
    return (unsigned)s <= BLT_PATCH_GIVEN ? scheme_names[s] : "?";
}

blt_status blt_patch_scheme_parse(const char *name, blt_patch_scheme *out)
{
    for (int i = 0; i <= BLT_PATCH_GIVEN; i++)
        if (name && !strcmp(name, scheme_names[i])) {
            *out = (blt_patch_scheme)i;
            return BLT_OK;
        }
    return blt_fail(BLT_EINVAL,
                    "patch_new: unknown scheme '%s' (known: fixed, space, entropy, entropy_delta, byte, given)",
                    name ? name : "(null)");
}

blt_status blt_patcher_validate(const blt_patcher *p)
{
    if (!p) return blt_fail(BLT_EINVAL, "patch_new: patcher is NULL");
    if ((unsigned)p->scheme > BLT_PATCH_GIVEN) return blt_fail(BLT_EINVAL, "patch_new: scheme %d unknown", (int)p->scheme);
    const char *sn = scheme_names[p->scheme];
    if (p->scheme == BLT_PATCH_FIXED && p->size < 1)
        return blt_fail(BLT_EINVAL, "patch_new: size %lld for scheme 'fixed' (must be >= 1)", (long long)p->size);
    if (p->max_len < 0)
        return blt_fail(BLT_EINVAL, "patch_new: max_patch_len %lld (must be >= 1, or 0 for no limit)",
                        (long long)p->max_len);
    int uses_thr = p->scheme == BLT_PATCH_ENTROPY || (p->scheme == BLT_PATCH_ENTROPY_DELTA && p->use_threshold);
    if (uses_thr && !(p->threshold >= 0))
        return blt_fail(BLT_EINVAL, "patch_new: threshold %g for scheme '%s' (must be a number >= 0)", p->threshold, sn);
    if (p->scheme == BLT_PATCH_ENTROPY_DELTA && !(p->delta >= 0))
        return blt_fail(BLT_EINVAL, "patch_new: delta %g for scheme 'entropy_delta' (must be a number >= 0)", p->delta);
    return BLT_OK;
}

int blt_patch_needs_entropy(const blt_patcher *p)
{
    return p->scheme == BLT_PATCH_ENTROPY || p->scheme == BLT_PATCH_ENTROPY_DELTA;
}

/* ---- validation (OR-reductions; the position is searched only on failure) ---- */

static int64_t first_bad_id(const int32_t *ids, int64_t n, uint32_t limit)
{
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad |= (uint32_t)ids[i] >= limit;
    if (!bad) return -1;
    for (int64_t i = 0; i < n; i++)
        if ((uint32_t)ids[i] >= limit) return i;
    return -1;
}

static int64_t first_nan(const float *e, int64_t n)
{
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad |= e[i] != e[i];
    if (!bad) return -1;
    for (int64_t i = 0; i < n; i++)
        if (e[i] != e[i]) return i;
    return -1;
}

/* ---- scheme kernels: fill flags[2..n] (n >= 2) ---- */

/* 0 special (< BLT_ID_OFFSET), 1 space-like byte, 2 word byte (ASCII letter, digit, UTF-8 continuation) */
static inline uint8_t byte_class(int32_t id)
{
    uint32_t b = (uint32_t)id - (uint32_t)BLT_ID_OFFSET;
    uint32_t digit = (b - '0') < 10u;
    uint32_t letter = ((b | 0x20u) - 'a') < 26u;
    uint32_t cont = (b & 0xC0u) == 0x80u && b < 256u;
    return (uint8_t)((id >= BLT_ID_OFFSET) * (1u + (digit | letter | cont)));
}

static void flags_space(const int32_t *ids, int64_t n, uint8_t *f)
{
    /* s[t]: ids[t-1] is special, or ids[t-1] is space-like after a word byte */
    for (int64_t t = 2; t <= n; t++) {
        uint8_t a = byte_class(ids[t - 2]), b = byte_class(ids[t - 1]);
        f[t] = (uint8_t)((b == 0) | ((b == 1) & (a == 2)));
    }
}

static void flags_entropy(const float *e, int64_t n, double thr, uint8_t *f)
{
    for (int64_t t = 2; t <= n; t++) f[t] = (double)e[t - 1] > thr;
}

static void flags_delta(const float *e, int64_t n, double delta, int use_thr, double thr, uint8_t *f)
{
    f[2] = 1;
    if (use_thr)
        for (int64_t t = 3; t <= n; t++)
            f[t] = (uint8_t)(((double)e[t - 1] - (double)e[t - 2] > delta) & ((double)e[t - 1] > thr));
    else
        for (int64_t t = 3; t <= n; t++) f[t] = (double)e[t - 1] - (double)e[t - 2] > delta;
}

static void flags_fixed(int64_t n, int64_t k, uint8_t *f)
{
    memset(f + 2, 0, (size_t)(n - 1));
    for (int64_t t = 1 + k; t <= n; t += k) f[t] = 1;
}

void blt_patch_apply_rules(uint8_t *f, int64_t n, int64_t max_len)
{
    f[0] = 1;
    if (n >= 1) f[1] = 1;
    if (max_len <= 0) return;
    /* r: length of the open patch before t */
    int64_t r = 1;
    for (int64_t t = 1; t <= n; t++) {
        uint8_t s = (uint8_t)(f[t] | (r >= max_len));
        f[t] = s;
        r = s ? 1 : r + 1;
    }
}

/* No checks: inputs valid, n >= 0, flags has n+1 entries. */
static void flags_raw(const blt_patcher *p, const int32_t *ids, const float *ent, const uint8_t *given, int64_t n,
                      uint8_t *f)
{
    if (n >= 2) switch (p->scheme) {
        case BLT_PATCH_FIXED: flags_fixed(n, p->size, f); break;
        case BLT_PATCH_SPACE: flags_space(ids, n, f); break;
        case BLT_PATCH_ENTROPY: flags_entropy(ent, n, p->threshold, f); break;
        case BLT_PATCH_ENTROPY_DELTA: flags_delta(ent, n, p->delta, p->use_threshold, p->threshold, f); break;
        case BLT_PATCH_BYTE: memset(f + 2, 1, (size_t)(n - 1)); break;
        case BLT_PATCH_GIVEN:
            for (int64_t t = 2; t <= n; t++) f[t] = given[t] != 0;
            break;
        }
    blt_patch_apply_rules(f, n, p->max_len);
}

static blt_status check_row(const char *fn, const blt_patcher *p, const int32_t *ids, const float *ent, int64_t n,
                            int64_t row)
{
    char where[48] = "";
    if (row >= 0) snprintf(where, sizeof where, "row %lld, ", (long long)row + 1);
    if (n < 0) return blt_fail(BLT_EINVAL, "%s: row length %lld is negative", fn, (long long)n);
    if (n > INT32_MAX) return blt_fail(BLT_EINVAL, "%s: row of %lld tokens (at most %d)", fn, (long long)n, INT32_MAX);
    if (n > 0 && !ids) return blt_fail(BLT_EINVAL, "%s: ids is NULL", fn);
    int64_t bad = first_bad_id(ids, n, BLT_ID_VOCAB);
    if (bad >= 0)
        return blt_fail(BLT_EINVAL, "%s: token id %d at %sposition %lld is outside 0..%d", fn, (int)ids[bad], where,
                        (long long)bad + 1, BLT_ID_VOCAB - 1);
    if (blt_patch_needs_entropy(p)) {
        if (n > 0 && !ent)
            return blt_fail(BLT_EINVAL, "%s: scheme '%s' needs entropies", fn, scheme_names[p->scheme]);
        bad = first_nan(ent, n);
        if (bad >= 0)
            return blt_fail(BLT_EINVAL, "%s: entropy at %sposition %lld is NaN", fn, where, (long long)bad + 1);
    }
    return BLT_OK;
}

blt_status blt_patch_flags(const blt_patcher *p, const int32_t *ids, const float *ent, const uint8_t *given,
                           int64_t n, uint8_t *flags)
{
    BLT_TRY(blt_patcher_validate(p));
    BLT_TRY(check_row("patch_flags", p, ids, ent, n, -1));
    if (!flags) return blt_fail(BLT_EINVAL, "patch_flags: flags is NULL");
    if (p->scheme == BLT_PATCH_GIVEN && !given) return blt_fail(BLT_EINVAL, "patch_flags: scheme 'given' needs flags");
    flags_raw(p, ids, ent, given, n, flags);
    return BLT_OK;
}

int64_t blt_patch_count_flags(const uint8_t *f, int64_t n)
{
    int64_t c = 0;
    for (int64_t t = 0; t < n; t++) c += f[t];
    return c;
}

/* Branch-free: start positions compacted into lengths[], then differenced. */
static int64_t lengths_raw(const uint8_t *f, int64_t n, int32_t *len)
{
    int64_t c = 0;
    for (int64_t t = 0; t < n; t++) {
        len[c] = (int32_t)t;
        c += f[t];
    }
    /* len[i] holds the start of patch i for i < c (a later write to len[c] is scratch) */
    for (int64_t i = 0; i + 1 < c; i++) len[i] = len[i + 1] - len[i];
    if (c > 0) len[c - 1] = (int32_t)(n - len[c - 1]);
    return c;
}

blt_status blt_patch_lengths_from_flags(const uint8_t *f, int64_t n, int32_t *lengths, int64_t cap, int64_t *count)
{
    if (n < 0 || n > INT32_MAX) return blt_fail(BLT_EINVAL, "patch_lengths: row length %lld out of range", (long long)n);
    if (n > 0 && !f[0]) return blt_fail(BLT_EINVAL, "patch_lengths: flag of position 1 is 0 (a row starts a patch)");
    int64_t c = blt_patch_count_flags(f, n);
    if (cap < c)
        return blt_fail(BLT_EINVAL, "patch_lengths: room for %lld lengths, %lld patches", (long long)cap, (long long)c);
    *count = c;
    if (cap > c) { /* lengths_raw may write one slot past the last patch */
        lengths_raw(f, n, lengths);
        return BLT_OK;
    }
    int64_t j = -1;
    for (int64_t t = 0; t < n; t++) {
        if (f[t]) lengths[++j] = 0;
        lengths[j]++;
    }
    return BLT_OK;
}

void blt_patch_ids_from_flags(const uint8_t *f, int64_t n, int32_t *ids)
{
    int32_t id = -1;
    for (int64_t t = 0; t < n; t++) {
        id += f[t];
        ids[t] = id;
    }
}

/* ---- decoder alignment ---- */

blt_status blt_patch_decoder_ids(const int32_t *lengths, int64_t count, int64_t n, int32_t *out)
{
    if (n < 0 || count < 0) return blt_fail(BLT_EINVAL, "patch_decoder_ids: negative size (n %lld, count %lld)",
                                            (long long)n, (long long)count);
    int64_t start = 0, j = 0;
    for (; j < count && lengths[j] != 0; j++) {
        if (lengths[j] < 0)
            return blt_fail(BLT_EINVAL, "patch_decoder_ids: length %d of patch %lld is negative", (int)lengths[j],
                            (long long)j + 1);
        if (j == 0 && lengths[0] > 1 && n >= 1)
            return blt_fail(BLT_EINVAL,
                            "patch_decoder_ids: the first patch has length %d (the BOS patch must have length 1)",
                            (int)lengths[0]);
        int64_t end = start + lengths[j];
        int64_t q0 = start < 1 ? 1 : start, q1 = end < n + 1 ? end : n + 1; /* positions q = t+1 in 1..n */
        for (int64_t q = q0; q < q1; q++) out[q - 1] = (int32_t)(j - 1);
        start = end;
        if (start > n) break;
    }
    if (start > n) return BLT_OK;
    /* positions past the lengths' sum: a new patch j starts there */
    for (int64_t q = start < 1 ? 1 : start; q <= n; q++) out[q - 1] = (int32_t)(j - 1 < 0 ? 0 : j - 1);
    return BLT_OK;
}

/* ---- hash n-grams ---- */

/* h mod m for m < 2^32 without a division (Barrett): q = floor(h·M / 2^64) with
 * M = floor((2^64-1)/m) is floor(h/m) or one less, so one correction suffices. */
static inline uint64_t mod_barrett(uint64_t h, uint64_t M, uint64_t m)
{
    uint64_t q = (uint64_t)(((unsigned __int128)h * M) >> 64);
    uint64_t r = h - q * m;
    return r >= m ? r - m : r;
}

/* h read as a signed int64 (two's complement), floor modulo m (0 <= result < m) */
static inline int32_t floor_mod(uint64_t h, uint64_t M, uint64_t m)
{
    uint64_t neg = h >> 63;
    uint64_t mag = neg ? (uint64_t)0 - h : h; /* |h| as the signed value */
    uint64_t r = mod_barrett(mag, M, m);
    return (int32_t)(neg && r ? m - r : r);
}

typedef struct {
    const int32_t *ids;
    int64_t rows, n;
    const int *ng;
    int nn, maxn;
    int64_t buckets;
    int32_t *out;
} hash_ctx;

#define HASH_BLOCK 256

/* For each n: h(t) = Σ_k x[t-n+1+k]·a^k over a block of positions, the k loop
 * outside so the t loop is independent multiply-adds (vectorisable); positions
 * before the row start read 0 from a zero-padded copy of the block's window. */
static void hash_rows(void *vctx, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    hash_ctx *c = vctx;
    uint64_t pw[BLT_HASH_MAX_N], acc[HASH_BLOCK];
    uint64_t win[HASH_BLOCK + BLT_HASH_MAX_N]; /* win[i] = x[t0 - maxn + i], 0 before the row */
    int64_t n = c->n, plane = c->rows * n;
    uint64_t m = (uint64_t)c->buckets, M = UINT64_MAX / m;
    int maxn = c->maxn;
    pw[0] = 1;
    for (int j = 1; j < maxn; j++) pw[j] = pw[j - 1] * BLT_HASH_A;
    for (int64_t r = r0; r < r1; r++) {
        const int32_t *x = c->ids + r * n;
        for (int64_t t0 = 0; t0 < n; t0 += HASH_BLOCK) {
            int64_t len = n - t0 < HASH_BLOCK ? n - t0 : HASH_BLOCK;
            for (int64_t i = 0; i < len + maxn; i++) {
                int64_t src = t0 - maxn + i;
                win[i] = src >= 0 ? (uint64_t)x[src] : 0u;
            }
            for (int k = 0; k < c->nn; k++) {
                int g = c->ng[k];
                /* x[t-g+1+j] = win[t - t0 + maxn - g + 1 + j] */
                const uint64_t *w = win + maxn - g + 1;
                for (int64_t i = 0; i < len; i++) acc[i] = w[i];
                for (int j = 1; j < g; j++) {
                    uint64_t p = pw[j];
                    for (int64_t i = 0; i < len; i++) acc[i] += w[i + j] * p;
                }
                int32_t *o = c->out + k * plane + r * n + t0;
                for (int64_t i = 0; i < len; i++) o[i] = floor_mod(acc[i], M, m);
            }
        }
    }
}

blt_status blt_hash_buckets(const int32_t *ids, int64_t rows, int64_t n, const int *ngrams, int nn,
                            int64_t buckets, int32_t *out)
{
    if (rows < 0 || n < 0) return blt_fail(BLT_EINVAL, "hash_buckets: negative shape [%lld,%lld]", (long long)rows,
                                           (long long)n);
    if (nn < 1) return blt_fail(BLT_EINVAL, "hash_buckets: no n-gram sizes given");
    if (buckets < 1 || buckets > INT32_MAX)
        return blt_fail(BLT_EINVAL, "hash_buckets: bucket count %lld outside 1..%d", (long long)buckets, INT32_MAX);
    int maxn = 0;
    for (int k = 0; k < nn; k++) {
        if (ngrams[k] < 1 || ngrams[k] > BLT_HASH_MAX_N)
            return blt_fail(BLT_EINVAL, "hash_buckets: n-gram size %d (entry %d) outside 1..%d", ngrams[k], k + 1,
                            BLT_HASH_MAX_N);
        if (ngrams[k] > maxn) maxn = ngrams[k];
    }
    int64_t bad = first_bad_id(ids, rows * n, (uint32_t)INT32_MAX + 1u);
    if (bad >= 0)
        return blt_fail(BLT_EINVAL, "hash_buckets: token id %d at row %lld, position %lld is negative", (int)ids[bad],
                        (long long)(bad / n) + 1, (long long)(bad % n) + 1);
    hash_ctx c = {ids, rows, n, ngrams, nn, maxn, buckets, out};
    int64_t grain = n > 0 ? 1 + 16384 / n : 1;
    blt_parallel_for(rows, grain, hash_rows, &c);
    return BLT_OK;
}

/* ---- tensors ---- */

/* A contiguous view of t (t itself, retained, or a copy). */
static blt_status contiguous(const blt_tensor *t, blt_tensor **out)
{
    if (blt_tensor_is_contiguous(t)) {
        *out = blt_tensor_retain((blt_tensor *)t);
        return BLT_OK;
    }
    BLT_TRY(blt_tensor_new_like(out, t));
    blt_strided_copy(*out, t);
    return BLT_OK;
}

typedef struct {
    const blt_patcher *p;
    const int32_t *ids, *given;
    const float *ent;
    int64_t B, N, gcols; /* gcols: N+1 or N for given flags */
    uint8_t *flags;      /* [B, N+1] */
    int32_t *counts;
    int32_t *lengths; /* [B, Pmax] */
    int64_t pmax;
    int32_t *pids; /* [B, N] */
} batch_ctx;

static void batch_flags(void *vctx, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    batch_ctx *c = vctx;
    int64_t N = c->N;
    for (int64_t r = r0; r < r1; r++) {
        uint8_t *f = c->flags + r * (N + 1);
        if (c->p->scheme == BLT_PATCH_GIVEN) {
            const int32_t *g = c->given + r * c->gcols;
            for (int64_t t = 0; t < c->gcols; t++) f[t] = g[t] != 0;
            if (c->gcols == N) f[N] = 0;
        }
        flags_raw(c->p, c->ids + r * N, c->ent ? c->ent + r * N : NULL, f, N, f);
        c->counts[r] = (int32_t)blt_patch_count_flags(f, N);
    }
}

static void batch_fill(void *vctx, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    batch_ctx *c = vctx;
    int64_t N = c->N;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *f = c->flags + r * (N + 1);
        if (c->pids) blt_patch_ids_from_flags(f, N, c->pids + r * N);
        if (c->lengths) {
            int32_t *len = c->lengths + r * c->pmax;
            int64_t cnt = c->counts[r];
            if (cnt < c->pmax) {
                lengths_raw(f, N, len); /* may write len[cnt]: inside the row */
                memset(len + cnt, 0, (size_t)(c->pmax - cnt) * sizeof *len);
            } else { /* the row with the most patches: no spare slot */
                int64_t j = -1;
                for (int64_t t = 0; t < N; t++) {
                    if (f[t]) len[++j] = 0;
                    len[j]++;
                }
            }
        }
    }
}

blt_status blt_patch_batch(const blt_patcher *p, const blt_tensor *ids, const blt_tensor *ent,
                           const blt_tensor *given, blt_tensor **lengths, blt_tensor **patch_ids,
                           blt_tensor **counts, blt_tensor **next)
{
    const char *fn = "patch_batch";
    char s1[64], s2[64];
    BLT_TRY(blt_patcher_validate(p));
    BLT_TRY(blt_check(fn, "ids", ids, BLT_I32));
    if (ids->ndim != 2)
        return blt_fail(BLT_EINVAL, "%s: ids must be [B,N], got %s", fn, blt_shape_str(ids, s1, sizeof s1));
    int64_t B = ids->shape[0], N = ids->shape[1];
    if (N > INT32_MAX) return blt_fail(BLT_EINVAL, "%s: rows of %lld tokens (at most %d)", fn, (long long)N, INT32_MAX);
    int needs_e = blt_patch_needs_entropy(p);
    if (needs_e) {
        if (!ent) return blt_fail(BLT_EINVAL, "%s: scheme '%s' needs entropies [B,N]", fn, scheme_names[p->scheme]);
        BLT_TRY(blt_check(fn, "entropies", ent, BLT_F32));
        if (ent->ndim != 2 || ent->shape[0] != B || ent->shape[1] != N)
            return blt_fail(BLT_EINVAL, "%s: entropies %s do not match ids %s", fn, blt_shape_str(ent, s1, sizeof s1),
                            blt_shape_str(ids, s2, sizeof s2));
    }
    int64_t gcols = 0;
    if (p->scheme == BLT_PATCH_GIVEN) {
        if (!given) return blt_fail(BLT_EINVAL, "%s: scheme 'given' needs flags [B,N+1] or [B,N]", fn);
        BLT_TRY(blt_check(fn, "flags", given, BLT_I32));
        if (given->ndim != 2 || given->shape[0] != B || (given->shape[1] != N && given->shape[1] != N + 1))
            return blt_fail(BLT_EINVAL, "%s: flags %s do not match ids %s (want [B,N+1] or [B,N])", fn,
                            blt_shape_str(given, s1, sizeof s1), blt_shape_str(ids, s2, sizeof s2));
        gcols = given->shape[1];
    }

    blt_status st = BLT_OK;
    blt_tensor *ci = NULL, *ce = NULL, *cg = NULL, *tl = NULL, *tp = NULL, *tc = NULL, *tn = NULL;
    uint8_t *flags = NULL;
    int32_t *cnt = NULL;
    if ((st = contiguous(ids, &ci))) goto done;
    if (needs_e && (st = contiguous(ent, &ce))) goto done;
    if (gcols && (st = contiguous(given, &cg))) goto done;
    const int32_t *X = blt_i32(ci);
    const float *E = ce ? blt_f32(ce) : NULL;
    for (int64_t r = 0; r < B; r++)
        if ((st = check_row(fn, p, X + r * N, E ? E + r * N : NULL, N, r))) goto done;

    flags = malloc((size_t)(B * (N + 1)) + 1);
    cnt = malloc((size_t)B * sizeof *cnt + 1);
    if (!flags || !cnt) {
        st = blt_fail(BLT_ENOMEM, "%s: no memory for the flags of [%lld,%lld]", fn, (long long)B, (long long)N);
        goto done;
    }
    batch_ctx c = {p, X, cg ? blt_i32(cg) : NULL, E, B, N, gcols, flags, cnt, NULL, 0, NULL};
    int64_t grain = 1 + 65536 / (N + 1);
    blt_parallel_for(B, grain, batch_flags, &c);
    int64_t pmax = 0;
    for (int64_t r = 0; r < B; r++) pmax = cnt[r] > pmax ? cnt[r] : pmax;

    if (lengths) {
        int64_t sh[2] = {B, pmax};
        if ((st = blt_tensor_new(&tl, BLT_I32, 2, sh))) goto done;
        c.lengths = blt_i32(tl);
        c.pmax = pmax;
    }
    if (patch_ids) {
        int64_t sh[2] = {B, N};
        if ((st = blt_tensor_new(&tp, BLT_I32, 2, sh))) goto done;
        c.pids = blt_i32(tp);
    }
    if (counts) {
        if ((st = blt_tensor_new(&tc, BLT_I32, 1, &B))) goto done;
        memcpy(blt_i32(tc), cnt, (size_t)B * sizeof *cnt);
    }
    if (next) {
        if ((st = blt_tensor_new(&tn, BLT_I32, 1, &B))) goto done;
        int32_t *nx = blt_i32(tn);
        for (int64_t r = 0; r < B; r++) nx[r] = gcols == N && N >= 2 ? -1 : flags[r * (N + 1) + N];
    }
    if (c.lengths || c.pids) blt_parallel_for(B, grain, batch_fill, &c);
    if (lengths) { *lengths = tl; tl = NULL; }
    if (patch_ids) { *patch_ids = tp; tp = NULL; }
    if (counts) { *counts = tc; tc = NULL; }
    if (next) { *next = tn; tn = NULL; }
done:
    free(flags);
    free(cnt);
    blt_tensor_release(ci);
    blt_tensor_release(ce);
    blt_tensor_release(cg);
    blt_tensor_release(tl);
    blt_tensor_release(tp);
    blt_tensor_release(tc);
    blt_tensor_release(tn);
    return st;
}

blt_status blt_patch_decoder_ids_tensor(const blt_tensor *lengths, int64_t n, blt_tensor **out)
{
    const char *fn = "patch_decoder_ids";
    char s1[64];
    BLT_TRY(blt_check(fn, "lengths", lengths, BLT_I32));
    if (lengths->ndim != 1 && lengths->ndim != 2)
        return blt_fail(BLT_EINVAL, "%s: lengths must be [P] or [B,P], got %s", fn,
                        blt_shape_str(lengths, s1, sizeof s1));
    if (n < 0) return blt_fail(BLT_EINVAL, "%s: n %lld is negative", fn, (long long)n);
    int two = lengths->ndim == 2;
    int64_t B = two ? lengths->shape[0] : 1, P = lengths->shape[two];
    blt_tensor *cl = NULL, *o = NULL;
    BLT_TRY(contiguous(lengths, &cl));
    int64_t sh[2] = {B, n};
    blt_status st = blt_tensor_new(&o, BLT_I32, two ? 2 : 1, two ? sh : sh + 1);
    for (int64_t r = 0; st == BLT_OK && r < B; r++)
        st = blt_patch_decoder_ids(blt_i32(cl) + r * P, P, n, blt_i32(o) + r * n);
    blt_tensor_release(cl);
    if (st) {
        blt_tensor_release(o);
        return st;
    }
    *out = o;
    return BLT_OK;
}

blt_status blt_hash_buckets_tensor(const blt_tensor *ids, const int *ngrams, int nn, int64_t buckets,
                                   blt_tensor **out)
{
    const char *fn = "hash_buckets";
    char s1[64];
    BLT_TRY(blt_check(fn, "ids", ids, BLT_I32));
    if (ids->ndim != 1 && ids->ndim != 2)
        return blt_fail(BLT_EINVAL, "%s: ids must be [N] or [B,N], got %s", fn, blt_shape_str(ids, s1, sizeof s1));
    if (nn < 1) return blt_fail(BLT_EINVAL, "%s: no n-gram sizes given", fn);
    int two = ids->ndim == 2;
    int64_t B = two ? ids->shape[0] : 1, N = ids->shape[two];
    int64_t sh[3] = {nn, B, N}, sh1[2] = {nn, N};
    blt_tensor *ci = NULL, *o = NULL;
    BLT_TRY(contiguous(ids, &ci));
    blt_status st = blt_tensor_new(&o, BLT_I32, two ? 3 : 2, two ? sh : sh1);
    if (st == BLT_OK) st = blt_hash_buckets(blt_i32(ci), B, N, ngrams, nn, buckets, blt_i32(o));
    blt_tensor_release(ci);
    if (st) {
        blt_tensor_release(o);
        return st;
    }
    *out = o;
    return BLT_OK;
}
