package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- Patching schemes of one's own (lua/blt/schemes.lua, docs/patching.md "A scheme file"):
-- the registry answers for every built-in, a scheme file trains (the documented example,
-- 2 steps) and its checkpoint works without the file, a crafted checkpoint's scheme
-- cannot reach io/os/require/load/debug nor run or grow without bound, and a scheme that
-- looks ahead is refused at the start, naming the position.
local T = require "tap"
local core = require "blt.core"
local json = require "blt.json"
local schemes = require "blt.schemes"
local patching = require "blt.patching"
local BLT = require "blt.models.blt"
local checkpoint = require "blt.checkpoint"
local models = require "blt.models"
local U = require "testutil"
local bin = os.getenv("BLT_BIN") or "./blt"
local dir = U.tmpdir()
local q, sh = U.q, U.sh

local EXAMPLE = "experiments/schemes/punct.lua" -- the file docs/patching.md shows

-- a row of text ids and entropies that are a causal function of it (e[t] reads token t-1)
local text = "In the beginning God created the heaven and the earth. And the earth was without form"
local row = require("blt.ids").row(text)
local function causal_entropies(r)
    local e = {0}
    for t = 2, #r do e[t] = (r[t - 1] * 37 % 11) / 4 end
    return e
end

-- ---- the registry: one entry per built-in answers every question ----
T.ok(#schemes.names() >= 5, ("the registry lists the built-in schemes (%s)"):format(table.concat(schemes.names(), ", ")))
for _, name in ipairs(schemes.names()) do
    local s = schemes.get(name)
    T.ok(s.kernel == name, ("%s: a built-in, computed by its C kernel"):format(name))
    local opts = {scheme = name}
    for k, v in pairs(s.options) do opts[k] = (k == "delta" or k == "threshold") and 0.5 or v end
    if name == "entropy_delta" then opts.threshold = nil end
    local p = patching.patcher(opts)
    T.is(p.needs_entropy, s.needs_entropy, ("%s: the patcher needs entropies exactly when the registry says"):format(name))
    T.ok(BLT.rules["patching.scheme"](name) == nil, ("%s: train_blt's rule accepts it"):format(name))
    local flags_of = function(r) return (p:flags(r, s.needs_entropy and causal_entropies(r) or nil)) end
    local ok, pos, why = schemes.check_incremental(flags_of, row)
    T.ok(ok, ("%s: passes the look-ahead check"):format(name), why)
    for _, k in ipairs {"size", "threshold", "delta"} do
        if s.options[k] == nil then
            local o = {scheme = name, [k] = 1}
            T.raises(function() patching.patcher(o) end, "does not apply to scheme", ("%s: refuses option %s"):format(name, k))
        end
    end
end
T.ok(BLT.rules["patching.scheme"]("nosuch"):find("file:PATH"), "an unknown name is refused, file:PATH offered")

-- ---- the documented example: loaded, incremental, and the same as its rule by hand ----
local punct = schemes.get("file:" .. EXAMPLE)
T.ok(punct.name == "punct" and punct.options.run == 8 and not punct.needs_entropy and #punct.hash == 16,
     "the example scheme file loads: name, options, needs_entropy, hash")
local pp = patching.patcher {scheme = schemes.rule(punct, punct.options)}
T.ok(schemes.check_incremental(function(r) return (pp:flags(r)) end, row), "the example is incremental")
local lens = pp:lengths("One, two three")
T.is(table.concat(lens, ","), "1,4,1,4,5", "the example cuts after punctuation and spaces")

-- ---- a look-ahead scheme: refused, naming the position ----
local LOOKAHEAD = [[return {name = "peek", flags = function(row)
    local f = {1, 1}
    for i = 3, #row do f[i] = row[i] == 36 end -- the boundary before a space: reads that byte itself
    return f
end}]]
do
    local s = schemes.compile(LOOKAHEAD, "peek.lua")
    local p = patching.patcher {scheme = schemes.rule(s, s.options)}
    local ok, pos, why = schemes.check_incremental(function(r) return (p:flags(r)) end, row)
    -- the first boundary that moves: before the first space (token 3, "In" then " ")
    T.ok(not ok and pos == 4 and why:find("looks ahead"), "check_incremental names the first moved boundary", why)
end

-- ---- the sandbox: every hostile body fails with a clear message, and nothing happens ----
local marker = dir .. "/pwned"
local HOSTILE = {
    {"os.execute", ("os.execute('touch %s')"):format(marker), "attempt to index a nil value %(global 'os'%)"},
    {"io.open", ("io.open('%s', 'w')"):format(marker), "global 'io'"},
    {"require", "require('blt.core')", "global 'require'"},
    {"load", "load('return 1')()", "global 'load'"},
    {"dofile", ("dofile('%s')"):format(EXAMPLE), "global 'dofile'"},
    {"debug", "debug.sethook()", "global 'debug'"},
    {"package", "package.loaded.os.execute('true')", "global 'package'"},
    {"string metatable", "getmetatable('').__index.rep = nil", "global 'getmetatable'"},
    {"a pattern", "('x'):rep(100):find('(x*)*y')", "not available"},
    {"an endless loop", "while true do end", "runs too long"},
    {"memory", "local t = {} for i = 1, 1e8 do t[i] = ('x'):rep(1000) .. i end", "memory"},
    {"pcall", "pcall(function() while true do end end)", "global 'pcall'"},
}
for _, h in ipairs(HOSTILE) do
    local what, body, want = h[1], h[2], h[3]
    -- at load time
    local src = ("%s\nreturn {name = 'x', flags = function(row) return {1} end}"):format(body)
    local ok, err = pcall(schemes.compile, src, "hostile.lua")
    T.ok(not ok and tostring(err):find(want), ("sandbox, %s when the file loads: refused (%s)"):format(what, want), err)
    -- in the rule, called per row
    src = ("return {name = 'x', flags = function(row) %s return {1} end}"):format(body)
    local s = schemes.compile(src, "hostile.lua")
    ok, err = pcall(schemes.rule(s, s.options), row, nil)
    T.ok(not ok and tostring(err):find(want) and tostring(err):find("patching scheme x"),
         ("sandbox, %s in its rule: refused, naming the scheme"):format(what), err)
    -- in an option's rule, checked when the options are
    src = ("return {name = 'x', options = {n = 1}, rules = {n = function(v) %s end}, flags = function() return {1} end}")
        :format(body)
    s = schemes.compile(src, "hostile.lua")
    ok, err = pcall(schemes.options, s, {n = 2})
    T.ok(not ok and tostring(err):find(want) and tostring(err):find("patching scheme x"),
         ("sandbox, %s in an option's rule: refused, naming the scheme"):format(what), err)
end
T.ok(not U.read(marker), "no hostile body created a file")
T.ok(string.rep and string.find("a", "a") and getmetatable("").__index == string, "the string library is restored")

-- ---- the example trains (2 steps); its checkpoint works with the file moved away ----
local corpus = U.corpus(dir .. "/corpus.txt", 20000)
local base = table.concat({"model.dim=16", "model.heads=2", "model.multiple_of=16", "model.global.dim=32",
    "model.global.heads=2", "model.global.layers=2", "model.cross.heads=2", "model.hash.buckets=64",
    "model.hash.ngrams=3,4", "model.encoder.window=16", "model.decoder.window=16", "train.batch=2",
    "train.seq_len=32", "train.steps=2", "train.warmup=1", "train.threads=1", "eval.every=0",
    "eval.final_max_bytes=256", "out.checkpoint_every=0", "out.plot=false", "patching.calib_bytes=1024",
    "data.path=" .. q(corpus), "out.dir=" .. q(dir)}, " ")
local function train(args) return sh(bin .. " experiments/train_blt.lua " .. base .. " " .. args) end

local moved = dir .. "/punct.lua"
U.write(moved, U.read(EXAMPLE))
local rc, out = train("patching.scheme=file:" .. q(moved) .. " patching.options=run=6 out.name=punct")
T.ok(rc == 0 and out:find("makes [%d.]+ bytes/patch"), "train_blt.lua trains the example scheme file, options given", out)
local ck = dir .. "/punct/checkpoint.h5"
local cfg = json.decode(U.read(dir .. "/punct/config.json") or "{}")
local pc = cfg.patching or {}
T.ok(pc.scheme_source == U.read(EXAMPLE) and pc.scheme_hash == core.hash_file(EXAMPLE) and pc.calibrated > 1,
     "the run stores the scheme's source, its hash and its measured mean patch size", json.encode(pc):sub(1, 300))
do
    local f = require("blt").h5_open(dir .. "/punct/metrics.h5")
    local fpb, pm = f:read("/flops_per_byte"), f:read("/patch_mean")
    f:close()
    local want = require("blt.flops").of(cfg, {seq_len = 33, mean_patch = pm and pm[1]})
    T.ok(type(fpb) == "table" and #fpb >= 1 and math.abs(fpb[1] - want.training.total) <= 1e-5 * want.training.total,
         "the run logs its FLOPs per byte (the formula at the step's mean patch size)", (fpb and fpb[1] or "none") .. " want " .. want.training.total)
    rc, out = sh(bin .. " scripts/plot_runs.lua x=flops out=" .. q(dir .. "/f.png") .. " " .. q(dir .. "/punct"))
    T.ok(rc == 0 or out:find("gnuplot"), "plot_runs x=flops takes the run", out)
end
os.remove(moved)
local okl, model = pcall(models.load, ck)
T.ok(okl and model.patcher and model.patcher.fn, "models.load rebuilds the scheme from the checkpoint alone", not okl and model)
if okl then
    local want = patching.patcher {scheme = schemes.rule(punct, {run = 6})}:lengths(text)
    local got = model.patcher:lengths(text)
    T.is(table.concat(got, ","), table.concat(want, ","), "the rebuilt scheme cuts as the file with run=6 does")
end
for _, c in ipairs {
    {"generate", "scripts/generate.lua model=" .. q(ck) .. " n=8 show_patches=true 'In the'"},
    {"evaluate", "scripts/evaluate.lua model=" .. q(ck) .. " " .. q(corpus)},
    {"inspect", "scripts/inspect.lua model=" .. q(ck)},
} do
    rc, out = sh(bin .. " " .. c[2])
    T.ok(rc == 0 and not out:find("unknown") and not out:find("No such file"), c[1] .. " works with the scheme file gone", out)
end
rc, out = sh(bin .. " scripts/show_patches.lua color=false scheme=file:" .. EXAMPLE .. " 'One, two three'")
T.ok(rc == 0 and out:find("punct"), "show_patches shows a scheme file's patches", out)
rc, out = sh(bin .. " scripts/show_patches.lua color=false options=run=3 scheme=file:" .. EXAMPLE .. " 'In the beginning'")
T.ok(rc == 0 and out:find("In |the| |beg|inn|ing", 1, true), "show_patches takes a scheme file's options", out)
rc, out = sh(bin .. " scripts/show_patches.lua options=runn=3 scheme=file:" .. EXAMPLE .. " 'In'")
T.ok(rc == 2 and out:find("unknown option 'runn' (its options: run)", 1, true), "... and refuses one it does not have", out)
rc, out = sh(bin .. " scripts/show_patches.lua options=run=3 scheme=space 'In'")
T.ok(rc == 2 and out:find("options does not apply to scheme 'space'", 1, true), "... and options= for a built-in", out)

-- ---- a scheme file with an option to calibrate: set to the target at the start ----
U.write(dir .. "/every.lua", [[return {name = "every", options = {every = 2.0}, rules = {every = "> 0"},
    calibrates = "every", flags = function(row, e, o)
        local k, f = math.max(1, math.floor(o.every)), {1, 1}
        for i = 3, #row + 1 do f[i] = (i - 2) % k == 0 end
        return f
    end}]])
for _, target in ipairs {3, 5} do
    rc, out = train(("patching.scheme=file:%s patching.target=%d out.name=every%d"):format(q(dir .. "/every.lua"), target, target))
    local ecfg = json.decode(U.read(("%s/every%d/config.json"):format(dir, target)) or "{}").patching or {}
    local every = tonumber((ecfg.options or ""):match("every=([%d.]+)"))
    -- a step function of its option: the closest mean within 10 % (32-byte rows)
    T.ok(rc == 0 and every and math.abs(ecfg.calibrated - target) <= 0.1 * target,
         ("a scheme's own option is calibrated to target %d and recorded"):format(target), out)
    local okm, m = pcall(models.load, ("%s/every%d/checkpoint.h5"):format(dir, target))
    local l = okm and m.patcher:lengths(("x"):rep(4 * target))
    T.ok(okm and l[2] == math.floor(every), "... and the checkpoint cuts with the calibrated value",
         not okm and m or l and table.concat(l, ","))
end

-- ---- compare_patching and scaling take file:PATH beside the built-in names ----
local stop = " 'args.all=train.threads=1 train.stop_at=2' plot=false data.path=" .. q(corpus)
rc, out = sh(bin .. " experiments/compare_patching.lua budget=smoke target=3 schemes=space,file:" .. EXAMPLE
    .. ",file:" .. q(dir .. "/every.lua") .. " out=" .. q(dir .. "/cmp") .. stop)
local prow, erow = out:match("\npunct +([%d.]+) "), out:match("\nevery +([%d.]+) ")
T.ok(rc == 0 and out:find("\nspace +[%d.]+ ") and prow and tonumber(prow) > 1,
     "compare_patching: a scheme file gets a row (its measured mean patch size) beside space", out)
T.ok(erow and math.abs(tonumber(erow) - 3) <= 0.3, "compare_patching: a file's calibrated option is set to target=3", out)
rc, out = sh(bin .. " experiments/scaling.lua budget=smoke study=compute_optimal sizes=32x1 schemes=file:" .. EXAMPLE
    .. " out=" .. q(dir .. "/sc") .. stop)
T.ok(rc == 0 and out:find("\npunct +32x1 "), "scaling: a scheme file gets its points", out)
-- a file scheme's own options in both comparisons (scheme_options=NAME:k=v,...)
rc, out = sh(bin .. " experiments/compare_patching.lua budget=smoke target=3 schemes=space,file:" .. EXAMPLE
    .. " scheme_options=punct:run=3 out=" .. q(dir .. "/cmp3") .. stop)
local prow3 = out:match("\npunct +([%d.]+) ")
local pcfg = json.decode(U.read(dir .. "/cmp3/punct-s1/config.json") or "{}").patching or {}
T.ok(rc == 0 and prow3 and prow and tonumber(prow3) < tonumber(prow) and pcfg.options == "run=3",
     ("compare_patching: scheme_options sets a file scheme's option (run=3: %s bytes/patch, default run=8: %s)")
     :format(tostring(prow3), tostring(prow)), out)
rc, out = sh(bin .. " experiments/scaling.lua budget=smoke study=compute_optimal sizes=32x1 schemes=file:" .. EXAMPLE
    .. " scheme_options=punct:run=3 out=" .. q(dir .. "/sc3") .. stop)
local scfg = json.decode(U.read(dir .. "/sc3/co-punct-32x1-s1/config.json") or "{}").patching or {}
T.ok(rc == 0 and scfg.options == "run=3", "scaling: scheme_options sets a file scheme's option", out)
for _, script in ipairs {"compare_patching", "scaling"} do
    for _, c in ipairs {{"punct:runn=3", "unknown option 'runn' (its options: run)"},
                        {"punct:run=x", "option run must be integer"},
                        {"space:size=3", "space is not the name of a scheme file in schemes="},
                        {"punct", "is not NAME:key=value"}} do
        rc, out = sh(bin .. " experiments/" .. script .. ".lua budget=smoke schemes=space,file:" .. EXAMPLE
            .. " scheme_options=" .. c[1] .. stop)
        T.ok(rc == 2 and out:find(c[2], 1, true) and select(2, out:gsub("\n", "")) <= 1,
             ("%s: scheme_options=%s is refused in one line (status 2)"):format(script, c[1]), out)
    end
end
for _, script in ipairs {"compare_patching", "scaling"} do
    rc, out = sh(bin .. " experiments/" .. script .. ".lua budget=smoke schemes=file:" .. q(dir .. "/nope.lua") .. stop)
    T.ok(rc == 2 and out:find("nope.lua' cannot be used: .*No such file"), script .. ": a missing scheme file is refused (status 2)", out)
end

-- ---- the demo shows a scheme file's patches of its sentence ----
rc, out = sh(bin .. " experiments/demo.lua budget=smoke steps=2 entropy_steps=2 eval_bytes=512 sample=8 data.path="
    .. q(corpus) .. " args.all=train.threads=1 out=" .. q(dir .. "/demo") .. " show=space,file:" .. EXAMPLE)
T.ok(rc == 0 and out:find("file:" .. EXAMPLE .. ": a patch starts after a space or punctuation byte", 1, true)
     and out:find("\n  space: "), "the demo shows a scheme file's patches beside space", out:sub(-1500))

-- ---- a crafted checkpoint: its scheme tries os.execute, io.open, require ----
local run = checkpoint.load(ck)
for _, h in ipairs {HOSTILE[1], HOSTILE[2], HOSTILE[3]} do
    local src = ("return {name = 'evil', options = {run = 1}, flags = function(row) %s return {1} end}"):format(h[2])
    run.config.patching.scheme_source, run.config.patching.scheme_hash = src, schemes.hash(src)
    local evil = dir .. "/evil.h5"
    checkpoint.save(evil, run)
    rc, out = sh(bin .. " scripts/generate.lua model=" .. q(evil) .. " n=4 'In the'")
    T.ok(rc == 2 and out:find("patching scheme evil") and out:find(h[3]) and not out:find("traceback"),
         ("a crafted checkpoint whose scheme calls %s: generate ends with a clear error (status 2)"):format(h[1]), out)
    rc, out = sh(bin .. " scripts/evaluate.lua model=" .. q(evil) .. " " .. q(corpus))
    T.ok(rc == 2 and out:find("patching scheme evil") and out:find(h[3]) and not out:find("traceback"),
         ("... and evaluate (status 2)"):format(h[1]), out)
    T.ok(not U.read(marker), "... and no file was created")
end
-- its source changed without its hash
run.config.patching.scheme_source = U.read(EXAMPLE) .. "\n"
checkpoint.save(dir .. "/changed.h5", run)
local okc, errc = pcall(models.load, dir .. "/changed.h5")
T.ok(not okc and tostring(errc):find("scheme_source: its hash"), "a source that does not match its hash is refused", errc)

-- ---- a look-ahead scheme file is refused when the run starts ----
U.write(dir .. "/peek.lua", LOOKAHEAD)
rc, out = train("patching.scheme=file:" .. q(dir .. "/peek.lua") .. " out.name=peek")
T.ok(rc == 2 and out:find("refused: the boundary before token %d+ %(byte %d+%) moved when token %d+")
     and out:find("looks ahead"), "train_blt.lua refuses a look-ahead scheme (status 2), naming the position", out)
-- the user may not set what the run writes
rc, out = train("patching.scheme_source=x out.name=x")
T.ok(rc == 2 and out:find("scheme_source"), "patching.scheme_source is written by the run, not given", out)

U.cleanup(dir)
-- ---- the module graph (every require, in functions too) has no cycle ----
do
    local graph, n = {}, 0
    local ls = io.popen("ls lua/blt/*.lua lua/blt/models/*.lua")
    for f in ls:lines() do
        local m = f:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
        graph[m], n = {}, n + 1
        for r in U.read(f):gsub("%-%-[^\n]*", ""):gmatch("require%s*%(?%s*[\"']([%w_.]+)[\"']") do
            table.insert(graph[m], r)
        end
    end
    ls:close()
    local state, stack, cycles = {}, {}, {}
    local function visit(m)
        state[m] = 1
        stack[#stack + 1] = m
        for _, r in ipairs(graph[m]) do
            if graph[r] and state[r] == 1 then
                local i = 1
                while stack[i] ~= r do i = i + 1 end
                cycles[#cycles + 1] = table.concat(stack, " -> ", i) .. " -> " .. r
            elseif graph[r] and not state[r] then visit(r) end
        end
        stack[#stack] = nil
        state[m] = 2
    end
    local names = {}
    for m in pairs(graph) do names[#names + 1] = m end
    table.sort(names)
    for _, m in ipairs(names) do if not state[m] then visit(m) end end
    T.ok(n > 20 and #cycles == 0, ("no require cycle among the %d modules of lua/blt"):format(n), table.concat(cycles, "\n"))
end

T.done()
