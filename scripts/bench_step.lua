-- One run of our training step for scripts/bench.lua's section compare, which starts it
-- in a process of its own (so its peak memory is its own) once per round and precision,
-- beside the PyTorch peer (scripts/reference/bench_reference.py) on the same config and rows:
--   ./blt scripts/bench_step.lua model=blt|bytelm config=JSON_FILE rows=ROWS_FILE [precision=fp32|bf16] [reps=5] [size=4]
-- config: the model config as JSON (the keys of lua/blt/models/*.lua); rows: one row a
-- line (BOS, ids). A step: patches (fixed, `size` bytes) and hash ids (the BLT), forward,
-- backward, gradient clipping to 1 and AdamW, after one warm-up step. Prints one line:
-- "model M precision P step_s S bytes_per_s B peak_rss_mb R steps s,s,.."
-- (the median step; the process's peak resident memory, VmHWM).
local blt = require "blt"
local core = require "blt.core"
local config = require "blt.config"
local util = require "blt.util"

local opts = config.script {
    name = "bench_step", args = arg,
    usage = "usage: ./blt scripts/bench_step.lua model=blt|bytelm config=JSON_FILE rows=ROWS_FILE [precision=fp32|bf16] [reps=5]",
    defaults = {model = "blt", config = config.OPTIONAL, rows = config.OPTIONAL, precision = "fp32", reps = 5, size = 4},
    docs = {model = "blt or bytelm", config = "the model config (JSON)", rows = "the batch: one row of ids a line",
            precision = "products of the linear layers (train.precision)", reps = "timed steps (the median is printed)",
            size = "the BLT's fixed patch size"},
    rules = {model = {"blt", "bytelm"}, precision = {"fp32", "bf16"}, reps = ">= 1", size = ">= 1",
             config = "readable", rows = "readable"},
}
if not opts then return end -- --help
if not opts.config or not opts.rows then util.die("bench_step", "give config=JSON_FILE and rows=ROWS_FILE") end
local okp, errp = pcall(core.set_precision, opts.precision)
if not okp then util.die("bench_step", "precision = bf16 is refused: " .. util.message(errp)) end

local cfg = require("blt.json").decode(util.read_file(opts.config))
local list = {}
for line in util.read_file(opts.rows):gmatch("[^\n]+") do
    local r = {}
    for x in line:gmatch("%S+") do r[#r + 1] = math.tointeger(tonumber(x)) end
    list[#list + 1] = r
end
local rows = blt.tensor(list, "int32")
local B, T = rows:size(1), rows:size(2) - 1

local model
if opts.model == "blt" then
    local BLT = require "blt.models.blt"
    model = BLT.new(cfg, 1, {patcher = require("blt.patching").patcher {scheme = "fixed", size = opts.size}})
else
    model = require("blt.models.bytelm").new(cfg, 1)
end
local opt = require("blt.optim").AdamW(model, {lr = 1e-3})

local ts = {}
for i = 0, opts.reps do -- step 0 warms up
    local t0 = core.now()
    core.scope(function()
        opt:zero_grad()
        model:loss(rows):backward() -- patches and hash ids are computed in the step
        opt:clip_grad_norm(1.0)
        opt:step()
    end)
    if i > 0 then ts[i] = core.now() - t0 end
end
local sorted = table.move(ts, 1, #ts, 1, {})
table.sort(sorted)
local n = #sorted
local med = n % 2 == 1 and sorted[(n + 1) // 2] or (sorted[n // 2] + sorted[n // 2 + 1]) / 2
local _, peak = core.rss()
local s = {}
for i, t in ipairs(ts) do s[i] = ("%.5f"):format(t) end
print(("model %s precision %s step_s %.5f bytes_per_s %.1f peak_rss_mb %.1f steps %s"):format(opts.model, opts.precision,
      med, B * T / med, peak / 1048576, table.concat(s, ",")))
