-- Shows how a patching scheme cuts a text into patches: alternating background colours
-- in a terminal, patches separated by '|' otherwise (or with --no-color).
--
--   scripts/show_patches [key=value ...] [--] [TEXT...]   (or ./blt scripts/show_patches.lua ...)
--   scripts/show_patches scheme=space "Hello there, world"
--   scripts/show_patches scheme=fixed size=4 file=notes.txt
--   scripts/show_patches scheme=entropy threshold=1.3 model=runs/entropy-1/checkpoint.h5 "..."
--   scripts/show_patches scheme=entropy target=4.5 "..."     (threshold calibrated on the text)
--   echo "some text" | scripts/show_patches scheme=entropy_delta delta=0.5
--
-- Also a module (the demo uses it): with scripts/ on package.path,
--   local show = require "show_patches"
--   show.lengths(text, {scheme =, size =, threshold =, delta =, max_patch_len =, entropies =})
--   show.render(text, lengths, {color = true})  -> the text with patches marked (a string)
--   show.summary(lengths, extra)               -> one line: patches and mean bytes per patch
--   show.main(args)                            -> the command line; returns an exit status
local patching = require "blt.patching"

local M = {}

M.DEFAULT_MODEL = "runs/entropy-1/checkpoint.h5"
M.SCHEMES = {"fixed", "space", "entropy", "entropy_delta", "byte"}

-- Background colours cycled over patches (256-colour palette, pale, with black text:
-- readable on dark and light terminals).
M.PALETTE = {153, 223, 194, 225}
local RESET = "\27[0m"

M.usage = [[
usage: scripts/show_patches [key=value ...] [--] [TEXT...]
Shows the patches of TEXT (the arguments that are not key=value, joined by spaces; else
file=PATH; else stdin). Every setting is key=value, as in every script of the project;
after `--` every argument is text.

  scripts/show_patches scheme=space "Hello there, world"
  scripts/show_patches scheme=fixed size=4 file=notes.txt
  scripts/show_patches scheme=entropy threshold=1.3 model=runs/entropy-1/checkpoint.h5 "..."
  scripts/show_patches scheme=entropy target=4.5 "..."       (threshold calibrated on the text)

Patches are over the row [BOS, bytes]; BOS is a patch of its own and is not shown or counted
in the mean. A boundary that falls inside a UTF-8 character is drawn after that character.]]

local config = require "blt.config"
M.defaults = {scheme = "space", size = config.OPTIONAL, threshold = config.OPTIONAL, delta = config.OPTIONAL,
              target = config.OPTIONAL, model = config.OPTIONAL, max_patch_len = config.OPTIONAL,
              reset_on_newline = false, file = config.OPTIONAL, color = config.OPTIONAL}
M.docs = {
    scheme = "patching scheme", size = "fixed: patch length (unset: 4)",
    threshold = "entropy: global threshold in nats; entropy_delta: optional combined threshold",
    delta = "entropy_delta: threshold on the entropy increase e[t] - e[t-1]",
    target = "entropy, entropy_delta: calibrate the threshold (entropy) or delta on this text for this mean patch size",
    model = "entropy model checkpoint (unset: " .. M.DEFAULT_MODEL .. ")",
    max_patch_len = "cut patches longer than this", reset_on_newline = "the entropy model restarts after each newline",
    file = "read the text from this file ('-': stdin)", color = "unset: colours on a terminal",
}
local function int_at_least(min)
    return function(v)
        if math.type(v) ~= "integer" or v < min then return ("must be an integer >= %d"):format(min) end
    end
end
M.rules = {scheme = M.SCHEMES, size = int_at_least(1), max_patch_len = int_at_least(1), threshold = ">= 0",
           delta = ">= 0", target = "> 1", color = {true, false}}

local function fail(fmt, ...) error({msg = fmt:format(...)}, 0) end

local function is_cont(b) return b >= 0x80 and b < 0xC0 end

--- M.lengths(text, opts) -> patch lengths (BOS first), plus s[N]
-- opts: scheme, size, threshold, delta, max_patch_len, entropies (one per row position,
-- #text + 1 of them; needed by the entropy schemes).
function M.lengths(text, o)
    local p = patching.patcher {scheme = o.scheme, size = o.size, threshold = o.threshold, delta = o.delta,
                                max_patch_len = o.max_patch_len}
    return p:lengths(text, o.entropies)
end

-- Byte positions (1-based, in text) where a shown patch starts, after moving a boundary
-- inside a UTF-8 character to the end of that character. Returns the set and the count moved.
local function shown_starts(text, lengths)
    local starts, moved, pos = {}, 0, 1 -- pos: text index where the next patch starts
    for j = 2, #lengths do
        local s = pos
        if j > 2 then
            while s <= #text and is_cont(text:byte(s)) and s > 1 do s = s + 1 end
            if s ~= pos then moved = moved + 1 end
        end
        if s <= #text then starts[s] = true end
        pos = pos + lengths[j]
    end
    return starts, moved
end

--- M.render(text, lengths [, {color = bool}]) -> string: the text with its patches marked.
-- color: each patch on the next background colour of M.PALETTE (a newline is drawn as '↵'
-- so a patch made of line breaks stays visible); else '|' between patches.
function M.render(text, lengths, o)
    o = o or {}
    local starts, moved = shown_starts(text, lengths)
    local out, k = {}, 0
    local i = 1
    while i <= #text do
        if starts[i] then
            k = k + 1
            if o.color then
                out[#out + 1] = ("\27[30;48;5;%dm"):format(M.PALETTE[(k - 1) % #M.PALETTE + 1])
            elseif k > 1 then
                out[#out + 1] = "|"
            end
        end
        local c = text:sub(i, i)
        if o.color and c == "\n" then
            out[#out + 1] = "↵" .. RESET .. "\n" ..
                ("\27[30;48;5;%dm"):format(M.PALETTE[(k - 1) % #M.PALETTE + 1])
        else
            out[#out + 1] = c
        end
        i = i + 1
    end
    if o.color and #text > 0 then out[#out + 1] = RESET end
    return table.concat(out), moved
end

--- M.summary(lengths [, extra]) -> "N patches, mean M bytes per patch (min a, max b)[, extra]"
function M.summary(lengths, extra)
    local st = patching.stats {lengths}
    local s = ("%d patches over %d bytes, mean %.2f bytes/patch (min %d, max %d; BOS patch excluded)")
        :format(st.patches, st.bytes, st.mean, st.min, st.max)
    if extra and extra ~= "" then s = s .. "; " .. extra end
    return s
end

-- Entropies for the text, from the model file (loaded once per path).
local models = {}
function M.entropies(model_path, text, reset_on_newline)
    local entropy = require "blt.entropy"
    local m = models[model_path]
    if not m then
        local f, why = require("blt.util").open_read(model_path)
        if not f and not require("blt.core").file_kind(model_path) then
            fail("entropy model '%s' not found: give --model PATH (a ByteLM checkpoint; train one with "
                .. "'./blt experiments/train_entropy_model.lua')", model_path)
        end
        if not f then fail("entropy model %s", why) end
        f:close()
        local ok, lm = pcall(entropy.load_model, model_path)
        if not ok then fail("%s", require("blt.util").message(lm)) end
        m = lm
        models[model_path] = m
    end
    return entropy.of_text(m, text, {reset_on_newline = reset_on_newline or false})
end

--- M.calibrate(text, entropies, scheme, target [, threshold, max_patch_len]) -> value, mean
-- The entropy threshold (entropy) or delta (entropy_delta) giving target bytes per patch on text.
function M.calibrate(rows, ents, scheme, target, threshold, max_patch_len)
    if type(rows) == "string" then rows, ents = {rows}, {ents} end
    return patching.calibrate {scheme = scheme, target = target, rows = rows, entropies = ents,
                               threshold = scheme == "entropy_delta" and threshold or nil,
                               max_patch_len = max_patch_len}
end

-- ---- command line ----

-- The options table: M.defaults' keys, words (the text), help. Raises {msg = ...}.
function M.parse(args)
    local ok, o, flags = pcall(config.parse, M.defaults, args, {words = true})
    if ok then ok, o = pcall(function() config.check(o, M.rules, M.defaults) return o end) end
    if not ok then fail("%s", tostring(o):gsub("^config: ", "")) end
    o.words, o.help = flags.words, flags.help
    return o
end

local function read_text(o)
    if #o.words > 0 then
        if o.file then fail("give the text either as arguments or with file=PATH, not both") end
        return table.concat(o.words, " ")
    end
    local f, err
    if o.file and o.file ~= "-" then
        f, err = require("blt.util").open_read(o.file)
        if not f then fail("cannot read file=%s: %s", o.file, err) end
        local s = f:read("a")
        f:close()
        return s
    end
    if not o.file and require("blt.core").isatty(0) then
        io.stderr:write("show_patches: reading the text from stdin (end with Ctrl-D; --help for usage)\n")
    end
    return io.read("a") or ""
end

-- Checks the options against the scheme; returns the patcher options and a note for the summary.
function M.resolve(o, text)
    local scheme = o.scheme or "space"
    local known = false
    for _, s in ipairs(M.SCHEMES) do known = known or s == scheme end
    if not known then
        fail("unknown scheme '%s' (known: %s)", scheme, table.concat(M.SCHEMES, ", "))
    end
    local function only(allowed)
        for _, k in ipairs {"size", "threshold", "delta", "target", "model"} do
            if o[k] ~= nil and not allowed[k] then
                fail("%s does not apply to scheme '%s'", k, scheme)
            end
        end
        if o.reset_on_newline and not allowed.model then
            fail("reset_on_newline does not apply to scheme '%s'", scheme)
        end
    end
    local p = {scheme = scheme, max_patch_len = o.max_patch_len}
    local note = scheme
    if scheme == "fixed" then
        only {size = true}
        p.size = o.size or 4
        note = ("fixed, size %d"):format(p.size)
    elseif scheme == "space" or scheme == "byte" then
        only {}
    elseif scheme == "entropy" then
        only {threshold = true, target = true, model = true}
        if (o.threshold == nil) == (o.target == nil) then
            fail("scheme 'entropy' needs either threshold=T or target=M (bytes per patch)")
        end
    else -- entropy_delta
        only {threshold = true, delta = true, target = true, model = true}
        if (o.delta == nil) == (o.target == nil) then
            fail("scheme 'entropy_delta' needs either delta=D or target=M (bytes per patch)")
        end
    end
    if scheme == "entropy" or scheme == "entropy_delta" then
        local model = o.model or M.DEFAULT_MODEL
        p.entropies = M.entropies(model, text, o.reset_on_newline)
        p.threshold, p.delta = o.threshold, o.delta
        local how = ""
        if o.target then
            local v, mean = M.calibrate(text, p.entropies, scheme, o.target, o.threshold, o.max_patch_len)
            if scheme == "entropy" then p.threshold = v else p.delta = v end
            how = (" (calibrated on this text for %g bytes/patch, reached %.2f)"):format(o.target, mean)
        end
        if scheme == "entropy" then
            note = ("entropy, threshold %.4f nats%s"):format(p.threshold, how)
        else
            note = ("entropy_delta, delta %.4f nats%s%s"):format(p.delta, how,
                p.threshold and (", threshold %.4f"):format(p.threshold) or "")
        end
        note = note .. ", model " .. model .. (o.reset_on_newline and ", reset on newline" or "")
    end
    if p.max_patch_len then note = note .. (", max patch length %d"):format(p.max_patch_len) end
    return p, note
end

function M.main(args)
    local ok, status = pcall(function()
        local o = M.parse(args)
        if o.help then print(M.usage .. "\n\nkeys (default, meaning; allowed values):\n" .. config.help(M.defaults, M.docs, M.rules)) return 0 end
        local color = o.color
        if color == nil then
            color = os.getenv("NO_COLOR") == nil and os.getenv("TERM") ~= "dumb" and require("blt.core").isatty(1)
        end
        local text = read_text(o)
        local p, note = M.resolve(o, text)
        local lengths = M.lengths(text, p)
        local shown, moved = M.render(text, lengths, {color = color})
        io.write(shown)
        if text:sub(-1) ~= "\n" then io.write("\n") end
        local extra = moved > 0 and (("%d boundaries inside UTF-8 characters drawn after them"):format(moved)) or nil
        io.write(note, ": ", M.summary(lengths, extra), "\n")
        return 0
    end)
    if ok then return status end
    local msg = type(status) == "table" and require("blt.util").message(status) or tostring(status)
    io.stderr:write("show_patches: ", msg, "\n")
    return type(status) == "table" and 2 or 1
end

-- Run as a script (./blt scripts/show_patches.lua ...): arg[0] is this file and `...` are
-- the arguments; required as a module, `...` is the module name.
if arg and arg[0] and arg[0]:match("show_patches%.lua$") and (...) ~= "show_patches" then
    os.exit(M.main(arg))
end

return M
