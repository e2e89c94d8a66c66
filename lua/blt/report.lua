-- blt.report: a sweep's report.html, one self-contained page (no file, script or font
-- outside it): the tables the sweep printed, its figures as inline SVG (the same data
-- as its PNGs), and each point with a link to its run folder and its config.
--
-- Tables and figures are collected as the sweep makes them: every table printed
-- through sweep.table and every figure drawn through plot.lines is noted here
-- (report.note_table, report.note_figure), whatever its columns: a table is generic,
-- {columns = {{key, header, fmt}, ...}, rows = {...}}. experiment.write_sections
-- stores the noted tables in results.h5 (report.h5_tables: /tables/t<i>/r<j>/<key>,
-- a float64 per number, a string attribute of r<j> per text), and every cell of the
-- page names where its numbers are in results.h5 (data-h5: dataset paths, or
-- group@attribute, one per number in the cell), so a reader (and
-- tests/test_report.lua, through a browser) can check the page against the file.
--
--   report.write(out_dir, {title =, notes = {lines}, sections = {{prefix =, records =}, ...}})
--   -> out_dir/report.html
local core = require "blt.core"
local svg = require "blt.svg"

local report = {tables = {}, figures = {}}
local esc = svg.escape

function report.note_table(rows, cols)
    report.tables[#report.tables + 1] = {rows = rows, columns = cols}
end

function report.note_figure(o, path)
    report.figures[#report.figures + 1] = {o = o, path = path}
end

-- The text of one cell, as sweep.table prints it.
function report.cell(v, c)
    if v == nil then return "-" end
    if type(c[3]) == "function" then return c[3](v) end
    if c[3] then return c[3]:format(v) end
    return tostring(v)
end

-- A column key as an HDF5 name (no '/', nothing a data-h5 list would split at).
local function h5name(k) return (tostring(k):gsub("[^%w_.:%-]", "_")) end

local function row_group(t, j) return ("/tables/t%d/r%d"):format(t, j) end

-- Where a cell's value is in results.h5: a dataset (a number) or group@name (a text).
local function source(t, j, c, v)
    if type(v) == "number" then return row_group(t, j) .. "/" .. h5name(c[1]) end
    if type(v) == "string" then return row_group(t, j) .. "@" .. h5name(c[1]) end
end

-- Writes the noted tables into an open results file (an h5_create writer).
function report.h5_tables(f)
    for t, tb in ipairs(report.tables) do
        local g = ("/tables/t%d"):format(t)
        f:set_attr("rows", #tb.rows, g)
        for k, c in ipairs(tb.columns) do
            f:set_attr(("column%d"):format(k), h5name(c[1]), g)
            f:set_attr(("header%d"):format(k), tostring(c[2]), g)
        end
        for j, r in ipairs(tb.rows) do
            for _, c in ipairs(tb.columns) do
                local v = r[c[1]]
                if type(v) == "number" then f:write(row_group(t, j) .. "/" .. h5name(c[1]), v, "float64")
                elseif type(v) == "string" then f:set_attr(h5name(c[1]), v, row_group(t, j)) end
            end
        end
    end
end

local CSS = [[
body { font-family: sans-serif; margin: 1.5em 2em; color: #111; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.8em 0 1.6em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: bold; padding: 4px 0; }
figure { margin: 1em 0; } figcaption { font-size: 12px; color: #555; }
pre { background: #f7f7f7; padding: 6px; font-size: 12px; overflow-x: auto; }
.meta { color: #555; font-size: 13px; }
]]

-- A table of the page: cells with their sources.
local function html_table(out, id, caption, columns, rows, src, link)
    out[#out + 1] = ('<table class="results" id="%s">'):format(id)
    if caption then out[#out + 1] = ("<caption>%s</caption>"):format(esc(caption)) end
    local h = {}
    for k, c in ipairs(columns) do h[k] = "<th>" .. esc(c[2]) .. "</th>" end
    out[#out + 1] = "<thead><tr>" .. table.concat(h, "") .. "</tr></thead><tbody>"
    for j, r in ipairs(rows) do
        local cells = {}
        for k, c in ipairs(columns) do
            local v = r[c[1]]
            local text = report.cell(v, c)
            local where, href = src(j, c, v), link and link(j, c, v)
            cells[k] = ('<td%s%s>%s</td>'):format(type(v) == "number" and ' class="num"' or "",
                where and (' data-h5="%s"'):format(esc(where)) or "",
                href and ('<a href="%s">%s</a>'):format(esc(href), esc(text)) or esc(text))
        end
        out[#out + 1] = "<tr>" .. table.concat(cells, "") .. "</tr>"
    end
    out[#out + 1] = "</tbody></table>"
end

-- The folder of a point relative to the report (out), for a link that works wherever
-- the sweep folder is moved.
local function relative(dir, out)
    local pre = out:gsub("/+$", "") .. "/"
    if dir:sub(1, #pre) == pre then return dir:sub(#pre + 1) end
    return dir
end

local function describe(cfg)
    local ok, text = pcall(require("blt.config").describe, cfg, nil, 100)
    if ok then return text end
    return require("blt.json").encode(cfg)
end

-- Writes out/report.html; returns its path.
function report.write(out, o)
    o = o or {}
    local page = {}
    local function add(s) page[#page + 1] = s end
    local title = o.title or "Sweep report"
    add('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">')
    add(("<title>%s</title><style>%s</style></head><body>"):format(esc(title), CSS))
    add(("<h1>%s</h1>"):format(esc(title)))
    add(('<p class="meta">Written %s. Every number in the tables is in <a href="results.h5">results.h5</a> '
        .. '(each cell names its dataset: data-h5).</p>'):format(esc(os.date("!%Y-%m-%d %H:%M UTC"))))
    for _, line in ipairs(o.notes or {}) do add(("<p>%s</p>"):format(esc(line))) end
    if #report.tables > 0 then add("<h2>Tables</h2>") end
    for t, tb in ipairs(report.tables) do
        html_table(page, ("t%d"):format(t), tb.caption, tb.columns, tb.rows,
                   function(j, c, v) return source(t, j, c, v) end)
    end
    if #report.figures > 0 then add("<h2>Figures</h2>") end
    for _, fg in ipairs(report.figures) do
        add("<figure>" .. svg.lines(fg.o))
        if fg.path then
            local name = fg.path:match("[^/]+$")
            add(('<figcaption>The same data as <a href="%s">%s</a>.</figcaption>'):format(esc(name), esc(name)))
        end
        add("</figure>")
    end
    -- the points: a table (numbers from results.h5's points), then each one's config
    local recs = {}
    for _, sec in ipairs(o.sections or {}) do
        for _, r in ipairs(sec.records or {}) do recs[#recs + 1] = {r = r, prefix = sec.prefix or ""} end
    end
    if #recs > 0 then
        add("<h2>Points</h2>")
        local cols = {{"id", "point"}, {"seed", "seed", "%d"}, {"status", "status"}, {"steps", "steps", "%d"},
                      {"val_bpb", "val bpb", "%.4f"}, {"wall", "wall s", "%.1f"}, {"dir", "run folder"}}
        local rows = {}
        for j, x in ipairs(recs) do
            local r = x.r
            rows[j] = {id = r.id, seed = math.tointeger(r.seed), steps = r.steps, val_bpb = r.val_bpb, wall = r.wall,
                       status = r.failed and "failed" or (r.stopped and "stopped" or "finished"), dir = relative(r.dir, out)}
        end
        local h5col = {seed = "@seed", steps = "/steps", val_bpb = "/val_bpb", wall = "/wall_seconds"}
        html_table(page, "points", nil, cols, rows, function(j, c, v)
            local g = recs[j].prefix .. "/points/" .. recs[j].r.id
            if type(v) == "number" and h5col[c[1]] then return g .. h5col[c[1]] end
            if c[1] == "id" then return g end -- the point's group
            if c[1] == "dir" then return g .. "@run_dir" end -- the folder as recorded (this text: relative)
        end, function(j, c) -- the id links to its config below, the folder to the run itself
            if c[1] == "id" then return "#cfg-" .. recs[j].r.id end
            if c[1] == "dir" then return rows[j].dir .. "/" end
        end)
        add("<h2>Configs</h2>")
        for _, x in ipairs(recs) do
            add(('<details id="cfg-%s"><summary>%s (<a href="%s/config.json">config.json</a>)</summary><pre>%s</pre></details>')
                :format(esc(x.r.id), esc(x.r.id), esc(relative(x.r.dir, out)), esc(describe(x.r.config or {}))))
        end
    end
    add("</body></html>\n")
    local path = out:gsub("/+$", "") .. "/report.html"
    local ok, err = core.write_file(path, table.concat(page, "\n"))
    if not ok then error(("blt.report.write: %s: %s"):format(path, tostring(err)), 2) end
    return path
end

return report
