/* Lua binding for the Tensor class and its ops (shared helpers: lua_util.c; random
 * numbers: lua_generator.c). Conventions: dimensions and positions given as Lua numbers are 1-based
 * (negative counts from the end, -1 is the last); values inside int32 tensors (ids,
 * indices, positions, segment ids) are 0-based. */
#include "lua_bind.h"
#include "mem.h"
#include "ops.h"
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int push_status(lua_State *L, blt_status s, blt_tensor **out, const char *fn)
{
    if (s != BLT_OK) return bltL_error(L, fn);
    bltL_push(L, *out);
    return 1;
}

/* A dimension argument: 1-based, negative from the end; returns 0-based. */
static int check_dim(lua_State *L, int idx, int ndim, const char *fn)
{
    int64_t d = bltL_int(L, idx, fn, "dimension", INT64_MIN + 1, INT64_MAX);
    int64_t z = d < 0 ? d + ndim : d - 1;
    if (d == 0 || z < 0 || z >= ndim)
        return luaL_error(L, "blt.%s: dimension %I out of range for a %d-d tensor (1..%d or -1..-%d)", fn,
                          (lua_Integer)d, ndim, ndim, ndim);
    return (int)z;
}

static blt_dtype check_dtype(lua_State *L, int idx, blt_dtype def, const char *fn)
{
    const char *names[] = {"float32", "int32", NULL};
    if (lua_type(L, idx) == LUA_TSTRING) bltL_name(L, idx, fn, "dtype"); /* "int32\0x" is not "int32" */
    return (blt_dtype)luaL_checkoption(L, idx, def == BLT_F32 ? "float32" : "int32", names);
}

static int opt_field(lua_State *L, int idx, const char *key)
{
    if (lua_isnoneornil(L, idx)) return LUA_TNIL;
    return lua_getfield(L, idx, key);
}

/* ---- creation ---- */

static void fill_nested(lua_State *L, int idx, int depth, int nd, const int64_t *shape, blt_tensor *t,
                        int64_t *pos)
{
    int64_t n = (int64_t)luaL_len(L, idx);
    if (n != shape[depth])
        luaL_error(L, "blt.tensor: ragged table: dimension %d has %I entries where %I were expected", depth + 1,
                   (lua_Integer)n, (lua_Integer)shape[depth]);
    for (int64_t i = 1; i <= n; i++) {
        lua_geti(L, idx, i);
        if (depth + 1 < nd) {
            if (!lua_istable(L, -1)) luaL_error(L, "blt.tensor: ragged table at dimension %d", depth + 2);
            fill_nested(L, lua_gettop(L), depth + 1, nd, shape, t, pos);
        } else {
            if (lua_type(L, -1) != LUA_TNUMBER)
                luaL_error(L, "blt.tensor: entry %I is %s, not a number", (lua_Integer)(*pos + 1), luaL_typename(L, -1));
            if (t->dtype == BLT_I32) {
                char what[48];
                snprintf(what, sizeof what, "int32 entry %lld", (long long)(*pos + 1));
                blt_i32(t)[*pos] = (int32_t)bltL_int(L, -1, "tensor", what, INT32_MIN, INT32_MAX);
            } else {
                lua_Number v = lua_tonumber(L, -1);
                blt_f32(t)[*pos] = (float)v;
            }
            (*pos)++;
        }
        lua_pop(L, 1);
    }
}

static int l_tensor(lua_State *L)
{
    blt_dtype dt = check_dtype(L, 2, BLT_F32, "tensor");
    int64_t shape[BLT_MAX_DIMS];
    int nd = 0;
    if (lua_type(L, 1) == LUA_TNUMBER) { /* a scalar */
        blt_tensor *t;
        if (blt_tensor_new(&t, dt, 0, shape)) return bltL_error(L, "tensor");
        bltL_push(L, t);
        if (dt == BLT_I32) blt_i32(t)[0] = (int32_t)bltL_int(L, 1, "tensor", "int32 value", INT32_MIN, INT32_MAX);
        else blt_f32(t)[0] = (float)lua_tonumber(L, 1);
        return 1;
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushvalue(L, 1);
    while (lua_istable(L, -1)) {
        if (nd == BLT_MAX_DIMS) return luaL_error(L, "blt.tensor: more than %d nested levels", BLT_MAX_DIMS);
        shape[nd++] = (int64_t)luaL_len(L, -1);
        if (shape[nd - 1] < 0 || shape[nd - 1] > BLTL_MAX_SIZE)
            return luaL_error(L, "blt.tensor: table of length %I", (lua_Integer)shape[nd - 1]);
        if (shape[nd - 1] == 0) break;
        lua_geti(L, -1, 1);
    }
    lua_settop(L, 2);
    blt_tensor *t;
    if (blt_tensor_new(&t, dt, nd, shape)) return bltL_error(L, "tensor");
    bltL_push(L, t); /* owned by Lua before filling, so an error cannot leak it */
    int64_t pos = 0;
    if (t->numel > 0) fill_nested(L, 1, 0, nd, shape, t, &pos);
    return 1;
}

static int make_filled(lua_State *L, const char *fn, double value, int value_arg)
{
    int64_t shape[BLT_MAX_DIMS];
    int nd = bltL_shape(L, 1, shape, fn, 0);
    int next = lua_istable(L, 1) ? 2 : nd + 1;
    if (value_arg) {
        if (lua_type(L, next) != LUA_TNUMBER)
            return luaL_error(L, "blt.%s: value must be a number, got %s", fn, luaL_typename(L, next));
        value = lua_tonumber(L, next);
    }
    blt_dtype dt = check_dtype(L, next + value_arg, BLT_F32, fn);
    if (value_arg && dt == BLT_I32) value = (double)bltL_int(L, next, fn, "int32 value", INT32_MIN, INT32_MAX);
    next += value_arg;
    blt_tensor *t;
    if (blt_tensor_new(&t, dt, nd, shape)) return bltL_error(L, fn);
    for (int64_t i = 0; i < t->numel; i++) {
        if (dt == BLT_I32) blt_i32(t)[i] = (int32_t)value;
        else blt_f32(t)[i] = (float)value;
    }
    bltL_push(L, t);
    return 1;
}

static int l_zeros(lua_State *L) { return make_filled(L, "zeros", 0.0, 0); }
static int l_ones(lua_State *L) { return make_filled(L, "ones", 1.0, 0); }
static int l_full(lua_State *L) { return make_filled(L, "full", 0.0, 1); }

/* ---- inspection ---- */

static int l_shape(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1);
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) {
        lua_pushinteger(L, t->shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_size(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1);
    if (lua_isnoneornil(L, 2)) return l_shape(L);
    lua_pushinteger(L, t->shape[check_dim(L, 2, t->ndim, "size")]);
    return 1;
}

static int l_dim(lua_State *L) { lua_pushinteger(L, bltL_check(L, 1)->ndim); return 1; }
static int l_numel(lua_State *L) { lua_pushinteger(L, bltL_check(L, 1)->numel); return 1; }
static int l_dtype(lua_State *L) { lua_pushstring(L, blt_dtype_name(bltL_check(L, 1)->dtype)); return 1; }
static int l_is_contiguous(lua_State *L) { lua_pushboolean(L, blt_tensor_is_contiguous(bltL_check(L, 1))); return 1; }

static void check_live(lua_State *L, blt_tensor *t, const char *fn)
{
    if (blt_check_live(fn, "self", t) != BLT_OK) bltL_error(L, fn);
}

static int64_t elem_offset(const blt_tensor *t, int64_t flat)
{
    int64_t off = t->offset;
    for (int i = t->ndim - 1; i >= 0; i--) {
        off += (flat % t->shape[i]) * t->stride[i];
        flat /= t->shape[i];
    }
    return off;
}

static void push_elem(lua_State *L, const blt_tensor *t, int64_t off)
{
    if (t->dtype == BLT_I32) lua_pushinteger(L, ((int32_t *)t->st->data)[off]);
    else lua_pushnumber(L, ((float *)t->st->data)[off]);
}

static void totable_rec(lua_State *L, const blt_tensor *t, int d, int64_t off)
{
    lua_createtable(L, (int)t->shape[d], 0);
    for (int64_t i = 0; i < t->shape[d]; i++) {
        int64_t o = off + i * t->stride[d];
        if (d + 1 < t->ndim) totable_rec(L, t, d + 1, o);
        else push_elem(L, t, o);
        lua_rawseti(L, -2, i + 1);
    }
}

static int l_totable(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1);
    check_live(L, t, "totable");
    if (t->ndim == 0) { push_elem(L, t, t->offset); return 1; }
    if (t->numel == 0) { /* no elements, but maybe 2^40 empty tables for a shape like {2^40, 0} */
        double tables = 1;
        for (int i = 0; i < t->ndim && t->shape[i] > 0; i++) tables *= (double)t->shape[i];
        if (tables > 1e7) {
            char b[160];
            return luaL_error(L, "blt.totable: tensor of shape %s has no elements but would need %f empty tables",
                              blt_shape_str(t, b, sizeof b), tables);
        }
    }
    luaL_checkstack(L, t->ndim + 4, "tensor too deep");
    totable_rec(L, t, 0, t->offset);
    return 1;
}

static int l_item(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1);
    check_live(L, t, "item");
    if (t->numel != 1) {
        char b[160];
        return luaL_error(L, "blt.item: tensor of shape %s has %I elements, not 1", blt_shape_str(t, b, sizeof b),
                          (lua_Integer)t->numel);
    }
    push_elem(L, t, elem_offset(t, 0));
    return 1;
}

/* t:get(i, j, ...) and t:set(value, i, j, ...), 1-based */
static int64_t index_args(lua_State *L, blt_tensor *t, int first, const char *fn)
{
    int n = lua_gettop(L) - first + 1;
    char b[160];
    if (n != t->ndim)
        return luaL_error(L, "blt.%s: %d indices for a tensor of shape %s", fn, n, blt_shape_str(t, b, sizeof b));
    int64_t off = t->offset;
    for (int i = 0; i < n; i++) {
        int64_t k = bltL_int(L, first + i, fn, "index", INT64_MIN, INT64_MAX);
        if (k < 1 || k > t->shape[i])
            return luaL_error(L, "blt.%s: index %I out of range 1..%I in dimension %d of shape %s", fn,
                              (lua_Integer)k, (lua_Integer)t->shape[i], i + 1, blt_shape_str(t, b, sizeof b));
        off += (k - 1) * t->stride[i];
    }
    return off;
}

static int l_get(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1);
    check_live(L, t, "get");
    push_elem(L, t, index_args(L, t, 2, "get"));
    return 1;
}

/* The value stored by set/fill: a number; for int32 tensors an integer that fits. */
typedef union { int32_t i; float f; } elem_value;

static elem_value store_value(lua_State *L, const blt_tensor *t, int idx, const char *fn)
{
    elem_value e;
    if (lua_type(L, idx) != LUA_TNUMBER)
        luaL_error(L, "blt.%s: value must be a number, got %s", fn, luaL_typename(L, idx));
    if (t->dtype == BLT_I32) e.i = (int32_t)bltL_int(L, idx, fn, "int32 value", INT32_MIN, INT32_MAX);
    else e.f = (float)lua_tonumber(L, idx);
    return e;
}

static int l_set(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1);
    check_live(L, t, "set");
    elem_value v = store_value(L, t, 2, "set");
    int64_t off = index_args(L, t, 3, "set");
    if (t->dtype == BLT_I32) ((int32_t *)t->st->data)[off] = v.i;
    else ((float *)t->st->data)[off] = v.f;
    t->st->version++;
    lua_settop(L, 1);
    return 1;
}

/* In-place fill and copy: no autograd (for parameters and buffers). */
static int l_fill(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1);
    check_live(L, t, "fill");
    elem_value v = store_value(L, t, 2, "fill");
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t o = elem_offset(t, i);
        if (t->dtype == BLT_I32) ((int32_t *)t->st->data)[o] = v.i;
        else ((float *)t->st->data)[o] = v.f;
    }
    t->st->version++;
    lua_settop(L, 1);
    return 1;
}

static int l_copy(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1), *src = bltL_check(L, 2);
    check_live(L, t, "copy");
    check_live(L, src, "copy");
    char b1[160], b2[160];
    if (t->numel != src->numel || t->ndim != src->ndim || memcmp(t->shape, src->shape, sizeof(int64_t) * t->ndim) ||
        t->dtype != src->dtype)
        return luaL_error(L, "blt.copy: source %s %s does not match destination %s %s",
                          blt_shape_str(src, b2, sizeof b2), blt_dtype_name(src->dtype),
                          blt_shape_str(t, b1, sizeof b1), blt_dtype_name(t->dtype));
    if (t->st == src->st && t->numel > 0) {
        /* views of one storage may overlap: go through a temporary */
        blt_tensor *tmp;
        if (blt_tensor_new_like(&tmp, src)) return bltL_error(L, "copy");
        blt_strided_copy(tmp, src);
        blt_strided_copy(t, tmp);
        blt_tensor_release(tmp);
    } else {
        blt_strided_copy(t, src);
    }
    t->st->version++;
    lua_settop(L, 1);
    return 1;
}

static int l_clone(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1), *c;
    check_live(L, t, "clone");
    if (blt_tensor_new_like(&c, t)) return bltL_error(L, "clone");
    blt_strided_copy(c, t);
    bltL_push(L, c);
    return 1;
}

static int l_detach(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1), *a;
    check_live(L, t, "detach");
    if (blt_tensor_alias(&a, t)) return bltL_error(L, "detach");
    bltL_push(L, a);
    return 1;
}

static int l_cast(lua_State *L, blt_dtype dt, const char *fn)
{
    blt_tensor *t = bltL_check(L, 1), *c;
    check_live(L, t, fn);
    if (blt_tensor_new(&c, dt, t->ndim, t->shape)) return bltL_error(L, fn);
    bltL_push(L, c);
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t o = elem_offset(t, i);
        if (dt == BLT_I32) {
            double v = t->dtype == BLT_I32 ? ((int32_t *)t->st->data)[o] : ((float *)t->st->data)[o];
            /* truncates toward zero; NaN, inf and out-of-range values have no int32 */
            if (!(v > -2147483649.0 && v < 2147483648.0))
                return luaL_error(L, "blt.int: element %I (%f) does not fit int32", (lua_Integer)i + 1, v);
            blt_i32(c)[i] = (int32_t)v;
        } else {
            blt_f32(c)[i] = t->dtype == BLT_I32 ? (float)((int32_t *)t->st->data)[o] : ((float *)t->st->data)[o];
        }
    }
    return 1;
}
static int l_float(lua_State *L) { return l_cast(L, BLT_F32, "float"); }
static int l_int(lua_State *L) { return l_cast(L, BLT_I32, "int"); }

static int l_release(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1);
    blt_node_release(t->node);
    t->node = NULL;
    blt_tensor_release(t->grad);
    t->grad = NULL;
    blt_tensor_free_storage(t);
    return 0;
}

static int l_gc(lua_State *L)
{
    bltL_tensor_ud *u = luaL_checkudata(L, 1, BLTL_TENSOR_MT);
    blt_tensor_release(u->t);
    u->t = NULL;
    return 0;
}

static void tostring_rec(luaL_Buffer *b, const blt_tensor *t, int d, int64_t off)
{
    char num[48];
    luaL_addchar(b, '[');
    for (int64_t i = 0; i < t->shape[d]; i++) {
        int64_t o = off + i * t->stride[d];
        if (i) luaL_addstring(b, d + 1 < t->ndim ? ",\n " : ", ");
        for (int k = 0; i && d + 1 < t->ndim && k < d; k++) luaL_addchar(b, ' ');
        if (d + 1 < t->ndim) tostring_rec(b, t, d + 1, o);
        else {
            if (t->dtype == BLT_I32) snprintf(num, sizeof num, "%d", ((int32_t *)t->st->data)[o]);
            else snprintf(num, sizeof num, "%.4f", ((float *)t->st->data)[o]);
            luaL_addstring(b, num);
        }
    }
    luaL_addchar(b, ']');
}

static int l_tostring(lua_State *L)
{
    bltL_tensor_ud *u = luaL_checkudata(L, 1, BLTL_TENSOR_MT);
    blt_tensor *t = u->t;
    if (!t) { lua_pushliteral(L, "blt.Tensor (closed)"); return 1; }
    char sb[160];
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char head[256];
    snprintf(head, sizeof head, "blt.Tensor %s %s%s%s", blt_dtype_name(t->dtype), blt_shape_str(t, sb, sizeof sb),
             t->requires_grad ? " requires_grad" : (t->node ? " grad_fn=" : ""), t->node ? t->node->op : "");
    luaL_addstring(&b, head);
    if (t->st->released) luaL_addstring(&b, " (storage released)");
    else if (t->numel <= 100) {
        luaL_addchar(&b, '\n');
        if (t->ndim == 0) {
            char num[48];
            if (t->dtype == BLT_I32) snprintf(num, sizeof num, "%d", ((int32_t *)t->st->data)[t->offset]);
            else snprintf(num, sizeof num, "%.4f", ((float *)t->st->data)[t->offset]);
            luaL_addstring(&b, num);
        } else if (t->numel > 0) tostring_rec(&b, t, 0, t->offset);
        else luaL_addstring(&b, "[]");
    }
    luaL_pushresult(&b);
    return 1;
}

/* ---- autograd ---- */

static int l_backward(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1), *g = bltL_opt(L, 2);
    if (blt_backward(t, g)) return bltL_error(L, "backward");
    return 0;
}

static int l_zero_grad(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1);
    if (t->grad && !t->grad->st->released) {
        blt_tensor *g = t->grad; /* may be a view (flat buffers): zero its elements, not its storage */
        if (blt_tensor_is_contiguous(g)) memset(blt_f32(g), 0, sizeof(float) * (size_t)g->numel);
        else for (int64_t i = 0; i < g->numel; i++) ((float *)g->st->data)[elem_offset(g, i)] = 0.0f;
    }
    return 0;
}

static int l_set_requires_grad(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1);
    int on = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
    if (on && t->dtype != BLT_F32) return luaL_error(L, "blt.requires_grad: only float32 tensors can require grad");
    if (on && t->node) return luaL_error(L, "blt.requires_grad: only leaf tensors can be marked (detach it first)");
    t->requires_grad = on;
    lua_settop(L, 1);
    return 1;
}

static int l_no_grad(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int old = blt_grad_enabled;
    blt_grad_enabled = 0;
    int n = lua_gettop(L) - 1;
    int rc = lua_pcall(L, n, LUA_MULTRET, 0);
    blt_grad_enabled = old;
    if (rc != LUA_OK) return lua_error(L);
    return lua_gettop(L);
}

static int l_grad_enabled(lua_State *L) { lua_pushboolean(L, blt_grad_enabled); return 1; }

/* ---- ops ---- */

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
    if (!lua_isnoneornil(L, 2)) { d0 = check_dim(L, 2, x->ndim, "transpose"); d1 = check_dim(L, 3, x->ndim, "transpose"); }
    else if (x->ndim < 2) return luaL_error(L, "blt.transpose: needs at least 2 dimensions, tensor has %d", x->ndim);
    return push_status(L, blt_transpose(&y, x, d0, d1), &y, "transpose");
}

static int l_narrow(lua_State *L)
{
    blt_tensor *x = bltL_check(L, 1), *y;
    int d = check_dim(L, 2, x->ndim, "narrow");
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
    int d = lua_isnoneornil(L, 2) ? 0 : check_dim(L, 2, xs[0]->ndim, "concat");
    blt_tensor *y;
    return push_status(L, blt_concat(&y, n, xs, d), &y, "concat");
}

static int l_gather(lua_State *L)
{
    blt_tensor *x = bltL_check(L, 1), *y;
    int d = check_dim(L, 2, x->ndim, "gather");
    return push_status(L, blt_gather(&y, x, d, bltL_check(L, 3)), &y, "gather");
}

static int l_index_select(lua_State *L)
{
    blt_tensor *x = bltL_check(L, 1), *y;
    int d = check_dim(L, 2, x->ndim, "index_select");
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
    int d = all ? 0 : check_dim(L, 2, x->ndim, fn);
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

/* ---- __index / __newindex: fields grad and requires_grad, then methods ---- */

static int l_index(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1);
    size_t klen = 0;
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &klen) : NULL;
    if (k && strlen(k) != klen) k = NULL; /* "grad\0x" is not "grad": falls through to a nil method */
    if (k && !strcmp(k, "grad")) {
        if (t->grad && !t->node) bltL_push(L, blt_tensor_retain(t->grad));
        else lua_pushnil(L);
        return 1;
    }
    if (k && !strcmp(k, "requires_grad")) { lua_pushboolean(L, blt_tensor_needs_grad(t)); return 1; }
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "methods");
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static int l_newindex(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1);
    if (lua_type(L, 2) != LUA_TSTRING)
        return luaL_error(L, "blt.Tensor: cannot set a field named by a %s (only grad and requires_grad)", luaL_typename(L, 2));
    const char *k = bltL_name(L, 2, "Tensor", "field name");
    if (!strcmp(k, "requires_grad")) {
        lua_settop(L, 3);
        lua_pushvalue(L, 1);
        lua_replace(L, 2);
        return l_set_requires_grad(L);
    }
    if (!strcmp(k, "grad")) {
        blt_tensor *g = bltL_opt(L, 3);
        char b1[160], b2[160];
        if (g && (g->dtype != BLT_F32 || g->ndim != t->ndim || memcmp(g->shape, t->shape, sizeof(int64_t) * t->ndim) ||
                  !blt_tensor_is_contiguous(g)))
            return luaL_error(L, "blt.Tensor.grad: gradient %s must be a contiguous float32 tensor shaped like %s",
                              blt_shape_str(g, b2, sizeof b2), blt_shape_str(t, b1, sizeof b1));
        blt_tensor_release(t->grad);
        t->grad = blt_tensor_retain(g);
        return 0;
    }
    return luaL_error(L, "blt.Tensor: cannot set field '%s' (only grad and requires_grad)", k);
}

static int l_mem_stats(lua_State *L)
{
    blt_mem_stats s = blt_mem_get_stats();
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)s.live); lua_setfield(L, -2, "live");
    lua_pushinteger(L, (lua_Integer)s.peak); lua_setfield(L, -2, "peak");
    lua_pushinteger(L, (lua_Integer)s.cached); lua_setfield(L, -2, "cached");
    lua_pushinteger(L, (lua_Integer)s.allocs); lua_setfield(L, -2, "allocs");
    lua_pushinteger(L, (lua_Integer)s.os_allocs); lua_setfield(L, -2, "os_allocs");
    return 1;
}

static int l_mem_reset_peak(lua_State *L) { (void)L; blt_mem_reset_peak(); return 0; }
static int l_mem_trim(lua_State *L) { (void)L; blt_mem_trim(); return 0; }

static const luaL_Reg methods[] = {
    {"shape", l_shape}, {"size", l_size}, {"dim", l_dim}, {"numel", l_numel}, {"dtype", l_dtype},
    {"is_contiguous", l_is_contiguous}, {"totable", l_totable}, {"item", l_item}, {"get", l_get}, {"set", l_set},
    {"fill", l_fill}, {"copy", l_copy}, {"clone", l_clone}, {"detach", l_detach}, {"float", l_float}, {"int", l_int},
    {"release", l_release}, {"backward", l_backward}, {"zero_grad", l_zero_grad},
    {"set_requires_grad", l_set_requires_grad},
    {"reshape", l_reshape}, {"view", l_reshape}, {"transpose", l_transpose}, {"t", l_transpose}, {"narrow", l_narrow},
    {"contiguous", l_contiguous}, {"gather", l_gather}, {"index_select", l_index_select},
    {"add", l_add}, {"sub", l_sub}, {"mul", l_mul}, {"div", l_div}, {"scale", l_scale}, {"neg", l_unm},
    {"exp", l_exp}, {"log", l_log}, {"tanh", l_tanh}, {"silu", l_silu}, {"gelu", l_gelu}, {"sigmoid", l_sigmoid},
    {"relu", l_relu}, {"sqrt", l_sqrt}, {"sum", l_sum}, {"mean", l_mean}, {"softmax", l_softmax},
    {"log_softmax", l_log_softmax}, {"matmul", l_matmul}, {NULL, NULL}};

static const luaL_Reg metamethods[] = {
    {"__gc", l_gc}, {"__close", l_gc}, {"__tostring", l_tostring}, {"__index", l_index}, {"__newindex", l_newindex},
    {"__add", l_add}, {"__sub", l_sub}, {"__mul", l_mul}, {"__div", l_div}, {"__unm", l_unm}, {NULL, NULL}};

static const luaL_Reg functions[] = {
    {"tensor", l_tensor}, {"zeros", l_zeros}, {"ones", l_ones}, {"full", l_full},
    {"reshape", l_reshape}, {"transpose", l_transpose}, {"narrow", l_narrow}, {"contiguous", l_contiguous},
    {"concat", l_concat}, {"gather", l_gather}, {"index_select", l_index_select},
    {"segment_maxpool", l_segment_maxpool}, {"add", l_add}, {"sub", l_sub}, {"mul", l_mul}, {"div", l_div},
    {"scale", l_scale}, {"neg", l_unm}, {"exp", l_exp}, {"log", l_log}, {"tanh", l_tanh}, {"silu", l_silu},
    {"gelu", l_gelu}, {"sigmoid", l_sigmoid}, {"relu", l_relu}, {"sqrt", l_sqrt}, {"sum", l_sum}, {"mean", l_mean},
    {"softmax", l_softmax}, {"log_softmax", l_log_softmax}, {"cross_entropy", l_cross_entropy},
    {"softmax_entropy", l_softmax_entropy},
    {"rmsnorm", l_rmsnorm}, {"embedding", l_embedding}, {"rope", l_rope}, {"matmul", l_matmul},
    {"linear", l_linear}, {"attention", l_attention}, {"no_grad", l_no_grad}, {"grad_enabled", l_grad_enabled},
    {"backward", l_backward}, {"mem_stats", l_mem_stats}, {"mem_reset_peak", l_mem_reset_peak},
    {"mem_trim", l_mem_trim}, {NULL, NULL}};

static int l_is_tensor(lua_State *L) { lua_pushboolean(L, bltL_is_tensor(L, 1)); return 1; }

void bltL_open_tensor(lua_State *L)
{
    luaL_newmetatable(L, BLTL_TENSOR_MT);
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    /* the module table is on top */
    luaL_setfuncs(L, functions, 0);
    lua_pushcfunction(L, l_is_tensor);
    lua_setfield(L, -2, "is_tensor");
}
