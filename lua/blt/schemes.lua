-- blt.schemes: the registry of patching schemes (docs/patching.md, "A scheme of one's own").
-- A scheme is one table, written once; every question about a scheme (its options and
-- their defaults, docs and rules, whether it needs entropies, its mean patch size when
-- known, which option a calibration sets) is answered here:
--
--   {name = "punct", doc = "...", options = {every = 16}, docs = {every = "..."},
--    rules = {every = ">= 1"}, needs_entropy = false,
--    flags = function(row, entropies, opts) ... return flags end}   -- or
--    flag = function(t, row, entropies, opts) ... end                 -- s[t-1], one position
--
-- The built-in schemes register the same way, with `kernel` naming their C scheme
-- (core/patch.c) instead of a rule. A scheme file (patching.scheme=file:PATH) is a Lua
-- chunk returning such a table; it runs in the sandbox of blt.config (no io, os,
-- require, load, debug; bounded instructions and heap), when loaded and at every call
-- of its rule, so that a checkpoint, which carries the file's source, runs nothing else.
local schemes = {}

local REG, ORDER = {}, {}
local COMPILED = setmetatable({}, {__mode = "v"}) -- file schemes by name and source: compiled once while in use
local FILE_PREFIX = "file:"
schemes.FILE_PREFIX = FILE_PREFIX

local KNOWN = {"name", "doc", "options", "docs", "rules", "needs_entropy", "flags", "flag", "kernel",
               "mean_patch", "calibrates", "estimate"}

local function fail(fmt, ...) error(fmt:format(...), 0) end

local function is_int(x) return math.type(x) == "integer" or (type(x) == "number" and x == math.floor(x)) end

-- Checks a scheme table (what: where it came from, for messages) and returns a copy.
local function validate(t, what)
    if type(t) ~= "table" then fail("%s: a scheme must be a table, got %s", what, type(t)) end
    local known = {}
    for _, k in ipairs(KNOWN) do known[k] = true end
    for k in pairs(t) do
        if not known[k] then fail("%s: unknown field '%s' (known: %s)", what, tostring(k), table.concat(KNOWN, ", ")) end
    end
    if type(t.name) ~= "string" or not t.name:match("^[%a_][%w_]*$") then
        fail("%s: name must be an identifier (letters, digits, _), got %s", what, tostring(t.name))
    end
    local s = {name = t.name, doc = t.doc or "", options = {}, docs = {}, rules = {},
               needs_entropy = t.needs_entropy == true, kernel = t.kernel, mean_patch = t.mean_patch,
               calibrates = t.calibrates, estimate = t.estimate}
    if t.needs_entropy ~= nil and type(t.needs_entropy) ~= "boolean" then
        fail("%s: needs_entropy must be true or false, got %s", what, type(t.needs_entropy))
    end
    if t.options ~= nil and type(t.options) ~= "table" then fail("%s: options must be a table", what) end
    for k, v in pairs(t.options or {}) do
        if type(k) ~= "string" then fail("%s: option names must be strings", what) end
        local ty = type(v)
        if ty ~= "number" and ty ~= "string" and ty ~= "boolean" then
            fail("%s: option '%s' must default to a number, string or boolean, got %s", what, k, ty)
        end
        s.options[k] = v
    end
    for _, f in ipairs {"docs", "rules"} do
        if t[f] ~= nil and type(t[f]) ~= "table" then fail("%s: %s must be a table", what, f) end
        for k, v in pairs(t[f] or {}) do
            if s.options[k] == nil then fail("%s: %s names '%s', which is not an option", what, f, tostring(k)) end
            s[f][k] = v
        end
    end
    if s.calibrates ~= nil and math.type(s.options[s.calibrates]) ~= "float" then
        fail("%s: calibrates must name an option whose default is a float (like 1.0), got %s", what, tostring(s.calibrates))
    end
    if s.kernel == nil then
        if t.flags ~= nil and t.flag ~= nil then fail("%s: give flags or flag, not both", what) end
        if type(t.flags) == "function" then s.rule = t.flags
        elseif type(t.flag) == "function" then s.per_position = t.flag
        else fail("%s: a scheme needs flags = function(row, entropies, opts) or flag = function(t, row, entropies, opts)", what) end
    end
    return s
end

--- schemes.register(table) -> the scheme (replaces one of the same name that is not built in).
function schemes.register(t)
    local s = validate(t, "blt.schemes.register")
    local old = REG[s.name]
    if old and old.kernel then fail("blt.schemes.register: '%s' is a built-in scheme", s.name) end
    if not old then ORDER[#ORDER + 1] = s.name end
    REG[s.name] = s
    return s
end

--- schemes.names() -> the registered names, built-ins first, in registration order.
function schemes.names() return table.move(ORDER, 1, #ORDER, 1, {}) end

--- schemes.is_file(name): a "file:PATH" scheme?
function schemes.is_file(name) return type(name) == "string" and name:sub(1, #FILE_PREFIX) == FILE_PREFIX end

--- schemes.known(name): a registered name or a file scheme (not read here).
function schemes.known(name) return REG[name] ~= nil or (schemes.is_file(name) and #name > #FILE_PREFIX) end

--- schemes.get(name [, source]): the scheme of a name; "file:PATH" compiles source (the file's
-- text, e.g. from a checkpoint) or else reads PATH.
function schemes.get(name, source)
    if REG[name] then return REG[name] end
    if schemes.is_file(name) then
        if source == nil or source == "" then source = schemes.read(name) end
        local key = name .. "\0" .. source
        if not COMPILED[key] then COMPILED[key] = schemes.compile(source, name) end
        return COMPILED[key]
    end
    fail("unknown patching scheme '%s' (known: %s, or file:PATH)", tostring(name), table.concat(ORDER, ", "))
end

--- schemes.read("file:PATH") -> the file's text (a clear error when it cannot be read).
function schemes.read(name)
    local path = name:sub(#FILE_PREFIX + 1)
    local src, why = require("blt.util").read_file(path)
    if not src then fail("patching.scheme = %s: cannot read %s", name, why or "it") end
    return src
end

--- schemes.hash(source) -> 16 hex digits (FNV-1a, 64 bits): names the source a checkpoint holds.
function schemes.hash(src)
    local h = -3750763034362895579 -- 0xcbf29ce484222325
    for i = 1, #src do
        h = (h ~ src:byte(i)) * 1099511628211
    end
    return ("%016x"):format(h)
end

local SCHEME_BUDGET = 1e7   -- instructions one call of a scheme file's code may run
local SCHEME_HEAP = 64 << 20 -- bytes its Lua heap may grow by during one call
schemes.BUDGET, schemes.HEAP = SCHEME_BUDGET, SCHEME_HEAP

-- The globals a scheme file sees: pure functions only.
local function environment()
    local config = require "blt.config"
    local env = {
        pairs = pairs, ipairs = ipairs, next = next, type = type, tostring = tostring, tonumber = tonumber,
        select = select, error = error, assert = assert, rawlen = rawlen, rawequal = rawequal,
        math = {}, table = {}, string = {}, utf8 = {},
    }
    for k, v in pairs(math) do env.math[k] = v end
    for _, k in ipairs {"concat", "insert", "remove", "sort", "move", "unpack", "pack"} do env.table[k] = table[k] end
    for k, v in pairs(config.SANDBOX_STRING) do env.string[k] = v end
    for k, v in pairs(utf8) do env.utf8[k] = v end
    return env
end

-- Runs f(...) in the sandbox; errors name the scheme.
local function call(s, what, f, ...)
    local ok, a = require("blt.config").sandboxed(f, SCHEME_BUDGET, SCHEME_HEAP, ...)
    if not ok then -- a user's error (or a crafted checkpoint's): the message alone, status 2
        require("blt.util").user_error(("patching scheme %s: %s: %s"):format(s.name or s.origin, what, tostring(a)))
    end
    return a
end

--- schemes.compile(source, origin) -> the scheme a scheme file's text defines (not registered).
function schemes.compile(src, origin)
    origin = origin or "scheme"
    if type(src) ~= "string" then fail("%s: the scheme's source must be a string", origin) end
    local chunk, err = load(src, "=" .. origin, "t", environment())
    if not chunk then fail("patching.scheme = %s: %s", origin, err) end
    local t = call({origin = origin}, "loading it", chunk)
    local s = validate(t, "patching.scheme = " .. origin)
    if s.kernel then fail("patching.scheme = %s: kernel is for the built-in schemes", origin) end
    for _, k in ipairs {"mean_patch", "estimate"} do
        if s[k] ~= nil and (type(s[k]) ~= "number" or not (s[k] >= 1)) then
            fail("patching.scheme = %s: %s must be a number >= 1 (the scheme's mean bytes per patch)", origin, k)
        end
    end
    if type(s.doc) ~= "string" then fail("patching.scheme = %s: doc must be a string", origin) end
    for k, v in pairs(s.docs) do
        if type(v) ~= "string" then fail("patching.scheme = %s: docs.%s must be a string", origin, k) end
    end
    for k, rule in pairs(s.rules) do
        if type(rule) == "function" then -- an option's rule of its own runs in the sandbox too
            s.rules[k] = function(v)
                local okr, msg = require("blt.config").sandboxed(rule, SCHEME_BUDGET, SCHEME_HEAP, v)
                if not okr then return "its rule failed: " .. tostring(msg) end
                return msg ~= nil and tostring(msg) or nil
            end
        end
    end
    s.source, s.hash, s.origin = src, schemes.hash(src), origin
    return s
end

--- schemes.options(s, given): the scheme's options, defaults filled in from given
-- (a table of overrides); refuses unknown names, wrong types and broken rules.
function schemes.options(s, given)
    local o = {}
    for k, v in pairs(s.options) do o[k] = v end
    for k, v in pairs(given or {}) do
        if s.options[k] == nil then
            local names = {}
            for n in pairs(s.options) do names[#names + 1] = n end
            table.sort(names)
            fail("patching scheme %s: unknown option '%s' (its options: %s)", s.name, tostring(k),
                #names > 0 and table.concat(names, ", ") or "none")
        end
        if type(v) ~= type(s.options[k]) or (math.type(s.options[k]) == "integer" and not is_int(v)) then
            fail("patching scheme %s: option %s must be %s like its default %s, got %s", s.name, k,
                math.type(s.options[k]) or type(s.options[k]), tostring(s.options[k]), tostring(v))
        end
        o[k] = v
    end
    local config = require "blt.config"
    local ok, err = pcall(config.check, o, s.rules, s.options)
    if not ok then fail("patching scheme %s: %s", s.name, (tostring(err):gsub("^config: ", ""))) end
    return o
end

--- schemes.parse_options("name=value,...", key) -> {name = value}: numbers, true/false, words
-- (what patching.options=, show_patches options= give; key names it in errors).
function schemes.parse_options(str, key)
    local t = {}
    for item in str:gmatch("[^,]+") do
        local k, v = item:match("^%s*([%w_]+)%s*=%s*(.-)%s*$")
        if not k then fail("%s: '%s' is not name=value", key or "options", item) end
        if v == "true" or v == "false" then v = v == "true"
        elseif tonumber(v) then v = math.tointeger(tonumber(v)) or tonumber(v) end
        t[k] = v
    end
    return t
end

--- schemes.rule(s, opts) -> function(row, entropies) -> flags, running a file scheme's
-- rule in the sandbox (what blt.patching.patcher{scheme = f} takes).
function schemes.rule(s, opts)
    if s.kernel then fail("blt.schemes.rule: '%s' is computed by its C kernel", s.name) end
    if s.rule then
        local f = s.rule
        return function(row, ents) return call(s, "flags", f, row, ents, opts) end
    end
    local f = s.per_position
    return function(row, ents)
        return call(s, "flag", function()
            local out = {}
            for t = 1, #row + 1 do out[t] = f(t, row, ents, opts) end
            return out
        end)
    end
end

--- schemes.check_incremental(flags_of, row [, perturb]) -> true, or false, position, message.
-- flags_of(row) -> flags (s[0..N-1] as 0/1). The paper's rule: the boundary before
-- token t depends on tokens before t only; so changing token j (each j in turn: id -> the
-- id of the next byte, or perturb(id)) must leave every flag of a position <= j as it was.
function schemes.check_incremental(flags_of, row, perturb)
    perturb = perturb or function(id) return id == 259 and 5 or id + 1 end
    local base = flags_of(row)
    for j = 2, #row do
        local r = table.move(row, 1, #row, 1, {})
        r[j] = perturb(r[j])
        local f = flags_of(r)
        for t = 1, j do
            if (f[t] or 0) ~= (base[t] or 0) then
                return false, t, ("the boundary before token %d (byte %d) moved when token %d (byte %d) changed: "
                    .. "the scheme looks ahead; a patch boundary may depend only on earlier bytes"):format(t - 1, t - 2, j - 1, j - 2)
            end
        end
    end
    return true
end

-- ---- the built-in schemes (their kernels in core/patch.c) ----

schemes.register {name = "fixed", kernel = "fixed", doc = "a patch every `size` bytes",
    options = {size = 4}, docs = {size = "patch length"},
    rules = {size = function(v) if not is_int(v) or v < 1 then return "must be an integer >= 1" end end},
    mean_patch = function(o) return o.size end}
schemes.register {name = "space", kernel = "space", doc = "a patch starts after a space-like byte that follows a word byte",
    estimate = 4}
schemes.register {name = "entropy", kernel = "entropy", needs_entropy = true, calibrates = "threshold",
    doc = "a patch where the next byte's entropy exceeds a global threshold",
    options = {threshold = 0.0}, docs = {threshold = "global threshold in nats"}, rules = {threshold = ">= 0"}}
schemes.register {name = "entropy_delta", kernel = "entropy_delta", needs_entropy = true, calibrates = "delta",
    doc = "a patch where the entropy rises by more than delta (and, when given, exceeds threshold)",
    options = {delta = 0.0, threshold = 0.0},
    docs = {delta = "threshold on the entropy increase", threshold = "combined threshold (0: none)"},
    rules = {delta = ">= 0", threshold = ">= 0"}}
schemes.register {name = "byte", kernel = "byte", doc = "every byte its own patch",
    mean_patch = function() return 1 end}

--- schemes.calibrate(mean_at, x0, target [, tolerance]) -> x, mean reached: the value of a
-- scheme's calibrated option (s.calibrates; the mean patch size must not decrease as it
-- grows) whose mean_at(x) is target within the relative tolerance (default 0.01): x0
-- (> 0) is doubled or halved until the target is bracketed, then bisected. When the
-- target is out of reach, the closest value seen.
function schemes.calibrate(mean_at, x0, target, tol)
    tol = tol or 0.01
    local best_x, best_m
    local function consider(x)
        local m = mean_at(x)
        if best_m == nil or math.abs(m - target) < math.abs(best_m - target) then best_x, best_m = x, m end
        return m, math.abs(m - target) <= tol * target
    end
    local x = x0 > 0 and x0 or 1.0
    local m, done = consider(x)
    if done then return best_x, best_m end
    local lo, hi
    if m < target then
        lo = x
        for _ = 1, 60 do
            x = x * 2
            m, done = consider(x)
            if done then return best_x, best_m end
            if m >= target then hi = x break end
            lo = x
        end
    else
        hi = x
        for _ = 1, 60 do
            x = x / 2
            m, done = consider(x)
            if done then return best_x, best_m end
            if m < target then lo = x break end
            hi = x
        end
    end
    if not (lo and hi) then return best_x, best_m end
    for _ = 1, 60 do
        local mid = (lo + hi) / 2
        m, done = consider(mid)
        if done then break end
        if m < target then lo = mid else hi = mid end
        if hi - lo <= 1e-12 * hi then break end
    end
    return best_x, best_m
end

--- schemes.mean_patch(s, opts) -> the scheme's mean bytes per patch when it is known
-- without measuring (fixed: size, byte: 1, a file's declared mean_patch), else nil.
function schemes.mean_patch(s, opts)
    if type(s.mean_patch) == "function" then return s.mean_patch(opts or s.options) end
    return s.mean_patch
end

return schemes
