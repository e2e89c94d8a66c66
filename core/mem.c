#include "mem.h"
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

/* Size classes: 4 per power of two above 256 bytes, so at most 25 % is wasted. */
#define NCLASS 256

typedef struct block { struct block *next; } block;

static block *freelist[NCLASS];
static blt_mem_stats stats;
#ifdef BLT_NO_POOL
static size_t cache_limit = 0; /* sanitizer builds: every free is real, so misuse is caught */
#else
static size_t cache_limit = (size_t)2 << 30;
#endif
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int size_class(size_t n, size_t *rounded)
{
    if (n <= 256) { *rounded = 256; return 0; }
    int p = 63 - __builtin_clzll((unsigned long long)(n - 1)); /* 2^p < n <= 2^(p+1) */
    size_t step = (size_t)1 << (p - 2);                        /* r is 5..8 steps */
    size_t r = (n + step - 1) / step * step;
    *rounded = r;
    int cls = 1 + (p - 8) * 4 + (int)(r / step - 5);
    return cls < NCLASS ? cls : -1;
}

void *blt_mem_alloc(size_t nbytes)
{
    size_t r;
    int c = size_class(nbytes ? nbytes : 1, &r);
    void *p = NULL;
    pthread_mutex_lock(&lock);
    if (c >= 0 && freelist[c]) {
        p = freelist[c];
        freelist[c] = freelist[c]->next;
        stats.cached -= r;
    }
    pthread_mutex_unlock(&lock);
    int fresh = p == NULL;
    if (fresh && !(p = aligned_alloc(64, r))) return NULL; /* outside the lock: it may touch the OS */
    pthread_mutex_lock(&lock);
    stats.allocs++;
    stats.os_allocs += fresh;
    stats.live += r;
    if (stats.live > stats.peak) stats.peak = stats.live;
    pthread_mutex_unlock(&lock);
    return p;
}

void blt_mem_free(void *p, size_t nbytes)
{
    if (!p) return;
    size_t r;
    int c = size_class(nbytes ? nbytes : 1, &r);
    pthread_mutex_lock(&lock);
    stats.live -= r;
    if (c >= 0 && stats.cached + r <= cache_limit) {
        block *b = p;
        b->next = freelist[c];
        freelist[c] = b;
        stats.cached += r;
        p = NULL;
    }
    pthread_mutex_unlock(&lock);
    free(p);
}

void blt_mem_trim(void)
{
    pthread_mutex_lock(&lock);
    for (int c = 0; c < NCLASS; c++) {
        while (freelist[c]) {
            block *b = freelist[c];
            freelist[c] = b->next;
            free(b);
        }
    }
    stats.cached = 0;
    pthread_mutex_unlock(&lock);
}

blt_mem_stats blt_mem_get_stats(void)
{
    pthread_mutex_lock(&lock);
    blt_mem_stats s = stats;
    pthread_mutex_unlock(&lock);
    return s;
}

void blt_mem_reset_peak(void)
{
    pthread_mutex_lock(&lock);
    stats.peak = stats.live;
    pthread_mutex_unlock(&lock);
}

void blt_mem_set_cache_limit(size_t nbytes)
{
    pthread_mutex_lock(&lock);
    cache_limit = nbytes;
    pthread_mutex_unlock(&lock);
}
