-- The BLT paper's entropy figure for a text: the entropy model's next-byte entropy at
-- every byte, the global threshold, and the patch starts the entropy scheme makes at it.
--
--   ./blt scripts/plot_entropy.lua model=runs/entropy-1/checkpoint.h5 [threshold=1.3 | target=4.5]
--                                  [out=entropy.png] [max_patch_len=N] [reset_on_newline=true]
--                                  [file=PATH | TEXT...]
--
-- Byte i of the text (x = i, 1-based) is plotted with the entropy of the prediction that
-- chose it (made at row position i - 1, row = [BOS, bytes]); a patch starts at byte i when
-- that entropy exceeds the threshold (dashed vertical lines mark the starts). With
-- target= the threshold is calibrated on the text itself (default: target=4.5).
--
-- Also a module (the demo uses it): with scripts/ on package.path,
--   local pe = require "plot_entropy"
--   pe.plot{text =, entropies =, threshold =, path =, title =, max_patch_len =} -> path, lengths
local config = require "blt.config"
local patching = require "blt.patching"
local plot = require "blt.plot"

local M = {}

M.usage = [[
usage: ./blt scripts/plot_entropy.lua [key=value ...] [--] [TEXT...]
Writes a PNG of the entropy model's next-byte entropies over TEXT (the arguments that are not
key=value, joined by spaces; else file=PATH; else stdin), with the threshold and the entropy
scheme's patch starts. Without threshold= the threshold is calibrated on the text (target=).

  ./blt scripts/plot_entropy.lua model=runs/entropy-1/checkpoint.h5 target=4.5 out=entropy.png "Some text"]]

M.defaults = {model = config.OPTIONAL, threshold = config.OPTIONAL, target = config.OPTIONAL,
              max_patch_len = config.OPTIONAL, reset_on_newline = false, out = "entropy.png", file = config.OPTIONAL}
M.docs = {model = "entropy model checkpoint (unset: runs/entropy-1/checkpoint.h5)",
          threshold = "global entropy threshold in nats", target = "calibrate the threshold on the text for this many bytes per patch (unset: 4.5)",
          max_patch_len = "cut patches longer than this", reset_on_newline = "the entropy model restarts after each newline",
          out = "the PNG to write", file = "read the text from this file ('-': stdin)"}
M.rules = {threshold = ">= 0", target = "> 1",
           max_patch_len = function(v) if math.type(v) ~= "integer" or v < 1 then return "must be an integer >= 1" end end}

local function fail(fmt, ...) error({msg = fmt:format(...)}, 0) end


-- Label of byte i of text for the x axis ("" for UTF-8 continuation bytes: the character
-- is on its lead byte).
local function label(text, i)
    local b = text:byte(i)
    if b == 32 then return "␣" end
    if b == 10 then return "↵" end
    if b == 9 then return "→" end
    if b < 32 or b == 127 then return ("\\x%02X"):format(b) end
    if b >= 0x80 and b < 0xC0 then return "" end
    if b >= 0xC0 then
        local n = b >= 0xF0 and 4 or b >= 0xE0 and 3 or 2
        local ch = text:sub(i, i + n - 1)
        if #ch == n and utf8.len(ch) == 1 then return ch end
        return ("\\x%02X"):format(b)
    end
    return string.char(b)
end

--- M.plot{text, entropies, threshold, path, title =, max_patch_len =, subtitle =} -> path, lengths
-- entropies: #text + 1 values (row positions 0..#text). Lengths are the entropy scheme's.
function M.plot(o)
    local text, e = o.text, o.entropies
    if #text == 0 then error("plot_entropy: the text is empty", 2) end
    if #e ~= #text + 1 then
        error(("plot_entropy: %d entropies for a text of %d bytes (want %d)"):format(#e, #text, #text + 1), 2)
    end
    local p = patching.patcher {scheme = "entropy", threshold = o.threshold, max_patch_len = o.max_patch_len}
    local lengths = p:lengths(text, e)
    local xs, ys = {}, {}
    for i = 1, #text do xs[i], ys[i] = i, e[i] end
    local marks, sx, sy, pos = {}, {}, {}, 1
    for j = 2, #lengths do
        marks[#marks + 1] = pos - 0.5
        sx[#sx + 1], sy[#sy + 1] = pos, e[pos]
        pos = pos + lengths[j]
    end
    local xtics
    if #text <= 80 then
        xtics = {}
        for i = 1, #text do xtics[#xtics + 1] = {i, label(text, i)} end
    end
    local st = patching.stats {lengths}
    local title = o.title or "Next-byte entropy"
    title = ("%s: threshold %.3f nats, %d patches, %.2f bytes/patch"):format(title, o.threshold, st.patches, st.mean)
    if o.subtitle then title = title .. " (" .. o.subtitle .. ")" end
    local width = 1000
    if xtics then width = math.max(1000, math.min(2400, 160 + 14 * #text)) end
    plot.lines {path = o.path, title = title, width = width, height = 500,
                xlabel = xtics and "byte (circles, dashed lines: patch starts)" or "byte position (circles, dashed lines: patch starts)",
                ylabel = "entropy (nats)", xtics = xtics, vmarks = marks, yrange = {0, "*"},
                series = {{name = "entropy", x = xs, y = ys, style = "linespoints pt 7 ps 0.6"},
                          {name = "patch start", x = sx, y = sy, style = "points pt 6 ps 2", color = "#d62728"}},
                hlines = {{y = o.threshold, name = ("threshold %.3f"):format(o.threshold)}}}
    return o.path, lengths
end

-- ---- command line ----

local function parse(args)
    local ok, o, flags = pcall(config.parse, M.defaults, args, {words = true})
    if ok then ok, o = pcall(function() config.check(o, M.rules, M.defaults) return o end) end
    if not ok then fail("%s", tostring(o):gsub("^config: ", "")) end
    o.words, o.help = flags.words, flags.help
    return o
end

function M.main(args)
    local ok, status = pcall(function()
        local o = parse(args)
        if o.help then print(M.usage .. "\n\nkeys (default, meaning; allowed values):\n" .. config.help(M.defaults, M.docs, M.rules)) return 0 end
        if o.threshold and o.target then fail("give threshold= or target=, not both") end
        local text
        if #o.words > 0 then
            if o.file then fail("give the text either as arguments or with file=PATH, not both") end
            text = table.concat(o.words, " ")
        elseif o.file and o.file ~= "-" then
            local f, err = require("blt.util").open_read(o.file)
            if not f then fail("cannot read file=%s: %s", o.file, err) end
            text = f:read("a")
            f:close()
        else
            text = io.read("a") or ""
        end
        if #text == 0 then fail("the text is empty") end
        if not plot.available() then fail("gnuplot is not installed (run 'make deps', which installs gnuplot-nox)") end
        local show = M.show_module()
        local model = o.model or show.DEFAULT_MODEL
        local e = show.entropies(model, text, o.reset_on_newline)
        local threshold, note = o.threshold, nil
        if not threshold then
            local target = o.target or 4.5
            local mean
            threshold, mean = show.calibrate(text, e, "entropy", target, nil, o.max_patch_len)
            note = ("threshold calibrated on this text for %g bytes/patch (reached %.2f)"):format(target, mean)
        end
        -- the output's folder is made; a path that cannot be written is the user's to fix
        local parent = o.out:match("^(.*)/[^/]*$")
        if parent and parent ~= "" and not require("blt.core").mkdir(parent) then
            fail("out=%s: cannot make its folder", o.out)
        end
        local okp, path = pcall(M.plot, {text = text, entropies = e, threshold = threshold, path = o.out,
                                         max_patch_len = o.max_patch_len, subtitle = "model " .. model})
        if not okp and tostring(path):find("blt.plot.lines: cannot write", 1, true) then
            fail("out=%s: %s", o.out, (tostring(path):gsub("^.-blt%.plot%.lines: ", "")))
        elseif not okp then
            error(path, 0)
        end
        if note then print(note) end
        print(path)
        return 0
    end)
    if ok then return status end
    local msg = type(status) == "table" and require("blt.util").message(status) or tostring(status)
    io.stderr:write("plot_entropy: ", msg, "\n")
    return type(status) == "table" and 2 or 1
end

-- show_patches (next to this file) holds the model loading and calibration.
function M.show_module()
    local dir = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
    if not package.path:find(dir .. "?.lua", 1, true) then package.path = dir .. "?.lua;" .. package.path end
    return require "show_patches"
end

if arg and arg[0] and arg[0]:match("plot_entropy%.lua$") and (...) ~= "plot_entropy" then
    os.exit(M.main(arg))
end

return M
