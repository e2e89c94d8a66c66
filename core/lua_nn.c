/* Lua binding: optimisers. */
#include "lua_blt.h"

void bltL_open_nn(lua_State *L) { (void)L; }
