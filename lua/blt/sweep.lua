-- blt.sweep: many training runs as one resumable experiment (compare_patching.lua,
-- scaling.lua, the demo).
--
--   local sweep = require "blt.sweep"
--   local s = sweep.new{dir = "runs/compare", name = "compare_patching" [, ranks = 2, hostfile = "hosts"]}
--   local r = s:run{id = "entropy-s1", script = "experiments/train_blt.lua",
--                   args = {["patching.scheme"] = "entropy", ["train.steps"] = 200, ...},
--                   extra = "model.global.dim=384"}          -- key=value words (split at spaces), optional
--   r.result (result.json), r.config (config.json), r.history (metrics rows), r.dir, r.skipped
--
-- Each point is an ordinary training run in dir/<id>, run as a child process of the
-- same launcher (its progress bar, signals and exit status are a training script's
-- own). A point whose result.json says "finished" with the steps asked for is not run
-- again; one with a checkpoint but no finished result (killed, stopped, interrupted)
-- is resumed from that checkpoint; a folder with neither is started over. A finished
-- point whose config differs from what is asked now is refused: a sweep folder holds
-- one experiment.
--
-- With ranks > 1 every point runs data parallel under mpirun (docs/distributed.md);
-- its results do not depend on the number of processes.
--
-- A child stopped by a signal makes the sweep stop with the same status (so Ctrl-C
-- stops the whole sweep, with every finished point kept); a bad config (status 2) or
-- an error stops it too; a child stopped on non-finite losses (status 3) is recorded
-- as failed and the sweep goes on.
local core = require "blt.core"
local json = require "blt.json"
local config = require "blt.config"
local util = require "blt.util"

local sweep = {}
local user_error = require("blt.util").user_error
local Sweep = {}
Sweep.__index = Sweep

local read, exists = util.read_file, util.exists

-- The launcher this process runs under (./blt, or the sanitizer build in `make asan`).
function sweep.launcher()
    return os.getenv("BLT_BIN") or (arg and arg[-1]) or "./blt"
end

-- The argument vector that runs a point on `ranks` processes (data parallel,
-- blt.dist) before the launcher's own, and the environment it adds: mpirun with
-- --bind-to none (each rank sizes its own thread pool), the hostfile when given, and
-- Open MPI's permission to run as root when this is root. {} and nil for one process.
-- Points run without a shell (core.spawn): no word of a command is ever re-read.
function sweep.mpi_argv(ranks, hostfile)
    if not ranks or ranks <= 1 then return {}, nil end
    local root = core.getuid() == 0
    local argv = {"mpirun"}
    if root then argv[#argv + 1] = "--allow-run-as-root" end
    for _, w in ipairs {"--bind-to", "none"} do argv[#argv + 1] = w end
    if hostfile then argv[#argv + 1], argv[#argv + 2] = "--hostfile", hostfile end
    argv[#argv + 1], argv[#argv + 2] = "-np", tostring(ranks)
    return argv, root and {OMPI_ALLOW_RUN_AS_ROOT = "1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM = "1"} or nil
end

-- A repository script's path (experiments/..., scripts/...), wherever the sweep runs from.
function sweep.script_path(rel)
    local home = type(BLT_HOME) == "string" and BLT_HOME or "."
    return home .. "/" .. rel
end

function sweep.new(o)
    if type(o) ~= "table" or type(o.dir) ~= "string" or o.dir == "" then
        error("blt.sweep.new: needs {dir = folder, name = label}", 2)
    end
    local ok, err = core.mkdir(o.dir)
    if not ok then error("blt.sweep.new: " .. tostring(err), 2) end
    local prefix, env = sweep.mpi_argv(o.ranks, o.hostfile)
    return setmetatable({dir = o.dir, name = o.name or "sweep", log = o.log or io.stderr,
                         prefix = prefix, env = env, ran = 0, skipped = 0, failed = 0}, Sweep)
end

-- The extra words (args.* of an experiment) of a point: split at white space, one
-- argument each; every one must be key=value (experiment.lua checks the keys against
-- the training scripts' before anything runs).
function sweep.split_words(extra)
    local out = {}
    for w in tostring(extra or ""):gmatch("%S+") do out[#out + 1] = w end
    return out
end

-- The words of a point's command line: sorted key=value pairs, then its extra words.
function sweep.point_words(p)
    local keys = {}
    for k in pairs(p.args or {}) do keys[#keys + 1] = k end
    table.sort(keys)
    local w = {}
    for _, k in ipairs(keys) do w[#w + 1] = k .. "=" .. tostring(p.args[k]) end
    for _, x in ipairs(sweep.split_words(p.extra)) do w[#w + 1] = x end
    return w
end

-- The argument vector of a point: [mpirun ...] launcher script words..., then the
-- run's own (resume: --resume CHECKPOINT; else out.dir, out.name, out.overwrite).
function Sweep:argv(p, resume, fresh)
    local argv = {}
    for _, w in ipairs(self.prefix or {}) do argv[#argv + 1] = w end
    argv[#argv + 1] = sweep.launcher()
    argv[#argv + 1] = sweep.script_path(p.script)
    if resume then argv[#argv + 1], argv[#argv + 2] = "--resume", resume end
    for _, w in ipairs(sweep.point_words(p)) do argv[#argv + 1] = w end
    if not resume then
        argv[#argv + 1] = "out.dir=" .. self.dir
        argv[#argv + 1] = "out.name=" .. p.id
        if fresh then argv[#argv + 1] = "out.overwrite=true" end
    end
    return argv
end

-- A command as it could be typed again (for messages only: it is never run by a shell).
local function shown(argv)
    local t = {}
    for i, w in ipairs(argv) do
        t[i] = w:match("^[%w_./=,:+%-]+$") and w or ("'" .. w:gsub("'", "'\\''") .. "'")
    end
    return table.concat(t, " ")
end

-- The settings a point's run is given: its args, with the key=value words of its
-- extra (args.* of the experiments) over them, as the training script reads them.
local function effective_args(p)
    local a = {}
    for k, v in pairs(p.args or {}) do a[k] = v end
    for _, w in ipairs(sweep.split_words(p.extra)) do
        local k, v = w:match("^([%a_][%w_%.]*)=(.*)$")
        if k then a[k] = v end
    end
    return a
end

-- Keys of the point's settings (effective_args) whose value differs from the finished
-- run's config (train.RESUMABLE keys excepted: a longer train.steps continues the run).
local function mismatches(p, cfg)
    local resumable = require("blt.train").RESUMABLE
    local out = {}
    for k, v in pairs(effective_args(p)) do
        if not resumable[k] and not k:match("^out%.") then
            local have = config.get(cfg, k)
            local same = have == v or tostring(have) == tostring(v)
                         or (type(have) == "number" and tonumber(v) and math.abs(have - tonumber(v)) <= 1e-12 * math.abs(have))
            if not same then out[#out + 1] = ("%s=%s (the run has %s)"):format(k, tostring(v), tostring(have)) end
        end
    end
    table.sort(out)
    return out
end

-- What a result.json must hold (the sweep and the experiments read these).
local RESULT_FIELDS = {exit_reason = "string", step = "integer", val_bpb = "number?", val_bytes = "number?",
                       bytes_seen = "number?", wall_seconds = "number?", wall_seconds_total = "number?"}

-- What is wrong with a decoded config.json, or nil: its kind must be known, every key
-- of the kind's sections (the model) and train.batch, seq_len, steps present, and every
-- value of the type of its key (config.merge).
local function config_damage(t, path)
    local okk, M = pcall(require("blt.models").get, t.kind)
    if not okk then return ("its kind %s is not a model kind"):format(tostring(t.kind)) end
    local defaults = config.copy(require("blt.train").defaults)
    for k, v in pairs(M.sections) do defaults[k] = config.copy(v) end
    defaults.kind = t.kind
    local okm, err = pcall(config.merge, defaults, t, path)
    if not okm then return tostring(err):gsub("^config: ", "") end
    local need = {"train.batch", "train.seq_len", "train.steps"}
    for _, p in ipairs(config.paths(M.sections)) do need[#need + 1] = p end
    for _, p in ipairs(need) do
        if config.get(t, p) == nil and config.get(defaults, p) ~= config.OPTIONAL then return "it has no " .. p end
    end
end

-- A point's result.json or config.json, decoded and checked; nil when the file is
-- missing. A damaged file (empty, cut short, not JSON, a field missing or of the wrong
-- type) stops the sweep with a message naming it: the sweep cannot tell what ran there.
local function read_point_json(self, p, path)
    local text = read(path)
    if text == nil then return nil end
    local ok, t = pcall(json.decode, text)
    local why = not ok and tostring(t):gsub("^[^\n]-:%d+: ", "") or type(t) ~= "table" and "not a JSON object" or nil
    if not why and path:match("result%.json$") then
        for k, spec in pairs(RESULT_FIELDS) do
            local v, want, opt = t[k], spec:gsub("%?$", "")
            local fits = want == "integer" and math.type(v) == "integer" or want ~= "integer" and type(v) == want
            if not (fits or (opt == 1 and v == nil)) then
                why = ("its %s is %s, not %s"):format(k, v == nil and "missing" or (type(v) .. " " .. tostring(v)),
                                                    want .. (opt == 1 and " (or absent)" or ""))
                break
            end
        end
        local known = require("blt.train").EXIT
        if not why and not (known[t.exit_reason] or t.exit_reason == "time_limit" or t.exit_reason == "stop_at") then
            why = ("its exit_reason '%s' is not one a run writes"):format(t.exit_reason)
        end
    elseif not why then
        why = config_damage(t, path)
    end
    if why then
        user_error(("%s: point %s: %s is damaged (%s): remove the folder %s to train the point again")
            :format(self.name, p.id, path, why, path:match("^(.*)/[^/]*$")))
    end
    return t
end

-- Reads a point's folder: result, config, metrics rows.
local function collect(self, p, dir)
    local r = {id = p.id, dir = dir, checkpoint = dir .. "/checkpoint.h5"}
    for _, f in ipairs {"result", "config"} do
        local path = ("%s/%s.json"):format(dir, f)
        r[f] = read_point_json(self, p, path)
        if r[f] == nil then user_error(("%s: point %s: %s is missing"):format(self.name, p.id, path)) end
    end
    r.history = require("blt.train").history(dir .. "/metrics.h5")
    return r
end

-- Runs (or skips, or resumes) one point; returns its record (above). Stops the
-- process with the child's status when the child was stopped by a signal, and raises
-- for a bad config or an error.
function Sweep:run(p)
    if type(p.id) ~= "string" or not p.id:match("^[%w_.%-]+$") then
        error(("blt.sweep: point id must be letters, digits, '_', '-', '.', got %s"):format(tostring(p.id)), 2)
    end
    local dir = self.dir .. "/" .. p.id
    local steps = tonumber(effective_args(p)["train.steps"])
    local res = read_point_json(self, p, dir .. "/result.json")
    local has_ckpt = exists(dir .. "/checkpoint.h5")
    if res and res.exit_reason == "finished" then
        local cfg = read_point_json(self, p, dir .. "/config.json")
        if not cfg then user_error(("%s: point %s: %s is missing"):format(self.name, p.id, dir .. "/config.json")) end
        local bad = mismatches(p, cfg)
        if #bad > 0 then
            user_error(("%s: point %s in %s was run with other settings: %s. Use another output folder for a different "
                .. "experiment"):format(self.name, p.id, dir, table.concat(bad, ", ")))
        end
        if not steps or res.step >= steps then
            self.skipped = self.skipped + 1
            self.log:write(("%s: %s is done (%s); skipped\n"):format(self.name, p.id, dir))
            local r = collect(self, p, dir)
            r.skipped = true
            return r
        end
    end
    local argv
    if has_ckpt then
        self.log:write(("%s: %s resumes from its checkpoint\n"):format(self.name, p.id))
        argv = self:argv(p, dir .. "/checkpoint.h5")
    else
        self.log:write(("%s: %s starts\n"):format(self.name, p.id))
        argv = self:argv(p, nil, exists(dir))
    end
    io.stdout:flush()
    local _, how, status = core.spawn(argv, {env = self.env})
    if how == "error" then
        error(("%s: point %s could not start (%s); its command was:\n  %s"):format(self.name, p.id, status, shown(argv)), 0)
    end
    if how == "signal" then status = 128 + status end
    self.ran = self.ran + 1
    if status == 129 or status == 130 or status == 143 then
        self.log:write(("%s: stopped during %s (status %d); run the same command again to continue\n")
            :format(self.name, p.id, status))
        io.stdout:flush()
        os.exit(status)
    end
    if status == 3 then
        self.failed = self.failed + 1
        self.log:write(("%s: %s stopped on non-finite losses; recorded as failed\n"):format(self.name, p.id))
        local r = collect(self, p, dir)
        r.failed = true
        return r
    end
    if status ~= 0 then
        -- a point refused for its config (2) or its files (4) stops the sweep with the same status
        local msg = ("%s: point %s failed with status %d; its command was:\n  %s"):format(self.name, p.id, status, shown(argv))
        if status == 2 or status == 4 then user_error(msg, status) end
        error(msg, 0)
    end
    local r = collect(self, p, dir)
    if r.result.exit_reason ~= "finished" then -- train.stop_at or train.time_limit: not done yet
        self.log:write(("%s: %s stopped early (%s) at step %d; run the same command again to continue\n")
            :format(self.name, p.id, r.result.exit_reason, r.result.step))
        r.stopped = true
    end
    return r
end

-- One line for the end of a sweep.
function Sweep:summary()
    return ("%s: %d points run, %d skipped (already done), %d failed"):format(self.name, self.ran, self.skipped, self.failed)
end

-- ---- small numeric helpers the experiments share ----

-- Mean, min, max, population standard deviation of a list of numbers.
function sweep.stats(xs)
    local n, s, lo, hi = #xs, 0, math.huge, -math.huge
    for _, x in ipairs(xs) do s, lo, hi = s + x, math.min(lo, x), math.max(hi, x) end
    if n == 0 then return {n = 0} end
    local mean, v = s / n, 0
    for _, x in ipairs(xs) do v = v + (x - mean) ^ 2 end
    return {n = n, mean = mean, min = lo, max = hi, std = math.sqrt(v / n)}
end

-- Least-squares fit of log y = log a - b log x (y = a x^-b) over points with x, y > 0.
-- Returns a, b, and the fit's r^2; nil with fewer than 2 distinct x.
function sweep.power_law(xs, ys)
    local lx, ly = {}, {}
    for i = 1, #xs do
        if xs[i] > 0 and ys[i] > 0 then lx[#lx + 1], ly[#ly + 1] = math.log(xs[i]), math.log(ys[i]) end
    end
    local n = #lx
    if n < 2 then return nil end
    local mx, my = 0, 0
    for i = 1, n do mx, my = mx + lx[i] / n, my + ly[i] / n end
    local sxx, sxy, syy = 0, 0, 0
    for i = 1, n do
        sxx, sxy, syy = sxx + (lx[i] - mx) ^ 2, sxy + (lx[i] - mx) * (ly[i] - my), syy + (ly[i] - my) ^ 2
    end
    if sxx == 0 then return nil end
    local slope = sxy / sxx
    local r2 = syy > 0 and (sxy * sxy) / (sxx * syy) or 1
    return math.exp(my - slope * mx), -slope, r2
end

-- Writes a table of rows as aligned text columns: cols = {{key, header, fmt}, ...}.
function sweep.table(rows, cols)
    require("blt.report").note_table(rows, cols) -- for report.html and results.h5's /tables
    local cells, width = {}, {}
    for j, c in ipairs(cols) do width[j] = #c[2] end
    for i, r in ipairs(rows) do
        cells[i] = {}
        for j, c in ipairs(cols) do
            local v = r[c[1]]
            local s = v == nil and "-" or (type(c[3]) == "function" and c[3](v) or (c[3] and c[3]:format(v) or tostring(v)))
            cells[i][j] = s
            width[j] = math.max(width[j], #s)
        end
    end
    local lines = {}
    local function line(vals)
        local out = {}
        for j, v in ipairs(vals) do out[j] = j == 1 and (v .. (" "):rep(width[j] - #v)) or ((" "):rep(width[j] - #v) .. v) end
        return table.concat(out, "  ")
    end
    local head = {}
    for j, c in ipairs(cols) do head[j] = c[2] end
    lines[1] = line(head)
    local rule = {}
    for j in ipairs(cols) do rule[j] = ("-"):rep(width[j]) end
    lines[2] = line(rule)
    for _, r in ipairs(cells) do lines[#lines + 1] = line(r) end
    return table.concat(lines, "\n")
end

return sweep
