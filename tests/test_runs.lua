package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- Run management: run folders never overwritten, resume and fork, schedules over a
-- resume, exit statuses, every config value checked before work, result files,
-- plots from the whole history, one command-line style for every script.
local T = require "tap"
local blt = require "blt"
local core = require "blt.core"
local config = require "blt.config"
local json = require "blt.json"
local train = require "blt.train"
local patching = require "blt.patching"

local U = require "testutil"
local bin = os.getenv("BLT_BIN") or "./blt"
local dir = U.tmpdir()
local q, write, read, sh = U.q, U.write, U.read, U.sh

-- two small corpora
local corpus, other = U.corpus(dir .. "/corpus.txt", 60000), dir .. "/other.txt"
write(other, read(corpus):reverse())
write(dir .. "/empty.txt", "")
assert(core.mkdir(dir .. "/emptydir"))

local base = table.concat({"model.dim=16", "model.layers=1", "model.heads=2", "model.multiple_of=16",
    "model.window=32", "train.batch=2", "train.seq_len=32", "train.steps=12", "train.warmup=2", "train.threads=1",
    "eval.every=5", "eval.max_bytes=512", "eval.final_max_bytes=1024", "out.checkpoint_every=4", "out.plot=false",
    "train.log_every=1", "train.seed=7", "data.path=" .. q(corpus), "out.dir=" .. q(dir)}, " ")

local function train_cmd(args) return sh(bin .. " experiments/train_bytelm.lua " .. base .. " " .. args) end
local function resume_cmd(run, args)
    return sh(bin .. " experiments/train_bytelm.lua --resume " .. q(dir .. "/" .. run .. "/checkpoint.h5") .. " " .. (args or ""))
end

local function hashes(run)
    local h = {}
    for _, f in ipairs {"checkpoint.h5", "metrics.h5", "config.json", "result.json"} do
        h[#h + 1] = core.hash_file(dir .. "/" .. run .. "/" .. f) or "missing"
    end
    return table.concat(h, " ")
end

local function column(run, name)
    local f = blt.h5_open(dir .. "/" .. run .. "/metrics.h5")
    local v = f:read("/" .. name)
    f:close()
    return type(v) == "table" and v or {v}
end

local function result_of(run) return json.decode(assert(read(dir .. "/" .. run .. "/result.json"))) end

-- ---- 1. run folders never overwrite ----
local rc, out = train_cmd("")
T.is(rc, 0, "a first run finishes with status 0", out)
T.ok(out:find("run folder " .. dir .. "/bytelm-7", 1, true), "it takes <script>-<seed>", out)
T.ok(out:find("*steps=12", 1, true) and out:find("train:.*lr=0.003") and out:find("*seed=7", 1, true)
     and out:find("model:.*window=32"), "the full config is printed at the start, keys set on the command line marked", out)
local first = hashes("bytelm-7")
rc, out = train_cmd("")
T.ok(rc == 0 and out:find("run folder " .. dir .. "/bytelm-7.2", 1, true), "a second run with the same seed takes <script>-<seed>.2", out)
T.is(hashes("bytelm-7"), first, "and does not touch the first run's files")
rc, out = train_cmd("out.name=bytelm-7")
T.ok(rc == 2 and out:find(dir .. "/bytelm-7 exists", 1, true) and out:find("out.overwrite=true", 1, true),
     "an existing out.name is refused (status 2), naming the folder and the way out", out)
T.is(hashes("bytelm-7"), first, "the refused run touched nothing")
rc, out = train_cmd("out.name=bytelm-7 out.overwrite=true train.steps=8")
T.is(rc, 0, "out.overwrite=true replaces it", out)
T.is(json.decode(read(dir .. "/bytelm-7/config.json")).train.steps, 8, "the replaced folder holds the new run's config")

-- ---- 2. config.json, result.json, the final validation in the last metrics row ----
do
    local cfg = json.decode(read(dir .. "/bytelm-7.2/config.json"))
    local ck = require("blt.checkpoint").load(dir .. "/bytelm-7.2/checkpoint.h5")
    T.is(json.encode(cfg), json.encode(ck.config), "config.json is the resolved config the checkpoint holds")
    T.is(cfg.train.total_steps, 12, "the resolved config records the schedule's span")
    local r = result_of("bytelm-7.2")
    T.is(r.exit_reason, "finished", "result.json: exit reason")
    T.is(r.exit_status, 0, "result.json: exit status")
    T.is(r.bytes_seen, 12 * 2 * 32, "result.json: bytes seen")
    T.ok(type(r.val_bpb) == "number" and r.val_bpb > 0 and r.val_bytes == 1024, "result.json: final validation bits per byte",
         json.encode(r))
    T.ok(type(r.wall_seconds) == "number" and r.wall_seconds > 0, "result.json: wall time")
    local steps, val = column("bytelm-7.2", "step"), column("bytelm-7.2", "val_bpb")
    T.is(steps[#steps], 12.0, "the last metrics row is the last step")
    -- the curve is over eval.max_bytes from its first point to its last; the result over final_max_bytes
    T.ok(val[#val] == r.val_bpb_curve and r.val_bytes_curve == 512 and r.val_bpb_curve ~= r.val_bpb,
         "and holds the final validation over the periodic validations' bytes (not NaN)", json.encode(r))
    local f = blt.h5_open(dir .. "/bytelm-7.2/metrics.h5")
    local at = f:attrs("/")
    f:close()
    T.ok(at.val_bpb == r.val_bpb and at.exit_reason == "finished" and at.bytes_seen == r.bytes_seen
         and at.wall_seconds == r.wall_seconds, "metrics.h5's root attributes hold the same result",
         json.encode(at))
end

-- calibration on a sample drawn across the split, reported there and on the whole split
do
    rc, out = sh(bin .. " experiments/patch_stats.lua model=" .. q(dir .. "/bytelm-7.2/checkpoint.h5") .. " data=" .. q(corpus)
        .. " row=64 calib_bytes=1024 target=3")
    local sample, whole = out:match("entropy reached ([%d.]+) on the sample and ([%d.]+) on the whole split")
    T.ok(rc == 0 and out:find("16 rows of 64 bytes sampled across the split (seed 1)", 1, true) and sample and whole,
         "patch_stats calibrates on a seeded sample across the split and reports both means", out)
    T.ok(sample and math.abs(tonumber(sample) - 3) < 0.1, "the sample reaches the target", sample)
end

-- ---- 3. resume continues in its own folder and refuses other settings; --fork starts a new run ----
do
    local before = hashes("bytelm-7.2")
    rc, out = resume_cmd("bytelm-7.2", "data.path=" .. q(other) .. " train.steps=16")
    T.ok(rc == 2 and out:find("cannot change data.path", 1, true) and out:find("--fork", 1, true),
         "a resume with another data.path is refused (status 2), pointing to --fork", out)
    rc, out = resume_cmd("bytelm-7.2", "train.lr=0.5 train.steps=16")
    T.ok(rc == 2 and out:find("cannot change train.lr", 1, true), "a resume with another train.lr is refused", out)
    rc, out = resume_cmd("bytelm-7.2", "model.dim=32 train.steps=16")
    T.ok(rc == 2 and out:find("cannot change model.dim", 1, true), "a resume with another model.dim is refused", out)
    T.is(hashes("bytelm-7.2"), before, "refused resumes touched nothing")
    rc, out = resume_cmd("bytelm-7.2", "--fork forked data.path=" .. q(other) .. " train.steps=16")
    T.is(rc, 0, "--fork NAME with another data.path runs", out)
    T.ok(out:find("run folder " .. dir .. "/forked (forked from", 1, true), "in a new folder", out)
    T.is(hashes("bytelm-7.2"), before, "the original run is untouched by the fork")
    local r = result_of("forked")
    T.ok(r.forked_from and r.forked_from:find("bytelm-7.2", 1, true) and r.step == 16, "the fork records its origin and continues from step 12",
         json.encode(r))
    T.is(json.decode(read(dir .. "/forked/config.json")).data.path, other, "the fork's config names its own corpus")
    rc, out = resume_cmd("bytelm-7.2", "--fork forked train.steps=20")
    T.ok(rc == 2 and out:find("exists", 1, true), "a fork onto an existing folder is refused", out)
    rc, out = train_cmd("--fork x")
    T.ok(rc == 2 and out:find("--resume", 1, true), "--fork without --resume is refused", out)
    rc, out = resume_cmd("bytelm-7.2", "train.steps=16")
    T.ok(rc == 0 and out:find("run folder " .. dir .. "/bytelm-7.2 (resumed at step 12)", 1, true),
         "a resume continues in the checkpoint's own folder", out)
end

-- ---- 4. schedules over a resume ----
do
    local sched = "train.lr=0.01 train.warmup=2 train.min_lr_ratio=0.1 train.steps=10 out.name=sched"
    rc, out = train_cmd(sched)
    T.is(rc, 0, "a 10-step run", out)
    rc, out = resume_cmd("sched", "train.steps=14")
    T.ok(rc == 0 and out:find("over 10 steps (train.total_steps); steps 11-14 stay at the final lr", 1, true),
         "extending train.steps keeps the schedule, and says so", out)
    local lr, steps = column("sched", "lr"), column("sched", "step")
    local ref = require("blt.optim").warmup_cosine {peak = 0.01, warmup = 2, total = 10, floor_ratio = 0.1}
    local ok, why = #steps == 14, ("%d rows"):format(#steps)
    for i, s in ipairs(steps) do
        local want = ref(math.tointeger(s))
        if math.abs(lr[i] - want) > 1e-12 then ok, why = false, ("step %d: lr %.6g, want %.6g"):format(s, lr[i], want) end
    end
    T.ok(ok, "every step's lr follows the original 10-step schedule; steps 11-14 at the floor 1e-3", why)
    rc, out = resume_cmd("sched", "train.steps=8")
    T.ok(rc == 2 and out:find("is at step 14: nothing to run", 1, true), "fewer steps than done: status 2", out)
    rc, out = resume_cmd("sched", "train.steps=14")
    T.is(rc, 2, "as many steps as done: status 2 (nothing to run)", out)
    rc, out = resume_cmd("sched", "train.total_steps=20 train.steps=20")
    T.ok(rc == 2 and out:find("cannot change train.total_steps", 1, true), "stretching the schedule needs --fork", out)
    rc, out = train_cmd("train.lr=0.01 train.warmup=2 train.min_lr_ratio=0.1 train.steps=10 train.total_steps=20 out.name=span20")
    local lr20 = column("span20", "lr")
    T.ok(rc == 0 and math.abs(lr20[10] - require("blt.optim").warmup_cosine {peak = 0.01, warmup = 2, total = 20,
         floor_ratio = 0.1}(10)) < 1e-12, "train.total_steps sets the schedule's span", out)

    -- ---- 5. the whole history, for the plot ----
    local h = train.history(dir .. "/sched/metrics.h5")
    local every = #h == 14
    for i, row in ipairs(h) do every = every and row.step == i and row.loss == row.loss end
    T.ok(every, "a resumed run's history (what loss.png draws) has every step 1-14 once", #h)
end

-- ---- 6. exit statuses ----
for _, sig in ipairs {{"INT", 130}, {"TERM", 143}, {"HUP", 129}} do
    local run = "sig" .. sig[1]
    local p = io.popen(("%s experiments/train_bytelm.lua %s out.name=%s train.steps=1000000 eval.every=0 > %s/%s.log 2>&1 & echo $!")
        :format(bin, base, run, q(dir), run))
    local pid = p:read("l")
    p:close()
    -- wait for the first checkpoint, so the signal arrives mid-training
    os.execute(("for i in $(seq 200); do [ -f %s/%s/checkpoint.h5 ] && break; sleep 0.05; done; kill -%s %s; "
        .. "wait %s 2>/dev/null; while kill -0 %s 2>/dev/null; do sleep 0.05; done"):format(q(dir), run, sig[1], pid, pid, pid))
    local r = read(dir .. "/" .. run .. "/result.json")
    r = r and json.decode(r) or {}
    T.ok(r.exit_status == sig[2] and r.exit_reason == "SIG" .. sig[1] and r.checkpoint == "checkpoint.h5",
         ("SIG%s: checkpoint saved, result.json says SIG%s and status %d"):format(sig[1], sig[1], sig[2]),
         read(dir .. "/" .. run .. ".log"))
end
do
    local run = "sigexit"
    local cmd = ("%s experiments/train_bytelm.lua %s out.name=%s train.steps=1000000 eval.every=0 > /dev/null 2>&1 & pid=$!; "
        .. "for i in $(seq 200); do [ -f %s/%s/checkpoint.h5 ] && break; sleep 0.05; done; kill -INT $pid; wait $pid")
        :format(bin, base, run, q(dir), run)
    rc = sh(cmd)
    T.is(rc, 130, "an interrupted run exits with status 130")
end
-- no weight decay: the weights grow by lr a step and stay finite while the loss does not
-- (with decay the update itself overflows: test_nonfinite)
rc, out = train_cmd("train.lr=1e30 train.weight_decay=0 train.max_nonfinite=3 out.name=nan")
T.ok(rc == 3 and out:find("not finite at steps", 1, true), "non-finite losses stop the run with status 3, naming the steps", out)
do
    local r = result_of("nan")
    T.ok(r.exit_reason == "nonfinite" and r.skipped_steps == 3, "result.json: reason nonfinite, 3 skipped steps", json.encode(r))
    local sk = column("nan", "skipped")
    T.is(sk[#sk], 1.0, "skipped steps are marked in the metrics")
end

-- ---- 7. every bad value is refused before any work, naming the key ----
do
    -- generated from the rules: for each key, values just outside what it allows
    local defaults = config.copy(train.defaults)
    defaults.model = {}
    local function violations(rule)
        if type(rule) == "table" then return {"bogus"} end
        if type(rule) == "string" then rule = rule:gsub("%s+float32$", "") end -- test_nonfinite tests the float32 part
        if rule == "readable" then return {dir .. "/missing.txt", dir .. "/empty.txt", dir .. "/emptydir"} end
        if type(rule) == "function" then return {""} end
        local op, x = rule:match("^([<>]=?)%s*([-+%d.e]+)$")
        if op then
            x = tonumber(x)
            if op == ">" then return {x, x - 1} elseif op == ">=" then return {x - 1, x - 0.5} end
            if op == "<" then return {x} end
            return {x + 1}
        end
        local lb, lo, hi, hb = rule:match("^([%(%[])%s*([-+%d.e]+)%s*,%s*([-+%d.e]+)%s*([%)%]])$")
        lo, hi = tonumber(lo), tonumber(hi)
        local out = {lo - 1, hi + 1}
        if lb == "(" then out[#out + 1] = lo end
        if hb == ")" then out[#out + 1] = hi end
        return out
    end
    local cases, named = 0, 0
    local extra = {["out.name"] = {"a/b", ".."}}
    local keys = {}
    for k in pairs(train.rules) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, key in ipairs(keys) do
        local values = violations(train.rules[key])
        for _, v in ipairs(extra[key] or {}) do values[#values + 1] = v end
        for _, v in ipairs(values) do
            local cfg = config.copy(defaults)
            config.get(cfg, key:match("^(.*)%.")) [key:match("([^.]+)$")] = v
            cases = cases + 1
            local ok, err = pcall(config.check, cfg, train.rules, defaults)
            if not ok and tostring(err):find(key .. " = ", 1, true) then named = named + 1
            else T.diag(("%s = %s: %s"):format(key, tostring(v), ok and "accepted" or tostring(err))) end
        end
    end
    T.ok(cases > 50 and named == cases, ("%d generated bad values, each refused naming its key (%d)"):format(cases, named))
    -- non-finite numbers anywhere
    local cfg = config.copy(defaults)
    cfg.train.lr = math.huge
    T.raises(function() config.check(cfg, train.rules, defaults) end, "train.lr = inf: must be a finite number", "infinity refused")
    cfg.train.lr = 0 / 0
    T.raises(function() config.check(cfg, train.rules, defaults) end, "train.lr = .*finite", "NaN refused")

    -- and through the script: status 2, the key named, nothing created
    for _, c in ipairs {
        {"train.schedule=cosine", "train.schedule = cosine: must be one of warmup_cosine, constant, linear"},
        {"train.lr=-1", "train.lr = -1.0: must be > 0"},
        {"train.lr=1e999", "train.lr = inf: must be a finite number"},
        {"data.val_fraction=1", "data.val_fraction = 1.0: must be in (0, 1)"},
        {"data.path=" .. q(dir .. "/missing.txt"), "data.path = " .. dir .. "/missing.txt: cannot be read"},
        {"data.path=" .. q(dir .. "/empty.txt"), "is an empty file"},
        {"train.steps=0", "train.steps = 0: must be >= 1"},
        {"train.lrr=1", "unknown key 'train.lrr' (from the command line); did you mean train.lr"},
        {"lr=1", "did you mean train.lr"},
        {"train.steps=ten", "key 'train.steps' must be integer"},
        {"train.steps=99999999999999999999", "does not fit in a 64-bit integer"},
        {"model.layers=100000000 model.dim=4096 model.heads=32", "GB (parameters, gradients, AdamW moments)"},
        {"model.heads=3", "model.heads = 3 does not divide model.dim = 16"},
        {"--frobnicate", "unknown flag '--frobnicate'"},
    } do
        local t0 = core.now()
        rc, out = train_cmd(c[1] .. " out.name=bad")
        T.ok(rc == 2 and out:find(c[2], 1, true) and not io.open(dir .. "/bad"),
             ("%s: status 2, %q, nothing created (%.1f s)"):format(c[1]:gsub(dir, "DIR"), c[2]:gsub(dir, "DIR"), core.now() - t0), out)
    end
end

-- ---- 8. --config files are bounded ----
do
    write(dir .. "/cycle.lua", "local t = {train = {}}; t.train.again = t; return t")
    write(dir .. "/loop.lua", "while true do end")
    write(dir .. "/deep.lua", "local t = {}; local c = t; for i = 1, 20 do c.x = {}; c = c.x end; return t")
    write(dir .. "/fine.lua", "return {train = {steps = 3}, model = {dim = 16}}")
    for _, c in ipairs {{"cycle.lua", "contains itself"}, {"loop.lua", "runs too long"}, {"deep.lua", "nests deeper"}} do
        local t0 = core.now()
        rc, out = train_cmd("--config " .. q(dir .. "/" .. c[1]) .. " out.name=bad")
        T.ok(rc == 2 and out:find(c[2], 1, true) and core.now() - t0 < 20, ("--config %s: status 2, %q"):format(c[1], c[2]), out)
    end
    rc, out = train_cmd("--config " .. q(dir .. "/fine.lua") .. " out.name=fromfile")
    T.ok(rc == 0 and json.decode(read(dir .. "/fromfile/config.json")).train.steps == 3, "a --config file sets keys", out)
end

-- a checkpoint whose config describes a huge model is refused before allocating it
do
    local checkpoint = require "blt.checkpoint"
    local ck = checkpoint.load(dir .. "/bytelm-7.2/checkpoint.h5")
    ck.config.model.layers = 100000000
    checkpoint.save(dir .. "/huge.h5", ck)
    local t0 = core.now()
    T.raises(function() require("blt.entropy").load_model(dir .. "/huge.h5") end,
             "describes a bytelm of %d+ parameters, but the file holds", "entropy.load_model: a config that lies about the size")
    T.ok(core.now() - t0 < 5, "refused at once")
    rc, out = sh(bin .. " experiments/train_bytelm.lua --resume " .. q(dir .. "/huge.h5") .. " train.steps=20")
    T.ok(rc == 2 and out:find("GB", 1, true), "--resume of it: status 2, the memory it would need", out)
end

-- ---- 9. one run per folder ----
do
    assert(core.lock(dir .. "/sched/.lock"))
    rc, out = resume_cmd("sched", "train.steps=20")
    T.ok(rc == 2 and out:find("held by another process", 1, true), "a second process on a run folder is refused", out)
end

-- ---- 10. one command-line style: every script takes --help and key=value ----
do
    for _, s in ipairs(U.scripts()) do
        local rch, help = sh(bin .. " " .. s .. " --help")
        T.ok(rch == 0 and help:find("usage: ", 1, true) and help:find("=", 1, true), s .. " --help: usage and keys", help)
        local rcb, bad = sh(bin .. " " .. s .. " no_such_key=1 < /dev/null")
        T.ok(rcb == 2 and bad:find("unknown key 'no_such_key'", 1, true), s .. ": an unknown key is refused with status 2", bad)
    end
end

-- the key reference is generated from the same defaults and cannot drift
do
    local rcd, outd = sh(bin .. " scripts/gen_config_docs.lua check=true")
    T.is(rcd, 0, "docs/config.md matches every script's keys and defaults", outd)
end

-- ---- 11. calibration samples rows across the split ----
do
    local a = patching.sample_rows(1000, 50, 3):totable()
    local b = patching.sample_rows(1000, 50, 3):totable()
    T.is(table.concat(a, ","), table.concat(b, ","), "sample_rows is deterministic for a seed")
    local distinct, sorted, inrange = {}, true, true
    for i, v in ipairs(a) do
        distinct[v] = true
        if i > 1 and v <= a[i - 1] then sorted = false end
        if v < 0 or v >= 1000 then inrange = false end
    end
    local n = 0
    for _ in pairs(distinct) do n = n + 1 end
    T.ok(n == 50 and sorted and inrange, "50 distinct sorted indices in [0, 1000)")
    T.ok(a[1] < 200 and a[#a] > 800, "spread over the whole range, not its beginning", table.concat(a, ","))
    T.ok(table.concat(patching.sample_rows(1000, 50, 4):totable(), ",") ~= table.concat(a, ","), "another seed, another sample")
    T.is(table.concat(patching.sample_rows(5, 5, 1):totable(), ","), "0,1,2,3,4", "k = n takes every row")
    T.raises(function() patching.sample_rows(5, 6, 1) end, "k must be an integer in 1..5", "k > n refused")
    local c = require("blt.data").open(corpus, {val_fraction = 0.1})
    local info = c:info()
    local w = c:sample_windows {split = "val", len = 64, bytes = 640, seed = 2}
    T.is(table.concat(w:shape(), ","), "10,65", "sample_windows: bytes // len windows of [BOS, len ids]")
    local val = c:ids(info.train + 1, info.val):totable()
    local inside = true
    for _, r in ipairs(w:totable()) do
        local found = false
        for start = 1, #val - 63, 64 do -- a window is an aligned slice of the split
            local same = r[1] == 1
            for j = 1, 64 do same = same and r[j + 1] == val[start + j - 1] end
            found = found or same
        end
        inside = inside and found
    end
    T.ok(inside, "every window is a slice of the validation split")
    T.is(core.hash_tensor(w), core.hash_tensor(c:sample_windows {split = "val", len = 64, bytes = 640, seed = 2}),
         "the same seed draws the same windows")
    T.raises(function() c:sample_windows {split = "test", len = 4, bytes = 8} end, "split must be 'train' or 'val'",
             "an unknown split is refused")
    c:close()
end

-- ---- 12. every double in a config round-trips through config.json ----
do
    local g = blt.Generator(11)
    local bad, n = nil, 0
    local specials = {0.1, 1 / 3, 3e-4, 2.4844, 1e-8, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 0.95}
    for i = 1, 3000 do
        local x = specials[i] or (g:uniform() - 0.5) * 10 ^ (g:integer(40) - 20)
        local back = json.decode(json.encode({v = x})).v
        n = n + 1
        if back ~= x or math.type(back) ~= math.type(x) then bad = ("%.17g came back as %.17g"):format(x, back) break end
    end
    T.ok(bad == nil, ("%d doubles round-trip exactly through blt.json"):format(n), bad)
end

U.cleanup(dir)
T.done()
