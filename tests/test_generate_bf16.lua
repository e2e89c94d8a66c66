package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- Generation in bf16 (generate.run's precision = "bf16", scripts/generate.lua precision=bf16):
-- the linear layers take bf16 operands; the cached step's one-row products go through the
-- bf16 matrix-vector kernel (core/gemv_bf16.c), whose vector (AVX512_BF16) and scalar paths
-- are both checked here: in process (core.gemv_bf16's scalar flag) and, for whole models, in
-- a child with BLT_NO_BF16=1 (the forced scalar path) and BLT_BF16_SLOW=1.
--
-- Tolerances (u = 2^-24, the fp32 unit roundoff; e = 2 2^-8 + 2^-16):
-- * the kernel, against a double-precision product of the same bf16 operands: both its
--   paths sum exact products in fp32, off by at most (K + 1) u sum_k |w_k x_k|; against
--   the unrounded fp32 operands: each operand is off by at most 2^-8 relative (8
--   significant bits, to nearest), so a product by at most e, and the sum by at most
--   (e + (K + 1) u) sum_k |w_k x_k|.
-- * a whole model's logits, bf16 against fp32: to first order, and with layers that do not
--   amplify a relative error (the assumptions of testutil's f32_tol), each of its P weight
--   matrices adds at most e of the output's scale: 2 P e max|logit|, plus f32_tol for the
--   fp32 sums. They must also differ by more than f32_tol (the bf16 path was really taken).
-- * bf16 cached against bf16 full recomputation: the same rounded weights, but activations
--   that differ by fp32 rounding may round to neighbouring bf16 values, so their greedy bytes
--   are the same, or at the first differing byte the logits are within the bf16 bound and
--   each run's pick follows from its own logits (a rounding flip, not a bug).
local T = require "tap"
local blt = require "blt"
local core = blt.core
local ids = require "blt.ids"
local BLT = require "blt.models.blt"
local ByteLM = require "blt.models.bytelm"
local generate = require "blt.generate"
local patching = require "blt.patching"
local U = require "testutil"

local bin = os.getenv("BLT_BIN") or "./blt"
local forced = os.getenv("BLT_NO_BF16") == "1" -- the child: the scalar path
U.bf16_or_rerun(bin) -- the widened path where bf16 is not native

local u, e = 2.0 ^ -24, 2 * 2.0 ^ -8 + 2.0 ^ -16

-- the fp32 value of each bf16 rounding of a list of floats (core.bf16_bits' bit patterns)
local function rounded(xs)
    local bits = {}
    for i, x in ipairs(xs) do bits[i] = string.unpack("<I4", string.pack("<f", x)) end
    local out = {}
    for i, b in ipairs(core.bf16_bits(bits)) do out[i] = string.unpack("<f", string.pack("<I4", b << 16)) end
    return out
end

-- ---- the kernel: generated shapes x both paths ----
do
    -- K around the vector width (32 bf16) and its tails; N around the 4-row blocks; one
    -- shape above 2 MFLOP, which the pool splits
    local Ks, Ns = {1, 2, 15, 31, 32, 33, 63, 64, 65, 100, 257}, {1, 3, 4, 5, 9}
    local shapes = {}
    for _, K in ipairs(Ks) do for _, N in ipairs(Ns) do shapes[#shapes + 1] = {N, K} end end
    shapes[#shapes + 1] = {1031, 1000}
    local cases, worst_r, worst_f = 0, 0, 0
    for si, s in ipairs(shapes) do
        local N, K = s[1], s[2]
        local w, x = blt.randn({N, K}, si), blt.randn({K}, 100 + si) * 3.0
        local wf, xf = w:reshape({-1}):totable(), x:totable()
        local wr, xr = rounded(wf), rounded(xf)
        for _, scalar in ipairs {false, true} do
            local y = core.gemv_bf16(w, x, scalar):totable()
            local ok = #y == N
            for n = 1, N do
                local exact, unr, mag = 0, 0, 0
                for k = 1, K do
                    local i = (n - 1) * K + k
                    exact = exact + wr[i] * xr[k]
                    unr = unr + wf[i] * xf[k]
                    mag = mag + math.abs(wf[i] * xf[k])
                end
                local r1 = math.abs(y[n] - exact) / ((K + 1) * u * mag + 1e-300)
                local r2 = math.abs(y[n] - unr) / ((e + (K + 1) * u) * mag + 1e-300)
                worst_r, worst_f = math.max(worst_r, r1), math.max(worst_f, r2)
                ok = ok and r1 <= 1 and r2 <= 1
            end
            cases = cases + 1
            if not ok then T.ok(false, ("gemv_bf16 [%d x %d] %s path within its bounds"):format(N, K, scalar and "scalar" or "vector")) end
        end
    end
    T.ok(cases >= 2 * 56, ("gemv_bf16: %d generated cases (shapes x vector/scalar path), worst error %.3g of the bound against "
         .. "the rounded operands, %.3g against the fp32 ones"):format(cases, worst_r, worst_f))
    T.ok(worst_r <= 1 and worst_f <= 1, "gemv_bf16: every case within both bounds")
    -- the two paths' sums differ only in order: same rounded operands, not the same bits in general
    local w, x = blt.randn({7, 100}, 1), blt.randn({100}, 2)
    local a, b = core.gemv_bf16(w, x):totable(), core.gemv_bf16(w, x, true):totable()
    local same = true
    for i = 1, 7 do same = same and a[i] == a[i] and b[i] == b[i] end
    T.ok(same, "gemv_bf16: both paths give finite numbers on the same operands")
    T.raises(function() core.gemv_bf16(blt.randn({3, 4}, 1), blt.randn({5}, 2)) end, "gemv_bf16",
             "gemv_bf16: x of the wrong width is refused, naming the function")
end

-- ---- whole models ----
local em = U.tiny_entropy_model(3)
local MODELS = {
    {"ByteLM", ByteLM.new({dim = 32, layers = 2, heads = 2, multiple_of = 32, window = 8}, 3)},
    {"BLT fixed", BLT.new(U.tiny_blt(), 1, {patcher = patching.patcher {scheme = "fixed", size = 3}})},
    {"BLT entropy", BLT.new(U.tiny_blt {k = 1}, 3,
        {patcher = patching.patcher {scheme = "entropy", threshold = 5.45}, entropy_model = em})},
}
-- P: the model's weight matrices (the entropy model's excepted: it stays fp32)
local function bf16_tol(model, scale)
    local P = 0
    for _, p in ipairs(model:parameter_list()) do
        if #p.tensor:shape() == 2 and not p.name:find("embed") and not p.name:find("hash%.")
            and not p.name:find("^entropy%.") then P = P + 1 end
    end
    return 2 * P * e * scale + U.f32_tol(U.f32_terms(model), scale)
end

local row = ids.row("In the beginning,\nthe word: was; with 12 bytes.")
for _, mm in ipairs(MODELS) do
    local name, model = mm[1], mm[2]
    local full = core.no_grad(function() return model:forward(blt.tensor({row}, "int32")):totable()[1] end)
    local worst, scale = 0, 0
    local r0 = core.bf16_roundings()
    core.set_precision("bf16")
    local st = model:start()
    for t, id in ipairs(row) do
        local r = model:step(st, id):totable()[1][1]
        for v = 1, ids.VOCAB do
            worst = math.max(worst, math.abs(r[v] - full[t][v]))
            scale = math.max(scale, math.abs(full[t][v]))
        end
    end
    model:stop(st)
    core.set_precision("fp32")
    local tol, ftol = bf16_tol(model, scale), U.f32_tol(U.f32_terms(model), scale)
    T.ok(worst <= tol and worst > ftol, ("%s: bf16 cached steps against the fp32 forward: worst %.3g, within the bf16 bound "
         .. "%.3g and above the fp32 one %.3g"):format(name, worst, tol, ftol))
    -- rounded once: a second run rounds nothing
    local r1 = core.bf16_roundings()
    generate.run(model, "Then", 20, {temperature = 0, eos = false, precision = "bf16"})
    local r2 = core.bf16_roundings()
    T.ok(r1 > r0 and r2 == r1, ("%s: the weights are rounded to bf16 once (%d storages on the first run, %d more on the next)")
         :format(name, r1 - r0, r2 - r1))
end

-- a BLT's entropy model stays fp32 in a bf16 run (its entropies place the patches): the
-- same entropies, bit for bit, from steps in either precision
do
    local model = MODELS[3][2]
    local ents = {}
    for i, p in ipairs {"fp32", "bf16"} do
        core.set_precision(p)
        local st = model:start()
        for _, id in ipairs(row) do model:step(st, id) end
        model:stop(st)
        ents[i] = st.ents
        core.set_precision("fp32")
    end
    local same = #ents[1] == #row
    for t = 1, #row do same = same and ents[1][t] == ents[2][t] end
    T.ok(same, ("BLT entropy: the entropy model's %d entropies are bit-equal in fp32 and bf16 steps"):format(#row))
end

-- bf16 cached against bf16 full recomputation, greedy, 60 bytes
for _, mm in ipairs(MODELS) do
    local name, model = mm[1], mm[2]
    local runs = {}
    for r, cache in ipairs {true, false} do
        local rec = {}
        local function keep(t) rec[#rec + 1] = t:reshape({-1}):totable() end
        local m = {start = function() return model:start() end, stop = function(_, s) return model:stop(s) end,
            prefill = model.prefill and function(_, s, list) local y = model:prefill(s, list); keep(y); return y end,
            step = function(_, s, id) local y = model:step(s, id); keep(y); return y end,
            forward = function(_, x) local y = model:forward(x); keep(core.narrow(y, 2, y:size(2), 1)); return y end}
        local text, info = generate.run(m, "Then said he", 60, {temperature = 0, eos = false, cache = cache,
                                                                precision = "bf16"})
        runs[r] = {text = text, logits = table.move(rec, #rec - info.bytes + 1, #rec, 1, {}), precision = info.precision}
    end
    local a, b = runs[1], runs[2]
    local what, ok
    if a.text == b.text then
        ok, what = true, ("the same %d bytes"):format(#a.text)
    else
        local i = 1
        while a.text:byte(i) == b.text:byte(i) do i = i + 1 end
        local worst, scale = 0, 0
        for v = 1, ids.VOCAB do
            worst = math.max(worst, math.abs(a.logits[i][v] - b.logits[i][v]))
            scale = math.max(scale, math.abs(b.logits[i][v]))
        end
        local o = {temperature = 0, top_k = 0, top_p = 1, eos = false}
        local replays = generate.pick(a.logits[i], o) == ids.of_byte(a.text:byte(i))
            and generate.pick(b.logits[i], o) == ids.of_byte(b.text:byte(i))
        ok = worst <= bf16_tol(model, scale) and replays
        what = ("the same up to byte %d, where the logits differ by %.3g (bf16 bound %.3g), picks %s"):format(i, worst,
               bf16_tol(model, scale), replays and "replay" or "do not replay")
    end
    T.ok(ok and a.precision == "bf16", ("%s: bf16 cached greedy generation gives the bytes of bf16 full recomputation: %s")
         :format(name, what))
end

-- the precision is restored after an error inside the run; a bad precision is refused
do
    local ok, err = pcall(generate.run, MODELS[1][2], "Then", 5, {precision = "bf16", on_byte = function() error("stop here") end})
    T.ok(not ok and tostring(err):find("stop here") and core.precision() == "fp32",
         "an error inside a bf16 run propagates and the precision is fp32 again", err)
    for _, bad in ipairs {"fp16", "BF16", 16, true} do
        T.raises(function() generate.run(MODELS[1][2], "Then", 5, {precision = bad}) end, "precision must be fp32 or bf16",
                 "generate.run refuses precision = " .. tostring(bad))
    end
    local _, info = generate.run(MODELS[1][2], "Then", 5, {temperature = 0})
    T.is(info.precision, "fp32", "the default precision is fp32")
end

if not forced then
    -- ---- the script ----
    local dir = U.tmpdir()
    local ck, made, out = U.tiny_run(dir, bin)
    T.ok(made, "a tiny model to generate from", out)
    local rc
    rc, out = U.sh(bin .. " scripts/generate.lua model=" .. U.q(ck) .. " n=30 temperature=0 precision=bf16 -- 'In the'")
    T.ok(rc == 0 and out:find("^In the") and out:find("generate: 30 bytes"), "generate.lua precision=bf16 generates", out)
    rc, out = U.sh("env -u BLT_BF16_SLOW BLT_NO_BF16=1 " .. bin .. " scripts/generate.lua model=" .. U.q(ck)
                   .. " n=30 precision=bf16 -- 'In the'")
    T.ok(rc == 2 and out:find("precision = bf16 is refused", 1, true) and out:find("BLT_NO_BF16", 1, true)
         and not out:find("traceback"), "BLT_NO_BF16=1: generate.lua precision=bf16 is refused with status 2, saying why", out)
    rc, out = U.sh(bin .. " scripts/generate.lua model=" .. U.q(ck) .. " n=3 precision=fp16 -- 'In'")
    T.ok(rc == 2 and out:find("precision", 1, true), "generate.lua precision=fp16: status 2 naming the key", out)
    U.cleanup(dir)
    -- ---- the forced scalar path: this file's model checks in a child ----
    rc, out = U.sh("BLT_NO_BF16=1 BLT_BF16_SLOW=1 " .. bin .. " " .. arg[0])
    local oks, fails = select(2, ("\n" .. out):gsub("\nok ", "")), select(2, ("\n" .. out):gsub("\nnot ok ", ""))
    T.ok(rc == 0 and fails == 0 and oks >= 10, ("BLT_NO_BF16=1 (the scalar kernel): the model checks pass in a child "
         .. "(%d ok, %d not ok)"):format(oks, fails), out)
end
T.done()
