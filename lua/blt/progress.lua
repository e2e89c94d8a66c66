-- blt.progress: a progress bar with rate and ETA for long loops.
--   local bar = progress.new{total = 1000, unit = "B", label = "train"}
--   bar:update(step, {loss = 1.23}, bytes_done)   bar:finish()
-- On a terminal it redraws one line; otherwise (CI, logs) it prints a line every
-- `every` percent so logs stay short.
local core = require "blt.core"

local progress = {}
local Bar = {}
Bar.__index = Bar

local function fmt_time(s)
    if s ~= s or s == math.huge or s < 0 then return "--:--" end
    s = math.floor(s + 0.5)
    if s >= 3600 then return ("%d:%02d:%02d"):format(s // 3600, s % 3600 // 60, s % 60) end
    return ("%02d:%02d"):format(s // 60, s % 60)
end
progress.fmt_time = fmt_time

local function fmt_rate(r)
    if r >= 1e6 then return ("%.2fM"):format(r / 1e6) end
    if r >= 1e3 then return ("%.1fk"):format(r / 1e3) end
    return ("%.0f"):format(r)
end

function progress.new(o)
    local self = setmetatable({}, Bar)
    self.total = o.total
    self.unit = o.unit or "it"
    self.label = o.label or ""
    self.out = o.out or io.stderr
    self.tty = o.tty
    if self.tty == nil then self.tty = core.isatty(2) end
    self.every = o.every or 10
    self.start = core.now()
    self.last_pct = -1
    self.work0 = o.work0 or 0 -- work already done (a resumed run)
    return self
end

-- step: items done; fields: shown as key value; work: units done (for the rate).
function Bar:update(step, fields, work)
    local now = core.now()
    local elapsed = now - self.start
    work = work or step
    local rate = elapsed > 0 and (work - self.work0) / elapsed or 0
    local frac = self.total > 0 and step / self.total or 1
    local done_steps = step - (self.step0 or 0)
    self.step0 = self.step0 or step - 1
    local eta = done_steps > 0 and elapsed / done_steps * (self.total - step) or math.huge
    local parts = {}
    for _, kv in ipairs(fields or {}) do parts[#parts + 1] = kv end
    local width = 24
    local filled = math.floor(frac * width + 0.5)
    local bar = ("[%s%s]"):format(("="):rep(filled), (" "):rep(width - filled))
    local line = ("%s %d/%d %s %s | %s %s/s | %s elapsed | ETA %s"):format(self.label, step, self.total, bar,
        table.concat(parts, " "), fmt_rate(rate), self.unit, fmt_time(elapsed), fmt_time(eta))
    if self.tty then
        self.out:write("\r", line, "\27[K")
        self.out:flush()
    else
        local pct = math.floor(frac * 100 / self.every)
        if pct ~= self.last_pct or step == self.total then
            self.last_pct = pct
            self.out:write(line, "\n")
            self.out:flush()
        end
    end
    self.rate = rate
end

-- Prints a line above the bar (e.g. a validation result).
function Bar:note(text)
    if self.tty then self.out:write("\r\27[K") end
    self.out:write(text, "\n")
    self.out:flush()
end

function Bar:finish()
    if self.tty then self.out:write("\n") self.out:flush() end
end

return progress
