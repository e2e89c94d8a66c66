package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
-- docs/checkpoint-format.md matches the files: its layout table is parsed and
-- compared, object by object, with a checkpoint from a short training run (every
-- object in the file is in the table with its kind, type and shape; every object
-- the table says the trainer writes is in the file), and its checksum-header table
-- and Python checker are checked against the same file's bytes.
local T = require "tap"
local blt = require "blt"

local BIN = os.getenv("BLT_BIN") or arg[-1] or "./blt"
local ROOT = (arg[0]:gsub("[^/]*$", "")) .. "../"
local U = require "testutil"
local DIR = U.tmpdir()
local function P(name) return DIR .. "/" .. name end

local readfile, writefile = U.read, U.write
local function sh(cmd)
    local rc, out = U.sh(cmd)
    return rc == 0, out
end

local doc = assert(readfile(ROOT .. "docs/checkpoint-format.md"), "docs/checkpoint-format.md not found")

-- ---- the document's tables ----
local function cells(line)
    local out = {}
    for c in line:sub(2, -2):gmatch("([^|]*)|?") do out[#out + 1] = c:match("^%s*(.-)%s*$") end
    if out[#out] == "" then out[#out] = nil end
    return out
end

local rows = {}
for line in doc:gmatch("[^\n]+") do
    if line:match("^| `/") then
        local c = cells(line)
        local obj = c[1]:match("^`(.-)`$")
        local pat = "^" .. obj:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"):gsub("<name>", "([^/@]+)") .. "$"
        rows[#rows + 1] = {obj = obj, pat = pat, kind = c[2], type = c[3], shape = c[4], present = c[5],
                           meaning = c[6] or "", seen = 0}
    end
end
local header = {}
for line in doc:gmatch("[^\n]+") do
    local c = line:match("^| %d") and cells(line)
    if c then header[#header + 1] = {off = tonumber(c[1]), size = tonumber(c[2]), field = c[3], value = c[4]} end
end
T.ok(#rows >= 15, "the layout table is found (" .. #rows .. " rows)")
T.ok(#header == 5, "the checksum header table is found (" .. #header .. " rows)")

-- ---- a real checkpoint ----
local ck, ok, out = U.tiny_run(DIR, BIN)
if not ok or not ck or not readfile(ck) then
    T.ok(false, "a short training run writes a checkpoint", out)
    T.done()
end

-- every object of the file: {name = "/a/b" or "/a@attr", kind =, type =, shape =, value =}
local objects = {}
local f = blt.h5_open(ck, {checksum = true})
local function walk(group)
    objects[#objects + 1] = {name = group, kind = "group"}
    local prefix = group == "/" and "/" or group .. "/"
    for k, v in pairs(f:attrs(group)) do
        objects[#objects + 1] = {name = group .. "@" .. k, kind = "attribute",
            type = type(v) == "string" and "string" or math.type(v) == "integer" and "int64" or "float64",
            shape = {}, value = v}
    end
    local names, kinds = f:list(group)
    for _, n in ipairs(names) do
        if kinds[n] == "group" then walk(prefix .. n)
        else
            local info = f:info(prefix .. n)
            objects[#objects + 1] = {name = prefix .. n, kind = kinds[n], type = info and info.dtype,
                                     shape = info and info.shape}
        end
    end
end
walk("/")
local optim_kind = f:attr("kind", "/optim")
local param_shape = {}
for _, o in ipairs(objects) do
    local n = o.name:match("^/params/([^/@]+)$")
    if n then param_shape[n] = table.concat(o.shape, ",") end
end
f:close()

local function shape_ok(want, o, captured)
    if want == "" then return o.kind == "group" end
    if want == "any" then return true end
    local got = table.concat(o.shape, ",")
    if want == "scalar" then return got == "" end
    if want == "param" then return captured ~= nil and param_shape[captured] == got end
    local lit = want:match("^%[(.*)%]$")
    return lit ~= nil and lit:gsub("%s", "") == got
end

local undocumented, wrong = {}, {}
for _, o in ipairs(objects) do
    local match
    for _, r in ipairs(rows) do
        local cap = o.name:match(r.pat)
        if cap or o.name:find(r.pat) then match = {r, cap} break end
    end
    if not match then
        if o.name ~= "/" then undocumented[#undocumented + 1] = o.name end
    else
        local r, cap = match[1], match[2]
        r.seen = r.seen + 1
        local why
        if r.kind ~= o.kind then why = ("is a %s, the document says %s"):format(o.kind, r.kind)
        elseif o.kind ~= "group" and r.type ~= o.type then why = ("is %s, the document says %s"):format(o.type, r.type)
        elseif not shape_ok(r.shape, o, type(cap) == "string" and cap or nil) then
            why = ("has shape [%s], the document says %s"):format(table.concat(o.shape or {}, ","), r.shape)
        elseif o.kind == "attribute" and type(o.value) == "string" and r.meaning:find('`"') then
            local allowed = false
            for q in r.meaning:gmatch('`"(.-)"`') do allowed = allowed or q == o.value end
            if not allowed then why = ("holds %q, not a value the document names (%s)"):format(o.value, r.meaning) end
        end
        if why then wrong[#wrong + 1] = o.name .. " " .. why end
    end
end
T.ok(#undocumented == 0, "every object of a trained checkpoint is in the document's table",
     table.concat(undocumented, ", "))
T.ok(#wrong == 0, "kinds, types, shapes and named values match the document", table.concat(wrong, "\n"))
T.is(optim_kind, "AdamW", "the trainer's checkpoint is an AdamW one (the table's AdamW rows apply)")
local missing = {}
for _, r in ipairs(rows) do
    if (r.present == "always" or r.present == "trainer" or r.present == "AdamW") and r.seen == 0 then
        missing[#missing + 1] = r.obj
    end
end
T.ok(#missing == 0, "every object the document says the trainer writes is in the file", table.concat(missing, ", "))

-- ---- the checksum header table against the file's bytes ----
do
    local s = readfile(ck)
    local bad, next_off = {}, 0
    local crc_off, crc_size
    for _, h in ipairs(header) do
        if h.off ~= next_off then bad[#bad + 1] = h.field .. " does not follow the previous field" end
        next_off = h.off + h.size
        local bytes = s:sub(h.off + 1, h.off + h.size)
        local num = h.size <= 8 and string.unpack("<I" .. h.size, bytes) or nil
        local lit = h.value:match("^`(.-)`")
        if h.field == "magic" then
            if bytes ~= lit then bad[#bad + 1] = "magic is " .. bytes end
        elseif h.field == "length" then
            if num ~= #s then bad[#bad + 1] = ("length %d, file %d"):format(num, #s) end
        elseif h.field == "crc32" then
            crc_off, crc_size = h.off, h.size
        elseif tonumber(lit) ~= num then
            bad[#bad + 1] = ("%s is %s in the file, the document says %s"):format(h.field, tostring(num), tostring(lit))
        end
    end
    if crc_off then
        local want = string.unpack("<I4", s, crc_off + 1)
        local got = blt.h5_crc32(s:sub(1, crc_off) .. ("\0"):rep(crc_size) .. s:sub(crc_off + crc_size + 1))
        if want ~= got then bad[#bad + 1] = ("crc32 %08x, computed as documented %08x"):format(want, got) end
    else
        bad[#bad + 1] = "no crc32 field"
    end
    local zeros_from = tonumber(doc:match("Bytes (%d+) to 511 are zero"))
    if zeros_from ~= next_off or s:sub(next_off + 1, 512) ~= ("\0"):rep(512 - next_off) then
        bad[#bad + 1] = "the rest of the user block is not zero from byte " .. tostring(zeros_from)
    end
    if s:sub(513, 516) ~= "\137HDF" then bad[#bad + 1] = "no HDF5 superblock at byte 512" end
    T.ok(#bad == 0, "the checksum header is laid out as the document says", table.concat(bad, "\n"))
end

-- ---- the document's Python checker ----
do
    local code = doc:match("```python\n(import zlib.-)```")
    local py = (sh("python3 -c 'import zlib' >/dev/null")) and "python3" or nil
    if not code or not py then
        T.ok(code ~= nil, "the document's Python checker # SKIP python3 not found")
    else
        writefile(P("verify.py"), code .. "\nimport sys\nverify(sys.argv[1])\nprint('VERIFIED')\n")
        local okp, outp = sh(py .. " '" .. P("verify.py") .. "' '" .. ck .. "'")
        local s = readfile(ck)
        writefile(P("flipped.h5"), s:sub(1, 5000) .. string.char(s:byte(5001) ~ 1) .. s:sub(5002))
        local okd, outd = sh(py .. " '" .. P("verify.py") .. "' '" .. P("flipped.h5") .. "'")
        T.ok(okp and outp:find("VERIFIED") and not okd and outd:find("checksum mismatch"),
             "the document's Python checker accepts the file and refuses a flipped bit", outp .. outd)
    end
end

os.execute("rm -rf '" .. DIR .. "'")
T.done()
