-- blt.cli: command-line flags for the scripts (show_patches, plot_entropy).
--   local o = cli.parse(args, {
--       values = {["--size"] = "size", ...},       -- flags that take a value (--size 4 or --size=4)
--       numeric = {size = "int", threshold = "num"}, -- int: integer >= 1; num: number >= 0
--       switches = {["--no-color"] = {"color", false}, ...}, -- flags without a value
--   })
-- Words that are not flags (and everything after --, and a lone -) go to o.words;
-- -h/--help sets o.help. Errors are raised as {msg = "..."} so a script's main can
-- print them without a traceback.
local cli = {}

local function fail(fmt, ...) error({msg = fmt:format(...)}, 0) end

local function number(flag, val, kind)
    local n = tonumber(val)
    if n == nil or n ~= n or n < 0 then fail("option %s needs a number >= 0, got '%s'", flag, val) end
    if kind == "int" then
        n = math.tointeger(n)
        if not n or n < 1 then fail("option %s needs an integer >= 1, got '%s'", flag, val) end
    end
    return n
end

function cli.parse(args, spec)
    local o, words, i, only_words = {}, {}, 1, false
    local switches, values, numeric = spec.switches or {}, spec.values or {}, spec.numeric or {}
    while i <= #args do
        local a = args[i]
        if only_words or a == "-" or a:sub(1, 1) ~= "-" then
            words[#words + 1] = a
        elseif a == "--" then
            only_words = true
        elseif a == "-h" or a == "--help" then
            o.help = true
        elseif switches[a] then
            o[switches[a][1]] = switches[a][2]
        else
            local flag, val = a:match("^(%-%-[%w-]+)=(.*)$")
            flag = flag or a
            local key = values[flag]
            if not key then fail("unknown option '%s' (see --help)", a) end
            if val == nil then
                i = i + 1
                val = args[i]
                if val == nil then fail("option %s needs a value", flag) end
            end
            o[key] = numeric[key] and number(flag, val, numeric[key]) or val
        end
        i = i + 1
    end
    o.words = words
    return o
end

return cli
