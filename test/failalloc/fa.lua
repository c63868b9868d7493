-- fa.lua: the frame of a failing-allocation scenario (docs/failalloc.md).
--
-- fa.run(body) calls body(fa) with the allocation counter on (the n-th
-- allocation fails: CFUT_FAILAT=n), then, with the counter off, checks what
-- the body left behind and prints one outcome line:
--   FAILALLOC OK                      the body ran to its end
--   FAILALLOC ERROR: <message>        the body raised (the driver accepts
--                                     only "not enough memory" errors)
--   FAILALLOC UNRESOLVED <k>          k tracked futures never finished
-- The body registers what it creates with fa.future(f) and fa.executor(ex)
-- (slots are made in advance: registering allocates nothing).
local futures = require "cfut"

local M = {}
local MAX = 1024
local futs, exs = {}, {}
local nf, nex = 0, 0
for i = 1, MAX do futs[i] = false; exs[i] = false end

function M.future (f)
  if nf < MAX then nf = nf + 1; futs[nf] = f end
  return f
end

function M.executor (ex)
  if nex < MAX then nex = nex + 1; exs[nex] = ex end
  return ex
end

-- Deep equality of plain data (tables compared by content).
local function same (a, b, seen)
  if type(a) ~= "table" or type(b) ~= "table" then
    return a == b and math.type(a) == math.type(b)
  end
  seen = seen or {}
  if seen[a] == b then return true end
  seen[a] = b
  for k, v in pairs(a) do
    if not same(v, b[k], seen) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end
M.same = same

function M.check (cond, what)
  if not cond then error("check failed: " .. what, 2) end
end

-- A big nested table: 'width' keys a level, 'depth' levels, mixed types.
function M.nested (depth, width)
  local t = {n = depth, s = ("x"):rep(depth * 10), f = depth + 0.5}
  for i = 1, width do
    t[i] = depth > 1 and M.nested(depth - 1, width) or i
  end
  return t
end

function M.run (body)
  local reached, counted, ok, err = futures._failalloc(body, M)
  local tracked = {}
  for i = 1, nf do tracked[i] = futs[i] end
  local _, pending = futures.wait(tracked, 30)
  for i = 1, nex do exs[i]:shutdown(true) end
  if #pending > 0 then
    print("FAILALLOC UNRESOLVED " .. #pending)
  elseif ok then
    print("FAILALLOC OK")
  else
    print("FAILALLOC ERROR: " .. tostring(err))
  end
  print(("FAILALLOC COUNTED %d %s"):format(counted,
        reached and "reached" or "missed"))
end

return M
