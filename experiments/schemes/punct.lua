-- A patching scheme of one's own (docs/patching.md, "A scheme file"): a patch starts
-- after a space or a punctuation byte, and after `run` bytes without one.
--   ./blt experiments/train_blt.lua patching.scheme=file:experiments/schemes/punct.lua
--   ./blt experiments/train_blt.lua patching.scheme=file:experiments/schemes/punct.lua patching.options=run=6
-- It runs in a sandbox: no io, os, require or load; math, string, table and utf8 are there.
local CUT = {}
for _, c in ipairs {" ", "\n", ",", ".", ";", ":", "!", "?"} do CUT[c:byte()] = true end

return {
    name = "punct",
    doc = "a patch starts after a space or punctuation byte, or after `run` bytes without one",
    options = {run = 8},
    docs = {run = "the longest patch before a boundary is forced"},
    rules = {run = ">= 1"},
    needs_entropy = false,
    -- row[i] is token i-1 (row[1] is BOS, byte b is id b + 4); flags[i] is s[i-1], the
    -- boundary before token i-1, so it may read row[1 .. i-1] only (incremental).
    flags = function(row, entropies, opts)
        local f, len = {1, 1}, 1
        for i = 3, #row + 1 do
            if CUT[row[i - 1] - 4] or len >= opts.run then
                f[i], len = 1, 1
            else
                f[i], len = 0, len + 1
            end
        end
        return f -- N + 1 flags: s[N] is known too
    end,
}
