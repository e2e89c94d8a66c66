-- blt.config: experiment configurations as nested tables with documented
-- defaults, overridden from the command line as key.sub=value.
--
--   local cfg, rest = config.parse(defaults, arg)
-- defaults: {section = {key = default, ...}, ...}; docs: the same shape with strings.
-- An override must name an existing key and have the default's type (an integer
-- default takes only integers). Flags (--resume PATH, --config FILE.lua) are
-- returned in `rest`. A config file is a Lua chunk returning a table of the same shape.
local config = {}

local function copy(t)
    if type(t) ~= "table" or getmetatable(t) then return t end -- sentinels stay themselves
    local c = {}
    for k, v in pairs(t) do c[k] = copy(v) end
    return c
end
config.copy = copy

local function typename(v)
    if math.type(v) == "integer" then return "integer" end
    if v == config.OPTIONAL then return "optional" end
    return type(v)
end

-- A default for a key that may be left unset (nil) or set to a string or number.
config.OPTIONAL = setmetatable({}, {__tostring = function() return "(unset)" end})

local function parse_value(s)
    if s == "true" then return true end
    if s == "false" then return false end
    if s == "nil" or s == "none" then return nil end
    local n = math.tointeger(tonumber(s))
    if n and s:match("^[+-]?%d+$") then return n end
    local f = tonumber(s)
    if f then return f end
    return s
end

-- Sets key path "a.b" in cfg to v, checking against defaults.
local function set(cfg, defaults, path, v, origin)
    local node, def = cfg, defaults
    local parts = {}
    for p in path:gmatch("[^.]+") do parts[#parts + 1] = p end
    for i = 1, #parts - 1 do
        def = type(def) == "table" and def[parts[i]] or nil
        if type(def) ~= "table" or getmetatable(def) then
            error(("config: unknown key '%s' (from %s)"):format(path, origin), 0)
        end
        node = node[parts[i]]
    end
    local key = parts[#parts]
    local d = def[key]
    if d == nil then
        local known = {}
        for k in pairs(def) do known[#known + 1] = k end
        table.sort(known)
        error(("config: unknown key '%s' (from %s); known keys here: %s"):format(path, origin, table.concat(known, ", ")), 0)
    end
    local want, got = typename(d), typename(v)
    if want == "table" then error(("config: key '%s' is a section, not a value"):format(path), 0) end
    if want == "optional" then
        if v ~= nil and got ~= "string" and got ~= "integer" and got ~= "number" then
            error(("config: key '%s' takes a string or a number, got %s"):format(path, got), 0)
        end
    elseif not (got == want or (want == "number" and got == "integer")) then
        error(("config: key '%s' must be %s (like its default %s), got %s %s"):format(path, want, tostring(d), got,
              tostring(v)), 0)
    end
    if want == "number" and got == "integer" then v = v + 0.0 end
    node[key] = v
end

-- Applies a nested table of values (e.g. from a config file) over cfg.
local function apply(cfg, defaults, t, prefix, origin)
    for k, v in pairs(t) do
        local path = prefix and (prefix .. "." .. k) or tostring(k)
        if type(v) == "table" then apply(cfg, defaults, v, path, origin)
        else set(cfg, defaults, path, v, origin) end
    end
end

local function strip_optional(t)
    for k, v in pairs(t) do
        if v == config.OPTIONAL then t[k] = nil
        elseif type(v) == "table" then strip_optional(v) end
    end
    return t
end

-- Returns the resolved config and the flags ({resume = PATH, config = FILE}).
function config.parse(defaults, args)
    local cfg = copy(defaults)
    local flags = {}
    args = args or {}
    local i = 1
    while i <= #args do
        local a = args[i]
        if a == "--resume" or a == "--config" then
            if not args[i + 1] then error(("config: %s needs a path"):format(a), 0) end
            flags[a:sub(3)] = args[i + 1]
            if a == "--config" then
                local chunk, err = loadfile(args[i + 1], "t", {})
                if not chunk then error(("config: cannot read %s: %s"):format(args[i + 1], err), 0) end
                local ok, t = pcall(chunk)
                if not ok or type(t) ~= "table" then
                    error(("config: %s must return a table (%s)"):format(args[i + 1], tostring(t)), 0)
                end
                apply(cfg, defaults, t, nil, args[i + 1])
            end
            i = i + 2
        elseif a == "--help" or a == "-h" then
            flags.help = true
            i = i + 1
        else
            local k, v = a:match("^([%w_%.]+)=(.*)$")
            if not k then error(("config: cannot read argument '%s' (want key=value, --resume PATH or --config FILE)"):format(a), 0) end
            set(cfg, defaults, k, parse_value(v), "the command line")
            i = i + 1
        end
    end
    return strip_optional(cfg), flags
end

-- Sets a resolved config back from a plain table (e.g. a checkpoint's config).
function config.merge(defaults, t)
    local cfg = copy(defaults)
    apply(cfg, defaults, t, nil, "the checkpoint")
    return strip_optional(cfg)
end

-- Text listing every key, its default and its doc line.
function config.help(defaults, docs, prefix)
    local lines = {}
    local function walk(d, doc, p)
        local keys = {}
        for k in pairs(d) do keys[#keys + 1] = k end
        table.sort(keys)
        for _, k in ipairs(keys) do
            local path = p and (p .. "." .. k) or k
            if type(d[k]) == "table" and not getmetatable(d[k]) then walk(d[k], doc and doc[k] or {}, path)
            else lines[#lines + 1] = ("  %-24s %-12s %s"):format(path, tostring(d[k]), doc and doc[k] or "") end
        end
    end
    walk(defaults, docs, prefix)
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

return config
