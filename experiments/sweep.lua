-- Any keys of any training script, swept: every combination of the grid's values,
-- trained once per seed.
--
--   ./blt experiments/sweep.lua script=train_blt.lua grid="train.lr=1e-3,3e-3 model.global.dim=128,256" seeds=1,2,3
--   ./blt experiments/sweep.lua script=train_bytelm.lua grid="train.lr=1e-3,3e-3,1e-2" args="train.steps=200"
--
-- script: a training script in experiments/ (train_*.lua); grid: space-separated
-- key=v1,v2,... (any key the script takes; --help of the script lists them); args:
-- key=value words every run gets. Every point is checked by the script itself
-- (./blt experiments/<script> --check ...: its config rules, its model's checks, the
-- corpus) before anything trains: a bad key or value stops the sweep with status 2 and
-- the script's own message.
--
-- Output in out (default runs/sweep-<script>): one run folder per point and seed
-- (resumable, as compare_patching and scaling: a finished point is skipped, an
-- interrupted one resumes from its checkpoint), results.h5 (every run, and the
-- per-point summary: mean and standard error over seeds), a table, one figure per key
-- (sweep-<key>.png: validation bits per byte against the key's values, one curve per
-- combination of the other keys) and report.html.
local config = require "blt.config"
local core = require "blt.core"
local experiment = require "blt.experiment"
local grid = require "blt.grid"
local sweep = require "blt.sweep"

local cfg = config.script {
    name = "sweep", args = arg,
    usage = 'usage: ./blt experiments/sweep.lua script=train_blt.lua grid="train.lr=1e-3,3e-3 model.global.dim=128,256" '
        .. "[seeds=1,2,3] [args=\"key=value ...\"] [out=FOLDER]",
    defaults = {script = "train_blt.lua", grid = "train.lr=1e-3,3e-3", seeds = "1", args = "", out = config.OPTIONAL, plot = true},
    docs = {
        script = "the training script in experiments/ (" .. table.concat(grid.scripts(), ", ") .. ")",
        grid = "space-separated key=v1,v2,...: every combination is a point (any key the script takes)",
        seeds = "comma-separated seeds; each point trains once per seed (table: mean ± standard error)",
        args = "key=value words for every run (separated by spaces)",
        out = "sweep folder (unset: runs/sweep-<script>)",
        plot = "write sweep-<key>.png per key",
    },
    rules = {
        script = grid.script_rule, grid = grid.rule, seeds = experiment.seed_list_rule,
        args = function(v)
            for _, w in ipairs(sweep.split_words(v)) do
                local k = w:match("^([%a_][%w_%.]*)=")
                if not k then return ("'%s' is not a key=value word"):format(w) end
                if grid.RESERVED[k] then return ("%s cannot be given: %s"):format(k, grid.RESERVED[k]) end
            end
        end,
    },
}
if not cfg then return end

local T0 = core.now()
local name = grid.script_name(cfg.script)
local script = "experiments/" .. name
local axes = grid.parse(cfg.grid)
local points = grid.points(axes)
local seeds = experiment.ints(cfg.seeds)
local base = sweep.split_words(cfg.args)
local out = cfg.out or ("runs/sweep-" .. name:gsub("%.lua$", ""))

-- every point, checked by the script before any trains (a key in args and the grid: the grid's wins)
for _, w in ipairs(base) do
    local k = w:match("^([^=]+)=")
    for _, ax in ipairs(axes) do
        if ax.key == k then require("blt.util").die("sweep", ("%s is in args and in the grid: give it once"):format(k)) end
    end
end
local problem = grid.check(sweep.script_path(script), points, base, seeds[1])
if problem then require("blt.util").die("sweep", problem) end
io.stderr:write(("sweep: %s, %d points x %d seeds, all checked by %s --check\n"):format(cfg.grid, #points, #seeds, name))

local s = sweep.new {dir = out, name = "sweep"}
local records = {}
for i, p in ipairs(points) do
    for _, seed in ipairs(seeds) do
        io.stderr:write(("sweep: point %d/%d: %s, seed %d\n"):format(i, #points, p.label, seed))
        local args = {["train.seed"] = seed}
        for k, v in pairs(p.values) do args[k] = v end
        local r = s:run {id = ("%s-s%d"):format(p.id, seed), script = script, args = args, extra = cfg.args}
        r.scheme, r.seed, r.point = p.id, seed, p
        experiment.measure(r)
        r.extra = {grid = p.label}
        records[#records + 1] = r
    end
end

local rows = grid.summarize(points, records, axes)
print()
print(("Sweep of %s over %s (seeds %s)"):format(name, cfg.grid, cfg.seeds))
print(sweep.table(rows, grid.columns(axes)))
print("val bpb: final validation bits per byte, mean over the n seeds that finished; s.e.: its standard error")

-- results.h5: every run (points/<id>-s<seed>/), and per point its mean, standard error
-- and seeds (summary/<id>/, the grid's values as attributes)
local h5 = out .. "/results.h5"
for _, row in ipairs(rows) do
    row.scheme, row.seeds, row.extra = row.id, row.n, {}
    for k, v in pairs(row.point.values) do row.extra[k] = v end
end
experiment.write_sections(h5, {experiment = "sweep", script = name, grid = cfg.grid, seeds = cfg.seeds, args = cfg.args},
                          {{records = records, rows = rows}})
print("sweep: results in " .. h5)
if cfg.plot and require("blt.plot").available() then
    for k, ax in ipairs(axes) do
        local fig = grid.figure(axes, rows, k)
        fig.path = ("%s/sweep-%s.png"):format(out, ax.key:gsub("[^%w.%-]", "_"))
        print("sweep: plot " .. require("blt.plot").lines(fig))
    end
end
print("sweep: report " .. require("blt.report").write(out, {sections = {{records = records}},
    title = ("sweep of %s: %s, seeds %s"):format(name, cfg.grid, cfg.seeds),
    notes = {("Every run: %s %s train.seed=SEED."):format(script, cfg.args)}}))
print(("%s; %.0f s in all"):format(s:summary(), core.now() - T0))
