-- Patching schemes side by side at one training-FLOP budget: one BLT per scheme
-- (fixed, space, entropy, entropy_delta), the ByteLM baseline, the BPE token
-- baseline and every other kind's baseline (MegaByte), on the same data with the same seeds.
--
--   ./blt experiments/compare_patching.lua budget=medium        5-10 minutes on 2 cores, 3 seeds
--   ./blt experiments/compare_patching.lua                      budget=small, 3 seeds
--   ./blt experiments/compare_patching.lua budget=smoke         under a minute (what the tests run)
--   ./blt experiments/compare_patching.lua budget=small plan=true   the points and their expected time
--   ./blt experiments/compare_patching.lua schemes=entropy,space target=6 args.blt="model.global.dim=384"
--   ./blt experiments/compare_patching.lua schemes=entropy,megabyte plan=true   the points, nothing trained
--
-- The budget (docs/experiments.md, "Protocol") fixes the model configs, the batch and a
-- FLOP budget: the training FLOPs of the entropy BLT at the target patch size over its
-- compute-optimal data, tokens_per_param BPE tokens per parameter of its global model
-- (in bytes through the measured bytes per token), or over budget_steps steps. Every
-- model trains for the steps that spend that budget at its own training FLOPs per byte
-- (at its expected mean patch: the target for fixed and the entropy schemes, the
-- measured mean of space patches, the measured bytes per token of BPE). Thresholds are
-- calibrated to the target patch size; fixed patches are round(target) bytes. Every
-- seed trains its own small entropy model first. The learning rate follows a rule in the
-- latent width (experiment.lr_rule), searched over lr_grid on the first seed.
--
-- The table gives mean ± standard error over seeds (n); the paired differences against
-- the reference scheme are printed seed by seed, and called only when their 95% t
-- interval excludes zero.
--
-- Output in out (default runs/compare-<budget>): one run folder per point (resumable:
-- a finished point is never recomputed, an interrupted one resumes from its
-- checkpoint), results.h5 (every point, the per-scheme summary, the differences, the
-- learning-rate search), compare.png (validation bits per byte against training
-- FLOPs, one curve per scheme) and patches.png (patch-size histograms of the BLT schemes).
local config = require "blt.config"
local core = require "blt.core"
local data = require "blt.data"
local flops = require "blt.flops"
local patching = require "blt.patching"
local sweep = require "blt.sweep"
local experiment = require "blt.experiment"

local ALL = experiment.sweep_words() -- the BLT schemes, then each kind's baseline word

local cfg = experiment.script({
    name = "compare_patching", args = arg,
    usage = "usage: ./blt experiments/compare_patching.lua [budget=smoke|medium|small|full] [seeds=1,2,3] [key=value ...]",
    defaults = {
        budget = "small",
        seeds = config.OPTIONAL,
        schemes = table.concat(ALL, ","),
        scheme_options = "",
        target = 4.0,
        budget_steps = 0,
        tokens_per_param = config.OPTIONAL,
        lr_grid = config.OPTIONAL,
        reference = config.OPTIONAL,
        out = config.OPTIONAL,
        plot = true,
        plan = false,
        plan_rate = 0.0,
    },
    docs = {
        budget = "model sizes, batch and FLOP budget: smoke (tests, <1 min), medium (5-10 min on 2 cores), small, full",
        seeds = "comma-separated seeds; each point is trained once per seed (unset: the budget's, 1 at smoke, else 1,2,3)",
        schemes = "comma-separated: " .. table.concat(ALL, ", ") .. ", file:PATH (a scheme file, docs/patching.md) or model:PATH (a model kind file, docs/extending.md)",
        scheme_options = experiment.SCHEME_OPTIONS_DOC,
        target = "mean bytes per patch the entropy thresholds are calibrated to (fixed: round(target))",
        budget_steps = "steps of the entropy BLT that define the FLOP budget (0: its compute-optimal data, tokens_per_param)",
        tokens_per_param = "compute-optimal BPE tokens per parameter of the global model (unset: the budget's, 20)",
        lr_grid = "multipliers of the learning-rate rule tried on the first seed, the best kept (unset: the budget's)",
        reference = "the scheme the others' paired differences are taken against (unset: bpe, else the first)",
        out = "sweep folder (unset: runs/compare-<budget>)",
        plot = "write compare.png and patches.png",
        plan = "print every point (steps, FLOPs, expected wall time) and stop before training any",
        plan_rate = "plan=true: training FLOP/s to assume (0: measure a few steps of each size now)",
    },
    rules = {
        budget = experiment.BUDGETS,
        seeds = experiment.seed_list_rule,
        schemes = experiment.scheme_list_rule(ALL), scheme_options = experiment.scheme_options_rule,
        target = "[1, 64]", budget_steps = ">= 0", tokens_per_param = "> 0", lr_grid = experiment.lr_grid_rule,
        reference = function(v)
            if not experiment.scheme_file_label(v) and not experiment.blt_scheme(v) and not experiment.baseline(v) then
                return ("is not a scheme (%s)"):format(table.concat(ALL, ", "))
            end
        end,
        plan_rate = ">= 0",
    },
    studies = true, -- data.path: the studies corpus by default
}, experiment.families())
if not cfg then return end

local P = experiment.preset(cfg.budget)
local out = cfg.out or ("runs/compare-" .. cfg.budget)
local seeds = experiment.ints(cfg.seeds or P.seeds)
local schemes = experiment.words(cfg.schemes)
local okso, scheme_opts = pcall(experiment.scheme_options, cfg.scheme_options, schemes)
if not okso then require("blt.util").die("compare_patching", scheme_opts) end
local grid = {}
for _, w in ipairs(experiment.words(cfg.lr_grid or P.lr_grid)) do grid[#grid + 1] = tonumber(w) end
local T0 = core.now()
io.stderr:write(("compare_patching: config:\n%s\n"):format(config.describe(cfg)))

cfg.data.path = cfg.data.path or data.studies_corpus() -- the studies' default corpus (docs/data.md)
local corpus = data.open(cfg.data.path, {val_fraction = cfg.data.val_fraction})
local s = sweep.new {dir = out, name = "compare_patching", ranks = cfg.ranks, hostfile = cfg.hostfile}
local common = experiment.common_args(P, cfg)

-- ---- the entropy models (one per seed, when a scheme needs entropies) ----
local ents = experiment.entropy_models(s, P, cfg, common, seeds, schemes, cfg.plan)

-- ---- the budget: the entropy BLT's training FLOPs over its compute-optimal data (or budget_steps) ----
local bytes_per_step = P.batch * P.seq_len
local tpp = cfg.tokens_per_param or P.tokens_per_param
local ref_steps, how = cfg.budget_steps > 0 and cfg.budget_steps or P.steps, nil
if cfg.budget_steps > 0 or tpp == 0 then -- steps given (or the smoke budget's own)
    how = ("over %d steps"):format(ref_steps)
else
    local bpt = experiment.bytes_per_token(corpus, P)
    if not bpt then require("blt.util").die("compare_patching", "tokens_per_param needs the bpe_lm kind to measure bytes per token; set budget_steps") end
    local w, l = P.blt.global.dim, P.blt.global.layers
    local bytes, n
    ref_steps, bytes, n = experiment.optimal(P, w, l, tpp, bpt)
    how = ("over its compute-optimal data: %g BPE tokens x %d global parameters (%dx%d) x %.2f bytes/token = %.3g bytes, %d steps")
        :format(tpp, n, w, l, bpt, bytes, ref_steps)
end
local ref_cfg = {kind = "blt", model = P.blt, patching = {scheme = "entropy"}, entropy = P.entropy.model}
local budget = ref_steps * bytes_per_step * flops.of(ref_cfg, {seq_len = P.seq_len + 1, mean_patch = cfg.target}).training.total
print(("compare_patching: budget %s: %.3g training FLOPs (the entropy BLT at %.1f bytes/patch %s; %d x %d bytes per step)")
      :format(cfg.budget, budget, cfg.target, how, P.batch, P.seq_len))

-- ---- one point per scheme, trained at every seed ----
local points = {}
for _, word in ipairs(schemes) do
    local scheme = experiment.scheme_file_label(word) or word -- a scheme file's points carry its name
    local function spec_of(seed) return experiment.model_point(word, P, corpus, ents and ents[seed], {target = cfg.target, options = scheme_opts[scheme]}) end
    local spec = spec_of(seeds[1])
    if spec.skip then
        io.stderr:write(("compare_patching: %s skipped: %s\n"):format(scheme, spec.skip))
    else
        local steps = math.max(1, math.floor(budget / (spec.train_fpb * bytes_per_step) + 0.5))
        points[#points + 1] = {scheme = scheme, spec = spec, spec_of = spec_of, steps = steps}
    end
end

local records, searches, planned, planned_s = {}, {}, 0, 0
local function runner(pt)
    return function(p)
        if cfg.plan then
            local w, l = experiment.latent_size(p.spec)
            local rate = cfg.plan_rate > 0 and cfg.plan_rate or experiment.measured_rate(P, w, l)
            local sec, f = experiment.expected_seconds(p.spec, p.steps, P, nil, rate)
            planned, planned_s = planned + f, planned_s + sec
            print(("  plan: %-24s %-32s %6d steps  lr %.3g  %.3g training FLOPs (%.2f MFLOP/byte)  ~%.0f s at %.3g FLOP/s")
                :format(p.id, p.script, p.steps, p.args["train.lr"], f, p.spec.train_fpb / 1e6, sec, rate))
            return nil
        end
        io.stderr:write(("compare_patching: %s: %s, seed %d, %d steps, lr %.3g\n"):format(p.id, pt.scheme, p.seed, p.steps, p.args["train.lr"]))
        local r = s:run(p)
        r.scheme, r.seed, r.spec = pt.scheme, p.seed, p.spec
        experiment.measure(r, P)
        return r
    end
end
for _, pt in ipairs(points) do
    local recs, search = experiment.train_seeds(runner(pt), {
        id = pt.scheme, spec_of = pt.spec_of, steps = pt.steps, seeds = seeds, grid = grid,
        extra = experiment.extra(cfg, pt.spec.family),
        args_of = function(spec, seed) return experiment.run_args(common, spec, pt.steps, seed, P) end})
    for _, r in ipairs(recs) do records[#records + 1] = r end
    for _, row in ipairs(search) do row.point = pt.scheme; searches[#searches + 1] = row end
end
corpus:close()
if cfg.plan then
    print(("compare_patching: planned %.3g training FLOPs, about %.0f s of training and validation (%s; the "
        .. "entropy models and start-up come on top; plan=true: nothing was trained)")
        :format(planned, planned_s, cfg.plan_rate > 0 and ("at %.3g FLOP/s"):format(cfg.plan_rate)
            or "at the training FLOP/s measured now for each size"))
    return
end

-- ---- the table: one row per scheme, mean ± standard error over seeds ----
local labels = {}
for i, w in ipairs(schemes) do labels[i] = experiment.scheme_file_label(w) or w end
local rows = experiment.summarize(records, labels)
print()
print(("Patching schemes at one training budget (%s: %.3g FLOPs; %d x %d bytes per step; seeds %s)")
      :format(cfg.budget, budget, P.batch, P.seq_len, table.concat(seeds, ",")))
print(sweep.table(rows, experiment.TABLE))
local se_note = experiment.validation_note(records)
print("patch: mean bytes per patch (BPE: per token; ByteLM: 1); FLOPs per byte in millions (docs/flops.md);")
print(("val bpb: mean ± standard error over seeds (n seeds), on the same validation bytes for every model%s"):format(se_note))
local ref = cfg.reference and (experiment.scheme_file_label(cfg.reference) or cfg.reference)
if not ref then
    ref = labels[1]
    for _, l in ipairs(labels) do if l == "bpe" then ref = l end end
end
local diffs = experiment.paired_differences(records, labels, ref)
print()
local listed = false
for _, l in ipairs(labels) do listed = listed or l == ref end
if not listed then print(("compare_patching: reference %s is not among the schemes: no paired differences"):format(ref)) end
experiment.print_differences(diffs, ("Paired differences in val bpb against %s, seed by seed:"):format(ref))

local h5 = out .. "/results.h5"
experiment.write_sections(h5, {experiment = "compare_patching", budget = cfg.budget,
    budget_flops = budget, seeds = table.concat(seeds, ","), target = cfg.target, batch = P.batch, seq_len = P.seq_len,
    tokens_per_param = tpp, reference = ref, lr_grid = cfg.lr_grid or P.lr_grid},
    {{records = records, rows = rows, differences = diffs, lr_search = searches}})
print(("compare_patching: results in %s"):format(h5))
if cfg.plot then
    local png = experiment.plot_curves(out .. "/compare.png", records,
        ("Patching schemes at %.2g training FLOPs (%s budget)"):format(budget, cfg.budget))
    if png then print("compare_patching: plot " .. png) end
    local hist = experiment.plot_patch_histograms(out .. "/patches.png", records, cfg)
    if hist then print("compare_patching: plot " .. hist) end
end
print("compare_patching: report " .. require("blt.report").write(out, {
    title = ("compare_patching: %s budget, seeds %s"):format(cfg.budget, cfg.seeds), sections = {{records = records}},
    notes = {("Patching schemes at one training budget: %.3g FLOPs; %d x %d bytes per step."):format(budget, P.batch, P.seq_len)}}))
print(("%s; %.0f s in all"):format(s:summary(), core.now() - T0))
