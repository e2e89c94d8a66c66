-- Train SpaceByte (docs/model.md "SpaceByte"): local blocks at every byte, larger global
-- blocks at the word boundaries only.
--   ./blt experiments/train_spacebyte.lua [key=value ...]   e.g. model.global.dim=384 train.steps=500
--   ./blt experiments/train_spacebyte.lua --help            every key, its default and meaning
return require("blt.train").main {
    name = "spacebyte",
    script = "experiments/train_spacebyte.lua",
    args = arg,
    kind = "spacebyte",
}
