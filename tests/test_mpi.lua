package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- Data-parallel training under mpirun (blt.dist, docs/distributed.md): 2 ranks with
-- half the batch each match 1 rank with the whole batch; a stop is agreed; a killed
-- rank ends the job; a checkpoint resumes under another number of ranks.
local T = require "tap"
local core = require "blt.core"
local json = require "blt.json"
local blt = require "blt"
local U = require "testutil"

local bin = os.getenv("BLT_BIN") or "./blt"
if not core.dist_info().compiled then T.skip_all("./blt is built without MPI (make deps installs libopenmpi-dev)") end
if not os.execute("command -v mpirun >/dev/null 2>&1") then T.skip_all("mpirun is missing (make deps installs openmpi-bin)") end
if os.getenv("BLT_SANITIZE") then T.skip_all("not under the sanitizers (Open MPI's own allocations)") end

local dir = U.tmpdir()
local q, sh, read = U.q, U.sh, U.read
-- root in CI; two ranks on whatever cores there are; one thread each unless a test says
local MPIRUN = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 "
    .. "timeout 60 mpirun --allow-run-as-root --oversubscribe --bind-to none -np "
local corpus = U.corpus(dir .. "/corpus.txt", 60000)

local bytelm = table.concat({"experiments/train_bytelm.lua", "model.dim=16", "model.layers=1", "model.heads=2",
    "model.multiple_of=16", "model.window=32", "train.batch=4", "train.seq_len=32", "train.steps=20", "train.warmup=2",
    "train.log_every=1", "train.seed=7", "eval.every=10", "eval.max_bytes=512", "eval.final_max_bytes=1024",
    "out.checkpoint_every=0", "out.plot=false", "data.path=" .. q(corpus), "out.dir=" .. q(dir)}, " ")

local function run(np, script, args, env)
    local cmd = (env or "BLT_THREADS=1") .. " " .. (np == 1 and "" or MPIRUN .. np .. " ") .. bin .. " " .. script .. " "
        .. args .. " </dev/null"
    return sh(cmd)
end

local function result_of(name) return json.decode(read(dir .. "/" .. name .. "/result.json") or "null") end

local function losses(name)
    local f = blt.h5_open(dir .. "/" .. name .. "/metrics.h5")
    local steps, loss = f:read("/step"), f:read("/loss")
    f:close()
    local by = {}
    for i, s in ipairs(steps) do by[s] = loss[i] end
    return by
end

-- the largest relative difference of two runs' losses over steps
local function loss_diff(a, b, from, to)
    local la, lb, worst = losses(a), losses(b), 0
    for s = from, to do
        if not (la[s] and lb[s]) then return math.huge end
        worst = math.max(worst, math.abs(la[s] - lb[s]) / math.abs(la[s]))
    end
    return worst
end

-- ||a - b|| / ||a|| over the trained parameters of two runs' checkpoints. Per element
-- it can be larger: a sum split over ranks rounds differently, and AdamW's m/sqrt(v)
-- turns a rounding difference in a near-zero gradient into a full-size step.
local function param_diff(a, b)
    local ck = require "blt.checkpoint"
    local ca, cb = ck.load(dir .. "/" .. a .. "/checkpoint.h5"), ck.load(dir .. "/" .. b .. "/checkpoint.h5")
    local dd, nn = 0, 0
    for name in pairs(ca.optim.m) do
        if not cb.params[name] then return math.huge end
        local x, y = ca.params[name]:reshape({-1}):totable(), cb.params[name]:reshape({-1}):totable()
        for i = 1, #x do dd, nn = dd + (x[i] - y[i]) ^ 2, nn + x[i] ^ 2 end
    end
    return math.sqrt(dd / nn)
end

-- ---- 1. two ranks with half the batch each match one rank with the whole batch ----
local rc1, out1 = run(1, bytelm, "out.name=one")
local rc2, out2 = run(2, bytelm, "out.name=two")
T.ok(rc1 == 0 and rc2 == 0, "a ByteLM trains under 1 and under 2 ranks", out1 .. out2)
T.ok(loss_diff("one", "two", 1, 20) < 1e-5, "the 20 steps' losses match (relative 1e-5)", loss_diff("one", "two", 1, 20))
T.ok(param_diff("one", "two") < 1e-5, "the parameters after 20 steps match (relative 1e-5 in norm)", param_diff("one", "two"))
local r1, r2 = result_of("one"), result_of("two")
T.ok(r1 and r2 and r1.world_size == 1 and r2.world_size == 2 and r2.allreduce_seconds,
     "result.json records the world size (and the all-reduce time)", json.encode(r2))
T.ok(r1 and r2 and math.abs(r1.val_bpb - r2.val_bpb) < 1e-5 and r1.val_bytes == r2.val_bytes,
     "the validation split over the ranks gives the same bits per byte over the same bytes", json.encode(r2))
local _, nbar = out2:gsub("bytelm 20/20", "")
local _, nfolder = out2:gsub("run folder ", "")
T.ok(nbar >= 1 and nfolder == 2, "only rank 0 prints (one progress bar, the run folder once at the start and once at the end)", out2)
local f = blt.h5_open(dir .. "/two/metrics.h5")
local ws = f:attr("world_size")
f:close()
T.is(ws, 2, "metrics.h5's root attributes record the world size")

-- the BLT with entropy patching: each rank's entropy pass and patches cover its own rows
local rc, out = sh("BLT_THREADS=1 " .. bin .. " experiments/train_entropy_model.lua model.dim=16 model.layers=1 model.heads=2 "
    .. "model.multiple_of=16 model.window=16 train.batch=2 train.seq_len=48 train.steps=4 eval.every=0 "
    .. "eval.final_max_bytes=256 out.plot=false out.name=ent data.path=" .. q(corpus) .. " out.dir=" .. q(dir))
T.is(rc, 0, "a tiny entropy model", out)
local bltargs = table.concat({"experiments/train_blt.lua", "model.dim=16", "model.heads=2", "model.multiple_of=16",
    "model.global.dim=32", "model.global.heads=2", "model.global.layers=2", "model.cross.heads=2",
    "model.hash.buckets=64", "model.encoder.window=16", "model.decoder.window=16", "train.batch=4", "train.seq_len=48",
    "train.steps=20", "train.warmup=2", "train.log_every=1", "eval.every=0", "eval.final_max_bytes=1024",
    "out.checkpoint_every=0", "out.plot=false", "patching.scheme=entropy", "patching.target=3",
    "patching.calib_bytes=2048", "patching.entropy_model=" .. q(dir .. "/ent/checkpoint.h5"),
    "data.path=" .. q(corpus), "out.dir=" .. q(dir)}, " ")
rc1, out1 = run(1, bltargs, "out.name=blt1")
rc2, out2 = run(2, bltargs, "out.name=blt2")
T.ok(rc1 == 0 and rc2 == 0, "a BLT with entropy patching trains under 1 and 2 ranks", out1 .. out2)
T.ok(loss_diff("blt1", "blt2", 1, 20) < 1e-5, "its 20 steps' losses match (relative 1e-5)", loss_diff("blt1", "blt2", 1, 20))
T.ok(param_diff("blt1", "blt2") < 1e-5, "and its parameters", param_diff("blt1", "blt2"))

-- ---- 2. a stop is agreed; a 2-rank checkpoint resumes under 1 rank (and the reverse) ----
rc, out = run(2, bytelm, "out.name=stop train.stop_at=10")
local r = result_of("stop")
local _, nstop = out:gsub("stopped %(train.stop_at = 10%) after step 10", "")
T.ok(rc == 0 and r and r.exit_reason == "stop_at" and r.step == 10 and nstop == 1,
     "train.stop_at under 2 ranks: both stop after step 10 with status 0, one checkpoint, one message", out)
rc, out = run(1, "experiments/train_bytelm.lua", "--resume " .. q(dir .. "/stop/checkpoint.h5"))
T.ok(rc == 0 and result_of("stop").world_size == 1 and result_of("stop").step == 20, "it resumes under 1 rank to step 20", out)
T.ok(loss_diff("one", "stop", 1, 20) < 1e-5 and param_diff("one", "stop") < 1e-5,
     "and matches the uninterrupted run (losses of all 20 steps, parameters)",
     loss_diff("one", "stop", 1, 20) .. " " .. param_diff("one", "stop"))
rc, out = run(1, bytelm, "out.name=stop1 train.stop_at=10")
rc2, out2 = run(2, "experiments/train_bytelm.lua", "--resume " .. q(dir .. "/stop1/checkpoint.h5"))
T.ok(rc == 0 and rc2 == 0 and loss_diff("one", "stop1", 1, 20) < 1e-5 and param_diff("one", "stop1") < 1e-5,
     "a 1-rank checkpoint resumes under 2 ranks and matches too", out .. out2)

rc, out = run(2, bytelm, "out.name=tl train.steps=1000000 eval.every=0 train.time_limit=1")
r = result_of("tl")
T.ok(rc == 0 and r and r.exit_reason == "time_limit" and r.step > 0, "train.time_limit under 2 ranks: an agreed stop, status 0", out)
rc, out = run(2, bytelm, "out.name=nan train.lr=1e30 train.weight_decay=0 train.max_nonfinite=3")
r = result_of("nan")
T.ok(rc == 3 and r and r.exit_reason == "nonfinite" and r.skipped_steps == 3,
     "non-finite steps are skipped by every rank alike, and stop the job with status 3", out)
rc, out = run(2, bytelm, "out.name=boom train.lr=1e30 train.weight_decay=1e10")
r = result_of("boom")
T.ok(rc == 3 and r and r.exit_reason == "nonfinite" and r.step == 1 and not read(dir .. "/boom/checkpoint.h5"),
     "an update that overflows stops every rank at once with status 3, and nothing is saved", out)

-- a signal that reaches one rank only: every rank stops after the same step, with a checkpoint
local function background(np, args, action)
    local script = table.concat({
        "BLT_THREADS=1 " .. MPIRUN .. np .. " " .. bin .. " " .. bytelm .. " " .. args .. " </dev/null >" .. q(dir .. "/bg.log")
            .. " 2>&1 & T=$!",
        "i=0; while [ ! -f " .. q(dir .. "/bg/config.json") .. " ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done",
        "sleep 1",
        "M=$(ps -o pid= --ppid $T | head -n 1); R=$(ps -o pid= --ppid $M | tail -n 1)",
        "kill " .. action .. " $R",
        "wait $T; echo \"job status $?\""}, "\n")
    local _, o = sh("sh -c " .. q(script))
    return tonumber(o:match("job status (%d+)")), o .. (read(dir .. "/bg.log") or "")
end
local st
st, out = background(2, "out.name=bg train.steps=1000000 eval.every=0", "-TERM")
r = result_of("bg")
T.ok(st == 143 and r and r.exit_reason == "SIGTERM" and r.step > 0 and read(dir .. "/bg/checkpoint.h5"),
     "SIGTERM to one rank: the job stops with status 143 after a step all agree on, checkpoint saved", out)
U.cleanup(dir .. "/bg")

-- ---- 3. a rank that dies ends the job, with a message, not a hang ----
st, out = background(2, "out.name=bg train.steps=1000000 eval.every=0", "-9")
T.ok(st and st ~= 0 and st ~= 124 and out:find("signal 9", 1, true),
     "kill -9 of one rank: the others end with an error (mpirun names the killed rank), no hang", out)

-- ---- 4. per-rank rules ----
rc, out = run(2, bytelm, "out.name=small train.batch=1")
T.ok(rc == 2 and out:find("train.batch = 1 is less than the 2 processes", 1, true), "a batch smaller than the ranks is refused", out)
rc, out = run(2, bytelm, "out.name=one")
T.ok(rc == 2 and out:find(dir .. "/one exists", 1, true), "rank 0's refusal of an existing folder reaches every rank: status 2", out)
rc, out = run(2, bytelm, "out.name=threads train.steps=2", "env -u BLT_THREADS")
local cores = tonumber((select(2, sh("nproc")):match("%d+"))) or 1
T.ok(rc == 0 and out:find(("%d threads per process, 2 processes"):format(math.max(1, cores // 2)), 1, true),
     "the threads default to the cores shared by the ranks on one machine", out)

-- ---- 5. every rank runs the same config: a difference stops all of them, naming the keys ----
-- mpirun's MPMD form starts rank 0 and rank 1 with their own command lines
local function mpmd(args0, args1)
    return sh("BLT_THREADS=1 " .. MPIRUN .. "1 " .. bin .. " " .. args0 .. " : -np 1 " .. bin .. " " .. args1 .. " </dev/null")
end
do
    local other = dir .. "/corpus2.txt"
    U.write(other, read(corpus))
    rc, out = run(1, bytelm, "out.name=agree train.stop_at=2")
    local ck = dir .. "/agree/checkpoint.h5"
    local short = bytelm .. " out.name=differ train.steps=4 eval.every=0"
    -- {what differs, rank 0's arguments, rank 1's, the text naming it}
    local cases = {}
    for _, c in ipairs {{"train.steps", 3, 6}, {"model.dim", 16, 32}, {"model.layers", 1, 2}, {"model.heads", 2, 4},
                        {"model.window", 32, 16}, {"eval.every", 1, 2}, {"train.lr", 0.001, 0.002},
                        {"train.seed", 1, 2}, {"data.path", corpus, other}} do
        cases[#cases + 1] = {c[1], short .. " " .. c[1] .. "=" .. q(c[2]), short .. " " .. c[1] .. "=" .. q(c[3]),
                             ("%s: %s on rank 0, %s on rank 1"):format(c[1], c[2], c[3])}
    end
    cases[#cases + 1] = {"--resume on one rank", "experiments/train_bytelm.lua --resume " .. q(ck), short,
                         "--resume: " .. ck .. " on rank 0, (not given) on rank 1"}
    local named = 0
    for _, c in ipairs(cases) do
        local rcc, o = mpmd(c[2], c[3])
        if rcc == 2 and o:find(c[4], 1, true) and o:find("[rank 0]", 1, true) and not o:find("parameters,", 1, true) then
            named = named + 1
        else
            T.diag(("%s: status %s\n%s"):format(c[1], tostring(rcc), o))
        end
    end
    T.ok(rc == 0 and named == #cases, ("%d settings that differ between the ranks: %d stop both ranks with status 2 "
        .. "before any work, naming the key and both values"):format(#cases, named))
    T.ok(not core.listdir(dir .. "/differ"), "none of them made a run folder")
    rc, out = mpmd(short .. " train.threads=1", short .. " train.threads=2")
    T.ok(rc == 0 and result_of("differ") and result_of("differ").step == 4,
         "train.threads may differ (a rank's own machine): the run trains", out)
end

if os.getenv("KEEP") then print(dir) else U.cleanup(dir) end
T.done()
