-- Thread pool start: on demand, with an initializer, name prefix.
local fa = require "fa"
fa.run(function (fa)
  local futures = require "cfut"
  local ex = fa.executor(futures.thread_pool{max_workers = 2,
    thread_name_prefix = "fa",
    initializer = function (x) _G.INIT = x end, initargs = {5}})
  local a = fa.future(ex:submit(function () return _G.INIT end))
  local b = fa.future(ex:submit(function () return futures and 1 or 1 end))
  fa.check(a:result(10) == 5 and b:result(10) == 1, "initialized workers")
  local done, pending = futures.wait({a, b}, 10)
  fa.check(#done == 2 and #pending == 0, "wait")
  ex:shutdown(true)
  local ex2 = fa.executor(futures.thread_pool(3))
  local fs = {}
  for i = 1, 6 do fs[i] = fa.future(ex2:submit(function () return i end)) end
  for f in futures.as_completed(fs, 10) do fa.check(f:done(), "completed") end
  ex2:shutdown(true)
end)
