package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local blt = require "blt"

-- Bad calls: each must raise a Lua error (never crash) whose message names the
-- function and the offending shapes or values. Patterns are Lua patterns.

local function ints(t) return blt.tensor(t, "int32") end
local x23, x45 = blt.randn({2, 3}, 1), blt.randn({4, 5}, 2)

local cases = {
    -- shapes
    {"matmul inner mismatch", function() blt.matmul(x23, x45) end, "blt%.matmul: inner dimensions differ: a %[2,3%] has 3, b %[4,5%] has 4"},
    {"matmul transposed inner mismatch", function() blt.matmul(x23, x45, false, true) end, "blt%.matmul: inner.*b %[4,5%] %(transposed%) has 5"},
    {"matmul of a 1-d tensor", function() blt.matmul(blt.zeros {3}, x23) end, "blt%.matmul: unsupported shapes a %[3%], b %[2,3%]"},
    {"matmul batch mismatch", function() blt.matmul(blt.zeros {2, 3, 4}, blt.zeros {3, 4, 5}) end, "blt%.matmul: batch sizes differ: a %[2,3,4%], b %[3,4,5%]"},
    {"linear weight mismatch", function() blt.linear(x23, x45) end, "blt%.linear: x %[2,3%] does not fit weight %[4,5%]"},
    {"linear bias mismatch", function() blt.linear(x23, blt.zeros {4, 3}, blt.zeros {3}) end, "blt%.linear: bias %[3%] must be %[4%]"},
    {"add cannot broadcast", function() blt.add(x23, blt.zeros {4}) end, "blt%.add: shapes %[2,3%] and %[4%] cannot be broadcast"},
    {"div cannot broadcast", function() return x23 / x45 end, "blt%.div: shapes %[2,3%] and %[4,5%]"},
    {"reshape to the wrong size", function() x23:reshape {4, 2} end, "blt%.reshape: cannot view %[2,3%] %(6 elements%) as %[4,2%]"},
    {"reshape with two -1", function() x23:reshape {-1, -1} end, "blt%.reshape: more than one %-1 in shape %[%-1,%-1%]"},
    {"concat mismatch", function() blt.concat({x23, x45}, 1) end, "blt%.concat: tensor 2 has shape %[4,5%].*tensor 1 has %[2,3%].*but 1 must match"},
    {"rmsnorm weight mismatch", function() blt.rmsnorm(x23, blt.ones {4}) end, "blt%.rmsnorm: weight %[4%] must be 1%-d with the last dimension of x %[2,3%]"},
    {"cross_entropy targets shape", function() blt.cross_entropy(x23, ints {0, 1, 2}) end, "blt%.cross_entropy: logits %[2,3%] and targets %[3%]"},
    {"attention k/v mismatch", function() blt.attention(blt.zeros {1, 3, 4}, blt.zeros {1, 5, 4}, blt.zeros {1, 6, 4}, {heads = 1}) end,
     "blt%.attention: q %[1,3,4%], k %[1,5,4%], v %[1,6,4%]"},
    {"attention heads do not divide width", function() blt.attention(blt.zeros {1, 3, 6}, blt.zeros {1, 3, 6}, blt.zeros {1, 3, 6}, {heads = 4}) end,
     "blt%.attention: 4 heads do not divide the width 6 of q %[1,3,6%]"},
    {"attention q_seg shape", function()
        local q = blt.zeros {2, 3, 4}
        blt.attention(q, q, q, {heads = 1, q_seg = ints {{0, 0}, {0, 0}}, k_seg = ints {{0, 0, 0}, {0, 0, 0}}})
    end, "blt%.attention: q_seg %[2,2%] must be %[2,3%]"},
    {"rope head size odd", function() blt.rope(blt.zeros {1, 2, 6}, 2) end, "blt%.rope: width 6 of x %[1,2,6%] must split into 2 heads of even size"},
    {"rope positions shape", function() blt.rope(blt.zeros {2, 3, 4}, 1, {positions = ints {0, 1}}) end,
     "blt%.rope: positions %[2%] must be %[T%] or %[B,T%] for x %[2,3,4%]"},
    {"segment_maxpool lengths too long", function() blt.segment_maxpool(blt.zeros {1, 5, 2}, ints {{3, 4}}) end,
     "blt%.segment_maxpool: lengths of row 1 sum to 7, more than the 5 rows of x %[1,5,2%]"},
    {"segment_maxpool negative length", function() blt.segment_maxpool(blt.zeros {5, 2}, ints {3, -1}) end,
     "blt%.segment_maxpool: negative length %-1"},
    {"index_select 2-d index", function() blt.index_select(x23, 1, ints {{0}}) end, "blt%.index_select: index must be 1%-d, got %[1,1%]"},
    {"softmax of a 0-d tensor", function() blt.softmax(blt.tensor(3)) end, "blt%.softmax: x must have at least one dimension"},
    {"copy shape mismatch", function() x23:clone():copy(x45) end, "blt%.copy: source %[4,5%] float32 does not match destination %[2,3%]"},
    {"grad of the wrong shape", function() x23:clone().grad = blt.zeros {3} end, "blt%.Tensor%.grad: gradient %[3%] must be .*shaped like %[2,3%]"},
    -- negative sizes and out-of-range values
    {"zeros negative size", function() blt.zeros {2, -3} end, "blt%.zeros: negative size %-3 in shape %(dimension 2%)"},
    {"randn negative size", function() blt.randn({-1}, 1) end, "blt%.randn: negative size %-1"},
    {"reshape negative size", function() x23:reshape {-2, -3} end, "blt%.reshape: negative size %-2"},
    {"zeros too large", function() blt.zeros {2 ^ 30, 2 ^ 30} end, "blt%.zeros: .*too large"},
    {"narrow out of range", function() x23:narrow(2, 3, 2) end, "blt%.narrow: start 3, length 2 out of range for dimension 2 of shape %[2,3%]"},
    {"narrow start 0", function() x23:narrow(1, 0, 1) end, "blt%.narrow: start 0 must be >= 1"},
    {"narrow negative length", function() x23:narrow(1, 1, -1) end, "blt%.narrow: start 1, length %-1 out of range"},
    {"transpose dimension out of range", function() x23:transpose(1, 3) end, "blt%.transpose: dimension 3 out of range for a 2%-d tensor"},
    {"sum dimension out of range", function() blt.sum(x23, -3) end, "blt%.sum: dimension %-3 out of range for a 2%-d tensor"},
    {"size dimension 0", function() x23:size(0) end, "blt%.size: dimension 0 out of range"},
    {"get index out of range", function() x23:get(3, 1) end, "blt%.get: index 3 out of range 1%.%.2 in dimension 1 of shape %[2,3%]"},
    {"get with too few indices", function() x23:get(1) end, "blt%.get: 1 indices for a tensor of shape %[2,3%]"},
    {"set index out of range", function() x23:clone():set(1, 1, 4) end, "blt%.set: index 4 out of range 1%.%.3 in dimension 2"},
    {"item of a non-scalar", function() x23:item() end, "blt%.item: tensor of shape %[2,3%] has 6 elements, not 1"},
    {"embedding id out of range", function() blt.embedding(x45, ints {1, 4}) end, "blt%.embedding: id 4 at position 1 out of range for weight %[4,5%]"},
    {"embedding negative id", function() blt.embedding(x45, ints {-1}) end, "blt%.embedding: id %-1 at position 0"},
    {"embedding_sum id out of range", function() blt.embedding_sum({x45, blt.zeros {2, 5}}, {ints {1}, ints {2}}) end,
     "blt%.embedding_sum: ids 2: id 2 at position 0 out of range for weight 2 %[2,5%]"},
    {"embedding_sum widths differ", function() blt.embedding_sum({x45, x23}, {ints {1}, ints {1}}) end,
     "blt%.embedding_sum: weight 2 %[2,3%] must be %[V,5%]"},
    {"embedding_sum ids shapes differ", function() blt.embedding_sum({x45, x45}, {ints {1}, ints {1, 2}}) end,
     "blt%.embedding_sum: ids 2 %[2%] must have the shape of ids 1 %[1%]"},
    {"embedding_sum counts differ", function() blt.embedding_sum({x45, x45}, {ints {1}}) end,
     "blt%.embedding_sum: 2 weights but 1 ids"},
    {"cross_entropy target out of range", function() blt.cross_entropy(x23, ints {0, 3}) end,
     "blt%.cross_entropy: target 3 at position 1 out of range for 3 classes"},
    {"cross_entropy negative target", function() blt.cross_entropy(x23, ints {-1, 0}) end, "blt%.cross_entropy: target %-1 at position 0"},
    {"gather index out of range", function() blt.gather(x23, 2, ints {{0, 3}, {0, 0}}) end,
     "blt%.gather: index 3 out of range for dimension 2 of x %[2,3%]"},
    {"gather index does not fit", function() blt.gather(x23, 2, ints {{0}, {0}, {0}}) end, "blt%.gather: index %[3,1%] does not fit x %[2,3%]"},
    {"index_select out of range", function() blt.index_select(x23, 2, ints {0, 7}) end,
     "blt%.index_select: index 7 out of range for dimension 2 of x %[2,3%]"},
    {"rmsnorm eps negative", function() blt.rmsnorm(x23, blt.ones {3}, -1) end, "blt%.rmsnorm: eps must be positive, got %-1"},
    {"rope theta 0", function() blt.rope(blt.zeros {2, 4}, 1, {theta = 0}) end, "blt%.rope: theta must be positive, got 0"},
    {"attention negative window", function() local q = blt.zeros {1, 2, 2}; blt.attention(q, q, q, {heads = 1, causal = true, window = -1}) end,
     "blt%.attention: window %-1"},
    {"set_threads 0", function() blt.set_threads(0) end, "set_threads: thread count = 0 out of range 1%.%.256"},
    {"Generator:integer(0)", function() blt.Generator(1):integer(0) end, "integer: upper bound = 0 out of range %(at least 1%)"},
    -- wrong types and nil
    {"matmul with nil", function() blt.matmul(nil, x23) end, "matmul.*blt%.Tensor expected, got nil"},
    {"linear with a number", function() blt.linear(x23, 3) end, "linear.*blt%.Tensor expected, got number"},
    {"mul with a string", function() blt.mul(x23, "2") end, "mul.*blt%.Tensor expected, got string"},
    {"add of two numbers", function() blt.add(1, 2) end, "blt%.add: needs at least one tensor"},
    {"matmul of int32", function() blt.matmul(ints {{1}}, x23) end, "blt%.matmul: argument 'a' must be float32, got int32"},
    {"exp of int32", function() blt.exp(ints {1, 2}) end, "blt%.exp: argument 'x' must be float32, got int32"},
    {"embedding with float ids", function() blt.embedding(x45, blt.tensor {1}) end, "blt%.embedding: argument 'ids' must be int32, got float32"},
    {"cross_entropy float targets", function() blt.cross_entropy(x23, blt.tensor {0, 1}) end, "blt%.cross_entropy: argument 'targets' must be int32, got float32"},
    {"tensor int32 from a fraction", function() blt.tensor({1, 1.5}, "int32") end, "blt%.tensor: int32 entry 2 must be an integer, got 1%.5"},
    {"tensor with a string entry", function() blt.tensor {{1, "a"}} end, "blt%.tensor: entry 2 is string, not a number"},
    {"tensor ragged", function() blt.tensor {{1, 2}, {3}} end, "blt%.tensor: ragged table: dimension 2 has 1 entries where 2 were expected"},
    {"tensor unknown dtype", function() blt.tensor({1}, "float64") end, "tensor.*invalid option 'float64'"},
    {"zeros shape entry not an integer", function() blt.zeros {2, "x"} end, "blt%.zeros: shape entry 2 must be an integer, got string"},
    {"zeros of a string", function() blt.zeros "big" end, "blt%.zeros: expected a shape .*got string"},
    {"randn without a seed", function() blt.randn {2} end, "blt%.randn: needs an explicit seed"},
    {"narrow with nil start", function() x23:narrow(1) end, "blt%.narrow: start must be an integer, got no value"},
    {"requires_grad on int32", function() ints {1}:set_requires_grad() end, "blt%.requires_grad: only float32 tensors"},
    {"requires_grad on a non-leaf", function()
        local a = blt.randn({2}, 3):set_requires_grad()
        blt.exp(a):set_requires_grad()
    end, "blt%.requires_grad: only leaf tensors"},
    {"no_grad of a non-function", function() blt.no_grad(3) end, "no_grad.*function expected, got number"},
    {"unknown field assignment", function() x23.foo = 1 end, "blt%.Tensor: cannot set field 'foo'"},
    -- unknown options
    {"attention unknown option", function() local q = blt.zeros {1, 2, 2}; blt.attention(q, q, q, {heads = 1, casual = true}) end,
     "blt%.attention: unknown option 'casual' %(known: heads, causal"},
    {"attention without heads", function() local q = blt.zeros {1, 2, 2}; blt.attention(q, q, q, {causal = true}) end,
     "blt%.attention: option 'heads' is required"},
    {"attention window without causal", function() local q = blt.zeros {1, 2, 2}; blt.attention(q, q, q, {heads = 1, window = 4}) end,
     "blt%.attention: window 4 needs causal = true"},
    {"attention q_seg without k_seg", function() local q = blt.zeros {1, 2, 2}; blt.attention(q, q, q, {heads = 1, q_seg = ints {{0, 0}}}) end,
     "blt%.attention: q_seg and k_seg .*come in pairs"},
    {"cross_entropy unknown option", function() blt.cross_entropy(x23, ints {0, 1}, {reduce = "sum"}) end,
     "blt%.cross_entropy: unknown option 'reduce' %(known: ignore_index, reduction%)"},
    {"cross_entropy bad reduction", function() blt.cross_entropy(x23, ints {0, 1}, {reduction = "max"}) end,
     "blt%.cross_entropy: reduction must be 'mean' or 'sum', got 'max'"},
    {"rope unknown option", function() blt.rope(blt.zeros {2, 4}, 1, {thetta = 10}) end, "blt%.rope: unknown option 'thetta'"},
    -- autograd misuse
    {"backward twice", function()
        local a = blt.randn({3}, 4):set_requires_grad()
        local l = blt.sum(blt.mul(a, a))
        l:backward()
        l:backward()
    end, "blt%.backward: the graph of this tensor was already freed.*backward called twice"},
    {"backward through a graph freed by an earlier backward", function()
        local a = blt.randn({3}, 4):set_requires_grad()
        local h = blt.exp(a)
        blt.sum(h):backward()
        blt.sum(blt.mul(h, 2)):backward()
    end, "blt%.backward: the graph through 'exp' was already freed"},
    {"backward of a non-scalar without gradient", function()
        local a = blt.randn({2, 3}, 4):set_requires_grad()
        blt.exp(a):backward()
    end, "blt%.backward: tensor of shape %[2,3%] is not a scalar; pass a gradient"},
    {"backward with a gradient of the wrong shape", function()
        local a = blt.randn({2, 3}, 4):set_requires_grad()
        blt.exp(a):backward(blt.ones {3})
    end, "blt%.backward: gradient shape %[3%] does not match tensor shape %[2,3%]"},
    {"backward of a tensor that needs no grad", function() blt.sum(x23):backward() end,
     "blt%.backward: the tensor does not require grad"},
    {"backward made under no_grad", function()
        local a = blt.randn({2}, 4):set_requires_grad()
        blt.no_grad(function() return blt.sum(a) end):backward()
    end, "blt%.backward: the tensor does not require grad"},
    -- released tensors
    {"op on a released tensor", function() local a = blt.randn({2}, 5); a:release(); blt.exp(a) end,
     "blt%.exp: argument 'x' uses storage that was released"},
    {"get on a released tensor", function() local a = blt.randn({2}, 5); a:release(); a:get(1) end,
     "blt%.get: argument 'self' uses storage that was released"},
    {"a view of a released tensor", function() local a = blt.randn({2, 2}, 5); local v = a:t(); a:release(); blt.matmul(v, v) end,
     "blt%.matmul: argument 'a' uses storage that was released"},
    {"number op on a released tensor", function() local a = blt.randn({2}, 5); a:release(); return a * 2 end,
     "blt%.mul: .*released"},
    {"backward after an input saved for it was released", function()
        local a = blt.randn({3, 3}, 6):set_requires_grad()
        local w = blt.randn({3, 3}, 7)
        local l = blt.sum(blt.matmul(w, a))
        w:release()
        l:backward()
    end, "blt%.backward: a tensor that 'matmul' saved for backward was released"},
}

T.ok(#cases >= 25, ("at least 25 bad calls (%d)"):format(#cases))
for _, c in ipairs(cases) do T.raises(c[2], c[3], c[1]) end
-- the state is still usable after all these errors
local a = blt.randn({2, 2}, 9):set_requires_grad()
blt.sum(blt.matmul(a, a)):backward()
T.ok(a.grad ~= nil and a.grad:shape()[1] == 2, "ops and backward still work after the errors")
T.ok(blt.grad_enabled(), "grad mode restored after an error inside no_grad")
T.done()
