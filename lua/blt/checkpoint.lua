-- Checkpoints (docs/model.md, docs/checkpoint-format.md) and metrics files.
--   local checkpoint = require "blt.checkpoint"
--   checkpoint.save(path, run)
--   run = checkpoint.load(path [, {expect = {[name] = shape}, finite = true}])
--   local m = checkpoint.Metrics(path, {flush_every = 10}); m:log{step = 1, loss = 2.5}; m:close()
--
-- run = {
--   config = {...},                 -- the resolved configuration, stored as config_json
--   step = 1200,                    -- integer
--   params = {[name] = tensor},     -- float32, PyTorch order ([out, in] for a linear map)
--   optim = {step = 1200, kind = "AdamW", m = {[name] = tensor}, v = {[name] = tensor}, ...},  -- optional
--   state = {rng = {"0123456789abcdef", ... (4)}, step = 1200, ...},                           -- optional
-- }
-- Moments (optim.m, optim.v) are stored with their parameter's shape (a flat slice
-- of the right size, as blt.optim's state() gives, is reshaped) and load that way.
-- Every file starts with a checksum header that load checks before HDF5 parses the
-- file; load then checks every value a resumed run trusts (docs/checkpoint-format.md).
-- optim and state are flat tables: a tensor is a dataset, an integer an int64 scalar,
-- a float a float64 scalar, an array of integers (or floats) a 1-d int64 (float64)
-- dataset, an array of 16-digit hex strings (RNG states) a uint64 dataset, any other
-- string an attribute of the group, and a table of tensors (optim.m, optim.v) a
-- subgroup. Saving is atomic: the file is written beside path and renamed over it.
local blt = require "blt.core" -- not "blt": blt -> flops -> models.blt -> entropy -> checkpoint -> blt was a require cycle
local json = require "blt.json"

local checkpoint = {}
checkpoint.FORMAT = "blt-checkpoint"
checkpoint.FORMAT_VERSION = 1

-- "checkpoint.lua:12: blt.h5_read: msg" -> "msg" (position and C function name)
local function strip(err)
    err = tostring(err)
    err = err:gsub("^[^\n]-:%d+: ", "", 1)
    err = err:gsub("^blt%.[%w_:]+: ", "", 1)
    return err
end

local function sorted_keys(t)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    return keys
end

local function check_name(what, name)
    if type(name) ~= "string" or name == "" or name:find("/", 1, true) or name == "." or name == ".." then
        error(("checkpoint.save: %s name %s is not a valid dataset name (non-empty string without '/')")
            :format(what, tostring(name)), 0)
    end
end

local function is_hex64(v) return type(v) == "string" and #v == 16 and v:match("^%x+$") ~= nil end

-- What a value of a flat group becomes: "tensor", "int", "float", "ints", "floats",
-- "hex", "string", "group" (a table of tensors), or nil with a reason.
local function classify(v)
    local t = type(v)
    if blt.is_tensor(v) then return "tensor" end
    if t == "number" then return math.type(v) == "integer" and "int" or "float" end
    if t == "string" then return "string" end
    if t ~= "table" then return nil, "a " .. t end
    local n = #v
    if n > 0 then
        local count = 0
        for _ in pairs(v) do count = count + 1 end
        if count == n then
            local ints, floats, hex = 0, 0, 0
            for i = 1, n do
                local x = v[i]
                if is_hex64(x) then hex = hex + 1
                elseif math.type(x) == "integer" then ints = ints + 1
                elseif math.type(x) == "float" then floats = floats + 1
                else return nil, "an array holding a " .. type(x) .. " at entry " .. i end
            end
            if hex == n then return "hex" end
            if hex > 0 then return nil, "an array mixing hex strings and numbers" end
            return floats > 0 and "floats" or "ints"
        end
    end
    for k, x in pairs(v) do
        if type(k) ~= "string" or not blt.is_tensor(x) then
            return nil, "a table that is neither an array of numbers or hex strings nor a table of tensors"
        end
    end
    return "group"
end

-- Optimiser moments (optim.m, optim.v...) come from a flat buffer (blt.optim's
-- state()): each is stored with its parameter's shape, as the format says.
local function shape_moments(run)
    if type(run.optim) ~= "table" then return run.optim end
    local out = {}
    for k, v in pairs(run.optim) do
        if type(v) == "table" and classify(v) == "group" then
            local sub = {}
            for name, t in pairs(v) do
                local p = run.params[name]
                if not p then
                    error(("checkpoint.save: optim.%s.%s has no parameter of that name in run.params"):format(k, name), 0)
                end
                if t:numel() ~= p:numel() then
                    error(("checkpoint.save: optim.%s.%s has %d elements, parameter %s has %d"):format(
                        k, name, t:numel(), name, p:numel()), 0)
                end
                sub[name] = t:contiguous():reshape(p:shape())
            end
            out[k] = sub
        else
            out[k] = v
        end
    end
    return out
end

local function write_flat(f, group, tbl, what)
    for _, k in ipairs(sorted_keys(tbl)) do
        check_name(what, k)
        local v = tbl[k]
        local kind, why = classify(v)
        local p = group .. "/" .. k
        if not kind then
            error(("checkpoint.save: %s.%s is %s, which a checkpoint cannot hold"):format(what, k, why), 0)
        elseif kind == "tensor" then f:write(p, v)
        elseif kind == "int" or kind == "ints" then f:write(p, v, "int64")
        elseif kind == "float" or kind == "floats" then f:write(p, v, "float64")
        elseif kind == "hex" then
            local bits = {}
            for i, h in ipairs(v) do bits[i] = math.tointeger(tonumber(h, 16)) end
            f:write(p, bits, "uint64")
        elseif kind == "string" then f:set_attr(k, v, group)
        else -- a table of tensors
            local names = sorted_keys(v)
            if #names == 0 then f:set_attr("kind", "tensors", p) end
            for _, name in ipairs(names) do
                check_name(what .. "." .. k, name)
                f:write(p .. "/" .. name, v[name])
            end
        end
    end
end

local function check_run(path, run)
    if type(path) ~= "string" or path == "" then error("checkpoint.save: path must be a non-empty string", 3) end
    if path:find("\0", 1, true) then error("checkpoint.save: path contains a NUL byte", 3) end -- C would cut it
    if type(run) ~= "table" then error("checkpoint.save: run must be a table", 3) end
    if type(run.params) ~= "table" then error("checkpoint.save: run.params must be a table {[name] = tensor}", 3) end
    if run.step ~= nil and math.type(run.step) ~= "integer" then
        error("checkpoint.save: run.step must be an integer", 3)
    end
    for name, t in pairs(run.params) do
        check_name("parameter", name)
        if not blt.is_tensor(t) or t:dtype() ~= "float32" then
            error(("checkpoint.save: parameter %s must be a float32 tensor"):format(name), 3)
        end
    end
    for _, g in ipairs {"optim", "state"} do
        if run[g] ~= nil and type(run[g]) ~= "table" then error(("checkpoint.save: run.%s must be a table"):format(g), 3) end
    end
end

function checkpoint.save(path, run)
    check_run(path, run)
    local config_json = json.encode(run.config or {})
    local bytes = 0
    local function count(t) if blt.is_tensor(t) then bytes = bytes + 4 * t:numel() end end
    for _, t in pairs(run.params) do count(t) end
    for _, g in ipairs {"optim", "state"} do
        for _, v in pairs(run[g] or {}) do
            count(v)
            if type(v) == "table" then for _, t in pairs(v) do count(t) end end
        end
    end
    local f = blt.h5_create(path, bytes + 65536 + #config_json)
    local ok, err = pcall(function()
        f:set_attr("format", checkpoint.FORMAT)
        f:set_attr("format_version", checkpoint.FORMAT_VERSION)
        f:set_attr("config_json", config_json)
        f:set_attr("step", run.step or 0)
        -- groups exist even when empty, so a reader finds the layout it expects
        f:set_attr("kind", "parameters", "/params")
        for _, name in ipairs(sorted_keys(run.params)) do f:write("/params/" .. name, run.params[name]) end
        if run.optim then write_flat(f, "/optim", shape_moments(run), "optim") end
        if run.state then write_flat(f, "/state", run.state, "state") end
        f:commit()
    end)
    if not ok then
        f:abort() -- removes the temporary file; the previous checkpoint is untouched
        err = strip(err)
        if not err:find(path, 1, true) then err = path .. ": " .. err end
        error("checkpoint.save: " .. err, 2)
    end
end

-- ---- loading ----

local function shape_str(s) return "[" .. table.concat(s, ",") .. "]" end

local function numel(shape)
    local n = 1
    for _, d in ipairs(shape) do n = n * d end
    return n
end

-- params: the loaded parameters; a subgroup of /optim holds one moment per
-- parameter, with its shape (files written before moments were shaped hold them
-- flat: those are read and reshaped).
local function read_flat(f, path, group, finite, params)
    local names, kinds, exists = f:list(group)
    if not exists then return nil end
    local out = {}
    for _, name in ipairs(names) do
        local p = group .. "/" .. name
        if kinds[name] == "group" then
            local sub = {}
            local inner, ikinds = f:list(p)
            for _, n in ipairs(inner) do
                local q = p .. "/" .. n
                if ikinds[n] ~= "dataset" then
                    error(("%s: %s is not a dataset"):format(path, q), 0)
                end
                if params then
                    local owner = params[n]
                    if not owner then error(("%s: %s has no parameter /params/%s"):format(path, q, n), 0) end
                    local want = owner:shape()
                    local info = f:info(q)
                    if info.dtype ~= "float32" then
                        error(("%s: %s is %s, expected float32"):format(path, q, info.dtype), 0)
                    end
                    if #info.shape == 1 and #want ~= 1 and info.shape[1] == numel(want) then
                        sub[n] = f:read(q, {shape = info.shape, finite = finite}):reshape(want)
                    else
                        sub[n] = f:read(q, {shape = want, finite = finite})
                    end
                else
                    sub[n] = f:read(q, {finite = finite})
                end
            end
            out[name] = sub
        elseif kinds[name] == "dataset" then
            local info = f:info(p)
            if info.dtype == "uint64" then
                local bits = f:read(p)
                if type(bits) == "table" then
                    local hex = {}
                    for i, b in ipairs(bits) do hex[i] = ("%016x"):format(b) end
                    out[name] = hex
                else
                    out[name] = ("%016x"):format(bits)
                end
            else
                out[name] = f:read(p, {finite = finite})
            end
        end
    end
    -- every attribute of /optim and /state is a value (optim.kind = "AdamW"); the
    -- "kind" marker of an empty table of tensors sits on the subgroup itself
    for k, v in pairs(f:attrs(group)) do
        if out[k] == nil then out[k] = v end
    end
    return out
end

checkpoint.MAX_STEP = 1e12 -- a step count beyond this is damage, not training
checkpoint.OPTIMIZERS = {AdamW = {"m", "v"}, SGD = {"m"}} -- kind -> its moments

-- Every value a resumed run will trust, checked after reading (a checksum only
-- proves the file is the one written; these catch a writer's bug or a crafted file).
local function check_values(path, run)
    local function bad(fmt, ...) error(path .. ": " .. fmt:format(...), 0) end
    if run.step < 0 or run.step > checkpoint.MAX_STEP then
        bad("root attribute step = %d is out of range (0..%.0f)", run.step, checkpoint.MAX_STEP)
    end
    if type(run.config) ~= "table" then bad("root attribute config_json is not a JSON object") end
    local st = run.state
    if st and st.rng ~= nil then
        local rng = st.rng
        if type(rng) ~= "table" or #rng ~= 4 then
            bad("/state/rng must be 4 uint64 values (a xoshiro256** state), found %s",
                type(rng) == "table" and (#rng .. " values") or type(rng))
        end
        if table.concat(rng) == ("0"):rep(64) then bad("/state/rng is all zeros (not a valid xoshiro256** state)") end
    end
    if st and st.step ~= nil and (math.type(st.step) ~= "integer" or st.step < 0 or st.step > checkpoint.MAX_STEP) then
        bad("/state/step = %s is out of range (an integer in 0..%.0f)", tostring(st.step), checkpoint.MAX_STEP)
    end
    local o = run.optim
    if not o then return end
    if o.step ~= nil then
        if math.type(o.step) ~= "integer" then bad("/optim/step is not an integer") end
        if o.step < 0 or o.step > run.step then
            bad("/optim/step = %d is inconsistent with step %d (must be in 0..%d)", o.step, run.step, run.step)
        end
    end
    -- parameters stored but not trained (a BLT's entropy model) have no moments
    local prefixes = {}
    if o.frozen ~= nil then
        if type(o.frozen) ~= "string" then bad("/optim attribute frozen is not a string") end
        for p in o.frozen:gmatch("[^,]+") do prefixes[#prefixes + 1] = p .. "." end
    end
    local function frozen(name)
        for _, p in ipairs(prefixes) do if name:sub(1, #p) == p then return true end end
        return false
    end
    local moments
    if o.kind ~= nil then
        moments = checkpoint.OPTIMIZERS[o.kind]
        if not moments then
            local known = {}
            for k in pairs(checkpoint.OPTIMIZERS) do known[#known + 1] = k end
            table.sort(known)
            bad("/optim attribute kind = %q is not a known optimiser (%s)", tostring(o.kind), table.concat(known, ", "))
        end
        for _, key in ipairs(moments) do
            local m = o[key]
            if type(m) ~= "table" then bad("/optim/%s is missing (needed by %s)", key, o.kind) end
            for name in pairs(run.params) do
                if not m[name] and not frozen(name) then
                    bad("/optim/%s/%s is missing (%s keeps one per trained parameter)", key, name, o.kind)
                end
            end
        end
        if o.kind == "AdamW" then -- second moments are averages of squares
            for name, t in pairs(o.v) do
                if blt.sub(t, blt.relu(t)):sum():item() < 0 then bad("/optim/v/%s holds a negative value", name) end
            end
        end
    end
end

local function load(f, path, opts)
    local fmt = f:attr("format")
    if fmt ~= checkpoint.FORMAT then
        error(("%s is not a BLT checkpoint (root attribute format = %s, expected %q)"):format(
            path, fmt == nil and "missing" or ("%q"):format(tostring(fmt)), checkpoint.FORMAT), 0)
    end
    local version = f:attr("format_version")
    if math.type(version) ~= "integer" then
        error(("%s: root attribute format_version is missing or not an integer"):format(path), 0)
    end
    if version > checkpoint.FORMAT_VERSION then
        error(("%s has format_version %d, newer than this framework reads (%d): update the framework")
            :format(path, version, checkpoint.FORMAT_VERSION), 0)
    end
    if version < 1 then error(("%s: format_version %d is not valid"):format(path, version), 0) end
    local cj = f:attr("config_json")
    if type(cj) ~= "string" then error(("%s: root attribute config_json is missing or not a string"):format(path), 0) end
    local okj, config = pcall(json.decode, cj)
    if not okj then error(("%s: root attribute config_json: %s"):format(path, config), 0) end
    local step = f:attr("step")
    if math.type(step) ~= "integer" then error(("%s: root attribute step is missing or not an integer"):format(path), 0) end
    local finite = opts.finite ~= false
    local run = {config = config, step = step, format_version = version, params = {}, verified = f:sealed()}

    local names, kinds, exists = f:list("/params")
    if not exists then error(("%s: no /params group"):format(path), 0) end
    local expect = opts.expect
    if expect then
        for _, name in ipairs(sorted_keys(expect)) do
            if kinds[name] ~= "dataset" then
                error(("%s: missing parameter dataset /params/%s (expected shape %s)"):format(
                    path, name, shape_str(expect[name])), 0)
            end
        end
    end
    for _, name in ipairs(names) do
        if kinds[name] == "other" then -- a soft or external link, a named type: refused
            f:info("/params/" .. name)
            error(("%s: /params/%s is not a dataset"):format(path, name), 0)
        elseif kinds[name] == "dataset" then
            local p = "/params/" .. name
            local info = f:info(p)
            if info.dtype ~= "float32" then
                error(("%s: parameter dataset %s is %s, expected float32"):format(path, p, info.dtype), 0)
            end
            if expect and expect[name] == nil and opts.strict then
                error(("%s: unexpected parameter dataset %s %s"):format(path, p, shape_str(info.shape)), 0)
            end
            run.params[name] = f:read(p, {shape = expect and expect[name] or nil, finite = finite})
        end
    end
    run.optim = read_flat(f, path, "/optim", finite, run.params)
    run.state = read_flat(f, path, "/state", finite, nil)
    check_values(path, run)
    return run
end

-- opts: expect = {[name] = shape} (each must be present with that shape),
-- strict = true (no parameter beyond expect), finite = false (allow NaN/Inf),
-- unverified = true (accept a file without the checksum header: older checkpoints,
-- files written by h5py; the other checks still apply, but damage to such a file
-- may reach HDF5's parser, which does not survive every damaged file).
-- run.verified tells whether the file's checksum was checked.
function checkpoint.load(path, opts)
    opts = opts or {}
    if type(path) ~= "string" then error("checkpoint.load: path must be a string", 2) end
    if path:find("\0", 1, true) then error("checkpoint.load: path contains a NUL byte", 2) end -- C would cut it
    local ok, f = pcall(blt.h5_open, path, {checksum = not opts.unverified})
    if not ok then
        local err = strip(f)
        if err:find("has no checksum header", 1, true) then
            err = err .. "; checkpoint.load(path, {unverified = true}) loads it with the remaining checks"
        end
        error("checkpoint.load: " .. err, 2)
    end
    local ok2, res = pcall(load, f, path, opts)
    f:close()
    if not ok2 then
        res = strip(res)
        if not res:find(path, 1, true) then res = path .. ": " .. res end
        error("checkpoint.load: " .. res, 2)
    end
    return res
end

-- Shapes of a parameter table, for load's expect option.
function checkpoint.shapes(params)
    local out = {}
    for k, t in pairs(params) do out[k] = t:shape() end
    return out
end

-- checkpoint.load_into(model, run, {prefix =, strict = true, path =}): copies a loaded
-- checkpoint's tensors (run = checkpoint.load's table) into model:state_list() (prefix:
-- only the names under "<prefix>."; strict: no tensor of the checkpoint may be left over).
-- Every name must be there with the model's shape; the first mismatch is named.
function checkpoint.load_into(model, run, opts)
    opts = opts or {}
    local path = opts.path or "checkpoint"
    local list = model.state_list and model:state_list() or model:parameter_list()
    local function shape(x) return "[" .. table.concat(x:shape(), ",") .. "]" end
    local prefix = opts.prefix and (opts.prefix .. ".") or ""
    local used = {}
    for _, p in ipairs(list) do
        local name = prefix .. p.name
        local src = run.params[name]
        if not src then error(("%s: missing parameter %s %s"):format(path, name, shape(p.tensor)), 0) end
        if shape(src) ~= shape(p.tensor) then
            error(("%s: parameter %s is %s in the checkpoint, %s in the model"):format(path, name, shape(src),
                  shape(p.tensor)), 0)
        end
        p.tensor:copy(src)
        used[name] = true
    end
    if opts.strict ~= false then
        local extra = {}
        for name in pairs(run.params) do
            if not used[name] and name:sub(1, #prefix) == prefix then extra[#extra + 1] = name end
        end
        table.sort(extra)
        if #extra > 0 then error(("%s: parameter %s is not in this model"):format(path, extra[1]), 0) end
    end
end

-- ---- metrics ----

local Metrics = {}
Metrics.__index = Metrics

-- A per-run file of float64 columns, one row per log; flushed (and readable by
-- h5dump or h5py) every flush_every rows and at close. append = true keeps an
-- existing file's rows (resuming a run).
function checkpoint.Metrics(path, opts)
    opts = opts or {}
    local self = setmetatable({}, Metrics)
    self.h = blt.h5_metrics(path, {flush_every = opts.flush_every or 10, append = opts.append, units = opts.units})
    self.path = path
    return self
end

function Metrics:log(row) self.h:log(row) end
function Metrics:flush() self.h:flush() end
-- Attributes of the file's root group (numbers, booleans as 0/1, strings): a run's result.
function Metrics:annotate(t) self.h:annotate(t) end
function Metrics:rows() return self.h:rows() end
-- Keeps the first n rows (a resumed run drops the rows it is about to log again).
function Metrics:truncate(n) self.h:truncate(n) end
function Metrics:close() self.h:close() end
Metrics.__close = Metrics.close

-- Every column of a metrics file, {name = {values...}} (a file of one row reads as lists
-- of one); raises "checkpoint.read_metrics: <path>: ..." for a file it cannot read. The
-- one reader of metrics files (train.history, the sweeps, plot_runs.lua).
function checkpoint.read_metrics(path)
    local ok, f = pcall(blt.h5_open, path)
    if not ok then error(("checkpoint.read_metrics: %s: %s"):format(path, strip(f)), 2) end
    local okr, cols = pcall(function()
        local out = {}
        local names, kinds = f:list("/")
        for _, name in ipairs(names or {}) do
            local v = kinds[name] == "dataset" and f:read("/" .. name) or nil
            if type(v) == "table" then out[name] = v elseif type(v) == "number" then out[name] = {v} end
        end
        return out
    end)
    f:close()
    if not okr then error(("checkpoint.read_metrics: %s: %s"):format(path, strip(cols)), 2) end
    return cols
end

return checkpoint
