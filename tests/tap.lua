-- A small TAP producer for the Lua tests (prove reads it).
--   local T = require "tap"          (tests/ is put on package.path by the first line of each test)
--   T.ok(cond, name)  T.is(a, b, name)  T.near(a, b, tol, name)  T.raises(fn, pattern, name)
--   T.flatten(nested table) -> flat list
--   T.done()   prints the plan and exits non-zero when anything failed
local T = {}
local n, failed = 0, 0

local function report(ok, name, diag)
    n = n + 1
    io.write(ok and "ok " or "not ok ", n, " - ", name or "", "\n")
    if not ok then
        failed = failed + 1
        if diag then io.write("# ", tostring(diag):gsub("\n", "\n# "), "\n") end
    end
    io.stdout:flush()
    return ok
end

function T.ok(cond, name, diag) return report(not not cond, name, diag) end

function T.is(got, want, name)
    return report(got == want, name, ("got %s, want %s"):format(tostring(got), tostring(want)))
end

function T.near(got, want, tol, name)
    local err = math.abs(got - want)
    return report(err <= tol, name, ("got %.9g, want %.9g (|diff| %.3g > %.3g)"):format(got, want, err, tol))
end

-- fn must raise an error whose message matches pattern (a Lua pattern).
function T.raises(fn, pattern, name)
    local ok, err = pcall(fn)
    if ok then return report(false, name, "no error raised") end
    err = tostring(err)
    return report(err:find(pattern) ~= nil, name, ("error %q does not match %q"):format(err, pattern))
end

-- Nested tables (e.g. from t:totable()) as one flat list, in row-major order.
function T.flatten(v, out)
    out = out or {}
    if type(v) == "table" then for i = 1, #v do T.flatten(v[i], out) end
    else out[#out + 1] = v end
    return out
end

function T.diag(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
    io.write("# ", table.concat(parts, " "):gsub("\n", "\n# "), "\n")
end

function T.skip_all(reason)
    io.write("1..0 # SKIP ", reason, "\n")
    os.exit(0)
end

function T.done()
    io.write("1..", n, "\n")
    if failed > 0 then io.write("# ", failed, " of ", n, " failed\n") end
    io.stdout:flush()
    os.exit(failed == 0 and 0 or 1)
end

return T
