/* Step memory: a size-class pool of 64-byte-aligned blocks.
 * Activations and gradients are freed back here every step and handed out again
 * on the next, so the hot loop touches warm pages instead of fresh mappings
 * (first-touch cost 5-20x slower element-wise ops on these machines). */
#ifndef BLT_MEM_H
#define BLT_MEM_H
#include <stddef.h>

void *blt_mem_alloc(size_t nbytes);        /* NULL on failure; contents undefined */
void blt_mem_free(void *p, size_t nbytes); /* nbytes must be what was asked */
void blt_mem_trim(void);                   /* return all cached blocks to the OS */

typedef struct {
    size_t live;      /* bytes handed out and not yet returned */
    size_t peak;      /* highest live */
    size_t cached;    /* bytes held in the pool's free lists */
    size_t allocs;    /* total blt_mem_alloc calls */
    size_t os_allocs; /* of which went to the OS (pool misses) */
} blt_mem_stats;
blt_mem_stats blt_mem_get_stats(void);
void blt_mem_reset_peak(void);
/* Most bytes the pool keeps cached (default 2 GiB or BLT_POOL_MB). */
void blt_mem_set_cache_limit(size_t nbytes);

#endif
