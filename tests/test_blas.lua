package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- The product layer (core/blas.c, core/dnnl.c, core/bf16.c) on every path a product
-- can take: oneDNN fp32, OpenBLAS fp32, bf16 on oneDNN, bf16 widened to fp32 (on
-- oneDNN or OpenBLAS), and the automatic choice between them. The library is chosen
-- when the process starts (BLT_BLAS, BLT_NO_BF16), so each path runs in a child
-- process: `./blt tests/test_blas.lua child` prints one line per generated case, and
-- the parent turns each into a TAP result.
--
-- Tolerances (u = 2^-24, the fp32 unit roundoff). The reference is the product in
-- double precision, whose own error (about K 2^-53) is negligible here. An fp32
-- product of length K, in any summation order, with or without FMA, is within
-- (K + 2) u (|alpha| sum_k |a_ik||b_kj| + |beta c_ij|) of the exact value: K - 1
-- roundings along the sum, one for alpha, one for adding beta c. For bf16 operands
-- against the rounded operands a', b' (what the kernel multiplies) the same bound
-- holds (with |a'||b'| <= (1 + 2^-8)^2 |a||b|): a product of two bf16 values is exact
-- in fp32. Against the unrounded operands, each operand is off by at most 2^-8
-- relative (8 significant bits, 7 of them stored, round to nearest: half a unit in
-- the last place), so |a'b' - ab| <= (2 2^-8 + 2^-16) |a||b| is added to the bound.
local blt = require "blt"
local core = blt.core
local U = require "testutil"

local SIZES = {1, 7, 33, 130}
local u = 2.0 ^ -24

-- float <-> bit patterns
local function bits(x) return (string.unpack("<I4", string.pack("<f", x))) end
local function from_bits(b) return (string.unpack("<f", string.pack("<I4", b))) end

-- bf16 rounding, written independently of core/bf16.c: compare the dropped half
-- with one half-unit instead of adding a bias. Denormals become signed zero and NaNs
-- are made quiet, as the AVX512_BF16 instructions do.
local function bf16_ref(b)
    if b & 0x7fffffff > 0x7f800000 then return (b >> 16) | 0x40 end
    if b & 0x7f800000 == 0 then b = b & 0x80000000 end
    local hi, lo = b >> 16, b & 0xffff
    if lo > 0x8000 or (lo == 0x8000 and hi & 1 == 1) then hi = hi + 1 end
    return hi
end
local function bf16_value(x) return from_bits(bf16_ref(bits(x)) << 16) end

-- The generated cases: every size in SIZES for M, N and K in turn (the others random),
-- random transposes, row strides 0..3 beyond the width, beta 0 / 1 / -0.5, alpha 1 /
-- 0.75 / -2; plus M = 1, K = 0, empty results, and a product big enough (2^24
-- multiply-adds, every side >= 16) for the automatic choice to pick oneDNN (its
-- result checked on a grid of entries: the double-precision loop is slow in Lua).
local function cases()
    math.randomseed(20261205)
    local list = {}
    local function add(M, N, K)
        list[#list + 1] = {M = M, N = N, K = K, ta = math.random(2) == 1, tb = math.random(2) == 1,
            pa = math.random(0, 3), pb = math.random(0, 3), pc = math.random(0, 3),
            alpha = ({1, 0.75, -2})[math.random(3)], beta = ({0, 1, -0.5})[math.random(3)]}
    end
    local function pick() return SIZES[math.random(#SIZES)] end
    for _, s in ipairs(SIZES) do
        for _ = 1, 2 do
            add(s, pick(), math.min(pick(), 33))
            add(math.min(pick(), 33), s, pick())
            add(pick(), math.min(pick(), 33), s)
        end
    end
    add(1, 130, 33); add(1, 7, 130); add(1, 1, 1)            -- one row: sgemv on OpenBLAS
    add(7, 33, 0); add(130, 1, 0)                              -- K = 0: C = beta C
    add(0, 7, 7); add(7, 0, 7)                                 -- nothing to compute
    add(256, 256, 256)                                         -- 2^24 multiply-adds
    list[#list].step = 9
    list[#list + 1] = {M = 33, N = 7, K = 33, ta = false, tb = true, pa = 0, pb = 1, pc = 2, alpha = 1, beta = 0,
        nan_c = true}                                          -- beta 0 ignores NaN in C
    return list
end

local function name(c, dtype)
    return ("%s %dx%dx%d%s%s ld+%d,%d,%d alpha %g beta %g%s"):format(dtype, c.M, c.N, c.K, c.ta and " A^T" or "",
        c.tb and " B^T" or "", c.pa, c.pb, c.pc, c.alpha, c.beta, c.nan_c and " C=NaN" or "")
end

-- runs one case through core.gemm; returns ok, worst error / tolerance, library, diag
local function run_case(c, dtype, seed)
    local ra, ca = c.ta and c.K or c.M, c.ta and c.M or c.K
    local rb, cb = c.tb and c.N or c.K, c.tb and c.K or c.N
    local lda, ldb, ldc = math.max(ca, 1) + c.pa, math.max(cb, 1) + c.pb, math.max(c.N, 1) + c.pc
    local function mat(rows, ld, s) return blt.randn({math.max(rows * ld, 1)}, s) end
    local A, B = mat(ra, lda, seed), mat(rb, ldb, seed + 1)
    local C = c.nan_c and blt.full({math.max(c.M * ldc, 1)}, 0 / 0) or mat(c.M, ldc, seed + 2)
    local a, b, c0 = A:totable(), B:totable(), C:totable()
    core.blas_stats_reset()
    core.mac_counter_reset()
    core.gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A, lda, B, ldb, c.beta, C, ldc, dtype)
    local macs = core.mac_counter().matmul
    local stats = core.blas_stats()
    local lib = #stats == 1 and stats[1].lib or #stats == 0 and "none" or "several"
    local got = C:totable()
    local ar, br = a, b
    if dtype == "bf16" then
        ar, br = {}, {}
        for i, x in ipairs(a) do ar[i] = bf16_value(x) end
        for i, x in ipairs(b) do br[i] = bf16_value(x) end
    end
    -- element (i, k) of op(A) is a[i sai + k sak + 1]; (k, j) of op(B) is b[k sbk + j sbj + 1]
    local sai, sak = c.ta and 1 or lda, c.ta and lda or 1
    local sbk, sbj = c.tb and 1 or ldb, c.tb and ldb or 1
    local worst, diag = 0, ""
    local fp32 = dtype == "f32"
    local step = c.step or 1
    for i = 0, c.M - 1, step do
        for j = 0, c.N - 1, step do
            local exact, ref, mag = 0, 0, 0
            for k = 0, c.K - 1 do
                local ia, ib = i * sai + k * sak + 1, k * sbk + j * sbj + 1
                local xy = a[ia] * b[ib]
                exact = exact + xy
                ref = ref + ar[ia] * br[ib]
                mag = mag + math.abs(xy)
            end
            local old = c.beta ~= 0 and c.beta * c0[i * ldc + j + 1] or 0
            exact, ref = c.alpha * exact + old, c.alpha * ref + old
            local bound = math.abs(c.alpha) * mag * (fp32 and 1 or 1 + 2 ^ -7 + 2 ^ -16) + math.abs(old)
            local tol = (c.K + 2) * u * bound + 1e-30
            local tol_exact = fp32 and tol or tol + (2 * 2 ^ -8 + 2 ^ -16) * math.abs(c.alpha) * mag
            local v = got[i * ldc + j + 1]
            local r = math.max(math.abs(v - ref) / tol, math.abs(v - exact) / tol_exact)
            if v ~= v then r = math.huge end
            if r > worst then
                worst = r
                diag = ("C[%d,%d] = %.9g, want %.9g (tolerance %.3g)"):format(i, j, v, ref, tol)
            end
        end
    end
    -- the padding between rows of C stays untouched
    for i = 0, c.M - 1 do
        for j = c.N, ldc - 1 do
            local v, w = got[i * ldc + j + 1], c0[i * ldc + j + 1]
            if not (v == w or (v ~= v and w ~= w)) then worst, diag = math.huge, ("padding C[%d,%d] written"):format(i, j) end
        end
    end
    local want_macs = c.M * c.N * c.K
    if macs ~= want_macs then worst, diag = math.huge, ("multiply-adds counted %d, want %d"):format(macs, want_macs) end
    return worst <= 1, worst, lib, diag
end

if arg[1] == "child" or arg[1] == "hash" then
    for n, c in ipairs(arg[1] == "child" and cases() or {}) do
        for _, dtype in ipairs {"f32", "bf16"} do
            local ok, worst, lib, diag = run_case(c, dtype, 100 * n)
            print(("case\t%s\t%s\t%.3g\t%s\t%s\t%d"):format(name(c, dtype), ok and 1 or 0, worst, lib, diag,
                  c.M * c.N * c.K))
        end
    end
    -- more shapes than core/dnnl.c caches (64): the least recently used primitives
    -- are destroyed and rebuilt, results stay right
    if arg[1] == "child" then
        local bad, n = 0, 0
        for round = 1, 2 do
            for m = 2, 71 do
                local A, B, C = blt.randn({m * 5}, m), blt.randn({5 * 3}, 1), blt.zeros({m * 3})
                core.gemm(false, false, m, 3, 5, 1, A, 5, B, 3, 0, C, 3)
                local a, b, c = A:totable(), B:totable(), C:totable()
                for i = 0, m - 1 do
                    for j = 0, 2 do
                        local ref, mag = 0, 0
                        for k = 0, 4 do
                            ref = ref + a[i * 5 + k + 1] * b[k * 3 + j + 1]
                            mag = mag + math.abs(a[i * 5 + k + 1] * b[k * 3 + j + 1])
                        end
                        if not (math.abs(c[i * 3 + j + 1] - ref) <= 7 * u * mag) then bad = bad + 1 end
                    end
                end
                n = n + 1
            end
        end
        print(("evict\t%d\t%d"):format(n, bad))
    end
    -- run to run: the same product twice in this process (the parent compares processes)
    local A, B = blt.randn({256 * 256}, 7), blt.randn({256 * 256}, 8)
    local function product(dtype) -- 2^24 multiply-adds: on oneDNN in every path that may use it
        local C = blt.zeros({256 * 256})
        core.gemm(false, false, 256, 256, 256, 1, A, 256, B, 256, 0, C, 256, dtype)
        return core.hash_tensor(C)
    end
    print(("hash\t%s\t%s\t%s\t%s"):format(product("f32"), product("f32"), product("bf16"), product("bf16")))
    return
end

local T = require "tap"
local bin = os.getenv("BLT_BIN") or arg[-1] or "./blt"
local info = core.blas_info()
local has_dnnl = info:find("oneDNN %d") ~= nil
local has_avx512 = info:find("avx512_core") ~= nil
local has_bf16 = info:find("avx512_core_bf16") ~= nil  -- oneDNN's bf16 kernels
local cpu_bf16 = info:find("bf16 rounding: AVX512_BF16") ~= nil
T.diag("libraries: " .. info)

-- ---- fp32 -> bf16 rounding: core's scalar path against bf16_ref, the vector path against the scalar one ----
do
    local list = {0, 0x80000000, 0x00000001, 0x807fffff, 0x00800000, 0x7f7fffff, 0xff7fffff, 0x7f800000, 0xff800000,
        0x7f800001, 0xffc00000, 0x7fbfffff, 0x3f808000, 0x3f818000, 0x3f80ffff, 0x3f807fff, 0x7f7f8000, 0x7f7f7fff,
        0xbf808000, 0x00808000, 0x0080ffff}
    local special = #list
    math.randomseed(1)
    for _ = 1, 5000 do list[#list + 1] = math.random(0, 0xffffffff) end
    local scalar, vector = core.bf16_bits(list, true), core.bf16_bits(list)
    local bad_s, bad_v, first = 0, 0, ""
    for i, b in ipairs(list) do
        if scalar[i] ~= bf16_ref(b) then
            bad_s = bad_s + 1
            if first == "" then first = ("0x%08x -> 0x%04x, want 0x%04x"):format(b, scalar[i], bf16_ref(b)) end
        end
        if vector[i] ~= scalar[i] then bad_v = bad_v + 1 end
    end
    T.is(bad_s, 0, ("bf16 rounding (scalar) matches the reference on %d special and %d random bit patterns %s")
        :format(special, #list - special, first))
    T.is(bad_v, 0, ("bf16 rounding: the vector path (%s) gives the scalar path's bits on all %d"):format(
        cpu_bf16 and "AVX512_BF16" or "absent here: scalar twice", #list))
end

-- ---- the binding refuses matrices that do not fit their tensors ----
do
    local A, B, C = blt.zeros({12}), blt.zeros({12}), blt.zeros({12})
    T.raises(function() core.gemm(false, false, 3, 3, 4, 1, A, 3, B, 3, 0, C, 3) end, "row stride of a %(3%) is below its 4 columns", "gemm: lda below the width")
    T.raises(function() core.gemm(false, false, 4, 3, 4, 1, A, 4, B, 3, 0, C, 3) end, "a holds 12 elements, a %[4 x 4%]", "gemm: a too small")
    T.raises(function() core.gemm(false, true, 3, 5, 4, 1, A, 4, B, 4, 0, C, 4) end, "b holds 12 elements", "gemm: b too small")
    T.raises(function() core.gemm(false, false, 3, 3, 4, 1, A, 4, B, 3, 0, C, 5) end, "c holds 12 elements", "gemm: c too small")
    T.raises(function() core.gemm(false, false, 3, 3, 4, 1, A, 4, B, 3, 0, C, 3, "f16") end, "dtype 'f16'", "gemm: unknown dtype")
end

-- ---- a library that cannot be had is refused at start, in one clear line ----
do
    local rc, out = U.sh(("env BLT_DNNL_LIB=/nonexistent/libdnnl.so.2 %s -e 'print(require(\"blt\").core.blas_info())'"):format(bin))
    T.ok(rc == 0 and (out:find("oneDNN: absent") or not has_dnnl) and out:find("products: OpenBLAS"),
         "oneDNN missing at run time: every product on OpenBLAS, and blas_info says why", out)
    local hostile = {"bogus", "OpenBLAS", "onednn ", "auto,openblas", "1"}
    if not has_dnnl then hostile[#hostile + 1] = "onednn" end
    for _, v in ipairs(hostile) do
        local rc, out = U.sh(("env BLT_BLAS=%s %s -e 'require \"blt\"'"):format(U.q(v), bin))
        local want = v == "onednn" and "BLT_BLAS=onednn: oneDNN" or "BLT_BLAS=" .. v:gsub("%p", "%%%0") .. ": unknown library"
        T.ok(rc ~= 0 and out:find(want), ("BLT_BLAS=%q is refused: %s"):format(v, out:match("[^\n]*")), out)
    end
end

-- ---- every path, in its own process ----
-- expect(case, dtype) -> the library pattern that must have served it
local paths = {
    {name = "auto", env = "", run = true, expect = function(c, dtype)
        if c.M * c.N * c.K == 0 then return "^none$" end
        if dtype == "bf16" then return has_bf16 and "^onednn:" or "^widened%+" end
        local big = c.M >= 16 and c.N >= 16 and c.K >= 16 and c.M * c.N * c.K >= 2 ^ 24 -- core/blas.c's rule
        return (has_avx512 and has_dnnl and big) and "^onednn:" or "^openblas$"
    end},
    {name = "openblas", env = "BLT_BLAS=openblas", run = true, expect = function(c, dtype)
        if c.M * c.N * c.K == 0 then return "^none$" end
        return dtype == "bf16" and "^widened%+openblas$" or "^openblas$"
    end},
    {name = "oneDNN missing at run time", env = "BLT_DNNL_LIB=/nonexistent/libdnnl.so.2", run = true,
     expect = function(c, dtype)
        if c.M * c.N * c.K == 0 then return "^none$" end
        return dtype == "bf16" and "^widened%+openblas$" or "^openblas$"
    end},
    {name = "onednn", env = "BLT_BLAS=onednn", run = has_dnnl, expect = function(c, dtype)
        if c.M * c.N * c.K == 0 then return "^none$" end
        if dtype == "bf16" then return has_bf16 and "^onednn:" or "^widened%+onednn:" end
        return "^onednn:"
    end},
    {name = "onednn, bf16 widened", env = "BLT_BLAS=onednn BLT_NO_BF16=1", run = has_dnnl, expect = function(c, dtype)
        if c.M * c.N * c.K == 0 then return "^none$" end
        return dtype == "bf16" and "^widened%+onednn:" or "^onednn:"
    end},
}
local list = cases()
local hashes = {}
for _, p in ipairs(paths) do
    if not p.run then
        T.ok(true, ("path %s # skip oneDNN is not available here (%s)"):format(p.name, info))
    else
        local rc, out = U.sh(("env %s %s %s child"):format(p.env, bin, U.q(arg[0])))
        T.is(rc, 0, ("path %s: the child ran (%s)"):format(p.name, out:match("[^\n]*$")))
        local n, by_lib = 0, {}
        for line in out:gmatch("[^\n]+") do
            local cname, ok, worst, lib, diag = line:match("^case\t([^\t]*)\t(%d)\t([^\t]*)\t([^\t]*)\t([^\t]*)")
            if cname then
                n = n + 1
                local c = list[(n + 1) // 2]
                local dtype = n % 2 == 1 and "f32" or "bf16"
                local want = p.expect(c, dtype)
                T.ok(ok == "1" and lib:find(want), ("%s: %s: within tolerance (worst %s of it), served by %s"):format(
                    p.name, cname, worst, lib), ("%s; served by %s, want %s"):format(diag, lib, want))
                by_lib[lib] = (by_lib[lib] or 0) + 1
            end
            local en, ebad = line:match("^evict\t(%d+)\t(%d+)")
            if en then
                T.is(tonumber(ebad), 0, ("path %s: %s products over 70 shapes (more than the 64 cached) are right"):format(p.name, en))
            end
            local h = line:match("^hash\t(.*)")
            if h then hashes[#hashes + 1] = {p.name, h} end
        end
        T.is(n, 2 * #list, ("path %s: all %d cases reported"):format(p.name, 2 * #list))
        local libs = {}
        for lib, k in pairs(by_lib) do libs[#libs + 1] = ("%s %d"):format(lib, k) end
        table.sort(libs)
        T.diag(("path %s served by: %s"):format(p.name, table.concat(libs, ", ")))
    end
end

-- ---- deterministic: the same product gives the same bits within a run and across runs ----
for _, h in ipairs(hashes) do
    local f1, f2, b1, b2 = h[2]:match("(%S+)\t(%S+)\t(%S+)\t(%S+)")
    T.ok(f1 == f2 and b1 == b2, ("path %s: a product repeated in one process gives the same bits"):format(h[1]))
end
do
    local rc, out = U.sh(("%s %s hash"):format(bin, U.q(arg[0])))
    local again = out:match("^hash\t([^\n]*)")
    T.ok(rc == 0 and again == hashes[1][2], "path auto: a second process gives the same bits", out)
end

T.done()
