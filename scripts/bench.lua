-- Benchmarks (not tests): ./blt scripts/bench.lua [sections=matmul,attention,bytelm,patching] [reps=N]
-- Each figure is the median of several runs (these machines are noisy) and is
-- printed next to a reference measured in the same run.
local blt = require "blt"
local core = require "blt.core"
local config = require "blt.config"

local ALL = {"matmul", "attention", "bytelm", "patching"}
local opts = config.script {
    name = "bench", args = arg,
    usage = "usage: ./blt scripts/bench.lua [sections=matmul,attention,bytelm,patching] [reps=N]",
    defaults = {sections = table.concat(ALL, ","), reps = 5},
    docs = {sections = "comma-separated benchmarks to run", reps = "timed runs per figure (the median is printed)"},
    rules = {reps = ">= 1", sections = function(v)
        for name in tostring(v):gmatch("[^,]+") do
            local known = false
            for _, a in ipairs(ALL) do known = known or a == name end
            if not known then return "unknown section '" .. name .. "' (known: " .. table.concat(ALL, ", ") .. ")" end
        end
    end},
}
if not opts then return end -- --help
local reps, sections = opts.reps, {}
for name in opts.sections:gmatch("[^,]+") do sections[name] = true end

local function median(xs)
    table.sort(xs)
    local n = #xs
    return n % 2 == 1 and xs[(n + 1) // 2] or (xs[n // 2] + xs[n // 2 + 1]) / 2
end

local function time_median(n, fn)
    fn() -- warm up: first touch of buffers, thread wake-up
    local ts = {}
    for i = 1, n do
        local t0 = core.now()
        fn()
        ts[i] = core.now() - t0
    end
    return median(ts)
end

local function mib(b) return b / 1048576 end

print(("threads %d; %s"):format(core.threads(), core.blas_info()))

if sections.matmul then
    print("\n== matmul forward+backward (x[M,K] @ w[K,N]; 3 products) vs raw cblas_sgemm x3, GFLOP/s ==")
    print(("%6s %6s %6s %10s %10s %8s"):format("M", "K", "N", "framework", "sgemm", "ratio"))
    local ratios = {}
    for _, kn in ipairs {{128, 128}, {256, 256}, {256, 1024}, {1024, 256}, {512, 512}, {1024, 1024}} do
        local M, K, N = 4096, kn[1], kn[2]
        local x = blt.randn({M, K}, 1):set_requires_grad()
        local w = blt.randn({K, N}, 2):set_requires_grad()
        local g = blt.ones({M, N})
        local flops = 6 * M * K * N
        local tf = time_median(reps, function()
            core.scope(function()
                local y = blt.matmul(x, w)
                y:backward(g)
            end)
        end)
        local c1, c2, c3 = blt.zeros({M, N}), blt.zeros({M, K}), blt.zeros({K, N})
        -- each product timed over several calls with OpenBLAS's own threads
        local tr = core.bench_sgemm(x, w, c1, false, false, reps)  -- forward
                 + core.bench_sgemm(g, w, c2, false, true, reps)   -- grad input
                 + core.bench_sgemm(x, g, c3, true, false, reps)   -- grad weight
        ratios[#ratios + 1] = tr / tf
        print(("%6d %6d %6d %10.1f %10.1f %7.0f%%"):format(M, K, N, flops / tf / 1e9, flops / tr / 1e9, 100 * tr / tf))
    end
    print(("median framework/sgemm speed: %.0f%% (goal: within 5%%, i.e. >= 95%%)"):format(100 * median(ratios)))
end

if sections.attention then
    print("\n== fused attention, B=1, heads 4, causal sliding window: ms and GFLOP/s (allowed pairs only) ==")
    print(("%5s %5s %6s %10s %10s %10s %8s"):format("hd", "T", "window", "fwd ms", "bwd ms", "fwd GF/s", "bwd/fwd"))
    for _, hd in ipairs {32, 64} do
        for _, T in ipairs {512, 1024, 2048, 4096} do
            for _, win in ipairs {128, 512} do
                local H = 4
                local D = H * hd
                local q = blt.randn({1, T, D}, 1):set_requires_grad()
                local k = blt.randn({1, T, D}, 2):set_requires_grad()
                local v = blt.randn({1, T, D}, 3):set_requires_grad()
                local g = blt.randn({1, T, D}, 4)
                local opts = {heads = H, causal = true, window = win}
                local pairs_ = 0
                for t = 1, T do pairs_ = pairs_ + math.min(t, win) end
                local flops = 4 * pairs_ * hd * H
                local tf = time_median(reps, function()
                    core.scope(function() blt.no_grad(function() blt.attention(q, k, v, opts) end) end)
                end)
                local tfb = time_median(reps, function()
                    core.scope(function() blt.attention(q, k, v, opts):backward(g) end)
                end)
                local tb = tfb - tf
                print(("%5d %5d %6d %10.2f %10.2f %10.1f %7.2fx"):format(hd, T, win, tf * 1e3, tb * 1e3,
                      flops / tf / 1e9, tb / tf))
            end
        end
    end
    print("goal: backward at most 3x forward")
end

if sections.bytelm then
    local ByteLM = require "blt.models.bytelm"
    local optim = require "blt.optim"
    local B, T = 8, 512
    print(("\n== ByteLM training step: d 256, 4 layers, 4 heads, window 512, sequence %d, batch %d, AdamW =="):format(T, B))
    local model = ByteLM.new({dim = 256, layers = 4, heads = 4, window = 512}, 1)
    local opt = optim.AdamW(model, {lr = 1e-3})
    local gen = blt.Generator(7)
    local rows = blt.zeros({B, T + 1}, "int32")
    for b = 1, B do
        rows:set(1, b, 1)
        for t = 2, T + 1 do rows:set(3 + gen:integer(256), b, t) end
    end
    local function step()
        core.scope(function()
            opt:zero_grad()
            local loss = model:loss(rows)
            loss:backward()
            opt:clip_grad_norm(1.0)
            opt:step()
        end)
    end
    local t = time_median(reps, step)
    local fpb = model:flops_per_byte(T)
    local _, peak = core.rss()
    -- the reference: sgemm on a typical shape of this model, same run
    local x, w, c = blt.randn({B * T, 256}, 1), blt.randn({1024, 256}, 2), blt.zeros({B * T, 1024})
    local tr = core.bench_sgemm(x, w, c, false, true, 3 * reps)
    local sgemm_gf = 2 * B * T * 256 * 1024 / tr / 1e9
    local gf = fpb * B * T / t / 1e9
    print(("step %.3f s: %.0f bytes/s, %.1f GFLOP/s (%.1f MFLOP/byte), peak RSS %.0f MiB"):format(t, B * T / t, gf,
          fpb / 1e6, mib(peak)))
    print(("sgemm [%d x 256] x [256 x 1024] same run: %.1f GFLOP/s -> training step at %.0f%% of sgemm (goal >= 60%%)")
          :format(B * T, sgemm_gf, 100 * gf / sgemm_gf))
    print("goal: >= 5,000 bytes/s on 2 threads (PyTorch 1.13 here: 2,576)")
end

if sections.patching then
    local data = require "blt.data"
    local patching = require "blt.patching"
    local entropy = require "blt.entropy"
    local ByteLM = require "blt.models.bytelm"
    print("\n== patchers (one C call over a [B, 4096] batch of the default corpus) and entropy throughput ==")
    local corpus = data.open()
    local B, N = 1024, 4096
    local ids = corpus:ids(1, B * (N - 1)):reshape({B, N - 1})
    local rows = blt.concat({blt.ones({B, 1}, "int32"), ids}, 2)
    local ents = blt.rand({B, N}, 3) * 3.0
    local mb = B * N / 1e6
    for _, o in ipairs {{scheme = "fixed", size = 4}, {scheme = "space"}, {scheme = "entropy", threshold = 1.5},
                        {scheme = "entropy_delta", delta = 0.5}, {scheme = "byte"}} do
        local p = patching.patcher(o)
        local t = time_median(reps, function() core.scope(function() p:batch(rows, ents) end) end)
        print(("%-14s %8.0f MB/s"):format(o.scheme, mb / t))
    end
    print("goal: patchers over 100 MB/s")
    -- the default entropy model's size (experiments/train_entropy_model.lua), random weights: speed only
    local model = ByteLM.new({dim = 128, layers = 2, heads = 4, window = 256, multiple_of = 128}, 1)
    local n = 262144
    local t = time_median(math.max(1, reps // 2), function()
        entropy.of_stream(model, corpus, 1, n)
    end)
    local total = corpus:info().stream
    print(("entropy model (d 128, 2 layers, window 256): %.0f bytes/s -> the %.1f MB default corpus in %.0f s (goal: under 60 s)")
          :format(n / t, total / 1e6, total / (n / t)))
end
