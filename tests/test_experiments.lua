package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local U = require "testutil"
local blt = require "blt"
local json = require "blt.json"
local sweep = require "blt.sweep"
local experiment = require "blt.experiment"

-- compare_patching.lua and scaling.lua end to end at the smoke budget, their results
-- files, resuming (finished points skipped, a stopped point continued), and the
-- numeric helpers they share.

local bin = os.getenv("BLT_BIN") or "./blt"
local dir = U.tmpdir()
local q, sh = U.q, U.sh
local corpus = U.corpus(dir .. "/corpus.txt", 200000)
local base = ("budget=smoke data.path=%s args.all=train.threads=1"):format(q(corpus))

local function h5(path)
    local f = blt.h5_open(path)
    return f
end

local function has(f, path) return f:exists(path) end

-- ---- helpers ----
do
    local a, b, r2 = sweep.power_law({1, 10, 100, 1000}, {3, 3 * 10 ^ -0.5, 3 * 100 ^ -0.5, 3 * 1000 ^ -0.5})
    T.ok(math.abs(a - 3) < 1e-9 and math.abs(b - 0.5) < 1e-12 and math.abs(r2 - 1) < 1e-12,
         "power_law recovers y = 3 x^-0.5 exactly", ("%g %g %g"):format(a, b, r2))
    T.is(sweep.power_law({5, 5}, {1, 2}), nil, "power_law needs two distinct x")
    local s = sweep.stats {1, 2, 3, 6}
    T.ok(s.mean == 3 and s.min == 1 and s.max == 6 and math.abs(s.std - math.sqrt(3.5)) < 1e-12, "stats: mean, range, std")
    T.is(experiment.size("128x3"), 128, "size WIDTHxLAYERS")
    T.ok(experiment.size_list_rule("96x2,128x3") == nil and experiment.size_list_rule("100x2") ~= nil
         and experiment.size_list_rule("abc") ~= nil, "size lists: RoPE-compatible widths only")
    T.ok(experiment.list_rule({"a", "b"})("a,a") ~= nil and experiment.list_rule({"a", "b"})("c") ~= nil
         and experiment.list_rule({"a", "b"})("b,a") == nil, "scheme lists: known names, no repeats")
end

-- ---- compare_patching ----
local cmp = dir .. "/cmp"
local t0 = blt.now()
local rc, out = sh(("%s experiments/compare_patching.lua %s seeds=1,2 out=%s"):format(bin, base, q(cmp)))
local took = blt.now() - t0
T.is(rc, 0, "compare_patching budget=smoke finishes", out)
-- a time limit for the plain build; a sanitizer build runs several times slower
local LIMIT = os.getenv("BLT_SANITIZE") and 600 or 60
T.ok(took < LIMIT, ("it takes under %d s (%.1f s)"):format(LIMIT, took))
local schemes = require("blt.experiment").sweep_words() -- the default schemes=: every BLT scheme and kind baseline
for _, sc in ipairs(schemes) do
    T.ok(out:find("\n" .. sc .. "%s+%d+%.%d+%s+%d+%.%d+M"), "the table has a row for " .. sc, out:sub(-2500))
end
do
    local f = h5(cmp .. "/results.h5")
    T.is(f:attr("experiment"), "compare_patching", "results.h5 names its experiment")
    T.is(f:attr("budget"), "smoke", "and its budget")
    local ok = true
    for _, sc in ipairs(schemes) do
        for _, seed in ipairs {1, 2} do
            local g = ("/points/%s-s%d"):format(sc, seed)
            for _, d in ipairs {"val_bpb", "mean_patch", "params", "train_flops_per_byte", "inference_flops_per_byte",
                                "train_flops", "steps", "wall_seconds", "curve/train_flops", "curve/val_bpb"} do
                if not has(f, g .. "/" .. d) then ok = false; T.diag("missing " .. g .. "/" .. d) end
            end
            if f:attr("scheme", g) ~= sc or f:attr("seed", g) ~= seed then ok = false end
        end
        for _, d in ipairs {"val_bpb_mean", "val_bpb_min", "val_bpb_max", "val_bpb_std", "seeds"} do
            if not has(f, "/summary/" .. sc .. "/" .. d) then ok = false; T.diag("missing summary " .. sc .. "/" .. d) end
        end
    end
    T.ok(ok, "results.h5: every point's measures and curve, every scheme's summary over seeds")
    -- the summary is the mean over seeds of the points
    local a, b = f:read("/points/fixed-s1/val_bpb"), f:read("/points/fixed-s2/val_bpb")
    T.ok(math.abs(f:read("/summary/fixed/val_bpb_mean") - (a + b) / 2) < 1e-12, "the summary is the mean over seeds")
    T.ok(a ~= b, "the two seeds are different runs", ("%g %g"):format(a, b))
    -- same FLOP budget: steps x bytes x FLOPs per byte agree within the rounding of steps
    local budget = f:read("/settings/budget_flops")
    local within = true
    for _, sc in ipairs(schemes) do
        local steps = f:read("/points/" .. sc .. "-s1/steps")
        local spent = f:read("/points/" .. sc .. "-s1/train_flops")
        -- measured patch sizes differ a little from the expected ones the steps were planned with
        if math.abs(spent / budget - 1) > 1.5 / steps + 0.15 then within = false; T.diag(("%s: %.3g vs %.3g"):format(sc, spent, budget)) end
    end
    T.ok(within, "every model spent about the same training FLOPs")
    -- the validation bytes are the same for every model
    local vb = {}
    for _, sc in ipairs(schemes) do vb[#vb + 1] = json.decode(U.read(cmp .. "/" .. sc .. "-s1/result.json")).val_bytes end
    local same = true
    for i = 2, #vb do same = same and vb[i] == vb[1] end
    T.ok(same and vb[1] > 0, "every model is validated on the same bytes", table.concat(vb, " "))
    f:close()
    T.ok(U.read(cmp .. "/entropy-s1/config.json"):find("entropy-model-s1/checkpoint.h5", 1, true)
         and U.read(cmp .. "/entropy-s2/config.json"):find("entropy-model-s2/checkpoint.h5", 1, true),
         "the entropy schemes use the sweep's own entropy model, one per seed")
end
local stamp = blt.hash_file(cmp .. "/fixed-s1/checkpoint.h5")
rc, out = sh(("%s experiments/compare_patching.lua %s seeds=1,2 out=%s"):format(bin, base, q(cmp)))
T.ok(rc == 0 and out:find(("0 points run, %d skipped"):format(2 * #schemes + 2), 1, true), -- 2 seeds, an entropy model each
     "a second run skips every finished point", out:sub(-600))
T.is(blt.hash_file(cmp .. "/fixed-s1/checkpoint.h5"), stamp, "and leaves their files alone")
rc, out = sh(("%s experiments/compare_patching.lua %s seeds=1,2 out=%s target=6"):format(bin, base, q(cmp)))
T.ok(rc ~= 0 and out:find("other settings", 1, true) and out:find("patching.size=6", 1, true),
     "a finished point asked for with other settings is refused, naming the key", out:sub(-600))

-- ranks=2: every point data parallel under mpirun, the same results as one process
-- (not under the sanitizers: Open MPI's own allocations show as leaks, as in test_mpi)
if os.execute("command -v mpirun >/dev/null 2>&1") and require("blt.core").dist_info().compiled
    and not os.getenv("BLT_SANITIZE") then
    local cmpm = dir .. "/cmp-mpi"
    rc, out = sh(("OMPI_MCA_rmaps_base_oversubscribe=1 timeout 120 %s experiments/compare_patching.lua %s schemes=bytelm ranks=2 out=%s")
                 :format(bin, base, q(cmpm)))
    local r2 = rc == 0 and json.decode(U.read(cmpm .. "/bytelm-s1/result.json") or "{}") or {}
    local r1 = json.decode(U.read(cmp .. "/bytelm-s1/result.json"))
    T.ok(rc == 0 and r2.world_size == 2, "ranks=2 runs each point on 2 processes", out:sub(-1500))
    T.ok(r2.val_bpb and math.abs(r2.val_bpb - r1.val_bpb) < 1e-4 * r1.val_bpb,
         "with the same validation bits per byte as one process", ("%s vs %s"):format(tostring(r2.val_bpb), tostring(r1.val_bpb)))
else
    T.ok(true, "# SKIP mpirun or an MPI build is missing, or sanitizers: ranks=2 not tested")
    T.ok(true, "# SKIP mpirun or an MPI build is missing, or sanitizers")
end

-- a stopped point resumes from its checkpoint
local cmp2 = dir .. "/cmp2"
rc, out = sh(("%s experiments/compare_patching.lua budget=smoke data.path=%s schemes=fixed,bytelm out=%s 'args.all=train.threads=1 train.stop_at=3'")
    :format(bin, q(corpus), q(cmp2)))
T.ok(rc == 0 and out:find("fixed-s1 stopped early", 1, true), "a point stopped by train.stop_at is reported as not finished", out:sub(-800))
T.is(json.decode(U.read(cmp2 .. "/fixed-s1/result.json")).step, 3, "it stopped at step 3 with a checkpoint")
rc, out = sh(("%s experiments/compare_patching.lua %s schemes=fixed,bytelm out=%s"):format(bin, base, q(cmp2)))
T.ok(rc == 0 and out:find("fixed-s1 resumes from its checkpoint", 1, true), "the next run resumes it", out:sub(-800))
do
    local r = json.decode(U.read(cmp2 .. "/fixed-s1/result.json"))
    T.ok(r.exit_reason == "finished" and r.resumed_from and r.step > 3, "and finishes it", json.encode(r))
end

-- bad keys and values
rc, out = sh(("%s experiments/compare_patching.lua budgte=small"):format(bin))
T.ok(rc == 2 and out:find("budget", 1, true), "a mistyped key is refused with the closest key suggested", out)
rc, out = sh(("%s experiments/compare_patching.lua schemes=fixed,blob"):format(bin))
T.ok(rc == 2 and out:find("blob", 1, true), "an unknown scheme is refused", out)
rc, out = sh(("%s experiments/compare_patching.lua seeds=1,x"):format(bin))
T.ok(rc == 2 and out:find("seeds", 1, true), "a bad seed list is refused", out)

-- ---- scaling ----
local sc = dir .. "/scaling"
t0 = blt.now()
rc, out = sh(("%s experiments/scaling.lua %s schemes=bpe,bytelm,entropy:4,entropy:6 out=%s"):format(bin, base, q(sc)))
T.is(rc, 0, "scaling budget=smoke finishes", out:sub(-3000))
T.ok(blt.now() - t0 < LIMIT, ("in under %d s (%.1f s)"):format(LIMIT, blt.now() - t0))
do
    local f = h5(sc .. "/results.h5")
    T.is(f:attr("experiment"), "scaling", "results.h5 names its experiment")
    local names = f:list("/compute_optimal/points") or {}
    T.is(#names, 8, "compute-optimal: 4 schemes x 2 sizes", table.concat(names, " "))
    local fits_ok = true
    for _, s in ipairs {"bpe", "bytelm", "entropy:4", "entropy:6"} do
        for _, d in ipairs {"a", "b", "r2"} do
            if not has(f, "/compute_optimal/fits/" .. s .. "/" .. d) then fits_ok = false end
        end
    end
    T.ok(fits_ok, "a power-law fit per scheme")
    local fi = f:list("/fixed_inference/points") or {}
    T.is(#fi, 4, "fixed inference: one model per scheme", table.concat(fi, " "))
    local marked = true
    for _, id in ipairs(fi) do
        local g = "/fixed_inference/points/" .. id
        if not (has(f, g .. "/compute_optimal_bpb") and has(f, g .. "/curve/val_bpb")) then marked = false end
        -- trained past the compute-optimal point: the curve goes on after it
        local steps = f:read(g .. "/curve/step")
        local co = f:attr("compute_optimal_step", g) or (has(f, g .. "/compute_optimal_step") and f:read(g .. "/compute_optimal_step"))
        if type(steps) ~= "table" or not co or steps[#steps] <= co then marked = false end
    end
    T.ok(marked, "each fixed-inference model is validated at its compute-optimal point and trained past it")
    f:close()
end
T.ok(out:find("order at the compute-optimal points:", 1, true) and out:find("fits, bpb = a * FLOPs^-b", 1, true),
     "it prints the fits and the order of the schemes")
rc, out = sh(("%s experiments/scaling.lua %s schemes=bpe,bytelm,entropy:4,entropy:6 out=%s"):format(bin, base, q(sc)))
T.ok(rc == 0 and out:find("0 points run, 13 skipped", 1, true), "a resumed sweep skips every finished point", out:sub(-600))
rc, out = sh(("%s experiments/scaling.lua budget=small plan=true data.path=%s out=%s"):format(bin, q(corpus), q(dir .. "/plan")))
T.ok(rc == 0 and out:find("plan: co%-entropy%-p8%-64x2%-s1%s+%d+ steps") and out:find("plan: fi%-bpe%-96x2")
     and out:find("nothing was trained", 1, true) and not U.read(dir .. "/plan/results.h5"),
     "plan=true lists every point with its steps and FLOPs and trains nothing", out:sub(-1500))
rc, out = sh(("%s experiments/scaling.lua schemes=entropy:0.5"):format(bin))
T.ok(rc == 2 and out:find("patch size", 1, true), "a bad patch size is refused", out)
rc, out = sh(("%s experiments/scaling.lua sizes=100x2"):format(bin))
T.ok(rc == 2 and out:find("WIDTHxLAYERS", 1, true), "a bad size is refused", out)

-- ---- the demo (make demo), at the smoke budget ----
local demo = dir .. "/demo"
local demo_cmd = ("%s experiments/demo.lua budget=smoke steps=6 entropy_steps=10 eval_bytes=2048 sample=40 data.path=%s "
    .. "args.all=train.threads=1 out=%s"):format(bin, q(corpus), q(demo))
rc, out = sh(demo_cmd)
T.is(rc, 0, "the demo finishes", out:sub(-3000))
T.ok(out:find("\nBLT %(entropy%)%s+[%d.]+M%s+[%d.]+%s+[%d.]+%s+[%d.]+%s+%d+%s+%d+%s+[%d.e+]+%s+%d%.%d%d%d%d")
     and out:find("\nByteLM%s+[%d.]+M%s+1%.00"), "it prints bits per byte, patch size and FLOPs of the BLT beside a ByteLM", out:sub(-3000))
T.ok(out:find("How the BLT cuts a sentence", 1, true) and out:find("A sample from the BLT", 1, true),
     "it shows the patches of a sentence and a sample")
local files_ok = true
for _, f in ipairs {"entropy-model/checkpoint.h5", "blt-entropy/checkpoint.h5", "blt-entropy/metrics.h5",
                    "bytelm/checkpoint.h5", "bytelm/metrics.h5"} do
    if not U.read(demo .. "/" .. f) then files_ok = false; T.diag("missing " .. f) end
end
T.ok(files_ok, "it writes checkpoints and metrics (HDF5) for each run")
if require("blt.plot").available() then
    T.ok(U.read(demo .. "/compare.png") and U.read(demo .. "/entropy.png") and U.read(demo .. "/blt-entropy/loss.png"),
         "and PNGs: the comparison, the entropy figure, the loss curves")
else
    T.ok(true, "# SKIP gnuplot is missing: no PNGs")
end
do
    local a = json.decode(U.read(demo .. "/blt-entropy/result.json"))
    local b = json.decode(U.read(demo .. "/bytelm/result.json"))
    T.ok(a.val_bytes == b.val_bytes and a.val_bytes > 0, "both models are validated on the same bytes")
end
rc, out = sh(demo_cmd)
T.ok(rc == 0 and out:find("blt-entropy is done", 1, true), "a second demo reuses the finished runs", out:sub(-800))

U.cleanup(dir)
T.done()
