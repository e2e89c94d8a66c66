-- Edge cases of the hardening issue's smaller classes, each a generated matrix:
--   NUL bytes in paths and HDF5 names; ops on zero-size dimensions; readers given a FIFO
--   or a folder; sampling from NaN/inf logits; invalid Generator states; the scripts
--   given a checkpoint of every other kind or a bad file (status 2, one line, no
--   "file.lua:NN:" position, no traceback).
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local U = require "testutil"
local blt = require "blt"
local core = require "blt.core"
local gradcheck = require "gradcheck"
local util = require "blt.util"
local checkpoint = require "blt.checkpoint"

local bin = os.getenv("BLT_BIN") or "./blt"
local q = U.q
local dir = U.tmpdir()

-- One result for a generated set of cases: at least `least` ran and none went wrong.
local function none_bad(cases, least, what, bad)
    return T.ok(cases >= least and #bad == 0, cases .. " " .. what, table.concat(bad, "\n"))
end

-- ---- class 1: every binding that hands a Lua string to C as a path or an HDF5 name ----
-- Each call below is run once per string argument, that argument given with an embedded
-- NUL byte ("ok\0x", which C would read as "ok"): each must raise an error that names the
-- function and says NUL. No file named "ok" may appear.
do
    local h5 = dir .. "/nul.h5"
    local f = blt.h5_create(h5)
    f:write("/d", blt.zeros({2}))
    f:set_attr("a", "v")
    f:commit()
    local P = dir .. "/ok" -- what C would open if it cut the string
    local reader = blt.h5_open(h5)
    local writer = blt.h5_create(dir .. "/w.h5")
    local metrics = blt.h5_metrics(dir .. "/m.h5")
    local run = {config = {}, step = 0, params = {w = blt.zeros({2})}}
    -- name, function(...) with the strings as arguments, the strings (each replaced in turn)
    local calls = {
        {"h5_create", function(p) return blt.h5_create(p) end, {P}},
        {"h5_open", function(p) return blt.h5_open(p) end, {P}},
        {"h5_metrics", function(p) return blt.h5_metrics(p) end, {P}},
        {"h5_set_attr", function(n, v, o) return writer:set_attr(n, v, o) end, {"n", "v", "/"}},
        {"h5_write", function(d, t) return writer:write(d, {1, 2}, t) end, {"/d2", "int64"}},
        {"h5_attr", function(n, o) return reader:attr(n, o) end, {"a", "/"}},
        {"h5_attrs", function(o) return reader:attrs(o) end, {"/"}},
        {"h5_list", function(g) return reader:list(g) end, {"/"}},
        {"h5_exists", function(d) return reader:exists(d) end, {"/d"}},
        {"h5_info", function(d) return reader:info(d) end, {"/d"}},
        {"h5_read", function(d, t) return reader:read(d, {dtype = t}) end, {"/d", "float32"}},
        {"metrics:log", function(k) return metrics:log({[k] = 1}) end, {"loss"}},
        {"metrics:annotate", function(k, v) return metrics:annotate({[k] = v}) end, {"name", "value"}},
        {"data_open", function(p) return core.data_open(p) end, {P}, "data.open"},
        {"data.open", function(p) return require("blt.data").open(p) end, {P}},
        {"hash_file", function(p) return core.hash_file(p) end, {P}},
        {"file_kind", function(p) return core.file_kind(p) end, {P}},
        {"mkdir", function(p) return core.mkdir(p) end, {P}},
        {"listdir", function(p) return core.listdir(p) end, {P}},
        {"lock", function(p) return core.lock(p) end, {P}},
        {"checkpoint.save", function(p) return checkpoint.save(p, run) end, {P}},
        {"checkpoint.load", function(p) return checkpoint.load(p) end, {P}},
        {"checkpoint.Metrics", function(p) return checkpoint.Metrics(p) end, {P}, "h5_metrics"},
        {"util.open_read", function(p) return assert(util.open_read(p)) end, {P}, "file_kind"},
    }
    local cases, bad = 0, {}
    for _, c in ipairs(calls) do
        local name, fn, args = c[1], c[2], c[3]
        local short = c[4] or name:match("[%w_]+$") -- the name the message must hold
        for i = 1, #args do
            local a = {table.unpack(args)}
            a[i] = a[i] .. "\0x"
            local ok, err = pcall(fn, table.unpack(a))
            cases = cases + 1
            if ok then bad[#bad + 1] = ("%s, argument %d: accepted"):format(name, i)
            elseif not tostring(err):find("NUL", 1, true) or not tostring(err):find(short, 1, true) then
                bad[#bad + 1] = ("%s, argument %d: %s"):format(name, i, tostring(err))
            end
        end
    end
    writer:abort()
    metrics:close()
    reader:close()
    T.ok(cases >= 30 and #bad == 0 and not util.exists(P),
         ("%d binding x string-argument cases refuse an embedded NUL, naming the function"):format(cases), table.concat(bad, "\n"))
    -- and no binding file reads a string argument without that check (luaL_checkstring and
    -- luaL_optstring cut at the first NUL); lua_dist.c's abort message is not a path or name
    local unchecked, scanned = {}, 0
    for _, name in ipairs(core.listdir("core")) do
        if name:match("^lua_.*%.c$") and name ~= "lua_dist.c" then
            scanned = scanned + 1
            local src = U.read("core/" .. name)
            for _, pat in ipairs {"luaL_checkstring%b()", "luaL_optstring%b()"} do
                for call in src:gmatch(pat) do unchecked[#unchecked + 1] = name .. ": " .. call end
            end
        end
    end
    T.ok(scanned >= 5 and #unchecked == 0, ("no binding (%d files) reads a string with luaL_checkstring/luaL_optstring"):format(scanned),
         table.concat(unchecked, "\n"))
end

-- ---- class 2: every op with a zero-size dimension in each position ----
-- Every op x every shape with one zero (and all zeros): either an error that names the op,
-- or a result that is the same whatever garbage the memory pool held before (an output
-- read from uninitialised memory differs between two pollutions), and so is the
-- gradient of its sum. Reductions over nothing have a known value.
do
    local function pollute(v)
        local held = {}
        for k = 0, 12 do for _ = 1, 4 do held[#held + 1] = blt.full({2 ^ k // 1}, v) end end
        for k = 1, 40 do held[#held + 1] = blt.full({k}, v) end
        for _, t in ipairs(held) do t:release() end
    end
    local function bits(t)
        if type(t) == "number" then return string.pack("d", t) end
        if t:numel() == 0 then return "[" .. table.concat(t:shape(), ",") .. "]" end
        local f = T.flatten(t:float():totable())
        local out = {"[" .. table.concat(t:shape(), ",") .. "]"}
        for i, v in ipairs(f) do out[i + 1] = string.pack("f", v) end
        return table.concat(out)
    end
    local function ids(shape, hi, seed) -- int32 ids in 0..hi-1 (0 when hi is 0: out of range)
        local n = 1
        for _, d in ipairs(shape) do n = n * d end
        local g = blt.Generator(seed)
        local flat = {}
        for i = 1, n do flat[i] = hi > 0 and g:integer(hi) - 1 or 0 end
        return blt.tensor(flat, "int32"):reshape(shape)
    end
    local function x(s, seed) return blt.randn(s, seed or 1):set_requires_grad() end
    local function numel(s) local n = 1 for _, d in ipairs(s) do n = n * d end return n end
    -- name = function(s) -> inputs, f [, must_fail]: f(inputs...) is the op on them;
    -- must_fail: the inputs are wrong (an id or index into an empty dimension), an error is due
    local ops = {
        exp = function(s) return {x(s)}, blt.exp end, tanh = function(s) return {x(s)}, blt.tanh end,
        log = function(s) return {blt.exp(x(s)):detach():set_requires_grad()}, blt.log end,
        sqrt = function(s) return {blt.exp(x(s)):detach():set_requires_grad()}, blt.sqrt end,
        silu = function(s) return {x(s)}, blt.silu end, gelu = function(s) return {x(s)}, blt.gelu end,
        sigmoid = function(s) return {x(s)}, blt.sigmoid end, relu = function(s) return {x(s)}, blt.relu end,
        neg = function(s) return {x(s)}, blt.neg end,
        scale = function(s) return {x(s)}, function(a) return blt.scale(a, 2, 1) end end,
        add = function(s) return {x(s), x({s[3]}, 2)}, blt.add end, sub = function(s) return {x(s), x(s, 2)}, blt.sub end,
        mul = function(s) return {x(s), x({s[2], s[3]}, 2)}, blt.mul end,
        div = function(s) return {x(s), blt.exp(x(s, 2)):detach():set_requires_grad()}, blt.div end,
        sum_all = function(s) return {x(s)}, blt.sum end, mean_all = function(s) return {x(s)}, blt.mean end,
        sum_1 = function(s) return {x(s)}, function(a) return blt.sum(a, 1) end end,
        sum_3 = function(s) return {x(s)}, function(a) return blt.sum(a, 3, true) end end,
        mean_2 = function(s) return {x(s)}, function(a) return blt.mean(a, 2) end end,
        mean_3 = function(s) return {x(s)}, function(a) return blt.mean(a, 3) end end,
        softmax = function(s) return {x(s)}, blt.softmax end, log_softmax = function(s) return {x(s)}, blt.log_softmax end,
        -- no classes: no distribution whose entropy could be given
        softmax_entropy = function(s) return {x(s)}, blt.softmax_entropy, s[3] == 0 and s[1] * s[2] > 0 end,
        -- a target into zero classes is out of range
        cross_entropy = function(s) return {x(s), ids({s[1], s[2]}, s[3], 3)}, blt.cross_entropy, s[3] == 0 and s[1] * s[2] > 0 end,
        cross_entropy_sum = function(s)
            return {x(s), ids({s[1], s[2]}, s[3], 3)}, function(a, t) return blt.cross_entropy(a, t, {reduction = "sum"}) end,
                   s[3] == 0 and s[1] * s[2] > 0
        end,
        cross_entropy_ignored = function(s) return {x(s), blt.full({s[1], s[2]}, -100, "int32")}, blt.cross_entropy end,
        rmsnorm = function(s) return {x(s), x({s[3]}, 2)}, blt.rmsnorm end,
        embedding = function(s) return {x({s[3], 4}), ids({s[1], s[2]}, s[3], 4)}, blt.embedding, s[3] == 0 and s[1] * s[2] > 0 end,
        rope = function(s) return {x({s[1], s[2], 2 * s[3]})}, function(a) return blt.rope(a, 1) end end,
        matmul = function(s) return {x(s), x({s[3], s[2]}, 2)}, blt.matmul end,
        bmm = function(s) return {x(s), x({s[1], s[3], s[2]}, 2)}, blt.matmul end,
        linear = function(s) return {x({s[1], s[2]}), x({s[3], s[2]}, 2), x({s[3]}, 3)}, blt.linear end,
        attention = function(s)
            return {x(s), x({s[1], s[2] + 1, s[3]}, 2), x({s[1], s[2] + 1, s[3]}, 3)},
                   function(q, k, v) return blt.attention(q, k, v, {heads = 1, causal = true}) end
        end,
        attention_keys = function(s)
            return {x({s[1], 2, s[3]}), x(s, 2), x(s, 3)}, function(q, k, v) return blt.attention(q, k, v, {heads = 1}) end
        end,
        concat_1 = function(s) return {x(s), x(s, 2)}, function(a, b) return blt.concat({a, b}, 1) end end,
        concat_3 = function(s) return {x(s), x(s, 2)}, function(a, b) return blt.concat({a, b}, 3) end end,
        gather = function(s)
            return {x(s), ids({s[1], 2, s[3]}, s[2], 5)}, function(a, i) return blt.gather(a, 2, i) end,
                   s[2] == 0 and s[1] * s[3] > 0
        end,
        index_select = function(s) return {x(s), ids({3}, s[2], 6)}, function(a, i) return blt.index_select(a, 2, i) end, s[2] == 0 end,
        segment_maxpool = function(s) return {x(s), blt.full({s[1], 1}, s[2], "int32")}, blt.segment_maxpool end,
        narrow = function(s) return {x(s)}, function(a) return blt.narrow(a, 3, 1, s[3]) end end,
        transpose = function(s) return {x(s)}, function(a) return blt.transpose(a, 1, 3):contiguous() end end,
        reshape = function(s) return {x(s)}, function(a) return blt.reshape(a, {-1, s[3]}) end end,
        clone = function(s) return {blt.randn(s, 1)}, function(a) return a:clone() end end,
        contiguous = function(s) return {x(s)}, function(a) return blt.transpose(a, 2, 3):contiguous() end end,
        fill = function(s) return {blt.zeros(s)}, function(a) a:fill(3) return a end end,
        copy = function(s) return {blt.zeros(s), blt.randn(s, 2)}, function(a, b) a:copy(b) return a end end,
        float = function(s) return {ids(s, 3, 8)}, function(t) return t:float() end end,
        int = function(s) return {blt.randn(s, 1)}, function(a) return a:int() end end,
        item = function(s) return {blt.randn(s, 1)}, function(a) return a:item() end, true end, -- no element to give
        zeros = function(s) return {}, function() return blt.zeros(s) end end,
        ones = function(s) return {}, function() return blt.ones(s) end end,
        full = function(s) return {}, function() return blt.full(s, 2.5) end end,
        randn = function(s) return {}, function() return blt.randn(s, 3) end end,
        rand = function(s) return {}, function() return blt.Generator(3):rand(s) end end,
        tensor = function(s) return {}, function() return blt.tensor({}):reshape(s) end end,
        l2norm = function(s) return {blt.randn(s, 1)}, core.nn_l2norm end,
        count_ne = function(s) return {ids(s, 3, 7)}, function(t) return core.nn_count_ne(t, 1) end end,
    }
    -- the value of every output element when the op sums over nothing (nil: not a reduction)
    local empty_sum = function(_, inputs) return 0 end
    local want = {sum_all = empty_sum, sum_1 = empty_sum, sum_3 = empty_sum, mean_all = empty_sum, mean_2 = empty_sum,
                  mean_3 = empty_sum, matmul = empty_sum, bmm = empty_sum, attention_keys = empty_sum,
                  cross_entropy = empty_sum, cross_entropy_sum = empty_sum, cross_entropy_ignored = empty_sum,
                  l2norm = empty_sum, count_ne = empty_sum, segment_maxpool = empty_sum,
                  linear = function(_, inputs) return inputs[3] end} -- x @ w^T over nothing, plus the bias
    local shapes = {{0, 3, 4}, {2, 0, 4}, {2, 3, 0}, {0, 0, 0}, {1, 1, 0}}
    local names = {}
    for name in pairs(ops) do names[#names + 1] = name end
    table.sort(names)
    local cases, bad = 0, {}
    local function fail(where, why) bad[#bad + 1] = where .. ": " .. why end
    for _, name in ipairs(names) do
        for _, s in ipairs(shapes) do
            local where = ("%s on {%s}"):format(name, table.concat(s, ","))
            local runs = {}
            for r, v in ipairs({1e30, -7.5}) do
                pollute(v)
                local inputs, f, must_fail = ops[name](s)
                local ok, y = pcall(f, table.unpack(inputs))
                runs[r] = {ok = ok, y = y, out = ok and bits(y) or tostring(y), inputs = inputs, f = f, must_fail = must_fail}
            end
            cases = cases + 1
            local a, b = runs[1], runs[2]
            if a.ok ~= b.ok then fail(where, "succeeds once only")
            elseif not a.ok then
                if not a.out:find("blt%.[%w_]+: ") then fail(where, "an error not naming blt.<fn>: " .. a.out) end
            elseif a.must_fail then fail(where, "no error for these inputs (a check was skipped)")
            elseif a.out ~= b.out then fail(where, "the result depends on the memory pool's old contents (uninitialised)")
            else
                local empty_in = false
                for _, t in ipairs(a.inputs) do empty_in = empty_in or t:numel() == 0 end
                local w = want[name] and empty_in and want[name](s, a.inputs)
                if w then
                    local got = type(a.y) == "number" and {a.y} or T.flatten(a.y:totable())
                    local exp = type(w) ~= "number" and T.flatten(w:totable()) or nil
                    for i, g in ipairs(got) do
                        local e = exp and exp[(i - 1) % #exp + 1] or w
                        if g ~= e then fail(where, ("element %d is %s, want %s (over nothing)"):format(i, tostring(g), tostring(e))) break end
                    end
                end
                -- the gradients of every float input, against finite differences
                local grads = {}
                for _, t in ipairs(a.inputs) do grads[#grads + 1] = t.requires_grad or nil end
                if type(a.y) ~= "number" and #grads > 0 then
                    local okg, err, at = pcall(gradcheck.check, b.f, b.inputs, {max = 8})
                    if not okg then fail(where, "backward: " .. tostring(err))
                    elseif err > 1e-2 then fail(where, ("gradient error %.3g at %s"):format(err, tostring(at))) end
                end
            end
        end
    end
    none_bad(cases, 250, "op x zero-size shape cases: an error naming the op, or a defined result and gradient", bad)
end

-- ---- class 4: sampling from NaN / inf logits, at every sampling setting ----
-- NaN or +inf anywhere, or -inf everywhere: an error naming blt.generate; -inf on all but
-- some ids: one of those ids is drawn (at temperature 0 the largest).
do
    local generate = require "blt.generate"
    local ids = require "blt.ids"
    local function logits(f) local t = {} for i = 1, ids.VOCAB do t[i] = f(i - 1) end return t end
    local A, B = ids.OFFSET + 65, ids.OFFSET + 66 -- "A", "B"
    local vectors = {
        all_nan = {logits(function() return 0 / 0 end)},
        one_nan = {logits(function(id) return id == B and 0 / 0 or 0.5 end)},
        one_pos_inf = {logits(function(id) return id == A and math.huge or 0 end)},
        all_pos_inf = {logits(function() return math.huge end)},
        all_neg_inf = {logits(function() return -math.huge end)},
        mixed = {logits(function(id) return id == A and math.huge or id == B and 0 / 0 or -math.huge end)},
        neg_inf_but_two = {logits(function(id) return id == A and 2.0 or id == B and 1.0 or -math.huge end), {[A] = true, [B] = true}, A},
        neg_inf_but_one = {logits(function(id) return id == B and -3.0 or -math.huge end), {[B] = true}, B},
    }
    local settings = {}
    for _, t in ipairs {0, 0.5, 1, 2} do
        for _, k in ipairs {0, 1, 5} do
            for _, p in ipairs {1, 0.9, 0.1} do
                for _, eos in ipairs {true, false} do settings[#settings + 1] = {temperature = t, top_k = k, top_p = p, eos = eos} end
            end
        end
    end
    local names = {}
    for k in pairs(vectors) do names[#names + 1] = k end
    table.sort(names)
    local cases, bad = 0, {}
    for _, name in ipairs(names) do
        local v = vectors[name]
        for _, o in ipairs(settings) do
            local g = blt.Generator(1)
            local ok, id = pcall(generate.pick, v[1], o, g)
            cases = cases + 1
            local where = ("%s at temperature %g top_k %d top_p %g eos %s"):format(name, o.temperature, o.top_k, o.top_p, o.eos)
            if v[2] then
                if not ok or not v[2][id] then bad[#bad + 1] = where .. ": " .. tostring(id)
                elseif o.temperature == 0 and id ~= v[3] then bad[#bad + 1] = where .. ": greedy drew " .. id end
            elseif ok or not tostring(id):find("^blt%.generate: ") then
                bad[#bad + 1] = where .. ": " .. (ok and ("drew " .. tostring(id)) or tostring(id))
            end
        end
    end
    none_bad(cases, 576, "logits x sampling-setting cases: a clear error, or an id that can be drawn", bad)
end

-- ---- class 5: Generator:set_state takes exactly what state() gives ----
do
    local g = blt.Generator(7)
    local good = g:state()
    local z = ("0"):rep(16)
    local hostile = {
        all_zero = {z, z, z, z}, three = {good[1], good[2], good[3]}, five = {good[1], good[2], good[3], good[4], good[1]},
        number = {good[1], good[2], good[3], 1234567890123456}, short = {good[1], good[2], good[3], "abc"},
        long = {good[1], good[2], good[3], good[4] .. "0"}, not_hex = {good[1], good[2], good[3], ("g"):rep(16)},
        prefix_0x = {good[1], good[2], good[3], "0x" .. ("1"):rep(14)}, sign = {good[1], good[2], good[3], "-" .. ("1"):rep(15)},
        space = {good[1], good[2], good[3], " " .. ("1"):rep(15)}, hole = {good[1], nil, good[3], good[4]},
        empty = {}, not_table = "0123", boolean = {good[1], good[2], good[3], true},
    }
    local names = {}
    for k in pairs(hostile) do names[#names + 1] = k end
    table.sort(names)
    local bad = {}
    for _, name in ipairs(names) do
        local g2 = blt.Generator(7)
        local before = g2:state()
        local ok, err = pcall(g2.set_state, g2, hostile[name])
        local after = g2:state()
        if ok or not tostring(err):find("blt.Generator:set_state: ", 1, true) then bad[#bad + 1] = name .. ": " .. tostring(err)
        elseif table.concat(after) ~= table.concat(before) then bad[#bad + 1] = name .. ": the state changed anyway" end
    end
    none_bad(#names, 14, "invalid states are refused with a clear error, the state unchanged", bad)
    local g3 = blt.Generator(99)
    g3:set_state(good)
    T.is(g3:uniform(), g:uniform(), "a state from state() is accepted and continues the stream")
end

-- ---- classes 3, 6, 7: the scripts and readers given what they cannot use ----
-- Tiny checkpoints of every kind (two steps each).
local kinds = {}
do
    U.corpus(dir .. "/corpus.txt", 30000)
    local common = table.concat({"train.batch=2", "train.seq_len=32", "train.steps=2", "train.warmup=1", "train.threads=1",
        "eval.every=0", "eval.final_max_bytes=128", "out.checkpoint_every=0", "out.plot=false",
        "data.path=" .. q(dir .. "/corpus.txt"), "out.dir=" .. q(dir .. "/ck")}, " ")
    local small = "model.dim=16 model.heads=2 model.multiple_of=16 "
    local recipes = {
        {"bytelm", "train_bytelm", small .. "model.layers=1 model.window=16"},
        {"entropy", "train_entropy_model", small .. "model.layers=1 model.window=16"},
        {"bpe_lm", "train_bpe_lm", small .. "model.layers=1 model.window=16 bpe.vocab=300"},
        {"blt", "train_blt", small .. "model.global.dim=32 model.global.heads=2 model.global.layers=1 model.encoder.layers=1 "
            .. "model.decoder.layers=1 model.cross.heads=2 model.hash.buckets=64 model.encoder.window=16 "
            .. "model.decoder.window=16 patching.scheme=space"},
    }
    for _, r in ipairs(recipes) do
        local rc, out = U.sh(("%s experiments/%s.lua %s out.name=%s %s"):format(bin, r[2], r[3], r[1], common))
        local ck = dir .. "/ck/" .. r[1] .. "/checkpoint.h5"
        T.ok(rc == 0 and U.read(ck), "a tiny " .. r[1] .. " checkpoint", out)
        kinds[#kinds + 1] = {name = r[1], script = r[2], ck = ck}
    end
    -- the ByteLM's run with an SGD optimiser's state (the library has SGD; the scripts use AdamW)
    local run = checkpoint.load(kinds[1].ck)
    run.optim.kind, run.optim.v = "SGD", nil
    assert(core.mkdir(dir .. "/ck/sgd"))
    checkpoint.save(dir .. "/ck/sgd/checkpoint.h5", run)
    kinds[#kinds + 1] = {name = "sgd_state", ck = dir .. "/ck/sgd/checkpoint.h5"}
end

-- Runs a command under a time limit: status (124 when it hung), the stderr text. A FIFO
-- blocks forever; the limit is only long enough for a sanitizer build under load.
local LIMIT = os.getenv("BLT_SANITIZE") and 60 or 10
local function run(cmd)
    local err = dir .. "/stderr.txt"
    local rc = U.sh(("(timeout %d %s </dev/null >/dev/null 2>%s)"):format(LIMIT, cmd, q(err)))
    return rc, U.read(err) or ""
end
-- Why the stderr of a refused command is not one clear line (nil when it is).
local function unclear(rc, err)
    if rc == 124 then return ("hung (killed after %d s)"):format(LIMIT) end
    if rc ~= 2 then return "status " .. tostring(rc) end
    if err:find("stack traceback", 1, true) then return "a traceback" end
    if err:find("%.lua:%d+:") then return "a file:line position" end
    local lines = select(2, err:gsub("\n", ""))
    if lines ~= 1 then return lines .. " lines" end
    return nil
end

-- class 6: every script x a checkpoint of every kind: it works, or status 2 in one clear line
do
    local cases, bad = 0, {}
    local function check(what, rc, err)
        cases = cases + 1
        if rc ~= 0 then
            local why = unclear(rc, err)
            if why then bad[#bad + 1] = ("%s: %s:\n%s"):format(what, why, err) end
        end
    end
    for _, k in ipairs(kinds) do
        local ck = q(k.ck)
        local scripts = {
            generate = "scripts/generate.lua n=3 model=" .. ck .. " hi",
            evaluate = "scripts/evaluate.lua max_bytes=200 model=" .. ck .. " " .. q(dir .. "/corpus.txt"),
            inspect = "scripts/inspect.lua " .. ck,
            show_patches = "scripts/show_patches.lua scheme=entropy target=3 model=" .. ck .. " hello",
        }
        for name, cmd in pairs(scripts) do
            local rc, err = run(bin .. " " .. cmd)
            check(name .. " with a " .. k.name .. " checkpoint", rc, err)
        end
        for _, other in ipairs(kinds) do
            if other.script then for _, fork in ipairs {"", " --fork fork_" .. k.name .. "_" .. other.name} do
                local rc, err = run(("%s experiments/%s.lua --resume %s%s train.steps=3"):format(bin, other.script, ck, fork))
                check(("%s --resume%s with a %s checkpoint"):format(other.script, fork ~= "" and " --fork" or "", k.name), rc, err)
            end end
        end
    end
    none_bad(cases, 60, "script x checkpoint-kind cases: they work or say why in one line with status 2", bad)
end

-- class 4 end to end: a model whose logits overflow to inf/NaN (finite but huge head
-- weights), at every sampling setting: generate.lua stops with status 2 and one line
do
    local saved = checkpoint.load(kinds[1].ck)
    saved.params.head:fill(3e38)
    checkpoint.save(dir .. "/overflow.h5", saved)
    local cases, bad = 0, {}
    for _, setting in ipairs {"temperature=0", "temperature=0.8", "temperature=1 top_k=5", "temperature=2 top_p=0.5",
                              "temperature=0 eos=false", "temperature=0.8 cache=false"} do
        local rc, err = run(("%s scripts/generate.lua n=5 model=%s %s hi"):format(bin, q(dir .. "/overflow.h5"), setting))
        cases = cases + 1
        if rc ~= 2 or not err:find("^generate: blt%.generate: ") or select(2, err:gsub("\n", "")) ~= 1 then
            bad[#bad + 1] = ("%s: status %s: %s"):format(setting, tostring(rc), err)
        end
    end
    none_bad(cases, 6, "sampling settings with overflowing logits: generate.lua says so with status 2", bad)
end

-- classes 3 and 7: every reader of a user-given file x a FIFO, a folder, and other bad
-- files: status 2 (or a Lua error) within the time limit, one line, no position.
do
    local bad_files = {fifo = dir .. "/bad/fifo", folder = dir .. "/bad/folder", text = dir .. "/bad/text.txt",
                       truncated = dir .. "/bad/trunc.h5", empty = dir .. "/bad/empty.h5", missing = dir .. "/bad/missing.h5",
                       metrics = dir .. "/ck/bytelm/metrics.h5"}
    assert(core.mkdir(dir .. "/bad/folder"))
    T.ok(os.execute("mkfifo " .. q(bad_files.fifo)), "mkfifo")
    U.write(bad_files.text, "hello\n")
    U.write(bad_files.truncated, U.read(kinds[1].ck):sub(1, 3000))
    U.write(bad_files.empty, "")
    local lm = q(kinds[1].ck)
    -- PATH stands for the bad file; ok lists the bad files a reader may also work with
    local readers = {
        {"generate model=", "scripts/generate.lua model=PATH hi"},
        {"evaluate model=", "scripts/evaluate.lua model=PATH " .. q(dir .. "/corpus.txt")},
        {"evaluate FILE", "scripts/evaluate.lua max_bytes=200 model=" .. lm .. " PATH", ok = {text = true, truncated = true, metrics = true}},
        {"inspect", "scripts/inspect.lua PATH"},
        {"show_patches model=", "scripts/show_patches.lua scheme=entropy target=3 model=PATH hello"},
        {"show_patches file=", "scripts/show_patches.lua scheme=space file=PATH", ok = {text = true, truncated = true, metrics = true, empty = true}},
        {"plot_runs", "scripts/plot_runs.lua out=" .. q(dir .. "/plot.png") .. " PATH", ok = {metrics = true}},
        {"train --resume", "experiments/train_bytelm.lua --resume PATH"},
        {"train --config", "experiments/train_bytelm.lua --config PATH"},
        {"train data.path=", "experiments/train_bytelm.lua model.dim=16 model.layers=1 model.heads=2 model.multiple_of=16 "
            .. "train.steps=1 train.batch=1 train.seq_len=8 out.dir=" .. q(dir .. "/runs") .. " data.path=PATH",
         ok = {text = true, truncated = true, metrics = true}},
        {"train_blt patching.entropy_model=", "experiments/train_blt.lua patching.scheme=entropy out.dir=" .. q(dir .. "/runs")
            .. " patching.entropy_model=PATH"},
    }
    local cases, bad = 0, {}
    local names = {}
    for k in pairs(bad_files) do names[#names + 1] = k end
    table.sort(names)
    for _, r in ipairs(readers) do
        for _, fname in ipairs(names) do
            do -- a file this reader can use (text for show_patches, say) may also work
                local rc, err = run(bin .. " " .. r[2]:gsub("PATH", (q(bad_files[fname]):gsub("%%", "%%%%"))))
                cases = cases + 1
                local why = unclear(rc, err)
                if rc == 0 and (r.ok or {})[fname] then why = nil end
                if not why and rc ~= 0 and not err:find(bad_files[fname], 1, true) then why = "the message does not name the path" end
                if why then bad[#bad + 1] = ("%s with a %s: %s:\n%s"):format(r[1], fname, why, err) end
            end
        end
    end
    none_bad(cases, 77, "script reader x bad file cases: status 2 in time, one line naming the path, no position", bad)

    -- class 7 for every script in scripts/ and experiments/ x bad settings
    local settings = {"nosuchkey=1", "--config " .. q(bad_files.fifo), "--config " .. q(bad_files.folder),
                      "--config " .. q(bad_files.text), "--resume " .. q(bad_files.truncated)}
    local scases, sbad = 0, {}
    for _, script in ipairs(U.scripts()) do
        for _, a in ipairs(settings) do
            local rc, err = run(("%s %s %s"):format(bin, script, a))
            scases = scases + 1
            local why = unclear(rc, err)
            if why then sbad[#sbad + 1] = ("%s %s: %s:\n%s"):format(script, a, why, err) end
        end
    end
    none_bad(scases, 50, "script x bad setting cases: status 2 in one line, no position", sbad)

    -- the library's readers, each in a process of its own (a blocked open would hang this one)
    local probe = dir .. "/probe.lua"
    U.write(probe, [[
local reader, path = ...
local util, core = require "blt.util", require "blt.core"
local calls = {
    h5_open = function() return core.h5_open(path) end,
    ["checkpoint.load"] = function() return require("blt.checkpoint").load(path) end,
    ["checkpoint.read_metrics"] = function() return require("blt.checkpoint").read_metrics(path) end,
    ["data.open"] = function() return require("blt.data").open(path) end,
    hash_file = function() return assert(core.hash_file(path)) end,
    ["util.read_file"] = function() return assert(util.read_file(path)) end,
    ["util.open_read"] = function() return assert(util.open_read(path)) end,
    ["config readable"] = function() return require("blt.config").check({f = path}, {f = "readable"}, {f = ""}) end,
    ["entropy.load_model"] = function() return require("blt.entropy").load_model(path) end,
}
local ok, err = pcall(calls[reader])
if ok then os.exit(0) end
io.stderr:write(tostring(err), "\n")
os.exit(2)
]])
    local lib = {"h5_open", "checkpoint.load", "checkpoint.read_metrics", "data.open", "hash_file", "util.read_file",
                 "util.open_read", "config readable", "entropy.load_model"}
    local lcases, lbad = 0, {}
    for _, name in ipairs(lib) do
        for _, fname in ipairs {"fifo", "folder"} do
            local rc, err = run(("%s %s %s %s"):format(bin, q(probe), q(name), q(bad_files[fname])))
            lcases = lcases + 1
            if rc ~= 2 or not err:find(bad_files[fname], 1, true) then
                lbad[#lbad + 1] = ("%s with a %s: status %s: %s"):format(name, fname, tostring(rc), err)
            end
        end
    end
    none_bad(lcases, 18, "library reader x {FIFO, folder} cases: an error naming the path, without blocking", lbad)
end

U.cleanup(dir)
T.done()
