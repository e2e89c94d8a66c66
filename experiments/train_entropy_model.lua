-- Train the entropy model (docs/model.md): a small ByteLM with a sliding
-- attention window; its checkpoint is what entropy patching loads.
--   ./blt experiments/train_entropy_model.lua [key=value ...]   (--help lists the keys)
-- The model is saved in runs/entropy-<seed>/checkpoint.h5 (out.dir, out.name).
local ByteLM = require "blt.models.bytelm"
local train = require "blt.train"

local defaults = {}
for k, v in pairs(ByteLM.defaults) do defaults[k] = v end
-- smaller than the LM: it runs over every byte the BLT patches
defaults.dim, defaults.layers, defaults.heads, defaults.window, defaults.multiple_of = 128, 2, 4, 256, 128

return train.main {
    name = "entropy",
    script = "experiments/train_entropy_model.lua",
    args = arg,
    model_defaults = defaults,
    model_docs = {
        dim = "width", layers = "transformer blocks", heads = "attention heads", window = "sliding attention window",
        multiple_of = "FFN hidden rounding", rope_theta = "RoPE base", norm_eps = "RMSNorm epsilon",
    },
    check = function(cfg) ByteLM.check_config(cfg.model) end,
    build = function(cfg) return ByteLM.new(cfg.model, cfg.train.seed) end,
    param_count = function(cfg) return ByteLM.param_count(cfg.model) end,
}
