-- SpaceByte (Slagle 2024; docs/model.md "SpaceByte"): a byte-level transformer whose
-- local blocks (windowed attention, width d) run at every byte, and whose global blocks
-- (width D >= d) run only at the row's boundary positions: the bytes after which the
-- BLT's space scheme starts a patch (a space-like byte after a word byte, and BOS/EOS),
-- at most global.cap of them per row. A boundary's local vector enters the global
-- blocks zero-padded to D ([0..0, x]); the last d dimensions of their output are added
-- back at that position; the final local blocks, a norm and the head follow.
--
--   local SpaceByte = require "blt.models.spacebyte"
--   local m = SpaceByte.new(model_cfg, seed)
--   m:loss(rows [, "sum"])          rows int32 [B,N] = [BOS, ids...] (0-padded)
--   SpaceByte.positions(list, cap)  the 0-based global positions of a row (Lua array of ids)
-- Parameter names: embed, initial.<i>.*, global.<i>.*, final.<i>.*, norm, head.
local core = require "blt.core"
local flops = require "blt.flops"
local nn = require "blt.nn"
local ids = require "blt.ids"
local kvcache = require "blt.kvcache"

local SpaceByte = nn.class("SpaceByte")
SpaceByte.kind = "spacebyte"

-- Documented defaults (the config section `model` of experiments/train_spacebyte.lua).
SpaceByte.defaults = {
    dim = 128,              -- local width d
    heads = 4,              -- local attention heads
    window = 128,           -- local attention window (bytes)
    initial_layers = 2,     -- local blocks before the global ones
    final_layers = 2,       -- local blocks after them
    multiple_of = 256,      -- FFN hidden rounding (local and global)
    rope_theta = 10000.0,
    norm_eps = 1e-5,
    global = {dim = 256, layers = 4, heads = 4, window = 0, cap = 64},
}

SpaceByte.model_docs = {
    dim = "local width d (the byte embedding, local blocks and head)", heads = "local attention heads",
    window = "local attention window (bytes)", initial_layers = "local blocks before the global blocks",
    final_layers = "local blocks after the global blocks", multiple_of = "FFN hidden rounding",
    rope_theta = "RoPE base", norm_eps = "RMSNorm epsilon",
    global = {dim = "global width D (>= model.dim; the local vector enters zero-padded)",
              layers = "global blocks", heads = "global attention heads",
              window = "global attention window in boundary positions (0: every earlier one)",
              cap = "most boundary positions per row that run the global blocks; later boundaries "
                  .. "are ordinary positions (local blocks only), every byte is still predicted"},
}

local function int_ge(min)
    return function(v) if math.type(v) ~= "integer" or v < min then return ("must be an integer >= %d"):format(min) end end
end

SpaceByte.sections = {model = SpaceByte.defaults}
SpaceByte.docs = {model = SpaceByte.model_docs}
SpaceByte.rules = {
    ["model.dim"] = int_ge(2), ["model.heads"] = int_ge(1), ["model.window"] = int_ge(1),
    ["model.initial_layers"] = int_ge(0), ["model.final_layers"] = int_ge(0), ["model.multiple_of"] = int_ge(1),
    ["model.rope_theta"] = "> 0", ["model.norm_eps"] = "> 0 float32",
    ["model.global.dim"] = int_ge(2), ["model.global.layers"] = int_ge(1), ["model.global.heads"] = int_ge(1),
    ["model.global.window"] = int_ge(0), ["model.global.cap"] = int_ge(1),
}
SpaceByte.size_keys = {"model.dim", "model.global.dim", "model.global.layers"}

-- Shapes that must fit together; raises "model.<key> ..." naming the keys.
function SpaceByte.check_config(m, where)
    where = where or "model"
    nn.check_heads(where, m.dim, m.heads, "dim", "heads")
    nn.check_heads(where, m.global.dim, m.global.heads, "global.dim", "global.heads")
    if m.global.dim < m.dim then
        error(("%s.global.dim = %d is below %s.dim = %d (the local vector is zero-padded to the global width)")
              :format(where, m.global.dim, where, m.dim), 0)
    end
end
function SpaceByte.check(cfg) SpaceByte.check_config(cfg.model) end

local function block_params(w, multiple_of) return 4 * w * w + 3 * w * nn.ffn_hidden(w, multiple_of) + 2 * w end

-- Parameters of a SpaceByte of config m, without building it: embedding and head
-- 260 x d each, the local and global blocks, the final norm.
function SpaceByte.param_count(m)
    return 2 * ids.VOCAB * m.dim + (m.initial_layers + m.final_layers) * block_params(m.dim, m.multiple_of)
        + m.global.layers * block_params(m.global.dim, m.multiple_of) + m.dim
end
function SpaceByte.count_params(cfg) return SpaceByte.param_count(cfg.model) end
-- all but the byte embedding (the head scales with the width as a block does)
function SpaceByte.scaled_params(cfg) return SpaceByte.param_count(cfg.model) - ids.VOCAB * cfg.model.dim end

-- ---- the boundary rule ----
-- The space scheme's patcher (blt.patching, docs/patching.md) is the one definition of
-- space-like bytes: position t is a boundary when the space scheme starts a patch at
-- t + 1 (s[t+1]: id t is BOS/EOS, or a space-like byte after a word byte), and id t is
-- not padding. It reads ids t-1 and t only, so a boundary depends on the past alone.
local SPACE
local function space()
    SPACE = SPACE or require("blt.patching").patcher {scheme = "space"}
    return SPACE
end

-- The first `cap` boundary positions (0-based) of a row (Lua array of ids), ascending.
function SpaceByte.positions(list, cap)
    local s, nx = space():flags(list) -- s[0..N-1] as s[1..N], and s[N]
    local out = {}
    for t = 0, #list - 1 do
        local flag = t + 1 < #list and s[t + 2] == 1 or (t + 1 == #list and nx)
        if flag and list[t + 1] ~= ids.PAD then
            if #out == cap then break end
            out[#out + 1] = t
        end
    end
    return out
end

-- Is the id after `prev` (nil at the row's start) a boundary: the rule above on the
-- row's last two ids (what generation asks at each step).
local function is_boundary(prev, id)
    if id == ids.PAD then return false end
    return space():next_flag(prev and {prev, id} or {id}) ~= false
end
SpaceByte.is_boundary = is_boundary

-- ---- build ----
local function block(w, heads, window, m, rng)
    return nn.TransformerBlock {dim = w, heads = heads, window = window, multiple_of = m.multiple_of,
                                rope_theta = m.rope_theta, norm_eps = m.norm_eps, rng = rng}
end

function SpaceByte.build(cfg, seed) return SpaceByte.new(cfg.model, seed) end

-- SpaceByte.new(model config (every key of SpaceByte.defaults), seed)
function SpaceByte.new(m, seed)
    SpaceByte.check_config(m)
    if math.type(seed) ~= "integer" then error("blt.models.spacebyte: needs an integer seed", 2) end
    local self = nn.Module.new(SpaceByte)
    local rng = core.Generator(seed)
    self.config = m
    self.embed = self:child("embed", nn.Embedding {num = ids.VOCAB, dim = m.dim, rng = rng})
    local function stack(name, n, w, heads, window)
        local list, parent = {}, self:child(name, nn.Module.new(nn.Module))
        for i = 1, n do list[i] = parent:child(i - 1, block(w, heads, window, m, rng)) end
        return list
    end
    self.initial = stack("initial", m.initial_layers, m.dim, m.heads, m.window)
    self.global = stack("global", m.global.layers, m.global.dim, m.global.heads, m.global.window)
    self.final = stack("final", m.final_layers, m.dim, m.heads, m.window)
    self.norm = self:child("norm", nn.RMSNorm {dim = m.dim, eps = m.norm_eps})
    self.head = self:child("head", nn.Linear {in_dim = m.dim, out_dim = ids.VOCAB, rng = rng})
    return self
end

-- Activations of one row of T bytes (blt.memory.estimate): the local blocks per byte,
-- the global blocks at up to global.cap positions.
function SpaceByte.activations(cfg, T)
    local memory = require "blt.memory"
    local m = cfg.model
    local G = math.min(T, m.global.cap)
    return {
        {what = "activations of the local blocks",
         floats = T * (m.initial_layers + m.final_layers) * memory.block(m.dim, nn.ffn_hidden(m.dim, m.multiple_of)),
         keys = {"model.initial_layers", "model.final_layers", "model.dim"}},
        {what = "activations of the global blocks",
         floats = G * m.global.layers * memory.block(m.global.dim, nn.ffn_hidden(m.global.dim, m.multiple_of)),
         keys = {"model.global.layers", "model.global.dim", "model.global.cap"}},
        {what = "embedding, norms and logits", floats = T * (10 * m.dim + memory.head(ids.VOCAB)), keys = {"model.dim"}},
    }
end

-- ---- forward ----

-- The work without gradients on inputs int32 [B,T]: each row's boundary positions,
-- the batch's G (its largest count; shorter rows repeat their last boundary, whose
-- global outputs are dropped: the global attention is causal, so they change nothing),
-- `take` (int32 [B G]: the flat row b T + t of each global position) and `put` (int32
-- [B T]: the flat global row b G + j of a boundary, or B G, a zero row, elsewhere).
function SpaceByte:prepare(inputs)
    local B, T = inputs:size(1), inputs:size(2)
    local rows = inputs:totable()
    local pos, G, real, bytes = {}, 0, 0, 0
    for b = 1, B do
        pos[b] = SpaceByte.positions(rows[b], self.config.global.cap)
        G, real = math.max(G, #pos[b]), real + #pos[b]
        for t = 1, T do if rows[b][t] ~= ids.PAD then bytes = bytes + 1 end end
    end
    local take, put = {}, {}
    for b = 1, B do
        local p = pos[b]
        for t = 1, T do put[(b - 1) * T + t] = B * G end
        for j = 1, G do
            local t = p[math.min(j, #p)] or 0
            take[(b - 1) * G + j] = (b - 1) * T + t
            if j <= #p then put[(b - 1) * T + t + 1] = (b - 1) * G + j - 1 end
        end
    end
    -- bytes per global position (as a BLT's patch size), for the metrics and the FLOPs
    self.last_patch_mean = real > 0 and bytes / real or nil
    return {G = G, positions = pos, take = G > 0 and core.tensor(take, "int32") or nil, put = core.tensor(put, "int32")}
end

-- The global blocks over x [B,G,d] (local vectors at the boundaries): [B,G,d], the last
-- d dimensions of their output.
function SpaceByte:_global(x)
    local d, D = self.config.dim, self.config.global.dim
    local B, G = x:size(1), x:size(2)
    local y = D > d and core.concat({core.zeros({B, G, D - d}), x}, 3) or x
    for _, layer in ipairs(self.global) do y = layer:forward(y) end
    return core.narrow(y, 3, D - d + 1, d)
end

-- inputs int32 [B,T] -> logits [B,T,260]; p: prepare(inputs) (computed when absent).
function SpaceByte:forward(inputs, p)
    p = p or core.no_grad(function() return self:prepare(inputs) end)
    local B, T, d = inputs:size(1), inputs:size(2), self.config.dim
    local h = self.embed:forward(inputs)
    for _, layer in ipairs(self.initial) do h = layer:forward(h) end
    if p.G > 0 then
        local x = core.index_select(h:reshape({B * T, d}), 1, p.take):reshape({B, p.G, d})
        local y = self:_global(x):reshape({B * p.G, d})
        y = core.concat({y, core.zeros({1, d})}, 1) -- row B G: what non-boundary positions add
        h = h + core.index_select(y, 1, p.put):reshape({B, T, d})
    end
    for _, layer in ipairs(self.final) do h = layer:forward(h) end
    return self.head:forward(self.norm:forward(h))
end

-- rows int32 [B,N] ([BOS, ids...], 0-padded): predicts rows[:, 2..N] from rows[:, 1..N-1].
function SpaceByte:loss(rows, reduction) return nn.next_byte_loss(self, rows, reduction) end

-- ---- one position at a time (generation; blt.generate) ----
-- The local blocks advance one position per byte (ring caches of their window); the
-- global blocks advance one boundary position when the byte is a boundary and fewer
-- than global.cap have run; the result equals the full forward's row.
function SpaceByte:start()
    local d, D = self.config.dim, self.config.global.dim
    return {pos = 0, g = 0, prev = nil, initial = kvcache.for_blocks(self.initial, d),
            global = kvcache.for_blocks(self.global, D), final = kvcache.for_blocks(self.final, d)}
end

function SpaceByte:stop(st)
    for _, list in ipairs {st.initial, st.global, st.final} do kvcache.release_all(list) end
end

function SpaceByte:step(st, id)
    for _, list in ipairs {st.initial, st.global, st.final} do kvcache.ensure_all(list) end
    return core.no_grad(function()
        return core.scope(function()
            local m = self.config
            local d, D = m.dim, m.global.dim
            local x = self.embed:forward(core.tensor({{id}}, "int32"))
            for i, layer in ipairs(self.initial) do x = kvcache.block_step(layer, x, st.initial[i], st.pos) end
            if st.g < m.global.cap and is_boundary(st.prev, id) then
                local y = D > d and core.concat({core.zeros({1, 1, D - d}), x}, 3) or x
                for i, layer in ipairs(self.global) do y = kvcache.block_step(layer, y, st.global[i], st.g) end
                x = x + core.narrow(y, 3, D - d + 1, d)
                st.g = st.g + 1
            end
            for i, layer in ipairs(self.final) do x = kvcache.block_step(layer, x, st.final[i], st.pos) end
            st.pos, st.prev = st.pos + 1, id
            return self.head:forward(self.norm:forward(x))
        end)
    end)
end

-- Prompts are read PREFILL_CHUNK bytes at a time (blt.generate): per chunk the local
-- blocks over its bytes, the global blocks over its boundaries, each after what their
-- caches hold, so the work is linear in the prompt and the memory bounded by the chunk.
SpaceByte.PREFILL_CHUNK = 512

function SpaceByte:prefill(st, list)
    if st.pos ~= 0 then error("blt.models.spacebyte: prefill needs a fresh state", 2) end
    if #list == 0 then error("blt.models.spacebyte: prefill needs at least one id", 2) end
    local logits
    for a = 1, #list, SpaceByte.PREFILL_CHUNK do
        local b = math.min(#list, a + SpaceByte.PREFILL_CHUNK - 1)
        for _, caches in ipairs {st.initial, st.global, st.final} do kvcache.ensure_all(caches, b - a + 1) end
        logits = core.no_grad(function()
            return core.scope(function() return self:_prefill_chunk(st, list, a, b) end)
        end)
    end
    return logits
end

-- list[a..b] from the state's position (inside no_grad and a scope): the logits
-- [1,1,V] after list[b].
function SpaceByte:_prefill_chunk(st, list, a, b)
    local m = self.config
    local d, D, n = m.dim, m.global.dim, b - a + 1
    local x = self.embed:forward(core.tensor({table.move(list, a, b, 1, {})}, "int32"))
    for i, layer in ipairs(self.initial) do x = kvcache.block_chunk(layer, x, st.initial[i], st.pos) end
    local take, put, prev = {}, {}, st.prev
    for i = a, b do
        put[i - a + 1] = -1
        if st.g + #take < m.global.cap and is_boundary(prev, list[i]) then
            take[#take + 1] = i - a
            put[i - a + 1] = #take - 1
        end
        prev = list[i]
    end
    local k = #take
    if k > 0 then
        local xs = core.index_select(x:reshape({n, d}), 1, core.tensor(take, "int32")):reshape({1, k, d})
        local y = D > d and core.concat({core.zeros({1, k, D - d}), xs}, 3) or xs
        for i, layer in ipairs(self.global) do y = kvcache.block_chunk(layer, y, st.global[i], st.g) end
        y = core.concat({core.narrow(y, 3, D - d + 1, d):reshape({k, d}), core.zeros({1, d})}, 1)
        for i = 1, n do if put[i] < 0 then put[i] = k end end -- row k: zeros
        x = x + core.index_select(y, 1, core.tensor(put, "int32")):reshape({1, n, d})
    end
    for i, layer in ipairs(self.final) do x = kvcache.block_chunk(layer, x, st.final[i], st.pos) end
    st.pos, st.g, st.prev = st.pos + n, st.g + k, prev
    return self.head:forward(self.norm:forward(core.narrow(x, 2, n, 1)))
end

-- ---- FLOPs per byte (docs/flops.md; the shared parts in blt.flops) ----
-- opts: seq_len (positions per row), mean_patch (bytes per global position: the
-- measured boundary rate's inverse, as the trainer logs it in patch_mean),
-- full_context. The global blocks run at G = min(seq_len / mean_patch, global.cap)
-- positions of a row, charged per byte as G / seq_len of their per-position cost.
-- Components: initial, global, final (blocks), head.
function SpaceByte.model_flops(cfg, opts)
    opts = opts or {}
    local m = flops.filled(SpaceByte.defaults, cfg or {})
    local T, p = flops.need(opts, "seq_len", "spacebyte"), flops.need(opts, "mean_patch", "spacebyte")
    local full = opts.full_context
    local G = math.min(T / p, m.global.cap)
    local lin, att = {}, {}
    local l, a = flops.block_macs(m.dim, m.multiple_of, flops.mean_keys(T, m.window, full))
    lin.initial, att.initial = 2 * m.initial_layers * l, 2 * m.initial_layers * a
    lin.final, att.final = 2 * m.final_layers * l, 2 * m.final_layers * a
    l, a = flops.block_macs(m.global.dim, m.multiple_of, flops.mean_keys(G, m.global.window, full))
    lin.global, att.global = 2 * m.global.layers * l * G / T, 2 * m.global.layers * a * G / T
    lin.head = 2 * m.dim * ids.VOCAB
    return flops.assemble(lin, att, {"initial", "global", "final", "head"}, {})
end

function SpaceByte.flops(cfg, opts) return SpaceByte.model_flops(cfg.model, opts) end

-- Bytes per global position on a training sample of a comparison (P.seq_len-byte
-- windows, P.calib_bytes of them, seed 1), with the cap: measured once per corpus.
local rate_cache = {}
function SpaceByte.sample_mean_patch(corpus, P, cap)
    local key = table.concat({tostring(corpus), P.seq_len, P.calib_bytes, cap}, " ")
    if rate_cache[key] then return rate_cache[key] end
    local rows = corpus:sample_windows {split = "train", len = P.seq_len, bytes = P.calib_bytes, seed = 1}
    local n, g = 0, 0
    for _, r in ipairs(rows:totable()) do
        local list = table.move(r, 1, #r - 1, 1, {}) -- the inputs: the row but its last id
        n, g = n + #list, g + #SpaceByte.positions(list, cap)
    end
    rate_cache[key] = n / math.max(1, g)
    return rate_cache[key]
end

-- ---- the comparisons (blt.experiment.model_point) ----
SpaceByte.sweep = {word = "spacebyte", family = "spacebyte", script = "experiments/train_spacebyte.lua", order = 3}
SpaceByte.preset_key = "spacebyte"
-- The local parts follow the BLT's budgets (local width, windows). cap: a quarter of the
-- row or more (the KJV text has a boundary every ~5 bytes, so it is rarely reached).
-- The scaling budgets' local width is at most their smallest global width (D >= d).
local SB_SMOKE = {dim = 32, heads = 2, window = 64, initial_layers = 1, final_layers = 1, multiple_of = 32,
                  global = {dim = 64, layers = 1, heads = 2, cap = 32}}
SpaceByte.presets = {
    compare = {
        smoke = SB_SMOKE,
        -- medium, small: the global model of the BLT's budget (docs/experiments.md, "Protocol"),
        -- local blocks narrower than it, a cap of a quarter of the row (seq_len 128, 256)
        medium = {dim = 16, heads = 1, window = 128, initial_layers = 1, final_layers = 1, multiple_of = 16,
                  global = {dim = 32, layers = 1, heads = 2, cap = 32}},
        small = {dim = 32, heads = 2, window = 256, initial_layers = 1, final_layers = 1, multiple_of = 32,
                 global = {dim = 64, layers = 2, heads = 2, cap = 64}},
        full = {dim = 256, heads = 4, window = 256, initial_layers = 2, final_layers = 2, multiple_of = 256,
                global = {dim = 512, layers = 8, heads = 8, cap = 128}},
    },
    -- the global width and depth come from the sweep's sizes
    scaling = {
        smoke = SB_SMOKE,
        medium = {dim = 16, heads = 1, window = 128, initial_layers = 1, final_layers = 1, multiple_of = 16,
                  global = {dim = 32, layers = 1, heads = 2, cap = 32}},
        small = {dim = 32, heads = 2, window = 128, initial_layers = 1, final_layers = 1, multiple_of = 32,
                 global = {dim = 128, layers = 2, heads = 4, cap = 64}},
        full = {dim = 128, heads = 4, window = 256, initial_layers = 2, final_layers = 2, multiple_of = 128,
                global = {dim = 256, layers = 4, heads = 8, cap = 128}},
    },
}

-- Its point in a comparison: P.spacebyte, with o.size as the global width and depth
-- (matched by global size, as the BLTs are; the local width stays the budget's, and a
-- global width below it is raised to it), the boundary rate measured on the sample.
function SpaceByte.point(P, corpus, o, experiment)
    local m = {}
    for k, v in pairs(P.spacebyte) do m[k] = type(v) == "table" and experiment.sized(v, nil) or v end -- a copy
    if o.size then
        m.global = m.global or {}
        m.global.dim, m.global.layers = math.max(o.size[1], m.dim or SpaceByte.defaults.dim), o.size[2]
        m.global.heads = o.heads or experiment.heads_of(m.global.dim)
    end
    local full = flops.filled(SpaceByte.defaults, m)
    local mean = SpaceByte.sample_mean_patch(corpus, P, full.global.cap)
    local run_cfg = {kind = "spacebyte", model = m}
    local f = flops.of(run_cfg, {seq_len = P.seq_len + 1, mean_patch = mean})
    return {family = "spacebyte", kind = "spacebyte", script = SpaceByte.sweep.script, args = experiment.flat("model", m),
            mean_patch = mean, run_cfg = run_cfg, train_fpb = f.training.total, inference_fpb = f.inference.total}
end

return SpaceByte
