package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local stats = require "blt.stats"

-- blt.stats against values computed by hand or by formulas independent of the module:
-- the closed-form Student-t CDFs and quantiles for 1, 2, 3 and 4 degrees of freedom,
-- published splitmix64 outputs, hand-computed means, variances and quantiles. The
-- module computes t by the incomplete beta function and bisection, so agreement with
-- the closed forms checks the method, not a copy of it. Tolerances: float64 (the
-- module is pure Lua doubles), loosened by the bisection's and the series' accuracy.

local function near(a, b, tol) return math.abs(a - b) <= tol * math.max(1, math.abs(b)) end

-- ---- mean, variance, standard error (by hand) ----
T.is(stats.mean {1, 2, 3, 6}, 3, "mean {1,2,3,6} = 3")
T.ok(near(stats.var {1, 2, 3, 6}, 14 / 3, 1e-15), "sample variance {1,2,3,6} = (4+1+0+9)/3")
T.ok(near(stats.se {1, 2, 3, 6}, math.sqrt(14 / 3) / 2, 1e-15), "standard error = sd / sqrt(4)")
T.is(stats.se {5}, nil, "one value has no standard error")

-- ---- Student's t: closed forms (generated over df and a grid of t and p) ----
local CDF = {
    [1] = function(t) return 0.5 + math.atan(t) / math.pi end,
    [2] = function(t) return 0.5 + t / (2 * math.sqrt(2 + t * t)) end,
    [3] = function(t)
        local s = math.sqrt(3)
        return 0.5 + (t / (s * (1 + t * t / 3)) + math.atan(t / s)) / math.pi
    end,
    [4] = function(t) return 0.5 + 0.75 * (t / math.sqrt(4 + t * t)) * (1 - t * t / (12 + 3 * t * t)) end,
}
local Q = {
    [1] = function(p) return math.tan(math.pi * (p - 0.5)) end,
    [2] = function(p) return (2 * p - 1) / math.sqrt(2 * p * (1 - p)) end,
    [4] = function(p) -- Hill (1970): alpha = 4p(1-p), q = cos(acos(sqrt(alpha))/3)/sqrt(alpha)
        local a = 4 * p * (1 - p)
        local q = math.cos(math.acos(math.sqrt(a)) / 3) / math.sqrt(a)
        return (p < 0.5 and -2 or 2) * math.sqrt(q - 1)
    end,
}
local cdf_cases, cdf_bad = 0, {}
for df, f in pairs(CDF) do
    for _, t in ipairs {-30, -7.5, -3, -1.5, -0.7, -0.1, 0, 0.05, 0.3, 1, 2.2, 4.3, 12.7, 100} do
        cdf_cases = cdf_cases + 1
        local got, want = stats.t_cdf(t, df), f(t)
        if not near(got, want, 1e-12) then cdf_bad[#cdf_bad + 1] = ("df %d t %g: %.17g vs %.17g"):format(df, t, got, want) end
    end
end
T.ok(cdf_cases >= 50 and #cdf_bad == 0, ("t_cdf equals the closed forms for df 1-4 (%d cases)"):format(cdf_cases),
     table.concat(cdf_bad, "\n"))
local q_cases, q_bad = 0, {}
for df, f in pairs(Q) do
    for _, p in ipairs {0.005, 0.025, 0.05, 0.1, 0.25, 0.4, 0.6, 0.75, 0.9, 0.95, 0.975, 0.995, 0.9995} do
        q_cases = q_cases + 1
        local got, want = stats.t_quantile(p, df), f(p)
        if not near(got, want, 1e-10) then q_bad[#q_bad + 1] = ("df %d p %g: %.17g vs %.17g"):format(df, p, got, want) end
    end
end
T.ok(q_cases >= 39 and #q_bad == 0, ("t_quantile equals the closed forms for df 1, 2, 4 (%d cases)"):format(q_cases),
     table.concat(q_bad, "\n"))
-- df = 3 has no closed-form quantile: the quantile must give the closed-form CDF back
local q3_bad = {}
for _, p in ipairs {0.01, 0.2, 0.7, 0.975, 0.999} do
    local t = stats.t_quantile(p, 3)
    if not near(CDF[3](t), p, 1e-12) then q3_bad[#q3_bad + 1] = ("p %g: cdf(q) %.17g"):format(p, CDF[3](t)) end
end
T.ok(#q3_bad == 0, "df 3: the closed-form CDF of the quantile is p", table.concat(q3_bad, "\n"))
-- large df: the normal quantile 1.959963984540054 (Phi^-1(0.975))
T.ok(near(stats.t_quantile(0.975, 1e8), 1.959963984540054, 1e-7), "t with 1e8 df is the normal")
T.is(stats.t_quantile(0.5, 7), 0, "the median of t is 0")

-- ---- t interval (by hand: {1,2,3,6}: mean 3, se sqrt(14/3)/2, df 3) ----
do
    local ti = stats.t_interval {1, 2, 3, 6}
    local h = stats.t_quantile(0.975, 3) * math.sqrt(14 / 3) / 2
    T.ok(ti.n == 4 and ti.mean == 3 and near(ti.lo, 3 - h, 1e-14) and near(ti.hi, 3 + h, 1e-14),
         "t_interval: mean ± t(0.975, 3) se", ("%g %g %g"):format(ti.mean, ti.lo, ti.hi))
    T.ok(near(CDF[3]((ti.hi - 3) / ti.se), 0.975, 1e-12), "its half width is the closed-form 97.5% point of t(3)")
    local one = stats.t_interval {2.5}
    T.ok(one.n == 1 and one.mean == 2.5 and one.lo == nil and one.se == nil, "one seed: a mean, no interval")
    -- two values: df 1, the interval is mean ± tan(0.475 pi) |a - b| / 2
    local two = stats.t_interval {1, 2}
    T.ok(near(two.hi - two.mean, math.tan(0.475 * math.pi) * 0.5, 1e-10), "two values: df 1, closed form")
end

-- ---- quantiles (R type 7, by hand) ----
T.ok(stats.quantile({4, 1, 3, 2}, 0.25) == 1.75 and stats.quantile({4, 1, 3, 2}, 0.5) == 2.5
     and stats.quantile({4, 1, 3, 2}, 0) == 1 and stats.quantile({4, 1, 3, 2}, 1) == 4,
     "quantile: linear between order statistics")

-- ---- splitmix64: the published outputs for seed 0 ----
do
    local r = stats.rng(0)
    local want = {0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f}
    local ok = true
    for i = 1, 3 do if r() ~= want[i] then ok = false end end
    T.ok(ok, "rng(0) gives splitmix64's first three outputs")
    -- indices in [1, 3] from seed 7: floor((x >> 11) * 3 / 2^53) + 1, computed apart
    local r7, idx = stats.rng(7), {}
    for i = 1, 8 do idx[i] = r7:below(3) end
    T.is(table.concat(idx, ","), "2,1,3,2,2,1,2,1", "rng(7):below(3) draws the expected indices")
end

-- ---- the bootstrap ----
do
    -- the mean of a resample of {0, 1} is 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4:
    -- its 2.5% and 97.5% points are 0 and 1
    local b = stats.bootstrap({0, 1}, stats.mean, {reps = 4000, seed = 3})
    T.ok(b.lo == 0 and b.hi == 1 and b.missing == 0 and #b.values == 4000, "bootstrap of the mean of {0,1}: [0, 1]")
    local halves = 0
    for _, v in ipairs(b.values) do if v == 0.5 then halves = halves + 1 end end
    -- binomial(4000, 1/2): sd 31.6; 6 sd either side
    T.ok(math.abs(halves - 2000) < 190, ("half the resamples have mean 1/2 (%d of 4000)"):format(halves))
    local c = stats.bootstrap({2.25, 2.25, 2.25}, stats.mean, {reps = 50, seed = 9})
    T.ok(c.lo == 2.25 and c.hi == 2.25, "equal values: a zero-width interval")
    local xs = {1.3, 2.9, 0.4, 5.5, 3.3}
    local b1 = stats.bootstrap(xs, stats.mean, {reps = 200, seed = 11})
    local b2 = stats.bootstrap(xs, stats.mean, {reps = 200, seed = 11})
    local b3 = stats.bootstrap(xs, stats.mean, {reps = 200, seed = 12})
    T.ok(b1.lo == b2.lo and b1.hi == b2.hi and (b1.lo ~= b3.lo or b1.hi ~= b3.hi), "seeded: same seed, same interval")
    T.ok(b1.lo >= 0.4 and b1.hi <= 5.5 and b1.lo < stats.mean(xs) and b1.hi > stats.mean(xs), "the interval lies within the data")
    local m = stats.bootstrap({1, 2}, function(s) if s[1] == s[2] then return nil end return 1 end, {reps = 1000, seed = 5})
    T.ok(m.missing > 350 and m.missing < 650 and #m.values + m.missing == 1000, "resamples without a statistic are counted")
end

-- ---- paired differences (generated: lists of 2, 3 and 5 seeds) ----
do
    local cases, bad = 0, {}
    local x = 12345
    local function lcg() x = (x * 1103515245 + 12345) % 2147483648; return x / 2147483648 end
    for _, n in ipairs {2, 3, 5} do
        for _, shift in ipairs {0, 0.01, 0.3, -0.5} do
            local a, b, d = {}, {}, {}
            for s = 1, n do
                b[s] = 2 + lcg()
                d[s] = shift + 0.1 * (lcg() - 0.5)
                a[s] = b[s] + d[s]
            end
            local p = stats.paired(a, b)
            -- by hand: the mean and sample sd of the differences, t from the closed forms
            -- (df 1, 2, 4) where there is one
            local m, ss = 0, 0
            for s = 1, n do m = m + (a[s] - b[s]) / n end
            for s = 1, n do ss = ss + (a[s] - b[s] - m) ^ 2 end
            local se = math.sqrt(ss / (n - 1)) / math.sqrt(n)
            local h = Q[n - 1](0.975) * se
            cases = cases + 1
            if not (p.n == n and near(p.mean, m, 1e-12) and near(p.lo, m - h, 1e-9) and near(p.hi, m + h, 1e-9)
                    and p.significant == (m - h > 0 or m + h < 0)) then
                bad[#bad + 1] = ("n %d shift %g: %g [%g, %g] vs %g [%g, %g]"):format(n, shift, p.mean, p.lo, p.hi, m, m - h, m + h)
            end
        end
    end
    T.ok(cases == 12 and #bad == 0, ("paired: mean and t interval of the differences, significant iff it excludes 0 (%d cases)")
         :format(cases), table.concat(bad, "\n"))
    local p = stats.paired({[1] = 2.0, [2] = 2.5, [3] = 2.1}, {[1] = 1.9, [2] = 2.2, [4] = 2.0})
    T.ok(p.n == 2 and p.keys[1] == 1 and p.keys[2] == 2, "only the seeds both sides have are paired")
    local one = stats.paired({[1] = 2.0}, {[1] = 1.0})
    T.ok(one.n == 1 and one.mean == 1 and one.significant == false, "one pair: never called significant")
end

-- ---- bad input: a clear error naming the function ----
T.raises(function() stats.mean {} end, "blt.stats.mean: needs at least 1", "mean of nothing")
T.raises(function() stats.var {1} end, "blt.stats.var: needs at least 2", "variance of one value")
T.raises(function() stats.mean {1, "x"} end, "item 2 is string", "a non-number item")
T.raises(function() stats.t_quantile(1, 3) end, "p must be in %(0, 1%)", "p = 1")
T.raises(function() stats.t_quantile(0.5, 0) end, "df must be > 0", "df = 0")
T.raises(function() stats.rng(1.5) end, "seed must be an integer", "a fractional seed")
T.raises(function() stats.bootstrap({}, stats.mean) end, "non%-empty", "bootstrap of nothing")

-- ---- format ----
T.is(stats.format_mean({1, 2, 3, 6}, "%.3f"), ("3.000 ± %.3f (n=4)"):format(math.sqrt(14 / 3) / 2), "format_mean")
T.is(stats.format_mean({2.5}), "2.5000 (n=1)", "format_mean of one value")

T.done()
