package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- Exact resume and crash safety of the training loop (ByteLM).
local T = require "tap"
local blt = require "blt"
local checkpoint = require "blt.checkpoint"

local long = os.getenv("BLT_TEST_LONG") == "1"
local bin = os.getenv("BLT_BIN") or "./blt"
local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)
local corpus = dir .. "/corpus.txt"
do
    local f = assert(io.open("data/kjv.txt", "rb") or io.open(corpus, "wb"))
    local text = f:read(120000) or ""
    f:close()
    if #text < 1000 then text = ("In the beginning was the word. "):rep(4000) end
    local o = assert(io.open(corpus, "wb"))
    o:write(text)
    o:close()
end

local base = table.concat({"model.dim=32", "model.layers=2", "model.heads=2", "model.multiple_of=32",
    "model.window=32", "train.batch=4", "train.seq_len=48", "train.steps=16", "train.warmup=4", "train.threads=2",
    "eval.every=0", "eval.final_max_bytes=512", "out.checkpoint_every=1", "out.plot=false", "train.log_every=1",
    "data.path=" .. corpus, "out.dir=" .. dir}, " ")

local function sh(cmd)
    local p = io.popen(cmd .. " 2>&1")
    local out = p:read("a")
    local ok = p:close()
    return ok, out
end

local function train(args) return sh(bin .. " experiments/train_bytelm.lua " .. base .. " " .. args) end

local function losses(run)
    local f = blt.h5_open(dir .. "/" .. run .. "/metrics.h5")
    local steps, loss = f:read("/step"), f:read("/loss")
    f:close()
    local function list(v) return type(v) == "table" and v or v:totable() end
    steps, loss = list(steps), list(loss)
    local by_step = {}
    for i = 1, #loss do by_step[math.tointeger(steps[i])] = loss[i] end
    return by_step
end

local function same_params(a, b)
    local ra, rb = checkpoint.load(a), checkpoint.load(b)
    if ra.step ~= rb.step then return false, ("steps %d and %d"):format(ra.step, rb.step) end
    for name, t in pairs(ra.params) do
        local u = rb.params[name]
        if not u then return false, "missing " .. name end
        local x, y = t:reshape({-1}), u:reshape({-1})
        for i = 1, x:numel() do
            if x:get(i) ~= y:get(i) then return false, ("%s[%d]: %.9g vs %.9g"):format(name, i, x:get(i), y:get(i)) end
        end
    end
    return true
end

-- N steps in one go
local ok, out = train("out.name=full")
T.ok(ok, "16 steps in one go", out)
-- k steps, stop, resume, N - k steps
ok, out = train("out.name=split train.stop_at=6")
T.ok(ok and out:find("stopped %(train.stop_at = 6%) after step 6"), "stops after step 6 with a checkpoint", out)
ok, out = sh(bin .. " experiments/train_bytelm.lua --resume " .. dir .. "/split/checkpoint.h5")
T.ok(ok and out:find("resumed at step 6"), "resumes at step 6", out)
local a, b = losses("full"), losses("split")
local same = true
for s = 1, 16 do
    if a[s] == nil or a[s] ~= b[s] then same = false; T.diag(("step %d: %s vs %s"):format(s, tostring(a[s]), tostring(b[s]))) end
end
T.ok(same, "losses of all 16 steps are bit-identical (one go vs 6 + resume 10)")
local sp, why = same_params(dir .. "/full/checkpoint.h5", dir .. "/split/checkpoint.h5")
T.ok(sp, "final parameters are bit-identical", why)

-- a resume cannot change the model; a fork into a model of another size names the parameter and both shapes
ok, out = sh(bin .. " experiments/train_bytelm.lua --resume " .. dir .. "/split/checkpoint.h5 model.dim=64")
T.ok(not ok and out:find("cannot change model.dim", 1, true), "a resume refuses another model.dim", out)
ok, out = sh(bin .. " experiments/train_bytelm.lua --resume " .. dir .. "/split/checkpoint.h5 --fork dim64 model.dim=64 train.steps=20")
T.ok(not ok and out:find("parameter embed is %[260,32%] in the checkpoint, %[260,64%] in the model"),
     "forking into another model.dim fails, naming the parameter and both shapes", out)

-- SIGINT/SIGTERM: saves at the end of the step and exits cleanly
for _, sig in ipairs {"INT", "TERM"} do
    local run = "sig" .. sig
    local cmd = ("%s experiments/train_bytelm.lua %s out.name=%s train.steps=100000 > %s/%s.log 2>&1 & echo $!")
        :format(bin, base, run, dir, run)
    local p = io.popen(cmd)
    local pid = p:read("l")
    p:close()
    os.execute("sleep 1.0; kill -" .. sig .. " " .. pid .. "; while kill -0 " .. pid .. " 2>/dev/null; do sleep 0.05; done")
    local log = io.open(dir .. "/" .. run .. ".log"):read("a")
    local okl, r = pcall(checkpoint.load, dir .. "/" .. run .. "/checkpoint.h5")
    T.ok(log:find("stopped %(SIG" .. sig .. "%)") and okl and r.step > 0,
         ("SIG%s: checkpoint saved at step %s and a clean exit"):format(sig, okl and r.step or "?"), log)
end

-- SIGKILL at random moments, some during saves: the run always resumes from a valid checkpoint
do
    local kills = long and 60 or 20
    local rng = blt.Generator(2024)
    local ckpt = dir .. "/killed/checkpoint.h5"
    local okl, outl = train("out.name=full150 train.steps=150")
    T.ok(okl, "150 steps in one go (the reference for the killed run)", outl)
    local valid, during_save, fresh, present = 0, 0, 0, 0
    for i = 1, kills do
        local exists = io.open(ckpt) ~= nil
        -- metrics flushed every step, checkpoints every 3: a kill leaves rows past the
        -- checkpoint, which the resumed run must not log twice
        local args = exists and ("--resume " .. ckpt)
            or (base .. " out.name=killed out.overwrite=true train.steps=150 out.checkpoint_every=3 out.metrics_flush=1")
        if not exists then fresh = fresh + 1 end
        local p = io.popen(("%s experiments/train_bytelm.lua %s > /dev/null 2>&1 & echo $!"):format(bin, args))
        local pid = p:read("l")
        p:close()
        local delay = 0.05 + 0.25 * rng:uniform()
        os.execute(("sleep %.3f; kill -9 %s 2>/dev/null; while kill -0 %s 2>/dev/null; do sleep 0.01; done"):format(delay, pid, pid))
        local tmp = io.popen("ls " .. ckpt .. ".tmp.* 2>/dev/null"):read("a")
        if tmp ~= "" then during_save = during_save + 1 end
        if io.open(ckpt) then
            present = present + 1
            local okl = pcall(checkpoint.load, ckpt)
            if okl then valid = valid + 1 end
        end
    end
    T.diag(("%d SIGKILLs: %d left a valid checkpoint, %d hit a save in progress, %d started fresh (no checkpoint yet)")
           :format(kills, valid, during_save, fresh))
    T.is(valid, present, "every kill after the first save left a valid checkpoint")
    T.ok(present >= kills - fresh, "every kill after a first save found a checkpoint", present)
    -- finish the run and compare with the uninterrupted one
    -- a kill may have come after the last step's save: then the run is already complete
    -- and on a slow build (the sanitizers) every kill may have come before the first save
    local okf, outf = true, "finished before the last kill"
    if not io.open(ckpt) then
        okf, outf = sh(("%s experiments/train_bytelm.lua %s out.name=killed out.overwrite=true train.steps=150 "
            .. "out.checkpoint_every=3 out.metrics_flush=1"):format(bin, base))
    elseif checkpoint.load(ckpt).step < 150 then
        okf, outf = sh(bin .. " experiments/train_bytelm.lua --resume " .. ckpt)
    end
    T.ok(okf, "the killed run finishes from its last checkpoint", outf)
    local steps = losses("killed")
    local sorted_steps = {}
    for st in pairs(steps) do sorted_steps[#sorted_steps + 1] = st end
    local f = blt.h5_open(dir .. "/killed/metrics.h5")
    local col = f:read("/step")
    f:close()
    col = type(col) == "table" and col or {col}
    local increasing = true
    for i = 2, #col do increasing = increasing and col[i] > col[i - 1] end
    T.ok(increasing and col[#col] == 150, ("metrics of the killed run: %d rows, steps strictly increasing to 150 (no rows logged twice)")
         :format(#col), table.concat(col, ","))
    local ref = losses("full150")
    local same_loss = true
    for _, st in ipairs(col) do same_loss = same_loss and steps[st] == ref[st] end
    T.ok(same_loss, "every logged loss of the killed run equals the uninterrupted run's")
    local sp2, why2 = same_params(dir .. "/full150/checkpoint.h5", ckpt)
    T.ok(sp2, "after the kills, the final parameters equal the uninterrupted run's", why2)
end

os.execute("rm -rf " .. dir)
T.done()
