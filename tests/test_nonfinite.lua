package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- Non-finite values never reach a checkpoint or a result: float keys that C receives as
-- float32 are bounded at start, AdamW refuses hostile hyperparameters, an update that
-- overflows stops the run unsaved, "intact" is said only of a checkpoint read back, and
-- an empty validation split is refused at start.
local T = require "tap"
local core = require "blt.core"
local config = require "blt.config"
local json = require "blt.json"
local models = require "blt.models"
local optim = require "blt.optim"
local train = require "blt.train"
local U = require "testutil"

local bin = os.getenv("BLT_BIN") or "./blt"
local dir = U.tmpdir()
local q, sh, read = U.q, U.sh, U.read
local corpus = U.corpus(dir .. "/corpus.txt", 20000)

-- ---- 1. every float key C receives as a float32, with every hostile value ----
local SCRIPTS = {bytelm = "experiments/train_bytelm.lua", blt = "experiments/train_blt.lua",
                 bpe_lm = "experiments/train_bpe_lm.lua"}
-- float keys that do not reach C as a float32, and why (a new float key must be put
-- either here or under a "... float32" rule)
local NOT_F32 = {
    ["data.val_fraction"] = "the split is computed in double",
    ["model.rope_theta"] = "blt_rope takes a double",
    ["patching.threshold"] = "the patcher compares in double", ["patching.delta"] = "the same",
    ["patching.target"] = "calibration runs in Lua", ["patching.calibrated"] = "recorded only",
    ["entropy.rope_theta"] = "from the entropy model's checkpoint", ["entropy.norm_eps"] = "the same",
}
local f32_keys, f32_order, untagged = {}, {}, {}
for _, kind in ipairs {"blt", "bpe_lm", "bytelm"} do
    local M = models.get(kind)
    local d = config.copy(train.defaults)
    for k, v in pairs(M.sections) do d[k] = v end
    for _, p in ipairs(config.paths(d)) do
        local rule = M.rules[p] or train.rules[p]
        local tagged = type(rule) == "string" and rule:match("%sfloat32$")
        if tagged and not f32_keys[p] then f32_keys[p] = kind; f32_order[#f32_order + 1] = p end
        if math.type(config.get(d, p)) == "float" and not tagged and not NOT_F32[p] then untagged[#untagged + 1] = kind .. " " .. p end
    end
end
table.sort(f32_order)
T.ok(#untagged == 0, "every float key of every model kind either has a float32 rule or a reason it needs none",
     table.concat(untagged, ", "))

-- nan and inf cannot be typed on a command line (they read as text): a --config file makes them numbers
local HOSTILE = {{"1e308", "1e308"}, {"-1e308", "-1e308"}, {"1e-46", "1e-46"}, {"nan", "0/0"}, {"inf", "1/0"}}
local cases, refused = 0, 0
for _, key in ipairs(f32_order) do
    local section, name = key:match("^(.*)%.([^.]+)$")
    for _, h in ipairs(HOSTILE) do
        local file = ("%s/%s-%s.lua"):format(dir, key, h[1])
        U.write(file, ("return {%s = {%s = %s}}"):format(section, name, h[2]))
        local rc, out = sh(("%s %s --config %s out.dir=%s data.path=%s"):format(bin, SCRIPTS[f32_keys[key]], q(file),
                                                                             q(dir .. "/runs"), q(corpus)))
        cases = cases + 1
        if rc == 2 and out:find("config: " .. key .. " = ", 1, true) and not out:find("parameters,", 1, true) then
            refused = refused + 1
        else
            T.diag(("%s = %s: status %s: %s"):format(key, h[1], tostring(rc), out))
        end
    end
end
T.ok(#f32_order >= 8 and refused == cases,
     ("%d float32 keys x %d hostile values: %d of %d refused at start with status 2, naming the key")
         :format(#f32_order, #HOSTILE, refused, cases), table.concat(f32_order, " "))
T.ok(not core.listdir(dir .. "/runs"), "none of them created a run folder")

-- a value that rounds out of its interval as a float32 (C sees 1.0 for beta1)
do
    local rc, out = sh(("%s experiments/train_bytelm.lua train.beta1=0.99999999 out.dir=%s"):format(bin, q(dir .. "/runs")))
    T.ok(rc == 2 and out:find("train.beta1 = 0.99999999: is 1 as a float32", 1, true),
         "beta1 = 0.99999999 is refused: it is 1 as a float32", out)
end

-- ---- 2. AdamW and SGD refuse hostile hyperparameters ----
do
    local bad = {0 / 0, 1 / 0, -1 / 0, 1e308, -1e308, 1e-46, -1}
    local opts = {AdamW = {"lr", "beta1", "beta2", "eps", "weight_decay"}, SGD = {"lr", "momentum", "weight_decay"}}
    local n, named = 0, 0
    for kind, names in pairs(opts) do
        for _, name in ipairs(names) do
            for _, v in ipairs(bad) do
                local ok, err = pcall(optim[kind], {core.zeros({3})}, {[name] = v})
                n = n + 1
                if not ok and tostring(err):find(("blt.optim.%s: %s = "):format(kind, name), 1, true) then named = named + 1
                else T.diag(("%s %s = %s: %s"):format(kind, name, tostring(v), ok and "accepted" or tostring(err))) end
            end
        end
    end
    T.ok(n == 56 and named == n, ("%d hostile AdamW/SGD options, %d refused naming the option"):format(n, named))
    T.raises(function() optim.AdamW({core.zeros({3})}, {eps = -1}) end, "blt.optim.AdamW: eps = %-1: must be > 0",
             "AdamW eps = -1 is refused")
    local p = core.zeros({3})
    local opt = optim.AdamW({p}, {})
    local steps = 0
    for _, v in ipairs {0 / 0, 1 / 0, -1, 1e308} do
        if not pcall(opt.step, opt, v) then steps = steps + 1 end
    end
    T.is(steps, 4, "AdamW:step(lr) refuses NaN, inf, -1 and 1e308")
    T.raises(function() opt:step(0 / 0) end, "blt.optim.AdamW:step: lr = .*nan: must be a number, not NaN", "step(NaN) says why")
    T.is(opt.step_count, 0, "a refused step counts nothing")
    -- the step reports an update that overflows, and only then
    local w = core.tensor({{0.5, -0.25}, {1, 2}})
    local o = optim.AdamW({w}, {lr = 1e-3})
    w.grad:copy(core.tensor({{1, 1}, {1, 1}}))
    T.is(o:step(), true, "a normal update is reported finite")
    w.grad:copy(core.tensor({{1, 1}, {1, 1}}))
    T.is(o:step(3e38), false, "an update that overflows (lr 3e38 with decay) is reported")
end

-- ---- 3. a run that diverges writes no non-finite weights, and says so honestly ----
local base = table.concat({"model.dim=16", "model.layers=1", "model.heads=2", "model.multiple_of=16", "model.window=16",
    "train.batch=2", "train.seq_len=16", "train.steps=6", "train.warmup=0", "train.threads=1", "train.log_every=1",
    "eval.every=0", "eval.final_max_bytes=64", "out.checkpoint_every=1", "out.plot=false",
    "data.path=" .. q(corpus), "out.dir=" .. q(dir)}, " ")
local function trainer(args) return sh(bin .. " experiments/train_bytelm.lua " .. base .. " " .. args) end
local function result_of(name) return json.decode(read(dir .. "/" .. name .. "/result.json") or "null") or {} end

-- every parameter and moment of a checkpoint finite; returns ok, its step
local function finite_checkpoint(path)
    local ok, ck = pcall(require("blt.checkpoint").load, path)
    if not ok then return false, ck end
    for _, group in ipairs {ck.params, ck.optim.m, ck.optim.v} do
        for name, t in pairs(group) do
            for _, x in ipairs(t:reshape({-1}):totable()) do
                if x ~= x or x == math.huge or x == -math.huge then return false, name end
            end
        end
    end
    return true, ck.step
end

do -- the first update overflows (lr x weight_decay is inf as a float32): nothing saved, no promise
    local rc, out = trainer("out.name=boom train.lr=1e30 train.weight_decay=1e10")
    local r = result_of("boom")
    T.ok(rc == 3 and r.exit_reason == "nonfinite" and r.step == 1 and not r.checkpoint,
         "an update that overflows stops the run at once with status 3", out)
    T.ok(out:find("made parameters or AdamW moments non-finite", 1, true) and out:find("No checkpoint was saved", 1, true)
         and not out:find("intact", 1, true), "it says the model is lost and promises no checkpoint", out)
    T.ok(not read(dir .. "/boom/checkpoint.h5"), "and writes none")
end

do -- a fork that overflows: its source checkpoint is read back and is what the message offers
    local rc1, out1 = trainer("out.name=good train.stop_at=2")
    local src = dir .. "/good/checkpoint.h5"
    local rc, out = sh(("%s experiments/train_bytelm.lua --resume %s --fork boom2 train.lr=1e30 train.weight_decay=1e10")
        :format(bin, q(src)))
    local ok, step = finite_checkpoint(src)
    T.ok(rc1 == 0 and rc == 3 and result_of("boom2").step == 3 and not read(dir .. "/boom2/checkpoint.h5"),
         "a fork whose first update overflows stops with status 3 and saves nothing", out1 .. out)
    T.ok(ok and step == 2 and out:find(("The last checkpoint (%s, step 2) was read back and is intact"):format(src), 1, true),
         "the message offers the source checkpoint only after reading it back (it loads, every weight finite)", out)
end

do -- what "verified" means: it loads (checksums), is at the step saved, every weight and moment finite
    local checkpoint = require "blt.checkpoint"
    local src = dir .. "/good/checkpoint.h5"
    local ok1 = train.verify_checkpoint(src, 2)
    local ok2, why2 = train.verify_checkpoint(src, 3)
    local ok3, why3 = train.verify_checkpoint(dir .. "/missing.h5", 2)
    local ck = checkpoint.load(src)
    local name = next(ck.params)
    local flat = ck.params[name]:reshape({-1})
    flat:copy(core.tensor((function() local t = flat:totable() t[1] = 0 / 0 return t end)()))
    local oks = pcall(checkpoint.save, dir .. "/nan.h5", ck)
    local ok4, why4 = train.verify_checkpoint(dir .. "/nan.h5", 2)
    T.ok(ok1 and not ok2 and why2:find("not 3", 1, true) and not ok3 and oks and not ok4
         and why4:find(name, 1, true) and why4:find("non-finite", 1, true), -- checkpoint.load's own check, or ours
         "a checkpoint is verified only when it loads, is at the step saved and holds finite values only",
         table.concat({tostring(why2), tostring(why3), tostring(oks), tostring(why4)}, " | "))
end

do -- non-finite losses (weights grow without decay): skipped, then stopped; the last checkpoint is good
    local rc, out = trainer("out.name=skip train.lr=1e30 train.weight_decay=0 train.max_nonfinite=2")
    local r = result_of("skip")
    local ck = dir .. "/skip/checkpoint.h5"
    local ok, step = finite_checkpoint(ck)
    T.ok(rc == 3 and r.exit_reason == "nonfinite" and r.skipped_steps == 2, "non-finite losses stop the run with status 3", out)
    T.ok(ok and step == r.step - 2, "the checkpoint on disk loads and every weight and moment in it is finite",
         tostring(step) .. " " .. json.encode(r))
    T.ok(out:find(("The last checkpoint (%s, step %d) was read back and is intact"):format(ck, step or -1), 1, true),
         "the message names that checkpoint and its step", out)
end

do -- the steps after the first are skipped and the run reaches its end with weights whose outputs overflow
    local rc, out = trainer("out.name=inf train.steps=3 train.lr=1e30 train.weight_decay=0")
    local r = result_of("inf")
    T.ok(rc == 3 and r.exit_reason == "nonfinite" and r.val_bpb == nil and r.skipped_steps == 2
         and out:find("the final validation gave inf bits per byte", 1, true),
         "a final validation that is not finite: status 3, result.json written without a val_bpb", out)
    local ok, step = finite_checkpoint(dir .. "/inf/checkpoint.h5")
    T.ok(ok and step == 1, "and the checkpoint on disk is the last one saved (step 1), not one of the end", tostring(step))
end

-- ---- 4. an empty validation split is refused at start ----
do
    local rc, out = trainer("out.name=noval data.val_fraction=1e-9")
    T.ok(rc == 2 and out:find("data.val_fraction = 1e-09 holds out 0 of the corpus's", 1, true)
         and out:find("validation needs at least 1", 1, true), "data.val_fraction = 1e-9 is refused at start, with the sizes", out)
    T.ok(not core.listdir(dir .. "/noval"), "before any run folder is made")
    rc, out = trainer("out.name=oneval train.steps=1 data.val_fraction=" .. (1.5 / 20001))
    T.ok(rc == 0 and result_of("oneval").val_bytes == 1, "one held-out id is enough: validation over 1 byte", out)
end

if os.getenv("KEEP") then print(dir) else U.cleanup(dir) end
T.done()
