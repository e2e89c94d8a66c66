-- Training curves of several runs on one PNG: the training loss in bits per byte
-- (the logged loss in nats / ln 2, and for a token model also / bytes per token; lines) and the validation bits per byte
-- (points joined by dashed lines), one colour per run.
--
--   ./blt scripts/plot_runs.lua runs/bytelm-1 runs/blt-1 [out=runs/compare.png] [x=step|bytes|flops] [logx=true]
--
-- An argument is a run folder (its metrics.h5) or a metrics.h5 file (its folder is the
-- run). Labels are the run folders' names. The x axis:
--   step   the optimiser step
--   bytes  training bytes seen: step x train.batch x train.seq_len (the run's config.json)
--   flops  training FLOPs: the sum over logged rows of the steps since the previous
--          row x bytes per step x that row's flops_per_byte (a metrics column the
--          trainer logs; docs/flops.md), so a BLT whose patch size drifts is counted
--          at the size of each stretch
-- Prints one line per run (last step, last training bits per byte, best and last
-- validation). A missing or unreadable run is refused with status 2 naming it.
local blt = require "blt"
local config = require "blt.config"
local core = require "blt.core"
local json = require "blt.json"
local plot = require "blt.plot"

local opts, flags = config.script {
    name = "plot_runs", args = arg, words = true,
    usage = [[
usage: ./blt scripts/plot_runs.lua [key=value ...] [--] RUN...
Overlays the training loss (bits per byte) and validation bits per byte of each RUN (a run
folder or its metrics.h5) on one PNG, x = step, training bytes or training FLOPs.]],
    defaults = {out = "runs/compare.png", x = "step", logx = false, logy = false, train = true, val = true,
                title = config.OPTIONAL},
    docs = {out = "the PNG to write", x = "x axis: optimiser step, training bytes seen, or training FLOPs",
            logx = "logarithmic x axis", logy = "logarithmic y axis", train = "draw the training loss",
            val = "draw the validation curve", title = "figure title (unset: what is drawn)"},
    rules = {x = {"step", "bytes", "flops"}, out = function(v) if v == "" then return "must not be empty" end end},
}
if not opts then return end -- --help

local LN2 = math.log(2)

local function fail(fmt, ...) require("blt.util").die("plot_runs", fmt:format(...)) end

local function basename(p) return p:match("([^/]+)$") or p end
local function dirname(p) return p:match("^(.*)/[^/]*$") or "." end
local function finite(v) return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge end

local read_file = require("blt.util").read_file

-- {label, path, step, loss, val_bpb, flops_per_byte, cfg} of one argument, or fail().
local function load_run(arg_path)
    local p = arg_path:gsub("/+$", "")
    if p == "" then p = "/" end
    local metrics, folder
    if core.listdir(p) then
        folder, metrics = p, p .. "/metrics.h5"
        if not read_file(metrics) then fail("%s: no metrics.h5 in this folder (is it a run folder?)", arg_path) end
    else
        if not core.file_kind(p) then fail("%s: no such file or folder", arg_path) end
        local f, why = require("blt.util").open_read(p)
        if not f then fail("%s", why) end
        f:close()
        metrics, folder = p, dirname(p)
    end
    local ok, r = pcall(require("blt.checkpoint").read_metrics, metrics)
    if not ok then
        fail("%s: cannot be read as a metrics file (%s)", metrics,
             (tostring(r):gsub("^[^:]*%.lua:%d+: ", ""):gsub("^checkpoint%.read_metrics: [^:]*: ", "")))
    end
    if not r.step or not r.loss then fail("%s: has no step and loss columns (not a run's metrics.h5)", metrics) end
    if #r.step == 0 then fail("%s: holds no rows yet", metrics) end
    r.path, r.folder = metrics, folder
    r.label = basename(folder)
    if opts.x ~= "step" then
        local text = read_file(folder .. "/config.json")
        if not text then fail("%s: x=%s needs the run's config.json (train.batch, train.seq_len), which is missing", folder, opts.x) end
        local okj, cfg = pcall(json.decode, text)
        local t = okj and type(cfg) == "table" and cfg.train
        if not (t and math.tointeger(t.batch) and math.tointeger(t.seq_len)) then
            fail("%s/config.json: has no train.batch and train.seq_len", folder)
        end
        r.bytes_per_step = t.batch * t.seq_len
        if opts.x == "flops" and not r.flops_per_byte then
            fail("%s: x=flops needs the flops_per_byte column, which this run did not log", metrics)
        end
    end
    return r
end

local args = flags.words
if #args == 0 then fail("no RUN to plot (give run folders or metrics.h5 files after the key=value settings)") end
local runs, seen = {}, {}
for i, a in ipairs(args) do
    local r = load_run(a)
    if seen[r.label] then r.label = r.label .. "#" .. i end
    seen[r.label] = true
    runs[i] = r
end

-- x of each row
local function xs_of(r)
    local xs = {}
    if opts.x == "step" then
        for i, s in ipairs(r.step) do xs[i] = s end
    elseif opts.x == "bytes" then
        for i, s in ipairs(r.step) do xs[i] = s * r.bytes_per_step end
    else
        local total, prev = 0.0, 0
        for i, s in ipairs(r.step) do
            local fpb = r.flops_per_byte[i]
            if finite(fpb) then total = total + (s - prev) * r.bytes_per_step * fpb end
            prev = s
            xs[i] = total
        end
    end
    return xs
end

local series = {}
for i, r in ipairs(runs) do
    local xs = xs_of(r)
    local tx, ty, vx, vy, best = {}, {}, {}, {}, math.huge
    for j = 1, #r.step do
        local l, v = r.loss[j], r.val_bpb and r.val_bpb[j]
        -- a token model logs nats per token: per byte, divide by the bytes a token covers
        local bpt = r.bytes_per_token and r.bytes_per_token[j]
        if finite(l) then tx[#tx + 1], ty[#ty + 1] = xs[j], l / LN2 / (finite(bpt) and bpt > 0 and bpt or 1) end
        if finite(v) then
            vx[#vx + 1], vy[#vy + 1] = xs[j], v
            best = math.min(best, v)
        end
    end
    if opts.train and #tx > 0 then series[#series + 1] = {name = r.label .. " train", x = tx, y = ty, style = "lines", color = i} end
    if opts.val and #vx > 0 then
        series[#series + 1] = {name = r.label .. " validation", x = vx, y = vy, style = "linespoints", color = i, dash = 2}
    end
    print(("%s: %d rows, last step %d, train %s bits/byte, validation best %s, last %s (%s)"):format(r.label, #r.step,
        math.tointeger(r.step[#r.step]) or r.step[#r.step], #ty > 0 and ("%.4f"):format(ty[#ty]) or "-",
        #vy > 0 and ("%.4f"):format(best) or "-", #vy > 0 and ("%.4f"):format(vy[#vy]) or "-", r.path))
end
if #series == 0 then fail("nothing to draw: no finite %s values in these runs", opts.train and "loss" or "validation") end

if not plot.available() then
    io.stderr:write("plot_runs: gnuplot is not installed, no PNG written (make deps installs gnuplot-nox)\n")
    os.exit(1)
end
local out_dir = dirname(opts.out)
if out_dir ~= "." then
    local okd, errd = core.mkdir(out_dir)
    if not okd then fail("out=%s: %s", opts.out, errd) end
end
local xlabel = ({step = "step", bytes = "training bytes seen", flops = "training FLOPs"})[opts.x]
local ok, err = pcall(plot.lines, {path = opts.out, series = series, xlabel = xlabel, ylabel = "bits per byte",
    logx = opts.logx, logy = opts.logy, title = opts.title or ("training loss and validation, bits per byte, by " .. xlabel)})
if not ok then fail("out=%s: %s", opts.out, tostring(err):gsub("^[^:]*%.lua:%d+: ", "")) end
print("plot: " .. opts.out)
