-- Patch statistics of every scheme on a corpus's validation split.
--   ./blt experiments/patch_stats.lua [model=runs/entropy-1/checkpoint.h5] [target=4.5]
--                                     [row=512] [max_bytes=0] [data=PATH] [fixed=4] [plot=patch_sizes.png]
-- Entropies come from the entropy model (cached per corpus and model in HDF5);
-- thresholds for entropy and entropy_delta are calibrated to `target` bytes per
-- patch on the first 64 KB, then every scheme patches the whole split in rows of
-- `row` bytes. Prints mean/median/max patch length and writes a histogram PNG.
local blt = require "blt"
local core = require "blt.core"
local data = require "blt.data"
local entropy = require "blt.entropy"
local patching = require "blt.patching"

local opts = {model = "runs/entropy-1/checkpoint.h5", target = 4.5, row = 512, max_bytes = 0, data = nil, fixed = 4,
              plot = nil, calib_bytes = 65536}
for _, a in ipairs(arg) do
    local k, v = a:match("^([%w_]+)=(.*)$")
    if not k or opts[k] == nil and k ~= "data" and k ~= "plot" then
        io.stderr:write("patch_stats: unknown argument '", a, "' (model=, target=, row=, max_bytes=, data=, fixed=, plot=, calib_bytes=)\n")
        os.exit(2)
    end
    opts[k] = tonumber(v) or v
end
if not io.open(opts.model) then
    io.stderr:write(("patch_stats: no entropy model at %s: train one with ./blt experiments/train_entropy_model.lua\n")
                    :format(opts.model))
    os.exit(2)
end

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

local cb = math.max(1, math.min(B, opts.calib_bytes // R))
local crows, cents = blt.narrow(rows, 1, 1, cb), blt.narrow(erows, 1, 1, cb)
local theta, got = patching.calibrate {scheme = "entropy", target = opts.target, rows = crows, entropies = cents}
local delta, got_d = patching.calibrate {scheme = "entropy_delta", target = opts.target, rows = crows, entropies = cents}
print(("calibration on %d bytes to %.2f bytes/patch: entropy threshold %.4f (reached %.3f), entropy_delta %.4f (reached %.3f)")
      :format(cb * R, opts.target, theta, got, delta, got_d))

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
if opts.plot then
    local plot = require "blt.plot"
    plot.lines {path = opts.plot, title = "patch length distribution, validation split", xlabel = "bytes per patch",
                ylabel = "fraction of patches", series = series}
    print("histogram: " .. opts.plot)
end
return result
