-- ByteLM: the plain byte-level transformer (the `byte` scheme, and the entropy
-- model of docs/model.md): embedding (260), pre-norm blocks with sliding-window
-- causal attention, final RMSNorm, head. Parameter names: embed, layers.<i>.*, norm, head.
local core = require "blt.core"
local flops = require "blt.flops"
local nn = require "blt.nn"
local ids = require "blt.ids"
local kvcache = require "blt.kvcache"

local ByteLM = nn.class("ByteLM")

ByteLM.VOCAB = ids.VOCAB
ByteLM.PAD, ByteLM.BOS, ByteLM.EOS = ids.PAD, ids.BOS, ids.EOS

-- Documented defaults (also the config section `model` of the training scripts).
ByteLM.defaults = {
    dim = 256,          -- width d
    layers = 4,         -- transformer blocks
    heads = 4,          -- attention heads (must divide dim into even head sizes)
    window = 512,       -- sliding attention window (query t sees keys t-window < j <= t)
    multiple_of = 256,  -- FFN hidden rounding (docs/model.md)
    rope_theta = 10000.0,
    norm_eps = 1e-5,
}

ByteLM.model_docs = {
    dim = "width d", layers = "transformer blocks", heads = "attention heads (divide dim into even sizes)",
    window = "sliding attention window", multiple_of = "FFN hidden rounding", rope_theta = "RoPE base",
    norm_eps = "RMSNorm epsilon",
}

function ByteLM.check_config(m, where)
    where = where or "model"
    local function int(k, min)
        if math.type(m[k]) ~= "integer" or m[k] < min then
            error(("%s.%s must be an integer >= %d, got %s"):format(where, k, min, tostring(m[k])), 0)
        end
    end
    int("dim", 2); int("layers", 1); int("heads", 1); int("window", 1); int("multiple_of", 1)
    if m.dim % m.heads ~= 0 then
        error(("%s.heads = %d does not divide %s.dim = %d"):format(where, m.heads, where, m.dim), 0)
    end
    if (m.dim // m.heads) % 2 ~= 0 then
        error(("%s.dim / %s.heads = %d must be even (RoPE rotates pairs)"):format(where, where, m.dim // m.heads), 0)
    end
    if type(m.rope_theta) ~= "number" or m.rope_theta <= 0 then error(where .. ".rope_theta must be > 0", 0) end
    if type(m.norm_eps) ~= "number" or m.norm_eps <= 0 then error(where .. ".norm_eps must be > 0", 0) end
end

-- Parameters of a ByteLM of config m, without building it (a size check before any
-- allocation): embedding and head 260 x dim each, per block 4 dim^2 (attention)
-- + 3 dim hidden (SwiGLU) + 2 dim (norms), and the final norm.
function ByteLM.param_count(m)
    local hidden = nn.ffn_hidden(m.dim, m.multiple_of)
    return 2 * ByteLM.VOCAB * m.dim + m.layers * (4 * m.dim * m.dim + 3 * m.dim * hidden + 2 * m.dim) + m.dim
end

-- ---- the model kind "bytelm" (blt.models) ----
ByteLM.kind = "bytelm"
ByteLM.sections = {model = ByteLM.defaults}
ByteLM.docs = {model = ByteLM.model_docs}
ByteLM.rules = {["model.norm_eps"] = "> 0 float32"} -- RMSNorm receives it as a float
function ByteLM.check(cfg) ByteLM.check_config(cfg.model) end
function ByteLM.count_params(cfg) return ByteLM.param_count(cfg.model) end
ByteLM.size_keys = {"model.dim", "model.layers"}

-- Floats a forward of one row keeps per position (blt.memory): the blocks, the
-- embedding and norms (about 10 dim), the head over `vocab` ids.
function ByteLM.position_floats(m, vocab)
    local memory = require "blt.memory"
    return m.layers * memory.block(m.dim, nn.ffn_hidden(m.dim, m.multiple_of)), 10 * m.dim + memory.head(vocab)
end

-- Activations of one row of T positions (blt.memory.estimate).
function ByteLM.activations(cfg, T)
    local blocks, head = ByteLM.position_floats(cfg.model, ByteLM.VOCAB)
    return {{what = "activations of the blocks", floats = T * blocks, keys = {"model.layers", "model.dim"}},
            {what = "embedding, norms and logits", floats = T * head, keys = {"model.dim"}}}
end
function ByteLM.build(cfg, seed) return ByteLM.new(cfg.model, seed) end

-- A model config over ByteLM.defaults, checked, and the seed checked: what ByteLM.new
-- and the models built on its blocks (bpe_lm) start from. Errors name `who`.
function ByteLM.resolve(cfg, seed, who)
    local m = {}
    for k, v in pairs(ByteLM.defaults) do m[k] = v end
    for k, v in pairs(cfg or {}) do
        if ByteLM.defaults[k] == nil then error(("blt.models.%s: unknown config key '%s'"):format(who, k), 3) end
        m[k] = v
    end
    ByteLM.check_config(m)
    if math.type(seed) ~= "integer" then error(("blt.models.%s: needs an integer seed"):format(who), 3) end
    return m
end

-- The transformer every ByteLM-shaped model has, as children of self (parameter names
-- embed, layers.<i>.*, norm, head): an embedding and a head over `vocab` ids, m.layers
-- blocks. Shared with bpe_lm (its vocabulary is the tokenizer's).
function ByteLM.add_body(self, m, vocab, rng)
    self.embed = self:child("embed", nn.Embedding {num = vocab, dim = m.dim, rng = rng})
    self.layers = {}
    local layers = self:child("layers", nn.Module.new(nn.Module))
    for i = 0, m.layers - 1 do
        self.layers[i + 1] = layers:child(i, nn.TransformerBlock {
            dim = m.dim, heads = m.heads, window = m.window, multiple_of = m.multiple_of,
            rope_theta = m.rope_theta, norm_eps = m.norm_eps, rng = rng})
    end
    self.norm = self:child("norm", nn.RMSNorm {dim = m.dim, eps = m.norm_eps})
    self.head = self:child("head", nn.Linear {in_dim = m.dim, out_dim = vocab, rng = rng})
end

-- ByteLM.new(config, seed): config keys as in ByteLM.defaults (missing ones take the default).
function ByteLM.new(cfg, seed)
    local m = ByteLM.resolve(cfg, seed, "ByteLM")
    local self = nn.Module.new(ByteLM)
    local rng = core.Generator(seed)
    self.config = m
    ByteLM.add_body(self, m, ByteLM.VOCAB, rng)
    return self
end

-- ids int32 [B,T] -> logits [B,T,260]; segments (optional int32 [B,T]) restrict
-- attention to keys of the same segment (reset_on_newline).
function ByteLM:forward(ids, segments)
    local h = self.embed:forward(ids)
    for _, layer in ipairs(self.layers) do h = layer:forward(h, nil, segments) end
    return self.head:forward(self.norm:forward(h))
end

-- rows int32 [B,N] ([BOS, ids...], 0-padded): predicts rows[:, 2..N] from rows[:, 1..N-1].
-- Returns the mean loss (nats) over non-pad targets, and the summed loss and
-- count when sum = true (for bits per byte, docs/model.md).
function ByteLM:loss(rows, reduction) return nn.next_byte_loss(self, rows, reduction) end

-- Next-byte entropies in nats (docs/model.md): e[b][t] is the entropy of the
-- predicted distribution for token t+1, computed from tokens <= t. rows int32 [B,T]
-- -> float32 [B,T]. No gradients are recorded. Always with fp32 products (whatever
-- train.precision is): the entropies place a BLT's patch boundaries, which then do not
-- depend on the precision it is trained or evaluated in.
function ByteLM:entropies(rows, segments)
    return ByteLM.in_fp32(core.no_grad, function()
        return core.scope(function()
            return core.softmax_entropy(self:forward(rows, segments))
        end)
    end)
end

-- fn(...) with fp32 products, the precision restored after (also on an error): the
-- entropy model's work, whose entropies place patch boundaries (entropies above, and a
-- BLT's generation steps).
function ByteLM.in_fp32(fn, ...)
    local prec = core.precision()
    if prec == "fp32" then return fn(...) end
    core.set_precision("fp32")
    local ok, r = pcall(fn, ...)
    core.set_precision(prec)
    if not ok then error(r, 0) end
    return r
end

-- ---- one position at a time (generation; blt.generate) ----
-- state = model:start(); logits [1,1,V] = model:step(state, id) feeds the token at the
-- next position (BOS first) and returns the prediction of the one after it; the result
-- equals the full forward's row. model:stop(state) frees the caches. Each step runs
-- without gradients in a scope of its own (its temporaries are freed when it returns);
-- the caches live outside it.
function ByteLM:start()
    return {pos = 0, caches = kvcache.for_blocks(self.layers, self.config.dim)}
end

function ByteLM:step(state, id)
    kvcache.ensure_all(state.caches)
    return core.no_grad(function()
        return core.scope(function()
            local x = self.embed:forward(core.tensor({{id}}, "int32"))
            for i, layer in ipairs(self.layers) do x = kvcache.block_step(layer, x, state.caches[i], state.pos) end
            state.pos = state.pos + 1
            return self.head:forward(self.norm:forward(x))
        end)
    end)
end

-- Prompts are read PREFILL_CHUNK positions at a time: each chunk's attention sees at
-- most the chunk and the window, so the time is linear in the prompt's length and the
-- memory bounded by the chunk.
ByteLM.PREFILL_CHUNK = 512

-- Feeds list[a..b] from the state's position (inside no_grad and a scope, after
-- kvcache.ensure_all(state.caches, b - a + 1)); returns the last block's output [1,n,dim].
function ByteLM:_feed(state, list, a, b)
    local x = self.embed:forward(core.tensor({table.move(list, a, b, 1, {})}, "int32"))
    for i, layer in ipairs(self.layers) do x = kvcache.block_chunk(layer, x, state.caches[i], state.pos) end
    state.pos = state.pos + b - a + 1
    return x
end

-- The normalised head over hidden states x [1,n,dim]: logits [1,n,V].
function ByteLM:_head(x) return self.head:forward(self.norm:forward(x)) end

-- Reads a list of ids (a prompt) into fresh caches, in chunks; returns the logits
-- [1,1,V] after the last one, as that many steps would.
function ByteLM:prefill(state, list)
    if state.pos ~= 0 then error("blt.models.ByteLM: prefill needs a fresh state", 2) end
    if #list == 0 then error("blt.models.ByteLM: prefill needs at least one id", 2) end
    local logits
    for a = 1, #list, ByteLM.PREFILL_CHUNK do
        local b = math.min(#list, a + ByteLM.PREFILL_CHUNK - 1)
        kvcache.ensure_all(state.caches, b - a + 1)
        logits = core.no_grad(function()
            return core.scope(function()
                local x = self:_feed(state, list, a, b)
                if b == #list then return self:_head(core.narrow(x, 2, b - a + 1, 1)) end
            end)
        end)
    end
    return logits
end

-- Forgets the context (reset_on_newline: the token after a newline sees only what follows).
function ByteLM:restart(state) for _, c in ipairs(state.caches) do c:reset() end end

function ByteLM:stop(state) kvcache.release_all(state.caches) end

-- Matrix-multiply FLOPs per predicted byte for training (3 x forward; attention
-- charged for the keys its window allows at sequence length T, on average).
function ByteLM:flops_per_byte(T)
    local m = self.config
    local d, hidden = m.dim, nn.ffn_hidden(m.dim, m.multiple_of)
    local keys = 0
    for t = 1, T do keys = keys + math.min(t, m.window) end
    keys = keys / T
    local per_layer = 2 * (4 * d * d + 3 * d * hidden) + 2 * 2 * keys * d
    return 3 * (m.layers * per_layer + 2 * d * ByteLM.VOCAB)
end

-- ---- what the sweeps and blt.flops ask of the kind (blt.models) ----

-- FLOPs per byte (docs/flops.md; the shared parts in blt.flops): -- ByteLM (also the entropy model). opts: seq_len (positions per row, BOS included),
-- full_context. Components: blocks (the L blocks), head.
function ByteLM.model_flops(cfg, opts)
    opts = opts or {}
    local m = flops.filled(ByteLM.defaults, cfg or {})
    local T = flops.need(opts, "seq_len", "bytelm")
    local lin, att = flops.block_macs(m.dim, m.multiple_of, flops.mean_keys(T, m.window, opts.full_context))
    return flops.assemble({blocks = 2 * m.layers * lin, head = 2 * m.dim * ids.VOCAB}, {blocks = 2 * m.layers * att},
                    {"blocks", "head"}, {})
end


function ByteLM.flops(cfg, opts) return ByteLM.model_flops(cfg.model, opts) end
-- all but the byte embedding (the head scales with the width as a block does)
function ByteLM.scaled_params(cfg) return ByteLM.param_count(cfg.model) - ByteLM.VOCAB * cfg.model.dim end
ByteLM.fixed_mean_patch = 1 -- one byte a position
ByteLM.sweep = {word = "bytelm", family = "bytelm", script = "experiments/train_bytelm.lua", order = 1}
ByteLM.preset_key = "bytelm"
ByteLM.presets = {
    compare = {
        smoke = {dim = 48, layers = 1, heads = 2, window = 64, multiple_of = 32},
        medium = {dim = 32, layers = 1, heads = 2, window = 128, multiple_of = 32},
        small = {dim = 64, layers = 2, heads = 2, window = 256, multiple_of = 64},
        demo = {dim = 192, layers = 3, heads = 4, window = 256, multiple_of = 128},
        full = {dim = 384, layers = 6, heads = 6, window = 512, multiple_of = 256},
    },
    -- width and depth come from the sweep's sizes
    scaling = {smoke = {window = 64, multiple_of = 32}, medium = {window = 128, multiple_of = 32},
               small = {window = 128, multiple_of = 64},
               full = {window = 512, multiple_of = 256}},
}

-- Its point in a comparison (blt.experiment.model_point): P.bytelm, or o.size's width
-- and depth.
function ByteLM.point(P, corpus, o, experiment)
    local m = experiment.sized(P.bytelm, o)
    local run_cfg = {kind = "bytelm", model = m}
    local f = flops.of(run_cfg, {seq_len = P.seq_len + 1})
    return {family = "bytelm", kind = "bytelm", script = ByteLM.sweep.script, args = experiment.flat("model", m),
            mean_patch = 1, run_cfg = run_cfg, train_fpb = f.training.total, inference_fpb = f.inference.total}
end

return ByteLM
