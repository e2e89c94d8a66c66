-- The paper's two scaling studies at CPU scale, for a list of schemes and patch sizes.
--
--   ./blt experiments/scaling.lua                                 budget=small
--   ./blt experiments/scaling.lua budget=smoke                    about a minute (the tests)
--   ./blt experiments/scaling.lua schemes=bpe,entropy:4,entropy:6,entropy:8 sizes=64x2,128x3
--   ./blt experiments/scaling.lua study=fixed_inference overtrain=4
--
-- schemes: BLT schemes with a patch size (entropy:6 = entropy patching calibrated to
-- 6 bytes per patch; fixed:4 = 4-byte patches; space), and the baselines bpe and
-- bytelm, and MegaByte (megabyte:8 = 8-byte patches). sizes: the global model's
-- WIDTHxLAYERS (MegaByte's global model too; bpe and bytelm take the same width and
-- depth for the whole model).
--
-- compute_optimal: every scheme at every size, trained on bytes_per_param bytes per
-- scaled parameter (every trained parameter but the embedding tables). Prints bits per
-- byte against training FLOPs and fits bpb = a * FLOPs^-b per scheme; compute_optimal.png.
--
-- fixed_inference: one model per scheme whose inference FLOPs per byte match the
-- first scheme's at infer_size (a larger patch pays for a wider global model; the
-- baselines' width is chosen the same way), each trained overtrain times its
-- compute-optimal steps with validation along the way; fixed_inference.png shows the
-- curves with each model's compute-optimal point marked, and the table says where the
-- order of the schemes changes.
--
-- Resumable (blt.sweep): a finished point is never recomputed, an interrupted one
-- resumes from its checkpoint. Results in out/results.h5.
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
    usage = "usage: ./blt experiments/scaling.lua [budget=smoke|small|full] [study=both|compute_optimal|fixed_inference] [key=value ...]",
    defaults = {
        budget = "small",
        study = "both",
        schemes = "bpe,entropy:4,entropy:6,entropy:8",
        scheme_options = "",
        target = 4.0,
        sizes = config.OPTIONAL,
        bytes_per_param = 0,
        infer_size = config.OPTIONAL,
        overtrain = 0,
        seed = 1,
        out = config.OPTIONAL,
        plot = true,
        plan = false,
    },
    docs = {
        budget = "local model, batch, sizes and data ratio: smoke (tests), small (a first look on 2 cores), full",
        study = "which study: both, compute_optimal or fixed_inference",
        schemes = "comma-separated: fixed:P, space, entropy:P, entropy_delta:P, "
            .. table.concat(SCHEMES, ", ", 5) .. " (P: bytes per patch), file:PATH (a scheme file) or model:PATH (a kind file)",
        scheme_options = experiment.SCHEME_OPTIONS_DOC,
        target = "patch size of a scheme given without :P",
        sizes = "global WIDTHxLAYERS list of the compute-optimal sweep (unset: the budget's)",
        bytes_per_param = "training bytes per scaled parameter at the compute-optimal point (0: the budget's)",
        infer_size = "WIDTHxLAYERS of the first scheme's model that sets the fixed inference budget (unset: the budget's)",
        overtrain = "fixed_inference: train this many times the compute-optimal steps (0: the budget's)",
        seed = "seed of every run",
        out = "sweep folder (unset: runs/scaling-<budget>)",
        plot = "write compute_optimal.png and fixed_inference.png",
        plan = "print every point (model, steps, planned training FLOPs) and stop before training any",
    },
    rules = {
        budget = {"smoke", "small", "full"}, study = {"both", "compute_optimal", "fixed_inference"},
        schemes = scheme_items_rule, scheme_options = experiment.scheme_options_rule, target = "[1, 64]", sizes = experiment.size_list_rule,
        bytes_per_param = ">= 0", infer_size = experiment.size_rule, overtrain = ">= 0", seed = ">= 0",
    },
    studies = true, -- data.path: the studies corpus by default
}, experiment.families())
if not cfg then return end
local okso, scheme_opts = pcall(experiment.scheme_options, cfg.scheme_options, experiment.words(cfg.schemes))
if not okso then require("blt.util").die("scaling", scheme_opts) end

local P = experiment.scaling_preset(cfg.budget)
local out = cfg.out or ("runs/scaling-" .. cfg.budget)
local sizes = experiment.words(cfg.sizes or P.sizes)
local ratio = cfg.bytes_per_param > 0 and cfg.bytes_per_param or P.bytes_per_param
local overtrain = cfg.overtrain > 0 and cfg.overtrain or P.overtrain
local infer_w, infer_l = experiment.size(cfg.infer_size or P.infer_size)
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
local ent
for _, it in ipairs(items) do
    local reg = experiment.blt_scheme(it.scheme)
    if reg and reg.needs_entropy and not ent then
        ent = cfg.plan and {path = "(planned)", model = P.entropy.model} or experiment.entropy_model(s, P, cfg, common)
    end
end

local function spec_of(it, w, l, heads)
    return experiment.model_point(it.scheme, P, corpus, ent, {target = it.target, size = {w, l}, heads = heads,
                                                               options = scheme_opts[it.label]})
end

-- steps at the compute-optimal ratio for a spec
local function optimal_steps(spec)
    local n = experiment.scaled_params(spec)
    return math.max(1, math.floor(ratio * n / bytes_per_step + 0.5)), n
end

local planned = 0
local function run_point(id, it, spec, steps, evals, eval_every)
    if cfg.plan then
        local f = spec.train_fpb * steps * bytes_per_step
        planned = planned + f
        print(("  plan: %-28s %6d steps  %.3g training FLOPs (%.2f MFLOP/byte)"):format(id, steps, f, spec.train_fpb / 1e6))
        return nil
    end
    local args = experiment.run_args(common, spec, steps, cfg.seed, P, evals)
    if eval_every then args["eval.every"], args["out.checkpoint_every"] = eval_every, eval_every end
    local r = s:run {id = id, script = spec.script, args = args, extra = experiment.extra(cfg, spec.family)}
    r.scheme, r.seed, r.spec = it.label, cfg.seed, spec
    experiment.measure(r, P)
    return r
end

local sections, attrs = {}, {experiment = "scaling", budget = cfg.budget, schemes = cfg.schemes, seed = cfg.seed,
                             bytes_per_param = ratio, batch = P.batch, seq_len = P.seq_len}
local plot = require "blt.plot"

-- ---------------------------------------------------------------- compute-optimal
if cfg.study ~= "fixed_inference" then
    local records, fits = {}, {}
    print(("\n== Compute-optimal: sizes %s at %g bytes per scaled parameter ==")
          :format(table.concat(sizes, ","), ratio))
    for _, it in ipairs(items) do
        local spec0 = spec_of(it, experiment.size(sizes[1]))
        if spec0.skip then
            io.stderr:write(("scaling: %s skipped: %s\n"):format(it.label, spec0.skip))
        else
            for _, sz in ipairs(sizes) do
                local w, l = experiment.size(sz)
                local spec = spec_of(it, w, l)
                local steps, n = optimal_steps(spec)
                local id = ("co-%s-%s-s%d"):format(it.tag, sz, cfg.seed)
                io.stderr:write(("scaling: %s: %s at %s, %d scaled parameters, %d steps\n"):format(id, it.label, sz, n, steps))
                local r = run_point(id, it, spec, steps, P.evals)
                if r then
                    r.size, r.scaled_params = sz, n
                    r.extra = {size = sz, scaled_params = n}
                    records[#records + 1] = r
                end
            end
        end
    end
    -- fits and the table
    local rows = {}
    if not cfg.plan then
        for _, it in ipairs(items) do
            local xs, ys = {}, {}
            for _, r in ipairs(records) do
                if r.scheme == it.label and r.val_bpb and r.train_flops then xs[#xs + 1], ys[#ys + 1] = r.train_flops, r.val_bpb end
            end
            local a, b, r2 = sweep.power_law(xs, ys)
            if a then fits[it.label] = {a = a, b = b, r2 = r2, n = #xs, xs = xs} end
        end
        for _, r in ipairs(records) do
            rows[#rows + 1] = {scheme = r.scheme, size = r.size, params = r.params, scaled = r.scaled_params,
                               patch = r.mean_patch, steps = r.steps, flops = r.train_flops, bpb = r.val_bpb, wall = r.wall}
        end
        print(sweep.table(rows, {{"scheme", "scheme"}, {"size", "global"}, {"params", "params", function(v) return ("%.2fM"):format(v / 1e6) end},
            {"scaled", "scaled", function(v) return ("%.2fM"):format(v / 1e6) end}, {"patch", "patch", "%.2f"},
            {"steps", "steps", "%d"}, {"flops", "train FLOPs", "%.3g"}, {"bpb", "val bpb", "%.4f"}, {"wall", "wall s", "%.0f"}}))
        print("fits, bpb = a * FLOPs^-b:")
        for _, it in ipairs(items) do
            local f = fits[it.label]
            if f then print(("  %-16s a = %.4g  b = %.4f  (r^2 %.3f over %d sizes)"):format(it.label, f.a, f.b, f.r2, f.n)) end
        end
        sections[#sections + 1] = {prefix = "/compute_optimal", records = records, fits = fits}
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
                                    ylabel = "validation bits per byte", series = series,
                                    title = ("Compute-optimal sweep (%g bytes per scaled parameter, %s budget)"):format(ratio, cfg.budget)}
            print("scaling: plot " .. png)
        end
    end
end

-- ---------------------------------------------------------------- fixed inference budget
if cfg.study ~= "compute_optimal" then
    print(("\n== Fixed inference budget: matched to %s at %dx%d, trained %gx past compute-optimal ==")
          :format(items[1].label, infer_w, infer_l, overtrain))
    local ref = spec_of(items[1], infer_w, infer_l)
    if ref.skip then error("scaling: the first scheme sets the inference budget but cannot run: " .. ref.skip, 0) end
    local budget = ref.inference_fpb
    local records = {}
    for _, it in ipairs(items) do
        -- the width whose inference FLOPs per byte are closest to the budget: infer_size's depth
        -- and heads, widths in steps of 2 x heads (even head sizes)
        local heads = experiment.heads_of(infer_w)
        local best, best_err
        for w = 2 * heads, 64 * infer_w, 2 * heads do
            local sp = spec_of(it, w, infer_l, heads)
            if sp.skip then best = sp break end
            local err = math.abs(math.log(sp.inference_fpb / budget))
            if not best_err or err < best_err then best, best_err = sp, err end
            if sp.inference_fpb > budget * 2 then break end
        end
        if best.skip then
            io.stderr:write(("scaling: %s skipped: %s\n"):format(it.label, best.skip))
        else
            local w = best.run_cfg.model.global and best.run_cfg.model.global.dim or best.run_cfg.model.dim -- a kind with a global model (BLT, MegaByte, SpaceByte): its width
            local co_steps, n = optimal_steps(best)
            local every = math.max(1, co_steps // 2)
            local steps = every * 2 * overtrain
            local id = ("fi-%s-%dx%d-s%d"):format(it.tag, w, infer_l, cfg.seed)
            io.stderr:write(("scaling: %s: %s at %dx%d (inference %.3g FLOP/byte, budget %.3g), compute-optimal at step %d, %d steps\n")
                :format(id, it.label, w, infer_l, best.inference_fpb, budget, every * 2, steps))
            local r = run_point(id, it, best, steps, nil, every)
            if r then
            r.size, r.co_step, r.scaled_params = ("%dx%d"):format(w, infer_l), every * 2, n
            for i, st in ipairs(r.curve.step) do
                if st == r.co_step then r.co_flops, r.co_bpb = r.curve.flops[i], r.curve.bpb[i] end
            end
            r.extra = {size = r.size, compute_optimal_step = r.co_step, compute_optimal_bpb = r.co_bpb,
                       compute_optimal_flops = r.co_flops, scaled_params = n}
            records[#records + 1] = r
            end
        end
    end
    local rows = {}
    if not cfg.plan then
        for _, r in ipairs(records) do
            rows[#rows + 1] = {scheme = r.scheme, size = r.size, patch = r.mean_patch, inf = r.inference_fpb and r.inference_fpb / 1e6,
                               co_bpb = r.co_bpb, bpb = r.val_bpb, flops = r.train_flops, steps = r.steps}
        end
        print(sweep.table(rows, {{"scheme", "scheme"}, {"size", "global"}, {"patch", "patch", "%.2f"},
            {"inf", "infer MFLOP/B", "%.3f"}, {"steps", "steps", "%d"}, {"co_bpb", "bpb @ optimal", "%.4f"},
            {"bpb", "bpb @ end", "%.4f"}, {"flops", "train FLOPs", "%.3g"}}))
        -- the order of the schemes at each model's compute-optimal point and at the end
        local function order(key)
            local t = {}
            for _, r in ipairs(records) do if r[key] then t[#t + 1] = r end end
            table.sort(t, function(a, b) return a[key] < b[key] end)
            local names = {}
            for _, r in ipairs(t) do names[#names + 1] = ("%s %.4f"):format(r.scheme, r[key]) end
            return table.concat(names, " < ")
        end
        print("order at the compute-optimal points: " .. order("co_bpb"))
        print("order at the end of training:        " .. order("val_bpb"))
        sections[#sections + 1] = {prefix = "/fixed_inference", records = records}
        attrs.infer_size = ("%dx%d"):format(infer_w, infer_l)
        attrs.inference_budget = budget
        attrs.overtrain = overtrain
        if cfg.plot and plot.available() and #records > 0 then
            local series, cx, cy = {}, {}, {}
            for _, r in ipairs(records) do
                series[#series + 1] = {name = ("%s (%s)"):format(r.scheme, r.size), x = r.curve.flops, y = r.curve.bpb, style = "linespoints"}
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
    print(("scaling: planned %.3g training FLOPs in all (plan=true: nothing was trained)"):format(planned))
    return
end

local h5 = out .. "/results.h5"
experiment.write_sections(h5, attrs, sections)
print(("scaling: results in %s"):format(h5))
print("scaling: report " .. require("blt.report").write(out, {sections = sections,
    title = ("scaling: %s budget, study %s, seeds %s"):format(cfg.budget, cfg.study, tostring(cfg.seeds or cfg.seed))}))
print(("%s; %.0f s in all"):format(s:summary(), core.now() - T0))
