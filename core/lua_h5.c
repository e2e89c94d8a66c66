/* Lua binding: HDF5 checkpoints and metrics. */
#include "lua_blt.h"

void bltL_open_h5(lua_State *L) { (void)L; }
