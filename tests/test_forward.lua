package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local blt = require "blt"

-- Forward values against plain Lua references (loops over :totable() values, in doubles).

local seed = 2000
local function rnd(shape) seed = seed + 1; return blt.randn(shape, seed) end
local function ints(t) return blt.tensor(t, "int32") end

local flatten = T.flatten

-- Compares tensor got with the nested Lua table want: shape and values
-- (|diff| <= tol * max(1, |want|)).
local function check(name, got, want, tol)
    tol = tol or 2e-5
    local g, w = flatten(got:totable()), flatten(want)
    if #g ~= #w then return T.ok(false, name, ("%d values, want %d"):format(#g, #w)) end
    local worst, at = 0.0, 0
    for i = 1, #w do
        local e = math.abs(g[i] - w[i]) / math.max(1.0, math.abs(w[i]))
        if e ~= e then e = math.huge end
        if e > worst then worst, at = e, i end
    end
    return T.ok(worst <= tol, name, ("element %d: got %.9g, want %.9g"):format(at, g[at] or 0 / 0, w[at] or 0 / 0))
end

local function shape_is(name, t, want)
    T.is(table.concat(t:shape(), ","), table.concat(want, ","), name .. ": shape")
end

-- ---- matmul ----
local function ref_mm(A, B, ta, tb) -- A, B nested 2-d tables
    local M = ta and #A[1] or #A
    local K = ta and #A or #A[1]
    local N = tb and #B or #B[1]
    local C = {}
    for i = 1, M do
        C[i] = {}
        for j = 1, N do
            local s = 0.0
            for k = 1, K do
                s = s + (ta and A[k][i] or A[i][k]) * (tb and B[j][k] or B[k][j])
            end
            C[i][j] = s
        end
    end
    return C
end

for _, c in ipairs {{1, 1, 1}, {3, 17, 5}, {17, 3, 1}, {5, 70, 3}, {70, 33, 65}} do
    local M, K, N = c[1], c[2], c[3]
    for _, tt in ipairs {{false, false}, {true, false}, {false, true}, {true, true}} do
        local ta, tb = tt[1], tt[2]
        local a = rnd(ta and {K, M} or {M, K})
        local b = rnd(tb and {N, K} or {K, N})
        local y = blt.matmul(a, b, ta, tb)
        shape_is(("matmul %dx%dx%d ta=%s tb=%s"):format(M, K, N, ta, tb), y, {M, N})
        check(("matmul %dx%dx%d ta=%s tb=%s"):format(M, K, N, ta, tb), y, ref_mm(a:totable(), b:totable(), ta, tb))
    end
end
do -- batched [B,M,K] x [B,K,N], with transposes
    for _, tt in ipairs {{false, false}, {true, false}, {false, true}, {true, true}} do
        local ta, tb = tt[1], tt[2]
        local B, M, K, N = 3, 5, 17, 2
        local a = rnd(ta and {B, K, M} or {B, M, K})
        local b = rnd(tb and {B, N, K} or {B, K, N})
        local y = blt.matmul(a, b, ta, tb)
        local A, Bt, want = a:totable(), b:totable(), {}
        for i = 1, B do want[i] = ref_mm(A[i], Bt[i], ta, tb) end
        shape_is(("bmm ta=%s tb=%s"):format(ta, tb), y, {B, M, N})
        check(("bmm ta=%s tb=%s"):format(ta, tb), y, want)
    end
    local a, b = rnd {2, 3, 5}, rnd {5, 7}
    local y = blt.matmul(a, b)
    local A, want = a:totable(), {}
    for i = 1, 2 do want[i] = ref_mm(A[i], b:totable()) end
    shape_is("matmul [2,3,5]x[5,7]", y, {2, 3, 7})
    check("matmul [2,3,5]x[5,7]", y, want)
    y = blt.matmul(a, blt.transpose(b), false, true)
    check("matmul [2,3,5]x[7,5]^T", y, want)
    check("matmul of a transposed view", blt.matmul(b:t(), a:narrow(1, 1, 1):reshape {3, 5}, false, true),
          ref_mm(b:t():contiguous():totable(), A[1], false, true))
    local x, w, bias = rnd {2, 3, 5}, rnd {4, 5}, rnd {4}
    local lw = {}
    for i = 1, 2 do
        lw[i] = ref_mm(x:totable()[i], w:totable(), false, true)
        for r = 1, 3 do for c = 1, 4 do lw[i][r][c] = lw[i][r][c] + bias:get(c) end end
    end
    check("linear [2,3,5] w[4,5] + bias", blt.linear(x, w, bias), lw)
end

-- ---- softmax / log_softmax ----
local function ref_softmax(rows, log)
    local out = {}
    for r, row in ipairs(rows) do
        local m = -math.huge
        for _, v in ipairs(row) do m = math.max(m, v) end
        local s = 0.0
        for _, v in ipairs(row) do s = s + math.exp(v - m) end
        out[r] = {}
        for c, v in ipairs(row) do out[r][c] = log and (v - m - math.log(s)) or math.exp(v - m) / s end
    end
    return out
end
do
    for _, C in ipairs {1, 3, 17, 130} do
        local x = rnd {3, C}
        check("softmax [3," .. C .. "]", blt.softmax(x), ref_softmax(x:totable()))
        check("log_softmax [3," .. C .. "]", blt.log_softmax(x), ref_softmax(x:totable(), true), 1e-5)
    end
    local big = blt.tensor {{1000, 999, -1000}, {-50, -50, -50}}
    check("softmax of large logits is stable", blt.softmax(big), ref_softmax(big:totable()))
    check("log_softmax of large logits is stable", blt.log_softmax(big), ref_softmax(big:totable(), true))
    local x = rnd {3, 5}
    check("softmax of a transposed view", blt.softmax(x:t()), ref_softmax(x:t():contiguous():totable()))
    -- softmax_entropy = -sum p ln p, against the reference softmax
    for _, C in ipairs {1, 17, 300} do
        local e = rnd {3, C}
        local p, lp = ref_softmax(e:totable()), ref_softmax(e:totable(), true)
        local want = {}
        for r = 1, 3 do
            local h = 0.0
            for c = 1, C do h = h - p[r][c] * lp[r][c] end
            want[r] = h
        end
        check("softmax_entropy [3," .. C .. "]", blt.softmax_entropy(e), want, 1e-5)
    end
    -- [1000, 999, -1000]: p = (1, e^-1, 0) / (1 + e^-1); [-50, -50, -50]: ln 3
    local p1 = 1 / (1 + math.exp(-1))
    check("softmax_entropy of large logits", blt.softmax_entropy(big),
          {-(p1 * math.log(p1) + (1 - p1) * math.log(1 - p1)), math.log(3)}, 1e-5)
    -- cross_entropy = mean of -log_softmax[target] over counted rows
    local lx = rnd {4, 6}
    local ls = ref_softmax(lx:totable(), true)
    local tg = {5, 0, -100, 2}
    local s, n = 0.0, 0
    for r = 1, 4 do if tg[r] ~= -100 then s = s - ls[r][tg[r] + 1]; n = n + 1 end end
    T.near(blt.cross_entropy(lx, ints(tg)):item(), s / n, 1e-5, "cross_entropy mean with an ignored row")
    T.near(blt.cross_entropy(lx, ints(tg), {reduction = "sum"}):item(), s, 1e-5, "cross_entropy sum")
    T.is(blt.cross_entropy(lx, ints {-100, -100, -100, -100}):item(), 0.0, "cross_entropy with every row ignored is 0")
end

-- ---- RMSNorm ----
do
    for _, D in ipairs {1, 3, 17, 70} do
        local x, g = rnd {2, 3, D}, rnd {D}
        local X, G, want = x:totable(), g:totable(), {}
        for b = 1, 2 do
            want[b] = {}
            for t = 1, 3 do
                local ss = 0.0
                for c = 1, D do ss = ss + X[b][t][c] ^ 2 end
                local r = 1 / math.sqrt(ss / D + 1e-5)
                want[b][t] = {}
                for c = 1, D do want[b][t][c] = X[b][t][c] * r * G[c] end
            end
        end
        check("rmsnorm [2,3," .. D .. "]", blt.rmsnorm(x, g), want, 1e-5)
    end
    local x, g = blt.tensor {{3, 4}}, blt.tensor {1, 2}
    local r = 1 / math.sqrt(12.5 + 0.5)
    check("rmsnorm eps 0.5", blt.rmsnorm(x, g, 0.5), {{3 * r, 8 * r}})
end

-- ---- RoPE: pairs (2i, 2i+1) of each head rotated by pos * theta^(-2i/hd) ----
local function ref_rope(X, heads, theta, pos) -- X nested [B][T][D]; pos(b, t) -> position
    local out = {}
    for b = 1, #X do
        out[b] = {}
        for t = 1, #X[b] do
            local row, D = X[b][t], #X[b][t]
            local hd = D // heads
            local o = {}
            for h = 0, heads - 1 do
                for i = 0, hd // 2 - 1 do
                    local a = pos(b, t) * theta ^ (-2 * i / hd)
                    local x0, x1 = row[h * hd + 2 * i + 1], row[h * hd + 2 * i + 2]
                    o[h * hd + 2 * i + 1] = x0 * math.cos(a) - x1 * math.sin(a)
                    o[h * hd + 2 * i + 2] = x0 * math.sin(a) + x1 * math.cos(a)
                end
            end
            out[b][t] = o
        end
    end
    return out
end
do
    local x = rnd {2, 17, 12}
    check("rope [2,17,12] heads 3", blt.rope(x, 3), ref_rope(x:totable(), 3, 10000, function(_, t) return t - 1 end), 1e-5)
    check("rope heads 1 theta 100", blt.rope(x, 1, {theta = 100}),
          ref_rope(x:totable(), 1, 100, function(_, t) return t - 1 end), 1e-5)
    local p = {}
    for t = 1, 17 do p[t] = (t * 37) % 50 end
    check("rope positions [T]", blt.rope(x, 2, {positions = ints(p)}),
          ref_rope(x:totable(), 2, 10000, function(_, t) return p[t] end), 1e-5)
    local pb = {{}, {}}
    for t = 1, 17 do pb[1][t] = t + 100; pb[2][t] = 17 - t end
    check("rope positions [B,T]", blt.rope(x, 6, {positions = ints(pb)}),
          ref_rope(x:totable(), 6, 10000, function(b, t) return pb[b][t] end), 1e-5)
    local x2 = rnd {5, 4}
    check("rope 2-d [T,D]", blt.rope(x2, 2), ref_rope({x2:totable()}, 2, 10000, function(_, t) return t - 1 end)[1], 1e-5)
    -- a hand-checked value: position 1, pair 0 rotates by exactly 1 radian
    local one = blt.rope(blt.tensor {{{1, 0}}, }:reshape {1, 1, 2}, 1, {positions = ints {1}})
    T.near(one:get(1, 1, 1), math.cos(1), 1e-6, "rope: (1,0) at position 1 -> (cos 1, sin 1)")
    T.near(one:get(1, 1, 2), math.sin(1), 1e-6, "rope: second component")
end

-- ---- attention against a naive reference ----
local function ref_attention(q, k, v, o)
    local Q, K, V = q:totable(), k:totable(), v:totable()
    local B, Tq, Tk, D = #Q, #Q[1], #K[1], #Q[1][1]
    local H = o.heads
    local hd = D // H
    local scale = o.scale or 1 / math.sqrt(hd)
    local qs = o.q_seg and o.q_seg:totable()
    local ks = o.k_seg and o.k_seg:totable()
    local st = o.k_start and o.k_start:totable()
    local en = o.k_end and o.k_end:totable()
    local out = {}
    for b = 1, B do
        out[b] = {}
        for i = 1, Tq do
            local row = {}
            for d = 1, D do row[d] = 0.0 end
            for h = 0, H - 1 do
                local sc, m = {}, -math.huge
                for j = 1, Tk do
                    local ok = true
                    if o.causal and j > i then ok = false end
                    if o.window and o.window > 0 and j <= i - o.window then ok = false end
                    if qs and qs[b][i] ~= ks[b][j] then ok = false end
                    if st and not (j - 1 >= st[b][i] and j - 1 < en[b][i]) then ok = false end
                    if ok then
                        local s = 0.0
                        for d = 1, hd do s = s + Q[b][i][h * hd + d] * K[b][j][h * hd + d] end
                        sc[j] = s * scale
                        m = math.max(m, sc[j])
                    end
                end
                local z = 0.0
                for _, s in pairs(sc) do z = z + math.exp(s - m) end
                for j, s in pairs(sc) do
                    local p = math.exp(s - m) / z
                    for d = 1, hd do row[h * hd + d] = row[h * hd + d] + p * V[b][j][h * hd + d] end
                end
            end
            out[b][i] = row
        end
    end
    return out
end

local function attn_case(name, B, Tq, Tk, D, o)
    local q, k, v = rnd {B, Tq, D}, rnd {B, Tk, D}, rnd {B, Tk, D}
    local y = blt.attention(q, k, v, o)
    shape_is("attention " .. name, y, {B, Tq, D})
    check("attention " .. name, y, ref_attention(q, k, v, o), 1e-5)
    return y
end

attn_case("no mask B2 T5 H2", 2, 5, 5, 6, {heads = 2})
attn_case("T1 causal", 1, 1, 1, 3, {heads = 1, causal = true})
attn_case("T17 causal H3 hd1", 1, 17, 17, 3, {heads = 3, causal = true})
attn_case("T130 causal (three 64-blocks)", 2, 130, 130, 8, {heads = 2, causal = true})
attn_case("T129 causal window 1 (only itself)", 1, 129, 129, 4, {heads = 1, causal = true, window = 1})
attn_case("T100 causal window 7", 1, 100, 100, 6, {heads = 3, causal = true, window = 7})
attn_case("T130 causal window 65", 1, 130, 130, 4, {heads = 2, causal = true, window = 65})
attn_case("Tq3 Tk70 scale 0.2", 2, 3, 70, 4, {heads = 2, scale = 0.2})
attn_case("Tq70 Tk17 causal", 1, 70, 17, 2, {heads = 1, causal = true})
do
    local seg, lens = {}, {1, 63, 2, 64}
    for s, n in ipairs(lens) do for _ = 1, n do seg[#seg + 1] = s end end
    local qs = ints {seg, seg}
    attn_case("T130 sorted segments + causal", 2, 130, 130, 4, {heads = 1, causal = true, q_seg = qs, k_seg = qs})
    attn_case("T130 sorted segments + causal + window 10", 2, 130, 130, 4,
              {heads = 2, causal = true, window = 10, q_seg = qs, k_seg = qs})
    local kq = ints {{5, 0, 5, 1, 2, 9, 9}}
    local kk = ints {{1, 5, 2, 0, 2, 2, 1, 5, 7, 0, 3}}
    local y = attn_case("unsorted segments Tq7 Tk11", 1, 7, 11, 4, {heads = 2, q_seg = kq, k_seg = kk})
    T.is(y:get(1, 6, 1), 0.0, "attention: a query whose segment has no key gives 0")
end
do
    local st, en = {}, {}
    for i = 0, 16 do st[i + 1] = (i * 11) % 100; en[i + 1] = st[i + 1] + (i * 13) % 60 end
    st[5], en[5] = 40, 40
    st[6], en[6] = -5, 300
    local y = attn_case("Tq17 Tk100 k_start/k_end (empty, clipped)", 1, 17, 100, 6,
                        {heads = 2, k_start = ints {st}, k_end = ints {en}})
    T.is(y:get(1, 5, 3), 0.0, "attention: an empty key range gives 0")
    local s2, e2 = {{}, {}}, {{}, {}}
    for b = 1, 2 do for i = 1, 70 do s2[b][i] = (i - 1) // 8 * 8; e2[b][i] = 70 - b * 3 end end
    attn_case("T70 causal + window 30 + ranges", 2, 70, 70, 3,
              {heads = 1, causal = true, window = 30, k_start = ints(s2), k_end = ints(e2)})
end

-- ---- a few more values ----
do
    local x = blt.tensor {{-2, -0.5, 0, 0.5, 3}}
    local function gelu(v) -- erf by Abramowitz-Stegun 7.1.26 is too coarse; use a series
        local function erf(z)
            local s, term, n = 0.0, z, 0
            repeat
                s = s + term / (2 * n + 1)
                n = n + 1
                term = -term * z * z / n
            until math.abs(term) < 1e-17
            return 2 / math.sqrt(math.pi) * s
        end
        return 0.5 * v * (1 + erf(v / math.sqrt(2)))
    end
    local want = {}
    for i, v in ipairs(x:totable()[1]) do want[i] = gelu(v) end
    check("gelu (exact erf form)", blt.gelu(x), {want}, 1e-6)
    local p = blt.tensor {{1, 5, 2}, {7, 0, 3}, {4, 4, 9}, {0, 1, 2}}:reshape {1, 4, 3}
    check("segment_maxpool runs 2,0,1", blt.segment_maxpool(p, ints {{2, 0, 1}}), {{{7, 5, 3}, {0, 0, 0}, {4, 4, 9}}})
    check("sum dim 2 keepdim", blt.sum(blt.tensor {{1, 2}, {3, 4}}, 2, true), {{3}, {7}})
    check("mean dim 1", blt.mean(blt.tensor {{1, 2}, {3, 5}}, 1), {2, 3.5})
    check("div broadcast", blt.div(blt.tensor {{1, 2}, {3, 4}}, blt.tensor {2, 4}), {{0.5, 0.5}, {1.5, 1}})
    check("number / tensor", blt.div(1, blt.tensor {2, 4}), {0.5, 0.25})
    check("number - tensor", blt.sub(1, blt.tensor {2, 4}), {-1, -3})
    check("gather dim 2", blt.gather(blt.tensor {{1, 2, 3}, {4, 5, 6}}, 2, ints {{2, 0}, {1, 1}}), {{3, 1}, {5, 5}})
    check("index_select dim 2", blt.index_select(blt.tensor {{1, 2, 3}, {4, 5, 6}}, 2, ints {2, 2, 0}),
          {{3, 3, 1}, {6, 6, 4}})
    check("embedding", blt.embedding(blt.tensor {{1, 2}, {3, 4}, {5, 6}}, ints {2, 0}), {{5, 6}, {1, 2}})
    check("concat dim 2", blt.concat({blt.tensor {{1}, {2}}, blt.tensor {{3, 4}, {5, 6}}}, 2), {{1, 3, 4}, {2, 5, 6}})
    check("reshape of a transposed tensor", blt.tensor {{1, 2, 3}, {4, 5, 6}}:t():reshape {6}, {1, 4, 2, 5, 3, 6})
    check("narrow then contiguous", blt.tensor {{1, 2, 3}, {4, 5, 6}}:narrow(2, 2, 2):contiguous(), {{2, 3}, {5, 6}})
end

T.done()
