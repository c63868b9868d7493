-- Process pool start and a round trip (CFUT_FAILIN=worker fails the
-- worker process's allocations instead of the host's).  A task that could
-- not be sent for lack of memory is sent again: a part of the first frame
-- left in the stream would garble it.  A result bigger than the worker's
-- answer buffer makes the worker grow it.
local fa = require "fa"
fa.run(function (fa)
  local futures = require "cfut"
  local ex = fa.executor(futures.process_pool(1))
  local function roundtrip (t) return #t, t end
  local f = fa.future(ex:submit(roundtrip, {1, 2, "x"}))
  local ok, n, t = pcall(f.result, f, 30)
  if not ok then
    if not tostring(n):find("not enough memory to send") then error(n, 0) end
    f = fa.future(ex:submit(roundtrip, {1, 2, "x"}))
    n, t = f:result(30)
  end
  fa.check(n == 3 and t[3] == "x", "process round trip")
  local h = fa.future(ex:submit(function () return ("y"):rep(300) end))
  fa.check(h:result(30) == ("y"):rep(300), "a bigger result")
  local g = fa.future(ex:submit(function () error("boom") end))
  local e = tostring(g:exception(30))
  -- the worker may have lacked the memory to make or send its error
  if not (e:find("boom") or e:find("not enough memory")) then error(e, 0) end
  ex:shutdown(true)
end)
