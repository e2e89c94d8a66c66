package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- Backward writes the first contribution to a gradient instead of zeroing it and
-- adding (core/tensor.c, give_grad: the ops that declare first_write). Generated over
-- every op that declares it, for each of its inputs, in four situations:
--   fresh      the input's gradient starts in this op's backward: written, and equal
--              (same bits) to the same backward adding into zeros (x:zero_grad(), then
--              backward again);
--   shared     the input also feeds a second op (x * W2): its gradient is the sum of
--              both contributions, whichever came first: the same bits as computed here
--              (a + b = b + a) where the op adds its contribution in one step; where it
--              adds m partial terms one by one (a bias over m rows, a broadcast operand,
--              rmsnorm's gain over m chunks, cross-entropy's p and -1 at the target:
--              m = 2), the order differs, within 2 m u (|c| + |W2| + max|c|) (u = 2^-24,
--              Higham's bound for reordered sums, the partial terms bounded by the
--              largest gradient element max|c|);
--   twice      the same tensor as both inputs of a binary op: zeroed and added (the
--              engine cannot know the order of the two contributions);
--   poisoned   the whole file runs with BLT_POISON_FRESH=1, which fills every fresh
--              gradient with NaN before its backward: an element left unwritten shows.
local T = require "tap"
local blt = require "blt"

if os.getenv("BLT_POISON_FRESH") ~= "1" then -- run again with the poison on
    local U = require "testutil"
    local bin = os.getenv("BLT_BIN") or "./blt"
    local rc, out = U.sh("BLT_POISON_FRESH=1 " .. U.q(bin) .. " " .. U.q(arg[0]))
    io.write(out)
    os.exit(rc == 0 and 0 or 1)
end

local seed = 500
local function nx() seed = seed + 1; return seed end
local function leaf(shape) return blt.randn(shape, nx()):set_requires_grad() end
local function ints(t) return blt.tensor(t, "int32") end

-- op name -> builder returning f(inputs...) -> tensor and the list of inputs
local ops = {
    {"linear x, w", function() return function(x, w) return blt.linear(x, w) end, {leaf {2, 3, 5}, leaf {4, 5}} end},
    {"linear with bias", function() return function(x, w, b) return blt.linear(x, w, b) end, {leaf {3, 5}, leaf {4, 5}, leaf {4}} end,
     {[3] = 3}},
    {"add", function() return blt.add, {leaf {3, 7}, leaf {3, 7}} end},
    {"sub", function() return blt.sub, {leaf {3, 7}, leaf {3, 7}} end},
    {"mul", function() return blt.mul, {leaf {3, 7}, leaf {3, 7}} end},
    {"div", function() return blt.div, {leaf {3, 7}, blt.rand({3, 7}, nx()):add(blt.full({3, 7}, 1)):detach():set_requires_grad()} end},
    {"add broadcast (no first write)", function() return blt.add, {leaf {3, 7}, leaf {7}} end, {[2] = 3}},
    {"affine", function() return function(x) return blt.scale(x, 2.5, 0.5) end, {leaf {40}} end},
    {"rmsnorm", function() return function(x, g) return blt.rmsnorm(x, g) end, {leaf {6, 9}, leaf {9}} end, {[2] = 6}},
    {"rope", function() return function(x) return blt.rope(x, 2) end, {leaf {2, 5, 8}} end},
    {"reshape", function() return function(x) return x:reshape({6, 2}) end, {leaf {3, 4}} end},
    {"transpose", function() return function(x) return blt.transpose(x, 1, 2):contiguous() end, {leaf {3, 4}} end},
    {"contiguous of a view", function() return function(x) return x:t():contiguous() end, {leaf {4, 3}} end},
    {"cross_entropy", function()
        return function(x) return blt.cross_entropy(x, ints {0, 3, 2, 1}, {ignore_index = 2}) end, {leaf {4, 5}}
    end, {[1] = 2}},
}
for _, u in ipairs {"exp", "log", "tanh", "silu", "gelu", "sigmoid", "relu", "sqrt"} do
    ops[#ops + 1] = {u, function()
        local x = (u == "log" or u == "sqrt") and blt.rand({300}, nx()):add(blt.full({300}, 0.5)):detach():set_requires_grad()
                  or leaf {300}
        return blt[u], {x}
    end}
end

-- sum(f(inputs) * W) (and + sum(x_k * W2) when shared = k); returns each input's gradient as a table
local function grads(f, inputs, W, shared, W2)
    for _, x in ipairs(inputs) do x:zero_grad() end
    local y = f(table.unpack(inputs))
    local loss = blt.sum(blt.mul(y, W))
    if shared then loss = loss + blt.sum(blt.mul(inputs[shared], W2)) end
    loss:backward()
    local out = {}
    for k, x in ipairs(inputs) do out[k] = x.grad and x.grad:totable() end
    return out
end

local function flat(t) return T.flatten(t) end
-- tol(i): the allowed difference at element i (nil: none, the same bits)
local function equal(a, b, tol)
    local fa, fb = flat(a), flat(b)
    if #fa ~= #fb then return false, "lengths differ" end
    for i = 1, #fa do
        local t = tol and tol(i) or 0
        if not (math.abs(fa[i] - fb[i]) <= t) then
            return false, ("element %d: %.9g vs %.9g (allowed %.3g)"):format(i, fa[i], fb[i], t)
        end
    end
    return true
end
local function finite(a)
    for _, v in ipairs(flat(a)) do if v ~= v or v == math.huge or v == -math.huge then return false end end
    return true
end

local cases = 0
for _, op in ipairs(ops) do
    local name, build, multi = op[1], op[2], op[3] or {}
    local f, inputs = build()
    local W = blt.randn(f(table.unpack(inputs)):shape(), nx())
    -- fresh: the first backward creates every gradient; the second adds into zeros
    local first = grads(f, inputs, W)
    local again = grads(f, inputs, W)
    for k = 1, #inputs do
        local same, why = equal(first[k], again[k])
        T.ok(same and finite(first[k]), ("%s, input %d: a fresh gradient is written whole (no NaN), with the bits of adding into zeros"):format(name, k), why)
        cases = cases + 1
    end
    -- shared: a second consumer of input k, on fresh gradients (new leaves, same values)
    for k = 1, #inputs do
        local fresh_inputs = {}
        for i, x in ipairs(inputs) do fresh_inputs[i] = x:detach():clone():set_requires_grad() end
        local W2 = blt.randn(inputs[k]:shape(), nx())
        local got = grads(f, fresh_inputs, W, k, W2)
        local want = blt.add(blt.tensor(first[k]), W2):totable()
        local tol
        if multi[k] then
            local c, w2, big = flat(first[k]), flat(W2:totable()), 0
            for _, v in ipairs(c) do big = math.max(big, math.abs(v)) end
            tol = function(i) return 2 * multi[k] * 2 ^ -24 * (math.abs(c[i]) + math.abs(w2[i]) + big) end
        end
        local same, why = equal(got[k], want, tol)
        T.ok(same, ("%s, input %d also feeds x * W2: the sum of both contributions"):format(name, k), why)
        cases = cases + 1
    end
end

-- twice: one tensor as both inputs of a binary op
for _, c in ipairs {{"add", function(g, x) return blt.mul(g, blt.full(x:shape(), 2)) end},
                    {"sub", function(g, x) return blt.zeros(x:shape()) end},
                    {"mul", function(g, x) return blt.mul(blt.mul(g, x), blt.full(x:shape(), 2)) end}} do
    local x = leaf {5, 3}
    local W = blt.randn({5, 3}, nx())
    blt.sum(blt.mul(blt[c[1]](x, x), W)):backward()
    local same, why = equal(x.grad:totable(), c[2](W, x:detach()):totable())
    T.ok(same, ("%s(x, x): the gradient adds both contributions (zeroed first, not written twice)"):format(c[1]), why)
    cases = cases + 1
end

T.ok(cases >= 60, ("%d generated cases over %d ops"):format(cases, #ops))
T.done()
