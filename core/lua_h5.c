/* Lua binding: HDF5 checkpoints and metrics (core/h5io.h, core/h5metrics.h).
 *
 *   f = blt.h5_create(path [, size_hint])   writer; data goes to path.tmp.<pid> at f:commit()
 *   f:set_attr(name, value [, obj])       string or integer attribute ("/" by default)
 *   f:write(dset, value [, dtype])        float32/int32 tensor; a number or a table of
 *                                         numbers as "int64" (integers), "float64",
 *                                         "uint64" (bit patterns), "int32" or "float32"
 *   f:commit()   flush, fsync, rename over path       f:abort()   drop the temporary file
 *   f = blt.h5_open(path [, {checksum = true}])   reader; the checksum header is checked
 *                                 before HDF5 parses the file (checksum = true: required)
 *   f:sealed() -> whether the checksum header was there and matched
 *   blt.h5_crc32(bytes [, crc]) -> CRC-32 (zlib's)
 *   f:attr(name [, obj]) -> value or nil   f:attrs([obj]) -> {name = value}
 *   f:list(group) -> {names...}, {name = "dataset"|"group"|"other"}, exists
 *   f:info(dset) -> {dtype =, shape =} or nil      f:exists(dset)
 *   f:read(dset [, {shape =, dtype =, finite =}])  float32/int32 -> tensor; others ->
 *                                         a number (0-d) or a table (1-d)
 *   f:close()    (also __close / __gc; an uncommitted writer is aborted)
 *   m = blt.h5_metrics(path [, {flush_every =, append =, units = {column = "unit", ...}}])
 *                                         m:log{...} m:flush()  (units: each column's "unit" attribute)
 *   m:rows() m:truncate(rows) m:close() */
#include "h5io.h"
#include "h5metrics.h"
#include "lua_bind.h"
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define H5FILE_MT "blt.H5File"
#define METRICS_MT "blt.H5Metrics"

typedef struct { blt_h5 *f; } h5_ud;
typedef struct { blt_metrics *m; } metrics_ud;

/* An optional name or path (def when idx is none or nil), refused with a NUL byte like bltL_name. */
static const char *opt_name(lua_State *L, int idx, const char *fn, const char *what, const char *def)
{
    return lua_isnoneornil(L, idx) ? def : bltL_name(L, idx, fn, what);
}

static blt_h5 *check_file(lua_State *L, int idx)
{
    h5_ud *u = luaL_checkudata(L, idx, H5FILE_MT);
    if (!u->f) luaL_error(L, "blt.h5: the file is closed");
    return u->f;
}

static h5_ud *new_file_ud(lua_State *L)
{
    h5_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->f = NULL; /* safe empty state before the file exists */
    luaL_setmetatable(L, H5FILE_MT);
    return u;
}

static int l_h5_create(lua_State *L)
{
    const char *path = bltL_name(L, 1, "h5_create", "path");
    lua_Integer hint = luaL_optinteger(L, 2, 0);
    h5_ud *u = new_file_ud(L);
    if (blt_h5_create(&u->f, path, hint > 0 ? (size_t)hint : 0)) return bltL_error(L, "h5_create");
    return 1;
}

/* blt.h5_open(path [, {checksum = true}]): checksum = true refuses a file without
 * the checksum header (a damaged header or checksum is refused in any case). */
static int l_h5_open(lua_State *L)
{
    static const char *const allowed[] = {"checksum", NULL};
    const char *path = bltL_name(L, 1, "h5_open", "path");
    bltL_check_opts(L, 2, "h5_open", allowed);
    int flags = 0;
    if (lua_istable(L, 2)) {
        if (lua_getfield(L, 2, "checksum") != LUA_TNIL && lua_toboolean(L, -1)) flags |= BLT_H5_REQUIRE_CHECKSUM;
        lua_pop(L, 1);
    }
    h5_ud *u = new_file_ud(L);
    if (blt_h5_open(&u->f, path, flags)) return bltL_error(L, "h5_open");
    return 1;
}

/* f:sealed() -> whether the file had a valid checksum header */
static int f_sealed(lua_State *L)
{
    lua_pushboolean(L, blt_h5_sealed(check_file(L, 1)));
    return 1;
}

/* blt.h5_crc32(string [, crc]) -> the CRC-32 zlib computes (for tests and tools) */
static int l_h5_crc32(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_Integer crc = luaL_optinteger(L, 2, 0);
    lua_pushinteger(L, (lua_Integer)blt_h5_crc32((uint32_t)crc, s, n));
    return 1;
}

static int f_close(lua_State *L)
{
    h5_ud *u = luaL_checkudata(L, 1, H5FILE_MT);
    blt_h5_close(u->f);
    u->f = NULL;
    return 0;
}

static int f_abort(lua_State *L) { return f_close(L); }

static int f_commit(lua_State *L)
{
    h5_ud *u = luaL_checkudata(L, 1, H5FILE_MT);
    if (!u->f) return luaL_error(L, "blt.h5_commit: the file is closed");
    blt_h5 *f = u->f;
    u->f = NULL; /* commit frees it whatever happens */
    if (blt_h5_commit(f)) return bltL_error(L, "h5_commit");
    return 0;
}

static int f_path(lua_State *L)
{
    lua_pushstring(L, blt_h5_path(check_file(L, 1)));
    return 1;
}

static int f_tmp_path(lua_State *L)
{
    lua_pushstring(L, blt_h5_tmp_path(check_file(L, 1)));
    return 1;
}

static int f_set_attr(lua_State *L)
{
    blt_h5 *f = check_file(L, 1);
    const char *name = bltL_name(L, 2, "h5_set_attr", "attribute name");
    const char *obj = opt_name(L, 4, "h5_set_attr", "object name", "/");
    blt_status s;
    if (lua_isinteger(L, 3)) s = blt_h5_set_attr_int(f, obj, name, (int64_t)lua_tointeger(L, 3));
    else if (lua_type(L, 3) == LUA_TSTRING) s = blt_h5_set_attr_str(f, obj, name, bltL_name(L, 3, "h5_set_attr", "value"));
    else return luaL_argerror(L, 3, "a string or an integer");
    if (s) return bltL_error(L, "h5_set_attr");
    return 0;
}

/* Pushes an attribute's value, or nil for a missing or unsupported one. */
static void push_attr(lua_State *L, blt_h5 *f, const char *obj, const char *name)
{
    int kind;
    if (blt_h5_attr_kind(f, obj, name, &kind)) bltL_error(L, "h5_attr");
    switch (kind) {
    case BLT_H5_ATTR_INT: {
        int64_t v;
        if (blt_h5_get_attr_int(f, obj, name, &v)) bltL_error(L, "h5_attr");
        lua_pushinteger(L, (lua_Integer)v);
        break;
    }
    case BLT_H5_ATTR_FLOAT: {
        double v;
        if (blt_h5_get_attr_float(f, obj, name, &v)) bltL_error(L, "h5_attr");
        lua_pushnumber(L, v);
        break;
    }
    case BLT_H5_ATTR_STR: {
        char *v;
        if (blt_h5_get_attr_str(f, obj, name, &v)) bltL_error(L, "h5_attr");
        lua_pushstring(L, v); /* may raise only on memory errors; v leaks then */
        free(v);
        break;
    }
    default: lua_pushnil(L);
    }
}

static int f_attr(lua_State *L)
{
    blt_h5 *f = check_file(L, 1);
    const char *name = bltL_name(L, 2, "h5_attr", "attribute name");
    push_attr(L, f, opt_name(L, 3, "h5_attr", "object name", "/"), name);
    return 1;
}

/* Names are copied into a Lua table right away so that an error cannot leak them. */
static void push_names(lua_State *L, char **names, const char *kinds, int n)
{
    lua_createtable(L, n, 0);
    if (kinds) lua_createtable(L, 0, n);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, kinds ? -3 : -2, i + 1);
        if (kinds) {
            lua_pushstring(L, kinds[i] == 'd' ? "dataset" : kinds[i] == 'g' ? "group" : "other");
            lua_setfield(L, -2, names[i]);
        }
    }
}

static int f_attrs(lua_State *L)
{
    blt_h5 *f = check_file(L, 1);
    const char *obj = opt_name(L, 2, "h5_attrs", "object name", "/");
    char **names;
    int n;
    if (blt_h5_attr_names(f, obj, &names, &n)) return bltL_error(L, "h5_attrs");
    lua_checkstack(L, 8);
    /* move names into Lua first */
    push_names(L, names, NULL, n);
    blt_h5_free_names(names, n);
    int list = lua_gettop(L);
    lua_createtable(L, 0, n);
    for (int i = 1; i <= n; i++) {
        lua_geti(L, list, i);
        const char *name = lua_tostring(L, -1);
        push_attr(L, f, obj, name);
        lua_setfield(L, -3, name);
        lua_pop(L, 1);
    }
    return 1;
}

static int f_list(lua_State *L)
{
    blt_h5 *f = check_file(L, 1);
    const char *group = opt_name(L, 2, "h5_list", "group name", "/");
    char **names;
    char *kinds;
    int n, exists;
    if (blt_h5_list(f, group, &names, &kinds, &n, &exists)) return bltL_error(L, "h5_list");
    push_names(L, names, kinds, n);
    blt_h5_free_names(names, n);
    free(kinds);
    lua_pushboolean(L, exists);
    return 3;
}

static int f_exists(lua_State *L)
{
    blt_h5 *f = check_file(L, 1);
    int e;
    if (blt_h5_exists(f, bltL_name(L, 2, "h5_exists", "dataset name"), &e)) return bltL_error(L, "h5_exists");
    lua_pushboolean(L, e);
    return 1;
}

static void push_shape(lua_State *L, int nd, const int64_t *shape)
{
    lua_createtable(L, nd, 0);
    for (int i = 0; i < nd; i++) {
        lua_pushinteger(L, shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

static int f_info(lua_State *L)
{
    blt_h5 *f = check_file(L, 1);
    const char *dset = bltL_name(L, 2, "h5_info", "dataset name");
    int e;
    if (blt_h5_exists(f, dset, &e)) return bltL_error(L, "h5_info");
    if (!e) {
        lua_pushnil(L);
        return 1;
    }
    blt_h5_type t;
    int nd;
    int64_t shape[BLT_H5_MAX_DIMS];
    if (blt_h5_info(f, dset, &t, &nd, shape)) return bltL_error(L, "h5_info");
    lua_createtable(L, 0, 2);
    lua_pushstring(L, blt_h5_type_name(t));
    lua_setfield(L, -2, "dtype");
    push_shape(L, nd, shape);
    lua_setfield(L, -2, "shape");
    return 1;
}

static const char *const type_names[] = {"float32", "float64", "int32", "int64", "uint64", NULL};

/* f:write(dset, tensor) or f:write(dset, number | {numbers}, dtype) */
static int f_write(lua_State *L)
{
    blt_h5 *f = check_file(L, 1);
    const char *dset = bltL_name(L, 2, "h5_write", "dataset name");
    if (lua_type(L, 4) == LUA_TSTRING) bltL_name(L, 4, "h5_write", "dtype"); /* "int64\0x" is not "int64" */
    if (bltL_is_tensor(L, 3)) {
        blt_tensor *t = bltL_check(L, 3);
        if (blt_check_live("h5_write", "tensor", t)) return bltL_error(L, "h5_write");
        blt_tensor *c = t;
        if (!blt_tensor_is_contiguous(t)) {
            if (blt_tensor_new_like(&c, t)) return bltL_error(L, "h5_write");
            bltL_push(L, c); /* owned by Lua: an error below cannot leak it */
            blt_tensor_retain(c);
            blt_strided_copy(c, t);
        }
        blt_status s = blt_h5_write(f, dset, t->dtype == BLT_I32 ? BLT_H5_I32 : BLT_H5_F32, c->ndim, c->shape,
                                    c->st->data ? (const char *)c->st->data + c->offset * 4 : NULL);
        if (c != t) blt_tensor_release(c);
        if (s) return bltL_error(L, "h5_write");
        return 0;
    }
    int scalar = lua_type(L, 3) == LUA_TNUMBER;
    if (!scalar && !lua_istable(L, 3)) return luaL_argerror(L, 3, "a tensor, a number or a table of numbers");
    lua_Integer n = scalar ? 1 : luaL_len(L, 3);
    if (n < 0 || n > (1 << 26)) return luaL_argerror(L, 3, "table too long (write a tensor)");
    /* default: int64 when every value is an integer, else float64 */
    int all_int = 1;
    for (lua_Integer i = 1; i <= n; i++) {
        if (scalar) lua_pushvalue(L, 3);
        else lua_geti(L, 3, i);
        if (lua_type(L, -1) != LUA_TNUMBER)
            return luaL_error(L, "blt.h5_write: %s: entry %d is %s, not a number", dset, (int)i, luaL_typename(L, -1));
        all_int &= lua_isinteger(L, -1);
        lua_pop(L, 1);
    }
    int ti = luaL_checkoption(L, 4, all_int ? "int64" : "float64", type_names);
    blt_h5_type type = (blt_h5_type)ti; /* same order as the enum */
    size_t es = blt_h5_type_size(type);
    void *buf = lua_newuserdatauv(L, (size_t)(n ? n : 1) * es, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        if (scalar) lua_pushvalue(L, 3);
        else lua_geti(L, 3, i);
        int isint = lua_isinteger(L, -1);
        lua_Integer iv = lua_tointeger(L, -1);
        lua_Number nv = lua_tonumber(L, -1);
        lua_pop(L, 1);
        if ((type == BLT_H5_I32 || type == BLT_H5_I64 || type == BLT_H5_U64) && !isint) {
            if (nv != floor(nv) || !(fabs(nv) < 9.2e18))
                return luaL_error(L, "blt.h5_write: %s: entry %d (%f) is not an integer", dset, (int)i, nv);
            iv = (lua_Integer)nv;
        }
        switch (type) {
        case BLT_H5_F32: ((float *)buf)[i - 1] = (float)nv; break;
        case BLT_H5_F64: ((double *)buf)[i - 1] = (double)nv; break;
        case BLT_H5_I32:
            if (iv < INT32_MIN || iv > INT32_MAX)
                return luaL_error(L, "blt.h5_write: %s: entry %d out of int32 range", dset, (int)i);
            ((int32_t *)buf)[i - 1] = (int32_t)iv;
            break;
        case BLT_H5_I64: ((int64_t *)buf)[i - 1] = (int64_t)iv; break;
        case BLT_H5_U64: ((uint64_t *)buf)[i - 1] = (uint64_t)iv; break; /* bit pattern */
        default: break;
        }
    }
    int64_t shape[1] = {n};
    if (blt_h5_write(f, dset, type, scalar ? 0 : 1, shape, buf)) return bltL_error(L, "h5_write");
    return 0;
}

static int shape_from_table(lua_State *L, int idx, int64_t *shape)
{
    int n = (int)luaL_len(L, idx);
    if (n > BLT_H5_MAX_DIMS) luaL_error(L, "blt.h5_read: expected shape has %d dimensions (at most %d)", n, BLT_H5_MAX_DIMS);
    for (int i = 1; i <= n; i++) {
        lua_geti(L, idx, i);
        int ok;
        shape[i - 1] = (int64_t)lua_tointegerx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok) luaL_error(L, "blt.h5_read: expected shape entry %d is not an integer", i);
    }
    return n;
}

/* f:read(dset [, {shape = {...}, dtype = "float32", finite = true}]) */
static int f_read(lua_State *L)
{
    static const char *const allowed[] = {"shape", "dtype", "finite", NULL};
    blt_h5 *f = check_file(L, 1);
    const char *dset = bltL_name(L, 2, "h5_read", "dataset name");
    bltL_check_opts(L, 3, "h5_read", allowed);
    int has_opts = lua_istable(L, 3);
    blt_h5_type t;
    int nd;
    int64_t shape[BLT_H5_MAX_DIMS];
    if (blt_h5_info(f, dset, &t, &nd, shape)) return bltL_error(L, "h5_read");
    blt_h5_type want = t;
    int finite = 0;
    int end = nd;
    int64_t eshape[BLT_H5_MAX_DIMS];
    memcpy(eshape, shape, sizeof shape);
    if (has_opts) {
        if (lua_getfield(L, 3, "dtype") != LUA_TNIL)
            want = (blt_h5_type)luaL_checkoption(L, -1, bltL_name(L, -1, "h5_read", "option dtype"), type_names);
        lua_pop(L, 1);
        finite = lua_getfield(L, 3, "finite") != LUA_TNIL && lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (lua_getfield(L, 3, "shape") != LUA_TNIL) {
            luaL_checktype(L, -1, LUA_TTABLE);
            end = shape_from_table(L, lua_gettop(L), eshape);
        }
        lua_pop(L, 1);
    }
    int same = end == nd && want == t;
    for (int i = 0; same && i < nd; i++) same = eshape[i] == shape[i];
    if (!same || (want != BLT_H5_F32 && want != BLT_H5_F64 && want != BLT_H5_I32 && want != BLT_H5_I64 &&
                  want != BLT_H5_U64)) {
        /* let the core phrase the mismatch (dtype, then shape) before anything is allocated */
        blt_h5_read(f, dset, want, end, eshape, NULL, 0, 0);
        return bltL_error(L, "h5_read");
    }
    if (t == BLT_H5_F32 || t == BLT_H5_I32) {
        blt_tensor *x;
        if (blt_tensor_new(&x, t == BLT_H5_F32 ? BLT_F32 : BLT_I32, nd, shape)) return bltL_error(L, "h5_read");
        bltL_push(L, x);
        if (blt_h5_read(f, dset, t, nd, shape, (char *)x->st->data + x->offset * 4, (size_t)x->numel * 4, finite))
            return bltL_error(L, "h5_read");
        return 1;
    }
    if (nd > 1) return luaL_error(L, "blt.h5_read: %s: %s dataset %s has %d dimensions (only 0 or 1 can be read "
                                     "as Lua numbers)", blt_h5_path(f), blt_h5_type_name(t), dset, nd);
    int64_t n = nd == 0 ? 1 : shape[0];
    size_t es = blt_h5_type_size(t);
    void *buf = lua_newuserdatauv(L, (size_t)(n ? n : 1) * es, 0); /* n is bounded by the file size */
    if (blt_h5_read(f, dset, t, nd, shape, buf, (size_t)n * es, finite)) return bltL_error(L, "h5_read");
    if (nd == 1) lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
        switch (t) {
        case BLT_H5_F64: lua_pushnumber(L, ((double *)buf)[i]); break;
        case BLT_H5_I64: lua_pushinteger(L, (lua_Integer)((int64_t *)buf)[i]); break;
        case BLT_H5_U64: lua_pushinteger(L, (lua_Integer)((uint64_t *)buf)[i]); break;
        default: lua_pushnil(L);
        }
        if (nd == 1) lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* ---- metrics ---- */

static int l_h5_metrics(lua_State *L)
{
    static const char *const allowed[] = {"flush_every", "append", "units", NULL};
    const char *path = bltL_name(L, 1, "h5_metrics", "path");
    bltL_check_opts(L, 2, "h5_metrics", allowed);
    lua_Integer every = 10;
    int append = 0;
    if (lua_istable(L, 2)) {
        if (lua_getfield(L, 2, "flush_every") != LUA_TNIL) every = luaL_checkinteger(L, -1);
        lua_pop(L, 1);
        append = lua_getfield(L, 2, "append") != LUA_TNIL && lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    if (every < 1 || every > 1000000) return luaL_error(L, "blt.h5_metrics: flush_every = %d (must be in 1..1000000)", (int)every);
    /* units = {column = "unit"}: checked before the file is touched, set after it opens */
    int units = 0;
    if (lua_istable(L, 2) && lua_getfield(L, 2, "units") != LUA_TNIL) {
        units = lua_gettop(L);
        if (!lua_istable(L, units)) return luaL_error(L, "blt.h5_metrics: units must be a table {column = \"unit\"}");
        lua_pushnil(L);
        while (lua_next(L, units)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING || !lua_rawlen(L, -1))
                return luaL_error(L, "blt.h5_metrics: units must map column names to non-empty unit strings");
            bltL_name(L, -1, "h5_metrics", bltL_name(L, -2, "h5_metrics", "units key")); /* strings: no conversion */
            lua_pop(L, 1);
        }
    }
    metrics_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->m = NULL;
    luaL_setmetatable(L, METRICS_MT);
    if (blt_metrics_open(&u->m, path, (int)every, append)) return bltL_error(L, "h5_metrics");
    if (units) {
        lua_pushnil(L);
        while (lua_next(L, units)) {
            const char *k = bltL_name(L, -2, "h5_metrics", "units key"), *v = bltL_name(L, -1, "h5_metrics", k);
            if (blt_metrics_unit(u->m, k, v)) return bltL_error(L, "h5_metrics");
            lua_pop(L, 1);
        }
    }
    return 1;
}

static blt_metrics *check_metrics(lua_State *L, int idx)
{
    metrics_ud *u = luaL_checkudata(L, idx, METRICS_MT);
    if (!u->m) luaL_error(L, "blt.metrics: the metrics file is closed");
    return u->m;
}

/* Entries of the table at idx (a row of metrics, attributes), at most 100,000. */
static int table_entries(lua_State *L, int idx, const char *fn)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (++n > 100000) luaL_error(L, "blt.%s: more than 100000 entries", fn);
    }
    return n;
}

/* m:log{step = 1, loss = 2.5, ...}: numbers (booleans as 0/1) */
static int m_log(lua_State *L)
{
    blt_metrics *m = check_metrics(L, 1);
    int n = table_entries(L, 2, "metrics:log");
    const char **names = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *names, 0);
    double *vals = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *vals, 0);
    int i = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "blt.metrics:log: keys must be column names (strings)");
        const char *k = bltL_name(L, -2, "metrics:log", "column name"); /* anchored in the table */
        if (lua_type(L, -1) == LUA_TNUMBER) vals[i] = lua_tonumber(L, -1);
        else if (lua_isboolean(L, -1)) vals[i] = lua_toboolean(L, -1);
        else return luaL_error(L, "blt.metrics:log: '%s' is %s, not a number", k, luaL_typename(L, -1));
        names[i++] = k;
        lua_pop(L, 1);
    }
    if (blt_metrics_log(m, n, names, vals)) return bltL_error(L, "metrics:log");
    return 0;
}

/* m:annotate{name = number | string | boolean, ...}: attributes of the file's root */
static int m_annotate(lua_State *L)
{
    blt_metrics *m = check_metrics(L, 1);
    int n = table_entries(L, 2, "metrics:annotate");
    const char **names = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *names, 0);
    const char **strs = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *strs, 0);
    double *nums = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *nums, 0);
    int i = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "blt.metrics:annotate: keys must be names (strings)");
        const char *k = bltL_name(L, -2, "metrics:annotate", "name"); /* anchored in the table */
        strs[i] = NULL;
        nums[i] = 0;
        if (lua_type(L, -1) == LUA_TNUMBER) nums[i] = lua_tonumber(L, -1);
        else if (lua_isboolean(L, -1)) nums[i] = lua_toboolean(L, -1);
        else if (lua_type(L, -1) == LUA_TSTRING) {
            strs[i] = bltL_name(L, -1, "metrics:annotate", k);
        } else return luaL_error(L, "blt.metrics:annotate: '%s' is %s, not a number or a string", k, luaL_typename(L, -1));
        names[i++] = k;
        lua_pop(L, 1);
    }
    if (blt_metrics_annotate(m, n, names, strs, nums)) return bltL_error(L, "metrics:annotate");
    return 0;
}

static int m_flush(lua_State *L)
{
    if (blt_metrics_flush(check_metrics(L, 1))) return bltL_error(L, "metrics:flush");
    return 0;
}

static int m_rows(lua_State *L)
{
    lua_pushinteger(L, blt_metrics_rows(check_metrics(L, 1)));
    return 1;
}

/* m:truncate(rows): keep the first rows rows */
static int m_truncate(lua_State *L)
{
    if (blt_metrics_truncate(check_metrics(L, 1), luaL_checkinteger(L, 2))) return bltL_error(L, "metrics:truncate");
    return 0;
}

static int m_close(lua_State *L)
{
    metrics_ud *u = luaL_checkudata(L, 1, METRICS_MT);
    blt_metrics *m = u->m;
    u->m = NULL;
    if (blt_metrics_close(m)) return bltL_error(L, "metrics:close");
    return 0;
}

static int m_gc(lua_State *L)
{
    metrics_ud *u = luaL_checkudata(L, 1, METRICS_MT);
    blt_metrics_close(u->m); /* a finaliser never raises */
    u->m = NULL;
    return 0;
}

static int f_tostring(lua_State *L)
{
    h5_ud *u = luaL_checkudata(L, 1, H5FILE_MT);
    if (!u->f) lua_pushstring(L, "blt.H5File (closed)");
    else lua_pushfstring(L, "blt.H5File %s", blt_h5_path(u->f));
    return 1;
}

static const luaL_Reg file_methods[] = {
    {"set_attr", f_set_attr}, {"write", f_write}, {"commit", f_commit}, {"abort", f_abort},
    {"attr", f_attr}, {"attrs", f_attrs}, {"list", f_list}, {"exists", f_exists}, {"info", f_info},
    {"read", f_read}, {"sealed", f_sealed}, {"close", f_close}, {"path", f_path}, {"tmp_path", f_tmp_path}, {NULL, NULL}};

static const luaL_Reg metrics_methods[] = {
    {"log", m_log}, {"annotate", m_annotate}, {"flush", m_flush}, {"rows", m_rows}, {"truncate", m_truncate}, {"close", m_close},
    {NULL, NULL}};

static const luaL_Reg functions[] = {
    {"h5_create", l_h5_create}, {"h5_open", l_h5_open}, {"h5_crc32", l_h5_crc32}, {"h5_metrics", l_h5_metrics}, {NULL, NULL}};

void bltL_open_h5(lua_State *L)
{
    luaL_newmetatable(L, H5FILE_MT);
    lua_pushcfunction(L, f_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, f_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, f_tostring);
    lua_setfield(L, -2, "__tostring");
    luaL_newlib(L, file_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newmetatable(L, METRICS_MT);
    lua_pushcfunction(L, m_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, m_gc);
    lua_setfield(L, -2, "__close");
    luaL_newlib(L, metrics_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    /* the module table is on top */
    luaL_setfuncs(L, functions, 0);
}
