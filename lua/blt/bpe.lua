-- Byte-level BPE, the token baseline (docs/model.md "The token baseline: BPE"; C side:
-- core/bpe.c, core/lua_bpe.c).
--
--   local bpe = require "blt.bpe"
--   local tok = bpe.train(corpus_or_text, {vocab = 4096})   -- or {merges = 3836}
--   local t = tok:encode("In the beginning")                -- int32 [M] token ids
--   tok:decode(t)                                           -- "In the beginning"
--   local tokens, lengths = tok:encode_rows(rows)           -- byte rows int32 [B,N] -> token rows [B,M]
--   tok.merges                                              -- int32 [n_merges, 2] (checkpoint it)
--   bpe.new(merges)                                         -- the tokenizer of a saved merge list
--
-- Ids: the framework's (blt.ids): PAD, BOS, EOS, RESERVED, byte b = b + OFFSET, then merge
-- k (1-based) = VOCAB + k - 1. Every byte string round-trips: decode(encode(s)) == s.
local core = require "blt.core"
local ids = require "blt.ids"

local bpe = {}

local Tokenizer = {}
Tokenizer.__index = Tokenizer

local function wrap(handle)
    local info = core.bpe_info(handle)
    return setmetatable({_t = handle, merges = core.bpe_merges(handle), n_merges = info.merges, vocab = info.vocab},
                        Tokenizer)
end

-- bpe.new(merges): merges int32 (or float32 holding whole numbers, a checkpoint's copy)
-- [k, 2]. Refuses special ids, ids not yet defined, repeated pairs, over-long tokens.
function bpe.new(merges)
    if not core.is_tensor(merges) then
        error(("blt.bpe.new: merges must be a tensor [k, 2], got %s"):format(type(merges)), 2)
    end
    local ok, h = pcall(core.bpe_new, merges)
    if not ok then error(h, 2) end
    return wrap(h)
end

-- bpe.train(src, {vocab =, merges =, min_count = 2, bytes = 0}) -> tokenizer
-- src: a string of bytes, an int32 tensor [N] of ids (special ids separate chunks), or a
-- corpus (blt.data; its train split, EOS separating documents). vocab: the total
-- vocabulary (VOCAB + merges, default 4096); or merges: their number. bytes > 0: only
-- the first that many ids of src. Stops early when no pair occurs min_count times
-- (tok.n_merges tells how many were learned).
function bpe.train(src, opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("blt.bpe.train: opts must be a table", 2) end
    for k in pairs(opts) do
        if k ~= "vocab" and k ~= "merges" and k ~= "min_count" and k ~= "bytes" then
            error(("blt.bpe.train: unknown option '%s' (known: vocab, merges, min_count, bytes)"):format(tostring(k)), 2)
        end
    end
    local n
    if opts.merges ~= nil then
        if opts.vocab ~= nil then error("blt.bpe.train: give vocab or merges, not both", 2) end
        n = math.tointeger(opts.merges)
        if not n or n < 0 then error(("blt.bpe.train: merges must be an integer >= 0, got %s"):format(tostring(opts.merges)), 2) end
    else
        local v = opts.vocab == nil and 4096 or math.tointeger(opts.vocab)
        if not v or v < ids.VOCAB then
            error(("blt.bpe.train: vocab must be an integer >= %d (the byte and special ids), got %s")
                  :format(ids.VOCAB, tostring(opts.vocab)), 2)
        end
        n = v - ids.VOCAB
    end
    local bytes = opts.bytes == nil and 0 or math.tointeger(opts.bytes)
    if not bytes or bytes < 0 then error(("blt.bpe.train: bytes must be an integer >= 0, got %s"):format(tostring(opts.bytes)), 2) end
    local data = src
    if type(src) == "table" and getmetatable(src) and src.info and src.ids then -- a corpus
        local train = src:info().train
        data = src:ids(1, bytes > 0 and math.min(bytes, train) or train)
    elseif type(src) == "string" then
        if bytes > 0 then data = src:sub(1, bytes) end
    elseif core.is_tensor(src) then
        if bytes > 0 and bytes < src:numel() then data = core.narrow(src, 1, 1, bytes) end
    else
        error(("blt.bpe.train: src must be a string, an int32 tensor of ids or a corpus, got %s"):format(type(src)), 2)
    end
    local ok, merges = pcall(core.bpe_train, data, n, opts.min_count)
    if not ok then error(merges, 2) end
    return wrap(core.bpe_new(merges))
end

-- tok:encode(s) -> int32 [M]: s a string (bytes), an int32 tensor [N] or array of ids
-- (special ids pass through as tokens, PAD is dropped).
function Tokenizer:encode(s)
    local ok, t = pcall(core.bpe_encode, self._t, s)
    if not ok then error(t, 2) end
    return t
end

-- tok:encode_rows(rows int32 [B,N]) -> tokens int32 [B,M] (PAD-padded), {M_b}: each
-- row on its own.
function Tokenizer:encode_rows(rows)
    local ok, t, lengths = pcall(core.bpe_encode_rows, self._t, rows)
    if not ok then error(t, 2) end
    return t, lengths
end

-- tok:decode(tokens int32 [N] or array) -> string; special ids give no bytes.
function Tokenizer:decode(tokens)
    local ok, s = pcall(core.bpe_decode, self._t, tokens)
    if not ok then error(s, 2) end
    return s
end

-- The bytes of one token id.
function Tokenizer:token(id) return self:decode({id}) end

function Tokenizer:__tostring() return ("blt.bpe tokenizer (%d merges, vocab %d)"):format(self.n_merges, self.vocab) end

bpe.Tokenizer = Tokenizer

return bpe
