package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- scripts/evaluate.lua and scripts/inspect.lua on checkpoints the trainers wrote: the
-- evaluation of the bytes a run validated on equals the run's val_bpb (ByteLM and
-- BLT), inspect's report, and bad command lines refused with status 2.
local T = require "tap"
local U = require "testutil"
local json = require "blt.json"

local bin = os.getenv("BLT_BIN") or "./blt"
local q = U.q
local dir = U.tmpdir()

-- A corpus folder a.txt + b.txt whose validation split (the last quarter of the
-- stream: 6000 + 2000 ids) is exactly b.txt and its EOS.
do
    local words = {"the", "lord", "said", "unto", "moses", "and", "behold", "a", "land", "of", "milk", "honey",
                   "which", "thou", "shalt", "go", "up", "into", "it", "with", "thy", "people,", "for", "ever."}
    local s, parts, x = "", {}, 12345
    while #s < 8000 do
        x = (x * 1103515245 + 12345) % 2147483648
        parts[#parts + 1] = words[x // 65536 % #words + 1]
        if #parts % 11 == 0 then parts[#parts + 1] = "\n" end
        s = table.concat(parts, " ")
    end
    os.execute("mkdir -p " .. q(dir .. "/c"))
    U.write(dir .. "/c/a.txt", s:sub(1, 5999))
    U.write(dir .. "/c/b.txt", s:sub(6000, 7998))
end
local val_file = dir .. "/c/b.txt"
local common = "train.batch=2 train.seq_len=48 train.steps=6 train.warmup=2 train.threads=1 eval.every=0 "
    .. "eval.final_max_bytes=0 data.val_fraction=0.25 out.plot=false data.path=" .. q(dir .. "/c") .. " out.dir=" .. q(dir)

local function result(run) return json.decode(U.read(dir .. "/" .. run .. "/result.json")) end

-- the evaluate line of a file: bytes, bits/byte, mean patch (or nil)
local function parse(out, path)
    local pat = path:gsub("%p", "%%%0") .. ": (%d+) bytes, ([%d.]+) bits/byte"
    local n, bpb = out:match(pat)
    local patch = out:match(path:gsub("%p", "%%%0") .. ": [^\n]*mean patch ([%d.]+) bytes")
    return tonumber(n), tonumber(bpb), tonumber(patch)
end

local function rel(a, b) return math.abs(a - b) / math.abs(b) end

-- ---- ByteLM ----
local rc, out = U.sh(bin .. " experiments/train_bytelm.lua model.dim=16 model.layers=2 model.heads=2 model.multiple_of=16 "
    .. "model.window=16 out.name=lm " .. common)
T.is(rc, 0, "a tiny ByteLM trains", out)
local lm = dir .. "/lm/checkpoint.h5"
local r = result("lm")
T.is(r.val_bytes, 2000, "its validation split is b.txt and its EOS (2000 ids)")
rc, out = U.sh(bin .. " scripts/evaluate.lua model=" .. q(lm) .. " " .. q(val_file))
local n, bpb = parse(out, val_file)
T.ok(rc == 0 and n == 2000 and bpb and rel(bpb, r.val_bpb) < 1e-6,
     "evaluate.lua on the validation bytes equals the trainer's val_bpb (ByteLM)", out .. " want " .. tostring(r.val_bpb))
T.ok(out:find("2000/2000 %["), "a progress bar over the file's bytes", out)
-- another batch and two files: the same figure per file, and a total weighted by bytes
rc, out = U.sh(bin .. " scripts/evaluate.lua batch=3 model=" .. q(lm) .. " -- " .. q(val_file) .. " " .. q(dir .. "/c/a.txt"))
local n1, b1 = parse(out, val_file)
local n2, b2 = parse(out, dir .. "/c/a.txt")
local nt, bt = parse(out, "total")
T.ok(rc == 0 and n1 == 2000 and n2 == 6000 and nt == 8000 and rel(b1, r.val_bpb) < 1e-6
     and math.abs(bt - (2000 * b1 + 6000 * b2) / 8000) < 1e-5, "per file and in total, any batch", out)
-- another row length predicts each byte once too, with other context: a different figure
rc, out = U.sh(bin .. " scripts/evaluate.lua seq_len=16 model=" .. q(lm) .. " " .. q(val_file))
local n3, b3 = parse(out, val_file)
T.ok(rc == 0 and n3 == 2000 and b3 and b3 ~= bpb, "seq_len= sets the row length (each byte still predicted once)", out)
rc, out = U.sh(bin .. " scripts/evaluate.lua max_bytes=500 model=" .. q(lm) .. " " .. q(val_file))
local n4 = parse(out, val_file)
T.ok(rc == 0 and n4 and n4 >= 500 and n4 < 2000, "max_bytes= stops early", out)

-- ---- BLT (entropy patching: a frozen entropy model inside) ----
rc, out = U.sh(bin .. " experiments/train_entropy_model.lua model.dim=16 model.layers=1 model.heads=2 model.multiple_of=16 "
    .. "model.window=16 out.name=ent " .. common)
T.is(rc, 0, "a tiny entropy model", out)
rc, out = U.sh(bin .. " experiments/train_blt.lua model.dim=16 model.heads=2 model.multiple_of=16 model.global.dim=32 "
    .. "model.global.heads=2 model.global.layers=2 model.cross.heads=2 model.hash.buckets=64 model.encoder.window=16 "
    .. "model.decoder.window=16 patching.scheme=entropy patching.target=3 patching.calib_bytes=2048 "
    .. "patching.entropy_model=" .. q(dir .. "/ent/checkpoint.h5") .. " out.name=bltm " .. common)
T.is(rc, 0, "a tiny BLT trains", out)
local bltck = dir .. "/bltm/checkpoint.h5"
r = result("bltm")
rc, out = U.sh(bin .. " scripts/evaluate.lua model=" .. q(bltck) .. " " .. q(val_file))
local bn, bb, bp = parse(out, val_file)
T.ok(rc == 0 and bn == r.val_bytes and bb and rel(bb, r.val_bpb) < 1e-6,
     "evaluate.lua on the validation bytes equals the trainer's val_bpb (BLT)", out .. " want " .. tostring(r.val_bpb))
T.ok(bp and bp > 1.5 and bp < 6, "the BLT's mean patch size is reported", out)
T.ok(out:find("blt, step 6"), "the header names the kind and step", out)

-- ---- inspect ----
rc, out = U.sh(bin .. " scripts/inspect.lua " .. q(lm))
T.ok(rc == 0 and out:find("kind bytelm\n") and out:find("step 6\n") and out:find("  model%.dim=16\n")
     and out:find("  train%.seq_len=48\n"), "inspect: kind, step and the config as key=value", out)
T.ok(out:find("parameters 15056 trained, 0 frozen, 15056 in all"), "inspect: the parameter counts", out)
T.ok(out:find("\n  embed +260 x 16 +4160\n") and out:find("\n  layers%.1%.ffn%.w2 +16 x 48 +768\n"),
     "inspect: a table of names, shapes and counts", out)
rc, out = U.sh(bin .. " scripts/inspect.lua model=" .. q(bltck))
local tr, fr = out:match("parameters (%d+) trained, (%d+) frozen")
T.ok(rc == 0 and out:find("kind blt\n") and tonumber(fr) and tonumber(fr) > 0 and tonumber(tr) > 0
     and out:find("\n  entropy%.embed +260 x 16 +4160 +frozen\n"), "inspect: a BLT's entropy model counts as frozen", out)
rc, out = U.sh(bin .. " scripts/inspect.lua json=true " .. q(lm))
local js = out:match("\nconfig (%b{})\n")
local okj, cfg = pcall(json.decode, js or "")
T.ok(rc == 0 and okj and cfg.model.dim == 16 and cfg.kind == "bytelm", "inspect json=true: the config as JSON", out)

-- ---- bad input: status 2, naming what is wrong ----
local junk = dir .. "/junk.h5"
U.write(junk, ("not a checkpoint "):rep(20))
for _, c in ipairs {
    {"evaluate.lua --help", 0, "usage: ./blt scripts/evaluate.lua"},
    {"inspect.lua --help", 0, "usage: ./blt scripts/inspect.lua"},
    {"evaluate.lua " .. q(val_file), 2, "model=CKPT is required"},
    {"evaluate.lua model=" .. q(dir .. "/none.h5") .. " " .. q(val_file), 2, "model=" .. dir .. "/none.h5"},
    {"evaluate.lua model=" .. q(junk) .. " " .. q(val_file), 2, "model=" .. junk},
    {"evaluate.lua model=" .. q(lm) .. " " .. q(dir .. "/missing.txt"), 2, "FILE " .. dir .. "/missing.txt"},
    {"evaluate.lua model=" .. q(lm), 2, "no FILE"},
    {"evaluate.lua seq_len=0 model=" .. q(lm) .. " " .. q(val_file), 2, "seq_len"},
    {"evaluate.lua batch=-1 model=" .. q(lm) .. " " .. q(val_file), 2, "batch"},
    {"evaluate.lua modle=" .. q(lm) .. " " .. q(val_file), 2, "modle"},
    {"inspect.lua " .. q(dir .. "/none.h5"), 2, dir .. "/none.h5"},
    {"inspect.lua " .. q(junk), 2, junk},
    {"inspect.lua", 2, "no checkpoint"},
} do
    rc, out = U.sh(bin .. " scripts/" .. c[1])
    T.ok(rc == c[2] and out:find(c[3], 1, true), ("%s: status %d, says '%s'"):format(c[1]:gsub(dir, "$dir"), c[2], c[3]), out)
end

U.cleanup(dir)
T.done()
