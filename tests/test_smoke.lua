package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local blt = require "blt"

local x = blt.randn({2, 3}, 1)
T.is(#x:shape(), 2, "randn gives a 2-d tensor")
T.is(x:size(2), 3, "size along dim 2")
local y = blt.randn({2, 3}, 1)
T.ok(x:get(2, 3) == y:get(2, 3), "same seed, same numbers")
T.ok(tostring(x):find("float32 %[2,3%]"), "tostring shows dtype and shape")
T.done()
