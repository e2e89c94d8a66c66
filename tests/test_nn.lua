package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local blt = require "blt"
local core = require "blt.core"
local nn = require "blt.nn"
local optim = require "blt.optim"
local gradcheck = require "gradcheck"

-- Layer gradients by finite differences: inputs and every parameter.
local function check_layer(name, layer, inputs, tol, extra)
    local all = {}
    for _, x in ipairs(inputs) do all[#all + 1] = x end
    local params = layer:parameter_list()
    for _, p in ipairs(params) do all[#all + 1] = p.tensor end
    local nin = #inputs
    local err, where = gradcheck.check(function(...)
        local args = table.pack(...)
        local call = {}
        for i = 1, nin do call[i] = args[i] end
        call[nin + 1] = extra
        return layer:forward(table.unpack(call, 1, nin + 1))
    end, all, {max = 24})
    T.diag(("%-18s max relative error %.2e"):format(name, err))
    T.ok(err < tol, name .. " gradients match finite differences", where)
end

local x = blt.randn({2, 17, 12}, 1):set_requires_grad()
check_layer("Linear", nn.Linear {in_dim = 12, out_dim = 7, seed = 1}, {x}, 2e-3)
check_layer("Linear+bias", nn.Linear {in_dim = 12, out_dim = 3, bias = true, seed = 2}, {x}, 2e-3)
check_layer("RMSNorm", nn.RMSNorm {dim = 12}, {x}, 2e-3)
check_layer("FeedForward", nn.FeedForward {dim = 12, multiple_of = 8, seed = 3}, {x}, 2e-3)
check_layer("Attention", nn.Attention {dim = 12, heads = 3, window = 5, seed = 4}, {x}, 2e-3)
check_layer("TransformerBlock", nn.TransformerBlock {dim = 12, heads = 2, window = 7, multiple_of = 8, seed = 5}, {x}, 2e-3)
do
    local emb = nn.Embedding {num = 11, dim = 5, seed = 6}
    local ids = blt.tensor({{0, 3, 3, 10}, {7, 1, 0, 2}}, "int32")
    local err, where = gradcheck.check(function() return emb:forward(ids) end, {emb.weight})
    T.diag(("%-18s max relative error %.2e"):format("Embedding", err))
    T.ok(err < 2e-3, "Embedding gradients match finite differences", where)
end
do -- cross-attention: 3 patches of 3 byte queries... here patch queries see their own bytes
    local ca = nn.CrossAttention {dim = 8, kv_dim = 6, heads = 2, seed = 7}
    local q = blt.randn({1, 3, 8}, 8):set_requires_grad()
    local kv = blt.randn({1, 7, 6}, 9):set_requires_grad()
    local mask = {q_seg = blt.tensor({{0, 1, 2}}, "int32"), k_seg = blt.tensor({{0, 0, 1, 1, 1, 2, 2}}, "int32")}
    check_layer("CrossAttention", ca, {q, kv}, 2e-3, mask)
end

-- names follow docs/model.md
do
    local blk = nn.TransformerBlock {dim = 8, heads = 2, multiple_of = 8, seed = 1}
    local names = {}
    for n, p in blk:parameters() do names[#names + 1] = n .. ":" .. table.concat(p:shape(), "x") end
    T.is(table.concat(names, " "), "attn_norm:8 attn.wq:8x8 attn.wk:8x8 attn.wv:8x8 attn.wo:8x8 ffn_norm:8 " ..
         "ffn.w1:24x8 ffn.w3:24x8 ffn.w2:8x24", "TransformerBlock parameter names and shapes")
    T.is(nn.ffn_hidden(256, 256), 768, "ffn hidden for d=256, multiple_of=256")
    T.is(nn.ffn_hidden(100, 32), 288, "ffn hidden for d=100, multiple_of=32: 32*ceil(266/32)")
    local ca = nn.CrossAttention {dim = 8, heads = 2, seed = 1}
    names = {}
    for n in ca:parameters() do names[#names + 1] = n end
    T.is(table.concat(names, " "), "q_norm kv_norm wq wk wv wo", "CrossAttention parameter names")
end

-- init: truncated normal, sigma = in_dim^-1/2, seeded
do
    local a = nn.Linear {in_dim = 400, out_dim = 300, seed = 3}
    local b = nn.Linear {in_dim = 400, out_dim = 300, seed = 3}
    local w = a.weight:totable()
    local sum, sq, maxabs = 0, 0, 0
    for i = 1, 300 do for j = 1, 400 do
        local v = w[i][j]
        sum, sq, maxabs = sum + v, sq + v * v, math.max(maxabs, math.abs(v))
    end end
    local n = 120000
    local std = math.sqrt(sq / n - (sum / n) ^ 2)
    -- a normal truncated at 3 sigma has std 0.9866 sigma
    T.near(std, 0.9866 / 20, 0.002, "Linear init std = 0.9866 * in_dim^-1/2 (truncated at 3 sigma)")
    T.ok(maxabs <= 3 / 20 + 1e-6, "Linear init within +-3 sigma")
    T.is(a.weight:get(17, 33), b.weight:get(17, 33), "same seed, same init")
end

-- AdamW: one and two steps against numbers worked out here
do
    local p = blt.tensor({{1.0, -2.0}, {0.5, 3.0}}):set_requires_grad()
    local g = blt.tensor({0.1, -0.4}):set_requires_grad() -- a 1-d gain: no weight decay
    local opt = optim.AdamW({{name = "w", tensor = p}, {name = "g", tensor = g}},
                            {lr = 0.1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1})
    local grads = {{0.5, -1.0, 2.0, 0.0}, {0.25, 0.5}}
    local function set_grads(k)
        local gw, gg = p.grad, g.grad
        gw:set(grads[1][1] * k, 1, 1) gw:set(grads[1][2] * k, 1, 2) gw:set(grads[1][3] * k, 2, 1) gw:set(grads[1][4] * k, 2, 2)
        gg:set(grads[2][1] * k, 1) gg:set(grads[2][2] * k, 2)
    end
    -- reference, element by element in double precision
    local function ref(p0, gs, decay)
        local m, v, x = 0, 0, p0
        for s, gk in ipairs(gs) do
            m = 0.9 * m + 0.1 * gk
            v = 0.95 * v + 0.05 * gk * gk
            local mh, vh = m / (1 - 0.9 ^ s), v / (1 - 0.95 ^ s)
            x = x * (decay and (1 - 0.1 * 0.1) or 1) - 0.1 * mh / (math.sqrt(vh) + 1e-8)
        end
        return x
    end
    set_grads(1); opt:step()
    set_grads(-0.5); opt:step()
    local worst = 0
    local p0 = {1.0, -2.0, 0.5, 3.0}
    for i = 1, 4 do
        local want = ref(p0[i], {grads[1][i], -0.5 * grads[1][i]}, true)
        worst = math.max(worst, math.abs(p:get((i - 1) // 2 + 1, (i - 1) % 2 + 1) - want))
    end
    local g0 = {0.1, -0.4}
    for i = 1, 2 do worst = math.max(worst, math.abs(g:get(i) - ref(g0[i], {grads[2][i], -0.5 * grads[2][i]}, false))) end
    T.ok(worst < 1e-6, "AdamW two steps match the worked reference (decay on matrices only)", "max diff " .. worst)
    -- clipping: norm of (3, 4) is 5; clipped to 1
    p.grad:fill(0) g.grad:set(3, 1) g.grad:set(4, 2)
    T.near(opt:clip_grad_norm(1.0), 5.0, 1e-6, "clip_grad_norm returns the norm before clipping")
    T.near(opt:grad_norm(), 1.0, 1e-5, "gradients clipped to max_norm")
    local st = opt:state()
    T.is(st.step, 2, "optimiser state holds its step")
    T.ok(st.m.w and st.v.g and st.m.w:numel() == 4, "optimiser state has named moment slices")
end

-- SGD with momentum
do
    local p = blt.tensor({1.0, 2.0}):set_requires_grad()
    local opt = optim.SGD({p}, {lr = 0.5, momentum = 0.9})
    p.grad:set(1, 1) p.grad:set(-2, 2)
    opt:step()
    opt:step() -- buf = 0.9*g + g
    T.near(p:get(1), 1 - 0.5 * 1 - 0.5 * 1.9, 1e-6, "SGD momentum, element 1")
    T.near(p:get(2), 2 + 0.5 * 2 + 0.5 * 3.8, 1e-6, "SGD momentum, element 2")
end

-- schedules
do
    local s = optim.warmup_cosine {peak = 1.0, warmup = 10, total = 110, floor_ratio = 0.1}
    T.near(s(5), 0.5, 1e-12, "warmup is linear")
    T.near(s(10), 1.0, 1e-12, "peak at the end of warmup")
    T.near(s(60), 0.55, 1e-12, "cosine midpoint is halfway to the floor")
    T.near(s(110), 0.1, 1e-12, "cosine ends at the floor")
    local l = optim.linear {peak = 2.0, warmup = 0, total = 100, floor_ratio = 0.0}
    T.near(l(50), 1.0, 1e-12, "linear decay")
    T.near(optim.constant {lr = 0.3} (77), 0.3, 0, "constant")
    T.raises(function() optim.schedule("step") end, "unknown schedule 'step'", "unknown schedule rejected")
    T.raises(function() optim.AdamW({p}, {lr = 1, betas = 2}) end, "unknown option 'betas'", "unknown AdamW option")
end

-- bad layer options name the key
T.raises(function() nn.Attention {dim = 10, heads = 3, seed = 1} end, "heads = 3 must divide dim = 10", "heads must divide dim")
T.raises(function() nn.Linear {in_dim = 3, out_dim = 2, seed = 1, biass = true} end, "unknown option 'biass'", "unknown layer option")
T.raises(function() nn.Linear {in_dim = 3, out_dim = 2} end, "needs 'seed'", "init needs an explicit seed")
T.raises(function() nn.Linear {in_dim = 0, out_dim = 2, seed = 1} end, "'in_dim' must be a positive integer", "bad size")

-- blt.scope frees what it made and keeps what it returns
do
    local w = blt.randn({64, 64}, 1)
    -- earlier tests' garbage collected first: a finaliser run inside the scope would
    -- free blocks counted in `before`
    collectgarbage("collect")
    collectgarbage("collect")
    local before = blt.mem_stats().live
    local kept = core.scope(function()
        local a = blt.matmul(w, w)
        local b = blt.exp(a * 0.001)
        return b:sum()
    end)
    T.ok(core.is_tensor(kept) and kept:numel() == 1, "scope returns its result")
    T.is(blt.mem_stats().live - before, 256, "only the returned scalar stays allocated (one 256-byte block)")
    local leaked
    core.scope(function() leaked = blt.ones({3}) end)
    T.raises(function() return leaked + 1 end, "closed", "a tensor that escapes a scope without being returned is closed")
    T.raises(function() core.scope(function() blt.ones({2}); error("boom") end) end, "boom", "errors pass through scopes")
    T.is(core.scope_depth(), 0, "scopes unwind after an error")
end

T.done()
