package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- bf16 mixed precision (train.precision = bf16): linear's products take bf16 operands
-- with fp32 accumulation; everything else stays fp32. The finite-difference checks
-- (test_grad.lua) run in fp32, unchanged.
--
-- Tolerance of one product (u = 2^-24, the fp32 unit roundoff). Each bf16 operand is
-- its fp32 value rounded to nearest with 8 significant bits: off by at most 2^-8
-- relative, so a product of two operands is off by at most 2 2^-8 + 2^-16 relative,
-- and a sum over k by at most (2 2^-8 + 2^-16) sum_k |x_ik||w_jk|. Both results also
-- carry their own fp32 summation error, at most (K + 2) u sum_k |x_ik||w_jk| each (the
-- fp32 bound of test_blas.lua). So
--     |y_bf16 - y_fp32| <= (2 2^-8 + 2^-16 + 2 (K + 2) u) sum_k |x_ik||w_jk|.
-- The same bound holds for each backward product with its own operands (g w, g^T x).
local T = require "tap"
local blt = require "blt"
local core = blt.core
local U = require "testutil"

local u = 2.0 ^ -24
local function bound(K) return 2 * 2 ^ -8 + 2 ^ -16 + 2 * (K + 2) * u end

local bin = os.getenv("BLT_BIN") or "./blt"
U.bf16_or_rerun(bin) -- the widened path where bf16 is not native
native = pcall(core.set_precision, "bf16")
core.set_precision("fp32")

local function tbl(t) return t:reshape({-1}):totable() end

-- max over entries of |a - b| / (bound * sum_k |p_ik||q_jk|): the products p q^T of
-- rows of p [I,K] and rows of q [J,K]; <= 1 passes
local function worst(a, b, p, q, K)
    local I, J = #p, #q
    local w = 0
    for i = 1, I do
        for j = 1, J do
            local s = 0
            for k = 1, K do s = s + math.abs(p[i][k] * q[j][k]) end
            local d = math.abs(a[(i - 1) * J + j] - b[(i - 1) * J + j])
            local r = d / (bound(K) * s + 1e-30)
            if r > w then w = r end
        end
    end
    return w
end

local function rows(t, R, C) -- flat list -> R lists of C
    local f, out = tbl(t), {}
    for r = 1, R do
        out[r] = {}
        for c = 1, C do out[r][c] = f[(r - 1) * C + c] end
    end
    return out
end

-- linear forward and backward, fp32 vs bf16, over generated shapes: every size in
-- SIZES for R, N and K in turn, with and without bias, the weight contiguous or a
-- transposed view
local SIZES = {1, 5, 33, 70}
local function run_linear(prec, x, w, b, g)
    core.set_precision(prec)
    local xl, wl = x:clone():set_requires_grad(), w:clone():set_requires_grad()
    local y = core.linear(xl, wl, b)
    core.sum(core.mul(y, g)):backward()
    core.set_precision("fp32")
    return y, xl.grad, wl.grad
end
local cases, seed = 0, 1
if native then
    for which = 1, 3 do
        for _, s in ipairs(SIZES) do
            local dims = {13, 9, 17}
            dims[which] = s
            local R, N, K = dims[1], dims[2], dims[3]
            for variant = 1, 2 do
                seed = seed + 1
                local x = blt.randn({R, K}, seed)
                local w = variant == 1 and blt.randn({N, K}, seed + 100) or blt.randn({K, N}, seed + 100):transpose(1, 2)
                local b = variant == 2 and blt.randn({N}, seed + 200) or nil
                local g = blt.randn({R, N}, seed + 300)
                local y32, dx32, dw32 = run_linear("fp32", x, w, b, g)
                local y16, dx16, dw16 = run_linear("bf16", x, w, b, g)
                local X, W, G = rows(x, R, K), rows(w:contiguous(), N, K), rows(g, R, N)
                -- y = x w^T (+ b: added in fp32 the same way by both: the bound covers it)
                local ry = worst(tbl(y16), tbl(y32), X, W, K)
                -- dx = g w: rows of g against columns of w
                local Wt = rows(w:transpose(1, 2):contiguous(), K, N)
                local rx = worst(tbl(dx16), tbl(dx32), G, Wt, N)
                -- dw = g^T x: columns of g against columns of x
                local Gt, Xt = rows(g:transpose(1, 2):contiguous(), N, R), rows(x:transpose(1, 2):contiguous(), K, R)
                local rw = worst(tbl(dw16), tbl(dw32), Gt, Xt, R)
                cases = cases + 1
                T.ok(ry <= 1 and rx <= 1 and rw <= 1,
                     ("linear R=%d N=%d K=%d %s%s: bf16 within the bound of fp32 (worst y %.3f, dx %.3f, dw %.3f of it)")
                         :format(R, N, K, variant == 1 and "w" or "w^T view", b and " + bias" or "", ry, rx, rw))
                -- the bf16 result must differ from fp32 somewhere (else the bf16 path did not run)
                if R * N * K > 100 then
                    T.ok(ry > 0, ("linear R=%d N=%d K=%d: the bf16 path ran (results differ from fp32)"):format(R, N, K))
                end
            end
        end
    end
    T.diag(("%d generated linear cases"):format(cases))

    -- the weight's bf16 copy follows every in-place change of the weight (storage version)
    local x, w = blt.randn({8, 16}, 1), blt.randn({12, 16}, 2)
    core.set_precision("bf16")
    local before = tbl(core.linear(x, w))
    w:copy(blt.randn({12, 16}, 3))
    local after, fresh = tbl(core.linear(x, w)), tbl(core.linear(x, w:clone()))
    core.set_precision("fp32")
    local same, changed = true, false
    for i = 1, #after do
        same = same and after[i] == fresh[i]
        changed = changed or after[i] ~= before[i]
    end
    T.ok(same and changed, "after w:copy(...) the bf16 product uses the new weight (bits equal to a fresh tensor's)")
end

-- ---- whole models: the entropy model and a BLT with entropy patching
if native then
    local ids = require "blt.ids"
    local em = U.tiny_entropy_model(3)
    local g, rws = blt.Generator(5), {}
    for b = 1, 3 do
        rws[b] = {ids.BOS}
        for t = 2, 40 do rws[b][t] = ids.of_byte(g:integer(10) <= 2 and 32 or 96 + g:integer(26)) end
    end
    local rows = blt.tensor(rws, "int32")
    local e32 = tbl(em:entropies(rows))
    core.set_precision("bf16")
    local e16 = tbl(em:entropies(rows))
    T.is(core.precision(), "bf16", "entropies leave the precision as it was")
    core.set_precision("fp32")
    local same = true
    for i = 1, #e32 do same = same and e32[i] == e16[i] end
    T.ok(same, "entropies are bit-equal under bf16 and fp32 (the entropy model runs fp32: patches do not depend on train.precision)")
    -- a tiny BLT's loss and gradients at its initial weights. Each product rounds its operands
    -- by at most 2^-8 relative; at init the logits are near zero, so the loss
    -- (ln 260 ~ 5.56) moves by less than 1e-3 relative (measured 2e-4): a wrong
    -- product (a transposed or stale operand) moves it by more than 1e-2
    local patching = require "blt.patching"
    local function blt_loss(prec)
        core.set_precision(prec)
        local model = require("blt.models.blt").new(U.tiny_blt(), 1,
            {patcher = patching.patcher {scheme = "entropy", threshold = 5.4}, entropy_model = em})
        local loss = model:loss(rows)
        loss:backward()
        local gn = 0
        for _, p in ipairs(model:parameter_list()) do
            if p.tensor.grad then for _, v in ipairs(tbl(p.tensor.grad)) do gn = gn + v * v end end
        end
        core.set_precision("fp32")
        return loss:item(), math.sqrt(gn)
    end
    local l32, g32 = blt_loss("fp32")
    local l16, g16 = blt_loss("bf16")
    T.ok(math.abs(l16 - l32) <= 1e-3 * l32 and l16 ~= l32,
         ("tiny BLT (entropy patching) loss at init: fp32 %.7f, bf16 %.7f: within 1e-3 relative, not equal"):format(l32, l16))
    T.ok(math.abs(g16 - g32) <= 2 ^ -5 * g32,
         ("tiny BLT gradient norm: fp32 %.6g, bf16 %.6g: within 2^-5 relative"):format(g32, g16))
end

-- ---- training runs: tiny ByteLM through the script
local dir = U.tmpdir()
U.corpus(dir .. "/corpus.txt", 60000)
local base = table.concat({"model.dim=32", "model.layers=2", "model.heads=2", "model.multiple_of=32",
    "model.window=32", "train.batch=4", "train.seq_len=48", "train.steps=8", "train.warmup=2", "train.threads=2",
    "eval.every=0", "eval.final_max_bytes=2048", "out.checkpoint_every=0", "out.plot=false", "train.log_every=1",
    "data.path=" .. U.q(dir .. "/corpus.txt"), "out.dir=" .. U.q(dir)}, " ")
local function train(args, env)
    return U.sh(("%s%s experiments/train_bytelm.lua %s %s"):format(env or "", bin, base, args))
end
local json = require "blt.json"
local function result(run) return json.decode(U.read(dir .. "/" .. run .. "/result.json") or "null") end
local function cfg(run) return json.decode(U.read(dir .. "/" .. run .. "/config.json") or "null") end

-- refusal where bf16 would be slower than fp32, forced by BLT_NO_BF16=1 on any machine
do
    local rc, out = train("out.name=refused train.precision=bf16", "env -u BLT_BF16_SLOW BLT_NO_BF16=1 ")
    T.ok(rc == 2, "BLT_NO_BF16=1 train.precision=bf16: refused with status 2", out)
    T.ok(out:find("train.precision = bf16", 1, true) and out:find("BLT_NO_BF16", 1, true)
         and select(2, out:gsub("\n", "")) <= 2, "the refusal names train.precision and the reason in one line", out)
    T.ok(not U.read(dir .. "/refused/checkpoint.h5"), "the refused run trained nothing")
    local rc2, out2 = train("out.name=bad train.precision=fp16")
    T.ok(rc2 == 2, "train.precision=fp16: refused with status 2", out2)
end

-- the same refusal from every training script, and from every sweep through args.all
-- (generated: every experiments/*.lua whose help lists train.precision or args.all)
do
    local n = 0
    for script in io.popen("ls experiments/*.lua"):lines() do
        local _, help = U.sh(bin .. " " .. script .. " --help")
        local words
        if help:find("train.precision", 1, true) then
            words = "train.precision=bf16 out.dir=" .. U.q(dir) .. " data.path=" .. U.q(dir .. "/corpus.txt")
                .. " " .. U.script_words(script, dir)
        elseif help:find("args.all", 1, true) then
            words = "args.all=train.precision=bf16 budget=smoke data.path=" .. U.q(dir .. "/corpus.txt")
                .. " out=" .. U.q(dir .. "/sweep" .. n)
        end
        if words then
            n = n + 1
            local rc, out = U.sh(("env -u BLT_BF16_SLOW BLT_NO_BF16=1 %s %s %s"):format(bin, script, words))
            T.ok(rc == 2 and out:find("train.precision = bf16 is refused", 1, true),
                 script .. ": train.precision=bf16 under BLT_NO_BF16=1 refused with status 2, naming the key", out)
        end
    end
    T.ok(n >= 7, ("%d scripts take train.precision (training scripts, sweeps, the demo)"):format(n))
end

if native then
    local checkpoint = require "blt.checkpoint"
    local function same_params(a, b)
        local ra, rb = checkpoint.load(a), checkpoint.load(b)
        for name, t in pairs(ra.params) do
            local x, y = tbl(t), tbl(rb.params[name])
            for i = 1, #x do
                if x[i] ~= y[i] then return false, ("%s[%d]: %.9g vs %.9g"):format(name, i, x[i], y[i]) end
            end
        end
        return true
    end
    local rc, out = train("out.name=f32")
    T.ok(rc == 0, "8 steps fp32", out)
    rc, out = train("out.name=b16 train.precision=bf16")
    T.ok(rc == 0, "8 steps bf16", out)
    local r32, r16 = result("f32"), result("b16")
    T.is(r32 and r32.precision, "fp32", "result.json records precision fp32")
    T.is(r16 and r16.precision, "bf16", "result.json records precision bf16")
    T.is(cfg("b16") and cfg("b16").train.precision, "bf16", "config.json records train.precision = bf16")
    -- losses close: after 8 steps the runs differ by bf16's rounding of every product
    -- (2^-8 relative each, about 4 products in series per layer) fed back through 8
    -- updates; 0.02 nats is a few times what we measure (~0.005), and far below what a
    -- broken bf16 path gives (a wrong product moves the loss by >= 0.1 at this size)
    local d = math.abs(r32.final_train_loss - r16.final_train_loss)
    T.ok(d < 0.02, ("final train loss fp32 %.5f, bf16 %.5f: within 0.02 nats"):format(r32.final_train_loss,
        r16.final_train_loss))
    T.ok(d > 0, "the bf16 run differs from the fp32 run (bf16 products were used)")
    T.ok(math.abs(r32.val_bpb - r16.val_bpb) < 0.03,
         ("validation bpb fp32 %.5f, bf16 %.5f: within 0.03"):format(r32.val_bpb, r16.val_bpb))
    -- a bf16 run stopped and resumed is bit-exact
    rc, out = train("out.name=split train.precision=bf16 train.stop_at=4")
    T.ok(rc == 0, "bf16: 4 steps, stop", out)
    rc, out = U.sh(("%s experiments/train_bytelm.lua --resume %s"):format(bin, U.q(dir .. "/split/checkpoint.h5")))
    T.ok(rc == 0, "bf16: resume to 8 steps", out)
    local rs = result("split")
    T.ok(rs and rs.final_train_loss == r16.final_train_loss and rs.precision == "bf16",
         ("resumed bf16 run: final loss bits equal (%.9g, %.9g)"):format(rs and rs.final_train_loss or -1,
             r16.final_train_loss))
    T.ok(same_params(dir .. "/split/checkpoint.h5", dir .. "/b16/checkpoint.h5"),
         "resumed bf16 run: every weight bit-equal to the run in one go")
    -- a plain resume cannot switch precision; --fork can
    rc, out = U.sh(("%s experiments/train_bytelm.lua --resume %s train.precision=fp32 train.steps=10")
        :format(bin, U.q(dir .. "/split/checkpoint.h5")))
    T.ok(rc == 2, "--resume with train.precision=fp32: refused (use --fork)", out)
    rc, out = U.sh(("%s experiments/train_bytelm.lua --resume %s --fork to32 train.precision=fp32 train.steps=10")
        :format(bin, U.q(dir .. "/split/checkpoint.h5")))
    T.ok(rc == 0, "--fork to32 train.precision=fp32 from the bf16 checkpoint", out)
    T.is(result("to32") and result("to32").precision, "fp32", "the fork's result.json says fp32")
    T.is(cfg("to32") and cfg("to32").train.precision, "fp32", "the fork's config.json says fp32")
    rc, out = U.sh(("%s experiments/train_bytelm.lua --resume %s --fork to16 train.precision=bf16 train.steps=10")
        :format(bin, U.q(dir .. "/f32/checkpoint.h5")))
    T.ok(rc == 0 and result("to16") and result("to16").precision == "bf16",
         "--fork to16 train.precision=bf16 from an fp32 checkpoint: a bf16 run", out)
    -- checkpoints hold fp32 weights: a bf16 run's weights are not all bf16 values
    local ck = checkpoint.load(dir .. "/b16/checkpoint.h5")
    local low = 0
    for _, t in pairs(ck.params) do
        for _, v in ipairs(tbl(t)) do
            if string.unpack("<I4", string.pack("<f", v)) & 0xffff ~= 0 then low = low + 1 end
        end
    end
    T.ok(low > 0, ("the bf16 run's checkpoint holds fp32 weights (%d with low bits set)"):format(low))
end
U.cleanup(dir)
T.done()
