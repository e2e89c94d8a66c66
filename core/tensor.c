#include "tensor.h"
#include "mem.h"
#include <stdlib.h>
#include <math.h>
#include <string.h>

int blt_grad_enabled = 1;

static size_t dtype_size(blt_dtype dt) { return dt == BLT_I32 ? 4 : 4; }

const char *blt_dtype_name(blt_dtype dt) { return dt == BLT_I32 ? "int32" : "float32"; }

char *blt_shape_str(const blt_tensor *t, char *buf, int cap)
{
    return blt_fmt_shape(buf, cap, t->ndim, t->shape);
}

static void set_contiguous_strides(blt_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        t->stride[i] = s;
        s *= t->shape[i];
    }
}

blt_status blt_tensor_new(blt_tensor **out, blt_dtype dt, int ndim, const int64_t *shape)
{
    *out = NULL;
    if (ndim < 0 || ndim > BLT_MAX_DIMS)
        return blt_fail(BLT_EINVAL, "tensor: %d dimensions (at most %d)", ndim, BLT_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            char b[160];
            return blt_fail(BLT_EINVAL, "tensor: negative size in shape %s",
                            blt_fmt_shape(b, sizeof b, ndim, shape));
        }
        if (shape[i] > 0 && n > ((int64_t)1 << 40) / shape[i])
            return blt_fail(BLT_EINVAL, "tensor: shape too large");
        n *= shape[i];
    }
    blt_tensor *t = calloc(1, sizeof *t);
    blt_storage *st = calloc(1, sizeof *st);
    size_t nbytes = (size_t)n * dtype_size(dt);
    void *data = blt_mem_alloc(nbytes);
    if (!t || !st || !data) {
        free(t);
        free(st);
        blt_mem_free(data, nbytes);
        return blt_fail(BLT_ENOMEM, "tensor: out of memory allocating %zu bytes", nbytes);
    }
    st->refs = 1;
    st->nbytes = nbytes;
    st->data = data;
    t->refs = 1;
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    set_contiguous_strides(t);
    t->numel = n;
    t->st = st;
    *out = t;
    return BLT_OK;
}

blt_status blt_tensor_zeros(blt_tensor **out, blt_dtype dt, int ndim, const int64_t *shape)
{
    BLT_TRY(blt_tensor_new(out, dt, ndim, shape));
    memset((*out)->st->data, 0, (*out)->st->nbytes);
    return BLT_OK;
}

blt_status blt_tensor_new_like(blt_tensor **out, const blt_tensor *t)
{
    return blt_tensor_new(out, t->dtype, t->ndim, t->shape);
}

blt_status blt_tensor_zeros_like(blt_tensor **out, const blt_tensor *t)
{
    return blt_tensor_zeros(out, t->dtype, t->ndim, t->shape);
}

blt_tensor *blt_tensor_retain(blt_tensor *t)
{
    if (t) t->refs++;
    return t;
}

void blt_storage_release(blt_storage *st)
{
    if (!st || --st->refs > 0) return;
    if (!st->released) blt_mem_free(st->data, st->nbytes);
    if (st->bf16) blt_mem_free(st->bf16, st->bf16_bytes);
    free(st);
}

void blt_tensor_release(blt_tensor *t)
{
    if (!t || --t->refs > 0) return;
    blt_tensor_release(t->grad);
    blt_node_release(t->node);
    blt_storage_release(t->st);
    free(t);
}

blt_status blt_tensor_alias(blt_tensor **out, blt_tensor *t)
{
    blt_tensor *a = malloc(sizeof *a);
    if (!a) return blt_fail(BLT_ENOMEM, "tensor: out of memory");
    *a = *t;
    a->refs = 1;
    a->requires_grad = 0;
    a->grad = NULL;
    a->node = NULL;
    a->st->refs++;
    *out = a;
    return BLT_OK;
}

void blt_tensor_free_storage(blt_tensor *t)
{
    blt_storage *st = t->st;
    if (st->released) return;
    blt_mem_free(st->data, st->nbytes);
    st->data = NULL;
    st->released = 1;
    if (st->bf16) blt_mem_free(st->bf16, st->bf16_bytes);
    st->bf16 = NULL;
}

int blt_tensor_is_contiguous(const blt_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

int blt_tensor_needs_grad(const blt_tensor *t)
{
    return t && (t->requires_grad || t->node != NULL);
}

blt_status blt_check_live(const char *fn, const char *arg, const blt_tensor *t)
{
    if (!t) return blt_fail(BLT_EINVAL, "%s: argument '%s' is missing", fn, arg);
    if (t->st->released)
        return blt_fail(BLT_ESTATE, "%s: argument '%s' uses storage that was released", fn, arg);
    return BLT_OK;
}

blt_status blt_check(const char *fn, const char *arg, const blt_tensor *t, blt_dtype dt)
{
    BLT_TRY(blt_check_live(fn, arg, t));
    if (t->dtype != dt)
        return blt_fail(BLT_EINVAL, "%s: argument '%s' must be %s, got %s", fn, arg,
                        blt_dtype_name(dt), blt_dtype_name(t->dtype));
    return BLT_OK;
}

/* ---- strided copy / add: iterate the outer dims, inner dim as a plain loop ---- */

static void strided_apply(blt_tensor *dst, const blt_tensor *src, int add)
{
    int nd = dst->ndim;
    if (dst->numel == 0) return;
    if (nd == 0 || (blt_tensor_is_contiguous(dst) && blt_tensor_is_contiguous(src))) {
        float *d = blt_f32(dst);
        const float *s = blt_f32(src);
        if (dst->dtype == BLT_I32 && !add) {
            memcpy(d, s, (size_t)dst->numel * 4);
            return;
        }
        if (add) for (int64_t i = 0; i < dst->numel; i++) d[i] += s[i];
        else memcpy(d, s, (size_t)dst->numel * 4);
        return;
    }
    int64_t idx[BLT_MAX_DIMS] = {0};
    int64_t inner = dst->shape[nd - 1], ds = dst->stride[nd - 1], ss = src->stride[nd - 1];
    int64_t outer = dst->numel / inner;
    char *db = dst->st->data, *sb = src->st->data;
    for (int64_t o = 0; o < outer; o++) {
        int64_t doff = dst->offset, soff = src->offset;
        for (int i = 0; i < nd - 1; i++) {
            doff += idx[i] * dst->stride[i];
            soff += idx[i] * src->stride[i];
        }
        if (dst->dtype == BLT_I32) {
            int32_t *d = (int32_t *)db + doff;
            const int32_t *s = (const int32_t *)sb + soff;
            for (int64_t j = 0; j < inner; j++) d[j * ds] = add ? d[j * ds] + s[j * ss] : s[j * ss];
        } else {
            float *d = (float *)db + doff;
            const float *s = (const float *)sb + soff;
            if (add) for (int64_t j = 0; j < inner; j++) d[j * ds] += s[j * ss];
            else for (int64_t j = 0; j < inner; j++) d[j * ds] = s[j * ss];
        }
        for (int i = nd - 2; i >= 0; i--) {
            if (++idx[i] < dst->shape[i]) break;
            idx[i] = 0;
        }
    }
}

void blt_strided_copy(blt_tensor *dst, const blt_tensor *src) { strided_apply(dst, src, 0); }
void blt_strided_add(blt_tensor *dst, const blt_tensor *src) { strided_apply(dst, src, 1); }

/* ---- autograd ---- */

/* Releasing a node releases its inputs, whose nodes release theirs...: done
 * recursively, a chain of 200,000 ops overflows the C stack. Nodes whose last
 * reference goes are queued instead, and the outermost call frees the queue. */
static _Thread_local blt_node **pending;
static _Thread_local size_t npending, cap_pending;
static _Thread_local int draining;

static void node_free(blt_node *n)
{
    for (int i = 0; i < n->nin; i++) blt_tensor_release(n->in[i]);
    for (int i = 0; i < BLT_NODE_MAX_SAVED; i++) blt_tensor_release(n->saved[i]);
    blt_mem_free(n->aux, n->auxbytes);
    free(n);
}

void blt_node_release(blt_node *n)
{
    if (!n || --n->refs > 0) return;
    if (npending == cap_pending) {
        size_t cap = cap_pending ? cap_pending * 2 : 256;
        blt_node **p = realloc(pending, cap * sizeof *p);
        if (!p) { node_free(n); return; } /* out of memory: recurse rather than leak */
        pending = p;
        cap_pending = cap;
    }
    pending[npending++] = n;
    if (draining) return;
    draining = 1;
    while (npending) node_free(pending[--npending]);
    draining = 0;
    free(pending); /* graphs are freed rarely; keep no buffer between them */
    pending = NULL;
    cap_pending = 0;
}

/* Drops what backward needed but keeps the node, so a second backward can say why
 * it fails. */
static void node_free_contents(blt_node *n)
{
    for (int i = 0; i < n->nin; i++) {
        blt_tensor_release(n->in[i]);
        n->in[i] = NULL;
    }
    for (int i = 0; i < BLT_NODE_MAX_SAVED; i++) {
        blt_tensor_release(n->saved[i]);
        n->saved[i] = NULL;
    }
    blt_mem_free(n->aux, n->auxbytes);
    n->aux = NULL;
    n->auxbytes = 0;
    n->freed = 1;
}

blt_status blt_node_attach(blt_tensor *out, const char *op, blt_backward_fn bw,
                           int nin, blt_tensor *const *in, blt_node **node)
{
    *node = NULL;
    if (!blt_grad_enabled) return BLT_OK;
    int any = 0;
    for (int i = 0; i < nin; i++) any |= blt_tensor_needs_grad(in[i]);
    if (!any) return BLT_OK;
    blt_node *n = calloc(1, sizeof *n + (size_t)nin * sizeof(blt_tensor *));
    if (!n) return blt_fail(BLT_ENOMEM, "%s: out of memory for the graph", op);
    n->refs = 1;
    n->op = op;
    n->backward = bw;
    n->nin = nin;
    for (int i = 0; i < nin; i++)
        n->in[i] = blt_tensor_needs_grad(in[i]) ? blt_tensor_retain(in[i]) : NULL;
    out->node = n;
    *node = n;
    return BLT_OK;
}

blt_status blt_node_save(blt_node *n, int slot, blt_tensor *t)
{
    n->saved[slot] = blt_tensor_retain(t);
    if (t) n->saved_version[slot] = t->st->version;
    return BLT_OK;
}

blt_status blt_node_save_alias(blt_node *n, int slot, blt_tensor *t)
{
    n->saved_version[slot] = t->st->version;
    return blt_tensor_alias(&n->saved[slot], t);
}

blt_status blt_op_finish(blt_tensor **out, blt_tensor *y, blt_status s, const char *op, blt_backward_fn bw,
                         int nin, blt_tensor *const *in, const blt_node_keep *keep)
{
    blt_node *n = NULL;
    if (s == BLT_OK) s = blt_node_attach(y, op, bw, nin, in, &n);
    if (keep && keep->aux && !n) blt_mem_free(keep->aux, keep->auxbytes); /* no node takes it over */
    if (s == BLT_OK && n && keep) {
        memcpy(n->iarg, keep->iarg, sizeof n->iarg);
        memcpy(n->farg, keep->farg, sizeof n->farg);
        n->first_write = keep->first_write;
        int k = 0;
        while (k < 3 && keep->save[k]) {
            blt_node_save(n, k, keep->save[k]);
            k++;
        }
        if (keep->save_out) s = blt_node_save_alias(n, k, y);
        if (keep->aux) { /* taken over even when the alias failed: freed with the node */
            n->aux = keep->aux;
            n->auxbytes = keep->auxbytes;
        } else if (keep->newbytes && s == BLT_OK) {
            n->auxbytes = keep->newbytes;
            n->aux = blt_mem_alloc(keep->newbytes);
            if (!n->aux) s = blt_fail(BLT_ENOMEM, "%s: out of memory", op);
            else if (keep->fill) keep->fill(n->aux, keep->arg);
            else memcpy(n->aux, keep->arg, keep->newbytes);
        }
    }
    if (s != BLT_OK) {
        blt_tensor_release(y);
        return s;
    }
    *out = y;
    return BLT_OK;
}

static unsigned visit_epoch;

typedef struct { blt_tensor **v; size_t n, cap; } tvec;

static int tvec_push(tvec *a, blt_tensor *t)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        blt_tensor **v = realloc(a->v, cap * sizeof *v);
        if (!v) return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = t;
    return 0;
}

/* Post-order DFS without recursion (graphs can be thousands of ops deep). */
static blt_status topo_sort(blt_tensor *root, tvec *order)
{
    tvec stack = {0};
    tvec state = {0}; /* parallel stack: next input index to visit, stored as pointer-sized int */
    unsigned epoch = ++visit_epoch;
    blt_status s = BLT_OK;
    root->mark = epoch;
    if (tvec_push(&stack, root) || tvec_push(&state, NULL)) goto oom;
    while (stack.n) {
        blt_tensor *t = stack.v[stack.n - 1];
        intptr_t k = (intptr_t)state.v[state.n - 1];
        blt_node *n = t->node;
        if (n && k < n->nin) {
            state.v[state.n - 1] = (blt_tensor *)(k + 1);
            blt_tensor *c = n->in[k];
            if (c && c->mark != epoch && c->node) {
                c->mark = epoch;
                if (tvec_push(&stack, c) || tvec_push(&state, NULL)) goto oom;
            }
            continue;
        }
        stack.n--;
        state.n--;
        if (tvec_push(order, t)) goto oom;
        blt_tensor_retain(t); /* nodes freed during backward must not free it under us */
    }
    goto done;
oom:
    s = blt_fail(BLT_ENOMEM, "backward: out of memory sorting the graph");
done:
    free(stack.v);
    free(state.v);
    return s;
}

static blt_status ensure_grad(blt_tensor *t)
{
    if (t->grad) return BLT_OK;
    return blt_tensor_zeros(&t->grad, BLT_F32, t->ndim, t->shape);
}

/* The gradient input k of n receives. The first contribution to a gradient is
 * written without zeroing first where the op can (n->first_write; marked in n->fresh),
 * except for an input listed twice: the order of its two contributions inside the
 * backward is the op's business, so it gets zeros and both add. */
static blt_status give_grad(blt_node *n, int k)
{
    blt_tensor *t = n->in[k];
    if (t->grad) return BLT_OK;
    int twice = 0;
    for (int i = 0; i < n->nin; i++) twice |= i != k && n->in[i] == t;
    if (!(n->first_write >> k & 1u) || twice || k >= 32) return ensure_grad(t);
    BLT_TRY(blt_tensor_new(&t->grad, BLT_F32, t->ndim, t->shape));
    n->fresh |= 1u << k;
    /* BLT_POISON_FRESH=1 (tests): fill it with NaN, so an element the backward fails
     * to write shows (new memory is often zero by chance) */
    static int poison = -1;
    if (poison < 0) {
        const char *e = getenv("BLT_POISON_FRESH");
        poison = e && *e && strcmp(e, "0");
    }
    if (poison)
        for (int64_t i = 0; i < t->grad->numel; i++) blt_f32(t->grad)[i] = NAN;
    return BLT_OK;
}

blt_status blt_backward(blt_tensor *t, blt_tensor *grad)
{
    BLT_TRY(blt_check("backward", "self", t, BLT_F32));
    if (!blt_tensor_needs_grad(t))
        return blt_fail(BLT_ESTATE, "backward: the tensor does not require grad "
                                    "(no input had requires_grad, or it was made under no_grad)");
    if (t->node && t->node->freed)
        return blt_fail(BLT_ESTATE, "backward: the graph of this tensor was already freed by an "
                                    "earlier backward (backward called twice?)");
    char b1[160], b2[160];
    if (grad) {
        BLT_TRY(blt_check("backward", "gradient", grad, BLT_F32));
        if (grad->numel != t->numel || grad->ndim != t->ndim ||
            memcmp(grad->shape, t->shape, sizeof(int64_t) * t->ndim))
            return blt_fail(BLT_EINVAL, "backward: gradient shape %s does not match tensor shape %s",
                            blt_shape_str(grad, b2, sizeof b2), blt_shape_str(t, b1, sizeof b1));
    } else if (t->numel != 1) {
        return blt_fail(BLT_EINVAL, "backward: tensor of shape %s is not a scalar; pass a gradient",
                        blt_shape_str(t, b1, sizeof b1));
    }
    if (grad && t->node && !t->grad && blt_tensor_is_contiguous(grad)) {
        t->grad = blt_tensor_retain(grad); /* backward passes only read it: no zeroed copy needed */
    } else {
        BLT_TRY(ensure_grad(t));
        if (grad) blt_strided_add(t->grad, grad);
        else blt_f32(t->grad)[0] += 1.0f;
    }
    if (!t->node) return BLT_OK; /* a leaf: its own gradient is all there is */

    tvec order = {0};
    blt_status s = topo_sort(t, &order);
    /* Reverse post-order: every tensor's gradient is complete before its node runs.
     * Each node is freed right after it has run; on failure the rest is freed too. */
    for (size_t i = order.n; i-- > 0;) {
        blt_tensor *u = order.v[i];
        blt_node *n = u->node;
        /* a gradient reaching a node that an earlier backward freed would be lost silently */
        if (s == BLT_OK && u->grad && n->freed)
            s = blt_fail(BLT_ESTATE, "backward: the graph through '%s' was already freed by an "
                                     "earlier backward (backward called twice?)", n->op);
        for (int k = 0; s == BLT_OK && u->grad && k < BLT_NODE_MAX_SAVED; k++)
            if (n->saved[k] && n->saved[k]->st->released)
                s = blt_fail(BLT_ESTATE, "backward: a tensor that '%s' saved for backward was released",
                             n->op);
            else if (n->saved[k] && n->saved[k]->st->version != n->saved_version[k])
                s = blt_fail(BLT_ESTATE, "backward: a tensor of shape %s that '%s' saved for backward was "
                             "changed in place (fill, copy, set or an optimiser step) after it was saved "
                             "(version %llu, now %llu); clone it before changing it",
                             blt_shape_str(n->saved[k], b1, sizeof b1), n->op,
                             (unsigned long long)n->saved_version[k], (unsigned long long)n->saved[k]->st->version);
        if (s == BLT_OK && u->grad && !n->freed) {
            blt_tensor **gin = calloc((size_t)n->nin + 1, sizeof *gin);
            if (!gin) s = blt_fail(BLT_ENOMEM, "backward: out of memory");
            n->fresh = 0;
            for (int k = 0; s == BLT_OK && k < n->nin; k++) {
                if (!n->in[k]) continue;
                s = give_grad(n, k);
                gin[k] = n->in[k]->grad;
            }
            if (s == BLT_OK) s = n->backward(n, u->grad, gin);
            free(gin);
        }
        node_free_contents(n);
        blt_tensor_release(u->grad);
        u->grad = NULL;
    }
    for (size_t i = 0; i < order.n; i++) blt_tensor_release(order.v[i]);
    free(order.v);
    return s;
}
