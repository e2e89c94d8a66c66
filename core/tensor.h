/* n-d tensors (float32, or int32 for ids) with define-by-run autograd.
 *
 * Lifetimes: a tensor and its storage are reference counted. Storage comes from the
 * step pool (mem.h), so dropping a step's tensors returns their memory for the next
 * step. A tensor produced by an op that needs gradients points to the node that made
 * it; the node holds its inputs and whatever backward needs. blt_backward() frees
 * each node as soon as it has run, so a step's graph does not outlive its backward. */
#ifndef BLT_TENSOR_H
#define BLT_TENSOR_H
#include <stddef.h>
#include <stdint.h>
#include "status.h"

#define BLT_MAX_DIMS 8
#define BLT_NODE_MAX_SAVED 4

typedef enum { BLT_F32 = 0, BLT_I32 = 1 } blt_dtype;

typedef struct blt_storage {
    int refs;
    int released;   /* the user released it: data is gone */
    int reported;   /* its size was already reported to Lua's collector */
    size_t nbytes;
    void *data;
    uint64_t version; /* bumped by every in-place change (set, fill, copy, optimiser
                         steps): backward refuses a saved tensor changed since saved */
    uint16_t *bf16;        /* bf16 copy of the data for bf16 products (ops_matmul.c), or NULL */
    size_t bf16_bytes;
    uint64_t bf16_version; /* the version it was rounded from */
} blt_storage;

typedef struct blt_node blt_node;
typedef struct blt_tensor blt_tensor;

struct blt_tensor {
    int refs;
    blt_dtype dtype;
    int ndim;
    int64_t shape[BLT_MAX_DIMS];
    int64_t stride[BLT_MAX_DIMS]; /* in elements */
    int64_t offset;               /* in elements */
    int64_t numel;
    blt_storage *st;
    int requires_grad; /* leaf that collects .grad */
    blt_tensor *grad;  /* leaf: accumulated gradient; inner tensor: only during backward */
    blt_node *node;    /* the op that made it, NULL for leaves */
    unsigned mark;     /* traversal marker for backward */
};

/* Backward accumulates (+=) into gin[i], a zeroed-or-partial contiguous tensor
 * shaped like in[i], or NULL when in[i] needs no gradient. gout is contiguous.
 * Exception: where the op declared first_write for input i and this is the first
 * contribution to its gradient, gin[i] is uninitialised (bit i of n->fresh) and the
 * backward must write every element of it instead of adding: no zeroing pass. */
typedef blt_status (*blt_backward_fn)(blt_node *n, blt_tensor *gout, blt_tensor **gin);

struct blt_node {
    int refs;
    int freed;          /* backward has run and released everything */
    const char *op;
    blt_backward_fn backward;
    blt_tensor *saved[BLT_NODE_MAX_SAVED];
    uint64_t saved_version[BLT_NODE_MAX_SAVED]; /* storage version when saved */
    int64_t iarg[8];
    double farg[4];
    void *aux;          /* op-specific buffer from the pool, freed with the node */
    size_t auxbytes;
    unsigned first_write; /* bit i: backward can write gin[i] whole (see blt_backward_fn) */
    unsigned fresh;       /* bit i: gin[i] is uninitialised in this backward call */
    int nin;
    blt_tensor *in[]; /* inputs that need gradients (NULL for the others) */
};

/* ---- creation and lifetime ---- */
blt_status blt_tensor_new(blt_tensor **out, blt_dtype dt, int ndim, const int64_t *shape);
blt_status blt_tensor_zeros(blt_tensor **out, blt_dtype dt, int ndim, const int64_t *shape);
blt_status blt_tensor_new_like(blt_tensor **out, const blt_tensor *t); /* contiguous */
blt_status blt_tensor_zeros_like(blt_tensor **out, const blt_tensor *t);
blt_tensor *blt_tensor_retain(blt_tensor *t);
void blt_tensor_release(blt_tensor *t); /* drops one reference; NULL is fine */
void blt_storage_release(blt_storage *st); /* drops one reference to a storage */
/* A new tensor over the same storage and layout, without node or grad. */
blt_status blt_tensor_alias(blt_tensor **out, blt_tensor *t);
/* Records an in-place change of t's storage (see blt_storage.version). */
static inline void blt_tensor_bump(blt_tensor *t) { t->st->version++; }
/* Frees the storage now (all views of it become unusable). */
void blt_tensor_free_storage(blt_tensor *t);

/* ---- inspection ---- */
int blt_tensor_is_contiguous(const blt_tensor *t);
int blt_tensor_needs_grad(const blt_tensor *t);
static inline float *blt_f32(const blt_tensor *t) { return (float *)t->st->data + t->offset; }
static inline int32_t *blt_i32(const blt_tensor *t) { return (int32_t *)t->st->data + t->offset; }
const char *blt_dtype_name(blt_dtype dt);
/* "[2,3]" into buf */
char *blt_shape_str(const blt_tensor *t, char *buf, int cap);
/* Checks that t is usable (not released) and of dtype dt; names fn and arg. */
blt_status blt_check(const char *fn, const char *arg, const blt_tensor *t, blt_dtype dt);
blt_status blt_check_live(const char *fn, const char *arg, const blt_tensor *t);

/* ---- strided helpers ---- */
/* dst (any layout) = src (any layout), same shape. */
void blt_strided_copy(blt_tensor *dst, const blt_tensor *src);
/* dst (any layout) += src (any layout), same shape. */
void blt_strided_add(blt_tensor *dst, const blt_tensor *src);

/* ---- autograd ---- */
extern int blt_grad_enabled;
/* Makes a node for out if grad is on and an input needs it; inputs may be NULL. */
blt_status blt_node_attach(blt_tensor *out, const char *op, blt_backward_fn bw,
                           int nin, blt_tensor *const *in, blt_node **node);
blt_status blt_node_save(blt_node *n, int slot, blt_tensor *t); /* retains */
blt_status blt_node_save_alias(blt_node *n, int slot, blt_tensor *t); /* saves out without a cycle */
void blt_node_release(blt_node *n); /* iterative: a long chain does not recurse */

/* What an op's node keeps for its backward, for blt_op_finish; zero fields are unused. */
typedef struct {
    blt_tensor *save[3]; /* retained into saved[0..], up to the first NULL */
    int save_out;        /* 1: the output itself follows them, saved as an alias (no cycle) */
    int64_t iarg[8];
    double farg[4];
    unsigned first_write; /* bit i: backward writes gin[i] whole when it is fresh (blt_backward_fn) */
    void *aux;           /* a pool buffer of auxbytes, owned from here on: the node takes it
                          * over, or blt_op_finish frees it (no node, or a failure) */
    size_t auxbytes;
    /* or a new pool buffer of newbytes for the node, filled by fill(buffer, arg), or
     * (fill NULL) a copy of the newbytes at arg */
    size_t newbytes;
    void (*fill)(void *buffer, const void *arg);
    const void *arg;
} blt_node_keep;
/* The end of every op's forward; s is the forward's status so far. On success, when
 * grad is on and an input needs it, attaches the node with what keep lists (keep may
 * be NULL), then hands y to *out. On any failure (s, or the node's) releases y, and
 * with it the node, and returns the failure; *out is untouched. */
blt_status blt_op_finish(blt_tensor **out, blt_tensor *y, blt_status s, const char *op, blt_backward_fn bw,
                         int nin, blt_tensor *const *in, const blt_node_keep *keep);
/* 1 when gin[i] of this backward call is uninitialised: write it, do not add */
static inline int blt_grad_fresh(const blt_node *n, int i) { return (int)(n->fresh >> i & 1u); }
/* Runs backward from t; grad NULL means ones (t must then hold one element). */
blt_status blt_backward(blt_tensor *t, blt_tensor *grad);

#endif
