/* oneDNN matmul primitives, created once per shape and cached (see dnnl.h).
 *
 * Why dlopen: the binary runs (on OpenBLAS) where libdnnl is missing, and the OpenMP
 * runtime it brings (libgomp) reads its settings once, when it is loaded: loading it
 * ourselves lets us ask for OMP_WAIT_POLICY=PASSIVE first, so that its idle threads
 * sleep instead of spinning against our own pool (core/thread.c) on few cores. */
#include "dnnl.h"
#include <stdio.h>
#include <string.h>

#ifndef BLT_HAVE_DNNL

int blt_dnnl_init(void) { return 0; }
const char *blt_dnnl_info(void) { return "oneDNN: not built in (DNNL=0, no oneapi/dnnl/dnnl.h, or the sanitizer build)"; }
int blt_dnnl_has_avx512(void) { return 0; }
int blt_dnnl_has_bf16(void) { return 0; }
int blt_dnnl_gemm(int dtype, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                  const void *A, int64_t lda, const void *B, int64_t ldb, float beta, float *C,
                  int64_t ldc, int nthreads, const char **impl)
{
    return -1;
}

#else

#include <oneapi/dnnl/dnnl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

/* the oneDNN functions we use, looked up once: X(name) */
#define DNNL_FUNCS(X)                                                                       \
    X(dnnl_engine_create) X(dnnl_stream_create) X(dnnl_memory_desc_init_by_strides)         \
    X(dnnl_matmul_desc_init) X(dnnl_primitive_attr_create) X(dnnl_primitive_attr_destroy)   \
    X(dnnl_primitive_attr_set_output_scales) X(dnnl_primitive_attr_set_post_ops)            \
    X(dnnl_post_ops_create) X(dnnl_post_ops_append_sum) X(dnnl_post_ops_destroy)            \
    X(dnnl_primitive_desc_create) X(dnnl_primitive_desc_query) X(dnnl_primitive_desc_destroy) \
    X(dnnl_primitive_create) X(dnnl_primitive_destroy) X(dnnl_primitive_execute)            \
    X(dnnl_memory_create) X(dnnl_memory_set_data_handle) X(dnnl_memory_destroy)             \
    X(dnnl_stream_wait) X(dnnl_get_effective_cpu_isa) X(dnnl_version)

static struct {
#define X(f) __typeof__(&f) f;
    DNNL_FUNCS(X)
#undef X
    void (*omp_set_num_threads)(int);
} fn;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int loaded = -1; /* -1 not tried, 0 unusable, 1 ready */
static char info[160] = "oneDNN: not loaded";
static dnnl_engine_t engine;
static dnnl_stream_t stream;
static int isa_avx512, isa_bf16;

static int load(void)
{
    /* libgomp reads OMP_WAIT_POLICY when it loads: set it for that moment only (so
     * child processes do not inherit it), unless the user chose a policy */
    int policy = !getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT");
    void *gomp = dlopen("libgomp.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (gomp) { policy = 0; dlclose(gomp); } /* already loaded: too late to choose */
    if (policy) setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    const char *path = getenv("BLT_DNNL_LIB"); /* another build, or none (tests of the fallback) */
    void *h = dlopen(path && *path ? path : "libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (policy) unsetenv("OMP_WAIT_POLICY");
    if (!h) {
        snprintf(info, sizeof info, "oneDNN: absent (%s)", dlerror());
        return 0;
    }
#define X(f) if (!(*(void **)&fn.f = dlsym(h, #f))) { snprintf(info, sizeof info, "oneDNN: no %s", #f); return 0; }
    DNNL_FUNCS(X)
#undef X
    /* dlsym on a handle also searches its dependencies: libgomp */
    *(void **)&fn.omp_set_num_threads = dlsym(h, "omp_set_num_threads");
    if (!fn.omp_set_num_threads) {
        snprintf(info, sizeof info, "oneDNN: no OpenMP runtime (omp_set_num_threads) found");
        return 0;
    }
    if (fn.dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success ||
        fn.dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) {
        snprintf(info, sizeof info, "oneDNN: no CPU engine");
        return 0;
    }
    unsigned isa = (unsigned)fn.dnnl_get_effective_cpu_isa();
    isa_avx512 = (isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
    isa_bf16 = (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
    const dnnl_version_t *v = fn.dnnl_version();
    snprintf(info, sizeof info, "oneDNN %d.%d.%d (%s%s)", v->major, v->minor, v->patch,
             isa_bf16 ? "avx512_core_bf16" : isa_avx512 ? "avx512_core" : "no avx512",
             policy ? ", OMP_WAIT_POLICY=PASSIVE" : "");
    return 1;
}

int blt_dnnl_init(void)
{
    pthread_mutex_lock(&mu);
    if (loaded < 0) loaded = load();
    pthread_mutex_unlock(&mu);
    return loaded;
}

const char *blt_dnnl_info(void) { return info; }
int blt_dnnl_has_avx512(void) { return loaded == 1 && isa_avx512; }
int blt_dnnl_has_bf16(void) { return loaded == 1 && isa_bf16; }

/* ---- the primitive cache ---- */

typedef struct {
    int dtype, ta, tb, nthreads;
    int64_t M, N, K, lda, ldb, ldc;
    uint32_t alpha, beta; /* bit patterns: -0.0 and NaN are keys too */
} gemm_key;

typedef struct {
    gemm_key key;
    int used;            /* slot holds a key */
    int ok;              /* 0: oneDNN refused this shape; later calls go elsewhere */
    uint64_t last;       /* LRU clock */
    dnnl_primitive_t prim;
    dnnl_memory_t mem[3]; /* src, weights, dst: pointers set per call */
    char impl[48];
} entry;

/* Enough for every shape of a model's step (forward, both backward products, a few
 * model sizes); beyond it the least recently used primitive is destroyed. */
#define CACHE_CAP 64
static entry cache[CACHE_CAP];
static uint64_t clock_;

static void entry_clear(entry *e)
{
    if (e->prim) fn.dnnl_primitive_destroy(e->prim);
    for (int i = 0; i < 3; i++)
        if (e->mem[i]) fn.dnnl_memory_destroy(e->mem[i]);
    memset(e, 0, sizeof *e);
}

static uint32_t bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

/* a [rows, cols] matrix stored row-major with row stride ld, read transposed or not */
static dnnl_status_t matrix_md(dnnl_memory_desc_t *md, int64_t r, int64_t c, int trans, int64_t ld,
                               dnnl_data_type_t dt)
{
    dnnl_dims_t dims = {r, c};
    dnnl_dims_t strides = {trans ? 1 : ld, trans ? ld : 1};
    return fn.dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides);
}

/* Creates e's primitive and memory objects; nonzero on any failure. */
static int entry_build(entry *e, void *A, void *B, float *C)
{
    const gemm_key *k = &e->key;
    dnnl_data_type_t dt = k->dtype == BLT_DNNL_BF16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t md[3];
    dnnl_matmul_desc_t desc;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    float alpha, beta;
    memcpy(&alpha, &k->alpha, 4);
    memcpy(&beta, &k->beta, 4);
    int bad = matrix_md(&md[0], k->M, k->K, k->ta, k->lda, dt) || matrix_md(&md[1], k->K, k->N, k->tb, k->ldb, dt) ||
              matrix_md(&md[2], k->M, k->N, 0, k->ldc, dnnl_f32) ||
              fn.dnnl_matmul_desc_init(&desc, &md[0], &md[1], NULL, &md[2]) ||
              fn.dnnl_primitive_attr_create(&attr);
    if (!bad && alpha != 1.0f) bad = fn.dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha) != dnnl_success;
    if (!bad && beta != 0.0f) /* C = alpha AB + beta C: the sum post-op reads C first */
        bad = fn.dnnl_post_ops_create(&po) || fn.dnnl_post_ops_append_sum(po, beta) ||
              fn.dnnl_primitive_attr_set_post_ops(attr, po);
    if (!bad) bad = fn.dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL) != dnnl_success;
    if (!bad) {
        const char *name = NULL;
        if (fn.dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) == dnnl_success && name)
            snprintf(e->impl, sizeof e->impl, "%s", name);
        bad = fn.dnnl_primitive_create(&e->prim, pd) != dnnl_success;
    }
    void *ptr[3] = {A, B, C};
    for (int i = 0; i < 3 && !bad; i++) bad = fn.dnnl_memory_create(&e->mem[i], &md[i], engine, ptr[i]) != dnnl_success;
    if (pd) fn.dnnl_primitive_desc_destroy(pd);
    if (po) fn.dnnl_post_ops_destroy(po);
    if (attr) fn.dnnl_primitive_attr_destroy(attr);
    return bad;
}

/* the entry for k: found, or built in a free or the least recently used slot */
static entry *lookup(const gemm_key *k, void *A, void *B, float *C)
{
    entry *victim = &cache[0];
    for (int i = 0; i < CACHE_CAP; i++) {
        entry *e = &cache[i];
        if (e->used && !memcmp(&e->key, k, sizeof *k)) { e->last = ++clock_; return e; }
        if (victim->used && (!e->used || e->last < victim->last)) victim = e; /* free slots first */
    }
    entry_clear(victim);
    victim->used = 1;
    victim->key = *k;
    victim->last = ++clock_;
    /* oneDNN sizes its work split by the thread count at creation (the calling
     * thread's OpenMP setting) */
    fn.omp_set_num_threads(k->nthreads);
    if (entry_build(victim, A, B, C)) {
        entry_clear(victim); /* keep only the failure */
        victim->used = 1;
        victim->key = *k;
        victim->last = clock_;
    } else {
        victim->ok = 1;
    }
    return victim;
}

int blt_dnnl_gemm(int dtype, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                  const void *A, int64_t lda, const void *B, int64_t ldb, float beta, float *C,
                  int64_t ldc, int nthreads, const char **impl)
{
    if (loaded != 1 || M <= 0 || N <= 0 || K <= 0 || nthreads < 1) return -1;
    gemm_key k;
    memset(&k, 0, sizeof k); /* the key is compared bytewise: no stray padding */
    k.dtype = dtype; k.ta = !!ta; k.tb = !!tb; k.nthreads = nthreads;
    k.M = M; k.N = N; k.K = K; k.lda = lda; k.ldb = ldb; k.ldc = ldc;
    k.alpha = bits(alpha); k.beta = bits(beta == 0.0f ? 0.0f : beta);
    pthread_mutex_lock(&mu);
    entry *e = lookup(&k, (void *)A, (void *)B, C);
    int rc = -1;
    if (e->ok) {
        fn.omp_set_num_threads(nthreads); /* per thread in OpenMP, and cheap */
        void *ptr[3] = {(void *)A, (void *)B, C};
        rc = 0;
        for (int i = 0; i < 3 && !rc; i++) rc = fn.dnnl_memory_set_data_handle(e->mem[i], ptr[i]) != dnnl_success;
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, e->mem[0]}, {DNNL_ARG_WEIGHTS, e->mem[1]}, {DNNL_ARG_DST, e->mem[2]}};
        /* oneDNN's CPU execution fails only before computing (its scratchpad): C is
         * untouched and the caller's fallback may still read it */
        if (!rc) rc = fn.dnnl_primitive_execute(e->prim, stream, 3, args) != dnnl_success ||
                      fn.dnnl_stream_wait(stream) != dnnl_success;
        if (rc) e->ok = 0;
        if (impl) *impl = e->impl;
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

#endif
