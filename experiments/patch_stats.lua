-- Patch statistics of every scheme on a corpus's validation split.
--   ./blt experiments/patch_stats.lua [key=value ...]     (--help lists the keys)
--   ./blt experiments/patch_stats.lua model=runs/entropy-1/checkpoint.h5 target=4.5 plot=patch_sizes.png
-- Entropies come from the entropy model (cached per corpus and model in HDF5). The
-- thresholds of entropy and entropy_delta are calibrated to `target` bytes per patch
-- on a seeded sample of rows drawn from the whole split (calib_bytes of them, seed
-- calib_seed); then every scheme patches the whole split in rows of `row` bytes, and
-- the mean reached is reported on the sample and on the whole split. Prints
-- mean/median/max patch length and writes a histogram PNG.
local blt = require "blt"
local config = require "blt.config"
local data = require "blt.data"
local entropy = require "blt.entropy"
local patching = require "blt.patching"

local opts = config.script {
    name = "patch_stats",
    usage = "usage: ./blt experiments/patch_stats.lua [key=value ...] [--config FILE.lua]",
    args = arg,
    defaults = {model = "runs/entropy-1/checkpoint.h5", target = 4.5, row = 512, max_bytes = 0, data = config.OPTIONAL,
                fixed = 4, plot = config.OPTIONAL, calib_bytes = 65536, calib_seed = 1},
    docs = {model = "entropy model checkpoint", target = "mean bytes per patch the thresholds are calibrated to",
            row = "bytes per row", max_bytes = "validation bytes used (0: all)", data = "corpus (unset: the default corpus)",
            fixed = "patch size of the fixed scheme", plot = "histogram PNG to write (unset: none)",
            calib_bytes = "bytes of the calibration sample (rows drawn from the whole split)",
            calib_seed = "seed of the calibration sample"},
    rules = {target = "> 1", row = ">= 2", max_bytes = ">= 0", fixed = ">= 1", calib_bytes = ">= 1", calib_seed = ">= 0",
             model = "readable", data = "readable"},
}
if not opts then return end -- --help

local corpus = data.open(opts.data)
local ents, cache, hit, rate = entropy.corpus(opts.model, corpus, {split = "val", max_bytes = opts.max_bytes})
print(("entropies: %d validation positions from %s (%s)"):format(ents:numel() - 1, cache,
      hit and "cache hit" or ("computed at " .. math.floor(rate) .. " bytes/s")))

-- rows [BOS, row bytes] over the split; entropies from the long-context pass
local n = ents:numel() - 1
local R = opts.row
local B = n // R
local info = corpus:info()
local ids = corpus:ids(info.train + 1, B * R):reshape({B, R})
local rows = blt.concat({blt.ones({B, 1}, "int32"), ids}, 2)
local E = blt.narrow(ents, 1, 1, B * R + 1)
-- row b's entropies: positions b*R .. b*R+R of the long row (position b*R stands in for BOS)
local erows = blt.zeros({B, R + 1})
for b = 0, B - 1 do blt.narrow(erows, 1, b + 1, 1):copy(blt.narrow(E, 1, b * R + 1, R + 1):reshape({1, R + 1})) end

-- calibration sample: rows drawn without replacement from the whole split
local cb = math.max(1, math.min(B, opts.calib_bytes // R))
local pick = patching.sample_rows(B, cb, opts.calib_seed)
local crows, cents = blt.index_select(rows, 1, pick), blt.index_select(erows, 1, pick)
local theta, got = patching.calibrate {scheme = "entropy", target = opts.target, rows = crows, entropies = cents}
local delta, got_d = patching.calibrate {scheme = "entropy_delta", target = opts.target, rows = crows, entropies = cents}
print(("calibration on %d rows of %d bytes sampled across the split (seed %d) to %.2f bytes/patch:")
      :format(cb, R, opts.calib_seed, opts.target))
print(("  entropy threshold %.4f (reached %.3f on the sample), entropy_delta %.4f (reached %.3f on the sample)")
      :format(theta, got, delta, got_d))

local schemes = {
    {"fixed", {scheme = "fixed", size = opts.fixed}, ("size %d"):format(opts.fixed)},
    {"space", {scheme = "space"}, ""},
    {"entropy", {scheme = "entropy", threshold = theta}, ("threshold %.4f"):format(theta)},
    {"entropy_delta", {scheme = "entropy_delta", delta = delta}, ("delta %.4f"):format(delta)},
}
print(("\n%-14s %-18s %8s %8s %6s %10s"):format("scheme", "parameter", "mean", "median", "max", "patches"))
local series = {}
local result = {}
for _, s in ipairs(schemes) do
    local p = patching.patcher(s[2])
    local lengths = p:batch(rows, erows)
    local st = patching.stats(lengths)
    print(("%-14s %-18s %8.3f %8g %6d %10d"):format(s[1], s[3], st.mean, st.median, st.max, st.patches))
    result[s[1]] = st
    local xs, ys = {}, {}
    for len = 1, math.min(st.max, 24) do xs[#xs + 1], ys[#ys + 1] = len, (st.histogram[len] or 0) / st.patches end
    series[#series + 1] = {name = s[1], x = xs, y = ys}
end
print(("(%d rows of %d bytes; BOS patches excluded)"):format(B, R))
print(("calibrated to %.2f bytes/patch: entropy reached %.3f on the sample and %.3f on the whole split; "
       .. "entropy_delta %.3f and %.3f"):format(opts.target, got, result.entropy.mean, got_d, result.entropy_delta.mean))
if opts.plot then
    local plot = require "blt.plot"
    plot.lines {path = opts.plot, title = "patch length distribution, validation split", xlabel = "bytes per patch",
                ylabel = "fraction of patches", series = series}
    print("histogram: " .. opts.plot)
end
return result
