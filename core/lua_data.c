/* Lua binding: byte corpora. */
#include "lua_blt.h"

void bltL_open_data(lua_State *L) { (void)L; }
