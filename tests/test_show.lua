package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
-- scripts/show_patches and scripts/plot_entropy.lua, run as a user runs them.

local root = arg[0]:gsub("tests/[^/]*$", "")
if root == "" then root = "./" end
local BLT = os.getenv("BLT_BIN") or (root .. "blt")

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs a shell command; returns stdout, stderr, exit status.
local function run(cmd, input)
    local err = os.tmpname()
    local full = cmd .. " 2>" .. q(err)
    if input then
        local inf = os.tmpname()
        local f = assert(io.open(inf, "wb")); f:write(input); f:close()
        full = full .. " <" .. q(inf)
        local p = io.popen(full)
        local out = p:read("a")
        local _, _, code = p:close()
        os.remove(inf)
        local ef = io.open(err); local e = ef:read("a"); ef:close(); os.remove(err)
        return out, e, code
    end
    local p = io.popen(full .. " </dev/null")
    local out = p:read("a")
    local _, _, code = p:close()
    local ef = io.open(err); local e = ef:read("a"); ef:close(); os.remove(err)
    return out, e, code
end

local function show(args, input) return run(BLT .. " " .. q(root .. "scripts/show_patches.lua") .. " " .. args, input) end

-- the sh wrapper (its path to ./blt is its own folder's parent)
local out, err, code = run(q(root .. "scripts/show_patches") .. " color=false scheme=space 'Hello there, world'")
T.is(out, "Hello |there,| world\n"
    .. "space: 3 patches over 18 bytes, mean 6.00 bytes/patch (min 6, max 6; BOS patch excluded)\n",
    "wrapper: space scheme, no colour")
T.is(code, 0, "wrapper exits 0")

out = show("color=false scheme=fixed size=4 'Hello there, world'")
T.is(out, "Hell|o th|ere,| wor|ld\n"
    .. "fixed, size 4: 5 patches over 18 bytes, mean 3.60 bytes/patch (min 2, max 4; BOS patch excluded)\n",
    "fixed size 4")

out = show("color=false scheme=space max_patch_len=3 Hello there")
T.is(out, "Hel|lo |the|re\n"
    .. "space, max patch length 3: 4 patches over 11 bytes, mean 2.75 bytes/patch (min 2, max 3; BOS patch excluded)\n",
    "several words joined; max_patch_len")

out = show("color=false scheme=fixed size=2", "ab cd\n")
T.is(out, "ab| c|d\n"
    .. "fixed, size 2: 3 patches over 6 bytes, mean 2.00 bytes/patch (min 2, max 2; BOS patch excluded)\n",
    "text from stdin, size=2")

-- output to a pipe is uncoloured unless color=true
out = show("scheme=space 'a b'")
T.ok(out:find("a |b\n", 1, true) and not out:find("\27", 1, true), "a pipe gets no colour by default")
out = show("color=true scheme=space 'a b'")
T.ok(out:find("\27[30;48;5;", 1, true) and out:find("\27[0m", 1, true), "color=true uses background colours")

out, err, code = show("color=false scheme=spacey 'x'")
T.ok(code ~= 0, "unknown scheme: non-zero exit")
T.ok(err:find("scheme = spacey", 1, true) and err:find("one of fixed, space, entropy", 1, true),
    "unknown scheme: the message names it and the known ones", err)
T.is(out, "", "unknown scheme: nothing on stdout")
out, err, code = show("--frobnicate 'x'")
T.ok(code == 2 and err:find("unknown flag '--frobnicate'", 1, true), "unknown flag: clear error, status 2", err)
out, err, code = show("schem=fixed 'x'")
T.ok(code == 2 and err:find("did you mean scheme", 1, true), "mistyped key: the closest key suggested", err)
out, err, code = show("color=false scheme=space -- a=b c")
T.ok(code == 0 and out:find("over 5 bytes", 1, true), "after --, key=value words are text", out .. err)
out, err, code = show("scheme=fixed size=zero 'x'")
T.ok(code == 2 and err:find("size = zero: must be an integer >= 1", 1, true), "bad number: clear error", err)
out, err, code = show("scheme=entropy 'x'")
T.ok(code ~= 0 and err:find("threshold=T", 1, true), "entropy without threshold or target: clear error", err)
out, err, code = show("scheme=entropy threshold=1 model=/nonexistent/m.h5 'x'")
T.ok(code ~= 0 and err:find("/nonexistent/m.h5", 1, true), "missing model file: clear error", err)

-- the module: rendering keeps UTF-8 characters whole
package.path = root .. "scripts/?.lua;" .. package.path
local sp = require "show_patches"
local s, moved = sp.render("h\xC3\xA9llo", {1, 2, 4})
T.is(s, "h\xC3\xA9|llo", "a boundary inside a UTF-8 character is drawn after it")
T.is(moved, 1, "and counted")

-- plot_entropy with a tiny entropy model trained here
local plot_ok = os.execute("command -v gnuplot >/dev/null 2>&1")
if not plot_ok then
    T.diag("gnuplot is missing: plot_entropy not tested")
    T.ok(true, "plot_entropy # SKIP gnuplot is missing")
else
    local tmp = os.tmpname()
    os.remove(tmp)
    os.execute("mkdir -p " .. q(tmp))
    local _, terr, tcode = run(BLT .. " " .. q(root .. "experiments/train_bytelm.lua")
        .. " model.dim=32 model.layers=1 model.heads=2 model.multiple_of=32 train.steps=5 train.batch=2"
        .. " train.seq_len=32 eval.every=0 eval.final_max_bytes=256 out.plot=false out.dir=" .. q(tmp))
    local ckpt = tmp .. "/bytelm-1/checkpoint.h5"
    T.ok(tcode == 0 and io.open(ckpt), "tiny entropy model trained", terr)
    local png = tmp .. "/e.png"
    out, err, code = run(BLT .. " " .. q(root .. "scripts/plot_entropy.lua") .. " model=" .. q(ckpt)
        .. " threshold=1.3 out=" .. q(png) .. " 'Hello there, world'")
    T.is(code, 0, "plot_entropy exits 0", err)
    T.ok(out:find(png, 1, true), "it prints the path written", out)
    local pf = io.open(png, "rb")
    local head = pf and pf:read(8)
    local size = pf and pf:seek("end") or 0
    if pf then pf:close() end
    T.ok(head == "\137PNG\r\n\26\n" and size > 1000, "a non-empty PNG", ("%s bytes"):format(size))
    out, err, code = run(BLT .. " " .. q(root .. "scripts/plot_entropy.lua") .. " model=" .. q(ckpt)
        .. " target=3 out=" .. q(tmp .. "/f.png") .. " 'Hello there, world'")
    T.ok(code == 0 and out:find("calibrated", 1, true), "plot_entropy target= calibrates", err)
    out, err, code = show("color=false scheme=entropy target=3 model=" .. q(ckpt) .. " 'Hello there, world'")
    T.ok(code == 0 and out:find("entropy, threshold [%d.]+ nats %(calibrated on this text for 3 bytes/patch"),
        "show_patches entropy target= with that model", err .. out)
    out, err, code = show("color=false scheme=entropy_delta delta=0.1 model=" .. q(ckpt) .. " 'Hello there'")
    T.ok(code == 0 and out:find("entropy_delta, delta 0.1000 nats", 1, true), "show_patches entropy_delta delta=",
        err .. out)
    os.execute("rm -rf " .. q(tmp))
end

T.done()
