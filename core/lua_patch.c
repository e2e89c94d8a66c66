/* Lua binding: patchers, decoder alignment and hash n-grams (core/patch.h).
 * lua/blt/patching.lua builds the researcher-facing module on top of these.
 *
 *   patch_new{scheme=, size=, threshold=, delta=, max_patch_len=}  -> Patcher
 *   patch_flags(P, row [, ent [, given]])    -> {s[0..N-1] as 0/1}, s[N] (boolean; nil if unknown)
 *   patch_lengths(P, row [, ent [, given]])  -> {lengths, BOS patch first}, s[N]
 *   patch_ids(P, row [, ent [, given]])      -> {patch id per token, 0-based}, s[N]
 *   patch_count(P, row [, ent [, given]])    -> number of patches, N, s[N]
 *   patch_batch(P, ids [B,N] [, ent [B,N] [, given [B,N+1]|[B,N]]])
 *                                            -> lengths [B,Pmax], patch ids [B,N], counts [B], next [B]
 *   patch_decoder_ids(lengths, N)            -> decoder patch ids (array in, array out; tensor in, tensor out)
 *   patch_text_ids(text)                     -> int32 [1+#text]: BOS then bytes + OFFSET
 *   hash_buckets(ids, {n...}, B)             -> int32 [#n,N] / [#n,B,N] (tensor in), or {{...},...} (Lua in)
 *
 * A row is a Lua string (text: BOS then byte + OFFSET, core/ids.h), a Lua array of ids, or an int32
 * tensor [N]. Entropies: a Lua array of N numbers or a float32 tensor [N]. given
 * (scheme "given" only): N or N+1 flags, booleans or numbers (nonzero = start). */
#include "lua_bind.h"
#include "ids.h"
#include "patch.h"
#include <lauxlib.h>
#include <math.h>
#include <string.h>

#define PATCHER_MT "blt.Patcher"

static blt_patcher *check_patcher(lua_State *L, int idx) { return luaL_checkudata(L, idx, PATCHER_MT); }

/* a GC-owned scratch buffer, left on the stack */
static void *scratch(lua_State *L, size_t nbytes) { return lua_newuserdatauv(L, nbytes ? nbytes : 1, 0); }

static int64_t opt_int_field(lua_State *L, int idx, const char *key, int64_t def)
{
    int ty = lua_getfield(L, idx, key);
    int64_t v = def;
    if (ty != LUA_TNIL) {
        v = bltL_int(L, -1, "patch_new", key, INT32_MIN, INT32_MAX);
    }
    lua_pop(L, 1);
    return v;
}

static int opt_num_field(lua_State *L, int idx, const char *key, double *v)
{
    int ty = lua_getfield(L, idx, key);
    if (ty != LUA_TNIL) {
        if (ty != LUA_TNUMBER) luaL_error(L, "blt.patch_new: %s must be a number, got %s", key, luaL_typename(L, -1));
        *v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return ty != LUA_TNIL;
}

static int l_patch_new(lua_State *L)
{
    static const char *const allowed[] = {"scheme", "size", "threshold", "delta", "max_patch_len", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    bltL_check_opts(L, 1, "patch_new", allowed);
    blt_patcher p;
    memset(&p, 0, sizeof p);
    lua_getfield(L, 1, "scheme");
    if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "blt.patch_new: scheme must be a string, got %s", luaL_typename(L, -1));
    if (blt_patch_scheme_parse(bltL_name(L, -1, "patch_new", "scheme"), &p.scheme)) return bltL_error(L, "patch_new");
    lua_pop(L, 1);
    p.size = opt_int_field(L, 1, "size", -1);
    p.max_len = opt_int_field(L, 1, "max_patch_len", 0);
    int has_thr = opt_num_field(L, 1, "threshold", &p.threshold);
    int has_delta = opt_num_field(L, 1, "delta", &p.delta);
    if (p.scheme == BLT_PATCH_FIXED && p.size == -1) return luaL_error(L, "blt.patch_new: scheme 'fixed' needs size");
    if (p.scheme == BLT_PATCH_ENTROPY && !has_thr) return luaL_error(L, "blt.patch_new: scheme 'entropy' needs threshold");
    if (p.scheme == BLT_PATCH_ENTROPY_DELTA && !has_delta)
        return luaL_error(L, "blt.patch_new: scheme 'entropy_delta' needs delta");
    p.use_threshold = p.scheme == BLT_PATCH_ENTROPY_DELTA && has_thr;
    if (blt_patcher_validate(&p)) return bltL_error(L, "patch_new");
    blt_patcher *u = lua_newuserdatauv(L, sizeof *u, 0);
    *u = p;
    luaL_setmetatable(L, PATCHER_MT);
    return 1;
}

static int l_patcher_tostring(lua_State *L)
{
    blt_patcher *p = check_patcher(L, 1);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_pushfstring(L, "blt.Patcher(%s", blt_patch_scheme_name(p->scheme));
    luaL_addvalue(&b);
    if (p->scheme == BLT_PATCH_FIXED) { lua_pushfstring(L, ", size=%I", (lua_Integer)p->size); luaL_addvalue(&b); }
    if (p->scheme == BLT_PATCH_ENTROPY || p->use_threshold) {
        lua_pushfstring(L, ", threshold=%f", p->threshold);
        luaL_addvalue(&b);
    }
    if (p->scheme == BLT_PATCH_ENTROPY_DELTA) { lua_pushfstring(L, ", delta=%f", p->delta); luaL_addvalue(&b); }
    if (p->max_len) { lua_pushfstring(L, ", max_patch_len=%I", (lua_Integer)p->max_len); luaL_addvalue(&b); }
    luaL_addchar(&b, ')');
    luaL_pushresult(&b);
    return 1;
}

static int l_patch_info(lua_State *L)
{
    blt_patcher *p = check_patcher(L, 1);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, blt_patch_scheme_name(p->scheme));
    lua_setfield(L, -2, "scheme");
    if (p->scheme == BLT_PATCH_FIXED) { lua_pushinteger(L, p->size); lua_setfield(L, -2, "size"); }
    if (p->scheme == BLT_PATCH_ENTROPY || p->use_threshold) {
        lua_pushnumber(L, p->threshold);
        lua_setfield(L, -2, "threshold");
    }
    if (p->scheme == BLT_PATCH_ENTROPY_DELTA) { lua_pushnumber(L, p->delta); lua_setfield(L, -2, "delta"); }
    if (p->max_len) { lua_pushinteger(L, p->max_len); lua_setfield(L, -2, "max_patch_len"); }
    return 1;
}

/* ---- inputs ---- */

static void text_to_ids(const char *s, size_t len, int32_t *ids)
{
    ids[0] = BLT_ID_BOS;
    for (size_t i = 0; i < len; i++) ids[i + 1] = (int32_t)(unsigned char)s[i] + BLT_ID_OFFSET;
}

/* A row at idx: string, array or int32 tensor [N]. May push a scratch buffer. */
static const int32_t *check_ids(lua_State *L, int idx, int64_t *n, const char *fn)
{
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        int32_t *ids = scratch(L, (len + 1) * sizeof *ids);
        text_to_ids(s, len, ids);
        *n = (int64_t)len + 1;
        return ids;
    }
    if (lua_istable(L, idx)) {
        int64_t m = (int64_t)luaL_len(L, idx);
        int32_t *ids = scratch(L, (size_t)m * sizeof *ids);
        for (int64_t i = 0; i < m; i++) {
            int ok;
            lua_geti(L, idx, i + 1);
            lua_Integer v = lua_tointegerx(L, -1, &ok);
            if (!ok || v < INT32_MIN || v > INT32_MAX)
                luaL_error(L, "blt.%s: row entry %d is %s, not an integer id", fn, (int)(i + 1),
                           ok ? "out of int32 range" : luaL_typename(L, -1));
            ids[i] = (int32_t)v;
            lua_pop(L, 1);
        }
        *n = m;
        return ids;
    }
    if (bltL_is_tensor(L, idx)) {
        blt_tensor *t = bltL_check(L, idx);
        char sh[64];
        if (blt_check(fn, "row", t, BLT_I32)) bltL_error(L, fn);
        if (t->ndim != 1)
            luaL_error(L, "blt.%s: a row tensor must be [N], got %s (use patch_batch for [B,N])", fn,
                       blt_shape_str(t, sh, sizeof sh));
        *n = t->numel;
        if (t->stride[0] == 1) return blt_i32(t);
        int32_t *ids = scratch(L, (size_t)t->numel * sizeof *ids);
        for (int64_t i = 0; i < t->numel; i++) ids[i] = blt_i32(t)[i * t->stride[0]];
        return ids;
    }
    luaL_error(L, "blt.%s: row must be a string, an array of ids or an int32 tensor, got %s", fn,
               luaL_typename(L, idx));
    return NULL;
}

static const float *check_ent(lua_State *L, int idx, int64_t n, const char *fn)
{
    if (lua_isnoneornil(L, idx)) return NULL;
    if (lua_istable(L, idx)) {
        int64_t m = (int64_t)luaL_len(L, idx);
        if (m != n)
            luaL_error(L, "blt.%s: %d entropies for a row of %d tokens (want one per token)", fn, (int)m, (int)n);
        float *e = scratch(L, (size_t)n * sizeof *e);
        for (int64_t i = 0; i < n; i++) {
            int ok;
            lua_geti(L, idx, i + 1);
            lua_Number v = lua_tonumberx(L, -1, &ok);
            if (!ok) luaL_error(L, "blt.%s: entropy %d is %s, not a number", fn, (int)(i + 1), luaL_typename(L, -1));
            e[i] = (float)v;
            lua_pop(L, 1);
        }
        return e;
    }
    blt_tensor *t = bltL_check(L, idx);
    if (blt_check(fn, "entropies", t, BLT_F32)) bltL_error(L, fn);
    if (t->ndim != 1 || t->numel != n) {
        char sh[64];
        luaL_error(L, "blt.%s: entropies %s for a row of %d tokens (want [%d])", fn, blt_shape_str(t, sh, sizeof sh),
                   (int)n, (int)n);
    }
    if (t->stride[0] == 1) return blt_f32(t);
    float *e = scratch(L, (size_t)n * sizeof *e);
    for (int64_t i = 0; i < n; i++) e[i] = blt_f32(t)[i * t->stride[0]];
    return e;
}

/* given flags: n or n+1 entries; fills f[0..n]; returns 1 when s[N] is known */
static int check_given(lua_State *L, int idx, int64_t n, uint8_t *f, const char *fn)
{
    int64_t m;
    if (lua_istable(L, idx)) {
        m = (int64_t)luaL_len(L, idx);
        if (m != n && m != n + 1)
            luaL_error(L, "blt.%s: the scheme gave %d flags for a row of %d tokens (want %d, or %d with the next token's)",
                       fn, (int)m, (int)n, (int)n, (int)n + 1);
        for (int64_t i = 0; i < m; i++) {
            lua_geti(L, idx, i + 1);
            int ty = lua_type(L, -1);
            if (ty == LUA_TBOOLEAN) f[i] = (uint8_t)lua_toboolean(L, -1);
            else if (ty == LUA_TNUMBER) f[i] = lua_tonumber(L, -1) != 0;
            else luaL_error(L, "blt.%s: flag %d is %s (want a boolean or 0/1)", fn, (int)(i + 1), luaL_typename(L, -1));
            lua_pop(L, 1);
        }
    } else if (bltL_is_tensor(L, idx)) {
        blt_tensor *t = bltL_check(L, idx);
        if (blt_check(fn, "flags", t, BLT_I32)) bltL_error(L, fn);
        m = t->numel;
        if (t->ndim != 1 || (m != n && m != n + 1))
            luaL_error(L, "blt.%s: flags tensor of %d entries for a row of %d tokens (want [%d] or [%d])", fn, (int)m,
                       (int)n, (int)n, (int)n + 1);
        for (int64_t i = 0; i < m; i++) f[i] = blt_i32(t)[i * t->stride[0]] != 0;
    } else {
        return luaL_error(L, "blt.%s: scheme 'given' needs flags (argument 4), got %s", fn, luaL_typename(L, idx));
    }
    if (m == n) f[n] = 0;
    return m == n + 1 || n < 2;
}

/* Arguments (P, row, ent, given) -> flags (n+1, scratch on the stack). */
static uint8_t *row_flags(lua_State *L, const char *fn, int64_t *n_out, int *known)
{
    blt_patcher *p = check_patcher(L, 1);
    int64_t n;
    const int32_t *ids = check_ids(L, 2, &n, fn);
    const float *ent = NULL;
    if (blt_patch_needs_entropy(p)) {
        if (lua_isnoneornil(L, 3))
            luaL_error(L, "blt.%s: scheme '%s' needs entropies (argument 3)", fn, blt_patch_scheme_name(p->scheme));
        ent = check_ent(L, 3, n, fn);
    }
    uint8_t *f = scratch(L, (size_t)n + 1);
    *known = 1;
    if (p->scheme == BLT_PATCH_GIVEN) *known = check_given(L, 4, n, f, fn);
    if (blt_patch_flags(p, ids, ent, f, n, f)) bltL_error(L, fn);
    *n_out = n;
    return f;
}

static void push_next(lua_State *L, const uint8_t *f, int64_t n, int known)
{
    if (known) lua_pushboolean(L, f[n]);
    else lua_pushnil(L);
}

static int l_patch_flags(lua_State *L)
{
    int64_t n;
    int known;
    uint8_t *f = row_flags(L, "patch_flags", &n, &known);
    lua_createtable(L, (int)n, 0);
    for (int64_t t = 0; t < n; t++) {
        lua_pushinteger(L, f[t]);
        lua_rawseti(L, -2, t + 1);
    }
    push_next(L, f, n, known);
    return 2;
}

static int l_patch_lengths(lua_State *L)
{
    int64_t n, c;
    int known;
    uint8_t *f = row_flags(L, "patch_lengths", &n, &known);
    int32_t *len = scratch(L, ((size_t)n + 1) * sizeof *len);
    if (blt_patch_lengths_from_flags(f, n, len, n + 1, &c)) return bltL_error(L, "patch_lengths");
    lua_createtable(L, (int)c, 0);
    for (int64_t i = 0; i < c; i++) {
        lua_pushinteger(L, len[i]);
        lua_rawseti(L, -2, i + 1);
    }
    push_next(L, f, n, known);
    return 2;
}

static int l_patch_ids(lua_State *L)
{
    int64_t n;
    int known;
    uint8_t *f = row_flags(L, "patch_ids", &n, &known);
    lua_createtable(L, (int)n, 0);
    lua_Integer id = -1;
    for (int64_t t = 0; t < n; t++) {
        id += f[t];
        lua_pushinteger(L, id);
        lua_rawseti(L, -2, t + 1);
    }
    push_next(L, f, n, known);
    return 2;
}

static int l_patch_count(lua_State *L)
{
    int64_t n;
    int known;
    uint8_t *f = row_flags(L, "patch_count", &n, &known);
    lua_pushinteger(L, blt_patch_count_flags(f, n));
    lua_pushinteger(L, n);
    push_next(L, f, n, known);
    return 3;
}

static int l_patch_batch(lua_State *L)
{
    blt_patcher *p = check_patcher(L, 1);
    blt_tensor *ids = bltL_check(L, 2);
    blt_tensor *ent = bltL_opt(L, 3);
    blt_tensor *given = bltL_opt(L, 4);
    blt_tensor *len = NULL, *pid = NULL, *cnt = NULL, *nx = NULL;
    if (blt_patch_batch(p, ids, ent, given, &len, &pid, &cnt, &nx)) return bltL_error(L, "patch_batch");
    bltL_push(L, len);
    bltL_push(L, pid);
    bltL_push(L, cnt);
    bltL_push(L, nx);
    return 4;
}

static int l_patch_decoder_ids(lua_State *L)
{
    int64_t n = bltL_int(L, 2, "patch_decoder_ids", "N", 0, INT32_MAX);
    if (bltL_is_tensor(L, 1)) {
        blt_tensor *o;
        if (blt_patch_decoder_ids_tensor(bltL_check(L, 1), n, &o)) return bltL_error(L, "patch_decoder_ids");
        bltL_push(L, o);
        return 1;
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    int64_t P = (int64_t)luaL_len(L, 1);
    int32_t *len = scratch(L, (size_t)P * sizeof *len);
    for (int64_t i = 0; i < P; i++) {
        int ok;
        lua_geti(L, 1, i + 1);
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        if (!ok || v < 0 || v > INT32_MAX)
            return luaL_error(L, "blt.patch_decoder_ids: length %d is not a non-negative integer", (int)(i + 1));
        len[i] = (int32_t)v;
        lua_pop(L, 1);
    }
    int32_t *out = scratch(L, (size_t)n * sizeof *out);
    if (blt_patch_decoder_ids(len, P, n, out)) return bltL_error(L, "patch_decoder_ids");
    lua_createtable(L, (int)n, 0);
    for (int64_t t = 0; t < n; t++) {
        lua_pushinteger(L, out[t]);
        lua_rawseti(L, -2, t + 1);
    }
    return 1;
}

static int l_patch_text_ids(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    int64_t n = (int64_t)len + 1;
    blt_tensor *t;
    if (blt_tensor_new(&t, BLT_I32, 1, &n)) return bltL_error(L, "patch_text_ids");
    text_to_ids(s, len, blt_i32(t));
    bltL_push(L, t);
    return 1;
}

static int l_hash_buckets(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TTABLE);
    int64_t buckets = bltL_int(L, 3, "hash_buckets", "bucket count", INT32_MIN, INT32_MAX) /* 0 and negatives: the core says why */;
    lua_Integer nl = luaL_len(L, 2);
    if (nl < 1 || nl > 64) return luaL_error(L, "blt.hash_buckets: the list of n-gram sizes has %I entries (want 1..64)", nl);
    int nn = (int)nl;
    int *ng = scratch(L, (size_t)nn * sizeof *ng);
    for (int i = 0; i < nn; i++) {
        int ok;
        lua_geti(L, 2, i + 1);
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        if (!ok || v < 1 || v > BLT_HASH_MAX_N)
            return luaL_error(L, "blt.hash_buckets: n-gram size %d (%s) must be an integer in 1..%d", i + 1,
                              luaL_tolstring(L, -1, NULL), BLT_HASH_MAX_N);
        ng[i] = (int)v;
        lua_pop(L, 1);
    }
    if (bltL_is_tensor(L, 1)) {
        blt_tensor *o;
        if (blt_hash_buckets_tensor(bltL_check(L, 1), ng, nn, buckets, &o)) return bltL_error(L, "hash_buckets");
        bltL_push(L, o);
        return 1;
    }
    int64_t n;
    const int32_t *ids = check_ids(L, 1, &n, "hash_buckets");
    int32_t *out = scratch(L, (size_t)(nn * n) * sizeof *out);
    if (blt_hash_buckets(ids, 1, n, ng, nn, buckets, out)) return bltL_error(L, "hash_buckets");
    lua_createtable(L, nn, 0);
    for (int i = 0; i < nn; i++) {
        lua_createtable(L, (int)n, 0);
        for (int64_t t = 0; t < n; t++) {
            lua_pushinteger(L, out[i * n + t]);
            lua_rawseti(L, -2, t + 1);
        }
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static const luaL_Reg functions[] = {
    {"patch_new", l_patch_new},
    {"patch_info", l_patch_info},
    {"patch_flags", l_patch_flags},
    {"patch_lengths", l_patch_lengths},
    {"patch_ids", l_patch_ids},
    {"patch_count", l_patch_count},
    {"patch_batch", l_patch_batch},
    {"patch_decoder_ids", l_patch_decoder_ids},
    {"patch_text_ids", l_patch_text_ids},
    {"hash_buckets", l_hash_buckets},
    {NULL, NULL}};

void bltL_open_patch(lua_State *L)
{
    luaL_newmetatable(L, PATCHER_MT);
    lua_pushcfunction(L, l_patcher_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "blt.Patcher");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
    luaL_setfuncs(L, functions, 0);
}
