-- blt.plot: PNG figures through gnuplot (Debian's gnuplot-nox, installed by
-- `make deps`): line plots of curves, with optional horizontal lines and marks, and
-- grouped bars.
--
--   plot.lines{path = "out.png", title = "...", xlabel = "...", ylabel = "...",
--              series = {{name = "loss", x = {...}, y = {...}, style = "lines"}, ...},
--              hlines = {{y = 1.3, name = "threshold"}}, vmarks = {x1, x2, ...},
--              logx = false, logy = false, xtics = {{pos, "label"}, ...}, width = 1000, height = 500}
--   A series may also have color (an integer: gnuplot's line type n, or a string
--   "#rrggbb"), dash (gnuplot dash type, 1 solid, 2 dashed, ...) and err = {...} (a
--   half-width per point: drawn as error bars, style "yerrorlines" unless given).
--   Missing or non-finite values (nil, NaN, inf) are left out of a series.
--
--   plot.bars{path =, title =, xlabel =, ylabel =, categories = {"clean", "case", ...},
--             series = {{name = "model a", y = {one value per category}}, ...}}
--   one group of bars per category, one bar (and colour) per series.
--
--   plot.histogram{path =, values = {...}, title =, xlabel =, max = N}
--   counts of integer values 1..max (max: the largest value) as bars, as a fraction
--   of all values (patch lengths, for instance).
local plot = {}
local core = require "blt.core"

-- Every string that reaches gnuplot's script goes through label(). gnuplot 5.4 runs
-- `cmd` inside double-quoted strings (and anywhere outside quotes), expands @macros
-- and backslash escapes there; inside single quotes it does none of these: the only
-- special character is the quote itself (checked with the installed gnuplot 5.4;
-- tests/test_hostile.lua checks it again). gnuplot's own escape, the quote written
-- twice, fails next to the string's ends ('''x' reads as '' then 'x'), so a quote is
-- printed as the typographic apostrophe U+2019 instead. A newline or another control
-- byte would end the command: they become spaces. With `noenhanced` (header) no
-- character is markup.
local function label(s)
    return "'" .. tostring(s):gsub("[%z\1-\31\127]", " "):gsub("'", "\u{2019}") .. "'"
end

-- A tic label is also a printf format for the tic's position: '%' is written twice.
local function tic_label(s) return label((tostring(s):gsub("%%", "%%%%"))) end

-- File names never come from the caller: gnuplot reads "< cmd" as a command's output
-- and writes to "| cmd". The data, the script and the PNG live in a private folder
-- under fixed names; gnuplot runs there and the script names them relative to it, so
-- not even $TMPDIR reaches the script. The PNG is copied to the caller's path afterwards.
local function workdir()
    local dir, err = core.mkdtemp()
    if not dir then error(err, 0) end
    return {dir = dir, f = function(name) return dir .. "/" .. name end}
end

function plot.available() return core.which("gnuplot") ~= nil end

local function finite(v) return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge end

-- " lc ... dt ..." of a series' color and dash.
local function line_look(s)
    local t = ""
    if math.type(s.color) == "integer" then t = t .. (" lc %d"):format(s.color)
    elseif type(s.color) == "string" and s.color:match("^#%x%x%x%x%x%x$") then t = t .. (" lc rgb '%s'"):format(s.color) end
    if math.type(s.dash) == "integer" then t = t .. (" dt %d"):format(s.dash) end
    return t
end

-- "set yrange [lo:hi]" from numbers only (anything else: automatic, "*").
local function yrange(r)
    local function b(v) return finite(v) and ("%.10g"):format(v) or "*" end
    return ("set yrange [%s:%s]"):format(b(r[1]), b(r[2]))
end

-- The lines every figure starts with.
local function header(o)
    local script = {}
    local w, h = math.tointeger(o.width) or 1000, math.tointeger(o.height) or 500
    -- noenhanced: titles and labels are printed as given (entropy_delta keeps its underscore)
    script[#script + 1] = ("set terminal pngcairo noenhanced size %d,%d font 'sans,11'"):format(w, h)
    script[#script + 1] = "set output 'out.png'"
    if o.title then script[#script + 1] = "set title " .. label(o.title) end
    if o.xlabel then script[#script + 1] = "set xlabel " .. label(o.xlabel) end
    if o.ylabel then script[#script + 1] = "set ylabel " .. label(o.ylabel) end
    return script
end

-- Runs a gnuplot script (a list of lines) in tmp's folder, copies the PNG to path and
-- removes the folder; raises "blt.plot.<fn>: ..." at the user's call.
local function run(script, tmp, path, fn)
    local function done(msg)
        core.rm_rf(tmp.dir)
        if msg then error(("blt.plot.%s: %s"):format(fn, msg), 3) end
    end
    local fh = assert(io.open(tmp.f("plot.gp"), "w"))
    fh:write(table.concat(script, "\n"), "\n")
    fh:close()
    local ok, how, code = core.spawn({"gnuplot", "plot.gp"},
                                     {cwd = tmp.dir, stdin = "/dev/null", stderr = tmp.f("err.txt")})
    if not ok then
        local err = require("blt.util").read_file(tmp.f("err.txt")) or ""
        done(("gnuplot failed (%s %s): %s"):format(how, tostring(code), err))
    end
    local png = require("blt.util").read_file(tmp.f("out.png"))
    if not png then done("gnuplot wrote no figure") end
    if path:find("\0", 1, true) then done("path contains a NUL byte") end
    local out, err = io.open(path, "wb")
    if not out then done(("cannot write %s"):format(err)) end
    local okw, werr = out:write(png)
    out:close()
    if not okw then done(("cannot write %s: %s"):format(path, tostring(werr))) end
    done()
end

function plot.lines(o)
    if type(o) ~= "table" or type(o.path) ~= "string" or type(o.series) ~= "table" then
        error("blt.plot.lines: needs {path = 'file.png', series = {{x = {...}, y = {...}}, ...}}", 2)
    end
    for i, s in ipairs(o.series) do
        if type(s) ~= "table" or type(s.y) ~= "table" or (s.x ~= nil and type(s.x) ~= "table")
           or (s.err ~= nil and type(s.err) ~= "table") then
            error(("blt.plot.lines: series %d needs y = {...} (and x, err tables when given)"):format(i), 2)
        end
    end
    if not plot.available() then
        error("blt.plot.lines: gnuplot is not installed (run 'make deps', which installs gnuplot-nox)", 2)
    end
    require("blt.report").note_figure(o, o.path) -- report.html draws it again, as SVG (blt.svg)
    local tmp = workdir()
    local script = header(o)
    if o.logx then script[#script + 1] = "set logscale x" end
    if o.logy then script[#script + 1] = "set logscale y" end
    if type(o.yrange) == "table" then script[#script + 1] = yrange(o.yrange) end
    script[#script + 1] = "set grid"
    script[#script + 1] = "set key outside right top"
    if o.xtics then
        local t = {}
        for _, x in ipairs(o.xtics) do
            if finite(x[1]) then t[#t + 1] = ("%s %.10g"):format(tic_label(x[2]), x[1]) end
        end
        script[#script + 1] = "set xtics (" .. table.concat(t, ", ") .. ") font ',8'"
    end
    for i, x in ipairs(o.vmarks or {}) do
        if finite(x) then
            script[#script + 1] = ("set arrow %d from %.10g, graph 0 to %.10g, graph 1 nohead lc rgb '#bbbbbb' dt 2")
                :format(i, x, x)
        end
    end
    local plots = {}
    for i, s in ipairs(o.series) do
        local f = ("%d.dat"):format(i)
        local fh = assert(io.open(tmp.f(f), "w"))
        for j = 1, #s.y do
            local x, y, e = s.x and s.x[j] or j, s.y[j], s.err and s.err[j]
            if finite(x) and finite(y) and (not s.err or finite(e)) then
                fh:write(("%.10g %.10g"):format(x, y), s.err and (" %.10g"):format(e) or "", "\n")
            end
        end
        fh:close()
        local style = s.style or (s.err and "yerrorlines" or "linespoints")
        -- words and numbers only ("points pt 6 ps 2"): a quote would let a file name in
        if type(style) ~= "string" or not style:match("^[%w %.]+$") then
            core.rm_rf(tmp.dir)
            error(("blt.plot.lines: series %d: style must be gnuplot words and numbers (colour: color =), got %s")
                :format(i, tostring(style)), 2)
        end
        plots[#plots + 1] = ("%s using %s with %s lw 2%s title %s"):format(label(f), s.err and "1:2:3" or "1:2",
            style, line_look(s), label(s.name or ("series " .. i)))
    end
    for _, hl in ipairs(o.hlines or {}) do
        if finite(hl.y) then
            plots[#plots + 1] = ("%.10g with lines dt 2 lw 2 title %s"):format(hl.y, label(hl.name or ("y = " .. hl.y)))
        end
    end
    script[#script + 1] = "plot " .. table.concat(plots, ", \\\n     ")
    run(script, tmp, o.path, "lines")
    return o.path
end

function plot.bars(o)
    if type(o) ~= "table" or type(o.path) ~= "string" or type(o.categories) ~= "table" or type(o.series) ~= "table"
       or #o.categories == 0 or #o.series == 0 then
        error("blt.plot.bars: needs {path = 'file.png', categories = {...}, series = {{name =, y = {...}}, ...}}", 2)
    end
    for i, s in ipairs(o.series) do
        if type(s.y) ~= "table" or #s.y ~= #o.categories then
            error(("blt.plot.bars: series %d needs one y per category (%d)"):format(i, #o.categories), 2)
        end
    end
    if not plot.available() then
        error("blt.plot.bars: gnuplot is not installed (run 'make deps', which installs gnuplot-nox)", 2)
    end
    local tmp = workdir()
    local script = header(o)
    script[#script + 1] = "set grid ytics"
    script[#script + 1] = "set key outside right top"
    script[#script + 1] = "set style data histograms"
    script[#script + 1] = "set style histogram clustered gap 1"
    script[#script + 1] = "set style fill solid 0.8 border -1"
    script[#script + 1] = "set boxwidth 0.9"
    script[#script + 1] = "set xtics nomirror"
    if type(o.yrange) == "table" then script[#script + 1] = yrange(o.yrange) end
    -- the category names as tics at 0, 1, ... (where the clustered histogram puts its
    -- groups), so that no name goes through the data file's own quoting
    local tics = {}
    for c, name in ipairs(o.categories) do tics[c] = ("%s %d"):format(tic_label(name), c - 1) end
    script[#script + 1] = "set xtics (" .. table.concat(tics, ", ") .. ")"
    -- one row per category: its number, then one column per series (NaN: no bar)
    local fh = assert(io.open(tmp.f("bars.dat"), "w"))
    for c in ipairs(o.categories) do
        fh:write(c - 1)
        for _, s in ipairs(o.series) do
            local y = s.y[c]
            fh:write(" ", finite(y) and ("%.10g"):format(y) or "NaN")
        end
        fh:write("\n")
    end
    fh:close()
    local plots = {}
    for i, s in ipairs(o.series) do
        plots[#plots + 1] = ("%s using %d title %s"):format(i == 1 and "'bars.dat'" or "''", i + 1,
            label(s.name or ("series " .. i)))
    end
    script[#script + 1] = "plot " .. table.concat(plots, ", \\\n     ")
    run(script, tmp, o.path, "bars")
    return o.path
end

function plot.histogram(o)
    if type(o) ~= "table" or type(o.path) ~= "string" or type(o.values) ~= "table" or #o.values == 0 then
        error("blt.plot.histogram: needs {path = 'file.png', values = {...}} (at least one value)", 2)
    end
    local counts, top = {}, 0
    for i, v in ipairs(o.values) do
        local n = math.tointeger(v)
        if not n or n < 1 then error(("blt.plot.histogram: value %d (%s) is not an integer >= 1"):format(i, tostring(v)), 2) end
        counts[n] = (counts[n] or 0) + 1
        if n > top then top = n end
    end
    local max = math.tointeger(o.max) or top
    local cats, ys, over = {}, {}, 0
    for n, c in pairs(counts) do if n > max then over = over + c end end
    for n = 1, max do
        cats[n], ys[n] = tostring(n), (counts[n] or 0) / #o.values
    end
    if over > 0 then cats[#cats + 1], ys[#ys + 1] = ">" .. max, over / #o.values end
    local ok, err = pcall(plot.bars, {path = o.path, title = o.title, xlabel = o.xlabel, ylabel = o.ylabel or "fraction",
        categories = cats, series = {{name = o.name or "count", y = ys}}, width = o.width, height = o.height})
    if not ok then error((tostring(err):gsub("blt%.plot%.bars", "blt.plot.histogram")), 2) end
    return o.path
end

return plot
