package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local U = require "testutil"
local blt = require "blt"
local json = require "blt.json"
local experiment = require "blt.experiment"
local models = require "blt.models"

-- The studies' protocol (docs/experiments.md, "Protocol"): compute-optimal data by
-- tokens_per_param, the learning-rate rule and its search, an entropy model per seed,
-- every budget for every kind, plan's expected times, paired differences, bootstrap
-- intervals of fits and crossings. Generated over budgets, kinds, sizes and widths.

local bin = os.getenv("BLT_BIN") or "./blt"
local dir = U.tmpdir()
local q, sh = U.q, U.sh
local corpus = U.corpus(dir .. "/corpus.txt", 200000)

-- ---- every budget, for both studies and every kind that has presets ----
do
    local cases, bad = 0, {}
    for _, name in ipairs(experiment.BUDGETS) do
        for _, which in ipairs {"compare", "scaling"} do
            local P = which == "compare" and experiment.preset(name) or experiment.scaling_preset(name)
            cases = cases + 1
            if not (experiment.seed_list_rule(P.seeds) == nil and type(P.tokens_per_param) == "number"
                    and experiment.lr_grid_rule(P.lr_grid) == nil and P.entropy and P.batch and P.seq_len) then
                bad[#bad + 1] = ("%s %s: seeds/tokens_per_param/lr_grid/entropy missing"):format(which, name)
            end
            for _, k in ipairs(models.kinds()) do
                local okm, M = pcall(models.get, k)
                if okm and M.preset_key and M.presets and M.presets[which] then
                    cases = cases + 1
                    if not P[M.preset_key] then bad[#bad + 1] = ("%s %s: no part for kind %s"):format(which, name, k) end
                end
            end
        end
    end
    T.ok(cases >= 16 and #bad == 0, ("every budget has seeds, a data ratio, an lr grid and every kind's part (%d cases)"):format(cases),
         table.concat(bad, "\n"))
    local seeds = {}
    for _, name in ipairs {"medium", "small", "full"} do seeds[#seeds + 1] = experiment.preset(name).seeds end
    T.is(table.concat(seeds, " "), "1,2,3 1,2,3 1,2,3", "3 seeds by default from medium up")
    T.is(experiment.preset("small").tokens_per_param, 20, "20 tokens per parameter at small")
end

-- ---- latent parameters and the compute-optimal data (by hand) ----
do
    local cases, bad = 0, {}
    for _, w in ipairs {16, 24, 32, 64, 96, 128, 256} do
        for _, l in ipairs {1, 2, 4} do
            for _, mo in ipairs {16, 32, 64} do
                -- SwiGLU hidden: 8w/3 rounded up to a multiple of mo; a block: q, k, v, o (4 w^2),
                -- three FFN matrices (3 w h), two norms (2 w)
                local h = math.ceil(math.floor(8 * w / 3) / mo) * mo
                local want = l * (4 * w * w + 3 * w * h + 2 * w)
                cases = cases + 1
                if experiment.latent_params(w, l, mo) ~= want then
                    bad[#bad + 1] = ("%dx%d/%d: %d vs %d"):format(w, l, mo, experiment.latent_params(w, l, mo), want)
                end
                local P = {batch = 8, seq_len = 128, bpe = {model = {multiple_of = mo}}}
                local steps, bytes, n = experiment.optimal(P, w, l, 20, 2.5)
                if n ~= want or math.abs(bytes - 20 * want * 2.5) > 1e-6 or steps ~= math.max(1, math.floor(bytes / 1024 + 0.5)) then
                    bad[#bad + 1] = ("%dx%d/%d: optimal %d steps %g bytes"):format(w, l, mo, steps, bytes)
                end
            end
        end
    end
    T.ok(cases == 63 and #bad == 0, ("latent parameters and compute-optimal bytes = tokens x params x bytes/token (%d cases)")
         :format(cases), table.concat(bad, "\n"))
end

-- ---- the learning-rate rule: 0.04 x 32 / width within [3e-4, 0.1] ----
do
    local bad = {}
    for w = 8, 2048, 8 do
        local want = math.min(0.1, math.max(3e-4, 0.04 * 32 / w))
        if math.abs(experiment.lr_rule(w) - want) > 1e-15 then bad[#bad + 1] = ("width %d: %g vs %g"):format(w, experiment.lr_rule(w), want) end
    end
    T.ok(#bad == 0, "lr_rule(width) = 0.04 * 32 / width, clamped (256 widths)", table.concat(bad, "\n"))
    -- the width the rule reads: the widest transformer (a BLT's or MegaByte's local model when wider)
    local cases, wbad = 0, {}
    for _, name in ipairs(experiment.BUDGETS) do
        local P = experiment.preset(name)
        for _, word in ipairs {"fixed", "bytelm", "megabyte"} do
            local ok, spec = pcall(experiment.model_point, word, P, nil, nil, {target = 4})
            if ok and not spec.skip then
                local m = spec.run_cfg.model
                local latent = m.global and m.global.dim or m.dim
                cases = cases + 1
                if experiment.lr_width(spec) ~= math.max(latent, m.dim) then
                    wbad[#wbad + 1] = ("%s %s: %s vs max(%d, %d)"):format(name, word, tostring(experiment.lr_width(spec)), latent, m.dim)
                end
            end
        end
    end
    T.ok(cases >= 8 and #wbad == 0, ("lr_width: the widest of the latent and local models (%d cases)"):format(cases),
         table.concat(wbad, "\n"))
    T.ok(experiment.lr_grid_rule("0.5,1,2") == nil and experiment.lr_grid_rule("0") ~= nil and experiment.lr_grid_rule("1,1.0") ~= nil,
         "lr_grid: positive multipliers, none twice")
end

-- ---- crossings: lines that cross at a known FLOPs (generated) ----
do
    local cases, bad = 0, {}
    for _, xc in ipairs {3e9, 1e10, 4.5e10} do
        for _, slope in ipairs {0.05, 0.3} do
            -- a: y = 3 - slope * log10(x / xc); b: flat at 3, on other grids; they meet at xc
            local a, b = {x = {}, y = {}}, {x = {}, y = {}}
            for k = 0, 10 do
                local x = 1e9 * 10 ^ (k / 5)
                a.x[#a.x + 1], a.y[#a.y + 1] = x, 3 - slope * math.log(x / xc, 10)
            end
            for k = 0, 7 do b.x[#b.x + 1], b.y[#b.y + 1] = 1.3e9 * 10 ^ (k / 4), 3 end
            local got = experiment.crossing(a, b)
            cases = cases + 1
            if not got or math.abs(math.log(got / xc)) > 1e-9 then bad[#bad + 1] = ("xc %g slope %g: %s"):format(xc, slope, tostring(got)) end
        end
    end
    T.ok(cases == 6 and #bad == 0, ("crossing: the FLOPs where two curves meet (%d cases)"):format(cases), table.concat(bad, "\n"))
    T.is(experiment.crossing({x = {1, 10}, y = {2, 1}}, {x = {1, 10}, y = {3, 2}}), nil, "curves that do not meet: no crossing")
    -- with seeds: every seed's curves cross at 1e10 -> the interval is that point
    local ca, cb = {}, {}
    for seed = 1, 3 do
        ca[seed] = {flops = {1e9, 1e10, 1e11}, bpb = {3 + seed * 0.01, 2 + seed * 0.01, 1 + seed * 0.01}}
        cb[seed] = {flops = {1e9, 1e10, 1e11}, bpb = {2.5 + seed * 0.01, 2 + seed * 0.01, 1.5 + seed * 0.01}}
    end
    local c = experiment.crossing_with_interval(ca, cb, {1, 2, 3})
    T.ok(c.flops and math.abs(c.flops / 1e10 - 1) < 1e-9 and c.frac == 1 and math.abs(c.lo / 1e10 - 1) < 1e-9
         and math.abs(c.hi / 1e10 - 1) < 1e-9, "crossing_with_interval: a crossing every seed agrees on", json.encode(c))
end

-- ---- fits with a bootstrap interval over seeds: exact power laws per seed ----
do
    local recs = {}
    local bs = {[1] = 0.10, [2] = 0.12, [3] = 0.14}
    for _, x in ipairs {1e9, 1e10, 1e11} do
        recs[x] = {}
        for seed, b in pairs(bs) do recs[x][seed] = {train_flops = x, val_bpb = 40 * x ^ -b} end
    end
    local f = experiment.fit_with_interval(recs, {1, 2, 3})
    T.ok(f and f.n == 3 and f.seeds == 3 and f.b_lo and f.b_lo <= f.b and f.b <= f.b_hi and f.b_lo >= 0.1 - 1e-9
         and f.b_hi <= 0.14 + 1e-9 and f.b_hi > f.b_lo, "fit_with_interval: b within [min, max] of the seeds' exponents",
         f and ("%g [%g, %g]"):format(f.b, f.b_lo, f.b_hi))
    local one = experiment.fit_with_interval(recs, {2})
    T.ok(one and math.abs(one.b - 0.12) < 1e-9 and one.b_lo == nil, "one seed: its exponent, no interval")
end

-- ---- paired differences from records ----
do
    local records = {}
    local vals = {bpe = {2.0, 2.1, 2.05}, fixed = {2.2, 2.3, 2.26}, space = {2.01, 2.05, 2.1}}
    for sc, v in pairs(vals) do for seed = 1, 3 do records[#records + 1] = {scheme = sc, seed = seed, val_bpb = v[seed]} end end
    local rows = experiment.paired_differences(records, {"bpe", "fixed", "space"}, "bpe")
    local by = {}
    for _, r in ipairs(rows) do by[r.scheme] = r end
    T.ok(#rows == 2 and by.fixed.verdict == "higher" and by.fixed.n == 3 and math.abs(by.fixed.mean - 0.2033333333333333) < 1e-12
         and by.fixed.per_seed == "s1 +0.2000, s2 +0.2000, s3 +0.2100", "fixed - bpe: called higher, each seed printed",
         by.fixed and by.fixed.per_seed)
    T.ok(by.space.verdict == "not resolved", "space - bpe: differences of both signs are not called", by.space.interval)
end

-- ---- compare_patching end to end at smoke: lr search, an entropy model per seed, differences ----
local cmp = dir .. "/cmp"
local rc, out = sh(("%s experiments/compare_patching.lua budget=smoke data.path=%s args.all=train.threads=1 "
    .. "schemes=entropy,bytelm seeds=1,2 lr_grid=0.5,1 reference=bytelm plot=false out=%s"):format(bin, q(corpus), q(cmp)))
T.is(rc, 0, "compare_patching with an lr grid and two seeds finishes", out:sub(-2000))
do
    local f = blt.h5_open(cmp .. "/results.h5")
    local ok, why = true, {}
    for _, sc in ipairs {"entropy", "bytelm"} do
        local best, best_m
        for _, m in ipairs {0.5, 1} do
            local g = ("/lr_search/%s-lr%g-s1"):format(sc, m)
            local v = f:exists(g .. "/val_bpb") and f:read(g .. "/val_bpb")
            if not v then ok = false; why[#why + 1] = "missing " .. g
            elseif not best or v < best then best, best_m = v, m end
        end
        -- seed 2 trained at the chosen multiplier's rate; seed 1 is the chosen search run
        local chosen = best_m and f:read(("/lr_search/%s-lr%g-s1/chosen"):format(sc, best_m))
        local c2 = json.decode(U.read(("%s/%s-s2/config.json"):format(cmp, sc)) or "{}")
        local rate = best_m and f:read(("/lr_search/%s-lr%g-s1/lr"):format(sc, best_m))
        if chosen ~= 1 or not c2.train or math.abs(c2.train.lr - rate) > 1e-12 * rate then
            ok = false; why[#why + 1] = ("%s: chosen %s, seed 2 lr %s vs %s"):format(sc, tostring(chosen), tostring(c2.train and c2.train.lr), tostring(rate))
        end
    end
    T.ok(ok, "the search's runs are on disk, the lowest bits per byte is chosen, the other seeds train at its rate",
         table.concat(why, "; "))
    local d = "/differences/entropy"
    local diffs = f:exists(d .. "/diffs") and f:read(d .. "/diffs")
    local lo, hi, sig = f:read(d .. "/lo"), f:read(d .. "/hi"), f:read(d .. "/significant")
    T.ok(type(diffs) == "table" and #diffs == 2 and f:attr("reference", d) == "bytelm"
         and sig == ((lo > 0 or hi < 0) and 1 or 0), "results.h5: paired differences per seed, called only when the interval excludes 0")
    f:close()
    T.ok(U.read(cmp .. "/entropy-lr1-s1/config.json"):find("entropy-model-s1/checkpoint.h5", 1, true)
         and U.read(cmp .. "/entropy-s2/config.json"):find("entropy-model-s2/checkpoint.h5", 1, true)
         and blt.hash_file(cmp .. "/entropy-model-s1/checkpoint.h5") ~= blt.hash_file(cmp .. "/entropy-model-s2/checkpoint.h5"),
         "every seed trains its own entropy model")
    T.ok(out:find("± %d%.%d+ %(n=2%)") and out:find("Paired differences in val bpb against bytelm", 1, true)
         and out:find("s1 [+-]%d%.%d+, s2 [+-]%d%.%d+"), "the table shows mean ± se (n) and the differences seed by seed", out:sub(-1500))
end

-- ---- plan=true: every point with its expected time; the same data for every scheme of a size ----
rc, out = sh(("%s experiments/compare_patching.lua budget=medium plan=true plan_rate=1e10 data.path=%s out=%s")
    :format(bin, q(corpus), q(dir .. "/plan-c")))
T.ok(rc == 0 and out:find("plan: bpe%-s3%s+%S+%s+%d+ steps .* ~%d+ s at 1e%+10 FLOP/s") and out:find("compute-optimal data: 20 BPE tokens", 1, true)
     and out:find("nothing was trained", 1, true) and not U.read(dir .. "/plan-c/results.h5"),
     "compare plan: each point's expected time at the rate given, nothing trained", out:sub(-1200))
rc, out = sh(("%s experiments/scaling.lua budget=medium plan=true study=compute_optimal data.path=%s out=%s")
    :format(bin, q(corpus), q(dir .. "/plan-s")))
do
    local steps, n = {}, 0
    local same = rc == 0
    for id, st, rate in out:gmatch("plan: co%-[%w_.%-]-%-(%d+x%d+)%-s%d+%s+(%d+) steps.-~%d+ s at ([%d.e+]+) FLOP/s") do
        n = n + 1
        if steps[id] and steps[id] ~= st then same = false end
        steps[id] = st
        if not (tonumber(rate) > 0) then same = false end
    end
    T.ok(same and n == 36, ("scaling plan: a measured rate per point, the same steps for every scheme of a size (%d points)"):format(n),
         out:sub(-1500))
end

U.cleanup(dir)
T.done()
