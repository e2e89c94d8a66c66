package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- Bounded work and memory: the training memory estimate (blt.memory) is within a
-- factor of 2 of a real step's measured peak, and every key that drives memory, set
-- huge, is refused at once (status 2, no allocation) for every training script; a
-- --config file cannot escape its instruction budget through the string library, and
-- a huge value is quoted short in an error.
local T = require "tap"
local core = require "blt.core"
local config = require "blt.config"
local ids = require "blt.ids"
local memory = require "blt.memory"
local models = require "blt.models"
local optim = require "blt.optim"
local U = require "testutil"

local bin = os.getenv("BLT_BIN") or "./blt"
local sanitize = os.getenv("BLT_SANITIZE") == "1"
local dir = U.tmpdir()

-- A config of a kind with `over` ({"model.dim", 64}, ...) applied.
local function cfg_of(kind, over)
    local M = models.get(kind)
    local defaults = config.copy(M.sections)
    local train = require "blt.train"
    for k, v in pairs(train.defaults) do defaults[k] = config.copy(v) end
    defaults.kind = kind
    local cfg = config.copy(defaults)
    for _, kv in ipairs(over) do
        local section, key = kv[1]:match("^(.*)%.([^.]+)$")
        config.get(cfg, section)[key] = kv[2]
    end
    return cfg, M
end

-- ---- 1. the estimate against a measured step ----
-- The pool's live bytes after the model and optimiser exist, plus the peak growth of a
-- second training step (the first warms caches), against memory.estimate.
local function rows_of(B, N)
    local text = U.read("data/kjv.txt") or ("In the beginning was the word. "):rep(4000)
    local r = {}
    for b = 1, B do
        local row, s = {ids.BOS}, 1000 * b
        for t = 2, N do row[t] = text:byte(s + t) + ids.OFFSET end
        r[b] = row
    end
    return core.tensor(r, "int32")
end

local function measured(kind, cfg)
    local M = models.get(kind)
    collectgarbage("collect") -- the models measured before: freed now, not during this step
    collectgarbage("collect")
    core.mem_trim()
    local live0 = core.mem_stats().live
    local src = {}
    if cfg.patching and (cfg.patching.scheme == "entropy") then
        src.entropy_model = require("blt.models.bytelm").new(cfg.entropy, 1)
    end
    local model = M.build(cfg, 1, src)
    local opt = optim.AdamW(model, {lr = 1e-3})
    local static = core.mem_stats().live - live0
    local rows = rows_of(cfg.train.batch, cfg.train.seq_len + 1)
    local function step()
        core.scope(function()
            opt:zero_grad()
            model:loss(rows):backward()
            opt:step(1e-3)
        end)
    end
    step()
    collectgarbage("collect")
    core.mem_reset_peak()
    local before = core.mem_stats().live
    step()
    return static + core.mem_stats().peak - before
end

local small = {{"train.batch", 4}, {"eval.batch", 4}, {"train.seq_len", 128}}
local function with(list)
    local out = {}
    for _, kv in ipairs(small) do out[#out + 1] = kv end
    for _, kv in ipairs(list) do out[#out + 1] = kv end
    return out
end
local bytelm_small = {{"model.dim", 64}, {"model.layers", 2}, {"model.heads", 2}, {"model.multiple_of", 64},
                      {"model.window", 64}}
local blt_small = {{"patching.scheme", "fixed"}, {"patching.size", 4}, {"model.dim", 64}, {"model.heads", 2},
                   {"model.multiple_of", 64}, {"model.global.dim", 128}, {"model.global.heads", 2},
                   {"model.cross.heads", 2}, {"model.hash.buckets", 256}}
local VALIDATE = {
    {"bytelm", with(bytelm_small)},
    {"bytelm", with(bytelm_small), {{"model.layers", 6}, {"train.seq_len", 256}}},
    {"bytelm", with(bytelm_small), {{"model.dim", 128}, {"train.batch", 8}, {"eval.batch", 8}}},
    {"blt", with(blt_small)},
    {"blt", with(blt_small), {{"patching.size", 1}, {"model.k", 4}}},
    {"blt", with(blt_small), {{"model.global.layers", 8}, {"model.decoder.layers", 3}, {"model.encoder.layers", 2}}},
    {"blt", with(blt_small), {{"patching.scheme", "entropy"}, {"patching.target", 3.0}, {"patching.calibrated", 3.0},
                              {"entropy.dim", 32}, {"entropy.layers", 2}, {"entropy.heads", 2}, {"entropy.multiple_of", 32}}},
}
if not sanitize then -- the sanitizers' own allocations are not the pool's, but they slow this down
    for _, v in ipairs(VALIDATE) do
        local over = {}
        for _, kv in ipairs(v[2]) do over[#over + 1] = kv end
        for _, kv in ipairs(v[3] or {}) do over[#over + 1] = kv end
        local cfg, M = cfg_of(v[1], over)
        local est = memory.estimate(M, cfg).total
        local got = measured(v[1], cfg)
        local desc = {}
        for _, kv in ipairs(v[3] or {}) do desc[#desc + 1] = kv[1] .. "=" .. tostring(kv[2]) end
        T.ok(est >= 0.5 * got and est <= 2 * got,
             ("%s %s: estimate %.1f MB within a factor of 2 of the measured %.1f MB (x%.2f)")
             :format(v[1], #desc > 0 and table.concat(desc, " ") or "(small)", est / 1e6, got / 1e6, est / got))
    end
end

-- ---- 2. every key that drives memory, set huge, is refused at once ----
-- For each training script's kind and each integer key of its config, the key is
-- "a size key" when raising it 2^20-fold raises the estimate over 1 TB; the script is
-- then run with it and must stop with status 2 within a few seconds, naming memory
-- and the key among those to reduce (or its section's keys), having created nothing.
local SCRIPTS = {bytelm = "experiments/train_bytelm.lua", blt = "experiments/train_blt.lua",
                 bpe_lm = "experiments/train_bpe_lm.lua"}
local corpus = U.corpus(dir .. "/corpus.txt", 20000)
local huge_keys, refused, must = 0, 0, {}
local threshold = math.max(1e12, 4 * (memory.available() or 0)) -- more than this machine has, whatever it is
for _, kind in ipairs {"bytelm", "blt", "bpe_lm"} do
    -- the BLT with fixed patches: the entropy scheme needs an entropy model checkpoint
    local fixed = kind == "blt" and " patching.scheme=fixed" or ""
    local cfg, M = cfg_of(kind, kind == "blt" and {{"patching.scheme", "fixed"}} or {})
    for _, path in ipairs(config.paths(cfg)) do
        local v = config.get(cfg, path)
        -- bpe.vocab has its own range rule (at most 2^20 merges): its largest value
        local big = path == "bpe.vocab" and ids.VOCAB + (1 << 20) or (math.type(v) == "integer" and v > 0 and v * (1 << 20))
        if big then
            local c2 = config.copy(cfg)
            local section, key = path:match("^(.*)%.([^.]+)$")
            config.get(c2, section)[key] = big
            local ok, est = pcall(memory.estimate, M, c2, {})
            if ok and est.total > threshold then
                huge_keys = huge_keys + 1
                must[kind .. ":" .. path] = true
                local t0 = core.now()
                local rc, out = U.sh(("timeout 20 %s %s %s=%d%s data.path=%s out.dir=%s out.name=huge")
                    :format(bin, SCRIPTS[kind], path, big, fixed, U.q(corpus), U.q(dir)))
                local dt = core.now() - t0
                local good = rc == 2 and out:find("training needs about", 1, true) and out:find("of memory", 1, true)
                    and dt < (sanitize and 30 or 5) and not U.read(dir .. "/huge/config.json")
                if good then refused = refused + 1 end
                T.ok(good, ("%s %s=%d: status 2 naming memory in %.1f s"):format(kind, path, big, dt), out)
            end
        end
    end
end
-- the keys the issue names are among the generated ones (the generation can fail)
for _, k in ipairs {"bytelm:train.batch", "bytelm:train.seq_len", "bytelm:model.dim", "bytelm:model.layers",
                    "blt:model.k", "blt:model.global.dim", "blt:eval.batch", "blt:model.hash.buckets", "bpe_lm:train.batch"} do
    T.ok(must[k], k .. " drives the memory estimate")
end
T.diag(("%d size keys over 3 kinds, %d refused"):format(huge_keys, refused))

-- the issue's examples, and the keys the message says to reduce
do
    local rc, out = U.sh(("%s experiments/train_blt.lua model.k=100000 patching.scheme=fixed data.path=%s out.dir=%s")
        :format(bin, U.q(corpus), U.q(dir)))
    T.ok(rc == 2 and out:find("reduce [^\n]*model%.k"), "model.k=100000: status 2, reduce model.k", out)
    rc, out = U.sh(("%s experiments/train_bytelm.lua train.batch=1000000000 data.path=%s out.dir=%s")
        :format(bin, U.q(corpus), U.q(dir)))
    T.ok(rc == 2 and out:find("reduce train%.batch"), "train.batch=1000000000: status 2, reduce train.batch", out)
    -- bpe.vocab is bounded by its rule (2^20 merges): the logits it makes count
    rc, out = U.sh(("%s experiments/train_bpe_lm.lua bpe.vocab=1000000 train.batch=100000 data.path=%s out.dir=%s")
        :format(bin, U.q(corpus), U.q(dir)))
    T.ok(rc == 2 and out:find("logits over bpe.vocab ids") and out:find("reduce [^\n]*bpe%.vocab"),
         "bpe.vocab=1000000 train.batch=100000: status 2, reduce bpe.vocab", out)
    -- a run that fits is not refused
    local cfg, M = cfg_of("bytelm", with(bytelm_small))
    T.ok(memory.check(M, cfg, {available = 1e9}) == nil, "a small run fits in 1 GB")
    T.ok(memory.check(M, cfg, {available = 1e6}) ~= nil, "it does not fit in 1 MB")
end

U.cleanup(dir)
T.done()
