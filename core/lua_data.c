/* Lua binding: byte corpora (core/corpus.h). lua/blt/data.lua builds the
 * researcher-facing objects on these functions. A corpus is a "blt.Corpus" userdata
 * holding the C corpus; __gc and __close unmap it (idempotent). Stream positions and
 * window / document numbers given or returned as Lua numbers are 1-based; token ids
 * inside tensors are the ids of docs/model.md. */
#include "corpus.h"
#include "lua_bind.h"
#include <lauxlib.h>

#define CORPUS_MT "blt.Corpus"

typedef struct { blt_corpus *c; } corpus_ud;

static blt_corpus *check_corpus(lua_State *L, int idx, const char *fn)
{
    corpus_ud *u = luaL_checkudata(L, idx, CORPUS_MT);
    if (!u->c) luaL_error(L, "blt.%s: the corpus was closed", fn);
    return u->c;
}

/* data_open(path | {paths...}, val_fraction [, val_files [, separator]]) -> corpus
 * (corpus.h: val_files > 0 splits by files; separator -1 or a byte) */
static int l_open(lua_State *L)
{
    double vf = 0.1;
    if (!lua_isnoneornil(L, 2)) {
        if (lua_type(L, 2) != LUA_TNUMBER)
            return luaL_error(L, "blt.data.open: val_fraction must be a number, got %s", luaL_typename(L, 2));
        vf = lua_tonumber(L, 2);
    }
    blt_corpus_opts o = {.val_fraction = vf, .val_files = 0, .separator = -1};
    if (!lua_isnoneornil(L, 3)) o.val_files = bltL_int(L, 3, "data.open", "val_files", 0, INT64_MAX);
    if (!lua_isnoneornil(L, 4)) o.separator = (int)bltL_int(L, 4, "data.open", "separator", -1, 255);
    int n;
    const char **paths;
    if (lua_type(L, 1) == LUA_TSTRING) {
        n = 1;
        paths = lua_newuserdatauv(L, sizeof *paths, 0);
        paths[0] = bltL_name(L, 1, "data.open", "path");
    } else if (lua_istable(L, 1)) {
        lua_Integer len = luaL_len(L, 1);
        if (len < 1) return luaL_error(L, "blt.data.open: the list of paths is empty");
        if (len > 1000000) return luaL_error(L, "blt.data.open: too many paths (%d)", (int)len);
        n = (int)len;
        paths = lua_newuserdatauv(L, sizeof *paths * (size_t)n, 0); /* the GC frees it */
        for (int i = 0; i < n; i++) {
            lua_geti(L, 1, i + 1);
            if (lua_type(L, -1) != LUA_TSTRING)
                return luaL_error(L, "blt.data.open: path %d is %s, not a string", i + 1, luaL_typename(L, -1));
            paths[i] = bltL_name(L, -1, "data.open", "path"); /* kept alive by the table at index 1 */
            lua_pop(L, 1);
        }
    } else {
        return luaL_argerror(L, 1, "expected a path or a list of paths");
    }
    corpus_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->c = NULL; /* safe empty state before the mappings exist */
    luaL_setmetatable(L, CORPUS_MT);
    if (blt_corpus_open_opts(&u->c, n, paths, &o) != BLT_OK) return bltL_error(L, "data.open");
    return 1;
}

static int l_close(lua_State *L)
{
    corpus_ud *u = luaL_checkudata(L, 1, CORPUS_MT);
    blt_corpus_close(u->c);
    u->c = NULL;
    return 0;
}

static int l_tostring(lua_State *L)
{
    corpus_ud *u = luaL_checkudata(L, 1, CORPUS_MT);
    if (!u->c) {
        lua_pushstring(L, "blt.Corpus (closed)");
        return 1;
    }
    blt_corpus_info in;
    blt_corpus_get_info(u->c, &in);
    lua_pushfstring(L, "blt.Corpus (%I bytes, %I documents, train %I ids, val %I ids)", (lua_Integer)in.bytes,
                    (lua_Integer)in.documents, (lua_Integer)in.train, (lua_Integer)in.val);
    return 1;
}

static int l_is_open(lua_State *L)
{
    corpus_ud *u = luaL_checkudata(L, 1, CORPUS_MT);
    lua_pushboolean(L, u->c != NULL);
    return 1;
}

static void set_int(lua_State *L, const char *k, int64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

/* data_info(c) -> {bytes, documents, files, separator, stream, train, val, val_fraction} */
static int l_info(lua_State *L)
{
    blt_corpus *c = check_corpus(L, 1, "data.info");
    blt_corpus_info in;
    if (blt_corpus_get_info(c, &in) != BLT_OK) return bltL_error(L, "data.info");
    lua_createtable(L, 0, 8);
    set_int(L, "bytes", in.bytes);
    set_int(L, "files", in.files);
    set_int(L, "separator", in.separator);
    set_int(L, "documents", in.documents);
    set_int(L, "stream", in.stream);
    set_int(L, "train", in.train);
    set_int(L, "val", in.val);
    lua_pushnumber(L, in.val_fraction);
    lua_setfield(L, -2, "val_fraction");
    return 1;
}

/* data_document(c, i) -> path, first stream position (1-based), size in bytes */
static int l_document(lua_State *L)
{
    blt_corpus *c = check_corpus(L, 1, "data.document");
    int64_t i = bltL_int(L, 2, "data.document", "document number", INT64_MIN + 1, INT64_MAX);
    const char *path;
    int64_t start, size;
    if (blt_corpus_document(c, (int64_t)i - 1, &path, &start, &size) != BLT_OK) return bltL_error(L, "data.document");
    lua_pushstring(L, path);
    lua_pushinteger(L, (lua_Integer)start + 1);
    lua_pushinteger(L, (lua_Integer)size);
    return 3;
}

/* data_ids(c, first (1-based), n) -> int32 tensor [n] of stream ids */
static int l_ids(lua_State *L)
{
    blt_corpus *c = check_corpus(L, 1, "data.ids");
    int64_t first = bltL_int(L, 2, "data.ids", "first position", INT64_MIN + 1, INT64_MAX);
    int64_t n = bltL_int(L, 3, "data.ids", "count", 0, (int64_t)1 << 40);
    blt_tensor *t;
    int64_t shape[1] = {(int64_t)n};
    if (blt_tensor_new(&t, BLT_I32, 1, shape) != BLT_OK) return bltL_error(L, "data.ids");
    bltL_push(L, t);
    if (blt_corpus_ids(c, (int64_t)first - 1, (int64_t)n, blt_i32(t)) != BLT_OK) return bltL_error(L, "data.ids");
    return 1;
}

/* data_sample(c, gen, B, N) -> int32 tensor [B, N]; advances gen */
static int l_sample(lua_State *L)
{
    blt_corpus *c = check_corpus(L, 1, "data.sample");
    blt_rng *r = bltL_check_gen(L, 2);
    int64_t B = bltL_int(L, 3, "data.sample", "batch", 1, (int64_t)1 << 40);
    int64_t N = bltL_int(L, 4, "data.sample", "seq_len", 2, (int64_t)1 << 40);
    blt_tensor *t;
    int64_t shape[2] = {(int64_t)B, (int64_t)N};
    if (blt_tensor_new(&t, BLT_I32, 2, shape) != BLT_OK) return bltL_error(L, "data.sample");
    bltL_push(L, t);
    if (blt_corpus_sample(c, r, (int64_t)B, (int64_t)N, blt_i32(t)) != BLT_OK) return bltL_error(L, "data.sample");
    return 1;
}

/* data_val_count(c, N) -> number of validation windows of N - 1 ids */
static int l_val_count(lua_State *L)
{
    blt_corpus *c = check_corpus(L, 1, "data.val_count");
    int64_t N = bltL_int(L, 2, "data.val_count", "seq_len", 2, (int64_t)1 << 40);
    lua_pushinteger(L, (lua_Integer)blt_corpus_val_count(c, (int64_t)N));
    return 1;
}

/* data_val_windows(c, first window (1-based), B, N) -> int32 tensor [B, N], {lengths} */
static int l_val_windows(lua_State *L)
{
    blt_corpus *c = check_corpus(L, 1, "data.val_windows");
    int64_t first = bltL_int(L, 2, "data.val_windows", "window number", 1, INT64_MAX);
    int64_t B = bltL_int(L, 3, "data.val_windows", "batch", 1, INT32_MAX);
    int64_t N = bltL_int(L, 4, "data.val_windows", "seq_len", 2, (int64_t)1 << 40);
    blt_tensor *t;
    int64_t shape[2] = {(int64_t)B, (int64_t)N};
    if (blt_tensor_new(&t, BLT_I32, 2, shape) != BLT_OK) return bltL_error(L, "data.val_windows");
    bltL_push(L, t);
    int64_t *len = lua_newuserdatauv(L, sizeof *len * (size_t)B, 0);
    if (blt_corpus_val_windows(c, (int64_t)first - 1, (int64_t)B, (int64_t)N, blt_i32(t), len) != BLT_OK)
        return bltL_error(L, "data.val_windows");
    lua_createtable(L, (int)B, 0);
    for (int64_t b = 0; b < B; b++) {
        lua_pushinteger(L, (lua_Integer)len[b]);
        lua_rawseti(L, -2, b + 1);
    }
    lua_remove(L, -2); /* the scratch lengths */
    return 2;
}

static const luaL_Reg metamethods[] = {{"__gc", l_close}, {"__close", l_close}, {"__tostring", l_tostring}, {NULL, NULL}};

static const luaL_Reg functions[] = {{"data_open", l_open},
                                     {"data_close", l_close},
                                     {"data_is_open", l_is_open},
                                     {"data_info", l_info},
                                     {"data_document", l_document},
                                     {"data_ids", l_ids},
                                     {"data_sample", l_sample},
                                     {"data_val_count", l_val_count},
                                     {"data_val_windows", l_val_windows},
                                     {NULL, NULL}};

void bltL_open_data(lua_State *L)
{
    if (luaL_newmetatable(L, CORPUS_MT)) luaL_setfuncs(L, metamethods, 0);
    lua_pop(L, 1);
    luaL_setfuncs(L, functions, 0);
}
