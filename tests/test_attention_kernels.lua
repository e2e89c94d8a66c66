package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- The attention kernel's two block-product paths (core/attention.c): the AVX-512 tiles
-- (core/attention_avx512.c) and the portable one (OpenBLAS). Over generated shapes
-- (lengths across 64-blocks, head sizes across 16-lanes and 64-wide tiles, heads, every
-- mask kind, causal offsets), each path's output and gradients are checked against a
-- double-precision reference, within a bound derived from float32 rounding:
--
--   u = 2^-24. A float32 sum of n products is within n u sum|terms| of the exact sum
--   (first order). Per query i and key j, with A = sum_d |q_id k_jd|:
--   score error   es_ij <= scale (hd + 1) u A          (the product, the scale)
--   P = softmax:  relative error rho_i <= 2 max_j es_ij + (Tk + 2 nb + 12) u
--                 (a shift of every score by <= es moves p by <= 2 es relatively; exp's
--                 polynomial (2e-7 < 4u, twice), the nb block rescalings, the sum of Tk
--                 terms and the division)
--   O_id:         (rho_i + (Tk + 1) u) sum_j P_ij |v_jd|
--   backward, P recomputed from the log-sum-exp: rho'_i = rho_i + 2u, and
--   dV_jd:        sum_i (rho'_i + Tq u) P_ij |dO_id|
--   dP_ij:        e_dP = hd u sum_d |dO_id v_jd|;  D_i = dO_i . O_i: e_D = hd u sum_d |dO_id O_id| + sum_d |dO_id| tolO_id
--   dS_ij:        e_dS = scale (rho'_i + 3u) P_ij |dP_ij - D_i| + scale P_ij (e_dP + e_D)
--   dQ_id:        sum_j e_dS |k_jd| + Tk u sum_j |dS_ij k_jd|;  dK_jd likewise with q and Tq.
-- Second-order terms are covered by doubling each bound. A query that sees no key must
-- give exact zeros (its bound is 0). Calls with fewer than 4 queries take the portable
-- path in both settings: there the two must agree bit for bit.
local T = require "tap"
local blt = require "blt"
local core = require "blt.core"

local U = 2 ^ -24
local has_avx = pcall(core.attention_kernel, "avx512")
local kernels = has_avx and {"avx512", "portable"} or {"portable"}
if not has_avx then
    T.raises(function() core.attention_kernel("avx512") end, "needs a CPU with AVX%-512F",
             "no AVX-512F: the avx512 kernel is refused with a clear message")
end
T.raises(function() core.attention_kernel("fast") end, "attention_kernel: kernel 'fast' is unknown",
         "an unknown kernel name is refused, naming it")

-- ---- generated cases ----
local lengths = {{1, 1}, {3, 7}, {4, 4}, {16, 16}, {63, 63}, {64, 64}, {65, 65}, {130, 130}, {17, 80}, {80, 17},
                 {5, 70}, {70, 70}}
local hds = {1, 5, 16, 17, 32, 48, 64, 80}
local heads = {1, 2, 3}
local masks = {"none", "causal", "window", "offset", "segments", "unsorted", "ranges", "window_offset"}
local windows = {1, 7, 64, 100}

local cases = {}
for c = 1, 40 do
    local L = lengths[(c - 1) % #lengths + 1]
    local hd = hds[(c * 3 - 1) % #hds + 1]
    local H = heads[(c - 1) % #heads + 1]
    local mask = masks[(c * 5 - 1 + c // #lengths) % #masks + 1] -- the shift breaks the pattern's period
    local B = c % 4 == 0 and 2 or 1
    -- keep the Lua reference quick: the largest shapes with small heads
    local Tq, Tk = L[1], L[2]
    -- an offset needs more keys than queries (queries that follow a cache of earlier keys)
    if (mask == "offset" or mask == "window_offset") and Tk <= Tq and Tk >= 8 then Tq = Tk // 2 + 1 end
    while B * H * Tq * Tk * hd > 700000 and hd > 5 do hd = hd // 2 + 1 end
    cases[#cases + 1] = {B = B, Tq = Tq, Tk = Tk, H = H, hd = hd, mask = mask, window = windows[(c - 1) // 3 % #windows + 1]}
end

local function opts_of(cs, g)
    local o = {heads = cs.H}
    local m = cs.mask
    if m == "causal" or m == "window" or m == "offset" or m == "window_offset" then o.causal = true end
    if m == "window" or m == "window_offset" then o.window = cs.window end
    if (m == "offset" or m == "window_offset") then o.q_offset = math.max(0, cs.Tk - cs.Tq) end
    if m == "segments" or m == "unsorted" then
        local qs, ks = {}, {}
        for b = 1, cs.B do
            qs[b], ks[b] = {}, {}
            for i = 1, cs.Tq do qs[b][i] = g:integer(4) end
            for j = 1, cs.Tk do ks[b][j] = g:integer(4) end
            if m == "segments" then table.sort(ks[b]) end
        end
        o.q_seg, o.k_seg = blt.tensor(qs, "int32"), blt.tensor(ks, "int32")
    end
    if m == "ranges" then
        local st, en = {}, {}
        for b = 1, cs.B do
            st[b], en[b] = {}, {}
            for i = 1, cs.Tq do
                local a = g:integer(cs.Tk + 1) - 1
                st[b][i], en[b][i] = a, math.min(cs.Tk, a + g:integer(cs.Tk + 1) - 1)
            end
        end
        o.k_start, o.k_end = blt.tensor(st, "int32"), blt.tensor(en, "int32")
    end
    return o
end

local function tbl(t) return t:totable() end

local function allowed_fn(cs, o)
    local qs, ks = o.q_seg and tbl(o.q_seg), o.k_seg and tbl(o.k_seg)
    local st, en = o.k_start and tbl(o.k_start), o.k_end and tbl(o.k_end)
    local off = o.q_offset or 0
    return function(b, i, j) -- 1-based i, j
        local at = off + i - 1
        local jj = j - 1
        if o.causal and jj > at then return false end
        if o.window and jj <= at - o.window then return false end
        if st and (jj < st[b][i] or jj >= en[b][i]) then return false end
        if qs and qs[b][i] ~= ks[b][j] then return false end
        return true
    end
end

-- The double-precision reference and the bounds (above) for one case.
local function reference(cs, o, q, k, v, go)
    local H, hd, Tq, Tk = cs.H, cs.hd, cs.Tq, cs.Tk
    local scale = 1 / math.sqrt(hd)
    local nb = (Tk + 63) // 64
    local allowed = allowed_fn(cs, o)
    local R = {O = {}, tO = {}, dQ = {}, tQ = {}, dK = {}, tK = {}, dV = {}, tV = {}}
    local function zeros(n1, n2, n3)
        local t = {}
        for a = 1, n1 do t[a] = {} for b = 1, n2 do t[a][b] = {} for c = 1, n3 do t[a][b][c] = 0 end end end
        return t
    end
    for _, key in ipairs {"O", "tO", "dQ", "tQ"} do R[key] = zeros(cs.B, Tq, H * hd) end
    for _, key in ipairs {"dK", "tK", "dV", "tV"} do R[key] = zeros(cs.B, Tk, H * hd) end
    for b = 1, cs.B do
        for h = 0, H - 1 do
            local c0 = h * hd
            for i = 1, Tq do
                local qi, goi = q[b][i], go[b][i]
                local js, s, es = {}, {}, {}
                local mx, esmax = -math.huge, 0
                for j = 1, Tk do
                    if allowed(b, i, j) then
                        local kj, dot, A = k[b][j], 0, 0
                        for d = 1, hd do
                            dot = dot + qi[c0 + d] * kj[c0 + d]
                            A = A + math.abs(qi[c0 + d] * kj[c0 + d])
                        end
                        js[#js + 1] = j
                        s[#js] = scale * dot
                        es[#js] = scale * (hd + 1) * U * A
                        if s[#js] > mx then mx = s[#js] end
                        if es[#js] > esmax then esmax = es[#js] end
                    end
                end
                if #js > 0 then
                    local l = 0
                    for n = 1, #js do s[n] = math.exp(s[n] - mx); l = l + s[n] end
                    for n = 1, #js do s[n] = s[n] / l end -- now P
                    local rho = 2 * esmax + (Tk + 2 * nb + 12) * U
                    local rho2 = rho + 2 * U
                    local O, tO = R.O[b][i], R.tO[b][i]
                    for n = 1, #js do
                        local vj = v[b][js[n]]
                        for d = 1, hd do
                            O[c0 + d] = O[c0 + d] + s[n] * vj[c0 + d]
                            tO[c0 + d] = tO[c0 + d] + s[n] * math.abs(vj[c0 + d])
                        end
                    end
                    for d = 1, hd do tO[c0 + d] = 2 * (rho + (Tk + 1) * U) * tO[c0 + d] end
                    local Di, eD = 0, 0
                    for d = 1, hd do
                        Di = Di + goi[c0 + d] * O[c0 + d]
                        eD = eD + hd * U * math.abs(goi[c0 + d] * O[c0 + d]) + math.abs(goi[c0 + d]) * tO[c0 + d] / 2
                    end
                    for n = 1, #js do
                        local j, P = js[n], s[n]
                        local vj, kj = v[b][j], k[b][j]
                        local dP, edP = 0, 0
                        for d = 1, hd do
                            dP = dP + goi[c0 + d] * vj[c0 + d]
                            edP = edP + math.abs(goi[c0 + d] * vj[c0 + d])
                        end
                        edP = hd * U * edP
                        local dS = scale * P * (dP - Di)
                        local edS = scale * (rho2 + 3 * U) * P * math.abs(dP - Di) + scale * P * (edP + eD)
                        local dV, tV, dK, tK = R.dV[b][j], R.tV[b][j], R.dK[b][j], R.tK[b][j]
                        local dQ, tQ = R.dQ[b][i], R.tQ[b][i]
                        for d = 1, hd do
                            local cd = c0 + d
                            dV[cd] = dV[cd] + P * goi[cd]
                            tV[cd] = tV[cd] + 2 * (rho2 + Tq * U) * P * math.abs(goi[cd])
                            dQ[cd] = dQ[cd] + dS * kj[cd]
                            tQ[cd] = tQ[cd] + 2 * (edS * math.abs(kj[cd]) + Tk * U * math.abs(dS * kj[cd]))
                            dK[cd] = dK[cd] + dS * qi[cd]
                            tK[cd] = tK[cd] + 2 * (edS * math.abs(qi[cd]) + Tq * U * math.abs(dS * qi[cd]))
                        end
                    end
                end
            end
        end
    end
    return R
end

local function run(kernel, cs, o, seed)
    core.attention_kernel(kernel)
    local D = cs.H * cs.hd
    local q = blt.randn({cs.B, cs.Tq, D}, seed):set_requires_grad()
    local k = blt.randn({cs.B, cs.Tk, D}, seed + 1):set_requires_grad()
    local v = blt.randn({cs.B, cs.Tk, D}, seed + 2):set_requires_grad()
    local go = blt.randn({cs.B, cs.Tq, D}, seed + 3)
    local out = blt.attention(q, k, v, o)
    out:backward(go)
    return {O = tbl(out), dQ = tbl(q.grad), dK = tbl(k.grad), dV = tbl(v.grad)},
           {q = tbl(q), k = tbl(k), v = tbl(v), go = tbl(go)}
end

-- worst err/bound over a [B,T,D] result; differs: whether two results differ in any bit
local function worst(got, want, tol)
    local w, where = 0, nil
    for b = 1, #got do
        for i = 1, #got[b] do
            for d = 1, #got[b][i] do
                local e = math.abs(got[b][i][d] - want[b][i][d])
                local r = e == 0 and 0 or (tol[b][i][d] > 0 and e / tol[b][i][d] or math.huge)
                if r > w then w, where = r, ("[%d,%d,%d] got %.9g want %.9g bound %.3g"):format(b, i, d,
                    got[b][i][d], want[b][i][d], tol[b][i][d]) end
            end
        end
    end
    return w, where
end

local function same_bits(a, b)
    for x = 1, #a do for y = 1, #a[x] do for z = 1, #a[x][y] do
        if a[x][y][z] ~= b[x][y][z] then return false end
    end end end
    return true
end

local differing, compared, worst_ratio = 0, 0, {avx512 = 0, portable = 0}
local saved = core.attention_kernel()
for n, cs in ipairs(cases) do
    local g = blt.Generator(1000 + n)
    local o = opts_of(cs, g)
    local name = ("case %d: B%d Tq%d Tk%d H%d hd%d %s%s"):format(n, cs.B, cs.Tq, cs.Tk, cs.H, cs.hd, cs.mask,
        o.window and (" w" .. o.window) or "") .. (o.q_offset and (" q_offset " .. o.q_offset) or "")
    local res, inputs = {}, nil
    for _, kern in ipairs(kernels) do res[kern], inputs = run(kern, cs, o, 10 * n) end
    local R = reference(cs, o, inputs.q, inputs.k, inputs.v, inputs.go)
    for _, kern in ipairs(kernels) do
        local bad = {}
        for _, p in ipairs {{"O", "tO"}, {"dQ", "tQ"}, {"dK", "tK"}, {"dV", "tV"}} do
            local w, where = worst(res[kern][p[1]], R[p[1]], R[p[2]])
            if w > worst_ratio[kern] then worst_ratio[kern] = w end
            if w > 1 then bad[#bad + 1] = p[1] .. " " .. where .. (" (%.2f x the bound)"):format(w) end
        end
        T.ok(#bad == 0, ("%s, %s kernel: output and gradients within the float32 bound of the float64 reference"):format(name, kern),
             table.concat(bad, "\n"))
    end
    if has_avx then
        local same = true
        for _, key in ipairs {"O", "dQ", "dK", "dV"} do same = same and same_bits(res.avx512[key], res.portable[key]) end
        if cs.Tq < 4 then
            T.ok(same, name .. ": fewer than 4 queries take the portable path under both settings (same bits)")
        else
            compared = compared + 1
            if not same then differing = differing + 1 end
        end
    end
end
core.attention_kernel(saved)
if has_avx then
    -- the two settings must really run different code: their roundings differ somewhere
    T.ok(differing > 0, ("the avx512 and portable kernels differ in the last bits on %d of %d cases with >= 4 queries")
         :format(differing, compared))
end
for _, kern in ipairs(kernels) do T.diag(("%s kernel: worst error %.3g x its bound"):format(kern, worst_ratio[kern])) end
T.ok(#cases >= 40, ("%d generated cases x %d kernels"):format(#cases, #kernels))
T.done()
