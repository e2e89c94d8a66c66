-- blt.stats: the statistics the experiments report: mean, standard error, Student-t
-- intervals, a seeded bootstrap and paired differences. Pure Lua, no state: the
-- bootstrap draws from its own generator (splitmix64), so an interval depends only on
-- its data and seed, never on math.random or on what ran before.
local stats = {}

local function check_list(fn, xs, min)
    if type(xs) ~= "table" then error(("blt.stats.%s: expects a list of numbers, got %s"):format(fn, type(xs)), 3) end
    for i, x in ipairs(xs) do
        if type(x) ~= "number" then error(("blt.stats.%s: item %d is %s, not a number"):format(fn, i, type(x)), 3) end
    end
    if #xs < (min or 1) then error(("blt.stats.%s: needs at least %d numbers, got %d"):format(fn, min or 1, #xs), 3) end
end

function stats.mean(xs)
    check_list("mean", xs)
    local s = 0
    for _, x in ipairs(xs) do s = s + x end
    return s / #xs
end

-- Sample variance (n - 1 in the denominator) and standard deviation.
function stats.var(xs)
    check_list("var", xs, 2)
    local m, s = stats.mean(xs), 0
    for _, x in ipairs(xs) do s = s + (x - m) ^ 2 end
    return s / (#xs - 1)
end

function stats.sd(xs) return math.sqrt(stats.var(xs)) end

-- Standard error of the mean: sd / sqrt(n); nil for a single value (no spread to estimate).
function stats.se(xs)
    check_list("se", xs)
    if #xs < 2 then return nil end
    return stats.sd(xs) / math.sqrt(#xs)
end

-- ---- Student's t ----

-- log Gamma (Lanczos, g = 7, 9 terms: about 15 significant digits for x > 0).
local LANCZOS = {0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313,
                 -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6,
                 1.5056327351493116e-7}
local function lgamma(x)
    if x < 0.5 then return math.log(math.pi / math.abs(math.sin(math.pi * x))) - lgamma(1 - x) end
    x = x - 1
    local a, t = LANCZOS[1], x + 7.5
    for i = 1, 8 do a = a + LANCZOS[i + 1] / (x + i) end
    return 0.5 * math.log(2 * math.pi) + (x + 0.5) * math.log(t) - t + math.log(a)
end

-- Continued fraction of the regularized incomplete beta (Lentz's method).
local function betacf(a, b, x)
    local tiny = 1e-300
    local c, d = 1, 1 - (a + b) * x / (a + 1)
    if math.abs(d) < tiny then d = tiny end
    d = 1 / d
    local h = d
    for m = 1, 300 do
        local m2 = 2 * m
        local aa = m * (b - m) * x / ((a + m2 - 1) * (a + m2))
        d = 1 + aa * d; if math.abs(d) < tiny then d = tiny end
        c = 1 + aa / c; if math.abs(c) < tiny then c = tiny end
        d = 1 / d; h = h * d * c
        aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))
        d = 1 + aa * d; if math.abs(d) < tiny then d = tiny end
        c = 1 + aa / c; if math.abs(c) < tiny then c = tiny end
        d = 1 / d
        local del = d * c
        h = h * del
        if math.abs(del - 1) < 1e-16 then break end
    end
    return h
end

-- I_x(a, b)
local function ibeta(a, b, x)
    if x <= 0 then return 0 end
    if x >= 1 then return 1 end
    local lbt = lgamma(a + b) - lgamma(a) - lgamma(b) + a * math.log(x) + b * math.log(1 - x)
    if x < (a + 1) / (a + b + 2) then return math.exp(lbt) * betacf(a, b, x) / a end
    return 1 - math.exp(lbt) * betacf(b, a, 1 - x) / b
end

-- P(T <= t) for Student's t with df degrees of freedom (df > 0, not necessarily an integer).
function stats.t_cdf(t, df)
    if type(t) ~= "number" or type(df) ~= "number" or not (df > 0) then
        error(("blt.stats.t_cdf: needs a number t and df > 0, got %s, %s"):format(tostring(t), tostring(df)), 2)
    end
    local tail = 0.5 * ibeta(df / 2, 0.5, df / (df + t * t))
    return t >= 0 and 1 - tail or tail
end

-- The p-quantile of Student's t (0 < p < 1): bisection on t_cdf to the last bit.
function stats.t_quantile(p, df)
    if type(p) ~= "number" or not (p > 0 and p < 1) then
        error(("blt.stats.t_quantile: p must be in (0, 1), got %s"):format(tostring(p)), 2)
    end
    if type(df) ~= "number" or not (df > 0) then
        error(("blt.stats.t_quantile: df must be > 0, got %s"):format(tostring(df)), 2)
    end
    if p == 0.5 then return 0 end
    if p < 0.5 then return -stats.t_quantile(1 - p, df) end
    local lo, hi = 0, 1
    while stats.t_cdf(hi, df) < p do lo, hi = hi, hi * 2 end
    for _ = 1, 200 do
        local mid = 0.5 * (lo + hi)
        if mid == lo or mid == hi then break end
        if stats.t_cdf(mid, df) < p then lo = mid else hi = mid end
    end
    return 0.5 * (lo + hi)
end

-- The mean with its two-sided t interval at `level` (default 0.95): {n, mean, se, lo,
-- hi, level}; with one value se, lo and hi are nil (no interval from one seed).
function stats.t_interval(xs, level)
    check_list("t_interval", xs)
    level = level or 0.95
    if not (type(level) == "number" and level > 0 and level < 1) then
        error(("blt.stats.t_interval: level must be in (0, 1), got %s"):format(tostring(level)), 2)
    end
    local out = {n = #xs, mean = stats.mean(xs), level = level}
    if #xs >= 2 then
        out.se = stats.se(xs)
        local h = stats.t_quantile(0.5 + level / 2, #xs - 1) * out.se
        out.lo, out.hi = out.mean - h, out.mean + h
    end
    return out
end

-- ---- quantiles and the bootstrap ----

-- The p-quantile of xs by linear interpolation between order statistics (R's type 7,
-- numpy's default): position 1 + (n - 1) p of the sorted values.
function stats.quantile(xs, p)
    check_list("quantile", xs)
    local s = {}
    for i, x in ipairs(xs) do s[i] = x end
    table.sort(s)
    local h = 1 + (#s - 1) * p
    local i = math.floor(h)
    if i >= #s then return s[#s] end
    return s[i] + (h - i) * (s[i + 1] - s[i])
end

-- splitmix64 (Steele, Lea, Flood 2014): a 64-bit integer stream from a seed, on Lua's
-- wrapping 64-bit integers. rng() gives the next 64-bit value; rng:below(n) an integer
-- in [1, n] (the top 53 bits scaled: the bias is below 2^-40 for the n used here).
function stats.rng(seed)
    local state = math.tointeger(seed)
    if not state then error(("blt.stats.rng: the seed must be an integer, got %s"):format(tostring(seed)), 2) end
    local r = {}
    local function next64()
        state = state + 0x9E3779B97F4A7C15
        local z = state
        z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
        z = (z ~ (z >> 27)) * 0x94D049BB133111EB
        return z ~ (z >> 31)
    end
    function r.below(_, n) return math.floor(((next64() >> 11) / 2 ^ 53) * n) + 1 end
    return setmetatable(r, {__call = function() return next64() end})
end

-- Percentile bootstrap: statistic(sample) over `reps` resamples (with replacement, the
-- same size) of the items (any values: numbers, or tables such as one seed's records),
-- drawn from stats.rng(seed). Returns {lo, hi, level, reps, values = the sorted
-- statistics that were numbers, missing = how many resamples gave nil}. A statistic may
-- return nil (a fit that does not exist on that resample); those are counted, not
-- guessed.
function stats.bootstrap(items, statistic, o)
    if type(items) ~= "table" or #items == 0 then error("blt.stats.bootstrap: expects a non-empty list of items", 2) end
    if type(statistic) ~= "function" then error("blt.stats.bootstrap: statistic must be a function", 2) end
    o = o or {}
    local reps, level = o.reps or 2000, o.level or 0.95
    local rng = stats.rng(o.seed or 1)
    local vals, missing = {}, 0
    for _ = 1, reps do
        local sample = {}
        for i = 1, #items do sample[i] = items[rng:below(#items)] end
        local v = statistic(sample)
        if type(v) == "number" and v == v then vals[#vals + 1] = v else missing = missing + 1 end
    end
    table.sort(vals)
    local out = {level = level, reps = reps, values = vals, missing = missing}
    if #vals > 0 then
        out.lo, out.hi = stats.quantile(vals, (1 - level) / 2), stats.quantile(vals, (1 + level) / 2)
    end
    return out
end

-- ---- paired differences ----

-- Differences a[k] - b[k] over the keys both have (seeds), with their t interval:
-- {keys (sorted), diffs, n, mean, se, lo, hi, level, significant}. significant is true
-- only when the interval exists (n >= 2) and excludes zero.
function stats.paired(a, b, level)
    if type(a) ~= "table" or type(b) ~= "table" then error("blt.stats.paired: expects two tables keyed by seed", 2) end
    local keys = {}
    for k, v in pairs(a) do if type(v) == "number" and type(b[k]) == "number" then keys[#keys + 1] = k end end
    table.sort(keys, function(x, y)
        if type(x) == type(y) then return x < y end
        return tostring(x) < tostring(y)
    end)
    local diffs = {}
    for i, k in ipairs(keys) do diffs[i] = a[k] - b[k] end
    local out = {keys = keys, diffs = diffs, n = #diffs}
    if #diffs == 0 then return out end
    local ti = stats.t_interval(diffs, level)
    out.mean, out.se, out.lo, out.hi, out.level = ti.mean, ti.se, ti.lo, ti.hi, ti.level
    out.significant = ti.lo ~= nil and (ti.lo > 0 or ti.hi < 0)
    return out
end

-- "2.2285 ± 0.0031 (n=3)": a mean with its standard error and count ("2.2285 (n=1)").
function stats.format_mean(xs, fmt)
    fmt = fmt or "%.4f"
    if #xs == 0 then return "-" end
    local se = stats.se(xs)
    if not se then return (fmt .. " (n=1)"):format(xs[1]) end
    return (fmt .. " ± " .. fmt .. " (n=%d)"):format(stats.mean(xs), se, #xs)
end

return stats
