package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local U = require "testutil"
local core = require "blt.core"
local config = require "blt.config"
local experiment = require "blt.experiment"

-- The edges of the command line, generated over every script of experiments/ and
-- scripts/: keys the run writes itself are refused (patching.calibrated=4 would skip
-- the BLT's calibration), integer keys take decimal integers only (train.steps=0x10
-- was 16), words no script takes are refused (after `--` too), list keys refuse an
-- item given twice (seeds=1,1), a corpus shorter than a row is refused at the start.
-- Each script's defaults and options are taken from the script itself: it is run up
-- to its config.parse call, which hands them over instead of parsing.

local bin = os.getenv("BLT_BIN") or "./blt"
local q, sh = U.q, U.sh
local dir = U.tmpdir()

-- ---- every script, and what it hands config.parse ----
local scripts = U.scripts()

local function capture(script)
    local real = config.parse
    config.parse = function(defaults, _, opts) coroutine.yield(defaults, opts or {}) end
    local saved_arg = arg
    _G.arg = {[0] = script, "x=1"}
    local co = coroutine.create(function() return dofile(script) end)
    local ok, defaults, opts = coroutine.resume(co)
    config.parse, _G.arg = real, saved_arg
    if not ok or coroutine.status(co) ~= "suspended" then return nil, tostring(defaults) end
    return {defaults = defaults, opts = opts}
end

local specs = {}
for _, s in ipairs(scripts) do
    local spec, err = capture(s)
    T.ok(spec and type(spec.defaults) == "table", s .. ": reads its command line through config.parse", err)
    specs[s] = spec
end

-- A script's command line, run with a timeout and with small settings first (when it
-- has those keys), so that a script that wrongly accepts what is under test trains
-- briefly on a small corpus inside the test's folder instead of for minutes.
local small_corpus = U.corpus(dir .. "/corpus.txt", 20000)
local CHEAP = {budget = "smoke", ["train.steps"] = "1", steps = "1", entropy_steps = "1", reps = "1",
               sections = "matmul", plot = "false", ["out.plot"] = "false", sample = "0", n = "1",
               ["data.path"] = small_corpus, data = small_corpus, ["out.dir"] = dir .. "/runs", out = dir .. "/out"}
local function run(script, words)
    local spec, cheap = specs[script], {}
    for k, v in pairs(CHEAP) do
        local d = spec and config.get(spec.defaults, k)
        if d ~= nil and not (type(d) == "table" and not getmetatable(d)) then -- a key, not a section
            cheap[#cheap + 1] = q(k .. "=" .. v)
        end
    end
    table.sort(cheap)
    return sh(("timeout 60 %s %s %s %s < /dev/null"):format(bin, script, table.concat(cheap, " "), words))
end

-- the key paths of a script whose defaults are integers / which opts.internal names
local internal_keys
local function integer_keys(spec) -- those the user may give
    local out, internal = {}, {}
    for _, p in ipairs(internal_keys(spec)) do internal[p] = true end
    for _, p in ipairs(config.paths(spec.defaults)) do
        if math.type(config.get(spec.defaults, p)) == "integer" and not internal[p] then out[#out + 1] = p end
    end
    return out
end
function internal_keys(spec)
    local out = {}
    for _, p in ipairs(config.paths(spec.defaults)) do
        local prefix = ""
        for part in p:gmatch("[^.]+") do
            prefix = prefix == "" and part or (prefix .. "." .. part)
            if (spec.opts.internal or {})[prefix] then out[#out + 1] = p break end
        end
    end
    return out
end

-- ---- 1. keys the run writes are not the user's ----
-- every key a script's --help says the run writes (or takes from a checkpoint, or the
-- script fixes) is marked "not to be given", and every such key is refused with status 2
-- from the command line and from --config
do
    local unmarked, marked = {}, 0
    for _, s in ipairs(scripts) do
        local _, help = sh(bin .. " " .. s .. " --help")
        for line in help:gmatch("[^\n]+") do
            local key = line:match("^  (%S+)")
            if key and (line:find("written by the run", 1, true) or line:find("from its checkpoint", 1, true)
                        or line:find("from patching.entropy_model", 1, true) or line:find("fixed by the script", 1, true)) then
                marked = marked + 1
                if not line:find("not to be given", 1, true) then unmarked[#unmarked + 1] = s .. ": " .. key end
            end
        end
    end
    T.ok(marked >= 12 and #unmarked == 0, ("the %d keys --help says the run sets are marked 'not to be given'"):format(marked),
         table.concat(unmarked, "\n"))

    local n, bad = 0, {}
    for _, s in ipairs(scripts) do
        local spec = specs[s]
        for _, key in ipairs(spec and internal_keys(spec) or {}) do
            local d = config.get(spec.defaults, key)
            local v = tostring(d)
            -- the same key and value in a --config file: {a = {b = value}}
            local file, lua, depth = dir .. "/internal.lua", "return ", 0
            for part in key:gmatch("[^.]+") do lua, depth = lua .. "{" .. part .. " = ", depth + 1 end
            U.write(file, lua .. (type(d) == "string" and ("%q"):format(d) or v) .. ("}"):rep(depth))
            for _, how in ipairs {q(key .. "=" .. v), "--config " .. q(file)} do
                n = n + 1
                local rc, out = run(s, how)
                if not (rc == 2 and out:find("'" .. key .. "' is not to be given", 1, true)) then
                    bad[#bad + 1] = ("%s %s: status %s: %s"):format(s, how, tostring(rc), out:sub(1, 300))
                end
            end
        end
    end
    T.ok(n >= 24 and #bad == 0, ("%d internal keys x {command line, --config}: status 2 naming the key"):format(n),
         table.concat(bad, "\n"))
    local rc, out = run("experiments/train_blt.lua", "patching.calibrated=4")
    T.ok(rc == 2 and out:find("patching.calibrated", 1, true) and out:find("patching.target", 1, true),
         "the issue's example: patching.calibrated=4 is refused, pointing at patching.target", out)
    -- a run still writes them: resume and fork read them from the checkpoint (tests/test_blt.lua)
end

-- ---- 2. integer keys take decimal integers only ----
local MALFORMED = {"0x10", "+16", " 16", "16 ", "1e3", "16.0", "016", "1_000", "16x", "0b10", "１６", "16\n"}
do
    local n, bad = 0, {}
    for _, s in ipairs(scripts) do
        local spec = specs[s]
        for _, key in ipairs(spec and integer_keys(spec) or {}) do
            for _, form in ipairs(MALFORMED) do
                n = n + 1
                local ok, err = pcall(config.parse, spec.defaults, {key .. "=" .. form}, spec.opts)
                if ok or not tostring(err):find("'" .. key .. "' must be integer", 1, true) then
                    bad[#bad + 1] = ("%s %s=%q: %s"):format(s, key, form, ok and "accepted" or tostring(err))
                end
            end
            local ok, cfg = pcall(config.parse, spec.defaults, {key .. "=16"}, spec.opts)
            n = n + 1
            if not (ok and config.get(cfg, key) == 16 and math.type(config.get(cfg, key)) == "integer") then
                bad[#bad + 1] = ("%s %s=16 not read as 16: %s"):format(s, key, tostring(cfg))
            end
        end
    end
    T.ok(n > 500 and #bad == 0, ("%d cases: every integer key of every script x %d malformed forms refused, 16 read as 16")
         :format(n, #MALFORMED), table.concat(bad, "\n", 1, math.min(#bad, 20)))

    -- through each script's own command line (status 2, naming the key), one form each
    bad = {}
    local k = 0
    for _, s in ipairs(scripts) do
        local key = specs[s] and integer_keys(specs[s])[1]
        if key then
            k = k + 1
            local form = MALFORMED[(k - 1) % #MALFORMED + 1]
            local rc, out = run(s, q(key .. "=" .. form))
            if not (rc == 2 and out:find(key, 1, true)) then bad[#bad + 1] = ("%s %s=%q: status %s: %s"):format(s, key, form, rc, out) end
        end
    end
    T.ok(k >= 12 and #bad == 0, ("%d scripts refuse a malformed integer with status 2, naming the key"):format(k),
         table.concat(bad, "\n"))
    local rc, out = run("experiments/train_bytelm.lua", "train.steps=0x10")
    T.ok(rc == 2 and out:find("train.steps", 1, true) and out:find("0x10", 1, true), "the issue's example: train.steps=0x10", out)
    -- numbers are still numbers, and text keys keep their text as written
    local d = {n = 1, x = 0.5, s = "a"}
    local cfg = config.parse(d, {"n=-3", "x=3e-4", "s=1.50"})
    T.ok(cfg.n == -3 and cfg.x == 3e-4 and cfg.s == "1.50", "-3, 3e-4 read as numbers; a text key keeps '1.50'",
         ("%s %s %s"):format(cfg.n, cfg.x, cfg.s))
    cfg = config.parse(d, {"x=.5", "x=2"})
    T.ok(cfg.x == 2.0 and math.type(cfg.x) == "float", "an integer given to a number key is a number")
    -- a --config file holds Lua values: a string is not a number
    U.write(dir .. "/hex.lua", "return {train = {steps = '0x10'}}")
    rc, out = run("experiments/train_bytelm.lua", "--config " .. q(dir .. "/hex.lua"))
    T.ok(rc == 2 and out:find("'train.steps' must be integer", 1, true), "--config: the text '0x10' for an integer key", out)
end

-- ---- 3. words a script does not take ----
do
    local n, bad = 0, {}
    for _, s in ipairs(scripts) do
        local spec = specs[s]
        if spec then
            -- in process: after `--` a word is refused unless the script takes words
            local ok, err = pcall(config.parse, spec.defaults, {"--", "stray_word"}, spec.opts)
            if spec.opts.words then
                if not ok then bad[#bad + 1] = s .. ": takes words, refused one: " .. tostring(err) end
            else
                n = n + 1
                local rc, out = run(s, "-- stray_word")
                if ok or not (rc == 2 and out:find("'stray_word'", 1, true)) then
                    bad[#bad + 1] = ("%s -- stray_word: status %s: %s"):format(s, rc, out)
                end
                rc, out = run(s, "stray_word")
                if not (rc == 2 and out:find("'stray_word'", 1, true)) then
                    bad[#bad + 1] = ("%s stray_word: status %s: %s"):format(s, rc, out)
                end
            end
        end
    end
    T.ok(n >= 10 and #bad == 0, ("%d scripts that take no words refuse one, before or after --, with status 2"):format(n),
         table.concat(bad, "\n"))
end

-- ---- 4. list keys refuse an item given twice ----
do
    local n, bad, sweeps = 0, {}, {}
    for _, s in ipairs(scripts) do
        local spec = specs[s]
        for key, rule in pairs(spec and spec.opts.rules or {}) do
            local example = experiment.LISTS[rule]
            if example then
                n = n + 1
                sweeps[s] = (sweeps[s] or 0) + 1
                local rc, out = run(s, q(key .. "=" .. example .. "," .. example))
                if not (rc == 2 and out:find(key, 1, true) and out:find("twice", 1, true)) then
                    bad[#bad + 1] = ("%s %s=%s,%s: status %s: %s"):format(s, key, example, example, rc, out)
                end
                if rule(example) ~= nil then bad[#bad + 1] = ("%s %s: its example %s is refused"):format(s, key, example) end
            end
        end
    end
    T.ok(sweeps["experiments/compare_patching.lua"] == 3 and sweeps["experiments/scaling.lua"] == 4 and #bad == 0,
         ("%d list keys refuse an item given twice with status 2, naming the key"):format(n), table.concat(bad, "\n"))
    local cases = {
        {"experiments/compare_patching.lua", "seeds=1,1"}, {"experiments/compare_patching.lua", "seeds=1,01"},
        {"experiments/scaling.lua", "schemes=entropy:4,entropy:4.0"}, {"experiments/scaling.lua", "schemes=entropy,entropy:4 target=4"},
        {"experiments/scaling.lua", "sizes=64x1,064x1"}, {"experiments/train_blt.lua", "model.hash.ngrams=3,4,3"},
    }
    for _, c in ipairs(cases) do
        local rc, out = run(c[1], c[2])
        T.ok(rc == 2 and out:find("twice", 1, true), ("%s %s: two ways of writing one item are one item"):format(c[1], c[2]), out)
    end
end

-- ---- 5. a corpus shorter than a row ----
do
    U.write(dir .. "/empty.txt", "")
    U.write(dir .. "/one.txt", "a")
    U.write(dir .. "/short.txt", ("x"):rep(100))
    local trainers = {}
    for _, s in ipairs(scripts) do if s:match("^experiments/train_") then trainers[#trainers + 1] = s end end
    local n, bad = 0, {}
    for _, s in ipairs(trainers) do
        for _, c in ipairs {{"empty.txt", "empty"}, {"one.txt", "train.seq_len = 256"}, {"short.txt", "train.seq_len = 256"},
                            {"one.txt train.seq_len=1", "validation split is empty"}} do
            n = n + 1
            local path = dir .. "/" .. c[1]:match("^%S+")
            local rc, out = run(s, ("data.path=%s %s out.dir=%s %s"):format(q(path), c[1]:match(" (.*)$") or "",
                                                                              q(dir .. "/short-runs"), U.script_words(s, dir)))
            if not (rc == 2 and out:find("data.path = " .. path, 1, true) and out:find(c[2], 1, true)
                    and (c[2] == "empty" or out:find("%d+ bytes in %d+ documents"))
                    and not out:find("traceback", 1, true)) then
                bad[#bad + 1] = ("%s %s: status %s: %s"):format(s, c[1], rc, out:sub(1, 400))
            end
        end
    end
    T.ok(#trainers >= 4 and #bad == 0, ("%d training scripts x 4 short corpora: status 2 naming data.path, train.seq_len and the sizes")
         :format(#trainers), table.concat(bad, "\n"))
    T.ok(core.listdir(dir .. "/short-runs") == nil, "and no run folder is made")
end

U.cleanup(dir)
T.done()
