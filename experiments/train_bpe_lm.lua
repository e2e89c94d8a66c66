-- Train the token baseline (docs/model.md "The token baseline: BPE"): a byte-level BPE
-- tokenizer learned on the training split when the run starts, and a transformer over
-- its tokens. Evaluated in bits per byte, as every model.
--   ./blt experiments/train_bpe_lm.lua [key=value ...]            (--help lists every key)
--   ./blt experiments/train_bpe_lm.lua bpe.vocab=8192 model.dim=384
-- The merge list is stored in the checkpoint (bpe.merges), which is then self-contained.
local train = require "blt.train"

return train.main {
    name = "bpe",
    script = "experiments/train_bpe_lm.lua",
    args = arg,
    kind = "bpe_lm",
}
