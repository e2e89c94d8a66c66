-- Helpers the test files share: a temporary folder, files, shell commands.
--   local U = require "testutil"
--   local dir = U.tmpdir()               a new folder (removed by U.cleanup(dir))
--   U.write(path, text); U.read(path)    whole files (read: nil when missing)
--   local rc, out = U.sh(cmd)            exit status and stdout+stderr of a shell command
--   U.q(s)                               s quoted for the shell
--   U.scripts()                          every experiments/*.lua and scripts/*.lua, sorted
--   U.script_words(script, dir)          the words a script needs to run at all (train_model: model.file=)
--   U.f32_tol(n, scale)                  how far two float32 sums of n terms may differ (below)
--   U.f32_terms(model)                   n for a model's outputs: the input widths of its products
local U = {}

function U.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function U.tmpdir()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. U.q(dir)))
    return dir
end

function U.cleanup(dir) os.execute("rm -rf " .. U.q(dir)) end

U.read = require("blt.util").read_file

function U.write(path, text)
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
end

function U.sh(cmd)
    local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
    local out = p:read("a")
    p:close()
    local rc = tonumber(out:match("rc=(%d+)\n?$"))
    return rc, (out:gsub("rc=%d+\n?$", ""))
end

function U.scripts()
    local core = require "blt.core"
    local scripts = {}
    for _, d in ipairs {"experiments", "scripts"} do
        for _, f in ipairs(core.listdir(d)) do
            if f:match("%.lua$") then scripts[#scripts + 1] = d .. "/" .. f end
        end
    end
    table.sort(scripts)
    return scripts
end

-- Floats computed along different paths (another BLAS kernel, another number of query
-- or batch rows, another thread split) add the same terms in another order, so they may
-- differ in the last bits; equality is exact only where the path is the same. A float32
-- sum of n terms, in any order, is within n u sum|terms| of the exact sum to first order
-- (u = 2^-24, the unit roundoff; Higham, Accuracy and Stability of Numerical Algorithms,
-- eq. 4.4), so two orders differ by at most 2 n u scale, scale bounding sum|terms|. Each
-- test says what n and scale are for its path.
U.F32_U = 2 ^ -24
function U.f32_tol(n, scale) return 2 * n * U.F32_U * scale end

-- For a whole model's outputs, n is at most the summed input width of its weight matrices
-- (embedding tables are looked up, not multiplied: left out): every product a value
-- passes on its way, to first order and with layers that do not amplify a relative error.
-- Products side by side (q, k and v; w1 and w3) count each, which also covers attention's
-- own sums over a head's width and its keys while a head sees no more keys than the width.
function U.f32_terms(model)
    local n = 0
    for _, p in ipairs(model:parameter_list()) do
        local shape = p.tensor:shape()
        if #shape == 2 and not p.name:find("embed") and not p.name:find("hash%.") then n = n + shape[2] end
    end
    return n
end

-- A corpus file of the first `bytes` of the default corpus (or a repeated sentence).
function U.corpus(path, bytes)
    local text = U.read("data/kjv.txt")
    text = text and text:sub(1, bytes) or ("In the beginning was the word, and the word was with God. "):rep(bytes // 58 + 1):sub(1, bytes)
    U.write(path, text)
    return path
end

-- The words a script needs before it can run at all (generated tests over every script
-- add them): experiments/train_model.lua takes its kind from a file, docs/extending.md's
-- example kind, written into dir.
function U.script_words(script, dir)
    if not script:match("experiments/train_model%.lua$") then return "" end
    local path = dir .. "/doc_kind_bigram.lua"
    U.write(path, assert(U.read("docs/extending.md"):match("```lua file=lua/blt/models/bigram.lua\n(.-)```")))
    return "model.file=" .. U.q(path)
end

-- A real checkpoint: two steps of the ByteLM trainer (d 32, 2 layers) on a small corpus,
-- in dir/run/. Returns the checkpoint's path, whether the run succeeded, and its output.
function U.tiny_run(dir, bin)
    U.write(dir .. "/corpus.txt", ("In the beginning was the word, and the word was with God. "):rep(600))
    local rc, out = U.sh(table.concat({bin or os.getenv("BLT_BIN") or "./blt", "experiments/train_bytelm.lua",
        "model.dim=32", "model.layers=2", "model.heads=2", "model.multiple_of=32", "model.window=32", "train.batch=2",
        "train.seq_len=32", "train.steps=2", "train.warmup=1", "train.threads=1", "eval.every=0",
        "eval.final_max_bytes=128", "out.checkpoint_every=0", "out.plot=false", "train.log_every=1",
        "data.path=" .. U.q(dir .. "/corpus.txt"), "out.dir=" .. U.q(dir), "out.name=run"}, " "))
    local ck = dir .. "/run/checkpoint.h5"
    return ck, rc == 0 and U.read(ck) ~= nil, out
end

-- A tiny BLT model config (d_E 16, d_G 32, 1 encoder / 2 global / 2 decoder layers,
-- windows 8, n-grams 3 and 4 in 64 buckets); over: values to change, sections as tables.
function U.tiny_blt(over)
    local config = require "blt.config"
    local m = config.copy(require("blt.models.blt").defaults)
    m.dim, m.heads, m.k, m.multiple_of = 16, 2, 2, 16
    m.encoder.layers, m.encoder.window = 1, 8
    m.global.dim, m.global.layers, m.global.heads, m.global.window = 32, 2, 2, 0
    m.decoder.layers, m.decoder.window = 2, 8
    m.cross.heads = 2
    m.hash.ngrams, m.hash.buckets = "3,4", 64
    for k, v in pairs(over or {}) do
        if type(v) == "table" then for kk, vv in pairs(v) do m[k][kk] = vv end else m[k] = v end
    end
    return m
end

-- A tiny ByteLM, the entropy model of the BLT tests.
function U.tiny_entropy_model(seed)
    return require("blt.models.bytelm").new({dim = 16, layers = 1, heads = 2, multiple_of = 16, window = 16}, seed or 3)
end

-- max |a - b| over two tensors of the same shape (NaN counts as infinite), and max |b|
function U.max_err(a, b)
    local flatten = require("tap").flatten
    local x, y = flatten(a:totable()), flatten(b:totable())
    assert(#x == #y, ("%d values against %d"):format(#x, #y))
    local e, m = 0.0, 0.0
    for i = 1, #x do
        local d = math.abs(x[i] - y[i])
        if d ~= d then d = math.huge end
        e, m = math.max(e, d), math.max(m, math.abs(y[i]))
    end
    return e, m
end

-- Where bf16 products would be widened to fp32 (no AVX512_BF16 or oneDNN, or the
-- sanitizer build), reruns this test file with BLT_BF16_SLOW=1 (same rounding, fp32
-- products) and exits with its status; else returns.
function U.bf16_or_rerun(bin)
    local core = require "blt.core"
    local native = pcall(core.set_precision, "bf16")
    core.set_precision("fp32")
    if native or os.getenv("BLT_BF16_SLOW") == "1" then return end
    require("tap").diag("bf16 products are widened here (" .. core.blas_info() .. "): running with BLT_BF16_SLOW=1")
    local p = io.popen("BLT_BF16_SLOW=1 " .. bin .. " " .. arg[0] .. " 2>&1")
    for line in p:lines() do print(line) end
    local ok, _, code = p:close()
    os.exit(ok and 0 or code or 1)
end

return U
