package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local blt = require "blt"
local checkpoint = require "blt.checkpoint"
local json = require "blt.json"
local seal = require "h5seal"

local LONG = os.getenv("BLT_TEST_LONG") == "1"
local BIN = os.getenv("BLT_BIN") or arg[-1] or "./blt"

-- a private scratch folder, removed at the end
local DIR = os.tmpname()
os.remove(DIR)
assert(os.execute("mkdir -p '" .. DIR .. "'"))
local function P(name) return DIR .. "/" .. name end

local function readfile(p)
    local fh = io.open(p, "rb")
    if not fh then return nil end
    local s = fh:read("a")
    fh:close()
    return s
end

local function writefile(p, s)
    local fh = assert(io.open(p, "wb"))
    fh:write(s)
    fh:close()
end

local function sh(cmd)
    local fh = io.popen(cmd .. " 2>&1")
    local out = fh:read("a")
    local ok, _, code = fh:close()
    return ok, out, code
end

local function have(cmd) return (sh("command -v " .. cmd .. " >/dev/null")) end

local function stray_tmp()
    local _, out = sh("ls -a '" .. DIR .. "'")
    local found = {}
    for name in out:gmatch("[^\n]+") do
        if name:find("%.tmp%.%d+$") then found[#found + 1] = name end
    end
    return found
end

-- the bits of every element, in order
local function bits(t)
    local out = {}
    local function rec(x)
        if type(x) == "table" then for _, y in ipairs(x) do rec(y) end
        else out[#out + 1] = string.pack("<f", x) end
    end
    rec(t:totable())
    return table.concat(out)
end

local function deep_equal(a, b)
    if type(a) ~= type(b) then return false end
    if type(a) ~= "table" then return a == b and math.type(a) == math.type(b) end
    for k, v in pairs(a) do if not deep_equal(v, b[k]) then return false end end
    for k in pairs(b) do if a[k] == nil then return false end end
    return true
end

-- ---- a small model ----
local function make_run(d, seed)
    d = d or 8
    local names = {
        ["encoder.byte_embed"] = {260, d},
        ["encoder.layers.0.attn.wq"] = {d, d},
        ["encoder.layers.0.attn_norm"] = {d},
        ["encoder.layers.0.ffn.w1"] = {2 * d, d},
        ["global.layers.0.attn.wo"] = {d, d},
        ["decoder.head"] = {260, d},
        ["decoder.norm"] = {d},
        ["entropy.layers.1.ffn.w2"] = {d, 2 * d},
    }
    local params, m, v = {}, {}, {}
    local order = {}
    for name in pairs(names) do order[#order + 1] = name end
    table.sort(order) -- the same values every run
    for i, name in ipairs(order) do
        local shape = names[name]
        params[name] = blt.randn(shape, seed + i)
        m[name] = blt.randn(shape, seed + 100 + i):scale(0.01)
        v[name] = blt.rand(shape, seed + 200 + i)
    end
    local gen = blt.Generator(seed)
    return {
        config = {
            model = {d_E = d, d_G = 2 * d, heads = 2, layers = {1, 9, 1}, name = "tiny \"quoted\" \\ é\n"},
            patching = {kind = "entropy", threshold = 1.3333333333333333, bytes_per_patch = 4.5},
            training = {lr = 3e-4, eps = 1e-8, betas = {0.9, 0.95}, steps = 1000, warmup = 0.0, clip = true},
            data = {path = "/data/enwik8", seed = seed, tiny = 5e-324, big = 1.7976931348623157e308},
        },
        step = 1234,
        params = params,
        optim = {step = 1234, m = m, v = v, lr_now = 2.5e-4, name = "adamw"},
        state = {rng = gen:state(), data_pos = 987654321, epoch = 2, note = "resume here",
                 ids = blt.tensor({{1, 2}, {3, 4}}, "int32"), hist = {1, 2, 3}, temps = {0.5, 1.25}},
    }
end

-- ==== round trip ====
local run = make_run(8, 11)
local ck = P("model.h5")
checkpoint.save(ck, run)
T.ok(readfile(ck) ~= nil, "save writes the checkpoint")
T.is(#stray_tmp(), 0, "no temporary file left after a save")
local back = checkpoint.load(ck, {expect = checkpoint.shapes(run.params)})
do
    local names_ok, shapes_ok, bits_ok = true, true, true
    for name, t in pairs(run.params) do
        local b = back.params[name]
        if not b then names_ok = false
        else
            if table.concat(b:shape(), ",") ~= table.concat(t:shape(), ",") then shapes_ok = false end
            if bits(b) ~= bits(t) then bits_ok = false end
        end
    end
    for name in pairs(back.params) do if not run.params[name] then names_ok = false end end
    T.ok(names_ok, "round trip: same parameter names")
    T.ok(shapes_ok, "round trip: same shapes")
    T.ok(bits_ok, "round trip: values bit-exact")
end
T.ok(deep_equal(back.config, run.config), "round trip: config equal (types included)",
     json.encode(back.config) .. "\nvs\n" .. json.encode(run.config))
T.is(json.encode(back.config), json.encode(run.config), "round trip: config JSON equal")
T.is(back.step, 1234, "round trip: step")
T.is(back.format_version, 1, "round trip: format_version")
do
    local o, s = back.optim, back.state
    local ok = o and o.step == 1234 and o.lr_now == 2.5e-4 and o.name == "adamw"
    for name, t in pairs(run.optim.m) do
        ok = ok and o.m[name] and bits(o.m[name]) == bits(t) and bits(o.v[name]) == bits(run.optim.v[name])
    end
    T.ok(ok, "round trip: optimiser step, moments and scalars")
    T.ok(s and deep_equal(s.rng, run.state.rng), "round trip: RNG state (hex strings)",
         s and table.concat(s.rng or {}, " "))
    local g = blt.Generator(1)
    g:set_state(s.rng)
    local g0 = blt.Generator(11)
    T.is(g:integer(1000000), g0:integer(1000000), "restored generator continues the same stream")
    T.ok(s.data_pos == 987654321 and math.type(s.data_pos) == "integer" and s.epoch == 2 and s.note == "resume here",
         "round trip: data position and scalar state")
    T.ok(deep_equal(s.hist, {1, 2, 3}) and deep_equal(s.temps, {0.5, 1.25}), "round trip: arrays in state")
    T.ok(blt.is_tensor(s.ids) and s.ids:dtype() == "int32" and s.ids:get(2, 1) == 3, "round trip: int32 tensor in state")
end
do -- a checkpoint without optim/state, and json alone
    local p = P("bare.h5")
    checkpoint.save(p, {params = {w = blt.ones({2, 3})}, step = 0})
    local r = checkpoint.load(p)
    T.ok(r.optim == nil and r.state == nil and r.params.w and deep_equal(r.config, {}), "bare checkpoint loads")
    local s = json.encode({a = {1, 2.0, "x\1"}, b = false, c = {}, ["d e"] = -0.1})
    T.is(s, '{"a":[1,2.0,"x\\u0001"],"b":false,"c":{},"d e":-0.10000000000000001}', "json: sorted keys, exact numbers")
    T.ok(deep_equal(json.decode(s), {a = {1, 2.0, "x\1"}, b = false, c = {}, ["d e"] = -0.1}), "json: decode")
    T.is(json.decode('"\\ud83d\\ude00"'), "\u{1F600}", "json: surrogate pairs")
    T.raises(function() json.encode({x = 0 / 0}) end, "value%.x", "json: NaN refused, naming the key")
    T.raises(function() json.decode('{"a":1,}') end, "json%.decode", "json: syntax error")
end
if have("h5dump") then
    local _, out = sh("h5dump -A '" .. ck .. "'")
    T.ok(out:find('"blt%-checkpoint"') and out:find("format_version") and out:find("config_json"),
         "h5dump reads the root attributes")
    _, out = sh("h5dump -H -d '/params/encoder.layers.0.attn.wq' '" .. ck .. "'")
    T.ok(out:find("H5T_IEEE_F32LE") and out:find("%( 8, 8 %)"), "h5dump reads a parameter dataset (float32 [8,8])")
else
    T.ok(true, "h5dump checks # SKIP h5dump not installed")
    T.ok(true, "h5dump checks # SKIP h5dump not installed")
end

-- ==== optimiser moments have their parameter's shape ====
do
    local r = make_run(8, 13)
    -- as blt.optim's state() gives them: flat slices of one buffer
    for _, key in ipairs {"m", "v"} do
        for name, t in pairs(r.optim[key]) do r.optim[key][name] = t:reshape({-1}) end
    end
    local p = P("flatmoments.h5")
    checkpoint.save(p, r)
    local f = blt.h5_open(p)
    local info = f:info("/optim/m/encoder.layers.0.ffn.w1")
    local vinfo = f:info("/optim/v/encoder.byte_embed")
    f:close()
    T.ok(info and table.concat(info.shape, ",") == "16,8" and table.concat(vinfo.shape, ",") == "260,8",
         "flat moments are stored with their parameter's shape", info and table.concat(info.shape, ","))
    local b = checkpoint.load(p)
    T.ok(table.concat(b.optim.m["encoder.layers.0.ffn.w1"]:shape(), ",") == "16,8"
         and bits(b.optim.m["encoder.layers.0.ffn.w1"]) == bits(r.optim.m["encoder.layers.0.ffn.w1"]),
         "moments load with their parameter's shape, values bit-exact")
    r.optim.m["no.such.param"] = blt.zeros({3})
    T.raises(function() checkpoint.save(P("orphan.h5"), r) end, "optim%.m%.no%.such%.param has no parameter",
             "a moment without a parameter: save refuses it")
    r.optim.m["no.such.param"] = nil
    r.optim.m["decoder.norm"] = blt.zeros({7})
    T.raises(function() checkpoint.save(P("orphan.h5"), r) end, "optim%.m%.decoder%.norm has 7 elements",
             "a moment of the wrong size: save refuses it")
end

-- ==== every value is checked on load ====
do
    local function case(name, edit, pattern)
        local r = make_run(4, 17)
        r.optim.kind = "AdamW"
        edit(r)
        local p = P("values.h5")
        checkpoint.save(p, r)
        local ok, err = pcall(checkpoint.load, p)
        T.ok(not ok and tostring(err):find("^checkpoint%.load: ") and tostring(err):find(p, 1, true)
             and tostring(err):find(pattern), name, ok and "loaded" or err)
    end
    local r0 = make_run(4, 17)
    r0.optim.kind = "AdamW"
    checkpoint.save(P("values.h5"), r0)
    local okv, rv = pcall(checkpoint.load, P("values.h5"))
    T.ok(okv and rv.optim.kind == "AdamW" and rv.optim.name == "adamw",
         "values: a valid AdamW checkpoint loads; /optim's kind attribute comes back", not okv and rv or nil)
    case("values: negative step refused", function(r) r.step = -5 end, "step = %-5 is out of range")
    case("values: absurd step refused", function(r) r.step = 1 << 50 end, "out of range")
    case("values: all-zero RNG state refused", function(r) r.state.rng = {("0"):rep(16), ("0"):rep(16), ("0"):rep(16), ("0"):rep(16)} end,
         "/state/rng is all zeros")
    case("values: RNG state of 3 words refused", function(r) r.state.rng = {("1"):rep(16), ("2"):rep(16), ("3"):rep(16)} end,
         "/state/rng must be 4")
    case("values: unknown optimiser kind refused", function(r) r.optim.kind = "Adamax" end, "kind = \"Adamax\" is not a known optimiser")
    case("values: optimiser step after the training step refused", function(r) r.optim.step = r.step + 1 end,
         "/optim/step = 1235 is inconsistent")
    case("values: negative optimiser step refused", function(r) r.optim.step = -1 end, "/optim/step = %-1")
    case("values: AdamW without a second moment refused", function(r) r.optim.v["decoder.norm"] = nil end,
         "/optim/v/decoder.norm is missing")
    case("values: negative second moment refused", function(r) r.optim.v["decoder.norm"]:set(-1, 2) end,
         "/optim/v/decoder.norm holds a negative value")
    case("values: negative state step refused", function(r) r.state.step = -3 end, "/state/step = %-3")
end

-- ==== atomicity ====
local original = readfile(ck)
do
    local bad = make_run(8, 12)
    bad.params["encoder.layers.0.ffn.w1"]:release() -- writing fails part-way, at this dataset
    T.raises(function() checkpoint.save(ck, bad) end, "checkpoint%.save: .*model%.h5.*released",
             "a save that fails part-way raises an error naming the file")
    T.ok(readfile(ck) == original, "the previous checkpoint is intact after a failed save")
    T.is(#stray_tmp(), 0, "no temporary file left after a failed save")
    T.raises(function() checkpoint.save(P("no/such/dir/x.h5"), make_run(8, 1)) end, "no/such/dir",
             "saving into a missing folder: clear error")
end
do -- the disk fills up (RLIMIT_FSIZE) in the middle of a big save, in a child process
    local script = P("bigsave.lua")
    writefile(script, ([[
        local blt = require "blt"
        local ck = require "blt.checkpoint"
        local ok, err = pcall(ck.save, %q, {params = {a = blt.ones({64, 1024}), b = blt.ones({1024, 1024})}, step = 1})
        io.write(ok and "SAVED" or ("ERR " .. tostring(err)))
    ]]):format(ck))
    local ok, out = sh("trap '' XFSZ; ulimit -f 256; exec '" .. BIN .. "' '" .. script .. "'")
    T.ok(out:find("^ERR checkpoint%.save:") or out:find("\nERR checkpoint%.save:"), "a save that hits the file size limit fails cleanly",
         out)
    T.ok(readfile(ck) == original, "the previous checkpoint is intact after a disk-full save")
    T.is(#stray_tmp(), 0, "no temporary file left after a disk-full save")
end

-- ==== hostile files ====
local function load_err(path, opts)
    local ok, err = pcall(checkpoint.load, path, opts)
    if ok then return nil end
    return tostring(err)
end

local function clean(err, path)
    return err ~= nil and err:find("^checkpoint%.load: ") ~= nil and err:find(path, 1, true) ~= nil
end

local expect = checkpoint.shapes(run.params)
do
    local cuts = {0, 1, 8, 64, 200, 512, #original // 3, #original // 2, #original - 4096, #original - 100, #original - 1}
    local all = true
    for _, n in ipairs(cuts) do
        if n >= 0 and n < #original then
            local p = P("cut.h5")
            writefile(p, original:sub(1, n))
            local err = load_err(p, {expect = expect})
            if not clean(err, p) then
                all = false
                T.diag("cut at " .. n .. ": " .. tostring(err))
            end
        end
    end
    T.ok(all, "truncated files (" .. #cuts .. " cut points): clear errors")
    local cerr = load_err(P("cut.h5"))
    T.ok(cerr and cerr:find("truncated") and cerr:find(#original - 1 .. " bytes", 1, true), "truncated file: the error says so", cerr)
    local err = load_err(P("nothere.h5"))
    T.ok(clean(err, P("nothere.h5")) and err:find("No such file"), "a missing file: clear error", err)
end
do
    local g = blt.Generator(5)
    local bytes = {}
    for i = 1, 4096 do bytes[i] = string.char(g:integer(256) - 1) end
    local p = P("random.h5")
    writefile(p, table.concat(bytes))
    local err = load_err(p)
    T.ok(clean(err, p) and err:find("not a readable HDF5 file"), "random bytes: clear error", err)
    writefile(p, "\137HDF\r\n\26\n" .. table.concat(bytes))
    err = load_err(p)
    T.ok(clean(err, p), "HDF5 signature then random bytes: clear error", err)
end
do
    local p = P("bigger.h5")
    checkpoint.save(p, make_run(16, 3))
    local err = load_err(p, {expect = expect})
    T.ok(clean(err, p) and err:find("/params/", 1, true) and err:find("%[%d+,16%]") and err:find("%[%d+,8%]"),
         "another model size: error names the parameter and both shapes", err)
    local more = checkpoint.shapes(run.params)
    more["decoder.layers.3.ffn.w9"] = {8, 8}
    err = load_err(ck, {expect = more})
    T.ok(clean(err, ck) and err:find("decoder.layers.3.ffn.w9", 1, true), "a missing parameter: error names it", err)
end
do
    local p = P("v99.h5")
    local f = blt.h5_create(p)
    f:set_attr("format", "blt-checkpoint")
    f:set_attr("format_version", 99)
    f:set_attr("config_json", "{}")
    f:set_attr("step", 0)
    f:write("/params/w", blt.ones({2}))
    f:commit()
    local err = load_err(p)
    T.ok(clean(err, p) and err:find("format_version 99"), "format_version 99: clear error", err)
    p = P("notours.h5")
    f = blt.h5_create(p)
    f:set_attr("format", "something-else")
    f:commit()
    err = load_err(p)
    T.ok(clean(err, p) and err:find("not a BLT checkpoint"), "another HDF5 file: clear error", err)
end
do
    for _, case in ipairs {{"nan", 0 / 0}, {"inf", 1 / 0}} do
        local r = make_run(8, 4)
        r.params["encoder.layers.0.attn.wq"]:set(case[2], 3, 5)
        local p = P("bad_" .. case[1] .. ".h5")
        checkpoint.save(p, r)
        local err = load_err(p)
        T.ok(clean(err, p) and err:find("/params/encoder.layers.0.attn.wq", 1, true) and err:find(case[1]),
             case[1] .. " in a parameter: error names the dataset", err)
    end
    local ok = pcall(checkpoint.load, P("bad_nan.h5"), {finite = false})
    T.ok(ok, "finite = false loads a checkpoint holding NaN")
end

-- a dataset with a huge declared shape, a soft link and variable-length attributes,
-- crafted with the HDF5 C API (as another tool could write them)
do
    local csrc = P("craft.c")
    writefile(csrc, [[
#include <hdf5.h>
#include <string.h>
static void vattr(hid_t f, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1); H5Tset_size(t, H5T_VARIABLE); H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t s = H5Screate(H5S_SCALAR), a = H5Acreate2(f, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, &v); H5Aclose(a); H5Sclose(s); H5Tclose(t);
}
static void iattr(hid_t f, const char *name, long long v) {
    hid_t s = H5Screate(H5S_SCALAR), a = H5Acreate2(f, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_LLONG, &v); H5Aclose(a); H5Sclose(s);
}
static int plain; /* 1: no user block (as h5py writes by default) */
static hid_t start(const char *path) {
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (!plain) H5Pset_userblock(fcpl, 512); /* room for the checksum header (sealed from Lua) */
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    vattr(f, "format", "blt-checkpoint"); iattr(f, "format_version", 1); vattr(f, "config_json", "{\"d\": 8}");
    iattr(f, "step", 5);
    H5Gclose(H5Gcreate2(f, "/params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    return f;
}
int main(int argc, char **argv) {
    (void)argc;
    char p[4096];
    /* chunked, never written: 2^40 x 2^20 floats declared */
    snprintf(p, sizeof p, "%s/huge_chunked.h5", argv[1]);
    hid_t f = start(p);
    hsize_t dims[2] = {(hsize_t)1 << 40, (hsize_t)1 << 20}, chunk[2] = {16, 16};
    hid_t sp = H5Screate_simple(2, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 2, chunk);
    H5Dclose(H5Dcreate2(f, "/params/encoder.byte_embed", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT));
    H5Pclose(dcpl); H5Sclose(sp); H5Fclose(f);
    /* contiguous, storage allocated late, never written: 10^6 x 10^6 floats */
    snprintf(p, sizeof p, "%s/huge_contig.h5", argv[1]);
    f = start(p);
    hsize_t d2[2] = {1000000, 1000000};
    sp = H5Screate_simple(2, d2, NULL);
    H5Dclose(H5Dcreate2(f, "/params/decoder.head", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Sclose(sp); H5Fclose(f);
    /* a soft link among the parameters; otherwise valid (variable-length strings) */
    snprintf(p, sizeof p, "%s/softlink.h5", argv[1]);
    f = start(p);
    hsize_t d3[1] = {4};
    float v[4] = {1, 2, 3, 4};
    sp = H5Screate_simple(1, d3, NULL);
    hid_t d = H5Dcreate2(f, "/params/decoder.norm", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Dclose(d); H5Sclose(sp);
    H5Lcreate_soft("/params/decoder.norm", f, "/params/encoder.norm", H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    /* the same without the link: a valid file from another writer (HDF5 defaults, vlen strings) */
    snprintf(p, sizeof p, "%s/foreign.h5", argv[1]);
    f = start(p);
    sp = H5Screate_simple(1, d3, NULL);
    d = H5Dcreate2(f, "/params/decoder.norm", H5T_IEEE_F32BE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Dclose(d); H5Sclose(sp); H5Fclose(f);
    /* 32 floats in one gzip chunk of 2^20 floats (4 MiB; 2^28 took 5 s and 1 GB to read) */
    snprintf(p, sizeof p, "%s/bigchunk.h5", argv[1]);
    f = start(p);
    hsize_t d4[1] = {32}, mx[1] = {H5S_UNLIMITED}, c4[1] = {(hsize_t)1 << 20};
    float w[32] = {0};
    sp = H5Screate_simple(1, d4, mx);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, c4); H5Pset_deflate(dcpl, 1);
    d = H5Dcreate2(f, "/params/decoder.norm", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w);
    H5Dclose(d); H5Pclose(dcpl); H5Sclose(sp); H5Fclose(f);
    /* a filter we do not decode (n-bit) */
    snprintf(p, sizeof p, "%s/nbit.h5", argv[1]);
    f = start(p);
    hsize_t c5[1] = {4};
    sp = H5Screate_simple(1, d3, NULL);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, c5); H5Pset_nbit(dcpl);
    d = H5Dcreate2(f, "/params/decoder.norm", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Dclose(d); H5Pclose(dcpl); H5Sclose(sp); H5Fclose(f);
    /* foreign.h5 without a user block: what h5py writes by default */
    plain = 1;
    snprintf(p, sizeof p, "%s/plain.h5", argv[1]);
    f = start(p);
    sp = H5Screate_simple(1, d3, NULL);
    d = H5Dcreate2(f, "/params/decoder.norm", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Dclose(d); H5Sclose(sp); H5Fclose(f);
    return 0;
}
]])
    local exe = P("craft")
    local ok, out = sh("cc -o '" .. exe .. "' '" .. csrc .. "' $(pkg-config --cflags --libs hdf5) && '" .. exe .. "' '" .. DIR .. "'")
    if not ok then
        for _ = 1, 11 do T.ok(true, "crafted hostile files # SKIP cannot build the HDF5 helper: " .. out:gsub("\n", " "):sub(1, 120)) end
    else
        -- an attacker can compute the checksum too: the files below pass it, and are
        -- refused by the checks that follow it
        for _, name in ipairs {"huge_chunked", "huge_contig", "softlink", "foreign", "bigchunk", "nbit"} do
            seal.seal(P(name .. ".h5"))
        end
        local p = P("huge_chunked.h5")
        local err = load_err(p)
        T.ok(clean(err, p) and err:find("encoder.byte_embed", 1, true) and err:find("more bytes than the whole file"),
             "huge declared shape (chunked): refused before allocating", err)
        p = P("huge_contig.h5")
        err = load_err(p)
        T.ok(clean(err, p) and err:find("decoder.head", 1, true) and err:find("1000000,1000000"),
             "huge declared shape (contiguous): refused before allocating", err)
        err = load_err(P("huge_contig.h5"), {expect = {["decoder.head"] = {260, 8}}})
        T.ok(clean(err, P("huge_contig.h5")) and err:find("decoder.head", 1, true)
             and (err:find("refused") or err:find("%[260,8%]")), "huge declared shape with expect: refused", err)
        p = P("softlink.h5")
        err = load_err(p)
        T.ok(clean(err, p) and err:find("soft or external link"), "a soft link among the parameters: refused", err)
        local okf, r = pcall(checkpoint.load, P("foreign.h5"))
        T.ok(okf and r.step == 5 and r.config.d == 8 and r.params["decoder.norm"]:get(4) == 4 and r.verified,
             "a checkpoint written by another tool (vlen strings, big-endian floats) loads", not okf and r or nil)
        p = P("bigchunk.h5")
        local t0 = blt.now()
        err = load_err(p)
        T.ok(clean(err, p) and err:find("decoder.norm", 1, true) and err:find("chunks of more than"),
             "a 4 MiB gzip chunk over 32 floats: refused", err)
        T.ok(blt.now() - t0 < 1, "... quickly (" .. ("%.3f"):format(blt.now() - t0) .. " s)")
        p = P("nbit.h5")
        err = load_err(p)
        T.ok(clean(err, p) and err:find("decoder.norm", 1, true) and err:find("filter 5"),
             "a dataset with a filter outside deflate/shuffle/fletcher32: refused", err)
        p = P("plain.h5")
        err = load_err(p)
        T.ok(clean(err, p) and err:find("no checksum header") and err:find("unverified = true", 1, true),
             "a file without the checksum header: refused by default, the error says how to accept it", err)
        okf, r = pcall(checkpoint.load, p, {unverified = true})
        T.ok(okf and r.step == 5 and r.params["decoder.norm"]:get(4) == 4 and r.verified == false,
             "... and loads with {unverified = true}", not okf and r or nil)
        err = load_err(P("huge_contig.h5"):gsub("huge_contig", "softlink"), {unverified = true})
        T.ok(clean(err, P("softlink.h5")) and err:find("soft or external link"), "unverified: the other checks still apply", err)
    end
end

-- ==== fuzz: mutated bytes of a valid checkpoint (tests/test_damage.lua sweeps every region) ====
-- The loop runs in a child process, so that a crash is seen and counted (with the
-- case that caused it) instead of ending this test. HDF5 1.10 itself leaks some
-- metadata-cache blocks when it gives up on a corrupt file; under LeakSanitizer
-- the child gets a suppression for allocations made inside libhdf5 only.
do
    local small = make_run(4, 21)
    local src = P("fuzz_src.h5")
    checkpoint.save(src, small)
    local cases = tonumber(os.getenv("BLT_FUZZ_CASES")) or (LONG and 5000 or 600)
    local child = P("fuzz.lua")
    writefile(child, ([=[
        local blt = require "blt"
        local checkpoint = require "blt.checkpoint"
        local src, p, cases = %q, %q, %d
        local fh = assert(io.open(src, "rb")); local good = fh:read("a"); fh:close()
        local exp = checkpoint.load(src).params
        for k, t in pairs(exp) do exp[k] = t:shape() end
        local g = blt.Generator(2024)
        local function rnd(n) return g:integer(n) end -- 1..n
        local n_ok, n_err, n_bad, first_bad = 0, 0, 0, nil
        for c = 1, cases do
            local s = good
            local kind = c %% 6
            if kind == 0 then -- flip one bit
                local i = rnd(#s)
                s = s:sub(1, i - 1) .. string.char(s:byte(i) ~ (1 << (rnd(8) - 1))) .. s:sub(i + 1)
            elseif kind == 1 then -- a few random bytes anywhere
                for _ = 1, rnd(8) do
                    local i = rnd(#s)
                    s = s:sub(1, i - 1) .. string.char(rnd(256) - 1) .. s:sub(i + 1)
                end
            elseif kind == 2 then -- bytes in the first 2 KiB (superblock, root group, attributes)
                for _ = 1, rnd(4) do
                    local i = rnd(math.min(#s, 2048))
                    s = s:sub(1, i - 1) .. string.char(rnd(256) - 1) .. s:sub(i + 1)
                end
            elseif kind == 3 then -- a run of 0xff or 0x00
                local i, n = rnd(#s), rnd(64)
                local b = string.char(rnd(2) == 1 and 255 or 0)
                s = (s:sub(1, i - 1) .. b:rep(n) .. s:sub(i + n)):sub(1, #good)
            elseif kind == 4 then -- truncated, then maybe zeros appended
                s = s:sub(1, rnd(#s) - 1)
                if rnd(2) == 1 then s = s .. ("\0"):rep(rnd(512)) end
            else -- a byte deleted or inserted (shifts everything after)
                local i = rnd(#s)
                if rnd(2) == 1 then s = s:sub(1, i - 1) .. s:sub(i + 1)
                else s = s:sub(1, i - 1) .. string.char(rnd(256) - 1) .. s:sub(i) end
            end
            if s == good then s = s .. "\0" end -- an unchanged file is no mutation
            fh = assert(io.open(p, "wb")); fh:write(s); fh:close()
            io.stderr:write("case ", c, "\n")
            local ok, err = pcall(checkpoint.load, p, {expect = exp})
            err = tostring(err)
            if ok then n_ok = n_ok + 1
            elseif err:find("^checkpoint%%.load: ") and err:find(p, 1, true) then n_err = n_err + 1
            else
                n_bad = n_bad + 1
                first_bad = first_bad or ("case " .. c .. ": " .. err)
            end
        end
        io.write(("RESULT %%d %%d %%d %%d\n"):format(cases, n_ok, n_err, n_bad))
        if first_bad then io.write("FIRST_BAD ", first_bad, "\n") end
    ]=]):format(src, P("fuzz.h5"), cases))
    local supp = P("lsan.supp")
    local base = readfile((arg[0]:gsub("[^/]*$", "")) .. "lsan.supp") or ""
    writefile(supp, base .. "\nleak:libhdf5\n")
    local t0 = os.time()
    local fh = io.popen(("LSAN_OPTIONS='suppressions=%s' '%s' '%s' 2>'%s'; echo \"EXIT $?\""):format(
        supp, BIN, child, P("fuzz.err")))
    local out = fh:read("a")
    fh:close()
    local errout = readfile(P("fuzz.err")) or ""
    local total, n_ok, n_err, n_bad = out:match("RESULT (%d+) (%d+) (%d+) (%d+)")
    local code = out:match("EXIT (%d+)")
    local last = 0
    for c in errout:gmatch("case (%d+)") do last = tonumber(c) end
    local crashed = not total or code ~= "0"
    T.diag(("fuzz: %d cases, %s loaded ok, %s clean errors, %s unclear errors, %d crashes (%d s)"):format(
        cases, n_ok or "?", n_err or "?", n_bad or "?", crashed and 1 or 0, os.time() - t0))
    T.ok(not crashed, "fuzz: no crash, no sanitizer report (" .. cases .. " mutated checkpoints)",
         crashed and ("child exit " .. tostring(code) .. " at case " .. last .. "\n" .. errout:gsub("case %d+\n", ""):sub(-3000)) or nil)
    T.is(tonumber(n_bad or -1), 0, "fuzz: every failure is a clear error naming the file", out:match("FIRST_BAD [^\n]*"))
    T.ok(tonumber(n_err or 0) > cases // 10, "fuzz: mutations were detected (" .. tostring(n_err) .. " errors)")
    T.is(tonumber(n_ok or -1), 0, "fuzz: every mutation is refused (the whole-file checksum)")
end

-- ==== metrics ====
do
    local p = P("metrics.h5")
    local m = checkpoint.Metrics(p, {flush_every = 5})
    for i = 1, 12 do
        local row = {step = i, loss = 5 - i * 0.25}
        if i >= 7 then row.lr = 1e-3 * i end
        m:log(row)
    end
    T.is(m:rows(), 12, "metrics: 12 rows logged")
    local f = blt.h5_open(p) -- readable while the run goes on: 10 rows flushed
    local loss = f:read("/loss")
    local lr = f:read("/lr")
    f:close()
    T.ok(#loss == 10 and loss[10] == 2.5 and #lr == 10 and lr[1] ~= lr[1] and lr[7] == 7e-3,
         "metrics: flushed rows readable while open (NaN before a column appears)")
    if have("h5dump") then
        local ok, out = sh("h5dump -d /step '" .. p .. "'")
        T.ok(ok and out:find("%( 10 %)") and out:find("10"), "metrics: h5dump reads the file while it is open", out)
    else
        T.ok(true, "metrics h5dump # SKIP h5dump not installed")
    end
    m:close()
    f = blt.h5_open(p)
    local step = f:read("/step")
    f:close()
    T.ok(#step == 12 and step[12] == 12, "metrics: close flushes the rest")
    local m2 = checkpoint.Metrics(p, {flush_every = 2, append = true})
    m2:log{step = 13, loss = 1.0, acc = 0.5}
    m2:close()
    f = blt.h5_open(p)
    local acc, step2 = f:read("/acc"), f:read("/step")
    f:close()
    T.ok(#acc == 13 and #step2 == 13 and acc[13] == 0.5 and acc[12] ~= acc[12], "metrics: append resumes a file")
    T.raises(function() checkpoint.Metrics(p):log{["a/b"] = 1} end, "bad column name", "metrics: bad column name refused")
    T.raises(function() checkpoint.Metrics(P("no/dir/m.h5")) end, "no/dir", "metrics: missing folder, clear error")
end

-- ==== h5py interop ====
do
    local py
    for _, cand in ipairs {"python3", "/usr/bin/python3"} do
        if (sh(cand .. " -c 'import h5py' >/dev/null")) then py = cand break end
    end
    if not py then
        T.ok(true, "h5py reads a checkpoint # SKIP h5py not found for python3 or /usr/bin/python3 (apt install python3-h5py)")
    else
        local script = P("read.py")
        writefile(script, ([[
import h5py, json, sys
with h5py.File(sys.argv[1], "r") as f:
    fmt = f.attrs["format"]
    fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
    cfg = f.attrs["config_json"]
    cfg = json.loads(cfg.decode() if isinstance(cfg, bytes) else cfg)
    names = sorted(f["params"].keys())
    w = f["params/encoder.layers.0.attn.wq"]
    print(fmt, int(f.attrs["format_version"]), int(f.attrs["step"]), cfg["model"]["d_E"])
    print(",".join(names))
    print(w.dtype, "x".join(str(d) for d in w.shape), repr(float(w[2, 5])))
]]))
        local ok, out = sh(py .. " '" .. script .. "' '" .. ck .. "'")
        local names = {}
        for name in pairs(run.params) do names[#names + 1] = name end
        table.sort(names)
        local want = ("blt-checkpoint 1 1234 8\n%s\nfloat32 8x8 %s\n"):format(table.concat(names, ","),
            ("%.17g"):format(run.params["encoder.layers.0.attn.wq"]:get(3, 6)))
        local function norm(s) return (s:gsub("(%d)%.0\n", "%1\n")) end
        T.ok(ok and norm(out) == norm(want) or (ok and out:find("float32 8x8") and out:find(table.concat(names, ","), 1, true)),
             "h5py reads a checkpoint (names, shapes, a value)", out .. "\nwant:\n" .. want)
    end
end

os.execute("rm -rf '" .. DIR .. "'")
T.done()
