#include "thread.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include <immintrin.h>

#define MAX_THREADS 256

static int nthreads = 1;
static pthread_t workers[MAX_THREADS];
static int nworkers; /* started worker threads = nthreads - 1 */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static _Atomic long generation;
static _Atomic int pending;
static _Atomic int stopping;
static _Atomic int parked; /* set by blt_threads_park until the next job */
static _Thread_local int in_parallel;
static long start_generation;

/* The job being run: chunk i covers [i*n/k, (i+1)*n/k). */
static struct {
    blt_range_fn fn;
    void *ctx;
    int64_t n;
    int chunks;
} job;

static void run_chunk(int i)
{
    int64_t b = job.n * i / job.chunks, e = job.n * (i + 1) / job.chunks;
    if (b < e) job.fn(job.ctx, b, e, i);
}

static void *worker_main(void *arg)
{
    int id = (int)(intptr_t)arg; /* 1..nworkers */
    long seen = start_generation; /* jobs published before this pool started are not ours */
    in_parallel = 1;
    for (;;) {
        /* Spin briefly before sleeping: waking a sleeping vCPU costs 50-80 us. */
        long g = seen;
        for (int spin = 0; spin < 20000; spin++) {
            g = atomic_load_explicit(&generation, memory_order_acquire);
            if (g != seen || atomic_load(&stopping) || atomic_load_explicit(&parked, memory_order_relaxed)) break;
            _mm_pause();
        }
        if (g == seen && !atomic_load(&stopping)) {
            pthread_mutex_lock(&mu);
            while ((g = atomic_load(&generation)) == seen && !atomic_load(&stopping))
                pthread_cond_wait(&wake, &mu);
            pthread_mutex_unlock(&mu);
        }
        if (atomic_load(&stopping)) return NULL;
        seen = g;
        if (id < job.chunks) run_chunk(id);
        atomic_fetch_sub_explicit(&pending, 1, memory_order_acq_rel);
    }
}

void blt_threads_shutdown(void)
{
    if (nworkers == 0) return;
    pthread_mutex_lock(&mu);
    atomic_store(&stopping, 1);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < nworkers; i++) pthread_join(workers[i], NULL);
    nworkers = 0;
    atomic_store(&stopping, 0);
}

void blt_threads_init(int n)
{
    if (n <= 0) {
        const char *env = getenv("BLT_THREADS");
        n = env ? atoi(env) : 0;
        if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
        if (n <= 0) n = 1;
    }
    if (n > MAX_THREADS) n = MAX_THREADS;
    blt_threads_shutdown();
    nthreads = n;
    start_generation = atomic_load(&generation);
    for (int i = 1; i < n; i++) {
        if (pthread_create(&workers[nworkers], NULL, worker_main, (void *)(intptr_t)i) != 0)
            break; /* fewer threads is still correct */
        nworkers++;
    }
    nthreads = nworkers + 1;
}

int blt_threads_count(void) { return nthreads; }

int blt_threads_in_parallel(void) { return in_parallel; }

void blt_threads_park(void) { atomic_store_explicit(&parked, 1, memory_order_relaxed); }

void blt_parallel_for(int64_t n, int64_t grain, blt_range_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t k = n / grain;
    if (k > nthreads) k = nthreads;
    if (k <= 1 || in_parallel || nworkers == 0) {
        fn(ctx, 0, n, 0);
        return;
    }
    job.fn = fn;
    job.ctx = ctx;
    job.n = n;
    job.chunks = (int)k;
    atomic_store(&pending, nworkers);
    atomic_store_explicit(&parked, 0, memory_order_relaxed);
    pthread_mutex_lock(&mu);
    atomic_fetch_add_explicit(&generation, 1, memory_order_release);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&mu);
    in_parallel = 1;
    run_chunk(0);
    in_parallel = 0;
    while (atomic_load_explicit(&pending, memory_order_acquire) > 0) _mm_pause();
}
