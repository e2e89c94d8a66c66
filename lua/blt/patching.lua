-- Patching schemes (docs/model.md): patchers, patch statistics, threshold calibration.
--
--   local patching = require "blt.patching"
--   local p = patching.patcher{scheme = "space"}
--   p:lengths("Hi there, you!")            --> {1, 3, 6, 5}, true   (BOS patch first; s[N])
--   local e = patching.patcher{scheme = "entropy", threshold = 1.3354}
--   e:lengths(row, entropies)              -- entropies: one per token (Lua array or float32 [N])
--   local lengths, ids, counts, next = p:batch(ids_BxN [, entropies_BxN])
--
-- A row is a Lua string (BOS then byte + OFFSET, blt.ids), a Lua array of ids, or an int32 tensor [N].
-- Flags and lengths come back as Lua arrays (flags[1] is s[0]); patch ids are 0-based
-- values, like every id inside the framework. See docs/patching.md.
local core = require "blt.core"
local util = require "blt.util"
local tokens = require "blt.ids"

local patching = {}

local schemes = require "blt.schemes"

local KNOWN = {"scheme", "size", "threshold", "delta", "max_patch_len", "entropy_model"}
-- Which options each scheme takes, from its registry entry (blt.schemes): its own, and
-- entropy_model when it needs entropies; a function scheme takes max_patch_len and entropy_model.
local function applies(kind)
    if kind == "function" then return {entropy_model = true} end
    local s = schemes.get(kind)
    local t = {entropy_model = s.needs_entropy or nil}
    for k in pairs(s.options) do t[k] = true end
    return t
end
local function builtin_names()
    local t = {}
    for _, n in ipairs(schemes.names()) do if schemes.get(n).kernel then t[#t + 1] = n end end
    return table.concat(t, ", ")
end

local function fail(level, fmt, ...) error(fmt:format(...), level + 1) end

local function check_keys(fn, opts, known, level)
    if type(opts) ~= "table" then fail(level + 1, "%s: expected an option table, got %s", fn, type(opts)) end
    util.check_keys(fn, opts, known, level + 1)
end

local function is_int(x) return math.type(x) == "integer" or (type(x) == "number" and x == math.floor(x) and x == x) end

local function check_nonneg(fn, key, v, level)
    if type(v) ~= "number" or v ~= v or v < 0 then
        fail(level + 1, "%s: %s must be a number >= 0, got %s", fn, key, tostring(v))
    end
end

-- A Lua array of ids from a row (string, array, int32 tensor [N]).
local function row_array(input)
    local ty = type(input)
    if ty == "string" then
        return tokens.row(input)
    elseif ty == "table" then
        return input
    elseif core.is_tensor(input) then
        return input:totable()
    end
    error(("patching: a row must be a string, an array of ids or an int32 tensor, got %s"):format(ty), 3)
end

local function row_length(input)
    if type(input) == "string" then return #input + 1 end
    if type(input) == "table" then return #input end
    return input:numel()
end

local function ent_array(e)
    if e == nil or type(e) == "table" then return e end
    return e:totable()
end

local Patcher = {}
Patcher.__index = Patcher
Patcher.__name = "blt.patching.Patcher"

function Patcher:__tostring()
    if self.fn then
        return ("Patcher(lua function%s)"):format(self.options.max_patch_len
            and (", max_patch_len=" .. self.options.max_patch_len) or "")
    end
    return "Patcher" .. tostring(self.c):match("%b()")
end

--- patching.patcher{scheme=, size=, threshold=, delta=, max_patch_len=, entropy_model=}
-- scheme: "fixed" (size k), "space", "entropy" (threshold θ), "entropy_delta" (delta θ_r,
-- optional threshold θ for the combined form), "byte", or a Lua function
-- f(row, entropies) -> flags (see docs/patching.md). max_patch_len m splits longer patches.
-- entropy_model: computes entropies when a call gives none: a function(input) or an object
-- with :entropies(input); input is what the patcher was given (a row, or ids [B,N] in
-- :batch), the result one entropy per token (Lua array or float32 [N], or [B,N]).
function patching.patcher(opts)
    local fn = "patching.patcher"
    check_keys(fn, opts, KNOWN, 2)
    local scheme = opts.scheme
    local kind, reg
    if type(scheme) == "function" then
        kind = "function"
    elseif type(scheme) == "string" and schemes.known(scheme) and not schemes.is_file(scheme) then
        kind, reg = scheme, schemes.get(scheme)
        if not reg.kernel then -- a registered Lua scheme: its rule, with its default options
            kind, scheme = "function", schemes.rule(reg, reg.options)
        end
    elseif scheme == nil then
        fail(2, "%s: scheme is required (%s, or a function)", fn, builtin_names())
    else
        fail(2, "%s: unknown scheme '%s' (known: %s, or a function)", fn, tostring(scheme), builtin_names())
    end
    local APPLIES = applies(kind)
    for _, k in ipairs(KNOWN) do
        if k ~= "scheme" and k ~= "max_patch_len" and opts[k] ~= nil and not APPLIES[k] then
            fail(2, "%s: option '%s' does not apply to scheme '%s'", fn, k, kind == "function" and "(function)" or kind)
        end
    end
    if kind == "fixed" then
        if opts.size == nil then fail(2, "%s: scheme 'fixed' needs size (the patch length k)", fn) end
        if not is_int(opts.size) or opts.size < 1 then
            fail(2, "%s: size must be an integer >= 1, got %s", fn, tostring(opts.size))
        end
    end
    if kind == "entropy" and opts.threshold == nil then fail(2, "%s: scheme 'entropy' needs threshold", fn) end
    if kind == "entropy_delta" and opts.delta == nil then fail(2, "%s: scheme 'entropy_delta' needs delta", fn) end
    if opts.threshold ~= nil then check_nonneg(fn, "threshold", opts.threshold, 2) end
    if opts.delta ~= nil then check_nonneg(fn, "delta", opts.delta, 2) end
    local m = opts.max_patch_len
    if m ~= nil and (not is_int(m) or m < 1) then
        fail(2, "%s: max_patch_len must be an integer >= 1, got %s", fn, tostring(m))
    end
    local em = opts.entropy_model
    if em ~= nil and type(em) ~= "function" and not (type(em) == "table" or type(em) == "userdata") then
        fail(2, "%s: entropy_model must be a function or an object with :entropies(input), got %s", fn, type(em))
    end
    local self = setmetatable({options = {}, scheme = kind}, Patcher)
    for k, v in pairs(opts) do self.options[k] = v end
    self.needs_entropy = (reg and reg.needs_entropy) or false
    self.entropy_model = em
    if kind == "function" then
        self.fn = scheme
        self.c = core.patch_new{scheme = "given", max_patch_len = m and math.tointeger(m)}
    else
        self.c = core.patch_new{scheme = kind, size = opts.size and math.tointeger(opts.size),
            threshold = opts.threshold, delta = opts.delta, max_patch_len = m and math.tointeger(m)}
    end
    return self
end

--- p:entropies(input): the entropy model's entropies for input (error without a model).
function Patcher:entropies(input)
    local em = self.entropy_model
    if em == nil then
        error(("patching: scheme '%s' needs entropies (one per token) or a patcher with an entropy_model")
            :format(self.scheme), 3)
    end
    if type(em) == "function" then return em(input) end
    return em:entropies(input)
end

local function resolve_ent(self, input, ent)
    if ent == nil and (self.needs_entropy or (self.fn and self.entropy_model)) then ent = self:entropies(input) end
    return ent
end

-- Arguments for the core row functions: (c, input, ent, given).
local function row_args(self, input, ent)
    ent = resolve_ent(self, input, ent)
    if not self.fn then return self.c, input, ent end
    local row = row_array(input)
    local e = ent_array(ent)
    if e ~= nil and #e ~= #row then
        error(("patching: %d entropies for a row of %d tokens (want one per token)"):format(#e, #row), 3)
    end
    local flags = self.fn(row, e)
    if type(flags) ~= "table" then
        error(("patching: the scheme function returned %s, not an array of flags"):format(type(flags)), 3)
    end
    return self.c, row, nil, flags
end

--- p:flags(input [, entropies]) -> {s[0..N-1] as 0/1}, s[N] (boolean; nil when unknown)
function Patcher:flags(input, ent) return core.patch_flags(row_args(self, input, ent)) end

--- p:lengths(input [, entropies]) -> {patch lengths, BOS patch first}, s[N]
function Patcher:lengths(input, ent) return core.patch_lengths(row_args(self, input, ent)) end

--- p:patch_ids(input [, entropies]) -> {0-based patch id of each token}, s[N]
function Patcher:patch_ids(input, ent) return core.patch_ids(row_args(self, input, ent)) end

--- p:count(input [, entropies]) -> number of patches (BOS patch included), N, s[N]
function Patcher:count(input, ent) return core.patch_count(row_args(self, input, ent)) end

--- p:next_flag(input [, entropies]) -> s[N]: does the token after the row start a patch?
-- nil when a function scheme returned only N flags.
function Patcher:next_flag(input, ent)
    local _, _, nx = core.patch_count(row_args(self, input, ent))
    return nx
end

--- p:decoder_ids(input [, entropies]) -> decoder patch ids (docs/model.md), one per token:
-- patch_of(t+1) - 1, position N counted with s[N] (a new patch when unknown).
function Patcher:decoder_ids(input, ent)
    local lengths, nx = self:lengths(input, ent)
    local n = 0
    for i = 1, #lengths do n = n + lengths[i] end
    if nx == false and #lengths > 0 then lengths[#lengths] = lengths[#lengths] + 1 end
    return core.patch_decoder_ids(lengths, n)
end

--- p:batch(ids [, entropies]) -> lengths [B,Pmax] (zero-padded), patch ids [B,N], counts [B], next [B]
-- ids: int32 [B,N] (or [N], read as [1,N]); entropies float32 of the same shape. All
-- int32 tensors; next holds s[N] per row as 1/0, or -1 when unknown.
function Patcher:batch(ids, ent)
    if not core.is_tensor(ids) then
        error(("patching: batch needs an int32 tensor [B,N] of ids, got %s"):format(type(ids)), 2)
    end
    if ids:dim() == 1 then
        ids = ids:reshape{1, ids:numel()}
        if core.is_tensor(ent) and ent:dim() == 1 then ent = ent:reshape{1, ent:numel()} end
    end
    ent = resolve_ent(self, ids, ent)
    if type(ent) == "table" then ent = core.tensor(ent) end
    if not self.fn then return core.patch_batch(self.c, ids, ent) end
    if ids:dim() ~= 2 then
        error(("patching: batch needs ids [B,N], got %d dimensions"):format(ids:dim()), 2)
    end
    local rows = ids:totable()
    local erows = ent and ent:totable()
    local B, N = ids:size(1), ids:size(2)
    local given, all_next = {}, true
    for b = 1, B do
        local e = erows and erows[b]
        if e ~= nil and #e ~= N then
            error(("patching: entropies have %d columns for rows of %d tokens"):format(#e, N), 2)
        end
        local f = self.fn(rows[b], e)
        if type(f) ~= "table" or (#f ~= N and #f ~= N + 1) then
            error(("patching: the scheme function gave %s flags for row %d of %d tokens (want %d or %d)")
                :format(type(f) == "table" and #f or type(f), b, N, N, N + 1), 2)
        end
        local g = {}
        for t = 1, #f do
            local v = f[t]
            g[t] = (v == true or (type(v) == "number" and v ~= 0)) and 1 or 0
        end
        if #f == N then all_next = false end
        given[b] = g
    end
    if not all_next then
        for b = 1, B do given[b][N + 1] = nil end
    end
    local gt = B > 0 and core.tensor(given, "int32") or core.zeros({0, N + 1}, "int32")
    return core.patch_batch(self.c, ids, nil, gt)
end

--- p:check_incremental(input [, entropies]) -> true, or false, position, message.
-- For every prefix of the row (1..N tokens), the prefix's flags (and its s[N]) must equal the full row's.
-- O(N^2): for tests and for checking a scheme written in Lua.
function Patcher:check_incremental(input, ent)
    ent = resolve_ent(self, input, ent)
    local row = row_array(input)
    local e = ent_array(ent)
    local full, fnext = self:flags(row, e)
    local N = #row
    for L = 1, N do
        local prow, pe = table.move(row, 1, L, 1, {}), e and table.move(e, 1, L, 1, {})
        local f, nx = self:flags(prow, pe)
        for t = 1, L do
            if f[t] ~= full[t] then
                return false, t, ("flag of position %d differs on the prefix of %d tokens (%s, full row %s)")
                    :format(t, L, f[t], full[t])
            end
        end
        local want = L < N and full[L + 1] == 1 or (L == N and fnext)
        if nx ~= nil and (L < N or fnext ~= nil) and nx ~= want then
            return false, L + 1, ("next flag of the prefix of %d tokens is %s, the full row has %s")
                :format(L, tostring(nx), tostring(want))
        end
    end
    return true
end

--- patching.decoder_ids(lengths, N): decoder patch ids (docs/model.md) from patch lengths
-- (Lua array, int32 [P] or [B,P] zero-padded); positions at or past the lengths' sum count
-- as a new patch. {1,3,2,2}, 7 -> {0,0,0,1,1,2,2}.
function patching.decoder_ids(lengths, n) return core.patch_decoder_ids(lengths, n) end

--- patching.hash_buckets(ids, ngrams, buckets): hash n-gram buckets (docs/model.md).
-- ids: int32 [N] or [B,N] -> int32 [#ngrams,N] or [#ngrams,B,N]; a string or array -> one Lua
-- array per n. ngrams defaults to {3,4,5,6,7,8}.
function patching.hash_buckets(ids, ngrams, buckets)
    if buckets == nil and type(ngrams) == "number" then ngrams, buckets = nil, ngrams end
    return core.hash_buckets(ids, ngrams or {3, 4, 5, 6, 7, 8}, buckets)
end

--- patching.stats(list of length arrays | lengths tensor [B,P]) -> {mean, median, max, min,
-- patches, bytes, histogram = {[len] = count}}; the BOS patch (each array's first) is excluded.
function patching.stats(list)
    if core.is_tensor(list) then
        local rows = list:dim() == 1 and {list:totable()} or list:totable()
        list = {}
        for b, r in ipairs(rows) do
            local t = {}
            for _, v in ipairs(r) do
                if v == 0 then break end
                t[#t + 1] = v
            end
            list[b] = t
        end
    end
    if type(list) ~= "table" then error("patching.stats: expected a list of length arrays or a tensor", 2) end
    local hist, patches, bytes, maxl, minl = {}, 0, 0, 0, nil
    for i, lens in ipairs(list) do
        if type(lens) ~= "table" then
            error(("patching.stats: entry %d is %s, not an array of lengths"):format(i, type(lens)), 2)
        end
        for j = 2, #lens do
            local l = lens[j]
            hist[l] = (hist[l] or 0) + 1
            patches, bytes = patches + 1, bytes + l
            if l > maxl then maxl = l end
            if minl == nil or l < minl then minl = l end
        end
    end
    local median = 0
    if patches > 0 then
        local keys = {}
        for l in pairs(hist) do keys[#keys + 1] = l end
        table.sort(keys)
        local function kth(k) -- k-th smallest, 1-based
            local acc = 0
            for _, l in ipairs(keys) do
                acc = acc + hist[l]
                if acc >= k then return l end
            end
        end
        if patches % 2 == 1 then median = kth((patches + 1) // 2)
        else median = (kth(patches // 2) + kth(patches // 2 + 1)) / 2 end
    end
    return {mean = patches > 0 and bytes / patches or 0, median = median, max = maxl, min = minl or 0,
            patches = patches, bytes = bytes, histogram = hist}
end

local CAL_KNOWN = {"scheme", "target", "rows", "entropies", "tolerance", "threshold", "delta", "max_patch_len",
                   "max_iter"}

--- patching.sample_rows(n, k, seed) -> int32 [k]: k distinct row indices (0-based, sorted)
-- out of n, drawn with a seeded generator, so that calibration sees rows from the whole
-- split rather than its first bytes (a partial Fisher-Yates shuffle).
function patching.sample_rows(n, k, seed)
    local fn = "patching.sample_rows"
    if not is_int(n) or n < 1 then fail(2, "%s: n must be an integer >= 1, got %s", fn, tostring(n)) end
    if not is_int(k) or k < 1 or k > n then fail(2, "%s: k must be an integer in 1..%d, got %s", fn, n, tostring(k)) end
    if not is_int(seed) or seed < 0 then fail(2, "%s: seed must be an integer >= 0, got %s", fn, tostring(seed)) end
    local g = core.Generator(math.tointeger(seed))
    local idx, swapped = {}, {}
    for i = 0, k - 1 do
        local j = i + g:integer(n - i) - 1 -- uniform in [i, n)
        local vi, vj = swapped[i] or i, swapped[j] or j
        swapped[i], swapped[j] = vj, vi
        idx[i + 1] = vj
    end
    table.sort(idx)
    return core.tensor(idx, "int32")
end

--- patching.calibrate{scheme = "entropy"|"entropy_delta", target = 4.5, rows = ..., entropies = ...,
--                     tolerance = 0.01, threshold = (entropy_delta: fixed combined θ), max_patch_len =,
--                     max_iter = 100}
-- Finds by bisection the threshold (entropy: θ; entropy_delta: θ_r) whose mean patch size
-- (bytes per patch, BOS patch excluded) over rows is target within tolerance (relative).
-- rows: a list of rows (strings, arrays, int32 [N]) with a list of entropies (arrays or
-- float32 [N]), or ids int32 [B,N] with entropies float32 [B,N].
-- Returns threshold, mean size reached (the closest seen when the target is out of reach).
function patching.calibrate(opts)
    local fn = "patching.calibrate"
    check_keys(fn, opts, CAL_KNOWN, 2)
    local scheme = opts.scheme
    local reg = schemes.known(scheme) and not schemes.is_file(scheme) and schemes.get(scheme)
    if not (reg and reg.kernel and reg.calibrates) then
        fail(2, "%s: scheme must be 'entropy' or 'entropy_delta', got %s", fn, tostring(scheme))
    end
    local target = opts.target
    if type(target) ~= "number" or target ~= target or target <= 1 then
        fail(2, "%s: target must be a mean patch size > 1, got %s", fn, tostring(target))
    end
    local tol = opts.tolerance or 0.01
    if type(tol) ~= "number" or tol ~= tol or tol <= 0 then
        fail(2, "%s: tolerance must be a number > 0, got %s", fn, tostring(tol))
    end
    if opts.threshold ~= nil then
        if scheme ~= "entropy_delta" then fail(2, "%s: threshold is what 'entropy' calibrates; do not give it", fn) end
        check_nonneg(fn, "threshold", opts.threshold, 2)
    end
    if opts.delta ~= nil then fail(2, "%s: delta is what 'entropy_delta' calibrates; do not give it", fn) end
    local m = opts.max_patch_len
    if m ~= nil and (not is_int(m) or m < 1) then
        fail(2, "%s: max_patch_len must be an integer >= 1, got %s", fn, tostring(m))
    end
    local max_iter = opts.max_iter or 100
    local rows, ents = opts.rows, opts.entropies
    if rows == nil or ents == nil then fail(2, "%s: rows and entropies are required", fn) end

    -- rows as (ids, entropies) tensors, converted once
    local batch = core.is_tensor(rows)
    local R, E = {}, {}
    if batch then
        if not core.is_tensor(ents) then fail(2, "%s: rows is a tensor, so entropies must be a float32 tensor", fn) end
        if rows:dim() == 1 then rows = rows:reshape{1, rows:numel()} end
        if ents:dim() == 1 then ents = ents:reshape{1, ents:numel()} end
    else
        if type(rows) ~= "table" or type(ents) ~= "table" then
            fail(2, "%s: rows and entropies must be lists (or tensors [B,N])", fn)
        end
        if #rows ~= #ents then fail(2, "%s: %d rows but %d entropy lists", fn, #rows, #ents) end
        for i, r in ipairs(rows) do
            if type(r) == "string" then r = core.patch_text_ids(r)
            elseif type(r) == "table" then r = core.tensor(r, "int32") end
            local e = ents[i]
            if type(e) == "table" then e = core.tensor(e) end
            if row_length(r) ~= (core.is_tensor(e) and e:numel() or -1) then
                fail(2, "%s: row %d has %d tokens but %s entropies", fn, i, row_length(r),
                    core.is_tensor(e) and e:numel() or type(e))
            end
            R[i], E[i] = r, e
        end
    end

    local function mean_at(x)
        local c = core.patch_new{scheme = scheme, max_patch_len = m and math.tointeger(m),
            threshold = scheme == "entropy" and x or opts.threshold, delta = scheme == "entropy_delta" and x or nil}
        local patches, bytes = 0, 0
        if batch then
            local _, _, counts = core.patch_batch(c, rows, ents)
            for _, k in ipairs(counts:totable()) do patches = patches + k - 1 end
            bytes = rows:size(1) * math.max(rows:size(2) - 1, 0)
        else
            for i = 1, #R do
                local k, n = core.patch_count(c, R[i], E[i])
                patches, bytes = patches + math.max(k - 1, 0), bytes + math.max(n - 1, 0)
            end
        end
        if patches == 0 then return math.huge end
        return bytes / patches
    end

    local best_x, best_m = 0, mean_at(0)
    local function consider(x, mx)
        if math.abs(mx - target) < math.abs(best_m - target) then best_x, best_m = x, mx end
        return math.abs(mx - target) <= tol * target
    end
    if consider(0, best_m) or best_m > target then return best_x, best_m end
    -- mean size grows with the threshold: find hi with mean(hi) >= target
    local lo, hi = 0.0, 1.0
    while true do
        local mh = mean_at(hi)
        if consider(hi, mh) then return best_x, best_m end
        if mh >= target then break end
        if hi > 1e6 then return best_x, best_m end -- the target is out of reach
        lo, hi = hi, hi * 2
    end
    for _ = 1, max_iter do
        local mid = (lo + hi) / 2
        local mm = mean_at(mid)
        if consider(mid, mm) then break end
        if mm < target then lo = mid else hi = mid end
        if hi - lo <= 1e-12 * math.max(1, hi) then break end
    end
    return best_x, best_m
end

return patching
