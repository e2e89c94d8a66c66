package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- Token ids are defined once in C (core/ids.h) and once in Lua (lua/blt/ids.lua):
-- the two must agree, the modules that use ids must take them from there, and no
-- source file may spell the byte-to-id offset as a literal 4 again.
local T = require "tap"
local core = require "blt.core"
local ids = require "blt.ids"
local data = require "blt.data"

local ROOT = (arg[0]:gsub("[^/]*$", "")) .. "../"

-- C and Lua agree, key by key, both ways
local c = core.token_ids()
local KEYS = {"PAD", "BOS", "EOS", "RESERVED", "OFFSET", "VOCAB"}
local want = {PAD = 0, BOS = 1, EOS = 2, RESERVED = 3, OFFSET = 4, VOCAB = 260}
for _, k in ipairs(KEYS) do
    T.is(c[k], ids[k], "core.token_ids()." .. k .. " equals blt.ids." .. k)
    T.is(ids[k], want[k], "blt.ids." .. k .. " = " .. want[k])
    T.is(math.type(c[k]), "integer", "core.token_ids()." .. k .. " is an integer")
end
local n = 0
for k in pairs(c) do n = n + 1; T.ok(want[k] ~= nil, "core.token_ids() has no extra key (" .. tostring(k) .. ")") end
T.is(n, #KEYS, "core.token_ids() has the six keys")
T.ok(ids.core and ids.core.OFFSET == c.OFFSET, "blt.ids sees the core's values (ids.core)")

-- the modules take their ids from blt.ids
T.is(data.PAD, ids.PAD, "blt.data.PAD from blt.ids")
T.is(data.BOS, ids.BOS, "blt.data.BOS from blt.ids")
T.is(data.EOS, ids.EOS, "blt.data.EOS from blt.ids")
T.is(data.BYTE0, ids.OFFSET, "blt.data.BYTE0 is blt.ids.OFFSET")
local row = core.patch_text_ids("A\n"):totable()
T.is(table.concat(row, ","), table.concat(ids.row("A\n"), ","), "the C text row (lua_patch.c) is ids.row")
T.is(ids.text(ids.row("Hi")), "Hi", "ids.text inverts ids.row")

-- No literal byte-to-id arithmetic outside the two definitions. A plain grep for
-- "+ 4" would flag unrelated code (t->ndim + 4, size = 4), so each pattern names
-- what it is about: a byte read from a string (s:byte(i), (unsigned char)s[i]) or a
-- variable named b, id or ids[...] shifted by 4; an id compared with 4; 10 + 4 (the
-- id of "\n"); string.char(x - 4). Comments are stripped first (they may explain the
-- mapping in words). Samples below show the patterns catch the forms this check
-- replaced and pass the unrelated ones, so the check can fail.
local PATTERNS = {
    "byte%b()%s*[-+]%s*4u?%f[^%w_.]",
    "%f[%w_]ids?%s*[-+]%s*4u?%f[^%w_.]",
    "%f[%w_]ids?%b[]%s*[-+]%s*4u?%f[^%w_.]",
    "%f[%w_]b%s*[-+]%s*4u?%f[^%w_.]",
    "%f[%w_]id%s*[<>]=?%s*4u?%f[^%w_.]",
    "%(unsigned char%)[^;]-[-+]%s*4u?%f[^%w_.]",
    "%f[%w_]10%s*%+%s*4%f[^%w_.]",
    "char%([^()]-%-%s*4%s*%)",
}

local function flagged(code)
    for _, p in ipairs(PATTERNS) do
        if code:find(p) then return p end
    end
end

local function strip(line, lua)
    if lua then return (line:gsub("%-%-.*$", "")) end
    if line:find("^%s*%*") or line:find("^%s*/%*") and not line:find("%*/") then return "" end
    return (line:gsub("/%*.-%*/", ""):gsub("//.*$", ""))
end

for _, s in ipairs {
    "for i = 1, #text do ids[i + 1] = text:byte(i) + 4 end", "local NEWLINE = 10 + 4",
    "uint32_t b = (uint32_t)id - 4u;", "return (uint8_t)((id >= 4) * (1u + x));",
    "ids[i + 1] = (int32_t)(unsigned char)s[i] + 4;", "local b = id - 4", "out[#out + 1] = string.char(id - 4)",
    "if ids[t] - 4 == 10 then",
} do T.ok(flagged(s), "the check flags: " .. s) end
for _, s in ipairs {
    "luaL_checkstack(L, t->ndim + 4, \"tensor too deep\");", "p.size = o.size or 4",
    "local n = b >= 0xF0 and 4 or b >= 0xE0 and 3 or 2", "x = b + 40", "for i = 1, n - 4 do", "y = id + 4.5",
    "p = p * r + 4.1665795894e-2f;", "ids[i + 1] = text:byte(i) + ids.OFFSET",
} do T.ok(not flagged(s), "the check passes: " .. s) end

local EXEMPT = {["core/ids.h"] = true, ["lua/blt/ids.lua"] = true}
local list = io.popen("cd '" .. ROOT .. "' && find core lua scripts experiments -type f " ..
                      "\\( -name '*.c' -o -name '*.h' -o -name '*.lua' \\) | sort")
local files, hits = 0, {}
for path in list:lines() do
    if not EXEMPT[path] then
        files = files + 1
        local lua = path:find("%.lua$") ~= nil
        local ln = 0
        for line in io.lines(ROOT .. path) do
            ln = ln + 1
            local p = flagged(strip(line, lua))
            if p then hits[#hits + 1] = ("%s:%d: %s"):format(path, ln, line) end
        end
    end
end
list:close()
T.ok(files > 50, "the scan read the sources (" .. files .. " files)")
T.ok(#hits == 0, "no literal byte/id offset outside core/ids.h and lua/blt/ids.lua", table.concat(hits, "\n"))

T.done()
