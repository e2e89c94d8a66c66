-- blt.nn: layers as Lua modules over the C ops (each op runs in C with its own
-- backward; a layer is a short composition of them).
--
-- A module owns parameters and child modules, both registered by name, in order.
-- module:parameters() iterates (name, tensor) with dotted names that match the
-- checkpoint layout of docs/model.md (layers.3.attn.wq). A single-weight
-- layer (Linear, Embedding, RMSNorm) names its weight after itself.
local core = require "blt.core"
local util = require "blt.util"

local nn = {}

-- ---------------------------------------------------------------- Module

local Module = {}
Module.__index = Module
nn.Module = Module

-- Makes a module class; instances get its methods and Module's.
function nn.class(name, parent)
    local cls = setmetatable({}, {__index = parent or Module, __call = function(c, ...) return c.new(...) end})
    cls.__index = cls
    cls.__name = name
    cls.__tostring = function(self) return self:describe() end
    return cls
end

function Module.new(cls)
    return setmetatable({_params = {}, _children = {}}, cls)
end

-- Registers a parameter (a float32 leaf tensor) under a local name; "" names the
-- module's own weight.
function Module:param(name, t)
    t:set_requires_grad(true)
    self._params[#self._params + 1] = {name = name, tensor = t}
    return t
end

function Module:child(name, m)
    self._children[#self._children + 1] = {name = tostring(name), module = m}
    return m
end

local function join(prefix, name)
    if name == "" then return prefix end
    if prefix == "" then return name end
    return prefix .. "." .. name
end

-- Array of {name = dotted name, tensor = t}, in registration order.
function Module:parameter_list(prefix, out)
    out = out or {}
    prefix = prefix or ""
    for _, p in ipairs(self._params) do out[#out + 1] = {name = join(prefix, p.name), tensor = p.tensor} end
    for _, c in ipairs(self._children) do c.module:parameter_list(join(prefix, c.name), out) end
    return out
end

-- What a checkpoint of the module holds: its parameters, and in models with frozen
-- parts (a BLT's entropy model) those too. The optimiser takes parameter_list only.
function Module:state_list() return self:parameter_list() end

-- for name, tensor in module:parameters() do ... end
function Module:parameters()
    local list, i = self:parameter_list(), 0
    return function()
        i = i + 1
        if list[i] then return list[i].name, list[i].tensor end
    end
end

function Module:num_params()
    local n = 0
    for _, p in ipairs(self:parameter_list()) do n = n + p.tensor:numel() end
    return n
end

-- Parameter by dotted name, or nil.
function Module:get_parameter(name)
    for _, p in ipairs(self:parameter_list()) do
        if p.name == name then return p.tensor end
    end
end

function Module:zero_grad()
    for _, p in ipairs(self:parameter_list()) do p.tensor:zero_grad() end
end

function Module:describe()
    return ("%s (%d parameters)"):format(getmetatable(self).__name or "Module", self:num_params())
end

function Module:__call(...) return self:forward(...) end

-- ---------------------------------------------------------------- helpers

-- Options: fills defaults and rejects keys the layer does not know.
local function options(layer, opts, defaults, required)
    local o = util.options("blt.nn." .. layer, opts, defaults, required, 3)
    return o -- not a tail call: the error level counts this frame
end
nn.options = options
nn.NONE = util.NONE -- a default of "absent"

local function positive_int(layer, key, v)
    if math.type(v) ~= "integer" or v < 1 then
        error(("blt.nn.%s: '%s' must be a positive integer, got %s"):format(layer, key, tostring(v)), 3)
    end
end

local function generator(layer, o)
    if o.rng then return o.rng end
    if o.seed == nil then error(("blt.nn.%s: needs 'seed' (an integer) or 'rng' (a blt.Generator)"):format(layer), 3) end
    return core.Generator(o.seed)
end

-- ---------------------------------------------------------------- Linear

local Linear = nn.class("Linear")
nn.Linear = Linear

-- nn.Linear{in_dim=, out_dim=, bias=false, seed= | rng=}: y = x W^T (+ b); W [out, in]
function Linear.new(opts)
    local o = options("Linear", opts, {bias = false, seed = nn.NONE, rng = nn.NONE}, {in_dim = true, out_dim = true})
    positive_int("Linear", "in_dim", o.in_dim)
    positive_int("Linear", "out_dim", o.out_dim)
    local self = Module.new(Linear)
    local rng = generator("Linear", o)
    self.in_dim, self.out_dim = o.in_dim, o.out_dim
    self.weight = self:param("", core.nn_trunc_normal(rng, {o.out_dim, o.in_dim}, o.in_dim ^ -0.5))
    if o.bias then self.bias = self:param("bias", core.zeros({o.out_dim})) end
    return self
end

function Linear:forward(x) return core.linear(x, self.weight, self.bias) end

-- ---------------------------------------------------------------- Embedding

local Embedding = nn.class("Embedding")
nn.Embedding = Embedding

-- nn.Embedding{num=, dim=, seed= | rng=}: rows drawn with sigma = dim^-1/2
function Embedding.new(opts)
    local o = options("Embedding", opts, {seed = nn.NONE, rng = nn.NONE}, {num = true, dim = true})
    positive_int("Embedding", "num", o.num)
    positive_int("Embedding", "dim", o.dim)
    local self = Module.new(Embedding)
    self.weight = self:param("", core.nn_trunc_normal(generator("Embedding", o), {o.num, o.dim}, o.dim ^ -0.5))
    return self
end

function Embedding:forward(ids) return core.embedding(self.weight, ids) end

-- ---------------------------------------------------------------- RMSNorm

local RMSNorm = nn.class("RMSNorm")
nn.RMSNorm = RMSNorm

function RMSNorm.new(opts)
    local o = options("RMSNorm", opts, {eps = 1e-5}, {dim = true})
    positive_int("RMSNorm", "dim", o.dim)
    local self = Module.new(RMSNorm)
    self.eps = o.eps
    self.weight = self:param("", core.ones({o.dim}))
    return self
end

function RMSNorm:forward(x) return core.rmsnorm(x, self.weight, self.eps) end

-- ---------------------------------------------------------------- Attention

local Attention = nn.class("Attention")
nn.Attention = Attention

-- nn.Attention{dim=, heads=, window=0 (0: none), causal=true, rope_theta=10000, seed= | rng=}
-- forward(x [B,T,dim] [, positions int32 [T] or [B,T]])
function Attention.new(opts)
    local o = options("Attention", opts, {window = 0, causal = true, rope_theta = 10000.0, seed = nn.NONE, rng = nn.NONE},
                      {dim = true, heads = true})
    positive_int("Attention", "dim", o.dim)
    positive_int("Attention", "heads", o.heads)
    if o.dim % o.heads ~= 0 or (o.dim // o.heads) % 2 ~= 0 then
        error(("blt.nn.Attention: heads = %d must divide dim = %d into even head sizes"):format(o.heads, o.dim), 2)
    end
    local self = Module.new(Attention)
    local rng = generator("Attention", o)
    self.heads, self.window, self.causal, self.theta = o.heads, o.window, o.causal, o.rope_theta
    for _, n in ipairs {"wq", "wk", "wv", "wo"} do
        self[n] = self:child(n, Linear.new {in_dim = o.dim, out_dim = o.dim, rng = rng})
    end
    self.mask = {heads = o.heads, causal = o.causal, window = o.window > 0 and o.window or nil}
    return self
end

-- segments (optional, int32 [B,T]): a query sees only keys of its own segment
-- (e.g. reset_on_newline, docs/model.md).
function Attention:forward(x, positions, segments)
    local rope_opts = {theta = self.theta, positions = positions}
    local q = core.rope(self.wq:forward(x), self.heads, rope_opts)
    local k = core.rope(self.wk:forward(x), self.heads, rope_opts)
    local v = self.wv:forward(x)
    local mask = self.mask
    if segments then
        mask = {heads = self.heads, causal = self.causal, window = self.mask.window, q_seg = segments, k_seg = segments}
    end
    return self.wo:forward(core.attention(q, k, v, mask))
end

-- ---------------------------------------------------------------- CrossAttention

local CrossAttention = nn.class("CrossAttention")
nn.CrossAttention = CrossAttention

-- nn.CrossAttention{dim=, kv_dim=dim, heads=, seed= | rng=}: docs/model.md.
-- forward(q_in [B,Tq,dim], kv_in [B,Tk,kv_dim], mask) = q_in + Wo Attn(Wq norm(q), Wk norm(kv), Wv norm(kv))
-- mask: {q_seg=, k_seg=} (patch ids: a query sees the keys of its own patch) or
-- {k_start=, k_end=}; no positional encoding.
function CrossAttention.new(opts)
    local o = options("CrossAttention", opts, {kv_dim = nn.NONE, seed = nn.NONE, rng = nn.NONE}, {dim = true, heads = true})
    positive_int("CrossAttention", "dim", o.dim)
    positive_int("CrossAttention", "heads", o.heads)
    local kv = o.kv_dim or o.dim
    if o.dim % o.heads ~= 0 then
        error(("blt.nn.CrossAttention: heads = %d must divide dim = %d"):format(o.heads, o.dim), 2)
    end
    local self = Module.new(CrossAttention)
    local rng = generator("CrossAttention", o)
    self.heads = o.heads
    self.q_norm = self:child("q_norm", RMSNorm.new {dim = o.dim})
    self.kv_norm = self:child("kv_norm", RMSNorm.new {dim = kv})
    self.wq = self:child("wq", Linear.new {in_dim = o.dim, out_dim = o.dim, rng = rng})
    self.wk = self:child("wk", Linear.new {in_dim = kv, out_dim = o.dim, rng = rng})
    self.wv = self:child("wv", Linear.new {in_dim = kv, out_dim = o.dim, rng = rng})
    self.wo = self:child("wo", Linear.new {in_dim = o.dim, out_dim = o.dim, rng = rng})
    return self
end

function CrossAttention:forward(q_in, kv_in, mask)
    local kvn = self.kv_norm:forward(kv_in)
    local q = self.wq:forward(self.q_norm:forward(q_in))
    local m = {heads = self.heads}
    for k, v in pairs(mask or {}) do m[k] = v end
    local a = core.attention(q, self.wk:forward(kvn), self.wv:forward(kvn), m)
    return q_in + self.wo:forward(a)
end

-- ---------------------------------------------------------------- SwiGLU FFN

local FeedForward = nn.class("FeedForward")
nn.FeedForward = FeedForward

-- hidden = multiple_of * ceil(floor(8 dim / 3) / multiple_of)  (docs/model.md)
function nn.ffn_hidden(dim, multiple_of)
    local h = (8 * dim) // 3
    return multiple_of * ((h + multiple_of - 1) // multiple_of)
end

-- nn.FeedForward{dim=, multiple_of=256, hidden=(from the rule), seed= | rng=}: W2(SiLU(W1 x) * W3 x)
function FeedForward.new(opts)
    local o = options("FeedForward", opts, {multiple_of = 256, hidden = nn.NONE, seed = nn.NONE, rng = nn.NONE}, {dim = true})
    positive_int("FeedForward", "dim", o.dim)
    positive_int("FeedForward", "multiple_of", o.multiple_of)
    local hidden = o.hidden or nn.ffn_hidden(o.dim, o.multiple_of)
    local self = Module.new(FeedForward)
    local rng = generator("FeedForward", o)
    self.hidden = hidden
    self.w1 = self:child("w1", Linear.new {in_dim = o.dim, out_dim = hidden, rng = rng})
    self.w3 = self:child("w3", Linear.new {in_dim = o.dim, out_dim = hidden, rng = rng})
    self.w2 = self:child("w2", Linear.new {in_dim = hidden, out_dim = o.dim, rng = rng})
    return self
end

function FeedForward:forward(x)
    return self.w2:forward(core.silu(self.w1:forward(x)) * self.w3:forward(x))
end

-- ---------------------------------------------------------------- TransformerBlock

local TransformerBlock = nn.class("TransformerBlock")
nn.TransformerBlock = TransformerBlock

-- Pre-norm: h = x + Attn(RMSNorm(x)); y = h + FFN(RMSNorm(h)).
-- nn.TransformerBlock{dim=, heads=, window=0, causal=true, rope_theta=10000, multiple_of=256, norm_eps=1e-5, seed= | rng=}
function TransformerBlock.new(opts)
    local o = options("TransformerBlock", opts, {window = 0, causal = true, rope_theta = 10000.0, multiple_of = 256,
                      norm_eps = 1e-5, seed = nn.NONE, rng = nn.NONE}, {dim = true, heads = true})
    local self = Module.new(TransformerBlock)
    local rng = generator("TransformerBlock", o)
    self.attn_norm = self:child("attn_norm", RMSNorm.new {dim = o.dim, eps = o.norm_eps})
    self.attn = self:child("attn", Attention.new {dim = o.dim, heads = o.heads, window = o.window, causal = o.causal,
                                                  rope_theta = o.rope_theta, rng = rng})
    self.ffn_norm = self:child("ffn_norm", RMSNorm.new {dim = o.dim, eps = o.norm_eps})
    self.ffn = self:child("ffn", FeedForward.new {dim = o.dim, multiple_of = o.multiple_of, rng = rng})
    return self
end

function TransformerBlock:forward(x, positions, segments)
    local h = x + self.attn:forward(self.attn_norm:forward(x), positions, segments)
    return h + self.ffn:forward(self.ffn_norm:forward(h))
end

-- Raises "<where>.<hkey> = h does not divide <where>.<dkey> = d" or the RoPE evenness
-- error: attention heads must split the width into even head sizes (RoPE rotates pairs).
function nn.check_heads(where, dim, heads, dkey, hkey)
    if dim % heads ~= 0 then
        error(("%s.%s = %d does not divide %s.%s = %d"):format(where, hkey, heads, where, dkey, dim), 0)
    end
    if (dim // heads) % 2 ~= 0 then
        error(("%s.%s / %s.%s = %d must be even (RoPE rotates pairs)"):format(where, dkey, where, hkey, dim // heads), 0)
    end
end

-- The loss of a model that predicts the next byte at every position: rows int32 [B,N]
-- ([BOS, ids...], pad-filled) give inputs rows[:, 1..N-1] and targets rows[:, 2..N];
-- the mean loss (nats) over non-pad targets, or their sum (reduction "sum").
function nn.next_byte_loss(model, rows, reduction)
    local n = rows:size(2)
    local logits = model:forward(core.narrow(rows, 2, 1, n - 1))
    return core.cross_entropy(logits, core.narrow(rows, 2, 2, n - 1),
                              {ignore_index = require("blt.ids").PAD, reduction = reduction or "mean"})
end

return nn
