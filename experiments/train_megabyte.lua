-- Train MegaByte (docs/model.md "MegaByte"): fixed patches of model.patch bytes, a
-- global transformer over patches and a local one over each patch's bytes.
--   ./blt experiments/train_megabyte.lua [key=value ...]   e.g. model.patch=8 model.global.dim=384
--   ./blt experiments/train_megabyte.lua --help            every key, its default and meaning
return require("blt.train").main {name = "megabyte", script = "experiments/train_megabyte.lua", args = arg, kind = "megabyte"}
