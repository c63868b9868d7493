-- Tasks that bring the globals they read (a global function calling
-- another, a global table), in a thread pool and through map.
local fa = require "fa"

function G_helper (x) return G_twice(x) + G_CFG.base end
function G_twice (x) return 2 * x end
G_CFG = { base = 100, names = { "a", "b" } }

fa.run(function (fa)
  local futures = require "cfut"
  local ex = fa.executor(futures.thread_pool(1))
  local f = fa.future(ex:submit(function (x) return G_helper(x), G_CFG.names end,
                                1))
  local v, names = f:result(10)
  fa.check(v == 102 and fa.same(names, { "a", "b" }), "result")
  local sum = 0
  for _, r in ex:map(function (x) return G_helper(x) end, { 1, 2, 3 }) do
    sum = sum + r
  end
  fa.check(sum == 312, "map")
  ex:shutdown(true)
end)
