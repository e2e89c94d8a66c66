-- Finite-difference gradient check shared by the tests (and docs/custom-layer.md).
--   local err, where = gradcheck.check(f, inputs [, {h =, max =, seed =}])
-- f(inputs...) returns a float tensor. The loss is L = sum(f(inputs) * W) for fixed
-- random W shaped like the output, summed in Lua doubles so that only the ops run
-- in float32. The analytic gradient comes from :backward(); the numeric one from
-- central differences (L(x+h) - L(x-h)) / (x+h - (x-h)), the step read back after
-- rounding to float32. For every float input that requires grad, up to `max`
-- elements are checked (all when fewer; always the first and the last). The error
-- is max |analytic - numeric| divided by the largest gradient magnitude of that
-- input, so one wrong element anywhere fails; the worst over inputs is returned.
local blt = require "blt"

local gradcheck = {}

local function flatten(v, out)
    out = out or {}
    if type(v) == "table" then for i = 1, #v do flatten(v[i], out) end
    else out[#out + 1] = v end
    return out
end

-- multi-index (1-based) of flat element k (0-based) of shape
local function unflat(shape, k)
    local idx = {}
    for d = #shape, 1, -1 do
        idx[d] = k % shape[d] + 1
        k = k // shape[d]
    end
    return idx
end
gradcheck.unflat = unflat

local function dot(a, b)
    local s = 0.0
    for i = 1, #a do s = s + a[i] * b[i] end
    return s
end

function gradcheck.check(f, inputs, opts)
    opts = opts or {}
    local h, maxchk, seed = opts.h or 1e-2, opts.max or 300, opts.seed or 99
    for _, x in ipairs(inputs) do if x.requires_grad then x.grad = nil end end
    local W, worst, where
    blt.scope(function()
        local out = f(table.unpack(inputs))
        local osh = out:shape()
        W = flatten(blt.randn(#osh > 0 and osh or {1}, seed):totable())
        blt.sum(blt.mul(out, blt.tensor(W):reshape(#osh > 0 and osh or {}))):backward()
    end)
    local function L()
        return blt.scope(function()
            return blt.no_grad(function() return dot(flatten(f(table.unpack(inputs)):totable()), W) end)
        end)
    end
    worst = 0.0
    for ii, x in ipairs(inputs) do
        if x.requires_grad then
            local shape, n = x:shape(), x:numel()
            local g = x.grad and flatten(x.grad:totable()) or {}
            local gmax = 0.0
            for k = 1, n do gmax = math.max(gmax, math.abs(g[k] or 0)) end
            local picks = {}
            if n <= maxchk then
                for k = 0, n - 1 do picks[#picks + 1] = k end
            else
                local r = blt.Generator(seed + ii)
                picks[1], picks[2] = 0, n - 1
                for _ = 3, maxchk do picks[#picks + 1] = r:integer(n) - 1 end
            end
            local maxdiff, nmax, at = 0.0, 0.0, nil
            for _, k in ipairs(picks) do
                local idx = unflat(shape, k)
                local v = x:get(table.unpack(idx))
                x:set(v + h, table.unpack(idx))
                local vp = x:get(table.unpack(idx))
                local lp = L()
                x:set(v - h, table.unpack(idx))
                local vm = x:get(table.unpack(idx))
                local lm = L()
                x:set(v, table.unpack(idx))
                local num = (lp - lm) / (vp - vm)
                local ana = g[k + 1] or 0
                nmax = math.max(nmax, math.abs(num))
                local d = math.abs(num - ana)
                if d > maxdiff then
                    maxdiff, at = d, ("input %d element %d: analytic %.6g numeric %.6g"):format(ii, k, ana, num)
                end
            end
            local err = maxdiff / math.max(gmax, nmax, 1e-3)
            if err > worst then worst, where = err, at end
            x.grad = nil
        end
    end
    return worst, where
end

return gradcheck
