-- blt.models: the registry of model kinds. A kind maps to a module that the
-- trainer, evaluation and loading use without knowing which model it is:
--
--   M.kind                       "bytelm", "blt", "bpe_lm", ...
--   M.sections                   config sections it adds, with their defaults ({model = {...}, ...})
--   M.docs, M.rules              doc strings and rules (blt.config) of those sections
--   M.check(cfg)                 raises "<key> ..." for shapes that do not fit together
--   M.count_params(cfg, frozen)  parameters (with frozen ones when frozen), without building the model
--   M.setup(cfg, corpus, log)    optional: work before a new run builds its model (calibration)
--   M.build(cfg, seed, source)   the model; source = a loaded checkpoint when resuming or
--                                loading (frozen parts, such as an entropy model, come from it)
--   M.flops(cfg, opts)           optional: FLOPs per byte of a run config (blt.flops.of, docs/flops.md)
--   M.model_flops(m, opts)       optional: the same on a model section (blt.flops.<kind>)
--   M.scaled_params(cfg)         optional: parameters that scale with the model (all but the
--                                embedding tables; cfg has the sections' defaults filled in)
--   M.sweep                      optional: how the comparisons run it as a baseline:
--                                {word = "bytelm", family = "bytelm", script = "experiments/..."}
--   M.point(P, corpus, o, ex)    with M.sweep: its point in a comparison (blt.experiment.model_point;
--                                ex = blt.experiment, for its helpers ex.sized, ex.flat)
--   M.presets, M.preset_key      optional: the model part of each budget, P[M.preset_key]:
--                                {compare = {smoke =, small =, full =}, scaling = {...}}
--   M.mean_patch                 optional: bytes per position when fixed (1 for a byte model)
-- A kind is found by name: a registered one, or the module blt.models.<kind> (one file
-- lua/blt/models/<kind>.lua whose M.kind is <kind>), so a new kind is one new file.
-- and the model it builds:
--   model:parameter_list()       the trained parameters (the optimiser's)
--   model:state_list()           everything a checkpoint holds (trained and frozen)
--   model:prepare(rows)          the work without gradients (patches, entropies, hash ids)
--   model:loss(rows [, "sum"])   mean (or summed) next-byte loss in nats over non-pad targets
-- models.nats(model, rows) gives the summed nats and the count of predicted bytes, so
-- bits per byte is computed one way for every model.
local core = require "blt.core"
local ids = require "blt.ids"

local models = {}

local KINDS = {bytelm = "blt.models.bytelm", blt = "blt.models.blt", bpe_lm = "blt.models.bpe_lm"}

-- The kinds of one file: blt/models/<kind>.lua in any folder of package.path (the
-- project's lua/, or a folder added with LUA_PATH), by name.
local function kind_files()
    local out = {}
    for tmpl in package.path:gmatch("[^;]+") do
        local dir = tmpl:gsub("%?", "blt/models/\1"):match("^(.-)\1")
        for _, name in ipairs(dir and core.listdir(dir) or {}) do
            local k = name:match("^([%a_][%w_]*)%.lua$")
            if k and k ~= "init" and package.searchpath("blt.models." .. k, package.path) then out[k] = true end
        end
    end
    return out
end

function models.kinds()
    local seen = kind_files()
    for k in pairs(KINDS) do seen[k] = true end
    local out = {}
    for k in pairs(seen) do out[#out + 1] = k end
    table.sort(out)
    return out
end

-- Adds a kind: a module name (required on first use) or a module table.
function models.register(kind, module)
    if type(kind) ~= "string" or kind == "" then error("blt.models.register: kind must be a non-empty string", 2) end
    KINDS[kind] = module
end

-- Registers a kind compiled from a file (blt.kindfile: model.file=PATH, a checkpoint's
-- model.file_source) under its name; a name that is already another kind's is refused.
function models.adopt(K)
    local okg, known = pcall(models.get, K.kind)
    if okg and known ~= K then
        error(("model.file = %s: kind '%s' is already a kind (built in, on the Lua path or another file): "
            .. "give yours another name"):format(K.origin, K.kind), 0)
    end
    KINDS[K.kind] = K
    return K
end

function models.get(kind)
    local m = KINDS[kind]
    if m == nil and type(kind) == "string" and kind:match("^[%a_][%w_]*$") and kind ~= "init"
       and package.searchpath("blt.models." .. kind, package.path) then
        m = "blt.models." .. kind -- a kind of one file, found by its name
    end
    if m == nil then
        error(("blt.models: unknown kind '%s' (known: %s)"):format(tostring(kind), table.concat(models.kinds(), ", ")), 2)
    end
    if type(m) == "string" then
        local name = m
        local okr, mod = pcall(require, name)
        if not okr then error(("blt.models: kind '%s' does not load: %s"):format(kind, tostring(mod)), 2) end
        m = mod
        if type(m) ~= "table" or m.kind ~= kind then
            error(("blt.models: module %s is not the kind '%s' (its table's kind is %s)")
                  :format(name, kind, type(m) == "table" and tostring(m.kind) or type(m)), 2)
        end
        KINDS[kind] = m
    end
    return m
end

-- The number of predicted targets of rows int32 [B,N]: byte and EOS targets, every
-- non-pad id after the first column (what bits per byte divides by).
function models.targets(rows)
    return core.nn_count_ne(core.narrow(rows, 2, 2, rows:size(2) - 1), ids.PAD)
end

-- Summed next-byte loss (nats, a float) and the number of predicted targets
-- (models.targets) of rows int32 [B,N].
function models.nats(model, rows)
    return core.scope(function()
        local k = models.targets(rows)
        if k == 0 then return 0.0, 0 end
        return model:loss(rows, "sum"):item(), k
    end)
end

-- The one loader of parameters (checkpoint.load_into), here too for convenience.
function models.load_into(model, run, opts) return require("blt.checkpoint").load_into(model, run, opts) end

-- The sections of a run's config that describe the model (the kind's sections).
local function model_part(cfg, M)
    local out = {kind = cfg.kind}
    for k in pairs(M.sections) do out[k] = cfg[k] end
    return out
end

-- Rebuilds whatever model a checkpoint holds. Returns model, the loaded checkpoint.
function models.load(path)
    local checkpoint = require "blt.checkpoint"
    local config = require "blt.config"
    local run = checkpoint.load(path)
    local cfg = run.config or {}
    local kind = cfg.kind or "bytelm" -- checkpoints written before kinds were recorded
    -- a kind from a file comes from the source the checkpoint carries (blt.kindfile)
    local okf, M = pcall(function()
        local K = require("blt.kindfile").of_config(cfg, path)
        return K and models.adopt(K)
    end)
    if not okf then error(("blt.models.load: %s"):format(require("blt.util").message(M)), 2) end
    M = M or models.get(kind)
    local defaults = config.copy(M.sections)
    defaults.kind = kind
    local okm, merged = pcall(config.merge, defaults, model_part(cfg, M), path)
    if not okm then error(("blt.models.load: %s"):format(merged), 2) end
    local okc, err = pcall(M.check, merged)
    if not okc then error(("blt.models.load: %s: %s"):format(path, err), 2) end
    local held = 0
    for _, t in pairs(run.params) do held = held + t:numel() end
    local want = M.count_params(merged, true)
    if want ~= held then
        error(("blt.models.load: %s: its config describes a %s of %d parameters, but the file holds %d")
              :format(path, kind, want, held), 2)
    end
    local model = M.build(merged, 1, run)
    models.load_into(model, run, {path = path})
    model.source_path = path
    return model, run
end

return models
