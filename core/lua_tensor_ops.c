/* Lua binding for the tensor ops (shape, elementwise, reductions, layers, attention):
 * each checks its Lua arguments and calls the op in ops.h. The Tensor class itself is
 * lua_tensor.c, which registers these through bltL_add_tensor_ops. Dimensions given
 * as Lua numbers are 1-based (negative counts from the end); values inside int32
 * tensors are 0-based. */
#include "lua_bind.h"
#include "ops.h"
#include <lauxlib.h>
#include <string.h>

static int push_status(lua_State *L, blt_status s, blt_tensor **out, const char *fn)
{
    if (s != BLT_OK) return bltL_error(L, fn);
    bltL_push(L, *out);
    return 1;
}


static int opt_field(lua_State *L, int idx, const char *key)
{
    if (lua_isnoneornil(L, idx)) return LUA_TNIL;
    return lua_getfield(L, idx, key);
}


static int l_reshape(lua_State *L)
{
    blt_tensor *x = bltL_check(L, 1), *y;
    int64_t shape[BLT_MAX_DIMS];
    int nd = bltL_shape(L, 2, shape, "reshape", 1);
    return push_status(L, blt_reshape(&y, x, nd, shape), &y, "reshape");
}

static int l_transpose(lua_State *L)
{
    blt_tensor *x = bltL_check(L, 1), *y;
    int d0 = x->ndim >= 2 ? x->ndim - 2 : 0, d1 = x->ndim - 1;
    if (!lua_isnoneornil(L, 2)) { d0 = bltL_dim(L, 2, x->ndim, "transpose"); d1 = bltL_dim(L, 3, x->ndim, "transpose"); }
    else if (x->ndim < 2) return luaL_error(L, "blt.transpose: needs at least 2 dimensions, tensor has %d", x->ndim);
    return push_status(L, blt_transpose(&y, x, d0, d1), &y, "transpose");
}

static int l_narrow(lua_State *L)
{
    blt_tensor *x = bltL_check(L, 1), *y;
    int d = bltL_dim(L, 2, x->ndim, "narrow");
    int64_t start = bltL_int(L, 3, "narrow", "start", INT64_MIN, INT64_MAX);
    int64_t len = bltL_int(L, 4, "narrow", "length", INT64_MIN, INT64_MAX);
    if (start < 1) return luaL_error(L, "blt.narrow: start %I must be >= 1", (lua_Integer)start);
    /* len > size - (start - 1), not start - 1 + len > size: that sum can overflow */
    if (len < 0 || start - 1 > x->shape[d] || len > x->shape[d] - (start - 1)) { /* 1-based like the call */
        char b[160];
        return luaL_error(L, "blt.narrow: start %I, length %I out of range for dimension %d of shape %s",
                          (lua_Integer)start, (lua_Integer)len, d + 1, blt_shape_str(x, b, sizeof b));
    }
    return push_status(L, blt_narrow(&y, x, d, start - 1, len), &y, "narrow");
}

static int l_contiguous(lua_State *L)
{
    blt_tensor *x = bltL_check(L, 1), *y;
    return push_status(L, blt_contiguous(&y, x), &y, "contiguous");
}

static int l_concat(lua_State *L)
{
    if (!lua_istable(L, 1)) return luaL_error(L, "blt.concat: expected a list of tensors, got %s", luaL_typename(L, 1));
    lua_settop(L, 2); /* the dim stays at 2 (nil when absent), below the scratch list */
    lua_Integer len = luaL_len(L, 1);
    if (len < 1 || len > 1000000)
        return luaL_error(L, "blt.concat: needs a list of 1..1000000 tensors, got %I entries", len);
    int n = (int)len;
    blt_tensor **xs = lua_newuserdatauv(L, sizeof(blt_tensor *) * n, 0); /* freed by the GC on error */
    for (int i = 0; i < n; i++) {
        lua_geti(L, 1, i + 1);
        if (!bltL_is_tensor(L, -1)) return luaL_error(L, "blt.concat: entry %d is %s, not a tensor", i + 1, luaL_typename(L, -1));
        xs[i] = bltL_check(L, -1);
        lua_pop(L, 1);
    }
    int d = lua_isnoneornil(L, 2) ? 0 : bltL_dim(L, 2, xs[0]->ndim, "concat");
    blt_tensor *y;
    return push_status(L, blt_concat(&y, n, xs, d), &y, "concat");
}

static int l_gather(lua_State *L)
{
    blt_tensor *x = bltL_check(L, 1), *y;
    int d = bltL_dim(L, 2, x->ndim, "gather");
    return push_status(L, blt_gather(&y, x, d, bltL_check(L, 3)), &y, "gather");
}

static int l_index_select(lua_State *L)
{
    blt_tensor *x = bltL_check(L, 1), *y;
    int d = bltL_dim(L, 2, x->ndim, "index_select");
    return push_status(L, blt_index_select(&y, x, d, bltL_check(L, 3)), &y, "index_select");
}

static int l_segment_maxpool(lua_State *L)
{
    blt_tensor *y;
    return push_status(L, blt_segment_maxpool(&y, bltL_check(L, 1), bltL_check(L, 2)), &y, "segment_maxpool");
}

/* binary op with numbers on either side */
static int binary(lua_State *L, blt_binop op)
{
    const char *fn = blt_binop_name(op);
    int an = lua_type(L, 1) == LUA_TNUMBER, bn = lua_type(L, 2) == LUA_TNUMBER;
    blt_tensor *y;
    if (an && bn) return luaL_error(L, "blt.%s: needs at least one tensor", fn);
    if (bn) {
        blt_tensor *a = bltL_check(L, 1);
        float v = (float)lua_tonumber(L, 2);
        float alpha = op == BLT_MUL ? v : op == BLT_DIV ? 1.0f / v : 1.0f;
        float beta = op == BLT_ADD ? v : op == BLT_SUB ? -v : 0.0f;
        return push_status(L, blt_affine(&y, a, alpha, beta), &y, fn);
    }
    if (an && (op == BLT_ADD || op == BLT_MUL || op == BLT_SUB)) {
        blt_tensor *b = bltL_check(L, 2);
        float v = (float)lua_tonumber(L, 1);
        float alpha = op == BLT_MUL ? v : op == BLT_SUB ? -1.0f : 1.0f;
        float beta = op == BLT_MUL ? 0.0f : v;
        return push_status(L, blt_affine(&y, b, alpha, beta), &y, fn);
    }
    blt_tensor *b = bltL_check(L, 2), *a;
    if (an) { /* number / tensor: make the number a 0-d tensor and broadcast */
        if (blt_tensor_new(&a, BLT_F32, 0, NULL)) return bltL_error(L, fn);
        blt_f32(a)[0] = (float)lua_tonumber(L, 1);
        bltL_push(L, a);
    } else {
        a = bltL_check(L, 1);
    }
    return push_status(L, blt_binary(&y, op, a, b), &y, fn);
}

static int l_add(lua_State *L) { return binary(L, BLT_ADD); }
static int l_sub(lua_State *L) { return binary(L, BLT_SUB); }
static int l_mul(lua_State *L) { return binary(L, BLT_MUL); }
static int l_div(lua_State *L) { return binary(L, BLT_DIV); }
static int l_unm(lua_State *L)
{
    blt_tensor *y;
    return push_status(L, blt_affine(&y, bltL_check(L, 1), -1.0f, 0.0f), &y, "neg");
}
static int l_scale(lua_State *L)
{
    blt_tensor *y;
    return push_status(L, blt_affine(&y, bltL_check(L, 1), (float)luaL_checknumber(L, 2),
                                     (float)luaL_optnumber(L, 3, 0.0)), &y, "scale");
}

static int unary(lua_State *L, blt_unop op)
{
    blt_tensor *y;
    return push_status(L, blt_unary(&y, op, bltL_check(L, 1)), &y, blt_unop_name(op));
}
static int l_exp(lua_State *L) { return unary(L, BLT_EXP); }
static int l_log(lua_State *L) { return unary(L, BLT_LOG); }
static int l_tanh(lua_State *L) { return unary(L, BLT_TANH); }
static int l_silu(lua_State *L) { return unary(L, BLT_SILU); }
static int l_gelu(lua_State *L) { return unary(L, BLT_GELU); }
static int l_sigmoid(lua_State *L) { return unary(L, BLT_SIGMOID); }
static int l_relu(lua_State *L) { return unary(L, BLT_RELU); }
static int l_sqrt(lua_State *L) { return unary(L, BLT_SQRT); }

static int reduction(lua_State *L, int mean)
{
    const char *fn = mean ? "mean" : "sum";
    blt_tensor *x = bltL_check(L, 1), *y;
    int all = lua_isnoneornil(L, 2);
    int d = all ? 0 : bltL_dim(L, 2, x->ndim, fn);
    int keep = lua_toboolean(L, 3);
    blt_status s = mean ? blt_mean(&y, x, d, keep, all) : blt_sum(&y, x, d, keep, all);
    return push_status(L, s, &y, fn);
}
static int l_sum(lua_State *L) { return reduction(L, 0); }
static int l_mean(lua_State *L) { return reduction(L, 1); }

static int l_softmax(lua_State *L)
{
    blt_tensor *y;
    return push_status(L, blt_softmax(&y, bltL_check(L, 1)), &y, "softmax");
}
static int l_log_softmax(lua_State *L)
{
    blt_tensor *y;
    return push_status(L, blt_log_softmax(&y, bltL_check(L, 1)), &y, "log_softmax");
}

static int l_softmax_entropy(lua_State *L)
{
    blt_tensor *y;
    return push_status(L, blt_softmax_entropy(&y, bltL_check(L, 1)), &y, "softmax_entropy");
}

static int l_cross_entropy(lua_State *L)
{
    static const char *const keys[] = {"ignore_index", "reduction", NULL};
    blt_tensor *x = bltL_check(L, 1), *t = bltL_check(L, 2), *y;
    bltL_check_opts(L, 3, "cross_entropy", keys);
    int ignore = -100, mean = 1;
    if (opt_field(L, 3, "ignore_index") != LUA_TNIL)
        ignore = (int)bltL_int(L, -1, "cross_entropy", "option ignore_index", INT32_MIN, INT32_MAX);
    lua_settop(L, 3);
    if (opt_field(L, 3, "reduction") != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "blt.cross_entropy: option reduction must be 'mean' or 'sum', got %s", luaL_typename(L, -1));
        const char *r = bltL_name(L, -1, "cross_entropy", "option reduction");
        if (!strcmp(r, "sum")) mean = 0;
        else if (strcmp(r, "mean")) return luaL_error(L, "blt.cross_entropy: reduction must be 'mean' or 'sum', got '%s'", r);
    }
    lua_settop(L, 3);
    return push_status(L, blt_cross_entropy(&y, x, t, ignore, mean), &y, "cross_entropy");
}

static int l_rmsnorm(lua_State *L)
{
    blt_tensor *y;
    return push_status(L, blt_rmsnorm(&y, bltL_check(L, 1), bltL_check(L, 2), (float)luaL_optnumber(L, 3, 1e-5)),
                       &y, "rmsnorm");
}

static int l_embedding(lua_State *L)
{
    blt_tensor *y;
    return push_status(L, blt_embedding(&y, bltL_check(L, 1), bltL_check(L, 2)), &y, "embedding");
}

/* A list argument of 1..BLT_EMBEDDING_SUM_MAX tensors into xs; returns the count. */
static int tensor_list(lua_State *L, int idx, const char *fn, const char *what, blt_tensor **xs)
{
    if (!lua_istable(L, idx)) return luaL_error(L, "blt.%s: %s must be a list of tensors, got %s", fn, what, luaL_typename(L, idx));
    lua_Integer len = luaL_len(L, idx);
    if (len < 1 || len > BLT_EMBEDDING_SUM_MAX)
        return luaL_error(L, "blt.%s: %s must list 1..%d tensors, got %I entries", fn, what, BLT_EMBEDDING_SUM_MAX, len);
    for (int i = 0; i < (int)len; i++) {
        lua_geti(L, idx, i + 1);
        if (!bltL_is_tensor(L, -1)) return luaL_error(L, "blt.%s: %s entry %d is %s, not a tensor", fn, what, i + 1, luaL_typename(L, -1));
        xs[i] = bltL_check(L, -1);
        lua_pop(L, 1);
    }
    return (int)len;
}

/* embedding_sum({w...}, {ids...}): the tables' rows added in order */
static int l_embedding_sum(lua_State *L)
{
    blt_tensor *w[BLT_EMBEDDING_SUM_MAX], *ids[BLT_EMBEDDING_SUM_MAX], *y;
    int n = tensor_list(L, 1, "embedding_sum", "weights", w);
    int m = tensor_list(L, 2, "embedding_sum", "ids", ids);
    if (m != n) return luaL_error(L, "blt.embedding_sum: %d weights but %d ids", n, m);
    return push_status(L, blt_embedding_sum(&y, n, w, ids), &y, "embedding_sum");
}

/* The tensor option on top of the stack (bltL_check would say "bad argument #-1"). */
static blt_tensor *check_opt_tensor(lua_State *L, const char *fn, const char *key)
{
    if (!bltL_is_tensor(L, -1))
        luaL_error(L, "blt.%s: option %s must be a tensor, got %s", fn, key, luaL_typename(L, -1));
    bltL_tensor_ud *u = lua_touserdata(L, -1);
    if (!u->t) luaL_error(L, "blt.%s: option %s is a tensor that was closed", fn, key);
    return u->t;
}

static int l_rope(lua_State *L)
{
    static const char *const keys[] = {"theta", "positions", NULL};
    blt_tensor *x = bltL_check(L, 1), *y, *pos = NULL;
    int64_t heads = bltL_int(L, 2, "rope", "heads", 1, INT32_MAX);
    bltL_check_opts(L, 3, "rope", keys);
    double theta = 10000.0;
    if (opt_field(L, 3, "theta") != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            return luaL_error(L, "blt.rope: option theta must be a number, got %s", luaL_typename(L, -1));
        theta = lua_tonumber(L, -1);
    }
    lua_settop(L, 3);
    if (opt_field(L, 3, "positions") != LUA_TNIL) pos = check_opt_tensor(L, "rope", "positions"); /* stays on the stack */
    return push_status(L, blt_rope(&y, x, (int)heads, theta, pos), &y, "rope");
}

static int l_matmul(lua_State *L)
{
    blt_tensor *y;
    return push_status(L, blt_matmul(&y, bltL_check(L, 1), bltL_check(L, 2), lua_toboolean(L, 3), lua_toboolean(L, 4)),
                       &y, "matmul");
}

static int l_linear(lua_State *L)
{
    blt_tensor *y;
    return push_status(L, blt_linear(&y, bltL_check(L, 1), bltL_check(L, 2), bltL_opt(L, 3)), &y, "linear");
}

/* attention_kernel(["avx512" | "portable"]) -> the kernel in use (after setting it) */
static int l_attention_kernel(lua_State *L)
{
    if (!lua_isnoneornil(L, 1)) {
        const char *k = bltL_name(L, 1, "attention_kernel", "kernel");
        if (strcmp(k, "avx512") && strcmp(k, "portable"))
            return luaL_error(L, "blt.attention_kernel: kernel '%s' is unknown (want avx512 or portable)", k);
        if (blt_attention_set_avx512(!strcmp(k, "avx512"))) return bltL_error(L, "attention_kernel");
    }
    lua_pushstring(L, blt_attention_avx512() ? "avx512" : "portable");
    return 1;
}

static int l_attention(lua_State *L)
{
    static const char *const keys[] = {"heads", "causal", "window", "q_seg", "k_seg", "k_start", "k_end", "scale",
                                       "q_offset", NULL};
    blt_tensor *q = bltL_check(L, 1), *k = bltL_check(L, 2), *v = bltL_check(L, 3), *y;
    if (!lua_istable(L, 4))
        return luaL_error(L, "blt.attention: argument 4 must be an option table (with heads), got %s", luaL_typename(L, 4));
    lua_settop(L, 4);
    bltL_check_opts(L, 4, "attention", keys);
    blt_attn_opts o = {0};
    if (lua_getfield(L, 4, "heads") == LUA_TNIL) return luaL_error(L, "blt.attention: option 'heads' is required");
    o.heads = (int)bltL_int(L, -1, "attention", "option heads", 1, INT32_MAX);
    lua_getfield(L, 4, "causal");
    o.causal = lua_toboolean(L, -1);
    if (lua_getfield(L, 4, "window") != LUA_TNIL) o.window = bltL_int(L, -1, "attention", "option window", INT64_MIN, INT64_MAX);
    if (lua_getfield(L, 4, "q_offset") != LUA_TNIL)
        o.q_offset = bltL_int(L, -1, "attention", "option q_offset", 0, INT32_MAX);
    if (lua_getfield(L, 4, "scale") != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            return luaL_error(L, "blt.attention: option scale must be a number, got %s", luaL_typename(L, -1));
        o.scale = (float)lua_tonumber(L, -1);
    }
    /* index tensors stay on the stack while the op runs */
    if (lua_getfield(L, 4, "q_seg") != LUA_TNIL) o.q_seg = check_opt_tensor(L, "attention", "q_seg");
    if (lua_getfield(L, 4, "k_seg") != LUA_TNIL) o.k_seg = check_opt_tensor(L, "attention", "k_seg");
    if (lua_getfield(L, 4, "k_start") != LUA_TNIL) o.k_start = check_opt_tensor(L, "attention", "k_start");
    if (lua_getfield(L, 4, "k_end") != LUA_TNIL) o.k_end = check_opt_tensor(L, "attention", "k_end");
    return push_status(L, blt_attention(&y, q, k, v, &o), &y, "attention");
}


static const luaL_Reg op_methods[] = {
    {"reshape", l_reshape}, {"view", l_reshape}, {"transpose", l_transpose}, {"t", l_transpose}, {"narrow", l_narrow},
    {"contiguous", l_contiguous}, {"gather", l_gather}, {"index_select", l_index_select},
    {"add", l_add}, {"sub", l_sub}, {"mul", l_mul}, {"div", l_div}, {"scale", l_scale}, {"neg", l_unm},
    {"exp", l_exp}, {"log", l_log}, {"tanh", l_tanh}, {"silu", l_silu}, {"gelu", l_gelu}, {"sigmoid", l_sigmoid},
    {"relu", l_relu}, {"sqrt", l_sqrt}, {"sum", l_sum}, {"mean", l_mean}, {"softmax", l_softmax},
    {"log_softmax", l_log_softmax}, {"matmul", l_matmul}, {NULL, NULL}};

static const luaL_Reg op_metamethods[] = {
    {"__add", l_add}, {"__sub", l_sub}, {"__mul", l_mul}, {"__div", l_div}, {"__unm", l_unm}, {NULL, NULL}};

static const luaL_Reg op_functions[] = {
    {"reshape", l_reshape}, {"transpose", l_transpose}, {"narrow", l_narrow}, {"contiguous", l_contiguous},
    {"concat", l_concat}, {"gather", l_gather}, {"index_select", l_index_select},
    {"segment_maxpool", l_segment_maxpool}, {"add", l_add}, {"sub", l_sub}, {"mul", l_mul}, {"div", l_div},
    {"scale", l_scale}, {"neg", l_unm}, {"exp", l_exp}, {"log", l_log}, {"tanh", l_tanh}, {"silu", l_silu},
    {"gelu", l_gelu}, {"sigmoid", l_sigmoid}, {"relu", l_relu}, {"sqrt", l_sqrt}, {"sum", l_sum}, {"mean", l_mean},
    {"softmax", l_softmax}, {"log_softmax", l_log_softmax}, {"cross_entropy", l_cross_entropy},
    {"softmax_entropy", l_softmax_entropy},
    {"rmsnorm", l_rmsnorm}, {"embedding", l_embedding}, {"embedding_sum", l_embedding_sum}, {"rope", l_rope},
    {"matmul", l_matmul}, {"linear", l_linear}, {"attention", l_attention}, {"attention_kernel", l_attention_kernel}, {NULL, NULL}};

static void set_into(lua_State *L, int table, const luaL_Reg *fns)
{
    lua_pushvalue(L, table);
    luaL_setfuncs(L, fns, 0);
    lua_pop(L, 1);
}

void bltL_add_tensor_ops(lua_State *L, int module, int methods, int meta)
{
    module = lua_absindex(L, module);
    methods = lua_absindex(L, methods);
    meta = lua_absindex(L, meta);
    set_into(L, module, op_functions);
    set_into(L, methods, op_methods);
    set_into(L, meta, op_metamethods);
}
