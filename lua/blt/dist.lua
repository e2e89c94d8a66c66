-- blt.dist: data-parallel training over MPI (docs/distributed.md), for blt.train.
--
-- Every process (rank) holds the whole model and optimiser. Each step every rank
-- draws the same global batch from the same seeded sampler and keeps its own rows
-- (dist.shard), so the data and the sampler state do not depend on the number of
-- ranks. The gradients are summed in one MPI_Allreduce over the flat gradient
-- buffer; every rank then takes the same optimiser step. Rank 0 alone writes files.
--
-- Run plainly (./blt SCRIPT.lua), or built without MPI, it is a world of one rank
-- and every function below costs nothing.
local core = require "blt.core"

local dist = {}

local info = core.dist_info()

function dist.rank() return info.rank end
function dist.size() return info.size end
function dist.local_size() return info.local_size end
function dist.is_root() return info.rank == 0 end
function dist.active() return info.size > 1 end
function dist.library() return info.library end

-- allreduce_sum(x): x a contiguous float32 tensor (summed in place and returned), a
-- number or an array of numbers (their sums returned, in float64).
dist.allreduce_sum = core.dist_allreduce_sum
dist.allreduce_max = core.dist_allreduce_max
dist.barrier = core.dist_barrier
dist.abort = core.dist_abort
dist.finalize = core.dist_finalize

-- Seconds spent in the gradient all-reduce so far (for benchmarks and metrics).
dist.allreduce_seconds = 0

-- This rank's rows of a global batch of B rows: first and count (1-based); the rows
-- are split into contiguous runs whose sizes differ by at most one.
function dist.shard_range(B)
    local r, n = info.rank, info.size
    local lo, hi = (B * r) // n, (B * (r + 1)) // n
    return lo + 1, hi - lo
end

-- This rank's rows of rows int32 [B, N] (a view; the whole batch with one rank).
function dist.shard(rows)
    if info.size == 1 then return rows end
    local first, count = dist.shard_range(rows:size(1))
    return core.narrow(rows, 1, first, count)
end

-- Sums a flat gradient buffer over the ranks, timing it.
function dist.allreduce_grad(flat_grad)
    if info.size == 1 then return flat_grad end
    local t0 = core.now()
    core.dist_allreduce_sum(flat_grad)
    dist.allreduce_seconds = dist.allreduce_seconds + core.now() - t0
    return flat_grad
end

local function count_targets(rows) return require("blt.models").targets(rows) end

-- The gradients of one step under several ranks: this rank's loss and gradients on its
-- slice of the global batch rows, weighted by its share k/K of the batch's targets,
-- then summed over the ranks in one all-reduce of the flat gradient buffer: the
-- gradient of the global mean loss, as one rank with the whole batch computes it
-- (up to rounding). Returns the global mean loss, the same on every rank. The BLT's
-- entropy pass and patching (model:prepare, inside loss) see only this rank's rows.
function dist.loss_backward(model, flat_grad, rows)
    local mine = dist.shard(rows)
    local K, k = count_targets(rows), count_targets(mine)
    local w = K > 0 and k / K or 0
    local part = 0.0
    if k > 0 then
        local l = model:loss(mine)
        l:backward()
        part = l:item() * w
        core.nn_scale_(flat_grad, w)
    end
    dist.allreduce_grad(flat_grad)
    -- the step's measures the metrics log: the mean of the ranks' means
    local pm, bpt = model.last_patch_mean, model.last_bytes_per_token
    local sums = core.dist_allreduce_sum {part, pm or 0, bpt or 0}
    if pm then model.last_patch_mean = sums[2] / info.size end
    if bpt then model.last_bytes_per_token = sums[3] / info.size end
    return sums[1]
end

-- Runs fn on rank 0 alone (the one writer) and tells every rank how it went:
-- returns fn's string result (or nil) everywhere, or raises its error everywhere
-- (an error table {msg = ...} whose metatable is `kind` is raised as one again). With one rank it
-- is pcall-free: fn runs and its error propagates as it is.
function dist.on_root(fn, kind)
    if info.size == 1 then return fn() end
    local msg
    if info.rank == 0 then
        local ok, res = pcall(fn)
        if ok then
            msg = "ok\n" .. (res ~= nil and tostring(res) or "")
            if res == nil then msg = "nil\n" end
        elseif kind and getmetatable(res) == kind then
            msg = "kind\n" .. tostring(res.msg)
        else
            msg = "err\n" .. tostring(res)
        end
    end
    msg = core.dist_bcast(msg or "")
    local tag, body = msg:match("^(%a+)\n(.*)$")
    if tag == "ok" then return body end
    if tag == "nil" then return nil end
    if tag == "kind" then error(setmetatable({msg = body}, kind), 0) end
    error(body, 0)
end

-- Whether every rank holds the same settings: entries is a list of {key, value} (value
-- a string) in the same key order on every rank. Rank 0's list is broadcast, each rank
-- compares it with its own, and one all-reduce tells every rank which ranks differ, so
-- all of them learn it together and none is left waiting in a later collective.
-- Returns nil when all agree; else the list of ranks that differ from rank 0 and this
-- rank's differences {key =, mine =, root =} (empty on rank 0 and on agreeing ranks).
-- This must be the first collective of a run: the ranks cannot be trusted to reach
-- the same later ones before it has passed.
function dist.disagreements(entries)
    if info.size == 1 then return nil end
    local function line(k, v) return k .. "\t" .. v:gsub("[\\\n\t]", {["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t"}) end
    local lines = {}
    for i, e in ipairs(entries) do lines[i] = line(e[1], e[2]) end
    local mine = table.concat(lines, "\n")
    local root = core.dist_bcast(mine)
    local differ = {}
    if root ~= mine then
        local theirs, seen = {}, {}
        for l in (root .. "\n"):gmatch("([^\n]*)\n") do
            local k, v = l:match("^([^\t]*)\t(.*)$")
            if k then theirs[k] = v end
        end
        for i, e in ipairs(entries) do
            local k = e[1]
            seen[k] = true
            local v = lines[i]:sub(#k + 2)
            if theirs[k] ~= v then differ[#differ + 1] = {key = k, mine = e[2], root = theirs[k]} end
        end
        for k in pairs(theirs) do if not seen[k] then differ[#differ + 1] = {key = k, root = theirs[k]} end end
    end
    local flags = {}
    for r = 1, info.size do flags[r] = (r - 1 == info.rank and #differ > 0) and 1 or 0 end
    local sums = core.dist_allreduce_sum(flags)
    local ranks = {}
    for r = 1, info.size do if sums[r] > 0 then ranks[#ranks + 1] = r - 1 end end
    if #ranks == 0 then return nil end
    return ranks, differ
end

-- Stop reasons agreed by all ranks: the largest code any rank has wins (a signal over
-- the time limit), so all stop after the same step and none waits in a collective.
local SIGNALS = {[1] = "SIGHUP", [2] = "SIGINT", [15] = "SIGTERM"}

-- signum (or nil), timed_out -> signal name (or nil), signum (or nil), timed_out,
-- as agreed by every rank.
function dist.agree_stop(signum, timed_out)
    if info.size == 1 then return signum and SIGNALS[signum] or nil, signum, timed_out end
    local code = core.dist_allreduce_max(signum and 100 + signum or timed_out and 1 or 0)
    if code >= 100 then
        local s = math.floor(code - 100)
        return SIGNALS[s] or ("SIG" .. s), s, false
    end
    return nil, nil, code == 1
end

return dist
