package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- The token baseline: byte-level BPE (core/bpe.c, blt.bpe) and the model kind bpe_lm
-- (docs/model.md "The token baseline: BPE"): hand-computed merges and tie-breaking,
-- pre-tokenization, the C merge loop against a naive Lua one, round trips of any bytes,
-- refused inputs, bits per byte counting each validation byte once, causality, FLOPs
-- against the core's multiply-add counter, and a tiny training run that loads again.
local T = require "tap"
local U = require "testutil"
local blt = require "blt"
local core = require "blt.core"
local ids = require "blt.ids"
local bpe = require "blt.bpe"
local models = require "blt.models"
local BpeLM = require "blt.models.bpe_lm"
local flops = require "blt.flops"

local bin = os.getenv("BLT_BIN") or "./blt"
local dir = U.tmpdir()
local function b(ch) return ids.of_byte(ch:byte()) end
local M0 = ids.VOCAB -- id of the first merge
local function list(t) return T.flatten(t:totable()) end
local function same(a, c) return table.concat(a, ",") == table.concat(c, ",") end

-- ---- hand-computed merges ----
do
    -- "aaabdaaabac": pairs counted with overlaps: aa 4, ab 2, others 1 -> merge (a, a) = Z.
    -- Left to right, aaab -> Z a b: Z a b d Z a b a c: Za 2 and ab 2 tie, and the smaller
    -- first id wins: (a, b) = Y. Then Z Y d Z Y a c: (Z, Y) = X occurs twice; then every
    -- pair occurs once (< min_count 2): three merges.
    local tok = bpe.train("aaabdaaabac", {merges = 10})
    T.is(tok.n_merges, 3, "aaabdaaabac: three merges, then no pair occurs twice")
    T.ok(same(list(tok.merges), {b "a", b "a", b "a", b "b", M0, M0 + 1}), "merges (a,a), (a,b), (Z,Y) in order",
         table.concat(list(tok.merges), " "))
    T.is(tok.vocab, M0 + 3, "vocab = 260 + merges")
    T.ok(same(list(tok:encode("aaabdaaabac")), {M0 + 2, b "d", M0 + 2, b "a", b "c"}), "encodes as X d X a c")
    T.is(tok:decode(tok:encode("aaabdaaabac")), "aaabdaaabac", "and decodes back")
    -- ties all the way: abcd with min_count 1: (a,b) (smallest first id), then (c,d), then (X,Y)
    local t2 = bpe.train("abcd", {merges = 10, min_count = 1})
    T.ok(same(list(t2.merges), {b "a", b "b", b "c", b "d", M0, M0 + 1}), "ties: the smaller first id, then second",
         table.concat(list(t2.merges), " "))
    T.is(bpe.train("abcd", {merges = 2, min_count = 1}).n_merges, 2, "stops after the merges asked for")
    T.is(bpe.train("abcd", {vocab = M0 + 1, min_count = 1}).n_merges, 1, "vocab = 260 + merges")
    T.is(bpe.train("", {merges = 5}).n_merges, 0, "no text: no merge")
end

-- ---- pre-tokenization ----
do
    -- merges that would cross chunk boundaries never apply
    local tok = bpe.new(core.tensor({{b " ", b "t"}, {b "a", b " "}, {b "a", b "1"}, {b " ", b " "}, {b "e", b "\n"}},
                                    "int32"))
    T.ok(same(list(tok:encode("a t")), {b "a", M0}), "a space joins the word after it (\" t\"), not the one before")
    T.ok(same(list(tok:encode("a1")), {b "a", b "1"}), "letters and digits are separate chunks")
    T.ok(same(list(tok:encode("a  t")), {b "a", M0 + 3, b "t"}), "two spaces: a whitespace run, then the word")
    T.ok(same(list(tok:encode("e\n")), {b "e", b "\n"}), "a letter and a newline are separate chunks")
    -- training sees the same chunks: "ab ab" never merges across the space
    local t2 = bpe.train(("xy "):rep(20), {merges = 10})
    for _, m in ipairs(t2.merges:totable()) do
        local bytes = t2:decode(m)
        T.ok(not bytes:find("y ", 1, true), ("no learned merge spans a word and the space after it (%q)"):format(bytes))
    end
    -- bytes >= 0x80 are letters: a UTF-8 word is one chunk
    local t3 = bpe.train(("é "):rep(10), {merges = 10})
    T.ok(t3:encode("é"):numel() == 1, "a two-byte UTF-8 letter merges into one token")
    -- a run longer than 64 bytes is cut: no token is longer than 64 bytes
    local t4 = bpe.train(("a"):rep(1000), {merges = 20})
    local longest = 0
    for id = M0, t4.vocab - 1 do longest = math.max(longest, #t4:token(id)) end
    T.ok(longest <= 64, "tokens of a long run are at most 64 bytes (" .. longest .. ")")
end

-- ---- the C merge loop against a naive Lua one ----
local function chunks_of(s)
    local function cls(c)
        if c == 32 or (c >= 9 and c <= 13) then return 0 end
        if (c >= 97 and c <= 122) or (c >= 65 and c <= 90) or c >= 128 then return 1 end
        if c >= 48 and c <= 57 then return 2 end
        return 3
    end
    local out, i, n = {}, 1, #s
    while i <= n do
        local j = i
        if s:byte(i) == 32 and i < n and cls(s:byte(i + 1)) ~= 0 then j = i + 1 end
        local c = cls(s:byte(j))
        j = j + 1
        while j <= n and j - i < 64 and cls(s:byte(j)) == c do j = j + 1 end
        out[#out + 1] = s:sub(i, j - 1)
        i = j
    end
    return out
end

local function naive_train(s, n_merges, min_count)
    local counts, words = {}, {}
    for _, c in ipairs(chunks_of(s)) do counts[c] = (counts[c] or 0) + 1 end
    for c, k in pairs(counts) do
        local w = {}
        for i = 1, #c do w[i] = ids.of_byte(c:byte(i)) end
        words[#words + 1] = {w = w, k = k}
    end
    local merges = {}
    for m = 0, n_merges - 1 do
        local pc = {}
        for _, wd in ipairs(words) do
            for i = 1, #wd.w - 1 do
                local key = wd.w[i] * 100000 + wd.w[i + 1]
                pc[key] = (pc[key] or 0) + wd.k
            end
        end
        local best, bc
        for key, c in pairs(pc) do
            if not best or c > bc or (c == bc and key < best) then best, bc = key, c end
        end
        if not best or bc < min_count then break end
        local a, c2 = best // 100000, best % 100000
        merges[#merges + 1] = a
        merges[#merges + 1] = c2
        for _, wd in ipairs(words) do
            local out, i = {}, 1
            while i <= #wd.w do
                if i < #wd.w and wd.w[i] == a and wd.w[i + 1] == c2 then out[#out + 1] = M0 + m; i = i + 2
                else out[#out + 1] = wd.w[i]; i = i + 1 end
            end
            wd.w = out
        end
    end
    return merges
end

local function lcg_text(seed, n, alphabet)
    local x, out = seed, {}
    for i = 1, n do
        x = (x * 1103515245 + 12345) % 2147483648
        local k = x // 65536 % #alphabet + 1
        out[i] = alphabet:sub(k, k)
    end
    return table.concat(out)
end

do
    local all_same = true
    local diag = ""
    for seed = 1, 6 do
        local s = lcg_text(seed, 3000, seed % 2 == 0 and "aab ba c\n1.aaa" or "abcab  ba\tx9,")
        local want = naive_train(s, 60, 2)
        local got = list(bpe.train(s, {merges = 60}).merges)
        if not same(got, want) then all_same = false; diag = ("seed %d: %d vs %d merges"):format(seed, #got // 2, #want // 2) end
    end
    T.ok(all_same, "the incremental C merge loop learns the naive loop's merges (6 random texts)", diag)
end

-- ---- round trips ----
-- the default corpus (built by scripts/make_corpus.sh in a fresh clone), else a long stand-in
local okc, kjv_path = pcall(require("blt.data").default_corpus)
local kjv = okc and U.read(kjv_path) or ("In the beginning God created the heaven and the earth.\n"):rep(12000)
local sample = kjv:sub(1, 200000)
local tok = bpe.train(sample, {vocab = 1024})
T.is(tok.n_merges, 1024 - ids.VOCAB, "1024 - 260 merges learned on 200 KB of text")
T.ok(blt.hash_tensor(tok.merges) == blt.hash_tensor(bpe.train(sample, {vocab = 1024}).merges),
     "training is deterministic")
do
    local random = lcg_text(7, 20000, (function()
        local t = {}
        for i = 0, 255 do t[#t + 1] = string.char(i) end
        return table.concat(t)
    end)())
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    local cases = {
        {"", "the empty string"}, {random, "20 KB of random bytes"}, {"\xff\xfe\xc3\x28\xa0\xa1\xe2\x82", "invalid UTF-8"},
        {"\0\0a\0 the\0", "NUL bytes"}, {all, "all 256 bytes"}, {all:reverse() .. all, "all 256 bytes, both ways"},
        {kjv:sub(-5000), "text"}, {(" "):rep(300) .. ("x"):rep(300), "long runs"},
    }
    local rtok = bpe.train(random, {vocab = 600, min_count = 1}) -- merges of binary data
    for _, c in ipairs(cases) do
        for _, tk in ipairs {tok, rtok} do
            local e = tk:encode(c[1])
            T.is(tk:decode(e), c[1], ("round trip: %s (%d merges)"):format(c[2], tk.n_merges))
            T.ok(same(list(tk:encode(tk:decode(e))), list(e)), ("encode(decode(t)) = t: %s"):format(c[2]))
        end
    end
    local e = tok:encode(kjv:sub(-20000))
    T.ok(20000 / e:numel() > 2, ("fewer tokens than bytes (%.2f bytes per token)"):format(20000 / e:numel()))
    -- the merges alone rebuild the tokenizer, from int32 or a checkpoint's float32 copy
    local again = bpe.new(tok.merges:float())
    T.ok(same(list(again:encode(kjv:sub(-3000))), list(tok:encode(kjv:sub(-3000)))), "bpe.new(float32 merges) encodes the same")
end

-- ---- ids with special tokens, rows ----
do
    local row = core.tensor({{ids.BOS, b "t", b "h", b "e", ids.EOS, b " ", b "t", b "h", b "e", ids.PAD, ids.PAD},
                             {ids.BOS, b "a", ids.PAD, ids.PAD, ids.PAD, ids.PAD, ids.PAD, ids.PAD, ids.PAD, ids.PAD, ids.PAD}},
                            "int32")
    local tokens, lengths = tok:encode_rows(row)
    local r1 = tokens:totable()[1]
    local want = {ids.BOS}
    for _, x in ipairs(list(tok:encode("the"))) do want[#want + 1] = x end
    want[#want + 1] = ids.EOS
    for _, x in ipairs(list(tok:encode(" the"))) do want[#want + 1] = x end
    local got = {}
    for i = 1, lengths[1] do got[i] = r1[i] end
    T.ok(same(got, want), "a row: BOS, tokens, EOS kept, tokens; chunks end at special ids", table.concat(got, " "))
    T.is(lengths[2], 2, "a short row: BOS and one token")
    T.is(tokens:size(2), lengths[1], "rows are padded to the longest")
    T.is(tokens:totable()[2][3], ids.PAD, "with PAD")
    T.is(tok:decode(tokens:narrow(1, 1, 1):reshape({-1})), "the the", "decoding drops special ids")
end

-- ---- refused inputs ----
do
    local M = function(t) return core.tensor(t, "int32") end
    T.raises(function() bpe.new("x") end, "merges must be a tensor", "bpe.new: not a tensor")
    T.raises(function() bpe.new(M {1, 2}) end, "must be %[k, 2%]", "bpe.new: wrong shape [2]")
    T.raises(function() bpe.new(M {{4, 5, 6}}) end, "must be %[k, 2%]", "bpe.new: wrong shape [1,3]")
    T.raises(function() bpe.new(M {{ids.BOS, b "a"}}) end, "merge 1 %(1, %d+%) uses id 1", "bpe.new: a special id")
    T.raises(function() bpe.new(M {{b "a", b "b"}, {M0 + 1, b "a"}}) end, "merge 2 .- uses id 261", "bpe.new: an id not yet defined")
    T.raises(function() bpe.new(M {{b "a", b "b"}, {M0 + 5, b "a"}}) end, "earlier merges", "bpe.new: a later id")
    T.raises(function() bpe.new(M {{b "a", 100000}}) end, "uses id 100000", "bpe.new: id out of range")
    T.raises(function() bpe.new(M {{b "a", b "b"}, {b "a", b "b"}}) end, "repeats merge 1", "bpe.new: a repeated pair")
    T.raises(function() bpe.new(core.tensor {{b "a", 101.5}}) end, "not a token id", "bpe.new: a fractional id")
    local chain = {{b "a", b "a"}}
    for k = 1, 6 do chain[#chain + 1] = {M0 + k - 1, M0 + k - 1} end
    T.raises(function() bpe.new(M(chain)) end, "token of 128 bytes", "bpe.new: a token longer than a chunk")
    T.raises(function() tok:encode(M {1, 300}) end, "id 300 at position 2", "encode: an id beyond the bytes")
    T.raises(function() tok:encode(M {{1, 5}}) end, "must be %[N%]", "encode: a 2-d tensor")
    T.raises(function() tok:encode(core.tensor {1, 5}) end, "int32", "encode: float32 ids")
    T.raises(function() tok:encode(42) end, "expected a string", "encode: a number")
    T.raises(function() tok:decode(M {tok.vocab}) end, "out of range 0%.%.", "decode: an id beyond the vocabulary")
    T.raises(function() tok:decode(M {-1}) end, "out of range", "decode: a negative id")
    T.raises(function() tok:decode("abc") end, "expected tokens", "decode: a string")
    T.raises(function() tok:encode_rows(M {1, 5}) end, "must be %[B, N%]", "encode_rows: a 1-d tensor")
    T.raises(function() bpe.train("abc", {vocab = 100}) end, "vocab must be an integer >= 260", "train: vocab too small")
    T.raises(function() bpe.train("abc", {merges = (1 << 20) + 1}) end, "out of range", "train: too many merges")
    T.raises(function() bpe.train("abc", {vocab = 300, merges = 3}) end, "not both", "train: vocab and merges")
    T.raises(function() bpe.train("abc", {vocabulary = 300}) end, "unknown option 'vocabulary'", "train: unknown option")
    T.raises(function() bpe.train(42) end, "src must be", "train: a number")
    T.raises(function() bpe.train("abc", {min_count = 0}) end, "min_count", "train: min_count 0")
end

-- ---- the model: loss, bits per byte, causality ----
local mcfg = {dim = 32, layers = 2, heads = 2, multiple_of = 32, window = 16}
local model = BpeLM.new(mcfg, 3, tok, 1024)
local function rows_from(text, B, N)
    local r = {}
    for i = 1, B do
        local row = {ids.BOS}
        for j = 1, N - 1 do row[j + 1] = ids.of_byte(text:byte((i - 1) * 97 + j)) end
        r[i] = row
    end
    return core.tensor(r, "int32")
end

do
    local rows = rows_from(kjv:sub(300001), 3, 40)
    -- padding and EOS in the batch
    local t = rows:totable()
    for j = 30, 40 do t[2][j] = ids.PAD end
    t[3][20] = ids.EOS
    rows = core.tensor(t, "int32")
    local sum, k = models.nats(model, rows)
    T.is(k, 3 * 39 - 11, "models.nats counts the byte targets (pads excluded, EOS included)")
    -- the summed loss equals the sum of per-row, per-token losses computed directly
    local direct = 0
    core.no_grad(function()
        for i = 1, 3 do
            local toks = tok:encode(core.narrow(rows, 1, i, 1):reshape({-1}))
            local n = toks:numel()
            local logits = model:forward(core.narrow(toks, 1, 1, n - 1):reshape({1, n - 1}))
            local lp = core.log_softmax(logits, -1):totable()[1]
            local tt = toks:totable()
            for p = 1, n - 1 do direct = direct - lp[p][tt[p + 1] + 1] end
        end
    end)
    T.near(sum, direct, 1e-3 * math.abs(direct), "summed token nats of a batch = the direct per-row sum")
    T.ok(model.last_bytes_per_token and model.last_bytes_per_token > 1,
         ("the step records its bytes per token (%.3f)"):format(model.last_bytes_per_token or 0))
    local mean = core.no_grad(function() return model:loss(rows):item() end)
    local ntok = 0
    for _, l in ipairs(select(2, tok:encode_rows(rows))) do ntok = ntok + l - 1 end
    T.near(mean, sum / ntok, 1e-4, "the mean loss is over predicted tokens")
    T.raises(function() model:loss(core.tensor {{1, 5}}) end, "rows must be an int32 tensor %[B,N%]", "loss: float rows")
    T.raises(function() model:loss(core.tensor({1, 5}, "int32")) end, "%[B,N%]", "loss: a 1-d row")
    T.raises(function() model:loss(core.tensor({{1, 0, 0}}, "int32")) end, "no token to predict", "loss: BOS only")
    T.raises(function() model:loss(core.tensor({{1, 999}}, "int32")) end, "id 999", "loss: an id that is no byte")
    T.raises(function() BpeLM.new(mcfg, 1, tok, 500) end, "smaller than the tokenizer", "new: vocab below the tokenizer's")

    -- causality at token level: changing tokens after position p leaves logits <= p as they were
    local toks = core.tensor({list(tok:encode(kjv:sub(5000, 5200)))}, "int32")
    local n = toks:size(2)
    local cut = n // 2
    local t2 = toks:totable()
    for j = cut + 1, n do t2[1][j] = (t2[1][j] * 7 + 3) % 1024 end
    local a = core.no_grad(function() return model:forward(toks):totable()[1] end)
    local c = core.no_grad(function() return model:forward(core.tensor(t2, "int32")):totable()[1] end)
    local worst = 0
    for p = 1, cut do for v = 1, 1024, 37 do worst = math.max(worst, math.abs(a[p][v] - c[p][v])) end end
    T.ok(worst < 1e-5, ("logits up to token %d do not see later tokens (max change %.2g)"):format(cut, worst))
    local later = 0
    for v = 1, 1024, 37 do later = math.max(later, math.abs(a[cut + 1][v] - c[cut + 1][v])) end
    T.ok(later > 1e-4, "and the first changed position does change")
end

-- ---- config checks ----
do
    local cfg = {model = mcfg, bpe = {vocab = 200, train_bytes = 0, min_count = 2, merges = 0}}
    for k, v in pairs(require("blt.models.bytelm").defaults) do if mcfg[k] == nil then mcfg[k] = v end end
    T.raises(function() BpeLM.check(cfg) end, "bpe.vocab = 200", "check: vocab below 261")
    cfg.bpe.vocab, cfg.bpe.merges = 300, 50
    T.raises(function() BpeLM.check(cfg) end, "bpe.merges = 50 does not fit", "check: more merges than the vocab holds")
    cfg.bpe.merges = 40
    T.ok(pcall(BpeLM.check, cfg), "check: a config that fits")
    T.is(BpeLM.count_params(cfg, true) - BpeLM.count_params(cfg), 80, "count_params(frozen) adds the merge list")
    T.ok(require("blt.config") ~= nil and models.get("bpe_lm") == BpeLM, "kind bpe_lm is registered")
end

-- ---- FLOPs: the formula against the executed multiply-adds ----
do
    local toks = core.tensor({list(tok:encode(kjv:sub(9000, 9400)))}, "int32")
    local n = toks:size(2)
    core.mac_counter_reset()
    core.no_grad(function() return model:forward(core.narrow(toks, 2, 1, n - 1)) end)
    local c = core.mac_counter()
    local bytes, bpt = 400, 400 / (n - 1)
    local f = flops.bpe_lm(mcfg, {seq_len = bytes, bytes_per_token = bpt, vocab = 1024})
    T.near(f.linear.total * bytes, 2 * c.matmul, 1e-6 * 2 * c.matmul, "linear FLOPs per byte x bytes = 2 x executed matmul MACs")
    T.near(f.attention.total * bytes, 2 * c.attention_useful, 1e-6 * 2 * c.attention_useful,
           "attention FLOPs per byte x bytes = 2 x useful attention MACs")
    local g = blt.flops({kind = "bpe_lm", model = mcfg, bpe = {vocab = 1024}}, {seq_len = bytes, bytes_per_token = bpt})
    T.near(g.training.total, 3 * f.forward.total, 1e-9 * g.training.total, "flops.of(kind bpe_lm): training = 3 x forward")
    T.raises(function() flops.bpe_lm(mcfg, {seq_len = 100}) end, "bytes_per_token must be a number", "bytes_per_token is required")
end

-- ---- a tiny run: train, load, evaluate identically; the checkpoint's merges ----
do
    U.write(dir .. "/corpus.txt", kjv:sub(1, 30000))
    local rc, out = U.sh(table.concat({bin, "experiments/train_bpe_lm.lua", "model.dim=32", "model.layers=2",
        "model.heads=2", "model.multiple_of=32", "model.window=32", "bpe.vocab=400", "train.batch=2", "train.seq_len=48",
        "train.steps=4", "train.warmup=1", "train.threads=1", "eval.every=0", "eval.final_max_bytes=0",
        "out.checkpoint_every=0", "out.plot=false", "data.path=" .. U.q(dir .. "/corpus.txt"), "out.dir=" .. U.q(dir),
        "out.name=run"}, " "))
    T.is(rc, 0, "experiments/train_bpe_lm.lua trains", out)
    T.ok(out:find("tokenizer: 140 merges", 1, true), "setup logs the merges learned", out)
    local result = require("blt.json").decode(U.read(dir .. "/run/result.json") or "{}")
    local m, run = models.load(dir .. "/run/checkpoint.h5")
    T.is(getmetatable(m), BpeLM, "models.load rebuilds a bpe_lm")
    T.is(m.tokenizer.n_merges, 140, "with its tokenizer")
    T.is(run.config.bpe.merges, 140, "the config records the merges learned")
    local corpus = require("blt.data").open(dir .. "/corpus.txt")
    local bpb, count = require("blt.train").evaluate(m, corpus, {seq_len = 49, batch = 4})
    T.is(count, corpus:info().val, "bits per byte counts every validation byte once")
    T.is(result.val_bytes, count, "the run validated on the same bytes")
    T.near(bpb, result.val_bpb or 0, 1e-6, ("the loaded model evaluates as the run did (%.4f bits/byte)"):format(bpb))
    T.is(run.params["bpe.merges"]:dtype(), "float32", "the checkpoint holds bpe.merges as float32")
    T.ok(same(run.params["bpe.merges"]:shape(), {140, 2}), "of shape [merges, 2]")
    T.is(run.optim.frozen, "bpe", "marked frozen (/optim@frozen)")
    T.ok(run.optim.m["bpe.merges"] == nil, "with no optimiser moments")
    corpus:close()
    -- the training curve in bits per byte: nats per token / ln 2 / bytes per token
    local h = require("blt.train").history(dir .. "/run/metrics.h5")
    local last = h[#h]
    T.ok(last and last.bytes_per_token and last.bytes_per_token > 1, "the metrics log bytes per token", tostring(last and last.bytes_per_token))
    local prc, pout = U.sh(bin .. " scripts/plot_runs.lua out=" .. U.q(dir .. "/curves.png") .. " " .. U.q(dir .. "/run"))
    local shown = tonumber(pout:match("train ([%d.]+) bits/byte"))
    T.ok(prc <= 1 and shown and math.abs(shown - last.loss / math.log(2) / last.bytes_per_token) < 1e-3,
         "plot_runs shows a token model's training loss per byte, not per token", pout)
    -- a corrupt merge list is refused when loading
    local checkpoint = require "blt.checkpoint"
    local function corrupt(edit, pattern, name)
        local p = run.params["bpe.merges"]:clone()
        local t = p:totable()
        edit(t)
        local params = {}
        for k, v in pairs(run.params) do params[k] = v end
        params["bpe.merges"] = core.tensor(t)
        local path = dir .. "/bad.h5"
        checkpoint.save(path, {config = run.config, step = run.step, params = params})
        T.raises(function() models.load(path) end, pattern, name)
    end
    corrupt(function(t) t[3][1] = 5000 end, "bpe.merges.-merge 3 .-uses id 5000", "load: a merge id out of range")
    corrupt(function(t) t[2][2] = M0 + 50 end, "bpe.merges.-merge 2 .-earlier merges", "load: a merge using a later id")
    corrupt(function(t) t[1][1] = ids.EOS end, "uses id 2", "load: a merge using a special id")
    corrupt(function(t) t[4][1] = 7.25 end, "not a token id", "load: a fractional id")
end

U.cleanup(dir)
T.done()
