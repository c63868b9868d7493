-- Marshalling a large nested table: dumps/loads, and through a pool; a
-- list nested past the walks' recursive levels (frames, spilled values).
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
  local up = {"upvalue"}
  local l = {v = 0, f = function () return up end}
  for i = 1, 1500 do l = {v = i, next = l} end
  local function length (x)
    local k = 0
    while x.next do
      fa.check(x.v == 1500 - k, "deep list values")
      k = k + 1
      x = x.next
    end
    fa.check(x.f()[1] == "upvalue", "deep list's function")
    return k
  end
  fa.check(length(futures.loads(futures.dumps(l), true)) == 1500,
           "deep dumps/loads")
  f = fa.future(ex:submit(function (x) return x end, l))
  fa.check(length(f:result(10)) == 1500, "deep pool round trip")
  ex:shutdown(true)
end)
