/* Shared helpers of the Lua binding files (the only files that include lua.h). */
#ifndef BLT_LUA_BLT_H
#define BLT_LUA_BLT_H
#include <lua.h>
#include "rng.h"
#include "tensor.h"

int luaopen_blt_core(lua_State *L);

/* lua_util.c holds the helpers below (up to bltL_name), the Tensor value's layout
 * and the blt.scope bookkeeping, so that no binding file needs another. */

/* A Tensor's Lua value: a userdata holding one reference (NULL once closed). */
#define BLTL_TENSOR_MT "blt.Tensor"
typedef struct { blt_tensor *t; } bltL_tensor_ud;
/* the largest size accepted for one dimension; blt_tensor_new bounds the product (2^40) */
#define BLTL_MAX_SIZE ((int64_t)1 << 40)
/* registry key of blt.scope's open scopes: an array of lists, one per open scope */
#define BLTL_SCOPES "blt.scopes"

/* Raises a Lua error with the core's last message. */
int bltL_error(lua_State *L, const char *fn);
blt_tensor *bltL_check(lua_State *L, int idx);
blt_tensor *bltL_opt(lua_State *L, int idx);
int bltL_is_tensor(lua_State *L, int idx);
/* Pushes t as a Lua value, taking over one reference. */
void bltL_push(lua_State *L, blt_tensor *t);
/* Drops the tensor held by the Lua value at idx (later use raises an error). */
void bltL_close(lua_State *L, int idx);
/* Records a new tensor value in the innermost blt.scope, if any. */
void bltL_scope_track(lua_State *L, int idx);
int bltL_shape(lua_State *L, int idx, int64_t *shape, const char *fn, int allow_infer);
void bltL_check_opts(lua_State *L, int idx, const char *fn, const char *const *allowed);
/* The one checked conversion from a Lua number to a C integer (sizes, offsets, counts,
 * options, int32 stores): the value at idx must be an integer-valued number (not 1.5,
 * NaN, inf, nor a string) within lo..hi, or it raises "blt.<fn>: <what> ...". */
int64_t bltL_int(lua_State *L, int idx, const char *fn, const char *what, int64_t lo, int64_t hi);
/* The same, def when idx is none or nil. */
int64_t bltL_optint(lua_State *L, int idx, const char *fn, const char *what, int64_t lo, int64_t hi, int64_t def);
/* A string going to C as a name or path: rejects embedded NUL bytes (C would cut it). */
const char *bltL_name(lua_State *L, int idx, const char *fn, const char *what);

/* lua_generator.c: the blt.Generator at idx (raises if it is not one). */
blt_rng *bltL_check_gen(lua_State *L, int idx);

/* Each adds its functions to the module table on top of the stack. */
void bltL_open_tensor(lua_State *L);    /* lua_tensor.c: blt.Tensor and its ops */
void bltL_open_generator(lua_State *L); /* lua_generator.c: blt.Generator, randn, rand */
void bltL_open_scope(lua_State *L);     /* lua_scope.c: blt.scope */
void bltL_open_bench(lua_State *L);     /* lua_bench.c: reference timings */
void bltL_open_blas(lua_State *L);      /* lua_blas.c: products by library, bf16 */
void bltL_open_patch(lua_State *L);     /* lua_patch.c: patchers, hash n-grams */
void bltL_open_data(lua_State *L);      /* lua_data.c: byte corpora */
void bltL_open_h5(lua_State *L);        /* lua_h5.c: HDF5 checkpoints and metrics */
void bltL_open_nn(lua_State *L);        /* lua_nn.c: optimisers and fused layer steps */
void bltL_open_bpe(lua_State *L);       /* lua_bpe.c: byte-level BPE tokenizers */
void bltL_open_run(lua_State *L);       /* lua_run.c: folders, run locks, signals */
void bltL_open_dist(lua_State *L);      /* lua_dist.c: data-parallel processes (MPI) */
void bltL_open_proc(lua_State *L);      /* lua_proc.c: child processes and files without a shell */

#endif
