/* Optimisers over flat buffers: all parameters live in one contiguous buffer (each
 * parameter tensor a view of a slice), and so do their gradients and the moments.
 * A step is one pass over the buffer; the state is four flat arrays and a count,
 * which a checkpoint saves as named slices. */
#ifndef BLT_OPTIM_H
#define BLT_OPTIM_H
#include <stdint.h>
#include "status.h"

typedef struct {
    int64_t off, len;
    int decay; /* weight decay applies to this slice */
} blt_slice;

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} blt_adamw_hp;

/* One AdamW step (decoupled weight decay, bias-corrected moments); step is the
 * count after this update (1 for the first). Both steps return nonzero when an
 * updated parameter or moment is not finite (the update is done all the same: the
 * caller must not keep or save such a state). */
int blt_adamw_step(float *param, const float *grad, float *m, float *v, const blt_slice *sl, int nsl,
                    int64_t step, blt_adamw_hp hp);
/* SGD with momentum (heavy ball, as PyTorch) and decoupled weight decay. */
int blt_sgd_step(float *param, const float *grad, float *buf, const blt_slice *sl, int nsl, float lr,
                 float momentum, float weight_decay, int64_t step);
/* L2 norm of x[0..n), summed in fixed chunks in double: the same for any thread count. */
double blt_l2norm(const float *x, int64_t n);
void blt_scale_inplace(float *x, int64_t n, float s);

#endif
