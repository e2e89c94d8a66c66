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
local megabyte_small = {{"model.dim", 64}, {"model.heads", 2}, {"model.multiple_of", 64}, {"model.global.dim", 128},
                        {"model.global.heads", 2}}
local VALIDATE = {
    {"bytelm", with(bytelm_small)},
    {"bytelm", with(bytelm_small), {{"model.layers", 6}, {"train.seq_len", 256}}},
    {"bytelm", with(bytelm_small), {{"model.dim", 128}, {"train.batch", 8}, {"eval.batch", 8}}},
    {"blt", with(blt_small)},
    {"blt", with(blt_small), {{"patching.size", 1}, {"model.k", 4}}},
    {"blt", with(blt_small), {{"model.global.layers", 8}, {"model.decoder.layers", 3}, {"model.encoder.layers", 2}}},
    {"blt", with(blt_small), {{"patching.scheme", "entropy"}, {"patching.target", 3.0}, {"patching.calibrated", 3.0},
                              {"entropy.dim", 32}, {"entropy.layers", 2}, {"entropy.heads", 2}, {"entropy.multiple_of", 32}}},
    {"megabyte", with(megabyte_small)},
    {"megabyte", with(megabyte_small), {{"model.patch", 8}, {"model.layers", 4}, {"model.global.layers", 6}}},
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
-- For each training script and each integer key of its kind's config, the key is "a
-- size key" when raising it 2^20-fold raises the estimate past 4 times this machine's
-- memory (at least 1 TB); the script is then run with it and must stop with status 2
-- within a few seconds, naming the memory and the keys to reduce, having created nothing.
local SCRIPTS = {{"bytelm", "experiments/train_bytelm.lua"}, {"bytelm", "experiments/train_entropy_model.lua"},
                 {"blt", "experiments/train_blt.lua"}, {"bpe_lm", "experiments/train_bpe_lm.lua"},
                 {"megabyte", "experiments/train_megabyte.lua"}}
local corpus = U.corpus(dir .. "/corpus.txt", 20000)
local huge_keys, refused, must = 0, 0, {}
local threshold = math.max(1e12, 4 * (memory.available() or 0)) -- more than this machine has, whatever it is
for _, script in ipairs(SCRIPTS) do
    local kind = script[1]
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
                    :format(bin, script[2], path, big, fixed, U.q(corpus), U.q(dir)))
                local dt = core.now() - t0
                local good = rc == 2 and out:find("training needs about", 1, true) and out:find("To fit, reduce ", 1, true)
                    and dt < (sanitize and 30 or 5) and not U.read(dir .. "/huge/config.json")
                if good then refused = refused + 1 end
                T.ok(good, ("%s %s=%d: status 2 naming memory in %.1f s"):format(script[2]:match("[^/]*$"), path, big, dt), out)
            end
        end
    end
end
-- the keys the issue names are among the generated ones (the generation can fail)
for _, k in ipairs {"bytelm:train.batch", "bytelm:train.seq_len", "bytelm:model.dim", "bytelm:model.layers",
                    "blt:model.k", "blt:model.global.dim", "blt:eval.batch", "blt:model.hash.buckets", "bpe_lm:train.batch",
                    "megabyte:model.dim", "megabyte:model.global.dim"} do
    T.ok(must[k], k .. " drives the memory estimate")
end
T.diag(("%d size keys over %d training scripts, %d refused"):format(huge_keys, #SCRIPTS, refused))

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
    -- sizes whose products wrap around 64-bit integers (dim^2 = 2^64) are counted, not wrapped
    rc, out = U.sh(("%s experiments/train_bytelm.lua model.dim=4294967296 model.layers=1 data.path=%s out.dir=%s")
        :format(bin, U.q(corpus), U.q(dir)))
    T.ok(rc == 2 and out:find("training needs about", 1, true), "model.dim=2^32: status 2, the memory it needs", out)
    -- a run that fits is not refused
    local cfg, M = cfg_of("bytelm", with(bytelm_small))
    T.ok(memory.check(M, cfg, {available = 1e9}) == nil, "a small run fits in 1 GB")
    T.ok(memory.check(M, cfg, {available = 1e6}) ~= nil, "it does not fit in 1 MB")
end

-- ---- 3. a --config file cannot escape its budget through the string library ----
-- Every function of the string library, called as a method on hostile arguments (a
-- pattern whose matching time is a power of the subject's length, huge counts and
-- indices), and other hostile files: one child process (under timeout, so a hang
-- fails instead of hanging the suite) parses each and reports; each must end within
-- 3 s, a refusal in one short line, and every pattern use and huge rep be refused.
do
    local subject = 'local s = ("a"):rep(30000) .. "!"\n'
    local catastrophic = '("a*"):rep(15) .. "b"'
    local ARGS = {catastrophic, catastrophic .. ", 1, false", "1 << 40, 1 << 40", '"%99d%99d", 1, 2'}
    local names = {}
    for name in pairs(string) do names[#names + 1] = name end
    table.sort(names)
    local files, must_refuse = {}, {}
    for _, name in ipairs(names) do
        for j, a in ipairs(ARGS) do
            files[#files + 1] = {("s:%s(%s)"):format(name, a),
                                 subject .. ("local r = s:%s(%s)\nreturn {train = {seed = 1}}\n"):format(name, a)}
            local pattern_fn = name == "find" or name == "match" or name == "gmatch" or name == "gsub"
            if (pattern_fn and j <= 2) or (name == "rep" and j == 3) then must_refuse[#files] = true end
        end
    end
    local function add(what, text) files[#files + 1] = {what, text}; must_refuse[#files] = true end
    add("s .. s .. s .. s in a loop", 'local s = ("x"):rep(1 << 20)\nwhile true do s = s .. s .. s .. s end\n')
    add("a 1 MB value of the wrong type", 'return {train = {lr = ("9"):rep(1 << 20)}}\n')
    add("a 1 MB unknown key", 'return {train = {["x" .. ("9"):rep(1 << 20)] = 1}}\n')
    add("a 1 MB error", 'error(("e"):rep(1 << 20))\n')
    add("a 1 MB section name", 'return {[("k"):rep(1 << 20)] = {x = 1}}\n')
    add("a 1 MB number", 'return {train = {seed = ("9"):rep(1 << 20) .. "e0"}}\n')
    for i, f in ipairs(files) do U.write(("%s/hostile%d.lua"):format(dir, i), f[2]) end
    U.write(dir .. "/parse_all.lua", ([[
local config, core = require "blt.config", require "blt.core"
for i = 1, %d do
    local t0 = core.now()
    local ok, e = pcall(config.parse, {train = {seed = 1, lr = 0.1}}, {"--config", %q .. "/hostile" .. i .. ".lua"})
    io.write(i, "	", ok and "accepted" or "refused", "	", ("%%.2f"):format(core.now() - t0), "	",
             ok and "" or (tostring(e):gsub("\n", "\\n")), "\n")
    io.flush()
end
]]):format(#files, dir))
    local rc, out = U.sh(("timeout 120 %s %s"):format(bin, U.q(dir .. "/parse_all.lua")))
    local seen, good, slowest = 0, 0, 0
    for line in out:gmatch("[^\n]+") do
        local i, verdict, dt, msg = line:match("^(%d+)\t(%a+)\t([%d.]+)\t(.*)$")
        i, dt = tonumber(i), tonumber(dt)
        if i then
            seen = seen + 1
            slowest = math.max(slowest, dt)
            local ok = dt < 3 and (verdict == "accepted" and not must_refuse[i] or verdict == "refused" and #msg < 600)
            if ok then good = good + 1 else T.diag(("%s: %s in %.2f s: %s"):format(files[i][1], verdict, dt, msg:sub(1, 300))) end
        end
    end
    T.ok(rc == 0 and seen == #files and good == #files and #files > 50,
         ("%d hostile --config files: each parsed within 3 s, refused in one short line where it must be (slowest %.2f s)")
         :format(#files, slowest), rc ~= 0 and out:sub(-500) or nil)
    -- through a training script: status 2, one line, at once
    local find_pattern = 1
    for i, f in ipairs(files) do if f[1]:find("^s:find%(") then find_pattern = i break end end
    for _, i in ipairs {find_pattern, #files - 5, #files - 4} do
        local t0 = core.now()
        rc, out = U.sh(("timeout 10 %s experiments/train_bytelm.lua --config %s out.dir=%s")
            :format(bin, U.q(("%s/hostile%d.lua"):format(dir, i)), U.q(dir)))
        T.ok(rc == 2 and #out < 600 and select(2, out:gsub("\n", "")) == 1 and core.now() - t0 < 10,
             ("train_bytelm --config (%s): status 2, one line"):format(files[i][1]), out:sub(1, 600))
    end
    -- the string library is itself again, and a file that keeps to the bounds works
    T.ok(("abc"):match("b") == "b", "the string methods are restored after a --config file")
    local path = dir .. "/fine.lua"
    U.write(path, 'local s = ("ab"):rep(3)\nreturn {train = {steps = s:find("ba", 1, true) + #("%d"):format(7)}}\n')
    local cfg = config.parse({train = {steps = 1}}, {"--config", path})
    T.is(cfg.train.steps, 3, "plain find, format and a small rep work in a --config file")
    -- the quoting helper
    local q = config.quote(("z"):rep(5000) .. "\n")
    T.ok(#q < 260 and q:find("... (5001 bytes)", 1, true), "config.quote: a long value is cut, its size said", q)
    T.is(config.quote("a\nb"), "a\\10b", "config.quote: a newline is escaped")
end

U.cleanup(dir)
T.done()
