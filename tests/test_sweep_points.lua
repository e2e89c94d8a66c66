package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local U = require "testutil"
local json = require "blt.json"
local sweep = require "blt.sweep"

-- blt.sweep's points (what compare_patching.lua, scaling.lua and the demo are made of),
-- on tiny ByteLM runs of one or two steps: re-running the same sweep skips its finished
-- points also when args.* words (a point's extra) override its own keys; a point whose
-- result.json or config.json is damaged stops the sweep with a message naming the file.

local dir = U.tmpdir()
local corpus = U.corpus(dir .. "/corpus.txt", 20000)
local quiet = {write = function() end}

local function tiny(over)
    local a = {["model.dim"] = 32, ["model.layers"] = 1, ["model.heads"] = 2, ["model.multiple_of"] = 32,
               ["model.window"] = 32, ["train.batch"] = 2, ["train.seq_len"] = 32, ["train.steps"] = 2,
               ["train.warmup"] = 1, ["train.threads"] = 1, ["train.lr"] = 0.003, ["eval.every"] = 0,
               ["eval.final_max_bytes"] = 128, ["out.checkpoint_every"] = 0, ["out.plot"] = false,
               ["data.path"] = corpus}
    for k, v in pairs(over or {}) do a[k] = v end
    return a
end

local function point(id, extra, over)
    return {id = id, script = "experiments/train_bytelm.lua", args = tiny(over), extra = extra}
end

-- ---- 1. args.* words over a point's own keys: the same sweep again skips the point ----
-- one override per kind of key: a model key, train.steps (a key a resume may change),
-- a float written otherwise than the run's config writes it, a boolean
local overrides = {
    {"model.dim=64", "model.dim", 64},
    {"train.steps=3", "train.steps", 3},
    {"train.lr=1e-3", "train.lr", 0.001},
    {"out.plot=true eval.every=1", "eval.every", 1},
}
for i, o in ipairs(overrides) do
    local s = sweep.new {dir = dir .. "/over", name = "test", log = quiet}
    local id = "over" .. i
    local ok, r = pcall(s.run, s, point(id, o[1]))
    T.ok(ok and r.config and tostring(require("blt.config").get(r.config, o[2])) == tostring(o[3]),
         ("extra '%s': the run has %s = %s"):format(o[1], o[2], tostring(o[3])), tostring(r))
    local s2 = sweep.new {dir = dir .. "/over", name = "test", log = quiet}
    local ok2, r2 = pcall(s2.run, s2, point(id, o[1]))
    T.ok(ok2 and r2.skipped and s2.ran == 0, ("extra '%s': the same point again is skipped, not refused"):format(o[1]),
         tostring(r2))
end
do -- a real change is still refused, naming the key
    local s = sweep.new {dir = dir .. "/over", name = "test", log = quiet}
    local ok, err = pcall(s.run, s, point("over1", "model.dim=48"))
    T.ok(not ok and tostring(err):find("model.dim=48 (the run has 64)", 1, true),
         "extra 'model.dim=48' over a point run with 64 is refused, naming the key", tostring(err))
    ok, err = pcall(s.run, s, point("over1", "", {["model.dim"] = 64}))
    T.ok(ok and err.skipped, "the same settings as args instead of extra words: skipped", tostring(err))
end

-- the issue's example, through the experiments: the same command twice
do
    local bin = os.getenv("BLT_BIN") or "./blt"
    local big = U.corpus(dir .. "/big.txt", 200000)
    for _, c in ipairs {
        {"compare_patching", "schemes=bytelm args.bytelm=model.dim=64"},
        {"scaling", "schemes=bytelm sizes=32x1 study=compute_optimal args.bytelm=model.multiple_of=64"},
    } do
        local cmd = ("%s experiments/%s.lua budget=smoke %s data.path=%s out=%s plot=false %s"):format(bin, c[1], c[2],
            U.q(big), U.q(dir .. "/" .. c[1]), U.q("args.all=train.threads=1 train.steps=2"))
        local rc1, out1 = U.sh(cmd)
        local rc2, out2 = U.sh(cmd)
        T.ok(rc1 == 0 and rc2 == 0 and out2:find("0 points run, 1 skipped", 1, true),
             ("%s with args.* over its own keys, run twice: the second skips the point"):format(c[1]),
             out1:sub(-600) .. "\n----\n" .. out2:sub(-600))
    end
end

-- ---- 2. a damaged result.json or config.json names the file ----
local s = sweep.new {dir = dir .. "/damage", name = "test", log = quiet}
local good = point("p")
local okp = pcall(s.run, s, good)
T.ok(okp, "a point to damage")
local pdir = dir .. "/damage/p"
local originals = {["result.json"] = U.read(pdir .. "/result.json"), ["config.json"] = U.read(pdir .. "/config.json")}

-- damage kinds, each a function of the file's text and its decoded table
-- t with the value at a dotted path ("train.lr") set to v (nil: removed), as JSON
local function with(t, path, v)
    local node = t
    local parts = {}
    for p in path:gmatch("[^.]+") do parts[#parts + 1] = p end
    for i = 1, #parts - 1 do node = node[parts[i]] end
    node[parts[#parts]] = v
    return json.encode(t)
end
local function without(t, path) return with(t, path, nil) end
local DAMAGE = {
    {"empty", function() return "" end},
    {"cut in half", function(text) return text:sub(1, #text // 2) end},
    {"cut at its last byte", function(text) return text:gsub("%s*$", ""):sub(1, -2) end},
    {"not JSON", function() return "this is not JSON\n" end},
    {"binary", function() return "\0\1\2\255" end},
    {"a JSON array", function() return "[1, 2, 3]" end},
    {"a JSON string", function() return '"finished"' end},
    {"null", function() return "null" end},
}
-- fields each file must hold: a missing one, and one of the wrong type
local FIELDS = {["result.json"] = {"exit_reason", "step"}, ["config.json"] = {"kind", "train.seq_len", "train.batch", "model.dim"}}
for file, fields in pairs(FIELDS) do
    for _, f in ipairs(fields) do
        DAMAGE[#DAMAGE + 1] = {"no " .. f, function(_, t) return without(t, f) end, file}
        DAMAGE[#DAMAGE + 1] = {f .. " of the wrong type", function(_, t) return with(t, f, f == "kind" and 7 or "x") end, file}
    end
end
DAMAGE[#DAMAGE + 1] = {"a section that is a number", function(_, t) return with(t, "train", 5) end, "config.json"}
DAMAGE[#DAMAGE + 1] = {"an unknown kind", function(_, t) return with(t, "kind", "no_such_kind") end, "config.json"}
DAMAGE[#DAMAGE + 1] = {"a fractional step", function(_, t) return with(t, "step", 2.5) end, "result.json"}
DAMAGE[#DAMAGE + 1] = {"val_bpb as text", function(_, t) return with(t, "val_bpb", "low") end, "result.json"}

local n, bad = 0, {}
for _, file in ipairs {"result.json", "config.json"} do
    for _, d in ipairs(DAMAGE) do
        if not d[3] or d[3] == file then
            n = n + 1
            local path = pdir .. "/" .. file
            U.write(path, d[2](originals[file], json.decode(originals[file])))
            local sd = sweep.new {dir = dir .. "/damage", name = "test", log = quiet}
            local ok, err = pcall(sd.run, sd, good)
            if ok or not (tostring(err):find(path, 1, true) and tostring(err):find("damaged", 1, true)) then
                bad[#bad + 1] = ("%s %s: %s"):format(file, d[1], ok and "accepted" or tostring(err):gsub("[^\n\32-\126]", "?"))
            end
            U.write(path, originals[file])
        end
    end
end
T.ok(n >= 30 and #bad == 0, ("%d damaged files (result.json, config.json x %d kinds): the sweep stops naming the file")
     :format(n, #DAMAGE), table.concat(bad, "\n"))
do -- as a script sees it: status 2 and the message alone, no traceback (blt.util.user_error)
    local text = U.read(pdir .. "/result.json")
    U.write(pdir .. "/result.json", "")
    local code = ("local s = require('blt.sweep').new{dir = %q, name = 'test', log = {write = function() end}}; "
        .. "s:run{id = 'p', script = 'experiments/train_bytelm.lua', args = {}}"):format(dir .. "/damage")
    local rc, out = U.sh(("%s -e %s"):format(os.getenv("BLT_BIN") or "./blt", U.q(code)))
    T.ok(rc == 2 and out:find(pdir .. "/result.json is damaged", 1, true) and not out:find("traceback", 1, true),
         "a damaged point ends a sweep script with status 2, naming the file, without a traceback", out)
    U.write(pdir .. "/result.json", text)
end
do -- and the files as they were: skipped
    local sd = sweep.new {dir = dir .. "/damage", name = "test", log = quiet}
    local ok, r = pcall(sd.run, sd, good)
    T.ok(ok and r.skipped, "the undamaged point is skipped", tostring(r))
end

U.cleanup(dir)
T.done()
