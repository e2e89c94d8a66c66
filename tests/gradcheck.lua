-- Finite-difference gradient check shared by the tests.
--   gradcheck.check(f, inputs, opts) -> max relative error, detail
-- f(inputs...) returns a float tensor; the scalar checked is sum(f * W) for a
-- fixed random W, so every output element matters. Central differences in
-- float32 with step eps; relative error |num - ana| / max(|num| + |ana|, floor).
local blt = require "blt"
local core = require "blt.core"

local gradcheck = {}

function gradcheck.check(f, inputs, opts)
    opts = opts or {}
    local eps = opts.eps or 1e-2
    local floor = opts.floor or 1e-2
    local shape = core.scope(function() return f(table.unpack(inputs)):shape() end)
    local weight = blt.randn(shape, opts.seed or 99)
    local function loss()
        return core.scope(function() return blt.sum(f(table.unpack(inputs)) * weight):item() end)
    end
    -- analytic
    for _, x in ipairs(inputs) do
        if x.requires_grad then x.grad = nil end
    end
    core.scope(function() blt.sum(f(table.unpack(inputs)) * weight):backward() end)
    local worst, where = 0, ""
    local max_checks = opts.max_checks or 64
    for i, x in ipairs(inputs) do
        if x.requires_grad then
            local g = x.grad
            if not g then return math.huge, ("input %d got no gradient"):format(i) end
            local n = x:numel()
            local flat = x:reshape({n})     -- a view: perturbing it perturbs x
            local gflat = g:reshape({n})
            local stride = math.max(1, n // max_checks)
            for j = 1, n, stride do
                local v = flat:get(j)
                flat:set(v + eps, j)
                local lp = loss()
                flat:set(v - eps, j)
                local lm = loss()
                flat:set(v, j)
                local num = (lp - lm) / (2 * eps)
                local ana = gflat:get(j)
                local rel = math.abs(num - ana) / math.max(math.abs(num) + math.abs(ana), floor)
                if rel > worst then worst, where = rel, ("input %d element %d: numeric %.6g analytic %.6g"):format(i, j, num, ana) end
            end
        end
    end
    return worst, where
end

return gradcheck
