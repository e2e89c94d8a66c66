-- Samples bytes from a trained model (ByteLM or BLT), streaming them to stdout.
--   ./blt scripts/generate.lua model=runs/blt-1/checkpoint.h5 temperature=0.8 top_p=0.9 seed=1 n=500 -- "In the beginning"
--   ./blt scripts/generate.lua model=CKPT temperature=0 n=200 show_patches=true "Prompt"
-- The prompt is the words that are not key=value (after `--`, every word). bytes/s goes
-- to stderr. temperature=0 is greedy; cache=false recomputes the whole row per byte;
-- precision=bf16 reads the weights in bf16 (refused, status 2, where bf16 would be widened).
local config = require "blt.config"
local core = require "blt.core"
local generate = require "blt.generate"
local models = require "blt.models"

local opts, flags = config.script {
    name = "generate", args = arg, words = true,
    usage = "usage: ./blt scripts/generate.lua model=CKPT [n=500] [temperature=0.8] [top_p=0.9] [seed=1] [--] PROMPT...",
    defaults = {model = config.OPTIONAL, n = 500, temperature = 0.8, top_k = 0, top_p = 1.0, seed = 1,
                stop = config.OPTIONAL, eos = true, cache = true, show_patches = false, threads = 0, precision = "fp32"},
    docs = {model = "checkpoint of a trained model (required)", n = "bytes to generate at most",
            temperature = "0: greedy; else logits / temperature before sampling", top_k = "sample among the k likeliest (0: all)",
            top_p = "sample within the smallest set of this probability (1: all)", seed = "sampling seed",
            stop = "end when the output ends with this string (removed)", eos = "end at EOS (false: never draw EOS)", cache = "key/value caches (false: recompute the row per byte)",
            show_patches = "a BLT: colour the generated text's patches at the end", threads = "threads (0: all cores)",
            precision = "linear layers' products: fp32, or bf16 operands (weights read in bf16: faster cached steps)"},
    rules = {model = "readable", n = ">= 0", temperature = ">= 0", top_k = ">= 0", top_p = "(0, 1]", threads = "[0, 256]",
             stop = function(v) if v == "" then return "must not be empty" end end, precision = {"fp32", "bf16"}},
}
if not opts then return end -- --help
local util = require "blt.util"
local function fail(msg) util.die("generate", msg) end
if not opts.model then fail("give model=CKPT (a checkpoint written by a training script)") end
if opts.threads > 0 then core.set_threads(opts.threads) end
if opts.precision == "bf16" then -- refused where bf16 would be widened (slower than fp32): say so before loading
    local okp, errp = pcall(core.set_precision, "bf16")
    if not okp then fail(("precision = bf16 is refused: %s; use precision=fp32")
        :format((util.message(errp):gsub("^blt%.set_precision: ", "")))) end
    core.set_precision("fp32")
end
local ok, model = pcall(models.load, opts.model)
if not ok then fail(model) end
-- byte by byte only: a token model (bpe_lm) has no step interface
if not model.start then fail(("%s holds a model of kind %s, which cannot generate byte by byte"):format(opts.model, tostring(model.kind))) end
local prompt = table.concat(flags.words, " ")
if opts.stop ~= nil then opts.stop = tostring(opts.stop) end

io.stdout:setvbuf("no")
io.write(prompt)
local okr, text, info = pcall(generate.run, model, prompt, opts.n, {temperature = opts.temperature,
    top_k = opts.top_k, top_p = opts.top_p, seed = opts.seed, stop = opts.stop, cache = opts.cache, eos = opts.eos, precision = opts.precision,
    on_byte = function(b) io.write(b) end})
if not okr then io.write("\n") fail(text) end -- a diverged model's NaN logits, say
io.write("\n")
io.stderr:write(("generate: %d bytes in %.2f s (%.0f bytes/s, %s), ended by %s\n"):format(info.bytes, info.seconds,
    info.bytes / math.max(info.seconds, 1e-9), opts.cache and "cached" or "full recomputation", info.stopped))
if opts.show_patches then
    if not model.prepare then fail("show_patches needs a model with patches (a BLT)") end
    local dir = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
    package.path = dir .. "?.lua;" .. package.path
    local show = require "show_patches"
    local row = core.tensor({info.ids}, "int32")
    local p = model:prepare(row)
    local lengths = p.lengths:totable()[1]
    while lengths[#lengths] == 0 do lengths[#lengths] = nil end
    local full = prompt .. text
    print((show.render(full, lengths, {color = os.getenv("NO_COLOR") == nil and core.isatty(1)})))
    print(show.summary(lengths))
end
