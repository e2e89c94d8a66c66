-- blt.train: the training loop shared by the experiment scripts.
--
--   train.main{name =, script =, args = arg, kind = "bytelm" | "blt" | ...,
--              defaults = {model = {dim = 192}, train = {steps = 500}, ...}, check = function(cfg) end}
-- runs a training script's command line and exits with its status (below);
-- train.run{...} does the same work and returns the result table instead (a config
-- error still exits with status 2: it is the script's command line that is wrong).
--
-- The model is any kind of the registry (blt.models): the config has the sections
-- train, data, eval, out (train.defaults, train.docs, train.rules) and the kind's own
-- (model, and patching for the BLT); `defaults` overrides some of their values for
-- this script. The command line is key=value overrides, --config FILE.lua,
-- --resume CHECKPOINT and --fork NAME (config.lua).
--
-- Run folders (out.dir/out.name): a new run never writes into an existing run's
-- folder. Without out.name the folder is <name>-<seed>, or the first free of
-- <name>-<seed>.2, .3, ...; an out.name that exists is refused unless
-- out.overwrite=true. --resume continues in the checkpoint's own folder and refuses a
-- change of any key outside train.RESUMABLE; --fork NAME starts a new run (a new
-- folder) from the checkpoint, where every key may change.
--
-- Exit statuses: 0 finished (also at train.time_limit or train.stop_at); 1 an error;
-- 2 a bad command line or config, or a run folder that cannot be taken (it or its
-- .lock a symbolic link); 3 stopped on non-finite losses or gradients; 4 a run file
-- could not be written (disk full, read-only, a symbolic link in its place): the
-- message names the file, the last checkpoint is kept;
-- 129, 130, 143 stopped by SIGHUP, SIGINT, SIGTERM after saving a checkpoint.
--
-- A run writes only inside its own folder, and only its own files: the folder is
-- refused when it is a symbolic link, every file is written to a new temporary file
-- (never through a symbolic link) renamed over its name (core.write_file, the
-- checkpoint and metrics writers), .lock is never opened through a symbolic link.
--
-- Under mpirun every rank runs this same loop on its slice of the global batch
-- (blt.dist, docs/distributed.md): the steps agree, and rank 0 alone writes files
-- and prints progress.
local blt = require "blt"
local core = require "blt.core"
local config = require "blt.config"
local dist = require "blt.dist"
local json = require "blt.json"
local models = require "blt.models"
local optim = require "blt.optim"
local progress = require "blt.progress"

local train = {}

train.EXIT = {finished = 0, error = 1, config = 2, nonfinite = 3, write = 4, SIGHUP = 129, SIGINT = 130, SIGTERM = 143}

train.defaults = {
    train = {
        steps = 300,            -- optimiser steps
        total_steps = 0,        -- steps the lr schedule spans (0: train.steps at the run's start)
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
        max_nonfinite = 5,      -- non-finite steps in a row that stop the run
        precision = "fp32",     -- fp32, or bf16 operands of the linear layers' products (fp32 everything else)
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
        name = config.OPTIONAL, -- run folder name; unset: <script>-<seed>, or the next free <script>-<seed>.N
        overwrite = false,      -- a named run folder that exists is replaced instead of refused
        checkpoint_every = 100, -- steps between checkpoints (0: only at the end and on a signal)
        metrics_flush = 10,     -- metric rows between flushes of metrics.h5
        plot = true,            -- write loss.png at the end
    },
}

train.docs = {
    train = {
        steps = "optimiser steps", total_steps = "steps the lr schedule spans (0: train.steps when the run starts)",
        batch = "rows per step", seq_len = "bytes per row (row = [BOS, bytes])",
        lr = "peak learning rate", warmup = "linear warmup steps", schedule = "learning-rate schedule",
        min_lr_ratio = "final lr as a fraction of lr",
        weight_decay = "AdamW decoupled weight decay (matrices only)", beta1 = "AdamW beta1", beta2 = "AdamW beta2",
        eps = "AdamW epsilon", grad_clip = "global gradient-norm clip (0: off)", seed = "init and sampling seed",
        threads = "threads (0: BLT_THREADS or all cores)", time_limit = "stop after this many seconds (0: none)",
        log_every = "steps between metric rows", stop_at = "stop after this step with a checkpoint (0: no)",
        max_nonfinite = "steps in a row with a non-finite loss or gradient norm (each skipped) that stop the run",
        precision = "products of the linear layers: fp32, or bf16 operands with fp32 accumulation (weights, "
            .. "gradients, optimiser state and everything else stay fp32; needs AVX512_BF16 and oneDNN)",
    },
    data = {path = "corpus file or folder (unset: the default corpus)",
            val_fraction = "held-out fraction (a folder split by documents has its own split; docs/data.md)"},
    eval = {
        every = "steps between validation runs (0: end only)", max_bytes = "validation bytes per periodic run (0: all)",
        final_max_bytes = "validation bytes for the final report (0: all)", batch = "rows per validation batch",
    },
    out = {dir = "run folder root", name = "run folder name (unset: <script>-<seed>, or the next free <script>-<seed>.N)",
           overwrite = "replace an existing out.name folder instead of refusing",
           checkpoint_every = "steps between checkpoints (0: end and signals only)",
           metrics_flush = "metric rows between flushes of metrics.h5", plot = "write loss.png at the end"},
}

train.rules = {
    ["train.steps"] = ">= 1", ["train.total_steps"] = ">= 0", ["train.batch"] = ">= 1", ["train.seq_len"] = ">= 1",
    -- the optimiser's values reach C as float32 (AdamW's step, the lr, the clip's scale)
    ["train.lr"] = "> 0 float32", ["train.warmup"] = ">= 0", ["train.schedule"] = {"warmup_cosine", "constant", "linear"},
    ["train.min_lr_ratio"] = "[0, 1] float32", ["train.weight_decay"] = ">= 0 float32", ["train.beta1"] = "[0, 1) float32",
    ["train.beta2"] = "[0, 1) float32", ["train.eps"] = "> 0 float32", ["train.grad_clip"] = ">= 0 float32",
    ["train.seed"] = ">= 0",
    ["train.threads"] = "[0, 256]", ["train.time_limit"] = ">= 0", ["train.log_every"] = ">= 1",
    ["train.stop_at"] = ">= 0", ["train.max_nonfinite"] = ">= 1", ["train.precision"] = {"fp32", "bf16"},
    ["data.path"] = "readable", ["data.val_fraction"] = "(0, 1)",
    ["eval.every"] = ">= 0", ["eval.max_bytes"] = ">= 0", ["eval.final_max_bytes"] = ">= 0", ["eval.batch"] = ">= 1",
    ["out.dir"] = function(v) if v == "" then return "must not be empty" end end,
    ["out.name"] = function(v)
        v = tostring(v)
        if v == "" or v == "." or v == ".." or v:find("/", 1, true) then return "must be a folder name (no '/')" end
    end,
    ["out.checkpoint_every"] = ">= 0", ["out.metrics_flush"] = ">= 1",
}

-- Keys a --resume may change: how long and how the run goes on, not what it trains.
-- Any other change needs --fork NAME (a new run).
train.RESUMABLE = {
    ["train.steps"] = true, ["train.threads"] = true, ["train.time_limit"] = true, ["train.stop_at"] = true,
    ["train.log_every"] = true, ["train.max_nonfinite"] = true,
    ["eval.every"] = true, ["eval.max_bytes"] = true, ["eval.final_max_bytes"] = true, ["eval.batch"] = true,
    ["out.checkpoint_every"] = true, ["out.metrics_flush"] = true, ["out.plot"] = true,
}

local LN2 = math.log(2)

-- The unit of every column a run logs: each becomes the column's "unit" attribute in
-- metrics.h5. loss is the model's own training loss (M.loss_unit: a token model's is per
-- token); loss_bpb is the same loss in bits per byte for every kind.
train.UNITS = {
    step = "steps", loss = "nats/byte", loss_bpb = "bits/byte", lr = "learning rate (1/step size)",
    grad_norm = "L2 norm (before clipping)", skipped = "0 or 1 (update skipped)", patch_mean = "bytes/patch",
    bytes_per_token = "bytes/token", flops_per_byte = "FLOPs/byte", bytes_per_s = "bytes/s", val_bpb = "bits/byte",
}

-- A model kind's column units (train.UNITS with its loss's unit).
function train.units(M)
    local u = {}
    for k, v in pairs(train.UNITS) do u[k] = v end
    u.loss = M.loss_unit or u.loss
    return u
end

-- Bits per byte over validation windows: summed nats over all non-pad targets,
-- divided by ln 2 times their count (models.nats: the same for every model kind).
-- Returns bpb, bytes.
-- Under several ranks the batches are dealt round-robin and the sums added up; every
-- rank counts every batch's targets, so all stop at the same batch as one rank would.
-- o.mark: a smaller byte limit whose figure is returned too (bpb, bytes, mark_bpb,
-- mark_bytes): the windows come in a fixed order, so the first o.mark bytes are exactly
-- the bytes an evaluation with max_bytes = o.mark would read.
-- o.se: a table that receives the sampling standard errors in bits per byte (se, and
-- mark_se with o.mark): the spread between validation batches, each batch a cluster of
-- windows (ratio estimator: sqrt(B/(B-1) sum_b (nats_b - mean * n_b)^2) / sum_b n_b), so
-- the figure a sample of that many bytes gives is stated with its precision.
function train.evaluate(model, corpus, o)
    local acc = {nats = 0.0, count = 0, q1 = 0.0, q2 = 0.0, q3 = 0.0, batches = 0} -- q: sums of nats^2, nats n, n^2
    local mark
    local size, rank, i = dist.size(), dist.rank(), 0
    core.no_grad(function()
        for rows in corpus:val_windows {seq_len = o.seq_len, batch = o.batch} do
            -- batch i is this rank's when i mod size = rank (with one rank: every batch)
            if i % size == rank then
                local sum, n = models.nats(model, rows)
                acc.nats, acc.count = acc.nats + sum, acc.count + n
                acc.q1, acc.q2, acc.q3 = acc.q1 + sum * sum, acc.q2 + sum * n, acc.q3 + n * n
            else
                acc.count = acc.count + models.targets(rows)
            end
            acc.batches = acc.batches + 1
            i = i + 1
            if o.mark and not mark and acc.count >= o.mark then mark = {} for k, v in pairs(acc) do mark[k] = v end end
            if o.max_bytes and o.max_bytes > 0 and acc.count >= o.max_bytes then break end
        end
    end)
    local function figures(a)
        if size > 1 then
            for _, k in ipairs {"nats", "q1", "q2", "q3"} do a[k] = dist.allreduce_sum(a[k]) end
        end
        if a.count == 0 then return math.huge, 0 end
        local m = a.nats / a.count
        local ss = a.q1 - 2 * m * a.q2 + m * m * a.q3
        local se = a.batches > 1 and math.sqrt(math.max(0, ss) * a.batches / (a.batches - 1)) / a.count / LN2 or nil
        return a.nats / (LN2 * a.count), a.count, se
    end
    local bpb, count, se = figures(acc)
    if o.se then o.se.se = se end
    if not o.mark then return bpb, count end
    local mbpb, mcount, mse = bpb, count, se -- the split ended before the mark: the same bytes
    if mark then mbpb, mcount, mse = figures(mark) end
    if o.se then o.se.mark_se = mse end
    return bpb, count, mbpb, mcount
end

-- The final validation: over eval.final_max_bytes for the result, and over the periodic
-- validations' bytes (eval.max_bytes) for the curve's last point, in one pass (the
-- smaller limit is a prefix of the larger), so the curve (metrics.h5, loss.png) is on
-- one set of bytes from its first point to its last. Returns result bpb, bytes, curve
-- bpb, bytes, and the result's sampling standard error (nil from a single batch).
function train.final_validation(model, corpus, cfg)
    local e, seq = cfg.eval, cfg.train.seq_len + 1
    local fin, per = e.final_max_bytes, e.max_bytes
    local se = {}
    if e.every == 0 or fin == per then -- no periodic validation, or the same bytes already
        local b, n = train.evaluate(model, corpus, {seq_len = seq, batch = e.batch, max_bytes = fin, se = se})
        return b, n, b, n, se.se
    end
    local all = fin == 0 or per == 0
    local big, small = all and 0 or math.max(fin, per), all and math.max(fin, per) or math.min(fin, per)
    local b, n, mb, mn = train.evaluate(model, corpus, {seq_len = seq, batch = e.batch, max_bytes = big, mark = small, se = se})
    if (fin == 0) or (per ~= 0 and fin > per) then return b, n, mb, mn, se.se end -- the result reads more bytes
    return mb, mn, b, n, se.mark_se
end

-- ---------------------------------------------------------------- helpers

local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end

-- Raised for a bad command line or config: train.run prints it and exits with status 2.
local ConfigError = {}
local function config_error(msg) error(setmetatable({msg = msg}, ConfigError), 0) end

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

local exists = require("blt.util").exists

-- Raised when a run file cannot be written (train.EXIT.write): train.run prints it
-- with the run's last checkpoint and exits with status 4.
local WriteError = {}

-- fn(...), with a failure turned into a WriteError whose message starts at the file:
-- the Lua position and the functions' names ("blt.metrics:log: metrics:flush: ") go.
local function writing(fn, ...)
    local ok, res = pcall(fn, ...)
    if ok then return res end
    local msg = tostring(type(res) == "table" and res.msg or res):gsub("^[^\n]-%.lua:%d+: ", "", 1)
    for _ = 1, 4 do
        local w = msg:match("^([%w_.:]+): ")
        if not w or w:find("/", 1, true) then break end
        msg = msg:sub(#w + 3)
    end
    error(setmetatable({msg = msg}, WriteError), 0)
end

local function write_file_atomic(path, text)
    writing(function() assert(core.write_file(path, text)) end)
end

-- A metrics writer whose failures are WriteErrors.
local function guarded(m)
    return setmetatable({}, {__index = function(_, k)
        return function(_, ...) return writing(m[k], m, ...) end
    end})
end

-- Every tensor a checkpoint holds (frozen parts of the model included).
local function param_table(model)
    local t = {}
    for _, p in ipairs(model:state_list()) do t[p.name] = p.tensor end
    return t
end

-- Everything needed to continue exactly: parameters, optimiser moments and step,
-- the sampler's RNG state, the step, the config, the wall time so far.
local function save_checkpoint(run, step)
    if not dist.is_root() then run.saved_step, run.saved_path = step, run.ckpt_path return end -- one writer
    local checkpoint = require "blt.checkpoint"
    local st = run.opt:state()
    writing(checkpoint.save, run.ckpt_path, {config = run.cfg, step = step, params = param_table(run.model),
                                    optim = {step = st.step, m = st.m, v = st.v, kind = st.kind,
                                             frozen = run.model.frozen},
                                    state = {rng = run.sampler:state(), step = step,
                                             elapsed = run.elapsed0 + core.now() - run.start}})
    run.saved_step, run.saved_path = step, run.ckpt_path -- only once the save succeeded
end

-- ---------------------------------------------------------------- 1. parse

-- The command line and, for --resume/--fork, the checkpoint: returns the resolved
-- config, the flags and the loaded checkpoint (or nil). Raises a ConfigError.
-- --resume: the checkpoint (read once) and its config, with the command line's keys
-- over it. A plain resume may change only train.RESUMABLE keys; --fork any.
local function resume_config(defaults, cfg, flags)
    local checkpoint = require "blt.checkpoint"
    local ok, saved = pcall(checkpoint.load, flags.resume)
    if not ok then config_error(saved) end
    if type(saved.optim) ~= "table" or type(saved.optim.m) ~= "table" or type(saved.state) ~= "table"
        or saved.state.rng == nil then
        config_error(("%s holds no optimiser or sampler state (/optim, /state): it is a model, not a run to "
            .. "resume"):format(flags.resume))
    end
    -- the training scripts' optimiser is AdamW: another's state (SGD's, from the library) cannot continue it
    if saved.optim.kind ~= nil and saved.optim.kind ~= "AdamW" then
        config_error(("%s holds the state of a %s optimiser; the training scripts continue AdamW only")
            :format(flags.resume, tostring(saved.optim.kind)))
    end
    local okm, base = pcall(config.merge, defaults, saved.config or {}, flags.resume)
    if not okm then config_error(base) end
    -- checkpoints written before train.total_steps existed: the schedule spanned train.steps
    if base.train.total_steps == 0 then base.train.total_steps = base.train.steps end
    local refused, was = {}, {}
    for _, p in ipairs(config.paths(defaults)) do
        local v = config.get(cfg, p)
        if flags.given[p] and config.get(base, p) ~= v then
            local section, key = p:match("^(.*)%.([^.]+)$")
            config.get(base, section)[key] = v
            if not flags.fork and not train.RESUMABLE[p] then
                refused[#refused + 1] = p
                was[#was + 1] = p .. "=" .. tostring(config.get(saved.config, p) or "(unset)")
            end
        end
    end
    if #refused > 0 then
        config_error(("--resume continues the same run: it cannot change %s (the checkpoint has %s); "
            .. "use --fork NEW_NAME to start a new run from this checkpoint with other settings")
            :format(table.concat(refused, ", "), table.concat(was, ", ")))
    end
    base.train.stop_at = config.get(cfg, "train.stop_at") -- a stop request belongs to the run that made it
    if base.train.steps <= saved.step then
        config_error(("train.steps = %d, but %s is at step %d: nothing to run (give train.steps > %d to continue)")
            :format(base.train.steps, flags.resume, saved.step, saved.step))
    end
    return base, saved
end

-- A run larger than memory (parameters, optimiser state and a step's activations,
-- blt.memory) is refused before any allocation.
local function check_memory(M, cfg, resumed)
    local msg = require("blt.memory").check(M, cfg, {before_setup = M.setup ~= nil and not resumed})
    if msg then config_error(msg) end
end

-- A corpus too short for the run is refused before any work (the sampler draws rows
-- of train.seq_len train ids; validation needs at least one id).
local function check_corpus(cfg, corpus)
    local info = corpus:info()
    local where = cfg.data.path or table.concat(corpus.paths, ",")
    if info.train < cfg.train.seq_len + 1 then
        config_error(("data.path = %s: its train split holds %d ids, fewer than a row needs (train.seq_len = %d, "
            .. "and one more for the last target; %d bytes in %d "
            .. "documents, each ending with EOS; data.val_fraction = %g): give a longer corpus, a smaller "
            .. "train.seq_len or another data.val_fraction")
            :format(where, info.train, cfg.train.seq_len, info.bytes, info.documents, cfg.data.val_fraction))
    end
    if info.val < 1 then
        config_error(("data.path = %s: its validation split is empty: data.val_fraction = %g holds out %d of the "
            .. "corpus's %d ids (%d bytes in %d documents): validation needs at least 1; give a larger "
            .. "data.val_fraction (at least %.3g) or a larger corpus"):format(where, cfg.data.val_fraction, info.val,
                                                   info.stream, info.bytes, info.documents, 1 / math.max(1, info.stream)))
    end
end

-- The command line and, for --resume/--fork, the checkpoint: returns the resolved
-- config (every value checked), the flags and the loaded checkpoint (or nil).
local function parse(spec, defaults, rules, internal)
    local ok, cfg, flags = pcall(config.parse, defaults, spec.args or {},
                                 {flags = {resume = "CHECKPOINT", fork = "NAME"}, switches = {check = true},
                                  internal = internal})
    if not ok then config_error(cfg) end
    if flags.help then return nil, flags end
    if flags.fork and not flags.resume then config_error("--fork NAME starts a new run from a checkpoint: give --resume CHECKPOINT too") end
    local saved
    if flags.resume then cfg, saved = resume_config(defaults, cfg, flags) end
    local okc, err = pcall(config.check, cfg, rules, defaults)
    if not okc then config_error(err) end
    for _, check in ipairs {spec.M.check, spec.check} do
        local oks, e = pcall(check, cfg)
        if not oks then config_error(e) end
    end
    if cfg.train.total_steps == 0 then cfg.train.total_steps = cfg.train.steps end
    local msg, note = train.warmup_problem(cfg, flags.given)
    if msg then config_error(msg) end
    flags.note = note -- said once every check has passed (a refused run prints one line)
    check_memory(spec.M, cfg, flags.resume ~= nil)
    return cfg, flags, saved
end

-- A warmup longer than the schedule (train.total_steps, or train.steps) never reaches
-- the peak lr and never decays. Given on the command line it is refused (the run
-- would not be the one asked for; the message names both values); left at its
-- default, which only a short run exceeds, it is clamped to a tenth of the schedule
-- and said so. Returns the refusal, or nil and the note of a clamp (cfg is changed).
function train.warmup_problem(cfg, given)
    local t = cfg.train
    local span = t.total_steps > 0 and t.total_steps or t.steps
    if t.warmup <= span then return nil end
    local key = t.total_steps > 0 and given and given["train.total_steps"] and "train.total_steps" or "train.steps"
    if given and given["train.warmup"] then
        return ("train.warmup = %d is longer than the schedule (%s = %d): the lr would never reach train.lr; give "
            .. "train.warmup <= %d"):format(t.warmup, key, span, span)
    end
    local was = t.warmup
    t.warmup = span // 10
    return nil, ("train.warmup = %d (its default) is longer than the schedule (%s = %d): clamped to %d (a tenth); "
        .. "give train.warmup to choose"):format(was, key, span, t.warmup)
end

-- ---------------------------------------------------------------- 2. the run folder

-- Chooses and takes the run folder: never another run's. Returns the folder and
-- whether an existing folder is being replaced.
local function take_folder(spec, cfg, flags)
    local dir
    if flags.resume and not flags.fork then
        dir = dirname(flags.resume)
    elseif flags.fork then
        local okn = train.rules["out.name"](flags.fork)
        if okn then config_error("--fork " .. config.quote(flags.fork) .. ": " .. okn) end
        cfg.out.name = flags.fork
        dir = cfg.out.dir .. "/" .. flags.fork
        if core.lkind(dir) then config_error(("--fork %s: %s exists; choose another name"):format(flags.fork, dir)) end
    elseif cfg.out.name then
        dir = cfg.out.dir .. "/" .. cfg.out.name
        local names = core.listdir(dir)
        if (names and #names > 0 or (not names and exists(dir))) and not cfg.out.overwrite then
            config_error(("%s exists (out.name = %s): choose another out.name, continue it with --resume %s/checkpoint.h5, "
                .. "or replace it with out.overwrite=true"):format(dir, cfg.out.name, dir))
        end
    else
        local base = ("%s-%d"):format(spec.name, cfg.train.seed)
        local name, k = base, 1
        while core.lkind(cfg.out.dir .. "/" .. name) do -- a symbolic link, even dangling, is taken
            k = k + 1
            name = ("%s.%d"):format(base, k)
        end
        cfg.out.name = name
        dir = cfg.out.dir .. "/" .. name
    end
    -- the folder itself, never another one through a symbolic link (out.overwrite included)
    if core.lkind(dir) == "link" then
        config_error(("%s is a symbolic link: a run writes only in its own folder (choose another out.name, "
            .. "or remove the link)"):format(dir))
    end
    local ok, err = core.mkdir(dir)
    if not ok then config_error(err) end
    if core.lkind(dir) ~= "folder" then config_error(("%s is not a folder"):format(dir)) end
    -- one run per folder: a second process is refused before it touches a file here
    local okl, lerr = core.lock(dir .. "/.lock")
    if not okl then config_error(lerr .. (lerr:find("held by", 1, true) and ": another run is using this folder" or "")) end
    if not flags.resume or flags.fork then
        if cfg.out.overwrite then -- a replaced run leaves none of its files behind
            for _, f in ipairs {"checkpoint.h5", "metrics.h5", "result.json", "config.json", "loss.png"} do
                os.remove(dir .. "/" .. f) -- a symbolic link: the link, not its target
            end
        end
    end
    -- a save interrupted by a kill leaves its temporary file (<file>.tmp.<pid>[.k]); the
    -- file itself is intact, and the lock says no other process is writing here
    for _, f in ipairs(core.listdir(dir) or {}) do
        if f:match("%.tmp%.%d+$") or f:match("%.tmp%.%d+%.%d+$") then os.remove(dir .. "/" .. f) end
    end
    return dir
end

-- ---------------------------------------------------------------- 3. the steps

local function schedule_fn(t)
    if t.schedule == "constant" then return optim.schedule("constant", {lr = t.lr, warmup = t.warmup}) end
    return optim.schedule(t.schedule, {peak = t.lr, warmup = t.warmup, total = t.total_steps,
                                       floor_ratio = t.min_lr_ratio})
end

local function describe_schedule(t)
    if t.schedule == "constant" then
        return ("constant lr %.3g after %d warmup steps"):format(t.lr, t.warmup)
    end
    return ("%s, peak lr %.3g, warmup %d, over %d steps (train.total_steps)%s"):format(t.schedule, t.lr, t.warmup,
        t.total_steps, t.steps > t.total_steps and ("; steps %d-%d stay at the final lr"):format(t.total_steps + 1, t.steps) or "")
end

-- Drops metric rows logged after the checkpoint (they are logged again).
local function truncate_metrics(metrics, path, step)
    local keep = 0
    for _, row in ipairs(train.history(path)) do
        if row.step <= step then keep = keep + 1 else break end
    end
    metrics:truncate(keep)
end

-- Training FLOPs per byte (docs/flops.md) at the step's mean patch size (BLT) or bytes per token (bpe_lm).
local function flops_per_byte(run)
    local ok, f = pcall(require("blt").flops, run.cfg, {seq_len = run.cfg.train.seq_len + 1,
                                                        mean_patch = run.model.last_patch_mean,
                                                        bytes_per_token = run.model.last_bytes_per_token})
    return ok and f.training.total or nil
end

-- One optimiser step at learning rate lr; the scope frees the step's tensors when it
-- ends, not whenever the GC runs. Returns loss, gradient norm, lr, skipped.
local function train_step(run, lr)
    return core.scope(function()
        local rows = run.sampler:next()
        run.opt:zero_grad()
        local li
        if dist.size() == 1 then
            local l = run.model:loss(rows)
            l:backward()
            li = l:item()
        else
            li = dist.loss_backward(run.model, run.opt.flat_grad, rows)
        end
        local gn = run.opt:grad_norm() -- after the all-reduce: the global norm, the same on every rank
        -- a non-finite loss or gradient would poison the weights and the moments: skip the update
        if not (finite(li) and finite(gn)) then return li, gn, lr, true end
        run.opt:clip_grad_norm(run.cfg.train.grad_clip)
        -- an update that overflows (a finite but too large lr) leaves inf or NaN in the
        -- parameters: it cannot be skipped after the fact, so the run stops (every rank
        -- takes the same update from the same summed gradients, so all see it alike)
        local finite_update = run.opt:step(lr)
        return li, gn, lr, false, not finite_update
    end)
end

-- Runs steps until train.steps, a stop or a fault. Returns the exit reason.
local function step_loop(spec, run)
    local t, cfg = run.cfg.train, run.cfg
    local sched = schedule_fn(t)
    local bytes_per_step = t.batch * t.seq_len
    local bar = dist.is_root() and progress.new {total = t.steps, unit = "B", label = spec.name,
                                                 work0 = run.step * bytes_per_step}
        or {update = function() end, note = function() end, finish = function() end}
    local bad, first_bad = 0, nil
    local start_step = run.step
    while run.step < t.steps do
        local step = run.step + 1
        local loss, gnorm, lr, skipped, overflowed = train_step(run, sched(step))
        run.step = step
        if skipped then
            bad = bad + 1
            first_bad = first_bad or step
            run.skipped = run.skipped + 1
        else
            bad, first_bad = 0, nil
            run.last_loss = loss
        end
        bar:update(step, {("loss %.4f"):format(loss), ("lr %.2e"):format(lr)}, step * bytes_per_step)
        local bpt = run.model.last_bytes_per_token
        local row = {step = step, loss = loss, lr = lr, grad_norm = gnorm, skipped = skipped and 1 or 0,
                     loss_bpb = loss / LN2 / (bpt and bpt > 0 and bpt or 1), -- per byte for every kind
                     patch_mean = run.model.last_patch_mean, -- models with patches: the step's mean patch size
                     bytes_per_token = run.model.last_bytes_per_token, -- token models: the step's bytes per token
                     flops_per_byte = flops_per_byte(run),
                     bytes_per_s = (step - start_step) * bytes_per_step
                                   / math.max(1e-9, core.now() - run.start - run.eval_time)}
        if overflowed then
            run.metrics:log(row)
            bar:finish()
            run.fault = ("the update of step %d made parameters or AdamW moments non-finite (lr %.3g; train.lr = %g, "
                .. "train.weight_decay = %g): the model is lost and nothing was saved"):format(step, lr, t.lr, t.weight_decay)
            return "nonfinite"
        end
        if bad >= t.max_nonfinite then
            run.metrics:log(row)
            bar:finish()
            run.fault = ("the loss or gradient norm was not finite at steps %d-%d (%d in a row, train.max_nonfinite = %d); "
                .. "those updates were skipped"):format(first_bad, step, bad, t.max_nonfinite)
            return "nonfinite"
        end
        local e = cfg.eval
        local last = step == t.steps
        if e.every > 0 and step % e.every == 0 and not last then
            local t0 = core.now()
            local bpb, nbytes = train.evaluate(run.model, run.corpus, {seq_len = t.seq_len + 1, batch = e.batch,
                                                                       max_bytes = e.max_bytes})
            run.eval_time = run.eval_time + core.now() - t0
            row.val_bpb = bpb
            bar:note(("%s step %d: validation %.4f bits/byte (%d bytes), %.0f s"):format(spec.name, step, bpb,
                     nbytes, core.now() - run.start))
        end
        local _, signum = core.interrupted()
        local stop_at = t.stop_at > 0 and step >= t.stop_at
        -- a signal may reach one rank only, and clocks differ: every rank stops at the same step
        local sig, timed_out
        sig, signum, timed_out = dist.agree_stop(signum, t.time_limit > 0 and core.now() - run.start >= t.time_limit)
        if last or sig or stop_at or timed_out then
            run.final_row = row -- the final report adds the final validation to it
            bar:finish()
            if sig then run.signum = signum return sig end
            if stop_at then return "stop_at" end
            if timed_out then
                if dist.is_root() then
                    io.stderr:write(("%s: time limit %g s reached at step %d\n"):format(spec.name, t.time_limit, step))
                end
                return "time_limit"
            end
            return "finished"
        end
        if step % t.log_every == 0 or row.val_bpb then run.metrics:log(row) end
        -- no checkpoint in a run of non-finite steps: the last one stays the last good one
        if cfg.out.checkpoint_every > 0 and step % cfg.out.checkpoint_every == 0 and bad == 0 then
            save_checkpoint(run, step)
        end
    end
    bar:finish()
    return "finished"
end

-- ---------------------------------------------------------------- 4. the report

-- The whole history of a run from its metrics.h5 (the steps before a resume included):
-- a list of rows {step =, loss =, val_bpb =, ...: every logged column} in logged order
-- (a column a row did not log is NaN); what loss.png is drawn from. {} when the file
-- is missing or unreadable.
function train.history(path)
    local ok, cols = pcall(require("blt.checkpoint").read_metrics, path)
    if not ok then return {} end
    local h = {}
    for i in ipairs(cols.step or {}) do
        local row = {}
        for name, v in pairs(cols) do row[name] = v[i] end
        h[i] = row
    end
    return h
end

local function plot_history(spec, run)
    local plot = require "blt.plot"
    if not plot.available() then return nil end
    local xs, ys, vx, vy = {}, {}, {}, {}
    for _, h in ipairs(train.history(run.metrics_path)) do
        -- a token model (bpe_lm) logs nats per token: per byte, divide by the bytes a token covers
        -- (loss_bpb holds it; files written before it existed are converted here)
        local bpt = h.bytes_per_token and finite(h.bytes_per_token) and h.bytes_per_token > 0 and h.bytes_per_token or 1
        local bits = h.loss_bpb and finite(h.loss_bpb) and h.loss_bpb or (h.loss and h.loss / LN2 / bpt)
        if bits and finite(bits) then xs[#xs + 1], ys[#ys + 1] = h.step, bits end
        if h.val_bpb and finite(h.val_bpb) then vx[#vx + 1], vy[#vy + 1] = h.step, h.val_bpb end
    end
    -- a run shorter than train.log_every logs one row (its last): one point is still a
    -- figure, drawn as a mark (a line needs two)
    if #xs == 0 then return nil end
    local series = {{name = "train", x = xs, y = ys, style = #xs < 30 and "linespoints" or "lines"}}
    if #vx > 0 then series[2] = {name = "validation", x = vx, y = vy} end
    -- gnuplot opens its output by name (through a symbolic link too): it draws into a
    -- temporary file of ours, which then becomes loss.png as every run file does
    local tmp = os.tmpname()
    local ok, err = pcall(plot.lines, {path = tmp, title = spec.name .. ": bits per byte", xlabel = "step",
                                       ylabel = "bits per byte", series = series})
    local png = ok and require("blt.util").read_file(tmp)
    os.remove(tmp)
    if not ok then error(err, 0) end
    if not png or png == "" then error("gnuplot wrote no image", 0) end
    local path = run.dir .. "/loss.png"
    write_file_atomic(path, png)
    return path
end

-- Whether the checkpoint at path can be resumed: it loads (with the checks of
-- checkpoint.load: checksums, shapes, finite values), is at the step this run saved,
-- and every parameter and optimiser moment in it is finite (checked here too, so the
-- promise does not rest on the loader's options). Returns true, or false and why not.
function train.verify_checkpoint(path, step)
    local ok, ck = pcall(require("blt.checkpoint").load, path)
    if not ok then return false, tostring(ck) end
    if ck.step ~= step then return false, ("it is at step %s, not %d"):format(tostring(ck.step), step) end
    local groups = {params = ck.params or {}}
    if type(ck.optim) == "table" then groups["optim.m"], groups["optim.v"] = ck.optim.m or {}, ck.optim.v or {} end
    for what, tensors in pairs(groups) do
        for name, x in pairs(tensors) do
            -- the norm of a float32 tensor is finite exactly when every element is (in double, no overflow)
            local okn, norm = pcall(core.nn_l2norm, x)
            if okn and not finite(norm) then return false, ("%s %s holds non-finite values"):format(what, name) end
        end
    end
    return true
end

-- What a person reads at the end: how the run ended and what to do next.
local function tell(spec, run, result, reason)
    local t = run.cfg.train
    if reason == "nonfinite" then
        local advice = "No checkpoint was saved before; lower train.lr and start again"
        if run.saved_step then
            -- "intact" only after reading it back: a fork's first checkpoint, a file
            -- changed or removed since, would otherwise be promised wrongly
            local ok, why = train.verify_checkpoint(run.saved_path, run.saved_step)
            advice = ok and ("The last checkpoint (%s, step %d) was read back and is intact (every weight finite): "
                             .. "--resume it, or --fork it with a lower train.lr"):format(run.saved_path, run.saved_step)
                or ("The last checkpoint (%s, step %d) could not be verified (%s); lower train.lr and start again")
                    :format(run.saved_path, run.saved_step, why)
        end
        io.stderr:write(("%s: stopped at step %d: %s. %s\n"):format(spec.name, run.step, run.fault, advice))
    elseif reason:match("^SIG") or reason == "stop_at" then
        io.stderr:write(("%s: stopped (%s) after step %d; checkpoint saved; continue with:\n  %s./blt %s --resume %s\n")
            :format(spec.name, reason == "stop_at" and ("train.stop_at = " .. t.stop_at) or reason, run.step,
                    dist.size() > 1 and ("mpirun -np %d "):format(dist.size()) or "",
                    spec.script or "SCRIPT", run.ckpt_path))
    end
    if result.val_bpb then
        print(("%s: %d steps in %.1f s (%.0f bytes/s); final train loss %s nats; validation %.4f bits/byte over %d bytes")
              :format(spec.name, run.step, result.train_seconds, result.bytes_per_s,
                      run.last_loss and ("%.4f"):format(run.last_loss) or "(no step run)", result.val_bpb, result.val_bytes))
        print(("%s: run folder %s: checkpoint.h5, metrics.h5, result.json, config.json%s"):format(spec.name, run.dir,
              result.plot and ", loss.png" or ""))
    end
end

local function report(spec, run, reason)
    local t, cfg = run.cfg.train, run.cfg
    local result = {run_dir = run.dir, checkpoint = run.ckpt_path, config = cfg, model = run.model, steps = run.step,
                    final_loss = run.last_loss, exit_reason = reason,
                    exit_status = train.EXIT[reason] or (run.signum and 128 + run.signum) or 0}
    local train_time = core.now() - run.start - run.eval_time
    result.train_seconds = train_time
    result.bytes_per_s = (run.step - run.start_step) * t.batch * t.seq_len / math.max(1e-9, train_time)
    local signal = reason:match("^SIG")
    if reason ~= "nonfinite" and not signal then
        local t0 = core.now()
        local curve_bpb, curve_bytes
        result.val_bpb, result.val_bytes, curve_bpb, curve_bytes, result.val_bpb_se =
            train.final_validation(run.model, run.corpus, cfg)
        if curve_bytes ~= result.val_bytes then result.val_bpb_curve, result.val_bytes_curve = curve_bpb, curve_bytes end
        run.eval_time = run.eval_time + core.now() - t0
        if not finite(result.val_bpb) then
            -- finite weights whose outputs overflow (skipped steps left them so): no
            -- result to record, and no checkpoint of them over the last one saved
            run.fault = ("the final validation gave %s bits per byte over %d bytes (the model's outputs are not "
                .. "finite)"):format(tostring(result.val_bpb), result.val_bytes)
            result.val_bpb, result.val_bytes, result.val_bpb_curve, result.val_bytes_curve = nil, nil, nil, nil
            result.val_bpb_se = nil
            reason = "nonfinite"
            result.exit_reason, result.exit_status = reason, train.EXIT.nonfinite
        end
        if run.final_row then run.final_row.val_bpb = result.val_bpb_curve or result.val_bpb end
    end
    if run.final_row then run.metrics:log(run.final_row) end
    if reason ~= "nonfinite" then save_checkpoint(run, run.step) end
    core.catch_signals(false)
    if not dist.is_root() then -- rank 0 writes the files below; wait until it has
        dist.barrier()
        result.stopped = reason ~= "finished" and reason ~= "time_limit" and reason or nil
        return result
    end
    local wall = core.now() - run.start
    local record = {exit_reason = reason, exit_status = result.exit_status, step = run.step, steps_planned = t.steps,
                    val_bpb = result.val_bpb, val_bytes = result.val_bytes,
                    val_bpb_curve = result.val_bpb_curve, val_bytes_curve = result.val_bytes_curve,
                    val_bpb_se = result.val_bpb_se,
                    bytes_seen = run.step * t.batch * t.seq_len, skipped_steps = run.skipped,
                    wall_seconds = wall, wall_seconds_total = run.elapsed0 + wall, train_seconds = train_time,
                    bytes_per_s = result.bytes_per_s, final_train_loss = run.last_loss,
                    checkpoint = reason ~= "nonfinite" and "checkpoint.h5" or nil, fault = run.fault,
                    resumed_from = run.resumed_from, forked_from = run.forked_from,
                    world_size = dist.size(), precision = cfg.train.precision,
                    allreduce_seconds = dist.size() > 1 and dist.allreduce_seconds - run.allreduce0 or nil}
    -- the result twice: result.json for scripts, and the metrics file's root attributes
    -- (absent values, e.g. no validation after a signal, are left out of both)
    run.metrics:annotate(record)
    run.metrics:close()
    write_file_atomic(run.dir .. "/result.json", json.encode(record) .. "\n")
    result.record = record
    if cfg.out.plot then
        local okp, png = pcall(plot_history, spec, run)
        if okp then result.plot = png
        else io.stderr:write(spec.name, ": no loss.png: ", tostring(type(png) == "table" and png.msg or png), "\n") end
    end
    tell(spec, run, result, reason)
    dist.barrier()
    result.stopped = reason ~= "finished" and reason ~= "time_limit" and reason or nil
    return result
end

-- ---------------------------------------------------------------- the whole run

-- Validation needs at least one held-out id (one target): an empty split would train
-- the whole run and then have no bits per byte to report.

-- The script's config: train.defaults and the kind's sections, with the script's
-- own defaults over them; docs and rules to match.
local function merged_defaults(spec)
    local M = spec.M
    local d = config.copy(train.defaults)
    for k, v in pairs(M.sections) do d[k] = config.copy(v) end
    local function over(dst, src, path)
        for k, v in pairs(src) do
            if dst[k] == nil then error(("train: the script's defaults name an unknown key %s%s"):format(path, k), 3) end
            if type(v) == "table" and not getmetatable(v) then over(dst[k], v, path .. k .. ".") else dst[k] = v end
        end
    end
    over(d, spec.defaults or {}, "")
    d.kind = M.kind
    local docs = config.copy(train.docs)
    for k, v in pairs(M.docs) do docs[k] = v end
    docs.kind = "model kind (fixed by the script)"
    local rules = {kind = {M.kind}}
    for k, v in pairs(train.rules) do rules[k] = v end
    for k, v in pairs(M.rules) do rules[k] = v end
    return d, docs, rules, train.internal(M)
end

-- Keys a run writes itself (config.parse's opts.internal): kind and the kind's own
-- (M.internal, e.g. the BLT's patching.calibrated); given by the user they are refused,
-- since they would silently change what the run does (a calibrated BLT skips calibration).
function train.internal(M)
    local t = {kind = "the script fixes the model kind"}
    for k, v in pairs(M.internal or {}) do t[k] = v end
    return t
end

-- Keys a rank may set for itself: how it uses its own machine, not what it computes
-- (the ranks' sum of gradients does not depend on their thread counts).
train.PER_RANK = {["train.threads"] = true}

-- A number as text that reads back to the same number (the ranks compare these).
local function exact(v)
    if math.type(v) == "float" then return ("%.17g"):format(v) end
    return tostring(v)
end

-- Under mpirun every rank must run the same config: rank 0's resolved config (every key
-- but train.PER_RANK), its flags and, when resuming, the checkpoint's step and a hash of
-- its bytes are compared by every rank before the first other collective. A difference
-- (a different command line on one rank, a resume on one rank only, another copy of the
-- checkpoint) would otherwise crash, hang or silently train something else; it stops
-- every rank in order with status 2 and the keys that differ.
local function agree_config(spec, cfg, flags, saved)
    if dist.size() == 1 then return end
    local entries = {}
    for _, kv in ipairs(config.flat(cfg or {})) do
        local p = kv:match("^([^=]*)=")
        if not train.PER_RANK[p] then entries[#entries + 1] = {p, exact(config.get(cfg, p))} end
    end
    for _, f in ipairs {"help", "resume", "fork"} do
        entries[#entries + 1] = {"--" .. f, flags[f] ~= nil and tostring(flags[f]) or "(not given)"}
    end
    local ck = "(none)"
    if saved then ck = ("step %s, file hash %s"):format(tostring(saved.step), tostring(core.hash_file(flags.resume))) end
    entries[#entries + 1] = {"checkpoint", ck}
    local ranks, differ = dist.disagreements(entries)
    if not ranks then return end
    local prefix = ("[rank %d] %s: "):format(dist.rank(), spec.name)
    local own = {}
    for p in pairs(train.PER_RANK) do own[#own + 1] = p end
    table.sort(own)
    if #differ > 0 then
        local parts = {}
        for _, d in ipairs(differ) do
            parts[#parts + 1] = ("%s: %s on rank 0, %s on rank %d"):format(d.key, d.root or "(absent)",
                                                                           d.mine or "(absent)", dist.rank())
        end
        -- one write per message: the ranks' lines must not interleave
        io.stderr:write(prefix .. "the ranks were started with different settings: " .. table.concat(parts, "; ")
                        .. ". Every rank must run the same config (only " .. table.concat(own, ", ") .. " may differ)\n")
    elseif dist.is_root() then
        local names = {}
        for _, r in ipairs(ranks) do names[#names + 1] = tostring(r) end
        io.stderr:write(prefix .. "rank(s) " .. table.concat(names, ", ") .. " were started with settings that differ "
                        .. "from rank 0's (each names its keys); nothing was run\n")
    end
    io.stderr:flush()
    dist.barrier() -- every message is out before any rank ends
    dist.finalize() -- all ranks know: an orderly end, not an abort
    os.exit(train.EXIT.config)
end

-- The problem with key=value words meant for a run of model `kind` (an experiment's
-- args.*: words a sweep adds to its training runs), found without running anything:
-- each word must be key=value with a key, a type and a value that kind's scripts take.
-- nil when they are fine, else the first problem as one line.
function train.words_problem(kind, words)
    local okm, M = pcall(models.get, kind)
    if not okm then return tostring(M) end
    for _, w in ipairs(words) do
        if not w:match("^[%a_][%w_%.]*=") then return ("'%s' is not a key=value word"):format(w) end
    end
    local defaults, _, rules = merged_defaults({M = M})
    local ok, cfg = pcall(config.parse, defaults, words)
    if ok then ok, cfg = pcall(config.check, cfg, rules, defaults) end
    if not ok then return (tostring(cfg):gsub("^config: ", "")) end
end

-- train.precision for this run's products (train.run sets fp32 again at the end); bf16
-- where it would be slower than fp32 (no AVX512_BF16 or oneDNN, BLT_NO_BF16=1) is refused.
local function set_precision(p)
    local ok, err = pcall(core.set_precision, p)
    if not ok then
        config_error(("train.precision = %s is refused: %s; use train.precision=fp32")
            :format(p, require("blt.util").message(err):gsub("^blt%.set_precision: ", "")))
    end
end

local function run_inner(spec)
    local data = require "blt.data"
    local checkpoint = require "blt.checkpoint"
    spec.M = models.get(spec.kind or "bytelm")
    local defaults, docs, rules, internal = merged_defaults(spec)
    local cfg, flags, saved = parse(spec, defaults, rules, internal)
    agree_config(spec, cfg, flags, saved)
    if flags.help then
        print(("usage: ./blt %s [key=value ...] [--config FILE.lua] [--resume CHECKPOINT [--fork NAME]] [--check]\n"
               .. "(--check: validate the settings and the corpus, then exit without training)\n\n"
               .. "keys (default, meaning; allowed values):\n%s\n\nexit status: 0 finished, 2 bad config, "
               .. "3 stopped on non-finite values, 4 a run file could not be written, "
               .. "130/143/129 stopped by SIGINT/SIGTERM/SIGHUP (checkpoint saved)")
              :format(spec.script or spec.name, config.help(defaults, docs, rules, internal)))
        return nil
    end
    local t = cfg.train
    if t.threads > 0 then core.set_threads(t.threads) end
    set_precision(t.precision)
    if t.batch < dist.size() then
        config_error(("train.batch = %d is less than the %d processes: each needs at least one row of the batch")
            :format(t.batch, dist.size()))
    end
    local function say(msg) if dist.is_root() then io.stderr:write(msg) end end
    local okc, corpus = pcall(data.open, cfg.data.path, {val_fraction = cfg.data.val_fraction})
    if not okc then config_error("data.path: " .. tostring(corpus)) end
    check_corpus(cfg, corpus)
    local function note() if flags.note then say(spec.name .. ": " .. flags.note .. "\n") end end
    if flags.check then -- what experiments/sweep.lua asks of every point before any trains
        if spec.M.preflight and not saved then -- the checks of the setup that cost no training
            local okp, errp = pcall(spec.M.preflight, cfg)
            if not okp then config_error(errp) end
        end
        note()
        corpus:close()
        say(spec.name .. ": the settings are valid (--check: nothing was run)\n")
        return nil
    end
    -- a new run's own preparation (the BLT: its entropy model, calibration); a resumed
    -- or forked run takes everything from its checkpoint
    local source = saved
    if not saved and spec.M.setup then
        local oks, res = pcall(spec.M.setup, cfg, corpus, function(msg) say(spec.name .. ": " .. msg .. "\n") end)
        if not oks then config_error(res) end
        source = res
    end
    note() -- after every check: a refused run prints one line
    if saved then saved.path = flags.resume end
    -- rank 0 chooses, creates and locks the folder; the others learn its name
    local dir = dist.on_root(function() return take_folder(spec, cfg, flags) end, ConfigError)
    cfg.out.name = cfg.out.name or dir:match("[^/]+$")
    local run = {cfg = cfg, dir = dir, corpus = corpus, ckpt_path = dir .. "/checkpoint.h5",
                 metrics_path = dir .. "/metrics.h5", step = 0, skipped = 0, eval_time = 0, elapsed0 = 0}
    run.model = spec.M.build(cfg, t.seed, source)
    run.opt = optim.AdamW(run.model, {lr = t.lr, beta1 = t.beta1, beta2 = t.beta2, eps = t.eps,
                                      weight_decay = t.weight_decay})
    -- a corpus too short for one row is the user's mistake, not a bug
    local util_message = require("blt.util").message
    local oks, sampler = pcall(corpus.sampler, corpus, {batch = t.batch, seq_len = t.seq_len + 1, seed = t.seed})
    if not oks then config_error(table.concat(corpus.paths, ", ") .. ": " .. util_message(sampler)) end
    run.sampler = sampler
    if saved then
        local okr, err = pcall(models.load_into, run.model, saved, {path = flags.resume})
        if not okr then config_error(err) end
        -- another optimiser's state (SGD's has no v) or a damaged sampler state: the checkpoint's fault
        local oko, erro = pcall(function()
            run.opt:load_state({kind = saved.optim.kind, step = saved.optim.step, m = saved.optim.m, v = saved.optim.v})
            run.sampler:set_state(saved.state.rng)
        end)
        if not oko then config_error(("--resume %s: %s"):format(flags.resume, require("blt.util").message(erro))) end
        run.step = saved.step
        run.saved_step, run.saved_path = saved.step, flags.resume -- a fork's last good state is its source
        run.elapsed0 = tonumber(saved.state.elapsed) or 0
        if flags.fork then run.forked_from = flags.resume else run.resumed_from = flags.resume end
    end
    run.start_step = run.step
    if dist.is_root() then write_file_atomic(dir .. "/config.json", json.encode(cfg) .. "\n") end
    local info = corpus:info()
    say(("%s: %d parameters, %d threads%s; corpus %s: %d train / %d validation ids\n")
        :format(spec.name, run.model:num_params(), core.threads(),
                dist.size() > 1 and (" per process, %d processes (%s)"):format(dist.size(), dist.library()) or "",
                table.concat(corpus.paths, ", "), info.train, info.val))
    say(("%s: config (* = set on the command line; all of it is in %s/config.json):\n%s\n")
        :format(spec.name, dir, config.describe(cfg, flags.given)))
    say(("%s: run folder %s%s; schedule %s\n"):format(spec.name, dir,
        flags.fork and (" (forked from " .. flags.resume .. " at step " .. run.step .. ")")
        or flags.resume and (" (resumed at step " .. run.step .. ")") or "", describe_schedule(t)))
    if dist.is_root() then
        run.metrics = guarded(writing(checkpoint.Metrics, run.metrics_path, {flush_every = cfg.out.metrics_flush,
                                                            units = train.units(spec.M),
                                                            append = flags.resume ~= nil and not flags.fork}))
        if flags.resume and not flags.fork then truncate_metrics(run.metrics, run.metrics_path, run.step) end
    else -- one writer: the other ranks' rows go nowhere
        local none = function() end
        run.metrics = {log = none, annotate = none, close = none, truncate = none, flush = none}
    end
    core.catch_signals(true)
    run.start, run.allreduce0 = core.now(), dist.allreduce_seconds
    local ok, res = pcall(function() return report(spec, run, step_loop(spec, run)) end)
    if ok then return res end
    -- the metrics file gets the rows so far if it can (a resume drops those after the checkpoint)
    pcall(run.metrics.close, run.metrics)
    if getmetatable(res) == WriteError then res.run = run end
    error(res, 0)
end

function train.run(spec)
    local ok, res = pcall(run_inner, spec)
    core.set_precision("fp32") -- the next run in this process (a sweep's) sets its own
    if ok then return res end
    core.catch_signals(false)
    if getmetatable(res) == ConfigError then
        -- every rank meets the same config error, but one may meet it alone (a file on its machine)
        io.stderr:write(dist.size() > 1 and ("[rank %d] "):format(dist.rank()) or "", spec.name, ": ",
                        require("blt.util").message(res), "\n")
        os.exit(train.EXIT.config)
    end
    if getmetatable(res) == WriteError then
        local run = res.run
        io.stderr:write(spec.name, ": cannot write a run file: ", tostring(res.msg), "\n")
        if run then
            io.stderr:write(("%s: stopped at step %d; %s\n"):format(spec.name, run.step, run.saved_step and
                ("the last checkpoint (step %d) is intact; once the file can be written, continue with:\n  ./blt %s --resume %s")
                    :format(run.saved_step, spec.script or "SCRIPT", run.ckpt_path) or "no checkpoint was saved"))
        end
        io.stderr:flush()
        os.exit(train.EXIT.write)
    end
    error(res, 0)
end

-- Runs a training script and exits with the run's status (0 when finished).
function train.main(spec)
    local result = train.run(spec)
    if result and result.exit_status ~= 0 then
        io.stdout:flush()
        dist.finalize() -- every rank agreed on this status: an orderly end, not an abort
        os.exit(result.exit_status)
    end
    return result
end

return train
