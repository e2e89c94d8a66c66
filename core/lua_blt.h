/* Shared helpers of the Lua binding files (the only files that include lua.h). */
#ifndef BLT_LUA_BLT_H
#define BLT_LUA_BLT_H
#include <lua.h>
#include "rng.h"
#include "tensor.h"

int luaopen_blt_core(lua_State *L);

/* Raises a Lua error with the core's last message. */
int bltL_error(lua_State *L, const char *fn);
blt_tensor *bltL_check(lua_State *L, int idx);
blt_tensor *bltL_opt(lua_State *L, int idx);
int bltL_is_tensor(lua_State *L, int idx);
/* Pushes t as a Lua value, taking over one reference. */
void bltL_push(lua_State *L, blt_tensor *t);
/* Drops the tensor held by the Lua value at idx (later use raises an error). */
void bltL_close(lua_State *L, int idx);
/* lua_scope.c: records a new tensor value in the innermost blt.scope, if any. */
void bltL_scope_track(lua_State *L, int idx);
void bltL_open_scope(lua_State *L);
void bltL_open_bench(lua_State *L); /* lua_bench.c: reference timings */
int bltL_shape(lua_State *L, int idx, int64_t *shape, const char *fn, int allow_infer);
void bltL_check_opts(lua_State *L, int idx, const char *fn, const char *const *allowed);
blt_rng *bltL_check_gen(lua_State *L, int idx);
/* The one checked conversion from a Lua number to a C integer (sizes, offsets, counts,
 * options, int32 stores): the value at idx must be an integer-valued number (not 1.5,
 * NaN, inf, nor a string) within lo..hi, or it raises "blt.<fn>: <what> ...". */
int64_t bltL_int(lua_State *L, int idx, const char *fn, const char *what, int64_t lo, int64_t hi);
/* The same, def when idx is none or nil. */
int64_t bltL_optint(lua_State *L, int idx, const char *fn, const char *what, int64_t lo, int64_t hi, int64_t def);
/* A string going to C as a name or path: rejects embedded NUL bytes (C would cut it). */
const char *bltL_name(lua_State *L, int idx, const char *fn, const char *what);

/* Each adds its functions to the module table on top of the stack. */
void bltL_open_tensor(lua_State *L);
void bltL_open_patch(lua_State *L); /* lua_patch.c: patchers, hash n-grams */
void bltL_open_data(lua_State *L);  /* lua_data.c: byte corpora */
void bltL_open_h5(lua_State *L);    /* lua_h5.c: HDF5 checkpoints and metrics */
void bltL_open_nn(lua_State *L);    /* lua_nn.c: optimisers and fused layer steps */
void bltL_open_run(lua_State *L);   /* lua_run.c: folders, run locks, signals */

#endif
