/* The helpers every core/lua_*.c binding uses: argument checks and conversions,
 * errors from the core's status, and the Tensor value (push, check, close) with its
 * blt.scope tracking. It depends on no other binding file, so lua_tensor.c and
 * lua_scope.c each need only this one. */
#include "lua_bind.h"
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

int64_t bltL_int(lua_State *L, int idx, const char *fn, const char *what, int64_t lo, int64_t hi)
{
    int64_t v;
    if (lua_isinteger(L, idx)) {
        v = (int64_t)lua_tointeger(L, idx);
    } else if (lua_type(L, idx) == LUA_TNUMBER) {
        double d = lua_tonumber(L, idx);
        char b[64];
        if (d != d) snprintf(b, sizeof b, "nan"); /* not "-nan" */
        else snprintf(b, sizeof b, "%.17g", d);
        /* 2^63 itself is out of int64's range, hence < and not <= */
        if (!(d == d) || d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
            return luaL_error(L, "blt.%s: %s must be an integer, got %s", fn, what, b);
        v = (int64_t)d;
    } else {
        return luaL_error(L, "blt.%s: %s must be an integer, got %s", fn, what, luaL_typename(L, idx));
    }
    if (v < lo || v > hi) {
        if (lo == INT64_MIN) return luaL_error(L, "blt.%s: %s = %I out of range (at most %I)", fn, what, (lua_Integer)v, (lua_Integer)hi);
        if (hi == INT64_MAX) return luaL_error(L, "blt.%s: %s = %I out of range (at least %I)", fn, what, (lua_Integer)v, (lua_Integer)lo);
        return luaL_error(L, "blt.%s: %s = %I out of range %I..%I", fn, what, (lua_Integer)v, (lua_Integer)lo,
                          (lua_Integer)hi);
    }
    return v;
}

int64_t bltL_optint(lua_State *L, int idx, const char *fn, const char *what, int64_t lo, int64_t hi, int64_t def)
{
    return lua_isnoneornil(L, idx) ? def : bltL_int(L, idx, fn, what, lo, hi);
}

const char *bltL_name(lua_State *L, int idx, const char *fn, const char *what)
{
    size_t len;
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "blt.%s: %s must be a string, got %s", fn, what, luaL_typename(L, idx));
    const char *s = lua_tolstring(L, idx, &len);
    if (strlen(s) != len) luaL_error(L, "blt.%s: %s contains a NUL byte (at byte %I)", fn, what, (lua_Integer)strlen(s) + 1);
    return s;
}

int bltL_error(lua_State *L, const char *fn)
{
    const char *m = blt_errmsg();
    /* the C message starts with the op name; when that is not fn (an op it called,
     * e.g. "tensor: shape too large" from blt.zeros) name fn first */
    size_t n = strlen(fn);
    if (!strncmp(m, fn, n) && m[n] == ':') return luaL_error(L, "blt.%s", m);
    return luaL_error(L, "blt.%s: %s", fn, m);
}

blt_tensor *bltL_check(lua_State *L, int idx)
{
    bltL_tensor_ud *u = luaL_checkudata(L, idx, BLTL_TENSOR_MT);
    if (!u->t) luaL_argerror(L, idx, "tensor was closed (by the end of its blt.scope, or <close>)");
    return u->t;
}

blt_tensor *bltL_opt(lua_State *L, int idx)
{
    return lua_isnoneornil(L, idx) ? NULL : bltL_check(L, idx);
}

int bltL_is_tensor(lua_State *L, int idx) { return luaL_testudata(L, idx, BLTL_TENSOR_MT) != NULL; }

/* Records a new tensor value in the innermost blt.scope, if any (lua_scope.c). */
void bltL_scope_track(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (lua_getfield(L, LUA_REGISTRYINDEX, BLTL_SCOPES) != LUA_TTABLE) { lua_pop(L, 1); return; }
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    if (n == 0) { lua_pop(L, 1); return; }
    lua_rawgeti(L, -1, n);                     /* innermost list */
    lua_pushvalue(L, idx);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 2);
}

/* Takes ownership of one reference. Reports fresh storage to the collector so that
 * its pace follows the real memory, not the few bytes of the userdata. */
void bltL_push(lua_State *L, blt_tensor *t)
{
    bltL_tensor_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->t = NULL;
    luaL_setmetatable(L, BLTL_TENSOR_MT);
    u->t = t;
    bltL_scope_track(L, -1);
    if (!t->st->reported) {
        t->st->reported = 1;
        int kb = (int)(t->st->nbytes >> 10);
        if (kb > 0) lua_gc(L, LUA_GCSTEP, kb);
    }
}

/* Drops this Lua value's reference now (blt.scope's exit, __close, __gc). */
void bltL_close(lua_State *L, int idx)
{
    bltL_tensor_ud *u = luaL_checkudata(L, idx, BLTL_TENSOR_MT);
    blt_tensor_release(u->t);
    u->t = NULL;
}

/* Reads a shape given as a table {2,3} or as integer arguments from idx on. */
int bltL_shape(lua_State *L, int idx, int64_t *shape, const char *fn, int allow_infer)
{
    int nd = 0;
    if (lua_istable(L, idx)) {
        lua_Integer n = luaL_len(L, idx);
        if (n > BLT_MAX_DIMS)
            return luaL_error(L, "blt.%s: shape has %I dimensions (at most %d)", fn, n, BLT_MAX_DIMS);
        for (int i = 1; i <= n; i++) {
            char what[32];
            snprintf(what, sizeof what, "shape entry %d", i);
            lua_geti(L, idx, i);
            shape[nd++] = bltL_int(L, -1, fn, what, INT64_MIN, BLTL_MAX_SIZE); /* negatives: below */
            lua_pop(L, 1);
        }
    } else {
        int top = lua_gettop(L);
        for (int i = idx; i <= top && lua_type(L, i) == LUA_TNUMBER; i++) {
            if (nd == BLT_MAX_DIMS) return luaL_error(L, "blt.%s: too many dimensions", fn);
            shape[nd++] = bltL_int(L, i, fn, "size", INT64_MIN, BLTL_MAX_SIZE);
        }
        if (nd == 0) return luaL_error(L, "blt.%s: expected a shape (a table like {2, 3}), got %s", fn,
                                       luaL_typename(L, idx));
    }
    for (int i = 0; i < nd; i++)
        if (shape[i] < 0 && !(allow_infer && shape[i] == -1))
            return luaL_error(L, "blt.%s: negative size %I in shape (dimension %d)", fn, (lua_Integer)shape[i], i + 1);
    return nd;
}

/* Option tables: rejects keys that are not in allowed. */
void bltL_check_opts(lua_State *L, int idx, const char *fn, const char *const *allowed)
{
    if (lua_isnoneornil(L, idx)) return;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        size_t klen = 0;
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &klen) : NULL;
        if (k && strlen(k) != klen)
            return (void)luaL_error(L, "blt.%s: option name contains a NUL byte", fn);
        int ok = 0;
        for (int i = 0; k && allowed[i]; i++) ok |= !strcmp(k, allowed[i]);
        if (!ok) {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (int i = 0; allowed[i]; i++) {
                if (i) luaL_addstring(&b, ", ");
                luaL_addstring(&b, allowed[i]);
            }
            luaL_pushresult(&b);
            return (void)luaL_error(L, "blt.%s: unknown option '%s' (known: %s)", fn,
                                    k ? k : luaL_typename(L, -2), lua_tostring(L, -1));
        }
    }
}

int bltL_dim(lua_State *L, int idx, int ndim, const char *fn)
{
    int64_t d = bltL_int(L, idx, fn, "dimension", INT64_MIN + 1, INT64_MAX);
    int64_t z = d < 0 ? d + ndim : d - 1;
    if (d == 0 || z < 0 || z >= ndim)
        return luaL_error(L, "blt.%s: dimension %I out of range for a %d-d tensor (1..%d or -1..-%d)", fn,
                          (lua_Integer)d, ndim, ndim, ndim);
    return (int)z;
}

