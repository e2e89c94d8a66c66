package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- Hostile strings in every string that reaches gnuplot, a child process or a file
-- name: shell and gnuplot metacharacters (backquotes, $(), ;, |, <, @, \, enhanced
-- text's {}^_&), quotes, a newline, printf's %, bytes that are not UTF-8, a NUL byte
-- and a 4 KB string, each carrying a command that would create a marker file.
-- Generated: every form x every string key and path of
-- blt.plot's functions, of a sweep point, of an experiment's args.*, and of the
-- scripts that plot or spawn (training runs, plot_runs, plot_entropy, robustness),
-- run end to end without a shell. Each case: no marker file appears, and a script's
-- status is 0 or 2 (a clean refusal), never a crash.
local T = require "tap"
local U = require "testutil"
local core = require "blt.core"
local plot = require "blt.plot"
local sweep = require "blt.sweep"
local train = require "blt.train"

local bin = os.getenv("BLT_BIN") or "./blt"
local dir = assert(core.mkdtemp())
local MARK = dir .. "/MARK"

-- The forms; CMD is the command. In-process calls (their gnuplot inherits this
-- environment) name the marker by its absolute path; the scripts get it through $HM,
-- so that a form passes rules that refuse '/' (out.name).
local FORMS = {"x`CMD`x", "$(CMD)", "; CMD", "\nCMD\n", "';CMD;'", "\";CMD;\"", "|CMD", "<CMD", "\\`CMD`\\\\",
               "@CMD", "%s%n%d%%`CMD`", "\xff\xfe{}^_&`CMD`", "a\0b`CMD`", "BIG"}
local function hostile(cmd)
    local out = {}
    for _, f in ipairs(FORMS) do
        if f == "BIG" then
            local unit = "`" .. cmd .. "`$(" .. cmd .. ");" .. cmd .. "\n'\"%"
            out[#out + 1] = unit:rep(4096 // #unit + 1)
        else
            out[#out + 1] = (f:gsub("CMD", function() return cmd end))
        end
    end
    return out
end
local H_ABS = hostile("touch " .. MARK)
local H_ENV = hostile("touch $HM")
local ENV = {HM = MARK}
-- The end-to-end runs take four of them (each run costs a process): every form but
-- NUL and the 4 KB one in one string short enough for a file name, the newline form,
-- the NUL form and the 4 KB form.
local function e2e(h)
    local sink = {}
    for i = 1, #FORMS - 2 do if not h[i]:find("\n") then sink[#sink + 1] = h[i] end end
    return {table.concat(sink, " "), h[4], h[#FORMS - 1], h[#FORMS]}
end

-- Whether the marker appeared (and removes it, so that each case is judged alone).
local function marked()
    local f = io.open(MARK, "rb")
    if f then f:close() os.remove(MARK) return true end
    return false
end
local function show(h) return (("%q"):format(#h > 40 and h:sub(1, 40) .. "..." or h):gsub("\\\n", "\\n")) end

-- A script run without a shell: its status and output.
local function run(argv)
    local full = {bin}
    for _, a in ipairs(argv) do full[#full + 1] = a end
    local out = dir .. "/out.txt"
    local ok, how, code = core.spawn(full, {stdin = "/dev/null", stdout = out, stderr = out, env = ENV})
    return how == "exit" and code or -1, U.read(out) or "", ok
end
-- A --config file holding key = value (dotted keys into sections), %q-quoted: the
-- way a NUL byte reaches a script.
local n_config = 0
local function config_file(kv)
    n_config = n_config + 1
    local root = {}
    for k, v in pairs(kv) do
        local t = root
        local parts = {}
        for p in k:gmatch("[^.]+") do parts[#parts + 1] = p end
        for i = 1, #parts - 1 do t[parts[i]] = t[parts[i]] or {}; t = t[parts[i]] end
        t[parts[#parts]] = v
    end
    local function ser(v)
        if type(v) ~= "table" then return ("%q"):format(v) end
        local s = {}
        for k, x in pairs(v) do s[#s + 1] = ("[%q] = %s"):format(k, ser(x)) end
        return "{" .. table.concat(s, ", ") .. "}"
    end
    local path = ("%s/config%d.lua"):format(dir, n_config)
    U.write(path, "return " .. ser(root) .. "\n")
    return path
end
-- A script's key=value words, or a --config file when a value has a NUL (argv cannot).
local function words(kv)
    local has_nul = false
    for _, v in pairs(kv) do has_nul = has_nul or tostring(v):find("\0", 1, true) ~= nil end
    if has_nul then return {"--config", config_file(kv)} end
    local w = {}
    for k, v in pairs(kv) do w[#w + 1] = k .. "=" .. tostring(v) end
    return w
end
local function join(...)
    local out = {}
    for _, t in ipairs {...} do for _, x in ipairs(t) do out[#out + 1] = x end end
    return out
end
-- A folder (made, with its parents) or a file path whose last part is h, when the
-- system takes such a name; else the bare path (which the script must refuse).
local n_named = 0
local function named(h, make)
    n_named = n_named + 1
    local base = dir .. "/n" .. n_named
    local path = base .. "/" .. h
    if h:find("\0", 1, true) then return path end
    local parent = path:match("^(.*)/[^/]*$")
    if core.mkdir(parent) then make(path) end
    return path
end

local counts = {}
local function case(class, ok, name, diag)
    counts[class] = (counts[class] or 0) + 1
    T.ok(ok, name, diag)
end

-- ---- a tiny run, its checkpoint and corpus: what the scripts read ----
local ck, trained, tout = U.tiny_run(dir)
T.ok(trained, "a tiny ByteLM run to plot and score", tout)
local run_dir = dir .. "/run"
local corpus = dir .. "/corpus.txt"
local has_gnuplot = plot.available()

-- ---- blt.plot: every label key, then the path ----
for _, h in ipairs(H_ABS) do
    local function call(fn, o)
        local ok, err = pcall(plot[fn], o)
        return ok or tostring(err):find("blt.plot." .. fn .. ":", 1, true) ~= nil, err
    end
    local series = {{name = h, x = {1, 2, 3}, y = {1, 2, 1.5}}}
    local cases = {
        {"lines", {path = dir .. "/l.png", title = h, xlabel = h, ylabel = h, series = series,
                   hlines = {{y = 1.2, name = h}}, xtics = {{1, h}, {2, h}}}},
        {"lines", {path = dir .. "/" .. h .. ".png", series = {{x = {1, 2}, y = {1, 2}}}}},
        {"bars", {path = dir .. "/b.png", title = h, xlabel = h, ylabel = h, categories = {h, "b"},
                  series = {{name = h, y = {1, 2}}}}},
        {"bars", {path = dir .. "/" .. h .. ".b.png", categories = {"a"}, series = {{y = {1}}}}},
        {"histogram", {path = dir .. "/h.png", title = h, xlabel = h, ylabel = h, name = h, values = {1, 2, 2}}},
    }
    for i, c in ipairs(cases) do
        if has_gnuplot then
            local ok, err = call(c[1], c[2])
            case("plot", ok and not marked(), ("plot.%s case %d, %s: drawn or a clean error, no command run")
                :format(c[1], i, show(h)), err)
        else
            T.ok(true, "# SKIP no gnuplot")
        end
    end
    -- a label reaches the PNG as text: the titled figure was written
    if has_gnuplot and not h:find("\0", 1, true) then
        case("plot", U.read(dir .. "/l.png") ~= nil, ("plot.lines with %s in every label writes the PNG"):format(show(h)))
        os.remove(dir .. "/l.png")
    end
end
-- a style is gnuplot words only: a quote would let a file name (and "<cmd") in
T.raises(function() plot.lines {path = dir .. "/s.png", series = {{x = {1}, y = {1}, style = "lines, '<touch " .. MARK .. "'"}}} end,
         "style must be gnuplot words", "plot.lines: a style with a quote is refused")
T.ok(not marked(), "plot.lines: the refused style ran nothing")

-- ---- core.spawn: an argument is passed as it is, or refused when C would cut it ----
for _, h in ipairs(H_ABS) do
    local out = dir .. "/echo.txt"
    local ok, res = pcall(core.spawn, {"printf", "%s", h}, {stdout = out})
    if h:find("\0", 1, true) then
        case("spawn", not ok and tostring(res):find("blt.spawn: argv[3] contains a NUL byte", 1, true) and not marked(),
             "spawn: an argument with NUL is refused naming it", res)
    else
        case("spawn", ok and res == true and U.read(out) == h and not marked(),
             ("spawn: %s reaches the child as one argument, unchanged"):format(show(h)))
    end
end

-- bad calls of the new process and file functions: a Lua error naming the function
local BAD = {
    {"spawn", {}}, {"spawn", {"x"}}, {"spawn", {{}}}, {"spawn", {{"sh", {}}}}, {"spawn", {{"sh", true}}},
    {"spawn", {{"sh"}, 5}}, {"spawn", {{"sh"}, {stdout = {}}}}, {"spawn", {{"sh"}, {stdout = "a\0b"}}},
    {"spawn", {{"sh"}, {cwd = "a\0b"}}}, {"spawn", {{"sh"}, {env = 3}}}, {"spawn", {{"sh"}, {env = {["A=B"] = "1"}}}},
    {"spawn", {{"sh"}, {env = {[""] = "1"}}}}, {"spawn", {{"sh"}, {env = {A = {}}}}}, {"spawn", {{"sh"}, {env = {[1] = "x"}}}},
    {"spawn", {{"sh"}, {env = {A = "a\0b"}}}}, {"which", {}}, {"which", {{}}}, {"which", {"a\0b"}},
    {"rm_rf", {}}, {"rm_rf", {""}}, {"rm_rf", {"a\0b"}}, {"rm_rf", {{}}},
}
for _, b in ipairs(BAD) do
    local ok, err = pcall(core[b[1]], table.unpack(b[2], 1, select("#", table.unpack(b[2]))))
    case("spawn", not ok and tostring(err):find("blt." .. b[1] .. ":", 1, true) ~= nil,
         ("%s with bad arguments %d: a clear error"):format(b[1], _), err)
end
-- a program that cannot start, a status, a signal: what os.execute returns
do
    local r = {core.spawn {dir .. "/no-such-program"}}
    T.ok(r[1] == nil and r[2] == "error" and tostring(r[3]):find("blt.spawn: ", 1, true), "spawn: a missing program", r[3])
    r = {core.spawn({"sh", "-c", "exit 3"})}
    T.ok(r[1] == nil and r[2] == "exit" and r[3] == 3, "spawn: exit status 3")
    r = {core.spawn({"sh", "-c", "kill -TERM $$"})}
    T.ok(r[1] == nil and r[2] == "signal" and r[3] == 15, "spawn: stopped by SIGTERM")
    r = {core.spawn({"sh", "-c", "test \"$X\" = 'a b'"}, {env = {X = "a b"}})}
    T.ok(r[1] == true, "spawn: env adds a variable")
    -- rm_rf removes a link, never what it points to
    local keep, gone = dir .. "/keep", assert(core.mkdtemp())
    U.write(keep, "x")
    core.mkdir(gone .. "/a/b")
    U.write(gone .. "/a/b/f", "y")
    core.spawn {"ln", "-s", keep, gone .. "/a/link"}
    T.ok(core.rm_rf(gone) == true and not core.listdir(gone) and U.read(keep) == "x", "rm_rf: a tree, its link removed, not followed")
    T.ok(core.rm_rf(gone) == true, "rm_rf: a missing path is already removed")
end

-- ---- a sweep point: its folder, a string value and the extra words ----
local tiny = {["model.dim"] = 32, ["model.layers"] = 1, ["model.heads"] = 2, ["model.multiple_of"] = 32,
              ["model.window"] = 32, ["train.batch"] = 2, ["train.seq_len"] = 16, ["train.steps"] = 1,
              ["train.warmup"] = 1, ["train.threads"] = 1, ["eval.every"] = 0, ["eval.final_max_bytes"] = 64,
              ["out.checkpoint_every"] = 0, ["out.plot"] = false}
local quiet = io.open("/dev/null", "w")
local Sweep = getmetatable(sweep.new {dir = dir .. "/sw0", log = quiet})
for _, h in ipairs(H_ABS) do
    -- the argument vector: every value one argument, unchanged
    local s0 = setmetatable({dir = dir .. "/" .. h, prefix = {}}, Sweep)
    local argv = s0:argv({id = "p", script = "experiments/train_bytelm.lua", args = {["data.path"] = h}, extra = h})
    local found, words_of_h = 0, #sweep.split_words(h)
    for _, a in ipairs(argv) do if a == "data.path=" .. h or a == "out.dir=" .. dir .. "/" .. h then found = found + 1 end end
    case("sweep", found == 2 and #argv == 2 + 1 + words_of_h + 2,
         ("sweep argv: data.path and out.dir with %s are one argument each, extra words split at spaces"):format(show(h)))
    local mpi = sweep.mpi_argv(2, h)
    local at
    for i, a in ipairs(mpi) do if a == "--hostfile" then at = i end end
    case("sweep", at and mpi[at + 1] == h and mpi[#mpi] == "2", ("sweep mpirun argv: hostfile %s is one argument"):format(show(h)))
end
-- clean: a Lua error naming the function, or the child's refusal (status 2)
local function clean(ok, err)
    return ok or tostring(err):find("blt%.[%w_.]+: ") ~= nil or tostring(err):find("failed with status 2", 1, true) ~= nil
end
for _, h in ipairs(e2e(H_ABS)) do
    -- a real point: the sweep in a folder named h, its corpus a file named h
    local data = named(h, function(p) U.write(p, U.read(corpus)) end)
    local args = {["data.path"] = data}
    for k, v in pairs(tiny) do args[k] = v end
    local ok, err = pcall(function()
        local s = sweep.new {dir = named(h, core.mkdir) .. ".sweep", name = "hostile", log = quiet}
        return s:run {id = "p", script = "experiments/train_bytelm.lua", args = args}
    end)
    case("sweep", clean(ok, err) and not marked(),
         ("sweep point in a folder and on a corpus named %s: runs or stops cleanly, no command run"):format(show(h)), err)
    -- extra words: each one argument; the child refuses what is not key=value
    ok, err = pcall(function()
        local s = sweep.new {dir = dir .. "/sw-extra", name = "hostile", log = quiet}
        return s:run {id = "p", script = "experiments/train_bytelm.lua", args = tiny, extra = h}
    end)
    case("sweep", not ok and clean(ok, err) and not marked(),
         ("sweep point with extra words %s: refused (status 2, or NUL named)"):format(show(h)), err)
    core.rm_rf(dir .. "/sw-extra")
end

-- ---- an experiment's args.*: refused with the rest of its command line ----
-- every family of every sweep script, through the rules config.script checks
local experiment = require "blt.experiment"
local families = {compare_patching = {"blt", "bytelm", "bpe", "entropy"}, scaling = {"blt", "bytelm", "bpe", "entropy"},
                  demo = {"blt", "bytelm", "entropy"}}
for _, script in ipairs {"compare_patching", "scaling", "demo"} do
    local _, _, rules = experiment.with_common({}, {}, {}, families[script])
    for _, fam in ipairs(join({"all"}, families[script])) do
        for _, h in ipairs(H_ENV) do
            local msg = rules["args." .. fam]("train.threads=1 " .. h)
            case("args", type(msg) == "string", ("%s args.%s = %s: refused"):format(script, fam, show(h)), msg)
        end
        case("args", rules["args." .. fam]("train.threads=1") == nil, ("%s args.%s = train.threads=1: taken"):format(script, fam))
    end
end
-- end to end: status 2 naming the key, before anything runs
for _, h in ipairs(H_ENV) do
    local rc, out = run(join({"experiments/compare_patching.lua", "out=" .. dir .. "/exp"}, words {["args.all"] = "train.threads=1 " .. h}))
    case("args", rc == 2 and out:find("args.all", 1, true) and not marked(),
         ("compare_patching args.all = %s: status 2 naming the key"):format(show(h)), out)
end
-- the issue's example, as a --config file
do
    local rc, out = run {"experiments/compare_patching.lua", "out=" .. dir .. "/exp",
                         "--config", config_file {["args.all"] = "train.steps=2; touch " .. MARK .. "; exit 0 #"}}
    T.ok(rc == 2 and out:find("'touch' is not a key=value word", 1, true) and not marked(),
         "compare_patching --config {args = {all = 'train.steps=2; touch x; exit 0 #'}}: status 2, nothing runs", out)
    T.ok(not core.listdir(dir .. "/exp"), "compare_patching: the refused command line made no folder")
end
-- a typo in args.* is found before the entropy model trains, with the closest keys
T.ok(train.words_problem("blt", {"model.global.dimm=3"}):find("did you mean model.global.dim", 1, true),
     "words_problem: a mistyped key names the closest ones")
T.is(train.words_problem("bytelm", {"train.threads=1", "model.dim=32"}), nil, "words_problem: good words pass")

-- ---- the scripts that plot or spawn, end to end ----
local tiny_words = {}
for k, v in pairs(tiny) do tiny_words[#tiny_words + 1] = k .. "=" .. tostring(v) end
local function status_ok(rc) return rc == 0 or rc == 2 end
for _, h in ipairs(e2e(H_ENV)) do
    -- a training run in a folder named h, out.dir with h, drawing its loss (gnuplot)
    local rc, out = run(join({"experiments/train_bytelm.lua", "data.path=" .. corpus}, tiny_words, {"out.plot=true"},
                             words {["out.dir"] = dir .. "/tr/" .. h, ["out.name"] = h}))
    case("scripts", status_ok(rc) and not marked(),
         ("train out.dir=.../%s out.name=%s: status %d (0 or 2)"):format(show(h), show(h), rc), out)
    -- plot_runs: a run folder named h (its label), a title and an output path with h
    local folder = named(h, function(p) core.spawn({"ln", "-s", run_dir, p}) end)
    -- (a NUL cannot be in an argument: that folder is the plain run's, the title comes from a --config file)
    local arg_folder = h:find("\0", 1, true) and run_dir or folder
    rc, out = run(join({"scripts/plot_runs.lua"}, words {title = h, out = dir .. "/pr/" .. h .. ".png"},
                           {"--", arg_folder}))
    case("scripts", status_ok(rc) and not marked(), ("plot_runs with %s (folder, title, out): status %d"):format(show(h), rc), out)
    -- plot_entropy: the text (its bytes label the x axis) and the output path
    if not h:find("\0", 1, true) then
        rc, out = run {"scripts/plot_entropy.lua", "model=" .. ck, "threshold=1", "out=" .. dir .. "/pe/" .. h .. ".png",
                       "--", h:sub(1, 60)}
        case("scripts", status_ok(rc) and not marked(), ("plot_entropy with text %s: status %d"):format(show(h), rc), out)
    end
    -- robustness: a model in a folder named h (its label names a bar), the output prefix
    rc, out = run(join({"experiments/robustness.lua", "kinds=clean,case", "max_bytes=128", "data=" .. corpus},
                       words {models = folder .. "/checkpoint.h5", out = dir .. "/rb/" .. h}))
    case("scripts", status_ok(rc) and not marked(), ("robustness with %s (model folder, out): status %d"):format(show(h), rc), out)
    -- robustness over a runs_dir whose run is named h
    rc, out = run(join({"experiments/robustness.lua", "kinds=clean", "max_bytes=128", "data=" .. corpus, "plot=true"},
                       words {runs_dir = folder:match("^(.*)/") , out = dir .. "/rd/" .. h}))
    case("scripts", status_ok(rc) and not marked(), ("robustness runs_dir with a run named %s: status %d"):format(show(h), rc), out)
end
-- the sink string is a legal name: its runs really drew their figures
local sink = e2e(H_ENV)[1]
T.ok(U.read(dir .. "/pr/" .. sink .. ".png") and U.read(dir .. "/rb/" .. sink .. ".png") and U.read(dir .. "/rd/" .. sink .. ".png"),
     "plot_runs and robustness drew the figures named with every form")

T.ok(not io.open("MARK") and not marked(), "no marker in the working folder or the test folder")
local line = {}
for k, v in pairs(counts) do line[#line + 1] = ("%s %d"):format(k, v) end
table.sort(line)
io.write(("# hostile: %d forms; generated cases: %s\n"):format(#FORMS, table.concat(line, ", ")))
quiet:close()
core.rm_rf(dir)
T.done()
