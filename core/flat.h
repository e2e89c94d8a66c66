/* Moving parameters into one flat buffer (see optim.h): each parameter tensor
 * becomes a view of a slice of the buffer, and its .grad a view of the matching
 * slice of a flat gradient buffer. */
#ifndef BLT_FLAT_H
#define BLT_FLAT_H
#include "tensor.h"

/* t (a contiguous float32 leaf) is copied to base[offset..] and rebound to it. */
blt_status blt_tensor_rebind(blt_tensor *t, blt_tensor *base, int64_t offset);
/* t->grad becomes a view of gbase[offset..] (zeroed). */
blt_status blt_tensor_bind_grad(blt_tensor *t, blt_tensor *gbase, int64_t offset);

#endif
