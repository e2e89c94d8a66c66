/* Differentiable ops. Each returns a new tensor in *out (or a view sharing storage,
 * where said) and, when grad mode is on and an input needs gradients, records a node
 * with its backward pass. Float inputs may have any layout; results are contiguous.
 * Every function validates its arguments and fails with a message naming the op,
 * the argument and the shapes. */
#ifndef BLT_OPS_H
#define BLT_OPS_H
#include "tensor.h"

/* ---- views and shape (ops_shape.c) ---- */
/* shape may hold one -1, inferred. A view when x is contiguous, else a copy. */
blt_status blt_reshape(blt_tensor **out, blt_tensor *x, int ndim, const int64_t *shape);
blt_status blt_transpose(blt_tensor **out, blt_tensor *x, int d0, int d1);      /* view */
blt_status blt_narrow(blt_tensor **out, blt_tensor *x, int dim, int64_t start, int64_t len); /* view */
blt_status blt_contiguous(blt_tensor **out, blt_tensor *x); /* x itself (retained) if contiguous */
blt_status blt_concat(blt_tensor **out, int n, blt_tensor *const *xs, int dim);
/* out[...,i,...] = x[..., index[...,i,...], ...] along dim; index int32 shaped like out. */
blt_status blt_gather(blt_tensor **out, blt_tensor *x, int dim, blt_tensor *index);
/* Rows of x along dim picked by a 1-d int32 index. */
blt_status blt_index_select(blt_tensor **out, blt_tensor *x, int dim, blt_tensor *index);
/* x [B,T,D] (or [T,D]), lengths int32 [B,P] (or [P]) of consecutive runs of rows, sum <= T:
 * out [B,P,D] (or [P,D]) the element-wise max over each run; a run of length 0 gives 0. */
blt_status blt_segment_maxpool(blt_tensor **out, blt_tensor *x, blt_tensor *lengths);

/* ---- element-wise (ops_elementwise.c) ---- */
typedef enum { BLT_ADD, BLT_SUB, BLT_MUL, BLT_DIV } blt_binop;
blt_status blt_binary(blt_tensor **out, blt_binop op, blt_tensor *a, blt_tensor *b); /* broadcasting */
blt_status blt_affine(blt_tensor **out, blt_tensor *x, float alpha, float beta); /* alpha*x + beta */
typedef enum { BLT_EXP, BLT_LOG, BLT_TANH, BLT_SILU, BLT_GELU, BLT_SIGMOID, BLT_RELU, BLT_SQRT } blt_unop;
blt_status blt_unary(blt_tensor **out, blt_unop op, blt_tensor *x);
const char *blt_unop_name(blt_unop op);
const char *blt_binop_name(blt_binop op);

/* ---- reductions (ops_reduce.c) ---- */
/* dim < 0 counts from the end; all = 1 reduces everything to a scalar [] */
blt_status blt_sum(blt_tensor **out, blt_tensor *x, int dim, int keepdim, int all);
blt_status blt_mean(blt_tensor **out, blt_tensor *x, int dim, int keepdim, int all);

/* ---- neural-network ops (ops_nn.c) ---- */
blt_status blt_softmax(blt_tensor **out, blt_tensor *x);     /* over the last dim */
blt_status blt_log_softmax(blt_tensor **out, blt_tensor *x); /* over the last dim */
/* Entropy (nats) of softmax over the last dim: H = -sum p ln p. x [...,V] -> [...]. */
blt_status blt_softmax_entropy(blt_tensor **out, blt_tensor *x);
/* logits [N,V] (or [...,V]), targets int32 [N] (or [...]); targets == ignore_index are
 * skipped. mean = 1: mean over counted targets (0 if none); else their sum. */
blt_status blt_cross_entropy(blt_tensor **out, blt_tensor *logits, blt_tensor *targets,
                             int ignore_index, int mean);
/* x / sqrt(mean(x^2) + eps) * g over the last dim; g [D]. */
blt_status blt_rmsnorm(blt_tensor **out, blt_tensor *x, blt_tensor *g, float eps);
/* weight [V,D], ids int32 any shape -> [..., D]. */
blt_status blt_embedding(blt_tensor **out, blt_tensor *weight, blt_tensor *ids);
/* out [..., D] = w[0][ids[0]] + ... + w[n-1][ids[n-1]] (ops_embed.c): n (1..8) tables [V_i,D]
 * and int32 ids of one shape; the same bits as n embedding lookups added in order. */
#define BLT_EMBEDDING_SUM_MAX 8
blt_status blt_embedding_sum(blt_tensor **out, int n, blt_tensor *const *w, blt_tensor *const *ids);
/* x [B,T,H*hd] or [T,H*hd]; rotates pairs (2i,2i+1) of each head by pos*theta^(-2i/hd).
 * positions: NULL (0..T-1), int32 [T] or [B,T]. */
blt_status blt_rope(blt_tensor **out, blt_tensor *x, int heads, double theta, blt_tensor *positions);

/* ---- matrix products (ops_matmul.c) ---- */
/* a [...,M,K] (or [...,K,M] when ta) times b [K,N] (or [N,K] when tb), or batched:
 * a [B,M,K] and b [B,K,N]. */
blt_status blt_matmul(blt_tensor **out, blt_tensor *a, blt_tensor *b, int ta, int tb);
/* x [...,in] @ w^T + bias: w [out,in], bias [out] or NULL. */
blt_status blt_linear(blt_tensor **out, blt_tensor *x, blt_tensor *w, blt_tensor *bias);
/* Precision of blt_linear's products (train.precision), for the whole process:
 * 0 fp32; 1 bf16 operands (x, the weight, the output gradient rounded to nearest even)
 * with fp32 accumulation and fp32 results and gradients. The weight's bf16 copy is
 * kept with its storage and rounded again only after the storage changes (once per
 * optimiser step: the parameters are one flat buffer). Setting 1 fails where bf16
 * products would be widened to fp32 (no AVX512_BF16 or oneDNN, or BLT_NO_BF16=1):
 * slower than fp32, never chosen silently (BLT_BF16_SLOW=1 allows it: for the tests
 * of the bf16 path on any machine). Other products stay fp32. A one-row forward (the
 * cached step of generation) goes through blt_gemv_bf16 (bf16.h): same operands. */
blt_status blt_set_precision(int bf16);
int blt_precision(void);
/* Weight storages rounded to bf16 so far ([0]) and the floats in them ([1]): a storage
 * is rounded again only after a write (its version), so generation rounds a model once. */
void blt_bf16_roundings(int64_t out[2]);

/* ---- attention (attention.c) ---- */
/* Which keys a query may see; all given conditions must hold. Never a T x T mask:
 * the kernel visits only the key blocks that some query of a block may see. */
typedef struct {
    int heads;
    int causal;           /* key j <= query i */
    int64_t window;       /* > 0: also j > i - window (a sliding window; needs causal) */
    blt_tensor *q_seg;    /* int32 [B,Tq] with k_seg [B,Tk]: key allowed iff segments equal */
    blt_tensor *k_seg;
    blt_tensor *k_start;  /* int32 [B,Tq] with k_end: key allowed iff start <= j < end */
    blt_tensor *k_end;
    float scale;          /* 0: 1/sqrt(head_dim) */
    int64_t q_offset;     /* query i sits at key position q_offset + i (queries that follow a
                           * cache of earlier keys) for the causal and window masks */
} blt_attn_opts;
/* The kernel of the block products: 1 AVX-512 tiles (the default where the CPU has
 * AVX-512F, unless BLT_NO_AVX512 is set to something other than 0), 0 the portable one
 * (OpenBLAS). Both give the same results within float32 rounding. Setting 1 fails on a
 * CPU without AVX-512F. Calls with fewer than 4 queries always take the portable one. */
int blt_attention_avx512(void);
blt_status blt_attention_set_avx512(int on);
/* q [B,Tq,H*hd], k and v [B,Tk,H*hd] -> [B,Tq,H*hd]. A query that may see no key
 * gets zeros. */
blt_status blt_attention(blt_tensor **out, blt_tensor *q, blt_tensor *k, blt_tensor *v,
                         const blt_attn_opts *opt);

#endif
