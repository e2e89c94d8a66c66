-- Bits per byte of any checkpoint (ByteLM or BLT) on any files.
--   ./blt scripts/evaluate.lua model=runs/bytelm-1/checkpoint.h5 [seq_len=N] [batch=N] [max_bytes=N] -- FILE...
--
-- Each file is read as the training corpus reads it (blt.data: its bytes, then EOS)
-- with all of it the validation split, and scored in the trainer's validation
-- windows (rows [BOS, seq_len ids], train.evaluate), so every byte and the EOS are
-- predicted exactly once and a file holding a run's validation bytes gets the run's
-- val_bpb. A folder is one corpus of its files. For a BLT the mean patch size
-- (bytes per patch, weighted by bytes) is reported too.
local config = require "blt.config"
local core = require "blt.core"
local data = require "blt.data"
local models = require "blt.models"
local progress = require "blt.progress"

local LN2 = math.log(2)

local function positive(v)
    if v ~= nil and (math.type(v) ~= "integer" or v < 1) then return "must be an integer >= 1" end
end

local opts, flags = config.script {
    name = "evaluate", args = arg, words = true,
    usage = [[
usage: ./blt scripts/evaluate.lua model=CKPT [seq_len=N] [batch=N] [max_bytes=N] [--] FILE...
Bits per byte of the checkpoint's model (any kind) on each FILE (or folder) and in total:
rows [BOS, seq_len bytes] as in the trainer's validation, every byte predicted once.]],
    defaults = {model = config.OPTIONAL, seq_len = config.OPTIONAL, batch = config.OPTIONAL, max_bytes = 0},
    docs = {model = "the checkpoint (checkpoint.h5 of a run)",
            seq_len = "bytes per row (unset: the checkpoint's train.seq_len)",
            batch = "rows per forward pass (unset: the checkpoint's eval.batch, at most 64k positions a pass)",
            max_bytes = "stop each file after about this many predicted bytes (0: all)"},
    rules = {seq_len = positive, batch = positive, max_bytes = ">= 0"},
}
if not opts then return end -- --help

local util = require "blt.util"
local function fail(fmt, ...) util.die("evaluate", fmt:format(...)) end

if not opts.model then fail("model=CKPT is required (a checkpoint.h5 of a run)") end
local files = flags.words
if #files == 0 then fail("no FILE to evaluate (give one or more paths after the key=value settings)") end
for _, path in ipairs(files) do
    local f, why = util.open_read(path)
    if f then f:close() elseif not core.listdir(path) then fail("FILE %s", why) end
end

local ok, model, run = pcall(models.load, opts.model)
if not ok then fail("model=%s", util.about(opts.model, util.message(model):gsub("^blt%.models%.load: ", ""):gsub("^checkpoint%.load: ", ""))) end
local cfg = run.config or {}
local seq_len = opts.seq_len or (cfg.train and cfg.train.seq_len) or 256
-- unset, the run's eval.batch, but no more rows than keep a pass at about 64k positions
local batch = opts.batch or math.max(1, math.min((cfg.eval and cfg.eval.batch) or 8, 65536 // (seq_len + 1)))
local kind = cfg.kind or "bytelm"
print(("model %s: %s, step %d; rows [BOS, %d bytes], batch %d"):format(opts.model, kind, run.step or 0, seq_len, batch))

-- Summed nats, predicted bytes and (BLT) bytes-weighted patch mean of one file.
local function evaluate(path)
    local okc, corpus = pcall(data.open, path, {val_fraction = 1})
    if not okc then fail("FILE %s: %s", path, tostring(corpus):gsub("^blt%.data%.open: ", "")) end
    local total = corpus:info().val
    if opts.max_bytes > 0 then total = math.min(total, opts.max_bytes) end
    local bar = progress.new {total = total, unit = "B", label = path}
    local nats, count, patch_bytes, patch_sum = 0.0, 0, 0, 0.0
    core.no_grad(function()
        for rows in corpus:val_windows {seq_len = seq_len + 1, batch = batch} do
            local sum, n = models.nats(model, rows)
            nats, count = nats + sum, count + n
            if model.last_patch_mean then
                patch_bytes, patch_sum = patch_bytes + n, patch_sum + n * model.last_patch_mean
            end
            bar:update(math.min(count, total), {("%.4f bits/byte"):format(nats / (LN2 * math.max(1, count)))})
            if opts.max_bytes > 0 and count >= opts.max_bytes then break end
        end
    end)
    bar:finish()
    corpus:close()
    return nats, count, patch_bytes, patch_sum
end

local function line(name, nats, count, pb, ps)
    local s = ("%s: %d bytes, %.6f bits/byte"):format(name, count, count > 0 and nats / (LN2 * count) or 0 / 0)
    if pb > 0 then s = s .. (", mean patch %.3f bytes"):format(ps / pb) end
    return s
end

local N, C, PB, PS = 0.0, 0, 0, 0.0
for _, path in ipairs(files) do
    local nats, count, pb, ps = evaluate(path)
    print(line(path, nats, count, pb, ps))
    N, C, PB, PS = N + nats, C + count, PB + pb, PS + ps
end
if #files > 1 then print(line("total", N, C, PB, PS)) end
