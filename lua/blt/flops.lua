-- FLOPs per byte of ByteLM, the BLT and the token baseline, split by component (docs/flops.md).
--
--   local flops = require "blt.flops"
--   local f = flops.blt(model_cfg, {mean_patch = 4.5, seq_len = 512 [, full_context = false] [, entropy = entropy_cfg]})
--   f.training.global, f.inference.total, ...   FLOPs per byte
--   flops.bytelm(model_cfg, {seq_len = 512})
--   flops.bpe_lm(model_cfg, {seq_len = 512, bytes_per_token = 3.8, vocab = 4096})
--   flops.of(run_cfg, opts)                     by run_cfg.kind ("bytelm" | "blt" | "bpe_lm"), run_cfg.model
--
-- Chinchilla-style: 2 FLOPs per multiply-add of a matrix product, nothing else
-- (norms, softmax, RoPE, embedding and hash lookups are free); training = 3 x forward,
-- except the frozen entropy model (forward only). Attention is charged for the
-- (query, key) pairs its mask allows, or with full_context the whole window/context.
-- Besides training and inference, f.linear and f.attention hold the forward FLOPs per
-- byte of the matrix products outside and inside attention, per component (what
-- core.mac_counter() measures, tests/test_flops.lua).
local nn = require "blt.nn"
local ids = require "blt.ids"

local flops = {}

local V = ids.VOCAB

-- Mean number of keys a query sees among n causal positions (n may be fractional:
-- the global model's P = seq_len / mean_patch) with a window w (nil or 0: none).
-- Exact for integer n: sum over t = 1..n of min(t, w), divided by n.
function flops.mean_keys(n, w, full_context)
    if w == nil or w <= 0 then w = math.huge end
    if full_context then return math.min(w, n) end
    if n <= w then return (n + 1) / 2 end
    return (w * (w + 1) / 2 + (n - w) * w) / n
end

-- A copy of cfg over defaults (one level of nested tables, as BLT.defaults has).
local function filled(defaults, cfg)
    local out = {}
    for k, v in pairs(defaults) do
        if type(v) == "table" then
            out[k] = {}
            for kk, vv in pairs(v) do out[k][kk] = vv end
            for kk, vv in pairs(type(cfg[k]) == "table" and cfg[k] or {}) do out[k][kk] = vv end
        else
            out[k] = cfg[k] == nil and v or cfg[k]
        end
    end
    return out
end

local function need(opts, key, fn)
    local v = opts[key]
    if type(v) ~= "number" or v <= 0 then error(("blt.flops.%s: opts.%s must be a number > 0"):format(fn, key), 3) end
    return v
end

-- Forward multiply-adds per position of one pre-norm block of width w (FFN hidden h):
-- linear maps (wq, wk, wv, wo, w1, w3, w2), and attention (Q K^T and P V: w per pair each).
local function block_macs(w, multiple_of, keys)
    local h = nn.ffn_hidden(w, multiple_of)
    return 4 * w * w + 3 * w * h, 2 * w * keys
end

-- Sums the parts and makes training/inference. lin, att: forward FLOPs per byte by
-- component; frozen: components run forward only (the entropy model).
local function assemble(lin, att, order, frozen)
    local f = {linear = {}, attention = {}, forward = {}, training = {}, inference = {}}
    for _, kind in ipairs {"linear", "attention", "forward", "training", "inference"} do f[kind].total = 0 end
    for _, c in ipairs(order) do
        local l, a = lin[c] or 0, att[c] or 0
        f.linear[c], f.attention[c], f.forward[c] = l, a, l + a
        f.inference[c] = l + a
        f.training[c] = frozen[c] and (l + a) or 3 * (l + a)
        for _, kind in ipairs {"linear", "attention", "forward", "training", "inference"} do
            f[kind].total = f[kind].total + f[kind][c]
        end
    end
    f.components = order
    return f
end

-- ByteLM (also the entropy model). opts: seq_len (positions per row, BOS included),
-- full_context. Components: blocks (the L blocks), head.
function flops.bytelm(cfg, opts)
    opts = opts or {}
    local m = filled(require("blt.models.bytelm").defaults, cfg or {})
    local T = need(opts, "seq_len", "bytelm")
    local lin, att = block_macs(m.dim, m.multiple_of, flops.mean_keys(T, m.window, opts.full_context))
    return assemble({blocks = 2 * m.layers * lin, head = 2 * m.dim * V}, {blocks = 2 * m.layers * att},
                    {"blocks", "head"}, {})
end

-- The BLT. opts: mean_patch (bytes per patch: seq_len / patches per row, the BOS patch
-- counted), seq_len (bytes per row, BOS included), full_context, entropy (the entropy
-- model's config when patching runs online; absent: patches come free, as for
-- fixed and space patching or precomputed entropies).
-- Components: entropy, encoder, cross (pooling and decoder cross-attention, with
-- pool_proj and patch_proj; split in cross_encoder and cross_decoder of f.detail),
-- global (with in_proj), decoder (its blocks), head.
function flops.blt(cfg, opts)
    opts = opts or {}
    local m = filled(require("blt.models.blt").defaults, cfg or {})
    local T, p = need(opts, "seq_len", "blt"), need(opts, "mean_patch", "blt")
    local full = opts.full_context
    local d, dg, k = m.dim, m.global.dim, m.k
    local lin, att = {}, {}
    -- encoder and decoder blocks, per byte
    local l, a = block_macs(d, m.multiple_of, flops.mean_keys(T, m.encoder.window, full))
    lin.encoder, att.encoder = 2 * m.encoder.layers * l, 2 * m.encoder.layers * a
    l, a = block_macs(d, m.multiple_of, flops.mean_keys(T, m.decoder.window, full))
    lin.decoder, att.decoder = 2 * m.decoder.layers * l, 2 * m.decoder.layers * a
    -- pooling: pool_proj once per patch (d -> k d); each pooled layer: wk, wv on every
    -- byte, wq, wo on every slot (k per patch); k slot queries per patch each see the
    -- patch's bytes: k pairs per byte
    local n_ce = m.encoder.cross_every_layer and m.encoder.layers or 1
    local ce_lin = 2 * (k * d * d / p + n_ce * (2 * d * d + 2 * k * d * d / p))
    local ce_att = 2 * n_ce * 2 * d * k
    -- decoder cross: patch_proj once per patch (d_G -> k d); each cross layer: wq, wo on
    -- every byte, wk, wv on every slot; a byte sees the k slots of one patch
    local n_cd = m.decoder.cross_every_layer and m.decoder.layers or 1
    local cd_lin = 2 * (k * d * dg / p + n_cd * (2 * d * d + 2 * k * d * d / p))
    local cd_att = 2 * n_cd * 2 * d * k
    lin.cross, att.cross = ce_lin + cd_lin, ce_att + cd_att
    -- global: per patch, divided by the patch size; P = T / p patches per row
    l, a = block_macs(dg, m.multiple_of, flops.mean_keys(T / p, m.global.window, full))
    lin.global = 2 * ((k * d ~= dg and k * d * dg or 0) + m.global.layers * l) / p
    att.global = 2 * m.global.layers * a / p
    lin.head = 2 * d * V
    if opts.entropy then
        local e = flops.bytelm(opts.entropy, {seq_len = T, full_context = full})
        lin.entropy, att.entropy = e.linear.total, e.attention.total
    end
    local f = assemble(lin, att, {"entropy", "encoder", "cross", "global", "decoder", "head"}, {entropy = true})
    f.detail = {cross_encoder = {linear = ce_lin, attention = ce_att}, cross_decoder = {linear = cd_lin, attention = cd_att}}
    return f
end

-- The token baseline (bpe_lm): ByteLM's transformer over BPE tokens. opts: seq_len
-- (bytes per row, BOS included), bytes_per_token (mean bytes a token covers), vocab
-- (tokens, default 4096). The model runs T / bytes_per_token positions per row, each
-- costing a block stack and a head of V outputs; per byte = per token / bytes_per_token.
-- Components: blocks, head.
function flops.bpe_lm(cfg, opts)
    opts = opts or {}
    local m = filled(require("blt.models.bytelm").defaults, cfg or {})
    local T, bpt = need(opts, "seq_len", "bpe_lm"), need(opts, "bytes_per_token", "bpe_lm")
    local vocab = opts.vocab == nil and 4096 or need(opts, "vocab", "bpe_lm")
    local lin, att = block_macs(m.dim, m.multiple_of, flops.mean_keys(T / bpt, m.window, opts.full_context))
    return assemble({blocks = 2 * m.layers * lin / bpt, head = 2 * m.dim * vocab / bpt},
                    {blocks = 2 * m.layers * att / bpt}, {"blocks", "head"}, {})
end

-- flops.of(run config, opts): by cfg.kind ("bytelm" when absent), on cfg.model.
function flops.of(cfg, opts)
    local kind = cfg.kind or "bytelm"
    if kind == "bytelm" then return flops.bytelm(cfg.model, opts) end
    if kind == "bpe_lm" then
        local o = {}
        for k, v in pairs(opts or {}) do o[k] = v end
        if o.vocab == nil and cfg.bpe then o.vocab = cfg.bpe.vocab end
        return flops.bpe_lm(cfg.model, o)
    end
    if kind == "blt" then
        -- a run config knows its entropy model (online entropy patching is charged)
        local o = {}
        for k, v in pairs(opts or {}) do o[k] = v end
        local pc = cfg.patching
        local s = pc and pc.scheme and require("blt.schemes").get(pc.scheme, pc.scheme_source)
        if s then
            if o.entropy == nil and s.needs_entropy then o.entropy = cfg.entropy end
            local opts = {}
            for k, v in pairs(s.options) do opts[k] = pc[k] == nil and v or pc[k] end
            if o.mean_patch == nil then o.mean_patch = require("blt.schemes").mean_patch(s, opts) end
            -- a file scheme's mean patch size, measured at its run's start
            if o.mean_patch == nil and not s.kernel and (pc.calibrated or 0) > 0 then o.mean_patch = pc.calibrated end
        end
        return flops.blt(cfg.model, o)
    end
    error(("blt.flops: no formula for model kind '%s'"):format(tostring(kind)), 2)
end

return flops
