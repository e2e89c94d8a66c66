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

-- Opens a file a user named, for reading: a regular file only. io.open of a FIFO would
-- wait for a writer forever, and a folder or a device is no file to read either.
-- Returns the handle, or nil and "path: reason".
function util.open_read(path)
    local kind, err = require("blt.core").file_kind(path)
    if not kind then return nil, err end
    if kind ~= "file" then return nil, ("%s: is a %s, not a regular file"):format(path, kind) end
    return io.open(path, "rb")
end

-- The bytes of a file, or nil and the reason when it cannot be read (see open_read).
function util.read_file(path)
    local f, err = util.open_read(path)
    if not f then return nil, err end
    local s = f:read("a")
    f:close()
    return s
end

-- Whether path is a file that can be opened or a folder that can be listed (something
-- else that exists, a FIFO say, counts without being opened).
function util.exists(path)
    local core = require "blt.core"
    local kind = core.file_kind(path)
    if kind == "file" then
        local f = io.open(path, "rb")
        if f then f:close() return true end
        return false
    end
    if kind == "folder" then return core.listdir(path) ~= nil end
    return kind ~= nil
end

-- ---- user errors: one clear line and status 2 (config.script, the training scripts) ----

-- Positions Lua's error() puts before a message raised inside the framework
-- ("lua/blt/x.lua:12: ", "/abs/scripts/y.lua:3: "): they say nothing to a user. A
-- user's own file (a --config file) keeps its position.
local POSITIONS = {"[^%s:]*lua/blt/[%w_/]+%.lua:%d+: ", "[^%s:]*scripts/[%w_]+%.lua:%d+: ",
                   "[^%s:]*experiments/[%w_]+%.lua:%d+: "}

-- The text of an error for a user: {msg = ...} tables give their msg; the framework's
-- positions are removed.
function util.message(err)
    if type(err) == "table" and err.msg ~= nil then err = err.msg end
    local s = tostring(err)
    for _, p in ipairs(POSITIONS) do s = s:gsub(p, "") end
    return s
end

-- "what: message", with what left out when the message starts with it already (a path).
function util.about(what, err)
    local m = util.message(err)
    if m:sub(1, #what + 2) == what .. ": " then return m end
    return what .. ": " .. m
end

-- A mistake in the user's input or folders, worded for them: raised as an error that
-- pcall sees like any other (tostring gives the message), and that ends a script with
-- exit status `status` (default 2) and the message alone, no traceback (core/main.c).
util.UserError = {__tostring = function(e) return e.msg end}
function util.user_error(msg, status)
    error(setmetatable({msg = tostring(msg), exit_status = status or 2}, util.UserError), 0)
end

-- Reports a user's mistake as "name: message" on stderr and exits with status 2.
function util.die(name, err)
    util.user_error(name .. ": " .. util.message(err))
end

return util
