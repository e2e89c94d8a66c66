-- blt.util: the option-table checks every module shares, so that every
-- `unknown option` error reads the same and lists the known keys; and the two file
-- helpers the scripts share (a whole file's bytes; whether a path exists).
local util = {}

-- A default meaning "absent": options() turns it into nil.
util.NONE = setmetatable({}, {__tostring = function() return "none" end})

local function sorted(keys)
    table.sort(keys)
    return table.concat(keys, ", ")
end

-- Raises "<where>: unknown option 'k' (known: a, b)" for a key not in known
-- (a list of names or a set). level: as for error(), counted from the caller.
function util.check_keys(where, opts, known, level)
    level = (level or 1) + 1
    if opts == nil then return {} end
    if type(opts) ~= "table" then error(("%s: options must be a table, got %s"):format(where, type(opts)), level) end
    local set, names = {}, {}
    if #known > 0 then
        for _, k in ipairs(known) do set[k] = true; names[#names + 1] = k end
    else
        for k in pairs(known) do set[k] = true; names[#names + 1] = k end
    end
    for k in pairs(opts) do
        if not set[k] then
            error(("%s: unknown option '%s' (known: %s)"):format(where, tostring(k), sorted(names)), level)
        end
    end
    return opts
end

-- Checks keys against defaults (plus required), fills defaults, checks that every
-- required key is given, and drops util.NONE defaults. Returns a new table.
function util.options(where, opts, defaults, required, level)
    level = (level or 1) + 1
    local known = {}
    for k in pairs(defaults) do known[k] = true end
    for k in pairs(required or {}) do known[k] = true end
    util.check_keys(where, opts, known, level)
    local o = {}
    for k, v in pairs(defaults) do o[k] = v end
    for k, v in pairs(opts or {}) do o[k] = v end
    for k in pairs(required or {}) do
        if o[k] == nil then error(("%s: option '%s' is required"):format(where, k), level) end
    end
    for k, v in pairs(o) do if v == util.NONE then o[k] = nil end end
    return o
end

-- The bytes of a file, or nil when it cannot be opened.
function util.read_file(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("a")
    f:close()
    return s
end

-- Whether path is a file that can be opened or a folder that can be listed.
function util.exists(path)
    local f = io.open(path, "rb")
    if f then f:close() return true end
    return require("blt.core").listdir(path) ~= nil
end

return util
