-- blt.memory: what a training run will hold in memory, estimated from its config
-- before anything is allocated, so that a run too large for the machine is refused
-- at once with the keys to reduce, instead of being killed minutes later.
--
--   local memory = require "blt.memory"
--   local est = memory.estimate(M, cfg [, o])   -- M: the kind's module (blt.models)
--   est.total, est.parts                  -- bytes; parts sorted largest first:
--                                         -- {what =, bytes =, keys = {"train.batch", ...}}
--   local msg = memory.check(M, cfg [, o])      -- nil, or why the run cannot fit
-- o.available: bytes to compare with (default MemAvailable); o.before_setup: the
-- kind's setup has not run yet, so what it loads (the BLT's entropy model) is unknown
-- and not counted (BLT.setup checks again once it is loaded).
--
-- The estimate is the parameters with their gradients and AdamW moments (16 bytes a
-- parameter) plus the activations one step keeps for backward, which each kind gives
-- per row of the batch (M.activations(cfg, T, o): a list of {what =, floats =, keys =}).
-- The coefficients below were measured (tests/test_bounds.lua checks the estimate
-- against the pool's measured peak within a factor of 2): a pre-norm transformer block
-- keeps about 13 floats of its width and 4 of its FFN hidden size per position, a
-- head about 4 floats per vocabulary entry per position (logits, softmax, gradient).
-- Everything is computed in floating point, so batch x seq_len x dim cannot wrap.
local memory = {}

memory.BLOCK_DIM, memory.BLOCK_HIDDEN, memory.LOGITS = 13, 4, 4

-- Floats one pre-norm transformer block keeps per position.
function memory.block(dim, hidden) return memory.BLOCK_DIM * dim + memory.BLOCK_HIDDEN * hidden end

-- Floats a head over `vocab` ids keeps per position.
function memory.head(vocab) return memory.LOGITS * vocab end

local function gb(b) return (b < 1e15 and "%.1f GB" or "%.3g GB"):format(b / 1e9) end

-- A copy of cfg with every number a float: the kinds' counts (dim * dim, ...) then
-- cannot wrap around as 64-bit integers do (model.dim=2^32 would count 0 parameters).
local function floats(t)
    if type(t) ~= "table" or getmetatable(t) then return math.type(t) == "integer" and t + 0.0 or t end
    local c = {}
    for k, v in pairs(t) do c[k] = floats(v) end
    return c
end

-- The bytes a run of config cfg (train, eval sections and the kind's own) needs.
-- Activations: training rows (train.batch) and validation rows (eval.batch, a forward
-- without gradients that holds about as much) are not alive together: the larger counts.
function memory.estimate(M, cfg, o)
    cfg = floats(cfg)
    local t = cfg.train
    local T = t.seq_len + 0.0
    local rows, rows_key = t.batch + 0.0, "train.batch"
    if cfg.eval and cfg.eval.batch > rows then rows, rows_key = cfg.eval.batch + 0.0, "eval.batch" end
    local n = M.count_params(cfg, true) + 0.0
    local bf16 = t.precision == "bf16" -- the weights' bf16 copy: 2 bytes more per parameter
    local parts = {{what = "parameters, gradients, AdamW moments" .. (bf16 and ", bf16 weights" or ""),
                    note = (" for %.4g parameters"):format(n), bytes = (bf16 and 18 or 16) * n,
                    keys = M.size_keys or {"model.dim", "model.layers"}}}
    if M.activations then
        for _, a in ipairs(M.activations(cfg, T, o or {})) do
            local per_row = a.per_row == false
            local keys = {}
            if not per_row then keys[1] = rows_key end
            if not a.fixed_len then keys[#keys + 1] = "train.seq_len" end
            for _, k in ipairs(a.keys) do keys[#keys + 1] = k end
            parts[#parts + 1] = {what = a.what, bytes = 4 * a.floats * (per_row and 1 or rows), keys = keys}
        end
    end
    local total = 0.0
    for _, p in ipairs(parts) do total = total + p.bytes end
    table.sort(parts, function(a, b) return a.bytes > b.bytes end)
    return {total = total, parts = parts}
end

-- MemAvailable (or MemTotal) from /proc/meminfo, in bytes; nil when unknown.
function memory.available()
    local f = io.open("/proc/meminfo")
    if not f then return nil end
    local text = f:read("a")
    f:close()
    local kb = text:match("MemAvailable:%s*(%d+)") or text:match("MemTotal:%s*(%d+)")
    return kb and tonumber(kb) * 1024
end

-- nil when the run fits in o.available bytes (default: memory.available()), else the
-- message: the estimate, what dominates it and the keys that reduce it.
function memory.check(M, cfg, o)
    o = o or {}
    local est = memory.estimate(M, cfg, o)
    local have = o.available or memory.available()
    local total = est.total
    if have and total == total and total <= have then return nil end
    if not have and total == total and total < 2^53 then return nil end -- no /proc/meminfo: only the absurd is refused
    local top = est.parts[1]
    local shown = {}
    for i = 1, math.min(3, #est.parts) do
        local p = est.parts[i]
        if i == 1 or p.bytes >= 0.05 * total then shown[#shown + 1] = ("%s (%s)%s"):format(gb(p.bytes), p.what, p.note or "") end
    end
    return ("training needs about %s of memory: %s; more than the %s available. To fit, reduce %s")
        :format(gb(total), table.concat(shown, ", "), have and gb(have) or "memory", table.concat(top.keys, ", "))
end

return memory
