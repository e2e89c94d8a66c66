/* Lua binding of the product layer itself (blas.h, bf16.h): for its tests and the
 * benchmark's per-shape table. */
#include "lua_bind.h"
#include "bf16.h"
#include "blas.h"
#include "mem.h"
#include "ops.h"
#include <lauxlib.h>
#include <string.h>

/* the stored [rows, cols] matrix (row stride ld) lies inside tensor t */
static void check_matrix(lua_State *L, const char *what, blt_tensor *t, int64_t rows, int64_t cols, int64_t ld)
{
    if (blt_check("gemm", what, t, BLT_F32) || !blt_tensor_is_contiguous(t))
        luaL_error(L, "blt.gemm: %s must be a live contiguous float32 tensor", what);
    if (ld < (cols > 1 ? cols : 1))
        luaL_error(L, "blt.gemm: the row stride of %s (%I) is below its %I columns", what, (lua_Integer)ld,
                   (lua_Integer)cols);
    if (rows > 0 && cols > 0 && (rows - 1) * ld + cols > t->numel)
        luaL_error(L, "blt.gemm: %s holds %I elements, a [%I x %I] matrix with row stride %I needs %I", what,
                   (lua_Integer)t->numel, (lua_Integer)rows, (lua_Integer)cols, (lua_Integer)ld,
                   (lua_Integer)((rows - 1) * ld + cols));
}

/* gemm(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc [, "bf16"]): c = alpha
 * op(a) op(b) + beta c in place through blt_sgemm, or through blt_gemm_bf16 with a
 * and b rounded to bf16 first. Tensors are read as row-major storage with the given
 * row strides. */
static int l_gemm(lua_State *L)
{
    int ta = lua_toboolean(L, 1), tb = lua_toboolean(L, 2);
    int64_t M = bltL_int(L, 3, "gemm", "M", 0, INT32_MAX), N = bltL_int(L, 4, "gemm", "N", 0, INT32_MAX),
            K = bltL_int(L, 5, "gemm", "K", 0, INT32_MAX);
    float alpha = (float)luaL_checknumber(L, 6);
    blt_tensor *a = bltL_check(L, 7), *b = bltL_check(L, 9), *c = bltL_check(L, 12);
    int64_t lda = bltL_int(L, 8, "gemm", "lda", 1, INT32_MAX), ldb = bltL_int(L, 10, "gemm", "ldb", 1, INT32_MAX),
            ldc = bltL_int(L, 13, "gemm", "ldc", 1, INT32_MAX);
    float beta = (float)luaL_checknumber(L, 11);
    const char *dt = lua_isnoneornil(L, 14) ? "f32" : bltL_name(L, 14, "gemm", "dtype");
    int bf16 = !strcmp(dt, "bf16");
    if (!bf16 && strcmp(dt, "f32")) return luaL_error(L, "blt.gemm: dtype '%s' (want f32 or bf16)", dt);
    check_matrix(L, "a", a, ta ? K : M, ta ? M : K, lda);
    check_matrix(L, "b", b, tb ? N : K, tb ? K : N, ldb);
    check_matrix(L, "c", c, M, N, ldc);
    if (!bf16) {
        blt_sgemm(ta, tb, M, N, K, alpha, blt_f32(a), lda, blt_f32(b), ldb, beta, blt_f32(c), ldc);
        return 0;
    }
    size_t na = (size_t)a->numel * 2 + 2, nb = (size_t)b->numel * 2 + 2;
    uint16_t *ha = blt_mem_alloc(na), *hb = blt_mem_alloc(nb);
    blt_status s = ha && hb ? BLT_OK : blt_fail(BLT_ENOMEM, "gemm: out of memory");
    if (s == BLT_OK) {
        blt_f32_to_bf16(blt_f32(a), ha, a->numel, 0);
        blt_f32_to_bf16(blt_f32(b), hb, b->numel, 0);
        s = blt_gemm_bf16(ta, tb, M, N, K, alpha, ha, lda, hb, ldb, beta, blt_f32(c), ldc);
    }
    if (ha) blt_mem_free(ha, na);
    if (hb) blt_mem_free(hb, nb);
    if (s != BLT_OK) return bltL_error(L, "gemm");
    return 0;
}

/* bf16_bits(bits [, scalar]) -> the bf16 bit patterns (integers) of the fp32 values
 * whose bit patterns are in the list bits; scalar: skip the vector path */
static int l_bf16_bits(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int scalar = lua_toboolean(L, 2);
    int64_t n = (int64_t)luaL_len(L, 1);
    if (n > 1 << 24) return luaL_error(L, "blt.bf16_bits: at most 2^24 values (got %I)", (lua_Integer)n);
    size_t bytes = (size_t)n * 6 + 6;
    float *x = blt_mem_alloc(bytes);
    if (!x) return luaL_error(L, "blt.bf16_bits: out of memory");
    uint16_t *y = (uint16_t *)(x + n);
    for (int64_t i = 0; i < n; i++) {
        lua_geti(L, 1, i + 1);
        int ok;
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok || v < 0 || v > 0xffffffffLL) {
            blt_mem_free(x, bytes);
            return luaL_error(L, "blt.bf16_bits: bits[%I] is not a 32-bit pattern", (lua_Integer)(i + 1));
        }
        uint32_t u = (uint32_t)v;
        memcpy(&x[i], &u, 4);
    }
    blt_f32_to_bf16(x, y, n, scalar);
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
        lua_pushinteger(L, y[i]);
        lua_seti(L, -2, i + 1);
    }
    blt_mem_free(x, bytes);
    return 1;
}

/* gemv_bf16(w, x [, scalar]) -> y: y = W x for W [N,K] and x [K] (float32 tensors),
 * both rounded to bf16 first, through blt_gemv_bf16; scalar: skip the vector path */
static int l_gemv_bf16(lua_State *L)
{
    blt_tensor *w = bltL_check(L, 1), *x = bltL_check(L, 2);
    int scalar = lua_toboolean(L, 3);
    if (blt_check("gemv_bf16", "w", w, BLT_F32) || blt_check("gemv_bf16", "x", x, BLT_F32) || w->ndim != 2 ||
        x->ndim != 1 || x->shape[0] != w->shape[1] || !blt_tensor_is_contiguous(w) || !blt_tensor_is_contiguous(x))
        return luaL_error(L, "blt.gemv_bf16: want live contiguous float32 w [N,K] and x [K]");
    int64_t N = w->shape[0], K = w->shape[1];
    size_t bytes = (size_t)(N * K + K) * sizeof(uint16_t) + 2;
    uint16_t *wb = blt_mem_alloc(bytes);
    if (!wb) return luaL_error(L, "blt.gemv_bf16: out of memory");
    blt_f32_to_bf16(blt_f32(w), wb, N * K, 0);
    blt_f32_to_bf16(blt_f32(x), wb + N * K, K, 0);
    blt_tensor *y = NULL;
    int64_t shape[1] = {N};
    blt_status s = blt_tensor_new(&y, BLT_F32, 1, shape);
    if (s == BLT_OK) blt_gemv_bf16(wb, K, wb + N * K, blt_f32(y), N, K, scalar);
    blt_mem_free(wb, bytes);
    if (s != BLT_OK) return bltL_error(L, "gemv_bf16");
    bltL_push(L, y);
    return 1;
}

/* bf16_roundings() -> weight storages rounded to bf16 so far, the floats in them */
static int l_bf16_roundings(lua_State *L)
{
    int64_t r[2];
    blt_bf16_roundings(r);
    lua_pushinteger(L, r[0]);
    lua_pushinteger(L, r[1]);
    return 2;
}

/* blas_stats() -> list of {lib=, dtype="f32"|"bf16", ta=, tb=, M=, N=, K=, calls=, seconds=} */
static int l_blas_stats(lua_State *L)
{
    static blt_gemm_stat st[BLT_GEMM_STATS_CAP];
    int n = blt_blas_stats(st, BLT_GEMM_STATS_CAP);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 9);
        lua_pushstring(L, st[i].lib); lua_setfield(L, -2, "lib");
        lua_pushstring(L, st[i].bf16 ? "bf16" : "f32"); lua_setfield(L, -2, "dtype");
        lua_pushboolean(L, st[i].ta); lua_setfield(L, -2, "ta");
        lua_pushboolean(L, st[i].tb); lua_setfield(L, -2, "tb");
        lua_pushinteger(L, st[i].M); lua_setfield(L, -2, "M");
        lua_pushinteger(L, st[i].N); lua_setfield(L, -2, "N");
        lua_pushinteger(L, st[i].K); lua_setfield(L, -2, "K");
        lua_pushinteger(L, st[i].calls); lua_setfield(L, -2, "calls");
        lua_pushnumber(L, st[i].seconds); lua_setfield(L, -2, "seconds");
        lua_seti(L, -2, i + 1);
    }
    return 1;
}

static int l_blas_stats_reset(lua_State *L)
{
    blt_blas_stats_reset();
    return 0;
}

static const luaL_Reg functions[] = {{"gemm", l_gemm}, {"bf16_bits", l_bf16_bits}, {"blas_stats", l_blas_stats},
                                     {"blas_stats_reset", l_blas_stats_reset}, {"gemv_bf16", l_gemv_bf16},
                                     {"bf16_roundings", l_bf16_roundings}, {NULL, NULL}};

void bltL_open_blas(lua_State *L) { luaL_setfuncs(L, functions, 0); }
