-- What `make demo` runs: the Byte Latent Transformer on the default corpus, in about
-- five minutes on 2 cores. It trains a small entropy model, a small BLT with entropy
-- patching, and a ByteLM given the same training FLOPs; prints their validation bits
-- per byte, mean patch size and FLOPs per byte side by side; shows how the BLT cuts a
-- sentence into patches; generates a short sample; and leaves checkpoints, metrics
-- (HDF5) and PNGs under runs/demo.
--
--   ./blt experiments/demo.lua [key=value ...]      (--help lists the keys)
--   ./blt experiments/demo.lua steps=60             a quicker, rougher demo
-- Finished runs are kept: a second demo reuses them (out=another folder to train anew).
local here = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/../scripts/?.lua;" .. package.path

local config = require "blt.config"
local core = require "blt.core"
local data = require "blt.data"
local entropy = require "blt.entropy"
local experiment = require "blt.experiment"
local flops = require "blt.flops"
local generate = require "blt.generate"
local models = require "blt.models"
local patching = require "blt.patching"
local plot = require "blt.plot"
local sweep = require "blt.sweep"
local show = require "show_patches"
local plot_entropy = require "plot_entropy"

local cfg = experiment.script({
    name = "demo", args = arg,
    usage = "usage: ./blt experiments/demo.lua [key=value ...]",
    defaults = {
        out = "runs/demo",
        budget = "demo",
        steps = 150,
        entropy_steps = 200,
        target = 4.5,
        eval_bytes = 131072,
        sentence = "Then said the Byte Latent Transformer unto them, Behold, I make all bytes new.",
        show = "space,fixed",
        prompt = "And God said, Let there be",
        sample = 200,
        temperature = 0.7,
        seed = 1,
    },
    docs = {
        out = "folder of the demo's runs and figures",
        budget = "model sizes and batch (experiments/compare_patching.lua's budgets, and demo: the demo's own; smoke: seconds, for the tests)",
        steps = "training steps of the BLT (the ByteLM gets the steps of the same training FLOPs)",
        entropy_steps = "training steps of the entropy model",
        target = "mean bytes per patch the entropy threshold is calibrated to",
        eval_bytes = "validation bytes of every validation (the same for both models; 0: all)",
        sentence = "the sentence whose patches are shown",
        show = "schemes whose patches of the sentence are shown beside the BLT's: comma-separated names or "
            .. "file:PATH (a scheme file, docs/patching.md), with their default options ('': none)",
        prompt = "the prompt of the generated sample", sample = "bytes to generate",
        temperature = "sampling temperature of the sample (0: greedy)", seed = "seed of the runs and the sample",
    },
    rules = {budget = {"smoke", "medium", "small", "demo", "full"}, steps = ">= 1", entropy_steps = ">= 1", target = "[1, 64]", eval_bytes = ">= 0", sample = ">= 0",
             temperature = ">= 0", seed = ">= 0",
             sentence = function(v) if v == "" then return "must not be empty" end end,
             show = function(v)
                 if v == "" then return nil end
                 local names = {}
                 for _, w in ipairs(experiment.words(v)) do
                     if not require("blt.schemes").known(w) then
                         return ("'%s' is not a scheme (known: %s, or file:PATH)")
                             :format(w, table.concat(require("blt.schemes").names(), ", "))
                     end
                     local _, err = experiment.scheme_file_label(w)
                     if err then return ("'%s' %s"):format(w, err) end
                 end
             end},
}, {"blt", "bytelm", "entropy"})
if not cfg then return end

local T0 = core.now()
local function section(title) print(("\n== %s =="):format(title)) io.stdout:flush() end
local color = os.getenv("NO_COLOR") == nil and os.getenv("TERM") ~= "dumb" and core.isatty(1)

-- the models of a compare_patching.lua budget (demo by default: the demo's own), with shorter runs
local P = experiment.preset(cfg.budget)
P.entropy.steps = cfg.entropy_steps
P.val_bytes = cfg.eval_bytes
P.evals = 3
local corpus = data.open(cfg.data.path, {val_fraction = cfg.data.val_fraction})
local s = sweep.new {dir = cfg.out, name = "demo", ranks = cfg.ranks, hostfile = cfg.hostfile}
local common = experiment.common_args(P, cfg)
common["out.plot"] = true

section("1/5 The entropy model: a small byte-level LM whose next-byte entropy decides where patches start")
print("(progress below; finished runs in " .. cfg.out .. " are reused)")
local ent = experiment.entropy_model(s, P, cfg, common)

section("2/5 A BLT with entropy patching, and a ByteLM given the same training FLOPs")
local bytes_per_step = P.batch * P.seq_len
local specs = {
    {label = "BLT (entropy)", scheme = "entropy", id = "blt-entropy"},
    {label = "ByteLM", scheme = "bytelm", id = "bytelm"},
}
local budget
local records = {}
for i, sp in ipairs(specs) do
    local spec = experiment.model_point(sp.scheme, P, corpus, ent, {target = cfg.target})
    if i == 1 then budget = cfg.steps * bytes_per_step * spec.train_fpb end
    local steps = math.max(1, math.floor(budget / (spec.train_fpb * bytes_per_step) + 0.5))
    print(("%s: %d steps of %d x %d bytes (%.2f MFLOP per byte planned)"):format(sp.label, steps, P.batch, P.seq_len,
          spec.train_fpb / 1e6))
    io.stdout:flush()
    local args = experiment.run_args(common, spec, steps, cfg.seed, P)
    local r = s:run {id = sp.id, script = spec.script, args = args, extra = experiment.extra(cfg, spec.family)}
    if r.stopped or r.failed then
        print("demo: a run did not finish; run `make demo` again to continue it.")
        os.exit(1)
    end
    r.scheme, r.seed, r.spec, r.label = sp.label, cfg.seed, spec, sp.label
    experiment.measure(r, P)
    records[#records + 1] = r
end

section("3/5 Side by side")
local rows = {}
for _, r in ipairs(records) do
    rows[#rows + 1] = {model = r.label, params = r.params, patch = r.mean_patch, train = r.train_fpb / 1e6,
                       infer = r.inference_fpb / 1e6, steps = r.steps, flops = r.train_flops,
                       bytes = r.result.bytes_seen, bpb = r.val_bpb}
end
print(sweep.table(rows, {{"model", "model"}, {"params", "params", function(v) return ("%.2fM"):format(v / 1e6) end},
    {"patch", "bytes/patch", "%.2f"}, {"train", "train MFLOP/B", "%.2f"}, {"infer", "infer MFLOP/B", "%.2f"},
    {"steps", "steps", "%d"}, {"bytes", "bytes seen", "%d"}, {"flops", "train FLOPs", "%.3g"},
    {"bpb", "val bits/byte", "%.4f"}}))
print(("Both are validated on the same %s held-out bytes (the last %g%% of the corpus). FLOPs per byte count")
      :format(cfg.eval_bytes > 0 and tostring(records[1].result.val_bytes) or "all", 100 * cfg.data.val_fraction))
print("the matrix products (docs/flops.md); the BLT's include its entropy model's forward pass.")
local curve_png
if plot.available() then
    curve_png = experiment.plot_curves(cfg.out .. "/compare.png", records, "Validation bits per byte against training FLOPs")
end

section("4/5 How the BLT cuts a sentence")
local blt_model = models.load(records[1].checkpoint)
local pc = records[1].config.patching
local em = blt_model.entropy_model -- the BLT's checkpoint holds its entropy model
local e = entropy.of_text(em, cfg.sentence)
print(("The BLT's entropy threshold, calibrated to %.1f bytes/patch on training text: %.4f nats (reached %.2f)")
      :format(pc.target, pc.threshold, pc.calibrated))
print(("The sentence (%d bytes), %s:"):format(#cfg.sentence,
      color and "each patch on its own background colour" or "patches separated by '|'"))
local rows_shown = {
    {"entropy (the BLT's)", {scheme = "entropy", threshold = pc.threshold, entropies = e},
     ("a patch starts at a byte whose entropy > %.3f"):format(pc.threshold)},
}
for _, w in ipairs(cfg.show ~= "" and experiment.words(cfg.show) or {}) do -- the registry's schemes, files too
    local sc = require("blt.schemes").get(w)
    local o = {scheme = w}
    if not sc.kernel then o.scheme = require("blt.schemes").rule(sc, sc.options) end
    for k, v in pairs(sc.options) do if sc.kernel then o[k] = v end end
    if sc.needs_entropy then o.entropies = e end
    if sc.kernel == "entropy_delta" then o.threshold = nil end
    local opts = {}
    for k, v in pairs(sc.options) do opts[#opts + 1] = ("%s = %s"):format(k, tostring(v)) end
    table.sort(opts)
    rows_shown[#rows_shown + 1] = {w, o, sc.doc .. (#opts > 0 and (" (" .. table.concat(opts, ", ") .. ")") or "")}
end
for _, sh in ipairs(rows_shown) do
    local lengths = show.lengths(cfg.sentence, sh[2])
    local st = patching.stats {lengths}
    print(("\n  %s: %s"):format(sh[1], sh[3]))
    print("    " .. show.render(cfg.sentence, lengths, {color = color}))
    print(("    %d patches, mean %.2f bytes/patch"):format(st.patches, st.mean))
end
local entropy_png
if plot.available() then
    entropy_png = plot_entropy.plot {text = cfg.sentence, entropies = e, threshold = pc.threshold,
                                     path = cfg.out .. "/entropy.png", title = "Entropy model: next-byte entropy"}
end

section("5/5 A sample from the BLT")
print(("Prompt %q, %d bytes at temperature %g (seed %d):"):format(cfg.prompt, cfg.sample, cfg.temperature, cfg.seed))
local text, info = generate.run(blt_model, cfg.prompt, cfg.sample, {temperature = cfg.temperature, seed = cfg.seed,
                                                                     top_p = 0.95})
local full = cfg.prompt .. text
local p = core.no_grad(function() return blt_model:prepare(core.tensor({info.ids}, "int32")) end)
local lengths = p.lengths:totable()[1]
while lengths[#lengths] == 0 do lengths[#lengths] = nil end
print("  " .. (show.render(full, lengths, {color = color}):gsub("\n", "\n  ")))
print(("(%d bytes in %.1f s, %.0f bytes/s; patches shown as above)"):format(info.bytes, info.seconds,
      info.bytes / math.max(info.seconds, 1e-9)))
corpus:close()

section("Summary")
local blt_r, lm_r = records[1], records[2]
print(("BLT (entropy patching, %.2f bytes/patch): %.4f bits/byte; ByteLM: %.4f bits/byte, at the same %.3g training FLOPs.")
      :format(blt_r.mean_patch, blt_r.val_bpb, lm_r.val_bpb, blt_r.train_flops))
print(("Inference FLOPs per byte: BLT %.2f M (its global model runs once per patch, its local models and entropy model"
      .. " once per byte), ByteLM %.2f M."):format(blt_r.inference_fpb / 1e6, lm_r.inference_fpb / 1e6))
print(("Everything is in %s/:"):format(cfg.out))
print("  entropy-model/, blt-entropy/, bytelm/   one run each: checkpoint.h5 (weights, optimiser, config; HDF5),")
print("                                          metrics.h5 (loss, validation, patch size, FLOPs per step),")
print("                                          config.json, result.json, loss.png")
if curve_png then print("  compare.png   validation bits per byte against training FLOPs, both models") end
if entropy_png then print("  entropy.png   the sentence's entropies, the threshold and the patch starts") end
if not plot.available() then print("  (gnuplot is missing: no PNGs; `make deps` installs gnuplot-nox)") end
print("Next: the README's tutorial compares every patching scheme (experiments/compare_patching.lua).")
print(("Demo finished in %.0f s."):format(core.now() - T0))
