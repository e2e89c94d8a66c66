package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- The Byte Latent Transformer (lua/blt/models/blt.lua): the decoder's alignment,
-- causality under every patching scheme, gradients of the whole model, padding,
-- overfitting, names, the training script (calibration, self-contained checkpoints,
-- exact resume, bad configs).
local T = require "tap"
local blt = require "blt"
local core = require "blt.core"
local config = require "blt.config"
local json = require "blt.json"
local ids = require "blt.ids"
local models = require "blt.models"
local BLT = require "blt.models.blt"
local ByteLM = require "blt.models.bytelm"
local patching = require "blt.patching"
local optim = require "blt.optim"
local gradcheck = require "gradcheck"

local U = require "testutil"
local bin = os.getenv("BLT_BIN") or "./blt"
local dir = U.tmpdir()
local q, sh = U.q, U.sh

-- a tiny BLT config
local tiny = U.tiny_blt

local entropy_model = U.tiny_entropy_model(3)

-- a row of lowercase words with spaces and punctuation (ids), length T
local function text_row(T_, seed)
    local g = blt.Generator(seed)
    local r = {ids.BOS}
    for t = 2, T_ do
        local u = g:integer(10)
        r[t] = ids.of_byte(u <= 2 and 32 or u == 3 and 44 or 96 + g:integer(26))
    end
    return r
end

local SCHEMES = {
    {scheme = "fixed", size = 3},
    {scheme = "space"},
    {scheme = "entropy", threshold = 5.4, entropy_model = true},
    {scheme = "entropy_delta", delta = 0.01, entropy_model = true},
    {scheme = "byte"},
}
local function patcher(s)
    local o = {}
    for k, v in pairs(s) do if k ~= "entropy_model" then o[k] = v end end
    return patching.patcher(o)
end
local function build(s, m, seed)
    return BLT.new(m or tiny(), seed or 1, {patcher = patcher(s), entropy_model = s.entropy_model and entropy_model or nil})
end

-- ---- the decoder's alignment (docs/model.md's example) ----
do
    -- patch lengths [1,3,2,2] over 7 tokens and the next slot: flags for the 7 inputs and s[7] = 0
    local model = BLT.new(tiny(), 1, {patcher = patching.patcher {scheme = function() return {1, 1, 0, 0, 1, 0, 1, 0} end}})
    local p = model:prepare(blt.tensor({{1, 76, 105, 112, 112, 115, 36}}, "int32"))
    T.is(table.concat(p.dec:totable()[1], ","), "0,0,0,1,1,2,2", "decoder patch ids of the example: 0,0,0,1,1,2,2")
    T.is(table.concat(p.lengths:totable()[1], ","), "1,3,2,1", "the inputs' patch lengths")
    local p2 = BLT.new(tiny(), 1, {patcher = patching.patcher {scheme = function() return {1, 1, 0, 0, 1, 0, 1, 1} end}})
        :prepare(blt.tensor({{1, 76, 105, 112, 112, 115, 36}}, "int32"))
    T.is(table.concat(p2.dec:totable()[1], ","), "0,0,0,1,1,2,3", "when token 7 starts a patch, position 6 sees the patch it ends")
end

-- ---- names and sizes ----
do
    local m = tiny {k = 2, global = {dim = 32}}
    local model = build(SCHEMES[1], m)
    local names = {}
    for _, p in ipairs(model:parameter_list()) do names[p.name] = p.tensor:shape() end
    local function shape(n) return names[n] and table.concat(names[n], ",") or "missing" end
    T.is(shape("encoder.byte_embed"), "260,16", "encoder.byte_embed [V, d_E]")
    T.is(shape("encoder.hash.n3"), "64,16", "encoder.hash.n3 [B, d_E]")
    T.is(shape("encoder.pool_proj"), "32,16", "encoder.pool_proj [k d_E, d_E]")
    T.is(shape("encoder.cross.0.wq"), "16,16", "pooling after the last layer only: encoder.cross.0")
    T.is(shape("global.in_proj"), "missing", "no global.in_proj when k d_E = d_G")
    T.is(shape("decoder.patch_proj"), "32,32", "decoder.patch_proj [k d_D, d_G]")
    T.is(shape("decoder.cross.1.kv_norm"), "16", "decoder cross-attention in every layer")
    T.is(shape("decoder.head"), "260,16", "decoder.head [V, d_D]")
    T.is(model:num_params(), BLT.param_count(m), "param_count agrees with the built model")
    local m2 = tiny {k = 1, encoder = {cross_every_layer = true, layers = 2}, decoder = {cross_every_layer = false}}
    local model2 = build(SCHEMES[1], m2)
    T.ok(model2:get_parameter("global.in_proj") and model2:get_parameter("encoder.cross.1.wq")
         and not model2:get_parameter("decoder.cross.1.wq"), "k = 1: global.in_proj; pooling every layer; decoder cross first only")
    T.is(model2:num_params(), BLT.param_count(m2), "param_count agrees (other options)")
    local withe = build(SCHEMES[3])
    local n_state, n_param = #withe:state_list(), #withe:parameter_list()
    T.ok(n_state > n_param and withe:state_list()[n_param + 1].name:match("^entropy%."),
         "the entropy model is stored under entropy.* and not trained")
end

-- ---- causality: perturb token t+1, nothing at positions <= t moves (the patcher included) ----
-- Not bit for bit: OpenBLAS picks its kernel by the number of rows, so when a perturbation
-- changes the number of patches the global model's products round in another order (seen
-- up to 4e-6 on these logits). Hence f32_tol(f32_terms, max |logit|) (about 5e-4 here);
-- a leak of the future moves them as much as the positions after t move, checked far above.
do
    local TT = 40
    local row = text_row(TT, 5)
    for _, s in ipairs(SCHEMES) do
        local model = build(s)
        local function run(r)
            return core.no_grad(function()
                local x = blt.tensor({r}, "int32")
                local p = model:prepare(x)
                return model:forward(x, p):totable()[1], p.pid:totable()[1], p.dec:totable()[1]
            end)
        end
        local base, bpid, bdec = run(row)
        local worst, moved, flags_ok, scale = 0, math.huge, true, 0
        for s_ = 1, TT do for v = 1, ids.VOCAB do scale = math.max(scale, math.abs(base[s_][v])) end end
        for t = 1, TT - 1 do
            local r2 = {table.unpack(row)}
            r2[t + 1] = r2[t + 1] == ids.of_byte(32) and ids.of_byte(120) or ids.of_byte(32)
            local out, pid, dec = run(r2)
            for s_ = 1, t do
                if pid[s_] ~= bpid[s_] or dec[s_] ~= bdec[s_] then flags_ok = false end
                for v = 1, ids.VOCAB do worst = math.max(worst, math.abs(out[s_][v] - base[s_][v])) end
            end
            local after = 0
            for s_ = t + 1, TT do for v = 1, ids.VOCAB do after = math.max(after, math.abs(out[s_][v] - base[s_][v])) end end
            moved = math.min(moved, after)
        end
        local tol = U.f32_tol(U.f32_terms(model), scale)
        T.ok(flags_ok, s.scheme .. ": patch and decoder ids at positions <= t do not depend on token t+1")
        T.ok(worst <= tol, ("%s: outputs at positions <= t unchanged when token t+1 changes (worst %.2g, float32 bound %.2g)")
             :format(s.scheme, worst, tol))
        T.ok(moved > 100 * tol, ("%s: the positions after t move by at least %.2g, far above the bound"):format(s.scheme, moved))
    end
end

-- ---- gradients of the whole model by finite differences ----
do
    local m = tiny {k = 2, global = {dim = 48}}
    for _, s in ipairs {SCHEMES[2], SCHEMES[3]} do
        local model = build(s, m, 7)
        local x = blt.tensor({text_row(14, 2), text_row(14, 3)}, "int32")
        local params = {}
        for _, p in ipairs(model:parameter_list()) do params[#params + 1] = p.tensor end
        local p = model:prepare(x)
        local err, where = gradcheck.check(function() return model:forward(x, p) end, params, {max = 4, h = 1e-2})
        T.ok(err < 5e-3, ("%s: finite-difference gradients of every parameter (%d tensors), worst %.2g"):format(s.scheme,
             #params, err), where)
    end
end

-- ---- padding: a row's loss and gradients do not depend on the rows batched with it ----
do
    local model = build(SCHEMES[2], tiny(), 4)
    local a = text_row(33, 11)
    local b = {ids.BOS}
    for t = 2, 33 do b[t] = ids.of_byte(t % 3 == 0 and 32 or 97) end -- many more patches than a
    local function grads(rows)
        model:zero_grad()
        local l = model:loss(blt.tensor(rows, "int32"), "sum")
        l:backward()
        local g = {}
        for _, p in ipairs(model:parameter_list()) do g[p.name] = p.tensor.grad and p.tensor.grad:clone() end
        return l:item(), g
    end
    local la, ga = grads({a})
    local lb, gb = grads({b})
    local lab, gab = grads({a, b})
    local pa = model:prepare(blt.tensor({a}, "int32")).P
    local pab = model:prepare(blt.tensor({a, b}, "int32")).P
    T.ok(pab > pa, ("the batch pads row a from %d to %d patches"):format(pa, pab))
    T.ok(math.abs(lab - (la + lb)) < 1e-4 * math.abs(la + lb), ("summed loss of the batch = sum of the rows' (%.6f vs %.6f)")
         :format(lab, la + lb))
    local function flat(t) return t:reshape({-1}):totable() end
    local worst = 0
    for name, g in pairs(gab) do
        local x, y, z = flat(g), flat(ga[name]), flat(gb[name])
        local d, m = 0, 1e-3
        for i = 1, #x do d, m = math.max(d, math.abs(x[i] - y[i] - z[i])), math.max(m, math.abs(x[i])) end
        worst = math.max(worst, d / m)
    end
    T.ok(worst < 1e-4, ("gradients of the batch = sum of the rows' (worst relative %.2g)"):format(worst))
end

-- ---- a tiny BLT overfits a 128-byte text ----
do
    local text = ("The Byte Latent Transformer reads bytes, groups them into patches, and predicts the next byte. Bits!")
    text = (text .. text):sub(1, 128)
    local row = blt.tensor({ids.row(text)}, "int32")
    local model = build(SCHEMES[2], tiny {dim = 32, global = {dim = 64}, k = 2}, 2)
    local opt = optim.AdamW(model, {lr = 1e-2, weight_decay = 0})
    local steps = 0
    for step = 1, 400 do
        steps = step
        local l = core.scope(function()
            opt:zero_grad()
            local loss = model:loss(row)
            loss:backward()
            opt:clip_grad_norm(1.0)
            opt:step()
            return loss:item()
        end)
        if l / math.log(2) < 0.03 then break end
    end
    local nats, n = models.nats(model, row)
    local bpb = nats / (n * math.log(2))
    T.ok(bpb < 0.1, ("overfits a 128-byte text: %.4f bits/byte after %d steps"):format(bpb, steps))
end

-- ---- the training script ----
local corpus = U.corpus(dir .. "/corpus.txt", 80000)
local base = table.concat({"model.dim=16", "model.heads=2", "model.multiple_of=16", "model.global.dim=32",
    "model.global.heads=2", "model.global.layers=2", "model.cross.heads=2", "model.hash.buckets=64",
    "model.encoder.window=16", "model.decoder.window=16", "train.batch=2", "train.seq_len=48", "train.steps=10",
    "train.warmup=2", "train.threads=1", "train.log_every=1", "eval.every=0", "eval.final_max_bytes=1024",
    "out.checkpoint_every=2", "out.plot=false", "data.path=" .. q(corpus), "out.dir=" .. q(dir)}, " ")
local function train(args) return sh(bin .. " experiments/train_blt.lua " .. base .. " " .. args) end

local rc, out = sh(bin .. " experiments/train_entropy_model.lua model.dim=16 model.layers=1 model.heads=2 model.multiple_of=16 "
    .. "model.window=16 train.batch=2 train.seq_len=48 train.steps=4 eval.every=0 eval.final_max_bytes=256 out.plot=false "
    .. "out.name=ent data.path=" .. q(corpus) .. " out.dir=" .. q(dir))
local ent = dir .. "/ent/checkpoint.h5"
T.is(rc, 0, "a tiny entropy model", out)

do
    for _, s in ipairs {"fixed patching.size=3", "space", "byte"} do
        rc, out = train("patching.scheme=" .. s .. " out.name=" .. s:match("^%w+"))
        T.ok(rc == 0 and out:find("validation [%d.]+ bits/byte"), "train_blt.lua trains with patching.scheme=" .. s, out)
    end
    rc, out = train("patching.scheme=entropy patching.target=3 patching.calib_bytes=2048 patching.entropy_model=" .. q(ent)
        .. " out.name=entropy")
    T.ok(rc == 0 and out:find("entropy threshold = [%d.]+ calibrated to 3.00 bytes/patch"), "entropy: calibrated at the start", out)
    local cfg = json.decode(io.open(dir .. "/entropy/config.json"):read("a"))
    T.ok(cfg.kind == "blt" and cfg.patching.threshold > 0 and math.abs(cfg.patching.calibrated - 3) < 0.2
         and cfg.entropy.dim == 16, "config.json records the kind, the calibrated threshold and the entropy model's config",
         json.encode(cfg.patching))
    local f = blt.h5_open(dir .. "/entropy/metrics.h5")
    local pm = f:read("/patch_mean")
    f:close()
    T.ok(type(pm) == "table" and pm[1] > 2 and pm[1] < 4.5, "the metrics hold the mean patch size", pm and pm[1])
    -- frozen: after training, the stored entropy model is the one it started from
    local ck = require "blt.checkpoint"
    local blt_ck, ent_ck = ck.load(dir .. "/entropy/checkpoint.h5"), ck.load(ent)
    local same, n = true, 0
    for name, t in pairs(ent_ck.params) do
        n = n + 1
        local u = blt_ck.params["entropy." .. name]
        if not u or core.hash_tensor(u) ~= core.hash_tensor(t) then same = false end
    end
    T.ok(same and n > 0 and blt_ck.optim.m["entropy.embed"] == nil,
         ("the entropy model (%d tensors) is stored unchanged by training and has no optimiser state"):format(n))
    -- self-contained: the entropy model file is gone, the BLT still loads
    os.rename(ent, ent .. ".moved")
    local ok, model = pcall(models.load, dir .. "/entropy/checkpoint.h5")
    T.ok(ok and getmetatable(model) == BLT and model.entropy_model ~= nil,
         "models.load rebuilds the BLT and its entropy model from the checkpoint alone", not ok and model or nil)
    os.rename(ent .. ".moved", ent)
end

-- exact resume, entropy patching: 10 steps in one go = 4 steps, stop, resume
do
    local e = " patching.scheme=entropy patching.target=3 patching.calib_bytes=2048 patching.entropy_model=" .. q(ent)
    local rc1, o1 = train(e .. " out.name=full")
    local rc2, o2 = train(e .. " out.name=split train.stop_at=4")
    local rc3, o3 = sh(bin .. " experiments/train_blt.lua --resume " .. q(dir .. "/split/checkpoint.h5"))
    T.ok(rc1 == 0 and rc2 == 0 and rc3 == 0, "one go, stop at 4, resume", o1 .. o2 .. o3)
    local function col(run)
        local f = blt.h5_open(dir .. "/" .. run .. "/metrics.h5")
        local v = f:read("/loss")
        f:close()
        return table.concat(v, ",")
    end
    T.is(col("split"), col("full"), "every loss of the resumed BLT run equals the uninterrupted run's")
    local a = require("blt.checkpoint").load(dir .. "/full/checkpoint.h5")
    local b = require("blt.checkpoint").load(dir .. "/split/checkpoint.h5")
    local same = true
    for name, t in pairs(a.params) do
        if core.hash_tensor(t) ~= core.hash_tensor(b.params[name]) then same = false end
    end
    T.ok(same, "and every parameter, the entropy model's included")
end

-- bad configs: status 2, the key named
for _, c in ipairs {
    {"model.heads=3", "model.heads = 3 does not divide model.dim = 16"},
    {"model.global.heads=5", "model.global.heads = 5 does not divide model.global.dim = 32"},
    {"model.cross.heads=3", "model.cross.heads = 3 does not divide model.dim = 16"},
    {"patching.scheme=bogus", "patching.scheme = bogus: must be one of fixed, space, entropy, entropy_delta, byte"},
    {"patching.scheme=entropy patching.entropy_model=" .. q(dir .. "/none.h5"), "patching.entropy_model = " .. dir .. "/none.h5"},
    {"patching.scheme=entropy patching.entropy_model=" .. q(corpus), "patching.entropy_model = " .. corpus},
    {"patching.scheme=fixed patching.size=0", "patching.size = 0"},
    {"model.hash.ngrams=3,x", "model.hash.ngrams = 3,x"},
    {"model.global.dims=3", "unknown key 'model.global.dims'"},
} do
    rc, out = train(c[1] .. " out.name=bad")
    T.ok(rc == 2 and out:find(c[2], 1, true), ("%s: status 2 naming the key"):format(c[1]:gsub(dir, "DIR")), out)
end

U.cleanup(dir)
T.done()
