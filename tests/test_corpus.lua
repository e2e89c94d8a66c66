-- The studies corpus (docs/data.md): blt.corpus_build on small fake sources written
-- here (dictd .dict.dz + .index, KJV-style text), its seeded document-level split,
-- the loader's separator and split by files, and clear errors for missing or damaged
-- sources. Never touches the real (large) corpus.
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local U = require "testutil"
local core = require "blt.core"
local data = require "blt.data"
local cb = require "blt.corpus_build"

local dir = U.tmpdir()
local g = core.Generator(2024) -- the fake sources' contents
local SEP = string.char(cb.SEPARATOR)

-- ---- fake sources ----

local DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(v)
    local s = ""
    repeat
        s = DIGITS:sub(v % 64 + 1, v % 64 + 1) .. s
        v = v // 64
    until v == 0
    return s
end

local function gzip(src, dst)
    local ok = core.spawn({"gzip", "-c", "-n"}, {stdin = src, stdout = dst})
    assert(ok, "gzip -c " .. src)
end

-- A random entry: a headword line, then 0..6 lines of any bytes but the separator
-- (NUL, newlines, tabs and bytes >= 128 included).
local function entry(k)
    local parts = {("word%d\n"):format(k)}
    for _ = 1, g:integer(7) - 1 do
        local n, b = g:integer(60), {}
        for i = 1, n do
            local c = g:integer(256) - 1
            if c == cb.SEPARATOR then c = 65 end
            b[i] = string.char(c)
        end
        parts[#parts + 1] = table.concat(b) .. "\n"
    end
    return table.concat(parts)
end

-- A dictd dictionary of n entries (two metadata entries first, as dictfmt writes
-- them; some entries under two or three headwords), entries separated by a blank
-- line, the index sorted by headword. Returns dz, index and the documents the
-- builder must give (the entries in file order, metadata left out).
local function fake_dict(name, n)
    local body, index, docs, off = {}, {}, {}, 0
    local function add(text, heads, meta)
        body[#body + 1] = text .. "\n"
        for _, h in ipairs(heads) do index[#index + 1] = ("%s\t%s\t%s"):format(h, b64(off), b64(#text)) end
        if not meta then docs[#docs + 1] = text end
        off = off + #text + 1
    end
    add("00-database-info\n   a fake dictionary\n", {"00-database-info"}, true)
    add("00-database-url\n   nowhere\n", {"00-database-url", "00-database-short"}, true)
    for k = 1, n do
        local heads = {("word%d"):format(k)}
        for j = 2, g:integer(3) do heads[j] = ("alias%d-%d"):format(k, j) end
        add(entry(k), heads, false)
    end
    table.sort(index)
    local raw = dir .. "/" .. name .. ".dict"
    U.write(raw, table.concat(body))
    gzip(raw, raw .. ".dz")
    U.write(dir .. "/" .. name .. ".index", table.concat(index, "\n") .. "\n")
    return raw .. ".dz", dir .. "/" .. name .. ".index", docs
end

-- KJV-style text: books of chapters of verses; returns the text and its chapters.
local function fake_kjv(books)
    local lines, chapters = {}, {}
    for b = 1, books do
        local book = ({"Ge", "Exo", "1Sm", "Psa", "SSol"})[(b - 1) % 5 + 1] .. (b > 5 and "x" or "")
        for c = 1, g:integer(4) do
            local ch = {}
            for v = 1, g:integer(5) do ch[#ch + 1] = ("%s%d:%d verse %d of chapter %d.\n"):format(book, c, v, v, c) end
            chapters[#chapters + 1] = table.concat(ch)
            lines[#lines + 1] = chapters[#chapters]
        end
    end
    return table.concat(lines), chapters
end

local function same_list(a, b)
    if #a ~= #b then return false, ("%d documents, want %d"):format(#a, #b) end
    for i = 1, #a do
        if a[i] ~= b[i] then return false, ("document %d differs: %q vs %q"):format(i, a[i]:sub(1, 40), b[i]:sub(1, 40)) end
    end
    return true
end

-- ---- class 1: the dictd reader gives exactly the entries ----
do
    local bad, cases = {}, 0
    for _, n in ipairs {1, 2, 3, 7, 20, 64, 150} do
        local dz, idx, want = fake_dict("dict" .. n, n)
        local ok, got = pcall(cb.dictd_documents, dz, idx)
        cases = cases + 1
        local same, why = ok and same_list(got, want)
        if not same then bad[#bad + 1] = ("n=%d: %s"):format(n, ok and why or tostring(got)) end
    end
    T.ok(cases >= 7 and #bad == 0, ("dictd_documents: %d fake dictionaries give exactly their entries (metadata "
        .. "left out, shared entries once, file order)"):format(cases), table.concat(bad, "\n"))
end

-- ---- class 2: KJV chapters ----
do
    local bad, cases = {}, 0
    for books = 1, 8 do
        local text, want = fake_kjv(books)
        local same, why = same_list(cb.kjv_chapters(text), want)
        cases = cases + 1
        if not same then bad[#bad + 1] = ("%d books: %s"):format(books, why) end
    end
    T.ok(cases == 8 and #bad == 0, ("kjv_chapters: %d texts split into exactly their chapters"):format(cases),
         table.concat(bad, "\n"))
end

-- ---- class 3: the split: deterministic, disjoint, covering, shares per source ----
do
    local bad, cases = {}, 0
    for _, sizes in ipairs {{1}, {3, 7}, {100, 50, 9}, {1000}, {20, 1, 400}} do
        for _, seed in ipairs {0, 1, 2, 12345} do
            for _, fr in ipairs {{0.05, 0.05}, {0.1, 0.2}, {0.3, 0.3}} do
                cases = cases + 1
                local a, b = cb.split(sizes, seed, fr[1], fr[2]), cb.split(sizes, seed, fr[1], fr[2])
                local what = ("sizes {%s} seed %d val %g test %g"):format(table.concat(sizes, ","), seed, fr[1], fr[2])
                for s, n in ipairs(sizes) do
                    local count = {train = 0, val = 0, test = 0}
                    for i = 1, n do
                        local w = a[s][i]
                        if not count[w] then bad[#bad + 1] = ("%s: source %d document %d in %s"):format(what, s, i, tostring(w)) break end
                        count[w] = count[w] + 1
                        if b[s][i] ~= w then bad[#bad + 1] = what .. ": not deterministic" break end
                    end
                    if #a[s] ~= n then bad[#bad + 1] = ("%s: source %d: %d documents assigned, want %d"):format(what, s, #a[s], n) end
                    local nt, nv = math.floor(fr[2] * n + 0.5), math.floor(fr[1] * n + 0.5)
                    if count.test ~= nt or count.val ~= nv or count.train ~= n - nt - nv then
                        bad[#bad + 1] = ("%s: source %d: %d/%d/%d, want %d/%d/%d"):format(what, s, count.train, count.val,
                                                                                       count.test, n - nt - nv, nv, nt)
                    end
                end
            end
        end
    end
    T.ok(cases == 60 and #bad == 0, ("split: %d (sizes, seed, fractions): every document in exactly one split, "
        .. "round(f n) per source, the same twice"):format(cases), table.concat(bad, "\n"))
    -- the seed matters
    local diff = 0
    for seed = 1, 10 do
        local x, y = cb.split({200}, seed, 0.1, 0.1)[1], cb.split({200}, seed + 1, 0.1, 0.1)[1]
        for i = 1, 200 do if x[i] ~= y[i] then diff = diff + 1 break end end
    end
    T.is(diff, 10, "split: 10 pairs of neighbouring seeds give 10 different splits")
end

-- ---- class 4: the built corpus, read back through blt.data: no document straddles ----
local function stream_docs(c, first, n)
    local ids = c:ids(first, n):totable()
    local docs, cur = {}, {}
    for _, v in ipairs(ids) do
        if v == data.EOS then
            docs[#docs + 1] = table.concat(cur)
            cur = {}
        else
            cur[#cur + 1] = string.char(v - data.BYTE0)
        end
    end
    return docs, #cur -- #cur > 0: the range ended inside a document
end

local function multiset(list)
    local m = {}
    for _, d in ipairs(list) do m[d] = (m[d] or 0) + 1 end
    return m
end
local function same_multiset(a, b)
    local ma, mb = multiset(a), multiset(b)
    if #a ~= #b then return false end
    for k, v in pairs(ma) do if mb[k] ~= v then return false end end
    return true
end

do
    local bad, cases = {}, 0
    for _, case in ipairs {{n1 = 30, n2 = 12, books = 3, seed = 1, val = 0.1, test = 0.1},
                           {n1 = 80, n2 = 5, books = 6, seed = 7, val = 0.2, test = 0.05},
                           {n1 = 3, n2 = 40, books = 1, seed = 0, val = 0.3, test = 0.3},
                           {n1 = 120, n2 = 60, books = 8, seed = 99, val = 0.05, test = 0.2}} do
        cases = cases + 1
        local what = ("case %d (seed %d)"):format(cases, case.seed)
        local dz1, i1, d1 = fake_dict("a" .. cases, case.n1)
        local dz2, i2, d2 = fake_dict("b" .. cases, case.n2)
        local text, chapters = fake_kjv(case.books)
        U.write(dir .. "/kjv" .. cases .. ".txt", text)
        local out = dir .. "/built" .. cases
        local sources = {{name = "a", kind = "dictd", dict = dz1, index = i1}, {name = "b", kind = "dictd", dict = dz2, index = i2},
                         {name = "kjv", kind = "kjv", path = dir .. "/kjv" .. cases .. ".txt"}}
        local m = cb.build {out = out, seed = case.seed, val = case.val, test = case.test, sources = sources}
        -- what each split must hold
        local all = {d1, d2, chapters}
        local where = cb.split({#d1, #d2, #chapters}, case.seed, case.val, case.test)
        local want = {train = {}, val = {}, test = {}}
        for s, docs in ipairs(all) do
            for i, d in ipairs(docs) do table.insert(want[where[s][i]], d) end
        end
        for _, heldout in ipairs {"val", "test"} do
            local c = data.open(out, {heldout = heldout})
            local info = c:info()
            local train, rest1 = stream_docs(c, 1, info.train)
            local held, rest2 = stream_docs(c, info.train + 1, info.val)
            if rest1 ~= 0 or rest2 ~= 0 then bad[#bad + 1] = what .. ": a split does not end with EOS (a document straddles)" end
            if not same_multiset(train, want.train) then bad[#bad + 1] = what .. ": train documents differ" end
            if not same_multiset(held, want[heldout]) then bad[#bad + 1] = ("%s: %s documents differ"):format(what, heldout) end
            if info.documents ~= #want.train + #want[heldout] or info.files ~= 2 or info.separator ~= cb.SEPARATOR then
                bad[#bad + 1] = ("%s: info documents %d files %d separator %d"):format(what, info.documents, info.files, info.separator)
            end
            if info.stream ~= info.bytes + info.documents then bad[#bad + 1] = what .. ": stream ~= bytes + documents" end
            if m.splits[heldout].documents ~= #want[heldout] then bad[#bad + 1] = what .. ": the manifest's count differs" end
            c:close()
        end
        -- deterministic: the same build again gives the same bytes; another seed other bytes
        local again = dir .. "/again" .. cases
        cb.build {out = again, seed = case.seed, val = case.val, test = case.test, sources = sources}
        for _, f in ipairs {"train.txt", "val.txt", "test.txt", "corpus.tsv"} do
            if U.read(out .. "/" .. f) ~= U.read(again .. "/" .. f) then bad[#bad + 1] = what .. ": rebuilt " .. f .. " differs" end
        end
        cb.build {out = again, seed = case.seed + 1, val = case.val, test = case.test, sources = sources}
        if U.read(out .. "/val.txt") == U.read(again .. "/val.txt") then bad[#bad + 1] = what .. ": another seed, the same val.txt" end
    end
    T.ok(cases == 4 and #bad == 0, ("build: %d corpora read back through data.open (heldout val and test): every "
        .. "document whole in its split, the split as cb.split says, rebuilt identically"):format(cases), table.concat(bad, "\n"))
end

-- ---- class 5: the loader's separator and split by files (any corpus) ----
do
    local bad, cases = {}, 0
    for k = 1, 12 do
        local files, raw = {}, {}
        for f = 1, g:integer(4) do
            local n, b = g:integer(300), {}
            for i = 1, n do b[i] = string.char(g:integer(256) - 1) end
            files[f] = ("%s/sep%d_%d"):format(dir, k, f)
            raw[f] = table.concat(b)
            U.write(files[f], raw[f])
        end
        local sep = g:integer(256) - 1
        for vf = 0, #files do
            cases = cases + 1
            local c = data.open(files, {separator = sep, val_files = vf > 0 and vf or nil, val_fraction = 0.5})
            local info, want, nsep, heldids = c:info(), {}, 0, 0
            for f, r in ipairs(raw) do
                for i = 1, #r do
                    local b = r:byte(i)
                    want[#want + 1] = b == sep and data.EOS or b + data.BYTE0
                    if b == sep then nsep = nsep + 1 end
                end
                want[#want + 1] = data.EOS
                if f > #raw - vf then heldids = heldids + #r + 1 end
            end
            local got = c:ids(1, info.stream):totable()
            local same = #got == #want
            for i = 1, #want do same = same and got[i] == want[i] end
            local what = ("corpus %d, separator %d, val_files %d"):format(k, sep, vf)
            if not same then bad[#bad + 1] = what .. ": the stream is not the bytes with EOS for the separator" end
            if info.documents ~= #files + nsep or info.bytes + info.documents ~= info.stream then
                bad[#bad + 1] = ("%s: documents %d bytes %d stream %d"):format(what, info.documents, info.bytes, info.stream)
            end
            local want_val = vf > 0 and heldids or math.floor(0.5 * info.stream)
            if info.val ~= want_val then bad[#bad + 1] = ("%s: val %d, want %d"):format(what, info.val, want_val) end
            c:close()
        end
    end
    T.ok(cases >= 24 and #bad == 0, ("data.open separator/val_files: %d corpora of random bytes: separator -> EOS, "
        .. "documents counted, validation = the last files exactly"):format(cases), table.concat(bad, "\n"))
end

-- ---- class 6: bad sources and options: a clear error naming the file, nothing half-built ----
do
    local dz, idx = fake_dict("good", 5)
    local function src(over)
        local s = {name = "d", kind = "dictd", dict = dz, index = idx}
        for k, v in pairs(over) do s[k] = v end
        return s
    end
    local function file(name, text) U.write(dir .. "/" .. name, text) return dir .. "/" .. name end
    local good_dz = U.read(dz)
    local function gz_of(name, text) local p = file(name, text) gzip(p, p .. ".dz") return p .. ".dz" end
    local hostile = {
        {"missing .dict.dz", src {dict = dir .. "/none.dict.dz"}, "none%.dict%.dz: No such file"},
        {"missing .index", src {index = dir .. "/none.index"}, "none%.index: No such file"},
        {"a folder for .dict.dz", src {dict = dir}, "is a folder, not a file"},
        {"random bytes", src {dict = file("rand.dz", ("\1\2garbage"):rep(50))}, "cannot decompress .*rand%.dz.*damaged"},
        {"truncated .dict.dz", src {dict = file("trunc.dz", good_dz:sub(1, #good_dz // 2))}, "cannot decompress .*trunc%.dz"},
        {"empty .dict.dz", src {dict = file("empty.dz", "")}, "cannot decompress .*empty%.dz"},
        {"index line of two fields", src {index = file("two.index", "a\tA\tB\nb\tC\n")}, "two%.index line 2 is not"},
        {"index with a bad digit", src {index = file("digit.index", "a\tA!\tB\n")}, "digit%.index line 1 is not"},
        {"index past the end", src {index = file("past.index", "a\tA\t/////\n")}, "past%.index line 1 points at .* past the end"},
        {"empty index", src {index = file("empty.index", "")}, "empty%.index lists no entry"},
        {"index of metadata only", src {index = file("meta.index", "00-database-info\tA\tB\n")}, "meta%.index lists no entry"},
        {"separator inside an entry", src {dict = gz_of("sep.dict", "x" .. SEP .. "y\n"), index = file("sep.index", "x\tA\tD\n")},
         "source d, document 1 holds the separator byte"},
        {"KJV missing", {name = "kjv", kind = "kjv", path = dir .. "/nokjv.txt"}, "nokjv%.txt: No such file"},
        {"KJV line not a verse", {name = "kjv", kind = "kjv", path = file("badkjv.txt", "Ge1:1 In.\nhello\n")}, "badkjv%.txt line 2 is not a verse"},
        {"KJV empty", {name = "kjv", kind = "kjv", path = file("emptykjv.txt", "\n")}, "no verse in .*emptykjv%.txt"},
        {"unknown kind", {name = "z", kind = "zip"}, "source z: unknown kind zip"},
    }
    local bad = {}
    for i, h in ipairs(hostile) do
        local out = ("%s/hostile%d"):format(dir, i)
        local ok, err = pcall(cb.build, {out = out, sources = {h[2]}})
        err = tostring(err)
        if ok or not err:find("^blt%.corpus_build%.[%w_]+: ") or not err:find(h[3]) then
            bad[#bad + 1] = ("%s: %s"):format(h[1], ok and "no error" or err)
        elseif core.file_kind(out .. "/" .. data.SPLIT_MANIFEST) then
            bad[#bad + 1] = h[1] .. ": a manifest was written"
        end
    end
    T.ok(#hostile >= 16 and #bad == 0, ("build: %d missing or damaged sources each raise blt.corpus_build.<fn>: naming "
        .. "the file and the fault, and write no manifest"):format(#hostile), table.concat(bad, "\n"))

    local good = {src {}}
    local opts = {
        {{seed = -1}, "seed must be an integer >= 0"}, {{seed = 1.5}, "seed must be an integer"},
        {{val = 0}, "val must be a fraction"}, {{val = 0.5}, "val must be a fraction"}, {{test = "x"}, "test must be a fraction"},
        {{test = -0.1}, "test must be a fraction"}, {{out = ""}, "out must be a folder"}, {{sources = {}}, "at least one source"},
        {{colour = 1}, "colour"}, {{val = 0.01, test = 0.01}, "split is empty"},
    }
    local badopt = {}
    for _, c in ipairs(opts) do
        local o = {out = dir .. "/opt", sources = good}
        for k, v in pairs(c[1]) do o[k] = v end
        local ok, err = pcall(cb.build, o)
        if ok or not tostring(err):find(c[2]) then badopt[#badopt + 1] = ("%s: %s"):format(c[2], ok and "no error" or tostring(err)) end
    end
    T.ok(#opts >= 10 and #badopt == 0, ("build: %d bad options refused with a message naming them"):format(#opts),
         table.concat(badopt, "\n"))

    -- the Debian packages missing: the message says which and how to install it
    local saved = cb.DEBIAN
    cb.DEBIAN = {{name = "gcide", kind = "dictd", package = "dict-gcide", dict = dir .. "/no.dict.dz", index = idx}}
    T.raises(function() cb.build_default(dir .. "/deb") end, "no%.dict%.dz is missing: install the Debian package dict%-gcide %('make deps'%)",
             "build_default: a missing package's file names the package and 'make deps'")
    cb.DEBIAN = saved
end

-- ---- class 7: damaged manifests and wrong options to a split folder ----
do
    local base = dir .. "/built1"
    local manifest = U.read(base .. "/" .. data.SPLIT_MANIFEST)
    local cases = {
        {"format version", manifest:gsub("blt%-split%-1", "blt-split-9"), "format 'blt%-split%-9' is not blt%-split%-1"},
        {"separator out of range", manifest:gsub("separator\t30", "separator\t300"), "'separator' must be a byte"},
        {"separator missing", manifest:gsub("separator\t30\n", ""), "'separator' must be a byte"},
        {"train outside the folder", manifest:gsub("train\ttrain%.txt", "train\t../x.txt"), "'train' must name a file of the folder"},
        {"val missing", manifest:gsub("val\tval%.txt\n", ""), "'val' must name a file"},
        {"train file gone", manifest:gsub("train\ttrain%.txt", "train\tgone.txt"), "gone%.txt"},
    }
    local bad = {}
    for i, c in ipairs(cases) do
        local d = ("%s/manifest%d"):format(dir, i)
        core.mkdir(d)
        for _, f in ipairs {"train.txt", "val.txt", "test.txt"} do U.write(d .. "/" .. f, U.read(base .. "/" .. f)) end
        U.write(d .. "/" .. data.SPLIT_MANIFEST, c[2])
        local ok, err = pcall(data.open, d)
        if ok or not tostring(err):find("blt%.data%.open: ") or not tostring(err):find(c[3]) then
            bad[#bad + 1] = ("%s: %s"):format(c[1], ok and "opened" or tostring(err))
        end
    end
    T.ok(#bad == 0, ("data.open: %d damaged manifests refused, naming the manifest and the fault"):format(#cases), table.concat(bad, "\n"))
    T.raises(function() data.open(base, {separator = 10}) end, "split by documents .*give no val_files or separator",
             "data.open: a split folder refuses a separator of the caller's")
    T.raises(function() data.open(base, {heldout = "train"}) end, "'heldout' must be 'val' or 'test'", "data.open: heldout=train refused")
    T.raises(function() data.open(dir .. "/kjv1.txt", {heldout = "test"}) end, "'heldout' needs a folder split by documents",
             "data.open: heldout on a plain file refused")
    -- a folder whose corpus.tsv is not a manifest is a plain folder
    local plain = dir .. "/plain"
    core.mkdir(plain)
    U.write(plain .. "/corpus.tsv", "a\tb\n")
    U.write(plain .. "/x.txt", "hello")
    local c = data.open(plain)
    T.is(c:info().files, 2, "a folder with a corpus.tsv that is no manifest opens as plain files")
    c:close()
    for _, v in ipairs {{val_files = 3}, {val_files = -1}, {val_files = 1.5}, {separator = 256}, {separator = -2}, {separator = "x"}} do
        local k, x = next(v)
        T.raises(function() data.open({dir .. "/kjv1.txt", dir .. "/kjv2.txt"}, v) end, "blt%.data%.open: .*" .. k,
                 ("data.open refuses %s = %s"):format(k, tostring(x)))
    end
end

-- ---- the scripts: the studies default to the studies corpus, the demo does not ----
do
    local bin = os.getenv("BLT_BIN") or "./blt"
    for _, s in ipairs {{"experiments/compare_patching.lua", true}, {"experiments/scaling.lua", true},
                        {"experiments/demo.lua", false}, {"experiments/train_blt.lua", false}} do
        local rc, out = U.sh(bin .. " " .. s[1] .. " --help")
        local says = out:find("unset: the studies corpus", 1, true) ~= nil
        T.ok(rc == 0 and says == s[2], ("%s --help: data.path defaults to %s"):format(s[1], s[2] and "the studies corpus" or "the default corpus"), out)
    end
    local rc, out = U.sh(("%s scripts/make_studies_corpus.lua out=%s val=0.7"):format(bin, U.q(dir .. "/s")))
    T.ok(rc == 2 and out:find("val = 0.7: must be in (0, 0.5)", 1, true), "make_studies_corpus: a bad fraction is status 2 with one line", out)
end

U.cleanup(dir)
T.done()
