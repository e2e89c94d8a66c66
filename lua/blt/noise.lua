-- blt.noise: seeded character-level noise on byte strings, for the robustness
-- experiment (experiments/robustness.lua; the BLT paper's noised-input angle).
--
--   local noise = require "blt.noise"
--   local noised, edits = noise.apply("swap", text, {rate = 0.05, seed = 1})
--   noise.KINDS   {"clean", "case", "swap", "drop", "repeat", "whitespace"}
--
-- Units are characters: a well-formed-looking UTF-8 sequence (lead byte and its
-- continuation bytes) is one unit, any other byte is a unit of its own, so binary
-- input is noised byte by byte and never raises. Every eligible unit is chosen
-- independently with probability `rate` (one uniform draw of a blt.Generator(seed),
-- xoshiro256**, per eligible unit in text order, so a seed gives the same result
-- on every machine):
--   clean       nothing changes (the reference)
--   case        an ASCII letter flips case (eligible: ASCII letters)
--   swap        a character trades places with the next one (eligible: every unit
--               with a next unit; the pair is then done, so swaps never overlap)
--   drop        a character is removed (eligible: every unit)
--   repeat      a character is written twice (eligible: every unit)
--   whitespace  a space becomes a newline, two spaces or a tab, a second draw
--               (Generator:integer(3)) picking which (eligible: spaces)
-- Returns the noised string and the number of edits made. Pure: text is not touched.
local core = require "blt.core"

local noise = {}

noise.KINDS = {"clean", "case", "swap", "drop", "repeat", "whitespace"}
noise.WHITESPACE = {"\n", "  ", "\t"} -- what a chosen space becomes (integer draw 1..3)

-- Splits text into units (see above). A lead byte 0xC2..0xF4 followed by the right
-- number of 0x80..0xBF bytes is one unit; anything else is one byte.
function noise.units(text)
    local out, i, n = {}, 1, #text
    while i <= n do
        local b = text:byte(i)
        local len = (b >= 0xC2 and b <= 0xDF) and 2 or (b >= 0xE0 and b <= 0xEF) and 3 or (b >= 0xF0 and b <= 0xF4) and 4 or 1
        if len > 1 then
            for j = i + 1, i + len - 1 do
                local c = text:byte(j)
                if not c or c < 0x80 or c > 0xBF then len = 1 break end
            end
        end
        out[#out + 1] = text:sub(i, i + len - 1)
        i = i + len
    end
    return out
end

local function is_letter(u) return #u == 1 and u:match("^%a$") ~= nil and u:byte() < 128 end

local function flip(u) return u:match("%l") and u:upper() or u:lower() end

local apply = {}

function apply.clean(units) return units, 0 end

function apply.case(units, rate, g)
    local out, edits = {}, 0
    for i, u in ipairs(units) do
        if is_letter(u) and g:uniform() < rate then u, edits = flip(u), edits + 1 end
        out[i] = u
    end
    return out, edits
end

function apply.swap(units, rate, g)
    local out, edits, i = {}, 0, 1
    while i <= #units do
        if i < #units and g:uniform() < rate then
            out[#out + 1], out[#out + 2] = units[i + 1], units[i]
            edits, i = edits + 1, i + 2
        else
            out[#out + 1], i = units[i], i + 1
        end
    end
    return out, edits
end

function apply.drop(units, rate, g)
    local out, edits = {}, 0
    for _, u in ipairs(units) do
        if g:uniform() < rate then edits = edits + 1 else out[#out + 1] = u end
    end
    return out, edits
end

apply["repeat"] = function(units, rate, g)
    local out, edits = {}, 0
    for _, u in ipairs(units) do
        out[#out + 1] = u
        if g:uniform() < rate then out[#out + 1], edits = u, edits + 1 end
    end
    return out, edits
end

function apply.whitespace(units, rate, g)
    local out, edits = {}, 0
    for i, u in ipairs(units) do
        if u == " " and g:uniform() < rate then u, edits = noise.WHITESPACE[g:integer(#noise.WHITESPACE)], edits + 1 end
        out[i] = u
    end
    return out, edits
end

-- noise.apply(kind, text, {rate = 0.05, seed = 1}) -> noised text, edits
function noise.apply(kind, text, opts)
    opts = opts or {}
    if type(kind) ~= "string" or not apply[kind] then
        error(("blt.noise.apply: unknown kind %s (known: %s)"):format(tostring(kind), table.concat(noise.KINDS, ", ")), 2)
    end
    if type(text) ~= "string" then error("blt.noise.apply: text must be a string, got " .. type(text), 2) end
    if type(opts) ~= "table" then error("blt.noise.apply: options must be a table", 2) end
    for k in pairs(opts) do
        if k ~= "rate" and k ~= "seed" then error(("blt.noise.apply: unknown option '%s' (rate, seed)"):format(tostring(k)), 2) end
    end
    local rate = opts.rate == nil and 0.05 or opts.rate
    if type(rate) ~= "number" or not (rate >= 0 and rate <= 1) then
        error("blt.noise.apply: rate must be a number in [0, 1], got " .. tostring(rate), 2)
    end
    local seed = opts.seed == nil and 1 or math.tointeger(opts.seed)
    if not seed then error("blt.noise.apply: seed must be an integer, got " .. tostring(opts.seed), 2) end
    if kind == "clean" or rate == 0 then return text, 0 end
    local out, edits = apply[kind](noise.units(text), rate, core.Generator(seed))
    return table.concat(out), edits
end

return noise
