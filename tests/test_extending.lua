-- docs/extending.md's worked examples run: every ```lua or ```c file=PATH block is written under a
-- temporary folder and compiled; the scheme file and the model kind train 2 steps, the kind
-- is found by name, loads back from its checkpoint and takes part in blt.flops and the
-- comparisons' presets and points; the Lua op and the C op (built as a module against the
-- project's headers, loaded into ./blt) pass their gradient checks; every file of the
-- project the page names exists; and docs/design.md's module map names every module of
-- lua/blt/. So neither page can go stale.
package.path = "tests/?.lua;" .. package.path
local T = require "tap"
local U = require "testutil"
local bin = os.getenv("BLT_BIN") or "./blt"
local dir = U.tmpdir()
local q, sh = U.q, U.sh

local DOC = "docs/extending.md"
local text = assert(U.read(DOC), DOC)

-- ---- the blocks: each compiles ----
local blocks, order, lang = {}, {}, {}
for l, path, body in text:gmatch("```(%a+) file=(%S+)\n(.-)```") do
    blocks[path], order[#order + 1], lang[path] = body, path, l
end
T.ok(#order >= 7, ("%s has its worked examples (%d blocks marked file=)"):format(DOC, #order))
-- a C block is built as the page says: a module against the project's headers
local CC = "cc -shared -fPIC -O2 -Wall -Wextra -Werror -Icore $(pkg-config --cflags lua5.4)"
for _, path in ipairs(order) do
    local full = dir .. "/" .. path
    os.execute("mkdir -p " .. q(full:match("^(.*)/")))
    U.write(full, blocks[path])
    if lang[path] == "c" then
        local rc, out = sh(("%s -o %s %s"):format(CC, q(full:gsub("%.c$", ".so")), q(full)))
        T.ok(rc == 0, ("the block %s compiles (%s)"):format(path, CC), out)
    else
        local f, err = load(blocks[path], "=" .. path)
        T.ok(lang[path] == "lua" and f ~= nil, ("the block %s compiles"):format(path), err)
    end
end
local function need(path)
    if not blocks[path] then error(("%s has no block file=%s"):format(DOC, path), 0) end
    return dir .. "/" .. path
end

local corpus = U.corpus(dir .. "/corpus.txt", 20000)
local common = table.concat({"train.batch=2", "train.seq_len=32", "train.steps=2", "train.warmup=1",
    "train.threads=1", "eval.every=0", "eval.final_max_bytes=256", "out.checkpoint_every=0", "out.plot=false",
    "data.path=" .. q(corpus), "out.dir=" .. q(dir)}, " ")

-- ---- the scheme file trains a BLT ----
do
    local rc, out = sh(bin .. " experiments/train_blt.lua " .. common .. " model.dim=16 model.heads=2"
        .. " model.multiple_of=16 model.global.dim=32 model.global.heads=2 model.global.layers=1"
        .. " model.cross.heads=2 model.hash.buckets=64 model.hash.ngrams=3,4 model.encoder.window=16"
        .. " model.decoder.window=16 patching.calib_bytes=1024 out.name=lines"
        .. " patching.scheme=file:" .. q(need("schemes/lines.lua")))
    T.ok(rc == 0 and out:find("makes [%d.]+ bytes/patch"), "the scheme file trains a BLT 2 steps", out)
end

-- ---- the model kind: found by name, trained by its script, loaded back, in flops and the sweeps ----
do
    need("lua/blt/models/bigram.lua")
    local lua_path = dir .. "/lua/?.lua;;"
    local rc, out = sh("LUA_PATH=" .. q(lua_path) .. " " .. bin .. " " .. q(need("experiments/train_bigram.lua"))
        .. " " .. common .. " model.dim=16 out.name=bigram")
    local ck = dir .. "/bigram/checkpoint.h5"
    T.ok(rc == 0 and U.read(ck) ~= nil, "the kind's script trains it 2 steps and writes a checkpoint", out)

    package.path = dir .. "/lua/?.lua;" .. package.path
    local models = require "blt.models"
    local flops = require "blt.flops"
    local experiment = require "blt.experiment"
    local found = false
    for _, k in ipairs(models.kinds()) do found = found or k == "bigram" end
    T.ok(found, "blt.models lists the kind dropped in blt/models/", table.concat(models.kinds(), ", "))
    local ok, model, run = pcall(models.load, ck)
    T.ok(ok and run.config.kind == "bigram", "blt.models.load rebuilds it from its checkpoint", tostring(model))
    if ok then
        local rows = require("blt").tensor({{2, 76, 105, 107, 101}}, "int32")
        local nats, k = models.nats(model, rows)
        T.ok(k == 4 and nats > 0 and nats < math.huge, ("its loss is finite (%.3f nats over %d bytes)"):format(nats, k))
    else
        T.ok(false, "its loss is finite (not loaded)")
    end
    local M = models.get("bigram")
    local f = flops.of({kind = "bigram", model = {dim = 16}}, {seq_len = 33})
    local V = require("blt.ids").VOCAB
    T.ok(f.training.total == 3 * 2 * 16 * V and f.inference.total == 2 * 16 * V,
         "blt.flops.of dispatches to the kind's formula", ("%s %s"):format(f.training.total, f.inference.total))
    local words = table.concat(experiment.sweep_words(), ",")
    T.ok(words:find(",bigram") ~= nil, "the comparisons' default schemes list it", words)
    local fams = table.concat(experiment.families(), ",")
    T.ok(fams:find(",bigram,") ~= nil, "the comparisons take args.bigram (its family)", fams)
    local msg = require("blt.train").words_problem("bigram", {"model.dmi=3"})
    T.ok(msg and msg:find("model.dmi"), "args.bigram words are checked against the kind's keys", tostring(msg))
    local P = experiment.preset("smoke")
    T.ok(P.bigram and P.bigram.dim == M.presets.compare.smoke.dim, "the budgets take its presets")
    local pt = experiment.model_point("bigram", P, nil, nil, {})
    local want = flops.of({kind = "bigram", model = {dim = P.bigram.dim}}, {seq_len = P.seq_len + 1}).training.total
    T.ok(pt.kind == "bigram" and pt.train_fpb == want and pt.args["model.dim"] == P.bigram.dim,
         "blt.experiment.model_point gives its point", ("%s %s"):format(pt.train_fpb, want))
    local n, total = experiment.scaled_params({kind = "bigram", run_cfg = {kind = "bigram", model = {dim = 8}}})
    T.ok(n == V * 8 and total == 2 * V * 8, "blt.experiment.scaled_params asks the kind", ("%d of %d"):format(n, total))
end

-- ---- a kind name that is no kind, or a kind file that is wrong: a clear error naming blt.models ----
do
    local models = require "blt.models"
    local kdir = dir .. "/lua/blt/models/"
    U.write(kdir .. "misnamed.lua", "return {kind = 'other'}")
    U.write(kdir .. "broken.lua", "return {kind = ")
    U.write(kdir .. "notable.lua", "return 42")
    local cases = {"", "nope", "../bigram", "blt.models", "init", "a b", "misnamed", "broken", "notable", 7, false}
    for _, k in ipairs(cases) do
        local ok, err = pcall(models.get, k)
        T.ok(not ok and tostring(err):find("blt.models: ", 1, true),
             ("models.get(%q) is a clear error"):format(tostring(k)), tostring(err))
        local okf, errf = pcall(require("blt.flops").of, {kind = k}, {seq_len = 8})
        T.ok(not okf and tostring(errf):find("blt.flops: no formula for model kind", 1, true),
             ("flops.of of kind %q is a clear error"):format(tostring(k)), tostring(errf))
    end
end

-- ---- the Lua op passes the gradient check ----
do
    local rc, out = sh(bin .. " " .. q(need("ops/check_mish.lua")) .. " " .. q(need("ops/mish.lua")))
    T.ok(rc == 0 and out:find("mish gradient error"), "the Lua op passes its finite-difference gradient check", out)
end

-- ---- the C op: loaded into ./blt as a module, passes its gradient and value checks ----
do
    local so = need("ops/softsign.c"):gsub("%.c$", ".so")
    local rc, out = sh(bin .. " " .. q(need("ops/check_softsign.lua")) .. " " .. q(so))
    T.ok(rc == 0 and out:find("softsign gradient error") and out:find("must be float32", 1, true),
         "the C op loads into ./blt, passes its finite-difference gradient check and refuses an int32 tensor", out)
    -- the check can fail: the same op with the backward's square left out
    local wrong = dir .. "/ops/softsign_wrong.c"
    local src, n = blocks["ops/softsign.c"]:gsub("g%[i%] / %(d %* d%)", "g[i] / d")
    U.write(wrong, src)
    rc, out = sh(("%s -o %s %s"):format(CC, q(dir .. "/ops/wrong.so"), q(wrong)))
    local rcw, outw = sh(bin .. " " .. q(need("ops/check_softsign.lua")) .. " " .. q(dir .. "/ops/wrong.so"))
    T.ok(n == 1 and rc == 0 and rcw ~= 0 and outw:find("softsign gradient error"),
         "... and the check fails for a wrong backward", outw)
end

-- ---- every project file the page names exists ----
local named = {}
for p in text:gmatch("`([%w_/]+%.[%a]+)`") do
    if p:match("^core/") or p:match("^lua/blt/[%w_/]+%.lua$") and not blocks[p] or p:match("^tests/")
       or p:match("^docs/") or p:match("^experiments/") and not blocks[p] then named[p] = true end
end
local list = {}
for p in pairs(named) do list[#list + 1] = p end
table.sort(list)
T.ok(#list >= 5, ("the page names project files (%d)"):format(#list))
for _, p in ipairs(list) do T.ok(io.open(p, "r") ~= nil, ("the file %s the page names exists"):format(p)) end

-- ---- docs/design.md's module map names every module of lua/blt/ ----
do
    local design = assert(U.read("docs/design.md"), "docs/design.md")
    local core = require "blt.core"
    local mods = {}
    for _, sub in ipairs {"", "models/"} do
        for _, name in ipairs(core.listdir("lua/blt/" .. sub) or {}) do
            local m = name:match("^([%w_]+)%.lua$")
            if m then
                local mod = m == "init" and ("blt" .. (sub == "" and "" or "." .. sub:sub(1, -2))) or
                            ("blt." .. sub:gsub("/", ".") .. m)
                mods[#mods + 1] = mod
            end
        end
    end
    table.sort(mods)
    T.ok(#mods > 20, ("lua/blt/ has its modules (%d)"):format(#mods))
    for _, mod in ipairs(mods) do
        T.ok(design:find("`" .. mod .. "`", 1, true), ("docs/design.md's module map names %s"):format(mod))
    end
end

U.cleanup(dir)
T.done()
