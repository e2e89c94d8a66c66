/* Patching schemes (docs/model.md), the decoder's patch alignment (§5) and hash
 * n-gram buckets (§4). Plain C on raw arrays; the tensor entry points at the end
 * wrap them for batches.
 *
 * A row is N token ids (int32, core/ids.h: 0 pad/BOE, 1 BOS, 2 EOS, 3 reserved,
 * byte b -> b + BLT_ID_OFFSET).
 * A scheme gives start flags s[0..N]: s[t] = 1 when a patch starts at t; s[N] is
 * the flag of the *next* token, which generation needs. Flags are uint8 0/1.
 * Every scheme is incremental: s[t] reads ids[< t] (space: ids[t-2], ids[t-1])
 * and entropies e[< t] only, so the flags of a prefix are the prefix of the flags. */
#ifndef BLT_PATCH_H
#define BLT_PATCH_H
#include <stdint.h>
#include "ids.h"
#include "status.h"
#include "tensor.h"

#define BLT_HASH_MAX_N 64   /* longest n-gram hash_buckets accepts */
#define BLT_HASH_A 1000000007ULL

typedef enum {
    BLT_PATCH_FIXED = 0,     /* size k: starts at 0, 1, 1+k, 1+2k, ... */
    BLT_PATCH_SPACE,         /* a patch ends at a space-like byte after a word byte, and at a special */
    BLT_PATCH_ENTROPY,       /* s[p] = e[p-1] > threshold, p >= 2 */
    BLT_PATCH_ENTROPY_DELTA, /* s[2] = 1; s[p] = e[p-1] - e[p-2] > delta (and e[p-1] > threshold), p >= 3 */
    BLT_PATCH_BYTE,          /* every token is a patch */
    BLT_PATCH_GIVEN          /* the caller supplies the flags (a scheme written in Lua) */
} blt_patch_scheme;

typedef struct {
    blt_patch_scheme scheme;
    int64_t size;      /* fixed: k >= 1 */
    double threshold;  /* entropy: θ >= 0; entropy_delta: the combined θ when use_threshold */
    int use_threshold; /* entropy_delta only: also require e[p-1] > threshold */
    double delta;      /* entropy_delta: θ_r >= 0 */
    int64_t max_len;   /* m >= 1 splits longer patches into pieces of m; 0: no limit */
} blt_patcher;

const char *blt_patch_scheme_name(blt_patch_scheme s);
/* "fixed", "space", "entropy", "entropy_delta", "byte", "given" */
blt_status blt_patch_scheme_parse(const char *name, blt_patch_scheme *out);
blt_status blt_patcher_validate(const blt_patcher *p);
int blt_patch_needs_entropy(const blt_patcher *p);

/* ---- one row ----
 * flags: n+1 entries out. ent: n floats (entropy schemes, else may be NULL).
 * given: n+1 flags in (BLT_PATCH_GIVEN only; 0 or 1, may be anything else for
 * s[0], s[1] which are forced). The shared rules (s[0] = s[1] = 1, max_len) are
 * applied for every scheme. Fails on ids outside 0..259 and NaN entropies. */
blt_status blt_patch_flags(const blt_patcher *p, const int32_t *ids, const float *ent, const uint8_t *given,
                           int64_t n, uint8_t *flags);
/* Forces s[0] = s[1] = 1 and splits patches longer than max_len (0: none); n+1 flags. */
void blt_patch_apply_rules(uint8_t *flags, int64_t n, int64_t max_len);
/* Patch lengths from flags[0..n-1] (flags[0] must be 1 when n > 0). lengths needs
 * room for as many patches as there are set flags (at most n); *count gets that number. */
blt_status blt_patch_lengths_from_flags(const uint8_t *flags, int64_t n, int32_t *lengths, int64_t cap,
                                        int64_t *count);
/* Per-token patch ids, 0-based: ids[t] = (number of set flags in 0..t) - 1. */
void blt_patch_ids_from_flags(const uint8_t *flags, int64_t n, int32_t *ids);
int64_t blt_patch_count_flags(const uint8_t *flags, int64_t n);

/* Decoder alignment (§5): out[t] = patch_of(t+1) - 1 for t in 0..n-1, where
 * patch_of(q) is the patch holding position q of the patches given by lengths
 * (count entries, zero entries end the list early); a position at or past the
 * lengths' sum counts as the start of a new patch. Lengths [1,3,2,2], n = 7 ->
 * [0,0,0,1,1,2,2]. */
blt_status blt_patch_decoder_ids(const int32_t *lengths, int64_t count, int64_t n, int32_t *out);

/* Hash n-gram buckets (§4) of rows [rows, n] for each of nn n-gram sizes:
 * out[i][r][t] = floormod((int64)Σ_k w_k·a^k mod 2^64, buckets), w_0 the oldest id of
 * the window of ngrams[i] ids ending at t, left-padded with 0. out is [nn, rows, n].
 * ids must be >= 0; 1 <= ngrams[i] <= 64; 1 <= buckets <= INT32_MAX. */
blt_status blt_hash_buckets(const int32_t *ids, int64_t rows, int64_t n, const int *ngrams, int nn,
                            int64_t buckets, int32_t *out);

/* ---- tensors (batched, threaded over rows) ----
 * ids: int32 [B,N] (any layout). ent: float32 [B,N] for entropy schemes, else
 * NULL. given: int32 [B,N+1] or [B,N] for BLT_PATCH_GIVEN (nonzero = start), else
 * NULL. Outputs (new tensors; pass NULL for any not wanted):
 *   lengths [B,Pmax] int32, zero-padded, Pmax = the largest patch count;
 *   patch_ids [B,N] int32 (0-based); counts [B] int32;
 *   next [B] int32: s[N] per row, or -1 when unknown (given [B,N]). */
blt_status blt_patch_batch(const blt_patcher *p, const blt_tensor *ids, const blt_tensor *ent,
                           const blt_tensor *given, blt_tensor **lengths, blt_tensor **patch_ids,
                           blt_tensor **counts, blt_tensor **next);
/* lengths int32 [P] or [B,P] (zero-padded) -> decoder patch ids [n] or [B,n]. */
blt_status blt_patch_decoder_ids_tensor(const blt_tensor *lengths, int64_t n, blt_tensor **out);
/* ids int32 [N] or [B,N] -> buckets int32 [nn,N] or [nn,B,N]. */
blt_status blt_hash_buckets_tensor(const blt_tensor *ids, const int *ngrams, int nn, int64_t buckets,
                                   blt_tensor **out);

#endif
