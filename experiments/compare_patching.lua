-- Patching schemes side by side at one training-FLOP budget: one BLT per scheme
-- (fixed, space, entropy, entropy_delta), the ByteLM baseline, the BPE token
-- baseline and every other kind's baseline (MegaByte), on the same data with the same seeds.
--
--   ./blt experiments/compare_patching.lua                      budget=small (under 30 min on 2 cores)
--   ./blt experiments/compare_patching.lua budget=smoke         under a minute (what the tests run)
--   ./blt experiments/compare_patching.lua budget=full seeds=1,2,3
--   ./blt experiments/compare_patching.lua schemes=entropy,space target=6 args.blt="model.global.dim=384"
--   ./blt experiments/compare_patching.lua schemes=entropy,megabyte plan=true   the points, nothing trained
--
-- The budget fixes the model configs, the batch and a FLOP budget: the training
-- FLOPs of the entropy BLT over budget_steps steps (docs/flops.md, at the target patch
-- size). Every model trains for the steps that spend that budget at its own training
-- FLOPs per byte (at its expected mean patch: the target for fixed and the entropy
-- schemes, the measured mean of space patches, the measured bytes per token of BPE).
-- Thresholds are calibrated to the target patch size; fixed patches are round(target)
-- bytes. A small entropy model is trained first (one per sweep, seed 1).
--
-- Output in out (default runs/compare-<budget>): one run folder per point (resumable:
-- a finished point is never recomputed, an interrupted one resumes from its
-- checkpoint), results.h5 (every point and the per-scheme summary), compare.png
-- (validation bits per byte against training FLOPs, one curve per scheme) and
-- patches.png (patch-size histograms of the BLT schemes).
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
    usage = "usage: ./blt experiments/compare_patching.lua [budget=smoke|small|full] [seeds=1,2] [key=value ...]",
    defaults = {
        budget = "small",
        seeds = "1",
        schemes = table.concat(ALL, ","),
        scheme_options = "",
        target = 4.0,
        budget_steps = 0,
        out = config.OPTIONAL,
        plot = true,
        plan = false,
    },
    docs = {
        budget = "model sizes, batch and FLOP budget: smoke (tests, <1 min), small (<30 min on 2 cores), full",
        seeds = "comma-separated seeds; each point is trained once per seed and the spread reported",
        schemes = "comma-separated: " .. table.concat(ALL, ", ") .. ", file:PATH (a scheme file, docs/patching.md) or model:PATH (a model kind file, docs/extending.md)",
        scheme_options = experiment.SCHEME_OPTIONS_DOC,
        target = "mean bytes per patch the entropy thresholds are calibrated to (fixed: round(target))",
        budget_steps = "steps of the entropy BLT that define the FLOP budget (0: the budget's own)",
        out = "sweep folder (unset: runs/compare-<budget>)",
        plot = "write compare.png and patches.png",
        plan = "print every point (model, steps, planned training FLOPs) and stop before training any",
    },
    rules = {
        budget = {"smoke", "small", "full"},
        seeds = experiment.seed_list_rule,
        schemes = experiment.scheme_list_rule(ALL), scheme_options = experiment.scheme_options_rule,
        target = "[1, 64]", budget_steps = ">= 0",
    },
    studies = true, -- data.path: the studies corpus by default
}, experiment.families())
if not cfg then return end

local P = experiment.preset(cfg.budget)
local out = cfg.out or ("runs/compare-" .. cfg.budget)
local seeds = experiment.ints(cfg.seeds)
local schemes = experiment.words(cfg.schemes)
local okso, scheme_opts = pcall(experiment.scheme_options, cfg.scheme_options, schemes)
if not okso then require("blt.util").die("compare_patching", scheme_opts) end
local T0 = core.now()
io.stderr:write(("compare_patching: config:\n%s\n"):format(config.describe(cfg)))

cfg.data.path = cfg.data.path or data.studies_corpus() -- the studies' default corpus (docs/data.md)
local corpus = data.open(cfg.data.path, {val_fraction = cfg.data.val_fraction})
local s = sweep.new {dir = out, name = "compare_patching", ranks = cfg.ranks, hostfile = cfg.hostfile}
local common = experiment.common_args(P, cfg)

-- ---- the entropy model (needed by the entropy schemes) ----
local need_entropy = false
for _, sc in ipairs(schemes) do
    local reg = experiment.blt_scheme(sc)
    need_entropy = need_entropy or (reg and reg.needs_entropy) or false
end
local ent
if need_entropy then
    ent = cfg.plan and {path = "(planned)", model = P.entropy.model} or experiment.entropy_model(s, P, cfg, common)
end

-- ---- the budget: the entropy BLT's training FLOPs over budget_steps ----
local ref_steps = cfg.budget_steps > 0 and cfg.budget_steps or P.steps
local bytes_per_step = P.batch * P.seq_len
local ref_cfg = {kind = "blt", model = P.blt, patching = {scheme = "entropy"}, entropy = P.entropy.model}
local budget = ref_steps * bytes_per_step * flops.of(ref_cfg, {seq_len = P.seq_len + 1, mean_patch = cfg.target}).training.total
print(("compare_patching: budget %s: %.3g training FLOPs (the entropy BLT at %.1f bytes/patch over %d steps of %d x %d bytes)")
      :format(cfg.budget, budget, cfg.target, ref_steps, P.batch, P.seq_len))

-- ---- one point per scheme and seed ----
local points = {}
for _, word in ipairs(schemes) do
    local scheme = experiment.scheme_file_label(word) or word -- a scheme file's points carry its name
    local spec = experiment.model_point(word, P, corpus, ent, {target = cfg.target, options = scheme_opts[scheme]})
    if spec.skip then
        io.stderr:write(("compare_patching: %s skipped: %s\n"):format(scheme, spec.skip))
    else
        local steps = math.max(1, math.floor(budget / (spec.train_fpb * bytes_per_step) + 0.5))
        spec.steps = steps
        for _, seed in ipairs(seeds) do
            local args = experiment.run_args(common, spec, steps, seed, P)
            points[#points + 1] = {scheme = scheme, seed = seed, spec = spec,
                                   point = {id = ("%s-s%d"):format(scheme, seed), script = spec.script, args = args,
                                            extra = experiment.extra(cfg, spec.family)}}
        end
    end
end

if cfg.plan then
    for _, pt in ipairs(points) do
        print(("  plan: %-24s %-36s %6d steps  %.3g training FLOPs (%.2f MFLOP/byte)"):format(pt.point.id, pt.spec.script,
              pt.spec.steps, pt.spec.train_fpb * pt.spec.steps * bytes_per_step, pt.spec.train_fpb / 1e6))
    end
    print("compare_patching: plan=true: nothing was trained")
    corpus:close()
    return
end

local records = {}
for i, pt in ipairs(points) do
    io.stderr:write(("compare_patching: point %d/%d: %s, seed %d, %d steps\n"):format(i, #points, pt.scheme, pt.seed, pt.spec.steps))
    local r = s:run(pt.point)
    r.scheme, r.seed, r.spec = pt.scheme, pt.seed, pt.spec
    experiment.measure(r, P)
    records[#records + 1] = r
end
corpus:close()

-- ---- the table: one row per scheme, the spread over seeds ----
local labels = {}
for i, w in ipairs(schemes) do labels[i] = experiment.scheme_file_label(w) or w end
local rows = experiment.summarize(records, labels)
print()
print(("Patching schemes at one training budget (%s: %.3g FLOPs; %d x %d bytes per step; seeds %s)")
      :format(cfg.budget, budget, P.batch, P.seq_len, cfg.seeds))
print(sweep.table(rows, experiment.TABLE))
print("patch: mean bytes per patch (BPE: per token; ByteLM: 1); FLOPs per byte in millions (docs/flops.md);")
print("val bpb: validation bits per byte over the same bytes for every model (mean over seeds; ± half the range)")

local h5 = out .. "/results.h5"
experiment.write_results(h5, records, rows, {experiment = "compare_patching", budget = cfg.budget,
    budget_flops = budget, seeds = cfg.seeds, target = cfg.target, batch = P.batch, seq_len = P.seq_len})
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
