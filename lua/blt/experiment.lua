-- blt.experiment: what compare_patching.lua and scaling.lua share: the budgets (model
-- sizes, batch, steps), the point of each scheme (its training script, config and
-- expected FLOPs per byte), the measures read back from a finished run, the results
-- file and the plots.
--
-- A scheme is one of the BLT patching schemes (fixed, space, entropy, entropy_delta),
-- "bytelm" (the plain byte-level transformer) or "bpe" (the token baseline, kind
-- bpe_lm). Every point is an ordinary training run (blt.sweep).
local core = require "blt.core"
local flops = require "blt.flops"
local models = require "blt.models"
local patching = require "blt.patching"
local sweep = require "blt.sweep"

local experiment = {}

local BLT_SCHEMES = {fixed = true, space = true, entropy = true, entropy_delta = true}
experiment.BLT_SCHEMES = BLT_SCHEMES -- the built-in schemes the comparisons offer by default

-- The patching scheme (blt.schemes) a comparison's word names: a registered one or
-- file:PATH; nil for the baselines (bytelm, bpe).
local function blt_scheme(word)
    local schemes = require "blt.schemes"
    if not schemes.known(word) then return nil end
    return schemes.get(word)
end
experiment.blt_scheme = blt_scheme

-- A model kind file's word (model:PATH) in a comparison: the kind, read, run in its
-- sandbox and registered (blt.kindfile); its baseline point trains it with
-- experiments/train_model.lua model.file=PATH. nil for any other word.
local KIND_PREFIX = "model:"
function experiment.kind_file(w)
    if type(w) ~= "string" or w:sub(1, #KIND_PREFIX) ~= KIND_PREFIX then return nil end
    local K = models.adopt(require("blt.kindfile").load(w:sub(#KIND_PREFIX + 1)))
    if not (K.sweep and K.point) then
        error(("the kind %s has no sweep and point (docs/extending.md): it cannot join a comparison"):format(K.kind), 0)
    end
    return K
end

-- Whether a comparison's word names a file: a scheme file (file:PATH) or a kind file (model:PATH).
function experiment.is_file_word(w)
    return type(w) == "string" and (w:sub(1, 5) == "file:" or w:sub(1, #KIND_PREFIX) == KIND_PREFIX)
end

-- A scheme file's word (file:PATH) in a comparison: its label (the scheme's name, which
-- names its points and rows) or nil and what is wrong (said of the word); a kind file's
-- (model:PATH) label is its baseline word.
function experiment.scheme_file_label(w)
    local okk, K = pcall(experiment.kind_file, w)
    if not okk then return nil, ("cannot be used: %s"):format(require("blt.util").message(K)) end
    if K then return K.sweep.word end
    local schemes = require "blt.schemes"
    if not schemes.is_file(w) then return nil end
    local ok, sc = pcall(schemes.get, w)
    if not ok then return nil, ("cannot be used: %s"):format(tostring(sc):gsub("^patching%.scheme = [^:]*:[^:]*: ", "")) end
    return sc.name
end

-- The rule of a comparison's schemes= list: the allowed words or file:PATH (a scheme
-- file, identified by its name), at least one, none twice.
function experiment.scheme_list_rule(allowed)
    local ok = {}
    for _, a in ipairs(allowed) do ok[a] = true end
    return experiment.list_of("scheme", function(w)
        if ok[w] then return w end
        local label, err = experiment.scheme_file_label(w)
        if label then return label end
        return nil, err or ("is not a scheme (known: %s, or file:PATH)"):format(table.concat(allowed, ", "))
    end, allowed[1])
end

-- ---- a scheme file's own options in a comparison (scheme_options=) ----
experiment.SCHEME_OPTIONS_DOC = "a scheme file's own options, NAME:key=value,key=value (NAME: the scheme's name; "
    .. "several separated by spaces), as patching.options= of train_blt.lua"

function experiment.scheme_options_rule(v)
    for w in v:gmatch("%S+") do
        if not w:match("^[%a_][%w_]*:[%w_]+=.+$") then
            return ("'%s' is not NAME:key=value[,key=value...] (NAME: a scheme file's name)"):format(w)
        end
    end
end

-- scheme_options= of a comparison whose scheme words are words: {[scheme name] = "k=v,..."},
-- each name a scheme file among the words, each option checked against that scheme
-- (blt.schemes.options: its names, types and rules). Raises the first problem.
function experiment.scheme_options(str, words)
    local schemes = require "blt.schemes"
    local files, names = {}, {}
    for _, w in ipairs(words) do
        local sc = schemes.is_file(w) and blt_scheme(w)
        if sc then files[sc.name], names[#names + 1] = sc, sc.name end
    end
    local out = {}
    for w in (str or ""):gmatch("%S+") do
        local name, opts = w:match("^([%a_][%w_]*):(.+)$")
        local sc = files[name]
        if not sc then
            error(("scheme_options = %s: %s is not the name of a scheme file in schemes= (%s)")
                :format(str, tostring(name), #names > 0 and table.concat(names, ", ") or "it has none"), 0)
        end
        if out[name] then error(("scheme_options = %s: gives %s twice"):format(str, name), 0) end
        local ok, err = pcall(schemes.options, sc, schemes.parse_options(opts, "scheme_options"))
        if not ok then error(("scheme_options = %s: %s"):format(str, require("blt.util").message(err)), 0) end
        out[name] = opts
    end
    return out
end

-- ---- budgets ----
-- steps: the reference run (the entropy BLT) whose training FLOPs are the budget when
-- tokens_per_param is 0 (compare_patching; else the budget is the reference's
-- compute-optimal FLOPs, experiment.optimal); evals: validation points along each run;
-- val_bytes: the validation bytes of every validation, periodic and final (0: the whole
-- split), the same for every model, so a run's curve and its final figure are measured
-- on the same text; calib_bytes: training bytes sampled for calibration and mean-patch
-- estimates; seeds: the default seed list; tokens_per_param: the compute-optimal data
-- ratio in BPE tokens per latent parameter (docs/experiments.md, "Protocol"); lr_grid:
-- multipliers of the learning-rate rule searched on the first seed ("1": the rule alone).
-- medium is sized from FLOP counts at experiment.ASSUMED_RATE, the smallest models that
-- leave the unigram plateau at 20 tokens per parameter: about 4-5e12 training FLOPs a
-- study, 7-9 minutes at that rate on 2 cores (plan=true prints the expected time at a
-- rate measured then).
local PRESETS = { -- each kind's part (P.blt, P.bytelm, P.bpe) comes from its module's presets.compare
    smoke = {
        batch = 4, seq_len = 64, steps = 12, evals = 2, val_bytes = 4096, calib_bytes = 4096,
        seeds = "1", tokens_per_param = 0, lr_grid = "1",
        entropy = {steps = 30, model = {dim = 32, layers = 1, heads = 2, window = 64, multiple_of = 32}},
    },
    medium = {
        batch = 16, seq_len = 128, steps = 0, evals = 4, val_bytes = 32768, calib_bytes = 32768,
        seeds = "1,2,3", tokens_per_param = 20, lr_grid = "1",
        entropy = {steps = 150, model = {dim = 32, layers = 1, heads = 2, window = 128, multiple_of = 32}},
    },
    small = {
        batch = 16, seq_len = 256, steps = 0, evals = 4, val_bytes = 131072, calib_bytes = 65536,
        seeds = "1,2,3", tokens_per_param = 20, lr_grid = "1",
        entropy = {steps = 300, model = {dim = 32, layers = 1, heads = 2, window = 256, multiple_of = 32}},
    },
    -- the demo's models and batch (experiments/demo.lua; its own steps)
    demo = {
        batch = 16, seq_len = 256, steps = 200, evals = 4, val_bytes = 131072, calib_bytes = 65536,
        seeds = "1", tokens_per_param = 0, lr_grid = "1",
        entropy = {steps = 200, model = {dim = 128, layers = 2, heads = 4, window = 256, multiple_of = 128}},
    },
    full = {
        batch = 32, seq_len = 512, steps = 0, evals = 10, val_bytes = 262144, calib_bytes = 262144,
        seeds = "1,2,3", tokens_per_param = 20, lr_grid = "0.5,1,2",
        entropy = {steps = 1000, model = {dim = 256, layers = 4, heads = 4, window = 512, multiple_of = 256}},
    },
}
experiment.BUDGETS = {"smoke", "medium", "small", "full"}

-- The training FLOP rate (FLOP/s, as blt.flops counts them) the medium budget was sized
-- with: 10 G/s. The README's compare_patching runs spent 73-80 G/s of counted training
-- FLOPs on 2 cores at widths 192-256; ByteLM steps of width 32-64 measured beside width
-- 256 in one process (experiment.measured_rate, under a shared machine's load) ran at a
-- quarter to a tenth of its rate (per-step work that does not scale with the products).
-- plan=true measures each size's rate on the machine it runs on instead.
experiment.ASSUMED_RATE = 10e9

local function deep_copy(t)
    if type(t) ~= "table" then return t end
    local o = {}
    for k, v in pairs(t) do o[k] = deep_copy(v) end
    return o
end

experiment.deep_copy = deep_copy

-- Every model kind's module that loads (blt.models), in models.kinds() order.
local function kind_modules()
    local out = {}
    for _, k in ipairs(models.kinds()) do
        local okm, M = pcall(models.get, k)
        if okm then out[#out + 1] = M end
    end
    return out
end

-- Adds every kind's part of a budget (M.presets[which][name] as P[M.preset_key]).
local function with_kinds(p, which, name)
    for _, M in ipairs(kind_modules()) do
        local pre = M.preset_key and M.presets and M.presets[which]
        -- a kind written before the medium budget existed takes its small part there
        local part = pre and (pre[name] or (name == "medium" and pre.small))
        if part then p[M.preset_key] = deep_copy(part) end
    end
    return p
end

function experiment.preset(name)
    local p = PRESETS[name] and with_kinds(deep_copy(PRESETS[name]), "compare", name)
    if not p then error(("blt.experiment: unknown budget '%s' (%s)"):format(tostring(name), table.concat(experiment.BUDGETS, ", ")), 2) end
    p.name = name
    return p
end

-- The budgets of scaling.lua: the fixed parts (local model, batch, rows, baselines'
-- vocabulary) and the list of model sizes (global width x depth; the baselines take
-- the same width and depth); tokens_per_param: the compute-optimal data ratio (BPE
-- tokens per latent parameter, as bytes through the measured bytes per token);
-- infer_size: the reference size of the fixed-inference study, overtrain: how many
-- times its compute-optimal steps those models train; seeds, lr_grid as above.
local SCALING = { -- each kind's part comes from its module's presets.scaling
    smoke = {
        batch = 4, seq_len = 64, evals = 2, val_bytes = 4096, calib_bytes = 4096,
        sizes = "32x1,64x1", tokens_per_param = 0.02, infer_size = "128x1", overtrain = 2,
        seeds = "1", lr_grid = "1",
        entropy = PRESETS.smoke.entropy,
    },
    medium = {
        batch = 16, seq_len = 128, evals = 4, val_bytes = 32768, calib_bytes = 32768,
        sizes = "16x1,24x1,32x1", tokens_per_param = 20, infer_size = "32x1", overtrain = 2,
        seeds = "1,2,3", lr_grid = "1",
        entropy = PRESETS.medium.entropy,
    },
    small = {
        batch = 8, seq_len = 128, evals = 4, val_bytes = 65536, calib_bytes = 65536,
        -- infer_size 96x2: the smallest BPE model whose inference budget the BLTs' local and
        -- entropy models leave room in (their global widths come out at 36-54)
        sizes = "32x1,32x2,64x2", tokens_per_param = 20, infer_size = "96x2", overtrain = 2,
        seeds = "1,2,3", lr_grid = "1",
        -- small local models and entropy model, so that the global model is most of a BLT's FLOPs
        entropy = {steps = 300, model = {dim = 64, layers = 1, heads = 2, window = 128, multiple_of = 64}},
    },
    full = {
        batch = 16, seq_len = 512, evals = 8, val_bytes = 262144, calib_bytes = 262144,
        sizes = "128x2,192x3,256x4,384x6,512x8", tokens_per_param = 20, infer_size = "256x4", overtrain = 4,
        seeds = "1,2,3", lr_grid = "0.5,1,2",
        entropy = PRESETS.full.entropy,
    },
}

function experiment.scaling_preset(name)
    local p = SCALING[name] and with_kinds(deep_copy(SCALING[name]), "scaling", name)
    if not p then error(("blt.experiment: unknown budget '%s' (%s)"):format(tostring(name), table.concat(experiment.BUDGETS, ", ")), 2) end
    p.name = name
    return p
end

-- ---- the keys every experiment script has ----

-- data.* (the corpus) and args.* (extra words for the training runs), merged into a
-- script's own defaults, docs and rules (families: the args.* keys it takes).
function experiment.with_common(defaults, docs, rules, families)
    defaults.data = {path = require("blt.config").OPTIONAL, val_fraction = 0.1}
    docs.data = {path = "corpus file or folder (unset: the default corpus)",
                 val_fraction = "held-out fraction (a folder split by documents has its own split; docs/data.md)"}
    rules["data.path"], rules["data.val_fraction"] = "readable", "(0, 1)"
    local words = {all = "extra key=value words for every training run",
                   blt = "extra key=value words for the BLT runs (e.g. model.global.layers=6)",
                   bytelm = "extra key=value words for the ByteLM runs", bpe = "extra key=value words for the BPE runs",
                   entropy = "extra key=value words for the entropy model's run"}
    defaults.ranks, docs.ranks, rules.ranks = 1, "processes per training run (> 1: data parallel under mpirun)", "[1, 4096]"
    defaults.hostfile, docs.hostfile, rules.hostfile = require("blt.config").OPTIONAL,
        "mpirun hostfile of the machines the runs spread over (with ranks > 1)", "readable"
    defaults.args, docs.args = {all = ""}, {all = words.all}
    for _, f in ipairs(families) do
        defaults.args[f], docs.args[f] = "", words[f] or ("extra key=value words for the %s runs"):format(f)
    end
    -- args.* are checked here, with the rest of the command line, against the keys of the
    -- runs they go to: a typo stops the script before anything trains
    local kinds = {blt = "blt", entropy = "bytelm"}
    for _, M in ipairs(kind_modules()) do -- the baselines' families (M.sweep.family)
        if M.sweep then kinds[M.sweep.family] = M.kind end
    end
    local function words_rule(fams)
        return function(v)
            for _, f in ipairs(fams) do
                local msg = require("blt.train").words_problem(kinds[f], require("blt.sweep").split_words(v))
                if msg then return ("%s (for the %s runs; each word is key=value, separated by spaces)"):format(msg, f) end
            end
        end
    end
    rules["args.all"] = words_rule(families)
    for _, f in ipairs(families) do rules["args." .. f] = words_rule({f}) end
    return defaults, docs, rules
end

-- config.script for an experiment: its own keys plus data.* and args.<families>.
-- spec.studies: data.path defaults to the studies corpus (the script sets it, data.studies_corpus).
function experiment.script(spec, families)
    experiment.with_common(spec.defaults, spec.docs, spec.rules, families)
    if spec.studies then spec.docs.data.path = "corpus file or folder (unset: the studies corpus, data/studies, built on first use; docs/data.md)" end
    return require("blt.config").script(spec)
end

-- ---- config rules and lists ----

function experiment.words(s)
    local out = {}
    for w in tostring(s):gmatch("[^,%s]+") do out[#out + 1] = w end
    return out
end

function experiment.ints(s)
    local out = {}
    for _, w in ipairs(experiment.words(s)) do out[#out + 1] = math.tointeger(tonumber(w)) end
    return out
end

-- Every list key's rule is made by list_of: its items, at least one, and no item twice
-- (a repeated seed or scheme would train the same point twice, into the same folder).
-- item(w) returns the item's identity (two ways of writing one item give the same
-- one) or nil and what is wrong ("is not a seed ...", said of the item); example: a
-- valid item. experiment.LISTS[rule] is the example of each list rule (the tests find
-- every list key by it).
experiment.LISTS = setmetatable({}, {__mode = "k"})
function experiment.list_of(what, item, example)
    local rule = function(v)
        local ws, seen = experiment.words(v), {}
        if #ws == 0 then return ("must list at least one %s, like %s"):format(what, example) end
        for _, w in ipairs(ws) do
            local id, err = item(w)
            if id == nil then return ("'%s' %s"):format(w, err) end
            if seen[id] then
                return ("lists the %s '%s' twice%s"):format(what, tostring(id),
                                                           seen[id] ~= w and (" ('%s' and '%s')"):format(seen[id], w) or "")
            end
            seen[id] = w
        end
    end
    experiment.LISTS[rule] = example
    return rule
end

experiment.seed_list_rule = experiment.list_of("seed", function(w)
    local x = w:match("^%d+$") and math.tointeger(tonumber(w))
    if not x then return nil, "is not a seed (an integer >= 0)" end
    return x
end, "1")

-- A rule: a comma-separated list of allowed words (what: "scheme"), at least one, no repeats.
function experiment.list_rule(allowed, what)
    local ok = {}
    for _, a in ipairs(allowed) do ok[a] = true end
    return experiment.list_of(what or "item", function(w)
        if not ok[w] then return nil, ("is not a %s (known: %s)"):format(what or "known item", table.concat(allowed, ", ")) end
        return w
    end, allowed[1])
end

-- ---- points ----

-- Flat key=value args of a nested table under a prefix ("model" -> model.global.dim = ...).
local function flat(prefix, t, out)
    out = out or {}
    for k, v in pairs(t) do
        local key = prefix .. "." .. k
        if type(v) == "table" then flat(key, v, out) else out[key] = v end
    end
    return out
end
experiment.flat = flat

-- Args every run of a sweep shares: batch, rows, data, validation bytes.
function experiment.common_args(P, cfg)
    local a = {["train.batch"] = P.batch, ["train.seq_len"] = P.seq_len,
               ["data.val_fraction"] = cfg.data.val_fraction,
               ["eval.max_bytes"] = P.val_bytes, ["eval.final_max_bytes"] = P.val_bytes,
               ["out.plot"] = false}
    if cfg.data.path then a["data.path"] = cfg.data.path end
    return a
end

-- The extra command-line words of a family of runs (args.all, then args.<family>).
function experiment.extra(cfg, family)
    local parts = {}
    for _, w in ipairs {cfg.args.all, cfg.args[family]} do if w and w ~= "" then parts[#parts + 1] = w end end
    return table.concat(parts, " ")
end

local function merge(...)
    local out = {}
    for _, t in ipairs {...} do for k, v in pairs(t) do out[k] = v end end
    return out
end

-- Trains (or finds) an entropy model: point "entropy-model-s<seed>" (every seed of a
-- study trains its own, so the seeds' spread includes the entropy model's), or
-- "entropy-model" with seed 1 when no seed is given (the demo). Returns {path =
-- checkpoint, model = its model config}.
function experiment.entropy_model(s, P, cfg, common, seed)
    local steps = P.entropy.steps
    local args = merge(common, flat("model", P.entropy.model), {
        ["train.steps"] = steps, ["train.seed"] = seed or 1, ["train.warmup"] = math.max(1, steps // 10),
        ["eval.every"] = 0, ["eval.final_max_bytes"] = P.val_bytes})
    local id = seed and ("entropy-model-s%d"):format(seed) or "entropy-model"
    local r = s:run {id = id, script = "experiments/train_entropy_model.lua", args = args,
                     extra = experiment.extra(cfg, "entropy")}
    if r.stopped or r.failed then error("the entropy model's run did not finish: run the same command again", 0) end
    io.stderr:write(("%s: entropy model %s: %.4f bits/byte\n"):format(s.name, r.checkpoint, r.result.val_bpb or 0 / 0))
    return {path = r.checkpoint, model = r.config.model}
end

-- The entropy model of every seed, when one of the schemes needs entropies (plan: the
-- planned model, nothing trained). Returns {[seed] = {path, model}} or nil.
function experiment.entropy_models(s, P, cfg, common, seeds, words, plan)
    local need = false
    for _, w in ipairs(words) do
        local reg = blt_scheme(w)
        need = need or (reg and reg.needs_entropy) or false
    end
    if not need then return nil end
    local out = {}
    for _, seed in ipairs(seeds) do
        out[seed] = plan and {path = "(planned)", model = P.entropy.model} or experiment.entropy_model(s, P, cfg, common, seed)
    end
    return out
end

-- Mean bytes per patch of a scheme that needs no entropies (space, a scheme file) on a
-- training sample (as the trainer counts it: bytes over patches, the BOS patch left out).
local space_cache = {} -- the sample is the same for every model size: measured once
function experiment.space_mean_patch(corpus, P, scheme, options)
    scheme = scheme or "space"
    local sc = blt_scheme(scheme)
    local opts = options and require("blt.schemes").options(sc, require("blt.schemes").parse_options(options)) or sc.options
    local key = table.concat({tostring(corpus), P.seq_len, P.calib_bytes, scheme, options or ""}, " ")
    if space_cache[key] then return space_cache[key] end
    local rows = corpus:sample_windows {split = "train", len = P.seq_len, bytes = P.calib_bytes, seed = 1}
    local p = patching.patcher {scheme = sc.kernel and scheme or require("blt.schemes").rule(sc, opts)}
    local _, _, counts = p:batch(rows)
    local patches = 0
    for _, c in ipairs(counts:totable()) do patches = patches + c - 1 end
    space_cache[key] = rows:size(1) * P.seq_len / patches
    return space_cache[key]
end

-- Global (or baseline) heads of a width: 32-wide heads (RoPE needs even head sizes).
local function heads_of(w) return math.max(1, w // 32) end
experiment.heads_of = heads_of

-- "128x3" -> 128, 3
function experiment.size(s)
    local w, l = tostring(s):match("^%s*(%d+)x(%d+)%s*$")
    return math.tointeger(tonumber(w)), math.tointeger(tonumber(l))
end

experiment.size_list_rule = experiment.list_of("size", function(w)
    local d, l = experiment.size(w)
    if not d or d < 2 or l < 1 or (d // heads_of(d)) % 2 ~= 0 or d % heads_of(d) ~= 0 then
        return nil, "is not a size WIDTHxLAYERS with WIDTH a multiple of 32 (or an even number below 32)"
    end
    return ("%dx%d"):format(d, l)
end, "32x1")

-- A copy of a baseline's model config with o.size's width and depth (o.heads heads,
-- default: heads of 32 dimensions) when given.
function experiment.sized(base, o)
    local m = deep_copy(base)
    if o and o.size then m.dim, m.layers, m.heads = o.size[1], o.size[2], o.heads or heads_of(o.size[1]) end
    return m
end

-- The kind a comparison's baseline word names (its M.sweep.word: "bytelm", "bpe"), or nil.
function experiment.baseline(word)
    local K = experiment.kind_file(word)
    if K then return K end
    for _, M in ipairs(kind_modules()) do
        if M.sweep and M.sweep.word == word and M.point then return M end
    end
end

-- The words a comparison offers by default: the built-in BLT schemes, then every
-- kind's baseline word.
function experiment.sweep_words()
    local found = {}
    for _, M in ipairs(kind_modules()) do
        if M.sweep and M.point then found[#found + 1] = M.sweep end
    end
    -- by M.sweep.order (the built-ins': bytelm, then bpe), then by word
    table.sort(found, function(a, b)
        if (a.order or math.huge) ~= (b.order or math.huge) then return (a.order or math.huge) < (b.order or math.huge) end
        return a.word < b.word
    end)
    local out = {"fixed", "space", "entropy", "entropy_delta"}
    for _, w in ipairs(found) do out[#out + 1] = w.word end
    return out
end

-- The families of runs a comparison has (its args.<family> keys): the BLT's, each
-- kind's baseline family (M.sweep.family), the entropy model's.
function experiment.families()
    local out = {"blt"}
    for _, w in ipairs(experiment.sweep_words()) do
        local M = experiment.baseline(w)
        if M then out[#out + 1] = M.sweep.family end
    end
    out[#out + 1] = "entropy"
    return out
end

-- One size WIDTHxLAYERS.
function experiment.size_rule(v)
    local msg = experiment.size_list_rule(v)
    if msg then return msg end
    if #experiment.words(v) ~= 1 then return "must be one size WIDTHxLAYERS, like 128x2" end
end

-- The point of one scheme: its script, kind, model args (flat), run config (for
-- flops.of), and expected mean patch and training FLOPs per byte; {skip = reason}
-- when it cannot run here. o.target: the patch size (fixed: its size, entropy
-- schemes: the calibration target); o.size = {width, layers}: the global model's
-- (the baselines': the whole model's) width and depth instead of the budget's, with
-- o.heads heads (default: heads of 32 dimensions); o.options: a file scheme's own options ("k=v,...").
function experiment.model_point(scheme, P, corpus, ent, o)
    o = o or {}
    local seq = P.seq_len + 1
    local sc = blt_scheme(scheme)
    if sc then
        local m = deep_copy(P.blt)
        if o.size then m.global = {dim = o.size[1], layers = o.size[2], heads = o.heads or heads_of(o.size[1])} end
        local mean
        local pc = {scheme = scheme}
        local args = flat("model", m)
        args["patching.scheme"] = scheme
        args["patching.calib_bytes"] = P.calib_bytes
        local opts = sc.options -- a file scheme's own options (scheme_options=, o.options = "k=v,...")
        if o.options then
            opts = require("blt.schemes").options(sc, require("blt.schemes").parse_options(o.options, "scheme_options"))
            args["patching.options"], pc.options = o.options, o.options
        end
        local known = require("blt.schemes").mean_patch(sc, opts)
        if sc.options.size ~= nil and sc.kernel then -- fixed: the target's size
            local size = math.max(1, math.floor(o.target + 0.5))
            args["patching.size"], pc.size = size, size
            mean = size
        elseif sc.calibrates and o.target then -- the entropy schemes, a file's calibrated option: to the target
            args["patching.target"] = o.target
            if sc.needs_entropy then args["patching.entropy_model"] = ent.path end
            mean = o.target
        elseif known then
            mean = known
        elseif not sc.needs_entropy then -- space, a scheme file: measured on the sample
            mean = experiment.space_mean_patch(corpus, P, scheme, o.options)
            pc.calibrated = mean
        else
            return {skip = ("scheme %s needs entropies and declares no mean_patch, so its FLOPs cannot be "
                .. "budgeted before it runs"):format(scheme)}
        end
        local run_cfg = {kind = "blt", model = m, patching = pc, entropy = ent and ent.model or nil}
        local f = flops.of(run_cfg, {seq_len = seq, mean_patch = mean})
        return {family = "blt", kind = "blt", script = "experiments/train_blt.lua", args = args, mean_patch = mean,
                run_cfg = run_cfg, train_fpb = f.training.total, inference_fpb = f.inference.total}
    end
    local M = experiment.baseline(scheme) -- a kind's own point (M.sweep, M.point)
    if M then
        local spec = M.point(P, corpus, o, experiment)
        spec.size = spec.size or o.size -- the size the sweep asked for (experiment.latent_size)
        return spec
    end
    error("blt.experiment: unknown scheme " .. tostring(scheme), 2)
end

-- Parameters that scale with the model, for the bytes-per-parameter ratio: all
-- trained parameters but the embedding tables (byte, hash n-gram, token embeddings).
function experiment.scaled_params(spec)
    local M = models.get(spec.kind)
    local cfg = deep_copy(spec.run_cfg)
    local defaults = M.sections
    for section, d in pairs(defaults) do
        cfg[section] = cfg[section] or {}
        local function fill(dst, src)
            for k, v in pairs(src) do
                if type(v) == "table" then dst[k] = dst[k] or {}; fill(dst[k], v)
                elseif dst[k] == nil then dst[k] = v end
            end
        end
        fill(cfg[section], d)
    end
    local n = M.scaled_params and M.scaled_params(cfg) or M.count_params(cfg, false)
    return n, M.count_params(cfg, false)
end

-- The full args of one run: the common ones, the model's, steps, seed, warmup, and
-- validation every steps/evals steps.
function experiment.run_args(common, spec, steps, seed, P, evals)
    evals = evals or P.evals
    return merge(common, spec.args, {["train.steps"] = steps, ["train.seed"] = seed,
        ["train.warmup"] = math.max(1, math.min(30, steps // 10)),
        ["eval.every"] = math.max(1, steps // evals), ["out.checkpoint_every"] = math.max(1, steps // evals)})
end

local function mean_of(rows, key)
    local s, n = 0, 0
    for _, r in ipairs(rows) do
        local v = r[key]
        if type(v) == "number" and v == v and v ~= math.huge then s, n = s + v, n + 1 end
    end
    return n > 0 and s / n or nil
end

-- Fills a finished point's measures from its run: mean patch, parameters, training
-- and inference FLOPs per byte (at the measured patch size), total training FLOPs,
-- final validation bits per byte, wall time, and its validation curve against
-- cumulative training FLOPs.
function experiment.measure(r, P)
    local cfg, res = r.config, r.result
    local bytes_per_step = cfg.train.batch * cfg.train.seq_len
    r.mean_patch = mean_of(r.history, "patch_mean") or mean_of(r.history, "bytes_per_token") or r.spec and r.spec.mean_patch or 1
    local M = models.get(cfg.kind)
    if M.fixed_mean_patch then r.mean_patch = M.fixed_mean_patch end
    r.params = M.count_params(cfg, false)
    local okf, f = pcall(flops.of, cfg, {seq_len = cfg.train.seq_len + 1, mean_patch = r.mean_patch,
                                         bytes_per_token = r.mean_patch})
    r.train_fpb = mean_of(r.history, "flops_per_byte") or (okf and f.training.total) or nil
    r.inference_fpb = okf and f.inference.total or nil
    r.steps = res.step
    r.train_flops = r.train_fpb and r.train_fpb * res.step * bytes_per_step or nil
    r.val_bpb = res.val_bpb
    r.wall = res.wall_seconds_total or res.wall_seconds
    r.curve = {flops = {}, bpb = {}, step = {}}
    local cum, last = 0, 0
    for _, h in ipairs(r.history) do
        local fpb = (type(h.flops_per_byte) == "number" and h.flops_per_byte == h.flops_per_byte) and h.flops_per_byte
                    or r.train_fpb or 0
        cum = cum + (h.step - last) * bytes_per_step * fpb
        last = h.step
        if type(h.val_bpb) == "number" and h.val_bpb == h.val_bpb then
            local c = r.curve
            c.flops[#c.flops + 1], c.bpb[#c.bpb + 1], c.step[#c.step + 1] = cum, h.val_bpb, h.step
        end
    end
    return r
end

-- ---- the protocol: data ratio, learning rate, seeds ----

-- Parameters of the latent (global) transformer of a size: `layers` blocks of width
-- `width` (attention 4 w^2, SwiGLU FFN 3 w h, two norms), embeddings and heads left out.
-- A BLT, MegaByte or SpaceByte is sized by its global model, a token or byte model by
-- its whole stack (docs/experiments.md, "Protocol").
function experiment.latent_params(width, layers, multiple_of)
    local h = require("blt.nn").ffn_hidden(width, multiple_of)
    return layers * (4 * width * width + 3 * width * h + 2 * width)
end

-- The latent size {width, layers} of a point: a BLT's global model, else the model's;
-- a kind whose config has no layers (a kind file's bigram, say) takes the size the sweep
-- asked for, else one layer of its width.
function experiment.latent_size(spec)
    local m = spec.run_cfg.model
    if m.global and m.global.dim then return m.global.dim, m.global.layers, m.multiple_of end
    if m.layers == nil and spec.size then return spec.size[1], spec.size[2], m.multiple_of end
    return m.dim, m.layers or 1, m.multiple_of
end

-- Bytes per BPE token of the budget's tokenizer on the training sample (what converts
-- tokens_per_param to bytes). Nil when no BPE kind is there.
function experiment.bytes_per_token(corpus, P)
    local okm, M = pcall(models.get, "bpe_lm")
    if not okm or not M.bytes_per_token or not P.bpe then return nil end
    return M.bytes_per_token(corpus, P)
end

-- The compute-optimal data of a latent size: tokens_per_param BPE tokens per latent
-- parameter, in bytes (bpt bytes per token), and the steps of batch x seq_len bytes that
-- read them. Every model of one size gets the same bytes. Returns steps, bytes, params.
function experiment.optimal(P, width, layers, tpp, bpt)
    local n = experiment.latent_params(width, layers, P.bpe and P.bpe.model.multiple_of or 32)
    local bytes = tpp * n * bpt
    return math.max(1, math.floor(bytes / (P.batch * P.seq_len) + 0.5)), bytes, n
end

-- The learning-rate rule: lr = LR.ref * LR.width / width (experiment.lr_width), within
-- [LR.min, LR.max]: 0.04 at width 32, 0.01 at 128. 1/width is how Adam's best rate moves
-- with width at a fixed depth when the initialisation scales as 1/sqrt(fan-in) (Yang et
-- al. 2022); the constant comes from a search at the medium budget (docs/experiments.md,
-- "Learning rate": the rule's first form, 3e-3 at 128 capped at 1e-2, lost to twice,
-- four and eight times its rate at widths 16-32). lr_grid multiplies it, and the results
-- say which multiplier won at each size.
experiment.LR = {ref = 0.04, width = 32, min = 3e-4, max = 0.1}
function experiment.lr_rule(width)
    local L = experiment.LR
    return math.min(L.max, math.max(L.min, L.ref * L.width / width))
end

-- The width the rule reads for a point: the widest of its transformers, its latent
-- model's or (a BLT's, MegaByte's) local model's, whose fan-in bounds the stable step
-- (the search at medium: a BLT of global width 16 with local width 32 wanted the rate of
-- width 32, not 16).
function experiment.lr_width(spec)
    local w = experiment.latent_size(spec)
    local d = spec.run_cfg.model.dim
    return math.max(w, type(d) == "number" and d or 0)
end

-- The multipliers of an lr_grid string (a list of numbers > 0, no repeats).
experiment.lr_grid_rule = experiment.list_of("multiplier", function(w)
    local x = tonumber(w)
    if not x or x <= 0 or x ~= x or x == math.huge then return nil, "is not a learning-rate multiplier (a number > 0)" end
    return ("%g"):format(x)
end, "1")

-- Runs one point at every seed (o: id (the point's name without -s<seed>), spec (or
-- spec_of(seed) for points whose args depend on the seed, e.g. its entropy model),
-- steps, seeds, grid (multipliers of the lr rule), args_of(spec, seed) (the run's
-- args), extra, label). With more than one multiplier the first seed is trained at each
-- (ids <id>-lr<m>-s<seed>), the lowest final validation bits per byte wins and the
-- other seeds train at it; the winning run is the first seed's record. Returns the
-- records (one per seed; each r.lr, r.lr_mult) and the search rows {id, lr_mult, lr,
-- val_bpb, chosen}. run(point) runs a point (the sweep's, or a plan's printer), and
-- returns its record or nil (plan).
function experiment.train_seeds(run, o)
    local function spec_of(seed) return o.spec_of and o.spec_of(seed) or o.spec end
    local base = experiment.lr_rule(experiment.lr_width(spec_of(o.seeds[1])))
    local grid = o.grid or {1}
    local records, search = {}, {}
    local function one(seed, mult, id)
        local spec = spec_of(seed)
        local args = o.args_of(spec, seed)
        args["train.lr"] = base * mult
        local r = run({id = id, script = spec.script, args = args, extra = o.extra, spec = spec, seed = seed,
                       steps = o.steps})
        if r then r.lr, r.lr_mult, r.seed, r.spec = base * mult, mult, seed, spec end
        return r
    end
    local mult, searched = grid[1], #grid > 1
    if searched then
        local best
        for _, m in ipairs(grid) do
            local r = one(o.seeds[1], m, ("%s-lr%g-s%d"):format(o.id, m, o.seeds[1]))
            search[#search + 1] = {id = r and r.id, lr_mult = m, lr = base * m, val_bpb = r and r.val_bpb, record = r}
            if r and r.val_bpb and not r.failed and (not best or r.val_bpb < best.val_bpb) then best = search[#search] end
        end
        if best then -- else (every rate failed, or a plan): the other seeds take the first multiplier
            best.chosen = true
            mult = best.lr_mult
            records[1] = best.record
        end
    end
    for i, seed in ipairs(o.seeds) do
        if not (i == 1 and searched) then records[i] = one(seed, mult, ("%s-s%d"):format(o.id, seed)) end
    end
    local out = {}
    for i = 1, #o.seeds do if records[i] then out[#out + 1] = records[i] end end
    return out, search, base
end

-- ---- expected wall time (plan=true) ----

-- Training FLOP/s of a latent size on this machine now: a ByteLM of that width and depth
-- (the budget's window and FFN rounding) trained for 2 timed steps of batch x seq_len
-- bytes after one warm-up step, FLOPs as blt.flops counts them. Cached per size.
local rate_cache = {}
function experiment.measured_rate(P, width, layers)
    local key = table.concat({width, layers, P.batch, P.seq_len}, "x")
    if rate_cache[key] then return rate_cache[key] end
    local ByteLM = require "blt.models.bytelm"
    local optim = require "blt.optim"
    local blt = require "blt"
    local m = {dim = width, layers = layers, heads = heads_of(width), window = P.seq_len,
               multiple_of = P.entropy.model.multiple_of}
    local model = ByteLM.new(m, 1)
    local opt = optim.AdamW(model, {lr = 1e-3})
    local rows = blt.zeros({P.batch, P.seq_len + 1}, "int32")
    local gen = blt.Generator(7)
    for b = 1, P.batch do
        rows:set(1, b, 1)
        for t = 2, P.seq_len + 1 do rows:set(3 + gen:integer(256), b, t) end
    end
    local function step()
        core.scope(function()
            opt:zero_grad()
            model:loss(rows):backward()
            opt:clip_grad_norm(1.0)
            opt:step()
        end)
    end
    step()
    local t0 = core.now()
    step(); step()
    local per_step = (core.now() - t0) / 2
    local fpb = flops.of({kind = "bytelm", model = m}, {seq_len = P.seq_len + 1}).training.total
    rate_cache[key] = fpb * P.batch * P.seq_len / per_step
    return rate_cache[key]
end

-- Expected seconds of a point: its training FLOPs plus its validations' (forward only,
-- evals x val_bytes at its inference FLOPs per byte) at `rate`.
function experiment.expected_seconds(spec, steps, P, evals, rate)
    local train_f = spec.train_fpb * steps * P.batch * P.seq_len
    local val_bytes = P.val_bytes > 0 and P.val_bytes or 0
    local eval_f = (spec.inference_fpb or 0) * val_bytes * ((evals or P.evals) + 1)
    return (train_f + eval_f) / rate, train_f
end

-- ---- the table ----

experiment.TABLE = {
    {"scheme", "scheme"}, {"patch", "patch", "%.2f"}, {"params", "params", function(v) return ("%.2fM"):format(v / 1e6) end},
    {"train_mf", "train MFLOP/B", "%.2f"}, {"inf_mf", "infer MFLOP/B", "%.2f"}, {"steps", "steps", "%d"},
    {"lr", "lr", "%.3g"}, {"bpb_text", "val bpb (mean ± se, n)"}, {"wall", "wall s", "%.0f"},
}

-- One row per scheme (in the given order): means over seeds; bpb as mean ± standard
-- error over seeds with the number of seeds (blt.stats), and its t interval.
function experiment.summarize(records, schemes)
    local stats = require "blt.stats"
    local by = {}
    for _, r in ipairs(records) do
        by[r.scheme] = by[r.scheme] or {}
        table.insert(by[r.scheme], r)
    end
    local rows = {}
    for _, sc in ipairs(schemes) do
        local rs = by[sc]
        if rs then
            local function st(key)
                local xs = {}
                for _, r in ipairs(rs) do if type(r[key]) == "number" then xs[#xs + 1] = r[key] end end
                return sweep.stats(xs), xs
            end
            local b, bx = st("val_bpb")
            local row = {scheme = sc, patch = st("mean_patch").mean, params = rs[1].params,
                         train_mf = (st("train_fpb").mean or 0) / 1e6, inf_mf = (st("inference_fpb").mean or 0) / 1e6,
                         steps = rs[1].steps, wall = st("wall").mean, bpb = b.mean, bpb_min = b.min, bpb_max = b.max,
                         bpb_std = b.std, seeds = #rs, n = b.n, failed = 0, lr = rs[1].lr}
            for _, r in ipairs(rs) do if r.failed then row.failed = row.failed + 1 end end
            if b.n == 0 then row.bpb_text = "failed"
            else
                local ti = stats.t_interval(bx)
                row.bpb_se, row.bpb_lo, row.bpb_hi = ti.se, ti.lo, ti.hi
                row.bpb_text = stats.format_mean(bx)
            end
            rows[#rows + 1] = row
        end
    end
    return rows
end

-- Paired differences in final validation bits per byte, each scheme against `ref`,
-- seed by seed (the same seed: the same sampled batches, the same validation bytes):
-- rows {scheme, ref, n, mean, se, lo, hi, significant, seeds, diffs, per_seed (text),
-- verdict}. A difference is called (verdict "lower"/"higher") only when its 95% t
-- interval excludes zero; else "not resolved".
function experiment.paired_differences(records, labels, ref, key)
    local stats = require "blt.stats"
    key = key or "val_bpb"
    local by = {}
    for _, r in ipairs(records) do
        if type(r[key]) == "number" and not r.failed then
            by[r.scheme] = by[r.scheme] or {}
            by[r.scheme][r.seed] = r[key]
        end
    end
    local rows = {}
    if not by[ref] then return rows end
    for _, sc in ipairs(labels) do
        if sc ~= ref and by[sc] then
            local p = stats.paired(by[sc], by[ref])
            local parts = {}
            for i, k in ipairs(p.keys) do parts[i] = ("s%s %+.4f"):format(tostring(k), p.diffs[i]) end
            local row = {scheme = sc, ref = ref, n = p.n, mean = p.mean, se = p.se, lo = p.lo, hi = p.hi,
                         significant = p.significant, seeds = p.keys, diffs = p.diffs, per_seed = table.concat(parts, ", ")}
            row.diff_text = p.mean and (p.se and ("%+.4f ± %.4f"):format(p.mean, p.se) or ("%+.4f"):format(p.mean)) or "-"
            row.interval = p.lo and ("[%+.4f, %+.4f]"):format(p.lo, p.hi) or "(n < 2)"
            row.verdict = p.significant and (p.mean < 0 and "lower" or "higher") or "not resolved"
            rows[#rows + 1] = row
        end
    end
    return rows
end

-- The validation sample of a study's records, as a phrase: its bytes and the sampling
-- standard error of one model's figure (result.json val_bpb_se), or "" when unknown.
function experiment.validation_note(records)
    for _, r in ipairs(records) do
        if r.result and r.result.val_bpb_se and r.result.val_bytes then
            return (" (%d bytes: a sampling standard error of about %.4f bits per byte for one model's figure)")
                :format(r.result.val_bytes, r.result.val_bpb_se)
        end
    end
    return ""
end

experiment.DIFF_TABLE = {
    {"scheme", "scheme"}, {"ref", "minus"}, {"diff_text", "mean diff ± se"}, {"interval", "95% t interval"},
    {"n", "n", "%d"}, {"verdict", "called"}, {"per_seed", "per seed"},
}

-- Prints the paired differences (title, then the table and a note).
function experiment.print_differences(rows, title)
    if #rows == 0 then return end
    print(title)
    print(sweep.table(rows, experiment.DIFF_TABLE))
    print("called: lower/higher only when the 95% t interval of the per-seed differences excludes zero")
end

-- ---- fits and crossovers with bootstrap intervals over seeds ----

-- Means over a list of seeds (repeats count again: a bootstrap resample) of each
-- group's records: pts[group] = {x = mean of xkey, y = mean of ykey}; records by
-- group and seed: recs[group][seed].
local function means_over(recs, seeds, xkey, ykey)
    local out = {}
    for g, bys in pairs(recs) do
        local sx, sy, n = 0, 0, 0
        for _, seed in ipairs(seeds) do
            local r = bys[seed]
            if r and type(r[xkey]) == "number" and type(r[ykey]) == "number" then sx, sy, n = sx + r[xkey], sy + r[ykey], n + 1 end
        end
        if n > 0 then out[g] = {x = sx / n, y = sy / n} end
    end
    return out
end

-- The power-law fit of one scheme's compute-optimal points (bpb = a FLOPs^-b, on the
-- mean over seeds of each size) with a percentile bootstrap interval of b over seeds
-- (resampling seeds keeps each seed's points together). recs[size][seed] = record.
-- Returns {a, b, r2, n (sizes), seeds, b_lo, b_hi, boot_missing} or nil.
function experiment.fit_with_interval(recs, seeds, o)
    local stats = require "blt.stats"
    local function fit(sample)
        local pts = means_over(recs, sample, "train_flops", "val_bpb")
        local xs, ys = {}, {}
        for _, pt in pairs(pts) do xs[#xs + 1], ys[#ys + 1] = pt.x, pt.y end
        local a, b, r2 = sweep.power_law(xs, ys)
        return a, b, r2, xs
    end
    local a, b, r2, xs = fit(seeds)
    if not a then return nil end
    local out = {a = a, b = b, r2 = r2, seeds = #seeds, xs = xs}
    local n = 0
    for _ in pairs(recs) do n = n + 1 end
    out.n = n
    if #seeds >= 2 then
        local bs = stats.bootstrap(seeds, function(sample) local _, bb = fit(sample) return bb end,
                                   {reps = o and o.reps or 2000, seed = o and o.seed or 1})
        out.b_lo, out.b_hi, out.boot_missing = bs.lo, bs.hi, bs.missing
    end
    return out
end

-- Where two curves cross: the first FLOPs at which (bpb_a - bpb_b) changes sign over
-- the FLOPs both cover, interpolated linearly in log FLOPs (each curve too). Nil when
-- they do not cross there. Curves {x = {...}, y = {...}} with x increasing.
function experiment.crossing(ca, cb)
    local function at(c, x)
        local lx = math.log(x)
        for i = 1, #c.x - 1 do
            if c.x[i] <= x and x <= c.x[i + 1] then
                local l0, l1 = math.log(c.x[i]), math.log(c.x[i + 1])
                local t = l1 > l0 and (lx - l0) / (l1 - l0) or 0
                return c.y[i] + t * (c.y[i + 1] - c.y[i])
            end
        end
    end
    if #ca.x < 2 or #cb.x < 2 then return nil end
    local lo, hi = math.max(ca.x[1], cb.x[1]), math.min(ca.x[#ca.x], cb.x[#cb.x])
    if not (lo < hi) then return nil end
    local xs = {lo, hi}
    for _, c in ipairs {ca, cb} do for _, x in ipairs(c.x) do if x > lo and x < hi then xs[#xs + 1] = x end end end
    table.sort(xs)
    local prev_x, prev_d
    for _, x in ipairs(xs) do
        local d = at(ca, x) - at(cb, x)
        if prev_d and ((prev_d < 0 and d >= 0) or (prev_d > 0 and d <= 0)) then
            local l0, l1 = math.log(prev_x), math.log(x)
            return math.exp(l0 + (l1 - l0) * prev_d / (prev_d - d))
        end
        if d ~= 0 then prev_x, prev_d = x, d end
    end
    return nil
end

-- The mean validation curve over a list of seeds (with repeats): curves[seed] =
-- {flops = {...}, bpb = {...}} of one scheme, averaged point by point.
local function mean_curve(curves, seeds)
    local x, y, n = {}, {}, {}
    for _, seed in ipairs(seeds) do
        local c = curves[seed]
        if c then
            for i = 1, #c.flops do
                x[i], y[i], n[i] = (x[i] or 0) + c.flops[i], (y[i] or 0) + c.bpb[i], (n[i] or 0) + 1
            end
        end
    end
    local out = {x = {}, y = {}}
    for i = 1, #x do
        if n[i] == #seeds then out.x[#out.x + 1], out.y[#out.y + 1] = x[i] / n[i], y[i] / n[i] end
    end
    return out
end

-- The crossing of two schemes' mean curves (curves_a[seed], curves_b[seed]) with a
-- bootstrap over seeds (both resampled with the same seeds: the pairs stay paired):
-- {flops (nil: no crossing), lo, hi (percentiles among resamples that cross), frac
-- (fraction of resamples that cross), seeds}.
function experiment.crossing_with_interval(curves_a, curves_b, seeds, o)
    local stats = require "blt.stats"
    local function cross(sample) return experiment.crossing(mean_curve(curves_a, sample), mean_curve(curves_b, sample)) end
    local out = {flops = cross(seeds), seeds = #seeds}
    if #seeds >= 2 then
        local bs = stats.bootstrap(seeds, cross, {reps = o and o.reps or 2000, seed = o and o.seed or 1})
        out.lo, out.hi, out.frac = bs.lo, bs.hi, #bs.values / bs.reps
    end
    return out
end

-- ---- the results file ----

-- A results file: root attributes (the experiment's settings; numbers that are not
-- integers go to /settings/<key>), and for each section {prefix =, records =, rows =,
-- fits =}: <prefix>/points/<id>/ (one group per run: scalars, the validation curve,
-- attributes scheme/kind/run_dir/seed/status), <prefix>/summary/<scheme>/ (means and
-- spread over seeds) and <prefix>/fits/<scheme>/ (power-law fits a, b, r2). Written
-- atomically (a temporary file renamed over the old one).
function experiment.write_sections(path, attrs, sections)
    local blt = require "blt"
    local f = blt.h5_create(path)
    local function num(g, k, v, dtype) if type(v) == "number" then f:write(g .. "/" .. k, v, dtype or "float64") end end
    for k, v in pairs(attrs) do
        if math.type(v) == "integer" or type(v) == "string" then f:set_attr(k, v)
        elseif type(v) == "number" then num("/settings", k, v) end
    end
    f:set_attr("created", os.date("!%Y-%m-%dT%H:%M:%SZ"))
    for _, sec in ipairs(sections) do
        local pre = sec.prefix or ""
        for _, r in ipairs(sec.records or {}) do
            local g = pre .. "/points/" .. r.id
            num(g, "val_bpb", r.val_bpb); num(g, "mean_patch", r.mean_patch); num(g, "params", r.params, "int64")
            num(g, "train_flops_per_byte", r.train_fpb); num(g, "inference_flops_per_byte", r.inference_fpb)
            num(g, "train_flops", r.train_flops); num(g, "steps", r.steps, "int64"); num(g, "wall_seconds", r.wall)
            num(g, "lr", r.lr); num(g, "lr_multiplier", r.lr_mult); num(g, "val_bpb_se", r.result and r.result.val_bpb_se)
            if #r.curve.flops > 0 then
                f:write(g .. "/curve/train_flops", r.curve.flops, "float64")
                f:write(g .. "/curve/val_bpb", r.curve.bpb, "float64")
                f:write(g .. "/curve/step", r.curve.step, "int64")
            end
            f:set_attr("scheme", r.scheme, g)
            f:set_attr("kind", r.config.kind, g)
            f:set_attr("run_dir", r.dir, g)
            f:set_attr("seed", math.tointeger(r.seed) or 0, g)
            f:set_attr("status", r.failed and "failed" or (r.stopped and "stopped" or "finished"), g)
            for k, v in pairs(r.extra or {}) do
                if math.type(v) == "integer" or type(v) == "string" then f:set_attr(k, v, g) else num(g, k, v) end
            end
        end
        for _, row in ipairs(sec.rows or {}) do
            local g = pre .. "/summary/" .. row.scheme
            num(g, "val_bpb_mean", row.bpb); num(g, "val_bpb_min", row.bpb_min); num(g, "val_bpb_max", row.bpb_max)
            num(g, "val_bpb_std", row.bpb_std); num(g, "mean_patch", row.patch); num(g, "params", row.params, "int64")
            num(g, "train_flops_per_byte", row.train_mf and row.train_mf * 1e6)
            num(g, "inference_flops_per_byte", row.inf_mf and row.inf_mf * 1e6)
            num(g, "seeds", row.seeds, "int64")
            num(g, "val_bpb_se", row.bpb_se); num(g, "val_bpb_lo", row.bpb_lo); num(g, "val_bpb_hi", row.bpb_hi)
            for k, v in pairs(row.extra or {}) do f:set_attr(k, tostring(v), g) end -- what the row is (a sweep's values)
        end
        for _, row in ipairs(sec.differences or {}) do -- paired differences against sec's reference
            local g = pre .. "/differences/" .. row.scheme
            num(g, "mean", row.mean); num(g, "se", row.se); num(g, "lo", row.lo); num(g, "hi", row.hi)
            num(g, "n", row.n, "int64"); num(g, "significant", row.significant and 1 or 0, "int64")
            if #row.diffs > 0 then f:write(g .. "/diffs", row.diffs, "float64"); f:write(g .. "/seeds", row.seeds, "int64") end
            f:set_attr("reference", row.ref, g)
            if row.at then f:set_attr("at", row.at, g) end
        end
        for _, row in ipairs(sec.lr_search or {}) do -- the learning-rate search's runs
            if row.id then
                local g = pre .. "/lr_search/" .. row.id
                num(g, "lr", row.lr); num(g, "lr_multiplier", row.lr_mult); num(g, "val_bpb", row.val_bpb)
                num(g, "chosen", row.chosen and 1 or 0, "int64")
                f:set_attr("point", row.point or "", g)
            end
        end
        for name, c in pairs(sec.crossovers or {}) do -- where two schemes' curves (or fits) cross
            local g = pre .. "/crossovers/" .. name
            num(g, "flops", c.flops); num(g, "lo", c.lo); num(g, "hi", c.hi); num(g, "fraction_crossing", c.frac)
            num(g, "seeds", c.seeds, "int64")
        end
        for scheme, fit in pairs(sec.fits or {}) do
            local g = pre .. "/fits/" .. scheme
            num(g, "a", fit.a); num(g, "b", fit.b); num(g, "r2", fit.r2); num(g, "points", fit.n, "int64")
            num(g, "b_lo", fit.b_lo); num(g, "b_hi", fit.b_hi); num(g, "seeds", fit.seeds, "int64")
        end
    end
    require("blt.report").h5_tables(f) -- the tables the sweep printed, as report.html shows them
    f:commit()
    f:close()
    return path
end

function experiment.write_results(path, records, rows, attrs)
    return experiment.write_sections(path, attrs, {{records = records, rows = rows}})
end

-- ---- plots ----

-- Validation bits per byte against cumulative training FLOPs, one curve per scheme
-- (the mean over seeds at each validation step).
function experiment.plot_curves(path, records, title)
    local plot = require "blt.plot"
    if not plot.available() then return nil end
    local order, by = {}, {}
    for _, r in ipairs(records) do
        if not by[r.scheme] then by[r.scheme] = {}; order[#order + 1] = r.scheme end
        table.insert(by[r.scheme], r)
    end
    local series = {}
    for _, sc in ipairs(order) do
        local rs = by[sc]
        local xs, ys = {}, {}
        for i = 1, #rs[1].curve.flops do
            local sx, sy, n = 0, 0, 0
            for _, r in ipairs(rs) do
                if r.curve.bpb[i] then sx, sy, n = sx + r.curve.flops[i], sy + r.curve.bpb[i], n + 1 end
            end
            if n > 0 then xs[#xs + 1], ys[#ys + 1] = sx / n, sy / n end
        end
        if #xs > 0 then series[#series + 1] = {name = sc, x = xs, y = ys, style = "linespoints"} end
    end
    if #series == 0 then return nil end
    return plot.lines {path = path, title = title, xlabel = "training FLOPs", ylabel = "validation bits per byte",
                       logx = true, series = series}
end

-- Patch-size histograms of the BLT schemes (seed of the first record each), from
-- each trained model's own patcher on a sample of validation text.
function experiment.plot_patch_histograms(path, records, cfg)
    local plot = require "blt.plot"
    if not plot.available() then return nil end
    local data = require "blt.data"
    local corpus = data.open(cfg.data.path, {val_fraction = cfg.data.val_fraction})
    local series, seen = {}, {}
    for _, r in ipairs(records) do
        if (blt_scheme(r.scheme) or (r.spec and r.spec.family == "blt")) and not seen[r.scheme] and not r.failed then
            seen[r.scheme] = true
            local model = models.load(r.checkpoint)
            local seq = r.config.train.seq_len
            local rows = corpus:sample_windows {split = "val", len = seq, bytes = 16384, seed = 1}
            local p = core.no_grad(function() return model:prepare(rows) end)
            local lens = p.lengths:totable()
            local hist, total, maxlen = {}, 0, 16
            for _, row in ipairs(lens) do
                for j = 2, #row do -- the BOS patch is left out
                    local l = row[j]
                    if l > 0 then
                        local b = math.min(l, maxlen)
                        hist[b] = (hist[b] or 0) + 1
                        total = total + 1
                    end
                end
            end
            local xs, ys = {}, {}
            for l = 1, maxlen do xs[l], ys[l] = l, (hist[l] or 0) / math.max(1, total) end
            series[#series + 1] = {name = r.scheme, x = xs, y = ys, style = "linespoints"}
            model = nil
            collectgarbage()
        end
    end
    corpus:close()
    if #series == 0 then return nil end
    return plot.lines {path = path, title = "Patch sizes on validation text (16 = 16 or more)",
                       xlabel = "bytes per patch", ylabel = "fraction of patches", series = series}
end

return experiment
