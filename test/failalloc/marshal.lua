-- Marshalling a large nested table: dumps/loads, and through a pool.
local fa = require "fa"
fa.run(function (fa)
  local futures = require "cfut"
  local t = fa.nested(3, 12)
  t.self = t                  -- a cycle
  t.shared = {t[1], t[1]}     -- a shared reference
  local u = futures.loads(futures.dumps(t))
  fa.check(fa.same(t, u), "dumps/loads round trip")
  fa.check(u.self == u and u.shared[1] == u.shared[2], "references kept")
  local ex = fa.executor(futures.thread_pool(1))
  local f = fa.future(ex:submit(function (v) return v, #v end, t))
  local v, n = f:result(10)
  fa.check(fa.same(t, v) and n == 12, "pool round trip")
  ex:shutdown(true)
end)
