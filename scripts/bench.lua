-- Benchmarks (not tests): ./blt scripts/bench.lua [sections=matmul,attention,bytelm,inference,patching,blt,compare,generation,bpe,mpi] [reps=N] [precision=fp32|bf16]
-- Each figure is the median of several runs (these machines are noisy) and is
-- printed next to a reference measured in the same run.
local blt = require "blt"
local core = require "blt.core"
local config = require "blt.config"

local ALL = {"matmul", "attention", "bytelm", "inference", "patching", "blt", "compare", "generation", "bpe", "mpi"}
local opts = config.script {
    name = "bench", args = arg,
    usage = "usage: ./blt scripts/bench.lua [sections=matmul,attention,bytelm,inference,patching,blt,compare,generation,bpe,mpi] [reps=N]",
    defaults = {sections = table.concat(ALL, ","), reps = 5, precision = "fp32"},
    docs = {sections = "comma-separated benchmarks to run", reps = "timed runs per figure (the median is printed)",
            precision = "products of the linear layers (as train.precision): fp32 or bf16"},
    rules = {reps = ">= 1", precision = {"fp32", "bf16"}, sections = function(v)
        for name in tostring(v):gmatch("[^,]+") do
            local known = false
            for _, a in ipairs(ALL) do known = known or a == name end
            if not known then return "unknown section '" .. name .. "' (known: " .. table.concat(ALL, ", ") .. ")" end
        end
    end},
}
if not opts then return end -- --help
local reps, sections = opts.reps, {}
local okp, errp = pcall(core.set_precision, opts.precision)
if not okp then io.stderr:write("bench: precision = bf16 is refused: ", (require("blt.util").message(errp):gsub("^blt%.set_precision: ", "")), "\n") os.exit(2) end
for name in opts.sections:gmatch("[^,]+") do sections[name] = true end

-- The output (stdout and stderr) of a program run without a shell, its exit status
-- (true when 0) second; env: variables added for it.
local function capture(argv, env)
    local tmp = assert(core.mkdtemp())
    local ok = core.spawn(argv, {stdin = "/dev/null", stdout = tmp .. "/out", stderr = tmp .. "/out", env = env})
    local out = require("blt.util").read_file(tmp .. "/out") or ""
    core.rm_rf(tmp)
    return out, ok == true
end

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

    -- the products of a linear layer's step at the BLT's main shapes (y = x W^T:
    -- x [M,K], W [N,K]), each through the library the framework picks for it
    print("\n== matmul by shape: library serving each product and GFLOP/s (median), fp32 and bf16 (bf16 in, fp32 out),")
    print("   vs raw OpenBLAS cblas_sgemm with its own threads on the same operands ==")
    print(("%-26s %-26s %8s %8s  %-30s %8s"):format("product", "fp32 library", "GFLOP/s", "OpenBLAS", "bf16 library", "GFLOP/s"))
    for _, s in ipairs {{4096, 1024, 256}, {4096, 384, 128}, {1024, 768, 256}, {4096, 256, 768}} do
        local M, N, K = s[1], s[2], s[3]
        for _, p in ipairs {{"forward", false, true, M, N, K}, {"grad input", false, false, M, K, N},
                            {"grad weight", true, false, N, K, M}} do
            local m, n, k = p[4], p[5], p[6]
            local gf = 2 * m * n * k / 1e9
            local t, lib, tref = core.bench_gemm(p[2], p[3], m, n, k, "f32", reps)
            local tb, libb = core.bench_gemm(p[2], p[3], m, n, k, "bf16", reps)
            print(("%-26s %-26s %8.1f %8.1f  %-30s %8.1f"):format(("%s %dx%dx%d"):format(p[1], m, n, k), lib, gf / t,
                  gf / tref, libb, gf / tb))
        end
    end
    print("(product MxNxK: C[M,N] = A[M,K] B[K,N]; forward A B^T, grad input A B, grad weight A^T B)")
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
    print("goal: >= 5,000 bytes/s on 2 threads (PyTorch on the same step: section compare)")
end

if sections.inference then
    -- Forward-only work (entropy.of_text: the entropies of one long text) against a
    -- training step of the same model: the demo's entropy model (docs/model.md).
    local ByteLM = require "blt.models.bytelm"
    local entropy = require "blt.entropy"
    local optim = require "blt.optim"
    local B, T = 8, 256
    local model = ByteLM.new({dim = 192, layers = 3, heads = 4, window = 512}, 1)
    print(("\n== ByteLM inference: d 192, 3 layers, 4 heads, window 512 (the demo's entropy model), bytes/s =="))
    local gen = blt.Generator(7)
    local rows = blt.zeros({B, T + 1}, "int32")
    for b = 1, B do
        rows:set(1, b, 1)
        for t = 2, T + 1 do rows:set(3 + gen:integer(256), b, t) end
    end
    local opt = optim.AdamW(model, {lr = 1e-3})
    local train_t = time_median(reps, function()
        core.scope(function()
            opt:zero_grad()
            model:loss(rows):backward()
            opt:clip_grad_norm(1.0)
            opt:step()
        end)
    end)
    local train_rate = B * T / train_t
    -- what the arithmetic allows: a forward pass is a third of a training step's matmul
    -- FLOPs at the same length, but a long text's queries see the whole window (512 keys)
    -- where training rows of 256 see 128 on average
    local train_f, fwd_f = model:flops_per_byte(T), model:flops_per_byte(65536) / 3
    print(("training step (batch %d x %d): %.0f bytes/s (matmul FLOPs per byte: training %.1fM, forward on a long"
           .. " text %.1fM, so at most %.1fx at equal GFLOP/s)"):format(B, T, train_rate, train_f / 1e6, fwd_f / 1e6,
           train_f / fwd_f))
    local letters = "the quick brown fox jumps over the lazy dog. "
    for _, n in ipairs {1024, 65536, 1048576} do
        local text = letters:rep(n // #letters + 1):sub(1, n)
        local r = n >= 1048576 and math.min(reps, 2) or reps -- 1 MB: about a minute a run
        local t = time_median(r, function() entropy.of_text(model, text) end)
        print(("entropy.of_text %7d bytes: %.3f s, %.0f bytes/s = %.1fx training (goal >= 3x)"):format(n, t, n / t,
              n / t / train_rate))
    end
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

-- Matrix-multiply FLOPs of one BLT training step (docs/model.md's counting: 2 per
-- multiply-add, training = 3 x forward, attention charged for the pairs its mask
-- allows, lookups free), from the config and the batch's patch lengths (real patches
-- only: a row's padding patches are not counted); plus one forward of the entropy
-- model (no gradients) when it runs in the step.
local function blt_step_flops(m, lengths, T, ent)
    local nn = require "blt.nn"
    local V = 260
    local d, dg, k = m.dim, m.global.dim, m.k
    local h, hg = nn.ffn_hidden(d, m.multiple_of), nn.ffn_hidden(dg, m.multiple_of)
    local B = #lengths
    local function keys(n, w) -- allowed (query, key) pairs of a causal window over n positions
        local s = 0
        for t = 1, n do s = s + ((w and w > 0) and math.min(t, w) or t) end
        return s
    end
    local function blocks(L, width, hidden, n, w, heads_pairs)
        return L * (n * 2 * (4 * width * width + 3 * width * hidden) + 4 * width * heads_pairs)
    end
    local fwd = 0
    for b = 1, B do
        local P = 0
        for _, l in ipairs(lengths[b]) do if l > 0 then P = P + 1 end end
        local n_e = m.encoder.cross_every_layer and m.encoder.layers or 1
        local n_d = m.decoder.cross_every_layer and m.decoder.layers or 1
        fwd = fwd + blocks(m.encoder.layers, d, h, T, m.encoder.window, keys(T, m.encoder.window))
        fwd = fwd + P * 2 * d * k * d                                        -- pool_proj
        fwd = fwd + n_e * (P * k * 4 * d * d + T * 4 * d * d + 4 * d * k * T) -- wq, wo; wk, wv; pairs
        if k * d ~= dg then fwd = fwd + P * 2 * k * d * dg end               -- in_proj
        fwd = fwd + blocks(m.global.layers, dg, hg, P, m.global.window, keys(P, m.global.window))
        fwd = fwd + P * 2 * dg * k * d                                       -- patch_proj
        fwd = fwd + n_d * (T * 4 * d * d + P * k * 4 * d * d + 4 * d * k * T)
        fwd = fwd + blocks(m.decoder.layers, d, h, T, m.decoder.window, keys(T, m.decoder.window))
        fwd = fwd + T * 2 * d * V                                            -- head
    end
    local total = 3 * fwd
    if ent then
        local e = ent.config
        local he = nn.ffn_hidden(e.dim, e.multiple_of)
        total = total + B * (blocks(e.layers, e.dim, he, T, e.window, keys(T, e.window)) + T * 2 * e.dim * V)
    end
    return total
end

-- The first python3 that has torch (Debian's python3-torch first), or nil.
local function python_with_torch()
    for _, py in ipairs {"/usr/bin/python3", "python3"} do
        if select(2, capture({py, "-c", "import torch"})) then return py end
    end
end

if sections.blt then
    local BLT = require "blt.models.blt"
    local ByteLM = require "blt.models.bytelm"
    local patching = require "blt.patching"
    local optim = require "blt.optim"
    local data = require "blt.data"
    local B, T = 8, 512
    local m = config.copy(BLT.defaults) -- d_local 128, d_global 256, layers 1/4/2, heads 4, k 2, windows 128, n-grams 3-8 x 4096
    print(("\n== BLT training step: d_local %d, d_global %d, layers %d/%d/%d, heads %d, k %d, window %d, n-grams %s x %d, batch %d x %d, AdamW =="):format(
        m.dim, m.global.dim, m.encoder.layers, m.global.layers, m.decoder.layers, m.heads, m.k, m.encoder.window,
        m.hash.ngrams, m.hash.buckets, B, T))
    local corpus = data.open()
    local ids = corpus:ids(1001, B * T):reshape({B, T})
    local rows = blt.concat({blt.ones({B, 1}, "int32"), ids}, 2) -- [BOS, 512 ids]: 512 inputs, 512 targets
    local inputs = core.narrow(rows, 2, 1, T)
    local ent_model = ByteLM.new({dim = 128, layers = 2, heads = 4, window = 256, multiple_of = 128}, 2)
    -- the entropy threshold: mean patch size 4 on these rows (calibrated once, outside the timing)
    local ents = ent_model:entropies(inputs)
    local threshold, got = patching.calibrate{scheme = "entropy", target = 4.0, rows = inputs, entropies = ents}
    local schemes = {{scheme = "fixed", size = 4}, {scheme = "space"}, {scheme = "entropy", threshold = threshold}}
    local hid = require("blt.nn").ffn_hidden(m.dim, m.multiple_of)
    local x, w, c = blt.randn({B * T, m.dim}, 1), blt.randn({hid, m.dim}, 2), blt.zeros({B * T, hid})
    -- sgemm is measured right after each scheme's steps (the machine is shared: its speed drifts)
    -- and the best of three measurements is kept (the least disturbed by other processes)
    local function sgemm_gflops()
        local best = math.huge
        for _ = 1, 3 do best = math.min(best, core.bench_sgemm(x, w, c, false, true, reps)) end
        return 2 * B * T * m.dim * hid / best / 1e9
    end
    print(("sgemm: [%d x %d] x [%d x %d] (the local FFN's shape), best of 3 timed after each scheme"):format(B * T, m.dim,
          m.dim, hid))
    print(("%-8s %7s %9s %8s %10s %8s %7s %9s"):format("scheme", "patch", "step s", "bytes/s", "GFLOP/s", "sgemm",
          "ratio", "RSS MiB"))
    local results = {}
    for _, o in ipairs(schemes) do
        local model = BLT.new(m, 1, {patcher = patching.patcher(o), entropy_model = o.scheme == "entropy" and ent_model or nil})
        local opt = optim.AdamW(model, {lr = 1e-3})
        local p = model:prepare(inputs)
        local st = patching.stats(p.lengths)
        local function step()
            core.scope(function()
                opt:zero_grad()
                local loss = model:loss(rows) -- entropies, patches and hash ids are computed in the step
                loss:backward()
                opt:clip_grad_norm(1.0)
                opt:step()
            end)
        end
        local t = time_median(reps, step)
        local flops = blt_step_flops(m, p.lengths:totable(), T, o.scheme == "entropy" and ent_model or nil)
        local _, peak = core.rss()
        local gf = flops / t / 1e9
        local sgemm_gf = sgemm_gflops()
        results[o.scheme] = {t = t, bps = B * T / t, gf = gf, peak = peak, mean = st.mean}
        print(("%-8s %7.2f %9.3f %8.0f %10.1f %8.1f %6.0f%% %9.0f"):format(o.scheme, st.mean, t, B * T / t, gf, sgemm_gf,
              100 * gf / sgemm_gf, mib(peak)))
        model, opt = nil, nil
        collectgarbage()
    end
    print("patch: mean bytes per patch (BOS patch excluded); GFLOP/s: matrix-multiply FLOPs of the step (training 3 x forward,")
    print("attention over allowed pairs, real patches only; the entropy model's forward included) / median step time;")
    print("sgemm: its GFLOP/s right after the scheme's steps; ratio: the step's GFLOP/s over it; RSS: the process's peak")
    print("so far (VmHWM: it includes earlier schemes). PyTorch, and both precisions side by side: section compare")
end

if sections.compare then
    -- Side by side, one run: our training step in fp32 and bf16 against the PyTorch peer
    -- (scripts/reference/bench_reference.py: our reference's code, attention in blocks) in
    -- fp32 and under torch.autocast("cpu", dtype=torch.bfloat16), for the BLT (the blt
    -- section's config, fixed patches of 4) and the ByteLM (the bytelm section's), same rows
    -- (8 x 512 of the default corpus) and threads. Each (implementation, precision) runs in a
    -- process of its own (its own peak memory), once per round; the rounds interleave them,
    -- and each figure is the median over every round's timed steps. Between rounds, oneDNN's
    -- bf16 GEMM (blt_gemm_bf16) is timed at the step's main product shapes (recorded from one
    -- of our bf16 steps: those that make up 90 % of its product FLOPs).
    local BLT = require "blt.models.blt"
    local ByteLM = require "blt.models.bytelm"
    local patching = require "blt.patching"
    local optim = require "blt.optim"
    local json = require "blt.json"
    local B, T = 8, 512
    local rounds = math.max(1, math.min(reps, 3))
    local self_bin = arg[-1] or "./blt"
    local corpus = require("blt.data").open()
    local rows = blt.concat({blt.ones({B, 1}, "int32"), corpus:ids(1001, B * T):reshape({B, T})}, 2)
    local dir = assert(core.mkdtemp())
    local rows_path = dir .. "/rows.txt"
    do
        local lines = {}
        for i, r in ipairs(rows:totable()) do lines[i] = table.concat(r, " ") end
        assert(core.write_file(rows_path, table.concat(lines, "\n") .. "\n"))
    end
    local MODELS = {
        {name = "BLT", kind = "blt", cfg = config.copy(BLT.defaults)},
        {name = "ByteLM", kind = "bytelm", cfg = {dim = 256, layers = 4, heads = 4, window = 512}},
    }
    local bf16_ok, bf16_err = pcall(core.set_precision, "bf16")
    core.set_precision(opts.precision)
    local py = python_with_torch()
    local torch_version = py and (capture({py, "-c", "import torch; print(torch.__version__)"}):match("[^\n]+") or "?")
    print(("\n== compare: training step (forward, backward, clipping, AdamW), batch %d x %d, %d threads, %d interleaved rounds"
           .. " of %d steps, medians =="):format(B, T, core.threads(), rounds, reps))
    if not py then print("PyTorch: absent (no python3 with torch; Debian: apt-get install python3-torch): ours only") end
    if not bf16_ok then print("ours bf16: refused here: " .. require("blt.util").message(bf16_err)) end

    -- the model's full config (ByteLM's defaults filled in), the step's FLOPs, and its main
    -- product shapes (recorded from one bf16 step; fp32 where bf16 is refused)
    for _, mm in ipairs(MODELS) do
        local model
        core.set_precision(bf16_ok and "bf16" or "fp32")
        if mm.kind == "blt" then
            model = BLT.new(mm.cfg, 1, {patcher = patching.patcher {scheme = "fixed", size = 4}})
            local p = model:prepare(core.narrow(rows, 2, 1, T))
            mm.flops = blt_step_flops(mm.cfg, p.lengths:totable(), T, nil)
        else
            model = ByteLM.new(mm.cfg, 1)
            mm.cfg = model.config
            mm.flops = model:flops_per_byte(T) * B * T
        end
        mm.cfg_path = dir .. "/" .. mm.kind .. ".json"
        assert(core.write_file(mm.cfg_path, json.encode(mm.cfg)))
        local opt = optim.AdamW(model, {lr = 1e-3})
        local function step() core.scope(function()
            opt:zero_grad(); model:loss(rows):backward(); opt:clip_grad_norm(1.0); opt:step() end) end
        step()
        core.blas_stats_reset()
        step()
        local by, total = {}, 0
        for _, st in ipairs(core.blas_stats()) do
            local key = ("%s%s %dx%dx%d"):format(st.ta and "T" or "N", st.tb and "T" or "N", st.M, st.N, st.K)
            local f = 2 * st.M * st.N * st.K * st.calls
            by[key] = by[key] or {ta = st.ta, tb = st.tb, M = st.M, N = st.N, K = st.K, flops = 0}
            by[key].flops = by[key].flops + f
            total = total + f
        end
        local list = {}
        for _, v in pairs(by) do list[#list + 1] = v end
        table.sort(list, function(a, b) return a.flops > b.flops end)
        mm.shapes, mm.covered = {}, 0
        for _, v in ipairs(list) do
            if mm.covered >= 0.9 * total then break end
            mm.shapes[#mm.shapes + 1] = v
            mm.covered = mm.covered + v.flops
        end
        mm.covered = total > 0 and mm.covered / total or 0
        mm.gemm, mm.libs = {bf16 = {}, f32 = {}}, {}
        model, opt = nil, nil
        collectgarbage()
    end
    core.set_precision(opts.precision)

    -- the FLOP-weighted GEMM rate over a model's main shapes (total FLOPs / total time)
    local function gemm_rate(mm, dtype)
        local f, t = 0, 0
        for _, s in ipairs(mm.shapes) do
            local sec, lib = core.bench_gemm(s.ta, s.tb, s.M, s.N, s.K, dtype, math.max(3, reps))
        mm.libs[dtype] = mm.libs[dtype] or lib
            local one = 2 * s.M * s.N * s.K
            f, t = f + s.flops, t + sec * s.flops / one
        end
        return t > 0 and f / t / 1e9 or 0
    end

    local IMPLS = {{who = "ours", precision = "fp32"}, {who = "ours", precision = "bf16", skip = not bf16_ok},
                   {who = "torch", precision = "fp32", skip = not py}, {who = "torch", precision = "bf16", skip = not py}}
    local res = {}
    local function run(mm, im)
        local argv
        if im.who == "ours" then
            argv = {self_bin, "scripts/bench_step.lua", "model=" .. mm.kind, "config=" .. mm.cfg_path, "rows=" .. rows_path,
                    "precision=" .. im.precision, "reps=" .. reps, "size=4"}
        else
            argv = {py, "scripts/reference/bench_reference.py", "--model", mm.kind, "--config", json.encode(mm.cfg),
                    "--rows", rows_path, "--threads", tostring(core.threads()), "--reps", tostring(reps),
                    "--precision", im.precision, "--size", "4"}
        end
        -- the thread count for ours: this process's; OMP_WAIT_POLICY=PASSIVE: PyTorch's OpenMP
        -- threads otherwise spin, which slows its small element-wise ops on a shared machine
        local out, ok = capture(argv, {BLT_THREADS = tostring(core.threads()), OMP_WAIT_POLICY = "PASSIVE"})
        local peak, steps = out:match("peak_rss_mb ([%d.]+) steps ([%d.,]+)")
        if not ok or not steps then
            print(("%s %s %s failed:\n%s"):format(mm.name, im.who, im.precision, out))
            return
        end
        local key = mm.kind .. "/" .. im.who .. "/" .. im.precision
        res[key] = res[key] or {steps = {}, peak = 0}
        for x in steps:gmatch("[^,]+") do table.insert(res[key].steps, tonumber(x)) end
        res[key].peak = math.max(res[key].peak, tonumber(peak))
    end
    for r = 1, rounds do
        for _, mm in ipairs(MODELS) do
            for _, im in ipairs(IMPLS) do if not im.skip then run(mm, im) end end
            if bf16_ok then mm.gemm.bf16[r] = gemm_rate(mm, "bf16") end
            mm.gemm.f32[r] = gemm_rate(mm, "f32")
        end
    end
    core.rm_rf(dir)

    print(("PyTorch: %s"):format(py and ("%s %s, torch.set_num_threads(%d), attention in blocks (windowed self-attention per "
          .. "query block, cross attention over gathered patch bytes and slots)"):format(py, torch_version, core.threads())
          or "absent"))
    for _, mm in ipairs(MODELS) do
        local gb, gf = #mm.gemm.bf16 > 0 and median(mm.gemm.bf16) or nil, median(mm.gemm.f32)
        print(("\n%s: %.1f GFLOP per step (matrix-multiply FLOPs, training = 3 x forward); GEMM at its %d main shapes (%.0f %% of"
               .. " its product FLOPs), FLOP-weighted: bf16 %s GFLOP/s (%s), fp32 %.1f GFLOP/s (%s)"):format(mm.name,
               mm.flops / 1e9, #mm.shapes, 100 * mm.covered, gb and ("%.1f"):format(gb) or "-", mm.libs.bf16 or "-", gf,
               mm.libs.f32 or "?"))
        local shapes = {}
        for _, s in ipairs(mm.shapes) do shapes[#shapes + 1] = ("%s%s %dx%dx%d"):format(s.ta and "T" or "N", s.tb and "T" or "N",
            s.M, s.N, s.K) end
        print("  shapes (op(A) op(B), MxNxK): " .. table.concat(shapes, ", "))
        print(("  %-22s %9s %9s %9s %10s %9s %10s %10s"):format("implementation", "bytes/s", "step s", "GFLOP/s", "% bf16 GEMM",
              "peak MiB", "/ torch", "/ autocast"))
        local tf = res[mm.kind .. "/torch/fp32"]
        local tb = res[mm.kind .. "/torch/bf16"]
        local tf_t, tb_t = tf and median(tf.steps), tb and median(tb.steps)
        for _, im in ipairs(IMPLS) do
            local r = res[mm.kind .. "/" .. im.who .. "/" .. im.precision]
            local label = im.who == "ours" and ("ours " .. im.precision)
                or (im.precision == "bf16" and "torch autocast bf16" or "torch fp32")
            if r then
                local t = median(r.steps)
                local gfs = mm.flops / t / 1e9
                print(("  %-22s %9.0f %9.3f %9.1f %10s %9.0f %10s %10s"):format(label, B * T / t, t, gfs,
                      gb and ("%.0f %%"):format(100 * gfs / gb) or "-", r.peak,
                      tf_t and ("%.2fx"):format(tf_t / t) or "-", tb_t and ("%.2fx"):format(tb_t / t) or "-"))
            else
                print(("  %-22s %9s"):format(label, im.skip and "skipped" or "failed"))
            end
        end
    end
    print("\nbytes/s: batch bytes / median step; GFLOP/s: the step's matrix-multiply FLOPs (docs/model.md's counting) / median")
    print("step; % bf16 GEMM: that over the in-run bf16 GEMM rate above; peak MiB: the process's peak resident memory (torch's")
    print("includes the interpreter and the library); / torch, / autocast: that implementation's speed over PyTorch fp32's and")
    print("autocast's. Goals (issue 18): ours bf16 >= 50 % of the bf16 GEMM rate and >= 2x autocast; peak memory no higher.")
end

if sections.generation then
    local BLT = require "blt.models.blt"
    local ByteLM = require "blt.models.bytelm"
    local patching = require "blt.patching"
    local generate = require "blt.generate"
    local data = require "blt.data"
    local PROMPT, NEW, FULL_NEW = 512, 1024, 16
    print(("\n== Generation: %d new bytes after a %d-byte prompt, greedy, one prompt at a time =="):format(NEW, PROMPT))
    -- the machine's bandwidth: a copy of 256 MiB (read + write), best of 3
    local big_a, big_b = blt.zeros({64 * 1024 * 1024}), blt.zeros({64 * 1024 * 1024})
    big_a:copy(big_b)
    local bw = 0
    for _ = 1, 3 do
        local t0 = core.now()
        big_a:copy(big_b)
        bw = math.max(bw, 2 * 4 * big_a:numel() / (core.now() - t0))
    end
    big_a:release(); big_b:release()
    print(("memory bandwidth (256 MiB copy, read + write): %.1f GB/s"):format(bw / 1e9))
    local corpus = data.open()
    local prompt = require("blt.ids").text(corpus:ids(5001, PROMPT + 64):totable()):sub(1, PROMPT)
    local em = ByteLM.new({dim = 128, layers = 2, heads = 4, window = 256, multiple_of = 128}, 2)
    -- the entropy threshold: a mean patch of 4.5 on the prompt
    local pe = require("blt.entropy").of_text(em, prompt)
    local theta = patching.calibrate {scheme = "entropy", target = 4.5, rows = {prompt}, entropies = {pe}}
    local models = {
        {"ByteLM d 256, 4 layers", ByteLM.new({dim = 256, layers = 4, heads = 4, window = 512}, 1)},
        {"BLT (bench config), space", BLT.new(config.copy(BLT.defaults), 1, {patcher = patching.patcher {scheme = "space"}})},
        {"BLT (bench config), entropy", BLT.new(config.copy(BLT.defaults), 1,
            {patcher = patching.patcher {scheme = "entropy", threshold = theta}, entropy_model = em})},
    }
    -- each model in fp32 and bf16 (generate.run's precision: weights read in bf16 by the
    -- cached step), the two interleaved round by round
    local precs = {"fp32"}
    local bf16_ok, bf16_err = pcall(core.set_precision, "bf16")
    core.set_precision(opts.precision)
    if bf16_ok then precs[2] = "bf16" else print("bf16 generation: refused here: " .. require("blt.util").message(bf16_err)) end
    print(("%-30s %-5s %10s %10s %10s %8s %12s %10s"):format("model", "prec", "cached b/s", "generating", "full b/s", "ratio",
          "MB read/byte", "% of bw"))
    for _, mm in ipairs(models) do
        local name, model = mm[1], mm[2]
        local ts, tg = {fp32 = {}, bf16 = {}}, {fp32 = {}, bf16 = {}}
        for i = 1, math.max(1, math.min(reps, 3)) do
            for _, pr in ipairs(precs) do
                local _, info = generate.run(model, prompt, NEW, {temperature = 0, eos = false, precision = pr})
                ts[pr][i] = info.bytes / info.seconds -- the prompt's steps included
                tg[pr][i] = info.bytes / (info.seconds - info.prompt_seconds)
            end
        end
        for _, pr in ipairs(precs) do
            local cached, gen_only = median(ts[pr]), median(tg[pr])
            -- full recomputation is slow: FULL_NEW bytes, timed without the prompt's single pass
            local _, finfo = generate.run(model, prompt, FULL_NEW, {temperature = 0, eos = false, cache = false, precision = pr})
            local full = finfo.bytes / finfo.seconds
            -- bytes read per generated byte: every parameter once (the BLT's global model once per
            -- patch; in bf16, 2 bytes each), and the caches (keys and values of every position a layer attends)
            local params, per_patch = 0, 0
            for _, p in ipairs(model:state_list()) do
                if p.name:match("^global%.") then per_patch = per_patch + p.tensor:numel() else params = params + p.tensor:numel() end
            end
            local function cache_bytes(blocks, dim, span) local n = 0 for _, b in ipairs(blocks) do
                n = n + 2 * dim * math.min(b.attn.window > 0 and b.attn.window or span, span) end return 4 * n end
            local span = PROMPT + NEW
            local wb = pr == "bf16" and 2 or 4
            local bytes
            if model.layers then
                bytes = wb * params + cache_bytes(model.layers, model.config.dim, span)
            else
                local mp = 4.5
                bytes = wb * params + wb * per_patch / mp + cache_bytes(model.enc_layers, model.config.dim, span)
                    + cache_bytes(model.dec_layers, model.config.dim, span)
                    + cache_bytes(model.glob_layers, model.config.global.dim, span / mp) / mp
                    + (model.entropy_model and cache_bytes(model.entropy_model.layers, model.entropy_model.config.dim, span) or 0)
            end
            print(("%-30s %-5s %10.0f %10.0f %10.1f %7.0fx %12.2f %9.0f%%"):format(name, pr, cached, gen_only, full,
                  cached / full, bytes / 1e6, 100 * bytes * gen_only / bw))
        end
    end
    print("cached: with key/value caches, the prompt's steps (one byte at a time) included; generating: the same, the")
    print("prompt's time left out; full: the whole row recomputed for each")
    print(("of %d bytes; prec: generate.run's precision (bf16: the linear layers' weights read in bf16; a BLT's entropy"):format(FULL_NEW))
    print("model stays fp32); MB read/byte: parameters (the BLT's global model once per patch, 4.5 bytes) and caches;")
    print("% of bw: that traffic at the generating rate over the measured bandwidth (over 100 %: part of it came from")
    print("the caches, not DRAM). Goals: cached >= 20x full; ByteLM >= 2,000 b/s (issue 18: in bf16).")
end

if sections.bpe then
    -- The token baseline's tokenizer on the default corpus's train split (90%): the
    -- merge loop (4,096 merges, one core: it is single-threaded), encoding, decoding.
    print("\n== byte-level BPE (core/bpe.c) on the default corpus's train split ==")
    local bpe = require "blt.bpe"
    local corpus = require("blt.data").open()
    local train_ids = corpus:ids(1, corpus:info().train)
    local tok
    local t_train = time_median(reps, function() tok = bpe.train(train_ids, {merges = 4096}) end)
    local enc
    local t_enc = time_median(reps, function() enc = tok:encode(train_ids) end)
    local text
    local t_dec = time_median(reps, function() text = tok:decode(enc) end)
    local n = train_ids:numel()
    print(("%-34s %10.3f s  (%d merges learned on %d ids)"):format("learn 4096 merges", t_train, tok.n_merges, n))
    print(("%-34s %10.3f s  (%.1f MB/s; %d tokens, %.3f ids per token)"):format("encode the train split", t_enc,
          n / t_enc / 1e6, enc:numel(), n / enc:numel()))
    print(("%-34s %10.3f s  (%.1f MB/s)"):format("decode it", t_dec, #text / t_dec / 1e6))
    corpus:close()
end

if sections.mpi then
    -- data parallel: the benchmark BLT (the blt section's config, fixed patches of 4) with its
    -- global batch on 1 rank and split over 2 ranks (one thread each), several runs of
    -- scripts/bench_mpi.lua each, the median of the runs' medians printed
    print("\n== data parallel (MPI): the benchmark BLT, global batch 8 x 512, fixed patches of 4, one thread per rank ==")
    if not core.dist_info().compiled or not core.which("mpirun") then
        print("skipped: ./blt is built without MPI or mpirun is missing (make deps installs Open MPI)")
    else
        local runs = math.max(3, math.min(reps, 5))
        local function one(np)
            local argv = np == 1 and {} or {"mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
                                             "-np", tostring(np)}
            for _, w in ipairs {arg[-1] or "./blt", "scripts/bench_mpi.lua", "reps=" .. reps} do argv[#argv + 1] = w end
            local out = capture(argv, {BLT_THREADS = "1", OMPI_ALLOW_RUN_AS_ROOT = "1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM = "1"})
            local bps, ms, pure, mb, cpu = out:match("bytes_per_s ([%d.]+) allreduce_ms ([%d.]+) pure_allreduce_ms ([%d.]+) "
                                                     .. "grad_mb ([%d.]+) cpu_s ([%d.]+)")
            if not bps then error("bench mpi: scripts/bench_mpi.lua failed:\n" .. out) end
            return tonumber(bps), tonumber(ms), tonumber(pure), tonumber(mb), tonumber(cpu)
        end
        local res = {}
        for _, np in ipairs {1, 2} do
            local b, a, p, c, mb = {}, {}, {}, {}, nil
            for i = 1, runs do b[i], a[i], p[i], mb, c[i] = one(np) end
            res[np] = {bps = median(b), ms = median(a), pure = median(p), mb = mb, cpu = median(c), all = b}
            local list = {}
            for i, v in ipairs(b) do list[i] = ("%.0f"):format(v) end
            print(("%d rank%s: %8.0f bytes/s (median of %d runs: %s); all-reduce of %.2f MB gradients: %.1f ms/step "
                   .. "in the step (waiting for the slower rank included), %.1f ms alone; %.3f CPU s/step (slowest rank)")
                  :format(np, np > 1 and "s" or " ", res[np].bps, runs, table.concat(list, " "), mb, res[np].ms, res[np].pure,
                          res[np].cpu))
        end
        print(("speed-up 2 ranks / 1 rank: %.2fx in bytes/s (goal >= 1.8x; %d cores on this machine, shared with whatever "
               .. "else runs); %.2fx in CPU time per step (each rank on a core of its own)")
              :format(res[2].bps / res[1].bps, tonumber(capture({"nproc"}):match("%d+")) or 0, res[1].cpu / res[2].cpu))
    end
end
