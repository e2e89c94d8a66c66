-- blt.train: the training loop shared by the experiment scripts.
--
--   train.run{name=, defaults=, docs=, args=arg, build=function(cfg) return model end}
-- The model needs :loss(rows, "mean"|"sum") and :parameter_list(). The config has
-- sections model, train, data, eval (see train.defaults and train.docs for the
-- last three); the script adds its model section. Command-line overrides as
-- key=value (config.lua); --resume PATH continues a run from its checkpoint.
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
        log_every = "steps between metric rows",
    },
    data = {path = "corpus file or folder (unset: the default corpus)", val_fraction = "held-out fraction"},
    eval = {
        every = "steps between validation runs (0: end only)", max_bytes = "validation bytes per periodic run (0: all)",
        final_max_bytes = "validation bytes for the final report (0: all)", batch = "rows per validation batch",
    },
    out = {dir = "run folder root", name = "run folder name (unset: <script>-<seed>)"},
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

function train.run(spec)
    local data = require "blt.data"
    local defaults = merged_defaults(spec.model_defaults, spec.extra_defaults)
    local docs = config.copy(train.docs)
    docs.model = spec.model_docs or {}
    local ok, cfg, flags = pcall(config.parse, defaults, spec.args or {})
    if not ok then
        io.stderr:write(spec.name, ": ", cfg, "\n")
        os.exit(2)
    end
    if flags.help then
        print(("usage: ./blt %s [key=value ...] [--config FILE.lua] [--resume PATH]\n\nkeys (default, meaning):\n%s")
              :format(spec.script or spec.name, config.help(defaults, docs)))
        return
    end
    if spec.check then
        local cok, err = pcall(spec.check, cfg)
        if not cok then io.stderr:write(spec.name, ": ", tostring(err), "\n") os.exit(2) end
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
    local info = corpus:info()
    io.stderr:write(("%s: %d parameters, %d threads; corpus %s: %d train / %d validation ids\n"):format(
        spec.name, model:num_params(), core.threads(), table.concat(corpus.paths, ", "), info.train, info.val))

    local history = {}
    local bar = progress.new {total = t.steps, unit = "B", label = spec.name}
    local start = core.now()
    local bytes_per_step = t.batch * t.seq_len
    local step = 0
    local last_loss
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
        bar:update(step, {("loss %.4f"):format(last_loss), ("lr %.2e"):format(lr)}, step * bytes_per_step)
        if step % t.log_every == 0 or step == t.steps then
            history[#history + 1] = {step = step, loss = last_loss, lr = lr, grad_norm = gnorm,
                                     bytes_per_s = bar.rate, time = core.now() - start}
        end
        local e = cfg.eval
        if e.every > 0 and step % e.every == 0 and step < t.steps then
            local bpb = train.evaluate(model, corpus, {seq_len = t.seq_len + 1, batch = e.batch, max_bytes = e.max_bytes})
            history[#history].val_bpb = bpb
            bar:note(("%s step %d: validation %.4f bits/byte (%d bytes), %.0f s"):format(spec.name, step, bpb,
                     e.max_bytes, core.now() - start))
        end
        if t.time_limit > 0 and core.now() - start >= t.time_limit then
            bar:note(("%s: time limit %g s reached at step %d"):format(spec.name, t.time_limit, step))
            break
        end
    end
    bar:finish()
    local train_time = core.now() - start
    local bpb, nbytes = train.evaluate(model, corpus, {seq_len = t.seq_len + 1, batch = cfg.eval.batch,
                                                       max_bytes = cfg.eval.final_max_bytes})
    local result = {steps = step, final_loss = last_loss, val_bpb = bpb, val_bytes = nbytes,
                    train_seconds = train_time, bytes_per_s = step * bytes_per_step / train_time,
                    history = history, model = model, config = cfg}
    print(("%s: %d steps in %.1f s (%.0f bytes/s); final train loss %.4f nats; validation %.4f bits/byte over %d bytes")
          :format(spec.name, step, train_time, result.bytes_per_s, last_loss, bpb, nbytes))
    return result
end

return train
