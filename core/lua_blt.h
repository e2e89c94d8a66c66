/* The module openers: lua_blt.c calls each to assemble blt.core, main.c opens blt.core.
 * Binding files include lua_bind.h (their helpers), never this: it is the top layer. */
#ifndef BLT_LUA_BLT_H
#define BLT_LUA_BLT_H
#include <lua.h>

int luaopen_blt_core(lua_State *L);

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
