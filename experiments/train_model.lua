-- Train a model kind defined in a Lua file of one's own (docs/extending.md, "A kind from a file").
--   ./blt experiments/train_model.lua model.file=my_kind.lua [key=value ...]
--   ./blt experiments/train_model.lua model.file=my_kind.lua --help   every key of the kind
-- The file runs in a sandbox (blt.kindfile) and its source goes into the checkpoint, so
-- generate.lua, evaluate.lua and inspect.lua load the model without the file; --resume
-- takes the kind from the checkpoint.
local config = require "blt.config"
local train = require "blt.train"
local util = require "blt.util"

local ok, kind = pcall(function()
    local K = require("blt.kindfile").script_kind(arg)
    return K and require("blt.models").adopt(K)
end)
if not ok then util.die("train_model", kind) end
if kind then
    return train.main {name = kind.kind, script = "experiments/train_model.lua", args = arg, kind = kind.kind}
end

-- no model.file yet: the common keys, so that --help and mistakes read as in every script
local defaults, docs = config.copy(train.defaults), config.copy(train.docs)
defaults.model, docs.model = {file = config.OPTIONAL}, {file = "the Lua file defining the model kind (required)"}
local cfg = config.script {
    name = "train_model", args = arg, defaults = defaults, docs = docs, rules = train.rules,
    flags = {resume = "CHECKPOINT", fork = "NAME"}, switches = {check = true},
    usage = "usage: ./blt experiments/train_model.lua model.file=KIND.lua [key=value ...] [--resume CHECKPOINT [--fork NAME]]\n"
        .. "(with model.file given, --help lists the kind's own keys too)",
}
if not cfg then return end -- --help
util.die("train_model", "give model.file=PATH on the command line: a Lua file returning a model kind (docs/extending.md)")
