/* Shared helpers of the Lua binding files (the only files that include lua.h): argument
 * checks, error raising, the Tensor userdata. Every core/lua_*.c includes this; the module
 * openers that assemble blt.core are in lua_blt.h, which only lua_blt.c and main.c need. */
#ifndef BLT_LUA_BIND_H
#define BLT_LUA_BIND_H
#include <lua.h>
#include "rng.h"
#include "tensor.h"

/* lua_util.c holds the helpers below (up to bltL_dim), the Tensor value's layout
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

/* A dimension argument of a ndim-d tensor: 1-based, negative from the end; returns it 0-based. */
int bltL_dim(lua_State *L, int idx, int ndim, const char *fn);

/* lua_generator.c: the blt.Generator at idx (raises if it is not one). */
blt_rng *bltL_check_gen(lua_State *L, int idx);

/* lua_tensor_ops.c: adds the ops to the module table, the Tensor methods and its
 * metatable (the arithmetic metamethods), each given by its stack index. */
void bltL_add_tensor_ops(lua_State *L, int module, int methods, int meta);

#endif
