/* Lua binding of core/dist.h: data-parallel processes (lua/blt/dist.lua builds on it).
 *
 *   core.dist_info()                {rank, size, local_rank, local_size, compiled, active, library}
 *   core.dist_rank(), core.dist_size()
 *   core.dist_allreduce_sum(x)      x a float32 tensor: summed over processes in place,
 *                                   returned; a number or an array of numbers: the sums
 *                                   (float64) returned
 *   core.dist_allreduce_max(x)      the largest of every process's number x
 *   core.dist_barrier()
 *   core.dist_bcast(s)              rank 0's string s, on every process (s ignored elsewhere)
 *   core.dist_abort(msg [, code])   ends the whole job (every process) with status code (1)
 *   core.dist_finalize()            orderly end; every process must call it
 * Under MPI, os.exit also ends MPI: in order (finalize) for status 0, else by abort, so
 * that a process leaving early never leaves the others waiting in a collective. */
#include "dist.h"
#include "lua_bind.h"
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

static int l_info(lua_State *L)
{
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, blt_dist_rank()); lua_setfield(L, -2, "rank");
    lua_pushinteger(L, blt_dist_size()); lua_setfield(L, -2, "size");
    lua_pushinteger(L, blt_dist_local_rank()); lua_setfield(L, -2, "local_rank");
    lua_pushinteger(L, blt_dist_local_size()); lua_setfield(L, -2, "local_size");
    lua_pushboolean(L, blt_dist_compiled()); lua_setfield(L, -2, "compiled");
    lua_pushboolean(L, blt_dist_active()); lua_setfield(L, -2, "active");
    lua_pushstring(L, blt_dist_library()); lua_setfield(L, -2, "library");
    return 1;
}

static int l_rank(lua_State *L)
{
    lua_pushinteger(L, blt_dist_rank());
    return 1;
}

static int l_size(lua_State *L)
{
    lua_pushinteger(L, blt_dist_size());
    return 1;
}

static int l_allreduce_sum(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TNUMBER) {
        double v = lua_tonumber(L, 1);
        if (blt_dist_allreduce_sum_f64(&v, 1) != BLT_OK) return bltL_error(L, "dist_allreduce_sum");
        lua_pushnumber(L, v);
        return 1;
    }
    if (lua_type(L, 1) == LUA_TTABLE) {
        lua_Integer n = luaL_len(L, 1);
        if (n < 1 || n > (1 << 20))
            return luaL_error(L, "blt.dist_allreduce_sum: the array holds %I numbers (1 to 2^20 allowed)", n);
        double *v = malloc(sizeof(double) * (size_t)n);
        if (!v) return luaL_error(L, "blt.dist_allreduce_sum: out of memory");
        for (lua_Integer i = 0; i < n; i++) {
            int ok = lua_geti(L, 1, i + 1) == LUA_TNUMBER; /* not a numeric string */
            v[i] = lua_tonumber(L, -1);
            lua_pop(L, 1);
            if (!ok) {
                free(v);
                return luaL_error(L, "blt.dist_allreduce_sum: element %I of the array is not a number", i + 1);
            }
        }
        blt_status s = blt_dist_allreduce_sum_f64(v, n);
        if (s != BLT_OK) {
            free(v);
            return bltL_error(L, "dist_allreduce_sum");
        }
        lua_createtable(L, (int)n, 0);
        for (lua_Integer i = 0; i < n; i++) {
            lua_pushnumber(L, v[i]);
            lua_rawseti(L, -2, i + 1);
        }
        free(v);
        return 1;
    }
    if (!bltL_is_tensor(L, 1))
        return luaL_error(L, "blt.dist_allreduce_sum: argument 1 must be a float32 tensor, a number or an array "
                             "of numbers, got %s", luaL_typename(L, 1));
    blt_tensor *t = bltL_check(L, 1);
    if (t->st->released) return luaL_error(L, "blt.dist_allreduce_sum: argument 1 is a released tensor");
    if (t->dtype != BLT_F32 || !blt_tensor_is_contiguous(t))
        return luaL_error(L, "blt.dist_allreduce_sum: argument 1 must be a contiguous float32 tensor (got %s%s)",
                          blt_dtype_name(t->dtype), blt_tensor_is_contiguous(t) ? "" : ", not contiguous");
    blt_tensor_bump(t); /* written in place */
    if (blt_dist_allreduce_sum_f32(blt_f32(t), t->numel) != BLT_OK) return bltL_error(L, "dist_allreduce_sum");
    lua_settop(L, 1);
    return 1;
}

static int l_allreduce_max(lua_State *L)
{
    double v = luaL_checknumber(L, 1);
    if (blt_dist_allreduce_max_f64(&v) != BLT_OK) return bltL_error(L, "dist_allreduce_max");
    lua_pushnumber(L, v);
    return 1;
}

static int l_barrier(lua_State *L)
{
    if (blt_dist_barrier() != BLT_OK) return bltL_error(L, "dist_barrier");
    return 0;
}

static int l_bcast(lua_State *L)
{
    size_t len = 0;
    const char *s = blt_dist_rank() == 0 ? luaL_checklstring(L, 1, &len) : NULL;
    char *buf = (char *)s;
    if (blt_dist_bcast_bytes(&buf, &len) != BLT_OK) return bltL_error(L, "dist_bcast");
    if (blt_dist_rank() == 0) { /* its own string (one process: nothing was sent) */
        lua_settop(L, 1);
        return 1;
    }
    lua_pushlstring(L, buf, len); /* a copy for Lua; buf was malloc'ed by the broadcast */
    free(buf);
    return 1;
}

static int l_abort(lua_State *L)
{
    const char *msg = luaL_optstring(L, 1, NULL);
    int code = (int)bltL_optint(L, 2, "dist_abort", "status", 0, 255, 1);
    blt_dist_abort(msg, code);
    return 0; /* without MPI the caller decides how to end */
}

static int l_finalize(lua_State *L)
{
    if (blt_dist_finalize() != BLT_OK) return bltL_error(L, "dist_finalize");
    return 0;
}

/* os.exit under MPI: status 0 ends MPI in order; any other ends the whole job, so no
 * process is left in a collective waiting for one that has gone. */
static int l_exit(lua_State *L)
{
    int code = 0;
    if (lua_isnoneornil(L, 1) || lua_isboolean(L, 1)) code = lua_isnoneornil(L, 1) || lua_toboolean(L, 1) ? 0 : 1;
    else code = (int)luaL_checkinteger(L, 1);
    if (blt_dist_active()) {
        fflush(stdout);
        if (code == 0) blt_dist_finalize();
        else blt_dist_abort(NULL, code);
    }
    lua_pushvalue(L, lua_upvalueindex(1)); /* the standard os.exit */
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 0);
    return 0;
}

static const luaL_Reg fns[] = {
    {"dist_info", l_info}, {"dist_rank", l_rank}, {"dist_size", l_size},
    {"dist_allreduce_sum", l_allreduce_sum}, {"dist_allreduce_max", l_allreduce_max},
    {"dist_barrier", l_barrier}, {"dist_bcast", l_bcast}, {"dist_abort", l_abort},
    {"dist_finalize", l_finalize}, {NULL, NULL}};

void bltL_open_dist(lua_State *L)
{
    luaL_setfuncs(L, fns, 0);
    if (!blt_dist_active()) return;
    lua_getglobal(L, "os");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "exit");
        lua_pushcclosure(L, l_exit, 1);
        lua_setfield(L, -2, "exit");
    }
    lua_pop(L, 1);
}
