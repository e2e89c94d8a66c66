-- The blt module: tensors and ops from the C core, plus Lua conveniences.
-- Dimensions and positions passed as Lua numbers are 1-based (-1 is the last);
-- values inside int32 tensors (token ids, indices, positions) are 0-based.
local core = require "blt.core"

local blt = {}
for k, v in pairs(core) do blt[k] = v end

blt.version = "0.1.0"

-- blt.bmm is matmul on [B,M,K] x [B,K,N]; kept as a name researchers look for.
-- A wrapper, not the same function: Lua names a C function in argument errors by
-- the first key it finds it under, and blt.matmul's errors must not say 'blt.bmm'.
function blt.bmm(a, b, ta, tb)
    local y = core.matmul(a, b, ta, tb)
    return y
end

-- blt.flops(cfg, {mean_patch =, seq_len =}): FLOPs per byte (lua/blt/flops.lua),
-- loaded on first use so that "blt" stays light.
setmetatable(blt, {__index = function(_, key)
    if key == "flops" then return require("blt.flops").of end
end})

-- the C module itself (runtime helpers: now, rss, threads, nn_* and h5_* functions)
blt.core = core

return blt
