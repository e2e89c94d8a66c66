package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local blt = require "blt"
local core = require "blt.core"
local flops = require "blt.flops"
local patching = require "blt.patching"
local BLT = require "blt.models.blt"
local ByteLM = require "blt.models.bytelm"

-- The FLOP formulae of lua/blt/flops.lua (docs/flops.md) against the multiply-adds
-- the core executes (core.mac_counter): matrix products outside attention against
-- f.linear, and attention's allowed (query, key) pairs against f.attention, per
-- component of one forward and in total over a forward and backward.
local TOL = 0.02 -- the brief's bound; with the batch's own patch count the match is exact

local function rel(got, want)
    if want == 0 then return got == 0 and 0 or math.huge end
    return math.abs(got - want) / want
end

local function counter() return core.mac_counter() end

local function diff(a, b)
    return {matmul = b.matmul - a.matmul, attention = b.attention - a.attention,
            attention_useful = b.attention_useful - a.attention_useful}
end

-- ---- the counter itself ----
do
    core.mac_counter_reset()
    local c = counter()
    T.is(c.matmul + c.attention + c.attention_useful, 0, "mac_counter_reset zeroes the counter")
    core.no_grad(function() return blt.matmul(blt.randn({3, 5}, 1), blt.randn({5, 7}, 2)) end)
    T.is(counter().matmul, 3 * 5 * 7, "matmul [3,5] x [5,7]: 105 multiply-adds")
    core.mac_counter_reset()
    core.no_grad(function() return blt.matmul(blt.randn({4, 3, 5}, 1), blt.randn({4, 5, 2}, 2)) end)
    T.is(counter().matmul, 4 * 3 * 5 * 2, "batched matmul: 4 products of 3x5x2")
    -- attention of one head, causal over 70 positions of width 8: 70*71/2 pairs, 2 products each
    core.mac_counter_reset()
    local q = blt.randn({1, 70, 8}, 3)
    core.no_grad(function() return blt.attention(q, q, q, {heads = 1, causal = true}) end)
    c = counter()
    T.is(c.attention_useful, 2 * 8 * (70 * 71 // 2), "causal attention: useful multiply-adds = 2 hd pairs")
    T.ok(c.attention >= c.attention_useful, "attention executes at least the useful products",
         ("%d < %d"):format(c.attention, c.attention_useful))
    T.is(c.matmul, 0, "attention's block products are not counted as matmul")
end

-- rows of bytes: a row is BOS then byte + 4
local function rows_of(texts, len)
    local out = {}
    for b, s in ipairs(texts) do
        local r = {1}
        for i = 1, len - 1 do r[i + 1] = s:byte((i - 1) % #s + 1) + 4 end
        out[b] = r
    end
    return core.tensor(out, "int32")
end

-- Wraps the forward of each module of a component so that its multiply-adds add up
-- under that component (forward only: backward runs as one graph).
local function instrument(model)
    local acc = {}
    local function wrap(mod, comp)
        if not mod then return end
        acc[comp] = acc[comp] or {matmul = 0, attention = 0, attention_useful = 0}
        local orig = mod.forward
        mod.forward = function(self, ...)
            local before = counter()
            local out = orig(self, ...)
            local d = diff(before, counter())
            for k, v in pairs(d) do acc[comp][k] = acc[comp][k] + v end
            return out
        end
    end
    for _, l in ipairs(model.enc_layers) do wrap(l, "encoder") end
    wrap(model.pool_proj, "cross")
    for _, c in pairs(model.enc_cross) do wrap(c, "cross") end
    wrap(model.in_proj, "global")
    for _, l in ipairs(model.glob_layers) do wrap(l, "global") end
    wrap(model.patch_proj, "cross")
    for _, c in pairs(model.dec_cross) do wrap(c, "cross") end
    for _, l in ipairs(model.dec_layers) do wrap(l, "decoder") end
    wrap(model.head, "head")
    wrap(model.entropy_model, "entropy")
    return acc
end

local function merged(m)
    local out = {}
    for k, v in pairs(BLT.defaults) do
        if type(v) == "table" then
            out[k] = {}
            for kk, vv in pairs(v) do out[k][kk] = vv end
            for kk, vv in pairs(m[k] or {}) do out[k][kk] = vv end
        else
            out[k] = m[k] == nil and v or m[k]
        end
    end
    return out
end

-- One BLT case: forward per component, then forward + backward in total.
local function check_blt(name, m, patcher, texts, len, opts)
    opts = opts or {}
    m = merged(m)
    local model = BLT.new(m, 7, {patcher = patcher, entropy_model = opts.entropy_model})
    local acc = instrument(model)
    local inputs = rows_of(texts, len)
    local B = inputs:size(1)
    core.mac_counter_reset()
    local p = model:prepare(inputs)
    -- mean patch from the batch: positions per patch the model runs (its padded count P)
    local mean_patch = len / p.P
    local counts, real = p.counts:totable(), 0
    for _, c in ipairs(counts) do real = real + c end
    local f = flops.blt(m, {seq_len = len, mean_patch = mean_patch,
                            entropy = opts.entropy_model and opts.entropy_model.config})
    core.no_grad(function() return model:forward(inputs, p) end)
    local bytes = B * len
    for _, comp in ipairs(f.components) do
        local got = acc[comp] or {matmul = 0, attention_useful = 0, attention = 0}
        local want_l, want_a = f.linear[comp] / 2 * bytes, f.attention[comp] / 2 * bytes
        if want_l > 0 or got.matmul > 0 then
            T.ok(rel(got.matmul, want_l) <= TOL, ("%s: %s linear within 2%%"):format(name, comp),
                 ("executed %d, formula %.1f"):format(got.matmul, want_l))
            T.diag(("%-26s %-8s linear    executed %10d formula %12.1f  rel %.2e"):format(name, comp, got.matmul,
                   want_l, rel(got.matmul, want_l)))
        end
        if want_a > 0 or got.attention_useful > 0 then
            T.ok(rel(got.attention_useful, want_a) <= TOL, ("%s: %s attention pairs within 2%%"):format(name, comp),
                 ("useful %d, formula %.1f"):format(got.attention_useful, want_a))
            T.diag(("%-26s %-8s attention useful   %10d formula %12.1f  rel %.2e  (executed %d: x%.2f)"):format(
                   name, comp, got.attention_useful, want_a, rel(got.attention_useful, want_a), got.attention,
                   got.attention / math.max(1, got.attention_useful)))
        end
    end
    if real ~= B * p.P then
        local true_mean = flops.blt(m, {seq_len = len, mean_patch = B * len / real,
                                        entropy = opts.entropy_model and opts.entropy_model.config})
        T.diag(("%s: %d patches padded to %d: the formula at the true mean %.3f is %.1f%% below what runs"):format(
               name, real, B * p.P, B * len / real, 100 * (1 - true_mean.forward.total / f.forward.total)))
    end
    -- forward + backward: linear maps 3 x forward (dX and dW per product); attention's
    -- backward makes 5 block products per visited block (S recomputed, dV, dP, dQ, dK)
    -- against the forward's 2, so its allowed pairs cost 3.5 x forward, not the 3 x
    -- that the convention charges (docs/flops.md)
    core.mac_counter_reset()
    local loss = core.cross_entropy(model:forward(inputs, p), inputs, {reduction = "sum"})
    loss:backward()
    local c = counter()
    local trained_l = f.linear.total - (f.linear.entropy or 0)
    local trained_a = f.attention.total - (f.attention.entropy or 0)
    T.ok(rel(c.matmul, 3 * trained_l / 2 * bytes) <= TOL, name .. ": forward+backward linear = 3 x forward",
         ("executed %d, 3 x formula %.1f"):format(c.matmul, 3 * trained_l / 2 * bytes))
    T.ok(rel(c.attention_useful, 3.5 * trained_a / 2 * bytes) <= TOL,
         name .. ": forward+backward attention pairs = 3.5 x forward",
         ("useful %d, 3.5 x formula %.1f"):format(c.attention_useful, 3.5 * trained_a / 2 * bytes))
    T.diag(("%-26s training linear %d vs %.1f (rel %.2e); attention useful %d vs 3.5x %.1f (rel %.2e)"):format(
           name, c.matmul, 3 * trained_l / 2 * bytes, rel(c.matmul, 3 * trained_l / 2 * bytes), c.attention_useful,
           3.5 * trained_a / 2 * bytes, rel(c.attention_useful, 3.5 * trained_a / 2 * bytes)))
    model:zero_grad()
end

local small = {dim = 32, heads = 2, multiple_of = 32, cross = {heads = 2}, rope_theta = 10000.0}
local function cfg(over)
    local m = {}
    for k, v in pairs(small) do m[k] = v end
    for k, v in pairs(over) do m[k] = v end
    return m
end

local fixed4 = patching.patcher{scheme = "fixed", size = 4}
local space = patching.patcher{scheme = "space"}
local lorem = {"the quick brown fox jumps over the lazy dog; ", "pack my box with five dozen liquor jugs now! "}

check_blt("k1 every hash fixed4", cfg {k = 1,
    encoder = {layers = 2, window = 16, cross_every_layer = true},
    global = {dim = 48, layers = 2, heads = 2, window = 0},
    decoder = {layers = 2, window = 16, cross_every_layer = true},
    hash = {ngrams = "3,4", buckets = 64}}, fixed4, lorem, 65)

check_blt("k2 once nohash fixed4", cfg {k = 2,
    encoder = {layers = 2, window = 80, cross_every_layer = false},
    global = {dim = 64, layers = 1, heads = 2, window = 0},
    decoder = {layers = 2, window = 24, cross_every_layer = false},
    hash = {ngrams = "3", buckets = 0}}, fixed4, lorem, 150)

check_blt("k2 every hash globalwin", cfg {k = 2,
    encoder = {layers = 1, window = 8, cross_every_layer = true},
    global = {dim = 48, layers = 2, heads = 2, window = 3},
    decoder = {layers = 1, window = 8, cross_every_layer = true},
    hash = {ngrams = "3,5", buckets = 32}}, fixed4, lorem, 97)

-- space patches: rows with the same number of patches (no padding), then rows with
-- different numbers (the batch runs at its largest count: the formula at the batch's
-- padded mean agrees, the true mean undercounts by the padding)
check_blt("k2 every hash space", cfg {k = 2,
    encoder = {layers = 1, window = 32, cross_every_layer = true},
    global = {dim = 64, layers = 2, heads = 2, window = 0},
    decoder = {layers = 2, window = 32, cross_every_layer = true},
    hash = {ngrams = "3,4", buckets = 64}}, space, {"abc de fgh ij ", "klm no pqr st "}, 57)
check_blt("k1 once space unequal", cfg {k = 1,
    encoder = {layers = 2, window = 32, cross_every_layer = false},
    global = {dim = 48, layers = 1, heads = 2, window = 0},
    decoder = {layers = 1, window = 32, cross_every_layer = true},
    hash = {ngrams = "3", buckets = 16}}, space, {"a b c d e f ", "abcdefghij klmnop "}, 80)

-- entropy patching online: the entropy model's forward is charged once
do
    local em = ByteLM.new({dim = 16, layers = 1, heads = 2, window = 24, multiple_of = 16}, 3)
    check_blt("k2 entropy online", cfg {k = 2,
        encoder = {layers = 1, window = 16, cross_every_layer = false},
        global = {dim = 64, layers = 1, heads = 2, window = 0},
        decoder = {layers = 1, window = 16, cross_every_layer = true},
        hash = {ngrams = "3", buckets = 16}}, patching.patcher{scheme = "entropy", threshold = 5.09}, lorem, 70,
        {entropy_model = em})
end

-- ---- ByteLM ----
do
    local m = {dim = 32, layers = 2, heads = 2, window = 40, multiple_of = 32}
    local model = ByteLM.new(m, 5)
    local len = 130
    local inputs = rows_of(lorem, len)
    local bytes = inputs:size(1) * len
    local f = flops.bytelm(m, {seq_len = len})
    T.ok(rel(f.training.total, model:flops_per_byte(len)) < 1e-12, "flops.bytelm training = ByteLM:flops_per_byte",
         ("%.6g vs %.6g"):format(f.training.total, model:flops_per_byte(len)))
    core.mac_counter_reset()
    core.no_grad(function() return model:forward(inputs) end)
    local c = counter()
    T.ok(rel(c.matmul, f.linear.total / 2 * bytes) <= TOL, "bytelm: forward linear within 2%",
         ("executed %d, formula %.1f"):format(c.matmul, f.linear.total / 2 * bytes))
    T.ok(rel(c.attention_useful, f.attention.total / 2 * bytes) <= TOL, "bytelm: forward attention pairs within 2%",
         ("useful %d, formula %.1f"):format(c.attention_useful, f.attention.total / 2 * bytes))
    T.diag(("bytelm forward: linear %d vs %.1f; attention useful %d vs %.1f (executed %d: x%.2f)"):format(
           c.matmul, f.linear.total / 2 * bytes, c.attention_useful, f.attention.total / 2 * bytes, c.attention,
           c.attention / c.attention_useful))
    core.mac_counter_reset()
    model:loss(core.concat({inputs, core.narrow(inputs, 2, 1, 1)}, 2), "sum"):backward()
    c = counter()
    T.ok(rel(c.matmul, 3 * f.linear.total / 2 * bytes) <= TOL, "bytelm: forward+backward linear = 3 x forward",
         ("executed %d, formula %.1f"):format(c.matmul, 3 * f.linear.total / 2 * bytes))
    T.ok(rel(c.attention_useful, 3.5 * f.attention.total / 2 * bytes) <= TOL,
         "bytelm: forward+backward attention pairs = 3.5 x forward",
         ("useful %d, formula %.1f"):format(c.attention_useful, 3.5 * f.attention.total / 2 * bytes))
end

-- ---- the formula's own properties ----
do
    local d = flops.blt({}, {seq_len = 512, mean_patch = 4.5})
    local sum = 0
    for _, c in ipairs(d.components) do sum = sum + d.training[c] end
    T.ok(rel(sum, d.training.total) < 1e-12, "training total is the sum of its components")
    T.is(d.training.entropy, 0, "no entropy model: its cost is 0")
    T.ok(rel(d.training.total, 3 * d.inference.total) < 1e-12, "training = 3 x inference without an entropy model")
    local e = flops.blt({}, {seq_len = 512, mean_patch = 4.5, entropy = {dim = 64, layers = 2}})
    T.ok(rel(e.training.entropy, e.inference.entropy) < 1e-12, "the entropy model is charged forward only in training")
    local g2 = flops.blt({}, {seq_len = 512, mean_patch = 9})
    T.ok(rel(g2.linear.global, d.linear.global / 2) < 1e-12, "global linear maps halve when the patch doubles")
    T.ok(g2.encoder == nil or rel(g2.training.encoder, d.training.encoder) < 1e-12, "the encoder does not depend on the patch size")
    local full = flops.blt({}, {seq_len = 512, mean_patch = 4.5, full_context = true})
    T.ok(full.attention.encoder > d.attention.encoder and rel(full.attention.encoder, d.attention.encoder
         * BLT.defaults.encoder.window / flops.mean_keys(512, BLT.defaults.encoder.window)) < 1e-12,
         "full_context charges every query the whole window")
    T.ok(rel(blt.flops({kind = "blt", model = {}}, {seq_len = 512, mean_patch = 4.5}).training.total, d.training.total) < 1e-12,
         "blt.flops dispatches on cfg.kind")
    T.ok(rel(blt.flops({kind = "bytelm", model = {}}, {seq_len = 512}).training.total,
             ByteLM.new({}, 1):flops_per_byte(512)) < 1e-12, "blt.flops on a bytelm run config")
    T.raises(function() flops.blt({}, {seq_len = 512}) end, "mean_patch", "flops.blt needs mean_patch")
end

T.done()
