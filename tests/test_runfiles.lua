package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- A run touches only its own folder, and a failed write stops it cleanly.
--   1. every file a run writes (found by a reference run: .lock, checkpoint.h5,
--      metrics.h5, config.json, result.json, loss.png) and every temporary file
--      beside one (<file>.tmp.<pid>), set up as a symbolic link to a victim outside
--      the run, in a new run (out.overwrite=true) and in a resumed one: the victim is
--      untouched, and the run either replaced the link itself or refused with the
--      documented status and a message naming the file;
--   2. every writer (core.write_file, checkpoint.save, blt.h5_create, the metrics
--      writer) with a symbolic link planted at its temporary file's name;
--   3. the run folder itself a symbolic link, for every way a run chooses its folder;
--   4. write failures: a file-size limit (ulimit -f) just under each file's size, and
--      when tmpfs can be mounted (root), a full disk at the first and the second
--      checkpoint and a read-only disk: status 4 (2 for a folder that cannot be
--      taken), a message naming the file, no crash, no temporary file left, and the
--      last checkpoint still loads.
local T = require "tap"
local core = require "blt.core"
local checkpoint = require "blt.checkpoint"
local U = require "testutil"

local bin = os.getenv("BLT_BIN") or "./blt"
local dir = U.tmpdir()
local q, read, write, sh = U.q, U.read, U.write, U.sh
local corpus = dir .. "/corpus.txt"
write(corpus, ("In the beginning was the word, and the word was with God. "):rep(600))
local have_gnuplot = require("blt.plot").available()

local ARGS = table.concat({"model.dim=16", "model.layers=1", "model.heads=2", "model.multiple_of=16",
    "model.window=32", "train.batch=2", "train.seq_len=32", "train.steps=2", "train.warmup=1", "train.threads=1",
    "eval.every=0", "eval.final_max_bytes=128", "out.checkpoint_every=1", "train.log_every=1",
    "out.metrics_flush=1", "out.plot=" .. tostring(have_gnuplot), "data.path=" .. q(corpus)}, " ")
local SCRIPT = "experiments/train_bytelm.lua"

-- Runs the trainer in a shell whose pid it keeps (exec), after `pre` (shell code that
-- may use $$, the trainer's pid); limit: ulimit -f blocks. Returns status and output.
local function train(words, pre, limit)
    local inner = (pre and pre .. "; " or "") .. (limit and ("ulimit -f %d; "):format(limit) or "")
        .. "exec " .. q(bin) .. " " .. SCRIPT .. " " .. ARGS .. " " .. words
    return sh("sh -c " .. q(inner))
end

local function files_of(d)
    local t = core.listdir(d) or {}
    table.sort(t)
    return t
end

local function copy_tree(src, dst) assert(os.execute("cp -a " .. q(src) .. " " .. q(dst))) end

-- Bytes of every file under d, one string (a folder's snapshot).
local function snapshot(d)
    local parts = {}
    for _, f in ipairs(files_of(d)) do parts[#parts + 1] = f .. "=" .. tostring(core.hash_file(d .. "/" .. f)) end
    return table.concat(parts, " ")
end

local function tmp_left(d)
    for _, f in ipairs(files_of(d)) do if f:find("%.tmp%.") then return f end end
end

-- A status and message that a refusal or a write failure may end with.
local function clean_end(rc, out) return rc < 128 and not out:find("stack traceback", 1, true) end

-- ---------------------------------------------------------------- the reference run
local rc, out = train("out.dir=" .. q(dir) .. " out.name=ref")
T.is(rc, 0, "reference run finishes")
local REF = dir .. "/ref"
local FILES, SIZE = {}, {}
for _, f in ipairs(files_of(REF)) do
    FILES[#FILES + 1] = f
    SIZE[f] = #(read(REF .. "/" .. f) or "")
end
T.ok(#FILES >= 5, "a run writes " .. table.concat(FILES, ", "), out)

-- the base of resumed runs: stopped after step 1 with a checkpoint
rc, out = train("out.dir=" .. q(dir) .. " out.name=base train.stop_at=1")
T.is(rc, 0, "base run stops at step 1", out)
local BASE = dir .. "/base"

-- ---------------------------------------------------------------- 1. run files as links
-- Every run file, and the temporary file beside each (named by the writer's pid).
local NAMES = {}
for _, f in ipairs(FILES) do
    NAMES[#NAMES + 1] = f
    if f ~= ".lock" then NAMES[#NAMES + 1] = f .. ".tmp.$$" end
end

local SCENARIOS = {
    {name = "new run over the folder (out.overwrite=true)", setup = function(d) assert(core.mkdir(d)) end,
     words = function(d) return ("out.dir=%s out.name=%s out.overwrite=true"):format(q(dir), q(d:match("[^/]+$"))) end},
    {name = "resumed run", setup = function(d) copy_tree(BASE, d) end,
     words = function(d) return "--resume " .. q(d .. "/checkpoint.h5") end},
}

local cases = 0
for si, sc in ipairs(SCENARIOS) do
    for ni, name in ipairs(NAMES) do
        local d = ("%s/link-%d-%d"):format(dir, si, ni)
        sc.setup(d)
        local file = name:gsub("%$%$", "")
        local victim = ("%s/victim-%d-%d"):format(dir, si, ni)
        -- the victim: what a real file of that name holds (another run's), or a line
        write(victim, read(d .. "/" .. file) or read(REF .. "/" .. file) or "another run's file\n")
        local before = read(victim)
        os.remove(d .. "/" .. file)
        local link = name:find("$$", 1, true) and q(d) .. "/" .. q(file) .. "$$" or q(d .. "/" .. file)
        rc, out = train(sc.words(d), "ln -s " .. q(victim) .. " " .. link)
        local what = ("%s, %s a symbolic link"):format(sc.name, name:gsub("%$%$", "<pid>"))
        T.is(read(victim), before, what .. ": the victim is untouched")
        if rc == 0 then
            local kinds = {}
            for _, f in ipairs(files_of(d)) do if core.lkind(d .. "/" .. f) == "link" then kinds[#kinds + 1] = f end end
            T.ok(#kinds == 0, what .. ": finished, the link itself replaced or removed", table.concat(kinds, ", "))
        else
            local base_name = file:gsub("%.tmp%.$", "")
            T.ok((rc == 2 or rc == 4) and clean_end(rc, out) and out:find(base_name, 1, true)
                and out:find("symbolic link", 1, true), what .. ": refused with status 2 or 4, naming the file", out)
        end
        cases = cases + 1
    end
end
T.diag(("%d run-file link cases (%d names x %d scenarios)"):format(cases, #NAMES, #SCENARIOS))

-- ---------------------------------------------------------------- 2. every writer's temporary file
-- This process's pid: the writers name their temporary files <path>.tmp.<pid>.
local pid = read("/proc/self/stat"):match("^(%d+)")
local function tiny_tensor() return require("blt").tensor({1, 2, 3}) end
local WRITERS = {
    write_file = function(p) assert(core.write_file(p, "new bytes\n")) end,
    checkpoint_save = function(p) checkpoint.save(p, {step = 1, params = {w = tiny_tensor()}}) end,
    h5_create = function(p)
        local f = require("blt").h5_create(p)
        f:set_attr("x", 1)
        f:commit()
    end,
    metrics_new = function(p) local m = checkpoint.Metrics(p); m:log{step = 1}; m:close() end,
    metrics_flush = function(p)
        local m = checkpoint.Metrics(p, {flush_every = 1})
        write(p .. ".tmp." .. pid .. ".1", "") -- the next name taken too: the writer goes on to .2
        os.remove(p .. ".tmp." .. pid)
        assert(os.execute("ln -s " .. q(dir .. "/wvictim") .. " " .. q(p .. ".tmp." .. pid)))
        m:log{step = 1}
        m:close()
    end,
}
if pid then
    local wnames = {}
    for k in pairs(WRITERS) do wnames[#wnames + 1] = k end
    table.sort(wnames)
    for _, k in ipairs(wnames) do
        local wd = dir .. "/writer-" .. k
        assert(core.mkdir(wd))
        write(dir .. "/wvictim", "victim\n")
        local p = wd .. "/out.file"
        assert(os.execute("ln -s " .. q(dir .. "/wvictim") .. " " .. q(p .. ".tmp." .. pid)))
        local ok, err = pcall(WRITERS[k], p)
        T.ok(ok and read(dir .. "/wvictim") == "victim\n" and core.lkind(p) == "file",
             k .. ": a link at its temporary name is not followed; the file is written", err)
    end
else
    T.ok(true, "writers' temporary files # SKIP no /proc/self/stat")
end

-- ---------------------------------------------------------------- 3. the run folder a link
-- The victim: another run's folder, which every way of choosing a folder meets as a link.
local FOLDER_WAYS = {
    {"out.name", function(l) return "out.dir=" .. q(dir) .. " out.name=" .. q(l) end},
    {"out.name with out.overwrite=true", function(l) return "out.dir=" .. q(dir) .. " out.name=" .. q(l) .. " out.overwrite=true" end},
    {"--resume", function(l) return "--resume " .. q(dir .. "/" .. l .. "/checkpoint.h5") end},
    {"--fork", function(l) return "--resume " .. q(BASE .. "/checkpoint.h5") .. " --fork " .. q(l) end},
}
for i, way in ipairs(FOLDER_WAYS) do
    local victim = dir .. "/folder-victim-" .. i
    copy_tree(BASE, victim)
    local before = snapshot(victim)
    local l = "folder-link-" .. i
    assert(os.execute("ln -s " .. q(victim) .. " " .. q(dir .. "/" .. l)))
    rc, out = train(way[2](l))
    T.is(snapshot(victim), before, way[1] .. " a symbolic link to another run: that run's files are untouched")
    T.ok(rc == 2 and clean_end(rc, out) and out:find(l, 1, true) and (out:find("symbolic link", 1, true) or out:find("exists", 1, true)),
         way[1] .. " a symbolic link: refused with status 2, naming it", out)
end
-- without out.name: a link at <name>-<seed> (even dangling) is taken, the run goes on to the next name
do
    local root = dir .. "/auto"
    assert(core.mkdir(root))
    local victim = dir .. "/auto-victim"
    copy_tree(BASE, victim)
    local before = snapshot(victim)
    assert(os.execute("ln -s " .. q(victim) .. " " .. q(root .. "/bytelm-1")))
    assert(os.execute("ln -s " .. q(dir .. "/nowhere") .. " " .. q(root .. "/bytelm-1.2")))
    rc, out = train("out.dir=" .. q(root))
    T.ok(rc == 0 and snapshot(victim) == before and core.lkind(root .. "/bytelm-1.3") == "folder"
         and core.lkind(dir .. "/nowhere") == nil,
         "an automatic run folder name skips symbolic links (bytelm-1.3)", out)
end

-- ---------------------------------------------------------------- 4. write failures
-- What every failed write must leave: the status, a message naming a run file, no
-- traceback or crash, no temporary file, and a checkpoint (if any) that loads.
local function check_failure(what, d, rc_, out_, want_rc, cause, names, ckpt_step)
    local named
    for _, f in ipairs(names) do if out_:find("/" .. f, 1, true) then named = f end end
    T.ok(rc_ == want_rc and clean_end(rc_, out_) and named and out_:find(cause, 1, true),
         ("%s: status %d, a message naming the file and '%s'"):format(what, want_rc, cause), out_)
    T.ok(not tmp_left(d), what .. ": no temporary file left", tmp_left(d))
    if ckpt_step then
        local ok, run = pcall(checkpoint.load, d .. "/checkpoint.h5")
        T.ok(ok and run.step == ckpt_step, ("%s: the last checkpoint (step %d) loads"):format(what, ckpt_step), not ok and run or nil)
    end
end

-- ulimit -f counts blocks of 512 bytes (POSIX) or 1024 (some shells): measured here
local BLOCK = 1024
do
    local p = dir .. "/probe.bin"
    sh("sh -c " .. q("ulimit -f 1; exec " .. q(bin) .. " -e " .. q("local f = assert(io.open(" .. ("%q"):format(p)
        .. ", 'wb')); f:write(('x'):rep(700)); f:close()")))
    if #(read(p) or "") < 700 then BLOCK = 512 end
end

-- each file a run writes, the limit just under its size: the run fails at that file
-- or an earlier, larger one, whatever the order
local limited = 0
for _, f in ipairs(FILES) do
    local blocks = (SIZE[f] - 1) // BLOCK
    if SIZE[f] > BLOCK and f ~= "loss.png" then -- loss.png is drawn last and is optional (a warning)
        local name = "limit-" .. f:gsub("^%.", "")
        rc, out = train(("out.dir=%s out.name=%s"):format(q(dir), name), nil, blocks)
        local too_big = {}
        for _, g in ipairs(FILES) do if SIZE[g] > blocks * BLOCK then too_big[#too_big + 1] = g end end
        check_failure(("file-size limit %d bytes (under %s, %d bytes)"):format(blocks * BLOCK, f, SIZE[f]),
                      dir .. "/" .. name, rc, out, 4, "File too large", too_big)
        limited = limited + 1
    end
end
-- a resumed run whose final checkpoint cannot be written keeps the one it resumed
do
    local d = dir .. "/limit-resume"
    copy_tree(BASE, d)
    rc, out = train("--resume " .. q(d .. "/checkpoint.h5"), nil, (SIZE["checkpoint.h5"] - 1) // BLOCK)
    check_failure("file-size limit under the checkpoint, resumed run", d, rc, out, 4, "File too large", {"checkpoint.h5"}, 1)
end
T.diag(("%d file-size limit cases (block %d bytes)"):format(limited + 1, BLOCK))

-- a small tmpfs: full at the first or the second checkpoint, read-only; root only
local mnt = dir .. "/mnt"
assert(core.mkdir(mnt))
local function mount(size) return os.execute(("mount -t tmpfs -o size=%s tmpfs %s 2>/dev/null"):format(size, q(mnt))) end
local function umount() os.execute("umount " .. q(mnt) .. " 2>/dev/null") end
if not mount("64k") then
    T.ok(true, "full and read-only disks # SKIP tmpfs cannot be mounted here (needs root)")
else
    umount()
    local C, M = SIZE["checkpoint.h5"], SIZE["metrics.h5"]
    local page = 4096
    local function pages(n) return (n + page - 1) // page * page end
    -- the space each case leaves: what is written before the failing save, plus half of
    -- it (.lock, config.json and result.json take a page each); the files it may name
    local FULL = {
        {"full disk at the start", 2 * page, {"config.json", "metrics.h5"}},
        {"full disk at the first checkpoint", pages(C // 2) + 4 * page + pages(M), {"checkpoint.h5"}},
        {"full disk at the second checkpoint", pages(C) + pages(C // 2) + 4 * page + pages(M), {"checkpoint.h5"}, 1},
    }
    for i, c in ipairs(FULL) do
        assert(mount(tostring(c[2])))
        rc, out = train(("out.dir=%s out.name=run%d"):format(q(mnt), i))
        check_failure(("%s (tmpfs of %d bytes)"):format(c[1], c[2]), mnt .. "/run" .. i, rc, out, 4, "No space left on device", c[3], c[4])
        umount()
    end
    -- read-only: a stopped run on a disk remounted read-only cannot be resumed there
    assert(mount("4m"))
    rc, out = train(("out.dir=%s out.name=ro train.stop_at=1"):format(q(mnt)))
    local ok_ro = rc == 0 and os.execute("mount -o remount,ro " .. q(mnt) .. " 2>/dev/null")
    if ok_ro then
        rc, out = train("--resume " .. q(mnt .. "/ro/checkpoint.h5"))
        check_failure("read-only disk, resumed run", mnt .. "/ro", rc, out, 2, "Read-only file system", {".lock"}, 1)
    else
        T.ok(true, "read-only disk # SKIP remount,ro refused")
    end
    umount()
end

U.cleanup(dir)
T.done()
