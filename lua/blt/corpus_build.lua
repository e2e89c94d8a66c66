-- Builds a corpus split by documents (docs/data.md, the studies corpus): documents
-- read whole from their sources, a seeded document-level split into train, val and
-- test, written as three files whose documents are separated by one byte (SEPARATOR,
-- which blt.data reads as EOS) and a manifest, corpus.tsv, written last.
--
--   local cb = require "blt.corpus_build"
--   cb.build_default("data/studies")                 -- GCIDE + WordNet (Debian) + data/kjv.txt
--   cb.build{out = dir, seed = 1, val = 0.05, test = 0.05,
--            sources = {{name = "wn", kind = "dictd", dict = "wn.dict.dz", index = "wn.index"},
--                       {name = "kjv", kind = "kjv", path = "data/kjv.txt"}}}
--   cb.dictd_documents(dict_dz, index)               -- the entries of a dictd dictionary
--   cb.kjv_chapters(text)                            -- the chapters of data/kjv.txt
--   cb.split(sizes, seed, val, test)                 -- which split each document goes to
--
-- Errors are raised as "blt.corpus_build.<fn>: ..." naming the file and what is wrong.
local core = require "blt.core"
local util = require "blt.util"

local cb = {}

cb.SEPARATOR = 30 -- ASCII record separator: no source has it (build checks each document)
cb.SEED, cb.VAL, cb.TEST = 1, 0.05, 0.05

-- The Debian packages' files (make deps installs dict-gcide and dict-wn).
cb.DEBIAN = {
    {name = "gcide", kind = "dictd", package = "dict-gcide", dict = "/usr/share/dictd/gcide.dict.dz",
     index = "/usr/share/dictd/gcide.index"},
    {name = "wn", kind = "dictd", package = "dict-wn", dict = "/usr/share/dictd/wn.dict.dz",
     index = "/usr/share/dictd/wn.index"},
}

local function fail(fn, fmt, ...) error(("blt.corpus_build.%s: " .. fmt):format(fn, ...), 0) end

-- dictd's numbers: base 64, digits A-Z a-z 0-9 + /, most significant first.
local B64 = {}
do
    local digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for i = 1, 64 do B64[digits:byte(i)] = i - 1 end
end
local function b64(s)
    if #s == 0 or #s > 8 then return nil end -- 8 digits = 48 bits: far past any file
    local v = 0
    for i = 1, #s do
        local d = B64[s:byte(i)]
        if not d then return nil end
        v = v * 64 + d
    end
    return v
end

-- The decompressed bytes of a dictzip file (gzip-compatible), through gzip -dc.
local function gunzip(path)
    local kind, err = core.file_kind(path)
    if kind ~= "file" then
        fail("dictd_documents", "%s", kind and ("%s: is a %s, not a file"):format(path, kind) or tostring(err))
    end
    if not core.which("gzip") then fail("dictd_documents", "the 'gzip' program that reads %s is not installed", path) end
    local tmp = core.mkdtemp()
    if not tmp then fail("dictd_documents", "cannot make a temporary folder to decompress %s", path) end
    local ok, how, code = core.spawn({"gzip", "-dc"}, {stdin = path, stdout = tmp .. "/out", stderr = tmp .. "/err"})
    local text = util.read_file(tmp .. "/out")
    local msg = (util.read_file(tmp .. "/err") or ""):gsub("^%s+", ""):gsub("%s+$", ""):gsub("\n+", "; ")
    core.rm_rf(tmp)
    if not ok then
        fail("dictd_documents", "cannot decompress %s (gzip -dc: %s %s%s): a damaged or truncated file? "
             .. "reinstall its package", path, tostring(how), tostring(code), msg ~= "" and (": " .. msg) or "")
    end
    return text
end

-- The documents of a dictd dictionary: one per entry (a distinct range of the .dict
-- the index points to; headwords sharing an entry give it once), in .dict order, the
-- bytes as they are. Entries with a "00-database-" headword (the dictionary's own
-- description) are left out.
function cb.dictd_documents(dict, index)
    local text = gunzip(dict)
    local idx, err = util.read_file(index)
    if not idx then fail("dictd_documents", "%s", tostring(err)) end
    local ranges, seen, meta, n = {}, {}, {}, 0
    if idx:sub(-1) ~= "\n" then idx = idx .. "\n" end
    for line in idx:gmatch("([^\n]*)\n") do
        n = n + 1
        if line ~= "" then
            local head, o, l = line:match("^([^\t]*)\t([^\t]+)\t([^\t]+)$")
            local off, len = o and b64(o), l and b64(l)
            if not off or not len then
                fail("dictd_documents", "%s line %d is not 'headword<TAB>offset<TAB>length' in dictd's base 64: %q",
                     index, n, line:sub(1, 80))
            end
            if off + len > #text then
                fail("dictd_documents", "%s line %d points at bytes %d..%d, past the end of %s (%d bytes): the two "
                     .. "files do not match", index, n, off, off + len, dict, #text)
            end
            local key = off .. ":" .. len
            if head:find("^00%-database%-") then meta[key] = true end
            if not seen[key] and len > 0 then
                seen[key] = true
                ranges[#ranges + 1] = {off, len, key}
            end
        end
    end
    table.sort(ranges, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
    local docs = {}
    for _, r in ipairs(ranges) do
        if not meta[r[3]] then docs[#docs + 1] = text:sub(r[1] + 1, r[1] + r[2]) end
    end
    if #docs == 0 then fail("dictd_documents", "%s lists no entry", index) end
    return docs
end

-- The chapters of the KJV as data/kjv.txt has it (one verse a line, "Ge1:1 In the
-- beginning ..."): the verses of one book and chapter, consecutive, each with its line
-- end. where: what errors call the text (its path).
function cb.kjv_chapters(text, where)
    where = where or "the text"
    local docs, key, cur, n = {}, nil, {}, 0
    for line in text:gmatch("[^\n]+\n?") do
        n = n + 1
        local book, chapter = line:match("^(%d?%a+)(%d+):%d+ ")
        if not book then fail("kjv_chapters", "%s line %d is not a verse ('Ge1:1 ...'): %q", where, n, line:sub(1, 60)) end
        local k = book .. chapter
        if k ~= key and #cur > 0 then docs[#docs + 1] = table.concat(cur); cur = {} end
        key, cur[#cur + 1] = k, line
    end
    if #cur > 0 then docs[#docs + 1] = table.concat(cur) end
    if #docs == 0 then fail("kjv_chapters", "no verse in %s", where) end
    return docs
end

-- The split of sources of sizes[s] documents: a table per source, split[s][i] = "train",
-- "val" or "test" for document i. Per source (in order), one seeded generator draws a
-- uniform permutation (Fisher-Yates); its first round(test * n) documents go to test,
-- the next round(val * n) to val, the rest to train. So every source has its share in
-- every split, and the result depends only on the sizes, the seed and the fractions.
function cb.split(sizes, seed, val, test)
    local g = core.Generator(seed)
    local out = {}
    for s, n in ipairs(sizes) do
        local perm = {}
        for i = 1, n do perm[i] = i end
        for i = n, 2, -1 do
            local j = g:integer(i)
            perm[i], perm[j] = perm[j], perm[i]
        end
        local nt, nv = math.floor(test * n + 0.5), math.floor(val * n + 0.5)
        local where = {}
        for k, i in ipairs(perm) do where[i] = k <= nt and "test" or k <= nt + nv and "val" or "train" end
        out[s] = where
    end
    return out
end

local function source_documents(src)
    if src.kind == "dictd" then return cb.dictd_documents(src.dict, src.index) end
    if src.kind == "kjv" then
        local text, err = util.read_file(src.path)
        if not text then fail("build", "%s", tostring(err)) end
        return cb.kjv_chapters(text, src.path)
    end
    if src.kind == "documents" then return src.documents end -- already split (tests)
    fail("build", "source %s: unknown kind %s (dictd, kjv, documents)", tostring(src.name), tostring(src.kind))
end

local function check_fraction(key, v)
    if type(v) ~= "number" or not (v > 0 and v < 0.5) then
        fail("build", "%s must be a fraction in (0, 0.5), got %s", key, tostring(v))
    end
end

-- Writes out/train.txt, out/val.txt, out/test.txt and out/corpus.tsv (last: its presence
-- means a finished build). Each split's documents are in a seeded random order (so any
-- prefix of a split samples all its sources), separated by SEPARATOR. Returns the
-- manifest as a table {splits = {train = {documents, bytes}, ...}, sources = {...}}.
function cb.build(o)
    util.check_keys("blt.corpus_build.build", o, {"out", "seed", "val", "test", "sources"}, 2)
    if type(o.out) ~= "string" or o.out == "" then fail("build", "out must be a folder path, got %s", tostring(o.out)) end
    local seed = o.seed == nil and cb.SEED or math.tointeger(o.seed)
    if not seed or seed < 0 then fail("build", "seed must be an integer >= 0, got %s", tostring(o.seed)) end
    local val, test = o.val or cb.VAL, o.test or cb.TEST
    check_fraction("val", val)
    check_fraction("test", test)
    if type(o.sources) ~= "table" or #o.sources == 0 then fail("build", "sources must list at least one source") end
    local data = require "blt.data"
    local sep = string.char(cb.SEPARATOR)

    local docs, sizes = {}, {}
    for s, src in ipairs(o.sources) do
        docs[s] = source_documents(src)
        sizes[s] = #docs[s]
        for i, d in ipairs(docs[s]) do
            if d:find(sep, 1, true) then
                fail("build", "source %s, document %d holds the separator byte %d", tostring(src.name), i, cb.SEPARATOR)
            end
        end
    end
    local where = cb.split(sizes, seed, val, test)

    local names = {"train", "val", "test"}
    local parts, stats = {train = {}, val = {}, test = {}}, {}
    for _, k in ipairs(names) do stats[k] = {documents = 0, bytes = 0} end
    local per_source = {}
    for s, src in ipairs(o.sources) do
        local ps = {name = src.name, documents = sizes[s], bytes = 0}
        for _, k in ipairs(names) do ps[k] = {documents = 0, bytes = 0} end
        for i, d in ipairs(docs[s]) do
            local k = where[s][i]
            local p = parts[k]
            p[#p + 1] = d
            stats[k].documents, stats[k].bytes = stats[k].documents + 1, stats[k].bytes + #d
            ps[k].documents, ps[k].bytes = ps[k].documents + 1, ps[k].bytes + #d
            ps.bytes = ps.bytes + #d
        end
        per_source[s] = ps
    end
    -- each split in a seeded random order: a prefix (a quick validation) samples every source
    local g = core.Generator(seed + 1)
    for _, k in ipairs(names) do
        local p = parts[k]
        if #p == 0 then fail("build", "the %s split is empty: too few documents (%d) for a fraction %g", k,
                             stats.train.documents + stats.val.documents + stats.test.documents, k == "val" and val or test) end
        for i = #p, 2, -1 do
            local j = g:integer(i)
            p[i], p[j] = p[j], p[i]
        end
    end

    local ok, err = core.mkdir(o.out)
    if not ok then fail("build", "cannot make %s: %s", o.out, tostring(err)) end
    local manifest = o.out .. "/" .. data.SPLIT_MANIFEST
    core.rm_rf(manifest) -- an older build is unfinished until the new manifest exists
    for _, k in ipairs(names) do
        local wok, werr = core.write_file(o.out .. "/" .. k .. ".txt", table.concat(parts[k], sep))
        if not wok then fail("build", "%s", tostring(werr)) end
        parts[k] = nil
    end
    local lines = {"format\t" .. data.SPLIT_FORMAT, "separator\t" .. cb.SEPARATOR,
                   "train\ttrain.txt", "val\tval.txt", "test\ttest.txt",
                   ("seed\t%d"):format(seed), ("fractions\tval=%g\ttest=%g"):format(val, test)}
    for _, k in ipairs(names) do
        lines[#lines + 1] = ("split.%s\tdocuments=%d\tbytes=%d"):format(k, stats[k].documents, stats[k].bytes)
    end
    for s, ps in ipairs(per_source) do
        local src = o.sources[s]
        lines[#lines + 1] = ("source.%s\tdocuments=%d\tbytes=%d\ttrain=%d\tval=%d\ttest=%d\tfrom=%s"):format(
            tostring(ps.name), ps.documents, ps.bytes, ps.train.documents, ps.val.documents, ps.test.documents,
            src.kind == "dictd" and src.dict or src.path or "(given)")
    end
    local mok, merr = core.write_file(manifest, table.concat(lines, "\n") .. "\n")
    if not mok then fail("build", "%s", tostring(merr)) end
    return {splits = stats, sources = per_source, seed = seed, val = val, test = test}
end

-- The studies corpus from the Debian packages and the default corpus (the KJV, made
-- first when missing), into dir; o: {seed, val, test} (unset: SEED, VAL, TEST).
function cb.build_default(dir, o)
    o = o or {}
    local sources = {}
    for _, s in ipairs(cb.DEBIAN) do
        for _, f in ipairs {s.dict, s.index} do
            if not core.file_kind(f) then
                fail("build_default", "%s is missing: install the Debian package %s ('make deps')", f, s.package)
            end
        end
        sources[#sources + 1] = s
    end
    sources[#sources + 1] = {name = "kjv", kind = "kjv", path = require("blt.data").default_corpus()}
    return cb.build {out = dir, sources = sources, seed = o.seed, val = o.val, test = o.test}
end

return cb
