/* Lua binding: reference measurements for the benchmarks. */
#include "lua_bind.h"
#include "bf16.h"
#include "blas.h"
#include "mem.h"
#include "thread.h"
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* bench_sgemm(a, b, c, transA, transB, reps) -> seconds per call of raw cblas_sgemm
 * (OpenBLAS threads = our thread count) computing c = op(a) op(b). */
static int l_bench_sgemm(lua_State *L)
{
    blt_tensor *a = bltL_check(L, 1), *b = bltL_check(L, 2), *c = bltL_check(L, 3);
    int ta = lua_toboolean(L, 4), tb = lua_toboolean(L, 5);
    int reps = (int)bltL_optint(L, 6, "bench_sgemm", "reps", 1, 1000000, 5);
    if (a->ndim != 2 || b->ndim != 2 || c->ndim != 2) return luaL_error(L, "blt.bench_sgemm: 2-d tensors only");
    blt_tensor *abc[3] = {a, b, c};
    for (int i = 0; i < 3; i++) /* raw cblas reads them as dense row-major arrays */
        if (blt_check("bench_sgemm", i == 0 ? "a" : i == 1 ? "b" : "c", abc[i], BLT_F32) ||
            !blt_tensor_is_contiguous(abc[i]))
            return luaL_error(L, "blt.bench_sgemm: a, b and c must be live contiguous float32 tensors");
    int64_t M = c->shape[0], N = c->shape[1], K = ta ? a->shape[0] : a->shape[1];
    if ((ta ? a->shape[1] : a->shape[0]) != M || (tb ? b->shape[1] : b->shape[0]) != K || (tb ? b->shape[0] : b->shape[1]) != N)
        return luaL_error(L, "blt.bench_sgemm: shapes do not fit");
    blt_sgemm_reference(ta, tb, M, N, K, 1.0f, blt_f32(a), a->shape[1], blt_f32(b), b->shape[1], 0.0f, blt_f32(c), N,
                        blt_threads_count(), 1); /* warm-up: OpenBLAS starts its threads */
    double t0 = now();
    blt_sgemm_reference(ta, tb, M, N, K, 1.0f, blt_f32(a), a->shape[1], blt_f32(b), b->shape[1], 0.0f, blt_f32(c), N,
                        blt_threads_count(), reps);
    lua_pushnumber(L, (now() - t0) / reps);
    return 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* bench_gemm(ta, tb, M, N, K, dtype, reps) -> seconds per call (median of reps), the
 * library that served it, and seconds per call of raw cblas_sgemm (OpenBLAS threads =
 * our thread count) on the same fp32 operands: C = op(A) op(B) through blt_sgemm
 * (dtype "f32") or blt_gemm_bf16 ("bf16", operands rounded beforehand), on random
 * dense operands. */
static int l_bench_gemm(lua_State *L)
{
    int ta = lua_toboolean(L, 1), tb = lua_toboolean(L, 2);
    int64_t M = bltL_int(L, 3, "bench_gemm", "M", 1, 1 << 16), N = bltL_int(L, 4, "bench_gemm", "N", 1, 1 << 16),
            K = bltL_int(L, 5, "bench_gemm", "K", 1, 1 << 16);
    const char *dt = bltL_name(L, 6, "bench_gemm", "dtype");
    int bf16 = !strcmp(dt, "bf16");
    if (!bf16 && strcmp(dt, "f32")) return luaL_error(L, "blt.bench_gemm: dtype '%s' (want f32 or bf16)", dt);
    double ts[1000];
    int reps = (int)bltL_optint(L, 7, "bench_gemm", "reps", 1, 1000, 5);
    size_t na = (size_t)(M * K), nb = (size_t)(K * N), nc = (size_t)(M * N);
    size_t bytes = (na + nb + nc) * 4 + (na + nb) * 2;
    float *a = blt_mem_alloc(bytes);
    if (!a) return luaL_error(L, "blt.bench_gemm: out of memory");
    float *b = a + na, *c = b + nb;
    uint16_t *ha = (uint16_t *)(c + nc), *hb = ha + na;
    uint32_t x = 12345;
    for (size_t i = 0; i < na + nb; i++) { /* uniform in [-1, 1) */
        x = x * 1664525u + 1013904223u;
        a[i] = (float)((double)(x >> 8) / (1 << 23) - 1.0);
    }
    blt_f32_to_bf16(a, ha, (int64_t)(na + nb), 0);
    int64_t lda = ta ? M : K, ldb = tb ? K : N;
    blt_status s = BLT_OK;
    for (int i = -1; i < reps && s == BLT_OK; i++) { /* -1: warm-up, creates the primitive */
        if (i == 0) blt_blas_stats_reset();
        double t0 = now();
        if (bf16) s = blt_gemm_bf16(ta, tb, M, N, K, 1.0f, ha, lda, hb, ldb, 0.0f, c, N);
        else blt_sgemm(ta, tb, M, N, K, 1.0f, a, lda, b, ldb, 0.0f, c, N);
        if (i >= 0) ts[i] = now() - t0;
    }
    blt_gemm_stat st[4];
    int n = blt_blas_stats(st, 4);
    char lib[sizeof st[0].lib + 16];
    snprintf(lib, sizeof lib, "%s%s", n ? st[0].lib : "?", n > 1 ? " (and others)" : "");
    qsort(ts, (size_t)reps, sizeof *ts, cmp_double);
    double med = reps % 2 ? ts[reps / 2] : (ts[reps / 2 - 1] + ts[reps / 2]) / 2;
    blt_sgemm_reference(ta, tb, M, N, K, 1.0f, a, lda, b, ldb, 0.0f, c, N, blt_threads_count(), 1);
    double t0 = now();
    blt_sgemm_reference(ta, tb, M, N, K, 1.0f, a, lda, b, ldb, 0.0f, c, N, blt_threads_count(), reps);
    double ref = (now() - t0) / reps;
    blt_mem_free(a, bytes);
    if (s != BLT_OK) return bltL_error(L, "bench_gemm");
    lua_pushnumber(L, med);
    lua_pushstring(L, lib);
    lua_pushnumber(L, ref);
    return 3;
}

static const luaL_Reg functions[] = {{"bench_sgemm", l_bench_sgemm}, {"bench_gemm", l_bench_gemm}, {NULL, NULL}};

void bltL_open_bench(lua_State *L) { luaL_setfuncs(L, functions, 0); }
