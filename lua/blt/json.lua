-- A small JSON encoder and decoder for configurations (config_json in checkpoints).
--   local json = require "blt.json"
--   json.encode(value [, {indent = "  "}])  -> string; object keys sorted, so equal tables
--                                              give equal text
--   json.decode(text)                        -> value
-- Numbers round-trip exactly: integers as integers, floats with %.17g (a float that
-- prints like an integer gets ".0", so it decodes as a float again). NaN and
-- infinities have no JSON form and are an error naming the key. Tables with keys
-- 1..n are arrays, the empty table is {} (an object). JSON null decodes to nil
-- (the key is absent), or to json.null inside arrays, so positions are kept.
local json = {}

json.null = setmetatable({}, {__tostring = function() return "null" end})

local escapes = {['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f', ['\n'] = '\\n',
                 ['\r'] = '\\r', ['\t'] = '\\t'}

local function escape_str(s)
    return '"' .. s:gsub('[%c"\\]', function(c)
        return escapes[c] or ("\\u%04x"):format(c:byte())
    end) .. '"'
end

local function is_array(t)
    local n = #t
    if n == 0 then return false end
    local count = 0
    for k in pairs(t) do
        if math.type(k) ~= "integer" or k < 1 or k > n then return false end
        count = count + 1
    end
    return count == n
end

local function encode_number(v, where)
    if math.type(v) == "integer" then return ("%d"):format(v) end
    if v ~= v or v == math.huge or v == -math.huge then
        error(("json.encode: %s is %s, which JSON cannot hold"):format(where, tostring(v)), 0)
    end
    local s = ("%.17g"):format(v)
    if not s:find("[%.eEn]") then s = s .. ".0" end
    return s
end

local function encode(v, out, where, seen, indent, depth)
    local t = type(v)
    if v == json.null or v == nil then
        out[#out + 1] = "null"
    elseif t == "boolean" then
        out[#out + 1] = tostring(v)
    elseif t == "number" then
        out[#out + 1] = encode_number(v, where)
    elseif t == "string" then
        out[#out + 1] = escape_str(v)
    elseif t == "table" then
        if seen[v] then error(("json.encode: %s is a cycle"):format(where), 0) end
        seen[v] = true
        local nl, pad, pad_in = "", "", ""
        if indent then
            nl = "\n"
            pad = indent:rep(depth)
            pad_in = indent:rep(depth + 1)
        end
        if is_array(v) then
            out[#out + 1] = "["
            for i = 1, #v do
                if i > 1 then out[#out + 1] = "," end
                out[#out + 1] = nl .. pad_in
                encode(v[i], out, where .. "[" .. i .. "]", seen, indent, depth + 1)
            end
            out[#out + 1] = nl .. pad .. "]"
        else
            local keys = {}
            for k in pairs(v) do
                if type(k) ~= "string" then
                    error(("json.encode: %s has a %s key (%s); objects need string keys"):format(
                        where, type(k), tostring(k)), 0)
                end
                keys[#keys + 1] = k
            end
            table.sort(keys)
            out[#out + 1] = "{"
            for i, k in ipairs(keys) do
                if i > 1 then out[#out + 1] = "," end
                out[#out + 1] = nl .. pad_in .. escape_str(k) .. (indent and ": " or ":")
                encode(v[k], out, where .. "." .. k, seen, indent, depth + 1)
            end
            out[#out + 1] = (#keys > 0 and nl .. pad or "") .. "}"
        end
        seen[v] = nil
    else
        error(("json.encode: %s is a %s, which JSON cannot hold"):format(where, t), 0)
    end
end

function json.encode(v, opts)
    local out = {}
    encode(v, out, "value", {}, opts and opts.indent, 0)
    return table.concat(out)
end

-- ---- decoding ----

local function fail(s, i, msg)
    local line = 1
    for _ in s:sub(1, i - 1):gmatch("\n") do line = line + 1 end
    error(("json.decode: %s at line %d (byte %d)"):format(msg, line, i), 0)
end

local function skip(s, i)
    return s:find("[^ \t\r\n]", i) or #s + 1
end

local function utf8_char(s, i, cp)
    if cp < 0 or cp > 0x10FFFF then fail(s, i, "bad \\u escape") end
    return utf8.char(cp)
end

local decode_value

local function decode_string(s, i)
    -- s:sub(i, i) == '"'
    local parts, j = {}, i + 1
    while true do
        local a, b = s:find('["\\%c]', j)
        if not a then fail(s, i, "unterminated string") end
        parts[#parts + 1] = s:sub(j, a - 1)
        local c = s:sub(a, a)
        if c == '"' then return table.concat(parts), b + 1 end
        if c ~= "\\" then fail(s, a, "control character in string") end
        local e = s:sub(a + 1, a + 1)
        local simple = ({['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n', r = '\r', t = '\t'})[e]
        if simple then
            parts[#parts + 1] = simple
            j = a + 2
        elseif e == "u" then
            local hex = s:match("^%x%x%x%x", a + 2)
            if not hex then fail(s, a, "bad \\u escape") end
            local cp = tonumber(hex, 16)
            j = a + 6
            if cp >= 0xD800 and cp <= 0xDBFF then -- a surrogate pair
                local lo = s:match("^\\u(%x%x%x%x)", j)
                local lcp = lo and tonumber(lo, 16)
                if not lcp or lcp < 0xDC00 or lcp > 0xDFFF then fail(s, a, "unpaired surrogate") end
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lcp - 0xDC00)
                j = j + 6
            end
            parts[#parts + 1] = utf8_char(s, a, cp)
        else
            fail(s, a, "bad escape \\" .. e)
        end
    end
end

local function decode_number(s, i)
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
    if not num or num == "" or num == "-" then fail(s, i, "bad number") end
    if not num:match("^-?0[%.eE]") and num:match("^-?0%d") then fail(s, i, "leading zero in number") end
    local v
    if num:find("[%.eE]") then
        v = tonumber(num)
    else
        v = math.tointeger(tonumber(num))
        if not v then v = tonumber(num) end -- beyond 64 bits: a float
    end
    if not v then fail(s, i, "bad number '" .. num .. "'") end
    return v, i + #num
end

local function decode_array(s, i, depth)
    local arr, n = {}, 0
    i = skip(s, i + 1)
    if s:sub(i, i) == "]" then return arr, i + 1 end
    while true do
        local v
        v, i = decode_value(s, i, depth + 1)
        n = n + 1
        arr[n] = v == nil and json.null or v
        i = skip(s, i)
        local c = s:sub(i, i)
        if c == "]" then return arr, i + 1 end
        if c ~= "," then fail(s, i, "expected ',' or ']'") end
        i = skip(s, i + 1)
    end
end

local function decode_object(s, i, depth)
    local obj = {}
    i = skip(s, i + 1)
    if s:sub(i, i) == "}" then return obj, i + 1 end
    while true do
        if s:sub(i, i) ~= '"' then fail(s, i, "expected a string key") end
        local k
        k, i = decode_string(s, i)
        i = skip(s, i)
        if s:sub(i, i) ~= ":" then fail(s, i, "expected ':'") end
        local v
        v, i = decode_value(s, skip(s, i + 1), depth + 1)
        obj[k] = v
        i = skip(s, i)
        local c = s:sub(i, i)
        if c == "}" then return obj, i + 1 end
        if c ~= "," then fail(s, i, "expected ',' or '}'") end
        i = skip(s, i + 1)
    end
end

function decode_value(s, i, depth)
    if depth > 200 then fail(s, i, "nested too deeply") end
    i = skip(s, i)
    local c = s:sub(i, i)
    if c == "{" then return decode_object(s, i, depth)
    elseif c == "[" then return decode_array(s, i, depth)
    elseif c == '"' then return decode_string(s, i)
    elseif c == "-" or c:match("%d") then return decode_number(s, i)
    elseif s:sub(i, i + 3) == "true" then return true, i + 4
    elseif s:sub(i, i + 4) == "false" then return false, i + 5
    elseif s:sub(i, i + 3) == "null" then return nil, i + 4
    elseif c == "" then fail(s, i, "unexpected end of text")
    end
    fail(s, i, "unexpected '" .. c .. "'")
end

function json.decode(s)
    if type(s) ~= "string" then error("json.decode: expected a string, got " .. type(s), 2) end
    local v, i = decode_value(s, 1, 0)
    i = skip(s, i)
    if i <= #s then fail(s, i, "trailing text") end
    return v
end

return json
