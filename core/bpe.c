/* Byte-level BPE: pre-tokenization, the merge loop and the encoder (bpe.h).
 *
 * Training works on unique chunks with their counts, so its cost follows the
 * vocabulary of the text, not its length. Each unique chunk is a doubly linked list
 * of symbols in one array; each pair (a, b) keeps its weighted count and the positions
 * where it may occur (entries go stale as merges happen and are checked when used).
 * A max-heap of (count, a, b) entries picks the next merge: after each merge every
 * pair whose count changed gets a fresh entry, and a popped entry whose count is no
 * longer the pair's is skipped, so the first valid entry is the true best. */
#include "bpe.h"
#include "ids.h"
#include <stdlib.h>
#include <string.h>

enum { C_WS, C_LET, C_DIG, C_OTH };

static int byte_class(int b)
{
    if (b == ' ' || (b >= '\t' && b <= '\r')) return C_WS;
    if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || b >= 0x80) return C_LET;
    if (b >= '0' && b <= '9') return C_DIG;
    return C_OTH;
}

static int is_byte(int32_t id) { return id >= BLT_ID_OFFSET && id < BLT_ID_VOCAB; }
static int cls_of(int32_t id) { return byte_class(id - BLT_ID_OFFSET); }

/* Length of the chunk starting at the byte id ids[i] (ids[0..n-1] all < BLT_ID_VOCAB). */
static int64_t chunk_len(const int32_t *ids, int64_t i, int64_t n)
{
    int64_t j = i;
    if (ids[i] - BLT_ID_OFFSET == ' ' && i + 1 < n && is_byte(ids[i + 1]) && cls_of(ids[i + 1]) != C_WS) j = i + 1;
    int c = cls_of(ids[j]);
    j++;
    while (j < n && j - i < BLT_BPE_MAX_CHUNK && is_byte(ids[j]) && cls_of(ids[j]) == c) j++;
    return j - i;
}

static blt_status check_ids(const char *fn, const int32_t *ids, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= BLT_ID_VOCAB)
            return blt_fail(BLT_EINVAL, "%s: id %d at position %lld is not a byte or special id (0..%d)", fn,
                            (int)ids[i], (long long)i + 1, BLT_ID_VOCAB - 1);
    return BLT_OK;
}

/* realloc for the trainer's parallel arrays: the new block, or p itself (still owned,
 * still valid) with *ok cleared when memory ran out, so a group of arrays grows with
 * one check at the end and nothing leaks. */
static void *grow(void *p, size_t bytes, int *ok)
{
    void *q = realloc(p, bytes);
    if (!q) {
        *ok = 0;
        return p;
    }
    return q;
}

static uint64_t mix(uint64_t h) { return h * 0x9E3779B97F4A7C15ULL; }

/* ---- an open-addressing map from 64-bit keys to int64 values (no deletion) ---- */
typedef struct {
    uint64_t *keys;
    int64_t *vals; /* -1: empty */
    int64_t cap, used;
} map64;

static blt_status map_init(map64 *m, int64_t cap)
{
    m->cap = cap;
    m->used = 0;
    m->keys = malloc((size_t)cap * sizeof *m->keys);
    m->vals = malloc((size_t)cap * sizeof *m->vals);
    if (!m->keys || !m->vals) return blt_fail(BLT_ENOMEM, "bpe: out of memory (map of %lld)", (long long)cap);
    for (int64_t i = 0; i < cap; i++) m->vals[i] = -1;
    return BLT_OK;
}

static void map_free(map64 *m)
{
    free(m->keys);
    free(m->vals);
    m->keys = NULL;
    m->vals = NULL;
}

/* Slot of key: where it is, or the empty slot where it would go. */
static int64_t map_slot(const map64 *m, uint64_t key)
{
    int64_t i = (int64_t)(mix(key) >> 20) & (m->cap - 1);
    while (m->vals[i] >= 0 && m->keys[i] != key) i = (i + 1) & (m->cap - 1);
    return i;
}

static int64_t map_get(const map64 *m, uint64_t key) { return m->vals[map_slot(m, key)]; }

static blt_status map_put(map64 *m, uint64_t key, int64_t val)
{
    if (2 * (m->used + 1) > m->cap) { /* keep the load under one half */
        map64 g;
        blt_status s = map_init(&g, 2 * m->cap);
        if (s != BLT_OK) { map_free(&g); return s; }
        for (int64_t i = 0; i < m->cap; i++)
            if (m->vals[i] >= 0) {
                int64_t s = map_slot(&g, m->keys[i]);
                g.keys[s] = m->keys[i];
                g.vals[s] = m->vals[i];
            }
        g.used = m->used;
        map_free(m);
        *m = g;
    }
    int64_t s = map_slot(m, key);
    if (m->vals[s] < 0) m->used++;
    m->keys[s] = key;
    m->vals[s] = val;
    return BLT_OK;
}

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

/* ---- training ---- */

typedef struct {
    int64_t count;
    int32_t a, b;
} heap_entry;

typedef struct {
    /* symbols of all unique chunks, each chunk a linked list (-1 ends) */
    int32_t *sym;     /* -1: merged into its left neighbour */
    int64_t *nxt, *prv, *weight;
    /* pairs */
    map64 index;      /* (a, b) -> pair number */
    int32_t *pa, *pb;
    int64_t *count, *touched;
    int64_t **pos, *npos, *cpos;
    int64_t npairs, cap_pairs;
    int64_t *tl, ntl;  /* pairs changed by the current merge (touched[k] = its stamp) */
    heap_entry *heap;
    int64_t nheap, cap_heap;
} trainer;

static int heap_better(const heap_entry *x, const heap_entry *y)
{
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static blt_status heap_push(trainer *t, int64_t count, int32_t a, int32_t b)
{
    if (t->nheap == t->cap_heap) {
        int64_t cap = t->cap_heap ? 2 * t->cap_heap : 1024;
        heap_entry *h = realloc(t->heap, (size_t)cap * sizeof *h);
        if (!h) return blt_fail(BLT_ENOMEM, "bpe_train: out of memory (heap)");
        t->heap = h;
        t->cap_heap = cap;
    }
    int64_t i = t->nheap++;
    heap_entry e = {count, a, b};
    while (i > 0 && heap_better(&e, &t->heap[(i - 1) / 2])) {
        t->heap[i] = t->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    t->heap[i] = e;
    return BLT_OK;
}

static heap_entry heap_pop(trainer *t)
{
    heap_entry top = t->heap[0], last = t->heap[--t->nheap];
    int64_t i = 0, n = t->nheap;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_better(&t->heap[c + 1], &t->heap[c])) c++;
        if (!heap_better(&t->heap[c], &last)) break;
        t->heap[i] = t->heap[c];
        i = c;
    }
    if (n > 0) t->heap[i] = last;
    return top;
}

/* The number of pair (a, b), made when new. */
static blt_status pair_of(trainer *t, int32_t a, int32_t b, int64_t *id)
{
    uint64_t key = pair_key(a, b);
    int64_t k = map_get(&t->index, key);
    if (k >= 0) { *id = k; return BLT_OK; }
    if (t->npairs == t->cap_pairs) {
        int64_t cap = t->cap_pairs ? 2 * t->cap_pairs : 4096;
        int ok = 1;
        t->pa = grow(t->pa, (size_t)cap * sizeof *t->pa, &ok);
        t->pb = grow(t->pb, (size_t)cap * sizeof *t->pb, &ok);
        t->count = grow(t->count, (size_t)cap * sizeof *t->count, &ok);
        t->touched = grow(t->touched, (size_t)cap * sizeof *t->touched, &ok);
        t->pos = grow(t->pos, (size_t)cap * sizeof *t->pos, &ok);
        t->npos = grow(t->npos, (size_t)cap * sizeof *t->npos, &ok);
        t->cpos = grow(t->cpos, (size_t)cap * sizeof *t->cpos, &ok);
        t->tl = grow(t->tl, (size_t)cap * sizeof *t->tl, &ok);
        if (!ok) return blt_fail(BLT_ENOMEM, "bpe_train: out of memory (%lld pairs)", (long long)cap);
        t->cap_pairs = cap;
    }
    k = t->npairs++;
    t->pa[k] = a;
    t->pb[k] = b;
    t->count[k] = 0;
    t->touched[k] = -1;
    t->pos[k] = NULL;
    t->npos[k] = t->cpos[k] = 0;
    BLT_TRY(map_put(&t->index, key, k));
    *id = k;
    return BLT_OK;
}

/* Adds w occurrences of (a, b), one of them possibly at position p (p < 0: none). */
/* Records that the current merge (stamp) changed pair k. tl has room for every pair. */
static void touch(trainer *t, int64_t k, int64_t stamp)
{
    if (stamp < 0 || t->touched[k] == stamp) return;
    t->touched[k] = stamp;
    t->tl[t->ntl++] = k;
}

static blt_status pair_add(trainer *t, int32_t a, int32_t b, int64_t w, int64_t p, int64_t stamp)
{
    int64_t k = -1;
    BLT_TRY(pair_of(t, a, b, &k));
    t->count[k] += w;
    touch(t, k, stamp);
    if (p >= 0) {
        if (t->npos[k] == t->cpos[k]) {
            int64_t cap = t->cpos[k] ? 2 * t->cpos[k] : 4;
            int64_t *q = realloc(t->pos[k], (size_t)cap * sizeof *q);
            if (!q) return blt_fail(BLT_ENOMEM, "bpe_train: out of memory (pair positions)");
            t->pos[k] = q;
            t->cpos[k] = cap;
        }
        t->pos[k][t->npos[k]++] = p;
    }
    return BLT_OK;
}

static void pair_sub(trainer *t, int32_t a, int32_t b, int64_t w, int64_t stamp)
{
    int64_t k = map_get(&t->index, pair_key(a, b)); /* exists: it was counted */
    t->count[k] -= w;
    touch(t, k, stamp);
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

static void trainer_free(trainer *t)
{
    free(t->sym);
    free(t->nxt);
    free(t->prv);
    free(t->weight);
    map_free(&t->index);
    for (int64_t k = 0; k < t->npairs; k++) free(t->pos[k]);
    free(t->pa);
    free(t->pb);
    free(t->count);
    free(t->touched);
    free(t->pos);
    free(t->npos);
    free(t->cpos);
    free(t->tl);
    free(t->heap);
}

/* Unique chunks of ids: first position, length and count of each. */
typedef struct {
    int64_t *start, *len, *count;
    int64_t n, cap, symbols;
} chunk_set;

static uint64_t chunk_hash(const int32_t *ids, int64_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int64_t i = 0; i < len; i++) h = (h ^ (uint64_t)ids[i]) * 0x100000001b3ULL;
    return h;
}

static blt_status count_chunks(const int32_t *ids, int64_t n, chunk_set *cs)
{
    map64 m = {0};
    memset(cs, 0, sizeof *cs);
    blt_status s = map_init(&m, 1 << 16);
    for (int64_t i = 0; s == BLT_OK && i < n;) {
        if (!is_byte(ids[i])) { i++; continue; }
        int64_t len = chunk_len(ids, i, n);
        /* the hash picks the slot; equal hashes compare the bytes (probing on) */
        uint64_t h = chunk_hash(ids + i, len);
        int64_t slot = (int64_t)(mix(h) >> 20) & (m.cap - 1), u;
        while ((u = m.vals[slot]) >= 0 &&
               !(m.keys[slot] == h && cs->len[u] == len && !memcmp(ids + cs->start[u], ids + i, (size_t)len * 4)))
            slot = (slot + 1) & (m.cap - 1);
        if (u >= 0) {
            cs->count[u]++;
        } else {
            if (cs->n == cs->cap) {
                int64_t cap = cs->cap ? 2 * cs->cap : 4096;
                int ok = 1;
                cs->start = grow(cs->start, (size_t)cap * sizeof *cs->start, &ok);
                cs->len = grow(cs->len, (size_t)cap * sizeof *cs->len, &ok);
                cs->count = grow(cs->count, (size_t)cap * sizeof *cs->count, &ok);
                if (!ok) { s = blt_fail(BLT_ENOMEM, "bpe_train: out of memory (chunks)"); break; }
                cs->cap = cap;
            }
            u = cs->n++;
            cs->start[u] = i;
            cs->len[u] = len;
            cs->count[u] = 1;
            cs->symbols += len;
            if (2 * (m.used + 1) > m.cap) {
                /* rebuild at twice the size: reinsert every chunk by its hash */
                map64 g;
                s = map_init(&g, 2 * m.cap);
                if (s != BLT_OK) { map_free(&g); break; }
                for (int64_t v = 0; v < u; v++) {
                    uint64_t hv = chunk_hash(ids + cs->start[v], cs->len[v]);
                    int64_t q = (int64_t)(mix(hv) >> 20) & (g.cap - 1);
                    while (g.vals[q] >= 0) q = (q + 1) & (g.cap - 1);
                    g.keys[q] = hv;
                    g.vals[q] = v;
                }
                g.used = u;
                map_free(&m);
                m = g;
                slot = (int64_t)(mix(h) >> 20) & (m.cap - 1);
                while (m.vals[slot] >= 0) slot = (slot + 1) & (m.cap - 1);
            }
            m.keys[slot] = h;
            m.vals[slot] = u;
            m.used++;
        }
        i += len;
    }
    map_free(&m);
    return s;
}

static void chunks_free(chunk_set *cs)
{
    free(cs->start);
    free(cs->len);
    free(cs->count);
}

static blt_status train(trainer *t, const int32_t *ids, const chunk_set *cs, int64_t n_merges, int64_t min_count,
                        int32_t *merges, int64_t *learned)
{
    int64_t S = cs->symbols;
    t->sym = malloc((size_t)(S ? S : 1) * sizeof *t->sym);
    t->nxt = malloc((size_t)(S ? S : 1) * sizeof *t->nxt);
    t->prv = malloc((size_t)(S ? S : 1) * sizeof *t->prv);
    t->weight = malloc((size_t)(S ? S : 1) * sizeof *t->weight);
    if (!t->sym || !t->nxt || !t->prv || !t->weight) return blt_fail(BLT_ENOMEM, "bpe_train: out of memory (symbols)");
    BLT_TRY(map_init(&t->index, 1 << 14));
    int64_t p = 0;
    for (int64_t u = 0; u < cs->n; u++) {
        for (int64_t j = 0; j < cs->len[u]; j++, p++) {
            t->sym[p] = ids[cs->start[u] + j];
            t->weight[p] = cs->count[u];
            t->prv[p] = j > 0 ? p - 1 : -1;
            t->nxt[p] = j + 1 < cs->len[u] ? p + 1 : -1;
            if (j > 0) BLT_TRY(pair_add(t, t->sym[p - 1], t->sym[p], cs->count[u], p - 1, -1));
        }
    }
    for (int64_t k = 0; k < t->npairs; k++) BLT_TRY(heap_push(t, t->count[k], t->pa[k], t->pb[k]));
    int64_t made = 0;
    while (made < n_merges && t->nheap > 0) {
        heap_entry e = heap_pop(t);
        int64_t k = map_get(&t->index, pair_key(e.a, e.b));
        if (t->count[k] != e.count || e.count <= 0) continue; /* stale: a fresh entry exists */
        if (e.count < min_count) break;
        int32_t a = e.a, b = e.b, z = (int32_t)(BLT_ID_VOCAB + made);
        merges[2 * made] = a;
        merges[2 * made + 1] = b;
        /* this merge cannot make (a, b) again, so its positions can be taken out */
        int64_t *list = t->pos[k], n = t->npos[k];
        t->pos[k] = NULL;
        t->npos[k] = t->cpos[k] = 0;
        qsort(list, (size_t)n, sizeof *list, cmp_i64); /* left to right, as the encoder merges */
        blt_status s = BLT_OK;
        for (int64_t i = 0; i < n && s == BLT_OK; i++) {
            int64_t q = list[i];
            if (t->sym[q] != a) continue;
            int64_t r = t->nxt[q];
            if (r < 0 || t->sym[r] != b) continue;
            int64_t w = t->weight[q], l = t->prv[q], rr = t->nxt[r];
            pair_sub(t, a, b, w, made);
            if (l >= 0) pair_sub(t, t->sym[l], a, w, made);
            if (rr >= 0) pair_sub(t, b, t->sym[rr], w, made);
            t->sym[q] = z;
            t->sym[r] = -1;
            t->nxt[q] = rr;
            if (rr >= 0) t->prv[rr] = q;
            if (l >= 0) s = pair_add(t, t->sym[l], z, w, l, made);
            if (s == BLT_OK && rr >= 0) s = pair_add(t, z, t->sym[rr], w, q, made);
        }
        free(list);
        /* every pair whose count this merge changed gets a fresh heap entry (its old
         * ones no longer match its count and will be skipped) */
        for (int64_t i = 0; i < t->ntl && s == BLT_OK; i++) {
            int64_t j = t->tl[i];
            if (t->count[j] > 0) s = heap_push(t, t->count[j], t->pa[j], t->pb[j]);
        }
        t->ntl = 0;
        if (s != BLT_OK) return s;
        made++;
    }
    *learned = made;
    return BLT_OK;
}

blt_status blt_bpe_train(const int32_t *ids, int64_t n, int64_t n_merges, int64_t min_count, int32_t *merges,
                         int64_t *learned)
{
    *learned = 0;
    if (n < 0) return blt_fail(BLT_EINVAL, "bpe_train: negative length %lld", (long long)n);
    if (n_merges < 0 || n_merges > BLT_BPE_MAX_MERGES)
        return blt_fail(BLT_EINVAL, "bpe_train: merges = %lld out of range 0..%d", (long long)n_merges,
                        BLT_BPE_MAX_MERGES);
    if (min_count < 1) return blt_fail(BLT_EINVAL, "bpe_train: min_count = %lld must be >= 1", (long long)min_count);
    BLT_TRY(check_ids("bpe_train", ids, n));
    chunk_set cs;
    blt_status s = count_chunks(ids, n, &cs);
    if (s == BLT_OK) {
        trainer t;
        memset(&t, 0, sizeof t);
        s = train(&t, ids, &cs, n_merges, min_count, merges, learned);
        trainer_free(&t);
    }
    chunks_free(&cs);
    return s;
}

/* ---- the tokenizer ---- */

struct blt_bpe {
    int64_t n;
    int32_t *merges; /* 2n */
    map64 rank;      /* (a, b) -> merge index */
    int64_t *off;    /* bytes of token id: bytes[off[id] .. off[id + 1]) */
    uint8_t *bytes;
};

void blt_bpe_free(blt_bpe *t)
{
    if (!t) return;
    free(t->merges);
    map_free(&t->rank);
    free(t->off);
    free(t->bytes);
    free(t);
}

int64_t blt_bpe_merges(const blt_bpe *t) { return t->n; }
const int32_t *blt_bpe_merge_list(const blt_bpe *t) { return t->merges; }
int64_t blt_bpe_vocab(const blt_bpe *t) { return BLT_ID_VOCAB + t->n; }

blt_status blt_bpe_new(blt_bpe **out, const int32_t *merges, int64_t n)
{
    *out = NULL;
    if (n < 0 || n > BLT_BPE_MAX_MERGES)
        return blt_fail(BLT_EINVAL, "bpe_new: %lld merges out of range 0..%d", (long long)n, BLT_BPE_MAX_MERGES);
    blt_bpe *t = calloc(1, sizeof *t);
    if (!t) return blt_fail(BLT_ENOMEM, "bpe_new: out of memory");
    int64_t V = BLT_ID_VOCAB + n, cap = 64;
    while (cap < 2 * (n + 1)) cap *= 2;
    blt_status s = map_init(&t->rank, cap);
    t->n = n;
    t->merges = malloc((size_t)(2 * n + 1) * sizeof *t->merges);
    t->off = malloc((size_t)(V + 1) * sizeof *t->off);
    t->bytes = malloc((size_t)(256 + n * BLT_BPE_MAX_CHUNK));
    if (s == BLT_OK && (!t->merges || !t->off || !t->bytes)) s = blt_fail(BLT_ENOMEM, "bpe_new: out of memory");
    if (s != BLT_OK) { blt_bpe_free(t); return s; }
    if (n) memcpy(t->merges, merges, (size_t)(2 * n) * sizeof *merges);
    int64_t used = 0;
    for (int64_t id = 0; id < BLT_ID_VOCAB; id++) {
        t->off[id] = used;
        if (id >= BLT_ID_OFFSET) t->bytes[used++] = (uint8_t)(id - BLT_ID_OFFSET);
    }
    for (int64_t k = 0; k < n && s == BLT_OK; k++) {
        int32_t a = merges[2 * k], b = merges[2 * k + 1];
        t->off[BLT_ID_VOCAB + k] = used;
        for (int side = 0; side < 2; side++) {
            int32_t x = side ? b : a;
            if (x < BLT_ID_OFFSET || x >= BLT_ID_VOCAB + k) {
                s = blt_fail(BLT_EINVAL,
                             "bpe_new: merge %lld (%d, %d) uses id %d: a merge may only join byte ids (%d..%d) "
                             "and earlier merges (below %lld)", (long long)k + 1, (int)a, (int)b, (int)x,
                             BLT_ID_OFFSET, BLT_ID_VOCAB - 1, (long long)(BLT_ID_VOCAB + k));
                break;
            }
        }
        if (s != BLT_OK) break;
        int64_t la = t->off[a + 1] - t->off[a], lb = t->off[b + 1] - t->off[b];
        if (la + lb > BLT_BPE_MAX_CHUNK) {
            s = blt_fail(BLT_EINVAL, "bpe_new: merge %lld (%d, %d) makes a token of %lld bytes, more than a chunk "
                         "holds (%d)", (long long)k + 1, (int)a, (int)b, (long long)(la + lb), BLT_BPE_MAX_CHUNK);
            break;
        }
        memcpy(t->bytes + used, t->bytes + t->off[a], (size_t)la);
        memcpy(t->bytes + used + la, t->bytes + t->off[b], (size_t)lb);
        used += la + lb;
        uint64_t key = pair_key(a, b);
        int64_t prev = map_get(&t->rank, key);
        if (prev >= 0) {
            s = blt_fail(BLT_EINVAL, "bpe_new: merge %lld repeats merge %lld (%d, %d)", (long long)k + 1,
                         (long long)prev + 1, (int)a, (int)b);
            break;
        }
        s = map_put(&t->rank, key, k);
    }
    t->off[V] = used;
    if (s != BLT_OK) { blt_bpe_free(t); return s; }
    *out = t;
    return BLT_OK;
}

/* Encodes one chunk in place: s[0..len-1] -> s[0..*len-1]. */
static void encode_chunk(const blt_bpe *t, int32_t *s, int64_t *len)
{
    int64_t n = *len;
    while (n >= 2) {
        int64_t best = -1;
        for (int64_t i = 0; i + 1 < n; i++) {
            int64_t r = map_get(&t->rank, pair_key(s[i], s[i + 1]));
            if (r >= 0 && (best < 0 || r < best)) best = r;
        }
        if (best < 0) break;
        int32_t a = t->merges[2 * best], b = t->merges[2 * best + 1], z = (int32_t)(BLT_ID_VOCAB + best);
        int64_t j = 0;
        for (int64_t i = 0; i < n;) {
            if (i + 1 < n && s[i] == a && s[i + 1] == b) { s[j++] = z; i += 2; }
            else s[j++] = s[i++];
        }
        n = j;
    }
    *len = n;
}

blt_status blt_bpe_encode(const blt_bpe *t, const int32_t *ids, int64_t n, int32_t *out, int64_t *m)
{
    *m = 0;
    BLT_TRY(check_ids("bpe_encode", ids, n));
    int64_t k = 0;
    for (int64_t i = 0; i < n;) {
        if (!is_byte(ids[i])) {
            if (ids[i] != BLT_ID_PAD) out[k++] = ids[i];
            i++;
            continue;
        }
        int64_t len = chunk_len(ids, i, n);
        memcpy(out + k, ids + i, (size_t)len * sizeof *ids);
        i += len;
        encode_chunk(t, out + k, &len);
        k += len;
    }
    *m = k;
    return BLT_OK;
}

blt_status blt_bpe_decode(const blt_bpe *t, const int32_t *tokens, int64_t n, uint8_t *out, int64_t cap,
                          int64_t *len)
{
    int64_t V = BLT_ID_VOCAB + t->n, used = 0;
    *len = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t id = tokens[i];
        if (id < 0 || id >= V)
            return blt_fail(BLT_EINVAL, "bpe_decode: token %d at position %lld is out of range 0..%lld", (int)id,
                            (long long)i + 1, (long long)V - 1);
        int64_t l = t->off[id + 1] - t->off[id];
        if (out) {
            if (used + l > cap) return blt_fail(BLT_EINVAL, "bpe_decode: output buffer of %lld bytes too small",
                                                (long long)cap);
            memcpy(out + used, t->bytes + t->off[id], (size_t)l);
        }
        used += l;
    }
    *len = used;
    return BLT_OK;
}
