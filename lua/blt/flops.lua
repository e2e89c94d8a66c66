-- FLOPs per byte of ByteLM, the BLT and the token baseline, split by component (docs/flops.md).
-- Each kind's formula lives in its module (M.model_flops, M.flops: blt.models); this
-- module holds what they share (mean_keys, block_macs, assemble) and dispatches.
--
--   local flops = require "blt.flops"
--   local f = flops.blt(model_cfg, {mean_patch = 4.5, seq_len = 512 [, full_context = false] [, entropy = entropy_cfg]})
--   f.training.global, f.inference.total, ...   FLOPs per byte
--   flops.bytelm(model_cfg, {seq_len = 512})
--   flops.bpe_lm(model_cfg, {seq_len = 512, bytes_per_token = 3.8, vocab = 4096})
--   flops.of(run_cfg, opts)                     by run_cfg.kind: its module's M.flops (blt.models)
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
function flops.filled(defaults, cfg)
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

function flops.need(opts, key, fn)
    local v = opts[key]
    if type(v) ~= "number" or v <= 0 then error(("blt.flops.%s: opts.%s must be a number > 0"):format(fn, key), 4) end
    return v
end

-- Forward multiply-adds per position of one pre-norm block of width w (FFN hidden h):
-- linear maps (wq, wk, wv, wo, w1, w3, w2), and attention (Q K^T and P V: w per pair each).
function flops.block_macs(w, multiple_of, keys)
    local h = nn.ffn_hidden(w, multiple_of)
    return 4 * w * w + 3 * w * h, 2 * w * keys
end

-- Sums the parts and makes training/inference. lin, att: forward FLOPs per byte by
-- component; frozen: components run forward only (the entropy model).
function flops.assemble(lin, att, order, frozen)
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

-- The built-in kinds' formulas, each in its kind's module (M.model_flops, on the
-- model section; blt.models finds the module by name).
local function formula(kind)
    return function(cfg, opts) return require("blt.models").get(kind).model_flops(cfg, opts) end
end
flops.bytelm, flops.blt, flops.bpe_lm = formula("bytelm"), formula("blt"), formula("bpe_lm")

-- flops.of(run config, opts): the formula of cfg.kind ("bytelm" when absent), its
-- module's M.flops(cfg, opts) (blt.models).
function flops.of(cfg, opts)
    local kind = cfg.kind
    if kind == nil then kind = "bytelm" end
    local okm, M = pcall(require("blt.models").get, kind)
    if not okm or type(M.flops) ~= "function" then
        error(("blt.flops: no formula for model kind '%s'%s"):format(tostring(kind),
              okm and " (its module has no M.flops)" or ": " .. tostring(M)), 2)
    end
    return M.flops(cfg, opts)
end

return flops
