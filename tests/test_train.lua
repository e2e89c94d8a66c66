package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local blt = require "blt"
local core = require "blt.core"
local optim = require "blt.optim"
local config = require "blt.config"
local ByteLM = require "blt.models.bytelm"

local function row_of(text)
    local ids = {1}
    for i = 1, #text do ids[#ids + 1] = text:byte(i) + 4 end
    return blt.tensor({ids}, "int32")
end

-- a tiny model overfits a 64-byte string to below 0.05 bits per byte
do
    local text = "The quick brown fox jumps over the lazy dog; pack my box with 5 d"
    text = text:sub(1, 64)
    local rows = row_of(text)
    local model = ByteLM.new({dim = 64, layers = 2, heads = 2, window = 64, multiple_of = 32}, 3)
    local opt = optim.AdamW(model, {lr = 1e-2, weight_decay = 0.0})
    local bpb
    for step = 1, 300 do
        bpb = core.scope(function()
            opt:zero_grad()
            local loss = model:loss(rows)
            loss:backward()
            opt:clip_grad_norm(1.0)
            opt:step()
            return loss:item() / math.log(2)
        end)
        if bpb < 0.02 then break end
    end
    local final = core.scope(function()
        return blt.no_grad(function() return model:loss(rows, "sum"):item() end) / (math.log(2) * 64)
    end)
    T.ok(final < 0.05, ("overfits a 64-byte string: %.4f bits/byte"):format(final))
end

-- two runs with the same seed and thread count give identical losses
local function run(seed, threads)
    core.set_threads(threads)
    local model = ByteLM.new({dim = 32, layers = 2, heads = 2, window = 16, multiple_of = 32}, seed)
    local opt = optim.AdamW(model, {lr = 3e-3})
    local gen = blt.Generator(seed)
    local losses = {}
    for step = 1, 5 do
        losses[step] = core.scope(function()
            local rows = blt.zeros({4, 40}, "int32")
            for b = 1, 4 do
                rows:set(1, b, 1)
                for t = 2, 40 do rows:set(3 + gen:integer(40), b, t) end
            end
            opt:zero_grad()
            local loss = model:loss(rows)
            loss:backward()
            opt:clip_grad_norm(1.0)
            opt:step()
            return loss:item()
        end)
    end
    return table.concat(losses, ",")
end
local a, b = run(5, 2), run(5, 2)
T.is(a, b, "same seed and thread count: identical losses")
T.ok(run(6, 2) ~= a, "another seed: other losses")
T.is(run(5, 1), run(5, 1), "single-threaded runs are identical too")
core.set_threads(2)

-- config: overrides, types, unknown keys
do
    local defaults = {model = {dim = 256, heads = 4, theta = 1e4}, train = {lr = 3e-3, name = "x", on = true}}
    local cfg = config.parse(defaults, {"model.dim=128", "train.lr=1e-2", "model.theta=500", "train.on=false"})
    T.is(cfg.model.dim, 128, "integer override")
    T.is(math.type(cfg.model.theta), "float", "an integer given for a float key becomes a float")
    T.is(cfg.train.on, false, "boolean override")
    T.raises(function() config.parse(defaults, {"model.dims=3"}) end, "unknown key 'model.dims'", "unknown key named")
    T.raises(function() config.parse(defaults, {"model.dim=2.5"}) end, "key 'model.dim' must be integer", "wrong type named")
    T.raises(function() config.parse(defaults, {"train.lr=fast"}) end, "key 'train.lr' must be number", "string for a number")
    do -- a text key given a number takes it as text (a list of one: seeds=1)
        local c = config.parse({seeds = "1,2", section = {name = "x"}}, {"seeds=3", "section.name=42"})
        T.ok(c.seeds == "3" and c.section.name == "42", "a number for a text key is kept as text")
    end
    T.raises(function() config.parse(defaults, {"bogus"}) end, "cannot read argument 'bogus'", "malformed argument")
    T.raises(function() config.parse(defaults, {"optim.lr=1"}) end, "unknown key 'optim.lr'", "unknown section")
end

-- the model rejects impossible shapes, naming the key
T.raises(function() ByteLM.new({dim = 100, heads = 3}, 1) end, "model.heads = 3 does not divide model.dim = 100",
         "heads not dividing the width")
T.raises(function() ByteLM.new({dim = 12, heads = 4}, 1) end, "must be even", "odd head size")
T.raises(function() ByteLM.new({layers = 0}, 1) end, "model.layers must be an integer >= 1", "zero layers")
T.raises(function() ByteLM.new({depth = 3}, 1) end, "unknown config key 'depth'", "unknown model key")

-- the training script rejects bad configs with a message naming the key, before any work
do
    local function script(args)
        local p = io.popen("./blt experiments/train_bytelm.lua " .. args .. " 2>&1; echo \"rc=$?\"")
        local out = p:read("a")
        p:close()
        return out
    end
    local out = script("model.heads=3")
    T.ok(out:find("model.heads = 3 does not divide model.dim = 256") and out:find("rc=2"), "script: heads not dividing dim", out)
    out = script("train.lrr=1")
    T.ok(out:find("unknown key 'train.lrr'") and out:find("rc=2"), "script: unknown key", out)
    out = script("train.steps=ten")
    T.ok(out:find("train.steps' must be integer") and out:find("rc=2"), "script: wrong type", out)
    out = script("--help")
    T.ok(out:find("train.lr") and out:find("peak learning rate") and out:find("rc=0"), "script: --help lists keys", out)
end

T.done()
