package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local blt = require "blt"

-- A small model's step (embedding, rmsnorm, attention, linear, cross-entropy), its
-- backward, then everything of the step dropped, 1,000 times: the pool's live bytes
-- must come back to the same value after every step, and the resident set size at
-- step 1,000 must be within 10 % of step 100.

local sanitize = os.getenv("BLT_SANITIZE") == "1"
local STEPS = 1000

local function rss_kb() return require("blt.core").rss() // 1024 end

local V, D, Hh, B, L = 64, 32, 4, 2, 70
local seed = 0
local function param(shape, scale)
    seed = seed + 1
    local p = blt.no_grad(function() return blt.scale(blt.randn(shape, seed), scale) end)
    return p:set_requires_grad()
end
local P = {
    emb = param({V, D}, 0.5), g1 = param({D}, 1), g2 = param({D}, 1),
    wq = param({D, D}, 0.2), wk = param({D, D}, 0.2), wv = param({D, D}, 0.2), wo = param({D, D}, 0.2),
    w1 = param({2 * D, D}, 0.2), b1 = param({2 * D}, 0.1), w2 = param({D, 2 * D}, 0.2), out = param({V, D}, 0.2),
}
local gen = blt.Generator(7)
local function batch()
    local ids, tg = {}, {}
    for b = 1, B do
        ids[b], tg[b] = {}, {}
        for t = 1, L do ids[b][t] = gen:integer(V) - 1; tg[b][t] = gen:integer(V) - 1 end
    end
    tg[1][1] = -100
    return blt.tensor(ids, "int32"), blt.tensor(tg, "int32")
end

local function step()
    local ids, tg = batch()
    local x = blt.embedding(P.emb, ids)
    local h = blt.rmsnorm(x, P.g1)
    local q, k, v = blt.linear(h, P.wq), blt.linear(h, P.wk), blt.linear(h, P.wv)
    q, k = blt.rope(q, Hh), blt.rope(k, Hh)
    local a = blt.attention(q, k, v, {heads = Hh, causal = true, window = 40})
    x = x + blt.linear(a, P.wo)
    local m = blt.linear(blt.gelu(blt.linear(blt.rmsnorm(x, P.g2), P.w1, P.b1)), P.w2)
    x = x + m
    local logits = blt.linear(x, P.out)
    local loss = blt.cross_entropy(logits:reshape {B * L, V}, tg:reshape {B * L})
    loss:backward()
    return loss:item()
end

local live, rss, os_allocs = {}, {}, {}
local first_loss, ok_live, bad_at = nil, true, nil
local t0 = os.clock()
for s = 1, STEPS do
    local l = step()
    first_loss = first_loss or l
    for _, p in pairs(P) do p:zero_grad() end
    collectgarbage("collect") -- drops every tensor of the step
    live[s] = blt.mem_stats().live
    if s > 1 and live[s] ~= live[s - 1] and ok_live then ok_live, bad_at = false, s end
    if s == 100 or s == STEPS then rss[s] = rss_kb(); os_allocs[s] = blt.mem_stats().os_allocs end
end
T.diag(("%d steps in %.1f s cpu; live %d bytes; RSS step 100: %d kB, step %d: %d kB"):format(
    STEPS, os.clock() - t0, live[STEPS], rss[100], STEPS, rss[STEPS]))
T.ok(first_loss > 0 and first_loss == first_loss, "the model's loss is a positive number")
T.ok(ok_live, "mem_stats().live is the same after every step",
     bad_at and ("step %d: %d bytes, step %d: %d bytes"):format(bad_at - 1, live[bad_at - 1], bad_at, live[bad_at]))
local pbytes = 0
for _, p in pairs(P) do pbytes = pbytes + 2 * 4 * p:numel() end
T.ok(live[STEPS] >= pbytes and live[STEPS] < pbytes + 64 * 1024,
     ("live bytes %d are the parameters and their gradients (%d) plus little"):format(live[STEPS], pbytes))
if sanitize then
    -- ASan's quarantine holds freed memory, so RSS says nothing there; leaks are LSan's job
    T.diag("sanitizer build: RSS and pool checks skipped")
else
    T.ok(rss[STEPS] <= rss[100] * 1.10, ("RSS at step %d within 10%% of step 100"):format(STEPS),
         ("%d kB vs %d kB"):format(rss[STEPS], rss[100]))
    T.is(os_allocs[STEPS], os_allocs[100], "steady-state steps are served by the pool (no new OS allocations)")
end

-- releasing a step's tensors explicitly frees them without the collector
do
    local before = blt.mem_stats().live
    local a = blt.randn({256, 256}, 1)
    local b = blt.exp(a)
    T.ok(blt.mem_stats().live >= before + 2 * 256 * 256 * 4, "two 256x256 tensors are live")
    a:release()
    b:release()
    T.is(blt.mem_stats().live, before, "release() returns their bytes at once")
end
T.done()
