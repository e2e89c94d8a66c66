/* Lua binding: byte-level BPE (core/bpe.h). lua/blt/bpe.lua builds the researcher-facing
 * tokenizer on these functions.
 *
 *   bpe_train(src, merges [, min_count = 2]) -> int32 [learned, 2]: the merges in order
 *   bpe_new(merges [k, 2] int32 or float32)  -> BPE (refuses a corrupt merge list)
 *   bpe_encode(tok, src)                     -> int32 [M] tokens
 *   bpe_encode_rows(tok, rows int32 [B, N])  -> int32 [B, M] tokens PAD-padded, {M_b...}
 *   bpe_decode(tok, tokens)                  -> string (special ids give no bytes)
 *   bpe_merges(tok)                          -> int32 [k, 2] (a copy)
 *   bpe_info(tok)                            -> {merges =, vocab =}
 *
 * src: a string (its bytes, as byte ids), an int32 tensor [N] of ids (byte and special
 * ids; PAD is dropped when encoding) or a Lua array of ids. tokens: an int32 tensor [N]
 * or a Lua array. */
#include "bpe.h"
#include "ids.h"
#include "lua_bind.h"
#include "ops.h"
#include <lauxlib.h>
#include <math.h>
#include <string.h>

#define BPE_MT "blt.BPE"

typedef struct { blt_bpe *t; } bpe_ud;

static blt_bpe *check_bpe(lua_State *L, int idx, const char *fn)
{
    bpe_ud *u = luaL_testudata(L, idx, BPE_MT);
    if (!u) luaL_error(L, "blt.%s: argument %d must be a BPE tokenizer (blt.bpe_new), got %s", fn, idx,
                       luaL_typename(L, idx));
    if (!u->t) luaL_error(L, "blt.%s: the tokenizer was closed", fn);
    return u->t;
}

/* a GC-owned scratch buffer, left on the stack */
static void *scratch(lua_State *L, size_t nbytes) { return lua_newuserdatauv(L, nbytes ? nbytes : 1, 0); }

/* A contiguous int32 view of the tensor at idx, left on the stack as a Lua value. */
static blt_tensor *contiguous_i32(lua_State *L, int idx, const char *fn, const char *what, int ndim)
{
    blt_tensor *t = bltL_check(L, idx), *c;
    char sh[64];
    if (blt_check(fn, what, t, BLT_I32)) bltL_error(L, fn);
    if (t->ndim != ndim)
        luaL_error(L, "blt.%s: %s must be %s, got %s", fn, what, ndim == 1 ? "[N]" : "[B, N]",
                   blt_shape_str(t, sh, sizeof sh));
    if (blt_contiguous(&c, t)) bltL_error(L, fn);
    bltL_push(L, c);
    return c;
}

/* The ids of src at idx (see the header comment); pushes one value that holds them. */
static const int32_t *check_src(lua_State *L, int idx, const char *fn, int64_t *n)
{
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t len;
        const unsigned char *s = (const unsigned char *)lua_tolstring(L, idx, &len);
        int32_t *ids = scratch(L, len * sizeof *ids);
        for (size_t i = 0; i < len; i++) ids[i] = (int32_t)s[i] + BLT_ID_OFFSET;
        *n = (int64_t)len;
        return ids;
    }
    if (lua_istable(L, idx) && !bltL_is_tensor(L, idx)) {
        int64_t m = (int64_t)luaL_len(L, idx);
        int32_t *ids = scratch(L, (size_t)(m > 0 ? m : 0) * sizeof *ids);
        for (int64_t i = 0; i < m; i++) {
            lua_geti(L, idx, i + 1);
            ids[i] = (int32_t)bltL_int(L, -1, fn, "id", INT32_MIN, INT32_MAX);
            lua_pop(L, 1);
        }
        *n = m;
        return ids;
    }
    if (bltL_is_tensor(L, idx)) {
        blt_tensor *c = contiguous_i32(L, idx, fn, "ids", 1);
        *n = c->numel;
        return blt_i32(c);
    }
    luaL_error(L, "blt.%s: expected a string, an int32 tensor [N] or an array of ids, got %s", fn,
               luaL_typename(L, idx));
    return NULL;
}

/* bpe_train(src, merges [, min_count]) -> int32 [learned, 2] */
static int l_train(lua_State *L)
{
    int64_t n;
    int64_t k = bltL_int(L, 2, "bpe_train", "merges", 0, BLT_BPE_MAX_MERGES);
    int64_t min_count = bltL_optint(L, 3, "bpe_train", "min_count", 1, INT64_MAX, 2);
    const int32_t *ids = check_src(L, 1, "bpe_train", &n); /* pushes: read the other arguments first */
    int32_t *merges = scratch(L, (size_t)(2 * k) * sizeof *merges);
    int64_t learned;
    if (blt_bpe_train(ids, n, k, min_count, merges, &learned)) return bltL_error(L, "bpe_train");
    blt_tensor *t;
    int64_t shape[2] = {learned, 2};
    if (blt_tensor_new(&t, BLT_I32, 2, shape)) return bltL_error(L, "bpe_train");
    if (learned) memcpy(blt_i32(t), merges, (size_t)(2 * learned) * sizeof *merges);
    bltL_push(L, t);
    return 1;
}

/* bpe_new(merges [k, 2]) -> BPE. float32 merges (a checkpoint's copy) must hold whole numbers. */
static int l_new(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1), *c;
    char sh[64];
    if (blt_check_live("bpe_new", "merges", t)) return bltL_error(L, "bpe_new");
    if (t->ndim != 2 || t->shape[1] != 2)
        return luaL_error(L, "blt.bpe_new: merges must be [k, 2], got %s", blt_shape_str(t, sh, sizeof sh));
    if (t->shape[0] > BLT_BPE_MAX_MERGES)
        return luaL_error(L, "blt.bpe_new: %d merges, more than %d", (int)t->shape[0], BLT_BPE_MAX_MERGES);
    if (blt_contiguous(&c, t)) return bltL_error(L, "bpe_new");
    bltL_push(L, c);
    int64_t k = c->shape[0];
    int32_t *m = scratch(L, (size_t)(2 * k) * sizeof *m);
    for (int64_t i = 0; i < 2 * k; i++) {
        if (c->dtype == BLT_I32) { m[i] = blt_i32(c)[i]; continue; }
        float v = blt_f32(c)[i];
        if (!(v == floorf(v)) || v < -1e9f || v > 1e9f)
            return luaL_error(L, "blt.bpe_new: merge %d holds %f, not a token id", (int)(i / 2 + 1), (double)v);
        m[i] = (int32_t)v;
    }
    bpe_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->t = NULL; /* safe empty state before the tokenizer exists */
    luaL_setmetatable(L, BPE_MT);
    if (blt_bpe_new(&u->t, m, k)) return bltL_error(L, "bpe_new");
    return 1;
}

static int l_close(lua_State *L)
{
    bpe_ud *u = luaL_checkudata(L, 1, BPE_MT);
    blt_bpe_free(u->t);
    u->t = NULL;
    return 0;
}

static int l_tostring(lua_State *L)
{
    bpe_ud *u = luaL_checkudata(L, 1, BPE_MT);
    if (!u->t) lua_pushstring(L, "blt.BPE (closed)");
    else lua_pushfstring(L, "blt.BPE (%I merges, vocab %I)", (lua_Integer)blt_bpe_merges(u->t),
                         (lua_Integer)blt_bpe_vocab(u->t));
    return 1;
}

static int l_encode(lua_State *L)
{
    blt_bpe *b = check_bpe(L, 1, "bpe_encode");
    int64_t n, m;
    const int32_t *ids = check_src(L, 2, "bpe_encode", &n);
    int32_t *out = scratch(L, (size_t)n * sizeof *out);
    if (blt_bpe_encode(b, ids, n, out, &m)) return bltL_error(L, "bpe_encode");
    blt_tensor *t;
    int64_t shape[1] = {m};
    if (blt_tensor_new(&t, BLT_I32, 1, shape)) return bltL_error(L, "bpe_encode");
    if (m) memcpy(blt_i32(t), out, (size_t)m * sizeof *out);
    bltL_push(L, t);
    return 1;
}

/* Every row encoded on its own; rows shorter than the longest are padded with PAD. */
static int l_encode_rows(lua_State *L)
{
    blt_bpe *b = check_bpe(L, 1, "bpe_encode_rows");
    blt_tensor *c = contiguous_i32(L, 2, "bpe_encode_rows", "rows", 2);
    int64_t B = c->shape[0], N = c->shape[1], M = 1;
    int32_t *buf = scratch(L, (size_t)(B * N) * sizeof *buf);
    int64_t *len = scratch(L, (size_t)B * sizeof *len);
    for (int64_t r = 0; r < B; r++) {
        if (blt_bpe_encode(b, blt_i32(c) + r * N, N, buf + r * N, &len[r])) return bltL_error(L, "bpe_encode_rows");
        if (len[r] > M) M = len[r];
    }
    blt_tensor *t;
    int64_t shape[2] = {B, M};
    if (blt_tensor_new(&t, BLT_I32, 2, shape)) return bltL_error(L, "bpe_encode_rows");
    bltL_push(L, t);
    int32_t *o = blt_i32(t);
    for (int64_t r = 0; r < B; r++) {
        memcpy(o + r * M, buf + r * N, (size_t)len[r] * sizeof *o);
        for (int64_t j = len[r]; j < M; j++) o[r * M + j] = BLT_ID_PAD;
    }
    lua_createtable(L, (int)B, 0);
    for (int64_t r = 0; r < B; r++) {
        lua_pushinteger(L, (lua_Integer)len[r]);
        lua_rawseti(L, -2, r + 1);
    }
    return 2;
}

static int l_decode(lua_State *L)
{
    blt_bpe *b = check_bpe(L, 1, "bpe_decode");
    int64_t n, len;
    if (lua_type(L, 2) == LUA_TSTRING) return luaL_error(L, "blt.bpe_decode: expected tokens (an int32 tensor [N] or an array), got a string");
    const int32_t *tok = check_src(L, 2, "bpe_decode", &n);
    if (blt_bpe_decode(b, tok, n, NULL, 0, &len)) return bltL_error(L, "bpe_decode");
    luaL_Buffer buf;
    uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &buf, (size_t)len);
    if (blt_bpe_decode(b, tok, n, out, len, &len)) return bltL_error(L, "bpe_decode");
    luaL_pushresultsize(&buf, (size_t)len);
    return 1;
}

static int l_merges(lua_State *L)
{
    blt_bpe *b = check_bpe(L, 1, "bpe_merges");
    int64_t k = blt_bpe_merges(b);
    blt_tensor *t;
    int64_t shape[2] = {k, 2};
    if (blt_tensor_new(&t, BLT_I32, 2, shape)) return bltL_error(L, "bpe_merges");
    bltL_push(L, t);
    const int32_t *m = blt_bpe_merge_list(b);
    if (k) memcpy(blt_i32(t), m, (size_t)(2 * k) * sizeof *m);
    return 1;
}

static int l_info(lua_State *L)
{
    blt_bpe *b = check_bpe(L, 1, "bpe_info");
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)blt_bpe_merges(b));
    lua_setfield(L, -2, "merges");
    lua_pushinteger(L, (lua_Integer)blt_bpe_vocab(b));
    lua_setfield(L, -2, "vocab");
    return 1;
}

static const luaL_Reg metamethods[] = {{"__gc", l_close}, {"__close", l_close}, {"__tostring", l_tostring}, {NULL, NULL}};

static const luaL_Reg functions[] = {{"bpe_train", l_train},   {"bpe_new", l_new},       {"bpe_encode", l_encode},
                                     {"bpe_encode_rows", l_encode_rows}, {"bpe_decode", l_decode},
                                     {"bpe_merges", l_merges}, {"bpe_info", l_info},     {"bpe_close", l_close},
                                     {NULL, NULL}};

void bltL_open_bpe(lua_State *L)
{
    if (luaL_newmetatable(L, BPE_MT)) luaL_setfuncs(L, metamethods, 0);
    lua_pop(L, 1);
    luaL_setfuncs(L, functions, 0);
}
