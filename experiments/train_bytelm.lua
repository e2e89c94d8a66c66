-- Train the plain byte-level transformer (ByteLM) on a byte corpus.
--   ./blt experiments/train_bytelm.lua [key=value ...]   e.g. model.layers=6 train.lr=3e-3
--   ./blt experiments/train_bytelm.lua --help            every key, its default and meaning
local train = require "blt.train"

return train.main {
    name = "bytelm",
    script = "experiments/train_bytelm.lua",
    args = arg,
    kind = "bytelm",
}
