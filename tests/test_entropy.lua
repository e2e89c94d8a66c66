package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- The entropy model's entropies: definition, batching, causality, reset_on_newline,
-- and the HDF5 cache that must never be used stale.
local T = require "tap"
local blt = require "blt"
local core = require "blt.core"
local ByteLM = require "blt.models.bytelm"
local checkpoint = require "blt.checkpoint"
local entropy = require "blt.entropy"
local data = require "blt.data"
local U = require "testutil"

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)
local cfg = {dim = 32, layers = 2, heads = 2, window = 16, multiple_of = 32}

local function save_model(seed, path)
    local m = ByteLM.new(cfg, seed)
    local params = {}
    for _, p in ipairs(m:parameter_list()) do params[p.name] = p.tensor end
    checkpoint.save(path, {config = {model = cfg}, step = 0, params = params})
    return m
end

local m1 = save_model(1, dir .. "/m1.h5")
local loaded = entropy.load_model(dir .. "/m1.h5")
local text = "In the beginning God created\nthe heaven and the earth.\nAnd the earth was without form"
local e = entropy.of_text(loaded, text)
T.is(#e, #text + 1, "one entropy per row position")

-- definition: H = -sum p ln p of the model's softmax, checked at one position
do
    local row = {1}
    for i = 1, 10 do row[#row + 1] = text:byte(i) + 4 end
    local logits = core.no_grad(function() return m1:forward(blt.tensor({row}, "int32")) end)
    local l = logits:totable()[1][11]
    local mx = -math.huge
    for _, v in ipairs(l) do mx = math.max(mx, v) end
    local z = 0
    for _, v in ipairs(l) do z = z + math.exp(v - mx) end
    local h = 0
    for _, v in ipairs(l) do local p = math.exp(v - mx) / z; if p > 0 then h = h - p * math.log(p) end end
    T.near(e[11], h, 1e-4, "entropy equals -sum p ln p of the model's prediction")
    T.ok(h > 0 and h <= math.log(260) + 1e-6, "entropy within [0, ln 260]")
end

-- causality: changing byte k leaves entropies at positions < k unchanged
do
    local k = 40
    local t2 = text:sub(1, k - 1) .. "#" .. text:sub(k + 1)
    local e2 = entropy.of_text(loaded, t2)
    local same = true
    for t = 1, k do same = same and e[t] == e2[t] end -- row positions 0..k-1
    T.ok(same, "entropies before a changed byte do not move")
    T.ok(e[k + 1] ~= e2[k + 1], "the entropy at the changed byte does")
end

-- reset_on_newline: after a newline, what came before it does not matter
do
    local a = "first line here\nsame second line"
    local b = "another, longer first line!\nsame second line"
    local ea = entropy.of_text(loaded, a, {reset_on_newline = true})
    local eb = entropy.of_text(loaded, b, {reset_on_newline = true})
    local na, nb = a:find("\n"), b:find("\n")
    local worst = 0
    for i = 1, #"same second line" do worst = math.max(worst, math.abs(ea[na + 1 + i] - eb[nb + 1 + i])) end
    T.ok(worst < 1e-5, "with reset_on_newline the second line's entropies ignore the first line", worst)
    local pa = entropy.of_text(loaded, a)
    local pb = entropy.of_text(loaded, b)
    T.ok(math.abs(pa[na + 3] - pb[nb + 3]) > 1e-6, "without it they do not")
    -- the newline itself still belongs to the old context
    T.ok(math.abs(ea[na + 1] - eb[nb + 1]) > 1e-6, "the newline's own entropy depends on its line")
end

-- batched rows equal single rows
-- Two rows take another path than one: BLAS picks its kernel by the row count of each
-- product, so their sums round in another order (one unit in the last place seen here).
-- An entropy H <= ln 260 comes through the model's products: f32_tol(f32_terms, ln 260).
do
    local rows = blt.tensor({{1, 50, 60, 70, 80}, {1, 90, 91, 92, 93}}, "int32")
    local eb = entropy.of_rows(loaded, rows):totable()
    local e1 = entropy.of_rows(loaded, blt.narrow(rows, 1, 2, 1)):totable()[1]
    local tol, worst = U.f32_tol(U.f32_terms(loaded), math.log(260)), 0
    for t = 1, 5 do worst = math.max(worst, math.abs(eb[2][t] - e1[t])) end
    T.ok(worst <= tol, ("a batch gives each row's entropies (worst %.2g, float32 bound %.2g)"):format(worst, tol))
    local other = 0 -- what the check is for: the first row's entropies are not the second's
    for t = 2, 5 do other = math.max(other, math.abs(eb[1][t] - e1[t])) end
    T.ok(other > 100 * tol, ("another row's entropies differ by %.2g, far above the bound"):format(other))
end

-- the stream pass: chunked with window context equals one long row
do
    local corpus_path = dir .. "/c.txt"
    local f = io.open(corpus_path, "w")
    f:write(("The LORD is my shepherd; I shall not want. "):rep(60))
    f:close()
    local corpus = data.open(corpus_path, {val_fraction = 0.5})
    local info = corpus:info()
    local n = 300
    local chunked = entropy.of_stream(loaded, corpus, info.train + 1, n, {chunk = 64})
    -- reference: one row [BOS, ids] with the same sliding window
    local ids = corpus:ids(info.train + 1, n):totable()
    table.insert(ids, 1, 1)
    local whole = entropy.of_rows(loaded, blt.tensor({ids}, "int32")):totable()[1]
    local worst = 0
    for t = 1, n + 1 do worst = math.max(worst, math.abs(chunked:get(t) - whole[t])) end
    T.ok(worst < 1e-4, "chunked stream entropies equal the whole-row pass (window context carried)", worst)

    -- cache: computed once, reused, and rebuilt when the model or corpus changes
    local e1, cache1, hit1 = entropy.corpus(dir .. "/m1.h5", corpus, {split = "val", cache = dir .. "/cache.h5"})
    T.ok(not hit1, "first call computes")
    local e2, _, hit2 = entropy.corpus(dir .. "/m1.h5", corpus, {split = "val", cache = dir .. "/cache.h5"})
    T.ok(hit2 and e2:numel() == e1:numel() and e2:get(100) == e1:get(100), "second call reuses the cache")
    save_model(2, dir .. "/m1.h5") -- another model under the same path
    local e3, _, hit3 = entropy.corpus(dir .. "/m1.h5", corpus, {split = "val", cache = dir .. "/cache.h5"})
    T.ok(not hit3 and e3:get(100) ~= e1:get(100), "a different model at the same path is detected, not used stale")
    local f2 = io.open(corpus_path, "w")
    f2:write(("The LORD is my shepherd; I shall not WANT. "):rep(60))
    f2:close()
    local corpus2 = data.open(corpus_path, {val_fraction = 0.5})
    local _, _, hit4 = entropy.corpus(dir .. "/m1.h5", corpus2, {split = "val", cache = dir .. "/cache.h5"})
    T.ok(not hit4, "a changed corpus (same size) is detected")
    local _, _, hit5 = entropy.corpus(dir .. "/m1.h5", corpus2, {split = "val", cache = dir .. "/cache.h5",
                                                                 reset_on_newline = true})
    T.ok(not hit5, "a different reset_on_newline setting is detected")
end

-- long texts and rows go through bounded chunks (with the context the windows reach);
-- the result equals the whole row fed at once (chunk = 0)
do
    local line = "It was the best of times,\nit was the worst of times; "
    local long = line:rep((entropy.chunk(loaded) + 500) // #line + 1)
    local function worst_diff(a, b)
        local w = 0
        for i = 1, #a do w = math.max(w, math.abs(a[i] - b[i])) end
        return w
    end
    local whole = entropy.of_text(loaded, long, {chunk = 0})
    local default = entropy.of_text(loaded, long)
    T.is(#default, #long + 1, "a long text (over one chunk) gives one entropy per row position")
    T.ok(#long + 1 > entropy.chunk(loaded), "the text is longer than one chunk")
    T.ok(worst_diff(default, whole) < 1e-5, "of_text in chunks equals the unchunked pass", worst_diff(default, whole))
    local small = entropy.of_text(loaded, long, {chunk = 37, batch = 3})
    T.ok(worst_diff(small, whole) < 1e-5, "odd chunk and batch sizes give the same entropies", worst_diff(small, whole))
    local nl_whole = entropy.of_text(loaded, long, {chunk = 0, reset_on_newline = true})
    local nl = entropy.of_text(loaded, long, {chunk = 50, reset_on_newline = true})
    T.ok(worst_diff(nl, nl_whole) < 1e-5, "reset_on_newline in chunks equals the unchunked pass", worst_diff(nl, nl_whole))
    T.ok(worst_diff(nl, whole) > 1e-3, "reset_on_newline changes the entropies (the check above is not vacuous)")
    -- of_rows: several long rows at once, each chunked on its own
    local r1, r2 = {1}, {1}
    for i = 1, 700 do r1[#r1 + 1] = long:byte(i) + 4; r2[#r2 + 1] = long:byte(i + 5) + 4 end
    local rows = blt.tensor({r1, r2}, "int32")
    local a = entropy.of_rows(loaded, rows, {chunk = 0}):totable()
    local b = entropy.of_rows(loaded, rows, {chunk = 100}):totable()
    T.ok(worst_diff(a[1], b[1]) < 1e-5 and worst_diff(a[2], b[2]) < 1e-5, "of_rows chunks every long row alike")
end

os.execute("rm -rf " .. dir)
T.done()
