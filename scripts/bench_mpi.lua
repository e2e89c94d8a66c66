-- One run of the data-parallel benchmark (scripts/bench.lua's section mpi starts it,
-- under mpirun for several ranks): training steps of the benchmark BLT (bench.lua's
-- blt section: BLT.defaults, global batch 8 x 512, fixed patches of 4, AdamW) with the
-- global batch split over the ranks, as blt.train does it.
--   mpirun -np 2 ./blt scripts/bench_mpi.lua [reps=5]
-- Rank 0 prints one line: "ranks N threads T step_s S bytes_per_s B allreduce_ms A
-- pure_allreduce_ms P grad_mb G" (medians over the timed steps; allreduce_ms: the gradient
-- all-reduce's time in a step, waiting for the slowest rank included; pure_allreduce_ms:
-- the same all-reduce with every rank ready; cpu_s: the slowest rank's CPU seconds per
-- step, what a step would take on cores of its own, all-reduce included).
local blt = require "blt"
local core = require "blt.core"
local config = require "blt.config"
local dist = require "blt.dist"

local opts = config.script {
    name = "bench_mpi", args = arg,
    usage = "usage: mpirun -np N ./blt scripts/bench_mpi.lua [reps=N]",
    defaults = {reps = 5}, docs = {reps = "timed steps (the median is printed)"}, rules = {reps = ">= 1"},
}
if not opts then return end -- --help

local BLT = require "blt.models.blt"
local patching = require "blt.patching"
local optim = require "blt.optim"
local data = require "blt.data"
local B, T = 8, 512
local m = config.copy(BLT.defaults)
local corpus = data.open()
local rows = blt.concat({blt.ones({B, 1}, "int32"), corpus:ids(1001, B * T):reshape({B, T})}, 2)
local model = BLT.new(m, 1, {patcher = patching.patcher {scheme = "fixed", size = 4}})
local opt = optim.AdamW(model, {lr = 1e-3})

local function median(xs)
    table.sort(xs)
    local n = #xs
    return n % 2 == 1 and xs[(n + 1) // 2] or (xs[n // 2] + xs[n // 2 + 1]) / 2
end

local steps, reduces, cpus = {}, {}, {}
for i = 0, opts.reps do -- step 0 warms up
    dist.barrier()
    local t0, r0, c0 = core.now(), dist.allreduce_seconds, os.clock()
    core.scope(function()
        opt:zero_grad()
        if dist.size() == 1 then model:loss(rows):backward()
        else dist.loss_backward(model, opt.flat_grad, rows) end
        opt:clip_grad_norm(1.0)
        opt:step()
    end)
    if i > 0 then
        steps[i] = dist.allreduce_max(core.now() - t0) -- the slowest rank sets the pace
        reduces[i] = dist.allreduce_max(dist.allreduce_seconds - r0)
        cpus[i] = dist.allreduce_max(os.clock() - c0) -- CPU time: what the step costs on a machine of its own
    end
end
-- the all-reduce alone, all ranks ready (in a step it also waits for the slowest rank)
local buf, pure = blt.zeros({opt.n}), {}
for i = 1, opts.reps do
    dist.barrier()
    local t0 = core.now()
    dist.allreduce_sum(buf)
    pure[i] = dist.allreduce_max(core.now() - t0)
end
if dist.is_root() then
    local s = median(steps)
    print(("ranks %d threads %d step_s %.4f bytes_per_s %.1f allreduce_ms %.3f pure_allreduce_ms %.3f grad_mb %.2f cpu_s %.4f")
          :format(dist.size(), core.threads(), s, B * T / s, 1000 * median(reduces), 1000 * median(pure), opt.n * 4 / 1e6,
                  median(cpus)))
end
