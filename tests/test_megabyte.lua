package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- MegaByte (lua/blt/models/megabyte.lua, docs/model.md "MegaByte"):
--   1. against the PyTorch reference (scripts/reference/megabyte_ref.py): logits, loss and
--      gradients agree, and the same comparison FAILS on the reference's leaking copy
--      (a patch that sees its own bytes through the global model);
--   2. causality at every position t of rows of several patch sizes;
--   3. finite-difference gradients of every parameter of a whole tiny model;
--   4. cached generation: every step's logits equal the full forward's row, and greedy
--      output equals full recomputation;
--   5. FLOPs per byte (blt.flops) against the multiply-adds the core executes;
--   6. training, checkpoint, load, resume (bit-exact), evaluate, inspect, generate.
local T = require "tap"
local U = require "testutil"
local blt = require "blt"
local core = require "blt.core"
local json = require "blt.json"
local flops = require "blt.flops"
local models = require "blt.models"
local generate = require "blt.generate"
local gradcheck = require "gradcheck"
local ids = require "blt.ids"
local MB = require "blt.models.megabyte"

T.is(models.get("megabyte"), MB, "blt.models finds the kind megabyte by its file")

local function tiny(over)
    local m = {patch = 4, dim = 16, layers = 2, heads = 2, multiple_of = 16, global = {dim = 32, layers = 2, heads = 2, window = 0}}
    for k, v in pairs(over or {}) do
        if type(v) == "table" then for kk, vv in pairs(v) do m[k][kk] = vv end else m[k] = v end
    end
    return m
end

-- a row: BOS then bytes of a text, from offset `shift`
local TEXT = "In the beginning God created the heaven and the earth. And the earth was without form, and void."
local function text_row(n, shift)
    local r = {ids.BOS}
    for i = 1, n - 1 do r[i + 1] = ids.of_byte(TEXT:byte((i + shift - 1) % #TEXT + 1)) end
    return r
end

local max_err = U.max_err

-- ---- 1. the reference, and its leaking copy ----
do
    local DIR = os.getenv("BLT_REF_FIXTURES") or (arg[0]:gsub("[^/]*$", "") .. "fixtures/")
    local LOGIT_TOL, LOSS_TOL, GRAD_TOL = 1e-4, 1e-5, 1e-4 -- tests/test_reference.lua's
    local function compare(name)
        local path = DIR .. name .. ".h5"
        local f = blt.h5_open(path)
        local cfg = json.decode(f:attr("config"))
        local model = MB.new(cfg.model, 1)
        local params = {}
        for _, p in ipairs(f:list("/params")) do params[p] = f:read("/params/" .. p) end
        local okl, err = pcall(models.load_into, model, {params = params}, {path = path})
        T.ok(okl, name .. ": the fixture's weights load into our model (names and shapes)", err)
        local rows = f:read("/rows")
        local logits = core.no_grad(function() return model:forward(core.narrow(rows, 2, 1, rows:size(2) - 1)) end)
        local r = {logit = max_err(logits, f:read("/logits"))}
        local loss = model:loss(rows)
        r.loss = math.abs(loss:item() - f:read("/loss"))
        loss:backward()
        r.grad = 0.0
        for _, p in ipairs(model:parameter_list()) do
            local e, m = max_err(p.tensor.grad, f:read("/grads/" .. p.name))
            r.grad = math.max(r.grad, e / math.max(m, 1e-3))
        end
        f:close()
        T.diag(("%s: max abs logit error %.3g, loss error %.3g, worst relative gradient error %.3g")
               :format(name, r.logit, r.loss, r.grad))
        return r, cfg
    end
    local r, cfg = compare("ref_megabyte")
    T.ok(cfg.model.patch > 1 and r.logit <= LOGIT_TOL, "reference: logits within 1e-4", r.logit)
    T.ok(r.loss <= LOSS_TOL, "reference: loss within 1e-5", r.loss)
    T.ok(r.grad <= GRAD_TOL, "reference: every parameter's gradient within 1e-4 of its largest", r.grad)
    local leak, lcfg = compare("ref_megabyte_leak")
    T.ok(lcfg.leak == true, "the second fixture is the reference's leaking copy")
    T.ok(leak.logit > LOGIT_TOL and leak.loss > LOSS_TOL,
         ("the same comparison fails on the leaking copy (logit error %.3g, loss error %.3g)"):format(leak.logit, leak.loss))
end

-- ---- 2. causality: token t+1 changes no output at positions <= t ----
do
    local cases = 0
    for _, P in ipairs {1, 3, 4} do
        local model = MB.new(tiny {patch = P, global = {window = 2}}, 5)
        local TT = 14 -- not a multiple of 3 or 4: the padded last patch too
        local row = text_row(TT, 0)
        local base = core.no_grad(function() return model:forward(blt.tensor({row}, "int32")):totable()[1] end)
        local tol = U.f32_tol(U.f32_terms(model), 1)
        local worst, moved = 0.0, math.huge
        for t = 1, TT - 1 do -- change the token at position t (0-based), outputs 0..t-1 must not move
            local r2 = {table.unpack(row)}
            r2[t + 1] = r2[t + 1] == ids.of_byte(65) and ids.of_byte(66) or ids.of_byte(65)
            local out = core.no_grad(function() return model:forward(blt.tensor({r2}, "int32")):totable()[1] end)
            for s = 1, t do for v = 1, ids.VOCAB do worst = math.max(worst, math.abs(out[s][v] - base[s][v])) end end
            local after = 0.0
            for s = t + 1, TT do for v = 1, ids.VOCAB do after = math.max(after, math.abs(out[s][v] - base[s][v])) end end
            moved = math.min(moved, after)
            cases = cases + 1
        end
        T.ok(worst <= tol, ("P=%d: every output at positions <= t unchanged when token t+1 changes, t = 0..%d (worst %.2g, bound %.2g)")
             :format(P, TT - 2, worst, tol))
        T.ok(moved > 100 * tol, ("P=%d: the output at position t+1 moves each time (at least %.2g)"):format(P, moved))
    end
    T.ok(cases >= 39, ("causality: %d generated cases (positions x patch sizes)"):format(cases))
end

-- ---- 3. finite-difference gradients of a whole tiny model ----
do
    local model = MB.new(tiny {patch = 3, layers = 1, global = {layers = 1, window = 2}}, 7)
    local x = blt.tensor({text_row(11, 2), text_row(11, 9)}, "int32")
    local params = {}
    for _, p in ipairs(model:parameter_list()) do params[#params + 1] = p.tensor end
    local err, where = gradcheck.check(function() return model:forward(x) end, params, {max = 4, h = 1e-2})
    T.ok(err < 5e-3, ("finite-difference gradients of every parameter (%d tensors), worst %.2g"):format(#params, err), where)
end

-- ---- 4. cached generation = full recomputation ----
do
    for _, P in ipairs {1, 3, 4} do
        local model = MB.new(tiny {patch = P, global = {window = 3}}, 11)
        local row = text_row(19, 4)
        local full = core.no_grad(function() return model:forward(blt.tensor({row}, "int32")) end)
        local st = model:start()
        local steps = {}
        for i, id in ipairs(row) do steps[i] = model:step(st, id) end
        model:stop(st)
        local worst = 0.0
        for i = 1, #row do worst = math.max(worst, (max_err(steps[i], core.narrow(full, 2, i, 1)))) end
        local tol = U.f32_tol(U.f32_terms(model), 1)
        T.ok(worst <= tol, ("P=%d: each of %d steps' logits equal the full forward's row (worst %.2g, bound %.2g)")
             :format(P, #row, worst, tol))
        local a = generate.run(model, "And God said", 23, {temperature = 0, cache = true})
        local b = generate.run(model, "And God said", 23, {temperature = 0, cache = false})
        T.ok(a == b and #a > 0, ("P=%d: greedy generation with caches equals full recomputation (%d bytes)"):format(P, #a))
    end
end

-- ---- 5. FLOPs per byte against executed multiply-adds ----
do
    local TOL = 0.02
    local function rel(got, want)
        if want == 0 then return got == 0 and 0 or math.huge end
        return math.abs(got - want) / want
    end
    local function diff(a, b) return {matmul = b.matmul - a.matmul, attention_useful = b.attention_useful - a.attention_useful} end
    local cases = 0
    for _, c in ipairs {{name = "P4 full global", m = tiny {patch = 4}, len = 64},
                        {name = "P1", m = tiny {patch = 1, layers = 1}, len = 24},
                        {name = "P6 global window 2", m = tiny {patch = 6, global = {window = 2, layers = 1}}, len = 72}} do
        local model = MB.new(c.m, 3)
        local acc = {}
        local function wrap(mod, comp)
            acc[comp] = acc[comp] or {matmul = 0, attention_useful = 0}
            local orig = mod.forward
            mod.forward = function(self, ...)
                local before = core.mac_counter()
                local out = orig(self, ...)
                local d = diff(before, core.mac_counter())
                for k, v in pairs(d) do acc[comp][k] = acc[comp][k] + v end
                return out
            end
        end
        wrap(model.in_proj, "global"); wrap(model.out_proj, "global")
        for _, l in ipairs(model.g_layers) do wrap(l, "global") end
        for _, l in ipairs(model.l_layers) do wrap(l, "local") end
        wrap(model.head, "head")
        local rows = {}
        for b = 1, 2 do rows[b] = text_row(c.len, 7 * b) end
        local x = blt.tensor(rows, "int32")
        local bytes = 2 * c.len
        local f = flops.of({kind = "megabyte", model = c.m}, {seq_len = c.len})
        core.mac_counter_reset()
        core.no_grad(function() return model:forward(x) end)
        for _, comp in ipairs(f.components) do
            local got = acc[comp]
            local want_l, want_a = f.linear[comp] / 2 * bytes, f.attention[comp] / 2 * bytes
            T.ok(rel(got.matmul, want_l) <= TOL, ("%s: %s linear within 2%% (executed %d, formula %.1f)")
                 :format(c.name, comp, got.matmul, want_l))
            if want_a > 0 or got.attention_useful > 0 then
                T.ok(rel(got.attention_useful, want_a) <= TOL, ("%s: %s attention pairs within 2%% (executed %d, formula %.1f)")
                     :format(c.name, comp, got.attention_useful, want_a))
            end
            cases = cases + 1
        end
        core.mac_counter_reset()
        model:loss(core.concat({x, core.narrow(x, 2, 1, 1)}, 2), "sum"):backward()
        local cnt = core.mac_counter()
        T.ok(rel(cnt.matmul, 3 * f.linear.total / 2 * bytes) <= TOL, ("%s: forward+backward linear = 3 x forward (%d vs %.1f)")
             :format(c.name, cnt.matmul, 3 * f.linear.total / 2 * bytes))
        T.ok(rel(cnt.attention_useful, 3.5 * f.attention.total / 2 * bytes) <= TOL,
             ("%s: forward+backward attention pairs = 3.5 x forward (%d vs %.1f)")
             :format(c.name, cnt.attention_useful, 3.5 * f.attention.total / 2 * bytes))
        T.ok(rel(f.training.total, 3 * f.inference.total) < 1e-12, c.name .. ": training = 3 x inference")
    end
    T.ok(cases >= 9, ("FLOPs: %d generated cases (configs x components)"):format(cases))
    local a = flops.of({kind = "megabyte", model = {patch = 4}}, {seq_len = 512})
    local b = flops.of({kind = "megabyte", model = {patch = 8}}, {seq_len = 512})
    T.ok(b.linear["local"] == a.linear["local"] and b.linear.global < a.linear.global,
         "a larger patch makes the global model cheaper per byte, the local one's linear maps no dearer")
end

-- ---- 6. training, checkpoints, resume, and the scripts that read a checkpoint ----
do
    local bin = os.getenv("BLT_BIN") or "./blt"
    local dir = U.tmpdir()
    local corpus = U.corpus(dir .. "/corpus.txt", 60000)
    local base = table.concat({"model.patch=4", "model.dim=16", "model.layers=1", "model.heads=2", "model.multiple_of=16",
        "model.global.dim=32", "model.global.layers=1", "model.global.heads=2", "train.batch=2", "train.seq_len=32",
        "train.steps=8", "train.warmup=2", "train.threads=1", "eval.every=0", "eval.final_max_bytes=256",
        "out.checkpoint_every=1", "out.plot=false", "train.log_every=1", "data.path=" .. U.q(corpus),
        "out.dir=" .. U.q(dir)}, " ")
    local function train(args) return U.sh(bin .. " experiments/train_megabyte.lua " .. base .. " " .. args) end
    local rc, out = train("out.name=full")
    T.ok(rc == 0, "train_megabyte: 8 steps", out)
    rc, out = train("out.name=split train.stop_at=3")
    T.ok(rc == 0, "train_megabyte: stopped after 3 steps", out)
    rc, out = U.sh(bin .. " experiments/train_megabyte.lua --resume " .. U.q(dir .. "/split/checkpoint.h5"))
    T.ok(rc == 0 and out:find("resumed at step 3", 1, true), "train_megabyte: resumed at step 3", out)
    local checkpoint = require "blt.checkpoint"
    local okf, a = pcall(checkpoint.load, dir .. "/full/checkpoint.h5")
    local oks, b = pcall(checkpoint.load, dir .. "/split/checkpoint.h5")
    local same, why, n = okf and oks, okf and oks and "" or "a checkpoint does not load", 0
    if same then
        for name, t in pairs(a.params) do
            n = n + 1
            local u = b.params[name]
            local x, y = T.flatten(t:totable()), u and T.flatten(u:totable()) or {}
            for i = 1, #x do
                if x[i] ~= y[i] then same, why = false, ("%s[%d]: %.9g vs %.9g"):format(name, i, x[i], tostring(y[i])) break end
            end
        end
    end
    T.ok(same and n == #MB.new(a and a.config and a.config.model or tiny(), 1):parameter_list() and a.step == 8 and b.step == 8,
         ("resume: every one of %d parameters bit-identical after 8 steps in one go and 3 + 5 resumed"):format(n), why)
    T.is(okf and a.config.kind, "megabyte", "the checkpoint records kind = megabyte")
    local okm, model = pcall(models.load, dir .. "/full/checkpoint.h5")
    T.ok(okm and getmetatable(model) == MB, "models.load rebuilds a MegaByte from its checkpoint", not okm and model or nil)
    if okm then
        local x = blt.tensor({text_row(33, 1)}, "int32")
        local l1 = model:loss(x):item()
        local m2 = MB.new(a.config.model, 99)
        models.load_into(m2, a)
        T.is(m2:loss(x):item(), l1, "a model built afresh and loaded from the checkpoint gives the same loss, bit for bit")
    end
    rc, out = U.sh(bin .. " scripts/evaluate.lua model=" .. U.q(dir .. "/full/checkpoint.h5") .. " max_bytes=512 -- " .. U.q(corpus))
    T.ok(rc == 0 and out:find("megabyte", 1, true) and out:find("bits/byte", 1, true), "evaluate.lua reads the checkpoint", out)
    rc, out = U.sh(bin .. " scripts/inspect.lua " .. U.q(dir .. "/full/checkpoint.h5"))
    T.ok(rc == 0 and out:find("kind megabyte", 1, true) and out:find("model.patch=4", 1, true), "inspect.lua shows its kind and config", out)
    rc, out = U.sh(bin .. " scripts/generate.lua model=" .. U.q(dir .. "/full/checkpoint.h5") .. " n=20 temperature=0 -- In")
    T.ok(rc == 0 and #out > 0, "generate.lua samples from it", out)
    -- the comparisons: plan=true prints the points and trains nothing
    rc, out = U.sh(("%s experiments/compare_patching.lua budget=smoke schemes=fixed,megabyte target=6 plan=true data.path=%s out=%s")
                   :format(bin, U.q(corpus), U.q(dir .. "/cmp")))
    local mb_steps, fx_steps = out:match("plan: megabyte%-s1%s+%S+%s+(%d+) steps"), out:match("plan: fixed%-s1%s+%S+%s+(%d+) steps")
    T.ok(rc == 0 and mb_steps and fx_steps and not U.read(dir .. "/cmp/megabyte-s1/config.json"),
         ("compare_patching plan=true: a row megabyte (%s steps beside fixed's %s), nothing trained"):format(mb_steps, fx_steps), out)
    rc, out = U.sh(("%s experiments/scaling.lua budget=smoke schemes=megabyte:8,megabyte sizes=32x1,64x2 plan=true data.path=%s out=%s")
                   :format(bin, U.q(corpus), U.q(dir .. "/sc")))
    local found = 0
    for _, id in ipairs {"co-megabyte-p8-32x1-s1", "co-megabyte-p8-64x2-s1", "co-megabyte-p4-32x1-s1", "co-megabyte-p4-64x2-s1"} do
        if out:find("plan: " .. id, 1, true) then found = found + 1 end
    end
    T.ok(rc == 0 and found == 4 and out:find("plan: fi%-megabyte%-p8%-%d+x1%-s1"),
         "scaling plan=true: megabyte:P at every global size, and in the fixed-inference study", out)
    rc, out = train("out.name=bad model.heads=3")
    T.ok(rc == 2 and out:find("model.heads", 1, true), "a shape that does not fit is a config error naming the key (status 2)", out)
    U.cleanup(dir)
end

T.done()
