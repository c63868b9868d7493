-- Process pool start and a round trip (CFUT_FAILIN=worker fails the
-- worker process's allocations instead of the host's).
local fa = require "fa"
fa.run(function (fa)
  local futures = require "cfut"
  local ex = fa.executor(futures.process_pool(1))
  local f = fa.future(ex:submit(function (t) return #t, t end, {1, 2, "x"}))
  local n, t = f:result(30)
  fa.check(n == 3 and t[3] == "x", "process round trip")
  local g = fa.future(ex:submit(function () error("boom") end))
  local e = tostring(g:exception(30))
  -- the worker may have lacked the memory to make or send its error
  if not (e:find("boom") or e:find("not enough memory")) then error(e, 0) end
  ex:shutdown(true)
end)
