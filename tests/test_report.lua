package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local U = require "testutil"
local blt = require "blt"
local core = require "blt.core"
local grid = require "blt.grid"
local models = require "blt.models"

-- experiments/sweep.lua (any-key sweeps), report.html (every sweep's page, opened in a
-- real browser), and the run files' fewer surprises (units of metrics columns, the loss
-- per byte of every kind, warmup longer than the schedule, loss.png of short runs).
-- Every class is a loop: over every training script, every key, every hostile grid
-- word, every table cell of every report.

local bin = os.getenv("BLT_BIN") or "./blt"
local dir = U.tmpdir()
local q, sh = U.q, U.sh
local corpus = U.corpus(dir .. "/corpus.txt", 60000)
local BYTE_MODEL = "model.dim=32 model.layers=1 model.heads=2 model.multiple_of=32 model.window=32 "
local TINY = BYTE_MODEL .. table.concat({"train.steps=4", "train.batch=2", "train.seq_len=32", "train.warmup=1", "train.threads=1", "eval.every=2",
    "eval.max_bytes=1024", "eval.final_max_bytes=1024", "out.checkpoint_every=2", "data.path=" .. corpus}, " ")
local LN2 = math.log(2)

local function h5(path) return blt.h5_open(path) end
local function count(t) local n = 0 for _ in pairs(t) do n = n + 1 end return n end

-- ---------------------------------------------------------------- the sweep end to end
local sw = dir .. "/sw"
local sweep_cmd = ("%s experiments/sweep.lua script=train_bytelm.lua grid=%s seeds=1,2 args=%s out=%s"):format(bin,
    q("train.lr=1e-3,3e-3 eval.batch=8"), q(TINY), q(sw))
local rc, out = sh(sweep_cmd)
T.is(rc, 0, "sweep.lua: 2 x 1 grid points x 2 seeds", out:sub(-3000))
local ids = {"lr1e-3_batch8", "lr3e-3_batch8"}
for _, id in ipairs(ids) do
    T.ok(out:find("\n0%.00[13]%s+8%s+%d%.%d+%s+%d%.%d+%s+2%s"), "the table has the point " .. id .. " with n = 2", out:sub(-1500))
end
do
    local f = h5(sw .. "/results.h5")
    local ok, why = true, ""
    for _, id in ipairs(ids) do
        -- the summary against the runs, recomputed here: for two seeds the standard error is |a - b| / 2
        local a, b = f:read(("/points/%s-s1/val_bpb"):format(id)), f:read(("/points/%s-s2/val_bpb"):format(id))
        local m, se, n = f:read("/summary/" .. id .. "/val_bpb_mean"), f:read("/summary/" .. id .. "/val_bpb_se"),
            f:read("/summary/" .. id .. "/seeds")
        if math.abs(m - (a + b) / 2) > 1e-12 * m or math.abs(se - math.abs(a - b) / 2) > 1e-12 * m or n ~= 2 then
            ok, why = false, ("%s: %g %g %g from %g %g"):format(id, m, se, n, a, b)
        end
        if f:attr("train.lr", "/summary/" .. id) == nil then ok, why = false, id .. ": no train.lr attribute" end
    end
    T.ok(ok, "results.h5: each point's mean and standard error over its seeds, recomputed from its runs", why)
    f:close()
end
for _, key in ipairs {"train.lr", "eval.batch"} do
    T.ok(U.read(("%s/sweep-%s.png"):format(sw, key)), "a figure per key: sweep-" .. key .. ".png")
end
rc, out = sh(sweep_cmd)
T.ok(rc == 0 and out:find("0 points run, 4 skipped", 1, true), "run again: every finished point is skipped", out:sub(-800))
rc, out = sh(sweep_cmd:gsub("train%.steps=4", "train.steps=4 train.beta1=0.8"))
T.ok(rc == 2 and out:find("train.beta1", 1, true), "run again with other args: refused, naming the key", out:sub(-800))

-- ---------------------------------------------------------------- every point is checked first
local scripts = grid.scripts()
T.ok(#scripts >= 4, "the training scripts: " .. table.concat(scripts, ", "))

-- every key of every training script (from its --help) that holds a number or a switch,
-- given a value of another type: refused by the script itself, naming the key
local cases, bad = 0, {}
local seen = {}
for _, s in ipairs(scripts) do
    local _, help = sh(("%s experiments/%s --help"):format(bin, s))
    for key, default in help:gmatch("\n  ([%w_.]+)%s+(%S+)") do
        local kind = (default == "true" or default == "false") and "switch" or tonumber(default) and "number"
        if kind and not seen[key] and not grid.RESERVED[key] then
            seen[key] = true
            cases = cases + 1
            local value = kind == "switch" and "maybe" or "many"
            local problem = grid.check("experiments/" .. s, {{words = {key .. "=" .. value}, label = key .. "=" .. value}},
                {"data.path=" .. corpus}, 1)
            if not (problem and problem:find(key, 1, true)) then bad[#bad + 1] = ("%s %s=%s: %s"):format(s, key, value, tostring(problem)) end
        end
    end
end
T.ok(cases >= 40 and #bad == 0, ("every number or switch key of every training script, mistyped, is refused naming the key (%d keys)")
    :format(cases), table.concat(bad, "\n"))

-- every training script through the sweep: a bad value stops it with status 2 before anything trains
for _, s in ipairs(scripts) do
    local o = dir .. "/bad-" .. s
    rc, out = sh(("%s experiments/sweep.lua script=%s grid=%s args=%s out=%s"):format(bin, s, q("train.lr=1e-3,-1"),
        q("data.path=" .. corpus .. (s == "train_blt.lua" and " patching.scheme=space" or "") .. " "
          .. U.script_words("experiments/" .. s, dir):gsub("'", "")), q(o))) -- args= is split on spaces: no quotes
    T.ok(rc == 2 and out:find("train.lr=-1", 1, true) and out:find("must be > 0", 1, true) and not core.lkind(o),
         s .. ": train.lr=-1 in the grid: status 2, the script's own message, nothing trained", out)
end

-- the checks of a run's setup that cost no training (the BLT's entropy model) are made too
rc, out = sh(("%s experiments/sweep.lua script=train_blt.lua grid=%s args=%s out=%s"):format(bin, q("train.lr=1e-3,3e-3"),
    q("data.path=" .. corpus .. " patching.scheme=entropy patching.entropy_model=" .. dir .. "/none.h5"), q(dir .. "/noent")))
T.ok(rc == 2 and out:find("patching.entropy_model = " .. dir .. "/none.h5", 1, true) and not core.lkind(dir .. "/noent"),
     "train_blt.lua with a missing entropy model: status 2 before anything trains", out)

-- hostile grids: each refused by the sweep's rule, with status 2, naming what is wrong
local hostile = {{"", "at least one key"}, {"train.lr", "not key=v1"}, {"train.lr=1e-3,,2e-3", "empty value"},
    {"train.lr=1e-3,1e-3", "twice"}, {"train.lr=1 train.lr=2", "twice"}, {"=1", "not key=v1"}}
for k, why in pairs(grid.RESERVED) do hostile[#hostile + 1] = {k .. "=1,2", why} end
for _, h in ipairs(hostile) do
    rc, out = sh(("%s experiments/sweep.lua script=train_bytelm.lua grid=%s out=%s"):format(bin, q(h[1]), q(dir .. "/hostile")))
    T.ok(rc == 2 and out:find(h[2], 1, true) and select(2, out:gsub("\n", "")) <= 1,
         ("grid=%q: status 2, one line (%s)"):format(h[1], h[2]), out)
end
T.ok(#hostile >= 10, ("%d hostile grids"):format(#hostile))

-- ---------------------------------------------------------------- warmup longer than the schedule
for _, s in ipairs(scripts) do
    local scheme = (s == "train_blt.lua" and " patching.scheme=space" or "") -- no entropy model needed
        .. " " .. U.script_words("experiments/" .. s, dir)
    rc, out = sh(("%s experiments/%s --check train.steps=5 train.warmup=6 data.path=%s%s"):format(bin, s, q(corpus), scheme))
    T.ok(rc == 2 and out:find("train.warmup = 6 is longer than the schedule (train.steps = 5)", 1, true),
         s .. ": train.warmup=6 with train.steps=5 is refused", out)
    rc, out = sh(("%s experiments/%s --check train.steps=5 data.path=%s%s"):format(bin, s, q(corpus), scheme))
    T.ok(rc == 0 and out:find("(its default) is longer than the schedule (train.steps = 5): clamped to 0", 1, true),
         s .. ": the default warmup past a 5-step schedule is clamped, and said so", out)
end

-- ---------------------------------------------------------------- units, loss per byte, loss.png of short runs
local MODEL = {["train_blt.lua"] = "patching.scheme=space patching.calib_bytes=1024 model.dim=16 model.heads=2 "
    .. "model.multiple_of=16 model.global.dim=32 model.global.heads=2 model.global.layers=1 model.cross.heads=2 "
    .. "model.hash.buckets=64 model.encoder.window=16 model.decoder.window=16",
    ["train_bpe_lm.lua"] = BYTE_MODEL .. "bpe.vocab=300",
    ["train_megabyte.lua"] = "model.patch=4 model.dim=32 model.layers=1 model.heads=2 model.multiple_of=32 "
        .. "model.global.dim=32 model.global.heads=2 model.global.layers=1",
    ["train_spacebyte.lua"] = "model.dim=32 model.heads=2 model.multiple_of=32 model.window=32 model.initial_layers=1 "
        .. "model.final_layers=1 model.global.dim=32 model.global.heads=2 model.global.layers=1 model.global.cap=16",
    ["train_model.lua"] = ""}
for _, s in ipairs(scripts) do
    local name = s:gsub("%.lua$", "")
    local words = TINY:sub(#BYTE_MODEL + 1):gsub("train%.steps=4", "train.steps=3"):gsub("eval%.every=2", "eval.every=0")
    rc, out = sh(("%s experiments/%s %s %s %s out.dir=%s out.name=%s"):format(bin, s, words, MODEL[s] or BYTE_MODEL,
        U.script_words("experiments/" .. s, dir),
        q(dir .. "/units"), name))
    local run = dir .. "/units/" .. name
    T.is(rc, 0, s .. ": a 3-step run", out:sub(-1500))
    -- shorter than train.log_every (10): one metrics row, and still a figure
    T.ok(U.read(run .. "/loss.png"), s .. ": loss.png of a run shorter than train.log_every")
    local cfg = require("blt.json").decode(U.read(run .. "/config.json") or "{}")
    local okM, M = pcall(models.get, cfg.kind) -- a kind from a file (train_model.lua) is not registered here
    if not okM then M = {} end
    local f = h5(run .. "/metrics.h5")
    local names = f:list("/") or {}
    local missing = {}
    for _, c in ipairs(names) do
        local u = f:attr("unit", "/" .. c)
        if type(u) ~= "string" or u == "" then missing[#missing + 1] = c end
    end
    T.ok(#names >= 8 and #missing == 0, ("%s: every metrics column (%d) has a unit"):format(s, #names), table.concat(missing, " "))
    T.is(f:attr("unit", "/loss"), M.loss_unit or "nats/byte", s .. ": the loss's unit is its model's")
    local loss, bpb, bpt = f:read("/loss"), f:read("/loss_bpb"), f:exists("/bytes_per_token") and f:read("/bytes_per_token")
    loss, bpb, bpt = type(loss) == "table" and loss[#loss] or loss, type(bpb) == "table" and bpb[#bpb] or bpb,
        type(bpt) == "table" and bpt[#bpt] or bpt
    T.near(bpb, loss / LN2 / (bpt or 1), 1e-12 * bpb, s .. ": loss_bpb = loss / ln 2 / bytes per token")
    f:close()
end

-- the writer's units option: every hostile value is refused naming blt.h5_metrics, before the file is made
do
    local hostile_units = {5, "bits", true, {a = 5}, {a = ""}, {"bits"}, {a = "x\0y"}, {["a\0b"] = "x"}, {a = {}}}
    local bad = {}
    for i, u in ipairs(hostile_units) do
        local path = ("%s/units-%d.h5"):format(dir, i)
        local ok, err = pcall(blt.h5_metrics, path, {units = u})
        if ok or not tostring(err):find("h5_metrics", 1, true) or core.lkind(path) then
            bad[#bad + 1] = ("case %d: %s %s"):format(i, tostring(ok), tostring(err))
        end
    end
    T.ok(#bad == 0, ("%d hostile units options: refused, naming blt.h5_metrics, no file made"):format(#hostile_units),
         table.concat(bad, "\n"))
end

-- ---------------------------------------------------------------- every sweep's report.html in a browser
local cmp, sc = dir .. "/cmp", dir .. "/scaling"
rc, out = sh(("%s experiments/compare_patching.lua budget=smoke schemes=fixed,bytelm seeds=1 data.path=%s "
    .. "args.all=train.threads=1 out=%s"):format(bin, q(corpus), q(cmp)))
T.is(rc, 0, "compare_patching budget=smoke (2 schemes)", out:sub(-2000))
rc, out = sh(("%s experiments/scaling.lua budget=smoke study=compute_optimal schemes=bytelm data.path=%s "
    .. "args.all=train.threads=1 out=%s"):format(bin, q(corpus), q(sc)))
T.is(rc, 0, "scaling budget=smoke (compute-optimal, bytelm at 2 sizes)", out:sub(-2000))

local ENT = {amp = "&", lt = "<", gt = ">", quot = '"', ["#39"] = "'", nbsp = " "}
local function unescape(s) return (s:gsub("&(#?%w+);", function(e) return ENT[e] or ("&" .. e .. ";") end)) end

-- A number as printed (3, 0.0206, 1.26e+09, 0.14M) and half a unit of its last digit.
local function printed(text)
    local m, e, suffix = text:match("^%s*([-+]?%d+%.?%d*)[eE]([-+]?%d+)([kMG]?)%s*$")
    if not m then m, suffix = text:match("^%s*([-+]?%d+%.?%d*)([kMG]?)%s*$") end
    if not m then return nil end
    local scale = ({k = 1e3, M = 1e6, G = 1e9})[suffix] or 1
    local decimals = #(m:match("%.(%d*)$") or "")
    local p = 10 ^ (tonumber(e) or 0) * scale
    return tonumber(m) * p, 0.5 * 10 ^ -decimals * p
end

-- Checks one report against its results.h5: every cell with a digit names its source,
-- and shows it. Returns checked cells, problems.
local function check_dom(dom, f)
    local cells, problems = 0, {}
    for attrs, inner in dom:gmatch("<td([^>]*)>(.-)</td>") do
        local text = unescape(inner:gsub("<[^>]*>", ""))
        local src = attrs:match('data%-h5="([^"]*)"')
        src = src and unescape(src)
        if text:find("%d") then
            cells = cells + 1
            if not src then
                problems[#problems + 1] = ("'%s' has no source"):format(text)
            else
                local path, attr = src:match("^(.-)@(.+)$")
                local v
                if attr then v = f:attr(attr, path)
                elseif f:exists(src) then v = f:read(src)
                else v = select(3, f:list(src)) and src:match("[^/]+$") end -- a group: its name
                local want, tol = printed(text)
                local good = (type(v) == "number" and want and math.abs(v - want) <= tol + 1e-12 * math.abs(v))
                    or (type(v) == "string" and (v == text or v:sub(-#text - 1) == "/" .. text))
                if not good then problems[#problems + 1] = ("'%s' shows %s = %s"):format(text, src, tostring(v)) end
            end
        end
    end
    return cells, problems
end

-- BLT_NO_BROWSER=1 runs the test as on a machine without chromium (the skip is tested so)
local chromium = os.getenv("BLT_NO_BROWSER") ~= "1" and (core.which("chromium") or core.which("chromium-browser"))
if not chromium then
    T.ok(true, "# SKIP report.html in a browser: chromium is not installed (make deps installs it)")
else
    local profile = core.mkdtemp()
    local function browse(url, shot, dom)
        -- one browser per page: the DOM after layout, and a screenshot; timeout bounds a hung browser
        local argv = {"timeout", "60", chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                      "--user-data-dir=" .. profile, "--window-size=1100,1400", "--screenshot=" .. shot}
        if dom then argv[#argv + 1] = "--dump-dom" end
        argv[#argv + 1] = url
        return core.spawn(argv, {stdout = dom or "/dev/null", stderr = dir .. "/chromium.err", stdin = "/dev/null"})
    end
    browse("about:blank", dir .. "/blank.png")
    local blank = #(U.read(dir .. "/blank.png") or "")
    for _, rep in ipairs {{"sweep.lua", sw}, {"compare_patching", cmp}, {"scaling", sc}} do
        local what, d = rep[1], rep[2]
        local html = U.read(d .. "/report.html") or ""
        T.ok(html ~= "", what .. ": report.html written")
        -- one file: nothing is loaded from elsewhere (links to the run folders are to follow, not to load)
        local outside = html:match("<script") or html:match("<link") or html:match("<img") or html:match("src=")
            or html:gsub('xmlns="http://www%.w3%.org/2000/svg"', ""):match("https?:")
        T.ok(not outside, what .. ": self-contained (no script, stylesheet, image or URL loaded)", outside)
        -- every link leads somewhere: a run folder, a file of the sweep, or an anchor of the page
        local links, broken = 0, {}
        for href in html:gmatch('href="([^"]*)"') do
            links = links + 1
            href = unescape(href)
            local okl = href:sub(1, 1) == "#" and html:find('id="' .. href:sub(2) .. '"', 1, true)
                or core.lkind(d .. "/" .. href:gsub("/$", ""))
            if not okl then broken[#broken + 1] = href end
        end
        T.ok(links > 0 and #broken == 0, ("%s: every link (%d) leads to a file, a run folder or an anchor"):format(what, links),
             table.concat(broken, " "))
        local pngs = select(2, html:gsub("The same data as <a", ""))
        T.ok(pngs > 0 and select(2, html:gsub("<svg", "")) == pngs, ("%s: every figure (%d) as inline SVG"):format(what, pngs))
        local okb = browse("file://" .. d .. "/report.html", d .. "/shot.png", d .. "/dom.html")
        local dom, shot = U.read(d .. "/dom.html") or "", U.read(d .. "/shot.png") or ""
        T.ok(okb and dom:find("<table", 1, true), what .. ": chromium opens the page", U.read(dir .. "/chromium.err"))
        -- a blank page of this size compresses to a few kB: a drawn one is several times larger
        T.ok(shot:sub(1, 8) == "\137PNG\r\n\26\n" and blank > 0 and #shot > 4 * blank,
             ("%s: the screenshot is a PNG with something drawn (%d bytes; a blank page: %d)"):format(what, #shot, blank))
        local f = h5(d .. "/results.h5")
        local cells, problems = check_dom(dom, f)
        f:close()
        T.ok(cells >= 10 and #problems == 0, ("%s: every number in the page's tables (%d cells) is results.h5's"):format(what, cells),
             table.concat(problems, "\n"))
        -- the check can fail: a cell's last digit changed, a cell's source dropped
        local f2 = h5(d .. "/results.h5")
        local wrong = dom:gsub('(<td class="num" data%-h5="[^"]*">[^<]-)(%d)</td>', function(a, dgt)
            return a .. tostring((tonumber(dgt) + 5) % 10) .. "</td>" end, 1)
        local unsourced = dom:gsub('<td class="num" data%-h5="[^"]*">', '<td class="num">', 1)
        local _, p1 = check_dom(wrong, f2)
        local _, p2 = check_dom(unsourced, f2)
        f2:close()
        T.ok(#p1 == 1 and #p2 == 1 and p2[1]:find("no source", 1, true), what .. ": a changed digit or a dropped source is caught",
             table.concat(p1, "; ") .. " | " .. table.concat(p2, "; "))
    end
    core.rm_rf(profile)
end

U.cleanup(dir)
T.done()
