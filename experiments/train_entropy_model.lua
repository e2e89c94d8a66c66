-- Train the entropy model (docs/model.md): a small ByteLM with a sliding
-- attention window; its checkpoint is what entropy patching loads.
--   ./blt experiments/train_entropy_model.lua [key=value ...]   (--help lists the keys)
-- The model is saved in runs/entropy-<seed>/checkpoint.h5 (out.dir, out.name).
local train = require "blt.train"

return train.main {
    name = "entropy",
    script = "experiments/train_entropy_model.lua",
    args = arg,
    kind = "bytelm",
    -- smaller than the LM: it runs over every byte the BLT patches
    defaults = {model = {dim = 128, layers = 2, heads = 4, window = 256, multiple_of = 128}},
}
