-- blt.config: configurations as nested tables with documented defaults, overridden
-- from the command line as key.sub=value. Every script of the project reads its
-- command line through this module, so they all take the same style:
--
--   ./blt SCRIPT.lua [key=value ...] [--config FILE.lua] [--help] [other --flags]
--
--   local cfg, flags = config.parse(defaults, arg, {flags = {resume = "PATH"}, words = true})
-- defaults: {section = {key = default, ...}, ...} (or flat {key = default}); an
-- override must name an existing key and have the default's type (an integer default
-- takes only integers). A mistyped key is refused with the closest known keys.
-- --config FILE.lua is a Lua chunk returning a table of the same shape (it runs with
-- no globals and a bounded budget of instructions). opts.flags names the other
-- --flags a script takes and what their value is called ("PATH", "NAME"); they are
-- returned in `flags`. opts.words: arguments that are not key=value go to flags.words
-- (a script's text or files; `--` ends the options) instead of being an error.
--
-- Rules (config.check) bound every value before any work starts:
--   rules = {["train.lr"] = "> 0", ["data.val_fraction"] = "(0, 1)", ["train.warmup"] = ">= 0",
--            ["train.schedule"] = {"warmup_cosine", "constant", "linear"}, ["data.path"] = "readable"}
-- A rule is a comparison ("> 0", ">= 1", "<= 64"), an interval ("(0, 1)", "[0, 1)"),
-- a list of allowed values, "readable" (a file or a folder of files that can be read
-- and is not empty) or a function(value) returning nil or a message. Every number
-- must also be finite. A comparison or interval followed by " float32" ("> 0 float32")
-- is for a value C receives as a float: it must also be a normal float32 or 0.
local config = {}

local MAX_DEPTH, MAX_ENTRIES = 8, 10000 -- bounds on a config file's table
local CONFIG_FILE_BUDGET = 1e7           -- instructions a --config file may run
local CONFIG_FILE_HEAP = 64 << 20        -- bytes its Lua heap may grow by
local MAX_STRING = 1 << 20               -- longest string.rep result in a --config file
local QUOTE_MAX = 200                    -- bytes of a value an error message quotes

-- A user's value as an error message quotes it: at most QUOTE_MAX bytes (then
-- "... (N bytes)"; max: another bound), control characters escaped (\10), so a
-- message stays one short line.
function config.quote(v, max)
    local s = tostring(v)
    local n = #s
    max = max or QUOTE_MAX
    if n > max then s = s:sub(1, max) end
    s = s:gsub("%c", function(c) return ("\\%d"):format(c:byte()) end)
    if n > max then s = s .. ("... (%d bytes)"):format(n) end
    return s
end
local quote = config.quote

local function copy(t)
    if type(t) ~= "table" or getmetatable(t) then return t end -- sentinels stay themselves
    local c = {}
    for k, v in pairs(t) do c[k] = copy(v) end
    return c
end
config.copy = copy

-- A default for a key that may be left unset (nil) or set to a string, a number or a boolean.
config.OPTIONAL = setmetatable({}, {__tostring = function() return "(unset)" end})

local function is_section(v) return type(v) == "table" and not getmetatable(v) end

local function typename(v)
    if math.type(v) == "integer" then return "integer" end
    if v == config.OPTIONAL then return "optional" end
    return type(v)
end

-- A number on the command line is written in decimal: an integer ("16", "-3"; no
-- '+', no leading zeros) or a number with a fraction or an exponent ("0.5", "3e-4",
-- "1e3" is the number 1000.0, which an integer key refuses). Anything else (0x10,
-- +16, " 16", 1_000, 016) stays text, which a number key refuses, naming the key.
local function decimal(s)
    local mant = s:match("^(.-)[eE][-+]?%d+$") or s
    if not (mant:match("^%-?%d+%.?%d*$") or mant:match("^%-?%.%d+$")) then return nil end
    if mant == s and not s:find(".", 1, true) then -- an integer
        if s:match("^%-?0%d") then return nil end
        local n = math.tointeger(tonumber(s))
        if n then return n end
        error(("config: %s does not fit in a 64-bit integer"):format(quote(s)), 0)
    end
    return tonumber(s)
end

local function parse_value(s)
    if s == "true" then return true end
    if s == "false" then return false end
    if s == "nil" or s == "none" then return nil end
    local n = decimal(s)
    if n then return n end
    return s
end

-- Every key path of defaults ("train.lr", ...), sorted.
local function paths(defaults)
    local out = {}
    local function walk(d, p)
        for k, v in pairs(d) do
            local path = p and (p .. "." .. k) or tostring(k)
            if is_section(v) then walk(v, path) else out[#out + 1] = path end
        end
    end
    walk(defaults)
    table.sort(out)
    return out
end
config.paths = paths

-- Levenshtein distance, for "did you mean".
local function distance(a, b)
    local prev = {}
    for j = 0, #b do prev[j] = j end
    for i = 1, #a do
        local cur = {[0] = i}
        for j = 1, #b do
            local cost = a:byte(i) == b:byte(j) and 0 or 1
            cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
        end
        prev = cur
    end
    return prev[#b]
end

-- The known keys closest to a mistyped one: by edit distance over the whole path and
-- over its last part, so both "train.lrr" and "lr" find "train.lr".
function config.suggest(defaults, path, n)
    if #path > 2 * QUOTE_MAX then return {} end -- the distance is quadratic in the length
    local last = path:match("([^.]+)$") or path
    local scored = {}
    for _, p in ipairs(paths(defaults)) do
        local d = math.min(distance(path, p), distance(last, p:match("([^.]+)$")) + 1)
        if d <= math.max(2, #last // 2) then scored[#scored + 1] = {p, d} end
    end
    table.sort(scored, function(x, y) return x[2] < y[2] or (x[2] == y[2] and x[1] < y[1]) end)
    local out = {}
    for i = 1, math.min(n or 3, #scored) do out[i] = scored[i][1] end
    return out
end

local function unknown(defaults, path, origin)
    local near = config.suggest(defaults, path)
    error(("config: unknown key '%s' (from %s)%s (--help lists every key)"):format(quote(path), quote(origin),
          #near > 0 and ("; did you mean " .. table.concat(near, ", ") .. "?") or ""), 0)
end

-- The reason a key is not the user's to give (opts.internal names it, or a section
-- above it), or nil.
local function internal_reason(internal, path)
    if not internal then return nil end
    local prefix = ""
    for part in path:gmatch("[^.]+") do
        prefix = prefix == "" and part or (prefix .. "." .. part)
        if internal[prefix] then return internal[prefix] end
    end
end

-- Sets key path "a.b" in cfg to v, checking against defaults. given: the set of keys
-- the user gave (the command line, --config), where opts.internal keys are refused;
-- raw: the command line's text of the value (a text key keeps it as written).
local function set(cfg, defaults, path, v, origin, given, raw, internal)
    if path == "" or path:find("..", 1, true) or path:sub(1, 1) == "." or path:sub(-1) == "." then
        error(("config: '%s' is not a key (from %s)"):format(quote(path), quote(origin)), 0)
    end
    local node, def = cfg, defaults
    local parts = {}
    for p in path:gmatch("[^.]+") do parts[#parts + 1] = p end
    for i = 1, #parts - 1 do
        def = def[parts[i]]
        if not is_section(def) then unknown(defaults, path, origin) end
        node = node[parts[i]]
    end
    local key = parts[#parts]
    local d = def[key]
    if d == nil then unknown(defaults, path, origin) end
    local why = given and internal_reason(internal, path)
    if why then
        error(("config: key '%s' is not to be given: %s (from %s)"):format(path, why, quote(origin)), 0)
    end
    local want, got = typename(d), typename(v)
    -- a text key given a number keeps it as text: seeds=1, hash.ngrams=3 are lists of one
    if want == "string" and (got == "integer" or got == "number") then v, got = raw or tostring(v), "string" end
    if want == "table" then error(("config: key '%s' is a section, not a value (from %s)"):format(path, quote(origin)), 0) end
    if want == "optional" then
        if v ~= nil and got ~= "string" and got ~= "integer" and got ~= "number" and got ~= "boolean" then
            error(("config: key '%s' takes a string, a number or a boolean, got %s (from %s)"):format(path, got, quote(origin)), 0)
        end
    elseif not (got == want or (want == "number" and got == "integer")) then
        error(("config: key '%s' must be %s (like its default %s), got %s %s (from %s)"):format(path, want,
              quote(d), got, raw and ("'" .. quote(raw) .. "'") or quote(v), quote(origin)), 0)
    end
    if type(v) == "string" and v:find("\0", 1, true) then
        error(("config: key '%s' contains a NUL byte (from %s)"):format(path, quote(origin)), 0)
    end
    if want == "number" and got == "integer" then v = v + 0.0 end
    node[key] = v
    if given then given[path] = true end
end

-- Applies a nested table of values (a config file, a checkpoint's config) over cfg.
-- A table that contains itself, nests deeper than MAX_DEPTH or holds more than
-- MAX_ENTRIES values is refused rather than walked forever.
local function apply(cfg, defaults, t, origin, given, internal)
    local seen, count = {}, 0
    local function walk(tbl, prefix, depth)
        if seen[tbl] then error(("config: %s contains itself at '%s'"):format(quote(origin), quote(prefix or "(top)")), 0) end
        if depth > MAX_DEPTH then
            error(("config: %s nests deeper than %d levels at '%s'"):format(quote(origin), MAX_DEPTH, quote(prefix)), 0)
        end
        seen[tbl] = true
        for k, v in pairs(tbl) do
            count = count + 1
            if count > MAX_ENTRIES then error(("config: %s has more than %d entries"):format(quote(origin), MAX_ENTRIES), 0) end
            if type(k) ~= "string" then
                error(("config: %s has a key that is not a name (%s %s)"):format(quote(origin), type(k), quote(k)), 0)
            end
            local path = prefix and (prefix .. "." .. k) or k
            if type(v) == "table" then walk(v, path, depth + 1) else set(cfg, defaults, path, v, origin, given, nil, internal) end
        end
        seen[tbl] = nil
    end
    walk(t, nil, 1)
end

local function strip_optional(t)
    for k, v in pairs(t) do
        if v == config.OPTIONAL then t[k] = nil
        elseif is_section(v) then strip_optional(v) end
    end
    return t
end

-- The string methods a --config file may call ("x"):method(...): the count hook cannot
-- interrupt a C function, so pattern matching (whose time can grow as a power of the
-- subject's length) is not offered, find only finds plain text and rep is capped.
local function no_patterns(name, level)
    error(("string.%s is not available in a --config file: Lua patterns escape its instruction budget "
        .. "(s:find(text, 1, true) finds plain text)"):format(name), level + 1)
end
local function refuse_patterns(name) return function() no_patterns(name, 2) end end
local SANDBOX_STRING = {
    byte = string.byte, char = string.char, format = string.format, len = string.len, lower = string.lower,
    upper = string.upper, sub = string.sub, reverse = string.reverse,
    match = refuse_patterns("match"), gmatch = refuse_patterns("gmatch"), gsub = refuse_patterns("gsub"),
    find = function(s, text, init, plain)
        if plain ~= true then no_patterns("find with a pattern", 2) end
        return string.find(s, text, init, true)
    end,
    rep = function(s, n, sep)
        local len = #tostring(s) * (tonumber(n) or 0) + #tostring(sep or "") * math.max(0, (tonumber(n) or 0) - 1)
        if len > MAX_STRING then
            error(("string.rep would make %.0f bytes, more than a --config file may (%d)"):format(len, MAX_STRING), 2)
        end
        return string.rep(s, n, sep)
    end,
}

config.SANDBOX_STRING = SANDBOX_STRING

-- config.sandboxed(f, budget, heap, ...) -> true, f's first result | false, message:
-- runs f(...) (whose globals the caller chose) with at most budget instructions, its
-- Lua heap growing by at most heap bytes and the bounded string methods above. Used by
-- --config files and scheme files (blt.schemes), whose rule runs once per row.
function config.sandboxed(f, budget, heap, ...)
    local co = coroutine.create(f)
    debug.sethook(co, function() error("runs too long (an endless loop?)", 0) end, "", budget)
    local core = require "blt.core"
    local strings = getmetatable("")
    local lib = strings.__index
    strings.__index = SANDBOX_STRING
    core.lua_heap_limit(heap)
    local ok, r = coroutine.resume(co, ...)
    core.lua_heap_limit(nil)
    strings.__index = lib
    if ok and coroutine.status(co) ~= "dead" then ok, r = false, "yielded (coroutines are not available)" end
    if not ok and r == "not enough memory" then r = ("uses more than %d MB of memory"):format(heap >> 20) end
    return ok, r
end

-- Runs a --config file with no globals, a bounded instruction budget, a bounded heap
-- and bounded string methods (SANDBOX_STRING, in place of the string library while it runs).
local function load_config_file(path)
    local f, why = require("blt.util").open_read(path) -- loadfile would wait forever on a FIFO
    if not f then error(("config: cannot read %s"):format(why), 0) end
    f:close()
    local chunk, err = loadfile(path, "t", {})
    if not chunk then error(("config: cannot read %s: %s"):format(quote(path), quote(err)), 0) end
    -- never raises: an error in the chunk comes back as ok = false
    local ok, t = config.sandboxed(chunk, CONFIG_FILE_BUDGET, CONFIG_FILE_HEAP)
    if not ok then error(("config: %s: %s"):format(quote(path), quote(t, 2 * QUOTE_MAX)), 0) end
    if type(t) ~= "table" then error(("config: %s must return a table, got %s"):format(quote(path), type(t)), 0) end
    return t
end

-- Returns the resolved config and the flags ({help =, config =, words =, given =, <flag> = value});
-- flags.given is the set of key paths the command line or --config set.
-- opts.flags = {name = "WHAT"}: extra --name VALUE flags (also --name=VALUE);
-- opts.switches = {name = true}: extra --name flags without a value;
-- opts.words = true: non key=value arguments are collected in flags.words (without it,
-- every argument that is not key=value or a flag is refused, after `--` too);
-- opts.internal = {[path] = why}: keys (or whole sections) the run itself writes,
-- refused when the command line or --config gives them.
function config.parse(defaults, args, opts)
    opts = opts or {}
    local cfg = copy(defaults)
    local flags = {words = {}, given = {}}
    local takes = {config = "FILE.lua"}
    for k, v in pairs(opts.flags or {}) do takes[k] = v end
    local switches = opts.switches or {}
    args = args or {}
    local i, only_words = 1, false
    while i <= #args do
        local a = args[i]
        if type(a) ~= "string" then error(("config: argument %d is not a string"):format(i), 0) end
        local flag, val = a:match("^%-%-([%w_-]+)=(.*)$")
        flag = flag or a:match("^%-%-([%w_-]+)$")
        if only_words then
            if not opts.words then
                error(("config: cannot read argument '%s' after '--': this script takes only key=value and flags"):format(quote(a)), 0)
            end
            flags.words[#flags.words + 1] = a
        elseif a == "--" then
            only_words = true
        elseif a == "--help" or a == "-h" then
            flags.help = true
        elseif flag and takes[flag] then
            if val == nil then
                i = i + 1
                val = args[i]
                if val == nil then error(("config: --%s needs a %s"):format(quote(flag), takes[flag]), 0) end
            end
            if flag == "config" then apply(cfg, defaults, load_config_file(val), val, flags.given, opts.internal) end
            flags[flag] = val
        elseif flag and switches[flag] then
            flags[flag] = true
        elseif flag then
            local known = {"--help", "--config FILE.lua"}
            for k, v in pairs(takes) do if k ~= "config" then known[#known + 1] = "--" .. k .. " " .. v end end
            for k in pairs(switches) do known[#known + 1] = "--" .. k end
            table.sort(known)
            error(("config: unknown flag '%s' (flags: %s; settings are key=value)"):format(quote(a), table.concat(known, ", ")), 0)
        else
            local k, v = a:match("^([%a_][%w_%.]*)=(.*)$")
            if k then
                set(cfg, defaults, k, parse_value(v), "the command line", flags.given, v, opts.internal)
            elseif opts.words then
                flags.words[#flags.words + 1] = a
            else
                error(("config: cannot read argument '%s' (want key=value; --help lists the keys)"):format(quote(a)), 0)
            end
        end
        i = i + 1
    end
    return strip_optional(cfg), flags
end

-- Sets a resolved config back from a plain table (e.g. a checkpoint's config).
function config.merge(defaults, t, origin)
    local cfg = copy(defaults)
    apply(cfg, defaults, t, origin or "the checkpoint")
    return strip_optional(cfg)
end

-- The value at a key path, or nil.
function config.get(cfg, path)
    local node = cfg
    for p in path:gmatch("[^.]+") do
        if type(node) ~= "table" then return nil end
        node = node[p]
    end
    return node
end

local function readable(path)
    if type(path) ~= "string" then return "must be a path" end
    -- opening a FIFO (or a device) would wait for a writer: only files and folders are opened
    local kind, why = require("blt.core").file_kind(path)
    if not kind then return "cannot be read (" .. why .. ")" end
    if kind ~= "file" and kind ~= "folder" then return "is a " .. kind .. ", not a regular file or a folder" end
    local f, err = io.open(path, "rb")
    if not f then return "cannot be read (" .. quote(err) .. ")" end
    if kind == "folder" then -- a folder, whose files blt.data reads
        f:close()
        local names = require("blt.core").listdir(path)
        if not names or #names == 0 then return "is an empty folder" end
        return nil
    end
    local size = f:seek("end")
    f:close()
    if not size then return "cannot be read" end
    if size == 0 then return "is an empty file" end
    return nil
end

-- float32's largest finite value and smallest normal one (FLT_MAX, FLT_MIN)
config.FLT_MAX, config.FLT_MIN = 3.4028234663852886e38, 1.1754943508222875e-38

local check_rule

-- A rule ending in " float32" (e.g. "> 0 float32") is for a value the C core receives
-- as a float: it must be 0 or a normal float32 (no overflow to inf, no underflow to a
-- subnormal or 0), and the rest of the rule must hold for the float32 it rounds to
-- (beta1 = 0.99999999 becomes 1, outside "[0, 1)").
local function check_float32(rule, v)
    if type(v) ~= "number" then return "must be a number" end
    if v ~= v then return "must be a number, not NaN" end
    local a = math.abs(v)
    if a > config.FLT_MAX then return ("must be at most %.7g in magnitude (it reaches C as a float32)"):format(config.FLT_MAX) end
    if v ~= 0 and a < config.FLT_MIN then
        return ("is below %.7g, the smallest normal float32 (C receives it as a float32: 0 or a subnormal)")
            :format(config.FLT_MIN)
    end
    local msg = check_rule(rule, v)
    if msg then return msg end
    local f = string.unpack("f", string.pack("f", v))
    msg = check_rule(rule, f)
    if msg then return ("is %.9g as a float32 (which C receives), which %s"):format(f, msg) end
end

-- One rule applied to one value: nil when it holds, else what is wrong.
function check_rule(rule, v)
    if type(rule) == "function" then return rule(v) end
    if type(rule) == "string" and rule:match("%sfloat32$") then return check_float32(rule:gsub("%s+float32$", ""), v) end
    if type(rule) == "table" then
        for _, allowed in ipairs(rule) do if v == allowed then return nil end end
        local names = {}
        for _, allowed in ipairs(rule) do names[#names + 1] = tostring(allowed) end
        return "must be one of " .. table.concat(names, ", ")
    end
    if rule == "readable" then return readable(v) end
    if type(v) ~= "number" then return "must be a number" end
    local op, x = rule:match("^([<>]=?)%s*([-+%d.e]+)$")
    if op then
        x = tonumber(x)
        local ok = (op == ">" and v > x) or (op == ">=" and v >= x) or (op == "<" and v < x) or (op == "<=" and v <= x)
        return not ok and ("must be " .. rule) or nil
    end
    local lo_b, lo, hi, hi_b = rule:match("^([%(%[])%s*([-+%d.e]+)%s*,%s*([-+%d.e]+)%s*([%)%]])$")
    if lo_b then
        lo, hi = tonumber(lo), tonumber(hi)
        local ok = (lo_b == "(" and v > lo or lo_b == "[" and v >= lo) and (hi_b == ")" and v < hi or hi_b == "]" and v <= hi)
        return not ok and ("must be in " .. rule) or nil
    end
    error("config: bad rule " .. tostring(rule))
end

-- check_rule(rule, value) -> nil when the value satisfies the rule, else what is wrong
-- (for modules that bound their own options with the same rules).
config.check_rule = check_rule

-- Text of a rule for --help.
function config.rule_text(rule)
    if type(rule) == "table" then
        local names = {}
        for _, v in ipairs(rule) do names[#names + 1] = tostring(v) end
        return table.concat(names, " | ")
    end
    if type(rule) == "string" then return rule end
    return nil
end

-- Checks every number is finite and every rule holds; raises
-- "config: <key> = <value>: <what is wrong>" for the first key (in key order) that fails.
function config.check(cfg, rules, defaults)
    local keys = {}
    for k in pairs(rules or {}) do keys[#keys + 1] = k end
    table.sort(keys)
    if defaults then
        for _, p in ipairs(paths(defaults)) do
            local v = config.get(cfg, p)
            if type(v) == "number" and (v ~= v or v == math.huge or v == -math.huge) then
                error(("config: %s = %s: must be a finite number"):format(p, quote(v)), 0)
            end
        end
    end
    for _, k in ipairs(keys) do
        local v = config.get(cfg, k)
        if v ~= nil and v ~= config.OPTIONAL then
            local msg = check_rule(rules[k], v)
            if msg then error(("config: %s = %s: %s"):format(k, quote(v), msg), 0) end
        end
    end
end

-- Text listing every key, its default, its allowed values and its doc line
-- (internal: opts.internal of config.parse, keys marked as not to be given).
function config.help(defaults, docs, rules, internal)
    local lines = {}
    for _, path in ipairs(paths(defaults)) do
        local d = config.get(defaults, path)
        local doc = docs and config.get(docs, path)
        local rule = rules and config.rule_text(rules[path])
        local text = type(doc) == "string" and doc or ""
        if rule then text = text .. (text ~= "" and "; " or "") .. rule end
        if internal_reason(internal, path) then text = text .. (text ~= "" and "; " or "") .. "not to be given" end
        lines[#lines + 1] = ("  %-26s %-14s %s"):format(path, tostring(d), text)
    end
    return table.concat(lines, "\n")
end

-- One line per key=value, sorted: for logs.
function config.flat(cfg)
    local out = {}
    local function walk(t, p)
        for k, v in pairs(t) do
            local path = p and (p .. "." .. k) or k
            if type(v) == "table" then walk(v, path) else out[#out + 1] = path .. "=" .. tostring(v) end
        end
    end
    walk(cfg)
    table.sort(out)
    return out
end

-- The whole resolved config as text, one line per section, keys sorted, wrapped at
-- width (default 100); keys in `given` (flags.given) are marked with '*'. Training
-- runs print it at their start, so a log always says exactly what ran.
function config.describe(cfg, given, width)
    width = width or 100
    given = given or {}
    local sections, top = {}, {}
    for _, kv in ipairs(config.flat(cfg)) do
        local path, v = kv:match("^([^=]*)=(.*)$")
        if v:find("\n", 1, true) or #v > QUOTE_MAX then v = quote(v, 40) end -- a scheme file's source: one short line
        local section, rest = path:match("^([^.]+)%.(.+)$")
        local item = (given[path] and "*" or "") .. (rest or path) .. "=" .. v
        if section then
            if not sections[section] then sections[section] = {}; sections[#sections + 1] = section end
            table.insert(sections[section], item)
        else
            top[#top + 1] = item
        end
    end
    local lines = {}
    local function emit(head, items)
        local line = head
        for _, it in ipairs(items) do
            if #line + #it + 1 > width and line ~= head then
                lines[#lines + 1] = line
                line = (" "):rep(#head)
            end
            line = line .. " " .. it
        end
        lines[#lines + 1] = line
    end
    if #top > 0 then lines[1] = "  " .. table.concat(top, " ") end
    for _, s in ipairs(sections) do emit("  " .. s .. ":", sections[s]) end
    return table.concat(lines, "\n")
end

-- A script's command line in one call: parses, prints --help (usage, then every key)
-- and returns nil, or returns cfg, flags. A bad argument or value is printed as
-- "<name>: <message>" and the process exits with status 2.
--   config.script{name =, usage =, defaults =, docs =, rules =, args = arg, flags =, switches =, words =}
function config.script(s)
    local ok, cfg, flags = pcall(config.parse, s.defaults, s.args or {}, s)
    if ok and flags.help then
        print(s.usage or ("usage: ./blt " .. s.name .. " [key=value ...] [--config FILE.lua]"))
        print("\nkeys (default, meaning; allowed values):\n" .. config.help(s.defaults, s.docs, s.rules, s.internal))
        return nil
    end
    if ok then ok, cfg = pcall(function() config.check(cfg, s.rules, s.defaults) return cfg end) end
    if not ok then
        require("blt.util").die(s.name, cfg)
    end
    return cfg, flags
end

return config
