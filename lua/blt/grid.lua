-- blt.grid: what experiments/sweep.lua needs to sweep any keys of any training script:
-- the grid's syntax, its points, the up-front check of every point through the
-- script's own config rules, the per-point summary (mean ± standard error over seeds)
-- and the per-key figures.
--
--   grid = "train.lr=1e-3,3e-3 model.global.dim=128,256"   -- space-separated key=v1,v2,...
--
-- Every combination of the values is a point (the first key varies slowest); each
-- point trains once per seed, as an ordinary run in <out>/<point id>-s<seed>.
local core = require "blt.core"
local util = require "blt.util"

local grid = {}

-- Keys the sweep sets itself: a grid may not set them.
grid.RESERVED = {["train.seed"] = "give seeds=... instead", ["out.dir"] = "the sweep's folder is out=...",
                 ["out.name"] = "the sweep names each point's folder", ["out.overwrite"] = "a sweep never replaces a run"}

-- The training scripts a sweep can run: experiments/train_*.lua.
function grid.scripts()
    local home = type(BLT_HOME) == "string" and BLT_HOME or "."
    local out = {}
    for _, f in ipairs(core.listdir(home .. "/experiments") or {}) do
        if f:match("^train_[%w_]+%.lua$") then out[#out + 1] = f end
    end
    table.sort(out)
    return out
end

-- script=: one of grid.scripts(), written train_blt.lua, train_blt or experiments/train_blt.lua.
function grid.script_name(v)
    local name = tostring(v):gsub("^experiments/", "")
    if not name:match("%.lua$") then name = name .. ".lua" end
    for _, s in ipairs(grid.scripts()) do if s == name then return name end end
end

function grid.script_rule(v)
    if not grid.script_name(v) then
        return ("is not a training script in experiments/ (one of %s)"):format(table.concat(grid.scripts(), ", "))
    end
end

-- The grid's axes: {{key =, values = {"1e-3", "3e-3"}}, ...} (values as written), or nil and what is wrong.
function grid.parse(s)
    local axes, seen = {}, {}
    for w in tostring(s):gmatch("%S+") do
        local k, list = w:match("^([%a_][%w_%.]*)=(.*)$")
        if not k then return nil, ("'%s' is not key=v1,v2,... (keys are separated by spaces)"):format(w) end
        if grid.RESERVED[k] then return nil, ("%s cannot be swept: %s"):format(k, grid.RESERVED[k]) end
        if seen[k] then return nil, ("names the key %s twice"):format(k) end
        seen[k] = true
        local values, vs = {}, {}
        for v in (list .. ","):gmatch("([^,]*),") do
            if v == "" then return nil, ("%s: an empty value in '%s'"):format(k, list) end
            if vs[v] then return nil, ("%s: the value %s twice"):format(k, v) end
            vs[v] = true
            values[#values + 1] = v
        end
        axes[#axes + 1] = {key = k, values = values}
    end
    if #axes == 0 then return nil, "must name at least one key=v1,v2,... (e.g. train.lr=1e-3,3e-3)" end
    return axes
end

function grid.rule(v)
    local _, err = grid.parse(v)
    return err
end

-- A value as a point's id shows it (letters, digits, '.', '-', '_').
local function tag(s) return (tostring(s):gsub("[^%w.%-]", "_")) end

-- Every combination, first key slowest: {{values = {key = "value"}, words = {"k=v", ...}, id =, label =}, ...}.
function grid.points(axes)
    local out = {{values = {}, words = {}, parts = {}}}
    for _, ax in ipairs(axes) do
        local next = {}
        for _, p in ipairs(out) do
            for _, v in ipairs(ax.values) do
                local q = {values = {}, words = {}, parts = {}}
                for k, x in pairs(p.values) do q.values[k] = x end
                for i, x in ipairs(p.words) do q.words[i], q.parts[i] = x, p.parts[i] end
                q.values[ax.key] = v
                q.words[#q.words + 1] = ax.key .. "=" .. v
                q.parts[#q.parts + 1] = tag(ax.key:match("[^.]+$")) .. tag(v)
                next[#next + 1] = q
            end
        end
        out = next
    end
    local seen = {}
    for i, p in ipairs(out) do
        p.label = table.concat(p.words, " ")
        p.id = table.concat(p.parts, "_")
        -- two values that read alike once tagged (a/b and a_b): the index keeps them apart
        if seen[p.id] or #p.id > 120 then p.id = ("g%d"):format(i) end
        seen[p.id] = true
    end
    return out
end

-- The first line of a refusal the script printed ("blt: train.lr = ...: must be > 0").
local function refusal(path)
    local text = util.read_file(path) or ""
    local last
    for line in text:gmatch("[^\n]+") do
        if not line:match("^%S+: train%.warmup = %d+ %(its default%)") and not line:match("the settings are valid") then
            last = last or line
        end
    end
    return last or "(it printed nothing)"
end

-- Checks every point through the training script itself (--check: its config rules, its
-- model's checks, the corpus), before anything trains. Returns nil, or the first
-- refusal as one line naming the point and the script's own message.
function grid.check(script_path, points, base, seed)
    local tmp = assert(core.mkdtemp())
    local launcher = require("blt.sweep").launcher()
    local problem
    for _, p in ipairs(points) do
        local argv = {launcher, script_path, "--check"}
        for _, w in ipairs(base) do argv[#argv + 1] = w end
        for _, w in ipairs(p.words) do argv[#argv + 1] = w end
        argv[#argv + 1] = "train.seed=" .. seed
        local ok, how, code = core.spawn(argv, {stdout = tmp .. "/out", stderr = tmp .. "/err", stdin = "/dev/null"})
        if not ok then
            problem = ("grid point %s is refused by %s (%s %s): %s"):format(p.label, script_path:match("[^/]+$"),
                tostring(how), tostring(code), refusal(tmp .. "/err"))
            break
        end
    end
    core.rm_rf(tmp)
    return problem
end

-- Mean and standard error (blt.stats; nil with one value) of the finite numbers, and their count.
function grid.mean_se(xs)
    local v = {}
    for _, x in ipairs(xs) do
        if type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge then v[#v + 1] = x end
    end
    if #v == 0 then return nil, nil, 0 end
    local stats = require "blt.stats"
    return stats.mean(v), stats.se(v), #v
end

-- A grid value as a number when it reads as one (1e-3, 256), else the text.
local function value(v) return tonumber(v) or v end

-- One row per point: each key's value, then val bpb mean, its standard error and the
-- seeds that finished; parameters, steps and wall time (means).
function grid.summarize(points, records, axes)
    local rows = {}
    for _, p in ipairs(points) do
        local mine = {}
        for _, r in ipairs(records) do if r.point == p then mine[#mine + 1] = r end end
        local function col(k)
            local xs = {}
            for i, r in ipairs(mine) do xs[i] = r.failed and 0 / 0 or r[k] end
            return grid.mean_se(xs)
        end
        local m, se, n = col("val_bpb")
        local row = {id = p.id, point = p, bpb = m, bpb_se = se, n = n, params = (col("params")),
                     steps = (col("steps")), wall = (col("wall"))}
        for _, ax in ipairs(axes) do row["k:" .. ax.key] = value(p.values[ax.key]) end
        rows[#rows + 1] = row
    end
    return rows
end

function grid.columns(axes)
    local cols = {}
    for _, ax in ipairs(axes) do cols[#cols + 1] = {"k:" .. ax.key, ax.key, "%s"} end
    for _, c in ipairs {{"bpb", "val bpb", "%.4f"}, {"bpb_se", "s.e.", "%.4f"}, {"n", "n", "%d"},
                        {"params", "params", "%.0f"}, {"steps", "steps", "%.0f"}, {"wall", "wall s", "%.1f"}} do
        cols[#cols + 1] = c
    end
    return cols
end

-- The figure of one key: val bpb (mean, standard-error bars) against the key's values,
-- one curve per combination of the other keys. Numbers on a log axis when positive and
-- spanning 4x or more; other values as named positions.
function grid.figure(axes, rows, which)
    local ax = axes[which]
    local numeric, lo, hi = true, math.huge, 0
    for _, v in ipairs(ax.values) do
        local x = tonumber(v)
        if not x then numeric = false else lo, hi = math.min(lo, x), math.max(hi, x) end
    end
    local logx = numeric and lo > 0 and hi / lo >= 4
    local pos = {}
    for i, v in ipairs(ax.values) do pos[v] = numeric and tonumber(v) or i end
    local series, order = {}, {}
    for _, r in ipairs(rows) do
        local others = {}
        for j, a in ipairs(axes) do if j ~= which then others[#others + 1] = a.key .. "=" .. r.point.values[a.key] end end
        local name = #others > 0 and table.concat(others, " ") or "val bpb"
        if not series[name] then series[name] = {name = name, x = {}, y = {}, err = {}, style = "yerrorlines"}; order[#order + 1] = name end
        local s = series[name]
        s.x[#s.x + 1], s.y[#s.y + 1], s.err[#s.err + 1] = pos[r.point.values[ax.key]], r.bpb or 0 / 0, r.bpb_se or 0
    end
    local list = {}
    for i, n in ipairs(order) do list[i] = series[n] end
    local xtics
    if not numeric then
        xtics = {}
        for i, v in ipairs(ax.values) do xtics[i] = {i, v} end
    end
    return {title = ("validation bits per byte against %s (mean ± standard error over seeds)"):format(ax.key),
            xlabel = ax.key, ylabel = "validation bits per byte", logx = logx, xtics = xtics, series = list}
end

return grid
