package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- blt.noise (exact vectors, properties, bad input), blt.plot's bars and histogram,
-- scripts/plot_runs.lua and experiments/robustness.lua on tiny trained ByteLMs.
-- PNG checks are skipped without gnuplot; the data paths are tested either way.
local T = require "tap"
local U = require "testutil"
local blt = require "blt"
local core = require "blt.core"
local json = require "blt.json"
local noise = require "blt.noise"
local plot = require "blt.plot"

local bin = os.getenv("BLT_BIN") or "./blt"
local q = U.q
local dir = U.tmpdir()
local has_gnuplot = plot.available()
-- TAP's "# SKIP" directive: n passing tests that were not run
local function skip(reason, n) for _ = 1, n do T.ok(true, "# SKIP " .. reason) end end
local function is_png(path) local s = U.read(path) return s ~= nil and s:sub(1, 8) == "\x89PNG\r\n\26\n" end

-- ---- noise: exact vectors at a fixed seed ----
local s = "The cat sat on the mat."
local want = {
    clean = {"The cat sat on the mat.", 0},
    case = {"tHe cat sat on ThE mat.", 4},
    swap = {"hT ecat sat o nteh mat.", 4},
    drop = {"e cat sato the m.", 6},
    ["repeat"] = {"TThhe cat sat  onn the maatt.", 6},
    whitespace = {"The\ncat sat on the mat.", 1},
}
for _, kind in ipairs(noise.KINDS) do
    local out, edits = noise.apply(kind, s, {rate = 0.4, seed = 42})
    T.ok(out == want[kind][1] and edits == want[kind][2], ("noise %s: the vector at rate 0.4, seed 42"):format(kind),
         ("got %q, %d edits"):format(out, edits))
end
-- drop, against its definition: one Generator(seed) uniform per character, dropped below rate
do
    local g, ref = core.Generator(42), {}
    for i = 1, #s do if g:uniform() >= 0.4 then ref[#ref + 1] = s:sub(i, i) end end
    T.is(noise.apply("drop", s, {rate = 0.4, seed = 42}), table.concat(ref), "drop: one uniform draw per character, in order")
end

-- ---- noise: properties on a longer text ----
local text = (U.read("data/kjv.txt") or ("In the beginning God created the heaven and the earth.\n"):rep(200)):sub(1, 6000)
local function sorted_bytes(x, lower)
    if lower then x = x:lower() end
    local t = {x:byte(1, -1)}
    table.sort(t)
    return table.concat(t, ",")
end
local function bytes_of(x) -- string.byte on a long string in pieces (stack limits)
    local t = {}
    for i = 1, #x do t[i] = x:byte(i) end
    table.sort(t)
    return table.concat(t, ",")
end
local all_identity, all_det, all_seed = true, true, true
for _, kind in ipairs(noise.KINDS) do
    if noise.apply(kind, text, {rate = 0, seed = 5}) ~= text then all_identity = false end
    local a = noise.apply(kind, text, {rate = 0.1, seed = 5})
    if a ~= noise.apply(kind, text, {rate = 0.1, seed = 5}) then all_det = false end
    if kind ~= "clean" and a == noise.apply(kind, text, {rate = 0.1, seed = 6}) then all_seed = false end
end
T.ok(all_identity, "rate 0 leaves the text as it is, every kind")
T.ok(all_det, "the same seed gives the same noise, every kind")
T.ok(all_seed, "another seed gives other noise, every noising kind")
local o, e = noise.apply("drop", text, {rate = 0.1, seed = 1})
T.ok(#o < #text and #o == #text - e and e > 300 and e < 900, "drop shortens by one byte per edit (ASCII), about rate x length", e)
o, e = noise.apply("repeat", text, {rate = 0.1, seed = 1})
T.ok(#o > #text and #o == #text + e, "repeat lengthens by one byte per edit (ASCII)", e)
o, e = noise.apply("swap", text, {rate = 0.1, seed = 1})
T.ok(#o == #text and o ~= text and bytes_of(o) == bytes_of(text) and e > 0, "swap keeps the length and the multiset of bytes")
o, e = noise.apply("case", text, {rate = 0.1, seed = 1})
T.ok(#o == #text and o ~= text and o:lower() == text:lower() and e > 0, "case keeps the length and the lowercased text")
o, e = noise.apply("whitespace", text, {rate = 0.5, seed = 1})
T.ok(o ~= text and o:gsub("%s", "") == text:gsub("%s", "") and e > 0, "whitespace changes only whitespace")
local nsp = select(2, text:gsub(" ", ""))
T.is(select(2, noise.apply("whitespace", text, {rate = 1, seed = 1})), nsp, "whitespace at rate 1: every space changes")
T.is(noise.apply("swap", "abcde", {rate = 1, seed = 1}), "badce", "swap at rate 1: disjoint pairs")
-- UTF-8 characters move and repeat whole
o = noise.apply("swap", "h\xC3\xA9llo w\xC3\xB6rld", {rate = 1, seed = 3})
T.ok(utf8.len(o) ~= nil and o == "\xC3\xA9hll o\xC3\xB6wlrd", "a UTF-8 character is one unit (swap)", ("%q"):format(o))
T.is(noise.apply("repeat", "\xC3\xA9", {rate = 1, seed = 3}), "\xC3\xA9\xC3\xA9", "a UTF-8 character repeats whole")
-- arbitrary bytes: no error, and swap still a permutation
do
    local g, t = core.Generator(9), {}
    for i = 1, 3000 do t[i] = string.char(g:integer(256) - 1) end
    local bin_text = table.concat(t)
    local ok = true
    for _, kind in ipairs(noise.KINDS) do
        local okk, r = pcall(noise.apply, kind, bin_text, {rate = 0.3, seed = 2})
        ok = ok and okk and type(r) == "string"
    end
    T.ok(ok, "binary text: every kind runs")
    T.is(bytes_of(noise.apply("swap", bin_text, {rate = 0.3, seed = 2})), bytes_of(bin_text), "binary text: swap permutes bytes")
    T.is(table.concat(noise.units(bin_text)), bin_text, "units cover the text exactly")
end
T.is(noise.apply("case", "", {rate = 0.5}), "", "the empty text")
for _, c in ipairs {
    {function() noise.apply("shout", "x") end, "unknown kind shout"},
    {function() noise.apply("drop", "x", {rate = 2}) end, "rate must be a number in %[0, 1%]"},
    {function() noise.apply("drop", "x", {rate = 0 / 0}) end, "rate must be"},
    {function() noise.apply("drop", 5) end, "text must be a string"},
    {function() noise.apply("drop", "x", {seed = 1.5}) end, "seed must be an integer"},
    {function() noise.apply("drop", "x", {rat = 0.1}) end, "unknown option 'rat'"},
} do
    local ok, err = pcall(c[1])
    T.ok(not ok and tostring(err):find(c[2]), "noise refuses: " .. c[2]:gsub("%%", ""), tostring(err))
end

-- ---- plot.bars, plot.histogram ----
do
    local ok, err = pcall(plot.bars, {path = dir .. "/x.png", categories = {"a", "b"}, series = {{name = "s", y = {1}}}})
    T.ok(not ok and err:find("one y per category"), "bars: a series of the wrong length is refused", err)
    ok, err = pcall(plot.histogram, {path = dir .. "/x.png", values = {1, 2.5}})
    T.ok(not ok and err:find("value 2"), "histogram: a value that is not a count is refused", err)
end
if has_gnuplot then
    plot.bars {path = dir .. "/bars.png", categories = {"clean", "case"}, series = {{name = "a", y = {0, 0.5}},
               {name = "b", y = {0, 0 / 0}}}}
    T.ok(is_png(dir .. "/bars.png"), "bars: a PNG (a NaN is no bar)")
    plot.histogram {path = dir .. "/hist.png", values = {1, 2, 2, 3, 9}, max = 4}
    T.ok(is_png(dir .. "/hist.png"), "histogram: a PNG")
    plot.lines {path = dir .. "/err.png", series = {{x = {1, 2, 3}, y = {1, 0 / 0, 2}, err = {0.1, 0.1, 0.2}, color = 2, dash = 2}}}
    T.ok(is_png(dir .. "/err.png"), "lines: error bars, colour, dash, a NaN left out")
else
    skip("gnuplot is not installed: no PNG checks", 3)
end

-- ---- two tiny runs ----
local ck, ok_run, out = U.tiny_run(dir)
T.ok(ok_run, "a tiny ByteLM run", out)
os.execute(("cp -r %s %s"):format(q(dir .. "/run"), q(dir .. "/other")))

-- ---- plot_runs ----
local rc
rc, out = U.sh(("%s scripts/plot_runs.lua out=%s %s %s"):format(bin, q(dir .. "/cmp.png"), q(dir .. "/run"),
                                                               q(dir .. "/other/metrics.h5")))
T.ok(out:find("\nrun: 2 rows, last step 2, train [%d.]+ bits/byte, validation best [%d.]+")
     or out:find("^run: 2 rows, last step 2"), "plot_runs: a line per run, labelled by its folder", out)
T.ok(out:find("\nother: 2 rows"), "plot_runs: a metrics.h5 path is labelled by its folder", out)
if has_gnuplot then
    T.ok(rc == 0 and is_png(dir .. "/cmp.png"), "plot_runs: writes the PNG", out)
    for _, x in ipairs {"bytes", "flops"} do
        rc, out = U.sh(("%s scripts/plot_runs.lua x=%s logx=true out=%s %s %s"):format(bin, x, q(dir .. "/cmp_" .. x .. ".png"),
                       q(dir .. "/run"), q(dir .. "/other")))
        T.ok(rc == 0 and is_png(dir .. "/cmp_" .. x .. ".png"), "plot_runs: x=" .. x, out)
    end
else
    skip("gnuplot is not installed: no PNG checks", 3)
end
os.execute("mkdir -p " .. q(dir .. "/empty") .. " " .. q(dir .. "/nocfg"))
os.execute(("cp %s %s"):format(q(dir .. "/run/metrics.h5"), q(dir .. "/nocfg/")))
for _, c in ipairs {
    {q(dir .. "/missing"), dir .. "/missing: no such file or folder"},
    {q(dir .. "/empty"), dir .. "/empty: no metrics.h5"},
    {q(dir .. "/corpus.txt"), dir .. "/corpus.txt: cannot be read as a metrics file"},
    {q(dir .. "/run/checkpoint.h5"), dir .. "/run/checkpoint.h5: has no step and loss columns"},
    {"x=bytes " .. q(dir .. "/nocfg"), dir .. "/nocfg: x=bytes needs the run's config.json"},
    {"x=time " .. q(dir .. "/run"), "x = time: must be one of step, bytes, flops"},
    {"", "no RUN to plot"},
} do
    rc, out = U.sh(bin .. " scripts/plot_runs.lua " .. c[1])
    T.ok(rc == 2 and out:find(c[2], 1, true), ("plot_runs %s: status 2, says '%s'"):format(c[1]:gsub(dir, "$dir"),
         c[2]:gsub(dir, "$dir")), out)
end

-- ---- robustness ----
local models = q(dir .. "/run/checkpoint.h5") .. "," .. q(dir .. "/other/checkpoint.h5")
rc, out = U.sh(("%s experiments/robustness.lua models=%s max_bytes=600 seed=3 out=%s"):format(bin, models, q(dir .. "/rob")))
T.is(rc, 0, "robustness: two tiny models", out)
T.ok(out:find("model +clean bpb +case +swap +drop +repeat +whitespace\n"), "robustness: a table with a column per kind", out)
local rrow = out:match("\nrun +([%d.]+)[^\n]*\n")
T.ok(rrow and out:find("\nother +" .. rrow:gsub("%.", "%%.")), "robustness: a row per model (the copy scores the same)", out)
local doc = json.decode(U.read(dir .. "/rob.json") or "{}")
T.ok(doc.models and doc.models[1] == "run" and doc.models[2] == "other" and #doc.kinds == 6 and doc.seed == 3
     and doc.max_bytes == 600, "robustness json: models, kinds, settings", U.read(dir .. "/rob.json"))
local r = doc.results or {}
T.ok(r.clean and r.clean.rise[1] == 0 and r.clean.rise[2] == 0 and r.clean.bytes == 601,
     "robustness json: the clean rise is 0; 600 ids taken (the reader ends the cut text with EOS)")
T.ok(r.drop and r.drop.bytes == 601 - r.drop.edits and r["repeat"].bytes == 601 + r["repeat"].edits
     and r.swap.bytes == 601 and r.case.edits > 0, "robustness json: each kind normalised by its own noised length")
T.ok(r.swap and r.swap.rise[1] > 0 and r.case.rise[1] > 0, "robustness: swapped and recased text is harder to predict")
do
    local okh, f = pcall(blt.h5_open, dir .. "/rob.h5")
    local good = okh and json.decode(f:attr("models_json"))[2] == "other" and json.decode(f:attr("kinds_json"))[1] == "clean"
    if good then
        local rise, bpb = f:read("/clean/rise"), f:read("/drop/bpb")
        good = rise[1] == 0 and rise[2] == 0 and math.abs(bpb[1] - r.drop.bpb[1]) < 1e-12 and f:read("/drop/bytes") == r.drop.bytes
               and math.abs(f:read("/rate") - 0.05) < 1e-15 and f:attr("normalisation"):find("noised text")
    end
    if okh then f:close() end
    T.ok(good, "robustness h5: /<kind>/{bpb,rise,bytes,edits}, models and kinds as JSON attributes")
end
if has_gnuplot then T.ok(is_png(dir .. "/rob.png"), "robustness: the bars PNG") else skip("gnuplot is not installed", 1) end
rc, out = U.sh(("%s experiments/robustness.lua runs_dir=%s kinds=swap max_bytes=300 plot=false out=%s"):format(bin,
               q(dir), q(dir .. "/rob2")))
doc = json.decode(U.read(dir .. "/rob2.json") or "{}")
T.ok(rc == 0 and doc.models and #doc.models == 2 and #doc.kinds == 1 and doc.results.swap.rise[1] > 0
     and doc.clean_bpb[1] > 0, "robustness runs_dir=: every run's checkpoint; the rise without clean among the kinds", out)
for _, c in ipairs {
    {"models=" .. q(dir .. "/none.h5"), "models: " .. dir .. "/none.h5 cannot be read"},
    {"models=" .. q(dir .. "/corpus.txt"), "models: " .. dir .. "/corpus.txt: not a readable HDF5 file"},
    {"runs_dir=" .. q(dir .. "/empty"), "runs_dir = " .. dir .. "/empty: is an empty folder"},
    {"runs_dir=" .. q(dir .. "/nocfg"), "runs_dir=" .. dir .. "/nocfg: no <run>/checkpoint.h5 in it"},
    {"models=" .. models .. " kinds=case,shout", "'shout' is not a noise kind"},
    {"models=" .. models .. " rate=1.5", "rate = 1.5: must be in [0, 1]"},
    {"", "give models=CKPT"},
} do
    rc, out = U.sh(bin .. " experiments/robustness.lua " .. c[1])
    T.ok(rc == 2 and out:find(c[2], 1, true), ("robustness %s: status 2, says '%s'"):format(c[1]:gsub(dir, "$dir"),
         c[2]:gsub(dir, "$dir")), out)
end

U.cleanup(dir)
T.done()
