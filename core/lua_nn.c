/* Lua binding: parameter init, flat parameter buffers and the optimiser steps. */
#include "lua_blt.h"
#include "flat.h"
#include "ops.h"
#include "optim.h"
#include <float.h>
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* nn_trunc_normal(gen, shape, sigma): normal(0, sigma) redrawn outside +-3 sigma */
static int l_trunc_normal(lua_State *L)
{
    blt_rng *r = bltL_check_gen(L, 1);
    int64_t shape[BLT_MAX_DIMS];
    int nd = bltL_shape(L, 2, shape, "trunc_normal", 0);
    double sigma = luaL_checknumber(L, 3);
    luaL_argcheck(L, sigma >= 0, 3, "sigma must be >= 0");
    blt_tensor *t;
    if (blt_tensor_new(&t, BLT_F32, nd, shape)) return bltL_error(L, "trunc_normal");
    float *d = blt_f32(t);
    for (int64_t i = 0; i < t->numel; i++) d[i] = (float)blt_rng_trunc_normal(r, sigma);
    bltL_push(L, t);
    return 1;
}

/* nn_flatten({p1, p2, ...}) -> flat_params, flat_grads: every p now views its slice */
static int l_flatten(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer nl = luaL_len(L, 1);
    if (nl < 0 || nl > INT32_MAX) return luaL_error(L, "blt.flatten: list of %I parameters", nl);
    int n = (int)nl;
    int64_t total = 0;
    for (int i = 1; i <= n; i++) {
        lua_geti(L, 1, i);
        if (!bltL_is_tensor(L, -1))
            return luaL_error(L, "blt.flatten: parameter %d is %s, not a tensor", i, luaL_typename(L, -1));
        blt_tensor *t = bltL_check(L, -1);
        if (t->dtype != BLT_F32 || t->node || t->st->released)
            return luaL_error(L, "blt.flatten: parameter %d must be a live float32 leaf tensor", i);
        total += t->numel;
        lua_pop(L, 1);
    }
    int64_t shape[1] = {total};
    blt_tensor *flat, *gflat;
    if (blt_tensor_new(&flat, BLT_F32, 1, shape)) return bltL_error(L, "flatten");
    bltL_push(L, flat);
    if (blt_tensor_zeros(&gflat, BLT_F32, 1, shape)) return bltL_error(L, "flatten");
    bltL_push(L, gflat);
    int64_t off = 0;
    for (int i = 1; i <= n; i++) {
        lua_geti(L, 1, i);
        blt_tensor *t = bltL_check(L, -1);
        if (blt_tensor_rebind(t, flat, off) || blt_tensor_bind_grad(t, gflat, off)) return bltL_error(L, "flatten");
        off += t->numel;
        lua_pop(L, 1);
    }
    return 2;
}

/* slices: {{off=, len=, decay=}, ...} with 0-based element offsets */
static blt_slice *read_slices(lua_State *L, int idx, int *nsl, int64_t limit)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer nl = luaL_len(L, idx);
    if (nl < 0 || nl > INT32_MAX) luaL_error(L, "blt.optim: %I slices", nl);
    int n = (int)nl;
    blt_slice *sl = lua_newuserdatauv(L, sizeof(blt_slice) * (n ? n : 1), 0);
    int64_t end = 0;
    for (int i = 0; i < n; i++) {
        if (lua_geti(L, idx, i + 1) != LUA_TTABLE) luaL_error(L, "blt.optim: slice %d is not a table", i + 1);
        lua_getfield(L, -1, "off");
        lua_getfield(L, -2, "len");
        lua_getfield(L, -3, "decay");
        sl[i].off = bltL_int(L, -3, "optim", "slice offset", 0, limit);
        sl[i].len = bltL_int(L, -2, "optim", "slice length", 0, limit);
        sl[i].decay = lua_toboolean(L, -1);
        lua_pop(L, 4);
        if (sl[i].off != end) luaL_error(L, "blt.optim: slices must be consecutive");
        end += sl[i].len; /* both <= limit: no overflow */
        if (end > limit)
            luaL_error(L, "blt.optim: slices cover %I elements, buffers hold %I", (lua_Integer)end, (lua_Integer)limit);
    }
    *nsl = n;
    return sl;
}

/* A flat buffer that the caller writes in place (its version is bumped); see flat_read. */
static float *flat_arg(lua_State *L, int idx, int64_t n, const char *what)
{
    blt_tensor *t = bltL_check(L, idx);
    if (t->dtype != BLT_F32 || !blt_tensor_is_contiguous(t) || t->numel < n || t->st->released)
        luaL_error(L, "blt.optim: %s must be a live contiguous float32 buffer of %I elements", what, (lua_Integer)n);
    blt_tensor_bump(t); /* written in place (params, moments; grads are zeroed or scaled) */
    return blt_f32(t);
}

static const float *flat_read(lua_State *L, int idx, int64_t n, const char *what)
{
    float *p = flat_arg(L, idx, n, what);
    bltL_check(L, idx)->st->version--; /* only read: undo flat_arg's bump */
    return p;
}

/* A hyperparameter as a float: a double beyond float32's range would convert to inf
 * (undefined behaviour in C), and a NaN would spread to every parameter. */
static float hp_arg(lua_State *L, int idx, const char *name)
{
    double x = luaL_checknumber(L, idx);
    if (!(fabs(x) <= FLT_MAX)) luaL_error(L, "blt.optim: %s = %f is not a finite float32", name, x);
    return (float)x;
}

/* nn_adamw_step(p, g, m, v, slices, step, lr, beta1, beta2, eps, weight_decay) -> true
 * when an updated parameter or moment is not finite */
static int l_adamw_step(lua_State *L)
{
    int nsl;
    int64_t n = bltL_check(L, 1)->numel;
    blt_slice *sl = read_slices(L, 5, &nsl, n);
    float *p = flat_arg(L, 1, n, "params"), *g = flat_arg(L, 2, n, "grads");
    float *m = flat_arg(L, 3, n, "exp_avg"), *v = flat_arg(L, 4, n, "exp_avg_sq");
    int64_t step = bltL_int(L, 6, "optim.step", "step (counts from 1)", 1, INT32_MAX);
    blt_adamw_hp hp = {hp_arg(L, 7, "lr"), hp_arg(L, 8, "beta1"), hp_arg(L, 9, "beta2"), hp_arg(L, 10, "eps"),
                       hp_arg(L, 11, "weight_decay")};
    lua_pushboolean(L, blt_adamw_step(p, g, m, v, sl, nsl, step, hp));
    return 1;
}

/* nn_sgd_step(p, g, buf, slices, step, lr, momentum, weight_decay) -> true when an
 * updated parameter is not finite */
static int l_sgd_step(lua_State *L)
{
    int nsl;
    int64_t n = bltL_check(L, 1)->numel;
    blt_slice *sl = read_slices(L, 4, &nsl, n);
    float *p = flat_arg(L, 1, n, "params"), *g = flat_arg(L, 2, n, "grads"), *b = flat_arg(L, 3, n, "momentum");
    float lr = hp_arg(L, 6, "lr"), momentum = hp_arg(L, 7, "momentum"), wd = hp_arg(L, 8, "weight_decay");
    lua_pushboolean(L, blt_sgd_step(p, g, b, sl, nsl, lr, momentum, wd,
                                    bltL_int(L, 5, "optim.step", "step (counts from 1)", 1, INT32_MAX)));
    return 1;
}

static int l_l2norm(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1);
    lua_pushnumber(L, blt_l2norm(flat_read(L, 1, t->numel, "tensor"), t->numel));
    return 1;
}

static int l_scale_(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1);
    blt_scale_inplace(flat_arg(L, 1, t->numel, "tensor"), t->numel, (float)luaL_checknumber(L, 2));
    return 0;
}

static int l_zero_(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1);
    memset(flat_arg(L, 1, t->numel, "tensor"), 0, sizeof(float) * (size_t)t->numel);
    return 0;
}

/* nn_count_ne(int32 tensor, value): how many entries differ from value (e.g. non-pad targets) */
static int l_count_ne(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1), *c;
    int64_t v = bltL_int(L, 2, "count_ne", "value", INT64_MIN, INT64_MAX);
    if (t->dtype != BLT_I32) return luaL_error(L, "blt.count_ne: needs an int32 tensor");
    if (blt_contiguous(&c, t)) return bltL_error(L, "count_ne");
    const int32_t *d = blt_i32(c);
    lua_Integer n = 0;
    for (int64_t i = 0; i < c->numel; i++) n += d[i] != v;
    blt_tensor_release(c);
    lua_pushinteger(L, n);
    return 1;
}

static const luaL_Reg functions[] = {
    {"nn_count_ne", l_count_ne},
    {"nn_trunc_normal", l_trunc_normal}, {"nn_flatten", l_flatten}, {"nn_adamw_step", l_adamw_step},
    {"nn_sgd_step", l_sgd_step}, {"nn_l2norm", l_l2norm}, {"nn_scale_", l_scale_}, {"nn_zero_", l_zero_},
    {NULL, NULL}};

void bltL_open_nn(lua_State *L) { luaL_setfuncs(L, functions, 0); }
