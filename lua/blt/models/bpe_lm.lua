-- BpeLM: the token baseline (docs/model.md "The token baseline: BPE"): a byte-level BPE
-- tokenizer (blt.bpe) learned on the training split when a run starts, and ByteLM's
-- transformer over its tokens (vocabulary V = 260 + merges). It takes the same byte
-- rows as every model and its summed loss is in nats over the tokens that cover those
-- bytes, so models.nats / train.evaluate give bits per byte counting each byte once.
-- Parameter names as ByteLM's (embed [V,d], layers.<i>.*, norm, head [V,d]); the merge
-- list is stored frozen as bpe.merges (float32 [merges, 2], whole numbers).
local core = require "blt.core"
local flops = require "blt.flops"
local nn = require "blt.nn"
local ids = require "blt.ids"
local bpe = require "blt.bpe"
local ByteLM = require "blt.models.bytelm"

local BpeLM = nn.class("BpeLM")

BpeLM.kind = "bpe_lm"
BpeLM.loss_unit = "nats/token" -- its training loss (metrics.h5's loss column; loss_bpb is per byte)

BpeLM.bpe_defaults = {
    vocab = 4096,       -- total vocabulary: the 260 byte and special ids + merges
    train_bytes = 0,    -- learn the merges on the first this many ids of the train split (0: all)
    min_count = 2,      -- stop learning when no pair occurs this often
    merges = 0,         -- merges learned (written by the run; 0: not learned yet)
}

BpeLM.bpe_docs = {
    vocab = "total vocabulary: 260 byte and special ids + the merges to learn (the embedding and head size)",
    train_bytes = "learn the merges on the first this many ids of the train split (0: all of it)",
    min_count = "stop learning merges when no pair of tokens occurs this often",
    merges = "merges learned (written by the run, 0: not learned yet)",
}

local function int_ge(min)
    return function(v) if math.type(v) ~= "integer" or v < min then return ("must be an integer >= %d"):format(min) end end
end

BpeLM.MAX_MERGES = 1 << 20 -- core/bpe.h BLT_BPE_MAX_MERGES

BpeLM.sections = {model = ByteLM.defaults, bpe = BpeLM.bpe_defaults}
BpeLM.docs = {model = ByteLM.model_docs, bpe = BpeLM.bpe_docs}
BpeLM.rules = {
    ["bpe.vocab"] = function(v)
        if math.type(v) ~= "integer" or v <= ids.VOCAB or v > ids.VOCAB + BpeLM.MAX_MERGES then
            return ("must be an integer in %d..%d (260 byte and special ids + at least one merge)")
                   :format(ids.VOCAB + 1, ids.VOCAB + BpeLM.MAX_MERGES)
        end
    end,
    ["bpe.train_bytes"] = int_ge(0), ["bpe.min_count"] = int_ge(1), ["bpe.merges"] = int_ge(0),
}
for k, v in pairs(ByteLM.rules) do BpeLM.rules[k] = v end -- the model section is the ByteLM's

-- Keys the run writes (blt.train refuses them from the user).
BpeLM.internal = {["bpe.merges"] = "the run writes the number of merges it learned (give bpe.vocab)"}

function BpeLM.check(cfg)
    ByteLM.check_config(cfg.model)
    local b = cfg.bpe
    for key, rule in pairs(BpeLM.rules) do
        local k = key:match("^bpe%.(.*)$")
        local msg = k and rule(b[k])
        if msg then error(("%s = %s %s"):format(key, tostring(b[k]), msg), 0) end
    end
    if b.merges > b.vocab - ids.VOCAB then
        error(("bpe.merges = %d does not fit bpe.vocab = %d (at most %d merges)"):format(b.merges, b.vocab, b.vocab - ids.VOCAB), 0)
    end
end

-- ByteLM's count with V = bpe.vocab, and with frozen the merge list (2 numbers a merge).
function BpeLM.count_params(cfg, frozen)
    local m, V = cfg.model, cfg.bpe.vocab
    local hidden = nn.ffn_hidden(m.dim, m.multiple_of)
    local n = 2 * V * m.dim + m.layers * (4 * m.dim * m.dim + 3 * m.dim * hidden + 2 * m.dim) + m.dim
    if frozen then n = n + 2 * cfg.bpe.merges end
    return n
end

BpeLM.size_keys = {"bpe.vocab", "model.dim", "model.layers"}

-- Activations of one row of T bytes (blt.memory.estimate): ByteLM's over the row's
-- tokens, counted as T / 2 (the tokenizer is not learned yet; text BPE reaches 3-4
-- bytes a token), with the head over bpe.vocab ids.
function BpeLM.activations(cfg, T)
    local blocks, head = ByteLM.position_floats(cfg.model, cfg.bpe.vocab)
    local n = math.ceil(T / 2)
    return {{what = "activations of the blocks", floats = n * blocks, keys = {"model.layers", "model.dim"}},
            {what = "embedding, norms and logits over bpe.vocab ids", floats = n * head, keys = {"bpe.vocab"}}}
end

-- Before a new run builds its model: learns the merges on the train split and writes
-- their number into cfg.bpe.merges. Returns the source build() takes.
function BpeLM.setup(cfg, corpus, log)
    local b = cfg.bpe
    local t0 = core.now()
    local tok = bpe.train(corpus, {vocab = b.vocab, bytes = b.train_bytes, min_count = b.min_count})
    local dt = core.now() - t0
    if tok.n_merges == 0 then
        error(("bpe.vocab: no pair of bytes occurs %d times in the training text: no merge learned"):format(b.min_count), 0)
    end
    b.merges = tok.n_merges
    if log then
        local info = corpus:info()
        local n = b.train_bytes > 0 and math.min(b.train_bytes, info.train) or info.train
        log(("tokenizer: %d merges (vocab %d of %d) learned on %d train ids in %.2f s")
            :format(tok.n_merges, tok.vocab, b.vocab, n, dt))
    end
    return {tokenizer = tok}
end

-- The model of a config. source: setup()'s result (a new run) or a loaded checkpoint
-- (resume, load: the tokenizer is rebuilt from its bpe.merges).
function BpeLM.build(cfg, seed, source)
    source = source or {}
    local tok = source.tokenizer
    if not tok then
        local m = source.params and source.params["bpe.merges"]
        if not m then error("blt.models.bpe_lm: no tokenizer: the checkpoint holds no bpe.merges", 2) end
        local ok, t = pcall(bpe.new, m)
        if not ok then
            error(("blt.models.bpe_lm: %s: bpe.merges: %s"):format(tostring(source.path or "checkpoint"),
                  (tostring(t):gsub("^[^\n]-:%d+: ", ""))), 2)
        end
        tok = t
    end
    if tok.n_merges ~= cfg.bpe.merges then
        error(("blt.models.bpe_lm: the tokenizer has %d merges, the config says bpe.merges = %d")
              :format(tok.n_merges, cfg.bpe.merges), 2)
    end
    return BpeLM.new(cfg.model, seed, tok, cfg.bpe.vocab)
end

-- BpeLM.new(model config (ByteLM's keys), seed, tokenizer, vocab [default tok.vocab]).
function BpeLM.new(cfg, seed, tok, vocab)
    local m = ByteLM.resolve(cfg, seed, "BpeLM")
    if getmetatable(tok) ~= bpe.Tokenizer then error("blt.models.BpeLM: needs a tokenizer (blt.bpe)", 2) end
    vocab = vocab or tok.vocab
    if math.type(vocab) ~= "integer" or vocab < tok.vocab then
        error(("blt.models.BpeLM: vocab %s is smaller than the tokenizer's %d"):format(tostring(vocab), tok.vocab), 2)
    end
    local self = nn.Module.new(BpeLM)
    local rng = core.Generator(seed)
    self.config, self.tokenizer, self.vocab = m, tok, vocab
    self.frozen = "bpe" -- the merge list is stored with the model, never trained
    self.merges_state = tok.merges:float() -- checkpoints hold float32 tensors; ids < 2^24 are exact
    ByteLM.add_body(self, m, vocab, rng)
    return self
end

-- The parameters, then the frozen merge list (bpe.merges).
function BpeLM:state_list()
    local out = self:parameter_list()
    out[#out + 1] = {name = "bpe.merges", tensor = self.merges_state}
    return out
end

-- tokens int32 [B,T] -> logits [B,T,V]
function BpeLM:forward(tokens)
    local h = self.embed:forward(tokens)
    for _, layer in ipairs(self.layers) do h = layer:forward(h) end
    return self.head:forward(self.norm:forward(h))
end

-- Byte rows int32 [B,N] ([BOS, byte ids...], PAD-padded, EOS allowed) -> token rows
-- int32 [B,M] (BOS first, EOS kept, PAD dropped, then PAD-padded). Records
-- self.last_bytes_per_token: predicted bytes / predicted tokens of the batch.
function BpeLM:prepare(rows)
    if not core.is_tensor(rows) or rows:dtype() ~= "int32" or rows:dim() ~= 2 then
        error(("blt.models.BpeLM: rows must be an int32 tensor [B,N], got %s"):format(
            core.is_tensor(rows) and (rows:dtype() .. " [" .. table.concat(rows:shape(), ",") .. "]") or type(rows)), 3)
    end
    local tokens, lengths = self.tokenizer:encode_rows(rows)
    local B = rows:size(1)
    local bytes = core.nn_count_ne(rows, ids.PAD) - B
    local ntok = -B
    for _, l in ipairs(lengths) do ntok = ntok + l end
    self.last_bytes_per_token = ntok > 0 and bytes / ntok or nil
    return tokens
end

-- Mean (or with "sum" summed) next-token loss in nats over the non-pad token targets
-- of the byte rows' tokens. Summed, it is the nats of the bytes those tokens cover:
-- models.nats divides it by the bytes (docs/model.md).
function BpeLM:loss(rows, reduction)
    local tokens = self:prepare(rows)
    local M = tokens:size(2)
    if M < 2 then error("blt.models.BpeLM: the rows hold no token to predict (only BOS)", 2) end
    local inputs = core.narrow(tokens, 2, 1, M - 1)
    local targets = core.narrow(tokens, 2, 2, M - 1)
    return core.cross_entropy(self:forward(inputs), targets, {ignore_index = ids.PAD, reduction = reduction or "mean"})
end

-- ---- what the sweeps and blt.flops ask of the kind (blt.models) ----

-- FLOPs per byte (docs/flops.md; the shared parts in blt.flops): -- The token baseline (bpe_lm): ByteLM's transformer over BPE tokens. opts: seq_len
-- (bytes per row, BOS included), bytes_per_token (mean bytes a token covers), vocab
-- (tokens, default 4096). The model runs T / bytes_per_token positions per row, each
-- costing a block stack and a head of V outputs; per byte = per token / bytes_per_token.
-- Components: blocks, head.
function BpeLM.model_flops(cfg, opts)
    opts = opts or {}
    local m = flops.filled(require("blt.models.bytelm").defaults, cfg or {})
    local T, bpt = flops.need(opts, "seq_len", "bpe_lm"), flops.need(opts, "bytes_per_token", "bpe_lm")
    local vocab = opts.vocab == nil and 4096 or flops.need(opts, "vocab", "bpe_lm")
    local lin, att = flops.block_macs(m.dim, m.multiple_of, flops.mean_keys(T / bpt, m.window, opts.full_context))
    return flops.assemble({blocks = 2 * m.layers * lin / bpt, head = 2 * m.dim * vocab / bpt},
                    {blocks = 2 * m.layers * att / bpt}, {"blocks", "head"}, {})
end


-- opts.vocab defaults to the run's bpe.vocab
function BpeLM.flops(cfg, opts)
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    if o.vocab == nil and cfg.bpe then o.vocab = cfg.bpe.vocab end
    return BpeLM.model_flops(cfg.model, o)
end
-- all but the token embedding
function BpeLM.scaled_params(cfg) return BpeLM.count_params(cfg, false) - cfg.bpe.vocab * cfg.model.dim end
BpeLM.sweep = {word = "bpe", family = "bpe", script = "experiments/train_bpe_lm.lua", order = 2}
BpeLM.preset_key = "bpe"
local BPE_SMOKE = {vocab = 320, train_bytes = 65536}
local BPE_FULL = {vocab = 8192, train_bytes = 0}
BpeLM.presets = {
    compare = {
        smoke = {model = {dim = 64, layers = 1, heads = 2, window = 64, multiple_of = 32}, bpe = BPE_SMOKE},
        medium = {model = {dim = 32, layers = 1, heads = 2, window = 128, multiple_of = 32},
                  bpe = {vocab = 512, train_bytes = 1048576}},
        small = {model = {dim = 64, layers = 2, heads = 2, window = 256, multiple_of = 64},
                 bpe = {vocab = 1024, train_bytes = 4194304}},
        demo = {model = {dim = 256, layers = 4, heads = 4, window = 256, multiple_of = 128},
                bpe = {vocab = 4096, train_bytes = 0}},
        full = {model = {dim = 512, layers = 8, heads = 8, window = 512, multiple_of = 256}, bpe = BPE_FULL},
    },
    scaling = {
        smoke = {model = {window = 64, multiple_of = 32}, bpe = BPE_SMOKE},
        medium = {model = {window = 128, multiple_of = 32}, bpe = {vocab = 512, train_bytes = 1048576}},
        small = {model = {window = 128, multiple_of = 64}, bpe = {vocab = 1024, train_bytes = 4194304}},
        full = {model = {window = 512, multiple_of = 256}, bpe = BPE_FULL},
    },
}

-- Mean bytes per BPE token on a training sample, with a tokenizer learned as the
-- run's setup will learn it (deterministic: the same merges), counted as the model
-- counts it (predicted bytes over predicted tokens). Nil when blt.bpe is missing.
local bpt_cache = {}
local function bytes_per_token(corpus, P)
    local okb, bpe = pcall(require, "blt.bpe")
    if not okb then return nil end
    local b = P.bpe.bpe
    local key = table.concat({tostring(corpus), b.vocab, b.train_bytes, b.min_count or 2, P.seq_len, P.calib_bytes}, " ")
    if bpt_cache[key] then return bpt_cache[key] end
    local tok = bpe.train(corpus, {vocab = b.vocab, bytes = b.train_bytes, min_count = b.min_count})
    local rows = corpus:sample_windows {split = "train", len = P.seq_len, bytes = P.calib_bytes, seed = 1}
    local _, lengths = tok:encode_rows(rows)
    local ntok = 0
    for _, l in ipairs(lengths) do ntok = ntok + l - 1 end
    bpt_cache[key] = rows:size(1) * P.seq_len / ntok
    return bpt_cache[key]
end

BpeLM.bytes_per_token = bytes_per_token -- the studies' compute-optimal ratio counts BPE tokens (blt.experiment)

-- Its point in a comparison: P.bpe (model and tokenizer), or o.size's width and depth;
-- FLOPs at the bytes per token measured on the training sample.
function BpeLM.point(P, corpus, o, experiment)
    local bpt = bytes_per_token(corpus, P)
    if not bpt then return {skip = "blt.bpe cannot measure bytes per token"} end
    local m = experiment.sized(P.bpe.model, o)
    local args = experiment.flat("model", m)
    for k, v in pairs(experiment.flat("bpe", P.bpe.bpe)) do args[k] = v end
    local run_cfg = {kind = "bpe_lm", model = m, bpe = P.bpe.bpe}
    local f = flops.of(run_cfg, {seq_len = P.seq_len + 1, bytes_per_token = bpt})
    return {family = "bpe", kind = "bpe_lm", script = BpeLM.sweep.script, args = args, mean_patch = bpt,
            run_cfg = run_cfg, train_fpb = f.training.total, inference_fpb = f.inference.total}
end

return BpeLM
