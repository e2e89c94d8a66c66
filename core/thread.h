/* One thread pool for everything: our kernels and the matrix products (OpenBLAS is
 * kept single-threaded and called on slices from here), so two pools never spin
 * against each other. Work is split statically into one contiguous chunk per
 * thread, so results do not depend on timing. */
#ifndef BLT_THREAD_H
#define BLT_THREAD_H
#include <stdint.h>

/* fn handles [begin, end); tid is 0..nthreads-1. */
typedef void (*blt_range_fn)(void *ctx, int64_t begin, int64_t end, int tid);

/* n <= 0: BLT_THREADS from the environment, else all cores. Safe to call again
 * to change the count. */
void blt_threads_init(int n);
int blt_threads_count(void);
/* Runs fn over [0, n) in at most nthreads chunks of at least grain items.
 * Called from inside a chunk, it runs serially. */
void blt_parallel_for(int64_t n, int64_t grain, blt_range_fn fn, void *ctx);
void blt_threads_shutdown(void);
/* 1 inside a chunk of blt_parallel_for (on any thread) */
int blt_threads_in_parallel(void);
/* The workers stop spinning and sleep until the next blt_parallel_for: for work
 * that brings its own threads (oneDNN's OpenMP team, core/dnnl.c). */
void blt_threads_park(void);

#endif
