/* Lua binding: patchers and hash n-grams. */
#include "lua_blt.h"

void bltL_open_patch(lua_State *L) { (void)L; }
