-- Train the plain byte-level transformer (ByteLM) on a byte corpus.
--   ./blt experiments/train_bytelm.lua [key=value ...]   e.g. model.layers=6 train.lr=3e-3
--   ./blt experiments/train_bytelm.lua --help            every key, its default and meaning
local ByteLM = require "blt.models.bytelm"
local train = require "blt.train"

local model_docs = {
    dim = "width d", layers = "transformer blocks", heads = "attention heads (divide dim into even sizes)",
    window = "sliding attention window", multiple_of = "FFN hidden rounding", rope_theta = "RoPE base",
    norm_eps = "RMSNorm epsilon",
}

return train.main {
    name = "bytelm",
    script = "experiments/train_bytelm.lua",
    args = arg,
    model_defaults = ByteLM.defaults,
    model_docs = model_docs,
    check = function(cfg) ByteLM.check_config(cfg.model) end,
    build = function(cfg) return ByteLM.new(cfg.model, cfg.train.seed) end,
    param_count = function(cfg) return ByteLM.param_count(cfg.model) end,
}
