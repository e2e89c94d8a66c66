-- The paper's two scaling studies at CPU scale, for a list of schemes and patch sizes.
--
--   ./blt experiments/scaling.lua                                 budget=small, 3 seeds
--   ./blt experiments/scaling.lua budget=medium study=compute_optimal   5-10 minutes on 2 cores
--   ./blt experiments/scaling.lua budget=smoke                    about a minute (the tests)
--   ./blt experiments/scaling.lua schemes=bpe,entropy:4,entropy:6,entropy:8 sizes=64x2,128x3
--   ./blt experiments/scaling.lua study=fixed_inference overtrain=4
--   ./blt experiments/scaling.lua budget=small plan=true          every point and its expected time
--
-- schemes: BLT schemes with a patch size (entropy:6 = entropy patching calibrated to
-- 6 bytes per patch; fixed:4 = 4-byte patches; space), and the baselines bpe and
-- bytelm, and MegaByte (megabyte:8 = 8-byte patches). sizes: the global (latent)
-- model's WIDTHxLAYERS (MegaByte's global model too; bpe and bytelm take the same width
-- and depth for the whole model).
--
-- compute_optimal: every scheme at every size, trained on the size's compute-optimal
-- data: tokens_per_param BPE tokens per latent parameter, in bytes through the measured
-- bytes per token, the same bytes for every model of a size (docs/experiments.md,
-- "Protocol"). Prints bits per byte (mean ± standard error over seeds) against
-- training FLOPs, fits bpb = a * FLOPs^-b per scheme with a bootstrap interval of b over
-- seeds, and the paired differences against the first scheme at every size;
-- compute_optimal.png.
--
-- fixed_inference: one model per scheme whose inference FLOPs per byte match the
-- first scheme's at infer_size (a larger patch pays for a wider global model; the
-- baselines' width is chosen the same way), each trained overtrain times its
-- compute-optimal steps with validation along the way; fixed_inference.png shows the
-- curves with each model's compute-optimal point marked; where each scheme's mean curve
-- crosses the first scheme's is printed with a bootstrap interval over seeds.
--
-- Every seed trains its own entropy model. Resumable (blt.sweep): a finished point is
-- never recomputed, an interrupted one resumes from its checkpoint. Results in
-- out/results.h5.
local config = require "blt.config"
local core = require "blt.core"
local data = require "blt.data"
local flops = require "blt.flops"
local sweep = require "blt.sweep"
local experiment = require "blt.experiment"

local SCHEMES = experiment.sweep_words() -- the BLT schemes, then each kind's baseline word

local scheme_items_rule = experiment.list_of("scheme", function(w)
    if experiment.is_file_word(w) then return experiment.scheme_file_label(w) end
    local name, size = w:match("^([%w_]+):?([%d.]*)$")
    local known = false
    for _, s in ipairs(SCHEMES) do known = known or s == name end
    if not known then return nil, ("is not a scheme (schemes: %s, with :PATCH_SIZE for fixed and the entropy schemes)")
                                  :format(table.concat(SCHEMES, ", ")) .. ", or file:PATH" end
    if size ~= "" and not (tonumber(size) and tonumber(size) >= 1 and tonumber(size) <= 64) then
        return nil, "has a patch size that is not a number in [1, 64]"
    end
    return size ~= "" and ("%s:%g"):format(name, tonumber(size)) or name
end, "bpe")

local cfg = experiment.script({
    name = "scaling", args = arg,
    usage = "usage: ./blt experiments/scaling.lua [budget=smoke|medium|small|full] [study=both|compute_optimal|fixed_inference] [key=value ...]",
    defaults = {
        budget = "small",
        study = "both",
        schemes = "bpe,entropy:4,entropy:6,entropy:8",
        scheme_options = "",
        target = 4.0,
        sizes = config.OPTIONAL,
        tokens_per_param = config.OPTIONAL,
        infer_size = config.OPTIONAL,
        overtrain = 0,
        seeds = config.OPTIONAL,
        lr_grid = config.OPTIONAL,
        out = config.OPTIONAL,
        plot = true,
        plan = false,
        plan_rate = 0.0,
    },
    docs = {
        budget = "local model, batch, sizes and data ratio: smoke (tests), medium (5-10 min a study on 2 cores), small, full",
        study = "which study: both, compute_optimal or fixed_inference",
        schemes = "comma-separated: fixed:P, space, entropy:P, entropy_delta:P, "
            .. table.concat(SCHEMES, ", ", 5) .. " (P: bytes per patch), file:PATH (a scheme file) or model:PATH (a kind file)",
        scheme_options = experiment.SCHEME_OPTIONS_DOC,
        target = "patch size of a scheme given without :P",
        sizes = "global WIDTHxLAYERS list of the compute-optimal sweep (unset: the budget's)",
        tokens_per_param = "compute-optimal BPE tokens per latent parameter (unset: the budget's, 20)",
        infer_size = "WIDTHxLAYERS of the first scheme's model that sets the fixed inference budget (unset: the budget's)",
        overtrain = "fixed_inference: train this many times the compute-optimal steps (0: the budget's)",
        seeds = "comma-separated seeds of every point (unset: the budget's, 1 at smoke, else 1,2,3)",
        lr_grid = "multipliers of the learning-rate rule tried on the first seed, the best kept (unset: the budget's)",
        out = "sweep folder (unset: runs/scaling-<budget>)",
        plot = "write compute_optimal.png and fixed_inference.png",
        plan = "print every point (model, steps, planned training FLOPs, expected time) and stop before training any",
        plan_rate = "plan=true: training FLOP/s to assume (0: measure a few steps of each size now)",
    },
    rules = {
        budget = experiment.BUDGETS, study = {"both", "compute_optimal", "fixed_inference"},
        schemes = scheme_items_rule, scheme_options = experiment.scheme_options_rule, target = "[1, 64]", sizes = experiment.size_list_rule,
        tokens_per_param = "> 0", infer_size = experiment.size_rule, overtrain = ">= 0",
        seeds = experiment.seed_list_rule, lr_grid = experiment.lr_grid_rule, plan_rate = ">= 0",
    },
    studies = true, -- data.path: the studies corpus by default
}, experiment.families())
if not cfg then return end
local okso, scheme_opts = pcall(experiment.scheme_options, cfg.scheme_options, experiment.words(cfg.schemes))
if not okso then require("blt.util").die("scaling", scheme_opts) end

local stats = require "blt.stats"
local P = experiment.scaling_preset(cfg.budget)
local out = cfg.out or ("runs/scaling-" .. cfg.budget)
local sizes = experiment.words(cfg.sizes or P.sizes)
local tpp = cfg.tokens_per_param or P.tokens_per_param
local overtrain = cfg.overtrain > 0 and cfg.overtrain or P.overtrain
local infer_w, infer_l = experiment.size(cfg.infer_size or P.infer_size)
local seeds = experiment.ints(cfg.seeds or P.seeds)
local grid = {}
for _, w in ipairs(experiment.words(cfg.lr_grid or P.lr_grid)) do grid[#grid + 1] = tonumber(w) end
local T0 = core.now()
io.stderr:write(("scaling: config:\n%s\n"):format(config.describe(cfg)))

-- scheme items: {label = "entropy:6", scheme = "entropy", target = 6}
local items = {}
for _, w in ipairs(experiment.words(cfg.schemes)) do
    local name, size = w:match("^([%w_]+):?([%d.]*)$")
    if experiment.is_file_word(w) then name, size = w, "" end -- a scheme or kind file: no :P, labelled by its name
    local kind_m = experiment.baseline(name) -- a kind that takes a patch size (M.sweep.patch_size: megabyte)
    local has_size = name == "fixed" or name == "entropy" or name == "entropy_delta" or (kind_m and kind_m.sweep.patch_size) or false
    local target = has_size and (tonumber(size) or cfg.target) or nil
    local plain = experiment.scheme_file_label(name) or name
    if plain ~= name then target = cfg.target end -- a scheme file with an option to calibrate: to target
    items[#items + 1] = {label = has_size and ("%s:%g"):format(name, target) or plain, scheme = name, target = target,
                         tag = has_size and ("%s-p%g"):format(name, target) or plain}
    for j = 1, #items - 1 do -- "entropy" is "entropy:4" at target=4: one point, trained twice
        if items[j].label == items[#items].label then
            io.stderr:write(("scaling: config: schemes = %s: lists the scheme %s twice (a scheme without :P takes target = %g)\n")
                :format(cfg.schemes, items[j].label, cfg.target))
            os.exit(2)
        end
    end
end

cfg.data.path = cfg.data.path or data.studies_corpus() -- the studies' default corpus (docs/data.md)
local corpus = data.open(cfg.data.path, {val_fraction = cfg.data.val_fraction})
local s = sweep.new {dir = out, name = "scaling", ranks = cfg.ranks, hostfile = cfg.hostfile}
local common = experiment.common_args(P, cfg)
local bytes_per_step = P.batch * P.seq_len
local words = {}
for _, it in ipairs(items) do words[#words + 1] = it.scheme end
local ents = experiment.entropy_models(s, P, cfg, common, seeds, words, cfg.plan)
local bpt = experiment.bytes_per_token(corpus, P)
if not bpt then require("blt.util").die("scaling", "tokens_per_param needs the bpe_lm kind to measure bytes per token") end

local function spec_of(it, w, l, heads, seed)
    return experiment.model_point(it.scheme, P, corpus, ents and ents[seed or seeds[1]],
                                  {target = it.target, size = {w, l}, heads = heads,
                                   options = scheme_opts[it.label]})
end

-- steps at the compute-optimal data of a spec's latent size (the same for every scheme of a size)
local function optimal_steps(spec)
    local w, l = experiment.latent_size(spec)
    local steps, _, n = experiment.optimal(P, w, l, tpp, bpt)
    return steps, n
end

local planned, planned_s = 0, 0
-- the runner of a point for experiment.train_seeds: trains it (or prints its plan)
local function runner(it, eval_every)
    return function(p)
        if eval_every then p.args["eval.every"], p.args["out.checkpoint_every"] = eval_every, eval_every end
        if cfg.plan then
            local w, l = experiment.latent_size(p.spec)
            local rate = cfg.plan_rate > 0 and cfg.plan_rate or experiment.measured_rate(P, w, l)
            local evals = math.max(1, p.steps // p.args["eval.every"])
            local sec, f = experiment.expected_seconds(p.spec, p.steps, P, evals, rate)
            planned, planned_s = planned + f, planned_s + sec
            print(("  plan: %-32s %6d steps  lr %.3g  %.3g training FLOPs (%.2f MFLOP/byte)  ~%.0f s at %.3g FLOP/s")
                :format(p.id, p.steps, p.args["train.lr"], f, p.spec.train_fpb / 1e6, sec, rate))
            return nil
        end
        local r = s:run(p)
        r.scheme, r.seed, r.spec = it.label, p.seed, p.spec
        experiment.measure(r, P)
        return r
    end
end

local sections, attrs = {}, {experiment = "scaling", budget = cfg.budget, schemes = cfg.schemes,
                             seeds = table.concat(seeds, ","), tokens_per_param = tpp, bytes_per_token = bpt,
                             batch = P.batch, seq_len = P.seq_len, lr_grid = cfg.lr_grid or P.lr_grid}
local plot = require "blt.plot"
local MEAN_COLS = {{"scheme", "scheme"}, {"size", "global"}, {"params", "params", function(v) return ("%.2fM"):format(v / 1e6) end},
    {"latent", "latent", function(v) return ("%.3fM"):format(v / 1e6) end}, {"patch", "patch", "%.2f"},
    {"steps", "steps", "%d"}, {"lr", "lr", "%.3g"}, {"flops", "train FLOPs", "%.3g"}, {"bpb_text", "val bpb (mean ± se, n)"},
    {"wall", "wall s", "%.0f"}}

-- mean ± standard error over the seeds of a group of records
local function mean_text(rs, key)
    local xs = {}
    for _, r in ipairs(rs) do if type(r[key]) == "number" and not r.failed then xs[#xs + 1] = r[key] end end
    if #xs == 0 then return "failed", nil end
    return stats.format_mean(xs), stats.mean(xs)
end

-- ---------------------------------------------------------------- compute-optimal
if cfg.study ~= "fixed_inference" then
    local records, fits, searches, diffs = {}, {}, {}, {}
    local by = {} -- by[label][size][seed] = record
    print(("\n== Compute-optimal: sizes %s at %g BPE tokens per latent parameter (%.2f bytes per token), seeds %s ==")
          :format(table.concat(sizes, ","), tpp, bpt, table.concat(seeds, ",")))
    for _, it in ipairs(items) do
        local spec0 = spec_of(it, experiment.size(sizes[1]))
        if spec0.skip then
            io.stderr:write(("scaling: %s skipped: %s\n"):format(it.label, spec0.skip))
        else
            by[it.label] = {}
            for _, sz in ipairs(sizes) do
                local w, l = experiment.size(sz)
                local spec = spec_of(it, w, l)
                local steps, n = optimal_steps(spec)
                local id = ("co-%s-%s"):format(it.tag, sz)
                io.stderr:write(("scaling: %s: %s at %s, %d latent parameters, %d steps\n"):format(id, it.label, sz, n, steps))
                local recs, search = experiment.train_seeds(runner(it), {
                    id = id, spec_of = function(seed) return spec_of(it, w, l, nil, seed) end, steps = steps, seeds = seeds,
                    grid = grid, extra = experiment.extra(cfg, spec.family),
                    args_of = function(sp, seed) return experiment.run_args(common, sp, steps, seed, P, P.evals) end})
                by[it.label][sz] = {}
                for _, r in ipairs(recs) do
                    r.size, r.scaled_params = sz, n
                    r.extra = {size = sz, latent_params = n}
                    records[#records + 1] = r
                    by[it.label][sz][r.seed] = r
                end
                for _, row in ipairs(search) do row.point = id; searches[#searches + 1] = row end
            end
        end
    end
    if not cfg.plan then
        local rows = {}
        for _, it in ipairs(items) do
            for _, sz in ipairs(sizes) do
                local rs = {}
                for _, seed in ipairs(seeds) do rs[#rs + 1] = by[it.label] and by[it.label][sz] and by[it.label][sz][seed] end
                if #rs > 0 then
                    local text = mean_text(rs, "val_bpb")
                    local _, fl = mean_text(rs, "train_flops")
                    local _, wall = mean_text(rs, "wall")
                    rows[#rows + 1] = {scheme = it.label, size = sz, params = rs[1].params, latent = rs[1].scaled_params,
                                       patch = rs[1].mean_patch, steps = rs[1].steps, lr = rs[1].lr, flops = fl,
                                       bpb_text = text, wall = wall}
                end
            end
            if by[it.label] then fits[it.label] = experiment.fit_with_interval(by[it.label], seeds) end
        end
        print(sweep.table(rows, MEAN_COLS))
        print(("val bpb: mean ± standard error over seeds (n), on the same validation bytes for every model%s")
              :format(experiment.validation_note(records)))
        print("fits, bpb = a * FLOPs^-b on the mean over seeds of each size; b's 95% interval: percentile bootstrap over seeds:")
        for _, it in ipairs(items) do
            local f = fits[it.label]
            if f then
                print(("  %-16s a = %.4g  b = %.4f  %s  (r^2 %.3f over %d sizes, %d seeds)"):format(it.label, f.a, f.b,
                      f.b_lo and ("[%.4f, %.4f]"):format(f.b_lo, f.b_hi) or "(one seed: no interval)", f.r2, f.n, f.seeds))
            end
        end
        -- paired differences against the first scheme, size by size
        local ref = items[1].label
        for _, sz in ipairs(sizes) do
            local recs_sz, labels = {}, {}
            for _, it in ipairs(items) do
                labels[#labels + 1] = it.label
                for _, r in pairs(by[it.label] and by[it.label][sz] or {}) do recs_sz[#recs_sz + 1] = r end
            end
            local d = experiment.paired_differences(recs_sz, labels, ref)
            for _, row in ipairs(d) do row.at = sz; row.size = sz; diffs[#diffs + 1] = row end
            experiment.print_differences(d, ("Paired differences in val bpb at %s against %s, seed by seed:"):format(sz, ref))
        end
        local named = {}
        for _, row in ipairs(diffs) do named[#named + 1] = setmetatable({scheme = row.scheme .. "@" .. row.size}, {__index = row}) end
        sections[#sections + 1] = {prefix = "/compute_optimal", records = records, fits = fits, differences = named,
                                   lr_search = searches}
        if cfg.plot and plot.available() and #records > 0 then
            local series = {}
            for _, it in ipairs(items) do
                local xs, ys = {}, {}
                for _, r in ipairs(records) do
                    if r.scheme == it.label and r.val_bpb and r.train_flops then xs[#xs + 1], ys[#ys + 1] = r.train_flops, r.val_bpb end
                end
                local color = #series // 2 + 1 -- a scheme's points and its fit in one colour
                if #xs > 0 then series[#series + 1] = {name = it.label, x = xs, y = ys, style = "points pt 7 ps 1.5", color = color} end
                local f = fits[it.label]
                if f then
                    local lo, hi = math.huge, 0
                    for _, x in ipairs(f.xs) do lo, hi = math.min(lo, x), math.max(hi, x) end
                    local fx, fy = {}, {}
                    for k = 0, 20 do
                        local x = lo * (hi / lo) ^ (k / 20)
                        fx[#fx + 1], fy[#fy + 1] = x, f.a * x ^ -f.b
                    end
                    series[#series + 1] = {name = ("%s fit (b = %.3f)"):format(it.label, f.b), x = fx, y = fy, style = "lines",
                                           color = color, dash = 2}
                end
            end
            local png = plot.lines {path = out .. "/compute_optimal.png", logx = true, xlabel = "training FLOPs",
                                    ylabel = "validation bits per byte (every seed)", series = series,
                                    title = ("Compute-optimal sweep (%g tokens per latent parameter, %s budget)"):format(tpp, cfg.budget)}
            print("scaling: plot " .. png)
        end
    end
end

-- ---------------------------------------------------------------- fixed inference budget
if cfg.study ~= "compute_optimal" then
    print(("\n== Fixed inference budget: matched to %s at %dx%d, trained %gx past compute-optimal, seeds %s ==")
          :format(items[1].label, infer_w, infer_l, overtrain, table.concat(seeds, ",")))
    local ref = spec_of(items[1], infer_w, infer_l)
    if ref.skip then error("scaling: the first scheme sets the inference budget but cannot run: " .. ref.skip, 0) end
    local budget = ref.inference_fpb
    local records, by, searches = {}, {}, {}
    for _, it in ipairs(items) do
        -- the width whose inference FLOPs per byte are closest to the budget: infer_size's depth
        -- and heads, widths in steps of 2 x heads (even head sizes)
        local heads = experiment.heads_of(infer_w)
        local best, best_err, best_w
        for w = 2 * heads, 64 * infer_w, 2 * heads do
            local sp = spec_of(it, w, infer_l, heads)
            if sp.skip then best = sp break end
            local err = math.abs(math.log(sp.inference_fpb / budget))
            if not best_err or err < best_err then best, best_err, best_w = sp, err, w end
            if sp.inference_fpb > budget * 2 then break end
        end
        if not best.skip and best_err > math.log(1.25) then -- no width comes within 25% of the budget
            best = {skip = ("no width matches the inference budget %.3g FLOP/byte: the nearest (%dx%d) spends %.3g (at this "
                .. "scale a BLT's local and entropy models alone can cost more than the budget; put a BLT scheme first "
                .. "to set it)"):format(budget, best_w, infer_l, best.inference_fpb)}
        end
        if best.skip then
            print(("scaling: %s skipped: %s"):format(it.label, best.skip))
        else
            local w = best_w
            local co_steps, n = optimal_steps(best)
            local every = math.max(1, co_steps // 2)
            local steps = every * 2 * overtrain
            local id = ("fi-%s-%dx%d"):format(it.tag, w, infer_l)
            io.stderr:write(("scaling: %s: %s at %dx%d (inference %.3g FLOP/byte, budget %.3g), compute-optimal at step %d, %d steps\n")
                :format(id, it.label, w, infer_l, best.inference_fpb, budget, every * 2, steps))
            local recs, search = experiment.train_seeds(runner(it, every), {
                id = id, spec_of = function(seed) return spec_of(it, w, infer_l, heads, seed) end, steps = steps,
                seeds = seeds, grid = grid, extra = experiment.extra(cfg, best.family),
                args_of = function(sp, seed) return experiment.run_args(common, sp, steps, seed, P) end})
            by[it.label] = {}
            for _, r in ipairs(recs) do
                r.size, r.co_step, r.scaled_params = ("%dx%d"):format(w, infer_l), every * 2, n
                for i, st in ipairs(r.curve.step) do
                    if st == r.co_step then r.co_flops, r.co_bpb = r.curve.flops[i], r.curve.bpb[i] end
                end
                r.extra = {size = r.size, compute_optimal_step = r.co_step, compute_optimal_bpb = r.co_bpb,
                           compute_optimal_flops = r.co_flops, latent_params = n}
                records[#records + 1] = r
                by[it.label][r.seed] = r
            end
            for _, row in ipairs(search) do row.point = id; searches[#searches + 1] = row end
        end
    end
    if not cfg.plan then
        local rows = {}
        for _, it in ipairs(items) do
            local rs = {}
            for _, seed in ipairs(seeds) do rs[#rs + 1] = by[it.label] and by[it.label][seed] end
            if #rs > 0 then
                local co_text, co_mean = mean_text(rs, "co_bpb")
                local end_text, end_mean = mean_text(rs, "val_bpb")
                local _, inf = mean_text(rs, "inference_fpb")
                local _, fl = mean_text(rs, "train_flops")
                rows[#rows + 1] = {scheme = it.label, size = rs[1].size, patch = rs[1].mean_patch, inf = inf and inf / 1e6,
                                   co_text = co_text, end_text = end_text, co_bpb = co_mean, bpb = end_mean, flops = fl,
                                   steps = rs[1].steps, lr = rs[1].lr}
            end
        end
        print(sweep.table(rows, {{"scheme", "scheme"}, {"size", "global"}, {"patch", "patch", "%.2f"},
            {"inf", "infer MFLOP/B", "%.3f"}, {"steps", "steps", "%d"}, {"lr", "lr", "%.3g"},
            {"co_text", "bpb @ optimal (mean ± se, n)"}, {"end_text", "bpb @ end (mean ± se, n)"}, {"flops", "train FLOPs", "%.3g"}}))
        -- the order of the schemes (means over seeds) at each model's compute-optimal point and at the end
        local function order(key)
            local t = {}
            for _, r in ipairs(rows) do if r[key] then t[#t + 1] = r end end
            table.sort(t, function(a, b) return a[key] < b[key] end)
            local names = {}
            for _, r in ipairs(t) do names[#names + 1] = ("%s %.4f"):format(r.scheme, r[key]) end
            return table.concat(names, " < ")
        end
        print("order at the compute-optimal points: " .. order("co_bpb"))
        print("order at the end of training:        " .. order("bpb"))
        -- differences against the first scheme, seed by seed, at both points
        local labels = {}
        for _, it in ipairs(items) do labels[#labels + 1] = it.label end
        local diffs = {}
        for _, at in ipairs {{"co_bpb", "the compute-optimal point"}, {"val_bpb", "the end"}} do
            local d = experiment.paired_differences(records, labels, items[1].label, at[1])
            experiment.print_differences(d, ("Paired differences in bpb at %s against %s, seed by seed:"):format(at[2], items[1].label))
            for _, row in ipairs(d) do
                diffs[#diffs + 1] = setmetatable({scheme = row.scheme .. "@" .. at[1], at = at[1]}, {__index = row})
            end
        end
        -- where each scheme's mean curve crosses the first scheme's, with a bootstrap over seeds
        local crossovers = {}
        local ref_curves = {}
        for seed, r in pairs(by[items[1].label] or {}) do ref_curves[seed] = r.curve end
        print(("Crossings of the mean validation curves with %s's (FLOPs; 95%% percentile bootstrap over seeds):"):format(items[1].label))
        for _, it in ipairs(items) do
            if it.label ~= items[1].label and by[it.label] then
                local cs = {}
                for seed, r in pairs(by[it.label]) do cs[seed] = r.curve end
                local c = experiment.crossing_with_interval(cs, ref_curves, seeds)
                crossovers[it.label .. "-vs-" .. items[1].label] = c
                print(("  %-16s %s%s"):format(it.label, c.flops and ("crosses at %.3g FLOPs"):format(c.flops) or "does not cross",
                      c.frac and ((c.lo and ("; interval [%.3g, %.3g]"):format(c.lo, c.hi) or "") ..
                                  ("; %.0f%% of resamples cross"):format(100 * c.frac)) or " (one seed: no interval)"))
            end
        end
        sections[#sections + 1] = {prefix = "/fixed_inference", records = records, differences = diffs,
                                   crossovers = crossovers, lr_search = searches}
        attrs.infer_size = ("%dx%d"):format(infer_w, infer_l)
        attrs.inference_budget = budget
        attrs.overtrain = overtrain
        if cfg.plot and plot.available() and #records > 0 then
            local series, cx, cy = {}, {}, {}
            for _, r in ipairs(records) do
                series[#series + 1] = {name = ("%s (%s) s%d"):format(r.scheme, r.size, r.seed), x = r.curve.flops, y = r.curve.bpb,
                                       style = "linespoints"}
                if r.co_flops then cx[#cx + 1], cy[#cy + 1] = r.co_flops, r.co_bpb end
            end
            if #cx > 0 then series[#series + 1] = {name = "compute-optimal", x = cx, y = cy, style = "points pt 6 ps 3", color = "#000000"} end
            local png = plot.lines {path = out .. "/fixed_inference.png", logx = true, xlabel = "training FLOPs",
                                    ylabel = "validation bits per byte", series = series,
                                    title = ("Fixed inference budget (%.3g FLOP/byte), trained %gx past compute-optimal"):format(budget, overtrain)}
            print("scaling: plot " .. png)
        end
    end
end
corpus:close()
if cfg.plan then
    print(("scaling: planned %.3g training FLOPs, about %.0f s of training and validation (%s; the entropy models and "
        .. "start-up come on top; plan=true: nothing was trained)")
        :format(planned, planned_s, cfg.plan_rate > 0 and ("at %.3g FLOP/s"):format(cfg.plan_rate)
            or "at the training FLOP/s measured now for each size"))
    return
end

local h5 = out .. "/results.h5"
experiment.write_sections(h5, attrs, sections)
print(("scaling: results in %s"):format(h5))
print("scaling: report " .. require("blt.report").write(out, {sections = sections,
    title = ("scaling: %s budget, study %s, seeds %s"):format(cfg.budget, cfg.study, tostring(cfg.seeds or cfg.seed))}))
print(("%s; %.0f s in all"):format(s:summary(), core.now() - T0))
