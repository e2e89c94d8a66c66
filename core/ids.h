/* Token ids (docs/model.md), the one C definition: the special ids come first and
 * byte b is id b + BLT_ID_OFFSET. lua/blt/ids.lua is the one Lua definition; Lua
 * reads these values through core.token_ids() (lua_blt.c) and tests/test_ids.lua
 * checks that the two agree. */
#ifndef BLT_IDS_H
#define BLT_IDS_H

#define BLT_ID_PAD 0      /* padding, also "beginning of encoding" */
#define BLT_ID_BOS 1      /* begins every row */
#define BLT_ID_EOS 2      /* ends every document */
#define BLT_ID_RESERVED 3
#define BLT_ID_OFFSET 4   /* byte b is id b + BLT_ID_OFFSET */
#define BLT_ID_VOCAB 260  /* 256 bytes + BLT_ID_OFFSET: ids lie in 0..259 */

#endif
