-- What `make demo` runs: trains a small ByteLM on the default corpus, uses it as the
-- entropy model to show the patches of one sentence under every patching scheme, and
-- writes the entropy figure. About 3-4 minutes on 2 cores.
--
--   ./blt experiments/demo.lua [key=value ...]     the training keys of train_bytelm.lua,
--                                                  with smaller demo defaults (see --help)
--   ./blt experiments/demo.lua train.steps=100     a quicker, rougher demo
local here = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/../scripts/?.lua;" .. package.path

local core = require "blt.core"
local data = require "blt.data"
local train = require "blt.train"
local entropy = require "blt.entropy"
local plot = require "blt.plot"
local show = require "show_patches"
local plot_entropy = require "plot_entropy"
local patching = require "blt.patching"

local T0 = core.now()
local TARGET = 4.5          -- bytes per patch the entropy thresholds are calibrated to
local CAL_BYTES = 4096      -- validation bytes the calibration uses
local SENTENCE = "Then said the Byte Latent Transformer unto them, Behold, I make all bytes new."

local function section(title) print(("\n== %s =="):format(title)) end

-- ---- demo defaults: a smaller model and a shorter run than train_bytelm.lua's ----
local defaults = {model = {dim = 192, layers = 3, heads = 4}, train = {steps = 500},
                  eval = {every = 250, max_bytes = 32768,
                          final_max_bytes = 131072}} -- the first 128 KB of the held-out 10%: a few seconds

local help = false
for _, a in ipairs(arg or {}) do help = help or a == "--help" or a == "-h" end
if not help then
    section("1/3 Training a small byte-level LM (ByteLM) on the default corpus")
    print("Progress below; the run writes its checkpoint, metrics and loss plot as it goes.")
    print("(Keys can be overridden on the command line, e.g. ./blt experiments/demo.lua train.steps=100;")
    print(" ./blt experiments/demo.lua --help lists them.)")
    io.stdout:flush()
end
local result = train.run {
    name = "demo",
    script = "experiments/demo.lua",
    args = arg,
    kind = "bytelm",
    defaults = defaults,
}
if not result then return end -- --help
if result.stopped then
    print("demo: training was stopped; run `make demo` again for the full demo.")
    os.exit(result.exit_status ~= 0 and result.exit_status or 1)
end
local cfg, run_dir = result.config, result.run_dir
-- under mpirun the rest (patches, figures) is rank 0's alone: one writer
if require("blt.dist").rank() > 0 then return end

section("2/3 Patching one sentence, with the trained model as the entropy model")
-- A ByteLM is an entropy model: its next-byte entropies decide where entropy patches start.
-- Loaded back from the checkpoint just written, as any later script would.
local model = entropy.load_model(result.checkpoint)

-- Calibration: CAL_BYTES of validation text in windows as long as the training rows (the
-- model never saw longer contexts), sampled across the whole split with a fixed seed, so
-- the threshold does not depend on how the split happens to begin (as train_blt.lua does).
local corpus = data.open(cfg.data.path, {val_fraction = cfg.data.val_fraction})
local rows = corpus:sample_windows {split = "val", len = cfg.train.seq_len, bytes = CAL_BYTES, seed = 1}
corpus:close()
local ents = model:entropies(rows)
local theta, theta_mean = patching.calibrate {scheme = "entropy", target = TARGET, rows = rows, entropies = ents}
local delta, delta_mean = patching.calibrate {scheme = "entropy_delta", target = TARGET, rows = rows, entropies = ents}
print(("Thresholds calibrated for %.1f bytes/patch on %d bytes of validation text (%d windows sampled across the split):")
      :format(TARGET, rows:size(1) * (rows:size(2) - 1), rows:size(1)))
print(("  entropy:       global threshold  %.4f nats (mean %.2f bytes/patch there)"):format(theta, theta_mean))
print(("  entropy_delta: entropy increase  %.4f nats (mean %.2f bytes/patch there)"):format(delta, delta_mean))

local e = entropy.of_text(model, SENTENCE)
local color = os.getenv("NO_COLOR") == nil and os.getenv("TERM") ~= "dumb" and os.execute("test -t 1") == true
print()
print(("The sentence (%d bytes), as each scheme cuts it (%s):"):format(#SENTENCE,
      color and "each patch on its own background colour" or "patches separated by '|'"))
local schemes = {
    {"fixed", {scheme = "fixed", size = 4}, "every 4 bytes"},
    {"space", {scheme = "space"}, "a patch starts after a space-like byte that follows a word byte"},
    {"entropy", {scheme = "entropy", threshold = theta, entropies = e},
     ("a patch starts at a byte whose entropy > %.3f"):format(theta)},
    {"entropy_delta", {scheme = "entropy_delta", delta = delta, entropies = e},
     ("a patch starts where the entropy rises by > %.3f"):format(delta)},
}
for _, s in ipairs(schemes) do
    local name, opts, rule = s[1], s[2], s[3]
    local lengths = show.lengths(SENTENCE, opts)
    local st = patching.stats {lengths}
    print()
    print(("  %s: %s"):format(name, rule))
    print("    " .. show.render(SENTENCE, lengths, {color = color}))
    print(("    %d patches, mean %.2f bytes/patch"):format(st.patches, st.mean))
end

local entropy_png
if plot.available() then
    entropy_png = plot_entropy.plot {text = SENTENCE, entropies = e, threshold = theta, path = run_dir .. "/entropy.png",
                                     title = "Demo ByteLM, next-byte entropy"}
    print()
    print(("Entropy figure (entropy per byte, the threshold, the patch starts): %s"):format(entropy_png))
else
    print("\n(gnuplot is missing: no PNGs; `make deps` installs gnuplot-nox)")
end

section("3/3 Summary")
print(("Validation: %.4f bits/byte over %d held-out bytes (the last %g%% of the corpus; %d training steps)")
      :format(result.val_bpb, result.val_bytes, 100 * cfg.data.val_fraction, result.steps))
print(("Run folder %s/:"):format(run_dir))
print("  checkpoint.h5  model weights, optimiser state and config (HDF5; `h5ls -r` lists it)")
print("  metrics.h5     training loss, learning rate, validation bits/byte per step (HDF5)")
print("  config.json    every setting of the run; result.json: how it ended, final bits/byte, time")
if result.plot then print("  loss.png       the training curve in bits/byte") end
if entropy_png then print("  entropy.png    the sentence's entropies, threshold and patch starts") end
print("Try it on your own text:")
print(("  scripts/show_patches scheme=entropy threshold=%.4f model=%s \"your text\""):format(theta,
      result.checkpoint))
print(("  ./blt scripts/plot_entropy.lua model=%s target=%g out=my.png \"your text\""):format(result.checkpoint,
      TARGET))
print(("Demo finished in %.0f s."):format(core.now() - T0))
