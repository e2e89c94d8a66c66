/* Byte-level BPE (the token baseline, docs/model.md "The token baseline: BPE").
 *
 * Ids are the framework's (core/ids.h): the special ids, then byte b = b + BLT_ID_OFFSET,
 * then merge k (0-based) = BLT_ID_VOCAB + k. A merge (a, b) joins two adjacent tokens;
 * both must be byte or earlier merge ids, never special ids.
 *
 * Pre-tokenization: the bytes between special ids are cut into chunks, left to right,
 * and merges never cross a chunk boundary. Byte classes: whitespace (space, \t, \n,
 * \v, \f, \r), letters (ASCII letters and every byte >= 0x80, so UTF-8 sequences stay
 * whole), digits, other. A chunk that starts with a space followed by a non-whitespace
 * byte is that space and the maximal run of the next byte's class (" word"); any other
 * chunk is the maximal run of its first byte's class. A chunk is cut after
 * BLT_BPE_MAX_CHUNK bytes, so no token is longer than that.
 *
 * Training counts unique chunks, then repeatedly merges the most frequent adjacent pair
 * (counted with overlaps, weighted by chunk counts). Ties: the pair with the smaller
 * first id, then the smaller second id. It stops after n merges or when the best pair
 * occurs fewer than min_count times. Encoding applies, within each chunk, the merge of
 * lowest index among the adjacent pairs, at every occurrence from left to right, until
 * none applies.
 *
 * Memory: a blt_bpe is owned by its creator and freed with blt_bpe_free. */
#ifndef BLT_BPE_H
#define BLT_BPE_H
#include <stdint.h>
#include "status.h"

#define BLT_BPE_MAX_CHUNK 64
#define BLT_BPE_MAX_MERGES (1 << 20)

typedef struct blt_bpe blt_bpe;

/* Learns at most n_merges merges from ids[0..n-1] (byte ids; special ids separate
 * chunks). merges: room for 2 * n_merges int32 (a, b pairs in order); *learned is the
 * count made. */
blt_status blt_bpe_train(const int32_t *ids, int64_t n, int64_t n_merges, int64_t min_count, int32_t *merges,
                         int64_t *learned);

/* A tokenizer of merges[0..2n-1]; refuses special or later ids, repeated pairs and
 * tokens longer than BLT_BPE_MAX_CHUNK bytes (no chunk could make them). */
blt_status blt_bpe_new(blt_bpe **out, const int32_t *merges, int64_t n_merges);
void blt_bpe_free(blt_bpe *t);
int64_t blt_bpe_merges(const blt_bpe *t);
/* The merge list: 2 * merges int32 (a, b pairs in order), owned by t. */
const int32_t *blt_bpe_merge_list(const blt_bpe *t);
/* Vocabulary size: BLT_ID_VOCAB + merges. */
int64_t blt_bpe_vocab(const blt_bpe *t);

/* Tokens of ids[0..n-1] (special ids pass through as tokens, except PAD, which is
 * dropped): out has room for n tokens; *m is the count written. */
blt_status blt_bpe_encode(const blt_bpe *t, const int32_t *ids, int64_t n, int32_t *out, int64_t *m);

/* Bytes of tokens[0..n-1] (special ids give none). out NULL: only *len is computed;
 * otherwise out has room for cap bytes. */
blt_status blt_bpe_decode(const blt_bpe *t, const int32_t *tokens, int64_t n, uint8_t *out, int64_t cap,
                          int64_t *len);

#endif
