package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- SpaceByte (lua/blt/models/spacebyte.lua, docs/model.md "SpaceByte"): the model against
-- the PyTorch reference (and a broken reference that must NOT match), causality, a
-- finite-difference gradient of a whole tiny model, cached generation against full
-- recomputation, FLOPs against executed multiply-adds, checkpoint and exact resume.
local T = require "tap"
local U = require "testutil"
local blt = require "blt"
local core = require "blt.core"
local json = require "blt.json"
local ids = require "blt.ids"
local models = require "blt.models"
local flops = require "blt.flops"
local checkpoint = require "blt.checkpoint"
local gradcheck = require "gradcheck"
local SB = require "blt.models.spacebyte"

local function copy(t)
    local o = {}
    for k, v in pairs(t) do o[k] = type(v) == "table" and copy(v) or v end
    return o
end
-- a tiny config over the defaults; over: values to change (global as a table)
local function tiny(over)
    local m = copy(SB.defaults)
    m.dim, m.heads, m.window, m.initial_layers, m.final_layers, m.multiple_of = 16, 2, 8, 1, 1, 16
    m.global = {dim = 32, layers = 2, heads = 2, window = 0, cap = 6}
    for k, v in pairs(over or {}) do
        if type(v) == "table" then for kk, vv in pairs(v) do m[k][kk] = vv end else m[k] = v end
    end
    return m
end

local max_err = U.max_err

-- Another path (cached steps, a changed boundary count and so other product shapes)
-- adds the same terms in another order: logits agree within f32_tol(f32_terms, max
-- |logit|) (testutil), about 1e-4 for these tiny models; a leak of the future or a
-- wrong cache moves them by O(0.1).
local function logit_tol(model, rows)
    local m = 0
    for _, r in ipairs(rows) do for _, x in ipairs(r) do m = math.max(m, math.abs(x)) end end
    return U.f32_tol(U.f32_terms(model), m)
end

local TEXTS = {"In the beginning God created the heaven and the earth. And the earth was without form, and void;",
               "ok.  a=1, b=[2,3]... \"fin\" \xc3\xa9t\xc3\xa9! -- done (or not)? yes; no: maybe."}
local function row_of(s, n) local r = ids.row(s); return {table.unpack(r, 1, n)} end

-- ---- 1. the reference (scripts/reference/spacebyte_ref.py), and its broken copy ----
-- The broken fixture has the same weights and rows, its boundaries one byte late: the
-- same comparison must fail on it, so the comparison can see a boundary rule off by one.
local LOGIT_TOL, LOSS_TOL, GRAD_TOL = 1e-4, 1e-5, 1e-4
local DIR = arg[0]:gsub("[^/]*$", "") .. "fixtures/"
local function compare(name)
    local path = DIR .. name .. ".h5"
    local f = blt.h5_open(path)
    local cfg = json.decode(f:attr("config"))
    local model = SB.new(cfg.model, 1)
    local params = {}
    for _, p in ipairs(f:list("/params")) do params[p] = f:read("/params/" .. p) end
    local okl, err = pcall(models.load_into, model, {params = params}, {path = path})
    T.ok(okl, name .. ": the fixture's weights load into our model (names and shapes)", err)
    local rows = f:read("/rows")
    local n = rows:size(2)
    local inputs = core.narrow(rows, 2, 1, n - 1)
    local p = model:prepare(inputs)
    local want = f:read("/positions"):totable()
    local same_pos = true
    for b = 1, #want do
        for j = 1, #want[b] do
            local w = want[b][j] >= 0 and want[b][j] or nil
            if p.positions[b][j] ~= w then same_pos = false end
        end
        if #p.positions[b] > #want[b] then same_pos = false end
    end
    local le = max_err(core.no_grad(function() return model:forward(inputs) end), f:read("/logits"))
    local loss = model:loss(rows)
    local lerr = math.abs(loss:item() - f:read("/loss"))
    loss:backward()
    local worst = 0.0
    for _, q in ipairs(model:parameter_list()) do
        local e, m = max_err(q.tensor.grad, f:read("/grads/" .. q.name))
        worst = math.max(worst, e / math.max(m, 1e-3))
    end
    f:close()
    T.diag(("%s: logits %.3g, loss %.3g, worst relative gradient error %.3g"):format(name, le, lerr, worst))
    return same_pos, le <= LOGIT_TOL and lerr <= LOSS_TOL and worst <= GRAD_TOL, le, lerr, worst
end
do
    local pos, ok, le, lerr, g = compare("ref_spacebyte")
    T.ok(pos, "reference: boundary positions equal the reference's (the cap reached in one row, not in the other)")
    T.ok(ok, ("reference: logits (%.2g), loss (%.2g) and gradients (%.2g) agree within %g, %g, %g")
         :format(le, lerr, g, LOGIT_TOL, LOSS_TOL, GRAD_TOL))
    pos, ok, le = compare("ref_spacebyte_broken")
    T.ok(not pos, "broken reference (boundaries one byte late): its positions differ from ours")
    T.ok(not ok, ("broken reference: the same comparison fails (logit error %.2g > %g)"):format(le, LOGIT_TOL))
end

-- ---- 2. the boundary rule: the step's two-id rule equals the row's, on generated rows ----
do
    local bad, n = 0, 0
    -- spaces, punctuation, a newline, letters, a digit, UTF-8 lead and continuation bytes, EOS
    local alphabet = {32, 32, 46, 44, 10, 97, 98, 65, 48, 0xC3, 0xA9, 0x80, "EOS"}
    for trial = 1, 40 do
        local row = {ids.BOS}
        for i = 1, 30 do
            local k = (trial * 31 + i * 17 + (i * i) % 7) % #alphabet + 1
            row[#row + 1] = alphabet[k] == "EOS" and ids.EOS or alphabet[k] + 4
        end
        local want = SB.positions(row, 1000)
        local got, prev = {}, nil
        for t = 0, #row - 1 do
            if SB.is_boundary(prev, row[t + 1]) then got[#got + 1] = t end
            prev = row[t + 1]
        end
        n = n + 1
        if table.concat(got, ",") ~= table.concat(want, ",") then bad = bad + 1 end
    end
    T.ok(n >= 40 and bad == 0, ("boundaries: the step's rule equals the row's on %d generated rows (%d differ)"):format(n, bad))
end

-- ---- 3. causality: perturbing byte t+1 leaves logits <= t unchanged ----
do
    local model = SB.new(tiny {global = {cap = 5}}, 7)
    local base = row_of(TEXTS[1], 40)
    local full = core.no_grad(function() return model:forward(core.tensor({base}, "int32")) end):totable()[1]
    local worst, cases = 0.0, 0
    -- every position, each replaced by a space, a letter and EOS (boundary counts change)
    for t = 1, #base - 2 do
        for _, v in ipairs {32 + 4, 97 + 4, ids.EOS} do
            local r = {table.unpack(base)}
            r[t + 2] = v -- id t + 1 (0-based)
            local out = core.no_grad(function() return model:forward(core.tensor({r}, "int32")) end):totable()[1]
            for s = 1, t + 1 do
                for k = 1, ids.VOCAB do worst = math.max(worst, math.abs(out[s][k] - full[s][k])) end
            end
            cases = cases + 1
        end
    end
    local tol = logit_tol(model, full)
    T.ok(cases >= 100 and worst <= tol,
         ("causality: %d perturbations of byte t+1, worst change of a logit at <= t %.2g (float32 bound %.2g)")
         :format(cases, worst, tol))
end

-- ---- 4. finite-difference gradients of a whole tiny model ----
do
    local m = tiny {dim = 8, heads = 2, multiple_of = 8, window = 4, global = {dim = 16, layers = 1, heads = 2, cap = 3}}
    local model = SB.new(m, 11)
    local rows = core.tensor({row_of("ab cd, ef. gh ij", 14), row_of("x y z w v u t s", 14)}, "int32")
    local params, names = {}, {}
    for _, p in ipairs(model:parameter_list()) do params[#params + 1] = p.tensor; names[#names + 1] = p.name end
    local err, where = gradcheck.check(function() return model:loss(rows) end, params, {max = 6})
    T.ok(err <= 2e-3, ("finite differences: every parameter of a tiny SpaceByte (%d tensors), worst error %.3g %s")
         :format(#params, err, where or ""))
end

-- ---- 5. cached generation equals full recomputation ----
do
    local generate = require "blt.generate"
    local m = tiny {global = {cap = 4, window = 2}}
    local model = SB.new(m, 13)
    -- the steps' logits against the full forward's rows, past the cap and the windows
    local row = row_of(TEXTS[2], 60)
    local full = core.no_grad(function() return model:forward(core.tensor({row}, "int32")) end):totable()[1]
    local st, worst = model:start(), 0.0
    for i, id in ipairs(row) do
        local l = model:step(st, id):totable()[1][1]
        for k = 1, ids.VOCAB do worst = math.max(worst, math.abs(l[k] - full[i][k])) end
    end
    model:stop(st)
    local tol = logit_tol(model, full)
    T.ok(worst <= tol, ("cached steps equal the full forward over %d bytes (cap 4 passed), worst %.2g (float32 bound %.2g)")
         :format(#row, worst, tol))
    -- a prompt read in chunks (model:prefill), then steps: the full forward's rows
    local saved = SB.PREFILL_CHUNK
    for _, chunk in ipairs {7, 512} do
        for _, n in ipairs {1, 9, 33} do
            SB.PREFILL_CHUNK = chunk
            st, worst = model:start(), 0.0
            local l = model:prefill(st, {table.unpack(row, 1, n)}):totable()[1][1]
            for k = 1, ids.VOCAB do worst = math.max(worst, math.abs(l[k] - full[n][k])) end
            for i = n + 1, #row do
                l = model:step(st, row[i]):totable()[1][1]
                for k = 1, ids.VOCAB do worst = math.max(worst, math.abs(l[k] - full[i][k])) end
            end
            model:stop(st)
            T.ok(worst <= tol, ("a %d-byte prompt read in chunks of %d, then steps, equal the full forward (worst %.2g)")
                 :format(n, chunk, worst))
        end
    end
    SB.PREFILL_CHUNK = saved
    local a = generate.run(model, "And the earth, was", 40, {temperature = 0, cache = true, eos = false})
    local b = generate.run(model, "And the earth, was", 40, {temperature = 0, cache = false, eos = false})
    T.ok(#a == 40 and a == b, "greedy generation: cached output equals full recomputation", ("%q vs %q"):format(a, b))
end

-- ---- 6. FLOPs per byte against executed multiply-adds ----
local function rel(got, want) return want == 0 and (got == 0 and 0 or math.huge) or math.abs(got - want) / want end
local function counter() return core.mac_counter() end
local function check_flops(name, m, texts, len)
    local model = SB.new(m, 3)
    local acc = {}
    local function wrap(mod, comp)
        acc[comp] = acc[comp] or {matmul = 0, attention_useful = 0}
        local orig = mod.forward
        mod.forward = function(self, ...)
            local c0 = counter()
            local out = orig(self, ...)
            local c1 = counter()
            acc[comp].matmul = acc[comp].matmul + c1.matmul - c0.matmul
            acc[comp].attention_useful = acc[comp].attention_useful + c1.attention_useful - c0.attention_useful
            return out
        end
    end
    for _, comp in ipairs {"initial", "global", "final"} do for _, l in ipairs(model[comp]) do wrap(l, comp) end end
    wrap(model.head, "head")
    local rows = {}
    for b, s in ipairs(texts) do rows[b] = row_of(s:rep(12), len) end
    local inputs = core.tensor(rows, "int32")
    local B = #rows
    local p = model:prepare(inputs)
    -- the batch's positions per global position it runs (its padded count G)
    local f = flops.of({kind = "spacebyte", model = m}, {seq_len = len, mean_patch = len / p.G})
    core.mac_counter_reset()
    core.no_grad(function() return model:forward(inputs, p) end)
    local bad = {}
    for _, comp in ipairs(f.components) do
        local got = acc[comp] or {matmul = 0, attention_useful = 0}
        local wl, wa = f.linear[comp] / 2 * B * len, f.attention[comp] / 2 * B * len
        if rel(got.matmul, wl) > 0.02 then bad[#bad + 1] = ("%s linear %d vs %.1f"):format(comp, got.matmul, wl) end
        if rel(got.attention_useful, wa) > 0.02 then
            bad[#bad + 1] = ("%s attention %d vs %.1f"):format(comp, got.attention_useful, wa)
        end
    end
    T.ok(#bad == 0, ("FLOPs %s (G %d, cap %d): every component's forward within 2%%"):format(name, p.G, m.global.cap),
         table.concat(bad, "; "))
    -- forward + backward: linear 3 x forward, attention pairs 3.5 x (docs/flops.md)
    core.mac_counter_reset()
    local loss = core.cross_entropy(model:forward(inputs, p), inputs, {reduction = "sum"})
    loss:backward()
    local c = counter()
    local tl, ta = 3 * f.linear.total / 2 * B * len, 3.5 * f.attention.total / 2 * B * len
    T.ok(rel(c.matmul, tl) <= 0.02 and rel(c.attention_useful, ta) <= 0.02,
         ("FLOPs %s: forward+backward linear %d vs %.1f, attention %d vs %.1f"):format(name, c.matmul, tl, c.attention_useful, ta))
    -- the training figure is 3 x forward
    T.ok(math.abs(f.training.total - 3 * f.forward.total) <= 1e-9 * f.training.total and f.inference.total == f.forward.total,
         ("FLOPs %s: training = 3 x inference"):format(name))
end
check_flops("same counts", tiny {global = {cap = 100}}, {"ab cd ef gh ", "ij kl mn op "}, 65)
check_flops("global window, capped", tiny {window = 16, global = {window = 3, cap = 7}}, {"a b c d e f ", "gh ij kl "}, 80)
check_flops("one row, uneven", tiny {initial_layers = 2, final_layers = 0, global = {cap = 50}}, {TEXTS[2]}, 70)

-- ---- 7. a run: checkpoint, load, evaluate, exact resume ----
do
    local dir = U.tmpdir()
    local bin = os.getenv("BLT_BIN") or "./blt"
    U.corpus(dir .. "/corpus.txt", 60000)
    local base = table.concat({bin, "experiments/train_spacebyte.lua", "model.dim=16", "model.heads=2",
        "model.multiple_of=16", "model.window=16", "model.initial_layers=1", "model.final_layers=1",
        "model.global.dim=32", "model.global.layers=1", "model.global.heads=2", "model.global.cap=12",
        "train.batch=2", "train.seq_len=48", "train.steps=6", "train.warmup=2", "train.threads=1", "eval.every=0",
        "eval.final_max_bytes=256", "out.checkpoint_every=1", "out.plot=false", "train.log_every=1",
        "data.path=" .. U.q(dir .. "/corpus.txt"), "out.dir=" .. U.q(dir)}, " ")
    local rc1, out1 = U.sh(base .. " out.name=full")
    local rc2, out2 = U.sh(base .. " out.name=split train.stop_at=3")
    local rc3, out3 = U.sh(bin .. " experiments/train_spacebyte.lua --resume " .. U.q(dir .. "/split/checkpoint.h5"))
    T.ok(rc1 == 0 and rc2 == 0 and rc3 == 0 and out3:find("resumed at step 3"), "6 steps in one go; 3, then a resume",
         out1 .. out2 .. out3)
    local a, b = checkpoint.load(dir .. "/full/checkpoint.h5"), checkpoint.load(dir .. "/split/checkpoint.h5")
    local diff, n = nil, 0
    for name, t in pairs(a.params) do
        n = n + 1
        local u = b.params[name]
        if not u or table.concat(t:reshape({-1}):totable(), ",") ~= table.concat(u:reshape({-1}):totable(), ",") then
            diff = diff or name
        end
    end
    T.ok(n > 0 and diff == nil and a.step == 6 and b.step == 6,
         ("resume: the %d parameter tensors after 6 steps are bit-identical (one go vs 3 + resume 3)"):format(n), diff)
    local ok, model = pcall(models.load, dir .. "/full/checkpoint.h5")
    T.ok(ok and model.kind == "spacebyte", "blt.models.load rebuilds it from its checkpoint", tostring(model))
    if ok then
        local rows = core.tensor({row_of(TEXTS[1], 30)}, "int32")
        local nats, k = models.nats(model, rows)
        T.ok(k == 29 and nats > 0 and nats < math.huge, ("its loss is finite (%.3f nats over %d bytes)"):format(nats, k))
    end
    local rc, out = U.sh(bin .. " scripts/inspect.lua " .. U.q(dir .. "/full/checkpoint.h5"))
    T.ok(rc == 0 and out:find("kind spacebyte", 1, true), "inspect names the kind", out)
    rc, out = U.sh(bin .. " scripts/evaluate.lua model=" .. U.q(dir .. "/full/checkpoint.h5") .. " " .. U.q(dir .. "/corpus.txt"))
    T.ok(rc == 0 and out:find("bits/byte", 1, true), "evaluate reports bits per byte", out)
    U.cleanup(dir)
end

T.done()
