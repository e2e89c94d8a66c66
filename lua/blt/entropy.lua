-- blt.entropy: the entropy model's next-byte entropies (docs/model.md), in
-- batches, with reset_on_newline, cached per (corpus, model) in HDF5.
--
--   local model = entropy.load_model("runs/entropy-1/checkpoint.h5")
--   local e = entropy.of_text(model, "Hello")        -- e[t+1]: entropy (nats) at row position t
--   local ents = entropy.of_rows(model, rows, {reset_on_newline = true})  -- float32 [B,N]
--   local cache = entropy.corpus(model_path, corpus, {split = "val"})      -- cached stream entropies
local blt = require "blt"
local core = require "blt.core"
local ByteLM = require "blt.models.bytelm"
local checkpoint = require "blt.checkpoint"
local tokens = require "blt.ids"

local entropy = {}
local NEWLINE = tokens.of_byte(10) -- "\n"

-- A ByteLM from a checkpoint written by a training script (its config's model section).
function entropy.load_model(path)
    local models = require "blt.models"
    local ok, model, run = pcall(models.load, path)
    if not ok then error("entropy.load_model: " .. tostring(model):gsub("^blt%.models%.load: ", ""), 2) end
    if getmetatable(model) ~= ByteLM then
        error(("entropy.load_model: %s holds a model of kind '%s', not a ByteLM"):format(path, run.config.kind), 2)
    end
    return model
end

-- Segment ids for reset_on_newline: the newline belongs to the old context; the
-- token after it starts a new one. rows int32 [B,N] -> int32 [B,N].
function entropy.newline_segments(rows)
    local B, N = rows:size(1), rows:size(2)
    local seg = blt.zeros({B, N}, "int32")
    local ids = rows:totable()
    for b = 1, B do
        local s, r = 0, ids[b]
        for t = 1, N do
            seg:set(s, b, t)
            if r[t] == NEWLINE then s = s + 1 end
        end
    end
    return seg
end

-- Positions fed at once in a long row (at least CHUNK, and REACH_SHARE times the
-- context recomputed before each chunk, so that context costs at most 1/8 more), and
-- chunks of equal shape run BATCH together: memory stays bounded for any length and
-- its buffers come back from the pool (core/mem.c) instead of fresh pages. Measured on
-- the demo's entropy model (d 192, 3 layers, window 512; 256 KB): one chunk of 12264 at
-- a time ran at 30k bytes/s in 1.6 GB, four at a time at 27k in 3.7 GB, chunks of
-- 4096 at 23k in 0.6 GB, the whole row at 15k.
entropy.CHUNK, entropy.REACH_SHARE, entropy.BATCH = 8192, 8, 1

-- Positions before a chunk that reach its entropies: each layer looks window - 1 back.
local function reach(model) return model.config.layers * (model.config.window - 1) end

-- The chunk of a long row for this model (opts.chunk when given).
function entropy.chunk(model, opts)
    if opts and opts.chunk then return opts.chunk end
    return math.max(entropy.CHUNK, entropy.REACH_SHARE * reach(model))
end

-- Entropies of one long row of n positions whose ids come from row_ids(p0, p1) (row
-- positions [p0, p1), 0-based, as a [1, p1 - p0] int32 tensor). The row is cut into
-- chunks of `chunk` positions; each chunk is fed with the context before it that the
-- model's windows can reach, so its entropies equal those of the one long row, and
-- chunks of equal shape run `batch` at a time. Returns a float32 [n] tensor.
local function of_long_row(model, n, row_ids, opts)
    local chunk, batch = entropy.chunk(model, opts), opts.batch or entropy.BATCH
    local ctx_max = reach(model)
    local out = blt.zeros({n})
    -- chunks starting at pos, pos + chunk, ...: [pos - ctx, pos + len) fed, [pos, pos + len) kept
    local function run(starts, ctx, len)
        core.scope(function()
            local rows = {}
            for i, pos in ipairs(starts) do rows[i] = row_ids(pos - ctx, pos + len) end
            local r = blt.concat(rows, 1)
            local seg = opts.reset_on_newline and entropy.newline_segments(r) or nil
            local e = model:entropies(r, seg)
            for i, pos in ipairs(starts) do
                blt.narrow(out, 1, pos + 1, len):copy(blt.narrow(blt.narrow(e, 1, i, 1), 2, ctx + 1, len):reshape({len}))
            end
        end)
    end
    local pos = 0
    while pos < n do
        local len = math.min(chunk, n - pos)
        local ctx = math.min(pos, ctx_max)
        if ctx < ctx_max or len < chunk then -- the first chunks (short context) and the last (short)
            run({pos}, ctx, len)
            pos = pos + len
        else -- full chunks with full context: batched
            local starts = {}
            while #starts < batch and pos + chunk <= n do
                starts[#starts + 1] = pos
                pos = pos + chunk
            end
            run(starts, ctx_max, chunk)
        end
    end
    return out
end

-- float32 [B,N]: e[b][t] = entropy of the prediction made at t (tokens <= t).
-- Rows longer than a chunk (entropy.chunk) go through of_long_row one by one, so
-- any length runs in bounded, pooled memory; opts.chunk = 0 feeds them whole.
function entropy.of_rows(model, rows, opts)
    opts = opts or {}
    local B, N = rows:size(1), rows:size(2)
    if not model.config.window or opts.chunk == 0 or N <= entropy.chunk(model, opts) then
        local seg = opts.reset_on_newline and entropy.newline_segments(rows) or nil
        return model:entropies(rows, seg)
    end
    local out = blt.zeros({B, N})
    for b = 1, B do
        local row = blt.narrow(rows, 1, b, 1)
        local e = of_long_row(model, N, function(p0, p1) return blt.narrow(row, 2, p0 + 1, p1 - p0):contiguous() end, opts)
        blt.narrow(out, 1, b, 1):copy(e:reshape({1, N}))
    end
    return out
end

local function text_row(text)
    return blt.tensor({tokens.row(text)}, "int32")
end

-- Lua array of #text + 1 entropies for the row [BOS, bytes of text].
function entropy.of_text(model, text, opts)
    local e = entropy.of_rows(model, text_row(text), opts)
    return e:totable()[1]
end

-- Entropies of a stretch of the corpus stream, [first, first + n) (1-based stream
-- positions), as one row [BOS, ids], in chunks (of_long_row) read from the corpus.
-- Returns a float32 [n + 1] tensor (position 0 = BOS).
function entropy.of_stream(model, corpus, first, n, opts)
    opts = opts or {}
    -- ids of row positions [p0, p1) (position 0 is BOS), as a [1, p1 - p0] tensor
    local function row_ids(p0, p1)
        local parts = {}
        if p0 == 0 then parts[1] = blt.ones({1}, "int32") end
        local from = math.max(p0, 1)
        if p1 > from then parts[#parts + 1] = corpus:ids(first + from - 1, p1 - from) end
        return blt.concat(parts, 1):reshape({1, p1 - p0})
    end
    return of_long_row(model, n + 1, row_ids, opts)
end

local function file_hash(path)
    local h = core.hash_file(path)
    if not h then error(("entropy: cannot read %s"):format(path), 3) end
    return h
end

-- Cached entropies of the validation (or train) split of a corpus under a model.
-- The cache (HDF5) records the model file's content hash and the corpus identity;
-- a mismatch is reported and the cache rebuilt, never used.
-- opts: split = "val" | "train", max_bytes (0: all), cache = path, reset_on_newline.
function entropy.corpus(model_path, corpus, opts)
    opts = opts or {}
    local split = opts.split or "val"
    local info = corpus:info()
    local first, n
    if split == "val" then first, n = info.train + 1, info.val
    else first, n = 1, info.train end
    if opts.max_bytes and opts.max_bytes > 0 then n = math.min(n, opts.max_bytes) end
    local ident = {
        model_hash = file_hash(model_path),
        corpus = table.concat(corpus.paths, ";") .. ("|%d bytes|%d docs"):format(info.bytes, info.documents),
        corpus_hash = core.hash_tensor(corpus:ids(first, n)),
        split = split, first = first, n = n, reset_on_newline = opts.reset_on_newline and 1 or 0,
    }
    local cache = opts.cache or (model_path:gsub("%.h5$", "") .. ".entropies-" .. split .. ".h5")
    -- anything at that path (a FIFO too, which checkpoint.load refuses without opening it) is
    -- checked; io.open would block on a FIFO
    if core.file_kind(cache) then
        local ok, run = pcall(checkpoint.load, cache, {finite = true})
        local why
        if not ok then why = "unreadable: " .. tostring(run)
        else
            for k, v in pairs(ident) do
                if run.config[k] ~= v then why = ("%s differs (cache %s, now %s)"):format(k, tostring(run.config[k]), tostring(v)) break end
            end
        end
        if not why then return run.params.entropies, cache, true end
        io.stderr:write(("entropy: cache %s is stale (%s); recomputing\n"):format(cache, why))
    end
    local model = entropy.load_model(model_path)
    local t0 = core.now()
    local e = entropy.of_stream(model, corpus, first, n, opts)
    local dt = core.now() - t0
    checkpoint.save(cache, {config = ident, step = 0, params = {entropies = e}})
    io.stderr:write(("entropy: %d bytes in %.1f s (%.0f bytes/s), cached in %s\n"):format(n, dt, n / dt, cache))
    return e, cache, false, n / dt
end

return entropy
