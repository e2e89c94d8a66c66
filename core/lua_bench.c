/* Lua binding: reference measurements for the benchmarks. */
#include "lua_bind.h"
#include "blas.h"
#include "thread.h"
#include <lauxlib.h>
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

static const luaL_Reg functions[] = {{"bench_sgemm", l_bench_sgemm}, {NULL, NULL}};

void bltL_open_bench(lua_State *L) { luaL_setfuncs(L, functions, 0); }
