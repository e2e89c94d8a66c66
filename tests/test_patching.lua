package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local blt = require "blt"
local core = require "blt.core"
local patching = require "blt.patching"

local function join(t) return table.concat(t, ",") end
local function same(got, want, name) return T.is(join(got), join(want), name) end

-- deterministic pseudo-random numbers (independent of Lua's generator)
local function lcg(seed)
    local s = seed
    return function(n) -- integer in 0..n-1
        s = (s * 6364136223846793005 + 1442695040888963407) & 0x7fffffffffffffff
        return (s >> 33) % n
    end
end

local function random_text(rnd, len)
    local pieces = {"the", "cat", "sat", " ", " ", "  ", ", ", ".\n", "é", "日本", "42", "x", "\0", "\xff", "\x80",
                    "Zebra", "-", "ok!"}
    local out, n = {}, 0
    while n < len do
        local p = pieces[rnd(#pieces) + 1]
        out[#out + 1] = p
        n = n + #p
    end
    return table.concat(out):sub(1, len)
end

local function random_entropies(rnd, n)
    local e = {}
    for i = 1, n do e[i] = rnd(5000) / 1000 end -- 0..5 nats
    return e
end

local function sum(t)
    local s = 0
    for _, v in ipairs(t) do s = s + v end
    return s
end

-------------------------------------------------------------------------------
-- docs/model.md: patching test vectors
-------------------------------------------------------------------------------
local space = patching.patcher{scheme = "space"}
same(space:lengths("Hi there, you!"), {1, 3, 6, 5}, "space: 'Hi there, you!' -> [1,3,6,5]")
same(space:lengths("ab  cd"), {1, 3, 3}, "space: 'ab  cd' -> [1,3,3]")
T.is(space:next_flag("Hi there, you!"), true, "space: s[N] after '!' (space-like after a word byte) is 1")
T.is(space:next_flag("ab  cd"), false, "space: s[N] after a word byte is 0")

local ent7 = {3.0, 2.5, 0.4, 0.2, 1.9, 0.3, 0.1}
local row7 = {1, 76, 105, 112, 112, 115, 36}
local entropy = patching.patcher{scheme = "entropy", threshold = 1.3354}
same(entropy:lengths(row7, ent7), {1, 1, 3, 2}, "entropy: spec example lengths [1,1,3,2]")
same(entropy:flags(row7, ent7), {1, 1, 1, 0, 0, 1, 0}, "entropy: starts at 0, 1, 2, 5")
T.is(entropy:next_flag(row7, ent7), false, "entropy: s[N] = e[N-1] > θ (0.1: no)")
same(entropy:lengths(row7, blt.tensor(ent7)), {1, 1, 3, 2}, "entropy: entropies as a float32 tensor")

local fixed4 = patching.patcher{scheme = "fixed", size = 4}
same(fixed4:flags("abcdefghij"), {1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0}, "fixed 4: starts at 0, 1, 5, 9")
same(fixed4:lengths("abcdefghij"), {1, 4, 4, 2}, "fixed 4: lengths over 10 bytes")
T.is(fixed4:next_flag("abcdefgh"), true, "fixed 4: s[N] on the stride")
T.is(fixed4:next_flag("abcdefghi"), false, "fixed 4: s[N] off the stride")

same(patching.patcher{scheme = "byte"}:lengths("abc"), {1, 1, 1, 1}, "byte: every token its own patch")

-- entropy_delta: s[2] = 1; s[p] = e[p-1] - e[p-2] > θ_r (p >= 3)
local ed = {1.0, 0.5, 0.9, 3.0, 2.0, 2.6, 0.1, 0.3}
local row8 = {1, 5, 6, 7, 8, 9, 10, 11}
local delta = patching.patcher{scheme = "entropy_delta", delta = 0.5}
-- p=3: e2-e1 = 0.4 no; p=4: e3-e2 = 2.1 yes; p=5: -1 no; p=6: 0.6 yes; p=7: -2.5 no
same(delta:flags(row8, ed), {1, 1, 1, 0, 1, 0, 1, 0}, "entropy_delta: starts at 0,1,2,4,6")
T.is(delta:next_flag(row8, ed), false, "entropy_delta: s[N] = e[N-1]-e[N-2] > θ_r (0.2: no)")
local comb = patching.patcher{scheme = "entropy_delta", delta = 0.5, threshold = 2.8}
same(comb:flags(row8, ed), {1, 1, 1, 0, 1, 0, 0, 0}, "entropy_delta combined: e[p-1] > θ as well")
same(patching.patcher{scheme = "entropy_delta", delta = 0}:flags({1, 5, 6}, {5, 5, 5}), {1, 1, 1},
    "entropy_delta: s[2] = 1 whatever the entropies")

-------------------------------------------------------------------------------
-- docs/model.md: hash n-gram test vector
-------------------------------------------------------------------------------
local want_hash = {
    [3] = {443987, 124875, 393970, 386145, 358223, 190185},
    [4] = {437197, 433869, 117936, 254402, 246577, 30240},
    [8] = {172383, 205585, 456240, 129346, 299568, 322649},
}
local h = patching.hash_buckets("Hello", {3, 4, 8}, 500002)
same(h[1], want_hash[3], "hash n=3: spec test vector")
same(h[2], want_hash[4], "hash n=4: spec test vector")
same(h[3], want_hash[8], "hash n=8: spec test vector")
same(patching.hash_buckets({1, 76, 105, 112, 112, 115}, {8}, 500002)[1], want_hash[8], "hash from an id array")
do
    local ids = blt.tensor({{1, 76, 105, 112, 112, 115}, {1, 76, 105, 112, 112, 115}}, "int32")
    local hb = patching.hash_buckets(ids, {3, 4, 8}, 500002)
    T.is(join(hb:shape()), "3,2,6", "hash of [B,N]: shape [#n,B,N]")
    local tb = hb:totable()
    same(tb[1][2], want_hash[3], "hash [B,N]: n=3 of row 2")
    same(tb[3][1], want_hash[8], "hash [B,N]: n=8 of row 1")
    T.is(join(patching.hash_buckets(ids, 1000):shape()), "6,2,6", "hash: default n-grams {3..8}")
    -- a non-contiguous batch gives the same buckets
    local tt = blt.tensor({{1, 1}, {76, 76}, {105, 105}, {112, 112}, {112, 112}, {115, 115}}, "int32"):transpose(1, 2)
    same(patching.hash_buckets(tt, {4}, 500002):totable()[1][2], want_hash[4], "hash of a non-contiguous [B,N]")
    -- the window is the last n ids: a change at t moves buckets at t..t+n-1 only
    local a = patching.hash_buckets({1, 5, 6, 7, 8, 9, 10, 11}, {3}, 97)[1]
    local b = patching.hash_buckets({1, 5, 6, 99, 8, 9, 10, 11}, {3}, 97)[1]
    local moved = {}
    for t = 1, 8 do moved[t] = a[t] == b[t] and 0 or 1 end
    same(moved, {0, 0, 0, 1, 1, 1, 0, 0}, "hash n=3: changing token t affects buckets t..t+2 only")
    -- a large sum wraps and reads as a negative int64: floor modulo stays in 0..B-1
    local hb2 = patching.hash_buckets({259, 259, 259, 259, 259, 259, 259, 259}, {8}, 7)[1]
    local ok = true
    for _, v in ipairs(hb2) do ok = ok and v >= 0 and v < 7 end
    T.ok(ok, "hash buckets stay in 0..B-1 under wraparound")
    -- against a Lua reference: Lua 5.4 integers wrap like uint64 read as int64, and % is floor modulo
    local function ref(row, n, B)
        local out = {}
        for t = 1, #row do
            local h = 0
            for k = n - 1, 0, -1 do h = h * 1000000007 + (row[t - n + 1 + k] or 0) end
            out[t] = h % B
        end
        return out
    end
    local rnd = lcg(77)
    local row = {1}
    for i = 2, 700 do row[i] = rnd(260) end
    local all = true
    for _, B in ipairs{1, 2, 3, 97, 500002, 2147483647} do
        local got = patching.hash_buckets(row, {1, 2, 3, 5, 8, 13}, B)
        for i, n in ipairs{1, 2, 3, 5, 8, 13} do
            if join(got[i]) ~= join(ref(row, n, B)) then
                all = false
                T.diag("hash mismatch for n=" .. n .. ", B=" .. B)
            end
        end
    end
    T.ok(all, "hash buckets equal a Lua reference (700 tokens, n up to 13, B from 1 to 2^31-1)")
end

-------------------------------------------------------------------------------
-- UTF-8 and edge texts (space scheme: lead bytes 0xC0-0xFF are space-like, §2)
-------------------------------------------------------------------------------
same(space:lengths("héllo wörld"), {1, 2, 5, 2, 4}, "space: multibyte, a lead byte after a letter ends a patch")
same(space:lengths("日本"), {1, 4, 2}, "space: CJK bytes")
same(space:lengths("a\xffb"), {1, 2, 1}, "space: invalid byte 0xFF is space-like")
same(space:lengths("\x80\x80"), {1, 2}, "space: stray continuation bytes are word bytes")
same(space:lengths("a\0b"), {1, 2, 1}, "space: NUL byte (id 4) is space-like")
same(space:lengths("  ab"), {1, 4}, "space: leading spaces attach to the next word")
same(space:lengths("a"), {1, 1}, "space: 1-byte text")
same(space:lengths(""), {1}, "space: empty text is the BOS patch")
T.is(space:next_flag(""), true, "empty text: s[1] = 1")
same(space:lengths({1, 69, 70, 2, 69, 2, 2}), {1, 3, 2, 1}, "space: a patch always ends at EOS")
same(fixed4:lengths(""), {1}, "fixed: empty text")
same(fixed4:lengths("a"), {1, 1}, "fixed: 1-byte text")
same(entropy:lengths("", {2.0}), {1}, "entropy: empty text (one entropy, for BOS)")
same(entropy:lengths("a", {0.0, 0.0}), {1, 1}, "entropy: 1-byte text starts a patch anyway")
same(entropy:flags("日本\0", random_entropies(lcg(1), 8)), entropy:flags(core.patch_text_ids("日本\0"),
    random_entropies(lcg(1), 8)), "text and int32 tensor rows agree")
same(space:patch_ids("Hi there, you!"), {0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3}, "patch ids are 0-based")

-------------------------------------------------------------------------------
-- max_patch_len
-------------------------------------------------------------------------------
same(patching.patcher{scheme = "space", max_patch_len = 3}:lengths("abcdefgh ij"), {1, 3, 3, 3, 2},
    "max_patch_len 3 splits a space patch of 9 into 3,3,3")
same(patching.patcher{scheme = "fixed", size = 10, max_patch_len = 4}:lengths("abcdefghijkl"), {1, 4, 4, 2, 2},
    "max_patch_len 4 on fixed 10: 4,4,2 then the remainder 2")
same(patching.patcher{scheme = "entropy", threshold = 9, max_patch_len = 2}:lengths("abcde", {0, 0, 0, 0, 0, 0}),
    {1, 2, 2, 1}, "max_patch_len on entropy")
T.is(patching.patcher{scheme = "space", max_patch_len = 2}:next_flag("abcd"), true,
    "max_patch_len: s[N] = 1 when the open patch is full")
T.is(patching.patcher{scheme = "space", max_patch_len = 2}:next_flag("abc"), false,
    "max_patch_len: s[N] = 0 when the open patch has room")
do
    local p = patching.patcher{scheme = "space", max_patch_len = 5}
    local lens = p:lengths(random_text(lcg(7), 3000))
    local mx = 0
    for _, l in ipairs(lens) do mx = math.max(mx, l) end
    T.ok(mx <= 5, "max_patch_len 5: no patch longer than 5 on random text", "max " .. mx)
end

-------------------------------------------------------------------------------
-- schemes written in Lua
-------------------------------------------------------------------------------
local function lua_space(row)
    local function cls(id)
        if id < 4 then return 0 end
        local b = id - 4
        if (b >= 48 and b <= 57) or (b >= 65 and b <= 90) or (b >= 97 and b <= 122) or (b >= 0x80 and b <= 0xBF) then
            return 2
        end
        return 1
    end
    local f = {1, 1}
    for p = 3, #row + 1 do -- f[p] is s[p-1]: reads ids at p-1 and p-2 (1-based)
        local a, b = cls(row[p - 2]), cls(row[p - 1])
        f[p] = b == 0 or (b == 1 and a == 2)
    end
    return f
end
local luasp = patching.patcher{scheme = lua_space}
do
    local txt = random_text(lcg(3), 2000)
    same(luasp:lengths(txt), space:lengths(txt), "a Lua scheme (space rewritten) equals the built-in one")
    T.is(luasp:next_flag(txt), space:next_flag(txt), "a Lua scheme giving N+1 flags knows s[N]")
    local short = patching.patcher{scheme = function(row)
        local f = {}
        for i = 1, #row do f[i] = (i % 3 == 0) and 1 or 0 end
        return f
    end}
    same(short:flags("abcdefg"), {1, 1, 1, 0, 0, 1, 0, 0}, "a Lua scheme with 0/1 flags; s[0], s[1] forced")
    T.is(short:next_flag("abcdefg"), nil, "a Lua scheme giving N flags: s[N] unknown (nil)")
    local got_e
    local withe = patching.patcher{scheme = function(row, e)
        got_e = e
        local f = {}
        for i = 1, #row + 1 do f[i] = i > 2 and e[i - 1] > 1 end
        return f
    end}
    same(withe:lengths(row7, ent7), {1, 1, 3, 2}, "a Lua scheme receives the entropies")
    T.is(#got_e, 7, "entropies handed to a Lua scheme have one per token")
    local ml = patching.patcher{scheme = function(row) return {} end, max_patch_len = 2}
    T.raises(function() ml:lengths("abc") end, "gave 0 flags for a row of 4 tokens", "Lua scheme: wrong flag count")
    local ml2 = patching.patcher{scheme = function(row) local f = {} for i = 1, #row do f[i] = 0 end return f end,
        max_patch_len = 2}
    same(ml2:lengths("abcde"), {1, 2, 2, 1}, "a Lua scheme with max_patch_len")
end

-------------------------------------------------------------------------------
-- incrementality: lengths of every prefix = the full row's lengths cut there
-------------------------------------------------------------------------------
local function cut(lengths, L)
    local out, acc = {}, 0
    for _, l in ipairs(lengths) do
        if acc >= L then break end
        out[#out + 1] = math.min(l, L - acc)
        acc = acc + l
    end
    return out
end

do
    local rnd = lcg(2024)
    local text = random_text(rnd, 2048)
    local row = core.patch_text_ids(text):totable()
    local ents = random_entropies(rnd, #row)
    local schemes = {
        {"fixed 4", patching.patcher{scheme = "fixed", size = 4}},
        {"fixed 7, max 3", patching.patcher{scheme = "fixed", size = 7, max_patch_len = 3}},
        {"space", space},
        {"space, max 6", patching.patcher{scheme = "space", max_patch_len = 6}},
        {"entropy", patching.patcher{scheme = "entropy", threshold = 2.5}},
        {"entropy, max 4", patching.patcher{scheme = "entropy", threshold = 4.0, max_patch_len = 4}},
        {"entropy_delta", patching.patcher{scheme = "entropy_delta", delta = 0.3}},
        {"entropy_delta combined", patching.patcher{scheme = "entropy_delta", delta = 0.3, threshold = 2}},
        {"byte", patching.patcher{scheme = "byte"}},
        {"Lua scheme", luasp},
    }
    for _, s in ipairs(schemes) do
        local name, p = s[1], s[2]
        local e = p.needs_entropy and ents or nil
        local full = p:lengths(row, e)
        local bad
        for L = 1, #row do
            local pe = e and table.move(e, 1, L, 1, {})
            local got = p:lengths(table.move(row, 1, L, 1, {}), pe)
            if join(got) ~= join(cut(full, L)) then bad = L break end
        end
        T.ok(not bad, "incremental (" .. name .. "): every prefix of a 2 KB text", bad and ("prefix " .. bad))
        local ok, pos, msg = p:check_incremental(row, e)
        T.ok(ok, "incremental (" .. name .. "): flags and s[N] of every prefix", msg)
    end
    -- an entropy scheme must not read e[t] for s[t]: changing e[t] leaves s[0..t] alone
    local e2 = table.move(ents, 1, #ents, 1, {})
    e2[100] = 99
    local f1, f2 = entropy:flags(row, ents), entropy:flags(row, e2)
    T.ok(join(table.move(f1, 1, 100, 1, {})) == join(table.move(f2, 1, 100, 1, {})) and f2[101] == 1,
        "entropy: e[t] changes s[t+1] only")
    -- a scheme that peeks ahead is caught
    local peek = patching.patcher{scheme = function(row)
        local f = {}
        for i = 1, #row do f[i] = (row[i + 1] or 0) == 36 end -- looks at the next token
        return f
    end}
    T.ok(not peek:check_incremental("a b c d e"), "check_incremental catches a scheme that looks ahead")
end

-------------------------------------------------------------------------------
-- batched path = per-row path
-------------------------------------------------------------------------------
do
    local rnd = lcg(99)
    local B, N = 6, 300
    local rows, erows = {}, {}
    for b = 1, B do
        rows[b] = core.patch_text_ids(random_text(rnd, N - 1)):totable()
        erows[b] = random_entropies(rnd, N)
    end
    rows[6][150] = 2 -- an EOS inside a row
    for t = 280, 300 do rows[5][t] = 0 end -- trailing padding
    local ids, ents = blt.tensor(rows, "int32"), blt.tensor(erows)
    local cases = {
        {"fixed", patching.patcher{scheme = "fixed", size = 5}},
        {"space", space},
        {"space, max 4", patching.patcher{scheme = "space", max_patch_len = 4}},
        {"entropy", patching.patcher{scheme = "entropy", threshold = 2.0}},
        {"entropy_delta", patching.patcher{scheme = "entropy_delta", delta = 0.5, threshold = 1}},
        {"byte", patching.patcher{scheme = "byte"}},
        {"Lua scheme", luasp},
    }
    for _, c in ipairs(cases) do
        local name, p = c[1], c[2]
        local e = p.needs_entropy and ents or nil
        local L, I, C, X = p:batch(ids, e)
        local Lt, It, Ct, Xt = L:totable(), I:totable(), C:totable(), X:totable()
        local ok, why = L:size(1) == B and I:size(2) == N, "shape"
        local pmax = 0
        for b = 1, B do
            local er = p.needs_entropy and erows[b] or nil
            local lens, nx = p:lengths(rows[b], er)
            local pid = p:patch_ids(rows[b], er)
            pmax = math.max(pmax, #lens)
            local padded = table.move(lens, 1, #lens, 1, {})
            for j = #lens + 1, L:size(2) do padded[j] = 0 end
            if join(Lt[b]) ~= join(padded) then ok, why = false, "lengths of row " .. b end
            if join(It[b]) ~= join(pid) then ok, why = false, "patch ids of row " .. b end
            if Ct[b] ~= #lens then ok, why = false, "count of row " .. b end
            if Xt[b] ~= (nx and 1 or 0) then ok, why = false, "next flag of row " .. b end
        end
        if L:size(2) ~= pmax then ok, why = false, "Pmax" end
        T.ok(ok, "batch = per row (" .. name .. ")", why)
    end
    -- a non-contiguous [B,N] and a 1-d row
    local tt = blt.tensor(rows, "int32"):transpose(1, 2):contiguous():transpose(1, 2)
    local L1 = space:batch(tt)
    local L2 = space:batch(ids)
    same(L1:reshape{-1}:totable(), L2:reshape{-1}:totable(), "batch of a non-contiguous [B,N]")
    local L3 = space:batch(core.patch_text_ids("Hi there, you!"))
    same(L3:totable()[1], {1, 3, 6, 5}, "batch of a 1-d row")
    local _, _, _, X = patching.patcher{scheme = function(r) return {} end}:batch(blt.zeros({2, 0}, "int32"))
    T.is(X:numel(), 2, "batch of empty rows")
end

-------------------------------------------------------------------------------
-- decoder alignment (docs/model.md)
-------------------------------------------------------------------------------
same(patching.decoder_ids({1, 3, 2, 2}, 7), {0, 0, 0, 1, 1, 2, 2}, "decoder ids: spec example")
do
    local lt = blt.tensor({{1, 3, 2, 2}, {1, 2, 0, 0}}, "int32")
    local d = patching.decoder_ids(lt, 7):totable()
    same(d[1], {0, 0, 0, 1, 1, 2, 2}, "decoder ids of a [B,P] tensor, row 1")
    same(d[2], {0, 0, 1, 1, 1, 1, 1}, "decoder ids, zero-padded row: past the sum is a new patch")
    -- against the definition patch_of(t+1) - 1, with s[N] for the last position
    local txt = random_text(lcg(5), 500)
    for _, p in ipairs{space, fixed4} do
        local pid, nx = p:patch_ids(txt)
        pid[#pid + 1] = pid[#pid] + (nx and 1 or 0)
        local want = {}
        for t = 1, #pid - 1 do want[t] = pid[t + 1] - 1 end
        same(p:decoder_ids(txt), want, "decoder ids = patch_of(t+1) - 1 (" .. tostring(p) .. ")")
    end
    T.raises(function() patching.decoder_ids({2, 3}, 4) end, "BOS patch must have length 1",
        "decoder ids: a first patch longer than 1 is rejected")
end

-------------------------------------------------------------------------------
-- statistics and calibration
-------------------------------------------------------------------------------
do
    local st = patching.stats{{1, 3, 6, 5}, {1, 2, 2}, {1}}
    T.near(st.mean, 18 / 5, 1e-12, "stats: mean excludes the BOS patch")
    T.is(st.median, 3, "stats: median")
    T.is(st.max, 6, "stats: max")
    T.is(st.histogram[2], 2, "stats: histogram")
    T.is(st.patches, 5, "stats: patch count")
    local st2 = patching.stats(blt.tensor({{1, 3, 6, 5}, {1, 2, 2, 0}}, "int32"))
    T.near(st2.mean, 18 / 5, 1e-12, "stats of a zero-padded lengths tensor")
    T.is(patching.stats{{1, 2, 4}}.median, 3, "stats: median of an even count")
end

do
    local rnd = lcg(11)
    local rows, ents = {}, {}
    for i = 1, 8 do
        rows[i] = random_text(rnd, 1999)
        -- smooth synthetic entropies: a random walk in 0..5 with bursts
        local e, x = {}, 2.0
        for t = 1, 2000 do
            x = math.max(0, math.min(5, x + (rnd(2001) - 1000) / 1000))
            e[t] = x + ((rnd(10) == 0) and 2 or 0)
        end
        ents[i] = e
    end
    for _, scheme in ipairs{"entropy", "entropy_delta"} do
        local thr, reached = patching.calibrate{scheme = scheme, target = 4.5, rows = rows, entropies = ents,
            tolerance = 0.02}
        T.ok(math.abs(reached - 4.5) <= 0.02 * 4.5, "calibrate " .. scheme .. ": mean patch size 4.5 within 2%",
            ("reached %.4f at %.6f"):format(reached, thr))
        local opts = {scheme = scheme}
        if scheme == "entropy" then opts.threshold = thr else opts.delta = thr end
        local p = patching.patcher(opts)
        local all = {}
        for i = 1, #rows do all[i] = p:lengths(rows[i], ents[i]) end
        T.near(patching.stats(all).mean, reached, 1e-9, "calibrate " .. scheme .. ": the patcher reproduces the size")
    end
    -- the batch form
    local ids = blt.tensor({core.patch_text_ids(rows[1]):totable(), core.patch_text_ids(rows[2]):totable()}, "int32")
    local thr, reached = patching.calibrate{scheme = "entropy", target = 3, rows = ids,
        entropies = blt.tensor({ents[1], ents[2]}), tolerance = 0.02}
    T.ok(math.abs(reached - 3) <= 0.06, "calibrate on [B,N] tensors", ("reached %.4f"):format(reached))
end

-------------------------------------------------------------------------------
-- entropy_model hook
-------------------------------------------------------------------------------
do
    local calls = 0
    local model = {entropies = function(self, input)
        calls = calls + 1
        if core.is_tensor(input) and input:dim() == 2 then
            return blt.tensor({ent7})
        end
        return ent7
    end}
    local p = patching.patcher{scheme = "entropy", threshold = 1.3354, entropy_model = model}
    same(p:lengths(row7), {1, 1, 3, 2}, "entropy_model object computes the entropies")
    local L = p:batch(blt.tensor({row7}, "int32"))
    same(L:totable()[1], {1, 1, 3, 2}, "entropy_model in batch")
    local pf = patching.patcher{scheme = "entropy", threshold = 1.3354, entropy_model = function() return ent7 end}
    same(pf:lengths(row7), {1, 1, 3, 2}, "entropy_model as a function")
    T.is(calls, 2, "the model is called once per call")
end

-------------------------------------------------------------------------------
-- bad arguments
-------------------------------------------------------------------------------
T.raises(function() patching.patcher{scheme = "space", sise = 3} end, "unknown option 'sise'", "unknown key")
T.raises(function() patching.patcher{scheme = "bpe"} end, "unknown scheme 'bpe'", "unknown scheme")
T.raises(function() patching.patcher{} end, "scheme is required", "missing scheme")
T.raises(function() patching.patcher{scheme = "fixed", size = 0} end, "size must be an integer >= 1, got 0", "size 0")
T.raises(function() patching.patcher{scheme = "fixed", size = 2.5} end, "size must be an integer", "size 2.5")
T.raises(function() patching.patcher{scheme = "fixed"} end, "needs size", "fixed without size")
T.raises(function() patching.patcher{scheme = "entropy", threshold = -1} end, "threshold must be a number >= 0, got %-1",
    "negative threshold")
T.raises(function() patching.patcher{scheme = "entropy", threshold = 0 / 0} end, "threshold must be a number >= 0",
    "NaN threshold")
T.raises(function() patching.patcher{scheme = "entropy_delta", delta = 0 / 0} end, "delta must be a number >= 0",
    "NaN delta")
T.raises(function() patching.patcher{scheme = "entropy"} end, "needs threshold", "entropy without threshold")
T.raises(function() patching.patcher{scheme = "space", threshold = 1} end, "'threshold' does not apply to scheme 'space'",
    "option of another scheme")
T.raises(function() patching.patcher{scheme = "space", max_patch_len = 0} end, "max_patch_len must be an integer >= 1",
    "max_patch_len 0")
T.raises(function() entropy:lengths(row7, {1, 2, 3}) end, "3 entropies for a row of 7 tokens",
    "entropies of the wrong length")
T.raises(function() entropy:lengths(row7) end, "needs entropies", "entropies missing")
T.raises(function() entropy:lengths(row7, {1, 2, 3, 0 / 0, 5, 6, 7}) end, "entropy at position 4 is NaN",
    "NaN entropy")
T.raises(function() space:lengths({1, 300}) end, "token id 300 at position 2 is outside 0..259", "id out of range")
T.raises(function() space:lengths(42) end, "must be a string, an array of ids or an int32 tensor", "bad row type")
T.raises(function() space:batch(blt.zeros({2, 3})) end, "int32", "batch of float ids")
T.raises(function() entropy:batch(blt.zeros({2, 3}, "int32"), blt.zeros({2, 4})) end, "do not match",
    "batch entropies of the wrong shape")
T.raises(function() patching.hash_buckets("abc", {0}, 10) end, "n%-gram size 1 %(0%)", "hash: n = 0")
T.raises(function() patching.hash_buckets("abc", {3}, 0) end, "bucket count 0", "hash: 0 buckets")
T.raises(function() patching.hash_buckets(blt.tensor({1, -2}, "int32"), {3}, 10) end, "negative", "hash: negative id")
T.raises(function() patching.stats{{1, 2}, 5} end, "entry 2", "stats: bad entry")
T.raises(function() patching.calibrate{scheme = "space", target = 4, rows = {}, entropies = {}} end,
    "scheme must be 'entropy' or 'entropy_delta'", "calibrate: bad scheme")
T.raises(function() patching.calibrate{scheme = "entropy", target = 4, rows = {"ab"}, entropies = {{1, 2}}} end,
    "row 1 has 3 tokens but 2 entropies", "calibrate: entropies of the wrong length")
T.raises(function() patching.calibrate{scheme = "entropy", target = 4, rows = {}, entropies = {}, bogus = 1} end,
    "unknown option 'bogus'", "calibrate: unknown key")
T.raises(function() core.patch_new{scheme = "fixed", size = 0} end, "blt.patch_new: size 0", "core: size 0")

T.done()
