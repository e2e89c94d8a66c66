-- MegaByte (Yu et al. 2023; docs/model.md "MegaByte"): fixed patches of P bytes, a
-- global transformer over patches whose input for patch j is the concatenation of the
-- byte embeddings of patch j-1 (a learned start patch for j = 0), and a small local
-- transformer over each patch's bytes, which adds the global model's per-byte vectors
-- to its inputs and predicts every byte of the patch.
--
-- Patches are laid over the targets: inputs [B,T] = [BOS, x1, ...] predict x1.. ; the
-- patch j holds the predictions at positions jP .. jP+P-1, so the bytes it predicts
-- are x_{jP+1} .. x_{jP+P}, and the bytes it may see through the global model are
-- x_1 .. x_{jP} (the previous patches' targets; BOS itself is never read).
-- Parameter names: global.{embed,start,in_proj,layers.<i>.*,norm,out_proj},
-- local.{embed,start,layers.<i>.*,norm,head}.
local core = require "blt.core"
local flops = require "blt.flops"
local nn = require "blt.nn"
local ids = require "blt.ids"
local kvcache = require "blt.kvcache"

local MegaByte = nn.class("MegaByte")
MegaByte.kind = "megabyte"

-- Documented defaults (the config section `model` of experiments/train_megabyte.lua).
MegaByte.defaults = {
    patch = 4,          -- P: bytes per patch
    dim = 128,          -- local width d_L (also the width of both byte embeddings)
    layers = 2,         -- local blocks
    heads = 4,          -- local attention heads
    multiple_of = 256,  -- FFN hidden rounding (both models)
    rope_theta = 10000.0,
    norm_eps = 1e-5,
    global = {dim = 256, layers = 4, heads = 4, window = 0},
}

MegaByte.model_docs = {
    patch = "P: bytes per patch (the global model runs once per P bytes)",
    dim = "local width d_L, also the width of the byte embeddings the global model concatenates",
    layers = "local blocks (causal over one patch's P bytes)", heads = "local attention heads",
    multiple_of = "FFN hidden rounding (local and global blocks)", rope_theta = "RoPE base (both models)",
    norm_eps = "RMSNorm epsilon",
    global = {dim = "global width d_G", layers = "global blocks", heads = "global attention heads",
              window = "global attention window in patches (0: every earlier patch)"},
}

-- Rules for blt.config (keys relative to the model section; integer keys take only
-- integers, as their defaults are).
MegaByte.model_rules = {
    patch = ">= 1", dim = ">= 2", layers = ">= 1", heads = ">= 1", multiple_of = ">= 1",
    rope_theta = "> 0", norm_eps = "> 0 float32",
    ["global.dim"] = ">= 2", ["global.layers"] = ">= 1", ["global.heads"] = ">= 1", ["global.window"] = ">= 0",
}

-- Shapes that must fit together; raises "model.<key> ..." naming the keys.
function MegaByte.check_config(m, where)
    where = where or "model"
    local function int(v, key, min)
        if math.type(v) ~= "integer" or v < min then
            error(("%s.%s must be an integer >= %d, got %s"):format(where, key, min, tostring(v)), 0)
        end
    end
    int(m.patch, "patch", 1); int(m.dim, "dim", 2); int(m.layers, "layers", 1); int(m.heads, "heads", 1)
    int(m.multiple_of, "multiple_of", 1)
    int(m.global.dim, "global.dim", 2); int(m.global.layers, "global.layers", 1); int(m.global.heads, "global.heads", 1)
    int(m.global.window, "global.window", 0)
    nn.check_heads(where, m.dim, m.heads, "dim", "heads")
    nn.check_heads(where, m.global.dim, m.global.heads, "global.dim", "global.heads")
    if type(m.rope_theta) ~= "number" or m.rope_theta <= 0 then error(where .. ".rope_theta must be > 0", 0) end
    if type(m.norm_eps) ~= "number" or m.norm_eps <= 0 then error(where .. ".norm_eps must be > 0", 0) end
end

-- Parameters of a MegaByte of config m, without building it.
function MegaByte.param_count(m)
    local d, dg, P = m.dim, m.global.dim, m.patch
    local function blocks(n, w) return n * (4 * w * w + 3 * w * nn.ffn_hidden(w, m.multiple_of) + 2 * w) end
    return ids.VOCAB * d + P * d + P * d * dg + blocks(m.global.layers, dg) + dg + dg * P * d -- global
        + ids.VOCAB * d + d + blocks(m.layers, d) + d + ids.VOCAB * d                       -- local
end

-- ---- the model kind (blt.models) ----
MegaByte.sections = {model = MegaByte.defaults}
MegaByte.docs = {model = MegaByte.model_docs}
MegaByte.rules = {}
for k, v in pairs(MegaByte.model_rules) do MegaByte.rules["model." .. k] = v end
function MegaByte.check(cfg) MegaByte.check_config(cfg.model) end
function MegaByte.count_params(cfg) return MegaByte.param_count(cfg.model) end
MegaByte.size_keys = {"model.dim", "model.global.dim", "model.global.layers", "model.layers"}

-- Activations of one row of T bytes (blt.memory.estimate): the local blocks, the
-- embeddings, the global output's per-byte vectors, norms and the head per position;
-- the global blocks per patch. A row runs K = ceil(T / P) whole patches (padded).
function MegaByte.activations(cfg, T)
    local memory = require "blt.memory"
    local m = cfg.model
    local K = math.ceil(T / m.patch)
    T = K * m.patch
    return {
        {what = "activations of the local model", floats = T * m.layers * memory.block(m.dim, nn.ffn_hidden(m.dim, m.multiple_of)),
         keys = {"model.layers", "model.dim"}},
        {what = "activations of the global model",
         floats = K * m.global.layers * memory.block(m.global.dim, nn.ffn_hidden(m.global.dim, m.multiple_of)),
         keys = {"model.global.layers", "model.global.dim", "a larger model.patch"}},
        {what = "embeddings, global output, norms and logits", floats = T * (16 * m.dim + memory.head(ids.VOCAB)),
         keys = {"model.dim"}},
    }
end

function MegaByte.build(cfg, seed) return MegaByte.new(cfg.model, seed) end

local function block(w, heads, window, m, rng)
    return nn.TransformerBlock {dim = w, heads = heads, window = window, multiple_of = m.multiple_of,
                                rope_theta = m.rope_theta, norm_eps = m.norm_eps, rng = rng}
end

-- MegaByte.new(model config, seed): missing keys take the defaults.
function MegaByte.new(cfg, seed)
    local m = flops.filled(MegaByte.defaults, cfg or {})
    for k, v in pairs(cfg or {}) do
        if MegaByte.defaults[k] == nil then error(("blt.models.megabyte: unknown config key '%s'"):format(k), 2) end
        if k == "global" and type(v) == "table" then
            for kk in pairs(v) do
                if MegaByte.defaults.global[kk] == nil then
                    error(("blt.models.megabyte: unknown config key 'global.%s'"):format(kk), 2)
                end
            end
        end
    end
    MegaByte.check_config(m)
    if math.type(seed) ~= "integer" then error("blt.models.megabyte: needs an integer seed", 2) end
    local self = nn.Module.new(MegaByte)
    local rng = core.Generator(seed)
    local d, dg, P = m.dim, m.global.dim, m.patch
    self.config = m
    self.last_patch_mean = P -- the trainer logs it as the patch size (fixed)

    local g = self:child("global", nn.Module.new(nn.Module))
    self.g_embed = g:child("embed", nn.Embedding {num = ids.VOCAB, dim = d, rng = rng})
    self.g_start = g:param("start", core.nn_trunc_normal(rng, {P, d}, d ^ -0.5)) -- the start patch's P embeddings
    self.in_proj = g:child("in_proj", nn.Linear {in_dim = P * d, out_dim = dg, rng = rng})
    self.g_layers = {}
    local gl = g:child("layers", nn.Module.new(nn.Module))
    for i = 1, m.global.layers do self.g_layers[i] = gl:child(i - 1, block(dg, m.global.heads, m.global.window, m, rng)) end
    self.g_norm = g:child("norm", nn.RMSNorm {dim = dg, eps = m.norm_eps})
    self.out_proj = g:child("out_proj", nn.Linear {in_dim = dg, out_dim = P * d, rng = rng})

    local l = self:child("local", nn.Module.new(nn.Module))
    self.l_embed = l:child("embed", nn.Embedding {num = ids.VOCAB, dim = d, rng = rng})
    self.l_start = l:param("start", core.nn_trunc_normal(rng, {d}, d ^ -0.5)) -- the local start token
    self.l_layers = {}
    local ll = l:child("layers", nn.Module.new(nn.Module))
    for i = 1, m.layers do self.l_layers[i] = ll:child(i - 1, block(d, m.heads, 0, m, rng)) end -- a patch sees all of itself
    self.norm = l:child("norm", nn.RMSNorm {dim = d, eps = m.norm_eps})
    self.head = l:child("head", nn.Linear {in_dim = d, out_dim = ids.VOCAB, rng = rng})
    return self
end

-- The global model over patch inputs gin [B,K,P*d] -> per-byte vectors [B,K,P*d].
function MegaByte:_global(gin, step)
    local g = self.in_proj:forward(gin)
    for i, layer in ipairs(self.g_layers) do
        if step then g = kvcache.block_step(layer, g, step.caches[i], step.pos) else g = layer:forward(g) end
    end
    return self.out_proj:forward(self.g_norm:forward(g))
end

-- inputs int32 [B,T] -> logits [B,T,260]. T is padded to whole patches with pads
-- (after every real position: they change no earlier output) and cut back.
function MegaByte:forward(inputs)
    local B, T = inputs:size(1), inputs:size(2)
    local m = self.config
    local P, d = m.patch, m.dim
    local K = (T + P - 1) // P
    local x = inputs
    if K * P > T then
        local pad = {}
        for b = 1, B do
            pad[b] = {}
            for i = 1, K * P - T do pad[b][i] = ids.PAD end
        end
        x = core.concat({inputs, core.tensor(pad, "int32")}, 2)
    end
    -- global: patch j reads the embeddings of the inputs jP-P+1 .. jP (the targets of
    -- patch j-1), patch 0 the start patch
    local gin = core.zeros({B, 1, P * d}) + self.g_start:reshape({1, 1, P * d})
    if K > 1 then
        local prev = self.g_embed:forward(core.narrow(x, 2, 2, (K - 1) * P)):reshape({B, K - 1, P * d})
        gin = core.concat({gin, prev}, 2)
    end
    local gout = self:_global(gin):reshape({B * K, P, d})
    -- local: slot 0 the start token, slot p the input jP+p (the target of slot p-1)
    local h = core.zeros({B * K, 1, d}) + self.l_start:reshape({1, 1, d})
    if P > 1 then
        local e = self.l_embed:forward(x):reshape({B * K, P, d})
        h = core.concat({h, core.narrow(e, 2, 2, P - 1)}, 2)
    end
    h = h + gout
    for _, layer in ipairs(self.l_layers) do h = layer:forward(h) end
    local logits = self.head:forward(self.norm:forward(h)):reshape({B, K * P, ids.VOCAB})
    if K * P > T then logits = core.narrow(logits, 2, 1, T) end
    return logits
end

-- rows int32 [B,N] ([BOS, ids...], 0-padded): the mean (or summed) loss of rows[:, 2..N].
function MegaByte:loss(rows, reduction) return nn.next_byte_loss(self, rows, reduction) end

-- ---- one position at a time (generation; blt.generate) ----
-- state = model:start(); logits [1,1,V] = model:step(state, id) feeds the token at the
-- next position (BOS first) and returns the prediction of the one after it, equal to
-- the full forward's row. At the first position of a patch the global model advances
-- one patch (its input: the P ids fed since the previous patch began, the current one
-- last) and its per-byte vectors are kept; the local caches restart with every patch.
function MegaByte:start()
    local m = self.config
    return {pos = 0, recent = {}, gout = nil,
            glob = {caches = kvcache.for_blocks(self.g_layers, m.global.dim), pos = 0},
            loc = kvcache.for_blocks(self.l_layers, m.dim)}
end

function MegaByte:stop(st)
    kvcache.release_all(st.glob.caches)
    kvcache.release_all(st.loc)
    if st.gout then st.gout:release() end
    st.gout = nil
end

function MegaByte:step(st, id)
    kvcache.ensure_all(st.glob.caches)
    kvcache.ensure_all(st.loc)
    local m = self.config
    local P, d = m.patch, m.dim
    local t = st.pos
    local p = t % P
    -- the ids of positions t-P+1 .. t: the global input of a patch starting at t
    st.recent[#st.recent + 1] = id
    if #st.recent > P then table.remove(st.recent, 1) end
    if p == 0 then
        local gout = core.no_grad(function()
            return core.scope(function()
                local gin
                if t == 0 then gin = self.g_start:reshape({1, 1, P * d})
                else gin = self.g_embed:forward(core.tensor({st.recent}, "int32")):reshape({1, 1, P * d}) end
                return self:_global(gin, st.glob):reshape({1, P, d}):contiguous()
            end)
        end)
        st.glob.pos = st.glob.pos + 1
        if st.gout then st.gout:release() end
        st.gout = gout
        for _, c in ipairs(st.loc) do c:reset() end
    end
    return core.no_grad(function()
        return core.scope(function()
            local x
            if p == 0 then x = self.l_start:reshape({1, 1, d})
            else x = self.l_embed:forward(core.tensor({{id}}, "int32")) end
            x = x + core.narrow(st.gout, 2, p + 1, 1)
            for i, layer in ipairs(self.l_layers) do x = kvcache.block_step(layer, x, st.loc[i], p) end
            st.pos = t + 1
            return self.head:forward(self.norm:forward(x))
        end)
    end)
end

-- ---- what the sweeps and blt.flops ask of the kind (blt.models) ----

-- FLOPs per byte (docs/flops.md). opts: seq_len (positions per row), full_context.
-- Components: global (in_proj, the global blocks and out_proj, once per patch of P
-- bytes: K = seq_len / P patches a row), local (its blocks over each patch: a byte's
-- query sees (P+1)/2 keys on average), head.
function MegaByte.model_flops(cfg, opts)
    opts = opts or {}
    local m = flops.filled(MegaByte.defaults, cfg or {})
    local T = flops.need(opts, "seq_len", "megabyte")
    local P, d, dg = m.patch, m.dim, m.global.dim
    local full = opts.full_context
    local gl, ga = flops.block_macs(dg, m.multiple_of, flops.mean_keys(T / P, m.global.window, full))
    local ll, la = flops.block_macs(d, m.multiple_of, flops.mean_keys(P, P, full))
    return flops.assemble(
        {global = 2 * (2 * P * d * dg + m.global.layers * gl) / P, ["local"] = 2 * m.layers * ll, head = 2 * d * ids.VOCAB},
        {global = 2 * m.global.layers * ga / P, ["local"] = 2 * m.layers * la},
        {"global", "local", "head"}, {})
end

function MegaByte.flops(cfg, opts) return MegaByte.model_flops(cfg.model, opts) end
-- all but the two byte embeddings
function MegaByte.scaled_params(cfg) return MegaByte.param_count(cfg.model) - 2 * ids.VOCAB * cfg.model.dim end

-- A baseline of the comparisons (rows `megabyte`): compare_patching at round(target)
-- bytes per patch, the scaling study sized by its global model as the BLTs are.
MegaByte.sweep = {word = "megabyte", family = "megabyte", script = "experiments/train_megabyte.lua", order = 3,
                  patch_size = true} -- takes a patch size (scaling's megabyte:P)
MegaByte.preset_key = "megabyte"
local MB_SMOKE = {dim = 32, layers = 1, heads = 2, multiple_of = 32, global = {dim = 64, layers = 1, heads = 2, window = 0}}
local MB_FULL = {dim = 256, layers = 4, heads = 4, multiple_of = 256, global = {dim = 512, layers = 8, heads = 8, window = 0}}
MegaByte.presets = {
    compare = {
        smoke = MB_SMOKE,
        -- medium, small: the global model of the BLT's budget (docs/experiments.md, "Protocol")
        medium = {dim = 32, layers = 1, heads = 2, multiple_of = 32, global = {dim = 32, layers = 1, heads = 2, window = 0}},
        small = {dim = 32, layers = 1, heads = 2, multiple_of = 32, global = {dim = 64, layers = 2, heads = 2, window = 0}},
        full = MB_FULL,
    },
    -- the global model's width and depth come from the sweep's sizes
    scaling = {smoke = MB_SMOKE, medium = {dim = 32, layers = 1, heads = 2, multiple_of = 32, global = {window = 0}},
               small = {dim = 32, layers = 1, heads = 2, multiple_of = 32, global = {window = 0}},
               full = MB_FULL},
}

-- Its point in a comparison (blt.experiment.model_point): P.megabyte with o.target's
-- patch size (rounded, as fixed patching takes it) and o.size's global width and depth.
function MegaByte.point(P, corpus, o, experiment)
    local m = experiment.deep_copy(P.megabyte)
    m.global = m.global or {}
    if o.target then m.patch = math.max(1, math.floor(o.target + 0.5)) end
    if o.size then
        m.global.dim, m.global.layers = o.size[1], o.size[2]
        m.global.heads = o.heads or experiment.heads_of(o.size[1])
    end
    local run_cfg = {kind = "megabyte", model = m}
    local f = flops.of(run_cfg, {seq_len = P.seq_len + 1})
    return {family = "megabyte", kind = "megabyte", script = MegaByte.sweep.script, args = experiment.flat("model", m),
            mean_patch = flops.filled(MegaByte.defaults, m).patch, run_cfg = run_cfg,
            train_fpb = f.training.total, inference_fpb = f.inference.total}
end

return MegaByte
