-- Token ids (docs/model.md): byte b is id b + OFFSET; the special ids come first.
-- The one Lua definition (core/ids.h is the one C definition; tests/test_ids.lua
-- checks that the two agree).
local core = require "blt.core"

local ids = {
    PAD = 0,      -- padding, also "beginning of encoding"
    BOS = 1,      -- begins every row
    EOS = 2,      -- ends every document
    RESERVED = 3,
    OFFSET = 4,   -- byte b is id b + OFFSET
    VOCAB = 260,  -- 256 bytes + OFFSET
}

-- Id of byte b (0..255), and the byte of an id (nil for a special id).
function ids.of_byte(b) return b + ids.OFFSET end
function ids.to_byte(id) if id >= ids.OFFSET then return id - ids.OFFSET end end

-- Lua array of ids for the row [BOS, bytes of text].
function ids.row(text)
    local r = {ids.BOS}
    for i = 1, #text do r[i + 1] = text:byte(i) + ids.OFFSET end
    return r
end

-- The text of a list of ids: ids below OFFSET are dropped.
function ids.text(list)
    local out = {}
    for _, id in ipairs(list) do
        if id >= ids.OFFSET then out[#out + 1] = string.char(id - ids.OFFSET) end
    end
    return table.concat(out)
end

ids.core = core.token_ids and core.token_ids() or nil -- the C values, when the core exports them

return ids
