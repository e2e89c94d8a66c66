/* The C module "blt.core": tensors, ops and runtime settings. lua/blt/init.lua
 * builds the researcher-facing "blt" module on top of it. */
#include "lua_blt.h"
#include "blas.h"
#include "thread.h"
#include <lauxlib.h>

static int l_set_threads(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 1 && n <= 256, 1, "thread count must be in 1..256");
    blt_threads_init((int)n);
    return 0;
}

static int l_threads(lua_State *L)
{
    lua_pushinteger(L, blt_threads_count());
    return 1;
}

static int l_blas_info(lua_State *L)
{
    lua_pushstring(L, blt_blas_info());
    return 1;
}

static const luaL_Reg runtime[] = {
    {"set_threads", l_set_threads}, {"threads", l_threads}, {"blas_info", l_blas_info}, {NULL, NULL}};

int luaopen_blt_core(lua_State *L)
{
    static int started;
    if (!started) {
        blt_blas_init();
        blt_threads_init(0);
        started = 1;
    }
    luaL_newlib(L, runtime);
    bltL_open_tensor(L);
    bltL_open_patch(L);
    bltL_open_data(L);
    bltL_open_h5(L);
    bltL_open_nn(L);
    return 1;
}
