package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local blt = require "blt"
local core = blt.core

-- Regression tests for faults a hostile test found: overflowed sizes, numeric edge
-- cases, autograd guards, documented calls that failed, and a corpus file changing
-- under a run. Each case failed (or crashed) before its fix.

local function ints(t) return blt.tensor(t, "int32") end
local ninf, inf, nan = -math.huge, math.huge, 0 / 0

-- ---- 1. sizes, offsets and counts from Lua numbers are checked ----
T.raises(function() blt.sum(blt.zeros {4}:narrow(1, 2, math.maxinteger)) end,
    "blt%.narrow: start 2, length 9223372036854775807 out of range for dimension 1 of shape %[4%]",
    "narrow with a length that overflows start + length")
T.raises(function() blt.zeros {4}:narrow(1, math.maxinteger, 1) end, "blt%.narrow: start 9223372036854775807, length 1 out of range",
    "narrow with a huge start")
T.raises(function() blt.zeros {4}:narrow(1, 1.5, 1) end, "blt%.narrow: start must be an integer, got 1%.5", "narrow start 1.5")
T.raises(function() blt.zeros {4}:set(1, math.mininteger) end, "blt%.set: index %-9223372036854775808 out of range 1%.%.4",
    "set with the smallest integer index")
T.raises(function() blt.zeros {4}:get(2 ^ 63) end, "blt%.get: index must be an integer, got 9%.22", "get with 2^63")
T.raises(function() blt.zeros {4}:get(nan) end, "blt%.get: index must be an integer, got nan", "get with NaN")
T.raises(function() blt.zeros {4}:sum(inf) end, "blt%.sum: dimension must be an integer, got inf", "sum over dimension inf")
T.raises(function() blt.zeros {2 ^ 41} end, "blt%.zeros: shape entry 1 = 2199023255552 out of range %(at most 1099511627776%)", "a size above 2^40")
T.raises(function() blt.zeros {2.5} end, "blt%.zeros: shape entry 1 must be an integer, got 2%.5", "a fractional size")
T.raises(function() blt.zeros {4}:reshape {2 ^ 40, 2 ^ 40, 2 ^ 40} end, "blt%.reshape: cannot view %[4%] %(4 elements%) as",
    "reshape to sizes whose product overflows int64")
T.is(blt.zeros {0}:reshape {5, 0}:numel(), 0, "reshape of a 0-size tensor to {5, 0}")
T.raises(function() blt.zeros {0}:reshape {2 ^ 40, 0}:totable() end, "blt%.totable: tensor of shape %[1099511627776,0%] has no elements but would need",
    "totable of a 0-size tensor with a huge outer dimension (was 2^40 empty tables)")
T.is(#blt.zeros {3, 0}:totable(), 3, "totable of a small 0-size tensor")
T.raises(function() blt.zeros {4}:narrow(-1, 3, math.maxinteger - 1) end, "blt%.narrow: start 3, length 9223372036854775806 out of range",
    "narrow near maxinteger from the end")
T.raises(function() blt.rope(blt.zeros {1, 2, 4}, 2 ^ 32 + 1) end, "blt%.rope: heads = 4294967297 out of range 1%.%.2147483647",
    "rope heads above 2^32 (was truncated to 1)")
local q = blt.zeros {1, 2, 4}
T.raises(function() blt.attention(q, q, q, {heads = 2 ^ 32 + 2}) end, "blt%.attention: option heads = 4294967298 out of range",
    "attention heads above 2^32 (was truncated to 2)")
T.raises(function() blt.attention(q, q, q, {heads = 1.5}) end, "blt%.attention: option heads must be an integer, got 1%.5",
    "attention heads 1.5")
T.raises(function() blt.cross_entropy(blt.zeros {2, 3}, ints {0, 1}, {ignore_index = 0.5}) end,
    "blt%.cross_entropy: option ignore_index must be an integer, got 0%.5", "cross_entropy ignore_index 0.5")
T.raises(function() blt.cross_entropy(blt.zeros {2, 3}, ints {0, 1}, {ignore_index = 2 ^ 40}) end,
    "blt%.cross_entropy: option ignore_index = 1099511627776 out of range", "cross_entropy ignore_index 2^40")
local i32 = blt.zeros({3}, "int32")
T.raises(function() i32:set(2 ^ 40, 1) end, "blt%.set: int32 value = 1099511627776 out of range", "int32 set of 2^40 (wrapped)")
T.raises(function() i32:set(1.5, 1) end, "blt%.set: int32 value must be an integer, got 1%.5", "int32 set of 1.5 (truncated)")
T.raises(function() i32:fill(-2 ^ 31 - 1) end, "blt%.fill: int32 value = %-2147483649 out of range", "int32 fill below int32")
T.raises(function() i32:fill(nan) end, "blt%.fill: int32 value must be an integer, got nan", "int32 fill of NaN")
T.raises(function() blt.full({2}, 2 ^ 31, "int32") end, "blt%.full: int32 value = 2147483648 out of range", "int32 full of 2^31")
T.raises(function() blt.full({2}, 0.5, "int32") end, "blt%.full: int32 value must be an integer, got 0%.5", "int32 full of 0.5")
T.raises(function() blt.tensor(2 ^ 40, "int32") end, "blt%.tensor: int32 value = 1099511627776 out of range", "int32 scalar 2^40")
T.raises(function() blt.tensor {nan}:int() end, "blt%.int: element 1 %(%-?nan%) does not fit int32", "int() of NaN")
T.raises(function() blt.tensor {3e9}:int() end, "blt%.int: element 1 %(3000000000", "int() of 3e9")
T.is(i32:set(-2 ^ 31, 2):get(2), -2147483648, "int32 set of -2^31 still works")
T.is(blt.full({1}, 7.0, "int32"):get(1), 7, "int32 full of 7.0 (an integer-valued float) works")
T.raises(function() core.data_ids(nil, 1, 1) end, "data_ids", "data_ids without a corpus names the function")
T.raises(function() core.hash_buckets({1, 2, 3}, {1}, 2 ^ 40) end, "blt%.hash_buckets: bucket count = 1099511627776 out of range",
    "hash_buckets with 2^40 buckets")
T.raises(function() core.patch_decoder_ids({1, 2}, 2 ^ 40) end, "blt%.patch_decoder_ids: N = 1099511627776 out of range",
    "patch_decoder_ids with N = 2^40")
T.raises(function() core.patch_new {scheme = "fixed", size = 2 ^ 33} end, "blt%.patch_new: size = 8589934592 out of range",
    "patch size above 2^32")
T.raises(function() core.nn_adamw_step(blt.zeros {2}, blt.zeros {2}, blt.zeros {2}, blt.zeros {2},
    {{off = 0, len = math.maxinteger}}, 1, 0.1, 0.9, 0.9, 1e-8, 0) end, "blt%.optim: slice length = 9223372036854775807 out of range",
    "optimiser slice longer than its buffer")
T.raises(function() core.nn_adamw_step(blt.zeros {2}, blt.zeros {2}, blt.zeros {2}, blt.zeros {2},
    {{off = 0, len = 2}}, 1.5, 0.1, 0.9, 0.9, 1e-8, 0) end, "step %(counts from 1%) must be an integer, got 1%.5", "optimiser step 1.5")

-- ---- 2. numeric faults ----
do
    local a, b, c, d = blt.scope(function() return 0 / 0, nil, 3, blt.ones {1} end)
    T.ok(a ~= a and b == nil and c == 3 and blt.is_tensor(d) and d:item() == 1, "blt.scope returns NaN, a nil hole, numbers and tensors")
    local n = select("#", blt.scope(function() return nil, nil end))
    T.is(n, 2, "blt.scope keeps trailing nils")
    local e = blt.exp(blt.tensor {ninf, inf, nan, 0})
    local v = e:totable()
    T.ok(v[1] == 0 and v[2] == inf and v[3] ~= v[3] and v[4] == 1, "exp of -inf, inf, NaN, 0")
    local x = blt.tensor {{ninf, ninf, ninf}, {1, 2, 3}, {nan, 1, 2}}
    local sm, lsm = blt.softmax(x):totable(), blt.log_softmax(x):totable()
    T.ok(sm[1][1] == 0 and sm[1][2] == 0 and sm[1][3] == 0, "softmax of a row of all -inf is all 0 (documented)")
    T.ok(lsm[1][1] == ninf and lsm[1][3] == ninf, "log_softmax of a row of all -inf is all -inf (documented)")
    T.near(sm[2][3], 0.66524, 1e-4, "a finite row next to it is unaffected")
    T.ok(sm[3][2] ~= sm[3][2] or true, "a NaN row does not crash")
    -- vexp itself on -inf / NaN shifts: softmax-like ops over rows with NaN / inf
    local ent = blt.softmax_entropy(blt.tensor {{ninf, ninf}, {0, 0}}):totable()
    T.ok(ent[1] == 0 and math.abs(ent[2] - math.log(2)) < 1e-6, "softmax_entropy of an all -inf row is 0")
    local ce = blt.cross_entropy(blt.tensor {{ninf, ninf}}, ints {0}):item()
    T.is(ce, inf, "cross_entropy of an all -inf row is +inf")
    -- their gradients on such rows are 0, not NaN
    local leaf = blt.tensor {{ninf, ninf, ninf}, {1, 2, 3}}:set_requires_grad()
    local loss = blt.sum(blt.mul(blt.softmax(leaf), blt.tensor {{1, 2, 3}, {1, 2, 3}}))
        + blt.sum(blt.softmax_entropy(leaf)) + blt.cross_entropy(blt.narrow(leaf, 1, 1, 1), ints {1})
    loss:backward()
    local g = leaf.grad:totable()
    T.ok(g[1][1] == 0 and g[1][2] == 0 and g[1][3] == 0 and g[2][1] == g[2][1], "their gradient on an all -inf row is 0")
    local l2 = blt.tensor {{ninf, ninf}}:set_requires_grad()
    blt.sum(blt.mul(blt.log_softmax(l2), blt.tensor {{0, 0}})):backward()
    T.ok(l2.grad:get(1, 1) == 0, "log_softmax gradient on an all -inf row is 0")
    -- attention: a query that sees no key (all masked) gets a zero row
    local qq = blt.randn({1, 2, 4}, 5)
    local o = blt.attention(qq, qq, qq, {heads = 1, q_seg = ints {{0, 1}}, k_seg = ints {{2, 1}}})
    T.ok(o:get(1, 1, 1) == 0 and o:get(1, 1, 4) == 0, "attention row that sees no key is zero")
end

-- ---- 3. autograd guards ----
do
    -- 200,000 chained ops, then collecting them: the release is iterative
    local x = blt.ones {1}:set_requires_grad()
    local y = x
    for _ = 1, 200000 do y = y + 1 end
    y = nil
    collectgarbage()
    collectgarbage()
    T.ok(true, "releasing a graph 200,000 ops deep does not overflow the stack")
    -- a chain backward also still works
    local z = x
    for _ = 1, 2000 do z = z * 1 end
    z:sum():backward()
    T.is(x.grad:item(), 1, "backward through a 2000-op chain")

    local function saved_then(change, name, pattern)
        local w = blt.randn({3, 3}, 1):set_requires_grad()
        local a = blt.randn({2, 3}, 2)
        local out = blt.sum(blt.matmul(a, w))
        change(a, w)
        T.raises(function() out:backward() end, pattern or "backward: a tensor of shape %[2,3%] that 'matmul' saved for backward was changed in place", name)
    end
    saved_then(function(a) a:fill(0) end, "fill of a saved tensor, then backward")
    saved_then(function(a) a:copy(blt.zeros {2, 3}) end, "copy into a saved tensor, then backward")
    saved_then(function(a) a:set(5, 1, 1) end, "set of a saved tensor, then backward")
    saved_then(function(a) a:narrow(1, 1, 1):fill(1) end, "fill of a view of a saved tensor, then backward")
    -- untouched: works
    local w = blt.randn({3, 3}, 1):set_requires_grad()
    local a = blt.randn({2, 3}, 2)
    local out = blt.sum(blt.matmul(a, w))
    a:clone():fill(0)
    out:backward()
    T.ok(w.grad ~= nil, "a clone changed in place does not trip the guard")

    -- reading a buffer (its norm) is not a change
    local w2 = blt.randn({3, 3}, 1):set_requires_grad()
    local out2 = blt.sum(blt.matmul(blt.randn({2, 3}, 2), w2))
    core.nn_l2norm(w2)
    out2:backward()
    T.ok(w2.grad ~= nil, "nn_l2norm of a saved tensor does not trip the guard")
    -- zero_grad after the gradient's storage was released: nothing to zero, no crash
    local g = w2.grad
    g:release()
    w2:zero_grad()
    T.ok(true, "zero_grad with a released gradient does not crash")

    local nn, optim = require "blt.nn", require "blt.optim"
    local m = nn.Linear {in_dim = 3, out_dim = 2, seed = 1}
    local opt1 = optim.AdamW(m, {lr = 0.1})
    T.raises(function() optim.SGD(m) end, "blt%.optim%.SGD: parameter '.-' already belongs to an earlier AdamW",
        "a second optimiser on the same parameters is an error")
    -- the first keeps working
    local before = m:parameter_list()[1].tensor:clone()
    local loss = blt.sum(m:forward(blt.ones {1, 3}))
    loss:backward()
    opt1:step()
    T.ok(blt.sum(blt.sub(before, m:parameter_list()[1].tensor)):item() ~= 0, "and the first optimiser still updates them")
    -- an optimiser step after the forward: backward refuses (the weights changed)
    local loss2 = blt.sum(m:forward(blt.ones {1, 3}))
    opt1:step()
    T.raises(function() loss2:backward() end, "changed in place", "backward after an optimiser step changed a saved weight")
end

-- ---- 4. documented calls ----
do
    local c = blt.concat({blt.ones {2}, blt.zeros {3}})
    T.is(c:numel(), 5, "concat with the default dim")
    local t = blt.tensor {1, 2, 3, 4, 5}
    t:narrow(1, 2, 4):copy(t:narrow(1, 1, 4))
    local function str(v) return table.concat(T.flatten(v:totable()), ","):gsub("%.0", "") end
    T.is(str(t), "1,1,2,3,4", "overlapping copy forward")
    t = blt.tensor {1, 2, 3, 4, 5}
    t:narrow(1, 1, 4):copy(t:narrow(1, 2, 4))
    T.is(str(t), "2,3,4,5,5", "overlapping copy backward")
    local m = blt.tensor {{1, 2}, {3, 4}}
    m:copy(m:t())
    T.is(str(m), "1,3,2,4", "copy of a tensor onto its own transpose")
    T.raises(function() core.data_open("a\0b") end, "blt%.data%.open: path contains a NUL byte", "NUL in a corpus path")
    T.raises(function() core.data_open({"x", "a\0b"}) end, "blt%.data%.open: path contains a NUL byte", "NUL in a corpus path list")
    T.raises(function() core.hash_file("/tmp\0x") end, "blt%.hash_file: path contains a NUL byte", "NUL in hash_file's path")
    T.raises(function() core.patch_new {scheme = "fixed\0x", size = 2} end, "blt%.patch_new: scheme contains a NUL byte", "NUL in a patch scheme")
    T.raises(function() blt.zeros({2}, "int32\0junk") end, "blt%.zeros: dtype contains a NUL byte", "NUL in a dtype name")
    T.raises(function() blt.cross_entropy(blt.zeros {1, 2}, ints {0}, {reduction = "sum\0x"}) end,
        "blt%.cross_entropy: option reduction contains a NUL byte", "NUL in a reduction name")
    T.raises(function() blt.attention(blt.zeros {1, 2, 4}, blt.zeros {1, 2, 4}, blt.zeros {1, 2, 4}, {heads = 1, ["causal\0"] = true}) end,
        "blt%.attention: option name contains a NUL byte", "NUL in an option name (was silently ignored)")
    T.raises(function() blt.zeros {1}["requires_grad\0x"] = true end, "blt%.Tensor: field name contains a NUL byte",
        "NUL in a field name set")
    T.is(blt.zeros {1}["grad\0x"], nil, "a field name with NUL is not 'grad'")
    local q = blt.zeros {1, 2, 4}
    T.raises(function() blt.attention(q, q, q) end, "blt%.attention: argument 4 must be an option table %(with heads%), got no value",
        "attention without options")
    T.raises(function() blt.attention(q, q, q, {heads = 1, k_seg = "x"}) end, "blt%.attention: option k_seg must be a tensor, got string",
        "attention with a string k_seg (was 'bad argument #-1')")
    T.raises(function() blt.rope(q, 1, {positions = 3}) end, "blt%.rope: option positions must be a tensor, got number",
        "rope with a number for positions")
end

-- ---- 5. the corpus file changing under a run ----
do
    local data = require "blt.data"
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(string.rep("the quick brown fox ", 50000))
    f:close()
    local c = data.open(path, {val_fraction = 0.1})
    local s = c:sampler {batch = 4, seq_len = 64, seed = 1}
    T.is(s:next():size(1), 4, "sampling before the file changes")
    assert(io.open(path, "wb")):close() -- truncate it while mapped
    T.raises(function() for _ = 1, 20 do s:next() end end,
        "blt%.data%.sample: corpus file '.-' changed under the run %(mapped 1000000 bytes, now 0%)", "sampling a truncated corpus: a Lua error, not SIGBUS")
    T.raises(function() c:ids(900000, 100) end, "blt%.data%.ids: corpus file .- changed under the run", "ids of a truncated corpus")
    T.raises(function() for _ in c:val_windows{batch = 2, seq_len = 64} do end end, "changed under the run", "validation windows of a truncated corpus")
    c:close()
    os.remove(path)
end

T.done()
