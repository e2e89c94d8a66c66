-- blt.plot: PNG figures through gnuplot (Debian's gnuplot-nox, installed by
-- `make deps`): line plots of curves, with optional horizontal lines and marks.
--
--   plot.lines{path = "out.png", title = "...", xlabel = "...", ylabel = "...",
--              series = {{name = "loss", x = {...}, y = {...}, style = "lines"}, ...},
--              hlines = {{y = 1.3, name = "threshold"}}, vmarks = {x1, x2, ...},
--              logx = false, logy = false, xtics = {{pos, "label"}, ...}, width = 1000, height = 500}
local plot = {}

local function which(cmd)
    local p = io.popen("command -v " .. cmd .. " 2>/dev/null")
    local out = p:read("l")
    p:close()
    return out
end

local function quote(s) return '"' .. tostring(s):gsub('\\', '\\\\'):gsub('"', '\\"') .. '"' end

function plot.available() return which("gnuplot") ~= nil end

function plot.lines(o)
    if type(o) ~= "table" or type(o.path) ~= "string" or type(o.series) ~= "table" then
        error("blt.plot.lines: needs {path = 'file.png', series = {{x = {...}, y = {...}}, ...}}", 2)
    end
    if not plot.available() then
        error("blt.plot.lines: gnuplot is not installed (run 'make deps', which installs gnuplot-nox)", 2)
    end
    local tmp = os.tmpname()
    local script = {}
    local w, h = o.width or 1000, o.height or 500
    -- noenhanced: titles and labels are printed as given (entropy_delta keeps its underscore)
    script[#script + 1] = ("set terminal pngcairo noenhanced size %d,%d font 'sans,11'"):format(w, h)
    script[#script + 1] = "set output " .. quote(o.path)
    if o.title then script[#script + 1] = "set title " .. quote(o.title) end
    if o.xlabel then script[#script + 1] = "set xlabel " .. quote(o.xlabel) end
    if o.ylabel then script[#script + 1] = "set ylabel " .. quote(o.ylabel) end
    if o.logx then script[#script + 1] = "set logscale x" end
    if o.logy then script[#script + 1] = "set logscale y" end
    if o.yrange then script[#script + 1] = ("set yrange [%s:%s]"):format(o.yrange[1] or "*", o.yrange[2] or "*") end
    script[#script + 1] = "set grid"
    script[#script + 1] = "set key outside right top"
    if o.xtics then
        local t = {}
        for _, x in ipairs(o.xtics) do t[#t + 1] = ("%s %g"):format(quote(x[2]), x[1]) end
        script[#script + 1] = "set xtics (" .. table.concat(t, ", ") .. ") font ',8'"
    end
    for i, x in ipairs(o.vmarks or {}) do
        script[#script + 1] = ("set arrow %d from %g, graph 0 to %g, graph 1 nohead lc rgb '#bbbbbb' dt 2"):format(i, x, x)
    end
    local plots = {}
    for i, s in ipairs(o.series) do
        local f = ("%s.%d.dat"):format(tmp, i)
        local fh = assert(io.open(f, "w"))
        for j = 1, #s.y do fh:write(("%.10g %.10g\n"):format(s.x and s.x[j] or j, s.y[j])) end
        fh:close()
        plots[#plots + 1] = ("%s using 1:2 with %s lw 2 title %s"):format(quote(f), s.style or "linespoints",
                                                                        quote(s.name or ("series " .. i)))
    end
    for _, hl in ipairs(o.hlines or {}) do
        plots[#plots + 1] = ("%g with lines dt 2 lw 2 title %s"):format(hl.y, quote(hl.name or ("y = " .. hl.y)))
    end
    script[#script + 1] = "plot " .. table.concat(plots, ", \\\n     ")
    local sf = tmp .. ".gp"
    local fh = assert(io.open(sf, "w"))
    fh:write(table.concat(script, "\n"), "\n")
    fh:close()
    local ok = os.execute("gnuplot " .. quote(sf) .. " 2>" .. quote(tmp .. ".err"))
    local errf = io.open(tmp .. ".err")
    local err = errf and errf:read("a") or ""
    if errf then errf:close() end
    for i = 1, #o.series do os.remove(("%s.%d.dat"):format(tmp, i)) end
    os.remove(sf); os.remove(tmp .. ".err"); os.remove(tmp)
    if not ok then error("blt.plot.lines: gnuplot failed: " .. err, 2) end
    return o.path
end

return plot
