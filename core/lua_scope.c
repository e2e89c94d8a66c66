/* blt.scope(fn, ...): runs fn and, when it returns (or raises), drops every tensor
 * made inside it except the ones it returns. This is the step arena of the Lua
 * side: a training step's activations go back to the pool at the end of the step,
 * deterministically, instead of whenever the collector gets to their userdata.
 * Tensors that must outlive the scope are returned (or cloned outside it). */
#include "lua_bind.h"
#include <lauxlib.h>

static int depth(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, BLTL_SCOPES);
    int n = lua_istable(L, -1) ? (int)lua_rawlen(L, -1) : 0;
    lua_pop(L, 1);
    return n;
}

static int l_scope(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int nargs = lua_gettop(L) - 1;
    if (lua_getfield(L, LUA_REGISTRYINDEX, BLTL_SCOPES) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, BLTL_SCOPES);
    }
    int scopes = lua_gettop(L);
    lua_Integer level = (lua_Integer)lua_rawlen(L, scopes) + 1;
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawseti(L, scopes, level);
    int list = lua_gettop(L);
    /* call fn(...) with the arguments copied above the bookkeeping */
    lua_pushvalue(L, 1);
    for (int i = 0; i < nargs; i++) lua_pushvalue(L, 2 + i);
    int base = lua_gettop(L) - nargs;
    int rc = lua_pcall(L, nargs, LUA_MULTRET, 0);
    int nres = lua_gettop(L) - base + 1;
    luaL_checkstack(L, 8, "blt.scope: too many results");
    lua_pushnil(L);
    lua_rawseti(L, scopes, level); /* pop this scope */
    /* keep what is returned: mark results, close the rest */
    lua_newtable(L);
    int keep = lua_gettop(L);
    if (rc == LUA_OK)
        for (int i = 0; i < nres; i++) {
            /* only tensors are scope-tracked; other results (nil, NaN) cannot be keys */
            if (!bltL_is_tensor(L, base + i)) continue;
            lua_pushvalue(L, base + i);
            lua_pushboolean(L, 1);
            lua_rawset(L, keep);
        }
    lua_Integer n = (lua_Integer)lua_rawlen(L, list);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, list, i);
        lua_pushvalue(L, -1);
        if (lua_rawget(L, keep) == LUA_TNIL) {
            lua_pop(L, 1);
            bltL_close(L, -1);
        } else {
            lua_pop(L, 1);
            if (level > 1) bltL_scope_track(L, -1); /* survives into the enclosing scope */
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* keep */
    if (rc != LUA_OK) {
        lua_pushvalue(L, base); /* the error object */
        return lua_error(L);
    }
    return nres;
}

static int l_scope_depth(lua_State *L)
{
    lua_pushinteger(L, depth(L));
    return 1;
}

void bltL_open_scope(lua_State *L)
{
    lua_pushcfunction(L, l_scope);
    lua_setfield(L, -2, "scope");
    lua_pushcfunction(L, l_scope_depth);
    lua_setfield(L, -2, "scope_depth");
}
