-- blt.optim: AdamW and SGD over one flat parameter buffer, gradient clipping and
-- learning-rate schedules.
--
-- Creating an optimiser moves the parameters into one contiguous buffer (each
-- parameter tensor becomes a view of its slice, its .grad a view of the flat
-- gradient), so a step, a clip or a zero_grad is one pass in C.
local core = require "blt.core"
local util = require "blt.util"

local optim = {}

-- The bounds of every hyperparameter (blt.config rules): the C step receives them as
-- float32, so each must be a normal float32 too; a NaN or a negative eps is refused
-- here instead of turning every parameter into NaN.
local HP_RULES = {
    AdamW = {lr = ">= 0 float32", beta1 = "[0, 1) float32", beta2 = "[0, 1) float32", eps = "> 0 float32",
             weight_decay = ">= 0 float32"},
    SGD = {lr = ">= 0 float32", momentum = "[0, 1] float32", weight_decay = ">= 0 float32"},
}

local function check_hp(fn, kind, name, v, level)
    local msg = require("blt.config").check_rule(HP_RULES[kind][name], v)
    if msg then error(("blt.optim.%s: %s = %s: %s"):format(fn, name, tostring(v), msg), level + 1) end
end

local function check_opts(fn, opts, defaults)
    local o = util.options("blt.optim." .. fn, opts, defaults, nil, 3)
    if HP_RULES[fn] then
        for name in pairs(HP_RULES[fn]) do check_hp(fn, fn, name, o[name], 3) end
    end
    return o -- not a tail call: the error level counts this frame
end

-- params: a module, or an array of {name=, tensor=}, or of tensors.
local function param_list(fn, params)
    if type(params) == "table" and params.parameter_list then params = params:parameter_list() end
    if type(params) ~= "table" or #params == 0 then
        error(("blt.optim.%s: needs a module or a non-empty list of parameters"):format(fn), 3)
    end
    local list = {}
    for i, p in ipairs(params) do
        if core.is_tensor(p) then p = {name = tostring(i), tensor = p} end
        list[#list + 1] = p
    end
    return list
end

local Optimizer = {}
Optimizer.__index = Optimizer

-- parameter tensor -> the optimiser that owns it. A second optimiser would move the
-- parameter into its own flat buffer and the first one's step would silently update
-- a buffer nobody reads, so it is an error. Weak both ways: a collected optimiser
-- frees its parameters for a new one.
local owner = setmetatable({}, {__mode = "kv"})

local function new(kind, params, o, decay_rule)
    local self = setmetatable({kind = kind, hp = o, step_count = 0}, Optimizer)
    self.params = param_list(kind, params)
    local tensors = {}
    for i, p in ipairs(self.params) do
        if not core.is_tensor(p.tensor) then
            error(("blt.optim.%s: parameter '%s' is %s, not a tensor"):format(kind, tostring(p.name), type(p.tensor)), 3)
        end
        local prev = owner[p.tensor]
        if prev then
            error(("blt.optim.%s: parameter '%s' already belongs to an earlier %s (one optimiser per parameter; "
                .. "a second would leave the first one's step without effect)"):format(kind, tostring(p.name), prev.kind), 3)
        end
        tensors[i] = p.tensor
    end
    for _, t in ipairs(tensors) do owner[t] = self end
    self.flat, self.flat_grad = core.nn_flatten(tensors)
    self.slices = {}
    local off = 0
    for _, p in ipairs(self.params) do
        local n = p.tensor:numel()
        -- [choice] weight decay on matrices only, not on norm gains or biases
        self.slices[#self.slices + 1] = {off = off, len = n, decay = decay_rule(p), name = p.name}
        off = off + n
    end
    self.n = off
    return self
end

local function decay_matrices(p) return p.tensor:dim() >= 2 end

-- optim.AdamW(params, {lr=1e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1})
function optim.AdamW(params, opts)
    local o = check_opts("AdamW", opts, {lr = 1e-3, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1})
    local self = new("AdamW", params, o, decay_matrices)
    self.m = core.zeros({self.n})
    self.v = core.zeros({self.n})
    return self
end

-- optim.SGD(params, {lr=1e-2, momentum=0.9, weight_decay=0})
function optim.SGD(params, opts)
    local o = check_opts("SGD", opts, {lr = 1e-2, momentum = 0.9, weight_decay = 0.0})
    local self = new("SGD", params, o, decay_matrices)
    self.m = core.zeros({self.n})
    return self
end

-- One update; lr overrides the configured rate (for schedules). Returns true when
-- every updated parameter and moment is finite; false means the update overflowed
-- (a too large lr): the parameters hold inf or NaN now and must not be saved.
function Optimizer:step(lr)
    lr = lr or self.hp.lr
    check_hp(self.kind .. ":step", self.kind, "lr", lr, 2)
    self.step_count = self.step_count + 1
    local h = self.hp
    local bad
    if self.kind == "AdamW" then
        bad = core.nn_adamw_step(self.flat, self.flat_grad, self.m, self.v, self.slices, self.step_count, lr, h.beta1,
                                 h.beta2, h.eps, h.weight_decay)
    else
        bad = core.nn_sgd_step(self.flat, self.flat_grad, self.m, self.slices, self.step_count, lr, h.momentum,
                               h.weight_decay)
    end
    return not bad
end

function Optimizer:zero_grad() core.nn_zero_(self.flat_grad) end

-- Global gradient norm; scales the gradients down to max_norm when above it.
-- Returns the norm before clipping.
function Optimizer:clip_grad_norm(max_norm)
    local norm = core.nn_l2norm(self.flat_grad)
    if max_norm and max_norm > 0 and norm > max_norm then core.nn_scale_(self.flat_grad, max_norm / (norm + 1e-6)) end
    return norm
end

function Optimizer:grad_norm() return core.nn_l2norm(self.flat_grad) end

-- The state as plain data a checkpoint can save: per-parameter moment slices.
function Optimizer:state()
    local s = {kind = self.kind, step = self.step_count, m = {}, v = {}}
    for _, sl in ipairs(self.slices) do
        s.m[sl.name] = core.narrow(self.m, 1, sl.off + 1, sl.len):clone()
        if self.v then s.v[sl.name] = core.narrow(self.v, 1, sl.off + 1, sl.len):clone() end
    end
    return s
end

function Optimizer:load_state(s)
    if s.kind and s.kind ~= self.kind then
        error(("blt.optim.load_state: state is for %s, optimiser is %s"):format(s.kind, self.kind), 2)
    end
    for _, sl in ipairs(self.slices) do
        for _, key in ipairs {"m", "v"} do
            if self[key] then
                local src = s[key] and s[key][sl.name]
                if not src then error(("blt.optim.load_state: missing %s for parameter '%s'"):format(key, sl.name), 2) end
                core.narrow(self[key], 1, sl.off + 1, sl.len):copy(src:reshape({-1}))
            end
        end
    end
    self.step_count = s.step
end

-- ---------------------------------------------------------------- schedules
-- Each returns a function step -> learning rate (step counts from 1).

-- Linear warmup over `warmup` steps, then cosine decay to floor_ratio * peak at `total`.
function optim.warmup_cosine(o)
    o = check_opts("warmup_cosine", o, {peak = 1e-3, warmup = 0, total = 1000, floor_ratio = 0.1})
    return function(step)
        if o.warmup > 0 and step <= o.warmup then return o.peak * step / o.warmup end
        local span = math.max(1, o.total - o.warmup)
        local t = math.min(1, math.max(0, (step - o.warmup) / span))
        local floor = o.peak * o.floor_ratio
        return floor + (o.peak - floor) * 0.5 * (1 + math.cos(math.pi * t))
    end
end

function optim.constant(o)
    o = check_opts("constant", o, {lr = 1e-3, warmup = 0})
    return function(step)
        if o.warmup > 0 and step <= o.warmup then return o.lr * step / o.warmup end
        return o.lr
    end
end

-- Linear warmup, then linear decay to floor_ratio * peak at `total`.
function optim.linear(o)
    o = check_opts("linear", o, {peak = 1e-3, warmup = 0, total = 1000, floor_ratio = 0.0})
    return function(step)
        if o.warmup > 0 and step <= o.warmup then return o.peak * step / o.warmup end
        local t = math.min(1, math.max(0, (step - o.warmup) / math.max(1, o.total - o.warmup)))
        return o.peak * (1 - t * (1 - o.floor_ratio))
    end
end

function optim.schedule(name, o)
    local f = optim[name]
    if name ~= "warmup_cosine" and name ~= "constant" and name ~= "linear" then
        error(("blt.optim.schedule: unknown schedule '%s' (warmup_cosine, constant, linear)"):format(tostring(name)), 2)
    end
    return f(o)
end

return optim
