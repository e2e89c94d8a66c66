-- blt.svg: the figures of blt.plot as SVG text, for pages that must stand alone
-- (report.html): no gnuplot, no file, the same options table as plot.lines.
--
--   local text = svg.lines{title =, xlabel =, ylabel =, logx =, logy =, yrange = {lo, hi},
--                          series = {{name =, x =, y =, err =, style =, color =, dash =}, ...},
--                          hlines = {{y =, name =}}, vmarks = {x, ...}, xtics = {{pos, "label"}, ...}}
--
-- style: gnuplot's words, read for what they draw: "lines" a line, "points" marks,
-- "linespoints" (the default) both, "yerrorlines" both with error bars (err). Missing
-- or non-finite values are left out, as plot.lines does. Every text is escaped.
local svg = {}

local W, H = 900, 440                       -- the figure, in px
local L, R, T, B = 72, 230, 36, 52          -- margins: the legend is on the right
local PALETTE = {"#9400d3", "#009e73", "#56b4e9", "#e69f00", "#d55e00", "#0072b2", "#cc79a7", "#000000"}

local function finite(v) return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge end

function svg.escape(s)
    return (tostring(s):gsub("[%z\1-\8\11\12\14-\31]", " "):gsub("[&<>\"']", {["&"] = "&amp;", ["<"] = "&lt;",
        [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;"}))
end
local esc = svg.escape

local function num(v) return ("%.2f"):format(v) end

-- Ticks over [lo, hi] (values in data units): 1-2-5 steps, or decades on a log axis.
local function ticks(lo, hi, log)
    local out = {}
    if log then
        local a, b = math.floor(math.log(lo, 10)), math.ceil(math.log(hi, 10))
        local mult = (b - a) <= 2 and {1, 2, 5} or {1}
        for e = a, b do
            for _, m in ipairs(mult) do
                local v = m * 10 ^ e
                if v >= lo * (1 - 1e-9) and v <= hi * (1 + 1e-9) then out[#out + 1] = v end
            end
        end
        if #out >= 2 then return out end
        out = {} -- less than a decade: plain steps
    end
    local span = hi - lo
    local raw = span / 5
    local mag = 10 ^ math.floor(math.log(raw, 10))
    local step = mag
    for _, m in ipairs {1, 2, 5, 10} do
        if m * mag >= raw then step = m * mag break end
    end
    for k = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9) do out[#out + 1] = k * step end
    return out
end

local function tick_text(v)
    if v == 0 then return "0" end
    local a = math.abs(v)
    if a >= 1e5 or a < 1e-3 then return ("%.3g"):format(v) end
    return ("%.6g"):format(v)
end

-- The range of the finite values (log: the positive ones), widened when empty or flat.
local function range(vals, log, fixed)
    local lo, hi = math.huge, -math.huge
    for _, v in ipairs(vals) do
        if finite(v) and (not log or v > 0) then lo, hi = math.min(lo, v), math.max(hi, v) end
    end
    if fixed then
        if finite(fixed[1]) then lo = fixed[1] end
        if finite(fixed[2]) then hi = fixed[2] end
    end
    if lo > hi then lo, hi = log and 1 or 0, log and 10 or 1 end
    if lo == hi then
        if log then lo, hi = lo / 1.5, hi * 1.5 else lo, hi = lo - math.max(1, math.abs(lo)) * 0.05, hi + math.max(1, math.abs(hi)) * 0.05 end
    elseif not log then
        local pad = (hi - lo) * 0.04
        lo, hi = lo - pad, hi + pad
    else -- the same margin in log space: no mark sits on the frame
        local pad = (hi / lo) ^ 0.04
        lo, hi = lo / pad, hi * pad
    end
    return lo, hi
end

local function colour(s, i)
    if type(s.color) == "string" and s.color:match("^#%x%x%x%x%x%x$") then return s.color end
    if math.type(s.color) == "integer" then return PALETTE[(s.color - 1) % #PALETTE + 1] end
    return PALETTE[(i - 1) % #PALETTE + 1]
end

function svg.lines(o)
    if type(o) ~= "table" or type(o.series) ~= "table" then
        error("blt.svg.lines: needs {series = {{x = {...}, y = {...}}, ...}}", 2)
    end
    local xs, ys = {}, {}
    for _, s in ipairs(o.series) do
        for j = 1, #(s.y or {}) do
            local x, y, e = s.x and s.x[j] or j, s.y[j], s.err and s.err[j]
            if finite(x) and finite(y) then
                xs[#xs + 1], ys[#ys + 1] = x, y
                if finite(e) then ys[#ys + 1], ys[#ys + 2] = y - e, y + e end
            end
        end
    end
    for _, h in ipairs(o.hlines or {}) do if finite(h.y) then ys[#ys + 1] = h.y end end
    for _, t in ipairs(o.xtics or {}) do if finite(t[1]) then xs[#xs + 1] = t[1] end end
    local x0, x1 = range(xs, o.logx)
    local y0, y1 = range(ys, o.logy, type(o.yrange) == "table" and o.yrange or nil)
    local pw, ph = W - L - R, H - T - B
    local fx = o.logx and function(v) return math.log(v, 10) end or function(v) return v end
    local fy = o.logy and function(v) return math.log(v, 10) end or function(v) return v end
    local function px(x) return L + (fx(x) - fx(x0)) / (fx(x1) - fx(x0)) * pw end
    local function py(y) return T + ph - (fy(y) - fy(y0)) / (fy(y1) - fy(y0)) * ph end
    local function inside(x, y)
        return finite(x) and finite(y) and (not o.logx or x > 0) and (not o.logy or y > 0)
            and x >= x0 and x <= x1 and y >= y0 and y <= y1
    end
    local out = {}
    local function add(s) out[#out + 1] = s end
    add(('<svg xmlns="http://www.w3.org/2000/svg" class="figure" width="%d" height="%d" viewBox="0 0 %d %d" '
        .. 'font-family="sans-serif" font-size="12" role="img">'):format(W, H, W, H))
    add(('<title>%s</title>'):format(esc(o.title or "figure")))
    add(('<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>'):format(W, H))
    if o.title then add(('<text x="%s" y="20" text-anchor="middle" font-size="14">%s</text>'):format(num(L + pw / 2), esc(o.title))) end
    -- grid and ticks
    local xt = {}
    if o.xtics then
        for _, t in ipairs(o.xtics) do if finite(t[1]) then xt[#xt + 1] = {t[1], tostring(t[2])} end end
    else
        for _, v in ipairs(ticks(x0, x1, o.logx)) do xt[#xt + 1] = {v, tick_text(v)} end
    end
    for _, t in ipairs(xt) do
        local x = px(t[1])
        add(('<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="#dddddd"/>'):format(num(x), T, num(x), T + ph))
        add(('<text x="%s" y="%d" text-anchor="middle">%s</text>'):format(num(x), T + ph + 16, esc(t[2])))
    end
    for _, v in ipairs(ticks(y0, y1, o.logy)) do
        local y = py(v)
        add(('<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="#dddddd"/>'):format(L, num(y), L + pw, num(y)))
        add(('<text x="%d" y="%s" text-anchor="end">%s</text>'):format(L - 6, num(y + 4), esc(tick_text(v))))
    end
    add(('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#000000"/>'):format(L, T, pw, ph))
    if o.xlabel then add(('<text x="%s" y="%d" text-anchor="middle">%s</text>'):format(num(L + pw / 2), H - 12, esc(o.xlabel))) end
    if o.ylabel then
        add(('<text x="16" y="%s" text-anchor="middle" transform="rotate(-90 16 %s)">%s</text>')
            :format(num(T + ph / 2), num(T + ph / 2), esc(o.ylabel)))
    end
    for _, x in ipairs(o.vmarks or {}) do
        if finite(x) and x >= x0 and x <= x1 then
            add(('<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="#bbbbbb" stroke-dasharray="4 3"/>'):format(num(px(x)), T, num(px(x)), T + ph))
        end
    end
    -- the series, clipped to the plot area; then the legend
    -- ids are the page's: each figure's clip gets its own
    svg.count = (svg.count or 0) + 1
    local clip = "plotarea" .. svg.count
    add(('<clipPath id="%s"><rect x="%d" y="%d" width="%d" height="%d"/></clipPath>'):format(clip, L, T, pw, ph))
    add(('<g clip-path="url(#%s)">'):format(clip))
    local legend = {}
    for i, s in ipairs(o.series) do
        local c = colour(s, i)
        local style = type(s.style) == "string" and s.style or (s.err and "yerrorlines" or "linespoints")
        local line = style:match("lines") ~= nil
        local marks = style:match("points") ~= nil or style:match("yerror") ~= nil
        local dash = math.type(s.dash) == "integer" and s.dash > 1 and ' stroke-dasharray="6 4"' or ""
        local pts = {}
        for j = 1, #(s.y or {}) do
            local x, y, e = s.x and s.x[j] or j, s.y[j], s.err and s.err[j]
            if inside(x, y) then pts[#pts + 1] = {x, y, finite(e) and e or nil} end
        end
        if line and #pts >= 2 then
            local p = {}
            for k, q in ipairs(pts) do p[k] = num(px(q[1])) .. "," .. num(py(q[2])) end
            add(('<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>'):format(c, dash, table.concat(p, " ")))
        end
        for _, q in ipairs(pts) do
            if q[3] then
                local lo, hi = q[2] - q[3], q[2] + q[3]
                if o.logy and lo <= 0 then lo = y0 end
                add(('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s"/>'):format(num(px(q[1])), num(py(math.max(lo, y0))),
                    num(px(q[1])), num(py(math.min(hi, y1))), c))
            end
            if marks or #pts == 1 then
                add(('<circle cx="%s" cy="%s" r="3.5" fill="%s"><title>%s: (%s, %s)</title></circle>'):format(num(px(q[1])),
                    num(py(q[2])), c, esc(s.name or ("series " .. i)), esc(("%.6g"):format(q[1])), esc(("%.6g"):format(q[2]))))
            end
        end
        legend[#legend + 1] = {name = s.name or ("series " .. i), c = c, dash = dash}
    end
    for _, h in ipairs(o.hlines or {}) do
        if finite(h.y) and h.y >= y0 and h.y <= y1 then
            add(('<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="#555555" stroke-width="2" stroke-dasharray="6 4"/>')
                :format(L, num(py(h.y)), L + pw, num(py(h.y))))
            legend[#legend + 1] = {name = h.name or ("y = " .. h.y), c = "#555555", dash = ' stroke-dasharray="6 4"'}
        end
    end
    add("</g>")
    for k, e in ipairs(legend) do
        local y = T + 8 + (k - 1) * 18
        add(('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>'):format(W - R + 14, y, W - R + 40, y, e.c, e.dash))
        add(('<text x="%d" y="%d">%s</text>'):format(W - R + 46, y + 4, esc(e.name)))
    end
    add("</svg>")
    return table.concat(out, "\n")
end

return svg
