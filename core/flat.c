#include "flat.h"
#include "mem.h"
#include <stdlib.h>
#include <string.h>

blt_status blt_tensor_rebind(blt_tensor *t, blt_tensor *base, int64_t offset)
{
    BLT_TRY(blt_check("flatten", "parameter", t, BLT_F32));
    if (!blt_tensor_is_contiguous(t) || t->node)
        return blt_fail(BLT_EINVAL, "flatten: parameters must be contiguous leaf tensors");
    if (offset < 0 || offset + t->numel > base->numel)
        return blt_fail(BLT_EINVAL, "flatten: slice [%lld, %lld) outside the flat buffer of %lld",
                        (long long)offset, (long long)(offset + t->numel), (long long)base->numel);
    float *dst = blt_f32(base) + offset;
    memcpy(dst, blt_f32(t), sizeof(float) * (size_t)t->numel);
    blt_storage *old = t->st;
    t->st = base->st;
    t->st->refs++;
    t->offset = base->offset + offset;
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) { t->stride[i] = s; s *= t->shape[i]; }
    blt_storage_release(old);
    return BLT_OK;
}

blt_status blt_tensor_bind_grad(blt_tensor *t, blt_tensor *gbase, int64_t offset)
{
    if (offset < 0 || offset + t->numel > gbase->numel)
        return blt_fail(BLT_EINVAL, "flatten: gradient slice outside the flat buffer");
    blt_tensor *g;
    BLT_TRY(blt_tensor_alias(&g, gbase));
    g->ndim = t->ndim;
    memcpy(g->shape, t->shape, sizeof g->shape);
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) { g->stride[i] = s; s *= t->shape[i]; }
    g->offset = gbase->offset + offset;
    g->numel = t->numel;
    memset(blt_f32(g), 0, sizeof(float) * (size_t)g->numel);
    blt_tensor_release(t->grad);
    t->grad = g;
    return BLT_OK;
}
