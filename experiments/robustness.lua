-- Robustness to character-level noise (the BLT paper's noised-input angle, at small
-- scale): how much harder trained models find it to predict the validation text
-- once it is noised.
--
--   ./blt experiments/robustness.lua models=runs/a/checkpoint.h5,runs/b/checkpoint.h5 [rate=0.05] [seed=1]
--   ./blt experiments/robustness.lua runs_dir=runs [kinds=clean,case,swap] [max_bytes=32768] [out=runs/robustness]
--
-- The text: the first max_bytes ids of the validation split of the corpus (data=, else
-- the first model's data.path, else the default corpus; val_fraction likewise). Each
-- noise kind (blt.noise: case, swap, drop, repeat, whitespace, and clean) is applied to
-- it with the same rate and seed for every model; document k of the split uses seed
-- seed + k - 1. The noised text is written to a temporary folder (one file per
-- document) and read back as a corpus whose whole stream is validation, then scored in
-- the trainer's validation windows (rows [BOS, seq_len ids], train.evaluate), the same
-- windows for every model.
--
-- Normalisation: bits per byte OF THE NOISED TEXT, i.e. summed nats over every
-- predicted id of the noised stream (its bytes and each document's EOS) divided by
-- ln 2 times their count; "rise" is that minus the model's clean figure. (The paper
-- reports task accuracy on noised inputs; this reports how much worse the model
-- predicts noised text.) A drop shortens the text and a repeat lengthens it: each is
-- normalised by its own length.
--
-- Prints a table (model x kind), writes OUT.h5 and OUT.json (the same numbers) and
-- OUT.png (grouped bars: the rise per kind, one bar per model).
local blt = require "blt"
local config = require "blt.config"
local core = require "blt.core"
local data = require "blt.data"
local ids = require "blt.ids"
local json = require "blt.json"
local models = require "blt.models"
local noise = require "blt.noise"
local plot = require "blt.plot"
local train = require "blt.train"

local function positive(v)
    if v ~= nil and (math.type(v) ~= "integer" or v < 1) then return "must be an integer >= 1" end
end

local experiment = require "blt.experiment"
local kinds_rule = experiment.list_rule(noise.KINDS, "noise kind")

local opts = config.script {
    name = "robustness", args = arg,
    usage = [[
usage: ./blt experiments/robustness.lua (models=CKPT[,CKPT...] | runs_dir=DIR) [key=value ...]
Bits per byte of each model on the validation text under seeded character-level noise (one
rate for every kind), and the rise over the clean text; a table, OUT.h5, OUT.json and OUT.png.]],
    defaults = {models = config.OPTIONAL, runs_dir = config.OPTIONAL, data = config.OPTIONAL,
                val_fraction = config.OPTIONAL, kinds = table.concat(noise.KINDS, ","), rate = 0.05, seed = 1,
                max_bytes = 32768, seq_len = config.OPTIONAL, batch = 8, out = "runs/robustness", plot = true},
    docs = {models = "checkpoints, comma-separated (labels: their folders' names)",
            runs_dir = "a folder of runs: every <run>/checkpoint.h5 in it",
            data = "corpus whose validation split is noised (unset: the first model's data.path, else the default corpus)",
            val_fraction = "validation fraction of that corpus (unset: the first model's, else 0.1)",
            kinds = "noise kinds, comma-separated (" .. table.concat(noise.KINDS, ", ") .. ")",
            rate = "probability that each eligible character is noised", seed = "noise seed",
            max_bytes = "validation ids taken before noising (0: the whole split)",
            seq_len = "bytes per row, the same for every model (unset: the smallest train.seq_len of the models)",
            batch = "rows per forward pass", out = "results path prefix: OUT.h5, OUT.json, OUT.png",
            plot = "write OUT.png"},
    rules = {rate = "[0, 1]", seed = ">= 0", max_bytes = ">= 0", seq_len = positive, batch = ">= 1",
             kinds = kinds_rule, data = "readable", val_fraction = "(0, 1]", runs_dir = "readable",
             out = function(v) if v == "" then return "must not be empty" end end},
}
if not opts then return end -- --help

local function fail(fmt, ...)
    io.stderr:write("robustness: ", fmt:format(...), "\n")
    os.exit(2)
end

local function basename(p) return (p:gsub("/+$", ""):match("([^/]+)$")) or p end
local function dirname(p) return p:match("^(.*)/[^/]*$") or "." end
local function readable(p)
    local f = require("blt.util").open_read(p)
    if f then f:close() end
    return f ~= nil
end

-- ---- the checkpoints and their labels ----
local ckpts = {}
if opts.models then
    for p in tostring(opts.models):gmatch("[^,]+") do ckpts[#ckpts + 1] = p end
end
if opts.runs_dir then
    local names = core.listdir(opts.runs_dir)
    if not names then fail("runs_dir=%s: not a folder", opts.runs_dir) end
    table.sort(names)
    local found = 0
    for _, n in ipairs(names) do
        local p = opts.runs_dir:gsub("/+$", "") .. "/" .. n .. "/checkpoint.h5"
        if readable(p) then ckpts[#ckpts + 1], found = p, found + 1 end
    end
    if found == 0 then fail("runs_dir=%s: no <run>/checkpoint.h5 in it", opts.runs_dir) end
end
if #ckpts == 0 then fail("give models=CKPT[,CKPT...] or runs_dir=DIR") end

local entries, labels_seen = {}, {}
for i, p in ipairs(ckpts) do
    if not readable(p) then fail("models: %s cannot be read", p) end
    local ok, model, run = pcall(models.load, p)
    if not ok then
        local msg = tostring(model):gsub("^[^:]*%.lua:%d+: ", ""):gsub("^blt%.models%.load: ", ""):gsub("^checkpoint%.load: ", "")
        if msg:sub(1, #p + 2) == p .. ": " then msg = msg:sub(#p + 3) end -- the path is said once
        fail("models: %s: %s", p, msg)
    end
    -- a run's checkpoint is named after its folder; a loose file after itself
    local label = basename(p) == "checkpoint.h5" and basename(dirname(p)) or basename(p):gsub("%.h5$", "")
    if labels_seen[label] then label = label .. "#" .. i end
    labels_seen[label] = true
    entries[i] = {path = p, label = label, model = model, cfg = run.config or {}, step = run.step or 0}
end

local first = entries[1].cfg
local seq_len = opts.seq_len
if not seq_len then
    for _, e in ipairs(entries) do
        local s = e.cfg.train and e.cfg.train.seq_len or 256
        seq_len = seq_len and math.min(seq_len, s) or s
    end
end

-- ---- the validation text, as documents (the split may span several) ----
local data_path = opts.data or (first.data and first.data.path)
if data_path and not opts.data and not readable(data_path) and not core.listdir(data_path) then
    fail("the first model's data.path %s cannot be read: give data=", data_path)
end
local vf = opts.val_fraction or (first.data and first.data.val_fraction) or 0.1
local okc, corpus = pcall(data.open, data_path, {val_fraction = vf})
if not okc then fail("data=%s: %s", tostring(data_path or "(default corpus)"), tostring(corpus):gsub("^blt%.data%.open: ", "")) end
local info = corpus:info()
local n = info.val
if opts.max_bytes > 0 then n = math.min(n, opts.max_bytes) end
if n < 1 then fail("the validation split of %s is empty", tostring(data_path or "the default corpus")) end
local docs, cur = {}, {}
for _, id in ipairs(corpus:ids(info.train + 1, n):totable()) do
    if id == ids.EOS then
        docs[#docs + 1], cur = table.concat(cur), {}
    elseif id >= ids.OFFSET then
        cur[#cur + 1] = string.char(id - ids.OFFSET)
    end
end
if #cur > 0 then docs[#docs + 1] = table.concat(cur) end -- cut by max_bytes: the reader ends it with EOS
corpus:close()

print(("robustness: %d models; text: %d validation ids of %s (val_fraction %g), %d document(s); rate %g, seed %d; "
       .. "rows [BOS, %d bytes]"):format(#entries, n, tostring(data_path or "the default corpus"), vf, #docs,
       opts.rate, opts.seed, seq_len))

-- ---- noise, then score every model on the same noised corpus ----
local kinds = {}
for _, k in ipairs(experiment.words(opts.kinds)) do kinds[#kinds + 1] = k end
local tmp = assert(core.mkdtemp()) -- private, removed by cleanup()
local function cleanup() core.rm_rf(tmp) end

local results = {} -- results[kind] = {bytes =, edits =, bpb = {per model}}
for _, kind in ipairs(kinds) do
    local dir = tmp .. "/" .. kind
    assert(core.mkdir(dir))
    local edits, written = 0, 0
    for k, text in ipairs(docs) do
        local noised, e = noise.apply(kind, text, {rate = opts.rate, seed = opts.seed + k - 1})
        edits = edits + e
        if #noised > 0 then
            local f = assert(io.open(("%s/%06d.txt"):format(dir, k), "wb"))
            f:write(noised)
            f:close()
            written = written + 1
        end
    end
    if written == 0 then cleanup() fail("kind %s at rate %g leaves no text to score", kind, opts.rate) end
    local noisy = data.open(dir, {val_fraction = 1})
    local r = {bytes = noisy:info().val, edits = edits, bpb = {}}
    for i, e in ipairs(entries) do
        local t0 = core.now()
        local bpb, count = train.evaluate(e.model, noisy, {seq_len = seq_len + 1, batch = opts.batch})
        assert(count == r.bytes, "every noised id is predicted once")
        r.bpb[i] = bpb
        io.stderr:write(("  %-10s %-20s %.4f bits/byte over %d ids (%.1f s)\n"):format(kind, e.label, bpb, count,
                        core.now() - t0))
    end
    noisy:close()
    results[kind] = r
end
cleanup()

-- the rise over clean: computed even when clean is not among the kinds asked for
local clean = results.clean
if not clean then
    clean = {bpb = {}}
    local dir = tmp .. "/clean"
    assert(core.mkdir(dir))
    for k, text in ipairs(docs) do
        if #text > 0 then
            local f = assert(io.open(("%s/%06d.txt"):format(dir, k), "wb"))
            f:write(text)
            f:close()
        end
    end
    local c = data.open(dir, {val_fraction = 1})
    for i, e in ipairs(entries) do clean.bpb[i] = train.evaluate(e.model, c, {seq_len = seq_len + 1, batch = opts.batch}) end
    c:close()
    cleanup()
end
for _, kind in ipairs(kinds) do
    local r = results[kind]
    r.rise = {}
    for i = 1, #entries do r.rise[i] = r.bpb[i] - clean.bpb[i] end
end

-- ---- the table ----
local w = 12
for _, e in ipairs(entries) do w = math.max(w, #e.label) end
-- padded by hand: string.format takes widths up to 99 only, and a label is a folder's name
local function pad(label) return label .. (" "):rep(w - #label) end
local head = {pad("model") .. (" %10s"):format("clean bpb")}
for _, kind in ipairs(kinds) do if kind ~= "clean" then head[#head + 1] = ("%11s"):format(kind) end end
print("\nrise in bits per byte of the noised text over the clean text (rate " .. opts.rate .. ")")
print(table.concat(head, " "))
for i, e in ipairs(entries) do
    local row = {pad(e.label) .. (" %10.4f"):format(clean.bpb[i])}
    for _, kind in ipairs(kinds) do
        if kind ~= "clean" then row[#row + 1] = ("%+11.4f"):format(results[kind].rise[i]) end
    end
    print(table.concat(row, " "))
end
local erow = {pad("edits") .. (" %10s"):format("")}
for _, kind in ipairs(kinds) do if kind ~= "clean" then erow[#erow + 1] = ("%11d"):format(results[kind].edits) end end
print(table.concat(erow, " "))

-- ---- the files ----
local out_dir = dirname(opts.out)
if out_dir ~= "." then
    local ok, err = core.mkdir(out_dir)
    if not ok then fail("out=%s: %s", opts.out, err) end
end
local labels, paths = {}, {}
for i, e in ipairs(entries) do labels[i], paths[i] = e.label, e.path end
local NORMALISATION = "bits per byte of the noised text: summed nats over its predicted ids (bytes and EOS) / (ln 2 * their count)"
local doc = {models = labels, checkpoints = paths, kinds = kinds, rate = opts.rate, seed = opts.seed,
             max_bytes = opts.max_bytes, seq_len = seq_len, data = data_path or "(default corpus)", val_fraction = vf,
             clean_bpb = clean.bpb, normalisation = NORMALISATION, results = {}}
for _, kind in ipairs(kinds) do
    local r = results[kind]
    doc.results[kind] = {bpb = r.bpb, rise = r.rise, bytes = r.bytes, edits = r.edits}
end
local jf = io.open(opts.out .. ".json", "wb")
if not jf then fail("out=%s: cannot write %s.json", opts.out, opts.out) end
jf:write(json.encode(doc), "\n")
jf:close()

local okh, herr = pcall(function()
    local f = blt.h5_create(opts.out .. ".h5")
    f:set_attr("format", "blt-robustness")
    f:set_attr("models_json", json.encode(labels))
    f:set_attr("checkpoints_json", json.encode(paths))
    f:set_attr("kinds_json", json.encode(kinds))
    f:set_attr("data", doc.data)
    f:set_attr("normalisation", NORMALISATION)
    f:set_attr("seed", opts.seed)
    f:set_attr("seq_len", seq_len)
    f:set_attr("max_bytes", opts.max_bytes)
    f:write("/rate", opts.rate + 0.0, "float64")
    f:write("/val_fraction", vf + 0.0, "float64")
    f:write("/clean_bpb", clean.bpb, "float64")
    for _, kind in ipairs(kinds) do
        local r = results[kind]
        f:write("/" .. kind .. "/bpb", r.bpb, "float64")   -- one per model, in models_json order
        f:write("/" .. kind .. "/rise", r.rise, "float64")
        f:write("/" .. kind .. "/bytes", r.bytes, "int64") -- predicted ids of the noised text
        f:write("/" .. kind .. "/edits", r.edits, "int64")
    end
    f:commit()
end)
if not okh then fail("out=%s: cannot write %s.h5: %s", opts.out, opts.out, tostring(herr)) end
print(("\nresults: %s.h5, %s.json"):format(opts.out, opts.out))

if opts.plot then
    if not plot.available() then
        io.stderr:write("robustness: gnuplot is not installed, no PNG (make deps installs gnuplot-nox)\n")
    else
        local series = {}
        for i, e in ipairs(entries) do
            local y = {}
            for j, kind in ipairs(kinds) do y[j] = results[kind].rise[i] end
            series[i] = {name = e.label, y = y}
        end
        plot.bars {path = opts.out .. ".png", categories = kinds, series = series, xlabel = "noise kind",
                   ylabel = "rise in bits per byte", title = ("bits per byte of noised validation text minus clean "
                   .. "(rate %g, seed %d, %d ids)"):format(opts.rate, opts.seed, n)}
        print("plot: " .. opts.out .. ".png")
    end
end
