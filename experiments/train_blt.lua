-- Train a Byte Latent Transformer (docs/model.md) with any patching scheme.
--   ./blt experiments/train_blt.lua [key=value ...]            (--help lists every key)
--   ./blt experiments/train_blt.lua patching.scheme=entropy patching.target=4.5 model.global.dim=256
--   ./blt experiments/train_blt.lua patching.scheme=space
--   ./blt experiments/train_blt.lua patching.scheme=fixed patching.size=6
-- The entropy schemes need an entropy model (patching.entropy_model, default
-- runs/entropy-1/checkpoint.h5: ./blt experiments/train_entropy_model.lua trains one);
-- it is copied into the BLT's checkpoint, which is then self-contained. The threshold
-- is calibrated to patching.target bytes per patch at the start and recorded.
local train = require "blt.train"

return train.main {
    name = "blt",
    script = "experiments/train_blt.lua",
    args = arg,
    kind = "blt",
}
