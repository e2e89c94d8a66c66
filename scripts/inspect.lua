-- What a checkpoint holds: the run's kind, config, step, parameter counts and shapes.
--   ./blt scripts/inspect.lua runs/bytelm-1/checkpoint.h5      (or model=PATH)
--   ./blt scripts/inspect.lua json=true CKPT                   the config as JSON
-- The model is rebuilt (blt.models.load), so a file that loads here loads everywhere;
-- trained parameters are the optimiser's, frozen ones (a BLT's entropy model) the rest.
local config = require "blt.config"
local json = require "blt.json"
local models = require "blt.models"

local opts, flags = config.script {
    name = "inspect", args = arg, words = true,
    usage = [[
usage: ./blt scripts/inspect.lua [json=true] [--] CKPT   (or model=CKPT)
Prints a checkpoint's kind, config (key=value lines, or JSON), step, parameter counts
(trained and frozen) and every parameter's name and shape.]],
    defaults = {model = config.OPTIONAL, json = false},
    docs = {model = "the checkpoint (else the one free argument)", json = "print the config as JSON"},
}
if not opts then return end -- --help

local util = require "blt.util"
local function fail(fmt, ...) util.die("inspect", fmt:format(...)) end

local path = opts.model
if #flags.words > 1 or (path and #flags.words > 0) then fail("give one checkpoint (CKPT or model=CKPT)") end
path = path or flags.words[1]
if not path then fail("no checkpoint given: ./blt scripts/inspect.lua CKPT") end

local ok, model, run = pcall(models.load, path)
if not ok then fail("%s", util.about(path, util.message(model):gsub("^blt%.models%.load: ", ""):gsub("^checkpoint%.load: ", ""))) end

local cfg = run.config or {}
print(("checkpoint %s"):format(path))
print(("kind %s"):format(cfg.kind or "bytelm"))
print(("step %d"):format(run.step or 0))

-- the config, one key=value line per leaf (sorted), or the JSON
if opts.json then
    print("config " .. json.encode(cfg))
else
    local lines = {}
    local function walk(t, prefix)
        for k, v in pairs(t) do
            local key = prefix and (prefix .. "." .. tostring(k)) or tostring(k)
            if type(v) == "table" and next(v) ~= nil and #v == 0 then walk(v, key)
            elseif type(v) == "table" then lines[#lines + 1] = key .. "=" .. json.encode(v)
            else lines[#lines + 1] = key .. "=" .. tostring(v) end
        end
    end
    walk(cfg)
    table.sort(lines)
    print("config:")
    for _, l in ipairs(lines) do print("  " .. l) end
end

local trained = {}
for _, p in ipairs(model:parameter_list()) do trained[p.name] = true end
local rows, n_trained, n_frozen, width = {}, 0, 0, 4
for _, p in ipairs(model:state_list()) do
    local n = p.tensor:numel()
    if trained[p.name] then n_trained = n_trained + n else n_frozen = n_frozen + n end
    rows[#rows + 1] = {p.name, table.concat(p.tensor:shape(), " x "), n, trained[p.name] and "" or "frozen"}
    width = math.max(width, #p.name)
end
print(("parameters %d trained, %d frozen, %d in all"):format(n_trained, n_frozen, n_trained + n_frozen))
local fmt = "  %-" .. width .. "s  %-16s %10s  %s"
local function row(...) return (fmt:format(...):gsub("%s+$", "")) end
print(row("name", "shape", "count", ""))
for _, r in ipairs(rows) do print(row(r[1], r[2], r[3], r[4])) end
