package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local check, unflat = require("gradcheck").check, require("gradcheck").unflat
local blt = require "blt"

-- Finite-difference check of every op's backward. For an op f and fixed random
-- weights W shaped like its output, the loss is L = sum(f(inputs) * W), summed in
-- Lua doubles so that only the op itself runs in float32. The analytic gradient
-- comes from :backward(); the numeric one from central differences
-- (L(x+h) - L(x-h)) / (2h), with the step read back after rounding to float32.
-- Error per op: max |analytic - numeric| over all checked elements, divided by the
-- largest |gradient| of that input (so one wrong element anywhere fails).

local H = 1e-2      -- step
local TOL = 2e-3    -- a wrong backward is off by O(1); float32 FD noise here stays below 5e-4
local MAXCHK = 300  -- elements checked per input (all of them when fewer)



local function numel(shape)
    local n = 1
    for _, s in ipairs(shape) do n = n * s end
    return n
end

-- Sets each element of t (a leaf) to fn(old value, flat index).
local function map_(t, fn)
    local shape = t:shape()
    for k = 0, numel(shape) - 1 do
        local idx = unflat(shape, k)
        t:set(fn(t:get(table.unpack(idx)), k), table.unpack(idx))
    end
    return t
end

local seed = 1000
local function nextseed() seed = seed + 1; return seed end

-- a float leaf requiring grad; kind: nil (normal), "pos" (0.5..2), "away" (|x| >= 0.1)
local function leaf(shape, kind)
    local t
    if kind == "pos" then
        t = map_(blt.rand(shape, nextseed()), function(v) return 0.5 + 1.5 * v end)
    elseif kind == "away" then
        t = map_(blt.randn(shape, nextseed()), function(v)
            if math.abs(v) < 0.1 then return v < 0 and v - 0.1 or v + 0.1 end
            return v
        end)
    elseif kind == "distinct" then -- a random permutation of multiples of 0.05: no near-ties for max
        local n = numel(shape)
        local r = blt.Generator(nextseed())
        local vals = {}
        for i = 1, n do vals[i] = (i - n / 2) * 0.05 end
        for i = n, 2, -1 do local j = r:integer(i); vals[i], vals[j] = vals[j], vals[i] end
        t = map_(blt.zeros(shape), function(_, k) return vals[k + 1] end)
    else
        t = blt.randn(shape, nextseed())
    end
    return t:set_requires_grad()
end

local function ints(tbl) return blt.tensor(tbl, "int32") end

local results = {}

-- f(...) -> tensor; inputs: list of tensors (float leaves requiring grad get checked).
local function gradcheck(name, f, inputs, opt)
    opt = opt or {}
    local worst, where = check(f, inputs, {h = opt.h or H, max = opt.max or MAXCHK, seed = nextseed()})
    T.diag(("%-44s max rel err %.2e"):format(name, worst))
    results[#results + 1] = {name, worst}
    T.ok(worst <= (opt.tol or TOL), "grad " .. name, where)
end

-- ---- matrix products ----
gradcheck("matmul [3,17]x[17,1]", blt.matmul, {leaf {3, 17}, leaf {17, 1}})
gradcheck("matmul [1,3]x[3,17]", blt.matmul, {leaf {1, 3}, leaf {3, 17}})
gradcheck("matmul transA [17,3]^T x[17,5]", function(a, b) return blt.matmul(a, b, true) end, {leaf {17, 3}, leaf {17, 5}})
gradcheck("matmul transB [5,17]x[3,17]^T", function(a, b) return blt.matmul(a, b, false, true) end, {leaf {5, 17}, leaf {3, 17}})
gradcheck("matmul transA transB", function(a, b) return blt.matmul(a, b, true, true) end, {leaf {17, 3}, leaf {5, 17}})
gradcheck("matmul [2,3,5]x[5,7] (flattened rows)", blt.matmul, {leaf {2, 3, 5}, leaf {5, 7}})
gradcheck("matmul [2,3,5]x[5,7]^T", function(a, b) return blt.matmul(a, b, false, true) end, {leaf {2, 3, 5}, leaf {7, 5}})
gradcheck("matmul batched [3,5,17]x[3,17,3]", blt.matmul, {leaf {3, 5, 17}, leaf {3, 17, 3}})
gradcheck("matmul batched [1,5,3]x[1,3,17]", blt.matmul, {leaf {1, 5, 3}, leaf {1, 3, 17}})
gradcheck("matmul batched transA", function(a, b) return blt.matmul(a, b, true) end, {leaf {3, 17, 5}, leaf {3, 17, 3}})
gradcheck("matmul batched transB", function(a, b) return blt.matmul(a, b, false, true) end, {leaf {3, 5, 17}, leaf {3, 3, 17}})
gradcheck("matmul batched transA transB", function(a, b) return blt.matmul(a, b, true, true) end, {leaf {2, 17, 5}, leaf {2, 3, 17}})
gradcheck("matmul of transposed views", function(a, b) return blt.matmul(a:transpose(1, 2), b:transpose(1, 2)) end,
          {leaf {17, 3}, leaf {5, 17}})
gradcheck("linear [2,3,17] w[5,17] bias", blt.linear, {leaf {2, 3, 17}, leaf {5, 17}, leaf {5}})
gradcheck("linear [1,3] w[17,3] no bias", blt.linear, {leaf {1, 3}, leaf {17, 3}})
gradcheck("linear of a narrowed x", function(x, w, b) return blt.linear(x:narrow(2, 2, 3), w, b) end,
          {leaf {4, 5}, leaf {1, 3}, leaf {1}})

-- ---- element-wise, with broadcasting ----
for _, op in ipairs {"add", "sub", "mul", "div"} do
    local kindb = op == "div" and "pos" or nil
    gradcheck(op .. " same shape [3,17]", blt[op], {leaf {3, 17}, leaf({3, 17}, kindb)})
    gradcheck(op .. " [3,1]x[1,17]", blt[op], {leaf {3, 1}, leaf({1, 17}, kindb)})
    gradcheck(op .. " [2,3,5]x[5] (lower rank)", blt[op], {leaf {2, 3, 5}, leaf({5}, kindb)})
    gradcheck(op .. " [3]x[2,1,3]", blt[op], {leaf {3}, leaf({2, 1, 3}, kindb)})
    gradcheck(op .. " [2,3]x[] (0-d)", blt[op], {leaf {2, 3}, leaf({}, kindb)})
    gradcheck(op .. " transposed [3,5]^T x [3]", function(a, b) return blt[op](a:t(), b) end, {leaf {3, 5}, leaf({3}, kindb)})
    gradcheck(op .. " narrowed x narrowed", function(a, b) return blt[op](a:narrow(2, 2, 3), b:narrow(1, 1, 2)) end,
              {leaf {2, 5}, leaf({3, 3}, kindb)})
    gradcheck(op .. " tensor,number", function(a) return blt[op](a, 1.7) end, {leaf {3, 5}})
    gradcheck(op .. " number,tensor", function(b) return blt[op](1.7, b) end, {leaf({3, 5}, "pos")})
end
gradcheck("operators a*b+c-a/b, -a", function(a, b, c) return -(a * b + c - a / b) end,
          {leaf {3, 4}, leaf({4}, "pos"), leaf {3, 1}})
gradcheck("scale(x, 2.5, -1)", function(x) return blt.scale(x, 2.5, -1) end, {leaf {3, 17}})
gradcheck("scale of a transposed view", function(x) return blt.scale(x:t(), -0.5) end, {leaf {3, 17}})
gradcheck("neg", blt.neg, {leaf {17}})
for _, u in ipairs {"exp", "tanh", "silu", "gelu", "sigmoid"} do
    gradcheck(u .. " [3,17]", blt[u], {leaf {3, 17}})
end
gradcheck("relu [3,17] (|x| >= 0.1)", blt.relu, {leaf({3, 17}, "away")})
gradcheck("log [3,17]", blt.log, {leaf({3, 17}, "pos")})
gradcheck("sqrt [3,17]", blt.sqrt, {leaf({3, 17}, "pos")})
gradcheck("exp of a transposed view", function(x) return blt.exp(x:transpose(1, 3)) end, {leaf {2, 3, 5}})

-- ---- reductions ----
gradcheck("sum all", function(x) return blt.sum(x) end, {leaf {3, 17}})
gradcheck("sum dim 1", function(x) return blt.sum(x, 1) end, {leaf {3, 17}})
gradcheck("sum dim 2 of 3-d", function(x) return blt.sum(x, 2) end, {leaf {2, 3, 5}})
gradcheck("sum dim -1 keepdim", function(x) return blt.sum(x, -1, true) end, {leaf {2, 3, 5}})
gradcheck("sum of a transposed view", function(x) return blt.sum(x:t(), 2) end, {leaf {3, 17}})
gradcheck("mean all", function(x) return blt.mean(x) end, {leaf {3, 17}})
gradcheck("mean dim 2", function(x) return blt.mean(x, 2) end, {leaf {2, 3, 5}})
gradcheck("mean dim 1 keepdim", function(x) return blt.mean(x, 1, true) end, {leaf {3, 17}})
gradcheck("sum over a size-1 dim", function(x) return blt.sum(x, 2) end, {leaf {3, 1, 2}})

-- ---- nn ops ----
gradcheck("softmax [3,17]", blt.softmax, {leaf {3, 17}})
gradcheck("softmax [2,3,1]", blt.softmax, {leaf {2, 3, 1}})
gradcheck("softmax of transposed view", function(x) return blt.softmax(x:t()) end, {leaf {5, 3}})
gradcheck("log_softmax [3,17]", blt.log_softmax, {leaf {3, 17}})
gradcheck("log_softmax [2,3,5]", blt.log_softmax, {leaf {2, 3, 5}})
gradcheck("softmax_entropy [3,17]", blt.softmax_entropy, {leaf {3, 17}})
gradcheck("softmax_entropy [2,3,300] (rows past one 256 piece)", blt.softmax_entropy, {leaf {2, 3, 300}})
gradcheck("softmax_entropy [4,1]", blt.softmax_entropy, {leaf {4, 1}})
local tg = ints {3, 0, 16, 5, 5}
gradcheck("cross_entropy mean", function(x) return blt.cross_entropy(x, tg) end, {leaf {5, 17}})
gradcheck("cross_entropy sum", function(x) return blt.cross_entropy(x, tg, {reduction = "sum"}) end, {leaf {5, 17}})
local tgi = ints {3, -100, 16, -100, 5}
gradcheck("cross_entropy ignore -100", function(x) return blt.cross_entropy(x, tgi) end, {leaf {5, 17}})
local tg3 = ints {{1, 2, 0}, {4, 4, 2}}
gradcheck("cross_entropy [2,3,5] ignore_index=4", function(x) return blt.cross_entropy(x, tg3, {ignore_index = 4}) end,
          {leaf {2, 3, 5}})
gradcheck("cross_entropy [1,1]", function(x) return blt.cross_entropy(x, ints {0}) end, {leaf {1, 1}})
gradcheck("rmsnorm [2,3,17]", function(x, g) return blt.rmsnorm(x, g) end, {leaf {2, 3, 17}, leaf {17}})
gradcheck("rmsnorm [1,3] eps 0.1", function(x, g) return blt.rmsnorm(x, g, 0.1) end, {leaf {1, 3}, leaf {3}})
gradcheck("rmsnorm [70,5] (many rows)", function(x, g) return blt.rmsnorm(x, g) end, {leaf {70, 5}, leaf {5}})
gradcheck("rmsnorm of transposed view", function(x, g) return blt.rmsnorm(x:t(), g) end, {leaf {5, 3}, leaf {5}})
local ids = ints {{0, 6, 3, 3, 1}, {6, 6, 2, 0, 5}}
gradcheck("embedding [7,3] ids [2,5] (repeats)", function(w) return blt.embedding(w, ids) end, {leaf {7, 3}})
gradcheck("embedding ids [1]", function(w) return blt.embedding(w, ints {2}) end, {leaf {3, 17}})
-- embedding_sum (the BLT's byte and hash n-gram lookups in one op): generated over the
-- number of tables, the ids' shape and a table without gradient (a frozen one); its
-- result and gradients must have the bits of the lookups added in order
for ntab = 1, 4 do
    for _, shape in ipairs {{5}, {2, 3}} do
        local g = blt.Generator(100 * ntab + #shape)
        local rows, idl = {7, 3, 11, 2}, {}
        for t = 1, ntab do
            local flat = {}
            for k = 1, numel(shape) do flat[k] = g:integer(rows[t]) - 1 end
            idl[t] = (#shape == 1 and ints(flat) or ints(flat):reshape(shape))
        end
        local ws = {}
        for t = 1, ntab do ws[t] = (t == 3) and blt.randn({rows[t], 4}, nextseed()) or leaf {rows[t], 4} end
        local f = function(...) local w = {...}; for t = 1, ntab do w[t] = w[t] or ws[t] end; return blt.embedding_sum(w, idl) end
        gradcheck(("embedding_sum of %d tables, ids %s%s"):format(ntab, table.concat(shape, "x"), ntab >= 3 and " (table 3 frozen)" or ""),
                  f, ws)
        local chain = blt.embedding(ws[1], idl[1])
        for t = 2, ntab do chain = chain + blt.embedding(ws[t], idl[t]) end
        local fused = blt.embedding_sum(ws, idl)
        local wout = blt.randn(fused:shape(), nextseed())
        local grads = {}
        for t = 1, ntab do if ws[t].grad then ws[t]:zero_grad() end end
        blt.sum(blt.mul(chain, wout)):backward()
        for t = 1, ntab do grads[t] = ws[t].grad and ws[t].grad:clone() end
        for t = 1, ntab do if ws[t].grad then ws[t]:zero_grad() end end
        blt.sum(blt.mul(fused, wout)):backward()
        local same = blt.hash_tensor(chain) == blt.hash_tensor(fused)
        for t = 1, ntab do
            if grads[t] then same = same and blt.hash_tensor(grads[t]) == blt.hash_tensor(ws[t].grad) end
        end
        T.ok(same, ("embedding_sum of %d tables, ids %s: the bits of the chained lookups and additions, forward and backward")
             :format(ntab, table.concat(shape, "x")))
    end
end
gradcheck("rope [2,5,12] heads 2", function(x) return blt.rope(x, 2) end, {leaf {2, 5, 12}})
gradcheck("rope [17,6] heads 3 theta 100", function(x) return blt.rope(x, 3, {theta = 100}) end, {leaf {17, 6}})
local pos1 = ints {7, 0, 3}
gradcheck("rope positions [T]", function(x) return blt.rope(x, 1, {positions = pos1}) end, {leaf {2, 3, 4}})
local pos2 = ints {{5, 1, 2}, {0, 9, 30}}
gradcheck("rope positions [B,T]", function(x) return blt.rope(x, 2, {positions = pos2}) end, {leaf {2, 3, 4}})

-- ---- shape ops and views ----
gradcheck("transpose(1,2)", function(x) return x:transpose(1, 2) end, {leaf {3, 17}})
gradcheck("transpose(1,3) then contiguous", function(x) return x:transpose(1, 3):contiguous() end, {leaf {2, 3, 5}})
gradcheck("narrow dim 1", function(x) return x:narrow(1, 2, 2) end, {leaf {5, 3}})
gradcheck("narrow dim 2", function(x) return blt.narrow(x, 2, 3, 3) end, {leaf {3, 17}})
gradcheck("narrow dim -1 of 3-d, len 1", function(x) return x:narrow(-1, 5, 1) end, {leaf {2, 3, 5}})
gradcheck("narrow of narrow", function(x) return x:narrow(2, 2, 10):narrow(1, 2, 1) end, {leaf {3, 17}})
gradcheck("reshape contiguous", function(x) return x:reshape {5, 3, 2} end, {leaf {2, 3, 5}})
gradcheck("reshape with -1", function(x) return x:reshape {-1} end, {leaf {3, 17}})
gradcheck("reshape of a transposed (non-contiguous) tensor", function(x) return x:t():reshape {17 * 3} end, {leaf {3, 17}})
gradcheck("reshape of a narrowed tensor", function(x) return x:narrow(2, 2, 3):reshape {3, 3} end, {leaf {3, 5}})
gradcheck("concat dim 1", function(a, b) return blt.concat({a, b}, 1) end, {leaf {2, 3}, leaf {1, 3}})
gradcheck("concat dim 2 of three", function(a, b, c) return blt.concat({a, b, c}, 2) end, {leaf {2, 3}, leaf {2, 1}, leaf {2, 5}})
gradcheck("concat of views", function(a, b) return blt.concat({a:t(), b:narrow(2, 2, 3)}, 1) end, {leaf {3, 2}, leaf {2, 5}})
local gi = ints {{0, 2, 2}, {1, 1, 0}}
gradcheck("gather dim 2", function(x) return blt.gather(x, 2, gi) end, {leaf {2, 5}})
local gi1 = ints {{2, 0}, {2, 2}}
gradcheck("gather dim 1 (smaller index)", function(x) return blt.gather(x, 1, gi1) end, {leaf {3, 4}})
gradcheck("gather of a transposed view", function(x) return blt.gather(x:t(), 2, gi) end, {leaf {5, 2}})
local si = ints {4, 0, 4, 2}
gradcheck("index_select dim 1", function(x) return blt.index_select(x, 1, si) end, {leaf {5, 3}})
gradcheck("index_select dim 2 of 3-d", function(x) return blt.index_select(x, 2, ints {1, 1}) end, {leaf {2, 3, 4}})
gradcheck("index_select of a transposed view", function(x) return blt.index_select(x:t(), 1, si) end, {leaf {3, 5}})
local lens = ints {{2, 0, 3, 1}, {1, 1, 1, 3}}
gradcheck("segment_maxpool [2,7,3] (run of 0, sum < T)", function(x) return blt.segment_maxpool(x, lens) end,
          {leaf({2, 7, 3}, "distinct")})
gradcheck("segment_maxpool [5,2] unbatched", function(x) return blt.segment_maxpool(x, ints {5}) end,
          {leaf({5, 2}, "distinct")})

-- ---- attention: every mask kind, odd sizes, several 64-blocks ----
local function attn(opts) return function(q, k, v) return blt.attention(q, k, v, opts) end end
local function qkv(B, Tq, Tk, D) return {leaf {B, Tq, D}, leaf {B, Tk, D}, leaf {B, Tk, D}} end
gradcheck("attention no mask B2 T5 H2 hd3", attn {heads = 2}, qkv(2, 5, 5, 6))
gradcheck("attention T1 causal", attn {heads = 1, causal = true}, qkv(1, 1, 1, 3))
gradcheck("attention T17 causal H3 hd1", attn {heads = 3, causal = true}, qkv(1, 17, 17, 3))
gradcheck("attention T130 causal (3 blocks)", attn {heads = 2, causal = true}, qkv(1, 130, 130, 6))
gradcheck("attention T100 causal window 7", attn {heads = 1, causal = true, window = 7}, qkv(2, 100, 100, 3))
gradcheck("attention T130 causal window 70", attn {heads = 2, causal = true, window = 70}, qkv(1, 130, 130, 4))
gradcheck("attention Tq3 Tk17 scale 0.3", attn {heads = 1, scale = 0.3}, qkv(2, 3, 17, 5))
gradcheck("attention Tq70 Tk17 causal (Tq > Tk)", attn {heads = 1, causal = true}, qkv(1, 70, 17, 2))
do -- sorted segments: documents of lengths 1, 40, 30, 59 (T = 130); causal within each
    local seg = {}
    local lens_ = {1, 40, 30, 59}
    for s, n in ipairs(lens_) do for _ = 1, n do seg[#seg + 1] = s - 1 end end
    local qs = ints {seg}
    gradcheck("attention T130 segments + causal", attn {heads = 2, causal = true, q_seg = qs, k_seg = qs},
              qkv(1, 130, 130, 4))
    gradcheck("attention T130 segments (no causal)", attn {heads = 1, q_seg = qs, k_seg = qs}, qkv(1, 130, 130, 3))
end
do -- unsorted segments, and a query whose segment has no key
    local qseg = ints {{0, 1, 0, 2, 1, 0, 9}, {3, 3, 3, 3, 3, 3, 3}}
    local kseg = ints {{1, 0, 2, 0, 1, 1, 0, 2, 1}, {3, 0, 3, 0, 3, 0, 3, 0, 3}}
    gradcheck("attention unsorted segments, Tq7 Tk9, no-key query", attn {heads = 2, q_seg = qseg, k_seg = kseg},
              qkv(2, 7, 9, 4))
end
do -- key ranges (patch cross-attention style), incl. empty ranges
    local st, en = {}, {}
    for i = 0, 16 do st[#st + 1] = (i * 5) % 80; en[#en + 1] = (i * 5) % 80 + 1 + (i * 7) % 50 end
    st[4], en[4] = 10, 10 -- empty: sees no key
    st[9], en[9] = 0, 200 -- wider than Tk: clipped
    local s, e = ints {st}, ints {en}
    gradcheck("attention Tq17 Tk100 k_start/k_end", attn {heads = 2, k_start = s, k_end = e}, qkv(1, 17, 100, 6))
    local sq, eq = ints {{0, 3, 5, 5, 90}}, ints {{1, 70, 100, 5, 100}}
    gradcheck("attention Tq5 Tk100 ranges + segments", attn {heads = 1, k_start = sq, k_end = eq,
        q_seg = ints {{0, 0, 1, 1, 1}}, k_seg = ints {(function() local t = {} for j = 1, 100 do t[j] = j > 50 and 1 or 0 end return t end)()}},
        qkv(1, 5, 100, 3))
end
do -- self-attention with ranges + causal + window all at once, 2 batch rows
    local st, en = {}, {}
    for b = 1, 2 do
        st[b], en[b] = {}, {}
        for i = 0, 69 do st[b][i + 1] = (i // 10) * 10 * (b - 1); en[b][i + 1] = 70 end
    end
    st[2][30] = 60 -- beyond the causal limit: no key
    gradcheck("attention T70 causal window 20 + ranges", attn {heads = 1, causal = true, window = 20,
        k_start = ints(st), k_end = ints(en)}, qkv(2, 70, 70, 3))
end
gradcheck("attention of transposed views", function(q, k, v)
    return blt.attention(q:transpose(1, 2), k:transpose(1, 2), v:transpose(1, 2), {heads = 1, causal = true})
end, {leaf {3, 2, 4}, leaf {3, 2, 4}, leaf {3, 2, 4}})

-- ---- a composite graph: shared inputs, several paths ----
gradcheck("composite (shared x, two paths)", function(x, w, g)
    local h = blt.rmsnorm(blt.linear(x, w), g)
    return blt.add(blt.silu(h), blt.matmul(x, w, false, true))
end, {leaf {3, 5}, leaf {4, 5}, leaf {4}})

local worst = {}
for _, r in ipairs(results) do worst[#worst + 1] = r end
table.sort(worst, function(a, b) return a[2] > b[2] end)
T.diag(("largest error: %s %.2e over %d checks"):format(worst[1][1], worst[1][2], #results))
T.done()
