/* Lua binding for the Tensor class: creation, inspection, element access, autograd
 * (the ops: lua_tensor_ops.c; shared helpers: lua_util.c; random numbers:
 * lua_generator.c). Conventions: dimensions and positions given as Lua numbers are 1-based
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

static blt_dtype check_dtype(lua_State *L, int idx, blt_dtype def, const char *fn)
{
    const char *names[] = {"float32", "int32", NULL};
    if (lua_type(L, idx) == LUA_TSTRING) bltL_name(L, idx, fn, "dtype"); /* "int32\0x" is not "int32" */
    return (blt_dtype)luaL_checkoption(L, idx, def == BLT_F32 ? "float32" : "int32", names);
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
    lua_pushinteger(L, t->shape[bltL_dim(L, 2, t->ndim, "size")]);
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
    {"set_requires_grad", l_set_requires_grad}, {NULL, NULL}};

static const luaL_Reg metamethods[] = {
    {"__gc", l_gc}, {"__close", l_gc}, {"__tostring", l_tostring}, {"__index", l_index}, {"__newindex", l_newindex},
    {NULL, NULL}};

static const luaL_Reg functions[] = {
    {"tensor", l_tensor}, {"zeros", l_zeros}, {"ones", l_ones}, {"full", l_full},
    {"no_grad", l_no_grad}, {"grad_enabled", l_grad_enabled},
    {"backward", l_backward}, {"mem_stats", l_mem_stats}, {"mem_reset_peak", l_mem_reset_peak},
    {"mem_trim", l_mem_trim}, {NULL, NULL}};

static int l_is_tensor(lua_State *L) { lua_pushboolean(L, bltL_is_tensor(L, 1)); return 1; }

void bltL_open_tensor(lua_State *L)
{
    luaL_newmetatable(L, BLTL_TENSOR_MT);
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlib(L, methods);
    /* the ops (lua_tensor_ops.c): module functions, methods and arithmetic metamethods */
    bltL_add_tensor_ops(L, -3, -1, -2);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    /* the module table is on top */
    luaL_setfuncs(L, functions, 0);
    lua_pushcfunction(L, l_is_tensor);
    lua_setfield(L, -2, "is_tensor");
}

