package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local U = require "testutil"
local data = require "blt.data"
local train = require "blt.train"

-- One run's validations read one set of bytes: the curve (periodic validations and the
-- last metrics row) is over eval.max_bytes, the result over eval.final_max_bytes, both
-- from one pass of train.final_validation. Generated over every pair of limits (0 = the
-- whole split): each figure equals train.evaluate with that limit alone, exactly (the
-- same windows in the same order, the same sums: identical by construction).

local dir = U.tmpdir()
local corpus = data.open(U.corpus(dir .. "/c.txt", 40000), {val_fraction = 0.1})
local model = U.tiny_entropy_model(3)
local seq, batch = 33, 4
local alone = {}
local function eval_alone(limit)
    if not alone[limit] then
        local b, n = train.evaluate(model, corpus, {seq_len = seq, batch = batch, max_bytes = limit})
        alone[limit] = {b, n}
    end
    return alone[limit][1], alone[limit][2]
end

-- the sampling standard error by hand: per-batch sums from models.nats, two-pass
local models = require "blt.models"
local batches = {}
require("blt.core").no_grad(function()
    for rows in corpus:val_windows {seq_len = seq, batch = batch} do
        local sum, n = models.nats(model, rows)
        batches[#batches + 1] = {sum, n}
    end
end)
local function se_by_hand(limit)
    local use, count, nats = {}, 0, 0
    for _, b in ipairs(batches) do
        use[#use + 1] = b
        count, nats = count + b[2], nats + b[1]
        if limit > 0 and count >= limit then break end
    end
    if #use < 2 then return nil end
    local m, ss = nats / count, 0
    for _, b in ipairs(use) do ss = ss + (b[1] - m * b[2]) ^ 2 end
    return math.sqrt(ss * #use / (#use - 1)) / count / math.log(2)
end

local limits = {0, 128, 512, 1000, 3000}
local cases, bad = 0, {}
for _, per in ipairs(limits) do
    for _, fin in ipairs(limits) do
        for _, every in ipairs {0, 5} do
            local cfg = {train = {seq_len = seq - 1}, eval = {every = every, max_bytes = per, final_max_bytes = fin, batch = batch}}
            local rb, rn, cb, cn, se = train.final_validation(model, corpus, cfg)
            local want_se = se_by_hand(fin)
            -- one-pass sums against the two-pass formula: float64 cancellation, relative 1e-9
            if not ((se == nil and want_se == nil) or (se and want_se and math.abs(se - want_se) <= 1e-9 * want_se)) then
                bad[#bad + 1] = ("final_max_bytes %d: standard error %s, by hand %s"):format(fin, tostring(se), tostring(want_se))
            end
            local wb, wn = eval_alone(fin)
            local pb, pn = eval_alone(every == 0 and fin or per) -- no periodic validation: the curve is the final point
            cases = cases + 1
            if not (rb == wb and rn == wn and cb == pb and cn == pn) then
                bad[#bad + 1] = ("max_bytes %d final_max_bytes %d every %d: result %.17g/%d (alone %.17g/%d), curve %.17g/%d (alone %.17g/%d)")
                    :format(per, fin, every, rb, rn, wb, wn, cb, cn, pb, pn)
            end
        end
    end
end
T.ok(cases == 50 and #bad == 0, ("final validation: result over final_max_bytes, curve over max_bytes, one pass, "
     .. "the result's standard error between batches (%d cases)")
     :format(cases), table.concat(bad, "\n"))
local whole = select(2, eval_alone(0))
T.ok(whole > 3000 and select(2, eval_alone(512)) < whole, "the limits cut the split (the cases differ)", tostring(whole))
corpus:close()
U.cleanup(dir)
T.done()
