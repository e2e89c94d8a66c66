-- blt.train: the training loop shared by the experiment scripts.
--
--   train.run{name=, defaults=, docs=, args=arg, build=function(cfg) return model end}
-- The model needs :loss(rows, "mean"|"sum") and :parameter_list(). The config has
-- sections model, train, data, eval (see train.defaults and train.docs for the
-- last three); the script adds its model section. Command-line overrides as
-- key=value (config.lua); --resume PATH continues a run from its checkpoint.
local blt = require "blt"
local core = require "blt.core"
local config = require "blt.config"
local optim = require "blt.optim"
local progress = require "blt.progress"

local train = {}

train.defaults = {
    train = {
        steps = 300,            -- optimiser steps
        batch = 16,             -- rows per step
        seq_len = 256,          -- bytes per row (a row is [BOS, seq_len bytes])
        lr = 3e-3,              -- peak learning rate
        warmup = 30,            -- linear warmup steps
        schedule = "warmup_cosine",
        min_lr_ratio = 0.1,     -- cosine floor, as a fraction of lr
        weight_decay = 0.1,
        beta1 = 0.9,
        beta2 = 0.95,
        eps = 1e-8,
        grad_clip = 1.0,        -- global gradient-norm clip (0: off)
        seed = 1,               -- model init and data sampling
        threads = 0,            -- 0: BLT_THREADS or all cores
        time_limit = 0,         -- seconds; stop early when reached (0: none)
        log_every = 10,         -- steps between metric rows
        stop_at = 0,            -- stop after this step with a checkpoint, as if interrupted (0: no)
    },
    data = {
        path = config.OPTIONAL, -- file or folder; unset: the default corpus
        val_fraction = 0.1,     -- last fraction of the byte stream held out
    },
    eval = {
        every = 100,            -- steps between validation runs (0: only at the end)
        max_bytes = 65536,      -- validation bytes per periodic run (0: all)
        final_max_bytes = 0,    -- validation bytes for the final report (0: all)
        batch = 16,
    },
    out = {
        dir = "runs",           -- run folder root
        name = config.OPTIONAL, -- run folder name; unset: <script>-<seed>
        checkpoint_every = 100, -- steps between checkpoints (0: only at the end and on SIGINT/SIGTERM)
        metrics_flush = 10,     -- metric rows between flushes of metrics.h5
        plot = true,            -- write loss.png at the end
    },
}

train.docs = {
    train = {
        steps = "optimiser steps", batch = "rows per step", seq_len = "bytes per row (row = [BOS, bytes])",
        lr = "peak learning rate", warmup = "linear warmup steps",
        schedule = "warmup_cosine | constant | linear", min_lr_ratio = "final lr as a fraction of lr",
        weight_decay = "AdamW decoupled weight decay (matrices only)", beta1 = "AdamW beta1", beta2 = "AdamW beta2",
        eps = "AdamW epsilon", grad_clip = "global gradient-norm clip (0: off)", seed = "init and sampling seed",
        threads = "threads (0: BLT_THREADS or all cores)", time_limit = "stop after this many seconds (0: none)",
        log_every = "steps between metric rows", stop_at = "stop after this step with a checkpoint (0: no)",
    },
    data = {path = "corpus file or folder (unset: the default corpus)", val_fraction = "held-out fraction"},
    eval = {
        every = "steps between validation runs (0: end only)", max_bytes = "validation bytes per periodic run (0: all)",
        final_max_bytes = "validation bytes for the final report (0: all)", batch = "rows per validation batch",
    },
    out = {dir = "run folder root", name = "run folder name (unset: <script>-<seed>)",
           checkpoint_every = "steps between checkpoints (0: end and SIGINT/SIGTERM only)",
           metrics_flush = "metric rows between flushes of metrics.h5", plot = "write loss.png at the end"},
}

local LN2 = math.log(2)

-- Bits per byte over validation windows (BLT-SPEC section 7): summed nats over
-- all non-pad targets, divided by ln 2 times their count. Returns bpb, bytes.
function train.evaluate(model, corpus, o)
    local nats, count = 0.0, 0
    core.no_grad(function()
        for rows in corpus:val_windows {seq_len = o.seq_len, batch = o.batch} do
            local n, sum = core.scope(function()
                local k = core.nn_count_ne(core.narrow(rows, 2, 2, rows:size(2) - 1), 0)
                return k, k > 0 and model:loss(rows, "sum"):item() or 0
            end)
            nats, count = nats + sum, count + n
            if o.max_bytes and o.max_bytes > 0 and count >= o.max_bytes then break end
        end
    end)
    if count == 0 then return math.huge, 0 end
    return nats / (LN2 * count), count
end

local function merged_defaults(model_defaults, extra)
    local d = config.copy(train.defaults)
    d.model = config.copy(model_defaults)
    for k, v in pairs(extra or {}) do d[k] = config.copy(v) end
    return d
end

local function param_table(model)
    local t = {}
    for _, p in ipairs(model:parameter_list()) do t[p.name] = p.tensor end
    return t
end

-- Everything needed to continue exactly: parameters, optimiser moments and step,
-- the sampler's RNG state, the step, the config.
local function save_checkpoint(path, cfg, step, model, opt, sampler)
    local checkpoint = require "blt.checkpoint"
    local st = opt:state()
    checkpoint.save(path, {config = cfg, step = step, params = param_table(model),
                           optim = {step = st.step, m = st.m, v = st.v, kind = st.kind},
                           state = {rng = sampler:state(), step = step}})
end

-- Puts a loaded checkpoint (checkpoint.load's table) into the model, optimiser and
-- sampler; every parameter must be there with the model's shape, and no other.
local function apply_checkpoint(run, path, model, opt, sampler)
    local params = param_table(model)
    local function shape(t) return "[" .. table.concat(t:shape(), ",") .. "]" end
    for _, p in ipairs(model:parameter_list()) do -- in model order: the first mismatch is reported
        local name, t = p.name, p.tensor
        local src = run.params[name]
        if not src then error(("%s: missing parameter %s %s"):format(path, name, shape(t)), 0) end
        if shape(src) ~= shape(t) then
            error(("%s: parameter %s is %s in the checkpoint, %s in the model"):format(path, name, shape(src), shape(t)), 0)
        end
        t:copy(src)
    end
    for name in pairs(run.params) do
        if not params[name] then error(("%s: parameter %s is not in this model"):format(path, name), 0) end
    end
    opt:load_state({kind = run.optim.kind, step = run.optim.step, m = run.optim.m, v = run.optim.v})
    sampler:set_state(run.state.rng)
    return run.step
end

function train.run(spec)
    local data = require "blt.data"
    local checkpoint = require "blt.checkpoint"
    local defaults = merged_defaults(spec.model_defaults, spec.extra_defaults)
    local docs = config.copy(train.docs)
    docs.model = spec.model_docs or {}
    local function fail(msg) io.stderr:write(spec.name, ": ", tostring(msg), "\n") os.exit(2) end
    local ok, cfg, flags = pcall(config.parse, defaults, spec.args or {})
    if not ok then fail(cfg) end
    if flags.help then
        print(("usage: ./blt %s [key=value ...] [--config FILE.lua] [--resume PATH]\n\nkeys (default, meaning):\n%s")
              :format(spec.script or spec.name, config.help(defaults, docs)))
        return
    end
    local saved -- the checkpoint a resumed run continues from, read once
    if flags.resume then
        -- the run continues with its own config; command-line keys still override it
        local okl
        okl, saved = pcall(checkpoint.load, flags.resume)
        if not okl then fail(saved) end
        local okm, base = pcall(config.merge, defaults, saved.config)
        if not okm then fail(base) end
        local args = {}
        for _, a in ipairs(spec.args) do if a:find("=") then args[#args + 1] = a end end
        for k, v in pairs(base) do defaults[k] = v end
        defaults.train.stop_at = 0 -- a stop request belongs to the run that made it
        ok, cfg = pcall(config.parse, defaults, args)
        if not ok then fail(cfg) end
    end
    if spec.check then
        local cok, err = pcall(spec.check, cfg)
        if not cok then fail(err) end
    end
    local t = cfg.train
    if t.threads > 0 then core.set_threads(t.threads) end
    local corpus = data.open(cfg.data.path, {val_fraction = cfg.data.val_fraction})
    local model = spec.build(cfg)
    local opt = optim.AdamW(model, {lr = t.lr, beta1 = t.beta1, beta2 = t.beta2, eps = t.eps,
                                    weight_decay = t.weight_decay})
    local sched = optim.schedule(t.schedule, t.schedule == "constant" and {lr = t.lr, warmup = t.warmup}
        or {peak = t.lr, warmup = t.warmup, total = t.steps, floor_ratio = t.min_lr_ratio})
    local sampler = corpus:sampler {batch = t.batch, seq_len = t.seq_len + 1, seed = t.seed}
    local run_dir = cfg.out.dir .. "/" .. (cfg.out.name or (spec.name .. "-" .. t.seed))
    os.execute("mkdir -p '" .. run_dir:gsub("'", "'\\''") .. "'")
    local ckpt_path = run_dir .. "/checkpoint.h5"
    -- a save interrupted by a kill leaves its temporary file; the checkpoint itself is intact
    os.execute("rm -f '" .. ckpt_path:gsub("'", "'\\''") .. "'.tmp.* 2>/dev/null")
    local step = 0
    if flags.resume then
        local okr, s = pcall(apply_checkpoint, saved, flags.resume, model, opt, sampler)
        if not okr then fail(s) end
        step = s
    end
    local info = corpus:info()
    io.stderr:write(("%s: %d parameters, %d threads; corpus %s: %d train / %d validation ids; run folder %s%s\n")
        :format(spec.name, model:num_params(), core.threads(), table.concat(corpus.paths, ", "), info.train, info.val,
                run_dir, flags.resume and (" (resumed at step " .. step .. ")") or ""))
    local metrics_path = run_dir .. "/metrics.h5"
    local metrics = checkpoint.Metrics(metrics_path, {flush_every = cfg.out.metrics_flush,
                                                      append = flags.resume ~= nil})
    if flags.resume then -- rows logged after the checkpoint are logged again: drop them
        local keep = 0
        local okf, f = pcall(blt.h5_open, metrics_path)
        if okf and f:exists("/step") then
            local steps = f:read("/step")
            for _, s_ in ipairs(type(steps) == "table" and steps or {steps}) do
                if s_ <= step then keep = keep + 1 else break end
            end
        end
        if okf then f:close() end
        metrics:truncate(keep)
    end
    core.catch_signals(true)

    local history = {}
    local bar = progress.new {total = t.steps, unit = "B", label = spec.name, work0 = step * t.batch * t.seq_len}
    local start = core.now()
    local eval_time = 0
    local bytes_per_step = t.batch * t.seq_len
    local start_step = step
    local last_loss
    local stopped
    while step < t.steps do
        step = step + 1
        -- the scope frees the step's tensors when it ends, not whenever the GC runs
        local loss, gnorm, lr = core.scope(function()
            local rows = sampler:next()
            opt:zero_grad()
            local l = model:loss(rows)
            l:backward()
            local gn = opt:clip_grad_norm(t.grad_clip)
            local rate = sched(step)
            opt:step(rate)
            return l:item(), gn, rate
        end)
        last_loss = loss
        bar:update(step, {("loss %.4f"):format(loss), ("lr %.2e"):format(lr)}, step * bytes_per_step)
        local row = {step = step, loss = loss, lr = lr, grad_norm = gnorm,
                     bytes_per_s = (step - start_step) * bytes_per_step / math.max(1e-9, core.now() - start - eval_time)}
        local e = cfg.eval
        if e.every > 0 and step % e.every == 0 and step < t.steps then
            local t0 = core.now()
            local bpb = train.evaluate(model, corpus, {seq_len = t.seq_len + 1, batch = e.batch, max_bytes = e.max_bytes})
            eval_time = eval_time + core.now() - t0
            row.val_bpb = bpb
            bar:note(("%s step %d: validation %.4f bits/byte (%d bytes), %.0f s"):format(spec.name, step, bpb,
                     e.max_bytes, core.now() - start))
        end
        if step % t.log_every == 0 or step == t.steps or row.val_bpb then
            metrics:log(row)
            history[#history + 1] = row
        end
        local sig = core.interrupted()
        if sig or (t.stop_at > 0 and step >= t.stop_at) then
            stopped = sig or ("train.stop_at = " .. t.stop_at)
            break
        end
        if cfg.out.checkpoint_every > 0 and step % cfg.out.checkpoint_every == 0 then
            save_checkpoint(ckpt_path, cfg, step, model, opt, sampler)
        end
        if t.time_limit > 0 and core.now() - start >= t.time_limit then
            bar:note(("%s: time limit %g s reached at step %d"):format(spec.name, t.time_limit, step))
            break
        end
    end
    bar:finish()
    save_checkpoint(ckpt_path, cfg, step, model, opt, sampler)
    metrics:close()
    core.catch_signals(false)
    if stopped then
        io.stderr:write(("%s: stopped (%s) after step %d; checkpoint saved; continue with:\n  ./blt %s --resume %s\n")
            :format(spec.name, stopped, step, spec.script or "SCRIPT", ckpt_path))
        return {stopped = stopped, steps = step, checkpoint = ckpt_path, final_loss = last_loss}
    end
    local train_time = core.now() - start - eval_time
    local bpb, nbytes = train.evaluate(model, corpus, {seq_len = t.seq_len + 1, batch = cfg.eval.batch,
                                                       max_bytes = cfg.eval.final_max_bytes})
    local result = {steps = step, final_loss = last_loss, val_bpb = bpb, val_bytes = nbytes,
                    train_seconds = train_time, bytes_per_s = (step - start_step) * bytes_per_step / train_time,
                    history = history, model = model, config = cfg, run_dir = run_dir, checkpoint = ckpt_path}
    if cfg.out.plot and #history > 1 then
        local plot = require "blt.plot"
        if plot.available() then
            local xs, ys, vx, vy = {}, {}, {}, {}
            for _, h in ipairs(history) do
                xs[#xs + 1], ys[#ys + 1] = h.step, h.loss / LN2
                if h.val_bpb then vx[#vx + 1], vy[#vy + 1] = h.step, h.val_bpb end
            end
            vx[#vx + 1], vy[#vy + 1] = step, bpb
            plot.lines {path = run_dir .. "/loss.png", title = spec.name .. ": bits per byte", xlabel = "step",
                        ylabel = "bits per byte", series = {{name = "train", x = xs, y = ys, style = "lines"},
                                                            {name = "validation", x = vx, y = vy}}}
            result.plot = run_dir .. "/loss.png"
        end
    end
    print(("%s: %d steps in %.1f s (%.0f bytes/s); final train loss %s nats; validation %.4f bits/byte over %d bytes")
          :format(spec.name, step, train_time, result.bytes_per_s,
                  last_loss and ("%.4f"):format(last_loss) or "(no step run)", bpb, nbytes))
    print(("%s: checkpoint %s, metrics %s/metrics.h5%s"):format(spec.name, ckpt_path, run_dir,
          result.plot and (", plot " .. result.plot) or ""))
    return result
end

return train
