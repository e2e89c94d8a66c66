-- The Byte Latent Transformer (docs/model.md): hash n-gram embeddings, a local
-- encoder pooling bytes into k slots per patch by cross-attention, a global
-- transformer over patches, a local decoder cross-attending the patches that are
-- complete before each byte, and a head over the 260 ids.
--
--   local BLT = require "blt.models.blt"
--   local m = BLT.new(model_cfg, seed, {patcher = patching.patcher{...}, entropy_model = bytelm})
--   m:loss(rows [, "sum"])            rows int32 [B,N] = [BOS, ids...] (0-padded)
--   m:prepare(inputs)                 the work without gradients: entropies, patches, hash ids
-- Parameter names as in docs/model.md (encoder.*, global.*, decoder.*); the entropy
-- model, when there is one, is stored under entropy.* and is not trained.
local core = require "blt.core"
local flops = require "blt.flops"
local nn = require "blt.nn"
local ids = require "blt.ids"
local kvcache = require "blt.kvcache"
local NEWLINE = ids.of_byte(10)

local BLT = nn.class("BLT")

-- Documented defaults (the config section `model` of experiments/train_blt.lua).
BLT.defaults = {
    dim = 128,                  -- local width d_E = d_D (encoder and decoder)
    heads = 4,                  -- heads of the local self-attention
    k = 2,                      -- slots per patch (queries of the pooling, keys of the decoder)
    multiple_of = 256,          -- FFN hidden rounding
    rope_theta = 10000.0,
    norm_eps = 1e-5,
    encoder = {layers = 1, window = 128, cross_every_layer = false},
    global = {dim = 256, layers = 4, heads = 4, window = 0},
    decoder = {layers = 2, window = 128, cross_every_layer = true},
    cross = {heads = 4},
    hash = {ngrams = "3,4,5,6,7,8", buckets = 4096},
}

BLT.model_docs = {
    dim = "local width d_E = d_D (encoder and decoder)", heads = "heads of the local self-attention",
    k = "slots per patch (pooling queries, decoder keys)", multiple_of = "FFN hidden rounding",
    rope_theta = "RoPE base", norm_eps = "RMSNorm epsilon",
    encoder = {layers = "encoder blocks", window = "encoder self-attention window (bytes)",
               cross_every_layer = "pool after every encoder layer (false: after the last)"},
    global = {dim = "global width d_G", layers = "global blocks", heads = "global attention heads",
              window = "global attention window in patches (0: every earlier patch)"},
    decoder = {layers = "decoder blocks", window = "decoder self-attention window (bytes)",
               cross_every_layer = "cross-attention in every decoder layer (false: the first)"},
    cross = {heads = "cross-attention heads"},
    hash = {ngrams = "n-gram sizes of the hash embeddings, comma-separated (empty: none)",
            buckets = "hash buckets per n-gram size (0: no hash embeddings)"},
}

local function int_ge(min)
    return function(v) if math.type(v) ~= "integer" or v < min then return ("must be an integer >= %d"):format(min) end end
end

-- Rules for blt.config (keys relative to the model section).
BLT.model_rules = {
    dim = int_ge(2), heads = int_ge(1), k = int_ge(1), multiple_of = int_ge(1), rope_theta = "> 0", norm_eps = "> 0 float32",
    ["encoder.layers"] = int_ge(1), ["encoder.window"] = int_ge(1),
    ["global.dim"] = int_ge(2), ["global.layers"] = int_ge(1), ["global.heads"] = int_ge(1), ["global.window"] = int_ge(0),
    ["decoder.layers"] = int_ge(1), ["decoder.window"] = int_ge(1), ["cross.heads"] = int_ge(1),
    ["hash.buckets"] = int_ge(0),
    ["hash.ngrams"] = function(v)
        if type(v) ~= "string" then return "must be a comma-separated list of sizes, like 3,4,5" end
        local seen = {}
        for n in v:gmatch("[^,]+") do
            local x = math.tointeger(tonumber(n))
            if not x or x < 1 or x > 64 then return ("has '%s': each size must be an integer in 1..64"):format(n) end
            if seen[x] then return ("lists the n-gram size %d twice"):format(x) end
            seen[x] = true
        end
    end,
}

-- The n-gram sizes of a config, as a Lua array.
function BLT.ngrams(m)
    local out = {}
    for n in tostring(m.hash.ngrams):gmatch("[^,]+") do out[#out + 1] = math.tointeger(tonumber(n)) end
    if m.hash.buckets == 0 then return {} end
    return out
end

-- Shapes that must fit together; raises "model.<key> ..." naming the keys.
function BLT.check_config(m, where)
    where = where or "model"
    nn.check_heads(where, m.dim, m.heads, "dim", "heads")
    nn.check_heads(where, m.global.dim, m.global.heads, "global.dim", "global.heads")
    if m.dim % m.cross.heads ~= 0 then
        error(("%s.cross.heads = %d does not divide %s.dim = %d"):format(where, m.cross.heads, where, m.dim), 0)
    end
    if #BLT.ngrams(m) == 0 and m.hash.buckets > 0 then
        error(("%s.hash.ngrams is empty: give sizes, or set %s.hash.buckets=0"):format(where, where), 0)
    end
end

local function block(o, rng)
    return nn.TransformerBlock {dim = o.dim, heads = o.heads, window = o.window, multiple_of = o.multiple_of,
                                rope_theta = o.rope_theta, norm_eps = o.norm_eps, rng = rng}
end

-- Parameters of a BLT of config m, without building it.
function BLT.param_count(m)
    local d, dg, k = m.dim, m.global.dim, m.k
    local function blocks(n, w) return n * (4 * w * w + 3 * w * nn.ffn_hidden(w, m.multiple_of) + 2 * w) end
    local cross = 4 * d * d + 2 * d
    local n_cross_e = m.encoder.cross_every_layer and m.encoder.layers or 1
    local n_cross_d = m.decoder.cross_every_layer and m.decoder.layers or 1
    local total = ids.VOCAB * d + #BLT.ngrams(m) * m.hash.buckets * d
        + blocks(m.encoder.layers, d) + k * d * d + n_cross_e * cross
        + (k * d ~= dg and dg * k * d or 0) + blocks(m.global.layers, dg)
        + k * d * dg + n_cross_d * cross + blocks(m.decoder.layers, d) + d + ids.VOCAB * d
    return total
end

-- ---- the model kind "blt" (blt.models): the config sections, setup and build ----

BLT.kind = "blt"

BLT.patching_defaults = {
    scheme = "entropy",         -- a registered scheme (blt.schemes: fixed, space, entropy, ...) or file:PATH
    options = "",               -- a file scheme's options, "name=value,..." (its defaults otherwise)
    scheme_source = "",         -- a file scheme's source (written by the run: the checkpoint carries it)
    scheme_hash = "",           -- its hash (written by the run)
    -- and the built-in schemes' options (size, threshold, delta), from blt.schemes below
    target = 4.5,               -- calibrate θ (entropy) or θ_r (entropy_delta) to this mean patch size (0: as given)
    calibrated = 0.0,           -- the mean patch size the calibration reached (set by the run)
    max_patch_len = 0,          -- cut longer patches (0: no limit)
    reset_on_newline = false,   -- the entropy model's context restarts after each newline
    entropy_model = "runs/entropy-1/checkpoint.h5", -- a ByteLM checkpoint (experiments/train_entropy_model.lua)
    calib_bytes = 65536,        -- bytes of training text the calibration samples
    calib_seed = 1,             -- seed of that sample
}

BLT.patching_docs = {
    scheme = "patching scheme: " .. table.concat(require("blt.schemes").names(), " | ")
        .. " | file:PATH (a Lua scheme file, docs/patching.md)",
    options = "a file scheme's options as name=value,... (its defaults otherwise)",
    scheme_source = "the file scheme's source (written by the run)", scheme_hash = "its hash (written by the run)",
    target = "mean bytes per patch the threshold (entropy) or delta (entropy_delta) is calibrated to at the start (0: as given)",
    calibrated = "mean patch size the calibration reached, or a file scheme's measured on its sample (written by the run, 0: not calibrated)",
    max_patch_len = "cut patches longer than this (0: no limit)",
    reset_on_newline = "the entropy model's context restarts after each newline",
    entropy_model = "ByteLM checkpoint of the entropy model, copied into the BLT's checkpoint under entropy.*",
    calib_bytes = "bytes of training text (windows sampled across the split) the calibration uses",
    calib_seed = "seed of the calibration sample",
}

local ByteLM = require "blt.models.bytelm"
local schemes = require "blt.schemes"

BLT.sections = {model = BLT.defaults, patching = BLT.patching_defaults, entropy = ByteLM.defaults}
BLT.docs = {model = BLT.model_docs, patching = BLT.patching_docs,
            entropy = {dim = "entropy model width (from patching.entropy_model)",
                       layers = "entropy model blocks (from its checkpoint)", heads = "entropy model heads (from its checkpoint)",
                       window = "entropy model window (from its checkpoint)", multiple_of = "(from its checkpoint)",
                       rope_theta = "(from its checkpoint)", norm_eps = "(from its checkpoint)"}}
BLT.rules = {
    ["patching.scheme"] = function(v)
        if not schemes.known(v) then
            return ("must be one of %s, or file:PATH (a scheme file)"):format(table.concat(schemes.names(), ", "))
        end
    end,
    ["patching.target"] = function(v) if v ~= 0 and not (v > 1) then return "must be 0 (as given) or > 1" end end,
    ["patching.calibrated"] = ">= 0", ["patching.max_patch_len"] = int_ge(0), ["patching.calib_bytes"] = int_ge(1),
    ["patching.calib_seed"] = int_ge(0),
    ["patching.entropy_model"] = function(v) if v == "" then return "must be a path" end end,
}
for k, v in pairs(BLT.model_rules) do BLT.rules["model." .. k] = v end
-- The built-in schemes' options are patching.* keys: their defaults, docs and rules are
-- the registry's (blt.schemes), written there once.
for _, name in ipairs(schemes.names()) do
    local sc = schemes.get(name)
    if sc.kernel then
        local keys = {}
        for k in pairs(sc.options) do keys[#keys + 1] = k end
        table.sort(keys)
        for _, k in ipairs(keys) do
            local d = BLT.patching_docs[k]
            BLT.patching_defaults[k] = sc.options[k]
            BLT.patching_docs[k] = (d and (d .. "; ") or "") .. name .. ": " .. (sc.docs[k] or k)
            BLT.rules["patching." .. k] = sc.rules[k]
        end
    end
end
-- Keys the run writes (blt.train refuses them from the user): a calibrated value would
-- make a new run skip its calibration; the entropy model's shape is its checkpoint's.
BLT.internal = {
    ["patching.calibrated"] = "the run writes the mean patch size its calibration reached (give patching.target, "
        .. "or patching.target=0 with patching.threshold or patching.delta to skip calibration)",
    entropy = "the entropy model's config comes from its checkpoint (patching.entropy_model)",
    ["patching.scheme_source"] = "the run stores the scheme file's source (give patching.scheme=file:PATH)",
    ["patching.scheme_hash"] = "the run stores the scheme file's hash (give patching.scheme=file:PATH)",
}

-- The scheme of a patching config (blt.schemes) and its options. A file scheme is read
-- once (patching.scheme_source, scheme_hash: stored in the config and so in the
-- checkpoint) and compiled from that source from then on, never from the file.
function BLT.scheme(pc)
    local s
    if schemes.is_file(pc.scheme) then
        if pc.scheme_source == "" then
            pc.scheme_source = schemes.read(pc.scheme)
            pc.scheme_hash = schemes.hash(pc.scheme_source)
        elseif schemes.hash(pc.scheme_source) ~= pc.scheme_hash then
            error(("patching.scheme_source: its hash is %s, the config says %s (the source was changed)")
                :format(schemes.hash(pc.scheme_source), tostring(pc.scheme_hash)), 0)
        end
        s = schemes.get(pc.scheme, pc.scheme_source)
    else
        s = schemes.get(pc.scheme)
    end
    local opts
    if s.kernel then
        if (pc.options or "") ~= "" then
            error(("patching.options: scheme '%s' takes its options as patching.* keys"):format(pc.scheme), 0)
        end
        opts = {}
        for k in pairs(s.options) do opts[k] = pc[k] end
    else
        opts = schemes.options(s, schemes.parse_options(pc.options or "", "patching.options"))
    end
    return s, opts
end

local function needs_entropy(pc) return (BLT.scheme(pc)).needs_entropy end

function BLT.check(cfg)
    BLT.check_config(cfg.model)
    local pc = cfg.patching
    BLT.scheme(pc) -- reads and checks a scheme file and its options
    if needs_entropy(pc) and not pc.entropy_model then
        error(("patching.entropy_model: scheme '%s' needs an entropy model checkpoint"):format(pc.scheme), 0)
    end
    if pc.scheme == "entropy_delta" and pc.target == 0 and pc.delta == 0 and pc.calibrated == 0 then
        error("patching.delta: give delta > 0 or a target patch size to calibrate it to", 0)
    end
end

function BLT.count_params(cfg, frozen)
    local n = BLT.param_count(cfg.model)
    if frozen and needs_entropy(cfg.patching) then n = n + ByteLM.param_count(cfg.entropy) end
    return n
end

BLT.size_keys = {"model.dim", "model.global.dim", "model.global.layers", "model.hash.buckets"}

-- Mean bytes per patch a config leads to, for the memory estimate: the scheme's own
-- size, the calibration target, or 2 when a threshold is given as it is (unknown).
local function mean_patch(pc)
    local p = 2
    local s, opts = BLT.scheme(pc)
    local known = schemes.mean_patch(s, opts)
    if known then p = known
    elseif pc.calibrated > 0 then p = pc.calibrated
    elseif s.estimate then p = s.estimate
    elseif pc.target > 0 then p = pc.target end
    if pc.max_patch_len > 0 then p = math.min(p, pc.max_patch_len) end
    return math.max(1, p)
end

-- Activations of one row of T bytes (blt.memory.estimate): per byte the encoder and
-- decoder blocks, the decoder's cross-attention (about 7 d), the hash embeddings
-- (2 d per n-gram size) and the head; per patch the global blocks and the k slots
-- (about 12 d each with one pooling and two decoder cross-attentions). The entropy
-- model's forward (no gradients) and the calibration's are counted too, once setup
-- has loaded it (o.before_setup: its size is not known yet).
function BLT.activations(cfg, T, o)
    local memory = require "blt.memory"
    local m, pc = cfg.model, cfg.patching
    local d, k = m.dim, m.k
    local h = nn.ffn_hidden(d, m.multiple_of)
    local P = T / mean_patch(pc) + 1
    local n_ce = m.encoder.cross_every_layer and m.encoder.layers or 1
    local n_cd = m.decoder.cross_every_layer and m.decoder.layers or 1
    local out = {
        {what = "activations of the encoder", floats = T * m.encoder.layers * memory.block(d, h),
         keys = {"model.encoder.layers", "model.dim"}},
        {what = "activations of the decoder", floats = T * (m.decoder.layers * memory.block(d, h) + n_cd * 7 * d),
         keys = {"model.decoder.layers", "model.dim"}},
        {what = "activations of the global model",
         floats = P * m.global.layers * memory.block(m.global.dim, nn.ffn_hidden(m.global.dim, m.multiple_of)),
         keys = {"model.global.layers", "model.global.dim", "a larger patch size"}},
        {what = "the patch slots", floats = P * k * d * (4 + 4 * n_ce + 2 * n_cd), keys = {"model.k", "model.dim"}},
        {what = "hash embeddings, norms and logits", floats = T * (2 * #BLT.ngrams(m) * d + 10 * d + memory.head(ids.VOCAB)),
         keys = {"model.hash.ngrams", "model.dim"}},
    }
    if needs_entropy(pc) and not o.before_setup then
        local blocks, head = ByteLM.position_floats(cfg.entropy, ids.VOCAB)
        out[#out + 1] = {what = "the entropy model's forward", floats = T * (blocks + head), keys = {"the entropy model"}}
        if pc.target > 0 and pc.calibrated == 0 then
            out[#out + 1] = {what = "the calibration's entropies", floats = pc.calib_bytes * (blocks + head),
                             per_row = false, fixed_len = true, keys = {"patching.calib_bytes"}}
        end
    end
    return out
end

local function patcher_of(pc, entropy_model)
    local patching = require "blt.patching"
    local s, opts = BLT.scheme(pc)
    local o = {scheme = pc.scheme, max_patch_len = pc.max_patch_len > 0 and pc.max_patch_len or nil}
    if not s.kernel then
        o.scheme = schemes.rule(s, opts)
        local p = patching.patcher(o)
        p.needs_entropy = s.needs_entropy -- the model computes its entropies and hands them over
        return p
    end
    for k, v in pairs(opts) do o[k] = v end
    if pc.scheme == "entropy_delta" and pc.threshold <= 0 then o.threshold = nil end -- 0: no combined threshold
    return patching.patcher(o)
end

-- Before a new run builds its model: loads the entropy model (its config goes into
-- cfg.entropy) and calibrates the threshold to the target patch size on a seeded
-- sample of training windows (cfg.patching.threshold or .delta, and .calibrated).
-- Errors name the key. Returns the source build() takes.
-- The part of a new run's setup that needs no corpus (a training script's --check runs it
-- alone): the scheme, and the entropy model a scheme needs (it loads, and the run fits
-- in memory with it). Returns the scheme and the entropy model (nil when not needed).
function BLT.preflight(cfg)
    local pc = cfg.patching
    local scheme = BLT.scheme(pc)
    if not needs_entropy(pc) then return scheme end
    local ok, em = pcall(require("blt.entropy").load_model, pc.entropy_model)
    if not ok then
        error(("patching.entropy_model = %s: %s (train one with ./blt experiments/train_entropy_model.lua)")
              :format(pc.entropy_model, (tostring(em):gsub("^[^\n]-:%d+: ", ""):gsub("^entropy%.load_model: ", ""))), 0)
    end
    for k in pairs(ByteLM.defaults) do cfg.entropy[k] = em.config[k] end
    local too_big = require("blt.memory").check(BLT, cfg) -- now with the entropy model and its calibration
    if too_big then error(too_big, 0) end
    return scheme, em
end

function BLT.setup(cfg, corpus, log)
    local pc = cfg.patching
    local scheme, em = BLT.preflight(cfg)
    if not em then
        BLT.check_scheme(cfg, corpus, nil, log)
        return {}
    end
    local entropy = require "blt.entropy"
    if scheme.kernel and pc.target > 0 and pc.calibrated == 0 then
        local seq = cfg.train and cfg.train.seq_len or 256
        local rows = corpus:sample_windows {split = "train", len = seq, bytes = pc.calib_bytes, seed = pc.calib_seed}
        local ents = core.no_grad(function()
            local seg = pc.reset_on_newline and entropy.newline_segments(rows) or nil
            return em:entropies(rows, seg)
        end)
        local value, reached = require("blt.patching").calibrate {
            scheme = pc.scheme, target = pc.target, rows = rows, entropies = ents,
            threshold = pc.scheme == "entropy_delta" and pc.threshold > 0 and pc.threshold or nil,
            max_patch_len = pc.max_patch_len > 0 and pc.max_patch_len or nil}
        if pc.scheme == "entropy" then pc.threshold = value else pc.delta = value end
        pc.calibrated = reached
        if log then
            log(("patching: %s %s = %.4f calibrated to %.2f bytes/patch on %d sampled training windows of %d bytes (reached %.3f)")
                :format(pc.scheme, pc.scheme == "entropy" and "threshold" or "delta", value, pc.target, rows:size(1), seq, reached))
        end
    end
    BLT.check_scheme(cfg, corpus, em, log)
    return {entropy_model = em}
end

-- At a run's start: the paper's rule that patching is incremental, checked on a
-- sample of the training text (every scheme: a look-ahead is refused, naming the first
-- position it moved), then a file scheme's mean patch size measured on the calibration
-- sample (pc.calibrated: the FLOPs and memory estimates use it).
local LOOKAHEAD_BYTES = 48
function BLT.check_scheme(cfg, corpus, em, log)
    local pc = cfg.patching
    local s, opts = BLT.scheme(pc)
    local entropy = em and require "blt.entropy"
    local function ents_of(rows)
        if not em then return nil end
        return core.no_grad(function()
            return em:entropies(rows, pc.reset_on_newline and entropy.newline_segments(rows) or nil)
        end)
    end
    if not s.kernel and pc.calibrated == 0 and not schemes.mean_patch(s, opts) then
        local seq = cfg.train and cfg.train.seq_len or 256
        local rows = corpus:sample_windows {split = "train", len = seq, bytes = pc.calib_bytes, seed = pc.calib_seed}
        local ents = ents_of(rows)
        local function mean_with(o)
            local p = require("blt.patching").patcher {scheme = schemes.rule(s, o),
                max_patch_len = pc.max_patch_len > 0 and pc.max_patch_len or nil}
            local _, _, counts = p:batch(rows, ents)
            local patches = 0
            for _, k in ipairs(counts:totable()) do patches = patches + k - 1 end
            return patches > 0 and rows:size(1) * (rows:size(2) - 1) / patches or math.huge
        end
        local how = ""
        if s.calibrates and pc.target > 0 then -- its option calibrated to the target, as the entropy schemes'
            local k = s.calibrates
            local x = schemes.calibrate(function(v) opts[k] = v; return mean_with(opts) end, opts[k], pc.target)
            opts[k] = x
            local words = {}
            for name, v in pairs(opts) do
                words[#words + 1] = name .. "=" .. (math.type(v) == "float" and ("%.17g"):format(v) or tostring(v))
            end
            table.sort(words)
            pc.options = table.concat(words, ",")
            how = (" with %s = %.4g calibrated to %.2f"):format(k, x, pc.target)
        end
        pc.calibrated = mean_with(opts)
        if log then
            log(("patching: scheme %s (hash %s) makes %.3f bytes/patch%s on %d sampled training windows of %d bytes")
                :format(pc.scheme, pc.scheme_hash, pc.calibrated, how, rows:size(1), seq))
        end
    end
    -- the look-ahead check, with the options the run will use
    local p = patcher_of(pc, em)
    local sample = corpus:sample_windows {split = "train", len = LOOKAHEAD_BYTES, bytes = LOOKAHEAD_BYTES,
                                          seed = pc.calib_seed}
    local row = sample:totable()[1]
    local ok, pos, why = schemes.check_incremental(function(r)
        local e = ents_of(core.tensor({r}, "int32"))
        return (p:flags(r, e and e:totable()[1]))
    end, row)
    if not ok then
        error(("patching.scheme = %s: refused: %s (position %d of a %d-byte training sample)")
            :format(pc.scheme, why, pos - 2, #row - 1), 0)
    end
end

-- The model of a config. source: setup()'s result (a new run) or a loaded checkpoint
-- (resume, load: the entropy model is rebuilt from its entropy.* tensors).
function BLT.build(cfg, seed, source)
    source = source or {}
    local em
    if needs_entropy(cfg.patching) then
        em = source.entropy_model
        if not em then
            if not source.params then error("blt.models.blt: no entropy model to build from", 2) end
            em = ByteLM.new(cfg.entropy, 1)
            require("blt.models").load_into(em, source, {prefix = "entropy", strict = false, path = source.path})
        end
    end
    return BLT.new(cfg.model, seed, {patcher = patcher_of(cfg.patching, em), entropy_model = em,
                                     reset_on_newline = cfg.patching.reset_on_newline})
end

-- BLT.new(model config, seed, {patcher =, entropy_model =}): the patcher decides the
-- patches (blt.patching); an entropy model (a ByteLM) is needed by the entropy schemes.
function BLT.new(m, seed, opts)
    opts = opts or {}
    BLT.check_config(m)
    if math.type(seed) ~= "integer" then error("blt.models.blt: needs an integer seed", 2) end
    if not opts.patcher then error("blt.models.blt: needs a patcher (blt.patching.patcher{...})", 2) end
    local self = nn.Module.new(BLT)
    local rng = core.Generator(seed)
    local d, dg, k = m.dim, m.global.dim, m.k
    self.config, self.patcher, self.entropy_model = m, opts.patcher, opts.entropy_model
    self.reset_on_newline = opts.reset_on_newline or false
    self.frozen = opts.entropy_model and "entropy" or nil -- stored with the model, never trained
    self.ngrams = BLT.ngrams(m)
    local local_block = {dim = d, heads = m.heads, multiple_of = m.multiple_of, rope_theta = m.rope_theta,
                         norm_eps = m.norm_eps}

    local enc = self:child("encoder", nn.Module.new(nn.Module))
    self.byte_embed = enc:child("byte_embed", nn.Embedding {num = ids.VOCAB, dim = d, rng = rng})
    self.hash_tables = {}
    if #self.ngrams > 0 then
        local hash = enc:child("hash", nn.Module.new(nn.Module))
        for i, n in ipairs(self.ngrams) do
            self.hash_tables[i] = hash:child("n" .. n, nn.Embedding {num = m.hash.buckets, dim = d, rng = rng})
        end
    end
    self.enc_layers = {}
    local el = enc:child("layers", nn.Module.new(nn.Module))
    local_block.window = m.encoder.window
    for i = 1, m.encoder.layers do self.enc_layers[i] = el:child(i - 1, block(local_block, rng)) end
    self.pool_proj = enc:child("pool_proj", nn.Linear {in_dim = d, out_dim = k * d, rng = rng})
    self.enc_cross = {} -- by encoder layer index (1-based): the layers followed by pooling
    local ec = enc:child("cross", nn.Module.new(nn.Module))
    local first_e = m.encoder.cross_every_layer and 1 or m.encoder.layers
    for i = first_e, m.encoder.layers do
        self.enc_cross[i] = ec:child(i - first_e, nn.CrossAttention {dim = d, heads = m.cross.heads, rng = rng})
    end

    local glob = self:child("global", nn.Module.new(nn.Module))
    if k * d ~= dg then self.in_proj = glob:child("in_proj", nn.Linear {in_dim = k * d, out_dim = dg, rng = rng}) end
    self.glob_layers = {}
    local gl = glob:child("layers", nn.Module.new(nn.Module))
    for i = 1, m.global.layers do
        self.glob_layers[i] = gl:child(i - 1, block({dim = dg, heads = m.global.heads, window = m.global.window,
            multiple_of = m.multiple_of, rope_theta = m.rope_theta, norm_eps = m.norm_eps}, rng))
    end

    local dec = self:child("decoder", nn.Module.new(nn.Module))
    self.patch_proj = dec:child("patch_proj", nn.Linear {in_dim = dg, out_dim = k * d, rng = rng})
    self.dec_cross = {}
    local dc = dec:child("cross", nn.Module.new(nn.Module))
    local n_dc = m.decoder.cross_every_layer and m.decoder.layers or 1
    for i = 1, n_dc do self.dec_cross[i] = dc:child(i - 1, nn.CrossAttention {dim = d, heads = m.cross.heads, rng = rng}) end
    self.dec_layers = {}
    local dl = dec:child("layers", nn.Module.new(nn.Module))
    local_block.window = m.decoder.window
    for i = 1, m.decoder.layers do self.dec_layers[i] = dl:child(i - 1, block(local_block, rng)) end
    self.norm = dec:child("norm", nn.RMSNorm {dim = d, eps = m.norm_eps})
    self.head = dec:child("head", nn.Linear {in_dim = d, out_dim = ids.VOCAB, rng = rng})
    return self
end

-- Parameters a checkpoint holds: the trained ones, then the entropy model's under
-- entropy.* (frozen: not in parameter_list, so no optimiser updates them).
function BLT:state_list()
    local out = self:parameter_list()
    if self.entropy_model then self.entropy_model:parameter_list("entropy", out) end
    return out
end

-- The work on a batch that needs no gradients: entropies (entropy schemes), patch
-- lengths and ids, the decoder's patch ids, the slots' patch ids and the hash buckets.
-- inputs int32 [B,T]. The batch is padded to its own largest patch count.
function BLT:prepare(inputs)
    return core.no_grad(function()
        local B, T = inputs:size(1), inputs:size(2)
        local p = {}
        if self.patcher.needs_entropy then
            if not self.entropy_model then error("blt.models.blt: the entropy scheme needs an entropy model", 2) end
            local seg = self.reset_on_newline and require("blt.entropy").newline_segments(inputs) or nil
            p.entropies = self.entropy_model:entropies(inputs, seg)
        end
        local lengths, pid, counts, next_flags = self.patcher:batch(inputs, p.entropies)
        p.lengths, p.pid, p.counts = lengths, pid, counts
        -- the batch's mean patch size (bytes per patch, BOS patches and pads excluded), for the metrics
        local patches = 0
        for _, c in ipairs(counts:totable()) do patches = patches + c - 1 end
        local bytes = core.nn_count_ne(inputs, ids.PAD) - B
        self.last_patch_mean = patches > 0 and bytes / patches or nil
        local P = lengths:size(2)
        p.P = P
        -- decoder patch id of position t: patch_of(t + 1) - 1 (docs/model.md); the last
        -- position's next patch comes from s[T] (unknown counts as a new patch)
        local pids, nexts = pid:totable(), next_flags:totable()
        local dec = {}
        for b = 1, B do
            local r, out = pids[b], {}
            for t = 1, T - 1 do out[t] = r[t + 1] - 1 end
            out[T] = nexts[b] == 0 and r[T] - 1 or r[T]
            dec[b] = out
        end
        p.dec = core.tensor(dec, "int32")
        local k, slots = self.config.k, {}
        for s = 1, P * k do slots[s] = (s - 1) // k end
        local row = core.tensor(slots, "int32"):reshape({1, P * k})
        p.slot_pid = core.concat((function()
            local t = {}
            for b = 1, B do t[b] = row end
            return t
        end)(), 1)
        if #self.ngrams > 0 then p.buckets = core.hash_buckets(inputs, self.ngrams, self.config.hash.buckets) end
        return p
    end)
end

-- The byte embedding of ids plus each hash table's rows at its bucket ids (buckets[i]
-- shaped like ids), as core.embedding_sum: one op, the bits of the lookups added in
-- order. It takes at most 8 tables; more are added in groups.
local function embed(self, ids, buckets)
    local ws, is = {self.byte_embed.weight}, {ids}
    for i, tbl in ipairs(self.hash_tables) do ws[i + 1], is[i + 1] = tbl.weight, buckets[i] end
    local h
    for a = 1, #ws, 8 do
        local part = core.embedding_sum(table.move(ws, a, math.min(a + 7, #ws), 1, {}),
                                        table.move(is, a, math.min(a + 7, #is), 1, {}))
        h = h and h + part or part
    end
    return h
end

-- Cross-attention pooling after an encoder layer: the first pooled layer makes the
-- queries from the max over each patch's bytes.
local function pool(self, cross, h, q, p)
    local B, d, k = h:size(1), self.config.dim, self.config.k
    if not q then
        q = self.pool_proj:forward(core.segment_maxpool(h, p.lengths)):reshape({B, p.P * k, d})
    end
    return cross:forward(q, h, {q_seg = p.slot_pid, k_seg = p.pid})
end

-- inputs int32 [B,T] -> logits [B,T,260]; p: prepare(inputs) (computed when absent).
function BLT:forward(inputs, p)
    p = p or self:prepare(inputs)
    local B, T = inputs:size(1), inputs:size(2)
    local d, k = self.config.dim, self.config.k
    -- encoder
    local buckets = {}
    for i = 1, #self.hash_tables do buckets[i] = core.narrow(p.buckets, 1, i, 1):reshape({B, T}) end
    local h = embed(self, inputs, buckets)
    local q
    for i, layer in ipairs(self.enc_layers) do
        h = layer:forward(h)
        if self.enc_cross[i] then q = pool(self, self.enc_cross[i], h, q, p) end
    end
    -- global, over the patch vectors (k slots side by side)
    local g = q:reshape({B, p.P, k * d})
    if self.in_proj then g = self.in_proj:forward(g) end
    for _, layer in ipairs(self.glob_layers) do g = layer:forward(g) end
    -- decoder: bytes query the slots of the last patch complete before them
    local kv = self.patch_proj:forward(g):reshape({B, p.P * k, d})
    for i, layer in ipairs(self.dec_layers) do
        if self.dec_cross[i] then h = self.dec_cross[i]:forward(h, kv, {q_seg = p.dec, k_seg = p.slot_pid}) end
        h = layer:forward(h)
    end
    return self.head:forward(self.norm:forward(h))
end

-- ---- one position at a time (generation; blt.generate, docs/model.md) ----
-- state = model:start(); logits [1,1,V] = model:step(state, id) feeds the token at the
-- next position and returns the prediction of the one after it, equal to the full
-- forward's row. Per byte, the entropy model, the encoder and the decoder advance one
-- position (ring caches of their windows); the global model advances only when a patch
-- closes, which the patcher decides causally from the row so far. model:stop(state)
-- frees the caches. Each step runs without gradients in a scope of its own; the caches
-- live outside it.
function BLT:start()
    local m, d = self.config, self.config.dim
    local st = {pos = 0, ids = {}, ents = self.patcher.needs_entropy and {} or nil,
                enc = kvcache.for_blocks(self.enc_layers, d), glob = kvcache.for_blocks(self.glob_layers, m.global.dim),
                dec = kvcache.for_blocks(self.dec_layers, d), pooled = {}, gpos = 0,
                slots = core.zeros({1, m.k, d})}
    for i in pairs(self.enc_cross) do st.pooled[i] = kvcache.rows(d, 0) end -- the open patch's byte states
    if st.ents then st.em = self.entropy_model:start() end
    st.max_n = 1
    for _, n in ipairs(self.ngrams) do st.max_n = math.max(st.max_n, n) end
    return st
end

function BLT:stop(st)
    for _, list in ipairs {st.enc, st.glob, st.dec} do kvcache.release_all(list) end
    for _, r in pairs(st.pooled) do r:release() end
    st.slots:release()
    if st.em then self.entropy_model:stop(st.em) end
end

-- The patch holding positions up to the current one closed: pool it, advance the
-- global model by one patch, and keep its slots for the decoder.
local function close_patch(self, st)
    local m, d, k = self.config, self.config.dim, self.config.k
    local q
    for i = 1, #self.enc_layers do
        local cross = self.enc_cross[i]
        if cross then
            local H = st.pooled[i]:view()
            if not q then
                local len = core.tensor({{H:size(2)}}, "int32")
                q = self.pool_proj:forward(core.segment_maxpool(H, len)):reshape({1, k, d})
            end
            q = cross:forward(q, H)
            st.pooled[i]:reset()
        end
    end
    local g = q:reshape({1, 1, k * d})
    if self.in_proj then g = self.in_proj:forward(g) end
    for l, layer in ipairs(self.glob_layers) do g = kvcache.block_step(layer, g, st.glob[l], st.gpos) end
    st.gpos = st.gpos + 1
    st.slots:copy(self.patch_proj:forward(g):reshape({1, k, d}))
end

function BLT:step(st, id)
    for _, list in ipairs {st.enc, st.glob, st.dec} do kvcache.ensure_all(list) end
    for _, r in pairs(st.pooled) do r:ensure() end
    return core.no_grad(function() return core.scope(function() return self:_step(st, id) end) end)
end

function BLT:_step(st, id)
    local t = st.pos
    st.ids[t + 1] = id
    if st.ents then -- the entropy model's prediction at t decides s[t+1]
        if self.reset_on_newline and t > 0 and st.ids[t] == NEWLINE then self.entropy_model:restart(st.em) end
        st.ents[t + 1] = core.softmax_entropy(ByteLM.in_fp32(self.entropy_model.step, self.entropy_model, st.em, id)):item()
    end
    -- encoder: the byte and its n-grams (the tail of the row holds every window ending at t)
    local buckets = {}
    if #self.ngrams > 0 then
        local tail = {}
        for i = math.max(1, t + 2 - st.max_n), t + 1 do tail[#tail + 1] = st.ids[i] end
        local b = core.hash_buckets(core.tensor({tail}, "int32"), self.ngrams, self.config.hash.buckets)
        for i = 1, #self.hash_tables do buckets[i] = core.narrow(core.narrow(b, 1, i, 1), 3, #tail, 1):reshape({1, 1}) end
    end
    local x = embed(self, core.tensor({{id}}, "int32"), buckets)
    for i, layer in ipairs(self.enc_layers) do
        x = kvcache.block_step(layer, x, st.enc[i], t)
        if st.pooled[i] then st.pooled[i]:append(x) end
    end
    -- s[t+1]: does the next token start a patch? Then the patch ending at t is complete
    -- (unknown, from a function scheme: a new patch, as in training)
    if self.patcher:next_flag(st.ids, st.ents) ~= false then close_patch(self, st) end
    -- decoder: the last complete patch is patch_of(t+1) - 1
    local h = x
    for i, layer in ipairs(self.dec_layers) do
        if self.dec_cross[i] then h = self.dec_cross[i]:forward(h, st.slots) end
        h = kvcache.block_step(layer, h, st.dec[i], t)
    end
    st.pos = t + 1
    return self.head:forward(self.norm:forward(h))
end

-- ---- a prompt at once (blt.generate): BLT:prefill(st, list) -> logits [1,1,V] ----
-- Leaves st as list's steps would, reading it in chunks of BLT.PREFILL_CHUNK bytes:
-- the entropy model's chunks (cut after each newline when its context restarts
-- there), then the patch boundaries of the whole prompt from one patcher call (the
-- builtin schemes are causal: the prefix's next flag is the whole row's), then per
-- chunk the encoder, the pooling of every patch the chunk closes and the global model
-- over those patches, and the decoder, each with its caches. The work per chunk is
-- bounded by the chunk, the windows and the open patch, so the time is linear in the
-- prompt (with a global window of 0, plus the global attention over all patches).
-- A function scheme sees the whole row so far at every byte: it is read step by step.
BLT.PREFILL_CHUNK = 512

function BLT:prefill(st, list)
    if st.pos ~= 0 then error("blt.models.BLT: prefill needs a fresh state", 2) end
    if #list == 0 then error("blt.models.BLT: prefill needs at least one id", 2) end
    local logits
    if self.patcher.fn then
        for _, id in ipairs(list) do logits = self:step(st, id) end
        return logits
    end
    local N = #list
    for i = 1, N do st.ids[i] = list[i] end
    if st.ents then self:_prefill_entropies(st, N) end
    -- close[i]: the patch ending at list[i] is complete (s[i] of the row; unknown: yes)
    local flags, nx = self.patcher:flags(st.ids, st.ents)
    local close = {}
    for i = 1, N - 1 do close[i] = flags[i + 1] == 1 end
    close[N] = nx ~= false
    for a = 1, N, BLT.PREFILL_CHUNK do
        local b = math.min(N, a + BLT.PREFILL_CHUNK - 1)
        for _, caches in ipairs {st.enc, st.glob, st.dec} do kvcache.ensure_all(caches, b - a + 1) end
        for _, r in pairs(st.pooled) do r:ensure(b - a + 1) end
        logits = core.no_grad(function()
            return core.scope(function() return self:_prefill_chunk(st, a, b, close, b == N) end)
        end)
    end
    return logits
end

-- The entropy of the entropy model's prediction at every position of st.ids[1..N],
-- into st.ents, its state advanced as its steps would (restarting after a newline).
function BLT:_prefill_entropies(st, N)
    local em, a = self.entropy_model, 1
    while a <= N do
        local b = math.min(N, a + BLT.PREFILL_CHUNK - 1)
        if self.reset_on_newline then
            if a > 1 and st.ids[a - 1] == NEWLINE then em:restart(st.em) end
            for i = a, b - 1 do if st.ids[i] == NEWLINE then b = i break end end
        end
        kvcache.ensure_all(st.em.caches, b - a + 1)
        local e = ByteLM.in_fp32(core.no_grad, function() -- entropies in fp32 whatever the precision
            return core.scope(function()
                return core.softmax_entropy(em:_head(em:_feed(st.em, st.ids, a, b))):totable()[1]
            end)
        end)
        table.move(e, 1, #e, a, st.ents)
        a = b + 1
    end
end

-- One chunk st.ids[a..b] (inside no_grad and a scope; the caches have room for it).
function BLT:_prefill_chunk(st, a, b, close, last)
    local m, d, k = self.config, self.config.dim, self.config.k
    local n = b - a + 1
    local buckets = {}
    if #self.ngrams > 0 then -- every n-gram ending in the chunk: the row from max_n - 1 bytes before it
        local s0 = math.max(1, a + 1 - st.max_n)
        local tail = table.move(st.ids, s0, b, 1, {})
        local bk = core.hash_buckets(core.tensor({tail}, "int32"), self.ngrams, m.hash.buckets)
        for i = 1, #self.hash_tables do
            buckets[i] = core.narrow(core.narrow(bk, 1, i, 1), 3, #tail - n + 1, n):reshape({1, n})
        end
    end
    local x = embed(self, core.tensor({table.move(st.ids, a, b, 1, {})}, "int32"), buckets)
    -- the patches this chunk closes: their lengths (the first one counts the open
    -- patch's rows held from earlier chunks)
    local held = next(st.pooled) and st.pooled[next(st.pooled)]:size() or 0
    local lens, last_end = {}, a - 1 - held
    for i = a, b do
        if close[i] then lens[#lens + 1] = i - last_end; last_end = i end
    end
    local P, used = #lens, last_end - (a - 1 - held) -- used: the rows (held, then the chunk's) the closed patches span
    -- encoder
    local rows = {}
    for i, layer in ipairs(self.enc_layers) do
        x = kvcache.block_chunk(layer, x, st.enc[i], a - 1)
        if st.pooled[i] then rows[i] = x end
    end
    local slots
    if P > 0 then -- pool the closed patches (as close_patch does one), then the global model over them
        local kseg, qseg = {}, {}
        for j, l in ipairs(lens) do for _ = 1, l do kseg[#kseg + 1] = j - 1 end end
        for j = 1, P do for _ = 1, k do qseg[#qseg + 1] = j - 1 end end
        local segs = {q_seg = core.tensor({qseg}, "int32"), k_seg = core.tensor({kseg}, "int32")}
        local q
        for i = 1, #self.enc_layers do
            local cross = self.enc_cross[i]
            if cross then
                local H = held > 0 and core.concat({st.pooled[i]:view(), rows[i]}, 2) or rows[i]
                H = core.narrow(H, 2, 1, used)
                if not q then
                    q = self.pool_proj:forward(core.segment_maxpool(H, core.tensor({lens}, "int32"))):reshape({1, P * k, d})
                end
                q = cross:forward(q, H, segs)
            end
        end
        local g = q:reshape({1, P, k * d})
        if self.in_proj then g = self.in_proj:forward(g) end
        for l, layer in ipairs(self.glob_layers) do g = kvcache.block_chunk(layer, g, st.glob[l], st.gpos) end
        st.gpos = st.gpos + P
        slots = self.patch_proj:forward(g):reshape({1, P * k, d})
    end
    -- the open patch keeps the chunk's rows after the last close
    local keep = P > 0 and n - (used - held) or n
    for i, r in pairs(st.pooled) do
        if P > 0 then r:reset() end
        if keep > 0 then r:append_block(core.narrow(rows[i], 2, n - keep + 1, keep)) end
    end
    -- decoder: byte i queries the slots of the last patch closed at or before it
    -- (the slots held from before the chunk: segment 0)
    local kv, dsegs = st.slots, nil
    if P > 0 then
        kv = core.concat({st.slots, slots}, 2)
        local dq, dk, c = {}, {}, 0
        for i = a, b do
            if close[i] then c = c + 1 end
            dq[#dq + 1] = c
        end
        for j = 0, P do for _ = 1, k do dk[#dk + 1] = j end end
        dsegs = {q_seg = core.tensor({dq}, "int32"), k_seg = core.tensor({dk}, "int32")}
    end
    local h = x
    for i, layer in ipairs(self.dec_layers) do
        if self.dec_cross[i] then h = self.dec_cross[i]:forward(h, kv, dsegs) end
        h = kvcache.block_chunk(layer, h, st.dec[i], a - 1)
    end
    if P > 0 then st.slots:copy(core.narrow(slots, 2, (P - 1) * k + 1, k)) end
    st.pos = b
    if last then return self.head:forward(self.norm:forward(core.narrow(h, 2, n, 1))) end
end

-- rows int32 [B,N] ([BOS, ids...], 0-padded): predicts rows[:, 2..N] from
-- rows[:, 1..N-1]. The mean loss (nats) over non-pad targets, or their sum.
function BLT:loss(rows, reduction) return nn.next_byte_loss(self, rows, reduction) end

-- ---- what the sweeps and blt.flops ask of the kind (blt.models) ----

-- FLOPs per byte (docs/flops.md; the shared parts in blt.flops) of the BLT. opts: mean_patch (bytes per patch: seq_len / patches per row, the BOS patch
-- counted), seq_len (bytes per row, BOS included), full_context, entropy (the entropy
-- model's config when patching runs online; absent: patches come free, as for
-- fixed and space patching or precomputed entropies).
-- Components: entropy, encoder, cross (pooling and decoder cross-attention, with
-- pool_proj and patch_proj; split in cross_encoder and cross_decoder of f.detail),
-- global (with in_proj), decoder (its blocks), head.
function BLT.model_flops(cfg, opts)
    opts = opts or {}
    local m = flops.filled(BLT.defaults, cfg or {})
    local T, p = flops.need(opts, "seq_len", "blt"), flops.need(opts, "mean_patch", "blt")
    local full = opts.full_context
    local d, dg, k = m.dim, m.global.dim, m.k
    local lin, att = {}, {}
    -- encoder and decoder blocks, per byte
    local l, a = flops.block_macs(d, m.multiple_of, flops.mean_keys(T, m.encoder.window, full))
    lin.encoder, att.encoder = 2 * m.encoder.layers * l, 2 * m.encoder.layers * a
    l, a = flops.block_macs(d, m.multiple_of, flops.mean_keys(T, m.decoder.window, full))
    lin.decoder, att.decoder = 2 * m.decoder.layers * l, 2 * m.decoder.layers * a
    -- pooling: pool_proj once per patch (d -> k d); each pooled layer: wk, wv on every
    -- byte, wq, wo on every slot (k per patch); k slot queries per patch each see the
    -- patch's bytes: k pairs per byte
    local n_ce = m.encoder.cross_every_layer and m.encoder.layers or 1
    local ce_lin = 2 * (k * d * d / p + n_ce * (2 * d * d + 2 * k * d * d / p))
    local ce_att = 2 * n_ce * 2 * d * k
    -- decoder cross: patch_proj once per patch (d_G -> k d); each cross layer: wq, wo on
    -- every byte, wk, wv on every slot; a byte sees the k slots of one patch
    local n_cd = m.decoder.cross_every_layer and m.decoder.layers or 1
    local cd_lin = 2 * (k * d * dg / p + n_cd * (2 * d * d + 2 * k * d * d / p))
    local cd_att = 2 * n_cd * 2 * d * k
    lin.cross, att.cross = ce_lin + cd_lin, ce_att + cd_att
    -- global: per patch, divided by the patch size; P = T / p patches per row
    l, a = flops.block_macs(dg, m.multiple_of, flops.mean_keys(T / p, m.global.window, full))
    lin.global = 2 * ((k * d ~= dg and k * d * dg or 0) + m.global.layers * l) / p
    att.global = 2 * m.global.layers * a / p
    lin.head = 2 * d * ids.VOCAB
    if opts.entropy then
        local e = ByteLM.model_flops(opts.entropy, {seq_len = T, full_context = full})
        lin.entropy, att.entropy = e.linear.total, e.attention.total
    end
    local f = flops.assemble(lin, att, {"entropy", "encoder", "cross", "global", "decoder", "head"}, {entropy = true})
    f.detail = {cross_encoder = {linear = ce_lin, attention = ce_att}, cross_decoder = {linear = cd_lin, attention = cd_att}}
    return f
end


-- A run config knows its entropy model (online entropy patching is charged) and its
-- scheme's mean patch size (declared, or a file scheme's measured at its run's start).
function BLT.flops(cfg, opts)
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    local pc = cfg.patching
    local schemes = require "blt.schemes"
    local s = pc and pc.scheme and schemes.get(pc.scheme, pc.scheme_source)
    if s then
        if o.entropy == nil and s.needs_entropy then o.entropy = cfg.entropy end
        local so = {}
        for k, v in pairs(s.options) do so[k] = pc[k] == nil and v or pc[k] end
        if o.mean_patch == nil then o.mean_patch = schemes.mean_patch(s, so) end
        if o.mean_patch == nil and not s.kernel and (pc.calibrated or 0) > 0 then o.mean_patch = pc.calibrated end
    end
    return BLT.model_flops(cfg.model, o)
end

-- all but the byte and hash n-gram embeddings
function BLT.scaled_params(cfg)
    local m = cfg.model
    local ngrams = m.hash.buckets > 0 and #BLT.ngrams(m) or 0
    return BLT.count_params(cfg, false) - ids.VOCAB * m.dim - ngrams * m.hash.buckets * m.dim
end

-- The model part of each budget (P.blt); the sweeps' points of the BLT are its
-- patching schemes' (blt.experiment.model_point), not a baseline's.
local BLT_SMOKE = {dim = 32, heads = 2, k = 2, multiple_of = 32, encoder = {layers = 1, window = 64},
                   global = {dim = 64, layers = 1, heads = 2}, decoder = {layers = 1, window = 64}, cross = {heads = 2},
                   hash = {ngrams = "3,4,5", buckets = 256}}
local BLT_FULL = {dim = 256, heads = 4, k = 2, multiple_of = 256, encoder = {layers = 1, window = 256},
                  global = {dim = 512, layers = 8, heads = 8}, decoder = {layers = 3, window = 256}, cross = {heads = 4},
                  hash = {ngrams = "3,4,5,6,7,8", buckets = 16384}}
-- compare: medium and small have narrow local models, so that a BLT's compute-optimal
-- data (docs/experiments.md, "Protocol") fits their time; demo: the demo's models.
local BLT_MEDIUM = {dim = 32, heads = 2, k = 2, multiple_of = 32, encoder = {layers = 1, window = 128},
                    global = {dim = 32, layers = 1, heads = 2}, decoder = {layers = 1, window = 128}, cross = {heads = 2},
                    hash = {ngrams = "3,4,5", buckets = 1024}}
BLT.presets = {
    compare = {
        smoke = BLT_SMOKE,
        medium = BLT_MEDIUM,
        small = {dim = 32, heads = 2, k = 2, multiple_of = 32, encoder = {layers = 1, window = 256},
                 global = {dim = 64, layers = 2, heads = 2}, decoder = {layers = 1, window = 256}, cross = {heads = 2},
                 hash = {ngrams = "3,4,5,6", buckets = 2048}},
        demo = {dim = 128, heads = 4, k = 2, multiple_of = 128, encoder = {layers = 1, window = 128},
                global = {dim = 256, layers = 4, heads = 4}, decoder = {layers = 2, window = 128}, cross = {heads = 4},
                hash = {ngrams = "3,4,5,6,7,8", buckets = 4096}},
        full = BLT_FULL,
    },
    scaling = {
        smoke = BLT_SMOKE,
        medium = BLT_MEDIUM,
        -- small local models, so that the global model is most of a BLT's FLOPs
        small = {dim = 32, heads = 2, k = 2, multiple_of = 32, encoder = {layers = 1, window = 128},
                 global = {dim = 128, layers = 2, heads = 4}, decoder = {layers = 1, window = 128}, cross = {heads = 2},
                 hash = {ngrams = "3,4,5", buckets = 1024}},
        full = BLT_FULL,
    },
}
BLT.preset_key = "blt"

return BLT
