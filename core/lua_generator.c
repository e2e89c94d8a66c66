/* Random numbers from Lua: the blt.Generator class (xoshiro256**, core/rng.c) and
 * blt.randn / blt.rand, which take an explicit seed or a Generator. */
#include "lua_blt.h"
#include "rng.h"
#include <lauxlib.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GEN_MT "blt.Generator"

blt_rng *bltL_check_gen(lua_State *L, int idx) { return luaL_checkudata(L, idx, GEN_MT); }

static int l_generator(lua_State *L)
{
    int64_t seed = bltL_int(L, 1, "Generator", "seed", INT64_MIN, INT64_MAX);
    blt_rng *r = lua_newuserdatauv(L, sizeof *r, 0);
    blt_rng_seed(r, (uint64_t)seed);
    luaL_setmetatable(L, GEN_MT);
    return 1;
}

static int random_fill(lua_State *L, blt_rng *r, int shape_idx, const char *fn, int normal)
{
    int64_t shape[BLT_MAX_DIMS];
    int nd = bltL_shape(L, shape_idx, shape, fn, 0);
    blt_tensor *t;
    if (blt_tensor_new(&t, BLT_F32, nd, shape)) return bltL_error(L, fn);
    float *d = blt_f32(t);
    for (int64_t i = 0; i < t->numel; i++) d[i] = (float)(normal ? blt_rng_normal(r) : blt_rng_uniform(r));
    bltL_push(L, t);
    return 1;
}

static blt_rng seed_arg(lua_State *L, int idx, const char *fn)
{
    if (lua_isnoneornil(L, idx))
        luaL_error(L, "blt.%s: needs an explicit seed (an integer) or a blt.Generator", fn);
    blt_rng r;
    if (luaL_testudata(L, idx, GEN_MT)) return *(blt_rng *)lua_touserdata(L, idx);
    blt_rng_seed(&r, (uint64_t)bltL_int(L, idx, fn, "seed", INT64_MIN, INT64_MAX));
    return r;
}

static int l_randn(lua_State *L)
{
    if (luaL_testudata(L, 2, GEN_MT)) return random_fill(L, lua_touserdata(L, 2), 1, "randn", 1);
    blt_rng r = seed_arg(L, 2, "randn");
    return random_fill(L, &r, 1, "randn", 1);
}

static int l_rand(lua_State *L)
{
    if (luaL_testudata(L, 2, GEN_MT)) return random_fill(L, lua_touserdata(L, 2), 1, "rand", 0);
    blt_rng r = seed_arg(L, 2, "rand");
    return random_fill(L, &r, 1, "rand", 0);
}

static int g_randn(lua_State *L) { return random_fill(L, bltL_check_gen(L, 1), 2, "Generator:randn", 1); }
static int g_rand(lua_State *L) { return random_fill(L, bltL_check_gen(L, 1), 2, "Generator:rand", 0); }
static int g_uniform(lua_State *L)
{
    lua_pushnumber(L, blt_rng_uniform(bltL_check_gen(L, 1)));
    return 1;
}
static int g_integer(lua_State *L)
{ /* integer in [1, n], like math.random(n) */
    int64_t n = bltL_int(L, 2, "Generator:integer", "upper bound", 1, INT64_MAX);
    lua_pushinteger(L, (lua_Integer)blt_rng_below(bltL_check_gen(L, 1), (uint64_t)n) + 1);
    return 1;
}
/* state as four hex strings (exact, and JSON/HDF5-friendly) */
static int g_state(lua_State *L)
{
    blt_rng *r = bltL_check_gen(L, 1);
    lua_createtable(L, 4, 0);
    for (int i = 0; i < 4; i++) {
        char buf[20];
        snprintf(buf, sizeof buf, "%016llx", (unsigned long long)r->s[i]);
        lua_pushstring(L, buf);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}
/* Exactly what g_state gives: a table of four strings of 16 hex digits, not all zero
 * (xoshiro256** never leaves the all-zero state: it would return 0 forever). */
static int g_set_state(lua_State *L)
{
    blt_rng *r = bltL_check_gen(L, 1);
    if (!lua_istable(L, 2))
        return luaL_error(L, "blt.Generator:set_state: state must be a table of 4 hex strings (from :state()), got %s",
                          luaL_typename(L, 2));
    lua_Integer len = luaL_len(L, 2);
    if (len != 4) return luaL_error(L, "blt.Generator:set_state: state has %I entries (must be 4 hex strings)", len);
    blt_rng n;
    uint64_t any = 0;
    for (int i = 0; i < 4; i++) {
        lua_geti(L, 2, i + 1);
        size_t sl = 0;
        /* a string only: lua_tostring would turn the number 1234567890123456 into 16 "hex digits" */
        const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &sl) : NULL;
        int ok = s && sl == 16;
        for (size_t k = 0; ok && k < 16; k++) ok = isxdigit((unsigned char)s[k]); /* no sign, space or 0x */
        if (!ok) return luaL_error(L, "blt.Generator:set_state: entry %d is not 16 hex digits", i + 1);
        n.s[i] = strtoull(s, NULL, 16);
        any |= n.s[i];
        lua_pop(L, 1);
    }
    if (!any) return luaL_error(L, "blt.Generator:set_state: the state is all zeros (not a state xoshiro256** can be in)");
    *r = n;
    return 0;
}
static int g_clone(lua_State *L)
{
    blt_rng *r = bltL_check_gen(L, 1);
    blt_rng *c = lua_newuserdatauv(L, sizeof *c, 0);
    *c = *r;
    luaL_setmetatable(L, GEN_MT);
    return 1;
}

static const luaL_Reg gen_methods[] = {
    {"randn", g_randn}, {"rand", g_rand}, {"uniform", g_uniform}, {"integer", g_integer},
    {"state", g_state}, {"set_state", g_set_state}, {"clone", g_clone}, {NULL, NULL}};

static const luaL_Reg functions[] = {
    {"randn", l_randn}, {"rand", l_rand}, {"Generator", l_generator}, {NULL, NULL}};

void bltL_open_generator(lua_State *L)
{
    luaL_newmetatable(L, GEN_MT);
    luaL_newlib(L, gen_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    /* the module table is on top */
    luaL_setfuncs(L, functions, 0);
}
