-- blt.kindfile: a model kind defined in one Lua file named on the command line
-- (model.file=PATH, experiments/train_model.lua), whose checkpoints carry its source and
-- hash (model.file_source, model.file_hash) so that generate, evaluate, inspect and
-- blt.models.load rebuild it without the file (docs/extending.md, "A kind from a file").
--
-- Code from a checkpoint is code execution, so the file runs in a sandbox, when it is
-- read and at every call into it:
--   * its globals are pure functions (those of a scheme file, blt.schemes) plus
--     setmetatable (no __gc: a finalizer would run outside the sandbox), getmetatable of
--     tables, rawget/rawset and a pcall that does not catch (a caught error would let it
--     outlive its instruction budget);
--   * require gives only kindfile.MODULES, each loaded from its file inside the same
--     sandbox, and "blt.core" is a view of the C core holding the functions of
--     kindfile.CORE_GROUPS (tensors, ops, generators, layer steps, scopes, patch
--     kernels: chosen by the binding file that registers them, core.groups) and
--     kindfile.CORE_RUNTIME; no file, folder, process, HDF5, corpus or MPI function;
--   * each call from the framework into the kind (its functions, its model's methods,
--     a field read through an object) runs under config.sandboxed: kindfile.BUDGET
--     instructions and kindfile.HEAP bytes of Lua heap growth;
--   * what crosses the boundary is copied: tables into the kind are copied without
--     metatables or functions (a tensor stays a tensor); tables out are copied, objects
--     with a metatable come out as proxies whose fields and methods run in the sandbox.
-- An error or a breach ends the call as a user error (status 2): "model kind K: ...".
local config = require "blt.config"
local core = require "blt.core"
local util = require "blt.util"

local kindfile = {}

kindfile.BUDGET = 1e8       -- instructions one call into the kind may run
kindfile.HEAP = 256 << 20   -- bytes its Lua heap may grow by during one call
kindfile.MODULES = {"blt", "blt.nn", "blt.ids", "blt.flops", "blt.util", "blt.models"}
kindfile.CORE_GROUPS = {tensor = true, generator = true, nn = true, scope = true, patch = true}
kindfile.CORE_RUNTIME = {token_ids = true, precision = true, threads = true, hash_tensor = true, now = true}
-- the keys a file kind's model section gets: the path given, and what the run stores
kindfile.KEYS = {file = "the Lua file defining the model kind (experiments/train_model.lua model.file=PATH)",
                 file_source = "the kind file's source (written by the run: the checkpoint carries it)",
                 file_hash = "its hash (written by the run)"}

--- kindfile.core_view() -> the part of blt.core a kind may use (a new table).
function kindfile.core_view()
    local view = {}
    for name, v in pairs(core) do
        if kindfile.allowed(name) then view[name] = v end
    end
    -- a left-out name says so (a name core does not have is nil, as usual)
    return setmetatable(view, {__index = function(_, name)
        if core[name] ~= nil then
            error(("blt.core.%s is not available to a model kind (it is in the core's '%s' group: "
                .. "a kind gets tensors and ops, no files, folders or processes)"):format(name, tostring(core.groups[name])), 2)
        end
    end})
end

--- kindfile.allowed(name) -> whether the kind's view of blt.core has core[name].
function kindfile.allowed(name)
    local g = core.groups[name]
    return type(core[name]) == "function" and (kindfile.CORE_GROUPS[g] == true or (g == "runtime" and kindfile.CORE_RUNTIME[name] == true))
end

local function message(e) -- an error value as text, without running a metamethod of the kind's
    if type(e) == "string" or type(e) == "number" then return tostring(e) end
    if type(e) == "table" and type(rawget(e, "msg")) == "string" then return rawget(e, "msg") end
    return "(an error value of type " .. type(e) .. ")"
end

-- ---- the sandbox: one per compiled kind ----

local function environment(modules_src)
    local env = {
        pairs = pairs, ipairs = ipairs, next = next, type = type, tostring = tostring, tonumber = tonumber,
        select = select, error = error, assert = assert, rawlen = rawlen, rawequal = rawequal,
        rawget = rawget, rawset = rawset, math = {}, table = {}, string = {}, utf8 = {},
    }
    for k, v in pairs(math) do env.math[k] = v end
    for _, k in ipairs {"concat", "insert", "remove", "sort", "move", "unpack", "pack"} do env.table[k] = table[k] end
    for k, v in pairs(config.SANDBOX_STRING) do env.string[k] = v end
    for k, v in pairs(utf8) do env.utf8[k] = v end
    env.setmetatable = function(t, mt)
        if type(t) ~= "table" then error("setmetatable: a table expected", 2) end
        if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
            error("setmetatable: __gc is not available to a model kind (a finalizer would run outside its sandbox)", 2)
        end
        return setmetatable(t, mt)
    end
    env.getmetatable = function(t) if type(t) == "table" then return getmetatable(t) end end
    env.pcall = function(f, ...) return true, f(...) end -- errors are not caught: see the header
    local loaded = {["blt.core"] = kindfile.core_view()}
    local allowed = {}
    for _, m in ipairs(kindfile.MODULES) do allowed[m] = true end
    -- the sandbox's require: its own copies of the framework's modules
    local function import_module(name)
        if loaded[name] ~= nil then return loaded[name] end
        if not allowed[name] then
            error(("require '%s': a model kind may require only blt.core, %s"):format(tostring(name),
                table.concat(kindfile.MODULES, ", ")), 2)
        end
        local src = modules_src[name]
        local chunk = assert(load(src.text, "@" .. src.path, "t", env))
        loaded[name] = chunk(name) or true
        return loaded[name]
    end
    env.require = import_module
    return env, import_module
end

-- The framework's modules a kind may require, read on the host (their files are the
-- project's, not the kind's).
local MODULE_SRC
local function module_sources()
    if MODULE_SRC then return MODULE_SRC end
    MODULE_SRC = {}
    for _, name in ipairs(kindfile.MODULES) do
        local path = assert(package.searchpath(name, package.path), name)
        MODULE_SRC[name] = {path = path, text = assert(util.read_file(path))}
    end
    return MODULE_SRC
end

-- ---- the boundary ----

local Box = {} -- one compiled kind: its name, sandbox, proxies
Box.__index = Box

local PROXIED = setmetatable({}, {__mode = "k"}) -- proxy -> the kind's object

-- Runs f(...) in the sandbox (nested calls, from the kind back into the kind, count
-- against the outer call) and returns its results, or raises a user error.
function Box:run(what, f, ...)
    if self.depth > 0 then return f(...) end
    self.depth = 1
    local ok, r = config.sandboxed(function(...) return table.pack(f(...)) end, kindfile.BUDGET, kindfile.HEAP, ...)
    self.depth = 0
    if not ok then util.user_error(("model kind %s: %s: %s"):format(self.name, what, message(r))) end
    return table.unpack(r, 1, r.n)
end

-- A host value going into the kind: tables copied (no metatables, no functions),
-- proxies unwrapped, tensors kept, other userdata and functions left out.
function Box:import(v, seen)
    local t = type(v)
    if t == "table" then
        if PROXIED[v] then return PROXIED[v] end
        seen = seen or {}
        if seen[v] then return seen[v] end
        local out = {}
        seen[v] = out
        for k, x in next, v do
            local ik, ix = self:import(k, seen), self:import(x, seen)
            if ik ~= nil then out[ik] = ix end
        end
        return out
    elseif t == "userdata" then return core.is_tensor(v) and v or nil
    elseif t == "function" then return self.host_fns[v] and v or nil
    end
    return v
end

-- A value coming out of the kind: functions wrapped to run in the sandbox, plain
-- tables copied (at most kindfile.MAX_DEPTH levels deep: the copy recurses on the
-- host), objects (tables with a metatable) behind a proxy.
kindfile.MAX_DEPTH = 100
function Box:export(v, seen, depth)
    local t = type(v)
    if t == "function" then
        local box = self
        return function(...)
            local n, args = select("#", ...), {...}
            for i = 1, n do args[i] = box:import(args[i]) end
            return box:export_all(box:run("a call", v, table.unpack(args, 1, n)))
        end
    elseif t == "table" then
        if getmetatable(v) ~= nil then return self:proxy(v) end
        seen, depth = seen or {}, (depth or 0) + 1
        if seen[v] then return seen[v] end
        if depth > kindfile.MAX_DEPTH then
            util.user_error(("model kind %s: a table it returned nests deeper than %d levels"):format(self.name, kindfile.MAX_DEPTH))
        end
        local out = {}
        seen[v] = out
        for k, x in next, v do out[self:export(k, seen, depth)] = self:export(x, seen, depth) end
        return out
    elseif t == "thread" then return nil
    end
    return v
end

function Box:export_all(...)
    local n, out = select("#", ...), {...}
    for i = 1, n do out[i] = self:export(out[i]) end
    return table.unpack(out, 1, n)
end

function Box:proxy(obj)
    if self.proxies[obj] then return self.proxies[obj] end
    local box = self
    local p = setmetatable({}, {
        __index = function(_, k)
            if type(k) ~= "string" and type(k) ~= "number" then return nil end
            local v = box:run("reading field " .. tostring(k), function() return obj[k] end)
            if type(v) == "function" then
                return function(self_, ...)
                    local n, args = select("#", ...), {...}
                    for i = 1, n do args[i] = box:import(args[i]) end
                    local me = PROXIED[self_] or box:import(self_)
                    return box:export_all(box:run(tostring(k), v, me, table.unpack(args, 1, n)))
                end
            end
            return box:export(v)
        end,
        __newindex = function(_, k, v)
            local iv = box:import(v)
            box:run("setting field " .. tostring(k), function() obj[k] = iv end)
        end,
        __name = "model kind " .. self.name,
    })
    self.proxies[obj] = p
    PROXIED[p] = obj
    return p
end

-- ---- compiling a kind ----

local COMPILED = {} -- by hash and source: a kind is compiled once per process

--- kindfile.hash(source) -> 16 hex digits (as a scheme's, blt.schemes.hash).
function kindfile.hash(src) return require("blt.schemes").hash(src) end

-- The host-side module of a compiled kind: the kind's table through the boundary, with
-- the model section's file keys added, and its functions wrapped.
local function host_module(box, M, src, origin)
    local H = box:export(M)
    local sections = H.sections
    if type(H.kind) ~= "string" or not H.kind:match("^[%a_][%w_]*$") then
        error(("model.file = %s: the kind's table needs kind = a name (letters, digits, _), got %s")
            :format(origin, tostring(H.kind)), 0)
    end
    for _, f in ipairs {"check", "count_params", "build"} do
        if type(H[f]) ~= "function" then error(("model.file = %s: the kind needs a function %s"):format(origin, f), 0) end
    end
    if type(sections) ~= "table" then error(("model.file = %s: the kind needs sections = {...}"):format(origin), 0) end
    if H.setup ~= nil then
        error(("model.file = %s: setup is not available to a kind from a file (it would be given the corpus, "
            .. "a file the sandbox does not open)"):format(origin), 0)
    end
    sections.model = sections.model or {}
    local docs, rules = H.docs or {}, H.rules or {}
    docs.model = docs.model or {}
    for k, doc in pairs(kindfile.KEYS) do
        if sections.model[k] ~= nil then error(("model.file = %s: model.%s is the framework's key"):format(origin, k), 0) end
        sections.model[k], docs.model[k] = "", doc
    end
    local internal = H.internal or {}
    internal["model.file_source"] = "the run stores the kind file's source (give model.file=PATH)"
    internal["model.file_hash"] = "the run stores the kind file's hash (give model.file=PATH)"
    local hash = kindfile.hash(src)
    -- a plain table the framework reads and writes freely; the kind's own fields come
    -- through the proxy
    local K = setmetatable({kind = H.kind, sections = sections, docs = docs, rules = rules, internal = internal,
                            source = src, hash = hash, origin = origin}, {__index = H})
    -- the run's config records the source it ran (a resumed or loaded run's is the same)
    local check = H.check
    function K.check(cfg)
        check(cfg)
        cfg.model = cfg.model or {}
        cfg.model.file_source, cfg.model.file_hash = src, hash
    end
    -- a baseline point of a comparison runs the generic trainer with the file
    if H.point then
        local point = H.point
        function K.point(P, corpus, o, experiment)
            box.host_fns[experiment.flat], box.host_fns[experiment.sized] = true, true
            local r = point(P, nil, o, {flat = experiment.flat, sized = experiment.sized})
            r.script = "experiments/train_model.lua"
            r.args = r.args or {}
            r.args["model.file"] = origin
            return r
        end
    end
    return K
end

--- kindfile.compile(source, origin) -> the kind's module (blt.models.adopt registers it).
function kindfile.compile(src, origin)
    if type(src) ~= "string" then error(("model.file = %s: the source must be a string"):format(origin), 0) end
    local key = kindfile.hash(src) .. "\0" .. src
    if COMPILED[key] then return COMPILED[key] end
    local env, import_module = environment(module_sources())
    local chunk, err = load(src, "=" .. origin, "t", env)
    if not chunk then error(("model.file = %s: %s"):format(origin, err), 0) end
    local box = setmetatable({name = origin, depth = 0, proxies = setmetatable({}, {__mode = "k"}),
                              host_fns = setmetatable({}, {__mode = "k"})}, Box)
    local M = box:run("loading it", function()
        local m = chunk()
        if type(m) == "table" and type(m.kind) == "string" then
            import_module("blt.models").register(m.kind, m) -- the sandbox's registry knows its own kind
        end
        return m
    end)
    if type(M) ~= "table" then error(("model.file = %s: the file must return the kind's table, got %s"):format(origin, type(M)), 0) end
    box.name = tostring(rawget(M, "kind") or origin)
    local K = host_module(box, M, src, origin)
    COMPILED[key] = K
    return K
end

--- kindfile.load(path) -> the kind module of the file at path.
function kindfile.load(path)
    local src, why = util.read_file(path)
    if not src then error(("model.file = %s: cannot read %s"):format(path, why or "it"), 0) end
    return kindfile.compile(src, path)
end

--- kindfile.of_config(cfg [, where]) -> the kind a run's config carries (model.file_source,
-- checked against model.file_hash), or nil when its kind is not from a file.
function kindfile.of_config(cfg, where)
    local m = type(cfg) == "table" and cfg.model
    local src = type(m) == "table" and m.file_source
    if type(src) ~= "string" or src == "" then return nil end
    if kindfile.hash(src) ~= m.file_hash then
        error(("%smodel.file_source: its hash is %s, the config says %s (the source was changed)")
            :format(where and where .. ": " or "", kindfile.hash(src), tostring(m.file_hash)), 0)
    end
    return kindfile.compile(src, type(m.file) == "string" and m.file ~= "" and m.file or "model.file")
end

--- kindfile.script_kind(args) -> the kind of a training command line (not registered): its
-- model.file=PATH, or the kind its --resume checkpoint carries; nil when it has neither.
function kindfile.script_kind(args)
    local path, resume
    for i, a in ipairs(args or {}) do
        if type(a) == "string" then
            path = a:match("^model%.file=(.*)$") or path
            resume = a:match("^%-%-resume=(.*)$") or (a == "--resume" and args[i + 1]) or resume
        end
    end
    if resume then
        local run = require("blt.checkpoint").load(resume)
        local K = kindfile.of_config(run.config, resume)
        if not K then error(("--resume %s: its kind is not from a file (train it with its own script)"):format(resume), 0) end
        if path and kindfile.hash(util.read_file(path) or "") ~= K.hash then
            error(("model.file = %s differs from the kind %s was trained with"):format(path, resume), 0)
        end
        return K
    end
    if path then return kindfile.load(path) end
end

return kindfile
