package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- A model kind from a file (model.file=PATH, lua/blt/kindfile.lua, docs/extending.md "A kind
-- from a file"): the core view a kind gets is generated from core.groups and holds no file
-- or process function; docs/extending.md's kind trains with experiments/train_model.lua and
-- its checkpoint loads in generate, evaluate, inspect and models.load with the file moved
-- away; every forbidden capability, tried at every place a kind's code runs, fails with a
-- clear message and creates nothing; crafted checkpoints fail in the scripts with status 2;
-- a source that does not match its hash and a kind shadowing another are refused.
local T = require "tap"
local core = require "blt.core"
local kindfile = require "blt.kindfile"
local checkpoint = require "blt.checkpoint"
local models = require "blt.models"
local U = require "testutil"
local bin = os.getenv("BLT_BIN") or "./blt"
local dir = U.tmpdir()
local q, sh = U.q, U.sh

-- ---- the core view: by group, generated over every function of blt.core ----
local FILE_OR_PROCESS = {"spawn", "write_file", "mkdtemp", "rm_rf", "which", "listdir", "mkdir", "lock",
                         "h5_open", "h5_create", "h5_metrics", "data_open", "hash_file", "file_kind", "dist_abort"}
do
    local view = kindfile.core_view()
    local n, allowed, untagged, wrong = 0, 0, {}, {}
    for name, v in pairs(core) do
        if type(v) == "function" then
            n = n + 1
            if not core.groups[name] then untagged[#untagged + 1] = name end
            local ok = kindfile.allowed(name)
            if ok then allowed = allowed + 1 end
            local got = rawget(view, name) ~= nil
            if got ~= ok then wrong[#wrong + 1] = name end
            if not ok then -- a left-out function is refused by name
                local okr, err = pcall(function() return view[name] end)
                if okr or not tostring(err):find("blt.core." .. name .. " is not available to a model kind", 1, true) then
                    wrong[#wrong + 1] = name .. " (" .. tostring(err) .. ")"
                end
            end
        end
    end
    table.sort(untagged)
    table.sort(wrong)
    T.ok(n > 100 and #untagged == 0, ("core.groups tags every one of the %d core functions"):format(n), table.concat(untagged, ", "))
    T.ok(#wrong == 0 and allowed > 50, ("the view holds exactly the allowed groups' %d functions; the other %d are refused by name")
         :format(allowed, n - allowed), table.concat(wrong, ", "))
    for _, name in ipairs(FILE_OR_PROCESS) do
        T.ok(core[name] and not kindfile.allowed(name), ("the view leaves out core.%s (group %s)"):format(name, tostring(core.groups[name])))
    end
    T.ok(view.matmul and view.Generator and view.scope and view.nn_trunc_normal, "the view has the ops, generators and layer steps a kind needs")
end

-- ---- hostile code at every place a kind's code runs: refused, nothing happens ----
local marker = dir .. "/pwned"
local HOSTILE = {
    {"os.execute", ("os.execute('touch %s')"):format(marker), "global 'os'"},
    {"io.open", ("io.open('%s', 'w')"):format(marker), "global 'io'"},
    {"core.spawn", ("require('blt.core').spawn({'touch', '%s'})"):format(marker), "blt.core.spawn is not available"},
    {"core.write_file", ("require('blt.core').write_file('%s', 'x')"):format(marker), "blt.core.write_file is not available"},
    {"core.mkdtemp", "require('blt.core').mkdtemp('/tmp/x')", "blt.core.mkdtemp is not available"},
    {"core.rm_rf", ("require('blt.core').rm_rf('%s')"):format(dir), "blt.core.rm_rf is not available"},
    {"core.which", "require('blt.core').which('sh')", "blt.core.which is not available"},
    {"blt.spawn", ("require('blt').spawn({'touch', '%s'})"):format(marker), "field 'spawn'"},
    {"require", "require('blt.train')", "a model kind may require only"},
    {"require io", "require('io')", "a model kind may require only"},
    {"load", "load('return 1')()", "global 'load'"},
    {"dofile", "dofile('lua/blt/util.lua')", "global 'dofile'"},
    {"debug", "debug.sethook()", "global 'debug'"},
    {"package", "package.loaded.os.execute('true')", "global 'package'"},
    {"string metatable", "getmetatable('').__index.x = 1", "attempt to index a nil value"},
    {"tensor metatable", "getmetatable(require('blt.core').zeros({1})).__gc = 1", "attempt to index a nil value"},
    {"__gc", "setmetatable({}, {__gc = function() end})", "__gc is not available"},
    {"a pattern", "('x'):rep(100):find('(x*)*y')", "not available"},
    {"an endless loop", "while true do end", "runs too long"},
    {"pcall around a loop", "pcall(function() while true do end end)", "runs too long"},
    {"memory", "local t = {} for i = 1, 1e8 do t[i] = ('x'):rep(1000) .. i end", "memory"},
}
local function kind_src(id, at, body)
    local function here(p) return at == p and body or "" end
    return ([[
local core = require "blt.core"
local nn = require "blt.nn";
%s
local K = nn.class("K")
K.kind = "evil_%d"
K.sections = {model = {dim = 4}}
K.docs = {model = {dim = "width"}}
function K.check(cfg) %s end
function K.count_params(cfg) return 0 end
function K.build(cfg, seed) %s return nn.Module.new(K) end
function K:loss(rows) %s return core.zeros({1}):sum() end
return K
]]):format(here("load"), id, here("check"), here("build"), here("loss"))
end
-- the budgets are module settings; smaller ones here keep the loop and memory cases fast
local budget, heap = kindfile.BUDGET, kindfile.HEAP
kindfile.BUDGET, kindfile.HEAP = 1e6, 16 << 20
local cases, id = 0, 0
for _, h in ipairs(HOSTILE) do
    for _, at in ipairs {"load", "check", "build", "loss"} do
        id = id + 1
        collectgarbage("collect") -- the heap bound counts growth: an earlier case's garbage must not pay for this one
        local ok, err = pcall(function()
            local K = kindfile.compile(kind_src(id, at, h[2]), "evil.lua")
            local cfg = {model = {dim = 4}}
            K.check(cfg)
            local m = K.build(cfg, 1)
            return m:loss(core.tensor({{1, 5}}, "int32"))
        end)
        err = tostring(err)
        T.ok(not ok and err:find(h[3]) and err:find("model kind", 1, true) and not err:find("traceback"),
             ("sandbox: %s in the kind's %s is refused (%s)"):format(h[1], at, h[3]), err)
        cases = cases + 1
    end
end
kindfile.BUDGET, kindfile.HEAP = budget, heap
do -- a table nested deeper than the host copies
    local ok, err = pcall(function()
        local K = kindfile.compile(kind_src(999, "none", ""):gsub("function K%.count_params%(cfg%) return 0 end",
            "function K.count_params(cfg) local t = {} for i = 1, 1e5 do t = {t} end return t end"), "deep.lua")
        return K.count_params({})
    end)
    T.ok(not ok and tostring(err):find("nests deeper than", 1, true), "a table nested 1e5 deep is refused, not copied", tostring(err))
end
T.ok(cases >= 80, ("%d hostile cases (%d bodies x 4 places)"):format(cases, #HOSTILE))
T.ok(not U.read(marker), "no hostile kind created a file")
T.ok(getmetatable("").__index == string and string.find("a", "a"), "the string library is restored")

-- ---- docs/extending.md's kind, given as model.file: trains, then loads without the file ----
local text = assert(U.read("docs/extending.md"))
local body = assert(text:match("```lua file=lua/blt/models/bigram.lua\n(.-)```"), "the doc's kind")
local kfile = dir .. "/bigram.lua"
U.write(kfile, body)
local corpus = U.corpus(dir .. "/corpus.txt", 20000)
local common = table.concat({"train.batch=2", "train.seq_len=32", "train.steps=2", "train.warmup=1",
    "train.threads=1", "eval.every=0", "eval.final_max_bytes=256", "out.checkpoint_every=0", "out.plot=false",
    "data.path=" .. q(corpus), "out.dir=" .. q(dir)}, " ")
local rc, out = sh(bin .. " experiments/train_model.lua model.file=" .. q(kfile) .. " model.dim=16 out.name=big " .. common)
local ck = dir .. "/big/checkpoint.h5"
T.ok(rc == 0 and U.read(ck), "experiments/train_model.lua model.file=PATH trains the doc's kind 2 steps", out)
local run = checkpoint.load(ck)
T.ok(run.config.kind == "bigram" and run.config.model.file_source == body
     and run.config.model.file_hash == kindfile.hash(body), "its checkpoint carries the kind's source and hash")
os.remove(kfile)
for _, c in ipairs {
    {"generate", "scripts/generate.lua model=" .. q(ck) .. " n=8 'In the'", "generate: 8 bytes"},
    {"generate cache=false", "scripts/generate.lua model=" .. q(ck) .. " cache=false n=8 'In the'", "generate: 8 bytes"},
    {"evaluate", "scripts/evaluate.lua model=" .. q(ck) .. " " .. q(corpus), "bits/byte"},
    {"inspect", "scripts/inspect.lua model=" .. q(ck), "parameters 8320"},
    {"--resume", "experiments/train_model.lua --resume " .. q(ck) .. " train.steps=3", "3 steps"},
} do
    rc, out = sh(bin .. " " .. c[2])
    T.ok(rc == 0 and out:find(c[3], 1, true), c[1] .. " works with the kind's file moved away", out)
end
do
    local ok, model, r = pcall(models.load, ck)
    T.ok(ok and r.config.kind == "bigram", "models.load rebuilds it from the checkpoint alone", not ok and model)
    if ok then
        local nats, k = models.nats(model, core.tensor({{1, 76, 105, 107, 101}}, "int32"))
        T.ok(k == 4 and nats > 0 and nats < math.huge, ("its loss is finite (%.3f nats)"):format(nats))
    end
end

-- ---- crafted checkpoints in the scripts: status 2, a clear message, no file ----
for i = 1, 5 do
    local h = HOSTILE[i == 5 and 9 or i]
    local src = body:gsub("function Bigram%.build%(cfg, seed%)\n", function(s) return s .. h[2] .. "\n" end, 1)
    run.config.model.file_source, run.config.model.file_hash = src, kindfile.hash(src)
    local evil = dir .. "/evil.h5"
    checkpoint.save(evil, run)
    for _, c in ipairs {{"generate", "scripts/generate.lua model=" .. q(evil) .. " n=4 'In'"},
                        {"evaluate", "scripts/evaluate.lua model=" .. q(evil) .. " " .. q(corpus)},
                        {"inspect", "scripts/inspect.lua model=" .. q(evil)}} do
        rc, out = sh(bin .. " " .. c[2])
        T.ok(rc == 2 and out:find("model kind bigram: build: ", 1, true) and out:find(h[3]) and not out:find("traceback"),
             ("a crafted checkpoint whose kind calls %s: %s ends with status 2 and says why"):format(h[1], c[1]), out)
    end
end
T.ok(not U.read(marker), "no crafted checkpoint created a file")

-- ---- its source changed without its hash ----
run.config.model.file_source = body .. "\n"
run.config.model.file_hash = kindfile.hash(body)
checkpoint.save(dir .. "/changed.h5", run)
local okc, errc = pcall(models.load, dir .. "/changed.h5")
T.ok(not okc and tostring(errc):find("model.file_source: its hash is", 1, true), "a source that does not match its hash is refused", errc)
rc, out = sh(bin .. " scripts/generate.lua model=" .. q(dir .. "/changed.h5") .. " n=4 'In'")
T.ok(rc == 2 and out:find("its hash is", 1, true), "... by generate too (status 2)", out)

-- ---- the comparisons take model:PATH beside the built-in words ----
U.write(kfile, body)
local stop = " 'args.all=train.threads=1 train.stop_at=2' plot=false data.path=" .. q(corpus)
rc, out = sh(bin .. " experiments/compare_patching.lua budget=smoke target=3 schemes=space,model:" .. q(kfile)
    .. " out=" .. q(dir .. "/cmp") .. stop)
T.ok(rc == 0 and out:find("\nspace +[%d.]+ ") and out:find("\nbigram +1%.00 "), "compare_patching: a kind file gets a row beside space", out)
T.ok(out:find("train_model.lua", 1, true) and U.read(dir .. "/cmp/bigram-s1/checkpoint.h5"),
     "... trained by experiments/train_model.lua", out)
rc, out = sh(bin .. " experiments/scaling.lua budget=smoke study=compute_optimal sizes=32x1 schemes=model:" .. q(kfile)
    .. " out=" .. q(dir .. "/sc") .. stop)
T.ok(rc == 0 and out:find("\nbigram +32x1 "), "scaling: a kind file gets its points", out)
for _, script in ipairs {"compare_patching", "scaling"} do
    rc, out = sh(bin .. " experiments/" .. script .. ".lua budget=smoke schemes=model:" .. q(dir .. "/nope.lua") .. stop)
    T.ok(rc == 2 and out:find("nope.lua' cannot be used: ") and out:find("cannot read"), script .. ": a missing kind file is refused (status 2)", out)
end

-- ---- a file kind may not take another kind's name; train_model needs model.file ----
U.write(dir .. "/bytelm.lua", (body:gsub('Bigram%.kind = "bigram"', 'Bigram.kind = "bytelm"')))
rc, out = sh(bin .. " experiments/train_model.lua model.file=" .. q(dir .. "/bytelm.lua") .. " " .. common)
T.ok(rc == 2 and out:find("kind 'bytelm' is already a kind", 1, true), "a file kind named like a built-in is refused", out)
rc, out = sh(bin .. " experiments/train_model.lua " .. common)
T.ok(rc == 2 and out:find("give model.file=PATH", 1, true), "train_model.lua without model.file says what to give", out)
rc, out = sh(bin .. " experiments/train_model.lua model.file=" .. q(dir .. "/nope.lua") .. " " .. common)
T.ok(rc == 2 and out:find("nope.lua", 1, true), "a missing kind file is refused (status 2)", out)

U.cleanup(dir)
T.done()
