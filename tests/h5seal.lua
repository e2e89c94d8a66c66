-- Test helper: writes the BLT checksum header (docs/checkpoint-format.md) into the
-- 512-byte user block of an HDF5 file made by another tool, as an attacker could.
local blt = require "blt"
local M = {}

function M.header(body_len, crc)
    return "BLT-CKPT" .. string.pack("<I4I4I8I4", 1, 512, body_len, crc or 0) .. ("\0"):rep(512 - 28)
end

-- path must have been created with a 512-byte user block (HDF5 signature at 512)
function M.seal(path)
    local fh = assert(io.open(path, "rb"))
    local s = fh:read("a")
    fh:close()
    assert(s:sub(513, 516) == "\137HDF", path .. ": no 512-byte user block")
    local body = s:sub(513)
    local crc = blt.h5_crc32(body, blt.h5_crc32(M.header(#s)))
    fh = assert(io.open(path, "wb"))
    fh:write(M.header(#s, crc), body)
    fh:close()
end

return M
