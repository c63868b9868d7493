-- Submit tasks to a thread pool and get their results and errors back.
local fa = require "fa"
fa.run(function (fa)
  local futures = require "cfut"
  local ex = fa.executor(futures.thread_pool(1))
  local f = fa.future(ex:submit(function (a, b) return a + b, {a, b} end, 1, 2))
  local s, t = f:result(10)
  fa.check(s == 3 and fa.same(t, {1, 2}), "result")
  local g = fa.future(ex:submit(function () error({code = 7}) end))
  local e = g:exception(10)
  fa.check(type(e) == "table" and e.code == 7, "exception")
  local h = fa.future(ex:submit(function (x) return x * 2 end, 21))
  fa.check(h:result(10) == 42, "second result")
  ex:shutdown(true)
end)
